package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// LinuxNetwork is the Network of a Linux host (of the network namespace
// the process runs in): raw IP sockets for VRRP, AF_PACKET for ARP and
// NA, netlink for addresses, links and macvlans.
type LinuxNetwork struct{}

var _ Network = (*LinuxNetwork)(nil)

// Link implements Network.
func (*LinuxNetwork) Link(name string, exclude []netip.Addr) (Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return Link{}, fmt.Errorf("link %s: %w", name, err)
	}
	a := l.Attrs()
	out := Link{Name: name, Index: a.Index, MAC: a.HardwareAddr, Up: a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_RUNNING != 0}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return Link{}, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok || slices.Contains(exclude, ip.Unmap()) {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.Is4() && !out.Addr4.IsValid() && ad.Flags&unix.IFA_F_SECONDARY == 0:
			out.Addr4 = ip
		case ip.Is6() && ip.IsLinkLocalUnicast() && !out.Addr6.IsValid() && ad.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0:
			out.Addr6 = ip
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/forwarding"); err == nil {
		out.Router = strings.TrimSpace(string(b)) == "1"
	}
	return out, nil
}

func bindToDevice(ifname string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifname) })
		return errors.Join(err, serr)
	}
}

// ListenVRRP implements Network.
func (*LinuxNetwork) ListenVRRP(ifname string, v6 bool) (PacketConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: bindToDevice(ifname)}
	if v6 {
		return listenVRRP6(lc, ifi)
	}
	return listenVRRP4(lc, ifi)
}

type vrrpConn4 struct {
	c   net.PacketConn
	raw *ipv4.RawConn
}

func listenVRRP4(lc net.ListenConfig, ifi *net.Interface) (PacketConn, error) {
	c, err := lc.ListenPacket(context.Background(), "ip4:112", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	raw, err := ipv4.NewRawConn(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	err = errors.Join(
		raw.JoinGroup(ifi, &net.IPAddr{IP: MulticastGroup4.AsSlice()}),
		raw.SetMulticastInterface(ifi),
		raw.SetMulticastLoopback(false),
	)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("raw socket options on %s: %w", ifi.Name, err)
	}
	return &vrrpConn4{c: c, raw: raw}, nil
}

func (v *vrrpConn4) ReadPacket(buf []byte) (int, netip.Addr, netip.Addr, int, error) {
	for {
		h, p, _, err := v.raw.ReadFrom(buf)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, 0, err
		}
		src, ok1 := netip.AddrFromSlice(h.Src.To4())
		dst, ok2 := netip.AddrFromSlice(h.Dst.To4())
		if !ok1 || !ok2 || h.Protocol != IPProtoVRRP {
			continue
		}
		// A fragment or a truncated datagram is no VRRP packet.
		if h.Flags&ipv4.MoreFragments != 0 || h.FragOff != 0 || h.TotalLen != h.Len+len(p) {
			p = nil
		}
		n := copy(buf, p)
		return n, src, dst, h.TTL, nil
	}
}

func (v *vrrpConn4) WritePacket(payload []byte, src, dst netip.Addr) error {
	h := &ipv4.Header{
		Version:  ipv4.Version,
		Len:      ipv4.HeaderLen,
		TOS:      vrrpTOS,
		TotalLen: ipv4.HeaderLen + len(payload),
		TTL:      vrrpTTL,
		Protocol: IPProtoVRRP,
		Src:      src.AsSlice(),
		Dst:      dst.AsSlice(),
	}
	return v.raw.WriteTo(h, payload, nil)
}

func (v *vrrpConn4) Close() error { return v.c.Close() }

type vrrpConn6 struct {
	c     net.PacketConn
	pc    *ipv6.PacketConn
	ifi   *net.Interface
	zone  string
	index int
}

func listenVRRP6(lc net.ListenConfig, ifi *net.Interface) (PacketConn, error) {
	c, err := lc.ListenPacket(context.Background(), "ip6:112", "::")
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	pc := ipv6.NewPacketConn(c)
	err = errors.Join(
		pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true),
		pc.JoinGroup(ifi, &net.IPAddr{IP: MulticastGroup6.AsSlice()}),
		pc.SetMulticastInterface(ifi),
		pc.SetMulticastHopLimit(vrrpTTL),
		pc.SetHopLimit(vrrpTTL),
		pc.SetMulticastLoopback(false),
	)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("raw socket options on %s: %w", ifi.Name, err)
	}
	return &vrrpConn6{c: c, pc: pc, ifi: ifi, zone: ifi.Name, index: ifi.Index}, nil
}

func (v *vrrpConn6) ReadPacket(buf []byte) (int, netip.Addr, netip.Addr, int, error) {
	for {
		n, cm, src, err := v.pc.ReadFrom(buf)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, 0, err
		}
		ia, ok := src.(*net.IPAddr)
		if !ok || cm == nil {
			continue
		}
		s, ok1 := netip.AddrFromSlice(ia.IP)
		d, ok2 := netip.AddrFromSlice(cm.Dst)
		if !ok1 || !ok2 {
			continue
		}
		return n, s, d, cm.HopLimit, nil
	}
}

func (v *vrrpConn6) WritePacket(payload []byte, src, dst netip.Addr) error {
	cm := &ipv6.ControlMessage{HopLimit: vrrpTTL, Src: src.AsSlice(), IfIndex: v.index}
	zone := ""
	if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() || dst.IsInterfaceLocalMulticast() {
		zone = v.zone
	}
	_, err := v.pc.WriteTo(payload, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: zone})
	return err
}

func (v *vrrpConn6) Close() error { return v.c.Close() }

// ListenFrames implements Network with an AF_PACKET socket bound to the
// interface: ARP, or (v6) neighbour advertisements only, by a socket
// filter.
func (*LinuxNetwork) ListenFrames(ifname string, v6 bool) (FrameConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	proto := uint16(etherTypeARP)
	if v6 {
		proto = etherTypeIPv6
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	if v6 {
		if err := attachNAFilter(fd); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket to %s: %w", ifname, err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	return &frameConn{f: f, rc: rc, index: ifi.Index, proto: proto}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// attachNAFilter keeps ICMPv6 neighbour advertisements without extension
// headers, so the socket does not copy all IPv6 traffic to user space.
func attachNAFilter(fd int) error {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
		bpf.LoadAbsolute{Off: ethHeaderLen + ip6HeaderLen, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmp6NA, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return fmt.Errorf("assemble NA filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attach NA filter: %w", err)
	}
	return nil
}

type frameConn struct {
	f     *os.File
	rc    syscall.RawConn
	index int
	proto uint16
}

func (c *frameConn) ReadFrame(buf []byte) (int, error) {
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return 0, err
		}
		if rerr != nil {
			return 0, fmt.Errorf("recvfrom: %w", rerr)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		return n, nil
	}
}

func (c *frameConn) WriteFrame(frame []byte) error {
	if len(frame) < ethHeaderLen {
		return errors.New("frame shorter than an Ethernet header")
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(c.proto), Ifindex: c.index, Halen: 6}
	copy(to.Addr[:], frame[0:6])
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), frame, 0, to)
		return werr != unix.EAGAIN
	})
	return errors.Join(err, werr)
}

func (c *frameConn) Close() error { return c.f.Close() }

func vipAddr(v VIP) (netlink.Link, *netlink.Addr, error) {
	l, err := netlink.LinkByName(v.Dev)
	if err != nil {
		return nil, nil, fmt.Errorf("link %s: %w", v.Dev, err)
	}
	p := v.Prefix
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Label: v.Label}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return l, a, nil
}

// AddAddr implements Network.
func (*LinuxNetwork) AddAddr(v VIP) error {
	l, a, err := vipAddr(v)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", v.Prefix, v.Dev, err)
	}
	return nil
}

// DelAddr implements Network.
func (*LinuxNetwork) DelAddr(v VIP) error {
	l, a, err := vipAddr(v)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil // gone with its link
		}
		return err
	}
	if err := netlink.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s from %s: %w", v.Prefix, v.Dev, err)
	}
	return nil
}

// EnsureVMAC implements Network: a macvlan in private mode with the
// virtual MAC. The parent must not answer ARP for the VIPs itself, so its
// arp_ignore is set to 1 as keepalived does.
func (*LinuxNetwork) EnsureVMAC(parent, name string, mac net.HardwareAddr) error {
	p, err := netlink.LinkByName(parent)
	if err != nil {
		return fmt.Errorf("link %s: %w", parent, err)
	}
	if l, err := netlink.LinkByName(name); err == nil {
		if l.Type() != "macvlan" || l.Attrs().ParentIndex != p.Attrs().Index {
			return fmt.Errorf("%s exists and is not a macvlan of %s", name, parent)
		}
		if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("set mac of %s: %w", name, err)
		}
		return netlink.LinkSetUp(l)
	}
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index, HardwareAddr: mac}, Mode: netlink.MACVLAN_MODE_PRIVATE}
	if err := netlink.LinkAdd(mv); err != nil {
		return fmt.Errorf("add macvlan %s on %s: %w", name, parent, err)
	}
	for _, kv := range [][2]string{{"/proc/sys/net/ipv4/conf/" + parent + "/arp_ignore", "1"}, {"/proc/sys/net/ipv4/conf/" + name + "/arp_ignore", "1"}} {
		if err := os.WriteFile(kv[0], []byte(kv[1]), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", kv[0], err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// DeleteVMAC implements Network.
func (*LinuxNetwork) DeleteVMAC(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// WatchLinks implements Network with a netlink link subscription.
func (*LinuxNetwork) WatchLinks(ctx context.Context, report func(name string, up bool)) error {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case errc <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to links: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("link subscription: %w", err)
		case u, ok := <-ch:
			if !ok {
				return errors.New("link subscription closed")
			}
			a := u.Attrs()
			up := a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_RUNNING != 0 && u.Header.Type != unix.RTM_DELLINK
			report(a.Name, up)
		}
	}
}
