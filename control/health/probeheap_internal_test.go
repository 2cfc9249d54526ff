package health

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The probes' timer heap keeps its order and its probes' indexes through
// pushes, removals anywhere, and the top moved later (runTimers' resend).
func TestProbeHeap(t *testing.T) {
	var h probeHeap
	base := time.Now()
	var in []*synProbe
	check := func(step int) {
		t.Helper()
		if len(h) != len(in) {
			t.Fatalf("step %d: %d probes, want %d", step, len(h), len(in))
		}
		for i, pr := range h {
			if pr.index != i {
				t.Fatalf("step %d: probe at %d has index %d", step, i, pr.index)
			}
			if i > 0 && pr.next.Before(h[(i-1)/2].next) {
				t.Fatalf("step %d: probe at %d is due before its parent", step, i)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 5000 {
		switch op := r.IntN(4); {
		case op < 2 || len(in) == 0:
			pr := &synProbe{next: base.Add(time.Duration(r.IntN(1000)) * time.Millisecond)}
			h.push(pr)
			in = append(in, pr)
		case op == 2:
			k := r.IntN(len(in))
			pr := in[k]
			h.remove(pr.index)
			if pr.index != -1 {
				t.Fatalf("step %d: a removed probe has index %d", step, pr.index)
			}
			in = append(in[:k], in[k+1:]...)
		default:
			h[0].next = h[0].next.Add(time.Duration(r.IntN(2000)) * time.Millisecond)
			h.down(0)
		}
		check(step)
	}
	// They come out in order.
	var last time.Time
	for len(h) > 0 {
		pr := h[0]
		if pr.next.Before(last) {
			t.Fatalf("%v after %v", pr.next, last)
		}
		last = pr.next
		h.remove(0)
	}
}
