package health_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/test/nettest"
)

// lab is a director namespace, where checks run, and a real-server
// namespace joined by a veth pair: IPv4 10.77.9.0/24 and IPv6
// fd77:9::/64. The director has .1 and .11 (a second source for bindto),
// the real server .2 and .3 (a second address for connect_ip).
type lab struct {
	dir, rs *nettest.NS
}

var (
	dir4, dir4b = netip.MustParseAddr("10.77.9.1"), netip.MustParseAddr("10.77.9.11")
	rs4, rs4b   = netip.MustParseAddr("10.77.9.2"), netip.MustParseAddr("10.77.9.3")
	none4       = netip.MustParseAddr("10.77.9.99") // nothing there
	dir6        = netip.MustParseAddr("fd77:9::1")
	rs6         = netip.MustParseAddr("fd77:9::2")
)

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{dir: nettest.NewNS(t, "hcd"), rs: nettest.NewNS(t, "hcr")}
	nettest.NoDAD(t, l.dir)
	nettest.NoDAD(t, l.rs)
	nettest.Veth(t, l.dir, "eth0", l.rs, "eth0")
	for _, a := range []string{"10.77.9.1/24", "10.77.9.11/24", "fd77:9::1/64"} {
		nettest.Addr(t, l.dir, "eth0", a)
	}
	for _, a := range []string{"10.77.9.2/24", "10.77.9.3/24", "fd77:9::2/64"} {
		nettest.Addr(t, l.rs, "eth0", a)
	}
	return l
}

// check runs one check of s from the director namespace, with s.Timeout.
func (l *lab) check(t *testing.T, s health.Spec) error {
	t.Helper()
	c, err := health.NewChecker(s)
	if err != nil {
		t.Fatalf("NewChecker: %v", err)
	}
	return l.run(t, c, s.Timeout)
}

// run runs c once from the director namespace, within timeout.
func (l *lab) run(t *testing.T, c health.Checker, timeout time.Duration) error {
	t.Helper()
	var cerr error
	if err := l.dir.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cerr = c.Check(ctx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return cerr
}

// listen opens a socket in the real server's namespace ("tcp" or "udp").
func (l *lab) listen(t *testing.T, network, addr string) (ln net.Listener, pc net.PacketConn) {
	t.Helper()
	err := l.rs.Do(func() error {
		var err error
		if network == "udp" {
			pc, err = net.ListenPacket("udp", addr)
		} else {
			ln, err = net.Listen("tcp", addr)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ln != nil {
			ln.Close()
		}
		if pc != nil {
			pc.Close()
		}
	})
	return ln, pc
}

func labSpec(typ health.Type, target netip.AddrPort) health.Spec {
	return health.Spec{Type: typ, Target: target, Interval: time.Second, Timeout: 2 * time.Second, Fall: 1, Rise: 1}
}
