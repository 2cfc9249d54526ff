package xdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/xlb-dev/xlb/dataplane"
)

// enums are the program's values of the schedulers and forwarding modes
// (enum xlb_sched, enum xlb_fwd), read from its BTF by the names
// dataplane.SchedulerTable and ForwardTable give: the Go side holds no copy
// of them. A scheduler without a value is one XDP lacks.
type enums struct {
	sched map[dataplane.Scheduler]uint8
	fwd   map[dataplane.ForwardMode]uint8
}

func readEnums(types *btf.Spec) (enums, error) {
	var e enums
	var err error
	e.sched, err = enumCodes(types, "xlb_sched", dataplane.SchedulerTable, func(s dataplane.SchedulerSpec) (dataplane.Scheduler, string) {
		return s.Name, s.BPF
	})
	if err != nil {
		return e, err
	}
	for s := range e.sched {
		if spec, _ := s.Spec(); !knownTables[spec.Table] {
			return e, fmt.Errorf("scheduler %s: no builder of its scheduling table (kind %d)", s, spec.Table)
		}
	}
	e.fwd, err = enumCodes(types, "xlb_fwd", dataplane.ForwardTable, func(f dataplane.ForwardSpec) (dataplane.ForwardMode, string) {
		return f.Name, f.BPF
	})
	return e, err
}

// supported refuses the services whose scheduler the program lacks.
func (e enums) supported(services []dataplane.Service) error {
	var errs []error
	for _, s := range services {
		if _, ok := e.sched[s.Scheduler]; !ok {
			errs = append(errs, fmt.Errorf("service %s: scheduler %s: %w (the XDP program has none)", s.Name, s.Scheduler, dataplane.ErrNotSupported))
		}
	}
	return errors.Join(errs...)
}

// knownTables are the kinds of table buildTable builds.
var knownTables = map[dataplane.Table]bool{dataplane.TableList: true, dataplane.TableWeightedCycle: true, dataplane.TableMaglev: true}

// enumCodes maps the entries of a table to the values of enum name their
// entry names ("" none: left out).
func enumCodes[E any, N comparable](types *btf.Spec, name string, table []E, entry func(E) (N, string)) (map[N]uint8, error) {
	values, err := enumValues(types, name)
	if err != nil {
		return nil, err
	}
	out := map[N]uint8{}
	for _, e := range table {
		n, enumerator := entry(e)
		if enumerator == "" {
			continue
		}
		v, ok := values[enumerator]
		if !ok {
			return nil, fmt.Errorf("%v: the program's enum %s has no %s", n, name, enumerator)
		}
		out[n] = uint8(v)
	}
	return out, nil
}

// enumValues returns the values of a C enum from the object's BTF, by name.
func enumValues(types *btf.Spec, name string) (map[string]uint64, error) {
	var e *btf.Enum
	if err := types.TypeByName(name, &e); err != nil {
		return nil, fmt.Errorf("enum %s: %w", name, err)
	}
	out := make(map[string]uint64, len(e.Values))
	for _, v := range e.Values {
		out[v.Name] = v.Value
	}
	return out, nil
}
