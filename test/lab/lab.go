// Package lab builds xlb test topologies in network namespaces: a switch (a
// bridge in its own namespace), a client, one or two directors running
// `xlb run` (or keepalived for VRRP), and real servers running a real HTTP
// server that answers with its name and a TCP echo service for long-lived
// flows. It is used by the end-to-end tests and by `make demo`.
//
// Layouts: DR (one segment: client, directors and real servers, the VIP on
// the real servers' lo with arp_ignore=1/arp_announce=2, as LVS-DR) and NAT
// (a client network and a private network whose gateway, a second VRRP
// address, is the master director).
//
// Every name is unique, everything is removed when the test ends (and on
// SIGINT/SIGTERM), and no traffic leaves the lab's namespaces.
package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xlb-dev/xlb/test/nettest"
)

// Layouts.
const (
	DR  = "dr"
	NAT = "nat"
)

// Spec describes a lab.
type Spec struct {
	// Layout is DR (default) or NAT.
	Layout string
	// Directors is 1 or 2 (default 2). With 2 they run VRRP, director 0
	// MASTER with priority 150, director 1 BACKUP with 100.
	Directors int
	// Reals is the number of real servers (default 3).
	Reals int
	// Scheduler of the services (default mh).
	Scheduler string
	// AdvertInt of the VRRP instances (default 100ms, VRRPv3).
	AdvertInt time.Duration
	// Health check of the web service: interval, fall, rise (default 200ms,
	// 2, 2).
	CheckInterval time.Duration
	Fall, Rise    int
	// Keepalived makes director 1 run keepalived for VRRP, with xlb there
	// forwarding (no vrrp_instance binding: traffic follows the VIP).
	Keepalived bool
	// IPv6 adds an IPv6 VIP and addresses (DR layout).
	IPv6 bool
	// Extra is appended to every director's configuration.
	Extra string
	// StartTimeout bounds a director's start, until its control socket
	// answers (default 20s; loading the XDP program in the tcg VM takes
	// longer).
	StartTimeout time.Duration
}

// Lab is a running topology.
type Lab struct {
	T    testing.TB
	Spec Spec
	// Dir holds configurations, logs, sockets and the bpffs of the pins.
	Dir       string
	Switch    *nettest.NS
	Client    *nettest.NS
	Directors []*Director
	Reals     []*Real
	// VIP is the virtual address; ClientAddr the client's; Gateway the
	// private network's gateway address (NAT), a second VRRP address.
	VIP, VIP6  netip.Addr
	ClientAddr netip.Addr
	Gateway    netip.Addr
	bpffs      string
	pass       *ebpf.Program // passXDP's
}

// Ports of the services.
const (
	WebPort  = 80
	EchoPort = 7
	// NATPort is the real servers' web port behind NAT (port mapping).
	NATPort = 8080
)

// Addresses: the client network 10.77.0.0/24 (DR: everything), the NAT
// private network 10.78.0.0/24.
var (
	vip        = netip.MustParseAddr("10.77.0.100")
	vip6       = netip.MustParseAddr("fd77::100")
	gatewayVIP = netip.MustParseAddr("10.78.0.1")
)

// New builds the lab. It fails the test on any error and removes
// everything when the test ends.
func New(t testing.TB, spec Spec) *Lab {
	t.Helper()
	nettest.RequireRoot(t)
	if spec.Layout == "" {
		spec.Layout = DR
	}
	if spec.Directors == 0 {
		spec.Directors = 2
	}
	if spec.Reals == 0 {
		spec.Reals = 3
	}
	if spec.Scheduler == "" {
		spec.Scheduler = "mh"
	}
	if spec.StartTimeout == 0 {
		spec.StartTimeout = 20 * time.Second
	}
	if spec.AdvertInt == 0 {
		spec.AdvertInt = 100 * time.Millisecond
	}
	if spec.CheckInterval == 0 {
		spec.CheckInterval = 200 * time.Millisecond
	}
	if spec.Fall == 0 {
		spec.Fall = 2
	}
	if spec.Rise == 0 {
		spec.Rise = 2
	}
	l := &Lab{T: t, Spec: spec, VIP: vip, ClientAddr: netip.MustParseAddr("10.77.0.10")}
	if spec.IPv6 {
		l.VIP6 = vip6
	}
	if spec.Layout == NAT {
		l.Gateway = gatewayVIP
	}
	l.Dir = t.TempDir()
	register(l)
	t.Cleanup(func() { unregister(l) })
	l.mountBPFFS()
	l.build()
	return l
}

// mountBPFFS mounts a bpffs for the directors' pins: `ip netns exec`
// remounts /sys, so /sys/fs/bpf is not there, but this mount is.
func (l *Lab) mountBPFFS() {
	l.bpffs = filepath.Join(l.Dir, "bpffs")
	if err := os.MkdirAll(l.bpffs, 0o700); err != nil {
		l.T.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", l.bpffs).CombinedOutput(); err != nil {
		l.T.Fatalf("mount bpffs: %v: %s", err, out)
	}
	l.T.Cleanup(func() { _ = exec.Command("umount", "-l", l.bpffs).Run() })
}

func (l *Lab) build() {
	t := l.T
	l.Switch = nettest.NewNS(t, "sw")
	nettest.Bridge(t, l.Switch, "br0")
	if l.Spec.Layout == NAT {
		nettest.Bridge(t, l.Switch, "br1")
	}
	// attach plugs a namespace into a bridge; the switch-side end gets GRO
	// and an XDP program that passes everything, so that native
	// XDP_TX/redirect toward it is delivered (see passXDP). The host end
	// computes its checksums itself: a veth otherwise leaves them to an
	// "offload" that XDP (which turns the packet into a raw frame) drops,
	// while real NICs deliver packets with their checksums.
	port := 0
	attach := func(ns *nettest.NS, dev, bridge string) {
		port++
		sw := fmt.Sprintf("p%d", port)
		nettest.Veth(t, ns, dev, l.Switch, sw)
		l.Switch.MustRun(t, "ip", "link", "set", sw, "master", bridge)
		nettest.GRO(t, l.Switch, sw)
		l.passXDP(l.Switch, sw)
		ns.MustRun(t, "ethtool", "-K", dev, "tx", "off")
	}

	l.Client = nettest.NewNS(t, "cl")
	attach(l.Client, "eth0", "br0")
	nettest.Addr(t, l.Client, "eth0", "10.77.0.10/24")
	if l.Spec.IPv6 {
		nettest.Addr(t, l.Client, "eth0", "fd77::10/64")
	}
	if l.Spec.Layout == NAT {
		// The private network is reached through the director (the VIP).
		l.Client.MustRun(t, "ip", "route", "add", "10.78.0.0/24", "via", vip.String())
	}

	for i := range l.Spec.Reals {
		r := &Real{lab: l, Index: i, Name: fmt.Sprintf("rs%d", i+1)}
		r.NS = nettest.NewNS(t, r.Name)
		if l.Spec.Layout == NAT {
			attach(r.NS, "eth0", "br1")
			r.Addr = netip.AddrFrom4([4]byte{10, 78, 0, byte(11 + i)})
			nettest.Addr(t, r.NS, "eth0", r.Addr.String()+"/24")
			r.NS.MustRun(t, "ip", "route", "add", "default", "via", gatewayVIP.String())
		} else {
			attach(r.NS, "eth0", "br0")
			r.Addr = netip.AddrFrom4([4]byte{10, 77, 0, byte(11 + i)})
			nettest.Addr(t, r.NS, "eth0", r.Addr.String()+"/24")
			// LVS-DR: the VIP on lo, never answered for in ARP.
			nettest.Addr(t, r.NS, "lo", vip.String()+"/32")
			nettest.Sysctl(t, r.NS, "net.ipv4.conf.all.arp_ignore", "1")
			nettest.Sysctl(t, r.NS, "net.ipv4.conf.all.arp_announce", "2")
			if l.Spec.IPv6 {
				r.Addr6 = netip.MustParseAddr(fmt.Sprintf("fd77::%d", 11+i))
				nettest.Addr(t, r.NS, "eth0", r.Addr6.String()+"/64")
				nettest.Addr(t, r.NS, "lo", vip6.String()+"/128")
			}
		}
		r.start()
		l.Reals = append(l.Reals, r)
	}

	for i := range l.Spec.Directors {
		d := &Director{lab: l, Index: i, Name: fmt.Sprintf("d%d", i+1)}
		d.NS = nettest.NewNS(t, d.Name)
		attach(d.NS, "eth0", "br0")
		d.Addr = netip.AddrFrom4([4]byte{10, 77, 0, byte(2 + i)})
		nettest.Addr(t, d.NS, "eth0", d.Addr.String()+"/24")
		if l.Spec.IPv6 {
			nettest.Addr(t, d.NS, "eth0", fmt.Sprintf("fd77::%d/64", 2+i))
		}
		if l.Spec.Layout == NAT {
			attach(d.NS, "eth1", "br1")
			nettest.Addr(t, d.NS, "eth1", fmt.Sprintf("10.78.0.%d/24", 2+i))
			nettest.Sysctl(t, d.NS, "net.ipv4.conf.all.forwarding", "1")
		}
		if l.Spec.Directors == 1 {
			// No VRRP: the director holds the VIP itself.
			nettest.Addr(t, d.NS, "eth0", l.VIP.String()+"/24")
			if l.Spec.Layout == NAT {
				nettest.Addr(t, d.NS, "eth1", gatewayVIP.String()+"/24")
			}
		}
		d.Keepalived = l.Spec.Keepalived && i == 1
		d.PinPath = filepath.Join(l.bpffs, d.Name)
		d.Socket = filepath.Join(l.Dir, d.Name+".sock")
		d.ConfigPath = filepath.Join(l.Dir, d.Name+".toml")
		d.LogPath = filepath.Join(l.Dir, d.Name+".log")
		if err := os.WriteFile(d.ConfigPath, []byte(d.DefaultConfig()), 0o644); err != nil {
			t.Fatal(err)
		}
		l.Directors = append(l.Directors, d)
		t.Cleanup(d.cleanup)
	}
}

// passXDP attaches to dev in ns an XDP program that passes every frame.
// A veth flushes frames its peer sends with XDP_TX (schedules this end's
// NAPI) only when this end has an XDP program: with GRO alone they wait in
// its ring until the peer's own stack sends something (a director's health
// checks or VRRP adverts), so a director whose daemon died, its program
// still attached and forwarding, would seem to blackhole direct-routing
// traffic, which a real NIC does not.
func (l *Lab) passXDP(ns *nettest.NS, dev string) {
	t := l.T
	t.Helper()
	if l.pass == nil {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         "lab_pass",
			Type:         ebpf.XDP,
			License:      "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
		})
		if err != nil {
			t.Fatalf("load the switch ports' XDP program: %v", err)
		}
		l.pass = prog
		t.Cleanup(func() { prog.Close() })
	}
	var lk link.Link
	err := ns.Do(func() error {
		iface, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: l.pass, Interface: iface.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatalf("attach XDP to %s in %s: %v", dev, ns.Name, err)
	}
	t.Cleanup(func() { lk.Close() })
}

// xdpPass is XDP_PASS.
const xdpPass = 2

// Master returns the running director holding the VIP now, or nil. (A
// killed director's kernel may still hold the address: only its daemons
// died.)
func (l *Lab) Master() *Director {
	for _, d := range l.Directors {
		if d.Running() && d.HoldsVIP() {
			return d
		}
	}
	return nil
}

// WaitMaster waits until director d holds the VIP (and behind NAT the
// gateway address).
func (l *Lab) WaitMaster(d *Director, timeout time.Duration) {
	l.T.Helper()
	nettest.WaitFor(l.T, timeout, d.Name+" master", func() error {
		if !d.HoldsVIP() {
			return fmt.Errorf("%s does not hold the VIP", d.Name)
		}
		if l.Gateway.IsValid() && !d.HasAddr("eth1", l.Gateway) {
			return fmt.Errorf("%s does not hold the gateway address %s", d.Name, l.Gateway)
		}
		return nil
	})
}

// Logs returns the directors' logs (for failure reports).
func (l *Lab) Logs() string {
	var b strings.Builder
	for _, d := range l.Directors {
		out, _ := os.ReadFile(d.LogPath)
		fmt.Fprintf(&b, "==== %s log ====\n%s\n", d.Name, out)
	}
	return b.String()
}

// The labs of this process, removed on SIGINT/SIGTERM too.
var (
	labsMu  sync.Mutex
	labs    = map[*Lab]bool{}
	sigOnce sync.Once
)

func register(l *Lab) {
	labsMu.Lock()
	labs[l] = true
	labsMu.Unlock()
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			<-ch
			labsMu.Lock()
			for l := range labs {
				l.teardown()
			}
			labsMu.Unlock()
			fmt.Fprintln(os.Stderr, "lab: interrupted, namespaces removed")
			os.Exit(130)
		}()
	})
}

func unregister(l *Lab) {
	labsMu.Lock()
	delete(labs, l)
	labsMu.Unlock()
}

// teardown removes what the lab made, for an interrupt (t.Cleanup does it
// otherwise).
func (l *Lab) teardown() {
	for _, d := range l.Directors {
		d.cleanup()
	}
	for _, ns := range append([]*nettest.NS{l.Switch, l.Client}, l.namespaces()...) {
		if ns != nil {
			ns.Delete()
		}
	}
	_ = exec.Command("umount", "-l", l.bpffs).Run()
}

func (l *Lab) namespaces() []*nettest.NS {
	var out []*nettest.NS
	for _, d := range l.Directors {
		out = append(out, d.NS)
	}
	for _, r := range l.Reals {
		out = append(out, r.NS)
	}
	return out
}
