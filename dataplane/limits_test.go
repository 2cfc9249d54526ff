package dataplane

import (
	"net/netip"
	"strings"
	"testing"
)

// Check names every limit exceeded, with the count and the maximum; a
// zero limit is none; NAT real servers count once per address, port and
// protocol.
func TestLimitsCheck(t *testing.T) {
	svc := func(name string, fwd ForwardMode, proto Proto, backends ...string) Service {
		s := Service{Name: name, Forward: fwd, Key: ServiceKey{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Proto: proto}}
		for _, b := range backends {
			ap := netip.MustParseAddrPort(b)
			s.Backends = append(s.Backends, Backend{Addr: ap.Addr(), Port: ap.Port(), Weight: 1})
		}
		return s
	}
	services := []Service{
		svc("a", NAT, TCP, "10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"),
		svc("b", NAT, TCP, "10.1.0.1:80", "10.1.0.2:8080"), // 10.1.0.1:80/tcp again
		svc("c", NAT, UDP, "10.1.0.1:80"),                  // another protocol
		svc("d", DirectRouting, TCP, "10.1.0.9:80"),        // not NAT
	}
	for _, tc := range []struct {
		name   string
		limits Limits
		ifaces int
		want   []string
	}{
		{"none", Limits{Dataplane: "dp"}, 100, nil},
		{"at every limit", Limits{Dataplane: "dp", Services: 4, BackendsPerService: 3, Backends: 7, NATBackends: 5, Interfaces: 2}, 2, nil},
		{"services", Limits{Dataplane: "dp", Services: 3}, 0, []string{"4 virtual servers, dp holds at most 3"}},
		{"per service", Limits{Dataplane: "dp", BackendsPerService: 1}, 0, []string{
			`virtual server "a": 3 real servers, dp holds at most 1 per virtual server`,
			`virtual server "b": 2 real servers, dp holds at most 1 per virtual server`}},
		{"in all", Limits{Dataplane: "dp", Backends: 6}, 0, []string{"7 real servers in all, dp holds at most 6"}},
		{"nat", Limits{Dataplane: "dp", NATBackends: 4}, 0, []string{"5 NAT real servers (distinct address, port and protocol), dp holds at most 4"}},
		{"interfaces", Limits{Dataplane: "dp", Interfaces: 1}, 2, []string{"2 interfaces, dp holds at most 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limits.Check(services, tc.ifaces)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Check: %q\nwant %q", got, tc.want)
			}
		})
	}
}
