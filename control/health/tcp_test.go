package health_test

import (
	"context"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
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
	return health.Spec{Type: health.TypeTCP, Interval: time.Second, Timeout: 5 * time.Second, Fall: 1, Rise: 1}
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
