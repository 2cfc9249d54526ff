package control

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xlb-dev/xlb/test/nettest"
)

func TestNetNeighborsResolvesAndFollows(t *testing.T) {
	dir, rs := nettest.NewNS(t, "nd"), nettest.NewNS(t, "nr")
	nettest.Veth(t, dir, "eth0", rs, "eth0")
	nettest.Addr(t, dir, "eth0", "10.9.0.1/24")
	nettest.Addr(t, rs, "eth0", "10.9.0.2/24")
	nettest.Addr(t, dir, "eth0", "2001:db8:9::1/64")
	nettest.Addr(t, rs, "eth0", "2001:db8:9::2/64")
	dir.MustRun(t, "ip", "route", "add", "10.77.0.0/24", "via", "10.9.0.2")
	var rsMAC net.HardwareAddr
	rs.Do(func() error { i, err := net.InterfaceByName("eth0"); rsMAC = i.HardwareAddr; return err })

	var changes atomic.Int32
	n := runNeighbors(t, dir, func() { changes.Add(1) })

	for _, a := range []string{"10.9.0.2", "2001:db8:9::2"} {
		addr := netip.MustParseAddr(a)
		if _, _, ok := n.Lookup(addr); ok {
			t.Fatalf("%s known before any resolution", a)
		}
		// Nothing was sent to it: the kernel resolves it on our request.
		nettest.WaitFor(t, 10*time.Second, "neighbour "+a+" resolved", func() error {
			mac, ifindex, ok := n.Lookup(addr)
			if !ok {
				return errNotYet
			}
			if mac.String() != rsMAC.String() || ifindex == 0 {
				t.Fatalf("%s resolved to %s on %d, want %s", a, mac, ifindex, rsMAC)
			}
			return nil
		})
	}
	if changes.Load() < 2 {
		t.Errorf("onChange called %d times, want at least 2", changes.Load())
	}
	// Version counts the answers that changed (before onChange is called).
	if c := changes.Load(); n.Version() < max(2, uint64(c)) {
		t.Errorf("Version %d after %d changes", n.Version(), c)
	}
	// Behind a gateway: never resolved (direct routing impossible).
	n.Lookup(netip.MustParseAddr("10.77.0.5"))
	if _, _, ok := n.Lookup(netip.MustParseAddr("10.77.0.5")); ok {
		t.Error("address behind a gateway resolved")
	}
	// The entry is deleted: it is resolved again. (Not `ip neigh flush`:
	// the resolver re-creates entries while it runs, and flush gives up.)
	dir.MustRun(t, "ip", "neigh", "del", "10.9.0.2", "dev", "eth0")
	nettest.WaitFor(t, 10*time.Second, "re-resolution after flush", func() error {
		if _, _, ok := n.Lookup(netip.MustParseAddr("10.9.0.2")); !ok {
			return errNotYet
		}
		out := dir.MustRun(t, "ip", "neigh", "show", "10.9.0.2")
		if len(out) == 0 {
			return errNotYet
		}
		return nil
	})
}

// A tunnelled real server behind a gateway, or on a connected network: the
// next hop is resolved in the kernel's table without anything sent to it,
// and again after its entry is deleted.
func TestNetNeighborsKeepRoute(t *testing.T) {
	dir, gw := nettest.NewNS(t, "kd"), nettest.NewNS(t, "kg")
	nettest.Veth(t, dir, "eth0", gw, "eth0")
	nettest.Addr(t, dir, "eth0", "10.9.1.1/24")
	nettest.Addr(t, gw, "eth0", "10.9.1.2/24")
	nettest.Addr(t, gw, "eth0", "10.9.1.3/24")
	dir.MustRun(t, "ip", "route", "add", "10.78.0.0/24", "via", "10.9.1.2")

	n := runNeighbors(t, dir, func() {})

	usable := func(hop string) func() error {
		return func() error {
			out := string(dir.MustRun(t, "ip", "neigh", "show", hop, "dev", "eth0"))
			if !strings.Contains(out, "lladdr") {
				return fmt.Errorf("%s: %q", hop, out)
			}
			return nil
		}
	}
	n.KeepRoute(netip.MustParseAddr("10.78.0.7"))
	nettest.WaitFor(t, 10*time.Second, "gateway resolved", usable("10.9.1.2"))
	n.KeepRoute(netip.MustParseAddr("10.9.1.3"))
	nettest.WaitFor(t, 10*time.Second, "connected real server resolved", usable("10.9.1.3"))
	if out := dir.MustRun(t, "ip", "neigh", "show", "10.78.0.7"); len(out) != 0 {
		t.Errorf("an entry for the real server behind the gateway: %s", out)
	}
	// The gateway's entry goes away: it is resolved again.
	dir.MustRun(t, "ip", "neigh", "del", "10.9.1.2", "dev", "eth0")
	nettest.WaitFor(t, 10*time.Second, "gateway resolved again", usable("10.9.1.2"))
}

// runNeighbors runs a NetNeighbors in ns until the test ends.
func runNeighbors(t *testing.T, ns *nettest.NS, onChange func()) *NetNeighbors {
	t.Helper()
	return runNeighborsWith(t, ns, onChange, nil)
}

// runNeighborsWith is runNeighbors with set changing the resolver first.
func runNeighborsWith(t *testing.T, ns *nettest.NS, onChange func(), set func(*NetNeighbors)) *NetNeighbors {
	t.Helper()
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNetNeighbors(nil, h, onChange)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	if set != nil {
		set(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("neighbours: %v", err)
		}
		h.Close()
	})
	return n
}

// A burst of neighbour updates overflows the subscription (the kernel drops
// what does not fit: ENOBUFS) while a real server's MAC changes: the
// resolver subscribes again and reads its entries again, so the new MAC is
// followed within a second or two instead of at the next 30 s refresh, and
// later changes are followed as before.
func TestNetNeighborsUpdatesLost(t *testing.T) {
	dir, rs := nettest.NewNS(t, "ld"), nettest.NewNS(t, "lr")
	nettest.Veth(t, dir, "eth0", rs, "eth0")
	nettest.Addr(t, dir, "eth0", "10.9.2.1/24")
	nettest.Addr(t, rs, "eth0", "10.9.2.2/24")
	// A small socket buffer (the kernel's default is 208 KiB; the resolver
	// asks for more), so that the burst overflows it.
	n := runNeighborsWith(t, dir, func() {}, func(n *NetNeighbors) { n.rcvBuf = 16 << 10 })
	addr := netip.MustParseAddr("10.9.2.2")
	macIs := func(want string) func() error {
		return func() error {
			mac, _, ok := n.Lookup(addr)
			if !ok || mac.String() != want {
				return fmt.Errorf("%s resolved to %v (%v), want %s", addr, mac, ok, want)
			}
			return nil
		}
	}
	var rsMAC net.HardwareAddr
	rs.Do(func() error { i, err := net.InterfaceByName("eth0"); rsMAC = i.HardwareAddr; return err })
	n.Lookup(addr)
	nettest.WaitFor(t, 10*time.Second, "first resolution", macIs(rsMAC.String()))

	// Entries of 100 other addresses made and removed, again and again
	// (never more than 100 at a time in the kernel's table, whose limits
	// are shared by all namespaces); in the middle, the real server's
	// entry gets a new MAC, as a gratuitous ARP would give it.
	const newMAC = "02:77:00:00:00:22"
	var b strings.Builder
	for round := range 400 {
		for i := range 100 {
			fmt.Fprintf(&b, "neigh replace 10.9.2.%d dev eth0 lladdr 02:00:00:00:%02x:%02x nud stale\n", 100+i, round%256, i)
		}
		if round == 200 {
			fmt.Fprintf(&b, "neigh replace 10.9.2.2 dev eth0 lladdr %s nud stale\n", newMAC)
		}
		for i := range 100 {
			fmt.Fprintf(&b, "neigh del 10.9.2.%d dev eth0\n", 100+i)
		}
	}
	batch := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(batch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	flood := time.Now()
	dir.MustRun(t, "ip", "-batch", batch)
	t.Logf("80000 neighbour updates in %v", time.Since(flood).Round(time.Millisecond))
	nettest.WaitFor(t, 3*time.Second, "the new MAC followed", macIs(newMAC))
	t.Logf("new MAC followed %v after the burst began; updates lost %d times", time.Since(flood).Round(time.Millisecond), n.UpdatesLost())
	if n.UpdatesLost() == 0 {
		t.Error("the burst did not overflow the subscription: the test does not test what it says")
	}

	// Updates are followed again.
	const newer = "02:77:00:00:00:33"
	dir.MustRun(t, "ip", "neigh", "replace", "10.9.2.2", "dev", "eth0", "lladdr", newer, "nud", "stale")
	nettest.WaitFor(t, 2*time.Second, "the next change followed", macIs(newer))
}
