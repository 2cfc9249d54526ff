package control

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
)

// incModel is a model with what an incremental round must get right:
// direct routing behind a VRRP instance, NAT with a sorry server and a
// quorum with hysteresis, and the two entries of a group sharing their
// real servers' checks. variant changes a real server's weight (a
// reload).
func incModel(variant int) Model {
	m := testModel()
	m.Services[1].Quorum, m.Services[1].Hysteresis = 2, 1
	grp := func(addr string) ServiceSpec {
		return ServiceSpec{Name: "grp/" + addr + ":80", Server: "grp", Group: "g",
			Key:       dataplane.ServiceKey{Addr: netip.MustParseAddr(addr), Port: 80, Proto: dataplane.TCP},
			Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Quorum: 1,
			Reals: []RealSpec{real("10.0.2.7", 80, 1), real("10.0.2.8", 80, 1)}}
	}
	m.Services = append(m.Services, grp("10.0.0.5"), grp("10.0.0.6"))
	for i := range 4 {
		m.Services = append(m.Services, ServiceSpec{Name: fmt.Sprintf("dr%d", i),
			Key:       dataplane.ServiceKey{Addr: netip.AddrFrom4([4]byte{10, 0, 3, byte(i)}), Port: 80, Proto: dataplane.TCP},
			Scheduler: dataplane.WeightedRoundRobin, Forward: dataplane.DirectRouting, Instance: "VI_2", Quorum: 1,
			Reals: []RealSpec{real(fmt.Sprintf("10.0.4.%d", 2*i+1), 80, 1), real(fmt.Sprintf("10.0.4.%d", 2*i+2), 80, 3)}})
	}
	m.Services[3+variant%4].Reals[0].Weight = uint32(2 + variant)
	m.numberChecks()
	return m
}

// incDriver drives two reconcilers with the same inputs: inc reads the
// checks in the model's order (its rounds may be incremental), whole by
// key (every round whole).
type incDriver struct {
	t           *testing.T
	inc, whole  *Reconciler
	model       Model
	states      []health.State // by check number - 1
	keys        []string       // the key of each numbered check
	weights     map[string]health.Weight
	now         time.Time
	nbInc, nbWh *fakeNeighbors
	dpInc       *dataplanetest.Fake
}

func newIncDriver(t *testing.T) *incDriver {
	d := &incDriver{t: t, weights: map[string]health.Weight{}, now: time.Now()}
	macs := map[netip.Addr]net.HardwareAddr{}
	for _, s := range incModel(0).Services {
		for i, rs := range s.Reals {
			if s.Forward == dataplane.DirectRouting && i%3 != 2 {
				macs[rs.Addr] = net.HardwareAddr{2, 0, 0, 0, byte(i), rs.Addr.As4()[3]}
			}
		}
	}
	d.nbInc = &fakeNeighbors{known: maps.Clone(macs)}
	d.nbWh = &fakeNeighbors{known: maps.Clone(macs)}
	weights := func() map[string]health.Weight { return maps.Clone(d.weights) }
	clock := func() time.Time { return d.now }
	// Both dataplanes have the model installed, as a restarted daemon
	// finds them: every real server at its weight, every direct-routing
	// one with a MAC (adopted until the resolver answers, for the grace).
	adopted := func() *dataplanetest.Fake {
		dp := dataplanetest.NewFake()
		svcs := incModel(0).dataplaneServices()
		for _, s := range svcs {
			for i := range s.Backends {
				if s.Forward == dataplane.DirectRouting {
					s.Backends[i].MAC, s.Backends[i].Ifindex = dataplane.MAC{2, 1, 1, 1, 1, byte(i)}, 2
				}
			}
		}
		if err := dp.Apply(t.Context(), svcs); err != nil {
			t.Fatal(err)
		}
		return dp
	}
	d.dpInc = adopted()
	d.inc = NewReconciler(d.dpInc, ReconcilerOptions{Neighbors: d.nbInc, Now: clock, Weights: weights,
		HealthOrdered: func(order uint64, dst []health.State) ([]health.State, bool) {
			if order != d.model.checkOrder {
				return dst[:0], false
			}
			return append(dst[:0], d.states...), true
		},
		Health: func() map[string]health.State { t.Error("inc read the checks by key"); return nil },
	})
	d.whole = NewReconciler(adopted(), ReconcilerOptions{Neighbors: d.nbWh, Now: clock, Weights: weights,
		Health: func() map[string]health.State {
			m := map[string]health.State{}
			for i, k := range d.keys {
				m[k] = d.states[i]
			}
			return m
		}})
	d.setModel(incModel(0))
	return d
}

// setModel gives both the model; the checks of the same key keep their
// state (as the health manager keeps a check a reload does not change).
func (d *incDriver) setModel(m Model) {
	old := map[string]health.State{}
	for i, k := range d.keys {
		old[k] = d.states[i]
	}
	d.model, d.keys, d.states = m, nil, nil
	for _, s := range m.Services {
		for _, rs := range s.Reals {
			if n := int(rs.checkIdx); n == len(d.keys)+1 {
				d.keys = append(d.keys, s.checkKey(rs))
				d.states = append(d.states, old[s.checkKey(rs)])
			}
		}
	}
	d.inc.SetModel(m)
	d.whole.SetModel(m)
}

// round runs a round of each and compares what they applied; it returns
// how many services inc computed.
func (d *incDriver) round(step string) int {
	t := d.t
	t.Helper()
	for _, r := range []*Reconciler{d.inc, d.whole} {
		if err := r.Reconcile(t.Context()); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	a, b := d.inc.Applied(), d.whole.Applied()
	if !slices.EqualFunc(a, b, dataplane.ServiceEqual) {
		t.Fatalf("%s: the incremental round applied\n%v\nthe whole one\n%v", step, a, b)
	}
	if sa, sb := d.inc.States(), d.whole.States(); !maps.Equal(sa, sb) {
		t.Fatalf("%s: states %v, whole %v", step, sa, sb)
	}
	d.inc.mu.Lock()
	defer d.inc.mu.Unlock()
	return d.inc.computed
}

// TestIncrementalRound: a round that finds only a check's state changed
// computes that check's service alone: the others' backends are the last
// round's (shared), and only its real servers' next hops are looked up.
// The rounds while adopted MACs stand in for unresolved ones, and the
// first after their grace, are whole.
func TestIncrementalRound(t *testing.T) {
	d := newIncDriver(t)
	n := len(d.model.Services)
	for i := range d.states {
		d.states[i] = health.StateUp
	}
	if c := d.round("first"); c != n {
		t.Fatalf("first round computed %d services, want all %d", c, n)
	}
	dr := func(name string) int {
		return slices.IndexFunc(d.model.Services, func(s ServiceSpec) bool { return s.Name == name })
	}
	d.states[d.model.Services[dr("dr1")].Reals[0].checkIdx-1] = health.StateDown
	if c := d.round("a check, adopted MACs standing in"); c != n {
		t.Errorf("a round in the adopted MACs' grace computed %d services, want all %d", c, n)
	}
	d.now = d.now.Add(AdoptedMACGrace)
	d.states[d.model.Services[dr("dr1")].Reals[0].checkIdx-1] = health.StateUp
	if c := d.round("a check, the grace over"); c != n {
		t.Errorf("the first round after the adopted MACs' grace computed %d services, want all %d", c, n)
	}
	before := d.inc.Applied()
	d.nbInc.mu.Lock()
	d.nbInc.asked = nil
	d.nbInc.mu.Unlock()
	dr2 := dr("dr2")
	d.states[d.model.Services[dr2].Reals[1].checkIdx-1] = health.StateDown
	if c := d.round("one check down"); c != 1 {
		t.Errorf("a round after one check changed computed %d services, want 1", c)
	}
	after := d.inc.Applied()
	for i := range after {
		shared := &after[i].Backends[0] == &before[i].Backends[0]
		if shared != (i != dr2) {
			t.Errorf("service %s: backends shared with the last round: %v", after[i].Name, shared)
		}
	}
	if w := after[dr2].Backends[1].Weight; w != 0 {
		t.Errorf("dr2's real server down: weight %d", w)
	}
	d.nbInc.mu.Lock()
	asked := slices.Clone(d.nbInc.asked)
	d.nbInc.mu.Unlock()
	want := []netip.Addr{d.model.Services[dr2].Reals[0].Addr, d.model.Services[dr2].Reals[1].Addr}
	if !slices.Equal(asked, want) {
		t.Errorf("next hops looked up %v, want dr2's %v", asked, want)
	}
	// Nothing changed: nothing computed.
	if c := d.round("nothing"); c != 0 {
		t.Errorf("a round with nothing changed computed %d services", c)
	}
	// A check the group's entries share: the round is whole.
	d.states[d.model.Services[3].Reals[0].checkIdx-1] = health.StateDown
	if c := d.round("a group's check"); c != n {
		t.Errorf("a round after a group's check changed computed %d services, want all %d", c, n)
	}
	// After a failed Apply: whole.
	d.dpInc.ApplyErr = errors.New("boom")
	d.states[d.model.Services[dr2].Reals[1].checkIdx-1] = health.StateUp
	if err := d.inc.Reconcile(t.Context()); err == nil {
		t.Fatal("the failing Apply succeeded")
	}
	d.states[d.model.Services[dr("dr1")].Reals[1].checkIdx-1] = health.StateDown
	if c := d.round("a check after a failed Apply"); c != n {
		t.Errorf("a round after a failed Apply computed %d services, want all %d", c, n)
	}
	// Another input: whole.
	for _, nb := range []*fakeNeighbors{d.nbInc, d.nbWh} {
		nb.mu.Lock()
		nb.known[d.model.Services[dr2].Reals[0].Addr] = net.HardwareAddr{2, 9, 9, 9, 9, 9}
		nb.mu.Unlock()
	}
	if c := d.round("a next hop"); c != n {
		t.Errorf("a round after a next hop changed computed %d services, want all %d", c, n)
	}
}

// TestIncrementalRoundsMatchWhole: through a random run of every input a
// round reads (checks' states, the weights checks set, overrides, VRRP
// roles and their deadlines, next hops, time, reloads), a reconciler whose
// rounds may be incremental applies what one whose every round is whole
// applies, step after step; and most rounds after a check's change were
// incremental.
func TestIncrementalRoundsMatchWhole(t *testing.T) {
	d := newIncDriver(t)
	rng := rand.New(rand.NewPCG(13, 14))
	pick := func() health.State {
		return []health.State{health.StateUp, health.StateUp, health.StateDown, health.StateUnknown}[rng.IntN(4)]
	}
	d.round("start")
	incremental, checkSteps := 0, 0
	for step := range 600 {
		n := len(d.model.Services)
		d.now = d.now.Add(time.Duration(rng.IntN(200)) * time.Millisecond) // rounds come apart
		var what string
		switch r := rng.IntN(100); {
		case r < 60:
			what = "checks"
			for range 1 + rng.IntN(3) {
				d.states[rng.IntN(len(d.states))] = pick()
			}
		case r < 66:
			what = "a check's weight"
			k := d.keys[rng.IntN(len(d.keys))]
			if rng.IntN(2) == 0 {
				delete(d.weights, k)
			} else {
				d.weights[k] = health.Weight{Mode: health.WeightSet, Value: int64(rng.IntN(5))}
			}
		case r < 72:
			what = "overrides"
			o := map[OverrideKey]uint32{}
			for _, s := range d.model.Services[:rng.IntN(3)] {
				o[OverrideKey{s.server(), s.Reals[0].ident()}] = uint32(rng.IntN(4))
			}
			d.inc.SetOverrides(o)
			d.whole.SetOverrides(maps.Clone(o))
		case r < 82:
			what = "a role"
			role := Role{Master: rng.IntN(2) == 0, At: d.now}
			switch rng.IntN(3) {
			case 0:
				role.Until = d.now.Add(time.Duration(rng.IntN(3)) * time.Second)
			case 1:
				role.HandoverUntil = d.now.Add(time.Duration(rng.IntN(3)) * time.Second)
			}
			inst := []string{"VI_1", "VI_2"}[rng.IntN(2)]
			d.inc.SetRole(inst, role)
			d.whole.SetRole(inst, role)
		case r < 88:
			what = "a next hop"
			s := d.model.Services[rng.IntN(n)]
			a := s.Reals[rng.IntN(len(s.Reals))].Addr
			forget := rng.IntN(3) == 0
			for _, nb := range []*fakeNeighbors{d.nbInc, d.nbWh} {
				nb.mu.Lock()
				if forget {
					delete(nb.known, a)
				} else {
					nb.known[a] = net.HardwareAddr{2, 7, 7, 7, 7, byte(step)}
				}
				nb.mu.Unlock()
			}
		case r < 95:
			what = "time"
			d.now = d.now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
		default:
			what = "a reload"
			d.setModel(incModel(rng.IntN(4)))
		}
		c := d.round(fmt.Sprintf("step %d (%s)", step, what))
		if what == "checks" {
			checkSteps++
			if c < n {
				incremental++
			}
		}
	}
	if incremental < checkSteps/2 {
		t.Errorf("%d of %d rounds after checks changed were incremental, want at least half", incremental, checkSteps)
	}
	t.Logf("%d of %d rounds after checks changed were incremental", incremental, checkSteps)
}

// hintedFake is a fake dataplane that records the hints of ApplyUnchanged.
type hintedFake struct {
	*dataplanetest.Fake
	hints [][]bool // nil for an Apply without one
}

func (f *hintedFake) Apply(ctx context.Context, desired []dataplane.Service) error {
	f.hints = append(f.hints, nil)
	return f.Fake.Apply(ctx, desired)
}

func (f *hintedFake) ApplyUnchanged(ctx context.Context, desired []dataplane.Service, unchanged []bool) error {
	f.hints = append(f.hints, slices.Clone(unchanged))
	return f.Fake.Apply(ctx, desired)
}

// TestApplyUnchangedHint: after an Apply that succeeded, a round tells a
// dataplane that takes the hint which services are as it applied them
// (all but the one whose check changed); after one that failed, it tells
// none.
func TestApplyUnchangedHint(t *testing.T) {
	dp := &hintedFake{Fake: dataplanetest.NewFake()}
	states := map[string]health.State{}
	r := NewReconciler(dp, ReconcilerOptions{Health: func() map[string]health.State { return maps.Clone(states) }})
	m := incModel(0)
	for _, s := range m.Services {
		for _, rs := range s.Reals {
			states[s.checkKey(rs)] = health.StateUp
		}
	}
	r.SetModel(m)
	last := func() []bool {
		t.Helper()
		if len(dp.hints) == 0 {
			t.Fatal("no Apply")
		}
		return dp.hints[len(dp.hints)-1]
	}
	reconcile(t, r)
	if h := last(); h != nil {
		t.Errorf("first Apply: hint %v, want none", h)
	}
	dr1 := slices.IndexFunc(m.Services, func(s ServiceSpec) bool { return s.Name == "dr1" })
	states[m.Services[dr1].checkKey(m.Services[dr1].Reals[0])] = health.StateDown
	reconcile(t, r)
	want := make([]bool, len(m.Services))
	for i := range want {
		want[i] = i != dr1
	}
	if h := last(); !slices.Equal(h, want) {
		t.Errorf("after one check: hint %v, want %v", h, want)
	}
	dp.ApplyErr = errors.New("boom")
	states[m.Services[dr1].checkKey(m.Services[dr1].Reals[0])] = health.StateUp
	if err := r.Reconcile(t.Context()); err == nil {
		t.Fatal("the failing Apply succeeded")
	}
	reconcile(t, r)
	if h := last(); h != nil {
		t.Errorf("after a failed Apply: hint %v, want none", h)
	}
}
