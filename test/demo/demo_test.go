// Package demo is `make demo`: the lab with two xlb directors (VRRP, one
// MASTER one BACKUP), three real servers and a client, narrated: traffic
// spread by the scheduler, the master's `xlb status`, a director killed and
// the backup taking over, the master coming back, a real server dying and
// the health checks taking it out. Run as root; it removes everything it
// made, also when interrupted.
package demo

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// demoT records why the demo fails instead of logging it: go test prints
// a test's log only after the test has returned, below everything the demo
// printed (the director logs included), so the demo prints the reasons
// itself, last.
type demoT struct {
	testing.TB
	mu      sync.Mutex
	reasons []string
}

func (d *demoT) record(msg string) {
	d.mu.Lock()
	d.reasons = append(d.reasons, msg)
	d.mu.Unlock()
}

func (d *demoT) Error(args ...any) { d.record(fmt.Sprint(args...)); d.TB.Fail() }
func (d *demoT) Errorf(format string, args ...any) {
	d.record(fmt.Sprintf(format, args...))
	d.TB.Fail()
}
func (d *demoT) Fatal(args ...any) { d.record(fmt.Sprint(args...)); d.TB.FailNow() }
func (d *demoT) Fatalf(format string, args ...any) {
	d.record(fmt.Sprintf(format, args...))
	d.TB.FailNow()
}

func (d *demoT) Reasons() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.reasons...)
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

type phase struct {
	at    time.Time
	title string
}

var phases []phase

func step(n int, title string) {
	phases = append(phases, phase{time.Now(), title})
	say("\n\033[1m%d. %s\033[0m", n, title)
}

// phaseAt names the step running at t.
func phaseAt(t time.Time) string {
	name := ""
	for _, p := range phases {
		if !t.Before(p.at) {
			name = p.title
		}
	}
	return name
}

// table prints, once a second for d, which real server answered how many
// requests (and how many failed) during that second.
func table(l *lab.Lab, load *lab.Load, d time.Duration) {
	names := make([]string, len(l.Reals))
	for i, r := range l.Reals {
		names[i] = r.Name
	}
	header := "   time    "
	for _, n := range names {
		header += fmt.Sprintf("%6s", n)
	}
	say("%s  failed", header)
	for end := time.Now().Add(d); time.Now().Before(end); {
		from := time.Now()
		time.Sleep(time.Second)
		r := load.Report(from)
		line := fmt.Sprintf("   %s  ", from.Format("15:04:05"))
		for _, n := range names {
			line += fmt.Sprintf("%6d", r.ByServer[n])
		}
		say("%s  %6d", line, r.Failed)
	}
}

func indent(s string) string {
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ")
}

func owner(l *lab.Lab) string {
	if m := l.Master(); m != nil {
		return fmt.Sprintf("%s (%s)", m.Name, m.Addr)
	}
	return "nobody"
}

func TestDemo(tt *testing.T) {
	t := &demoT{TB: tt}
	start := time.Now()
	var l *lab.Lab
	defer func() {
		if !tt.Failed() {
			return
		}
		if l != nil {
			say("\nDirector logs:\n%s", indent(l.Logs()))
		}
		say("\n\033[1;31mThe demo failed:\033[0m")
		for _, r := range t.Reasons() {
			say("   %s", strings.ReplaceAll(r, "\n", "\n   "))
		}
	}()
	say("xlb demo: a layer-4 load balancer with an XDP fast path and VRRP, in network namespaces.")

	step(1, "Building the lab")
	l = lab.New(t, lab.Spec{Directors: 2, Reals: 3, Scheduler: "mh", AdvertInt: 100 * time.Millisecond,
		CheckInterval: 250 * time.Millisecond, Fall: 2, Rise: 2})
	say("   switch (bridge) with a client %s, directors d1 %s (MASTER, priority 150) and d2 %s (BACKUP, 100),",
		l.ClientAddr, l.Directors[0].Addr, l.Directors[1].Addr)
	var rs []string
	for _, r := range l.Reals {
		rs = append(rs, fmt.Sprintf("%s %s", r.Name, r.Addr))
	}
	say("   real servers %s (direct routing: the VIP %s on their lo).", strings.Join(rs, ", "), l.VIP)
	for _, d := range l.Directors {
		d.Start()
	}
	l.WaitMaster(l.Directors[0], 20*time.Second)
	for _, d := range l.Directors {
		for _, r := range l.Reals {
			waitUp(t, d, r.Addr.String()+":80")
		}
	}
	say("   xlb runs on both directors (XDP attached natively); the VIP is on %s.", owner(l))

	step(2, "Traffic: 50 requests a second from the client to http://"+l.VIP.String()+"/, spread by Maglev hashing")
	load := l.StartLoad(20 * time.Millisecond)
	const nStreams = 4
	streams := l.StartStreams(nStreams, 50*time.Millisecond)
	say("   and %d long-lived connections to the echo service, each sending and checking 20 chunks a second.", nStreams)
	table(l, load, 4*time.Second)

	step(3, "`xlb status` on the master")
	out, err := l.Directors[0].StatusText()
	if err != nil {
		t.Fatalf("xlb status: %v", err)
	}
	say("%s", indent(out))

	step(4, "Killing the master (SIGKILL): the backup takes over")
	killed := time.Now()
	l.Directors[0].Kill()
	l.WaitMaster(l.Directors[1], 10*time.Second)
	takeover := time.Since(killed)
	say("   %s holds the VIP %v after the kill.", owner(l), takeover.Round(time.Millisecond))
	table(l, load, 3*time.Second)
	r := load.Report(killed)
	_, broken, _, _ := streams.Report()
	say("   since the kill: %d requests, %d failed; long-lived connections broken: %d of %d.", r.Sent, r.Failed, broken, nStreams)

	step(5, "Bringing the master back: it preempts (higher priority)")
	back := time.Now()
	l.Directors[0].Start()
	l.WaitMaster(l.Directors[0], 20*time.Second)
	preempt := time.Since(back)
	say("   %s holds the VIP again, %v after its restart.", owner(l), preempt.Round(time.Millisecond))
	table(l, load, 2*time.Second)

	step(6, "A real server dies: rs3's HTTP server stops; health checks (every 250ms, fall 2) take it out")
	stopped := time.Now()
	l.Reals[2].StopWeb()
	waitState(t, l.Directors[0], l.Reals[2].Addr.String()+":80", "down")
	detected := time.Since(stopped)
	say("   rs3 marked down %v after it stopped; its share moves to the others.", detected.Round(time.Millisecond))
	table(l, load, 3*time.Second)
	out, _ = l.Directors[0].StatusText()
	say("%s", indent(out))

	load.Stop()
	streams.Stop() // one last checked round each: a stalled connection counts as broken
	step(7, "Summary")
	// Where a request may fail: until the backup has taken over, until the
	// master is back, until rs3 is marked down (plus 500ms for requests in
	// flight and the clients' ARP caches).
	windows := []struct {
		from time.Time
		d    time.Duration
		why  string
	}{
		{killed, takeover + 500*time.Millisecond, "the takeover after the kill"},
		{back, preempt + 500*time.Millisecond, "the master coming back"},
		{stopped, detected, "rs3 dying, until it was marked down"},
	}
	within := map[string]int{}
	var outside []string
	total := load.Report(time.Time{})
	for _, res := range load.Results() {
		if res.Err == nil {
			continue
		}
		why := ""
		for _, w := range windows {
			// In flight during the window: a request that began just
			// before rs3 stopped can reach it as it stops.
			if !res.At.Add(res.Took).Before(w.from) && res.At.Before(w.from.Add(w.d)) {
				why = w.why
				break
			}
		}
		if why == "" {
			outside = append(outside, fmt.Sprintf("%s during %q, after %v: %v", res.At.Format("15:04:05.000"), phaseAt(res.At), res.Took.Round(time.Millisecond), res.Err))
			continue
		}
		within[why]++
	}
	say("   %d requests, %d failed.", total.Sent, total.Failed)
	for _, w := range windows {
		if n := within[w.why]; n > 0 {
			say("   %d failed during %s (%v).", n, w.why, w.d.Round(time.Millisecond))
		}
	}
	if len(outside) == 0 {
		say("   No request failed outside those windows.")
	}
	var rounds int
	var gap time.Duration
	var brokenStreams []string
	for _, st := range streams.Streams() {
		rounds += st.Rounds
		gap = max(gap, st.MaxGap)
		if st.Err != "" {
			brokenStreams = append(brokenStreams, st.Err)
		}
	}
	say("   %d long-lived connections: %d echo rounds, %d broken; the longest wait for an echo was %v.",
		nStreams, rounds, len(brokenStreams), gap.Round(time.Millisecond))
	say("   Tearing the lab down. The demo took %v.", time.Since(start).Round(time.Second))
	for _, o := range outside {
		t.Errorf("request failed outside the takeover windows: %s", o)
	}
	if len(outside) > 0 {
		for _, w := range windows {
			t.Errorf("window of %s: %s to %s", w.why, w.from.Format("15:04:05.000"), w.from.Add(w.d).Format("15:04:05.000"))
		}
	}
	for _, b := range brokenStreams {
		t.Errorf("long-lived connection broke: %s", b)
	}
}

func waitUp(t testing.TB, d *lab.Director, addr string) { waitState(t, d, addr, "up") }

// waitState waits until addr has health want in d's web service and the
// dataplane has the weight that goes with it (none when down).
func waitState(t testing.TB, d *lab.Director, addr, want string) {
	t.Helper()
	nettest.WaitFor(t, 20*time.Second, fmt.Sprintf("%s on %s %s", addr, d.Name, want), func() error {
		st, err := d.Status()
		if err != nil {
			return err
		}
		for _, s := range st.Services {
			if s.Name != "web" {
				continue
			}
			for _, r := range s.Reals {
				if r.Address == addr {
					if r.Health != want {
						return fmt.Errorf("%s is %s", addr, r.Health)
					}
					if (want == "down") != (r.Effective == 0) {
						return fmt.Errorf("%s is %s but its installed weight is %d", addr, r.Health, r.Effective)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("%s not in the status", addr)
	})
}
