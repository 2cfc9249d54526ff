package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
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
	d.reloadsStarted.Add(1)
	paceReload(d.opts.ConfigPath)
	start := time.Now()
	d.checkPins()
	cfg, err := config.Load(d.opts.ConfigPath, d.opts.Env)
	loaded := time.Since(start)
	var bgpNew bgpPrepared
	var model Model
	if err == nil {
		model = ModelFromConfig(cfg)
		// The parsed virtual servers (30 MB at 65,536 real servers) are
		// garbage from here: not held while the dataplane applies.
		cfg = withoutServers(cfg)
		bgpNew, err = d.prepareBGP(cfg)
	}
	if err == nil {
		err = d.prepareSync(d.Config(), cfg)
	}
	if err == nil {
		err = d.reconfigure(cfg, model)
	}
	d.mu.Lock()
	d.reloads.Last = time.Now()
	if err != nil {
		d.reloads.Failed++
		d.reloads.LastError = err.Error()
		d.mu.Unlock()
		d.releaseLater(0)
		d.metrics.Reload(err)
		d.log.Error("reload failed: the previous configuration keeps serving", "error", err)
		return err
	}
	logWarnings(d.log, cfg)
	old := d.cfg
	d.cfg = cfg
	d.model = model
	d.reloads.OK++
	d.reloads.LastError = ""
	d.mu.Unlock()
	d.metrics.Reload(nil)
	for _, what := range restartOnly(old, cfg) {
		d.log.Warn("configuration change needs a restart to take effect", "setting", what)
	}
	d.prepareHost(model)
	updates := d.mapUpdates()
	// The model before the checks: a round in between finds a new real
	// server's check missing (undecided, as a new check starts) and kept
	// ones unchanged; the other way round, it would find the old model's
	// dropped real servers without a check (undecided: weight 0 or adopted).
	d.applyOverrides(model) // before the model: a round between never applies a stale one
	gen := d.rec.SetModel(model)
	d.configureMail(cfg, model)
	d.setChecks(model)
	d.applyBGP(old, cfg, bgpNew)
	// `xlb reload` returns once the dataplane has the new configuration.
	ctx, cancel := context.WithTimeout(context.Background(), reloadApplyWait)
	round, werr := d.rec.WaitApplied(ctx, gen)
	cancel()
	attrs := []any{"services", len(model.Services), "vrrp_instances", len(cfg.VRRPInstances), "load", loaded.Round(time.Microsecond)}
	if werr != nil {
		d.log.Warn("configuration reloaded; the dataplane has not applied it yet", append(attrs, "waited", reloadApplyWait)...)
		return nil
	}
	attrs = append(attrs, "apply", round.Apply.Round(time.Microsecond), "round", round.Took.Round(time.Microsecond))
	if u, ok := d.dp.(mapUpdater); ok {
		attrs = append(attrs, "map_updates", u.MapUpdates()-updates)
	}
	d.log.Info("configuration reloaded", append(attrs, "total", time.Since(start).Round(time.Microsecond))...)
	d.releaseLater(gen)
	return nil
}

// reloadApplyWait bounds how long a reload waits for the dataplane to
// apply the new configuration (it is retried after: Reload succeeds).
const reloadApplyWait = 10 * time.Second

// mapUpdater is a dataplane that counts its map updates (XDP).
type mapUpdater interface{ MapUpdates() uint64 }

func (d *Daemon) mapUpdates() uint64 {
	if u, ok := d.dp.(mapUpdater); ok {
		return u.MapUpdates()
	}
	return 0
}

// reconfigure checks what config.Load cannot, the VRRP configuration and
// the limits of the dataplane in use, and hands the command runner and
// VRRP their part of cfg. On error nothing has changed.
func (d *Daemon) reconfigure(cfg *config.Config, m Model) error {
	if err := checkModel(d.opts.ConfigPath, cfg, m, d.dp.Capabilities().Limits); err != nil {
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
	if a.Debug != b.Debug {
		out = append(out, "[debug] pprof_listen")
	}
	return out
}

// reloadMemoryPerByte is the Go memory a reload may take per byte of its
// configuration file: the file, its parse tree and decoded servers, the
// new model and the dataplane's diff (at 200,000 lines the live heap grows
// by about 8 bytes per byte of the file).
const reloadMemoryPerByte = 10

// paceReload sets the collector's pacing for a reload of the file at
// path, which reads a new configuration while the old one serves: the
// soft memory limit is raised by what reading the file takes until it is
// applied (reloadMemoryLimit: at the steady limit the collector would
// work through the reading of 200,000 lines), and the heap may double
// between collections (GOGC 100: the steady margin, a fraction of a live
// heap growing by tens of MB, made collections follow each other through
// the reading); releaseMemory sets both again. GOMEMLIMIT and GOGC, when
// set, are left alone.
func paceReload(path string) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(reloadMemoryLimit(path))
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(100)
	}
}

// reloadMemoryLimit is the soft memory limit while a reload of the file
// at path runs: the steady heap (memoryRoom of the live heap after the
// last configuration was applied, steadyLive; not the live heap now,
// which a status streaming at the time would double) and
// reloadMemoryPerByte times the size of the file, at least the steady
// limit (twice steadyLive, at least memoryFloor); none if the file cannot
// be read (the reload fails on it). Without a limit the collector let
// the heap grow to twice the reload's live heap.
func reloadMemoryLimit(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return math.MaxInt64
	}
	live := steadyLive.Load()
	if live == 0 {
		var ok bool
		if live, ok = gcLiveHeap(); !ok {
			return math.MaxInt64
		}
	}
	return max(memoryFloor, 2*int64(live), memoryRoom(live)+reloadMemoryPerByte*fi.Size())
}
