package bgp

import (
	"net/netip"
	"reflect"
	"testing"
)

var (
	vipA = netip.MustParseAddr("10.0.0.3")
	vipB = netip.MustParseAddr("10.0.0.4")
	vip6 = netip.MustParseAddr("fd00::3")
)

// ok is a service that holds its VIP in every mode.
func ok(name string, vip netip.Addr) Service {
	return Service{Name: name, VIP: vip, Forwarding: true, Up: true, SyncReady: true}
}

func with(s Service, f func(*Service)) Service { f(&s); return s }

func u32(v uint32) *uint32 { return &v }

// The announcement rule as data: services in, routes and reasons out.
func TestDecide(t *testing.T) {
	routeA := Route{Prefix: netip.MustParsePrefix("10.0.0.3/32")}
	for _, tc := range []struct {
		name   string
		in     Inputs
		routes []Route
		vips   []VIPState
	}{
		{
			name:   "healthy service",
			in:     Inputs{Mode: Healthy, Services: []Service{ok("web", vipA)}},
			routes: []Route{routeA},
			vips:   []VIPState{{vipA, true, "held by web"}},
		},
		{
			name: "not forwarded",
			in:   Inputs{Mode: Healthy, Services: []Service{with(ok("web", vipA), func(s *Service) { s.Forwarding = false })}},
			vips: []VIPState{{vipA, false, "web: not forwarded by the dataplane"}},
		},
		{
			name: "below quorum",
			in:   Inputs{Mode: Healthy, Services: []Service{with(ok("web", vipA), func(s *Service) { s.Up = false })}},
			vips: []VIPState{{vipA, false, "web: below quorum"}},
		},
		{
			name:   "below quorum, the sorry server serves",
			in:     Inputs{Mode: Healthy, Services: []Service{with(ok("web", vipA), func(s *Service) { s.Up, s.SorryActive = false, true })}},
			routes: []Route{routeA},
			vips:   []VIPState{{vipA, true, "held by web"}},
		},
		{
			name: "connection sync not ready",
			in:   Inputs{Mode: Healthy, Services: []Service{with(ok("web", vipA), func(s *Service) { s.SyncReady = false })}},
			vips: []VIPState{{vipA, false, "web: connection sync not ready"}},
		},
		{
			name: "VRRP backup",
			in:   Inputs{Mode: Healthy, Services: []Service{with(ok("web", vipA), func(s *Service) { s.Instance = "VI_1" })}},
			vips: []VIPState{{vipA, false, "web: vrrp_instance VI_1 not MASTER"}},
		},
		{
			name:   "VRRP master",
			in:     Inputs{Mode: Healthy, Services: []Service{with(ok("web", vipA), func(s *Service) { s.Instance, s.Master = "VI_1", true })}},
			routes: []Route{routeA},
			vips:   []VIPState{{vipA, true, "held by web"}},
		},
		{
			name:   "always: below quorum, sync not ready and backup still announce",
			in:     Inputs{Mode: Always, Services: []Service{{Name: "web", VIP: vipA, Forwarding: true, Instance: "VI_1"}}},
			routes: []Route{routeA},
			vips:   []VIPState{{vipA, true, "held by web"}},
		},
		{
			name: "always: not forwarded is not announced",
			in:   Inputs{Mode: Always, Services: []Service{{Name: "web", VIP: vipA, Up: true, SyncReady: true}}},
			vips: []VIPState{{vipA, false, "web: not forwarded by the dataplane"}},
		},
		{
			name: "two services on a VIP: announced while one holds",
			in: Inputs{Mode: Healthy, Services: []Service{
				with(ok("web", vipA), func(s *Service) { s.Up = false }), ok("echo", vipA),
			}},
			routes: []Route{routeA},
			vips:   []VIPState{{vipA, true, "held by echo"}},
		},
		{
			name: "two services on a VIP: withdrawn when neither holds",
			in: Inputs{Mode: Healthy, Services: []Service{
				with(ok("web", vipA), func(s *Service) { s.Up = false }),
				with(ok("echo", vipA), func(s *Service) { s.Forwarding = false }),
			}},
			vips: []VIPState{{vipA, false, "web: below quorum; echo: not forwarded by the dataplane"}},
		},
		{
			name: "draining: GRACEFUL_SHUTDOWN added to the VIP's communities",
			in: Inputs{Mode: Healthy, Drain: Draining, Services: []Service{ok("web", vipA), with(ok("x", vipB), func(s *Service) { s.Up = false })},
				VIPs: map[netip.Addr]Attrs{vipA: {MED: u32(10), Communities: []uint32{65010<<16 | 1}}}},
			routes: []Route{{Prefix: netip.MustParsePrefix("10.0.0.3/32"), Attrs: Attrs{MED: u32(10), Communities: []uint32{65010<<16 | 1, GracefulShutdown}}}},
			vips: []VIPState{
				{vipA, true, "draining (xlb drain): GRACEFUL_SHUTDOWN, held by web"},
				{vipB, false, "x: below quorum"},
			},
		},
		{
			name: "drained: everything withdrawn",
			in:   Inputs{Mode: Always, Drain: Drained, Services: []Service{ok("web", vipA), ok("web6", vip6)}},
			vips: []VIPState{{vipA, false, "drained (xlb drain): withdrawn"}, {vip6, false, "drained (xlb drain): withdrawn"}},
		},
		{
			name: "IPv6 as /128, sorted after IPv4, attributes per VIP",
			in: Inputs{Mode: Healthy, Services: []Service{ok("web6", vip6), ok("web", vipA)},
				VIPs: map[netip.Addr]Attrs{vip6: {LocalPref: u32(200)}}},
			routes: []Route{routeA, {Prefix: netip.MustParsePrefix("fd00::3/128"), Attrs: Attrs{LocalPref: u32(200)}}},
			vips:   []VIPState{{vipA, true, "held by web"}, {vip6, true, "held by web6"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.in)
			if !reflect.DeepEqual(got.Routes, tc.routes) {
				t.Errorf("routes:\n got %+v\nwant %+v", got.Routes, tc.routes)
			}
			if !reflect.DeepEqual(got.VIPs, tc.vips) {
				t.Errorf("VIPs:\n got %+v\nwant %+v", got.VIPs, tc.vips)
			}
		})
	}
}

// Decide does not change its inputs (the communities of a VIP are shared
// by every decision).
func TestDecideKeepsInputs(t *testing.T) {
	comms := make([]uint32, 1, 4)
	comms[0] = 1
	in := Inputs{Mode: Healthy, Drain: Draining, Services: []Service{ok("web", vipA)}, VIPs: map[netip.Addr]Attrs{vipA: {Communities: comms}}}
	Decide(in)
	Decide(in)
	if got := in.VIPs[vipA].Communities; len(got) != 1 || got[:2][1] != 0 {
		t.Errorf("Decide changed the VIP's communities: %v", got[:2])
	}
}
