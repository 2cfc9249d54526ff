//go:build vmtest

package vmdaemon_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

// TestIPVSFailover: two directors on IPVS, VRRP as on XDP. SIGKILL of the
// master: the backup takes the VIP and serves, requests fail only inside
// the takeover window; the master returns and preempts; SIGTERM of the
// master (priority 0): the backup takes over at once. IPVS rules stay
// installed on the backup (traffic follows the VIP), as with keepalived.
// IPVS has no connection sync here, so only new connections are checked
// (a connection that spans a switchover may be reset, as with keepalived
// without its sync daemon).
func TestIPVSFailover(t *testing.T) {
	vm.RequireGuest(t)
	l := lab.New(t, lab.Spec{Layout: lab.DR, Directors: 2, Reals: 2, Scheduler: "rr", AdvertInt: 100 * time.Millisecond})
	d0, d1 := l.Directors[0], l.Directors[1]
	for _, d := range l.Directors {
		d.WriteConfig(withMode(t, d.DefaultConfig(), "ipvs"))
		d.Start()
	}
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	l.WaitMaster(d0, 30*time.Second)
	rs1 := fmt.Sprintf("%s:%d", l.Reals[0].Addr, lab.WebPort)
	for _, d := range l.Directors {
		waitHealth(t, d.Status, "web", rs1, "up", 30*time.Second)
		// The backup has the rules too: traffic follows the VIP.
		if s := findIPVS(ipvsTable(t, d.NS), fmt.Sprintf("TCP %s:%d rr", l.VIP, lab.WebPort)); s == nil || len(s.Reals) != 2 {
			t.Fatalf("%s: /proc/net/ip_vs has no web service with 2 real servers", d.Name)
		}
	}

	load := l.StartLoad(50 * time.Millisecond)
	defer load.Stop()
	waitSent := func(from time.Time, n int) {
		t.Helper()
		nettest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d requests", n), func() error {
			if r := load.Report(from); r.Sent < n {
				return fmt.Errorf("%s", r)
			}
			return nil
		})
	}
	// switchTo runs act, waits until to holds the VIP and 20 more requests
	// were made, and fails the test for requests failing after the switch
	// (plus a second). It returns when the switch was complete.
	switchTo := func(what string, act func(), to *lab.Director) time.Time {
		t.Helper()
		at := time.Now()
		act()
		l.WaitMaster(to, 30*time.Second)
		took := time.Since(at)
		done := time.Now()
		waitSent(done, 20)
		r := load.Report(at)
		t.Logf("%s: %s master after %v: %s", what, to.Name, took.Round(time.Millisecond), r)
		if window := took + time.Second; r.Failed > 0 && r.LastFail.After(at.Add(window)) {
			t.Errorf("%s: requests failed outside [0, %v] after it: %s", what, window, r)
		}
		return done
	}
	waitSent(time.Time{}, 10)

	served := switchTo("SIGKILL of the master", d0.Kill, d1)
	if r := load.Report(served); r.Failed != 0 {
		t.Errorf("requests after the takeover: %s, want none failed", r)
	}
	switchTo("the master back, preempting", d0.Start, d0)
	// SIGTERM: priority 0, the backup takes over after its skew time.
	switchTo("SIGTERM of the master", d0.Stop, d1)
	// The stopped director removed what it installed; the new master serves.
	if tbl := ipvsTable(t, d0.NS); len(tbl) != 0 {
		t.Errorf("after SIGTERM %s's /proc/net/ip_vs still has %+v", d0.Name, tbl)
	}
	st := statusJSON(t, d1.NS, d1.Socket)
	var conns uint64
	if s := service(st, "web"); s != nil {
		conns = s.Counters.Connections
	}
	if conns == 0 {
		t.Errorf("%s serves the VIP but counts no connection", d1.Name)
	}
	t.Logf("%s: %d connections served through IPVS; all requests: %s", d1.Name, conns, load.Report(time.Time{}))
}
