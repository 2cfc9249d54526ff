package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"

	"github.com/xlb-dev/xlb/dataplane"
)

// meta locates the elements of a decoded Config for the checks that span
// several of them.
type meta struct {
	global    *table
	dataplane *table
	scripts   []keyPath
	groups    []groupMeta
	instances []instanceMeta
	vsGroups  []keyPath
	services  []serviceMeta
}

// crossCheck runs the checks that involve more than one table: unique names
// and keys, references, and (with an Env) the live interfaces.
func (d *decoder) crossCheck(c *Config, m *meta) {
	names := func(kind string, n int, name func(i int) string, p func(i int) keyPath) map[string]int {
		first := map[string]int{}
		for i := range n {
			s := name(i)
			if s == "" {
				continue
			}
			if j, dup := first[s]; dup {
				d.errorf(p(i).key("name"), "duplicate %s name %q (first on line %d)", kind, s, d.idx.line(p(j)))
				continue
			}
			first[s] = i
		}
		return first
	}
	scripts := names("vrrp_script", len(c.VRRPScripts),
		func(i int) string { return c.VRRPScripts[i].Name }, func(i int) keyPath { return m.scripts[i] })
	names("vrrp_sync_group", len(c.SyncGroups),
		func(i int) string { return c.SyncGroups[i].Name }, func(i int) keyPath { return m.groups[i].p })
	instances := names("vrrp_instance", len(c.VRRPInstances),
		func(i int) string { return c.VRRPInstances[i].Name }, func(i int) keyPath { return m.instances[i].p })
	names("virtual_server_group", len(c.VirtualServerGroups),
		func(i int) string { return c.VirtualServerGroups[i].Name }, func(i int) keyPath { return m.vsGroups[i] })
	// One name per [[virtual_server]] (its first entry stands for a group),
	// then a group's entries against the other services.
	names("virtual_server", len(c.VirtualServers),
		func(i int) string { return ternary(m.services[i].entry == 0, c.VirtualServers[i].Server, "") },
		func(i int) keyPath { return m.services[i].p })
	plain := map[string]int{}
	for i, v := range c.VirtualServers {
		if v.Group == "" {
			plain[v.Name] = i
		}
	}
	for i, v := range c.VirtualServers {
		if j, dup := plain[v.Name]; dup && v.Group != "" {
			d.errorf(m.services[i].p.key("name"), "%s: the group's entry %s is named %q, as virtual_server on line %d",
				m.services[i].label, v.Address, v.Name, c.VirtualServers[j].Line)
		}
	}

	d.checkInstances(c, m, scripts)

	// Sync groups: members exist and belong to one group.
	memberOf := map[string]int{}
	for gi, g := range c.SyncGroups {
		gm := m.groups[gi]
		seen := map[string]bool{}
		for j, name := range g.Group {
			p := gm.members[j]
			label := fmt.Sprintf("vrrp_sync_group %q", g.Name)
			switch _, ok := instances[name]; {
			case !ok:
				d.errorf(p, "%s: unknown vrrp_instance %q", label, name)
			case seen[name]:
				d.errorf(p, "%s: vrrp_instance %q is listed twice", label, name)
			default:
				if other, dup := memberOf[name]; dup {
					d.errorf(p, "%s: vrrp_instance %q is already in vrrp_sync_group %q (line %d)",
						label, name, c.SyncGroups[other].Name, c.SyncGroups[other].Line)
				} else {
					memberOf[name] = gi
				}
			}
			seen[name] = true
		}
	}

	// Services: unique VIP:port/protocol; the VRRP instance exists and
	// holds the VIP.
	keys := map[ServiceKey]int{}
	for i, v := range c.VirtualServers {
		sm := m.services[i]
		if v.Address.IsValid() && v.Port != 0 {
			if j, dup := keys[v.Key()]; dup {
				d.errorf(sm.p.key(ternary(v.Group != "", "group", "address")), "%s: duplicate virtual server %s/%s (also virtual_server %q on line %d)",
					sm.label, v.Protocol, netip.AddrPortFrom(v.Address, v.Port), c.VirtualServers[j].Name, c.VirtualServers[j].Line)
			} else {
				keys[v.Key()] = i
			}
		}
		if spec, ok := v.Scheduler.Spec(); ok {
			if dp := lacking(spec, c.Dataplane.Mode); dp != "" {
				why := ""
				if dp == "XDP" && spec.NoXDP != "" {
					why = ": " + spec.NoXDP
				}
				d.errorf(sm.p.key("scheduler"), "%s: scheduler %q is not supported by the %s dataplane (mode = %q)%s", sm.label, v.Scheduler, dp, c.Dataplane.Mode, why)
			}
		}
		if v.VRRPInstance == "" {
			continue
		}
		j, ok := instances[v.VRRPInstance]
		if !ok {
			if sm.entry == 0 {
				d.errorf(sm.p.key("vrrp_instance"), "%s: unknown vrrp_instance %q", sm.label, v.VRRPInstance)
			}
			continue
		}
		inst := c.VRRPInstances[j]
		if !v.Address.IsValid() || len(inst.VirtualIPAddresses) == 0 {
			continue
		}
		covered := false
		for _, vip := range inst.VirtualIPAddresses {
			covered = covered || vip.Prefix.Addr() == v.Address
		}
		if !covered {
			d.errorf(sm.p.key("vrrp_instance"), "%s: address %s is not among the virtual_ipaddress of vrrp_instance %q (line %d)",
				sm.label, v.Address, inst.Name, inst.Line)
		}
	}

	if d.env != nil {
		d.checkEnv(c, m)
	}
	if env, ok := d.env.(ScriptEnv); ok {
		d.checkScripts(c, m, env)
	}
}

// lacking names the dataplane mode may use ("auto": XDP, or IPVS after
// it) that has no scheduler s; "" if every one has it.
func lacking(s dataplane.SchedulerSpec, mode Mode) string {
	switch {
	case mode != ModeIPVS && s.BPF == "":
		return "XDP"
	case mode != ModeXDP && s.IPVS == "":
		return "IPVS"
	}
	return ""
}

func (d *decoder) checkInstances(c *Config, m *meta, scripts map[string]int) {
	type vridKey struct {
		iface string
		is6   bool
		vrid  uint8
	}
	vrids := map[vridKey]int{}
	vips := map[netip.Addr]int{}
	for i := range c.VRRPInstances {
		v := &c.VRRPInstances[i]
		im := m.instances[i]
		if im.familyKnown && v.Interface != "" && v.VirtualRouterID != 0 {
			k := vridKey{v.Interface, v.Is6(), v.VirtualRouterID}
			if j, dup := vrids[k]; dup {
				d.errorf(im.p.key("virtual_router_id"), "%s: virtual_router_id %d is already used on %s for %s by vrrp_instance %q (line %d)",
					im.label, v.VirtualRouterID, v.Interface, family(v.VirtualIPAddresses[0].Prefix.Addr()), c.VRRPInstances[j].Name, c.VRRPInstances[j].Line)
			} else {
				vrids[k] = i
			}
		}
		for vi, vip := range v.VirtualIPAddresses {
			a := vip.Prefix.Addr()
			if j, dup := vips[a]; dup && j != i {
				d.errorf(im.vips[vi], "%s: virtual_ipaddress %s is also in vrrp_instance %q (line %d)",
					im.label, a, c.VRRPInstances[j].Name, c.VRRPInstances[j].Line)
			} else {
				vips[a] = i
			}
		}
		for ti := range v.TrackScripts {
			ts := &v.TrackScripts[ti]
			j, ok := scripts[ts.Name]
			if !ok {
				d.errorf(im.scripts[ti], "%s: track_script: unknown vrrp_script %q", im.label, ts.Name)
				continue
			}
			if !im.scriptW[ti] {
				ts.Weight = c.VRRPScripts[j].Weight
			}
		}
	}
}

// ErrUnknownInterface is returned (wrapped) by an Env for an interface that
// does not exist.
var ErrUnknownInterface = errors.New("unknown interface")

// Env gives validation the live facts it checks against. Parse and Load
// skip those checks when the Env is nil.
type Env interface {
	// InterfaceSubnets returns the subnets directly connected to the
	// interface (its addresses with their prefix lengths, and its
	// link-scope routes), or an error wrapping ErrUnknownInterface when it
	// does not exist.
	InterfaceSubnets(ifname string) ([]netip.Prefix, error)
}

// ScriptEnv is an Env that also answers for the commands and the script
// user (SystemEnv does); Parse and Load check them only with such an Env.
type ScriptEnv interface {
	Env
	// LookupUser and LookupGroup fail for a user or group that does not
	// exist.
	LookupUser(name string) error
	LookupGroup(name string) error
	// LookPath finds a program named without a slash as the command runner
	// does (exec.LookPath: in PATH).
	LookPath(file string) (string, error)
	// Lstat and EvalSymlinks are os.Lstat and filepath.EvalSymlinks.
	Lstat(path string) (fs.FileInfo, error)
	EvalSymlinks(path string) (string, error)
}

type ifaceInfo struct {
	subnets []netip.Prefix
	err     error
}

func (d *decoder) checkEnv(c *Config, m *meta) {
	cache := map[string]ifaceInfo{}
	lookup := func(name string) ifaceInfo {
		info, ok := cache[name]
		if !ok {
			info.subnets, info.err = d.env.InterfaceSubnets(name)
			cache[name] = info
		}
		return info
	}
	check := func(p keyPath, label, name string) bool {
		err := lookup(name).err
		if err == nil {
			return true
		}
		prefix := ""
		if label != "" {
			prefix = label + ": "
		}
		if errors.Is(err, ErrUnknownInterface) {
			d.errorf(p, "%sunknown interface %q", prefix, name)
		} else {
			d.errorf(p, "%sinterface %q: %v", prefix, name, err)
		}
		return false
	}

	// The dataplane's interfaces and what they reach directly.
	type attached struct {
		name    string
		subnets []netip.Prefix
	}
	var reach []attached
	for i, name := range c.Dataplane.Interfaces {
		if check(d.dpIfaces[i], m.dataplane.label()+": interfaces", name) {
			reach = append(reach, attached{name, lookup(name).subnets})
		}
	}

	for i, v := range c.VRRPInstances {
		im := m.instances[i]
		if v.Interface != "" {
			check(im.p.key("interface"), im.label+": interface", v.Interface)
		}
		for j, ti := range v.TrackInterfaces {
			check(im.ifaces[j], im.label+": track_interface", ti.Name)
		}
		for j, vip := range v.VirtualIPAddresses {
			if vip.Dev != "" && vip.Dev != v.Interface {
				check(im.vips[j], im.label+": virtual_ipaddress", vip.Dev)
			}
		}
	}

	// Direct routing rewrites only the MAC address: real servers must be
	// on a subnet the director reaches without a router.
	if len(reach) == 0 {
		return
	}
	connected := func(a netip.Addr) bool {
		for _, at := range reach {
			for _, p := range at.subnets {
				if p.Contains(a) {
					return true
				}
			}
		}
		return false
	}
	describe := func() string {
		var parts []string
		for _, at := range reach {
			var ps []string
			for _, p := range at.subnets {
				ps = append(ps, p.Masked().String())
			}
			if len(ps) == 0 {
				ps = []string{"no subnets"}
			}
			parts = append(parts, at.name+": "+strings.Join(ps, ", "))
		}
		return strings.Join(parts, "; ")
	}
	for i, v := range c.VirtualServers {
		if v.Forward != dataplane.DirectRouting || m.services[i].entry > 0 {
			continue // a group's entries share the real servers of the first
		}
		sm := m.services[i]
		for j, rs := range v.RealServers {
			if rs.Address.IsValid() && !connected(rs.Address) {
				d.errorf(sm.rss[j].path().key("address"), "%s: forward = \"dr\" needs real servers on a directly connected subnet of the dataplane interfaces, and %s is not (%s)",
					sm.rss[j].label(), rs.Address, describe())
			}
		}
		if sm.sorryOK && !connected(v.SorryServer.Addr()) {
			d.errorf(sm.p.key("sorry_server"), "%s: forward = \"dr\" needs the sorry server on a directly connected subnet of the dataplane interfaces, and %s is not (%s)",
				sm.label, v.SorryServer.Addr(), describe())
		}
	}
}
