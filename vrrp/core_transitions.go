package vrrp

import "time"

// State transitions of an instance (RFC 5798 6.4 with keepalived's FAULT),
// its start from Init, its timers, and its stop.

func (c *core) transition(now time.Time, in *instance, to State, reason string) []action {
	from := in.state
	in.state, in.since = to, now
	in.stats.transitions++
	a := action{kind: actTransition, inst: in.name(), from: from, to: to, note: reason, prio: in.effPrio}
	if from == Master && to != Master {
		a.handover = now.Add(in.handoverGrace())
	}
	return append([]action{a}, c.groupReached(in)...)
}

// handoverGrace is how long a master that gives up its role (to a better
// master, a fault, a stop or its sync group) should go on forwarding what
// still reaches it: its peer takes over within 3 advert intervals, and
// clients and real servers (NAT replies) follow the new master's
// gratuitous ARPs; at most maxResignGrace.
func (in *instance) handoverGrace() time.Duration {
	return min(3*in.cfg.AdvertInterval+resignGARPDelay, maxResignGrace)
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

// After a master resigns with priority 0, its backups take over within
// Skew_Time, or within 3 advert intervals when they missed that advert, and
// clients follow their gratuitous ARPs: the resigning node keeps forwarding
// meanwhile (Node.ResignGrace), at most maxResignGrace so that a stop is
// not held long.
const (
	resignGARPDelay = 200 * time.Millisecond
	maxResignGrace  = 4 * time.Second
)

// leaveFault takes an instance whose fault is gone back to backup; the
// address owner takes over after one interval plus skew, as keepalived.
func (c *core) leaveFault(now time.Time, in *instance, reason string) []action {
	acts := c.enterBackup(now, in, in.cfg.AdvertInterval, reason)
	if in.state == Backup && in.cfg.Priority == priorityOwner {
		in.masterDownAt = now.Add(in.cfg.AdvertInterval + in.skew())
	}
	return acts
}

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
	if in.state != Backup {
		return acts
	}
	if in.cfg.InitialState == Master {
		// keepalived 2.x: one interval plus the smallest skew.
		in.masterDownAt = now.Add(in.cfg.AdvertInterval + in.skewFor(254))
	}
	// Whether another master exists is known when the Master_Down_Timer
	// runs out (a master heard by then keeps us backup; else we take
	// over): the role is tentative until then.
	for i := range acts {
		if a := &acts[i]; a.kind == actTransition && a.inst == in.name() && a.to == Backup {
			a.until = in.masterDownAt.Add(tentativeMargin)
		}
	}
	return acts
}

// tentativeMargin is added to the Master_Down_Timer of a start-up backup
// for Event.TentativeUntil: the time for a takeover decided then to reach
// the daemon, so that a restarted master forwarding meanwhile never stops
// before it learns it is master again.
const tentativeMargin = time.Second

func (in *instance) skewFor(prio uint8) time.Duration {
	saved := in.effPrio
	in.effPrio = prio
	defer func() { in.effPrio = saved }()
	return in.skew()
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

// shutdown stops every instance (Node.Shutdown) and sets resignGrace.
func (c *core) shutdown(now time.Time) []action {
	var acts []action
	c.resignGrace = 0
	c.syncing = true // members stop one by one, none follows another
	for _, in := range c.insts {
		if in.state == Master {
			c.resignGrace = max(c.resignGrace, in.handoverGrace())
		}
		acts = append(acts, c.stop(now, in, "STOP", ReasonShutdown)...)
	}
	c.syncing = false
	return append(acts, c.groupsStopped()...)
}
