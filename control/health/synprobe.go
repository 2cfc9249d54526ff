package health

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A synProber runs the half-open probes of tcp checks (tcp.go): for each
// check it sends a SYN from a raw socket and waits for the answer, the
// way nmap's SYN scan does. A SYN-ACK is up (the moment connect() would
// return), a RST is "connection refused", nothing by the deadline is "i/o
// timeout". The director's kernel answers the SYN-ACK with a RST itself
// (tcp_v4_rcv finds no socket for it: tcp_v4_send_reset), which frees the
// real server's request socket: no connection is ever established, and
// the daemon holds no socket, file descriptor or poller entry per check.
//
// One prober serves every check of one address family and source
// (bindto) in one network namespace: a raw socket (IPPROTO_TCP) and a
// TCP socket bound to the source port of its SYNs and never listening, so
// that the kernel neither picks that port for a connection of its own
// (inet_hash_connect skips bound ports) nor hands the SYN-ACKs to a
// socket. A classic BPF filter on the raw socket passes only the SYN-ACKs
// and RSTs to that port; one reader goroutine matches them to the probes
// waiting by (real server address, port, the acknowledgement of the
// probe's random sequence number), and one timer goroutine resends the
// SYNs (1 s, then doubling, as the kernel's connect) and ends probes at
// their deadline. A prober with nothing to do for synIdleClose closes.
type synProber struct {
	key  synKey
	reg  *synProbers
	raw  *os.File // the raw socket, in Go's poller
	rc   syscall.RawConn
	hold int    // the TCP socket that reserves port
	port uint16 // the source port of the SYNs
	mss  uint16
	wake chan struct{} // capacity 1: the earliest timer changed
	done chan struct{} // closed when the prober closes

	mu      sync.Mutex
	pending map[synMatch]*synProbe
	timers  probeHeap
	closed  bool
	idle    time.Time // since when nothing is pending
	// armed is when the timer goroutine wakes next: a probe due earlier
	// wakes it, a later one (the usual case) does not.
	armed time.Time
	// routes are the synRoutes of p by source, shared by the checks
	// (tens of thousands of them use one or a few).
	routes map[netip.Addr]*synRoute
}

// synKey is what one prober serves.
type synKey struct {
	netns  [2]uint64 // the network namespace's device and inode
	v6     bool
	bindTo netip.Addr // invalid: the kernel's choice of source
}

// synMatch is how an answer finds its probe: the real server's address
// and port, and the acknowledgement number the answer carries (the
// probe's sequence number + 1: tcp_v4_send_reset and the SYN-ACK both
// acknowledge the SYN).
type synMatch struct {
	addr netip.Addr
	port uint16
	ack  uint32
}

// synProbe is one probe waiting for its answer.
type synProbe struct {
	match    synMatch
	src      netip.Addr // IPv4: the source address, for the checksum
	seq      uint32
	deadline time.Time
	next     time.Time     // the next resend, or the deadline
	rto      time.Duration // the wait before the next resend
	index    int           // in synProber.timers; -1 when not there
	done     func(error)   // called once, with no lock held
}

const (
	// synRTO is the wait before the first resend of a SYN, doubled at
	// each resend: the kernel's initial retransmission timeout for a SYN
	// (TCP_TIMEOUT_INIT, RFC 6298 2.1).
	synRTO = time.Second
	// synIdleClose is how long a prober with no probe waits before it
	// closes its sockets.
	synIdleClose = time.Minute
	// synWindow is the window of the SYNs (the kernel's for an MSS of
	// 1460: 44 segments).
	synWindow = 64240
	// synReadEvery is how often the reader reads while probes are
	// pending: a check's answer waits that long at most.
	synReadEvery = time.Millisecond
	// synRcvBuf is the receive buffer asked for the raw socket: room for
	// the answers of a burst of tens of thousands of checks.
	synRcvBuf = 4 << 20
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// errProberClosed is a probe given to a prober that closed meanwhile: the
// check takes another.
var errProberClosed = errors.New("syn prober closed")

// errNoRaw is a prober that cannot open its raw socket (no CAP_NET_RAW):
// the checks connect instead.
var errNoRaw = errors.New("no raw socket")

// synProbers are the probers of the process, by what they serve.
type synProbers struct {
	mu sync.Mutex
	m  map[synKey]*synProber
}

var probers = &synProbers{m: make(map[synKey]*synProber)}

// get returns the prober of the calling thread's network namespace for
// the family (v6) and source given, opening it when there is none. It
// returns an error wrapping errNoRaw when raw sockets are not allowed.
func (ps *synProbers) get(v6 bool, bindTo netip.Addr) (*synProber, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	key := synKey{netns: [2]uint64{st.Dev, st.Ino}, v6: v6, bindTo: bindTo}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[key]; p != nil {
		return p, nil
	}
	p, err := openSYNProber(key)
	if err != nil {
		return nil, err
	}
	p.reg = ps
	ps.m[key] = p
	go p.read()
	go p.runTimers()
	return p, nil
}

// openSYNProber opens the sockets of a prober in the calling thread's
// network namespace.
func openSYNProber(key synKey) (p *synProber, err error) {
	family, src := unix.AF_INET, netip.IPv4Unspecified()
	mss := uint16(1460)
	if key.v6 {
		family, src, mss = unix.AF_INET6, netip.IPv6Unspecified(), 1440
	}
	if key.bindTo.IsValid() {
		src = key.bindTo
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return nil, fmt.Errorf("%w: %w", errNoRaw, os.NewSyscallError("socket", err))
	}
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	hold := -1
	defer func() {
		if err != nil {
			unix.Close(fd)
			if hold >= 0 {
				unix.Close(hold)
			}
		}
	}()
	// The reserved port: bound, never listening, never connecting.
	hold, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(hold, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	sa, err := unix.Getsockname(hold)
	if err != nil {
		return nil, os.NewSyscallError("getsockname", err)
	}
	var port int
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		port = sa.Port
	case *unix.SockaddrInet6:
		port = sa.Port
	}
	if err := attachSYNFilter(fd, key.v6, uint16(port)); err != nil {
		return nil, err
	}
	if key.bindTo.IsValid() {
		// The SYNs leave from bindto, and only answers to it come in.
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(key.bindTo, 0))); err != nil {
			return nil, os.NewSyscallError("bind", err)
		}
	}
	if key.v6 {
		// The kernel computes the checksum at this offset, with the
		// source it picks (RFC 3542 3.1, rawv6_push_pending_frames).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 16); err != nil {
			return nil, os.NewSyscallError("setsockopt IPV6_CHECKSUM", err)
		}
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, synRcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, synRcvBuf)
	}
	raw := os.NewFile(uintptr(fd), "tcp-check-syn")
	rc, err := raw.SyscallConn()
	if err != nil {
		raw.Close()
		fd = -1
		return nil, err
	}
	return &synProber{
		key: key, raw: raw, rc: rc, hold: hold, port: uint16(port), mss: mss,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		pending: make(map[synMatch]*synProbe), idle: time.Now(),
		routes: make(map[netip.Addr]*synRoute),
	}, nil
}

// route returns the synRoute of p and src.
func (p *synProber) route(src netip.Addr) *synRoute {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.routes[src]
	if r == nil {
		r = &synRoute{p: p, src: src}
		p.routes[src] = r
	}
	return r
}

// probe sends a SYN to target from src (IPv4 without bindto: the source
// the kernel picks, for the checksum) and waits for its answer until
// deadline (none: zero), or until ctx is done. Its errors read as
// net.Dial's, as connectReset's.
func (p *synProber) probe(ctx context.Context, target netip.AddrPort, src netip.Addr, deadline time.Time) error {
	result := make(chan error, 1)
	pr, err := p.start(target, src, deadline, func(err error) { result <- err })
	if err != nil {
		return err
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		p.cancel(pr)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return opErr(target, errCanceled)
		}
		return opErr(target, os.ErrDeadlineExceeded)
	}
}

// start sends a SYN to target from src and returns: done is called once
// with the verdict (as probe's), from the prober's goroutines, unless
// start returns an error (errProberClosed, or the SYN could not be sent).
func (p *synProber) start(target netip.AddrPort, src netip.Addr, deadline time.Time, done func(error)) (*synProbe, error) {
	pr := &synProbe{src: src, deadline: deadline, rto: synRTO, index: -1}
	pr.done = func(err error) {
		switch {
		case err == nil, errors.Is(err, errProberClosed):
			done(err)
		default:
			done(opErr(target, err))
		}
	}
	now := time.Now()
	pr.next = now.Add(synRTO)
	if !deadline.IsZero() && deadline.Before(pr.next) {
		pr.next = deadline
	}
	addr := target.Addr().WithZone("")
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errProberClosed
	}
	for {
		pr.seq = rand.Uint32()
		pr.match = synMatch{addr: addr, port: target.Port(), ack: pr.seq + 1}
		if p.pending[pr.match] == nil {
			break
		}
	}
	p.pending[pr.match] = pr
	heap.Push(&p.timers, pr)
	early := pr.next.Before(p.armed)
	if early {
		p.armed = pr.next
	}
	p.mu.Unlock()
	if early {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	if err := p.send(pr.match, pr.src, pr.seq); err != nil {
		if p.cancel(pr) {
			return nil, opErr(target, os.NewSyscallError("connect", err))
		}
		// Answered or closed meanwhile: done has been called.
	}
	return pr, nil
}

// opErr is err as net.Dial's error for target.
func opErr(target netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(target), Err: err}
}

// cancel forgets pr, and reports whether it was pending (done will not
// be called).
func (p *synProber) cancel(pr *synProbe) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending[pr.match] != pr {
		return false
	}
	p.removeLocked(pr)
	return true
}

// removeLocked forgets pr, whose done the caller then calls. Called with
// p.mu held.
func (p *synProber) removeLocked(pr *synProbe) {
	delete(p.pending, pr.match)
	if pr.index >= 0 {
		heap.Remove(&p.timers, pr.index)
	}
	if len(p.pending) == 0 {
		p.idle = time.Now()
	}
}

// send sends the SYN of a probe: a TCP header with an MSS option.
func (p *synProber) send(m synMatch, src netip.Addr, seq uint32) error {
	var b [24]byte
	binary.BigEndian.PutUint16(b[0:], p.port)
	binary.BigEndian.PutUint16(b[2:], m.port)
	binary.BigEndian.PutUint32(b[4:], seq)
	b[12] = 6 << 4 // data offset: 6 words
	b[13] = tcpSYN
	binary.BigEndian.PutUint16(b[14:], synWindow)
	b[20], b[21] = 2, 4 // MSS (RFC 9293 3.2)
	binary.BigEndian.PutUint16(b[22:], p.mss)
	if !p.key.v6 {
		binary.BigEndian.PutUint16(b[16:], tcpChecksum4(src, m.addr, b[:]))
	}
	to := sockaddr(netip.AddrPortFrom(m.addr, 0))
	var serr error
	err := p.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b[:], 0, to)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	return serr
}

// tcpChecksum4 is the checksum of an IPv4 TCP segment (RFC 9293 3.1:
// with the pseudo-header) whose checksum field is zero.
func tcpChecksum4(src, dst netip.Addr, seg []byte) uint16 {
	s, d := src.As4(), dst.As4()
	sum := uint32(unix.IPPROTO_TCP) + uint32(len(seg))
	for _, w := range [][]byte{s[:], d[:], seg} {
		for i := 0; i+1 < len(w); i += 2 {
			sum += uint32(w[i])<<8 | uint32(w[i+1])
		}
		if len(w)%2 == 1 {
			sum += uint32(w[len(w)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// read is the reader goroutine: it completes the probes the answers that
// pass the filter belong to, until the prober closes. While probes are
// pending it reads every synReadEvery, all the answers come by then: at
// 12,800 checks a second, a wake-up for each answer was the most of the
// daemon's user time left. Otherwise it waits for the next answer.
func (p *synProber) read() {
	var buf [128]byte // IPv4's headers with options, or IPv6's TCP header
	var rerr error
	drain := func(wait bool) error {
		got := false
		err := p.rc.Read(func(fd uintptr) bool {
			for {
				var n int
				var from unix.Sockaddr
				var err error
				if p.key.v6 {
					n, from, err = unix.Recvfrom(int(fd), buf[:], 0)
				} else {
					// The source is in the IP header: no sockaddr to
					// allocate for each answer.
					n, err = unix.Read(int(fd), buf[:])
				}
				switch {
				case errors.Is(err, unix.EAGAIN):
					return got || !wait
				case errors.Is(err, unix.EINTR):
					continue
				case err != nil:
					rerr = err
					return true
				}
				got = true
				p.answer(buf[:n], from)
			}
		})
		if err == nil {
			err = rerr
		}
		return err
	}
	t := time.NewTimer(synReadEvery)
	defer t.Stop()
	for {
		busy := p.busy()
		if err := drain(!busy); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				// A socket that cannot be read answers nothing more:
				// close, and the next checks open another prober.
				p.close()
			}
			return
		}
		if busy {
			t.Reset(synReadEvery)
			select {
			case <-t.C:
			case <-p.done:
				return
			}
		}
	}
}

// busy reports whether probes are pending.
func (p *synProber) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) > 0
}

// answer completes the probe the segment pkt answers, if any: an IPv4
// packet (the raw socket gets the IP header), or an IPv6 TCP segment
// from from. Anything else is ignored.
func (p *synProber) answer(pkt []byte, from unix.Sockaddr) {
	var addr netip.Addr
	tcp := pkt
	if p.key.v6 {
		sa, ok := from.(*unix.SockaddrInet6)
		if !ok {
			return
		}
		addr = netip.AddrFrom16(sa.Addr)
	} else {
		if len(pkt) < 20 || pkt[0]>>4 != 4 {
			return
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl {
			return
		}
		addr = netip.AddrFrom4([4]byte(pkt[12:16]))
		tcp = pkt[ihl:]
	}
	if len(tcp) < 20 || binary.BigEndian.Uint16(tcp[2:]) != p.port {
		return
	}
	flags := tcp[13]
	var verdict error
	switch {
	case flags&tcpACK == 0:
		return
	case flags&tcpRST != 0:
		verdict = os.NewSyscallError("connect", unix.ECONNREFUSED)
	case flags&(tcpSYN|tcpFIN) == tcpSYN:
	default:
		return
	}
	m := synMatch{addr: addr, port: binary.BigEndian.Uint16(tcp[0:]), ack: binary.BigEndian.Uint32(tcp[8:])}
	p.mu.Lock()
	pr := p.pending[m]
	if pr != nil {
		p.removeLocked(pr)
	}
	p.mu.Unlock()
	if pr != nil {
		pr.done(verdict)
	}
}

// runTimers is the timer goroutine: it resends the SYNs that wait for an
// answer, ends the probes at their deadline and closes the prober when it
// has been idle for synIdleClose.
func (p *synProber) runTimers() {
	t := time.NewTimer(synIdleClose)
	defer t.Stop()
	type resend struct {
		m   synMatch
		src netip.Addr
		seq uint32
	}
	var sends []resend
	var expired []*synProbe
	for {
		p.mu.Lock()
		now := time.Now()
		sends, expired = sends[:0], expired[:0]
		for len(p.timers) > 0 && !p.timers[0].next.After(now) {
			pr := p.timers[0]
			if !pr.deadline.IsZero() && !pr.deadline.After(now) {
				p.removeLocked(pr)
				expired = append(expired, pr)
				continue
			}
			sends = append(sends, resend{pr.match, pr.src, pr.seq})
			pr.rto *= 2
			pr.next = now.Add(pr.rto)
			if !pr.deadline.IsZero() && pr.deadline.Before(pr.next) {
				pr.next = pr.deadline
			}
			heap.Fix(&p.timers, 0)
		}
		wait := synIdleClose
		switch {
		case len(p.timers) > 0:
			wait = p.timers[0].next.Sub(now)
		case len(p.pending) == 0 && now.Sub(p.idle) >= synIdleClose:
			p.mu.Unlock()
			if p.closeIdle() {
				return
			}
			continue
		case len(p.pending) == 0:
			wait = synIdleClose - now.Sub(p.idle)
		}
		closed := p.closed
		p.armed = now.Add(wait)
		p.mu.Unlock()
		for i, pr := range expired {
			pr.done(os.ErrDeadlineExceeded)
			expired[i] = nil
		}
		if closed {
			return
		}
		for _, s := range sends {
			_ = p.send(s.m, s.src, s.seq) // an unanswered SYN times out
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-p.wake:
		case <-p.done:
			return
		}
	}
}

// closeIdle closes p if it is still idle, and reports whether it did.
func (p *synProber) closeIdle() bool {
	p.reg.mu.Lock()
	p.mu.Lock()
	idle := len(p.pending) == 0 && !p.closed
	if idle {
		_ = p.closeLocked()
	}
	p.mu.Unlock()
	p.reg.mu.Unlock()
	if idle {
		p.closeFiles()
	}
	return idle
}

// close closes p: its pending probes end with errProberClosed, and the
// checks that use p open another.
func (p *synProber) close() {
	p.reg.mu.Lock()
	p.mu.Lock()
	closed := p.closed
	var ended []*synProbe
	if !closed {
		ended = p.closeLocked()
	}
	p.mu.Unlock()
	p.reg.mu.Unlock()
	for _, pr := range ended {
		pr.done(errProberClosed)
	}
	if !closed {
		p.closeFiles()
	}
}

// closeLocked marks p closed, forgets it and returns its pending probes,
// which the caller ends. Called with p.reg.mu and p.mu held.
func (p *synProber) closeLocked() []*synProbe {
	p.closed = true
	if p.reg.m[p.key] == p {
		delete(p.reg.m, p.key)
	}
	var ended []*synProbe
	for _, pr := range p.pending {
		p.removeLocked(pr)
		ended = append(ended, pr)
	}
	close(p.done)
	return ended
}

// closeFiles closes p's sockets. Called without p.mu: closing waits for
// the reader, which may be waiting for the lock to complete a probe.
func (p *synProber) closeFiles() {
	p.raw.Close()
	unix.Close(p.hold)
}

// probeHeap orders probes by their next timer.
type probeHeap []*synProbe

func (h probeHeap) Len() int           { return len(h) }
func (h probeHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h probeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *probeHeap) Push(x any) {
	pr := x.(*synProbe)
	pr.index = len(*h)
	*h = append(*h, pr)
}
func (h *probeHeap) Pop() any {
	old := *h
	pr := old[len(old)-1]
	old[len(old)-1] = nil
	pr.index = -1
	*h = old[:len(old)-1]
	return pr
}
