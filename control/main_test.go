package control

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
)

// Some tests run the test binary again as a child process, to give it
// resources of its own (a file descriptor limit, a network namespace):
// with one of these variables set it serves instead of running the tests.
const (
	// socketChildEnv holds the path of a control socket that the child
	// serves with a descriptor limit barely above what it has open; the
	// child's stderr says when an accept fails.
	socketChildEnv = "XLB_CONTROL_TEST_SOCKET"
	// daemonChildEnv holds a configuration the child runs a Daemon with,
	// on a fake dataplane.
	daemonChildEnv = "XLB_CONTROL_TEST_DAEMON"
)

// childSpareFDs is how many descriptors the socket child can open beyond
// those it has once listening.
const childSpareFDs = 3

func TestMain(m *testing.M) {
	if path := os.Getenv(socketChildEnv); path != "" {
		os.Exit(runSocketChild(path))
	}
	if path := os.Getenv(daemonChildEnv); path != "" {
		os.Exit(runDaemonChild(path))
	}
	os.Exit(m.Run())
}

// childHandler answers status with a fixed version.
type childHandler struct{}

func (childHandler) Status(bool) *Status { return &Status{Version: "child"} }
func (childHandler) Reload() error       { return nil }

func runSocketChild(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Idle clients hold their connection as long as the test wants.
	s, err := ListenSocket(path, childHandler{}, SocketOptions{Logger: log, RequestTimeout: 10 * time.Minute})
	if err != nil {
		log.Error("listen", "error", err)
		return 1
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		log.Error("count descriptors", "error", err)
		return 1
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Error("getrlimit", "error", err)
		return 1
	}
	// len(fds) counts the descriptor ReadDir used, closed since.
	lim.Cur = uint64(len(fds) - 1 + childSpareFDs)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Error("setrlimit", "error", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "descriptor limit %d\n", lim.Cur)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := s.Serve(ctx); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}

func runDaemonChild(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := NewDaemon(DaemonOptions{ConfigPath: path, Logger: log, Dataplane: dataplanetest.NewFake()})
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
