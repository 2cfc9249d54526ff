//go:build vmtest

package vmdaemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/nettest"
)

// daemon is an `xlb run` started by a test in a namespace (test/lab
// starts its own; this one can drop capabilities and report the exit).
type daemon struct {
	t      *testing.T
	ns     *nettest.NS
	socket string
	cmd    *exec.Cmd
	out    nettest.SyncBuffer
	done   chan struct{}
	err    error // of Wait, once done is closed
}

// startDaemon runs xlb run --config conf in ns. With keepCaps non-nil the
// daemon runs as root with only those capabilities (through the test
// binary's wrapper, see execWithCaps).
func startDaemon(t *testing.T, ns *nettest.NS, conf, socket string, keepCaps []int) *daemon {
	t.Helper()
	d := &daemon{t: t, ns: ns, socket: socket, done: make(chan struct{})}
	if keepCaps == nil {
		d.cmd = ns.Command(xlbBin, "run", "--config", conf)
	} else {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		var caps []string
		for _, c := range keepCaps {
			caps = append(caps, strconv.Itoa(c))
		}
		d.cmd = ns.Command(self, xlbBin, "run", "--config", conf)
		d.cmd.Env = append(os.Environ(), keepCapsEnv+"="+strings.Join(caps, ","))
	}
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start xlb in %s: %v", ns.Name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("xlb log (%s):\n%s", ns.Name, d.out.String())
		}
	})
	return d
}

// waitReady waits until the control socket answers; the daemon exiting
// first fails the test.
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	nettest.WaitFor(d.t, timeout, "the control socket", func() error {
		select {
		case <-d.done:
			d.t.Fatalf("xlb exited before serving: %v (its log follows)", d.err)
		default:
		}
		_, err := control.Call(d.socket, control.Request{Command: "status"})
		return err
	})
}

// wait waits for the daemon to exit and returns its exit code.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Fatalf("xlb did not exit within %v:\n%s", timeout, d.out.String())
	}
	if d.err == nil {
		return 0
	}
	if ee, ok := d.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	d.t.Fatalf("xlb: %v", d.err)
	return -1
}

// stop sends SIGTERM and returns the exit code.
func (d *daemon) stop() int {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	return d.wait(30 * time.Second)
}

func (d *daemon) status() (*control.Status, error) {
	resp, err := control.Call(d.socket, control.Request{Command: "status"})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// statusJSON runs `xlb status --json` against a control socket in ns.
func statusJSON(t *testing.T, ns *nettest.NS, socket string) *control.Status {
	t.Helper()
	out, err := ns.Command(xlbBin, "status", "--json", "--socket", socket).Output()
	if err != nil {
		t.Fatalf("xlb status --json: %v", err)
	}
	var st control.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("xlb status --json: %v: %s", err, out)
	}
	return &st
}

func service(st *control.Status, name string) *control.ServiceInfo {
	for i := range st.Services {
		if st.Services[i].Name == name {
			return &st.Services[i]
		}
	}
	return nil
}

func realServer(s *control.ServiceInfo, addr string) *control.RealInfo {
	for i := range s.Reals {
		if s.Reals[i].Address == addr {
			return &s.Reals[i]
		}
	}
	return nil
}

// waitHealth waits until a real server's health is want ("up", "down")
// and the dataplane has the weight that goes with it (0 when down).
func waitHealth(t *testing.T, status func() (*control.Status, error), svc, addr, want string, timeout time.Duration) {
	t.Helper()
	nettest.WaitFor(t, timeout, fmt.Sprintf("%s %s %s", svc, addr, want), func() error {
		st, err := status()
		if err != nil {
			return err
		}
		s := service(st, svc)
		if s == nil {
			return fmt.Errorf("no service %s", svc)
		}
		r := realServer(s, addr)
		if r == nil {
			return fmt.Errorf("no real server %s in %s", addr, svc)
		}
		if r.Health != want {
			return fmt.Errorf("%s is %s (%s)", addr, r.Health, r.HealthError)
		}
		if (want == "down") != (r.Effective == 0) {
			return fmt.Errorf("%s is %s but its installed weight is %d", addr, r.Health, r.Effective)
		}
		return nil
	})
}

// waitConnections waits until the status shows want connections for each
// real server of a service (IPVS folds its per-CPU counters into what it
// reports every 2 s) and the service's total is their sum.
func waitConnections(t *testing.T, status func() (*control.Status, error), svc string, want map[string]uint64) *control.ServiceInfo {
	t.Helper()
	var s *control.ServiceInfo
	nettest.WaitFor(t, 30*time.Second, "the connection counters of "+svc, func() error {
		st, err := status()
		if err != nil {
			return err
		}
		if s = service(st, svc); s == nil {
			return fmt.Errorf("no service %s", svc)
		}
		var sum uint64
		for addr, n := range want {
			r := realServer(s, addr)
			if r == nil {
				return fmt.Errorf("no real server %s", addr)
			}
			if r.Counters.Connections != n {
				return fmt.Errorf("%s: %d connections, want %d", addr, r.Counters.Connections, n)
			}
			sum += n
		}
		if s.Counters.Connections != sum {
			return fmt.Errorf("service: %d connections, want %d", s.Counters.Connections, sum)
		}
		return nil
	})
	return s
}

// ipvsService is a virtual service of /proc/net/ip_vs: "TCP
// 10.77.0.100:80 rr" and its real servers, "10.77.0.11:80 Route 1".
type ipvsService struct {
	Service string
	Reals   []string
}

// ipvsTable reads the IPVS table of ns from the kernel (/proc/net/ip_vs,
// ipvsadm -Ln's source), addresses decoded.
func ipvsTable(t *testing.T, ns *nettest.NS) []ipvsService {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/ip_vs")
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "IP Virtual Server") {
		t.Fatalf("/proc/net/ip_vs in %s: %q", ns.Name, out)
	}
	var svcs []ipvsService
	for _, l := range lines[3:] {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[0] != "->":
			svcs = append(svcs, ipvsService{Service: f[0] + " " + procAddr(t, f[1]) + " " + f[2]})
		case len(f) >= 4 && f[0] == "->" && len(svcs) > 0:
			s := &svcs[len(svcs)-1]
			s.Reals = append(s.Reals, procAddr(t, f[1])+" "+f[2]+" "+f[3])
		}
	}
	return svcs
}

func findIPVS(svcs []ipvsService, service string) *ipvsService {
	for i := range svcs {
		if svcs[i].Service == service {
			return &svcs[i]
		}
	}
	return nil
}

// waitIPVSReal waits until the kernel's IPVS table has real server line
// want ("10.77.0.12:80 Route 0") under service.
func waitIPVSReal(t *testing.T, ns *nettest.NS, service, want string) {
	t.Helper()
	nettest.WaitFor(t, 10*time.Second, fmt.Sprintf("%q under %q in /proc/net/ip_vs", want, service), func() error {
		s := findIPVS(ipvsTable(t, ns), service)
		if s == nil {
			return fmt.Errorf("no service")
		}
		for _, r := range s.Reals {
			if r == want {
				return nil
			}
		}
		return fmt.Errorf("real servers %q", s.Reals)
	})
}

// procAddr decodes an address of /proc/net/ip_vs.
func procAddr(t *testing.T, s string) string {
	t.Helper()
	a, err := nettest.ProcIPVSAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// metrics fetches the daemon's /metrics from inside ns.
func metrics(t *testing.T, ns *nettest.NS, listen string) string {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", listen, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	c := http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	resp, err := c.Get("http://" + listen + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return string(b)
}

// metric returns the value of the first sample of name whose line holds
// every label given ("mode=\"ipvs\""); ok is false when there is none.
func metric(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if !all {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// capEff reads a process's effective capabilities.
func capEff(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in /proc/%d/status", pid)
	return 0
}
