package control

import (
	"maps"
	"net/netip"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
)

// A round's inputs: the checks' states, the snapshot Desired computes
// from, the next hops, the end of adoption (reconcile.go runs the round).

// checkStates reads the checks' states for a round: in the order of the
// model's numbered checks when HealthOrdered knows them (ordered, and
// r.orderedOf says of which model), by key otherwise. Called without the
// lock, by the round (r.round held: its buffer is the round's).
func (r *Reconciler) checkStates() (map[string]health.State, []health.State) {
	if r.ordered != nil {
		r.mu.Lock()
		order := r.model.checkOrder
		r.mu.Unlock()
		if order != 0 {
			if st, ok := r.ordered(order, r.orderedBuf); ok {
				r.orderedBuf, r.orderedOf = st, order
				return nil, st
			}
		}
	}
	return r.health(), nil
}

// inputs gathers what Desired computes from: a snapshot, which a round
// reads without the lock (the roles copied; the model, the last states,
// the adopted real servers and the overrides are replaced, never changed
// in place). Called with r.mu held; checks are the checks' states.
func (r *Reconciler) inputs(checks map[string]health.State) Inputs {
	in := Inputs{Model: r.model, Health: checks, Roles: maps.Clone(r.roles), Last: r.states,
		Installed: r.installed, Adopted: r.adopted, Now: r.now(), Overrides: r.overrides}
	in.AdoptMACs = in.Now.Before(r.adoptUntil)
	return in
}

// nextHops asks the resolver for the next hop of every direct-routing real
// server of in's model (it starts resolving those it does not know, and
// has it probe again those whose check is down) and to keep tunnelled real
// servers' next hops resolved; with dirty, only of the services it marks
// (an incremental round: the others' next hops did not change, and their
// real servers' checks neither). Called without the lock: the resolver is
// not called under it, and status does not wait for 65,536 lookups.
func (r *Reconciler) nextHops(in *Inputs, dirty []bool) {
	if r.neigh == nil {
		return
	}
	in.NextHops = map[netip.Addr]NextHop{}
	for i, s := range in.Model.Services {
		if dirty != nil && !dirty[i] {
			continue
		}
		for _, rs := range s.reals() {
			switch s.Forward {
			case dataplane.DirectRouting:
				if mac, ifindex, ok := r.neigh.Lookup(rs.Addr); ok {
					in.NextHops[rs.Addr] = NextHop{MAC: dataplane.MACFrom(mac), Ifindex: int32(ifindex)}
					if in.checkState(s, rs) == health.StateDown {
						r.neigh.Reprobe(rs.Addr)
					}
				}
			case dataplane.Tunnel:
				r.neigh.KeepRoute(rs.Addr)
			}
		}
	}
}

// endAdoption ends the adoption of a real server's weight once its check
// has decided: from then on the check alone says whether it takes new
// flows (a check whose probe a reload changed starts undecided again, but
// what was found at start no longer stands for it). Its MAC stays adopted
// for the grace period. Called with r.mu held.
func (r *Reconciler) endAdoption(in Inputs) {
	if len(r.adopted) == 0 {
		return
	}
	for _, s := range r.model.Services {
		if r.adopted[s.Key] == nil {
			continue
		}
		copied := false
		for _, rs := range s.Reals {
			b, ok := r.adopted[s.Key][rs.Key()]
			if ok && b.Weight > 0 && in.checkState(s, rs) != health.StateUnknown {
				b.Weight = 0
				if !copied {
					// A round computing without the lock may read the map.
					r.adopted[s.Key], copied = maps.Clone(r.adopted[s.Key]), true
				}
				r.adopted[s.Key][rs.Key()] = b
			}
		}
	}
}
