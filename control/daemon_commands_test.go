package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// The daemon runs every kind of command through one runner, without a
// shell: a VRRP notify script, a vrrp_script, a script health check and a
// quorum command, each configured as `RECORD FILE a; touch FLAG`, record
// their user id and arguments (`a;` among them) and never create FLAG.
// Every one runs as script_user (nobody). The daemon runs as a child in a
// network namespace (VRRP on a veth) on a fake dataplane.
func TestDaemonCommandsWithoutShell(t *testing.T) {
	t.Parallel()
	ns := nettest.NewNS(t, "cmd")
	// A veth pair inside the namespace: xlbd0 has a carrier once both
	// ends are up.
	ns.MustRun(t, "ip", "link", "add", "xlbd0", "type", "veth", "peer", "name", "xlbd1")
	ns.MustRun(t, "ip", "addr", "add", "10.0.0.1/24", "dev", "xlbd0")
	ns.MustRun(t, "ip", "link", "set", "xlbd1", "up")
	ns.MustRun(t, "ip", "link", "set", "xlbd0", "up")

	dir := t.TempDir()
	// script_user nobody reads the script and writes its records here
	// (the test's temporary directories are private).
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// Run as "/bin/sh FILE": executing a file just written can fail with
	// ETXTBSY while this process forks.
	rec := filepath.Join(dir, "record.sh")
	if err := os.WriteFile(rec, []byte(`out=$1; shift; printf '%s\n' "$(id -u)" "$@" > "$out.tmp"; mv "$out.tmp" "$out"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := []string{"notify", "track", "check", "quorum"}
	cmd := func(name string) string {
		return fmt.Sprintf("/bin/sh %s %s a; touch %s", rec, filepath.Join(dir, name), filepath.Join(dir, name+"-flag"))
	}
	cfg := fmt.Sprintf(`[global]
script_user = "nobody"
[dataplane]
interfaces = ["xlbd0"]
[metrics]
listen = ""
[control]
socket = %q

[[vrrp_script]]
name = "chk"
script = %q
interval = "100ms"

[[vrrp_instance]]
name = "vi"
interface = "xlbd0"
virtual_router_id = 51
version = 3
advert_int = "100ms"
priority = 150
virtual_ipaddress = ["10.0.0.100/24"]
track_script = ["chk"]
notify_master = %q

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
quorum_up = %q
[virtual_server.health_check]
type = "script"
script = %q
interval = "200ms"
rise = 1
[[virtual_server.real_server]]
address = "10.0.0.7"
`, filepath.Join(dir, "xlb.sock"), cmd("track"), cmd("notify"), cmd("quorum"), cmd("check"))
	cfgPath := filepath.Join(dir, "xlb.toml")
	writeFile(t, cfgPath, cfg)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns.Start(t, "env", daemonChildEnv+"="+cfgPath, exe, "-test.run=^$")

	want := map[string][]string{
		"notify": {"65534", "a;", "touch", filepath.Join(dir, "notify-flag")},
		"track":  {"65534", "a;", "touch", filepath.Join(dir, "track-flag")},
		"check":  {"65534", "a;", "touch", filepath.Join(dir, "check-flag"), "10.0.0.7", "80"},
		"quorum": {"65534", "a;", "touch", filepath.Join(dir, "quorum-flag")},
	}
	for _, name := range paths {
		nettest.WaitFor(t, 20*time.Second, name+" command", func() error {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				return err
			}
			if got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); !slices.Equal(got, want[name]) {
				return fmt.Errorf("arguments %q, want %q", got, want[name])
			}
			return nil
		})
	}
	for _, name := range paths {
		if _, err := os.Stat(filepath.Join(dir, name+"-flag")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: `touch` ran: a shell ran the command (%v)", name, err)
		}
	}
}
