package xdp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// The routed test environment: clients behind eth0, real servers behind
// eth1 (directly, or through a gateway for tunnels), with static
// neighbours, as a NAT director's namespace.
var (
	cliMAC  = net.HardwareAddr{0x02, 0xcc, 0, 0, 0, 0x10}
	gwMAC   = net.HardwareAddr{0x02, 0xdd, 0, 0, 0, 0xfd}
	rip4    = netip.MustParseAddr("10.0.1.1")
	rip6    = netip.MustParseAddr("2001:db8:1::1")
	tunRS4  = netip.MustParseAddr("10.0.2.1")
	tunRS6  = netip.MustParseAddr("2001:db8:2::1")
	eth1IP4 = netip.MustParseAddr("10.0.1.254")
	eth1IP6 = netip.MustParseAddr("2001:db8:1::fe")
	vip4b   = netip.MustParseAddr("10.0.0.3")
)

func routedEnv(t *testing.T) *env {
	t.Helper()
	return routedEnvOpts(t, Options{Interfaces: []string{"eth0", "eth1"}, SyncInterval: -1, MapSizes: testSizes})
}

// routedEnvOpts is routedEnv with the dataplane opened with opts.
func routedEnvOpts(t *testing.T, opts Options) *env {
	t.Helper()
	e := newEnv(t)
	ns := e.ns
	for _, c := range [][]string{
		{"sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"},
		{"sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
		{"ip", "link", "set", "peer0", "up"},
		{"ip", "link", "set", "peer1", "up"},
		{"ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"},
		{"ip", "addr", "add", "2001:db8:c::1/64", "dev", "eth0", "nodad"},
		{"ip", "addr", "add", eth1IP4.String() + "/24", "dev", "eth1"},
		{"ip", "addr", "add", eth1IP6.String() + "/64", "dev", "eth1", "nodad"},
		{"ip", "neigh", "replace", "192.0.2.10", "lladdr", cliMAC.String(), "dev", "eth0", "nud", "permanent"},
		{"ip", "neigh", "replace", "2001:db8:c::10", "lladdr", cliMAC.String(), "dev", "eth0", "nud", "permanent"},
		{"ip", "neigh", "replace", rip4.String(), "lladdr", rsMAC[0].String(), "dev", "eth1", "nud", "permanent"},
		{"ip", "neigh", "replace", rip6.String(), "lladdr", rsMAC[0].String(), "dev", "eth1", "nud", "permanent"},
		{"ip", "neigh", "replace", "10.0.1.253", "lladdr", gwMAC.String(), "dev", "eth1", "nud", "permanent"},
		{"ip", "neigh", "replace", "2001:db8:1::fd", "lladdr", gwMAC.String(), "dev", "eth1", "nud", "permanent"},
		{"ip", "route", "add", "10.0.2.0/24", "via", "10.0.1.253"},
		{"ip", "route", "add", "2001:db8:2::/64", "via", "2001:db8:1::fd"},
	} {
		ns.MustRun(t, c[0], c[1:]...)
	}
	// Attached to both interfaces, as a NAT director (redirects need them
	// in the devmap).
	e.d.Close()
	if err := ns.Do(func() (err error) {
		e.d, err = Open(opts)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

// runOn runs a frame received on ifindex.
func (e *env) runOn(ifindex int, frame []byte) (uint32, []byte) {
	e.t.Helper()
	out := make([]byte, len(frame)+256)
	opts := ebpf.RunOptions{Data: frame, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}}
	var ret uint32
	if err := e.ns.Do(func() (err error) { ret, err = e.d.Program().Run(&opts); return err }); err != nil {
		e.t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, opts.DataOut
}

func natService(vip netip.Addr, proto dataplane.Proto, backends ...netip.AddrPort) dataplane.Service {
	s := dataplane.Service{
		Name: "nat", Key: dataplane.ServiceKey{Addr: vip, Port: 80, Proto: proto},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Enabled: true,
	}
	for _, b := range backends {
		s.Backends = append(s.Backends, dataplane.Backend{Addr: b.Addr(), Port: b.Port(), Weight: 1})
	}
	return s
}

func expectFrame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
	if err := packet.VerifyChecksums(got); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func TestNAT(t *testing.T) {
	e := routedEnv(t)
	e.apply(
		natService(vip4b, dataplane.TCP, netip.AddrPortFrom(rip4, 8080)),
		natService(vip4b, dataplane.UDP, netip.AddrPortFrom(rip4, 5353)),
		natService(vip6, dataplane.TCP, netip.AddrPortFrom(rip6, 8080)),
		natService(vip6, dataplane.UDP, netip.AddrPortFrom(rip6, 5353)),
	)
	cases := []struct {
		name       string
		client     netip.Addr
		vip, rip   netip.Addr
		proto      uint8
		rport      uint16
		zeroUDPSum bool
	}{
		{"ipv4 tcp", client4, vip4b, rip4, packet.TCP, 8080, false},
		{"ipv4 udp", client4, vip4b, rip4, packet.UDP, 5353, false},
		{"ipv4 udp zero checksum", client4, vip4b, rip4, packet.UDP, 5353, true},
		{"ipv6 tcp", client6, vip6, rip6, packet.TCP, 8080, false},
		{"ipv6 udp", client6, vip6, rip6, packet.UDP, 5353, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			sport := uint16(41000 + i)
			in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: tc.client, Dst: tc.vip, Proto: tc.proto,
				SrcPort: sport, DstPort: 80, TCPFlags: packet.SYN, Payload: []byte("hello, real server"), ZeroUDPChecksum: tc.zeroUDPSum}
			ret, out := e.runOn(e.eth0, in.Bytes())
			if ret != xdpRedirect {
				t.Fatalf("inbound: action %s, want REDIRECT to eth1 (verdicts %v)", actionNames[ret], e.verdicts())
			}
			want := in
			want.SrcMAC, want.DstMAC, want.Dst, want.DstPort = eth1MAC, rsMAC[0], tc.rip, tc.rport
			expectFrame(t, "inbound, translated to the real server", out, want.Bytes())
			if tc.zeroUDPSum {
				if p, _ := packet.Parse(out); binary.BigEndian.Uint16(p.L4[6:]) != 0 {
					t.Error("a zero IPv4 UDP checksum became non-zero")
				}
			}

			reply := packet.Frame{SrcMAC: rsMAC[0], DstMAC: eth1MAC, Src: tc.rip, Dst: tc.client, Proto: tc.proto,
				SrcPort: tc.rport, DstPort: sport, TCPFlags: packet.SYN | packet.ACK, Payload: []byte("hello, client")}
			ret, out = e.runOn(e.eth1, reply.Bytes())
			if ret != xdpRedirect {
				t.Fatalf("reply: action %s, want REDIRECT to eth0 (verdicts %v)", actionNames[ret], e.verdicts())
			}
			wantReply := reply
			wantReply.SrcMAC, wantReply.DstMAC, wantReply.Src, wantReply.SrcPort = eth0MAC, cliMAC, tc.vip, 80
			expectFrame(t, "reply, translated back to the VIP", out, wantReply.Bytes())

			// Established: the next packets (flow cache) are translated the same.
			ack := in
			ack.TCPFlags = packet.ACK
			if _, out = e.runOn(e.eth0, ack.Bytes()); true {
				w := ack
				w.SrcMAC, w.DstMAC, w.Dst, w.DstPort = eth1MAC, rsMAC[0], tc.rip, tc.rport
				expectFrame(t, "established inbound", out, w.Bytes())
			}
			if _, out = e.runOn(e.eth1, reply.Bytes()); true {
				expectFrame(t, "established reply", out, wantReply.Bytes())
			}
		})
	}
	st, _ := e.d.Stats(t.Context())
	if st.Events["nat_reply"] == 0 {
		t.Errorf("nat_reply not counted: %v", st.Events)
	}
	k := natService(vip4b, dataplane.TCP).Key
	if c := st.Services[k].Backends[dataplane.BackendKey{Addr: rip4, Port: 8080}]; c.PacketsOut != 2 || c.Packets != 2 {
		t.Errorf("backend counters %+v, want 2 packets in and 2 out", c.Counters)
	}
}

func TestNATNoNeighbourGoesToKernel(t *testing.T) {
	e := routedEnv(t)
	unresolved := netip.MustParseAddr("10.0.1.77")
	e.apply(natService(vip4b, dataplane.TCP, netip.AddrPortFrom(unresolved, 8080)))
	in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.SYN}
	ret, out := e.runOn(e.eth0, in.Bytes())
	if ret != xdpPass || e.verdicts()["pass_no_neigh"] != 1 {
		t.Fatalf("action %s, verdicts %v: want PASS, counted as pass_no_neigh", actionNames[ret], e.verdicts())
	}
	// Translated already: the kernel forwards it and resolves the neighbour.
	want := in
	want.Dst, want.DstPort = unresolved, 8080
	expectFrame(t, "passed to the kernel, translated", out, want.Bytes())
}

// outerIPv4 is the tunnel header the test expects in front of inner.
func outerIPv4(src, dst netip.Addr, proto uint8, df bool, tos uint8, innerLen int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	h[1] = tos
	binary.BigEndian.PutUint16(h[2:], uint16(20+innerLen))
	if df {
		h[6] = 0x40
	}
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], packet.Checksum(h))
	return h
}

func tunnelService(vip netip.Addr, encap dataplane.Encap, src netip.Prefix, rs ...netip.Addr) dataplane.Service {
	s := dataplane.Service{
		Name: "tun", Key: dataplane.ServiceKey{Addr: vip, Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.MaglevHashing, Forward: dataplane.Tunnel, Enabled: true,
		Tunnel: dataplane.TunnelOptions{Encap: encap, GUEPort: 6080, Source: src},
	}
	for _, a := range rs {
		s.Backends = append(s.Backends, dataplane.Backend{Addr: a, Port: 80, Weight: 1})
	}
	return s
}

func TestTunnelIPIP(t *testing.T) {
	e := routedEnv(t)
	e.apply(tunnelService(vip4b, dataplane.EncapIPIP, netip.Prefix{}, tunRS4))
	in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 40000, DstPort: 80,
		TCPFlags: packet.SYN, DontFragment: true, Payload: []byte("through the tunnel")}
	frame := in.Bytes()
	ret, out := e.runOn(e.eth0, frame)
	if ret != xdpRedirect {
		t.Fatalf("action %s, want REDIRECT (verdicts %v)", actionNames[ret], e.verdicts())
	}
	inner := packet.IPPacket(frame)
	// Outer source: the director's address toward the real server (eth1).
	want := append(append(append([]byte{}, gwMAC...), eth1MAC...), 0x08, 0x00)
	want = append(want, outerIPv4(eth1IP4, tunRS4, packet.IPIP, true, 0, len(inner))...)
	want = append(want, inner...)
	expectFrame(t, "IPIP", out, want)
}

func TestTunnelIP6IP6AndGUE(t *testing.T) {
	e := routedEnv(t)
	e.apply(
		tunnelService(vip6, dataplane.EncapIPIP, netip.Prefix{}, tunRS6),
		func() dataplane.Service {
			s := tunnelService(vip4b, dataplane.EncapGUE, netip.MustParsePrefix("10.0.9.0/24"), tunRS4)
			return s
		}(),
	)
	// IPv6 in IPv6: outer source the director's address toward the real
	// server, flow label from the flow's hash.
	in6 := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client6, Dst: vip6, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.SYN}
	f6 := in6.Bytes()
	ret, out := e.runOn(e.eth0, f6)
	if ret != xdpRedirect {
		t.Fatalf("ip6ip6: action %s (verdicts %v)", actionNames[ret], e.verdicts())
	}
	inner := packet.IPPacket(f6)
	want := ethHeader(gwMAC, eth1MAC, 0x86dd)
	want = append(want, outerIPv6(eth1IP6, tunRS6, packet.IPv6, 0, frameHash(in6), len(inner))...)
	expectFrame(t, "ip6ip6", out, append(want, inner...))

	// GUE, outer source from the configured prefix (host bits 1..254 from
	// the flow's hash), source port from the hash too.
	sources := map[netip.Addr]bool{}
	ports := map[uint16]bool{}
	for sport := uint16(40000); sport < 40040; sport++ {
		in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: sport, DstPort: 80, TCPFlags: packet.SYN}
		frame := in.Bytes()
		ret, out := e.runOn(e.eth0, frame)
		if ret != xdpRedirect {
			t.Fatalf("gue: action %s (verdicts %v)", actionNames[ret], e.verdicts())
		}
		h := frameHash(in)
		src := netip.AddrFrom4([4]byte{10, 0, 9, byte(1 + h%254)})
		gport := uint16(49152 + h%16384)
		inner := packet.IPPacket(frame)
		want := ethHeader(gwMAC, eth1MAC, 0x0800)
		want = append(want, outerIPv4(src, tunRS4, packet.UDP, false, 0, 8+4+len(inner))...)
		want = append(want, gueHeaders(gport, 6080, packet.IPIP, len(inner))...)
		want = append(want, inner...)
		expectFrame(t, fmt.Sprintf("GUE, flow from port %d", sport), out, want)
		sources[src], ports[gport] = true, true
	}
	if len(sources) < 10 || len(ports) < 10 {
		t.Errorf("40 flows used %d outer sources and %d GUE source ports: not spread per flow", len(sources), len(ports))
	}
}

func TestTunnelTooBigAnswersICMP(t *testing.T) {
	e := routedEnv(t)
	e.apply(tunnelService(vip4b, dataplane.EncapIPIP, netip.Prefix{}, tunRS4), tunnelService(vip6, dataplane.EncapIPIP, netip.Prefix{}, tunRS6))
	big := bytes.Repeat([]byte("x"), 1500-20-20)
	in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 40000, DstPort: 80,
		TCPFlags: packet.SYN, DontFragment: true, Payload: big}
	frame := in.Bytes()
	ret, out := e.runOn(e.eth0, frame)
	if ret != xdpTX || e.verdicts()["tx_icmp_too_big"] != 1 {
		t.Fatalf("action %s, verdicts %v: want TX of ICMP fragmentation needed", actionNames[ret], e.verdicts())
	}
	quote := packet.IPPacket(frame)[:28]
	icmp := packet.ICMPMessage(3, 4, 1480, quote) // MTU 1500 minus the 20-byte outer header
	want := packet.Frame{SrcMAC: eth0MAC, DstMAC: cliMAC, Src: vip4b, Dst: client4, Proto: packet.ICMP, L4: icmp}.Bytes()
	expectFrame(t, "fragmentation needed", out, want)

	// Without DF it may not be fragmented by XDP: dropped, counted.
	in.DontFragment = false
	if ret, _ := e.runOn(e.eth0, in.Bytes()); ret != xdpDrop || e.verdicts()["drop_too_big"] != 1 {
		t.Errorf("no-DF oversize: action %s verdicts %v", actionNames[ret], e.verdicts())
	}

	big6 := bytes.Repeat([]byte("y"), 1500-40-20)
	in6 := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client6, Dst: vip6, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.SYN, Payload: big6}
	frame6 := in6.Bytes()
	ret, out = e.runOn(e.eth0, frame6)
	if ret != xdpTX {
		t.Fatalf("ipv6: action %s verdicts %v", actionNames[ret], e.verdicts())
	}
	icmp6 := packet.ICMPv6Message(vip6, client6, 2, 0, 1460, packet.IPPacket(frame6)[:48])
	want6 := packet.Frame{SrcMAC: eth0MAC, DstMAC: cliMAC, Src: vip6, Dst: client6, Proto: packet.ICMPv6, L4: icmp6}.Bytes()
	expectFrame(t, "packet too big", out, want6)
}

// TestNATReplyWithoutState: a director that has no state for a NAT flow
// (it just took over) gets the real server's reply first: it translates it
// by the real server's address and creates both directions, so the
// client's next packet goes to that real server even with rr.
func TestNATReplyWithoutState(t *testing.T) {
	e := routedEnv(t)
	rip2 := netip.MustParseAddr("10.0.1.2")
	e.ns.MustRun(t, "ip", "neigh", "replace", rip2.String(), "lladdr", rsMAC[1].String(), "dev", "eth1", "nud", "permanent")
	e.apply(natService(vip4b, dataplane.TCP, netip.AddrPortFrom(rip4, 8080), netip.AddrPortFrom(rip2, 8080)))
	// The reply of a flow this director never saw, from the second real server.
	reply := packet.Frame{SrcMAC: rsMAC[1], DstMAC: eth1MAC, Src: rip2, Dst: client4, Proto: packet.TCP, SrcPort: 8080, DstPort: 43000, TCPFlags: packet.ACK | packet.PSH, Payload: []byte("data")}
	ret, out := e.runOn(e.eth1, reply.Bytes())
	if ret != xdpRedirect {
		t.Fatalf("action %s (verdicts %v)", actionNames[ret], e.verdicts())
	}
	want := reply
	want.SrcMAC, want.DstMAC, want.Src, want.SrcPort = eth0MAC, cliMAC, vip4b, 80
	expectFrame(t, "adopted reply", out, want.Bytes())
	// The client's next packet goes to that real server, not to the next
	// in the rr order.
	for range 3 {
		in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 43000, DstPort: 80, TCPFlags: packet.ACK}
		if _, out := e.runOn(e.eth0, in.Bytes()); !bytes.Equal(out[0:6], rsMAC[1]) {
			t.Fatalf("client packet went to %x, want the adopting real server %s", out[0:6], rsMAC[1])
		}
	}
	if st, _ := e.d.Stats(t.Context()); st.Events["nat_adopt"] != 1 {
		t.Errorf("nat_adopt events %d", st.Events["nat_adopt"])
	}
	// A SYN (without ACK) from a real server opens a connection: no reply,
	// to the kernel.
	syn := reply
	syn.SrcPort, syn.TCPFlags = 8080, packet.SYN
	syn.DstPort = 43001
	if ret, _ := e.runOn(e.eth1, syn.Bytes()); ret != xdpPass {
		t.Errorf("SYN from a real server: %s", actionNames[ret])
	}
}

// TestNATRealsServiceZeroBackendZero: the first real server of the first
// NAT service (service id 0, backend id 0) is recorded for stateless
// replies like every other: a reply from it after a failover is adopted
// and translated back to the VIP, never forwarded with its private source.
// Each real server, the ids it got and the map entry are checked.
func TestNATRealsServiceZeroBackendZero(t *testing.T) {
	e := routedEnv(t)
	rip2 := netip.MustParseAddr("10.0.1.2")
	e.ns.MustRun(t, "ip", "neigh", "replace", rip2.String(), "lladdr", rsMAC[1].String(), "dev", "eth1", "nud", "permanent")
	s := natService(vip4b, dataplane.TCP, netip.AddrPortFrom(rip4, 8080), netip.AddrPortFrom(rip2, 8080))
	e.apply(s)
	st := e.d.services[s.Key]
	if st == nil || st.id != 0 {
		t.Fatalf("the test needs the service to get id 0: %+v", st)
	}
	for i, rs := range []struct {
		addr netip.Addr
		mac  []byte
		id   uint32
	}{{rip4, rsMAC[0], 0}, {rip2, rsMAC[1], 1}} {
		bk := dataplane.BackendKey{Addr: rs.addr, Port: 8080}
		id, ok := uint32(0), false
		for _, x := range st.ids {
			if e.d.backends.get(x).key() == bk {
				id, ok = x, true
			}
		}
		if !ok || id != rs.id {
			t.Fatalf("real server %s has backend id %d (%v), the test needs %d", rs.addr, id, ok, rs.id)
		}
		key := svcKey(dataplane.ServiceKey{Addr: rs.addr, Port: 8080, Proto: dataplane.TCP})
		var v bpfXlbNatReal
		if err := e.d.objs.XlbNatRealsV1.Lookup(&key, &v); err != nil || v != (bpfXlbNatReal{Svc: 0, Backend: rs.id}) {
			t.Errorf("xlb_nat_reals_v1[%s:8080] = %+v (%v), want service 0 backend %d", rs.addr, v, err, rs.id)
		}
		reply := packet.Frame{SrcMAC: rs.mac, DstMAC: eth1MAC, Src: rs.addr, Dst: client4, Proto: packet.TCP,
			SrcPort: 8080, DstPort: uint16(43100 + i), TCPFlags: packet.ACK | packet.PSH, Payload: []byte("data")}
		ret, out := e.runOn(e.eth1, reply.Bytes())
		if ret != xdpRedirect {
			t.Fatalf("reply from %s (backend %d): action %s, want REDIRECT translated (verdicts %v)", rs.addr, rs.id, actionNames[ret], e.verdicts())
		}
		want := reply
		want.SrcMAC, want.DstMAC, want.Src, want.SrcPort = eth0MAC, cliMAC, vip4b, 80
		expectFrame(t, fmt.Sprintf("adopted reply of backend %d", rs.id), out, want.Bytes())
	}
}

// A NAT connection is counted once (ipvsadm's ActiveConn, and the counts
// sed, nq, ovf, twos and the thresholds read), not once more for its reply
// entry.
func TestNATConnectionCountedOnce(t *testing.T) {
	e := routedEnv(t)
	s := natService(vip4b, dataplane.TCP, netip.AddrPortFrom(rip4, 8080))
	e.apply(s)
	for _, flags := range []uint8{packet.SYN, packet.ACK} {
		in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: flags}
		if ret, _ := e.runOn(e.eth0, in.Bytes()); ret != xdpRedirect {
			t.Fatalf("client packet: %s, want forwarded (verdicts %v)", actionNames[ret], e.verdicts())
		}
	}
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := e.d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Services[s.Key].Backends[s.Backends[0].Key()]; c.ActiveConns != 1 || c.InactiveConns != 0 {
		t.Errorf("%d active, %d inactive connections, want 1 and 0", c.ActiveConns, c.InactiveConns)
	}
	if c := e.conns(s, 0); c.Active != 1 || c.Inactive != 0 {
		t.Errorf("counts %+v after a sync, want 1 active", c)
	}
}
