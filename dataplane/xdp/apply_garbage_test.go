package xdp

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
)

// TestApplyStormGarbage: in a storm of health-check changes every service
// is updated again and again, one real server's weight at a time. Such an
// update makes little garbage (updateService reuses its working memory,
// and the stats index keeps a service whose ids did not change): a
// storm's updates were a third of the daemon's allocations at 64,000
// real servers, and the collector's work slowed status answers.
func TestApplyStormGarbage(t *testing.T) {
	e := manualEnv(t)
	const nsvc, nbe, rounds = 20, 64, 20
	svcs := make([]dataplane.Service, nsvc)
	for i := range svcs {
		svcs[i] = svc(dataplane.WeightedRoundRobin, e.pool(nbe))
		svcs[i].Key.Addr = netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
	}
	e.apply(svcs...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for r := range rounds {
		for i := range svcs {
			bs := append([]dataplane.Backend(nil), svcs[i].Backends...)
			bs[r%nbe].Weight = uint32(2 + r%2)
			svcs[i].Backends = bs
		}
		e.apply(svcs...)
	}
	runtime.ReadMemStats(&after)
	// The test's own copies of the backends: nbe*48 bytes a service.
	per := (after.TotalAlloc-before.TotalAlloc)/(rounds*nsvc) - nbe*48
	t.Logf("%d bytes a service update", per)
	// 41,776 bytes before the scratch space, the shared validation map and
	// the kept stats entry; 17,508 with them, of which the queued
	// candidate lists (2 KB each, in a queue grown by appends) are most.
	if per > 24<<10 {
		t.Errorf("%d bytes of garbage a service update, want at most %d", per, 24<<10)
	}
}
