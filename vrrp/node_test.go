package vrrp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// Node tests with a fake clock, network and script runner: the loop, the
// dispatch of packets, events, notify, tracking, reconfigure and shutdown,
// without root. The real drivers are tested in the namespace lab.

func TestNodeElectionEventsNotify(t *testing.T) {
	cfg := cfgOf(nodeInst("a", 100, func(ic *InstanceConfig) {
		ic.Notify = Notify{Master: "/bin/to-master", Backup: "/bin/to-backup", Stop: "/bin/stop", Generic: "/bin/notify"}
	}))
	r := startRig(t, cfg, 0)
	// Tentative until the Master_Down_Timer (3.6s) and a second.
	if ev := r.nextEvent(); ev.From != Init || ev.To != Backup || ev.Reason != ReasonStartup || !ev.At.Equal(t0) ||
		!ev.TentativeUntil.Equal(t0.Add(4600*time.Millisecond)) {
		t.Fatalf("first event %+v", ev)
	}
	// A better master: its adverts keep us backup.
	adv := Advert{Version: 3, VRID: 51, Priority: 200, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100")}}
	r.clock.Advance(3 * time.Second)
	r.net.inject(t, "eth0", false, advertFrom(t, 2, 255, adv))
	waitUntil(t, "advert received", func() bool { return r.status("a").AdvertsReceived == 1 })
	r.clock.Advance(3 * time.Second) // 6s: 3s since the advert, under 3.6s
	// Rejects: bad TTL, unknown VRID, corrupt checksum.
	r.net.inject(t, "eth0", false, advertFrom(t, 2, 64, adv))
	other := adv
	other.VRID = 99
	r.net.inject(t, "eth0", false, advertFrom(t, 2, 255, other))
	bad := advertFrom(t, 2, 255, adv)
	bad[len(bad)-1] ^= 0xff
	r.net.inject(t, "eth0", false, bad)
	waitUntil(t, "rx errors", func() bool {
		e := r.status("a").RxErrors
		return e[RxTTL] == 1 && e[RxVRID] == 1 && e[RxChecksum] == 1
	})
	if r.status("a").State != Backup {
		t.Fatal("took over while the master was alive")
	}
	r.clock.Advance(600 * time.Millisecond) // 6.6s: 3.6s since the advert
	ev := r.nextEvent()
	if ev.From != Backup || ev.To != Master || ev.Reason != ReasonMasterDown || !ev.At.Equal(t0.Add(6600*time.Millisecond)) || ev.Priority != 100 ||
		!ev.TentativeUntil.IsZero() {
		t.Fatalf("takeover event %+v", ev)
	}
	waitUntil(t, "VIP added", func() bool { return r.net.hasAddr("10.0.0.100") })
	waitUntil(t, "advert and GARPs sent", func() bool { return len(r.net.adverts()) >= 1 && len(r.net.sentFrames()) >= 5 })
	a := r.net.adverts()[0]
	if a.Priority != 100 || a.src != netip.MustParseAddr("10.0.0.1") || a.dst != MulticastGroup4 || a.VRID != 51 {
		t.Fatalf("advert %+v", a)
	}
	if f := r.net.sentFrames()[0]; !bytes.Equal(f, garpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.0.0.100"))) {
		t.Fatalf("GARP %x", f)
	}
	waitUntil(t, "notify", func() bool { return len(r.run.ran("/bin/notify")) == 2 })
	if got := r.run.ran("/bin/"); !slices.Equal(got, []string{"/bin/to-backup", "/bin/notify INSTANCE a BACKUP 100",
		"/bin/to-master", "/bin/notify INSTANCE a MASTER 100"}) {
		t.Fatalf("notify runs %q", got)
	}
	// Adverts every second.
	r.clock.Advance(time.Second)
	waitUntil(t, "second advert", func() bool { return len(r.net.adverts()) == 2 })

	// Shutdown: priority 0, VIP removed, notify_stop, Run returns, Events closes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-r.runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The master resigned: forwarding goes on for 3 intervals and 200ms.
	if g := r.node.ResignGrace(); g != 3200*time.Millisecond {
		t.Fatalf("resign grace %v", g)
	}
	sent := r.net.adverts()
	if last := sent[len(sent)-1]; last.Priority != 0 {
		t.Fatalf("last advert priority %d", last.Priority)
	}
	if r.net.hasAddr("10.0.0.100") {
		t.Fatal("VIP left after shutdown")
	}
	if got := r.run.ran("/bin/"); !slices.Contains(got, "/bin/stop") || got[len(got)-1] != "/bin/notify INSTANCE a STOP 100" {
		t.Fatalf("notify runs %q", got)
	}
	if ev := r.nextEvent(); ev.To != Init || ev.Reason != ReasonShutdown {
		t.Fatalf("last event %+v", ev)
	}
	if _, ok := <-r.node.Events(); ok {
		t.Fatal("Events not closed")
	}
	if err := r.node.Reconfigure(cfg); err == nil {
		t.Fatal("Reconfigure after stop succeeded")
	}
}

// TestNodeForgedInterval (issue 11): a forged advert with a higher
// priority and the longest interval, through the receive path: counted
// under interval_limit, logged once for its source, learned as 3 intervals,
// and the backup takes over 3 x 3s + 1.82s after it (RFC 5798 alone: 150s).
func TestNodeForgedInterval(t *testing.T) {
	var logs nettest.SyncBuffer
	r := startRigWith(t, cfgOf(nodeInst("a", 100)), func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if ev := r.nextEvent(); ev.To != Backup {
		t.Fatalf("first event %+v", ev)
	}
	forged := Advert{Version: 3, VRID: 51, Priority: 200, Interval: MaxAdvertIntervalV3, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100")}}
	r.clock.Advance(time.Second)
	for range 2 {
		r.net.inject(t, "eth0", false, advertFrom(t, 66, 255, forged))
	}
	waitUntil(t, "forged adverts counted", func() bool { return r.status("a").RxErrors[RxIntervalLimit] == 2 })
	st := r.status("a")
	if st.AdvertsReceived != 2 || st.MasterPriority != 200 || st.MasterAdvertInterval != 3*time.Second {
		t.Fatalf("status after the forged adverts: %+v", st)
	}
	if n := strings.Count(logs.String(), "advertisement interval above the learned limit"); n != 1 {
		t.Fatalf("logged %d times, want once for the one source:\n%s", n, logs.String())
	}
	r.advanceUntil(Master)
	ev := r.nextEvent()
	if d := ev.At.Sub(t0); ev.To != Master || d < 11820*time.Millisecond || d > 12*time.Second {
		t.Fatalf("takeover %+v, %v after the start, want 11.82s", ev, d)
	}
}

func TestNodeEventsDropOldest(t *testing.T) {
	r := startRig(t, cfgOf(nodeInst("a", 255, func(ic *InstanceConfig) {
		ic.TrackInterfaces = []TrackInterface{{Name: "eth1"}}
	})), 2)
	r.waitState("a", Master)
	for range 3 {
		r.net.setLink(t, "eth1", false)
		r.waitState("a", Fault)
		r.net.setLink(t, "eth1", true)
		r.waitState("a", Backup)
		r.clock.Advance(2 * time.Second) // owner: back to master after 1s + skew
		r.waitState("a", Master)
	}
	// 1 + 3*3 events went into a buffer of 2: the newest two remain.
	a, b := r.nextEvent(), r.nextEvent()
	if a.From != Fault || a.To != Backup || b.From != Backup || b.To != Master {
		t.Fatalf("remaining events %+v %+v", a, b)
	}
	if d := r.node.EventsDropped(); d != 8 {
		t.Fatalf("dropped %d events, want 8", d)
	}
}

func TestNodeTrackScriptAndReconfigure(t *testing.T) {
	cfg := Config{
		Instances: []InstanceConfig{nodeInst("a", 255, func(ic *InstanceConfig) {
			ic.TrackScripts = []TrackScript{{Name: "chk"}}
			ic.Notify.Generic = "/bin/notify"
		})},
		Scripts: []ScriptConfig{{Name: "chk", Script: "/bin/chk", Interval: time.Second}},
	}
	r := startRig(t, cfg, 0)
	r.waitState("a", Master)
	r.run.setFail("/bin/chk", true)
	r.advanceUntil(Fault) // the next script run fails

	if got := r.status("a").Faults; !slices.Equal(got, []string{"script chk failed"}) {
		t.Fatalf("faults %q", got)
	}
	r.run.setFail("/bin/chk", false)
	r.advanceUntil(Master) // through BACKUP: owner takes over after 1s

	// Reload: a new VIP on the master is added and announced; the state
	// is kept.
	cfg2 := cloneConfig(cfg)
	cfg2.Instances[0].VIPs = append(slices.Clone(cfg2.Instances[0].VIPs), VIP{Prefix: netip.MustParsePrefix("10.0.0.101/24")})
	before := r.status("a").Transitions
	if err := r.node.Reconfigure(cfg2); err != nil {
		t.Fatal(err)
	}
	if !r.net.hasAddr("10.0.0.101") || r.status("a").State != Master || r.status("a").Transitions != before {
		t.Fatalf("after reload: vip %v, %+v", r.net.hasAddr("10.0.0.101"), r.status("a"))
	}
	// An invalid config is refused and changes nothing.
	bad := cloneConfig(cfg2)
	bad.Instances = append(bad.Instances, nodeInst("b", 100, func(ic *InstanceConfig) { ic.AuthType = AuthAH }))
	if err := r.node.Reconfigure(bad); !errors.Is(err, ErrAHNotSupported) {
		t.Fatalf("AH reload: %v", err)
	}
	// A config whose interface does not exist is refused too.
	missing := cloneConfig(cfg2)
	missing.Instances = append(missing.Instances, nodeInst("c", 100, func(ic *InstanceConfig) {
		ic.Interface, ic.VRID = "eth9", 60
		ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.9.0.100/24")}}
	}))
	if err := r.node.Reconfigure(missing); err == nil || !strings.Contains(err.Error(), "eth9") {
		t.Fatalf("reload with a missing interface: %v", err)
	}
	if len(r.node.Status()) != 1 {
		t.Fatalf("failed reload changed the instances: %+v", r.node.Status())
	}
	// Removing the instance: priority 0, VIPs removed, DELETED.
	if err := r.node.Reconfigure(Config{}); err != nil {
		t.Fatal(err)
	}
	if r.net.hasAddr("10.0.0.100") || r.net.hasAddr("10.0.0.101") {
		t.Fatal("VIPs left after removal")
	}
	sent := r.net.adverts()
	if sent[len(sent)-1].Priority != 0 {
		t.Fatal("no priority 0 on removal")
	}
	waitUntil(t, "DELETED notify", func() bool { return slices.Contains(r.run.ran("/bin/notify"), "/bin/notify INSTANCE a DELETED 255") })
}

func TestNodeSplitBrainFromFrames(t *testing.T) {
	r := startRig(t, cfgOf(nodeInst("a", 255, func(ic *InstanceConfig) { ic.Notify.Fault = "/bin/fault" })), 0)
	r.waitState("a", Master)
	foreign := net.HardwareAddr{2, 9, 9, 9, 9, 9}
	vip := netip.MustParseAddr("10.0.0.100")
	// Our own MAC never counts.
	r.net.injectFrame(t, "eth0", garpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, vip))
	// Another station's GARP starts a probe round...
	r.net.injectFrame(t, "eth0", garpFrame(foreign, vip))
	probe := arpProbeFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, vip)
	waitUntil(t, "probe", func() bool {
		return slices.ContainsFunc(r.net.sentFrames(), func(f []byte) bool { return bytes.Equal(f, probe) })
	})
	// ...and answers are the evidence. Rounds run on the fake clock: keep
	// answering while moving time until a round has judged.
	reply := arpFrame(arpReply, net.HardwareAddr{2, 0, 0, 0, 0, 1}, foreign, vip, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.IPv4Unspecified())
	waitUntil(t, "split brain", func() bool {
		r.net.injectFrame(t, "eth0", reply)
		r.clock.Advance(50 * time.Millisecond)
		s := r.status("a")
		return s.SplitBrain && s.SplitBrainCount == 1
	})
	waitUntil(t, "notify_fault", func() bool { return len(r.run.ran("/bin/fault")) == 1 })
	// No more answers: healed, VIPs re-announced.
	n := len(r.net.sentFrames())
	waitUntil(t, "heal", func() bool {
		r.clock.Advance(50 * time.Millisecond)
		return !r.status("a").SplitBrain
	})
	if c := r.status("a").SplitBrainCount; c != 1 {
		t.Fatalf("split brain count %d", c)
	}
	waitUntil(t, "re-announce", func() bool {
		garp := garpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, vip)
		return slices.ContainsFunc(r.net.sentFrames()[n:], func(f []byte) bool { return bytes.Equal(f, garp) })
	})
}

func TestNodeBeforeMaster(t *testing.T) {
	type call struct {
		ev       Event
		vipAdded bool
		state    State
	}
	calls := make(chan call, 4)
	var r *nodeRig
	ready := make(chan struct{})
	r = startRig(t, cfgOf(nodeInst("a", 100)), 0, func(ev Event) {
		<-ready
		// The VIP is not there yet, and Status works from the hook.
		calls <- call{ev, r.net.hasAddr("10.0.0.100"), r.node.Status()[0].State}
	})
	close(ready)
	r.waitState("a", Backup)
	r.advanceUntil(Master)
	c := <-calls
	if c.ev.Instance != "a" || c.ev.From != Backup || c.ev.To != Master || c.vipAdded || c.state != Master {
		t.Fatalf("BeforeMaster call %+v", c)
	}
	waitUntil(t, "VIP added after the hook", func() bool { return r.net.hasAddr("10.0.0.100") })
}

// TestNodeRxErrorCounters: packets rejected by the decoder (type, length,
// zero interval) and IPv4 datagrams that are no whole VRRP packet
// (fragments, truncated, bad header length) go through the node's receive
// path, the one the Linux socket feeds, and count under their reason: on
// the instance of their VRID, or on every instance of the interface when
// the VRID cannot be read.
func TestNodeRxErrorCounters(t *testing.T) {
	b := func(ic *InstanceConfig) {
		ic.VRID, ic.VIPs = 52, []VIP{{Prefix: netip.MustParsePrefix("10.0.0.101/24")}}
	}
	r := startRig(t, cfgOf(nodeInst("a", 100), nodeInst("b", 100, b)), 0)
	r.waitState("a", Backup)
	src := netip.MustParseAddr("10.0.0.2")
	// good is a valid advert for a (VRID 51); mod changes its bytes, after
	// which the checksum is made right again.
	good := func(mod func([]byte) []byte) []byte {
		a := Advert{Version: 3, VRID: 51, Priority: 200, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100")}}
		p, err := a.Marshal(src, MulticastGroup4)
		if err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			p = mod(p)
			p[6], p[7] = 0, 0
			binary.BigEndian.PutUint16(p[6:8], checksum16(pseudoHeaderSum(src, MulticastGroup4, IPProtoVRRP, len(p)), p))
		}
		return p
	}
	fragment := func(h []byte) { binary.BigEndian.PutUint16(h[6:8], 0x2000) } // more fragments
	type want map[string]map[string]uint64
	for _, tc := range []struct {
		name string
		pkt  []byte
		want want // counters that move, per instance
	}{
		{"type 2", ipv4Datagram(src, good(func(p []byte) []byte { p[0] = 0x32; return p }), nil), want{"a": {RxType: 1}}},
		{"address count above the length", ipv4Datagram(src, good(func(p []byte) []byte { p[3] = 2; return p }), nil), want{"a": {RxLength: 1}}},
		{"trailing byte", ipv4Datagram(src, good(func(p []byte) []byte { return append(p, 0) }), nil), want{"a": {RxLength: 1}}},
		{"shorter than the header", ipv4Datagram(src, good(nil)[:6], nil), want{"a": {RxLength: 1}}},
		{"zero interval", ipv4Datagram(src, good(func(p []byte) []byte { p[4], p[5] = 0, 0; return p }), nil), want{"a": {RxInterval: 1}}},
		{"one byte: no VRID", ipv4Datagram(src, good(nil)[:1], nil), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"first fragment", ipv4Datagram(src, good(nil), fragment), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"later fragment", ipv4Datagram(src, good(nil), func(h []byte) { binary.BigEndian.PutUint16(h[6:8], 3) }), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"truncated datagram", ipv4Datagram(src, good(nil), func(h []byte) { binary.BigEndian.PutUint16(h[2:4], 60) }), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"header length under 20", ipv4Datagram(src, good(nil), func(h []byte) { h[0] = 0x44 }), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"not VRRP: skipped", ipv4Datagram(src, good(nil), func(h []byte) { h[9] = 17 }), want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]InstanceStatus{"a": r.status("a"), "b": r.status("b")}
			r.net.inject(t, "eth0", false, tc.pkt)
			// Packets are handled in order: once a valid advert that
			// follows is counted, the one under test was handled.
			r.net.inject(t, "eth0", false, ipv4Datagram(src, good(nil), nil))
			waitUntil(t, "the next advert", func() bool { return r.status("a").AdvertsReceived == before["a"].AdvertsReceived+1 })
			for _, name := range []string{"a", "b"} {
				st := r.status(name)
				for _, reason := range RxErrorReasons {
					if got, want := st.RxErrors[reason]-before[name].RxErrors[reason], tc.want[name][reason]; got != want {
						t.Errorf("%s: %s counted %d times, want %d", name, reason, got, want)
					}
				}
			}
			if n := r.status("b").AdvertsReceived; n != 0 {
				t.Errorf("b accepted %d adverts", n)
			}
		})
	}
	// The datagrams carried the source and TTL of their IPv4 header.
	if st := r.status("a"); st.MasterAddr != src || st.RxErrors[RxTTL] != 0 {
		t.Fatalf("status %+v", st)
	}
}
