package xdp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// pool returns n real servers 10.0.1.1.. behind eth0, each with its own MAC
// (02:bb:00:00:HI:LO) so that the output frame tells which one was picked.
func (e *env) pool(n int, weights ...uint32) []dataplane.Backend {
	bs := make([]dataplane.Backend, n)
	for i := range bs {
		w := uint32(1)
		if i < len(weights) {
			w = weights[i]
		}
		bs[i] = dataplane.Backend{
			Addr:    netip.AddrFrom4([4]byte{10, 0, byte(1 + i/250), byte(1 + i%250)}),
			Port:    80,
			Weight:  w,
			MAC:     dataplane.MAC{0x02, 0xbb, 0, 0, byte(i >> 8), byte(i)},
			Ifindex: int32(e.eth0),
		}
	}
	return bs
}

func backendOf(out []byte) int {
	if out[1] != 0xbb {
		return -1
	}
	return int(out[4])<<8 | int(out[5])
}

// picks sends frames and returns the backend index each went to (-1: not
// forwarded), running all of them inside one namespace switch.
func (e *env) picks(frames [][]byte) []int {
	e.t.Helper()
	got := make([]int, len(frames))
	out := make([]byte, 2048)
	err := e.do(func() error {
		for i, f := range frames {
			opts := ebpf.RunOptions{Data: f, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(f)), IngressIfindex: uint32(e.eth0)}}
			ret, err := e.d.Program().Run(&opts)
			if err != nil {
				return err
			}
			got[i] = -1
			if ret == xdpTX {
				got[i] = backendOf(opts.DataOut)
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

func (e *env) pick(f packet.Frame) int { return e.picks([][]byte{f.Bytes()})[0] }

// flushConns empties the connection table and the embryonic flows.
func (e *env) flushConns() {
	e.t.Helper()
	for k := range embryos(e.t, e) {
		if err := e.d.objs.XlbEmbryosV1.Put(k, uint64(0)); err != nil {
			e.t.Fatal(err)
		}
	}
	var k bpfXlbFlow
	var keys []bpfXlbFlow
	it := e.d.objs.XlbConnsV1.Iterate()
	var v bpfXlbConn
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for i := range keys {
		_ = e.d.objs.XlbConnsV1.Delete(&keys[i])
	}
}

// client returns the n-th distinct client address.
func client(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)})
}

func syns(n int, dport uint16) [][]byte {
	fs := make([][]byte, n)
	for i := range fs {
		fs[i] = tcpFrame(client(i%60000), vip4, uint16(1024+i/60000), dport, packet.SYN).Bytes()
	}
	return fs
}

func svc(sched dataplane.Scheduler, bs []dataplane.Backend) dataplane.Service {
	return dataplane.Service{
		Name: "s", Key: dataplane.ServiceKey{Addr: vip4, Port: 80, Proto: dataplane.TCP},
		Scheduler: sched, Forward: dataplane.DirectRouting, Enabled: true, Backends: bs,
	}
}

func equalInts(a, b []int) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestRoundRobinIPVSOrder(t *testing.T) {
	e := newEnv(t)
	e.apply(svc(dataplane.RoundRobin, e.pool(3, 1, 0, 5, 1)[:3]))
	if got, want := e.picks(syns(6, 80)), []int{0, 2, 0, 2, 0, 2}; !equalInts(got, want) {
		t.Errorf("rr over backends with weights 1,0,5: %v, want %v", got, want)
	}
	e.apply(svc(dataplane.WeightedRoundRobin, e.pool(3, 4, 3, 2)))
	e.flushConns()
	// ip_vs_wrr's interleaved order, twice around the cycle.
	want := []int{0, 0, 1, 0, 1, 2, 0, 1, 2, 0, 0, 1, 0, 1, 2, 0, 1, 2}
	if got := e.picks(syns(18, 80)); !equalInts(got, want) {
		t.Errorf("wrr 4,3,2: %v, want %v", got, want)
	}
}

func TestLeastConnection(t *testing.T) {
	e := newEnv(t)
	e.apply(svc(dataplane.LeastConnection, e.pool(3)))
	// Equal loads: the first wins, as IPVS; then the least loaded.
	if got := e.picks(syns(6, 80)); !equalInts(got, []int{0, 1, 2, 0, 1, 2}) {
		t.Fatalf("lc: %v", got)
	}
	// Close both connections of backend 1 (clients 1 and 4): it becomes the
	// least loaded and takes the next two new flows.
	for _, c := range []int{1, 4} {
		e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.FIN|packet.ACK))
	}
	if got := e.picks(syns(8, 80)[6:]); !equalInts(got, []int{1, 1}) {
		t.Fatalf("lc after closing backend 1's flows: %v, want [1 1]", got)
	}
	// wlc: weights 1 and 3: loads 0/1 vs 0/3 tie -> 0; then backend 1 until
	// its load/weight passes backend 0's.
	e.apply(svc(dataplane.WeightedLeastConnection, e.pool(2, 1, 3)))
	e.flushConns()
	e.resetLoad()
	if got, want := e.picks(syns(8, 80)), []int{0, 1, 1, 1, 0, 1, 1, 1}; !equalInts(got, want) {
		t.Fatalf("wlc 1,3: %v, want %v", got, want)
	}
}

// resetLoad zeroes the lc/wlc counts of every backend (as Sync does after
// a flush).
func (e *env) resetLoad() {
	e.t.Helper()
	if err := e.d.Sync(); err != nil {
		e.t.Fatal(err)
	}
}

func TestConsistentHashDisruption(t *testing.T) {
	const flows, n = 100000, 10
	for _, sched := range []dataplane.Scheduler{dataplane.MaglevHashing, dataplane.SourceHashing} {
		t.Run(string(sched), func(t *testing.T) {
			e := newEnv(t).with(t)
			bs := e.pool(n)
			e.apply(svc(sched, bs))
			frames := make([][]byte, flows)
			for i := range frames {
				// Distinct clients for sh; distinct 5-tuples for mh.
				frames[i] = tcpFrame(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), vip4, uint16(1024+i%50000), 80, packet.SYN).Bytes()
			}
			before := e.picks(frames)
			share := make([]int, n)
			for _, b := range before {
				if b < 0 {
					t.Fatal("a flow was not forwarded")
				}
				share[b]++
			}
			for i, c := range share {
				if f := float64(c) / flows; f < 0.08 || f > 0.12 {
					t.Errorf("backend %d took %.3f of the flows", i, f)
				}
			}
			removed := 4
			e.apply(svc(sched, append(bs[:removed:removed], bs[removed+1:]...)))
			e.flushConns()
			after := e.picks(frames)
			moved := 0
			for i := range before {
				if after[i] == removed {
					t.Fatalf("flow %d went to the removed backend", i)
				}
				if after[i] != before[i] {
					moved++
				}
			}
			frac := float64(moved) / flows
			t.Logf("%s: removing 1 of %d real servers moved %.2f%% of %d flows (ideal %.2f%%)", sched, n, 100*frac, flows, 100.0/n)
			if limit := 1.0/n + 0.02; frac > limit {
				t.Errorf("moved %.4f of flows, more than 1/N + 2%% = %.4f", frac, limit)
			}
		})
	}
}

func TestSourceHashKeepsClientTogether(t *testing.T) {
	e := newEnv(t)
	e.apply(svc(dataplane.SourceHashing, e.pool(5)))
	for c := range 20 {
		first := e.pick(tcpFrame(client(c), vip4, 1000, 80, packet.SYN))
		for port := uint16(1001); port < 1010; port++ {
			if got := e.pick(tcpFrame(client(c), vip4, port, 80, packet.SYN)); got != first {
				t.Fatalf("client %d: port %d went to %d, port 1000 to %d", c, port, got, first)
			}
		}
	}
}

// xdpSchedulers are the schedulers the program has (dh, lblc and lblcr
// are IPVS's only).
func xdpSchedulers() []dataplane.Scheduler {
	var out []dataplane.Scheduler
	for _, s := range dataplane.SchedulerTable {
		if s.BPF != "" {
			out = append(out, s.Name)
		}
	}
	return out
}

func TestEstablishedFlowsStick(t *testing.T) {
	for _, sched := range xdpSchedulers() {
		t.Run(string(sched), func(t *testing.T) {
			e := newEnv(t).with(t)
			bs := e.pool(6, 1, 1, 1, 1, 0, 0)
			e.apply(svc(sched, bs[:4]))
			owner := map[int]int{}
			for c := range 40 {
				owner[c] = e.pick(tcpFrame(client(c), vip4, 2000, 80, packet.SYN))
			}
			check := func(what string) {
				t.Helper()
				for c := range 40 {
					if got := e.pick(tcpFrame(client(c), vip4, 2000, 80, packet.ACK|packet.PSH)); got != owner[c] {
						t.Fatalf("after %s: flow of client %d moved from backend %d to %d", what, c, owner[c], got)
					}
				}
			}
			check("nothing")
			changed := e.pool(6, 5, 1, 3, 1, 2, 2)
			e.apply(svc(sched, changed))
			check("weights changed and backends added")
			e.apply(svc(sched, []dataplane.Backend{changed[0], changed[2], changed[3], changed[4], changed[5]}))
			check("a backend removed")
		})
	}
}

func TestWeightZeroDrains(t *testing.T) {
	e := newEnv(t)
	bs := e.pool(3)
	e.apply(svc(dataplane.RoundRobin, bs))
	owner := e.picks(syns(6, 80))
	if !equalInts(owner, []int{0, 1, 2, 0, 1, 2}) {
		t.Fatalf("flows before draining went to %v, want the rr cycle", owner)
	}
	bs[1].Weight = 0
	e.apply(svc(dataplane.RoundRobin, bs))
	established := func(when string) {
		t.Helper()
		for c := range 6 {
			if got := e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.ACK)); got != owner[c] {
				t.Fatalf("%s: established flow of client %d moved from %d to %d", when, c, owner[c], got)
			}
		}
	}
	established("after draining backend 1")
	// New flows (other source ports than the established ones) go to the
	// other two, in turn.
	var fresh [][]byte
	for c := range 60 {
		fresh = append(fresh, tcpFrame(client(c), vip4, 2048, 80, packet.SYN).Bytes())
	}
	got := e.picks(fresh)
	n := map[int]int{}
	for c, b := range got {
		if b != 0 && b != 2 {
			t.Fatalf("new flow of client %d went to %d; want 0 or 2 with backend 1 drained (all: %v)", c, b, got)
		}
		n[b]++
	}
	if n[0] != 30 || n[2] != 30 {
		t.Errorf("new flows split %v between backends 0 and 2, want 30 each", n)
	}
	established("after new flows")
	// The only backend drained: new flows are dropped, counted.
	e.apply(svc(dataplane.RoundRobin, e.pool(1, 0)))
	if got := e.pick(tcpFrame(client(999), vip4, 1024, 80, packet.SYN)); got != -1 {
		t.Fatalf("new flow went to %d with every backend drained", got)
	}
	if e.verdicts()["drop_no_backend"] == 0 {
		t.Error("drop_no_backend not counted")
	}
}

func TestPersistence(t *testing.T) {
	e := newEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(3))
	s.Persistence = 300 * time.Second
	e.apply(s)
	// Each client's connections stick to its first real server, while rr
	// moves on for other clients.
	first := map[int]int{}
	for c := range 3 {
		first[c] = e.pick(tcpFrame(client(c), vip4, 3000, 80, packet.SYN))
	}
	if !equalInts([]int{first[0], first[1], first[2]}, []int{0, 1, 2}) {
		t.Fatalf("first connections %v, want rr order", first)
	}
	for port := uint16(3001); port < 3010; port++ {
		for c := range 3 {
			if got := e.pick(tcpFrame(client(c), vip4, port, 80, packet.SYN)); got != first[c] {
				t.Fatalf("client %d connection from port %d went to %d, not its persistent %d", c, port, got, first[c])
			}
		}
	}
	// A drained persistent real server gives up its clients.
	bs := e.pool(3)
	bs[first[0]].Weight = 0
	s.Backends = bs
	e.apply(s)
	if got := e.pick(tcpFrame(client(0), vip4, 4000, 80, packet.SYN)); got == first[0] {
		t.Fatal("persistence sent a new flow to a drained real server")
	}
}

func TestNoMACNoNewFlows(t *testing.T) {
	e := newEnv(t)
	bs := e.pool(2)
	bs[0].MAC = dataplane.MAC{} // neighbour not resolved yet
	e.apply(svc(dataplane.RoundRobin, bs))
	for _, b := range e.picks(syns(10, 80)) {
		if b != 1 {
			t.Fatalf("new flow went to %d; only backend 1 has a MAC", b)
		}
	}
}

func TestCountersAddUp(t *testing.T) {
	e := newEnv(t)
	bs := e.pool(3)
	e.apply(svc(dataplane.RoundRobin, bs))
	frames := syns(30, 80)
	for c := range 30 {
		frames = append(frames, tcpFrame(client(c), vip4, 1024, 80, packet.ACK).Bytes())
	}
	frames = append(frames, tcpFrame(client(1), vip4, 1024, 22, packet.SYN).Bytes()) // not a service
	var bytesSent uint64
	for _, f := range frames[:60] {
		bytesSent += uint64(len(f))
	}
	e.picks(frames)
	st, err := e.d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ss := st.Services[svc(dataplane.RoundRobin, nil).Key]
	if ss.Packets != 60 || ss.Bytes != bytesSent || ss.Connections != 30 {
		t.Errorf("service counters %+v, want 60 packets, %d bytes, 30 connections", ss.Counters, bytesSent)
	}
	var sum dataplane.Counters
	for _, b := range bs {
		c := ss.Backend(b.Key())
		if c.Packets != 20 || c.Connections != 10 {
			t.Errorf("backend %s counters %+v, want 20 packets 10 connections", b.Key(), c.Counters)
		}
		sum.Add(c.Counters)
	}
	if sum.Packets != ss.Packets || sum.Bytes != ss.Bytes {
		t.Errorf("backend sum %+v != service %+v", sum, ss.Counters)
	}
	var total uint64
	for _, n := range st.Verdicts {
		total += n
	}
	if total != uint64(len(frames)) || st.Verdicts["tx"] != 60 || st.Verdicts["pass_not_service"] != 1 {
		t.Errorf("verdicts %v, want %d in all", st.Verdicts, len(frames))
	}
	// ActiveConn/InActConn after a sync: 30 flows established.
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	st, _ = e.d.Stats(t.Context())
	for _, b := range bs {
		if c := st.Services[svc(dataplane.RoundRobin, nil).Key].Backend(b.Key()); c.ActiveConns != 10 || c.InactiveConns != 0 {
			t.Errorf("backend %s: %d active, %d inactive, want 10 and 0", b.Key(), c.ActiveConns, c.InactiveConns)
		}
	}
}

// TestWRRPositionPerConnection: the (w)rr position moves once per new
// connection the program schedules, not once per client request. A SYN
// retransmitted on a live entry keeps its real server and takes no
// position; after the client's reset, its next SYN on the closed entry is
// a new connection and takes the next one, as IPVS reschedules a SYN on a
// closed connection (ip_vs_in, conn_reuse_mode). So a client whose
// connection is reset before its handshake completes (a real server that
// answers its SYN with an ACK: a NAT real server in two services, whose
// client reuses a source port toward both, TestReloadUnderLoad/nat) uses
// two positions for one request.
func TestWRRPositionPerConnection(t *testing.T) {
	e := newEnv(t)
	e.apply(svc(dataplane.WeightedRoundRobin, e.pool(3)))
	a, b, c := client(1), client(2), client(3)
	steps := []struct {
		what string
		f    packet.Frame
		want int
	}{
		{"a's SYN", tcpFrame(a, vip4, 40000, 80, packet.SYN), 0},
		{"a's SYN again (retransmitted)", tcpFrame(a, vip4, 40000, 80, packet.SYN), 0},
		{"b's SYN", tcpFrame(b, vip4, 40000, 80, packet.SYN), 1},
		{"a's reset", tcpFrame(a, vip4, 40000, 80, packet.RST|packet.ACK), 0},
		{"a's SYN after its reset", tcpFrame(a, vip4, 40000, 80, packet.SYN), 2},
		{"c's SYN", tcpFrame(c, vip4, 40000, 80, packet.SYN), 0},
	}
	for _, s := range steps {
		if got := e.pick(s.f); got != s.want {
			t.Errorf("%s: real server %d, want %d", s.what, got, s.want)
		}
	}
}
