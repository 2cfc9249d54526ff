package health

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
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
	// busyKick (capacity 1) wakes the reader of a prober with a tap when
	// a probe is pending again.
	busyKick chan struct{}
	done     chan struct{} // closed when the prober closes

	mu      sync.Mutex
	pending map[uint64]*synProbe // by their match's key
	// peak is the most probes pending since pending was made: a map
	// keeps the room it grew to (pendingShrink).
	peak   int
	timers probeHeap
	closed bool
	idle   time.Time // since when nothing is pending
	// armed is when the timer goroutine wakes next: a probe due earlier
	// wakes it, a later one (the usual case) does not.
	armed time.Time
	// routes are the synRoutes of p by source, shared by the checks
	// (tens of thousands of them use one or a few).
	routes map[netip.Addr]*synRoute

	// tap takes the answers off the wire (synprobe_tap.go): nil unless
	// the daemon set one for the prober's network namespace. watched are
	// the sources it takes them for.
	tap     *tapState
	watched []netip.Addr
	// pkt sends the IPv4 SYNs that can bypass the stack (synsend.go):
	// nil without a tap that names its interfaces.
	pkt *pktSender

	// sendCalls and recvCalls count the system calls that sent SYNs and
	// read answers (for the tests).
	sendCalls, recvCalls atomic.Uint64
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

// key is m's key in synProber.pending: its acknowledgement number and a
// fold of its address and port. Two probes pending at once never share a
// key (startIn draws another sequence number), and an answer is the
// probe's of its key only if their matches are equal. A map keyed by the
// 40 bytes of synMatch hashed and compared them all at every probe's
// start and answer (issue 13).
func (m synMatch) key() uint64 {
	var fold uint32
	if m.addr.Is4() {
		a := m.addr.As4()
		fold = binary.BigEndian.Uint32(a[:])
	} else {
		a := m.addr.As16()
		for i := 0; i < 16; i += 4 {
			fold ^= binary.BigEndian.Uint32(a[i:])
		}
	}
	return uint64(m.ack)<<32 | uint64(fold^uint32(m.port)<<16)
}

// synProbe is one probe waiting for its answer.
type synProbe struct {
	match  synMatch
	target netip.AddrPort
	src    netip.Addr // IPv4: the source address, for the checksum
	via    *pktPath   // nil: the SYN leaves through the raw socket
	seq    uint32
	// raw: done gets the verdict as it is, not as net.Dial's error (a
	// Manager's run makes its tcpError of it directly, probeEnded).
	raw bool
	// retry: the interface had no room for the SYN, and next is when it
	// is sent again, not a resend. refusals counts the times it had none
	// (busySYN waits synBusyWait << refusals-1): a byte in the padding
	// after raw, where a duration made a Manager's run 8 bytes larger
	// (352 bytes, a size class, to 360).
	retry    bool
	refusals uint8
	deadline time.Time
	next     time.Time     // the next resend, or the deadline
	rto      time.Duration // the wait before the next resend
	index    int           // in synProber.timers; -1 when not there
	done     func(error)   // called once (by end), with no lock held
	// ended is when the verdict came, for done to read (endAt); zero:
	// done reads the clock.
	ended time.Time
}

const (
	// synRTO is the wait before the first resend of a SYN, doubled at
	// each resend: the kernel's initial retransmission timeout for a SYN
	// (TCP_TIMEOUT_INIT, RFC 6298 2.1).
	synRTO = time.Second
	// synBusyWait is how long a SYN the interface had no room for
	// (ENOBUFS: a veth's ring or a queue full) waits before it is sent
	// again, doubled at each refusal in a row of the same SYN. A veth's
	// peer drains a ring of 256 frames in well under a millisecond, once
	// its NAPI runs.
	synBusyWait = time.Millisecond
	// synBusyMaxShift caps the doubling of synBusyWait: 1 ms << 10 is
	// about a second, the wait of a SYN's first resend.
	synBusyMaxShift = 10
	// synIdleClose is how long a prober with no probe waits before it
	// closes its sockets.
	synIdleClose = time.Minute
	// synWindow is the window of the SYNs (the kernel's for an MSS of
	// 1460: 44 segments).
	synWindow = 64240
	// synReadEvery is how often the reader reads while probes are
	// pending: a check's answer waits that long at most.
	synReadEvery = time.Millisecond
	// synTapReadEvery is synReadEvery for a prober with a tap: its
	// answers wait in the tap's rings, and the reader's wake-ups were the
	// most of the Go scheduler's work left (as the Manager's timers, up
	// to timerSlack late).
	synTapReadEvery = timerSlack
	// synTapBackstop is synTapReadEvery while a Manager's scheduler
	// drains the tap (drainProbeTaps).
	synTapBackstop = 50 * time.Millisecond
	// pendingShrink is the size from which a prober's pending map is
	// made again, smaller, once an eighth of it is left. A Go map never
	// gives back the room it grew to: after a burst (a start, a reload, a
	// storm of probes unanswered until their timeout, 38,000 at 12,800 a
	// second and a 3 s timeout), the few tens pending were looked up in a
	// table of tens of thousands of slots, and its memory stayed.
	pendingShrink = 1024
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
	mu  sync.Mutex
	m   map[synKey]*synProber
	tap *tapState // SetProbeTap's
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
	if ps.tap != nil && ps.tap.netns == key.netns {
		p.tap = ps.tap
		if !key.v6 {
			p.pkt = openPktSender(ps.tap.tap)
		}
	}
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
		wake: make(chan struct{}, 1), busyKick: make(chan struct{}, 1), done: make(chan struct{}),
		pending: make(map[uint64]*synProbe), idle: time.Now(),
		routes: make(map[netip.Addr]*synRoute),
	}, nil
}

// route returns the synRoute of p and src.
func (p *synProber) route(src netip.Addr) *synRoute {
	p.mu.Lock()
	r := p.routes[src]
	added := r == nil
	if added {
		r = &synRoute{p: p, src: src}
		p.routes[src] = r
	}
	p.mu.Unlock()
	if added {
		p.watch(src)
	}
	return r
}
