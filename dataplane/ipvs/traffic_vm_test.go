//go:build vmtest

package ipvs_test

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

// checkOrder makes n requests, each on a new connection, and checks that
// they are answered by want[i%len(want)] and that the real server saw the
// client's own address.
func checkOrder(t *testing.T, c *client, url, clientAddr string, n int, want ...string) {
	t.Helper()
	var got []string
	for i := 0; i < n; i++ {
		name, peer := c.get(t, url)
		got = append(got, name)
		if ap, err := netip.ParseAddrPort(peer); err != nil || ap.Addr().String() != clientAddr {
			t.Errorf("request %d: the real server saw %q, want the client %s", i, peer, clientAddr)
		}
	}
	for i, g := range got {
		if g != want[i%len(want)] {
			t.Fatalf("answers %v, want the cycle %v", got, want)
		}
	}
	t.Logf("answers: %v", got)
}

// waitCounters waits for a service's counters to show conns connections
// per real server, each one complete HTTP exchange, and checks them; nat
// says whether replies pass the director. IPVS folds its per-CPU counters
// into what it reports every 2 s, so they are polled.
func waitCounters(t *testing.T, d *director, k dataplane.ServiceKey, conns map[string]uint64, nat bool) dataplane.ServiceStats {
	t.Helper()
	var ss dataplane.ServiceStats
	nettest.WaitFor(t, 30*time.Second, fmt.Sprintf("the counters of %s", k), func() error {
		st, err := d.dp.Stats(t.Context())
		if err != nil {
			return err
		}
		var ok bool
		if ss, ok = st.Services[k]; !ok {
			return fmt.Errorf("no stats for %s: %+v", k, st.Services)
		}
		return checkCounters(ss, conns, nat)
	})
	t.Logf("%s: %+v", k, ss.Counters)
	return ss
}

func checkCounters(ss dataplane.ServiceStats, conns map[string]uint64, nat bool) error {
	var total uint64
	var sum dataplane.Counters
	for addr, n := range conns {
		ap := netip.MustParseAddrPort(addr)
		bk := dataplane.BackendKey{Addr: ap.Addr(), Port: ap.Port()}
		bs, ok := ss.Find(bk, -1)
		if !ok {
			return fmt.Errorf("no stats for backend %s: %+v", bk, ss.Backends)
		}
		if bs.Connections != n {
			return fmt.Errorf("backend %s: %d connections, want %d", bk, bs.Connections, n)
		}
		sum.Add(bs.Counters)
		total += n
	}
	if ss.Connections != total {
		return fmt.Errorf("%d connections, want %d", ss.Connections, total)
	}
	if sum != ss.Counters {
		return fmt.Errorf("counters %+v, but the backends' add up to %+v", ss.Counters, sum)
	}
	// Each exchange is at least SYN, ACK, request, FIN inbound, and for NAT
	// SYN-ACK, response, FIN outbound; a packet is at least 40 bytes.
	if ss.Packets < 4*total || ss.Bytes < 40*ss.Packets {
		return fmt.Errorf("%d packets, %d bytes in for %d connections", ss.Packets, ss.Bytes, total)
	}
	if nat && (ss.PacketsOut < 3*total || ss.BytesOut < 40*ss.PacketsOut) {
		return fmt.Errorf("%d packets, %d bytes out for %d NAT connections", ss.PacketsOut, ss.BytesOut, total)
	}
	if !nat && (ss.PacketsOut != 0 || ss.BytesOut != 0) {
		return fmt.Errorf("%d packets out in direct routing, where replies bypass the director", ss.PacketsOut)
	}
	return nil
}

func waitActive(t *testing.T, d *director, k dataplane.ServiceKey, b dataplane.BackendKey, active uint64) {
	t.Helper()
	nettest.WaitFor(t, 30*time.Second, fmt.Sprintf("%d active connections on %s", active, b), func() error {
		st, err := d.dp.Stats(t.Context())
		if err != nil {
			return err
		}
		if got := st.Services[k].Backend(b).ActiveConns; got != active {
			return fmt.Errorf("%d active", got)
		}
		return nil
	})
}

// TestNATTraffic: HTTP from a client namespace through a NAT director to
// two real servers whose default route is the director.
//
//	client 198.51.100.10 -- 198.51.100.1 director (VIP 198.51.100.100)
//	                         192.0.2.1 br0 -- rs1 192.0.2.11:8080, rs2 192.0.2.12:8080
func TestNATTraffic(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	d, cl := natTopology(t)
	web := dataplane.Service{
		Name: "web", Key: key("198.51.100.100", 80, dataplane.TCP), Scheduler: dataplane.RoundRobin,
		Forward: dataplane.NAT, Enabled: true,
		Backends: []dataplane.Backend{backend("192.0.2.11", 8080, 1), backend("192.0.2.12", 8080, 1)},
	}
	other := dataplane.Service{
		Name: "other", Key: key("198.51.100.100", 81, dataplane.TCP), Scheduler: dataplane.RoundRobin,
		Forward: dataplane.NAT, Enabled: true, Backends: []dataplane.Backend{backend("192.0.2.11", 8080, 1)},
	}
	d.apply(t, web, other)
	d.rec.take()

	c := newClient(cl)
	const url = "http://198.51.100.100/"
	checkOrder(t, c, url, "198.51.100.10", 6, "rs1", "rs2")
	waitCounters(t, d, web.Key, map[string]uint64{"192.0.2.11:8080": 3, "192.0.2.12:8080": 3}, true)
	// The closed connections linger in IPVS's table (TIME_WAIT) as
	// inactive ones; none is active.
	nettest.WaitFor(t, 30*time.Second, "inactive connections on both real servers", func() error {
		for _, bs := range d.stats(t).Services[web.Key].Backends {
			if bs.InactiveConns == 0 || bs.InactiveConns > 3 || bs.ActiveConns != 0 {
				return fmt.Errorf("%s: %d active, %d inactive", bs.Key, bs.ActiveConns, bs.InactiveConns)
			}
		}
		return nil
	})

	// A kept-alive connection: the next in the cycle, rs1.
	h := hold(t, cl, "198.51.100.100:80")
	if got := h.get(t); got != "rs1" {
		t.Fatalf("held connection answered by %s, want rs1", got)
	}
	rs1Key := dataplane.BackendKey{Addr: mustAddr("192.0.2.11"), Port: 8080}
	waitActive(t, d, web.Key, rs1Key, 1)
	entries := d.connEntries(t, netip.MustParseAddrPort("192.0.2.11:8080"))
	var before dataplane.ServiceStats
	nettest.WaitFor(t, 30*time.Second, "web's counters to count the held connection", func() error {
		before = d.stats(t).Services[web.Key]
		if before.Connections != 7 {
			return fmt.Errorf("%d connections", before.Connections)
		}
		return nil
	})

	// Changing other services leaves web's entries alone: the held
	// connection goes on, and web's counters keep counting.
	other.Scheduler = dataplane.WeightedLeastConnection
	other.Backends = append(other.Backends, backend("192.0.2.12", 8080, 1))
	third := dataplane.Service{Name: "third", Key: key("198.51.100.100", 82, dataplane.TCP), Scheduler: dataplane.SourceHashing,
		Forward: dataplane.NAT, Backends: []dataplane.Backend{backend("192.0.2.12", 8080, 1)}}
	d.apply(t, web, other, third)
	checkChanges(t, d,
		"ipvs service updated tcp/198.51.100.100:81 scheduler rr -> wlc",
		"ipvs real server added 192.0.2.12:8080",
		"ipvs service created tcp/198.51.100.100:82",
		"ipvs real server added 192.0.2.12:8080",
	)
	if got := h.get(t); got != "rs1" {
		t.Fatalf("after Apply, the held connection was answered by %s, want rs1", got)
	}
	if n := d.connEntries(t, netip.MustParseAddrPort("192.0.2.11:8080")); n < entries {
		t.Errorf("connection entries to rs1 went from %d to %d over an Apply that did not touch web", entries, n)
	}
	nettest.WaitFor(t, 30*time.Second, "web's counters to go on over an Apply that did not touch web", func() error {
		after := d.stats(t).Services[web.Key]
		if after.Connections != before.Connections || after.Packets <= before.Packets || after.BytesOut <= before.BytesOut {
			return fmt.Errorf("from %+v to %+v", before.Counters, after.Counters)
		}
		return nil
	})
	if got, _ := c.get(t, "http://198.51.100.100:82/"); got != "rs2" {
		t.Errorf("the new service answered from %s, want rs2", got)
	}

	// Drain rs1: new connections go to rs2, the held one stays on rs1.
	web.Backends[0].Weight = 0
	d.apply(t, web, other, third)
	checkChanges(t, d, "ipvs real server updated 192.0.2.11:8080")
	checkOrder(t, c, url, "198.51.100.10", 4, "rs2")
	if got := h.get(t); got != "rs1" {
		t.Fatalf("after draining, the held connection was answered by %s, want rs1", got)
	}
	waitActive(t, d, web.Key, rs1Key, 1)
	waitCounters(t, d, web.Key, map[string]uint64{"192.0.2.11:8080": 4, "192.0.2.12:8080": 7}, true)
}

// natTopology builds TestNATTraffic's topology: a client, a NAT director
// holding the VIP 198.51.100.100, and two real servers rs1 (192.0.2.11)
// and rs2 (192.0.2.12) serving HTTP on port 8080 whose default route is
// the director.
func natTopology(t *testing.T) (*director, *nettest.NS) {
	cl, dir := nettest.NewNS(t, "cl"), nettest.NewNS(t, "dir")
	rs1, rs2 := nettest.NewNS(t, "rs"), nettest.NewNS(t, "rs")
	nettest.Veth(t, cl, "eth0", dir, "ext")
	nettest.Veth(t, rs1, "eth0", dir, "r1")
	nettest.Veth(t, rs2, "eth0", dir, "r2")
	nettest.Bridge(t, dir, "br0", "r1", "r2")
	nettest.Addr(t, cl, "eth0", "198.51.100.10/24")
	nettest.Addr(t, dir, "ext", "198.51.100.1/24")
	nettest.Addr(t, dir, "ext", "198.51.100.100/32")
	nettest.Addr(t, dir, "br0", "192.0.2.1/24")
	nettest.Sysctl(t, dir, "net.ipv4.ip_forward", "1")
	for i, rs := range []*nettest.NS{rs1, rs2} {
		ip := fmt.Sprintf("192.0.2.%d", 11+i)
		nettest.Addr(t, rs, "eth0", ip+"/24")
		rs.MustRun(t, "ip", "route", "add", "default", "via", "192.0.2.1")
		server(t, rs, fmt.Sprintf("rs%d", i+1), ip+":8080")
	}
	return newDirector(t, dir), cl
}

// directReturn builds the topology where real servers answer the client
// directly (direct routing and tunnel modes): the real servers hold the VIP
// on lo and ignore ARP for it; in tunnel mode they decapsulate IPIP on
// tunl0. It returns the director with web installed, and the client.
//
//	client 192.0.2.10, director 192.0.2.1 (VIP 192.0.2.100), rs1 .11, rs2 .12
//	on one bridge (in the director's namespace)
func directReturn(t *testing.T, fwd dataplane.ForwardMode) (d *director, c *client, web dataplane.Service, rss []*nettest.NS) {
	cl, dir := nettest.NewNS(t, "cl"), nettest.NewNS(t, "dir")
	rs1, rs2 := nettest.NewNS(t, "rs"), nettest.NewNS(t, "rs")
	nettest.Veth(t, cl, "eth0", dir, "c")
	nettest.Veth(t, rs1, "eth0", dir, "r1")
	nettest.Veth(t, rs2, "eth0", dir, "r2")
	nettest.Bridge(t, dir, "br0", "c", "r1", "r2")
	nettest.Addr(t, cl, "eth0", "192.0.2.10/24")
	nettest.Addr(t, dir, "br0", "192.0.2.1/24")
	nettest.Addr(t, dir, "br0", "192.0.2.100/32")
	for i, rs := range []*nettest.NS{rs1, rs2} {
		nettest.Addr(t, rs, "eth0", fmt.Sprintf("192.0.2.%d/24", 11+i))
		nettest.Addr(t, rs, "lo", "192.0.2.100/32")
		for _, dev := range []string{"all", "eth0"} {
			nettest.Sysctl(t, rs, "net.ipv4.conf."+dev+".arp_ignore", "1")
			nettest.Sysctl(t, rs, "net.ipv4.conf."+dev+".arp_announce", "2")
		}
		if fwd == dataplane.Tunnel {
			// The ipip module gives every namespace a tunl0 that takes
			// IPIP from any source; the inner packet's source (the client)
			// is not routed via tunl0, so reverse-path filtering is off.
			rs.MustRun(t, "ip", "link", "set", "tunl0", "up")
			for _, dev := range []string{"all", "tunl0"} {
				nettest.Sysctl(t, rs, "net.ipv4.conf."+dev+".rp_filter", "0")
			}
		}
		server(t, rs, fmt.Sprintf("rs%d", i+1), "192.0.2.100:80")
	}

	d = newDirector(t, dir)
	web = dataplane.Service{
		Name: "web", Key: key("192.0.2.100", 80, dataplane.TCP), Scheduler: dataplane.RoundRobin,
		Forward: fwd, Enabled: true,
		Backends: []dataplane.Backend{backend("192.0.2.11", 80, 1), backend("192.0.2.12", 80, 1)},
	}
	if fwd == dataplane.Tunnel {
		web.Tunnel.Encap = dataplane.EncapIPIP
	}
	d.apply(t, web)
	d.rec.take()
	return d, newClient(cl), web, []*nettest.NS{rs1, rs2}
}

// TestDRTraffic: HTTP through a direct-routing director.
func TestDRTraffic(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	d, c, web, _ := directReturn(t, dataplane.DirectRouting)
	cl, dir := c.ns, d.ns

	const url = "http://192.0.2.100/"
	checkOrder(t, c, url, "192.0.2.10", 6, "rs1", "rs2")
	waitCounters(t, d, web.Key, map[string]uint64{"192.0.2.11:80": 3, "192.0.2.12:80": 3}, false)

	// The client's ARP entry for the VIP is the director's.
	nb := cl.MustRun(t, "ip", "neigh", "show", "192.0.2.100")
	dirMAC := dir.MustRun(t, "cat", "/sys/class/net/br0/address")
	if len(dirMAC) < 17 || !strings.Contains(nb, dirMAC[:17]) {
		t.Errorf("the client's neighbour entry for the VIP is %q, want the director's %s", nb, dirMAC)
	}

	// Persistence: every new connection from the client now goes to one
	// real server, the one it used last.
	web.Persistence = time.Minute
	d.apply(t, web)
	checkChanges(t, d, "ipvs service updated tcp/192.0.2.100:80 flags 0x0 -> 0x1, persistence 0s -> 60s")
	first, _ := c.get(t, url)
	checkOrder(t, c, url, "192.0.2.10", 4, first)
	waitCounters(t, d, web.Key, map[string]uint64{
		"192.0.2.11:80": 3 + 5*b2u(first == "rs1"), "192.0.2.12:80": 3 + 5*b2u(first == "rs2")}, false)
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// TestTunnelTraffic: HTTP through an IPIP-tunnelling director; the real
// servers decapsulate on tunl0 and answer the client directly.
func TestTunnelTraffic(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	d, c, web, rss := directReturn(t, dataplane.Tunnel)
	checkTable(t, d, "TCP 192.0.2.100:80 rr", "  -> 192.0.2.11:80 Tunnel 1", "  -> 192.0.2.12:80 Tunnel 1")
	checkOrder(t, c, "http://192.0.2.100/", "192.0.2.10", 6, "rs1", "rs2")
	waitCounters(t, d, web.Key, map[string]uint64{"192.0.2.11:80": 3, "192.0.2.12:80": 3}, false)
	for _, rs := range rss {
		// At least SYN, ACK, request, FIN of 3 connections came in IPIP.
		out := strings.TrimSpace(rs.MustRun(t, "cat", "/sys/class/net/tunl0/statistics/rx_packets"))
		if n, err := strconv.Atoi(out); err != nil || n < 12 {
			t.Errorf("%s received %q packets on tunl0, want at least 12", rs.Name, out)
		}
	}
}
