package vrrp_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/vrrp"
)

// The namespace lab: a bridge in its own namespace, node namespaces
// n1..nN with eth0 = 10.77.0.<i>/24 and fd00:77::<i>/64, and a client
// namespace (10.77.0.10) that captures the ARP it receives. Nodes are xlb
// test nodes (this test binary, see TestMain) or keepalived.

const (
	labVIP  = "10.77.0.100"
	labVIP6 = "fd00:77::100"
)

type lab struct {
	t      testing.TB
	br     *nettest.NS
	nodes  []*nettest.NS
	macs   []net.HardwareAddr
	client *nettest.NS
	arp    *nettest.Capture
}

func newLab(t testing.TB, n int) *lab {
	t.Helper()
	l := &lab{t: t, br: nettest.NewNS(t, "br")}
	var ports []string
	for i := 1; i <= n; i++ {
		ns := nettest.NewNS(t, fmt.Sprintf("n%d", i))
		noDAD(t, ns)
		port := fmt.Sprintf("p%d", i)
		nettest.Veth(t, ns, "eth0", l.br, port)
		nettest.Addr(t, ns, "eth0", fmt.Sprintf("10.77.0.%d/24", i))
		nettest.Addr(t, ns, "eth0", fmt.Sprintf("fd00:77::%d/64", i))
		l.nodes = append(l.nodes, ns)
		l.macs = append(l.macs, macOf(t, ns, "eth0"))
		ports = append(ports, port)
	}
	l.client = nettest.NewNS(t, "cl")
	noDAD(t, l.client)
	nettest.Veth(t, l.client, "eth0", l.br, "pc")
	nettest.Addr(t, l.client, "eth0", "10.77.0.10/24")
	nettest.Addr(t, l.client, "eth0", "fd00:77::10/64")
	nettest.Bridge(t, l.br, "br0", append(ports, "pc")...)
	// Flood all multicast: VRRP must not depend on a querier.
	l.br.MustRun(t, "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	l.arp = l.client.Capture(t, "eth0", 0x0806)
	// Link-local addresses must be usable before nodes start.
	for _, ns := range append(l.nodes, l.client) {
		nettest.WaitFor(t, 5*time.Second, "link-local address on "+ns.Name, func() error {
			out, err := ns.Run("ip", "-6", "addr", "show", "dev", "eth0", "scope", "link")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "fe80::") || strings.Contains(out, "tentative") {
				return fmt.Errorf("not ready: %s", out)
			}
			return nil
		})
	}
	return l
}

// noDAD turns IPv6 duplicate address detection off for interfaces that
// arrive in ns, so their link-local address is usable at once.
func noDAD(t testing.TB, ns *nettest.NS) {
	nettest.Sysctl(t, ns, "net.ipv6.conf.all.accept_dad", "0")
	nettest.Sysctl(t, ns, "net.ipv6.conf.default.accept_dad", "0")
}

func macOf(t testing.TB, ns *nettest.NS, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// hasAddr reports whether addr is on eth0 in ns.
func hasAddr(ns *nettest.NS, addr string) bool {
	out, err := ns.Run("ip", "-o", "addr", "show", "dev", "eth0")
	return err == nil && strings.Contains(out, " "+addr+"/")
}

// waitAddr waits until addr is (present) or is not on eth0 of ns.
func waitAddr(t testing.TB, ns *nettest.NS, addr string, present bool, timeout time.Duration) {
	t.Helper()
	nettest.WaitFor(t, timeout, fmt.Sprintf("%s present=%v in %s", addr, present, ns.Name), func() error {
		if hasAddr(ns, addr) != present {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

// garpFrom waits for a gratuitous ARP for ip from mac at the client, read
// after since; it returns its arrival time.
func (l *lab) garpFrom(t testing.TB, mac net.HardwareAddr, ip string, since time.Time, timeout time.Duration) time.Time {
	t.Helper()
	want := netip.MustParseAddr(ip).As4()
	deadline := time.After(timeout)
	for {
		select {
		case f := <-l.arp.Frames():
			d := f.Data
			if len(d) < 42 || binary.BigEndian.Uint16(d[20:22]) != 1 || f.At.Before(since) {
				continue
			}
			if bytes.Equal(d[22:28], mac) && [4]byte(d[28:32]) == want && [4]byte(d[38:42]) == want {
				return f.At
			}
		case <-deadline:
			t.Fatalf("no gratuitous ARP for %s from %s within %v", ip, mac, timeout)
		}
	}
}

// clientNeigh returns the MAC the client has for ip ("" if none).
func (l *lab) clientNeigh(ip string) string {
	out, _ := l.client.Run("ip", "neigh", "show", ip, "dev", "eth0")
	f := strings.Fields(out)
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func (l *lab) ping(t testing.TB, ip string) {
	t.Helper()
	nettest.WaitFor(t, 5*time.Second, "ping "+ip, func() error {
		_, err := l.client.Run("ping", "-c1", "-W1", ip)
		return err
	})
}

// proc is a node process: an xlb test node or keepalived.
type proc struct {
	t     testing.TB
	name  string
	ns    *nettest.NS
	cmd   *exec.Cmd
	out   nettest.SyncBuffer
	done  chan struct{}
	stats chan []vrrp.InstanceStatus
	ready chan struct{} // xlb nodes: closed when signals are handled

	mu     sync.Mutex
	states map[string]vrrp.State
	events []vrrp.Event
}

// startProc starts cmd and feeds each line of its stdout (and of its
// stderr too when merge) to parse; all output is kept for the log of a
// failed test.
func startProc(t testing.TB, name string, ns *nettest.NS, cmd *exec.Cmd, merge bool, parse func(p *proc, line string)) *proc {
	t.Helper()
	p := &proc{t: t, name: name, ns: ns, cmd: cmd, done: make(chan struct{}), stats: make(chan []vrrp.InstanceStatus, 16), states: map[string]vrrp.State{}, ready: make(chan struct{})}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, &p.out
	if merge {
		cmd.Stderr = w
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(&p.out, line)
			parse(p, line)
		}
	}()
	go func() {
		_ = cmd.Wait()
		w.Close()
		<-lines
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %s (in %s):\n%s", name, ns.Name, p.out.String())
		}
	})
	return p
}

// startXLB starts an xlb test node in ns, with env (KEY=VALUE) added to
// its environment.
func startXLB(t testing.TB, name string, ns *nettest.NS, cfg vrrp.Config, env ...string) *proc {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(os.Args[0])
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(b))
	for _, e := range env {
		if e != "" {
			cmd.Env = append(cmd.Env, e)
		}
	}
	p := startProc(t, name, ns, cmd, false, func(p *proc, line string) {
		var l nodeLine
		if json.Unmarshal([]byte(line), &l) != nil {
			return
		}
		switch l.Kind {
		case "ready":
			close(p.ready)
		case "event":
			p.mu.Lock()
			p.states[l.Event.Instance] = l.Event.To
			p.events = append(p.events, *l.Event)
			p.mu.Unlock()
		case "status":
			select {
			case p.stats <- l.Status:
			default:
			}
		}
	})
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("%s exited at start", name)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not ready after 10s", name)
	}
	return p
}

var keepalivedState = regexp.MustCompile(`\((\S+)\) Entering (MASTER|BACKUP|FAULT) STATE`)

// startKeepalived runs Debian's keepalived (VRRP only) in ns with conf.
func startKeepalived(t testing.TB, name string, ns *nettest.NS, conf string) *proc {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command("keepalived", "-n", "-l", "-D", "-P", "-f", path,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"))
	// keepalived logs on stderr with -l.
	return startProc(t, name, ns, cmd, true, func(p *proc, line string) {
		if m := keepalivedState.FindStringSubmatch(line); m != nil {
			st, _ := vrrp.ParseState(m[2])
			p.mu.Lock()
			p.states[m[1]] = st
			p.events = append(p.events, vrrp.Event{Instance: m[1], To: st, At: time.Now()})
			p.mu.Unlock()
		}
	})
}

func (p *proc) state(inst string) vrrp.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.states[inst]
}

// waitState waits until the process reports inst in state st.
func (p *proc) waitState(t testing.TB, inst string, st vrrp.State, timeout time.Duration) {
	t.Helper()
	nettest.WaitFor(t, timeout, fmt.Sprintf("%s: %s %s", p.name, inst, st), func() error {
		if got := p.state(inst); got != st {
			return fmt.Errorf("state %s", got)
		}
		return nil
	})
}

// lastEvent returns the last event of inst to state to.
func (p *proc) lastEvent(inst string, to vrrp.State) (vrrp.Event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.events) - 1; i >= 0; i-- {
		if e := p.events[i]; e.Instance == inst && e.To == to {
			return e, true
		}
	}
	return vrrp.Event{}, false
}

func (p *proc) signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// kill SIGKILLs the process and waits for it: node death. For keepalived
// that is its VRRP child first: killing only the parent makes the child
// stop gracefully (priority 0).
func (p *proc) kill() {
	if child := p.keepalivedChild(); child > 0 {
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
	p.signal(syscall.SIGKILL)
	<-p.done
}

// keepalivedChild is the pid of keepalived's VRRP process, 0 for xlb.
func (p *proc) keepalivedChild() int {
	for i, a := range p.cmd.Args {
		if a == "-r" && i+1 < len(p.cmd.Args) {
			var pid int
			nettest.WaitFor(p.t, 5*time.Second, "keepalived vrrp pid file", func() error {
				raw, err := os.ReadFile(p.cmd.Args[i+1])
				if err != nil {
					return err
				}
				pid, err = strconv.Atoi(strings.TrimSpace(string(raw)))
				return err
			})
			return pid
		}
	}
	return 0
}

// stop SIGTERMs the process and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not stop after SIGTERM", p.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 && !strings.HasPrefix(p.name, "keepalived") {
		t.Fatalf("%s exited with %d", p.name, code)
	}
}

// status asks an xlb node for its status.
func (p *proc) status(t testing.TB) []vrrp.InstanceStatus {
	t.Helper()
	for {
		select {
		case <-p.stats: // stale
			continue
		default:
		}
		break
	}
	p.signal(syscall.SIGUSR1)
	select {
	case s := <-p.stats:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no status", p.name)
	}
	return nil
}

func (p *proc) instStatus(t testing.TB, inst string) vrrp.InstanceStatus {
	t.Helper()
	for _, s := range p.status(t) {
		if s.Name == inst {
			return s
		}
	}
	t.Fatalf("%s: no instance %s", p.name, inst)
	return vrrp.InstanceStatus{}
}

// xlbInst is the lab's instance "vi": VRID 51, VIP 10.77.0.100/24 on eth0.
func xlbInst(prio uint8, iv time.Duration, mods ...func(*vrrp.InstanceConfig)) vrrp.Config {
	ic := vrrp.InstanceConfig{Name: "vi", Interface: "eth0", VRID: 51, Priority: prio, AdvertInterval: iv, Version: 3,
		VIPs: []vrrp.VIP{{Prefix: netip.MustParsePrefix(labVIP + "/24")}}}
	for _, m := range mods {
		m(&ic)
	}
	return vrrp.Config{Instances: []vrrp.InstanceConfig{ic}}
}

func v6(ic *vrrp.InstanceConfig) {
	ic.VIPs = []vrrp.VIP{{Prefix: netip.MustParsePrefix(labVIP6 + "/64")}}
}

// kaConf is a keepalived configuration with one instance VI_1 like xlbInst.
type kaConf struct {
	prio      int
	iv        time.Duration
	version   int
	pass      string
	state     string // MASTER or BACKUP (default)
	nopreempt bool
	vip       string // default labVIP/24
	src       string
	peers     []string
	ttl       int    // unicast_ttl: TTL of unicast adverts (0: keepalived's 255)
	global    string // more global_defs lines
}

func (c kaConf) String() string {
	var b strings.Builder
	b.WriteString("global_defs {\n  router_id xlbtest\n  vrrp_version " + strconv.Itoa(max(c.version, 2)) + "\n" + c.global + "}\n")
	state := c.state
	if state == "" {
		state = "BACKUP"
	}
	vip := c.vip
	if vip == "" {
		vip = labVIP + "/24"
	}
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n  state %s\n  interface eth0\n  virtual_router_id 51\n  priority %d\n  advert_int %s\n",
		state, c.prio, strconv.FormatFloat(c.iv.Seconds(), 'f', -1, 64))
	if c.nopreempt {
		b.WriteString("  nopreempt\n")
	}
	if c.pass != "" {
		fmt.Fprintf(&b, "  authentication {\n    auth_type PASS\n    auth_pass %s\n  }\n", c.pass)
	}
	if c.src != "" {
		fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n    %s\n  }\n", c.src, strings.Join(c.peers, "\n    "))
	}
	if c.ttl != 0 {
		fmt.Fprintf(&b, "  unicast_ttl %d\n", c.ttl)
	}
	fmt.Fprintf(&b, "  virtual_ipaddress {\n    %s dev eth0\n  }\n}\n", vip)
	return b.String()
}

// masterDown is a generous bound for a takeover at interval iv: the
// Master_Down_Interval plus one second for a loaded machine.
func masterDown(iv time.Duration) time.Duration { return 4*iv + time.Second }

// holdFor checks cond every 20ms for d and fails at the first violation:
// a state that must last, such as a backup that must not take over.
func holdFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// logCount counts the lines of the process's output that contain s.
func (p *proc) logCount(s string) int {
	n := 0
	for _, line := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func requireKeepalived(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Fatal("keepalived is not installed (.ci/run installs it)")
	}
}

// --- tests ---

// TestLabXLBPair: election, SIGKILL of the master, return of the higher
// priority (preempt), graceful stop (priority 0), at 100ms and at the v3
// minimum of 10ms.
func TestLabXLBPair(t *testing.T) {
	t.Parallel()
	for _, iv := range []time.Duration{100 * time.Millisecond, 10 * time.Millisecond} {
		t.Run(iv.String(), func(t *testing.T) {
			t.Parallel()
			l := newLab(t, 2)
			n1, n2 := l.nodes[0], l.nodes[1]
			b := startXLB(t, "xlb-n2", n2, xlbInst(100, iv))
			b.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
			a := startXLB(t, "xlb-n1", n1, xlbInst(150, iv))
			a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
			b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
			if ev, _ := b.lastEvent("vi", vrrp.Backup); ev.Reason != vrrp.ReasonHigherPriority {
				t.Errorf("n2 went back to BACKUP for %q, want %q", ev.Reason, vrrp.ReasonHigherPriority)
			}
			waitAddr(t, n1, labVIP, true, 2*time.Second)
			waitAddr(t, n2, labVIP, false, 2*time.Second)
			l.ping(t, labVIP)
			if mac := l.clientNeigh(labVIP); mac != l.macs[0].String() {
				t.Fatalf("client has %s for the VIP, want n1's %s", mac, l.macs[0])
			}

			// SIGKILL the master: n2 takes over and tells the client.
			killed := time.Now()
			a.kill()
			at := l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv)+2*time.Second)
			b.waitState(t, "vi", vrrp.Master, time.Second)
			if ev, _ := b.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonMasterDown {
				t.Errorf("n2 took over for %q, want %q", ev.Reason, vrrp.ReasonMasterDown)
			}
			t.Logf("failover after SIGKILL: %v (Master_Down_Interval %v)", at.Sub(killed), 3*iv+156*iv/256)
			waitAddr(t, n2, labVIP, true, time.Second)
			l.ping(t, labVIP)

			// The killed node left its VIP; a restart removes it and
			// preempts n2.
			a = startXLB(t, "xlb-n1-again", n1, xlbInst(150, iv))
			a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
			b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
			waitAddr(t, n2, labVIP, false, 2*time.Second)

			// Graceful stop: priority 0, n2 takes over after Skew_Time.
			stopped := time.Now()
			a.stop(t)
			l.garpFrom(t, l.macs[1], labVIP, stopped, masterDown(iv))
			b.waitState(t, "vi", vrrp.Master, time.Second)
			if ev, _ := b.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
				t.Errorf("n2 took over for %q, want %q", ev.Reason, vrrp.ReasonPriorityZero)
			}
			if hasAddr(n1, labVIP) {
				t.Error("n1 kept the VIP after a graceful stop")
			}
			st := b.instStatus(t, "vi")
			if st.AdvertsReceived == 0 || st.PriorityZeroReceived == 0 {
				t.Errorf("n2 counters: %+v", st)
			}
			for r, n := range st.RxErrors {
				if n != 0 {
					t.Errorf("n2 rejected %d adverts for %s", n, r)
				}
			}
		})
	}
}

// TestLabNoPreempt: a higher-priority node with nopreempt does not take
// over from a live master, but does when it dies.
func TestLabNoPreempt(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	l := newLab(t, 2)
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv))
	b.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, func(ic *vrrp.InstanceConfig) { ic.NoPreempt = true }))
	a.waitState(t, "vi", vrrp.Backup, 2*time.Second)
	// Twenty intervals, well past its Master_Down_Interval: still backup.
	holdFor(t, 20*iv, "nopreempt", func() error {
		if a.state("vi") != vrrp.Backup || b.state("vi") != vrrp.Master {
			return fmt.Errorf("n1 %s, n2 %s", a.state("vi"), b.state("vi"))
		}
		return nil
	})
	b.kill()
	a.waitState(t, "vi", vrrp.Master, masterDown(iv))
	waitAddr(t, l.nodes[0], labVIP, true, time.Second)
}

// TestLabUnicast: unicast_src_ip and unicast_peers, with multicast VRRP
// dropped by nftables in both nodes.
func TestLabUnicast(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	l := newLab(t, 2)
	for _, ns := range l.nodes {
		nft(t, ns, "add table inet xlbt",
			"add chain inet xlbt out { type filter hook output priority 0 ; }",
			"add chain inet xlbt in { type filter hook input priority 0 ; }",
			"add rule inet xlbt out ip daddr 224.0.0.18 drop",
			"add rule inet xlbt in ip daddr 224.0.0.18 drop")
	}
	uni := func(src, peer string) func(*vrrp.InstanceConfig) {
		return func(ic *vrrp.InstanceConfig) {
			ic.UnicastSrc = netip.MustParseAddr(src)
			ic.UnicastPeers = []netip.Addr{netip.MustParseAddr(peer)}
		}
	}
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, uni("10.77.0.1", "10.77.0.2")))
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv, uni("10.77.0.2", "10.77.0.1")))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
	// n2 stays backup: it hears n1's unicast adverts.
	nettest.WaitFor(t, 5*time.Second, "n2 receiving adverts", func() error {
		if st := b.instStatus(t, "vi"); st.AdvertsReceived < 10 {
			return fmt.Errorf("%d adverts", st.AdvertsReceived)
		}
		return nil
	})
	if b.state("vi") != vrrp.Backup {
		t.Fatalf("n2 is %s", b.state("vi"))
	}
	killed := time.Now()
	a.kill()
	l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv))
	b.waitState(t, "vi", vrrp.Master, time.Second)
}

// TestLabAuthMismatch: VRRPv2 adverts with another password are ignored
// and counted; both nodes end up master.
func TestLabAuthMismatch(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	v2 := func(pass string) func(*vrrp.InstanceConfig) {
		return func(ic *vrrp.InstanceConfig) { ic.Version, ic.AuthPass, ic.InitialState = 2, pass, vrrp.Master }
	}
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, time.Second, v2("right")))
	a.waitState(t, "vi", vrrp.Master, 4*time.Second)
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, time.Second, v2("wrong")))
	b.waitState(t, "vi", vrrp.Master, 8*time.Second)
	st := b.instStatus(t, "vi")
	if st.RxErrors[vrrp.RxAuth] == 0 || st.AdvertsReceived != 0 {
		t.Fatalf("n2 auth errors %d, adverts accepted %d", st.RxErrors[vrrp.RxAuth], st.AdvertsReceived)
	}
	if a.state("vi") != vrrp.Master {
		t.Fatalf("n1 is %s", a.state("vi"))
	}
}

func nft(t testing.TB, ns *nettest.NS, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		ns.MustRun(t, "nft", strings.Fields(c)...)
	}
}

// TestLabSplitBrain: VRRP blocked between the nodes by nftables makes two
// masters; the higher one, xlb, detects it (status, notify_fault) from the
// other's GARP and its ARP probes; when VRRP flows again the other yields
// and xlb re-announces at once, so the client that had followed the other
// node comes back within one advert interval. The other master is xlb or,
// as in a migration pair, keepalived.
func TestLabSplitBrain(t *testing.T) {
	t.Parallel()
	t.Run("xlb", func(t *testing.T) {
		t.Parallel()
		splitBrain(t, false)
	})
	t.Run("keepalived", func(t *testing.T) {
		t.Parallel()
		requireKeepalived(t)
		splitBrain(t, true)
	})
}

func splitBrain(t *testing.T, keepalived bool) {
	// A third of the interval is a probe round: the heal is declared one
	// or two rounds after the other yields.
	const iv = time.Second
	l := newLab(t, 2)
	dir := t.TempDir()
	flag := filepath.Join(dir, "fault-n1")
	// The heal's re-announce is the only GARP n1 sends once master: no
	// second burst, and none when it hears the other's lower-priority
	// adverts (LowerPrioRepeat, which would also re-announce at the heal).
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, func(ic *vrrp.InstanceConfig) {
		ic.Notify.Fault = "touch " + flag
		ic.SplitBrainProbeInterval = 500 * time.Millisecond
		ic.GARP.MasterDelay, ic.GARP.LowerPrioRepeat = -1, -1
	}))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	// other is n2's instance; yielded is when it last went to BACKUP.
	var other *proc
	inst := "vi"
	if keepalived {
		// No second GARP burst 5s after its takeover: only xlb's
		// announcements may move the client once healed.
		inst = "VI_1"
		other = startKeepalived(t, "keepalived-n2", l.nodes[1],
			kaConf{prio: 100, iv: iv, version: 3, global: "  vrrp_garp_master_delay 0\n"}.String())
	} else {
		other = startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv))
	}
	other.waitState(t, inst, vrrp.Backup, 2*time.Second)
	l.ping(t, labVIP)

	for _, ns := range l.nodes {
		nft(t, ns, "add table inet xlbt",
			"add chain inet xlbt out { type filter hook output priority 0 ; }",
			"add chain inet xlbt in { type filter hook input priority 0 ; }",
			"add rule inet xlbt out ip protocol vrrp drop",
			"add rule inet xlbt in ip protocol vrrp drop")
	}
	other.waitState(t, inst, vrrp.Master, masterDown(iv)+2*time.Second)
	// The client followed n2's gratuitous ARP.
	nettest.WaitFor(t, 5*time.Second, "client following n2", func() error {
		if mac := l.clientNeigh(labVIP); mac != l.macs[1].String() {
			return fmt.Errorf("client has %q", mac)
		}
		return nil
	})
	nettest.WaitFor(t, 5*time.Second, "split brain seen by n1", func() error {
		st := a.instStatus(t, "vi")
		if !st.SplitBrain || st.SplitBrainCount == 0 {
			return fmt.Errorf("split brain %v count %d", st.SplitBrain, st.SplitBrainCount)
		}
		if _, err := os.Stat(flag); err != nil {
			return fmt.Errorf("notify_fault not run: %w", err)
		}
		return nil
	})
	if a.state("vi") != vrrp.Master {
		t.Fatalf("n1 is %s", a.state("vi"))
	}

	// Heal: n2 hears n1 and yields; n1 re-announces once its probes go
	// unanswered, that is after the yield and within one interval.
	healed := time.Now()
	for _, ns := range l.nodes {
		nft(t, ns, "delete table inet xlbt")
	}
	other.waitState(t, inst, vrrp.Backup, masterDown(iv))
	// xlb's event carries the time of the decision; keepalived's is when
	// its log line was read, a little later.
	yield, _ := other.lastEvent(inst, vrrp.Backup)
	garp := l.garpFrom(t, l.macs[0], labVIP, healed, 5*time.Second)
	d := garp.Sub(yield.At)
	t.Logf("heal: n2 yielded %v after the unblock, n1's GARP reached the client %v after the yield", yield.At.Sub(healed), d)
	if d < 0 || d >= iv {
		t.Errorf("re-announce %v after the other master yielded, want after it and within one interval (%v)", d, iv)
	}
	nettest.WaitFor(t, 2*time.Second, "client back on n1", func() error {
		if mac := l.clientNeigh(labVIP); mac != l.macs[0].String() {
			return fmt.Errorf("client has %q", mac)
		}
		return nil
	})
	nettest.WaitFor(t, 5*time.Second, "split brain cleared on n1", func() error {
		if st := a.instStatus(t, "vi"); st.SplitBrain {
			return fmt.Errorf("still flagged")
		}
		return nil
	})
	l.ping(t, labVIP)
	if keepalived && hasAddr(l.nodes[1], labVIP) {
		t.Error("keepalived kept the VIP after yielding")
	}
}

// TestLabKeepalived: mixed pairs with Debian's keepalived in both roles.
func TestLabKeepalived(t *testing.T) {
	t.Parallel()
	requireKeepalived(t)
	const iv = 100 * time.Millisecond

	t.Run("xlb master, keepalived backup", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		ka := startKeepalived(t, "keepalived-n2", n2, kaConf{prio: 100, iv: iv, version: 3}.String())
		waitAddr(t, n2, labVIP, true, masterDown(iv)+3*time.Second)
		// xlb preempts keepalived...
		x := startXLB(t, "xlb-n1", n1, xlbInst(150, iv))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		waitAddr(t, n2, labVIP, false, 2*time.Second)
		ka.waitState(t, "VI_1", vrrp.Backup, 2*time.Second)
		l.ping(t, labVIP)
		// ...keepalived follows xlb's adverts (no takeover for a while)...
		time.Sleep(10 * iv)
		if hasAddr(n2, labVIP) {
			t.Fatal("keepalived took the VIP from a live xlb master")
		}
		// ...takes over when xlb dies...
		killed := time.Now()
		x.kill()
		at := l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv)+time.Second)
		t.Logf("keepalived took over %v after xlb's SIGKILL", at.Sub(killed))
		// ...xlb comes back and preempts...
		x = startXLB(t, "xlb-n1-again", n1, xlbInst(150, iv))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		waitAddr(t, n2, labVIP, false, 2*time.Second)
		// ...and a graceful stop hands over with priority 0. At 100ms
		// keepalived's Master_Down_Interval (0.36s) is too close to its
		// Skew_Time (0.06s) for the clock to tell them apart: keepalived
		// must say it received the priority 0 advert (it logs it with
		// -D), and only then take over.
		const prio0 = "(VI_1) Backup received priority 0 advertisement"
		before := ka.logCount(prio0)
		stopped := time.Now()
		x.stop(t)
		at = l.garpFrom(t, l.macs[1], labVIP, stopped, masterDown(iv))
		t.Logf("keepalived took over %v after xlb's SIGTERM", at.Sub(stopped))
		ka.waitState(t, "VI_1", vrrp.Master, time.Second)
		if n := ka.logCount(prio0); n != before+1 {
			t.Errorf("keepalived logged %q %d times after xlb's graceful stop, want once", prio0, n-before)
		}
		if hasAddr(n1, labVIP) {
			t.Error("xlb kept the VIP after a graceful stop")
		}
	})

	t.Run("keepalived master, xlb backup", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		ka := startKeepalived(t, "keepalived-n1", n1, kaConf{prio: 150, iv: iv, version: 3}.String())
		waitAddr(t, n1, labVIP, true, masterDown(iv)+3*time.Second)
		x := startXLB(t, "xlb-n2", n2, xlbInst(100, iv))
		x.waitState(t, "vi", vrrp.Backup, 2*time.Second)
		nettest.WaitFor(t, 3*time.Second, "xlb accepting keepalived's adverts", func() error {
			st := x.instStatus(t, "vi")
			if st.AdvertsReceived < 5 || st.MasterPriority != 150 || st.MasterAddr != netip.MustParseAddr("10.77.0.1") {
				return fmt.Errorf("%+v", st)
			}
			for r, n := range st.RxErrors {
				if n != 0 {
					return fmt.Errorf("%d rejected for %s", n, r)
				}
			}
			return nil
		})
		if x.state("vi") != vrrp.Backup || hasAddr(n2, labVIP) {
			t.Fatal("xlb took over from a live keepalived master")
		}
		killed := time.Now()
		ka.kill()
		at := l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv)+time.Second)
		x.waitState(t, "vi", vrrp.Master, time.Second)
		t.Logf("xlb took over %v after keepalived's SIGKILL", at.Sub(killed))
		// keepalived comes back with its higher priority and preempts.
		// It starts with the VIP still configured from the killed run.
		ka = startKeepalived(t, "keepalived-n1-again", n1, kaConf{prio: 150, iv: iv, version: 3}.String())
		x.waitState(t, "vi", vrrp.Backup, masterDown(iv)+3*time.Second)
		if ev, _ := x.lastEvent("vi", vrrp.Backup); ev.Reason != vrrp.ReasonHigherPriority {
			t.Errorf("xlb yielded for %q", ev.Reason)
		}
		waitAddr(t, n2, labVIP, false, time.Second)
		waitAddr(t, n1, labVIP, true, 2*time.Second)
		// keepalived's graceful stop: priority 0.
		stopped := time.Now()
		ka.stop(t)
		at = l.garpFrom(t, l.macs[1], labVIP, stopped, masterDown(iv))
		x.waitState(t, "vi", vrrp.Master, time.Second)
		if ev, _ := x.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
			t.Errorf("xlb took over for %q, want %q", ev.Reason, vrrp.ReasonPriorityZero)
		}
		t.Logf("xlb took over %v after keepalived's SIGTERM", at.Sub(stopped))
	})

	t.Run("VRRPv2 with password, unicast", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		// keepalived's unicast adverts leave with TTL 64, as they would
		// arrive from a routed peer: in unicast mode keepalived does not
		// require 255, nor does xlb.
		startKeepalived(t, "keepalived-n1", n1, kaConf{prio: 150, iv: time.Second, version: 2, pass: "s3cr3t",
			state: "MASTER", src: "10.77.0.1", peers: []string{"10.77.0.2"}, ttl: 64}.String())
		waitAddr(t, n1, labVIP, true, 6*time.Second)
		x := startXLB(t, "xlb-n2", n2, xlbInst(100, time.Second, func(ic *vrrp.InstanceConfig) {
			ic.Version, ic.AuthPass = 2, "s3cr3t"
			ic.UnicastSrc = netip.MustParseAddr("10.77.0.2")
			ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("10.77.0.1")}
		}))
		nettest.WaitFor(t, 5*time.Second, "xlb accepting keepalived's v2 adverts", func() error {
			st := x.instStatus(t, "vi")
			if st.AdvertsReceived < 2 || st.State != vrrp.Backup {
				return fmt.Errorf("%+v", st)
			}
			for r, n := range st.RxErrors {
				if n != 0 {
					return fmt.Errorf("%d rejected for %s", n, r)
				}
			}
			return nil
		})
		// xlb's v2 unicast adverts convince keepalived too: raise xlb
		// above it and keepalived yields.
		if err := x.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-x.done
		x = startXLB(t, "xlb-n2-high", n2, xlbInst(200, time.Second, func(ic *vrrp.InstanceConfig) {
			ic.Version, ic.AuthPass = 2, "s3cr3t"
			ic.UnicastSrc = netip.MustParseAddr("10.77.0.2")
			ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("10.77.0.1")}
		}))
		x.waitState(t, "vi", vrrp.Master, 6*time.Second)
		waitAddr(t, n1, labVIP, false, 3*time.Second)
	})

	// nopreempt is set on the node that would preempt: the one with the
	// higher priority, when it comes back while a lower one is master.
	// Either implementation on that side must then leave the master alone.
	t.Run("nopreempt on the returning higher-priority node", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		x := startXLB(t, "xlb-n1", n1, xlbInst(100, iv))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		// keepalived 150 with nopreempt joins xlb 100: it stays backup
		// (without nopreempt it would take over after 0.36s)...
		ka := startKeepalived(t, "keepalived-n2", n2, kaConf{prio: 150, iv: iv, version: 3, nopreempt: true}.String())
		ka.waitState(t, "VI_1", vrrp.Backup, 3*time.Second)
		holdFor(t, 20*iv, "keepalived nopreempt", func() error {
			if x.state("vi") != vrrp.Master || ka.state("VI_1") != vrrp.Backup || hasAddr(n2, labVIP) {
				return fmt.Errorf("xlb %s, keepalived %s, keepalived has the VIP: %v", x.state("vi"), ka.state("VI_1"), hasAddr(n2, labVIP))
			}
			return nil
		})
		// ...and takes over when xlb dies.
		x.kill()
		ka.waitState(t, "VI_1", vrrp.Master, masterDown(iv)+time.Second)
		waitAddr(t, n2, labVIP, true, time.Second)
		// xlb 200 with NoPreempt comes back to keepalived 150: it stays
		// backup, following keepalived's adverts...
		x = startXLB(t, "xlb-n1-again", n1, xlbInst(200, iv, func(ic *vrrp.InstanceConfig) { ic.NoPreempt = true }))
		x.waitState(t, "vi", vrrp.Backup, 2*time.Second)
		holdFor(t, 20*iv, "xlb NoPreempt", func() error {
			if x.state("vi") != vrrp.Backup || ka.state("VI_1") != vrrp.Master || hasAddr(n1, labVIP) {
				return fmt.Errorf("xlb %s, keepalived %s, xlb has the VIP: %v", x.state("vi"), ka.state("VI_1"), hasAddr(n1, labVIP))
			}
			return nil
		})
		if st := x.instStatus(t, "vi"); st.AdvertsReceived < 10 || st.MasterPriority != 150 {
			t.Fatalf("xlb status %+v", st)
		}
		// ...until keepalived leaves.
		ka.stop(t)
		x.waitState(t, "vi", vrrp.Master, masterDown(iv))
		if ev, _ := x.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
			t.Errorf("xlb took over for %q, want %q", ev.Reason, vrrp.ReasonPriorityZero)
		}
		waitAddr(t, n1, labVIP, true, time.Second)
	})

	t.Run("IPv6", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		ka := startKeepalived(t, "keepalived-n2", n2, kaConf{prio: 100, iv: iv, version: 3, vip: labVIP6 + "/64"}.String())
		waitAddr(t, n2, labVIP6, true, masterDown(iv)+3*time.Second)
		// xlb hears keepalived's lower-priority IPv6 adverts, preempts,
		// and keepalived accepts xlb's adverts and yields.
		x := startXLB(t, "xlb-n1", n1, xlbInst(150, iv, v6))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		waitAddr(t, n2, labVIP6, false, 2*time.Second)
		ka.waitState(t, "VI_1", vrrp.Backup, 2*time.Second)
		st := x.instStatus(t, "vi")
		if st.AdvertsReceived == 0 || !st.LocalAddr.IsLinkLocalUnicast() {
			t.Fatalf("xlb status %+v", st)
		}
		for r, n := range st.RxErrors {
			if n != 0 {
				t.Errorf("xlb rejected %d adverts for %s", n, r)
			}
		}
		nettest.WaitFor(t, 3*time.Second, "ping6 the VIP", func() error {
			_, err := l.client.Run("ping", "-6", "-c1", "-W1", labVIP6)
			return err
		})
		x.kill()
		waitAddr(t, n2, labVIP6, true, masterDown(iv)+time.Second)
	})
}

// TestLabVMAC: use_vmac puts the VIP on a macvlan with the VRRP virtual
// MAC; the client's ARP entry and the master's GARPs use that MAC, so a
// failover needs no ARP change at all.
func TestLabVMAC(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	vmac := net.HardwareAddr{0, 0, 0x5e, 0, 1, 51}
	l := newLab(t, 2)
	withVMAC := func(ic *vrrp.InstanceConfig) { ic.UseVMAC = true }
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, withVMAC))
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv, withVMAC))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
	out := l.nodes[0].MustRun(t, "ip", "-o", "addr", "show", "dev", "vrrp.51")
	if !strings.Contains(out, " "+labVIP+"/") {
		t.Fatalf("VIP not on vrrp.51: %s", out)
	}
	if got := macOf(t, l.nodes[0], "vrrp.51"); !bytes.Equal(got, vmac) {
		t.Fatalf("vrrp.51 has MAC %s, want %s", got, vmac)
	}
	l.ping(t, labVIP)
	if mac := l.clientNeigh(labVIP); mac != vmac.String() {
		t.Fatalf("client resolved the VIP to %s, want the virtual MAC %s", mac, vmac)
	}
	killed := time.Now()
	a.kill()
	l.garpFrom(t, vmac, labVIP, killed, masterDown(iv)+time.Second)
	b.waitState(t, "vi", vrrp.Master, time.Second)
	l.ping(t, labVIP)
	b.stop(t)
	if _, err := l.nodes[1].Run("ip", "link", "show", "vrrp.51"); err == nil {
		t.Error("vrrp.51 left behind after a graceful stop")
	}
}

// TestLabTracking: a tracked link (netlink) and a track script put
// the master in FAULT and back; notify scripts run with keepalived's
// arguments.
func TestLabTracking(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	l := newLab(t, 2)
	n1 := l.nodes[0]
	// trk0 loses its carrier when its peer trk1 goes down.
	n1.MustRun(t, "ip", "link", "add", "trk0", "type", "veth", "peer", "name", "trk1")
	n1.MustRun(t, "ip", "link", "set", "trk0", "up")
	n1.MustRun(t, "ip", "link", "set", "trk1", "up")
	dir := t.TempDir()
	okFile, log := filepath.Join(dir, "ok"), filepath.Join(dir, "notify.log")
	if err := os.WriteFile(okFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Commands run without a shell: the redirection is in a script.
	notify := filepath.Join(dir, "notify")
	if err := os.WriteFile(notify, []byte("#!/bin/sh\necho \"$@\" >>"+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := xlbInst(150, iv, func(ic *vrrp.InstanceConfig) {
		ic.TrackInterfaces = []vrrp.TrackInterface{{Name: "trk0"}}
		ic.TrackScripts = []vrrp.TrackScript{{Name: "chk"}}
		ic.Notify.Generic = notify
	})
	cfg.Scripts = []vrrp.ScriptConfig{{Name: "chk", Script: "test -e " + okFile, Interval: 100 * time.Millisecond}}
	a := startXLB(t, "xlb-n1", n1, cfg)
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	b.waitState(t, "vi", vrrp.Backup, 2*time.Second)

	n1.MustRun(t, "ip", "link", "set", "trk1", "down")
	a.waitState(t, "vi", vrrp.Fault, 2*time.Second)
	b.waitState(t, "vi", vrrp.Master, 2*time.Second) // n1 resigned with priority 0
	if ev, _ := b.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
		t.Errorf("n2 took over for %q", ev.Reason)
	}
	n1.MustRun(t, "ip", "link", "set", "trk1", "up")
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)

	if err := os.Remove(okFile); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "vi", vrrp.Fault, 3*time.Second)
	if st := a.instStatus(t, "vi"); len(st.Faults) != 1 || st.Faults[0] != "script chk failed" {
		t.Errorf("faults %q", st.Faults)
	}
	if err := os.WriteFile(okFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+3*time.Second)
	nettest.WaitFor(t, 5*time.Second, "notify log", func() error {
		raw, _ := os.ReadFile(log)
		want := "INSTANCE vi BACKUP 150\nINSTANCE vi MASTER 150\nINSTANCE vi FAULT 150\nINSTANCE vi BACKUP 150\nINSTANCE vi MASTER 150\n" +
			"INSTANCE vi FAULT 150\nINSTANCE vi BACKUP 150\nINSTANCE vi MASTER 150\n"
		if string(raw) != want {
			return fmt.Errorf("notify log:\n%s", raw)
		}
		return nil
	})
}
