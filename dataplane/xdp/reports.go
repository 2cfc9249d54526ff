package xdp

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The program's report rings (bpf/lib/sync.h, lb_sync_report): a ring of
// ringSlots(ncpu) slots for each possible CPU in xlb_sync_slots, each
// CPU's next sequence number in xlb_sync_heads, both mapped read-only
// here. A CPU's writer never waits for the reader: a slot not read within
// a ring's worth of reports of its CPU is overwritten by the newest, and
// the reader counts it lost.

const (
	syncSlots    = int(bpfXlbLimitsXLB_LIMIT_SYNC_SLOTS) // a CPU's at most
	syncSlotSize = int(unsafe.Sizeof(bpfXlbSyncSlot{}))
	syncHeadSize = int(unsafe.Sizeof(bpfXlbSyncHead{}))
	// syncRingsBytes bounds the rings of all CPUs together: the array is
	// the kernel's memory, allocated at load whether sync runs or not.
	syncRingsBytes = 8 << 20
	// minSyncSlots is a CPU's ring at least, however many CPUs.
	minSyncSlots = 512
)

// ringSlots is the slots of each CPU's ring with ncpu possible CPUs: a
// power of two, syncSlots at most, and fewer when the rings of all would
// take more than syncRingsBytes (128 possible CPUs: 1024 each).
func ringSlots(ncpu int) int {
	n := syncSlots
	for n > minSyncSlots && ncpu*n*syncSlotSize > syncRingsBytes {
		n /= 2
	}
	return n
}

// sizeSyncRings sizes the report rings for ncpu possible CPUs.
func sizeSyncRings(spec *ebpf.CollectionSpec, ncpu int) error {
	n := ringSlots(ncpu)
	spec.Maps[bpfMapXlbSyncSlots].MaxEntries = uint32(ncpu * n)
	spec.Maps[bpfMapXlbSyncHeads].MaxEntries = uint32(ncpu)
	if err := spec.Variables[bpfVarXlbSyncRingSlots].Set(uint32(n)); err != nil {
		return fmt.Errorf("report ring slots: %w", err)
	}
	return nil
}

// reportRing reads rings of this shape: the report rings, and the
// health-check answers' (probe.go). Not safe for concurrent use: one
// reader goroutine.
type reportRing struct {
	heads, slots []byte   // mapped
	n            int      // slots of a CPU's ring
	slotSize     int      // bytes: the sequence number, then the record
	next         []uint64 // per CPU: the sequence number of its next report to read
	lost         atomic.Uint64
	rec          []byte // a record's copy
}

// openReportRing maps the rings of heads and slots, sized by
// sizeSyncRings for ncpu CPUs.
func openReportRing(heads, slots *ebpf.Map, ncpu int) (*reportRing, error) {
	return openRing(heads, slots, ncpu, ringSlots(ncpu), syncSlotSize)
}

// openRing maps rings of n slots of slotSize bytes for ncpu CPUs.
func openRing(heads, slots *ebpf.Map, ncpu, n, slotSize int) (*reportRing, error) {
	if int(heads.MaxEntries()) != ncpu || int(heads.ValueSize()) != syncHeadSize ||
		int(slots.MaxEntries()) != ncpu*n || int(slots.ValueSize()) != slotSize {
		return nil, fmt.Errorf("rings: %d heads of %d bytes and %d slots of %d bytes are not %d CPUs' rings of %d",
			heads.MaxEntries(), heads.ValueSize(), slots.MaxEntries(), slots.ValueSize(), ncpu, n)
	}
	h, err := unix.Mmap(heads.FD(), 0, pageUp(ncpu*syncHeadSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", heads, os.NewSyscallError("mmap", err))
	}
	s, err := unix.Mmap(slots.FD(), 0, pageUp(ncpu*n*slotSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(h)
		return nil, fmt.Errorf("map %s: %w", slots, os.NewSyscallError("mmap", err))
	}
	return newRing(h[:ncpu*syncHeadSize], s[:ncpu*n*slotSize], ncpu, n, slotSize), nil
}

// newRing reads the rings in heads and slots.
func newRing(heads, slots []byte, ncpu, n, slotSize int) *reportRing {
	return &reportRing{heads: heads, slots: slots, n: n, slotSize: slotSize, next: make([]uint64, ncpu), rec: make([]byte, slotSize-8)}
}

func pageUp(n int) int {
	p := os.Getpagesize()
	return (n + p - 1) / p * p
}

// close unmaps the rings.
func (r *reportRing) close() {
	_ = unix.Munmap(r.heads[:cap(r.heads)])
	_ = unix.Munmap(r.slots[:cap(r.slots)])
}

// word is the 64-bit word at off in b, read atomically.
func word(b []byte, off int) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off])))
}

// read appends to out the reports written since the last read, up to max,
// CPU after CPU, and returns it; pending says whether reports were left
// unread (max reached).
func (r *reportRing) read(out []bpfXlbSyncRec, max int) (_ []bpfXlbSyncRec, pending bool) {
	pending = r.each(max-len(out), func(rec []byte) {
		if v, ok := decodeSyncRec(rec); ok {
			out = append(out, v)
		}
	})
	return out, pending
}

// each calls fn with a copy of each record written since the last call,
// up to max, CPU after CPU, and reports whether records were left unread
// (max reached). fn must not keep rec. A slot is kept only if its
// sequence number read the same before and after its copy (its writer
// marks it 0 first); a slot its writer has taken but not finished ends
// that CPU's read until the next call, unless the CPU has since written
// half a ring more (then it is counted lost).
func (r *reportRing) each(max int, fn func(rec []byte)) (pending bool) {
	read := 0
	for cpu := range r.next {
		head := word(r.heads, cpu*syncHeadSize)
		next := r.next[cpu]
		if head-next > uint64(r.n) {
			r.lost.Add(head - uint64(r.n) - next)
			next = head - uint64(r.n)
		}
		for next < head {
			if read >= max {
				pending = true
				break
			}
			off := (cpu*r.n + int(next%uint64(r.n))) * r.slotSize
			seq := word(r.slots, off)
			if seq != next+1 {
				if seq > next+1 || head-next > uint64(r.n/2) {
					r.lost.Add(1) // overwritten, or its writer is gone
					next++
					continue
				}
				break // being written: next time
			}
			copy(r.rec, r.slots[off+8:off+r.slotSize])
			if word(r.slots, off) != seq {
				r.lost.Add(1) // overwritten while copied
				next++
				continue
			}
			fn(r.rec)
			read++
			next++
		}
		r.next[cpu] = next
	}
	return pending
}
