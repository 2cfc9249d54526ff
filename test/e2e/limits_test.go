package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// TestLimitsRefused: 1102 virtual servers, more than the XDP dataplane
// holds. `xlb check` says so (for mode = "auto" too, whose XDP is tried
// first), and `xlb reload` is refused with the same message before
// anything is applied: the running configuration keeps serving, unchanged.
func TestLimitsRefused(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 1, Scheduler: "rr"})
	d := l.Directors[0]
	d.Start()
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	nettest.WaitFor(t, 20*time.Second, "a request through the VIP", func() error {
		_, err := l.Get(time.Second)
		return err
	})
	before, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}

	cfg := d.DefaultConfig()
	over := cfg + dataplanetest.VirtualServers(1102-strings.Count(cfg, "[[virtual_server]]"), 0)
	auto := filepath.Join(l.Dir, "auto.toml")
	if err := os.WriteFile(auto, []byte(strings.Replace(over, `mode = "xdp"`, `mode = "auto"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := d.NS.Run(lab.Binary(t), "check", "--config", auto)
	if want := auto + `: 1102 virtual servers, the XDP dataplane (tried first with mode = "auto") holds at most 1024` + "\n"; err == nil || out != want {
		t.Errorf("xlb check (auto): %v\n%q\nwant %q", err, out, want)
	}

	d.WriteConfig(over)
	out, err = d.NS.Run(lab.Binary(t), "check", "--config", d.ConfigPath)
	want := d.ConfigPath + ": 1102 virtual servers, the XDP dataplane holds at most 1024"
	if err == nil || out != want+"\n" {
		t.Errorf("xlb check: %v\n%q\nwant %q", err, out, want+"\n")
	}
	start := time.Now()
	err = d.Reload()
	if err == nil || !strings.Contains(err.Error(), "xlb reload: "+want) {
		t.Fatalf("xlb reload: %v, want refused with %q", err, want)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refused reload took %v", took)
	}
	after, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Services) != len(before.Services) || after.Reloads.Failed != 1 || after.Reloads.LastError != want || after.Dataplane.Error != "" {
		t.Errorf("after the refused reload: %d services (before %d), reloads %+v, dataplane error %q",
			len(after.Services), len(before.Services), after.Reloads, after.Dataplane.Error)
	}
	if _, err := l.Get(2 * time.Second); err != nil {
		t.Errorf("the running configuration stopped serving after a refused reload: %v", err)
	}
}
