package control

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// A weight set by a check (misc_dynamic: exit status - 2) reaches the
// dataplane and the status through the daemon, and follows the check.
func TestDaemonCheckWeight(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "weight.sh")
	setExit := func(code int) {
		writeFile(t, script+".tmp", fmt.Sprintf("exit %d\n", code))
		if err := os.Rename(script+".tmp", script); err != nil {
			t.Fatal(err)
		}
	}
	setExit(7)
	r := startDaemon(t, func(sock string) string {
		return fmt.Sprintf(`[dataplane]
interfaces = ["eth0"]
[metrics]
listen = ""
[control]
socket = %q

[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
scheduler = "wrr"
forward = "nat"
[virtual_server.health_check]
type = "script"
script = "/bin/sh %s"
misc_dynamic = true
interval = "50ms"
rise = 1
fall = 1
[[virtual_server.real_server]]
address = "10.0.0.7"
weight = 1
`, sock, script)
	}, nil)
	wait := func(want uint32) {
		nettest.WaitFor(t, 10*time.Second, fmt.Sprintf("weight %d installed and shown", want), func() error {
			svcs := r.dp.Installed()
			if len(svcs) != 1 || len(svcs[0].Backends) != 1 {
				return fmt.Errorf("installed %v", svcs)
			}
			if w := svcs[0].Backends[0].Weight; w != want {
				return fmt.Errorf("installed weight %d", w)
			}
			if e := r.d.Status(false).Services[0].Reals[0].Effective; e != want {
				return fmt.Errorf("status shows weight %d", e)
			}
			return nil
		})
	}
	wait(5)
	setExit(3)
	wait(1)
	setExit(1) // down
	wait(0)
}
