package dataplane

import "net/netip"

// ProbeTaker is a dataplane that takes the answers to the health checks'
// half-open TCP probes off the wire before the kernel's stack (XDP): the
// control plane registers the source of its probes (the director's
// address and a port its socket reserves); a SYN-ACK to it is answered
// with the RST the kernel would send and reported, a RST is reported and
// dropped.
type ProbeTaker interface {
	WatchProbes(src netip.Addr, port uint16) error
	UnwatchProbes(src netip.Addr, port uint16) error
	// ProbeAnswers appends the answers taken since the last call. One
	// reader at a time.
	ProbeAnswers(out []ProbeAnswer) ([]ProbeAnswer, error)
}

// ProbeAnswer is an answer a ProbeTaker took.
type ProbeAnswer struct {
	From    netip.AddrPort // the real server
	Port    uint16         // the probe's source port
	Ack     uint32         // the acknowledgement number: the probe's sequence number + 1
	Refused bool           // a RST; otherwise a SYN-ACK, answered with a RST
	// Taken is when the dataplane took it, in CLOCK_MONOTONIC nanoseconds
	// (0: not known): a check's run ends then, not when it is read.
	Taken int64
}

// ProbeLinker is a ProbeTaker that says which interfaces it takes the
// answers on (by index): the SYNs leaving by them may bypass the kernel's
// stack, whose conntrack never sees their answers.
type ProbeLinker interface {
	ProbeLinks() ([]int, error)
}
