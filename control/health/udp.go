package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// defaultPayload is sent when a UDP check has none: 32 bytes, as
// keepalived sends 32 bytes of "keepalived check - " (layer4.c, set_buf).
var defaultPayload = []byte(strings.Repeat("xlb check - ", 3)[:32])

// maxDatagram is the longest UDP reply read.
const maxDatagram = 65535

// udpChecker sends one datagram to the target, as keepalived's UDP_CHECK
// (check_udp.c, layer4.c udp_bind_connect and udp_socket_state): without
// RequireReply it passes unless an ICMP error (port, host or network
// unreachable) comes back before the timeout, so a healthy check lasts
// its whole timeout; with RequireReply a reply must come, and begin with
// the Reply pattern when one is given. Unlike keepalived, which compares
// only as many bytes as the reply has, a reply shorter than the pattern
// fails.
type udpChecker struct {
	target  netip.AddrPort
	dialer  *net.Dialer
	payload []byte
	require bool
	reply   []byte
	mask    []byte // 1 bits: compared
}

func newUDPChecker(s Spec) (*udpChecker, error) {
	c := &udpChecker{target: s.target(), dialer: dialer(s, "udp"), payload: defaultPayload, require: s.RequireReply}
	if s.Payload != "" {
		p, _, err := parseHex(s.Payload, false)
		if err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		c.payload = p
	}
	if s.Reply != "" {
		r, m, err := parseHex(s.Reply, true)
		if err != nil {
			return nil, fmt.Errorf("require_reply: %w", err)
		}
		c.reply, c.mask = r, m
	}
	return c, nil
}

// validUDP checks the UDP part of a Spec.
func validUDP(s Spec) error {
	if _, _, err := parseHex(s.Payload, false); err != nil && s.Payload != "" {
		return fmt.Errorf("payload: %w", err)
	}
	if s.Reply != "" {
		if !s.RequireReply {
			return errors.New("a reply pattern needs RequireReply")
		}
		if _, _, err := parseHex(s.Reply, true); err != nil {
			return fmt.Errorf("require_reply: %w", err)
		}
	}
	return nil
}

func (c *udpChecker) Check(ctx context.Context) error {
	conn, err := c.dialer.DialContext(ctx, "udp", c.target.String())
	if err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(deadlinePast) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(c.payload); err != nil {
		return fmt.Errorf("udp send: %w", err)
	}
	buf := make([]byte, maxDatagram)
	n, err := conn.Read(buf)
	switch {
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.require:
		return nil // no ICMP error in the timeout: keepalived's success
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("udp: no reply: %w", ctx.Err())
	case err != nil:
		// A connected UDP socket reports the ICMP errors about its
		// datagrams (ECONNREFUSED for port unreachable, EHOSTUNREACH...).
		return fmt.Errorf("udp: %w", err)
	}
	if c.reply != nil && !matchMasked(buf[:n], c.reply, c.mask) {
		return fmt.Errorf("udp reply % x does not match the pattern", buf[:min(n, 32)])
	}
	return nil
}

// matchMasked reports whether got starts with want, comparing the bits
// set in mask.
func matchMasked(got, want, mask []byte) bool {
	if len(got) < len(want) {
		return false
	}
	for i := range want {
		if (got[i]^want[i])&mask[i] != 0 {
			return false
		}
	}
	return true
}

// parseHex reads hex digits as keepalived's read_hex_str (utils.c) does:
// spaces and tabs separate octets and are otherwise skipped, two digits
// make an octet and so does one alone before a space or the end; with
// wildcards, x or X is a nibble that matches anything (its mask bits 0).
func parseHex(s string, wildcards bool) (data, mask []byte, err error) {
	nibble := func(c byte) (v, m byte, ok bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', 0xf, true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, 0xf, true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, 0xf, true
		case wildcards && (c == 'x' || c == 'X'):
			return 0, 0, true
		}
		return 0, 0, false
	}
	for i := 0; i < len(s); {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		v, m, ok := nibble(s[i])
		if !ok {
			return nil, nil, fmt.Errorf("%q: %q is not a hex digit", s, s[i])
		}
		i++
		if i < len(s) && s[i] != ' ' && s[i] != '\t' {
			v2, m2, ok := nibble(s[i])
			if !ok {
				return nil, nil, fmt.Errorf("%q: %q is not a hex digit", s, s[i])
			}
			v, m = v<<4|v2, m<<4|m2
			i++
		}
		data, mask = append(data, v), append(mask, m)
	}
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%q: no hex digits", s)
	}
	return data, mask, nil
}
