package health

import (
	"container/heap"
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

// checkHeap orders checks by their next run (container/heap). Each entry
// holds its check's key: comparing them reads the heap's array only, not
// 64,000 checks scattered in memory (the heap's comparisons were the
// scheduler's largest cost). A check's next run changes only while it is
// out of the heap, or through fix.
type checkHeap []heapEntry

type heapEntry struct {
	at int64 // the check's at
	c  *check
}

func (h checkHeap) Len() int           { return len(h) }
func (h checkHeap) Less(i, j int) bool { return h[i].at < h[j].at }

// setNext makes t c's next run. Called with m.mu held.
func (m *Manager) setNext(c *check, t time.Time) { c.at = m.since(t) }

// since is t in nanoseconds since m.epoch.
func (m *Manager) since(t time.Time) int64 { return int64(t.Sub(m.epoch)) }

// next is c's next run. Called with m.mu held.
func (m *Manager) next(c *check) time.Time { return m.epoch.Add(time.Duration(c.at)) }

// fix restores the order after c, in the heap, had its next run changed.
func (h *checkHeap) fix(c *check) {
	(*h)[c.index].at = c.at
	heap.Fix(h, int(c.index))
}

// peek returns the check of the earliest next run; the heap must not be
// empty.
func (h checkHeap) peek() *check { return h[0].c }

func (h checkHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].c.index = int32(i)
	h[j].c.index = int32(j)
}

// Push adds a *check.
func (h *checkHeap) Push(x any) {
	c := x.(*check)
	c.index = int32(len(*h))
	*h = append(*h, heapEntry{c.at, c})
}

// Pop removes and returns a *check.
func (h *checkHeap) Pop() any {
	old := *h
	c := old[len(old)-1].c
	old[len(old)-1] = heapEntry{}
	c.index = -1
	*h = old[:len(old)-1]
	return c
}
