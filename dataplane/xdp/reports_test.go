package xdp

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// TestSyncReportRingLapped: a CPU that writes more reports than its ring
// holds before the reader comes overwrites its oldest; the reader gets the
// newest syncSlots in the order written, counts the others lost, and reads
// what comes after.
func TestSyncReportRingLapped(t *testing.T) {
	e := manualEnv(t)
	u := svc(dataplane.RoundRobin, e.pool(3))
	u.Key.Proto = dataplane.UDP
	e.apply(u)
	if err := e.d.SetReporting(true); err != nil {
		t.Fatal(err)
	}
	r, err := openReportRing(e.d.objs.XlbSyncHeads, e.d.objs.XlbSyncSlots, ebpf.MustPossibleCPU())
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()

	// New UDP flows from one client, a source port each, all on CPU 0:
	// each is reported when it is created.
	send := func(from, n int) {
		t.Helper()
		out := make([]byte, 2048)
		err := e.ns.Do(func() error {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(0)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return err
			}
			for i := from; i < from+n; i++ {
				f := udpFrame(client(1), vip4, uint16(i), 80).Bytes()
				opts := ebpf.RunOptions{Data: f, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(f)), IngressIfindex: uint32(e.eth0)}}
				if ret, err := e.d.Program().Run(&opts); err != nil || ret != xdpTX {
					t.Errorf("flow %d: %v %v", i, actionNames[ret], err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if r.n != ringSlots(ebpf.MustPossibleCPU()) {
		t.Fatalf("ring of %d slots", r.n)
	}
	syncSlots := r.n
	const over = 100
	send(1000, syncSlots+over)
	got, pending := r.read(nil, 2*syncSlots)
	if len(got) != syncSlots || pending {
		t.Fatalf("read %d reports (pending %v), want the ring's %d", len(got), pending, syncSlots)
	}
	for i, rec := range got {
		if want := uint16(1000 + over + i); rec.Flow.Sport != want {
			t.Fatalf("report %d is of port %d, want %d (the newest, in order)", i, rec.Flow.Sport, want)
		}
	}
	if n := r.lost.Load(); n != over {
		t.Errorf("%d reports counted lost, want %d", n, over)
	}
	if s := e.d.SyncStats(); s.Reported != uint64(syncSlots+over) {
		t.Errorf("%d reported, want %d", s.Reported, syncSlots+over)
	}

	send(40000, 3)
	got, _ = r.read(got[:0], 2*syncSlots)
	if len(got) != 3 || got[0].Flow.Sport != 40000 || got[2].Flow.Sport != 40002 {
		t.Errorf("after the lap read %d reports %v, want ports 40000-40002", len(got), got)
	}
	if n := r.lost.Load(); n != over {
		t.Errorf("%d reports counted lost after the lap, want %d", n, over)
	}
}

// TestReportRingSlots: the reader's handling of a slot by its sequence
// number, on a ring in plain memory written as lb_sync_report writes: a
// slot taken but not yet written (or marked busy) ends the read until its
// writer is done; a slot a later lap overwrote is lost; a slot whose
// writer never finished is given up once its CPU wrote half a ring more.
func TestReportRingSlots(t *testing.T) {
	r := newRing(make([]byte, syncHeadSize), make([]byte, syncSlots*syncSlotSize), 1, syncSlots, syncSlotSize)
	ne := binary.NativeEndian
	setHead := func(v uint64) { ne.PutUint64(r.heads, v) }
	put := func(seq uint64, commit uint64) { // the slot of seq, holding port seq
		off := int(seq%uint64(syncSlots)) * syncSlotSize
		ne.PutUint64(r.slots[off:], commit)
		ne.PutUint16(r.slots[off+8+32:], uint16(seq))
	}
	ports := func(recs []bpfXlbSyncRec) []uint16 {
		var p []uint16
		for _, rec := range recs {
			p = append(p, rec.Flow.Sport)
		}
		return p
	}

	put(0, 1)
	put(1, 0) // busy
	put(2, 3)
	setHead(3)
	got, _ := r.read(nil, 100)
	if p := ports(got); len(p) != 1 || p[0] != 0 || r.next[0] != 1 {
		t.Fatalf("read %v, next %d; want port 0 then a stop at the busy slot", p, r.next[0])
	}
	put(1, 2)
	got, _ = r.read(got[:0], 100)
	if p := ports(got); len(p) != 2 || p[0] != 1 || p[1] != 2 || r.lost.Load() != 0 {
		t.Fatalf("read %v, lost %d; want ports 1 and 2", p, r.lost.Load())
	}

	// Slot 3 taken by its writer, not yet marked: it still holds nothing
	// (seq 0 of a fresh ring, or an older lap's number).
	setHead(4)
	if got, _ = r.read(got[:0], 100); len(got) != 0 || r.next[0] != 3 {
		t.Fatalf("read %d reports from a slot not written, next %d", len(got), r.next[0])
	}
	// Overwritten by a later lap before it was read: lost.
	put(3, 3+uint64(syncSlots)+1)
	put(4, 5)
	setHead(5)
	got, _ = r.read(got[:0], 100)
	if p := ports(got); len(p) != 1 || p[0] != 4 || r.lost.Load() != 1 {
		t.Fatalf("read %v, lost %d; want port 4 and one lost", p, r.lost.Load())
	}
	// A writer that never finished slot 5, while its CPU wrote half a ring
	// more: given up.
	for s := uint64(6); s < 6+uint64(syncSlots/2)+1; s++ {
		put(s, s+1)
	}
	setHead(6 + uint64(syncSlots/2) + 1)
	got, _ = r.read(got[:0], syncSlots)
	if len(got) != syncSlots/2+1 || r.lost.Load() != 2 {
		t.Fatalf("read %d reports, lost %d; want %d and two lost", len(got), r.lost.Load(), syncSlots/2+1)
	}
	// max: the rest waits for the next call.
	for s := r.next[0]; s < r.next[0]+10; s++ {
		put(s, s+1)
	}
	setHead(r.next[0] + 10)
	got, pending := r.read(got[:0], 4)
	if len(got) != 4 || !pending {
		t.Fatalf("read %d reports with max 4, pending %v", len(got), pending)
	}
}

// TestReportRingTorn: a writer lapping the reader, as fast as it can, while
// the reader reads: every report read is whole (its words all say its
// sequence number, as written), and every one written is either read or
// counted lost. The writer writes as lb_sync_report does: the slot marked
// busy, the record, then its sequence number.
func TestReportRingTorn(t *testing.T) {
	r := newRing(make([]byte, syncHeadSize), make([]byte, syncSlots*syncSlotSize), 1, syncSlots, syncSlotSize)
	const total = 3_000_000
	head := (*atomic.Uint64)(unsafe.Pointer(&r.heads[0]))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(0); seq < total; seq++ {
			head.Store(seq + 1)
			off := int(seq%uint64(syncSlots)) * syncSlotSize
			commit := (*atomic.Uint64)(unsafe.Pointer(&r.slots[off]))
			commit.Swap(0)
			for w := 8; w < 8+syncRecSize; w += 8 {
				*(*uint64)(unsafe.Pointer(&r.slots[off+w])) = seq
			}
			commit.Swap(seq + 1)
		}
	}()
	var read uint64
	var recs []bpfXlbSyncRec
	check := func() {
		var pending bool
		for {
			recs, pending = r.read(recs[:0], 512)
			for _, rec := range recs {
				src := binary.NativeEndian.Uint64(rec.Flow.Src[:8])
				if binary.NativeEndian.Uint64(rec.Flow.Src[8:]) != src || binary.NativeEndian.Uint64(rec.Flow.Dst[:8]) != src ||
					uint64(rec.Svc)|uint64(rec.Backend)<<32 != src {
					t.Fatalf("torn report: %+v", rec)
				}
			}
			read += uint64(len(recs))
			if !pending {
				return
			}
		}
	}
	for {
		select {
		case <-done:
			check()
			if read+r.lost.Load() != total {
				t.Fatalf("%d read + %d lost, want %d written", read, r.lost.Load(), total)
			}
			t.Logf("%d read, %d lost", read, r.lost.Load())
			return
		default:
			check()
		}
	}
}

// TestRingSlots: each CPU's ring is as large as it may be while all rings
// together fit in 8 MiB, within 512..32768 slots.
func TestRingSlots(t *testing.T) {
	for _, c := range []struct{ ncpu, want int }{{1, 32768}, {2, 32768}, {4, 32768}, {5, 16384}, {16, 8192}, {17, 4096}, {64, 2048}, {128, 1024}, {256, 512}, {1024, 512}} {
		if got := ringSlots(c.ncpu); got != c.want {
			t.Errorf("ringSlots(%d) = %d, want %d", c.ncpu, got, c.want)
		}
	}
}
