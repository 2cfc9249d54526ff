package ecmp

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// syncExtra is [sync] for BGP active-active directors: xlb's protocol
// with no vrrp_instance (each director sends its flows and takes its
// peers'), unicast to the others.
func syncExtra(t *testing.T, dir string, n int) func(d *Director) string {
	key := filepath.Join(dir, "sync.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(d *Director) string {
		var peers []string
		for i := range n {
			if a := netip.AddrFrom4([4]byte{10, 77, 0, byte(2 + i)}); a != d.Addr {
				peers = append(peers, fmt.Sprintf("%q", a))
			}
		}
		return fmt.Sprintf("\n[sync]\nprotocol = \"xlb\"\ninterface = \"eth0\"\npeers = [%s]\nkey_file = %q\nready_timeout = \"5s\"\n",
			strings.Join(peers, ", "), key)
	}
}

// TestFRRSyncRR: three BGP active-active directors with rr (whose choice
// no other director can compute) and [sync]. A director dies (BFD
// withdraws it): the router moves its flows to the other two, which hold
// them from the sync: no stream breaks.
func TestFRRSyncRR(t *testing.T) {
	l := New(t, Spec{BFD: true, Scheduler: "rr", Extra: syncExtra(t, t.TempDir(), 3)})
	d1, d2, d3 := l.Directors[0], l.Directors[1], l.Directors[2]
	s := l.StartStreams(30, 5*time.Second)
	by := d2.Connections()
	t.Logf("streams by director: d1 %d, d2 %d, d3 %d", d1.Connections(), by, d3.Connections())
	if by == 0 {
		t.Fatal("d2 holds no stream: the test would show nothing")
	}
	// Each survivor holds the streams the others scheduled.
	for _, d := range []*Director{d1, d3} {
		want := 30 - d.Connections()
		nettest.WaitFor(t, 10*time.Second, d.Name+" holding the others' streams", func() error {
			st, err := d.Status()
			if err != nil {
				return err
			}
			if st.Sync == nil {
				return fmt.Errorf("no sync")
			}
			if st.Sync.Applied < want {
				return fmt.Errorf("%d applied, want %d: %+v", st.Sync.Applied, want, st.Sync)
			}
			return nil
		})
	}
	start := time.Now()
	d2.Kill()
	l.WaitNextHops(10*time.Second, d1, d3)
	took := time.Since(start)
	broken, gap := s.Stop()
	t.Logf("SIGKILL of d2 (holding %d of 30 rr streams) to withdrawal: %v; streams: %d broken, longest echo wait %v",
		by, took.Round(time.Millisecond), len(broken), gap.Round(time.Millisecond))
	if len(broken) > 0 {
		t.Errorf("%d streams broken: %v", len(broken), broken)
	}
}

// TestFRRSyncReadyHoldsAnnouncement: a director that starts without its
// peers' tables (their answers dropped on its way in) announces its VIP
// only once it is sync_ready, by ready_timeout (the BGP announcement
// rule's SyncReady input).
func TestFRRSyncReadyHoldsAnnouncement(t *testing.T) {
	l := New(t, Spec{BFD: true, Scheduler: "rr", Extra: syncExtra(t, t.TempDir(), 3)})
	d1, d2, d3 := l.Directors[0], l.Directors[1], l.Directors[2]
	d2.Stop()
	l.WaitNextHops(10*time.Second, d1, d3)
	d2.NS.MustRun(t, "nft", "add", "table", "ip", "xlbtsync")
	d2.NS.MustRun(t, "nft", "add", "chain", "ip", "xlbtsync", "in", "{ type filter hook input priority 0 ; }")
	d2.NS.MustRun(t, "nft", "add", "rule", "ip", "xlbtsync", "in", "udp", "dport", "8848", "drop")
	start := time.Now()
	d2.Start()
	var announced time.Time
	nettest.WaitFor(t, 30*time.Second, "d2 a next hop again", func() error {
		hops, err := l.Router.NextHops()
		if err != nil {
			return err
		}
		if !slices.Contains(hops, d2.Addr.String()) {
			return fmt.Errorf("next hops %v", hops)
		}
		announced = time.Now()
		return nil
	})
	st, err := d2.Status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("d2 restarted without its peers' tables: sync_ready by %s %v after its start, a next hop %v after its start",
		st.Sync.ReadyHow, st.Sync.ReadySince.Sub(start).Round(time.Millisecond), announced.Sub(start).Round(time.Millisecond))
	if st.Sync.ReadyHow != "timeout" {
		t.Errorf("d2 ready by %q, want timeout", st.Sync.ReadyHow)
	}
	if st.Sync.ReadySince.IsZero() || announced.Before(st.Sync.ReadySince) {
		t.Errorf("d2 was a next hop at %s, before it was sync_ready (%s)", announced.Format("15:04:05.000"), st.Sync.ReadySince.Format("15:04:05.000"))
	}
}
