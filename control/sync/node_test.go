package sync

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// memNet is a segment for memory transports: what one sends, the others
// get (in order).
type memNet struct {
	mu    sync.Mutex
	ports map[netip.Addr]chan memDatagram
	// drop, when set, loses the datagrams it returns true for.
	drop func(from, to netip.Addr, b []byte) bool
}

type memDatagram struct {
	from netip.Addr
	b    []byte
}

type memTransport struct {
	net  *memNet
	addr netip.Addr
	in   chan memDatagram
	once sync.Once
	done chan struct{}
}

func (m *memNet) join(a netip.Addr) *memTransport {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ports == nil {
		m.ports = map[netip.Addr]chan memDatagram{}
	}
	t := &memTransport{net: m, addr: a, in: make(chan memDatagram, 100000), done: make(chan struct{})}
	m.ports[a] = t.in
	return t
}

func (t *memTransport) Send(to netip.Addr, b []byte) error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	for a, ch := range t.net.ports {
		if a == t.addr || (to.IsValid() && a != to) {
			continue
		}
		if t.net.drop != nil && t.net.drop(t.addr, a, b) {
			continue
		}
		select {
		case ch <- memDatagram{t.addr, append([]byte(nil), b...)}:
		default:
		}
	}
	return nil
}

func (t *memTransport) Receive(buf []byte) (int, netip.Addr, error) {
	select {
	case d := <-t.in:
		return copy(buf, d.b), d.from, nil
	case <-t.done:
		return 0, netip.Addr{}, net.ErrClosed
	}
}

func (t *memTransport) MaxLen() int { return 1472 }
func (t *memTransport) Close() error {
	t.once.Do(func() { close(t.done) })
	return nil
}

// memDP is a dataplane's connection table for node tests.
type memDP struct {
	mu       sync.Mutex
	conns    map[netip.AddrPort]dataplane.Conn
	reports  chan []dataplane.Conn
	reporter bool
	local    map[netip.AddrPort]bool // flows it forwards itself
}

func newMemDP() *memDP {
	return &memDP{conns: map[netip.AddrPort]dataplane.Conn{}, reports: make(chan []dataplane.Conn, 100), local: map[netip.AddrPort]bool{}}
}

func (m *memDP) Reports() <-chan []dataplane.Conn { return m.reports }
func (m *memDP) SetReporting(on bool) error {
	m.mu.Lock()
	m.reporter = on
	m.mu.Unlock()
	return nil
}
func (m *memDP) Import(cs []dataplane.Conn) []dataplane.ImportResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]dataplane.ImportResult, len(cs))
	for i, c := range cs {
		if m.local[c.Client] {
			out[i] = dataplane.ImportLocal
			continue
		}
		m.conns[c.Client] = c
	}
	return out
}
func (m *memDP) Walk(fn func(dataplane.Conn) bool) error {
	m.mu.Lock()
	var all []dataplane.Conn
	for _, c := range m.conns {
		all = append(all, c)
	}
	m.mu.Unlock()
	for _, c := range all {
		if !fn(c) {
			break
		}
	}
	return nil
}
func (m *memDP) SyncStats() dataplane.SyncStats { return dataplane.SyncStats{} }

// decide is the dataplane deciding a flow: it holds it, and reports it if
// reporting is on.
func (m *memDP) decide(c dataplane.Conn) {
	m.mu.Lock()
	m.conns[c.Client], m.local[c.Client] = c, true
	on := m.reporter
	m.mu.Unlock()
	if on {
		m.reports <- []dataplane.Conn{c}
	}
}

func (m *memDP) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

func testConn(i int) dataplane.Conn {
	return dataplane.Conn{
		Service: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Client:  netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(1024+i)),
		Backend: dataplane.BackendKey{Addr: netip.MustParseAddr("10.0.1.2"), Port: 80},
		Forward: dataplane.DirectRouting, State: dataplane.ConnEstablished, Timeout: 900 * time.Second,
	}
}

type testNode struct {
	*Node
	dp     *memDP
	cancel context.CancelFunc
	done   chan struct{}
}

func startNode(t *testing.T, nw *memNet, addr netip.Addr, cfg Config, epoch uint64) *testNode {
	t.Helper()
	dp := newMemDP()
	n, err := NewNode(cfg, Options{Dataplane: dp, Transport: nw.join(addr), Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{Node: n, dp: dp, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(tn.done); _ = n.Run(ctx) }()
	t.Cleanup(tn.stop)
	return tn
}

func (n *testNode) stop() {
	n.cancel()
	<-n.done
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNodesXLB: a master's flows reach its backup as they happen; a
// director that starts asks for the table and is ready once it has it,
// although the network lost part of the first dump.
func TestNodesXLB(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	cfg := func(peer netip.Addr) Config {
		return Config{Settings: Settings{Protocol: ProtocolXLB, FollowRole: true, Peers: []netip.Addr{peer}, ReadyTimeout: time.Minute},
			SyncID: 51, Key: testKey}
	}
	nw := &memNet{}
	na := startNode(t, nw, a, cfg(b), 100)
	nb := startNode(t, nw, b, cfg(a), 100)
	na.SetRole(true)
	nb.SetRole(false)
	waitFor(t, "both ready (empty tables)", func() error {
		if !na.Ready() || !nb.Ready() {
			return fmt.Errorf("ready %v %v", na.Ready(), nb.Ready())
		}
		return nil
	})
	waitFor(t, "the master reporting", func() error {
		na.dp.mu.Lock()
		defer na.dp.mu.Unlock()
		if !na.dp.reporter {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for i := range 500 {
		na.dp.decide(testConn(i))
	}
	waitFor(t, "the backup has the master's flows", func() error {
		if n := nb.dp.len(); n != 500 {
			return fmt.Errorf("%d of 500", n)
		}
		return nil
	})

	// The backup restarts (a new boot); the first dump loses a datagram.
	nb.stop()
	lost := false
	nw.mu.Lock()
	nw.drop = func(from, to netip.Addr, m []byte) bool {
		if e, why := OpenXLB(testKey, m); why == ReasonNone && e.Type == MsgBulkConns && !lost {
			lost = true
			return true
		}
		return false
	}
	nw.mu.Unlock()
	nb2 := startNode(t, nw, b, cfg(a), 200)
	waitFor(t, "the restarted backup ready with the whole table", func() error {
		if !nb2.Ready() {
			return fmt.Errorf("not ready")
		}
		if n := nb2.dp.len(); n != 500 {
			return fmt.Errorf("ready with %d of 500", n)
		}
		return nil
	})
	if !lost {
		t.Error("no datagram of the dump was lost: the test did not test the retry")
	}
	st := nb2.Status()
	if st.ReadyHow != "bulk" || st.BulkRequests < 2 || st.Applied < 500 {
		t.Errorf("status %+v", st)
	}
	if sa := na.Status(); sa.Dumps < 2 || sa.SentRecords < 1000 {
		t.Errorf("master's status %+v", sa)
	}
}

// TestNodesWrongKey: a node with another key applies nothing, is not made
// ready by the other's answers, and counts the datagrams as hmac drops.
func TestNodesWrongKey(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	nw := &memNet{}
	set := Settings{Protocol: ProtocolXLB, ReadyTimeout: time.Minute}
	na := startNode(t, nw, a, Config{Settings: set, SyncID: 1, Key: testKey}, 1)
	nb := startNode(t, nw, b, Config{Settings: set, SyncID: 1, Key: []byte("another key of 32 bytes, please!")}, 1)
	na.dp.decide(testConn(1))
	waitFor(t, "the other key refused", func() error {
		if n := nb.Status().Dropped["hmac"]; n == 0 {
			return fmt.Errorf("no hmac drop yet")
		}
		return nil
	})
	if nb.dp.len() != 0 || nb.Ready() {
		t.Errorf("a node with another key applied %d records, ready %v", nb.dp.len(), nb.Ready())
	}
}

// TestNodesIPVS: IPVS's protocol between two nodes (multicast, no bulk).
func TestNodesIPVS(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	nw := &memNet{}
	set := Settings{Protocol: ProtocolIPVS, ReadyTimeout: time.Minute}
	na := startNode(t, nw, a, Config{Settings: set, SyncID: 9}, 1)
	nb := startNode(t, nw, b, Config{Settings: set, SyncID: 9}, 1)
	nc := startNode(t, nw, netip.MustParseAddr("10.0.0.3"), Config{Settings: set, SyncID: 8}, 1)
	waitFor(t, "reporting", func() error {
		na.dp.mu.Lock()
		defer na.dp.mu.Unlock()
		if !na.dp.reporter {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for i := range 100 {
		na.dp.decide(testConn(i))
	}
	waitFor(t, "the other has the flows", func() error {
		if n := nb.dp.len(); n != 100 {
			return fmt.Errorf("%d of 100", n)
		}
		return nil
	})
	if nc.dp.len() != 0 || nc.Status().Dropped["syncid"] == 0 {
		t.Errorf("a node of sync id 8 has %d flows, %+v", nc.dp.len(), nc.Status().Dropped)
	}
}
