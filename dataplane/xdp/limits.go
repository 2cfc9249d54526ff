package xdp

import "github.com/xlb-dev/xlb/dataplane"

// Limits are what the XDP program holds: the defaults of bpf/lib/consts.h
// it is built with, generated from its enum xlb_limits (bpf2go), and the
// maps' sizes checked against them (TestLimitsMatchObject). Everything
// else reads them from here.
var Limits = dataplane.Limits{
	Dataplane:          "the XDP dataplane",
	Services:           maxServices,
	BackendsPerService: maxBackendsPerService,
	Backends:           maxBackends,
	NATBackends:        int(bpfXlbLimitsXLB_LIMIT_NAT_BACKENDS), // xlb_nat_reals_v1
	Interfaces:         int(bpfXlbLimitsXLB_LIMIT_IFACES),       // xlb_devmap_v1
}

const (
	maxServices           = int(bpfXlbLimitsXLB_LIMIT_SERVICES)
	maxBackendsPerService = int(bpfXlbLimitsXLB_LIMIT_BACKENDS_PER_SVC)
	// maxBackends are backend ids, live or retired (a removed real server
	// keeps its id while flows use it).
	maxBackends = int(bpfXlbLimitsXLB_LIMIT_BACKENDS)
	// maxEmbryos are the slots of xlb_embryos_v1 (the program indexes it
	// by flow hash modulo this: its size is not overridden).
	maxEmbryos = int(bpfXlbLimitsXLB_LIMIT_EMBRYOS)
	// synWindowShift: the SYN rate is counted per 2^synWindowShift ns.
	synWindowShift = uint(bpfXlbLimitsXLB_LIMIT_SYN_WINDOW_SHIFT)
	// maxRRCycle bounds a round-robin cycle: the program walks at most
	// this many entries past overloaded real servers (lb_rr_skip).
	maxRRCycle = int(bpfXlbLimitsXLB_LIMIT_RR_CYCLE)
	// flowCacheSlots are the flow cache's entries per CPU: xlb_flowcache
	// holds a slice of them per possible CPU (its size is not overridden).
	flowCacheSlots = int(bpfXlbLimitsXLB_LIMIT_FLOW_CACHE)
)
