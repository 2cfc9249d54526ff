package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
)

// The backends' counters (xlb_be_stat_v2, bpf/lib/maps.h) are an array
// with a slice of maxBackends entries per possible CPU, each written only
// by its CPU, mapped into this process: Stats reads the slices' first ids
// and sums them, a new id's entries are zeroed in place. As a per-CPU
// array (xlb_be_stat_v1) it cost a per-CPU allocation per entry: 0.2 s of
// every start.

// retiredBeStatPin is the pin of the per-CPU array it replaced, removed
// when found (it holds 40 bytes per backend id and CPU).
const retiredBeStatPin = "xlb_be_stat_v1"

const statsSize = int(unsafe.Sizeof(bpfXlbStats{}))

// sizeBeStat sizes xlb_be_stat_v2 for the possible CPUs.
func sizeBeStat(spec *ebpf.CollectionSpec) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	spec.Maps[bpfMapXlbBeStatV2].MaxEntries = uint32(ncpu * maxBackends)
	return nil
}

// removeRetiredBeStat removes the pin of xlb_be_stat_v1 left by an
// earlier version (a program still attached keeps its map until it is
// replaced).
func (d *Dataplane) removeRetiredBeStat() {
	if d.opts.PinPath == "" {
		return
	}
	p := filepath.Join(d.opts.PinPath, retiredBeStatPin)
	if err := os.Remove(p); err == nil {
		d.log.Info("removed the pin of a retired map", "pin", p)
	} else if !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("cannot remove the pin of a retired map", "pin", p, "error", err)
	}
}

// beStats is xlb_be_stat_v2, mapped.
type beStats struct {
	mem  *ebpf.Memory
	ncpu int
}

func openBeStats(m *ebpf.Map) (beStats, error) {
	mem, err := m.Memory()
	if err != nil {
		return beStats{}, fmt.Errorf("map %s: %w", bpfMapXlbBeStatV2, err)
	}
	ncpu := int(m.MaxEntries()) / maxBackends
	if ncpu < 1 || int(mem.Size()) < ncpu*maxBackends*statsSize {
		return beStats{}, fmt.Errorf("map %s: %d entries, %d bytes mapped: not a slice of %d per CPU", bpfMapXlbBeStatV2, m.MaxEntries(), mem.Size(), maxBackends)
	}
	return beStats{mem: mem, ncpu: ncpu}, nil
}

// read sums the counters of ids [0, n) over the CPUs.
func (b beStats) read(n uint32) ([]dataplane.Counters, error) {
	out := make([]dataplane.Counters, n)
	if n == 0 {
		return out, nil
	}
	buf := make([]byte, int(n)*statsSize)
	ne := binary.NativeEndian
	for c := range b.ncpu {
		if _, err := b.mem.ReadAt(buf, int64(c*maxBackends*statsSize)); err != nil {
			return out, fmt.Errorf("read %s: %w", bpfMapXlbBeStatV2, err)
		}
		for id := range out {
			e := buf[id*statsSize:]
			// struct xlb_stats: packets, bytes, packets_out, bytes_out, conns.
			out[id].Add(dataplane.Counters{Packets: ne.Uint64(e[0:]), Bytes: ne.Uint64(e[8:]), PacketsOut: ne.Uint64(e[16:]),
				BytesOut: ne.Uint64(e[24:]), Connections: ne.Uint64(e[32:])})
		}
	}
	return out, nil
}

// beStatQueue zeroes the counters of new backend ids on every CPU.
type beStatQueue struct {
	stats *beStats
	keys  []uint32
}

func (q *beStatQueue) put(k uint32) { q.keys = append(q.keys, k) }

func (q *beStatQueue) flush(d *Dataplane) error {
	if len(q.keys) == 0 {
		return nil
	}
	defer func() { q.keys = q.keys[:0] }()
	d.wrote(bpfMapXlbBeStatV2, q.keys)
	var zero [statsSize]byte
	for _, id := range q.keys {
		for c := range q.stats.ncpu {
			if _, err := q.stats.mem.WriteAt(zero[:], int64((c*maxBackends+int(id))*statsSize)); err != nil {
				return fmt.Errorf("reset %s: %w", bpfMapXlbBeStatV2, err)
			}
		}
	}
	return nil
}
