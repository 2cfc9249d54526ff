package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd("version")
	if code != 0 || !strings.HasPrefix(out, "xlb ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, errs := runCmd("frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("%d %q", code, errs)
	}
}

func TestCheckReportsEveryErrorWithLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	bad := `[dataplane]
mode = "ipvs"

[[vrrp_instance]]
name = "VI_1"
interface = "lo"
virtual_router_id = 300
priority = 100
virtual_ipaddress = ["10.0.0.3/24"]

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
scheduler = "fastest"
forward = "nat"
[[virtual_server.real_server]]
address = "10.0.1.7"
port = 8080
`
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd("check", "--config", path)
	if code == 0 {
		t.Fatal("check accepted a bad configuration")
	}
	for _, want := range []string{path + ":7: ", path + ":15: "} {
		if !strings.Contains(errs, want) {
			t.Errorf("check output lacks %q:\n%s", want, errs)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(path)+`:\d+: `).FindAllString(errs, -1)); n < 2 {
		t.Errorf("want every error on its own FILE:LINE line, got %d:\n%s", n, errs)
	}
}

func TestCheckOK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ok.toml")
	good := `[dataplane]
mode = "ipvs"

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
forward = "nat"
[[virtual_server.real_server]]
address = "10.0.1.7"
port = 8080
`
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCmd("check", "--config", path); code != 0 || !strings.Contains(out, "OK") || errs != "" {
		t.Fatalf("check: %d %q %q", code, out, errs)
	}

	// Accepted with a warning: exit 0, the warning on stderr with its line.
	warn := good + `
[[vrrp_instance]]
name = "VI_1"
interface = "lo"
virtual_router_id = 7
auth_pass = "longer-than-8"
virtual_ipaddress = ["10.0.0.3/24"]
`
	if err := os.WriteFile(path, []byte(warn), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("check", "--config", path)
	if want := "warning: " + path + ":17: vrrp_instance \"VI_1\": auth_pass: 13 bytes long"; code != 0 || !strings.Contains(out, "OK") || !strings.Contains(errs, want) {
		t.Fatalf("check: %d %q %q, want OK and %q", code, out, errs, want)
	}
}

// dh, lblc and lblcr choose by the destination address, the VIP: xlb check
// takes them with mode = "ipvs" and refuses them with XDP, saying why and
// what to use instead.
func TestCheckDestinationSchedulers(t *testing.T) {
	for _, sched := range []string{"dh", "lblc", "lblcr"} {
		for _, mode := range []string{"ipvs", "xdp", "auto"} {
			path := filepath.Join(t.TempDir(), "c.toml")
			src := fmt.Sprintf(`[dataplane]
mode = %q
interfaces = ["lo"]

[[virtual_server]]
name = "cache"
address = "10.0.0.3"
port = 3128
scheduler = %q
[[virtual_server.real_server]]
address = "10.0.1.7"
`, mode, sched)
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errs := runCmd("check", "--offline", "--config", path)
			if mode == "ipvs" {
				if code != 0 || !strings.Contains(out, "OK") || errs != "" {
					t.Errorf("%s, mode %s: %d %q %q, want OK", sched, mode, code, out, errs)
				}
				continue
			}
			want := fmt.Sprintf(`%s:9: virtual_server "cache": scheduler %q is not supported by the XDP dataplane (mode = %q): it picks by the destination address`, path, sched, mode)
			if code == 0 || !strings.Contains(errs, want) || !strings.Contains(errs, `use mode = "ipvs"`) || !strings.Contains(errs, "sh (by client) or mh (by connection)") {
				t.Errorf("%s, mode %s: %d %q, want %q with the alternatives", sched, mode, code, errs, want)
			}
		}
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, errs := runCmd("status", "--socket", sock)
	if code == 0 || !strings.Contains(errs, "is `xlb run` running?") {
		t.Fatalf("status without a daemon: %d %q", code, errs)
	}
}

// Bounded inputs through `xlb check`: reading stops at the size bound, and
// deep nesting is refused before it costs memory.
func TestCheckBoundedInputs(t *testing.T) {
	code, _, errs := runCmd("check", "--config", "/dev/zero")
	if want := "/dev/zero: larger than 32 MiB, the most xlb reads\n"; code != 1 || errs != want {
		t.Errorf("check /dev/zero: %d %q, want 1 %q", code, errs, want)
	}
	path := filepath.Join(t.TempDir(), "deep.toml")
	deep := "[global]\nx = " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n"
	if err := os.WriteFile(path, []byte(deep), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, _, errs = runCmd("check", "--config", path)
	runtime.ReadMemStats(&after)
	if want := path + ":2: nested deeper than 32 levels (tables, dotted keys, arrays and inline tables)\n"; code != 1 || errs != want {
		t.Errorf("check deep: %d %q, want 1 %q", code, errs, want)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("check deep allocated %d MB", alloc>>20)
	}
}

// `xlb check` warns about a script a non-root user could change, and
// refuses it with enable_script_security.
func TestCheckScriptSecurity(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	script := filepath.Join(open, "notify.sh")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // world-writable, no sticky bit
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.toml")
	cfg := `[dataplane]
mode = "ipvs"

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
forward = "nat"
quorum_down = "` + script + ` web"
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	problem := script + " is not secure: directory " + open + " is writable by everyone (mode drwxrwxrwx)"
	code, out, errs := runCmd("check", "--config", path)
	if want := "warning: " + path + `:9: virtual_server "web": quorum_down: ` + problem; code != 0 || !strings.Contains(out, "OK") || !strings.Contains(errs, want) {
		t.Errorf("check: %d %q %q, want OK and %q", code, out, errs, want)
	}
	if err := os.WriteFile(path, []byte("[global]\nenable_script_security = true\n"+cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCmd("check", "--config", path)
	if want := path + `:11: virtual_server "web": quorum_down: enable_script_security: ` + problem + "\n"; code != 1 || errs != want {
		t.Errorf("check with enable_script_security: %d %q, want 1 %q", code, errs, want)
	}
}

// xlb import: TOML on stdout, FILE:LINE diagnostics on stderr, exit 0, 1
// or 2; the output passes xlb check --offline.
func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	ka := filepath.Join(dir, "keepalived.conf")
	os.WriteFile(ka, []byte("vrrp_instance V {\n  state SLAVE\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {\n    10.0.0.7/24\n  }\n}\n"+
		"virtual_server 10.0.0.7 80 {\n  protocol TCP\n  persistence_timeout 0\n  real_server 10.0.1.1 80 {\n    TCP_CHECK {\n    }\n  }\n}\n"), 0o644)
	var out, errb bytes.Buffer
	if rc := run([]string{"import", "keepalived", "--config", ka}, &out, &errb); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errb.String())
	}
	for _, want := range []string{ka + ":2: warning: state: unknown state \"SLAVE\"", ka + ":11: warning: persistence_timeout: 0 is out of range"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	conf := filepath.Join(dir, "xlb.toml")
	os.WriteFile(conf, out.Bytes(), 0o644)
	out.Reset()
	errb.Reset()
	if rc := run([]string{"check", "--offline", "--config", conf}, &out, &errb); rc != 0 || !strings.Contains(out.String(), "OK (1 virtual servers, 1 VRRP instances)") {
		t.Errorf("check --offline: exit %d: %s%s", rc, out.String(), errb.String())
	}
	// Without --offline the interface eth0 of the file is looked up here.
	os.WriteFile(ka, []byte("virtual_server fwmark 1 {\n}\n"), 0o644)
	errb.Reset()
	if rc := run([]string{"import", "keepalived", "--config", ka, "--out", conf + ".2"}, &out, &errb); rc != 1 ||
		!strings.Contains(errb.String(), ka+":1: error: virtual_server fwmark") {
		t.Errorf("fwmark: exit %d: %s", rc, errb.String())
	}
	if _, err := os.Stat(conf + ".2"); err == nil {
		t.Errorf("--out written despite errors")
	}
	if rc := run([]string{"import", "keepalived"}, &out, &errb); rc != 2 {
		t.Errorf("no --config: exit %d, want 2", rc)
	}
	if rc := run([]string{"import", "haproxy"}, &out, &errb); rc != 2 {
		t.Errorf("unknown source: exit %d, want 2", rc)
	}
	rules := filepath.Join(dir, "rules")
	os.WriteFile(rules, []byte("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 1\n"), 0o644)
	out.Reset()
	if rc := run([]string{"import", "ipvsadm", "--file", rules}, &out, &errb); rc != 0 || !strings.Contains(out.String(), `scheduler = "rr"`) {
		t.Errorf("ipvsadm: exit %d: %s%s", rc, out.String(), errb.String())
	}
}

// limitsConfig is a configuration in mode with services virtual servers
// of one real server each, then, with reals > 0, one "big" with reals.
func limitsConfig(mode string, services, reals int) string {
	return fmt.Sprintf("[dataplane]\nmode = %q\ninterfaces = [\"lo\"]\n", mode) + dataplanetest.VirtualServers(services, reals)
}

// `xlb check` refuses a configuration over the limits of the dataplane it
// asks for (mode = "auto": XDP's, tried first), naming the limit, the
// count and the maximum; IPVS has none.
func TestCheckLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.toml")
	both := limitsConfig("auto", 1024, 257)
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"services, auto", limitsConfig("auto", 1025, 0),
			path + `: 1025 virtual servers, the XDP dataplane (tried first with mode = "auto") holds at most 1024` + "\n"},
		{"services, xdp", limitsConfig("xdp", 1025, 0),
			path + ": 1025 virtual servers, the XDP dataplane holds at most 1024\n"},
		{"real servers of one service", limitsConfig("xdp", 1, 257),
			path + fmt.Sprintf(":%d:", dataplanetest.BigLine(limitsConfig("xdp", 1, 257))) + ` virtual server "big": 257 real servers, the XDP dataplane holds at most 256 per virtual server` + "\n"},
		{"both", both,
			path + `: 1025 virtual servers, the XDP dataplane (tried first with mode = "auto") holds at most 1024` + "\n" +
				path + fmt.Sprintf(`:%d: virtual server "big": 257 real servers, the XDP dataplane (tried first with mode = "auto") holds at most 256 per virtual server`, dataplanetest.BigLine(both)) + "\n"},
		{"ipvs", limitsConfig("ipvs", 1025, 257), ""},
		{"at the limits", limitsConfig("xdp", 1023, 256), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errs := runCmd("check", "--config", path)
			if tc.want == "" {
				if code != 0 || !strings.Contains(out, "OK") {
					t.Fatalf("check: %d %q %q, want OK", code, out, errs)
				}
				return
			}
			if code != 1 || errs != tc.want {
				t.Fatalf("check: %d %q\nwant 1 %q", code, errs, tc.want)
			}
		})
	}
}
