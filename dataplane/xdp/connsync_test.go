package xdp

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// nextReports waits for reports until n connections came, or fails.
func nextReports(t *testing.T, ch <-chan []dataplane.Conn, n int) []dataplane.Conn {
	t.Helper()
	var got []dataplane.Conn
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("report channel closed after %v", got)
			}
			got = append(got, b...)
		case <-deadline:
			t.Fatalf("%d reports within 10s, want %d: %v", len(got), n, got)
		}
	}
	return got
}

func (e *env) syncStats() dataplane.SyncStats { return e.d.SyncStats() }

// conn is a connection of the test service from client c:port to the
// pool's real server i.
func (e *env) conn(c netip.Addr, port uint16, i int, state dataplane.ConnState) dataplane.Conn {
	return dataplane.Conn{
		Service: dataplane.ServiceKey{Addr: vip4, Port: 80, Proto: dataplane.TCP},
		Client:  netip.AddrPortFrom(c, port),
		Backend: dataplane.BackendKey{Addr: e.pool(i + 1)[i].Addr, Port: 80},
		Forward: dataplane.DirectRouting, State: state, Timeout: 900 * time.Second,
	}
}

// TestSyncReports: the fast path reports a TCP flow when it is
// established and when it closes, never on its SYN nor from the flow
// cache; a UDP flow when it is created; nothing while reporting is off.
// The reports name the service and real server by address.
func TestSyncReports(t *testing.T) {
	e := manualEnv(t)
	// The reports are read a CPU's ring after another: the packets of one
	// flow run on one CPU (as a NIC's queue steers them), not on whichever
	// the test's thread is on (a CI run read a closing before its
	// establishment).
	e.oneCPU = true
	bs := e.pool(3)
	e.apply(svc(dataplane.RoundRobin, bs))
	ch := e.d.Reports()

	syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
	ack := syn
	ack.TCPFlags = packet.ACK
	if e.pick(syn) < 0 || e.pick(ack) < 0 {
		t.Fatal("flow not forwarded")
	}
	if s := e.syncStats(); s.Reported != 0 {
		t.Fatalf("%d reports with reporting off", s.Reported)
	}
	if err := e.d.SetReporting(true); err != nil {
		t.Fatal(err)
	}
	syn2 := tcpFrame(client(2), vip4, 40000, 80, packet.SYN)
	be := e.pick(syn2)
	if s := e.syncStats(); s.Reported != 0 {
		t.Fatalf("a SYN was reported (%d reports)", s.Reported)
	}
	ack2 := syn2
	ack2.TCPFlags = packet.ACK
	for range 5 { // the first from the table, the others from the flow cache
		if e.pick(ack2) != be {
			t.Fatal("flow moved")
		}
	}
	fin := syn2
	fin.TCPFlags = packet.FIN | packet.ACK
	e.pick(fin)
	got := nextReports(t, ch, 2)
	want := []dataplane.Conn{
		{Service: svc(dataplane.RoundRobin, bs).Key, Client: netip.AddrPortFrom(client(2), 40000), Backend: bs[be].Key(),
			Forward: dataplane.DirectRouting, State: dataplane.ConnEstablished, Timeout: 900 * time.Second},
		{Service: svc(dataplane.RoundRobin, bs).Key, Client: netip.AddrPortFrom(client(2), 40000), Backend: bs[be].Key(),
			Forward: dataplane.DirectRouting, State: dataplane.ConnClosing, Timeout: 120 * time.Second},
	}
	if !slices.Equal(got, want) {
		t.Errorf("reports\n%v\nwant\n%v", got, want)
	}
	if s := e.syncStats(); s.Reported != 2 || s.Lost != 0 {
		t.Errorf("stats %+v, want 2 reported", s)
	}

	u := svc(dataplane.RoundRobin, bs)
	u.Key.Proto = dataplane.UDP
	e.apply(svc(dataplane.RoundRobin, bs), u)
	ube := e.pick(udpFrame(client(3), vip4, 5000, 80))
	got = nextReports(t, ch, 1)
	if w := (dataplane.Conn{Service: u.Key, Client: netip.AddrPortFrom(client(3), 5000), Backend: bs[ube].Key(),
		Forward: dataplane.DirectRouting, State: dataplane.ConnNew, Timeout: 30 * time.Second}); got[0] != w {
		t.Errorf("UDP report %v, want %v", got[0], w)
	}

	if err := e.d.SetReporting(false); err != nil {
		t.Fatal(err)
	}
	e.pick(udpFrame(client(4), vip4, 5000, 80))
	if s := e.syncStats(); s.Reported != 3 {
		t.Errorf("%d reports after reporting went off, want 3", s.Reported)
	}
}

// TestSyncReportsTemplate: a flow of a persistent service is reported
// with its client's template.
func TestSyncReportsTemplate(t *testing.T) {
	e := manualEnv(t)
	e.oneCPU = true // in order, as TestSyncReports
	s := svc(dataplane.RoundRobin, e.pool(3))
	s.Persistence = 300 * time.Second
	e.apply(s)
	ch := e.d.Reports()
	if err := e.d.SetReporting(true); err != nil {
		t.Fatal(err)
	}
	syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
	be := e.pick(syn)
	ack := syn
	ack.TCPFlags = packet.ACK
	e.pick(ack)
	got := nextReports(t, ch, 2)
	tpl := got[1]
	if !tpl.Template || tpl.Client != netip.AddrPortFrom(client(1), 0) || tpl.Backend != s.Backends[be].Key() || tpl.Timeout != 300*time.Second {
		t.Errorf("template report %+v", tpl)
	}
}

// TestSyncImportPromote: a peer's flow is taken over on its first packet
// here, to the peer's real server whatever this director's scheduler would
// pick; it moves into the connection table and counts in the real
// server's lc load; the import table is left empty.
func TestSyncImportPromote(t *testing.T) {
	e := manualEnv(t)
	e.apply(svc(dataplane.LeastConnection, e.pool(3)))
	c := e.conn(client(1), 40000, 2, dataplane.ConnEstablished)
	if res := e.d.Import([]dataplane.Conn{c}); res[0] != dataplane.Imported {
		t.Fatalf("import: %v", res)
	}
	ack := tcpFrame(client(1), vip4, 40000, 80, packet.ACK)
	if got := e.pick(ack); got != 2 {
		t.Fatalf("imported flow went to %d, want 2 (the peer's)", got)
	}
	if s := e.syncStats(); s.Promoted != 1 {
		t.Errorf("promoted %d, want 1", s.Promoted)
	}
	var k = flowKey(c)
	var v bpfXlbSyncConn
	if err := e.d.objs.XlbSyncConnsV1.Lookup(&k, &v); err == nil {
		t.Error("the imported entry is still in the import table after its first packet")
	}
	var ct bpfXlbConn
	if err := e.d.objs.XlbConnsV1.Lookup(&k, &ct); err != nil || ct.State != uint8(bpfXlbConnStateXLB_CT_ESTABLISHED) {
		t.Errorf("connection table entry %+v (%v)", ct, err)
	}
	id := e.live(svc(dataplane.LeastConnection, nil).Key)[c.Backend]
	if l := e.load(id); l != 1 {
		t.Errorf("real server 2's lc load %d, want 1", l)
	}
	// Counted as IPVS counts a connection (dest.h), and uncounted when it
	// closes.
	s := svc(dataplane.LeastConnection, e.pool(3))
	if got := e.conns(s, 2); got.Active != 1 || got.Inactive != 0 {
		t.Errorf("real server 2's connections %+v after the takeover, want 1 active", got)
	}
	fin := ack
	fin.TCPFlags = packet.FIN | packet.ACK
	e.pick(fin)
	if got := e.conns(s, 2); got.Active != 0 || got.Inactive != 1 {
		t.Errorf("real server 2's connections %+v after its FIN, want 1 inactive", got)
	}
	// The next new flow avoids the loaded real server (lc).
	if got := e.pick(tcpFrame(client(2), vip4, 40000, 80, packet.SYN)); got == 2 {
		t.Error("lc sent a new flow to the real server holding the imported one")
	}
}

// TestSyncImportCountedOnce: an imported flow the recount (Sync) has
// counted in its real server's lc load and connections is not counted
// again when it is taken over; one imported after the recount is counted
// by its takeover. (Before: 2 and 2 active until the next recount.)
func TestSyncImportCountedOnce(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.LeastConnection, e.pool(3))
	e.apply(s)
	c := e.conn(client(1), 40000, 2, dataplane.ConnEstablished)
	if res := e.d.Import([]dataplane.Conn{c}); res[0] != dataplane.Imported {
		t.Fatalf("import: %v", res)
	}
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	id := e.live(s.Key)[c.Backend]
	if l, got := e.load(id), e.conns(s, 2); l != 1 || got.Active != 1 {
		t.Fatalf("after the recount: lc load %d, connections %+v; want 1, 1 active", l, got)
	}
	// A refresh of the flow (the peer sends it again) keeps it counted.
	if res := e.d.Import([]dataplane.Conn{c}); res[0] != dataplane.Imported {
		t.Fatalf("import again: %v", res)
	}
	if got := e.pick(tcpFrame(client(1), vip4, 40000, 80, packet.ACK)); got != 2 {
		t.Fatalf("imported flow went to %d, want 2", got)
	}
	if l, got := e.load(id), e.conns(s, 2); l != 1 || got.Active != 1 {
		t.Errorf("after the takeover: lc load %d, connections %+v; want 1, 1 active (counted once)", l, got)
	}
	// Imported after the recount: its takeover counts it.
	c2 := e.conn(client(2), 40000, 2, dataplane.ConnEstablished)
	if res := e.d.Import([]dataplane.Conn{c2}); res[0] != dataplane.Imported {
		t.Fatalf("import: %v", res)
	}
	if got := e.pick(tcpFrame(client(2), vip4, 40000, 80, packet.ACK)); got != 2 {
		t.Fatalf("second imported flow went to %d, want 2", got)
	}
	if l, got := e.load(id), e.conns(s, 2); l != 2 || got.Active != 2 {
		t.Errorf("after the second takeover: lc load %d, connections %+v; want 2, 2 active", l, got)
	}
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if l, got := e.load(id), e.conns(s, 2); l != 2 || got.Active != 2 {
		t.Errorf("after the next recount: lc load %d, connections %+v; want 2, 2 active", l, got)
	}
}

// TestSyncImportLocalWins: a flow this director forwards keeps its real
// server when a peer reports it elsewhere; on a director that does not
// forward the service (a backup) the peer's report replaces a leftover
// local entry.
func TestSyncImportLocalWins(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(3))
	e.apply(s)
	syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
	local := e.pick(syn)
	ack := syn
	ack.TCPFlags = packet.ACK
	e.pick(ack)
	other := (local + 1) % 3
	c := e.conn(client(1), 40000, other, dataplane.ConnEstablished)
	if res := e.d.Import([]dataplane.Conn{c}); res[0] != dataplane.ImportLocal {
		t.Fatalf("import of a flow forwarded here: %v, want local", res)
	}
	if got := e.pick(ack); got != local {
		t.Fatalf("forwarded flow moved from %d to %d", local, got)
	}

	s.Enabled = false
	e.apply(s)
	if res := e.d.Import([]dataplane.Conn{c}); res[0] != dataplane.Imported {
		t.Fatalf("import on a backup: %v", res)
	}
	s.Enabled = true
	e.apply(s)
	if got := e.pick(ack); got != other {
		t.Errorf("after takeover the flow went to %d, want the peer's %d", got, other)
	}
}

// TestSyncImportRefused: records for services or real servers this
// director does not have change nothing.
func TestSyncImportRefused(t *testing.T) {
	e := manualEnv(t)
	e.apply(svc(dataplane.RoundRobin, e.pool(2)))
	noSvc := e.conn(client(1), 1, 0, dataplane.ConnEstablished)
	noSvc.Service.Port = 81
	noReal := e.conn(client(1), 2, 0, dataplane.ConnEstablished)
	noReal.Backend.Addr = netip.MustParseAddr("10.9.9.9")
	tpl := e.conn(client(1), 0, 0, dataplane.ConnNew)
	tpl.Template = true // the service is not persistent here
	got := e.d.Import([]dataplane.Conn{noSvc, noReal, tpl})
	want := []dataplane.ImportResult{dataplane.ImportUnknownService, dataplane.ImportUnknownReal, dataplane.ImportUnknownService}
	if !slices.Equal(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	n := 0
	if err := e.d.Walk(func(dataplane.Conn) bool { n++; return true }); err != nil || n != 0 {
		t.Errorf("walk after refused imports: %d entries (%v)", n, err)
	}
}

// TestSyncImportNoSelfEviction: imports fill a table of their own, not
// the per-CPU LRU lists of the connection table, so a single importing
// thread keeps every flow it imported, twice the connection table's size.
func TestSyncImportNoSelfEviction(t *testing.T) {
	const conns = 1 << 12
	e := newEnvOpts(t, Options{SyncInterval: -1, ManualClock: true,
		MapSizes: map[string]uint32{"xlb_conns_v1": conns, "xlb_persist_v1": 1 << 12, "xlb_sync_conns_v1": 4 * conns}})
	e.setClock(time.Hour)
	e.apply(svc(dataplane.RoundRobin, e.pool(3)))
	var batch []dataplane.Conn
	for i := range 2 * conns {
		batch = append(batch, e.conn(client(i%60000), uint16(1024+i/60000), i%3, dataplane.ConnEstablished))
	}
	for i, r := range e.d.Import(batch) {
		if r != dataplane.Imported {
			t.Fatalf("import %d: %v", i, r)
		}
	}
	n := 0
	if err := e.d.Walk(func(dataplane.Conn) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != len(batch) {
		t.Fatalf("%d of %d imported flows left", n, len(batch))
	}
	// Each goes to the peer's real server on its first packet here.
	var frames [][]byte
	for _, c := range batch[:64] {
		frames = append(frames, tcpFrame(c.Client.Addr(), vip4, c.Client.Port(), 80, packet.ACK).Bytes())
	}
	for i, got := range e.picks(frames) {
		if got != i%3 {
			t.Fatalf("flow %d went to %d, want %d", i, got, i%3)
		}
	}
}

// TestSyncImportExpiry: an imported flow not heard of again within its
// timeout is ignored, and Sync deletes it; until then it counts in its
// real server's connections.
func TestSyncImportExpiry(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(3))
	e.apply(s)
	c := e.conn(client(1), 40000, 1, dataplane.ConnEstablished)
	c.Timeout = 10 * time.Second
	e.d.Import([]dataplane.Conn{c})
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := e.d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Services[s.Key].Backend(c.Backend).ActiveConns; n != 1 {
		t.Errorf("the imported flow's real server has %d active connections, want 1", n)
	}
	if s := e.syncStats(); s.Imported != 1 {
		t.Errorf("imported %d, want 1", s.Imported)
	}
	e.setClock(time.Hour + 11*time.Second)
	// Expired: the packet is not the peer's any more; the program drops
	// the entry.
	e.pick(tcpFrame(client(1), vip4, 40000, 80, packet.ACK))
	if s := e.syncStats(); s.Promoted != 0 {
		t.Errorf("an expired import was promoted")
	}
	e.d.Import([]dataplane.Conn{e.conn(client(2), 40000, 1, dataplane.ConnEstablished)})
	e.setClock(time.Hour + time.Hour)
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if s := e.syncStats(); s.Imported != 0 {
		t.Errorf("%d imported left after they expired", s.Imported)
	}
	n := 0
	var k bpfXlbFlow
	var v bpfXlbSyncConn
	for it := e.d.objs.XlbSyncConnsV1.Iterate(); it.Next(&k, &v); {
		n++
	}
	if n != 0 {
		t.Errorf("%d entries in the import table after Sync", n)
	}
}

// TestSyncImportTemplate: a peer's persistence template sends the client's
// new connections to the peer's real server.
func TestSyncImportTemplate(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(3))
	s.Persistence = 300 * time.Second
	e.apply(s)
	tpl := e.conn(client(1), 0, 2, dataplane.ConnNew)
	tpl.Template, tpl.Timeout = true, 200*time.Second
	if res := e.d.Import([]dataplane.Conn{tpl}); res[0] != dataplane.Imported {
		t.Fatalf("template import: %v", res)
	}
	templates := func() []dataplane.Conn {
		var out []dataplane.Conn
		e.d.Walk(func(c dataplane.Conn) bool {
			if c.Template {
				out = append(out, c)
			}
			return true
		})
		return out
	}
	// It lasts what the peer says is left of it.
	if got := templates(); len(got) != 1 || got[0].Timeout != 200*time.Second {
		t.Errorf("templates after the import: %+v, want one with 200s left", got)
	}
	for port := range uint16(3) {
		if got := e.pick(tcpFrame(client(1), vip4, 40000+port, 80, packet.SYN)); got != 2 {
			t.Fatalf("new connection %d of the client went to %d, want 2 (the template's)", port, got)
		}
	}
	// Used now: 300 s from now.
	e.setClock(time.Hour + 301*time.Second)
	if got := templates(); len(got) != 0 {
		t.Errorf("template live after its persistence timeout: %+v", got)
	}
}

// TestSyncWalk: Walk visits the flows forwarded here, the imported ones
// and the templates, not the NAT reply entries.
func TestSyncWalk(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(3))
	s.Persistence = 60 * time.Second
	e.apply(s)
	// A local connection: its handshake (a SYN alone leaves no entry to
	// walk where the entry is made on the handshake's ACK).
	e.pick(tcpFrame(client(1), vip4, 40000, 80, packet.SYN))
	e.pick(tcpFrame(client(1), vip4, 40000, 80, packet.ACK))
	e.d.Import([]dataplane.Conn{e.conn(client(2), 40000, 1, dataplane.ConnEstablished)})
	var got []dataplane.Conn
	if err := e.d.Walk(func(c dataplane.Conn) bool { got = append(got, c); return true }); err != nil {
		t.Fatal(err)
	}
	var local, imported, tpl int
	for _, c := range got {
		switch {
		case c.Template:
			tpl++
		case c.Client.Addr() == client(1) && c.State == dataplane.ConnEstablished:
			local++
		case c.Client.Addr() == client(2) && c.Backend == s.Backends[1].Key():
			imported++
		}
	}
	if local != 1 || imported != 1 || tpl != 1 || len(got) != 3 {
		t.Errorf("walk: %v", got)
	}
}

// TestIdleSyncCountsImports: on an idle backup (no packet sent) an Import
// makes the next Sync scan, so the imported flow counts in its real
// server's lc load and connections; when it expires (then its margin
// ends) a Sync scans again without a packet and forgets it.
func TestIdleSyncCountsImports(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.LeastConnection, e.pool(3))
	e.apply(s)
	sync := func(what string) {
		t.Helper()
		if err := e.d.Sync(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	sync("first Sync")
	sync("idle")
	c := e.conn(client(1), 40000, 2, dataplane.ConnEstablished)
	c.Timeout = 30 * time.Second
	if res := e.d.Import([]dataplane.Conn{c}); res[0] != dataplane.Imported {
		t.Fatalf("import: %v", res)
	}
	sync("after an Import")
	id := e.live(s.Key)[c.Backend]
	if l, got := e.load(id), e.conns(s, 2); l != 1 || got.Active != 1 {
		t.Errorf("after an Import on an idle director: lc load %d, connections %+v; want 1, 1 active", l, got)
	}
	e.setClock(time.Hour + 31*time.Second)
	sync("expired")
	if l, got := e.load(id), e.conns(s, 2); l != 0 || got.Active != 0 {
		t.Errorf("after its expiry: lc load %d, connections %+v; want 0, 0", l, got)
	}
	e.setClock(time.Hour + 31*time.Second + expiryMargin)
	sync("margin ended")
	k := flowKey(c)
	var v bpfXlbSyncConn
	if err := e.d.objs.XlbSyncConnsV1.Lookup(&k, &v); err == nil {
		t.Errorf("imported entry left after its margin: %+v", v)
	}
}

// TestDecodeSyncRec: the reader's hand-written decoder reads every field of
// struct xlb_sync_rec where the generated type (and binary.Encode) puts it.
func TestDecodeSyncRec(t *testing.T) {
	if n := binary.Size(bpfXlbSyncRec{}); n != syncRecSize {
		t.Fatalf("struct xlb_sync_rec is %d bytes, the decoder reads %d", n, syncRecSize)
	}
	var want bpfXlbSyncRec
	for i := range want.Flow.Src {
		want.Flow.Src[i] = byte(1 + i)
		want.Flow.Dst[i] = byte(101 + i)
	}
	want.Flow.Sport, want.Flow.Dport = 0x1234, 0xabcd
	want.Flow.Proto, want.Flow.Family, want.Flow.Pad = 6, 2, [2]uint8{7, 8}
	want.Svc, want.Backend = 0x01020304, 0xa0b0c0d0
	want.State, want.Flags = 3, 1
	want.Pad = [6]uint8{9, 10, 11, 12, 13, 14}
	b, err := binary.Append(nil, binary.NativeEndian, &want)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeSyncRec(b)
	if !ok || got != want {
		t.Fatalf("decodeSyncRec = %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := decodeSyncRec(b[:syncRecSize-1]); ok {
		t.Fatal("a short record was decoded")
	}
}
