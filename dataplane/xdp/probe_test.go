package xdp

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

var (
	probeSrc4 = netip.MustParseAddr("192.0.2.1")
	probeSrc6 = netip.MustParseAddr("2001:db8::1")
	probeRS4  = netip.MustParseAddr("192.0.2.50")
	probeRS6  = netip.MustParseAddr("2001:db8::50")
	probeMAC  = net.HardwareAddr{0x02, 0x77, 0, 0, 0, 0x50}
)

// tcpL4 is a TCP header from sport to dport with flags, seq and ack, the
// window given and the options opts (a multiple of 4 bytes), its checksum
// computed for src and dst.
func tcpL4(src, dst netip.Addr, sport, dport uint16, flags uint8, seq, ack uint32, window uint16, opts []byte) []byte {
	h := make([]byte, 20+len(opts))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], seq)
	binary.BigEndian.PutUint32(h[8:], ack)
	h[12] = byte(len(h)/4) << 4
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], window)
	copy(h[20:], opts)
	binary.BigEndian.PutUint16(h[16:], packet.L4Checksum(src, dst, packet.TCP, h))
	return h
}

// probeFrame is an answer from the real server rs:80 to src:port.
func probeFrame(rs, src netip.Addr, port uint16, flags uint8, ack uint32) packet.Frame {
	mss := []byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2} // MSS, NOP, NOP, SACK permitted
	return packet.Frame{SrcMAC: probeMAC, DstMAC: eth0MAC, Src: rs, Dst: src, Proto: packet.TCP,
		TTL: 61, ID: 777, L4: tcpL4(rs, src, 80, port, flags, 123456, ack, 65160, mss)}
}

// wantRST is the RST the kernel would send for a SYN-ACK acknowledging
// ack, from src:port to rs:80 (tcp_v4_send_reset).
func wantRST(rs, src netip.Addr, port uint16, ack uint32) []byte {
	return packet.Frame{SrcMAC: eth0MAC, DstMAC: probeMAC, Src: src, Dst: rs, Proto: packet.TCP, TTL: 64,
		DontFragment: true, L4: tcpL4(src, rs, port, 80, packet.RST, ack, 0, 0, nil)}.Bytes()
}

// TestProbeAnswers: the answers to a registered probe source are taken:
// a SYN-ACK is answered with the kernel's RST (IPv4 options, extension
// headers and Ethernet padding dropped) and reported, a RST reported and
// dropped; anything else, or to a source not registered, goes to the
// kernel.
func TestProbeAnswers(t *testing.T) {
	e := routedEnv(t) // eth0 attached: its MAC checked
	// The answers are read a CPU's ring after another: in the order sent
	// when sent from one CPU (a CI run read the IPv6 ones first).
	e.oneCPU = true
	for _, src := range []netip.Addr{probeSrc4, probeSrc6} {
		if err := e.d.WatchProbes(src, 40001); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.d.WatchProbes(probeSrc4, 40002); err != nil {
		t.Fatal(err)
	}
	var want []dataplane.ProbeAnswer
	var taken [][2]int64 // CLOCK_MONOTONIC before and after the run of each of want
	for i, tc := range []struct {
		name  string
		frame packet.Frame
		pad   int
		ret   uint32
		out   []byte
		ans   *dataplane.ProbeAnswer
	}{
		{name: "v4 SYN-ACK", frame: probeFrame(probeRS4, probeSrc4, 40001, packet.SYN|packet.ACK, 1001), ret: xdpTX,
			out: wantRST(probeRS4, probeSrc4, 40001, 1001), ans: &dataplane.ProbeAnswer{From: netip.AddrPortFrom(probeRS4, 80), Port: 40001, Ack: 1001}},
		{name: "v4 SYN-ACK, options and padding", frame: func() packet.Frame {
			f := probeFrame(probeRS4, probeSrc4, 40002, packet.SYN|packet.ACK, 0xfffffffe)
			f.IPOptions = []byte{1, 1, 1, 1}
			f.L4 = tcpL4(probeRS4, probeSrc4, 80, 40002, packet.SYN|packet.ACK, 5, 0xfffffffe, 1000, nil)
			return f
		}(), pad: 2, ret: xdpTX,
			out: wantRST(probeRS4, probeSrc4, 40002, 0xfffffffe), ans: &dataplane.ProbeAnswer{From: netip.AddrPortFrom(probeRS4, 80), Port: 40002, Ack: 0xfffffffe}},
		{name: "v6 SYN-ACK", frame: probeFrame(probeRS6, probeSrc6, 40001, packet.SYN|packet.ACK, 77), ret: xdpTX,
			out: wantRST(probeRS6, probeSrc6, 40001, 77), ans: &dataplane.ProbeAnswer{From: netip.AddrPortFrom(probeRS6, 80), Port: 40001, Ack: 77}},
		{name: "v4 RST", frame: probeFrame(probeRS4, probeSrc4, 40001, packet.RST|packet.ACK, 9), ret: xdpDrop,
			ans: &dataplane.ProbeAnswer{From: netip.AddrPortFrom(probeRS4, 80), Port: 40001, Ack: 9, Refused: true}},
		{name: "v6 RST", frame: probeFrame(probeRS6, probeSrc6, 40001, packet.RST|packet.ACK, 10), ret: xdpDrop,
			ans: &dataplane.ProbeAnswer{From: netip.AddrPortFrom(probeRS6, 80), Port: 40001, Ack: 10, Refused: true}},
		{name: "RST without ACK", frame: probeFrame(probeRS4, probeSrc4, 40001, packet.RST, 0), ret: xdpPass},
		{name: "ACK", frame: probeFrame(probeRS4, probeSrc4, 40001, packet.ACK, 5), ret: xdpPass},
		{name: "SYN", frame: probeFrame(probeRS4, probeSrc4, 40001, packet.SYN, 0), ret: xdpPass},
		{name: "SYN-ACK-FIN", frame: probeFrame(probeRS4, probeSrc4, 40001, packet.SYN|packet.ACK|packet.FIN, 5), ret: xdpPass},
		{name: "port not registered", frame: probeFrame(probeRS4, probeSrc4, 40003, packet.SYN|packet.ACK, 5), ret: xdpPass},
		{name: "address not registered", frame: probeFrame(probeRS4, netip.MustParseAddr("192.0.2.2"), 40001, packet.SYN|packet.ACK, 5), ret: xdpPass},
		{name: "v6 port of v4 only", frame: probeFrame(probeRS6, probeSrc6, 40002, packet.SYN|packet.ACK, 5), ret: xdpPass},
		{name: "another host's MAC", frame: func() packet.Frame {
			f := probeFrame(probeRS4, probeSrc4, 40001, packet.SYN|packet.ACK, 5)
			f.DstMAC = net.HardwareAddr{0x02, 9, 9, 9, 9, 9}
			return f
		}(), ret: xdpDrop},
	} {
		in := append(tc.frame.Bytes(), make([]byte, tc.pad)...)
		before := monotonic(t)
		ret, out := e.run(in)
		after := monotonic(t)
		if ret != tc.ret {
			t.Errorf("%d %s: action %s, want %s (verdicts %v)", i, tc.name, actionNames[ret], actionNames[tc.ret], e.verdicts())
			continue
		}
		if tc.out != nil {
			expectFrame(t, tc.name, out, tc.out)
		}
		if tc.ans != nil {
			want = append(want, *tc.ans)
			taken = append(taken, [2]int64{before, after})
		}
	}
	got, err := e.d.ProbeAnswers(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Each answer says when the program took it (bpf_ktime_get_ns): within
	// its run.
	for i := range min(len(got), len(taken)) {
		if tk := got[i].Taken; tk < taken[i][0] || tk > taken[i][1] {
			t.Errorf("answer %d taken at %d, want within its run %d..%d", i, tk, taken[i][0], taken[i][1])
		}
		got[i].Taken = 0
	}
	if !slices.Equal(got, want) {
		t.Errorf("answers\n%v\nwant\n%v", got, want)
	}
	v := e.verdicts()
	if v["tx_probe_rst"] != 3 || v["probe_refused"] != 2 {
		t.Errorf("verdicts %v: want 3 tx_probe_rst, 2 probe_refused", v)
	}

	// Unregistered: to the kernel again.
	if err := e.d.UnwatchProbes(probeSrc4, 40001); err != nil {
		t.Fatal(err)
	}
	if ret, _ := e.run(probeFrame(probeRS4, probeSrc4, 40001, packet.SYN|packet.ACK, 5).Bytes()); ret != xdpPass {
		t.Errorf("after UnwatchProbes: action %s, want pass", actionNames[ret])
	}
	if ret, _ := e.run(probeFrame(probeRS6, probeSrc6, 40001, packet.SYN|packet.ACK, 5).Bytes()); ret != xdpTX {
		t.Errorf("the v6 source of the same port: action %s, want tx", actionNames[ret])
	}
	if got, _ := e.d.ProbeAnswers(nil); len(got) != 1 {
		t.Errorf("answers %v, want the v6 one", got)
	}
}

// TestProbeAnswersStale: once the control plane stops advancing the
// program's clock (the process is gone), the kernel answers again: the
// ports are free for other sockets.
func TestProbeAnswersStale(t *testing.T) {
	e := newEnvOpts(t, Options{SyncInterval: -1, MapSizes: testSizes, ManualClock: true})
	if err := e.d.WatchProbes(probeSrc4, 40001); err != nil {
		t.Fatal(err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatal(err)
	}
	now := time.Duration(ts.Nano())
	frame := probeFrame(probeRS4, probeSrc4, 40001, packet.SYN|packet.ACK, 5).Bytes()
	for _, tc := range []struct {
		clock time.Duration
		ret   uint32
	}{{now, xdpTX}, {now - 3*time.Second, xdpPass}, {now + 100*time.Millisecond, xdpTX}} {
		if err := e.d.SetClock(tc.clock); err != nil {
			t.Fatal(err)
		}
		if ret, _ := e.run(frame); ret != tc.ret {
			t.Errorf("clock %v behind: action %s, want %s", now-tc.clock, actionNames[ret], actionNames[tc.ret])
		}
	}
}

// TestProbeSourcesClosed: Close removes the sources, as the program may
// outlive the process (a restart keeps forwarding).
func TestProbeSourcesClosed(t *testing.T) {
	e := newEnv(t)
	if err := e.d.WatchProbes(probeSrc4, 40001); err != nil {
		t.Fatal(err)
	}
	srcs, ports := e.d.objs.XlbProbeSrcs, e.d.objs.XlbProbePorts
	srcs, err := srcs.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer srcs.Close()
	ports, err = ports.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer ports.Close()
	e.d.unwatchAll()
	var k bpfXlbProbeSrc
	if err := srcs.NextKey(nil, &k); err == nil {
		t.Errorf("a source left: %+v", k)
	}
	var w uint64
	if err := ports.Lookup(uint32(40001/64), &w); err != nil || w != 0 {
		t.Errorf("port word %x (%v), want 0", w, err)
	}
}

// TestProbeAnswersLost: a CPU that reports more answers than its ring
// holds between two reads overwrites the oldest; the reader counts them
// lost, in Stats' events.
func TestProbeAnswersLost(t *testing.T) {
	e := newEnv(t)
	if err := e.d.WatchProbes(probeSrc4, 40001); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.ProbeAnswers(nil); err != nil { // the reader starts
		t.Fatal(err)
	}
	const extra = 100
	if err := e.ns.Do(func() error {
		// One CPU's ring: this thread stays on CPU 0.
		var set unix.CPUSet
		set.Set(0)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
		for i := range probeSlots + extra {
			frame := probeFrame(probeRS4, probeSrc4, 40001, packet.SYN|packet.ACK, uint32(i)).Bytes()
			out := make([]byte, len(frame)+256)
			opts := ebpf.RunOptions{Data: frame, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(e.eth0)}}
			if ret, err := e.d.Program().Run(&opts); err != nil || ret != xdpTX {
				return fmt.Errorf("run %d: %v, action %d", i, err, ret)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := e.d.ProbeAnswers(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != probeSlots || got[0].Ack != extra || int(got[len(got)-1].Ack) != probeSlots+extra-1 {
		t.Errorf("%d answers read, acks %d..%d; want the newest %d, %d..%d", len(got), got[0].Ack, got[len(got)-1].Ack, probeSlots, extra, probeSlots+extra-1)
	}
	st, err := e.d.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Events[EventProbeAnswersLost]; n != extra {
		t.Errorf("%s %d, want %d", EventProbeAnswersLost, n, extra)
	}
}

// monotonic reads CLOCK_MONOTONIC, bpf_ktime_get_ns's clock, in ns.
func monotonic(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}
