package ecmp

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

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
	d.killProc()
}

func (d *Director) cleanup() {
	d.killProc()
	_ = os.RemoveAll(d.PinPath)
}

// killProc sends SIGKILL to the daemon, if it runs, and waits for it.
func (d *Director) killProc() {
	d.mu.Lock()
	p, done := d.proc, d.done
	d.proc = nil
	d.mu.Unlock()
	if p != nil {
		_ = p.Kill()
		<-done
	}
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
