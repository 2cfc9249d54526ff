package e2e

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/mail/mailtest"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// The mail namespace on the lab's switch: a real SMTP server on
// mxLive:25, and mxDead, where a firewall drops every SYN to port 25 (a
// black-holed server: a connection never completes).
const (
	mxLive = "10.77.0.25"
	mxDead = "10.77.0.26"
)

// mailServer plugs a mail namespace into the lab's segment and serves
// SMTP on mxLive.
func mailServer(t *testing.T, l *lab.Lab) *mailtest.Server {
	t.Helper()
	ns := nettest.NewNS(t, "mx")
	nettest.Veth(t, ns, "eth0", l.Switch, "pmx")
	l.Switch.MustRun(t, "ip", "link", "set", "pmx", "master", "br0")
	nettest.Addr(t, ns, "eth0", mxLive+"/24")
	nettest.Addr(t, ns, "eth0", mxDead+"/24")
	ns.MustRun(t, "nft", "add table inet blackhole")
	ns.MustRun(t, "nft", "add chain inet blackhole in { type filter hook input priority 0 ; }")
	ns.MustRun(t, "nft", "add rule inet blackhole in ip daddr "+mxDead+" tcp dport 25 drop")
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", mxLive+":25")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := mailtest.Serve(ln)
	t.Cleanup(srv.Close)
	return srv
}

// withMail is a director's configuration with mail alerts through
// server (HOST:PORT), on for every instance and real server.
func withMail(cfg, server string) string {
	return strings.Replace(cfg, "[global]\n", fmt.Sprintf(`[global]
notification_email = ["ops@example.com"]
notification_email_from = "xlb@example.com"
smtp_server = %q
smtp_connect_timeout = "30s"
smtp_alert = true
`, server), 1)
}

// subjects are the subjects of the mails received, sorted.
func subjects(srv *mailtest.Server) []string {
	var out []string
	for _, m := range srv.Mails() {
		out = append(out, m.Headers["Subject"]+" | "+m.Body)
	}
	sort.Strings(out)
	return out
}

// waitMail waits until n mails start with want.
func waitMail(t *testing.T, srv *mailtest.Server, n int, want string) {
	t.Helper()
	nettest.WaitFor(t, 30*time.Second, fmt.Sprintf("%d mails %s", n, want), func() error {
		got := subjects(srv)
		found := 0
		for _, g := range got {
			if strings.HasPrefix(g, want) {
				found++
			}
		}
		if found < n {
			return fmt.Errorf("%d; mails so far:\n%s", found, strings.Join(got, "\n"))
		}
		return nil
	})
}

// TestMailAlerts: two directors mail a real SMTP server in the lab as
// keepalived does: their VRRP states, a real server's loss and return
// (from each director), the backup's takeover when the master dies, and
// Stopping when a director stops.
func TestMailAlerts(t *testing.T) {
	l := lab.New(t, lab.Spec{Layout: lab.DR, Scheduler: "mh"})
	logsOnFailure(t, l)
	srv := mailServer(t, l)
	for _, d := range l.Directors {
		d.WriteConfig(withMail(d.DefaultConfig(), mxLive))
		d.Start()
	}
	l.WaitMaster(l.Directors[0], 20*time.Second)
	waitMail(t, srv, 1, "[d1] VRRP Instance VI_1 - Entering MASTER state | => VRRP Instance is now owning VRRP VIPs <=")
	waitMail(t, srv, 1, "[d2] VRRP Instance VI_1 - Entering BACKUP state | => VRRP Instance is no longer owning VRRP VIPs <=")
	for _, d := range l.Directors {
		waitAllUp(t, l, d)
	}

	// Each real server came up (the lab's checks start down): mailed.
	r := l.Reals[0]
	up := "] Realserver [10.77.0.11]:tcp:80 of virtual server [10.77.0.100]:tcp:80 - UP | => HTTP CHECK succeed on service <="
	for _, d := range []string{"[d1", "[d2"} {
		waitMail(t, srv, 1, d+up)
	}
	r.StopWeb()
	for _, d := range []string{"[d1", "[d2"} {
		waitMail(t, srv, 1, d+"] Realserver [10.77.0.11]:tcp:80 of virtual server [10.77.0.100]:tcp:80 - DOWN | => HTTP CHECK failed on service: ")
	}
	r.StartWeb()
	for _, d := range []string{"[d1", "[d2"} {
		waitMail(t, srv, 2, d+up)
	}

	l.Directors[0].Kill()
	l.WaitMaster(l.Directors[1], 10*time.Second)
	waitMail(t, srv, 1, "[d2] VRRP Instance VI_1 - Entering MASTER state")
	l.Directors[1].Stop()
	waitMail(t, srv, 1, "[d2] VRRP Instance VI_1 - Stopping | => VRRP Instance stopping <=")

	m := srv.Mails()[0]
	if m.From != "xlb@example.com" || !slices.Equal(m.To, []string{"ops@example.com"}) || m.Headers["X-Mailer"] != "xlb" {
		t.Errorf("mail %+v", m)
	}
	t.Logf("%d mails:\n%s", len(srv.Mails()), strings.Join(subjects(srv), "\n"))
}

// TestMailBlackHoleTakeover: with the SMTP server black-holed (its SYNs
// dropped: each mail waits out the 30s timeout) the backup takes over as
// fast as without mail; its alerts wait in a bounded queue, and nothing
// else does.
func TestMailBlackHoleTakeover(t *testing.T) {
	l := pairLab(t, lab.Spec{Layout: lab.DR, Scheduler: "mh"})
	mailServer(t, l)
	d1, d2 := l.Directors[0], l.Directors[1]
	takeover := func() time.Duration {
		t.Helper()
		killed := time.Now()
		d1.Kill()
		l.WaitMaster(d2, 10*time.Second)
		took := time.Since(killed)
		nettest.WaitFor(t, 10*time.Second, "requests through the new master", func() error {
			_, err := l.Get(time.Second)
			return err
		})
		d1.Start()
		l.WaitMaster(d1, 20*time.Second)
		nettest.WaitFor(t, 20*time.Second, "requests through d1", func() error {
			_, err := l.Get(time.Second)
			return err
		})
		// d2's roles keep flowing to its dataplane (the SMTP timeout is 30s).
		nettest.WaitFor(t, 5*time.Second, "d2 no longer forwarding", func() error {
			st, err := d2.Status()
			if err != nil {
				return err
			}
			if s := service(st, "web"); s == nil || s.Forwarding {
				return fmt.Errorf("d2 forwards web: %+v", s)
			}
			return nil
		})
		return took
	}
	const rounds = 3
	var plain, dead []time.Duration
	for range rounds {
		plain = append(plain, takeover())
	}
	for _, d := range l.Directors {
		d.WriteConfig(withMail(d.DefaultConfig(), mxDead))
		if err := d.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	// A real server lost: both directors queue its mail, stuck on the
	// dead server, when the takeovers come.
	l.Reals[0].StopWeb()
	waitHealth(t, d2, "web", webAddr(l, l.Reals[0]), "down", 10*time.Second)
	for range rounds {
		dead = append(dead, takeover())
	}
	slices.Sort(plain)
	slices.Sort(dead)
	st, err := d2.Status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("takeover without mail %v, with a black-holed SMTP server %v (medians %v, %v); d2's mail: %+v",
		plain, dead, plain[rounds/2], dead[rounds/2], st.Mail)
	if med := dead[rounds/2]; med > plain[rounds/2]+500*time.Millisecond || med > 5*time.Second {
		t.Errorf("a black-holed SMTP server slowed the takeover: median %v, %v without mail", med, plain[rounds/2])
	}
	if st.Mail == nil || st.Mail.Sent != 0 || st.Mail.Queued < 2 || st.Mail.Queued > 64 {
		t.Errorf("d2's mail %+v: want alerts waiting (the real server's, the takeovers'), none sent", st.Mail)
	}
	text, err := d2.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if q := metric(t, text, "xlb_mail_queued"); q != float64(st.Mail.Queued) && q < 2 {
		t.Errorf("xlb_mail_queued %v", q)
	}
}
