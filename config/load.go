package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/BurntSushi/toml"

	"github.com/xlb-dev/xlb/dataplane"
)

// Bounds on a configuration file, so that any input costs bounded memory
// and time in xlb check and in every reload.
const (
	// MaxFileSize is the largest file read: 1,024 services of 256 real
	// servers each (the dataplane's limits), written out as one
	// [[virtual_server.real_server]] table with address, port and weight
	// apiece, take 21.7 MB.
	MaxFileSize = 32 << 20
	// MaxDepth bounds the nesting of tables, dotted keys, arrays and inline
	// tables (the length of a key path such as virtual_server[0].port, 3),
	// checked before the TOML decoder sees the document: the decoder's
	// memory grows with the square of the depth. xlb's deepest key path,
	// virtual_server[i].real_server[j].health_check.expect_status[k], is 7.
	MaxDepth = 32
	// maxErrors bounds the problems reported (then counted).
	maxErrors = 1000
)

// Load reads the configuration file at path, applies defaults and validates
// it (with env, when not nil, for live facts such as interfaces). A problem
// with the content is returned as an *Errors listing every one of them; a
// file that cannot be read is a plain error. At most MaxFileSize+1 bytes are
// read, whatever the file is (/dev/zero, a FIFO).
func Load(path string, env Env) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) == 0 {
		return parse(path, "", env)
	}
	// data is never written again nor handed on: the document is read
	// in place (a copy of a 200,000-line file is 4.6 MB more during a
	// reload).
	return parse(path, unsafe.String(&data[0], len(data)), env)
}

// readAll reads at most MaxFileSize+1 bytes of f; a regular file into a
// buffer of its size (io.ReadAll grows its buffer from 512 bytes: 10 MB
// of garbage for a 4.6 MB file).
func readAll(f *os.File) ([]byte, error) {
	r := io.LimitReader(f, MaxFileSize+1)
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return io.ReadAll(r)
	}
	// +1: the end of the file (or its growth since Stat) is seen.
	buf := make([]byte, 0, min(fi.Size(), MaxFileSize)+1)
	for {
		if len(buf) == cap(buf) {
			// The file grew since Stat: the rest as io.ReadAll reads it.
			rest, err := io.ReadAll(r)
			return append(buf, rest...), err
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Parse is Load for a configuration already in memory; name is used in
// error messages and as Config.File.
func Parse(name string, data []byte, env Env) (*Config, error) {
	fail := func(line int, format string, args ...any) (*Config, error) {
		return nil, &Errors{List: []Error{{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}}}
	}
	if len(data) > MaxFileSize {
		return fail(0, "larger than %d MiB, the most xlb reads", MaxFileSize>>20)
	}
	return parse(name, string(data), env)
}

// parse is Parse for a document in a string.
func parse(name, src string, env Env) (*Config, error) {
	fail := func(line int, format string, args ...any) (*Config, error) {
		return nil, &Errors{List: []Error{{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}}}
	}
	if len(src) > MaxFileSize {
		return fail(0, "larger than %d MiB, the most xlb reads", MaxFileSize>>20)
	}
	root, idx, ok := decodeTOML(src)
	if !ok || slowOnly {
		slow := buildLineIndex(src)
		if slow.deep > 0 {
			return fail(slow.deep, "nested deeper than %d levels (tables, dotted keys, arrays and inline tables)", MaxDepth)
		}
		if _, err := toml.Decode(src, &root); err != nil {
			var pe toml.ParseError
			if errors.As(err, &pe) {
				return fail(pe.Position.Line, "invalid TOML: %s", pe.Message)
			}
			return fail(0, "invalid TOML: %v", err)
		}
		idx = slow
	}
	d := &decoder{file: name, idx: idx, env: env}
	cfg := d.config(root)
	if len(d.errs.list) > 0 {
		return nil, &Errors{List: d.errs.sorted(name)}
	}
	if len(d.warns.list) > 0 {
		cfg.Warnings = d.warns.sorted(name)
	}
	return cfg, nil
}

// slowOnly turns fastParse and fastReal off (tests compare).
var slowOnly = false

// decodeTOML decodes src with fastParse; ok is false when it gave up
// (Parse then decodes it with BurntSushi/toml and the line index).
func decodeTOML(src string) (map[string]any, lineFinder, bool) {
	root, lines, ok := fastParse(src)
	if !ok {
		return nil, nil, false
	}
	return root, lines, true
}

func (d *decoder) config(root map[string]any) *Config {
	c := &Config{File: d.file}
	rt := d.table(nil, "", root, sectionOf(""))
	meta := &meta{}
	meta.global, meta.dataplane = rt.sub("global"), rt.sub("dataplane")
	d.global(meta.global, &c.Global)
	d.dataplane(meta.dataplane, &c.Dataplane)
	d.plain(rt.sub("metrics"), &c.Metrics)
	d.plain(rt.sub("control"), &c.Control)
	d.plain(rt.sub("debug"), &c.Debug)
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
	for _, t := range rt.tables("virtual_server_group") {
		c.VirtualServerGroups = append(c.VirtualServerGroups, d.vsGroup(t))
		meta.vsGroups = append(meta.vsGroups, t.p)
	}
	groups := map[string]*VirtualServerGroup{}
	for i := range c.VirtualServerGroups {
		if g := &c.VirtualServerGroups[i]; groups[g.Name] == nil {
			groups[g.Name] = g
		}
	}
	c.VirtualServers, meta.services = d.virtualServers(rt.tables("virtual_server"), rt.m, groups)
	if rt.has("bgp") {
		c.BGP = d.bgp(rt.sub("bgp"))
	}
	if rt.has("sync") {
		c.Sync = d.sync(rt.sub("sync"))
	}
	rt.finish()

	d.crossCheck(c, meta)
	d.checkMail(c, meta.global)
	d.checkBGP(c, rt.p.key("bgp"))
	d.checkSync(c, rt.p.key("sync"))
	return c
}

// plain decodes a table that the key table describes entirely.
func (d *decoder) plain(t *table, dst any) {
	t.fill(dst)
	t.finish()
}

func (d *decoder) global(t *table, g *Global) {
	t.fill(g)
	if !t.has("router_id") {
		h, err := os.Hostname()
		if err != nil || h == "" {
			t.errorf("", "router_id is not set and the host name is unknown (%v): set router_id", err)
		}
		g.RouterID = h
	}
	if t.has("script_group") && !t.has("script_user") {
		t.errorf("script_group", "script_group needs script_user (as keepalived's script_user USER GROUP)")
	}
	d.globalMail(t, g)
	t.finish()
}

func (d *decoder) dataplane(t *table, dp *Dataplane) {
	t.fill(dp)
	if t.ok("xdp_mode") && dp.Mode == ModeIPVS {
		t.errorf("xdp_mode", "xdp_mode applies only with mode = \"xdp\" or \"auto\" (mode is \"ipvs\")")
	}
	dp.PinPath = filepath.Clean(dp.PinPath)
	needed := t.valid("mode") && dp.Mode != ModeIPVS
	seen := map[string]bool{}
	n, ok := t.each("interfaces", func(_ int, p keyPath, v any) {
		name := v.(string)
		if seen[name] {
			t.errorAt(p, "interfaces: %q is listed twice", name)
			return
		}
		seen[name] = true
		dp.Interfaces = append(dp.Interfaces, name)
		d.dpIfaces = append(d.dpIfaces, p)
	})
	if ok && n == 0 && needed {
		t.errorf("interfaces", "interfaces: must not be empty with mode = %q (the XDP program is attached there)", dp.Mode)
	} else if !t.has("interfaces") && !t.broken && needed {
		t.errorf("", "interfaces: required with mode = %q (where the XDP program is attached)", dp.Mode)
	}
	t.finish()
}

// serviceMeta locates what the cross checks report about a service.
type serviceMeta struct {
	p       keyPath
	label   string
	rss     []backendMeta
	sorryOK bool
	// entry is the service's index among its group's entries (0 without
	// a group): the checks of what the entries share report on entry 0.
	entry int
}

type backendMeta struct {
	// rt is the real server's table; nil when fastReal decoded it, which
	// leaves it to be located by its service's table t and its index j.
	rt *table
	t  *table
	j  int
	ap netip.AddrPort
}

func (b backendMeta) path() keyPath {
	if b.rt != nil {
		return b.rt.p
	}
	return b.t.p.key("real_server").index(b.j)
}

func (b backendMeta) label() string {
	if b.rt != nil {
		return b.rt.label()
	}
	return b.t.label() + ": real_server " + b.ap.String()
}

// virtualServer decodes a [[virtual_server]]: one service, or one per
// entry of its group (expand).
func (d *decoder) virtualServer(t *table, groups map[string]*VirtualServerGroup) ([]VirtualServer, []serviceMeta) {
	v := VirtualServer{Line: d.idx.line(t.p)}
	m := serviceMeta{p: t.p}
	var ge groupEntries
	if t.has("group") {
		t.skip("address", "port")
	}
	t.fill(&v)
	for _, k := range []string{"address", "port"} {
		if t.has("group") && t.has(k) {
			t.errorf(k, "%s: not with group (the group's entries are the addresses and ports)", k)
		}
	}
	if v.Group != "" {
		ge.grp = groups[v.Group]
		switch {
		case ge.grp == nil:
			t.errorf("group", "group: unknown virtual_server_group %q", v.Group)
		case len(ge.grp.Entries) > 0:
			v.Address, v.Port = ge.grp.Entries[0].Addr(), ge.grp.Entries[0].Port()
		}
	}
	d.alertDefault(t, &v.SMTPAlert, d.mail.checker)
	portOK, forwardOK := t.ok("port") || v.Port != 0, t.valid("forward")
	if t.ok("hysteresis") && v.Hysteresis >= v.Quorum {
		t.errorf("hysteresis", "hysteresis %d must be less than quorum %d (the service could never go down)", v.Hysteresis, v.Quorum)
	}

	// Tunnel options.
	tunnelKeys := []string{"tunnel_type", "tunnel_port", "tunnel_source"}
	if !forwardOK || v.Forward != dataplane.Tunnel {
		v.TunnelType = ""
		for _, k := range tunnelKeys {
			if forwardOK && t.has(k) {
				t.errorf(k, "%s applies only with forward = \"tunnel\" (forward is %q)", k, v.Forward)
			}
		}
	} else {
		if s, ok := t.str("tunnel_type"); ok {
			v.TunnelType = dataplane.Encap(s)
		}
		if p, ok := t.read(t.spec("tunnel_port")); ok {
			if v.TunnelType != dataplane.EncapGUE {
				t.errorf("tunnel_port", "tunnel_port applies only with tunnel_type = \"gue\"")
			} else {
				v.TunnelPort = uint16(p.(int64))
			}
		} else if v.TunnelType == dataplane.EncapGUE && !t.has("tunnel_port") {
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

	var base HealthCheck
	hcTable := t.sub("health_check")
	setDefaults(hcTable.sec, &base)
	svcCheck, timeoutSet := d.healthCheck(hcTable, base, false, true, 0)

	if s, ok := t.str("sorry_server"); ok {
		ap, err := parseSorry(s, v.Port)
		if err != nil {
			t.errorf("sorry_server", "sorry_server: %v", err)
		} else {
			v.SorryServer = ap
			m.sorryOK = true
			_, err := netip.ParseAddrPort(s)
			ge.sorryPort = err == nil
		}
	}

	// Real servers written as [[virtual_server.real_server]] tables with
	// valid values only (all but a few, with thousands of them) take
	// fastReal; the others, and those it leaves, the generic path.
	raw, _ := t.m["real_server"].([]map[string]any)
	var rts []*table
	var lines []int
	var lazy []*lnode // raw's nodes, when their maps are filled only for the generic path
	if raw == nil || slowOnly {
		raw = nil
		rts = t.tables("real_server")
	} else {
		if lazy = d.idx.lazyElems(t.p.key("real_server")); len(lazy) != len(raw) {
			lazy = nil
			d.idx.fillElems(t.p.key("real_server"))
		}
		lines = d.idx.elemLines(t.p.key("real_server"))
	}
	n := max(len(rts), len(raw))
	seen := make(map[netip.AddrPort]int, n)
	v.RealServers = make([]RealServer, 0, n)
	m.rss = make([]backendMeta, 0, n)
	fr := fastRealer{d: d, t: t, v: &v, m: &m, seen: seen, svcCheck: svcCheck, portOK: portOK, forwardOK: forwardOK, ge: &ge}
	for j := range n {
		var rt *table
		if raw != nil {
			var kv fewKeys
			few := false
			if lazy != nil {
				few = lazy[j].fewKeys(&kv)
			} else {
				few = kv.fromMap(raw[j])
			}
			if few && j < len(lines) && fr.real(&kv, j, lines[j]) {
				continue
			}
			if lazy != nil {
				lazy[j].fillTable()
			}
			rt = d.table(t.p.key("real_server").index(j), "", raw[j], sectionOf("virtual_server.real_server"))
			rt.setLabel(lazyLabel{kind: labelElem, parent: t, key: "real_server", n: j + 1})
		} else {
			rt = rts[j]
		}
		// Decoded in place: a RealServer is large, and there may be
		// 65,536 of them.
		v.RealServers = append(v.RealServers, RealServer{Port: v.Port, Line: d.idx.line(rt.p)})
		rs := &v.RealServers[len(v.RealServers)-1]
		setDefaults(rt.sec, rs)
		rt.decode(rs, "address")
		if rs.Address.IsValid() {
			rt.setLabel(lazyLabel{kind: labelReal, parent: t, addr: netip.AddrPortFrom(rs.Address, 0)})
		}
		rt.decode(rs, "port")
		rsPortOK := portOK
		if rt.has("port") {
			rsPortOK = rt.valid("port")
		}
		if rs.Address.IsValid() && rsPortOK {
			rt.setLabel(lazyLabel{kind: labelReal, parent: t, addr: rs.AddrPort(), port: true})
		}
		rt.decode(rs)
		if rt.has("health_check") {
			hc, _ := d.healthCheck(rt.sub("health_check"), svcCheck, timeoutSet, false, rs.Port)
			rs.HealthCheck = &hc
		} else {
			// What healthCheck makes of an empty table: the service's.
			rs.HealthCheck = fr.inherit(rs.Port)
		}
		if rs.LowerThreshold > rs.UpperThreshold {
			rt.errorf("lower_threshold", "lower_threshold %d is above upper_threshold %d (IPVS refuses it; 0 is 3/4 of upper_threshold)", rs.LowerThreshold, rs.UpperThreshold)
		}
		d.alertDefault(rt, &rs.SMTPAlert, v.SMTPAlert)
		ge.rsPortSet = append(ge.rsPortSet, rt.has("port"))
		rt.finish()
		if hc := rs.HealthCheck; hc.BindTo.IsValid() && rs.Address.IsValid() {
			checked := hc.ConnectIP
			if !checked.IsValid() {
				checked = rs.Address
			}
			if checked.Is4() != hc.BindTo.Is4() {
				rt.errorf("health_check", "health_check: bindto %s is %s but the address checked, %s, is not", hc.BindTo, family(hc.BindTo), checked)
			}
		}

		if rs.Address.IsValid() && v.Address.IsValid() && forwardOK {
			d.checkBackend(rt, "address", "real server", v, rs.Address)
		}
		if rs.Address.IsValid() && rsPortOK && portOK && forwardOK && v.Forward != dataplane.NAT && rs.Port != v.Port {
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
		m.rss = append(m.rss, backendMeta{rt: rt})
	}
	if v.SorryServer.IsValid() && v.Address.IsValid() && forwardOK {
		if !d.checkBackend(t, "sorry_server", "sorry server", v, v.SorryServer.Addr()) {
			m.sorryOK = false
		}
		if portOK && v.Forward != dataplane.NAT && v.SorryServer.Port() != v.Port {
			t.errorf("sorry_server", "sorry_server port %d differs from the service port %d: only forward = \"nat\" maps ports", v.SorryServer.Port(), v.Port)
		}
		if line, dup := seen[v.SorryServer]; dup {
			t.errorf("sorry_server", "sorry_server %s is also a real server (line %d)", v.SorryServer, line)
		}
	}
	v.HealthCheck = svcCheck
	t.finish()
	m.label = t.label()
	return d.expand(v, m, ge, forwardOK)
}

// checkBackend checks a real or sorry server's address against its service:
// not the VIP itself, and of the family the forwarding method can reach.
func (d *decoder) checkBackend(t *table, key, what string, v VirtualServer, a netip.Addr) bool {
	if msg := backendProblem(what, v, a); msg != "" {
		t.errorf(key, "%s", msg)
		return false
	}
	return true
}

// backendProblem is checkBackend's finding, "" for none.
func backendProblem(what string, v VirtualServer, a netip.Addr) string {
	if a == v.Address {
		return fmt.Sprintf("%s %s is the virtual server's own address", what, a)
	}
	if v.Forward == dataplane.Tunnel && v.TunnelType == dataplane.EncapGUE {
		// GUE carries either family in either family.
		if v.TunnelSource.IsValid() && v.TunnelSource.Addr().Is6() != a.Is6() {
			return fmt.Sprintf("%s %s is %s but tunnel_source %s is not", what, a, family(a), v.TunnelSource)
		}
		return ""
	}
	if a.Is6() != v.Address.Is6() {
		how := fmt.Sprintf("forward = %q", v.Forward)
		if v.Forward == dataplane.Tunnel {
			how = "tunnel_type = \"ipip\" (use \"gue\" to mix families)"
		}
		return fmt.Sprintf("%s %s is %s but the virtual server %s is %s: %s needs one family", what, a, family(a), v.Address, family(v.Address), how)
	}
	if v.Forward == dataplane.Tunnel && v.TunnelSource.IsValid() && v.TunnelSource.Addr().Is6() != a.Is6() {
		return fmt.Sprintf("%s %s is %s but tunnel_source %s is not", what, a, family(a), v.TunnelSource)
	}
	return ""
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
