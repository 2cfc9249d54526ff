package xdp

import (
	"context"
	"errors"
	"fmt"
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

// Stats implements dataplane.Dataplane. Counters are summed over CPUs at
// the time of the call; connection counts come from the last Sync.
func (d *Dataplane) Stats(context.Context) (*dataplane.Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := &dataplane.Stats{
		Services: make(map[dataplane.ServiceKey]dataplane.ServiceStats, len(d.services)),
		Verdicts: make(map[string]uint64, len(d.verdict)),
	}
	var errs []error
	for k, st := range d.services {
		if !st.installed && st.svc.Key != k {
			continue
		}
		ss := dataplane.ServiceStats{Backends: make(map[dataplane.BackendKey]dataplane.BackendStats, len(st.live))}
		c, err := sumStats(d.objs.XlbSvcStatV1, st.id)
		if err != nil {
			errs = append(errs, err)
		}
		ss.Counters = c
		for bk, id := range st.live {
			c, err := sumStats(d.objs.XlbBeStatV1, id)
			if err != nil {
				errs = append(errs, err)
			}
			cc := d.conns[id]
			ss.Backends[bk] = dataplane.BackendStats{Counters: c, ActiveConns: cc.active, InactiveConns: cc.inactive}
		}
		out.Services[k] = ss
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
	return out, errors.Join(errs...)
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

// loop advances the program's clock and runs Sync periodically.
func (d *Dataplane) loop() {
	defer close(d.done)
	var clock, sync <-chan time.Time
	if !d.opts.ManualClock {
		t := time.NewTicker(ClockPeriod)
		defer t.Stop()
		clock = t.C
	}
	if d.opts.SyncInterval > 0 {
		t := time.NewTicker(d.opts.SyncInterval)
		defer t.Stop()
		sync = t.C
	}
	for {
		select {
		case <-d.stop:
			return
		case <-clock:
			if err := d.tick(); err != nil {
				d.log.Warn("advance dataplane clock", "error", err)
			}
		case <-sync:
			if err := d.Sync(); err != nil {
				d.log.Warn("connection table sync", "error", err)
			}
		}
	}
}

// expiryMargin is how long past its timeout an idle entry is kept before
// Sync deletes it: the program already ignores it, and the margin keeps a
// flow that wakes up at the boundary from racing the deletion.
const expiryMargin = 10 * time.Second

// Sync scans the connection table: it deletes entries idle past their
// timeout and those of removed services, recounts each backend's
// connections (correcting the lc/wlc load kept by the program), and frees
// removed real servers and services once no flow uses them.
func (d *Dataplane) Sync() error {
	d.kickIfaces()
	d.mu.Lock()
	dead := make(map[uint32]bool, len(d.deadSvcs))
	for id := range d.deadSvcs {
		dead[id] = true
	}
	d.mu.Unlock()

	tcp, fin, udp := orDefault(d.opts.TCPTimeout, 900*time.Second), orDefault(d.opts.TCPFinTimeout, 120*time.Second), orDefault(d.opts.UDPTimeout, 300*time.Second)
	now, err := d.now()
	if err != nil {
		return err
	}
	counts := map[uint32]connCount{}
	var stale []bpfXlbFlow
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
	if err := d.syncImported(now, dead, counts); err != nil {
		return err
	}
	if len(stale) > 0 {
		if _, err := d.objs.XlbConnsV1.BatchDelete(stale, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			for i := range stale {
				_ = d.objs.XlbConnsV1.Delete(&stale[i])
			}
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns = counts
	var errs []error
	freed := false
	defer func() {
		if freed {
			if err := d.writeGlobals(); err != nil {
				errs = append(errs, err)
			}
		}
	}()
	for id, be := range d.backends {
		c := counts[id]
		var load int64
		if err := d.objs.XlbBeActV1.Lookup(id, &load); err == nil && load != c.counted {
			if err := d.objs.XlbBeActV1.Put(id, c.counted); err != nil {
				errs = append(errs, err)
			}
		}
		if err := d.syncDest(id, c); err != nil {
			errs = append(errs, err)
		}
		if be.retired && c.refs == 0 {
			if err := d.objs.XlbBackendsV1.Put(id, &bpfXlbBackend{}); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(d.backends, id)
			d.beIDs.free(id)
			freed = true
		}
	}
	for id := range d.deadSvcs {
		inUse := false
		for _, be := range d.backends {
			if be.svc == id {
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

// syncDest corrects a backend's connection counts as IPVS keeps them
// (xlb_be_conns_v1) to what the connection table holds (the program misses
// entries that expire unseen and LRU evictions), and clears its overload
// flag below its lower threshold, as ip_vs_unbind_dest does when a
// connection expires.
func (d *Dataplane) syncDest(id uint32, c connCount) error {
	want := bpfXlbBeConns{Active: int64(c.active), Inactive: int64(c.inactive)}
	var cur bpfXlbBeConns
	if err := d.objs.XlbBeConnsV1.Lookup(id, &cur); err == nil && cur != want {
		if err := d.objs.XlbBeConnsV1.Put(id, &want); err != nil {
			return fmt.Errorf("backend %d connections: %w", id, err)
		}
	}
	if !d.overloaded(id) || keepOverload(d.backends[id].thresh, c.active+c.inactive) {
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
