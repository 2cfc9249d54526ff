package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
)

// keepalived's defaults where xlb's differ (check_data.c, check_parser.c,
// vrrp_parser.c of keepalived 2.2.7; checked with keepalived -t where it
// reports them).
const (
	kaDelayLoop        = 60 * time.Second
	kaConnectTimeout   = 5 * time.Second
	kaRetry            = 1
	kaMiscRetry        = 0
	kaDelayBeforeRetry = 1 * time.Second
	kaHTTPDelayRetry   = 3 * time.Second
	kaScheduler        = "wlc"
	kaPriority         = 100
	kaOwnerPriority    = 255
)

type converter struct {
	d    *diags
	c    *kaConfig
	file string
	doc  Doc
}

func (cv *converter) convert() *Doc {
	c := cv.c
	cv.doc.Comments = []string{
		"Imported from " + cv.file + " by xlb import keepalived.",
		"Each table says where it came from; keepalived's defaults that differ from xlb's are written out.",
	}
	g := &Table{Name: "global"}
	if c.routerID.ok {
		g.Set("router_id", c.routerID.v, "router_id, "+c.routerID.pos.String())
	}
	if c.scriptUser.ok {
		g.Set("script_user", c.scriptUser.v, "script_user, "+c.scriptUser.pos.String())
		if c.scriptGroup.ok {
			g.Set("script_group", c.scriptGroup.v, "")
		}
	}
	if c.scriptSecurity.ok {
		g.Set("enable_script_security", true, "enable_script_security, "+c.scriptSecurity.pos.String())
	}
	cv.mail(g)
	if len(g.Keys) > 0 {
		g.Comments = []string{"global_defs"}
		cv.doc.Tables = append(cv.doc.Tables, g)
	}
	dp := &Table{Name: "dataplane", Comments: []string{
		"keepalived drives the kernel's IPVS; so does this configuration. For the XDP fast path",
		"set mode = \"auto\" and list the interfaces the virtual addresses arrive on.",
	}}
	dp.Set("mode", "ipvs", "")
	for _, t := range []struct {
		key string
		s   setting[time.Duration]
	}{{"tcp_timeout", c.tcp}, {"tcp_fin_timeout", c.tcpfin}, {"udp_timeout", c.udp}} {
		if t.s.ok {
			dp.Set(t.key, Duration(t.s.v), "lvs_timeouts, "+t.s.pos.String())
		}
	}
	cv.doc.Tables = append(cv.doc.Tables, dp)

	scripts := cv.scripts()
	instances := cv.instances(scripts)
	cv.groups(instances)
	cv.services()
	return &cv.doc
}

func (cv *converter) scripts() map[string]*kaScript {
	ok := map[string]*kaScript{}
	for _, s := range cv.c.scripts {
		if !s.script.ok {
			cv.d.warnf(s.pos, "vrrp_script", "%s: no script set: removed, as keepalived removes it", s.name)
			continue
		}
		t := &Table{Name: "vrrp_script", Array: true, Src: s.pos, Comments: []string{"vrrp_script " + s.name + ", " + s.pos.String()}}
		t.Set("name", s.name, "")
		t.Set("script", s.script.v, "")
		if s.interval.ok {
			t.Set("interval", Duration(s.interval.v), "")
		}
		if s.timeout.ok {
			t.Set("timeout", Duration(s.timeout.v), "")
		}
		if s.weight.ok {
			t.Set("weight", s.weight.v, "")
		}
		if s.rise.ok {
			t.Set("rise", s.rise.v, "")
		}
		if s.fall.ok {
			t.Set("fall", s.fall.v, "")
		}
		ok[s.name] = s
		cv.doc.Tables = append(cv.doc.Tables, t)
	}
	return ok
}

func (cv *converter) groups(instances map[string]bool) {
	for _, g := range cv.c.groups {
		var members []string
		for _, m := range g.members {
			name := m.words[0]
			if !instances[name] {
				cv.d.warnf(m.pos, "group", "vrrp_instance %q does not exist: ignored, as keepalived ignores it", name)
				continue
			}
			if slices.Contains(members, name) {
				cv.d.warnf(m.pos, "group", "vrrp_instance %q is listed twice", name)
				continue
			}
			members = append(members, name)
		}
		if len(members) == 0 {
			cv.d.warnf(g.pos, "vrrp_sync_group", "%s has no vrrp_instance: removed, as keepalived removes it", g.name)
			continue
		}
		if len(members) == 1 {
			cv.d.warnf(g.pos, "vrrp_sync_group", "%s has only one vrrp_instance (keepalived warns too)", g.name)
		}
		t := &Table{Name: "vrrp_sync_group", Array: true, Src: g.pos, Comments: []string{"vrrp_sync_group " + g.name + ", " + g.pos.String()}}
		t.Set("name", g.name, "")
		t.Set("group", members, "")
		for _, n := range notifyNames {
			if s, ok := g.notify[n]; ok {
				t.Set(n, s.v, "")
			}
		}
		if g.smtpAlert.ok {
			t.Set("smtp_alert", g.smtpAlert.v, "")
		}
		cv.doc.Tables = append(cv.doc.Tables, t)
	}
}

// instances converts the vrrp_instances; it returns the names kept.
func (cv *converter) instances(scripts map[string]*kaScript) map[string]bool {
	kept := map[string]bool{}
	c := cv.c
	for _, in := range c.instances {
		t := &Table{Name: "vrrp_instance", Array: true, Src: in.pos, Comments: []string{"vrrp_instance " + in.name + ", " + in.pos.String()}}
		bad := false
		fail := func(kw, format string, args ...any) {
			cv.d.errorf(in.pos, kw, "%s: "+format, append([]any{in.name}, args...)...)
			bad = true
		}
		t.Set("name", in.name, "")
		if !in.iface.ok {
			fail("interface", "no interface: xlb needs one")
		} else {
			t.Set("interface", in.iface.v, "")
		}
		state := in.state.or("BACKUP")
		prio := in.priority.or(kaPriority)
		prioNote := ""
		if !in.priority.ok && state == "MASTER" {
			prio, prioNote = kaOwnerPriority, "keepalived's default with state MASTER"
		}
		if prio == kaOwnerPriority && state != "MASTER" {
			cv.d.warnf(in.priority.pos, "priority", "%s: priority 255 (the address owner) with state BACKUP: state MASTER, as the owner always becomes master", in.name)
			state = "MASTER"
		}
		preempt := !in.nopreempt.ok
		if in.nopreempt.ok && prio == kaOwnerPriority {
			cv.d.warnf(in.nopreempt.pos, "nopreempt", "%s: nopreempt is incompatible with priority 255: dropped, as keepalived drops it", in.name)
			preempt = true
		} else if in.nopreempt.ok && state == "MASTER" {
			cv.d.warnf(in.nopreempt.pos, "nopreempt", "%s: nopreempt with state MASTER: state BACKUP (xlb needs it; keepalived would become master at start, then not preempt)", in.name)
			state = "BACKUP"
		}
		t.Set("state", state, "")
		if !in.vrid.ok {
			fail("virtual_router_id", "no virtual_router_id")
		} else {
			t.Set("virtual_router_id", in.vrid.v, "")
		}
		t.Set("priority", prio, prioNote)

		// Addresses first: their family decides the version.
		var vips []string
		seen := map[netip.Addr]Pos{}
		is6 := false
		familyKnown := false
		for _, e := range in.vips {
			s, a, ok := cv.vip(in, e)
			if !ok {
				bad = true
				continue
			}
			if first, dup := seen[a]; dup {
				cv.d.warnf(e.pos, "virtual_ipaddress", "%s: %s is already on line %d: dropped; keepalived lists it twice in its adverts (seen in the VM test), so a keepalived peer with this file sees one address less in xlb's: remove the duplicate from both", in.name, a, first.Line)
				continue
			}
			if familyKnown && a.Is6() != is6 {
				cv.d.warnf(e.pos, "virtual_ipaddress", "%s: %s is not of the instance's address family: ignored, as keepalived ignores it", in.name, a)
				continue
			}
			if !familyKnown {
				is6, familyKnown = a.Is6(), true
			}
			seen[a] = e.pos
			vips = append(vips, s)
		}
		if len(vips) == 0 && len(in.vips) == 0 {
			fail("virtual_ipaddress", "no virtual_ipaddress: xlb needs at least one")
		}
		version := in.version.or(c.vrrpVersion.or(2))
		if is6 && version == 2 {
			cv.d.warnf(in.pos, "version", "%s: IPv6 addresses: version 3, as keepalived uses for IPv6", in.name)
			version = 3
		}
		if version != 2 || in.version.ok || c.vrrpVersion.ok {
			t.Set("version", version, "")
		}
		if in.advert.ok {
			d := in.advert.v
			step := time.Second
			if version == 3 {
				step = 10 * time.Millisecond
			}
			r := (d + step/2) / step * step
			if r < step {
				r = step
			}
			if version == 3 && r > 4095*10*time.Millisecond {
				r = 4095 * 10 * time.Millisecond
			}
			if r != d {
				cv.d.warnf(in.advert.pos, "advert_int", "%s: %v rounded to %v, as keepalived rounds a version %d interval", in.name, d, r, version)
			}
			t.Set("advert_int", Duration(r), "")
		}
		if !preempt {
			t.Set("preempt", false, "nopreempt, "+in.nopreempt.pos.String())
		}
		if in.preemptDelay.ok {
			if !preempt {
				cv.d.warnf(in.preemptDelay.pos, "preempt_delay", "%s: no effect with nopreempt: dropped", in.name)
			} else {
				t.Set("preempt_delay", Duration(in.preemptDelay.v), "")
			}
		}
		cv.auth(in, t, version, &bad)
		if in.srcIP.ok {
			if len(in.peers) == 0 {
				cv.d.warnf(in.srcIP.pos, "unicast_src_ip", "%s: no unicast_peer: the adverts are multicast and the source is the interface's address; dropped", in.name)
			} else if _, err := parseAddr(in.srcIP.v); err != nil {
				fail("unicast_src_ip", "%v", err)
			} else {
				t.Set("unicast_src_ip", in.srcIP.v, "")
			}
		}
		var peers []string
		for _, e := range in.peers {
			if _, err := parseAddr(e.words[0]); err != nil {
				cv.d.errorf(e.pos, "unicast_peer", "%s: %v", in.name, err)
				bad = true
				continue
			}
			if len(e.words) > 1 {
				cv.d.errorf(e.pos, "unicast_peer", "%s: %q: xlb has no TTL checks on unicast peers", in.name, strings.Join(e.words[1:], " "))
				bad = true
			}
			peers = append(peers, e.words[0])
		}
		if len(peers) > 0 {
			t.Set("unicast_peers", peers, "")
		}
		t.Set("virtual_ipaddress", vips, "")
		if tr := cv.tracked(in, in.trackIfs, "track_interface", nil, &bad); len(tr) > 0 {
			t.Set("track_interface", tr, "")
		}
		if tr := cv.tracked(in, in.trackScripts, "track_script", scripts, &bad); len(tr) > 0 {
			t.Set("track_script", tr, "")
		}
		for _, n := range notifyNames {
			if s, ok := in.notify[n]; ok {
				t.Set(n, s.v, "")
			}
		}
		garp := []struct {
			key  string
			own  any
			glob any
		}{
			{"garp_master_delay", in.garpDelay, c.garpDelay},
			{"garp_master_repeat", in.garpRepeat, c.garpRepeat},
			{"garp_master_refresh", in.garpRefresh, c.garpRefresh},
			{"garp_master_refresh_repeat", in.garpRefreshRep, c.garpRefreshRep},
			{"garp_interval", in.garpInterval, c.garpInterval},
			{"gna_interval", in.gnaInterval, c.gnaInterval},
		}
		for _, gp := range garp {
			if v, ok := settingValue(gp.own); ok {
				t.Set(gp.key, v, "")
			} else if v, ok := settingValue(gp.glob); ok {
				t.Set(gp.key, v, "global_defs vrrp_"+gp.key)
			}
		}
		if in.useVMAC.ok {
			t.Set("use_vmac", true, "")
		}
		if in.smtpAlert.ok {
			t.Set("smtp_alert", in.smtpAlert.v, "")
		}
		if bad {
			continue
		}
		kept[in.name] = true
		cv.doc.Tables = append(cv.doc.Tables, t)
	}
	return kept
}

func settingValue(s any) (any, bool) {
	switch s := s.(type) {
	case setting[time.Duration]:
		return Duration(s.v), s.ok
	case setting[int]:
		return s.v, s.ok
	}
	return nil, false
}

func ternary[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

func (cv *converter) auth(in *kaInstance, t *Table, version int, bad *bool) {
	if !in.authType.ok && !in.authPass.ok {
		return
	}
	pos := in.authType.pos
	if !in.authType.ok {
		pos = in.authPass.pos
	}
	if version == 3 {
		cv.d.warnf(pos, "authentication", "%s: VRRP version 3 has no authentication: ignored, as keepalived ignores it", in.name)
		return
	}
	if in.authType.ok && in.authType.v == "AH" {
		cv.d.errorf(in.authType.pos, "auth_type", "%s: AH (IPsec authentication header) is not supported by xlb", in.name)
		*bad = true
		return
	}
	if in.authType.ok && in.authType.v != "PASS" {
		cv.d.warnf(in.authType.pos, "auth_type", "%s: unknown auth_type %q: ignored, as keepalived ignores it", in.name, in.authType.v)
		return
	}
	if !in.authPass.ok || in.authPass.v == "" {
		cv.d.warnf(pos, "authentication", "%s: no auth_pass: no authentication", in.name)
		return
	}
	pass := in.authPass.v
	if len(pass) > 8 {
		cv.d.warnf(in.authPass.pos, "auth_pass", "%s: longer than 8 characters: the first 8 are used, as keepalived truncates it", in.name)
		pass = pass[:8]
	}
	t.Set("auth_type", "PASS", "")
	t.Set("auth_pass", pass, "")
}

// vip converts a virtual_ipaddress entry; it returns the xlb entry and the
// address.
func (cv *converter) vip(in *kaInstance, e entry) (string, netip.Addr, bool) {
	w := e.words
	var a netip.Addr
	out := w[0]
	if strings.Contains(w[0], "/") {
		p, err := netip.ParsePrefix(w[0])
		if err != nil {
			cv.d.errorf(e.pos, "virtual_ipaddress", "%s: invalid address %q", in.name, w[0])
			return "", a, false
		}
		a = p.Addr()
	} else {
		var err error
		if a, err = parseAddr(w[0]); err != nil {
			cv.d.errorf(e.pos, "virtual_ipaddress", "%s: %v", in.name, err)
			return "", a, false
		}
	}
	for i := 1; i < len(w); i++ {
		opt := w[i]
		val := ""
		hasVal := i+1 < len(w)
		if hasVal {
			val = w[i+1]
		}
		switch opt {
		case "dev", "label":
			if !hasVal {
				cv.d.errorf(e.pos, "virtual_ipaddress", "%s: %s needs a value", in.name, opt)
				return "", a, false
			}
			out += " " + opt + " " + val
			i++
		case "brd", "broadcast", "scope":
			if hasVal {
				i++
			}
			cv.d.warnf(e.pos, "virtual_ipaddress", "%s: %s %s: dropped, xlb adds the address with the kernel's default %s", in.name, opt, val, opt)
		case "home", "-nodad", "nodad", "noprefixroute", "autojoin", "no_track":
			cv.d.warnf(e.pos, "virtual_ipaddress", "%s: %s: not supported by xlb, ignored", in.name, opt)
		case "preferred_lft":
			if hasVal {
				i++
			}
			cv.d.warnf(e.pos, "virtual_ipaddress", "%s: preferred_lft: not supported by xlb, ignored", in.name)
		default:
			cv.d.errorf(e.pos, "virtual_ipaddress", "%s: %q: not supported by xlb", in.name, opt)
			return "", a, false
		}
	}
	return out, a, true
}

// tracked converts track_interface and track_script entries:
// "NAME [weight N]".
func (cv *converter) tracked(in *kaInstance, es []entry, kw string, scripts map[string]*kaScript, bad *bool) []string {
	var out []string
	for _, e := range es {
		name := e.words[0]
		if scripts != nil {
			if _, ok := scripts[name]; !ok {
				cv.d.warnf(e.pos, kw, "%s: vrrp_script %q not found: ignored, as keepalived ignores it", in.name, name)
				continue
			}
		}
		s := name
		rest := e.words[1:]
		if len(rest) >= 2 && rest[0] == "weight" {
			n, err := strconv.Atoi(rest[1])
			if err != nil || n < -254 || n > 254 {
				cv.d.warnf(e.pos, kw, "%s: invalid weight %q: ignored, as keepalived ignores it", in.name, rest[1])
			} else {
				s += " weight " + strconv.Itoa(max(-253, min(253, n)))
			}
			rest = rest[2:]
		}
		if len(rest) > 0 {
			cv.d.errorf(e.pos, kw, "%s: %q: not supported by xlb", in.name, strings.Join(rest, " "))
			*bad = true
			continue
		}
		out = append(out, s)
	}
	return out
}

// service is one virtual service an address of a virtual_server (or of
// its group) makes.
type service struct {
	addr netip.Addr
	port int
	pos  Pos
}

func (cv *converter) services() {
	groups := map[string]*kaVSGroup{}
	for _, g := range cv.c.vsGroups {
		groups[g.name] = g
	}
	written, used := map[string]bool{}, map[string]bool{}
	for _, vs := range cv.c.services {
		switch vs.kind {
		case "addr":
			a, err := parseAddr(vs.addr)
			if err != nil {
				cv.d.errorf(vs.pos, "virtual_server", "%v", err)
				continue
			}
			cv.service(vs, []service{{a, vs.port, vs.pos}}, nil)
		case "group":
			g := groups[vs.group]
			if g == nil {
				cv.d.errorf(vs.pos, "virtual_server group", "virtual_server_group %q does not exist", vs.group)
				continue
			}
			svcs, entries, ok := cv.expandGroup(g)
			if !ok {
				used[g.name] = true
				continue
			}
			if !written[g.name] {
				written[g.name], used[g.name] = true, true
				t := &Table{Name: "virtual_server_group", Array: true, Src: g.pos, Comments: []string{"virtual_server_group " + g.name + ", " + g.pos.String()}}
				t.Set("name", g.name, "")
				t.Set("entries", entries, "")
				cv.doc.Tables = append(cv.doc.Tables, t)
			}
			cv.service(vs, svcs, g)
		}
	}
	for _, g := range cv.c.vsGroups {
		if !used[g.name] {
			cv.d.warnf(g.pos, "virtual_server_group", "%s: no virtual_server uses it: dropped (it does nothing in keepalived)", g.name)
		}
	}
}

// expandGroup reads a virtual_server_group's entries: "ADDR PORT" and
// "ADDR-LAST PORT" (a range of the last byte of an IPv4 address or the
// last group of an IPv6 one). It returns the services, one per address,
// and the entries as xlb writes them ("10.0.0.3-10:80").
func (cv *converter) expandGroup(g *kaVSGroup) ([]service, []string, bool) {
	var out []service
	var entries []string
	ok := true
	for _, e := range g.entries {
		if e.words[0] == "fwmark" {
			cv.d.errorf(e.pos, "virtual_server_group", "%s: fwmark: not supported by xlb (no firewall-mark services)", g.name)
			ok = false
			continue
		}
		if len(e.words) != 2 {
			cv.d.errorf(e.pos, "virtual_server_group", "%s: want ADDR PORT", g.name)
			ok = false
			continue
		}
		port, err := strconv.Atoi(e.words[1])
		if err != nil || port < 1 || port > 65535 {
			cv.d.errorf(e.pos, "virtual_server_group", "%s: invalid port %q", g.name, e.words[1])
			ok = false
			continue
		}
		addr, last, isRange := strings.Cut(e.words[0], "-")
		a, err := parseAddr(addr)
		if err != nil {
			cv.d.errorf(e.pos, "virtual_server_group", "%s: %v", g.name, err)
			ok = false
			continue
		}
		if !isRange {
			out = append(out, service{a, port, e.pos})
			entries = append(entries, netip.AddrPortFrom(a, uint16(port)).String())
			continue
		}
		base := 10
		if a.Is6() {
			base = 16
		}
		end, err := strconv.ParseUint(last, base, 16)
		b := a.AsSlice()
		var first uint64
		if a.Is4() {
			first = uint64(b[3])
		} else {
			first = uint64(b[14])<<8 | uint64(b[15])
		}
		if err != nil || end < first || (a.Is4() && end > 255) {
			cv.d.errorf(e.pos, "virtual_server_group", "%s: invalid range %q", g.name, e.words[0])
			ok = false
			continue
		}
		if a.Is4() {
			entries = append(entries, fmt.Sprintf("%s-%d:%d", a, end, port))
		} else {
			entries = append(entries, fmt.Sprintf("[%s-%x]:%d", a, end, port))
		}
		for n := first; n <= end; n++ {
			if a.Is4() {
				b[3] = byte(n)
			} else {
				b[14], b[15] = byte(n>>8), byte(n)
			}
			x, _ := netip.AddrFromSlice(b)
			out = append(out, service{x, port, e.pos})
		}
	}
	return out, entries, ok
}

// service converts a virtual_server: svcs is its address and port, or
// its group's (g), whose real servers take each entry's port unless NAT
// maps it, and whose checks are the first entry's.
func (cv *converter) service(vs *kaVS, svcs []service, g *kaVSGroup) {
	s := svcs[0]
	t := &Table{Name: "virtual_server", Array: true, Src: vs.pos}
	hdr := fmt.Sprintf("virtual_server %s %d, %s", vs.addr, vs.port, vs.pos)
	if g != nil {
		hdr = fmt.Sprintf("virtual_server group %s, %s", vs.group, vs.pos)
	}
	t.Comments = []string{hdr}
	bad := false
	proto := "udp"
	protoNote := "keepalived's default without protocol"
	if vs.protocol.ok {
		protoNote = ""
		switch strings.ToUpper(vs.protocol.v) {
		case "TCP":
			proto = "tcp"
		case "UDP":
			proto = "udp"
		default:
			cv.d.errorf(vs.protocol.pos, "protocol", "%s: not supported by xlb (tcp and udp)", vs.protocol.v)
			bad = true
		}
	}
	ap := netip.AddrPortFrom(s.addr, uint16(s.port)).String()
	name := ap
	if g != nil {
		ap, name = "group "+g.name, g.name
	}
	if proto == "udp" {
		name += "/udp"
	}
	t.Set("name", name, "")
	if g != nil {
		t.Set("group", g.name, "")
	} else {
		t.Set("address", s.addr.String(), "")
		t.Set("port", s.port, "")
	}
	t.Set("protocol", proto, protoNote)
	sched := vs.sched.or(kaScheduler)
	if s, ok := dataplane.SchedulerOfIPVS(sched); ok {
		t.Set("scheduler", string(s), ternary(vs.sched.ok, "", "keepalived's default"))
	} else {
		cv.d.errorf(vs.sched.pos, "lb_algo", "%s: scheduler %q is not supported by xlb (%s)", ap, sched, SchedulerList())
		bad = true
	}
	forward := dataplane.NAT
	if vs.method.ok {
		var kinds []string
		found := false
		for _, f := range dataplane.ForwardTable {
			kinds = append(kinds, f.Keepalived)
			if strings.EqualFold(f.Keepalived, vs.method.v) {
				forward, found = f.Name, true
			}
		}
		if !found {
			cv.d.errorf(vs.method.pos, "lb_kind", "%s: %q is not supported by xlb (%s)", ap, vs.method.v, strings.Join(kinds, ", "))
			bad = true
		}
	}
	t.Set("forward", string(forward), ternary(vs.method.ok, "", "keepalived's default lb_kind NAT"))
	if forward == dataplane.Tunnel && vs.tunType.ok {
		switch vs.tunType.v {
		case "ipip":
		case "gue":
			t.Set("tunnel_type", "gue", "")
			if vs.tunPort.ok {
				t.Set("tunnel_port", vs.tunPort.v, "")
			}
		default:
			cv.d.errorf(vs.tunType.pos, "lb_kind", "%s: tunnel type %q is not supported by xlb (ipip, gue)", ap, vs.tunType.v)
			bad = true
		}
	}
	if vs.persistence.ok {
		t.Set("persistence_timeout", Duration(time.Duration(vs.persistence.v)*time.Second), "")
	}
	if vs.quorum.ok {
		t.Set("quorum", vs.quorum.v, "")
	}
	if vs.hysteresis.ok {
		t.Set("hysteresis", vs.hysteresis.v, "")
	}
	if vs.quorumUp.ok {
		t.Set("quorum_up", vs.quorumUp.v, "")
	}
	if vs.quorumDown.ok {
		t.Set("quorum_down", vs.quorumDown.v, "")
	}
	if vs.sorry.ok {
		a, err := parseAddr(vs.sorry.v)
		if err != nil {
			cv.d.errorf(vs.sorry.pos, "sorry_server", "%v", err)
			bad = true
		} else {
			port := vs.sorryPort
			switch {
			case g != nil && (port == 0 || forward != "nat"):
				t.Set("sorry_server", a.String(), "each entry's port")
			case port == 0 || forward != "nat":
				t.Set("sorry_server", netip.AddrPortFrom(a, uint16(s.port)).String(), "")
			default:
				t.Set("sorry_server", netip.AddrPortFrom(a, uint16(port)).String(), "")
			}
		}
	}
	if vs.smtpAlert.ok {
		t.Set("smtp_alert", vs.smtpAlert.v, "")
	}

	// The director's own addresses: a real server there is served by
	// IPVS on this host (LOCALNODE).
	local := map[netip.Addr]bool{}
	ports := map[int]bool{}
	for _, x := range svcs {
		local[x.addr] = true
		ports[x.port] = true
	}
	var checks []*Table
	for _, rs := range vs.reals {
		rt := &Table{Name: "virtual_server.real_server", Array: true, Src: rs.pos, Comments: []string{"real_server, " + rs.pos.String()}}
		a, err := parseAddr(rs.addr)
		if err != nil {
			cv.d.errorf(rs.pos, "real_server", "%v", err)
			bad = true
			continue
		}
		if local[a] {
			cv.d.warnf(rs.pos, "real_server", "%s: %s is the virtual server's own address: IPVS serves it on the director itself (LOCALNODE); xlb forwards only to other hosts: dropped", ap, a)
			continue
		}
		rt.Set("address", a.String(), "")
		port, xlbCheck := rs.port, 0
		switch {
		case g != nil:
			// A real server without port takes each entry's, and xlb checks
			// it on the first entry's.
			xlbCheck = s.port
			switch {
			case rs.port == 0:
				cv.d.warnf(rs.pos, "real_server", "%s: no port: each entry's", ap)
				port = s.port
			case forward == "nat":
				rt.Set("port", rs.port, "")
				xlbCheck = rs.port
			case len(ports) > 1 || !ports[rs.port]:
				cv.d.warnf(rs.pos, "real_server", "%s: port %d: direct routing and tunnels keep each entry's port", ap, rs.port)
			}
		case port == 0:
			cv.d.warnf(rs.pos, "real_server", "%s: no port: the service's", ap)
			port = s.port
		case forward != "nat" && port != s.port:
			cv.d.warnf(rs.pos, "real_server", "%s: port %d: direct routing and tunnels keep the service port %d", ap, port, s.port)
			port = s.port
		}
		if g == nil {
			rt.Set("port", port, "")
		}
		rt.Set("weight", rs.weight.or(1), "")
		if rs.upper.ok && rs.upper.v > 0 {
			rt.Set("upper_threshold", rs.upper.v, "")
		}
		if rs.lower.ok && rs.lower.v > 0 {
			rt.Set("lower_threshold", rs.lower.v, "")
		}
		if rs.lower.v > rs.upper.v {
			// ip_vs_add_dest: "lower threshold is higher than upper threshold".
			cv.d.errorf(rs.lower.pos, "lthreshold", "%s: real server %s: lthreshold %d is above uthreshold %d: IPVS refuses the real server", ap, a, rs.lower.v, rs.upper.v)
			bad = true
		}
		cv.realAlert(vs, rs, rt)
		hc, ok := cv.check(vs, rs, a, port)
		if !ok {
			bad = true
		} else if _, set := hc.Get("port"); g != nil && !set && port != xlbCheck && checkUsesPort(hc) {
			hc.Set("port", port, "the real server's port, which keepalived checks")
		}
		checks = append(checks, hc)
		t.Tables = append(t.Tables, rt)
	}
	// One check for every real server goes to the service.
	shared := len(checks) > 0
	for _, hc := range checks {
		shared = shared && hc != nil && sameKeys(hc, checks[0])
	}
	if shared {
		hc := *checks[0]
		hc.Name = "virtual_server.health_check"
		hc.Tables = nil
		for _, u := range checks[0].Tables { // [[...url]]
			uc := *u
			uc.Name = "virtual_server.health_check.url"
			hc.Tables = append(hc.Tables, &uc)
		}
		t.Tables = append([]*Table{&hc}, t.Tables...)
	} else {
		for i, hc := range checks {
			if hc != nil {
				t.Tables[i].Tables = append(t.Tables[i].Tables, hc)
			}
		}
	}
	if bad {
		return
	}
	cv.doc.Tables = append(cv.doc.Tables, t)
}

func sameKeys(a, b *Table) bool {
	if len(a.Keys) != len(b.Keys) || len(a.Tables) != len(b.Tables) {
		return false
	}
	for i := range a.Tables {
		if !sameKeys(a.Tables[i], b.Tables[i]) {
			return false
		}
	}
	for i := range a.Keys {
		if a.Keys[i].Key != b.Keys[i].Key || fmt.Sprint(a.Keys[i].Value) != fmt.Sprint(b.Keys[i].Value) {
			return false
		}
	}
	return true
}

// SchedulerList lists IPVS's names of xlb's schedulers: "rr, wrr, ...".
func SchedulerList() string {
	var l []string
	for _, s := range dataplane.SchedulerTable {
		if s.IPVS != "" {
			l = append(l, s.IPVS)
		}
	}
	return strings.Join(l, ", ")
}

// checkUsesPort reports whether a converted check connects to a port.
func checkUsesPort(hc *Table) bool {
	typ, _ := hc.Get("type")
	s, _ := typ.(string)
	spec, _ := checktype.Type(s).Spec()
	return spec.Port
}
