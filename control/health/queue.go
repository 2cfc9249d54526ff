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

// checkHeap orders checks by their next run (container/heap).
type checkHeap []*check

func (h checkHeap) Len() int           { return len(h) }
func (h checkHeap) Less(i, j int) bool { return h[i].at < h[j].at }

func (c *check) setNext(t time.Time) { c.next, c.at = t, t.UnixNano() }
func (h checkHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *checkHeap) Push(x any) {
	c := x.(*check)
	c.index = len(*h)
	*h = append(*h, c)
}

func (h *checkHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	c.index = -1
	*h = old[:len(old)-1]
	return c
}
