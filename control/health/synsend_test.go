package health_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// linkTap is a captureTap that names the interface it takes the answers
// on (health.ProbeLinker): the SYNs leaving by it bypass the stack.
type linkTap struct {
	*captureTap
	links []int
}

func (lt *linkTap) ProbeLinks() ([]int, error) { return lt.links, nil }

// With a tap that names its interface, the IPv4 SYNs leave through a
// packet socket as frames built by the prober, once the stack resolved
// the neighbour: the real server receives a SYN whose every byte is what
// the stack would send (its MACs, an IPv4 header with DF and the default
// TTL and a right checksum, the TCP header with an MSS option and a right
// checksum), its kernel accepts it (it answers), and the checks read as
// through the stack: up, refused, and i/o timeout for a real server that
// drops the SYNs (resent, the same way).
func TestTCPProbeTapPacket(t *testing.T) {
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.2:9000")
	// The director's stack resets the SYN-ACKs (the capture tap does not,
	// as the XDP program does): the real server forgets each probe.
	dropIn(t, l.rs, "tcp dport 9002 drop") // a silent real server
	mac := func(ns *nettest.NS) net.HardwareAddr {
		hw, err := net.ParseMAC(strings.TrimSpace(ns.MustRun(t, "cat", "/sys/class/net/eth0/address")))
		if err != nil {
			t.Fatal(err)
		}
		return hw
	}
	dirMAC, rsMAC := mac(l.dir), mac(l.rs)
	up := netip.AddrPortFrom(rs4, 9000)
	pktCalls := l.packetTap(t, up)

	syns := l.rs.Capture(t, "eth0", 0x0800)
	before := pktCalls()
	if err := l.check(t, labSpec(checktype.TCP, up)); err != nil {
		t.Errorf("listening, SYN through the packet socket: %v", err)
	}
	if pktCalls() == before {
		t.Errorf("the SYN went through the stack")
	}
	f := nextFrame(t, syns, rs4, 9000)
	checkSYNFrame(t, f, dirMAC, rsMAC)

	before = pktCalls()
	err := l.check(t, labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9001)))
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed, SYN through the packet socket: %v, want connection refused", err)
	}
	if pktCalls() == before {
		t.Errorf("closed: the SYN went through the stack")
	}

	before = pktCalls()
	silent := labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9002))
	silent.Timeout = 1500 * time.Millisecond // the SYN and its resend at 1 s
	err = l.check(t, silent)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent, SYN through the packet socket: %v, want i/o timeout", err)
	}
	if got := pktCalls() - before; got < 2 {
		t.Errorf("silent: %d sends through the packet socket, want the SYN and its resend", got)
	}

	// A change of the routes: the SYNs go through the stack until the
	// check learned its route again.
	l.dir.MustRun(t, "ip", "route", "add", "10.77.10.0/24", "via", rs4.String())
	nettest.WaitFor(t, 10*time.Second, "a SYN through the stack after a route changed", func() error {
		before := pktCalls()
		if err := l.check(t, labSpec(checktype.TCP, up)); err != nil {
			return fmt.Errorf("listening: %w", err)
		}
		if pktCalls() != before {
			return errors.New("the SYN went through the packet socket")
		}
		return nil
	})
	nettest.WaitFor(t, 10*time.Second, "a SYN through the packet socket again", func() error {
		before := pktCalls()
		if err := l.check(t, labSpec(checktype.TCP, up)); err != nil {
			return fmt.Errorf("listening: %w", err)
		}
		if pktCalls() == before {
			return errors.New("the SYN went through the stack")
		}
		return nil
	})
}

// packetTap gives the director a tap that names its eth0 (the IPv4 SYNs
// leaving by it bypass the stack), and returns once a check of up (a
// listening real server) sent its SYN through the packet socket: the
// first SYNs go through the stack, which resolves the real server's MAC.
// The function it returns counts the packet socket's sendmmsg calls.
func (l *lab) packetTap(t *testing.T, up netip.AddrPort) (pktCalls func() uint64) {
	t.Helper()
	var ifindex int
	if err := l.dir.Do(func() error {
		i, err := net.InterfaceByName("eth0")
		if err == nil {
			ifindex = i.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tap := &linkTap{&captureTap{c: l.dir.Capture(t, "eth0", 0x0800), watched: map[netip.AddrPort]bool{}}, []int{ifindex}}
	if err := l.dir.Do(func() error { return health.SetProbeTap(tap) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.dir.Do(func() error { return health.SetProbeTap(nil) }) })
	pktCalls = func() uint64 {
		var n uint64
		if err := l.dir.Do(func() (err error) {
			n, err = health.SYNPacketCalls(netip.Addr{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	nettest.WaitFor(t, 10*time.Second, "a SYN through the packet socket", func() error {
		err := l.check(t, labSpec(checktype.TCP, up))
		if err != nil {
			return fmt.Errorf("listening: %w", err)
		}
		if pktCalls() == 0 {
			return errors.New("every SYN went through the stack")
		}
		return nil
	})
	return pktCalls
}

// nextFrame returns the next frame of an IPv4 SYN to dst:port captured.
func nextFrame(t *testing.T, c *nettest.Capture, dst netip.Addr, port uint16) []byte {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.Frames():
			p := f.Data
			if len(p) < 14+20+20 || binary.BigEndian.Uint16(p[12:]) != 0x0800 || p[14+9] != 6 {
				continue
			}
			tcp := p[14+int(p[14]&0x0f)*4:]
			if netip.AddrFrom4([4]byte(p[14+16:14+20])) != dst || binary.BigEndian.Uint16(tcp[2:]) != port || tcp[13] != 0x02 {
				continue
			}
			return p
		case <-timeout:
			t.Fatalf("no SYN to %s:%d captured", dst, port)
		}
	}
}

// checkSYNFrame checks every byte of a SYN frame the prober built, but the
// IP ID, the ports and the sequence number.
func checkSYNFrame(t *testing.T, p []byte, src, dst net.HardwareAddr) {
	t.Helper()
	if len(p) != 14+20+24 {
		t.Fatalf("frame of %d bytes, want %d: % x", len(p), 14+20+24, p)
	}
	if string(p[0:6]) != string(dst) || string(p[6:12]) != string(src) {
		t.Errorf("frame from %s to %s, want from %s to %s", net.HardwareAddr(p[6:12]), net.HardwareAddr(p[0:6]), src, dst)
	}
	ip := p[14:34]
	wantIP := []byte{0x45, 0, 0, 44, ip[4], ip[5], 0x40, 0, 64, 6}
	if string(ip[:10]) != string(wantIP) {
		t.Errorf("IP header % x, want % x", ip[:10], wantIP)
	}
	if netip.AddrFrom4([4]byte(ip[12:16])) != dir4 {
		t.Errorf("source %s, want %s", netip.AddrFrom4([4]byte(ip[12:16])), dir4)
	}
	if sum := packet.Checksum(ip); sum != 0 {
		t.Errorf("IP header checksum wrong: the header's checksum is %#x, want 0", sum)
	}
	tcp := p[34:]
	want := []byte{0x60, 0x02, 0xfa, 0xf0}                                  // 6 words, SYN, window 64240
	if string(tcp[12:16]) != string(want) || tcp[18] != 0 || tcp[19] != 0 { // urgent pointer 0
		t.Errorf("TCP header % x", tcp)
	}
	if binary.BigEndian.Uint32(tcp[8:]) != 0 {
		t.Errorf("a SYN that acknowledges %d", binary.BigEndian.Uint32(tcp[8:]))
	}
	if string(tcp[20:24]) != string([]byte{2, 4, 0x05, 0xb4}) {
		t.Errorf("TCP options % x, want MSS 1460", tcp[20:24])
	}
	var seg [24]byte
	copy(seg[:], tcp)
	seg[16], seg[17] = 0, 0
	if got, want := binary.BigEndian.Uint16(tcp[16:]), packet.L4Checksum(dir4, rs4, 6, seg[:]); got != want {
		t.Errorf("TCP checksum %#x, want %#x", got, want)
	}
}

// A tcp check whose SYNs go through the raw socket while its prober has a
// packet sender (here the tap names no interface; in the daemon, the real
// servers past pktMaxPaths) learns its route once, not again at each run
// that times out: the sender hears of the changes of the routes, and
// after one the check learns its route again. Learning it was about 50 µs
// (a route lookup, a socket connected for the source), at every run of
// every check of a real server that does not answer.
func TestTCPProbeRawRouteKept(t *testing.T) {
	l := newLab(t)
	dropIn(t, l.rs, "tcp dport 9002 drop") // a silent real server
	tap := &linkTap{&captureTap{c: l.dir.Capture(t, "eth0", 0x0800), watched: map[netip.AddrPort]bool{}}, nil}
	if err := l.dir.Do(func() error { return health.SetProbeTap(tap) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.dir.Do(func() error { return health.SetProbeTap(nil) }) })
	silent := labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9002))
	silent.Timeout = 300 * time.Millisecond // one SYN a run
	c, err := health.NewChecker(silent)
	if err != nil {
		t.Fatal(err)
	}
	timedOut := func(runs int) uint64 {
		t.Helper()
		before := health.RouteLearns()
		for range runs {
			if err := l.run(t, c, silent.Timeout); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("silent real server: %v, want i/o timeout", err)
			}
		}
		return health.RouteLearns() - before
	}
	if n := timedOut(4); n != 1 {
		t.Errorf("4 runs that timed out learned the route %d times, want once", n)
	}
	l.dir.MustRun(t, "ip", "route", "add", "10.77.10.0/24", "via", rs4.String())
	nettest.WaitFor(t, 10*time.Second, "the route learned again after a change of the routes", func() error {
		if timedOut(1) == 0 {
			return errors.New("not learned again")
		}
		return nil
	})
	if n := timedOut(4); n != 0 {
		t.Errorf("4 runs that timed out after that learned the route %d times, want none", n)
	}
}

// egressDrop makes the director's eth0 drop the SYNs to port as they
// leave, as a full ring or queue does: the packet socket's send fails
// with ENOBUFS, the stack drops its own silently. dropped counts the SYNs
// dropped; remove takes the rule away.
func (l *lab) egressDrop(t *testing.T, port uint16) (dropped func() int, remove func()) {
	t.Helper()
	l.dir.MustRun(t, "nft", "add table netdev xlbt")
	l.dir.MustRun(t, "nft", `add chain netdev xlbt out { type filter hook egress device "eth0" priority 0; }`)
	l.dir.MustRun(t, "nft", fmt.Sprintf("add rule netdev xlbt out tcp dport %d tcp flags & (syn | ack) == syn counter drop", port))
	dropped = func() int {
		out := l.dir.MustRun(t, "nft", "list chain netdev xlbt out")
		_, rest, ok := strings.Cut(out, "counter packets ")
		if !ok {
			t.Fatalf("no counter in\n%s", out)
		}
		n, err := strconv.Atoi(strings.Fields(rest)[0])
		if err != nil {
			t.Fatalf("counter in\n%s: %v", out, err)
		}
		return n
	}
	remove = func() { l.dir.MustRun(t, "nft", "delete table netdev xlbt") }
	return dropped, remove
}

// A SYN the interface has no room for (the packet socket's send fails
// with ENOBUFS: a veth whose peer's ring is full) is sent again through
// the packet socket after 1 ms, then 2, 4... until the interface takes
// it, not through the stack, which would meet the same full ring and
// drop it silently: the check is up once the interface has room again,
// within a timeout shorter than the SYN's first resend (1 s). While the
// interface refuses them all, the check fails with ENOBUFS, not as
// unanswered, after a few tries. The SYNs of a Manager's round (one
// sendmmsg) are sent again the same way.
func TestTCPProbeDeviceFull(t *testing.T) {
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.2:9000")
	up := netip.AddrPortFrom(rs4, 9000)
	pktCalls := l.packetTap(t, up)
	dropped, remove := l.egressDrop(t, 9000)

	// Refused throughout: tries at 0, 1, 3, 7, 15... 255 ms.
	spec := labSpec(checktype.TCP, up)
	spec.Timeout = 300 * time.Millisecond
	calls0, deferred0 := pktCalls(), health.SYNsDeferred()
	err := l.check(t, spec)
	if !errors.Is(err, unix.ENOBUFS) {
		t.Errorf("every SYN refused: %v, want no buffer space available (ENOBUFS)", err)
	}
	tries := pktCalls() - calls0
	if tries < 4 || tries > 9 {
		t.Errorf("%d tries in %v, want 9 (at 0, 1, 3... 255 ms), at least 4", tries, spec.Timeout)
	}
	if d := health.SYNsDeferred() - deferred0; d < tries {
		t.Errorf("%d SYNs deferred, want at least the %d tries", d, tries)
	}
	if n := dropped(); uint64(n) != tries {
		t.Errorf("%d SYNs dropped, want the %d tries (none through the stack)", n, tries)
	}

	// Refused until the rule goes: the check is up.
	spec.Timeout = 900 * time.Millisecond
	result := make(chan error, 1)
	before := dropped()
	go func() { result <- l.check(t, spec) }()
	nettest.WaitFor(t, 10*time.Second, "the SYN refused", func() error {
		if dropped() == before {
			return errors.New("not yet")
		}
		return nil
	})
	remove()
	if err := <-result; err != nil {
		t.Errorf("SYN refused, then room: %v, want up", err)
	}

	// A Manager's round: its SYNs leave in one sendmmsg, the first
	// refused and the others not sent; all are sent again.
	dropped, remove = l.egressDrop(t, 9000)
	const n = 100
	m := health.NewManager(health.Options{})
	spec.Interval, spec.Warmup = time.Hour, -1
	list := make([]health.Check, n)
	for i := range list {
		list[i] = health.Check{Key: fmt.Sprintf("svc/%d", i), Spec: &spec, Target: up}
	}
	if err := m.UpdateChecks(list); err != nil {
		t.Fatal(err)
	}
	startManagerIn(t, m, l.dir)
	nettest.WaitFor(t, 10*time.Second, "the round's SYNs refused", func() error {
		if dropped() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	remove()
	for key, tr := range firstResults(t, m, n) {
		if !tr.Up {
			t.Errorf("%s: %v (%v), want up", key, tr.To, tr.Err)
		}
	}
}
