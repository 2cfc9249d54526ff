package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// tcpChecker succeeds when the target answers a SYN with a SYN-ACK: the
// moment a connect() to it would succeed (keepalived's TCP_CHECK,
// check_tcp.c, which then closes the connection). It fails with
// "connection refused" on a RST and "i/o timeout" when nothing answers
// by the deadline (the SYN is resent after 1 s, then doubling, as the
// kernel's connect).
//
// Where the daemon may open raw sockets (CAP_NET_RAW), the check is a
// half-open probe (synprobe.go): one shared raw socket sends the SYN,
// the director's kernel resets the SYN-ACK, and the real server never
// sees a connection established; the daemon spends no socket, file
// descriptor or poller entry on a check, and under a Manager no goroutine
// either (startCheck: the prober's goroutines end the runs). At 12,800
// checks a second, creating, connecting and closing a socket per check,
// in a goroutine per check, was most of the daemon's CPU (issue 13).
// Elsewhere it connects a socket of its own (connectReset) and resets
// the connection at once.
type tcpChecker struct {
	target netip.AddrPort
	dest   tcpDest
	// route is the prober and IPv4 source of the checks; nil until the
	// first check, and again after a failure other than a RST (the source
	// is learned again: the route may have changed).
	route atomic.Pointer[synRoute]
}

// tcpDest is what the tcp checks of one Spec share: the address checked
// instead of the real server's when valid (ConnectIP), the source
// (BindTo), and the logger. A Manager's checks point to one (tcpCheck).
type tcpDest struct {
	connectIP netip.Addr
	bindTo    netip.Addr
	log       *slog.Logger // nil discards
}

// synRoute is a prober and the source address of the SYNs it sends for
// a check (IPv4: for the checksum; IPv6: the kernel computes it).
type synRoute struct {
	p   *synProber
	src netip.Addr
	via *pktPath // the SYNs bypass the stack (synsend.go); nil: they do not
	// s is the packet sender whose routes a route through the raw socket
	// was learned from (nil: none, or via's), and gen its count of the
	// route changes then: the route is stale after a change.
	s   *pktSender
	gen uint64
}

// stale reports whether the routes changed, as far as r's sender heard,
// since r was learned.
func (r *synRoute) stale() bool {
	switch {
	case r.via != nil:
		return r.via.stale()
	case r.s != nil:
		return r.gen != r.s.gen.Load()
	}
	return false
}

// fresh reports whether r's sender has heard of no change of the routes
// since r was learned; it reads the changes first when it last did over
// pktRefreshEvery ago. A route without a sender is never fresh: its check
// learns it again after a run that timed out.
func (r *synRoute) fresh(now time.Time) bool {
	switch {
	case r.via != nil:
		return !r.via.stale()
	case r.s != nil:
		r.s.pollRoutes(now)
		return r.gen == r.s.gen.Load()
	}
	return false
}

// routeLearns counts the routes learned (learnRoute), for the tests.
var routeLearns atomic.Uint64

// noSynRoute marks a checker that connects: raw sockets are not allowed.
var noSynRoute = &synRoute{}

// rawFallbackLogged makes the fall back to connect logged once.
var rawFallbackLogged atomic.Bool

func newTCPChecker(s Spec, log *slog.Logger) *tcpChecker {
	return &tcpChecker{target: s.target(), dest: tcpDest{bindTo: s.BindTo, log: log}}
}

func (c *tcpChecker) Check(ctx context.Context) error {
	dl, _ := ctx.Deadline()
	return c.checkBy(ctx, dl)
}

func (c *tcpChecker) checkBy(ctx context.Context, deadline time.Time) error {
	return tcpCheckBy(ctx, deadline, c.target, &c.dest, &c.route)
}

func (c *tcpChecker) startCheck(deadline time.Time, r *asyncRun, b *startBatch) bool {
	return tcpStartCheck(deadline, r, b, c.target, &c.dest, &c.route)
}

// tcpCheck is a Manager's check of type tcp as its own Checker: the
// state of 64,000 checks is their check structs, with nothing more
// allocated for each (its route is the check's, what it shares is its
// Spec's tcpDest).
type tcpCheck check

// probed is the address and port the check's SYNs go to.
func (c *tcpCheck) probed() netip.AddrPort {
	if c.tcp.connectIP.IsValid() {
		return netip.AddrPortFrom(c.tcp.connectIP, c.port)
	}
	return netip.AddrPortFrom((*check)(c).address(), c.port)
}

func (c *tcpCheck) Check(ctx context.Context) error {
	dl, _ := ctx.Deadline()
	return c.checkBy(ctx, dl)
}

func (c *tcpCheck) checkBy(ctx context.Context, deadline time.Time) error {
	return tcpCheckBy(ctx, deadline, c.probed(), c.tcp, &c.route)
}

func (c *tcpCheck) startCheck(deadline time.Time, r *asyncRun, b *startBatch) bool {
	return tcpStartCheck(deadline, r, b, c.probed(), c.tcp, &c.route)
}

// tcpCheckBy checks target from d until deadline (none: zero), or until
// ctx is done; route is the check's.
func tcpCheckBy(ctx context.Context, deadline time.Time, target netip.AddrPort, d *tcpDest, route *atomic.Pointer[synRoute]) error {
	var err error
	for range 3 { // a prober closing under the check: another one
		var r *synRoute
		if r, err = checkRoute(target, d, route); err != nil {
			break
		}
		if r == noSynRoute {
			err = connectReset(ctx, deadline, target, d.bindTo)
			break
		}
		err = r.p.probe(ctx, target, r.src, r.via, deadline)
		if err != nil && relearn(r, err) {
			route.CompareAndSwap(r, nil)
		}
		if !errors.Is(err, errProberClosed) {
			break
		}
	}
	if err != nil {
		return tcpErr(err)
	}
	return nil
}

// tcpStartCheck starts the run run of a check of target from d that
// ends by deadline and returns (the Manager's asyncChecker): its SYN
// waits in b, and run gets its result from the prober's goroutines (or
// from b's flush, when the SYN cannot be sent). It returns false when the
// check must run synchronously (tcpCheckBy): it connects, or its prober
// closed. route is the check's. It allocates nothing of its own: the
// probe is run's, and the prober calls run.probeDone (probeEnded), made
// once for every run run serves.
func tcpStartCheck(deadline time.Time, run *asyncRun, b *startBatch, target netip.AddrPort, d *tcpDest, route *atomic.Pointer[synRoute]) bool {
	r, err := checkRoute(target, d, route)
	if err != nil {
		run.end(tcpErr(err))
		return true
	}
	if r == noSynRoute {
		return false
	}
	run.route, run.r = route, r
	_, err = r.p.startIn(&run.probe, target, r.src, r.via, deadline, run.probeDone, b, true, run.start)
	// Unless err, run may have ended and serve another run already.
	switch {
	case errors.Is(err, errProberClosed):
		route.CompareAndSwap(r, nil)
		return false
	case err != nil:
		route.CompareAndSwap(r, nil)
		run.end(tcpErr(err))
	}
	return true
}

// probeEnded ends run with the verdict of its probe (tcpStartCheck),
// which it gets as it is (synProber.startIn's raw).
func (run *asyncRun) probeEnded(err error) {
	if err != nil {
		if relearn(run.r, err) {
			run.route.CompareAndSwap(run.r, nil) // as tcpCheckBy
		}
		if errors.Is(err, errProberClosed) {
			err = tcpErr(err)
		} else {
			err = tcpDialErr(run.probe.target, err)
		}
	}
	end := run.probe.ended
	if end.IsZero() {
		end = time.Now()
	}
	run.endAt(err, end)
}

// relearn reports whether a check whose run on r failed with err learns
// its route again. A RST came back the way the SYN went; no answer may be
// a stale source (the route changed), unless the route was learned from a
// packet sender that heard of no change of the routes since (it hears of
// them, and so of the addresses', synsend.go), whether the SYN went by
// its packet path or through the raw socket: a real server that is down
// costs no route lookup at each of its runs. At 64,000 checks of real
// servers on the director's link, most go through the raw socket (past
// pktMaxPaths), and a lookup at each run that timed out was about 50 µs
// (46% of the daemon's time when none answered).
func relearn(r *synRoute, err error) bool {
	switch {
	case errors.Is(err, unix.ECONNREFUSED):
		return false
	case errors.Is(err, os.ErrDeadlineExceeded) && r.fresh(time.Now()):
		return false
	}
	return true
}

// checkRoute returns the check's route, learned again when it has none or
// the routes changed since it was learned (a stale packet path).
func checkRoute(target netip.AddrPort, d *tcpDest, route *atomic.Pointer[synRoute]) (*synRoute, error) {
	r := route.Load()
	if r != nil && r.stale() {
		route.CompareAndSwap(r, nil) // the routes changed: learn it again
		r = nil
	}
	if r != nil {
		return r, nil
	}
	return learnRoute(target, d, route)
}

// learnRoute finds the prober of the checks of target from d, and the
// source address of their SYNs, in the calling thread's network
// namespace, and stores it in route.
func learnRoute(target netip.AddrPort, d *tcpDest, route *atomic.Pointer[synRoute]) (*synRoute, error) {
	routeLearns.Add(1)
	addr := target.Addr()
	if addr.Is4In6() {
		// An IPv4 real server spelled as IPv6: the kernel's connect maps
		// it, a raw IPv6 socket cannot send to it.
		route.Store(noSynRoute)
		return noSynRoute, nil
	}
	p, err := probers.get(addr.Is6(), d.bindTo)
	if errors.Is(err, errNoRaw) {
		if !rawFallbackLogged.Swap(true) && d.log != nil {
			d.log.Info("tcp checks connect: no raw socket for half-open checks", "error", err)
		}
		route.Store(noSynRoute)
		return noSynRoute, nil
	}
	if err != nil {
		return nil, opErr(target, err)
	}
	src := d.bindTo
	// IPv4 needs the source for the checksum; a tap needs it to know the
	// answers (IPv6's SYNs still leave with the kernel's choice, and
	// without it the raw socket reads their answers).
	if !src.IsValid() && (addr.Is4() || p.tap != nil) {
		s, err := routeSource(target)
		switch {
		case err == nil:
			src = s
		case addr.Is4():
			return nil, opErr(target, err)
		}
	}
	r := p.route(src)
	if p.pkt != nil {
		if r, err = p.pkt.route(r, addr); err != nil {
			return nil, opErr(target, err)
		}
	}
	route.Store(r)
	return r, nil
}

// tcpError is the error of a tcp check's run: "tcp connect: " and why
// (fmt.Errorf's message), the message made when first read, and kept for
// the next readers (a status or a scrape reads every check's, one after
// the other, from goroutines of their own). When 64,000 real servers
// refuse, fmt.Errorf made a message at every run, 12,800 a second, which
// nobody reads unless a status or a scrape asks; and each check held its
// net.Dial error whole (168 bytes with its address): the usual one, "dial
// tcp TARGET: why", is kept as its target and why (64 bytes), and made
// again when unwrapped.
type tcpError struct {
	target netip.AddrPort // valid: err is why a dial of target failed
	err    error
	msg    atomic.Pointer[string]
}

func tcpErr(err error) error {
	if oe, ok := err.(*net.OpError); ok && oe.Op == "dial" && oe.Net == "tcp" && oe.Source == nil && oe.Err != nil {
		// An address that reads the same as net.TCPAddr and netip (IPv4
		// of 4 bytes, IPv6 that is not IPv4 and has no zone).
		if a, ok := oe.Addr.(*net.TCPAddr); ok && a != nil && a.Zone == "" && a.Port >= 0 && a.Port <= 0xffff {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && (ip.Is4() || ip.Is6() && !ip.Is4In6()) {
				return &tcpError{target: netip.AddrPortFrom(ip, uint16(a.Port)), err: oe.Err}
			}
		}
	}
	return &tcpError{err: err}
}

// tcpDialErr is tcpErr(opErr(target, err)) without net.Dial's error in
// between when the tcpError does not keep it (3 allocations of 4, at
// every run of a check whose real server fails).
func tcpDialErr(target netip.AddrPort, err error) error {
	if a := target.Addr(); a.Zone() == "" && (a.Is4() || a.Is6() && !a.Is4In6()) && err != nil {
		return &tcpError{target: target, err: err}
	}
	return tcpErr(opErr(target, err))
}

func (e *tcpError) Error() string {
	if m := e.msg.Load(); m != nil {
		return *m
	}
	var m string
	if e.target.IsValid() {
		m = "tcp connect: dial tcp " + e.target.String() + ": " + e.err.Error()
	} else {
		m = "tcp connect: " + e.err.Error()
	}
	e.msg.Store(&m)
	return m
}

// Unwrap returns the error of the dial: net.Dial's.
func (e *tcpError) Unwrap() error {
	if e.target.IsValid() {
		return opErr(e.target, e.err)
	}
	return e.err
}

// routeSource is the source address the kernel picks for target: that of
// a UDP socket connected to it.
func routeSource(target netip.AddrPort) (netip.Addr, error) {
	family := unix.AF_INET
	if target.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return netip.Addr{}, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(target)); err != nil {
		return netip.Addr{}, os.NewSyscallError("connect", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.Addr{}, os.NewSyscallError("getsockname", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), nil
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr), nil
	}
	return netip.Addr{}, fmt.Errorf("source of %s: %T", target, sa)
}

// errCanceled is a check stopped by its context's cancellation.
var errCanceled = errors.New("operation was canceled")

// connectReset connects to target (from bindTo, when valid) and resets
// the connection (SO_LINGER 0, as HAProxy's checks close): a director
// checking 64,000 real servers every 5 seconds would otherwise hold
// 768,000 connections in TIME_WAIT, and each close costs the real server
// a FIN exchange. It opens a non-blocking socket itself and waits for the
// connection in Go's poller, without net.Dialer's address parsing,
// keepalive options and name lookups. Its errors read as net.Dial's: "dial tcp ADDR: connect:
// connection refused", "dial tcp ADDR: i/o timeout".
func connectReset(ctx context.Context, deadline time.Time, target netip.AddrPort, bindTo netip.Addr) error {
	opErr := func(err error) error { return opErr(target, err) }
	family := unix.AF_INET
	if target.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return opErr(os.NewSyscallError("socket", err))
	}
	if bindTo.IsValid() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(bindTo, 0))); err != nil {
			unix.Close(fd)
			return opErr(os.NewSyscallError("bind", err))
		}
	}
	err = unix.Connect(fd, sockaddr(target))
	if err == nil {
		reset(fd)
		unix.Close(fd)
		return nil
	}
	if !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return opErr(os.NewSyscallError("connect", err))
	}
	// A real server next door has often answered already (the handshake
	// ran as the SYN left): then the poller is not needed.
	if _, err := unix.Getpeername(fd); err == nil {
		reset(fd)
		unix.Close(fd)
		return nil
	}
	// In progress: wait until the socket is writable (connected or
	// failed) in Go's poller, up to the context's deadline.
	f := os.NewFile(uintptr(fd), "tcp-check")
	defer f.Close()
	if !deadline.IsZero() {
		_ = f.SetWriteDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return opErr(err)
	}
	// The poller reports writability as an edge, and forgets one that came
	// before this wait: each call looks for itself (connected: it has a
	// peer; failed: SO_ERROR says why; neither: still connecting).
	var soErr error
	werr := rc.Write(func(fd uintptr) bool {
		if _, err := unix.Getpeername(int(fd)); err == nil {
			reset(int(fd))
			return true
		}
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			soErr = os.NewSyscallError("getsockopt", err)
		case v != 0:
			soErr = os.NewSyscallError("connect", unix.Errno(v))
		default:
			return false
		}
		return true
	})
	switch {
	case werr != nil && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return opErr(errCanceled)
	case werr != nil:
		return opErr(werr) // os.ErrDeadlineExceeded: "i/o timeout"
	case soErr != nil:
		return opErr(soErr)
	}
	return nil
}

// reset makes closing fd send a reset (SO_LINGER 0).
func reset(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
