package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Mail alerts: the [global] keys resolved, and smtp_alert inherited as
// keepalived inherits it (global smtp_alert, then smtp_alert_vrrp or
// smtp_alert_checker, then each table's own; a real server takes its
// virtual server's).
func TestMailKeys(t *testing.T) {
	c := mustParse(t, `[global]
router_id = "lb1"
notification_email = ["ops@example.com", "acassen"]
notification_email_from = "lb1@example.com"
smtp_server = "192.0.2.25"
smtp_connect_timeout = "5s"
smtp_alert = true
smtp_alert_checker = false
[dataplane]
interfaces = ["eth0"]
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3"]
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 2
virtual_ipaddress = ["10.0.0.4"]
smtp_alert = false
[[vrrp_sync_group]]
name = "G"
group = ["VI_1", "VI_2"]
[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
smtp_alert = true
[[virtual_server]]
name = "api"
address = "10.0.0.3"
port = 443
smtp_alert = true
[[virtual_server.real_server]]
address = "10.0.0.9"
`)
	g := c.Global
	if !g.MailEnabled() || g.SMTPServer != "192.0.2.25:25" || g.SMTPConnectTimeout != 5*time.Second ||
		!reflect.DeepEqual(g.NotificationEmail, []string{"ops@example.com", "acassen"}) || g.NotificationEmailFrom != "lb1@example.com" {
		t.Errorf("global %+v", g)
	}
	if !g.SMTPAlert || !g.SMTPAlertVRRP || g.SMTPAlertChecker {
		t.Errorf("smtp_alert %v, vrrp %v, checker %v: want true, true (inherited), false", g.SMTPAlert, g.SMTPAlertVRRP, g.SMTPAlertChecker)
	}
	if !c.VRRPInstances[0].SMTPAlert || c.VRRPInstances[1].SMTPAlert || !c.SyncGroups[0].SMTPAlert {
		t.Errorf("instances %v %v, group %v: want true (smtp_alert_vrrp), false (own), true", c.VRRPInstances[0].SMTPAlert,
			c.VRRPInstances[1].SMTPAlert, c.SyncGroups[0].SMTPAlert)
	}
	web, api := c.VirtualServers[0], c.VirtualServers[1]
	if web.SMTPAlert || web.RealServers[0].SMTPAlert || !web.RealServers[1].SMTPAlert || !api.SMTPAlert || !api.RealServers[0].SMTPAlert {
		t.Errorf("web %v (%v %v), api %v (%v): want false (smtp_alert_checker) (false, own true), true (true)",
			web.SMTPAlert, web.RealServers[0].SMTPAlert, web.RealServers[1].SMTPAlert, api.SMTPAlert, api.RealServers[0].SMTPAlert)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings %v", c.Warnings)
	}

	// Defaults: no mail, 30s, nothing alerted.
	c = mustParse(t, base)
	if c.Global.MailEnabled() || c.Global.SMTPConnectTimeout != 30*time.Second || c.Global.SMTPAlertVRRP || c.Global.SMTPAlertChecker {
		t.Errorf("defaults %+v", c.Global)
	}
	for in, want := range map[string]string{
		"mail.example.com":        "mail.example.com:25",
		"mail.example.com:2525":   "mail.example.com:2525",
		"192.0.2.25:587":          "192.0.2.25:587",
		"2001:db8::25":            "[2001:db8::25]:25",
		"[2001:db8::25]":          "[2001:db8::25]:25",
		"[2001:db8::25]:2525":     "[2001:db8::25]:2525",
		"smtp-relay_1.corp.local": "smtp-relay_1.corp.local:25",
	} {
		if got, err := smtpServerAddr(in); err != nil || got != want {
			t.Errorf("smtp_server %q: %q %v, want %q", in, got, err, want)
		}
	}
}

func TestMailErrorsAndWarnings(t *testing.T) {
	_, err := Parse("t.toml", []byte(`[global]
router_id = "t"
notification_email = ["a@b", "with space@b", "a@b"]
notification_email_from = "<x>"
smtp_server = "mail.example.com:0"
smtp_connect_timeout = "0s"
[dataplane]
interfaces = ["eth0"]
`), nil)
	want := `t.toml:3: [global]: notification_email: "with space@b": a mail address has no white space, control characters, '<', '>' or ','
t.toml:3: [global]: notification_email: "a@b" is listed twice
t.toml:4: [global]: notification_email_from: "<x>": a mail address has no white space, control characters, '<', '>' or ','
t.toml:5: [global]: smtp_server: "mail.example.com:0": invalid port "0"
t.toml:6: [global]: smtp_connect_timeout: 0s is out of range (1s..1h0m0s)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	for _, bad := range []string{"", "mail..example.com", "-x.example.com", "[2001:db8::1", "[10.0.0.1]:25", "host:", "10.0.0.0:65536", "224.0.0.1"} {
		if _, err := smtpServerAddr(bad); err == nil {
			t.Errorf("smtp_server %q accepted", bad)
		}
	}
	// Settings that send nothing are said.
	for _, tc := range []struct{ src, want string }{
		{"smtp_server = \"192.0.2.25\"\n", `t.toml:3: [global]: smtp_server without notification_email: no mail is sent`},
		{"notification_email = [\"a@b\"]\n", `t.toml:3: [global]: notification_email without smtp_server: no mail is sent`},
		{"smtp_alert = true\n", `t.toml:3: smtp_alert: no mail is sent without notification_email and smtp_server in [global]`},
	} {
		c, err := Parse("t.toml", []byte("[global]\nrouter_id = \"t\"\n"+tc.src+"[dataplane]\ninterfaces = [\"eth0\"]\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != 1 || c.Warnings[0].Error() != tc.want {
			t.Errorf("%q: warnings %v, want %s", tc.src, c.Warnings, tc.want)
		}
	}
}

// A virtual server naming a group is one service per entry, ranges
// expanded, named NAME/ADDR:PORT; a real server without a port takes each
// entry's, and every entry keeps the first entry's checks.
func TestVirtualServerGroup(t *testing.T) {
	c := mustParse(t, base+`[[virtual_server_group]]
name = "VSG_1"
entries = ["10.0.0.1:8080", "10.0.0.2:80", "10.0.0.3-5:80"]
[[virtual_server_group]]
name = "V6"
entries = ["[2001:db8::1]:443", "[2001:db8::a-c]:443"]
[[virtual_server]]
name = "web"
group = "VSG_1"
forward = "nat"
sorry_server = "10.1.0.99"
[virtual_server.health_check]
type = "http"
[[virtual_server.real_server]]
address = "10.1.0.7"
port = 8000
[[virtual_server.real_server]]
address = "10.1.0.8"
[[virtual_server]]
name = "dr6"
group = "V6"
[[virtual_server.real_server]]
address = "2001:db8::77"
`)
	var got []string
	for _, v := range c.VirtualServers {
		var rs []string
		for _, r := range v.RealServers {
			rs = append(rs, r.AddrPort().String()+" check "+netip.AddrPortFrom(r.Address, r.HealthCheck.Port).String())
		}
		got = append(got, v.Name+" "+v.Server+" "+v.Group+" "+netip.AddrPortFrom(v.Address, v.Port).String()+" sorry "+
			v.SorryServer.String()+": "+strings.Join(rs, ", "))
	}
	want := []string{
		"web/10.0.0.1:8080 web VSG_1 10.0.0.1:8080 sorry 10.1.0.99:8080: 10.1.0.7:8000 check 10.1.0.7:8000, 10.1.0.8:8080 check 10.1.0.8:8080",
		"web/10.0.0.2:80 web VSG_1 10.0.0.2:80 sorry 10.1.0.99:80: 10.1.0.7:8000 check 10.1.0.7:8000, 10.1.0.8:80 check 10.1.0.8:8080",
		"web/10.0.0.3:80 web VSG_1 10.0.0.3:80 sorry 10.1.0.99:80: 10.1.0.7:8000 check 10.1.0.7:8000, 10.1.0.8:80 check 10.1.0.8:8080",
		"web/10.0.0.4:80 web VSG_1 10.0.0.4:80 sorry 10.1.0.99:80: 10.1.0.7:8000 check 10.1.0.7:8000, 10.1.0.8:80 check 10.1.0.8:8080",
		"web/10.0.0.5:80 web VSG_1 10.0.0.5:80 sorry 10.1.0.99:80: 10.1.0.7:8000 check 10.1.0.7:8000, 10.1.0.8:80 check 10.1.0.8:8080",
		"dr6/[2001:db8::1]:443 dr6 V6 [2001:db8::1]:443 sorry invalid AddrPort: [2001:db8::77]:443 check [2001:db8::77]:443",
		"dr6/[2001:db8::a]:443 dr6 V6 [2001:db8::a]:443 sorry invalid AddrPort: [2001:db8::77]:443 check [2001:db8::77]:443",
		"dr6/[2001:db8::b]:443 dr6 V6 [2001:db8::b]:443 sorry invalid AddrPort: [2001:db8::77]:443 check [2001:db8::77]:443",
		"dr6/[2001:db8::c]:443 dr6 V6 [2001:db8::c]:443 sorry invalid AddrPort: [2001:db8::77]:443 check [2001:db8::77]:443",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c.VirtualServers[0].Line != c.VirtualServers[4].Line || c.VirtualServers[0].RealServers[1].Line != c.VirtualServers[3].RealServers[1].Line {
		t.Errorf("the entries do not keep the table's lines")
	}
	if len(c.VirtualServerGroups) != 2 || len(c.VirtualServerGroups[0].Entries) != 5 {
		t.Errorf("groups %+v", c.VirtualServerGroups)
	}
}

func TestVirtualServerGroupErrors(t *testing.T) {
	_, err := Parse("t.toml", []byte(base+`[[virtual_server_group]]
name = "G"
entries = ["10.0.0.1:80", "10.0.0.1:80", "10.0.0.9-3:80", "2001:db8::1:80", "[2001:db8::1]:80", "10.0.0.2", "10.0.0.0-300:80"]
[[virtual_server_group]]
name = "G"
entries = []
[[virtual_server_group]]
name = "H"
entries = ["10.0.0.1:80", "10.0.0.2:81"]
[[virtual_server]]
name = "a"
group = "G"
address = "10.0.0.1"
[[virtual_server.real_server]]
address = "10.1.0.1"
[[virtual_server]]
name = "b"
group = "nope"
[[virtual_server]]
name = "c"
group = "H"
[[virtual_server.real_server]]
address = "10.0.0.2"
port = 80
[[virtual_server]]
name = "c/10.0.0.2:81"
address = "10.0.0.2"
port = 81
[[virtual_server.real_server]]
address = "10.0.0.7"
`), nil)
	want := `t.toml:7: virtual_server_group "G": entries: 10.0.0.1:80 is listed twice
t.toml:7: virtual_server_group "G": entries: "10.0.0.9-3:80": the range's last byte must be a number from 9 to 255
t.toml:7: virtual_server_group "G": entries: "2001:db8::1:80": write an IPv6 entry as [ADDR6]:PORT
t.toml:7: virtual_server_group "G": entries: 2001:db8::1 is IPv6 but 10.0.0.1 is IPv4: one family per group
t.toml:7: virtual_server_group "G": entries: "10.0.0.2": want ADDR:PORT, ADDR-LAST:PORT or [ADDR6]:PORT
t.toml:7: virtual_server_group "G": entries: "10.0.0.0-300:80": the range's last byte must be a number from 0 to 255
t.toml:9: duplicate virtual_server_group name "G" (first on line 5)
t.toml:10: virtual_server_group "G": entries: must list at least one address and port
t.toml:17: virtual_server "a": address: not with group (the group's entries are the addresses and ports)
t.toml:22: virtual_server "b": group: unknown virtual_server_group "nope"
t.toml:24: virtual_server "c": the group's entry 10.0.0.2 is named "c/10.0.0.2:81", as virtual_server on line 29
t.toml:25: virtual_server "c": duplicate virtual server tcp/10.0.0.1:80 (also virtual_server "a/10.0.0.1:80" on line 14)
t.toml:27: virtual_server "c": real_server 10.0.0.2:80: real server 10.0.0.2 is the address of the group's entry 10.0.0.2:81
t.toml:28: virtual_server "c": real_server 10.0.0.2:80: port 80 differs from the port of the group's entry 10.0.0.2:81: only forward = "nat" maps ports (without port, each entry's is used)
t.toml:31: virtual_server "c/10.0.0.2:81": duplicate virtual server tcp/10.0.0.2:81 (also virtual_server "c/10.0.0.2:81" on line 23)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}
