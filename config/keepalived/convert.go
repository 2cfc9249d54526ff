package keepalived

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
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
