//go:build vmtest

package vmdaemon_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/vm"
)

// TestWithoutBPFPermission runs the lab's daemon on a director where XDP
// is impossible for want of permission: the daemon is root but keeps only
// CAP_NET_ADMIN (no CAP_BPF, no CAP_SYS_ADMIN), so the kernel refuses to
// load BPF, while IPVS (CAP_NET_ADMIN) stays open to it.
//
// mode = "auto" logs why XDP is unavailable, serves through IPVS and says
// so in status and metrics; mode = "xdp" under the same conditions exits
// non-zero with the reason, having installed nothing.
func TestWithoutBPFPermission(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled"); err == nil {
		t.Logf("kernel.unprivileged_bpf_disabled = %s", strings.TrimSpace(string(b)))
	}
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr", CheckInterval: 200 * time.Millisecond, Fall: 2, Rise: 2})
	d := l.Directors[0]
	rs1, rs2 := l.Reals[0].Addr.String()+":80", l.Reals[1].Addr.String()+":80"
	keep := []int{unix.CAP_NET_ADMIN}

	t.Run("auto falls back to IPVS", func(t *testing.T) {
		d.WriteConfig(withMode(t, d.DefaultConfig(), "auto"))
		x := startDaemon(t, d.NS, d.ConfigPath, d.Socket, keep)
		x.waitReady(30 * time.Second)
		if c := capEff(t, x.cmd.Process.Pid); c != 1<<unix.CAP_NET_ADMIN {
			t.Fatalf("the daemon's effective capabilities are %#x, want CAP_NET_ADMIN only (%#x)", c, 1<<unix.CAP_NET_ADMIN)
		}
		log := x.out.String()
		i := strings.Index(log, "XDP dataplane unavailable, falling back to IPVS")
		if i < 0 {
			t.Fatalf("the daemon does not log why it falls back:\n%s", log)
		}
		why, _, _ := strings.Cut(log[i:], "\n")
		if !strings.Contains(why, "operation not permitted") {
			t.Errorf("the fallback's reason is not the missing permission: %s", why)
		}
		t.Logf("log: %s", why)

		st := statusJSON(t, d.NS, d.Socket)
		if st.Dataplane.Mode != "ipvs" {
			t.Errorf("status dataplane %+v, want mode ipvs", st.Dataplane)
		}
		m := metrics(t, d.NS, "127.0.0.1:9477")
		if v, ok := metric(m, "xlb_dataplane_info", `mode="ipvs"`); !ok || v != 1 {
			t.Errorf("xlb_dataplane_info{mode=\"ipvs\"} = %v (%v), want 1", v, ok)
		}
		if _, ok := metric(m, "xlb_dataplane_info", `mode="xdp"`); ok {
			t.Errorf("xlb_dataplane_info has mode=\"xdp\"")
		}

		waitHealth(t, x.status, "web", rs1, "up", 30*time.Second)
		waitHealth(t, x.status, "web", rs2, "up", 30*time.Second)
		if findIPVS(ipvsTable(t, d.NS), fmt.Sprintf("TCP %s:80 rr", l.VIP)) == nil {
			t.Errorf("no web service in /proc/net/ip_vs: %+v", ipvsTable(t, d.NS))
		}
		const n = 6
		by := map[string]uint64{}
		for i := range n {
			s, err := l.Get(10 * time.Second)
			if err != nil {
				t.Fatalf("request %d through the fallback: %v", i, err)
			}
			by[s]++
		}
		if by["rs1"] != n/2 || by["rs2"] != n/2 {
			t.Errorf("answers %v, want %d from each real server (rr)", by, n/2)
		}
		waitConnections(t, x.status, "web", map[string]uint64{rs1: n / 2, rs2: n / 2})
		if code := x.stop(); code != 0 {
			t.Errorf("xlb exited %d after SIGTERM", code)
		}
		if tbl := ipvsTable(t, d.NS); len(tbl) != 0 {
			t.Errorf("after SIGTERM /proc/net/ip_vs still has %+v", tbl)
		}
	})

	t.Run("xdp fails loudly", func(t *testing.T) {
		d.WriteConfig(d.DefaultConfig()) // mode = "xdp"
		x := startDaemon(t, d.NS, d.ConfigPath, d.Socket, keep)
		code := x.wait(60 * time.Second)
		log := x.out.String()
		t.Logf("exit %d, log:\n%s", code, log)
		if code == 0 {
			t.Errorf("xlb run with mode = \"xdp\" and no BPF permission exited 0")
		}
		i := strings.Index(log, "xlb stopped")
		if i < 0 {
			t.Fatalf("no \"xlb stopped\" error in the log")
		}
		why, _, _ := strings.Cut(log[i:], "\n")
		for _, want := range []string{`XDP dataplane (mode = \"xdp\")`, "operation not permitted", "needs CAP_BPF"} {
			if !strings.Contains(why, want) {
				t.Errorf("the error does not say %s: %s", want, why)
			}
		}
		if strings.Contains(log, "falling back") {
			t.Errorf("mode = \"xdp\" fell back")
		}
		if tbl := ipvsTable(t, d.NS); len(tbl) != 0 {
			t.Errorf("mode = \"xdp\" installed IPVS services: %+v", tbl)
		}
		if _, err := control.Call(d.Socket, control.Request{Command: "status"}); err == nil {
			t.Errorf("the control socket answers after the daemon failed")
		}
	})
}
