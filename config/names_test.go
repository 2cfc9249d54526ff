package config

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
)

// A scheduler a dataplane of the mode lacks is refused: XDP's for "xdp",
// IPVS's for "ipvs", either for "auto" (XDP, then IPVS).
func TestSchedulerLacking(t *testing.T) {
	both := dataplane.SchedulerSpec{Name: "both", IPVS: "both", BPF: "XLB_SCHED_BOTH"}
	ipvsOnly := dataplane.SchedulerSpec{Name: "sed", IPVS: "sed"}
	xdpOnly := dataplane.SchedulerSpec{Name: "x", BPF: "XLB_SCHED_X"}
	for _, tc := range []struct {
		s    dataplane.SchedulerSpec
		mode Mode
		want string
	}{
		{both, ModeAuto, ""}, {both, ModeXDP, ""}, {both, ModeIPVS, ""},
		{ipvsOnly, ModeIPVS, ""}, {ipvsOnly, ModeXDP, "XDP"}, {ipvsOnly, ModeAuto, "XDP"},
		{xdpOnly, ModeXDP, ""}, {xdpOnly, ModeIPVS, "IPVS"}, {xdpOnly, ModeAuto, "IPVS"},
	} {
		if got := lacking(tc.s, tc.mode); got != tc.want {
			t.Errorf("lacking(%s, %s) = %q, want %q", tc.s.Name, tc.mode, got, tc.want)
		}
	}
	// Every scheduler is in both, but those XDP has none of for a reason
	// it gives (dh, lblc, lblcr: by destination, the VIP).
	for _, s := range dataplane.SchedulerTable {
		for _, m := range []Mode{ModeAuto, ModeXDP, ModeIPVS} {
			if dp := lacking(s, m); dp != "" && (dp != "XDP" || s.NoXDP == "") {
				t.Errorf("scheduler %s: the %s dataplane lacks it", s.Name, dp)
			}
		}
	}
}

// config imports of xlb only the packages that declare the names it
// shares, and those import only the standard library (nldump, the netlink
// dumps' retry, netlink as well, which config's environment reads itself):
// the configuration never pulls in a dataplane, VRRP or the control plane
// (nor cilium/ebpf).
func TestImportsOnlyNames(t *testing.T) {
	const mod = "github.com/xlb-dev/xlb/"
	leaves := []string{mod + "dataplane", mod + "control/health/checktype", mod + "vrrp/names", mod + "dataplane/nldump"}
	beyondStd := map[string]string{mod + "dataplane/nldump": "github.com/vishvananda/netlink"}
	for _, imp := range imports(t, ".") {
		if strings.HasPrefix(imp, mod) && !slices.Contains(leaves, imp) {
			t.Errorf("config imports %s; of xlb only %v", imp, leaves)
		}
		if strings.HasPrefix(imp, "github.com/cilium/") || strings.HasPrefix(imp, "github.com/moby/") {
			t.Errorf("config imports %s", imp)
		}
	}
	for _, leaf := range leaves {
		for _, imp := range imports(t, filepath.Join("..", strings.TrimPrefix(leaf, mod))) {
			if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") && imp != beyondStd[leaf] {
				t.Errorf("%s imports %s: it must import only the standard library", leaf, imp)
			}
		}
	}
}

// imports lists what the non-test Go files of dir import.
func imports(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no Go files (%v)", dir, err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, is := range af.Imports {
			p, _ := strconv.Unquote(is.Path.Value)
			out = append(out, p)
		}
	}
	return out
}
