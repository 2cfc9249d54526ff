package health_test

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
)

// udpServer answers each datagram in the real server's namespace with
// reply(datagram), or not at all when reply returns nil.
type udpServer struct {
	mu    sync.Mutex
	reply func([]byte) []byte
	got   [][]byte
}

func (l *lab) udpServer(t *testing.T, addr string) (*udpServer, netip.AddrPort) {
	_, pc := l.listen(t, "udp", addr)
	u := &udpServer{}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.got = append(u.got, bytes.Clone(buf[:n]))
			f := u.reply
			u.mu.Unlock()
			if f != nil {
				if r := f(buf[:n]); r != nil {
					_, _ = pc.WriteTo(r, from)
				}
			}
		}
	}()
	return u, netip.MustParseAddrPort(pc.LocalAddr().String())
}

func (u *udpServer) set(f func([]byte) []byte) {
	u.mu.Lock()
	u.reply = f
	u.mu.Unlock()
}

func (u *udpServer) last() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		return nil
	}
	return u.got[len(u.got)-1]
}

func TestUDP(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	srv, target := l.udpServer(t, "10.77.9.2:5000")
	s := labSpec(checktype.UDP, target)
	s.Timeout = 300 * time.Millisecond

	// Silence is success: no ICMP error within the timeout (keepalived's
	// udp_socket_state on THREAD_READ_TIMEOUT).
	start := time.Now()
	if err := l.check(t, s); err != nil {
		t.Errorf("silent server: %v", err)
	}
	if d := time.Since(start); d < s.Timeout {
		t.Errorf("silent server: passed after %v, before the timeout %v", d, s.Timeout)
	}
	if got := srv.last(); len(got) != 32 || !strings.HasPrefix(string(got), "xlb check - ") {
		t.Errorf("default payload %q, want 32 bytes of \"xlb check - \"", got)
	}

	// A closed port answers with ICMP port unreachable: failure, at once.
	closed := labSpec(checktype.UDP, netip.AddrPortFrom(rs4, 5001))
	closed.Timeout = 5 * time.Second
	start = time.Now()
	err := l.check(t, closed)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed port: got %v, want connection refused (ICMP port unreachable)", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("closed port: failed after %v, want at once", d)
	}

	// The payload is sent as written (keepalived's hex string).
	s.Payload = "de ad be ef 1 02"
	if err := l.check(t, s); err != nil {
		t.Errorf("payload: %v", err)
	}
	if got, want := srv.last(), []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02}; !bytes.Equal(got, want) {
		t.Errorf("payload sent % x, want % x", got, want)
	}

	// require_reply: silence fails, any reply passes.
	s.RequireReply = true
	if err := l.check(t, s); err == nil || !strings.Contains(err.Error(), "no reply") {
		t.Errorf("require_reply, silent server: got %v, want no reply", err)
	}
	srv.set(func(b []byte) []byte { return []byte{0x01, 0x02, 0x03, 0x04} })
	if err := l.check(t, s); err != nil {
		t.Errorf("require_reply, a reply: %v", err)
	}

	// A pattern with wildcard nibbles.
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"01 02 03", true},
		{"01 0x x3 04", true},
		{"01 02 03 05", false},
		{"01 02 03 04 05", false}, // a reply shorter than the pattern
		{"x1 12", false},
	} {
		s.Reply = tc.pattern
		err := l.check(t, s)
		if tc.ok && err != nil || !tc.ok && (err == nil || !strings.Contains(err.Error(), "does not match")) {
			t.Errorf("pattern %q against 01 02 03 04: got %v, want ok %v", tc.pattern, err, tc.ok)
		}
	}

	// bindto: the datagram comes from the second address of the director.
	s.Reply, s.RequireReply, s.BindTo = "", false, dir4b
	var from netip.Addr
	srv.set(func(b []byte) []byte { return nil })
	_, pc := l.listen(t, "udp", "10.77.9.3:5002")
	go func() {
		buf := make([]byte, 100)
		_, a, err := pc.ReadFrom(buf)
		if err == nil {
			srv.mu.Lock()
			from = netip.MustParseAddrPort(a.String()).Addr()
			srv.mu.Unlock()
		}
		_, _ = pc.WriteTo([]byte("ok"), a)
	}()
	s.ConnectIP, s.RequireReply = rs4b, true
	s.Target = netip.AddrPortFrom(none4, 5002) // connect_ip replaces the address
	if err := l.check(t, s); err != nil {
		t.Errorf("connect_ip and bindto: %v", err)
	}
	srv.mu.Lock()
	if from != dir4b {
		t.Errorf("datagram from %v, want bindto %v", from, dir4b)
	}
	srv.mu.Unlock()
}

func TestUDPBadSpecs(t *testing.T) {
	t.Parallel()
	for _, s := range []health.Spec{
		{Payload: "zz"},
		{Payload: "0x"}, // wildcards only in a reply
		{Reply: "01"},   // a pattern without require_reply
		{RequireReply: true, Reply: "g1"},
	} {
		s.Type, s.Target, s.Interval, s.Timeout, s.Fall, s.Rise = checktype.UDP, netip.MustParseAddrPort("10.0.0.1:53"), time.Second, time.Second, 1, 1
		if err := s.Validate(); err == nil {
			t.Errorf("%+v: valid", s)
		} else {
			t.Logf("%v", err)
		}
	}
}
