//go:build vmtest

package ipvs_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/ipvs"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

func webDR() dataplane.Service {
	return dataplane.Service{
		Name: "web", Key: key("192.0.2.100", 80, dataplane.TCP), Scheduler: dataplane.RoundRobin,
		Forward: dataplane.DirectRouting, Enabled: true,
		Backends: []dataplane.Backend{backend("192.0.2.11", 80, 1), backend("192.0.2.12", 80, 1), backend("192.0.2.13", 80, 1)},
	}
}

func dnsNAT() dataplane.Service {
	return dataplane.Service{
		Name: "dns", Key: key("192.0.2.101", 53, dataplane.UDP), Scheduler: dataplane.WeightedLeastConnection,
		Forward: dataplane.NAT, Enabled: true,
		Backends: []dataplane.Backend{backend("198.51.100.21", 5353, 5), backend("198.51.100.22", 5353, 10)},
	}
}

func tunnelMH() dataplane.Service {
	return dataplane.Service{
		Name: "tun", Key: key("2001:db8::100", 443, dataplane.TCP), Scheduler: dataplane.MaglevHashing,
		Forward: dataplane.Tunnel, Enabled: true, Tunnel: dataplane.TunnelOptions{Encap: dataplane.EncapIPIP},
		Backends: []dataplane.Backend{backend("2001:db8::31", 443, 1)},
	}
}

func checkTable(t *testing.T, d *director, want ...string) {
	t.Helper()
	if got := d.table(t); !equal(sortServices(got), sortServices(want)) {
		t.Fatalf("/proc/net/ip_vs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// sortServices orders service blocks (the kernel lists them by hash),
// keeping each block's real servers in their order.
func sortServices(lines []string) []string {
	var blocks [][]string
	for _, l := range lines {
		if !strings.HasPrefix(l, "  ->") || len(blocks) == 0 {
			blocks = append(blocks, nil)
		}
		blocks[len(blocks)-1] = append(blocks[len(blocks)-1], l)
	}
	for i := 1; i < len(blocks); i++ {
		for j := i; j > 0 && blocks[j][0] < blocks[j-1][0]; j-- {
			blocks[j], blocks[j-1] = blocks[j-1], blocks[j]
		}
	}
	var out []string
	for _, b := range blocks {
		out = append(out, b...)
	}
	return out
}

func checkChanges(t *testing.T, d *director, want ...string) {
	t.Helper()
	if got := d.rec.take(); !equal(got, want) {
		t.Fatalf("Apply changed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestApplyCreateUpdateDelete walks one director through the life of a
// configuration and checks the kernel's table and the changes Apply made
// after each step.
func TestApplyCreateUpdateDelete(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	d := newDirector(t, nettest.NewNS(t, "dir"))
	if got := d.dp.Info(); got.Mode != "ipvs" {
		t.Errorf("Info() = %+v", got)
	}

	web, dns, tun := webDR(), dnsNAT(), tunnelMH()
	d.apply(t, web, dns, tun)
	checkTable(t, d,
		"TCP 192.0.2.100:80 rr",
		"  -> 192.0.2.11:80 Route 1",
		"  -> 192.0.2.12:80 Route 1",
		"  -> 192.0.2.13:80 Route 1",
		"UDP 192.0.2.101:53 wlc",
		"  -> 198.51.100.21:5353 Masq 5",
		"  -> 198.51.100.22:5353 Masq 10",
		"TCP [2001:db8::100]:443 mh",
		"  -> [2001:db8::31]:443 Tunnel 1",
	)
	checkChanges(t, d,
		"ipvs service created tcp/192.0.2.100:80",
		"ipvs real server added 192.0.2.13:80",
		"ipvs real server added 192.0.2.12:80",
		"ipvs real server added 192.0.2.11:80",
		"ipvs service created udp/192.0.2.101:53",
		"ipvs real server added 198.51.100.22:5353",
		"ipvs real server added 198.51.100.21:5353",
		"ipvs service created tcp/[2001:db8::100]:443",
		"ipvs real server added [2001:db8::31]:443",
	)

	// The same configuration again changes nothing; neither do the fields
	// IPVS ignores (name, enabled, MAC).
	d.apply(t, web, dns, tun)
	checkChanges(t, d)
	web.Name, web.Enabled = "renamed", false
	web.Backends[0].MAC = dataplane.MAC{2, 0, 0, 0, 0, 1}
	d.apply(t, web, dns, tun)
	checkChanges(t, d)

	// Update web: scheduler, persistence, a weight, drain one real server,
	// remove one, add one. dns and tun are not touched.
	web.Scheduler = dataplane.WeightedRoundRobin
	web.Persistence = 299500 * time.Millisecond
	web.Backends = []dataplane.Backend{backend("192.0.2.11", 80, 3), backend("192.0.2.12", 80, 0), backend("192.0.2.14", 80, 1)}
	d.apply(t, web, dns, tun)
	checkChanges(t, d,
		"ipvs service updated tcp/192.0.2.100:80 scheduler rr -> wrr, flags 0x0 -> 0x1, persistence 0s -> 300s",
		"ipvs real server removed 192.0.2.13:80",
		"ipvs real server added 192.0.2.14:80",
		"ipvs real server updated 192.0.2.12:80",
		"ipvs real server updated 192.0.2.11:80",
	)
	if got := d.persistence(t, web.Key); got != 300*time.Second {
		t.Errorf("persistence read back as %v, want 300s (299.5s rounded up)", got)
	}
	checkTable(t, d,
		"TCP 192.0.2.100:80 wrr persistent FFFFFFFF",
		"  -> 192.0.2.14:80 Route 1",
		"  -> 192.0.2.11:80 Route 3",
		"  -> 192.0.2.12:80 Route 0",
		"UDP 192.0.2.101:53 wlc",
		"  -> 198.51.100.21:5353 Masq 5",
		"  -> 198.51.100.22:5353 Masq 10",
		"TCP [2001:db8::100]:443 mh",
		"  -> [2001:db8::31]:443 Tunnel 1",
	)

	// Change a forwarding mode in place; drop persistence.
	dns.Forward = dataplane.Tunnel
	dns.Backends = []dataplane.Backend{backend("198.51.100.21", 53, 5), backend("198.51.100.22", 53, 10)}
	d.apply(t, web, dns, tun)
	checkChanges(t, d,
		"ipvs real server removed 198.51.100.21:5353",
		"ipvs real server removed 198.51.100.22:5353",
		"ipvs real server added 198.51.100.22:53",
		"ipvs real server added 198.51.100.21:53",
	)
	dns.Forward = dataplane.DirectRouting
	d.apply(t, web, dns, tun)
	checkChanges(t, d,
		"ipvs real server updated 198.51.100.22:53",
		"ipvs real server updated 198.51.100.21:53",
	)
	web.Persistence = 0
	d.apply(t, web, dns, tun)
	checkChanges(t, d, "ipvs service updated tcp/192.0.2.100:80 flags 0x1 -> 0x0, persistence 300s -> 0s")

	// Delete two services.
	d.apply(t, dns)
	checkChanges(t, d,
		"ipvs service deleted tcp/192.0.2.100:80",
		"ipvs service deleted tcp/[2001:db8::100]:443",
	)
	checkTable(t, d,
		"UDP 192.0.2.101:53 wlc",
		"  -> 198.51.100.21:53 Route 5",
		"  -> 198.51.100.22:53 Route 10",
	)
	d.apply(t)
	checkChanges(t, d, "ipvs service deleted udp/192.0.2.101:53")
	checkTable(t, d)
}

// TestEverySchedulerAndMode creates a service with each scheduler and
// forwarding mode.
func TestEverySchedulerAndMode(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	d := newDirector(t, nettest.NewNS(t, "dir"))
	var services []dataplane.Service
	var want []string
	modes := map[dataplane.ForwardMode]string{dataplane.DirectRouting: "Route", dataplane.NAT: "Masq", dataplane.Tunnel: "Tunnel"}
	port := uint16(1000)
	for _, sched := range dataplane.Schedulers {
		if !kernelHasScheduler(sched) {
			t.Logf("scheduler %s: the kernel has no ip_vs_%s (TestSchedulerModuleMissing)", sched, sched)
			continue
		}
		for _, fwd := range dataplane.ForwardModes {
			port++
			s := dataplane.Service{
				Name: string(sched) + "-" + string(fwd), Key: key("192.0.2.100", port, dataplane.TCP),
				Scheduler: sched, Forward: fwd, Backends: []dataplane.Backend{backend("192.0.2.11", port, 2)},
			}
			services = append(services, s)
			want = append(want, "TCP "+s.Key.Addr.String()+":"+itoa(port)+" "+string(sched), "  -> 192.0.2.11:"+itoa(port)+" "+modes[fwd]+" 2")
		}
	}
	d.apply(t, services...)
	checkTable(t, d, want...)
	if err := d.dp.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	checkTable(t, d)
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestOwnServicesOnly: Detach and Apply leave another tool's services
// alone; a restarted dataplane adopts its services without recreating
// them.
func TestOwnServicesOnly(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	ns := nettest.NewNS(t, "dir")
	d := newDirector(t, ns)

	// A service installed by someone else (as ipvsadm would).
	h, err := mobyipvs.New("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	foreign := &mobyipvs.Service{Address: mustAddr("192.0.2.200").AsSlice(), Protocol: 6, Port: 25,
		SchedName: "lc", AddressFamily: 2, Netmask: 0xffffffff}
	if err := h.NewService(foreign); err != nil {
		t.Fatalf("foreign service: %v", err)
	}
	foreignTable := []string{"TCP 192.0.2.200:25 lc"}

	web := webDR()
	d.apply(t, web)
	d.rec.take()
	checkTable(t, d, append([]string{"TCP 192.0.2.100:80 rr", "  -> 192.0.2.11:80 Route 1",
		"  -> 192.0.2.12:80 Route 1", "  -> 192.0.2.13:80 Route 1"}, foreignTable...)...)
	d.apply(t) // nothing desired: delete ours only
	checkChanges(t, d, "ipvs service deleted tcp/192.0.2.100:80")
	checkTable(t, d, foreignTable...)

	// Close leaves the rules; a new dataplane adopts them unchanged.
	d.apply(t, web)
	d.rec.take()
	if err := d.dp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.dp.Apply(context.Background(), []dataplane.Service{web}); err == nil {
		t.Error("Apply after Close succeeded")
	}
	d2 := newDirector(t, ns)
	d2.apply(t, web)
	checkChanges(t, d2, "ipvs service adopted tcp/192.0.2.100:80")
	if err := d2.dp.Detach(); err != nil {
		t.Fatal(err)
	}
	checkChanges(t, d2, "ipvs service deleted tcp/192.0.2.100:80")
	checkTable(t, d2, foreignTable...)
}

// TestBadInput: what IPVS cannot do is refused before anything changes.
func TestBadInput(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	d := newDirector(t, nettest.NewNS(t, "dir"))
	web := webDR()
	d.apply(t, web)
	d.rec.take()
	gue := tunnelMH()
	gue.Tunnel.Encap = dataplane.EncapGUE
	dup := webDR()
	for name, set := range map[string][]dataplane.Service{
		"gue":       {web, gue},
		"duplicate": {web, dup},
		"weight":    {{Name: "w", Key: key("192.0.2.102", 80, dataplane.TCP), Scheduler: "rr", Forward: "nat", Backends: []dataplane.Backend{backend("192.0.2.11", 80, 1<<20)}}},
		"scheduler": {{Name: "x", Key: key("192.0.2.102", 80, dataplane.TCP), Scheduler: "random", Forward: "nat"}},
	} {
		if err := d.dp.Apply(context.Background(), set); err == nil {
			t.Errorf("%s: Apply accepted it", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		checkChanges(t, d)
	}
}

// TestMissingScheduler: a kernel without the scheduler's module gives
// ErrNotSupported for that service, and the others are still applied.
// It changes the VM-wide modprobe path, so it does not run in parallel
// (parallel tests start after it ends). rr's module is loaded first: the
// test must not depend on an earlier package of the VM run having loaded
// it (XLB_VM_PACKAGES=./dataplane/ipvs runs this package alone).
func TestMissingScheduler(t *testing.T) {
	vm.RequireGuest(t)
	for _, m := range []string{"ip_vs", "ip_vs_rr"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v: %s", m, err, out)
		}
	}
	if _, err := os.Stat("/sys/module/ip_vs_mh"); err == nil {
		if out, err := exec.Command("rmmod", "ip_vs_mh").CombinedOutput(); err != nil {
			t.Fatalf("rmmod ip_vs_mh: %v: %s", err, out)
		}
	}
	old, err := os.ReadFile("/proc/sys/kernel/modprobe")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, "/proc/sys/kernel/modprobe", "/nonexistent/modprobe")
	t.Cleanup(func() { writeFile(t, "/proc/sys/kernel/modprobe", strings.TrimSpace(string(old))) })

	rec := &recorder{t: t}
	ns := nettest.NewNS(t, "dir")
	dp, err := ipvs.New(ipvs.Options{Logger: slog.New(rec), NetNS: "/run/netns/" + ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	d := &director{ns: ns, dp: dp, rec: rec}
	tun, web := tunnelMH(), webDR()
	err = dp.Apply(context.Background(), []dataplane.Service{tun, web})
	if !errors.Is(err, dataplane.ErrNotSupported) || !strings.Contains(err.Error(), "ip_vs_mh") {
		t.Fatalf("Apply(mh) without ip_vs_mh: %v, want ErrNotSupported naming ip_vs_mh", err)
	}
	t.Logf("Apply: %v", err)
	checkTable(t, d, "TCP 192.0.2.100:80 rr", "  -> 192.0.2.11:80 Route 1",
		"  -> 192.0.2.12:80 Route 1", "  -> 192.0.2.13:80 Route 1")

	// With modprobe back, the kernel loads ip_vs_mh on demand.
	writeFile(t, "/proc/sys/kernel/modprobe", strings.TrimSpace(string(old)))
	d.rec.take()
	d.apply(t, tun, web)
	checkChanges(t, d, "ipvs service created tcp/[2001:db8::100]:443", "ipvs real server added [2001:db8::31]:443")
}
