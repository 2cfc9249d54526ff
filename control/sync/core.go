package sync

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// The sync's protocol core, as vrrp/core.go: a pure state machine. An
// input (a typed value) goes in with the time, actions come out; it starts
// no goroutine, never sleeps and does no I/O. It decides when this
// director sends (its role), batches the dataplane's reports into
// datagrams, keeps each peer's replay window (xlb), asks the peers for
// their tables at start and knows when it has them (sync_ready).

// Protocol is [sync] protocol.
type Protocol string

const (
	ProtocolXLB  Protocol = "xlb"  // authenticated, sequenced, bulk sync
	ProtocolIPVS Protocol = "ipvs" // the kernel's IPVS sync, version 1
)

// Settings are what the core decides with.
type Settings struct {
	Protocol Protocol
	// FollowRole: a VRRP instance decides (MASTER sends, BACKUP does
	// not); otherwise this director sends always. Every role receives.
	FollowRole bool
	// Peers are xlb's unicast peers; none: the multicast group.
	Peers []netip.Addr
	// ReadyTimeout bounds the wait for the peers' tables (xlb); with
	// ipvs, which has no bulk sync, it is the wait.
	ReadyTimeout time.Duration
	// Refresh is how often a sending director sends its whole table again
	// (long-lived flows, records lost on the way); 0 never.
	Refresh time.Duration
}

// Timing of the core.
const (
	// FlushDelay is the longest a report waits for others to fill a
	// datagram (IPVS waits up to 2 s).
	FlushDelay = 10 * time.Millisecond
	// BulkRetry is how often a bulk request that got no answer is sent
	// again.
	BulkRetry = time.Second
	// BulkAttempts bounds the requests of a peer whose dump arrives
	// incomplete (records lost on the way).
	BulkAttempts = 3
	// SendGrace is how long a director that left MASTER still sends: the
	// reports of the flows it decided last are still coming.
	SendGrace = 2 * time.Second
	// flushRecords sends at once once this many reports wait.
	flushRecords = 255
)

// Inputs.
type input interface{ isInput() }

type (
	// inStart: the node runs; epoch is this boot's (request ids).
	inStart struct{ epoch uint64 }
	// inRole: the followed VRRP instance is (not) MASTER.
	inRole struct{ master bool }
	// inReports: flows the dataplane reported.
	inReports struct{ conns []dataplane.Conn }
	// inDatagram: a datagram that decoded (its records converted;
	// dropped: the reasons of those that did not).
	inDatagram struct {
		from       netip.Addr
		typ        MsgType // MsgConns for IPVS
		epoch, seq uint64  // xlb
		reqID      uint64
		count      uint32
		conns      []dataplane.Conn
		dropped    []Reason
	}
	// inRefused: a datagram the decoder refused.
	inRefused struct{ reason Reason }
	// inApplied: what the dataplane did with an actApply's connections.
	inApplied struct{ results []dataplane.ImportResult }
	// inTimer: the clock reached the core's deadline.
	inTimer struct{}
)

func (inStart) isInput()    {}
func (inRole) isInput()     {}
func (inReports) isInput()  {}
func (inDatagram) isInput() {}
func (inRefused) isInput()  {}
func (inApplied) isInput()  {}
func (inTimer) isInput()    {}

type actKind uint8

const (
	actSend        actKind = iota + 1 // send conns to every peer
	actBulkRequest                    // ask to (zero: the group) for its table, as reqID
	actDump                           // send the whole table to to, answering reqID, then its end
	actRefresh                        // send the whole table to every peer
	actApply                          // import conns into the dataplane
	actReporting                      // turn the dataplane's reports on or off
	actReady                          // the peers' tables are here (or the wait is over)
)

var actNames = [...]string{actSend: "send", actBulkRequest: "bulk-request", actDump: "dump", actRefresh: "refresh",
	actApply: "apply", actReporting: "reporting", actReady: "ready"}

// action is one thing the node must do, in order.
type action struct {
	kind  actKind
	to    netip.Addr
	reqID uint64
	conns []dataplane.Conn
	on    bool
	note  string
}

func (a action) String() string {
	var b strings.Builder
	b.WriteString(actNames[a.kind])
	switch a.kind {
	case actSend, actApply:
		fmt.Fprintf(&b, " %d", len(a.conns))
	case actBulkRequest, actDump:
		to := "group"
		if a.to.IsValid() {
			to = a.to.String()
		}
		fmt.Fprintf(&b, " %s #%d", to, a.reqID)
	case actReporting:
		fmt.Fprintf(&b, " %v", a.on)
	case actReady:
		b.WriteString(" " + a.note)
	}
	return b.String()
}

// window is a peer's replay window (xlb): the newest sequence number of
// its newest boot and which of the 64 before it were seen.
type window struct {
	epoch, top uint64
	seen       uint64 // bit i: top-i seen
	lastSeen   time.Time
	records    uint64
}

// accept reports whether (epoch, seq) is new, and records it.
func (w *window) accept(epoch, seq uint64) bool {
	switch {
	case epoch < w.epoch:
		return false // an older boot of the peer
	case epoch > w.epoch:
		*w = window{epoch: epoch, top: seq, seen: 1, lastSeen: w.lastSeen, records: w.records}
		return true
	case seq > w.top:
		if d := seq - w.top; d < 64 {
			w.seen = w.seen<<d | 1
		} else {
			w.seen = 1
		}
		w.top = seq
		return true
	case w.top-seq >= 64 || w.seen&(1<<(w.top-seq)) != 0:
		return false
	}
	w.seen |= 1 << (w.top - seq)
	return true
}

// bulkState is the request to one peer (the zero address: the group).
type bulkState struct {
	id       uint64
	attempts int
	got      map[netip.Addr]uint32 // records received for id, by sender
	done     bool
}

// core is the sync's state.
type core struct {
	set     Settings
	started bool
	epoch   uint64
	nextID  uint64

	master     bool
	graceUntil time.Time
	sending    bool

	ready     bool
	readyAt   time.Time
	readyHow  string
	readyBy   time.Time
	bulk      map[netip.Addr]*bulkState
	nextBulk  time.Time
	pending   []dataplane.Conn
	flushAt   time.Time
	refreshAt time.Time

	peers map[netip.Addr]*window
	stats coreStats
}

// coreStats are the core's counters.
type coreStats struct {
	datagrams, records, applied, local uint64
	dropped                            map[Reason]uint64
	lastApplied                        time.Time
	bulkRequests, dumps                uint64
}

func newCore(set Settings) *core {
	return &core{set: set, peers: map[netip.Addr]*window{}, bulk: map[netip.Addr]*bulkState{},
		stats: coreStats{dropped: map[Reason]uint64{}}}
}

// handle runs one input at time now and returns what to do, in order.
func (c *core) handle(now time.Time, in input) []action {
	switch in := in.(type) {
	case inStart:
		return c.start(now, in.epoch)
	case inRole:
		c.master = in.master
		if !in.master && c.sending {
			c.graceUntil = now.Add(SendGrace)
		}
		return c.updateSending(now)
	case inReports:
		return c.report(now, in.conns)
	case inDatagram:
		return c.receive(now, in)
	case inRefused:
		c.stats.dropped[in.reason]++
		return nil
	case inApplied:
		c.applied(now, in.results)
		return nil
	case inTimer:
		return c.tick(now)
	}
	panic(fmt.Sprintf("sync: unknown input %T", in))
}

func (c *core) start(now time.Time, epoch uint64) []action {
	if c.started {
		return nil
	}
	c.started, c.epoch, c.nextID = true, epoch, epoch
	c.readyBy = now.Add(c.set.ReadyTimeout)
	acts := c.updateSending(now)
	if c.set.Protocol != ProtocolXLB {
		return acts // no bulk sync: ready once the wait is over
	}
	if len(c.set.Peers) == 0 {
		c.bulk[netip.Addr{}] = &bulkState{}
	}
	for _, p := range c.set.Peers {
		c.bulk[p] = &bulkState{}
	}
	return append(acts, c.requestBulk(now, true)...)
}

// requestBulk asks every peer that has not answered for its table: with a
// new request id when fresh (the first time, or after an incomplete
// dump), the same one on a retry.
func (c *core) requestBulk(now time.Time, fresh bool) []action {
	var acts []action
	for _, to := range c.bulkPeers() {
		b := c.bulk[to]
		if b.done {
			continue
		}
		if fresh || b.id == 0 {
			c.nextID++
			b.id, b.got = c.nextID, map[netip.Addr]uint32{}
		}
		c.stats.bulkRequests++
		acts = append(acts, action{kind: actBulkRequest, to: to, reqID: b.id})
	}
	c.nextBulk = now.Add(BulkRetry)
	return acts
}

// bulkPeers are the bulk requests' destinations, in a stable order.
func (c *core) bulkPeers() []netip.Addr {
	out := make([]netip.Addr, 0, len(c.bulk))
	for a := range c.bulk {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// updateSending turns the reports on or off as the role says.
func (c *core) updateSending(now time.Time) []action {
	want := c.started && (!c.set.FollowRole || c.master || now.Before(c.graceUntil))
	if want == c.sending {
		return nil
	}
	c.sending = want
	acts := []action{{kind: actReporting, on: want}}
	if want {
		if c.set.Refresh > 0 {
			c.refreshAt = now.Add(c.set.Refresh)
		}
	} else {
		c.refreshAt = time.Time{}
		acts = append(acts, c.flush()...) // what was reported until now still goes
	}
	return acts
}

func (c *core) report(now time.Time, conns []dataplane.Conn) []action {
	if !c.sending || len(conns) == 0 {
		return nil
	}
	c.pending = append(c.pending, conns...)
	if len(c.pending) >= flushRecords {
		return c.flush()
	}
	if c.flushAt.IsZero() {
		c.flushAt = now.Add(FlushDelay)
	}
	return nil
}

func (c *core) flush() []action {
	c.flushAt = time.Time{}
	if len(c.pending) == 0 {
		return nil
	}
	a := action{kind: actSend, conns: c.pending}
	c.pending = nil
	return []action{a}
}

func (c *core) receive(now time.Time, d inDatagram) []action {
	if c.set.Protocol == ProtocolXLB {
		if len(c.set.Peers) > 0 && !slices.Contains(c.set.Peers, d.from) {
			c.stats.dropped[ReasonPeer]++
			return nil
		}
		w := c.peers[d.from]
		if w == nil {
			w = &window{}
			c.peers[d.from] = w
		}
		if !w.accept(d.epoch, d.seq) {
			c.stats.dropped[ReasonReplay]++
			return nil
		}
		w.lastSeen = now
		w.records += uint64(len(d.conns) + len(d.dropped))
	}
	c.stats.datagrams++
	c.stats.records += uint64(len(d.conns) + len(d.dropped))
	for _, r := range d.dropped {
		c.stats.dropped[r]++
	}
	var acts []action
	switch d.typ {
	case MsgConns, MsgBulkConns:
		if d.typ == MsgBulkConns {
			if _, b := c.bulkOf(d.from, d.reqID); b != nil {
				b.got[d.from] += uint32(len(d.conns) + len(d.dropped))
			}
		}
		if len(d.conns) > 0 {
			acts = append(acts, action{kind: actApply, conns: d.conns})
		}
	case MsgBulkRequest:
		c.stats.dumps++
		acts = append(acts, action{kind: actDump, to: d.from, reqID: d.reqID})
	case MsgBulkEnd:
		acts = append(acts, c.bulkEnd(now, d)...)
	}
	return acts
}

// bulkOf is the request (and where it went: a peer, or the zero address
// for the group) that a bulk answer from from with id answers, if it is
// ours and still open.
func (c *core) bulkOf(from netip.Addr, id uint64) (netip.Addr, *bulkState) {
	for _, k := range []netip.Addr{from, {}} {
		if b := c.bulk[k]; b != nil && !b.done && b.id == id && id != 0 {
			return k, b
		}
	}
	return netip.Addr{}, nil
}

func (c *core) bulkEnd(now time.Time, d inDatagram) []action {
	to, b := c.bulkOf(d.from, d.reqID)
	if b == nil {
		return nil
	}
	if b.got[d.from] < d.count && b.attempts+1 < BulkAttempts {
		// Records were lost: ask again, with a new id.
		b.attempts++
		c.nextID++
		b.id, b.got = c.nextID, map[netip.Addr]uint32{}
		c.stats.bulkRequests++
		return []action{{kind: actBulkRequest, to: to, reqID: b.id}}
	}
	b.done = true
	for _, b := range c.bulk {
		if !b.done {
			return nil
		}
	}
	return c.becomeReady(now, "bulk")
}

func (c *core) becomeReady(now time.Time, how string) []action {
	if c.ready {
		return nil
	}
	c.ready, c.readyAt, c.readyHow = true, now, how
	c.nextBulk = time.Time{}
	return []action{{kind: actReady, note: how}}
}

func (c *core) applied(now time.Time, results []dataplane.ImportResult) {
	for _, r := range results {
		switch r {
		case dataplane.Imported:
			c.stats.applied++
			c.stats.lastApplied = now
		case dataplane.ImportLocal:
			c.stats.local++
		case dataplane.ImportUnknownService:
			c.stats.dropped[ReasonUnknownService]++
		case dataplane.ImportUnknownReal:
			c.stats.dropped[ReasonUnknownReal]++
		case dataplane.ImportFull:
			c.stats.dropped[ReasonFull]++
		default:
			c.stats.dropped[ReasonFailed]++
		}
	}
}

func (c *core) tick(now time.Time) []action {
	var acts []action
	if !c.flushAt.IsZero() && !now.Before(c.flushAt) {
		acts = append(acts, c.flush()...)
	}
	if !c.graceUntil.IsZero() && !now.Before(c.graceUntil) {
		c.graceUntil = time.Time{}
		acts = append(acts, c.updateSending(now)...)
	}
	if !c.ready && c.started && !now.Before(c.readyBy) {
		acts = append(acts, c.becomeReady(now, "timeout")...)
	}
	if !c.ready && !c.nextBulk.IsZero() && !now.Before(c.nextBulk) {
		acts = append(acts, c.requestBulk(now, false)...)
	}
	if c.sending && !c.refreshAt.IsZero() && !now.Before(c.refreshAt) {
		c.refreshAt = now.Add(c.set.Refresh)
		acts = append(acts, action{kind: actRefresh})
	}
	return acts
}

// next is the earliest deadline, zero if none.
func (c *core) next() time.Time {
	var t time.Time
	consider := func(x time.Time) {
		if !x.IsZero() && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	consider(c.flushAt)
	consider(c.graceUntil)
	if c.started && !c.ready {
		consider(c.readyBy)
		consider(c.nextBulk)
	}
	if c.sending {
		consider(c.refreshAt)
	}
	return t
}
