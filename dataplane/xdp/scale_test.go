package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
)

// scaleServices are n NAT services of reals real servers each (the
// shape test/scale measures: 1,000 x 64).
func scaleServices(n, reals int) []dataplane.Service {
	out := make([]dataplane.Service, n)
	for i := range out {
		s := dataplane.Service{
			Name:      fmt.Sprintf("s%d", i),
			Key:       dataplane.ServiceKey{Addr: netip.AddrFrom4([4]byte{10, 200, byte((i + 1) / 256), byte((i + 1) % 256)}), Port: 80, Proto: dataplane.TCP},
			Scheduler: dataplane.WeightedLeastConnection,
			Forward:   dataplane.NAT,
			Enabled:   true,
		}
		for j := range reals {
			k := i*reals + j
			s.Backends = append(s.Backends, dataplane.Backend{Addr: netip.AddrFrom4([4]byte{10, 201, byte(k / 256), byte(k % 256)}), Port: 8080, Weight: 1})
		}
		out[i] = s
	}
	return out
}

// write is one batch of map updates an Apply made.
type write struct {
	m    string
	keys []uint32 // ids (array maps)
	svcs []bpfXlbSvcKey
}

// record has the dataplane report every batch of map updates it writes.
func (e *env) record() *[]write {
	var ws []write
	e.d.onWrite = func(m string, keys any) {
		w := write{m: m}
		switch k := keys.(type) {
		case []uint32:
			w.keys = slices.Clone(k)
		case []bpfXlbSvcKey:
			w.svcs = slices.Clone(k)
		}
		ws = append(ws, w)
	}
	return &ws
}

// Installing 1,000 services of 64 real servers writes each map in a few
// batches, not an update per entry; changing one real server's port
// afterwards writes only that service's entries: its configuration, the
// changed entry of its inactive slot's own table, the real server's new
// backend and the
// retirement of its old one, and their stateless NAT entries. Before,
// every Apply with a change rebuilt all 64,000 NAT entries' map in Go, and
// the first install took minutes (one RCU grace period per service).
func TestApplyOneChangeTouchesOneService(t *testing.T) {
	e := newEnv(t)
	svcs := scaleServices(1000, 64)
	ws := e.record()
	start := time.Now()
	e.apply(svcs...)
	t.Logf("install 1,000 x 64: %v, %d map entries in %d batches", time.Since(start), e.d.MapUpdates(), len(*ws))
	if n := len(*ws); n > 40 {
		t.Errorf("installing wrote %d batches, want a few per map", n)
	}
	// A real server's entry once and its NAT entry; its counters, load,
	// connections and thresholds are zero in maps this process created
	// (7 writes per real server before).
	if n := e.d.MapUpdates(); n > 64000*5/2 {
		t.Errorf("installing 64,000 real servers wrote %d map entries, want at most 2.5 per real server", n)
	}
	// Their counters read back from every CPU's slice.
	if c, err := e.d.beStats.read(64000); err != nil || len(c) != 64000 || c[63999] != (dataplane.Counters{}) {
		t.Errorf("reading 64,000 backends' counters: %d, %v", len(c), err)
	}

	// As a reload comes, after the grace period that follows the install
	// and the copies of the tables it brings (privatizeTables): the
	// service's inactive table is written in place.
	last := &svcs[len(svcs)-1]
	nettest.WaitFor(t, 10*time.Second, "a grace period after the install, a table of its own in each slot", func() error {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		st := e.d.services[last.Key]
		if !e.d.graceSince(st) {
			return fmt.Errorf("flip %d, grace after %d", st.flipGen, e.d.graceGen.Load())
		}
		if st.tables[0] == st.tables[1] {
			return fmt.Errorf("both slots share their table")
		}
		return nil
	})
	*ws = nil
	before := e.d.MapUpdates()
	old := last.Backends[63]
	last.Backends[63].Port = 8081
	start = time.Now()
	e.apply(svcs...)
	took := time.Since(start)
	t.Logf("one real server's port: %v, %d map entries", took, e.d.MapUpdates()-before)

	st := e.d.services[last.Key]
	newID := st.ids[63]
	oldID, retired := e.d.retired[retiredKey{st.id, old.Key()}]
	if !retired {
		t.Fatalf("the old real server %s is not retired", old.Key())
	}
	// Every array-map key written belongs to the changed service: its id
	// (configuration, slot, table slots) or the two backends.
	svcKeys := []uint32{st.id, st.id * 2, st.id*2 + 1}
	for _, w := range *ws {
		for _, k := range w.keys {
			var ok bool
			switch w.m {
			case "xlb_backends_v1", "xlb_be_stat_v3", "xlb_be_act_v1", "xlb_be_conns_v1", "xlb_be_thresh_v1":
				ok = k == newID || k == oldID
			case "xlb_svc_v1", "xlb_svc_slot_v1", "xlb_rr_v1", "xlb_svc_stat_v1", "xlb_cands_v1":
				ok = slices.Contains(svcKeys, k)
			case "xlb_table":
				// The service's inactive table, rewritten in place: the
				// real server's entry (no table put in the outer map
				// xlb_tables_v1, whose write waits for an RCU grace period).
				ok = k == 63 && len(w.keys) == 1
			}
			if !ok {
				t.Errorf("%s: key %d written, not of the changed service (id %d, backends %d and %d)", w.m, k, st.id, newID, oldID)
			}
		}
		for _, k := range w.svcs {
			a := wordsAddr(k.Addr, k.Family)
			if w.m != "xlb_nat_reals_v1" || a != old.Addr || k.Port != old.Port && k.Port != 8081 {
				t.Errorf("%s: key %s:%d written", w.m, a, k.Port)
			}
		}
	}
	if n := e.d.MapUpdates() - before; n > 16 {
		t.Errorf("one real server's port: %d map entries written, want at most 16: %+v", n, *ws)
	}
	// The NAT entries follow: the new port is there, the old one gone.
	var v bpfXlbNatReal
	if err := e.d.objs.XlbNatRealsV1.Lookup(natKey(last.Backends[63].Key(), dataplane.TCP), &v); err != nil || v.Backend != newID {
		t.Errorf("NAT entry of the new port: %+v, %v", v, err)
	}
	if err := e.d.objs.XlbNatRealsV1.Lookup(natKey(old.Key(), dataplane.TCP), &v); err == nil {
		t.Errorf("NAT entry of the old port still there: %+v", v)
	}
}

// TestApplyUnchanged: the services an Apply is told are as the last
// Apply had them are not compared with what is installed; the others are,
// and a changed one is applied. One said unchanged that is not installed
// yet is installed.
func TestApplyUnchanged(t *testing.T) {
	e := newEnv(t)
	svcs := scaleServices(21, 4)
	e.apply(svcs[:20]...)
	if e.d.compared != 20 {
		t.Errorf("a first Apply compared %d services, want 20", e.d.compared)
	}
	ws := e.record()
	svcs[7].Backends = slices.Clone(svcs[7].Backends)
	svcs[7].Backends[2].Port = 8081
	unchanged := make([]bool, 21)
	for i := range unchanged {
		unchanged[i] = i != 7 // 20, new, said unchanged too
	}
	if err := e.ns.Do(func() error { return e.d.ApplyUnchanged(t.Context(), svcs, unchanged) }); err != nil {
		t.Fatal(err)
	}
	if e.d.compared != 2 {
		t.Errorf("compared %d services, want 2 (the changed one and the new one)", e.d.compared)
	}
	if len(*ws) == 0 {
		t.Fatal("nothing written")
	}
	for _, s := range []int{7, 20} {
		got := e.d.backendsOf(e.d.services[svcs[s].Key])
		if !slices.EqualFunc(got, svcs[s].Backends, dataplane.BackendEqual) {
			t.Errorf("service %d installed %v, want %v", s, got, svcs[s].Backends)
		}
	}
	// Without the hint, every service is compared.
	e.apply(svcs...)
	if e.d.compared != 21 {
		t.Errorf("an Apply compared %d services, want 21", e.d.compared)
	}
}

// BenchmarkApplyOneChange: an Apply of 1,000 services x 64 real servers of
// which one real server's weight changed, with the hint of the services
// unchanged (a reconciler's round) and without (each compared with what is
// installed).
func BenchmarkApplyOneChange(b *testing.B) {
	for _, hint := range []bool{true, false} {
		b.Run(map[bool]string{true: "hint", false: "compare"}[hint], func(b *testing.B) {
			e := newEnv(b)
			svcs := scaleServices(1000, 64)
			e.apply(svcs...)
			unchanged := make([]bool, len(svcs))
			i := 0
			for b.Loop() {
				i = (i + 7) % len(svcs)
				s := &svcs[i]
				s.Backends = slices.Clone(s.Backends)
				s.Backends[0].Weight = 3 - s.Backends[0].Weight // 1 <-> 2
				var u []bool
				if hint {
					for j := range unchanged {
						unchanged[j] = j != i
					}
					u = unchanged
				}
				if err := e.ns.Do(func() error { return e.d.ApplyUnchanged(b.Context(), svcs, u) }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(e.d.compared), "services-compared")
		})
	}
}
