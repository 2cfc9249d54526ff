package config

import (
	"net/netip"
	"runtime"
	"sync"

	"github.com/xlb-dev/xlb/dataplane"
)

// Configurations of thousands of virtual servers and tens of thousands of
// real servers are decoded in parts on every CPU, and their real servers
// of address, port and weight only without the generic table machinery.
// FuzzFastParse checks both against the plain decoder (slowOnly).

// virtualServers decodes the virtual servers' tables, each into one
// service or one per entry of its group. Thousands of them are decoded on
// every CPU (Go's), each part by a decoder of its own whose problems and
// commands join d's in the order of the file: what one decoder would have
// found.
func (d *decoder) virtualServers(vss []*table, root map[string]any, groups map[string]*VirtualServerGroup) ([]VirtualServer, []serviceMeta) {
	decoded, _ := root["virtual_server"].([]map[string]any)
	vs := make([][]VirtualServer, len(vss))
	meta := make([][]serviceMeta, len(vss))
	one := func(d *decoder, i int) {
		t := vss[i]
		t.d = d
		vs[i], meta[i] = d.virtualServer(t, groups)
		// Its decoded maps are garbage from here: a large configuration
		// never holds both them all and all its VirtualServers.
		t.m = nil
		if i < len(decoded) {
			decoded[i] = nil
		}
		d.idx.release(t.p)
	}
	parts := min(runtime.GOMAXPROCS(0), len(vss)/256)
	if parts < 2 || slowOnly {
		for i := range vss {
			one(d, i)
		}
		return flatten(vs), flatten(meta)
	}
	subs := make([]*decoder, parts)
	var wg sync.WaitGroup
	for p := range parts {
		sub := &decoder{file: d.file, idx: d.idx, env: d.env, mail: d.mail}
		subs[p] = sub
		lo, hi := p*len(vss)/parts, (p+1)*len(vss)/parts
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				one(sub, i)
			}
		})
	}
	wg.Wait()
	for _, sub := range subs {
		for _, e := range sub.errs.list {
			d.errs.add(e)
		}
		d.errs.dropped += sub.errs.dropped
		for _, w := range sub.warns.list {
			d.warns.add(w)
		}
		d.warns.dropped += sub.warns.dropped
		d.commands = append(d.commands, sub.commands...)
		d.dpIfaces = append(d.dpIfaces, sub.dpIfaces...)
		if d.alertAt == nil {
			d.alertAt = sub.alertAt
		}
	}
	return flatten(vs), flatten(meta)
}

// flatten joins the virtual servers (or their metas) of each table.
func flatten[T any](parts [][]T) []T {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// fastRealer decodes the real servers of one virtual server that need no
// message: a table of address, port and weight only, valid, whose checks
// (backendProblem, port mapping, duplicates, bindto) all pass. Anything
// else it leaves to the generic path, which reports it.
type fastRealer struct {
	d                 *decoder
	t                 *table
	v                 *VirtualServer
	m                 *serviceMeta
	seen              map[netip.AddrPort]int
	svcCheck          HealthCheck
	portOK, forwardOK bool
	// inherited are the service's check on each real server port, shared
	// by the real servers without a check of their own.
	inherited map[uint16]*HealthCheck
	// ge notes for a group's expansion which real servers wrote a port.
	ge *groupEntries
}

// inherit returns the shared check of a real server on port without a
// check of its own.
func (f *fastRealer) inherit(port uint16) *HealthCheck {
	if hc, ok := f.inherited[port]; ok {
		return hc
	}
	if f.inherited == nil {
		f.inherited = map[uint16]*HealthCheck{}
	}
	hc := inheritCheck(f.svcCheck, port)
	f.inherited[port] = &hc
	return &hc
}

// realKeys are the keys fastReal reads, from the key table (once its
// init has indexed it).
var realKeys = sync.OnceValue(func() (k struct{ address, port, weight *key }) {
	sec := sectionOf("virtual_server.real_server")
	k.address, k.port, k.weight = &sec.keys[sec.index["address"]], &sec.keys[sec.index["port"]], &sec.keys[sec.index["weight"]]
	return k
})

// fewKeys are the keys and values of a table of a few keys, on the stack
// (an iterator's closures made the loop's variables escape: four
// allocations a real server).
type fewKeys struct {
	n int
	k [3]string // address, port, weight: the most fastRealer reads
	v [3]any
}

// fromMap puts m's keys into kv, when it has at most len(kv.k).
func (kv *fewKeys) fromMap(m map[string]any) bool {
	if len(m) > len(kv.k) {
		return false
	}
	kv.n = 0
	for k, v := range m {
		kv.k[kv.n], kv.v[kv.n] = k, v
		kv.n++
	}
	return true
}

// real decodes the real server of table j at line, whose keys and values
// are kv, when it can (false: the generic path must).
func (f *fastRealer) real(kv *fewKeys, j, line int) bool {
	v := f.v
	keys := realKeys()
	rs := RealServer{Port: v.Port, Line: line, Weight: int(keys.weight.dv.(int64)), SMTPAlert: v.SMTPAlert}
	rsPortOK, portSet := f.portOK, false
	for i := range kv.n {
		k, val := kv.k[i], kv.v[i]
		switch k {
		case "address":
			s, ok := val.(string)
			if !ok || len(s) > keys.address.maxLen() {
				return false
			}
			a, err := parseAddr(s)
			if err != nil {
				return false
			}
			rs.Address = a
		case "port", "weight":
			n, ok := val.(int64)
			kk := keys.port
			if k == "weight" {
				kk = keys.weight
			}
			if !ok || n < kk.lo || n > kk.hi {
				return false
			}
			if k == "port" {
				rs.Port, rsPortOK, portSet = uint16(n), true, true
			} else {
				rs.Weight = int(n)
			}
		default:
			return false
		}
	}
	if !rs.Address.IsValid() || !rsPortOK {
		return false
	}
	rs.HealthCheck = f.inherit(rs.Port)
	if hc := rs.HealthCheck; hc.BindTo.IsValid() {
		checked := hc.ConnectIP
		if !checked.IsValid() {
			checked = rs.Address
		}
		if checked.Is4() != hc.BindTo.Is4() {
			return false
		}
	}
	if v.Address.IsValid() && f.forwardOK && backendProblem("real server", *v, rs.Address) != "" {
		return false
	}
	if f.portOK && f.forwardOK && v.Forward != dataplane.NAT && rs.Port != v.Port {
		return false
	}
	ap := rs.AddrPort()
	if _, dup := f.seen[ap]; dup {
		return false
	}
	f.seen[ap] = rs.Line
	f.ge.rsPortSet = append(f.ge.rsPortSet, portSet)
	v.RealServers = append(v.RealServers, rs)
	f.m.rss = append(f.m.rss, backendMeta{t: f.t, j: j, ap: ap})
	return true
}
