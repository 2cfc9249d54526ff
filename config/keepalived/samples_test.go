package keepalived

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
)

// samplesDir holds the 25 sample configurations of Debian's keepalived
// package (installed by .ci/deps).
const samplesDir = "/usr/share/doc/keepalived/samples"

// importGolden imports a file and renders what the command prints: the
// diagnostics, then the TOML, with dir removed from file names.
func importGolden(t *testing.T, dir, name string, opts Options) (string, *Result) {
	t.Helper()
	res := Import(filepath.Join(dir, name), opts)
	var b strings.Builder
	for _, d := range res.Diags {
		b.WriteString(d.String() + "\n")
	}
	b.WriteString("---- exit ")
	if res.Failed() {
		b.WriteString("1\n")
	} else {
		b.WriteString("0\n")
	}
	b.Write(res.TOML)
	return strings.ReplaceAll(b.String(), dir+"/", ""), res
}

func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./config/keepalived -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./config/keepalived -update, then review the diff):\n--- got\n%s", golden, got)
	}
}

// Every sample imports, or fails with errors at FILE:LINE; the output is
// the golden one and loads with xlb's loader offline (xlb check --offline).
func TestSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(samplesDir, "keepalived.conf.*"))
	if err != nil || len(files) != 25 {
		t.Fatalf("want Debian keepalived's 25 samples in %s (apt-get install keepalived), got %d: %v", samplesDir, len(files), err)
	}
	var clean, warned, failed []string
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			got, res := importGolden(t, samplesDir, name, Options{Instance: "lvs1", InstanceSet: true})
			checkGolden(t, filepath.Join("testdata", "samples", name+".golden"), got)
			switch {
			case res.Failed():
				failed = append(failed, name)
				if res.TOML != nil {
					t.Errorf("errors, yet TOML")
				}
				for _, d := range res.Diags {
					if d.Severity == Error && (d.Pos.File == "" || d.Pos.Line == 0) {
						t.Errorf("an error without FILE:LINE: %v", d)
					}
				}
				return
			case len(res.Diags) > 0:
				warned = append(warned, name)
			default:
				clean = append(clean, name)
			}
			cfg, err := config.Parse(name+".toml", res.TOML, nil)
			if err != nil {
				t.Fatalf("the output does not pass xlb check --offline: %v", err)
			}
			if len(cfg.VRRPInstances)+len(cfg.VirtualServers) == 0 {
				t.Errorf("nothing converted")
			}
		})
	}
	t.Logf("%d clean: %v", len(clean), clean)
	t.Logf("%d with warnings: %v", len(warned), warned)
	t.Logf("%d failing: %v", len(failed), failed)
}

// keepalived's semantics on invalid and default-dependent input (each
// case checked with keepalived -t where it reports one): testdata/*.conf
// against their goldens.
func TestSemantics(t *testing.T) {
	for _, tc := range []struct {
		file string
		opts Options
	}{
		{"semantics.conf", Options{Instance: "lb1", InstanceSet: true}},
		{"checkers.conf", Options{}},
		{"virtual_server_group.conf", Options{}},
		{"mail.conf", Options{}},
		{"schedulers.conf", Options{}},
		{"thresholds.conf", Options{}},
	} {
		got, res := importGolden(t, "testdata", tc.file, tc.opts)
		checkGolden(t, filepath.Join("testdata", tc.file+".golden"), got)
		if res.TOML != nil {
			if _, err := config.Parse(tc.file, res.TOML, nil); err != nil {
				t.Errorf("%s: the output does not load: %v", tc.file, err)
			}
		}
	}
	// --instance plays keepalived's -i.
	for id, prio := range map[string]string{"high": "19 priority|170", "low": "20 priority|85"} {
		got, res := importGolden(t, samplesDir, "keepalived.conf.conditional_conf", Options{Instance: id, InstanceSet: true})
		if l := lines(samplesDir, res); !strings.Contains(l, ":"+prio+"\n") || !strings.Contains(got, "net_namespace: not supported") {
			t.Errorf("--instance %s: want %q and net_namespace refused:\n%s\n%s", id, prio, l, got)
		}
	}
}
