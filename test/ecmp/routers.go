package ecmp

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

var sigterm = syscall.SIGTERM

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// kernelNextHops reads the router namespace's kernel route to the VIP:
// its next hops, sorted (a route through a nexthop group is followed).
func kernelNextHops(ns *nettest.NS) ([]string, error) {
	out, err := ns.Run("ip", "-j", "route", "show", vip.String()+"/32")
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		NHID     int    `json:"nhid"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return nil, fmt.Errorf("ip -j route: %v: %s", err, out)
	}
	var hops []string
	for _, r := range routes {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, n := range r.Nexthops {
			hops = append(hops, n.Gateway)
		}
		if r.NHID != 0 && r.Gateway == "" && len(r.Nexthops) == 0 {
			g, err := groupHops(ns, r.NHID)
			if err != nil {
				return nil, err
			}
			hops = append(hops, g...)
		}
	}
	slices.SortFunc(hops, func(a, b string) int { return netip.MustParseAddr(a).Compare(netip.MustParseAddr(b)) })
	return hops, nil
}

// groupHops resolves a kernel nexthop (group) id to gateways.
func groupHops(ns *nettest.NS, id int) ([]string, error) {
	out, err := ns.Run("ip", "-j", "nexthop", "show", "id", fmt.Sprint(id))
	if err != nil {
		return nil, err
	}
	var nhs []struct {
		Gateway string `json:"gateway"`
		Group   []struct {
			ID int `json:"id"`
		} `json:"group"`
	}
	if err := json.Unmarshal([]byte(out), &nhs); err != nil {
		return nil, fmt.Errorf("ip -j nexthop: %v: %s", err, out)
	}
	var hops []string
	for _, nh := range nhs {
		if nh.Gateway != "" {
			hops = append(hops, nh.Gateway)
		}
		for _, g := range nh.Group {
			sub, err := groupHops(ns, g.ID)
			if err != nil {
				return nil, err
			}
			hops = append(hops, sub...)
		}
	}
	return hops, nil
}

// FRR runs zebra, bgpd and bfdd with their own configuration, pid and vty
// socket directory.
type FRR struct {
	t   testing.TB
	ns  *nettest.NS
	dir string
}

func startFRR(t testing.TB, ns *nettest.NS, _ string, peers []netip.Addr, bfd bool) *FRR {
	t.Helper()
	if _, err := os.Stat("/usr/lib/frr/bgpd"); err != nil {
		t.Fatalf("FRR is not installed (apt-get install frr; .ci/deps installs it): %v", err)
	}
	// The daemons run as the frr user: their directory is theirs, outside
	// the test's private temporary directory.
	dir, err := os.MkdirTemp("", "xlbt-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &FRR{t: t, ns: ns, dir: dir}
	if out, err := exec.Command("chown", "-R", "frr:frr", f.dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hostname router\n!\nrouter bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n", routerASN, routerAddr)
	for _, p := range peers {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers 3 9\n neighbor %s timers connect 1\n neighbor %s password %s\n", p, xlbASN, p, p, p, password)
		if bfd {
			fmt.Fprintf(&b, " neighbor %s bfd profile xlb\n", p)
		}
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n!\n")
	files := map[string]string{
		"zebra.conf": "hostname router\n",
		"bgpd.conf":  b.String(),
		"bfdd.conf":  "bfd\n profile xlb\n  detect-multiplier 3\n  receive-interval 300\n  transmit-interval 300\n !\n!\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dmn := range []string{"zebra", "bfdd", "bgpd"} {
		args := []string{"-f", filepath.Join(f.dir, dmn+".conf"), "-i", filepath.Join(f.dir, dmn+".pid"),
			"-z", filepath.Join(f.dir, "zserv.api"), "--vty_socket", f.dir, "-P", "0", "--log", "file:" + filepath.Join(f.dir, dmn+".log")}
		if dmn == "bfdd" {
			args = append(args, "--bfdctl", filepath.Join(f.dir, "bfdd.sock"))
		}
		ns.Start(t, "/usr/lib/frr/"+dmn, args...)
		nettest.WaitFor(t, 20*time.Second, dmn+" vty", func() error {
			_, err := os.Stat(filepath.Join(f.dir, dmn+".vty"))
			return err
		})
	}
	return f
}

// Vtysh runs one vtysh command.
func (f *FRR) Vtysh(cmd string) (string, error) {
	return f.ns.Run("vtysh", "--vty_socket", f.dir, "-c", cmd)
}

func (f *FRR) NextHops() ([]string, error) { return kernelNextHops(f.ns) }

func (f *FRR) Describe() string {
	var b strings.Builder
	for _, c := range []string{"show bgp summary", "show bgp ipv4 unicast " + vip.String() + "/32", "show bfd peers brief", "show bfd peers counters", "show ip route " + vip.String() + "/32"} {
		out, _ := f.Vtysh(c)
		fmt.Fprintf(&b, "# %s\n%s\n", c, out)
	}
	log, _ := os.ReadFile(filepath.Join(f.dir, "bgpd.log"))
	fmt.Fprintf(&b, "# bgpd.log\n%s\n", log)
	return b.String()
}

// BFDPeer is FRR's view of its BFD session with addr, and its counters
// (JSON).
func (f *FRR) BFDPeer(addr netip.Addr) string {
	peer, _ := f.Vtysh("show bfd peer " + addr.String() + " json")
	counters, _ := f.Vtysh("show bfd peer " + addr.String() + " counters json")
	return peer + "\n" + counters
}

// Neighbor is FRR's view of one BGP neighbour.
type Neighbor struct {
	State               string `json:"bgpState"`
	ConnectionsEstab    int    `json:"connectionsEstablished"`
	LastResetDueTo      string `json:"lastResetDueTo"`
	LastNotificationMsg string `json:"lastShutdownDescription"`
	Messages            struct {
		OpensRecv int `json:"opensRecv"`
	} `json:"messageStats"`
	GR struct {
		Remote string `json:"remoteGrMode"`
	} `json:"gracefulRestartInfo"`
	UpMsec int64 `json:"bgpTimerUpMsec"` // how long it has been Established
	BFD    *struct {
		Status string `json:"status"`
	} `json:"peerBfdInfo"`
	Raw json.RawMessage `json:"-"`
}

// Settled reports why FRR's session with addr is not settled: not
// Established for a second, or its BFD session (if any) not Up. FRR
// installs its BFD session anew when the BGP session comes up, and GoBGP
// takes the old one's going down for a failure: a director's first
// session is reset within a few seconds of coming up (it comes up again
// 2-3 s later), and the BFD session is Down meanwhile. A test of what a
// director does to its session waits for that first.
func (f *FRR) Settled(addr netip.Addr) error {
	n, _, err := f.Neighbor(addr)
	switch {
	case err != nil:
		return err
	case n.State != "Established":
		return fmt.Errorf("%s: %s", addr, n.State)
	case n.UpMsec < 1000:
		return fmt.Errorf("%s: Established %d ms ago", addr, n.UpMsec)
	case n.BFD != nil && !strings.EqualFold(n.BFD.Status, "up"):
		return fmt.Errorf("%s: Established, BFD %s", addr, n.BFD.Status)
	}
	return nil
}

// Neighbor returns FRR's view of neighbour addr.
func (f *FRR) Neighbor(addr netip.Addr) (Neighbor, string, error) {
	out, err := f.Vtysh("show bgp neighbors " + addr.String() + " json")
	if err != nil {
		return Neighbor{}, out, err
	}
	var m map[string]Neighbor
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return Neighbor{}, out, fmt.Errorf("%v: %s", err, out)
	}
	return m[addr.String()], out, nil
}

// Paths returns FRR's paths to the VIP: next hop -> local preference and
// communities.
func (f *FRR) Paths() (map[string]string, error) {
	out, err := f.Vtysh("show bgp ipv4 unicast " + vip.String() + "/32 json")
	if err != nil {
		return nil, err
	}
	var r struct {
		Paths []struct {
			LocPrf    int `json:"locPrf"`
			Community struct {
				String string `json:"string"`
			} `json:"community"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
			Multipath bool `json:"multipath"`
			Stale     bool `json:"stale"`
			Bestpath  *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	m := map[string]string{}
	for _, p := range r.Paths {
		if len(p.Nexthops) > 0 {
			m[p.Nexthops[0].IP] = fmt.Sprintf("locprf %d community %q", p.LocPrf, p.Community.String)
			if p.Stale {
				m[p.Nexthops[0].IP] += " stale"
			}
		}
	}
	return m, nil
}

// BIRD runs BIRD 2 with its own configuration and control socket.
type BIRD struct {
	ns   *nettest.NS
	dir  string
	sock string
}

func startBIRD(t testing.TB, ns *nettest.NS, labDir string, peers []netip.Addr, bfd bool) *BIRD {
	t.Helper()
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatalf("BIRD is not installed (apt-get install bird2; .ci/deps installs it): %v", err)
	}
	b := &BIRD{ns: ns, dir: filepath.Join(labDir, "bird")}
	b.sock = filepath.Join(b.dir, "bird.ctl")
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var c strings.Builder
	fmt.Fprintf(&c, `router id %s;
log "%s" all;
protocol device {}
protocol kernel {
	ipv4 { export all; };
	merge paths yes limit 8;
}
`, routerAddr, filepath.Join(b.dir, "bird.log"))
	if bfd {
		c.WriteString("protocol bfd {\n\tinterface \"eth1\" { min rx interval 300 ms; min tx interval 300 ms; multiplier 3; };\n}\n")
	}
	// error wait time: after a session error (a BFD session lost while the
	// machine is starved of CPU, e.g. another director loading its
	// program), BIRD waits 60s by default before it connects again; FRR
	// retries within seconds. The test waits for the sessions, not for
	// BIRD's back-off.
	fmt.Fprintf(&c, "template bgp xlb {\n\tlocal %s as %d;\n\tipv4 { import all; export none; };\n\thold time 9;\n\tconnect retry time 1;\n\terror wait time 1, 5;\n\tpassword %q;\n", routerAddr, routerASN, password)
	if bfd {
		c.WriteString("\tbfd on;\n")
	}
	c.WriteString("}\n")
	for i, p := range peers {
		fmt.Fprintf(&c, "protocol bgp d%d from xlb { neighbor %s as %d; }\n", i+1, p, xlbASN)
	}
	conf := filepath.Join(b.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(c.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Start(t, "bird", "-f", "-c", conf, "-s", b.sock, "-P", filepath.Join(b.dir, "bird.pid"))
	nettest.WaitFor(t, 20*time.Second, "bird control socket", func() error {
		_, err := b.Birdc("show status")
		return err
	})
	return b
}

// Birdc runs one birdc command.
func (b *BIRD) Birdc(cmd string) (string, error) {
	return b.ns.Run("birdc", append([]string{"-s", b.sock}, strings.Fields(cmd)...)...)
}

func (b *BIRD) NextHops() ([]string, error) { return kernelNextHops(b.ns) }

func (b *BIRD) Describe() string {
	var s strings.Builder
	for _, c := range []string{"show protocols all", "show route all", "show bfd sessions"} {
		out, _ := b.Birdc(c)
		fmt.Fprintf(&s, "# %s\n%s\n", c, out)
	}
	log, _ := os.ReadFile(filepath.Join(b.dir, "bird.log"))
	fmt.Fprintf(&s, "# bird.log\n%s\n", log)
	return s.String()
}
