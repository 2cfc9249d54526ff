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
// arithmetic and the split-brain rounds. It is pure: an input (a typed
// value, core_inputs.go) goes in with the time through handle, actions come
// out; it starts no goroutine, never sleeps and does no I/O. The Node owns
// one core and is its only caller.

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
	actRejected                            // a packet from peer was rejected for reason note before reaching an instance (detail)
	actGroupNotify                         // all members of sync group group reached state note (or STOP): its notify scripts run
	actIntervalLimit                       // an advert from peer had a VRRPv3 interval above the learned limit (detail): logged
)

var actionNames = [...]string{actSendAdvert: "advert", actAddVIPs: "add-vips", actDelVIPs: "del-vips", actAnnounce: "announce",
	actProbe: "probe", actNotify: "notify", actTransition: "transition", actSplitBrain: "split-brain",
	actOwnerConflict: "owner-conflict", actRejected: "rejected", actGroupNotify: "notify", actIntervalLimit: "interval-limit"}

// action is one thing the Node must do, in order.
type action struct {
	kind  actionKind
	inst  string // the instance; "" for actRejected and actGroupNotify
	group string // actGroupNotify: the sync group
	prio  uint8
	from  State
	to    State
	note  string
	count int
	vips  []VIP
	// peer is the router an advert came from; detail says more for the
	// log.
	peer   netip.Addr
	detail string
	// until: on a transition to BACKUP at start-up, when the role stops
	// being tentative (Event.TentativeUntil).
	until time.Time
	// handover: on a transition out of MASTER, until when the node should
	// go on forwarding (Event.HandoverUntil).
	handover time.Time
}

func (a action) String() string {
	var b strings.Builder
	if a.kind == actGroupNotify {
		return fmt.Sprintf("group %s notify %s", a.group, a.note)
	}
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
	case actRejected:
		fmt.Fprintf(&b, " %s from %s: %s", a.note, a.peer, a.detail)
	case actIntervalLimit:
		fmt.Fprintf(&b, " from %s: %s", a.peer, a.detail)
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

	// limitLogged: the peers whose too long interval was logged.
	limitLogged map[netip.Addr]bool

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

type core struct {
	insts  []*instance
	byName map[string]*instance
	// routers and vipOwner dispatch packets and claims (index).
	routers  map[routerKey]*instance
	vipOwner map[netip.Addr]*instance
	groups   map[string][]*instance // members by sync group
	// groupCfg are the sync groups as configured, groupState the state
	// each group last notified (all its members shared it).
	groupCfg   []SyncGroupConfig
	groupState map[string]State
	scripts    map[string]*scriptState
	links      map[string]bool // interface up; absent: unknown, taken as up
	syncing    bool
	// resignGrace is how long forwarding must go on after the shutdown,
	// for the instances that resigned (Node.ResignGrace).
	resignGrace time.Duration
}

func newCore(cfg Config) *core {
	c := &core{byName: map[string]*instance{}, groups: map[string][]*instance{}, groupState: map[string]State{},
		scripts: map[string]*scriptState{}, links: map[string]bool{}}
	c.setScripts(cfg.Scripts)
	for _, ic := range cfg.Instances {
		c.addInstance(ic)
	}
	c.setGroups(cfg.SyncGroups)
	c.index()
	return c
}

// index rebuilds the dispatch tables from the instances.
func (c *core) index() {
	c.routers, c.vipOwner = map[routerKey]*instance{}, map[netip.Addr]*instance{}
	for _, in := range c.insts {
		c.routers[in.routerKey()] = in
		for _, v := range in.cfg.VIPs {
			c.vipOwner[v.Prefix.Addr()] = in
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
	in.cfg = ic
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
