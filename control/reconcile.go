package control

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
)

// Neighbors resolves the next hop of direct-routing real servers.
type Neighbors interface {
	// Lookup returns the MAC and interface of addr if known, and otherwise
	// starts resolving it (the reconciler is poked when it resolves).
	Lookup(addr netip.Addr) (mac net.HardwareAddr, ifindex int, ok bool)
	// KeepRoute keeps the next hop towards a tunnelled real server
	// resolved in the kernel's neighbour table, where the dataplane finds it.
	KeepRoute(addr netip.Addr)
}

// Role is what the reconciler needs of a VRRP instance's state.
type Role struct {
	Master bool
	// At is when the protocol decided the current role.
	At time.Time
	// Until, when set on a non-master role, makes it tentative: the role an
	// instance takes when it starts, before it has heard whether another
	// master exists. Until then the services keep the forwarding state the
	// dataplane already had (a restarted master keeps forwarding while it
	// takes its role back).
	Until time.Time
}

// ServiceState is the reconciler's view of a service, for status and
// metrics.
type ServiceState struct {
	Name string
	Key  dataplane.ServiceKey
	// Up: the healthy weight reaches the quorum.
	Up bool
	// Forwarding: the service's VRRP instance (if any) is MASTER.
	Forwarding bool
	// SorryActive: the sorry server takes the new flows.
	SorryActive bool
}

// Reconciler computes the desired dataplane state from the model, the
// health of real servers and the VRRP roles, and applies it when it
// changes. It owns the retries: a failed Apply is retried with backoff.
type Reconciler struct {
	dp    dataplane.Dataplane
	log   *slog.Logger
	neigh Neighbors        // nil: no MAC resolution (IPVS)
	run   func(cmd string) // runs quorum scripts asynchronously
	now   func() time.Time
	// installed is whether each service forwarded in the dataplane found at
	// start (adopted from a previous run), for tentative roles.
	installed map[dataplane.ServiceKey]bool
	// adopted are the real servers found installed at start. Until their
	// health check reports, a real server that took new flows keeps
	// taking them; until adoptUntil, a direct-routing one whose MAC the
	// resolver has not told yet keeps the MAC it had. So a restarted
	// daemon changes nothing that forwarded: no weight 0 while the checks
	// start, no MAC-less backend while the neighbours are read.
	adopted    map[dataplane.ServiceKey]map[dataplane.BackendKey]dataplane.Backend
	adoptUntil time.Time

	mu     sync.Mutex
	model  Model
	health map[string]health.State
	// weights are set by checks (misc_dynamic, file) by check key;
	// absent: the configured weight.
	weights map[string]health.Weight
	roles   map[string]Role
	quorum  map[dataplane.ServiceKey]bool // hysteresis state
	states  map[dataplane.ServiceKey]ServiceState
	applied []dataplane.Service
	// pending role changes whose forwarding is not applied yet, by instance.
	pending map[string]Role
	// lastErr is the error of the last Apply, nil if it succeeded.
	lastErr error
	applies int

	poke chan struct{}
}

// ReconcilerOptions configure a Reconciler.
type ReconcilerOptions struct {
	Logger    *slog.Logger
	Neighbors Neighbors
	// RunScript runs a notify command without blocking; nil: none run.
	RunScript func(cmd string)
	// Now is the clock (tentative roles); nil: time.Now.
	Now func() time.Time
}

// AdoptedMACGrace is how long a restarted daemon keeps the MACs of
// direct-routing real servers found installed, while its neighbour
// resolver reads them again (it normally answers within milliseconds).
const AdoptedMACGrace = 10 * time.Second

// Installer is implemented by dataplanes that can tell what they found
// installed when they started (the XDP dataplane adopts pinned state).
type Installer interface {
	Installed() []dataplane.Service
}

// NewReconciler returns a reconciler driving dp.
func NewReconciler(dp dataplane.Dataplane, opts ReconcilerOptions) *Reconciler {
	r := &Reconciler{
		dp:        dp,
		log:       opts.Logger,
		neigh:     opts.Neighbors,
		run:       opts.RunScript,
		health:    map[string]health.State{},
		weights:   map[string]health.Weight{},
		roles:     map[string]Role{},
		quorum:    map[dataplane.ServiceKey]bool{},
		states:    map[dataplane.ServiceKey]ServiceState{},
		pending:   map[string]Role{},
		poke:      make(chan struct{}, 1),
		now:       opts.Now,
		installed: map[dataplane.ServiceKey]bool{},
		adopted:   map[dataplane.ServiceKey]map[dataplane.BackendKey]dataplane.Backend{},
	}
	if r.now == nil {
		r.now = time.Now
	}
	if in, ok := dp.(Installer); ok {
		for _, s := range in.Installed() {
			r.installed[s.Key] = s.Enabled
			bs := make(map[dataplane.BackendKey]dataplane.Backend, len(s.Backends))
			for _, b := range s.Backends {
				bs[b.Key()] = b
			}
			r.adopted[s.Key] = bs
		}
	}
	r.adoptUntil = r.now().Add(AdoptedMACGrace)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.run == nil {
		r.run = func(string) {}
	}
	return r
}

// Poke asks for a reconciliation soon.
func (r *Reconciler) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// SetModel replaces the model (a reload). Health and roles of what did not
// change are kept.
func (r *Reconciler) SetModel(m Model) {
	r.mu.Lock()
	r.model = m
	keep := map[string]bool{}
	keepAdopted := map[dataplane.ServiceKey]map[dataplane.BackendKey]dataplane.Backend{}
	for _, s := range m.Services {
		for _, rs := range s.Reals {
			keep[CheckKey(s.Name, rs)] = true
			if b, ok := r.adopted[s.Key][rs.Key()]; ok {
				if keepAdopted[s.Key] == nil {
					keepAdopted[s.Key] = map[dataplane.BackendKey]dataplane.Backend{}
				}
				keepAdopted[s.Key][rs.Key()] = b
			}
		}
	}
	for k := range r.health {
		if !keep[k] {
			delete(r.health, k)
			delete(r.weights, k)
		}
	}
	// A real server the model drops forgets what was adopted of it: added
	// back later, it starts as any new one.
	r.adopted = keepAdopted
	r.mu.Unlock()
	r.Poke()
}

// SetHealth records a health check's state.
func (r *Reconciler) SetHealth(key string, s health.State) {
	r.mu.Lock()
	r.health[key] = s
	r.mu.Unlock()
	r.Poke()
}

// SetHealthWeight records a health check's state and the weight it sets
// (health.Transition.Weight), which replaces or adjusts its real server's
// configured weight while the check passes.
func (r *Reconciler) SetHealthWeight(key string, s health.State, w health.Weight) {
	r.mu.Lock()
	r.health[key] = s
	if w == (health.Weight{}) {
		delete(r.weights, key)
	} else {
		r.weights[key] = w
	}
	r.mu.Unlock()
	r.Poke()
}

// SetRole records a VRRP instance's role.
func (r *Reconciler) SetRole(instance string, role Role) {
	r.mu.Lock()
	if old, ok := r.roles[instance]; !ok || old.Master != role.Master {
		r.pending[instance] = role
	}
	r.roles[instance] = role
	r.mu.Unlock()
	r.Poke()
}

// Desired computes the dataplane state wanted now and updates the service
// states (running quorum scripts on changes).
func (r *Reconciler) Desired() []dataplane.Service {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.desired()
}

func (r *Reconciler) desired() []dataplane.Service {
	out := make([]dataplane.Service, 0, len(r.model.Services))
	states := make(map[dataplane.ServiceKey]ServiceState, len(r.model.Services))
	for _, s := range r.model.Services {
		svc, st := r.service(s)
		out = append(out, svc)
		states[s.Key] = st
	}
	r.states = states
	for k := range r.quorum {
		if _, ok := states[k]; !ok {
			delete(r.quorum, k)
		}
	}
	return out
}

func (r *Reconciler) service(s ServiceSpec) (dataplane.Service, ServiceState) {
	svc := dataplane.Service{
		Name:        s.Name,
		Key:         s.Key,
		Scheduler:   s.Scheduler,
		Forward:     s.Forward,
		Persistence: s.Persistence,
		Tunnel:      s.Tunnel,
		Enabled:     r.forwards(s),
		Backends:    make([]dataplane.Backend, 0, len(s.Reals)+1),
	}
	var healthy uint64
	for _, rs := range s.Reals {
		b := r.backend(s, rs)
		if r.healthy(s, rs) {
			b.Weight = r.weights[CheckKey(s.Name, rs)].Apply(rs.Weight)
			healthy += uint64(b.Weight)
		} else {
			b.Weight = 0 // no new flows; established ones drain
		}
		svc.Backends = append(svc.Backends, b)
	}
	up := r.quorumState(s, healthy)
	st := ServiceState{Name: s.Name, Key: s.Key, Up: up, Forwarding: svc.Enabled}
	if !up && s.Sorry != nil {
		for i := range svc.Backends {
			svc.Backends[i].Weight = 0
		}
		sorry := r.backend(s, *s.Sorry)
		sorry.Weight = max(1, s.Sorry.Weight)
		if i := slices.IndexFunc(svc.Backends, func(b dataplane.Backend) bool { return b.Key() == sorry.Key() }); i >= 0 {
			svc.Backends[i] = sorry
		} else {
			svc.Backends = append(svc.Backends, sorry)
		}
		st.SorryActive = true
	}
	return svc, st
}

// healthy reports whether a real server takes new flows: its check passes,
// or it has none, or its check starts up (initial_state) and has not
// reported yet. So a start or a reload does not install such a real server
// at weight 0 first and raise it a moment later.
func (r *Reconciler) healthy(s ServiceSpec, rs RealSpec) bool {
	if rs.Check.Type == health.TypeNone {
		return true
	}
	st, ok := r.health[CheckKey(s.Name, rs)]
	if !ok {
		if b, found := r.adopted[s.Key][rs.Key()]; found && b.Weight > 0 {
			return true // took new flows before the restart
		}
		return rs.Check.InitialUp
	}
	return st == health.StateUp
}

// forwards reports whether a service forwards: always without a VRRP
// instance, while it is MASTER otherwise; while its role is unknown or
// tentative, as it did in the dataplane found at start.
func (r *Reconciler) forwards(s ServiceSpec) bool {
	if s.Instance == "" {
		return true
	}
	role, ok := r.roles[s.Instance]
	if !ok {
		// Not reported yet (the daemon just started): as found installed.
		return r.installed[s.Key]
	}
	if !role.Master && !role.Until.IsZero() && r.now().Before(role.Until) {
		return r.installed[s.Key]
	}
	return role.Master
}

// quorumState applies keepalived's quorum with hysteresis: the service
// comes up when the healthy weight reaches quorum+hysteresis and goes down
// when it falls below quorum-hysteresis.
func (r *Reconciler) quorumState(s ServiceSpec, healthy uint64) bool {
	q, h := uint64(s.Quorum), uint64(s.Hysteresis)
	was, known := r.quorum[s.Key]
	var up bool
	switch {
	case !known:
		up = healthy >= q
	case was:
		up = healthy+h >= q
	default:
		up = healthy >= q+h
	}
	r.quorum[s.Key] = up
	if known && up != was {
		if up {
			r.log.Info("service up: quorum reached", "service", s.Name, "healthy_weight", healthy, "quorum", s.Quorum)
			if s.QuorumUp != "" {
				r.run(s.QuorumUp)
			}
		} else {
			r.log.Warn("service down: quorum lost", "service", s.Name, "healthy_weight", healthy, "quorum", s.Quorum)
			if s.QuorumDown != "" {
				r.run(s.QuorumDown)
			}
		}
	}
	return up
}

func (r *Reconciler) backend(s ServiceSpec, rs RealSpec) dataplane.Backend {
	b := dataplane.Backend{Addr: rs.Addr, Port: rs.Port, Weight: rs.Weight}
	if s.Forward == dataplane.DirectRouting && r.neigh != nil {
		if mac, ifindex, ok := r.neigh.Lookup(rs.Addr); ok {
			b.MAC, b.Ifindex = mac, ifindex
		} else if a, found := r.adopted[s.Key][b.Key()]; found && a.MAC != nil && r.now().Before(r.adoptUntil) {
			b.MAC, b.Ifindex = a.MAC, a.Ifindex
		}
	}
	if s.Forward == dataplane.Tunnel && r.neigh != nil {
		r.neigh.KeepRoute(rs.Addr)
	}
	return b
}

// States returns the service states computed by the last reconciliation.
func (r *Reconciler) States() map[dataplane.ServiceKey]ServiceState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[dataplane.ServiceKey]ServiceState, len(r.states))
	for k, v := range r.states {
		out[k] = v
	}
	return out
}

// Health returns the recorded state of a check.
func (r *Reconciler) Health(key string) health.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.health[key]
}

// LastError is the error of the last Apply (nil after a success).
func (r *Reconciler) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Reconcile applies the desired state if it differs from what was applied
// last. It returns Apply's error.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	r.mu.Lock()
	desired := r.desired()
	same := r.lastErr == nil && r.applies > 0 && slices.EqualFunc(desired, r.applied, dataplane.ServiceEqual)
	pending := r.pending
	r.pending = map[string]Role{}
	r.mu.Unlock()
	if same {
		r.reportRoles(pending)
		return nil
	}
	// Apply runs without the lock: health and VRRP inputs keep flowing.
	err := r.dp.Apply(ctx, desired)
	r.mu.Lock()
	r.lastErr = err
	if err == nil {
		r.applied = desired
		r.applies++
	} else {
		// Report them after the retry that succeeds.
		for k, v := range pending {
			if _, newer := r.pending[k]; !newer {
				r.pending[k] = v
			}
		}
		pending = nil
	}
	r.mu.Unlock()
	r.reportRoles(pending)
	return err
}

// reportRoles logs how long forwarding took to follow each role change.
func (r *Reconciler) reportRoles(pending map[string]Role) {
	for inst, role := range pending {
		state := "disabled"
		if role.Master {
			state = "active"
		}
		r.log.Info("forwarding follows VRRP role", "instance", inst, "forwarding", state,
			"since_decision", time.Since(role.At).Round(time.Microsecond))
	}
}

// Run reconciles whenever poked, and retries failures with backoff (100 ms
// doubling to 5 s) until ctx is done. Every resync it reconciles anyway
// (new neighbour entries, drift).
func (r *Reconciler) Run(ctx context.Context, resync time.Duration) error {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	retry := time.NewTimer(resync)
	defer retry.Stop()
	for {
		err := r.Reconcile(ctx)
		next := resync
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.log.Error("apply to dataplane failed, will retry", "error", err, "retry_in", backoff)
			next, backoff = backoff, min(2*backoff, maxBackoff)
		} else {
			backoff = minBackoff
		}
		retry.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-r.poke:
			if !retry.Stop() {
				select {
				case <-retry.C:
				default:
				}
			}
		case <-retry.C:
		}
	}
}

// Applied returns the state applied last.
func (r *Reconciler) Applied() []dataplane.Service {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied)
}
