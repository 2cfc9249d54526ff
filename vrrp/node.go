package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Event is a role change of an instance, as decided by the protocol.
type Event struct {
	Instance string
	From, To State
	// Priority is the instance's effective priority at the decision.
	Priority uint8
	// Reason is one of the Reason* constants.
	Reason string
	// At is the time of the decision (the packet or timer that caused
	// it); the control plane measures its own latency from it.
	At time.Time
	// TentativeUntil is set on the BACKUP an instance enters at start-up
	// (Reason ReasonStartup): the role is tentative until then, since
	// whether another master exists is known only when the instance's
	// Master_Down_Timer runs out (then it hears one, or becomes MASTER
	// itself, in a later event). It is that timer's deadline plus a
	// second for the decision to arrive; a restarted master may keep
	// forwarding until then. Zero on every other event.
	TentativeUntil time.Time `json:",omitzero"`
	// HandoverUntil is set on every transition out of MASTER (to a better
	// master, FAULT, a stop, a sync group's move): traffic still reaches
	// this node until the new master has taken over and its gratuitous
	// ARPs have reached clients and real servers, so the node should keep
	// forwarding until then (3 advert intervals and 200ms, at most 4s).
	// Forwarding stopped at once turns a NAT real server's replies into
	// untranslated packets the client answers with a reset.
	HandoverUntil time.Time `json:",omitzero"`
}

// InstanceStatus is a snapshot of one instance, for metrics and the
// control socket.
type InstanceStatus struct {
	Name      string
	Interface string
	VRID      uint8
	Version   int
	State     State
	Since     time.Time // time of the last transition
	// Priority is configured, EffectivePriority after tracking weights.
	Priority          uint8
	EffectivePriority uint8
	// LocalAddr is the address our adverts come from; MasterAddr and
	// MasterPriority the current master's as last seen (ours when master).
	LocalAddr            netip.Addr
	MasterAddr           netip.Addr
	MasterPriority       uint8
	AdvertInterval       time.Duration
	MasterAdvertInterval time.Duration
	VIPs                 []netip.Prefix
	// Faults says why the instance is in FAULT (tracked interfaces and
	// scripts), empty otherwise.
	Faults []string

	AdvertsSent          uint64 // including priority 0
	AdvertsReceived      uint64 // accepted ones
	PriorityZeroSent     uint64
	PriorityZeroReceived uint64
	Transitions          uint64
	BecameMaster         uint64
	// RxErrors counts rejected advertisements by reason; every name of
	// RxErrorReasons is present.
	RxErrors map[string]uint64
	// SplitBrain: another station answers for our VIPs while we are
	// master. SplitBrainCount counts the episodes.
	SplitBrain      bool
	SplitBrainCount uint64
}

// Options are a Node's dependencies; zero fields get the real ones.
type Options struct {
	Logger  *slog.Logger // default: discard
	Clock   Clock        // default: the system clock
	Network Network      // default: Linux (raw sockets, AF_PACKET, netlink)
	// Runner runs track scripts and notify commands; a configuration
	// with any needs one (ErrNoRunner).
	Runner Runner
	// EventBuffer is the capacity of the Events channel (default 64).
	EventBuffer int
	// BeforeMaster, when set, is called when an instance becomes MASTER,
	// before its VIPs are added and announced: the daemon enables
	// forwarding there, so that no packet reaches the new master before it
	// can forward. The protocol waits for it (it delays the takeover: it
	// must return quickly) and Status works meanwhile; it must not call
	// Reconfigure or Shutdown, which wait for the protocol. The event is
	// also sent on Events.
	BeforeMaster func(Event)
}

// Node runs the VRRP instances of one daemon.
//
// There is no protocol goroutine: whichever goroutine has an input (a
// socket reader, the timer, a track script, the link watcher, an API call)
// runs the core's step itself under the step locks, so a wake-up hands
// nothing to another goroutine (each hand-off wakes a thread; at 20ms
// adverts that was most of the CPU used). The actions run under the locks
// never wait on anything but the kernel (sends are non-blocking, events
// drop the oldest, notify scripts are queued), except BeforeMaster, called
// with coreMu released.
type Node struct {
	log    *slog.Logger
	clock  Clock
	net    Network
	runner Runner
	before func(Event)
	notify *notifier

	mu       sync.Mutex // guards the fields below until stepMu
	cfg      Config
	phase    int // phaseIdle, phaseRunning, phaseStopped
	status   []InstanceStatus
	stopErr  error
	grace    time.Duration // ResignGrace
	shutdown chan context.Context
	done     chan struct{}
	events   chan Event
	dropped  atomic.Uint64

	// stepMu serializes the protocol's steps (held across BeforeMaster);
	// coreMu guards the fields below while Run runs (released around
	// BeforeMaster, so Status works meanwhile). Lock order: stepMu, coreMu.
	stepMu    sync.Mutex
	coreMu    sync.Mutex
	core      *core
	stopped   bool
	timer     Timer
	armed     time.Time // deadline the timer is set for; zero: not armed
	pendingRx atomic.Int32
	vrrpEPs   map[epKey]*vrrpEndpoint
	frameEPs  map[epKey]*frameEndpoint
	ownMACs   atomic.Pointer[map[string]bool] // read by the frame readers
	vmacs     map[string]bool
	scripts   map[string]*scriptTask
	retired   map[string]*instance
	warned    map[string]time.Time
	drvCtx    context.Context
}

const (
	phaseIdle = iota
	phaseRunning
	phaseStopped
)

type epKey struct {
	ifname string
	v6     bool
}

// NewNode validates cfg and prepares a node; nothing touches the host
// until Run.
func NewNode(cfg Config, opts Options) (*Node, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("vrrp config: %w", err)
	}
	if err := cfg.checkRunner(opts.Runner); err != nil {
		return nil, err
	}
	n := &Node{
		log:      opts.Logger,
		clock:    opts.Clock,
		net:      opts.Network,
		runner:   opts.Runner,
		before:   opts.BeforeMaster,
		cfg:      cfg,
		shutdown: make(chan context.Context),
		done:     make(chan struct{}),
		warned:   map[string]time.Time{},
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.clock == nil {
		n.clock = timerfdClock{}
	}
	if n.net == nil {
		n.net = &LinuxNetwork{}
	}
	buf := opts.EventBuffer
	if buf <= 0 {
		buf = 64
	}
	n.events = make(chan Event, buf)
	n.notify = newNotifier(n.runner, n.log)
	n.core = newCore(n.cfg)
	n.status = n.core.statuses()
	return n, nil
}

// Events delivers role changes in order. It never blocks the protocol:
// when the buffer is full the oldest event is dropped (EventsDropped counts
// them) so the latest state always gets through; Status is the source of
// truth. The channel is closed when Run returns.
func (n *Node) Events() <-chan Event { return n.events }

// EventsDropped counts events dropped because nobody read Events.
func (n *Node) EventsDropped() uint64 { return n.dropped.Load() }

// Status returns a snapshot of every instance, in configuration order.
func (n *Node) Status() []InstanceStatus {
	n.mu.Lock()
	if n.phase == phaseRunning {
		n.mu.Unlock()
		n.coreMu.Lock()
		defer n.coreMu.Unlock()
		return n.core.statuses()
	}
	defer n.mu.Unlock()
	out := make([]InstanceStatus, len(n.status))
	for i, s := range n.status {
		s.RxErrors = maps.Clone(s.RxErrors)
		s.VIPs = slices.Clone(s.VIPs)
		s.Faults = slices.Clone(s.Faults)
		out[i] = s
	}
	return out
}

// Reconfigure applies a new configuration, as keepalived's reload: an
// instance that stays the same router (name, interface, VRID, version,
// family, unicast source, VMAC) keeps its state and timers, and gets its
// new priority, VIPs, tracking and scripts; a removed instance stops
// (priority 0 if master, notify DELETED); a new one starts. An invalid
// config is rejected and changes nothing.
func (n *Node) Reconfigure(cfg Config) error {
	cfg, err := cfg.normalize()
	if err != nil {
		return fmt.Errorf("vrrp config: %w", err)
	}
	if err := cfg.checkRunner(n.runner); err != nil {
		return err
	}
	n.mu.Lock()
	switch n.phase {
	case phaseIdle:
		n.cfg, n.core = cfg, newCore(cfg)
		n.status = n.core.statuses()
		n.mu.Unlock()
		return nil
	case phaseStopped:
		n.mu.Unlock()
		return errors.New("vrrp: node is stopped")
	}
	n.mu.Unlock()
	n.lockStep()
	defer n.unlockStep()
	if n.stopped {
		return errors.New("vrrp: node is stopped")
	}
	return n.reconfigure(cfg)
}

func (n *Node) lockStep() {
	n.stepMu.Lock()
	n.coreMu.Lock()
}

func (n *Node) unlockStep() {
	n.coreMu.Unlock()
	n.stepMu.Unlock()
}

// Shutdown stops the node gracefully: masters send priority 0 and remove
// their VIPs, notify_stop runs; it returns when that is done (Run has
// returned) or ctx ends.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.phase == phaseIdle {
		n.phase = phaseStopped
		close(n.done)
		close(n.events)
	}
	n.mu.Unlock()
	select {
	case n.shutdown <- ctx:
	case <-n.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("vrrp shutdown: %w", ctx.Err())
	}
	select {
	case <-n.done:
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.stopErr
	case <-ctx.Done():
		return fmt.Errorf("vrrp shutdown: %w", ctx.Err())
	}
}

// ResignGrace is how long the daemon must keep forwarding after the
// graceful stop (Shutdown, or Run's ctx ending) for the instances that
// were MASTER and resigned with priority 0: their backups take over within
// Skew_Time, or within 3 advertisement intervals when they missed the
// priority 0 advertisement, and clients follow their gratuitous ARPs. It
// is 3 times the longest advertisement interval of those instances plus
// 200ms, at most 4s; zero when no instance was MASTER, or before the stop.
func (n *Node) ResignGrace() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.grace
}

// Run runs the instances until ctx is done or Shutdown is called; both end
// with the graceful stop of Shutdown. It fails at once if an instance's
// interface does not exist or its sockets cannot be opened.
func (n *Node) Run(ctx context.Context) error {
	n.lockStep() // before the phase changes: Reconfigure waits for the start
	n.mu.Lock()
	if n.phase != phaseIdle {
		n.mu.Unlock()
		n.unlockStep()
		return errors.New("vrrp: Run called twice or after Shutdown")
	}
	n.phase = phaseRunning
	cfg := n.cfg
	n.mu.Unlock()

	drvCtx, cancel := context.WithCancel(context.Background())
	n.drvCtx = drvCtx
	n.vrrpEPs, n.frameEPs, n.scripts = map[epKey]*vrrpEndpoint{}, map[epKey]*frameEndpoint{}, map[string]*scriptTask{}
	n.vmacs = map[string]bool{}
	n.timer = n.clock.AfterFunc(time.Hour, n.onTimer)
	n.timer.Stop()
	err := n.prepare(cfg)
	if err == nil {
		n.handle(startUp{})
		n.rearm()
		n.syncScripts(cfg.Scripts)
	}
	n.unlockStep()
	if err != nil {
		n.finish(cancel, err)
		return err
	}
	go func() {
		err := n.net.WatchLinks(drvCtx, func(name string, up bool) {
			if up {
				n.refreshSources(name) // the address may have changed while down
			}
			n.step(linkChanged{name, up})
		})
		if err != nil && drvCtx.Err() == nil {
			n.log.Error("vrrp: watching links failed: tracking of interfaces stops", "err", err)
		}
	}()
	n.log.Info("vrrp started", "instances", len(cfg.Instances))

	var sctx context.Context
	select {
	case <-ctx.Done():
		c, stop := context.WithTimeout(context.Background(), n.maxNotifyTimeout()+time.Second)
		defer stop()
		sctx = c
	case sctx = <-n.shutdown:
	}
	err = n.stopAll(sctx)
	n.finish(cancel, err)
	return err
}

// finish releases everything Run holds and marks the node stopped.
func (n *Node) finish(cancel context.CancelFunc, err error) {
	cancel() // scripts, link watcher
	n.lockStep()
	n.stopped = true
	n.closeUnused(Config{})
	st := n.core.statuses()
	timer := n.timer
	n.unlockStep()
	releaseTimer(timer) // unlocked: its goroutine may wait for the step
	n.mu.Lock()
	n.status, n.phase, n.stopErr = st, phaseStopped, err
	n.mu.Unlock()
	close(n.done)
	close(n.events)
}

func (n *Node) maxNotifyTimeout() time.Duration {
	n.coreMu.Lock()
	defer n.coreMu.Unlock()
	d := DefaultNotifyTimeout
	for _, in := range n.core.insts {
		d = max(d, in.cfg.Notify.Timeout)
	}
	for _, g := range n.core.groupCfg {
		d = max(d, g.Notify.Timeout)
	}
	return d
}

// stopAll is the graceful stop.
func (n *Node) stopAll(ctx context.Context) error {
	n.lockStep()
	n.handle(shutDown{})
	grace := n.core.resignGrace
	n.stopped = true
	n.unlockStep()
	n.mu.Lock()
	n.grace = grace
	n.mu.Unlock()
	n.log.Info("vrrp stopped")
	if err := n.notify.wait(ctx); err != nil {
		return fmt.Errorf("vrrp shutdown: notify scripts still running: %w", err)
	}
	return nil
}

// step runs one input through the core, then the timers that came due,
// and executes the actions; the caller is the goroutine that had the
// input.
func (n *Node) step(in input) {
	n.lockStep()
	defer n.unlockStep()
	if n.stopped {
		return
	}
	n.handle(in)
	n.handle(timersDue{})
	n.rearm()
}

// handle runs one input through the core at the clock's time and executes
// the actions, under the step locks.
func (n *Node) handle(in input) {
	now := n.clock.Now()
	n.exec(now, n.core.handle(now, in))
}

// onTimer runs in the timer's goroutine.
func (n *Node) onTimer() {
	n.lockStep()
	defer n.unlockStep()
	n.armed = time.Time{}
	if n.stopped || n.pendingRx.Load() > 0 {
		// A received packet waits for the step: it goes first (after a
		// stall, an advert that came in time must not lose against the
		// Master_Down_Timer); its step re-arms the timer.
		return
	}
	n.handle(timersDue{})
	n.rearm()
}

// rearm sets the timer for the core's next deadline, only when it moved.
// The delay is taken from the clock now, not from the step's start: the
// actions took time.
func (n *Node) rearm() {
	next := n.core.next()
	if next.Equal(n.armed) {
		return
	}
	n.armed = next
	if next.IsZero() {
		n.timer.Stop()
		return
	}
	n.timer.Reset(max(next.Sub(n.clock.Now()), 0))
}
