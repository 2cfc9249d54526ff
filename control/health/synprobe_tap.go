package health

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A ProbeTap takes the answers to the probes' SYNs (synprobe.go) off the
// wire before the kernel's stack does: the XDP program (bpf/lib/probe.h),
// when it runs on the interfaces the answers arrive on. It answers a
// SYN-ACK with the RST the kernel would send, drops a RST, and reports
// both; a prober reads them with the answers of its raw socket, which
// still gets whatever arrives elsewhere. Over a veth the kernel's path of
// an answer (the raw socket's copy and filter, the TCP lookup, the reset
// built and routed, the read) was most of the director's cost of a check.
type ProbeTap interface {
	// WatchProbes makes the tap take the answers to SYNs sent from
	// src:port; UnwatchProbes undoes it.
	WatchProbes(src netip.Addr, port uint16) error
	UnwatchProbes(src netip.Addr, port uint16) error
	// ReadProbeAnswers appends the answers taken since the last call.
	ReadProbeAnswers(out []ProbeAnswer) ([]ProbeAnswer, error)
}

// ProbeAnswer is an answer a ProbeTap took.
type ProbeAnswer struct {
	From    netip.AddrPort // the real server
	Port    uint16         // the probe's source port
	Ack     uint32         // the probe's sequence number + 1
	Refused bool           // a RST; otherwise a SYN-ACK
	// Taken is when the tap took it, in CLOCK_MONOTONIC nanoseconds (0:
	// not known, when it was read): its check's run ends then.
	Taken int64
}

// tapState is the registry's tap: one for the network namespace it was set
// in (SetProbeTap).
type tapState struct {
	tap   ProbeTap
	netns [2]uint64
	// read serialises the reads: the tap's rings have one reader.
	read sync.Mutex
	// pending counts the probes pending in the tap's probers.
	pending atomic.Int64
}

// tapDrainers counts the Managers whose scheduler drains the tap in its
// rounds (drainProbeTaps); their probers' readers then read less often.
var tapDrainers atomic.Int32

// drainProbeTaps reads the answers the tap took, if a probe waits for
// one, and completes their probes; it reports whether one waited. A
// Manager's scheduler calls it at each round (startTapDrain): at 12,800
// checks a second a round comes every few milliseconds, and the readers'
// own wake-ups to drain the tap were as many again.
func drainProbeTaps(buf *tapBuf) bool {
	probers.mu.Lock()
	ts := probers.tap
	probers.mu.Unlock()
	if ts == nil || ts.pending.Load() == 0 {
		return false
	}
	probers.drainTap(ts, buf)
	return true
}

// startTapDrain declares that the caller calls drainProbeTaps at least
// every synTapReadEvery while it reports true, until the returned
// function is called.
func startTapDrain() (stop func()) {
	tapDrainers.Add(1)
	return func() { tapDrainers.Add(-1) }
}

// SetProbeTap makes tap take the answers of the probes sent from the
// calling thread's network namespace (the daemon's: its dataplane's); nil
// gives them back to the kernel. The probers of the tap it replaces close.
// It reads the tap once first: a tap that cannot be read would leave every
// check without its answers.
func SetProbeTap(tap ProbeTap) error {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	var ts *tapState
	if tap != nil {
		if _, err := tap.ReadProbeAnswers(nil); err != nil {
			return err
		}
		ts = &tapState{tap: tap, netns: [2]uint64{st.Dev, st.Ino}}
	}
	probers.mu.Lock()
	old := probers.tap
	probers.tap = ts
	var closing []*synProber
	for _, p := range probers.m {
		if old != nil && p.tap == old {
			closing = append(closing, p)
		}
	}
	probers.mu.Unlock()
	// The old tap's probers close: their probes end with errProberClosed,
	// and their checks open probers of the new one.
	for _, p := range closing {
		p.close()
	}
	return nil
}

// tapBuf is a reader's memory for drainTap.
type tapBuf struct {
	ans     []ProbeAnswer
	probers []*synProber
	done    []*synProbe
	errs    []error
	taken   []int64 // done's answers' ProbeAnswer.Taken
}

// drainTap reads the answers the tap took and completes their probes, in
// whichever of the tap's probers sent them.
func (ps *synProbers) drainTap(ts *tapState, buf *tapBuf) {
	ts.read.Lock()
	var err error
	buf.ans, err = ts.tap.ReadProbeAnswers(buf.ans[:0])
	ts.read.Unlock()
	if err != nil || len(buf.ans) == 0 {
		return // SetProbeTap read it: the rings are mapped, and stay so
	}
	buf.probers = buf.probers[:0]
	ps.mu.Lock()
	for _, p := range ps.m {
		if p.tap == ts {
			buf.probers = append(buf.probers, p)
		}
	}
	ps.mu.Unlock()
	for _, p := range buf.probers {
		p.tapAnswers(buf)
	}
	clear(buf.probers)
}

// tapAnswers completes the probes of p that buf.ans answer.
func (p *synProber) tapAnswers(buf *tapBuf) {
	buf.done, buf.errs, buf.taken = buf.done[:0], buf.errs[:0], buf.taken[:0]
	p.mu.Lock()
	for _, a := range buf.ans {
		if a.Port != p.port || a.From.Addr().Is6() != p.key.v6 {
			continue
		}
		m := synMatch{addr: a.From.Addr(), port: a.From.Port(), ack: a.Ack}
		if pr := p.pending[m.key()]; pr != nil && pr.match == m {
			p.removeLocked(pr)
			var verdict error
			if a.Refused {
				verdict = errRefused
			}
			buf.done, buf.errs = append(buf.done, pr), append(buf.errs, verdict)
			buf.taken = append(buf.taken, a.Taken)
		}
	}
	p.mu.Unlock()
	var now time.Time
	if len(buf.done) > 0 {
		now = time.Now()
	}
	for i, pr := range buf.done {
		pr.endAt(buf.errs[i], takenAt(buf.taken[i], now))
		buf.done[i], buf.errs[i] = nil, nil
	}
}

// monoBase pairs a reading of CLOCK_MONOTONIC (the clock of
// ProbeAnswer.Taken: the XDP program's bpf_ktime_get_ns) with a
// time.Time read with it. Go's monotonic readings come from the same
// clock, so a time made from the pair (takenAt) measures durations against
// time.Now exactly, but for the instant between the two readings.
var monoBase = sync.OnceValue(func() (b struct {
	mono int64
	at   time.Time
	ok   bool
}) {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		b.mono, b.at, b.ok = ts.Nano(), time.Now(), true
	}
	return b
})

// takenAt is when an answer read at read was taken, by its Taken: the
// end of its check's run. The scheduler reads the tap in its rounds,
// timerSlack apart: a run measured to the read took that much longer.
func takenAt(taken int64, read time.Time) time.Time {
	b := monoBase()
	if taken <= 0 || !b.ok {
		return read
	}
	if at := b.at.Add(time.Duration(taken - b.mono)); at.Before(read) {
		return at
	}
	return read
}

// watch has the tap take the answers to p's SYNs from src (a new route's).
// An error leaves them to the kernel and the raw socket.
func (p *synProber) watch(src netip.Addr) {
	if p.tap == nil || !src.IsValid() {
		return
	}
	if p.tap.tap.WatchProbes(src, p.port) != nil {
		return
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.watched = append(p.watched, src)
	}
	p.mu.Unlock()
	if closed {
		_ = p.tap.tap.UnwatchProbes(src, p.port)
	}
}

// unwatchAll gives the answers to p's SYNs back to the kernel, before p's
// port is released (closeFiles): another socket may take the port next.
func (p *synProber) unwatchAll() {
	if p.tap == nil {
		return
	}
	p.mu.Lock()
	watched := p.watched
	p.watched = nil
	p.mu.Unlock()
	for _, src := range watched {
		_ = p.tap.tap.UnwatchProbes(src, p.port)
	}
}
