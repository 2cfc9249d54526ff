package health_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/test/nettest"
)

// The SYNs of the checks a Manager starts in one round leave together,
// synBatchMax (64) per sendmmsg; a SYN the kernel refuses in the middle
// of a batch fails its check alone.
func TestManagerTCPBatchSend(t *testing.T) {
	t.Parallel()
	lo := netip.MustParseAddr("127.0.0.1") // bindto: a prober of this test's own
	ln := listenTCP(t)
	up := addrPort(t, ln.Addr())
	refused := closedPort(t)
	// A broadcast destination: raw_sendmsg refuses it (EACCES, no
	// SO_BROADCAST), and nothing leaves the host.
	bcast := netip.MustParseAddrPort("255.255.255.255:80")
	sends0, _, err := health.SYNCalls(false, lo)
	if err != nil {
		t.Skipf("no raw socket: %v", err)
	}

	const n = 300
	specs := make(map[string]health.Spec, n)
	want := make(map[string]string, n) // "" up, else the error
	for i := range n {
		s := tcpSpec()
		s.BindTo, s.Interval, s.Timeout, s.Warmup = lo, time.Hour, 5*time.Second, -1
		key := fmt.Sprintf("c%03d", i)
		switch {
		case i == n/2:
			s.Target, want[key] = bcast, "permission denied"
		case i%3 == 0:
			s.Target, want[key] = refused, "connection refused"
		default:
			s.Target, want[key] = up, ""
		}
		specs[key] = s
	}
	m := health.NewManager(health.Options{Clock: newFakeClock()})
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	// Every check is due at once (no warmup): one round starts them all.
	got := firstResults(t, m, n)
	for key, w := range want {
		tr := got[key]
		switch {
		case w == "" && !tr.Up:
			t.Errorf("%s: %v (%v), want up", key, tr.To, tr.Err)
		case w != "" && (tr.Up || tr.Err == nil || !strings.Contains(tr.Err.Error(), w)):
			t.Errorf("%s: %v (%v), want down with %q", key, tr.To, tr.Err, w)
		}
	}
	sends, _, err := health.SYNCalls(false, lo)
	if err != nil {
		t.Fatal(err)
	}
	// 5 batches, and 2 more calls for the refused SYN: one that stops
	// before it, one that fails on it.
	if d := sends - sends0; d > 8 {
		t.Errorf("%d SYNs sent with %d system calls, want at most 8", n, d)
	}
}

// The answers waiting on a prober's socket are read synBatchMax (64) per
// recvmmsg, and each completes its own probe.
func TestTCPHalfOpenBatchRecv(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	const n = 100
	var targets []netip.AddrPort
	for range n {
		ln, _ := l.listen(t, "tcp", "10.77.9.2:0")
		targets = append(targets, addrPort(t, ln.Addr()))
	}
	capture := l.rs.Capture(t, "eth0", 0x0800)
	var errs []error
	var calls uint64
	var werr error
	if err := l.dir.Do(func() (err error) {
		errs, calls, err = health.SYNBurst(targets, dir4, func() {
			// The director's kernel resets each SYN-ACK after its raw
			// sockets got a copy (ip_protocol_deliver_rcu: raw_local_deliver
			// first): all n resets seen, all n answers wait.
			werr = waitResets(capture, n)
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v, want up", targets[i], err)
		}
	}
	if calls != 2 {
		t.Errorf("%d answers read with %d recvmmsg calls, want 2 (64, then 36)", n, calls)
	}
}

// waitResets waits until n TCP resets from the director were captured.
func waitResets(c *nettest.Capture, n int) error {
	timeout := time.After(10 * time.Second)
	for seen := 0; seen < n; {
		select {
		case f := <-c.Frames():
			p := f.Data
			if len(p) < 14+20 || binary.BigEndian.Uint16(p[12:]) != 0x0800 || p[14+9] != 6 ||
				netip.AddrFrom4([4]byte(p[14+12:14+16])) != dir4 {
				continue
			}
			tcp := p[14+int(p[14]&0x0f)*4:]
			if len(tcp) >= 20 && tcp[13]&0x04 != 0 {
				seen++
			}
		case <-timeout:
			return fmt.Errorf("%d director resets captured, want %d", seen, n)
		}
	}
	return nil
}
