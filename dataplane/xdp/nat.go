package xdp

import (
	"slices"

	"github.com/xlb-dev/xlb/dataplane"
)

// xlb_nat_reals_v1 maps each NAT real server (address:port/proto) to its
// service and backend, for replies that come without connection state. A
// real server in two NAT services under the same address and port is
// left out: its replies cannot be attributed. The map follows the
// services incrementally: an Apply that changes one service touches only
// the entries of that service's real servers, not 65,536 of them.

// natOwners are the (service, backend) pairs of the installed NAT services
// that have one real server.
type natOwners struct {
	n    int
	one  bpfXlbNatReal
	more []bpfXlbNatReal
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
	for bk, id := range st.live {
		k := natKey(bk, st.natProto)
		o := d.natOwn[k]
		v := bpfXlbNatReal{Svc: st.id, Backend: id}
		if o.n == 0 {
			o.one = v
		} else {
			o.more = append(o.more, v)
		}
		o.n++
		d.natOwn[k] = o
		d.natDirty[k] = true
	}
}

// natDrop forgets what natAdd counted of st.
func (d *Dataplane) natDrop(st *svcState) {
	if !st.natOn {
		return
	}
	st.natOn = false
	for bk, id := range st.live {
		k := natKey(bk, st.natProto)
		o, ok := d.natOwn[k]
		if !ok {
			continue
		}
		v := bpfXlbNatReal{Svc: st.id, Backend: id}
		if o.one == v {
			if len(o.more) > 0 {
				o.one = o.more[len(o.more)-1]
				o.more = o.more[:len(o.more)-1]
			}
		} else if i := slices.Index(o.more, v); i >= 0 {
			o.more = slices.Delete(o.more, i, i+1)
		} else {
			continue
		}
		o.n--
		if o.n == 0 {
			delete(d.natOwn, k)
		} else {
			d.natOwn[k] = o
		}
		d.natDirty[k] = true
	}
}

// syncNATReals queues the changes of xlb_nat_reals_v1 for the real servers
// whose owners changed.
func (d *Dataplane) syncNATReals(w *writes) {
	ambiguous := 0
	var example bpfXlbSvcKey
	for k := range d.natDirty {
		o := d.natOwn[k]
		cur, installed := d.natReals[k]
		switch {
		case o.n == 1 && (!installed || cur != o.one):
			w.nat.put(k, o.one)
			d.natReals[k] = o.one
		case o.n != 1 && installed:
			w.nat.del(k)
			delete(d.natReals, k)
		}
		if o.n > 1 {
			ambiguous++
			example = k
		}
	}
	clear(d.natDirty)
	if ambiguous > 0 {
		d.log.Warn("NAT real servers in several services: their replies need connection state",
			"real_servers", ambiguous, "example", wordsAddr(example.Addr, example.Family), "port", example.Port)
	}
}
