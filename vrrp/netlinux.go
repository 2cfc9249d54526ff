package vrrp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane/nldump"
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
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
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

// ListenVRRP implements Network with two raw sockets bound to the
// interface, as keepalived's fd_in and fd_out: one receives protocol 112
// (joined to the VRRP group) and waits in Go's poller; the other only
// sends and stays out of the poller (no write-space events to wake it).
//
// Both transfer with non-blocking RawSyscall: a scheduler-aware syscall
// wakes the runtime's sysmon thread, which then naps in 20µs steps; at
// 20ms adverts that doubled the CPU of a node (BenchmarkFailoverCPU
// reports the CPU and thread switches per advert).
func (*LinuxNetwork) ListenVRRP(ifname string, v6 bool) (PacketConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	c := &vrrpConn{v6: v6, index: ifi.Index, out: -1}
	if err := c.open(ifi); err != nil {
		c.Close()
		return nil, fmt.Errorf("vrrp sockets on %s: %w", ifname, err)
	}
	return c, nil
}

type vrrpConn struct {
	v6    bool
	index int
	in    *os.File
	rc    syscall.RawConn
	out   int
}

func (c *vrrpConn) open(ifi *net.Interface) error {
	family, outProto := unix.AF_INET, unix.IPPROTO_RAW // IPv4 sends build the IP header
	if c.v6 {
		family, outProto = unix.AF_INET6, IPProtoVRRP
	}
	in, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, IPProtoVRRP)
	if err != nil {
		return fmt.Errorf("receive socket: %w", err)
	}
	c.in = os.NewFile(uintptr(in), "vrrp-in")
	if c.rc, err = c.in.SyscallConn(); err != nil {
		return err
	}
	if c.out, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, outProto); err != nil {
		return fmt.Errorf("send socket: %w", err)
	}
	if c.v6 {
		return errors.Join(
			unix.BindToDevice(in, ifi.Name),
			unix.SetsockoptInt(in, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1),
			unix.SetsockoptInt(in, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1),
			unix.SetsockoptIPv6Mreq(in, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP,
				&unix.IPv6Mreq{Multiaddr: MulticastGroup6.As16(), Interface: uint32(ifi.Index)}),
			attachFilter(c.out, []bpf.Instruction{bpf.RetConstant{Val: 0}}), // a send-only socket
			unix.BindToDevice(c.out, ifi.Name),
			unix.SetsockoptInt(c.out, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0),
			unix.SetsockoptInt(c.out, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, vrrpTTL),
			unix.SetsockoptInt(c.out, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, vrrpTTL),
			unix.SetsockoptInt(c.out, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index),
		)
	}
	return errors.Join(
		unix.BindToDevice(in, ifi.Name),
		unix.SetsockoptIPMreqn(in, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
			&unix.IPMreqn{Multiaddr: MulticastGroup4.As4(), Ifindex: int32(ifi.Index)}),
		unix.BindToDevice(c.out, ifi.Name),
		unix.SetsockoptInt(c.out, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0),
		unix.SetsockoptIPMreqn(c.out, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)}),
	)
}

func (c *vrrpConn) Close() error {
	var errs []error
	if c.in != nil {
		errs = append(errs, c.in.Close())
	}
	if c.out >= 0 {
		errs = append(errs, unix.Close(c.out))
	}
	return errors.Join(errs...)
}

// ReadPacket implements PacketConn: IPv4 packets come with their header
// (TTL, addresses), IPv6 ones with ancillary data (hop limit, destination).
func (c *vrrpConn) ReadPacket(buf []byte) (int, netip.Addr, netip.Addr, int, error) {
	var oob [128]byte
	var sa unix.RawSockaddrInet6
	for {
		var n, oobn int
		var errno syscall.Errno
		err := c.rc.Read(func(fd uintptr) bool {
			n, oobn, errno = rawRecvmsg(int(fd), buf, oob[:], unsafe.Pointer(&sa), unix.SizeofSockaddrInet6)
			return errno != unix.EAGAIN
		})
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, 0, err
		}
		if errno != 0 {
			return 0, netip.Addr{}, netip.Addr{}, 0, fmt.Errorf("recvmsg: %w", errno)
		}
		if !c.v6 {
			if m, src, dst, ttl, ok := stripIPv4(buf[:n]); ok {
				return m, src, dst, ttl, nil
			}
			continue
		}
		src := netip.AddrFrom16(sa.Addr)
		dst, hops, ok := parseIPv6Cmsgs(oob[:oobn])
		if !ok {
			continue
		}
		return n, src, dst, hops, nil
	}
}

// stripIPv4 moves the payload of the IPv4 packet in b to the front of b.
// A fragment or a truncated datagram is no VRRP packet: its payload is
// cut to nothing, which the decoder rejects for its length.
func stripIPv4(b []byte) (n int, src, dst netip.Addr, ttl int, ok bool) {
	if len(b) < ipv4HeaderLen || b[0]>>4 != 4 || b[9] != IPProtoVRRP {
		return 0, src, dst, 0, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	ttl = int(b[8])
	if ihl < ipv4HeaderLen || total != len(b) || binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
		return 0, src, dst, ttl, true
	}
	return copy(b, b[ihl:]), src, dst, ttl, true
}

func parseIPv6Cmsgs(oob []byte) (dst netip.Addr, hops int, ok bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return dst, 0, false
	}
	hops = -1
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IPV6 {
			continue
		}
		switch {
		case m.Header.Type == unix.IPV6_HOPLIMIT && len(m.Data) >= 4:
			hops = int(int32(binary.NativeEndian.Uint32(m.Data)))
		case m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			dst = netip.AddrFrom16([16]byte(m.Data[:16]))
		}
	}
	return dst, hops, dst.IsValid() && hops >= 0
}

// WritePacket implements PacketConn.
func (c *vrrpConn) WritePacket(payload []byte, src, dst netip.Addr) error {
	if c.v6 {
		oob := unix.PktInfo6(&unix.Inet6Pktinfo{Addr: src.As16(), Ifindex: uint32(c.index)})
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.As16(), Scope_id: uint32(c.index)}
		return rawSendmsg(c.out, payload, oob, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6)
	}
	b := make([]byte, ipv4HeaderLen+len(payload))
	b[0] = 4<<4 | ipv4HeaderLen/4
	b[1] = vrrpTOS
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[8], b[9] = vrrpTTL, IPProtoVRRP // identification and checksum: the kernel's
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	copy(b[ipv4HeaderLen:], payload)
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
	return rawSendmsg(c.out, b, nil, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4)
}

// rawSendmsg is sendmsg(2) with MSG_DONTWAIT through RawSyscall (it cannot
// block; see ListenVRRP).
func rawSendmsg(fd int, p, oob []byte, sa unsafe.Pointer, salen uint32) error {
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Name: (*byte)(sa), Namelen: salen, Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
	runtime.KeepAlive(p)
	runtime.KeepAlive(oob)
	if errno != 0 {
		return fmt.Errorf("sendmsg: %w", errno)
	}
	return nil
}

// rawRecvmsg is recvmsg(2) with MSG_DONTWAIT through RawSyscall; the
// caller waits for readability in Go's poller.
func rawRecvmsg(fd int, p, oob []byte, sa unsafe.Pointer, salen uint32) (n, oobn int, errno syscall.Errno) {
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Name: (*byte)(sa), Namelen: salen, Iov: &iov, Iovlen: 1, Control: &oob[0]}
	msg.SetControllen(len(oob))
	r, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
	runtime.KeepAlive(p)
	runtime.KeepAlive(oob)
	if errno != 0 {
		return 0, 0, errno
	}
	return int(r), int(msg.Controllen), 0
}

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
	return attachFilter(fd, []bpf.Instruction{
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
		bpf.LoadAbsolute{Off: ethHeaderLen + ip6HeaderLen, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmp6NA, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
}

// attachFilter attaches a classic BPF socket filter.
func attachFilter(fd int, ins []bpf.Instruction) error {
	prog, err := bpf.Assemble(ins)
	if err != nil {
		return fmt.Errorf("assemble socket filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attach socket filter: %w", err)
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
		// Deprecated (preferred lifetime 0, valid forever): a VIP receives
		// but is never chosen as a source address. Without it the kernel may
		// pick the VIP for the director's own connections (health checks of
		// direct-routing real servers, which hold the VIP too and would
		// answer themselves). IPv4 VIPs are secondary addresses already.
		a.PreferedLft, a.ValidLft = 0, 0xffffffff
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
// virtual MAC. The parent must not answer ARP for the VIPs (arp_ignore 1)
// nor ask with a VIP as sender (arp_announce 2: traffic from a VIP leaves
// through the parent, and its ARP requests would re-point clients at the
// parent's MAC). These sysctls stay set after the macvlan is removed.
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
	conf := "/proc/sys/net/ipv4/conf/"
	for _, kv := range [][2]string{{conf + parent + "/arp_ignore", "1"}, {conf + parent + "/arp_announce", "2"}, {conf + name + "/arp_ignore", "1"}} {
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
