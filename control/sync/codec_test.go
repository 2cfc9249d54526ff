package sync

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

var (
	recV4 = Record{Protocol: 6, Flags: FlagDRoute, State: TCPEstablished,
		Client: netip.MustParseAddrPort("192.0.2.10:40000"), Virtual: netip.MustParseAddrPort("10.0.0.3:80"),
		Real: netip.MustParseAddrPort("10.0.1.2:80"), Timeout: 900}
	recV6 = Record{Protocol: 17, Flags: FlagMasq,
		Client: netip.MustParseAddrPort("[2001:db8::10]:5353"), Virtual: netip.MustParseAddrPort("[2001:db8::3]:53"),
		Real: netip.MustParseAddrPort("[2001:db8:1::2]:5353"), Timeout: 300}
)

// unhex reads hex digits, ignoring white space and what follows # on a
// line.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var digits []string
	for _, l := range strings.Split(s, "\n") {
		l, _, _ = strings.Cut(l, "#")
		digits = append(digits, strings.Fields(l)...)
	}
	b, err := hex.DecodeString(strings.Join(digits, ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncodeIPVSBytes: a message as ip_vs_sync_conn writes it, byte by
// byte (struct ip_vs_sync_mesg, struct ip_vs_sync_v4).
func TestEncodeIPVSBytes(t *testing.T) {
	got := EncodeIPVS(51, []Record{recV4}, 1472)
	want := unhex(t, `
		00 33 002c 01 01 0000            # reserved, syncid 51, size 44, 1 conn, version 1, spare
		00 06 0024 00000003              # type 0 (IPv4), TCP, ver 0 size 36, flags DROUTE
		0001 9c40 0050 0050              # state ESTABLISHED, cport 40000, vport 80, dport 80
		00000000 00000384                # fwmark 0, timeout 900 s
		c000020a 0a000003 0a000102       # caddr, vaddr, daddr`)
	if len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Errorf("message\n%x\nwant\n%x", got, want)
	}
}

func TestIPVSRoundTrip(t *testing.T) {
	tpl := recV4
	tpl.Flags, tpl.State, tpl.Client = FlagDRoute|FlagTemplate, 0, netip.AddrPortFrom(tpl.Client.Addr(), 0)
	recs := []Record{recV4, recV6, tpl}
	msgs := EncodeIPVS(7, recs, 1472)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	got, skipped, why := DecodeIPVS(msgs[0], 7)
	if why != ReasonNone || len(skipped) != 0 || !slices.Equal(got, recs) {
		t.Errorf("decoded %v, skipped %v, %v; want %v", got, skipped, why, recs)
	}
	// Split by size: 40 IPv4 records fit 1472 bytes (8 + 40*36).
	many := make([]Record, 100)
	for i := range many {
		many[i] = recV4
		many[i].Client = netip.AddrPortFrom(recV4.Client.Addr(), uint16(i))
	}
	msgs = EncodeIPVS(7, many, 1472)
	var all []Record
	for i, m := range msgs {
		if len(m) > 1472 {
			t.Errorf("message %d: %d bytes", i, len(m))
		}
		r, _, why := DecodeIPVS(m, 7)
		if why != ReasonNone {
			t.Fatalf("message %d: %v", i, why)
		}
		all = append(all, r...)
	}
	if len(msgs) != 3 || !slices.Equal(all, many) {
		t.Errorf("%d messages with %d records, want 3 with 100", len(msgs), len(all))
	}
	// At most 255 records a message (nr_conns is a byte).
	msgs = EncodeIPVS(7, slices.Repeat([]Record{recV4}, 300), 65000)
	if len(msgs) != 2 || msgs[0][4] != 255 || msgs[1][4] != 45 {
		t.Errorf("300 records in a 64 KiB budget: %d messages", len(msgs))
	}
}

// withOption appends an option to the message's only record.
func withOption(msg []byte, opt ...byte) []byte {
	b := slices.Clone(msg)
	size := binary.BigEndian.Uint16(b[10:]) + uint16(len(opt))
	binary.BigEndian.PutUint16(b[10:], size)
	b = append(b, opt...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func set(b []byte, off int, v ...byte) []byte {
	c := slices.Clone(b)
	copy(c[off:], v)
	return c
}

// TestDecodeIPVSRefusals: what ip_vs_process_message refuses, whole or a
// record at a time, and why.
func TestDecodeIPVSRefusals(t *testing.T) {
	one := EncodeIPVS(51, []Record{recV4}, 1472)[0]
	two := EncodeIPVS(51, []Record{recV4, recV4}, 1472)[0]
	seq := append([]byte{optSeqData, seqOptLen}, make([]byte, seqOptLen)...)
	// mapped is an IPv6 record whose address at off (in the record) is
	// IPv4-mapped.
	mapped := func(off int) []byte {
		b := slices.Clone(EncodeIPVS(51, []Record{recV6}, 1472)[0])
		a := netip.MustParseAddr("::ffff:192.0.2.10").As16()
		copy(b[ipvsHeaderLen+off:], a[:])
		return b
	}
	for _, c := range []struct {
		name    string
		msg     []byte
		syncID  uint8
		why     Reason
		records int
		skipped Reason
	}{
		{"valid", one, 51, ReasonNone, 1, ReasonNone},
		{"our sync id 0 takes any", one, 0, ReasonNone, 1, ReasonNone},
		{"another sync id", one, 52, ReasonSyncID, 0, ReasonNone},
		{"shorter than a header", one[:3], 51, ReasonSize, 0, ReasonNone},
		{"size field larger", set(one, 2, 0, 45), 51, ReasonSize, 0, ReasonNone},
		{"size field smaller", append(slices.Clone(one), 0, 0, 0, 0), 51, ReasonSize, 0, ReasonNone},
		{"version 0", set(one, 5, 0), 51, ReasonVersion, 0, ReasonNone},
		{"version 2", set(one, 5, 2), 51, ReasonVersion, 0, ReasonNone},
		{"reserved byte", set(one, 0, 1), 51, ReasonVersion, 0, ReasonNone},
		{"spare bytes", set(one, 7, 1), 51, ReasonVersion, 0, ReasonNone},
		{"more records than bytes", set(one, 4, 2), 51, ReasonSize, 0, ReasonNone},
		{"record past the end", set(one, 10, 0, 40), 51, ReasonSize, 0, ReasonNone},
		{"record shorter than its header", set(one, 10, 0, 32), 51, ReasonSize, 0, ReasonNone},
		{"record version 1", set(one, 10, 0x10, 36), 51, ReasonVersion, 0, ReasonNone},
		{"record type 2", set(one, 8, 2), 51, ReasonMalformed, 0, ReasonNone},
		{"option of length 0", withOption(one, 9, 0), 51, ReasonMalformed, 0, ReasonNone},
		{"option past the record", withOption(one, 9, 8, 1, 2), 51, ReasonMalformed, 0, ReasonNone},
		{"sequence option of the wrong length", withOption(one, optSeqData, 4, 0, 0, 0, 0), 51, ReasonMalformed, 0, ReasonNone},
		{"sequence option twice", withOption(one, append(slices.Clone(seq), seq...)...), 51, ReasonMalformed, 0, ReasonNone},
		{"sequence option", withOption(one, seq...), 51, ReasonNone, 1, ReasonNone},
		{"unknown optional option", withOption(one, optFParam|9, 2, 1, 2), 51, ReasonNone, 1, ReasonNone},
		{"unknown mandatory option", withOption(one, 9, 2, 1, 2), 51, ReasonNone, 0, ReasonOption},
		{"engine data without its name", withOption(one, optPEData, 2, 1, 2), 51, ReasonNone, 0, ReasonOption},
		{"engine data and name", withOption(one, optPEData, 2, 1, 2, optPEName, 3, 's', 'i', 'p'), 51, ReasonNone, 1, ReasonNone},
		{"TCP state 11", set(one, 16, 0, 11), 51, ReasonNone, 0, ReasonState},
		{"UDP state 1", set(set(one, 9, 17), 16, 0, 1), 51, ReasonNone, 0, ReasonState},
		{"SCTP", set(one, 9, 132), 51, ReasonNone, 0, ReasonProtocol},
		{"a template's state is not checked", set(set(one, 14, 0x10), 16, 0, 11), 51, ReasonNone, 1, ReasonNone},
		{"one of two records skipped", set(two, 9, 132), 51, ReasonNone, 1, ReasonProtocol},
		// Found by FuzzDecode: accepted, it could not be encoded again.
		{"IPv4-mapped client in an IPv6 record", mapped(24), 51, ReasonNone, 0, ReasonAddress},
		{"IPv4-mapped real server in an IPv6 record", mapped(24 + 2*16), 51, ReasonNone, 0, ReasonAddress},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs, skipped, why := DecodeIPVS(c.msg, c.syncID)
			if why != c.why || len(recs) != c.records {
				t.Errorf("%d records, %v; want %d, %v", len(recs), why, c.records, c.why)
			}
			if c.skipped != ReasonNone && (len(skipped) != 1 || skipped[0].Reason != c.skipped) {
				t.Errorf("skipped %v, want one for %v", skipped, c.skipped)
			}
			if c.skipped == ReasonNone && len(skipped) != 0 {
				t.Errorf("skipped %v", skipped)
			}
		})
	}
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestXLBEnvelope(t *testing.T) {
	body := EncodeIPVS(51, []Record{recV4}, 1400)[0]
	for _, e := range []Envelope{
		{Type: MsgConns, Epoch: 1700000000000000000, Seq: 1, Body: body},
		{Type: MsgBulkConns, Epoch: 2, Seq: 9, RequestID: 77, Body: body},
		{Type: MsgBulkRequest, Epoch: 3, Seq: 1, RequestID: 78},
		{Type: MsgBulkEnd, Epoch: 4, Seq: 10, RequestID: 77, Count: 12345},
	} {
		b := SealXLB(testKey, e)
		got, why := OpenXLB(testKey, b)
		if why != ReasonNone || got.Type != e.Type || got.Epoch != e.Epoch || got.Seq != e.Seq ||
			got.RequestID != e.RequestID || got.Count != e.Count || !bytes.Equal(got.Body, e.Body) {
			t.Errorf("%v: opened %+v, %v", e.Type, got, why)
		}
	}
	good := SealXLB(testKey, Envelope{Type: MsgConns, Epoch: 1, Seq: 1, Body: body})
	// A valid HMAC over a bad layout: what a holder of the key could send.
	seal := func(b []byte) []byte {
		return appendMAC(testKey, b)
	}
	for _, c := range []struct {
		name string
		b    []byte
		key  []byte
		why  Reason
	}{
		{"valid", good, testKey, ReasonNone},
		{"another key", good, []byte("fedcba9876543210fedcba9876543210"), ReasonHMAC},
		{"a flipped body byte", set(good, 30, good[30]^1), testKey, ReasonHMAC},
		{"a flipped MAC byte", set(good, len(good)-1, good[len(good)-1]^1), testKey, ReasonHMAC},
		{"truncated", good[:40], testKey, ReasonSize},
		{"no magic", set(good, 0, 'Y'), testKey, ReasonVersion},
		{"version 2", set(good, 4, 2), testKey, ReasonVersion},
		{"unknown type, valid MAC", seal(set(good[:xlbHeaderLen], 5, 9)), testKey, ReasonVersion},
		{"reserved bytes, valid MAC", seal(set(good[:xlbHeaderLen], 6, 1)), testKey, ReasonVersion},
		{"bulk end without its count", seal(append(set(good[:xlbHeaderLen], 5, byte(MsgBulkEnd)), make([]byte, 8)...)), testKey, ReasonSize},
		{"bulk request with a body", seal(append(set(good[:xlbHeaderLen], 5, byte(MsgBulkRequest)), make([]byte, 9)...)), testKey, ReasonSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, why := OpenXLB(c.key, c.b); why != c.why {
				t.Errorf("%v, want %v", why, c.why)
			}
		})
	}
}

// TestConvert: xlb's connections as IPVS records and back.
func TestConvert(t *testing.T) {
	svc := dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP}
	base := dataplane.Conn{Service: svc, Client: netip.MustParseAddrPort("192.0.2.10:40000"),
		Backend: dataplane.BackendKey{Addr: netip.MustParseAddr("10.0.1.2"), Port: 8080}, Timeout: 900 * time.Second}
	with := func(f func(*dataplane.Conn)) dataplane.Conn { c := base; f(&c); return c }
	for _, c := range []struct {
		conn          dataplane.Conn
		flags         uint32
		state         uint16
		cport         uint16
		roundTripSame bool
	}{
		{with(func(c *dataplane.Conn) { c.Forward, c.State = dataplane.DirectRouting, dataplane.ConnEstablished }), FlagDRoute, TCPEstablished, 40000, true},
		{with(func(c *dataplane.Conn) { c.Forward = dataplane.NAT }), FlagMasq | FlagInactive, TCPSynRecv, 40000, true},
		{with(func(c *dataplane.Conn) { c.Forward, c.State = dataplane.Tunnel, dataplane.ConnClosing }), FlagTunnel | FlagInactive, TCPFinWait, 40000, true},
		{with(func(c *dataplane.Conn) { c.Forward, c.Service.Proto = dataplane.DirectRouting, dataplane.UDP }), FlagDRoute, 0, 40000, true},
		{with(func(c *dataplane.Conn) { c.Forward, c.Template = dataplane.DirectRouting, true }), FlagDRoute | FlagTemplate, 0, 0, false},
	} {
		r := RecordOf(c.conn)
		if r.Flags != c.flags || r.State != c.state || r.Client.Port() != c.cport || r.Timeout != 900 || r.Real.Port() != 8080 {
			t.Errorf("%+v: record %+v", c.conn, r)
		}
		back, why := ConnOf(r)
		if why != ReasonNone {
			t.Errorf("%+v: back: %v", c.conn, why)
		}
		if c.roundTripSame && back != c.conn {
			t.Errorf("round trip %+v, want %+v", back, c.conn)
		}
	}
	for state, want := range map[uint16]dataplane.ConnState{TCPNone: dataplane.ConnNew, TCPSynSent: dataplane.ConnNew,
		TCPListen: dataplane.ConnNew, TCPSynAck: dataplane.ConnNew, TCPTimeWait: dataplane.ConnClosing,
		TCPClose: dataplane.ConnClosing, TCPCloseWait: dataplane.ConnClosing, TCPLastAck: dataplane.ConnClosing} {
		r := recV4
		r.State = state
		if c, why := ConnOf(r); why != ReasonNone || c.State != want {
			t.Errorf("IPVS state %d: %v, %v; want %v", state, c.State, why, want)
		}
	}
	r := recV4
	r.Fwmark = 5
	if _, why := ConnOf(r); why != ReasonUnknownService {
		t.Errorf("firewall mark service: %v", why)
	}
	r = recV4
	r.Protocol = 1
	if _, why := ConnOf(r); why != ReasonProtocol {
		t.Errorf("ICMP: %v", why)
	}
}
