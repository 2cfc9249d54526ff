package xdp

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// sizeFlowCache sizes xlb_flowcache for the possible CPUs: a slice of
// flowCacheSlots entries per CPU, which the program indexes by its CPU
// (bpf/lib/flowcache.h's lb_cache_slot).
func sizeFlowCache(spec *ebpf.CollectionSpec) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	spec.Maps[bpfMapXlbFlowcache].MaxEntries = uint32(ncpu * flowCacheSlots)
	return nil
}
