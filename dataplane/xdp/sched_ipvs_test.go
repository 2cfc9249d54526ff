package xdp

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// The schedulers that read IPVS's connection counts (sed, nq, fo, ovf,
// twos) and the connection thresholds, through BPF_PROG_TEST_RUN: each
// rule as net/netfilter/ipvs has it, the file named, over scripted counts
// (written into xlb_be_conns_v1 before each new flow) or over the counts
// the program keeps from real packets.

// beID is the backend id of real server i of s.
func (e *env) beID(s dataplane.Service, i int) uint32 {
	e.t.Helper()
	id, ok := e.live(s.Key)[s.Backends[i].Key()]
	if !ok {
		e.t.Fatalf("real server %s of %s not installed", s.Backends[i].Key(), s.Key)
	}
	return id
}

// setConns scripts the connection counts of s's real servers: active[i]
// and inactive[i] (nil: 0) as IPVS's activeconns and inactconns.
func (e *env) setConns(s dataplane.Service, active, inactive []int64) {
	e.t.Helper()
	for i := range s.Backends {
		var c bpfXlbBeConns
		if i < len(active) {
			c.Active = active[i]
		}
		if i < len(inactive) {
			c.Inactive = inactive[i]
		}
		if err := e.d.objs.XlbBeConnsV1.Put(e.beID(s, i), &c); err != nil {
			e.t.Fatal(err)
		}
	}
}

// conns reads the connection counts of real server i of s.
func (e *env) conns(s dataplane.Service, i int) bpfXlbBeConns {
	e.t.Helper()
	var c bpfXlbBeConns
	if err := e.d.objs.XlbBeConnsV1.Lookup(e.beID(s, i), &c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// overloaded reads the overload flag of real server i of s.
func (e *env) overloaded(s dataplane.Service, i int) bool {
	e.t.Helper()
	var b bpfXlbBackend
	if err := e.d.objs.XlbBackendsV1.Lookup(e.beID(s, i), &b); err != nil {
		e.t.Fatal(err)
	}
	return b.Overload != 0
}

// setOverloaded sets the overload flag of real server i of s, as the
// program does at the upper threshold.
func (e *env) setOverloaded(s dataplane.Service, i int) {
	e.t.Helper()
	id := e.beID(s, i)
	var b bpfXlbBackend
	if err := e.d.objs.XlbBackendsV1.Lookup(id, &b); err != nil {
		e.t.Fatal(err)
	}
	b.Overload = 1
	if err := e.d.objs.XlbBackendsV1.Put(id, &b); err != nil {
		e.t.Fatal(err)
	}
}

// newFlow is the SYN of the n-th new flow.
func newFlow(n int) packet.Frame {
	return tcpFrame(client(n%60000), vip4, uint16(1024+n/60000), 80, packet.SYN)
}

// scripted is one case of a scheduler over scripted counts: the weights
// of its real servers, their active and inactive connections, which ones
// are overloaded, and the real server the next new flow must go to (-1:
// none, the flow is dropped).
type scripted struct {
	name             string
	weights          []uint32
	active, inactive []int64
	overloaded       []int
	want             int
}

func runScripted(t *testing.T, sched dataplane.Scheduler, cases []scripted) {
	e := newEnv(t)
	for n, tc := range cases {
		s := svc(sched, e.pool(len(tc.weights), tc.weights...))
		e.apply(s)
		e.setConns(s, tc.active, tc.inactive)
		for _, i := range tc.overloaded {
			e.setOverloaded(s, i)
		}
		if got := e.pick(newFlow(n)); got != tc.want {
			t.Errorf("%s %s: weights %v, active %v, inactive %v, overloaded %v: new flow went to %d, want %d",
				sched, tc.name, tc.weights, tc.active, tc.inactive, tc.overloaded, got, tc.want)
		}
		// The next case starts without the flags this one set.
		e.apply(svc(sched, nil))
	}
}

// sed (ip_vs_sed.c): the least (activeconns + 1) / weight, compared as
// loh * w' > doh * w, so the first of equals wins; weight 0 and overloaded
// real servers are passed over; inactive connections do not count
// (ip_vs_sed_dest_overhead).
func TestSchedulerSED(t *testing.T) {
	runScripted(t, dataplane.ShortestExpectedDelay, []scripted{
		{name: "idle: the heaviest", weights: []uint32{1, 2, 3}, want: 2},
		{name: "(0+1)/1 = (1+1)/2: the first of equals", weights: []uint32{1, 2, 3}, active: []int64{0, 1, 3}, want: 0},
		{name: "(1+1)/1 > (1+1)/2 < (3+1)/3", weights: []uint32{1, 2, 3}, active: []int64{1, 1, 3}, want: 1},
		{name: "sed is not wlc: (0+1)/1 < (1+1)/1", weights: []uint32{1, 1}, active: []int64{0, 1}, want: 0},
		{name: "inactive connections do not count", weights: []uint32{1, 1}, active: []int64{1, 0}, inactive: []int64{0, 500}, want: 1},
		{name: "weight 0 passed over", weights: []uint32{0, 5}, active: []int64{0, 100}, want: 1},
		{name: "overloaded passed over", weights: []uint32{1, 2, 3}, overloaded: []int{2}, want: 1},
		{name: "all overloaded: none", weights: []uint32{1, 2}, overloaded: []int{0, 1}, want: -1},
	})
}

// nq (ip_vs_nq.c): the first real server in list order without an active
// connection, whatever its weight; else as sed.
func TestSchedulerNQ(t *testing.T) {
	runScripted(t, dataplane.NeverQueue, []scripted{
		{name: "all idle: the first, not the heaviest", weights: []uint32{1, 5, 1}, want: 0},
		{name: "the first idle", weights: []uint32{1, 5, 1}, active: []int64{3, 0, 0}, want: 1},
		{name: "inactive connections leave it idle", weights: []uint32{1, 5}, active: []int64{2, 0}, inactive: []int64{0, 90}, want: 1},
		{name: "none idle: sed's (1+1)/1 > (4+1)/5 < (2+1)/1", weights: []uint32{1, 5, 1}, active: []int64{1, 4, 2}, want: 1},
		{name: "none idle, equal: the first", weights: []uint32{2, 1}, active: []int64{3, 1}, want: 0},
		{name: "an overloaded idle one passed over", weights: []uint32{1, 5, 1}, active: []int64{3, 0, 0}, overloaded: []int{1}, want: 2},
	})
}

// fo (ip_vs_fo.c): the highest weight among those not overloaded, the
// first of equals (a strictly greater weight replaces); connections do
// not count.
func TestSchedulerFO(t *testing.T) {
	runScripted(t, dataplane.WeightedFailover, []scripted{
		{name: "the first of the highest", weights: []uint32{2, 5, 5, 3}, want: 1},
		{name: "connections do not count", weights: []uint32{2, 5, 5, 3}, active: []int64{0, 1000, 0, 0}, inactive: []int64{0, 1000, 0, 0}, want: 1},
		{name: "failover to the next highest", weights: []uint32{2, 5, 5, 3}, overloaded: []int{1}, want: 2},
		{name: "and the next", weights: []uint32{2, 5, 5, 3}, overloaded: []int{1, 2}, want: 3},
		{name: "none left", weights: []uint32{2, 5}, overloaded: []int{0, 1}, want: -1},
	})
}

// ovf (ip_vs_ovf.c): the highest weight among those not overloaded whose
// active connections are at most their weight (activeconns > weight
// skips), the first of equals.
func TestSchedulerOVF(t *testing.T) {
	runScripted(t, dataplane.Overflow, []scripted{
		{name: "idle: the highest weight", weights: []uint32{2, 5, 3}, want: 1},
		{name: "active = weight still takes flows", weights: []uint32{2, 5, 3}, active: []int64{0, 5, 0}, want: 1},
		{name: "active > weight overflows to the next weight", weights: []uint32{2, 5, 3}, active: []int64{0, 6, 0}, want: 2},
		{name: "and the next", weights: []uint32{2, 5, 3}, active: []int64{0, 6, 4}, want: 0},
		{name: "inactive connections do not count", weights: []uint32{2, 5, 3}, active: []int64{0, 5, 0}, inactive: []int64{0, 100, 0}, want: 1},
		{name: "every one over its weight: none", weights: []uint32{2, 5, 3}, active: []int64{3, 6, 4}, want: -1},
		{name: "overloaded passed over", weights: []uint32{2, 5, 3}, overloaded: []int{1}, want: 2},
		{name: "the first of equals", weights: []uint32{3, 3}, want: 0},
	})
}

// The counts the program keeps from real packets: a connection is
// inactive until the client's second packet (ESTABLISHED), active until
// its FIN, then inactive until it expires; ovf over them: weights 2 and 1.
func TestActiveCountsFromPackets(t *testing.T) {
	e := newEnv(t)
	s := svc(dataplane.Overflow, e.pool(2, 2, 1))
	e.apply(s)
	syn := func(c int) int { return e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.SYN)) }
	ack := func(c int) int { return e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.ACK)) }
	fin := func(c int) int { return e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.FIN|packet.ACK)) }
	// SYNs alone are inactive: ovf keeps sending to the weight-2 server.
	for c := range 4 {
		if got := syn(c); got != 0 {
			t.Fatalf("SYN %d went to %d; unanswered SYNs are inactive, want 0", c, got)
		}
	}
	if c := e.conns(s, 0); c.Active != 0 || c.Inactive != 4 {
		t.Fatalf("after 4 SYNs: %+v, want 0 active, 4 inactive", c)
	}
	// Established, three are over its weight 2: the next goes to server 1.
	for c := range 3 {
		ack(c)
	}
	if c := e.conns(s, 0); c.Active != 3 || c.Inactive != 1 {
		t.Fatalf("after 3 ACKs: %+v, want 3 active, 1 inactive", c)
	}
	if got := syn(10); got != 1 {
		t.Fatalf("new flow with 3 active on weight 2 went to %d, want 1", got)
	}
	ack(10)
	ack(10) // a second ACK moves nothing
	if c := e.conns(s, 1); c.Active != 1 || c.Inactive != 0 {
		t.Fatalf("server 1 after its flow's ACKs: %+v, want 1 active", c)
	}
	// A FIN makes it inactive again: server 0 has 2 active, takes flows.
	fin(0)
	if c := e.conns(s, 0); c.Active != 2 || c.Inactive != 2 {
		t.Fatalf("after a FIN: %+v, want 2 active, 2 inactive", c)
	}
	if got := syn(11); got != 0 {
		t.Fatalf("new flow with 2 active on weight 2 went to %d, want 0", got)
	}
	// Sync recounts from the connection table: the same numbers.
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if c0, c1 := e.conns(s, 0), e.conns(s, 1); c0.Active != 2 || c0.Inactive != 3 || c1.Active != 1 || c1.Inactive != 0 {
		t.Fatalf("after Sync: %+v and %+v, want 2/3 and 1/0", c0, c1)
	}
}

// twosIPVS is ip_vs_twos_schedule's choice (ip_vs_twos.c) for random
// numbers r1 and r2 in [0, sum of the weights], over real servers with
// weights w (0: not eligible, as an overloaded one) and overheads oh
// (ip_vs_dest_conn_overhead: activeconns * 256 + inactconns).
func twosIPVS(w, oh []int64, r1, r2 int64) int {
	choice1, choice2 := -1, -1
	var weight1, weight2, overhead1, overhead2 int64 = -1, -1, 0, 0
	for i := range w {
		if w[i] <= 0 {
			continue
		}
		r1 -= w[i]
		r2 -= w[i]
		if r1 <= 0 && weight1 == -1 {
			choice1, weight1, overhead1 = i, w[i], oh[i]
		}
		if r2 <= 0 && weight2 == -1 {
			choice2, weight2, overhead2 = i, w[i], oh[i]
		}
		if weight1 != -1 && weight2 != -1 {
			break
		}
	}
	if choice2 >= 0 && weight2*overhead1 > weight1*overhead2 {
		choice1 = choice2
	}
	return choice1
}

// twos (ip_vs_twos.c) picks at random, so its rule is tested
// statistically: over scripted counts (set again before every flow) the
// share of new flows each real server takes must be within 5 standard
// deviations (and one flow) of the probability IPVS's rule gives, which
// twosIPVS computes exactly over every pair (r1, r2); a real server the
// rule never picks must take none. A wrong modulus (T instead of T + 1),
// a missed tie rule or another overhead moves a share by far more.
func TestSchedulerTWOS(t *testing.T) {
	const flows = 30000
	e := newEnv(t)
	for _, tc := range []struct {
		name             string
		weights          []uint32
		active, inactive []int64
		overloaded       []int
	}{
		// Equal load: choice 1 always stays, and the first real server
		// takes its weight plus one of the T+1 random values: 2/3.
		{name: "tie", weights: []uint32{1, 1}, active: []int64{4, 4}},
		{name: "weighted loads", weights: []uint32{1, 2, 3, 4}, active: []int64{3, 1, 2, 0}, inactive: []int64{5, 0, 100, 7}},
		// 1*256+0 against 0*256+255: inactive counts 1/256 of active.
		{name: "active weighs 256 inactive", weights: []uint32{2, 2, 1}, active: []int64{1, 0, 0}, inactive: []int64{0, 255, 300}},
		{name: "overloaded never", weights: []uint32{3, 1, 2}, active: []int64{0, 2, 1}, overloaded: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			e.flushConns()
			s := svc(dataplane.TwoChoices, e.pool(len(tc.weights), tc.weights...))
			e.apply(s)
			w := make([]int64, len(tc.weights))
			oh := make([]int64, len(tc.weights))
			var total int64
			for i, x := range tc.weights {
				w[i] = int64(x)
				oh[i] = tc.active[i] * 256
				if tc.inactive != nil {
					oh[i] += tc.inactive[i]
				}
			}
			for _, i := range tc.overloaded {
				w[i] = 0
				e.setOverloaded(s, i)
			}
			for _, x := range w {
				total += x
			}
			want := make([]float64, len(w))
			for r1 := range total + 1 {
				for r2 := range total + 1 {
					want[twosIPVS(w, oh, r1, r2)] += 1 / float64((total+1)*(total+1))
				}
			}
			got := make([]int, len(w))
			for n := range flows {
				e.setConns(s, tc.active, tc.inactive)
				f := newFlow(n)
				b := e.pick(f)
				if b < 0 {
					t.Fatalf("flow %d not forwarded", n)
				}
				got[b]++
				// The client gives up, freeing the flow's embryonic
				// entry: of 30000 SYNs live at once, hundreds would
				// find their slot held and be hashed, not scheduled
				// (bpf/lib/embryo.h).
				f.TCPFlags = packet.RST
				e.pick(f)
			}
			for i, p := range want {
				mean, sd := flows*p, math.Sqrt(flows*p*(1-p))
				if math.Abs(float64(got[i])-mean) > 5*sd+1 {
					t.Errorf("real server %d took %d of %d new flows; IPVS's rule gives p = %.4f: %.0f ± %.0f", i, got[i], flows, p, mean, 5*sd)
				}
			}
			t.Logf("%s: shares %v of %d, IPVS's probabilities %v", tc.name, got, flows, fmt.Sprintf("%.4f", want))
		})
	}
}

// thresholdPool is two real servers, the first with thresholds.
func (e *env) thresholdPool(upper, lower uint32, weights ...uint32) []dataplane.Backend {
	bs := e.pool(2, weights...)
	bs[0].UpperThreshold, bs[0].LowerThreshold = upper, lower
	return bs
}

// ip_vs_bind_dest (ip_vs_conn.c): a real server whose connections (active
// and inactive) reach its upper threshold is overloaded and every
// scheduler passes it over: rr and wrr go on along their cycle, the
// scanning ones take another, sh and mh (IPVS's without their fallback
// flag) drop the new flow. Established flows stay.
func TestThresholdOverload(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		sched dataplane.Scheduler
		want  []int // the first new flows; then every one to server 1
	}{
		// The 3rd connection of server 0 reaches 3: the rest go to 1.
		{dataplane.RoundRobin, []int{0, 1, 0, 1, 0}},
		{dataplane.WeightedRoundRobin, []int{0, 1, 0, 1, 0}},
		{dataplane.LeastConnection, []int{0, 1, 0, 1, 0}},
		{dataplane.WeightedLeastConnection, []int{0, 1, 0, 1, 0}},
		{dataplane.ShortestExpectedDelay, []int{0, 0, 0}}, // SYNs are inactive: sed sees no load
		{dataplane.NeverQueue, []int{0, 0, 0}},
		{dataplane.WeightedFailover, []int{0, 0, 0}},
		{dataplane.Overflow, []int{0, 0, 0}},
		{dataplane.TwoChoices, nil}, // random until server 0 has 3
	} {
		t.Run(string(tc.sched), func(t *testing.T) {
			e := e.with(t)
			e.flushConns()
			s := svc(tc.sched, e.thresholdPool(3, 1))
			e.apply(s)
			e.resetLoad()
			got := e.picks(syns(40, 80))
			if !equalInts(got[:len(tc.want)], tc.want) {
				t.Errorf("new flows went to %v, want %v first", got, tc.want)
			}
			on0 := 0
			for i, b := range got {
				switch {
				case b == 0 && on0 < 3:
					on0++
				case b != 1:
					t.Fatalf("flow %d went to %d with server 0 at its upper threshold (all: %v)", i, b, got)
				}
			}
			if on0 != 3 {
				t.Errorf("server 0 took %d new flows, want its upper threshold 3 (all: %v)", on0, got)
			}
			if !e.overloaded(s, 0) || e.overloaded(s, 1) {
				t.Errorf("overload flags %v %v, want server 0 only", e.overloaded(s, 0), e.overloaded(s, 1))
			}
			// Its established flows stay.
			for c, b := range got {
				if b == 0 {
					if again := e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.ACK)); again != 0 {
						t.Errorf("established flow of client %d moved to %d while its server is overloaded", c, again)
					}
				}
			}
		})
	}
	for _, sched := range []dataplane.Scheduler{dataplane.SourceHashing, dataplane.MaglevHashing} {
		t.Run(string(sched), func(t *testing.T) {
			e := e.with(t)
			e.flushConns()
			bs := e.pool(1)
			bs[0].UpperThreshold = 2
			s := svc(sched, bs)
			e.apply(s)
			e.resetLoad()
			dropped := e.verdicts()["drop_no_backend"]
			if got := e.picks(syns(4, 80)); !equalInts(got, []int{0, 0, -1, -1}) {
				t.Errorf("new flows went to %v; want 2, then dropped (no fallback)", got)
			}
			if n := e.verdicts()["drop_no_backend"] - dropped; n != 2 {
				t.Errorf("%d new flows counted as drop_no_backend, want 2", n)
			}
			if got := e.pick(tcpFrame(client(0), vip4, 1024, 80, packet.ACK)); got != 0 {
				t.Errorf("established flow went to %d while its server is overloaded, want 0", got)
			}
		})
	}
}

// ip_vs_unbind_dest (ip_vs_conn.c): the flag is cleared when a connection
// expires and leaves fewer than the lower threshold, or, without one,
// fewer than 3/4 of the upper one (total * 4 < upper * 3). UDP flows that
// expire and come back, on fo (server 0 first while it may take flows).
func TestThresholdHysteresis(t *testing.T) {
	for _, tc := range []struct {
		name         string
		upper, lower uint32
		// flows to server 0 before it is overloaded; how many must expire
		// before it takes flows again.
		full, expire int
	}{
		{"lower threshold", 3, 2, 3, 2},    // 3 -> 2 (not below 2) -> 1
		{"3/4 of the upper", 4, 0, 4, 2},   // 4 -> 3 (12 >= 12) -> 2 (8 < 12)
		{"lower equals upper", 2, 2, 2, 1}, // 2 -> 1 (and 2 again with the flow back)
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := manualEnv(t)
			s := svc(dataplane.WeightedFailover, e.thresholdPool(tc.upper, tc.lower, 5, 1))
			s.Key.Proto = dataplane.UDP
			e.apply(s)
			flow := func(c int) packet.Frame { return udpFrame(client(c), vip4, 5000, 80) }
			for c := range tc.full {
				if got := e.pick(flow(c)); got != 0 {
					t.Fatalf("flow %d went to %d before the upper threshold, want 0", c, got)
				}
			}
			if got := e.pick(flow(100)); got != 1 || !e.overloaded(s, 0) {
				t.Fatalf("at the upper threshold: new flow to %d, overloaded %v; want 1, true", got, e.overloaded(s, 0))
			}
			// The UDP timeout is 30 s: every flow has expired; each one's
			// next packet finds it expired (uncounted) and is a new flow.
			e.setClock(time.Hour + 31*time.Second)
			for c := range tc.expire {
				got := e.pick(flow(c))
				last := c == tc.expire-1
				if last && got != 0 {
					t.Errorf("flow %d, the %d-th to expire, went to %d: want 0, no longer overloaded", c, c+1, got)
				}
				if !last && got != 1 {
					t.Errorf("flow %d, the %d-th to expire, went to %d: want 1, still overloaded", c, c+1, got)
				}
			}
		})
	}
}

// Sync recounts the connections and clears the flag by the same rule when
// connections end without a packet to notice (closed TCP connections
// past their FIN timeout), and __ip_vs_update_dest's rule holds when the
// thresholds change: raised or removed, the flag is cleared; lowered, it
// stays.
func TestThresholdSyncAndChange(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.WeightedFailover, e.thresholdPool(4, 1, 5, 1))
	e.apply(s)
	for c := range 4 {
		e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.SYN))
		e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.ACK))
	}
	if c := e.conns(s, 0); c.Active != 4 || c.Inactive != 0 || !e.overloaded(s, 0) {
		t.Fatalf("after 4 connections: %+v, overloaded %v; want 4 active, overloaded", c, e.overloaded(s, 0))
	}
	// Closed, they stay inactive until the FIN timeout (120 s), as IPVS's.
	for c := range 4 {
		e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.FIN|packet.ACK))
	}
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if c := e.conns(s, 0); c.Active != 0 || c.Inactive != 4 || !e.overloaded(s, 0) {
		t.Fatalf("closed, before the FIN timeout: %+v, overloaded %v; want 4 inactive, overloaded", c, e.overloaded(s, 0))
	}
	e.setClock(time.Hour + 121*time.Second)
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if c := e.conns(s, 0); c.Active != 0 || c.Inactive != 0 || e.overloaded(s, 0) {
		t.Fatalf("after the FIN timeout and a sync: %+v, overloaded %v; want none, not overloaded", c, e.overloaded(s, 0))
	}

	overload := func(c int) {
		t.Helper()
		e.setConns(s, []int64{9}, nil)
		if got := e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.SYN)); got != 0 || !e.overloaded(s, 0) {
			t.Fatalf("new flow to %d, overloaded %v; want 0, overloaded over its upper threshold", got, e.overloaded(s, 0))
		}
	}
	overload(50)
	s.Backends[0].UpperThreshold = 3 // lowered: stays
	e.apply(s)
	if !e.overloaded(s, 0) {
		t.Error("lowering the upper threshold cleared the flag; IPVS keeps it")
	}
	s.Backends[0].UpperThreshold = 20 // raised: cleared
	e.apply(s)
	if e.overloaded(s, 0) {
		t.Error("raising the upper threshold kept the flag; IPVS clears it")
	}
	s.Backends[0].UpperThreshold = 4
	e.apply(s)
	overload(51)
	s.Backends[0].UpperThreshold, s.Backends[0].LowerThreshold = 0, 0 // removed: cleared
	e.apply(s)
	if e.overloaded(s, 0) {
		t.Error("removing the thresholds kept the flag")
	}
	if got := e.pick(tcpFrame(client(60), vip4, 1024, 80, packet.SYN)); got != 0 {
		t.Errorf("new flow went to %d without thresholds, want 0", got)
	}
}
