package health_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/test/nettest"
)

const interval = 10 * time.Second

// startManager runs m until the test ends.
func startManager(t *testing.T, m *health.Manager) { startManagerIn(t, m, nil) }

// startManagerIn runs m in ns (its scheduler opens the probers there), or
// where the test runs with ns nil, until the test ends.
func startManagerIn(t *testing.T, m *health.Manager, ns *nettest.NS) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		if ns == nil {
			done <- m.Run(ctx)
			return
		}
		done <- ns.Do(func() error { return m.Run(ctx) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// firstResults returns the first n results of m's checks, by key.
func firstResults(t *testing.T, m *health.Manager, n int) map[string]health.Transition {
	t.Helper()
	got := make(map[string]health.Transition, n)
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case tr := <-m.Results():
			got[tr.Key] = tr
		case <-timeout:
			t.Fatalf("%d results of %d", len(got), n)
		}
	}
	return got
}

// step advances the fake clock past one interval (plus the 10% jitter) and
// waits until each of keys completed exactly one more run.
func step(t *testing.T, clk *fakeClock, m *health.Manager, keys ...string) {
	t.Helper()
	before := m.Status()
	clk.Advance(interval + interval/5)
	waitFor(t, "one run of "+strings.Join(keys, ", "), func() bool {
		st := m.Status()
		for _, k := range keys {
			if st[k].Runs != before[k].Runs+1 {
				return false
			}
		}
		return true
	})
	now := clk.Now()
	for _, k := range keys {
		// The next run is Interval ±10% after this one ended.
		next := m.Status()[k].NextRun
		if d := next.Sub(now); d < interval*9/10 || d > interval*11/10 {
			t.Errorf("%s: next run %v after the last, want %v ±10%%", k, d, interval)
		}
	}
}

// expect receives the next transition and checks it.
func expect(t *testing.T, ch <-chan health.Transition, key string, from, to health.State) health.Transition {
	t.Helper()
	select {
	case tr := <-ch:
		if tr.Key != key || tr.From != from || tr.To != to || tr.Up != (to == health.StateUp) {
			t.Fatalf("got transition %s %v->%v (up %v), want %s %v->%v", tr.Key, tr.From, tr.To, tr.Up, key, from, to)
		}
		return tr
	case <-time.After(20 * time.Second):
		t.Fatalf("no transition %s %v->%v", key, from, to)
	}
	panic("unreachable")
}

func checkState(t *testing.T, m *health.Manager, key string, want health.State) {
	t.Helper()
	if got := m.Status()[key].State; got != want {
		t.Fatalf("%s: state %v, want %v", key, got, want)
	}
}

func TestManagerFallRise(t *testing.T) {
	t.Parallel()
	rs := newRSServer(t, nil)
	clk := newFakeClock()
	var observed atomic.Int64
	m := health.NewManager(health.Options{Clock: clk, Workers: 2, Observe: func(key string, _ health.Type, d time.Duration, err error) {
		if key == "web/rs1" && d > 0 {
			observed.Add(1)
		}
	}})
	s := httpSpec(t, rs)
	s.Interval, s.Fall, s.Rise = interval, 2, 3
	const key = "web/rs1"
	if err := m.Update(map[string]health.Spec{key: s}); err != nil {
		t.Fatal(err)
	}
	st := m.Status()[key]
	if st.State != health.StateUnknown {
		t.Fatalf("new check: state %v, want unknown", st.State)
	}
	if d := st.NextRun.Sub(clk.Now()); d < 0 || d >= interval {
		t.Errorf("first run in %v, want within one interval", d)
	}
	startManager(t, m)
	res := m.Results()

	// Unknown until rise successes.
	step(t, clk, m, key)
	step(t, clk, m, key)
	checkState(t, m, key, health.StateUnknown)
	step(t, clk, m, key)
	expect(t, res, key, health.StateUnknown, health.StateUp)
	checkState(t, m, key, health.StateUp)

	// One failure is not enough with fall 2.
	rs.set(func(rs *rsServer) { rs.status = http.StatusInternalServerError })
	step(t, clk, m, key)
	checkState(t, m, key, health.StateUp)
	if st := m.Status()[key]; st.Failures != 1 || st.LastError == nil {
		t.Errorf("after one failure: %+v", st)
	}
	step(t, clk, m, key)
	tr := expect(t, res, key, health.StateUp, health.StateDown)
	if tr.Err == nil || !strings.Contains(tr.Err.Error(), "status 500") {
		t.Errorf("down transition error %v, want the 500", tr.Err)
	}

	// Back up after rise successes.
	rs.set(func(rs *rsServer) { rs.status = http.StatusOK })
	step(t, clk, m, key)
	step(t, clk, m, key)
	checkState(t, m, key, health.StateDown)
	step(t, clk, m, key)
	expect(t, res, key, health.StateDown, health.StateUp)

	if st := m.Status()[key]; st.Runs != 8 || st.Successes != 3 || st.Failures != 0 || st.LastError != nil || st.LastDuration <= 0 {
		t.Errorf("final status %+v", st)
	}
	waitFor(t, "8 observations", func() bool { return observed.Load() == 8 })
	hosts, _ := rs.seen()
	if len(hosts) != 8 {
		t.Errorf("server saw %d requests, want 8", len(hosts))
	}
}

func TestManagerUnknownToDown(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk})
	s := tcpSpec()
	s.Target, s.Interval, s.Fall = closedPort(t), interval, 2
	if err := m.Update(map[string]health.Spec{"k": s}); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	step(t, clk, m, "k")
	checkState(t, m, "k", health.StateUnknown)
	step(t, clk, m, "k")
	expect(t, m.Results(), "k", health.StateUnknown, health.StateDown)
}

func TestManagerUpdate(t *testing.T) {
	t.Parallel()
	rs := newRSServer(t, nil)
	ln := listenTCP(t)
	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk})
	startManager(t, m)
	res := m.Results()

	web := httpSpec(t, rs)
	web.Interval, web.Rise = interval, 1
	tcp := tcpSpec()
	tcp.Target, tcp.Interval = addrPort(t, ln.Addr()), interval
	specs := map[string]health.Spec{"a": web, "b": tcp}
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}
	step(t, clk, m, "a", "b")
	got := map[string]bool{}
	for range 2 {
		select {
		case tr := <-res:
			got[tr.Key] = tr.To == health.StateUp
		case <-time.After(20 * time.Second):
			t.Fatal("no transition")
		}
	}
	if !got["a"] || !got["b"] {
		t.Fatalf("transitions %v, want a and b up", got)
	}
	before := m.Status()

	// a unchanged; b only retimed; c new; d none; e initially up; f invalid.
	slower := tcp
	slower.Interval, slower.Fall, slower.InitialUp = 2*interval, 5, true
	none := health.Spec{Type: checktype.None}
	initUp := tcp
	initUp.InitialUp = true
	bad := tcp
	bad.Type = "ftp"
	err := m.Update(map[string]health.Spec{"a": web, "b": slower, "c": tcp, "d": none, "e": initUp, "f": bad})
	if err == nil || !strings.Contains(err.Error(), `health check f: unknown check type "ftp"`) {
		t.Errorf("Update error %v, want f's", err)
	}
	after := m.Status()
	if a, b := before["a"], after["a"]; a.State != b.State || a.Runs != b.Runs || !a.NextRun.Equal(b.NextRun) || !a.LastRun.Equal(b.LastRun) {
		t.Errorf("unchanged check changed:\n before %+v\n after  %+v", a, b)
	}
	if a, b := before["b"], after["b"]; b.State != health.StateUp || b.Runs != a.Runs || b.NextRun.After(a.NextRun) || b.Spec.Fall != 5 {
		t.Errorf("retimed check lost its state or schedule:\n before %+v\n after  %+v", a, b)
	}
	for key, want := range map[string]health.State{"c": health.StateUnknown, "d": health.StateUp, "e": health.StateUp, "f": health.StateDown} {
		if got := after[key].State; got != want {
			t.Errorf("%s: state %v, want %v", key, got, want)
		}
	}
	if after["f"].LastError == nil || !after["d"].NextRun.IsZero() || !after["f"].NextRun.IsZero() {
		t.Errorf("none and invalid checks: %+v %+v", after["d"], after["f"])
	}
	// New checks not starting unknown announce their state, in key order.
	expect(t, res, "d", health.StateUnknown, health.StateUp)
	expect(t, res, "e", health.StateUnknown, health.StateUp)
	if tr := expect(t, res, "f", health.StateUnknown, health.StateDown); tr.Err == nil {
		t.Error("invalid check: transition without the error")
	}

	// A changed probe restarts the check; a removed check stops.
	web2 := web
	web2.Path = "/other"
	if err := m.Update(map[string]health.Spec{"a": web2, "c": tcp, "d": none, "e": initUp}); err != nil {
		t.Fatal(err)
	}
	expect(t, res, "a", health.StateUp, health.StateUnknown)
	st := m.Status()
	if _, ok := st["b"]; ok {
		t.Error("removed check b still in Status")
	}
	if st["a"].Runs != 0 || st["a"].Spec.Path != "/other" {
		t.Errorf("restarted check: %+v", st["a"])
	}
	step(t, clk, m, "a", "c", "e")
	// a and c go up (in either order); e was already up.
	got = map[string]bool{}
	for range 2 {
		select {
		case tr := <-res:
			if tr.From != health.StateUnknown || tr.To != health.StateUp {
				t.Errorf("unexpected transition %+v", tr)
			}
			got[tr.Key] = true
		case <-time.After(20 * time.Second):
			t.Fatal("no transition")
		}
	}
	if !got["a"] || !got["c"] {
		t.Errorf("transitions %v, want a and c up", got)
	}
	if hosts, _ := rs.seen(); len(hosts) != 2 {
		t.Errorf("web server saw %d requests, want 2", len(hosts))
	}
}

// TestManagerRemoveWhileRunning removes a check whose run is in progress:
// the late result must not count for a check later added under the same
// key. With one worker, the new check can only run after the old run ended.
func TestManagerRemoveWhileRunning(t *testing.T) {
	t.Parallel()
	rs := newRSServer(t, nil)
	rs.set(func(rs *rsServer) { rs.slow = true })
	clk := newFakeClock()
	var observed atomic.Int64
	m := health.NewManager(health.Options{Clock: clk, Workers: 1, Observe: func(string, health.Type, time.Duration, error) { observed.Add(1) }})
	startManager(t, m)
	s := httpSpec(t, rs)
	s.Interval, s.Timeout = interval, 300*time.Millisecond
	if err := m.Update(map[string]health.Spec{"k": s}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(interval)
	waitFor(t, "the request", func() bool { h, _ := rs.seen(); return len(h) == 1 })
	if err := m.Update(nil); err != nil {
		t.Fatal(err)
	}
	if len(m.Status()) != 0 {
		t.Fatal("removed check still in Status")
	}
	rs.set(func(rs *rsServer) { rs.slow = false })
	s.Timeout = 5 * time.Second
	if err := m.Update(map[string]health.Spec{"k": s}); err != nil {
		t.Fatal(err)
	}
	step(t, clk, m, "k")
	// fall is 1: had the old timeout counted, the check would be down.
	expect(t, m.Results(), "k", health.StateUnknown, health.StateUp)
	if st := m.Status()["k"]; st.Runs != 1 || st.LastError != nil {
		t.Errorf("status %+v, want one successful run", st)
	}
	if got := observed.Load(); got != 2 {
		t.Errorf("%d runs observed, want 2 (the removed one and the new one)", got)
	}
}

// TestManagerRealClock runs short intervals on the real clock.
func TestManagerRealClock(t *testing.T) {
	t.Parallel()
	rs := newRSServer(t, nil)
	m := health.NewManager(health.Options{})
	s := httpSpec(t, rs)
	s.Interval, s.Timeout = 20*time.Millisecond, 5*time.Second
	if err := m.Update(map[string]health.Spec{"k": s}); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	res := m.Results()
	expect(t, res, "k", health.StateUnknown, health.StateUp)
	rs.set(func(rs *rsServer) { rs.status = http.StatusServiceUnavailable })
	expect(t, res, "k", health.StateUp, health.StateDown)
	rs.set(func(rs *rsServer) { rs.status = http.StatusOK })
	expect(t, res, "k", health.StateDown, health.StateUp)
}

func TestManagerRunOnce(t *testing.T) {
	t.Parallel()
	m := health.NewManager(health.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, ok := <-m.Results(); ok {
		t.Error("Results not closed after Run returned")
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("second Run: no error")
	}
}

// TestManagerScale schedules 2000 checks: their first runs spread over the
// interval, and they run on a few goroutines. Not parallel: it counts the
// process's goroutines.
func TestManagerScale(t *testing.T) {
	const n, workers, buckets = 2000, 8, 10
	ln := listenTCP(t)
	target := addrPort(t, ln.Addr())
	clk := newFakeClock()
	start := clk.Now()
	m := health.NewManager(health.Options{Clock: clk, Workers: workers})
	specs := make(map[string]health.Spec, n)
	for i := range n {
		s := tcpSpec()
		s.Target, s.Interval = target, interval
		specs["svc/"+netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 80).String()] = s
	}
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}

	// First runs spread evenly: about n/buckets per tenth of the interval.
	var hist [buckets]int
	for key, st := range m.Status() {
		d := st.NextRun.Sub(start)
		if d < 0 || d >= interval {
			t.Fatalf("%s: first run at +%v, outside the first interval", key, d)
		}
		hist[d*buckets/interval]++
	}
	t.Logf("first runs per tenth of the interval: %v", hist)
	for i, c := range hist {
		if c < n/buckets/2 || c > n/buckets*3/2 {
			t.Errorf("tenth %d of the interval has %d first runs, want about %d", i, c, n/buckets)
		}
	}

	base := runtime.NumGoroutine()
	var ups atomic.Int64
	startManager(t, m)
	go func() {
		for tr := range m.Results() {
			if tr.Up {
				ups.Add(1)
			}
		}
	}()
	maxG := 0
	for i := 1; i <= buckets; i++ {
		clk.Advance(interval / buckets)
		now := clk.Now()
		waitFor(t, "the due checks to run", func() bool {
			maxG = max(maxG, runtime.NumGoroutine())
			for _, st := range m.Status() {
				// NextRun is zero, so not after now, while running.
				if st.Runs == 0 && !st.NextRun.After(now) {
					return false
				}
			}
			return true
		})
		ran := 0
		for _, st := range m.Status() {
			if st.Runs > 0 {
				ran++
			}
		}
		t.Logf("after %v: %d checks ran, %d goroutines at most (%d before Run)", now.Sub(start), ran, maxG, base)
	}
	waitFor(t, "all up", func() bool { return ups.Load() == n })
	// Run, the scheduler, the delivery goroutine, the workers and the
	// reader above; a few more for the runtime's own.
	if limit := base + workers + 8; maxG > limit {
		t.Errorf("%d goroutines while running %d checks with %d workers (base %d, limit %d)", maxG, n, workers, base, limit)
	}
	// Next runs are jittered too: Interval ±10% after the run (which ended
	// at the fake time it started).
	lo, hi := interval*2, time.Duration(0)
	for key, st := range m.Status() {
		if st.State != health.StateUp || st.Runs != 1 {
			t.Fatalf("%s: %+v", key, st)
		}
		d := st.NextRun.Sub(st.LastRun)
		lo, hi = min(lo, d), max(hi, d)
	}
	t.Logf("second runs %v to %v after the first", lo, hi)
	if lo < interval*9/10 || hi > interval*11/10 || hi-lo < interval/10 {
		t.Errorf("second runs %v to %v after the first, want spread over %v ±10%%", lo, hi, interval)
	}
}

// TestManagerHangingChecksDoNotStall: hundreds of checks whose real
// servers accept and never answer (a rack gone dark) wait out their
// timeouts without holding back the checks of healthy real servers. Not
// parallel: it opens hundreds of connections.
func TestManagerHangingChecksDoNotStall(t *testing.T) {
	const hanging = 300
	release := make(chan struct{})
	var inFlight atomic.Int64
	dark := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(dark.Close)
	t.Cleanup(func() { close(release) }) // before dark.Close
	healthy := listenTCP(t)

	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk}) // the daemon's default limit
	specs := map[string]health.Spec{}
	for i := range hanging {
		s := health.Spec{Type: checktype.HTTP, Interval: interval, Timeout: time.Hour, Fall: 1, Rise: 1, Path: "/"}
		s.Target = addrPort(t, dark.Listener.Addr())
		specs[fmt.Sprintf("dark/%d", i)] = s
	}
	ok := tcpSpec()
	ok.Target, ok.Interval = addrPort(t, healthy.Addr()), interval
	specs["ok/1"] = ok
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	go func() {
		for range m.Results() {
		}
	}()
	clk.Advance(interval) // every first run is due
	waitFor(t, "every hanging check in flight", func() bool { return inFlight.Load() == hanging })
	waitFor(t, "the healthy real server up", func() bool { return m.Status()["ok/1"].State == health.StateUp })
	if n := inFlight.Load(); n != hanging {
		t.Errorf("%d hanging checks in flight, want %d", n, hanging)
	}
}

// Lookup gives the states and last errors of the keys asked, in their
// order, and Unknown without an error for a key it does not have.
func TestManagerLookup(t *testing.T) {
	m := health.NewManager(health.Options{})
	if err := m.Update(map[string]health.Spec{
		"none": {Type: checktype.None},
		"bad":  {Type: checktype.TCP}, // no target: invalid, Down
	}); err == nil {
		t.Fatal("an invalid Spec was accepted")
	}
	keys := []string{"bad", "missing", "none", ""}
	states, errs := make([]health.State, len(keys)), make([]error, len(keys))
	for i := range errs {
		states[i], errs[i] = health.StateUp, errors.New("stale")
	}
	m.Lookup(keys, states, errs)
	want := []health.State{health.StateDown, health.StateUnknown, health.StateUp, health.StateUnknown}
	if !slices.Equal(states, want) {
		t.Errorf("states %v, want %v", states, want)
	}
	if errs[0] == nil || errs[1] != nil || errs[2] != nil || errs[3] != nil {
		t.Errorf("errors %v, want only the invalid check's", errs)
	}
}

// StatesOrdered and LookupOrdered read the checks' states and errors in
// the order of the list UpdateChecksOrdered named, the same as by key;
// for another list, or after an unnamed UpdateChecks, they say they
// cannot. A list in another order keeps its checks' states.
func TestManagerStatesOrdered(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk})
	startManager(t, m)
	ln := listenTCP(t)
	up, down := tcpSpec(), tcpSpec()
	up.Target, up.Interval, up.Rise = addrPort(t, ln.Addr()), interval, 1
	down.Target, down.Interval, down.Fall = closedPort(t), interval, 1
	list := []health.Check{{Key: "up", Spec: &up, Target: up.Target}, {Key: "down", Spec: &down, Target: down.Target}}
	if err := m.UpdateChecksOrdered(list, 7); err != nil {
		t.Fatal(err)
	}
	step(t, clk, m, "up", "down")
	checkState(t, m, "up", health.StateUp)
	checkState(t, m, "down", health.StateDown)
	st, ok := m.StatesOrdered(7, nil)
	if !ok || !slices.Equal(st, []health.State{health.StateUp, health.StateDown}) {
		t.Fatalf("ordered states %v (%v), want up, down", st, ok)
	}
	states, errs := make([]health.State, 2), make([]error, 2)
	if !m.LookupOrdered(7, states, errs) || states[1] != health.StateDown || errs[0] != nil || errs[1] == nil {
		t.Fatalf("ordered lookup: %v, %v", states, errs)
	}
	if st, ok := m.StatesOrdered(8, st); ok || len(st) != 0 {
		t.Errorf("another list's states: %v, %v", st, ok)
	}
	if m.LookupOrdered(7, states[:1], errs[:1]) {
		t.Error("ordered lookup into slices shorter than the list")
	}
	// The same checks in another order: kept, not restarted.
	if err := m.UpdateChecksOrdered([]health.Check{list[1], list[0]}, 9); err != nil {
		t.Fatal(err)
	}
	if st, ok := m.StatesOrdered(9, st); !ok || !slices.Equal(st, []health.State{health.StateDown, health.StateUp}) {
		t.Errorf("reordered states %v (%v), want down, up", st, ok)
	}
	if _, ok := m.StatesOrdered(7, nil); ok {
		t.Error("the replaced list's states")
	}
	if err := m.UpdateChecks(list); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.StatesOrdered(9, nil); ok {
		t.Error("states in order after an unnamed update")
	}
}

// BenchmarkStates64k: a reconciler's round reads the state of 64,000
// checks. By key: the Manager's states copied into a map (StatesInto)
// and each real server's looked up in it. In order: the states copied
// into a slice (StatesOrdered) and each read by its position. The
// Manager does not run: no check sends anything.
func BenchmarkStates64k(b *testing.B) {
	m := health.NewManager(health.Options{})
	spec := tcpSpec()
	spec.Interval = time.Hour
	list := make([]health.Check, 64000)
	for i := range list {
		target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 201, byte(i >> 8), byte(i)}), 8080)
		list[i] = health.Check{Key: fmt.Sprintf("s%d/%s", i/64, target), Spec: &spec, Target: target}
	}
	if err := m.UpdateChecksOrdered(list, 1); err != nil {
		b.Fatal(err)
	}
	b.Run("by key", func(b *testing.B) {
		var states map[string]health.State
		for b.Loop() {
			states = m.StatesInto(states)
			n := 0
			for _, c := range list {
				if states[c.Key] == health.StateUnknown {
					n++
				}
			}
			if n != len(list) {
				b.Fatal(n)
			}
		}
	})
	b.Run("ordered", func(b *testing.B) {
		var states []health.State
		for b.Loop() {
			states, _ = m.StatesOrdered(1, states)
			n := 0
			for i := range list {
				if states[i] == health.StateUnknown {
					n++
				}
			}
			if n != len(list) {
				b.Fatal(n)
			}
		}
	})
}

// TestManagerRealClockWakes: on the real clock the scheduler sleeps
// between rounds on a timerfd, which Update, a run's end and a freed slot
// fire: a check added while it sleeps with nothing due runs at once, and
// a due check waiting for the one slot starts when the run holding it
// ends, though no check is due and no run is queued (the run's check was
// removed meanwhile: its end queues nothing).
func TestManagerRealClockWakes(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var mu sync.Mutex
	var paths []string
	dark := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		if r.URL.Path != "/now" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(dark.Close)
	t.Cleanup(func() { close(release) }) // before dark.Close
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(paths)
	}
	spec := func(path string) health.Spec {
		return health.Spec{Type: checktype.HTTP, Target: addrPort(t, dark.Listener.Addr()), Path: path,
			Interval: time.Hour, Timeout: time.Hour, Fall: 1, Rise: 1, Warmup: -1}
	}
	m := health.NewManager(health.Options{Workers: 1})
	startManager(t, m)
	go func() {
		for range m.Results() {
		}
	}()
	// Nothing to check: the scheduler sleeps with no deadline.
	if err := m.Update(map[string]health.Spec{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Update(map[string]health.Spec{"now": spec("/now")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the added check's run", func() bool { return m.Status()["now"].Runs == 1 })

	// Two checks due at once, one slot: one runs and hangs, the other
	// waits for the slot.
	specs := map[string]health.Spec{"a": spec("/a"), "b": spec("/b")}
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one hanging run", func() bool { return len(seen()) == 2 })
	first := strings.TrimPrefix(seen()[1], "/")
	other := map[string]string{"a": "b", "b": "a"}[first]
	if err := m.Update(map[string]health.Spec{other: specs[other]}); err != nil {
		t.Fatal(err)
	}
	release <- struct{}{} // the removed check's run ends
	waitFor(t, "the waiting check's run", func() bool { return len(seen()) == 3 })
	if got := seen()[2]; got != "/"+other {
		t.Errorf("requests %v, want /%s last", seen(), other)
	}
}

// TestManagerDecided: Decided is called once the last undecided check has
// its first result, not before and not again while none is new, with the
// number of checks decided since; checks an Update adds are decided anew.
func TestManagerDecided(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var decided, last atomic.Int32
	m := health.NewManager(health.Options{Clock: clk, Decided: func(n int) { decided.Add(1); last.Store(int32(n)) }})
	s := tcpSpec()
	s.Target, s.Interval, s.Fall = closedPort(t), interval, 2
	specs := map[string]health.Spec{"a": s, "b": s}
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	step(t, clk, m, "a", "b") // fall 2: still undecided
	if n := decided.Load(); n != 0 {
		t.Fatalf("decided %d times with both checks undecided", n)
	}
	step(t, clk, m, "a", "b")
	waitFor(t, "decided once", func() bool { return decided.Load() == 1 })
	if n := last.Load(); n != 2 {
		t.Errorf("decided with %d checks, want 2", n)
	}
	step(t, clk, m, "a", "b")
	if n := decided.Load(); n != 1 {
		t.Fatalf("decided %d times, want 1: no check was new", n)
	}
	specs["c"] = s
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}
	step(t, clk, m, "a", "b", "c")
	step(t, clk, m, "a", "b", "c")
	waitFor(t, "decided again", func() bool { return decided.Load() == 2 })
	if n := last.Load(); n != 1 {
		t.Errorf("decided again with %d checks, want 1 (the new one)", n)
	}
}
