package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree builds files and directories under a new temporary directory (root
// owned, mode 0700, in the sticky /tmp): each entry is a path, its mode, its
// owner and group, and for a symbolic link its target.
func tree(t *testing.T, entries []treeEntry) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make files owned by another user")
	}
	root := t.TempDir()
	for _, e := range entries {
		p := filepath.Join(root, e.path)
		var err error
		switch {
		case e.link != "":
			err = os.Symlink(e.link, p)
		case e.mode.IsDir():
			err = os.Mkdir(p, 0o700)
		default:
			err = os.WriteFile(p, []byte("#!/bin/sh\n"), 0o700)
		}
		if err == nil && e.link == "" {
			err = os.Chmod(p, e.mode)
		}
		if err == nil && e.link == "" {
			err = os.Chown(p, e.uid, e.gid)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type treeEntry struct {
	path     string
	mode     os.FileMode
	uid, gid int
	link     string
}

const dir = os.ModeDir

var scriptTree = []treeEntry{
	{path: "ok", mode: dir | 0o755},
	{path: "ok/bin", mode: dir | 0o755},
	{path: "ok/bin/good.sh", mode: 0o755},
	{path: "ok/bin/dir.sh", mode: dir | 0o755},
	{path: "ok/bin/link.sh", link: "../../ww/x.sh"},
	{path: "ww", mode: dir | 0o777},
	{path: "ww/x.sh", mode: 0o755},
	{path: "ww/good-link.sh", link: "../ok/bin/good.sh"},
	{path: "sticky", mode: dir | os.ModeSticky | 0o777},
	{path: "sticky/x.sh", mode: 0o755},
	{path: "grp", mode: dir | 0o775, gid: 1000},
	{path: "grp/x.sh", mode: 0o755},
	{path: "grproot", mode: dir | 0o775},
	{path: "grproot/x.sh", mode: 0o755},
	{path: "owned", mode: dir | 0o755},
	{path: "owned/x.sh", mode: 0o755, uid: 1000},
	{path: "wfile", mode: dir | 0o755},
	{path: "wfile/x.sh", mode: 0o757},
	{path: "gfile", mode: dir | 0o755},
	{path: "gfile/x.sh", mode: 0o775, gid: 1000},
}

// The program of each command is found and checked as keepalived's
// check_script_secure does; with enable_script_security a problem is an
// error, without it an insecure program is a warning.
func TestScriptSecurity(t *testing.T) {
	root := tree(t, scriptTree)
	t.Setenv("PATH", root+"/ok/bin:"+root+"/ww")
	r := func(s string) string { return strings.ReplaceAll(s, "R/", root+"/") }
	for _, tc := range []struct {
		cmd      string
		problem  string
		insecure bool
	}{
		{cmd: "R/ok/bin/good.sh arg", problem: ""},
		{cmd: "good.sh", problem: ""}, // in PATH
		{cmd: "R/sticky/x.sh", problem: ""},
		{cmd: "R/grproot/x.sh", problem: ""},
		{cmd: "R/ok/bin/../bin/good.sh", problem: ""},
		{cmd: "R/ww/x.sh", insecure: true, problem: "R/ww/x.sh is not secure: directory R/ww is writable by everyone (mode drwxrwxrwx)"},
		{cmd: "x.sh", insecure: true, problem: "x.sh (R/ww/x.sh) is not secure: directory R/ww is writable by everyone (mode drwxrwxrwx)"},
		{cmd: "R/grp/x.sh", insecure: true, problem: "R/grp/x.sh is not secure: directory R/grp is writable by group 1000 (mode drwxrwxr-x)"},
		{cmd: "R/owned/x.sh", insecure: true, problem: "R/owned/x.sh is not secure: file R/owned/x.sh is owned by uid 1000 (mode -rwxr-xr-x)"},
		{cmd: "R/wfile/x.sh", insecure: true, problem: "R/wfile/x.sh is not secure: file R/wfile/x.sh is writable by everyone (mode -rwxr-xrwx)"},
		{cmd: "R/gfile/x.sh", insecure: true, problem: "R/gfile/x.sh is not secure: file R/gfile/x.sh is writable by group 1000 (mode -rwxrwxr-x)"},
		// A link to an insecure place, and a link in one.
		{cmd: "R/ok/bin/link.sh", insecure: true, problem: "R/ok/bin/link.sh is not secure: directory R/ww is writable by everyone (mode drwxrwxrwx)"},
		{cmd: "R/ww/good-link.sh", insecure: true, problem: "R/ww/good-link.sh is not secure: directory R/ww is writable by everyone (mode drwxrwxrwx)"},
		// Cannot be checked.
		{cmd: "R/ok/bin/none.sh", problem: "lstat R/ok/bin/none.sh: no such file or directory"},
		{cmd: "xlb-no-such-program", problem: `exec: "xlb-no-such-program": executable file not found in $PATH`},
		{cmd: "R/ok/bin/dir.sh", problem: "R/ok/bin/dir.sh is not a regular file"},
	} {
		for _, security := range []bool{false, true} {
			src := fmt.Sprintf("[global]\nrouter_id = \"t\"\nenable_script_security = %v\n[dataplane]\nmode = \"ipvs\"\n"+
				"[[vrrp_script]]\nname = \"s\"\nscript = %q\n", security, r(tc.cmd))
			c, err := Parse("t.toml", []byte(src), SystemEnv())
			var got []Error
			if err != nil {
				var errs *Errors
				if !errors.As(err, &errs) {
					t.Fatal(err)
				}
				got = errs.List
			} else {
				got = c.Warnings
			}
			var want []string
			switch {
			case tc.problem != "" && security:
				want = []string{"t.toml:8: vrrp_script \"s\": script: enable_script_security: " + r(tc.problem)}
			case tc.insecure:
				want = []string{"t.toml:8: vrrp_script \"s\": script: " + r(tc.problem) + ": a non-root user can change what xlb runs (enable_script_security refuses it)"}
			}
			if fmt.Sprint(got) != fmt.Sprint(errorsOf(want)) || (err != nil) != (tc.problem != "" && security) {
				t.Errorf("%s, enable_script_security = %v:\ngot  %v (error: %v)\nwant %v", tc.cmd, security, got, err != nil, want)
			}
		}
	}
}

func errorsOf(lines []string) []Error {
	var out []Error
	for _, l := range lines {
		file, rest, _ := strings.Cut(l, ":")
		var line int
		fmt.Sscanf(rest, "%d:", &line)
		_, msg, _ := strings.Cut(rest, ": ")
		out = append(out, Error{File: file, Line: line, Msg: msg})
	}
	return out
}

// Every command is checked, each reported at its own line (an inherited
// health check once, where it is written); the script user and group must
// exist.
func TestScriptSecurityEveryCommand(t *testing.T) {
	root := tree(t, scriptTree)
	bad := root + "/ww/x.sh"
	src := fmt.Sprintf(`[global]
router_id = "t"
enable_script_security = true
script_user = "xlb-no-such-user"
script_group = "xlb-no-such-group"
[dataplane]
mode = "ipvs"
[[vrrp_script]]
name = "s"
script = "%[1]s"
[[vrrp_sync_group]]
name = "G"
group = ["VI_1"]
notify_master = "%[1]s master"
notify = "%[1]s"
[[vrrp_instance]]
name = "VI_1"
interface = "lo"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3"]
notify_backup = "%[1]s"
notify_fault = "%[1]s"
notify_stop = "%[1]s"
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
forward = "nat"
quorum_up = "%[1]s up"
quorum_down = "%[1]s down"
[virtual_server.health_check]
type = "script"
script = "%[1]s"
[[virtual_server.real_server]]
address = "10.0.1.7"
[[virtual_server.real_server]]
address = "10.0.1.8"
[virtual_server.real_server.health_check]
script = "%[1]s --other"
`, bad)
	_, err := Parse("t.toml", []byte(src), SystemEnv())
	insecure := ": enable_script_security: " + bad + " is not secure: directory " + root + "/ww is writable by everyone (mode drwxrwxrwx)"
	want := strings.Join([]string{
		`t.toml:4: [global]: script_user: unknown user "xlb-no-such-user"`,
		`t.toml:5: [global]: script_group: unknown group "xlb-no-such-group"`,
		`t.toml:10: vrrp_script "s": script` + insecure,
		`t.toml:14: vrrp_sync_group "G": notify_master` + insecure,
		`t.toml:15: vrrp_sync_group "G": notify` + insecure,
		`t.toml:21: vrrp_instance "VI_1": notify_backup` + insecure,
		`t.toml:22: vrrp_instance "VI_1": notify_fault` + insecure,
		`t.toml:23: vrrp_instance "VI_1": notify_stop` + insecure,
		`t.toml:29: virtual_server "a": quorum_up` + insecure,
		`t.toml:30: virtual_server "a": quorum_down` + insecure,
		`t.toml:33: virtual_server "a": health_check: script` + insecure,
		`t.toml:39: virtual_server "a": real_server 10.0.1.8:80: health_check: script` + insecure,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}

	// Users and groups that exist; script_group needs script_user.
	src = "[global]\nrouter_id = \"t\"\nscript_user = \"root\"\nscript_group = \"root\"\n[dataplane]\nmode = \"ipvs\"\n"
	if _, err := Parse("t.toml", []byte(src), SystemEnv()); err != nil {
		t.Error(err)
	}
	src = "[global]\nrouter_id = \"t\"\nscript_group = \"root\"\n[dataplane]\nmode = \"ipvs\"\n"
	_, err = Parse("t.toml", []byte(src), nil)
	if want := `t.toml:3: [global]: script_group needs script_user (as keepalived's script_user USER GROUP)`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
