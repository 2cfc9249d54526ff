package health

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// The checks wait in a heap by their next run; their transitions wait in
// an outbox for the reader of Manager.Results.

// firstDelay is the time from a check's creation to its first run: at
// random within its Warmup (keepalived's warmup, check_api.c
// register_checkers_thread), else within its first interval.
func firstDelay(s Spec) time.Duration {
	switch {
	case s.Warmup < 0:
		return 0
	case s.Warmup > 0:
		return rand.N(s.Warmup)
	}
	return rand.N(s.Interval)
}

// nextDelay is the time from the end of a run to the start of the next:
// interval ±10%.
func nextDelay(interval time.Duration) time.Duration {
	spread := interval / 5
	if spread <= 0 {
		return interval
	}
	return interval - interval/10 + rand.N(spread)
}

// outbox is the unbounded FIFO of transitions waiting for the reader of
// Results. push never blocks.
type outbox struct {
	mu     sync.Mutex
	queue  []Transition
	notify chan struct{} // capacity 1
}

func (o *outbox) push(t Transition) {
	o.mu.Lock()
	o.queue = append(o.queue, t)
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *outbox) pop() (Transition, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return Transition{}, false
	}
	t := o.queue[0]
	o.queue[0] = Transition{}
	o.queue = o.queue[1:]
	return t, true
}

// purge drops the queued transitions of key.
func (o *outbox) purge(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.queue = slices.DeleteFunc(o.queue, func(t Transition) bool { return t.Key == key })
}

// checkHeap orders the checks waiting for their next run by it. Its
// entries each hold their check's next run (at), so that ordering them
// reads and writes the entries only. A check is not told where its entry
// is: removing a check, or giving it an earlier run (fix), leaves its old
// entry behind, stale, and top and pop drop stale entries (an entry is
// live while its check is queued and the entry is its latest). At 64,000
// checks, writing each moved check's index was two cache misses per
// level of every push and pop.
//
// The entries of runs before horizon are in a binary heap (h); the later
// ones wait unordered in buckets of 2^bucketShift ns (by at >>
// bucketShift), and the earliest bucket is heaped when h is empty. One
// binary heap of all 64,000 checks (1.5 MB of entries) took up to
// sixteen levels at every pop, mostly cache misses: with its top, 11% of
// the daemon's samples (perf, 64,000 tcp checks every 5 s). A bucket
// holds 268 ms of runs (3,400 at 12,800 a second), h as many at most,
// and a push is an append to its bucket.
type checkHeap struct {
	h       []heapEntry // a binary heap of the entries before horizon
	horizon int64       // a bucket's start: h holds the entries before it, buckets the rest
	// buckets in the order of their numbers: an interval's worth (19 at
	// 5 s), where a new one is the last.
	buckets []bucket
	far     int           // entries in buckets
	free    [][]heapEntry // emptied buckets' arrays (at most freeBuckets)
	stale   int           // entries of checks removed or moved since
}

type heapEntry struct {
	at  int64 // the check's at when the entry was made
	c   *check
	seq uint32 // c.qseq when the entry was made
}

// bucket holds the entries of one bucket's span, in no order.
type bucket struct {
	n int64 // its number: its entries' at >> bucketShift
	e []heapEntry
}

const (
	// bucketShift makes a bucket's span, 2^28 ns (268 ms). Shorter
	// spans make more, smaller arrays, whose room to grow (append's)
	// was 16 bytes a check more with 4 ms buckets
	// (TestManagerHeapPerCheck).
	bucketShift = 28
	// freeBuckets is the most emptied buckets kept for their arrays: in
	// the steady state a bucket empties as another starts.
	freeBuckets = 4
	// bucketKeep is the most entries an emptied bucket's array keeps room
	// for (384 KiB): the steady state's buckets reuse theirs (80 KiB at
	// 64,000 checks every 5 s), a burst's (every check due at once after
	// a reload) goes.
	bucketKeep = 1 << 14
)

// live reports whether e is its check's place in the heap.
func (e heapEntry) live() bool { return e.c.queued && e.c.qseq == e.seq }

// entries counts the entries, stale ones included.
func (q *checkHeap) entries() int { return len(q.h) + q.far }

// push queues c for its next run, c.at.
func (q *checkHeap) push(c *check) {
	c.queued = true
	c.qseq++
	q.add(heapEntry{c.at, c, c.qseq})
}

// add puts e in h or in its bucket.
func (q *checkHeap) add(e heapEntry) {
	if e.at < q.horizon {
		q.h = append(q.h, e)
		q.up(len(q.h) - 1)
		return
	}
	n := e.at >> bucketShift
	i, found := slices.BinarySearchFunc(q.buckets, n, func(b bucket, n int64) int { return cmp.Compare(b.n, n) })
	if !found {
		var arr []heapEntry
		if k := len(q.free); k > 0 {
			arr, q.free[k-1] = q.free[k-1], nil
			q.free = q.free[:k-1]
		}
		q.buckets = slices.Insert(q.buckets, i, bucket{n: n, e: arr})
	}
	q.buckets[i].e = append(q.buckets[i].e, e)
	q.far++
}

// release keeps an emptied bucket's array for a next bucket.
func (q *checkHeap) release(arr []heapEntry) {
	if cap(arr) > bucketKeep || len(q.free) >= freeBuckets {
		return
	}
	clear(arr)
	q.free = append(q.free, arr[:0])
}

// remove takes c out of the heap.
func (q *checkHeap) remove(c *check) {
	if c.queued {
		c.queued = false
		q.stale++
		q.compact()
	}
}

// fix queues c again after its next run changed.
func (q *checkHeap) fix(c *check) {
	q.push(c)
	q.stale++
	q.compact()
}

// top returns the queued check of the earliest next run, or nil.
func (q *checkHeap) top() *check {
	for {
		for len(q.h) > 0 {
			if q.h[0].live() {
				return q.h[0].c
			}
			q.popEntry()
			q.stale--
		}
		if !q.advance() {
			return nil
		}
	}
}

// advance heaps the earliest bucket, and reports false when there is
// none. Called with h empty.
func (q *checkHeap) advance() bool {
	if len(q.buckets) == 0 {
		return false
	}
	b := q.buckets[0]
	q.buckets = slices.Delete(q.buckets, 0, 1)
	if cap(q.h) > bucketKeep && len(b.e) <= bucketKeep {
		q.h = nil // a burst's room goes, as a bucket's
	}
	q.h = append(q.h, b.e...)
	q.far -= len(b.e)
	q.release(b.e)
	q.horizon = (b.n + 1) << bucketShift
	q.heapify()
	return true
}

// pop takes out the check top returned.
func (q *checkHeap) pop() *check {
	c := q.top()
	if c != nil {
		q.popEntry()
		c.queued = false
	}
	return c
}

func (q *checkHeap) popEntry() {
	n := len(q.h) - 1
	q.h[0] = q.h[n]
	q.h[n] = heapEntry{}
	q.h = q.h[:n]
	if n > 0 {
		q.down(0)
	}
}

// compact drops the stale entries once they are most of the entries (a
// reload that removed or retimed most checks).
func (q *checkHeap) compact() {
	if q.stale < 1024 || q.stale < q.entries()/2 {
		return
	}
	q.h = keepLive(q.h)
	q.heapify()
	q.far = 0
	kept := q.buckets[:0]
	for _, b := range q.buckets {
		if b.e = keepLive(b.e); len(b.e) == 0 {
			q.release(b.e)
			continue
		}
		q.far += len(b.e)
		kept = append(kept, b)
	}
	clear(q.buckets[len(kept):])
	q.buckets = kept
	q.stale = 0
}

// keepLive drops the stale entries of es, in place.
func keepLive(es []heapEntry) []heapEntry {
	live := es[:0]
	for _, e := range es {
		if e.live() {
			live = append(live, e)
		}
	}
	clear(es[len(live):])
	return live
}

// heapify orders h as a binary heap.
func (q *checkHeap) heapify() {
	for i := len(q.h)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q *checkHeap) up(i int) {
	h := q.h
	e := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if h[p].at <= e.at {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = e
}

func (q *checkHeap) down(i int) {
	h := q.h
	n := len(h)
	e := h[i]
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && h[r].at < h[l].at {
			l = r
		}
		if e.at <= h[l].at {
			break
		}
		h[i] = h[l]
		i = l
	}
	h[i] = e
}

// setNext makes t c's next run. Called with m.mu held.
func (m *Manager) setNext(c *check, t time.Time) { c.at = m.since(t) }

// since is t in nanoseconds since m.epoch.
func (m *Manager) since(t time.Time) int64 { return int64(t.Sub(m.epoch)) }

// next is c's next run. Called with m.mu held.
func (m *Manager) next(c *check) time.Time { return m.epoch.Add(time.Duration(c.at)) }
