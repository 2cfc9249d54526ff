package health_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/test/nettest"
)

// TestManagerRunAllocs counts the allocations of a Manager's tcp check
// runs, half-open probes over a veth to a real server that answers: every
// byte a run allocates is garbage, and at 64,000 checks every 5 s (issue
// 13) the collector's heap grows by it between collections, which the
// daemon's RSS follows. A run made 3.9 allocations (381 bytes): the
// Manager's closure for its end, the tcp check's, its probe and, a round
// in a few, the scheduler's list of due checks. The ends and the probes
// are pooled, the list keeps its array, and the prober's reader keeps
// its state: 0.35 allocations, 18 bytes, of the prober's sends (a
// closure per sendmmsg) and the scheduler's timer per round, whose
// number does not follow the checks'; 0.23 and 5 bytes since the
// scheduler sleeps on its timerfd (roundWake); none (0.00) since a
// sendmmsg's function is bound once (mmsgCall). A run that allocates
// again makes it 1 more, a round that does 0.1 or so.
func TestManagerRunAllocs(t *testing.T) {
	nettest.RequireRoot(t)
	l := newLab(t)
	target := netip.AddrPortFrom(rs4, 8080)
	ln, _ := l.listen(t, "tcp", target.String())

	const n = 200
	var runs, fails atomic.Int64
	m := health.NewManager(health.Options{Observe: func(_ string, _ health.Type, _ time.Duration, err error) {
		runs.Add(1)
		if err != nil {
			fails.Add(1)
		}
	}})
	spec := &health.Spec{Type: checktype.TCP, Interval: 50 * time.Millisecond, Timeout: time.Second, Fall: 1, Rise: 1, Warmup: -1}
	list := make([]health.Check, n)
	for i := range list {
		list[i] = health.Check{Key: fmt.Sprintf("svc/%d", i), Spec: spec, Target: target}
	}
	if err := m.UpdateChecks(list); err != nil {
		t.Fatal(err)
	}
	// Run in the director's namespace: its scheduler opens the prober.
	startManagerIn(t, m, l.dir)
	var downs atomic.Int64
	go func() {
		for tr := range m.Results() {
			if tr.To == health.StateDown {
				downs.Add(1)
			}
		}
	}()

	// Every check has run a few times: its route is learned, the prober's
	// tables and the Manager's lists have grown.
	waitFor(t, "the checks' first runs", func() bool { return runs.Load() >= 5*n })
	// measure returns the allocations and bytes per run over a second
	// (10 runs of each check at least), and the runs that failed.
	measure := func() (allocs, bytes float64, ran, failed int64) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		runs0, fails0 := runs.Load(), fails.Load()
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) || runs.Load()-runs0 < 10*n {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.ReadMemStats(&after)
		ran, failed = runs.Load()-runs0, fails.Load()-fails0
		return float64(after.Mallocs-before.Mallocs) / float64(ran), float64(after.TotalAlloc-before.TotalAlloc) / float64(ran), ran, failed
	}
	allocs, bytes, ran, failed := measure()
	if failed > 0 {
		t.Fatalf("%d of %d runs failed", failed, ran)
	}
	t.Logf("%d runs: %.2f allocations, %.0f bytes each", ran, allocs, bytes)
	if allocs > 0.05 {
		t.Errorf("a tcp check's run allocates %.2f times (%.0f bytes), want none (at most 0.05)", allocs, bytes)
	}

	// The real server refuses: each run makes its error (a tcpError, 64
	// bytes, that the check keeps), and nothing else of its own: 1.3
	// allocations, 80 bytes. It made 5.4 (248 bytes): the refusal,
	// net.Dial's error, its address and the address's IP, and the
	// tcpError of it.
	ln.Close()
	waitFor(t, "every check down", func() bool { return downs.Load() == n })
	allocs, bytes, ran, failed = measure()
	if failed != ran {
		t.Fatalf("%d of %d runs failed, want all", failed, ran)
	}
	t.Logf("%d refused runs: %.2f allocations, %.0f bytes each", ran, allocs, bytes)
	if allocs > 1.9 {
		t.Errorf("a tcp check's refused run allocates %.2f times (%.0f bytes), want less than 2", allocs, bytes)
	}
}
