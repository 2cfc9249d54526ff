//go:build vmtest

package vmdaemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

// labDataplane is the [dataplane] head of test/lab's director
// configuration, the one the host's end-to-end tests run on XDP.
const labDataplane = "[dataplane]\nmode = \"xdp\"\nxdp_mode = \"native\"\n"

// withMode returns the lab's configuration with its dataplane mode
// replaced (xdp_mode goes with "ipvs", which does not take it); the rest is
// the same text.
func withMode(t *testing.T, conf, mode string) string {
	t.Helper()
	if !strings.Contains(conf, labDataplane) {
		t.Fatalf("the lab's configuration has no %q any more:\n%s", labDataplane, conf)
	}
	head := fmt.Sprintf("[dataplane]\nmode = %q\n", mode)
	if mode != "ipvs" {
		head += "xdp_mode = \"native\"\n"
	}
	return strings.Replace(conf, labDataplane, head, 1)
}

// TestIPVSDaemon runs the lab's daemon configuration with mode = "ipvs"
// in DR and NAT: one director, two real servers with real HTTP servers, a
// client. Requests through the VIP are answered by both real servers in
// rr order; `xlb status --json` says ipvs and counts every connection per
// real server; the kernel's IPVS table holds the services; a real server
// whose HTTP server stops gets weight 0 in the kernel and no request fails
// afterwards; it comes back; SIGTERM leaves no IPVS service behind.
func TestIPVSDaemon(t *testing.T) {
	vm.RequireGuest(t)
	for _, layout := range []string{lab.DR, lab.NAT} {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			testIPVSDaemon(t, layout)
		})
	}
}

func testIPVSDaemon(t *testing.T, layout string) {
	// The VM emulates its CPU (tcg) and runs both layouts at once: a
	// check's answer may take most of a second (seen: two 200 ms timeouts
	// in a row took a real server out), which must not read as a failure.
	const interval = time.Second
	l := lab.New(t, lab.Spec{Layout: layout, Directors: 1, Reals: 2, Scheduler: "rr", CheckInterval: interval, Fall: 2, Rise: 2})
	d := l.Directors[0]
	d.WriteConfig(withMode(t, d.DefaultConfig(), "ipvs"))
	d.Start()
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	status := func() (*control.Status, error) { return statusJSON(t, d.NS, d.Socket), nil }

	port, fwd := lab.WebPort, "Route"
	if layout == lab.NAT {
		port, fwd = lab.NATPort, "Masq"
	}
	rs1, rs2 := fmt.Sprintf("%s:%d", l.Reals[0].Addr, port), fmt.Sprintf("%s:%d", l.Reals[1].Addr, port)
	waitHealth(t, d.Status, "web", rs1, "up", 30*time.Second)
	waitHealth(t, d.Status, "web", rs2, "up", 30*time.Second)

	// The kernel's table is the configuration's.
	webIPVS := fmt.Sprintf("TCP %s:%d rr", l.VIP, lab.WebPort)
	tbl := ipvsTable(t, d.NS)
	web := findIPVS(tbl, webIPVS)
	if web == nil || len(web.Reals) != 2 || web.Reals[0] != rs1+" "+fwd+" 1" || web.Reals[1] != rs2+" "+fwd+" 1" {
		t.Fatalf("/proc/net/ip_vs: %+v, want %s with %s and %s, %s, weight 1", tbl, webIPVS, rs1, rs2, fwd)
	}
	if echo := findIPVS(tbl, fmt.Sprintf("TCP %s:%d rr", l.VIP, lab.EchoPort)); echo == nil || len(echo.Reals) != 2 {
		t.Errorf("/proc/net/ip_vs: %+v, want the echo service with 2 real servers", tbl)
	}

	// Real HTTP through the VIP, one connection each: rr alternates.
	const n = 10
	var got []string
	for range n {
		s, err := l.Get(10 * time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", len(got), err)
		}
		got = append(got, s)
	}
	for i := 1; i < n; i++ {
		if got[i] == got[i-1] || (got[i] != "rs1" && got[i] != "rs2") {
			t.Fatalf("answers %v: want rs1 and rs2 alternating (rr)", got)
		}
	}
	t.Logf("answers: %v", got)

	// Status (the socket, through xlb status --json) and metrics count them.
	st := statusJSON(t, d.NS, d.Socket)
	if st.Dataplane.Mode != "ipvs" {
		t.Errorf("status dataplane %+v, want mode ipvs", st.Dataplane)
	}
	s := waitConnections(t, status, "web", map[string]uint64{rs1: n / 2, rs2: n / 2})
	for _, r := range s.Reals {
		c := r.Counters
		// Each exchange is at least SYN, ACK, request and FIN in; behind
		// NAT SYN-ACK, response and FIN come back through the director.
		if c.PacketsIn < 4*n/2 || c.BytesIn < 40*c.PacketsIn {
			t.Errorf("%s: %d packets, %d bytes in for %d connections", r.Address, c.PacketsIn, c.BytesIn, n/2)
		}
		if layout == lab.NAT && (c.PacketsOut < 3*n/2 || c.BytesOut < 40*c.PacketsOut) {
			t.Errorf("%s: %d packets, %d bytes out for %d NAT connections", r.Address, c.PacketsOut, c.BytesOut, n/2)
		}
		if layout == lab.DR && c.PacketsOut != 0 {
			t.Errorf("%s: %d packets out in direct routing, where replies bypass the director", r.Address, c.PacketsOut)
		}
	}
	t.Logf("web: %+v; real servers %+v / %+v", s.Counters, s.Reals[0].Counters, s.Reals[1].Counters)
	m := metrics(t, d.NS, "127.0.0.1:9477")
	if _, ok := metric(m, "xlb_dataplane_info", `mode="ipvs"`); !ok {
		t.Errorf("no xlb_dataplane_info{mode=\"ipvs\"} in /metrics")
	}
	if v, ok := metric(m, "xlb_backend_connections_total", `service="web"`, `backend="`+rs1+`"`); !ok || v != n/2 {
		t.Errorf("xlb_backend_connections_total %s = %v (%v), want %d", rs1, v, ok, n/2)
	}
	if text, err := d.StatusText(); err == nil {
		t.Logf("xlb status:\n%s", text)
	}

	// rs2's HTTP server stops under a steady stream of requests: the
	// health check takes it out (weight 0 in the kernel) and from then on
	// every request is answered, by rs1.
	load := l.StartLoad(50 * time.Millisecond)
	nettest.WaitFor(t, 20*time.Second, "requests before the failure", func() error {
		if r := load.Report(time.Time{}); r.Sent-r.Failed < 5 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	stopped := time.Now()
	l.Reals[1].StopWeb()
	waitHealth(t, d.Status, "web", rs2, "down", 20*time.Second)
	waitIPVSReal(t, d.NS, webIPVS, rs2+" "+fwd+" 0")
	out := time.Now()
	nettest.WaitFor(t, 30*time.Second, "requests after rs2 was taken out", func() error {
		if r := load.Report(out); r.Sent < 20 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	load.Stop()
	t.Logf("rs2 stopped, out of IPVS after %v; all requests: %s", out.Sub(stopped).Round(time.Millisecond), load.Report(time.Time{}))
	if after := load.Report(out); after.Failed != 0 || after.ByServer["rs2"] != 0 || after.ByServer["rs1"] != after.Sent {
		t.Errorf("requests after rs2 was taken out: %s; want every one answered by rs1", after)
	}
	// It comes back with its weight.
	l.Reals[1].StartWeb()
	waitHealth(t, d.Status, "web", rs2, "up", 20*time.Second)
	waitIPVSReal(t, d.NS, webIPVS, rs2+" "+fwd+" 1")
	seen := map[string]bool{}
	for range 4 {
		s, err := l.Get(10 * time.Second)
		if err != nil {
			t.Fatalf("request after rs2 came back: %v", err)
		}
		seen[s] = true
	}
	if !seen["rs1"] || !seen["rs2"] {
		t.Errorf("after rs2 came back, answers from %v; want both", seen)
	}

	// SIGTERM: the daemon removes what it installed.
	d.Stop()
	if tbl := ipvsTable(t, d.NS); len(tbl) != 0 {
		t.Errorf("after SIGTERM /proc/net/ip_vs still has %+v", tbl)
	}
}
