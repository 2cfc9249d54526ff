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
// table at all. A table is written where it differs only. Each slot holds a table of its own from the install, so
// the first change is written in place too. New flows follow the tables
// written.
func TestTableRewrittenInPlace(t *testing.T) {
	e := newEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(4))
	e.apply(s)
	st := e.d.services[s.Key]
	// The inactive slot gets a copy of its own after the grace period
	// that follows the install.
	nettest.WaitFor(t, 10*time.Second, "a table of its own in each slot", func() error {
		if a, b := slotTables(t, e, st.id); a == b {
			return fmt.Errorf("both slots hold the table map %d: the first change would replace one in the outer map", a)
		}
		return nil
	})
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
	// Only the entries that differ from what the inactive table holds are
	// written: the first change's one (real server 3's new id), then the
	// second's and the first's again (the inactive table is the one from
	// before the first change).
	undo := s.Backends[2].Addr.String()
	step("first change", "10.0.9.4", 3, 0, 1)
	step("second change", "10.0.9.3", 2, 0, 2)
	step("second change undone", undo, 2, 0, 0)
}

// slotTables returns the ids of the table maps the outer map holds in a
// service's two slots.
func slotTables(t *testing.T, e *env, id uint32) (uint32, uint32) {
	t.Helper()
	var ids [2]uint32
	for s := range ids {
		if err := e.d.objs.XlbTablesV1.Lookup(id*2+uint32(s), &ids[s]); err != nil {
			t.Fatal(err)
		}
	}
	return ids[0], ids[1]
}

// TestLongTableShared: a table longer than privateTableMax (Maglev's) is
// one map in both slots until its first change, which puts a new map into
// the outer map; the second is written in place.
func TestLongTableShared(t *testing.T) {
	e := newEnv(t)
	s := svc(dataplane.MaglevHashing, e.pool(4))
	e.apply(s)
	st := e.d.services[s.Key]
	for i, want := range []int{1, 0} {
		nettest.WaitFor(t, 10*time.Second, "a grace period after the last flip", func() error {
			e.d.mu.Lock()
			defer e.d.mu.Unlock()
			if !e.d.graceSince(st) {
				return fmt.Errorf("flip %d, grace after %d", st.flipGen, e.d.graceGen.Load())
			}
			return nil
		})
		if a, b := slotTables(t, e, st.id); i == 0 && a != b {
			t.Errorf("the slots hold table maps %d and %d, want one shared (%d entries > %d)", a, b, st.tableSum[0].n, privateTableMax)
		}
		ws := e.record()
		s.Backends[3].Addr = netip.MustParseAddr(fmt.Sprintf("10.0.9.%d", 10+i))
		e.apply(s)
		e.d.onWrite = nil
		outer := 0
		for _, w := range *ws {
			if w.m == "xlb_tables_v1" {
				outer += len(w.keys)
			}
		}
		if outer != want {
			t.Errorf("change %d: %d outer map entries written, want %d", i+1, outer, want)
		}
	}
}
