package control

import (
	"net/netip"
	"slices"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
)

// Inputs are everything the desired dataplane state is computed from.
type Inputs struct {
	Model Model
	// Health is the state of every health check by CheckKey; a check that
	// is missing or unknown has not decided yet.
	Health map[string]health.State
	// Ordered, when not nil, is the state of each check of the model's
	// numbered list (Model.checkOrder, RealSpec.checkIdx), and Health is
	// not read.
	Ordered []health.State
	// Weights are the weights checks set (misc_dynamic, file) by CheckKey;
	// a missing one leaves the configured weight.
	Weights map[string]health.Weight
	// Overrides are the weights operators set (xlb set-weight): they
	// replace the configured weight, and a check's (weights.go).
	Overrides map[OverrideKey]uint32
	// Roles are the VRRP instances' roles as last reported.
	Roles map[string]Role
	// Last are the service states of the previous round: a service's
	// quorum has hysteresis.
	Last map[dataplane.ServiceKey]ServiceState
	// NextHops are the next hops the resolver knows of direct-routing real
	// servers; nil when the dataplane resolves its own.
	NextHops map[netip.Addr]NextHop
	// Installed and Adopted are what the dataplane had installed at start
	// (Reconciler.adopted); AdoptMACs is whether adopted MACs still stand
	// in for unresolved ones.
	Installed map[dataplane.ServiceKey]bool
	Adopted   map[dataplane.ServiceKey]map[dataplane.BackendKey]dataplane.Backend
	AdoptMACs bool
	// Now is the time of the round (tentative roles).
	Now time.Time
}

// NextHop is a direct-routing real server's next hop.
type NextHop struct {
	MAC     dataplane.MAC
	Ifindex int32
}

// Desired is the dataplane state wanted for in, and the state of each
// service: a pure function of in.
func Desired(in Inputs) ([]dataplane.Service, map[dataplane.ServiceKey]ServiceState) {
	out, states, _ := desiredFrom(in, nil, nil)
	return out, states
}

// desiredFrom is Desired, the backends of each service that comes out as
// in prev (the state applied last, in the same order when the model did
// not change) prev's own: a round that changes one service of a thousand
// makes one service's backends, not 65,536 (4.6 MB each round, and a
// second copy of them during every reload). Backends are never changed
// once made: sharing them is safe. With dirty (an incremental round), a
// service it does not mark is prev's, and its state in.Last's, as they
// are: only its checks could have changed it, and they did not. It
// returns how many services it computed.
func desiredFrom(in Inputs, prev []dataplane.Service, dirty []bool) ([]dataplane.Service, map[dataplane.ServiceKey]ServiceState, int) {
	out := make([]dataplane.Service, 0, len(in.Model.Services))
	states := make(map[dataplane.ServiceKey]ServiceState, len(in.Model.Services))
	var scratch []dataplane.Backend // the backends being made, reused
	computed := 0
	for i, s := range in.Model.Services {
		if dirty != nil && !dirty[i] && i < len(prev) && prev[i].Key == s.Key {
			if st, ok := in.Last[s.Key]; ok {
				out = append(out, prev[i])
				states[s.Key] = st
				continue
			}
		}
		computed++
		svc, st := in.service(s, scratch[:0])
		scratch = svc.Backends
		switch {
		case i < len(prev) && prev[i].Key == svc.Key && slices.EqualFunc(svc.Backends, prev[i].Backends, dataplane.BackendEqual):
			svc.Backends = prev[i].Backends
		case prev == nil:
			scratch = nil // out keeps it: the next service makes its own
		default:
			svc.Backends = slices.Clone(svc.Backends)
		}
		out = append(out, svc)
		states[s.Key] = st
	}
	return out, states, computed
}

// service is the desired state of s, its backends appended to buf.
func (in Inputs) service(s ServiceSpec, buf []dataplane.Backend) (dataplane.Service, ServiceState) {
	if buf == nil {
		buf = make([]dataplane.Backend, 0, len(s.Reals)+1)
	}
	svc := dataplane.Service{
		Name:        s.Name,
		Key:         s.Key,
		Scheduler:   s.Scheduler,
		Forward:     s.Forward,
		Persistence: s.Persistence,
		Tunnel:      s.Tunnel,
		Enabled:     in.forwards(s),
		Backends:    buf,
	}
	var healthy uint64
	for _, rs := range s.Reals {
		b := in.backend(s, rs)
		if in.healthy(s, rs) {
			b.Weight = in.weight(s, rs)
			healthy += uint64(b.Weight)
		} else {
			b.Weight = 0 // no new flows; established ones drain
		}
		svc.Backends = append(svc.Backends, b)
	}
	st := ServiceState{Name: s.Name, Key: s.Key, Up: in.quorum(s, healthy), Healthy: healthy, Forwarding: svc.Enabled}
	if !st.Up && s.Sorry != nil {
		for i := range svc.Backends {
			svc.Backends[i].Weight = 0
		}
		sorry := in.backend(s, *s.Sorry)
		sorry.Weight = max(1, s.Sorry.Weight)
		if i := slices.IndexFunc(svc.Backends, func(b dataplane.Backend) bool { return b.Key() == sorry.Key() }); i >= 0 {
			svc.Backends[i] = sorry
		} else {
			svc.Backends = append(svc.Backends, sorry)
		}
		st.SorryActive = true
	}
	return svc, st
}

// healthy reports whether a real server takes new flows: its check passes,
// or it has none; until its check decides, if it took new flows when the
// daemon started, or if its check starts up (initial_state). So a start or
// a reload does not install such a real server at weight 0 first and
// raise it a moment later.
func (in Inputs) healthy(s ServiceSpec, rs RealSpec) bool {
	if rs.checkType() == checktype.None {
		return true
	}
	switch in.checkState(s, rs) {
	case health.StateUp:
		return true
	case health.StateDown:
		return false
	}
	if b, found := in.Adopted[s.Key][rs.Key()]; found && b.Weight > 0 {
		return true // took new flows before the restart
	}
	return rs.Check.InitialUp
}

// checkState is the state of rs's check (StateUnknown when it has none or
// it is not known): from the ordered states when the round has them.
func (in Inputs) checkState(s ServiceSpec, rs RealSpec) health.State {
	if in.Ordered != nil {
		if i := int(rs.checkIdx) - 1; i >= 0 && i < len(in.Ordered) {
			return in.Ordered[i]
		}
		return health.StateUnknown
	}
	return in.Health[s.checkKey(rs)]
}

// forwards reports whether a service forwards: always without a VRRP
// instance, while it is MASTER otherwise, and while a former master hands
// over; while its role is unknown or tentative, as it did in the
// dataplane found at start.
func (in Inputs) forwards(s ServiceSpec) bool {
	if s.Instance == "" {
		return true
	}
	role, ok := in.Roles[s.Instance]
	if !ok {
		// Not reported yet (the daemon just started): as found installed.
		return in.Installed[s.Key]
	}
	if !role.Master && in.Now.Before(role.HandoverUntil) {
		return true // a former master hands over
	}
	if !role.Master && !role.Until.IsZero() && in.Now.Before(role.Until) {
		return in.Installed[s.Key]
	}
	return role.Master
}

// quorum applies keepalived's quorum with hysteresis: the service comes
// up when the healthy weight reaches quorum+hysteresis and goes down when
// it falls below quorum-hysteresis.
func (in Inputs) quorum(s ServiceSpec, healthy uint64) bool {
	q, h := uint64(s.Quorum), uint64(s.Hysteresis)
	last, known := in.Last[s.Key]
	switch {
	case !known:
		return healthy >= q
	case last.Up:
		return healthy+h >= q
	default:
		return healthy >= q+h
	}
}

func (in Inputs) backend(s ServiceSpec, rs RealSpec) dataplane.Backend {
	b := dataplane.Backend{Addr: rs.Addr, Port: rs.Port, Weight: rs.Weight,
		UpperThreshold: rs.UpperThreshold, LowerThreshold: rs.LowerThreshold}
	if s.Forward != dataplane.DirectRouting || in.NextHops == nil {
		return b
	}
	if hop, ok := in.NextHops[rs.Addr]; ok {
		b.MAC, b.Ifindex = hop.MAC, hop.Ifindex
	} else if a, found := in.Adopted[s.Key][b.Key()]; found && a.MAC.Valid() && in.AdoptMACs {
		b.MAC, b.Ifindex = a.MAC, a.Ifindex
	}
	return b
}
