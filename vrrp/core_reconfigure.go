package vrrp

import (
	"net/netip"
	"slices"
	"time"
)

// Reconfiguration with keepalived's reload semantics.

// sameRouter reports whether a and b are the same virtual router on the
// wire, so that a reload can keep the instance's state.
func sameRouter(a, b InstanceConfig) bool {
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
	c.index()
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
