// Package nldump runs netlink dumps (links, addresses, neighbours, routes)
// again when a change interrupts them.
//
// The kernel marks a dump NLM_F_DUMP_INTR when what it lists changes while
// it is read (an address added on another interface, a neighbour
// resolved): the answer may be incomplete or inconsistent, and
// vishvananda/netlink returns it with ErrDumpInterrupted. A second read is
// almost always complete. Every dump xlb makes (VRRP's addresses, the
// XDP dataplane's interfaces, the neighbour lookups of the control plane
// and the SYN health checks, the configuration's interface subnets) goes
// through Retry, so that a busy interface does not stop VRRP or fail a
// start or a reload.
package nldump

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// Tries bounds the runs of one dump.
const Tries = 5

// Retry runs dump again while a change interrupts it, at most Tries
// times, and returns the first complete answer. After Tries interrupted
// runs it returns the last answer with its ErrDumpInterrupted; any other
// error is returned at once.
func Retry[T any](dump func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range Tries {
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return out, err
}
