package health

import (
	"runtime"
	"testing"
)

// TestPendingShrinks: a prober's map of pending probes is made again,
// small, once a burst of them has ended: the room a Go map grew to stays
// with it, and the few probes pending afterwards were looked up in a
// table of tens of thousands of slots, a cache miss at each probe's start
// and answer.
func TestPendingShrinks(t *testing.T) {
	liveHeap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	const n = 64000
	p := &synProber{pending: make(map[uint64]*synProbe)}
	prs := make([]synProbe, n)
	for i := range prs {
		prs[i] = synProbe{index: -1, match: synMatch{port: 8080, ack: uint32(i)}}
		p.addLocked(&prs[i])
	}
	full := liveHeap()
	for i := range n - 10 {
		p.removeLocked(&prs[i])
	}
	after := liveHeap()
	if len(p.pending) != 10 {
		t.Fatalf("%d probes pending, want 10", len(p.pending))
	}
	for i := n - 10; i < n; i++ {
		if p.pending[prs[i].match.key()] != &prs[i] {
			t.Fatalf("probe %d lost when the map was made again", i)
		}
	}
	t.Logf("live heap with %d probes pending: %d KiB; with 10 left: %d KiB", n, full>>10, after>>10)
	if full < after+1<<20 {
		t.Errorf("the map of pending probes kept its room: %d KiB of live heap with 10 left, %d with %d pending", after>>10, full>>10, n)
	}
	runtime.KeepAlive(prs)
}
