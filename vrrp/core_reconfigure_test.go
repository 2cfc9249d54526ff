package vrrp

import (
	"net/netip"
	"slices"
	"testing"
)

func TestReconfigureKeepsState(t *testing.T) {
	vip2 := VIP{Prefix: netip.MustParsePrefix("10.0.0.101/24")}
	base := cfgOf(baseInst("a", 100), baseInst("b", 100, func(ic *InstanceConfig) {
		ic.VRID, ic.VIPs = 52, []VIP{{Prefix: netip.MustParsePrefix("10.0.0.200/24")}}
	}))
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
		states string
	}{
		{"unchanged", func(*Config) {}, nil, "a=MASTER b=BACKUP"},
		{"VIP added to a master", func(c *Config) { c.Instances[0].VIPs = append(c.Instances[0].VIPs, vip2) },
			[]string{"a add-vips [10.0.0.101/24]", "a announce x5 [10.0.0.101/24]"}, "a=MASTER b=BACKUP"},
		{"VIP replaced on a master", func(c *Config) { c.Instances[0].VIPs = []VIP{vip2} },
			[]string{"a del-vips [10.0.0.100/24]", "a add-vips [10.0.0.101/24]", "a announce x5 [10.0.0.101/24]"}, "a=MASTER"},
		{"master removed", func(c *Config) { c.Instances = c.Instances[1:] },
			[]string{"a advert prio=0", "a del-vips", "a notify DELETED prio=100", "a transition MASTER->INIT (removed) prio=100"}, "b=BACKUP"},
		{"VRID changed: a new router", func(c *Config) { c.Instances[0].VRID = 60 },
			append([]string{"a advert prio=0", "a del-vips", "a notify DELETED prio=100", "a transition MASTER->INIT (removed) prio=100"},
				startBackup...), "a=BACKUP b=BACKUP"},
		{"priority lowered on the master", func(c *Config) { c.Instances[0].Priority = 50 }, nil, "a=MASTER"},
		{"instance added", func(c *Config) {
			c.Instances = append(c.Instances, baseInst("c", 100, func(ic *InstanceConfig) {
				ic.VRID, ic.VIPs = 53, []VIP{{Prefix: netip.MustParsePrefix("10.0.0.201/24")}}
			}))
		}, []string{"c del-vips", "c notify BACKUP prio=100", "c transition INIT->BACKUP (startup) prio=100"}, "a=MASTER b=BACKUP c=BACKUP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, base, nil)
			h.apply(t0, "start")
			h.apply(t0.Add(1000*ms), "adv b 10.0.0.2 200")
			h.apply(t0.Add(3600*ms), "tick")
			h.checkStates("a=MASTER b=BACKUP")
			next := h.c.next()
			cfg := cloneConfig(base)
			for i := range cfg.Instances {
				cfg.Instances[i].VIPs = slices.Clone(cfg.Instances[i].VIPs)
			}
			tc.change(&cfg)
			cfg, err := cfg.normalize()
			if err != nil {
				t.Fatal(err)
			}
			got := strs(h.c.handle(t0.Add(4000*ms), configChanged{cfg}))
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("reconfigure:\n got %s\nwant %s", fmtList(got), fmtList(tc.want))
			}
			h.checkStates(tc.states)
			if tc.name == "unchanged" && h.c.next() != next {
				t.Fatalf("timers moved: %v -> %v", next.Sub(t0), h.c.next().Sub(t0))
			}
			if tc.name == "priority lowered on the master" {
				if got := strs(h.c.handle(t0.Add(4600*ms), timersDue{})); got[0] != "a advert prio=50" {
					t.Fatalf("advert after the change: %v", got)
				}
			}
		})
	}
}
