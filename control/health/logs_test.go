package health_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/xlb-dev/xlb/control/health"
)

// syncBuffer is a log destination safe for the Manager's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines counts the log lines with msg="...msg...".
func (s *syncBuffer) lines(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), `msg="`+msg+`"`)
}

// The log says what happens to thousands of checks without a line per
// real server: the update is one line, the first results (from unknown)
// come summarised, and only a real transition (up to down) has a line of
// its own. Before, the start of 64,000 checks logged 64,000 lines.
func TestManagerLogsSummarise(t *testing.T) {
	const n = 300
	up, down := listenTCP(t), listenTCP(t)
	var log syncBuffer
	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	shared := tcpSpec()
	shared.Interval, shared.Rise, shared.Fall = interval, 1, 1
	var list []health.Check
	for i := range n {
		target := addrPort(t, up.Addr())
		if i < 2 {
			target = addrPort(t, down.Addr())
		}
		list = append(list, health.Check{Key: fmt.Sprintf("svc/10.0.%d.%d:80", i/256, i%256), Spec: &shared, Target: target})
	}
	if err := m.UpdateChecks(list); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	go func() {
		for range m.Results() {
		}
	}()
	clk.Advance(interval + interval/5)
	waitFor(t, "every first result", func() bool {
		for _, st := range m.Status() {
			if st.State != health.StateUp {
				return false
			}
		}
		return true
	})
	// The last summary comes when none is undecided, logged after the
	// state changed.
	waitFor(t, "the summary", func() bool { return log.lines("health checks: first results") >= 1 })
	if got := log.lines("health checks updated"); got != 1 {
		t.Errorf("%d \"health checks updated\" lines, want 1", got)
	}
	if got := log.lines("health checks: first results"); got < 1 || got > 3 {
		t.Errorf("%d \"first results\" lines, want a summary", got)
	}
	if got := log.lines("health check state changed"); got != 0 {
		t.Errorf("%d lines for first results, want none", got)
	}

	// Two real servers go down: a line each.
	addr := down.Addr().String()
	down.Close()
	clk.Advance(interval + interval/5)
	waitFor(t, "two checks down", func() bool {
		st := m.Status()
		return st["svc/10.0.0.0:80"].State == health.StateDown && st["svc/10.0.0.1:80"].State == health.StateDown
	})
	// A transition is logged after the state changed, without the
	// Manager's lock: wait for the lines too.
	waitFor(t, "their lines", func() bool { return log.lines("health check state changed") >= 2 })
	if got := log.lines("health check state changed"); got != 2 {
		t.Errorf("%d \"state changed\" lines after 2 of %d went down (%s), want 2:\n%s", got, n, addr, log.String())
	}
	// Targets keep their own addresses with a shared Spec.
	if st := m.Status()["svc/10.0.0.5:80"]; st.Spec.Target != addrPort(t, up.Addr()) || st.Spec.Interval != interval {
		t.Errorf("status of a shared check: %+v", st.Spec)
	}
}
