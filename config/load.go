package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults that are not obvious from the field documentation.
const (
	DefaultPinPath       = "/sys/fs/bpf/xlb"
	DefaultMetricsListen = "127.0.0.1:9477"
	DefaultSocket        = "/run/xlb/xlb.sock"
)

// Load reads the configuration file at path, applies defaults and validates
// it (with env, when not nil, for live facts such as interfaces). A problem
// with the content is returned as an *Errors listing every one of them; a
// file that cannot be read is a plain error.
func Load(path string, env Env) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, env)
}

// Parse is Load for a configuration already in memory; name is used in
// error messages and as Config.File.
func Parse(name string, data []byte, env Env) (*Config, error) {
	var root map[string]any
	if _, err := toml.Decode(string(data), &root); err != nil {
		e := Error{File: name, Msg: "invalid TOML: " + err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line = pe.Position.Line
			e.Msg = "invalid TOML: " + pe.Message
		}
		return nil, &Errors{List: []Error{e}}
	}
	d := &decoder{file: name, idx: buildLineIndex(string(data)), env: env}
	cfg := d.config(root)
	if len(d.errs) > 0 {
		errs := &Errors{List: d.errs}
		errs.sort()
		return nil, errs
	}
	if len(d.warns) > 0 {
		w := &Errors{List: d.warns}
		w.sort()
		cfg.Warnings = w.List
	}
	return cfg, nil
}

func (d *decoder) config(root map[string]any) *Config {
	c := &Config{File: d.file}
	rt := d.table(nil, "", root)
	meta := &meta{}
	dp := rt.sub("dataplane", "[dataplane]")
	meta.dataplane = dp

	d.global(rt.sub("global", "[global]"), &c.Global)
	d.dataplane(dp, &c.Dataplane)
	d.metrics(rt.sub("metrics", "[metrics]"), &c.Metrics)
	d.control(rt.sub("control", "[control]"), &c.Control)
	for _, t := range rt.tables("vrrp_script") {
		c.VRRPScripts = append(c.VRRPScripts, d.vrrpScript(t))
		meta.scripts = append(meta.scripts, t.p)
	}
	for _, t := range rt.tables("vrrp_sync_group") {
		g, m := d.syncGroup(t)
		c.SyncGroups = append(c.SyncGroups, g)
		meta.groups = append(meta.groups, m)
	}
	for _, t := range rt.tables("vrrp_instance") {
		v, m := d.vrrpInstance(t)
		c.VRRPInstances = append(c.VRRPInstances, v)
		meta.instances = append(meta.instances, m)
	}
	for _, t := range rt.tables("virtual_server") {
		v, m := d.virtualServer(t)
		c.VirtualServers = append(c.VirtualServers, v)
		meta.services = append(meta.services, m)
	}
	rt.finish()

	d.crossCheck(c, meta)
	return c
}

func (d *decoder) global(t *table, g *Global) {
	if s, ok := t.str("router_id"); ok {
		if err := checkName(s); err != nil {
			t.errorf("router_id", "router_id: %v", err)
		}
		g.RouterID = s
	} else if !t.has("router_id") {
		h, err := os.Hostname()
		if err != nil || h == "" {
			t.errorf("", "router_id is not set and the host name is unknown (%v): set router_id", err)
		}
		g.RouterID = h
	}
	t.finish()
}

func (d *decoder) dataplane(t *table, dp *Dataplane) {
	*dp = Dataplane{
		Mode:          ModeAuto,
		XDPMode:       XDPAuto,
		PinPath:       DefaultPinPath,
		TCPTimeout:    15 * time.Minute,
		TCPFinTimeout: 2 * time.Minute,
		UDPTimeout:    5 * time.Minute,
	}
	modeOK := true
	if s, ok := t.enum("mode", "auto", "xdp", "ipvs"); ok {
		dp.Mode = Mode(s)
	} else if t.has("mode") {
		modeOK = false
	}
	if s, ok := t.enum("xdp_mode", "auto", "native", "generic"); ok {
		dp.XDPMode = XDPMode(s)
		if dp.Mode == ModeIPVS {
			t.errorf("xdp_mode", "xdp_mode applies only with mode = \"xdp\" or \"auto\" (mode is \"ipvs\")")
		}
	}
	if elems, ok := t.strings("interfaces"); ok {
		seen := map[string]bool{}
		for _, e := range elems {
			name := e.v.(string)
			if err := checkIfName(name); err != nil {
				t.errorAt(e.p, "interfaces: %v", err)
				continue
			}
			if seen[name] {
				t.errorAt(e.p, "interfaces: %q is listed twice", name)
				continue
			}
			seen[name] = true
			dp.Interfaces = append(dp.Interfaces, name)
			d.dpIfaces = append(d.dpIfaces, e.p)
		}
		if len(elems) == 0 && modeOK && dp.Mode != ModeIPVS {
			t.errorf("interfaces", "interfaces: must not be empty with mode = %q (the XDP program is attached there)", dp.Mode)
		}
	} else if !t.has("interfaces") && !t.broken && modeOK && dp.Mode != ModeIPVS {
		t.errorf("", "interfaces: required with mode = %q (where the XDP program is attached)", dp.Mode)
	}
	if s, ok := t.nonEmpty("pin_path"); ok {
		if !filepath.IsAbs(s) {
			t.errorf("pin_path", "pin_path: %q is not an absolute path", s)
		}
		dp.PinPath = filepath.Clean(s)
	}
	if b, ok := t.boolean("keep_forwarding_on_exit"); ok {
		dp.KeepForwardingOnExit = b
	}
	for _, x := range []struct {
		key string
		dst *time.Duration
	}{{"tcp_timeout", &dp.TCPTimeout}, {"tcp_fin_timeout", &dp.TCPFinTimeout}, {"udp_timeout", &dp.UDPTimeout}} {
		// IPVS keeps these in whole seconds.
		if v, ok := t.duration(x.key, time.Second, 0, time.Second); ok {
			*x.dst = v
		}
	}
	t.finish()
}

func (d *decoder) metrics(t *table, m *Metrics) {
	m.Listen = DefaultMetricsListen
	if s, ok := t.str("listen"); ok {
		m.Listen = s
		if s != "" {
			host, port, err := net.SplitHostPort(s)
			if err != nil {
				t.errorf("listen", "listen: %q is not HOST:PORT (\"\" disables metrics)", s)
			} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
				t.errorf("listen", "listen: invalid port %q", port)
			} else if strings.ContainsAny(host, " \t") {
				t.errorf("listen", "listen: invalid host %q", host)
			}
		}
	}
	t.finish()
}

func (d *decoder) control(t *table, c *Control) {
	c.Socket = DefaultSocket
	if s, ok := t.nonEmpty("socket"); ok {
		switch {
		case !filepath.IsAbs(s):
			t.errorf("socket", "socket: %q is not an absolute path", s)
		case len(s) > 107:
			t.errorf("socket", "socket: path is %d bytes long, unix sockets allow 107", len(s))
		}
		c.Socket = s
	}
	t.finish()
}

// name reads the required "name" key of an array element and relabels the
// table with it.
func (t *table) name(kind string) string {
	s, ok := t.str("name")
	if !ok {
		if !t.has("name") {
			t.errorf("", "name: required")
		}
		return ""
	}
	if err := checkName(s); err != nil {
		t.errorf("name", "name: %v", err)
		return s
	}
	t.label = fmt.Sprintf("%s %q", kind, s)
	return s
}

func (d *decoder) vrrpScript(t *table) VRRPScript {
	s := VRRPScript{Interval: time.Second, Weight: 0, Fall: 1, Rise: 1, Line: d.idx.line(t.p)}
	s.Name = t.name("vrrp_script")
	if c, ok := t.command("script"); ok {
		s.Script = c
	} else if !t.has("script") {
		t.errorf("", "script: required")
	}
	if v, ok := t.duration("interval", time.Millisecond, 0, 0); ok {
		s.Interval = v
	}
	s.Timeout = s.Interval
	if v, ok := t.duration("timeout", time.Millisecond, 0, 0); ok {
		s.Timeout = v
	}
	if n, ok := t.integer("weight", -253, 253); ok {
		s.Weight = int(n)
	}
	if n, ok := t.integer("fall", 1, math.MaxInt32); ok {
		s.Fall = int(n)
	}
	if n, ok := t.integer("rise", 1, math.MaxInt32); ok {
		s.Rise = int(n)
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
	g.Name = t.name("vrrp_sync_group")
	if elems, ok := t.strings("group"); ok {
		for _, e := range elems {
			g.Group = append(g.Group, e.v.(string))
			m.members = append(m.members, e.p)
		}
		if len(elems) == 0 {
			t.errorf("group", "group: must list at least one vrrp_instance")
		}
	} else if !t.has("group") {
		t.errorf("", "group: required (the member vrrp_instance names)")
	}
	for _, x := range []struct {
		key string
		dst *Command
	}{
		{"notify_master", &g.NotifyMaster}, {"notify_backup", &g.NotifyBackup},
		{"notify_fault", &g.NotifyFault}, {"notify_stop", &g.NotifyStop}, {"notify", &g.Notify},
	} {
		if c, ok := t.command(x.key); ok {
			*x.dst = c
		}
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
	v := VRRPInstance{
		State:                   StateBackup,
		Priority:                100,
		AdvertInt:               time.Second,
		Version:                 2,
		Preempt:                 true,
		NotifyTimeout:           10 * time.Second,
		GARPMasterDelay:         5 * time.Second,
		GARPMasterRepeat:        5,
		GARPMasterRefreshRepeat: 1,
		SplitBrainCheckInterval: time.Second,
		// Issue 11: a forged advert's interval learned at most 3 times ours.
		LearnedAdvertIntMaxFactor: 3,
		Line:                      d.idx.line(t.p),
	}
	m := instanceMeta{p: t.p}
	v.Name = t.name("vrrp_instance")

	if s, ok := t.str("interface"); ok {
		if err := checkIfName(s); err != nil {
			t.errorf("interface", "interface: %v", err)
		} else {
			v.Interface = s
		}
	} else if !t.has("interface") {
		t.errorf("", "interface: required")
	}
	if s, ok := t.enum("state", "MASTER", "BACKUP"); ok {
		v.State = State(s)
	}
	if n, ok := t.integer("virtual_router_id", 1, 255); ok {
		v.VirtualRouterID = uint8(n)
	} else if !t.has("virtual_router_id") {
		t.errorf("", "virtual_router_id: required (1..255)")
	}
	if n, ok := t.integer("priority", 1, 255); ok {
		v.Priority = uint8(n)
	}
	m.versionOK = true
	if n, ok := t.integer("version", 2, 3); ok {
		v.Version = int(n)
	} else if t.has("version") {
		m.versionOK = false
	}
	if m.versionOK {
		// RFC 3768 5.3.7: whole seconds in 8 bits; RFC 5798 5.2.7:
		// centiseconds in 12 bits.
		if v.Version == 2 {
			if dur, ok := t.duration("advert_int", time.Second, 255*time.Second, time.Second); ok {
				v.AdvertInt = dur
			}
		} else if dur, ok := t.duration("advert_int", 10*time.Millisecond, 4095*10*time.Millisecond, 10*time.Millisecond); ok {
			v.AdvertInt = dur
		}
	} else {
		t.get("advert_int")
	}
	if b, ok := t.boolean("preempt"); ok {
		v.Preempt = b
	}
	if dur, ok := t.duration("preempt_delay", 0, 1000*time.Second, 0); ok {
		v.PreemptDelay = dur
		if !v.Preempt && dur > 0 {
			t.errorf("preempt_delay", "preempt_delay has no effect with preempt = false")
		}
	}
	authTypeSet := false
	if s, ok := t.enum("auth_type", "PASS", "AH"); ok {
		if s == "AH" {
			t.errorf("auth_type", "auth_type: \"AH\" (IPsec authentication header) is not supported; use \"PASS\" or none")
		} else {
			v.AuthType = AuthPass
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
			v.AuthType = AuthPass
		default:
			v.AuthPass = s
			v.AuthType = AuthPass
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

	if s, ok := t.str("unicast_src_ip"); ok {
		if a, err := parseAddr(s); err != nil {
			t.errorf("unicast_src_ip", "unicast_src_ip: %v", err)
		} else {
			v.UnicastSrcIP = a
		}
	}
	var peerPaths []keyPath
	if elems, ok := t.strings("unicast_peers"); ok {
		seen := map[netip.Addr]bool{}
		for _, e := range elems {
			a, err := parseAddr(e.v.(string))
			if err != nil {
				t.errorAt(e.p, "unicast_peers: %v", err)
				continue
			}
			if seen[a] {
				t.errorAt(e.p, "unicast_peers: %s is listed twice", a)
				continue
			}
			if a == v.UnicastSrcIP {
				t.errorAt(e.p, "unicast_peers: %s is the unicast_src_ip", a)
				continue
			}
			seen[a] = true
			v.UnicastPeers = append(v.UnicastPeers, a)
			peerPaths = append(peerPaths, e.p)
		}
	}
	if v.UnicastSrcIP.IsValid() && len(v.UnicastPeers) == 0 && !t.has("unicast_peers") {
		t.errorf("unicast_src_ip", "unicast_src_ip needs unicast_peers (without peers adverts are multicast)")
	}

	if elems, ok := t.strings("virtual_ipaddress"); ok {
		seen := map[netip.Addr]bool{}
		for _, e := range elems {
			vip, err := parseVIP(e.v.(string), v.Interface)
			if err != nil {
				t.errorAt(e.p, "virtual_ipaddress: %v", err)
				continue
			}
			if seen[vip.Prefix.Addr()] {
				t.errorAt(e.p, "virtual_ipaddress: %s is listed twice", vip.Prefix.Addr())
				continue
			}
			seen[vip.Prefix.Addr()] = true
			v.VirtualIPAddresses = append(v.VirtualIPAddresses, vip)
			m.vips = append(m.vips, e.p)
		}
		if len(elems) == 0 {
			t.errorf("virtual_ipaddress", "virtual_ipaddress: must list at least one address")
		}
	} else if !t.has("virtual_ipaddress") {
		t.errorf("", "virtual_ipaddress: required")
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

	if elems, ok := t.strings("track_script"); ok {
		for _, e := range elems {
			name, w, hasW, err := parseTracked(e.v.(string))
			if err != nil {
				t.errorAt(e.p, "track_script: %v", err)
				continue
			}
			v.TrackScripts = append(v.TrackScripts, TrackScript{Name: name, Weight: w})
			m.scripts = append(m.scripts, e.p)
			m.scriptW = append(m.scriptW, hasW)
		}
	}
	if elems, ok := t.strings("track_interface"); ok {
		for _, e := range elems {
			name, w, _, err := parseTracked(e.v.(string))
			if err == nil {
				err = checkIfName(name)
			}
			if err != nil {
				t.errorAt(e.p, "track_interface: %v", err)
				continue
			}
			v.TrackInterfaces = append(v.TrackInterfaces, TrackInterface{Name: name, Weight: w})
			m.ifaces = append(m.ifaces, e.p)
		}
	}
	for _, x := range []struct {
		key string
		dst *Command
	}{
		{"notify_master", &v.NotifyMaster}, {"notify_backup", &v.NotifyBackup},
		{"notify_fault", &v.NotifyFault}, {"notify_stop", &v.NotifyStop}, {"notify", &v.Notify},
	} {
		if c, ok := t.command(x.key); ok {
			*x.dst = c
		}
	}
	if dur, ok := t.duration("notify_timeout", time.Second, 1000*time.Second, 0); ok {
		v.NotifyTimeout = dur
	}
	for _, x := range []struct {
		key string
		dst *time.Duration
	}{
		{"garp_master_delay", &v.GARPMasterDelay}, {"garp_master_refresh", &v.GARPMasterRefresh},
		{"garp_interval", &v.GARPInterval}, {"gna_interval", &v.GNAInterval},
		{"split_brain_check_interval", &v.SplitBrainCheckInterval},
	} {
		if dur, ok := t.duration(x.key, 0, 0, 0); ok {
			*x.dst = dur
		}
	}
	if n, ok := t.integer("garp_master_repeat", 1, math.MaxInt32); ok {
		v.GARPMasterRepeat = int(n)
	}
	if n, ok := t.integer("garp_master_refresh_repeat", 1, math.MaxInt32); ok {
		v.GARPMasterRefreshRepeat = int(n)
	}
	if b, ok := t.boolean("use_vmac"); ok {
		v.UseVMAC = b
	}
	if n, ok := t.integer("learned_advert_int_max_factor", 0, 4095); ok {
		v.LearnedAdvertIntMaxFactor = int(n)
	}

	// RFC 5798 6.4.1: the address owner (priority 255) becomes master at
	// once, and never yields; keepalived's nopreempt works only from BACKUP.
	if v.Priority == 255 && v.State != StateMaster {
		t.errorf("priority", "priority 255 means the address owner, which is always master: set state = \"MASTER\" or a lower priority")
	}
	if !v.Preempt && v.State == StateMaster {
		t.errorf("preempt", "preempt = false needs state = \"BACKUP\" (a MASTER at start preempts anyway)")
	}
	t.finish()
	m.label = t.label
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

// serviceMeta locates what the cross checks report about a service.
type serviceMeta struct {
	p       keyPath
	label   string
	rss     []backendMeta
	sorryOK bool
}

type backendMeta struct {
	p     keyPath
	label string
}

func (d *decoder) virtualServer(t *table) (VirtualServer, serviceMeta) {
	v := VirtualServer{
		Protocol:  TCP,
		Scheduler: WeightedLeastConnection,
		Forward:   DirectRouting,
		Quorum:    1,
		Line:      d.idx.line(t.p),
	}
	m := serviceMeta{p: t.p}
	v.Name = t.name("virtual_server")
	if s, ok := t.str("address"); ok {
		if a, err := parseAddr(s); err != nil {
			t.errorf("address", "address: %v", err)
		} else {
			v.Address = a
		}
	} else if !t.has("address") {
		t.errorf("", "address: required")
	}
	portOK := false
	if p, ok := t.port("port"); ok {
		v.Port, portOK = p, true
	} else if !t.has("port") {
		t.errorf("", "port: required")
	}
	if s, ok := t.enum("protocol", "tcp", "udp"); ok {
		v.Protocol = Protocol(s)
	}
	if s, ok := t.enum("scheduler", "rr", "wrr", "lc", "wlc", "sh", "mh"); ok {
		v.Scheduler = Scheduler(s)
	}
	forwardOK := true
	if s, ok := t.enum("forward", "dr", "nat", "tunnel"); ok {
		v.Forward = Forward(s)
	} else if t.has("forward") {
		forwardOK = false
	}
	if s, ok := t.str("vrrp_instance"); ok {
		if err := checkName(s); err != nil {
			t.errorf("vrrp_instance", "vrrp_instance: %v", err)
		} else {
			v.VRRPInstance = s
		}
	}
	if dur, ok := t.duration("persistence_timeout", 0, 0, time.Second); ok {
		v.PersistenceTimeout = dur
	}
	if n, ok := t.integer("quorum", 1, math.MaxInt32); ok {
		v.Quorum = int(n)
	}
	if n, ok := t.integer("hysteresis", 0, math.MaxInt32); ok {
		v.Hysteresis = int(n)
		if v.Hysteresis >= v.Quorum {
			t.errorf("hysteresis", "hysteresis %d must be less than quorum %d (the service could never go down)", v.Hysteresis, v.Quorum)
		}
	}
	if c, ok := t.command("quorum_up"); ok {
		v.QuorumUp = c
	}
	if c, ok := t.command("quorum_down"); ok {
		v.QuorumDown = c
	}

	// Tunnel options.
	if !forwardOK {
		for _, k := range []string{"tunnel_type", "tunnel_port", "tunnel_source"} {
			t.get(k)
		}
	} else if v.Forward != Tunnel {
		for _, k := range []string{"tunnel_type", "tunnel_port", "tunnel_source"} {
			if t.has(k) {
				t.get(k)
				t.errorf(k, "%s applies only with forward = \"tunnel\" (forward is %q)", k, v.Forward)
			}
		}
	} else {
		v.TunnelType = TunnelIPIP
		if s, ok := t.enum("tunnel_type", "ipip", "gue"); ok {
			v.TunnelType = TunnelType(s)
		}
		if p, ok := t.port("tunnel_port"); ok {
			if v.TunnelType != TunnelGUE {
				t.errorf("tunnel_port", "tunnel_port applies only with tunnel_type = \"gue\"")
			} else {
				v.TunnelPort = p
			}
		} else if v.TunnelType == TunnelGUE && !t.has("tunnel_port") {
			t.errorf("tunnel_type", "tunnel_type = \"gue\" needs tunnel_port (the real servers' GUE UDP port)")
		}
		if s, ok := t.str("tunnel_source"); ok {
			if p, err := parseSource(s); err != nil {
				t.errorf("tunnel_source", "tunnel_source: %v", err)
			} else {
				v.TunnelSource = p
			}
		}
	}

	hcTable := t.sub("health_check", t.label+": health_check")
	svcCheck, timeoutSet := d.healthCheck(hcTable, defaultCheck(), false, true, 0)

	if s, ok := t.str("sorry_server"); ok {
		ap, err := parseSorry(s, v.Port)
		if err != nil {
			t.errorf("sorry_server", "sorry_server: %v", err)
		} else {
			v.SorryServer = ap
			m.sorryOK = true
		}
	}

	seen := map[netip.AddrPort]int{}
	for _, rt := range t.tables("real_server") {
		rs := RealServer{Port: v.Port, Weight: 1, Line: d.idx.line(rt.p)}
		if s, ok := rt.str("address"); ok {
			if a, err := parseAddr(s); err != nil {
				rt.errorf("address", "address: %v", err)
			} else {
				rs.Address = a
			}
		} else if !rt.has("address") {
			rt.errorf("", "address: required")
		}
		if rs.Address.IsValid() {
			rt.label = fmt.Sprintf("%s: real_server %s", t.label, rs.Address)
		}
		rsPortOK := portOK
		if p, ok := rt.port("port"); ok {
			rs.Port, rsPortOK = p, true
		} else if rt.has("port") {
			rsPortOK = false
		}
		if rs.Address.IsValid() && rsPortOK {
			rt.label = fmt.Sprintf("%s: real_server %s", t.label, rs.AddrPort())
		}
		if n, ok := rt.integer("weight", 0, 65535); ok {
			rs.Weight = int(n)
		}
		rs.HealthCheck, _ = d.healthCheck(rt.sub("health_check", rt.label+": health_check"), svcCheck, timeoutSet, false, rs.Port)
		rt.finish()

		if rs.Address.IsValid() && v.Address.IsValid() && forwardOK {
			d.checkBackend(rt, "address", "real server", v, rs.Address)
		}
		if rs.Address.IsValid() && rsPortOK && portOK && forwardOK && v.Forward != NAT && rs.Port != v.Port {
			rt.errorf("port", "port %d differs from the service port %d: only forward = \"nat\" maps ports", rs.Port, v.Port)
		}
		if rs.Address.IsValid() && rsPortOK {
			ap := rs.AddrPort()
			if line, dup := seen[ap]; dup {
				rt.errorf("address", "duplicate real server %s (first on line %d)", ap, line)
			} else {
				seen[ap] = rs.Line
			}
		}
		v.RealServers = append(v.RealServers, rs)
		m.rss = append(m.rss, backendMeta{rt.p, rt.label})
	}
	if v.SorryServer.IsValid() && v.Address.IsValid() && forwardOK {
		if !d.checkBackend(t, "sorry_server", "sorry server", v, v.SorryServer.Addr()) {
			m.sorryOK = false
		}
		if portOK && v.Forward != NAT && v.SorryServer.Port() != v.Port {
			t.errorf("sorry_server", "sorry_server port %d differs from the service port %d: only forward = \"nat\" maps ports", v.SorryServer.Port(), v.Port)
		}
		if line, dup := seen[v.SorryServer]; dup {
			t.errorf("sorry_server", "sorry_server %s is also a real server (line %d)", v.SorryServer, line)
		}
	}
	v.HealthCheck = svcCheck
	t.finish()
	m.label = t.label
	return v, m
}

// checkBackend checks a real or sorry server's address against its service:
// not the VIP itself, and of the family the forwarding method can reach.
func (d *decoder) checkBackend(t *table, key, what string, v VirtualServer, a netip.Addr) bool {
	if a == v.Address {
		t.errorf(key, "%s %s is the virtual server's own address", what, a)
		return false
	}
	if v.Forward == Tunnel && v.TunnelType == TunnelGUE {
		// GUE carries either family in either family.
		if v.TunnelSource.IsValid() && v.TunnelSource.Addr().Is6() != a.Is6() {
			t.errorf(key, "%s %s is %s but tunnel_source %s is not", what, a, family(a), v.TunnelSource)
			return false
		}
		return true
	}
	if a.Is6() != v.Address.Is6() {
		how := fmt.Sprintf("forward = %q", v.Forward)
		if v.Forward == Tunnel {
			how = "tunnel_type = \"ipip\" (use \"gue\" to mix families)"
		}
		t.errorf(key, "%s %s is %s but the virtual server %s is %s: %s needs one family", what, a, family(a), v.Address, family(v.Address), how)
		return false
	}
	if v.Forward == Tunnel && v.TunnelSource.IsValid() && v.TunnelSource.Addr().Is6() != a.Is6() {
		t.errorf(key, "%s %s is %s but tunnel_source %s is not", what, a, family(a), v.TunnelSource)
		return false
	}
	return true
}

// parseSource parses a tunnel source: an address or a prefix without host
// bits.
func parseSource(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := parseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address or prefix %q", s)
	}
	if err := checkAddr(p.Addr()); err != nil {
		return netip.Prefix{}, err
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set (did you mean %s?)", p, p.Masked())
	}
	return p, nil
}

// parseSorry parses "ADDR:PORT", "[ADDR6]:PORT" or "ADDR" (the service port).
func parseSorry(s string, port uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if err := checkAddr(ap.Addr()); err != nil {
			return netip.AddrPort{}, err
		}
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("port 0 in %q", s)
		}
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDR, ADDR:PORT or [ADDR6]:PORT", s)
	}
	if err := checkAddr(a); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, port), nil
}

func defaultCheck() HealthCheck {
	return HealthCheck{
		Type:         CheckTCP,
		Interval:     2 * time.Second,
		Timeout:      time.Second,
		Fall:         3,
		Rise:         2,
		InitialState: InitialDown,
	}
}

// Keys of a health check that apply only to some types.
var (
	httpKeys   = []string{"path", "expect_status", "body_regex", "host"}
	httpsKeys  = []string{"sni", "tls_verify", "ca_file"}
	scriptKeys = []string{"script"}
)

// healthCheck decodes a health_check table over base: a service's
// (isService) over the defaults, a real server's over its service's, with
// rsPort the real server's port. timeoutSet says whether base's timeout was
// written (else it follows a shorter interval); it is returned updated.
func (d *decoder) healthCheck(t *table, base HealthCheck, timeoutSet, isService bool, rsPort uint16) (HealthCheck, bool) {
	hc := base
	if isService || t.present() {
		hc.Line = d.idx.line(t.p)
	}
	if s, ok := t.enum("type", "tcp", "http", "https", "script", "none"); ok {
		hc.Type = CheckType(s)
	}
	if dur, ok := t.duration("interval", time.Millisecond, 0, 0); ok {
		hc.Interval = dur
	}
	if dur, ok := t.duration("timeout", time.Millisecond, 0, 0); ok {
		hc.Timeout = dur
		timeoutSet = true
	}
	if !timeoutSet {
		hc.Timeout = min(time.Second, hc.Interval)
	}
	if hc.Timeout > hc.Interval && (t.has("timeout") || t.has("interval")) {
		key := "timeout"
		if !t.has("timeout") {
			key = "interval"
		}
		t.errorf(key, "timeout %v is longer than interval %v", hc.Timeout, hc.Interval)
	}
	if n, ok := t.integer("fall", 1, math.MaxInt32); ok {
		hc.Fall = int(n)
	}
	if n, ok := t.integer("rise", 1, math.MaxInt32); ok {
		hc.Rise = int(n)
	}
	if p, ok := t.port("port"); ok {
		hc.Port = p
	}
	if s, ok := t.str("path"); ok {
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n") {
			t.errorf("path", "path: %q must start with \"/\" and contain no white space", s)
		} else {
			hc.Path = s
		}
	}
	if elems, ok := t.array("expect_status"); ok {
		var codes []int
		for _, e := range elems {
			if n, ok := t.intValue(e.p, "expect_status", e.v, 100, 599); ok {
				codes = append(codes, int(n))
			}
		}
		if len(elems) == 0 {
			t.errorf("expect_status", "expect_status: must list at least one status code")
		}
		if len(codes) > 0 {
			hc.ExpectStatus = codes
		}
	}
	if s, ok := t.str("body_regex"); ok {
		if _, err := regexp.Compile(s); err != nil {
			t.errorf("body_regex", "body_regex: %v", err)
		} else {
			hc.BodyRegex = s
		}
	}
	if s, ok := t.str("host"); ok {
		if strings.ContainsAny(s, " \t\r\n") {
			t.errorf("host", "host: %q contains white space", s)
		} else {
			hc.Host = s
		}
	}
	if s, ok := t.str("sni"); ok {
		hc.SNI = s
	}
	if b, ok := t.boolean("tls_verify"); ok {
		hc.TLSVerify = b
	}
	if s, ok := t.nonEmpty("ca_file"); ok {
		if !filepath.IsAbs(s) {
			t.errorf("ca_file", "ca_file: %q is not an absolute path", s)
		}
		hc.CAFile = s
	}
	if c, ok := t.command("script"); ok {
		hc.Script = c
	}
	if s, ok := t.enum("initial_state", "down", "up"); ok {
		hc.InitialState = InitialState(s)
	}

	// Keys written for another type of check are mistakes.
	isHTTP := hc.Type == CheckHTTP || hc.Type == CheckHTTPS
	for _, k := range httpKeys {
		if t.has(k) && !isHTTP {
			t.errorf(k, "%s applies only to http and https checks (type is %q)", k, hc.Type)
		}
	}
	for _, k := range httpsKeys {
		if t.has(k) && hc.Type != CheckHTTPS {
			t.errorf(k, "%s applies only to https checks (type is %q)", k, hc.Type)
		}
	}
	for _, k := range scriptKeys {
		if t.has(k) && hc.Type != CheckScript {
			t.errorf(k, "%s applies only to script checks (type is %q)", k, hc.Type)
		}
	}
	if hc.Type == CheckScript && hc.Script == "" && (t.has("type") || isService) && !t.has("script") {
		t.errorf("type", "type = \"script\" needs script")
	}
	if hc.Type == CheckHTTPS && hc.CAFile != "" && !hc.TLSVerify && (t.has("ca_file") || t.has("tls_verify")) {
		key := "ca_file"
		if !t.has(key) {
			key = "tls_verify"
		}
		t.errorf(key, "ca_file is used only with tls_verify = true")
	}

	// Inherited keys that do not apply to the type are dropped; defaults
	// of the type are applied.
	if !isHTTP {
		hc.Path, hc.ExpectStatus, hc.BodyRegex, hc.Host = "", nil, "", ""
	} else {
		if hc.Path == "" {
			hc.Path = "/"
		}
		if hc.ExpectStatus == nil {
			hc.ExpectStatus = []int{200}
		}
	}
	if hc.Type != CheckHTTPS {
		hc.SNI, hc.TLSVerify, hc.CAFile = "", false, ""
	}
	if hc.Type != CheckScript {
		hc.Script = ""
	}
	if !isService && hc.Port == 0 {
		hc.Port = rsPort
	}
	t.finish()
	return hc, timeoutSet
}
