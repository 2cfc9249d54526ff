//go:build vmtest

package vm_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

// The VM's own checks: what other packages' tests rely on.

var powerOff = flag.Bool("xlb.poweroff", false, "power the VM off at once, without a result (for TestVMWithoutResult)")

func TestMain(m *testing.M) {
	flag.Parse()
	if *powerOff {
		fmt.Println("powering off now")
		if out, err := exec.Command("poweroff", "-f").CombinedOutput(); err != nil {
			fmt.Printf("poweroff: %v: %s\n", err, out)
		}
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestGuestModprobe(t *testing.T) {
	vm.RequireGuest(t)
	for _, m := range []string{"ip_vs", "ip_vs_rr", "ip_vs_mh", "ipip"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v: %s", m, err, out)
		}
		if _, err := os.Stat("/sys/module/" + m); err != nil {
			t.Errorf("%s not loaded after modprobe: %v", m, err)
		}
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		t.Errorf("no /proc/net/ip_vs with ip_vs loaded: %v", err)
	}
}

func TestGuestNamespaces(t *testing.T) {
	vm.RequireGuest(t)
	a, b := nettest.NewNS(t, "a"), nettest.NewNS(t, "b")
	nettest.Veth(t, a, "eth0", b, "eth0")
	nettest.Addr(t, a, "eth0", "192.0.2.1/24")
	nettest.Addr(t, b, "eth0", "192.0.2.2/24")
	a.MustRun(t, "ping", "-c1", "-W2", "192.0.2.2")
	// ip netns exec gives the command the namespace's own /sys.
	out := b.MustRun(t, "ls", "/sys/class/net")
	if f := strings.Fields(out); len(f) < 2 || f[0] != "eth0" || f[1] != "lo" {
		t.Errorf("/sys/class/net in %s: %q, want eth0 and lo first", b.Name, out)
	}
	// The kernel loads modules on demand through modprobe and modules.alias.
	nettest.Bridge(t, a, "br0")
	a.MustRun(t, "ip", "link", "add", "tun0", "type", "ipip", "remote", "192.0.2.2", "local", "192.0.2.1")
}

// Programs in Config.Builds are shipped static and run.
func TestGuestBuilds(t *testing.T) {
	vm.RequireGuest(t)
	out, err := exec.Command("xlb", "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "xlb ") {
		t.Fatalf("xlb version: %v: %q", err, out)
	}
}
