package health

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"
)

// check is the state of one check. Its fields are guarded by Manager.mu,
// but for those a run reads without it, which never change: addr, port,
// tcp. Update replaces the whole struct when the probe changes, so a
// worker whose check is no longer in Manager.checks drops its result.
//
// There are 64,000 of them at issue 13's scale, so the struct is kept
// small (128 bytes, a size class of Go's allocator; the test
// TestCheckSize holds it there): times are nanoseconds since
// Manager.epoch instead of time.Time (24 bytes each), a tcp check is its
// own Checker (tcpCheck), with no checker of its own to allocate, what
// only other checks have (their checker, a weight) is behind ext, the
// address is 16 bytes rather than a netip.Addr's 24, and the counts and
// the last duration are 32 bits (176 bytes before the first two, 160
// before the others).
type check struct {
	key string // the caller's string, shared
	// spec may be shared with other checks (UpdateChecks); the target is
	// this check's: addr and port.
	spec *Spec
	// ext is what only some checks have: a checker of their own, a
	// weight, a zoned address; nil for a tcp check (its own Checker).
	ext *checkExt
	// The last run's error, or why the Spec is invalid, is in
	// Manager.lastErrs: most checks pass, and 16 bytes in each made a
	// check 128 bytes, not 112 (1 MB at 64,000).
	//
	// addr is the target's address, 16 bytes (fam says which family): a
	// netip.Addr is 24.
	addr    [16]byte
	lastRun int64 // start of the last run since Manager.epoch; none while runs is 0
	at      int64 // the next run since Manager.epoch: the heap's key
	// tcp and route are a tcp check's (tcpCheck): where its SYNs go and
	// from where, shared by the checks of one Spec, and the prober that
	// sends them.
	tcp   *tcpDest
	route atomic.Pointer[synRoute]

	// runs counts to 4 billion: 136 years of runs a second.
	runs uint32
	// successes and failures are consecutive; they stop at the largest
	// int32 (CheckStatus's ints would not: 68 years of runs a second).
	successes int32
	failures  int32
	qseq      uint32 // counts the check's entries in Manager.queue (checkHeap)
	// lastDur is the last run's duration in microseconds (35 minutes at
	// most: longer is kept as that).
	lastDur uint32
	fam     addrFam
	queued  bool // waiting in Manager.queue for its next run
	port    uint16
	state   State
	// gone is set when the check leaves Manager.checks (removed, or
	// replaced by a new check of its key): its runs' results are
	// dropped. Cheaper than looking its key up for every run.
	gone bool
	// gen is the low bits of the Update that last had the check: one
	// that does not is removed, and every check that stays is marked, so
	// wrapping around is harmless.
	gen     uint8
	invalid bool // the Spec is invalid (its last error says why): the check never runs
}

// checkExt is what only some checks have (check.ext).
type checkExt struct {
	// checker is the check's Checker, when it is not a tcp check (those
	// are their own) and runs (not type none, not an invalid Spec).
	checker Checker
	// weight is the weight the check sets (misc_dynamic, file).
	weight Weight
	// zoned is the target's address when it has a zone.
	zoned netip.Addr
}

// addrFam is the family of check.addr.
type addrFam uint8

const (
	famNone addrFam = iota // no address
	fam4
	fam6
	famZoned // in ext.zoned
)

// setAddr makes a the check's address.
func (c *check) setAddr(a netip.Addr) {
	switch {
	case !a.IsValid():
		c.fam = famNone
	case a.Zone() != "":
		c.fam = famZoned
		c.more().zoned = a
	case a.Is4():
		c.fam, c.addr = fam4, a.As16()
	default:
		c.fam, c.addr = fam6, a.As16()
	}
}

// address is the check's target address.
func (c *check) address() netip.Addr {
	switch c.fam {
	case fam4:
		return netip.AddrFrom16(c.addr).Unmap()
	case fam6:
		return netip.AddrFrom16(c.addr)
	case famZoned:
		return c.ext.zoned
	}
	return netip.Addr{}
}

// more is c.ext, made if need be.
func (c *check) more() *checkExt {
	if c.ext == nil {
		c.ext = &checkExt{}
	}
	return c.ext
}

// checker is what runs the check: a tcp check itself, else its own; nil
// when it never runs.
func (c *check) checker() Checker {
	if c.tcp != nil {
		return (*tcpCheck)(c)
	}
	if c.ext != nil {
		return c.ext.checker
	}
	return nil
}

// weight is the weight the check sets.
func (c *check) weight() Weight {
	if c.ext == nil {
		return Weight{}
	}
	return c.ext.weight
}

func (c *check) setWeight(w Weight) {
	if c.ext != nil || w != (Weight{}) {
		c.more().weight = w
	}
}

// setDuration records the last run's duration.
func (c *check) setDuration(d time.Duration) {
	c.lastDur = uint32(min(max(d, 0)/time.Microsecond, math.MaxUint32))
}

// duration is the last run's duration.
func (c *check) duration() time.Duration { return time.Duration(c.lastDur) * time.Microsecond }

// target is the real server the check is of.
func (c *check) target() netip.AddrPort { return netip.AddrPortFrom(c.address(), c.port) }
