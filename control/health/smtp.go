package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"os"
)

// smtpChecker holds the dialogue of keepalived's SMTP_CHECK
// (check_smtp.c, smtp_engine_thread): the greeting must be 220, the reply
// to "HELO name" 250, and QUIT must be answered (with any code, as
// keepalived reads the line without checking it). Multi-line replies
// ("250-...") are read whole, which keepalived does only when they arrive
// in one segment.
type smtpChecker struct {
	target netip.AddrPort
	dialer *net.Dialer
	helo   string
}

func newSMTPChecker(s Spec) *smtpChecker {
	helo := s.HeloName
	if helo == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			helo = h
		} else {
			helo = "localhost"
		}
	}
	return &smtpChecker{target: s.target(), dialer: dialer(s, "tcp"), helo: helo}
}

func (c *smtpChecker) Check(ctx context.Context) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", c.target.String())
	if err != nil {
		return fmt.Errorf("smtp connect: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(deadlinePast) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	tc := textproto.NewConn(conn)
	step := func(what string, code int, cmd string) error {
		if cmd != "" {
			if err := tc.PrintfLine("%s", cmd); err != nil {
				return fmt.Errorf("smtp %s: %w", what, ctxErr(ctx, err))
			}
		}
		if _, _, err := tc.ReadResponse(code); err != nil {
			return fmt.Errorf("smtp %s: %w", what, ctxErr(ctx, err))
		}
		return nil
	}
	if err := step("greeting", 220, ""); err != nil {
		return err
	}
	if err := step("HELO", 250, "HELO "+c.helo); err != nil {
		return err
	}
	return step("QUIT", 0, "QUIT")
}
