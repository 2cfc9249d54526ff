package health_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// The tcp check is a half-open probe: a SYN, its SYN-ACK (up), and the
// director kernel's RST, which frees the real server's request socket.
// No connection is ever established on the real server.
func TestTCPHalfOpen(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.2:9000")
	l.listen(t, "tcp", "[fd77:9::2]:9000")
	opens := l.rs.TCPCounter(t, "PassiveOpens")
	for _, target := range []netip.AddrPort{netip.AddrPortFrom(rs4, 9000), netip.AddrPortFrom(rs6, 9000)} {
		if err := l.check(t, labSpec(checktype.TCP, target)); err != nil {
			t.Errorf("%s, listening: %v", target, err)
		}
	}
	// The director's RST went with the SYN-ACK's receive: poll a little
	// anyway.
	nettest.WaitFor(t, 5*time.Second, "no connection on the real server", func() error {
		out := l.rs.MustRun(t, "ss", "-tanH", "state", "syn-recv", "state", "established", "( sport = :9000 )")
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("left behind:\n%s", out)
		}
		return nil
	})
	if got := l.rs.TCPCounter(t, "PassiveOpens"); got != opens {
		t.Errorf("the real server established %d connections, want none", got-opens)
	}
	for _, target := range []netip.AddrPort{netip.AddrPortFrom(rs4, 9001), netip.AddrPortFrom(rs6, 9001)} {
		err := l.check(t, labSpec(checktype.TCP, target))
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s, closed: %v, want connection refused", target, err)
		}
	}
}

// A real server that answers nothing: the SYN is resent after 1 s, and
// the check times out.
func TestTCPHalfOpenTimeout(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.2:9000")
	dropIn(t, l.rs, "tcp dport 9000 drop")
	capture := l.rs.Capture(t, "eth0", 0x0800)
	s := labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9000))
	s.Timeout = 2500 * time.Millisecond
	err := l.check(t, s)
	if err == nil || !strings.Contains(err.Error(), "i/o timeout") {
		t.Fatalf("dropped: %v, want i/o timeout", err)
	}
	first := nextSYN(t, capture, rs4, 9000)
	again := nextSYN(t, capture, rs4, 9000)
	if again.seq != first.seq || again.src != first.src {
		t.Errorf("resent SYN %+v, first %+v: want the same", again, first)
	}
	if d := again.at.Sub(first.at); d < 900*time.Millisecond || d > 2*time.Second {
		t.Errorf("SYN resent after %v, want 1 s", d)
	}
}

// Two checks of one real server at once each get their own answer: the
// first's SYN is answered with a RST, the second's with a SYN-ACK.
func TestTCPHalfOpenConcurrent(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.2:9000")
	dropIn(t, l.rs, "tcp dport 9000 drop")
	capture := l.rs.Capture(t, "eth0", 0x0800)
	target := netip.AddrPortFrom(rs4, 9000)
	s := labSpec(checktype.TCP, target)
	s.Timeout = 10 * time.Second
	first := make(chan error, 1)
	go func() { first <- l.check(t, s) }()
	syn := nextSYN(t, capture, rs4, 9000)
	// The first probe's SYNs are now refused, any other is answered.
	l.rs.MustRun(t, "nft", "flush chain inet xlbt in")
	l.rs.MustRun(t, "nft", "add rule inet xlbt in tcp dport 9000 tcp sequence "+strconv.FormatUint(uint64(syn.seq), 10)+" reject with tcp reset")
	if err := l.check(t, s); err != nil {
		t.Errorf("second check: %v, want up", err)
	}
	select {
	case err := <-first:
		t.Fatalf("first check ended with the second: %v", err)
	default:
	}
	// Its SYN is resent after 1 s, and refused.
	if err := <-first; err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("first check: %v, want connection refused", err)
	}
}

// Packets to the prober's port that answer no probe complete none, and
// the prober keeps working.
func TestTCPHalfOpenHostile(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	dropIn(t, l.rs, "tcp dport 9000 drop")
	capture := l.rs.Capture(t, "eth0", 0x0800)
	s := labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9000))
	s.Timeout = 10 * time.Second
	result := make(chan error, 1)
	go func() { result <- l.check(t, s) }()
	probe := nextSYN(t, capture, rs4, 9000)
	dst := probe.src
	raw := rawSender(t, l.rs)
	answer := func(src netip.Addr, sport uint16, flags byte, ack uint32, tcpLen int) {
		t.Helper()
		seg := make([]byte, 20)
		binary.BigEndian.PutUint16(seg[0:], sport)
		binary.BigEndian.PutUint16(seg[2:], dst.Port())
		binary.BigEndian.PutUint32(seg[4:], 12345)
		binary.BigEndian.PutUint32(seg[8:], ack)
		seg[12] = 5 << 4
		seg[13] = flags
		binary.BigEndian.PutUint16(seg[14:], 1000)
		binary.BigEndian.PutUint16(seg[16:], packet.L4Checksum(src, dst.Addr(), 6, seg))
		raw(src, dst.Addr(), seg[:tcpLen])
	}
	const syn, ack, rst, fin = 0x02, 0x10, 0x04, 0x01
	right := probe.seq + 1
	// SYN-ACKs that would make the check pass, were they taken.
	answer(rs4, 9000, syn|ack, right+1, 20)   // another acknowledgement
	answer(rs4, 9000, syn|ack, right-1, 20)   //
	answer(rs4, 9001, syn|ack, right, 20)     // another port
	answer(rs4b, 9000, syn|ack, right, 20)    // another address
	answer(rs4, 9000, syn, right, 20)         // no ACK
	answer(rs4, 9000, syn|ack|fin, right, 20) // SYN-FIN
	answer(rs4, 9000, ack, right, 20)         // neither SYN nor RST
	answer(rs4, 9000, syn|ack, right, 19)     // truncated
	answer(rs4, 9000, syn|ack, right, 12)     //
	answer(rs4, 9000, syn|ack, right, 0)      // no TCP header at all
	// The right RST ends it, refused: had any of the above been taken,
	// the check would have passed.
	answer(rs4, 9000, rst|ack, right, 20)
	if err := <-result; err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("check: %v, want connection refused (the only answer that fits)", err)
	}
	// Still working.
	l.rs.MustRun(t, "nft", "flush chain inet xlbt in")
	l.listen(t, "tcp", "10.77.9.2:9000")
	if err := l.check(t, labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9000))); err != nil {
		t.Errorf("after the hostile packets: %v", err)
	}
}

// Without CAP_NET_RAW the check connects, as before the half-open probe.
func TestTCPNoRawConnects(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.2:9000")
	opens := l.rs.TCPCounter(t, "PassiveOpens")
	c, err := health.NewChecker(labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9000)))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// Capabilities are a thread's: this one enters the director's
		// namespace and drops CAP_NET_RAW from its effective set, then
		// takes both back. It is unlocked only if that worked (else the
		// goroutine's exit retires it); the main thread must not stay in
		// the lab's namespace, whose removal kills its processes.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromName(l.dir.Name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = func() error {
			if err := setNetRaw(false); err != nil {
				return err
			}
			defer setNetRaw(true)
			if _, err := health.SYNProberPort(false, netip.Addr{}); err == nil {
				return fmt.Errorf("a raw socket without CAP_NET_RAW")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return c.Check(ctx)
		}()
		if netns.Set(orig) == nil && setNetRaw(true) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("check without CAP_NET_RAW: %v", err)
	}
	if got := l.rs.TCPCounter(t, "PassiveOpens"); got != opens+1 {
		t.Errorf("the real server established %d connections, want 1", got-opens)
	}
}

// setNetRaw raises or drops CAP_NET_RAW in the calling thread's
// effective capabilities.
func setNetRaw(on bool) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	if on {
		data[0].Effective |= 1 << unix.CAP_NET_RAW
	} else {
		data[0].Effective &^= 1 << unix.CAP_NET_RAW
	}
	return unix.Capset(&hdr, &data[0])
}

// dropIn adds a table inet xlbt with an input chain "in" and rule in ns.
func dropIn(t *testing.T, ns *nettest.NS, rule string) {
	t.Helper()
	ns.MustRun(t, "nft", "add table inet xlbt")
	ns.MustRun(t, "nft", "add chain inet xlbt in { type filter hook input priority 0; }")
	ns.MustRun(t, "nft", "add rule inet xlbt in "+rule)
}

// capturedSYN is a SYN seen on the real server's interface.
type capturedSYN struct {
	src netip.AddrPort
	seq uint32
	at  time.Time
}

// nextSYN returns the next IPv4 SYN to dst:port captured.
func nextSYN(t *testing.T, c *nettest.Capture, dst netip.Addr, port uint16) capturedSYN {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.Frames():
			p := f.Data
			if len(p) < 14+20 || binary.BigEndian.Uint16(p[12:]) != 0x0800 || p[14+9] != 6 {
				continue
			}
			ihl := int(p[14]&0x0f) * 4
			tcp := p[14+ihl:]
			if len(tcp) < 20 || netip.AddrFrom4([4]byte(p[14+16:14+20])) != dst ||
				binary.BigEndian.Uint16(tcp[2:]) != port || tcp[13] != 0x02 {
				continue
			}
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[14+12:14+16])), binary.BigEndian.Uint16(tcp[0:]))
			return capturedSYN{src: src, seq: binary.BigEndian.Uint32(tcp[4:]), at: f.At}
		case <-timeout:
			t.Fatalf("no SYN to %s:%d captured", dst, port)
		}
	}
}

// rawSender returns a function that sends an IPv4 packet carrying seg
// (TCP) from src to dst out of ns.
func rawSender(t *testing.T, ns *nettest.NS) func(src, dst netip.Addr, seg []byte) {
	t.Helper()
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func(src, dst netip.Addr, seg []byte) {
		t.Helper()
		ip := make([]byte, 20, 20+len(seg))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(seg)))
		ip[8], ip[9] = 64, 6
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		// The kernel fills in the header checksum (IP_HDRINCL).
		if err := unix.Sendto(fd, append(ip, seg...), 0, &unix.SockaddrInet4{Addr: d4}); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

// A Manager's tcp check that nothing answers (a loopback listener whose
// accept queue is full drops SYNs) goes down by its timeout: the prober's
// timer ends the run, with no goroutine waiting for it.
func TestManagerTCPTimeout(t *testing.T) {
	t.Parallel()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(fd, lo); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	target := netip.AddrPortFrom(netip.AddrFrom4(lo.Addr), uint16(sa.(*unix.SockaddrInet4).Port))
	// One connection, never accepted, fills the queue.
	filler, err := net.DialTimeout("tcp", target.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })

	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk})
	s := tcpSpec()
	s.Target, s.Interval, s.Timeout = target, interval, 1500*time.Millisecond
	if err := m.Update(map[string]health.Spec{"k": s}); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	start := time.Now()
	step(t, clk, m, "k")
	tr := expect(t, m.Results(), "k", health.StateUnknown, health.StateDown)
	if tr.Err == nil || !strings.Contains(tr.Err.Error(), "i/o timeout") {
		t.Errorf("down with %v, want i/o timeout", tr.Err)
	}
	if d := time.Since(start); d < s.Timeout {
		t.Errorf("down after %v, before the timeout %v", d, s.Timeout)
	}
}
