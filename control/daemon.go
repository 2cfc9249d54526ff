package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/command"
	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/ipvs"
	"github.com/xlb-dev/xlb/dataplane/xdp"
	"github.com/xlb-dev/xlb/vrrp"
)

// DaemonOptions configure a Daemon.
type DaemonOptions struct {
	ConfigPath string
	Version    string
	Logger     *slog.Logger
	// Env validates the configuration against the host; nil: the system's.
	Env config.Env
	// Ready is called once the daemon serves (systemd notification).
	Ready func()
	// Dataplane, when set, is used instead of the one the configuration
	// asks for (tests drive the daemon on dataplane.Fake).
	Dataplane dataplane.Dataplane
}

// Daemon is `xlb run`: the dataplane, health checks, VRRP, reconciler,
// metrics and control socket of one director.
type Daemon struct {
	opts    DaemonOptions
	log     *slog.Logger
	started time.Time

	dp      dataplane.Dataplane
	rec     *Reconciler
	checks  *health.Manager
	node    *vrrp.Node
	metrics *Metrics
	rates   *rateTracker
	// scripts runs every external command: notify and track scripts
	// (VRRP), script checks, quorum commands.
	scripts *command.Runner

	stopping  atomic.Bool
	forceStop chan struct{}
	// ready is closed once Run has built every component a reload touches;
	// exited when Run returns. Reloads wait for the first (a SIGHUP during
	// start-up) and are refused after the second.
	ready, exited chan struct{}
	reloadMu      sync.Mutex // one reload at a time

	mu        sync.Mutex
	cfg       *config.Config
	model     Model
	reloads   ReloadStatus
	checkType map[string]health.Type
}

// NewDaemon loads and validates the configuration. Nothing touches the
// host yet.
func NewDaemon(opts DaemonOptions) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Env == nil {
		opts.Env = config.SystemEnv()
	}
	cfg, err := config.Load(opts.ConfigPath, opts.Env)
	if err != nil {
		return nil, err
	}
	vc := VRRPFromConfig(cfg)
	if err := vc.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", opts.ConfigPath, err)
	}
	scripts, err := command.New(command.Options{Logger: opts.Logger, User: cfg.Global.ScriptUser, Group: cfg.Global.ScriptGroup})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.ConfigPath, err)
	}
	logWarnings(opts.Logger, cfg)
	return &Daemon{opts: opts, log: opts.Logger, cfg: cfg, model: ModelFromConfig(cfg), scripts: scripts, forceStop: make(chan struct{}),
		ready: make(chan struct{}), exited: make(chan struct{})}, nil
}

// Config returns the configuration in effect.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// OpenDataplane opens the dataplane a configuration asks for: XDP, IPVS,
// or (auto) XDP falling back to IPVS with the reason logged.
func OpenDataplane(cfg *config.Config, log *slog.Logger) (dataplane.Dataplane, error) {
	openXDP := func() (dataplane.Dataplane, error) {
		if err := ensurePinPath(cfg.Dataplane.PinPath, log); err != nil {
			return nil, err
		}
		mode := xdp.AttachMode(cfg.Dataplane.XDPMode)
		return xdp.Open(xdp.Options{
			Interfaces: cfg.Dataplane.Interfaces, Mode: mode, PinPath: cfg.Dataplane.PinPath, Logger: log,
			TCPTimeout: cfg.Dataplane.TCPTimeout, TCPFinTimeout: cfg.Dataplane.TCPFinTimeout, UDPTimeout: cfg.Dataplane.UDPTimeout,
		})
	}
	switch cfg.Dataplane.Mode {
	case config.ModeXDP:
		dp, err := openXDP()
		if err != nil {
			return nil, fmt.Errorf("XDP dataplane (mode = \"xdp\"): %w", err)
		}
		return dp, nil
	case config.ModeIPVS:
		dp, err := ipvs.New(ipvs.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("IPVS dataplane (mode = \"ipvs\"): %w", err)
		}
		return dp, nil
	}
	dp, xerr := openXDP()
	if xerr == nil {
		return dp, nil
	}
	if errors.Is(xerr, xdp.ErrPinPathInUse) {
		return nil, xerr // another daemon runs this dataplane: IPVS would compete with it
	}
	log.Warn("XDP dataplane unavailable, falling back to IPVS", "error", xerr)
	dp, ierr := ipvs.New(ipvs.Options{Logger: log})
	if ierr != nil {
		return nil, fmt.Errorf("no dataplane: XDP: %v; IPVS: %w", xerr, ierr)
	}
	return dp, nil
}

// ensurePinPath makes sure the pin path is on a bpffs, mounting one there
// if needed (inside `ip netns exec`, /sys is remounted without one).
func ensurePinPath(path string, log *slog.Logger) error {
	// Under /sys/fs/bpf (the default), a bpffs belongs on /sys/fs/bpf
	// itself; elsewhere on the pin path.
	mountAt := path
	if rel, err := filepath.Rel(bpffsRoot, path); err == nil && !strings.HasPrefix(rel, "..") {
		mountAt = bpffsRoot
	}
	if _, err := os.Stat(mountAt); err != nil {
		if err := os.MkdirAll(mountAt, 0o700); err != nil {
			return fmt.Errorf("pin path %s: %w", path, err)
		}
	}
	if !xdp.IsBPFFS(mountAt) {
		if err := mountBPFFS(mountAt); err != nil {
			return fmt.Errorf("pin path %s is not on a bpffs and mounting one failed (%w): mount one with `mount -t bpf bpf %s` or set [dataplane] pin_path to a directory on a bpffs", path, err, mountAt)
		}
		log.Warn("mounted a bpffs for the pin path: pinned state lives as long as this mount (inside `ip netns exec`, as long as the process)", "mount", mountAt)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("pin path %s: %w", path, err)
	}
	return nil
}

// bpffsRoot is where a bpffs is conventionally mounted.
const bpffsRoot = "/sys/fs/bpf"

// Run runs the daemon until ctx is done, then shuts down: VRRP resigns
// (priority 0) and removes its addresses, then the dataplane detaches (or
// stays pinned with keep_forwarding_on_exit).
func (d *Daemon) Run(ctx context.Context) error {
	defer close(d.exited)
	d.started = time.Now()
	cfg := d.Config()
	sockLock, err := lockSocket(cfg.Control.Socket)
	if err != nil {
		return err
	}
	defer sockLock.Close()
	dp := d.opts.Dataplane
	if dp == nil {
		var err error
		if dp, err = OpenDataplane(cfg, d.log); err != nil {
			return err
		}
	}
	d.dp = dp
	info := dp.Info()
	d.log.Info("dataplane ready", "mode", info.Mode, "attach", info.Attach)
	if info.Mode == "xdp" {
		d.prepareKernel(cfg)
	}

	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	goRun := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(runCtx); err != nil && runCtx.Err() == nil {
				d.log.Error(name+" stopped", "error", err)
			}
		}()
	}

	var neigh Neighbors
	var recRef *Reconciler
	if info.Mode == "xdp" {
		nn, err := NewNetNeighbors(d.log, netns.None(), func() {
			if recRef != nil {
				recRef.Poke()
			}
		})
		if err != nil {
			dp.Close()
			return err
		}
		neigh = nn
		goRun("neighbour resolution", nn.Run)
	}
	d.rec = NewReconciler(dp, ReconcilerOptions{
		Logger:    d.log,
		Neighbors: neigh,
		RunScript: func(cmd string) { d.scripts.Go(cmd) },
	})
	recRef = d.rec
	d.rec.SetModel(d.model)

	d.metrics = NewMetrics(func() *Status { return d.Status(false) }, d.vrrpStatus)
	d.checks = health.NewManager(health.Options{Logger: d.log, Scripts: d.scripts, Observe: func(key string, dur time.Duration, err error) {
		d.mu.Lock()
		typ := d.checkType[key]
		d.mu.Unlock()
		d.metrics.ObserveCheck(string(typ), dur, err)
	}})
	d.setChecks(d.model)
	goRun("health checks", d.checks.Run)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for tr := range d.checks.Results() {
			d.rec.SetHealthWeight(tr.Key, tr.To, tr.Weight)
		}
	}()

	var vrrpDone chan struct{}
	vctx, vstop := context.WithCancel(context.Background())
	defer vstop()
	if len(cfg.VRRPInstances) > 0 {
		node, err := vrrp.NewNode(VRRPFromConfig(cfg), vrrp.Options{Logger: d.log, Runner: d.scripts, BeforeMaster: d.beforeMaster})
		if err != nil {
			dp.Close()
			return err
		}
		d.node = node
		vrrpDone = make(chan struct{})
		go func() {
			defer close(vrrpDone)
			if err := node.Run(vctx); err != nil {
				d.log.Error("VRRP stopped", "error", err)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-runCtx.Done():
					return
				case ev := <-node.Events():
					d.roleEvent(ev)
				}
			}
		}()
	}

	goRun("reconciler", func(ctx context.Context) error { return d.rec.Run(ctx, 5*time.Second) })
	d.rates = newRateTracker(2 * time.Second)
	goRun("rate sampler", func(ctx context.Context) error { return d.rates.run(ctx, d.sample) })

	var srv *http.Server
	if l := cfg.Metrics.Listen; l != "" {
		ln, err := net.Listen("tcp", l)
		if err != nil {
			dp.Close()
			return fmt.Errorf("metrics listen %s: %w", l, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", d.metrics.Handler())
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		d.log.Info("metrics served", "listen", ln.Addr().String())
	}
	sock, err := ListenSocket(cfg.Control.Socket, d, SocketOptions{Logger: d.log})
	if err != nil {
		dp.Close()
		return err
	}
	d.metrics.Registry.MustRegister(sock)
	goRun("control socket", sock.Serve)
	d.log.Info("xlb running", "config", d.opts.ConfigPath, "services", len(d.model.Services), "vrrp_instances", len(cfg.VRRPInstances))
	close(d.ready)
	if d.opts.Ready != nil {
		d.opts.Ready()
	}

	<-ctx.Done()
	d.log.Info("shutting down")
	if d.node != nil {
		// Resign (priority 0: the backup takes over after its skew time) and
		// keep forwarding meanwhile: clients still send here until the
		// backup's gratuitous ARPs reach them.
		d.stopping.Store(true)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := d.node.Shutdown(sctx); err != nil {
			d.log.Warn("VRRP shutdown", "error", err)
		}
		cancel()
		vstop()
		<-vrrpDone
		if grace := d.node.ResignGrace(); grace > 0 {
			d.log.Info("VRRP resigned; forwarding until the backup has taken over", "grace", grace)
			select {
			case <-time.After(grace):
			case <-d.forceStop:
			}
		}
	}
	stop() // reconciler, checks, socket: nothing re-applies from here
	wg.Wait()
	// Wait for the background commands (Go: quorum_up, quorum_down) still
	// running: each ends within its timeout (its process group is killed
	// then), none is left behind unsupervised.
	_ = d.scripts.Wait(context.Background())
	if srv != nil {
		_ = srv.Close()
	}
	cfg = d.Config()
	if cfg.Dataplane.KeepForwardingOnExit {
		d.log.Info("leaving the dataplane pinned and forwarding (keep_forwarding_on_exit)")
	} else if err := dp.Detach(); err != nil {
		d.log.Warn("detach dataplane", "error", err)
	}
	return dp.Close()
}

func (d *Daemon) setChecks(m Model) {
	specs := CheckSpecs(m)
	types := make(map[string]health.Type, len(specs))
	for k, s := range specs {
		types[k] = s.Type
	}
	d.mu.Lock()
	d.checkType = types
	d.mu.Unlock()
	if err := d.checks.Update(specs); err != nil {
		d.log.Warn("health checks", "error", err)
	}
}

// roleEvent feeds a VRRP role change to the reconciler (vrrp runs the
// notify scripts, the sync groups' too).
func (d *Daemon) roleEvent(ev vrrp.Event) {
	if d.stopping.Load() {
		d.log.Info("VRRP role while stopping", "instance", ev.Instance, "to", ev.To, "reason", ev.Reason)
		return
	}
	role := Role{Master: ev.To == vrrp.Master, At: ev.At, Until: ev.TentativeUntil}
	if !role.Until.IsZero() {
		// Just started: the role is known for sure once vrrp's
		// Master_Down_Timer has run out; look again then.
		time.AfterFunc(time.Until(role.Until)+10*time.Millisecond, d.rec.Poke)
	}
	d.log.Info("VRRP role", "instance", ev.Instance, "from", ev.From, "to", ev.To, "reason", ev.Reason, "priority", ev.Priority)
	d.rec.SetRole(ev.Instance, role)
}

// prepareKernel sets and checks what XDP forwarding needs of the kernel.
// While XDP waits for a NAT next hop to resolve it leaves the translated
// packet to the kernel, and a reply translated to the VIP has a source that
// is local to the director, which the kernel forwards only with
// accept_local: that is set. Forwarding itself is the operator's choice (it
// changes how the host treats redirects and router advertisements): warn
// when it is off.
func (d *Daemon) prepareKernel(cfg *config.Config) {
	for _, vs := range cfg.VirtualServers {
		if vs.Forward != config.NAT {
			continue
		}
		for _, ifname := range cfg.Dataplane.Interfaces {
			path := "/proc/sys/net/ipv4/conf/" + ifname + "/accept_local"
			if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
				d.log.Warn("NAT: cannot set accept_local", "interface", ifname, "error", err)
			}
		}
		break
	}
	for _, w := range forwardingWarnings(cfg, os.ReadFile) {
		d.log.Warn(w)
	}
}

// forwardingWarnings says which forwarding sysctls NAT and tunnel services
// need and find off. Their next hops come from bpf_fib_lookup, which answers
// only when the kernel would forward the packet: IPv4 forwarding on the
// receiving interface, IPv6 forwarding globally. Without it tunnelled
// packets, and NAT packets and replies, go to the kernel (pass_fib).
func forwardingWarnings(cfg *config.Config, read func(string) ([]byte, error)) []string {
	need4, need6 := map[config.Forward]bool{}, map[config.Forward]bool{}
	for _, vs := range cfg.VirtualServers {
		if vs.Forward != config.NAT && vs.Forward != config.Tunnel {
			continue
		}
		for _, rs := range vs.RealServers {
			if rs.Address.Is4() {
				need4[vs.Forward] = true
			} else {
				need6[vs.Forward] = true
			}
		}
	}
	off := func(path string) bool {
		b, err := read(path)
		return err == nil && strings.TrimSpace(string(b)) != "1"
	}
	modes := func(m map[config.Forward]bool) string {
		var l []string
		for _, f := range []config.Forward{config.NAT, config.Tunnel} {
			if m[f] {
				l = append(l, string(f))
			}
		}
		return strings.Join(l, " and ")
	}
	var out []string
	if len(need4) > 0 {
		for _, ifname := range cfg.Dataplane.Interfaces {
			if off("/proc/sys/net/ipv4/conf/" + ifname + "/forwarding") {
				out = append(out, fmt.Sprintf("IPv4 %s services need forwarding on %s (sysctl net.ipv4.conf.%s.forwarding=1, or net.ipv4.ip_forward=1): until then their packets go to the kernel (pass_fib)", modes(need4), ifname, ifname))
			}
		}
	}
	if len(need6) > 0 && off("/proc/sys/net/ipv6/conf/all/forwarding") {
		out = append(out, fmt.Sprintf("IPv6 %s services need forwarding (sysctl net.ipv6.conf.all.forwarding=1): until then their packets go to the kernel (pass_fib)", modes(need6)))
	}
	return out
}

// beforeMaster enables the forwarding of an instance's services before
// the instance adds and announces its VIPs (a bounded wait: a stuck
// dataplane must not stall VRRP).
func (d *Daemon) beforeMaster(ev vrrp.Event) {
	if d.stopping.Load() {
		return
	}
	d.rec.SetRole(ev.Instance, Role{Master: true, At: ev.At})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d.rec.Reconcile(ctx); err != nil {
		d.log.Warn("enabling forwarding before taking the VIPs", "instance", ev.Instance, "error", err)
	}
}

// ForceStop cuts the shutdown grace period short (a second signal).
func (d *Daemon) ForceStop() {
	select {
	case <-d.forceStop:
	default:
		close(d.forceStop)
	}
}

func (d *Daemon) vrrpStatus() []vrrp.InstanceStatus {
	if d.node == nil {
		return nil
	}
	return d.node.Status()
}

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
	if err == nil {
		// Commands run as the new script_user from here; back to the old
		// one if the reload fails after this.
		prevUser, prevGroup := d.scripts.User()
		vc := VRRPFromConfig(cfg)
		if verr := vc.Validate(); verr != nil {
			err = fmt.Errorf("%s: %w", d.opts.ConfigPath, verr)
		} else if d.node == nil && len(cfg.VRRPInstances) > 0 {
			err = errors.New("adding VRRP instances to a daemon started without any needs a restart")
		} else if err = d.scripts.SetUser(cfg.Global.ScriptUser, cfg.Global.ScriptGroup); err != nil {
			err = fmt.Errorf("%s: script_user: %w", d.opts.ConfigPath, err)
		} else if d.node != nil {
			if err = d.node.Reconfigure(vc); err != nil {
				_ = d.scripts.SetUser(prevUser, prevGroup)
			}
		}
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
	if d.dp != nil && d.dp.Info().Mode == "xdp" {
		d.prepareKernel(cfg)
	}
	d.setChecks(model)
	d.rec.SetModel(model)
	d.log.Info("configuration reloaded", "services", len(model.Services), "vrrp_instances", len(cfg.VRRPInstances))
	return nil
}

// logWarnings logs what the configuration file says that is accepted but
// worth telling.
func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "warning", w.Error())
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
