package vrrp

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The protocol core: every instance's state machine (RFC 5798 section 6.4
// with keepalived's FAULT, preempt and sync-group semantics), the tracking
// arithmetic and the split-brain rounds. It is pure: inputs are method
// calls carrying the time, outputs are actions; it starts no goroutine,
// never sleeps and does no I/O. The Node owns one core and is its only
// caller.

type actionKind uint8

const (
	actSendAdvert    actionKind = iota + 1 // send an advertisement with priority prio
	actAddVIPs                             // add vips (nil: all of the instance's)
	actDelVIPs                             // remove vips (nil: all of the instance's)
	actAnnounce                            // count GARPs / unsolicited NAs for each VIP (vips nil: all)
	actProbe                               // one ARP / NS probe for each VIP
	actNotify                              // run the notify scripts for note (MASTER, BACKUP, FAULT, STOP, DELETED, SPLIT_BRAIN)
	actTransition                          // state changed from -> to for reason note
	actSplitBrain                          // split brain detected (to == Master) or healed (to == Backup: "the other yielded")
	actOwnerConflict                       // another router (note) is also the address owner: our priority drops to prio
)

var actionNames = [...]string{actSendAdvert: "advert", actAddVIPs: "add-vips", actDelVIPs: "del-vips", actAnnounce: "announce",
	actProbe: "probe", actNotify: "notify", actTransition: "transition", actSplitBrain: "split-brain",
	actOwnerConflict: "owner-conflict"}

// action is one thing the Node must do, in order.
type action struct {
	kind  actionKind
	inst  string
	prio  uint8
	from  State
	to    State
	note  string
	count int
	vips  []VIP
}

func (a action) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", a.inst, actionNames[a.kind])
	switch a.kind {
	case actSendAdvert:
		fmt.Fprintf(&b, " prio=%d", a.prio)
	case actAnnounce:
		fmt.Fprintf(&b, " x%d", a.count)
	case actNotify:
		fmt.Fprintf(&b, " %s prio=%d", a.note, a.prio)
	case actTransition:
		fmt.Fprintf(&b, " %s->%s (%s) prio=%d", a.from, a.to, a.note, a.prio)
	case actOwnerConflict:
		fmt.Fprintf(&b, " prio=%d from %s", a.prio, a.note)
	case actSplitBrain:
		if a.to == Master {
			b.WriteString(" detected")
		} else {
			b.WriteString(" healed")
		}
	}
	if a.vips != nil {
		var s []string
		for _, v := range a.vips {
			s = append(s, v.Prefix.String())
		}
		fmt.Fprintf(&b, " [%s]", strings.Join(s, " "))
	}
	return b.String()
}

// Transition reasons (Event.Reason).
const (
	ReasonStartup        = "startup"         // leaving Init
	ReasonMasterDown     = "master_down"     // Master_Down_Timer expired
	ReasonPriorityZero   = "priority_zero"   // the master resigned (priority 0)
	ReasonPreempt        = "preempt"         // took over from a lower-priority master
	ReasonHigherPriority = "higher_priority" // a master heard a better master
	ReasonTracking       = "tracking"        // a tracked interface or script
	ReasonSyncGroup      = "sync_group"      // followed another member of its sync group
	ReasonShutdown       = "shutdown"        // Node shutdown
	ReasonRemoved        = "removed"         // removed or replaced by Reconfigure
)

// rxPacket is a decoded advertisement with what the IP layer told.
type rxPacket struct {
	Advert
	Src, Dst netip.Addr
	TTL      int
}

// counters are an instance's statistics.
type counters struct {
	advertsSent, advertsReceived uint64
	prioZeroSent, prioZeroRecv   uint64
	transitions, becameMaster    uint64
	splitBrains                  uint64
	rxErrors                     map[string]uint64
}

type announceItem struct {
	at    time.Time
	count int
}

// instance is the protocol state of one virtual router.
type instance struct {
	cfg   InstanceConfig // defaults filled in
	group string
	local netip.Addr // our advert source: tie-break and own-packet filter
	auth  [authDataLen]byte

	state    State
	since    time.Time
	effPrio  uint8
	ownFault bool // from tracking
	faults   []string
	// ownerConflict: another router advertised priority 255 while we,
	// the configured address owner, were master; our priority stays 254
	// until a reload (keepalived's "both configured as address owner").
	ownerConflict bool

	masterAdverInt time.Duration
	masterDownAt   time.Time // Backup: the Master_Down_Timer
	downReason     string
	advertAt       time.Time // Master: the Adver_Timer
	preemptAt      time.Time // preempt_delay running since the first lower-priority advert
	masterAddr     netip.Addr
	masterPrio     uint8

	announces     []announceItem // pending GARP/NA (sorted)
	refreshAt     time.Time
	lowerAnnounce time.Time // earliest next re-announcement on a lower-priority advert

	// Split-brain rounds: a probe, then the window until roundEnd during
	// which a foreign claim on a VIP is evidence.
	probeAt    time.Time
	roundStart time.Time
	roundEnd   time.Time
	evidence   bool
	splitBrain bool

	stats counters
}

// scriptState follows a track script's results with fall and rise.
type scriptState struct {
	cfg    ScriptConfig
	known  bool
	good   bool
	streak int // consecutive results contradicting good
}

// observe records one run and reports whether the tracked state changed.
func (s *scriptState) observe(ok bool) bool {
	if !s.known {
		s.known, s.good, s.streak = true, ok, 0
		return true
	}
	if ok == s.good {
		s.streak = 0
		return false
	}
	s.streak++
	need := s.cfg.Fall
	if ok {
		need = s.cfg.Rise
	}
	if s.streak < need {
		return false
	}
	s.good, s.streak = ok, 0
	return true
}

type core struct {
	insts   []*instance
	byName  map[string]*instance
	groups  map[string][]*instance
	scripts map[string]*scriptState
	links   map[string]bool // interface up; absent: unknown, taken as up
	syncing bool
}

func newCore(cfg Config) *core {
	c := &core{byName: map[string]*instance{}, groups: map[string][]*instance{}, scripts: map[string]*scriptState{}, links: map[string]bool{}}
	c.setScripts(cfg.Scripts)
	for _, ic := range cfg.Instances {
		c.addInstance(ic)
	}
	c.setGroups(cfg.SyncGroups)
	return c
}

func (c *core) setScripts(scs []ScriptConfig) {
	old := c.scripts
	c.scripts = map[string]*scriptState{}
	for _, sc := range scs {
		sc = sc.withDefaults()
		if s, ok := old[sc.Name]; ok && s.cfg.Script == sc.Script {
			s.cfg = sc // keep the result across a reload
			c.scripts[sc.Name] = s
			continue
		}
		c.scripts[sc.Name] = &scriptState{cfg: sc}
	}
}

func (c *core) setGroups(gs []SyncGroupConfig) {
	c.groups = map[string][]*instance{}
	for _, in := range c.insts {
		in.group = ""
	}
	for _, g := range gs {
		for _, n := range g.Instances {
			if in := c.byName[n]; in != nil {
				in.group = g.Name
				c.groups[g.Name] = append(c.groups[g.Name], in)
			}
		}
	}
}

func (c *core) addInstance(ic InstanceConfig) *instance {
	in := &instance{state: Init}
	in.setConfig(ic)
	in.stats.rxErrors = map[string]uint64{}
	for _, r := range RxErrorReasons {
		in.stats.rxErrors[r] = 0
	}
	c.insts = append(c.insts, in)
	c.byName[in.cfg.Name] = in
	return in
}

func (in *instance) setConfig(ic InstanceConfig) {
	in.cfg = ic.withDefaults()
	in.ownerConflict = false // a reload gives the owner its 255 back (retrack)
	in.auth = [authDataLen]byte{}
	copy(in.auth[:], in.cfg.AuthPass)
	if in.cfg.UnicastSrc.IsValid() {
		in.local = in.cfg.UnicastSrc
	}
	if in.effPrio == 0 {
		in.effPrio = in.cfg.Priority
	}
	if in.masterAdverInt == 0 || in.state != Backup || in.cfg.Version == 2 {
		in.masterAdverInt = in.cfg.AdvertInterval
	}
}

func (in *instance) name() string { return in.cfg.Name }

// skew is Skew_Time (RFC 5798 6.1, RFC 3768 6.1), computed as keepalived
// does: whole centiseconds in v3.
func (in *instance) skew() time.Duration {
	p := time.Duration(256 - int(in.effPrio))
	if in.cfg.Version == 2 {
		return p * time.Second / 256
	}
	return p * (in.masterAdverInt / centisecond) / 256 * centisecond
}

// masterDownInterval is Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
func (in *instance) masterDownInterval() time.Duration { return 3*in.masterAdverInt + in.skew() }

// probeWindow is how long a split-brain round collects evidence: a third of
// the interval, so that a heal is seen within one interval.
func (in *instance) probeWindow() time.Duration {
	return max(in.cfg.AdvertInterval/3, 2*time.Millisecond)
}

// advert builds the advertisement the instance sends with priority prio.
func (in *instance) advert(prio uint8) Advert {
	a := Advert{Version: in.cfg.Version, VRID: in.cfg.VRID, Priority: prio, Interval: in.cfg.AdvertInterval}
	for _, v := range in.cfg.VIPs {
		a.Addrs = append(a.Addrs, v.Prefix.Addr())
	}
	if in.cfg.Version == 2 && in.cfg.AuthType == AuthPass {
		a.AuthType = authTypeSimple
		a.AuthData = in.auth
	}
	return a
}

// setLocal records the address the instance sends from (for the
// tie-break on equal priority and to ignore its own packets).
func (c *core) setLocal(name string, a netip.Addr) {
	if in := c.byName[name]; in != nil && !in.cfg.UnicastSrc.IsValid() {
		in.local = a
	}
}

// --- transitions ---

func (c *core) transition(now time.Time, in *instance, to State, reason string) []action {
	from := in.state
	in.state, in.since = to, now
	in.stats.transitions++
	return []action{{kind: actTransition, inst: in.name(), from: from, to: to, note: reason, prio: in.effPrio}}
}

func (c *core) enterMaster(now time.Time, in *instance, reason string) []action {
	in.stats.becameMaster++
	in.stats.advertsSent++
	acts := []action{{kind: actSendAdvert, inst: in.name(), prio: in.effPrio}, {kind: actAddVIPs, inst: in.name()}}
	in.masterDownAt, in.preemptAt, in.downReason = time.Time{}, time.Time{}, ""
	in.advertAt = now.Add(in.cfg.AdvertInterval)
	in.masterAddr, in.masterPrio = in.local, in.effPrio
	in.masterAdverInt = in.cfg.AdvertInterval
	in.announces = nil
	in.scheduleBurst(now, in.cfg.GARP.MasterRepeat)
	if d := in.cfg.GARP.MasterDelay; d > 0 {
		in.scheduleBurst(now.Add(d), in.cfg.GARP.MasterRepeat)
	}
	in.refreshAt = time.Time{}
	if r := in.cfg.GARP.MasterRefresh; r > 0 {
		in.refreshAt = now.Add(r)
	}
	acts = append(acts, in.dueAnnounces(now)...)
	in.lowerAnnounce = time.Time{}
	in.roundEnd, in.evidence, in.splitBrain = time.Time{}, false, false
	in.probeAt = time.Time{}
	if p := in.cfg.SplitBrainProbeInterval; p > 0 {
		in.probeAt = now.Add(p)
	}
	acts = append(acts, action{kind: actNotify, inst: in.name(), note: "MASTER", prio: in.effPrio})
	from := in.state
	acts = append(acts, c.transition(now, in, Master, reason)...)
	return append(acts, c.followGroup(now, in, from)...)
}

// leaveMaster stops what only a master does.
func (in *instance) leaveMaster() []action {
	in.advertAt, in.refreshAt, in.probeAt, in.roundEnd = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	in.announces, in.evidence, in.splitBrain = nil, false, false
	return []action{{kind: actDelVIPs, inst: in.name()}}
}

// enterBackup makes the instance a backup waiting Master_Down_Interval
// computed with masterInt.
func (c *core) enterBackup(now time.Time, in *instance, masterInt time.Duration, reason string) []action {
	var acts []action
	from := in.state
	if from == Master {
		acts = in.leaveMaster()
	}
	in.masterAdverInt = masterInt
	in.masterDownAt, in.downReason = now.Add(in.masterDownInterval()), ReasonMasterDown
	in.preemptAt = time.Time{}
	acts = append(acts, action{kind: actNotify, inst: in.name(), note: "BACKUP", prio: in.effPrio})
	acts = append(acts, c.transition(now, in, Backup, reason)...)
	return append(acts, c.followGroup(now, in, from)...)
}

func (c *core) enterFault(now time.Time, in *instance, reason string) []action {
	var acts []action
	from := in.state
	if from == Master {
		in.stats.advertsSent++
		in.stats.prioZeroSent++
		acts = append(acts, action{kind: actSendAdvert, inst: in.name(), prio: 0})
		acts = append(acts, in.leaveMaster()...)
	}
	in.masterDownAt, in.preemptAt = time.Time{}, time.Time{}
	acts = append(acts, action{kind: actNotify, inst: in.name(), note: "FAULT", prio: in.effPrio})
	acts = append(acts, c.transition(now, in, Fault, reason)...)
	return append(acts, c.followGroup(now, in, from)...)
}

// leaveFault (and leaving Init): back to backup; the address owner takes
// over after one interval plus skew, as keepalived.
func (c *core) comeUp(now time.Time, in *instance, reason string) []action {
	acts := c.enterBackup(now, in, in.cfg.AdvertInterval, reason)
	if in.state == Backup && in.cfg.Priority == priorityOwner {
		in.masterDownAt = now.Add(in.cfg.AdvertInterval + in.skew())
	}
	return acts
}

// followGroup makes the other members of in's sync group follow its move
// from the state from (keepalived's vrrp_sync_master, vrrp_sync_backup and
// group fault). Leaving FAULT needs no following: retrack brings up every
// member once no member has a fault of its own.
func (c *core) followGroup(now time.Time, in *instance, from State) []action {
	if in.group == "" || c.syncing {
		return nil
	}
	c.syncing = true
	defer func() { c.syncing = false }()
	var acts []action
	for _, o := range c.groups[in.group] {
		switch {
		case o == in:
		case in.state == Master && o.state == Backup:
			acts = append(acts, c.enterMaster(now, o, ReasonSyncGroup)...)
		case in.state == Backup && from == Master && o.state == Master:
			acts = append(acts, c.enterBackup(now, o, o.cfg.AdvertInterval, ReasonSyncGroup)...)
		case in.state == Fault && (o.state == Backup || o.state == Master):
			acts = append(acts, c.enterFault(now, o, ReasonSyncGroup)...)
		}
	}
	return acts
}

// groupHasFault reports whether a member of in's group has its own fault.
func (c *core) groupHasFault(in *instance) bool {
	if in.group == "" {
		return false
	}
	for _, o := range c.groups[in.group] {
		if o.ownFault {
			return true
		}
	}
	return false
}

// --- inputs ---

// start takes every instance out of Init once its tracking is known.
func (c *core) start(now time.Time) []action {
	var acts []action
	for _, in := range c.insts {
		acts = append(acts, c.startInstance(now, in)...)
	}
	return acts
}

func (c *core) startInstance(now time.Time, in *instance) []action {
	if in.state != Init {
		return nil
	}
	var acts []action
	if in.since.IsZero() {
		in.since = now
		if in.cfg.Priority != priorityOwner {
			// A VIP left by a killed run must not linger on a backup.
			acts = append(acts, action{kind: actDelVIPs, inst: in.name()})
		}
	}
	if !c.trackingKnown(in) {
		return acts
	}
	c.evalTracking(in)
	if in.ownFault {
		return append(acts, c.enterFault(now, in, ReasonTracking)...)
	}
	if c.groupHasFault(in) {
		return append(acts, c.enterFault(now, in, ReasonSyncGroup)...)
	}
	if in.cfg.Priority == priorityOwner {
		return append(acts, c.enterMaster(now, in, ReasonStartup)...) // RFC 5798 6.4.1
	}
	acts = append(acts, c.enterBackup(now, in, in.cfg.AdvertInterval, ReasonStartup)...)
	if in.state == Backup && in.cfg.InitialState == Master {
		// keepalived 2.x: one interval plus the smallest skew.
		in.masterDownAt = now.Add(in.cfg.AdvertInterval + in.skewFor(254))
	}
	return acts
}

func (in *instance) skewFor(prio uint8) time.Duration {
	saved := in.effPrio
	in.effPrio = prio
	defer func() { in.effPrio = saved }()
	return in.skew()
}

func (c *core) trackingKnown(in *instance) bool {
	for _, ts := range in.cfg.TrackScripts {
		if s := c.scripts[ts.Name]; s != nil && !s.known {
			return false
		}
	}
	return true
}

// evalTracking recomputes in's own fault and effective priority.
func (c *core) evalTracking(in *instance) {
	var faults []string
	weight := 0
	if up, ok := c.links[in.cfg.Interface]; ok && !up {
		faults = append(faults, "interface "+in.cfg.Interface+" down")
	}
	for _, ti := range in.cfg.TrackInterfaces {
		up, ok := c.links[ti.Name]
		up = up || !ok
		switch {
		case ti.Weight == 0 && !up:
			faults = append(faults, "tracked interface "+ti.Name+" down")
		case ti.Weight > 0 && up, ti.Weight < 0 && !up:
			weight += ti.Weight
		}
	}
	for _, ts := range in.cfg.TrackScripts {
		s := c.scripts[ts.Name]
		if s == nil || !s.known {
			continue
		}
		w := s.cfg.Weight
		if ts.Weight != nil {
			w = *ts.Weight
		}
		switch {
		case w == 0 && !s.good:
			faults = append(faults, "script "+ts.Name+" failed")
		case w > 0 && s.good, w < 0 && !s.good:
			weight += w
		}
	}
	in.faults, in.ownFault = faults, len(faults) > 0
	if in.cfg.Priority == priorityOwner {
		in.effPrio = priorityOwner
		if in.ownerConflict {
			in.effPrio = priorityOwner - 1
		}
		return
	}
	in.effPrio = uint8(min(max(int(in.cfg.Priority)+weight, 1), 254))
}

// retrack re-evaluates tracking for every instance and applies changes.
func (c *core) retrack(now time.Time) []action {
	for _, in := range c.insts {
		if in.state != Init {
			c.evalTracking(in)
		}
	}
	var acts []action
	for _, in := range c.insts {
		switch {
		case in.state == Init:
			if !in.since.IsZero() {
				acts = append(acts, c.startInstance(now, in)...)
			}
		case in.ownFault && in.state != Fault:
			acts = append(acts, c.enterFault(now, in, ReasonTracking)...)
		case !in.ownFault && in.state == Fault && !c.groupHasFault(in):
			acts = append(acts, c.comeUp(now, in, ReasonTracking)...)
		}
	}
	return acts
}

// scriptResult records one run of a track script.
func (c *core) scriptResult(now time.Time, name string, ok bool) []action {
	s := c.scripts[name]
	if s == nil || !s.observe(ok) {
		return nil
	}
	return c.retrack(now)
}

// linkState records whether an interface is up (IFF_UP and IFF_RUNNING).
func (c *core) linkState(now time.Time, ifname string, up bool) []action {
	if old, ok := c.links[ifname]; ok && old == up {
		return nil
	}
	c.links[ifname] = up
	return c.retrack(now)
}

// rxError counts a packet rejected before it reached an instance.
func (c *core) rxError(name, reason string) {
	if in := c.byName[name]; in != nil {
		in.stats.rxErrors[reason]++
	}
}

// check applies the receive checks of RFC 5798 7.1 that need the
// instance's configuration; "" means accepted. As keepalived 2.x, the TTL
// / hop limit must be 255 only in multicast mode: unicast peers may be
// routed (the source must then be a configured peer).
func (in *instance) check(p *rxPacket) string {
	switch {
	case p.TTL != vrrpTTL && len(in.cfg.UnicastPeers) == 0:
		return RxTTL
	case p.Version != in.cfg.Version:
		return RxVersion
	}
	if in.cfg.Version == 2 {
		want := uint8(authTypeNone)
		if in.cfg.AuthType == AuthPass {
			want = authTypeSimple
		}
		if p.AuthType != want || (want == authTypeSimple && p.AuthData != in.auth) {
			return RxAuth
		}
		if p.Interval != in.cfg.AdvertInterval {
			return RxInterval // RFC 3768 7.1: MUST discard
		}
	}
	if len(p.Addrs) != len(in.cfg.VIPs) {
		return RxAddrList
	}
	for _, v := range in.cfg.VIPs {
		if !slices.Contains(p.Addrs, v.Prefix.Addr()) {
			return RxAddrList
		}
	}
	if len(in.cfg.UnicastPeers) > 0 && !slices.Contains(in.cfg.UnicastPeers, p.Src) {
		return RxPeer
	}
	return ""
}

// advert processes a received advertisement for instance name.
func (c *core) advert(now time.Time, name string, p rxPacket) []action {
	in := c.byName[name]
	if in == nil || p.Src == in.local {
		return nil // our own, looped back
	}
	if r := in.check(&p); r != "" {
		in.stats.rxErrors[r]++
		return nil
	}
	in.stats.advertsReceived++
	if p.Priority == 0 {
		in.stats.prioZeroRecv++
	}
	switch in.state {
	case Backup:
		return c.backupRx(now, in, &p)
	case Master:
		return c.masterRx(now, in, &p)
	}
	return nil
}

func (c *core) backupRx(now time.Time, in *instance, p *rxPacket) []action {
	switch {
	case p.Priority == 0:
		// RFC 5798 6.4.2: the master resigned; take over after Skew_Time.
		in.masterDownAt, in.downReason = now.Add(in.skew()), ReasonPriorityZero
	case in.cfg.NoPreempt || p.Priority >= in.effPrio ||
		(in.cfg.PreemptDelay > 0 && (in.preemptAt.IsZero() || now.Before(in.preemptAt))):
		if in.cfg.Version == 3 {
			in.masterAdverInt = p.Interval
		}
		in.masterDownAt, in.downReason = now.Add(in.masterDownInterval()), ReasonMasterDown
		in.masterAddr, in.masterPrio = p.Src, p.Priority
		if in.cfg.PreemptDelay > 0 {
			if p.Priority >= in.effPrio {
				in.preemptAt = time.Time{}
			} else if in.preemptAt.IsZero() {
				in.preemptAt = now.Add(in.cfg.PreemptDelay)
			}
		}
	default:
		// A lower-priority master and we preempt: ignore it, the
		// Master_Down_Timer runs out.
		in.masterAddr, in.masterPrio = p.Src, p.Priority
		in.downReason = ReasonPreempt
	}
	return nil
}

func (c *core) masterRx(now time.Time, in *instance, p *rxPacket) []action {
	if p.Priority == 0 {
		// RFC 5798 6.4.3: answer at once so backups do not take over.
		in.stats.advertsSent++
		in.advertAt = now.Add(in.cfg.AdvertInterval)
		return []action{{kind: actSendAdvert, inst: in.name(), prio: in.effPrio}}
	}
	var acts []action
	if p.Priority == priorityOwner && in.effPrio == priorityOwner {
		// Another router is also configured as the address owner. RFC
		// 5798 7.1 has the owner discard every advert, which leaves two
		// masters for good; keepalived calls it a configuration error,
		// lowers its own priority to 254 and yields. So do we, until a
		// reload.
		in.ownerConflict = true
		c.evalTracking(in) // 254 from now on
		acts = append(acts, action{kind: actOwnerConflict, inst: in.name(), prio: in.effPrio, note: p.Src.String()})
	}
	cmp := p.Src.Compare(in.local)
	if p.Priority > in.effPrio || (p.Priority == in.effPrio && cmp > 0) {
		in.masterAddr, in.masterPrio = p.Src, p.Priority
		mi := in.cfg.AdvertInterval
		if in.cfg.Version == 3 {
			mi = p.Interval
		}
		return append(acts, c.enterBackup(now, in, mi, ReasonHigherPriority)...)
	}
	if p.Priority == in.effPrio && cmp == 0 {
		return nil
	}
	// Another master with lower priority: advertise now so that it yields
	// (keepalived's "forcing new election"), and re-announce our VIPs,
	// since clients may have followed it; at most once per max(1s,
	// interval) so that a peer that cannot hear us is no ARP storm.
	in.stats.advertsSent++
	acts = append(acts, action{kind: actSendAdvert, inst: in.name(), prio: in.effPrio})
	if n := in.cfg.GARP.LowerPrioRepeat; n > 0 && !now.Before(in.lowerAnnounce) {
		in.lowerAnnounce = now.Add(max(time.Second, in.cfg.AdvertInterval))
		in.scheduleBurst(now, n)
		acts = append(acts, in.dueAnnounces(now)...)
	}
	return acts
}

// claim records that station mac (not ours) uses ip: from a GARP, an ARP
// reply to a probe, or an NA. For a master holding ip it is evidence of a
// split brain; it starts a probe round if none runs. The claim that starts
// a round does not count: a legitimate new master's GARP can arrive just
// before its advertisement makes us yield.
func (c *core) claim(now time.Time, name string, ip netip.Addr) []action {
	in := c.byName[name]
	if in == nil || in.state != Master || !in.hasVIP(ip) {
		return nil
	}
	if !in.roundEnd.IsZero() {
		in.evidence = true
		return nil
	}
	return in.startRound(now)
}

func (in *instance) hasVIP(ip netip.Addr) bool {
	for _, v := range in.cfg.VIPs {
		if v.Prefix.Addr() == ip {
			return true
		}
	}
	return false
}

func (in *instance) startRound(now time.Time) []action {
	in.roundStart, in.roundEnd, in.evidence = now, now.Add(in.probeWindow()), false
	return []action{{kind: actProbe, inst: in.name()}}
}

// endRound judges a probe round.
func (c *core) endRound(now time.Time, in *instance) []action {
	var acts []action
	switch {
	case in.evidence && !in.splitBrain:
		in.splitBrain = true
		in.stats.splitBrains++
		acts = append(acts, action{kind: actSplitBrain, inst: in.name(), to: Master},
			action{kind: actNotify, inst: in.name(), note: "SPLIT_BRAIN", prio: in.effPrio})
	case !in.evidence && in.splitBrain:
		in.splitBrain = false
		acts = append(acts, action{kind: actSplitBrain, inst: in.name(), to: Backup})
		n := in.cfg.GARP.LowerPrioRepeat
		if n <= 0 {
			n = in.cfg.GARP.MasterRepeat
		}
		in.scheduleBurst(now, n)
		acts = append(acts, in.dueAnnounces(now)...)
	}
	next := in.roundStart.Add(in.cfg.SplitBrainProbeInterval)
	if in.splitBrain {
		next = in.roundEnd // back to back until it heals
	}
	in.roundEnd, in.evidence = time.Time{}, false
	in.probeAt = time.Time{}
	if in.splitBrain || in.cfg.SplitBrainProbeInterval > 0 {
		in.probeAt = next
	}
	return acts
}

// scheduleBurst queues a burst of n announcements starting at start,
// spaced by garp_interval (gna_interval for IPv6).
func (in *instance) scheduleBurst(start time.Time, n int) {
	iv := in.cfg.GARP.Interval
	if in.cfg.is6() {
		iv = in.cfg.GARP.NAInterval
	}
	if n <= 0 {
		return
	}
	if iv <= 0 {
		in.announces = insertAnnounce(in.announces, announceItem{start, n})
		return
	}
	for k := range n {
		in.announces = insertAnnounce(in.announces, announceItem{start.Add(time.Duration(k) * iv), 1})
	}
}

// dueAnnounces pops the announcements due at now (bursts and refresh) into
// one action.
func (in *instance) dueAnnounces(now time.Time) []action {
	n := 0
	for len(in.announces) > 0 && !now.Before(in.announces[0].at) {
		n += in.announces[0].count
		in.announces = in.announces[1:]
	}
	if !in.refreshAt.IsZero() && !now.Before(in.refreshAt) {
		n += in.cfg.GARP.MasterRefreshRepeat
		in.refreshAt = now.Add(in.cfg.GARP.MasterRefresh)
	}
	if n == 0 {
		return nil
	}
	return []action{{kind: actAnnounce, inst: in.name(), count: n}}
}

func insertAnnounce(q []announceItem, it announceItem) []announceItem {
	i, _ := slices.BinarySearchFunc(q, it, func(a, b announceItem) int { return a.at.Compare(b.at) })
	return slices.Insert(q, i, it)
}

// tick fires every timer due at now.
func (c *core) tick(now time.Time) []action {
	var acts []action
	for _, in := range c.insts {
		acts = append(acts, c.tickInstance(now, in)...)
	}
	return acts
}

func (c *core) tickInstance(now time.Time, in *instance) []action {
	var acts []action
	switch in.state {
	case Backup:
		if !in.masterDownAt.IsZero() && !now.Before(in.masterDownAt) {
			acts = append(acts, c.enterMaster(now, in, in.downReason)...)
		}
	case Master:
		if !now.Before(in.advertAt) {
			in.stats.advertsSent++
			acts = append(acts, action{kind: actSendAdvert, inst: in.name(), prio: in.effPrio})
			next := in.advertAt.Add(in.cfg.AdvertInterval)
			if !next.After(now) {
				next = now.Add(in.cfg.AdvertInterval) // late: keep the interval, no burst
			}
			in.advertAt = next
		}
		acts = append(acts, in.dueAnnounces(now)...)
		if !in.roundEnd.IsZero() && !now.Before(in.roundEnd) {
			acts = append(acts, c.endRound(now, in)...)
		}
		if in.roundEnd.IsZero() && !in.probeAt.IsZero() && !now.Before(in.probeAt) {
			acts = append(acts, in.startRound(now)...)
		}
	}
	return acts
}

// next is the earliest pending timer, zero if none.
func (c *core) next() time.Time {
	var t time.Time
	consider := func(x time.Time) {
		if !x.IsZero() && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	for _, in := range c.insts {
		switch in.state {
		case Backup:
			consider(in.masterDownAt)
		case Master:
			consider(in.advertAt)
			if len(in.announces) > 0 {
				consider(in.announces[0].at)
			}
			consider(in.refreshAt)
			if in.roundEnd.IsZero() {
				consider(in.probeAt)
			} else {
				consider(in.roundEnd)
			}
		}
	}
	return t
}

// stop takes an instance down for good: a master resigns with priority 0
// and removes its VIPs; notify note (STOP or DELETED) runs.
func (c *core) stop(now time.Time, in *instance, note, reason string) []action {
	var acts []action
	if in.state == Master {
		in.stats.advertsSent++
		in.stats.prioZeroSent++
		acts = append(acts, action{kind: actSendAdvert, inst: in.name(), prio: 0})
		acts = append(acts, in.leaveMaster()...)
	}
	in.masterDownAt, in.preemptAt = time.Time{}, time.Time{}
	acts = append(acts, action{kind: actNotify, inst: in.name(), note: note, prio: in.effPrio})
	if in.state != Init {
		acts = append(acts, c.transition(now, in, Init, reason)...)
	}
	return acts
}

// shutdown stops every instance (Node.Shutdown).
func (c *core) shutdown(now time.Time) []action {
	var acts []action
	c.syncing = true // members stop one by one, none follows another
	for _, in := range c.insts {
		acts = append(acts, c.stop(now, in, "STOP", ReasonShutdown)...)
	}
	c.syncing = false
	return acts
}

// sameRouter reports whether a and b are the same virtual router on the
// wire, so that a reload can keep the instance's state.
func sameRouter(a, b InstanceConfig) bool {
	a, b = a.withDefaults(), b.withDefaults()
	return a.Interface == b.Interface && a.VRID == b.VRID && a.Version == b.Version && a.is6() == b.is6() &&
		a.UnicastSrc == b.UnicastSrc && a.UseVMAC == b.UseVMAC && a.VMACInterface == b.VMACInterface
}

// reconfigure applies a new configuration with keepalived's reload
// semantics: an instance that is the same router keeps its state and
// timers (VIP changes are applied to a master); a removed one stops as
// DELETED; a new or re-identified one starts from Init.
func (c *core) reconfigure(now time.Time, cfg Config) []action {
	var acts []action
	c.syncing = true
	keep := map[string]InstanceConfig{}
	for _, ic := range cfg.Instances {
		keep[ic.Name] = ic
	}
	var kept []*instance
	for _, in := range c.insts {
		nc, ok := keep[in.name()]
		if !ok || !sameRouter(in.cfg, nc) {
			acts = append(acts, c.stop(now, in, "DELETED", ReasonRemoved)...)
			delete(c.byName, in.name())
			continue
		}
		kept = append(kept, in)
	}
	c.insts = kept
	c.setScripts(cfg.Scripts)
	var fresh []*instance
	for _, ic := range cfg.Instances {
		in := c.byName[ic.Name]
		if in == nil {
			fresh = append(fresh, c.addInstance(ic))
			continue
		}
		acts = append(acts, in.update(now, ic)...)
	}
	// Keep the configured order.
	order := map[string]int{}
	for i, ic := range cfg.Instances {
		order[ic.Name] = i
	}
	slices.SortFunc(c.insts, func(a, b *instance) int { return order[a.name()] - order[b.name()] })
	c.setGroups(cfg.SyncGroups)
	c.syncing = false
	acts = append(acts, c.retrack(now)...)
	for _, in := range fresh {
		acts = append(acts, c.startInstance(now, in)...)
	}
	return acts
}

// update applies a changed configuration to a kept instance.
func (in *instance) update(now time.Time, nc InstanceConfig) []action {
	old := in.cfg
	in.setConfig(nc)
	var acts []action
	if in.state == Master {
		oldV, newV := vipSet(old.VIPs), vipSet(in.cfg.VIPs)
		var gone, added []VIP
		for k, v := range oldV {
			if _, ok := newV[k]; !ok {
				gone = append(gone, v)
			}
		}
		for k, v := range newV {
			if _, ok := oldV[k]; !ok {
				added = append(added, v)
			}
		}
		sortVIPs(gone)
		sortVIPs(added)
		if len(gone) > 0 {
			acts = append(acts, action{kind: actDelVIPs, inst: in.name(), vips: gone})
		}
		if len(added) > 0 {
			acts = append(acts, action{kind: actAddVIPs, inst: in.name(), vips: added},
				action{kind: actAnnounce, inst: in.name(), count: in.cfg.GARP.MasterRepeat, vips: added})
		}
		if old.AdvertInterval != in.cfg.AdvertInterval {
			in.advertAt = now.Add(in.cfg.AdvertInterval)
		}
		if in.cfg.GARP.MasterRefresh != old.GARP.MasterRefresh {
			in.refreshAt = time.Time{}
			if r := in.cfg.GARP.MasterRefresh; r > 0 {
				in.refreshAt = now.Add(r)
			}
		}
		if in.cfg.SplitBrainProbeInterval != old.SplitBrainProbeInterval && in.roundEnd.IsZero() {
			in.probeAt = time.Time{}
			if p := in.cfg.SplitBrainProbeInterval; p > 0 {
				in.probeAt = now.Add(p)
			}
		}
	}
	if in.cfg.PreemptDelay == 0 || in.cfg.NoPreempt {
		in.preemptAt = time.Time{}
	}
	return acts
}

// vipKey identifies a VIP as installed: address, prefix length, device and label.
type vipKey struct {
	prefix     netip.Prefix
	dev, label string
}

func vipSet(vs []VIP) map[vipKey]VIP {
	m := map[vipKey]VIP{}
	for _, v := range vs {
		m[vipKey{v.Prefix, v.Dev, v.Label}] = v
	}
	return m
}

func sortVIPs(vs []VIP) {
	slices.SortFunc(vs, func(a, b VIP) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
}

func (c *core) statuses() []InstanceStatus {
	st := make([]InstanceStatus, len(c.insts))
	for i, in := range c.insts {
		st[i] = in.status()
	}
	return st
}

// status reports an instance's state and counters.
func (in *instance) status() InstanceStatus {
	s := InstanceStatus{
		Name:                 in.name(),
		Interface:            in.cfg.Interface,
		VRID:                 in.cfg.VRID,
		Version:              in.cfg.Version,
		State:                in.state,
		Since:                in.since,
		Priority:             in.cfg.Priority,
		EffectivePriority:    in.effPrio,
		LocalAddr:            in.local,
		MasterAddr:           in.masterAddr,
		MasterPriority:       in.masterPrio,
		AdvertInterval:       in.cfg.AdvertInterval,
		MasterAdvertInterval: in.masterAdverInt,
		Faults:               slices.Clone(in.faults),
		AdvertsSent:          in.stats.advertsSent,
		AdvertsReceived:      in.stats.advertsReceived,
		PriorityZeroSent:     in.stats.prioZeroSent,
		PriorityZeroReceived: in.stats.prioZeroRecv,
		Transitions:          in.stats.transitions,
		BecameMaster:         in.stats.becameMaster,
		RxErrors:             maps.Clone(in.stats.rxErrors),
		SplitBrain:           in.splitBrain,
		SplitBrainCount:      in.stats.splitBrains,
	}
	for _, v := range in.cfg.VIPs {
		s.VIPs = append(s.VIPs, v.Prefix)
	}
	if in.state == Master {
		s.MasterAddr, s.MasterPriority = in.local, in.effPrio
	}
	return s
}
