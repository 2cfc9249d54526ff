package vrrp

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Notify scripts: run off the protocol, in order per instance and per
// sync group.

// notifyJob is one run of a notify script for an instance or a group.
type notifyJob struct {
	queue   notifyQueue
	script  string
	args    []string
	timeout time.Duration
}

// notifyQueue names whose scripts a job runs: those of an instance or
// those of a sync group run in order, each queue apart.
type notifyQueue struct {
	kind string // "instance" or "group"
	name string
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
	q := notifyQueue{"instance", in.name()}
	var jobs []notifyJob
	if script != "" {
		jobs = append(jobs, notifyJob{q, script, nil, nc.Timeout})
	}
	if nc.Generic != "" && note != "SPLIT_BRAIN" {
		jobs = append(jobs, notifyJob{q, nc.Generic, []string{"INSTANCE", in.name(), note, fmt.Sprint(prio)}, nc.Timeout})
	}
	return jobs
}

// groupNotifyJobs are the scripts of sync group g for its new state note
// (MASTER, BACKUP, FAULT or STOP): the specific one, then the generic one
// with "GROUP" <name> <state> (keepalived's send_group_notifies).
func groupNotifyJobs(g SyncGroupConfig, note string) []notifyJob {
	nc := g.Notify
	var script string
	switch note {
	case "MASTER":
		script = nc.Master
	case "BACKUP":
		script = nc.Backup
	case "FAULT":
		script = nc.Fault
	case "STOP":
		script = nc.Stop
	}
	q := notifyQueue{"group", g.Name}
	var jobs []notifyJob
	if script != "" {
		jobs = append(jobs, notifyJob{q, script, nil, nc.Timeout})
	}
	if nc.Generic != "" {
		jobs = append(jobs, notifyJob{q, nc.Generic, []string{"GROUP", g.Name, note}, nc.Timeout})
	}
	return jobs
}

// notifier runs notify scripts in order per queue (an instance, a sync
// group), off the protocol loop: enqueue never blocks.
type notifier struct {
	run Runner
	log *slog.Logger

	mu     sync.Mutex
	queues map[notifyQueue][]notifyJob
	idle   *sync.Cond
	busy   int // queues with a running worker
}

func newNotifier(run Runner, log *slog.Logger) *notifier {
	nt := &notifier{run: run, log: log, queues: map[notifyQueue][]notifyJob{}}
	nt.idle = sync.NewCond(&nt.mu)
	return nt
}

func (nt *notifier) enqueue(jobs ...notifyJob) {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	for _, j := range jobs {
		q, running := nt.queues[j.queue]
		nt.queues[j.queue] = append(q, j)
		if !running {
			nt.busy++
			go nt.work(j.queue)
		}
	}
}

func (nt *notifier) work(queue notifyQueue) {
	for {
		nt.mu.Lock()
		q := nt.queues[queue]
		if len(q) == 0 {
			delete(nt.queues, queue)
			nt.busy--
			nt.idle.Broadcast()
			nt.mu.Unlock()
			return
		}
		j := q[0]
		nt.queues[queue] = q[1:]
		nt.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
		err := nt.run.Run(ctx, j.script, j.args...)
		cancel()
		if err != nil {
			nt.log.Warn("vrrp: notify script failed", queue.kind, queue.name, "err", err)
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
