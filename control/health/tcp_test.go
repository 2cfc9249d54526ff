package health_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
)

func check(t *testing.T, s health.Spec) error {
	t.Helper()
	c, err := health.NewChecker(s)
	if err != nil {
		t.Fatalf("NewChecker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	return c.Check(ctx)
}

func tcpSpec() health.Spec {
	return health.Spec{Type: checktype.TCP, Interval: time.Second, Timeout: 5 * time.Second, Fall: 1, Rise: 1}
}

func TestTCP(t *testing.T) {
	t.Parallel()
	ln := listenTCP(t)
	s := tcpSpec()
	s.Target = addrPort(t, ln.Addr())
	if err := check(t, s); err != nil {
		t.Errorf("accepting listener: %v", err)
	}
	s.Target = closedPort(t)
	err := check(t, s)
	if err == nil {
		t.Fatal("closed port: no error")
	}
	t.Logf("closed port: %v", err)
}

// connect_ip replaces the address checked, bindto the source address.
func TestTCPConnectIPBindTo(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.3:9000")
	capture := l.rs.Capture(t, "eth0", 0x0800)
	s := labSpec(checktype.TCP, netip.AddrPortFrom(none4, 9000))
	s.ConnectIP, s.BindTo = rs4b, dir4b
	if err := l.check(t, s); err != nil {
		t.Fatal(err)
	}
	syn := nextSYN(t, capture, rs4b, 9000)
	if got := syn.src.Addr(); got != dir4b {
		t.Errorf("SYN from %s, want bindto 10.77.9.11", got)
	}
	s.BindTo = netip.MustParseAddr("fd77:9::1")
	if err := s.Validate(); err == nil {
		t.Error("bindto of another family than connect_ip: valid")
	}
}
