package sync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Transport carries datagrams between directors.
type Transport interface {
	// Send sends b to to; the zero address sends to every peer (the
	// multicast group, or each unicast peer).
	Send(to netip.Addr, b []byte) error
	// Receive reads the next datagram into buf.
	Receive(buf []byte) (n int, from netip.Addr, err error)
	// MaxLen is the longest datagram payload that needs no fragment.
	MaxLen() int
	Close() error
}

// UDPOptions configure a UDP transport.
type UDPOptions struct {
	Interface string
	Port      uint16
	// Group is the multicast group (joined on Interface, sent to with TTL
	// 1 and no loopback, as IPVS's make_send_sock); used when Peers is
	// empty.
	Group netip.Addr
	// Peers: unicast instead.
	Peers []netip.Addr
}

// UDP is the transport of the sync: one IPv4 socket bound to the port on
// the interface (SO_BINDTODEVICE), a member of the group.
type UDP struct {
	opts   UDPOptions
	conn   *net.UDPConn
	maxLen int
}

// ListenUDP opens the transport.
func ListenUDP(opts UDPOptions) (*UDP, error) {
	ifc, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("sync interface %s: %w", opts.Interface, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if serr = unix.BindToDevice(int(fd), opts.Interface); serr != nil {
				return
			}
			// A bulk dump arrives in bursts: room for thousands of
			// datagrams (root may exceed rmem_max).
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", opts.Port))
	if err != nil {
		return nil, fmt.Errorf("sync socket on %s port %d: %w", opts.Interface, opts.Port, err)
	}
	u := &UDP{opts: opts, conn: pc.(*net.UDPConn), maxLen: ifc.MTU - 28}
	if len(opts.Peers) == 0 {
		if err := u.joinGroup(ifc.Index); err != nil {
			u.conn.Close()
			return nil, err
		}
	}
	return u, nil
}

func (u *UDP) joinGroup(ifindex int) error {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		g := u.opts.Group.As4()
		mreq := &unix.IPMreqn{Multiaddr: g, Ifindex: int32(ifindex)}
		if serr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); serr != nil {
			serr = fmt.Errorf("join %s on %s: %w", u.opts.Group, u.opts.Interface, serr)
			return
		}
		if serr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)}); serr != nil {
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0)
	})
	return errors.Join(err, serr)
}

// Send implements Transport.
func (u *UDP) Send(to netip.Addr, b []byte) error {
	var dsts []netip.Addr
	switch {
	case to.IsValid():
		dsts = []netip.Addr{to}
	case len(u.opts.Peers) > 0:
		dsts = u.opts.Peers
	default:
		dsts = []netip.Addr{u.opts.Group}
	}
	var errs []error
	for _, d := range dsts {
		if _, err := u.conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(d, u.opts.Port)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Receive implements Transport.
func (u *UDP) Receive(buf []byte) (int, netip.Addr, error) {
	n, from, err := u.conn.ReadFromUDPAddrPort(buf)
	return n, from.Addr().Unmap(), err
}

// MaxLen implements Transport.
func (u *UDP) MaxLen() int { return u.maxLen }

// Close implements Transport.
func (u *UDP) Close() error { return u.conn.Close() }
