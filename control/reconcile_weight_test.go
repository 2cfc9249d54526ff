package control

import (
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
)

// The weight a check sets (misc_dynamic, file) replaces or adjusts the
// configured weight while the check passes, in the dataplane and in the
// quorum; a reload that drops the real server forgets it.
func TestCheckWeights(t *testing.T) {
	r := NewReconciler(dataplane.NewFake(), ReconcilerOptions{})
	m := Model{Services: []ServiceSpec{{
		Name: "s", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.WeightedRoundRobin, Forward: dataplane.NAT, Quorum: 6,
		Reals: []RealSpec{real("10.0.1.1", 80, 5), real("10.0.1.2", 80, 1)},
	}}}
	r.SetModel(m)
	k1, k2 := CheckKey("s", m.Services[0].Reals[0]), CheckKey("s", m.Services[0].Reals[1])
	weights := func() (uint32, uint32, bool) {
		svc := r.Desired()[0]
		return svc.Backends[0].Weight, svc.Backends[1].Weight, r.States()[m.Services[0].Key].Up
	}
	r.SetHealth(k2, health.StateUp)
	for _, step := range []struct {
		state  health.State
		w      health.Weight
		w1, w2 uint32
		up     bool
	}{
		{health.StateUp, health.Weight{}, 5, 1, true},                                  // configured: 5+1 >= 6
		{health.StateUp, health.Weight{Mode: health.WeightSet, Value: 3}, 3, 1, false}, // misc_dynamic exit 5: 3+1 < 6
		{health.StateUp, health.Weight{Mode: health.WeightAdd, Value: 2}, 7, 1, true},  // file: 5+2
		{health.StateUp, health.Weight{Mode: health.WeightAdd, Value: -9}, 0, 1, false},
		{health.StateDown, health.Weight{Mode: health.WeightAdd, Value: 2}, 0, 1, false},
		{health.StateUp, health.Weight{}, 5, 1, true},
	} {
		r.SetHealthWeight(k1, step.state, step.w)
		if w1, w2, up := weights(); w1 != step.w1 || w2 != step.w2 || up != step.up {
			t.Errorf("%v %v: weights %d %d up %v, want %d %d %v", step.state, step.w, w1, w2, up, step.w1, step.w2, step.up)
		}
	}
	r.SetHealthWeight(k1, health.StateUp, health.Weight{Mode: health.WeightSet, Value: 9})
	r.SetModel(Model{Services: []ServiceSpec{{Name: "s", Key: m.Services[0].Key, Scheduler: dataplane.WeightedRoundRobin,
		Forward: dataplane.NAT, Quorum: 1, Reals: m.Services[0].Reals[1:]}}})
	r.SetModel(m)
	r.SetHealth(k1, health.StateUp)
	if w1, _, _ := weights(); w1 != 5 {
		t.Errorf("after the real server was dropped and added back: weight %d, want the configured 5", w1)
	}
}
