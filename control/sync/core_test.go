package sync

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// The core, driven with explicit times. Each step is an input (a tiny
// language, see input) at a time offset, the actions it must produce, in
// order, and optionally what must hold after it.

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const epoch0 = 1000 // the boot epoch of the scenarios: request ids count from it

type step struct {
	at    time.Duration
	input string
	want  []string
	// check: "ready", "!ready", "sending", "!sending", "drop:replay=1",
	// "applied=3", "local=1".
	check []string
}

type scenario struct {
	name  string
	set   Settings
	steps []step
}

var (
	peerA = netip.MustParseAddr("10.0.0.2")
	peerB = netip.MustParseAddr("10.0.0.3")
)

func xlbUnicast(peers ...netip.Addr) Settings {
	return Settings{Protocol: ProtocolXLB, FollowRole: true, Peers: peers, ReadyTimeout: 30 * time.Second, Refresh: 60 * time.Second}
}

// parseInput parses a step's input:
//
//	start | tick | role master|backup | report N | refused REASON
//	rx FROM TYPE [e=EPOCH] [s=SEQ] [req=ID] [count=N] [n=RECORDS] [drop=REASON,...]
//	   (TYPE: conns, bulk, request, end)
//	applied RESULT... (imported, local, unknown_service, unknown_real, full)
func parseInput(t *testing.T, s string) input {
	t.Helper()
	f := strings.Fields(s)
	switch f[0] {
	case "start":
		return inStart{epoch: epoch0}
	case "tick":
		return inTimer{}
	case "role":
		return inRole{master: f[1] == "master"}
	case "report":
		n, _ := strconv.Atoi(f[1])
		return inReports{conns: make([]dataplane.Conn, n)}
	case "refused":
		for _, r := range Reasons() {
			if r.String() == f[1] {
				return inRefused{reason: r}
			}
		}
	case "rx":
		d := inDatagram{from: netip.MustParseAddr(f[1]), epoch: 1, seq: 1}
		d.typ = map[string]MsgType{"conns": MsgConns, "bulk": MsgBulkConns, "request": MsgBulkRequest, "end": MsgBulkEnd}[f[2]]
		for _, kv := range f[3:] {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseUint(v, 10, 64)
			switch k {
			case "e":
				d.epoch = n
			case "s":
				d.seq = n
			case "req":
				d.reqID = n
			case "count":
				d.count = uint32(n)
			case "n":
				d.conns = make([]dataplane.Conn, n)
			case "drop":
				for _, name := range strings.Split(v, ",") {
					for _, r := range Reasons() {
						if r.String() == name {
							d.dropped = append(d.dropped, r)
						}
					}
				}
			default:
				t.Fatalf("bad rx option %q", kv)
			}
		}
		return d
	case "applied":
		var res []dataplane.ImportResult
		for _, name := range f[1:] {
			for _, r := range dataplane.ImportResults {
				if r.String() == name {
					res = append(res, r)
				}
			}
		}
		return inApplied{results: res}
	}
	t.Fatalf("bad input %q", s)
	return nil
}

func (c *core) check(t *testing.T, what string) error {
	t.Helper()
	switch {
	case what == "ready" || what == "!ready":
		if c.ready != (what == "ready") {
			return fmt.Errorf("ready %v", c.ready)
		}
	case what == "sending" || what == "!sending":
		if c.sending != (what == "sending") {
			return fmt.Errorf("sending %v", c.sending)
		}
	case strings.HasPrefix(what, "drop:"):
		k, v, _ := strings.Cut(what[5:], "=")
		for _, r := range Reasons() {
			if r.String() == k {
				if got := strconv.FormatUint(c.stats.dropped[r], 10); got != v {
					return fmt.Errorf("dropped %s: %s", k, got)
				}
				return nil
			}
		}
		t.Fatalf("no reason %q", k)
	case strings.HasPrefix(what, "applied="):
		if got := strconv.FormatUint(c.stats.applied, 10); got != what[8:] {
			return fmt.Errorf("applied %s", got)
		}
	case strings.HasPrefix(what, "local="):
		if got := strconv.FormatUint(c.stats.local, 10); got != what[6:] {
			return fmt.Errorf("local %s", got)
		}
	default:
		t.Fatalf("bad check %q", what)
	}
	return nil
}

func run(t *testing.T, sc scenario) {
	c := newCore(sc.set)
	for i, st := range sc.steps {
		now := t0.Add(st.at)
		var got []string
		for _, a := range c.handle(now, parseInput(t, st.input)) {
			got = append(got, a.String())
		}
		if !slices.Equal(got, st.want) {
			t.Errorf("step %d (%v %q): actions\n  %q\nwant\n  %q", i, st.at, st.input, got, st.want)
		}
		for _, ch := range st.check {
			if err := c.check(t, ch); err != nil {
				t.Errorf("step %d (%v %q): %s: %v", i, st.at, st.input, ch, err)
			}
		}
	}
}

func TestCoreScenarios(t *testing.T) {
	ms := time.Millisecond
	for _, sc := range []scenario{
		{name: "bulk sync from a unicast peer", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, []string{"!ready", "!sending"}},
			{50 * ms, "rx 10.0.0.2 bulk s=1 req=1001 n=3", []string{"apply 3"}, nil},
			{51 * ms, "applied applied applied local", nil, []string{"applied=2", "local=1"}},
			{60 * ms, "rx 10.0.0.2 end s=2 req=1001 count=3", []string{"ready bulk"}, []string{"ready"}},
			// Nothing more to ask.
			{2 * time.Second, "tick", nil, nil},
		}},
		{name: "records lost: asked again, with a new id", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{50 * ms, "rx 10.0.0.2 bulk s=1 req=1001 n=2", []string{"apply 2"}, nil},
			{60 * ms, "rx 10.0.0.2 end s=2 req=1001 count=3", []string{"bulk-request 10.0.0.2 #1002"}, []string{"!ready"}},
			// The old request's answers no longer count.
			{70 * ms, "rx 10.0.0.2 end s=3 req=1001 count=0", nil, []string{"!ready"}},
			{80 * ms, "rx 10.0.0.2 bulk s=4 req=1002 n=3", []string{"apply 3"}, nil},
			{90 * ms, "rx 10.0.0.2 end s=5 req=1002 count=3", []string{"ready bulk"}, []string{"ready"}},
		}},
		{name: "a lossy peer: ready after the attempts", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{10 * ms, "rx 10.0.0.2 end s=1 req=1001 count=5", []string{"bulk-request 10.0.0.2 #1002"}, nil},
			{20 * ms, "rx 10.0.0.2 end s=2 req=1002 count=5", []string{"bulk-request 10.0.0.2 #1003"}, nil},
			{30 * ms, "rx 10.0.0.2 end s=3 req=1003 count=5", []string{"ready bulk"}, []string{"ready"}},
		}},
		{name: "no answer: asked every second, ready at the timeout", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{time.Second, "tick", []string{"bulk-request 10.0.0.2 #1001"}, []string{"!ready"}},
			{2 * time.Second, "tick", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{30 * time.Second, "tick", []string{"ready timeout"}, []string{"ready"}},
			{31 * time.Second, "tick", nil, nil},
		}},
		{name: "two unicast peers: ready once both answered", set: xlbUnicast(peerA, peerB), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001", "bulk-request 10.0.0.3 #1002"}, nil},
			{10 * ms, "rx 10.0.0.3 end s=1 req=1002 count=0", nil, []string{"!ready"}},
			{time.Second, "tick", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{time.Second + 10*ms, "rx 10.0.0.2 end s=1 req=1001 count=0", []string{"ready bulk"}, []string{"ready"}},
		}},
		{name: "multicast: the first complete answer", set: xlbUnicast(), steps: []step{
			{0, "start", []string{"bulk-request group #1001"}, nil},
			{10 * ms, "rx 10.0.0.3 bulk s=1 req=1001 n=1", []string{"apply 1"}, nil},
			{20 * ms, "rx 10.0.0.2 end s=1 req=1001 count=4", []string{"bulk-request group #1002"}, []string{"!ready"}},
			{30 * ms, "rx 10.0.0.3 end s=2 req=1002 count=0", []string{"ready bulk"}, []string{"ready"}},
		}},
		{name: "replay window", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{ms, "rx 10.0.0.2 conns e=5 s=10 n=1", []string{"apply 1"}, nil},
			{ms, "rx 10.0.0.2 conns e=5 s=10 n=1", nil, []string{"drop:replay=1"}},
			{ms, "rx 10.0.0.2 conns e=5 s=100 n=1", []string{"apply 1"}, nil},
			{ms, "rx 10.0.0.2 conns e=5 s=37 n=1", []string{"apply 1"}, nil}, // 63 back: still in the window
			{ms, "rx 10.0.0.2 conns e=5 s=37 n=1", nil, []string{"drop:replay=2"}},
			{ms, "rx 10.0.0.2 conns e=5 s=36 n=1", nil, []string{"drop:replay=3"}},  // 64 back: past it
			{ms, "rx 10.0.0.2 conns e=4 s=101 n=1", nil, []string{"drop:replay=4"}}, // an older boot
			{ms, "rx 10.0.0.2 conns e=6 s=1 n=1", []string{"apply 1"}, nil},         // the peer restarted
			{ms, "rx 10.0.0.2 conns e=5 s=101 n=1", nil, []string{"drop:replay=5"}},
		}},
		{name: "not a configured peer", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{ms, "rx 10.0.0.9 conns s=1 n=1", nil, []string{"drop:peer=1"}},
			{ms, "rx 10.0.0.9 end s=2 req=1001", nil, []string{"!ready"}},
		}},
		{name: "a peer's bulk request is answered in any role", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{ms, "rx 10.0.0.2 request s=1 req=77", []string{"dump 10.0.0.2 #77"}, []string{"!sending"}},
		}},
		{name: "decoding refusals and skipped records are counted", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{ms, "refused hmac", nil, []string{"drop:hmac=1"}},
			{ms, "refused size", nil, []string{"drop:size=1"}},
			{ms, "rx 10.0.0.2 conns s=1 n=1 drop=state,option", []string{"apply 1"}, []string{"drop:state=1", "drop:option=1"}},
			{ms, "applied unknown_service unknown_real_server full", nil,
				[]string{"drop:unknown_service=1", "drop:unknown_real_server=1", "drop:full=1"}},
		}},
		{name: "the master sends, batched; a backup stops after the grace", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, []string{"!sending"}},
			{ms, "report 3", nil, nil}, // a backup sends nothing
			{2 * ms, "role master", []string{"reporting true"}, []string{"sending"}},
			{3 * ms, "report 3", nil, nil},
			{5 * ms, "report 2", nil, nil},
			{13 * ms, "tick", []string{"send 5"}, nil},
			{14 * ms, "report 300", []string{"send 300"}, nil},
			{20 * ms, "role backup", nil, []string{"sending"}},
			{21 * ms, "report 1", nil, nil},
			{31 * ms, "tick", []string{"send 1"}, nil},
			// (The bulk request, unanswered, goes again too.)
			{20*ms + SendGrace, "tick", []string{"reporting false", "bulk-request 10.0.0.2 #1001"}, []string{"!sending"}},
			{3 * time.Second, "report 1", nil, nil},
		}},
		{name: "a director that leaves MASTER sends what waits", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{ms, "role master", []string{"reporting true"}, nil},
			{2 * ms, "report 4", nil, nil},
			{3 * ms, "role backup", nil, nil},
			{3*ms + SendGrace, "tick", []string{"send 4", "reporting false", "bulk-request 10.0.0.2 #1001"}, nil},
		}},
		{name: "the refresh while sending", set: xlbUnicast(peerA), steps: []step{
			{0, "start", []string{"bulk-request 10.0.0.2 #1001"}, nil},
			{0, "rx 10.0.0.2 end s=1 req=1001 count=0", []string{"ready bulk"}, nil},
			{0, "role master", []string{"reporting true"}, nil},
			{60 * time.Second, "tick", []string{"refresh"}, nil},
			{120 * time.Second, "tick", []string{"refresh"}, nil},
		}},
		{name: "without VRRP: both ways from the start", set: Settings{Protocol: ProtocolXLB, Peers: []netip.Addr{peerA}, ReadyTimeout: time.Second}, steps: []step{
			{0, "start", []string{"reporting true", "bulk-request 10.0.0.2 #1001"}, []string{"sending"}},
			{ms, "role backup", nil, []string{"sending"}},
			{ms, "rx 10.0.0.2 conns s=1 n=2", []string{"apply 2"}, nil},
		}},
		{name: "ipvs: no bulk, no replay window, ready after the wait", set: Settings{Protocol: ProtocolIPVS, FollowRole: true, ReadyTimeout: 10 * time.Second}, steps: []step{
			{0, "start", nil, []string{"!ready"}},
			{ms, "rx 10.0.0.2 conns n=2", []string{"apply 2"}, nil},
			{ms, "rx 10.0.0.2 conns n=2", []string{"apply 2"}, nil},
			{ms, "rx 10.0.0.7 conns n=1", []string{"apply 1"}, nil},
			{10 * time.Second, "tick", []string{"ready timeout"}, []string{"ready"}},
		}},
	} {
		t.Run(sc.name, func(t *testing.T) { run(t, sc) })
	}
}

// TestCoreNext: the deadlines the node's timer is armed for.
func TestCoreNext(t *testing.T) {
	c := newCore(xlbUnicast(peerA))
	if !c.next().IsZero() {
		t.Errorf("before start: %v", c.next())
	}
	c.handle(t0, inStart{epoch: epoch0})
	if got := c.next(); !got.Equal(t0.Add(BulkRetry)) {
		t.Errorf("after start: %v, want the bulk retry", got.Sub(t0))
	}
	c.handle(t0, inRole{master: true})
	c.handle(t0.Add(time.Millisecond), inReports{conns: make([]dataplane.Conn, 1)})
	if got := c.next(); !got.Equal(t0.Add(time.Millisecond + FlushDelay)) {
		t.Errorf("with a report waiting: %v, want the flush", got.Sub(t0))
	}
}
