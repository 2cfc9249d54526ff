package vrrp_test

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/vrrp"
)

// BenchmarkFailover measures failover in the namespace lab, xlb and
// keepalived in the same run with the same settings: n1 (priority 150)
// is master, n2 (100) backup; the time from SIGKILL (node death) or
// SIGTERM (graceful stop, priority 0) of n1 until the client receives n2's
// gratuitous ARP for the VIP (n2 adds the VIP before it sends it). Advert
// intervals 1s (VRRPv2, as keepalived's default), 100ms, 20ms and 10ms
// (VRRPv3). The node is stopped at a known phase after one of its adverts,
// the same sequence of phases for both implementations.
//
//	go test -run '^$' -bench Failover -benchtime 1x ./vrrp/
func BenchmarkFailover(b *testing.B) {
	type row struct {
		iv                   time.Duration
		runs                 int
		xKill, kKill         []time.Duration
		xGraceful, kGraceful []time.Duration
	}
	rows := []*row{{iv: time.Second, runs: 5}, {iv: 100 * time.Millisecond, runs: 9}, {iv: 20 * time.Millisecond, runs: 9}, {iv: 10 * time.Millisecond, runs: 9}}
	for _, r := range rows {
		r.xKill, r.xGraceful = measureFailover(b, "xlb", r.iv, r.runs)
		r.kKill, r.kGraceful = measureFailover(b, "keepalived", r.iv, r.runs)
		name := ivName(r.iv)
		b.ReportMetric(ms(median(r.xKill)), "ms/kill-xlb-"+name)
		b.ReportMetric(ms(median(r.kKill)), "ms/kill-keepalived-"+name)
		b.ReportMetric(ms(median(r.xGraceful)), "ms/stop-xlb-"+name)
		b.ReportMetric(ms(median(r.kGraceful)), "ms/stop-keepalived-"+name)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "failover in the namespace lab, median (min-max) over runs, until the client has the new master's GARP\n")
	fmt.Fprintf(&t, "%-9s %4s  %-26s %-26s  %-26s %-26s\n", "advert", "runs", "SIGKILL xlb", "SIGKILL keepalived", "SIGTERM xlb", "SIGTERM keepalived")
	for _, r := range rows {
		fmt.Fprintf(&t, "%-9s %4d  %-26s %-26s  %-26s %-26s\n", ivName(r.iv)+proto(r.iv), r.runs,
			summary(r.xKill), summary(r.kKill), summary(r.xGraceful), summary(r.kGraceful))
	}

	b.Log("\n" + t.String())
}

func ivName(iv time.Duration) string {
	if iv >= time.Second {
		return strconv.Itoa(int(iv/time.Second)) + "s"
	}
	return strconv.Itoa(int(iv/time.Millisecond)) + "ms"
}

func proto(iv time.Duration) string {
	if iv >= time.Second {
		return "(v2)"
	}
	return "(v3)"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms (%.1f-%.1f)", ms(median(ds)), ms(slices.Min(ds)), ms(slices.Max(ds)))
}

// pair starts the two nodes of one implementation.
type pair struct {
	impl string
	iv   time.Duration
	l    *lab
	env  string // KEY=VALUE added to xlb nodes' environment
}

func (p pair) version() int {
	if p.iv >= time.Second {
		return 2
	}
	return 3
}

func (p pair) start(b testing.TB, i int, prio uint8, name string) *proc {
	ns := p.l.nodes[i]
	if p.impl == "xlb" {
		return startXLB(b, name, ns, xlbInst(prio, p.iv, func(ic *vrrp.InstanceConfig) { ic.Version = p.version() }), p.env)
	}
	return startKeepalived(b, name, ns, kaConf{prio: int(prio), iv: p.iv, version: p.version()}.String())
}

// BenchmarkFailoverCPU measures the CPU used by the VRRP processes of a
// pair at 20ms adverts, xlb and keepalived, and the thread switches per
// advertisement of the master (the cost of a wake-up dominates here).
//
//	go test -run '^$' -bench FailoverCPU -benchtime 1x ./vrrp/
func BenchmarkFailoverCPU(b *testing.B) {
	const iv, window = 20 * time.Millisecond, 10 * time.Second
	var t strings.Builder
	fmt.Fprintf(&t, "CPU at %v adverts (%% of one core over %v, from /proc/PID/task/*/schedstat) and thread switches per advert of the master:\n", iv, window)
	for _, v := range []struct{ name, impl, env string }{
		{"xlb", "xlb", ""}, {"xlb-gomaxprocs1", "xlb", "GOMAXPROCS=1"}, {"keepalived", "keepalived", ""},
	} {
		c := measureCPU(b, v.impl, v.env, iv, window)
		b.ReportMetric(c.master, "%cpu-"+v.name+"-master-20ms")
		b.ReportMetric(c.backup, "%cpu-"+v.name+"-backup-20ms")
		b.ReportMetric(c.masterSwitches, "switches/advert-"+v.name+"-master-20ms")
		fmt.Fprintf(&t, "  %-16s master %.2f%% (%.1f switches/advert), backup %.2f%%\n", v.name, c.master, c.masterSwitches, c.backup)
	}
	b.Log("\n" + t.String())
}

// measureFailover runs n SIGKILL and n SIGTERM failovers of impl.
func measureFailover(b *testing.B, impl string, iv time.Duration, n int) (kill, graceful []time.Duration) {
	p := pair{impl: impl, iv: iv, l: newLab(b, 2)}
	n1, n2 := p.l.nodes[0], p.l.nodes[1]
	ip := p.l.client.Capture(b, "eth0", 0x0800) // the adverts reach the client too
	backup := p.start(b, 1, 100, impl+"-n2")
	waitAddr(b, n2, labVIP, true, masterDown(iv)+5*time.Second)
	for run := range 2 * n {
		master := p.start(b, 0, 150, fmt.Sprintf("%s-n1-%d", impl, run))
		// n1 preempts n2; let it settle for a few intervals.
		waitAddr(b, n1, labVIP, true, masterDown(iv)+5*time.Second)
		waitAddr(b, n2, labVIP, false, 5*time.Second)
		time.Sleep(5 * iv)
		// Stop n1 at a known phase after one of its adverts: the same
		// phases for both implementations (a low-discrepancy sequence).
		ip.Drain()
		advertFrom(b, ip, p.l.macs[0], 5*iv+time.Second)
		time.Sleep(time.Duration(math.Mod(float64(run/2)*0.6180339887, 1) * float64(iv)))
		p.l.arp.Drain()
		t0 := time.Now()
		if run%2 == 0 {
			master.kill()
		} else {
			master.stop(b)
		}
		at := p.l.garpFrom(b, p.l.macs[1], labVIP, t0, masterDown(iv)+5*time.Second)
		if run%2 == 0 {
			kill = append(kill, at.Sub(t0))
		} else {
			graceful = append(graceful, at.Sub(t0))
		}
	}
	backup.kill()
	return kill, graceful
}

// advertFrom waits for a VRRP advertisement from mac in c.
func advertFrom(b *testing.B, c *nettest.Capture, mac net.HardwareAddr, timeout time.Duration) {
	deadline := time.After(timeout)
	for {
		select {
		case f := <-c.Frames():
			if len(f.Data) > 34 && bytes.Equal(f.Data[6:12], mac) && f.Data[14+9] == vrrp.IPProtoVRRP {
				return
			}
		case <-deadline:
			b.Fatalf("no advertisement from %s within %v", mac, timeout)
		}
	}
}

type cpuUse struct {
	master, backup float64 // percent of one core
	masterSwitches float64 // voluntary thread switches per advert
}

// measureCPU measures the VRRP processes of impl (env added to the xlb
// nodes' environment) over window.
func measureCPU(b *testing.B, impl, env string, iv, window time.Duration) cpuUse {
	p := pair{impl: impl, iv: iv, l: newLab(b, 2), env: env}
	bk := p.start(b, 1, 100, impl+"-n2")
	waitAddr(b, p.l.nodes[1], labVIP, true, masterDown(iv)+5*time.Second)
	ms := p.start(b, 0, 150, impl+"-n1")
	waitAddr(b, p.l.nodes[0], labVIP, true, masterDown(iv)+5*time.Second)
	waitAddr(b, p.l.nodes[1], labVIP, false, 5*time.Second)
	time.Sleep(time.Second) // past start-up work
	mp, bp := vrrpPID(b, ms), vrrpPID(b, bk)
	m0, b0 := taskStats(b, mp), taskStats(b, bp)
	t0 := time.Now()
	time.Sleep(window)
	el := time.Since(t0)
	m1, b1 := taskStats(b, mp), taskStats(b, bp)
	if !hasAddr(p.l.nodes[0], labVIP) || hasAddr(p.l.nodes[1], labVIP) {
		b.Fatalf("%s pair not stable during the CPU window", impl)
	}
	ms.kill()
	bk.kill()
	return cpuUse{
		master:         100 * float64(m1.runNS-m0.runNS) / float64(el),
		backup:         100 * float64(b1.runNS-b0.runNS) / float64(el),
		masterSwitches: float64(m1.switches-m0.switches) / (float64(el) / float64(iv)),
	}
}

type taskStat struct{ runNS, switches int64 }

// taskStats sums the run time (schedstat, nanoseconds) and voluntary
// context switches of every thread of pid.
func taskStats(b *testing.B, pid int) taskStat {
	var s taskStat
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, e.Name()))
		if err != nil {
			continue // thread gone
		}
		var ns int64
		fmt.Sscan(string(raw), &ns)
		s.runNS += ns
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				s.switches += n
			}
		}
	}
	return s
}

// vrrpPID is the process doing VRRP: the xlb node itself, keepalived's
// VRRP child.
func vrrpPID(b *testing.B, p *proc) int {
	if pid := p.keepalivedChild(); pid > 0 {
		return pid
	}
	return p.cmd.Process.Pid
}
