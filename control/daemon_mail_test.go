package control

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/mail/mailtest"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/vrrp"
)

// Real servers going down and up, and the quorum lost and gained, are
// mailed through a real SMTP server as keepalived words them, for the
// real servers and virtual servers whose smtp_alert is on; a group's
// virtual server is named as keepalived names it, each real server mailed
// once (one check for every entry).
func TestDaemonMailsChecks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mailtest.Serve(ln)
	defer srv.Close()
	dir := t.TempDir()
	script := filepath.Join(dir, "check.sh")
	setExit := func(code int) {
		writeFile(t, script+".tmp", fmt.Sprintf("exit %d\n", code))
		if err := os.Rename(script+".tmp", script); err != nil {
			t.Fatal(err)
		}
	}
	setExit(0)
	r := startDaemon(t, func(sock string) string {
		return fmt.Sprintf(`[global]
router_id = "lb1"
notification_email = ["ops@example.com"]
notification_email_from = "lb1@example.com"
smtp_server = %q
smtp_helo_name = "lb1.example.com"
smtp_alert_checker = true
[dataplane]
interfaces = ["eth0"]
[metrics]
listen = ""
[control]
socket = %q

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
quorum = 2
[virtual_server.health_check]
type = "script"
script = "/bin/sh %s"
interval = "50ms"
rise = 1
fall = 1
initial_state = "up"
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
smtp_alert = false
[virtual_server.real_server.health_check]
type = "none"

[[virtual_server_group]]
name = "VSG_1"
entries = ["10.0.0.4:80", "10.0.0.5:80"]
[[virtual_server]]
name = "grp"
group = "VSG_1"
smtp_alert = false
[virtual_server.health_check]
type = "none"
[[virtual_server.real_server]]
address = "10.0.0.9"
smtp_alert = true
[virtual_server.real_server.health_check]
type = "script"
script = "/bin/sh %s"
interval = "50ms"
rise = 1
fall = 1
`, ln.Addr(), sock, script, script)
	}, nil)
	waitMails := func(want ...string) {
		t.Helper()
		nettest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d mails", len(want)), func() error {
			var got []string
			for _, m := range srv.Mails() {
				got = append(got, m.Headers["Subject"]+" | "+m.Body)
			}
			if len(got) < len(want) {
				return fmt.Errorf("mails so far:\n%s", strings.Join(got, "\n"))
			}
			for _, w := range want {
				found := false
				for _, g := range got {
					found = found || g == w
				}
				if !found {
					return fmt.Errorf("no mail %q in:\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) > len(want) {
				t.Fatalf("more mails than %d:\n%s", len(want), strings.Join(got, "\n"))
			}
			return nil
		})
	}
	// Up from the start: nothing to mail (initial_state up for web; grp's
	// 10.0.0.9 starts down and comes up, mailed once for both entries).
	waitMails("[lb1] Realserver [10.0.0.9]:tcp:80 of virtual server [VSG_1]:0 - UP | => SCRIPT CHECK succeed on service <=")
	setExit(1)
	waitMails(
		"[lb1] Realserver [10.0.0.9]:tcp:80 of virtual server [VSG_1]:0 - UP | => SCRIPT CHECK succeed on service <=",
		"[lb1] Realserver [10.0.0.7]:tcp:80 of virtual server [10.0.0.3]:tcp:80 - DOWN | => SCRIPT CHECK failed on service: command /bin/sh: exit status 1 <=",
		"[lb1] Realserver [10.0.0.9]:tcp:80 of virtual server [VSG_1]:0 - DOWN | => SCRIPT CHECK failed on service: command /bin/sh: exit status 1 <=",
		"[lb1] Virtualserver [10.0.0.3]:tcp:80 - DOWN | => Lost quorum 2+0=2 <= 1 <=",
	)
	setExit(0)
	waitMails(
		"[lb1] Realserver [10.0.0.9]:tcp:80 of virtual server [VSG_1]:0 - UP | => SCRIPT CHECK succeed on service <=",
		"[lb1] Realserver [10.0.0.7]:tcp:80 of virtual server [10.0.0.3]:tcp:80 - DOWN | => SCRIPT CHECK failed on service: command /bin/sh: exit status 1 <=",
		"[lb1] Realserver [10.0.0.9]:tcp:80 of virtual server [VSG_1]:0 - DOWN | => SCRIPT CHECK failed on service: command /bin/sh: exit status 1 <=",
		"[lb1] Virtualserver [10.0.0.3]:tcp:80 - DOWN | => Lost quorum 2+0=2 <= 1 <=",
		"[lb1] Realserver [10.0.0.7]:tcp:80 of virtual server [10.0.0.3]:tcp:80 - UP | => SCRIPT CHECK succeed on service <=",
		"[lb1] Realserver [10.0.0.9]:tcp:80 of virtual server [VSG_1]:0 - UP | => SCRIPT CHECK succeed on service <=",
		"[lb1] Virtualserver [10.0.0.3]:tcp:80 - UP | => Gained quorum 2+0=2 <= 2 <=",
	)
	m := srv.Mails()[0]
	if m.Helo != "lb1.example.com" || m.From != "lb1@example.com" || m.Headers["To"] != "ops@example.com" {
		t.Errorf("mail %+v", m)
	}
	st := r.d.Status(false).Mail
	if st == nil || st.Sent != 7 || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("status mail %+v", st)
	}
}

// VRRP transitions are mailed once per state, for the instances and sync
// groups whose smtp_alert is on; a group when every member has reached
// the state; FAULT not with no_email_faults; Stopping for each at
// shutdown, instances first.
func TestMailRole(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mailtest.Serve(ln)
	defer srv.Close()
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf(`[global]
router_id = "lb1"
notification_email = ["ops@example.com"]
smtp_server = %q
smtp_alert_vrrp = true
no_email_faults = true
[dataplane]
mode = "ipvs"
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
[[vrrp_instance]]
name = "VI_3"
interface = "eth0"
virtual_router_id = 3
virtual_ipaddress = ["10.0.0.5"]
[[vrrp_sync_group]]
name = "G"
group = ["VI_1", "VI_2"]
`, ln.Addr())), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	d.metrics = NewMetrics(func() *Status { return nil }, nil)
	d.startMail(cfg, ModelFromConfig(cfg))
	states := map[string]vrrp.State{}
	d.mail.states = func() map[string]vrrp.State { return maps.Clone(states) }
	step := func(inst string, to vrrp.State) {
		states[inst] = to
		d.mailRole(vrrp.Event{Instance: inst, To: to})
	}
	step("VI_1", vrrp.Backup)
	step("VI_2", vrrp.Backup) // G in BACKUP
	step("VI_3", vrrp.Backup)
	step("VI_1", vrrp.Backup) // the same state: nothing
	step("VI_1", vrrp.Master)
	step("VI_2", vrrp.Master) // G in MASTER
	step("VI_3", vrrp.Fault)  // no_email_faults
	step("VI_3", vrrp.Master)
	step("VI_1", vrrp.Init) // not a state mailed
	d.mailStopping()
	d.stopMail()
	var got []string
	for _, m := range srv.Mails() {
		got = append(got, m.Headers["Subject"])
	}
	want := []string{
		"[lb1] VRRP Instance VI_1 - Entering BACKUP state",
		"[lb1] VRRP Group G - Entering BACKUP state",
		"[lb1] VRRP Instance VI_3 - Entering BACKUP state",
		"[lb1] VRRP Instance VI_1 - Entering MASTER state",
		"[lb1] VRRP Group G - Entering MASTER state",
		"[lb1] VRRP Instance VI_3 - Entering MASTER state",
		"[lb1] VRRP Instance VI_1 - Stopping",
		"[lb1] VRRP Instance VI_3 - Stopping",
		"[lb1] VRRP Group G - Stopping",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mails:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The daemon keeps a mail target only for a real server it may mail
// about: mail on, smtp_alert on, a check that decides. 65,536 real servers
// without mail were 12 MB held for nothing.
func TestMailTargets(t *testing.T) {
	for _, tc := range []struct {
		name, global string
		want         []string
	}{
		{"no mail", "", nil},
		{"mail", `notification_email = ["ops@example.com"]
smtp_server = "127.0.0.1:25"
smtp_alert_checker = true`, []string{"web/10.0.1.1:80"}},
	} {
		cfg, err := config.Parse("t.toml", []byte(`[global]
`+tc.global+`
[dataplane]
mode = "ipvs"
[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
[[virtual_server.real_server]]
address = "10.0.1.1"
[[virtual_server.real_server]]
address = "10.0.1.2"
smtp_alert = false
[[virtual_server]]
name = "none"
address = "10.0.0.4"
port = 80
health_check.type = "none"
[[virtual_server.real_server]]
address = "10.0.1.3"
`), nil)
		if err != nil {
			t.Fatal(err)
		}
		d := &Daemon{log: slog.New(slog.DiscardHandler)}
		d.metrics = NewMetrics(func() *Status { return nil }, nil)
		d.startMail(cfg, ModelFromConfig(cfg))
		got := slices.Sorted(maps.Keys(d.mail.targets))
		d.stopMail()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: targets %q, want %q", tc.name, got, tc.want)
		}
	}
}
