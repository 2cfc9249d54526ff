package vrrp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
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
	Runner  Runner       // default: ShellRunner
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
	vipOwner  map[netip.Addr]string
	ownMACs   map[string]bool
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
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vrrp config: %w", err)
	}
	n := &Node{
		log:      opts.Logger,
		clock:    opts.Clock,
		net:      opts.Network,
		runner:   opts.Runner,
		before:   opts.BeforeMaster,
		cfg:      cloneConfig(cfg),
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
	if n.runner == nil {
		n.runner = ShellRunner{}
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

func cloneConfig(c Config) Config {
	c.Instances = slices.Clone(c.Instances)
	c.Scripts = slices.Clone(c.Scripts)
	c.SyncGroups = slices.Clone(c.SyncGroups)
	return c
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
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("vrrp config: %w", err)
	}
	cfg = cloneConfig(cfg)
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
		now := n.clock.Now()
		n.exec(now, n.core.start(now))
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
			n.step(func(now time.Time) []action {
				acts := n.core.linkState(now, name, up)
				if up {
					vips := n.allVIPs()
					for _, in := range n.core.insts {
						if in.cfg.Interface == name {
							n.resolveLocal(in, vips)
						}
					}
				}
				return acts
			})
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
	return d
}

// stopAll is the graceful stop.
func (n *Node) stopAll(ctx context.Context) error {
	n.lockStep()
	now := n.clock.Now()
	n.exec(now, n.core.shutdown(now))
	n.stopped = true
	n.unlockStep()
	n.log.Info("vrrp stopped")
	if err := n.notify.wait(ctx); err != nil {
		return fmt.Errorf("vrrp shutdown: notify scripts still running: %w", err)
	}
	return nil
}

// step runs one input through the core, with the timers that came due,
// and executes the actions; the caller is the goroutine that had the
// input.
func (n *Node) step(input func(now time.Time) []action) {
	n.lockStep()
	defer n.unlockStep()
	if n.stopped {
		return
	}
	now := n.clock.Now()
	if input != nil {
		n.exec(now, input(now))
	}
	n.exec(now, n.core.tick(now))
	n.rearm()
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
	now := n.clock.Now()
	n.exec(now, n.core.tick(now))
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

// prepare opens what cfg needs (VMACs, sockets), learns the interfaces and
// resolves the instances' source addresses.
func (n *Node) prepare(cfg Config) error {
	var vips []netip.Addr
	for _, ic := range cfg.Instances {
		for _, v := range ic.VIPs {
			vips = append(vips, v.Prefix.Addr())
		}
	}
	var opened []func()
	fail := func(err error) error {
		for _, undo := range opened {
			undo()
		}
		return err
	}
	for _, ic := range cfg.Instances {
		ic = ic.withDefaults()
		if ic.UseVMAC && !n.vmacs[ic.VMACInterface] {
			if err := n.net.EnsureVMAC(ic.Interface, ic.VMACInterface, vmacAddr(ic.VRID, ic.is6())); err != nil {
				return fail(fmt.Errorf("vrrp instance %q: vmac %s: %w", ic.Name, ic.VMACInterface, err))
			}
			name := ic.VMACInterface
			n.vmacs[name] = true
			opened = append(opened, func() { n.deleteVMAC(name) })
		}
		k := epKey{ic.Interface, ic.is6()}
		if n.vrrpEPs[k] == nil {
			ep, err := n.openVRRP(k)
			if err != nil {
				return fail(fmt.Errorf("vrrp instance %q: %w", ic.Name, err))
			}
			n.vrrpEPs[k] = ep
			opened = append(opened, func() { ep.close(); delete(n.vrrpEPs, k) })
		}
		for _, v := range ic.VIPs {
			fk := epKey{v.Dev, ic.is6()}
			if n.frameEPs[fk] == nil {
				ep, err := n.openFrames(fk)
				if err != nil {
					return fail(fmt.Errorf("vrrp instance %q: VIP %s: %w", ic.Name, v.Prefix, err))
				}
				n.frameEPs[fk] = ep
				opened = append(opened, func() { ep.close(); delete(n.frameEPs, fk) })
			}
		}
	}
	// Link states first, so that instances start in the right state.
	now := n.clock.Now()
	for _, name := range linkNames(cfg) {
		l, err := n.net.Link(name, nil)
		n.exec(now, n.core.linkState(now, name, err == nil && l.Up))
	}
	n.index(cfg)
	for _, in := range n.core.insts {
		n.resolveLocal(in, vips)
	}
	return nil
}

func linkNames(cfg Config) []string {
	var names []string
	for _, ic := range cfg.Instances {
		names = append(names, ic.Interface)
		for _, t := range ic.TrackInterfaces {
			names = append(names, t.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// index rebuilds the dispatch tables for cfg.
func (n *Node) index(cfg Config) {
	for _, ep := range n.vrrpEPs {
		ep.setInstances(nil)
	}
	n.vipOwner = map[netip.Addr]string{}
	n.ownMACs = map[string]bool{}
	byEP := map[epKey][]InstanceConfig{}
	for _, ic := range cfg.Instances {
		ic = ic.withDefaults()
		k := epKey{ic.Interface, ic.is6()}
		byEP[k] = append(byEP[k], ic)
		for _, v := range ic.VIPs {
			n.vipOwner[v.Prefix.Addr()] = ic.Name
		}
		if ic.UseVMAC {
			n.ownMACs[string(vmacAddr(ic.VRID, ic.is6()))] = true
		}
	}
	for k, ics := range byEP {
		if ep := n.vrrpEPs[k]; ep != nil {
			ep.setInstances(ics)
			n.ownMACs[string(ep.link.MAC)] = true
		}
	}
	for _, ep := range n.frameEPs {
		n.ownMACs[string(ep.link.MAC)] = true
	}
}

// resolveLocal finds the address the instance advertises from.
func (n *Node) resolveLocal(in *instance, exclude []netip.Addr) {
	if in.cfg.UnicastSrc.IsValid() {
		return
	}
	l, err := n.net.Link(in.cfg.Interface, exclude)
	if err != nil {
		n.warn("link:"+in.name(), "vrrp: cannot read interface", "instance", in.name(), "interface", in.cfg.Interface, "err", err)
		return
	}
	a := l.Addr4
	if in.cfg.is6() {
		a = l.Addr6
	}
	n.core.setLocal(in.name(), a)
}

func (n *Node) allVIPs() []netip.Addr {
	var vips []netip.Addr
	for _, in := range n.core.insts {
		for _, v := range in.cfg.VIPs {
			vips = append(vips, v.Prefix.Addr())
		}
	}
	return vips
}

// reconfigure runs on the loop: open what the new config needs first, so
// that a failure changes nothing.
func (n *Node) reconfigure(cfg Config) error {
	if err := n.prepare(cfg); err != nil {
		return err
	}
	now := n.clock.Now()
	n.retired = maps.Clone(n.core.byName)
	acts := n.core.reconfigure(now, cfg)
	vips := n.allVIPs()
	for _, in := range n.core.insts {
		if !in.local.IsValid() {
			n.resolveLocal(in, vips)
		}
	}
	n.exec(now, acts)
	n.retired = nil
	n.closeUnused(cfg)
	n.syncScripts(cfg.Scripts)
	n.rearm()
	n.mu.Lock()
	n.cfg = cfg
	n.mu.Unlock()
	n.log.Info("vrrp reconfigured", "instances", len(cfg.Instances))
	return nil
}

// closeUnused closes the sockets and VMACs cfg does not need.
func (n *Node) closeUnused(cfg Config) {
	need, needF, needV := map[epKey]bool{}, map[epKey]bool{}, map[string]bool{}
	for _, ic := range cfg.Instances {
		ic = ic.withDefaults()
		need[epKey{ic.Interface, ic.is6()}] = true
		for _, v := range ic.VIPs {
			needF[epKey{v.Dev, ic.is6()}] = true
		}
		if ic.UseVMAC {
			needV[ic.VMACInterface] = true
		}
	}
	for k, ep := range n.vrrpEPs {
		if !need[k] {
			ep.close()
			delete(n.vrrpEPs, k)
		}
	}
	for k, ep := range n.frameEPs {
		if !needF[k] {
			ep.close()
			delete(n.frameEPs, k)
		}
	}
	for name := range n.vmacs {
		if !needV[name] {
			n.deleteVMAC(name)
		}
	}
	n.index(cfg)
}

func (n *Node) deleteVMAC(name string) {
	if err := n.net.DeleteVMAC(name); err != nil {
		n.log.Warn("vrrp: removing vmac failed", "interface", name, "err", err)
	}
	delete(n.vmacs, name)
}

// vmacAddr is the VRRP virtual MAC (RFC 5798 7.3).
func vmacAddr(vrid uint8, v6 bool) net.HardwareAddr {
	if v6 {
		return net.HardwareAddr{0, 0, 0x5e, 0, 2, vrid}
	}
	return net.HardwareAddr{0, 0, 0x5e, 0, 1, vrid}
}

// --- inputs ---

// onPacket decodes a VRRP packet and dispatches it by VRID; rejects that
// cannot be tied to an instance count on every instance of the socket.
func (n *Node) onPacket(now time.Time, ep *vrrpEndpoint, data []byte, src, dst netip.Addr, ttl int) []action {
	name := ""
	if len(data) >= 2 {
		name = ep.byVRID[data[1]]
	}
	adv, err := ParseAdvert(data, src, dst)
	if err != nil {
		var pe *ParseError
		reason := RxLength
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		n.rxReject(ep, name, reason, err, src)
		return nil
	}
	if name == "" {
		n.rxReject(ep, "", RxVRID, fmt.Errorf("VRID %d not configured", adv.VRID), src)
		return nil
	}
	return n.core.advert(now, name, rxPacket{Advert: adv, Src: src, Dst: dst, TTL: ttl})
}

// onFrame looks for a claim on one of our VIPs by another station.
func (n *Node) onFrame(now time.Time, data []byte) []action {
	c, ok := parseClaim(data)
	if !ok || n.ownMACs[string(c.MAC)] {
		return nil
	}
	if name, ok := n.vipOwner[c.IP]; ok {
		return n.core.claim(now, name, c.IP)
	}
	return nil
}

func (n *Node) rxReject(ep *vrrpEndpoint, name, reason string, err error, src netip.Addr) {
	names := ep.names
	if name != "" {
		names = []string{name}
	}
	for _, nm := range names {
		n.core.rxError(nm, reason)
	}
	n.log.Debug("vrrp: packet rejected", "interface", ep.key.ifname, "from", src, "reason", reason, "err", err)
}

// --- actions ---

func (n *Node) lookup(name string) *instance {
	if in := n.core.byName[name]; in != nil {
		return in
	}
	return n.retired[name]
}

// exec runs actions, under the step locks.
func (n *Node) exec(now time.Time, acts []action) {
	if n.before != nil {
		for _, a := range acts {
			if a.kind == actTransition && a.to == Master && n.lookup(a.inst) != nil {
				n.coreMu.Unlock() // stepMu still holds the protocol
				n.before(Event{Instance: a.inst, From: a.from, To: a.to, Priority: a.prio, Reason: a.note, At: now})
				n.coreMu.Lock()
			}
		}
	}
	for _, a := range acts {
		in := n.lookup(a.inst)
		if in == nil {
			continue
		}
		switch a.kind {
		case actSendAdvert:
			n.sendAdvert(in, a.prio)
		case actAddVIPs:
			for _, v := range cmpVIPs(a.vips, in.cfg.VIPs) {
				if err := n.net.AddAddr(v); err != nil {
					n.log.Error("vrrp: adding VIP failed", "instance", in.name(), "vip", v.Prefix, "dev", v.Dev, "err", err)
				}
			}
		case actDelVIPs:
			for _, v := range cmpVIPs(a.vips, in.cfg.VIPs) {
				if err := n.net.DelAddr(v); err != nil {
					n.log.Error("vrrp: removing VIP failed", "instance", in.name(), "vip", v.Prefix, "dev", v.Dev, "err", err)
				}
			}
		case actAnnounce:
			n.announce(in, cmpVIPs(a.vips, in.cfg.VIPs), a.count)
		case actProbe:
			n.probe(in)
		case actNotify:
			n.notify.enqueue(in.name(), notifyJobs(in, a.note, a.prio)...)
		case actTransition:
			n.log.Info("vrrp transition", "instance", in.name(), "from", a.from.String(), "to", a.to.String(),
				"reason", a.note, "priority", a.prio)
			n.emit(Event{Instance: in.name(), From: a.from, To: a.to, Priority: a.prio, Reason: a.note, At: now})
		case actOwnerConflict:
			n.log.Error("vrrp configuration error: another router is also the address owner (priority 255); "+
				"lowering our priority until a reload, as keepalived", "instance", in.name(), "other", a.note, "priority", a.prio)
		case actSplitBrain:
			if a.to == Master {
				n.log.Warn("vrrp split brain: another station answers for our VIPs while we are master",
					"instance", in.name(), "vips", in.status().VIPs)
			} else {
				n.log.Info("vrrp split brain healed: re-announcing our VIPs", "instance", in.name())
			}
		}
	}
}

func cmpVIPs(explicit, all []VIP) []VIP {
	if explicit != nil {
		return explicit
	}
	return all
}

func (n *Node) emit(ev Event) {
	for {
		select {
		case n.events <- ev:
			return
		default:
		}
		select {
		case <-n.events:
			n.dropped.Add(1)
		default:
		}
	}
}

// warn logs at most once a minute per key (a failing send at 100 adverts a
// second must not flood the log).
func (n *Node) warn(key, msg string, args ...any) {
	now := n.clock.Now()
	if t, ok := n.warned[key]; ok && now.Sub(t) < time.Minute {
		return
	}
	n.warned[key] = now
	n.log.Warn(msg, args...)
}

func (n *Node) sendAdvert(in *instance, prio uint8) {
	ep := n.vrrpEPs[epKey{in.cfg.Interface, in.cfg.is6()}]
	if ep == nil {
		return
	}
	if !in.local.IsValid() {
		n.resolveLocal(in, n.allVIPs())
		if !in.local.IsValid() {
			n.warn("src:"+in.name(), "vrrp: no source address to advertise from", "instance", in.name(), "interface", in.cfg.Interface)
			return
		}
	}
	dsts := in.cfg.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{MulticastGroup4}
		if in.cfg.is6() {
			dsts[0] = MulticastGroup6
		}
	}
	adv := in.advert(prio)
	for _, dst := range dsts {
		b, err := adv.Marshal(in.local, dst)
		if err == nil {
			err = ep.conn.WritePacket(b, in.local, dst)
		}
		if err != nil {
			n.warn("send:"+in.name(), "vrrp: sending advertisement failed", "instance", in.name(), "to", dst, "err", err)
		}
	}
}

func (n *Node) announce(in *instance, vips []VIP, count int) {
	for range count {
		for _, v := range vips {
			ep := n.frameEPs[epKey{v.Dev, in.cfg.is6()}]
			if ep == nil {
				continue
			}
			ip := v.Prefix.Addr()
			var f []byte
			if ip.Is4() {
				f = garpFrame(ep.link.MAC, ip)
			} else {
				f = unsolicitedNAFrame(ep.link.MAC, ip, ep.link.Router)
			}
			if err := ep.conn.WriteFrame(f); err != nil {
				n.warn("garp:"+in.name(), "vrrp: sending gratuitous ARP/NA failed", "instance", in.name(), "vip", ip, "err", err)
			}
		}
	}
}

func (n *Node) probe(in *instance) {
	for _, v := range in.cfg.VIPs {
		ep := n.frameEPs[epKey{v.Dev, in.cfg.is6()}]
		if ep == nil {
			continue
		}
		ip := v.Prefix.Addr()
		f := arpProbeFrame(ep.link.MAC, ip)
		if ip.Is6() {
			f = nsProbeFrame(ep.link.MAC, ip)
		}
		if err := ep.conn.WriteFrame(f); err != nil {
			n.warn("probe:"+in.name(), "vrrp: sending split-brain probe failed", "instance", in.name(), "vip", ip, "err", err)
		}
	}
}

// --- endpoints ---

type vrrpEndpoint struct {
	key    epKey
	conn   PacketConn
	link   Link
	byVRID map[uint8]string
	names  []string
	stop   chan struct{}
}

func (ep *vrrpEndpoint) setInstances(ics []InstanceConfig) {
	ep.byVRID = map[uint8]string{}
	ep.names = nil
	for _, ic := range ics {
		ep.byVRID[ic.VRID] = ic.Name
		ep.names = append(ep.names, ic.Name)
	}
}

func (ep *vrrpEndpoint) close() {
	close(ep.stop)
	_ = ep.conn.Close()
}

func (n *Node) openVRRP(k epKey) (*vrrpEndpoint, error) {
	l, err := n.net.Link(k.ifname, nil)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", k.ifname, err)
	}
	conn, err := n.net.ListenVRRP(k.ifname, k.v6)
	if err != nil {
		return nil, fmt.Errorf("vrrp socket on %s: %w", k.ifname, err)
	}
	ep := &vrrpEndpoint{key: k, conn: conn, link: l, byVRID: map[uint8]string{}, stop: make(chan struct{})}
	go func() {
		buf := make([]byte, 2*maxAdvertLength)
		for {
			m, src, dst, ttl, err := conn.ReadPacket(buf)
			if err != nil {
				select {
				case <-ep.stop:
				default:
					n.log.Error("vrrp: reading packets stopped", "interface", k.ifname, "err", err)
				}
				return
			}
			n.pendingRx.Add(1)
			n.step(func(now time.Time) []action { return n.onPacket(now, ep, buf[:m], src, dst, ttl) })
			n.pendingRx.Add(-1)
		}
	}()
	return ep, nil
}

type frameEndpoint struct {
	key  epKey
	conn FrameConn
	link Link
	stop chan struct{}
}

func (ep *frameEndpoint) close() {
	close(ep.stop)
	_ = ep.conn.Close()
}

func (n *Node) openFrames(k epKey) (*frameEndpoint, error) {
	l, err := n.net.Link(k.ifname, nil)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", k.ifname, err)
	}
	conn, err := n.net.ListenFrames(k.ifname, k.v6)
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", k.ifname, err)
	}
	ep := &frameEndpoint{key: k, conn: conn, link: l, stop: make(chan struct{})}
	go func() {
		buf := make([]byte, 2048)
		for {
			m, err := conn.ReadFrame(buf)
			if err != nil {
				select {
				case <-ep.stop:
				default:
					n.log.Error("vrrp: reading frames stopped: split-brain detection is off", "interface", k.ifname, "err", err)
				}
				return
			}
			n.step(func(now time.Time) []action { return n.onFrame(now, buf[:m]) })
		}
	}()
	return ep, nil
}

// --- track scripts ---

type scriptTask struct {
	cfg    ScriptConfig
	cancel context.CancelFunc
}

// syncScripts runs the scripts of scs (restarting changed ones) and stops
// the others.
func (n *Node) syncScripts(scs []ScriptConfig) {
	want := map[string]ScriptConfig{}
	for _, sc := range scs {
		want[sc.Name] = sc.withDefaults()
	}
	for name, t := range n.scripts {
		if w, ok := want[name]; !ok || w != t.cfg {
			t.cancel()
			delete(n.scripts, name)
		}
	}
	for name, sc := range want {
		if n.scripts[name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(n.drvCtx)
		n.scripts[name] = &scriptTask{cfg: sc, cancel: cancel}
		go n.runScript(ctx, sc)
	}
}

func (n *Node) runScript(ctx context.Context, sc ScriptConfig) {
	wake := make(chan struct{}, 1)
	t := n.clock.AfterFunc(time.Hour, func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	t.Stop()
	defer releaseTimer(t)
	for {
		rctx, cancel := context.WithTimeout(ctx, sc.Timeout)
		err := n.runner.Run(rctx, sc.Script)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Debug("vrrp: track script failed", "script", sc.Name, "err", err)
		}
		n.step(func(now time.Time) []action {
			if t := n.scripts[sc.Name]; t == nil || t.cfg.Script != sc.Script {
				return nil // replaced by a reload
			}
			return n.core.scriptResult(now, sc.Name, err == nil)
		})
		select {
		case <-wake: // a late call of the last arming
		default:
		}
		t.Reset(sc.Interval)
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// releaseTimer stops t and frees what it holds (a timerfd).
func releaseTimer(t Timer) {
	t.Stop()
	if c, ok := t.(io.Closer); ok {
		_ = c.Close()
	}
}

// --- notify ---

type notifyJob struct {
	instance string
	script   string
	args     []string
	timeout  time.Duration
}

func notifyJobs(in *instance, note string, prio uint8) []notifyJob {
	nc := in.cfg.Notify
	var script string
	switch note {
	case "MASTER":
		script = nc.Master
	case "BACKUP":
		script = nc.Backup
	case "FAULT", "SPLIT_BRAIN":
		script = nc.Fault
	case "STOP":
		script = nc.Stop
	}
	var jobs []notifyJob
	if script != "" {
		jobs = append(jobs, notifyJob{in.name(), script, nil, nc.Timeout})
	}
	if nc.Generic != "" && note != "SPLIT_BRAIN" {
		jobs = append(jobs, notifyJob{in.name(), nc.Generic, []string{"INSTANCE", in.name(), note, fmt.Sprint(prio)}, nc.Timeout})
	}
	return jobs
}

// notifier runs notify scripts in order per instance, off the protocol
// loop: enqueue never blocks.
type notifier struct {
	run Runner
	log *slog.Logger

	mu     sync.Mutex
	queues map[string][]notifyJob
	idle   *sync.Cond
	busy   int // instances with a running worker
}

func newNotifier(run Runner, log *slog.Logger) *notifier {
	nt := &notifier{run: run, log: log, queues: map[string][]notifyJob{}}
	nt.idle = sync.NewCond(&nt.mu)
	return nt
}

func (nt *notifier) enqueue(inst string, jobs ...notifyJob) {
	if len(jobs) == 0 {
		return
	}
	nt.mu.Lock()
	defer nt.mu.Unlock()
	q, running := nt.queues[inst]
	nt.queues[inst] = append(q, jobs...)
	if !running {
		nt.busy++
		go nt.work(inst)
	}
}

func (nt *notifier) work(inst string) {
	for {
		nt.mu.Lock()
		q := nt.queues[inst]
		if len(q) == 0 {
			delete(nt.queues, inst)
			nt.busy--
			nt.idle.Broadcast()
			nt.mu.Unlock()
			return
		}
		j := q[0]
		nt.queues[inst] = q[1:]
		nt.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
		err := nt.run.Run(ctx, j.script, j.args...)
		cancel()
		if err != nil {
			nt.log.Warn("vrrp: notify script failed", "instance", inst, "err", err)
		}
	}
}

// wait returns when no notify script runs or is queued, or ctx ends.
func (nt *notifier) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		nt.mu.Lock()
		for nt.busy > 0 {
			nt.idle.Wait()
		}
		nt.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
