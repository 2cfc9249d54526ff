package control

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
)

// Some tests run the test binary again as a child process, to give it
// resources of its own (a network namespace):
// with one of these variables set it serves instead of running the tests.
const (
	// daemonChildEnv holds a configuration the child runs a Daemon with,
	// on a fake dataplane.
	daemonChildEnv = "XLB_CONTROL_TEST_DAEMON"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(daemonChildEnv); path != "" {
		os.Exit(runDaemonChild(path))
	}
	os.Exit(m.Run())
}

func runDaemonChild(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := NewDaemon(DaemonOptions{ConfigPath: path, Logger: log, Dataplane: dataplane.NewFake()})
	if err != nil {
		log.Error("new daemon", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := d.Run(ctx); err != nil {
		log.Error("run", "error", err)
		return 1
	}
	return 0
}
