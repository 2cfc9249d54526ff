package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane/xdp"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// runRefused runs `xlb run --config cfg` in d's namespace next to its
// running daemon and returns its output and exit status. A daemon that is
// still running after 20 s was not refused: it is killed and the test fails.
func runRefused(t *testing.T, d *lab.Director, cfg string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := d.NS.Command(lab.Binary(t), "run", "--config", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("a second xlb run --config %s was still running after 20 s: not refused; its output:\n%s", cfg, out.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("second xlb run: %v", err)
	return "", 0
}

// holderRE finds the holder a refusal names.
var holderRE = regexp.MustCompile(`locked by pid (\d+) \(([^)]*)\)`)

// checkRefusal checks that a refused daemon's output names the running
// one (its pid runs `xlb run --config` with d's configuration) and that it
// did not open a dataplane.
func checkRefusal(t *testing.T, d *lab.Director, what, out string) {
	t.Helper()
	m := holderRE.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("%s: the refusal names no holder:\n%s", what, out)
		return
	}
	pid, _ := strconv.Atoi(m[1])
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(m[2], "run --config "+d.ConfigPath) || !bytes.Contains(cmdline, []byte(d.ConfigPath)) {
		t.Errorf("%s: holder pid %d (%s) is not %s's daemon (its command line: %q)", what, pid, m[2], d.Name, cmdline)
	}
	if strings.Contains(out, "dataplane ready") {
		t.Errorf("%s: the refused daemon opened a dataplane first:\n%s", what, out)
	}
}

// copyConfig is d's configuration with its own control socket and metrics
// port, and only real server keep in its services: had it taken over,
// every request would go to keep.
func copyConfig(t *testing.T, l *lab.Lab, d *lab.Director, keep *lab.Real) string {
	t.Helper()
	cfg := d.DefaultConfig()
	cfg = strings.Replace(cfg, fmt.Sprintf("socket = %q", d.Socket), fmt.Sprintf("socket = %q", filepath.Join(l.Dir, "copy.sock")), 1)
	cfg = strings.Replace(cfg, `listen = "127.0.0.1:9477"`, `listen = "127.0.0.1:9478"`, 1)
	for _, r := range l.Reals {
		if r == keep {
			continue
		}
		for _, port := range []int{lab.WebPort, lab.EchoPort} {
			block := fmt.Sprintf("\n[[virtual_server.real_server]]\naddress = %q\nport = %d\nweight = 1\n", r.Addr, port)
			if !strings.Contains(cfg, block) {
				t.Fatalf("no real server block %q in:\n%s", block, cfg)
			}
			cfg = strings.Replace(cfg, block, "", 1)
		}
	}
	path := filepath.Join(l.Dir, "copy.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSecondDaemonRefused: a second `xlb run` on the pin path of a running
// daemon, of the same configuration file or of a copy with its own control
// socket and metrics port, exits with status 1 naming the running daemon,
// before it loads or attaches anything: the running daemon's program stays
// in the link, its maps stay pinned and its real servers keep taking the
// requests. The running daemon's restart still works.
func TestSecondDaemonRefused(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr"})
	logsOnFailure(t, l)
	d := l.Directors[0]
	d.Start()
	waitAllUp(t, l, d)
	objs, progs := pinned(t, d)
	attached, err := d.XDPProgram("eth0")
	if err != nil || attached == 0 {
		t.Fatalf("no XDP program on eth0: %v", err)
	}
	load := l.StartLoad(20 * time.Millisecond)
	waitRequests(t, load, time.Time{}, 20)

	tried := time.Now()
	for _, c := range []struct{ what, cfg string }{
		{"the same configuration", d.ConfigPath},
		{"a copy with its own socket and metrics port", copyConfig(t, l, d, l.Reals[1])},
	} {
		out, code := runRefused(t, d, c.cfg)
		t.Logf("second daemon, %s: exit status %d:\n%s", c.what, code, strings.TrimSpace(out))
		if code != 1 {
			t.Errorf("second daemon, %s: exit status %d, want 1", c.what, code)
		}
		checkRefusal(t, d, c.what, out)
	}
	if got, err := d.XDPProgram("eth0"); err != nil || got != attached {
		t.Errorf("XDP program on eth0 is %d (%v) after the refused daemons, was %d", got, err, attached)
	}
	objs2, progs2 := pinned(t, d)
	if !maps.Equal(objs, objs2) || !maps.Equal(progs, progs2) {
		t.Errorf("pins after the refused daemons: %v (programs %v), before %v (programs %v)", objs2, progs2, objs, progs)
	}
	waitRequests(t, load, tried, 60)
	after := load.Report(tried)
	t.Logf("requests since the refused daemons: %s", after)
	if after.Failed != 0 || after.ByServer["rs1"] == 0 || after.ByServer["rs2"] == 0 {
		t.Errorf("requests since the refused daemons: %s; want every one served, by both real servers", after)
	}
	if st, err := d.Status(); err != nil || st.Reloads.OK != 0 || len(service(st, "web").Reals) != 2 {
		t.Errorf("status of the running daemon: %v", err)
	}

	// The running daemon restarts as before: it adopts its pins.
	killed := time.Now()
	d.Kill()
	d.Start()
	waitRequests(t, load, time.Now(), 30)
	load.Stop()
	restart := load.Report(killed)
	t.Logf("restart of the running daemon: %s", restart)
	if restart.Failed != 0 {
		t.Errorf("restart: %s", restart)
	}
	if objs3, _ := pinned(t, d); !maps.Equal(objs, objs3) {
		t.Errorf("pins after the restart %v, before %v: not adopted", objs3, objs)
	}
}

// pinsRestored reads the count of pins restored from `xlb status --json`
// and /metrics.
func pinsRestored(t *testing.T, d *lab.Director) (status, metrics float64) {
	t.Helper()
	js, err := d.StatusText("--json")
	if err != nil {
		t.Fatalf("xlb status --json: %v", err)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("xlb status --json: %v", err)
	}
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return float64(st.Events[xdp.EventPinsRestored]), metric(t, m, "xlb_events_total", `event="`+xdp.EventPinsRestored+`"`)
}

// waitPinned waits until d's pin path holds exactly the objects want and
// returns how long it took.
func waitPinned(t *testing.T, d *lab.Director, want map[string]uint32, since time.Time) time.Duration {
	t.Helper()
	nettest.WaitFor(t, 10*time.Second, "pins restored", func() error {
		if got, _ := pinned(t, d); !maps.Equal(got, want) {
			return fmt.Errorf("pinned %v, want %v", got, want)
		}
		return nil
	})
	return time.Since(since)
}

// TestPinsRemovedUnderDaemon: the pins of a running daemon are removed
// (rm -r PIN/*, then the directory itself, then one map before a reload):
// each time the daemon pins its own maps and links again within its check
// period, logs it and counts it (status --json events, xlb_events_total);
// the pin path stays locked; then a restart adopts them: no request fails,
// no connection breaks.
func TestPinsRemovedUnderDaemon(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 3, Scheduler: "mh"})
	logsOnFailure(t, l)
	d := l.Directors[0]
	d.Start()
	waitAllUp(t, l, d)
	objs, _ := pinned(t, d)
	tr := startTraffic(t, l)
	bound := xdp.DefaultPinCheck + 2*time.Second // the check period, and a loaded machine

	// rm -r PIN/*
	removed := time.Now()
	for _, name := range d.Pins() {
		if err := os.Remove(filepath.Join(d.PinPath, name)); err != nil {
			t.Fatal(err)
		}
	}
	took := waitPinned(t, d, objs, removed)
	t.Logf("%d pinned maps and links removed: pinned again after %v", len(objs), took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("pins restored after %v, want within the check period (%v)", took, xdp.DefaultPinCheck)
	}
	want := float64(len(objs))
	if st, m := pinsRestored(t, d); st != want || m != want {
		t.Errorf("pins restored: status --json says %v, xlb_events_total %v; want %v", st, m, want)
	}
	if log, _ := os.ReadFile(d.LogPath); !bytes.Contains(log, []byte("pinned ours again")) {
		t.Error("the restoration is not logged")
	}

	// rm -r PIN: made again, and locked again (a copy is still refused).
	removed = time.Now()
	if err := os.RemoveAll(d.PinPath); err != nil {
		t.Fatal(err)
	}
	took = waitPinned(t, d, objs, removed)
	t.Logf("pin directory removed: pinned again after %v", took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("pins restored after %v, want within the check period (%v)", took, xdp.DefaultPinCheck)
	}
	out, code := runRefused(t, d, copyConfig(t, l, d, l.Reals[1]))
	if code != 1 {
		t.Errorf("a copy on the pin path made again: exit status %d, want 1:\n%s", code, out)
	}
	checkRefusal(t, d, "a copy on the pin path made again", out)

	// One map, then a reload: it is pinned again by the time the reload
	// answers.
	if err := os.Remove(filepath.Join(d.PinPath, "xlb_svc_ids_v1")); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got, _ := pinned(t, d); !maps.Equal(got, objs) {
		t.Errorf("after the reload: pinned %v, want %v", got, objs)
	}
	want = float64(2*len(objs) + 1)
	if st, m := pinsRestored(t, d); st != want || m != want {
		t.Errorf("pins restored: status --json says %v, xlb_events_total %v; want %v", st, m, want)
	}

	// The restart adopts what was pinned again: forwarding goes on.
	killed := time.Now()
	d.Kill()
	d.Start()
	restarted := time.Since(killed)
	waitProgress(t, tr.streams, time.Now(), nil)
	waitRequests(t, tr.load, killed.Add(restarted), 50)
	o := tr.stop(t)
	t.Logf("restart in %v after the pins were restored: %s", restarted.Round(time.Millisecond), tr.load.Report(killed))
	checkStreams(t, o, nil)
	if o.Failed != 0 {
		t.Errorf("%d requests failed: %s", o.Failed, o.LoadReport)
	}
	if got, _ := pinned(t, d); !maps.Equal(got, objs) {
		t.Errorf("after the restart: pinned %v, want the same objects %v (adopted)", got, objs)
	}
}
