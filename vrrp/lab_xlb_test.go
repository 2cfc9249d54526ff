package vrrp_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/vrrp"
)

// Lab tests of xlb nodes among themselves.

// TestLabXLBPair: election, SIGKILL of the master, return of the higher
// priority (preempt), graceful stop (priority 0), at 100ms and at the v3
// minimum of 10ms.
func TestLabXLBPair(t *testing.T) {
	t.Parallel()
	for _, iv := range []time.Duration{100 * time.Millisecond, 10 * time.Millisecond} {
		t.Run(iv.String(), func(t *testing.T) {
			t.Parallel()
			l := newLab(t, 2)
			n1, n2 := l.nodes[0], l.nodes[1]
			b := startXLB(t, "xlb-n2", n2, xlbInst(100, iv))
			b.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
			a := startXLB(t, "xlb-n1", n1, xlbInst(150, iv))
			a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
			b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
			if ev, _ := b.lastEvent("vi", vrrp.Backup); ev.Reason != vrrp.ReasonHigherPriority {
				t.Errorf("n2 went back to BACKUP for %q, want %q", ev.Reason, vrrp.ReasonHigherPriority)
			}
			waitAddr(t, n1, labVIP, true, 2*time.Second)
			waitAddr(t, n2, labVIP, false, 2*time.Second)
			l.ping(t, labVIP)
			if mac := l.clientNeigh(labVIP); mac != l.macs[0].String() {
				t.Fatalf("client has %s for the VIP, want n1's %s", mac, l.macs[0])
			}

			// SIGKILL the master: n2 takes over and tells the client.
			killed := time.Now()
			a.kill()
			at := l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv)+2*time.Second)
			b.waitState(t, "vi", vrrp.Master, time.Second)
			if ev, _ := b.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonMasterDown {
				t.Errorf("n2 took over for %q, want %q", ev.Reason, vrrp.ReasonMasterDown)
			}
			t.Logf("failover after SIGKILL: %v (Master_Down_Interval %v)", at.Sub(killed), 3*iv+156*iv/256)
			waitAddr(t, n2, labVIP, true, time.Second)
			l.ping(t, labVIP)

			// The killed node left its VIP; a restart removes it and
			// preempts n2.
			a = startXLB(t, "xlb-n1-again", n1, xlbInst(150, iv))
			a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
			b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
			waitAddr(t, n2, labVIP, false, 2*time.Second)

			// Graceful stop: priority 0, n2 takes over after Skew_Time.
			stopped := time.Now()
			a.stop(t)
			l.garpFrom(t, l.macs[1], labVIP, stopped, masterDown(iv))
			b.waitState(t, "vi", vrrp.Master, time.Second)
			if ev, _ := b.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
				t.Errorf("n2 took over for %q, want %q", ev.Reason, vrrp.ReasonPriorityZero)
			}
			if hasAddr(n1, labVIP) {
				t.Error("n1 kept the VIP after a graceful stop")
			}
			st := b.instStatus(t, "vi")
			if st.AdvertsReceived == 0 || st.PriorityZeroReceived == 0 {
				t.Errorf("n2 counters: %+v", st)
			}
			for r, n := range st.RxErrors {
				if n != 0 {
					t.Errorf("n2 rejected %d adverts for %s", n, r)
				}
			}
		})
	}
}

// TestLabNoPreempt: a higher-priority node with nopreempt does not take
// over from a live master, but does when it dies.
func TestLabNoPreempt(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	l := newLab(t, 2)
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv))
	b.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, func(ic *vrrp.InstanceConfig) { ic.NoPreempt = true }))
	a.waitState(t, "vi", vrrp.Backup, 2*time.Second)
	// Twenty intervals, well past its Master_Down_Interval: still backup.
	holdFor(t, 20*iv, "nopreempt", func() error {
		if a.state("vi") != vrrp.Backup || b.state("vi") != vrrp.Master {
			return fmt.Errorf("n1 %s, n2 %s", a.state("vi"), b.state("vi"))
		}
		return nil
	})
	b.kill()
	a.waitState(t, "vi", vrrp.Master, masterDown(iv))
	waitAddr(t, l.nodes[0], labVIP, true, time.Second)
}

// TestLabUnicast: unicast_src_ip and unicast_peers, with multicast VRRP
// dropped by nftables in both nodes.
func TestLabUnicast(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	l := newLab(t, 2)
	for _, ns := range l.nodes {
		nft(t, ns, "add table inet xlbt",
			"add chain inet xlbt out { type filter hook output priority 0 ; }",
			"add chain inet xlbt in { type filter hook input priority 0 ; }",
			"add rule inet xlbt out ip daddr 224.0.0.18 drop",
			"add rule inet xlbt in ip daddr 224.0.0.18 drop")
	}
	uni := func(src, peer string) func(*vrrp.InstanceConfig) {
		return func(ic *vrrp.InstanceConfig) {
			ic.UnicastSrc = netip.MustParseAddr(src)
			ic.UnicastPeers = []netip.Addr{netip.MustParseAddr(peer)}
		}
	}
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, uni("10.77.0.1", "10.77.0.2")))
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv, uni("10.77.0.2", "10.77.0.1")))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
	// n2 stays backup: it hears n1's unicast adverts.
	nettest.WaitFor(t, 5*time.Second, "n2 receiving adverts", func() error {
		if st := b.instStatus(t, "vi"); st.AdvertsReceived < 10 {
			return fmt.Errorf("%d adverts", st.AdvertsReceived)
		}
		return nil
	})
	if b.state("vi") != vrrp.Backup {
		t.Fatalf("n2 is %s", b.state("vi"))
	}
	killed := time.Now()
	a.kill()
	l.garpFrom(t, l.macs[1], labVIP, killed, masterDown(iv))
	b.waitState(t, "vi", vrrp.Master, time.Second)
}

// TestLabAuthMismatch: VRRPv2 adverts with another password are ignored
// and counted; both nodes end up master.
func TestLabAuthMismatch(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	v2 := func(pass string) func(*vrrp.InstanceConfig) {
		return func(ic *vrrp.InstanceConfig) { ic.Version, ic.AuthPass, ic.InitialState = 2, pass, vrrp.Master }
	}
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, time.Second, v2("right")))
	a.waitState(t, "vi", vrrp.Master, 4*time.Second)
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, time.Second, v2("wrong")))
	b.waitState(t, "vi", vrrp.Master, 8*time.Second)
	st := b.instStatus(t, "vi")
	if st.RxErrors[vrrp.RxAuth] == 0 || st.AdvertsReceived != 0 {
		t.Fatalf("n2 auth errors %d, adverts accepted %d", st.RxErrors[vrrp.RxAuth], st.AdvertsReceived)
	}
	if a.state("vi") != vrrp.Master {
		t.Fatalf("n1 is %s", a.state("vi"))
	}
}

func nft(t testing.TB, ns *nettest.NS, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		ns.MustRun(t, "nft", strings.Fields(c)...)
	}
}

// TestLabSplitBrain: VRRP blocked between the nodes by nftables makes two
// masters; the higher one, xlb, detects it (status, notify_fault) from the
// other's GARP and its ARP probes; when VRRP flows again the other yields
// and xlb re-announces at once, so the client that had followed the other
// node comes back within one advert interval. The other master is xlb or,
// as in a migration pair, keepalived.
func TestLabSplitBrain(t *testing.T) {
	t.Parallel()
	t.Run("xlb", func(t *testing.T) {
		t.Parallel()
		splitBrain(t, false)
	})
	t.Run("keepalived", func(t *testing.T) {
		t.Parallel()
		requireKeepalived(t)
		splitBrain(t, true)
	})
}

func splitBrain(t *testing.T, keepalived bool) {
	// A third of the interval is a probe round: the heal is declared one
	// or two rounds after the other yields.
	const iv = time.Second
	l := newLab(t, 2)
	dir := t.TempDir()
	flag := filepath.Join(dir, "fault-n1")
	// The heal's re-announce is the only GARP n1 sends once master: no
	// second burst, and none when it hears the other's lower-priority
	// adverts (LowerPrioRepeat, which would also re-announce at the heal).
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, func(ic *vrrp.InstanceConfig) {
		ic.Notify.Fault = "touch " + flag
		ic.SplitBrainProbeInterval = 500 * time.Millisecond
		ic.GARP.MasterDelay, ic.GARP.LowerPrioRepeat = -1, -1
	}))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	// other is n2's instance; yielded is when it last went to BACKUP.
	var other *proc
	inst := "vi"
	if keepalived {
		// No second GARP burst 5s after its takeover: only xlb's
		// announcements may move the client once healed.
		inst = "VI_1"
		other = startKeepalived(t, "keepalived-n2", l.nodes[1],
			kaConf{prio: 100, iv: iv, version: 3, global: "  vrrp_garp_master_delay 0\n"}.String())
	} else {
		other = startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv))
	}
	other.waitState(t, inst, vrrp.Backup, 2*time.Second)
	l.ping(t, labVIP)

	for _, ns := range l.nodes {
		nft(t, ns, "add table inet xlbt",
			"add chain inet xlbt out { type filter hook output priority 0 ; }",
			"add chain inet xlbt in { type filter hook input priority 0 ; }",
			"add rule inet xlbt out ip protocol vrrp drop",
			"add rule inet xlbt in ip protocol vrrp drop")
	}
	other.waitState(t, inst, vrrp.Master, masterDown(iv)+2*time.Second)
	// The client followed n2's gratuitous ARP.
	nettest.WaitFor(t, 5*time.Second, "client following n2", func() error {
		if mac := l.clientNeigh(labVIP); mac != l.macs[1].String() {
			return fmt.Errorf("client has %q", mac)
		}
		return nil
	})
	nettest.WaitFor(t, 5*time.Second, "split brain seen by n1", func() error {
		st := a.instStatus(t, "vi")
		if !st.SplitBrain || st.SplitBrainCount == 0 {
			return fmt.Errorf("split brain %v count %d", st.SplitBrain, st.SplitBrainCount)
		}
		if _, err := os.Stat(flag); err != nil {
			return fmt.Errorf("notify_fault not run: %w", err)
		}
		return nil
	})
	if a.state("vi") != vrrp.Master {
		t.Fatalf("n1 is %s", a.state("vi"))
	}

	// Heal: n2 hears n1 and yields; n1 re-announces once its probes go
	// unanswered, that is after the yield and within one interval.
	healed := time.Now()
	for _, ns := range l.nodes {
		nft(t, ns, "delete table inet xlbt")
	}
	other.waitState(t, inst, vrrp.Backup, masterDown(iv))
	// xlb's event carries the time of the decision; keepalived's is when
	// its log line was read, a little later.
	yield, _ := other.lastEvent(inst, vrrp.Backup)
	garp := l.garpFrom(t, l.macs[0], labVIP, healed, 5*time.Second)
	d := garp.Sub(yield.At)
	t.Logf("heal: n2 yielded %v after the unblock, n1's GARP reached the client %v after the yield", yield.At.Sub(healed), d)
	if d < 0 || d >= iv {
		t.Errorf("re-announce %v after the other master yielded, want after it and within one interval (%v)", d, iv)
	}
	nettest.WaitFor(t, 2*time.Second, "client back on n1", func() error {
		if mac := l.clientNeigh(labVIP); mac != l.macs[0].String() {
			return fmt.Errorf("client has %q", mac)
		}
		return nil
	})
	nettest.WaitFor(t, 5*time.Second, "split brain cleared on n1", func() error {
		if st := a.instStatus(t, "vi"); st.SplitBrain {
			return fmt.Errorf("still flagged")
		}
		return nil
	})
	l.ping(t, labVIP)
	if keepalived && hasAddr(l.nodes[1], labVIP) {
		t.Error("keepalived kept the VIP after yielding")
	}
}

// TestLabVMAC: use_vmac puts the VIP on a macvlan with the VRRP virtual
// MAC; the client's ARP entry and the master's GARPs use that MAC, so a
// failover needs no ARP change at all.
func TestLabVMAC(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	vmac := net.HardwareAddr{0, 0, 0x5e, 0, 1, 51}
	l := newLab(t, 2)
	withVMAC := func(ic *vrrp.InstanceConfig) { ic.UseVMAC = true }
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv, withVMAC))
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv, withVMAC))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	b.waitState(t, "vi", vrrp.Backup, 2*time.Second)
	out := l.nodes[0].MustRun(t, "ip", "-o", "addr", "show", "dev", "vrrp.51")
	if !strings.Contains(out, " "+labVIP+"/") {
		t.Fatalf("VIP not on vrrp.51: %s", out)
	}
	if got := macOf(t, l.nodes[0], "vrrp.51"); !bytes.Equal(got, vmac) {
		t.Fatalf("vrrp.51 has MAC %s, want %s", got, vmac)
	}
	l.ping(t, labVIP)
	if mac := l.clientNeigh(labVIP); mac != vmac.String() {
		t.Fatalf("client resolved the VIP to %s, want the virtual MAC %s", mac, vmac)
	}
	killed := time.Now()
	a.kill()
	l.garpFrom(t, vmac, labVIP, killed, masterDown(iv)+time.Second)
	b.waitState(t, "vi", vrrp.Master, time.Second)
	l.ping(t, labVIP)
	b.stop(t)
	if _, err := l.nodes[1].Run("ip", "link", "show", "vrrp.51"); err == nil {
		t.Error("vrrp.51 left behind after a graceful stop")
	}
}

// TestLabTracking: a tracked link (netlink) and a track script put
// the master in FAULT and back; notify scripts run with keepalived's
// arguments.
func TestLabTracking(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	l := newLab(t, 2)
	n1 := l.nodes[0]
	// trk0 loses its carrier when its peer trk1 goes down.
	n1.MustRun(t, "ip", "link", "add", "trk0", "type", "veth", "peer", "name", "trk1")
	n1.MustRun(t, "ip", "link", "set", "trk0", "up")
	n1.MustRun(t, "ip", "link", "set", "trk1", "up")
	dir := t.TempDir()
	okFile, log := filepath.Join(dir, "ok"), filepath.Join(dir, "notify.log")
	if err := os.WriteFile(okFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Commands run without a shell: the redirection is in a script.
	notify := filepath.Join(dir, "notify")
	if err := os.WriteFile(notify, []byte("#!/bin/sh\necho \"$@\" >>"+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := xlbInst(150, iv, func(ic *vrrp.InstanceConfig) {
		ic.TrackInterfaces = []vrrp.TrackInterface{{Name: "trk0"}}
		ic.TrackScripts = []vrrp.TrackScript{{Name: "chk"}}
		ic.Notify.Generic = notify
	})
	cfg.Scripts = []vrrp.ScriptConfig{{Name: "chk", Script: "test -e " + okFile, Interval: 100 * time.Millisecond}}
	a := startXLB(t, "xlb-n1", n1, cfg)
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	b.waitState(t, "vi", vrrp.Backup, 2*time.Second)

	n1.MustRun(t, "ip", "link", "set", "trk1", "down")
	a.waitState(t, "vi", vrrp.Fault, 2*time.Second)
	b.waitState(t, "vi", vrrp.Master, 2*time.Second) // n1 resigned with priority 0
	if ev, _ := b.lastEvent("vi", vrrp.Master); ev.Reason != vrrp.ReasonPriorityZero {
		t.Errorf("n2 took over for %q", ev.Reason)
	}
	n1.MustRun(t, "ip", "link", "set", "trk1", "up")
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)

	if err := os.Remove(okFile); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "vi", vrrp.Fault, 3*time.Second)
	if st := a.instStatus(t, "vi"); len(st.Faults) != 1 || st.Faults[0] != "script chk failed" {
		t.Errorf("faults %q", st.Faults)
	}
	if err := os.WriteFile(okFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+3*time.Second)
	nettest.WaitFor(t, 5*time.Second, "notify log", func() error {
		raw, _ := os.ReadFile(log)
		want := "INSTANCE vi BACKUP 150\nINSTANCE vi MASTER 150\nINSTANCE vi FAULT 150\nINSTANCE vi BACKUP 150\nINSTANCE vi MASTER 150\n" +
			"INSTANCE vi FAULT 150\nINSTANCE vi BACKUP 150\nINSTANCE vi MASTER 150\n"
		if string(raw) != want {
			return fmt.Errorf("notify log:\n%s", raw)
		}
		return nil
	})
}
