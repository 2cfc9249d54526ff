package xdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

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
// Both programs pay the same wrapper cost; ns/packet is the kernel's time
// per repetition of one BPF_PROG_TEST_RUN call with a large repeat count
// (testRun), the time the thread was scheduled out left out.

const benchRepeat = 2_000_000

// The figures of issue 14 and their targets: every benchmark reports its
// ratio here, and TestMain prints them together after the run.
type figure struct {
	name    string
	ratio   float64
	bound   float64 // 0: no target
	atLeast bool    // the ratio must be >= bound (else <=)
}

var (
	figuresMu sync.Mutex
	figures   []figure
)

// report logs a ratio next to its target and records it for the summary.
func report(b *testing.B, name string, ratio, bound float64, atLeast bool) {
	f := figure{name: name, ratio: ratio, bound: bound, atLeast: atLeast}
	b.Logf("%s: ratio %.2f, target %s", name, ratio, f.target())
	figuresMu.Lock()
	figures = append(figures, f)
	figuresMu.Unlock()
}

func (f figure) target() string {
	switch {
	case f.bound == 0:
		return "none"
	case f.atLeast && f.ratio >= f.bound, !f.atLeast && f.ratio <= f.bound:
		return fmt.Sprintf("%s %.2f: met", f.op(), f.bound)
	}
	return fmt.Sprintf("%s %.2f: MISSED", f.op(), f.bound)
}

func (f figure) op() string {
	if f.atLeast {
		return ">="
	}
	return "<="
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(figures) > 0 {
		var sb strings.Builder
		sb.WriteString("\nfast path figures (ratio to the floor program in the same run; issue 14's targets):\n")
		for _, f := range figures {
			fmt.Fprintf(&sb, "  %-40s %6.2f   %s\n", f.name, f.ratio, f.target())
		}
		fmt.Print(sb.String())
	}
	os.Exit(code)
}

// Wrapper modes (bench_mode in bpf/bench/bench.c).
const (
	benchSameFlow  = 0 // the template's flow every time
	benchNewFlows  = 1 // a new 5-tuple every time
	benchTwoFlows  = 2 // the template's flow and bench_alt_saddr:bench_alt_sport in turn
	benchHandshake = 3 // a new 5-tuple's SYN, then its ACK
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
	return e.nsPerPacketN(b, w, target, frame, benchRepeat)
}

// nsPerPacketN is nsPerPacket over repeat packets.
func (e *env) nsPerPacketN(b *testing.B, w *benchObjects, target *ebpf.Program, frame []byte, repeat uint32) float64 {
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
	var per float64
	err := e.ns.Do(func() error {
		ret, ns, err := testRun(w.BenchWrapper, data, bpfXdpMd{DataEnd: 64, IngressIfindex: uint32(e.eth0)}, repeat)
		per = ns
		if err == nil && ret != xdpTX {
			err = fmt.Errorf("program returned %s, want TX (verdicts %v)", actionNames[ret], e.verdicts())
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return per
}

// progRunAttr is union bpf_attr's test member (BPF_PROG_TEST_RUN).
type progRunAttr struct {
	progFd, retval, dataSizeIn, dataSizeOut uint32
	dataIn, dataOut                         uint64
	repeat, duration, ctxSizeIn, ctxSizeOut uint32
	ctxIn, ctxOut                           uint64
	flags, cpu, batchSize, _                uint32
}

// testRun runs prog repeat times on data with the XDP context md and
// returns its return value and the kernel's time per repetition. The
// kernel's clock stops while the thread is scheduled out (net/bpf/
// test_run.c, bpf_test_timer_continue around cond_resched), which a wall
// clock around the call does not: on a shared machine another process's
// time slices fell into one side of a ratio or the other (a run comparing
// a program with itself read 0.90 and 1.15 under load). The kernel gives
// whole nanoseconds, rounded down; half a nanosecond is added back. A
// call interrupted by a signal is run again.
func testRun(prog *ebpf.Program, data []byte, md bpfXdpMd, repeat uint32) (uint32, float64, error) {
	for {
		attr := progRunAttr{
			progFd: uint32(prog.FD()), dataSizeIn: uint32(len(data)), dataIn: uint64(uintptr(unsafe.Pointer(&data[0]))),
			repeat: repeat, ctxSizeIn: uint32(unsafe.Sizeof(md)), ctxIn: uint64(uintptr(unsafe.Pointer(&md))),
		}
		_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		runtime.KeepAlive(data)
		runtime.KeepAlive(&md)
		switch errno {
		case 0:
			return attr.retval, float64(attr.duration) + 0.5, nil
		case unix.EINTR:
			continue
		}
		return 0, 0, fmt.Errorf("BPF_PROG_TEST_RUN: %w", errno)
	}
}

// measure alternates floor and xlb runs (each round's first run alternates
// too) and reports medians and the median ratio, which it returns.
func measure(b *testing.B, rounds int, floor, xlb func() float64) float64 {
	var fs, xs, rs []float64
	for i := range rounds {
		// Which runs first alternates: a second run in a round read ~5%
		// slower than the first on the handshake path (the same program
		// against itself: 1.05-1.06).
		var f, x float64
		if i%2 == 0 {
			f, x = floor(), xlb()
		} else {
			x, f = xlb(), floor()
		}
		fs, xs, rs = append(fs, f), append(xs, x), append(rs, x/f)
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(fs), "ns/pkt-floor")
	b.ReportMetric(med(xs), "ns/pkt-xlb")
	b.ReportMetric(med(rs), "ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("floor %.1f ns/packet, xlb %.1f ns/packet, ratio %.3f (median of %d rounds; quartiles of the rounds' ratios %.3f-%.3f)",
		med(fs), med(xs), med(rs), rounds, rs[len(rs)/4], rs[len(rs)*3/4])
	return med(rs)
}

func benchEnv(b *testing.B) *env { return benchEnvOpts(b, Options{SyncInterval: -1}) }

func benchEnvOpts(b *testing.B, opts Options) *env {
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
		e.d, err = Open(opts)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.d.Close() })
	return e
}

// dataFrame is a 64-byte TCP ACK of client 1 to vip with payload filling the
// frame: no Ethernet padding, which a tunnel would trim and the wrapper
// could not give back.
func dataFrame(vip netip.Addr) packet.Frame {
	f := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client(1), Dst: vip, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.ACK}
	f.Payload = make([]byte, 64-len(f.Bytes()))
	return f
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
		r := measure(b, 5,
			func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
			func() float64 { return e.nsPerPacket(b, w, e.d.Program(), frame) })
		report(b, "established DR", r, 1.4, false)
	}
}

// BenchmarkNewFlow: packets of new flows for each scheduler, DR:
//   - syn: every packet the SYN of a new flow, SYN flood mode off: one whose
//     slot is free takes it, is scheduled and writes its embryonic word; the
//     words live 120 s, so the array fills in the first round and then most
//     SYNs find their slot held: scheduled by hash, they mark the word (as
//     under a flood below the limit);
//   - flood: the same at the default SYN flood limit: past it (at once, at
//     these rates) SYNs are scheduled by hash and write nothing (Katran's
//     SYN limiter is the comparison);
//   - handshake: a new flow's SYN then its ACK, which inserts the flow into
//     the connection table (full and evicting after the first run): the
//     figure is per packet, half the cost of a new connection.
//
// The service's connection counter must show one new connection per SYN
// xlb saw: no 5-tuple came twice.
func BenchmarkNewFlow(b *testing.B) {
	for _, sched := range xdpSchedulers() {
		for _, kind := range []string{"syn", "flood", "handshake"} {
			b.Run(string(sched)+"/"+kind, func(b *testing.B) {
				opts := Options{SyncInterval: -1, SYNFloodRate: -1}
				mode, syns := uint32(benchNewFlows), uint64(benchRepeat)
				switch kind {
				case "flood":
					opts.SYNFloodRate = 0
				case "handshake":
					mode, syns = benchHandshake, benchRepeat/2
				}
				e := benchEnvOpts(b, opts)
				s := svc(sched, e.pool(16))
				e.apply(s)
				syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
				syn.Payload = nil
				frame := syn.Bytes()
				w := loadBenchObjs(b, mode)
				runs := 0
				for b.Loop() {
					r := measure(b, 3,
						func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
						func() float64 { runs++; return e.nsPerPacket(b, w, e.d.Program(), frame) })
					report(b, "new flow DR "+string(sched)+" "+kind, r, 4, false)
				}
				st, err := e.d.Stats(b.Context())
				if err != nil {
					b.Fatal(err)
				}
				// A handshake whose SYN and ACK ran on different CPUs (a run
				// may migrate between repetitions) is two flows.
				got, want := st.Services[s.Key].Connections, uint64(runs)*syns
				if got < want || got > want+want/1000 && kind == "handshake" || got != want && kind != "handshake" {
					b.Fatalf("%d new connections scheduled for %d SYNs: some were not new flows", got, want)
				}
				// Which path the SYNs took: the array of embryonic words
				// (1M) fills with the unanswered SYNs of the first run, so
				// most of syn's later SYNs find their slot held.
				busy, flood := st.Events["embryo_busy"], st.Events["syn_flood"]
				pct := func(n uint64) float64 { return 100 * float64(n) / float64(want) }
				b.Logf("%d SYNs: %.1f%% took their embryonic slot, %.1f%% found it held (embryo_busy), %.1f%% in SYN flood mode",
					want, pct(want-min(want, busy+flood)), pct(busy), pct(flood))
			})
		}
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
	slot := func(f packet.Frame) uint32 { return cacheIdx(f, uint32(flowCacheSlots)) }
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
	per := e.flowCache(slot(a))
	src := other.Src.As4()
	if !slices.ContainsFunc(per, func(c bpfXlbFlowCache) bool {
		return c.Flow.Sport == other.SrcPort && [4]byte(c.Flow.Src[:4]) == src
	}) {
		b.Fatalf("flow %s:%d is not in cache slot %d: the test's flow hash disagrees with the program's", other.Src, other.SrcPort, slot(a))
	}
	w := loadBenchObjs(b, benchTwoFlows, map[string]any{benchVarBenchAltSaddr: src, benchVarBenchAltSport: [2]byte{byte(other.SrcPort >> 8), byte(other.SrcPort)}})
	frame := a.Bytes()
	for b.Loop() {
		r := measure(b, 5,
			func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
			func() float64 { return e.nsPerPacket(b, w, e.d.Program(), frame) })
		report(b, "connection table DR (cache miss)", r, 0, false)
	}
}

// liveEnv is a generator namespace and a director namespace joined by a
// veth pair with queues queues per end: xlb (or the floor program) on the
// director's end d0 sends frames back (XDP_TX) to a counting XDP program on
// the generator's end g0.
type liveEnv struct {
	b       *testing.B
	gen     *nettest.NS
	e       *env
	g0      *net.Interface
	counter *benchObjects
	genObjs *benchObjects
	tmpl    benchBenchFrame
}

func newLiveEnv(b *testing.B, queues int, genMode uint32) *liveEnv {
	gen := nettest.NewNS(b, "bg")
	dir := nettest.NewNS(b, "bd")
	q := fmt.Sprint(queues)
	// Created directly in the namespaces: no name is taken in the root one.
	if out, err := gen.Run("ip", "link", "add", "g0", "numtxqueues", q, "numrxqueues", q, "type", "veth",
		"peer", "name", "d0", "numtxqueues", q, "numrxqueues", q, "netns", dir.Name); err != nil {
		b.Fatalf("veth: %v: %s", err, out)
	}
	gen.MustRun(b, "ip", "link", "set", "g0", "up")
	dir.MustRun(b, "ip", "link", "set", "d0", "up")
	l := &liveEnv{b: b, gen: gen}
	var d0 *net.Interface
	gen.Do(func() (err error) { l.g0, err = net.InterfaceByName("g0"); return })
	dir.Do(func() (err error) { d0, err = net.InterfaceByName("d0"); return })
	if l.g0 == nil || d0 == nil {
		b.Fatal("veth pair missing")
	}
	l.counter = loadBenchObjs(b, benchSameFlow)
	var lk link.Link
	if err := gen.Do(func() (err error) {
		lk, err = link.AttachXDP(link.XDPOptions{Program: l.counter.BenchCount, Interface: l.g0.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		b.Fatalf("attach counter: %v", err)
	}
	b.Cleanup(func() { lk.Close() })

	l.e = &env{t: b, ns: dir, eth0: d0.Index}
	if err := dir.Do(func() (err error) {
		l.e.d, err = Open(Options{Interfaces: []string{"d0"}, Mode: dataplane.AttachNative, SyncInterval: -1})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.e.d.Close() })
	l.genObjs = loadBenchObjs(b, genMode)
	// Some sandboxed kernels refuse live frames (EPERM, root too): there
	// is no generator here then, and no figure.
	var probe [64]byte
	err := gen.Do(func() error {
		_, err := l.counter.BenchFloor.Run(&ebpf.RunOptions{Data: probe[:], Repeat: 1, Flags: 2, /* BPF_F_TEST_XDP_LIVE_FRAMES */
			Context: bpfXdpMd{DataEnd: 64, IngressIfindex: uint32(l.g0.Index)}})
		return err
	})
	if errors.Is(err, unix.EPERM) {
		b.Skipf("this kernel refuses BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (%v): no live-frames figures", err)
	}
	return l
}

// frame sets the generator's template: f from g0 to d0.
func (l *liveEnv) frame(f packet.Frame, d0 net.HardwareAddr) {
	f.SrcMAC, f.DstMAC = l.g0.HardwareAddr, d0
	copy(l.tmpl.B[:], f.Bytes())
	if err := l.genObjs.BenchTemplate.Put(uint32(0), &l.tmpl); err != nil {
		l.b.Fatal(err)
	}
}

func (l *liveEnv) counted() uint64 {
	var per []uint64
	if err := l.counter.BenchSeq.Lookup(uint32(0), &per); err != nil {
		l.b.Fatal(err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// run sends frames from each of threads generator threads (thread i on CPU
// i, so that each feeds its own veth queue) and returns the delivered rate
// (frames/s).
func (l *liveEnv) run(frames, threads int) float64 {
	b := l.b
	before := l.counted()
	start := time.Now()
	errs := make(chan error, threads)
	for i := range threads {
		go func() {
			errs <- l.gen.Do(func() error {
				if threads > 1 {
					var set unix.CPUSet
					set.Set(i % runtime.NumCPU())
					if err := unix.SchedSetaffinity(0, &set); err != nil {
						return fmt.Errorf("pin the generator to CPU %d: %w", i, err)
					}
				}
				_, err := l.genObjs.BenchGen.Run(&ebpf.RunOptions{
					Data: l.tmpl.B[:], Repeat: uint32(frames), Flags: 2, /* BPF_F_TEST_XDP_LIVE_FRAMES */
					Context: bpfXdpMd{DataEnd: 64, IngressIfindex: uint32(l.g0.Index)},
				})
				return err
			})
		}()
	}
	for range threads {
		if err := <-errs; err != nil {
			b.Fatalf("live frames: %v", err)
		}
	}
	// Frames still in flight arrive within milliseconds.
	deadline := time.Now().Add(2 * time.Second)
	last := l.counted()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n := l.counted()
		if n == last {
			break
		}
		last = n
	}
	return float64(last-before) / time.Since(start).Seconds()
}

// compare runs xlb and the floor program in interleaved pairs (drift on a
// shared machine hits both alike) and returns the medians of the rates
// and of the pairs' ratios.
func (l *liveEnv) compare(pairs, frames, threads int) (x, f, r float64) {
	var xs, fs, rs []float64
	xlbLink := l.e.d.links["d0"].link
	for range pairs {
		x := l.run(frames, threads)
		if err := xlbLink.Update(l.genObjs.BenchFloor); err != nil {
			l.b.Fatal(err)
		}
		f := l.run(frames, threads)
		if err := xlbLink.Update(l.e.d.Program()); err != nil {
			l.b.Fatal(err)
		}
		xs, fs, rs = append(xs, x), append(fs, f), append(rs, x/f)
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	return med(xs), med(fs), med(rs)
}

// BenchmarkLiveFrames pushes 64-byte TCP frames with a live-frames
// generator (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) over a veth pair
// into a namespace where xlb forwards them (DR or IPIP, XDP_TX) back to a
// counting XDP program on the generator side; then the same with the floor
// program in xlb's place. Reported: frames delivered per second and the
// ratio. Cases: DR established flows (1024 source ports in turn), DR with a
// new flow per frame (a SYN from a new source address and port: SYN flood
// mode at these rates), IPIP established, and DR established on two cores
// (a 2-queue veth, one generator thread per CPU), whose xlb rate is
// compared with the one-thread rate on the same pair.
func BenchmarkLiveFrames(b *testing.B) {
	const frames, pairs = 3_000_000, 5
	cases := []struct {
		name    string
		mode    uint32
		flags   uint8
		tunnel  bool
		threads int
		bound   float64
	}{
		{name: "DR established", flags: packet.ACK, threads: 1, bound: 0.92},
		{name: "DR new flow per frame", mode: benchNewFlows, flags: packet.SYN, threads: 1, bound: 0.75},
		{name: "IPIP established", flags: packet.ACK, tunnel: true, threads: 1, bound: 0.85},
		{name: "DR established two cores", flags: packet.ACK, threads: 2, bound: 1.8},
	}
	for _, c := range cases {
		b.Run(strings.ReplaceAll(c.name, " ", "-"), func(b *testing.B) {
			if c.threads > runtime.NumCPU() {
				b.Skipf("%d CPUs, %d needed", runtime.NumCPU(), c.threads)
			}
			l := newLiveEnv(b, c.threads, c.mode)
			var d0 net.HardwareAddr
			l.e.ns.Do(func() error {
				i, err := net.InterfaceByName("d0")
				if err == nil {
					d0 = i.HardwareAddr
				}
				return err
			})
			dst := vip4
			if c.tunnel {
				dst = vip4b
				for _, cmd := range [][]string{
					{"sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"},
					{"ip", "addr", "add", "10.0.2.254/24", "dev", "d0"},
					{"ip", "neigh", "replace", tunRS4.String(), "lladdr", l.g0.HardwareAddr.String(), "dev", "d0", "nud", "permanent"},
				} {
					l.e.ns.MustRun(b, cmd[0], cmd[1:]...)
				}
				l.e.apply(tunnelService(vip4b, dataplane.EncapIPIP, netip.Prefix{}, tunRS4))
			} else {
				bs := l.e.pool(16)
				for i := range bs {
					bs[i].MAC = dataplane.MACFrom(l.g0.HardwareAddr)
				}
				l.e.apply(svc(dataplane.MaglevHashing, bs))
			}
			f := tcpFrame(client(1), dst, 1024, 80, c.flags)
			f.Payload = nil
			l.frame(f, d0)
			for b.Loop() {
				x, fl, r := l.compare(pairs, frames, 1)
				b.ReportMetric(x/1e6, "Mpps-xlb")
				b.ReportMetric(fl/1e6, "Mpps-floor")
				b.ReportMetric(0, "ns/op")
				b.Logf("live frames, %s, one thread: xlb %.2f Mpps, floor %.2f Mpps, ratio %.2f (medians of %d interleaved pairs of %d frames)",
					c.name, x/1e6, fl/1e6, r, pairs, frames)
				if c.threads == 1 {
					b.ReportMetric(r, "ratio")
					report(b, "live frames "+c.name, r, c.bound, true)
					continue
				}
				x2, f2, r2 := l.compare(pairs, frames, c.threads)
				b.ReportMetric(x2/x, "ratio")
				b.Logf("live frames, %s: xlb %.2f Mpps, floor %.2f Mpps (ratio %.2f)", c.name, x2/1e6, f2/1e6, r2)
				report(b, "live frames "+c.name+" / one core", x2/x, c.bound, true)
			}
		})
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
				r := measure(b, 5,
					func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, dir.frame) },
					func() float64 { return e.nsPerPacket(b, w, e.d.Program(), dir.frame) })
				report(b, "established NAT "+dir.name, r, 0, false)
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
			ack := dataFrame(vip4b)
			syn := ack
			syn.TCPFlags, syn.Payload = packet.SYN, nil
			e.pick(syn)
			frame := ack.Bytes()
			w := loadBenchObjs(b, benchSameFlow)
			bound := 0.0
			if encap == dataplane.EncapIPIP {
				bound = 2.2
			}
			for b.Loop() {
				r := measure(b, 5,
					func() float64 { return e.nsPerPacket(b, w, w.BenchFloor, frame) },
					func() float64 { return e.nsPerPacket(b, w, e.d.Program(), frame) })
				report(b, "established tunnel "+string(encap), r, bound, false)
			}
		})
	}
}
