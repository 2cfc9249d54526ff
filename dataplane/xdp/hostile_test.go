package xdp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// Hostile input (issue 11): what the kernel's input path drops before IPVS
// sees it, the fast path drops too, with a verdict per reason. Each class
// is a table of exact frames: the input, the action and verdict expected,
// and the output bytes where the frame is forwarded. The frames arrive on
// eth0 of a routed director attached to eth0 and eth1 (routedEnv), sent
// from a client behind eth0 to eth0's MAC unless a case says otherwise.

// hostileEnv is routedEnv with DR services on vip4 and vip6, TCP and UDP
// port 80, whose real server (rsMAC[0]) sits behind eth0: a forwarded
// frame leaves by XDP_TX with only its MACs changed.
func hostileEnv(t *testing.T) *env {
	t.Helper()
	e := routedEnv(t)
	rs4, rs6 := e.rs(0, "10.0.1.1", 1), e.rs(0, "2001:db8:1::1", 1)
	e.apply(
		drService(vip4, dataplane.TCP, dataplane.RoundRobin, rs4),
		drService(vip4, dataplane.UDP, dataplane.RoundRobin, rs4),
		drService(vip6, dataplane.TCP, dataplane.RoundRobin, rs6),
		drService(vip6, dataplane.UDP, dataplane.RoundRobin, rs6),
	)
	return e
}

type hostileCase struct {
	name    string
	in      []byte
	action  uint32
	verdict string
	out     []byte // forwarded frames: the exact output; nil: the input untouched (pass), or not checked (drop)
}

// dr is the frame a DR director sends for in: the real server's MAC, eth0's.
func dr(in []byte) []byte { return withMACs(in, rsMAC[0], eth0MAC) }

// runHostile runs the cases' frames received on eth0.
func runHostile(t *testing.T, e *env, cases []hostileCase) {
	t.Helper()
	runHostileOn(t, e, e.eth0, cases)
}

func runHostileOn(t *testing.T, e *env, ingress int, cases []hostileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			before := e.verdicts()
			ret, out := e.runOn(ingress, tc.in)
			after := e.verdicts()
			if ret != tc.action || after[tc.verdict] != before[tc.verdict]+1 {
				t.Fatalf("action %s, want %s counted as %s (verdicts before %v, after %v)", actionNames[ret], actionNames[tc.action], tc.verdict, before, after)
			}
			want := tc.out
			if want == nil && tc.action == xdpPass {
				want = tc.in
			}
			if want != nil && !bytes.Equal(out, want) {
				t.Errorf("output\n got %x\nwant %x", out, want)
			}
		})
	}
}

// syn4 is a client's SYN to vip4:80 from source port sport.
func syn4(sport uint16) packet.Frame {
	f := tcpFrame(client4, vip4, sport, 80, packet.SYN)
	f.SrcMAC = cliMAC
	return f
}

func syn6(sport uint16) packet.Frame {
	f := tcpFrame(client6, vip6, sport, 80, packet.SYN)
	f.SrcMAC = cliMAC
	return f
}

// withIPOptions is f with IPv4 options.
func withIPOptions(f packet.Frame, opts ...byte) []byte {
	f.IPOptions = opts
	return f.Bytes()
}

// TestHostileIPv4Header: options as ip_options_compile accepts them, no
// source route (accept_source_route is 0 by default), a correct header
// checksum (ip_rcv_core).
func TestHostileIPv4Header(t *testing.T) {
	e := hostileEnv(t)
	nop4 := withIPOptions(syn4(41000), 1, 1, 1, 1)
	rr := withIPOptions(syn4(41001), 7, 7, 4, 0, 0, 0, 0, 0)     // record route, room for one address
	rrFull := withIPOptions(syn4(41002), 7, 7, 8, 0, 0, 0, 0, 0) // pointer past the end: full
	ra := withIPOptions(syn4(41003), 148, 4, 0, 0)               // router alert
	tsFull := withIPOptions(syn4(41004), 68, 4, 5, 0xe0)         // timestamp full, overflow 14
	unknown := withIPOptions(syn4(41005), 130, 4, 0, 0)          // security: not checked by the kernel
	padded := padTo(withIPOptions(func() packet.Frame { f := syn4(41006); f.Payload = nil; return f }(), 1, 0, 0, 0), 64)
	badSum := syn4(41010).Bytes()
	badSum[14+10] ^= 0x40
	otherSum := tcpFrame(client4, netip.MustParseAddr("10.0.0.99"), 41011, 22, packet.SYN).Bytes()
	otherSum[14+10] ^= 0x01
	runHostile(t, e, []hostileCase{
		// Valid options, forwarded as they are.
		{"four no-ops", nop4, xdpTX, "tx", dr(nop4)},
		{"record route", rr, xdpTX, "tx", dr(rr)},
		{"record route full", rrFull, xdpTX, "tx", dr(rrFull)},
		{"router alert", ra, xdpTX, "tx", dr(ra)},
		{"timestamp full, overflow counted", tsFull, xdpTX, "tx", dr(tsFull)},
		{"unknown option", unknown, xdpTX, "tx", dr(unknown)},
		{"options, padded frame", padded, xdpTX, "tx", dr(padded)},
		// Malformed.
		{"option length 0", withIPOptions(syn4(41020), 130, 0, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"option length 1", withIPOptions(syn4(41021), 130, 1, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"option past the header", withIPOptions(syn4(41022), 130, 8, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"option past the header after no-ops", withIPOptions(syn4(41023), 1, 1, 1, 130, 6, 0, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"a lone option type at the end", withIPOptions(syn4(41024), 1, 1, 1, 68), xdpDrop, "drop_ip_options", nil},
		{"record route pointer 3", withIPOptions(syn4(41025), 7, 7, 3, 0, 0, 0, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"record route without room for its address", withIPOptions(syn4(41026), 7, 5, 4, 0), xdpDrop, "drop_ip_options", nil},
		{"record route twice", withIPOptions(syn4(41027), 7, 3, 4, 7, 3, 4, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"timestamp pointer 4", withIPOptions(syn4(41028), 68, 8, 4, 0, 0, 0, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"timestamp full, overflow 15", withIPOptions(syn4(41029), 68, 4, 5, 0xf0), xdpDrop, "drop_ip_options", nil},
		{"timestamp with addresses, no room", withIPOptions(syn4(41030), 68, 8, 5, 1, 0, 0, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"router alert of 3 bytes", withIPOptions(syn4(41031), 148, 3, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"cipso (no DOI configured)", withIPOptions(syn4(41032), 134, 8, 0, 0, 0, 1, 0, 0), xdpDrop, "drop_ip_options", nil},
		{"malformed loose source route", withIPOptions(syn4(41033), 131, 7, 3, 10, 0, 1, 1, 0), xdpDrop, "drop_ip_options", nil},
		// Source routed.
		{"loose source route", withIPOptions(syn4(41040), 131, 7, 4, 10, 0, 1, 1, 0), xdpDrop, "drop_source_route", nil},
		{"strict source route", withIPOptions(syn4(41041), 137, 7, 4, 10, 0, 1, 1, 0), xdpDrop, "drop_source_route", nil},
		{"source route behind a no-op", withIPOptions(syn4(41042), 1, 131, 7, 4, 10, 0, 1, 1), xdpDrop, "drop_source_route", nil},
		// Header checksum.
		{"header checksum wrong", badSum, xdpDrop, "drop_ip_csum", nil},
		{"header checksum wrong, not for a service", otherSum, xdpDrop, "drop_ip_csum", nil},
	})

	// Established: the flow cache's packets are not summed again (about
	// 10 ns each); their real server's kernel drops a wrong one. On one
	// CPU: the cache is per CPU (a run on another one missed it, and the
	// slow path dropped the packet, on a busy machine).
	ack := syn4(41050)
	ack.TCPFlags = packet.ACK
	for range 2 { // the first is cached
		if ret, _ := e.runOnCPU0(e.eth0, ack.Bytes()); ret != xdpTX {
			t.Fatalf("established flow: %s", actionNames[ret])
		}
	}
	bad := ack.Bytes()
	bad[14+10] ^= 0x40
	if ret, out := e.runOnCPU0(e.eth0, bad); ret != xdpTX || !bytes.Equal(out, dr(bad)) {
		t.Errorf("cached flow, wrong header checksum: %s %x, want forwarded as it is", actionNames[ret], out)
	}
}

// TestHostileTransportHeaders: tcp_v4_rcv's data offset within the
// segment, __udp4_lib_rcv's length (and __udp6_lib_rcv's), with the IP
// length as the segment's end, never the Ethernet padding.
func TestHostileTransportHeaders(t *testing.T) {
	e := hostileEnv(t)
	bare := func(f packet.Frame) packet.Frame { f.Payload = nil; return f }
	withByte := func(b []byte, off int, v ...byte) []byte { return patch(b, off, v...) }
	tcp4 := 14 + 20
	tcp6 := 14 + 40
	doff15 := withByte(bare(syn4(42000)).Bytes(), tcp4+12, 0xf0)
	doff15Padded := padTo(doff15, 80)
	tcpOpts := func() []byte { // data offset 6: the payload's 4 bytes are options (no-ops)
		f := syn4(42002)
		f.Payload = []byte{1, 1, 1, 1}
		return withByte(f.Bytes(), tcp4+12, 0x60)
	}()
	udp := func(sport uint16, v6 bool) packet.Frame {
		f := udpFrame(client4, vip4, sport, 80)
		if v6 {
			f = udpFrame(client6, vip6, sport, 80)
		}
		f.SrcMAC, f.Payload = cliMAC, []byte("four")
		return f
	}
	udpLen := func(f packet.Frame, n uint16, l4 int) []byte {
		b := f.Bytes()
		binary.BigEndian.PutUint16(b[l4+4:], n)
		return b
	}
	udp10 := udpLen(udp(42030, false), 10, tcp4)
	udpPadded := padTo(udp(42031, false).Bytes(), 60)
	udp6Zero := udpLen(udp(42032, true), 0, tcp6)
	firstFrag := func() []byte { // a first fragment: the length is the whole datagram's
		f := udp(42033, false)
		f.MoreFragments = true
		return udpLen(f, 1000, tcp4)
	}()
	runHostile(t, e, []hostileCase{
		{"tcp data offset 15 in a 20-byte segment", doff15, xdpDrop, "drop_tcp_header", nil},
		{"tcp data offset 15, frame padded past it", doff15Padded, xdpDrop, "drop_tcp_header", nil},
		{"tcp data offset 15 over ipv6", withByte(bare(syn6(42001)).Bytes(), tcp6+12, 0xf0), xdpDrop, "drop_tcp_header", nil},
		{"tcp options within the segment", tcpOpts, xdpTX, "tx", dr(tcpOpts)},
		{"udp length 0 in a 12-byte datagram", udpLen(udp(42010, false), 0, tcp4), xdpDrop, "drop_udp_length", nil},
		{"udp length 4", udpLen(udp(42011, false), 4, tcp4), xdpDrop, "drop_udp_length", nil},
		{"udp length 1000", udpLen(udp(42012, false), 1000, tcp4), xdpDrop, "drop_udp_length", nil},
		{"udp length 13, one past the datagram", udpLen(udp(42013, false), 13, tcp4), xdpDrop, "drop_udp_length", nil},
		{"udp length 1000, frame padded", padTo(udpLen(udp(42014, false), 1000, tcp4), 200), xdpDrop, "drop_udp_length", nil},
		{"udpv6 length 4", udpLen(udp(42015, true), 4, tcp6), xdpDrop, "drop_udp_length", nil},
		{"udpv6 length 1000", udpLen(udp(42016, true), 1000, tcp6), xdpDrop, "drop_udp_length", nil},
		// The kernel trims a datagram to a shorter UDP length, and IPv6
		// takes 0 as the jumbogram form (the payload's length).
		{"udp length 10 in a 12-byte datagram", udp10, xdpTX, "tx", dr(udp10)},
		{"udp padded frame", udpPadded, xdpTX, "tx", dr(udpPadded)},
		{"udpv6 length 0", udp6Zero, xdpTX, "tx", dr(udp6Zero)},
		{"udp first fragment, length of the datagram", firstFrag, xdpTX, "tx", dr(firstFrag)},
	})
}

// TestHostileIPv6ExtensionHeaders: hop-by-hop options only first (RFC 8200
// 4.1); up to XLB_MAX_IPV6_EXT (4) extension headers parsed, more dropped.
func TestHostileIPv6ExtensionHeaders(t *testing.T) {
	e := hostileEnv(t)
	hbh := packet.ExtHeader{Type: packet.HopByHop}
	dst := packet.ExtHeader{Type: packet.DestOpts}
	rt := packet.ExtHeader{Type: packet.Routing, Body: []byte{253, 0}} // experimental type, no segments left
	with := func(sport uint16, hs ...packet.ExtHeader) []byte {
		f := syn6(sport)
		f.ExtHeaders = hs
		return f.Bytes()
	}
	frag := func(sport uint16, hs ...packet.ExtHeader) []byte {
		f := udpFrame(client6, vip6, sport, 80)
		f.SrcMAC, f.MoreFragments, f.FragID, f.ExtHeaders = cliMAC, true, 7, hs
		return f.Bytes()
	}
	four := with(43000, hbh, dst, rt, dst)
	threeAndFrag := frag(43001, hbh, dst, rt)
	one := with(43002, dst)
	runHostile(t, e, []hostileCase{
		{"destination options", one, xdpTX, "tx", dr(one)},
		{"four extension headers", four, xdpTX, "tx", dr(four)},
		{"three and a fragment header", threeAndFrag, xdpTX, "tx", dr(threeAndFrag)},
		{"five extension headers", with(43003, hbh, dst, rt, dst, dst), xdpDrop, "drop_ipv6_ext", nil},
		{"four and a fragment header", frag(43004, hbh, dst, rt, dst), xdpDrop, "drop_ipv6_ext", nil},
		{"hop-by-hop second", with(43005, dst, hbh), xdpDrop, "drop_ipv6_hbh", nil},
		{"hop-by-hop twice", with(43006, hbh, hbh), xdpDrop, "drop_ipv6_hbh", nil},
	})
}

// TestHostileMartianSources: a flow is not created for a source the
// kernel calls martian (ip_route_input_slow, fib_validate_source with
// accept_local and route_localnet at their default 0; ip6_rcv_core).
func TestHostileMartianSources(t *testing.T) {
	e := hostileEnv(t)
	from := func(src netip.Addr, sport uint16) []byte {
		f := tcpFrame(src, vip4, sport, 80, packet.SYN)
		if src.Is6() {
			f = tcpFrame(src, vip6, sport, 80, packet.SYN)
		}
		f.SrcMAC = cliMAC
		return f.Bytes()
	}
	classE := from(netip.MustParseAddr("240.0.0.1"), 44001)
	ok := from(client4, 44000)
	cases := []hostileCase{
		{"a client", ok, xdpTX, "tx", dr(ok)},
		{"class E (the kernel accepts it)", classE, xdpTX, "tx", dr(classE)},
	}
	for i, a := range []string{
		"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.1.2.3", "224.0.0.5", "239.255.255.250", "255.255.255.255",
		"10.0.0.3",   // the VIP itself
		"192.0.2.1",  // the director's address on eth0
		"10.0.1.254", // the director's address on eth1
		"::1", "ff02::1", "ff0e::1",
	} {
		cases = append(cases, hostileCase{"source " + a, from(netip.MustParseAddr(a), uint16(44010+i)), xdpDrop, "drop_martian_src", nil})
	}
	runHostile(t, e, cases)
	// Nothing was scheduled for them: the only connections are the two
	// accepted clients'.
	if n := countConns(t, e); n != 2 {
		t.Errorf("%d connection entries, want 2 (the accepted flows)", n)
	}
}

// countConns counts the tracked flows: connection entries, and embryonic
// ones (a SYN scheduled, its handshake not complete).
func countConns(t *testing.T, e *env) int {
	t.Helper()
	n := 0
	var k bpfXlbFlow
	var v bpfXlbConn
	for it := e.d.objs.XlbConnsV1.Iterate(); it.Next(&k, &v); {
		n++
	}
	return n + len(embryos(t, e))
}

// embryos returns the non-empty words of the embryonic flow table by slot.
func embryos(t testing.TB, e *env) map[uint32]uint64 {
	t.Helper()
	out := map[uint32]uint64{}
	if err := batchAll(e.d.objs.XlbEmbryosV1, func(k uint32, w uint64) {
		if w != 0 {
			out[k] = w
		}
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

var otherMAC = net.HardwareAddr{0x02, 0x99, 0, 0, 0, 0x99}

// TestHostileDestinationMAC: a frame xlb would act on must be addressed to
// the receiving interface (or a device stacked on it); another host's is a
// copy flooded by a switch or mirrored: the kernel drops it
// (PACKET_OTHERHOST) and so does xlb, creating nothing. A broadcast or
// multicast frame goes to the kernel as it is: IPVS takes only PACKET_HOST.
// Frames not for a service pass as before, whatever their MAC.
func TestHostileDestinationMAC(t *testing.T) {
	e := hostileEnv(t)
	e.apply(
		drService(vip4, dataplane.TCP, dataplane.RoundRobin, e.rs(0, "10.0.1.1", 1)),
		natService(netip.MustParseAddr("10.0.0.7"), dataplane.TCP, netip.AddrPortFrom(rip4, 8080)),
	)
	to := func(f packet.Frame, mac net.HardwareAddr) []byte { f.DstMAC = mac; return f.Bytes() }
	other := tcpFrame(client4, netip.MustParseAddr("10.0.0.99"), 45003, 80, packet.SYN)
	own := syn4(45004).Bytes()
	runHostile(t, e, []hostileCase{
		{"another host's MAC", to(syn4(45000), otherMAC), xdpDrop, "drop_other_host", nil},
		{"eth1's MAC on eth0", to(syn4(45001), eth1MAC), xdpDrop, "drop_other_host", nil},
		{"broadcast", to(syn4(45002), net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), xdpPass, "pass_l2_multicast", nil},
		{"multicast", to(syn4(45005), net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 0x12}), xdpPass, "pass_l2_multicast", nil},
		{"not for a service, another host's MAC", to(other, otherMAC), xdpPass, "pass_not_service", nil},
		{"eth0's MAC", own, xdpTX, "tx", dr(own)},
	})
	if n := countConns(t, e); n != 1 {
		t.Errorf("%d connection entries, want 1 (the frame sent to eth0)", n)
	}

	// An established flow: its first packets are sent to eth0 (the second
	// one from the flow cache), then a flooded copy is not.
	ack := syn4(45004)
	ack.TCPFlags = packet.ACK
	for i := range 2 {
		if ret, _ := e.runOn(e.eth0, ack.Bytes()); ret != xdpTX {
			t.Fatalf("established packet %d: %s", i, actionNames[ret])
		}
	}
	runHostile(t, e, []hostileCase{
		{"established flow, another host's MAC", to(ack, otherMAC), xdpDrop, "drop_other_host", nil},
		{"established flow again, eth0's MAC", ack.Bytes(), xdpTX, "tx", dr(ack.Bytes())},
	})

	// NAT: a reply of a tracked flow flooded to the real servers' side.
	in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: netip.MustParseAddr("10.0.0.7"), Proto: packet.TCP, SrcPort: 45010, DstPort: 80, TCPFlags: packet.SYN}
	if ret, _ := e.runOn(e.eth0, in.Bytes()); ret != xdpRedirect {
		t.Fatalf("NAT flow: %s", actionNames[ret])
	}
	reply := packet.Frame{SrcMAC: rsMAC[0], DstMAC: otherMAC, Src: rip4, Dst: client4, Proto: packet.TCP, SrcPort: 8080, DstPort: 45010, TCPFlags: packet.SYN | packet.ACK}
	runHostileOn(t, e, e.eth1, []hostileCase{
		{"NAT reply, another host's MAC", reply.Bytes(), xdpDrop, "drop_other_host", nil},
	})
}

// TestDestinationMACOfStackedDevices: frames for a macvlan on an attached
// interface (VRRP's vmac puts the VIP on one) carry the macvlan's MAC;
// xlb learns it when the macvlan appears, and forgets it when it goes.
func TestDestinationMACOfStackedDevices(t *testing.T) {
	e := hostileEnv(t)
	vmac := net.HardwareAddr{0, 0, 0x5e, 0, 1, 51}
	f := syn4(46000)
	f.DstMAC = vmac
	in := f.Bytes()
	runHostile(t, e, []hostileCase{{"before the macvlan", in, xdpDrop, "drop_other_host", nil}})

	e.ns.MustRun(t, "ip", "link", "add", "vrrp.51", "link", "eth0", "address", vmac.String(), "type", "macvlan", "mode", "private")
	waitIfMAC(t, e, vmac, true)
	runHostile(t, e, []hostileCase{{"to the macvlan", in, xdpTX, "tx", dr(in)}})

	e.ns.MustRun(t, "ip", "link", "del", "vrrp.51")
	waitIfMAC(t, e, vmac, false)
	f.SrcPort = 46001
	runHostile(t, e, []hostileCase{{"after the macvlan", f.Bytes(), xdpDrop, "drop_other_host", nil}})
}

// waitIfMAC waits until xlb_if_macs_v1 has (or no longer has) mac for eth0.
func waitIfMAC(t *testing.T, e *env, mac net.HardwareAddr, present bool) {
	t.Helper()
	k := bpfXlbIfMac{Ifindex: uint32(e.eth0)}
	copy(k.Mac[:], mac)
	nettestWait(t, "xlb_if_macs_v1 to follow the macvlan", func() error {
		var v uint32
		err := e.d.objs.XlbIfMacsV1.Lookup(&k, &v)
		if (err == nil) != present {
			return fmt.Errorf("entry for %s present: %v, want %v", mac, err == nil, present)
		}
		return nil
	})
}

func nettestWait(t *testing.T, what string, cond func() error) {
	t.Helper()
	nettest.WaitFor(t, 10*time.Second, what, cond)
}

// TestRPFilter: with the receiving interface's rp_filter set (max of
// conf/all and conf/IF, read from the sysctls and kept current), a new
// flow's source must be routed back through that interface (strict, 1)
// or at all (loose, 2), as fib_validate_source requires. Established
// flows are not checked again.
func TestRPFilter(t *testing.T) {
	e := hostileEnv(t)
	// Real servers' network (10.0.1.0/24) is behind eth1, 10.0.2.0/24
	// behind a gateway there; 203.0.113.0/24 has no route.
	private, gatewayed, unrouted := netip.MustParseAddr("10.0.1.77"), netip.MustParseAddr("10.0.2.9"), netip.MustParseAddr("203.0.113.5")
	e.ns.MustRun(t, "ip", "route", "add", "blackhole", "198.51.100.0/24")
	blackholed := netip.MustParseAddr("198.51.100.9")
	sport := uint16(47000)
	from := func(src netip.Addr) []byte {
		sport++
		f := tcpFrame(src, vip4, sport, 80, packet.SYN)
		f.SrcMAC = cliMAC
		return f.Bytes()
	}
	fwd := func(src netip.Addr) hostileCase {
		b := from(src)
		return hostileCase{"from " + src.String(), b, xdpTX, "tx", dr(b)}
	}
	drop := func(src netip.Addr) hostileCase {
		return hostileCase{"from " + src.String(), from(src), xdpDrop, "drop_rp_filter", nil}
	}
	setRP := func(all, eth0 string, want uint8) {
		t.Helper()
		nettest.Sysctl(t, e.ns, "net.ipv4.conf.all.rp_filter", all)
		nettest.Sysctl(t, e.ns, "net.ipv4.conf.eth0.rp_filter", eth0)
		nettestWait(t, "rp_filter in xlb_ifaces_v1", func() error {
			var v bpfXlbIface
			if err := e.d.objs.XlbIfacesV1.Lookup(uint32(e.eth0), &v); err != nil {
				return err
			}
			if v.RpFilter != want {
				return fmt.Errorf("rp_filter %d, want %d", v.RpFilter, want)
			}
			return nil
		})
	}

	t.Run("off", func(t *testing.T) {
		setRP("0", "0", 0)
		runHostile(t, e.with(t), []hostileCase{fwd(client4), fwd(private), fwd(unrouted), fwd(blackholed)})
	})
	t.Run("strict", func(t *testing.T) {
		setRP("0", "1", 1)
		runHostile(t, e.with(t), []hostileCase{fwd(client4), drop(private), drop(gatewayed), drop(unrouted), drop(blackholed)})
	})
	t.Run("loose", func(t *testing.T) {
		setRP("0", "2", 2)
		runHostile(t, e.with(t), []hostileCase{fwd(client4), fwd(private), fwd(gatewayed), drop(unrouted), drop(blackholed)})
	})
	t.Run("max of all and the interface", func(t *testing.T) {
		setRP("2", "1", 2)
		runHostile(t, e.with(t), []hostileCase{fwd(private), drop(unrouted)})
		setRP("1", "0", 1)
		runHostile(t, e.with(t), []hostileCase{drop(private)})
	})
	t.Run("established flows are not checked again", func(t *testing.T) {
		setRP("0", "0", 0)
		f := tcpFrame(private, vip4, 47999, 80, packet.SYN)
		f.SrcMAC = cliMAC
		if ret, _ := e.runOn(e.eth0, f.Bytes()); ret != xdpTX {
			t.Fatalf("SYN with rp_filter 0: %s", actionNames[ret])
		}
		setRP("0", "1", 1)
		f.TCPFlags = packet.ACK
		runHostile(t, e.with(t), []hostileCase{{"its ACK", f.Bytes(), xdpTX, "tx", dr(f.Bytes())}})
	})
	t.Run("forwarding off: not checked, counted", func(t *testing.T) {
		setRP("0", "1", 1)
		nettest.Sysctl(t, e.ns, "net.ipv4.conf.eth0.forwarding", "0")
		st, _ := e.d.Stats(t.Context())
		before := st.Events["rp_unchecked"]
		runHostile(t, e.with(t), []hostileCase{fwd(private)})
		if st, _ := e.d.Stats(t.Context()); st.Events["rp_unchecked"] != before+1 {
			t.Errorf("rp_unchecked %d, want %d", st.Events["rp_unchecked"], before+1)
		}
		nettest.Sysctl(t, e.ns, "net.ipv4.conf.eth0.forwarding", "1")
	})
}

// TestNATAdoptOnlyFromTheRealServersSide: a "reply" without state from a
// NAT real server's address that arrives where the real server is not
// (the clients' side) is a spoof: adopting it would create two entries
// and send a packet from VIP:80 to any address the sender chose.
func TestNATAdoptOnlyFromTheRealServersSide(t *testing.T) {
	e := routedEnv(t)
	e.apply(natService(vip4b, dataplane.TCP, netip.AddrPortFrom(rip4, 8080)), natService(vip6, dataplane.TCP, netip.AddrPortFrom(rip6, 8080)))
	victim4, victim6 := netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("2001:db8:c::77")
	spoof := func(src, dst netip.Addr, dport uint16) []byte {
		return packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: src, Dst: dst, Proto: packet.TCP, SrcPort: 8080, DstPort: dport,
			TCPFlags: packet.ACK | packet.PSH, Payload: []byte("x")}.Bytes()
	}
	runHostile(t, e, []hostileCase{
		{"ipv4 spoofed reply on the clients' side", spoof(rip4, victim4, 48000), xdpDrop, "drop_adopt_iface", nil},
		{"ipv6 spoofed reply on the clients' side", spoof(rip6, victim6, 48001), xdpDrop, "drop_adopt_iface", nil},
	})
	if n := countConns(t, e); n != 0 {
		t.Errorf("%d connection entries after spoofed replies, want none", n)
	}
	if st, _ := e.d.Stats(t.Context()); st.Events["nat_adopt"] != 0 {
		t.Errorf("nat_adopt %d, want 0", st.Events["nat_adopt"])
	}
	// The real server's own reply, on its side, is still adopted.
	reply := packet.Frame{SrcMAC: rsMAC[0], DstMAC: eth1MAC, Src: rip4, Dst: victim4, Proto: packet.TCP, SrcPort: 8080, DstPort: 48002,
		TCPFlags: packet.ACK | packet.PSH, Payload: []byte("x")}
	want := reply
	want.SrcMAC, want.DstMAC, want.Src, want.SrcPort = eth0MAC, cliMAC, vip4b, 80
	e.ns.MustRun(t, "ip", "neigh", "replace", victim4.String(), "lladdr", cliMAC.String(), "dev", "eth0", "nud", "permanent")
	runHostileOn(t, e, e.eth1, []hostileCase{{"ipv4 reply on the real server's side", reply.Bytes(), xdpRedirect, "redirect", want.Bytes()}})
}

// untagged is frame without its VLAN tags (the Ethernet header only).
func untagged(frame []byte) []byte {
	off := 12
	for off+4 <= len(frame) && (binary.BigEndian.Uint16(frame[off:]) == 0x8100 || binary.BigEndian.Uint16(frame[off:]) == 0x88a8) {
		off += 4
	}
	return append(bytes.Clone(frame[:12]), frame[off:]...)
}

// TestVLAN: xlb serves a frame received with VLAN tags (one 802.1Q or
// 802.1ad tag, or QinQ) as the same frame untagged, as IPVS behind the
// VLAN device would, and forwards it untagged: where it goes is the real
// server's (DR: its MAC and interface; NAT and tunnel: the route), not
// the VLAN's. With the NIC's default VLAN offload the tag is gone before
// XDP, so the result is the same either way (TestE2EVLANOffload).
func TestVLAN(t *testing.T) {
	e := routedEnv(t)
	e.apply(
		drService(vip4, dataplane.TCP, dataplane.RoundRobin, e.rs(0, "10.0.1.1", 1)),
		drService(vip6, dataplane.TCP, dataplane.RoundRobin, e.rs(0, "2001:db8:1::1", 1)),
		natService(netip.MustParseAddr("10.0.0.7"), dataplane.TCP, netip.AddrPortFrom(rip4, 8080)),
		tunnelService(netip.MustParseAddr("10.0.0.8"), dataplane.EncapIPIP, netip.Prefix{}, tunRS4),
	)
	tag := func(f packet.Frame, outer, inner uint16) packet.Frame { f.OuterVLAN, f.VLAN = outer, inner; return f }
	dot1q := tag(syn4(49000), 0, 42).Bytes()
	dot1ad := tag(syn4(49001), 100, 0).Bytes()
	qinq := tag(syn4(49002), 100, 42).Bytes()
	v6 := tag(syn6(49003), 0, 42).Bytes()
	threeTags := func() []byte {
		b := tag(syn4(49004), 100, 42).Bytes()
		return append(append(bytes.Clone(b[:16]), 0x81, 0x00, 0, 7), b[16:]...)
	}()
	other := tcpFrame(client4, netip.MustParseAddr("10.0.0.99"), 49005, 80, packet.SYN)
	other.VLAN = 42

	natIn := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, VLAN: 42, Src: client4, Dst: netip.MustParseAddr("10.0.0.7"), Proto: packet.TCP, SrcPort: 49010, DstPort: 80, TCPFlags: packet.SYN}
	natOut := natIn
	natOut.VLAN, natOut.SrcMAC, natOut.DstMAC, natOut.Dst, natOut.DstPort = 0, eth1MAC, rsMAC[0], rip4, 8080

	tunIn := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, OuterVLAN: 100, VLAN: 42, Src: client4, Dst: netip.MustParseAddr("10.0.0.8"), Proto: packet.TCP, SrcPort: 49011, DstPort: 80, TCPFlags: packet.SYN}
	inner := packet.IPPacket(tunIn.Bytes())
	tunOut := append(ethHeader(gwMAC, eth1MAC, 0x0800), outerIPv4(eth1IP4, tunRS4, packet.IPIP, false, 0, len(inner))...)
	tunOut = append(tunOut, inner...)

	runHostile(t, e, []hostileCase{
		{"802.1Q", dot1q, xdpTX, "tx", dr(untagged(dot1q))},
		{"802.1ad", dot1ad, xdpTX, "tx", dr(untagged(dot1ad))},
		{"QinQ", qinq, xdpTX, "tx", dr(untagged(qinq))},
		{"802.1Q, ipv6", v6, xdpTX, "tx", dr(untagged(v6))},
		{"NAT, 802.1Q", natIn.Bytes(), xdpRedirect, "redirect", natOut.Bytes()},
		{"tunnel, QinQ", tunIn.Bytes(), xdpRedirect, "redirect", tunOut},
		{"three tags: not parsed", threeTags, xdpPass, "pass_not_ip", nil},
		{"tagged, not for a service", other.Bytes(), xdpPass, "pass_not_service", nil},
	})

	// An established flow's packets, from the flow cache too, and with or
	// without the tag (the same flow whether the NIC took it off or not).
	ack := tag(syn4(49000), 0, 42)
	ack.TCPFlags = packet.ACK
	plain := ack
	plain.VLAN = 0
	runHostile(t, e, []hostileCase{
		{"established, 802.1Q", ack.Bytes(), xdpTX, "tx", dr(plain.Bytes())},
		{"established, 802.1Q, cached", ack.Bytes(), xdpTX, "tx", dr(plain.Bytes())},
		{"established, untagged, cached", plain.Bytes(), xdpTX, "tx", dr(plain.Bytes())},
	})
}

// TestVLANTooBigAnswer: the ICMP answer to a frame too big for a tunnel
// goes back to its sender on the link it came from: tags kept.
func TestVLANTooBigAnswer(t *testing.T) {
	e := routedEnv(t)
	e.apply(tunnelService(vip4b, dataplane.EncapIPIP, netip.Prefix{}, tunRS4))
	in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, OuterVLAN: 100, VLAN: 42, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 49100, DstPort: 80,
		TCPFlags: packet.SYN, DontFragment: true, Payload: bytes.Repeat([]byte("x"), 1500-20-20)}
	frame := in.Bytes()
	icmp := packet.ICMPMessage(3, 4, 1480, packet.IPPacket(frame)[:28])
	want := packet.Frame{SrcMAC: eth0MAC, DstMAC: cliMAC, OuterVLAN: 100, VLAN: 42, Src: vip4b, Dst: client4, Proto: packet.ICMP, L4: icmp}.Bytes()
	runHostile(t, e, []hostileCase{{"QinQ, DF, too big", frame, xdpTX, "tx_icmp_too_big", want}})
}

// TestDestinationMACFollowsTheInterface: the attached interface's own MAC
// changes: frames for the new one are forwarded, frames for the old one
// are another host's.
func TestDestinationMACFollowsTheInterface(t *testing.T) {
	e := hostileEnv(t)
	newMAC := net.HardwareAddr{0x02, 0, 0, 0, 0xe0, 0x99}
	e.ns.MustRun(t, "ip", "link", "set", "eth0", "address", newMAC.String())
	nettestWait(t, "eth0's new MAC in its settings", func() error {
		var slot bpfXlbIface
		if err := e.d.objs.XlbIfslotsV1.Lookup(uint32(e.eth0)%ifaceSlots, &slot); err != nil {
			return err
		}
		if net.HardwareAddr(slot.Mac[:]).String() != newMAC.String() {
			return fmt.Errorf("slot has %s", net.HardwareAddr(slot.Mac[:]))
		}
		return nil
	})
	toNew := syn4(46100)
	toNew.DstMAC = newMAC
	// (The frame's source MAC is the real server's entry's, which the
	// control plane writes at the next Apply: not checked here.)
	if ret, out := e.runOn(e.eth0, toNew.Bytes()); ret != xdpTX || !bytes.Equal(out[:6], rsMAC[0]) || !bytes.Equal(out[12:], toNew.Bytes()[12:]) {
		t.Errorf("to the new MAC: %s %x, want TX to the real server", actionNames[ret], out)
	}
	runHostile(t, e, []hostileCase{
		{"the old MAC", syn4(46101).Bytes(), xdpDrop, "drop_other_host", nil},
	})
}
