package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/command"
	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/open"
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
	// asks for (tests drive the daemon on dataplanetest.Fake).
	Dataplane dataplane.Dataplane
}

// Daemon is `xlb run`: the dataplane, health checks, VRRP, reconciler,
// metrics and control socket of one director.
//
// daemon.go wires the components and nothing else: each knows its own
// trade. Run takes the control socket's lock and opens the dataplane
// (dataplane/open chooses which); start builds and starts the rest in the
// order they depend on each other (neighbour resolver, health checks,
// reconciler, connection sync, VRRP, metrics, control socket); Reload (reload.go) hands
// each its part of a new configuration. A new component (connection sync,
// BGP announcements) plugs in there: built in start after what it needs,
// its goroutines run with g.Go (stopped together at shutdown), and
// reconfigured in Reload.
type Daemon struct {
	opts    DaemonOptions
	log     *slog.Logger
	started time.Time
	// loadTook is how long NewDaemon took to read the configuration.
	loadTook time.Duration
	// preload is the XDP program loaded while NewDaemon read the
	// configuration, for Run's dataplane (nil: none).
	preload *open.Pending

	dp       dataplane.Dataplane
	rec      *Reconciler
	checks   *health.Manager
	node     *vrrp.Node
	vrrpStop func() // ends node.Run and waits
	metrics  *Metrics
	rates    *rateTracker
	// scripts runs every external command: notify and track scripts
	// (VRRP), script checks, quorum commands.
	scripts *command.Runner
	bgp     bgpState  // [bgp] and `xlb drain` (daemon_bgp.go)
	mail    mailState // mail alerts (daemon_mail.go)
	sync    syncState // [sync], connection sync (daemon_sync.go)
	// overrides are the operators' weights (xlb set-weight, weights.go).
	overrides *overrides
	// reads counts the statuses and scrapes in flight (releaseMemory).
	reads *readGate

	stopping  atomic.Bool
	forceStop chan struct{}
	// ready is closed once Run has built every component a reload touches;
	// exited when Run returns. Reloads wait for the first (a SIGHUP during
	// start-up) and are refused after the second.
	ready, exited chan struct{}
	reloadMu      sync.Mutex // one reload at a time
	// reloadsStarted counts the reloads started: a release of memory asked for
	// before the last one leaves it to that reload's own (releaseMemory).
	reloadsStarted atomic.Uint64

	mu      sync.Mutex
	cfg     *config.Config
	model   Model
	reloads ReloadStatus
}

// NewDaemon loads and validates the configuration. Meanwhile it loads the
// XDP program and maps its [dataplane] table asks for (the verifier takes
// about as long as a configuration of 200,000 lines): nothing is attached
// and no pinned map is written before Run.
func NewDaemon(opts DaemonOptions) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Env == nil {
		opts.Env = config.SystemEnv()
	}
	start := time.Now()
	var pre *open.Pending
	if opts.Dataplane == nil {
		if dc, ok := config.PeekDataplane(opts.ConfigPath, opts.Env); ok {
			pre = open.Preload(dc, opts.Logger)
		}
	}
	ok := false
	defer func() {
		if !ok {
			pre.Close()
		}
	}()
	cfg, err := config.Load(opts.ConfigPath, opts.Env)
	if err != nil {
		return nil, err
	}
	if cfg.Debug.PprofListen != "" && runtime.MemProfileRate == 0 {
		// `xlb run` samples no allocation unless its heap profiles are
		// served: from here, they are (Go's default rate).
		runtime.MemProfileRate = DefaultMemProfileRate
	}
	model := ModelFromConfig(cfg)
	// The dataplane's limits are checked once it is open (Run).
	if err := checkModel(opts.ConfigPath, cfg, model, dataplane.Limits{}); err != nil {
		return nil, err
	}
	scripts, err := command.New(command.Options{Logger: opts.Logger, User: cfg.Global.ScriptUser, Group: cfg.Global.ScriptGroup})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.ConfigPath, err)
	}
	logWarnings(opts.Logger, cfg)
	ok = true
	return &Daemon{opts: opts, log: opts.Logger, cfg: withoutServers(cfg), model: model, scripts: scripts, reads: newReadGate(), forceStop: make(chan struct{}),
		ready: make(chan struct{}), exited: make(chan struct{}), loadTook: time.Since(start), preload: pre}, nil
}

// withoutServers is the configuration the daemon keeps: the model holds
// the virtual servers, and the configuration's own copy of them (30 MB at
// 65,536 real servers) goes.
func withoutServers(cfg *config.Config) *config.Config {
	c := *cfg
	c.VirtualServers = nil
	return &c
}

// Config returns the configuration in effect, without its virtual servers
// (Model has them).
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run runs the daemon until ctx is done, then shuts down: VRRP resigns
// (priority 0) and removes its addresses, then the dataplane detaches (or
// stays pinned with keep_forwarding_on_exit).
func (d *Daemon) Run(ctx context.Context) error {
	defer close(d.exited)
	d.started = time.Now()
	defer d.preload.Close() // unless the dataplane took it
	cfg := d.Config()
	sockLock, err := lockSocket(cfg.Control.Socket)
	if err != nil {
		return err
	}
	defer sockLock.Close()
	dp, err := d.openDataplane(cfg)
	if err != nil {
		return err
	}
	g := newGroup(d.log)
	defer g.stop()
	defer d.stopVRRP()
	defer d.stopMail()
	srv, err := d.start(cfg, g)
	if err != nil {
		dp.Close()
		return err
	}
	d.log.Info("xlb running", "config", d.opts.ConfigPath, "services", len(d.model.Services), "vrrp_instances", len(cfg.VRRPInstances),
		"load", d.loadTook.Round(time.Millisecond), "took", time.Since(d.started).Round(time.Millisecond))
	close(d.ready)
	go d.afterStart()
	if d.opts.Ready != nil {
		d.opts.Ready()
	}

	<-ctx.Done()
	d.log.Info("shutting down")
	d.stopBGP(d.Config())
	d.mailStopping()
	d.resign()
	g.stop() // reconciler, checks, socket: nothing re-applies from here
	d.stopProbeTap()
	// Wait for the background commands (Go: quorum_up, quorum_down) still
	// running: each ends within its timeout (its process group is killed
	// then), none is left behind unsupervised.
	_ = d.scripts.Wait(context.Background())
	d.stopMail()
	if srv != nil {
		_ = srv.Close()
	}
	if d.Config().Dataplane.KeepForwardingOnExit {
		d.log.Info("leaving the dataplane pinned and forwarding (keep_forwarding_on_exit)")
	} else if err := dp.Detach(); err != nil {
		d.log.Warn("detach dataplane", "error", err)
	}
	return dp.Close()
}

// openDataplane opens the dataplane the configuration asks for (or the
// one the options give), refuses a configuration over its limits before
// anything is applied, and has it prepare the host.
func (d *Daemon) openDataplane(cfg *config.Config) (dataplane.Dataplane, error) {
	dp := d.opts.Dataplane
	if dp == nil {
		var err error
		if dp, err = open.Dataplane(cfg.Dataplane, d.log, d.preload); err != nil {
			return nil, err
		}
	}
	info := dp.Info()
	d.log.Info("dataplane ready", "mode", info.Mode, "attach", info.Attach, "took", time.Since(d.started).Round(time.Millisecond))
	if err := checkLimits(d.opts.ConfigPath, cfg, d.model, dp.Capabilities().Limits); err != nil {
		dp.Close()
		return nil, err
	}
	d.dp = dp
	d.prepareHost(d.model)
	return dp, nil
}

// start builds and starts every component on the dataplane, in the order
// they depend on each other; their goroutines run in g, VRRP's until
// stopVRRP. It returns the metrics server, if any.
func (d *Daemon) start(cfg *config.Config, g *group) (*http.Server, error) {
	var rec *Reconciler
	var neigh Neighbors
	var nn *NetNeighbors
	if d.dp.Capabilities().NextHops {
		var err error
		if nn, err = NewNetNeighbors(d.log, netns.None(), func() { rec.Poke() }); err != nil {
			return nil, err
		}
		neigh = nn
	}
	d.metrics = NewMetrics(func() *Status { return d.Status(false) }, d.vrrpStatus)
	d.startMail(cfg, d.model)
	d.checks = health.NewManager(health.Options{Logger: d.log, Scripts: d.scripts, Observe: func(_ string, typ health.Type, dur time.Duration, err error) {
		d.metrics.ObserveCheck(string(typ), dur, err)
	}, Decided: func(n int) {
		// The first results of many checks (a start, a reload that
		// added them) are part of it: the rounds that followed them as
		// they came in made their garbage (64,000 checks: 35 MB a
		// second for 15 s), which Go would give back only slowly. A few
		// (a reload that changed a real server) made next to none: no
		// full collection for them.
		if n >= decidedRelease {
			d.releaseLater(0)
		}
	}})
	// A round reads the checks' states in the order of its model's
	// numbered checks (HealthOrdered). Only one that runs between a
	// reload's new model and its checks reads them by key: it refills
	// one map of the checks' states (64,000: 3 MB), kept in a pool that
	// the collector takes from a steady daemon. Rounds run one at a time
	// and read it only while they run: the next takes it back.
	var statesPool sync.Pool
	healthStates := func() map[string]health.State {
		states, _ := statesPool.Get().(map[string]health.State)
		states = d.checks.StatesInto(states)
		statesPool.Put(states)
		return states
	}
	rec = NewReconciler(d.dp, ReconcilerOptions{Logger: d.log, Neighbors: neigh, Health: healthStates,
		HealthOrdered: d.checks.StatesOrdered, Weights: d.checks.Weights,
		RunScript: func(cmd string) { d.scripts.Go(cmd) }, OnReconciled: d.bgpPoke, OnQuorum: d.mailQuorum})
	rec.SetModel(d.model)
	d.rec = rec
	d.startOverrides(cfg)
	if nn != nil {
		g.Go("neighbour resolution", nn.Run)
	}
	d.startProbeTap()
	d.setChecks(d.model)
	if err := d.startBGP(cfg, g.Go); err != nil {
		return nil, err
	}
	g.Go("health checks", d.checks.Run)
	g.Go("health check results", func(context.Context) error {
		for t := range d.checks.Results() { // closed when the checks stop
			rec.Poke()
			d.mailCheck(t)
		}
		return nil
	})
	if err := d.newSync(cfg); err != nil {
		return nil, err
	}
	if len(cfg.VRRPInstances) > 0 {
		if err := d.startVRRP(cfg, g); err != nil {
			return nil, err
		}
	}
	d.runSync(g)
	g.Go("reconciler", func(ctx context.Context) error { return rec.Run(ctx, 5*time.Second) })
	d.rates = newRateTracker(2*time.Second, d.sample)
	g.Go("rate sampler", d.rates.run)
	srv, err := serveMetrics(cfg.Metrics.Listen, d.metrics, d.reads, d.log)
	if err != nil {
		return nil, err
	}
	if err := servePprof(cfg.Debug.PprofListen, d.log, g); err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		return nil, err
	}
	sock, err := ListenSocket(cfg.Control.Socket, d, SocketOptions{Logger: d.log})
	if err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		return nil, err
	}
	d.metrics.Registry.MustRegister(sock)
	g.Go("control socket", sock.Serve)
	return srv, nil
}

// startVRRP starts the VRRP instances, whose role changes feed the
// reconciler. VRRP runs on its own context, so that it resigns while the
// rest still runs; stopVRRP ends it.
func (d *Daemon) startVRRP(cfg *config.Config, g *group) error {
	node, err := vrrp.NewNode(d.vrrpConfig(cfg), vrrp.Options{Logger: d.log, Runner: d.scripts, BeforeMaster: d.beforeMaster})
	if err != nil {
		return err
	}
	d.node = node
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.vrrpStop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		if err := node.Run(ctx); err != nil {
			d.log.Error("VRRP stopped", "error", err)
		}
	}()
	g.Go("VRRP events", func(ctx context.Context) error {
		forwardRoles(ctx, node.Events(), d.roleEvent)
		return nil
	})
	return nil
}

// forwardRoles passes each VRRP event to f until ctx ends or VRRP stops
// (events closed, its error logged): a closed channel's zero events were
// read in a loop, logged as role changes without end (468,000 lines in a
// VM test's three minutes).
func forwardRoles(ctx context.Context, events <-chan vrrp.Event, f func(vrrp.Event)) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			f(ev)
		}
	}
}

// stopVRRP stops the VRRP instances, if they run, and waits for them.
func (d *Daemon) stopVRRP() {
	if d.vrrpStop != nil {
		d.vrrpStop()
	}
}

// resign has VRRP give up its instances (priority 0: the backup takes over
// after its skew time) and keeps forwarding meanwhile: clients still send
// here until the backup's gratuitous ARPs reach them.
func (d *Daemon) resign() {
	if d.node == nil {
		return
	}
	d.stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := d.node.Shutdown(sctx); err != nil {
		d.log.Warn("VRRP shutdown", "error", err)
	}
	cancel()
	d.stopVRRP()
	if grace := d.node.ResignGrace(); grace > 0 {
		d.log.Info("VRRP resigned; forwarding until the backup has taken over", "grace", grace)
		select {
		case <-time.After(grace):
		case <-d.forceStop:
		}
	}
}

// DefaultMemProfileRate is Go's runtime.MemProfileRate: an allocation
// sampled for heap profiles every 512 KiB on average.
const DefaultMemProfileRate = 512 << 10

// serveMetrics serves /metrics on listen; "": nowhere (nil server). Its
// scrapes count in reads.
func serveMetrics(listen string, m *Metrics, reads *readGate, log *slog.Logger) (*http.Server, error) {
	if listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	h := m.Handler()
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer reads.enter()()
		h.ServeHTTP(w, r)
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics served", "listen", ln.Addr().String())
	return srv, nil
}

// servePprof serves Go's profiles on listen ([debug] pprof_listen, a
// loopback address); "": not at all. The server stops with g.
func servePprof(listen string, log *slog.Logger, g *group) error {
	if listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("pprof listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.Go("pprof", func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
		defer stop()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	log.Info("Go profiles served ([debug] pprof_listen)", "listen", ln.Addr().String())
	return nil
}

// group runs the daemon's goroutines until stop, which cancels their
// context and waits for them.
type group struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newGroup(log *slog.Logger) *group {
	ctx, cancel := context.WithCancel(context.Background())
	return &group{log: log, ctx: ctx, cancel: cancel}
}

// Go runs fn until the group stops; an error it returns before then is
// logged.
func (g *group) Go(name string, fn func(context.Context) error) {
	g.wg.Go(func() {
		if err := fn(g.ctx); err != nil && g.ctx.Err() == nil {
			g.log.Error(name+" stopped", "error", err)
		}
	})
}

func (g *group) stop() {
	g.cancel()
	g.wg.Wait()
}

// setChecks makes the model's health checks the ones that run.
func (d *Daemon) setChecks(m Model) {
	if err := d.checks.UpdateChecksOrdered(checks(m), m.checkOrder); err != nil {
		d.log.Warn("health checks", "error", err)
	}
}

// prepareHost has the dataplane set up the host for the model's services,
// if it needs to (dataplane.HostPreparer).
func (d *Daemon) prepareHost(m Model) {
	if hp, ok := d.dp.(dataplane.HostPreparer); ok {
		hp.PrepareHost(m.dataplaneServices())
	}
}

// roleEvent feeds a VRRP role change to the reconciler (vrrp runs the
// notify scripts, the sync groups' too).
func (d *Daemon) roleEvent(ev vrrp.Event) {
	if d.stopping.Load() {
		d.log.Info("VRRP role while stopping", "instance", ev.Instance, "to", ev.To, "reason", ev.Reason)
		return
	}
	d.mailRole(ev)
	d.syncRole(ev)
	role := Role{Master: ev.To == vrrp.Master, At: ev.At, Until: ev.TentativeUntil, HandoverUntil: ev.HandoverUntil}
	d.log.Info("VRRP role", "instance", ev.Instance, "from", ev.From, "to", ev.To, "reason", ev.Reason, "priority", ev.Priority)
	if !role.HandoverUntil.IsZero() {
		// Gave up MASTER (to a better master, a fault, xlb drain):
		// forwarding goes on until the new master has taken over.
		d.log.Info("forwarding until the new master has taken over", "instance", ev.Instance,
			"grace", role.HandoverUntil.Sub(ev.At).Round(time.Millisecond))
	}
	d.rec.SetRole(ev.Instance, role)
}

// beforeMaster enables the forwarding of an instance's services before
// the instance adds and announces its VIPs (a bounded wait: a stuck
// dataplane must not stall VRRP).
func (d *Daemon) beforeMaster(ev vrrp.Event) {
	if d.stopping.Load() {
		return
	}
	d.syncRole(ev)
	d.rec.SetRole(ev.Instance, Role{Master: true, At: ev.At})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d.rec.Reconcile(ctx); err != nil {
		d.log.Warn("enabling forwarding before taking the VIPs", "instance", ev.Instance, "error", err)
	}
}

// afterStart logs when the dataplane has the configuration, and returns
// the memory that took.
func (d *Daemon) afterStart() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if round, err := d.rec.WaitApplied(ctx, 1); err == nil {
		d.log.Info("configuration applied", "apply", round.Apply.Round(time.Millisecond),
			"since_start", time.Since(d.started).Round(time.Millisecond), "map_updates", d.mapUpdates())
	}
	d.releaseMemory(1, d.reloadsStarted.Load())
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
