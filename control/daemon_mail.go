package control

import (
	"context"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/control/mail"
	"github.com/xlb-dev/xlb/vrrp"
)

// The daemon's mail alerts (keepalived's smtp_alert): VRRP instances and
// sync groups changing state, real servers going down and up, virtual
// servers losing and gaining their quorum. Reached from a few lines in
// daemon.go (startMail, mailRole in roleEvent, mailCheck on each check
// result, stopMail) and reload.go (configureMail); the sending is
// control/mail's, never waited for.

// stopMailGrace bounds how long the Stopping alerts may take at shutdown.
const stopMailGrace = 2 * time.Second

// mailState is what the daemon needs for its alerts.
type mailState struct {
	sender *mail.Sender
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	cfg       *config.Config
	targets   map[string]alertTarget // by check key, of the model mailed about
	instances map[string]vrrp.State  // the state last mailed, per instance
	groups    map[string]vrrp.State  // per sync group
	// states returns the VRRP instances' states now (Daemon.vrrpStatus).
	states func() map[string]vrrp.State
}

// alertTarget is a real server a check decides on, as its mails name it.
type alertTarget struct {
	rs, vs    string // keepalived's "[10.0.0.7]:tcp:80", "[10.0.0.3]:tcp:80" or "[VSG_1]:0"
	initialUp bool
	check     health.Type
}

// mailSettings are the mail settings of a configuration; the sender,
// helo name default as keepalived's: the user and the host name.
func mailSettings(c *config.Config) mail.Settings {
	g := c.Global
	if !g.MailEnabled() {
		return mail.Settings{}
	}
	host, _ := os.Hostname()
	st := mail.Settings{Server: g.SMTPServer, From: g.NotificationEmailFrom, To: g.NotificationEmail, Helo: g.SMTPHeloName, Timeout: g.SMTPConnectTimeout}
	if st.From == "" {
		name := "root"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		st.From = name + "@" + host
	}
	if st.Helo == "" {
		st.Helo = host
	}
	return st
}

// startMail starts the sender, on its own context: it outlives the other
// goroutines at shutdown to send the Stopping alerts (stopMail).
func (d *Daemon) startMail(cfg *config.Config, model Model) {
	d.mail.sender = mail.New(mail.Options{Logger: d.log})
	d.mail.instances, d.mail.groups = map[string]vrrp.State{}, map[string]vrrp.State{}
	d.mail.states = func() map[string]vrrp.State {
		st := map[string]vrrp.State{}
		for _, in := range d.vrrpStatus() {
			st[in.Name] = in.State
		}
		return st
	}
	d.configureMail(cfg, model)
	ctx, cancel := context.WithCancel(context.Background())
	d.mail.cancel, d.mail.done = cancel, make(chan struct{})
	go func() {
		defer close(d.mail.done)
		_ = d.mail.sender.Run(ctx)
	}()
	d.metrics.Registry.MustRegister(d.mail.sender)
}

// configureMail hands a configuration to the alerts (start, reload).
func (d *Daemon) configureMail(cfg *config.Config, model Model) {
	// Only the real servers mailCheck mails about, and only with mail on:
	// 65,536 targets were 12 MB held, without a mail ever sent.
	targets := map[string]alertTarget{}
	for _, s := range model.Services {
		if !cfg.Global.MailEnabled() {
			break
		}
		proto := s.Key.Proto.String()
		vs := mail.Trio(s.Key.Addr, proto, s.Key.Port)
		if s.Group != "" {
			vs = mail.GroupName(s.Group)
		}
		for _, rs := range s.Reals {
			if !rs.SMTPAlert || rs.checkType() == checktype.None {
				continue
			}
			k := s.checkKey(rs)
			if _, ok := targets[k]; ok {
				continue // a group's later entries: mailed as the first
			}
			id := rs.ident()
			targets[k] = alertTarget{rs: mail.Trio(id.Addr, proto, id.Port), vs: vs,
				initialUp: rs.Check.InitialUp, check: rs.checkType()}
		}
	}
	d.mail.mu.Lock()
	d.mail.cfg, d.mail.targets = cfg, targets
	d.mail.mu.Unlock()
	d.mail.sender.Configure(mailSettings(cfg))
}

// mailRole mails a VRRP instance's new state, and its sync group's when
// every member has reached it (as vrrp's own group notifications), each
// state once (keepalived's last_email_state).
func (d *Daemon) mailRole(ev vrrp.Event) {
	if d.mail.sender == nil || !d.mail.sender.Enabled() {
		return
	}
	if ev.To != vrrp.Master && ev.To != vrrp.Backup && ev.To != vrrp.Fault {
		return
	}
	d.mail.mu.Lock()
	cfg := d.mail.cfg
	var msgs []mail.Message
	noFault := cfg.Global.NoEmailFaults && ev.To == vrrp.Fault
	for _, in := range cfg.VRRPInstances {
		if in.Name == ev.Instance && in.SMTPAlert && !noFault && d.mail.instances[in.Name] != ev.To {
			d.mail.instances[in.Name] = ev.To
			if m, ok := mail.InstanceAlert(cfg.Global.RouterID, in.Name, ev.To.String()); ok {
				msgs = append(msgs, m)
			}
		}
	}
	d.mail.mu.Unlock()
	for _, g := range cfg.SyncGroups {
		if !g.SMTPAlert || noFault || !memberOf(g, ev.Instance) || !groupIn(g, d.mail.states(), ev.To) {
			continue
		}
		d.mail.mu.Lock()
		fresh := d.mail.groups[g.Name] != ev.To
		d.mail.groups[g.Name] = ev.To
		d.mail.mu.Unlock()
		if m, ok := mail.GroupAlert(cfg.Global.RouterID, g.Name, ev.To.String()); ok && fresh {
			msgs = append(msgs, m)
		}
	}
	for _, m := range msgs {
		d.mail.sender.Send(m)
	}
}

func memberOf(g config.SyncGroup, instance string) bool {
	for _, m := range g.Group {
		if m == instance {
			return true
		}
	}
	return false
}

// groupIn reports whether every member of g is in state st.
func groupIn(g config.SyncGroup, states map[string]vrrp.State, st vrrp.State) bool {
	for _, m := range g.Group {
		if states[m] != st {
			return false
		}
	}
	return true
}

// mailCheck mails a real server whose check took it down or put it back
// up. A check's first result is mailed only when it differs from the
// real server's initial state (keepalived with or without alpha).
func (d *Daemon) mailCheck(t health.Transition) {
	if d.mail.sender == nil || t.From == t.To || !d.mail.sender.Enabled() {
		return
	}
	d.mail.mu.Lock()
	tg, ok := d.mail.targets[t.Key]
	routerID := d.mail.cfg.Global.RouterID
	d.mail.mu.Unlock()
	if !ok {
		return
	}
	from := t.From
	if from == health.StateUnknown {
		from = health.StateDown
		if tg.initialUp {
			from = health.StateUp
		}
	}
	if (t.To != health.StateUp && t.To != health.StateDown) || from == t.To {
		return
	}
	d.mail.sender.Send(mail.RealServerAlert(routerID, tg.rs, tg.vs, t.To == health.StateUp, string(tg.check), t.Err))
}

// mailQuorum mails a virtual server that gained or lost its quorum
// (ReconcilerOptions.OnQuorum).
func (d *Daemon) mailQuorum(s ServiceSpec, st ServiceState) {
	if d.mail.sender == nil || !s.SMTPAlert || !d.mail.sender.Enabled() {
		return
	}
	d.mail.mu.Lock()
	routerID := d.mail.cfg.Global.RouterID
	d.mail.mu.Unlock()
	vs := mail.Trio(s.Key.Addr, s.Key.Proto.String(), s.Key.Port)
	if s.Group != "" {
		vs = mail.GroupName(s.Group)
	}
	threshold := int64(s.Quorum) + int64(s.Hysteresis) // to gain it
	if !st.Up {
		threshold = int64(s.Quorum) - int64(s.Hysteresis) // to lose it
	}
	d.mail.sender.Send(mail.VirtualServerAlert(routerID, vs, st.Up, s.Quorum, s.Hysteresis, threshold, st.Healthy))
}

// mailStopping queues the Stopping alerts of the instances, then of the
// sync groups (keepalived's notify_shutdown).
func (d *Daemon) mailStopping() {
	if d.mail.sender == nil || !d.mail.sender.Enabled() {
		return
	}
	d.mail.mu.Lock()
	cfg := d.mail.cfg
	d.mail.mu.Unlock()
	for _, in := range cfg.VRRPInstances {
		if m, ok := mail.InstanceAlert(cfg.Global.RouterID, in.Name, "STOP"); ok && in.SMTPAlert {
			d.mail.sender.Send(m)
		}
	}
	for _, g := range cfg.SyncGroups {
		if m, ok := mail.GroupAlert(cfg.Global.RouterID, g.Name, "STOP"); ok && g.SMTPAlert {
			d.mail.sender.Send(m)
		}
	}
}

// stopMail gives the queued alerts stopMailGrace to go, then stops the
// sender.
func (d *Daemon) stopMail() {
	if d.mail.sender == nil || d.mail.cancel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopMailGrace)
	if err := d.mail.sender.Flush(ctx); err != nil {
		d.log.Warn("mail alerts not sent before stopping", "queued", d.mail.sender.Stats().Queued)
	}
	cancel()
	d.mail.cancel()
	d.mail.cancel = nil
	<-d.mail.done
}
