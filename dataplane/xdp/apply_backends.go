package xdp

import (
	"fmt"
	"iter"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/dataplane"
)

// beState is a backend id in use. It holds no pointer and no netip.Addr
// (24 bytes and a pointer): there are 65,536 of them.
type beState struct {
	// entry is as written to xlb_backends_v1; its Svc, Addr, Family and
	// Port are the service's id and the real server's from the id's
	// allocation on (key).
	entry   bpfXlbBackend
	thresh  bpfXlbBeThresh // as written to xlb_be_thresh_v1
	retired bool
	live    bool // in use (beTable)
}

// key is the real server the id is of.
func (be *beState) key() dataplane.BackendKey {
	return dataplane.BackendKey{Addr: wordsAddr(be.entry.Addr, be.entry.Family), Port: be.entry.Port}
}

// is reports whether the id is of real server k.
func (be *beState) is(k dataplane.BackendKey) bool {
	a, fam := addrWords(k.Addr)
	return be.entry.Port == k.Port && be.entry.Family == fam && be.entry.Addr == a
}

// newBeState is the state of an id allocated to real server k of service
// svc, not written yet.
func newBeState(svc uint32, k dataplane.BackendKey) beState {
	a, fam := addrWords(k.Addr)
	return beState{entry: bpfXlbBackend{Svc: svc, Addr: a, Family: fam, Port: k.Port}}
}

// beTable is the state of every backend id in use, indexed by id: a slice
// of values rather than a map of pointers (at 64,000 real servers 5 MB
// instead of 10, and nothing for the collector to scan). A pointer that
// get or add returned is valid until the next add.
type beTable struct {
	s []beState
	n int
}

// get returns the state of id, nil when id is not in use.
func (t *beTable) get(id uint32) *beState {
	if int(id) < len(t.s) && t.s[id].live {
		return &t.s[id]
	}
	return nil
}

// add puts id in use with state be.
func (t *beTable) add(id uint32, be beState) *beState {
	if int(id) >= len(t.s) {
		n := min(max(2*len(t.s), int(id)+1, 64), max(maxBackends, int(id)+1))
		// Exactly n: append grows a large slice by a quarter at a time,
		// past n (65,536 ids took 80,793: 6.5 MB, not 5.2).
		s := make([]beState, n)
		copy(s, t.s)
		t.s = s
	}
	if !t.s[id].live {
		t.n++
	}
	be.live = true
	t.s[id] = be
	return &t.s[id]
}

// del puts id out of use.
func (t *beTable) del(id uint32) {
	if be := t.get(id); be != nil {
		*be = beState{}
		t.n--
	}
}

// len is the number of ids in use.
func (t *beTable) len() int { return t.n }

// all yields the ids in use and their states, in id order; the loop may
// del the id it is at.
func (t *beTable) all() iter.Seq2[uint32, *beState] {
	return func(yield func(uint32, *beState) bool) {
		for i := range t.s {
			if t.s[i].live && !yield(uint32(i), &t.s[i]) {
				return
			}
		}
	}
}

// ids bounds the ids in use: every one is below it.
func (t *beTable) ids() int {
	for i := len(t.s) - 1; i >= 0; i-- {
		if t.s[i].live {
			return i + 1
		}
	}
	return 0
}

// sameBackend reports whether b installs as the entry of id: the same real
// server, weight, thresholds and next hop.
func (d *Dataplane) sameBackend(id uint32, b dataplane.Backend) bool {
	be := d.backends.get(id)
	if be == nil || be.retired || !be.is(b.Key()) || be.entry.Weight != b.Weight ||
		be.thresh != (bpfXlbBeThresh{Upper: b.UpperThreshold, Lower: b.LowerThreshold}) {
		return false
	}
	hasMAC := be.entry.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_HAS_MAC) != 0
	if b.MAC.Valid() && b.Ifindex > 0 {
		return hasMAC && be.entry.Mac == b.MAC && be.entry.Ifindex == uint32(b.Ifindex)
	}
	return !hasMAC
}

// backendsOf returns the installed backends of st, from their entries.
func (d *Dataplane) backendsOf(st *svcState) []dataplane.Backend {
	out := make([]dataplane.Backend, 0, len(st.ids))
	for _, id := range st.ids {
		be := d.backends.get(id)
		k := be.key()
		b := dataplane.Backend{Addr: k.Addr, Port: k.Port, Weight: be.entry.Weight,
			UpperThreshold: be.thresh.Upper, LowerThreshold: be.thresh.Lower}
		if be.entry.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_HAS_MAC) != 0 {
			b.MAC = be.entry.Mac
			b.Ifindex = int32(be.entry.Ifindex)
		}
		out = append(out, b)
	}
	return out
}

// retiredKey finds a retired backend id by its service and real server.
type retiredKey struct {
	svc uint32
	key dataplane.BackendKey
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
	if b.MAC.Valid() && b.Ifindex > 0 {
		smac, err := d.ifaceMAC(int(b.Ifindex))
		if err != nil || len(smac) != 6 {
			return e, fmt.Errorf("real server %s: egress interface %d: %v", b.Key(), b.Ifindex, err)
		}
		e.Ifindex = uint32(b.Ifindex)
		e.Mac = b.MAC
		copy(e.Smac[:], smac)
		e.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_HAS_MAC)
		// Redirects to an interface need it in the devmap.
		if !d.devmap[int(b.Ifindex)] {
			if err := d.objs.XlbDevmapV1.Update(uint32(b.Ifindex), uint32(b.Ifindex), ebpf.UpdateAny); err != nil {
				return e, fmt.Errorf("devmap: %w", err)
			}
			d.devmap[int(b.Ifindex)] = true
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
	be := d.backends.get(id)
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
	if d.backends.get(id).entry.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_THRESH) == 0 {
		return false
	}
	var cur bpfXlbBackend
	return d.objs.XlbBackendsV1.Lookup(id, &cur) == nil && cur.Overload != 0
}

// setOverload sets or clears a backend's overload flag.
func (d *Dataplane) setOverload(id uint32, on bool) error {
	be := d.backends.get(id)
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

// withOverload keeps in e the overload flag the program set, while the
// backend has thresholds (a flag set between the read and the write is
// lost; the next new flow the backend takes sets it again).
func (d *Dataplane) withOverload(id uint32, e bpfXlbBackend) bpfXlbBackend {
	e.Overload = 0
	if e.Flags&uint32(bpfXlbBackendFlagsXLB_BE_F_THRESH) != 0 && d.overloaded(id) {
		e.Overload = 1
	}
	return e
}

// retireBackend stops new flows to a backend removed from its service; its
// established flows go on until they end, then Sync frees the id.
func (d *Dataplane) retireBackend(q *queue[uint32, bpfXlbBackend], id uint32) {
	be := d.backends.get(id)
	e := be.entry
	e.Flags &^= uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED)
	e.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_RETIRED)
	q.put(id, e)
	be.entry, be.retired = e, true
	d.retired[retiredKey{be.entry.Svc, be.key()}] = id
}
