package xdp

import (
	"errors"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
)

// The Go tables name every scheduler and forwarding mode of the program's
// enums, and only those: a value added on one side alone fails here.
func TestEnumsMatchTables(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	e, err := readEnums(spec.Types, dataplane.SchedulerTable, dataplane.ForwardTable)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]map[string]bool{"xlb_sched": {}, "xlb_fwd": {}}
	for _, s := range dataplane.SchedulerTable {
		named["xlb_sched"][s.BPF] = s.BPF != ""
	}
	for _, f := range dataplane.ForwardTable {
		named["xlb_fwd"][f.BPF] = true
	}
	for enum, names := range named {
		values, err := enumValues(spec.Types, enum)
		if err != nil {
			t.Fatal(err)
		}
		for name := range values {
			if !names[name] {
				t.Errorf("enum %s has %s, which no entry of dataplane's table names", enum, name)
			}
		}
	}
	inXDP := 0
	for _, s := range dataplane.SchedulerTable {
		if s.BPF != "" {
			inXDP++
		} else if s.NoXDP == "" {
			t.Errorf("scheduler %s: neither BPF nor why XDP has none (NoXDP)", s.Name)
		}
	}
	if len(e.sched) != inXDP || len(e.fwd) != len(dataplane.ForwardTable) {
		t.Errorf("the program has %d of %d schedulers and %d of %d forwarding modes", len(e.sched), inXDP, len(e.fwd), len(dataplane.ForwardTable))
	}
	// A name the program lacks, or a table no builder builds, is refused at load.
	missing := dataplane.SchedulerSpec{Name: "xx", BPF: "XLB_SCHED_XX", Table: dataplane.TableList}
	noTable := dataplane.SchedulerSpec{Name: "rr", BPF: "XLB_SCHED_RR"}
	for _, bad := range []dataplane.SchedulerSpec{missing, noTable} {
		if _, err := readEnums(spec.Types, []dataplane.SchedulerSpec{bad}, nil); err == nil {
			t.Errorf("readEnums accepted %+v", bad)
		}
	}
}

// A scheduler the program lacks is refused by Apply, as not supported.
func TestApplyRefusesSchedulerXDPLacks(t *testing.T) {
	e := enums{sched: map[dataplane.Scheduler]uint8{dataplane.RoundRobin: 0}}
	err := e.supported([]dataplane.Service{{Name: "a", Scheduler: dataplane.RoundRobin}, {Name: "b", Scheduler: dataplane.MaglevHashing}})
	if !errors.Is(err, dataplane.ErrNotSupported) || !strings.Contains(err.Error(), "service b: scheduler mh") || strings.Contains(err.Error(), "service a") {
		t.Errorf("supported: %v, want service b refused as not supported", err)
	}
	// One XDP never has says why and what to use.
	err = e.supported([]dataplane.Service{{Name: "c", Scheduler: dataplane.DestinationHashing}})
	if !errors.Is(err, dataplane.ErrNotSupported) || !strings.Contains(err.Error(), "destination address") || !strings.Contains(err.Error(), `mode = "ipvs"`) {
		t.Errorf("supported(dh): %v, want the reason and the alternative", err)
	}
}
