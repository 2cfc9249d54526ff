package config

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/test/nettest"
)

// SystemEnv against real interfaces in a namespace made for the test.
func TestSystemEnv(t *testing.T) {
	t.Parallel()
	lb := nettest.NewNS(t, "cfg")
	peer := nettest.NewNS(t, "cfgp")
	nettest.Veth(t, lb, "eth0", peer, "eth0")
	nettest.Addr(t, lb, "eth0", "10.0.0.5/24")
	nettest.Addr(t, lb, "eth0", "2001:db8::5/64")
	lb.MustRun(t, "ip", "route", "add", "10.5.0.0/24", "dev", "eth0")           // on link
	lb.MustRun(t, "ip", "route", "add", "10.6.0.0/24", "via", "10.0.0.1")       // via a router
	lb.MustRun(t, "ip", "-6", "route", "add", "2001:db8:5::/64", "dev", "eth0") // on link

	var subnets []netip.Prefix
	var unknownErr error
	var cfgErr error
	err := lb.Do(func() error {
		env := SystemEnv()
		var err error
		if subnets, err = env.InterfaceSubnets("eth0"); err != nil {
			return err
		}
		_, unknownErr = env.InterfaceSubnets("nope0")
		_, cfgErr = Parse("dr.toml", []byte(`[global]
router_id = "t"
[dataplane]
interfaces = ["eth0"]
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3/24"]
track_interface = ["lo", "eth1"]
[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
vrrp_instance = "VI_1"
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.5.0.7"
[[virtual_server.real_server]]
address = "10.6.0.7"
`), env)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.0.0.5/24", "2001:db8::5/64", "10.5.0.0/24", "2001:db8:5::/64"} {
		if !slices.Contains(subnets, netip.MustParsePrefix(want)) {
			t.Errorf("subnets of eth0 %v lack %s", subnets, want)
		}
	}
	for _, p := range subnets {
		if p.Contains(netip.MustParseAddr("10.6.0.7")) {
			t.Errorf("subnets of eth0 include %s, reached through a router", p)
		}
	}
	if !errors.Is(unknownErr, ErrUnknownInterface) {
		t.Errorf("unknown interface: err = %v, want ErrUnknownInterface", unknownErr)
	}
	want := []string{
		`dr.toml:10: vrrp_instance "VI_1": track_interface: unknown interface "eth1"`,
		`dr.toml:21: virtual_server "web": real_server 10.6.0.7:80: forward = "dr" needs real servers on a directly connected subnet of the dataplane interfaces, and 10.6.0.7 is not (eth0: `,
	}
	var errs *Errors
	if !errors.As(cfgErr, &errs) || len(errs.List) != len(want) {
		t.Fatalf("config errors:\n%v\nwant %d errors like:\n%s", cfgErr, len(want), strings.Join(want, "\n"))
	}
	for i, w := range want {
		if got := errs.List[i].Error(); !strings.HasPrefix(got, w) {
			t.Errorf("error %d:\n%s\nwant prefix\n%s", i, got, w)
		}
	}
}
