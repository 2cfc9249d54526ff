package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const hcHead = `[dataplane]
mode = "ipvs"
[[virtual_server]]
name = "a"
address = "10.0.0.1"
port = 80
`

// The keys of keepalived's checkers decode into the check of each real
// server, with their defaults, and inherit as the other keys do.
func TestHealthCheckTypes(t *testing.T) {
	src := hcHead + `[virtual_server.health_check]
type = "http"
http_protocol = "1.0C"
warmup = "0s"
connect_ip = "10.0.0.9"
bindto = "10.0.0.2"
host = "www.example.test"
[[virtual_server.health_check.url]]
path = "/"
digest = "FF20AD2481F97B1754EF3E12ECD3A9CC"
expect_status = ["200-202", 404, "203-204"]
[[virtual_server.health_check.url]]
path = "/mrtg/"
host = "mrtg.example.test"
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
[virtual_server.real_server.health_check]
path = "/one"
[[virtual_server.real_server]]
address = "10.0.0.9"
[virtual_server.real_server.health_check]
type = "udp"
payload = "de ad 1"
require_reply = "01 xx"
[[virtual_server.real_server]]
address = "10.0.0.10"
[virtual_server.real_server.health_check]
type = "dns"
dns_name = "example.test"
[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.health_check]
type = "file"
file = "/run/weight"
weight = 0
[[virtual_server.real_server]]
address = "10.0.0.12"
[virtual_server.real_server.health_check]
type = "script"
script = "/bin/true"
misc_dynamic = true
[[virtual_server.real_server]]
address = "10.0.0.13"
[virtual_server.real_server.health_check]
type = "smtp"
helo_name = "lb.example.test"
[[virtual_server.real_server]]
address = "10.0.0.14"
[virtual_server.real_server.health_check]
type = "udp"
require_reply = true
`
	c, err := Parse("t.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := c.VirtualServers[0].RealServers
	hc := rs[0].HealthCheck
	if hc.HTTPProtocol != "1.0C" || hc.Warmup == nil || *hc.Warmup != 0 || hc.ConnectIP != netip.MustParseAddr("10.0.0.9") ||
		hc.BindTo != netip.MustParseAddr("10.0.0.2") || len(hc.URLs) != 2 || hc.Path != "/" || hc.Host != "www.example.test" {
		t.Errorf("http check: %+v", hc)
	}
	if u := hc.URLs[0]; u.Digest != "FF20AD2481F97B1754EF3E12ECD3A9CC" || !slices.Equal(u.ExpectStatus, []int{200, 201, 202, 404, 203, 204}) || u.Line != 14 {
		t.Errorf("url 1: %+v", u)
	}
	if u := hc.URLs[1]; u.Path != "/mrtg/" || !slices.Equal(u.ExpectStatus, []int{200}) || u.Host != "mrtg.example.test" {
		t.Errorf("url 2: %+v", u)
	}
	// A real server writing path drops the inherited urls.
	if hc := rs[1].HealthCheck; hc.URLs != nil || hc.Path != "/one" || hc.HTTPProtocol != "1.0C" {
		t.Errorf("path over urls: %+v", hc)
	}
	if hc := rs[2].HealthCheck; hc.Payload != "de ad 1" || !hc.RequireReply || hc.ReplyPattern != "01 xx" ||
		hc.URLs != nil || hc.Path != "" || hc.HTTPProtocol != "" || hc.ConnectIP != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("udp check: %+v", hc)
	}
	if hc := rs[3].HealthCheck; hc.DNSName != "example.test" || hc.DNSType != "SOA" {
		t.Errorf("dns check: %+v", hc)
	}
	if hc := rs[4].HealthCheck; hc.File != "/run/weight" || hc.Weight != 0 || hc.ConnectIP.IsValid() {
		t.Errorf("file check (weight 0 kept, no connect_ip): %+v", hc)
	}
	if hc := rs[5].HealthCheck; !hc.MiscDynamic || hc.Warmup == nil {
		t.Errorf("script check: %+v", hc)
	}
	if hc := rs[6].HealthCheck; hc.HeloName != "lb.example.test" {
		t.Errorf("smtp check: %+v", hc)
	}
	if hc := rs[7].HealthCheck; !hc.RequireReply || hc.ReplyPattern != "" || hc.Payload != "" {
		t.Errorf("udp check, require_reply = true: %+v", hc)
	}
	_ = time.Second
}

func TestHealthCheckErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"type = \"http\"\npath = \"/\"\n[[virtual_server.health_check.url]]\npath = \"/x\"\n", "path and url: give the URL in [[url]] tables or in path"},
		{"type = \"http\"\ndigest = \"abc\"\n", `digest: "abc" is not an MD5 digest`},
		{"type = \"http\"\nexpect_status = [\"300-200\"]\n", `range "300-200" is out of range`},
		{"type = \"http\"\nexpect_status = [\"2xx\"]\n", `"2xx" is not a range`},
		{"type = \"http\"\nexpect_status = [99]\n", "99 is out of range"},
		{"type = \"http\"\nhttp_protocol = \"2\"\n", `unknown value "2"`},
		{"type = \"udp\"\npayload = \"0x\"\n", `"0x": 'x' is not a hex digit`},
		{"type = \"udp\"\nrequire_reply = \"zz\"\n", `require_reply: "zz": 'z' is not a hex digit`},
		{"type = \"udp\"\nrequire_reply = 1\n", "require_reply: want true, false or a hex pattern, got integer 1"},
		{"type = \"tcp\"\npayload = \"01\"\n", "payload applies only to udp checks"},
		{"type = \"dns\"\ndns_name = \"a..b\"\n", "empty label"},
		{"type = \"dns\"\ndns_type = \"PTR\"\n", `unknown value "PTR"`},
		{"type = \"file\"\n", `type = "file" needs file`},
		{"type = \"file\"\nfile = \"/x\"\nweight = 70000\n", "70000 is out of range"},
		{"type = \"script\"\nscript = \"/bin/true\"\nconnect_ip = \"10.0.0.3\"\n", "connect_ip applies only to"},
		{"type = \"tcp\"\nbindto = \"fd00::1\"\n", "bindto fd00::1 is IPv6 but the address checked, 10.0.0.7, is not"},
		{"type = \"http\"\nurl = []\n", "url: must list at least one URL"},
	} {
		src := hcHead + "[virtual_server.health_check]\n" + tc.body + "[[virtual_server.real_server]]\naddress = \"10.0.0.7\"\n"
		_, err := Parse("t.toml", []byte(src), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.body, err, tc.want)
		}
	}
}
