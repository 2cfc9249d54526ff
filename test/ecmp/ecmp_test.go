package ecmp

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// spread opens n connections and returns how many each director
// scheduled.
func spread(t *testing.T, l *Lab, n int) map[string]uint64 {
	t.Helper()
	before := map[string]uint64{}
	for _, d := range l.Directors {
		before[d.Name] = d.Connections()
	}
	for i := range n {
		c, err := l.Dial()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		buf := []byte("hello\n")
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(buf); err == nil {
			_, err = c.Read(buf)
		}
		c.Close()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	out := map[string]uint64{}
	for _, d := range l.Directors {
		out[d.Name] = d.Connections() - before[d.Name]
	}
	return out
}

func TestFRRECMP(t *testing.T) {
	l := New(t, Spec{BFD: true})
	frr := l.Router.(*FRR)
	d1, d2, d3 := l.Directors[0], l.Directors[1], l.Directors[2]

	t.Run("new connections spread over the three directors", func(t *testing.T) {
		by := spread(t, l, 60)
		t.Logf("60 connections: %v", by)
		for _, d := range l.Directors {
			if by[d.Name] == 0 {
				t.Errorf("%s took none of them: %v", d.Name, by)
			}
		}
	})

	t.Run("a reload that changes one peer leaves the other session up", func(t *testing.T) {
		before, _, err := frr.Neighbor(d1.Addr)
		if err != nil {
			t.Fatal(err)
		}
		d1.ExtraPeer = "10.77.0.99"
		d1.WriteConfig()
		if out, err := d1.Run("reload"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		st, err := d1.Status()
		if err != nil || st.BGP == nil || len(st.BGP.Peers) != 2 {
			t.Fatalf("status after the reload: %v %+v", err, st)
		}
		after, _, _ := frr.Neighbor(d1.Addr)
		if after.ConnectionsEstab != before.ConnectionsEstab || after.State != "Established" {
			t.Errorf("d1's session with the router: %d sessions before, %d after (%s): the reload reset it", before.ConnectionsEstab, after.ConnectionsEstab, after.State)
		}
		d1.ExtraPeer = ""
		d1.WriteConfig()
		if out, err := d1.Run("reload"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	})

	t.Run("a director below quorum withdraws", func(t *testing.T) {
		d3.Quorum = 4 // three real servers of weight 1
		d3.WriteConfig()
		if out, err := d3.Run("reload"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		l.WaitNextHops(10*time.Second, d1, d2)
		st, _ := d3.Status()
		if st.BGP == nil || len(st.BGP.VIPs) != 1 || st.BGP.VIPs[0].Announced || !strings.Contains(st.BGP.VIPs[0].Reason, "below quorum") {
			t.Errorf("d3's BGP status: %+v", st.BGP)
		}
		by := spread(t, l, 30)
		if by[d3.Name] != 0 || by[d1.Name]+by[d2.Name] != 30 {
			t.Errorf("30 connections with d3 withdrawn: %v", by)
		}
		d3.Quorum = 1
		d3.WriteConfig()
		if out, err := d3.Run("reload"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		l.WaitNextHops(10*time.Second, d1, d2, d3)
	})

	t.Run("xlb drain moves the flows off a director, then withdraws", func(t *testing.T) {
		// A reset of d2's session by its first BFD session's end, late
		// on a busy machine, read as the drain's withdrawal (lab.go).
		l.WaitSettled(20*time.Second, d1, d2, d3)
		s := l.StartStreams(30, 5*time.Second)
		start := time.Now()
		if out, err := d2.Run("drain"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		// GRACEFUL_SHUTDOWN: FRR lowers d2's LOCAL_PREF to 0 (RFC 8326) and
		// leaves it out of the multipath.
		l.WaitNextHops(5*time.Second, d1, d3)
		moved := time.Since(start)
		paths, _ := frr.Paths()
		t.Logf("after %v: paths %v", moved.Round(time.Millisecond), paths)
		if p := paths[d2.Addr.String()]; !strings.Contains(p, "graceful-shutdown") {
			t.Errorf("d2's path while draining: %q (want the graceful-shutdown community)", p)
		}
		nettest.WaitFor(t, 10*time.Second, "d2's withdrawal", func() error {
			paths, err := frr.Paths()
			if err != nil {
				return err
			}
			if p, ok := paths[d2.Addr.String()]; ok {
				return fmt.Errorf("d2 still announces: %s", p)
			}
			return nil
		})
		withdrawn := time.Since(start)
		n, raw, _ := frr.Neighbor(d2.Addr)
		if n.State == "Established" || !strings.Contains(raw, "xlb drain") {
			// First what BFD did, in the few lines a CI excerpt keeps.
			t.Errorf("d2's session after the drain: %s, want it shut down with the drain's message (reset due to %q: %q); BFD:\n%s\n%s",
				n.State, n.LastResetDueTo, n.LastNotificationMsg, bfdLines(d2), frr.BFDPeer(d2.Addr))
			t.Logf("FRR's neighbour:\n%s", raw)
		}
		broken, gap := s.Stop()
		t.Logf("drain timeline: xlb drain, new flows off d2 after %v, withdrawn after %v; streams: %d broken, longest echo wait %v",
			moved.Round(time.Millisecond), withdrawn.Round(time.Millisecond), len(broken), gap.Round(time.Millisecond))
		if len(broken) > 0 {
			t.Errorf("%d streams broken: %v", len(broken), broken)
		}
		if out, err := d2.Run("undrain"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		l.WaitNextHops(15*time.Second, d1, d2, d3)
		l.WaitSettled(20*time.Second, d1, d2, d3) // d2's sessions are new
	})

	t.Run("a daemon restart keeps the route (graceful restart)", func(t *testing.T) {
		d1.KeepOnExit = true
		d1.WriteConfig()
		if out, err := d1.Run("reload"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		s := l.StartStreams(30, 5*time.Second)
		stop := make(chan struct{})
		lost := make(chan string, 1)
		go func() {
			for {
				select {
				case <-stop:
					close(lost)
					return
				case <-time.After(20 * time.Millisecond):
				}
				if hops, err := l.Router.NextHops(); err == nil && len(hops) != 3 {
					lost <- fmt.Sprint(hops)
					<-stop
					close(lost)
					return
				}
			}
		}()
		d1.Stop()
		d1.Start()
		nettest.WaitFor(t, 20*time.Second, "d1's session again", func() error {
			n, _, err := frr.Neighbor(d1.Addr)
			if err != nil || n.State != "Established" {
				return fmt.Errorf("%s %v", n.State, err)
			}
			return nil
		})
		// Until the restarted session's End-of-RIB: d1's path is fresh again.
		nettest.WaitFor(t, 20*time.Second, "d1's path refreshed", func() error {
			paths, err := frr.Paths()
			if err != nil {
				return err
			}
			if p := paths[d1.Addr.String()]; p == "" || strings.Contains(p, "stale") {
				return fmt.Errorf("d1's path: %q", p)
			}
			return nil
		})
		close(stop)
		if hops, ok := <-lost; ok {
			t.Errorf("the router's route lost a next hop during the restart: %s", hops)
		}
		broken, gap := s.Stop()
		t.Logf("restart: %d streams broken, longest echo wait %v", len(broken), gap.Round(time.Millisecond))
		if len(broken) > 0 {
			t.Errorf("%d streams broken: %v", len(broken), broken)
		}
		l.WaitNextHops(5*time.Second, d1, d2, d3)
		l.WaitSettled(20*time.Second, d1, d2, d3) // d1's session is new
	})

	t.Run("the loss of a director: withdrawn by BFD within a second, mh streams survive", func(t *testing.T) {
		s := l.StartStreams(30, 5*time.Second)
		start := time.Now()
		d3.Kill()
		l.WaitNextHops(10*time.Second, d1, d2)
		took := time.Since(start)
		broken, gap := s.Stop()
		t.Logf("SIGKILL and link down to withdrawal (BFD 300ms x 3): %v; streams: %d broken, longest echo wait %v", took.Round(time.Millisecond), len(broken), gap.Round(time.Millisecond))
		if took > 1500*time.Millisecond {
			t.Errorf("withdrawn after %v, want about a second (BFD)", took)
		}
		if len(broken) > 0 {
			t.Errorf("%d streams broken: %v", len(broken), broken)
		}
	})
}

// bfdLines are d's log lines about BFD and its BGP sessions, with their
// times: what a BFD flap looks like from the director.
func bfdLines(d *Director) string {
	out, _ := os.ReadFile(d.LogPath)
	var b strings.Builder
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "bfd") || strings.Contains(line, "BFD") || strings.Contains(line, "BGP session") || strings.Contains(line, "drain") {
			b.WriteString(line)
		}
	}
	return b.String()
}
