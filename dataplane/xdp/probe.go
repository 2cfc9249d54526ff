package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
)

// The answers to the control plane's health-check probes (bpf/lib/probe.h):
// the control plane registers each source of its half-open TCP probes
// (the director's address and the port a socket reserves), and the program
// takes their answers off the wire, answers a SYN-ACK with the RST the
// kernel would send, and reports them in a ring per CPU, read here.

const (
	probeSlots    = int(bpfXlbLimitsXLB_LIMIT_PROBE_SLOTS) // a CPU's
	probeSlotSize = int(unsafe.Sizeof(bpfXlbProbeSlot{}))
	probeMaxSrcs  = int(bpfXlbLimitsXLB_LIMIT_PROBE_SRCS)
)

// probeTap is the Go side's state of the probes' answers.
type probeTap struct {
	mu    sync.Mutex
	ports map[uint16]int // registered sources by port
	srcs  map[bpfXlbProbeSrc]bool
	ring  *reportRing // opened by the first read
	err   error       // why the ring cannot be read
}

// sizeProbeRings sizes the answer rings for the possible CPUs.
func sizeProbeRings(spec *ebpf.CollectionSpec, ncpu int) {
	spec.Maps[bpfMapXlbProbeSlots].MaxEntries = uint32(ncpu * probeSlots)
	spec.Maps[bpfMapXlbProbeHeads].MaxEntries = uint32(ncpu)
}

func probeSrc(src netip.Addr, port uint16) (bpfXlbProbeSrc, error) {
	var k bpfXlbProbeSrc
	if !src.IsValid() || src.Is4In6() {
		return k, fmt.Errorf("probe source %v: not an IPv4 or IPv6 address", src)
	}
	k.Addr, k.Family = addrWords(src)
	if port == 0 {
		return k, errors.New("probe source port 0")
	}
	k.Port = port
	return k, nil
}

var (
	_ dataplane.ProbeTaker  = (*Dataplane)(nil)
	_ dataplane.ProbeLinker = (*Dataplane)(nil)
)

// ProbeLinks returns the indexes of the interfaces the program takes the
// probes' answers on: those it is attached to (the interface maps' last
// write). Frames arriving on a device stacked on them are not counted.
func (d *Dataplane) ProbeLinks() ([]int, error) {
	d.ifSync.mu.Lock()
	defer d.ifSync.mu.Unlock()
	if d.ifSync.written == nil {
		return nil, nil
	}
	var out []int
	for _, v := range d.ifSync.written.slots {
		out = append(out, int(v.Ifindex))
	}
	return out, nil
}

// WatchProbes makes the program take the answers to the SYNs sent from
// src:port (a port the caller's socket reserves): a SYN-ACK is reported
// and answered with a RST, a RST reported and dropped. ProbeAnswers
// reads them.
func (d *Dataplane) WatchProbes(src netip.Addr, port uint16) error {
	k, err := probeSrc(src.WithZone(""), port)
	if err != nil {
		return err
	}
	t := &d.probes
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.srcs == nil {
		t.srcs, t.ports = map[bpfXlbProbeSrc]bool{}, map[uint16]int{}
	}
	if t.srcs[k] {
		return nil
	}
	if len(t.srcs) >= probeMaxSrcs {
		return fmt.Errorf("probe source %v port %d: %d sources registered already, the most the program holds", src, port, len(t.srcs))
	}
	var one uint32 = 1
	if err := d.objs.XlbProbeSrcs.Update(&k, &one, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("probe source %v port %d: %w", src, port, err)
	}
	if t.ports[port] == 0 {
		if err := d.setProbePort(port, true); err != nil {
			_ = d.objs.XlbProbeSrcs.Delete(&k)
			return err
		}
	}
	t.srcs[k] = true
	t.ports[port]++
	return nil
}

// UnwatchProbes undoes WatchProbes: the kernel answers again.
func (d *Dataplane) UnwatchProbes(src netip.Addr, port uint16) error {
	k, err := probeSrc(src.WithZone(""), port)
	if err != nil {
		return err
	}
	t := &d.probes
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.srcs[k] {
		return nil
	}
	return d.unwatchLocked(k, port)
}

// unwatchLocked removes k, of port. Called with d.probes.mu held.
func (d *Dataplane) unwatchLocked(k bpfXlbProbeSrc, port uint16) error {
	t := &d.probes
	var err error
	if t.ports[port] == 1 {
		err = d.setProbePort(port, false)
	}
	if derr := d.objs.XlbProbeSrcs.Delete(&k); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
		err = errors.Join(err, fmt.Errorf("probe source port %d: %w", port, derr))
	}
	delete(t.srcs, k)
	if t.ports[port]--; t.ports[port] == 0 {
		delete(t.ports, port)
	}
	return err
}

// unwatchAll removes every source (Close): once the process is gone, its
// ports are free for any socket, whose answers the kernel must get.
func (d *Dataplane) unwatchAll() {
	t := &d.probes
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.srcs {
		if err := d.unwatchLocked(k, k.Port); err != nil {
			d.log.Warn("health checks: cannot remove a probe source from the program", "error", err)
		}
	}
	if t.ring != nil {
		t.ring.close()
		t.ring = nil
	}
}

// setProbePort sets or clears port's bit in xlb_probe_ports. Called with
// d.probes.mu held.
func (d *Dataplane) setProbePort(port uint16, on bool) error {
	idx := uint32(port) / 64
	var w uint64
	if err := d.objs.XlbProbePorts.Lookup(&idx, &w); err != nil {
		return fmt.Errorf("probe port %d: %w", port, err)
	}
	if on {
		w |= 1 << (port % 64)
	} else {
		w &^= 1 << (port % 64)
	}
	if err := d.objs.XlbProbePorts.Update(&idx, &w, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("probe port %d: %w", port, err)
	}
	return nil
}

// ProbeAnswers appends to out the answers the program reported since the
// last call, and returns it. One reader at a time.
func (d *Dataplane) ProbeAnswers(out []dataplane.ProbeAnswer) ([]dataplane.ProbeAnswer, error) {
	t := &d.probes
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ring == nil && t.err == nil {
		ncpu, err := ebpf.PossibleCPU()
		if err == nil {
			t.ring, err = openRing(d.objs.XlbProbeHeads, d.objs.XlbProbeSlots, ncpu, probeSlots, probeSlotSize)
		}
		t.err = err
	}
	if t.err != nil {
		return out, fmt.Errorf("health check answers: %w", t.err)
	}
	t.ring.each(1<<30, func(rec []byte) {
		if a, ok := decodeProbeAns(rec); ok {
			out = append(out, a)
		}
	})
	return out, nil
}

// EventProbeAnswersLost counts, in Stats' events once the answers are
// read, the health checks' answers overwritten in their CPU's ring before
// they were read (their checks wait for the SYN's resend).
const EventProbeAnswersLost = "probe_answers_lost"

// probeAnswersLost is the answers overwritten before they were read, if
// they are read.
func (d *Dataplane) probeAnswersLost() (uint64, bool) {
	t := &d.probes
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ring == nil {
		return 0, false
	}
	return t.ring.lost.Load(), true
}

// decodeProbeAns decodes a struct xlb_probe_ans.
func decodeProbeAns(b []byte) (dataplane.ProbeAnswer, bool) {
	if len(b) < 40 {
		return dataplane.ProbeAnswer{}, false
	}
	if b[24] != familyV4 && b[24] != familyV6 {
		return dataplane.ProbeAnswer{}, false
	}
	from := wordsAddr([16]uint8(b[0:16]), b[24])
	return dataplane.ProbeAnswer{
		From:    netip.AddrPortFrom(from, binary.NativeEndian.Uint16(b[16:])),
		Port:    binary.NativeEndian.Uint16(b[18:]),
		Ack:     binary.BigEndian.Uint32(b[20:]),
		Refused: b[25] != 0,
		Taken:   int64(binary.NativeEndian.Uint64(b[32:])),
	}, true
}
