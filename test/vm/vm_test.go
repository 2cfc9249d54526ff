//go:build !vmtest

package vm_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/vm"
)

// guestPackages are the packages whose vmtest tests run inside the VM, in
// this order, in one boot. Add a package here (with a -test.run pattern if
// only some of its tests belong in the VM).
var guestPackages = []vm.Package{
	{Path: "./test/vm"}, // the VM itself: modules, namespaces, veth
	{Path: "./dataplane/ipvs"},
	{Path: "./test/vmdaemon"}, // xlb run on IPVS, auto fallback, XDP tunnel mode
}

// guestModules are the kernel modules shipped: the defaults, the IPv6
// tunnel the tunnel-mode test decapsulates with, and the netlink families
// xlb's netlink library opens (XFRM, netfilter), which a Debian host
// loads on demand.
var guestModules = append(slices.Clone(vm.DefaultModules), "ip6_tunnel", "xfrm_user", "nfnetlink")

// guestHostBinaries are the host programs shipped: ip, and ethtool for
// test/lab (GRO, checksum offload).
var guestHostBinaries = []string{"ip", "ethtool"}

// guestBuilds are programs built and shipped into the VM.
var guestBuilds = []vm.Build{
	{Path: "./cmd/xlb", Dst: "/usr/sbin/xlb"},
}

var testLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+s)\)`)

// TestVM boots the test VM once and runs guestPackages inside; each package
// is a subtest that fails, with the package's output, when its tests fail.
func TestVM(t *testing.T) {
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	res, err := vm.Run(ctx, vm.Config{Packages: guestPackages, Builds: guestBuilds, Modules: guestModules,
		HostBinaries: guestHostBinaries, Logf: t.Logf})
	if err != nil {
		if verr, ok := err.(*vm.Error); ok {
			t.Logf("VM console:\n%s", verr.Console)
		}
		t.Fatal(err)
	}
	t.Logf("vm: %s: %s", res.Kernel, res.Timing())
	for _, p := range res.Packages {
		t.Run(strings.ReplaceAll(p.Package.Name(), "/", "_"), func(t *testing.T) {
			// The inner tests' verdicts and times, always.
			for _, l := range strings.Split(p.Output, "\n") {
				if m := testLine.FindStringSubmatch(l); m != nil {
					t.Logf("%s %s (%s)", m[1], m[2], m[3])
				}
			}
			t.Logf("%s: exit %d in %v", p.Package.Name(), p.ExitCode, p.Duration.Round(time.Millisecond))
			if !p.Passed() {
				t.Errorf("%s failed in the VM (exit %d); its output:\n%s", p.Package.Name(), p.ExitCode, p.Output)
			}
		})
	}
	if !res.Passed() {
		t.Logf("VM console:\n%s", res.Console)
	}
}
