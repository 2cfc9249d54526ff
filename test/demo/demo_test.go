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
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

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

func TestDemo(t *testing.T) {
	start := time.Now()
	say("xlb demo: a layer-4 load balancer with an XDP fast path and VRRP, in network namespaces.")

	step(1, "Building the lab")
	l := lab.New(t, lab.Spec{Directors: 2, Reals: 3, Scheduler: "mh", AdvertInt: 100 * time.Millisecond,
		CheckInterval: 250 * time.Millisecond, Fall: 2, Rise: 2})
	defer func() {
		if t.Failed() {
			say("\nThe demo failed (the reason is above). Director logs:\n%s", indent(l.Logs()))
		}
	}()
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
	streams := l.StartStreams(4, 50*time.Millisecond)
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
	say("   %s holds the VIP %v after the kill.", owner(l), time.Since(killed).Round(time.Millisecond))
	table(l, load, 3*time.Second)
	r := load.Report(killed)
	_, broken, _, _ := streams.Report()
	say("   since the kill: %d requests, %d failed; long-lived connections broken: %d of 4.", r.Sent, r.Failed, broken)

	step(5, "Bringing the master back: it preempts (higher priority)")
	back := time.Now()
	l.Directors[0].Start()
	l.WaitMaster(l.Directors[0], 20*time.Second)
	say("   %s holds the VIP again, %v after its restart.", owner(l), time.Since(back).Round(time.Millisecond))
	table(l, load, 2*time.Second)

	step(6, "A real server dies: rs3's HTTP server stops; health checks (every 250ms, fall 2) take it out")
	stopped := time.Now()
	l.Reals[2].StopWeb()
	waitState(t, l.Directors[0], l.Reals[2].Addr.String()+":80", "down")
	say("   rs3 marked down %v after it stopped; its share moves to the others.", time.Since(stopped).Round(time.Millisecond))
	table(l, load, 3*time.Second)
	out, _ = l.Directors[0].StatusText()
	say("%s", indent(out))

	load.Stop()
	streams.Stop()
	total := load.Report(time.Time{})
	_, broken, rounds, _ := streams.Report()
	step(7, "Summary")
	var when []string
	for _, res := range load.Results() {
		if res.Err != nil {
			when = append(when, fmt.Sprintf("%s during %q: %v", res.At.Format("15:04:05.000"), phaseAt(res.At), res.Err))
		}
	}
	say("   %d requests, %d failed; %d echo rounds on 4 long-lived connections, %d broken.", total.Sent, total.Failed, rounds, broken)
	for _, w := range when {
		say("   failed: %s", w)
	}
	say("   Tearing the lab down. The demo took %v.", time.Since(start).Round(time.Second))
	if broken > 0 {
		t.Errorf("%d long-lived connections broke", broken)
	}
}

func waitUp(t *testing.T, d *lab.Director, addr string) { waitState(t, d, addr, "up") }

func waitState(t *testing.T, d *lab.Director, addr, want string) {
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
					if r.Health == want {
						return nil
					}
					return fmt.Errorf("%s is %s", addr, r.Health)
				}
			}
		}
		return fmt.Errorf("%s not in the status", addr)
	})
}
