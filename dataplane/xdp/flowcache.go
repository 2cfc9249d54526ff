package xdp

import "github.com/cilium/ebpf"

// sizeFlowCache sizes xlb_flowcache for ncpu possible CPUs: a slice of
// flowCacheSlots entries per CPU, which the program indexes by its CPU
// (bpf/lib/flowcache.h's lb_cache_slot).
func sizeFlowCache(spec *ebpf.CollectionSpec, ncpu int) {
	spec.Maps[bpfMapXlbFlowcache].MaxEntries = uint32(ncpu * flowCacheSlots)
}
