package health

import (
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

// checkHeap orders the checks waiting for their next run by it: a binary
// heap of entries that each hold their check's next run (at), so that
// sifting reads and writes the heap's array only. A check is not told its
// place in it: removing a check, or giving it an earlier run (fix), leaves
// its old entry behind, stale, and top and pop drop stale entries (an
// entry is live while its check is queued and the entry is its latest).
// At 64,000 checks, writing each moved check's index was two cache misses
// per level of every push and pop, the scheduler's largest cost.
type checkHeap struct {
	h     []heapEntry
	stale int // entries of checks removed or moved since
}

type heapEntry struct {
	at  int64 // the check's at when the entry was made
	c   *check
	seq uint32 // c.qseq when the entry was made
}

// live reports whether e is its check's place in the heap.
func (e heapEntry) live() bool { return e.c.queued && e.c.qseq == e.seq }

// push queues c for its next run, c.at.
func (q *checkHeap) push(c *check) {
	c.queued = true
	c.qseq++
	q.h = append(q.h, heapEntry{c.at, c, c.qseq})
	q.up(len(q.h) - 1)
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
	for len(q.h) > 0 {
		if q.h[0].live() {
			return q.h[0].c
		}
		q.popEntry()
		q.stale--
	}
	return nil
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

// compact drops the stale entries once they are most of the heap (a
// reload that removed or retimed most checks).
func (q *checkHeap) compact() {
	if q.stale < 1024 || q.stale < len(q.h)/2 {
		return
	}
	live := q.h[:0]
	for _, e := range q.h {
		if e.live() {
			live = append(live, e)
		}
	}
	clear(q.h[len(live):])
	q.h, q.stale = live, 0
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
