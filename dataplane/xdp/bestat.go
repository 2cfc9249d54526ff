package xdp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// The backends' counters (xlb_be_stat_v3, bpf/lib/maps.h) are an array
// with a slice of maxBackends entries per possible CPU, each written only
// by its CPU: Stats reads the slices' first ids and sums them, a new id's
// entries are zeroed on every CPU. As a per-CPU array (xlb_be_stat_v1) it
// cost a per-CPU allocation per entry: 0.2 s of every start.

// retiredBeStatPins are the pins of the maps it replaced, removed when
// found: xlb_be_stat_v1, the per-CPU array (40 bytes per backend id and
// CPU), and xlb_be_stat_v2, this array without BPF_F_MMAPABLE (read with
// batch lookups, 95 ms at 65,536 backends on two CPUs). A program still
// attached keeps its map until it is replaced; the counters start again
// from zero in the new map.
var retiredBeStatPins = []string{"xlb_be_stat_v1", "xlb_be_stat_v2"}

const statsSize = int(unsafe.Sizeof(bpfXlbStats{}))

// sizeBeStat sizes xlb_be_stat_v3 for the possible CPUs.
func sizeBeStat(spec *ebpf.CollectionSpec) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	spec.Maps[bpfMapXlbBeStatV3].MaxEntries = uint32(ncpu * maxBackends)
	return nil
}

// removeRetiredBeStat removes the pins of the maps xlb_be_stat_v3
// replaced.
func (d *Dataplane) removeRetiredBeStat() {
	if d.opts.PinPath == "" {
		return
	}
	for _, name := range retiredBeStatPins {
		p := filepath.Join(d.opts.PinPath, name)
		if err := os.Remove(p); err == nil {
			d.log.Info("removed the pin of a retired map", "pin", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("cannot remove the pin of a retired map", "pin", p, "error", err)
		}
	}
}

// beStats reads and resets xlb_be_stat_v3. A read maps the pages of the
// ids it reads, one CPU's slice at a time, and unmaps them: the kernel
// maps every page of a range at mmap, and a mapping of the whole array
// kept (20 MiB at two CPUs) would count in the daemon's RSS.
type beStats struct {
	m    *ebpf.Map
	ncpu int
}

func openBeStats(m *ebpf.Map) (beStats, error) {
	ncpu := int(m.MaxEntries()) / maxBackends
	if ncpu < 1 || int(m.MaxEntries()) != ncpu*maxBackends || int(m.ValueSize()) != statsSize {
		return beStats{}, fmt.Errorf("map %s: %d entries of %d bytes: not a slice of %d per CPU", bpfMapXlbBeStatV3, m.MaxEntries(), m.ValueSize(), maxBackends)
	}
	return beStats{m: m, ncpu: ncpu}, nil
}

// statsWords is struct xlb_stats in 64-bit words: packets, bytes,
// packets_out, bytes_out, conns.
const statsWords = statsSize / 8

// read sums the counters of ids [0, n) over the CPUs.
func (b beStats) read(n uint32) ([]dataplane.Counters, error) {
	out := make([]dataplane.Counters, n)
	if n == 0 {
		return out, nil
	}
	page := os.Getpagesize()
	for c := range b.ncpu {
		// The pages holding entries [c*maxBackends, c*maxBackends+n).
		off := c * maxBackends * statsSize
		first := off &^ (page - 1)
		length := (off - first + int(n)*statsSize + page - 1) &^ (page - 1)
		mem, err := unix.Mmap(b.m.FD(), int64(first), length, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return out, fmt.Errorf("map %s (CPU %d's counters): %w", bpfMapXlbBeStatV3, c, err)
		}
		// Written by the program meanwhile: each word read whole.
		w := unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off-first])), int(n)*statsWords)
		for i := range out {
			e := w[i*statsWords : i*statsWords+statsWords : i*statsWords+statsWords]
			out[i].Add(dataplane.Counters{Packets: atomic.LoadUint64(&e[0]), Bytes: atomic.LoadUint64(&e[1]),
				PacketsOut: atomic.LoadUint64(&e[2]), BytesOut: atomic.LoadUint64(&e[3]), Connections: atomic.LoadUint64(&e[4])})
		}
		if err := unix.Munmap(mem); err != nil {
			return out, fmt.Errorf("unmap %s: %w", bpfMapXlbBeStatV3, err)
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

func (q *beStatQueue) reset() { q.keys = keepRoom(q.keys) }

func (q *beStatQueue) flush(d *Dataplane) error {
	if len(q.keys) == 0 {
		return nil
	}
	d.wrote(bpfMapXlbBeStatV3, q.keys)
	keys := make([]uint32, 0, len(q.keys)*q.stats.ncpu)
	for c := range q.stats.ncpu {
		for _, id := range q.keys {
			keys = append(keys, uint32(c*maxBackends)+id)
		}
	}
	if _, err := q.stats.m.BatchUpdate(keys, make([]bpfXlbStats, len(keys)), nil); err != nil {
		return fmt.Errorf("reset %s: %w", bpfMapXlbBeStatV3, err)
	}
	return nil
}
