package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Mode is [bgp] announce.
type Mode string

const (
	// Healthy announces a VIP while one of its services is forwarded, at
	// quorum (or its sorry server serves), its connection sync ready and
	// its VRRP instance, if any, MASTER.
	Healthy Mode = "healthy"
	// Always announces a VIP while one of its services is forwarded,
	// whatever its quorum, sync or VRRP state (active-active directors
	// without VRRP).
	Always Mode = "always"
)

// Drain is where a director is in a drain (`xlb drain`, SIGTERM).
type Drain uint8

const (
	// Serving: announced by the rules.
	Serving Drain = iota
	// Draining: what would be announced is, with the GRACEFUL_SHUTDOWN
	// community, so that routers move new flows elsewhere first.
	Draining
	// Drained: nothing is announced (the sessions are closed).
	Drained
)

func (d Drain) String() string {
	switch d {
	case Draining:
		return "draining"
	case Drained:
		return "drained"
	}
	return "serving"
}

// GracefulShutdown is the GRACEFUL_SHUTDOWN well-known community,
// 65535:0 (RFC 8326 section 3).
const GracefulShutdown uint32 = 0xFFFF0000

// Service is the state of one virtual service that the decision needs.
type Service struct {
	Name string
	VIP  netip.Addr
	// Forwarding: the dataplane forwards the service (its applied state).
	Forwarding bool
	// Up: the healthy weight reaches the quorum.
	Up bool
	// SorryActive: below quorum, its sorry server takes the new flows.
	SorryActive bool
	// Instance is the VRRP instance the service follows ("": none);
	// Master whether it is MASTER here.
	Instance string
	Master   bool
	// SyncReady: connection sync, where configured, has caught up, so
	// that this director can take flows another one scheduled. True until
	// connection sync exists (and for services without it).
	SyncReady bool
}

// Attrs are the attributes of a VIP's route.
type Attrs struct {
	MED         *uint32
	LocalPref   *uint32
	Communities []uint32
}

// Equal reports whether a and b are the same attributes.
func (a Attrs) Equal(b Attrs) bool {
	eq := func(x, y *uint32) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return eq(a.MED, b.MED) && eq(a.LocalPref, b.LocalPref) && slices.Equal(a.Communities, b.Communities)
}

// Inputs are everything the announcement decision depends on.
type Inputs struct {
	Mode     Mode
	Drain    Drain
	Services []Service
	// VIPs holds the configured attributes of some VIPs ([[bgp.vip]]).
	VIPs map[netip.Addr]Attrs
}

// Route is a VIP to announce.
type Route struct {
	Prefix netip.Prefix
	Attrs  Attrs
}

// VIPState is the decision about one VIP.
type VIPState struct {
	VIP       netip.Addr
	Announced bool
	// Reason says why it is announced (the services that hold) or not
	// (each service's first failing condition).
	Reason string
}

// Decision is what to announce.
type Decision struct {
	// Routes are the VIPs to announce, sorted by prefix.
	Routes []Route
	// VIPs says, for every VIP of a service, whether and why it is
	// announced, sorted by address.
	VIPs []VIPState
}

// Decide computes the routes to announce. It is a pure function: the
// speaker applies the difference between two decisions.
func Decide(in Inputs) Decision {
	byVIP := map[netip.Addr][]Service{}
	for _, s := range in.Services {
		byVIP[s.VIP] = append(byVIP[s.VIP], s)
	}
	vips := make([]netip.Addr, 0, len(byVIP))
	for a := range byVIP {
		vips = append(vips, a)
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	var d Decision
	for _, a := range vips {
		var holding, failing []string
		for _, s := range byVIP[a] {
			if why := holds(in.Mode, s); why != "" {
				failing = append(failing, s.Name+": "+why)
			} else {
				holding = append(holding, s.Name)
			}
		}
		st := VIPState{VIP: a}
		switch {
		case len(holding) == 0:
			st.Reason = strings.Join(failing, "; ")
		case in.Drain == Drained:
			st.Reason = "drained (xlb drain): withdrawn"
		default:
			st.Announced = true
			st.Reason = "held by " + strings.Join(holding, ", ")
			attrs := in.VIPs[a]
			attrs.Communities = slices.Clone(attrs.Communities)
			if in.Drain == Draining {
				st.Reason = "draining (xlb drain): GRACEFUL_SHUTDOWN, " + st.Reason
				if !slices.Contains(attrs.Communities, GracefulShutdown) {
					attrs.Communities = append(attrs.Communities, GracefulShutdown)
				}
			}
			d.Routes = append(d.Routes, Route{Prefix: netip.PrefixFrom(a, a.BitLen()), Attrs: attrs})
		}
		d.VIPs = append(d.VIPs, st)
	}
	return d
}

// holds returns "" when s holds its VIP up, else the first condition that
// fails.
func holds(mode Mode, s Service) string {
	switch {
	case !s.Forwarding:
		return "not forwarded by the dataplane"
	case mode == Always:
		return ""
	case !s.Up && !s.SorryActive:
		return "below quorum"
	case !s.SyncReady:
		return "connection sync not ready"
	case s.Instance != "" && !s.Master:
		return fmt.Sprintf("vrrp_instance %s not MASTER", s.Instance)
	}
	return ""
}
