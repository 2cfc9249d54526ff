//go:build !vmtest

package vm_test

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/vm"
)

// guestPackages are the packages whose vmtest tests run inside the VM, in
// this order, in one boot. Add a package here (with a -test.run pattern if
// only some of its tests belong in the VM).
var guestPackages = []vm.Package{
	{Path: "./test/vm"}, // the VM itself: modules, namespaces, veth
	{Path: "./dataplane/ipvs"},
	// xlb run on IPVS, auto fallback, XDP tunnel mode, sync with IPVS:
	// 3m24s under tcg.
	{Path: "./test/vmdaemon", Timeout: 8 * time.Minute},
	{Path: "./test/vmimport"}, // xlb import against keepalived and ipvsadm
}

// importSamples are the keepalived samples test/vmimport runs keepalived
// and xlb on (Debian's keepalived package, a CI dependency).
var importSamples = []string{"misc_check", "misc_check_arg", "quorum", "vrrp"}

// guestFiles are host files shipped: the samples.
func guestFiles() []vm.File {
	var out []vm.File
	for _, s := range importSamples {
		p := "/usr/share/doc/keepalived/samples/keepalived.conf." + s
		out = append(out, vm.File{Src: p, Dst: p})
	}
	return out
}

// selectedPackages are guestPackages, or with XLB_VM_PACKAGES set (paths,
// comma separated, e.g. ./test/vmimport) only those: one package's tests
// in one boot; XLB_VM_RUN then sets their -test.run pattern.
func selectedPackages() []vm.Package {
	sel := os.Getenv("XLB_VM_PACKAGES")
	if sel == "" {
		return guestPackages
	}
	var out []vm.Package
	for _, p := range guestPackages {
		if slices.Contains(strings.Split(sel, ","), p.Path) {
			if run := os.Getenv("XLB_VM_RUN"); run != "" {
				p.Run = run
			}
			out = append(out, p)
		}
	}
	return out
}

// guestModules are the kernel modules shipped: the defaults, the IPv6
// tunnel the tunnel-mode test decapsulates with, and the netlink families
// xlb's netlink library opens (XFRM, netfilter), which a Debian host
// loads on demand.
var guestModules = append(slices.Clone(vm.DefaultModules), "ip6_tunnel", "xfrm_user", "nfnetlink")

// guestHostBinaries are the host programs shipped: ip, ethtool for
// test/lab (GRO, checksum offload), keepalived and ipvsadm for
// test/vmimport.
var guestHostBinaries = []string{"ip", "ethtool", "keepalived", "ipvsadm"}

// guestBuilds are programs built and shipped into the VM.
var guestBuilds = []vm.Build{
	{Path: "./cmd/xlb", Dst: "/usr/sbin/xlb", Tags: lab.BuildTags},
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
	res, err := vm.Run(ctx, vm.Config{Packages: selectedPackages(), Builds: guestBuilds, Modules: guestModules,
		HostBinaries: guestHostBinaries, Files: guestFiles(), Logf: t.Logf})
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
