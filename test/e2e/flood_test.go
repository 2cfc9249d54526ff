package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// floodResult is what a SYN flood did.
type floodResult struct {
	sent, sunk       uint64
	rate             float64 // SYNs/s offered
	streams, broken  int
	streamErrs       []string
	requests, failed int
	resets           int // failed requests whose connection was reset or refused
	requestErrs      []string
	events           map[string]float64 // xlb_events_total during the flood
	echoEntries      int                // connection entries of the echo service after the flood
}

// synFlood is issue 14's flood: a one-director DR lab whose web and echo
// services are rr; 20 long-lived echo connections streaming; the client
// opening new HTTP connections (ten at a time); and, for d, spoofed SYNs from
// random source addresses and ports at the generator's full rate (one CPU)
// at a third service (wlc, DR to the generator's sink) on the same
// director. The client loses the first SYN-ACK of each new connection, so
// that its handshakes outlast a million flooded SYNs.
func synFlood(t testing.TB, d time.Duration) floodResult {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr"})
	dir := l.Directors[0]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", l.Logs())
		}
	})
	fl := l.NewFlood(dir)
	dir.WriteConfig(lab.FloodInterfaces(dir.DefaultConfig()) + l.FloodService("wlc"))
	dir.Start()
	nettest.WaitFor(t, 20*time.Second, "requests through the VIP", func() error {
		_, err := l.Get(time.Second)
		return err
	})
	// The director knows the sink's MAC address once a flooded SYN gets
	// there (a flood of a few thousand SYNs: below the flood mode's
	// rate).
	nettest.WaitFor(t, 20*time.Second, "the flood service forwarding", func() error {
		if _, err := fl.Send(1000); err != nil {
			return err
		}
		if fl.Sunk() == 0 {
			return fmt.Errorf("no SYN forwarded to the sink")
		}
		return nil
	})

	streams := l.StartStreams(20, 100*time.Millisecond)
	// From now on the client loses the first SYN-ACK of every connection:
	// a handshake then lasts a second (the SYN and the SYN-ACK are sent
	// again after 1 s) while the flood goes on, and the retransmitted SYN
	// and the ACK must reach the real server of the first SYN.
	nettest.Sysctl(t, l.Client, "net.netfilter.nf_conntrack_acct", "1")
	l.Client.MustRun(t, "nft", "add", "table", "inet", "xlbt")
	l.Client.MustRun(t, "nft", "add", "chain", "inet", "xlbt", "in", "{ type filter hook input priority 0; }")
	l.Client.MustRun(t, "nft", "add", "rule", "inet", "xlbt", "in", "tcp", "sport", fmt.Sprint(lab.WebPort),
		"tcp", "flags", "&", "(syn|ack)", "==", "syn|ack", "ct", "reply", "packets", "1", "drop")
	// Requests in parallel: each takes a second.
	var loads []*lab.Load
	for range 10 {
		loads = append(loads, l.StartLoad(10*time.Millisecond))
	}
	before := floodEvents(t, dir)
	start := time.Now()
	sent, err := fl.Run(d)
	if err != nil {
		t.Fatalf("flood: %v", err)
	}
	elapsed := time.Since(start)
	r := floodResult{sent: sent, sunk: fl.Sunk(), rate: float64(sent) / elapsed.Seconds()}
	for _, ld := range loads {
		ld.Stop() // after its request in flight
		rep := ld.Report(start)
		r.requests, r.failed, r.requestErrs = r.requests+rep.Sent, r.failed+rep.Failed, append(r.requestErrs, rep.Errors...)
		for _, res := range ld.Results() {
			if !res.At.Before(start) && (errors.Is(res.Err, syscall.ECONNRESET) || errors.Is(res.Err, syscall.ECONNREFUSED)) {
				r.resets++
			}
		}
	}
	r.echoEntries = echoEntries(t, dir, l)
	streams.Stop()
	r.streams, r.broken, _, r.streamErrs = streams.Report()
	after := floodEvents(t, dir)
	r.events = map[string]float64{}
	for k, v := range after {
		r.events[k] = v - before[k]
	}
	t.Logf("SYN flood: %d SYNs in %v (%.2f Mpps offered), %d forwarded to the sink; %d long-lived connections, %d broken; %d new connections, %d failed (%d reset); events %v",
		r.sent, elapsed.Round(time.Millisecond), r.rate/1e6, r.sunk, r.streams, r.broken, r.requests, r.failed, r.resets, r.events)
	return r
}

// check asserts issue 14's outcome of a flood; maxFailed is the share of
// the client's new connections that may fail, none by a reset (or a
// refusal): a handshake whose packets reached two real servers.
func (r floodResult) check(t testing.TB, maxFailed float64) {
	t.Helper()
	if r.streams != 20 || r.broken != 0 {
		t.Errorf("%d of %d long-lived connections broken: %v", r.broken, r.streams, r.streamErrs)
	}
	if r.echoEntries != 20 {
		t.Errorf("%d connection entries of the echo service after the flood, want the 20 long-lived connections'", r.echoEntries)
	}
	if r.requests == 0 || float64(r.failed) > maxFailed*float64(r.requests) || r.resets != 0 {
		t.Errorf("%d of %d new connections failed, %d reset (at most %.1f%% may fail, none reset): %v", r.failed, r.requests, r.resets, 100*maxFailed, r.requestErrs)
	}
	if n := r.events["conn_evicted"]; n != 0 {
		t.Errorf("%v established connection entries evicted during the flood, want 0", n)
	}
	if r.events["syn_flood_start"] < 1 || r.events["syn_flood"] < 1 {
		t.Errorf("SYN flood mode not counted in xlb_events_total: %v", r.events)
	}
	if r.sunk == 0 {
		t.Errorf("no flooded SYN forwarded: the flood did not reach the service")
	}
}

// TestSYNFlood: a 5 s SYN flood breaks no long-lived connection, evicts no
// established entry, is counted, and resets none of the client's new
// connections. A reset is what a handshake split between two real servers
// ends in: issue 14's, whose embryonic word a flooded SYN took before
// flood mode began (0 or 1 of 88-219 in a run, 2 runs in 9) until a SYN
// no longer took a live word (TestEmbryoKeptAtFloodOnset shows it
// without chance). Besides, at most 1% may fail otherwise: a request
// that the loaded machine did not complete within its 2 s (its handshake
// takes 1 s), which a 5 s run's 90-200 connections cannot tell from
// issue 14's target of 0.1%; 20 runs failed none of 2529. A flood that
// broke handshakes wholesale (SYNs in the connection table: 33 of 138)
// fails either way. BenchmarkSYNFlood (30 s) holds the 0.1%.
func TestSYNFlood(t *testing.T) {
	synFlood(t, 5*time.Second).check(t, 0.01)
}

func BenchmarkSYNFlood(b *testing.B) {
	for b.Loop() {
		r := synFlood(b, 30*time.Second)
		r.check(b, 0.001) // issue 14's target
		b.ReportMetric(r.rate/1e6, "Mpps-offered")
		b.ReportMetric(float64(r.sunk)/float64(r.sent), "forwarded/offered")
		b.ReportMetric(float64(r.failed), "new-conns-failed")
		b.ReportMetric(float64(r.broken), "long-lived-broken")
		b.ReportMetric(r.events["conn_evicted"], "established-evicted")
		b.ReportMetric(0, "ns/op")
	}
}

// floodEvents reads xlb_events_total by event.
func floodEvents(t testing.TB, d *lab.Director) map[string]float64 {
	t.Helper()
	text, err := d.Metrics()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	ev := map[string]float64{}
	const prefix = `xlb_events_total{event="`
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		name, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		ev[name] = v
	}
	if _, ok := ev["conn_evicted"]; !ok {
		t.Fatalf("no xlb_events_total{event=\"conn_evicted\"} in the metrics")
	}
	return ev
}

// echoEntries counts the entries of the pinned connection table whose
// flow goes to the VIP's echo port (struct xlb_flow: src[16], dst[16],
// sport, dport in host order).
func echoEntries(t testing.TB, d *lab.Director, l *lab.Lab) int {
	t.Helper()
	vip := l.VIP.As4()
	n := 0
	if err := eachConn(d, func(key, _ []byte) {
		if [4]byte(key[16:20]) == vip && binary.NativeEndian.Uint16(key[34:36]) == lab.EchoPort {
			n++
		}
	}); err != nil {
		t.Fatalf("connection table: %v", err)
	}
	return n
}

// eachConn calls fn with the key and value of each entry of d's pinned
// connection table (struct xlb_flow, struct xlb_conn).
func eachConn(d *lab.Director, fn func(key, val []byte)) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(d.PinPath, "xlb_conns_v1"), nil)
	if err != nil {
		return err
	}
	defer m.Close()
	key := make([]byte, m.KeySize())
	val := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&key, &val) {
		fn(key, val)
	}
	return it.Err()
}
