package ipvsadm

import (
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// ipvsadm-save -n output as the tool writes it.
const saved = `-A -t 10.0.0.1:80 -s rr -p 300
-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 2
-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 0 -x 100 -y 60
-A -u 10.0.0.1:53 -s wlc
-a -u 10.0.0.1:53 -r 10.0.1.3:53 -g -w 1
-A -t [2001:db8::1]:443 -s mh
-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -i -w 1 --tun-type ipip
-A -t 10.0.0.2:80 -s rr
-a -t 10.0.0.2:80 -r 10.0.2.1:80 -i -w 1 --tun-type gue --tun-port 6080
-A -t 10.0.0.3:3128 -s lblcr
-a -t 10.0.0.3:3128 -r 10.0.3.1:3128 -g -w 1 -x 8
`

func TestImport(t *testing.T) {
	res, err := Import("rules", strings.NewReader(saved))
	if err != nil || res.Failed() {
		t.Fatalf("%v %v", err, res.Diags)
	}
	cfg, err := config.Parse("x.toml", res.TOML, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML)
	}
	if len(cfg.VirtualServers) != 5 {
		t.Fatalf("%d services", len(cfg.VirtualServers))
	}
	web := cfg.VirtualServers[0]
	if web.Scheduler != "rr" || web.Forward != "nat" || web.PersistenceTimeout.Seconds() != 300 || len(web.RealServers) != 2 ||
		web.RealServers[0].Port != 8080 || web.RealServers[0].Weight != 2 || web.RealServers[1].Weight != 0 ||
		web.RealServers[0].HealthCheck.Type != "none" || web.RealServers[0].UpperThreshold != 0 ||
		web.RealServers[1].UpperThreshold != 100 || web.RealServers[1].LowerThreshold != 60 {
		t.Errorf("web: %+v", web)
	}
	if dns := cfg.VirtualServers[1]; dns.Protocol != dataplane.UDP || dns.Forward != "dr" || dns.Scheduler != "wlc" {
		t.Errorf("dns: %+v", dns)
	}
	if v6 := cfg.VirtualServers[2]; v6.Forward != "tunnel" || v6.Scheduler != "mh" || v6.Address.String() != "2001:db8::1" {
		t.Errorf("v6: %+v", v6)
	}
	if gue := cfg.VirtualServers[3]; gue.TunnelType != "gue" || gue.TunnelPort != 6080 {
		t.Errorf("gue: %+v", gue)
	}
	if cache := cfg.VirtualServers[4]; cache.Scheduler != "lblcr" || cache.RealServers[0].UpperThreshold != 8 || cache.RealServers[0].LowerThreshold != 0 {
		t.Errorf("cache: %+v", cache)
	}
}

func TestImportErrors(t *testing.T) {
	for in, want := range map[string]string{
		"-A -f 1 -s rr\n":               "rules:1: error: -f: not supported by xlb: xlb has no firewall-mark services",
		"-A -t 10.0.0.1:80 -s random\n": "rules:1: error: -s: not supported by xlb",
		"-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -x -1\n": "rules:2: error: -a: -x \"-1\": want 0..2147483647",
		"-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g\n":                       "rules:1: error: -a: no service tcp 10.0.0.1:80 was added before",
		"-A -t 10.0.0.1 -s rr\n":                                      "rules:1: error: -A: -t \"10.0.0.1\": want ADDR:PORT",
		"-A -t 10.0.0.1:80\n-X\n":                                     "rules:2: error: -X: unknown command",
		"-A -t 10.0.0.1:80 -s rr -M 255.255.0.0\n":                    "rules:1: error: -M: not supported by xlb: persistence netmask",
		"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -i --tun-type gue --tun-port 1\n-a -t 10.0.0.1:80 -r 10.0.0.3:80 -i\n": "rules:3: error: -a: 10.0.0.3:80: forwarding tunnel ipip differs",
	} {
		res, err := Import("rules", strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Failed() || res.TOML != nil || len(res.Diags) == 0 || !strings.HasPrefix(res.Diags[0].String(), want) {
			t.Errorf("%q: %v, want %q", in, res.Diags, want)
		}
	}
}
