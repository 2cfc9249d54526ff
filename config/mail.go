package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Mail alerts: the [global] keys of keepalived's SMTP alerts and the
// smtp_alert of each table (keepalived's global_parser.c, and its
// inheritance in vrrp_parser.c and check_parser.c).

// DefaultSMTPPort is the SMTP server's port when smtp_server gives none.
const DefaultSMTPPort = 25

// mailDefaults are the defaults of the tables' smtp_alert.
type mailDefaults struct {
	vrrp    bool // vrrp_instance, vrrp_sync_group: global smtp_alert_vrrp
	checker bool // virtual_server: global smtp_alert_checker
}

// globalMail decodes the [global] mail keys fill has not: the addresses,
// the server, and the resolved smtp_alert defaults.
func (d *decoder) globalMail(t *table, g *Global) {
	if !t.ok("smtp_alert_vrrp") {
		g.SMTPAlertVRRP = g.SMTPAlert
	}
	if !t.ok("smtp_alert_checker") {
		g.SMTPAlertChecker = g.SMTPAlert
	}
	d.mail = mailDefaults{vrrp: g.SMTPAlertVRRP, checker: g.SMTPAlertChecker}
	for _, k := range []string{"smtp_alert", "smtp_alert_vrrp", "smtp_alert_checker"} {
		if v, ok := t.m[k].(bool); ok && v && t.valid(k) {
			d.noteAlert(t.p.key(k))
		}
	}
	seen := map[string]bool{}
	t.each("notification_email", func(_ int, p keyPath, v any) {
		s := v.(string)
		if seen[s] {
			t.errorAt(p, "notification_email: %q is listed twice", s)
			return
		}
		seen[s] = true
		g.NotificationEmail = append(g.NotificationEmail, s)
	})
	if s, ok := t.str("smtp_server"); ok {
		g.SMTPServer, _ = smtpServerAddr(s)
	}
}

// alertDefault resolves a table's smtp_alert: its own when written (and
// noted when true), else def.
func (d *decoder) alertDefault(t *table, v *bool, def bool) {
	if !t.ok("smtp_alert") {
		*v = def
		return
	}
	if *v {
		d.noteAlert(t.p.key("smtp_alert"))
	}
}

func (d *decoder) noteAlert(p keyPath) {
	if d.alertAt == nil {
		d.alertAt = p
	}
}

// checkMail warns about mail settings that send nothing: as keepalived,
// mail needs both notification_email and smtp_server.
func (d *decoder) checkMail(c *Config, global *table) {
	g := c.Global
	switch {
	case g.MailEnabled():
	case g.SMTPServer != "":
		global.warnf("smtp_server", "smtp_server without notification_email: no mail is sent")
	case len(g.NotificationEmail) > 0:
		global.warnf("notification_email", "notification_email without smtp_server: no mail is sent")
	case d.alertAt != nil:
		d.warnAt(d.alertAt, "", "smtp_alert: no mail is sent without notification_email and smtp_server in [global]")
	}
}

// checkMailbox checks a mail address: it goes between < and > in the SMTP
// dialogue and into headers. keepalived takes any word ("acassen" in its
// samples: a local user), so does xlb.
func checkMailbox(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == ',' {
			return fmt.Errorf("%q: a mail address has no white space, control characters, '<', '>' or ','", s)
		}
	}
	return nil
}

// checkSMTPServer checks smtp_server: HOST[:PORT], [ADDR6][:PORT] or a
// bare IPv6 address.
func checkSMTPServer(s string) error {
	_, err := smtpServerAddr(s)
	return err
}

// smtpServerAddr resolves smtp_server to HOST:PORT (net.JoinHostPort),
// the port 25 when not given.
func smtpServerAddr(s string) (string, error) {
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return "", fmt.Errorf("%q: no closing ']'", s)
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if rest := s[end+1:]; rest != "" && !strings.HasPrefix(rest, ":") {
			return "", fmt.Errorf("%q: want [ADDR6]:PORT", s)
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return "", fmt.Errorf("%q: %q is not an IPv6 address", s, host)
		}
	case strings.Count(s, ":") == 1:
		host, port = s[:strings.Index(s, ":")], s[strings.Index(s, ":")+1:]
	}
	if port == "" && host != s && !strings.HasPrefix(s, "[") {
		return "", fmt.Errorf("%q: empty port", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := checkAddr(a); err != nil {
			return "", err
		}
	} else if err := checkHostName(host); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	n := uint64(DefaultSMTPPort)
	if port != "" {
		var err error
		if n, err = strconv.ParseUint(port, 10, 16); err != nil || n == 0 || strconv.FormatUint(n, 10) != port {
			return "", fmt.Errorf("%q: invalid port %q", s, port)
		}
	}
	return net.JoinHostPort(host, strconv.FormatUint(n, 10)), nil
}

// checkHostName checks a DNS name (RFC 1123 labels).
func checkHostName(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("%q is not a host name or an address", h)
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a host name or an address", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q is not a host name or an address", h)
			}
		}
	}
	return nil
}
