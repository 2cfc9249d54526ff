package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// pingPayload is the data of an echo request.
var pingPayload = []byte("xlb check - xlb check - xlb check - xlb check - xlb chec")

// pingChecker sends one ICMP (ICMPv6) echo request to the target's
// address and passes when the echo reply comes back within the timeout,
// as keepalived's PING_CHECK (check_ping.c, icmp_connect_thread and
// recv_it); the port is not used. It uses a ping socket (SOCK_DGRAM,
// IPPROTO_ICMP: the kernel picks the identifier and delivers only its
// replies) where net.ipv4.ping_group_range allows the daemon's group, and
// else a raw socket (root, CAP_NET_RAW) filtered to echo replies, whose
// identifier and sequence it matches. keepalived instead widens
// ping_group_range to 0 when it starts (set_ping_group_range); xlb leaves
// the sysctl alone.
type pingChecker struct {
	target netip.Addr
	bind   netip.Addr
	id     int
	seq    atomic.Uint32
}

func newPingChecker(s Spec) *pingChecker {
	// Each checker has its own identifier, so that the raw sockets of two
	// checks of one address, which both see every reply, tell theirs.
	return &pingChecker{target: s.target().Addr(), bind: s.BindTo, id: int(rand.Uint32() & 0xffff)}
}

func (c *pingChecker) Check(ctx context.Context) error {
	v6 := c.target.Is6()
	bind := "0.0.0.0"
	if v6 {
		bind = "::"
	}
	if c.bind.IsValid() {
		bind = c.bind.String()
	}
	dgram := true
	conn, err := icmp.ListenPacket(map[bool]string{false: "udp4", true: "udp6"}[v6], bind)
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EPROTONOSUPPORT) {
		// Not in ping_group_range: a raw socket, which needs CAP_NET_RAW.
		dgram = false
		conn, err = icmp.ListenPacket(map[bool]string{false: "ip4:icmp", true: "ip6:ipv6-icmp"}[v6], bind)
	}
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(deadlinePast) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := 1 // IPPROTO_ICMP
	if v6 {
		reqType, replyType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	if !dgram { // only echo replies reach the socket
		if v6 {
			var f ipv6.ICMPFilter
			f.SetAll(true)
			f.Accept(ipv6.ICMPTypeEchoReply)
			err = conn.IPv6PacketConn().SetICMPFilter(&f)
		} else {
			var f ipv4.ICMPFilter
			f.SetAll(true)
			f.Accept(ipv4.ICMPTypeEchoReply)
			err = conn.IPv4PacketConn().SetICMPFilter(&f)
		}
		if err != nil {
			return fmt.Errorf("ping: icmp filter: %w", err)
		}
	}
	seq := int(c.seq.Add(1) & 0xffff)
	msg, err := (&icmp.Message{Type: reqType, Body: &icmp.Echo{ID: c.id, Seq: seq, Data: pingPayload}}).Marshal(nil)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	var dst net.Addr = &net.IPAddr{IP: c.target.AsSlice()}
	if dgram {
		dst = &net.UDPAddr{IP: c.target.AsSlice()}
	}
	if _, err := conn.WriteTo(msg, dst); err != nil {
		return fmt.Errorf("ping send: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("ping: no echo reply: %w", err)
		}
		if src, ok := netip.AddrFromSlice(addrIP(from)); !ok || src.Unmap() != c.target.Unmap() {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		// A ping socket's identifier is the kernel's (its port).
		if !ok || echo.Seq != seq || !dgram && echo.ID != c.id {
			continue
		}
		return nil
	}
}

func addrIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.IPAddr:
		return a.IP
	}
	return nil
}
