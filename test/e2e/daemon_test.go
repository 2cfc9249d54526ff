// Package e2e runs xlb end to end in network namespaces (see test/lab):
// real daemons, real TCP clients and servers.
package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

func service(st *control.Status, name string) *control.ServiceInfo {
	for i := range st.Services {
		if st.Services[i].Name == name {
			return &st.Services[i]
		}
	}
	return nil
}

func realInfo(s *control.ServiceInfo, addr string) *control.RealInfo {
	for i := range s.Reals {
		if s.Reals[i].Address == addr {
			return &s.Reals[i]
		}
	}
	return nil
}

// waitHealth waits until a real server's health is want ("up", "down")
// and the dataplane has the weight that goes with it (0 when down).
func waitHealth(t testing.TB, d *lab.Director, service_, addr, want string, timeout time.Duration) {
	t.Helper()
	nettest.WaitFor(t, timeout, fmt.Sprintf("%s %s %s", service_, addr, want), func() error {
		st, err := d.Status()
		if err != nil {
			return err
		}
		s := service(st, service_)
		if s == nil {
			return fmt.Errorf("no service %s", service_)
		}
		r := realInfo(s, addr)
		switch {
		case r == nil:
			return fmt.Errorf("no real server %s", addr)
		case r.Health != want:
			return fmt.Errorf("%s is %s", addr, r.Health)
		case (want == "down") != (r.Effective == 0):
			return fmt.Errorf("%s is %s but its installed weight is %d", addr, r.Health, r.Effective)
		}
		return nil
	})
}

// metric returns the value of a sample of the Prometheus text exposition.
func metric(t *testing.T, text, name string, labels ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	t.Fatalf("no metric %s%v in:\n%s", name, labels, text)
	return 0
}

// TestDaemonEndToEnd: xlb run in a director namespace (DR), two real
// servers with the VIP on lo, a client making real HTTP requests: the
// replies come in the scheduler's order; counters, status and metrics
// agree with the requests; bpftool reads the pinned maps; a real server
// whose HTTP server dies is taken out within fall x interval and comes back.
func TestDaemonEndToEnd(t *testing.T) {
	const interval, fall = 200 * time.Millisecond, 2
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr", CheckInterval: interval, Fall: fall, Rise: 2})
	d := l.Directors[0]
	d.Start()
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	rs1, rs2 := l.Reals[0].Addr.String()+":80", l.Reals[1].Addr.String()+":80"
	waitHealth(t, d, "web", rs1, "up", 20*time.Second)
	waitHealth(t, d, "web", rs2, "up", 20*time.Second)

	// rr: the answers alternate.
	const n = 10
	var got []string
	for range n {
		s, err := l.Get(2 * time.Second)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		got = append(got, s)
	}
	for i := 1; i < n; i++ {
		if got[i] == got[i-1] {
			t.Fatalf("answers %v do not alternate (rr)", got)
		}
	}

	// Status and metrics count what was sent (health checks go to the real
	// servers' own addresses, not through the VIP).
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	web := service(st, "web")
	if web.Counters.Connections != n || web.Reals[0].Counters.Connections != n/2 || web.Reals[1].Counters.Connections != n/2 {
		t.Errorf("connections: service %d, real servers %d and %d; want %d, %d, %d",
			web.Counters.Connections, web.Reals[0].Counters.Connections, web.Reals[1].Counters.Connections, n, n/2, n/2)
	}
	if sum := web.Reals[0].Counters.PacketsIn + web.Reals[1].Counters.PacketsIn; sum != web.Counters.PacketsIn || sum < 3*n {
		t.Errorf("packets: service %d, sum of real servers %d (at least 3 per request expected)", web.Counters.PacketsIn, sum)
	}
	text, _ := d.StatusText()
	t.Logf("xlb status:\n%s", text)
	stats, _ := d.StatusText("--stats")
	t.Logf("xlb status --stats:\n%s", stats)

	// The clients' last ACKs may still be on their way: status and metrics
	// agree once the counters stop moving.
	var m string
	nettest.WaitFor(t, 10*time.Second, "status and metrics agree on packets", func() error {
		var err error
		if m, err = d.Metrics(); err != nil {
			return err
		}
		if st, err = d.Status(); err != nil {
			return err
		}
		web = service(st, "web")
		if v := metric(t, m, "xlb_service_packets_total", `service="web"`, `direction="in"`); v != float64(web.Counters.PacketsIn) {
			return fmt.Errorf("xlb_service_packets_total %v, status says %d", v, web.Counters.PacketsIn)
		}
		return nil
	})
	if v := metric(t, m, "xlb_service_connections_total", `service="web"`); v != n {
		t.Errorf("xlb_service_connections_total %v, want %d", v, n)
	}
	if v := metric(t, m, "xlb_backend_connections_total", `service="web"`, `backend="`+rs1+`"`); v != n/2 {
		t.Errorf("xlb_backend_connections_total %s = %v, want %d", rs1, v, n/2)
	}
	metric(t, m, "xlb_dataplane_info", `attach="native"`, `mode="xdp"`)
	if v := metric(t, m, "xlb_backend_up", `backend="`+rs2+`"`); v != 1 {
		t.Errorf("xlb_backend_up %s = %v", rs2, v)
	}
	if v := metric(t, m, "xlb_packets_total", `verdict="tx"`); v < float64(web.Counters.PacketsIn) {
		t.Errorf("xlb_packets_total{verdict=tx} %v < %d", v, web.Counters.PacketsIn)
	}
	var excerpt []string
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "xlb_") && strings.Contains(line, "web") {
			excerpt = append(excerpt, line)
		}
	}
	t.Logf("/metrics excerpt:\n%s", strings.Join(excerpt, "\n"))

	// Operators read the pinned maps with bpftool.
	out, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", filepath.Join(d.PinPath, "xlb_svc_ids_v1")).CombinedOutput()
	var dump []map[string]any
	if err != nil || json.Unmarshal(out, &dump) != nil || len(dump) != 2 || !strings.Contains(string(out), `"port"`) {
		t.Errorf("bpftool dump of xlb_svc_ids_v1: %v: %s", err, out)
	}

	// rs2's HTTP server dies: after fall x interval (plus a check in flight
	// and the jitter) no request fails any more.
	load := l.StartLoad(20 * time.Millisecond)
	waitRequests(t, load, time.Time{}, 15) // traffic before the failure, for the report
	killed := time.Now()
	l.Reals[1].StopWeb()
	waitHealth(t, d, "web", rs2, "down", 10*time.Second)
	detected := time.Since(killed)
	waitRequests(t, load, killed.Add(detected), 50)
	load.Stop()
	r := load.Report(time.Time{})
	t.Logf("real server killed: detected after %v; %s", detected.Round(time.Millisecond), r)
	bound := time.Duration(fall+1)*interval + 500*time.Millisecond // fall checks, one in flight, jitter and reconcile
	if detected > bound+2*time.Second {
		t.Errorf("detection took %v, want about fall x interval (%v)", detected, time.Duration(fall)*interval)
	}
	if r.Failed > 0 && r.LastFail.Sub(killed) > bound+time.Second {
		t.Errorf("requests still failed %v after the kill (bound %v)", r.LastFail.Sub(killed), bound)
	}
	after := load.Report(killed.Add(detected))
	if after.Failed != 0 || after.ByServer["rs2"] != 0 {
		t.Errorf("after the real server was taken out: %s", after)
	}

	// It comes back and gets traffic again.
	l.Reals[1].StartWeb()
	waitHealth(t, d, "web", rs2, "up", 10*time.Second)
	seen := map[string]bool{}
	for range 4 {
		s, err := l.Get(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[s] = true
	}
	if !seen["rs2"] {
		t.Errorf("rs2 back up but got no request: %v", seen)
	}
}

// TestDaemonReload: a reload applies only what changed; a bad one keeps
// the old configuration serving and is counted.
func TestDaemonReload(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "wrr"})
	d := l.Directors[0]
	d.Start()
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	rs1 := l.Reals[0].Addr.String() + ":80"
	waitHealth(t, d, "web", rs1, "up", 20*time.Second)
	streams := l.StartStreams(4, 20*time.Millisecond)

	good := strings.Replace(d.DefaultConfig(), "weight = 1", "weight = 3", 1)
	d.WriteConfig(good)
	if err := d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	st, _ := d.Status()
	if w := service(st, "web").Reals[0].Weight; w != 3 {
		t.Errorf("weight after reload %d, want 3", w)
	}
	if h := service(st, "web").Reals[0].Health; h != "up" {
		t.Errorf("reload reset the health of an unchanged check: %s", h)
	}

	d.WriteConfig(good + "\n[[virtual_server]]\nname = \"bad\"\naddress = \"10.77.0.100\"\nport = 99999\n")
	err := d.Reload()
	if err == nil || !regexp.MustCompile(`\.toml:\d+: `).MatchString(err.Error()) {
		t.Fatalf("bad reload error %v, want FILE:LINE", err)
	}
	if _, err := l.Get(2 * time.Second); err != nil {
		t.Fatalf("old configuration stopped serving after a bad reload: %v", err)
	}
	m, _ := d.Metrics()
	if metric(t, m, "xlb_config_reloads_total", `result="error"`) != 1 || metric(t, m, "xlb_config_reloads_total", `result="ok"`) != 1 {
		t.Errorf("reload counters wrong")
	}
	streams.Stop()
	if started, broken, rounds, errs := streams.Report(); broken != 0 {
		t.Errorf("%d of %d long-lived connections broke across reloads (%d rounds): %v", broken, started, rounds, errs)
	}
}

// TestDaemonPinPathWithoutBPFFS: inside `ip netns exec` (/sys remounted,
// no bpffs) the daemon mounts one for its default-style pin path and runs.
func TestDaemonPinPathWithoutBPFFS(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 1, Scheduler: "rr"})
	d := l.Directors[0]
	pin := "/sys/fs/bpf/" + nettest.UniqueName("xlbt-")
	d.WriteConfig(strings.Replace(d.DefaultConfig(), fmt.Sprintf("pin_path = %q", d.PinPath), fmt.Sprintf("pin_path = %q", pin), 1))
	d.Start()
	nettest.WaitFor(t, 20*time.Second, "a request through the VIP", func() error {
		_, err := l.Get(time.Second)
		return err
	})
	out, _ := os.ReadFile(d.LogPath)
	if !strings.Contains(string(out), "mounted a bpffs") {
		t.Errorf("no mount logged:\n%s", out)
	}
	// --json and --rate work against the running daemon.
	js, err := d.StatusText("--json")
	var st control.Status
	if err != nil || json.Unmarshal([]byte(js), &st) != nil || st.Dataplane.Mode != "xdp" {
		t.Errorf("xlb status --json: %v\n%s", err, js)
	}
	if rate, err := d.StatusText("--rate"); err != nil || !strings.Contains(rate, "CPS") {
		t.Errorf("xlb status --rate: %v\n%s", err, rate)
	}
}

// TestDaemonIPv6DR: an IPv6 VIP in direct routing, through the daemon.
func TestDaemonIPv6DR(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr", IPv6: true})
	d := l.Directors[0]
	// As VRRP adds it: deprecated, never a source address.
	d.NS.MustRun(t, "ip", "-6", "addr", "add", l.VIP6.String()+"/64", "dev", "eth0", "nodad", "preferred_lft", "0")
	d.Start()
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	vip := netip.AddrPortFrom(l.VIP6, lab.WebPort)
	nettest.WaitFor(t, 20*time.Second, "a request to the IPv6 VIP", func() error {
		_, err := l.GetFrom(vip, time.Second)
		return err
	})
	// rr spreads only over the real servers whose checks have passed: one
	// whose first check met an unresolved neighbour (its first solicitation
	// lost) is down until its next check.
	for _, r := range l.Reals {
		waitHealth(t, d, "web6", netip.AddrPortFrom(r.Addr6, lab.WebPort).String(), "up", 20*time.Second)
	}
	seen := map[string]int{}
	for range 6 {
		s, err := l.GetFrom(vip, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[s]++
	}
	if seen["rs1"] != 3 || seen["rs2"] != 3 {
		t.Errorf("IPv6 rr answers %v, want 3 each", seen)
	}
	st, _ := d.Status()
	if s := service(st, "web6"); s == nil || s.Counters.Connections < 6 {
		t.Errorf("web6 status %+v", s)
	}
}
