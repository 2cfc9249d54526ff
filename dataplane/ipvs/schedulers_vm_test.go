//go:build vmtest

package ipvs_test

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

// kernelHasScheduler reports whether the VM's kernel has IPVS's module
// for a scheduler: test/vm ships every one the kernel has, and ip_vs_twos
// came with Linux 6.2 (Debian 12's 6.1 has none).
func kernelHasScheduler(sched dataplane.Scheduler) bool {
	m, _ := filepath.Glob("/lib/modules/*/kernel/net/netfilter/ipvs/ip_vs_" + string(sched) + ".ko*")
	return len(m) > 0
}

// A scheduler whose module the kernel lacks is refused as not supported,
// naming the module, and the services of the others are installed.
func TestSchedulerModuleMissing(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	var missing []dataplane.Scheduler
	for _, s := range dataplane.Schedulers {
		if !kernelHasScheduler(s) {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		t.Skip("the kernel has the module of every scheduler")
	}
	d := newDirector(t, nettest.NewNS(t, "dir"))
	ok := dataplane.Service{Name: "ok", Key: key("192.0.2.100", 80, dataplane.TCP), Scheduler: dataplane.ShortestExpectedDelay,
		Forward: dataplane.DirectRouting, Backends: []dataplane.Backend{backend("192.0.2.11", 80, 1)}}
	for _, s := range missing {
		bad := ok
		bad.Name, bad.Key.Addr, bad.Scheduler = string(s), mustAddr("192.0.2.101"), s
		err := d.dp.Apply(t.Context(), []dataplane.Service{ok, bad})
		if !errors.Is(err, dataplane.ErrNotSupported) || !strings.Contains(err.Error(), "no ip_vs_"+string(s)+" module") {
			t.Errorf("scheduler %s without its module: %v, want not supported, naming ip_vs_%s", s, err, s)
		}
		checkTable(t, d, "TCP 192.0.2.100:80 sed", "  -> 192.0.2.11:80 Route 1")
		t.Logf("%s: %v", s, err)
	}
}

// ipvsadm reads a namespace's table as ipvsadm -Ln --thresholds prints
// it: "TCP 192.0.2.100:80 sed" and "  -> 192.0.2.11:80 u=10 l=5".
func ipvsadm(t *testing.T, ns *nettest.NS) []string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(ns.MustRun(t, "ipvsadm", "-Ln", "--thresholds"), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && (f[0] == "TCP" || f[0] == "UDP"):
			lines = append(lines, strings.Join(f[:3], " "))
		case len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port":
			lines = append(lines, fmt.Sprintf("  -> %s u=%s l=%s", f[1], f[2], f[3]))
		}
	}
	return lines
}

// The schedulers and thresholds of issue 18 in the kernel's IPVS, as
// ipvsadm shows them; thresholds changed in place, and nothing changed by
// applying the same again.
func TestSchedulersAndThresholdsIPVSAdm(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	ns := nettest.NewNS(t, "dir")
	d := newDirector(t, ns)
	var services []dataplane.Service
	var want []string
	port := uint16(2000)
	for _, sched := range []dataplane.Scheduler{
		dataplane.ShortestExpectedDelay, dataplane.NeverQueue, dataplane.WeightedFailover, dataplane.Overflow,
		dataplane.TwoChoices, dataplane.DestinationHashing, dataplane.LocalityLeastConnection, dataplane.LocalityReplicated,
	} {
		if !kernelHasScheduler(sched) {
			t.Logf("scheduler %s: the kernel has no ip_vs_%s", sched, sched)
			continue
		}
		port++
		b1, b2 := backend("192.0.2.11", port, 2), backend("192.0.2.12", port, 1)
		b1.UpperThreshold, b1.LowerThreshold = 100, 50
		b2.UpperThreshold = 8
		services = append(services, dataplane.Service{Name: string(sched), Key: key("192.0.2.100", port, dataplane.TCP),
			Scheduler: sched, Forward: dataplane.DirectRouting, Backends: []dataplane.Backend{b1, b2}})
		want = append(want, fmt.Sprintf("TCP 192.0.2.100:%d %s", port, sched),
			fmt.Sprintf("  -> 192.0.2.11:%d u=100 l=50", port), fmt.Sprintf("  -> 192.0.2.12:%d u=8 l=0", port))
	}
	d.apply(t, services...)
	if got := ipvsadm(t, ns); !equal(sortServices(got), sortServices(want)) {
		t.Fatalf("ipvsadm -Ln --thresholds:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	d.rec.take()
	d.apply(t, services...)
	checkChanges(t, d)

	s := services[0]
	s.Backends[0].UpperThreshold, s.Backends[0].LowerThreshold = 0, 0
	s.Backends[1].LowerThreshold = 6
	services[0] = s
	d.apply(t, services...)
	checkChanges(t, d,
		fmt.Sprintf("ipvs real server updated 192.0.2.12:%d", s.Key.Port),
		fmt.Sprintf("ipvs real server updated 192.0.2.11:%d", s.Key.Port))
	want[1] = fmt.Sprintf("  -> 192.0.2.11:%d u=0 l=0", s.Key.Port)
	want[2] = fmt.Sprintf("  -> 192.0.2.12:%d u=8 l=6", s.Key.Port)
	if got := ipvsadm(t, ns); !equal(sortServices(got), sortServices(want)) {
		t.Fatalf("after the change, ipvsadm -Ln --thresholds:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Read back through netlink as the dataplane reads them.
	h, err := mobyipvs.New("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	dests, err := h.GetDestinations(&mobyipvs.Service{Address: mustAddr("192.0.2.100").AsSlice(), Protocol: 6, Port: s.Key.Port, AddressFamily: 2})
	if err != nil || len(dests) != 2 {
		t.Fatalf("destinations: %v %v", dests, err)
	}
	for _, x := range dests {
		if x.Address.Equal(mustAddr("192.0.2.12").AsSlice()) && (x.UpperThreshold != 8 || x.LowerThreshold != 6) {
			t.Errorf("192.0.2.12 read back with thresholds %d/%d, want 8/6", x.UpperThreshold, x.LowerThreshold)
		}
	}
}

// Thresholds against real servers through the kernel's IPVS: rs1 (upper
// 2, lower 1) takes new connections until it holds 2, then none, while rr
// sends the rest to rs2; one of the two ended it still has 1 (not below
// its lower threshold) and takes none; both ended, it takes its turn
// again. Connections end with a RST: IPVS forgets them 10 s later
// (IP_VS_TCP_S_CLOSE), where a FIN would keep them 2 minutes in TIME_WAIT.
func TestThresholdTraffic(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	d, cl := natTopology(t)
	web := dataplane.Service{
		Name: "web", Key: key("198.51.100.100", 80, dataplane.TCP), Scheduler: dataplane.RoundRobin,
		Forward: dataplane.NAT, Enabled: true,
		Backends: []dataplane.Backend{backend("192.0.2.11", 8080, 1), backend("192.0.2.12", 8080, 1)},
	}
	web.Backends[0].UpperThreshold, web.Backends[0].LowerThreshold = 2, 1
	d.apply(t, web)
	rs1 := dataplane.BackendKey{Addr: mustAddr("192.0.2.11"), Port: 8080}
	conns := func(want uint64) {
		t.Helper()
		nettest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d connections on rs1", want), func() error {
			bs := d.stats(t).Services[web.Key].Backend(rs1)
			if n := bs.ActiveConns + bs.InactiveConns; n != want {
				return fmt.Errorf("%d active, %d inactive", bs.ActiveConns, bs.InactiveConns)
			}
			return nil
		})
	}
	var kept []*held
	for i, want := range []string{"rs1", "rs2", "rs1"} {
		h := hold(t, cl, "198.51.100.100:80")
		if got := h.get(t); got != want {
			t.Fatalf("held connection %d answered by %s, want %s", i, got, want)
		}
		kept = append(kept, h)
	}
	conns(2)
	c := newClient(cl)
	const url = "http://198.51.100.100/"
	checkOrder(t, c, url, "198.51.100.10", 4, "rs2")

	reset := func(h *held) {
		t.Helper()
		if err := h.conn.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		h.conn.Close()
	}
	reset(kept[0])
	conns(1)
	checkOrder(t, c, url, "198.51.100.10", 3, "rs2")
	reset(kept[2])
	conns(0)
	checkOrder(t, c, url, "198.51.100.10", 4, "rs1", "rs2")
	if got := kept[1].get(t); got != "rs2" {
		t.Errorf("the connection held on rs2 answered by %s", got)
	}
}
