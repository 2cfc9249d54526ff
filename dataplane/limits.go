package dataplane

import (
	"errors"
	"fmt"
)

// Limits are the most a dataplane holds. A zero field is no limit.
type Limits struct {
	// Dataplane names the dataplane in messages: "the XDP dataplane".
	Dataplane string
	// Services are virtual services.
	Services int
	// BackendsPerService are the real servers of one service, its sorry
	// server included.
	BackendsPerService int
	// Backends are the real servers of all services together.
	Backends int
	// NATBackends are the distinct real servers (address, port, protocol)
	// of NAT services.
	NATBackends int
	// Interfaces are the interfaces it attaches to.
	Interfaces int
}

// LimitError is a configuration over one of a dataplane's Limits.
type LimitError struct {
	// Service is the virtual service over a per-service limit; "" for a
	// limit of the whole configuration.
	Service   string
	What      string // what is counted: "virtual servers", "real servers"...
	Count     int
	Max       int
	Dataplane string // Limits.Dataplane
}

func (e *LimitError) Error() string {
	if e.Service != "" {
		return fmt.Sprintf("virtual server %q: %d %s, %s holds at most %d per virtual server", e.Service, e.Count, e.What, e.Dataplane, e.Max)
	}
	return fmt.Sprintf("%d %s, %s holds at most %d", e.Count, e.What, e.Dataplane, e.Max)
}

// Check returns every limit that services and interfaces exceed, each a
// *LimitError, joined; nil if none. services are as the control plane may
// apply them at most: every service with every real server it may use (its
// sorry server too). The control plane checks before it applies anything,
// so that a configuration over a limit is refused whole, never installed
// in part.
func (l Limits) Check(services []Service, interfaces int) error {
	var errs []error
	over := func(service, what string, n, max int) {
		if max > 0 && n > max {
			errs = append(errs, &LimitError{Service: service, What: what, Count: n, Max: max, Dataplane: l.Dataplane})
		}
	}
	over("", "virtual servers", len(services), l.Services)
	total, natTotal := 0, 0
	for _, s := range services {
		over(s.Name, "real servers", len(s.Backends), l.BackendsPerService)
		total += len(s.Backends)
		if s.Forward == NAT {
			natTotal += len(s.Backends)
		}
	}
	over("", "real servers in all", total, l.Backends)
	// Distinct NAT real servers are counted only when there are more NAT
	// real servers than the limit (65,536 map entries cost milliseconds).
	if l.NATBackends > 0 && natTotal > l.NATBackends {
		nat := make(map[ServiceKey]bool, natTotal)
		for _, s := range services {
			if s.Forward != NAT {
				continue
			}
			for _, b := range s.Backends {
				nat[ServiceKey{Addr: b.Addr, Port: b.Port, Proto: s.Key.Proto}] = true
			}
		}
		over("", "NAT real servers (distinct address, port and protocol)", len(nat), l.NATBackends)
	}
	over("", "interfaces", interfaces, l.Interfaces)
	return errors.Join(errs...)
}
