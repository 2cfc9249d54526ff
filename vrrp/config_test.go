package vrrp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := baseInst("a", 100)
	for _, tc := range []struct {
		name string
		mod  func(*InstanceConfig)
		want string
	}{
		{"AH", func(ic *InstanceConfig) { ic.AuthType = AuthAH }, "AH authentication is not supported"},
		{"no VIP", func(ic *InstanceConfig) { ic.VIPs = nil }, "no virtual addresses"},
		{"vrid 0", func(ic *InstanceConfig) { ic.VRID = 0 }, "VRID"},
		{"v3 5ms", func(ic *InstanceConfig) { ic.AdvertInterval = 5 * ms }, "multiple of 10ms"},
		{"v3 15ms", func(ic *InstanceConfig) { ic.AdvertInterval = 15 * ms }, "multiple of 10ms"},
		{"v2 100ms", func(ic *InstanceConfig) { ic.Version = 2; ic.AdvertInterval = 100 * ms }, "whole seconds"},
		{"v2 ipv6", func(ic *InstanceConfig) {
			ic.Version = 2
			ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("2001:db8::1/64")}}
		}, "IPv4 only"},
		{"mixed families", func(ic *InstanceConfig) {
			ic.VIPs = append(ic.VIPs, VIP{Prefix: netip.MustParsePrefix("2001:db8::1/64")})
		}, "one family"},
		{"v3 auth", func(ic *InstanceConfig) { ic.AuthPass = "x" }, "needs VRRPv2"},
		{"unknown script", func(ic *InstanceConfig) { ic.TrackScripts = []TrackScript{{Name: "nope"}} }, "not defined"},
		{"peer family", func(ic *InstanceConfig) { ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("fe80::1")} }, "unicast peer"},
		{"state", func(ic *InstanceConfig) { ic.InitialState = Fault }, "initial state"},
		{"interface", func(ic *InstanceConfig) { ic.Interface = "" }, "interface name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic := good
			ic.VIPs = slices.Clone(good.VIPs)
			tc.mod(&ic)
			err := cfgOf(ic).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := cfgOf(good).Validate(); err != nil {
		t.Fatal(err)
	}
	// 10ms, the v3 minimum, is accepted.
	ic := good
	ic.AdvertInterval = 10 * ms
	if err := cfgOf(ic).Validate(); err != nil {
		t.Fatal(err)
	}
	dup := cfgOf(good, good)
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("duplicate: %v", err)
	}
	_, err := NewNode(cfgOf(baseInst("a", 1, func(ic *InstanceConfig) { ic.AuthType = AuthAH })), Options{})
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("NewNode with AH: %v", err)
	}
}
