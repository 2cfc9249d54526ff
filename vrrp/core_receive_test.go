package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

// Receive checks and what an accepted advert teaches (see core_test.go).

// TestStateMachineForgedInterval: the interval a VRRPv3 instance learns is
// bounded (issue 11).
func TestStateMachineForgedInterval(t *testing.T) {
	for _, s := range []scenario{{
		// Issue 11: one forged advert with a higher priority and the
		// longest interval. RFC 5798 6.4.2 has the backup wait 3 x 40.95s
		// + 24.95s of skew (150.3s here); learning at most 3 intervals it
		// waits 3 x 3s + 1.82s (156*300/256 cs).
		name: "a forged advert with 40.95s: the backup learns at most 3 intervals",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{1000 * ms, "adv a 10.0.0.2 150", nil, ""},
			{2500 * ms, "adv a 10.0.0.66 200 int=40.95s", []string{"a interval-limit from 10.0.0.66: interval 40.95s, bounded to 3s (3 x 1s)"}, "a=BACKUP"},
			// The real master yielded to it: silence.
			{13319 * ms, "tick", nil, "a=BACKUP"},
			{13320 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name: "a forged advert with 40.95s makes the master yield; it takes over again after 3 bounded intervals",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{3600 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
			{4000 * ms, "adv a 10.0.0.66 255 int=40.95s", append([]string{"a interval-limit from 10.0.0.66: interval 40.95s, bounded to 3s (3 x 1s)"},
				yield...), "a=BACKUP"},
			{14819 * ms, "tick", nil, "a=BACKUP"},
			{14820 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name: "no limit (LearnedIntervalMaxFactor < 0): RFC 5798, 150.3s",
		cfg:  cfgOf(baseInst("a", 100, func(ic *InstanceConfig) { ic.LearnedIntervalMaxFactor = -1 })),
		steps: []step{
			{0, "start", startBackup, ""},
			{2500 * ms, "adv a 10.0.0.66 200 int=40.95s", nil, "a=BACKUP"},
			{150299 * ms, "tick", nil, "a=BACKUP"},
			{150300 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}} {
		t.Run(s.name, s.run)
	}
}

func TestStateMachineReceiveChecks(t *testing.T) {
	cfg := cfgOf(baseInst("a", 100, func(ic *InstanceConfig) {
		ic.Version, ic.AuthPass = 2, "s3cr3t"
		ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	}))
	h := newHarness(t, cfg, nil)
	h.apply(t0, "start")
	for _, tc := range []struct{ input, reason string }{
		{"adv a 10.0.0.3 150 ttl=64", RxPeer}, // a routed TTL is accepted from a peer only
		{"adv a 10.0.0.2 150 ver=3", RxVersion},
		{"adv a 10.0.0.2 150 pass=wrong", RxAuth},
		{"adv a 10.0.0.2 150 auth=0", RxAuth},
		{"adv a 10.0.0.2 150 int=2s", RxInterval},
		{"adv a 10.0.0.2 150 addrs=10.0.0.100,10.0.0.101", RxAddrList},
		{"adv a 10.0.0.2 150 addrs=10.0.0.99", RxAddrList},
		{"adv a 10.0.0.3 150", RxPeer},
	} {
		before := h.c.byName["a"].status()
		if acts := h.apply(t0.Add(time.Second), tc.input); len(acts) != 0 {
			t.Errorf("%s: actions %v", tc.input, acts)
		}
		after := h.c.byName["a"].status()
		for _, r := range RxErrorReasons {
			want := before.RxErrors[r]
			if r == tc.reason {
				want++
			}
			if after.RxErrors[r] != want {
				t.Errorf("%s: rx errors %s = %d, want %d", tc.input, r, after.RxErrors[r], want)
			}
		}
		if after.AdvertsReceived != 0 {
			t.Errorf("%s: counted as received", tc.input)
		}
	}
	// The good one is accepted, and its own packet is ignored.
	h.apply(t0.Add(time.Second), "adv a 10.0.0.2 150")
	h.apply(t0.Add(time.Second), "adv a 10.0.0.1 150")
	if st := h.c.byName["a"].status(); st.AdvertsReceived != 1 || st.MasterAddr != netip.MustParseAddr("10.0.0.2") || st.MasterPriority != 150 {
		t.Fatalf("status after a good advert: %+v", st)
	}
	// Timer was reset by the good advert: 1s + 3.609375s (v2 skew 156/256 s).
	if next := h.c.next(); next != t0.Add(time.Second+3*time.Second+156*time.Second/256) {
		t.Fatalf("next timer at %v", next.Sub(t0))
	}
}

// TestStateMachineTTL: TTL / hop limit 255 is required in multicast mode
// (RFC 5798 7.1); with unicast peers, as keepalived 2.x, any TTL is
// accepted from a configured peer, which may be routed.
func TestStateMachineTTL(t *testing.T) {
	v6 := func(ic *InstanceConfig) { ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("fd00::100/64")}} }
	peer := func(p string) func(*InstanceConfig) {
		return func(ic *InstanceConfig) { ic.UnicastPeers = []netip.Addr{netip.MustParseAddr(p)} }
	}
	for _, tc := range []struct {
		name   string
		inst   InstanceConfig
		local  string
		input  string
		reason string // "" accepted
	}{
		{"multicast, 255", baseInst("a", 100), "10.0.0.1", "adv a 10.0.0.2 150", ""},
		{"multicast, 254", baseInst("a", 100), "10.0.0.1", "adv a 10.0.0.2 150 ttl=254", RxTTL},
		{"multicast, 64", baseInst("a", 100), "10.0.0.1", "adv a 10.0.0.2 150 ttl=64", RxTTL},
		{"multicast IPv6, hop limit 1", baseInst("a", 100, v6), "fe80::1", "adv a fe80::2 150 ttl=1", RxTTL},
		{"unicast peer, 255", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.2 150", ""},
		{"unicast peer, 64", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.2 150 ttl=64", ""},
		{"unicast peer, 1", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.2 150 ttl=1", ""},
		{"unicast, not a peer, 64", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.3 150 ttl=64", RxPeer},
		{"unicast IPv6 peer, hop limit 62", baseInst("a", 100, v6, peer("fd00::2")), "fd00::1", "adv a fd00::2 150 ttl=62", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfgOf(tc.inst), map[string]string{"a": tc.local})
			h.apply(t0, "start")
			h.apply(t0.Add(time.Second), tc.input)
			st := h.c.byName["a"].status()
			for _, r := range RxErrorReasons {
				want := uint64(0)
				if r == tc.reason {
					want = 1
				}
				if st.RxErrors[r] != want {
					t.Errorf("rx errors %s = %d, want %d", r, st.RxErrors[r], want)
				}
			}
			accepted := tc.reason == ""
			if got := st.AdvertsReceived == 1 && st.MasterPriority == 150; got != accepted {
				t.Fatalf("accepted %v, want %v: %+v", got, accepted, st)
			}
			// An accepted advert restarts the Master_Down_Timer (3.6s
			// from the advert at 1s); a rejected one leaves it.
			want := t0.Add(3600 * ms)
			if accepted {
				want = t0.Add(4600 * ms)
			}
			if next := h.c.next(); next != want {
				t.Fatalf("Master_Down_Timer at %v, want %v", next.Sub(t0), want.Sub(t0))
			}
		})
	}
}
