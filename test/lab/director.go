package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/nettest"
)

// Director is a director namespace running `xlb run` (and keepalived for
// VRRP with Spec.Keepalived on director 1).
type Director struct {
	lab        *Lab
	Index      int
	Name       string
	NS         *nettest.NS
	Addr       netip.Addr
	ConfigPath string
	Socket     string
	PinPath    string
	LogPath    string
	Keepalived bool

	mu      sync.Mutex
	xlb     *proc
	keepal  *proc
	started time.Time
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (d *Director) priority() int {
	if d.Index == 0 {
		return 150
	}
	return 100
}

// DefaultConfig is the director's xlb configuration for the lab's spec.
func (d *Director) DefaultConfig() string {
	l := d.lab
	s := l.Spec
	var b strings.Builder
	ifaces := `["eth0"]`
	if s.Layout == NAT {
		ifaces = `["eth0", "eth1"]`
	}
	fmt.Fprintf(&b, `[global]
router_id = %q

[dataplane]
mode = "xdp"
xdp_mode = "native"
interfaces = %s
pin_path = %q

[metrics]
listen = "127.0.0.1:9477"

[control]
socket = %q
`, d.Name, ifaces, d.PinPath, d.Socket)

	instance := `vrrp_instance = "VI_1"`
	if d.Keepalived || s.Directors == 1 {
		instance = "" // keepalived moves the VIP; traffic follows it
	}
	if s.Directors == 2 && !d.Keepalived {
		state := "BACKUP"
		if d.Index == 0 {
			state = "MASTER"
		}
		vips := fmt.Sprintf(`[%q]`, l.VIP.String()+"/24")
		fmt.Fprintf(&b, `
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
state = %q
virtual_router_id = 77
priority = %d
advert_int = %q
version = 3
virtual_ipaddress = %s
`, state, d.priority(), s.AdvertInt, vips)
		if s.Layout == NAT {
			fmt.Fprintf(&b, `
[[vrrp_instance]]
name = "VI_GW"
interface = "eth1"
state = %q
virtual_router_id = 78
priority = %d
advert_int = %q
version = 3
virtual_ipaddress = [%q]

[[vrrp_sync_group]]
name = "G"
group = ["VI_1", "VI_GW"]
`, state, d.priority(), s.AdvertInt, gatewayVIP.String()+"/24")
		}
	}

	forward, webPort := "dr", WebPort
	if s.Layout == NAT {
		forward, webPort = "nat", NATPort
	}
	service := func(name string, addr netip.Addr, port, rport int, check string) {
		fmt.Fprintf(&b, `
[[virtual_server]]
name = %q
address = %q
port = %d
protocol = "tcp"
scheduler = %q
forward = %q
%s

[virtual_server.health_check]
%s
interval = %q
timeout = %q
fall = %d
rise = %d
`, name, addr, port, s.Scheduler, forward, instance, check, s.CheckInterval, min(s.CheckInterval, time.Second), s.Fall, s.Rise)
		for _, r := range l.Reals {
			a := r.Addr
			if addr.Is6() {
				a = r.Addr6
			}
			fmt.Fprintf(&b, `
[[virtual_server.real_server]]
address = %q
port = %d
weight = 1
`, a, rport)
		}
	}
	service("web", l.VIP, WebPort, webPort, `type = "http"
path = "/"`)
	service("echo", l.VIP, EchoPort, EchoPort, `type = "tcp"`)
	if l.VIP6.IsValid() {
		service("web6", l.VIP6, WebPort, webPort, `type = "http"
path = "/"`)
	}
	b.WriteString(s.Extra)
	return b.String()
}

// WriteConfig replaces the director's configuration file.
func (d *Director) WriteConfig(text string) {
	d.lab.T.Helper()
	if err := os.WriteFile(d.ConfigPath, []byte(text), 0o644); err != nil {
		d.lab.T.Fatal(err)
	}
}

// Start starts the director's daemons and waits until its control socket
// answers.
func (d *Director) Start() {
	t := d.lab.T
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- start %s ----\n", time.Now().Format(time.RFC3339Nano))
	start := func(name string, args ...string) *proc {
		cmd := d.NS.Command(name, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s in %s: %v", name, d.Name, err)
		}
		p := &proc{cmd: cmd, done: make(chan struct{})}
		go func() { p.err = cmd.Wait(); close(p.done) }()
		return p
	}
	d.xlb = start(Binary(t), "run", "--config", d.ConfigPath)
	if d.Keepalived {
		conf := filepath.Join(d.lab.Dir, d.Name+"-keepalived.conf")
		if err := os.WriteFile(conf, []byte(d.keepalivedConfig()), 0o644); err != nil {
			t.Fatal(err)
		}
		d.keepal = start("keepalived", "--vrrp", "-n", "-l", "-D", "-f", conf,
			"-p", filepath.Join(d.lab.Dir, d.Name+"-keepalived.pid"),
			"-r", filepath.Join(d.lab.Dir, d.Name+"-vrrp.pid"))
	}
	d.started = time.Now()
	xlb := d.xlb
	d.mu.Unlock()
	defer d.mu.Lock()
	nettest.WaitFor(t, d.lab.Spec.StartTimeout, d.Name+" control socket", func() error {
		select {
		case <-xlb.done:
			out, _ := os.ReadFile(d.LogPath)
			t.Fatalf("xlb in %s exited: %v\n%s", d.Name, xlb.err, out)
		default:
		}
		_, err := control.Call(d.Socket, control.Request{Command: "status"})
		return err
	})
}

// keepalivedConfig is keepalived's VRRP for the lab: VI_1 for the VIP, and
// behind NAT VI_GW for the private network's gateway with both in one sync
// group, as xlb's configuration has them.
func (d *Director) keepalivedConfig() string {
	l := d.lab
	var b strings.Builder
	fmt.Fprintf(&b, `global_defs {
  router_id %s
  vrrp_version 3
  script_user root
  enable_script_security
}
`, d.Name)
	instance := func(name, iface string, vrid int, vip netip.Addr) {
		fmt.Fprintf(&b, `vrrp_instance %s {
  interface %s
  state BACKUP
  virtual_router_id %d
  priority %d
  advert_int %g
  virtual_ipaddress {
    %s/24
  }
}
`, name, iface, vrid, d.priority(), l.Spec.AdvertInt.Seconds(), vip)
	}
	instance("VI_1", "eth0", 77, l.VIP)
	if l.Spec.Layout == NAT {
		instance("VI_GW", "eth1", 78, gatewayVIP)
		b.WriteString(`vrrp_sync_group G {
  group {
    VI_1
    VI_GW
  }
}
`)
	}
	return b.String()
}

// Kill sends SIGKILL to the director's daemons (a crash): nothing cleans up.
func (d *Director) Kill() { d.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (graceful: VRRP resigns with priority 0), waits, and
// fails the test unless every daemon exited with status 0.
func (d *Director) Stop() { d.signal(syscall.SIGTERM) }

func (d *Director) signal(sig syscall.Signal) {
	t := d.lab.T
	t.Helper()
	d.mu.Lock()
	procs := []*proc{d.xlb, d.keepal}
	d.xlb, d.keepal = nil, nil
	d.mu.Unlock()
	for _, p := range procs {
		if p == nil {
			continue
		}
		_ = p.cmd.Process.Signal(sig)
	}
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Fatalf("%s: %s did not exit after %v", d.Name, p.cmd.Path, sig)
		}
		if sig == syscall.SIGTERM && p.err != nil {
			t.Errorf("%s: %s exited after SIGTERM with %v (want status 0); log:\n%s", d.Name, strings.Join(p.cmd.Args, " "), p.err, d.logTail(40))
		}
	}
}

// logTail returns the last n lines of the director's log.
func (d *Director) logTail(n int) string {
	out, _ := os.ReadFile(d.LogPath)
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Running reports whether xlb runs in the director.
func (d *Director) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.xlb == nil {
		return false
	}
	select {
	case <-d.xlb.done:
		return false
	default:
		return true
	}
}

func (d *Director) cleanup() {
	d.mu.Lock()
	procs := []*proc{d.xlb, d.keepal}
	d.xlb, d.keepal = nil, nil
	d.mu.Unlock()
	for _, p := range procs {
		if p != nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	_ = os.RemoveAll(d.PinPath)
}

// HoldsVIP reports whether the director has the VIP on eth0.
func (d *Director) HoldsVIP() bool { return d.HasAddr("eth0", d.lab.VIP) }

// HasAddr reports whether the director has address a on dev.
func (d *Director) HasAddr(dev string, a netip.Addr) bool {
	out, err := d.NS.Run("ip", "-o", "addr", "show", "dev", dev)
	return err == nil && strings.Contains(out, " "+a.String()+"/")
}

// Interfaces are the director's interfaces xlb attaches to.
func (d *Director) Interfaces() []string {
	if d.lab.Spec.Layout == NAT {
		return []string{"eth0", "eth1"}
	}
	return []string{"eth0"}
}

// XDPProgram returns the id of the XDP program attached to dev (0: none).
func (d *Director) XDPProgram(dev string) (int, error) {
	out, err := d.NS.Run("ip", "-j", "-d", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	var links []struct {
		XDP *struct {
			Prog *struct {
				ID int `json:"id"`
			} `json:"prog"`
			Attached []struct {
				Prog *struct {
					ID int `json:"id"`
				} `json:"prog"`
			} `json:"attached"`
		} `json:"xdp"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip -j link show %s: %v: %s", dev, err, out)
	}
	x := links[0].XDP
	switch {
	case x == nil:
		return 0, nil
	case x.Prog != nil:
		return x.Prog.ID, nil
	}
	for _, a := range x.Attached {
		if a.Prog != nil {
			return a.Prog.ID, nil
		}
	}
	return 0, fmt.Errorf("%s: XDP without a program id: %s", dev, out)
}

// Pins lists the files under the director's pin path (none if it is gone).
func (d *Director) Pins() []string {
	entries, _ := os.ReadDir(d.PinPath)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// Status asks the daemon for its status.
func (d *Director) Status() (*control.Status, error) {
	resp, err := control.Call(d.Socket, control.Request{Command: "status"})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// StatusText runs `xlb status` (with extra flags) in the director.
func (d *Director) StatusText(flags ...string) (string, error) {
	args := append([]string{"status", "--socket", d.Socket}, flags...)
	return d.NS.Run(Binary(d.lab.T), args...)
}

// Reload runs `xlb reload`.
func (d *Director) Reload() error {
	_, err := d.NS.Run(Binary(d.lab.T), "reload", "--socket", d.Socket)
	return err
}

// Metrics fetches /metrics from the daemon.
func (d *Director) Metrics() (string, error) {
	var conn net.Conn
	if err := d.NS.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9477", 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://127.0.0.1:9477/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	return buf.String(), err
}

// BuildTags are the build tags of xlb's binary, as the Makefile's
// BUILD_TAGS (TestBuildTags): gRPC without golang.org/x/net/trace, which
// would make the linker keep every exported method (see the Makefile).
const BuildTags = "grpcnotrace"

// Binary returns the xlb binary the lab runs: $XLB_BIN (the Makefile sets
// it to bin/xlb), else one built once for this process.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("XLB_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		dir := filepath.Dir(strings.TrimSpace(string(root)))
		out := filepath.Join(os.TempDir(), fmt.Sprintf("xlb-lab-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-tags", BuildTags, "-o", out, "./cmd/xlb")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, o)
			return
		}
		builtBin = out
	})
	if buildErr != nil {
		t.Fatalf("build xlb: %v", buildErr)
	}
	return builtBin
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)
