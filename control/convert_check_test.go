package control

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
)

// Every key of keepalived's checkers reaches the health.Spec, and each
// Spec is valid (the checker can be built).
func TestCheckSpecKeepalivedKeys(t *testing.T) {
	c := parse(t, `
[dataplane]
mode = "ipvs"
[[virtual_server]]
name = "web"
address = "10.0.0.1"
port = 80
[virtual_server.health_check]
type = "http"
http_protocol = "1.0"
warmup = "0s"
connect_ip = "10.0.0.9"
bindto = "10.0.0.2"
[[virtual_server.health_check.url]]
path = "/"
digest = "ff20ad2481f97b1754ef3e12ecd3a9cc"
[[virtual_server.health_check.url]]
path = "/mrtg/"
expect_status = ["200-201"]
host = "mrtg.test"
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
[virtual_server.real_server.health_check]
type = "file"
file = "/run/w"
weight = -2
weight_reverse = true
warmup = "3s"
[[virtual_server.real_server]]
address = "10.0.0.9"
[virtual_server.real_server.health_check]
type = "udp"
payload = "01 02"
require_reply = "0x"
`)
	m := ModelFromConfig(c)
	reals := m.Services[0].Reals
	web := reals[0].CheckSpec()
	want := health.URL{Path: "/mrtg/", ExpectStatus: []int{200, 201}, Host: "mrtg.test"}
	if web.HTTPProtocol != "1.0" || web.Warmup != -1 || web.ConnectIP != netip.MustParseAddr("10.0.0.9") ||
		web.BindTo != netip.MustParseAddr("10.0.0.2") || len(web.URLs) != 2 || !reflect.DeepEqual(web.URLs[1], want) ||
		web.URLs[0].Digest != "ff20ad2481f97b1754ef3e12ecd3a9cc" || web.Target != netip.MustParseAddrPort("10.0.0.7:80") {
		t.Errorf("http: %+v", web)
	}
	if f := reals[1].CheckSpec(); f.Type != checktype.File || f.File != "/run/w" || f.FileWeight != -2 || !f.FileReverse || f.Warmup != 3*time.Second {
		t.Errorf("file: %+v", f)
	}
	if u := reals[2].CheckSpec(); u.Payload != "01 02" || !u.RequireReply || u.Reply != "0x" {
		t.Errorf("udp: %+v", u)
	}
	for _, rs := range reals {
		if _, err := health.NewChecker(rs.CheckSpec()); err != nil {
			t.Errorf("%s: %v", rs.Addr, err)
		}
	}
}

// A real server's connection thresholds reach the dataplane's backend, in
// the services the reconciler applies and in those the limits are checked
// for.
func TestThresholdsReachBackends(t *testing.T) {
	c := parse(t, `
[dataplane]
mode = "ipvs"
[[virtual_server]]
name = "web"
address = "10.0.0.1"
port = 80
scheduler = "sed"
[virtual_server.health_check]
type = "none"
[[virtual_server.real_server]]
address = "10.0.0.7"
upper_threshold = 100
lower_threshold = 60
[[virtual_server.real_server]]
address = "10.0.0.8"
upper_threshold = 8
`)
	m := ModelFromConfig(c)
	applied, _ := Desired(Inputs{Model: m})
	for name, svcs := range map[string][]dataplane.Service{"desired": applied, "limits": m.dataplaneServices()} {
		if len(svcs) != 1 || len(svcs[0].Backends) != 2 {
			t.Fatalf("%s: %+v", name, svcs)
		}
		b := svcs[0].Backends
		if b[0].UpperThreshold != 100 || b[0].LowerThreshold != 60 || b[1].UpperThreshold != 8 || b[1].LowerThreshold != 0 {
			t.Errorf("%s: backends %+v, want thresholds 100/60 and 8/0", name, b)
		}
	}
}
