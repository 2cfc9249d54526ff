package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/bgp"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/vrrp"
)

// The daemon's BGP announcements ([bgp]) and its drain (`xlb drain`):
// everything here is reached from a few lines in daemon.go (startBGP,
// stopBGP, prepareBGP/applyBGP in Reload, the
// reconciler's OnReconciled), daemon_status.go (bgpStatus) and socket.go
// (the Drainer commands).

// bgpState is the daemon's BGP part; nil fields when [bgp] is absent.
type bgpState struct {
	mgr *bgp.Manager
	// reconciled is set once the reconciler has applied (or found
	// nothing to apply): the services' state is known from then on.
	reconciled atomic.Bool
	// drained: `xlb drain` released the VRRP instances (and drains BGP).
	drained bool
}

// bgpPoke tells the announcements that the reconciler applied something
// (ReconcilerOptions.OnReconciled).
func (d *Daemon) bgpPoke() {
	d.bgp.reconciled.Store(true)
	if d.bgp.mgr != nil {
		d.bgp.mgr.Poke()
	}
}

// bgpServices is the state of every service, for the announcement rule.
func (d *Daemon) bgpServices() ([]bgp.Service, bool) {
	if !d.bgp.reconciled.Load() {
		return nil, false
	}
	d.mu.Lock()
	model := d.model
	d.mu.Unlock()
	states := d.rec.States()
	forwarding := map[any]bool{}
	for _, s := range d.rec.Applied() {
		forwarding[s.Key] = s.Enabled
	}
	masters := map[string]bool{}
	for _, in := range d.vrrpStatus() {
		masters[in.Name] = in.State == vrrp.Master
	}
	out := make([]bgp.Service, 0, len(model.Services))
	for _, s := range model.Services {
		st := states[s.Key]
		out = append(out, bgp.Service{
			Name: s.Name, VIP: s.Key.Addr, Forwarding: forwarding[s.Key], Up: st.Up, SorryActive: st.SorryActive,
			Instance: s.Instance, Master: masters[s.Instance], SyncReady: d.SyncReady(s),
		})
	}
	return out, true
}

// bgpSettings converts [bgp] (password files read, attributes converted).
func bgpSettings(c *config.BGP) (bgp.Settings, error) {
	conv := func(med, pref *uint32, cs []config.Community) bgp.Attrs {
		a := bgp.Attrs{MED: med, LocalPref: pref}
		for _, c := range cs {
			a.Communities = append(a.Communities, uint32(c))
		}
		return a
	}
	s := bgp.Settings{Mode: bgp.Mode(c.Announce), DrainTime: c.DrainTime, VIPs: map[netip.Addr]bgp.Attrs{}}
	for _, v := range c.VIPs {
		s.VIPs[v.Address] = conv(v.MED, v.LocalPref, v.Communities)
	}
	for _, p := range c.Peers {
		a := conv(p.MED, p.LocalPref, p.Communities)
		pc := bgp.PeerConfig{Address: p.Address, ASN: p.ASN, Port: p.Port, HoldTime: p.HoldTime, BFD: p.BFD,
			BFDInterval: p.BFDInterval, BFDMultiplier: uint8(p.BFDMultiplier), MED: a.MED, LocalPref: a.LocalPref, Communities: a.Communities}
		if p.PasswordFile != "" {
			b, err := os.ReadFile(p.PasswordFile)
			if err != nil {
				return s, fmt.Errorf("bgp.peer %s: password_file: %w", p.Address, err)
			}
			pc.Password = strings.TrimRight(string(b), "\r\n")
			if pc.Password == "" || len(pc.Password) > 80 {
				return s, fmt.Errorf("bgp.peer %s: password_file %s: the password must be 1..80 bytes (TCP MD5)", p.Address, p.PasswordFile)
			}
		}
		s.Peers = append(s.Peers, pc)
	}
	return s, nil
}

// routerID is [bgp] router_id, else the first IPv4 address of the
// dataplane interfaces.
func routerID(cfg *config.Config) (netip.Addr, error) {
	if cfg.BGP.RouterID.IsValid() {
		return cfg.BGP.RouterID, nil
	}
	for _, name := range cfg.Dataplane.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return p.Addr(), nil
			}
		}
	}
	return netip.Addr{}, errors.New("[bgp] router_id: not set, and the dataplane interfaces have no IPv4 address to take it from")
}

// startBGP starts the speaker (its sessions open once the reconciler has
// applied once). restarting: the dataplane was adopted from a previous run
// (it kept forwarding), so the OPEN messages ask routers to keep the
// routes they have (graceful restart).
func (d *Daemon) startBGP(cfg *config.Config, goRun func(string, func(context.Context) error)) error {
	if cfg.BGP == nil {
		return nil
	}
	set, err := bgpSettings(cfg.BGP)
	if err != nil {
		return err
	}
	id, err := routerID(cfg)
	if err != nil {
		return err
	}
	restarting := false
	if in, ok := d.dp.(dataplane.Adopter); ok {
		restarting = len(in.Installed()) > 0
	}
	mgr, err := bgp.New(bgp.Options{
		Logger:   d.log,
		Speaker:  bgp.SpeakerOptions{ASN: cfg.BGP.ASN, RouterID: id, RestartTime: cfg.BGP.RestartTime, Restarting: restarting},
		Settings: set,
		Services: d.bgpServices,
	})
	if err != nil {
		return err
	}
	d.bgp.mgr = mgr
	d.metrics.Registry.MustRegister(mgr)
	goRun("BGP", mgr.Run)
	d.log.Info("BGP speaker started", "asn", cfg.BGP.ASN, "router_id", id, "peers", len(set.Peers), "graceful_restart", restarting)
	return nil
}

// stopBGP ends the announcements as the daemon stops: with
// keep_forwarding_on_exit and graceful restart, the sessions close without
// a NOTIFICATION (the routers keep the routes while the daemon restarts
// and the pinned dataplane forwards); otherwise a drain (GRACEFUL_SHUTDOWN
// for drain_time, then the withdrawal and an Administrative Shutdown),
// then a second of forwarding while the routers' tables follow.
func (d *Daemon) stopBGP(cfg *config.Config) {
	mgr := d.bgp.mgr
	if mgr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	restart := cfg.Dataplane.KeepForwardingOnExit && cfg.BGP.RestartTime > 0
	if !restart {
		select {
		case <-mgr.Drain():
			select {
			case <-time.After(time.Second):
			case <-d.forceStop:
			}
		case <-d.forceStop:
		}
	}
	if err := mgr.Close(ctx, restart); err != nil {
		d.log.Warn("BGP stop", "error", err)
	}
	d.log.Info("BGP stopped", "graceful_restart", restart)
}

// bgpPrepared is a reload's [bgp], checked before the reload commits.
type bgpPrepared struct {
	set bgp.Settings
	ok  bool
}

// prepareBGP checks a reloaded [bgp] (password files read): an error
// fails the reload and the old configuration keeps serving.
func (d *Daemon) prepareBGP(cfg *config.Config) (bgpPrepared, error) {
	if (cfg.BGP == nil) != (d.bgp.mgr == nil) {
		return bgpPrepared{}, errors.New("adding or removing [bgp] needs a restart")
	}
	if cfg.BGP == nil {
		return bgpPrepared{}, nil
	}
	set, err := bgpSettings(cfg.BGP)
	if err != nil {
		return bgpPrepared{}, fmt.Errorf("%s: %w", d.opts.ConfigPath, err)
	}
	return bgpPrepared{set: set, ok: true}, nil
}

// applyBGP applies a reloaded [bgp]: peers one by one, the rest at once.
func (d *Daemon) applyBGP(old, cfg *config.Config, p bgpPrepared) {
	if !p.ok {
		return
	}
	if old.BGP.ASN != cfg.BGP.ASN || old.BGP.RouterID != cfg.BGP.RouterID || old.BGP.RestartTime != cfg.BGP.RestartTime {
		d.log.Warn("configuration change needs a restart to take effect", "setting", "[bgp] asn, router_id, restart_time")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.bgp.mgr.Reconfigure(ctx, p.set); err != nil {
		d.log.Error("BGP reload", "error", err)
	}
}

// bgpStatus is the BGP section of the status.
func (d *Daemon) bgpStatus() *bgp.Status {
	if d.bgp.mgr == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.bgp.mgr.Status(ctx)
}

// Drain implements Drainer (`xlb drain`): the VIPs leave this director
// and it keeps forwarding what still arrives. BGP: GRACEFUL_SHUTDOWN,
// drain_time, withdrawal, Administrative Shutdown. VRRP: every instance
// resigns (priority 0, as at SIGTERM) and stays released. Both until
// Undrain; the daemon keeps running.
func (d *Daemon) Drain() (string, error) {
	var msgs []string
	if d.bgp.mgr != nil {
		d.bgp.mgr.Drain()
		msgs = append(msgs, fmt.Sprintf("BGP: GRACEFUL_SHUTDOWN announced, withdrawal in %v", d.Config().BGP.DrainTime))
	}
	if d.node != nil {
		d.reloadMu.Lock()
		d.bgp.drained = true
		err := d.node.Reconfigure(d.vrrpConfig(d.Config()))
		d.reloadMu.Unlock()
		if err != nil {
			return "", fmt.Errorf("drain: VRRP: %w", err)
		}
		msgs = append(msgs, "VRRP: instances resigned (priority 0) and held released")
	}
	if len(msgs) == 0 {
		return "", errors.New("drain: neither [bgp] nor VRRP instances: nothing announces this director")
	}
	d.log.Info("drained (xlb drain)", "what", strings.Join(msgs, "; "))
	return "draining: " + strings.Join(msgs, "; "), nil
}

// Undrain implements Drainer (`xlb undrain`).
func (d *Daemon) Undrain() (string, error) {
	var msgs []string
	if d.bgp.mgr != nil {
		if err := d.bgp.mgr.Undrain(context.Background()); err != nil {
			return "", fmt.Errorf("undrain: BGP: %w", err)
		}
		msgs = append(msgs, "BGP: sessions open, VIPs announced by the rules")
	}
	if d.node != nil {
		d.reloadMu.Lock()
		d.bgp.drained = false
		err := d.node.Reconfigure(d.vrrpConfig(d.Config()))
		d.reloadMu.Unlock()
		if err != nil {
			return "", fmt.Errorf("undrain: VRRP: %w", err)
		}
		msgs = append(msgs, "VRRP: instances running again")
	}
	if len(msgs) == 0 {
		return "", errors.New("undrain: neither [bgp] nor VRRP instances")
	}
	d.log.Info("undrained (xlb undrain)", "what", strings.Join(msgs, "; "))
	return "serving: " + strings.Join(msgs, "; "), nil
}

// vrrpConfig is the VRRP configuration to run: none of the instances
// while drained (they stop as removed ones do: priority 0, VIPs removed);
// without preemption until connection sync is ready (daemon_sync.go).
func (d *Daemon) vrrpConfig(cfg *config.Config) vrrp.Config {
	vc := VRRPFromConfig(cfg)
	if d.bgp.drained {
		vc.Instances, vc.SyncGroups = nil, nil
	}
	d.holdPreempt(&vc)
	return vc
}

// Drainer is implemented by handlers that serve `xlb drain` and `xlb
// undrain` on the control socket.
type Drainer interface {
	Drain() (string, error)
	Undrain() (string, error)
}

var _ Drainer = (*Daemon)(nil)

// drainCommand serves "drain" and "undrain".
func drainCommand(h Handler, cmd string) Response {
	dr, ok := h.(Drainer)
	if !ok {
		return Response{Error: cmd + " is not supported"}
	}
	f := dr.Drain
	if cmd == "undrain" {
		f = dr.Undrain
	}
	msg, err := f()
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Response{OK: true, Message: msg}
}
