package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// quorumSetup is a one-director lab whose only service, web, has rs1 and
// rs2 as real servers, rs3 as its sorry server, and quorum scripts that
// append "up TIME" and "down TIME" lines to events.
type quorumSetup struct {
	l      *lab.Lab
	d      *lab.Director
	events string
	// web and sorry are the real servers' and the sorry server's
	// addresses as the status names them.
	web   [2]string
	sorry string
}

// quorumScript appends "$1 UNIX-TIME" to the file $2 (the daemon runs
// commands without a shell).
const quorumScript = `#!/bin/sh
echo "$1 $(date +%s.%N)" >> "$2"
`

func newQuorumSetup(t *testing.T, layout string, weights [2]int, quorum, hysteresis int) *quorumSetup {
	t.Helper()
	const interval = 200 * time.Millisecond
	l := lab.New(t, lab.Spec{Layout: layout, Directors: 1, Reals: 3, Scheduler: "rr", CheckInterval: interval, Fall: 2, Rise: 2})
	logsOnFailure(t, l)
	d := l.Directors[0]
	dir := t.TempDir()
	script := filepath.Join(dir, "quorum.sh")
	if err := os.WriteFile(script, []byte(quorumScript), 0o755); err != nil {
		t.Fatal(err)
	}
	q := &quorumSetup{l: l, d: d, events: filepath.Join(dir, "events")}
	for i := range q.web {
		q.web[i] = webAddr(l, l.Reals[i])
	}
	q.sorry = webAddr(l, l.Reals[2])

	// The lab's configuration up to its services, then ours.
	cfg := d.DefaultConfig()
	cut := strings.Index(cfg, "\n[[virtual_server]]")
	if cut < 0 {
		t.Fatalf("no [[virtual_server]] in the lab's configuration:\n%s", cfg)
	}
	forward, webPort := "dr", lab.WebPort
	if layout == lab.NAT {
		forward, webPort = "nat", lab.NATPort
	}
	var b strings.Builder
	b.WriteString(cfg[:cut])
	fmt.Fprintf(&b, `
[[virtual_server]]
name = "web"
address = %q
port = %d
protocol = "tcp"
scheduler = "rr"
forward = %q
quorum = %d
hysteresis = %d
quorum_up = "%s up %s"
quorum_down = "%s down %s"
sorry_server = %q

[virtual_server.health_check]
type = "http"
path = "/"
interval = %q
timeout = %q
fall = 2
rise = 2
`, l.VIP, lab.WebPort, forward, quorum, hysteresis, script, q.events, script, q.events, q.sorry, interval, interval)
	for i, w := range weights {
		fmt.Fprintf(&b, `
[[virtual_server.real_server]]
address = %q
port = %d
weight = %d
`, l.Reals[i].Addr, webPort, w)
	}
	d.WriteConfig(b.String())
	return q
}

// webService returns the status of the web service.
func (q *quorumSetup) webService() (*control.ServiceInfo, error) {
	st, err := q.d.Status()
	if err != nil {
		return nil, err
	}
	s := service(st, "web")
	if s == nil {
		return nil, fmt.Errorf("no service web in the status")
	}
	return s, nil
}

// waitUp waits until the service is up in the dataplane: quorum reached,
// the sorry server out, the real servers healthy (their health want)
// installed with their weight and the unhealthy ones at 0. It returns
// the time it took.
func (q *quorumSetup) waitUp(t *testing.T, healthy [2]bool, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	nettest.WaitFor(t, timeout, "web up, sorry server out", func() error {
		s, err := q.webService()
		if err != nil {
			return err
		}
		if !s.Up || s.SorryActive {
			return fmt.Errorf("up %v, sorry_active %v", s.Up, s.SorryActive)
		}
		for i, a := range q.web {
			r := realInfo(s, a)
			if r == nil {
				return fmt.Errorf("no real server %s", a)
			}
			want := uint32(0)
			if healthy[i] {
				want = r.Weight
			}
			if r.Effective != want {
				return fmt.Errorf("%s (%s) installed with weight %d, want %d", a, r.Health, r.Effective, want)
			}
		}
		if r := realInfo(s, q.sorry); r == nil || !r.Sorry || r.Effective != 0 {
			return fmt.Errorf("sorry server %s: %+v", q.sorry, r)
		}
		return nil
	})
	return time.Since(start)
}

// waitDown waits until the service is down in the dataplane: below
// quorum, every real server at weight 0, the sorry server installed.
func (q *quorumSetup) waitDown(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	nettest.WaitFor(t, timeout, "web down, sorry server in", func() error {
		s, err := q.webService()
		if err != nil {
			return err
		}
		if s.Up || !s.SorryActive {
			return fmt.Errorf("up %v, sorry_active %v", s.Up, s.SorryActive)
		}
		for _, a := range q.web {
			if r := realInfo(s, a); r == nil || r.Effective != 0 {
				return fmt.Errorf("real server %s: %+v", a, r)
			}
		}
		if r := realInfo(s, q.sorry); r == nil || !r.Sorry || r.Effective == 0 {
			return fmt.Errorf("sorry server %s: %+v", q.sorry, r)
		}
		return nil
	})
	return time.Since(start)
}

// waitHealthOnly waits until the check of real server addr reports want
// (its installed weight aside: it is 0 while the sorry server is in).
func (q *quorumSetup) waitHealthOnly(t *testing.T, addr, want string, timeout time.Duration) {
	t.Helper()
	nettest.WaitFor(t, timeout, addr+" "+want, func() error {
		s, err := q.webService()
		if err != nil {
			return err
		}
		if r := realInfo(s, addr); r == nil || r.Health != want {
			return fmt.Errorf("real server %s: %+v", addr, r)
		}
		return nil
	})
}

// checkReported checks what `xlb status --json` and /metrics say of the
// web service.
func (q *quorumSetup) checkReported(t *testing.T, up bool) {
	t.Helper()
	js, err := q.d.StatusText("--json")
	if err != nil {
		t.Fatalf("xlb status --json: %v", err)
	}
	var raw struct {
		Services []map[string]any `json:"services"`
	}
	if err := json.Unmarshal([]byte(js), &raw); err != nil {
		t.Fatalf("xlb status --json: %v\n%s", err, js)
	}
	found := false
	for _, s := range raw.Services {
		if s["name"] != "web" {
			continue
		}
		found = true
		// sorry_active is omitted while false.
		sorry, _ := s["sorry_active"].(bool)
		if s["up"] != up || sorry == up {
			t.Errorf("xlb status --json: web up=%v sorry_active=%v (%v), want up=%v sorry_active=%v",
				s["up"], s["sorry_active"], s["sorry_active"] != nil, up, !up)
		}
	}
	if !found {
		t.Errorf("xlb status --json has no service web:\n%s", js)
	}
	m, err := q.d.Metrics()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	want := 0.0
	if up {
		want = 1
	}
	if v := metric(t, m, "xlb_service_up", `service="web"`); v != want {
		t.Errorf("xlb_service_up{service=\"web\"} = %v, want %v", v, want)
	}
}

// event is a line a quorum script wrote.
type event struct {
	kind string
	at   time.Time
}

func (q *quorumSetup) readEvents(t *testing.T) []event {
	t.Helper()
	data, err := os.ReadFile(q.events)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []event
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("quorum script line %q", line)
		}
		sec, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("quorum script line %q: %v", line, err)
		}
		out = append(out, event{kind: f[0], at: time.Unix(0, int64(sec*1e9))})
	}
	return out
}

func kinds(evs []event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.kind)
	}
	return strings.Join(s, ",")
}

// waitEvents waits until the scripts have written n lines and checks
// they are want (comma separated kinds, in order); it returns them.
func (q *quorumSetup) waitEvents(t *testing.T, n int, want string) []event {
	t.Helper()
	var evs []event
	nettest.WaitFor(t, 15*time.Second, fmt.Sprintf("%d quorum script runs", n), func() error {
		if evs = q.readEvents(t); len(evs) < n {
			return fmt.Errorf("script runs so far: %q", kinds(evs))
		}
		return nil
	})
	if got := kinds(evs); got != want {
		t.Fatalf("quorum scripts ran %q, want %q", got, want)
	}
	return evs
}

// onlyFrom checks that the requests since from did not fail and were
// answered by the servers named, each of want at least once.
func onlyFrom(t *testing.T, ld *lab.Load, from time.Time, what string, want ...string) lab.LoadReport {
	t.Helper()
	r := ld.Report(from)
	if r.Failed > 0 {
		t.Errorf("%s: requests failed: %s", what, r)
	}
	n := 0
	for _, name := range want {
		if r.ByServer[name] == 0 {
			t.Errorf("%s: no answer from %s: %s", what, name, r)
		}
		n += r.ByServer[name]
	}
	if n != r.Sent-r.Failed {
		t.Errorf("%s: answers from others than %v: %s", what, want, r)
	}
	return r
}

// TestQuorumSorryServer: a service of two real servers with quorum 2 and
// a sorry server. While both are healthy the sorry server gets nothing;
// one HTTP server dies: the healthy weight falls below the quorum, the
// service goes down (status, /metrics), quorum_down runs once and every
// new request is answered by the sorry server; it comes back: quorum_up
// runs and the real servers answer again.
func TestQuorumSorryServer(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) {
		q := newQuorumSetup(t, layout, [2]int{1, 1}, 2, 0)
		l := q.l
		started := time.Now()
		q.d.Start()

		// The real servers start down (initial_state "down"): the service
		// starts below its quorum and comes up once their checks pass.
		q.waitUp(t, [2]bool{true, true}, 20*time.Second)
		t.Logf("%s: service up %v after the start", layout, time.Since(started).Round(time.Millisecond))
		q.checkReported(t, true)
		q.waitEvents(t, 1, "up")

		load := l.StartLoad(20 * time.Millisecond)
		waitRequests(t, load, started, 40)
		onlyFrom(t, load, started, "both real servers healthy", "rs1", "rs2")

		// rs2's HTTP server dies: healthy weight 1 < quorum 2.
		killed := time.Now()
		l.Reals[1].StopWeb()
		detect := q.waitDown(t, 15*time.Second)
		detected := time.Now()
		q.checkReported(t, false)
		waitRequests(t, load, detected, 50)
		r := onlyFrom(t, load, detected, "below quorum", "rs3")
		evs := q.waitEvents(t, 2, "up,down")
		t.Logf("%s: rs2 stopped: service down and sorry server installed after %v, quorum_down ran %v after the stop; since: %s",
			layout, detect.Round(time.Millisecond), evs[1].at.Sub(killed).Round(time.Millisecond), r)
		t.Logf("%s: between the stop and the detection: %s", layout, load.ReportBetween(killed, detected))

		// rs2 comes back: quorum reached again.
		back := time.Now()
		l.Reals[1].StartWeb()
		restore := q.waitUp(t, [2]bool{true, true}, 15*time.Second)
		restored := time.Now()
		q.checkReported(t, true)
		waitRequests(t, load, restored, 50)
		r = onlyFrom(t, load, restored, "quorum back", "rs1", "rs2")
		evs = q.waitEvents(t, 3, "up,down,up")
		t.Logf("%s: rs2 back: service up and sorry server out after %v, quorum_up ran %v after the restart; since: %s",
			layout, restore.Round(time.Millisecond), evs[2].at.Sub(back).Round(time.Millisecond), r)
		load.Stop()
		all := load.Report(time.Time{})
		t.Logf("%s: whole run: %s", layout, all)
		// Requests fail only while rs2 is dead and still scheduled.
		if all.Failed > 0 && (all.FirstFail.Before(killed) || all.LastFail.After(detected)) {
			t.Errorf("requests failed outside [stop, detection] (%s, %s): %s",
				killed.Format("15:04:05.000"), detected.Format("15:04:05.000"), all)
		}
		if got := kinds(q.readEvents(t)); got != "up,down,up" {
			t.Errorf("quorum scripts ran %q by the end, want up,down,up", got)
		}
	})
}

// TestQuorumHysteresis: quorum 3, hysteresis 2, real servers rs1 of
// weight 2 and rs2 of weight 3, and a sorry server. The service goes down
// below 1 (quorum - hysteresis) and comes up at 5 (quorum + hysteresis):
// rs2 down (2 left, below the quorum) keeps it up, rs1 down too (0) takes
// it down, rs2 back (3, the quorum) does not bring it up, rs1 back (5)
// does. Without the hysteresis the first and the third step would flip it.
func TestQuorumHysteresis(t *testing.T) {
	q := newQuorumSetup(t, lab.DR, [2]int{2, 3}, 3, 2)
	l := q.l
	rs1, rs2 := l.Reals[0], l.Reals[1]
	started := time.Now()
	q.d.Start()
	q.waitUp(t, [2]bool{true, true}, 20*time.Second)
	q.waitEvents(t, 1, "up")
	load := l.StartLoad(20 * time.Millisecond)
	waitRequests(t, load, started, 40)
	onlyFrom(t, load, started, "both real servers healthy", "rs1", "rs2")

	// rs2 down: healthy weight 2, below the quorum but not below quorum -
	// hysteresis: still up. The reconciliation that installed rs2 at
	// weight 0 decided it.
	t0 := time.Now()
	rs2.StopWeb()
	q.waitUp(t, [2]bool{true, false}, 15*time.Second)
	t.Logf("rs2 stopped: out after %v, service still up", time.Since(t0).Round(time.Millisecond))
	q.checkReported(t, true)
	from := time.Now()
	waitRequests(t, load, from, 40)
	onlyFrom(t, load, from, "weight 2, quorum 3, hysteresis 2, going down", "rs1")

	// rs1 down too: 0 < 1: down, the sorry server answers.
	t0 = time.Now()
	rs1.StopWeb()
	detect := q.waitDown(t, 15*time.Second)
	from = time.Now()
	q.checkReported(t, false)
	waitRequests(t, load, from, 40)
	onlyFrom(t, load, from, "both down", "rs3")
	evs := q.waitEvents(t, 2, "up,down")
	t.Logf("rs1 stopped too: service down after %v, quorum_down ran %v after the stop", detect.Round(time.Millisecond), evs[1].at.Sub(t0).Round(time.Millisecond))

	// rs2 back: 3 reaches the quorum but not quorum + hysteresis (5):
	// still down. Its check reporting up pokes the reconciler at once
	// (installed weights do not show it: every real server is at 0 while
	// the sorry server is in); the requests made after it (at least 40,
	// one every 20 ms) would show the service coming up.
	rs2.StartWeb()
	q.waitHealthOnly(t, q.web[1], "up", 15*time.Second)
	from = time.Now()
	waitRequests(t, load, from, 40)
	onlyFrom(t, load, from, "weight 3, quorum 3, hysteresis 2, coming up", "rs3")
	q.waitDown(t, time.Second)
	q.checkReported(t, false)

	// rs1 back: 5: up.
	t0 = time.Now()
	rs1.StartWeb()
	restore := q.waitUp(t, [2]bool{true, true}, 15*time.Second)
	from = time.Now()
	q.checkReported(t, true)
	waitRequests(t, load, from, 40)
	onlyFrom(t, load, from, "both back", "rs1", "rs2")
	evs = q.waitEvents(t, 3, "up,down,up")
	t.Logf("rs1 back too: service up after %v, quorum_up ran %v after the restart", restore.Round(time.Millisecond), evs[2].at.Sub(t0).Round(time.Millisecond))
	load.Stop()
	t.Logf("whole run: %s", load.Report(time.Time{}))
	if got := kinds(q.readEvents(t)); got != "up,down,up" {
		t.Errorf("quorum scripts ran %q by the end, want up,down,up", got)
	}
}
