//go:build vmtest

package vmdaemon_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

// Connection sync with the kernel's IPVS sync daemon (ip_vs_sync.c), both
// ways: a director on IPVS (xlb mode = "ipvs", the kernel's daemon started
// with ipvsadm --start-daemon, as keepalived's lvs_sync_daemon does) and an
// xlb director on XDP with [sync] protocol = "ipvs", VRRP between them.

// interopSyncID is the sync id of both sides.
const interopSyncID = 7

// interopSpec is the pair of the interop tests. Under tcg an XDP director
// takes up to half a minute to start, and 100 ms adverts were seen missed
// for more than their master down interval meanwhile (a flap that moved
// the streams before any kill): 300 ms adverts, a takeover of about a
// second, well inside lab.StreamStall.
var interopSpec = lab.Spec{Layout: lab.DR, Directors: 2, Reals: 2, Scheduler: "rr", CheckInterval: time.Second,
	AdvertInt: 300 * time.Millisecond, StartTimeout: 90 * time.Second}

// xdpSync is the lab's XDP configuration with [sync] speaking IPVS's
// protocol, following VI_1.
func xdpSync(d *lab.Director) string {
	return d.DefaultConfig() + fmt.Sprintf(`
[sync]
protocol = "ipvs"
interface = "eth0"
sync_id = %d
vrrp_instance = "VI_1"
ready_timeout = "1s"
refresh_interval = "0s"
`, interopSyncID)
}

// ipvsConn is a line of /proc/net/ip_vs_conn.
type ipvsConn struct {
	Client, Virtual, Real netip.AddrPort
	State                 string
}

// ipvsConns reads the kernel's IPVS connections in ns.
func ipvsConns(t *testing.T, ns *nettest.NS) []ipvsConn {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/ip_vs_conn")
	addr := func(a, p string) netip.AddrPort {
		ap, err := nettest.ProcIPVSAddr(a + ":" + p)
		if err != nil {
			t.Fatal(err)
		}
		return ap
	}
	var conns []ipvsConn
	for _, l := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 8 || f[0] != "TCP" {
			continue
		}
		conns = append(conns, ipvsConn{Client: addr(f[1], f[2]), Virtual: addr(f[3], f[4]), Real: addr(f[5], f[6]), State: f[7]})
	}
	return conns
}

// realAddrs are the lab's real servers' addresses by name.
func realAddrs(l *lab.Lab) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for _, r := range l.Reals {
		out[r.Name] = r.Addr
	}
	return out
}

// killMaster SIGKILLs d0, waits until d1 holds the VIP and every stream
// has echoed since (or broken), and fails the test for each broken one.
func killMaster(t *testing.T, l *lab.Lab, streams *lab.Streams) {
	t.Helper()
	d0, d1 := l.Directors[0], l.Directors[1]
	for _, st := range streams.Streams() {
		if st.Err != "" {
			t.Fatalf("stream %d broke before the kill (a VRRP flap? see the logs): %s", st.ID, st.Err)
		}
	}
	at := time.Now()
	d0.Kill()
	l.WaitMaster(d1, 30*time.Second)
	took := time.Since(at)
	since := time.Now()
	nettest.WaitFor(t, 3*lab.StreamStall, "every long-lived connection echoing", func() error {
		for _, st := range streams.Streams() {
			if st.Err == "" && !st.Last.After(since) {
				return fmt.Errorf("stream %d (%s): no echo since the takeover", st.ID, st.Server)
			}
		}
		return nil
	})
	streams.Stop()
	started, broken, rounds, errs := streams.Report()
	t.Logf("SIGKILL of %s: %s master after %v; %d long-lived connections, %d broken, %d rounds", d0.Name, d1.Name,
		took.Round(time.Millisecond), started, broken, rounds)
	for _, e := range errs {
		t.Errorf("broken: %s", e)
	}
}

// TestSyncIPVSInterop: (1) the kernel's IPVS sync master with an xlb
// backup: after the IPVS master dies, xlb carries its TCP streams to the
// real servers IPVS chose; (2) an xlb master with the kernel's IPVS sync
// backup: /proc/net/ip_vs_conn on the backup shows each stream with its
// real server, ESTABLISHED, and the IPVS backup carries the streams after
// the takeover.
func TestSyncIPVSInterop(t *testing.T) {
	vm.RequireGuest(t)
	t.Run("ipvs-master", func(t *testing.T) {
		l := lab.New(t, interopSpec)
		d0, d1 := l.Directors[0], l.Directors[1]
		d0.WriteConfig(withMode(t, d0.DefaultConfig(), "ipvs"))
		d1.WriteConfig(xdpSync(d1))
		logsOnFailure(t, l)
		for _, d := range l.Directors {
			d.Start()
		}
		l.WaitMaster(d0, 30*time.Second)
		waitEchoUp(t, l)
		d0.NS.MustRun(t, "ipvsadm", "--start-daemon", "master", "--mcast-interface", "eth0", "--syncid", fmt.Sprint(interopSyncID))

		streams := l.StartStreamsEach(2, 200*time.Millisecond)
		n := len(streams.Streams())
		nettest.WaitFor(t, 30*time.Second, fmt.Sprintf("%s applying the IPVS master's %d connections", d1.Name, n), func() error {
			st, err := d1.Status()
			if err != nil {
				return err
			}
			if st.Sync == nil || st.Sync.Applied < uint64(n) {
				return fmt.Errorf("sync %+v", st.Sync)
			}
			return nil
		})
		st, err := d1.Status()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s (xlb) applied %d records of the kernel's sync master, dropped %v", d1.Name, st.Sync.Applied, nonZero(st.Sync.Dropped))
		killMaster(t, l, streams)
	})
	t.Run("xlb-master", func(t *testing.T) {
		l := lab.New(t, interopSpec)
		d0, d1 := l.Directors[0], l.Directors[1]
		d0.WriteConfig(xdpSync(d0))
		d1.WriteConfig(withMode(t, d1.DefaultConfig(), "ipvs"))
		logsOnFailure(t, l)
		for _, d := range l.Directors {
			d.Start()
		}
		l.WaitMaster(d0, 30*time.Second)
		waitEchoUp(t, l)
		d1.NS.MustRun(t, "ipvsadm", "--start-daemon", "backup", "--mcast-interface", "eth0", "--syncid", fmt.Sprint(interopSyncID))

		streams := l.StartStreamsEach(2, 200*time.Millisecond)
		reals := realAddrs(l)
		vip := netip.AddrPortFrom(l.VIP, lab.EchoPort)
		nettest.WaitFor(t, 30*time.Second, d1.Name+"'s /proc/net/ip_vs_conn holding every stream", func() error {
			conns := map[netip.AddrPort]ipvsConn{}
			for _, c := range ipvsConns(t, d1.NS) {
				if c.Virtual == vip {
					conns[c.Client] = c
				}
			}
			for _, s := range streams.Streams() {
				c, ok := conns[s.Client]
				want := netip.AddrPortFrom(reals[s.Server], lab.EchoPort)
				if !ok || c.Real != want || c.State != "ESTABLISHED" {
					return fmt.Errorf("stream %d from %s (on %s): %+v, want to %s ESTABLISHED", s.ID, s.Client, want, c, want)
				}
			}
			return nil
		})
		st, err := d0.Status()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s (xlb) sent %d records in %d datagrams; the kernel's sync backup holds every stream", d0.Name,
			st.Sync.SentRecords, st.Sync.SentDatagrams)
		killMaster(t, l, streams)
	})
}

// waitEchoUp waits until every director has the echo service's real
// servers up.
func waitEchoUp(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, d := range l.Directors {
		for _, r := range l.Reals {
			waitHealth(t, d.Status, "echo", fmt.Sprintf("%s:%d", r.Addr, lab.EchoPort), "up", 30*time.Second)
		}
	}
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// logsOnFailure logs the directors' logs if the test fails.
func logsOnFailure(t *testing.T, l *lab.Lab) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	})
}
