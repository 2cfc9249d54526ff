package vrrp

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
)

// What a configuration needs on the host: VMACs, sockets, the dispatch
// tables of the sockets, the instances' source addresses; and applying a
// new configuration.

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
	for _, name := range linkNames(cfg) {
		l, err := n.net.Link(name, nil)
		n.handle(linkChanged{name, err == nil && l.Up})
	}
	n.setOwnMACs(cfg)
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

// setOwnMACs rebuilds the set of our own MACs for cfg: a claim on a VIP from
// one of them is no evidence of a split brain.
func (n *Node) setOwnMACs(cfg Config) {
	own := map[string]bool{}
	for _, ic := range cfg.Instances {
		if ic.UseVMAC {
			own[string(vmacAddr(ic.VRID, ic.is6()))] = true
		}
		if ep := n.vrrpEPs[epKey{ic.Interface, ic.is6()}]; ep != nil {
			own[string(ep.link.MAC)] = true
		}
	}
	for _, ep := range n.frameEPs {
		own[string(ep.link.MAC)] = true
	}
	n.ownMACs.Store(&own)
}

// refreshSources resolves again the source address of the instances on
// interface ifname.
func (n *Node) refreshSources(ifname string) {
	n.lockStep()
	defer n.unlockStep()
	if n.stopped {
		return
	}
	vips := n.allVIPs()
	for _, in := range n.core.insts {
		if in.cfg.Interface == ifname {
			n.resolveLocal(in, vips)
		}
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
	n.handle(sourceAddr{in.name(), a})
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
	acts := n.core.handle(now, configChanged{cfg})
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
	n.setOwnMACs(cfg)
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
