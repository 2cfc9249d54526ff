package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// connOf returns the connection entry of an IPv4 TCP flow to vip4:80.
func (e *env) connOf(src netip.Addr, sport uint16) (bpfXlbConn, bool) {
	e.t.Helper()
	k := bpfXlbFlow{Sport: sport, Dport: 80, Proto: 6, Family: familyV4}
	a, b := src.As4(), vip4.As4()
	copy(k.Src[:], a[:])
	copy(k.Dst[:], b[:])
	var v bpfXlbConn
	err := e.d.objs.XlbConnsV1.Lookup(&k, &v)
	return v, err == nil
}

func (e *env) events() map[string]uint64 {
	e.t.Helper()
	st, err := e.d.Stats(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Events
}

// TestEmbryonicFlows: a SYN of a DR service is scheduled and recorded as
// an embryonic flow, not in the connection table; a retransmitted SYN
// keeps its real server (rr would move on); the handshake's ACK creates
// the connection entry from it, established, and frees the word.
func TestEmbryonicFlows(t *testing.T) {
	e := manualEnv(t)
	e.apply(svc(dataplane.RoundRobin, e.pool(3)))
	const n = 6
	first := e.picks(syns(n, 80))
	if !equalInts(first, []int{0, 1, 2, 0, 1, 2}) {
		t.Fatalf("SYNs went to %v, want the rr cycle", first)
	}
	if got := len(embryos(t, e)); got != n {
		t.Fatalf("%d embryonic flows after %d SYNs", got, n)
	}
	for c := range n {
		if _, ok := e.connOf(client(c), 1024); ok {
			t.Fatalf("client %d: a SYN created a connection entry", c)
		}
	}
	// Retransmissions, in another order: each keeps its real server.
	for c := n - 1; c >= 0; c-- {
		if got := e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.SYN)); got != first[c] {
			t.Fatalf("retransmitted SYN of client %d went to %d, its SYN to %d", c, got, first[c])
		}
	}
	// The handshakes complete: connection entries from the words.
	for c := range n {
		if got := e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.ACK)); got != first[c] {
			t.Fatalf("ACK of client %d went to %d, its SYN to %d", c, got, first[c])
		}
		ct, ok := e.connOf(client(c), 1024)
		if !ok || ct.State != uint8(bpfXlbConnStateXLB_CT_ESTABLISHED) || ct.Backend != e.backendID(t, first[c]) {
			t.Fatalf("client %d: connection entry %+v (present %v), want established on backend %d", c, ct, ok, first[c])
		}
		// Established at once: the flow cache serves its next packets.
		f := tcpFrame(client(c), vip4, 1024, 80, packet.ACK)
		per := e.flowCache(cacheIdx(f, uint32(flowCacheSlots)))
		src := client(c).As4()
		if !slices.ContainsFunc(per, func(fc bpfXlbFlowCache) bool {
			return fc.Flow.Sport == 1024 && [4]byte(fc.Flow.Src[:4]) == src && fc.Backend == ct.Backend
		}) {
			t.Fatalf("client %d: the ACK that completed the handshake left its flow out of the flow cache", c)
		}
	}
	if got := len(embryos(t, e)); got != 0 {
		t.Errorf("%d embryonic flows left after every handshake completed", got)
	}
	st, err := e.d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Events["embryo_promoted"]; got != n {
		t.Errorf("embryo_promoted %d, want %d", got, n)
	}
	if got := st.Services[svc(dataplane.RoundRobin, nil).Key].Connections; got != n {
		t.Errorf("%d connections counted, want %d (a retransmitted SYN is not a new one)", got, n)
	}
}

// backendID is the backend id of pool entry i of the test's only service.
func (e *env) backendID(t *testing.T, i int) uint32 {
	t.Helper()
	for _, st := range e.d.services {
		for _, id := range st.ids {
			if e.d.backends.get(id).key().Addr == netip.AddrFrom4([4]byte{10, 0, byte(1 + i/250), byte(1 + i%250)}) {
				return id
			}
		}
	}
	t.Fatalf("no backend %d", i)
	return 0
}

// TestLeastConnectionEmbryos: lc counts a SYN at once (a burst of SYNs
// spreads before any handshake completes), the ACK carries the count over
// to the connection, a RST in the handshake releases it, and Sync counts
// live embryonic flows in the load and as inactive connections.
func TestLeastConnectionEmbryos(t *testing.T) {
	e := manualEnv(t)
	e.apply(svc(dataplane.LeastConnection, e.pool(2)))
	if got := e.picks(syns(4, 80)); !equalInts(got, []int{0, 1, 0, 1}) {
		t.Fatalf("lc SYNs: %v", got)
	}
	b0, b1 := e.backendID(t, 0), e.backendID(t, 1)
	if e.load(b0) != 2 || e.load(b1) != 2 {
		t.Fatalf("loads %d, %d after 4 SYNs, want 2, 2", e.load(b0), e.load(b1))
	}
	e.pick(tcpFrame(client(0), vip4, 1024, 80, packet.ACK)) // client 0 (backend 0) established
	e.pick(tcpFrame(client(2), vip4, 1024, 80, packet.RST)) // client 2 (backend 0) gives up
	if e.load(b0) != 1 || e.load(b1) != 2 {
		t.Fatalf("loads %d, %d after an ACK and a RST on backend 0, want 1, 2", e.load(b0), e.load(b1))
	}
	if got := e.pick(tcpFrame(client(9), vip4, 1024, 80, packet.SYN)); got != 0 {
		t.Fatalf("next SYN went to %d, want the least loaded 0", got)
	}
	// Sync's recount agrees: backend 0 one connection and one SYN, backend
	// 1 two SYNs (inactive).
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if e.load(b0) != 2 || e.load(b1) != 2 {
		t.Errorf("loads %d, %d after Sync, want 2, 2", e.load(b0), e.load(b1))
	}
	st, _ := e.d.Stats(t.Context())
	bs := st.Services[svc(dataplane.LeastConnection, nil).Key]
	if c := bs.Backend(e.pool(2)[1].Key()); c.InactiveConns != 2 {
		t.Errorf("backend 1: %d inactive connections, want its 2 SYNs", c.InactiveConns)
	}
	// Past the SYN-only timeout an embryonic flow is gone from the load.
	e.setClock(time.Hour + 130*time.Second)
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if e.load(b1) != 0 {
		t.Errorf("backend 1 load %d after its SYNs expired, want 0", e.load(b1))
	}
}

// TestLeastConnectionManyCandidates: the scan covers candidates past the
// first chunks (XLB_LC_CHUNK per bpf_loop step).
func TestLeastConnectionManyCandidates(t *testing.T) {
	e := newEnv(t)
	const n = 37
	e.apply(svc(dataplane.WeightedLeastConnection, e.pool(n)))
	want := make([]int, n+3)
	for i := range want {
		want[i] = i % n
	}
	if got := e.picks(syns(n+3, 80)); !equalInts(got, want) {
		t.Fatalf("wlc over %d equal backends: %v, want %v", n, got, want)
	}
}

// TestSYNFloodMode: past the SYN rate limit SYNs are scheduled by hash
// and write nothing; the ACK of such a handshake (no embryonic entry)
// computes the same real server and creates the connection entry; a SYN
// retransmitted during the flood keeps its real server, and so does a
// handshake whose SYN was recorded before the flood.
func TestSYNFloodMode(t *testing.T) {
	// 100 SYNs/s per CPU: 13 per window of 134 ms.
	e := newEnvOpts(t, Options{SyncInterval: -1, MapSizes: testSizes, ManualClock: true, SYNFloodRate: 100})
	e.oneCPU = true
	e.setClock(time.Hour)
	s := svc(dataplane.RoundRobin, e.pool(5))
	e.apply(s)
	limit := int(synLimit(100))
	before := e.pick(tcpFrame(client(60000), vip4, 7, 80, packet.SYN)) // recorded before the flood
	frames := syns(3*limit, 80)
	got := e.picks(frames)
	ev := e.events()
	if ev["syn_flood_start"] != 1 || ev["syn_flood"] != uint64(len(frames)-limit+1) {
		t.Fatalf("events %v: want flood mode from SYN %d of %d", ev, limit, len(frames))
	}
	if n := len(embryos(t, e)); n != limit {
		t.Fatalf("%d embryonic flows, want %d: one per SYN before the flood", n, limit)
	}
	for i := limit; i < len(frames); i++ {
		c, port := i%60000, uint16(1024+i/60000)
		// Retransmitted: the same real server.
		if again := e.pick(tcpFrame(client(c), vip4, port, 80, packet.SYN)); again != got[i] {
			t.Fatalf("SYN %d went to %d, its retransmission to %d", i, got[i], again)
		}
		// The handshake completes: no word, the hash again, and an entry.
		if ack := e.pick(tcpFrame(client(c), vip4, port, 80, packet.ACK)); ack != got[i] {
			t.Fatalf("SYN %d went to %d, its ACK to %d", i, got[i], ack)
		}
		if _, ok := e.connOf(client(c), port); !ok {
			t.Fatalf("flow %d: no connection entry after its handshake", i)
		}
	}
	if again := e.pick(tcpFrame(client(60000), vip4, 7, 80, packet.ACK)); again != before {
		t.Fatalf("a handshake begun before the flood went to %d, then to %d", before, again)
	}
	st, _ := e.d.Stats(t.Context())
	// Every SYN scheduled is a connection: in flood mode a retransmitted
	// SYN cannot be told from a new one; an ACK never counts again.
	if got, want := st.Services[s.Key].Connections, uint64(1+len(frames)+len(frames)-limit); got != want {
		t.Errorf("%d connections counted, want %d", got, want)
	}
	// The mode holds for XLB_SYN_FLOOD_HOLD (64 s), its tail as long
	// (TestSYNFloodModeTail), then rr again.
	e.setClock(time.Hour + 140*time.Second)
	e.flushConns()
	a := e.picks([][]byte{tcpFrame(client(100), vip4, 2000, 80, packet.SYN).Bytes(),
		tcpFrame(client(101), vip4, 2000, 80, packet.SYN).Bytes(), tcpFrame(client(102), vip4, 2000, 80, packet.SYN).Bytes()})
	if !equalInts(a, []int{a[0], (a[0] + 1) % 5, (a[0] + 2) % 5}) {
		t.Errorf("after the flood: %v, want the rr cycle", a)
	}
}

// TestTunnelTrimsPadding: a minimum-size frame carries Ethernet padding
// after its datagram; the tunnel carries the datagram only, and the outer
// lengths count it only (issue 14: the outer total length was 70 for a
// 60-byte frame).
func TestTunnelTrimsPadding(t *testing.T) {
	e := routedEnv(t)
	e.apply(tunnelService(vip4b, dataplane.EncapIPIP, netip.Prefix{}, tunRS4),
		func() dataplane.Service {
			s := tunnelService(vip4b, dataplane.EncapGUE, netip.MustParsePrefix("10.0.9.0/24"), tunRS4)
			s.Key.Port = 81
			for i := range s.Backends {
				s.Backends[i].Port = 81
			}
			return s
		}())
	for _, port := range []uint16{80, 81} {
		in := packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: client4, Dst: vip4b, Proto: packet.TCP, SrcPort: 40000, DstPort: port, TCPFlags: packet.SYN, DontFragment: true}
		datagram := in.Bytes()
		if len(datagram) != 54 {
			t.Fatalf("test frame of %d bytes, want 54", len(datagram))
		}
		padded := append(append([]byte{}, datagram...), make([]byte, 6)...) // 60 bytes, as on the wire
		ret, out := e.runOn(e.eth0, padded)
		if ret != xdpRedirect {
			t.Fatalf("port %d: action %s (verdicts %v)", port, actionNames[ret], e.verdicts())
		}
		inner := packet.IPPacket(datagram)
		var want []byte
		if port == 80 {
			want = append(ethHeader(gwMAC, eth1MAC, 0x0800), outerIPv4(eth1IP4, tunRS4, packet.IPIP, true, 0, len(inner))...)
		} else {
			h := frameHash(in)
			src := netip.AddrFrom4([4]byte{10, 0, 9, byte(1 + h%254)})
			want = append(ethHeader(gwMAC, eth1MAC, 0x0800), outerIPv4(src, tunRS4, packet.UDP, true, 0, 8+4+len(inner))...)
			want = append(want, gueHeaders(uint16(49152+h%16384), 6080, packet.IPIP, len(inner))...)
		}
		expectFrame(t, fmt.Sprintf("padded frame to port %d", port), out, append(want, inner...))
	}
}

// colliding returns, for each of flows, the SYN of another flow (from
// 198.19.0.0/16, the from-th candidate on) whose embryonic entry has the
// same slot: xlb_embryos_v1 is indexed by the flow hash.
func colliding(flows []packet.Frame, from int) []packet.Frame {
	want := map[uint32]int{}
	for i, f := range flows {
		want[frameHash(f)&uint32(maxEmbryos-1)] = i
	}
	out := make([]packet.Frame, len(flows))
	for c := from; len(want) > 0; c++ {
		f := tcpFrame(netip.AddrFrom4([4]byte{198, 19, byte(c >> 8), byte(c)}), vip4, uint16(1024+c>>16), 80, packet.SYN)
		if i, ok := want[frameHash(f)&uint32(maxEmbryos-1)]; ok {
			out[i] = f
			delete(want, frameHash(f)&uint32(maxEmbryos-1))
		}
	}
	return out
}

func withFlags(f packet.Frame, flags uint8) packet.Frame {
	f.TCPFlags = flags
	return f
}

// handshakes returns the SYNs of n flows to vip4:80 from port 7 (clients
// 60000 and up: not those of syns).
func handshakes(n int) []packet.Frame {
	fs := make([]packet.Frame, n)
	for i := range fs {
		fs[i] = tcpFrame(client(60000+i), vip4, 7, 80, packet.SYN)
	}
	return fs
}

func frameBytes(fs ...packet.Frame) [][]byte {
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i] = f.Bytes()
	}
	return out
}

// TestEmbryoKeptAtFloodOnset: handshakes in progress when a SYN flood
// begins keep their real servers. The flooded SYNs counted before flood
// mode starts (up to the limit in a window) are scheduled and recorded as
// any, but take no slot held by a live embryonic entry: issue 14's resets,
// where they did, and a handshake's retransmitted SYN and ACK, finding no
// entry in flood mode, were hashed to another real server.
func TestEmbryoKeptAtFloodOnset(t *testing.T) {
	// 100 SYNs/s per CPU: 13 per window of 134 ms.
	e := newEnvOpts(t, Options{SyncInterval: -1, MapSizes: testSizes, ManualClock: true, SYNFloodRate: 100})
	e.oneCPU = true
	e.setClock(time.Hour)
	e.apply(svc(dataplane.RoundRobin, e.pool(5)))
	limit := int(synLimit(100))
	const n = 6 // 2n SYNs stay below the limit
	hs := handshakes(n)
	first := e.picks(frameBytes(hs...))
	// The flood: a SYN on each handshake's slot, then past the limit.
	if got := e.picks(frameBytes(colliding(hs, 0)...)); slices.Contains(got, -1) {
		t.Fatalf("spoofed SYNs not forwarded: %v (verdicts %v)", got, e.verdicts())
	}
	e.picks(syns(2*limit, 80))
	if ev := e.events(); ev["syn_flood_start"] != 1 || ev["embryo_busy"] != n {
		t.Fatalf("events %v: want flood mode, and the %d SYNs on held slots counted", ev, n)
	}
	for i, h := range hs {
		// The SYN-ACK was lost: the SYN again, in flood mode.
		if got := e.pick(h); got != first[i] {
			t.Errorf("handshake %d: SYN to %d, its retransmission in the flood to %d", i, first[i], got)
		}
		if got := e.pick(withFlags(h, packet.ACK)); got != first[i] {
			t.Errorf("handshake %d: SYN to %d, its ACK in the flood to %d", i, first[i], got)
		}
		if ct, ok := e.connOf(h.Src, h.SrcPort); !ok || ct.Backend != e.backendID(t, first[i]) {
			t.Errorf("handshake %d: connection entry %+v (present %v), want backend %d", i, ct, ok, first[i])
		}
	}
}

// TestEmbryoSlotHeld: below the flood limit, a SYN whose slot holds
// another flow's live embryonic entry takes nothing and is scheduled by
// hash. The first handshake keeps its real server; the second's
// retransmissions and ACK are hashed alike, also after the first's ACK
// freed the slot: a contended entry leaves the slot held (for nobody, not
// counted) until a SYN-only timeout after the last SYN that found it.
// Then the slot takes a SYN again.
func TestEmbryoSlotHeld(t *testing.T) {
	e := manualEnv(t) // SYN-only timeout 120 s
	s := svc(dataplane.RoundRobin, e.pool(5))
	e.apply(s)
	const n = 6
	hs := handshakes(n)
	first := e.picks(frameBytes(hs...))
	spoofed := colliding(hs, 0)
	second := e.picks(frameBytes(spoofed...))
	if ev := e.events(); ev["embryo_busy"] != n {
		t.Fatalf("events %v: want embryo_busy %d", ev, n)
	}
	if got := len(embryos(t, e)); got != n {
		t.Fatalf("%d embryonic entries, want the first handshakes' %d", got, n)
	}
	check := func(what string, f packet.Frame, want int) {
		t.Helper()
		if got := e.pick(f); got != want {
			t.Errorf("%s (%s:%d, flags %#x): to %d, its SYN to %d", what, f.Src, f.SrcPort, f.TCPFlags, got, want)
		}
	}
	for i := range n {
		check("first, retransmitted", hs[i], first[i])
		check("second, retransmitted", spoofed[i], second[i])
	}
	for i := range n {
		check("first, ACK", withFlags(hs[i], packet.ACK), first[i])
	}
	e.setClock(time.Hour + 60*time.Second)
	for i := range n {
		check("second, retransmitted after the first's ACK", spoofed[i], second[i])
	}
	// 150 s after the first handshake's SYN, 90 s after the second's last.
	e.setClock(time.Hour + 150*time.Second)
	for i := range n {
		check("second, ACK", withFlags(spoofed[i], packet.ACK), second[i])
		if ct, ok := e.connOf(spoofed[i].Src, spoofed[i].SrcPort); !ok || ct.Backend != e.backendID(t, second[i]) {
			t.Errorf("second handshake %d: connection entry %+v (present %v), want backend %d", i, ct, ok, second[i])
		}
	}
	ws := embryos(t, e)
	for k, w := range ws {
		if uint32(w) != 0 {
			t.Errorf("slot %d: word %#x of a flow after every handshake completed", k, w)
		}
	}
	if len(ws) != n {
		t.Errorf("%d slots held after the handshakes, want %d", len(ws), n)
	}
	// Held for nobody: Sync counts no inactive connection for them.
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := e.d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Services[s.Key].Backends {
		if c.InactiveConns != 0 {
			t.Errorf("backend %s: %d inactive connections, want 0 (every handshake completed)", c.Key, c.InactiveConns)
		}
	}
	// A SYN-only timeout (and a tick) after the last SYN that found them,
	// the slots take a SYN again: recorded, not hashed.
	e.setClock(time.Hour + 60*time.Second + 122*time.Second)
	busy := e.events()["embryo_busy"]
	third := colliding(hs, 1<<22)
	if got := e.picks(frameBytes(third...)); slices.Contains(got, -1) {
		t.Fatalf("SYNs on the freed slots not forwarded: %v", got)
	}
	if got := e.events()["embryo_busy"]; got != busy {
		t.Errorf("embryo_busy %d, want %d: a slot held past its timeout", got, busy)
	}
	ws = embryos(t, e)
	for i, f := range third {
		if w := ws[frameHash(f)&uint32(maxEmbryos-1)]; uint32(w) == 0 {
			t.Errorf("SYN %d on a freed slot: word %#x, want its own", i, w)
		}
	}
}

// TestSYNFloodModeTail: a handshake whose SYN was hashed in the last
// minute of SYN flood mode (the flood over, the mode held) keeps its real
// server when its SYN is retransmitted after the mode ended: for
// XLB_SYN_FLOOD_HOLD after it, SYNs are still placed by hash (recorded in
// embryonic entries as usual), then by their scheduler again.
func TestSYNFloodModeTail(t *testing.T) {
	e := newEnvOpts(t, Options{SyncInterval: -1, MapSizes: testSizes, ManualClock: true, SYNFloodRate: 100})
	e.oneCPU = true
	e.setClock(time.Hour)
	e.apply(svc(dataplane.RoundRobin, e.pool(5)))
	e.picks(syns(3*int(synLimit(100)), 80))
	if ev := e.events(); ev["syn_flood_start"] != 1 {
		t.Fatalf("events %v: want flood mode", ev)
	}
	// The flood stopped; the mode holds until about 64 s after it.
	e.setClock(time.Hour + 60*time.Second)
	hs := handshakes(6)
	first := e.picks(frameBytes(hs...))
	flooded := e.events()["syn_flood"]
	// The mode is over; the SYN-ACKs were lost: the SYNs again.
	e.setClock(time.Hour + 70*time.Second)
	for i, h := range hs {
		if got := e.pick(h); got != first[i] {
			t.Errorf("handshake %d: SYN in flood mode to %d, retransmitted after it to %d", i, first[i], got)
		}
		if got := e.pick(withFlags(h, packet.ACK)); got != first[i] {
			t.Errorf("handshake %d: SYN in flood mode to %d, its ACK after it to %d", i, first[i], got)
		}
	}
	if got := e.events()["syn_flood"]; got != flooded {
		t.Errorf("syn_flood %d after the mode ended, want %d", got, flooded)
	}
}

// TestEmbryoRescheduledOffDownServer: a retransmitted SYN keeps its real
// server while that server takes new flows; once it takes none (its check
// failed: weight 0 installed), the next retransmission is scheduled again
// (the handshake has not ended: nothing is lost), the ACK follows it, and
// the first server's counts of the SYN are released. lc, whose load
// counts a SYN at once.
func TestEmbryoRescheduledOffDownServer(t *testing.T) {
	e := manualEnv(t)
	pool := e.pool(2)
	e.apply(svc(dataplane.LeastConnection, pool))
	syn := tcpFrame(client(0), vip4, 1024, 80, packet.SYN)
	first := e.pick(syn)
	if got := e.pick(syn); got != first {
		t.Fatalf("retransmitted SYN went to %d, its SYN to %d", got, first)
	}
	b0 := e.backendID(t, first)
	if e.load(b0) != 1 {
		t.Fatalf("load of backend %d: %d after a SYN, want 1", first, e.load(b0))
	}
	down := slices.Clone(pool)
	down[first].Weight = 0
	e.apply(svc(dataplane.LeastConnection, down))
	other := 1 - first
	if got := e.pick(syn); got != other {
		t.Fatalf("SYN retransmitted after its real server %d went down went to %d, want %d", first, got, other)
	}
	if n := e.events()["embryo_rescheduled"]; n != 1 {
		t.Errorf("embryo_rescheduled %d, want 1", n)
	}
	if e.load(b0) != 0 {
		t.Errorf("load of the down backend %d: %d, want its SYN released", first, e.load(b0))
	}
	if got := e.pick(tcpFrame(client(0), vip4, 1024, 80, packet.ACK)); got != other {
		t.Fatalf("the handshake's ACK went to %d, its retransmitted SYN to %d", got, other)
	}
	ct, ok := e.connOf(client(0), 1024)
	if !ok || ct.Backend != e.backendID(t, other) {
		t.Fatalf("connection entry %+v (present %v), want backend %d", ct, ok, other)
	}
	// An established flow of a down server is not moved: its next
	// packets stay (IPVS's default too).
	syn2 := tcpFrame(client(1), vip4, 1024, 80, packet.SYN)
	e.apply(svc(dataplane.LeastConnection, pool))
	to := e.pick(syn2)
	e.pick(tcpFrame(client(1), vip4, 1024, 80, packet.ACK))
	down = slices.Clone(pool)
	down[to].Weight = 0
	e.apply(svc(dataplane.LeastConnection, down))
	if got := e.pick(tcpFrame(client(1), vip4, 1024, 80, packet.ACK)); got != to {
		t.Fatalf("an established flow of a down server went to %d, want %d", got, to)
	}
}
