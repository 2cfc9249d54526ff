package vrrp

import (
	"net/netip"
	"time"
)

// Executing the core's actions: adverts, VIPs, announcements, probes,
// notify scripts, events and logs.

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
		switch a.kind {
		case actRejected:
			n.log.Debug("vrrp: packet rejected", "from", a.peer, "reason", a.note, "err", a.detail)
			continue
		case actGroupNotify:
			if g, ok := n.core.syncGroup(a.group); ok {
				n.log.Info("vrrp sync group", "group", g.Name, "state", a.note)
				n.notify.enqueue(groupNotifyJobs(g, a.note)...)
			}
			continue
		}
		in := n.lookup(a.inst)
		if in == nil {
			continue
		}
		switch a.kind {
		case actSendAdvert:
			n.sendAdvert(in, a.prio)
		case actAddVIPs:
			for _, v := range vipsOrAll(a.vips, in.cfg.VIPs) {
				if err := n.net.AddAddr(v); err != nil {
					n.log.Error("vrrp: adding VIP failed", "instance", in.name(), "vip", v.Prefix, "dev", v.Dev, "err", err)
				}
			}
		case actDelVIPs:
			for _, v := range vipsOrAll(a.vips, in.cfg.VIPs) {
				if err := n.net.DelAddr(v); err != nil {
					n.log.Error("vrrp: removing VIP failed", "instance", in.name(), "vip", v.Prefix, "dev", v.Dev, "err", err)
				}
			}
		case actAnnounce:
			n.announce(in, vipsOrAll(a.vips, in.cfg.VIPs), a.count)
		case actProbe:
			n.probe(in)
		case actNotify:
			n.notify.enqueue(notifyJobs(in, a.note, a.prio)...)
		case actTransition:
			n.log.Info("vrrp transition", "instance", in.name(), "from", a.from.String(), "to", a.to.String(),
				"reason", a.note, "priority", a.prio)
			n.emit(Event{Instance: in.name(), From: a.from, To: a.to, Priority: a.prio, Reason: a.note, At: now, TentativeUntil: a.until, HandoverUntil: a.handover})
		case actIntervalLimit:
			n.log.Warn("vrrp: advertisement interval above the learned limit (learned_advert_int_max_factor): bounded; "+
				"configure the same advert_int on every router, or look for a forged advertisement",
				"instance", in.name(), "from", a.peer, "detail", a.detail)
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

// vipsOrAll picks the VIPs an action names, or all of the instance's when
// it names none (nil).
func vipsOrAll(explicit, all []VIP) []VIP {
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
