package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// pairLab starts a two-director lab and waits until director 0 is master
// and every real server is healthy on both.
func pairLab(t *testing.T, spec lab.Spec) *lab.Lab {
	t.Helper()
	l := lab.New(t, spec)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	})
	for _, d := range l.Directors {
		d.Start()
	}
	l.WaitMaster(l.Directors[0], 20*time.Second)
	port := "80"
	if spec.Layout == lab.NAT {
		port = "8080"
	}
	for _, d := range l.Directors {
		for _, r := range l.Reals {
			waitHealth(t, d, "web", r.Addr.String()+":"+port, "up", 20*time.Second)
		}
	}
	nettest.WaitFor(t, 10*time.Second, "requests through the VIP", func() error {
		_, err := l.Get(time.Second)
		return err
	})
	return l
}

// traffic is the load every resilience test runs: a steady request stream
// and long-lived connections that send and verify data continuously.
type traffic struct {
	load    *lab.Load
	streams *lab.Streams
}

func startTraffic(l *lab.Lab) *traffic {
	return &traffic{load: l.StartLoad(20 * time.Millisecond), streams: l.StartStreams(8, 20*time.Millisecond)}
}

// stop ends the traffic and returns the request report since from and the
// broken connections.
func (tr *traffic) stop(t *testing.T, from time.Time) (lab.LoadReport, int) {
	tr.load.Stop()
	tr.streams.Stop()
	r := tr.load.Report(from)
	started, broken, rounds, errs := tr.streams.Report()
	if broken > 0 {
		t.Logf("broken connections: %v", errs)
	}
	t.Logf("long-lived connections: %d, %d broken, %d echo rounds", started, broken, rounds)
	return r, broken
}

func layouts(t *testing.T, fn func(t *testing.T, layout string)) {
	for _, layout := range []string{lab.DR, lab.NAT} {
		t.Run(layout, func(t *testing.T) { fn(t, layout) })
	}
}

// TestFailoverKill: SIGKILL of the master, mh: the backup takes over; no
// long-lived connection breaks (both directors hash flows alike); requests
// fail only inside the takeover window.
func TestFailoverKill(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) {
		l := pairLab(t, lab.Spec{Layout: layout, Scheduler: "mh"})
		tr := startTraffic(l)
		time.Sleep(time.Second)
		killed := time.Now()
		l.Directors[0].Kill()
		l.WaitMaster(l.Directors[1], 10*time.Second)
		takeover := time.Since(killed)
		time.Sleep(1500 * time.Millisecond)
		r, broken := tr.stop(t, time.Time{})
		t.Logf("%s: SIGKILL of the master: takeover %v; %s; broken connections %d", layout, takeover.Round(time.Millisecond), r, broken)
		if broken != 0 {
			t.Errorf("%d long-lived connections broke", broken)
		}
		window := takeover + 500*time.Millisecond
		if r.Failed > 0 && (r.FirstFail.Before(killed) || r.LastFail.After(killed.Add(window))) {
			t.Errorf("requests failed outside the takeover window [0, %v] after the kill: %s", window, r)
		}
	})
}

// TestGracefulSwitchover: SIGTERM of the master (priority 0): no request
// fails, no connection breaks.
func TestGracefulSwitchover(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) {
		l := pairLab(t, lab.Spec{Layout: layout, Scheduler: "mh"})
		tr := startTraffic(l)
		time.Sleep(time.Second)
		stopped := time.Now()
		l.Directors[0].Stop()
		l.WaitMaster(l.Directors[1], 10*time.Second)
		takeover := time.Since(stopped)
		time.Sleep(time.Second)
		r, broken := tr.stop(t, time.Time{})
		t.Logf("%s: SIGTERM of the master: switchover %v; %s; broken connections %d", layout, takeover.Round(time.Millisecond), r, broken)
		if r.Failed != 0 || broken != 0 {
			t.Errorf("graceful switchover: %d failed requests, %d broken connections", r.Failed, broken)
		}
	})
}

// TestReloadUnderLoad: changing a weight, adding a service and adding a
// real server on the master under load: no request fails, no connection of
// the unchanged echo service breaks.
func TestReloadUnderLoad(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) {
		l := pairLab(t, lab.Spec{Layout: layout, Scheduler: "mh", Reals: 3})
		d := l.Directors[0]
		full := d.DefaultConfig()
		blocks := strings.Split(full, "[[virtual_server]]")
		head, web, echo := blocks[0], blocks[1], blocks[2]
		rs3 := web[strings.LastIndex(web, "[[virtual_server.real_server]]"):]
		webWithout3 := strings.TrimSuffix(web, rs3)
		join := func(parts ...string) string {
			return head + "[[virtual_server]]" + strings.Join(parts, "[[virtual_server]]")
		}
		reload := func(what, cfg string) {
			t.Helper()
			d.WriteConfig(cfg)
			if err := d.Reload(); err != nil {
				t.Fatalf("reload (%s): %v", what, err)
			}
			time.Sleep(400 * time.Millisecond)
		}
		// Start without rs3 in the web service.
		reload("start without rs3", join(webWithout3, echo))
		tr := startTraffic(l)
		time.Sleep(500 * time.Millisecond)

		weighted := strings.Replace(webWithout3, "weight = 1", "weight = 2", 1)
		reload("change a weight", join(weighted, echo))

		web2 := strings.Replace(weighted, `name = "web"`, `name = "web2"`, 1)
		web2 = strings.Replace(web2, "port = 80\n", "port = 8000\n", 1) // the service port
		if layout == lab.DR {
			web2 = strings.ReplaceAll(web2, "port = 80\n", "port = 8000\n") // DR: real servers on the same port
		}
		reload("add a service", join(weighted, echo, web2))

		reload("add a real server", join(weighted+rs3, echo, web2))
		port := "80"
		if layout == lab.NAT {
			port = "8080"
		}
		// A new real server takes traffic once its check passes (rise).
		waitHealth(t, d, "web", l.Reals[2].Addr.String()+":"+port, "up", 10*time.Second)
		time.Sleep(time.Second)
		r, broken := tr.stop(t, time.Time{})
		t.Logf("%s: reloads under load (weight, service, real server): %s; broken connections %d", layout, r, broken)
		if r.Failed != 0 || broken != 0 {
			t.Errorf("reload under load: %d failed requests, %d broken connections", r.Failed, broken)
		}
		st, _ := d.Status()
		if st.Reloads.OK != 4 || st.Reloads.Failed != 0 {
			t.Errorf("reloads %+v", st.Reloads)
		}
		if r.ByServer["rs3"] == 0 {
			t.Errorf("the added real server got no request: %s", r)
		}
	})
}

// TestRestartWithPins: the master's daemon is killed and started again
// within a second; the XDP program and maps stay pinned meanwhile: no
// request fails, no connection breaks.
func TestRestartWithPins(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) {
		// 1 s adverts: a restart within a second is not a failover.
		l := pairLab(t, lab.Spec{Layout: layout, Scheduler: "mh", AdvertInt: time.Second})
		d := l.Directors[0]
		tr := startTraffic(l)
		time.Sleep(time.Second)
		killed := time.Now()
		d.Kill()
		time.Sleep(200 * time.Millisecond)
		d.Start()
		restarted := time.Since(killed)
		time.Sleep(3 * time.Second)
		r, broken := tr.stop(t, time.Time{})
		t.Logf("%s: daemon restart in %v: %s; broken connections %d; master now %v", layout, restarted.Round(time.Millisecond), r, broken, l.Master().Name)
		if r.Failed != 0 || broken != 0 {
			t.Errorf("restart: %d failed requests, %d broken connections", r.Failed, broken)
		}
	})
}

// TestRealServerLoss: a real server's HTTP server dies under load: requests
// fail only until fall x interval, then none; it comes back and gets
// traffic again; connections to the others are unaffected.
func TestRealServerLoss(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) {
		const interval, fall = 200 * time.Millisecond, 2
		l := pairLab(t, lab.Spec{Layout: layout, Scheduler: "mh", CheckInterval: interval, Fall: fall})
		tr := startTraffic(l)
		time.Sleep(time.Second)
		killed := time.Now()
		l.Reals[2].StopWeb()
		port := "80"
		if layout == lab.NAT {
			port = "8080"
		}
		waitHealth(t, l.Directors[0], "web", l.Reals[2].Addr.String()+":"+port, "down", 10*time.Second)
		detected := time.Since(killed)
		time.Sleep(time.Second)
		l.Reals[2].StartWeb()
		waitHealth(t, l.Directors[0], "web", l.Reals[2].Addr.String()+":"+port, "up", 10*time.Second)
		back := time.Now()
		time.Sleep(time.Second)
		r, broken := tr.stop(t, time.Time{})
		after := tr.load.Report(killed.Add(detected))
		t.Logf("%s: real server killed, detected after %v: %s; broken connections %d", layout, detected.Round(time.Millisecond), r, broken)
		bound := time.Duration(fall+1)*interval + time.Second
		if r.Failed > 0 && r.LastFail.Sub(killed) > bound {
			t.Errorf("requests failed %v after the kill, bound %v", r.LastFail.Sub(killed), bound)
		}
		if after.Failed != 0 {
			t.Errorf("failures after the real server was taken out: %s", after)
		}
		if broken != 0 {
			t.Errorf("%d connections broke (the echo service of the dead web server stayed up)", broken)
		}
		if tr.load.Report(back).ByServer["rs3"] == 0 {
			t.Errorf("rs3 got no request after it came back: %s", tr.load.Report(back))
		}
	})
}

// TestFailoverKeepalivedPeer: the failover test with keepalived (Debian's)
// as the other director's VRRP, xlb forwarding there for whichever node
// holds the VIP (a pair migrated one node at a time).
func TestFailoverKeepalivedPeer(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Fatal("keepalived is not installed (.ci/deps installs it)")
	}
	l := pairLab(t, lab.Spec{Scheduler: "mh", Keepalived: true})
	tr := startTraffic(l)
	time.Sleep(time.Second)
	killed := time.Now()
	l.Directors[0].Kill()
	l.WaitMaster(l.Directors[1], 10*time.Second)
	takeover := time.Since(killed)
	time.Sleep(time.Second)
	// xlb comes back and takes the VIP back from keepalived (priority 150
	// over 100, preempt).
	back := time.Now()
	l.Directors[0].Start()
	l.WaitMaster(l.Directors[0], 20*time.Second)
	preempt := time.Since(back)
	time.Sleep(time.Second)
	r, broken := tr.stop(t, time.Time{})
	t.Logf("keepalived peer: xlb master killed, keepalived took over in %v; xlb back and master again %v after its start; %s; broken connections %d",
		takeover.Round(time.Millisecond), preempt.Round(time.Millisecond), r, broken)
	if broken != 0 {
		t.Errorf("%d long-lived connections broke", broken)
	}
	window := takeover + 500*time.Millisecond
	for _, res := range tr.load.Results() {
		if res.Err != nil && (res.At.Before(killed) || res.At.After(killed.Add(window))) && (res.At.Before(back) || res.At.After(back.Add(preempt+500*time.Millisecond))) {
			t.Errorf("request at %s failed outside the takeover windows: %v", res.At.Format("15:04:05.000"), res.Err)
		}
	}
}
