package control

import (
	"errors"
	"flag"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// fakeNeighbors knows the MACs it is given.
type fakeNeighbors struct {
	mu       sync.Mutex
	known    map[netip.Addr]net.HardwareAddr
	asked    []netip.Addr
	routed   []netip.Addr
	reprobed []netip.Addr
}

func (f *fakeNeighbors) Reprobe(a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reprobed = append(f.reprobed, a)
}

// Version implements Neighbors: a digest of known (a test changes it in
// place).
func (f *fakeNeighbors) Version() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var v uint64 = 1
	for a, m := range f.known {
		b := a.As16()
		h := uint64(0)
		for _, x := range append(b[:], m...) {
			h = h*131 + uint64(x)
		}
		v += h * (h | 1) // order-independent
	}
	return v
}

func (f *fakeNeighbors) KeepRoute(a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routed = append(f.routed, a)
}

func (f *fakeNeighbors) Lookup(a netip.Addr) (net.HardwareAddr, int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, a)
	m, ok := f.known[a]
	return m, 2, ok
}

// fakeHealth is the checks' states as a test sets them (health.Manager's
// States in the daemon).
type fakeHealth struct {
	mu sync.Mutex
	m  map[string]health.State
}

func (f *fakeHealth) set(key string, s health.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]health.State{}
	}
	f.m[key] = s
}

func (f *fakeHealth) states() map[string]health.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.m)
}

// reconcile runs one round of r and returns what it applied.
func reconcile(t *testing.T, r *Reconciler) []dataplane.Service {
	t.Helper()
	if err := r.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r.Applied()
}

func real(addr string, port uint16, w uint32) RealSpec {
	return RealSpec{Addr: netip.MustParseAddr(addr), Port: port, Weight: w,
		Check: &health.Spec{Type: checktype.TCP, Target: netip.AddrPortFrom(netip.MustParseAddr(addr), port), Interval: time.Second, Timeout: time.Second, Fall: 1, Rise: 1}}
}

func testModel() Model {
	return Model{Services: []ServiceSpec{
		{
			Name: "web", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
			Scheduler: dataplane.RoundRobin, Forward: dataplane.DirectRouting, Instance: "VI_1", Quorum: 1,
			Reals: []RealSpec{real("10.0.0.7", 80, 1), real("10.0.0.8", 80, 2), real("10.0.0.9", 80, 1)},
		},
		{
			Name: "api", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.4"), Port: 443, Proto: dataplane.TCP},
			Scheduler: dataplane.MaglevHashing, Forward: dataplane.NAT, Quorum: 2, Persistence: 300 * time.Second,
			Sorry: &RealSpec{Addr: netip.MustParseAddr("10.0.1.99"), Port: 8443, Weight: 1},
			Reals: []RealSpec{real("10.0.1.7", 8443, 1), real("10.0.1.8", 8443, 1)},
		},
	}}
}

// ordered is HealthOrdered for the numbered model m: its checks' states
// (checks(m)) in order, from the states set by key; reads counts them.
func (f *fakeHealth) ordered(m Model, reads *int) func(uint64, []health.State) ([]health.State, bool) {
	list := checks(m)
	return func(order uint64, dst []health.State) ([]health.State, bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if order != m.checkOrder {
			return dst[:0], false
		}
		*reads++
		dst = dst[:0]
		for _, c := range list {
			dst = append(dst, f.m[c.Key])
		}
		return dst, true
	}
}

// The desired state, its checks' states read by key (Health), or in the
// order of the model's numbered checks (HealthOrdered), which a round
// then reads by key only when they are another model's.
func TestDesiredGolden(t *testing.T) {
	for _, how := range []string{"by key", "ordered", "ordered of another model"} {
		t.Run(how, func(t *testing.T) { testDesiredGolden(t, how) })
	}
}

func testDesiredGolden(t *testing.T, how string) {
	dp := dataplanetest.NewFake()
	nb := &fakeNeighbors{known: map[netip.Addr]net.HardwareAddr{
		netip.MustParseAddr("10.0.0.7"): {2, 0, 0, 0, 0, 7},
		netip.MustParseAddr("10.0.0.8"): {2, 0, 0, 0, 0, 8},
	}}
	hs := &fakeHealth{}
	byKey, ordered := 0, 0
	opts := ReconcilerOptions{Neighbors: nb, Health: func() map[string]health.State { byKey++; return hs.states() }}
	m := testModel()
	if how != "by key" {
		m.numberChecks()
		other := m
		if how == "ordered of another model" {
			other = testModel()
			other.numberChecks()
		}
		opts.HealthOrdered = hs.ordered(other, &ordered)
	}
	r := NewReconciler(dp, opts)
	r.SetModel(m)
	defer func() {
		if how == "ordered" && (byKey != 0 || ordered == 0) || how != "ordered" && (byKey == 0 || ordered != 0) {
			t.Errorf("%s: %d rounds read the checks by key, %d in order", how, byKey, ordered)
		}
	}()

	// Nothing healthy yet, VI_1 not master: web disabled and drained, api
	// below quorum so its sorry server takes the flows.
	golden(t, "desired-initial.golden", dumpServices(reconcile(t, r)))

	for _, k := range []string{"web/10.0.0.7:80", "web/10.0.0.8:80", "web/10.0.0.9:80", "api/10.0.1.7:8443", "api/10.0.1.8:8443"} {
		hs.set(k, health.StateUp)
	}
	r.SetRole("VI_1", Role{Master: true, At: time.Now()})
	golden(t, "desired-healthy-master.golden", dumpServices(reconcile(t, r)))

	// One api real server fails: quorum 2 lost, sorry server again; one
	// web real server fails: drained (weight 0).
	hs.set("api/10.0.1.8:8443", health.StateDown)
	hs.set("web/10.0.0.8:80", health.StateDown)
	golden(t, "desired-degraded.golden", dumpServices(reconcile(t, r)))
	st := r.States()
	if api := st[testModel().Services[1].Key]; api.Up || !api.SorryActive {
		t.Errorf("api state %+v, want down with the sorry server active", api)
	}
	if web := st[testModel().Services[0].Key]; !web.Up || !web.Forwarding {
		t.Errorf("web state %+v, want up and forwarding", web)
	}
}

func TestQuorumHysteresisAndScripts(t *testing.T) {
	var ran []string
	hs := &fakeHealth{}
	r := NewReconciler(dataplanetest.NewFake(), ReconcilerOptions{Health: hs.states, RunScript: func(c string) { ran = append(ran, c) }})
	m := Model{Services: []ServiceSpec{{
		Name: "s", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Quorum: 3, Hysteresis: 1,
		QuorumUp: "up.sh", QuorumDown: "down.sh",
		Reals: []RealSpec{real("10.0.1.1", 80, 1), real("10.0.1.2", 80, 1), real("10.0.1.3", 80, 1), real("10.0.1.4", 80, 1)},
	}}}
	r.SetModel(m)
	up := func(n int) bool {
		for i, rs := range m.Services[0].Reals {
			s := health.StateDown
			if i < n {
				s = health.StateUp
			}
			hs.set(CheckKey("s", rs), s)
		}
		reconcile(t, r)
		return r.States()[m.Services[0].Key].Up
	}
	// Starts at 0 healthy: down. Up needs quorum+hysteresis = 4.
	for _, step := range []struct {
		healthy int
		want    bool
	}{{0, false}, {3, false}, {4, true}, {3, true}, {2, true}, {1, false}, {3, false}, {4, true}} {
		if got := up(step.healthy); got != step.want {
			t.Fatalf("%d healthy: up=%v, want %v", step.healthy, got, step.want)
		}
	}
	if want := []string{"up.sh", "down.sh", "up.sh"}; len(ran) != 3 || ran[0] != want[0] || ran[1] != want[1] || ran[2] != want[2] {
		t.Errorf("scripts %v, want %v", ran, want)
	}
}

// Desired is a pure function of its inputs: the same inputs give the same
// state, the quorum's hysteresis comes from the previous round's states
// (Last), and nothing runs (quorum commands are the reconciler's step).
func TestDesiredIsPure(t *testing.T) {
	s := ServiceSpec{
		Name: "s", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Quorum: 3, Hysteresis: 1, QuorumUp: "up.sh", QuorumDown: "down.sh",
		Reals: []RealSpec{real("10.0.1.1", 80, 1), real("10.0.1.2", 80, 1), real("10.0.1.3", 80, 1), real("10.0.1.4", 80, 1)},
	}
	in := Inputs{Model: Model{Services: []ServiceSpec{s}}, Health: map[string]health.State{}}
	for _, rs := range s.Reals[:3] {
		in.Health[CheckKey("s", rs)] = health.StateUp
	}
	for _, tc := range []struct {
		last map[dataplane.ServiceKey]ServiceState
		want bool
	}{
		{nil, true}, // new: 3 healthy reach the quorum
		{map[dataplane.ServiceKey]ServiceState{s.Key: {Up: false}}, false}, // was down: needs 3+1
		{map[dataplane.ServiceKey]ServiceState{s.Key: {Up: true}}, true},   // was up: 3+1 >= 3
	} {
		in.Last = tc.last
		svcs, states := Desired(in)
		again, _ := Desired(in)
		if !slices.EqualFunc(svcs, again, dataplane.ServiceEqual) {
			t.Errorf("last %v: Desired differs on the same inputs:\n%s\n%s", tc.last, dumpServices(svcs), dumpServices(again))
		}
		if st := states[s.Key]; st.Up != tc.want || st.Healthy != 3 {
			t.Errorf("last %v: %+v, want up=%v with healthy weight 3", tc.last, st, tc.want)
		}
	}
}

func TestReconcileAppliesOnlyChanges(t *testing.T) {
	dp := dataplanetest.NewFake()
	hs := &fakeHealth{}
	r := NewReconciler(dp, ReconcilerOptions{Health: hs.states})
	r.SetModel(testModel())
	ctx := t.Context()
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := dp.Applies(); n != 1 {
		t.Fatalf("%d applies for an unchanged state, want 1", n)
	}
	dp.Changes()
	hs.set("web/10.0.0.7:80", health.StateUp)
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dp.Changes(); len(got) != 1 || got[0] != "update tcp/10.0.0.3:80" {
		t.Errorf("changes %v, want only web updated", got)
	}

	// A failing Apply is retried (the state is not marked applied).
	dp.ApplyErr = errors.New("boom")
	hs.set("web/10.0.0.8:80", health.StateUp)
	if err := r.Reconcile(ctx); err == nil {
		t.Fatal("want the Apply error")
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := dp.Changes(); len(got) != 1 || got[0] != "update tcp/10.0.0.3:80" {
		t.Errorf("changes after retry %v, want web updated", got)
	}
}

// A reload keeps the health of the real servers whose checks did not
// change: the reconciler reads it from the health checks (a Manager, not
// run: 10.0.0.7's check starts up).
func TestReloadKeepsHealth(t *testing.T) {
	dp := dataplanetest.NewFake()
	checks := health.NewManager(health.Options{})
	r := NewReconciler(dp, ReconcilerOptions{Health: checks.States})
	m0 := testModel()
	m0.Services[0].Reals[0].Check.InitialUp = true
	r.SetModel(m0)
	if err := checks.Update(CheckSpecs(m0)); err != nil {
		t.Fatal(err)
	}
	m := testModel()
	m.Services[0].Reals = m.Services[0].Reals[:1] // drop two real servers
	m.Services = append(m.Services, ServiceSpec{Name: "new", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.5"), Port: 53, Proto: dataplane.UDP},
		Scheduler: dataplane.SourceHashing, Forward: dataplane.DirectRouting, Reals: []RealSpec{real("10.0.0.7", 53, 1)}})
	r.SetModel(m)
	if err := checks.Update(CheckSpecs(m)); err != nil {
		t.Fatal(err)
	}
	if checks.States()["web/10.0.0.7:80"] != health.StateUp {
		t.Error("reload forgot the health of an unchanged real server")
	}
	if err := r.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	golden(t, "desired-reloaded.golden", dumpServices(dp.Installed()))
}

var errNotYet = errors.New("not yet")

// Direct routing asks for real servers' MACs; tunnels for their next hops
// to be kept resolved; NAT for neither (the FIB lookup passes to the kernel).
func TestNeighborsAskedPerForwardMode(t *testing.T) {
	nb := &fakeNeighbors{}
	r := NewReconciler(dataplanetest.NewFake(), ReconcilerOptions{Neighbors: nb})
	m := testModel()
	m.Services = append(m.Services, ServiceSpec{
		Name: "tun", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.6"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.Tunnel, Reals: []RealSpec{real("10.0.2.7", 80, 1)},
	})
	r.SetModel(m)
	reconcile(t, r)
	has := func(l []netip.Addr, a string) bool { return slices.Contains(l, netip.MustParseAddr(a)) }
	if !has(nb.asked, "10.0.0.7") || has(nb.asked, "10.0.1.7") || has(nb.asked, "10.0.2.7") {
		t.Errorf("MACs asked for %v, want the direct-routing real servers only", nb.asked)
	}
	if !has(nb.routed, "10.0.2.7") || len(slices.DeleteFunc(slices.Clone(nb.routed), func(a netip.Addr) bool { return a.String() == "10.0.2.7" })) != 0 {
		t.Errorf("routes kept for %v, want the tunnelled real server only", nb.routed)
	}
}

// A restarted daemon adopts what its predecessor installed: real servers
// that took new flows keep taking them until their checks report, and
// direct-routing ones keep their MACs while the neighbours are read
// again, so the first Apply changes nothing.
func TestRestartAdoptsInstalledBackends(t *testing.T) {
	dp := dataplanetest.NewFake()
	ctx := t.Context()
	nb := &fakeNeighbors{known: map[netip.Addr]net.HardwareAddr{
		netip.MustParseAddr("10.0.0.7"): {2, 0, 0, 0, 0, 7},
		netip.MustParseAddr("10.0.0.8"): {2, 0, 0, 0, 0, 8},
		netip.MustParseAddr("10.0.0.9"): {2, 0, 0, 0, 0, 9},
	}}
	hs := &fakeHealth{}
	before := NewReconciler(dp, ReconcilerOptions{Neighbors: nb, Health: hs.states})
	before.SetModel(testModel())
	before.SetRole("VI_1", Role{Master: true})
	for _, k := range []string{"web/10.0.0.7:80", "web/10.0.0.8:80", "api/10.0.1.7:8443", "api/10.0.1.8:8443"} {
		hs.set(k, health.StateUp)
	}
	hs.set("web/10.0.0.9:80", health.StateDown)
	if err := before.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	installed := dumpServices(dp.Installed())
	dp.Changes()

	// The restart: no health, no role, no MAC known yet.
	now := time.Now()
	clock := func() time.Time { return now }
	hs = &fakeHealth{}
	after := NewReconciler(dp, ReconcilerOptions{Neighbors: &fakeNeighbors{}, Health: hs.states, Now: clock})
	after.SetModel(testModel())
	if err := after.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dp.Changes(); len(got) != 0 {
		t.Errorf("the restarted daemon changed %v; installed:\n%s\nnow:\n%s", got, installed, dumpServices(dp.Installed()))
	}

	// A check that reports takes over from what was adopted.
	hs.set("web/10.0.0.7:80", health.StateDown)
	if err := after.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	web := func() map[string]dataplane.Backend {
		out := map[string]dataplane.Backend{}
		for _, s := range dp.Installed() {
			if s.Name == "web" {
				for _, b := range s.Backends {
					out[b.Addr.String()] = b
				}
			}
		}
		return out
	}
	if b := web()["10.0.0.7"]; b.Weight != 0 {
		t.Errorf("10.0.0.7 down after the restart: weight %d, want 0", b.Weight)
	}
	if b := web()["10.0.0.8"]; b.Weight != 2 || b.MAC.String() != "02:00:00:00:00:08" {
		t.Errorf("10.0.0.8 not reported yet: %+v, want weight 2 and its adopted MAC", b)
	}

	// For good: a reload that changes its probe makes its check undecided
	// again, and what was found at start no longer stands for it.
	hs.set("web/10.0.0.7:80", health.StateUnknown)
	if err := after.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if b := web()["10.0.0.7"]; b.Weight != 0 {
		t.Errorf("10.0.0.7 undecided again after it reported down: weight %d, want 0", b.Weight)
	}

	// MACs the resolver never confirms are dropped after the grace period.
	now = now.Add(AdoptedMACGrace + time.Second)
	if err := after.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if b := web()["10.0.0.8"]; b.MAC.Valid() {
		t.Errorf("10.0.0.8 keeps an unconfirmed MAC %s after the grace period", b.MAC)
	}

	// A real server dropped by a reload and added back starts as a new one.
	m := testModel()
	m.Services[0].Reals = m.Services[0].Reals[:1]
	after.SetModel(m)
	after.SetModel(testModel())
	if err := after.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if b := web()["10.0.0.8"]; b.Weight != 0 {
		t.Errorf("10.0.0.8 re-added by a reload: weight %d before any check, want 0", b.Weight)
	}
}

// A direct-routing real server whose check is down has its neighbour entry
// probed again (its MAC may have changed unannounced); one that is up, or
// whose MAC is unknown, does not.
func TestReprobeDownRealServers(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("10.0.0.8"), netip.MustParseAddr("10.0.0.9")
	nb := &fakeNeighbors{known: map[netip.Addr]net.HardwareAddr{a: {2, 0, 0, 0, 0, 7}, b: {2, 0, 0, 0, 0, 8}}}
	hs := &fakeHealth{}
	r := NewReconciler(dataplanetest.NewFake(), ReconcilerOptions{Neighbors: nb, Health: hs.states})
	s := ServiceSpec{Name: "web", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.DirectRouting,
		Reals: []RealSpec{real("10.0.0.7", 80, 1), real("10.0.0.8", 80, 1), real("10.0.0.9", 80, 1)}}
	r.SetModel(Model{Services: []ServiceSpec{s}})
	hs.set(CheckKey("web", s.Reals[0]), health.StateDown)
	hs.set(CheckKey("web", s.Reals[1]), health.StateUp)
	hs.set(CheckKey("web", s.Reals[2]), health.StateDown) // MAC unknown: resolved anyway
	reconcile(t, r)
	nb.mu.Lock()
	defer nb.mu.Unlock()
	if !slices.Equal(nb.reprobed, []netip.Addr{a}) {
		t.Errorf("reprobed %v, want [%v] (not %v: up; not %v: unknown)", nb.reprobed, a, b, c)
	}
}

// TestHandoverKeepsForwarding: a master that gives its role up goes on
// forwarding until the role's HandoverUntil (traffic and NAT replies still
// reach it until the new master's gratuitous ARPs have been heard), then
// stops; a backup that never was master does not forward.
func TestHandoverKeepsForwarding(t *testing.T) {
	dp := dataplanetest.NewFake()
	ctx := t.Context()
	now := time.Now()
	r := NewReconciler(dp, ReconcilerOptions{Neighbors: &fakeNeighbors{}, Health: (&fakeHealth{}).states,
		Now: func() time.Time { return now }})
	r.SetModel(testModel())
	web := func() bool {
		for _, s := range dp.Installed() {
			if s.Name == "web" {
				return s.Enabled
			}
		}
		t.Fatal("web not installed")
		return false
	}
	for _, step := range []struct {
		what  string
		role  *Role
		after time.Duration
		want  bool
	}{
		{"backup at start", &Role{Master: false, At: now}, 0, false},
		{"master", &Role{Master: true, At: now}, 0, true},
		{"handed over, 500ms to go", &Role{Master: false, At: now, HandoverUntil: now.Add(500 * time.Millisecond)}, 0, true},
		{"499ms later", nil, 499 * time.Millisecond, true},
		{"the hand-over is over", nil, 500 * time.Millisecond, false},
	} {
		if step.role != nil {
			r.SetRole("VI_1", *step.role)
		}
		now = now.Add(step.after)
		if err := r.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := web(); got != step.want {
			t.Errorf("%s: forwarding %v, want %v", step.what, got, step.want)
		}
	}
}

// A round takes from the state applied last the backends of every service
// that comes out the same: a health change in one service of a thousand
// makes that service's backends, not 65,536 (4.6 MB a round, and a second
// copy during every reload). What it computes is Desired's all the same.
func TestDesiredSharesUnchangedBackends(t *testing.T) {
	m := testModel()
	in := Inputs{Model: m, Health: map[string]health.State{}, Roles: map[string]Role{"VI_1": {Master: true}}}
	for _, s := range m.Services {
		for _, rs := range s.Reals {
			in.Health[CheckKey(s.Name, rs)] = health.StateUp
		}
	}
	applied, _ := Desired(in)
	same, _, _ := desiredFrom(in, applied, nil)
	for i := range same {
		if &same[i].Backends[0] != &applied[i].Backends[0] {
			t.Errorf("service %s unchanged: its backends were made again", same[i].Name)
		}
	}
	// 20 services whose check keys are made (as ModelFromConfig makes them).
	var big Model
	for i := range 20 {
		s := m.Services[1]
		s.Key.Port = uint16(1000 + i)
		s.Reals = slices.Clone(s.Reals)
		s.makeCheckKeys()
		big.Services = append(big.Services, s)
	}
	bigIn := Inputs{Model: big, Health: map[string]health.State{}}
	bigApplied, _ := Desired(bigIn)
	if allocs := testing.AllocsPerRun(10, func() { desiredFrom(bigIn, bigApplied, nil) }); allocs > 8 {
		t.Errorf("a round of 20 services that changes nothing: %.0f allocations, want at most 8 (the services, the states' map, one buffer), not one per service", allocs)
	}

	in.Health[CheckKey("api", m.Services[1].Reals[1])] = health.StateDown // below quorum: the sorry server
	got, states, _ := desiredFrom(in, applied, nil)
	want, wantStates := Desired(in)
	if !slices.EqualFunc(got, want, dataplane.ServiceEqual) || !maps.Equal(states, wantStates) {
		t.Fatalf("desiredFrom differs from Desired:\n%s\n%s", dumpServices(got), dumpServices(want))
	}
	if &got[0].Backends[0] != &applied[0].Backends[0] {
		t.Error("web unchanged: its backends were made again")
	}
	if &got[1].Backends[0] == &applied[1].Backends[0] || slices.EqualFunc(got[1].Backends, applied[1].Backends, dataplane.BackendEqual) {
		t.Error("api changed: its backends are the applied ones")
	}
	// The next service's backends are not written over the changed one's.
	again, _, _ := desiredFrom(in, applied, nil)
	if !slices.EqualFunc(got, again, dataplane.ServiceEqual) {
		t.Errorf("two rounds differ:\n%s\n%s", dumpServices(got), dumpServices(again))
	}
}
