package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// TestTCPCheckAnswersInXDP: the daemon's tcp checks (the lab's echo
// service) are half-open probes whose answers the XDP program takes off
// the wire: every successful check is a SYN-ACK answered with a RST by
// the program (verdict tx_probe_rst), and the director's kernel sends
// no RST of its own; a real server whose service is gone answers with a
// RST, which the program takes (probe_refused) and the check reads as
// refused.
func TestTCPCheckAnswersInXDP(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr", CheckInterval: 100 * time.Millisecond, Fall: 2, Rise: 1})
	d := l.Directors[0]
	d.Start()
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	echo1, echo2 := fmt.Sprintf("%s:%d", l.Reals[0].Addr, lab.EchoPort), fmt.Sprintf("%s:%d", l.Reals[1].Addr, lab.EchoPort)
	waitHealth(t, d, "echo", echo1, "up", 20*time.Second)
	waitHealth(t, d, "echo", echo2, "up", 20*time.Second)

	// Over a second or more of checks: as many answers taken as checks
	// passed, and no RST from the director's kernel. Each probe of a real
	// server comes from the same port: had a program's RST not reached the
	// real server, the next SYN would find its request socket and get a
	// challenge ACK, which the kernel resets (seen when the program's RSTs
	// were dropped: 21 RSTs for 20 checks).
	okChecks := func(m string) float64 {
		return metric(t, m, "xlb_healthcheck_duration_seconds_count", `type="tcp"`, `result="ok"`)
	}
	m0, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	rsts0 := d.NS.TCPCounter(t, "OutRsts")
	nettest.WaitFor(t, 20*time.Second, "20 tcp checks passed", func() error {
		m, err := d.Metrics()
		if err != nil {
			return err
		}
		if n := okChecks(m) - okChecks(m0); n < 20 {
			return fmt.Errorf("%v tcp checks passed", n)
		}
		return nil
	})
	m1, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	rsts1 := d.NS.TCPCounter(t, "OutRsts")
	checks := okChecks(m1) - okChecks(m0)
	taken := metric(t, m1, "xlb_packets_total", `verdict="tx_probe_rst"`) - metric(t, m0, "xlb_packets_total", `verdict="tx_probe_rst"`)
	t.Logf("%v tcp checks passed, %v SYN-ACKs answered by the program, the director's kernel sent %d RSTs", checks, taken, rsts1-rsts0)
	// A check in flight at either scrape may be counted on one side only.
	if taken < checks-4 || taken > checks+4 {
		t.Errorf("%v SYN-ACKs answered by the program for %v tcp checks passed", taken, checks)
	}
	if rsts1-rsts0 > 2 {
		t.Errorf("the director's kernel sent %d RSTs while the program answered the SYN-ACKs", rsts1-rsts0)
	}

	// rs2's echo service dies: its RSTs are taken, the check reads refused.
	l.Reals[1].Kill()
	waitHealth(t, d, "echo", echo2, "down", 10*time.Second)
	m2, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v := metric(t, m2, "xlb_packets_total", `verdict="probe_refused"`); v < 2 {
		t.Errorf("xlb_packets_total{verdict=probe_refused} %v, want the fall's 2 at least", v)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if r := realInfo(service(st, "echo"), echo2); r == nil || !strings.Contains(r.HealthError, "connection refused") {
		t.Errorf("status of %s: %+v, want its check refused", echo2, r)
	}
	l.Reals[1].Restart()
	waitHealth(t, d, "echo", echo2, "up", 10*time.Second)
}
