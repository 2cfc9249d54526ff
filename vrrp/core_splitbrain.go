package vrrp

import (
	"net/netip"
	"time"
)

// Split brain: a master probes its VIPs and judges the claims of other
// stations in rounds.

// claim records that station mac (not ours) uses ip: from a GARP, an ARP
// reply to a probe, or an NA. For a master holding ip it is evidence of a
// split brain; it starts a probe round if none runs. The claim that starts
// a round does not count: a legitimate new master's GARP can arrive just
// before its advertisement makes us yield.
func (c *core) claim(now time.Time, ip netip.Addr) []action {
	in := c.vipOwner[ip]
	if in == nil || in.state != Master {
		return nil
	}
	if !in.roundEnd.IsZero() {
		in.evidence = true
		return nil
	}
	return in.startRound(now)
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
