package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// tcpChecker succeeds when a TCP connection to the target is established.
// The connection is closed at once without sending anything.
type tcpChecker struct {
	target netip.AddrPort
}

func newTCPChecker(s Spec) *tcpChecker { return &tcpChecker{target: s.Target} }

func (c *tcpChecker) Check(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.target.String())
	if err != nil {
		return fmt.Errorf("tcp connect: %w", err)
	}
	return conn.Close()
}
