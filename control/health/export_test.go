package health

import "net/netip"

// SYNProberPort returns the source port of the SYNs of the calling
// thread's network namespace's prober of the family (v6) and source
// (bindTo) given, opening the prober when there is none.
func SYNProberPort(v6 bool, bindTo netip.Addr) (uint16, error) {
	p, err := probers.get(v6, bindTo)
	if err != nil {
		return 0, err
	}
	return p.port, nil
}
