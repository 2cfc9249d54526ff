package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/xlb-dev/xlb/dataplane"
)

// The XDP dataplane refuses what it cannot hold whole: more interfaces
// than its devmap holds, before it loads or attaches anything, and a
// desired state over its limits, before it writes a map (it used to
// install the first 1024 services and fail on the rest).
func TestLimitsRefusedWhole(t *testing.T) {
	names := make([]string, Limits.Interfaces+1)
	for i := range names {
		names[i] = fmt.Sprintf("xlbt-none%d", i) // never looked up
	}
	_, err := Open(Options{Interfaces: names})
	var le *dataplane.LimitError
	if !errors.As(err, &le) || le.What != "interfaces" || le.Count != 65 || le.Max != 64 {
		t.Fatalf("open with 65 interfaces: %v, want the interface limit", err)
	}

	e := newEnv(t)
	services := make([]dataplane.Service, Limits.Services+1)
	for i := range services {
		services[i] = dataplane.Service{
			Name: fmt.Sprintf("s%d", i), Key: dataplane.ServiceKey{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Port: 80, Proto: dataplane.TCP},
			Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Enabled: true,
			Backends: []dataplane.Backend{{Addr: netip.MustParseAddr("10.2.0.1"), Port: 8080, Weight: 1}},
		}
	}
	err = e.d.Apply(t.Context(), services)
	if want := "1025 virtual servers, the XDP dataplane holds at most 1024"; err == nil || err.Error() != want {
		t.Fatalf("apply of 1025 services: %v, want %q", err, want)
	}
	if n := len(e.d.Installed()); n != 0 {
		t.Errorf("%d services installed by a refused apply, want none", n)
	}
}

// The Go limits (generated from enum xlb_limits) are the sizes of the maps
// they bound in the embedded object, and its BTF's values.
func TestLimitsMatchObject(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{
		"xlb_svc_ids_v1": Limits.Services, "xlb_svc_slot_v1": Limits.Services, "xlb_rr_v1": Limits.Services,
		"xlb_svc_stat_v1": Limits.Services, "xlb_svc_v1": 2 * Limits.Services, "xlb_tables_v1": 2 * Limits.Services,
		"xlb_backends_v1": Limits.Backends, "xlb_be_act_v1": Limits.Backends, "xlb_be_stat_v3": Limits.Backends, // per CPU; sized at load
		"xlb_be_conns_v1": Limits.Backends, "xlb_be_thresh_v1": Limits.Backends,
		"xlb_nat_reals_v1": Limits.NATBackends, "xlb_devmap_v1": Limits.Interfaces,
		"xlb_ifaces_v1": maxIfaceEntries, "xlb_if_macs_v1": maxIfaceEntries, "xlb_ifslots_v1": int(ifaceSlots),
		"xlb_local4_v1": maxLocalAddrs, "xlb_embryos_v1": maxEmbryos, "xlb_cands_v1": 2 * Limits.Services,
		"xlb_sync_slots": syncSlots, "xlb_flowcache": flowCacheSlots, // per CPU; sized at load
		"xlb_probe_slots": probeSlots, "xlb_probe_srcs": probeMaxSrcs,
	} {
		m, ok := spec.Maps[name]
		if !ok {
			t.Errorf("no map %s", name)
		} else if int(m.MaxEntries) != want {
			t.Errorf("map %s holds %d entries, the Go limit is %d", name, m.MaxEntries, want)
		}
	}
	var limits *btf.Enum
	if err := spec.Types.TypeByName("xlb_limits", &limits); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"XLB_LIMIT_SERVICES": Limits.Services, "XLB_LIMIT_BACKENDS_PER_SVC": Limits.BackendsPerService,
		"XLB_LIMIT_BACKENDS": Limits.Backends, "XLB_LIMIT_NAT_BACKENDS": Limits.NATBackends,
		"XLB_LIMIT_IFACES": Limits.Interfaces, "XLB_LIMIT_IFACE_ENTRIES": maxIfaceEntries,
		"XLB_LIMIT_IFACE_SLOTS": int(ifaceSlots), "XLB_LIMIT_LOCAL_ADDRS": maxLocalAddrs,
		"XLB_LIMIT_EMBRYOS": maxEmbryos, "XLB_LIMIT_SYN_WINDOW_SHIFT": int(synWindowShift),
		"XLB_LIMIT_RR_CYCLE": maxRRCycle, "XLB_LIMIT_SYNC_SLOTS": syncSlots,
		"XLB_LIMIT_PROBE_SLOTS": probeSlots, "XLB_LIMIT_PROBE_SRCS": probeMaxSrcs,
		"XLB_LIMIT_FLOW_CACHE": flowCacheSlots,
	}
	for _, v := range limits.Values {
		if w, ok := want[v.Name]; !ok {
			t.Errorf("enum xlb_limits has %s, which the Go side does not use", v.Name)
		} else if int(v.Value) != w {
			t.Errorf("%s is %d in the object, %d in Go", v.Name, v.Value, w)
		}
		delete(want, v.Name)
	}
	for name := range want {
		t.Errorf("enum xlb_limits has no %s", name)
	}
}
