package control

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/vrrp"
)

// minimalVRRP is the least a configuration file says of VRRP: every other
// key takes its default.
const minimalVRRP = `
[global]
router_id = "t"
[dataplane]
interfaces = ["eth0"]

[[vrrp_script]]
name = "chk"
script = "/bin/true"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["10.0.0.100"]

[[vrrp_sync_group]]
name = "G"
group = ["VI_1"]
`

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse("t.toml", []byte(src), nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

// TestVRRPDefaultsAgree: the configuration file's defaults (config/keys.go,
// the user-facing ones) and vrrp's defaults for a Config built in code are
// the same. The minimal configuration, converted, with vrrp's defaults
// filling only what the conversion leaves zero, must equal the minimal
// vrrp.Config with vrrp's defaults: a default that config sets to one value
// and vrrp to another shows as a difference.
func TestVRRPDefaultsAgree(t *testing.T) {
	got := VRRPFromConfig(parse(t, minimalVRRP)).WithDefaults()
	want := vrrp.Config{
		Scripts: []vrrp.ScriptConfig{{Name: "chk", Script: "/bin/true"}},
		Instances: []vrrp.InstanceConfig{{Name: "VI_1", Interface: "eth0", VRID: 51,
			VIPs: []vrrp.VIP{{Prefix: netip.MustParsePrefix("10.0.0.100/32")}}}},
		SyncGroups: []vrrp.SyncGroupConfig{{Name: "G", Instances: []string{"VI_1"}}},
	}.WithDefaults()
	for _, d := range diffFields("", reflect.ValueOf(got), reflect.ValueOf(want)) {
		t.Errorf("%s (config's default, then vrrp's)", d)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("the converted minimal configuration is invalid: %v", err)
	}
}

// TestVRRPFromConfigZeroIsOff: where the configuration file's 0 means off,
// the conversion says so in vrrp's terms (a negative value): vrrp's 0 means
// its default.
func TestVRRPFromConfigZeroIsOff(t *testing.T) {
	c := parse(t, minimalVRRP+`
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 52
virtual_ipaddress = ["10.0.0.101"]
garp_master_delay = "0s"
split_brain_check_interval = "0s"
learned_advert_int_max_factor = 0
`)
	ic := VRRPFromConfig(c).WithDefaults().Instances[1]
	if ic.GARP.MasterDelay >= 0 {
		t.Errorf("garp_master_delay = \"0s\" (no second burst, as keepalived's 0) became %v", ic.GARP.MasterDelay)
	}
	if ic.SplitBrainProbeInterval >= 0 {
		t.Errorf("split_brain_check_interval = \"0s\" (disabled) became %v", ic.SplitBrainProbeInterval)
	}
	if ic.LearnedIntervalMaxFactor >= 0 {
		t.Errorf("learned_advert_int_max_factor = 0 (no limit) became %v", ic.LearnedIntervalMaxFactor)
	}
}

// TestVRRPFromConfigSyncGroupNotify: a sync group's notify commands reach
// vrrp, which runs them (notify_stop included).
func TestVRRPFromConfigSyncGroupNotify(t *testing.T) {
	c := parse(t, minimalVRRP+`notify_master = "/bin/m"
notify_backup = "/bin/b"
notify_fault = "/bin/f"
notify_stop = "/bin/s"
notify = "/bin/n"
`)
	want := vrrp.Notify{Master: "/bin/m", Backup: "/bin/b", Fault: "/bin/f", Stop: "/bin/s", Generic: "/bin/n"}
	if got := VRRPFromConfig(c).SyncGroups[0].Notify; got != want {
		t.Fatalf("sync group notify %+v\nwant %+v", got, want)
	}
}

// diffFields lists the leaves (struct fields, slice elements) where a and b
// differ, by path.
func diffFields(path string, a, b reflect.Value) []string {
	switch a.Kind() {
	case reflect.Struct:
		if a.Type().PkgPath() != "" && a.Type().PkgPath() != reflect.TypeFor[vrrp.Config]().PkgPath() {
			break // netip, time: compare whole
		}
		var out []string
		for i := range a.NumField() {
			out = append(out, diffFields(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))...)
		}
		return out
	case reflect.Slice:
		if a.Len() != b.Len() {
			return []string{fmt.Sprintf("%s: %d elements, %d elements", path, a.Len(), b.Len())}
		}
		var out []string
		for i := range a.Len() {
			out = append(out, diffFields(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i))...)
		}
		return out
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return []string{fmt.Sprintf("%s: %v, %v", path, a, b)}
			}
			return nil
		}
		return diffFields(path, a.Elem(), b.Elem())
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return []string{fmt.Sprintf("%s: %v, %v", path, a.Interface(), b.Interface())}
	}
	return nil
}

// TestModelFromConfigAllocations: converting a service's real servers
// allocates per service, not per real server (their check keys are one
// string, parts of which they hold). The real servers that share
// their service's check share one Spec, and converting them makes no heap
// Spec of its own (one of ~450 bytes each was 28 MB of garbage at every
// load of 64,000 real servers, start and reload).
func TestModelFromConfigAllocations(t *testing.T) {
	const services, reals = 10, 64
	cfg := parse(t, scaleConfig("/run/xlb.sock", "", services, reals, "tcp", 8080))
	m := ModelFromConfig(cfg)
	if len(m.Services) != services || len(m.Services[0].Reals) != reals || m.Services[0].Reals[0].Check != m.Services[0].Reals[reals-1].Check {
		t.Fatalf("model: %d services, first with %d real servers, check shared %v", len(m.Services), len(m.Services[0].Reals),
			m.Services[0].Reals[0].Check == m.Services[0].Reals[reals-1].Check)
	}
	// Per service, not per real server: its check keys are one string.
	allocs := testing.AllocsPerRun(5, func() { ModelFromConfig(cfg) })
	if max := float64(services * 8); allocs > max {
		t.Errorf("ModelFromConfig: %.0f allocations for %d services x %d real servers, want at most %.0f", allocs, services, reals, max)
	}
}

// The checks given to the health Manager at every start and reload are
// made in one array: appending 64,000 of them (3.6 MB) made as much
// again in the arrays it outgrew.
func TestChecksAllocations(t *testing.T) {
	const services, reals = 10, 64
	m := ModelFromConfig(parse(t, scaleConfig("/run/xlb.sock", "", services, reals, "tcp", 8080)))
	if n := len(checks(m)); n != services*reals {
		t.Fatalf("%d checks, want %d", n, services*reals)
	}
	if allocs := testing.AllocsPerRun(5, func() { checks(m) }); allocs > 1 {
		t.Errorf("checks of %d real servers: %.0f allocations, want 1", services*reals, allocs)
	}
}

// A real server of the model is 64 bytes: a group entry's id is behind a
// pointer, and its check's key is where its service's keys are (at 80
// bytes, 64 of them took a 5,376-byte allocation; at 64, 4,096).
func TestRealSpecSize(t *testing.T) {
	if n := unsafe.Sizeof(RealSpec{}); n > 64 {
		t.Errorf("RealSpec is %d bytes, want at most 64", n)
	}
}

// TestCheckKeysShared: the keys of a service's checks are parts of one
// string, and read without allocating; those past its first 64 KiB (an
// IPVS service of thousands of real servers) are made when asked for, the
// same.
func TestCheckKeysShared(t *testing.T) {
	for _, reals := range []int{64, 5000} {
		m := ModelFromConfig(parse(t, scaleConfig("/run/xlb.sock", "", 1, reals, "tcp", 8080)))
		s := m.Services[0]
		stored := 0
		for i, r := range s.Reals {
			want := "s0/" + netip.AddrPortFrom(r.Addr, r.Port).String()
			if got := s.checkKey(r); got != want {
				t.Fatalf("%d real servers: real server %d's key %q, want %q", reals, i, got, want)
			}
			if r.keyLen > 0 {
				stored++
				if allocs := testing.AllocsPerRun(10, func() { _ = s.checkKey(r) }); allocs != 0 {
					t.Fatalf("%d real servers: reading real server %d's key allocated %.0f times", reals, i, allocs)
				}
			}
		}
		if reals == 64 && stored != 64 || reals == 5000 && (stored == 0 || stored == 5000) {
			t.Errorf("%d real servers: %d keys stored", reals, stored)
		}
		if len(s.checkKeys) > math.MaxUint16+1+math.MaxUint8 {
			t.Errorf("%d real servers: the keys' string is %d bytes", reals, len(s.checkKeys))
		}
	}
}

// Without limits (the daemon's start checks before its dataplane is
// open) the real servers are not made into dataplane Backends to be
// counted against none; with limits, they are counted.
func TestCheckLimitsWithoutLimits(t *testing.T) {
	cfg := parse(t, scaleConfig("/run/xlb.sock", "", 10, 64, "none", 8080))
	m := ModelFromConfig(cfg)
	if allocs := testing.AllocsPerRun(5, func() {
		if err := checkLimits("f.toml", cfg, m, dataplane.Limits{}); err != nil {
			t.Fatal(err)
		}
	}); allocs > 0 {
		t.Errorf("no limits: %.0f allocations", allocs)
	}
	err := checkLimits("f.toml", cfg, m, dataplane.Limits{Dataplane: "a small dataplane", BackendsPerService: 32})
	if err == nil || !strings.Contains(err.Error(), "64 real servers, a small dataplane holds at most 32 per virtual server") {
		t.Errorf("64 real servers against 32: %v", err)
	}
}

// numberChecks gives each real server with a check the place of its
// check in checks(m), the list the daemon gives the health manager: the
// entries of a group share their first entry's checks, a real server
// without a check has none. The list is the one made without the
// numbering.
func TestNumberChecks(t *testing.T) {
	m := ModelFromConfig(parse(t, `
[dataplane]
mode = "xdp"
interfaces = ["eth0"]
[metrics]
listen = ""
[[virtual_server_group]]
name = "G"
entries = ["10.0.0.3:80", "10.0.0.4-5:8080"]
[[virtual_server]]
name = "web"
group = "G"
forward = "dr"
[virtual_server.health_check]
type = "tcp"
port = 1
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
[[virtual_server]]
name = "api"
address = "10.0.1.1"
port = 443
[virtual_server.health_check]
type = "tcp"
[[virtual_server.real_server]]
address = "10.0.1.7"
port = 443
[[virtual_server.real_server]]
address = "10.0.1.8"
port = 443
[virtual_server.real_server.health_check]
type = "none"
[[virtual_server.real_server]]
address = "10.0.1.9"
port = 443
`))
	if m.checkOrder == 0 {
		t.Fatal("the model's checks are not numbered")
	}
	list := checks(m)
	unnumbered := m
	unnumbered.checkOrder = 0
	if want := checks(unnumbered); !slices.EqualFunc(list, want, func(a, b health.Check) bool { return a.Key == b.Key }) {
		t.Fatalf("numbered list %v, want %v", list, want)
	}
	if len(list) != 4 {
		t.Fatalf("%d checks, want 4 (two for the group's three entries, two for api)", len(list))
	}
	services := 0
	for _, s := range m.Services {
		services++
		for _, rs := range s.Reals {
			if rs.checkType() == checktype.None {
				if rs.checkIdx != 0 {
					t.Errorf("%s %s: no check, numbered %d", s.Name, rs.Key(), rs.checkIdx)
				}
				continue
			}
			if i := int(rs.checkIdx) - 1; i < 0 || i >= len(list) || list[i].Key != s.checkKey(rs) {
				t.Errorf("%s %s: check %d, key %q", s.Name, rs.Key(), rs.checkIdx, s.checkKey(rs))
			}
		}
	}
	if services != 4 {
		t.Errorf("%d services, want the group's three and api", services)
	}
	if again := ModelFromConfig(parse(t, "[dataplane]\nmode = \"xdp\"\ninterfaces = [\"eth0\"]\n")); again.checkOrder == m.checkOrder {
		t.Error("two models' lists of checks have one name")
	}
}
