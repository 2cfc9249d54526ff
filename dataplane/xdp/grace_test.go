package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// A change of a real server (its address) writes the new scheduling table into the
// inactive slot's own table once a grace period has passed since that
// slot was left (no outer map write, no RCU wait on the Apply's path); a
// change undone flips back to the table the slot still holds, writing no
// table at all. New flows follow the tables written.
func TestTableRewrittenInPlace(t *testing.T) {
	e := newEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(4))
	e.apply(s)
	st := e.d.services[s.Key]
	tableWrites := func(ws []write) (outer, inner int) {
		for _, w := range ws {
			switch w.m {
			case "xlb_tables_v1":
				outer += len(w.keys)
			case "xlb_table":
				inner += len(w.keys)
			}
		}
		return outer, inner
	}
	// The table of the active slot, as the program reads it.
	active := func() []uint32 {
		t.Helper()
		var slot uint32
		if err := e.d.objs.XlbSvcSlotV1.Lookup(st.id, &slot); err != nil {
			t.Fatal(err)
		}
		out := make([]uint32, st.tableSum[slot].n)
		for i := range out {
			if err := st.tables[slot].Lookup(uint32(i), &out[i]); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	sport := uint16(40000)
	// step moves real server i to addr (DR: the MAC stays, picks find it).
	step := func(what string, addr string, i int, wantOuter, wantInner int) {
		t.Helper()
		nettest.WaitFor(t, 10*time.Second, what+": a grace period after the last flip", func() error {
			e.d.mu.Lock()
			defer e.d.mu.Unlock()
			if !e.d.graceSince(st) {
				return fmt.Errorf("flip %d, grace after %d", st.flipGen, e.d.graceGen.Load())
			}
			return nil
		})
		ws := e.record()
		s.Backends[i].Addr = netip.MustParseAddr(addr)
		e.apply(s)
		e.d.onWrite = nil
		if outer, inner := tableWrites(*ws); outer != wantOuter || inner != wantInner {
			t.Errorf("%s: %d outer map and %d table entries written, want %d and %d", what, outer, inner, wantOuter, wantInner)
		}
		if got := active(); !slices.Equal(got, st.ids) {
			t.Errorf("%s: the active table is %v, want the backends %v in order", what, got, st.ids)
		}
		// New flows: a source port per step (the same 5-tuple would be a
		// retransmitted SYN, which keeps its real server while it takes
		// new flows, and is scheduled again once it takes none).
		sport++
		picked := map[int]bool{}
		for c := range 8 {
			picked[e.pick(tcpFrame(client(c), vip4, sport, 80, packet.SYN))] = true
		}
		if len(picked) != 4 || picked[-1] {
			t.Errorf("%s: new flows went to %v, want the 4 backends", what, picked)
		}
	}
	// Both slots share the first table: a new one goes into the outer map.
	undo := s.Backends[2].Addr.String()
	step("first change", "10.0.9.4", 3, 1, 0)
	step("second change", "10.0.9.3", 2, 0, 4)
	step("second change undone", undo, 2, 0, 0)
}
