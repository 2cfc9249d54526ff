package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// keyContext is, per section, a document in which each of the section's
// keys is read: KEY is replaced by the key under test, and a context line
// setting that same key is dropped.
var keyContext = map[string]string{
	"global":          "[global]\nKEY\n",
	"dataplane":       "[dataplane]\nmode = \"xdp\"\nKEY\n",
	"metrics":         "[metrics]\nKEY\n",
	"control":         "[control]\nKEY\n",
	"debug":           "[debug]\nKEY\n",
	"vrrp_script":     "[[vrrp_script]]\nname = \"s\"\nscript = \"/bin/true\"\nKEY\n",
	"vrrp_sync_group": "[[vrrp_sync_group]]\nname = \"g\"\ngroup = [\"v\"]\nKEY\n",
	"vrrp_instance": "[[vrrp_instance]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_router_id = 1\n" +
		"virtual_ipaddress = [\"10.0.0.1\"]\nKEY\n",
	"virtual_server_group": "[[virtual_server_group]]\nname = \"g\"\nentries = [\"10.0.0.1:80\"]\nKEY\n",
	"virtual_server": "[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 80\nforward = \"tunnel\"\n" +
		"tunnel_type = \"gue\"\ntunnel_port = 6080\nKEY\n",
	"virtual_server.real_server": "[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 80\n" +
		"[[virtual_server.real_server]]\naddress = \"10.0.0.2\"\nKEY\n",
	"virtual_server.health_check": "[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 80\n" +
		"[virtual_server.health_check]\ntype = \"https\"\nKEY\n",
	"bgp":      "[bgp]\nasn = 65010\nKEY\n",
	"bgp.peer": "[bgp]\nasn = 65010\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 65000\nKEY\n",
	"bgp.vip":  "[bgp]\nasn = 65010\n[[bgp.vip]]\naddress = \"10.0.0.3\"\nKEY\n",
	"sync":     "[sync]\ninterface = \"eth0\"\nkey_file = \"/etc/xlb/sync.key\"\nKEY\n",
	"virtual_server.health_check.url": "[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 80\n" +
		"[virtual_server.health_check]\ntype = \"http\"\n[[virtual_server.health_check.url]]\npath = \"/\"\nKEY\n",
}

// Every declared key is read and checked by the decoder: given a value of
// no type it accepts (an inline table), it is reported at its line. (A key
// declared but never read would be accepted silently, as the table also
// decides which keys are unknown.)
func TestKeysDecoded(t *testing.T) {
	for _, s := range sections {
		if s.name == "" {
			continue
		}
		ctx, ok := keyContext[s.name]
		if !ok {
			t.Errorf("no keyContext for section %q", s.name)
			continue
		}
		for _, k := range s.keys {
			if k.kind == kTable || k.kind == kTables {
				continue
			}
			var lines []string
			for _, l := range strings.Split(ctx, "\n") {
				if !strings.HasPrefix(l, k.name+" = ") {
					lines = append(lines, l)
				}
			}
			src := strings.Replace(strings.Join(lines, "\n"), "KEY", k.name+" = { x = 1 }", 1)
			line := strings.Count(src[:strings.Index(src, k.name+" = {")], "\n") + 1
			_, err := Parse("k.toml", []byte(src), nil)
			if want := fmt.Sprintf("k.toml:%d: ", line); err == nil || !strings.Contains(err.Error(), want) ||
				!strings.Contains(err.Error(), k.name+": want ") {
				t.Errorf("%s.%s = {x = 1}: want an error at line %d about its type, got:\n%v\nin:\n%s", s.name, k.name, line, err, src)
			}
		}
	}
}

// The key table names real fields, and every field of a section's struct
// is filled from a key (or is one of the few the decoder computes).
func TestKeysFields(t *testing.T) {
	structs := map[string]any{
		"global": Global{}, "dataplane": Dataplane{}, "metrics": Metrics{}, "control": Control{}, "debug": Debug{},
		"vrrp_script": VRRPScript{}, "vrrp_sync_group": SyncGroup{}, "vrrp_instance": VRRPInstance{},
		"virtual_server_group": VirtualServerGroup{},
		"virtual_server":       VirtualServer{}, "virtual_server.real_server": RealServer{},
		"virtual_server.health_check": HealthCheck{}, "virtual_server.health_check.url": URLCheck{},
		"bgp": BGP{}, "bgp.peer": BGPPeer{}, "bgp.vip": BGPVIP{}, "sync": Sync{},
	}
	// Fields held under another name than their key's.
	computed := map[string]bool{
		"Line": true, "Interfaces": true, "Group": true, "AuthType": true, "AuthPass": true, "UnicastPeers": true,
		"VirtualIPAddresses": true, "TrackScripts": true, "TrackInterfaces": true, "SorryServer": true,
		"TunnelPort": true, "TunnelSource": true, "HealthCheck": true, "RealServers": true,
		"Peers": true, "VIPs": true, "URLs": true, "ReplyPattern": true,
		"NotificationEmail": true, "SMTPServer": true, "Server": true, "Entries": true,
	}
	for _, s := range sections[1:] {
		typ := reflect.TypeOf(structs[s.name])
		fields := map[string]bool{}
		for i := range s.keys {
			k := &s.keys[i]
			if k.field == "" || k.kind >= kTable {
				continue
			}
			fields[k.field] = true
			if _, ok := typ.FieldByName(k.field); !ok {
				t.Errorf("%s.%s: %s has no field %s", s.name, k.name, typ, k.field)
			}
			if want := strings.ReplaceAll(k.name, "_", ""); !strings.EqualFold(k.field, want) && k.name != "vrrp_instance" {
				t.Errorf("%s.%s fills %s: not the key's name", s.name, k.name, k.field)
			}
		}
		for i := range typ.NumField() {
			if f := typ.Field(i).Name; !fields[f] && !computed[f] {
				t.Errorf("%s.%s is filled by no key", typ, f)
			}
		}
	}
}
