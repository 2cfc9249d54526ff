package ecmp

import (
	"strings"
	"testing"
	"time"
)

// Without BFD the router notices a dead director when the hold time (9s)
// runs out; the mh streams it carried survive (TCP retransmits meanwhile:
// they stall, they do not break).
func TestFRRLossWithoutBFD(t *testing.T) {
	l := New(t, Spec{Directors: 2})
	s := l.StartStreams(20, 30*time.Second)
	t.Logf("streams by director: d1 %d, d2 %d", l.Directors[0].Connections(), l.Directors[1].Connections())
	start := time.Now()
	l.Directors[1].Kill()
	l.WaitNextHops(20*time.Second, l.Directors[0])
	took := time.Since(start)
	broken, gap := s.Stop()
	t.Logf("SIGKILL and link down to withdrawal (hold time 9s): %v; streams: %d broken, longest echo wait %v", took.Round(time.Millisecond), len(broken), gap.Round(time.Millisecond))
	if took < 5*time.Second {
		t.Errorf("withdrawn after %v: before the hold time could run out?", took)
	}
	if len(broken) > 0 {
		t.Errorf("%d streams broken: %v", len(broken), broken)
	}
}

// The same announcements against BIRD 2: ECMP over the three directors,
// a director below quorum withdraws, a drain withdraws, a dead director
// is withdrawn by BFD.
func TestBIRDECMP(t *testing.T) {
	l := New(t, Spec{Router: "bird", BFD: true})
	d1, d2, d3 := l.Directors[0], l.Directors[1], l.Directors[2]
	by := spread(t, l, 60)
	t.Logf("60 connections: %v", by)
	for _, d := range l.Directors {
		if by[d.Name] == 0 {
			t.Errorf("%s took none of them: %v", d.Name, by)
		}
	}

	d3.Quorum = 4
	d3.WriteConfig()
	if out, err := d3.Run("reload"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	l.WaitNextHops(10*time.Second, d1, d2)
	d3.Quorum = 1
	d3.WriteConfig()
	if out, err := d3.Run("reload"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	l.WaitNextHops(10*time.Second, d1, d2, d3)

	s := l.StartStreams(30, 5*time.Second)
	start := time.Now()
	if out, err := d2.Run("drain"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// BIRD keeps the GRACEFUL_SHUTDOWN route in the multipath (it has no
	// policy for the community unless configured): the flows move at the
	// withdrawal, drain_time (3s) later.
	l.WaitNextHops(10*time.Second, d1, d3)
	took := time.Since(start)
	broken, gap := s.Stop()
	t.Logf("drain: withdrawn after %v; streams: %d broken, longest echo wait %v", took.Round(time.Millisecond), len(broken), gap.Round(time.Millisecond))
	if len(broken) > 0 {
		t.Errorf("%d streams broken: %v", len(broken), broken)
	}
	proto, _ := l.Router.(*BIRD).Birdc("show protocols all d2")
	if !strings.Contains(proto, "xlb drain") {
		t.Errorf("BIRD's session with d2 after the drain, want the drain's shutdown message:\n%s", proto)
	}
	if out, err := d2.Run("undrain"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	l.WaitNextHops(20*time.Second, d1, d2, d3)

	s = l.StartStreams(30, 5*time.Second)
	start = time.Now()
	d3.Kill()
	l.WaitNextHops(10*time.Second, d1, d2)
	took = time.Since(start)
	broken, gap = s.Stop()
	t.Logf("SIGKILL and link down to withdrawal (BFD 300ms x 3): %v; streams: %d broken, longest echo wait %v", took.Round(time.Millisecond), len(broken), gap.Round(time.Millisecond))
	if took > 1500*time.Millisecond {
		t.Errorf("withdrawn after %v, want about a second (BFD)", took)
	}
	if len(broken) > 0 {
		t.Errorf("%d streams broken: %v", len(broken), broken)
	}
}

// How long the router keeps sending to a dead director: SIGKILL and link
// down to the withdrawal in the router's kernel, with BFD (300ms x 3) and
// with the hold time (9s).
func BenchmarkWithdrawal(b *testing.B) {
	for _, bfd := range []bool{true, false} {
		name := "hold_time_9s"
		if bfd {
			name = "bfd_300msx3"
		}
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				l := New(b, Spec{Directors: 2, BFD: bfd})
				start := time.Now()
				l.Directors[1].Kill()
				l.WaitNextHops(20*time.Second, l.Directors[0])
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/withdrawal")
		})
	}
}
