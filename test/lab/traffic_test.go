package lab

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// TestStreamsReportStall: a stream whose real server goes silent (its link
// down: a blackhole, no reset) counts as broken, stalled, even when the
// traffic is stopped right after; the others do not. Every stream knows
// its real server.
func TestStreamsReportStall(t *testing.T) {
	l := New(t, Spec{Directors: 1, Reals: 2, Scheduler: "rr"})
	d := l.Directors[0]
	d.Start()
	nettest.WaitFor(t, 20*time.Second, "a request through the VIP", func() error {
		_, err := l.Get(time.Second)
		return err
	})
	s := l.StartStreamsEach(2, 20*time.Millisecond)
	nettest.WaitFor(t, 10*time.Second, "echo rounds on every stream", func() error {
		for _, st := range s.Streams() {
			if st.Rounds < 3 {
				return fmt.Errorf("stream %d: %d rounds", st.ID, st.Rounds)
			}
		}
		return nil
	})
	silent := time.Now()
	l.Reals[1].NS.MustRun(t, "ip", "link", "set", "eth0", "down")
	s.Stop()
	waited := time.Since(silent)
	by := map[string]int{}
	for _, st := range s.Streams() {
		by[st.Server]++
		switch st.Server {
		case "rs1":
			if st.Err != "" {
				t.Errorf("stream %d on rs1 broke: %s", st.ID, st.Err)
			}
		case "rs2":
			if !strings.Contains(st.Err, "stalled") {
				t.Errorf("stream %d on the silent rs2: error %q, want stalled", st.ID, st.Err)
			}
		default:
			t.Errorf("stream %d: real server %q", st.ID, st.Server)
		}
	}
	t.Logf("streams by real server %v; Stop returned %v after rs2 went silent", by, waited.Round(time.Millisecond))
	if by["rs1"] < 2 || by["rs2"] < 2 {
		t.Errorf("streams by real server %v, want at least 2 each", by)
	}
}
