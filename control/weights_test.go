package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
	"github.com/xlb-dev/xlb/test/nettest"
)

// An operator's override is an input of Desired: it replaces the
// configured weight, and the weight a check sets, while the real server
// is healthy, counts in the quorum, and applies to every entry of a group.
func TestDesiredOverrides(t *testing.T) {
	key := func(a string) dataplane.ServiceKey {
		return dataplane.ServiceKey{Addr: netip.MustParseAddr(a), Port: 80, Proto: dataplane.TCP}
	}
	r1, r2 := real("10.0.1.1", 80, 5), real("10.0.1.2", 80, 1)
	entry := func(a string) ServiceSpec {
		return ServiceSpec{Name: "g/" + a + ":80", Server: "g", Group: "G", Key: key(a), Scheduler: dataplane.WeightedRoundRobin,
			Forward: dataplane.NAT, Quorum: 2, Reals: []RealSpec{r1, r2}}
	}
	m := Model{Services: []ServiceSpec{entry("10.0.0.3"), entry("10.0.0.4")}}
	k1, k2 := m.Services[0].checkKey(r1), m.Services[0].checkKey(r2)
	if k1 != m.Services[1].checkKey(r1) || k1 != "g/10.0.1.1:80" {
		t.Fatalf("the entries of a group do not share the check: %q %q", k1, m.Services[1].checkKey(r1))
	}
	ov := func(w uint32) map[OverrideKey]uint32 { return map[OverrideKey]uint32{{"g", r1.Key()}: w} }
	for _, step := range []struct {
		name      string
		health    health.State
		weight    health.Weight
		overrides map[OverrideKey]uint32
		w1        uint32
		up        bool
	}{
		{"configured", health.StateUp, health.Weight{}, nil, 5, true},
		{"drained by the operator", health.StateUp, health.Weight{}, ov(0), 0, false}, // 0+1 < quorum 2
		{"raised", health.StateUp, health.Weight{}, ov(7), 7, true},
		{"over the check's weight", health.StateUp, health.Weight{Mode: health.WeightSet, Value: 3}, ov(9), 9, true},
		{"down stays down", health.StateDown, health.Weight{}, ov(7), 0, false},
		{"another server's override", health.StateUp, health.Weight{}, map[OverrideKey]uint32{{"other", r1.Key()}: 0}, 5, true},
	} {
		in := Inputs{Model: m, Health: map[string]health.State{k1: step.health, k2: health.StateUp},
			Weights: map[string]health.Weight{k1: step.weight}, Overrides: step.overrides}
		svcs, states := Desired(in)
		for i, svc := range svcs {
			if w, up := svc.Backends[0].Weight, states[svc.Key].Up; w != step.w1 || up != step.up || svc.Backends[1].Weight != 1 {
				t.Errorf("%s: entry %d: weights %d %d, up %v; want %d 1, %v", step.name, i, w, svc.Backends[1].Weight, up, step.w1, step.up)
			}
		}
	}
}

// overrideConfig is web on a fake dataplane: 10.0.0.7 and 10.0.0.8 at
// weight w8, with extra appended.
func overrideConfig(sock string, w8 int, extra string) string {
	return fmt.Sprintf(`[dataplane]
interfaces = ["eth0"]
[metrics]
listen = ""
[control]
socket = %q

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
scheduler = "wrr"
forward = "nat"
[virtual_server.health_check]
type = "none"
[[virtual_server.real_server]]
address = "10.0.0.7"
port = 8080
[[virtual_server.real_server]]
address = "10.0.0.7"
port = 8081
[[virtual_server.real_server]]
address = "10.0.0.8"
port = 8080
weight = %d
%s`, sock, w8, extra)
}

// startIn runs a daemon on dp with the configuration file and socket in
// dir (the same for a restart).
func startIn(t *testing.T, dir string, dp *dataplanetest.Fake, cfgText func(sock string) string) *runningDaemon {
	t.Helper()
	r := &runningDaemon{dp: dp, path: filepath.Join(dir, "xlb.toml"), sock: filepath.Join(dir, "xlb.sock"), done: make(chan error, 1)}
	writeFile(t, r.path, cfgText(r.sock))
	d, err := NewDaemon(DaemonOptions{ConfigPath: r.path, Env: fakeEnv{}, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	nettest.WaitFor(t, 10*time.Second, "the daemon's control socket", func() error {
		_, err := Call(r.sock, Request{Command: "status"})
		return err
	})
	return r
}

// installedWeights are the weights installed for web, by backend.
func installedWeights(dp *dataplanetest.Fake) string {
	var out []string
	for _, s := range dp.Installed() {
		for _, b := range s.Backends {
			out = append(out, fmt.Sprintf("%s=%d", b.Key(), b.Weight))
		}
	}
	return strings.Join(out, " ")
}

func waitWeights(t *testing.T, dp *dataplanetest.Fake, want string) {
	t.Helper()
	nettest.WaitFor(t, 10*time.Second, "weights "+want, func() error {
		if got := installedWeights(dp); got != want {
			return fmt.Errorf("installed %s", got)
		}
		return nil
	})
}

// xlb set-weight through the control socket: the override reaches the
// dataplane, the status (text and JSON) and the metrics, is kept in the
// state file across a restart of the daemon (applied from its first
// round: the real server never gets its configured weight back in
// between), survives a reload that leaves its real server alone, and goes
// with reset-weight or with a configuration that changes the real server.
func TestDaemonSetWeight(t *testing.T) {
	dir := t.TempDir()
	metrics := freeLoopbackPort(t)
	cfg := func(w8 int) func(string) string {
		return func(sock string) string {
			return strings.Replace(overrideConfig(sock, w8, ""), `listen = ""`, fmt.Sprintf("listen = %q", metrics), 1)
		}
	}
	r := startIn(t, dir, dataplanetest.NewFake(), cfg(1))
	waitWeights(t, r.dp, "10.0.0.7:8080=1 10.0.0.7:8081=1 10.0.0.8:8080=1")

	// Refusals say why.
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Command: "set-weight", Service: "nope", Real: "10.0.0.7:8080", Weight: 0}, `no virtual server "nope" (virtual servers: web)`},
		{Request{Command: "set-weight", Service: "web", Real: "10.0.0.9", Weight: 0}, `virtual server "web" has no real server 10.0.0.9`},
		{Request{Command: "set-weight", Service: "web", Real: "10.0.0.7", Weight: 0}, `10.0.0.7 is 10.0.0.7:8080 and 10.0.0.7:8081 in virtual server "web": give the port`},
		{Request{Command: "set-weight", Service: "web", Real: "10.0.0.8", Weight: 65536}, `weight 65536 is out of range (0..65535)`},
		{Request{Command: "set-weight", Service: "web", Real: "bogus", Weight: 1}, `"bogus" is not ADDR or ADDR:PORT`},
	} {
		if _, err := Call(r.sock, tc.req); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: %v, want %q", tc.req, err, tc.want)
		}
	}

	resp, err := Call(r.sock, Request{Command: "set-weight", Service: "web", Real: "10.0.0.8", Weight: 0})
	if err != nil || !strings.Contains(resp.Message, "web 10.0.0.8:8080: weight 0 (configured 1)") {
		t.Fatalf("set-weight: %v %+v", err, resp)
	}
	if _, err := Call(r.sock, Request{Command: "set-weight", Service: "web", Real: "10.0.0.7:8081", Weight: 4}); err != nil {
		t.Fatal(err)
	}
	waitWeights(t, r.dp, "10.0.0.7:8080=1 10.0.0.7:8081=4 10.0.0.8:8080=0")
	var text strings.Builder
	if err := FormatStatus(&text, r.d.Status(false), FormatConns); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`-> 10\.0\.0\.8:8080 +Masq +0\(1,set:0\) +up`, `-> 10\.0\.0\.7:8081 +Masq +4\(1,set:4\) +up`, `-> 10\.0\.0\.7:8080 +Masq +1 +up`} {
		if !regexp.MustCompile(want).MatchString(text.String()) {
			t.Errorf("status lacks %q:\n%s", want, text.String())
		}
	}
	js, _ := json.Marshal(r.d.Status(false))
	if !strings.Contains(string(js), `"address":"10.0.0.8:8080","weight":1,"weight_override":0,"effective_weight":0`) {
		t.Errorf("status JSON: %s", js)
	}
	body := scrape(t, metrics)
	for _, want := range []string{
		`xlb_backend_weight_override{backend="10.0.0.8:8080",service="web"} 0`,
		`xlb_backend_weight_override{backend="10.0.0.7:8081",service="web"} 4`,
		`xlb_weight_override_changes_total{change="set"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `xlb_backend_weight_override{backend="10.0.0.7:8080"`) {
		t.Errorf("an override metric for a real server without one")
	}
	state := filepath.Join(dir, "xlb.sock.weights")
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file %s: %v %v", state, fi, err)
	}

	// A restart keeps them, from the first round.
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	dp := dataplanetest.NewFake()
	r = startIn(t, dir, dp, cfg(1))
	waitChanges(t, dp, "create tcp/10.0.0.3:80")
	waitWeights(t, dp, "10.0.0.7:8080=1 10.0.0.7:8081=4 10.0.0.8:8080=0")
	if c := dp.Changes(); len(c) > 0 {
		t.Errorf("after the restart the overrides came late: %v after the create", c)
	}

	// A reload that changes another real server keeps them; one that
	// changes 10.0.0.8's weight drops its override, not the other.
	writeFile(t, r.path, strings.Replace(cfg(1)(r.sock), "port = 8081\n", "port = 8081\nweight = 1\n", 1))
	if _, err := Call(r.sock, Request{Command: "reload"}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, r.path, cfg(2)(r.sock))
	if _, err := Call(r.sock, Request{Command: "reload"}); err != nil {
		t.Fatal(err)
	}
	waitWeights(t, dp, "10.0.0.7:8080=1 10.0.0.7:8081=4 10.0.0.8:8080=2")

	// reset-weight: back to the configured weight; the file goes with the
	// last override.
	if resp, err := Call(r.sock, Request{Command: "reset-weight", Service: "web", Real: "10.0.0.7:8081"}); err != nil ||
		resp.Message != "web 10.0.0.7:8081: weight 1 as configured (override 4 removed)" {
		t.Fatalf("reset-weight: %v %+v", err, resp)
	}
	waitWeights(t, dp, "10.0.0.7:8080=1 10.0.0.7:8081=1 10.0.0.8:8080=2")
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file after the last reset: %v", err)
	}
	if resp, err := Call(r.sock, Request{Command: "reset-weight", Service: "web", Real: "10.0.0.7:8081"}); err != nil ||
		resp.Message != "web 10.0.0.7:8081: no weight override (weight 1 as configured)" {
		t.Errorf("second reset-weight: %v %+v", err, resp)
	}
	body = scrape(t, metrics)
	for _, want := range []string{`xlb_weight_override_changes_total{change="dropped"} 1`, `xlb_weight_override_changes_total{change="reset"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A state file whose real server's configuration changed while the
// daemon was down is dropped at start; a broken one is ignored.
func TestOverridesAtStart(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "xlb.sock")
	write := func(ovs ...Override) {
		data, _ := json.Marshal(stateFile{Version: 1, Overrides: ovs})
		writeFile(t, sock+".weights", string(data))
	}
	write(Override{Service: "web", Real: "10.0.0.8:8080", Weight: 0, Configured: 1},
		Override{Service: "web", Real: "10.0.0.7:8081", Weight: 3, Configured: 1})
	r := startIn(t, dir, dataplanetest.NewFake(), func(sock string) string { return overrideConfig(sock, 5, "") })
	waitWeights(t, r.dp, "10.0.0.7:8080=1 10.0.0.7:8081=3 10.0.0.8:8080=5")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	writeFile(t, sock+".weights", "{not json")
	r = startIn(t, dir, dataplanetest.NewFake(), func(sock string) string { return overrideConfig(sock, 5, "") })
	waitWeights(t, r.dp, "10.0.0.7:8080=1 10.0.0.7:8081=1 10.0.0.8:8080=5")
}

// A virtual server with a group: one service per entry on the dataplane,
// one check per real server (shared), the override of the virtual server
// on every entry.
func TestDaemonGroup(t *testing.T) {
	r := startDaemon(t, func(sock string) string {
		return fmt.Sprintf(`[dataplane]
interfaces = ["eth0"]
[metrics]
listen = ""
[control]
socket = %q
[[virtual_server_group]]
name = "G"
entries = ["10.0.0.3:80", "10.0.0.4-5:8080"]
[[virtual_server]]
name = "web"
group = "G"
forward = "dr"
[virtual_server.health_check]
type = "tcp"
port = 1
interval = "1h"
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
`, sock)
	}, nil)
	if got := CheckSpecs(r.d.model); len(got) != 2 {
		t.Errorf("checks %v, want one per real server", got)
	}
	if _, err := Call(r.sock, Request{Command: "set-weight", Service: "web", Real: "10.0.0.8", Weight: 9}); err != nil {
		t.Fatal(err)
	}
	st := r.d.Status(false)
	var got []string
	for _, s := range st.Services {
		var rs []string
		for _, x := range s.Reals {
			ov := "-"
			if x.Override != nil {
				ov = fmt.Sprint(*x.Override)
			}
			rs = append(rs, x.Address+" "+x.Health+" "+ov)
		}
		got = append(got, s.Name+" "+s.Address+": "+strings.Join(rs, ", "))
	}
	want := []string{
		"web/10.0.0.3:80 10.0.0.3:80: 10.0.0.7:80 unknown -, 10.0.0.8:80 unknown 9",
		"web/10.0.0.4:8080 10.0.0.4:8080: 10.0.0.7:8080 unknown -, 10.0.0.8:8080 unknown 9",
		"web/10.0.0.5:8080 10.0.0.5:8080: 10.0.0.7:8080 unknown -, 10.0.0.8:8080 unknown 9",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("status:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	nettest.WaitFor(t, 10*time.Second, "three services installed", func() error {
		if n := len(r.dp.Installed()); n != 3 {
			return fmt.Errorf("%d installed", n)
		}
		return nil
	})
}

// The entries of a group share one quorum: its commands run, and its
// change is reported (OnQuorum), once per change.
func TestGroupQuorumOnce(t *testing.T) {
	var ran, reported []string
	hs := &fakeHealth{}
	r := NewReconciler(dataplanetest.NewFake(), ReconcilerOptions{Health: hs.states,
		RunScript: func(c string) { ran = append(ran, c) },
		OnQuorum: func(s ServiceSpec, st ServiceState) {
			reported = append(reported, fmt.Sprintf("%s %v", s.server(), st.Up))
		}})
	rs := real("10.0.1.1", 80, 1)
	var m Model
	for _, a := range []string{"10.0.0.3", "10.0.0.4", "10.0.0.5"} {
		m.Services = append(m.Services, ServiceSpec{Name: "g/" + a + ":80", Server: "g", Group: "G",
			Key:       dataplane.ServiceKey{Addr: netip.MustParseAddr(a), Port: 80, Proto: dataplane.TCP},
			Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Quorum: 1, QuorumUp: "up.sh", QuorumDown: "down.sh",
			Reals: []RealSpec{rs}})
	}
	r.SetModel(m)
	for _, st := range []health.State{health.StateDown, health.StateUp, health.StateDown} {
		hs.set(m.Services[0].checkKey(rs), st)
		reconcile(t, r)
	}
	if strings.Join(ran, " ") != "up.sh down.sh" || strings.Join(reported, ", ") != "g true, g false" {
		t.Errorf("ran %v, reported %v: want each once", ran, reported)
	}
}
