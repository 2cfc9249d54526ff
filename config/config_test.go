package config

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
	vrrpnames "github.com/xlb-dev/xlb/vrrp/names"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// dump renders a Config as one "path = value" line per field, in a stable
// order, for golden files.
func dump(c *Config) string {
	var b strings.Builder
	dumpValue(&b, "", reflect.ValueOf(*c))
	return b.String()
}

func dumpValue(b *strings.Builder, path string, v reflect.Value) {
	switch x := v.Interface().(type) {
	case time.Duration:
		fmt.Fprintf(b, "%s = %v\n", path, x)
		return
	case netip.Addr, netip.Prefix, netip.AddrPort:
		fmt.Fprintf(b, "%s = %v\n", path, x)
		return
	case dataplane.Proto, vrrpnames.State: // names held as numbers
		fmt.Fprintf(b, "%s = %q\n", path, x)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			fmt.Fprintf(b, "%s = nil\n", path)
			return
		}
		dumpValue(b, path, v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			if path != "" {
				name = path + "." + name
			}
			dumpValue(b, name, v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			fmt.Fprintf(b, "%s = []\n", path)
		}
		for i := range v.Len() {
			dumpValue(b, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	case reflect.String:
		fmt.Fprintf(b, "%s = %q\n", path, v.String())
	default:
		fmt.Fprintf(b, "%s = %v\n", path, v.Interface())
	}
}

func TestExamplesGolden(t *testing.T) {
	files, err := filepath.Glob("examples/*.toml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f, nil)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			got := dump(c)
			golden := filepath.Join("testdata", strings.TrimSuffix(filepath.Base(f), ".toml")+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (go test ./config -run Golden -update, then review the diff):\n%s",
					f, golden, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff lists the lines that differ, for a readable failure.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// The golden dumps record lines; check that they point at the right place.
func TestExampleLines(t *testing.T) {
	src, err := os.ReadFile("examples/nat.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("nat.toml", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	at := func(n int) string { return strings.TrimSpace(lines[n-1]) }
	for _, x := range []struct {
		what string
		line int
		want string
	}{
		{"sync group", c.SyncGroups[0].Line, "[[vrrp_sync_group]]"},
		{"instance", c.VRRPInstances[1].Line, "[[vrrp_instance]]"},
		{"service", c.VirtualServers[1].Line, "[[virtual_server]]"},
		{"service check", c.VirtualServers[1].HealthCheck.Line, "[virtual_server.health_check]"},
		{"real server", c.VirtualServers[1].RealServers[2].Line, "[[virtual_server.real_server]]"},
		{"override", c.VirtualServers[1].RealServers[2].HealthCheck.Line, "[virtual_server.real_server.health_check]"},
	} {
		if got := at(x.line); got != x.want {
			t.Errorf("%s: line %d is %q, want %q", x.what, x.line, got, x.want)
		}
	}
	// The inherited check keeps the service check's line.
	if got, want := c.VirtualServers[1].RealServers[0].HealthCheck.Line, c.VirtualServers[1].HealthCheck.Line; got != want {
		t.Errorf("inherited check line %d, want %d", got, want)
	}
	if c.VirtualServers[1].Name != "web-tls" || c.VirtualServers[1].Line != 79 {
		t.Errorf("web-tls at line %d", c.VirtualServers[1].Line)
	}
}

func TestDefaults(t *testing.T) {
	const src = `
[dataplane]
interfaces = ["eth0"]

[[vrrp_script]]
name = "s"
script = "/bin/true"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3", "10.0.0.4/24"]
track_script = ["s"]
track_interface = ["eth1"]

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80

[[virtual_server.real_server]]
address = "10.0.0.7"
`
	c, err := Parse("defaults.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if c.Global.RouterID != host || host == "" {
		t.Errorf("router_id %q, want the host name %q", c.Global.RouterID, host)
	}
	wantDP := Dataplane{Mode: ModeAuto, XDPMode: dataplane.AttachAuto, Interfaces: []string{"eth0"}, PinPath: "/sys/fs/bpf/xlb",
		TCPTimeout: 15 * time.Minute, TCPFinTimeout: 2 * time.Minute, UDPTimeout: 5 * time.Minute}
	if !reflect.DeepEqual(c.Dataplane, wantDP) {
		t.Errorf("dataplane %+v\nwant %+v", c.Dataplane, wantDP)
	}
	if c.Metrics.Listen != "127.0.0.1:9477" || c.Control.Socket != "/run/xlb/xlb.sock" {
		t.Errorf("metrics %+v control %+v", c.Metrics, c.Control)
	}
	wantScript := VRRPScript{Name: "s", Script: "/bin/true", Interval: time.Second, Timeout: time.Second, Fall: 1, Rise: 1, Line: 5}
	if c.VRRPScripts[0] != wantScript {
		t.Errorf("script %+v\nwant %+v", c.VRRPScripts[0], wantScript)
	}
	wantInst := VRRPInstance{
		Name: "VI_1", Interface: "eth0", State: vrrpnames.Backup, VirtualRouterID: 1, Priority: 100,
		AdvertInt: time.Second, Version: 2, Preempt: true,
		VirtualIPAddresses: []VIP{
			{Prefix: netip.MustParsePrefix("10.0.0.3/32"), Dev: "eth0"},
			{Prefix: netip.MustParsePrefix("10.0.0.4/24"), Dev: "eth0"},
		},
		TrackScripts:              []TrackScript{{Name: "s"}},
		TrackInterfaces:           []TrackInterface{{Name: "eth1"}},
		NotifyTimeout:             10 * time.Second,
		GARPMasterDelay:           5 * time.Second,
		GARPMasterRepeat:          5,
		GARPMasterRefreshRepeat:   1,
		SplitBrainCheckInterval:   time.Second,
		LearnedAdvertIntMaxFactor: 3,
		Line:                      9,
	}
	if !reflect.DeepEqual(c.VRRPInstances[0], wantInst) {
		t.Errorf("instance %+v\nwant %+v", c.VRRPInstances[0], wantInst)
	}
	svcCheck := HealthCheck{Type: checktype.TCP, Interval: 2 * time.Second, Timeout: time.Second, Fall: 3, Rise: 2, InitialState: InitialDown, Line: 17}
	rsCheck := svcCheck
	rsCheck.Port = 80
	wantVS := VirtualServer{
		Name: "web", Server: "web", Address: netip.MustParseAddr("10.0.0.3"), Port: 80, Protocol: dataplane.TCP,
		Scheduler: dataplane.WeightedLeastConnection, Forward: dataplane.DirectRouting, Quorum: 1,
		HealthCheck: svcCheck,
		RealServers: []RealServer{{Address: netip.MustParseAddr("10.0.0.7"), Port: 80, Weight: 1, HealthCheck: &rsCheck, Line: 22}},
		Line:        17,
	}
	if !reflect.DeepEqual(c.VirtualServers[0], wantVS) {
		t.Errorf("service %+v\nwant %+v", c.VirtualServers[0], wantVS)
	}
}

func TestDefaultsOfTypes(t *testing.T) {
	c := mustParse(t, base+`
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
forward = "tunnel"
[virtual_server.health_check]
type = "http"
interval = "500ms"

[[virtual_server.real_server]]
address = "10.0.0.7"
[virtual_server.real_server.health_check]
type = "https"

[[virtual_server.real_server]]
address = "10.0.0.8"
[virtual_server.real_server.health_check]
type = "tcp"
port = 81
`)
	vs := c.VirtualServers[0]
	if vs.TunnelType != dataplane.EncapIPIP {
		t.Errorf("tunnel type %q, want ipip", vs.TunnelType)
	}
	// The timeout follows a shorter interval when not written.
	if hc := vs.HealthCheck; hc.Timeout != 500*time.Millisecond || hc.Path != "/" || !reflect.DeepEqual(hc.ExpectStatus, []int{200}) {
		t.Errorf("http check %+v", hc)
	}
	if hc := vs.RealServers[0].HealthCheck; hc.Type != checktype.HTTPS || hc.Path != "/" || hc.Port != 80 || hc.Interval != 500*time.Millisecond {
		t.Errorf("https override %+v", hc)
	}
	if hc := vs.RealServers[1].HealthCheck; hc.Type != checktype.TCP || hc.Path != "" || hc.ExpectStatus != nil || hc.Port != 81 {
		t.Errorf("tcp override %+v", hc)
	}
}

// base is a valid preamble for tests that add services.
const base = `[global]
router_id = "t"
[dataplane]
interfaces = ["eth0"]
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("t.toml", []byte(src), nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), nil)
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("err = %v, want a not-exist error", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
