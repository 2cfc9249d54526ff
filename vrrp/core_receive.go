package vrrp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Received advertisements: the receive checks of RFC 5798 7.1 that need
// the configuration, and what a backup and a master do with an accepted
// one (RFC 5798 6.4.2, 6.4.3).

// routerKey identifies a virtual router on the wire: the socket a packet
// came in on and its VRID.
type routerKey struct {
	ifname string
	v6     bool
	vrid   uint8
}

func (in *instance) routerKey() routerKey {
	return routerKey{in.cfg.Interface, in.cfg.is6(), in.cfg.VRID}
}

// receive dispatches a decoded advertisement to the instance of its VRID;
// one for a VRID not configured on the socket counts as a receive error on
// every instance of the socket.
func (c *core) receive(now time.Time, rx advertReceived) []action {
	in := c.routers[routerKey{rx.ifname, rx.v6, rx.pkt.VRID}]
	if in == nil {
		c.reject(packetRejected{ifname: rx.ifname, v6: rx.v6, reason: RxVRID})
		return []action{{kind: actRejected, note: RxVRID, peer: rx.pkt.Src,
			detail: fmt.Sprintf("VRID %d not configured on %s", rx.pkt.VRID, rx.ifname)}}
	}
	return c.advert(now, in, rx.pkt)
}

// reject counts a packet refused before it reached an instance: on the
// instance of its VRID, or on every instance of its socket when the VRID
// is unknown.
func (c *core) reject(r packetRejected) []action {
	if in := c.routers[routerKey{r.ifname, r.v6, r.vrid}]; in != nil {
		in.stats.rxErrors[r.reason]++
		return nil
	}
	for _, in := range c.insts {
		if in.cfg.Interface == r.ifname && in.cfg.is6() == r.v6 {
			in.stats.rxErrors[r.reason]++
		}
	}
	return nil
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

// advert processes a received advertisement for instance in.
func (c *core) advert(now time.Time, in *instance, p rxPacket) []action {
	if p.Src == in.local {
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
	var acts []action
	if in.cfg.Version == 3 {
		acts = in.limitInterval(&p)
	}
	switch in.state {
	case Backup:
		return append(acts, c.backupRx(now, in, &p)...)
	case Master:
		return append(acts, c.masterRx(now, in, &p)...)
	}
	return acts
}

// limitInterval bounds the interval of a VRRPv3 advert to the
// LearnedIntervalMaxFactor multiple of ours before the instance learns it
// as Master_Adver_Interval (RFC 5798 6.4.2, 6.4.3). Within the RFC one
// forged advert with a higher priority and 40.95s silences the virtual
// router for 3 x 40.95s plus skew: the master yields to it, every backup
// waits for it. Bounded, the backups take over after 3 times the limit.
// keepalived only logs such a mismatch. Each bounded advert is counted;
// the first from a peer is logged (at most maxLoggedPeers peers: forged
// sources are free).
func (in *instance) limitInterval(p *rxPacket) []action {
	f := in.cfg.LearnedIntervalMaxFactor
	if f <= 0 {
		return nil
	}
	limit := time.Duration(f) * in.cfg.AdvertInterval
	if p.Interval <= limit {
		return nil
	}
	in.stats.rxErrors[RxIntervalLimit]++
	got := p.Interval
	p.Interval = limit
	if in.limitLogged[p.Src] || len(in.limitLogged) >= maxLoggedPeers {
		return nil
	}
	if in.limitLogged == nil {
		in.limitLogged = map[netip.Addr]bool{}
	}
	in.limitLogged[p.Src] = true
	return []action{{kind: actIntervalLimit, inst: in.name(), peer: p.Src,
		detail: fmt.Sprintf("interval %v, bounded to %v (%d x %v)", got, limit, f, in.cfg.AdvertInterval)}}
}

// maxLoggedPeers bounds the peers whose bounded interval is logged, per
// instance.
const maxLoggedPeers = 64

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
