// Package control is xlb's control plane: it turns the configuration, the
// health of real servers and the VRRP role of each instance into the
// desired dataplane state, applies the difference, and serves metrics and
// the control socket. Data flows one way: config -> control -> dataplane;
// health checks and VRRP report into control.
package control

import (
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
)

// Model is the part of the configuration the reconciler works from.
type Model struct {
	Services []ServiceSpec
	// checkOrder names the list of checks this model's real servers have
	// (checks), as numbered by numberChecks; 0 when they are not
	// numbered (then each check is looked up by its key).
	checkOrder uint64
}

// ServiceSpec is a virtual service as configured.
type ServiceSpec struct {
	// Name is unique; for an entry of a virtual_server_group it is
	// "SERVER/ADDR:PORT".
	Name string
	// Server is the [[virtual_server]]'s name when it differs from Name
	// (an entry of Group): the entries of a group share its real servers'
	// checks, weight overrides and quorum reports.
	Server      string
	Group       string
	Key         dataplane.ServiceKey
	Scheduler   dataplane.Scheduler
	Forward     dataplane.ForwardMode
	Persistence time.Duration
	Tunnel      dataplane.TunnelOptions
	// Instance is the VRRP instance the service follows: it forwards only
	// while the instance is MASTER. Empty: always.
	Instance string
	// Quorum is the minimum total weight of healthy real servers for the
	// service to be up (keepalived's quorum); Hysteresis widens the band
	// (up at Quorum+Hysteresis, down below Quorum-Hysteresis).
	Quorum     uint32
	Hysteresis uint32
	// QuorumUp and QuorumDown are commands run when the service comes up
	// or goes down.
	QuorumUp, QuorumDown string
	// Sorry, if set, takes all new flows while the service is down.
	Sorry *RealSpec
	Reals []RealSpec
	// checkKeys holds the keys of its real servers' checks
	// (makeCheckKeys).
	checkKeys string
	// SMTPAlert: mail when the quorum is gained or lost.
	SMTPAlert bool
	// Line is where the service is configured, for messages.
	Line int
}

// server is the [[virtual_server]]'s name: Name, or Server for an entry
// of a group.
func (s ServiceSpec) server() string {
	if s.Server != "" {
		return s.Server
	}
	return s.Name
}

// checkKey is the key of rs, one of s's real servers, for its health
// check: the entries of a group share the first entry's.
func (s ServiceSpec) checkKey(rs RealSpec) string {
	if rs.keyLen > 0 {
		return s.checkKeys[rs.keyOff : int(rs.keyOff)+int(rs.keyLen)]
	}
	var buf [64]byte // one allocation: the string
	return string(s.appendCheckKey(buf[:0], rs))
}

// makeCheckKeys makes the keys of the checks of s's real servers, which
// the checks' map shares: one string for the service (checkKeys), each
// real server's key a part of it at keyOff, keyLen bytes long. 64,000
// strings of 18-24 bytes were as many allocations, left among the
// garbage of the parse; and a pointer to each key (realMore, 24 bytes a
// real server) 1.7 MB. A key past the first 64 KiB of the service's
// (thousands of real servers, in an IPVS service) is made when
// asked for.
func (s *ServiceSpec) makeCheckKeys() {
	keys := make([]byte, 0, len(s.Reals)*(len(s.server())+24))
	for i := range s.Reals {
		r := &s.Reals[i]
		r.keyOff, r.keyLen = 0, 0
		if r.checkType() == checktype.None {
			continue
		}
		start := len(keys)
		keys = s.appendCheckKey(keys, *r)
		if n := len(keys) - start; start <= math.MaxUint16 && n <= math.MaxUint8 {
			r.keyOff, r.keyLen = uint16(start), uint8(n)
		} else {
			keys = keys[:start]
		}
	}
	s.checkKeys = string(keys)
}

// appendCheckKey appends the key of rs's health check, as made for a real
// server without one (checkKey), to b.
func (s ServiceSpec) appendCheckKey(b []byte, rs RealSpec) []byte {
	id := rs.ident()
	b = append(append(b, s.server()...), '/')
	return netip.AddrPortFrom(id.Addr, id.Port).AppendTo(b)
}

// reals are the real servers a service may send new flows to: its own,
// then its sorry server.
func (s ServiceSpec) reals() []RealSpec {
	if s.Sorry == nil {
		return s.Reals
	}
	return append(slices.Clip(s.Reals), *s.Sorry)
}

// dataplaneServices are the model's services as a dataplane may have to
// hold them at most: each with every real server it may use (its sorry
// server too), at its configured weight. The limits are checked, and the
// host prepared, for these.
func (m Model) dataplaneServices() []dataplane.Service {
	out := make([]dataplane.Service, 0, len(m.Services))
	for _, s := range m.Services {
		// Backends sized once: grown by append they were twice the 4.6 MB
		// of 65,536 Backends, at every reload (twice: limits, host).
		svc := dataplane.Service{Name: s.Name, Key: s.Key, Scheduler: s.Scheduler, Forward: s.Forward,
			Persistence: s.Persistence, Tunnel: s.Tunnel, Enabled: true, Backends: make([]dataplane.Backend, 0, len(s.reals()))}
		for i, rs := range s.reals() {
			// A sorry server that is also a real server is one backend.
			if i < len(s.Reals) || !slices.ContainsFunc(s.Reals, func(r RealSpec) bool { return r.Key() == rs.Key() }) {
				svc.Backends = append(svc.Backends, dataplane.Backend{Addr: rs.Addr, Port: rs.Port, Weight: rs.Weight,
					UpperThreshold: rs.UpperThreshold, LowerThreshold: rs.LowerThreshold})
			}
		}
		out = append(out, svc)
	}
	return out
}

// RealSpec is a real server as configured. Its fields are in the order
// that packs it (there may be 65,536 of them).
type RealSpec struct {
	Addr netip.Addr
	Port uint16
	// keyOff and keyLen locate the key of its check in its service's
	// checkKeys (keyLen 0: none there; ServiceSpec.checkKey).
	keyOff uint16
	Weight uint32
	// UpperThreshold and LowerThreshold are its connection thresholds
	// (ipvsadm -x, -y; dataplane.Backend's).
	UpperThreshold, LowerThreshold uint32
	// Check is the health check; Type "none" means always healthy. The
	// real servers of a service that inherit its check share one Spec
	// (65,536 copies of a Spec are 30 MB): its Target is then unset, and
	// CheckPort says which port of Addr it checks.
	Check     *health.Spec
	CheckPort uint16
	// SMTPAlert: mail when its check takes it down or puts it back up.
	SMTPAlert bool
	keyLen    uint8
	// checkIdx is 1 + the position of its check in the model's list
	// (checks), when the model's checks are numbered (numberChecks);
	// 0 otherwise.
	checkIdx int32
	// id is the real server as configured, when it differs from Key (not
	// nil): in the entries of a group but the first, its address and port
	// in the first entry, whose check and weight override every entry
	// shares.
	id *dataplane.BackendKey
}

// Key identifies the real server within its service.
func (r RealSpec) Key() dataplane.BackendKey { return dataplane.BackendKey{Addr: r.Addr, Port: r.Port} }

// ident identifies the real server within its [[virtual_server]].
func (r RealSpec) ident() dataplane.BackendKey {
	if r.id != nil {
		return *r.id
	}
	return r.Key()
}

// CheckSpec returns the real server's health check, its Target set.
func (r RealSpec) CheckSpec() health.Spec {
	if r.Check == nil {
		return health.Spec{Type: checktype.None}
	}
	s := *r.Check
	if !s.Target.IsValid() {
		port := r.CheckPort
		if port == 0 {
			port = r.Port
		}
		s.Target = netip.AddrPortFrom(r.Addr, port)
	}
	return s
}

// checkType is the type of the real server's check.
func (r RealSpec) checkType() health.Type {
	if r.Check == nil {
		return checktype.None
	}
	return r.Check.Type
}

// CheckKey is the key of a real server's health check: "service/addr:port"
// (ServiceSpec.checkKey without its service, made as it makes them).
func CheckKey(service string, r RealSpec) string {
	return string(ServiceSpec{Name: service}.appendCheckKey(nil, r))
}
