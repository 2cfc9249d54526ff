package xdp

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
)

// svcState is an installed service.
type svcState struct {
	id uint32
	// svc is the service as installed (valid when installed), without its
	// backends: ids are their backend ids, in order, whose entries hold
	// what was installed of each (a copy of 65,536 Backends is 4.6 MB).
	svc  dataplane.Service
	ids  []uint32
	slot uint32 // active configuration slot
	// tables are the scheduling tables of both slots (the same map when a
	// change did not touch the table), and a digest and length of each
	// one's entries (a table of sh or mh is 65,537 entries: the Go side
	// does not keep them).
	tables   [2]*ebpf.Map
	tableSum [2]tableSum
	// tableIn is a digest of what the active table was built from (the
	// scheduler, the schedulable backends, their ids); 0: unknown.
	tableIn   uint64
	installed bool // false: never installed, or the last update failed
	// natOn: ids are counted in Dataplane.nat, under natProto.
	natOn    bool
	natProto dataplane.Proto
	// stat is the service in the stats index (publish), nil when it
	// changed since.
	stat *statSvc
	// flipGen is the generation of its last flip (grace.go).
	flipGen uint64
}

// tableSum identifies a table's entries.
type tableSum struct {
	n   int
	sum uint64
}

// sumSeed makes the digests of this process; they are compared only
// within it.
var sumSeed = maphash.MakeSeed()

func sumTable(t []uint32) tableSum {
	if len(t) == 0 {
		return tableSum{}
	}
	return tableSum{n: len(t), sum: maphash.Bytes(sumSeed, unsafe.Slice((*byte)(unsafe.Pointer(&t[0])), 4*len(t)))}
}

func (st *svcState) closeTables() {
	for i, t := range st.tables {
		if t != nil && (i == 0 || t != st.tables[0]) {
			t.Close()
		}
	}
	st.tables = [2]*ebpf.Map{}
}

// idPool hands out the lowest free id below its size.
type idPool struct {
	used []bool
	next int
	// clean marks the ids whose entries in the maps indexed by them are
	// known to be zero: the maps were created by this process (not
	// reused from pins) and the id has not been used since. A new id
	// that is clean needs no zeroing; claim clears the mark.
	clean []bool
}

func newIDPool(n int) idPool { return idPool{used: make([]bool, n)} }

// markClean marks every id clean: the maps were just created.
func (p *idPool) markClean() {
	p.clean = make([]bool, len(p.used))
	for i := range p.clean {
		p.clean[i] = true
	}
}

// claim reports whether id was clean, and marks it used since.
func (p *idPool) claim(id uint32) bool {
	if int(id) >= len(p.clean) || !p.clean[id] {
		return false
	}
	p.clean[id] = false
	return true
}

func (p *idPool) alloc() (uint32, error) {
	for i := range p.used {
		j := (p.next + i) % len(p.used)
		if !p.used[j] {
			p.used[j] = true
			p.next = j + 1
			return uint32(j), nil
		}
	}
	return 0, errors.New("no free id")
}

func (p *idPool) take(id uint32) { p.used[id] = true; p.claim(id) }
func (p *idPool) free(id uint32) { p.used[id] = false }

// sameInstall reports whether s installs as st is installed (the name is
// not part of what is installed).
func (d *Dataplane) sameInstall(st *svcState, s dataplane.Service) bool {
	a := st.svc
	a.Name, a.Backends = "", nil
	backends := s.Backends
	s.Name, s.Backends = "", nil
	if !dataplane.ServiceEqual(a, s) || len(backends) != len(st.ids) {
		return false
	}
	for i, b := range backends {
		if !d.sameBackend(st.ids[i], b) {
			return false
		}
	}
	return true
}

// apply installs desired: services that did not change are not touched;
// the changes of all others are written in batches (batch.go). Called with
// d.mu held. same are the services validate found installed as desired.
func (d *Dataplane) apply(desired []dataplane.Service, same map[dataplane.ServiceKey]bool) error {
	d.applies++
	clear(d.smacs)
	if d.w == nil {
		d.w = d.newWrites()
	}
	w := d.w
	// Emptied when done, not by the next Apply: the arrays of the one
	// that installs 65,536 real servers (10 MB) go now, not whenever the
	// next one comes (none, without checks).
	defer w.reset()
	want := make(map[dataplane.ServiceKey]bool, len(desired))
	for _, s := range desired {
		want[s.Key] = true
	}
	// Every service updated queues one candidate list (2 KB): room for
	// them at once.
	updates := 0
	for _, s := range desired {
		if st := d.services[s.Key]; st == nil || !st.installed || !same[s.Key] {
			updates++
		}
	}
	w.cands.reserve(updates)
	var errs []error
	var touched []*svcState
	for k, st := range d.services {
		if !want[k] {
			d.removeService(w, st)
			delete(d.services, k)
			touched = append(touched, st)
		}
	}
	for _, s := range desired {
		st := d.services[s.Key]
		if st == nil {
			id, err := d.svcIDs.alloc()
			if err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w (at most %d services)", s.Name, err, maxServices))
				continue
			}
			st = &svcState{id: id, flipGen: d.flipGen.Load()}
			w.svcStat.put(id)
			w.svcRR.put(id, 0)
			d.services[s.Key] = st
		}
		if st.installed && same[s.Key] {
			st.svc.Name = s.Name
			continue
		}
		touched = append(touched, st)
		if err := d.updateService(w, st, s); err != nil {
			st.installed = false
			errs = append(errs, fmt.Errorf("service %s (%s): %w", s.Name, s.Key, err))
		}
	}
	if len(touched) == 0 {
		return errors.Join(errs...)
	}
	d.syncNATReals(w)
	if err := w.flush(d); err != nil {
		// What was written of this Apply is unknown: every service it
		// touched is written whole by the next one.
		for _, st := range touched {
			st.installed = false
		}
		errs = append(errs, err)
	}
	d.flipped(touched)
	// Cached flows revalidate against what was written.
	if err := d.writeGlobals(); err != nil {
		errs = append(errs, fmt.Errorf("invalidate flow caches: %w", err))
	}
	d.publish()
	return errors.Join(errs...)
}

// schedulable reports whether a backend may take new flows.
func schedulable(s dataplane.Service, b dataplane.Backend) bool {
	if b.Weight == 0 {
		return false
	}
	if s.Forward == dataplane.DirectRouting && (!b.MAC.Valid() || b.Ifindex <= 0) {
		return false
	}
	return true
}

// removeService plans the removal of a service: it leaves the lookup
// first, its backends retire, its tables go.
func (d *Dataplane) removeService(w *writes, st *svcState) {
	w.svcIDsDel.del(svcKey(st.svc.Key))
	d.natDrop(st)
	for _, id := range st.ids {
		d.retireBackend(w.backends1, id)
	}
	for slot := range uint32(2) {
		w.tables.del(st.id*2 + slot)
	}
	st.closeTables()
	d.deadSvcs[st.id] = true
}

func (d *Dataplane) newTable(ids []uint32) (*ebpf.Map, error) {
	spec := d.spec.Maps["xlb_tables_v1"].InnerMap.Copy()
	spec.Name = "xlb_table"
	spec.MaxEntries = uint32(len(ids))
	// Without BTF: a u32 -> u32 array reads the same in bpftool, and
	// cilium/ebpf loads a BTF blob of its own for each map made with one
	// (1,000 services: 1,000 more bpf() calls at the start, 30-70 ms).
	spec.Key, spec.Value = nil, nil
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create scheduling table: %w", err)
	}
	if err := d.fill(m, ids); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// fillTable writes ids into a scheduling table of the same length that
// no program reads (the inactive slot's, a grace period after the flip
// that left it): only the entries that differ from what it holds, counted
// as map updates. A real server's change moves one entry of a list (a
// flip back and forth between two ports: none), about one in N of a
// Maglev table.
func (d *Dataplane) fillTable(m *ebpf.Map, ids []uint32) error {
	var keys, vals []uint32
	cur := make([]uint32, len(ids))
	if err := readTable(m, cur); err == nil {
		for i, id := range ids {
			if cur[i] != id {
				keys, vals = append(keys, uint32(i)), append(vals, id)
			}
		}
	} else {
		// Not read: all of it.
		keys, vals = make([]uint32, len(ids)), ids
		for i := range keys {
			keys[i] = uint32(i)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := putTable(m, keys, vals); err != nil {
		return err
	}
	d.wrote("xlb_table", keys)
	return nil
}

// fill writes ids into a new scheduling table.
func (d *Dataplane) fill(m *ebpf.Map, ids []uint32) error {
	keys := make([]uint32, len(ids))
	for i := range keys {
		keys[i] = uint32(i)
	}
	return putTable(m, keys, ids)
}

// readTable reads a scheduling table of len(dst) entries into dst.
func readTable(m *ebpf.Map, dst []uint32) error {
	got := 0
	err := batchAll(m, func(k, v uint32) {
		if int(k) < len(dst) {
			dst[k] = v
			got++
		}
	})
	if err == nil && got != len(dst) {
		err = fmt.Errorf("read scheduling table: %d entries, want %d", got, len(dst))
	}
	return err
}

// putTable writes vals at keys of a scheduling table.
func putTable(m *ebpf.Map, keys, vals []uint32) error {
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		// Kernels without batch ops on arrays: one by one.
		for i, k := range keys {
			if err := m.Put(k, vals[i]); err != nil {
				return fmt.Errorf("write scheduling table: %w", err)
			}
		}
	}
	return nil
}

func svcKey(k dataplane.ServiceKey) bpfXlbSvcKey {
	addr, fam := addrWords(k.Addr)
	return bpfXlbSvcKey{Addr: addr, Port: k.Port, Proto: uint8(k.Proto), Family: fam}
}

func (d *Dataplane) svcConfig(id uint32, s dataplane.Service, tableLen uint32) (bpfXlbSvc, error) {
	k := svcKey(s.Key)
	cfg := bpfXlbSvc{
		Vip:      k.Addr,
		Port:     k.Port,
		Proto:    k.Proto,
		Family:   k.Family,
		Sched:    d.names.sched[s.Scheduler],
		Fwd:      d.names.fwd[s.Forward],
		Id:       id,
		TableLen: tableLen,
	}
	if s.Enabled {
		cfg.Flags |= uint16(bpfXlbSvcFlagsXLB_SVC_F_ENABLED)
	}
	if s.Persistence > 0 {
		secs := math.Ceil(s.Persistence.Seconds())
		if secs > math.MaxUint32 {
			return cfg, fmt.Errorf("persistence %v too long", s.Persistence)
		}
		cfg.PersistTimeout = uint32(secs)
	}
	if s.Forward == dataplane.Tunnel {
		// The options are stored as given (the GUE port of an IPIP
		// service, the prefix length and family of the source), so that a
		// restart adopts exactly what was installed (adoptService).
		cfg.GuePort = s.Tunnel.GUEPort
		if s.Tunnel.Encap == dataplane.EncapGUE {
			if s.Tunnel.GUEPort == 0 {
				return cfg, fmt.Errorf("GUE tunnel needs a port")
			}
			cfg.Flags |= uint16(bpfXlbSvcFlagsXLB_SVC_F_GUE)
		}
		if src := s.Tunnel.Source; src.IsValid() {
			var fam uint8
			cfg.TunSrc, fam = addrWords(src.Addr())
			cfg.TunSrcLen = uint8(src.Bits())
			if fam == familyV6 {
				cfg.Flags |= uint16(bpfXlbSvcFlagsXLB_SVC_F_TUN_SRC6)
			}
			if bits := src.Addr().BitLen() - src.Bits(); bits >= 2 {
				cfg.TunSrcBits = uint8(min(bits, 32))
			}
		}
	}
	return cfg, nil
}
