package control

import (
	"context"
	"log/slog"
	"maps"
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
	// Reprobe has the kernel check a known entry again: a direct-routing
	// real server whose check fails may have changed its MAC without
	// announcing it, which the kernel finds out by itself only when the
	// entry goes stale (tens of seconds).
	Reprobe(addr netip.Addr)
	// Version changes whenever an answer of Lookup changes (a round that
	// saw the same version may keep the next hops it found).
	Version() uint64
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
	// HandoverUntil, when set on a non-master role, is until when a
	// former master goes on forwarding (vrrp.Event.HandoverUntil):
	// clients, and NAT real servers with their replies, reach it until
	// the new master's gratuitous ARPs have reached them.
	HandoverUntil time.Time
}

// ServiceState is the reconciler's view of a service, for status and
// metrics.
type ServiceState struct {
	Name string
	Key  dataplane.ServiceKey
	// Up: the healthy weight reaches the quorum.
	Up bool
	// Healthy is the weight of the healthy real servers.
	Healthy uint64
	// Forwarding: the service's VRRP instance (if any) is MASTER.
	Forwarding bool
	// SorryActive: the sorry server takes the new flows.
	SorryActive bool
}

// Reconciler computes the desired dataplane state from the model, the
// health of real servers and the VRRP roles, and applies it when it
// changes. It owns the retries: a failed Apply is retried with backoff.
type Reconciler struct {
	// round makes rounds run one at a time (the loop's and beforeMaster's):
	// a round that computed from older inputs must not store its states or
	// apply after a newer one. Status and the inputs use mu, never this.
	round   sync.Mutex
	dp      dataplane.Dataplane
	log     *slog.Logger
	neigh   Neighbors                       // nil: no next hops to resolve (IPVS)
	health  func() map[string]health.State  // the checks' states
	weights func() map[string]health.Weight // the weights checks set
	// ordered reads the checks' states in a numbered list's order
	// (HealthOrdered); orderedBuf is the last round's, of the list of
	// model orderedOf. The round's, under r.round.
	ordered    func(uint64, []health.State) ([]health.State, bool)
	orderedBuf []health.State
	orderedOf  uint64
	run        func(cmd string) // runs quorum scripts asynchronously
	now        func() time.Time
	// reconciled is called after each reconciliation, quorum when a
	// quorum changes (ReconcilerOptions).
	reconciled func()
	quorum     func(ServiceSpec, ServiceState)

	mu    sync.Mutex
	model Model
	roles map[string]Role
	// installed is whether each service forwarded in the dataplane found at
	// start (adopted from a previous run), for tentative roles.
	installed map[dataplane.ServiceKey]bool
	// adopted are the real servers found installed at start. Until its
	// health check decides, a real server that took new flows keeps taking
	// them; until adoptUntil, a direct-routing one whose MAC the resolver
	// has not told yet keeps the MAC it had. So a restarted daemon changes
	// nothing that forwarded: no weight 0 while the checks start, no
	// MAC-less backend while the neighbours are read.
	adopted    map[dataplane.ServiceKey]map[dataplane.BackendKey]dataplane.Backend
	adoptUntil time.Time
	// overrides are the operators' weights (SetOverrides), overridesGen
	// counts their changes.
	overrides    map[OverrideKey]uint32
	overridesGen uint64
	// states are the service states of the last round (quorum hysteresis).
	states  map[dataplane.ServiceKey]ServiceState
	applied []dataplane.Service
	// pending role changes whose forwarding is not applied yet, by instance.
	pending map[string]Role
	// lastErr is the error of the last Apply, nil if it succeeded.
	lastErr error
	// computed is how many services the last round computed: all of
	// them, or those whose checks changed (reconcile_incremental.go).
	computed int
	applies  int
	// gen counts SetModel calls; done is the last round's (WaitApplied),
	// and rounds is closed and replaced when a round ends.
	gen    uint64
	done   Round
	rounds chan struct{}
	// poked: an input changed since the last round (a resync with
	// nothing changed computes nothing); adoptMACs: the last round used
	// adopted MACs (Inputs.AdoptMACs).
	poked, adoptMACs bool

	poke chan struct{}

	// base is what the last round computed from (incremental rounds);
	// under round.
	base roundBase
}

// Round is what a reconciliation did, for WaitApplied.
type Round struct {
	// Gen is the model's (the SetModel call's) the round computed from.
	Gen uint64
	// Took is the whole round (inputs, Desired, the diff, Apply); Apply
	// the dataplane's part, zero when nothing changed.
	Took, Apply time.Duration
	// Err is Apply's error.
	Err error
}

// ReconcilerOptions configure a Reconciler.
type ReconcilerOptions struct {
	Logger    *slog.Logger
	Neighbors Neighbors
	// Health returns the state of every health check by CheckKey
	// (health.Manager.States); nil: no check has decided. A round reads
	// the map only while it runs, and rounds run one at a time: Health
	// may return one map, refilled each time (health.Manager.StatesInto).
	Health func() map[string]health.State
	// HealthOrdered, when set, appends to dst[:0] the state of each
	// check of the numbered list the model names (Model.checkOrder;
	// health.Manager.StatesOrdered), and reports whether it knows that
	// list; a round that gets them reads no check by key, and calls
	// Health only when they are not known.
	HealthOrdered func(order uint64, dst []health.State) ([]health.State, bool)
	// Weights returns the weights checks set (health.Manager.Weights);
	// nil: every real server has its configured weight.
	Weights func() map[string]health.Weight
	// RunScript runs a notify command without blocking; nil: none run.
	RunScript func(cmd string)
	// Now is the clock (tentative roles); nil: time.Now.
	Now func() time.Time
	// OnReconciled, when set, is called (without the lock) after each
	// reconciliation, applied or found unchanged: the BGP announcements
	// follow States and Applied from it.
	OnReconciled func()
	// OnQuorum, when set, is called (without the lock) when a service
	// gains or loses its quorum, once per [[virtual_server]] (the mail
	// alerts).
	OnQuorum func(s ServiceSpec, st ServiceState)
}

// AdoptedMACGrace is how long a restarted daemon keeps the MACs of
// direct-routing real servers found installed, while its neighbour
// resolver reads them again (it normally answers within milliseconds).
const AdoptedMACGrace = 10 * time.Second

// NewReconciler returns a reconciler driving dp.
func NewReconciler(dp dataplane.Dataplane, opts ReconcilerOptions) *Reconciler {
	r := &Reconciler{
		dp:         dp,
		log:        opts.Logger,
		neigh:      opts.Neighbors,
		health:     opts.Health,
		ordered:    opts.HealthOrdered,
		weights:    opts.Weights,
		run:        opts.RunScript,
		reconciled: opts.OnReconciled,
		quorum:     opts.OnQuorum,
		roles:      map[string]Role{},
		states:     map[dataplane.ServiceKey]ServiceState{},
		pending:    map[string]Role{},
		poke:       make(chan struct{}, 1),
		rounds:     make(chan struct{}),
		now:        opts.Now,
		installed:  map[dataplane.ServiceKey]bool{},
		adopted:    map[dataplane.ServiceKey]map[dataplane.BackendKey]dataplane.Backend{},
	}
	if r.now == nil {
		r.now = time.Now
	}
	if a, ok := dp.(dataplane.Adopter); ok {
		for _, s := range a.Installed() {
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
	if r.health == nil {
		r.health = func() map[string]health.State { return nil }
	}
	if r.run == nil {
		r.run = func(string) {}
	}
	return r
}

// Poke asks for a reconciliation soon (a health check changed state).
func (r *Reconciler) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// SetModel replaces the model (a reload). The roles and what was adopted
// of the real servers that stay are kept. It returns the model's
// generation, for WaitApplied.
func (r *Reconciler) SetModel(m Model) uint64 {
	r.mu.Lock()
	r.model = m
	r.gen++
	gen := r.gen
	keepAdopted := map[dataplane.ServiceKey]map[dataplane.BackendKey]dataplane.Backend{}
	for _, s := range m.Services {
		if r.adopted[s.Key] == nil {
			continue
		}
		for _, rs := range s.Reals {
			if b, ok := r.adopted[s.Key][rs.Key()]; ok {
				if keepAdopted[s.Key] == nil {
					keepAdopted[s.Key] = map[dataplane.BackendKey]dataplane.Backend{}
				}
				keepAdopted[s.Key][rs.Key()] = b
			}
		}
	}
	// A real server the model drops forgets what was adopted of it: added
	// back later, it starts as any new one.
	r.adopted = keepAdopted
	r.mu.Unlock()
	r.Poke()
	return gen
}

// WaitApplied waits until a reconciliation of the model of generation gen
// (or a later one) has ended, and returns it; ctx bounds the wait.
func (r *Reconciler) WaitApplied(ctx context.Context, gen uint64) (Round, error) {
	for {
		r.mu.Lock()
		done, rounds := r.done, r.rounds
		r.mu.Unlock()
		if done.Gen >= gen {
			return done, nil
		}
		select {
		case <-rounds:
		case <-ctx.Done():
			return Round{}, ctx.Err()
		}
	}
}

// ended records a round and wakes WaitApplied. Called with r.mu held. A
// round that found nothing to apply keeps the figures of the one that
// applied its model.
func (r *Reconciler) ended(rd Round) {
	if rd.Apply == 0 && rd.Err == nil && rd.Gen == r.done.Gen {
		rd = r.done
	}
	r.done = rd
	close(r.rounds)
	r.rounds = make(chan struct{})
}

// timely reports whether a round may differ with time alone: a tentative
// role or the adoption's grace running out, a failure to retry.
func (r *Reconciler) timely() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.lastErr != nil || r.poked || len(r.pending) > 0 || r.adoptMACs {
		return true
	}
	for _, role := range r.roles {
		if !role.Until.IsZero() && !now.After(role.Until) {
			return true
		}
	}
	return false
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
	// A tentative role (just started: known for sure once vrrp's
	// Master_Down_Timer has run out) or a hand-over changes what is
	// forwarded when its deadline passes, without another event: look
	// again then.
	for _, until := range []time.Time{role.Until, role.HandoverUntil} {
		if !until.IsZero() {
			time.AfterFunc(time.Until(until)+10*time.Millisecond, r.Poke)
		}
	}
}

// reportQuorum logs the services whose quorum changed between two rounds
// and runs their quorum_up or quorum_down command.
func (r *Reconciler) reportQuorum(model Model, last, now map[dataplane.ServiceKey]ServiceState) {
	var reported map[string]bool // the groups' virtual servers
	for _, s := range model.Services {
		was, known := last[s.Key]
		st := now[s.Key]
		if !known || was.Up == st.Up {
			continue
		}
		if s.Server != "" { // the entries of a group share one quorum: once
			if reported[s.Server] {
				continue
			}
			if reported == nil {
				reported = map[string]bool{}
			}
			reported[s.Server] = true
		}
		if r.quorum != nil {
			r.quorum(s, st)
		}
		if st.Up {
			r.log.Info("service up: quorum reached", "service", s.Name, "healthy_weight", st.Healthy, "quorum", s.Quorum)
			if s.QuorumUp != "" {
				r.run(s.QuorumUp)
			}
		} else {
			r.log.Warn("service down: quorum lost", "service", s.Name, "healthy_weight", st.Healthy, "quorum", s.Quorum)
			if s.QuorumDown != "" {
				r.run(s.QuorumDown)
			}
		}
	}
}

// States returns the service states computed by the last reconciliation.
func (r *Reconciler) States() map[dataplane.ServiceKey]ServiceState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.states)
}

// LastError is the error of the last Apply (nil after a success).
func (r *Reconciler) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Reconcile runs one round: it gathers the inputs, computes the desired
// state (Desired), records the services' states, runs the quorum commands
// of those whose quorum changed, and applies the desired state if it
// differs from what was applied last. It returns Apply's error.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	r.round.Lock()
	defer r.round.Unlock()
	start := time.Now()
	checks, ordered := r.checkStates()
	var weights map[string]health.Weight
	if r.weights != nil {
		weights = r.weights()
	}
	var neighVer uint64
	if r.neigh != nil {
		neighVer = r.neigh.Version() // before the next hops are read
	}
	r.mu.Lock()
	gen := r.gen
	r.poked = false
	if ordered != nil && r.model.checkOrder != r.orderedOf {
		// A new model came meanwhile: its checks by key.
		r.mu.Unlock()
		checks, ordered = r.health(), nil
		r.mu.Lock()
		gen = r.gen
	}
	r.endAdoption(Inputs{Model: r.model, Health: checks, Ordered: ordered})
	in := r.inputs(checks)
	in.Ordered = ordered
	in.Weights = weights
	r.adoptMACs = in.AdoptMACs && len(r.adopted) > 0
	prev := r.applied // replaced, never changed in place
	overrides := r.overridesGen
	r.mu.Unlock()
	dirty := r.base.dirty(in, gen, overrides, neighVer)
	// The next hops and the desired state of 65,536 real servers are made
	// without the lock: status and VRRP's inputs do not wait for them.
	r.nextHops(&in, dirty)
	desired, states, computed := desiredFrom(in, prev, dirty)
	r.mu.Lock()
	// Quorum changes are reported against the states stored last.
	model, last := in.Model, r.states
	r.states = states
	r.computed = computed
	unchanged, same := r.unchanged(desired)
	pending := r.pending
	r.pending = map[string]Role{}
	r.mu.Unlock()
	r.reportQuorum(model, last, states)
	if same {
		r.base.record(in, gen, overrides, neighVer)
		r.mu.Lock()
		r.ended(Round{Gen: gen, Took: time.Since(start)})
		r.mu.Unlock()
		r.reportRoles(pending)
		r.notify()
		return nil
	}
	// Apply runs without the lock: health and VRRP inputs keep flowing.
	applyStart := time.Now()
	var err error
	if ua, ok := r.dp.(dataplane.UnchangedApplier); ok && unchanged != nil {
		err = ua.ApplyUnchanged(ctx, desired, unchanged)
	} else {
		err = r.dp.Apply(ctx, desired)
	}
	if err == nil {
		r.base.record(in, gen, overrides, neighVer)
	} else {
		r.base.ok = false
	}
	r.mu.Lock()
	r.ended(Round{Gen: gen, Took: time.Since(start), Apply: time.Since(applyStart), Err: err})
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
	r.notify()
	return err
}

// unchanged reports which services of desired are as the last Apply,
// which succeeded, had them (nil when the last Apply failed or none was
// made), and whether all are. Services a round did not compute, or
// computed to the backends the last round had, share their backends with
// it: most compare at once. Called with r.mu held.
func (r *Reconciler) unchanged(desired []dataplane.Service) ([]bool, bool) {
	if r.lastErr != nil || r.applies == 0 {
		return nil, false
	}
	unchanged := make([]bool, len(desired))
	all := len(desired) == len(r.applied)
	for i := range desired {
		unchanged[i] = i < len(r.applied) && dataplane.ServiceEqual(desired[i], r.applied[i])
		all = all && unchanged[i]
	}
	return unchanged, all
}

// notify calls OnReconciled.
func (r *Reconciler) notify() {
	if r.reconciled != nil {
		r.reconciled()
	}
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
// when the result may have changed with time alone (a tentative role, the
// adoption's grace, a failure): every input that changes pokes it, and a
// round of 65,536 real servers that changes nothing is not free.
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
	wait:
		select {
		case <-ctx.Done():
			return nil
		case <-r.poke:
			r.mu.Lock()
			r.poked = true
			r.mu.Unlock()
			if !retry.Stop() {
				select {
				case <-retry.C:
				default:
				}
			}
		case <-retry.C:
			if !r.timely() {
				retry.Reset(resync)
				goto wait
			}
		}
	}
}

// Applied returns the state applied last.
func (r *Reconciler) Applied() []dataplane.Service {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied)
}
