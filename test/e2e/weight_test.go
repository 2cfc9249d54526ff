package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// servers makes n requests to addr and counts the answers by real server.
func servers(t *testing.T, l *lab.Lab, addr netip.AddrPort, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		name, err := l.GetFrom(addr, 2*time.Second)
		if err != nil {
			t.Fatalf("request to %s: %v", addr, err)
		}
		got[name]++
	}
	return got
}

// TestSetWeightEndToEnd: `xlb set-weight` drains a real server (no new
// connection reaches it), is shown by `xlb status` next to the configured
// weight and exported, survives a restart of the daemon (the restarted
// daemon never sends it a connection), and `xlb reset-weight` brings it
// back.
func TestSetWeightEndToEnd(t *testing.T) {
	l := lab.New(t, lab.Spec{Layout: lab.DR, Directors: 1, Scheduler: "wrr"})
	logsOnFailure(t, l)
	d := l.Directors[0]
	d.Start()
	waitAllUp(t, l, d)
	web := netip.AddrPortFrom(l.VIP, lab.WebPort)
	rs1 := webAddr(l, l.Reals[0])
	xlb := func(args ...string) string {
		t.Helper()
		out, err := d.NS.Run(lab.Binary(t), append([]string{args[0], "--socket", d.Socket}, args[1:]...)...)
		if err != nil {
			t.Fatalf("xlb %v: %v: %s", args, err, out)
		}
		return out
	}
	if got := servers(t, l, web, 30); got["rs1"] == 0 {
		t.Fatalf("rs1 gets nothing before the override: %v", got)
	}

	out := xlb("set-weight", "web", rs1, "0")
	if !strings.Contains(out, "web "+rs1+": weight 0 (configured 1)") {
		t.Errorf("set-weight said %q", out)
	}
	nettest.WaitFor(t, 5*time.Second, "rs1 drained", func() error {
		if got := servers(t, l, web, 12); got["rs1"] > 0 {
			return fmt.Errorf("answers %v", got)
		}
		return nil
	})
	check := func(when string) {
		t.Helper()
		if got := servers(t, l, web, 30); got["rs1"] != 0 || got["rs2"] == 0 || got["rs3"] == 0 {
			t.Errorf("%s: answers %v, want none from rs1", when, got)
		}
		text, err := d.StatusText()
		if err != nil || !strings.Contains(text, rs1) || !strings.Contains(text, "0(1,set:0)") {
			t.Errorf("%s: xlb status (%v) does not show the override:\n%s", when, err, text)
		}
		m, err := d.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if v := metric(t, m, "xlb_backend_weight_override", `service="web"`, `backend="`+rs1+`"`); v != 0 {
			t.Errorf("%s: xlb_backend_weight_override %v", when, v)
		}
	}
	check("after set-weight")

	// A restart: the pinned dataplane is adopted and the override applied
	// from the first round; requests during the restart never reach rs1.
	load := l.StartLoad(20 * time.Millisecond)
	d.Stop()
	d.Start()
	waitHealth(t, d, "web", webAddr(l, l.Reals[1]), "up", 20*time.Second)
	waitRequests(t, load, time.Now(), 20)
	load.Stop()
	for _, r := range load.Results() {
		if r.Server == "rs1" {
			t.Errorf("a request reached rs1 during or after the restart (%v)", r.At)
		}
	}
	check("after a restart")

	out = xlb("reset-weight", "web", rs1)
	if !strings.Contains(out, "weight 1 as configured (override 0 removed)") {
		t.Errorf("reset-weight said %q", out)
	}
	nettest.WaitFor(t, 5*time.Second, "rs1 back", func() error {
		if got := servers(t, l, web, 12); got["rs1"] == 0 {
			return fmt.Errorf("answers %v", got)
		}
		return nil
	})
}

// TestVirtualServerGroupEndToEnd: a group of two ports is two services on
// the dataplane sharing their real servers and one check per real server:
// the check (on port 80) failing takes rs1 out of both, though it still
// serves them.
func TestVirtualServerGroupEndToEnd(t *testing.T) {
	l := lab.New(t, lab.Spec{Layout: lab.DR, Directors: 1, Scheduler: "rr", Extra: `
[[virtual_server_group]]
name = "alt"
entries = ["10.77.0.100:8080", "10.77.0.100:8081"]

[[virtual_server]]
name = "alt"
group = "alt"
scheduler = "rr"
forward = "dr"
[virtual_server.health_check]
type = "http"
port = 80
interval = "200ms"
timeout = "200ms"
fall = 2
rise = 2
[[virtual_server.real_server]]
address = "10.77.0.11"
[[virtual_server.real_server]]
address = "10.77.0.12"
`})
	logsOnFailure(t, l)
	for _, r := range l.Reals[:2] {
		r.ServeWeb(8080)
		r.ServeWeb(8081)
	}
	d := l.Directors[0]
	d.Start()
	entries := []string{"alt/10.77.0.100:8080", "alt/10.77.0.100:8081"}
	for _, e := range entries {
		waitHealth(t, d, e, "10.77.0.11:"+e[len(e)-4:], "up", 20*time.Second)
		waitHealth(t, d, e, "10.77.0.12:"+e[len(e)-4:], "up", 20*time.Second)
	}
	for _, port := range []uint16{8080, 8081} {
		if got := servers(t, l, netip.AddrPortFrom(l.VIP, port), 10); got["rs1"] != 5 || got["rs2"] != 5 {
			t.Errorf("port %d: answers %v, want rr over rs1 and rs2", port, got)
		}
	}
	l.Reals[0].StopWeb() // port 80 only: 8080 and 8081 still served
	for _, e := range entries {
		waitHealth(t, d, e, "10.77.0.11:"+e[len(e)-4:], "down", 10*time.Second)
	}
	for _, port := range []uint16{8080, 8081} {
		if got := servers(t, l, netip.AddrPortFrom(l.VIP, port), 10); got["rs1"] != 0 {
			t.Errorf("port %d: answers %v, want none from rs1 (its shared check failed)", port, got)
		}
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		s := service(st, e)
		if s == nil || len(s.Reals) != 2 {
			t.Fatalf("service %s: %+v", e, s)
		}
		if s.Reals[0].HealthError == "" || s.Reals[0].HealthError != service(st, entries[0]).Reals[0].HealthError {
			t.Errorf("%s: rs1's check error %q, want the one shared check's", e, s.Reals[0].HealthError)
		}
	}
}
