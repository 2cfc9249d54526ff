package xdp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// Benchmarks of the XDP program against a floor program (parse Ethernet,
// IPv4 and TCP, rewrite the MACs, XDP_TX), always measured in the same run
// and reported as a ratio: these machines are shared and noisy.
//
// Method ("wrapper"): BPF_PROG_TEST_RUN with repeat does not restore the
// packet between repetitions, so every repetition runs bench_wrapper, which
// copies the 64-byte template frame back (and, for the new-flow path, gives
// it a fresh source address and port; for the connection-table path,
// every other time a second flow's) and tail-calls the program under test.
// Both programs pay the same wrapper cost; ns/packet is the wall time of one
// BPF_PROG_TEST_RUN call with a large repeat count divided by that count.

const benchRepeat = 2_000_000

// Wrapper modes (bench_mode in bpf/bench/bench.c).
const (
	benchSameFlow = 0 // the template's flow every time
	benchNewFlows = 1 // a new 5-tuple every time
	benchTwoFlows = 2 // the template's flow and bench_alt_saddr:bench_alt_sport in turn
)

// loadBenchObjs loads the benchmark helpers with the wrapper in mode and
// its other variables set from vars.
func loadBenchObjs(b *testing.B, mode uint32, vars ...map[string]any) *benchObjects {
	b.Helper()
	spec, err := loadBench()
	if err != nil {
		b.Fatal(err)
	}
	if err := spec.Variables[benchVarBenchMode].Set(mode); err != nil {
		b.Fatal(err)
	}
	for _, vs := range vars {
		for name, v := range vs {
			if err := spec.Variables[name].Set(v); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
		}
	}
	var objs benchObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { objs.Close() })
	return &objs
}

// nsPerPacket runs target through the wrapper repeat times on frame.
func (e *env) nsPerPacket(b *testing.B, w *benchObjects, target *ebpf.Program, frame []byte) float64 {
	b.Helper()
	var tmpl benchBenchFrame
	copy(tmpl.B[:], frame)
	if err := w.BenchTemplate.Put(uint32(0), &tmpl); err != nil {
		b.Fatal(err)
	}
	if err := w.BenchTarget.Put(uint32(0), target); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64)
	copy(data, frame)
	var elapsed time.Duration
	err := e.ns.Do(func() error {
		opts := ebpf.RunOptions{Data: data, Repeat: benchRepeat, Context: bpfXdpMd{DataEnd: 64, IngressIfindex: uint32(e.eth0)}}
		start := time.Now()
		ret, err := w.BenchWrapper.Run(&opts)
		elapsed = time.Since(start)
		if err == nil && ret != xdpTX {
			err = fmt.Errorf("program returned %s, want TX (verdicts %v)", actionNames[ret], e.verdicts())
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(elapsed.Nanoseconds()) / benchRepeat
}

// measure alternates floor and xlb runs and reports medians and the median
// ratio.
func measure(b *testing.B, rounds int, floor, xlb func() float64) {
	var fs, xs, rs []float64
	for range rounds {
		f, x := floor(), xlb()
		fs, xs, rs = append(fs, f), append(xs, x), append(rs, x/f)
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(fs), "ns/pkt-floor")
	b.ReportMetric(med(xs), "ns/pkt-xlb")
	b.ReportMetric(med(rs), "ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("floor %.1f ns/packet, xlb %.1f ns/packet, ratio %.2f (median of %d rounds of %d packets)", med(fs), med(xs), med(rs), rounds, benchRepeat)
}

func benchEnv(b *testing.B) *env {
	// Default map sizes: the connection table is the real 1M-entry LRU.
	ns := nettest.NewNS(b, "bn")
	ns.MustRun(b, "ip", "link", "add", "eth0", "address", eth0MAC.String(), "type", "veth", "peer", "name", "peer0")
	ns.MustRun(b, "ip", "link", "add", "eth1", "address", eth1MAC.String(), "type", "veth", "peer", "name", "peer1")
	ns.MustRun(b, "ip", "link", "set", "eth0", "up")
	e := &env{t: b, ns: ns}
	if err := ns.Do(func() error {
		i, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		e.eth0 = i.Index
		e.d, err = Open(Options{SyncInterval: -1})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.d.Close() })
	return e
}

// BenchmarkEstablished: a packet of a tracked DR flow (the common case).
func BenchmarkEstablished(b *testing.B) {
	e := benchEnv(b)
	e.apply(svc(dataplane.MaglevHashing, e.pool(16)))
	syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
	syn.Payload = nil
	e.pick(syn)
	ack := syn
	ack.TCPFlags = packet.ACK
	frame := ack.Bytes()
	w := loadBenchObjs(b, benchSameFlow)
	for b.Loop() {
		measure(b, 5,
			func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
			func() float64 { return e.nsPerPacket(b, w, e.d.Program(), frame) })
	}
}

// BenchmarkNewFlow: every packet is a SYN of a new flow, scheduled by each
// scheduler and inserted into the connection table (which fills and evicts,
// as under a SYN flood). The service's connection counter must show one new
// connection per packet xlb saw: no 5-tuple came twice.
func BenchmarkNewFlow(b *testing.B) {
	for _, sched := range xdpSchedulers() {
		b.Run(string(sched), func(b *testing.B) {
			e := benchEnv(b)
			s := svc(sched, e.pool(16))
			e.apply(s)
			syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
			syn.Payload = nil
			frame := syn.Bytes()
			w := loadBenchObjs(b, benchNewFlows)
			runs := 0
			for b.Loop() {
				measure(b, 3,
					func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
					func() float64 { runs++; return e.nsPerPacket(b, w, e.d.Program(), frame) })
			}
			st, err := e.d.Stats(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if got, want := st.Services[s.Key].Connections, uint64(runs)*benchRepeat; got != want {
				b.Fatalf("%d new connections scheduled for %d SYNs: some were not new flows", got, want)
			}
		})
	}
}

// BenchmarkConnTable: packets of established DR flows that the per-CPU
// flow cache does not hold, so each one is looked up in the connection
// table (and cached anew): two flows whose hashes share a cache slot, in
// turn, each evicting the other.
func BenchmarkConnTable(b *testing.B) {
	e := benchEnv(b)
	e.apply(svc(dataplane.MaglevHashing, e.pool(16)))
	a := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
	a.Payload = nil
	slots := e.d.objs.XlbFlowcache.MaxEntries() // a power of two
	slot := func(f packet.Frame) uint32 { return frameHash(f) & (slots - 1) }
	other := a
	for c := 0; other.Src == a.Src || slot(other) != slot(a); c++ {
		other.Src, other.SrcPort = client(c/64512+2), uint16(1024+c%64512)
	}
	for _, f := range []packet.Frame{a, other} {
		e.pick(f)
	}
	for _, f := range []*packet.Frame{&a, &other} {
		f.TCPFlags = packet.ACK
		if e.pick(*f) < 0 {
			b.Fatal("flow not established")
		}
	}
	// other now holds the slot (on the CPU that ran it): the flows collide.
	var per []bpfXlbFlowCache
	if err := e.d.objs.XlbFlowcache.Lookup(slot(a), &per); err != nil {
		b.Fatal(err)
	}
	src := other.Src.As4()
	if !slices.ContainsFunc(per, func(c bpfXlbFlowCache) bool {
		return c.Flow.Sport == other.SrcPort && [4]byte(c.Flow.Src[:4]) == src
	}) {
		b.Fatalf("flow %s:%d is not in cache slot %d: the test's flow hash disagrees with the program's", other.Src, other.SrcPort, slot(a))
	}
	w := loadBenchObjs(b, benchTwoFlows, map[string]any{benchVarBenchAltSaddr: src, benchVarBenchAltSport: [2]byte{byte(other.SrcPort >> 8), byte(other.SrcPort)}})
	frame := a.Bytes()
	for b.Loop() {
		measure(b, 5,
			func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
			func() float64 { return e.nsPerPacket(b, w, e.d.Program(), frame) })
	}
}

// BenchmarkLiveFrames pushes 64-byte TCP frames with a live-frames
// generator (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) over a veth pair
// into a namespace where xlb forwards them (DR, XDP_TX) back to a counting
// XDP program on the generator side; then the same with the floor program
// in xlb's place. Reported: frames delivered per second and the ratio.
func BenchmarkLiveFrames(b *testing.B) {
	const frames = 3_000_000
	gen := nettest.NewNS(b, "bg")
	dir := nettest.NewNS(b, "bd")
	nettest.Veth(b, gen, "g0", dir, "d0")
	var g0, d0 *net.Interface
	gen.Do(func() (err error) { g0, err = net.InterfaceByName("g0"); return })
	dir.Do(func() (err error) { d0, err = net.InterfaceByName("d0"); return })
	if g0 == nil || d0 == nil {
		b.Fatal("veth pair missing")
	}

	counter := loadBenchObjs(b, benchSameFlow)
	var l link.Link
	if err := gen.Do(func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: counter.BenchCount, Interface: g0.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		b.Fatalf("attach counter: %v", err)
	}
	b.Cleanup(func() { l.Close() })

	e := &env{t: b, ns: dir, eth0: d0.Index}
	if err := dir.Do(func() (err error) {
		e.d, err = Open(Options{Interfaces: []string{"d0"}, Mode: dataplane.AttachNative, SyncInterval: -1})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.d.Close() })
	bs := e.pool(16)
	for i := range bs {
		bs[i].MAC = g0.HardwareAddr
	}
	e.apply(svc(dataplane.MaglevHashing, bs))

	genObjs := loadBenchObjs(b, benchSameFlow)
	f := tcpFrame(client(1), vip4, 1024, 80, packet.ACK)
	f.Payload = nil
	f.SrcMAC, f.DstMAC = g0.HardwareAddr, d0.HardwareAddr
	var tmpl benchBenchFrame
	copy(tmpl.B[:], f.Bytes())
	if err := genObjs.BenchTemplate.Put(uint32(0), &tmpl); err != nil {
		b.Fatal(err)
	}

	counted := func() uint64 {
		var per []uint64
		if err := counter.BenchSeq.Lookup(uint32(0), &per); err != nil {
			b.Fatal(err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		return n
	}
	// run generates frames and returns the delivered rate (frames/s).
	run := func() float64 {
		before := counted()
		start := time.Now()
		err := gen.Do(func() error {
			_, err := genObjs.BenchGen.Run(&ebpf.RunOptions{
				Data: tmpl.B[:], Repeat: frames, Flags: 2, /* BPF_F_TEST_XDP_LIVE_FRAMES */
				Context: bpfXdpMd{DataEnd: 64, IngressIfindex: uint32(g0.Index)},
			})
			return err
		})
		if err != nil {
			b.Fatalf("live frames: %v", err)
		}
		// Frames still in flight arrive within milliseconds.
		deadline := time.Now().Add(2 * time.Second)
		last := counted()
		for time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			n := counted()
			if n == last {
				break
			}
			last = n
		}
		return float64(last-before) / time.Since(start).Seconds()
	}
	for b.Loop() {
		// Interleaved pairs, so that drift on a shared machine hits both
		// programs alike; the median of the pairs' ratios is reported.
		const pairs = 5
		var xs, fs, rs []float64
		for range pairs {
			x := run()
			// Swap in the floor program on the same interface.
			xlbLink := e.d.links["d0"].link
			if err := xlbLink.Update(genObjs.BenchFloor); err != nil {
				b.Fatal(err)
			}
			f := run()
			if err := xlbLink.Update(e.d.Program()); err != nil {
				b.Fatal(err)
			}
			xs, fs, rs = append(xs, x), append(fs, f), append(rs, x/f)
		}
		slices.Sort(xs)
		slices.Sort(fs)
		slices.Sort(rs)
		b.ReportMetric(xs[pairs/2]/1e6, "Mpps-xlb")
		b.ReportMetric(fs[pairs/2]/1e6, "Mpps-floor")
		b.ReportMetric(rs[pairs/2], "ratio")
		b.ReportMetric(0, "ns/op")
		b.Logf("live frames, DR established flows: xlb %.2f Mpps, floor %.2f Mpps (medians), ratio %.2f (median of %d interleaved pairs of %d frames; ratios %.2f to %.2f)",
			xs[pairs/2]/1e6, fs[pairs/2]/1e6, rs[pairs/2], pairs, frames, rs[0], rs[pairs-1])
	}
}

// oneArmEnv is a director whose clients and real servers are all behind
// eth0 (a one-armed NAT or tunnel director), so forwarded packets leave by
// XDP_TX like the floor's.
func oneArmEnv(b *testing.B) *env {
	e := benchEnv(b)
	for _, c := range [][]string{
		{"sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"},
		{"ip", "link", "set", "peer0", "up"},
		{"ip", "addr", "add", "198.19.255.254/15", "dev", "eth0"},
		{"ip", "addr", "add", "10.0.1.254/24", "dev", "eth0"},
		{"ip", "neigh", "replace", "198.18.0.1", "lladdr", cliMAC.String(), "dev", "eth0", "nud", "permanent"},
		{"ip", "neigh", "replace", rip4.String(), "lladdr", rsMAC[0].String(), "dev", "eth0", "nud", "permanent"},
		{"ip", "neigh", "replace", tunRS4.String(), "lladdr", rsMAC[1].String(), "dev", "eth0", "nud", "permanent"},
		{"ip", "route", "add", "10.0.2.0/24", "dev", "eth0"},
	} {
		e.ns.MustRun(b, c[0], c[1:]...)
	}
	return e
}

// BenchmarkNAT: established NAT flows, inbound (to the real server) and
// outbound (replies back to the VIP).
func BenchmarkNAT(b *testing.B) {
	e := oneArmEnv(b)
	e.apply(natService(vip4b, dataplane.TCP, netip.AddrPortFrom(rip4, 8080)))
	cli := client(1) // 198.18.0.1, behind eth0
	syn := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: cli, Dst: vip4b, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.SYN}
	e.pick(syn)
	in := syn
	in.TCPFlags = packet.ACK
	out := packet.Frame{SrcMAC: rsMAC[0], DstMAC: eth0MAC, Src: rip4, Dst: cli, Proto: packet.TCP, SrcPort: 8080, DstPort: 40000, TCPFlags: packet.ACK}
	w := loadBenchObjs(b, benchSameFlow)
	for _, dir := range []struct {
		name  string
		frame []byte
	}{{"in", in.Bytes()}, {"out", out.Bytes()}} {
		b.Run(dir.name, func(b *testing.B) {
			for b.Loop() {
				measure(b, 5,
					func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, dir.frame) },
					func() float64 { return e.nsPerPacket(b, w, e.d.Program(), dir.frame) })
			}
		})
	}
}

// BenchmarkTunnel: established tunnelled flows (IPIP and GUE).
func BenchmarkTunnel(b *testing.B) {
	for _, encap := range []dataplane.Encap{dataplane.EncapIPIP, dataplane.EncapGUE} {
		b.Run(string(encap), func(b *testing.B) {
			e := oneArmEnv(b)
			e.apply(tunnelService(vip4b, encap, netip.Prefix{}, tunRS4))
			syn := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client(1), Dst: vip4b, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.SYN}
			e.pick(syn)
			ack := syn
			ack.TCPFlags = packet.ACK
			frame := ack.Bytes()
			w := loadBenchObjs(b, benchSameFlow)
			for b.Loop() {
				measure(b, 5,
					func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
					func() float64 { return e.nsPerPacket(b, w, e.d.Program(), frame) })
			}
		})
	}
}
