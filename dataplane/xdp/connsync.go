package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
)

// The XDP dataplane's part of connection sync (dataplane.ConnSyncer; see
// bpf/lib/sync.h): the fast path reports flows into a ring buffer, read
// here and translated from ids to addresses; the peers' flows are written
// into xlb_sync_conns_v1, which the program consults when its connection
// table misses, and moves into it on the flow's first packet here.

var _ dataplane.ConnSyncer = (*Dataplane)(nil)

// reportBatch bounds the reports handed over at once.
const reportBatch = 512

// reportPoll is how often the report rings are read (reports.go): a report
// waits at most this long to be read, and a CPU writing more than its
// ring's slots in this time overwrites unread ones (32768 slots, up to 4
// possible CPUs: 6.5 million reports a second per CPU; 1024 at 128 CPUs:
// 200,000).
const reportPoll = 5 * time.Millisecond

// connSync is the Go side's state of the sync.
type connSync struct {
	mu      sync.Mutex // cfg, and starting the reader
	cfg     bpfXlbSyncCfg
	ring    *reportRing
	stop    chan struct{} // closed to stop the reader
	reports chan []dataplane.Conn
	done    chan struct{} // closed when the reader has stopped
	// imported is the imported entries counted by the last Sync; gen
	// counts the imports, so that a Sync that found none clears the flag
	// only if nothing was imported while it counted.
	imported uint64
	gen      uint64
}

// Reports implements dataplane.ConnSyncer.
func (d *Dataplane) Reports() <-chan []dataplane.Conn {
	cs := &d.csync
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.reports != nil {
		return cs.reports
	}
	cs.reports = make(chan []dataplane.Conn, 64)
	cs.done = make(chan struct{})
	ncpu, err := ebpf.PossibleCPU()
	var r *reportRing
	if err == nil {
		r, err = openReportRing(d.objs.XlbSyncHeads, d.objs.XlbSyncSlots, ncpu)
	}
	if err != nil {
		d.log.Error("connection sync: cannot read the report rings", "error", err)
		close(cs.reports)
		close(cs.done)
		return cs.reports
	}
	cs.ring, cs.stop = r, make(chan struct{})
	go d.readReports(r, cs.stop, cs.reports, cs.done)
	return cs.reports
}

// readReports reads the report rings every reportPoll, at once again
// while reports are left, until stop is closed.
func (d *Dataplane) readReports(r *reportRing, stop <-chan struct{}, out chan<- []dataplane.Conn, done chan<- struct{}) {
	defer close(done)
	defer close(out)
	t := time.NewTicker(reportPoll)
	defer t.Stop()
	var recs []bpfXlbSyncRec
	for {
		var pending bool
		recs, pending = r.read(recs[:0], reportBatch)
		if batch := d.reportConns(recs); len(batch) > 0 {
			select {
			case out <- batch:
			case <-stop:
				return
			}
		}
		if pending {
			select {
			case <-stop:
				return
			default:
				continue
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// syncRecSize is the size of a struct xlb_sync_rec.
const syncRecSize = 56

// decodeSyncRec reads a struct xlb_sync_rec, field by field: the reader
// does this a million times a second in the worst case, and
// binary.Decode's reflection cost ~1 us a record (70% of the reader's
// CPU in BenchmarkSyncReporting's profile), as much as the fast path's
// own work on the other CPU.
func decodeSyncRec(b []byte) (bpfXlbSyncRec, bool) {
	var v bpfXlbSyncRec
	if len(b) < syncRecSize {
		return v, false
	}
	ne := binary.NativeEndian
	copy(v.Flow.Src[:], b[0:16])
	copy(v.Flow.Dst[:], b[16:32])
	v.Flow.Sport = ne.Uint16(b[32:])
	v.Flow.Dport = ne.Uint16(b[34:])
	v.Flow.Proto = b[36]
	v.Flow.Family = b[37]
	v.Flow.Pad = [2]uint8{b[38], b[39]}
	v.Svc = ne.Uint32(b[40:])
	v.Backend = ne.Uint32(b[44:])
	v.State = b[48]
	v.Flags = b[49]
	copy(v.Pad[:], b[50:56])
	return v, true
}

// reportConns translates reports into connections (a template after its
// connection); those of services or real servers gone since are dropped.
func (d *Dataplane) reportConns(recs []bpfXlbSyncRec) []dataplane.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	byID := d.servicesByID()
	out := make([]dataplane.Conn, 0, len(recs))
	for _, r := range recs {
		c, ok := d.connOf(byID, r.Flow, r.Svc, r.Backend, r.State)
		if !ok {
			continue
		}
		out = append(out, c)
		if r.Flags&uint8(bpfXlbSyncFlagsXLB_SYNC_F_TEMPLATE) != 0 {
			if st := byID[r.Svc]; st.svc.Persistence > 0 {
				t := c
				t.Template, t.Client, t.State = true, netip.AddrPortFrom(c.Client.Addr(), 0), dataplane.ConnNew
				t.Timeout = st.svc.Persistence
				out = append(out, t)
			}
		}
	}
	return out
}

// servicesByID indexes the installed services by id (d.mu held).
func (d *Dataplane) servicesByID() map[uint32]*svcState {
	m := make(map[uint32]*svcState, len(d.services))
	for _, st := range d.services {
		if st.installed {
			m[st.id] = st
		}
	}
	return m
}

// connOf is the connection of a flow entry (d.mu held).
func (d *Dataplane) connOf(byID map[uint32]*svcState, f bpfXlbFlow, svc, backend uint32, state uint8) (dataplane.Conn, bool) {
	st := byID[svc]
	be := d.backends.get(backend)
	if st == nil || be == nil || be.entry.Svc != svc {
		return dataplane.Conn{}, false
	}
	c := dataplane.Conn{
		Service: st.svc.Key,
		Client:  netip.AddrPortFrom(wordsAddr(f.Src, f.Family), f.Sport),
		Backend: be.key(),
		Forward: st.svc.Forward,
		State:   dataplane.ConnState(state),
	}
	c.Timeout = d.stateTimeout(f.Proto, c.State)
	return c, true
}

// stateTimeout is the idle timeout of a connection in state s.
func (d *Dataplane) stateTimeout(proto uint8, s dataplane.ConnState) time.Duration {
	switch {
	case proto != uint8(dataplane.TCP):
		return orDefault(d.opts.UDPTimeout, 300*time.Second)
	case s == dataplane.ConnEstablished:
		return orDefault(d.opts.TCPTimeout, 900*time.Second)
	}
	return orDefault(d.opts.TCPFinTimeout, 120*time.Second)
}

// SetReporting implements dataplane.ConnSyncer.
func (d *Dataplane) SetReporting(on bool) error {
	cs := &d.csync
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.cfg.Report = 0
	if on {
		cs.cfg.Report = 1
	}
	return d.writeSyncCfg()
}

// writeSyncCfg writes the sync settings (cs.mu held).
func (d *Dataplane) writeSyncCfg() error {
	if err := d.objs.XlbSyncConfig.Put(uint32(0), &d.csync.cfg); err != nil {
		return fmt.Errorf("write sync settings: %w", err)
	}
	return nil
}

// markImported tells the program that imported entries may exist.
func (d *Dataplane) markImported() error {
	cs := &d.csync
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.gen++
	return d.setImported(1)
}

// setImported writes the flag (cs.mu held).
func (d *Dataplane) setImported(v uint32) error {
	cs := &d.csync
	if cs.cfg.Imported == v {
		return nil
	}
	cs.cfg.Imported = v
	return d.writeSyncCfg()
}

// flowKey is the connection-table key of a connection's client direction.
func flowKey(c dataplane.Conn) bpfXlbFlow {
	var k bpfXlbFlow
	k.Src, k.Family = addrWords(c.Client.Addr())
	k.Dst, _ = addrWords(c.Service.Addr)
	k.Sport, k.Dport = c.Client.Port(), c.Service.Port
	k.Proto = uint8(c.Service.Proto)
	return k
}

// Import implements dataplane.ConnSyncer.
func (d *Dataplane) Import(conns []dataplane.Conn) []dataplane.ImportResult {
	out := make([]dataplane.ImportResult, len(conns))
	now, err := d.now()
	if err != nil {
		for i := range out {
			out[i] = dataplane.ImportFailed
		}
		return out
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	any := false
	ids := backendIDs{}
	for i, c := range conns {
		if c.Template {
			out[i] = d.importTemplate(c, now, ids)
			continue
		}
		out[i] = d.importConn(c, now, ids)
		any = any || out[i] == dataplane.Imported
	}
	if any {
		if err := d.markImported(); err != nil {
			d.log.Warn("connection sync", "error", err)
		}
	}
	return out
}

// backendIDs finds the backend ids of services' real servers by address
// and port, for one Import (d.mu held): built per service on first use.
type backendIDs map[dataplane.ServiceKey]map[dataplane.BackendKey]uint32

// localIDs finds a connection's service and real server here (d.mu held):
// a real server removed from the configuration but still serving flows
// counts.
func (d *Dataplane) localIDs(c dataplane.Conn, ids backendIDs) (*svcState, uint32, dataplane.ImportResult) {
	st := d.services[c.Service]
	if st == nil || !st.installed {
		return nil, 0, dataplane.ImportUnknownService
	}
	byKey := ids[c.Service]
	if byKey == nil {
		byKey = make(map[dataplane.BackendKey]uint32, len(st.ids))
		for _, id := range st.ids {
			if be := d.backends.get(id); be != nil {
				byKey[be.key()] = id
			}
		}
		ids[c.Service] = byKey
	}
	id, ok := byKey[c.Backend]
	if !ok {
		if id, ok = d.retired[retiredKey{st.id, c.Backend}]; !ok {
			return nil, 0, dataplane.ImportUnknownReal
		}
	}
	return st, id, dataplane.Imported
}

// importConn writes one connection into xlb_sync_conns_v1 (d.mu held).
func (d *Dataplane) importConn(c dataplane.Conn, now uint64, ids backendIDs) dataplane.ImportResult {
	st, id, res := d.localIDs(c, ids)
	if res != dataplane.Imported {
		return res
	}
	k := flowKey(c)
	var local bpfXlbConn
	if err := d.objs.XlbConnsV1.Lookup(&k, &local); err == nil {
		idle := time.Duration(0)
		if now > local.Atime {
			idle = time.Duration(now - local.Atime)
		}
		live := idle <= d.stateTimeout(k.Proto, dataplane.ConnState(local.State)) &&
			local.State != uint8(bpfXlbConnStateXLB_CT_CLOSING) && local.Flags&uint32(bpfXlbConnFlagsXLB_CT_F_REPLY) == 0
		if live && st.svc.Enabled {
			return dataplane.ImportLocal
		}
		// Not forwarded here (a backup's leftover from when it was
		// master, or expired): the peer's decision replaces it, so that
		// the flow finds it when it comes here.
		if err := d.objs.XlbConnsV1.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return dataplane.ImportFailed
		}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = d.stateTimeout(k.Proto, c.State)
	}
	v := bpfXlbSyncConn{Expires: now + uint64(timeout), Backend: id, Svc: st.id, State: uint8(min(c.State, dataplane.ConnClosing))}
	// A refresh of a flow the last Sync counted stays counted (its
	// promotion must not count it again).
	var old bpfXlbSyncConn
	if err := d.objs.XlbSyncConnsV1.Lookup(&k, &old); err == nil && old.Backend == id && old.Svc == st.id && old.Counted != 0 {
		v.Counted = 1
	}
	if err := d.objs.XlbSyncConnsV1.Put(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) || errors.Is(err, os.ErrNotExist) {
			return dataplane.ImportFailed
		}
		// E2BIG: the table is full.
		return dataplane.ImportFull
	}
	return dataplane.Imported
}

// importTemplate writes a client's persistence template into
// xlb_persist_v1 (a common LRU: one importing CPU does not evict its own
// entries), unless this director holds a live one of its own for a
// service it forwards (d.mu held).
func (d *Dataplane) importTemplate(c dataplane.Conn, now uint64, ids backendIDs) dataplane.ImportResult {
	st, id, res := d.localIDs(c, ids)
	if res != dataplane.Imported {
		return res
	}
	if st.svc.Persistence <= 0 {
		return dataplane.ImportUnknownService
	}
	var k bpfXlbPersistKey
	k.Addr, k.Family = addrWords(c.Client.Addr())
	k.Svc = st.id
	persist := time.Duration(secondsOf(st.svc.Persistence)) * time.Second
	var local bpfXlbPersist
	if err := d.objs.XlbPersistV1.Lookup(&k, &local); err == nil && st.svc.Enabled &&
		(now <= local.Atime || time.Duration(now-local.Atime) <= persist) {
		return dataplane.ImportLocal
	}
	// The template lasts what the peer says is left of it.
	left := min(max(c.Timeout, 0), persist)
	atime := now
	if back := uint64(persist - left); back < now {
		atime = now - back
	}
	if err := d.objs.XlbPersistV1.Put(&k, &bpfXlbPersist{Atime: atime, Backend: id}); err != nil {
		return dataplane.ImportFailed
	}
	return dataplane.Imported
}

// secondsOf is a persistence timeout in whole seconds, as the program
// holds it (svcConfig).
func secondsOf(p time.Duration) int64 { return int64((p + time.Second - 1) / time.Second) }

// Walk implements dataplane.ConnSyncer: the live forward entries of the
// connection table (not the NAT replies' twins), the imported ones, and
// the live persistence templates.
func (d *Dataplane) Walk(fn func(dataplane.Conn) bool) error {
	now, err := d.now()
	if err != nil {
		return err
	}
	// The tables are read first, translated under the lock after: the
	// fast path is never held up, and neither is Apply for long.
	type flowEntry struct {
		k          bpfXlbFlow
		svc, be    uint32
		state      uint8
		left       time.Duration // imported: what is left
		isImported bool
	}
	var flows []flowEntry
	err = batchAll(d.objs.XlbConnsV1, func(k bpfXlbFlow, v bpfXlbConn) {
		if v.Flags&uint32(bpfXlbConnFlagsXLB_CT_F_REPLY) != 0 {
			return
		}
		if now > v.Atime && time.Duration(now-v.Atime) > d.stateTimeout(k.Proto, dataplane.ConnState(v.State)) {
			return
		}
		flows = append(flows, flowEntry{k: k, svc: v.Svc, be: v.Backend, state: v.State})
	})
	if err != nil {
		return fmt.Errorf("walk connections: %w", err)
	}
	err = batchAll(d.objs.XlbSyncConnsV1, func(k bpfXlbFlow, v bpfXlbSyncConn) {
		if now < v.Expires {
			flows = append(flows, flowEntry{k: k, svc: v.Svc, be: v.Backend, state: v.State, left: time.Duration(v.Expires - now), isImported: true})
		}
	})
	if err != nil {
		return fmt.Errorf("walk imported connections: %w", err)
	}
	type tplEntry struct {
		k    bpfXlbPersistKey
		be   uint32
		idle time.Duration
	}
	var tpls []tplEntry
	err = batchAll(d.objs.XlbPersistV1, func(k bpfXlbPersistKey, v bpfXlbPersist) {
		var idle time.Duration
		if now > v.Atime {
			idle = time.Duration(now - v.Atime)
		}
		tpls = append(tpls, tplEntry{k: k, be: v.Backend, idle: idle})
	})
	if err != nil {
		return fmt.Errorf("walk persistence templates: %w", err)
	}

	var conns []dataplane.Conn
	d.mu.Lock()
	byID := d.servicesByID()
	for _, f := range flows {
		c, ok := d.connOf(byID, f.k, f.svc, f.be, f.state)
		if !ok {
			continue
		}
		if f.isImported {
			c.Timeout = min(c.Timeout, f.left)
		}
		conns = append(conns, c)
	}
	for _, t := range tpls {
		st, be := byID[t.k.Svc], d.backends.get(t.be)
		if st == nil || be == nil || be.entry.Svc != st.id || st.svc.Persistence <= 0 {
			continue
		}
		persist := time.Duration(secondsOf(st.svc.Persistence)) * time.Second
		if t.idle > persist {
			continue
		}
		conns = append(conns, dataplane.Conn{Service: st.svc.Key, Client: netip.AddrPortFrom(wordsAddr(t.k.Addr, t.k.Family), 0),
			Backend: be.key(), Forward: st.svc.Forward, Template: true, Timeout: persist - t.idle})
	}
	d.mu.Unlock()
	for _, c := range conns {
		if !fn(c) {
			return nil
		}
	}
	return nil
}

// SyncStats implements dataplane.ConnSyncer.
func (d *Dataplane) SyncStats() dataplane.SyncStats {
	var per []bpfXlbSyncStats
	var s dataplane.SyncStats
	if err := d.objs.XlbSyncCounts.Lookup(uint32(0), &per); err == nil {
		for _, p := range per {
			s.Reported += p.Reported
			s.Promoted += p.Promoted
		}
	}
	d.csync.mu.Lock()
	s.Imported = d.csync.imported
	if r := d.csync.ring; r != nil {
		s.Lost = r.lost.Load()
	}
	d.csync.mu.Unlock()
	return s
}

// syncImported is Sync's pass over the imported connections: expired
// ones and those of removed services go, the others count in their real
// servers' connections (and lc/wlc load), as IPVS counts synced ones.
func (d *Dataplane) syncImported(now uint64, dead map[uint32]bool, counts map[uint32]connCount) (uint64, error) {
	d.csync.mu.Lock()
	gen := d.csync.gen
	d.csync.mu.Unlock()
	var stale, fresh []bpfXlbFlow
	var freshV []bpfXlbSyncConn
	n := uint64(0)
	next := uint64(math.MaxUint64)
	err := batchAll(d.objs.XlbSyncConnsV1, func(k bpfXlbFlow, v bpfXlbSyncConn) {
		if dead[v.Svc] || now >= v.Expires+uint64(expiryMargin) {
			stale = append(stale, k)
			return
		}
		// When it changes the counts by itself: it expires, then its
		// margin ends.
		if now < v.Expires {
			next = min(next, v.Expires)
		} else {
			next = min(next, v.Expires+uint64(expiryMargin))
		}
		c := counts[v.Backend]
		c.refs++
		if now < v.Expires {
			n++
			if k.Proto == uint8(dataplane.TCP) && v.State == uint8(bpfXlbConnStateXLB_CT_ESTABLISHED) {
				c.active++
			} else {
				c.inactive++
			}
			if v.State != uint8(bpfXlbConnStateXLB_CT_CLOSING) {
				c.counted++
			}
			if v.Counted == 0 {
				fresh, freshV = append(fresh, k), append(freshV, v)
			}
		}
		counts[v.Backend] = c
	})
	if err != nil {
		return 0, fmt.Errorf("scan imported connections: %w", err)
	}
	for i := range stale {
		_ = d.objs.XlbSyncConnsV1.Delete(&stale[i])
	}
	// Counted now: the flow's promotion adds nothing to the counts this
	// Sync writes after it (bpf/lib/sync.h lb_sync_promote). Only entries
	// still there (UpdateExist): one promoted meanwhile is gone, and was
	// counted by its promotion; the counts written below cover it once.
	for i := range fresh {
		freshV[i].Counted = 1
		_ = d.objs.XlbSyncConnsV1.Update(&fresh[i], &freshV[i], ebpf.UpdateExist)
	}
	cs := &d.csync
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.imported = n
	if n == 0 && cs.gen == gen {
		return next, d.setImported(0)
	}
	return next, nil
}

// initSync has the program look imported entries up from the start: a
// restarted director's pinned table may hold some (the first Sync clears
// the flag if not).
func (d *Dataplane) initSync() error {
	d.csync.mu.Lock()
	defer d.csync.mu.Unlock()
	return d.setImported(1)
}

// stopSync stops the report reader.
func (d *Dataplane) stopSync() {
	cs := &d.csync
	cs.mu.Lock()
	r, stop, done := cs.ring, cs.stop, cs.done
	cs.ring = nil
	cs.mu.Unlock()
	if r != nil {
		close(stop)
		<-done
		r.close()
	}
}
