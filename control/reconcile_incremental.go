package control

import (
	"maps"
	"time"

	"github.com/xlb-dev/xlb/control/health"
)

// Incremental rounds. A round whose only inputs that changed since the
// last round are checks' states computes again only the services of
// those checks; every other service is the last round's, its backends
// shared (desiredFrom). A storm of check changes at 65,536 real servers
// otherwise made a round of every service for each batch of changes,
// 33-80 ms of CPU each, while status calls and the checks needed the two
// cores. Any other input that changed (the model, the weights checks
// set, the operators' overrides, the VRRP roles, the next hops, the
// adopted MACs' grace), a round that did not apply, or checks not read in
// the model's order, make the round whole.

// roundBase is what the last round computed from, for the next round to
// tell what changed since. Used under r.round.
type roundBase struct {
	// ok: the last round's desired state was applied (or found applied)
	// and it read the checks in order; the rest is valid.
	ok        bool
	gen       uint64         // the model's generation
	ordered   []health.State // the checks' states, by check number - 1
	weights   map[string]health.Weight
	overrides uint64 // Reconciler.overridesGen
	roles     map[string]Role
	neigh     uint64 // Neighbors.Version
	now       time.Time
	// svcOf is the service (its index in the model of generation svcOfGen)
	// of each numbered check, or -1 for a check that the entries of a
	// group share (its change makes the round whole).
	svcOf    []int32
	svcOfGen uint64
}

// dirty returns which services of in's model a round must compute again,
// or nil when it must compute them all. gen is the model's generation,
// overrides and neigh the versions of the overrides and next hops the
// round read (before reading them). The last round's Apply succeeded and
// it was past the adopted MACs' grace, or b is not ok (record).
func (b *roundBase) dirty(in Inputs, gen, overrides, neigh uint64) []bool {
	if !b.ok || b.gen != gen || in.Ordered == nil || len(in.Ordered) != len(b.ordered) ||
		b.overrides != overrides || b.neigh != neigh ||
		!maps.Equal(in.Weights, b.weights) || !sameRoles(in.Roles, b.roles, b.now) {
		return nil
	}
	dirty := make([]bool, len(in.Model.Services))
	for i, st := range in.Ordered {
		if st == b.ordered[i] {
			continue
		}
		s := b.svcOf[i]
		if s < 0 || int(s) >= len(dirty) {
			return nil
		}
		dirty[s] = true
	}
	return dirty
}

// sameRoles reports whether two rounds' roles make every service forward
// alike: the same instances, masters, and deadlines (Role.Until,
// HandoverUntil), none of which was still ahead at the earlier round's
// time since (forwards compares them with the round's time).
func sameRoles(a, b map[string]Role, since time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ra := range a {
		rb, ok := b[k]
		if !ok || ra.Master != rb.Master || !ra.Until.Equal(rb.Until) || !ra.HandoverUntil.Equal(rb.HandoverUntil) ||
			ra.Until.After(since) || ra.HandoverUntil.After(since) {
			return false
		}
	}
	return true
}

// record keeps the inputs of a round whose desired state is applied.
func (b *roundBase) record(in Inputs, gen, overrides, neigh uint64) {
	b.ok = in.Ordered != nil && !in.adoptingMACs()
	if !b.ok {
		return
	}
	if b.svcOf == nil || b.svcOfGen != gen || len(b.svcOf) != len(in.Ordered) {
		b.svcOf = checkServices(in.Model, len(in.Ordered), b.svcOf)
		b.svcOfGen = gen
	}
	b.gen = gen
	b.ordered = append(b.ordered[:0], in.Ordered...)
	b.weights = in.Weights
	b.overrides = overrides
	b.roles = in.Roles // the round's copy
	b.neigh = neigh
	b.now = in.Now
}

// adoptingMACs reports whether the MACs of real servers found installed
// at start may stand in for unresolved ones in in's round (Inputs.backend):
// their grace runs out with time alone.
func (in Inputs) adoptingMACs() bool { return in.AdoptMACs && len(in.Adopted) > 0 }

// checkServices returns, in buf, the service of each of m's n numbered
// checks (roundBase.svcOf).
func checkServices(m Model, n int, buf []int32) []int32 {
	const unset = -2
	out := buf[:0]
	for range n {
		out = append(out, unset)
	}
	for si, s := range m.Services {
		for _, rs := range s.Reals {
			i := int(rs.checkIdx) - 1
			if i < 0 || i >= n {
				continue
			}
			switch out[i] {
			case unset:
				out[i] = int32(si)
			case int32(si):
			default:
				out[i] = -1 // a group's entries share it
			}
		}
	}
	return out
}
