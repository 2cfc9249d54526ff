package control

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// Reload implements Handler: SIGHUP and `xlb reload`. The new configuration
// is loaded and validated first; on error the old one keeps serving.
// Otherwise only the differences are applied: unchanged services keep
// their connections and counters, unchanged checks their state, unchanged
// VRRP instances their role.
func (d *Daemon) Reload() error {
	select {
	case <-d.ready:
	case <-d.exited:
	}
	select {
	case <-d.exited:
		return errors.New("reload: the daemon is not running")
	default:
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.checkPins()
	cfg, err := config.Load(d.opts.ConfigPath, d.opts.Env)
	var bgpNew bgpPrepared
	if err == nil {
		bgpNew, err = d.prepareBGP(cfg)
	}
	if err == nil {
		err = d.prepareSync(d.Config(), cfg)
	}
	if err == nil {
		err = d.reconfigure(cfg)
	}
	d.mu.Lock()
	d.reloads.Last = time.Now()
	if err != nil {
		d.reloads.Failed++
		d.reloads.LastError = err.Error()
		d.mu.Unlock()
		d.metrics.Reload(err)
		d.log.Error("reload failed: the previous configuration keeps serving", "error", err)
		return err
	}
	logWarnings(d.log, cfg)
	old := d.cfg
	d.cfg = cfg
	d.model = ModelFromConfig(cfg)
	d.reloads.OK++
	d.reloads.LastError = ""
	model := d.model
	d.mu.Unlock()
	d.metrics.Reload(nil)
	for _, what := range restartOnly(old, cfg) {
		d.log.Warn("configuration change needs a restart to take effect", "setting", what)
	}
	d.prepareHost(model)
	// The model before the checks: a round in between finds a new real
	// server's check missing (undecided, as a new check starts) and kept
	// ones unchanged; the other way round, it would find the old model's
	// dropped real servers without a check (undecided: weight 0 or adopted).
	d.applyOverrides(model) // before the model: a round between never applies a stale one
	d.rec.SetModel(model)
	d.configureMail(cfg, model)
	d.setChecks(model)
	d.applyBGP(old, cfg, bgpNew)
	d.log.Info("configuration reloaded", "services", len(model.Services), "vrrp_instances", len(cfg.VRRPInstances))
	return nil
}

// reconfigure checks what config.Load cannot, the VRRP configuration and
// the limits of the dataplane in use, and hands the command runner and
// VRRP their part of cfg. On error nothing has changed.
func (d *Daemon) reconfigure(cfg *config.Config) error {
	if err := CheckConfig(d.opts.ConfigPath, cfg, d.dp.Capabilities().Limits); err != nil {
		return err
	}
	if d.node == nil && len(cfg.VRRPInstances) > 0 {
		return errors.New("adding VRRP instances to a daemon started without any needs a restart")
	}
	prevUser, prevGroup := d.scripts.User()
	if err := d.scripts.SetUser(cfg.Global.ScriptUser, cfg.Global.ScriptGroup); err != nil {
		return fmt.Errorf("%s: script_user: %w", d.opts.ConfigPath, err)
	}
	if d.node != nil {
		if err := d.node.Reconfigure(d.vrrpConfig(cfg)); err != nil {
			_ = d.scripts.SetUser(prevUser, prevGroup) // commands run as before
			return err
		}
	}
	return nil
}

// logWarnings logs what the configuration file says that is accepted but
// worth telling.
func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "warning", w.Error())
	}
}

// checkPins has the dataplane check its pins, if it keeps any (on reload:
// an operator's occasion to have everything checked).
func (d *Daemon) checkPins() {
	if pc, ok := d.dp.(dataplane.PinChecker); ok {
		if err := pc.CheckPins(); err != nil {
			d.log.Error("pinned maps and links", "error", err)
		}
	}
}

// restartOnly lists the settings that changed but only apply at start.
func restartOnly(a, b *config.Config) []string {
	var out []string
	if a.Dataplane.Mode != b.Dataplane.Mode || a.Dataplane.XDPMode != b.Dataplane.XDPMode ||
		!slices.Equal(a.Dataplane.Interfaces, b.Dataplane.Interfaces) || a.Dataplane.PinPath != b.Dataplane.PinPath {
		out = append(out, "[dataplane] mode, xdp_mode, interfaces, pin_path")
	}
	if a.Dataplane.TCPTimeout != b.Dataplane.TCPTimeout || a.Dataplane.TCPFinTimeout != b.Dataplane.TCPFinTimeout ||
		a.Dataplane.UDPTimeout != b.Dataplane.UDPTimeout {
		out = append(out, "[dataplane] connection timeouts")
	}
	if a.Metrics != b.Metrics {
		out = append(out, "[metrics] listen")
	}
	if a.Control != b.Control {
		out = append(out, "[control] socket")
	}
	return out
}
