package control

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
)

// A second daemon on the control socket of a running one is refused before
// it touches its dataplane (nothing applied, nothing detached), with the
// holder named; the socket's lock file holds the first one's pid.
func TestSecondDaemonRefusedBeforeDataplane(t *testing.T) {
	r := startDaemon(t, func(sock string) string { return daemonConfig(sock, "", 1, "") }, nil)
	waitChanges(t, r.dp, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")
	if b, err := os.ReadFile(r.sock + ".lock"); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file %s.lock: %q (%v), want our pid %d", r.sock, b, err, os.Getpid())
	}

	path := filepath.Join(t.TempDir(), "copy.toml")
	writeFile(t, path, daemonConfig(r.sock, "", 2, ""))
	dp := dataplanetest.NewFake()
	d, err := NewDaemon(DaemonOptions{ConfigPath: path, Env: fakeEnv{}, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "another xlb is running") || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second daemon: %v, want refused naming pid %d", err, os.Getpid())
	}
	if ch := dp.Changes(); len(ch) != 0 || dp.Detached() {
		t.Errorf("the refused daemon touched its dataplane: changes %v, detached %v", ch, dp.Detached())
	}
	if _, err := Call(r.sock, Request{Command: "status"}); err != nil {
		t.Errorf("the first daemon's socket: %v", err)
	}

	// Once the first has stopped, the socket is free again.
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	dp2 := dataplanetest.NewFake()
	d2, err := NewDaemon(DaemonOptions{ConfigPath: path, Env: fakeEnv{}, Dataplane: dp2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d2.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the daemon started after the first stopped: %v", err)
		}
	}()
	waitChanges(t, dp2, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")
}

// pinnedFake is a fake dataplane that counts pin checks.
type pinnedFake struct {
	*dataplanetest.Fake
	checks atomic.Int32
}

func (p *pinnedFake) CheckPins() error {
	p.checks.Add(1)
	return nil
}

// A reload (good or bad) has the dataplane check its pins.
func TestReloadChecksPins(t *testing.T) {
	dp := &pinnedFake{Fake: dataplanetest.NewFake()}
	r := startDaemonWrapped(t, dp, dp.Fake, func(sock string) string { return daemonConfig(sock, "", 1, "") }, nil)
	path, sock := r.path, r.sock
	if n := dp.checks.Load(); n != 0 {
		t.Fatalf("%d pin checks before any reload", n)
	}
	if _, err := Call(sock, Request{Command: "reload"}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "bogus = 1\n")
	if _, err := Call(sock, Request{Command: "reload"}); err == nil {
		t.Fatal("a bad reload succeeded")
	}
	if n := dp.checks.Load(); n != 2 {
		t.Errorf("%d pin checks after two reloads, want 2", n)
	}
}
