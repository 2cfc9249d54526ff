package vrrp

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Notify scripts: run off the protocol, in order per instance.

type notifyJob struct {
	instance string
	script   string
	args     []string
	timeout  time.Duration
}

func notifyJobs(in *instance, note string, prio uint8) []notifyJob {
	nc := in.cfg.Notify
	var script string
	switch note {
	case "MASTER":
		script = nc.Master
	case "BACKUP":
		script = nc.Backup
	case "FAULT", "SPLIT_BRAIN":
		script = nc.Fault
	case "STOP":
		script = nc.Stop
	}
	var jobs []notifyJob
	if script != "" {
		jobs = append(jobs, notifyJob{in.name(), script, nil, nc.Timeout})
	}
	if nc.Generic != "" && note != "SPLIT_BRAIN" {
		jobs = append(jobs, notifyJob{in.name(), nc.Generic, []string{"INSTANCE", in.name(), note, fmt.Sprint(prio)}, nc.Timeout})
	}
	return jobs
}

// notifier runs notify scripts in order per instance, off the protocol
// loop: enqueue never blocks.
type notifier struct {
	run Runner
	log *slog.Logger

	mu     sync.Mutex
	queues map[string][]notifyJob
	idle   *sync.Cond
	busy   int // instances with a running worker
}

func newNotifier(run Runner, log *slog.Logger) *notifier {
	nt := &notifier{run: run, log: log, queues: map[string][]notifyJob{}}
	nt.idle = sync.NewCond(&nt.mu)
	return nt
}

func (nt *notifier) enqueue(inst string, jobs ...notifyJob) {
	if len(jobs) == 0 {
		return
	}
	nt.mu.Lock()
	defer nt.mu.Unlock()
	q, running := nt.queues[inst]
	nt.queues[inst] = append(q, jobs...)
	if !running {
		nt.busy++
		go nt.work(inst)
	}
}

func (nt *notifier) work(inst string) {
	for {
		nt.mu.Lock()
		q := nt.queues[inst]
		if len(q) == 0 {
			delete(nt.queues, inst)
			nt.busy--
			nt.idle.Broadcast()
			nt.mu.Unlock()
			return
		}
		j := q[0]
		nt.queues[inst] = q[1:]
		nt.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
		err := nt.run.Run(ctx, j.script, j.args...)
		cancel()
		if err != nil {
			nt.log.Warn("vrrp: notify script failed", "instance", inst, "err", err)
		}
	}
}

// wait returns when no notify script runs or is queued, or ctx ends.
func (nt *notifier) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		nt.mu.Lock()
		for nt.busy > 0 {
			nt.idle.Wait()
		}
		nt.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
