package control

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// gatedHandler is a streamHandler whose status streams count in a gate,
// as the daemon's do.
type gatedHandler struct {
	*streamHandler
	gate *readGate
}

func (h gatedHandler) heavyRead() func() { return h.gate.enter() }

// TestReadGateHoldsWhileStatusStreams: a status stream counts in the
// daemon's read gate from its request until its last byte, and
// releaseMemory's wait for quiet returns only then; a count out runs once;
// the wait ends with its context.
func TestReadGateHoldsWhileStatusStreams(t *testing.T) {
	svc := testStatus().Services[0]
	h := gatedHandler{&streamHandler{svc: svc, n: 3, release: make(chan struct{})}, newReadGate()}
	_, path := serveSocket(t, h, SocketOptions{})
	done := make(chan error, 1)
	go func() { done <- CallOutput(path, Request{Command: "status", Output: "json"}, io.Discard) }()
	nettest.WaitFor(t, 10*time.Second, "the stream counted in", func() error {
		if n := h.gate.n.Load(); n != 1 {
			return fmt.Errorf("%d reads in flight", n)
		}
		return nil
	})
	quiet := make(chan struct{})
	go func() {
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		defer wcancel()
		h.gate.waitQuiet(wctx)
		close(quiet)
	}()
	select {
	case <-quiet:
		t.Fatal("waitQuiet returned while a status streamed")
	case <-time.After(100 * time.Millisecond): // it must still be waiting: no event to wait for
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-quiet:
	case <-time.After(10 * time.Second):
		t.Fatal("waitQuiet did not return once the stream ended")
	}
	if n := h.gate.n.Load(); n != 0 {
		t.Errorf("%d reads in flight after the stream, want 0", n)
	}

	// Counted out once however often its function runs; the wait ends
	// with its context.
	g := newReadGate()
	leave := g.enter()
	leave()
	leave()
	if n := g.n.Load(); n != 0 {
		t.Errorf("two calls of one count out: %d in flight, want 0", n)
	}
	g.enter()
	wctx, wcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer wcancel()
	g.waitQuiet(wctx)
	if wctx.Err() == nil {
		t.Error("waitQuiet returned before its context ended with a read in flight")
	}
	var nilGate *readGate
	nilGate.enter()() // a nil gate counts nothing
}
