package xdp

import (
	"golang.org/x/sys/unix"
)

// A service's scheduling table is double-buffered: a change writes the
// inactive slot's configuration and table, then flips the slot. A new
// table put in the outer map (xlb_tables_v1) costs an RCU grace period
// (maybe_wait_bpf_programs in kernel/bpf/syscall.c: 10-50 ms on a busy
// host, the most of an Apply that changes one real server). Instead, the
// inactive slot's own table is rewritten in place when it has the length
// wanted and no program can still read it: when an RCU grace period has
// passed since the flip that made it inactive (XDP programs run inside
// rcu_read_lock). That grace period is waited for here, after the Apply,
// off its path: membarrier's MEMBARRIER_CMD_GLOBAL is synchronize_rcu()
// (kernel/sched/membarrier.c). Without it (nohz_full CPUs refuse the
// command), tables are never rewritten in place.

// membarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL (include/uapi/linux/membarrier.h).
const membarrierCmdGlobal = 1

// graceSince reports whether a grace period has passed since st's last
// flip.
func (d *Dataplane) graceSince(st *svcState) bool {
	return st.flipGen <= d.graceGen.Load()
}

// flipped records that an Apply wrote (or may have written) the slots of
// the services it touched, and asks for a grace period. Called with d.mu
// held, after the Apply's writes.
func (d *Dataplane) flipped(touched []*svcState) {
	if len(touched) == 0 {
		return
	}
	gen := d.flipGen.Add(1)
	for _, st := range touched {
		st.flipGen = gen
	}
	d.kickGrace()
}

func (d *Dataplane) kickGrace() {
	select {
	case d.graceKick <- struct{}{}:
	default:
	}
}

// waitGrace waits for a grace period and records the flips it covers: the
// ones made before it started.
func (d *Dataplane) waitGrace() {
	gen := d.flipGen.Load()
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		if !d.graceFailed {
			d.graceFailed = true
			d.log.Debug("membarrier: scheduling tables are replaced, not rewritten in place", "error", errno)
		}
		return
	}
	d.graceGen.Store(gen)
}
