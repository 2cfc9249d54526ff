package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// DefaultWorkers is how many checks may run at once when Options.Workers
// is 0. A running check is one goroutine, mostly waiting on the network,
// and only while it runs; the cap keeps a mass timeout (a rack going dark:
// every check waits its full timeout) from delaying the other checks, and
// still bounds the processes of script checks.
const DefaultWorkers = 1024

// Options configure a Manager.
type Options struct {
	Logger  *slog.Logger // nil discards
	Workers int          // checks running at once at most; DefaultWorkers when 0
	Clock   Clock        // scheduling time source; real time when nil
	// Observe, when set, is called after every run with the check's key
	// and type, its duration and its result, for the duration histogram.
	// It is called from a worker with no lock held and must return quickly.
	Observe func(key string, typ Type, d time.Duration, err error)
	// Scripts runs the commands of script checks (the daemon's shared
	// control/command Runner); nil: a default Runner, as the daemon's user.
	Scripts ScriptRunner
	// Decided, when set, is called when a run's result leaves no check
	// undecided (the first results of a start's or an Update's new checks
	// are all in, as the last "first results" line says), with the number
	// of first results since its last call; from the run's goroutine with
	// no lock held, it must return quickly.
	Decided func(n int)
}

// Transition is a change of state of one check, or of the weight it
// sets (From == To then).
type Transition struct {
	Key      string
	From, To State
	Up       bool      // To == StateUp: the real server may get traffic
	Weight   Weight    // the weight the check sets (of its last successful run)
	Err      error     // the failure that caused it, or why the Spec is invalid
	At       time.Time // by the Manager's clock
}

// CheckStatus is a snapshot of one check.
type CheckStatus struct {
	Spec         Spec
	State        State
	Weight       Weight // the weight the check sets
	Successes    int    // consecutive
	Failures     int    // consecutive
	Runs         uint64 // completed runs
	LastError    error  // of the last run, or why the Spec is invalid
	LastDuration time.Duration
	LastRun      time.Time // start of the last completed run; zero before the first
	NextRun      time.Time // zero while running, or when the check never runs
}

// Manager runs checks: one scheduler goroutine keeps them in a heap ordered
// by their next run and starts a goroutine for each due one (at most
// Options.Workers at once), so thousands of checks cost no goroutine while
// they wait. The first run of
// a check is spread uniformly over its interval; each next run starts
// Interval ±10% after the previous one ended, so checks do not
// synchronise.
type Manager struct {
	log     *slog.Logger
	clock   Clock
	workers int
	observe func(string, Type, time.Duration, error)
	decided func(int)
	scripts ScriptRunner

	slots   chan struct{} // one token per running check (capacity: workers)
	running sync.WaitGroup
	wake    chan struct{} // capacity 1: the heap or the set of checks changed
	// fdWake is the scheduler's timerfd while it sleeps on one (poke);
	// slotWait is set while it waits for a free slot that way
	// (release).
	fdWake   atomic.Pointer[roundWake]
	slotWait atomic.Bool
	results  chan Transition
	out      outbox
	started  atomic.Bool

	// freeRuns are the asyncRuns of ended runs, for the next ones (at
	// most Options.Workers: one per slot); flushes counts the flushes of
	// the scheduler's batch of SYNs (asyncRun.flushes).
	runMu    sync.Mutex
	freeRuns []*asyncRun
	flushes  uint64

	// epoch is the time the checks' times count from (check.at,
	// check.lastRun); by Clock, with its monotonic reading.
	epoch time.Time

	mu sync.Mutex
	// checks is the check of each entry of the last Update's list, in its
	// order (a key given twice is there twice: one check); n counts the
	// distinct ones. A slice, not a map by key: at 64,000 checks the map
	// was 3.3 MB of the steady heap, and only an Update and a Lookup by
	// key need one, which they make when they do (checksByKey). orderID is the
	// caller's name for the list (UpdateChecksOrdered; 0: none):
	// StatesOrdered reads the states in its order, without a lookup by
	// key.
	checks []*check
	n      int
	// lastErrs is the error of the last run of each check that has one,
	// or why its Spec is invalid.
	lastErrs map[*check]error
	orderID  uint64
	queue    checkHeap // the checks waiting for their next run
	gen      uint8     // of the last Update (marks the checks it has)
	// undecided counts the checks still Unknown; firstUp and firstDown
	// the first results since the last summary (logSummary).
	undecided          int
	firstUp, firstDown int
	decidedN           int // first results since Options.Decided was last called
	lastSummary        time.Time
}

type job struct {
	c       *check
	checker Checker
	typ     Type
	timeout time.Duration
	started time.Time
}

// NewManager returns a Manager with no checks. Call Run to start checking.
func NewManager(opts Options) *Manager {
	m := &Manager{
		log:     opts.Logger,
		clock:   opts.Clock,
		workers: opts.Workers,
		observe: opts.Observe,
		decided: opts.Decided,
		scripts: opts.Scripts,
		wake:    make(chan struct{}, 1),
		results: make(chan Transition),
		out:     outbox{notify: make(chan struct{}, 1)},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.clock == nil {
		m.clock = realClock{}
	}
	m.epoch = m.clock.Now()
	if m.workers <= 0 {
		m.workers = DefaultWorkers
	}
	m.slots = make(chan struct{}, m.workers)
	return m
}

// Results delivers every state change, in order, to one reader. A new
// check starts Unknown without a Transition; one is sent at once when it
// starts in another state (type none, InitialUp, invalid Spec). Results
// are queued, never dropped, while nobody reads (the scheduler never
// waits for the reader). Transitions of a key removed by Update that
// were not yet delivered are dropped, but one already in flight can still
// arrive: ignore keys you no longer have. The channel is closed when Run
// returns.
func (m *Manager) Results() <-chan Transition { return m.results }

// Run checks until ctx is done, then waits for its goroutines and returns
// nil. It can be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("health manager already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { m.deliver(ctx) })
	m.schedule(ctx)
	cancel()
	m.running.Wait()
	wg.Wait()
	close(m.results)
	return nil
}

// Check is one check for UpdateChecks: Spec may be shared by many checks
// (the real servers of a service: the Manager keeps the pointer, and the
// caller must not change the Spec afterwards); Target is this check's
// (Spec.Target is ignored).
type Check struct {
	Key    string
	Spec   *Spec
	Target netip.AddrPort
}

// Update makes specs, keyed by names the caller chooses, the set of checks:
//   - a Spec equal to the current one keeps its state and schedule;
//   - a Spec whose probe is unchanged (only Interval, Timeout, Fall, Rise or
//     InitialUp differ) keeps its state and counters, the new thresholds
//     apply from the next run, and a shorter interval brings the next run
//     forward; like keepalived, a reload flaps nothing that still probes
//     the same way;
//   - a Spec whose probe changed (type, target, path, script...) is a new
//     check: it restarts from its initial state, with a Transition when
//     that differs from the old state;
//   - a check missing from specs stops (a result of a run in progress is
//     dropped).
//
// An invalid Spec makes a check that never runs and stays Down, with the
// problem as its error; Update returns all such problems joined, and
// applies everything else.
func (m *Manager) Update(specs map[string]Spec) error {
	keys := make([]string, 0, len(specs))
	for key := range specs {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	list := make([]Check, len(keys))
	for i, key := range keys {
		s := specs[key].clone() // the caller keeps its slices
		list[i] = Check{Key: key, Spec: &s, Target: s.Target}
	}
	return m.UpdateChecks(list)
}

// UpdateChecks is Update for checks given in order, whose Specs may be
// shared: what the daemon passes for 64,000 real servers. A key given
// more than once is one check, its first entry's.
func (m *Manager) UpdateChecks(list []Check) error {
	return m.UpdateChecksOrdered(list, 0)
}

// UpdateChecksOrdered is UpdateChecks, and names list id (not 0) for
// StatesOrdered and LookupOrdered, which then read the checks' states in
// its order: a caller that knows where each of its real servers' checks
// is in the list (the daemon's model) looks none up by key. Its 64,000
// lookups by key took 90 ms of a reconciler's round.
func (m *Manager) UpdateChecksOrdered(list []Check, id uint64) error {
	var errs []error
	var changed []Transition
	m.mu.Lock()
	now := m.clock.Now()
	m.gen++
	gen := m.gen
	// Validation depends on the Spec and the target's kind only: a shared
	// Spec is validated once for its real servers.
	type validated struct {
		s                  *Spec
		valid, is4, noPort bool
	}
	var last validated
	var lastErr error
	// The tcp checks of a Spec share a tcpDest.
	var dest *tcpDest
	var added, restarted, removed, retimed int
	prev := m.checks
	order := make([]*check, len(list))
	// The old check of an entry is the one at its position in the last
	// list, when that is of its key (a reload of the same configuration);
	// from the first entry that is not, they are looked up by key.
	var byKey map[string]*check
	for i, nc := range list {
		key := nc.Key
		var old *check
		if byKey == nil && i < len(prev) && prev[i].key == key && prev[i].gen != gen {
			old = prev[i]
		} else {
			if byKey == nil {
				byKey = checksByKey(prev)
				for _, c := range order[:i] {
					byKey[c.key] = c // over the one it replaced
				}
			}
			old = byKey[key]
		}
		if old != nil && old.gen == gen {
			order[i] = old // a key given again: the check of its first entry
			continue
		}
		if old != nil {
			old.gen = gen
			order[i] = old // until replaced below
		}
		if old != nil && !old.invalid && old.target() == nc.Target && (old.spec == nc.Spec || old.spec.equalExceptTarget(*nc.Spec)) {
			continue
		}
		v := validated{nc.Spec, nc.Target.Addr().IsValid(), nc.Target.Addr().Is4(), nc.Target.Port() == 0}
		if v != last {
			s := *nc.Spec
			s.Target = nc.Target
			last, lastErr = v, s.Validate()
		}
		verr := lastErr
		if old != nil && !old.invalid && verr == nil && old.target() == nc.Target && old.spec.sameProbeExceptTarget(*nc.Spec) {
			m.retime(old, nc.Spec, now)
			retimed++
			continue
		}
		from, fromWeight := StateUnknown, Weight{}
		if old != nil {
			from, fromWeight = old.state, old.weight()
			m.remove(old)
			restarted++
		} else {
			added++
		}
		if verr == nil && nc.Spec.Type == checktype.TCP && (dest == nil || dest.connectIP != nc.Spec.ConnectIP || dest.bindTo != nc.Spec.BindTo) {
			dest = &tcpDest{connectIP: nc.Spec.ConnectIP, bindTo: nc.Spec.BindTo, log: m.log}
		}
		c := m.add(key, nc.Spec, nc.Target, verr, dest, now)
		c.gen = gen
		order[i] = c
		if byKey != nil {
			byKey[key] = c
		}
		var invalid error
		if c.invalid {
			invalid = m.lastErrs[c]
			errs = append(errs, fmt.Errorf("health check %s: %w", key, invalid))
		}
		if c.state != from || c.weight() != fromWeight {
			t := Transition{Key: key, From: from, To: c.state, Up: c.state == StateUp, Err: invalid, At: now}
			m.out.push(t)
			changed = append(changed, t)
		}
	}
	for _, c := range prev {
		if c.gen != gen && !c.gone {
			m.remove(c)
			m.out.purge(c.key)
			removed++
		}
	}
	m.checks, m.orderID = order, id
	total, undecided := m.n, m.undecided
	m.mu.Unlock()
	m.poke()
	for _, t := range changed {
		m.logTransition(t)
	}
	if added+restarted+removed+retimed > 0 {
		m.log.Info("health checks updated", "checks", total, "added", added, "restarted", restarted,
			"retimed", retimed, "removed", removed, "undecided", undecided, "invalid", len(errs))
	}
	return errors.Join(errs...)
}

// add creates the check key of target from s, which verr says is invalid
// when not nil, and schedules its first run somewhere in its first
// interval, or its Warmup. A tcp check is its own Checker, to dest.
// Called with m.mu held.
func (m *Manager) add(key string, s *Spec, target netip.AddrPort, verr error, dest *tcpDest, now time.Time) *check {
	c := &check{key: key, spec: s, port: target.Port()}
	c.setAddr(target.Addr())
	var checker Checker
	switch {
	case verr != nil || s.Type == checktype.None:
	case s.Type == checktype.TCP:
		checker = (*tcpCheck)(c)
	default:
		full := *s
		full.Target = target
		checker, verr = checkers[s.Type](full, checkerEnv{scripts: m.scripts, log: m.log})
	}
	switch {
	case verr != nil:
		c.invalid, c.state = true, StateDown
		m.setLastErr(c, verr)
	case s.Type == checktype.None:
		c.state = StateUp
	default:
		if tc, ok := checker.(*tcpCheck); ok && tc == (*tcpCheck)(c) {
			c.tcp = dest
		} else {
			c.more().checker = checker
		}
		if s.InitialUp {
			c.state = StateUp
		}
		m.setNext(c, now.Add(firstDelay(*s)))
		m.queue.push(c)
	}
	if c.state == StateUnknown {
		m.undecided++
	}
	m.n++
	return c
}

// retime gives c the new timing of s, whose probe is the same. Called with
// m.mu held.
func (m *Manager) retime(c *check, s *Spec, now time.Time) {
	c.spec = s
	if !c.queued {
		return // running: the next run is scheduled when it ends
	}
	if at := m.since(now.Add(rand.N(s.Interval))); at < c.at {
		c.at = at
		m.queue.fix(c)
	}
}

// remove forgets c. Called with m.mu held.
func (m *Manager) remove(c *check) {
	if c.queued {
		m.queue.remove(c)
	}
	if c.state == StateUnknown {
		m.undecided--
	}
	m.n--
	c.gone = true
	m.setLastErr(c, nil)
}

// setLastErr records err as c's last error (nil: none). Called with m.mu
// held. The map goes once it is empty: a Go map keeps its size, and a
// storm of 64,000 failing checks would have left 3 MB behind it.
func (m *Manager) setLastErr(c *check, err error) {
	switch {
	case err != nil && m.lastErrs == nil:
		m.lastErrs = map[*check]error{c: err}
	case err != nil:
		m.lastErrs[c] = err
	case m.lastErrs[c] != nil:
		if delete(m.lastErrs, c); len(m.lastErrs) == 0 {
			m.lastErrs = nil
		}
	}
}

// Status returns a snapshot of every check.
func (m *Manager) Status() map[string]CheckStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := make(map[string]CheckStatus, m.n)
	for _, c := range m.checks {
		key := c.key
		s := CheckStatus{
			Spec:         c.spec.clone(),
			State:        c.state,
			Weight:       c.weight(),
			Successes:    int(c.successes),
			Failures:     int(c.failures),
			Runs:         uint64(c.runs),
			LastError:    m.lastErrs[c],
			LastDuration: c.duration(),
		}
		s.Spec.Target = c.target()
		if c.runs > 0 {
			s.LastRun = m.epoch.Add(time.Duration(c.lastRun))
		}
		if c.queued {
			s.NextRun = m.next(c)
		}
		st[key] = s
	}
	return st
}

// States returns the state of every check: the one source of the real
// servers' health for the reconciler and the status.
func (m *Manager) States() map[string]State {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := make(map[string]State, m.n)
	for _, c := range m.checks {
		st[c.key] = c.state
	}
	return st
}

// StatesInto is States into dst, cleared first (a new map when nil),
// which it returns: a caller that asks every round refills one map
// instead of making one of 64,000 checks (3 MB) each time.
func (m *Manager) StatesInto(dst map[string]State) map[string]State {
	m.mu.Lock()
	defer m.mu.Unlock()
	if dst == nil {
		dst = make(map[string]State, m.n)
	}
	clear(dst)
	for _, c := range m.checks {
		dst[c.key] = c.state
	}
	return dst
}

// StatesOrdered appends to dst[:0] the state of the check of each entry
// of the list that UpdateChecksOrdered named id, in its order, and
// reports whether that list is the last one given (if not, dst is
// returned empty: the caller looks its checks up by key).
func (m *Manager) StatesOrdered(id uint64, dst []State) ([]State, bool) {
	dst = dst[:0]
	m.mu.Lock()
	defer m.mu.Unlock()
	if id == 0 || id != m.orderID {
		return dst, false
	}
	for _, c := range m.checks {
		dst = append(dst, c.state)
	}
	return dst, true
}

// LookupOrdered is StatesOrdered with the error of each check's last run
// (states and errs as long as the list): what `xlb status` shows.
func (m *Manager) LookupOrdered(id uint64, states []State, errs []error) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id == 0 || id != m.orderID || len(states) != len(m.checks) || len(errs) != len(m.checks) {
		return false
	}
	for i, c := range m.checks {
		states[i], errs[i] = c.state, m.lastErrs[c]
	}
	return true
}

// checksByKey indexes checks by key.
func checksByKey(checks []*check) map[string]*check {
	by := make(map[string]*check, len(checks))
	for _, c := range checks {
		by[c.key] = c
	}
	return by
}

// Lookup sets states[i] and errs[i] to the state of the check keys[i] and
// the error of its last run (StateUnknown and nil for a key it does not
// have): what `xlb status` shows, in its order, when the checks are not
// in its model's order (LookupOrdered). The checks' index by key is made
// outside the lock, which is held only to read the states.
func (m *Manager) Lookup(keys []string, states []State, errs []error) {
	m.mu.Lock()
	checks := m.checks // replaced, never changed, by an Update
	m.mu.Unlock()
	by := checksByKey(checks)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(checks) != len(m.checks) || len(checks) > 0 && &checks[0] != &m.checks[0] {
		by = checksByKey(m.checks) // an Update came between
	}
	for i, key := range keys {
		states[i], errs[i] = StateUnknown, nil
		if key == "" {
			continue
		}
		if c := by[key]; c != nil {
			states[i], errs[i] = c.state, m.lastErrs[c]
		}
	}
}

// Weights returns the weight each check sets (misc_dynamic, file) by key,
// for the checks that set one; the others leave their real server's
// configured weight.
func (m *Manager) Weights() map[string]Weight {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := map[string]Weight{}
	for _, c := range m.checks {
		if w0 := c.weight(); w0 != (Weight{}) {
			w[c.key] = w0
		}
	}
	return w
}
