package xdp

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
)

// The update of one service (updateService): its backend ids, the three
// phases of its writes, and the inputs of its scheduling table and
// candidate list.

// updateScratch is updateService's working memory, reused from one call
// to the next (d.mu is held): a storm of health-check changes updates
// every service again and again, and each call made six slices of the
// service's real servers (at 1,000 services of 64, 16 MB of garbage per
// round of the storm).
type updateScratch struct {
	ids               []uint32
	entries, interims []bpfXlbBackend
	wrote1            []bool
	tbs               []tableBackend
	tids              []uint32
	cands             []bpfXlbCand
}

// grow makes *s n long and zeroed, in its array when it has room.
func grow[T any](s *[]T, n int) []T {
	if cap(*s) < n {
		*s = make([]T, n)
	} else {
		*s = (*s)[:n]
		clear(*s)
	}
	return *s
}

// updateService plans the installation of s in st's inactive slot and the
// flip to it, into w. Backends joining the table may take flows before the
// flip and backends leaving it keep them until after, so a new flow never
// finds a half-written set. The Go side of st is updated as if w were
// written (apply marks st not installed when it is not).
func (d *Dataplane) updateService(w *writes, st *svcState, s dataplane.Service) error {
	// Backend ids: keep ids of real servers that stay, revive retired ids of
	// real servers that come back, allocate the others.
	sc := &d.upd
	ids := grow(&sc.ids, len(s.Backends))
	var installed map[dataplane.BackendKey]uint32 // by key, when not in place
	for i, b := range s.Backends {
		if i < len(st.ids) && d.backends.get(st.ids[i]).is(b.Key()) {
			ids[i] = st.ids[i]
			continue
		}
		if installed == nil {
			installed = make(map[dataplane.BackendKey]uint32, len(st.ids))
			for _, id := range st.ids {
				installed[d.backends.get(id).key()] = id
			}
		}
		if id, ok := installed[b.Key()]; ok {
			ids[i] = id
			continue
		}
		if id, ok := d.retired[retiredKey{st.id, b.Key()}]; ok {
			ids[i] = id
			continue
		}
		id, err := d.beIDs.alloc()
		if err != nil {
			return fmt.Errorf("real server %s: %w (at most %d)", b.Key(), err, maxBackends)
		}
		if !d.beIDs.claim(id) {
			// A freed id's counters, load and connections go (an id
			// never used since the maps were created has none: at start
			// that is 4 of every 7 writes of a real server).
			w.beStat.put(id)
			w.beAct.put(id, 0)
			w.beConns.put(id, bpfXlbBeConns{})
			if b.UpperThreshold == 0 && b.LowerThreshold == 0 {
				// Those of a freed id go; writeThresh writes any others.
				w.beThresh.put(id, bpfXlbBeThresh{})
			}
		}
		d.backends.add(id, newBeState(st.id, b.Key()))
		ids[i] = id
	}

	// Phase 1: entries of the new set; a backend gains SCHED now but keeps
	// the one it has until the flip. Thresholds first: the program reads
	// them once the entry says it has some.
	entries := grow(&sc.entries, len(s.Backends))
	// interims[i] is what phase 1 wrote for backend i (wrote1[i]): phase 3
	// writes only where the final entry differs from it (a new service's
	// backends are final in phase 1: one write each, not two).
	interims := grow(&sc.interims, len(s.Backends))
	wrote1 := grow(&sc.wrote1, len(s.Backends))
	for i, b := range s.Backends {
		if err := d.writeThresh(ids[i], b); err != nil {
			return err
		}
		e, err := d.backendEntry(st.id, i, s, b)
		if err != nil {
			return err
		}
		e = d.withOverload(ids[i], e)
		entries[i] = e
		interim := e
		if old := d.backends.get(ids[i]); !old.retired && old.entry.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED) != 0 {
			interim.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED)
		}
		if !st.installed || interim != d.backends.get(ids[i]).entry {
			w.backends1.put(ids[i], interim)
			interims[i], wrote1[i] = interim, true
		}
	}

	// Phase 2: configuration and table into the inactive slot, then flip.
	tbs, tids := sc.tbs[:0], sc.tids[:0]
	for i, b := range s.Backends {
		if schedulable(s, b) {
			tbs = append(tbs, tableBackend{key: b.Key(), weight: b.Weight})
			tids = append(tids, ids[i])
		}
	}
	// The table depends only on the scheduler and the schedulable
	// backends: an update that changes neither (enabling, persistence,
	// ...) reuses it instead of rebuilding a 65537-entry Maglev table.
	sc.tbs, sc.tids = tbs, tids
	in := tableInputSum(s.Scheduler, tbs, tids)
	reuse := st.tables[st.slot] != nil && st.tableIn == in
	var table []uint32
	sum := st.tableSum[st.slot]
	if !reuse {
		spec, _ := s.Scheduler.Spec()
		order := tableBuilders[spec.Table](tbs, d.opts.MaglevSize)
		table = make([]uint32, len(order))
		for i, j := range order {
			table[i] = tids[j]
		}
		sum = sumTable(table)
	}
	st.tableIn = in
	next := st.slot ^ 1
	if !st.installed && st.tables[st.slot] == nil {
		next = st.slot // first install: either slot is free
	}
	idx := st.id*2 + next
	cfg, err := d.svcConfig(st.id, s, uint32(sum.n))
	if err != nil {
		return err
	}
	if st.installed && st.svc.Scheduler != s.Scheduler {
		// A new scheduler starts its cycle from the top, as IPVS's init_svc.
		w.rr.put(st.id, 0)
	}
	var inner *ebpf.Map
	inactive := st.tables[next]
	if inactive == st.tables[st.slot] {
		inactive = nil // shared with the active slot: not to be written
	}
	switch cur := st.tables[st.slot]; {
	case inactive != nil && st.installed && st.tableSum[next] == sum:
		// The inactive slot holds this table already (its own copy of
		// an unchanged table, or a change undone: a real server's id
		// comes back with it): the flip is enough.
		inner = inactive
	case cur != nil && (reuse || st.tableSum[st.slot] == sum):
		inner = cur // unchanged table: both slots share it
	case sum.n == 0:
	case inactive != nil && st.installed && st.tableSum[next].n == sum.n && d.graceSince(st):
		// No program reads the inactive slot's table since a grace period
		// after the last flip: written in place, the outer map is not, and
		// no RCU grace period is waited for (10-50 ms on a busy host).
		if err := d.fillTable(inactive, table); err == nil {
			inner = inactive
			st.tableSum[next] = sum
			break
		}
		fallthrough
	default:
		if inner, err = d.newTable(table); err != nil {
			return err
		}
	}
	// Writing the outer map waits for an RCU grace period: skip it when
	// the slot already holds this table.
	if old := st.tables[next]; old != inner || next == st.slot && !st.installed {
		if old != nil && old != st.tables[st.slot] {
			old.Close()
		}
		st.tables[next], st.tableSum[next] = inner, sum
		if inner != nil {
			w.tables.put(idx, uint32(inner.FD()))
		} else {
			w.tables.del(idx)
		}
	}
	if other := next ^ 1; inner != nil && st.tables[other] == nil {
		// Both slots hold the table from the start, so that a later change
		// that keeps it (enabling, disabling: a VRRP role change) writes
		// no outer map entry and waits for no grace period. A short one
		// gets a copy of its own in the inactive slot after the grace
		// period that follows (privatizeTables).
		w.tables.put(st.id*2+other, uint32(inner.FD()))
		st.tables[other], st.tableSum[other] = inner, sum
	}
	cands := sc.cands[:0]
	for i, b := range s.Backends {
		if schedulable(s, b) {
			cands = append(cands, candidate(ids[i], b.Weight, b.UpperThreshold > 0))
		}
	}
	sc.cands = cands
	cv, err := candsValue(cands)
	if err != nil {
		return err
	}
	w.cands.put(idx, cv)
	w.svc.put(idx, cfg)
	w.slots.put(st.id, next)
	st.slot = next
	if !st.installed || st.svc.Key != s.Key {
		w.svcIDs.put(svcKey(s.Key), st.id)
	}

	// Phase 3: final flags; real servers no longer configured retire. The
	// NAT real servers are counted again only if they may have changed (a
	// weight's change touched 64 entries of Dataplane.nat).
	natSame := st.installed && st.natOn == (s.Forward == dataplane.NAT) && st.svc.Key == s.Key && slices.Equal(st.ids, ids)
	if !natSame {
		d.natDrop(st)
	}
	for i := range s.Backends {
		be := d.backends.get(ids[i])
		if wrote1[i] && interims[i] != entries[i] || !wrote1[i] && (!st.installed || be.entry != entries[i] || be.retired) {
			w.backends3.put(ids[i], entries[i])
		}
		if be.retired {
			delete(d.retired, retiredKey{st.id, be.key()})
		}
		be.entry, be.retired = entries[i], false
	}
	if !slices.Equal(st.ids, ids) || st.svc.Key != s.Key {
		stay := make(map[uint32]bool, len(ids))
		for _, id := range ids {
			stay[id] = true
		}
		for _, id := range st.ids {
			if !stay[id] {
				d.retireBackend(w.backends3, id)
			}
		}
		// ids is scratch; the stats index's entry names the old ids.
		st.ids = slices.Clone(ids)
		st.stat = nil
	}
	st.svc = s
	st.svc.Backends = nil
	st.installed = true
	if !natSame {
		d.natAdd(st)
	}
	return nil
}

// tableInputSum is a digest of what a table is built from.
func tableInputSum(sched dataplane.Scheduler, tbs []tableBackend, ids []uint32) uint64 {
	var h maphash.Hash
	h.SetSeed(sumSeed)
	h.WriteString(string(sched))
	var buf [26]byte
	for i, b := range tbs {
		a := b.key.Addr.As16()
		copy(buf[:16], a[:])
		binary.LittleEndian.PutUint16(buf[16:], b.key.Port)
		binary.LittleEndian.PutUint32(buf[18:], b.weight)
		binary.LittleEndian.PutUint32(buf[22:], ids[i])
		h.Write(buf[:])
	}
	return h.Sum64() | 1 // never 0 (unknown)
}

// candidate is an lc/wlc candidate: backend id, its weight, and whether it
// has connection thresholds (the program then reads its overload flag).
func candidate(id, weight uint32, thresh bool) bpfXlbCand {
	c := bpfXlbCand{Id: id, Weight: weight}
	if thresh {
		c.Thresh = 1
	}
	return c
}

// candsValue is the lc/wlc candidates value of a configuration: the
// schedulable backends in configuration order.
func candsValue(cands []bpfXlbCand) (bpfXlbCands, error) {
	var c bpfXlbCands
	if len(cands) > len(c.C) {
		return c, fmt.Errorf("%d candidates, at most %d", len(cands), len(c.C))
	}
	c.N = uint32(len(cands))
	copy(c.C[:], cands)
	return c, nil
}
