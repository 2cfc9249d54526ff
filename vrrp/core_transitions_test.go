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

// TestHandoverUntil: every transition out of MASTER says until when the
// node should go on forwarding (Event.HandoverUntil): 3 intervals and
// 200ms after the decision, at most 4s; no other transition does.
func TestHandoverUntil(t *testing.T) {
	iv2s := func(ic *InstanceConfig) { ic.AdvertInterval = 2 * time.Second }
	for _, tc := range []struct {
		name  string
		inst  InstanceConfig
		input string
		to    State
		want  time.Duration // after the decision at 10s
	}{
		{"a better master", baseInst("a", 100), "adv a 10.0.0.2 150", Backup, 3200 * ms},
		{"a fault", baseInst("a", 100), "link eth0 down", Fault, 3200 * ms},
		{"a stop", baseInst("a", 100), "shutdown", Init, 3200 * ms},
		{"2s adverts: at most 4s", baseInst("a", 100, iv2s), "adv a 10.0.0.2 150", Backup, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfgOf(tc.inst), nil)
			var before []action
			before = append(before, h.apply(t0, "start")...)
			before = append(before, h.apply(t0.Add(9*time.Second), "tick")...)
			if st := h.c.byName["a"].state; st != Master {
				t.Fatalf("state %v before the test, want MASTER", st)
			}
			for _, a := range before {
				if !a.handover.IsZero() {
					t.Fatalf("%s hands over", a)
				}
			}
			at := t0.Add(10 * time.Second)
			var got []action
			for _, a := range h.apply(at, tc.input) {
				if a.kind == actTransition {
					got = append(got, a)
				}
			}
			if len(got) != 1 || got[0].to != tc.to || !got[0].handover.Equal(at.Add(tc.want)) {
				t.Fatalf("transitions %v (handover %v), want one to %v handing over until %v after the decision",
					got, handovers(got, at), tc.to, tc.want)
			}
		})
	}
}

func handovers(acts []action, at time.Time) []time.Duration {
	var d []time.Duration
	for _, a := range acts {
		d = append(d, a.handover.Sub(at))
	}
	return d
}
