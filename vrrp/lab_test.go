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
