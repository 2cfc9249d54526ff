package vrrp

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// Tracking and sync groups, as scenarios (see core_test.go).

func TestStateMachineTracking(t *testing.T) {
	for _, s := range []scenario{{
		name: "track scripts: wait for results, weights, fault",
		cfg: Config{
			Instances: []InstanceConfig{baseInst("a", 100, func(ic *InstanceConfig) {
				ic.TrackScripts = []TrackScript{{Name: "alive"}, {Name: "load"}}
			})},
			Scripts: []ScriptConfig{{Name: "alive", Script: "true"}, {Name: "load", Script: "true", Weight: -60}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips"}, "a=INIT"},
			{10 * ms, "script alive ok", nil, "a=INIT"},
			{20 * ms, "script load ok", []string{"a notify BACKUP prio=100", "a transition INIT->BACKUP (startup) prio=100"}, "a=BACKUP"},
			{3620 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
			{4000 * ms, "script load fail", nil, "a=MASTER"},
			{4620 * ms, "tick", []string{"a advert prio=40"}, ""},
			{5000 * ms, "script alive fail", []string{"a advert prio=0", "a del-vips", "a notify FAULT prio=40",
				"a transition MASTER->FAULT (tracking) prio=40"}, "a=FAULT"},
			{5500 * ms, "adv a 10.0.0.2 0", nil, "a=FAULT"},
			{9000 * ms, "tick", nil, "a=FAULT"},
			{10000 * ms, "script alive ok", []string{"a notify BACKUP prio=40", "a transition FAULT->BACKUP (tracking) prio=40"}, "a=BACKUP"},
			{11000 * ms, "script load ok", nil, "a=BACKUP"},
		},
	}, {
		name: "track script fall and rise",
		cfg: Config{
			Instances: []InstanceConfig{baseInst("a", 100, func(ic *InstanceConfig) { ic.TrackScripts = []TrackScript{{Name: "s"}} })},
			Scripts:   []ScriptConfig{{Name: "s", Script: "true", Fall: 2, Rise: 3}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips"}, ""},
			{1 * ms, "script s ok", []string{"a notify BACKUP prio=100", "a transition INIT->BACKUP (startup) prio=100"}, ""},
			{2 * ms, "script s fail", nil, "a=BACKUP"},
			{3 * ms, "script s ok", nil, "a=BACKUP"},
			{4 * ms, "script s fail", nil, "a=BACKUP"},
			{5 * ms, "script s fail", []string{"a notify FAULT prio=100", "a transition BACKUP->FAULT (tracking) prio=100"}, "a=FAULT"},
			{6 * ms, "script s ok", nil, "a=FAULT"},
			{7 * ms, "script s ok", nil, "a=FAULT"},
			{8 * ms, "script s ok", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100"}, "a=BACKUP"},
		},
	}, {
		name: "script weight override and positive weight",
		cfg: Config{
			Instances: []InstanceConfig{baseInst("a", 100, func(ic *InstanceConfig) {
				w := 20
				ic.TrackScripts = []TrackScript{{Name: "s", Weight: &w}}
				ic.InitialState = Master
			})},
			Scripts: []ScriptConfig{{Name: "s", Script: "true"}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips"}, ""},
			{1 * ms, "script s ok", []string{"a notify BACKUP prio=120", "a transition INIT->BACKUP (startup) prio=120"}, ""},
			{1001 * ms, "tick", []string{"a advert prio=120", "a add-vips", "a announce x5", "a notify MASTER prio=120",
				"a transition BACKUP->MASTER (master_down) prio=120"}, ""},
			{1500 * ms, "script s fail", nil, ""},
			{2001 * ms, "tick", []string{"a advert prio=100"}, ""},
		},
	}, {
		name: "interfaces: own interface down is FAULT, tracked one weighs",
		cfg: cfgOf(baseInst("a", 100, func(ic *InstanceConfig) {
			ic.TrackInterfaces = []TrackInterface{{Name: "eth1", Weight: -30}, {Name: "eth2"}}
		})),
		steps: []step{
			{0, "start", startBackup, ""},
			{100 * ms, "link eth0 down", []string{"a notify FAULT prio=100", "a transition BACKUP->FAULT (tracking) prio=100"}, "a=FAULT"},
			{200 * ms, "link eth0 up", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100"}, "a=BACKUP"},
			{300 * ms, "link eth1 down", nil, "a=BACKUP"},
			// A priority change does not re-arm the running timer (as keepalived).
			{3799 * ms, "tick", nil, ""},
			{3800 * ms, "tick", []string{"a advert prio=70", "a add-vips", "a announce x5", "a notify MASTER prio=70",
				"a transition BACKUP->MASTER (master_down) prio=70"}, "a=MASTER"},
			{4000 * ms, "link eth2 down", []string{"a advert prio=0", "a del-vips", "a notify FAULT prio=70",
				"a transition MASTER->FAULT (tracking) prio=70"}, "a=FAULT"},
			{4100 * ms, "link eth1 up", nil, "a=FAULT"},
			{4200 * ms, "link eth2 up", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100"}, "a=BACKUP"},
		},
	}, {
		name: "sync group: master, backup and fault together",
		cfg: Config{
			Instances: []InstanceConfig{
				baseInst("a", 100),
				baseInst("b", 100, func(ic *InstanceConfig) {
					ic.Interface, ic.VRID = "eth1", 52
					ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.1.0.100/24")}}
					ic.AdvertInterval = 2 * time.Second
				}),
			},
			SyncGroups: []SyncGroupConfig{{Name: "g", Instances: []string{"a", "b"}}},
		},
		// The group's notify runs once all members are in the new state.
		steps: []step{
			{0, "start", append(slices.Clone(startBackup),
				"b del-vips", "b notify BACKUP prio=100", "b transition INIT->BACKUP (startup) prio=100",
				"group g notify BACKUP"), "a=BACKUP b=BACKUP"},
			{3600 * ms, "tick", append(becomeMaster("master_down"),
				"b advert prio=100", "b add-vips", "b announce x5", "b notify MASTER prio=100",
				"b transition BACKUP->MASTER (sync_group) prio=100", "group g notify MASTER"), "a=MASTER b=MASTER"},
			{4000 * ms, "adv a 10.0.0.2 200", append(slices.Clone(yield),
				"b del-vips", "b notify BACKUP prio=100", "b transition MASTER->BACKUP (sync_group) prio=100",
				"group g notify BACKUP"), "a=BACKUP b=BACKUP"},
			{4100 * ms, "link eth1 down", []string{"b notify FAULT prio=100", "b transition BACKUP->FAULT (tracking) prio=100",
				"a notify FAULT prio=100", "a transition BACKUP->FAULT (sync_group) prio=100", "group g notify FAULT"}, "a=FAULT b=FAULT"},
			{4200 * ms, "link eth1 up", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100",
				"b notify BACKUP prio=100", "b transition FAULT->BACKUP (tracking) prio=100", "group g notify BACKUP"}, "a=BACKUP b=BACKUP"},
			// notify_stop of the group after the instances' own (keepalived's notify_shutdown).
			{4300 * ms, "shutdown", []string{"a notify STOP prio=100", "a transition BACKUP->INIT (shutdown) prio=100",
				"b notify STOP prio=100", "b transition BACKUP->INIT (shutdown) prio=100", "group g notify STOP"}, "a=INIT b=INIT"},
		},
	}, {
		name: "sync group notify waits for every member, and a reload repeats nothing",
		cfg: Config{
			Instances: []InstanceConfig{
				baseInst("a", 100, func(ic *InstanceConfig) { ic.TrackScripts = []TrackScript{{Name: "alive"}} }),
				baseInst("b", 100, func(ic *InstanceConfig) {
					ic.Interface, ic.VRID = "eth1", 52
					ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.1.0.100/24")}}
				}),
			},
			Scripts:    []ScriptConfig{{Name: "alive", Script: "true"}},
			SyncGroups: []SyncGroupConfig{{Name: "g", Instances: []string{"a", "b"}}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips", "b del-vips", "b notify BACKUP prio=100",
				"b transition INIT->BACKUP (startup) prio=100"}, "a=INIT b=BACKUP"},
			{10 * ms, "script alive ok", []string{"a notify BACKUP prio=100", "a transition INIT->BACKUP (startup) prio=100",
				"group g notify BACKUP"}, "a=BACKUP b=BACKUP"},
			{20 * ms, "reload", nil, "a=BACKUP b=BACKUP"},
			{30 * ms, "script alive ok", nil, ""},
		},
	}} {
		t.Run(s.name, s.run)
	}
}
