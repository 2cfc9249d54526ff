// Package scale measures xlb at the dataplane's limits, the way an
// operator meets them: a generated configuration of 1,000 NAT services x
// 64 real servers (and 1,024 x 256), `xlb run` in a namespace lab with
// real traffic, and what /proc, `xlb status`, `xlb reload` and /metrics
// show. BenchmarkScale prints every figure next to its target (issue 13);
// `make bench-scale` runs it. It is a benchmark, not a test: the machine
// it runs on decides the figures.
//
// XLB_BIN is the binary measured (the Makefile's bin/xlb);
// XLB_SCALE_RUNS the samples of each repeated figure (default 5);
// XLB_SCALE_ONLY a comma-separated list of scenarios (none, tcp5s,
// tcp1s, limits, over); XLB_SCALE_PROFILES a directory where the heap
// and CPU profiles of each scenario's daemon are saved ([debug]
// pprof_listen; the binary must have it).
package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

const (
	mib = 1 << 20
	// realNet is taken as local by the real server's namespace, so that
	// every real server address answers (its web server on 8080 and 8081).
	realNet = "10.201.0.0/16"
	vipNet  = "10.200.0.0/16"
)

// bench is the lab and what the scenarios share.
type bench struct {
	b    *testing.B
	l    *lab.Lab
	d    *lab.Director
	bin  string
	runs int
	prof string // XLB_SCALE_PROFILES
	figs *figures
	n    int // daemons started
	// napiDir and napiRS: the NAPI threads of the director's eth1 and the
	// real server's eth0, napiSwitch those of the switch's ports facing
	// them, once the check scenarios turned them on (napi_test.go).
	napiDir, napiRS, napiSwitch []int
}

func BenchmarkScale(b *testing.B) {
	nettest.RequireRoot(b)
	for range b.N {
		runScale(b)
	}
}

func runScale(b *testing.B) {
	runs := 5
	if s := os.Getenv("XLB_SCALE_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	only := map[string]bool{}
	for _, s := range strings.Split(os.Getenv("XLB_SCALE_ONLY"), ",") {
		if s != "" {
			only[s] = true
		}
	}
	want := func(s string) bool { return len(only) == 0 || only[s] }

	l := lab.New(b, lab.Spec{Layout: lab.NAT, Directors: 1, Reals: 1})
	d := l.Directors[0]
	rs := l.Reals[0]
	rs.NS.MustRun(b, "ip", "route", "add", "local", realNet, "dev", "lo")
	rs.ServeWeb(8081)
	d.NS.MustRun(b, "ip", "route", "add", realNet, "via", rs.Addr.String())
	l.Client.MustRun(b, "ip", "route", "add", vipNet, "via", d.Addr.String())
	// Room for 64,000 checks' connections in flight, and their TIME_WAITs.
	nettest.Sysctl(b, d.NS, "net.ipv4.ip_local_port_range", "1024 65000")
	nettest.Sysctl(b, d.NS, "net.ipv4.tcp_tw_reuse", "1")
	nettest.Sysctl(b, rs.NS, "net.core.somaxconn", "65535")
	nettest.Sysctl(b, rs.NS, "net.ipv4.tcp_max_syn_backlog", "65535")

	bn := &bench{b: b, l: l, d: d, bin: lab.Binary(b), runs: runs, prof: os.Getenv("XLB_SCALE_PROFILES")}
	out := os.Stdout
	host, _ := os.Hostname()
	loadAvg, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(out, "\nxlb scale benchmark: %s (%s), %d samples per repeated figure, load average at start %s",
		bn.bin, host, runs, loadAvg)
	type scenario struct {
		key string
		s   shape
		t   targets
	}
	scenarios := []scenario{
		{"none", shape{Name: "1000x64", Services: 1000, Reals: 64, Check: "none"}, mainTargets},
		{"tcp5s", shape{Name: "1000x64 tcp 5s", Services: 1000, Reals: 64, Check: "tcp", Interval: "5s"}, checkTargets},
		{"tcp1s", shape{Name: "1000x64, 10000 tcp 1s", Services: 1000, Reals: 64, Check: "tcp", Interval: "1s", Checked: 10000}, checkTargets},
		{"limits", shape{Name: "1024x256", Services: 1024, Reals: 256, Check: "none", Shared: true}, limitTargets},
	}
	for _, sc := range scenarios {
		if !want(sc.key) {
			continue
		}
		bn.figs = &figures{}
		bn.scenario(sc.s, sc.t)
		bn.figs.print(out, fmt.Sprintf("== %s (%s)", sc.s.Name, sc.s))
	}
	if want("over") {
		bn.figs = &figures{}
		bn.overLimits()
		bn.figs.print(out, "== beyond the limits")
	}
}

// targets are the bounds of a scenario's figures (0: reported only).
type targets struct {
	steadyRSS, peakRSS, start, reload, apply, status, metrics, metricsMem, cpu float64
}

var (
	mainTargets  = targets{steadyRSS: 64, peakRSS: 128, start: 1000, reload: 300, apply: 20, status: 1000, metrics: 500, metricsMem: 32, cpu: 0.5}
	checkTargets = targets{steadyRSS: 64, peakRSS: 128, start: 1000, reload: 300, apply: 20, status: 1000, metrics: 500, metricsMem: 32, cpu: 10}
	// At the BPF limits the issue asks for the figures, not bounds; status
	// keeps its bound.
	limitTargets = targets{status: 1000}
)

func (bn *bench) scenario(s shape, t targets) {
	b, d, fs := bn.b, bn.d, bn.figs
	head := header(d.Name, d.PinPath, d.Socket, bn.prof != "")
	cfg := s.config(head, 8080)
	d.WriteConfig(cfg)
	b.Logf("%s: %d lines, %.1f MB", s.Name, strings.Count(cfg, "\n"), float64(len(cfg))/1e6)
	fs.add("config lines", "", 0, float64(strings.Count(cfg, "\n")))

	// xlb check: the whole configuration, decoded and validated.
	for range bn.runs {
		start := time.Now()
		out, err := d.NS.Run(bn.bin, "check", "--offline", "--config", d.ConfigPath)
		if err != nil {
			b.Fatalf("xlb check: %v\n%s", err, out)
		}
		fs.add("xlb check", "ms", 0, ms(time.Since(start)))
	}

	// Start to forwarding: fresh starts (SIGTERM detaches and unpins).
	var x *daemon
	starts := min(bn.runs, 3)
	for i := range starts {
		x = bn.start()
		running, err := x.waitLog("xlb running", 0, 120*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		fs.add("start: to \"xlb running\"", "ms", 0, ms(running))
		name, target := "start: to forwarding", t.start
		if s.Check != "none" {
			// The real servers take traffic once their checks pass (rise 2).
			name, target = "start: to forwarding (the checks pass first)", 0
		}
		fwd, ok := bn.waitForwarding(x, s, 300*time.Second)
		fs.add(name, "ms", target, ms(fwd))
		b.Logf("start %d of %d: running after %.0f ms, forwarding after %.0f ms: %s", i+1, starts, ms(running), ms(fwd), lastLine(x.log(), "xlb running"))
		if !ok {
			fs.note(name, "NOT FORWARDING within 300 s")
		}
		if i < starts-1 {
			x.stop()
		}
	}
	// Settle: the checks decide (rise 2), the heap after start is
	// collected.
	settle := 15 * time.Second
	if s.Check != "none" {
		iv, _ := time.ParseDuration(s.Interval)
		settle = max(settle, 4*iv+10*time.Second)
	}
	time.Sleep(settle)
	if err := x.exited(); err != nil {
		b.Fatal(err)
	}
	all, changed := x.lines("health check state changed")
	fs.add("log lines: start", "lines", 0, float64(all))
	fs.add("log lines: start, per real server check", "lines", 0, float64(changed))
	fs.add("steady RSS after start", "MiB", t.steadyRSS, float64(x.rss())/mib)
	fs.add("steady RSS: of which the binary, libraries and mapped BPF maps (RssFile)", "MiB", 0, float64(x.statusField("RssFile"))/mib)
	fs.add("steady RSS: of which mapped BPF maps (the kernel's map memory)", "MiB", 0, float64(x.bpfMapped())/mib)
	fs.add("steady RSS: of which Go's heap and stacks (RssAnon)", "MiB", 0, float64(x.statusField("RssAnon"))/mib)
	mem, maps := x.bpfMemory()
	fs.add("BPF map memory (kernel, not in RSS)", "MiB", 0, float64(mem)/mib)
	fs.note("BPF map memory (kernel, not in RSS)", fmt.Sprintf("%d maps", maps))
	cpuName := "CPU, idle (no traffic)"
	if s.Check != "none" {
		cpuName = "CPU with the checks running"
	}
	bn.profile(s, "heap-after-start", "heap")
	bn.profile(s, "memstats-after-start", "heap?debug=1")
	if bn.prof != "" {
		// The CPU profile of the measured window, as `go tool pprof` reads it.
		go bn.profile(s, "cpu-steady", "profile?seconds=25")
	}
	// RSS through the CPU windows, every 5 s: one reading after start
	// fell anywhere in a few MiB (the heap between two collections, the
	// scavenger's progress), 62.5 to 66.5 MiB in seven runs of two builds
	// whose memory did not differ.
	stopRSS := bn.sampleRSS(x, "steady RSS, every 5 s through the CPU windows")
	cpuAll, user := x.cpuShare(30 * time.Second)
	// With checks, this window's system time includes the real server's
	// side of each check (over a veth the peer's TCP runs inside the
	// daemon's send of a SYN, or its connect()): the target is the
	// director's share, measured next with the receive side in threads.
	target := t.cpu
	if s.Check != "none" {
		target = 0
	}
	fs.add(cpuName, "%", target, 100*cpuAll)
	fs.add(cpuName+": of which user mode", "%", 0, 100*user)
	if s.Check != "none" {
		fs.note(cpuName, "not the director's alone: its system time includes the real server's side of each check (over a veth the peer's TCP runs inside the daemon's send of the SYN); the director's share, against the target, is the next figure")
		// A minute: on two cores shared with the lab's real server and
		// switch, a 30 s window's figure moved by a point or two from one
		// window to the next (8.96 then 11.4 in one run).
		daemon, user, dirThread, rsThread, swThreads := bn.checkCPUSplit(s, x, time.Minute)
		split := cpuName + ", receive in NAPI threads"
		fs.add(split+": the director (daemon and its thread)", "%", t.cpu, 100*(daemon+dirThread))
		fs.add(split+": of which the daemon", "%", 0, 100*daemon)
		fs.add(split+": of which the daemon's user mode", "%", 0, 100*user)
		fs.add(split+": the real server's thread", "%", 0, 100*rsThread)
		fs.add(split+": the lab switch's threads (its ports facing the director and the real server)", "%", 0, 100*swThreads)
	}
	stopRSS()
	// The heap after the CPU windows: against heap-after-start
	// (go tool pprof -diff_base), what the steady state allocates.
	bn.profile(s, "heap-steady", "heap")
	x.resetPeak()

	// Status, text and JSON, idle.
	for range bn.runs {
		bn.statusCall(x, "status: text", t.status)
		bn.statusCall(x, "status: --json", t.status, "--json")
	}
	// /metrics, as curl and as Prometheus (gzip) fetch it.
	before := x.rss()
	x.resetPeak()
	for range bn.runs {
		bn.scrape(x, false, t.metrics)
	}
	for range min(bn.runs, 3) {
		bn.scrape(x, true, t.metrics)
	}
	fs.add("/metrics: transient memory (peak RSS - RSS before)", "MiB", t.metricsMem, float64(x.peak()-before)/mib)
	// The peak through status, scrapes and reloads, and of which phase
	// (each phase's peak from a reset: their maximum is the peak).
	peak := x.peak()
	fs.add("peak RSS: status and scrapes", "MiB", 0, float64(peak)/mib)
	x.resetPeak()

	// Reloads: one real server's port changes, back and forth. The CPU
	// profile of the daemon's next 2 s covers the first reload (and what
	// the checks do meanwhile).
	if bn.prof != "" {
		go bn.profile(s, "cpu-reloads", "profile?seconds=2")
	}
	for i := range bn.runs {
		port := 8081
		if i%2 == 1 {
			port = 8080
		}
		d.WriteConfig(s.config(head, port))
		linesBefore, _ := x.lines("")
		start := time.Now()
		out, err := d.NS.Run(bn.bin, "reload", "--socket", d.Socket)
		took := time.Since(start)
		if err != nil {
			b.Errorf("xlb reload: %v\n%s", err, out)
			continue
		}
		fs.add("reload: end to end (xlb reload)", "ms", t.reload, ms(took))
		if err := waitFor(30*time.Second, func() bool { return strings.Contains(x.log(), "configuration reloaded") }); err != nil {
			b.Errorf("no \"configuration reloaded\" line: %v", err)
		}
		all, _ := x.lines("")
		fs.add("log lines per reload", "lines", 0, float64(all-linesBefore))
		b.Logf("reload %d: %s", i+1, lastLine(x.log(), "configuration reloaded"))
		if v, ok := logField(x.log(), "configuration reloaded", "apply"); ok {
			fs.add("reload: dataplane diff and apply (one real server)", "ms", t.apply, v)
		}
		if v, ok := logField(x.log(), "configuration reloaded", "load"); ok {
			fs.add("reload: configuration load", "ms", 0, v)
		}
		if v, ok := logField(x.log(), "configuration reloaded", "map_updates"); ok {
			fs.add("reload: BPF map updates (one real server)", "", 0, v)
		}
	}
	bn.forwarding(x, s)
	fs.add("peak RSS: reloads", "MiB", 0, float64(x.peak())/mib)
	peak = max(peak, x.peak())
	x.resetPeak()

	// Status during a reload.
	for i := range min(bn.runs, 3) {
		port := 8080
		if i%2 == 0 {
			port = 8081
		}
		d.WriteConfig(s.config(head, port))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = d.NS.Run(bn.bin, "reload", "--socket", d.Socket)
		}()
		worst := time.Duration(0)
		for n := 0; ; n++ {
			took := bn.statusCall(x, "", 0, "--json")
			worst = max(worst, took)
			select {
			case <-done:
			default:
				continue
			}
			break
		}
		fs.add("status --json during a reload (worst)", "ms", t.status, ms(worst))
	}

	fs.add("peak RSS: status during reloads", "MiB", 0, float64(x.peak())/mib)
	// What the runtime holds right after (HeapSys and Sys keep the peak's
	// pages until the scavenger returns them: HeapReleased says how many).
	bn.profile(s, "memstats-after-status-reloads", "heap?debug=1")
	peak = max(peak, x.peak())
	if s.Check != "none" {
		bn.storm(x, s, t) // resets the peak: the storm's is its own figure
	}
	bn.profile(s, "heap-after-reloads", "heap")
	bn.profile(s, "memstats-after-reloads", "heap?debug=1")
	fs.add("peak RSS through status, scrapes, reloads", "MiB", t.peakRSS, float64(peak)/mib)
	time.Sleep(10 * time.Second)
	fs.add("RSS 10s after", "MiB", 0, float64(x.rss())/mib)
	x.stop()
}

// storm fails every checked real server at once (their port refuses
// connections) and brings them back, while status is asked.
func (bn *bench) storm(x *daemon, s shape, t targets) {
	rs := bn.l.Reals[0]
	rs.NS.MustRun(bn.b, "nft", "add table inet storm")
	rs.NS.MustRun(bn.b, "nft", "add chain inet storm in { type filter hook input priority 0; }")
	rs.NS.MustRun(bn.b, "nft", "add rule inet storm in tcp dport 8080 reject with tcp reset")
	iv, _ := time.ParseDuration(s.Interval)
	phase := func(name string) {
		worst := time.Duration(0)
		end := time.Now().Add(4*iv + 5*time.Second)
		for time.Now().Before(end) {
			worst = max(worst, bn.statusCall(x, "", 0, "--json"))
		}
		bn.figs.add("status --json during a check storm (worst), "+name, "ms", t.status, ms(worst))
	}
	x.resetPeak()
	if bn.prof != "" {
		// What the daemon does, and what a status call waits on, in the storm.
		go bn.profile(s, "cpu-storm", "profile?seconds=10")
		time.AfterFunc(3*time.Second, func() { bn.profile(s, "goroutines-storm", "goroutine?debug=2") })
	}
	phase("all down")
	rs.NS.MustRun(bn.b, "nft", "delete table inet storm")
	phase("all up")
	_, changed := x.lines("health check state changed")
	bn.figs.add("log lines: per real server check, all (storm included)", "lines", 0, float64(changed))
	bn.figs.add("peak RSS through the storm", "MiB", t.peakRSS, float64(x.peak())/mib)
}

// profile saves a profile of the daemon (pprof path) under XLB_SCALE_PROFILES.
func (bn *bench) profile(s shape, name, path string) {
	if bn.prof == "" {
		return
	}
	var conn net.Conn
	if err := bn.d.NS.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", "127.0.0.1:6060", 2*time.Second)
		return err
	}); err != nil {
		bn.b.Logf("profile %s: %v", name, err)
		return
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	resp, err := c.Get("http://127.0.0.1:6060/debug/pprof/" + path)
	if err != nil {
		bn.b.Logf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	ext := ".pprof"
	if strings.Contains(path, "debug=") {
		ext = ".txt" // text: the heap's with runtime.MemStats, the goroutines'
	}
	file := filepath.Join(bn.prof, strings.ReplaceAll(s.Name, " ", "_")+"-"+name+ext)
	f, err := os.Create(file)
	if err != nil {
		bn.b.Logf("profile %s: %v", name, err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

func (bn *bench) start() *daemon {
	bn.n++
	return startDaemon(bn.b, bn.d, bn.bin, bn.n)
}

// statusCall runs `xlb status` (args) and records its time under name.
func (bn *bench) statusCall(x *daemon, name string, max float64, args ...string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", bn.d.NS.Name, bn.bin, "status", "--socket", bn.d.Socket}, args...)...)
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		bn.b.Logf("xlb status %v: %v after %v", args, err, took)
	}
	if name != "" {
		bn.figs.add(name, "ms", max, ms(took))
		bn.figs.add(name+": output", "MB", 0, float64(len(out))/1e6)
	}
	if err := x.exited(); err != nil {
		bn.b.Fatal(err)
	}
	return took
}

// scrape fetches /metrics once.
func (bn *bench) scrape(x *daemon, gz bool, max float64) {
	var conn net.Conn
	if err := bn.d.NS.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9477", 2*time.Second)
		return err
	}); err != nil {
		bn.b.Fatal(err)
	}
	c := http.Client{Transport: &http.Transport{
		DialContext:        func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		DisableCompression: true,
	}, Timeout: 60 * time.Second}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:9477/metrics", nil)
	name := "/metrics"
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
		name = "/metrics, gzip (as Prometheus)"
	}
	start := time.Now()
	resp, err := c.Do(req)
	var n int64
	if err == nil {
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	took := time.Since(start)
	if err != nil {
		bn.b.Logf("scrape: %v after %v", err, took)
		bn.figs.add(name, "ms", max, ms(took))
		bn.figs.note(name, "FAILED: "+err.Error())
		return
	}
	bn.figs.add(name, "ms", max, ms(took))
	bn.figs.add(name+": size", "MB", 0, float64(n)/1e6)
	if gz && resp.Header.Get("Content-Encoding") != "gzip" {
		bn.figs.note(name, "not compressed")
	}
	if err := x.exited(); err != nil {
		bn.b.Fatal(err)
	}
}

// waitForwarding waits until HTTP through the first and the last
// services' VIPs works, and returns the time since the daemon started;
// false if it did not within timeout.
func (bn *bench) waitForwarding(x *daemon, s shape, timeout time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(timeout)
	for {
		// Each try gives up after 25 ms: a SYN that arrives before the
		// service is installed is dropped and would be sent again only
		// after a second, and with 200 ms tries the figure was up to
		// 400 ms late. Over the lab's veths a request takes well under 1 ms.
		if err := bn.get(vip(0), 25*time.Millisecond); err == nil {
			if err := bn.get(vip(s.Services-1), 25*time.Millisecond); err == nil {
				return time.Since(x.started), true
			}
		}
		if err := x.exited(); err != nil {
			bn.b.Fatal(err)
		}
		if time.Now().After(deadline) {
			bn.b.Logf("no forwarding within %v", timeout)
			return time.Since(x.started), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forwarding checks that traffic still flows through a few services.
func (bn *bench) forwarding(x *daemon, s shape) {
	for _, i := range []int{0, s.Services / 2, s.Services - 1} {
		var err error
		for try := 0; try < 3; try++ {
			if err = bn.get(vip(i), time.Second); err == nil {
				break
			}
		}
		if err != nil {
			bn.b.Errorf("service s%d (%s) does not forward: %v", i, vip(i), err)
		}
	}
}

// get sends one HTTP request from the client to vip:80.
func (bn *bench) get(vip string, timeout time.Duration) error {
	var conn net.Conn
	if err := bn.l.Client.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", vip+":80", timeout)
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(line, " 200 ") {
		return fmt.Errorf("answer %q", line)
	}
	return nil
}

// overLimits: `xlb check` of configurations beyond the XDP dataplane's
// limits names the limit, the count and the maximum.
func (bn *bench) overLimits() {
	head := header(bn.d.Name, bn.d.PinPath, bn.d.Socket, false)
	for _, s := range []shape{
		{Name: "1025x1", Services: 1025, Reals: 1, Check: "none"},
		{Name: "1x257", Services: 1, Reals: 257, Check: "none"},
		{Name: "1024x256 distinct NAT", Services: 1024, Reals: 256, Check: "none"},
	} {
		path := filepath.Join(bn.l.Dir, "over.toml")
		if err := os.WriteFile(path, []byte(s.config(head, 8080)), 0o644); err != nil {
			bn.b.Fatal(err)
		}
		start := time.Now()
		out, err := bn.d.NS.Run(bn.bin, "check", "--offline", "--config", path)
		took := time.Since(start)
		msg := strings.TrimSpace(out)
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		if len(msg) > 150 {
			msg = msg[:150] + "..."
		}
		name := fmt.Sprintf("xlb check %s: refused", s.Name)
		v := 0.0
		if err != nil && strings.Contains(out, "holds at most") {
			v = 1
		}
		bn.figs.add(name, "", 0, v)
		bn.figs.note(name, fmt.Sprintf("in %.0f ms: %s", ms(took), strings.ReplaceAll(msg, "\n", " | ")))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

var durationRE = regexp.MustCompile(`^([0-9.]+)(ns|µs|us|ms|s)$`)

// logField finds the last log line containing msg and returns its key=
// field: a duration in ms, or a number.
// lastLine is the last line of log that contains msg, "" if none does.
func lastLine(log, msg string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], msg) {
			return lines[i]
		}
	}
	return ""
}

func logField(log, msg, key string) (float64, bool) {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], msg) {
			continue
		}
		for _, f := range strings.Fields(lines[i]) {
			v, ok := strings.CutPrefix(f, key+"=")
			if !ok {
				continue
			}
			if m := durationRE.FindStringSubmatch(v); m != nil {
				d, err := time.ParseDuration(v)
				if err == nil {
					return ms(d), true
				}
			}
			n, err := strconv.ParseFloat(v, 64)
			return n, err == nil
		}
		return 0, false
	}
	return 0, false
}
