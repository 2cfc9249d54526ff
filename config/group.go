package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/xlb-dev/xlb/dataplane"
)

// [[virtual_server_group]]: several addresses and ports sharing one set of
// real servers and their checks (keepalived's virtual_server_group,
// check_parser.c). A virtual server naming a group is expanded into one
// service per address and port; the checks of its real servers are the
// first entry's, shared by all.

// MaxGroupAddrs bounds the addresses and ports a virtual_server_group
// expands to, its ranges included: each is a service of its own, and the
// XDP dataplane holds 1024 of them.
const MaxGroupAddrs = 1024

func (d *decoder) vsGroup(t *table) VirtualServerGroup {
	g := VirtualServerGroup{Line: d.idx.line(t.p)}
	t.decode(&g)
	seen := map[netip.AddrPort]bool{}
	full := false
	n, ok := t.each("entries", func(_ int, p keyPath, v any) {
		aps, err := parseGroupEntry(v.(string))
		if err != nil {
			t.errorAt(p, "entries: %v", err)
			return
		}
		if len(g.Entries) > 0 && g.Entries[0].Addr().Is6() != aps[0].Addr().Is6() {
			t.errorAt(p, "entries: %s is %s but %s is %s: one family per group", aps[0].Addr(), family(aps[0].Addr()),
				g.Entries[0].Addr(), family(g.Entries[0].Addr()))
			return
		}
		for _, ap := range aps {
			if seen[ap] {
				t.errorAt(p, "entries: %s is listed twice", ap)
				return
			}
		}
		if len(g.Entries)+len(aps) > MaxGroupAddrs {
			if !full {
				t.errorAt(p, "entries: more than %d addresses and ports in one group", MaxGroupAddrs)
			}
			full = true
			return
		}
		for _, ap := range aps {
			seen[ap] = true
			g.Entries = append(g.Entries, ap)
		}
	})
	if ok && n == 0 {
		t.errorf("entries", "entries: must list at least one address and port")
	}
	t.finish()
	return g
}

// parseGroupEntry parses "ADDR:PORT", "[ADDR6]:PORT", "A.B.C.D-LAST:PORT"
// (a range of the last byte) or "[ADDR6-LAST]:PORT" (of the last group, in
// hex), as keepalived's "ADDR[-LAST] PORT".
func parseGroupEntry(s string) ([]netip.AddrPort, error) {
	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return nil, fmt.Errorf("%q: want [ADDR6]:PORT or [ADDR6-LAST]:PORT", s)
		}
		host, port = s[1:end], s[end+2:]
	} else {
		i := strings.LastIndex(s, ":")
		if i < 0 {
			return nil, fmt.Errorf("%q: want ADDR:PORT, ADDR-LAST:PORT or [ADDR6]:PORT", s)
		}
		host, port = s[:i], s[i+1:]
		if strings.Contains(host, ":") {
			return nil, fmt.Errorf("%q: write an IPv6 entry as [ADDR6]:PORT", s)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return nil, fmt.Errorf("%q: invalid port %q", s, port)
	}
	first, last, isRange := strings.Cut(host, "-")
	a, err := parseAddr(first)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	if !isRange {
		return []netip.AddrPort{netip.AddrPortFrom(a, uint16(p))}, nil
	}
	b := a.AsSlice()
	var from, to uint64
	if a.Is4() {
		from = uint64(b[3])
		to, err = strconv.ParseUint(last, 10, 8)
	} else {
		from = uint64(b[14])<<8 | uint64(b[15])
		to, err = strconv.ParseUint(last, 16, 16)
	}
	if err != nil || to < from {
		return nil, fmt.Errorf("%q: the range's last %s must be a number from %d to %d", s,
			ternary(a.Is4(), "byte", "group (hex)"), from, ternary(a.Is4(), 255, 0xffff))
	}
	if to-from+1 > MaxGroupAddrs {
		return nil, fmt.Errorf("%q: %d addresses, a group holds at most %d", s, to-from+1, MaxGroupAddrs)
	}
	out := make([]netip.AddrPort, 0, to-from+1)
	for n := from; n <= to; n++ {
		if a.Is4() {
			b[3] = byte(n)
		} else {
			b[14], b[15] = byte(n>>8), byte(n)
		}
		x, _ := netip.AddrFromSlice(b)
		if err := checkAddr(x); err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, netip.AddrPortFrom(x, uint16(p)))
	}
	return out, nil
}

func ternary[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// groupEntries are what a virtual server's expansion needs to know of the
// table: which real servers wrote their port (else each entry's is used),
// and whether the sorry server did.
type groupEntries struct {
	grp       *VirtualServerGroup
	rsPortSet []bool
	sorryPort bool
}

// expand makes one virtual server per entry of the group: the first is v
// itself (decoded and checked with the first entry's address and port),
// the others differ in name, address and port, and in the port of the
// real servers and sorry server that did not write one. The real servers'
// checks stay the first entry's: one check per real server. It reports
// what depends on each entry's address and port.
func (d *decoder) expand(v VirtualServer, m serviceMeta, ge groupEntries, forwardOK bool) ([]VirtualServer, []serviceMeta) {
	v.Server = v.Name
	if ge.grp == nil || len(ge.grp.Entries) == 0 {
		return []VirtualServer{v}, []serviceMeta{m}
	}
	out := make([]VirtualServer, 0, len(ge.grp.Entries))
	metas := make([]serviceMeta, 0, len(ge.grp.Entries))
	for i, e := range ge.grp.Entries {
		x := v
		x.Name = v.Name + "/" + e.String()
		x.Group = ge.grp.Name
		x.Address, x.Port = e.Addr(), e.Port()
		x.RealServers = make([]RealServer, len(v.RealServers))
		copy(x.RealServers, v.RealServers)
		for j := range x.RealServers {
			rs := &x.RealServers[j]
			if !ge.rsPortSet[j] {
				rs.Port = e.Port()
			}
			if i == 0 || !forwardOK {
				continue
			}
			rb := m.rss[j]
			if rs.Address == e.Addr() {
				d.errorf(rb.path().key("address"), "%s: real server %s is the address of the group's entry %s", rb.label(), rs.Address, e)
			}
			if x.Forward != dataplane.NAT && ge.rsPortSet[j] && rs.Port != e.Port() {
				d.errorf(rb.path().key("port"), "%s: port %d differs from the port of the group's entry %s: only forward = \"nat\" maps ports (without port, each entry's is used)",
					rb.label(), rs.Port, e)
			}
		}
		if v.SorryServer.IsValid() {
			if !ge.sorryPort {
				x.SorryServer = netip.AddrPortFrom(v.SorryServer.Addr(), e.Port())
			}
			if i > 0 && forwardOK {
				if x.SorryServer.Addr() == e.Addr() {
					d.errorf(m.p.key("sorry_server"), "%s: sorry server %s is the address of the group's entry %s", m.label, x.SorryServer.Addr(), e)
				} else if x.Forward != dataplane.NAT && x.SorryServer.Port() != e.Port() {
					d.errorf(m.p.key("sorry_server"), "%s: sorry_server port %d differs from the port of the group's entry %s: only forward = \"nat\" maps ports",
						m.label, x.SorryServer.Port(), e)
				}
			}
		}
		mm := m
		mm.entry = i
		out = append(out, x)
		metas = append(metas, mm)
	}
	return out, metas
}
