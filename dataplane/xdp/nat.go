package xdp

import (
	"github.com/xlb-dev/xlb/dataplane"
)

// xlb_nat_reals_v1 maps each NAT real server (address:port/proto) to its
// service and backend, for replies that come without connection state. A
// real server in two NAT services under the same address and port is
// left out: its replies cannot be attributed. The map follows the
// services incrementally: an Apply that changes one service touches only
// the entries of that service's real servers, not 65,536 of them.

// natEntry is what is known of one NAT real server: how many installed
// NAT services have it, the one that does when it is one (natLost: that
// one is not known, after the last but one left), and whether
// xlb_nat_reals_v1 holds it (natInstalled: owner, unless natStale). 12
// bytes: there are 65,536 of them.
type natEntry struct {
	owner bpfXlbNatReal
	n     uint16
	flags natFlags
}

type natFlags uint8

const (
	natLost natFlags = 1 << iota
	natInstalled
	// natStale: owner changed since it was written (xlb_nat_reals_v1 may
	// hold another).
	natStale
)

// n counts services: it holds every one.
var _ [1<<16 - 1 - maxServices]struct{}

func (e *natEntry) is(f natFlags) bool { return e.flags&f != 0 }

// setOwner makes o the owner, found.
func (e *natEntry) setOwner(o bpfXlbNatReal) {
	if e.is(natInstalled) && e.owner != o {
		e.flags |= natStale
	}
	e.owner = o
	e.flags &^= natLost
}

func natKey(k dataplane.BackendKey, proto dataplane.Proto) bpfXlbSvcKey {
	return svcKey(dataplane.ServiceKey{Addr: k.Addr, Port: k.Port, Proto: proto})
}

// natAdd counts st's real servers as its own, if it is a NAT service.
func (d *Dataplane) natAdd(st *svcState) {
	if st.natOn || st.svc.Forward != dataplane.NAT {
		return
	}
	st.natOn, st.natProto = true, st.svc.Key.Proto
	for _, id := range st.ids {
		k := natKey(d.backends.get(id).key(), st.natProto)
		e := d.nat[k]
		if e.n == 0 {
			e.setOwner(bpfXlbNatReal{Svc: st.id, Backend: id})
		}
		e.n++
		d.nat[k] = e
		d.natDirty[k] = true
	}
}

// natDrop forgets what natAdd counted of st.
func (d *Dataplane) natDrop(st *svcState) {
	if !st.natOn {
		return
	}
	st.natOn = false
	for _, id := range st.ids {
		k := natKey(d.backends.get(id).key(), st.natProto)
		e, ok := d.nat[k]
		if !ok || e.n == 0 {
			continue
		}
		e.n--
		if e.owner == (bpfXlbNatReal{Svc: st.id, Backend: id}) {
			e.flags &^= natLost
			if e.n > 0 {
				e.flags |= natLost
			}
		}
		d.nat[k] = e
		d.natDirty[k] = true
	}
}

// syncNATReals queues the changes of xlb_nat_reals_v1 for the real servers
// whose owners changed.
func (d *Dataplane) syncNATReals(w *writes) {
	var owners map[bpfXlbSvcKey]bpfXlbNatReal // found again, when lost
	ambiguous := 0
	var example bpfXlbSvcKey
	for k := range d.natDirty {
		e := d.nat[k]
		if e.n == 1 && e.is(natLost) {
			if owners == nil {
				owners = d.natOwners()
			}
			e.setOwner(owners[k])
		}
		switch {
		case e.n == 1 && (!e.is(natInstalled) || e.is(natStale)):
			w.nat.put(k, e.owner)
			if !e.is(natInstalled) {
				d.natN++
			}
			e.flags = e.flags&^natStale | natInstalled
		case e.n != 1 && e.is(natInstalled):
			w.nat.del(k)
			e.flags &^= natInstalled | natStale
			d.natN--
		}
		if e.n > 1 {
			ambiguous++
			example = k
		}
		if e.n == 0 && !e.is(natInstalled) {
			delete(d.nat, k)
		} else {
			d.nat[k] = e
		}
	}
	if len(d.natDirty) > 1024 {
		d.natDirty = map[bpfXlbSvcKey]bool{} // its memory too
	} else {
		clear(d.natDirty)
	}
	if ambiguous > 0 {
		d.log.Warn("NAT real servers in several services: their replies need connection state",
			"real_servers", ambiguous, "example", wordsAddr(example.Addr, example.Family), "port", example.Port)
	}
}

// natOwners finds the owner of every NAT real server (the last of them).
func (d *Dataplane) natOwners() map[bpfXlbSvcKey]bpfXlbNatReal {
	out := map[bpfXlbSvcKey]bpfXlbNatReal{}
	for _, st := range d.services {
		if !st.natOn {
			continue
		}
		for _, id := range st.ids {
			out[natKey(d.backends.get(id).key(), st.natProto)] = bpfXlbNatReal{Svc: st.id, Backend: id}
		}
	}
	return out
}
