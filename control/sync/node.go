package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// Config is a node's configuration ([sync], resolved).
type Config struct {
	Settings
	Interface string
	SyncID    uint8
	Port      uint16
	// Key is xlb's HMAC key (ProtocolXLB).
	Key []byte
}

// Options are a node's dependencies.
type Options struct {
	Logger    *slog.Logger
	Dataplane dataplane.ConnSyncer
	// Transport, when set, is used instead of UDP on the interface.
	Transport Transport
	// Epoch is this boot's (default: the time of NewNode): it must grow
	// from one start of the director to the next.
	Epoch uint64
	// OnReady is called once the node is sync_ready (not under a lock).
	OnReady func()
	// DumpRate bounds the datagrams a dump sends per second (default
	// 20000): a peer reads them at that pace without losing any.
	DumpRate int
}

// Node runs the sync of one director: the core, the dataplane's reports,
// the socket and the dumps.
type Node struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	dp   dataplane.ConnSyncer

	mu    sync.Mutex // the core, its timer
	core  *core
	timer *time.Timer
	armed time.Time

	ready atomic.Bool
	seq   atomic.Uint64
	tr    Transport
	dumps sync.WaitGroup
	// dumping are the peers a dump runs for (at most one each).
	dumping sync.Map
	sent    struct{ datagrams, records, bytes, errors atomic.Uint64 }
	ctx     context.Context
}

// NewNode checks cfg and prepares a node; nothing touches the host until
// Run.
func NewNode(cfg Config, opts Options) (*Node, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dataplane == nil {
		return nil, errors.New("connection sync needs the XDP dataplane")
	}
	if cfg.Protocol == ProtocolXLB && len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("sync key: %d bytes, at least %d", len(cfg.Key), MinKeyLen)
	}
	if opts.Epoch == 0 {
		opts.Epoch = uint64(time.Now().UnixNano())
	}
	if opts.DumpRate <= 0 {
		opts.DumpRate = 20000
	}
	return &Node{cfg: cfg, opts: opts, log: opts.Logger, dp: opts.Dataplane, core: newCore(cfg.Settings)}, nil
}

// Ready reports whether the node is sync_ready.
func (n *Node) Ready() bool { return n.ready.Load() }

// SetRole tells the node whether its VRRP instance is MASTER.
func (n *Node) SetRole(master bool) { n.step(inRole{master: master}) }

// Run runs the node until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	tr := n.opts.Transport
	if tr == nil {
		u, err := ListenUDP(UDPOptions{Interface: n.cfg.Interface, Port: n.cfg.Port, Group: DefaultGroup, Peers: n.cfg.Peers})
		if err != nil {
			return err
		}
		tr = u
	}
	n.mu.Lock()
	n.tr, n.ctx = tr, ctx
	n.timer = time.AfterFunc(time.Hour, n.onTimer)
	n.timer.Stop()
	n.mu.Unlock()
	defer n.dumps.Wait()
	reports := n.dp.Reports()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.receive()
	}()
	n.step(inStart{epoch: n.opts.Epoch})
	n.log.Info("connection sync started", "protocol", n.cfg.Protocol, "interface", n.cfg.Interface, "sync_id", n.cfg.SyncID,
		"peers", n.cfg.Peers, "follow_vrrp", n.cfg.FollowRole)
	for {
		select {
		case <-ctx.Done():
			n.mu.Lock()
			n.timer.Stop()
			n.mu.Unlock()
			_ = n.dp.SetReporting(false)
			tr.Close()
			<-done
			return nil
		case b, ok := <-reports:
			if !ok {
				reports = nil
				continue
			}
			n.step(inReports{conns: b})
		}
	}
}

// step runs one input through the core and executes its actions, the
// core's lock released (an import, a send or a callback never runs under
// it).
func (n *Node) step(in input) {
	n.mu.Lock()
	now := time.Now()
	acts := n.core.handle(now, in)
	n.rearm(now)
	n.mu.Unlock()
	n.exec(acts)
}

// rearm sets the timer for the core's next deadline (n.mu held).
func (n *Node) rearm(now time.Time) {
	if n.timer == nil {
		return
	}
	next := n.core.next()
	if next.Equal(n.armed) {
		return
	}
	n.armed = next
	if next.IsZero() {
		n.timer.Stop()
		return
	}
	n.timer.Reset(max(next.Sub(now), 0))
}

func (n *Node) onTimer() {
	n.mu.Lock()
	n.armed = time.Time{}
	n.mu.Unlock()
	n.step(inTimer{})
}

func (n *Node) exec(acts []action) {
	for _, a := range acts {
		switch a.kind {
		case actSend:
			n.sendConns(netip.Addr{}, MsgConns, 0, a.conns)
		case actBulkRequest:
			n.send(a.to, Envelope{Type: MsgBulkRequest, RequestID: a.reqID}, 0)
		case actDump, actRefresh:
			n.startDump(a)
		case actApply:
			res := n.dp.Import(a.conns)
			n.step(inApplied{results: res})
		case actReporting:
			if err := n.dp.SetReporting(a.on); err != nil {
				n.log.Error("connection sync: reporting", "on", a.on, "error", err)
			}
			n.log.Info("connection sync: sending", "on", a.on)
		case actReady:
			n.ready.Store(true)
			n.log.Info("connection sync ready", "how", a.note)
			if n.opts.OnReady != nil {
				n.opts.OnReady()
			}
		}
	}
}

// maxLen is the IPVS message budget of a datagram.
func (n *Node) maxLen() int {
	m := 1472
	if n.tr != nil {
		m = n.tr.MaxLen()
	}
	if n.cfg.Protocol == ProtocolXLB {
		m -= XLBOverhead
	}
	return max(m, IPVSMessageLen(1))
}

// sendConns sends connections in as many datagrams as they need; it
// returns the records sent.
func (n *Node) sendConns(to netip.Addr, typ MsgType, reqID uint64, conns []dataplane.Conn) int {
	recs := make([]Record, len(conns))
	for i, c := range conns {
		recs[i] = RecordOf(c)
	}
	sent := 0
	for _, m := range EncodeIPVS(n.cfg.SyncID, recs, n.maxLen()) {
		k := int(m[4])
		if n.cfg.Protocol == ProtocolXLB {
			n.send(to, Envelope{Type: typ, RequestID: reqID, Body: m}, k)
		} else {
			n.sendRaw(to, m, k)
		}
		sent += k
	}
	return sent
}

// send seals and sends an xlb envelope carrying records records.
func (n *Node) send(to netip.Addr, e Envelope, records int) {
	e.Epoch, e.Seq = n.opts.Epoch, n.seq.Add(1)
	n.sendRaw(to, SealXLB(n.cfg.Key, e), records)
}

func (n *Node) sendRaw(to netip.Addr, b []byte, records int) {
	n.mu.Lock()
	tr := n.tr
	n.mu.Unlock()
	if tr == nil {
		return
	}
	if err := tr.Send(to, b); err != nil {
		n.sent.errors.Add(1)
		n.log.Debug("connection sync: send", "to", to, "error", err)
		return
	}
	n.sent.datagrams.Add(1)
	n.sent.records.Add(uint64(records))
	n.sent.bytes.Add(uint64(len(b)))
}

// startDump sends the whole table in the background: to a peer that asked
// (xlb's bulk sync, ending with the count), or to every peer (refresh).
func (n *Node) startDump(a action) {
	key := a.to.String()
	if a.kind == actRefresh {
		key = "refresh"
	}
	if _, busy := n.dumping.LoadOrStore(key, true); busy {
		return
	}
	n.dumps.Add(1)
	go func() {
		defer n.dumps.Done()
		defer n.dumping.Delete(key)
		var conns []dataplane.Conn
		if err := n.dp.Walk(func(c dataplane.Conn) bool { conns = append(conns, c); return true }); err != nil {
			n.log.Error("connection sync: walking the table", "error", err)
		}
		typ := MsgConns
		if a.kind == actDump && n.cfg.Protocol == ProtocolXLB {
			typ = MsgBulkConns
		}
		sent := 0
		pace := newPacer(n.opts.DumpRate)
		batch := max(1, (n.maxLen()-ipvsHeaderLen)/ipvsV4Len)
		for len(conns) > 0 {
			k := min(batch, len(conns))
			sent += n.sendConns(a.to, typ, a.reqID, conns[:k])
			conns = conns[k:]
			if !pace.wait(n.ctx) {
				return
			}
		}
		if typ == MsgBulkConns {
			n.send(a.to, Envelope{Type: MsgBulkEnd, RequestID: a.reqID, Count: uint32(sent)}, 0)
			n.log.Info("connection sync: table sent to a peer", "peer", a.to, "records", sent)
		}
	}()
}

// pacer spaces datagrams to a rate: the I/O side of a dump (the protocol
// itself never waits).
type pacer struct {
	start time.Time
	every time.Duration
	n     int
}

func newPacer(rate int) *pacer {
	return &pacer{start: time.Now(), every: time.Second / time.Duration(rate)}
}

// wait returns once the next datagram may go (false: ctx ended).
func (p *pacer) wait(ctx context.Context) bool {
	p.n++
	if p.n%32 != 0 {
		return true
	}
	d := time.Until(p.start.Add(time.Duration(p.n) * p.every))
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// receive reads datagrams until the transport closes.
func (n *Node) receive() {
	buf := make([]byte, 65536)
	for {
		k, from, err := n.tr.Receive(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				n.log.Error("connection sync: receive", "error", err)
			}
			return
		}
		n.step(n.decode(buf[:k], from))
	}
}

// decode turns a datagram into the core's input.
func (n *Node) decode(b []byte, from netip.Addr) input {
	d := inDatagram{from: from, typ: MsgConns}
	body := b
	if n.cfg.Protocol == ProtocolXLB {
		e, why := OpenXLB(n.cfg.Key, b)
		if why != ReasonNone {
			return inRefused{reason: why}
		}
		d.typ, d.epoch, d.seq, d.reqID, d.count, body = e.Type, e.Epoch, e.Seq, e.RequestID, e.Count, e.Body
		if d.typ != MsgConns && d.typ != MsgBulkConns {
			return d
		}
	}
	recs, skipped, why := DecodeIPVS(body, n.cfg.SyncID)
	if why != ReasonNone {
		return inRefused{reason: why}
	}
	for _, s := range skipped {
		d.dropped = append(d.dropped, s.Reason)
	}
	for _, r := range recs {
		c, why := ConnOf(r)
		if why != ReasonNone {
			d.dropped = append(d.dropped, why)
			continue
		}
		d.conns = append(d.conns, c)
	}
	return d
}
