package xdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/xlb-dev/xlb/dataplane"
)

// enums are the program's values of the schedulers and forwarding modes
// (enum xlb_sched, enum xlb_fwd), found in its BTF by the names the
// dataplane's tables give: Go holds no copy of them. A scheduler without a
// value is one XDP lacks, which Apply refuses.
type enums struct {
	sched map[dataplane.Scheduler]uint8
	fwd   map[dataplane.ForwardMode]uint8
}

func readEnums(types *btf.Spec, scheds []dataplane.SchedulerSpec, fwds []dataplane.ForwardSpec) (enums, error) {
	e := enums{sched: map[dataplane.Scheduler]uint8{}, fwd: map[dataplane.ForwardMode]uint8{}}
	schedValues, err := enumValues(types, "xlb_sched")
	if err != nil {
		return e, err
	}
	fwdValues, err := enumValues(types, "xlb_fwd")
	if err != nil {
		return e, err
	}
	for _, s := range scheds {
		v, ok := schedValues[s.BPF]
		switch {
		case s.BPF == "":
		case !ok:
			return e, fmt.Errorf("scheduler %s: the program's enum xlb_sched has no %s", s.Name, s.BPF)
		case tableBuilders[s.Table] == nil:
			return e, fmt.Errorf("scheduler %s: no builder of its kind of scheduling table (%d)", s.Name, s.Table)
		default:
			e.sched[s.Name] = uint8(v)
		}
	}
	for _, f := range fwds {
		v, ok := fwdValues[f.BPF]
		if !ok {
			return e, fmt.Errorf("forwarding mode %s: the program's enum xlb_fwd has no %s", f.Name, f.BPF)
		}
		e.fwd[f.Name] = uint8(v)
	}
	return e, nil
}

// supported refuses the services whose scheduler the program lacks.
func (e enums) supported(services []dataplane.Service) error {
	var errs []error
	for _, s := range services {
		if _, ok := e.sched[s.Scheduler]; !ok {
			why := "the XDP program has none"
			if spec, _ := s.Scheduler.Spec(); spec.NoXDP != "" {
				why += ": " + spec.NoXDP
			}
			errs = append(errs, fmt.Errorf("service %s: scheduler %s: %w (%s)", s.Name, s.Scheduler, dataplane.ErrNotSupported, why))
		}
	}
	return errors.Join(errs...)
}
