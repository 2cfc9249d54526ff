package xdp

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// runOnCPU0 is runOn with the program run on CPU 0, so that the packets of
// a flow meet the same per-CPU flow cache entry.
func (e *env) runOnCPU0(ifindex int, frame []byte) (uint32, []byte) {
	e.t.Helper()
	out := make([]byte, len(frame)+256)
	opts := ebpf.RunOptions{Data: frame, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}}
	var ret uint32
	if err := e.ns.Do(func() error {
		var was, cpu0 unix.CPUSet
		if err := unix.SchedGetaffinity(0, &was); err != nil {
			return err
		}
		cpu0.Set(0)
		if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
			return fmt.Errorf("pin to CPU 0: %w", err)
		}
		defer unix.SchedSetaffinity(0, &was)
		var err error
		ret, err = e.d.Program().Run(&opts)
		return err
	}); err != nil {
		e.t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, opts.DataOut
}

// flowCache returns every CPU's flow cache entry at slot, in CPU order.
func (e *env) flowCache(slot uint32) []bpfXlbFlowCache {
	e.t.Helper()
	m := e.d.objs.XlbFlowcache
	if m.MaxEntries()%uint32(flowCacheSlots) != 0 {
		e.t.Fatalf("xlb_flowcache holds %d entries: not a slice of %d per CPU", m.MaxEntries(), flowCacheSlots)
	}
	per := make([]bpfXlbFlowCache, m.MaxEntries()/uint32(flowCacheSlots))
	for cpu := range per {
		if err := m.Lookup(uint32(cpu*flowCacheSlots)+slot, &per[cpu]); err != nil {
			e.t.Fatal(err)
		}
	}
	return per
}

// cachedOnCPU0 returns CPU 0's flow cache entry of f's slot if it holds f.
func (e *env) cachedOnCPU0(f packet.Frame) (bpfXlbFlowCache, bool) {
	e.t.Helper()
	c := e.flowCache(cacheIdx(f, uint32(flowCacheSlots)))[0]
	src := f.Src.As16()
	if f.Src.Is4() {
		src = [16]byte{}
		v := f.Src.As4()
		copy(src[:], v[:])
	}
	return c, c.Flow.Src == src && c.Flow.Sport == f.SrcPort && c.Flow.Dport == f.DstPort && c.Flow.Proto == f.Proto
}

// TestTunnelCachedFlows: the packets of established tunnelled flows that the
// flow cache forwards leave with the same outer headers as their first
// packets (IPIP with DF, GUE whose outer source and source port vary with
// the flow's hash, IPv6 in IPv6 with the hash's flow label), and one that
// does not fit the route's MTU is answered with ICMP fragmentation needed.
func TestTunnelCachedFlows(t *testing.T) {
	e := routedEnv(t)
	gueService := func(port uint16) dataplane.Service {
		s := tunnelService(vip4b, dataplane.EncapGUE, netip.MustParsePrefix("10.0.9.0/24"), tunRS4)
		s.Key.Port = 81
		for i := range s.Backends {
			s.Backends[i].Port = 81
		}
		s.Tunnel.GUEPort = port
		return s
	}
	services := func(guePort uint16) {
		e.apply(tunnelService(vip4b, dataplane.EncapIPIP, netip.Prefix{}, tunRS4), gueService(guePort),
			tunnelService(vip6, dataplane.EncapIPIP, netip.Prefix{}, tunRS6))
	}
	services(6080)
	guePort := uint16(6080)
	// want is the frame the director sends for in.
	want := func(in packet.Frame) []byte {
		frame := in.Bytes()
		inner := packet.IPPacket(frame)
		h := frameHash(in)
		switch {
		case in.Dst == vip6:
			w := ethHeader(gwMAC, eth1MAC, 0x86dd)
			w = append(w, outerIPv6(eth1IP6, tunRS6, packet.IPv6, 0, h, len(inner))...)
			return append(w, inner...)
		case in.DstPort == 81:
			src := netip.AddrFrom4([4]byte{10, 0, 9, byte(1 + h%254)})
			w := ethHeader(gwMAC, eth1MAC, 0x0800)
			w = append(w, outerIPv4(src, tunRS4, packet.UDP, in.DontFragment, 0, 8+4+len(inner))...)
			w = append(w, gueHeaders(uint16(49152+h%16384), guePort, packet.IPIP, len(inner))...)
			return append(w, inner...)
		}
		w := ethHeader(gwMAC, eth1MAC, 0x0800)
		w = append(w, outerIPv4(eth1IP4, tunRS4, packet.IPIP, in.DontFragment, 0, len(inner))...)
		return append(w, inner...)
	}
	for _, c := range []struct {
		name string
		flow packet.Frame
	}{
		{"ipip", packet.Frame{Src: client4, Dst: vip4b, SrcPort: 40100, DstPort: 80, DontFragment: true}},
		{"gue", packet.Frame{Src: client4, Dst: vip4b, SrcPort: 40200, DstPort: 81}},
		{"ip6ip6", packet.Frame{Src: client6, Dst: vip6, SrcPort: 40300, DstPort: 80}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := e.with(t)
			f := c.flow
			f.SrcMAC, f.DstMAC, f.Proto = cliMAC, eth0MAC, packet.TCP
			// The handshake: the ACK puts the flow into the cache.
			for _, flags := range []uint8{packet.SYN, packet.ACK} {
				f.TCPFlags = flags
				if ret, out := e.runOnCPU0(e.eth0, f.Bytes()); ret != xdpRedirect {
					t.Fatalf("flags %#x: action %s (verdicts %v)", flags, actionNames[ret], e.verdicts())
				} else {
					expectFrame(t, fmt.Sprintf("flags %#x", flags), out, want(f))
				}
			}
			cached, ok := e.cachedOnCPU0(f)
			if !ok || cached.Action != uint8(bpfXlbActionXLB_ACT_TUNNEL) {
				t.Fatalf("flow not in CPU 0's flow cache after its handshake: %+v", cached)
			}
			if cached.Mtu != 1500 {
				t.Errorf("cached route MTU %d, want eth1's 1500", cached.Mtu)
			}
			for i := range 3 {
				f.TCPFlags, f.Payload = packet.ACK|packet.PSH, bytes.Repeat([]byte{byte('a' + i)}, 100*i)
				ret, out := e.runOnCPU0(e.eth0, f.Bytes())
				if ret != xdpRedirect {
					t.Fatalf("cached packet %d: action %s (verdicts %v)", i, actionNames[ret], e.verdicts())
				}
				expectFrame(t, fmt.Sprintf("cached packet %d", i), out, want(f))
			}
			// A pure ACK with Ethernet padding after its datagram (an IPv4
			// one's frame is padded to 60 bytes on the wire): trimmed on the
			// cached path too.
			f.TCPFlags, f.Payload = packet.ACK, nil
			if ret, out := e.runOnCPU0(e.eth0, append(f.Bytes(), make([]byte, 6)...)); ret != xdpRedirect {
				t.Fatalf("padded cached packet: action %s (verdicts %v)", actionNames[ret], e.verdicts())
			} else {
				expectFrame(t, "padded cached packet", out, want(f))
			}
			if _, ok := e.cachedOnCPU0(f); !ok {
				t.Fatal("flow left the flow cache")
			}
		})
	}

	// A configuration change: the cached flows' next packets follow it
	// (the service's configuration is read from the slot the cache entry
	// recorded, valid for its generation only).
	guePort = 6090
	services(guePort)
	gue := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 40200, DstPort: 81,
		TCPFlags: packet.ACK, Payload: []byte("after the change")}
	for i := range 2 {
		if ret, out := e.runOnCPU0(e.eth0, gue.Bytes()); ret != xdpRedirect {
			t.Fatalf("GUE after the change: action %s (verdicts %v)", actionNames[ret], e.verdicts())
		} else {
			expectFrame(t, fmt.Sprintf("GUE packet %d after the port changed", i), out, want(gue))
		}
	}
	if _, ok := e.cachedOnCPU0(gue); !ok {
		t.Error("GUE flow not cached again after the change")
	}

	// A cached flow's packet that does not fit the tunnel (1500 bytes
	// inside, 20 more outside) with DF: fragmentation needed, with the
	// MTU left inside the tunnel; a smaller one after it goes through.
	f := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 40100, DstPort: 80,
		TCPFlags: packet.ACK, DontFragment: true, Payload: bytes.Repeat([]byte("x"), 1500-20-20)}
	if _, ok := e.cachedOnCPU0(f); !ok {
		t.Fatal("ipip flow not cached")
	}
	frame := f.Bytes()
	before := e.verdicts()["tx_icmp_too_big"]
	ret, out := e.runOnCPU0(e.eth0, frame)
	if ret != xdpTX || e.verdicts()["tx_icmp_too_big"] != before+1 {
		t.Fatalf("action %s, verdicts %v: want TX of ICMP fragmentation needed", actionNames[ret], e.verdicts())
	}
	icmp := packet.ICMPMessage(3, 4, 1480, packet.IPPacket(frame)[:28])
	expectFrame(t, "fragmentation needed", out, packet.Frame{SrcMAC: eth0MAC, DstMAC: cliMAC, Src: vip4b, Dst: client4, Proto: packet.ICMP, L4: icmp}.Bytes())
	f.Payload = f.Payload[:1500-20-20-20]
	if ret, out := e.runOnCPU0(e.eth0, f.Bytes()); ret != xdpRedirect {
		t.Fatalf("a packet that fits: action %s (verdicts %v)", actionNames[ret], e.verdicts())
	} else {
		expectFrame(t, "a packet that fits", out, want(f))
	}
}
