package xdp

import (
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
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

// privatizeTables gives the inactive slot of every service whose two
// slots share a scheduling table of up to privateTableMax entries a copy
// of its own: its first change is then written in place there
// (fillTable), where a shared table needs a new map in the outer map,
// whose update waits for an RCU grace period in the Apply (one real
// server's port at 1,000 x 64: 11-17 ms instead of about 1). An install
// makes one table a service, shared (a second one each made the start of
// 1,000 services 50-70 ms longer); the copies are made here, after the
// grace period that follows it, off the Apply's path. The copies are made
// without the lock and put in with it, for the services that still share
// the table read; their outer map entries take one RCU grace period.
func (d *Dataplane) privatizeTables() {
	type shared struct {
		key   dataplane.ServiceKey
		st    *svcState
		table *ebpf.Map
		n     int
		copy  *ebpf.Map
	}
	if d.graceFailed || d.copiesFailed {
		// No table is rewritten in place (a copy would serve nothing), or
		// copies could not be made: each service's first change waits
		// for a grace period.
		return
	}
	var todo []shared
	d.mu.Lock()
	for k, st := range d.services {
		if t := st.tables[0]; t != nil && t == st.tables[1] && st.tableSum[0].n <= privateTableMax {
			todo = append(todo, shared{key: k, st: st, table: t, n: st.tableSum[0].n})
		}
	}
	d.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	ids := make([]uint32, privateTableMax)
	for i := range todo {
		n := todo[i].n
		// A shared table is never written in place: what is read is what
		// both slots hold, unless an Apply replaced it meanwhile (checked
		// below).
		err := readTable(todo[i].table, ids[:n])
		if err == nil {
			todo[i].copy, err = d.newTable(ids[:n])
		}
		if err != nil {
			// Once (out of file descriptors, of memory): not tried again.
			d.copiesFailed = true
			d.log.Warn("scheduling tables: no copies for the inactive slots; each service's first change will wait for an RCU grace period", "service", todo[i].key, "error", err)
			todo = todo[:i]
			break
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys, fds []uint32
	var put []shared
	for _, s := range todo {
		if s.copy == nil {
			continue
		}
		if st := s.st; d.services[s.key] != st || st.tables[0] != s.table || st.tables[1] != s.table {
			s.copy.Close() // changed since: the Apply made its own
			continue
		}
		keys = append(keys, s.st.id*2+(s.st.slot^1))
		fds = append(fds, uint32(s.copy.FD()))
		put = append(put, s)
	}
	if len(keys) == 0 {
		return
	}
	if err := putTable(d.objs.XlbTablesV1, keys, fds); err != nil {
		// The slots put in before the error hold copies equal to the
		// shared table; the services keep sharing it as far as they know,
		// so their first change replaces the copy, as it would have the
		// shared table.
		d.copiesFailed = true
		d.log.Warn("scheduling tables: copies for the inactive slots not put in; each service's first change will wait for an RCU grace period", "error", err)
		for _, s := range put {
			s.copy.Close()
		}
		return
	}
	// Counted, not reported to onWrite: the tests' hook records what an
	// Apply writes, in the Apply's goroutine.
	d.updates.Add(uint64(len(keys)))
	for _, s := range put {
		s.st.tables[s.st.slot^1] = s.copy
	}
}
