package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
	"github.com/xlb-dev/xlb/test/nettest"
)

// fakeEnv says eth0 holds 10.0.0.0/24 (the DR real servers' subnet).
type fakeEnv struct{}

func (fakeEnv) InterfaceSubnets(name string) ([]netip.Prefix, error) {
	if name == "eth0" {
		return []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, nil
	}
	return nil, fmt.Errorf("%s: %w", name, config.ErrUnknownInterface)
}

// daemonConfig is a two-service configuration on eth0; web's second real
// server has the given weight, and extra is appended verbatim.
func daemonConfig(sock, metrics string, weight int, extra string) string {
	return fmt.Sprintf(`[dataplane]
interfaces = ["eth0"]
%s
[metrics]
listen = %q
[control]
socket = %q

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
scheduler = "wrr"
[virtual_server.health_check]
type = "none"
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
weight = %d

[[virtual_server]]
name = "api"
address = "10.0.0.3"
port = 443
[virtual_server.health_check]
type = "none"
[[virtual_server.real_server]]
address = "10.0.0.9"
`, extra, metrics, sock, weight)
}

// freeLoopbackPort returns a TCP address on loopback that was free a moment ago.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type runningDaemon struct {
	d      *Daemon
	dp     *dataplanetest.Fake
	path   string // configuration file
	sock   string
	cancel context.CancelFunc
	done   chan error
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDaemon runs a daemon on a fake dataplane. early, when set, is
// called after NewDaemon and before Run (a SIGHUP during start-up).
func startDaemon(t *testing.T, cfgText func(sock string) string, early func(d *Daemon)) *runningDaemon {
	t.Helper()
	return startDaemonOn(t, dataplanetest.NewFake(), cfgText, early)
}

// startDaemonOn is startDaemon on dp.
func startDaemonOn(t testing.TB, dp *dataplanetest.Fake, cfgText func(sock string) string, early func(d *Daemon)) *runningDaemon {
	t.Helper()
	return startDaemonWrapped(t, dp, dp, cfgText, early)
}

// startDaemonWrapped is startDaemon on run, a dataplane that wraps fake
// (to count or hook some of its calls).
func startDaemonWrapped(t testing.TB, run dataplane.Dataplane, fake *dataplanetest.Fake, cfgText func(sock string) string, early func(d *Daemon)) *runningDaemon {
	t.Helper()
	dir := t.TempDir()
	r := &runningDaemon{dp: fake, path: filepath.Join(dir, "xlb.toml"), sock: filepath.Join(dir, "xlb.sock"), done: make(chan error, 1)}
	writeFile(t, r.path, cfgText(r.sock))
	d, err := NewDaemon(DaemonOptions{ConfigPath: r.path, Env: fakeEnv{}, Dataplane: run})
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	if early != nil {
		early(d)
	}
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

// stop cancels the daemon and returns what Run returned.
func (r *runningDaemon) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s")
		return nil
	}
}

// waitChanges waits until the fake dataplane has applied want (in order),
// and nothing else.
func waitChanges(t *testing.T, dp *dataplanetest.Fake, want ...string) {
	t.Helper()
	var got []string
	nettest.WaitFor(t, 10*time.Second, fmt.Sprintf("changes %v", want), func() error {
		got = append(got, dp.Changes()...)
		if len(got) < len(want) {
			return fmt.Errorf("changes so far %v", got)
		}
		return nil
	})
	if !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
}

// A reload applies only what changed; a bad one keeps the old
// configuration serving, counted and reported with FILE:LINE; SIGTERM
// detaches the dataplane.
func TestDaemonReloadOnFake(t *testing.T) {
	metrics := freeLoopbackPort(t)
	r := startDaemon(t, func(sock string) string { return daemonConfig(sock, metrics, 1, "") }, nil)
	waitChanges(t, r.dp, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")

	if fi, err := os.Stat(r.sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("control socket %v (%v), want a socket with mode 0600", fi.Mode(), err)
	}

	// A weight change updates web and leaves api alone.
	writeFile(t, r.path, daemonConfig(r.sock, metrics, 3, ""))
	if _, err := Call(r.sock, Request{Command: "reload"}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitChanges(t, r.dp, "update tcp/10.0.0.3:80")
	for _, s := range r.dp.Installed() {
		if s.Key.Port == 80 && (len(s.Backends) != 2 || s.Backends[1].Weight != 3) {
			t.Errorf("web installed as %+v, want 10.0.0.8 at weight 3", s.Backends)
		}
	}

	// A bad file: the error names the file and line, nothing changes.
	bad := daemonConfig(r.sock, metrics, 5, "") + "bogus = 1\n"
	writeFile(t, r.path, bad)
	line := strings.Count(bad, "\n")
	_, err := Call(r.sock, Request{Command: "reload"})
	if want := fmt.Sprintf("%s:%d:", r.path, line); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("bad reload: %v, want an error at %s", err, want)
	}
	resp, err := Call(r.sock, Request{Command: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if rs := resp.Status.Reloads; rs.OK != 1 || rs.Failed != 1 || !strings.Contains(rs.LastError, "bogus") {
		t.Errorf("reloads %+v, want 1 ok and 1 failed naming the key", rs)
	}
	if got := r.dp.Changes(); len(got) != 0 {
		t.Errorf("a bad reload changed the dataplane: %v", got)
	}
	body := scrape(t, metrics)
	for _, want := range []string{`xlb_config_reloads_total{result="error"} 1`, `xlb_config_reloads_total{result="ok"} 1`,
		`xlb_backend_weight{backend="10.0.0.8:80",service="web"} 3`, `xlb_dataplane_info{attach="",mode="fake"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !r.dp.Detached() || !r.dp.Closed() {
		t.Errorf("after shutdown: detached %v, closed %v; want both", r.dp.Detached(), r.dp.Closed())
	}
	if _, err := os.Stat(r.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
	if err := r.d.Reload(); err == nil {
		t.Error("a reload after the daemon stopped succeeded")
	}
}

// keep_forwarding_on_exit leaves the dataplane installed at shutdown.
func TestDaemonKeepForwardingOnExit(t *testing.T) {
	r := startDaemon(t, func(sock string) string {
		return daemonConfig(sock, "", 1, "keep_forwarding_on_exit = true")
	}, nil)
	waitChanges(t, r.dp, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")
	if err := r.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.dp.Detached() || !r.dp.Closed() || len(r.dp.Installed()) != 2 {
		t.Errorf("after shutdown: detached %v, closed %v, %d services; want closed only, both services installed",
			r.dp.Detached(), r.dp.Closed(), len(r.dp.Installed()))
	}
}

// A SIGHUP that arrives while the daemon starts waits for it, instead of
// reaching half-built components.
func TestDaemonReloadDuringStart(t *testing.T) {
	reloaded := make(chan error, 1)
	r := startDaemon(t, func(sock string) string { return daemonConfig(sock, "", 1, "") }, func(d *Daemon) {
		go func() { reloaded <- d.Reload() }()
	})
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("reload during start: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reload sent during start never completed")
	}
	waitChanges(t, r.dp, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")
	resp, err := Call(r.sock, Request{Command: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Reloads.OK != 1 {
		t.Errorf("reloads %+v, want 1 ok", resp.Status.Reloads)
	}

	// A daemon that fails to start refuses reloads instead of hanging.
	dir := t.TempDir()
	path := filepath.Join(dir, "xlb.toml")
	writeFile(t, path, daemonConfig(r.sock, "", 1, "")) // r's socket: taken
	d, err := NewDaemon(DaemonOptions{ConfigPath: path, Env: fakeEnv{}, Dataplane: dataplanetest.NewFake()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "another xlb is running") {
		t.Fatalf("second daemon on the same socket: %v", err)
	}
	if err := d.Reload(); err == nil {
		t.Error("reload of a daemon that failed to start succeeded")
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A reload over the limits of the dataplane in use is refused before
// anything is applied, naming the limit, the count and the maximum:
// nothing changes, the previous configuration keeps serving. A start over
// them is refused before the first Apply.
func TestDaemonReloadOverLimits(t *testing.T) {
	limits := dataplane.Limits{Dataplane: "the fake dataplane", Services: 1024, BackendsPerService: 256}
	dp := dataplanetest.NewFake()
	dp.Limits = limits
	r := startDaemonOn(t, dp, func(sock string) string { return daemonConfig(sock, "", 1, "") }, nil)
	waitChanges(t, r.dp, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")
	installed := dumpServices(r.dp.Installed())
	// Web's second real server at weight 2: what a reload would change.
	base := daemonConfig(r.sock, "", 2, "")
	big := base + dataplanetest.VirtualServers(0, 257)
	for i, tc := range []struct{ cfg, want string }{
		{base + dataplanetest.VirtualServers(1023, 0), r.path + ": 1025 virtual servers, the fake dataplane holds at most 1024"},
		{big, fmt.Sprintf("%s:%d: virtual server \"big\": 257 real servers, the fake dataplane holds at most 256 per virtual server",
			r.path, dataplanetest.BigLine(big))},
	} {
		writeFile(t, r.path, tc.cfg)
		if _, err := Call(r.sock, Request{Command: "reload"}); err == nil || err.Error() != tc.want {
			t.Fatalf("reload: %v\nwant %s", err, tc.want)
		}
		resp, err := Call(r.sock, Request{Command: "status"})
		if err != nil {
			t.Fatal(err)
		}
		st := resp.Status
		if rs := st.Reloads; rs.OK != 0 || rs.Failed != uint64(i+1) || rs.LastError != tc.want {
			t.Errorf("reloads %+v, want %d failed with the limit", rs, i+1)
		}
		if len(st.Services) != 2 || st.Services[0].Reals[1].Weight != 1 {
			t.Errorf("status after a refused reload: %+v, want the previous configuration", st.Services)
		}
	}
	if got := dumpServices(r.dp.Installed()); got != installed {
		t.Errorf("installed after the refused reloads:\n%s\nwant, as before:\n%s", got, installed)
	}
	// The same file within the limits: its one change is the only one
	// applied since the start.
	writeFile(t, r.path, base)
	if _, err := Call(r.sock, Request{Command: "reload"}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitChanges(t, r.dp, "update tcp/10.0.0.3:80")

	// A start over the limits: refused, nothing applied.
	dir := t.TempDir()
	path := filepath.Join(dir, "xlb.toml")
	writeFile(t, path, daemonConfig(filepath.Join(dir, "xlb.sock"), "", 1, "")+dataplanetest.VirtualServers(1023, 0))
	dp2 := dataplanetest.NewFake()
	dp2.Limits = limits
	d, err := NewDaemon(DaemonOptions{ConfigPath: path, Env: fakeEnv{}, Dataplane: dp2})
	if err != nil {
		t.Fatal(err)
	}
	// Refused at once; otherwise it would run until the deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := d.Run(ctx); err == nil || err.Error() != path+": 1025 virtual servers, the fake dataplane holds at most 1024" {
		t.Fatalf("start over the limits: %v", err)
	}
	if dp2.Applies() != 0 || !dp2.Closed() {
		t.Errorf("the refused start applied %d times, closed %v; want none, closed", dp2.Applies(), dp2.Closed())
	}
}
