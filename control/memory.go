package control

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// The daemon's memory: what it gives back after a configuration is
// installed, and how Go's collector is paced in the steady state
// (reload.go paces it during a reload).

// releaseMemory returns to the system, once the dataplane has applied the
// model of generation gen, the memory that reading the configuration and
// installing it took: with 65,536 real servers, hundreds of MB that the
// daemon would otherwise keep (Go returns freed memory only slowly).
//
// The live heap it paces the collector by (and the next reload's limit
// starts from, steadyLive) is measured once no status or scrape is in
// flight (readGate): one in flight held its reading of every counter and
// check, 17 MB at 64,000 real servers, and the next reloads' limit
// started that much higher (the peak RSS of statuses during reloads, in
// the scale benchmark, was 141-142 MiB; 129 with the gate).
//
// A reload started since the release was asked for (reloadsStarted is no longer
// reloads0) releases the memory itself once applied: a full collection
// in between would run through its reading of the new configuration (the
// scale benchmark's reloads follow each other, and each one's release ran
// into the next).
// It reports whether it did.
func (d *Daemon) releaseMemory(gen, reloads0 uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.rec.WaitApplied(ctx, gen); err != nil {
		return false
	}
	d.reads.waitQuiet(ctx) // at worst a minute of back-to-back reads: measured anyway
	if d.reloadsStarted.Load() != reloads0 {
		return false
	}
	debug.FreeOSMemory()
	setMemoryLimit(d.log)
	return true
}

// releaseLater releases memory (releaseMemory) in a goroutine of its own.
func (d *Daemon) releaseLater(gen uint64) {
	reloads0 := d.reloadsStarted.Load()
	go d.releaseMemory(gen, reloads0)
}

// decidedRelease is the fewest first results of checks after which the
// daemon returns memory again (releaseMemory) once none is undecided.
const decidedRelease = 1000

// readGate counts the reads of the whole state in flight (a status, a
// scrape of /metrics): they hold tens of MB for their time.
type readGate struct {
	n     atomic.Int64
	quiet chan struct{} // a token when n falls to 0 (capacity 1)
}

func newReadGate() *readGate { return &readGate{quiet: make(chan struct{}, 1)} }

// enter counts a read in; the function it returns counts it out (once).
// A nil gate counts nothing.
func (g *readGate) enter() func() {
	if g == nil {
		return func() {}
	}
	g.n.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			if g.n.Add(-1) == 0 {
				select {
				case g.quiet <- struct{}{}:
				default:
				}
			}
		})
	}
}

// waitQuiet returns once no read is in flight, or when ctx ends.
func (g *readGate) waitQuiet(ctx context.Context) {
	for g.n.Load() > 0 {
		select {
		case <-g.quiet: // n fell to 0 since: look again
		case <-ctx.Done():
			return
		}
	}
}

// heavyRead implements heavyReader: the socket's status streams count in.
func (d *Daemon) heavyRead() func() { return d.reads.enter() }

// memoryFloor is the least soft memory limit setMemoryLimit sets.
const memoryFloor = 96 << 20

// memoryMargin is the least a reload's heap is taken to grow by over its
// steady one (memoryRoom, reloadMemoryLimit), besides what reading its
// file takes. It was 32 MiB: once a status in flight no longer raised the
// steady heap it starts from (readGate), and the decoder no longer filled
// a map for each real server, 16 MiB kept reloads at 1,000 x 64 real
// servers within 224-283 ms (scale benchmark) and their peak RSS, with
// statuses during them, at 119 MiB instead of 129.
const memoryMargin = 16 << 20

// gcMargin is the least the steady heap grows by between two
// collections (the garbage made meanwhile). It was 32 MiB (memoryMargin was)
// while a tcp check's run made 380 bytes of garbage (at 64,000 checks
// every 5 s, 4 MB a second: a collection every few seconds). A run makes
// 18 now, and the steady daemon of 64,000 checks about 0.2 MB a second
// (its reconciler's rounds; 38 MB in 64 s with every allocation
// recorded, of which 30 were the profiler's and /proc's own): 4 MiB is a
// collection every 20 s or so. Go keeps the pages of its goal: with 8
// MiB the same daemon held 7 MB of free heap it had not returned, and
// its goal 4 MB over what 4 MiB gives. With GOGC 10 (about 4.5 MB of
// room) its collector took 0.16% of a core in the steady state.
const gcMargin = 4 << 20

// steadyLive is the live heap setMemoryLimit last found, once the
// configuration was applied (0: not yet): a reload's memory limit starts
// from it, not from the heap a status streaming at the time holds.
var steadyLive atomic.Uint64

// memoryRoom is the steady heap a reload's memory limit starts from, with
// a live heap of live bytes: live and a margin of half of it, at least
// memoryMargin (reloadMemoryLimit).
func memoryRoom(live uint64) int64 {
	return int64(live) + max(memoryMargin, int64(live/2))
}

// gcRoom is the heap the daemon may use in the steady state with a live
// heap of live bytes: live and a margin of a sixteenth of it, at least
// gcMargin (GOGC 6 at least: a live heap of 150 MB at the dataplane's
// limits, 262,144 real servers, is marked once for every 9 MB a status
// or a scrape makes; a reload lifts it, paceReload). Twice the live heap,
// Go's default, let the daemon of 64,000 checks hold 129 MiB of RSS; a
// quarter of it was 11-14 MB of room over a live heap of 45-55 MB, an
// eighth the 8 MiB gcMargin was (the goal after start 51 MB over a
// marked heap of 43). Below a live heap of 64 MiB, gcMargin decides.
func gcRoom(live uint64) int64 {
	return int64(live) + max(gcMargin, int64(live/16))
}

// gcPercent is the GOGC that makes the heap goal gcRoom(live) while the
// live heap is live: at most 100, Go's default.
func gcPercent(live uint64) int {
	if live == 0 {
		return 100
	}
	return int(min(100, 100*(gcRoom(live)-int64(live))/int64(live)))
}

// setMemoryLimit paces Go's collector for the heap the daemon holds now
// (live): the heap grows by gcMargin between collections, or a
// sixteenth of a larger heap (GOGC gcPercent, unless GOGC is set), and the
// soft memory limit is twice the live heap (at least memoryFloor; unless
// GOMEMLIMIT is set). What a burst holds live moves the heap goal with it
// (64,000 checks failing hold an error each, a status of as many real
// servers its reading of their counters), and the collector works harder
// at the limit instead of letting the heap double: a tighter limit (the
// live heap and the margin) made it run back to back through a storm of
// failing checks, a third of the daemon's CPU then, and doubled its CPU
// in the steady state. A limit is not a cap:
// the heap grows past it when it must; a reload lifts it until its
// configuration is applied.
func setMemoryLimit(log *slog.Logger) {
	live, ok := gcLiveHeap()
	if !ok {
		return
	}
	steadyLive.Store(live)
	if os.Getenv("GOGC") == "" {
		if p := gcPercent(live); debug.SetGCPercent(p) != p {
			log.Debug("Go GC percent", "percent", p, "live_heap", live)
		}
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := max(memoryFloor, 2*int64(live))
	if old := debug.SetMemoryLimit(limit); old != limit {
		log.Debug("Go memory limit", "limit", limit, "live_heap", live)
	}
}

// gcLiveHeap is the heap the last collection found live.
func gcLiveHeap() (uint64, bool) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	return s[0].Value.Uint64(), true
}
