package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
)

// TestDrainVRRP: `xlb drain` on the master of a VRRP pair hands the VIP to
// the backup as SIGTERM does (priority 0), but the daemon stays up and
// keeps its instances released, also across a reload; `xlb undrain` runs
// them again and the master (higher priority, preempt) takes the VIP back.
// No request fails and no long-lived connection breaks (mh: both
// directors hash flows alike).
func TestDrainVRRP(t *testing.T) {
	layouts(t, func(t *testing.T, layout string) {
		l := pairLab(t, lab.Spec{Layout: layout, Scheduler: "mh"})
		d, backup := l.Directors[0], l.Directors[1]
		xlb := func(cmd string) string {
			t.Helper()
			out, err := d.NS.Run(lab.Binary(t), cmd, "--socket", d.Socket)
			if err != nil {
				t.Fatalf("xlb %s: %v: %s", cmd, err, out)
			}
			return out
		}
		tr := startTraffic(t, l)

		drained := time.Now()
		if out := xlb("drain"); !strings.Contains(out, "VRRP") {
			t.Errorf("xlb drain says %q, want the VRRP instances named", out)
		}
		l.WaitMaster(backup, 10*time.Second)
		handover := time.Since(drained)
		waitProgress(t, tr.streams, time.Now(), nil)
		waitRequests(t, tr.load, time.Now(), 30)
		if !d.Running() {
			t.Fatalf("%s exited after xlb drain", d.Name)
		}
		if d.HoldsVIP() {
			t.Errorf("%s still holds the VIP after xlb drain", d.Name)
		}
		// Held released: a reload does not bring the instances back.
		if err := d.Reload(); err != nil {
			t.Fatal(err)
		}
		// Watched for 2 s (three advert intervals of the lab and more).
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if d.HoldsVIP() || !backup.HoldsVIP() {
				t.Fatalf("the VIP moved back while drained (drained director holds it: %v, backup: %v)", d.HoldsVIP(), backup.HoldsVIP())
			}
		}

		undrained := time.Now()
		if out := xlb("undrain"); !strings.Contains(out, "VRRP") {
			t.Errorf("xlb undrain says %q, want the VRRP instances named", out)
		}
		l.WaitMaster(d, 20*time.Second)
		takeBack := time.Since(undrained)
		waitProgress(t, tr.streams, time.Now(), nil)
		waitRequests(t, tr.load, time.Now(), 30)
		o := tr.stop(t)
		t.Logf("%s: drain handed the VIP over in %v, undrain took it back in %v; %s", layout,
			handover.Round(time.Millisecond), takeBack.Round(time.Millisecond), o.LoadReport)
		checkStreams(t, o, nil)
		if o.Failed != 0 {
			t.Errorf("drain and undrain: %d failed requests: %s", o.Failed, o.LoadReport)
		}
	})
}
