package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsTypes are the query types keepalived's DNS_CHECK knows (check_dns.c,
// DNS_TYPE).
var dnsTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "NS": dnsmessage.TypeNS, "CNAME": dnsmessage.TypeCNAME,
	"SOA": dnsmessage.TypeSOA, "MX": dnsmessage.TypeMX, "TXT": dnsmessage.TypeTXT,
	"AAAA": dnsmessage.TypeAAAA, "RRSIG": 46, "DNSKEY": 48,
}

// DNSTypes lists the query types of a DNS check, for messages.
var DNSTypes = []string{"A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG", "DNSKEY"}

// Defaults of a DNS check (keepalived's DNS_DEFAULT_NAME and
// DNS_DEFAULT_TYPE).
const (
	DefaultDNSName = "."
	DefaultDNSType = "SOA"
)

// dnsChecker sends one query over UDP (class IN, recursion desired) and
// passes when a response with the query's ID comes back with RCODE
// NOERROR, as keepalived's DNS_CHECK (check_dns.c, dns_make_query and
// dns_recv_thread): an empty answer (NODATA) passes too, as there. Other
// datagrams (too short, another ID, not a response) are skipped until the
// timeout.
type dnsChecker struct {
	target netip.AddrPort
	dialer *net.Dialer
	name   dnsmessage.Name
	qtype  dnsmessage.Type
}

func newDNSChecker(s Spec) (*dnsChecker, error) {
	name, qtype, err := dnsQuestion(s)
	if err != nil {
		return nil, err
	}
	return &dnsChecker{target: s.target(), dialer: dialer(s, "udp"), name: name, qtype: qtype}, nil
}

// validDNS checks the DNS part of a Spec.
func validDNS(s Spec) error {
	_, _, err := dnsQuestion(s)
	return err
}

func dnsQuestion(s Spec) (dnsmessage.Name, dnsmessage.Type, error) {
	n, t := s.DNSName, s.DNSType
	if n == "" {
		n = DefaultDNSName
	}
	if t == "" {
		t = DefaultDNSType
	}
	qtype, ok := dnsTypes[strings.ToUpper(t)]
	if !ok {
		return dnsmessage.Name{}, 0, fmt.Errorf("dns type %q: want one of %s", t, strings.Join(DNSTypes, ", "))
	}
	// keepalived's dns_name_handler refuses an empty label.
	if n != "." && (strings.HasPrefix(n, ".") || strings.Contains(n, "..")) {
		return dnsmessage.Name{}, 0, fmt.Errorf("dns name %q: empty label", n)
	}
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	name, err := dnsmessage.NewName(n)
	if err != nil {
		return dnsmessage.Name{}, 0, fmt.Errorf("dns name %q: %w", s.DNSName, err)
	}
	return name, qtype, nil
}

func (c *dnsChecker) Check(ctx context.Context) error {
	id := uint16(rand.Uint32())
	query, err := (&dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: c.name, Type: c.qtype, Class: dnsmessage.ClassINET}},
	}).Pack()
	if err != nil {
		return fmt.Errorf("dns query: %w", err)
	}
	conn, err := c.dialer.DialContext(ctx, "udp", c.target.String())
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(deadlinePast) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(query); err != nil {
		return fmt.Errorf("dns send: %w", err)
	}
	buf := make([]byte, maxDatagram)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("dns: no response: %w", err)
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil || h.ID != id || !h.Response {
			continue // not the response to this query
		}
		if h.RCode != dnsmessage.RCodeSuccess {
			return fmt.Errorf("dns response %s (rcode %d)", rcodeName(h.RCode), h.RCode)
		}
		return nil
	}
}

// rcodeName is an RCODE's name in RFC 1035 and dig's words.
func rcodeName(c dnsmessage.RCode) string {
	if n, ok := map[dnsmessage.RCode]string{
		dnsmessage.RCodeFormatError: "FORMERR", dnsmessage.RCodeServerFailure: "SERVFAIL",
		dnsmessage.RCodeNameError: "NXDOMAIN", dnsmessage.RCodeNotImplemented: "NOTIMP",
		dnsmessage.RCodeRefused: "REFUSED",
	}[c]; ok {
		return n
	}
	return "error"
}
