package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/control/sync"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// Connection sync end to end: one echo service per scheduler (and a
// persistent one), long-lived connections on each, SIGKILL of the master.

// syncService is an echo service of the sync tests, on its own port.
type syncService struct {
	name    string
	sched   string
	port    int
	persist bool
	// hashed: every connection from the one client goes to one real
	// server (sh, persistence): a fixed number of streams.
	hashed bool
}

var syncServices = []syncService{
	{name: "e-rr", sched: "rr", port: 7001},
	{name: "e-wrr", sched: "wrr", port: 7002},
	{name: "e-lc", sched: "lc", port: 7003},
	{name: "e-wlc", sched: "wlc", port: 7004},
	{name: "e-sh", sched: "sh", port: 7005, hashed: true},
	{name: "e-mh", sched: "mh", port: 7006},
	{name: "e-persist", sched: "rr", port: 7007, persist: true, hashed: true},
	{name: "e-sed", sched: "sed", port: 7008},
	{name: "e-nq", sched: "nq", port: 7009},
}

// syncConfig is [sync] and the services for director d: sync's protocol
// (none: ""), xlb's unicast to the other director, following VI_1; more
// is added to [sync].
func syncConfig(t testing.TB, l *lab.Lab, d *lab.Director, protocol, more string) string {
	t.Helper()
	var b strings.Builder
	for _, s := range syncServices {
		fmt.Fprintf(&b, `
[[virtual_server]]
name = %q
address = %q
port = %d
scheduler = %q
forward = %q
vrrp_instance = "VI_1"
`, s.name, l.VIP, s.port, s.sched, l.Spec.Layout)
		if s.persist {
			b.WriteString("persistence_timeout = \"300s\"\n")
		}
		fmt.Fprintf(&b, "[virtual_server.health_check]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\n")
		for i, r := range l.Reals {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = %q\nweight = %d\n", r.Addr, i+1)
		}
	}
	if protocol == "" {
		return d.DefaultConfig() + b.String()
	}
	var peer *lab.Director
	for _, o := range l.Directors {
		if o != d {
			peer = o
		}
	}
	key := filepath.Join(l.Dir, "sync.key")
	if _, err := os.Stat(key); err != nil {
		if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(&b, `
[sync]
protocol = %q
interface = "eth0"
vrrp_instance = "VI_1"
`, protocol)
	if protocol == "xlb" {
		fmt.Fprintf(&b, "peers = [%q]\nkey_file = %q\n", peer.Addr, key)
	} else {
		// No bulk sync: a restarted director learns the master's flows
		// from its refresh, within the wait.
		b.WriteString("ready_timeout = \"3s\"\n")
		if !strings.Contains(more, "refresh_interval") {
			b.WriteString("refresh_interval = \"1s\"\n")
		}
	}
	return d.DefaultConfig() + b.String() + more
}

// syncLab starts the pair with every sync service up on both, director 0
// master; sync "" runs without [sync]; more is added to [sync].
func syncLab(t testing.TB, layout, protocol, more string) *lab.Lab {
	t.Helper()
	l := lab.New(t, lab.Spec{Layout: layout, Scheduler: "mh"})
	logsOnFailure(t, l)
	for _, r := range l.Reals {
		for _, s := range syncServices {
			r.ServeEcho(s.port)
		}
	}
	for _, d := range l.Directors {
		d.WriteConfig(syncConfig(t, l, d, protocol, more))
		d.Start()
	}
	l.WaitMaster(l.Directors[0], 20*time.Second)
	for _, d := range l.Directors {
		waitAllUp(t, l, d)
		for _, s := range syncServices {
			for _, r := range l.Reals {
				waitHealth(t, d, s.name, fmt.Sprintf("%s:%d", r.Addr, s.port), "up", 20*time.Second)
			}
		}
		if protocol != "" {
			waitSyncReady(t, d, 20*time.Second)
		}
	}
	return l
}

func syncStatus(t testing.TB, d *lab.Director) *control.Status {
	t.Helper()
	st, err := d.Status()
	if err != nil {
		t.Fatalf("%s status: %v", d.Name, err)
	}
	return st
}

func waitSyncReady(t testing.TB, d *lab.Director, timeout time.Duration) {
	t.Helper()
	nettest.WaitFor(t, timeout, d.Name+" sync_ready", func() error {
		st, err := d.Status()
		if err != nil {
			return err
		}
		if st.Sync == nil || !st.Sync.Ready {
			return fmt.Errorf("not ready: %+v", st.Sync)
		}
		return nil
	})
}

// waitApplied waits until d has applied at least n records more than
// before.
func waitApplied(t testing.TB, d *lab.Director, before uint64, n int) {
	t.Helper()
	nettest.WaitFor(t, 20*time.Second, fmt.Sprintf("%s applying %d records", d.Name, n), func() error {
		st, err := d.Status()
		if err != nil {
			return err
		}
		if got := st.Sync.Applied + st.Sync.Local - before; got < uint64(n) {
			return fmt.Errorf("%d applied: %+v", got, st.Sync)
		}
		return nil
	})
}

func applied(t testing.TB, d *lab.Director) uint64 {
	st := syncStatus(t, d)
	if st.Sync == nil {
		return 0
	}
	return st.Sync.Applied + st.Sync.Local
}

// syncStreams are the long-lived connections of every sync service.
type syncStreams map[string][]*lab.Streams

// start opens n connections per real server on each service (n in all
// on the hashed ones) and returns how many records they make.
func (ss syncStreams) start(l *lab.Lab, n int) int {
	records := 0
	for _, s := range syncServices {
		var st *lab.Streams
		if s.hashed {
			st = l.StartStreamsTo(uint16(s.port), n, 100*time.Millisecond)
		} else {
			st = l.StartStreamsEachTo(uint16(s.port), n, 100*time.Millisecond)
		}
		ss[s.name] = append(ss[s.name], st)
		k := len(st.Streams())
		if s.persist {
			k *= 2 // and the template, each time
		}
		records += k
	}
	return records
}

// waitProgress waits until every stream has echoed since since.
func (ss syncStreams) waitProgress(t *testing.T, since time.Time) {
	t.Helper()
	for _, list := range ss {
		for _, st := range list {
			waitProgress(t, st, since, nil)
		}
	}
}

// stop ends every stream and returns the broken ones by service.
func (ss syncStreams) stop() (broken map[string]int, total int, errs []string) {
	broken = map[string]int{}
	for name, list := range ss {
		for _, st := range list {
			st.Stop()
			started, b, _, e := st.Report()
			total += started
			broken[name] += b
			errs = append(errs, e...)
		}
	}
	return broken, total, errs
}

// TestSyncFailover: two directors with VRRP and [sync] (xlb's protocol,
// and IPVS's between two xlb directors), services of every scheduler (and
// a persistent one), long-lived connections on each. SIGKILL of the
// master: the backup carries every connection (0 broken, for every
// scheduler); connections opened on it meanwhile are carried back when the
// killed director returns, which preempts only once it is sync_ready.
func TestSyncFailover(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) { testSyncFailover(t, layout, "xlb") })
	t.Run("dr-ipvs", func(t *testing.T) { testSyncFailover(t, lab.DR, "ipvs") })
}

func testSyncFailover(t *testing.T, layout, protocol string) {
	l := syncLab(t, layout, protocol, "")
	d0, d1 := l.Directors[0], l.Directors[1]
	ss := syncStreams{}
	before := applied(t, d1)
	records := ss.start(l, 2)
	waitApplied(t, d1, before, records)
	load := l.StartLoad(50 * time.Millisecond)
	waitRequests(t, load, time.Time{}, 20)

	killed := time.Now()
	d0.Kill()
	l.WaitMaster(d1, 10*time.Second)
	takeover := time.Since(killed)
	ss.waitProgress(t, time.Now())

	// Connections opened on the temporary master.
	records = ss.start(l, 1)
	waitRequests(t, load, time.Now(), 20)

	back := time.Now()
	d0.Start()
	l.WaitMaster(d0, 40*time.Second)
	preempt := time.Since(back)
	ss.waitProgress(t, time.Now())
	waitRequests(t, load, time.Now(), 20)
	load.Stop()

	st := syncStatus(t, d0)
	var since time.Time
	for _, in := range st.VRRP {
		if in.Name == "VI_1" {
			since = in.Since
		}
	}
	broken, total, errs := ss.stop()
	t.Logf("%s, %s: SIGKILL of the master, takeover %v; back and master again %v after its start, sync_ready %v before preempting (%s; %d records applied, %d connections opened on the temporary master); %d long-lived connections, broken by service %v; requests: %s",
		layout, protocol, takeover.Round(time.Millisecond), preempt.Round(time.Millisecond), since.Sub(st.Sync.ReadySince).Round(time.Millisecond),
		st.Sync.ReadyHow, st.Sync.Applied, records, total, broken, load.Report(time.Time{}))
	for _, e := range errs {
		t.Errorf("broken: %s", e)
	}
	if st.Sync.ReadySince.IsZero() || since.Before(st.Sync.ReadySince) {
		t.Errorf("%s became MASTER at %s, before it was sync_ready (%s)", d0.Name, since.Format("15:04:05.000"), st.Sync.ReadySince.Format("15:04:05.000"))
	}
	if want := map[string]string{"xlb": "bulk", "ipvs": "timeout"}[protocol]; st.Sync.ReadyHow != want {
		t.Errorf("%s ready by %q, want %q", d0.Name, st.Sync.ReadyHow, want)
	}
}

// TestSyncFailoverWithout is TestSyncFailover's control: the same
// services without [sync]. SIGKILL of the master breaks the long-lived
// connections of the schedulers whose choice depends on the director's
// own state (rr, wrr, lc, wlc: the new master schedules their next packet
// afresh), not those of the hashing ones (sh, mh), which both directors
// compute alike. It shows what TestSyncFailover's 0 broken owes to sync.
func TestSyncFailoverWithout(t *testing.T) {
	l := syncLab(t, lab.DR, "", "")
	ss := syncStreams{}
	ss.start(l, 2)
	ss.waitProgress(t, time.Now())
	l.Directors[0].Kill()
	l.WaitMaster(l.Directors[1], 10*time.Second)
	ss.waitProgress(t, time.Now()) // every stream echoes or has broken
	broken, total, _ := ss.stop()
	t.Logf("without sync, SIGKILL of the master: %d long-lived connections, broken by service %v", total, broken)
	if n := broken["e-rr"] + broken["e-wrr"] + broken["e-lc"] + broken["e-wlc"]; n == 0 {
		t.Errorf("no rr, wrr, lc or wlc connection broke without sync: the test shows nothing")
	}
	for _, name := range []string{"e-sh", "e-mh"} {
		if broken[name] != 0 {
			t.Errorf("%s: %d connections broken, want 0 (both directors hash alike)", name, broken[name])
		}
	}
}

// TestSyncHoldsPreemption: a restarted director whose peers' tables do
// not come (their answers dropped on its way in) holds its VRRP
// preemption until it is sync_ready by ready_timeout; then it preempts.
func TestSyncHoldsPreemption(t *testing.T) {
	const readyTimeout = 4 * time.Second
	l := syncLab(t, lab.DR, "xlb", fmt.Sprintf("ready_timeout = %q\n", readyTimeout.String()))
	d0, d1 := l.Directors[0], l.Directors[1]
	d0.Kill()
	l.WaitMaster(d1, 10*time.Second)
	d0.NS.MustRun(t, "nft", "add", "table", "ip", "xlbtsync")
	d0.NS.MustRun(t, "nft", "add", "chain", "ip", "xlbtsync", "in", "{ type filter hook input priority 0 ; }")
	d0.NS.MustRun(t, "nft", "add", "rule", "ip", "xlbtsync", "in", "udp", "dport", fmt.Sprint(sync.DefaultPort), "drop")
	back := time.Now()
	d0.Start()
	l.WaitMaster(d0, 20*time.Second)
	preempt := time.Since(back)
	st := syncStatus(t, d0)
	var since time.Time
	for _, in := range st.VRRP {
		if in.Name == "VI_1" {
			since = in.Since
		}
	}
	t.Logf("restarted without its peer's table: sync_ready by %s %v after its start, MASTER %v after it",
		st.Sync.ReadyHow, st.Sync.ReadySince.Sub(back).Round(time.Millisecond), since.Sub(st.Sync.ReadySince).Round(time.Millisecond))
	if st.Sync.ReadyHow != "timeout" {
		t.Errorf("%s ready by %q, want timeout (its peer's answers were dropped)", d0.Name, st.Sync.ReadyHow)
	}
	if st.Sync.ReadySince.IsZero() || since.Before(st.Sync.ReadySince) {
		t.Errorf("%s became MASTER at %s, %v after its start, before it was sync_ready (%s)", d0.Name,
			since.Format("15:04:05.000"), preempt.Round(time.Millisecond), st.Sync.ReadySince.Format("15:04:05.000"))
	}
}

// TestSyncLag: a burst of new connections through the master is on the
// backup soon after the last one's handshake: the figure is the time from
// the last connect to the backup's count of applied records reaching them
// all (polled every 20 ms through the control socket), and the sender's
// bytes per record.
func TestSyncLag(t *testing.T) {
	const n = 2000
	l := syncLab(t, lab.DR, "xlb", "refresh_interval = \"0s\"\n")
	d0, d1 := l.Directors[0], l.Directors[1]
	before, sent := applied(t, d1), syncStatus(t, d0).Sync
	vip := netip.AddrPortFrom(l.VIP, uint16(syncServices[0].port))
	start := time.Now()
	for i := range n {
		c, err := l.Dial(vip, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	last := time.Now()
	waitApplied(t, d1, before, n)
	lag := time.Since(last)
	st := syncStatus(t, d0).Sync
	records, bytes := st.SentRecords-sent.SentRecords, st.SentBytes-sent.SentBytes
	t.Logf("%d new connections in %v (%.0f/s): all applied on the backup %v after the last connect; the master sent %d records in %d datagrams, %.1f bytes per record",
		n, last.Sub(start).Round(time.Millisecond), float64(n)/last.Sub(start).Seconds(), lag.Round(time.Millisecond),
		records, st.SentDatagrams-sent.SentDatagrams, float64(bytes)/float64(records))
	if lag > time.Second {
		t.Errorf("the backup had every connection %v after the last one, want within 1s", lag)
	}
}
