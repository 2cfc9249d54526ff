package health

import (
	"errors"
	"net/netip"
	"slices"
	"time"
)

// SYNProberPort returns the source port of the SYNs of the calling
// thread's network namespace's prober of the family (v6) and source
// (bindTo) given, opening the prober when there is none.
func SYNProberPort(v6 bool, bindTo netip.Addr) (uint16, error) {
	p, err := probers.get(v6, bindTo)
	if err != nil {
		return 0, err
	}
	return p.port, nil
}

// SYNCalls returns the system calls that sent SYNs and read answers so
// far in the calling thread's network namespace's prober of the family
// (v6) and source (bindTo) given, opening the prober when there is none.
func SYNCalls(v6 bool, bindTo netip.Addr) (sends, recvs uint64, err error) {
	p, err := probers.get(v6, bindTo)
	if err != nil {
		return 0, 0, err
	}
	return p.sendCalls.Load(), p.recvCalls.Load(), nil
}

// SYNBurst opens a prober of the calling thread's network namespace that
// runs no goroutine, starts a probe to each of targets from src in one
// batch, calls queued (which returns once the answers wait on the
// prober's socket), then reads them with one pass of the reader. It
// returns the results (nil: none yet) and the recvmmsg calls made.
func SYNBurst(targets []netip.AddrPort, src netip.Addr, queued func()) ([]error, uint64, error) {
	p, err := openSYNProber(synKey{v6: src.Is6(), bindTo: src})
	if err != nil {
		return nil, 0, err
	}
	p.reg = &synProbers{m: make(map[synKey]*synProber)}
	defer p.close()
	errs := make([]error, len(targets))
	var b startBatch
	for i, t := range targets {
		if _, err := p.start(t, src, nil, time.Time{}, func(err error) {
			if err == nil {
				err = errUp
			}
			errs[i] = err
		}, &b); err != nil {
			return nil, 0, err
		}
	}
	b.flush()
	queued()
	if _, err := p.recvAnswers(new(synRecvBuf), false); err != nil {
		return nil, 0, err
	}
	got := slices.Clone(errs) // closing ends the probes left
	for i, err := range got {
		if err == errUp {
			got[i] = nil
		} else if err == nil {
			got[i] = errNoResult
		}
	}
	return got, p.recvCalls.Load(), nil
}

var (
	errUp       = errors.New("up")
	errNoResult = errors.New("no result")
)

// SYNPacketCalls returns the sendmmsg calls of the packet socket (the
// SYNs that bypassed the stack) of the calling thread's network
// namespace's IPv4 prober from bindTo, opening the prober when there is
// none; 0 when it has no packet socket.
func SYNPacketCalls(bindTo netip.Addr) (uint64, error) {
	p, err := probers.get(false, bindTo)
	if err != nil {
		return 0, err
	}
	if p.pkt == nil {
		return 0, nil
	}
	return p.pkt.calls.Load(), nil
}

// RouteLearns returns the routes the tcp checks learned so far (in any
// network namespace).
func RouteLearns() uint64 { return routeLearns.Load() }
