package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
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

// TestNATHandbackLateARP: behind NAT the real servers send their replies
// to the gateway address, which moves with the VIP. When the master takes
// the VIP back (preempt after `xlb undrain`), the real servers follow the
// new master's gratuitous ARPs a moment later; meanwhile their replies
// still reach the former master, which must go on translating them
// (vrrp.Event.HandoverUntil: 3 advert intervals and 200ms).
// A former master that stopped forwarding at once let the kernel forward
// the replies untranslated; the client answered them with resets, which
// killed the real servers' connections (TestDrainVRRP/nat failed so,
// when the gratuitous ARPs were late on a loaded machine). Here the real
// servers' ARP entries for the gateway are held on the former master
// until 100ms after it gave the VIP up, as a late gratuitous ARP would.
func TestNATHandbackLateARP(t *testing.T) {
	// 250ms adverts: the hand-over lasts 950ms, the margin for the
	// commands below on a loaded machine.
	l := pairLab(t, lab.Spec{Layout: lab.NAT, Scheduler: "mh", AdvertInt: 250 * time.Millisecond})
	d, backup := l.Directors[0], l.Directors[1]
	xlb := func(cmd string) {
		t.Helper()
		if out, err := d.NS.Run(lab.Binary(t), cmd, "--socket", d.Socket); err != nil {
			t.Fatalf("xlb %s: %v: %s", cmd, err, out)
		}
	}
	tr := startTraffic(t, l)
	xlb("drain")
	l.WaitMaster(backup, 10*time.Second)
	waitProgress(t, tr.streams, time.Now(), nil)

	// The real servers' gateway entry pinned on the backup's MAC: the
	// takeover's gratuitous ARPs do not change a permanent entry.
	mac := strings.Fields(backup.NS.MustRun(t, "cat", "/sys/class/net/eth1/address"))[0]
	neigh := func(lladdr, nud string) {
		for _, r := range l.Reals {
			r.NS.MustRun(t, "ip", "neigh", "replace", l.Gateway.String(), "dev", "eth0", "lladdr", lladdr, "nud", nud)
		}
	}
	neigh(mac, "permanent")
	t.Cleanup(func() {
		for _, r := range l.Reals {
			_, _ = r.NS.Run("ip", "neigh", "del", l.Gateway.String(), "dev", "eth0")
		}
	})

	xlb("undrain")
	l.WaitMaster(d, 20*time.Second)
	nettest.WaitFor(t, 10*time.Second, "the former master gives the VIP up", func() error {
		if backup.HoldsVIP() || backup.HasAddr("eth1", l.Gateway) {
			return fmt.Errorf("%s still holds the VIP or the gateway", backup.Name)
		}
		return nil
	})
	gaveUp := time.Now()
	// The late gratuitous ARP: replies keep going to the former master for
	// 100ms more (a scenario's delay, not a wait for a condition).
	time.Sleep(100 * time.Millisecond)
	mac = strings.Fields(d.NS.MustRun(t, "cat", "/sys/class/net/eth1/address"))[0]
	neigh(mac, "reachable")
	late := time.Since(gaveUp)

	waitProgress(t, tr.streams, time.Now(), nil)
	waitRequests(t, tr.load, time.Now(), 30)
	o := tr.stop(t)
	t.Logf("real servers followed the new master %v after the former master gave the VIP up; %s",
		late.Round(time.Millisecond), o.LoadReport)
	checkStreams(t, o, nil)
	if o.Failed != 0 {
		t.Errorf("%d failed requests: %s", o.Failed, o.LoadReport)
	}
}
