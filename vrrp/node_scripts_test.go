package vrrp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// Node tests of the commands a node runs: notify scripts of instances and
// sync groups, real ones through ExecRunner, and the Runner it needs.

// TestNodeSyncGroupNotify: a sync group's scripts run once each time all
// its members reach a state (the specific one, then the generic one with
// keepalived's "GROUP" <name> <state>), and notify_stop when the node stops.
func TestNodeSyncGroupNotify(t *testing.T) {
	cfg := cfgOf(nodeInst("a", 100), nodeInst("b", 100, func(ic *InstanceConfig) {
		ic.Interface, ic.VRID = "eth1", 52
		ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.1.0.100/24")}}
	}))
	cfg.SyncGroups = []SyncGroupConfig{{Name: "g", Instances: []string{"a", "b"}, Notify: Notify{
		Master: "/bin/g-master", Backup: "/bin/g-backup", Fault: "/bin/g-fault", Stop: "/bin/g-stop", Generic: "/bin/g-notify"}}}
	r := startRig(t, cfg, 0)
	waitUntil(t, "group BACKUP", func() bool { return len(r.run.ran("/bin/g-")) == 2 })
	r.advanceUntil(Master)
	r.waitState("b", Master)
	waitUntil(t, "group MASTER", func() bool { return len(r.run.ran("/bin/g-")) == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"/bin/g-backup", "/bin/g-notify GROUP g BACKUP", "/bin/g-master", "/bin/g-notify GROUP g MASTER",
		"/bin/g-stop", "/bin/g-notify GROUP g STOP"}
	if got := r.run.ran("/bin/g-"); !slices.Equal(got, want) {
		t.Fatalf("group notify runs %q\nwant %q", got, want)
	}
}

// TestNodeNeedsRunner: vrrp runs no command by itself: a configuration
// with a track script or notify commands needs Options.Runner, at start
// and at a reload.
func TestNodeNeedsRunner(t *testing.T) {
	withNotify := func(ic *InstanceConfig) { ic.Notify.Master = "/bin/m" }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"track script", Config{Instances: []InstanceConfig{nodeInst("a", 100)}, Scripts: []ScriptConfig{{Name: "chk", Script: "/bin/true"}}}, `vrrp script "chk"`},
		{"instance notify", cfgOf(nodeInst("a", 100, withNotify)), `notify of vrrp instance "a"`},
		{"sync group notify", Config{Instances: []InstanceConfig{nodeInst("a", 100)},
			SyncGroups: []SyncGroupConfig{{Name: "g", Instances: []string{"a"}, Notify: Notify{Generic: "/bin/n"}}}}, `notify of vrrp sync group "g"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewNode(tc.cfg, Options{})
			if !errors.Is(err, ErrNoRunner) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewNode without a Runner: %v", err)
			}
			if _, err := NewNode(tc.cfg, Options{Runner: &fakeRunner{}}); err != nil {
				t.Fatalf("NewNode with a Runner: %v", err)
			}
		})
	}
	// Without commands no Runner is needed; a reload that brings some is
	// refused and changes nothing.
	r := startRigWith(t, cfgOf(nodeInst("a", 100)), func(o *Options) { o.Runner = nil })
	r.waitState("a", Backup)
	if err := r.node.Reconfigure(cfgOf(nodeInst("a", 100, withNotify))); !errors.Is(err, ErrNoRunner) {
		t.Fatalf("reload with notify and no Runner: %v", err)
	}
	r.advanceUntil(Master)
}

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestNodeNotifyScriptHangs: notify scripts (real ones, ExecRunner) run
// off the protocol: a takeover happens on time while the previous notify
// script still hangs, and the scripts of an instance keep their order.
func TestNodeNotifyScriptHangs(t *testing.T) {
	dir := t.TempDir()
	log, release := filepath.Join(dir, "log"), filepath.Join(dir, "release")
	backup := writeScript(t, dir, "backup", "echo backup-start >>"+log+"\n"+
		"while [ ! -e "+release+" ]; do sleep 0.01; done\necho backup-end >>"+log+"\n")
	master := writeScript(t, dir, "master", "echo master >>"+log+"\n")
	cfg := cfgOf(nodeInst("a", 100, func(ic *InstanceConfig) {
		ic.Notify = Notify{Backup: backup, Master: master, Timeout: time.Minute}
	}))
	r := startRigWith(t, cfg, func(o *Options) { o.Runner = ExecRunner{} })
	// Whatever happens, the script ends with the test (before the node's
	// shutdown, which waits for it).
	t.Cleanup(func() { _ = os.WriteFile(release, nil, 0o644) })
	if ev := r.nextEvent(); ev.To != Backup {
		t.Fatalf("first event %+v", ev)
	}
	waitUntil(t, "notify_backup running", func() bool { return readFile(log) == "backup-start\n" })
	// Master_Down_Interval 3.6s: the takeover is due while the script
	// hangs, and happens then.
	r.clock.Advance(3600 * time.Millisecond)
	ev := r.nextEvent()
	if ev.To != Master || ev.Reason != ReasonMasterDown || !ev.At.Equal(t0.Add(3600*time.Millisecond)) {
		t.Fatalf("takeover event %+v", ev)
	}
	waitUntil(t, "VIP and advert", func() bool { return r.net.hasAddr("10.0.0.100") && len(r.net.adverts()) > 0 })
	// The script still hangs (it ends only on release), so nothing above
	// waited for it; notify_master waits behind it.
	if got := readFile(log); got != "backup-start\n" {
		t.Fatalf("notify log %q before the release", got)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "notify_master after notify_backup", func() bool {
		return readFile(log) == "backup-start\nbackup-end\nmaster\n"
	})
}

// processGone reports whether pid has exited (a zombie counts: it is dead
// and waits for its reaper).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// TestNodeNotifyScriptTimeout: a notify script still running at the notify
// timeout is killed with its whole process group (ExecRunner), and the
// next notify script of the instance then runs.
func TestNodeNotifyScriptTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	shPID, bgPID := filepath.Join(dir, "sh.pid"), filepath.Join(dir, "bg.pid")
	backup := writeScript(t, dir, "backup", "sleep 600 &\necho $! >"+bgPID+".tmp && mv "+bgPID+".tmp "+bgPID+"\n"+
		"echo $$ >"+shPID+".tmp && mv "+shPID+".tmp "+shPID+"\nwait\necho backup-end >>"+log+"\n")
	master := writeScript(t, dir, "master", "echo master >>"+log+"\n")
	var logs nettest.SyncBuffer
	cfg := cfgOf(nodeInst("a", 100, func(ic *InstanceConfig) {
		ic.Notify = Notify{Backup: backup, Master: master, Timeout: timeout}
	}))
	start := time.Now()
	r := startRigWith(t, cfg, func(o *Options) {
		o.Runner = ExecRunner{}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	pids := map[string]int{}
	waitUntil(t, "notify_backup running", func() bool {
		for _, f := range []string{shPID, bgPID} {
			pid, err := strconv.Atoi(strings.TrimSpace(readFile(f)))
			if err != nil {
				return false
			}
			pids[f] = pid
		}
		return true
	})
	t.Cleanup(func() {
		for _, pid := range pids {
			if !processGone(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	// The takeover queues notify_master behind the hanging script.
	r.clock.Advance(3600 * time.Millisecond)
	r.waitState("a", Master)
	// Killed at the timeout (not the 10s default): the script and its
	// child, each of which would live 600s.
	deadline := time.Now().Add(timeout + 5*time.Second)
	for !processGone(pids[shPID]) || !processGone(pids[bgPID]) {
		if time.Now().After(deadline) {
			t.Fatalf("notify script (pid %d, child %d) still running %v after its start, timeout %v",
				pids[shPID], pids[bgPID], time.Since(start), timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if el := time.Since(start); el < timeout {
		t.Fatalf("killed %v after the node started, before the %v timeout", el, timeout)
	}
	waitUntil(t, "notify_master after the kill", func() bool { return readFile(log) == "master\n" })
	if !strings.Contains(logs.String(), "notify script failed") || !strings.Contains(logs.String(), context.DeadlineExceeded.Error()) {
		t.Fatalf("log:\n%s", logs.String())
	}
}
