// Package nettest creates network namespaces, veth pairs and bridges for
// tests, with unique names and cleanup registered on the test even when it
// fails. Traffic in tests must stay inside namespaces made here.
package nettest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace made here; `ip netns list | grep
// ^xlbt` finds leftovers of a killed test run.
const Prefix = "xlbt"

// NS is a network namespace owned by a test.
type NS struct {
	Name string
}

// UniqueName returns prefix followed by random hex, at most 15 bytes (the
// interface name limit) when prefix is at most 7 bytes.
func UniqueName(prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// RequireRoot fails the test unless it runs as root: CI runs as root, so a
// test that needs root must not silently skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, BPF): run it as root, as CI does")
	}
}

// NewNS creates a namespace named xlbt<label>-<random> with lo up, and
// removes it (killing what still runs inside) when the test ends. label
// should be short (a few letters).
func NewNS(t testing.TB, label string) *NS {
	t.Helper()
	RequireRoot(t)
	ns := &NS{Name: UniqueName(Prefix + label + "-")}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() { ns.Delete() })
	ns.MustRun(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Delete kills every process left in the namespace and removes it.
func (ns *NS) Delete() {
	if out, err := exec.Command("ip", "netns", "pids", ns.Name).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", pid).Run()
		}
	}
	// A process being killed may hold the namespace briefly; retry with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := exec.Command("ip", "netns", "del", ns.Name).Run()
		if err == nil || time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns.Name, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Start starts a command inside the namespace in the background, with its
// output going to the test log when the test fails, and kills it when the
// test ends.
func (ns *NS) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := ns.Command(name, args...)
	var buf SyncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("output of %s %s (in %s):\n%s", name, strings.Join(args, " "), ns.Name, buf.String())
		}
	})
	return cmd
}

// Do runs fn on a locked OS thread switched into the namespace. Sockets
// opened by fn belong to the namespace and may be used from any goroutine
// afterwards; goroutines started by fn do not run in the namespace.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: if switching back failed it must
		// not be reused, and exiting a locked goroutine retires the thread.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns.Name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Veth creates a veth pair with end aIf in a and end bIf in b, both up.
// Names only need to be unique inside their namespace.
func Veth(t testing.TB, a *NS, aIf string, b *NS, bIf string) {
	t.Helper()
	tmp := UniqueName("xv")
	tmpPeer := UniqueName("xv")
	// Create in the root namespace under unique names, then move and rename:
	// every namespace sees only its own names.
	if out, err := exec.Command("ip", "link", "add", tmp, "type", "veth", "peer", "name", tmpPeer).CombinedOutput(); err != nil {
		t.Fatalf("ip link add veth: %v: %s", err, out)
	}
	for _, m := range []struct {
		dev, ns, name string
	}{{tmp, a.Name, aIf}, {tmpPeer, b.Name, bIf}} {
		if out, err := exec.Command("ip", "link", "set", m.dev, "netns", m.ns, "name", m.name).CombinedOutput(); err != nil {
			_ = exec.Command("ip", "link", "del", tmp).Run()
			t.Fatalf("move %s to %s as %s: %v: %s", m.dev, m.ns, m.name, err, out)
		}
	}
	a.MustRun(t, "ip", "link", "set", aIf, "up")
	b.MustRun(t, "ip", "link", "set", bIf, "up")
}

// Bridge creates a bridge named name in ns, up, with the given ports
// enslaved (they must exist in ns).
func Bridge(t testing.TB, ns *NS, name string, ports ...string) {
	t.Helper()
	ns.MustRun(t, "ip", "link", "add", name, "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", name, "up")
	for _, p := range ports {
		ns.MustRun(t, "ip", "link", "set", p, "master", name)
	}
}

// GRO turns generic receive offload on for dev in ns. Native XDP_TX or
// redirect towards a veth delivers only when the peer end has NAPI (GRO on,
// or an XDP program): call this on the peer ends of attached interfaces.
func GRO(t testing.TB, ns *NS, dev string) {
	t.Helper()
	ns.MustRun(t, "ethtool", "-K", dev, "gro", "on")
}

// NoDAD turns IPv6 duplicate address detection off in ns for the
// interfaces created in it or moved to it afterwards (call it before
// Veth): their link-local addresses are usable at once. For about a
// second after a link comes up its link-local address is tentative, and a
// router has no source address to solicit the neighbour of a packet it
// forwards: the packet waits for the next attempt, a second later, or is
// lost.
func NoDAD(t testing.TB, ns *NS) {
	t.Helper()
	Sysctl(t, ns, "net.ipv6.conf.all.accept_dad", "0")
	Sysctl(t, ns, "net.ipv6.conf.default.accept_dad", "0")
}

// TxChecksumOff turns transmit checksum offload off for dev in ns, so that
// its frames leave with complete checksums, as frames arriving from a
// physical wire do. Across a veth the stack otherwise leaves the TCP/UDP
// checksum partial for the receiver to trust; an XDP program that
// translates or encapsulates such a frame and redirects it to another
// device cannot know, and the final receiver drops it as corrupt. Call it
// on the senders toward an XDP program that rewrites packets.
func TxChecksumOff(t testing.TB, ns *NS, dev string) {
	t.Helper()
	ns.MustRun(t, "ethtool", "-K", dev, "tx", "off")
}

// Addr adds an address (CIDR) to dev in ns.
func Addr(t testing.TB, ns *NS, dev, cidr string) {
	t.Helper()
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = []string{"-6", "addr", "add", cidr, "dev", dev, "nodad"}
	}
	ns.MustRun(t, "ip", args...)
}

// Sysctl sets a sysctl inside ns.
func Sysctl(t testing.TB, ns *NS, key, value string) {
	t.Helper()
	ns.MustRun(t, "sysctl", "-qw", key+"="+value)
}

// WaitFor polls cond every 20ms until it returns nil or the timeout
// passes; then it fails the test with cond's last error.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%v): %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TCPCounter is the counter name (PassiveOpens, OutRsts...) of the Tcp
// line of /proc/net/snmp in ns.
func (ns *NS) TCPCounter(t testing.TB, name string) int64 {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/snmp")
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					t.Fatalf("Tcp %s in /proc/net/snmp: %v", name, err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Tcp %s in /proc/net/snmp:\n%s", name, out)
	return 0
}
