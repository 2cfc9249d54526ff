// Package ecmp tests BGP active-active directors against real routers:
// a client behind a router (FRR or BIRD 2, in its own namespace) that
// learns the VIP from three xlb directors and spreads flows over them with
// ECMP (L4 hash), and real servers answering in direct routing.
//
//	client 10.90.0.10 -- router 10.90.0.1 | 10.77.0.1 -- switch -- d1 10.77.0.2, d2 .3, d3 .4
//	                                                              -- rs1 10.77.0.11, rs2 .12, rs3 .13 (VIP on lo)
//
// Every namespace is made by the test and removed when it ends.
package ecmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xlb-dev/xlb/test/nettest"
)

var (
	vip        = netip.MustParseAddr("10.77.0.100")
	routerAddr = netip.MustParseAddr("10.77.0.1")
	clientAddr = netip.MustParseAddr("10.90.0.10")
)

const (
	echoPort  = 7
	routerASN = 65000
	xlbASN    = 65010
	password  = "xlb-lab-md5"
)

// Spec describes a lab.
type Spec struct {
	Directors int  // default 3
	BFD       bool // BFD on every session
	// Router is "frr" (default) or "bird".
	Router string
	// Scheduler of the echo service (default mh).
	Scheduler string
	// Extra, when set, returns more configuration for director d
	// (appended: e.g. [sync]).
	Extra func(d *Director) string
}

// Lab is a running topology.
type Lab struct {
	t         testing.TB
	spec      Spec
	dir       string
	sw        *nettest.NS
	Client    *nettest.NS
	Router    Router
	RouterNS  *nettest.NS
	Directors []*Director
	reals     []*real
	pass      *ebpf.Program
	bpffs     string
}

// Router is FRR or BIRD in the router namespace.
type Router interface {
	// NextHops returns the next hops of the kernel's route to the VIP.
	NextHops() ([]string, error)
	// Describe returns the router's view of the sessions and routes, for
	// failure reports.
	Describe() string
}

// New builds the lab and starts the router and every director, and waits
// until the router's route to the VIP has every director as next hop, and
// its sessions have settled (WaitSettled).
func New(t testing.TB, spec Spec) *Lab {
	t.Helper()
	nettest.RequireRoot(t)
	if spec.Directors == 0 {
		spec.Directors = 3
	}
	if spec.Router == "" {
		spec.Router = "frr"
	}
	if spec.Scheduler == "" {
		spec.Scheduler = "mh"
	}
	l := &Lab{t: t, spec: spec, dir: t.TempDir()}
	l.bpffs = filepath.Join(l.dir, "bpffs")
	if err := os.MkdirAll(l.bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := nettestRun("mount", "-t", "bpf", "bpf", l.bpffs); err != nil {
		t.Fatalf("mount bpffs: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = nettestRun("umount", "-l", l.bpffs) })
	if err := os.WriteFile(filepath.Join(l.dir, "md5"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.build()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	})
	for _, d := range l.Directors {
		d.Start()
	}
	l.WaitNextHops(30*time.Second, l.Directors...)
	l.WaitSettled(30*time.Second, l.Directors...)
	return l
}

func (l *Lab) build() {
	t := l.t
	l.sw = nettest.NewNS(t, "sw")
	nettest.Bridge(t, l.sw, "br0")
	port := 0
	attach := func(ns *nettest.NS, dev string) string {
		port++
		sw := fmt.Sprintf("p%d", port)
		nettest.Veth(t, ns, dev, l.sw, sw)
		l.sw.MustRun(t, "ip", "link", "set", sw, "master", "br0")
		nettest.GRO(t, l.sw, sw)
		l.passXDP(l.sw, sw)
		nettest.TxChecksumOff(t, ns, dev)
		return sw
	}

	l.Client = nettest.NewNS(t, "cl")
	l.RouterNS = nettest.NewNS(t, "rt")
	nettest.Veth(t, l.Client, "eth0", l.RouterNS, "eth0")
	nettest.TxChecksumOff(t, l.Client, "eth0")
	nettest.TxChecksumOff(t, l.RouterNS, "eth0")
	nettest.Addr(t, l.Client, "eth0", clientAddr.String()+"/24")
	l.Client.MustRun(t, "ip", "route", "add", "default", "via", "10.90.0.1")
	nettest.Addr(t, l.RouterNS, "eth0", "10.90.0.1/24")
	attach(l.RouterNS, "eth1")
	nettest.Addr(t, l.RouterNS, "eth1", routerAddr.String()+"/24")
	nettest.Sysctl(t, l.RouterNS, "net.ipv4.ip_forward", "1")
	// ECMP over the directors by the flows' 5-tuple.
	nettest.Sysctl(t, l.RouterNS, "net.ipv4.fib_multipath_hash_policy", "1")

	for i := range 3 {
		r := &real{name: fmt.Sprintf("rs%d", i+1), addr: netip.AddrFrom4([4]byte{10, 77, 0, byte(11 + i)})}
		r.ns = nettest.NewNS(t, r.name)
		attach(r.ns, "eth0")
		nettest.Addr(t, r.ns, "eth0", r.addr.String()+"/24")
		nettest.Addr(t, r.ns, "lo", vip.String()+"/32")
		nettest.Sysctl(t, r.ns, "net.ipv4.conf.all.arp_ignore", "1")
		nettest.Sysctl(t, r.ns, "net.ipv4.conf.all.arp_announce", "2")
		r.ns.MustRun(t, "ip", "route", "add", "default", "via", routerAddr.String())
		r.serve(t)
		l.reals = append(l.reals, r)
	}

	var peers []netip.Addr
	for i := range l.spec.Directors {
		d := &Director{lab: l, Name: fmt.Sprintf("d%d", i+1), Addr: netip.AddrFrom4([4]byte{10, 77, 0, byte(2 + i)})}
		d.NS = nettest.NewNS(t, d.Name)
		d.port = attach(d.NS, "eth0")
		nettest.Addr(t, d.NS, "eth0", d.Addr.String()+"/24")
		d.PinPath = filepath.Join(l.bpffs, d.Name)
		d.Socket = filepath.Join(l.dir, d.Name+".sock")
		d.ConfigPath = filepath.Join(l.dir, d.Name+".toml")
		d.LogPath = filepath.Join(l.dir, d.Name+".log")
		d.Quorum = 1
		d.WriteConfig()
		l.Directors = append(l.Directors, d)
		peers = append(peers, d.Addr)
		t.Cleanup(d.cleanup)
	}
	switch l.spec.Router {
	case "frr":
		l.Router = startFRR(t, l.RouterNS, l.dir, peers, l.spec.BFD)
	case "bird":
		l.Router = startBIRD(t, l.RouterNS, l.dir, peers, l.spec.BFD)
	default:
		t.Fatalf("unknown router %q", l.spec.Router)
	}
}

func nettestRun(name string, args ...string) (string, error) {
	out, err := execCommand(name, args...).CombinedOutput()
	return string(out), err
}

// passXDP attaches an XDP program that passes every frame to a switch
// port, so that frames the directors send with XDP_TX are delivered at
// once (see test/lab's passXDP).
func (l *Lab) passXDP(ns *nettest.NS, dev string) {
	t := l.t
	t.Helper()
	if l.pass == nil {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "ecmp_pass", Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
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

// WaitNextHops waits until the router's route to the VIP goes through
// exactly the directors given.
func (l *Lab) WaitNextHops(timeout time.Duration, ds ...*Director) {
	l.t.Helper()
	var want []string
	for _, d := range ds {
		want = append(want, d.Addr.String())
	}
	nettest.WaitFor(l.t, timeout, fmt.Sprintf("next hops %v", want), func() error {
		got, err := l.Router.NextHops()
		if err != nil {
			return err
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("next hops %v", got)
		}
		return nil
	})
}

// WaitSettled waits until the router's sessions with ds are settled, for
// a router that says (FRR: Settled): up for a second, and their BFD
// sessions up.
func (l *Lab) WaitSettled(timeout time.Duration, ds ...*Director) {
	l.t.Helper()
	r, ok := l.Router.(interface{ Settled(netip.Addr) error })
	if !ok {
		return
	}
	nettest.WaitFor(l.t, timeout, "the router's sessions settled", func() error {
		for _, d := range ds {
			if err := r.Settled(d.Addr); err != nil {
				return err
			}
		}
		return nil
	})
}

// Logs returns the directors' logs and the router's state.
func (l *Lab) Logs() string {
	var b strings.Builder
	for _, d := range l.Directors {
		out, _ := os.ReadFile(d.LogPath)
		fmt.Fprintf(&b, "==== %s log ====\n%s\n", d.Name, out)
	}
	fmt.Fprintf(&b, "==== router ====\n%s\n", l.Router.Describe())
	return b.String()
}

// Dial connects from the client to the VIP's echo service.
func (l *Lab) Dial() (net.Conn, error) {
	var c net.Conn
	err := l.Client.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(vip, echoPort).String(), 2*time.Second)
		return err
	})
	return c, err
}

// real is a real server: a TCP echo service on port 7.
type real struct {
	name string
	addr netip.Addr
	ns   *nettest.NS
}

func (r *real) serve(t testing.TB) {
	var ln net.Listener
	if err := r.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", echoPort))
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
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
}

// Streams are long-lived echo connections from the client, each making a
// verified round every 20ms; one whose echo does not come back within
// stall, or that fails, is broken.
type Streams struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	errs  []string
	count int
	// maxGap is the longest wait for an echo.
	maxGap time.Duration
}

// StartStreams opens n streams.
func (l *Lab) StartStreams(n int, stall time.Duration) *Streams {
	l.t.Helper()
	s := &Streams{stop: make(chan struct{}), count: n}
	for id := range n {
		c, err := l.Dial()
		if err != nil {
			l.t.Fatalf("stream %d: %v", id, err)
		}
		s.wg.Add(1)
		go s.run(id, c, stall)
	}
	l.t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Streams) run(id int, c net.Conn, stall time.Duration) {
	defer s.wg.Done()
	defer c.Close()
	r := bufio.NewReader(c)
	out, in := make([]byte, 64), make([]byte, 64)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for seq := uint64(0); ; seq++ {
		final := false
		select {
		case <-s.stop:
			final = true
		case <-tick.C:
		}
		binary.BigEndian.PutUint64(out, uint64(id))
		binary.BigEndian.PutUint64(out[8:], seq)
		_ = c.SetDeadline(time.Now().Add(stall))
		_, err := c.Write(out)
		if err == nil {
			_, err = io.ReadFull(r, in)
		}
		if err == nil && !bytes.Equal(in, out) {
			err = errors.New("echo mismatch")
		}
		now := time.Now()
		s.mu.Lock()
		if err != nil {
			s.errs = append(s.errs, fmt.Sprintf("stream %d after %d rounds: %v", id, seq, err))
		} else if now.Sub(last) > s.maxGap {
			s.maxGap = now.Sub(last)
		}
		s.mu.Unlock()
		last = now
		if err != nil || final {
			return
		}
	}
}

// Stop ends the streams (each makes a last round) and returns the broken
// ones and the longest wait for an echo.
func (s *Streams) Stop() (broken []string, maxGap time.Duration) {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs, s.maxGap
}
