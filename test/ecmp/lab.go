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

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/lab"
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

// Director is a director namespace running `xlb run` with [bgp].
type Director struct {
	lab        *Lab
	Name       string
	NS         *nettest.NS
	Addr       netip.Addr
	PinPath    string
	Socket     string
	ConfigPath string
	LogPath    string
	// Config knobs (WriteConfig).
	Quorum        int
	KeepOnExit    bool
	ExtraPeer     string // one more [[bgp.peer]] address
	port          string // its switch port
	mu            sync.Mutex
	proc          *os.Process
	done          chan struct{}
	procErr       error
	startedAt     time.Time
	lastStartLogs int64
}

// WriteConfig writes the director's configuration from its knobs.
func (d *Director) WriteConfig() {
	l := d.lab
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
router_id = %q

[dataplane]
mode = "xdp"
xdp_mode = "native"
interfaces = ["eth0"]
pin_path = %q
keep_forwarding_on_exit = %v

[metrics]
listen = ""

[control]
socket = %q

[bgp]
asn = %d
drain_time = "3s"
restart_time = "60s"

[[bgp.peer]]
address = %q
asn = %d
hold_time = "9s"
bfd = %v
bfd_interval = "300ms"
bfd_multiplier = 3
password_file = %q
`, d.Name, d.PinPath, d.KeepOnExit, d.Socket, xlbASN, routerAddr, routerASN, l.spec.BFD, filepath.Join(l.dir, "md5"))
	if d.ExtraPeer != "" {
		fmt.Fprintf(&b, "\n[[bgp.peer]]\naddress = %q\nasn = %d\n", d.ExtraPeer, routerASN)
	}
	fmt.Fprintf(&b, `
[[virtual_server]]
name = "echo"
address = %q
port = %d
scheduler = %q
forward = "dr"
quorum = %d

[virtual_server.health_check]
type = "tcp"
interval = "200ms"
timeout = "200ms"
fall = 2
rise = 1
`, vip, echoPort, l.spec.Scheduler, d.Quorum)
	for _, r := range l.reals {
		fmt.Fprintf(&b, "\n[[virtual_server.real_server]]\naddress = %q\n", r.addr)
	}
	if l.spec.Extra != nil {
		b.WriteString(l.spec.Extra(d))
	}
	if err := os.WriteFile(d.ConfigPath, []byte(b.String()), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// Start starts xlb and waits for its control socket.
func (d *Director) Start() {
	t := d.lab.t
	t.Helper()
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- start %s ----\n", time.Now().Format(time.RFC3339Nano))
	cmd := d.NS.Command(lab.Binary(t), "run", "--config", d.ConfigPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	d.mu.Lock()
	d.proc, d.done, d.startedAt = cmd.Process, done, time.Now()
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.procErr = err
		d.mu.Unlock()
		close(done)
	}()
	nettest.WaitFor(t, 20*time.Second, d.Name+" control socket", func() error {
		select {
		case <-done:
			out, _ := os.ReadFile(d.LogPath)
			t.Fatalf("xlb in %s exited: %s", d.Name, out)
		default:
		}
		_, err := control.Call(d.Socket, control.Request{Command: "status"})
		return err
	})
}

// Stop sends SIGTERM and waits for the daemon to exit with status 0.
func (d *Director) Stop() {
	t := d.lab.t
	t.Helper()
	d.mu.Lock()
	p, done := d.proc, d.done
	d.proc = nil
	d.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.Signal(sigterm)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.Kill()
		t.Fatalf("%s did not exit after SIGTERM", d.Name)
	}
	d.mu.Lock()
	err := d.procErr
	d.mu.Unlock()
	if err != nil {
		t.Errorf("%s exited after SIGTERM with %v", d.Name, err)
	}
}

// Kill is the loss of the director: the switch drops every frame to and
// from it (nothing it sends reaches the router any more: no TCP FIN, no
// BFD; what the router sends it is lost) and its daemon gets SIGKILL. The
// link stays up: a link going down would flush the switch's MAC table, and
// the frames flooded to the other directors would be forwarded by their
// XDP programs (a veth, unlike a NIC, filters no destination MAC), hiding
// the loss.
func (d *Director) Kill() {
	t := d.lab.t
	t.Helper()
	sw := d.lab.sw
	sw.MustRun(t, "nft", "add table bridge xlbt")
	sw.MustRun(t, "nft", "add chain bridge xlbt dead { type filter hook forward priority 0 ; }")
	sw.MustRun(t, "nft", "add rule bridge xlbt dead iifname "+d.port+" drop")
	sw.MustRun(t, "nft", "add rule bridge xlbt dead oifname "+d.port+" drop")
	d.mu.Lock()
	p, done := d.proc, d.done
	d.proc = nil
	d.mu.Unlock()
	if p != nil {
		_ = p.Kill()
		<-done
	}
}

func (d *Director) cleanup() {
	d.mu.Lock()
	p, done := d.proc, d.done
	d.proc = nil
	d.mu.Unlock()
	if p != nil {
		_ = p.Kill()
		<-done
	}
	_ = os.RemoveAll(d.PinPath)
}

// Run runs an xlb command against the director's socket.
func (d *Director) Run(args ...string) (string, error) {
	return d.NS.Run(lab.Binary(d.lab.t), append(args, "--socket", d.Socket)...)
}

// Status asks the daemon for its status.
func (d *Director) Status() (*control.Status, error) {
	resp, err := control.Call(d.Socket, control.Request{Command: "status"})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// Connections is the number of connections the director's echo service
// scheduled.
func (d *Director) Connections() uint64 {
	st, err := d.Status()
	if err != nil || len(st.Services) == 0 {
		return 0
	}
	return st.Services[0].Counters.Connections
}
