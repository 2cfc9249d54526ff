package health

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestCheckHeap: checks pushed, removed and moved earlier in random order
// come out of the heap once each, in the order of their next run, and
// stale entries are dropped (compact) without losing a live one.
func TestCheckHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var q checkHeap
	checks := make([]*check, 5000)
	for i := range checks {
		checks[i] = &check{at: r.Int64N(1 << 40)}
		q.push(checks[i])
	}
	want := map[*check]bool{}
	for _, c := range checks {
		want[c] = true
	}
	for range 20000 {
		c := checks[r.IntN(len(checks))]
		switch r.IntN(3) {
		case 0:
			q.remove(c)
			delete(want, c)
		case 1:
			if c.queued {
				c.at -= r.Int64N(1 << 30)
				q.fix(c)
			}
		case 2:
			if !c.queued {
				c.at = r.Int64N(1 << 40)
				q.push(c)
				want[c] = true
			}
		}
	}
	if n := q.entries() - q.stale; n != len(want) {
		t.Fatalf("%d live entries, %d checks queued", n, len(want))
	}
	if q.entries() > 2*len(want)+1024 {
		t.Errorf("%d entries for %d checks: stale entries kept", q.entries(), len(want))
	}
	var got []int64
	for c := q.pop(); c != nil; c = q.pop() {
		if !want[c] {
			t.Fatalf("check at %d popped, not queued (or twice)", c.at)
		}
		delete(want, c)
		got = append(got, c.at)
	}
	if len(want) != 0 {
		t.Errorf("%d checks never popped", len(want))
	}
	if !slices.IsSorted(got) {
		t.Error("checks popped out of order")
	}
}

// TestCheckHeapInterleaved: pops between pushes, as the scheduler's
// rounds and the runs that end, over many buckets: each pop is the check
// of the earliest run queued then, also when a push comes before the
// heaped bucket's end (horizon) or before the last pop.
func TestCheckHeapInterleaved(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var q checkHeap
	queued := map[*check]bool{}
	var last int64
	for i := range 200000 {
		if r.IntN(2) == 0 || len(queued) == 0 {
			// A run within the next 2 s (8 buckets), now and then one
			// before the last pop.
			c := &check{at: last + r.Int64N(2e9)}
			if r.IntN(20) == 0 {
				c.at = last - r.Int64N(1e6)
			}
			q.push(c)
			queued[c] = true
			continue
		}
		if r.IntN(10) == 0 {
			for c := range queued { // a removed check
				q.remove(c)
				delete(queued, c)
				break
			}
			continue
		}
		c := q.pop()
		if !queued[c] {
			t.Fatalf("pop %d: a check not queued (or nil)", i)
		}
		for o := range queued {
			if o.at < c.at {
				t.Fatalf("pop %d: run at %d popped before one at %d", i, c.at, o.at)
			}
		}
		delete(queued, c)
		last = c.at
	}
	if n := q.entries() - q.stale; n != len(queued) {
		t.Fatalf("%d live entries, %d checks queued", n, len(queued))
	}
}

// TestCheckHeapBurstLetGo: a burst of runs due together (every check
// after a reload that starts them at once) passes through the heap; once
// the runs are spread again, neither the heap nor the buckets keep the
// burst's room.
func TestCheckHeapBurstLetGo(t *testing.T) {
	var q checkHeap
	const n = 64000
	checks := make([]check, n)
	for i := range checks {
		checks[i].at = 1 << 30 // one bucket
		q.push(&checks[i])
	}
	for i := range checks {
		c := q.pop()
		c.at = 2<<30 + int64(i)*(5e9/n) // spread over 5 s
		q.push(c)
	}
	q.pop() // heaps the first bucket of the spread runs
	room := cap(q.h)
	for _, arr := range q.free {
		room += cap(arr)
	}
	if room > 2*bucketKeep {
		t.Errorf("room for %d entries kept in the heap and the free buckets after the burst, want at most %d", room, 2*bucketKeep)
	}
}

// BenchmarkCheckHeap: a check's run taken from a heap of 64,000 and
// queued again, as the scheduler does 12,800 times a second.
func BenchmarkCheckHeap(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var q checkHeap
	const n = 64000
	for range n {
		c := &check{key: "k", spec: &Spec{}, at: r.Int64N(5e9)}
		q.push(c)
	}
	b.ResetTimer()
	for range b.N {
		c := q.pop()
		c.at += 5e9 + r.Int64N(1e9)
		q.push(c)
	}
}

// TestReadyListReleased: a ready list drained after a burst lets its
// array go; a small one keeps its room; the order is first in, first out
// throughout, and the room-behind compaction keeps it.
func TestReadyListReleased(t *testing.T) {
	var r readyList
	checks := make([]check, 3*readyKeep)
	for i := range checks {
		r.push(&checks[i])
	}
	extra := 0
	for i := range checks {
		if r.len() != len(checks)-i+extra || r.front() != &checks[i] {
			t.Fatalf("pop %d: front %p of %d, want %p of %d", i, r.front(), r.len(), &checks[i], len(checks)-i+extra)
		}
		if i == len(checks)/2 {
			// Pushed while half drained: after the rest, in order.
			r.push(&checks[0])
			extra = 1
		}
		r.pop()
	}
	if r.len() != 1 || r.front() != &checks[0] {
		t.Fatalf("%d left, want the check pushed while draining", r.len())
	}
	r.pop()
	if r.len() != 0 || cap(r.s) != 0 {
		t.Fatalf("drained after %d checks: %d left, room for %d kept", len(checks), r.len(), cap(r.s))
	}
	for i := range 10 {
		r.push(&checks[i])
	}
	for range 10 {
		r.pop()
	}
	if cap(r.s) == 0 {
		t.Fatal("a drained list of 10 checks let its room go")
	}
}
