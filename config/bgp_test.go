package config

import (
	"strings"
	"testing"
	"time"
)

const bgpBase = `[dataplane]
mode = "ipvs"
[[virtual_server]]
name = "web"
address = "10.0.0.3"
port = 80
`

// [bgp] decodes with its defaults, and each mistake is reported at its
// line.
func TestBGP(t *testing.T) {
	cfg, err := Parse("b.toml", []byte(bgpBase+`
[bgp]
asn = 4200000000

[[bgp.peer]]
address = "10.0.0.1"
asn = 65000
med = 10
communities = ["65010:1", "0:65535"]

[[bgp.vip]]
address = "10.0.0.3"
local_pref = 200
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.BGP
	p := b.Peers[0]
	if b.ASN != 4200000000 || b.Announce != AnnounceHealthy || b.DrainTime != 10*time.Second || b.RestartTime != 120*time.Second ||
		p.Port != 179 || p.HoldTime != 90*time.Second || p.BFD || p.BFDInterval != 300*time.Millisecond || p.BFDMultiplier != 3 ||
		*p.MED != 10 || p.LocalPref != nil || len(p.Communities) != 2 || p.Communities[0] != 65010<<16|1 || p.Communities[1].String() != "0:65535" ||
		*b.VIPs[0].LocalPref != 200 {
		t.Errorf("decoded %+v, peer %+v", b, p)
	}

	for _, tc := range []struct{ src, want string }{
		{"[bgp]\n", "b.toml:8: [bgp]: asn: required"},
		{"[bgp]\nasn = 1\nrouter_id = \"fd00::1\"\n", "b.toml:10: [bgp]: router_id fd00::1: a BGP identifier is an IPv4 address"},
		{"[bgp]\nasn = 1\nannounce = \"sometimes\"\n", "b.toml:10: [bgp]: announce: unknown value"},
		{"[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 2\nhold_time = \"1s\"\n", "b.toml:13: bgp.peer 10.0.0.1: hold_time 1s: 0 or at least 3s"},
		{"[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 2\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 3\n", "b.toml:14: bgp.peer 10.0.0.1: duplicate bgp.peer 10.0.0.1 (first on line 10)"},
		{"[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 2\ncommunities = [\"65536:1\"]\n", "b.toml:13: bgp.peer 10.0.0.1: communities: community \"65536:1\" is not AS:VALUE"},
		{"[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 2\nbfd_interval = \"1ms\"\n", "b.toml:13: bgp.peer 10.0.0.1: bfd_interval: 1ms is out of range"},
		{"[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"10.0.0.1\"\n", "b.toml:10: bgp.peer 10.0.0.1: asn: required"},
		{"[bgp]\nasn = 1\n[[bgp.vip]]\naddress = \"10.0.0.9\"\n", "b.toml:11: bgp.vip 10.0.0.9: not the address of any virtual_server"},
		{"[bgp]\nasn = 1\nrestart_time = \"1.5s\"\n", "b.toml:10: [bgp]: restart_time: 1.5s is not a multiple of 1s"},
	} {
		_, err := Parse("b.toml", []byte(bgpBase+"\n"+tc.src), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
}
