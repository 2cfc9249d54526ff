package xdp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

var router4 = netip.MustParseAddr("198.51.100.1")
var router6 = netip.MustParseAddr("2001:db8:ff::1")

// quote is the start of an IP packet as an ICMP error quotes it: the IP
// header and the first 8 bytes of the transport header.
func quote(f packet.Frame) []byte {
	ip := packet.IPPacket(f.Bytes())
	if f.Src.Is4() {
		return ip[:20+8]
	}
	return ip[:40+8]
}

func icmpFrame(src, dst netip.Addr, typ, code uint8, rest uint32, quoted []byte, srcMAC, dstMAC []byte) packet.Frame {
	f := packet.Frame{SrcMAC: srcMAC, DstMAC: dstMAC, Src: src, Dst: dst}
	if src.Is4() {
		f.Proto, f.L4 = packet.ICMP, packet.ICMPMessage(typ, code, rest, quoted)
	} else {
		f.Proto, f.L4 = packet.ICMPv6, packet.ICMPv6Message(src, dst, typ, code, rest, quoted)
	}
	return f
}

func TestICMPErrorsFollowTheirFlow(t *testing.T) {
	e := routedEnv(t)
	dr := drService(netip.MustParseAddr("10.0.0.5"), dataplane.TCP, dataplane.RoundRobin, e.rs(0, "10.0.1.1", 1))
	e.apply(dr,
		natService(vip4b, dataplane.TCP, netip.AddrPortFrom(rip4, 8080)),
		natService(vip4b, dataplane.UDP, netip.AddrPortFrom(rip4, 5353)),
		natService(vip6, dataplane.TCP, netip.AddrPortFrom(rip6, 8080)),
		tunnelService(netip.MustParseAddr("10.0.0.6"), dataplane.EncapIPIP, netip.Prefix{}, tunRS4),
	)
	open := func(src, dst netip.Addr, proto uint8, sport uint16) {
		f := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: src, Dst: dst, Proto: proto, SrcPort: sport, DstPort: 80, TCPFlags: packet.SYN}
		if ret, _ := e.runOn(e.eth0, f.Bytes()); ret != xdpTX && ret != xdpRedirect {
			t.Fatalf("opening flow to %s: %s", dst, actionNames[ret])
		}
	}

	t.Run("dr: to the real server", func(t *testing.T) {
		e := e.with(t)
		open(client4, dr.Key.Addr, packet.TCP, 42000)
		// The real server's reply (from the VIP) could not reach the client.
		q := quote(packet.Frame{Src: dr.Key.Addr, Dst: client4, Proto: packet.TCP, SrcPort: 80, DstPort: 42000, TCPFlags: packet.ACK})
		in := icmpFrame(router4, dr.Key.Addr, 3, 4, 1400, q, cliMAC, eth0MAC).Bytes()
		ret, out := e.runOn(e.eth0, in)
		if ret != xdpTX {
			t.Fatalf("action %s, verdicts %v", actionNames[ret], e.verdicts())
		}
		expectFrame(t, "ICMP error to the DR real server", out, withMACs(in, rsMAC[0], eth0MAC))
	})

	t.Run("nat in: translated to the real server", func(t *testing.T) {
		e := e.with(t)
		open(client4, vip4b, packet.TCP, 42001)
		reply := packet.Frame{Src: vip4b, Dst: client4, Proto: packet.TCP, SrcPort: 80, DstPort: 42001, TCPFlags: packet.ACK}
		in := icmpFrame(router4, vip4b, 3, 4, 1400, quote(reply), cliMAC, eth0MAC).Bytes()
		ret, out := e.runOn(e.eth0, in)
		if ret != xdpRedirect {
			t.Fatalf("action %s, verdicts %v", actionNames[ret], e.verdicts())
		}
		// The quoted reply as the real server sent it: from RIP:8080. Its TCP
		// checksum (beyond the 8 quoted bytes) does not matter.
		translated := reply
		translated.Src, translated.SrcPort = rip4, 8080
		want := icmpFrame(router4, rip4, 3, 4, 1400, quote(translated), eth1MAC, rsMAC[0]).Bytes()
		expectFrame(t, "ICMP error translated for the NAT real server", out, want)
	})

	t.Run("nat out: translated to the client", func(t *testing.T) {
		e := e.with(t)
		open(client4, vip4b, packet.UDP, 42002)
		// The real server got the datagram at RIP:5353 and has no listener.
		got := packet.Frame{Src: client4, Dst: rip4, Proto: packet.UDP, SrcPort: 42002, DstPort: 5353, Payload: []byte("query")}
		q := quote(got)
		in := icmpFrame(rip4, client4, 3, 3, 0, q, rsMAC[0], eth1MAC).Bytes()
		ret, out := e.runOn(e.eth1, in)
		if ret != xdpRedirect {
			t.Fatalf("action %s, verdicts %v", actionNames[ret], e.verdicts())
		}
		sent := got
		sent.Dst, sent.DstPort = vip4b, 80
		wantQ := quote(sent)
		copy(wantQ[20+6:], q[20+6:20+8]) // the quoted UDP checksum is not rewritten
		want := icmpFrame(vip4b, client4, 3, 3, 0, wantQ, eth0MAC, cliMAC).Bytes()
		expectFrame(t, "port unreachable translated for the client", out, want)
	})

	t.Run("nat in ipv6: packet too big", func(t *testing.T) {
		e := e.with(t)
		open(client6, vip6, packet.TCP, 42003)
		reply := packet.Frame{Src: vip6, Dst: client6, Proto: packet.TCP, SrcPort: 80, DstPort: 42003, TCPFlags: packet.ACK}
		in := icmpFrame(router6, vip6, 2, 0, 1280, quote(reply), cliMAC, eth0MAC).Bytes()
		ret, out := e.runOn(e.eth0, in)
		if ret != xdpRedirect {
			t.Fatalf("action %s, verdicts %v", actionNames[ret], e.verdicts())
		}
		translated := reply
		translated.Src, translated.SrcPort = rip6, 8080
		want := icmpFrame(router6, rip6, 2, 0, 1280, quote(translated), eth1MAC, rsMAC[0]).Bytes()
		expectFrame(t, "ICMPv6 packet too big translated", out, want)
	})

	t.Run("tunnel: encapsulated to the real server", func(t *testing.T) {
		e := e.with(t)
		vip := netip.MustParseAddr("10.0.0.6")
		open(client4, vip, packet.TCP, 42004)
		q := quote(packet.Frame{Src: vip, Dst: client4, Proto: packet.TCP, SrcPort: 80, DstPort: 42004, TCPFlags: packet.ACK})
		in := icmpFrame(router4, vip, 11, 0, 0, q, cliMAC, eth0MAC).Bytes()
		ret, out := e.runOn(e.eth0, in)
		if ret != xdpRedirect {
			t.Fatalf("action %s, verdicts %v", actionNames[ret], e.verdicts())
		}
		inner := packet.IPPacket(in)
		want := append(append(append([]byte{}, gwMAC...), eth1MAC...), 0x08, 0x00)
		want = append(want, outerIPv4(eth1IP4, tunRS4, packet.IPIP, false, 0, len(inner))...)
		expectFrame(t, "ICMP time exceeded in the tunnel", out, append(want, inner...))
	})

	t.Run("no flow: to the kernel", func(t *testing.T) {
		e := e.with(t)
		q := quote(packet.Frame{Src: vip4b, Dst: client4, Proto: packet.TCP, SrcPort: 80, DstPort: 9, TCPFlags: packet.ACK})
		in := icmpFrame(router4, vip4b, 3, 1, 0, q, cliMAC, eth0MAC).Bytes()
		ret, out := e.runOn(e.eth0, in)
		if ret != xdpPass || !bytes.Equal(out, in) {
			t.Fatalf("action %s (verdicts %v), want PASS untouched", actionNames[ret], e.verdicts())
		}
	})
	if st, _ := e.d.Stats(t.Context()); st.Events["icmp_error"] != 5 || st.Verdicts["pass_icmp_no_flow"] != 1 {
		t.Errorf("events %v verdicts %v: want 5 ICMP errors relayed, 1 without flow", st.Events, st.Verdicts)
	}
}

// udpFragments splits a UDP datagram (with its checksum over the whole
// datagram) into a first fragment carrying the header and n payload bytes
// and a second carrying the rest.
func udpFragments(src, dst netip.Addr, sport, dport uint16, payload []byte, n int, srcMAC, dstMAC []byte) (first, later packet.Frame) {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	binary.BigEndian.PutUint16(h[6:], packet.L4Checksum(src, dst, packet.UDP, append(append([]byte{}, h...), payload...)))
	base := packet.Frame{SrcMAC: srcMAC, DstMAC: dstMAC, Src: src, Dst: dst, Proto: packet.UDP, ID: 0x4242, FragID: 0x42424242}
	first, later = base, base
	first.MoreFragments, first.L4 = true, append(h, payload[:n]...)
	later.FragOffset, later.L4 = uint16(8+n), append([]byte{}, payload[n:]...)
	return first, later
}

func TestFragments(t *testing.T) {
	e := routedEnv(t)
	drUDP := drService(netip.MustParseAddr("10.0.0.5"), dataplane.UDP, dataplane.MaglevHashing, e.rs(0, "10.0.1.1", 1), e.rs(1, "10.0.1.2", 1))
	e.apply(drUDP,
		natService(vip4b, dataplane.UDP, netip.AddrPortFrom(rip4, 5353)),
		natService(vip6, dataplane.UDP, netip.AddrPortFrom(rip6, 5353)),
	)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 10)

	t.Run("dr: later fragment follows the first", func(t *testing.T) {
		e := e.with(t)
		for c := range 8 {
			first, later := udpFragments(client(c), drUDP.Key.Addr, 5000, 80, payload, 64, cliMAC, eth0MAC)
			_, out1 := e.runOn(e.eth0, first.Bytes())
			_, out2 := e.runOn(e.eth0, later.Bytes())
			if !bytes.Equal(out1[0:6], out2[0:6]) || (!bytes.Equal(out1[0:6], rsMAC[0]) && !bytes.Equal(out1[0:6], rsMAC[1])) {
				t.Fatalf("client %d: first fragment to %x, later to %x", c, out1[0:6], out2[0:6])
			}
		}
	})

	t.Run("nat: both fragments translated", func(t *testing.T) {
		e := e.with(t)
		first, later := udpFragments(client4, vip4b, 5001, 80, payload, 64, cliMAC, eth0MAC)
		ret, out := e.runOn(e.eth0, first.Bytes())
		if ret != xdpRedirect {
			t.Fatalf("first: %s %v", actionNames[ret], e.verdicts())
		}
		wFirst, _ := udpFragments(client4, rip4, 5001, 5353, payload, 64, eth1MAC, rsMAC[0])
		if !bytes.Equal(out, wFirst.Bytes()) {
			t.Errorf("first fragment:\n got %x\nwant %x", out, wFirst.Bytes())
		}
		ret, out = e.runOn(e.eth0, later.Bytes())
		if ret != xdpRedirect {
			t.Fatalf("later: %s %v", actionNames[ret], e.verdicts())
		}
		_, wLater := udpFragments(client4, rip4, 5001, 5353, payload, 64, eth1MAC, rsMAC[0])
		expectFrame(t, "later fragment", out, wLater.Bytes())
	})

	t.Run("nat ipv6: both fragments translated", func(t *testing.T) {
		e := e.with(t)
		first, later := udpFragments(client6, vip6, 5002, 80, payload, 64, cliMAC, eth0MAC)
		if ret, out := e.runOn(e.eth0, first.Bytes()); ret != xdpRedirect {
			t.Fatalf("first: %s %v", actionNames[ret], e.verdicts())
		} else if w, _ := udpFragments(client6, rip6, 5002, 5353, payload, 64, eth1MAC, rsMAC[0]); !bytes.Equal(out, w.Bytes()) {
			t.Errorf("first fragment:\n got %x\nwant %x", out, w.Bytes())
		}
		ret, out := e.runOn(e.eth0, later.Bytes())
		_, w := udpFragments(client6, rip6, 5002, 5353, payload, 64, eth1MAC, rsMAC[0])
		if ret != xdpRedirect || !bytes.Equal(out, w.Bytes()) {
			t.Errorf("later fragment %s:\n got %x\nwant %x", actionNames[ret], out, w.Bytes())
		}
	})

	t.Run("later fragment without its first: to the kernel", func(t *testing.T) {
		e := e.with(t)
		_, later := udpFragments(client4, vip4b, 5003, 80, payload, 64, cliMAC, eth0MAC)
		later.ID = 0x9999 // a datagram whose first fragment never came
		in := later.Bytes()
		if ret, out := e.runOn(e.eth0, in); ret != xdpPass || !bytes.Equal(out, in) {
			t.Fatalf("%s, want PASS untouched", actionNames[ret])
		}
	})
	st, _ := e.d.Stats(t.Context())
	if st.Events["frag_first"] != 10 || st.Events["frag_later"] != 10 || st.Verdicts["pass_frag_miss"] != 1 {
		t.Errorf("events %v, frag misses %d: want 10 first, 10 later, 1 miss", st.Events, st.Verdicts["pass_frag_miss"])
	}
}

// TestFragmentsOfEstablishedFlows: datagrams fragmented on a flow the
// per-CPU flow cache already knows (DR, NAT in both directions): each
// first fragment records its entry, so the later fragments follow it
// instead of going to the kernel; first fragments are counted on every
// path, the NAT reply's included.
func TestFragmentsOfEstablishedFlows(t *testing.T) {
	// A manual clock: the cache entries stay valid for the whole test (no
	// clock tick between packets).
	e := routedEnvOpts(t, Options{Interfaces: []string{"eth0", "eth1"}, SyncInterval: -1, MapSizes: testSizes, ManualClock: true})
	e.setClock(time.Hour)
	drUDP := drService(netip.MustParseAddr("10.0.0.5"), dataplane.UDP, dataplane.MaglevHashing, e.rs(0, "10.0.1.1", 1), e.rs(1, "10.0.1.2", 1))
	e.apply(drUDP, natService(vip4b, dataplane.UDP, netip.AddrPortFrom(rip4, 5353)), natService(vip6, dataplane.UDP, netip.AddrPortFrom(rip6, 5353)))
	payload := bytes.Repeat([]byte("fedcba9876543210"), 10)
	events := func() (first, later uint64) {
		st, err := e.d.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st.Events["frag_first"], st.Events["frag_later"]
	}
	// fragmented sends datagram id of a flow as two fragments received on
	// ifindex and expects them forwarded as want's, with action.
	fragmented := func(t *testing.T, what string, ifindex int, in, want func(id uint16) (packet.Frame, packet.Frame), action uint32) {
		t.Helper()
		for id := uint16(0x5001); id <= 0x5002; id++ {
			f1, f2 := in(id)
			w1, w2 := want(id)
			first0, later0 := events()
			for i, f := range []packet.Frame{f1, f2} {
				ret, out := e.runOn(ifindex, f.Bytes())
				if ret != action {
					t.Fatalf("%s, datagram %#x, fragment %d: action %s, want %s (verdicts %v)", what, id, i+1, actionNames[ret], actionNames[action], e.verdicts())
				}
				if w := []packet.Frame{w1, w2}[i].Bytes(); !bytes.Equal(out, w) {
					t.Errorf("%s, datagram %#x, fragment %d:\n got %x\nwant %x", what, id, i+1, out, w)
				}
			}
			if first, later := events(); first != first0+1 || later != later0+1 {
				t.Errorf("%s, datagram %#x: %d first and %d later fragments counted, want 1 and 1", what, id, first-first0, later-later0)
			}
		}
	}
	// withID(id)(first, later) gives a datagram's fragments IP ID id.
	withID := func(id uint16) func(f1, f2 packet.Frame) (packet.Frame, packet.Frame) {
		return func(f1, f2 packet.Frame) (packet.Frame, packet.Frame) {
			f1.ID, f2.ID, f1.FragID, f2.FragID = id, id, uint32(id), uint32(id)
			return f1, f2
		}
	}
	unfragmented := func(t *testing.T, ifindex int, f packet.Frame, action uint32) []byte {
		t.Helper()
		ret, out := e.runOn(ifindex, f.Bytes())
		if ret != action {
			t.Fatalf("unfragmented datagram: action %s, want %s (verdicts %v)", actionNames[ret], actionNames[action], e.verdicts())
		}
		return out
	}

	t.Run("dr", func(t *testing.T) {
		e := e.with(t)
		dgram := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: drUDP.Key.Addr, Proto: packet.UDP, SrcPort: 5100, DstPort: 80, Payload: []byte("hello")}
		// The flow is scheduled, then cached by its second datagram.
		out := unfragmented(t, e.eth0, dgram, xdpTX)
		rs := out[0:6]
		if !bytes.Equal(rs, rsMAC[0]) && !bytes.Equal(rs, rsMAC[1]) {
			t.Fatalf("first datagram to %x", rs)
		}
		unfragmented(t, e.eth0, dgram, xdpTX)
		fragmented(t, "dr", e.eth0, func(id uint16) (packet.Frame, packet.Frame) {
			return withID(id)(udpFragments(client4, drUDP.Key.Addr, 5100, 80, payload, 64, cliMAC, eth0MAC))
		}, func(id uint16) (packet.Frame, packet.Frame) {
			return withID(id)(udpFragments(client4, drUDP.Key.Addr, 5100, 80, payload, 64, eth0MAC, rs))
		}, xdpTX)
	})

	for _, fam := range []struct {
		name        string
		client, vip netip.Addr
		rip         netip.Addr
	}{{"ipv4", client4, vip4b, rip4}, {"ipv6", client6, vip6, rip6}} {
		t.Run("nat "+fam.name, func(t *testing.T) {
			e := e.with(t)
			in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: fam.client, Dst: fam.vip, Proto: packet.UDP, SrcPort: 5101, DstPort: 80, Payload: []byte("hello")}
			reply := packet.Frame{SrcMAC: rsMAC[0], DstMAC: eth1MAC, Src: fam.rip, Dst: fam.client, Proto: packet.UDP, SrcPort: 5353, DstPort: 5101, Payload: []byte("hi")}
			for range 2 {
				unfragmented(t, e.eth0, in, xdpRedirect)
				unfragmented(t, e.eth1, reply, xdpRedirect)
			}
			fragmented(t, "nat in", e.eth0, func(id uint16) (packet.Frame, packet.Frame) {
				return withID(id)(udpFragments(fam.client, fam.vip, 5101, 80, payload, 64, cliMAC, eth0MAC))
			}, func(id uint16) (packet.Frame, packet.Frame) {
				return withID(id)(udpFragments(fam.client, fam.rip, 5101, 5353, payload, 64, eth1MAC, rsMAC[0]))
			}, xdpRedirect)
			fragmented(t, "nat reply", e.eth1, func(id uint16) (packet.Frame, packet.Frame) {
				return withID(id)(udpFragments(fam.rip, fam.client, 5353, 5101, payload, 64, rsMAC[0], eth1MAC))
			}, func(id uint16) (packet.Frame, packet.Frame) {
				return withID(id)(udpFragments(fam.vip, fam.client, 80, 5101, payload, 64, eth0MAC, cliMAC))
			}, xdpRedirect)
		})
	}

	t.Run("nat reply, first datagram of the flow fragmented", func(t *testing.T) {
		e := e.with(t)
		unfragmented(t, e.eth0, packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.UDP, SrcPort: 5102, DstPort: 80, Payload: []byte("hello")}, xdpRedirect)
		fragmented(t, "nat reply", e.eth1, func(id uint16) (packet.Frame, packet.Frame) {
			return withID(id)(udpFragments(rip4, client4, 5353, 5102, payload, 64, rsMAC[0], eth1MAC))
		}, func(id uint16) (packet.Frame, packet.Frame) {
			return withID(id)(udpFragments(vip4b, client4, 80, 5102, payload, 64, eth0MAC, cliMAC))
		}, xdpRedirect)
	})
	if v := e.verdicts()["pass_frag_miss"]; v != 0 {
		t.Errorf("%d fragments passed to the kernel as misses", v)
	}
}
