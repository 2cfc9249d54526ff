package control

import (
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
)

// The weight a check sets (misc_dynamic, file) replaces or adjusts the
// configured weight while the check passes, in the dataplane and in the
// quorum.
func TestCheckWeights(t *testing.T) {
	s := ServiceSpec{
		Name: "s", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.WeightedRoundRobin, Forward: dataplane.NAT, Quorum: 6,
		Reals: []RealSpec{real("10.0.1.1", 80, 5), real("10.0.1.2", 80, 1)},
	}
	k1, k2 := CheckKey("s", s.Reals[0]), CheckKey("s", s.Reals[1])
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
		in := Inputs{Model: Model{Services: []ServiceSpec{s}},
			Health:  map[string]health.State{k1: step.state, k2: health.StateUp},
			Weights: map[string]health.Weight{k1: step.w}}
		svcs, states := Desired(in)
		if w1, w2, up := svcs[0].Backends[0].Weight, svcs[0].Backends[1].Weight, states[s.Key].Up; w1 != step.w1 || w2 != step.w2 || up != step.up {
			t.Errorf("%v %v: weights %d %d up %v, want %d %d %v", step.state, step.w, w1, w2, up, step.w1, step.w2, step.up)
		}
	}
}
