package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// tcpChecker succeeds when a TCP connection to the target is established
// (keepalived's TCP_CHECK, check_tcp.c). The connection is then reset
// without sending anything (SO_LINGER 0, as HAProxy's checks close): a
// director checking 64,000 real servers every 5 seconds would otherwise
// hold 768,000 connections in TIME_WAIT, and each close costs the real
// server a FIN exchange.
//
// It opens a non-blocking socket itself and waits for the connection in
// Go's poller, without net.Dialer's address parsing, keepalive options
// and name lookups: at 12,800 checks a second, a check must cost
// microseconds.
type tcpChecker struct {
	target netip.AddrPort
	bindTo netip.Addr
}

func newTCPChecker(s Spec) *tcpChecker {
	return &tcpChecker{target: s.target(), bindTo: s.BindTo}
}

func (c *tcpChecker) Check(ctx context.Context) error {
	dl, _ := ctx.Deadline()
	return c.checkBy(ctx, dl)
}

// checkBy checks until deadline (none: zero), or until ctx is done.
func (c *tcpChecker) checkBy(ctx context.Context, deadline time.Time) error {
	if err := connectReset(ctx, deadline, c.target, c.bindTo); err != nil {
		return fmt.Errorf("tcp connect: %w", err)
	}
	return nil
}

// errCanceled is a check stopped by its context's cancellation.
var errCanceled = errors.New("operation was canceled")

// connectReset connects to target (from bindTo, when valid) and resets
// the connection. Its errors read as net.Dial's: "dial tcp ADDR: connect:
// connection refused", "dial tcp ADDR: i/o timeout".
func connectReset(ctx context.Context, deadline time.Time, target netip.AddrPort, bindTo netip.Addr) error {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(target), Err: err}
	}
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
