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

// natTable holds the natEntry of every NAT real server by its key in
// xlb_nat_reals_v1. An IPv4 key is held in 8 bytes rather than
// bpfXlbSvcKey's 20: a map of 64,000 IPv4 real servers takes 2.8 MB of
// heap with the short key, 5.2 with the whole one.
type natTable struct {
	v4 map[natKey4]natEntry
	v6 map[bpfXlbSvcKey]natEntry
}

// natKey4 is an IPv4 real server's key: its address, port and protocol.
type natKey4 struct {
	addr  [4]byte
	port  uint16
	proto uint8
}

func newNATTable() natTable {
	return natTable{v4: map[natKey4]natEntry{}, v6: map[bpfXlbSvcKey]natEntry{}}
}

// short is k's natKey4 when it is an IPv4 key as addrWords makes them
// (the address's other 12 bytes zero).
func short(k bpfXlbSvcKey) (natKey4, bool) {
	if k.Family != familyV4 || [12]byte(k.Addr[4:]) != [12]byte{} {
		return natKey4{}, false
	}
	return natKey4{addr: [4]byte(k.Addr[:4]), port: k.Port, proto: k.Proto}, true
}

func (t natTable) get(k bpfXlbSvcKey) (natEntry, bool) {
	if k4, ok := short(k); ok {
		e, ok := t.v4[k4]
		return e, ok
	}
	e, ok := t.v6[k]
	return e, ok
}

func (t natTable) set(k bpfXlbSvcKey, e natEntry) {
	if k4, ok := short(k); ok {
		t.v4[k4] = e
		return
	}
	t.v6[k] = e
}

func (t natTable) del(k bpfXlbSvcKey) {
	if k4, ok := short(k); ok {
		delete(t.v4, k4)
		return
	}
	delete(t.v6, k)
}

func (t natTable) len() int { return len(t.v4) + len(t.v6) }

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
		e, _ := d.nat.get(k)
		if e.n == 0 {
			e.setOwner(bpfXlbNatReal{Svc: st.id, Backend: id})
		}
		e.n++
		d.nat.set(k, e)
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
		e, ok := d.nat.get(k)
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
		d.nat.set(k, e)
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
		e, _ := d.nat.get(k)
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
			d.nat.del(k)
		} else {
			d.nat.set(k, e)
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
