package health

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// schedule is the scheduler goroutine: it moves due checks from the heap
// to a ready list and starts them while fewer than Options.Workers run,
// sleeping until the next check is due, a slot is free, or Update or a
// finished run changed the heap's earliest check.
func (m *Manager) schedule(ctx context.Context) {
	var ready readyList // due, waiting for a worker; only this goroutine uses it
	var jobs []job      // started in this round
	batch := new(startBatch)
	// The answers the tap took are read in the rounds too, at least every
	// synTapReadEvery while probes wait (drainProbeTaps).
	tbuf := new(tapBuf)
	defer startTapDrain()()
	drain := time.NewTimer(time.Hour)
	drain.Stop()
	defer drain.Stop()
	// With real time, the scheduler sleeps on a timerfd of its own
	// (roundWake); with a Clock of the tests', or without one, in a
	// select on its timers and m.wake.
	var fw *roundWake
	if _, ok := m.clock.(realClock); ok {
		if w, err := newRoundWake(); err == nil {
			fw = w
			m.fdWake.Store(w)
			defer func() {
				m.fdWake.Store(nil)
				w.close()
			}()
			defer context.AfterFunc(ctx, w.poke)()
		}
	}
	for {
		m.mu.Lock()
		now := m.clock.Now()
		for c := m.queue.top(); c != nil && !m.next(c).After(now); c = m.queue.top() {
			ready.push(m.queue.pop())
		}
		// Start every ready check a slot is free for, in one round: at
		// 12,800 checks a second, a round (and a timer) per check was
		// much of the scheduler's work.
		jobs = jobs[:0]
	take:
		for ready.len() > 0 {
			c := ready.front()
			if c.gone {
				ready.pop() // removed or replaced while waiting
				continue
			}
			select {
			case m.slots <- struct{}{}:
			default:
				break take // every slot is taken
			}
			ready.pop()
			jobs = append(jobs, c.job(now))
		}
		var slots chan<- struct{}
		var j job
		if ready.len() > 0 {
			// Every slot is taken: wait for one.
			c := ready.front()
			slots, j = m.slots, c.job(now)
		}
		var due time.Time // the next check's run; zero: none
		soon := false     // the next round comes within 2 synTapReadEvery (its timer's slack)
		if c := m.queue.top(); c != nil {
			due = m.next(c)
			soon = due.Sub(now) <= synTapReadEvery
		}
		m.mu.Unlock()
		if len(jobs) > 0 {
			// One reading of the clock for the round's runs: they start
			// together (their SYNs leave with one flush).
			start := time.Now()
			for _, j := range jobs {
				m.start(ctx, j, batch, start)
			}
		}
		batch.flush() // their SYNs together
		m.flushed()
		drainBy := drainProbeTaps(tbuf) && !soon
		// startWaiting starts j, the check at the front of ready, once a
		// slot was taken for it.
		startWaiting := func() {
			ready.pop()
			m.start(ctx, j, batch, time.Now())
			batch.flush()
			m.flushed()
		}

		if fw != nil {
			if slots != nil {
				// Every slot is taken: a run that ends pokes while this
				// is set (release). One may have ended already.
				m.slotWait.Store(true)
				select {
				case m.slots <- struct{}{}:
					m.slotWait.Store(false)
					startWaiting()
					continue
				default:
				}
			}
			fw.wait(due, drainBy)
			m.slotWait.Store(false)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		var timer Timer
		var fire <-chan time.Time
		if !due.IsZero() {
			timer = m.clock.TimerAt(due)
			fire = timer.C()
		}
		var drained <-chan time.Time
		if drainBy {
			drain.Reset(synTapReadEvery)
			drained = drain.C
		}
		select {
		case <-ctx.Done():
		case <-m.wake:
		case <-fire:
		case <-drained:
		case slots <- struct{}{}:
			startWaiting()
		}
		drain.Stop()
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// job is a run of c starting at now.
func (c *check) job(now time.Time) job {
	return job{c: c, checker: c.checker(), typ: c.spec.Type, timeout: c.spec.Timeout, started: now}
}

// readyList is the scheduler's FIFO of due checks. Taking from its front
// leaves the room behind for the next pushes, where a slice resliced
// from its front (ready = ready[1:]) was copied to a new array as it
// filled: garbage at every round.
type readyList struct {
	s    []*check
	head int // s[head:] wait
}

// readyKeep is the most checks a drained readyList keeps room for.
const readyKeep = 4096

func (r *readyList) len() int      { return len(r.s) - r.head }
func (r *readyList) front() *check { return r.s[r.head] }
func (r *readyList) push(c *check) { r.s = append(r.s, c) }

// pop drops the front check.
func (r *readyList) pop() {
	r.s[r.head] = nil
	r.head++
	switch {
	case r.head == len(r.s) && cap(r.s) > readyKeep:
		// Drained after a burst (the start, a reload, every check due
		// at once): its array goes (0.9 MB at 64,000 checks, held for
		// good before); the steady state's few due checks at a time
		// fit readyKeep.
		r.s, r.head = nil, 0
	case r.head == len(r.s):
		r.s, r.head = r.s[:0], 0
	case r.head >= 1024 && 2*r.head >= len(r.s):
		// Mostly room behind (all slots were taken for long): move the
		// rest to the front, at most once per as many pops.
		n := copy(r.s, r.s[r.head:])
		clear(r.s[n:])
		r.s, r.head = r.s[:n], 0
	}
}

// start runs j, which holds one of m.slots, taken by the caller, at now:
// in a goroutine of its own, or with none for an asyncChecker, whose
// start waits in b until the caller flushes it.
func (m *Manager) start(ctx context.Context, j job, b *startBatch, now time.Time) {
	if ac, ok := j.checker.(asyncChecker); ok {
		r := m.newRun(ctx, j, now)
		if ac.startCheck(r.start.Add(j.timeout), r, b) {
			return
		}
		// Not started: its probe is in no batch, and it may serve the
		// next run at once (a tcp check that connects comes here at
		// every run).
		r.flushes = m.flushes - 1
		m.freeRun(r)
	}
	m.running.Go(func() {
		defer m.release()
		m.run(ctx, j)
	})
}

func (m *Manager) run(ctx context.Context, j job) {
	start := time.Now()
	var w Weight
	var err error
	if dc, ok := j.checker.(deadlineChecker); ok {
		// No context (and timer) of its own for each of thousands of runs.
		err = dc.checkBy(ctx, start.Add(j.timeout))
	} else {
		cctx, cancel := context.WithTimeout(ctx, j.timeout)
		if wc, ok := j.checker.(WeightChecker); ok {
			w, err = wc.CheckWeight(cctx)
		} else {
			err = j.checker.Check(cctx)
		}
		cancel()
	}
	m.complete(ctx, j, start, time.Now(), w, err)
}

// complete records the result of the run j that started at start and
// ended at end.
func (m *Manager) complete(ctx context.Context, j job, start, end time.Time, w Weight, err error) {
	d := max(0, end.Sub(start)) // an answer's time is the tap's clock (takenAt)
	if ctx.Err() != nil {
		return // shutting down: not the real server's fault
	}
	if m.observe != nil {
		m.observe(j.c.key, j.typ, d, err)
	}
	t, changed, sum := m.finish(j, w, err, d)
	if changed {
		m.logTransition(t)
	}
	if sum != nil {
		m.log.Info("health checks: first results", "up", sum.up, "down", sum.down, "undecided", sum.undecided)
		if sum.undecided == 0 && m.decided != nil {
			m.decided(sum.decided)
		}
	}
}

// asyncChecker is a Checker whose runs need no goroutine of their own (a
// tcp check: the SYN prober's goroutines wait for all of them):
// startCheck starts the run r that ends by deadline and returns; r.end is
// called once with its result, from another goroutine or from b's flush,
// with no lock of the Manager held; the caller flushes b once it has
// started the round's checks. Runs still waiting when the Manager stops end by
// their deadline, and their results are dropped. startCheck returns
// false, without calling r.end, when this run must be a Check instead.
type asyncChecker interface {
	startCheck(deadline time.Time, r *asyncRun, b *startBatch) bool
}

// asyncRun is a run of an asyncChecker in flight: what its end needs. A
// run in flight holds one of Manager.slots, so there are Options.Workers
// of them at most, and an ended one serves a next run (Manager.freeRuns):
// a run allocates none of its own. At 64,000 tcp checks every 5 s, a
// closure for each run's end, the Manager's and the tcp check's, were
// 160 of the 330 bytes of garbage a run made.
type asyncRun struct {
	m     *Manager
	ctx   context.Context
	j     job
	start time.Time
	// route and r are a tcp check's (tcpStartCheck): its route, and the
	// synRoute its SYN took.
	route *atomic.Pointer[synRoute]
	r     *synRoute
	// probeDone is probeEnded, bound once: what the prober calls.
	probeDone func(error)
	// probe is a tcp check's probe (synProber.startIn), 176 bytes a run
	// made; it stays in the scheduler's batch of SYNs until the batch is
	// flushed, even when it ended before (at its deadline, or its prober
	// closing), so r serves no next run before: flushes is
	// Manager.flushes when r started.
	probe   synProbe
	flushes uint64
}

// newRun returns an asyncRun of j, started at start, for the caller to
// start or to free. Only the scheduler calls it (Manager.flushes).
func (m *Manager) newRun(ctx context.Context, j job, start time.Time) *asyncRun {
	m.runMu.Lock()
	var r *asyncRun
	// The last run freed, unless its probe may still wait in the batch
	// (then a new one: it happens only to a run that ended before its
	// SYN left).
	if n := len(m.freeRuns); n > 0 && m.freeRuns[n-1].flushes != m.flushes {
		r = m.freeRuns[n-1]
		m.freeRuns[n-1] = nil
		m.freeRuns = m.freeRuns[:n-1]
	}
	m.runMu.Unlock()
	if r == nil {
		r = &asyncRun{m: m}
		r.probeDone = r.probeEnded
	}
	r.ctx, r.j, r.start, r.flushes = ctx, j, start, m.flushes
	return r
}

// freeRun keeps r, ended or never started, for a next run; Options.Workers
// of them at most.
func (m *Manager) freeRun(r *asyncRun) {
	r.ctx, r.j, r.route, r.r = nil, job{}, nil, nil
	m.runMu.Lock()
	if len(m.freeRuns) < m.workers {
		m.freeRuns = append(m.freeRuns, r)
	}
	m.runMu.Unlock()
}

// flushed counts a flush of the scheduler's batch (newRun).
func (m *Manager) flushed() {
	m.runMu.Lock()
	m.flushes++
	m.runMu.Unlock()
}

// end records the result of r, frees it, and gives back its slot.
func (r *asyncRun) end(err error) { r.endAt(err, time.Now()) }

// endAt is end for a result that came at now.
func (r *asyncRun) endAt(err error, now time.Time) {
	m, ctx, j, start := r.m, r.ctx, r.j, r.start
	m.freeRun(r) // before the slot: a run started next takes it
	defer m.release()
	m.complete(ctx, j, start, now, Weight{}, err)
}

// deadlineChecker is a Checker whose run takes its deadline apart from
// its context (which only stops it when the Manager stops).
type deadlineChecker interface {
	checkBy(ctx context.Context, deadline time.Time) error
}

// firstResults is a summary of checks' first results.
type firstResults struct{ up, down, undecided, decided int }

// summaryEvery is how often first results are summarised while checks
// are still undecided (the last summary comes when none is).
const summaryEvery = 10 * time.Second

// finish records the result of a run, applies fall and rise, and schedules
// the next run. A successful run's weight becomes the check's.
func (m *Manager) finish(j job, w Weight, err error, d time.Duration) (Transition, bool, *firstResults) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := j.c
	if c.gone {
		return Transition{}, false, nil // removed or replaced while running
	}
	now := m.clock.Now()
	if c.runs < math.MaxUint32 {
		c.runs++
	}
	c.lastRun = m.since(j.started)
	m.setLastErr(c, err)
	c.setDuration(d)
	from, fromWeight := c.state, c.weight()
	if err == nil {
		c.setWeight(w)
		if c.successes < math.MaxInt32 {
			c.successes++
		}
		c.failures = 0
		if int(c.successes) >= c.spec.Rise {
			c.state = StateUp
		}
	} else {
		if c.failures < math.MaxInt32 {
			c.failures++
		}
		c.successes = 0
		if int(c.failures) >= c.spec.Fall {
			c.state = StateDown
		}
	}
	m.setNext(c, now.Add(nextDelay(c.spec.Interval)))
	m.queue.push(c)
	if m.queue.top() == c {
		// The scheduler sleeps until a later check: wake it. (Otherwise
		// its timer holds; a freed slot wakes it by itself.)
		m.poke()
	}
	var sum *firstResults
	if from == StateUnknown && c.state != StateUnknown {
		m.undecided--
		m.decidedN++
		if c.state == StateUp {
			m.firstUp++
		} else {
			m.firstDown++
		}
		if m.undecided == 0 || now.Sub(m.lastSummary) >= summaryEvery {
			sum = &firstResults{m.firstUp, m.firstDown, m.undecided, m.decidedN}
			m.firstUp, m.firstDown, m.lastSummary = 0, 0, now
			if m.undecided == 0 {
				m.decidedN = 0
			}
		}
	}
	if c.state == from && c.weight() == fromWeight {
		return Transition{}, false, sum
	}
	t := Transition{Key: c.key, From: from, To: c.state, Up: c.state == StateUp, Weight: c.weight(), Err: err, At: now}
	m.out.push(t)
	return t, true, sum
}

// release gives back a run's slot, and wakes the scheduler if it waits
// for one.
func (m *Manager) release() {
	<-m.slots
	if m.slotWait.Load() {
		m.poke()
	}
}

// poke wakes the scheduler without waiting.
func (m *Manager) poke() {
	if w := m.fdWake.Load(); w != nil {
		w.poke()
		return
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// logTransition logs a real server going up or down, or a change of the
// weight its check sets. A first result (from unknown) and a check that
// starts again (to unknown) are logged at debug level only: they come by
// the thousand at start and at a reload, summarised ("health checks:
// first results", "health checks updated").
func (m *Manager) logTransition(t Transition) {
	if t.From == t.To {
		m.log.Info("health check weight changed", "check", t.Key, "state", t.To, "weight", t.Weight)
		return
	}
	if t.From == StateUnknown || t.To == StateUnknown {
		m.log.Debug("health check state changed", "check", t.Key, "from", t.From, "to", t.To, "error", t.Err)
		return
	}
	if t.Err != nil {
		m.log.Info("health check state changed", "check", t.Key, "from", t.From, "to", t.To, "error", t.Err)
		return
	}
	m.log.Info("health check state changed", "check", t.Key, "from", t.From, "to", t.To)
}

// deliver is the goroutine that sends queued transitions to Results.
func (m *Manager) deliver(ctx context.Context) {
	for {
		t, ok := m.out.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-m.out.notify:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case m.results <- t:
		}
	}
}
