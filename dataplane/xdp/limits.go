package xdp

import "github.com/xlb-dev/xlb/dataplane"

// Limits are what the XDP program holds: the XLB_MAX_* defaults of
// bpf/lib/consts.h it is built with. This is the one place the Go side
// keeps them; everything else reads them from here.
var Limits = dataplane.Limits{
	Dataplane:          "the XDP dataplane",
	Services:           maxServices,
	BackendsPerService: maxBackendsPerService,
	Backends:           maxBackends,
	NATBackends:        1 << 16, // XLB_MAX_NAT_BACKENDS: xlb_nat_reals_v1
	Interfaces:         64,      // XLB_MAX_IFACES: xlb_devmap_v1
}

const (
	maxServices           = 1024 // XLB_MAX_SERVICES
	maxBackendsPerService = 256  // XLB_MAX_BACKENDS_PER_SVC
	// maxBackends is XLB_MAX_BACKENDS: backend ids, live or retired (a
	// removed real server keeps its id while flows use it).
	maxBackends = maxServices * maxBackendsPerService
)
