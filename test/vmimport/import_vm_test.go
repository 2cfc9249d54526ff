//go:build vmtest

package vmimport_test

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
	"github.com/xlb-dev/xlb/vrrp"
)

// Where test/vm ships them (vm_test.go).
const (
	xlbBin     = "/usr/sbin/xlb"
	samplesDir = "/usr/share/doc/keepalived/samples"
)

// importSample runs xlb import keepalived on a sample and returns the
// TOML's path and the configuration it loads to.
func importSample(t *testing.T, sample string) (string, *config.Config) {
	out, cfg, _ := importSampleDiags(t, sample)
	return out, cfg
}

// importSampleDiags is importSample that also returns the diagnostics.
func importSampleDiags(t *testing.T, sample string) (string, *config.Config, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "xlb.toml")
	cmd := exec.Command(xlbBin, "import", "keepalived", "--config", filepath.Join(samplesDir, sample), "--out", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xlb import keepalived %s: %v\n%s", sample, err, b)
	}
	if c, _ := exec.Command(xlbBin, "check", "--offline", "--config", out).CombinedOutput(); !strings.Contains(string(c), "OK") {
		t.Fatalf("xlb check --offline: %s", c)
	}
	cfg, err := config.Load(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out, cfg, string(b)
}

// ipvsTable is `ipvsadm -Ln` in ns (with flags, such as --thresholds),
// normalised: the header dropped, white space collapsed, the connection
// counters dropped, real servers sorted within their service (their order
// is the order they came up in).
func ipvsTable(t *testing.T, ns *nettest.NS, flags ...string) string {
	t.Helper()
	out := ns.MustRun(t, "ipvsadm", append([]string{"-Ln"}, flags...)...)
	var blocks [][]string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0 || strings.HasPrefix(l, "IP Virtual Server") || strings.HasPrefix(l, "Prot ") || strings.Contains(l, "RemoteAddress"):
		case f[0] == "->":
			if len(f) > 4 {
				f = f[:4]
			}
			b := &blocks[len(blocks)-1]
			*b = append(*b, "  "+strings.Join(f, " "))
		default:
			blocks = append(blocks, []string{strings.Join(f, " ")})
		}
	}
	var lines []string
	for _, b := range blocks {
		slices.Sort(b[1:])
		lines = append(lines, strings.Join(b, "\n"))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// settled waits until ns's IPVS table lists every real server of cfg with
// its configured weight, and returns it.
func settled(t *testing.T, ns *nettest.NS, cfg *config.Config, who string) string {
	t.Helper()
	var tbl string
	nettest.WaitFor(t, 90*time.Second, who+"'s IPVS table with every real server up", func() error {
		tbl = ipvsTable(t, ns)
		for _, vs := range cfg.VirtualServers {
			for _, rs := range vs.RealServers {
				want := fmt.Sprintf("-> %s ", rs.AddrPort())
				found := false
				for _, l := range strings.Split(tbl, "\n") {
					if strings.Contains(l, want) && strings.HasSuffix(l, fmt.Sprintf(" %d", rs.Weight)) {
						found = true
					}
				}
				if !found {
					return fmt.Errorf("no %s with weight %d in:\n%s", rs.AddrPort(), rs.Weight, tbl)
				}
			}
		}
		return nil
	})
	return tbl
}

// daemon starts a program in ns and returns a stop function that sends
// SIGTERM and waits for it to exit.
func daemon(t *testing.T, ns *nettest.NS, name string, args ...string) func() {
	t.Helper()
	cmd := ns.Command(name, args...)
	var buf nettest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("%s did not stop on SIGTERM within 30s", name)
			}
			if t.Failed() {
				t.Logf("%s %s:\n%s", name, strings.Join(args, " "), buf.String())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// keepalivedArgs runs keepalived in the foreground, logging to stderr,
// with pid files of its own.
func keepalivedArgs(t *testing.T, conf string, only string) []string {
	dir := t.TempDir()
	return []string{"-n", "-l", "-D", only, "-f", conf, "-p", dir + "/k.pid", "-c", dir + "/c.pid", "-r", dir + "/v.pid"}
}

// writeScript writes an executable shell script (the MISC_CHECK and notify
// programs the samples name).
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
}

// listen accepts TCP connections on port in ns (for TCP_CHECK), closing
// each, until the test ends.
func listen(t *testing.T, ns *nettest.NS, port int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// The samples keepalived accepts (keepalived -t exit 0) and xlb imports,
// with what their checks need to pass.
var ipvsSamples = []struct {
	sample string
	setup  func(t *testing.T, ns *nettest.NS)
}{
	{"keepalived.conf.misc_check", func(t *testing.T, ns *nettest.NS) {
		writeScript(t, "/usr/local/bin/script.sh", "exit 0")
	}},
	{"keepalived.conf.misc_check_arg", func(t *testing.T, ns *nettest.NS) {
		writeScript(t, "/usr/local/bin/script.sh", "exit 0")
	}},
	{"keepalived.conf.quorum", func(t *testing.T, ns *nettest.NS) {
		// TCP_CHECK connects to 10.0.0.1-10 port 80.
		for i := 1; i <= 10; i++ {
			nettest.Addr(t, ns, "lo", fmt.Sprintf("10.0.0.%d/32", i))
		}
		listen(t, ns, 80)
	}},
}

// keepalived and xlb, from the same file, install the same IPVS services.
func TestIPVSAgainstKeepalived(t *testing.T) {
	vm.RequireGuest(t)
	for _, m := range []string{"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_wlc"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v: %s", m, err, out)
		}
	}
	for _, tc := range ipvsSamples {
		t.Run(tc.sample, func(t *testing.T) {
			start := time.Now()
			conf := filepath.Join(samplesDir, tc.sample)
			if out, err := exec.Command("keepalived", "-t", "-f", conf).CombinedOutput(); err != nil {
				t.Fatalf("keepalived -t does not accept %s: %v\n%s", tc.sample, err, out)
			}
			imported, cfg := importSample(t, tc.sample)

			ns := nettest.NewNS(t, "ka")
			ns.MustRun(t, "ip", "link", "set", "lo", "up")
			tc.setup(t, ns)
			stop := daemon(t, ns, "keepalived", keepalivedArgs(t, conf, "-C")...)
			want := settled(t, ns, cfg, "keepalived")
			stop()

			ns2 := nettest.NewNS(t, "xlb")
			ns2.MustRun(t, "ip", "link", "set", "lo", "up")
			tc.setup(t, ns2)
			stop = daemon(t, ns2, xlbBin, "run", "--config", imported)
			got := settled(t, ns2, cfg, "xlb")
			stop()
			if got != want {
				t.Errorf("ipvsadm -Ln differs:\nkeepalived:\n%s\nxlb:\n%s", want, got)
			}
			t.Logf("ipvsadm -Ln (both), in %v:\n%s", time.Since(start).Round(time.Millisecond), got)
		})
	}
}

// advert is what the comparison keeps of a VRRP advertisement.
type advert struct {
	Version  int
	VRID     uint8
	Priority uint8
	Interval time.Duration
	AuthType uint8
	AuthData string
	Addrs    string
}

// adverts captures the VRRP advertisements arriving on dev in ns until
// every VRID of want has been seen twice (the first of a new master may
// come before its state settles), and returns the last of each.
func adverts(t *testing.T, ns *nettest.NS, dev string, vrids []uint8, who string) map[uint8]advert {
	t.Helper()
	c := ns.Capture(t, dev, 0x0800)
	seen := map[uint8]int{}
	last := map[uint8]advert{}
	deadline := time.After(40 * time.Second)
	for {
		done := true
		for _, v := range vrids {
			done = done && seen[v] >= 2
		}
		if done {
			c.Drain()
			return last
		}
		select {
		case f := <-c.Frames():
			b := f.Data
			if len(b) < 14+20 || b[14+9] != vrrp.IPProtoVRRP {
				continue
			}
			ihl := int(b[14]&0x0f) * 4
			src, _ := netip.AddrFromSlice(b[14+12 : 14+16])
			dst, _ := netip.AddrFromSlice(b[14+16 : 14+20])
			total := int(binary.BigEndian.Uint16(b[14+2:]))
			if 14+total > len(b) || ihl < 20 || ihl > total {
				continue
			}
			a, err := vrrp.ParseAdvert(b[14+ihl:14+total], src, dst)
			if err != nil {
				t.Errorf("%s sent an advert xlb's parser refuses: %v", who, err)
				continue
			}
			if a.Priority == 0 {
				continue // a resigning master
			}
			var addrs []string
			for _, x := range a.Addrs {
				addrs = append(addrs, x.String())
			}
			slices.Sort(addrs)
			seen[a.VRID]++
			last[a.VRID] = advert{a.Version, a.VRID, a.Priority, a.Interval, a.AuthType, string(a.AuthData[:]), strings.Join(addrs, " ")}
		case <-deadline:
			t.Errorf("%s: adverts seen per VRID %v, want each of %v twice", who, seen, vrids)
			return last
		}
	}
}

func eth0VRIDs(cfg *config.Config) []uint8 { return vridsOn(cfg, "eth0") }
func eth1VRIDs(cfg *config.Config) []uint8 { return vridsOn(cfg, "eth1") }

func vridsOn(cfg *config.Config, dev string) []uint8 {
	var out []uint8
	for _, in := range cfg.VRRPInstances {
		if in.Interface == dev {
			out = append(out, in.VirtualRouterID)
		}
	}
	return out
}

// keepalived and xlb, from the same file, advertise the same VRIDs,
// priorities, intervals, authentication and addresses.
func TestVRRPAgainstKeepalived(t *testing.T) {
	vm.RequireGuest(t)
	const sample = "keepalived.conf.vrrp"
	conf := filepath.Join(samplesDir, sample)
	imported, cfg, diags := importSampleDiags(t, sample)
	var vrids []uint8
	for _, in := range cfg.VRRPInstances {
		vrids = append(vrids, in.VirtualRouterID)
	}
	// The sample's instances are on eth0 and eth1: each is a veth to a
	// peer namespace that captures.
	run := func(who string, start func(ns *nettest.NS) func()) map[uint8]advert {
		ns := nettest.NewNS(t, "d")
		peer := nettest.NewNS(t, "p")
		nettest.Veth(t, ns, "eth0", peer, "peer0")
		nettest.Veth(t, ns, "eth1", peer, "peer1")
		nettest.Addr(t, ns, "eth0", "192.168.200.2/24")
		nettest.Addr(t, ns, "eth1", "192.168.201.2/24")
		if who == "keepalived" {
			if out, err := ns.Run("keepalived", "-t", "-f", conf); err != nil {
				t.Fatalf("keepalived -t does not accept %s with its interfaces: %v\n%s", sample, err, out)
			}
		}
		stop := start(ns)
		defer stop()
		got := map[uint8]advert{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for dev, ids := range map[string][]uint8{"peer0": eth0VRIDs(cfg), "peer1": eth1VRIDs(cfg)} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := adverts(t, peer, dev, ids, who+" on "+dev)
				mu.Lock()
				maps.Copy(got, m)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return got
	}
	want := run("keepalived", func(ns *nettest.NS) func() {
		return daemon(t, ns, "keepalived", keepalivedArgs(t, conf, "-P")...)
	})
	got := run("xlb", func(ns *nettest.NS) func() {
		return daemon(t, ns, xlbBin, "run", "--config", imported)
	})
	for _, v := range vrids {
		w, g := want[v], got[v]
		switch {
		case g == w:
			t.Logf("VRID %d: both send %+v", v, g)
		case announcedDuplicate(w, g, diags):
			// keepalived lists a duplicated virtual_ipaddress twice; xlb's
			// configuration cannot, and the importer says so.
			t.Logf("VRID %d: both send %+v, except keepalived's duplicate address (%s), as the importer warned", v, g, w.Addrs)
		default:
			t.Errorf("VRID %d: keepalived sends %+v, xlb %+v", v, w, g)
		}
	}
}

// announcedDuplicate reports whether two adverts differ only by addresses
// keepalived repeats, each of which the importer warned about.
func announcedDuplicate(w, g advert, diags string) bool {
	wa := strings.Fields(w.Addrs)
	uniq := slices.Compact(slices.Clone(wa))
	w.Addrs = strings.Join(uniq, " ")
	if w != g || len(uniq) == len(wa) {
		return false
	}
	for i := 1; i < len(wa); i++ {
		if wa[i] == wa[i-1] && !strings.Contains(diags, wa[i]+" is already on line") {
			return false
		}
	}
	return true
}

// xlb import ipvsadm reads what ipvsadm-save -n writes of rules added in
// the kernel, and xlb run installs the same table again.
func TestImportIPVSAdm(t *testing.T) {
	vm.RequireGuest(t)
	ns := nettest.NewNS(t, "ipv")
	rules := [][]string{
		{"-A", "-t", "10.1.0.1:80", "-s", "rr", "-p", "120"},
		{"-a", "-t", "10.1.0.1:80", "-r", "10.1.1.1:8080", "-m", "-w", "3"},
		{"-a", "-t", "10.1.0.1:80", "-r", "10.1.1.2:8080", "-m", "-w", "0"},
		{"-A", "-u", "10.1.0.1:53", "-s", "wlc"},
		{"-a", "-u", "10.1.0.1:53", "-r", "10.1.1.3:53", "-g", "-w", "1"},
		{"-A", "-t", "[2001:db8::1]:443", "-s", "sh"},
		{"-a", "-t", "[2001:db8::1]:443", "-r", "[2001:db8::2]:443", "-i", "-w", "2"},
		{"-A", "-t", "10.1.0.2:3128", "-s", "lblcr"},
		{"-a", "-t", "10.1.0.2:3128", "-r", "10.1.1.4:3128", "-g", "-w", "1"},
		{"-a", "-t", "10.1.0.2:3128", "-r", "10.1.1.5:3128", "-g", "-w", "2"},
	}
	modprobe(t, "ip_vs_lblcr")
	for _, r := range rules {
		ns.MustRun(t, "ipvsadm", r...)
	}
	want := ipvsTable(t, ns)
	saved := ns.MustRun(t, "ipvsadm", "-Sn") // what ipvsadm-save -n runs
	file := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(file, []byte(saved), 0o644)
	out := filepath.Join(t.TempDir(), "xlb.toml")
	if b, err := exec.Command(xlbBin, "import", "ipvsadm", "--file", file, "--out", out).CombinedOutput(); err != nil {
		t.Fatalf("xlb import ipvsadm: %v\n%s\nof:\n%s", err, b, saved)
	}
	cfg, err := config.Load(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "ipvsadm", "-C")
	stop := daemon(t, ns, xlbBin, "run", "--config", out)
	got := settled(t, ns, cfg, "xlb")
	stop()
	if got != want {
		t.Errorf("ipvsadm -Ln differs:\nrules added:\n%s\nxlb from their ipvsadm-save:\n%s", want, got)
	}
}

// modprobe loads kernel modules (IPVS's schedulers: the VM's kernel loads
// none on demand).
func modprobe(t *testing.T, modules ...string) {
	t.Helper()
	for _, m := range modules {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v: %s", m, err, out)
		}
	}
}

// schedulersConf is a keepalived configuration with IPVS's other
// schedulers and real server thresholds (uthreshold, lthreshold); twos,
// where the kernel has it (Linux 6.2 and later), is added to it.
const schedulersConf = `global_defs {
  router_id vmimport
}
virtual_server 10.2.0.1 80 {
  lb_algo sed
  lb_kind NAT
  protocol TCP
  real_server 10.2.1.1 8080 {
    weight 2
    uthreshold 100
    lthreshold 50
  }
  real_server 10.2.1.2 8080 {
    uthreshold 8
  }
}
virtual_server 10.2.0.2 80 {
  lvs_sched nq
  lb_kind DR
  protocol TCP
  real_server 10.2.1.1 80 {
    lthreshold 3
    uthreshold 4
  }
}
virtual_server 10.2.0.3 80 {
  lb_algo fo
  lb_kind DR
  protocol TCP
  real_server 10.2.1.1 80 {
    weight 5
  }
  real_server 10.2.1.2 80 {
    weight 3
  }
}
virtual_server 10.2.0.4 80 {
  lb_algo ovf
  lb_kind DR
  protocol UDP
  real_server 10.2.1.1 80 {
  }
}
virtual_server 10.2.0.5 3128 {
  lb_algo dh
  lb_kind DR
  protocol TCP
  real_server 10.2.1.3 3128 {
  }
}
virtual_server 10.2.0.6 3128 {
  lb_algo lblc
  lb_kind DR
  protocol TCP
  real_server 10.2.1.3 3128 {
    uthreshold 1000
  }
}
virtual_server 10.2.0.7 3128 {
  lb_algo lblcr
  lb_kind DR
  protocol TCP
  real_server 10.2.1.3 3128 {
  }
  real_server 10.2.1.4 3128 {
  }
}
`

const twosConf = `virtual_server 10.2.0.8 80 {
  lb_algo twos
  lb_kind DR
  protocol TCP
  real_server 10.2.1.1 80 {
    weight 3
    uthreshold 20
  }
  real_server 10.2.1.2 80 {
  }
}
`

// keepalived and xlb, from the same file, install the same IPVS services
// with IPVS's other schedulers (sed, nq, fo, ovf, twos, dh, lblc, lblcr)
// and the same real server thresholds.
func TestSchedulersAgainstKeepalived(t *testing.T) {
	vm.RequireGuest(t)
	src := schedulersConf
	scheds := []string{"sed", "nq", "fo", "ovf", "dh", "lblc", "lblcr"}
	if m, _ := filepath.Glob("/lib/modules/*/kernel/net/netfilter/ipvs/ip_vs_twos.ko*"); len(m) > 0 {
		src += twosConf
		scheds = append(scheds, "twos")
	} else {
		t.Log("the kernel has no ip_vs_twos: twos left out")
	}
	modprobe(t, "ip_vs")
	for _, s := range scheds {
		modprobe(t, "ip_vs_"+s)
	}
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("keepalived", "-t", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("keepalived -t does not accept the configuration: %v\n%s", err, out)
	}
	imported := filepath.Join(t.TempDir(), "xlb.toml")
	if b, err := exec.Command(xlbBin, "import", "keepalived", "--config", conf, "--out", imported).CombinedOutput(); err != nil {
		t.Fatalf("xlb import keepalived: %v\n%s", err, b)
	}
	cfg, err := config.Load(imported, nil)
	if err != nil {
		t.Fatal(err)
	}

	ns := nettest.NewNS(t, "ka")
	ns.MustRun(t, "ip", "link", "set", "lo", "up")
	stop := daemon(t, ns, "keepalived", keepalivedArgs(t, conf, "-C")...)
	want := settled(t, ns, cfg, "keepalived")
	wantThresholds := ipvsTable(t, ns, "--thresholds")
	stop()

	ns2 := nettest.NewNS(t, "xlb")
	ns2.MustRun(t, "ip", "link", "set", "lo", "up")
	stop = daemon(t, ns2, xlbBin, "run", "--config", imported)
	got := settled(t, ns2, cfg, "xlb")
	gotThresholds := ipvsTable(t, ns2, "--thresholds")
	stop()
	if got != want {
		t.Errorf("ipvsadm -Ln differs:\nkeepalived:\n%s\nxlb:\n%s", want, got)
	}
	if gotThresholds != wantThresholds {
		t.Errorf("ipvsadm -Ln --thresholds differs:\nkeepalived:\n%s\nxlb:\n%s", wantThresholds, gotThresholds)
	}
	for _, s := range scheds {
		if !strings.Contains(got, " "+s+"\n") && !strings.HasSuffix(got, " "+s) {
			t.Errorf("no %s service in:\n%s", s, got)
		}
	}
	t.Logf("ipvsadm -Ln (both):\n%s\n--thresholds (both):\n%s", got, gotThresholds)
}
