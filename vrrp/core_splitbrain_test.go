package vrrp

import (
	"testing"
	"time"
)

// A master's announcements and split-brain rounds, as scenarios (see
// core_test.go).

func TestStateMachineAnnounceSplitBrain(t *testing.T) {
	for _, s := range []scenario{{
		name: "GARP bursts: repeat, interval, delayed burst and refresh",
		cfg: cfgOf(baseInst("a", 255, func(ic *InstanceConfig) {
			ic.GARP = GARPConfig{MasterDelay: 5 * time.Second, MasterRepeat: 3, Interval: 100 * ms, MasterRefresh: 10 * time.Second, MasterRefreshRepeat: 2}
		})),
		steps: []step{
			{0, "start", []string{"a advert prio=255", "a add-vips", "a announce x1", "a notify MASTER prio=255",
				"a transition INIT->MASTER (startup) prio=255"}, ""},
			{100 * ms, "tick", []string{"a announce x1"}, ""},
			{200 * ms, "tick", []string{"a announce x1"}, ""},
			{300 * ms, "tick", nil, ""},
			{5000 * ms, "tick", []string{"a advert prio=255", "a announce x1"}, ""},
			{5100 * ms, "tick", []string{"a announce x1"}, ""},
			{5200 * ms, "tick", []string{"a announce x1"}, ""},
			{9999 * ms, "tick", []string{"a advert prio=255"}, ""}, // adverts at 6..9s were skipped: late timer, no burst
			{10000 * ms, "tick", []string{"a announce x2"}, ""},
			{10999 * ms, "tick", []string{"a advert prio=255"}, ""},
			{20000 * ms, "tick", []string{"a advert prio=255", "a announce x2"}, ""},
		},
	}, {
		// Window: a third of the interval (333.3ms).
		name: "split brain: probe rounds, detection, heal and re-announce",
		cfg:  cfgOf(baseInst("a", 255, func(ic *InstanceConfig) { ic.SplitBrainProbeInterval = 2 * time.Second })),
		steps: []step{
			{0, "start", []string{"a advert prio=255", "a add-vips", "a announce x5", "a notify MASTER prio=255",
				"a transition INIT->MASTER (startup) prio=255"}, ""},
			{1000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{2000 * ms, "tick", []string{"a advert prio=255", "a probe"}, ""},
			{2334 * ms, "tick", nil, ""}, // no answer
			{3000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{4000 * ms, "tick", []string{"a advert prio=255", "a probe"}, ""},
			{4010 * ms, "claim 10.0.0.100", nil, ""},
			{4334 * ms, "tick", []string{"a split-brain detected", "a notify SPLIT_BRAIN prio=255", "a probe"}, ""},
			{4400 * ms, "claim 10.0.0.100", nil, ""},
			{4668 * ms, "tick", []string{"a probe"}, ""}, // still split: no new episode
			{5000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{5002 * ms, "tick", []string{"a split-brain healed", "a announce x5"}, ""},
			{6000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{6668 * ms, "tick", []string{"a probe"}, ""}, // normal cadence again
			{7000 * ms, "tick", []string{"a advert prio=255"}, ""},
		},
	}, {
		name: "a claim starts a round; a master that yields has no split brain",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{100 * ms, "claim 10.0.0.100", nil, ""}, // backups do not care
			{3600 * ms, "tick", becomeMaster("master_down"), ""},
			{3700 * ms, "claim 10.0.0.100", []string{"a probe"}, ""},
			{3701 * ms, "claim 10.0.0.99", nil, ""}, // not our VIP
			{3702 * ms, "adv a 10.0.0.2 200", yield, ""},
			{4100 * ms, "tick", nil, "a=BACKUP"},
		},
	}} {
		t.Run(s.name, s.run)
	}
}
