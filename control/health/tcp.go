package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// tcpChecker succeeds when a TCP connection to the target is established
// (keepalived's TCP_CHECK, check_tcp.c). The connection is closed at once
// without sending anything.
type tcpChecker struct {
	target netip.AddrPort
	dialer *net.Dialer
}

func newTCPChecker(s Spec) *tcpChecker {
	return &tcpChecker{target: s.target(), dialer: dialer(s, "tcp")}
}

func (c *tcpChecker) Check(ctx context.Context) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", c.target.String())
	if err != nil {
		return fmt.Errorf("tcp connect: %w", err)
	}
	return conn.Close()
}
