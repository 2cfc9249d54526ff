package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

// TestStartupBackupTentative: the BACKUP entered at start-up is tentative
// until the instance's own Master_Down_Timer runs out, plus a margin
// (Event.TentativeUntil); no other transition is. The daemon used to take
// 3 intervals plus 1s, before the timer for a long VRRPv3 interval.
func TestStartupBackupTentative(t *testing.T) {
	for _, tc := range []struct {
		name string
		inst InstanceConfig
		want time.Duration // after the start
	}{
		{"Master_Down_Interval 3.6s", baseInst("a", 100), 3600*ms + time.Second},
		{"initial state MASTER: one interval and the smallest skew", baseInst("a", 100, func(ic *InstanceConfig) { ic.InitialState = Master }), 1000*ms + time.Second},
		{"10s: 30s and 6.09s of skew", baseInst("a", 100, func(ic *InstanceConfig) { ic.AdvertInterval = 10 * time.Second }), 36090*ms + time.Second},
		{"VRRPv2 priority 1: 3s and 255/256s of skew", baseInst("a", 1, func(ic *InstanceConfig) { ic.Version = 2 }), 3*time.Second + 255*time.Second/256 + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfgOf(tc.inst), nil)
			acts := h.apply(t0, "start")
			var got []time.Time
			for _, a := range acts {
				if a.kind == actTransition {
					got = append(got, a.until)
				}
			}
			if len(got) != 1 || !got[0].Equal(t0.Add(tc.want)) {
				t.Fatalf("tentative until %v, want %v after the start", got, tc.want)
			}
			for _, in := range []string{"link eth0 down", "link eth0 up"} {
				for _, a := range h.apply(t0.Add(time.Second), in) {
					if !a.until.IsZero() {
						t.Fatalf("%s: %s is tentative", in, a)
					}
				}
			}
		})
	}
}

// TestResignGrace: how long forwarding goes on after the stop: 3 intervals
// of the instances that resigned plus 200ms, at most 4s; nothing when no
// instance was master.
func TestResignGrace(t *testing.T) {
	b := func(iv time.Duration) func(*InstanceConfig) {
		return func(ic *InstanceConfig) {
			ic.VRID, ic.AdvertInterval = 52, iv
			ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.0.0.101/24")}}
		}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"owner at 1s, backup at 2s", cfgOf(baseInst("a", 255), baseInst("b", 100, b(2*time.Second))), 3200 * ms},
		{"owners at 1s and 100ms", cfgOf(baseInst("a", 255), baseInst("b", 255, b(100*ms))), 3200 * ms},
		{"owner at 2s: at most 4s", cfgOf(baseInst("a", 255, func(ic *InstanceConfig) { ic.AdvertInterval = 2 * time.Second })), 4 * time.Second},
		{"backup only", cfgOf(baseInst("a", 100)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg, nil)
			h.apply(t0, "start")
			h.apply(t0.Add(time.Second), "shutdown")
			if h.c.resignGrace != tc.want {
				t.Fatalf("resign grace %v, want %v", h.c.resignGrace, tc.want)
			}
		})
	}
}
