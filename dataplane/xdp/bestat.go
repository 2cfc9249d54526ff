package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// The backends' counters (xlb_be_stat_v2, bpf/lib/maps.h) are an array
// with a slice of maxBackends entries per possible CPU, each written only
// by its CPU: Stats reads the slices' first ids and sums them, a new id's
// entries are zeroed on every CPU. As a per-CPU
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

// beStats reads and resets xlb_be_stat_v2. It reads with batch lookups
// from each CPU's slice (not mapped into the process: the kernel maps a
// whole array at mmap, whose 20 MiB at two CPUs then counted in the
// daemon's RSS).
type beStats struct {
	m    *ebpf.Map
	ncpu int
}

func openBeStats(m *ebpf.Map) (beStats, error) {
	ncpu := int(m.MaxEntries()) / maxBackends
	if ncpu < 1 || int(m.MaxEntries()) != ncpu*maxBackends || int(m.ValueSize()) != statsSize {
		return beStats{}, fmt.Errorf("map %s: %d entries of %d bytes: not a slice of %d per CPU", bpfMapXlbBeStatV2, m.MaxEntries(), m.ValueSize(), maxBackends)
	}
	return beStats{m: m, ncpu: ncpu}, nil
}

// read sums the counters of ids [0, n) over the CPUs.
func (b beStats) read(n uint32) ([]dataplane.Counters, error) {
	out := make([]dataplane.Counters, n)
	if n == 0 {
		return out, nil
	}
	chunk := min(int(n), counterChunk)
	keys := make([]byte, chunk*4)
	vals := make([]byte, chunk*statsSize)
	ne := binary.NativeEndian
	for c := range b.ncpu {
		base := uint32(c * maxBackends)
		for done := 0; done < int(n); {
			count := min(chunk, int(n)-done)
			got, err := lookupBatch(b.m, base+uint32(done), keys[:count*4], vals[:count*statsSize], count)
			if err != nil {
				return out, fmt.Errorf("read %s: %w", bpfMapXlbBeStatV2, err)
			}
			for i := range got {
				e := vals[i*statsSize:]
				// struct xlb_stats: packets, bytes, packets_out, bytes_out, conns.
				out[done+i].Add(dataplane.Counters{Packets: ne.Uint64(e[0:]), Bytes: ne.Uint64(e[8:]), PacketsOut: ne.Uint64(e[16:]),
					BytesOut: ne.Uint64(e[24:]), Connections: ne.Uint64(e[32:])})
			}
			if got == 0 {
				return out, fmt.Errorf("read %s: no entry at %d", bpfMapXlbBeStatV2, base+uint32(done))
			}
			done += got
		}
	}
	return out, nil
}

// batchAttr is union bpf_attr's batch member.
type batchAttr struct {
	inBatch, outBatch, keys, values uint64
	count, mapFd                    uint32
	elemFlags, flags                uint64
}

// lookupBatch reads count consecutive entries of array m from key start
// into keys and vals (BPF_MAP_LOOKUP_BATCH: for an array the batch
// position is the key before the first, which cilium/ebpf's cursor does
// not let one set). It returns how many it read.
func lookupBatch(m *ebpf.Map, start uint32, keys, vals []byte, count int) (int, error) {
	var prev, next uint32
	attr := batchAttr{outBatch: uint64(uintptr(unsafe.Pointer(&next))), keys: uint64(uintptr(unsafe.Pointer(&keys[0]))),
		values: uint64(uintptr(unsafe.Pointer(&vals[0]))), count: uint32(count), mapFd: uint32(m.FD())}
	if start > 0 {
		prev = start - 1
		attr.inBatch = uint64(uintptr(unsafe.Pointer(&prev)))
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_BATCH, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		runtime.KeepAlive(keys)
		runtime.KeepAlive(vals)
		runtime.KeepAlive(&prev)
		runtime.KeepAlive(&next)
		switch errno {
		case 0, unix.ENOENT: // ENOENT: the end of the map, attr.count read
			return int(attr.count), nil
		case unix.EINTR:
			continue
		}
		return 0, fmt.Errorf("BPF_MAP_LOOKUP_BATCH: %w", errno)
	}
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
	d.wrote(bpfMapXlbBeStatV2, q.keys)
	keys := make([]uint32, 0, len(q.keys)*q.stats.ncpu)
	for c := range q.stats.ncpu {
		for _, id := range q.keys {
			keys = append(keys, uint32(c*maxBackends)+id)
		}
	}
	if _, err := q.stats.m.BatchUpdate(keys, make([]bpfXlbStats, len(keys)), nil); err != nil {
		return fmt.Errorf("reset %s: %w", bpfMapXlbBeStatV2, err)
	}
	return nil
}
