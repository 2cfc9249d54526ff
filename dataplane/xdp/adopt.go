package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
)

// adopt reconstructs the installed services from maps pinned by a previous
// run, so that the first Apply changes only what differs.
func (d *Dataplane) adopt() error {
	if d.opts.PinPath == "" {
		return nil
	}
	byService := map[uint32][]uint32{}
	err := batchAll(d.objs.XlbBackendsV1, func(id uint32, e bpfXlbBackend) {
		if e.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_IN_USE) == 0 {
			return
		}
		d.beIDs.take(id)
		be := beState{
			entry:   e,
			retired: e.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_RETIRED) != 0,
		}
		// Thresholds are read back only when the entry has some: an id
		// whose thresholds were never written reads as zero anyway.
		if e.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_THRESH) != 0 {
			_ = d.objs.XlbBeThreshV1.Lookup(id, &be.thresh)
		}
		d.backends.add(id, be)
		byService[e.Svc] = append(byService[e.Svc], id)
	})
	if err != nil {
		return fmt.Errorf("read backends: %w", err)
	}

	var key bpfXlbSvcKey
	var id uint32
	it := d.objs.XlbSvcIdsV1.Iterate()
	live := map[uint32]bool{}
	for it.Next(&key, &id) {
		st, err := d.adoptService(key, id, byService[id])
		if err != nil {
			return fmt.Errorf("service id %d: %w", id, err)
		}
		d.svcIDs.take(id)
		d.services[st.svc.Key] = st
		live[id] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read services: %w", err)
	}
	// Backends of services removed by the previous run: their flows are
	// cleaned up by Sync, then the ids are freed.
	for svc, ids := range byService {
		if live[svc] {
			continue
		}
		d.svcIDs.take(svc)
		d.deadSvcs[svc] = true
		for _, id := range ids {
			d.backends.get(id).retired = true
		}
	}
	for id, be := range d.backends.all() {
		if be.retired {
			d.retired[retiredKey{be.entry.Svc, be.key()}] = id
		}
	}
	err = batchAll(d.objs.XlbNatRealsV1, func(k bpfXlbSvcKey, v bpfXlbNatReal) {
		d.nat.set(k, natEntry{owner: v, flags: natInstalled}) // n 0: natAdd counts
		d.natN++
		d.natDirty[k] = true
	})
	if err != nil {
		return fmt.Errorf("read NAT real servers: %w", err)
	}
	for _, st := range d.services {
		d.natAdd(st)
	}
	if n := len(d.services); n > 0 {
		d.log.Info("adopted pinned services", "services", n, "backends", d.backends.len())
	}
	return nil
}

func (d *Dataplane) adoptService(key bpfXlbSvcKey, id uint32, backendIDs []uint32) (*svcState, error) {
	var slot uint32
	if err := d.objs.XlbSvcSlotV1.Lookup(id, &slot); err != nil {
		return nil, err
	}
	slot &= 1
	var cfg bpfXlbSvc
	if err := d.objs.XlbSvcV1.Lookup(id*2+slot, &cfg); err != nil {
		return nil, err
	}
	st := &svcState{id: id, slot: slot, installed: true, flipGen: d.flipGen.Load()}
	for s := range uint32(2) {
		var innerID uint32
		if err := d.objs.XlbTablesV1.Lookup(id*2+s, &innerID); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return nil, fmt.Errorf("table: %w", err)
		}
		if s == 1 && st.tables[0] != nil && innerID == tableID(st.tables[0]) {
			st.tables[1], st.tableSum[1] = st.tables[0], st.tableSum[0]
			continue
		}
		m, err := ebpf.NewMapFromID(ebpf.MapID(innerID))
		if err != nil {
			return nil, fmt.Errorf("open table %d: %w", innerID, err)
		}
		data := make([]uint32, 0, m.MaxEntries())
		if err := batchAll(m, func(_ uint32, v uint32) { data = append(data, v) }); err != nil {
			m.Close()
			return nil, fmt.Errorf("read table: %w", err)
		}
		st.tables[s], st.tableSum[s] = m, sumTable(data)
	}
	if cfg.TableLen == 0 {
		st.tableSum[slot] = tableSum{}
	}

	svc := dataplane.Service{
		Key: dataplane.ServiceKey{
			Addr:  wordsAddr(key.Addr, key.Family),
			Port:  key.Port,
			Proto: dataplane.Proto(key.Proto),
		},
		Enabled:     cfg.Flags&uint16(bpfXlbSvcFlagsXLB_SVC_F_ENABLED) != 0,
		Persistence: time.Duration(cfg.PersistTimeout) * time.Second,
	}
	for s, code := range d.names.sched {
		if code == cfg.Sched {
			svc.Scheduler = s
		}
	}
	for f, code := range d.names.fwd {
		if code == cfg.Fwd {
			svc.Forward = f
		}
	}
	if svc.Forward == dataplane.Tunnel {
		svc.Tunnel = adoptTunnel(cfg)
	}
	var ids []uint32
	for _, bid := range backendIDs {
		if !d.backends.get(bid).retired {
			ids = append(ids, bid)
		}
	}
	slices.SortFunc(ids, func(a, b uint32) int {
		return int(d.backends.get(a).entry.Pos) - int(d.backends.get(b).entry.Pos)
	})
	st.ids = ids
	// The lc/wlc candidates of the active slot, for pins written before
	// they existed (the same as what updateService writes).
	var cands []bpfXlbCand
	for _, bid := range ids {
		if e := d.backends.get(bid).entry; e.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED) != 0 {
			cands = append(cands, candidate(bid, e.Weight, e.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_THRESH) != 0))
		}
	}
	c, err := candsValue(cands)
	if err != nil {
		return nil, err
	}
	if err := d.objs.XlbCandsV1.Put(id*2+slot, &c); err != nil {
		return nil, fmt.Errorf("write candidates: %w", err)
	}
	st.svc = svc
	return st, nil
}

// adoptTunnel reads back a tunnel service's options as svcConfig stored
// them.
func adoptTunnel(cfg bpfXlbSvc) dataplane.TunnelOptions {
	t := dataplane.TunnelOptions{Encap: dataplane.EncapIPIP, GUEPort: cfg.GuePort}
	if cfg.Flags&uint16(bpfXlbSvcFlagsXLB_SVC_F_GUE) != 0 {
		t.Encap = dataplane.EncapGUE
	}
	if cfg.TunSrc != [16]uint8{} {
		fam := uint8(familyV4)
		if cfg.Flags&uint16(bpfXlbSvcFlagsXLB_SVC_F_TUN_SRC6) != 0 {
			fam = familyV6
		}
		// An entry pinned before the prefix length was stored reads as
		// /0: it differs from any configuration and is installed anew.
		t.Source = netip.PrefixFrom(wordsAddr(cfg.TunSrc, fam), int(cfg.TunSrcLen))
	}
	return t
}

func tableID(m *ebpf.Map) uint32 {
	info, err := m.Info()
	if err != nil {
		return 0
	}
	id, _ := info.ID()
	return uint32(id)
}

// batchAll reads every entry of a map in batches (of 4,096 entries, or
// the map's size if smaller: a scheduling table of 64 is read in one of
// 64), falling back to iteration where the kernel has no batch lookups
// for the map type.
func batchAll[K, V any](m *ebpf.Map, fn func(K, V)) error {
	chunk := int(min(4096, max(1, m.MaxEntries())))
	keys := make([]K, chunk)
	vals := make([]V, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return err
		}
	}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		fn(k, v)
	}
	return it.Err()
}
