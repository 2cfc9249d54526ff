package vrrp_test

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/vrrp"
)

// TestLabKeepalived: mixed pairs with Debian's keepalived in both roles.
func TestLabKeepalived(t *testing.T) {
	t.Parallel()
	requireKeepalived(t)
	const iv = 100 * time.Millisecond

	t.Run("xlb master, keepalived backup", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		ka := startKeepalived(t, "keepalived-n2", n2, kaConf{prio: 100, iv: iv, version: 3}.String())
		waitAddr(t, n2, labVIP, true, masterDown(iv)+3*time.Second)
		// xlb preempts keepalived...
		x := startXLB(t, "xlb-n1", n1, xlbInst(150, iv))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		waitAddr(t, n2, labVIP, false, 2*time.Second)
		ka.waitState(t, "VI_1", vrrp.Backup, 2*time.Second)
		l.ping(t, labVIP)
		// ...keepalived follows xlb's adverts (no takeover for a while)...
		time.Sleep(10 * iv)
		if hasAddr(n2, labVIP) {
			t.Fatal("keepalived took the VIP from a live xlb master")
		}
		// ...takes over when xlb dies...
		killed := time.Now()
		x.kill()
		at := l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv)+time.Second)
		t.Logf("keepalived took over %v after xlb's SIGKILL", at.Sub(killed))
		// ...xlb comes back and preempts...
		x = startXLB(t, "xlb-n1-again", n1, xlbInst(150, iv))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		waitAddr(t, n2, labVIP, false, 2*time.Second)
		// ...and a graceful stop hands over with priority 0. At 100ms
		// keepalived's Master_Down_Interval (0.36s) is too close to its
		// Skew_Time (0.06s) for the clock to tell them apart: keepalived
		// must say it received the priority 0 advert (it logs it with
		// -D), and only then take over.
		const prio0 = "(VI_1) Backup received priority 0 advertisement"
		before := ka.logCount(prio0)
		stopped := time.Now()
		x.stop(t)
		at = l.garpFrom(t, l.macs[1], labVIP, stopped, masterDown(iv))
		t.Logf("keepalived took over %v after xlb's SIGTERM", at.Sub(stopped))
		ka.waitState(t, "VI_1", vrrp.Master, time.Second)
		if n := ka.logCount(prio0); n != before+1 {
			t.Errorf("keepalived logged %q %d times after xlb's graceful stop, want once", prio0, n-before)
		}
		if hasAddr(n1, labVIP) {
			t.Error("xlb kept the VIP after a graceful stop")
		}
	})

	t.Run("keepalived master, xlb backup", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		ka := startKeepalived(t, "keepalived-n1", n1, kaConf{prio: 150, iv: iv, version: 3}.String())
		waitAddr(t, n1, labVIP, true, masterDown(iv)+3*time.Second)
		x := startXLB(t, "xlb-n2", n2, xlbInst(100, iv))
		x.waitState(t, "vi", vrrp.Backup, 2*time.Second)
		nettest.WaitFor(t, 3*time.Second, "xlb accepting keepalived's adverts", func() error {
			st := x.instStatus(t, "vi")
			if st.AdvertsReceived < 5 || st.MasterPriority != 150 || st.MasterAddr != netip.MustParseAddr("10.77.0.1") {
				return fmt.Errorf("%+v", st)
			}
			for r, n := range st.RxErrors {
				if n != 0 {
					return fmt.Errorf("%d rejected for %s", n, r)
				}
			}
			return nil
		})
		if x.state("vi") != vrrp.Backup || hasAddr(n2, labVIP) {
			t.Fatal("xlb took over from a live keepalived master")
		}
		killed := time.Now()
		ka.kill()
		at := l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv)+time.Second)
		x.waitState(t, "vi", vrrp.Master, time.Second)
		t.Logf("xlb took over %v after keepalived's SIGKILL", at.Sub(killed))
		// keepalived comes back with its higher priority and preempts.
		// It starts with the VIP still configured from the killed run.
		ka = startKeepalived(t, "keepalived-n1-again", n1, kaConf{prio: 150, iv: iv, version: 3}.String())
		x.waitState(t, "vi", vrrp.Backup, masterDown(iv)+3*time.Second)
		if ev, _ := x.lastEvent("vi", vrrp.Backup); ev.Reason != vrrp.ReasonHigherPriority {
			t.Errorf("xlb yielded for %q", ev.Reason)
		}
		waitAddr(t, n2, labVIP, false, time.Second)
		waitAddr(t, n1, labVIP, true, 2*time.Second)
		// keepalived's graceful stop: priority 0.
		stopped := time.Now()
		ka.stop(t)
		at = l.garpFrom(t, l.macs[1], labVIP, stopped, masterDown(iv))
		x.waitState(t, "vi", vrrp.Master, time.Second)
		if ev, _ := x.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
			t.Errorf("xlb took over for %q, want %q", ev.Reason, vrrp.ReasonPriorityZero)
		}
		t.Logf("xlb took over %v after keepalived's SIGTERM", at.Sub(stopped))
	})

	t.Run("VRRPv2 with password, unicast", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		// keepalived's unicast adverts leave with TTL 64, as they would
		// arrive from a routed peer: in unicast mode keepalived does not
		// require 255, nor does xlb.
		startKeepalived(t, "keepalived-n1", n1, kaConf{prio: 150, iv: time.Second, version: 2, pass: "s3cr3t",
			state: "MASTER", src: "10.77.0.1", peers: []string{"10.77.0.2"}, ttl: 64}.String())
		waitAddr(t, n1, labVIP, true, 6*time.Second)
		x := startXLB(t, "xlb-n2", n2, xlbInst(100, time.Second, func(ic *vrrp.InstanceConfig) {
			ic.Version, ic.AuthPass = 2, "s3cr3t"
			ic.UnicastSrc = netip.MustParseAddr("10.77.0.2")
			ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("10.77.0.1")}
		}))
		nettest.WaitFor(t, 5*time.Second, "xlb accepting keepalived's v2 adverts", func() error {
			st := x.instStatus(t, "vi")
			if st.AdvertsReceived < 2 || st.State != vrrp.Backup {
				return fmt.Errorf("%+v", st)
			}
			for r, n := range st.RxErrors {
				if n != 0 {
					return fmt.Errorf("%d rejected for %s", n, r)
				}
			}
			return nil
		})
		// xlb's v2 unicast adverts convince keepalived too: raise xlb
		// above it and keepalived yields.
		if err := x.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-x.done
		x = startXLB(t, "xlb-n2-high", n2, xlbInst(200, time.Second, func(ic *vrrp.InstanceConfig) {
			ic.Version, ic.AuthPass = 2, "s3cr3t"
			ic.UnicastSrc = netip.MustParseAddr("10.77.0.2")
			ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("10.77.0.1")}
		}))
		x.waitState(t, "vi", vrrp.Master, 6*time.Second)
		waitAddr(t, n1, labVIP, false, 3*time.Second)
	})

	// nopreempt is set on the node that would preempt: the one with the
	// higher priority, when it comes back while a lower one is master.
	// Either implementation on that side must then leave the master alone.
	t.Run("nopreempt on the returning higher-priority node", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		x := startXLB(t, "xlb-n1", n1, xlbInst(100, iv))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		// keepalived 150 with nopreempt joins xlb 100: it stays backup
		// (without nopreempt it would take over after 0.36s)...
		ka := startKeepalived(t, "keepalived-n2", n2, kaConf{prio: 150, iv: iv, version: 3, nopreempt: true}.String())
		ka.waitState(t, "VI_1", vrrp.Backup, 3*time.Second)
		holdFor(t, 20*iv, "keepalived nopreempt", func() error {
			if x.state("vi") != vrrp.Master || ka.state("VI_1") != vrrp.Backup || hasAddr(n2, labVIP) {
				return fmt.Errorf("xlb %s, keepalived %s, keepalived has the VIP: %v", x.state("vi"), ka.state("VI_1"), hasAddr(n2, labVIP))
			}
			return nil
		})
		// ...and takes over when xlb dies.
		x.kill()
		ka.waitState(t, "VI_1", vrrp.Master, masterDown(iv)+time.Second)
		waitAddr(t, n2, labVIP, true, time.Second)
		// xlb 200 with NoPreempt comes back to keepalived 150: it stays
		// backup, following keepalived's adverts...
		x = startXLB(t, "xlb-n1-again", n1, xlbInst(200, iv, func(ic *vrrp.InstanceConfig) { ic.NoPreempt = true }))
		x.waitState(t, "vi", vrrp.Backup, 2*time.Second)
		holdFor(t, 20*iv, "xlb NoPreempt", func() error {
			if x.state("vi") != vrrp.Backup || ka.state("VI_1") != vrrp.Master || hasAddr(n1, labVIP) {
				return fmt.Errorf("xlb %s, keepalived %s, xlb has the VIP: %v", x.state("vi"), ka.state("VI_1"), hasAddr(n1, labVIP))
			}
			return nil
		})
		if st := x.instStatus(t, "vi"); st.AdvertsReceived < 10 || st.MasterPriority != 150 {
			t.Fatalf("xlb status %+v", st)
		}
		// ...until keepalived leaves.
		ka.stop(t)
		x.waitState(t, "vi", vrrp.Master, masterDown(iv))
		if ev, _ := x.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
			t.Errorf("xlb took over for %q, want %q", ev.Reason, vrrp.ReasonPriorityZero)
		}
		waitAddr(t, n1, labVIP, true, time.Second)
	})

	t.Run("IPv6", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 2)
		n1, n2 := l.nodes[0], l.nodes[1]
		ka := startKeepalived(t, "keepalived-n2", n2, kaConf{prio: 100, iv: iv, version: 3, vip: labVIP6 + "/64"}.String())
		waitAddr(t, n2, labVIP6, true, masterDown(iv)+3*time.Second)
		// xlb hears keepalived's lower-priority IPv6 adverts, preempts,
		// and keepalived accepts xlb's adverts and yields.
		x := startXLB(t, "xlb-n1", n1, xlbInst(150, iv, v6))
		x.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
		waitAddr(t, n2, labVIP6, false, 2*time.Second)
		ka.waitState(t, "VI_1", vrrp.Backup, 2*time.Second)
		st := x.instStatus(t, "vi")
		if st.AdvertsReceived == 0 || !st.LocalAddr.IsLinkLocalUnicast() {
			t.Fatalf("xlb status %+v", st)
		}
		for r, n := range st.RxErrors {
			if n != 0 {
				t.Errorf("xlb rejected %d adverts for %s", n, r)
			}
		}
		nettest.WaitFor(t, 3*time.Second, "ping6 the VIP", func() error {
			_, err := l.client.Run("ping", "-6", "-c1", "-W1", labVIP6)
			return err
		})
		x.kill()
		waitAddr(t, n2, labVIP6, true, masterDown(iv)+time.Second)
	})
}
