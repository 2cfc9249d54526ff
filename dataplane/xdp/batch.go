package xdp

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"
)

// An Apply writes its map updates step by step, and each step's updates of
// one map in one BPF_MAP_UPDATE_BATCH (or DELETE_BATCH): installing a
// thousand services of 64 real servers takes tens of syscalls instead of a
// quarter of a million, and the outer map of scheduling tables, each of
// whose updates waits for an RCU grace period (maybe_wait_bpf_programs in
// kernel/bpf/syscall.c), is written once per step instead of once per
// service. The steps keep the order a single service's update needs (its
// backends, then its table and configuration in the inactive slot, then
// the flip, then the final backend flags), for all services at once.

// queue holds the updates of one map for one step.
type queue[K, V any] struct {
	m    *ebpf.Map
	name string
	keys []K
	vals []V
	dels []K
}

func newQueue[K, V any](m *ebpf.Map, name string) *queue[K, V] {
	return &queue[K, V]{m: m, name: name}
}

func (q *queue[K, V]) put(k K, v V) {
	q.keys = append(q.keys, k)
	q.vals = append(q.vals, v)
}

// reserve makes room for n more updates at once, instead of the arrays
// append grows (and discards) on the way.
func (q *queue[K, V]) reserve(n int) {
	q.keys, q.vals = slices.Grow(q.keys, n), slices.Grow(q.vals, n)
}

func (q *queue[K, V]) del(k K) { q.dels = append(q.dels, k) }

// reset empties q, keeping its arrays when small (keepRoom).
func (q *queue[K, V]) reset() {
	q.keys, q.vals, q.dels = keepRoom(q.keys), keepRoom(q.vals), keepRoom(q.dels)
}

// writesKeep is the largest array a queue keeps from one Apply to the
// next: an Apply of a few services (a storm of health-check changes
// brings one every few milliseconds) reuses them, where it made each
// queue's anew (the candidate lists alone are 2 KB a service: at the
// start of 64,000 checks, 128 of the 660 MB allocated); an Apply of
// hundreds of services leaves its own to the collector. 64 KiB keeps 32
// candidate lists: TestApplyStormGarbage, 20 services an Apply, 8.9 -> 5.1
// KB of garbage a service update.
const writesKeep = 64 << 10

// keepRoom is s emptied, nil when its array is over writesKeep bytes.
func keepRoom[S ~[]E, E any](s S) S {
	var e E
	if uintptr(cap(s))*unsafe.Sizeof(e) > writesKeep {
		return nil
	}
	return s[:0]
}

func (q *queue[K, V]) len() int { return len(q.keys) + len(q.dels) }

// flush writes the queued updates, then the deletions (a missing key is
// not an error), and counts them; apply empties the queue after (reset).
func (q *queue[K, V]) flush(d *Dataplane) error {
	if n := len(q.keys); n > 0 {
		d.wrote(q.name, q.keys)
		if _, err := q.m.BatchUpdate(q.keys, q.vals, nil); err != nil {
			if !errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("write %s: %w", q.name, err)
			}
			// Kernels without batch operations for this map type.
			for i := range q.keys {
				if err := q.m.Put(q.keys[i], q.vals[i]); err != nil {
					return fmt.Errorf("write %s: %w", q.name, err)
				}
			}
		}
	}
	if len(q.dels) > 0 {
		d.wrote(q.name, q.dels)
		// A batch deletion stops at the first missing key: one by one.
		for i := range q.dels {
			if err := q.m.Delete(q.dels[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete from %s: %w", q.name, err)
			}
		}
	}
	return nil
}

// zeroQueue zeroes entries of a per-CPU map of bpfXlbStats.
type zeroQueue struct {
	m    *ebpf.Map
	name string
	keys []uint32
}

func (q *zeroQueue) put(k uint32) { q.keys = append(q.keys, k) }

func (q *zeroQueue) reset() { q.keys = keepRoom(q.keys) }

// zeroStats marshals as a zero bpfXlbStats without reflection (the
// library encodes a per-CPU value element by element).
type zeroStats struct{}

var zeroStatsBytes [unsafe.Sizeof(bpfXlbStats{})]byte

func (zeroStats) MarshalBinary() ([]byte, error) { return zeroStatsBytes[:], nil }

func (q *zeroQueue) flush(d *Dataplane) error {
	n := len(q.keys)
	if n == 0 {
		return nil
	}
	d.wrote(q.name, q.keys)
	ncpu := ebpf.MustPossibleCPU()
	if _, err := q.m.BatchUpdate(q.keys, make([]zeroStats, n*ncpu), nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("reset %s: %w", q.name, err)
		}
		zero := make([]bpfXlbStats, ncpu)
		for _, k := range q.keys {
			if err := q.m.Put(k, zero); err != nil {
				return fmt.Errorf("reset %s: %w", q.name, err)
			}
		}
	}
	return nil
}

// writes are the queues of one Apply, flushed in this order.
type writes struct {
	// Removed services: gone from the lookup first.
	svcIDsDel *queue[bpfXlbSvcKey, uint32]
	// New ids: counters and load zeroed before anything refers to them.
	svcStat *zeroQueue
	svcRR   *queue[uint32, uint64]
	beStat  *beStatQueue
	beAct   *queue[uint32, int64]
	// and their connection counts and thresholds.
	beConns  *queue[uint32, bpfXlbBeConns]
	beThresh *queue[uint32, bpfXlbBeThresh]
	// Phase 1: the backends of the new sets (keeping SCHED until the flip),
	// and those of removed services retired.
	backends1 *queue[uint32, bpfXlbBackend]
	// Phase 2: round-robin positions of changed schedulers, tables and
	// configurations into the inactive slots, the flips, new services'
	// lookup entries.
	rr     *queue[uint32, uint64]
	tables *queue[uint32, uint32] // values: inner map fds
	cands  *queue[uint32, bpfXlbCands]
	svc    *queue[uint32, bpfXlbSvc]
	slots  *queue[uint32, uint32]
	svcIDs *queue[bpfXlbSvcKey, uint32]
	// Phase 3: final backend flags; real servers no longer configured
	// retire.
	backends3 *queue[uint32, bpfXlbBackend]
	// Stateless NAT replies.
	nat *queue[bpfXlbSvcKey, bpfXlbNatReal]
}

func (d *Dataplane) newWrites() *writes {
	o := &d.objs
	return &writes{
		svcIDsDel: newQueue[bpfXlbSvcKey, uint32](o.XlbSvcIdsV1, "xlb_svc_ids_v1"),
		svcStat:   &zeroQueue{m: o.XlbSvcStatV1, name: "xlb_svc_stat_v1"},
		svcRR:     newQueue[uint32, uint64](o.XlbRrV1, "xlb_rr_v1"),
		beStat:    &beStatQueue{stats: &d.beStats},
		beAct:     newQueue[uint32, int64](o.XlbBeActV1, "xlb_be_act_v1"),
		beConns:   newQueue[uint32, bpfXlbBeConns](o.XlbBeConnsV1, "xlb_be_conns_v1"),
		beThresh:  newQueue[uint32, bpfXlbBeThresh](o.XlbBeThreshV1, "xlb_be_thresh_v1"),
		backends1: newQueue[uint32, bpfXlbBackend](o.XlbBackendsV1, "xlb_backends_v1"),
		rr:        newQueue[uint32, uint64](o.XlbRrV1, "xlb_rr_v1"),
		tables:    newQueue[uint32, uint32](o.XlbTablesV1, "xlb_tables_v1"),
		cands:     newQueue[uint32, bpfXlbCands](o.XlbCandsV1, "xlb_cands_v1"),
		svc:       newQueue[uint32, bpfXlbSvc](o.XlbSvcV1, "xlb_svc_v1"),
		slots:     newQueue[uint32, uint32](o.XlbSvcSlotV1, "xlb_svc_slot_v1"),
		svcIDs:    newQueue[bpfXlbSvcKey, uint32](o.XlbSvcIdsV1, "xlb_svc_ids_v1"),
		backends3: newQueue[uint32, bpfXlbBackend](o.XlbBackendsV1, "xlb_backends_v1"),
		nat:       newQueue[bpfXlbSvcKey, bpfXlbNatReal](o.XlbNatRealsV1, "xlb_nat_reals_v1"),
	}
}

// reset empties every queue (a failed flush leaves some full), keeping
// the small arrays.
func (w *writes) reset() {
	for _, q := range []interface{ reset() }{
		w.svcIDsDel, w.svcStat, w.svcRR, w.beStat, w.beAct, w.beConns, w.beThresh,
		w.backends1, w.rr, w.tables, w.cands, w.svc, w.slots, w.svcIDs,
		w.backends3, w.nat,
	} {
		q.reset()
	}
}

// flush writes every queue in order; it stops at the first failure.
func (w *writes) flush(d *Dataplane) error {
	for _, f := range []func(*Dataplane) error{
		w.svcIDsDel.flush, w.svcStat.flush, w.svcRR.flush, w.beStat.flush, w.beAct.flush, w.beConns.flush, w.beThresh.flush,
		w.backends1.flush, w.rr.flush, w.tables.flush, w.cands.flush, w.svc.flush, w.slots.flush, w.svcIDs.flush,
		w.backends3.flush, w.nat.flush,
	} {
		if err := f(d); err != nil {
			return err
		}
	}
	return nil
}

// wrote counts map updates (MapUpdates) and tells the test hook which keys
// of which map an Apply wrote.
func (d *Dataplane) wrote(name string, keys any) {
	n, _ := sliceLen(keys)
	d.updates.Add(uint64(n))
	if d.onWrite != nil {
		d.onWrite(name, keys)
	}
}

func sliceLen(keys any) (int, bool) {
	switch k := keys.(type) {
	case []uint32:
		return len(k), true
	case []bpfXlbSvcKey:
		return len(k), true
	}
	return 0, false
}

// MapUpdates counts the map entries written (and deleted) by Apply since
// Open: what a change costs the dataplane.
func (d *Dataplane) MapUpdates() uint64 { return d.updates.Load() }
