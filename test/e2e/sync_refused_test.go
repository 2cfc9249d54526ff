package e2e

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/sync"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// Hostile sync input on a running pair: every datagram refused is counted
// under its reason, none of its records is applied, and the backup still
// carries every connection when the master dies.

// sendUDP sends payload from ns (from src, if valid) to the sync port of
// to.
func sendUDP(t *testing.T, ns *nettest.NS, src, to netip.Addr, payload []byte) {
	t.Helper()
	err := ns.Do(func() error {
		var laddr *net.UDPAddr
		if src.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
		c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to, sync.DefaultPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
	if err != nil {
		t.Fatalf("sending to %s from %s: %v", to, ns.Name, err)
	}
}

// udpPayload is the payload of an Ethernet/IPv4/UDP frame from src to
// port dport.
func udpPayload(f []byte, src netip.Addr, dport uint16) ([]byte, bool) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return nil, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0xf) * 4
	if ip[9] != 17 || len(ip) < ihl+8 || netip.AddrFrom4([4]byte(ip[12:16])) != src {
		return nil, false
	}
	udp := ip[ihl:]
	n := int(binary.BigEndian.Uint16(udp[4:]))
	if binary.BigEndian.Uint16(udp[2:]) != dport || n < 8 || n > len(udp) {
		return nil, false
	}
	return udp[8:n], true
}

// dropsSince are the drops counted after before, by reason (those not 0).
func dropsSince(before, now map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for r, n := range now {
		if d := n - before[r]; d > 0 {
			out[r] = d
		}
	}
	return out
}

// waitDrops waits until d has counted want's drops since before and
// checks they are exactly those, and that nothing was received or applied
// meanwhile.
func waitDrops(t *testing.T, d *lab.Director, before *sync.Status, want map[string]uint64) {
	t.Helper()
	var got map[string]uint64
	var st *sync.Status
	nettest.WaitFor(t, 10*time.Second, "refusals counted", func() error {
		s, err := d.Status()
		if err != nil {
			return err
		}
		st, got = s.Sync, dropsSince(before.Dropped, s.Sync.Dropped)
		for r, n := range want {
			if got[r] < n {
				return fmt.Errorf("dropped %v, want %v", got, want)
			}
		}
		return nil
	})
	if !maps.Equal(got, want) {
		t.Errorf("dropped %v, want %v", got, want)
	}
	if st.Applied != before.Applied || st.ReceivedRecords != before.ReceivedRecords || st.ReceivedDatagrams != before.ReceivedDatagrams {
		t.Errorf("records received %d -> %d, datagrams %d -> %d, applied %d -> %d: a refused datagram was taken",
			before.ReceivedRecords, st.ReceivedRecords, before.ReceivedDatagrams, st.ReceivedDatagrams, before.Applied, st.Applied)
	}
	t.Logf("%s refused and counted: %v", d.Name, got)
}

// failoverIntact kills the master and checks every stream survives on
// the backup: the refusals lost nothing.
func failoverIntact(t *testing.T, l *lab.Lab, ss syncStreams) {
	t.Helper()
	l.Directors[0].Kill()
	l.WaitMaster(l.Directors[1], 10*time.Second)
	ss.waitProgress(t, time.Now())
	broken, total, errs := ss.stop()
	t.Logf("SIGKILL of the master after the refusals: %d long-lived connections, broken by service %v", total, broken)
	for _, e := range errs {
		t.Errorf("broken: %s", e)
	}
}

// TestSyncRefused: datagrams a sync receiver must refuse, sent to the
// backup of a running pair. xlb: a replay of one of the master's
// datagrams, one sealed with another key, truncated ones (MAC cut, header
// cut), one sealed with the right key but from an address not a peer.
// IPVS: another sync id, a size field not the datagram's, another
// version, a record for an unknown service and one for an unknown real
// server (refused records, the datagram taken).
func TestSyncRefused(t *testing.T) {
	t.Run("xlb", func(t *testing.T) {
		l := syncLab(t, lab.DR, "xlb", "refresh_interval = \"0s\"\n")
		d0, d1 := l.Directors[0], l.Directors[1]
		capture := d1.NS.Capture(t, "eth0", 0x0800)
		ss := syncStreams{}
		before := applied(t, d1)
		waitApplied(t, d1, before, ss.start(l, 1))

		// A datagram of the master's carrying connections.
		var orig []byte
		deadline := time.After(5 * time.Second)
		for orig == nil {
			select {
			case f := <-capture.Frames():
				if p, ok := udpPayload(f.Data, d0.Addr, sync.DefaultPort); ok && len(p) > 8 && p[5] == byte(sync.MsgConns) {
					orig = p
				}
			case <-deadline:
				t.Fatal("no sync datagram of the master's captured")
			}
		}
		key, err := os.ReadFile(filepath.Join(l.Dir, "sync.key"))
		if err != nil {
			t.Fatal(err)
		}
		key = []byte(strings.TrimSuffix(string(key), "\n"))
		epoch, seq := binary.BigEndian.Uint64(orig[8:]), binary.BigEndian.Uint64(orig[16:])
		body := orig[24 : len(orig)-32]
		if _, why := sync.OpenXLB(key, orig); why != sync.ReasonNone {
			t.Fatalf("the captured datagram does not open with the key: %s", why)
		}

		st := syncStatus(t, d1).Sync
		sendUDP(t, d0.NS, d0.Addr, d1.Addr, orig)
		sendUDP(t, d0.NS, d0.Addr, d1.Addr, sync.SealXLB([]byte("not the key, but long enough"), sync.Envelope{Type: sync.MsgConns, Epoch: epoch, Seq: seq + 1000, Body: body}))
		sendUDP(t, d0.NS, d0.Addr, d1.Addr, orig[:len(orig)-1])
		sendUDP(t, d0.NS, d0.Addr, d1.Addr, orig[:40])
		sendUDP(t, l.Client, netip.Addr{}, d1.Addr, sync.SealXLB(key, sync.Envelope{Type: sync.MsgConns, Epoch: epoch + 1, Seq: 1, Body: body}))
		waitDrops(t, d1, st, map[string]uint64{"replay": 1, "hmac": 2, "size": 1, "peer": 1})
		metrics, err := d1.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			fmt.Sprintf(`xlb_sync_dropped_total{reason="hmac"} %d`, st.Dropped["hmac"]+2),
			fmt.Sprintf(`xlb_sync_dropped_total{reason="peer"} %d`, st.Dropped["peer"]+1),
			"xlb_sync_ready 1",
		} {
			if !strings.Contains(metrics, want+"\n") {
				t.Errorf("metrics lack %q:\n%s", want, grepLines(metrics, "xlb_sync_"))
			}
		}
		text, err := d1.StatusText()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "Sync xlb on eth0") || !strings.Contains(text, "hmac 2") {
			t.Errorf("xlb status lacks the Sync section or its drops:\n%s", text)
		}
		failoverIntact(t, l, ss)
	})
	t.Run("ipvs", func(t *testing.T) {
		l := syncLab(t, lab.DR, "ipvs", "refresh_interval = \"0s\"\n")
		d1 := l.Directors[1]
		ss := syncStreams{}
		before := applied(t, d1)
		waitApplied(t, d1, before, ss.start(l, 1))

		st := syncStatus(t, d1).Sync
		id := st.SyncID
		rs := l.Reals[0].Addr
		conn := func(port uint16, real netip.Addr) []sync.Record {
			return []sync.Record{sync.RecordOf(dataplane.Conn{
				Service: dataplane.ServiceKey{Addr: l.VIP, Port: port, Proto: dataplane.TCP},
				Client:  netip.AddrPortFrom(l.ClientAddr, 40000), Backend: dataplane.BackendKey{Addr: real, Port: port},
				Forward: dataplane.DirectRouting, State: dataplane.ConnEstablished, Timeout: 900 * time.Second,
			})}
		}
		one := func(syncID uint8, recs []sync.Record) []byte {
			msgs := sync.EncodeIPVS(syncID, recs, 1400)
			if len(msgs) != 1 {
				t.Fatalf("%d messages", len(msgs))
			}
			return msgs[0]
		}
		good := one(id, conn(uint16(syncServices[0].port), rs))
		longer := append(append([]byte{}, good...), 0, 0, 0, 0)
		version := append([]byte{}, good...)
		version[5] = 2
		reals := map[netip.Addr]bool{}
		for _, r := range l.Reals {
			reals[r.Addr] = true
		}
		unknownReal := rs
		for reals[unknownReal] {
			unknownReal = unknownReal.Next()
		}
		for _, m := range [][]byte{
			one(id+1, conn(uint16(syncServices[0].port), rs)),
			longer,
			version,
			one(id, conn(9999, rs)),
			one(id, conn(uint16(syncServices[0].port), unknownReal)),
		} {
			sendUDP(t, l.Client, netip.Addr{}, d1.Addr, m)
		}
		want := map[string]uint64{"syncid": 1, "size": 1, "version": 1, "unknown_service": 1, "unknown_real_server": 1}
		var got map[string]uint64
		nettest.WaitFor(t, 10*time.Second, "refusals counted", func() error {
			s := syncStatus(t, d1).Sync
			if got = dropsSince(st.Dropped, s.Dropped); !maps.Equal(got, want) {
				return fmt.Errorf("dropped %v, want %v", got, want)
			}
			if s.Applied != st.Applied {
				return fmt.Errorf("applied %d -> %d", st.Applied, s.Applied)
			}
			return nil
		})
		t.Logf("%s refused and counted: %v", d1.Name, got)
		failoverIntact(t, l, ss)
	})
}

// grepLines are the lines of s holding sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
