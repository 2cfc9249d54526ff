package xdp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
)

// connCount are a backend's tracked connections from the last Sync.
type connCount struct {
	active, inactive uint64 // as ipvsadm's ActiveConn and InActConn
	counted          int64  // entries counted in its lc/wlc load
	refs             int    // entries of any state that still point to it
}

// statIndex is what Stats reads without the dataplane's lock: the
// installed services and their backends' ids, as of the last Apply.
// Reading counters never waits for an Apply (a status or a scrape during
// a reload), nor an Apply for a scrape.
type statIndex struct {
	services []*statSvc
	// svcIDs and beIDs bound the ids in use (the counter maps are read up
	// to them).
	svcIDs, beIDs uint32
}

type statSvc struct {
	key      dataplane.ServiceKey
	id       uint32
	backends []statBE
}

// statBE is a backend of the index: its real server as in its entry (24
// bytes, not 40 with a netip.Addr and a pointer), and its id.
type statBE struct {
	addr [16]uint8
	port uint16
	fam  uint8
	id   uint32
}

func (b statBE) key() dataplane.BackendKey {
	return dataplane.BackendKey{Addr: wordsAddr(b.addr, b.fam), Port: b.port}
}

// publish makes the installed services the ones Stats reads. Called with
// d.mu held.
func (d *Dataplane) publish() {
	idx := &statIndex{services: make([]*statSvc, 0, len(d.services))}
	for k, st := range d.services {
		if !st.installed && st.svc.Key != k {
			continue
		}
		if st.stat == nil {
			ss := &statSvc{key: k, id: st.id, backends: make([]statBE, 0, len(st.ids))}
			for _, id := range st.ids {
				e := &d.backends.get(id).entry
				ss.backends = append(ss.backends, statBE{addr: e.Addr, port: e.Port, fam: e.Family, id: id})
			}
			st.stat = ss
		}
		idx.services = append(idx.services, st.stat)
		idx.svcIDs = max(idx.svcIDs, st.id+1)
		for _, b := range st.stat.backends {
			idx.beIDs = max(idx.beIDs, b.id+1)
		}
	}
	d.index.Store(idx)
}

// Stats implements dataplane.Dataplane. Counters are summed over CPUs at
// the time of the call; connection counts come from the last Sync. It
// reads the per-CPU counter maps in batches, without the dataplane's lock.
func (d *Dataplane) Stats(context.Context) (*dataplane.Stats, error) {
	idx := d.index.Load()
	conns := *d.conns.Load()
	out := &dataplane.Stats{
		Services: make(map[dataplane.ServiceKey]dataplane.ServiceStats, len(idx.services)),
		Verdicts: make(map[string]uint64, len(d.verdict)),
	}
	var errs []error
	svcs, err := readCounters(d.objs.XlbSvcStatV1, idx.svcIDs)
	if err != nil {
		errs = append(errs, fmt.Errorf("service counters: %w", err))
	}
	bes, err := d.beStats.read(idx.beIDs)
	if err != nil {
		errs = append(errs, fmt.Errorf("backend counters: %w", err))
	}
	at := func(c []dataplane.Counters, id uint32) dataplane.Counters {
		if int(id) < len(c) {
			return c[id]
		}
		return dataplane.Counters{}
	}
	for _, ss := range idx.services {
		st := dataplane.ServiceStats{Counters: at(svcs, ss.id), Backends: make([]dataplane.BackendStats, len(ss.backends))}
		for i, b := range ss.backends {
			cc := conns[b.id]
			st.Backends[i] = dataplane.BackendStats{Key: b.key(), Counters: at(bes, b.id), ActiveConns: cc.active, InactiveConns: cc.inactive}
		}
		out.Services[ss.key] = st
	}
	for v, name := range d.verdict {
		var per []bpfXlbVerdictStats
		if err := d.objs.XlbVerdictsV1.Lookup(v, &per); err != nil {
			errs = append(errs, fmt.Errorf("verdict %s: %w", name, err))
			continue
		}
		var n uint64
		for _, p := range per {
			n += p.Packets
		}
		out.Verdicts[name] = n
	}
	out.Events = make(map[string]uint64, len(d.events))
	for ev, name := range d.events {
		var per []uint64
		if err := d.objs.XlbEventsV1.Lookup(ev, &per); err != nil {
			errs = append(errs, fmt.Errorf("event %s: %w", name, err))
			continue
		}
		var n uint64
		for _, p := range per {
			n += p
		}
		out.Events[name] = n
	}
	if d.opts.PinPath != "" {
		out.Events[EventPinsRestored] = d.pins.restored.Load()
	}
	if lost, ok := d.probeAnswersLost(); ok {
		out.Events[EventProbeAnswersLost] = lost
	}
	return out, errors.Join(errs...)
}

// counterChunk is how many entries of a counter map one batch reads.
const counterChunk = 8192

// readCounters reads the first n entries of a per-CPU array of bpfXlbStats
// in batches, summed over CPUs.
func readCounters(m *ebpf.Map, n uint32) ([]dataplane.Counters, error) {
	out := make([]dataplane.Counters, n)
	if n == 0 {
		return out, nil
	}
	ncpu := ebpf.MustPossibleCPU()
	chunk := min(int(n), counterChunk)
	keys := make([]uint32, chunk)
	per := make([]bpfXlbStats, chunk*ncpu)
	var cursor ebpf.MapBatchCursor
	for done := 0; done < int(n); {
		count := min(chunk, int(n)-done)
		got, err := m.BatchLookup(&cursor, keys[:count], per[:count*ncpu], nil)
		for i := range got {
			k := keys[i]
			if int(k) >= len(out) {
				continue
			}
			var c dataplane.Counters
			for _, p := range per[i*ncpu : (i+1)*ncpu] {
				c.Add(dataplane.Counters{Packets: p.Packets, Bytes: p.Bytes, PacketsOut: p.PacketsOut, BytesOut: p.BytesOut, Connections: p.Conns})
			}
			out[k] = c
		}
		done += got
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return readCountersEach(m, out)
		}
		if err != nil {
			return out, err
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

// readCountersEach is readCounters where the kernel has no batch lookups.
func readCountersEach(m *ebpf.Map, out []dataplane.Counters) ([]dataplane.Counters, error) {
	for id := range out {
		c, err := sumStats(m, uint32(id))
		if err != nil {
			return out, err
		}
		out[id] = c
	}
	return out, nil
}

func sumStats(m *ebpf.Map, id uint32) (dataplane.Counters, error) {
	var per []bpfXlbStats
	var c dataplane.Counters
	if err := m.Lookup(id, &per); err != nil {
		return c, fmt.Errorf("counters %d: %w", id, err)
	}
	for _, p := range per {
		c.Add(dataplane.Counters{Packets: p.Packets, Bytes: p.Bytes, PacketsOut: p.PacketsOut, BytesOut: p.BytesOut, Connections: p.Conns})
	}
	return c, nil
}

// expiryMargin is how long past its timeout an idle entry is kept before
// Sync deletes it: the program already ignores it, and the margin keeps a
// flow that wakes up at the boundary from racing the deletion.
const expiryMargin = 10 * time.Second

// countEmbryos adds the live embryonic flows (a SYN scheduled, its
// handshake not complete: bpf/lib/embryo.h) to their backends' counts: as
// inactive connections (ipvsadm's InActConn counts SYN_RECV), in the
// lc/wlc load where the SYN was counted, and as references that keep a
// removed real server's id. Live as the program decides it: younger than
// the SYN-only timeout, in coarse clock ticks. It returns how many it
// found. A slot kept for flows scheduled by hash (no flow's word:
// bpf/lib/embryo.h) counts nowhere.
func (d *Dataplane) countEmbryos(counts map[uint32]connCount, now uint64, fin time.Duration) (int, error) {
	const (
		atimeShift = 30 // XLB_ATIME_SHIFT
		beShift    = uint(bpfXlbEmbryoWordXLB_EMB_BE_SHIFT)
		beMask     = 1<<uint(bpfXlbEmbryoWordXLB_EMB_BE_BITS) - 1
		counted    = uint64(1) << uint(bpfXlbEmbryoWordXLB_EMB_COUNTED_BIT)
		tickShift  = uint(bpfXlbEmbryoWordXLB_EMB_TICK_SHIFT)
		tickMask   = 1<<uint(bpfXlbEmbryoWordXLB_EMB_TICK_BITS) - 1
	)
	maxAge := min(uint64(fin)>>atimeShift+1, tickMask-1)
	live := 0
	err := batchAll(d.objs.XlbEmbryosV1, func(_ uint32, w uint64) {
		// A word of no flow (hash bits 0) holds a contended slot only.
		if uint32(w) == 0 || ((now>>atimeShift)-(w>>tickShift))&tickMask > maxAge {
			return
		}
		live++
		id := uint32(w>>beShift) & beMask
		c := counts[id]
		c.refs++
		c.inactive++
		if w&counted != 0 {
			c.counted++
		}
		counts[id] = c
	})
	return live, err
}

// Sync scans the connection table: it deletes entries idle past their
// timeout and those of removed services, recounts each backend's
// connections (correcting the lc/wlc load kept by the program), and frees
// removed real servers and services once no flow uses them.
func (d *Dataplane) Sync() error {
	d.kickIfaces()
	tcp, fin, udp := orDefault(d.opts.TCPTimeout, 900*time.Second), orDefault(d.opts.TCPFinTimeout, 120*time.Second), orDefault(d.opts.UDPTimeout, 300*time.Second)
	now, err := d.now()
	if err != nil {
		return err
	}
	sent, perr := d.sentPackets()
	d.csync.mu.Lock()
	imports := d.csync.gen
	d.csync.mu.Unlock()
	d.mu.Lock()
	// Only the packets of scheduled flows (sent, or passed for want of a
	// neighbour) make or change connection entries, loads and counts:
	// the others (ARP, neighbour probes, traffic for no service, drops)
	// leave nothing for a scan to find.
	// Imported flows (connection sync) come without a packet: an Import
	// counts as one.
	mark := scanMark{valid: perr == nil, packets: sent, applies: d.applies, imports: imports}
	if d.scanned.same(mark, now) && len(d.deadSvcs) == 0 && len(d.retired) == 0 && d.loadsClean {
		// Nothing the scan would find has changed: an idle director scans
		// no table of 1M buckets every 5 s.
		d.scans.skipped++
		d.mu.Unlock()
		return nil
	}
	d.scans.done++
	// The embryonic words (an array of 1M): only a sent SYN makes one, so
	// when the last scan found none live and nothing was sent since, this
	// one would find none either (a word does not come back to life).
	// Without this an idle director read 8 MB every 5 s: two thirds of its
	// idle CPU (TestIdleSyncScansNoEmbryos).
	readEmbryos := perr != nil || !d.embryos.none || sent != d.embryos.sent
	if readEmbryos {
		d.scans.embryosRead++
	}
	dead := make(map[uint32]bool, len(d.deadSvcs))
	for id := range d.deadSvcs {
		dead[id] = true
	}
	d.mu.Unlock()

	counts := map[uint32]connCount{}
	var stale []bpfXlbFlow
	mark.next = math.MaxUint64
	err = batchAll(d.objs.XlbConnsV1, func(k bpfXlbFlow, v bpfXlbConn) {
		timeout := udp
		if k.Proto == 6 {
			timeout = fin
			if v.State == uint8(bpfXlbConnStateXLB_CT_ESTABLISHED) {
				timeout = tcp
			}
		}
		idle := time.Duration(0)
		if now > v.Atime {
			idle = time.Duration(now - v.Atime)
		}
		if dead[v.Svc] || idle > timeout+expiryMargin {
			stale = append(stale, k)
			return
		}
		// When this entry's count changes without a packet: it ends its
		// timeout, then its margin.
		next := v.Atime + uint64(timeout)
		if idle > timeout {
			next += uint64(expiryMargin)
		}
		mark.next = min(mark.next, next)
		c := counts[v.Backend]
		c.refs++
		// A NAT reply entry is the other direction of a connection
		// counted by its client's entry.
		if idle <= timeout && v.Flags&uint32(bpfXlbConnFlagsXLB_CT_F_REPLY) == 0 {
			if k.Proto == 6 && v.State == uint8(bpfXlbConnStateXLB_CT_ESTABLISHED) {
				c.active++
			} else {
				c.inactive++
			}
			if v.Flags&uint32(bpfXlbConnFlagsXLB_CT_F_COUNTED) != 0 {
				c.counted++
			}
		}
		counts[v.Backend] = c
	})
	if err != nil {
		return fmt.Errorf("scan connections: %w", err)
	}
	live := 0
	if readEmbryos {
		if live, err = d.countEmbryos(counts, now, fin); err != nil {
			return fmt.Errorf("scan embryonic flows: %w", err)
		}
		if live > 0 {
			// Their counts change when they expire, without a packet:
			// the next Sync scans again.
			mark.next = min(mark.next, now)
		}
	}
	next, err := d.syncImported(now, dead, counts)
	if err != nil {
		return err
	}
	mark.next = min(mark.next, next)
	if len(stale) > 0 {
		if _, err := d.objs.XlbConnsV1.BatchDelete(stale, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			for i := range stale {
				_ = d.objs.XlbConnsV1.Delete(&stale[i])
			}
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if readEmbryos {
		d.embryos.none, d.embryos.sent = perr == nil && live == 0, sent
	}
	d.conns.Store(&counts)
	if err == nil && len(stale) == 0 {
		d.scanned = mark
	} else {
		d.scanned = scanMark{}
	}
	var errs []error
	freed := false
	defer func() {
		if freed {
			if err := d.writeGlobals(); err != nil {
				errs = append(errs, err)
			}
		}
	}()
	free := func(id uint32, be *beState) {
		if err := d.objs.XlbBackendsV1.Put(id, &bpfXlbBackend{}); err != nil {
			errs = append(errs, err)
			return
		}
		delete(d.retired, retiredKey{be.entry.Svc, be.key()})
		d.backends.del(id) // be is zero from here
		d.beIDs.free(id)
		freed = true
	}
	// The lc/wlc loads and the connection counts move only with
	// connection entries: with none now, and the loads and counts
	// corrected by a Sync since the last ones were seen, there is nothing
	// to read (an idle director reads no 65,536 loads every 5 s).
	// (Nor since the program last counted a packet: it may have counted
	// connections whose entries are gone unseen, LRU evictions, or set an
	// overload flag.)
	if len(counts) == 0 && len(stale) == 0 && d.loadsClean && mark.valid && mark.packets == d.cleanPackets {
		for _, id := range d.retired {
			free(id, d.backends.get(id))
		}
	} else {
		loads, err := readIDs[int64](d, d.objs.XlbBeActV1, "backend loads")
		if err != nil {
			errs = append(errs, err)
		}
		conns, cerr := readIDs[bpfXlbBeConns](d, d.objs.XlbBeConnsV1, "backend connections")
		if cerr != nil {
			errs = append(errs, cerr)
		}
		clean := err == nil && cerr == nil
		for id, be := range d.backends.all() {
			c := counts[id]
			if int(id) < len(loads) && loads[id] != c.counted {
				if err := d.objs.XlbBeActV1.Put(id, c.counted); err != nil {
					errs = append(errs, err)
					clean = false
				}
			}
			if err := d.syncDest(id, c, conns); err != nil {
				errs = append(errs, err)
				clean = false
			}
			if be.retired && c.refs == 0 {
				free(id, be)
			}
		}
		d.loadsClean, d.cleanPackets = clean, mark.packets
	}
	for id := range d.deadSvcs {
		inUse := false
		for _, be := range d.backends.all() {
			if be.entry.Svc == id {
				inUse = true
				break
			}
		}
		if !inUse {
			delete(d.deadSvcs, id)
			d.svcIDs.free(id)
		}
	}
	return errors.Join(errs...)
}

// scanMark is what a scan of the connection table depends on besides the
// program's clock: the packets of scheduled flows the program has sent
// (every packet has one verdict, counted: none sent, no entry was made,
// refreshed or evicted), the Applies and Imports made. next is the clock at which the first entry seen
// would change its count by itself (its timeout, then its margin, ends).
type scanMark struct {
	valid   bool
	packets uint64
	applies uint64
	imports uint64 // Imports made (connection sync)
	next    uint64
}

// same reports whether a scan now would find what the one marked m found.
func (m scanMark) same(now scanMark, clock uint64) bool {
	return m.valid && now.valid && m.packets == now.packets && m.applies == now.applies && m.imports == now.imports && clock < m.next
}

// sentPackets is the number of packets the program has sent or passed for
// want of a neighbour: the verdicts of a scheduled flow (xlb_sent,
// xlb_decided in bpf/xlb.c).
func (d *Dataplane) sentPackets() (uint64, error) {
	var sent uint64
	for v, name := range d.verdict {
		if name != "tx" && name != "redirect" && name != "pass_no_neigh" {
			continue
		}
		var per []bpfXlbVerdictStats
		if err := d.objs.XlbVerdictsV1.Lookup(v, &per); err != nil {
			return 0, err
		}
		for _, p := range per {
			sent += p.Packets
		}
	}
	return sent, nil
}

// readIDs reads an array map indexed by backend id over the ids in use,
// in batches. Called with d.mu held.
func readIDs[V any](d *Dataplane, m *ebpf.Map, what string) ([]V, error) {
	n := d.backends.ids()
	out := make([]V, n)
	if n == 0 {
		return out, nil
	}
	chunk := min(n, counterChunk)
	keys := make([]uint32, chunk)
	vals := make([]V, chunk)
	var cursor ebpf.MapBatchCursor
	for done := 0; done < n; {
		count := min(chunk, n-done)
		got, err := m.BatchLookup(&cursor, keys[:count], vals[:count], nil)
		for i := range got {
			if int(keys[i]) < n {
				out[keys[i]] = vals[i]
			}
		}
		done += got
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return out, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			for id := range d.backends.all() {
				if err := m.Lookup(id, &out[id]); err != nil {
					return out, fmt.Errorf("%s %d: %w", what, id, err)
				}
			}
			return out, nil
		case err != nil:
			return out, fmt.Errorf("%s: %w", what, err)
		case got == 0:
			return out, nil
		}
	}
	return out, nil
}

// syncDest corrects a backend's connection counts as IPVS keeps them
// (xlb_be_conns_v1, read into conns) to what the connection table holds
// (the program misses entries that expire unseen and LRU evictions), and
// clears its overload flag below its lower threshold, as
// ip_vs_unbind_dest does when a connection expires.
func (d *Dataplane) syncDest(id uint32, c connCount, conns []bpfXlbBeConns) error {
	want := bpfXlbBeConns{Active: int64(c.active), Inactive: int64(c.inactive)}
	if int(id) < len(conns) && conns[id] != want {
		if err := d.objs.XlbBeConnsV1.Put(id, &want); err != nil {
			return fmt.Errorf("backend %d connections: %w", id, err)
		}
	}
	if !d.overloaded(id) || keepOverload(d.backends.get(id).thresh, c.active+c.inactive) {
		return nil
	}
	return d.setOverload(id, false)
}

// keepOverload reports whether a backend with total connections stays
// overloaded: ip_vs_unbind_dest clears the flag below the lower threshold,
// or below 3/4 of the upper one when there is no lower one (the program's
// lb_dest_keep_overload).
func keepOverload(th bpfXlbBeThresh, total uint64) bool {
	switch {
	case th.Lower != 0:
		return total >= uint64(th.Lower)
	case th.Upper != 0:
		return total*4 >= uint64(th.Upper)*3
	}
	return false
}
