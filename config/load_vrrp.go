package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	vrrpnames "github.com/xlb-dev/xlb/vrrp/names"
)

func (d *decoder) vrrpScript(t *table) VRRPScript {
	s := VRRPScript{Line: d.idx.line(t.p)}
	t.fill(&s)
	if !t.ok("timeout") {
		s.Timeout = s.Interval
	}
	t.finish()
	return s
}

// groupMeta locates a sync group's members.
type groupMeta struct {
	p       keyPath
	members []keyPath
}

func (d *decoder) syncGroup(t *table) (SyncGroup, groupMeta) {
	g := SyncGroup{Line: d.idx.line(t.p)}
	m := groupMeta{p: t.p}
	t.decode(&g)
	d.alertDefault(t, &g.SMTPAlert, d.mail.vrrp)
	n, ok := t.each("group", func(_ int, p keyPath, v any) {
		g.Group = append(g.Group, v.(string))
		m.members = append(m.members, p)
	})
	if ok && n == 0 {
		t.errorf("group", "group: must list at least one vrrp_instance")
	}
	t.finish()
	return g, m
}

// instanceMeta locates what the cross checks report about an instance.
type instanceMeta struct {
	p           keyPath
	label       string
	vips        []keyPath
	scripts     []keyPath
	scriptW     []bool // the entry sets its own weight
	ifaces      []keyPath
	versionOK   bool
	familyKnown bool
}

func (d *decoder) vrrpInstance(t *table) (VRRPInstance, instanceMeta) {
	v := VRRPInstance{Line: d.idx.line(t.p)}
	m := instanceMeta{p: t.p}
	t.fill(&v)
	d.alertDefault(t, &v.SMTPAlert, d.mail.vrrp)
	m.versionOK = t.valid("version")
	if m.versionOK {
		// RFC 3768 5.3.7: whole seconds in 8 bits; RFC 5798 5.2.7:
		// centiseconds in 12 bits.
		k := *t.spec("advert_int")
		k.lo, k.hi, k.step = sec, 255*sec, time.Second
		if v.Version == 3 {
			k.lo, k.hi, k.step = 10*ms, 4095*10*ms, 10*time.Millisecond
		}
		if dur, ok := t.read(&k); ok {
			v.AdvertInt = dur.(time.Duration)
		}
	}
	if t.ok("preempt_delay") && !v.Preempt && v.PreemptDelay > 0 {
		t.errorf("preempt_delay", "preempt_delay has no effect with preempt = false")
	}
	authTypeSet := false
	if s, ok := t.str("auth_type"); ok {
		if vrrpnames.AuthType(s) == vrrpnames.AuthAH {
			t.errorf("auth_type", "auth_type: \"AH\" (IPsec authentication header) is not supported; use \"PASS\" or none")
		} else {
			v.AuthType = vrrpnames.AuthPass
			authTypeSet = true
		}
	}
	if s, ok := t.str("auth_pass"); ok {
		switch {
		case s == "":
			t.errorf("auth_pass", "auth_pass: must not be empty (remove it for no authentication)")
		case len(s) > 8:
			// As keepalived: the first 8 bytes go on the wire, with a
			// warning, so a migrated configuration keeps its peer.
			t.warnf("auth_pass", "auth_pass: %d bytes long, the VRRPv2 field holds 8: the first 8 are used (as keepalived does)", len(s))
			v.AuthPass = s[:8]
			v.AuthType = vrrpnames.AuthPass
		default:
			v.AuthPass = s
			v.AuthType = vrrpnames.AuthPass
		}
	} else if authTypeSet && !t.has("auth_pass") {
		t.errorf("auth_type", "auth_type = \"PASS\" needs auth_pass")
	}
	if m.versionOK && v.Version == 3 {
		for _, k := range []string{"auth_type", "auth_pass"} {
			if t.has(k) {
				t.errorf(k, "%s: VRRP version 3 has no authentication (RFC 5798); remove it or use version = 2", k)
			}
		}
	}

	var peerPaths []keyPath
	seen := map[netip.Addr]bool{}
	t.each("unicast_peers", func(_ int, p keyPath, x any) {
		a := x.(netip.Addr)
		switch {
		case seen[a]:
			t.errorAt(p, "unicast_peers: %s is listed twice", a)
		case a == v.UnicastSrcIP:
			t.errorAt(p, "unicast_peers: %s is the unicast_src_ip", a)
		default:
			seen[a] = true
			v.UnicastPeers = append(v.UnicastPeers, a)
			peerPaths = append(peerPaths, p)
		}
	})
	if v.UnicastSrcIP.IsValid() && len(v.UnicastPeers) == 0 && !t.has("unicast_peers") {
		t.errorf("unicast_src_ip", "unicast_src_ip needs unicast_peers (without peers adverts are multicast)")
	}

	clear(seen)
	n, ok := t.each("virtual_ipaddress", func(_ int, p keyPath, x any) {
		vip, err := parseVIP(x.(string), v.Interface)
		switch {
		case err != nil:
			t.errorAt(p, "virtual_ipaddress: %v", err)
		case seen[vip.Prefix.Addr()]:
			t.errorAt(p, "virtual_ipaddress: %s is listed twice", vip.Prefix.Addr())
		default:
			seen[vip.Prefix.Addr()] = true
			v.VirtualIPAddresses = append(v.VirtualIPAddresses, vip)
			m.vips = append(m.vips, p)
		}
	})
	if ok && n == 0 {
		t.errorf("virtual_ipaddress", "virtual_ipaddress: must list at least one address")
	}
	// One family per instance: an advertisement carries addresses of its
	// own IP version only (RFC 5798 5.2.9).
	if len(v.VirtualIPAddresses) > 0 {
		m.familyKnown = true
		is6 := v.Is6()
		for i, vip := range v.VirtualIPAddresses {
			if vip.Prefix.Addr().Is6() != is6 {
				t.errorAt(m.vips[i], "virtual_ipaddress: %s is %s but %s is %s: one instance serves one address family",
					vip.Prefix.Addr(), family(vip.Prefix.Addr()), v.VirtualIPAddresses[0].Prefix.Addr(), family(v.VirtualIPAddresses[0].Prefix.Addr()))
				m.familyKnown = false
			}
		}
		if is6 && m.versionOK && v.Version == 2 {
			key := "virtual_ipaddress"
			if t.has("version") {
				key = "version"
			}
			t.errorf(key, "IPv6 virtual addresses need version = 3 (VRRP version 2 is IPv4 only)")
		}
		fam := family(v.VirtualIPAddresses[0].Prefix.Addr())
		if v.UnicastSrcIP.IsValid() && v.UnicastSrcIP.Is6() != is6 {
			t.errorf("unicast_src_ip", "unicast_src_ip: %s is not %s like the virtual addresses", v.UnicastSrcIP, fam)
		}
		for i, a := range v.UnicastPeers {
			if a.Is6() != is6 {
				t.errorAt(peerPaths[i], "unicast_peers: %s is not %s like the virtual addresses", a, fam)
			}
		}
	}

	t.each("track_script", func(_ int, p keyPath, x any) {
		name, w, hasW, err := parseTracked(x.(string))
		if err != nil {
			t.errorAt(p, "track_script: %v", err)
			return
		}
		v.TrackScripts = append(v.TrackScripts, TrackScript{Name: name, Weight: w})
		m.scripts = append(m.scripts, p)
		m.scriptW = append(m.scriptW, hasW)
	})
	t.each("track_interface", func(_ int, p keyPath, x any) {
		name, w, _, err := parseTracked(x.(string))
		if err == nil {
			err = checkIfName(name)
		}
		if err != nil {
			t.errorAt(p, "track_interface: %v", err)
			return
		}
		v.TrackInterfaces = append(v.TrackInterfaces, TrackInterface{Name: name, Weight: w})
		m.ifaces = append(m.ifaces, p)
	})

	// RFC 5798 6.4.1: the address owner (priority 255) becomes master at
	// once, and never yields; keepalived's nopreempt works only from BACKUP.
	if v.Priority == 255 && v.State != vrrpnames.Master {
		t.errorf("priority", "priority 255 means the address owner, which is always master: set state = \"MASTER\" or a lower priority")
	}
	if !v.Preempt && v.State == vrrpnames.Master {
		t.errorf("preempt", "preempt = false needs state = \"BACKUP\" (a MASTER at start preempts anyway)")
	}
	t.finish()
	m.label = t.label()
	return v, m
}

// parseVIP parses "ADDR[/LEN] [dev IF] [label L]" (keepalived's syntax).
func parseVIP(s, defDev string) (VIP, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return VIP{}, fmt.Errorf("empty entry")
	}
	var vip VIP
	if strings.Contains(f[0], "/") {
		p, err := netip.ParsePrefix(f[0])
		if err != nil {
			return VIP{}, fmt.Errorf("invalid address/length %q", f[0])
		}
		if err := checkAddr(p.Addr()); err != nil {
			return VIP{}, err
		}
		vip.Prefix = p
	} else {
		a, err := parseAddr(f[0])
		if err != nil {
			return VIP{}, err
		}
		vip.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	devSet, labelSet := false, false
	for i := 1; i < len(f); i += 2 {
		if i+1 >= len(f) {
			return VIP{}, fmt.Errorf("%q needs a value in %q", f[i], s)
		}
		switch val := f[i+1]; f[i] {
		case "dev":
			if devSet {
				return VIP{}, fmt.Errorf("dev given twice in %q", s)
			}
			if err := checkIfName(val); err != nil {
				return VIP{}, err
			}
			vip.Dev, devSet = val, true
		case "label":
			if labelSet {
				return VIP{}, fmt.Errorf("label given twice in %q", s)
			}
			vip.Label, labelSet = val, true
		default:
			return VIP{}, fmt.Errorf("unknown word %q in %q (want ADDR[/LEN] [dev IF] [label LABEL])", f[i], s)
		}
	}
	if !devSet {
		vip.Dev = defDev
	}
	if labelSet {
		switch {
		case !vip.Prefix.Addr().Is4():
			return VIP{}, fmt.Errorf("label %q: only IPv4 addresses have labels", vip.Label)
		case len(vip.Label) > 15:
			return VIP{}, fmt.Errorf("label %q is longer than 15 bytes", vip.Label)
		case vip.Dev != "" && vip.Label != vip.Dev && !strings.HasPrefix(vip.Label, vip.Dev+":"):
			return VIP{}, fmt.Errorf("label %q must be %q or start with \"%s:\"", vip.Label, vip.Dev, vip.Dev)
		}
	}
	return vip, nil
}

// parseTracked parses a track_script or track_interface entry:
// "NAME [weight N]", N in -253..253.
func parseTracked(s string) (name string, weight int, hasWeight bool, err error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 0:
		return "", 0, false, fmt.Errorf("empty entry")
	case len(f) == 1:
		return f[0], 0, false, nil
	case len(f) == 3 && f[1] == "weight":
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return "", 0, false, fmt.Errorf("weight %q in %q is not an integer", f[2], s)
		}
		if n < -253 || n > 253 {
			return "", 0, false, fmt.Errorf("weight %d in %q is out of range (-253..253)", n, s)
		}
		return f[0], n, true, nil
	}
	return "", 0, false, fmt.Errorf("%q: want NAME or \"NAME weight N\"", s)
}
