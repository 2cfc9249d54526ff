package keepalived

// The virtual servers, their groups and real servers, converted into
// [[virtual_server]] tables: part of the converter in convert.go.

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
)

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
			if len(svcs) == 0 {
				// keepalived removes such a group, then the virtual
				// servers that name it (check_parser.c, check_data.c).
				used[g.name] = true
				cv.d.warnf(vs.pos, "virtual_server group", "virtual_server_group %q has no entries: this virtual_server is dropped, as keepalived drops it", vs.group)
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
