package vrrp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/vrrp"
)

// nodeEnv holds the JSON vrrp.Config of a test node: the test binary,
// started with it set, runs a vrrp.Node with the real drivers instead of
// the tests (see startXLB). SIGTERM stops it gracefully; SIGUSR1 prints
// its status.
const nodeEnv = "XLB_VRRP_TEST_NODE"

// profileEnv, when set, makes a test node write a CPU profile there.
const profileEnv = "XLB_VRRP_TEST_CPUPROFILE"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(nodeEnv); cfg != "" {
		os.Exit(runTestNode(cfg))
	}
	os.Exit(m.Run())
}

// nodeLine is one line a test node writes on stdout.
type nodeLine struct {
	Kind     string                `json:"kind"` // "ready", "event", "status"
	Event    *vrrp.Event           `json:"event,omitempty"`
	Status   []vrrp.InstanceStatus `json:"status,omitempty"`
	Dropped  uint64                `json:"dropped,omitempty"`
	PID      int                   `json:"pid,omitempty"`
	UnixNano int64                 `json:"unix_nano,omitempty"`
}

func runTestNode(cfgJSON string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var cfg vrrp.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		log.Error("bad test node config", "err", err)
		return 2
	}
	if path := os.Getenv(profileEnv); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	node, err := vrrp.NewNode(cfg, vrrp.Options{Logger: log, EventBuffer: 1024, Runner: vrrp.ExecRunner{}})
	if err != nil {
		log.Error("new node", "err", err)
		return 2
	}
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	write := func(l nodeLine) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(l)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			write(nodeLine{Kind: "status", Status: node.Status(), Dropped: node.EventsDropped()})
		}
	}()
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		for ev := range node.Events() {
			write(nodeLine{Kind: "event", Event: &ev})
		}
	}()
	write(nodeLine{Kind: "ready", PID: os.Getpid(), UnixNano: time.Now().UnixNano()})
	err = node.Run(ctx)
	<-evDone
	write(nodeLine{Kind: "status", Status: node.Status()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "vrrp node:", err)
		return 1
	}
	return 0
}
