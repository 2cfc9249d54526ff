package xdp

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/dataplane"
)

// svcState is an installed service.
type svcState struct {
	id   uint32
	svc  dataplane.Service // as installed; valid when installed
	slot uint32            // active configuration slot
	// tables are the scheduling tables of both slots (the same map when a
	// change did not touch the table); entries of the table of a slot.
	tables    [2]*ebpf.Map
	tableData [2][]uint32
	// What the active table was built from.
	tableSched dataplane.Scheduler
	tableInput []tableBackend
	tableIDs   []uint32
	// live maps the configured real servers to their backend ids.
	live      map[dataplane.BackendKey]uint32
	installed bool // false: never installed, or the last update failed
}

func (st *svcState) closeTables() {
	for i, t := range st.tables {
		if t != nil && (i == 0 || t != st.tables[0]) {
			t.Close()
		}
	}
	st.tables = [2]*ebpf.Map{}
}

// beState is a backend id in use.
type beState struct {
	svc     uint32
	key     dataplane.BackendKey
	entry   bpfXlbBackend
	thresh  bpfXlbBeThresh // as written to xlb_be_thresh_v1
	retired bool
}

// idPool hands out the lowest free id below its size.
type idPool struct {
	used []bool
	next int
}

func newIDPool(n int) idPool { return idPool{used: make([]bool, n)} }

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

func (p *idPool) take(id uint32) { p.used[id] = true }
func (p *idPool) free(id uint32) { p.used[id] = false }

// sameInstall reports whether two services install identically (the name is
// not part of what is installed).
func sameInstall(a, b dataplane.Service) bool {
	a.Name, b.Name = "", ""
	return dataplane.ServiceEqual(a, b)
}

func (d *Dataplane) apply(desired []dataplane.Service) error {
	clear(d.smacs)
	changed := false
	defer func() {
		if !changed {
			return
		}
		if err := d.syncNATReals(); err != nil {
			d.log.Error("NAT real servers", "error", err)
		}
		// Cached flows revalidate against what was written.
		if err := d.writeGlobals(); err != nil {
			d.log.Error("invalidate flow caches", "error", err)
		}
	}()
	want := make(map[dataplane.ServiceKey]bool, len(desired))
	for _, s := range desired {
		want[s.Key] = true
	}
	var errs []error
	for k, st := range d.services {
		if !want[k] {
			if err := d.removeService(st); err != nil {
				errs = append(errs, fmt.Errorf("remove service %s: %w", k, err))
				continue
			}
			delete(d.services, k)
			changed = true
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
			st = &svcState{id: id, live: map[dataplane.BackendKey]uint32{}}
			if err := d.resetServiceCounters(id); err != nil {
				d.svcIDs.free(id)
				errs = append(errs, fmt.Errorf("service %s: %w", s.Name, err))
				continue
			}
			d.services[s.Key] = st
		}
		if st.installed && sameInstall(st.svc, s) {
			st.svc.Name = s.Name
			continue
		}
		changed = true
		if err := d.updateService(st, s); err != nil {
			st.installed = false
			errs = append(errs, fmt.Errorf("service %s (%s): %w", s.Name, s.Key, err))
		}
	}
	return errors.Join(errs...)
}

// syncNATReals makes xlb_nat_reals_v1 map each NAT real server
// (address:port/proto) to its service and backend, for replies that come
// without connection state. A real server in two NAT services under the
// same address and port is left out: its replies cannot be attributed.
func (d *Dataplane) syncNATReals() error {
	want := map[bpfXlbSvcKey]bpfXlbNatReal{}
	ambiguous := map[bpfXlbSvcKey]bool{}
	for _, st := range d.services {
		if !st.installed || st.svc.Forward != dataplane.NAT {
			continue
		}
		for bk, id := range st.live {
			k := svcKey(dataplane.ServiceKey{Addr: bk.Addr, Port: bk.Port, Proto: st.svc.Key.Proto})
			if _, dup := want[k]; dup {
				ambiguous[k] = true
			}
			want[k] = bpfXlbNatReal{Svc: st.id, Backend: id}
		}
	}
	for k := range ambiguous {
		delete(want, k)
		d.log.Warn("NAT real server in several services: its replies need connection state", "real_server", wordsAddr(k.Addr, k.Family), "port", k.Port)
	}
	var errs []error
	for k := range d.natReals {
		if _, ok := want[k]; !ok {
			if err := d.objs.XlbNatRealsV1.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
			}
		}
	}
	for k, v := range want {
		// Compared with presence: service 0's backend 0 is {0, 0}, the
		// zero value a missing key reads as.
		if old, ok := d.natReals[k]; !ok || old != v {
			if err := d.objs.XlbNatRealsV1.Put(&k, &v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.natReals = want
	return errors.Join(errs...)
}

// schedulable reports whether a backend may take new flows.
func schedulable(s dataplane.Service, b dataplane.Backend) bool {
	if b.Weight == 0 {
		return false
	}
	if s.Forward == dataplane.DirectRouting && (len(b.MAC) != 6 || b.Ifindex <= 0) {
		return false
	}
	return true
}

// updateService installs s in st's inactive slot and flips to it. Backends
// joining the table may take flows before the flip and backends leaving it
// keep them until after, so a new flow never finds a half-written set.
func (d *Dataplane) updateService(st *svcState, s dataplane.Service) error {
	// Backend ids: keep ids of real servers that stay, revive retired ids of
	// real servers that come back, allocate the others.
	ids := make([]uint32, len(s.Backends))
	for i, b := range s.Backends {
		if id, ok := st.live[b.Key()]; ok {
			ids[i] = id
			continue
		}
		if id, ok := d.retiredID(st.id, b.Key()); ok {
			ids[i] = id
			continue
		}
		id, err := d.beIDs.alloc()
		if err != nil {
			return fmt.Errorf("real server %s: %w (at most %d)", b.Key(), err, maxBackends)
		}
		if err := d.resetBackendCounters(id); err != nil {
			d.beIDs.free(id)
			return err
		}
		d.backends[id] = &beState{svc: st.id, key: b.Key()}
		ids[i] = id
	}

	// Phase 1: entries of the new set; a backend gains SCHED now but keeps
	// the one it has until the flip. Thresholds first: the program reads
	// them once the entry says it has some.
	entries := make([]bpfXlbBackend, len(s.Backends))
	for i, b := range s.Backends {
		if err := d.writeThresh(ids[i], b); err != nil {
			return err
		}
		e, err := d.backendEntry(st.id, i, s, b)
		if err != nil {
			return err
		}
		entries[i] = e
		interim := e
		if old := d.backends[ids[i]]; !old.retired && old.entry.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED) != 0 {
			interim.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED)
		}
		if err := d.writeBackend(ids[i], interim); err != nil {
			return err
		}
	}

	// Phase 2: configuration and table into the inactive slot, then flip.
	var tbs []tableBackend
	var tids []uint32
	for i, b := range s.Backends {
		if schedulable(s, b) {
			tbs = append(tbs, tableBackend{key: b.Key(), weight: b.Weight})
			tids = append(tids, ids[i])
		}
	}
	// The table depends only on the scheduler and the schedulable
	// backends: an update that changes neither (enabling, persistence,
	// ...) reuses it instead of rebuilding a 65537-entry Maglev table.
	var table []uint32
	if st.tables[st.slot] != nil && st.tableSched == s.Scheduler && slices.Equal(st.tableInput, tbs) && slices.Equal(st.tableIDs, tids) {
		table = st.tableData[st.slot]
	} else {
		spec, _ := s.Scheduler.Spec()
		order := tableBuilders[spec.Table](tbs, d.opts.MaglevSize)
		table = make([]uint32, len(order))
		for i, j := range order {
			table[i] = tids[j]
		}
	}
	st.tableSched, st.tableInput, st.tableIDs = s.Scheduler, tbs, tids
	next := st.slot ^ 1
	if !st.installed && st.tables[st.slot] == nil {
		next = st.slot // first install: either slot is free
	}
	idx := st.id*2 + next
	cfg, err := d.svcConfig(st.id, s, uint32(len(table)))
	if err != nil {
		return err
	}
	if st.installed && st.svc.Scheduler != s.Scheduler {
		// A new scheduler starts its cycle from the top, as IPVS's init_svc.
		if err := d.objs.XlbRrV1.Put(st.id, uint64(0)); err != nil {
			return fmt.Errorf("reset round robin: %w", err)
		}
	}
	var inner *ebpf.Map
	if cur := st.tables[st.slot]; cur != nil && slices.Equal(st.tableData[st.slot], table) {
		inner = cur // unchanged table: both slots share it
	} else if len(table) > 0 {
		if inner, err = d.newTable(table); err != nil {
			return err
		}
	}
	// Writing the outer map waits for an RCU grace period (tens of ms):
	// skip it when the slot already holds this table.
	if old := st.tables[next]; old != inner || next == st.slot && !st.installed {
		if old != nil && old != st.tables[st.slot] {
			old.Close()
		}
		st.tables[next], st.tableData[next] = inner, table
		if inner != nil {
			if err := d.objs.XlbTablesV1.Put(idx, inner); err != nil {
				return fmt.Errorf("install table: %w", err)
			}
		} else if err := d.objs.XlbTablesV1.Delete(idx); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear table: %w", err)
		}
	}
	if other := next ^ 1; inner != nil && st.tables[other] == nil {
		// Both slots hold the table from the start, so that a later change
		// that keeps it (enabling, disabling: a VRRP role change) writes
		// no outer map entry and waits for no grace period.
		if err := d.objs.XlbTablesV1.Put(st.id*2+other, inner); err != nil {
			return fmt.Errorf("install table: %w", err)
		}
		st.tables[other], st.tableData[other] = inner, table
	}
	if err := d.objs.XlbSvcV1.Put(idx, &cfg); err != nil {
		return fmt.Errorf("write service configuration: %w", err)
	}
	if err := d.objs.XlbSvcSlotV1.Put(st.id, next); err != nil {
		return fmt.Errorf("flip service slot: %w", err)
	}
	st.slot = next
	key := svcKey(s.Key)
	if err := d.objs.XlbSvcIdsV1.Put(&key, st.id); err != nil {
		return fmt.Errorf("write service id: %w", err)
	}

	// Phase 3: final flags; real servers no longer configured retire.
	live := make(map[dataplane.BackendKey]uint32, len(s.Backends))
	for i, b := range s.Backends {
		if err := d.writeBackend(ids[i], entries[i]); err != nil {
			return err
		}
		be := d.backends[ids[i]]
		be.retired = false
		live[b.Key()] = ids[i]
	}
	for k, id := range st.live {
		if _, ok := live[k]; !ok {
			if err := d.retireBackend(id); err != nil {
				return err
			}
		}
	}
	st.live = live
	st.svc = cloneService(s)
	st.installed = true
	return nil
}

func cloneService(s dataplane.Service) dataplane.Service {
	s.Backends = slices.Clone(s.Backends)
	for i := range s.Backends {
		s.Backends[i].MAC = slices.Clone(s.Backends[i].MAC)
	}
	return s
}

func (d *Dataplane) retiredID(svc uint32, k dataplane.BackendKey) (uint32, bool) {
	for id, be := range d.backends {
		if be.retired && be.svc == svc && be.key == k {
			return id, true
		}
	}
	return 0, false
}

func (d *Dataplane) backendEntry(svc uint32, pos int, s dataplane.Service, b dataplane.Backend) (bpfXlbBackend, error) {
	addr, fam := addrWords(b.Addr)
	e := bpfXlbBackend{
		Addr:   addr,
		Port:   b.Port,
		Family: fam,
		Flags:  uint32(bpfXlbBackendFlagsXLB_BE_F_IN_USE),
		Svc:    svc,
		Weight: b.Weight,
		Pos:    uint32(pos),
	}
	if len(b.MAC) == 6 && b.Ifindex > 0 {
		smac, err := d.ifaceMAC(b.Ifindex)
		if err != nil || len(smac) != 6 {
			return e, fmt.Errorf("real server %s: egress interface %d: %v", b.Key(), b.Ifindex, err)
		}
		e.Ifindex = uint32(b.Ifindex)
		copy(e.Mac[:], b.MAC)
		copy(e.Smac[:], smac)
		e.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_HAS_MAC)
		// Redirects to an interface need it in the devmap.
		if err := d.objs.XlbDevmapV1.Update(uint32(b.Ifindex), uint32(b.Ifindex), ebpf.UpdateAny); err != nil {
			return e, fmt.Errorf("devmap: %w", err)
		}
	}
	if s.Forward == dataplane.Tunnel && !s.Tunnel.Source.IsValid() {
		// The outer source is the director's address toward the real server.
		src, err := routeSource(b.Addr)
		if err != nil {
			return e, fmt.Errorf("real server %s: tunnel source: %w", b.Key(), err)
		}
		e.TunSrc, _ = addrWords(src)
	}
	if schedulable(s, b) {
		e.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED)
	}
	if b.UpperThreshold > 0 {
		e.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_THRESH)
	}
	return e, nil
}

// writeThresh writes a backend's connection thresholds. Its overload
// flag is cleared when the upper threshold is removed or raised, as
// __ip_vs_update_dest clears IP_VS_DEST_F_OVERLOAD; otherwise the flag
// stays as the program and Sync keep it.
func (d *Dataplane) writeThresh(id uint32, b dataplane.Backend) error {
	be := d.backends[id]
	th := bpfXlbBeThresh{Upper: b.UpperThreshold, Lower: b.LowerThreshold}
	if th == be.thresh {
		return nil
	}
	if err := d.objs.XlbBeThreshV1.Put(id, &th); err != nil {
		return fmt.Errorf("write thresholds of backend %d: %w", id, err)
	}
	if (th.Upper == 0 || th.Upper > be.thresh.Upper) && d.overloaded(id) {
		if err := d.setOverload(id, false); err != nil {
			return err
		}
	}
	be.thresh = th
	return nil
}

// overloaded reads a backend's overload flag, which the program sets (it
// can be set only while the backend has thresholds).
func (d *Dataplane) overloaded(id uint32) bool {
	if d.backends[id].entry.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_THRESH) == 0 {
		return false
	}
	var cur bpfXlbBackend
	return d.objs.XlbBackendsV1.Lookup(id, &cur) == nil && cur.Overload != 0
}

// setOverload sets or clears a backend's overload flag.
func (d *Dataplane) setOverload(id uint32, on bool) error {
	be := d.backends[id]
	e := be.entry
	e.Overload = 0
	if on {
		e.Overload = 1
	}
	if err := d.objs.XlbBackendsV1.Put(id, &e); err != nil {
		return fmt.Errorf("write backend %d: %w", id, err)
	}
	be.entry = e
	return nil
}

// routeSource is the source address the kernel would use toward dst.
func routeSource(dst netip.Addr) (netip.Addr, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("route to %s: %w", dst, err)
	}
	for _, r := range routes {
		if a, ok := netip.AddrFromSlice(r.Src); ok {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no source address toward %s", dst)
}

// writeBackend writes a backend's entry; its overload flag, which the
// program keeps, is kept as the map has it while the backend has
// thresholds (a flag set between the read and the write is lost; the next
// new flow the backend takes sets it again).
func (d *Dataplane) writeBackend(id uint32, e bpfXlbBackend) error {
	e.Overload = 0
	if e.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_THRESH) != 0 && d.overloaded(id) {
		e.Overload = 1
	}
	if err := d.objs.XlbBackendsV1.Put(id, &e); err != nil {
		return fmt.Errorf("write backend %d: %w", id, err)
	}
	d.backends[id].entry = e
	return nil
}

// retireBackend stops new flows to a backend removed from its service; its
// established flows go on until they end, then Sync frees the id.
func (d *Dataplane) retireBackend(id uint32) error {
	be := d.backends[id]
	e := be.entry
	e.Flags &^= uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED)
	e.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_RETIRED)
	if err := d.writeBackend(id, e); err != nil {
		return err
	}
	be.retired = true
	return nil
}

func (d *Dataplane) removeService(st *svcState) error {
	key := svcKey(st.svc.Key)
	if err := d.objs.XlbSvcIdsV1.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	for _, id := range st.live {
		if err := d.retireBackend(id); err != nil {
			return err
		}
	}
	for slot := range uint32(2) {
		_ = d.objs.XlbTablesV1.Delete(st.id*2 + slot)
	}
	st.closeTables()
	d.deadSvcs[st.id] = true
	return nil
}

func (d *Dataplane) newTable(ids []uint32) (*ebpf.Map, error) {
	spec := d.spec.Maps["xlb_tables_v1"].InnerMap.Copy()
	spec.Name = "xlb_table"
	spec.MaxEntries = uint32(len(ids))
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create scheduling table: %w", err)
	}
	keys := make([]uint32, len(ids))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := m.BatchUpdate(keys, ids, nil); err != nil {
		// Kernels without batch ops on arrays: one by one.
		for i, id := range ids {
			if err := m.Put(uint32(i), id); err != nil {
				m.Close()
				return nil, fmt.Errorf("fill scheduling table: %w", err)
			}
		}
	}
	return m, nil
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

// resetServiceCounters zeroes the per-CPU counters and round-robin
// position of a newly allocated service id.
func (d *Dataplane) resetServiceCounters(id uint32) error {
	zero := make([]bpfXlbStats, ebpf.MustPossibleCPU())
	if err := d.objs.XlbSvcStatV1.Put(id, zero); err != nil {
		return fmt.Errorf("reset service counters: %w", err)
	}
	if err := d.objs.XlbRrV1.Put(id, uint64(0)); err != nil {
		return fmt.Errorf("reset round robin: %w", err)
	}
	return nil
}

func (d *Dataplane) resetBackendCounters(id uint32) error {
	zero := make([]bpfXlbStats, ebpf.MustPossibleCPU())
	if err := d.objs.XlbBeStatV1.Put(id, zero); err != nil {
		return fmt.Errorf("reset backend counters: %w", err)
	}
	if err := d.objs.XlbBeActV1.Put(id, int64(0)); err != nil {
		return fmt.Errorf("reset backend load: %w", err)
	}
	if err := d.objs.XlbBeConnsV1.Put(id, &bpfXlbBeConns{}); err != nil {
		return fmt.Errorf("reset backend connections: %w", err)
	}
	if err := d.objs.XlbBeThreshV1.Put(id, &bpfXlbBeThresh{}); err != nil {
		return fmt.Errorf("reset backend thresholds: %w", err)
	}
	return nil
}
