package keepalived

// The keywords of virtual servers, real servers and their checkers
// (check_parser.c and the check_*.c files): part of the table in
// keywords.go.

import (
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// checker settings that a virtual server, a real server and a checker
// take (keepalived 2.2.7, checked with keepalived -t): where is "vs",
// "rs", "tcp", "http" or "misc". MISC_CHECK has no connect_timeout (it
// has misc_timeout), only HTTP_GET and SSL_GET take nb_get_retry, and
// virtualhost is not a TCP_CHECK or MISC_CHECK keyword.
func checkDefaultKeywords(where string, get func(p *parser) *checkDefaults) []*keyword {
	out := []*keyword{
		{name: "delay_loop", st: mapped, xlb: "health_check.interval", note: "keepalived's default 60s", fn: func(p *parser, s *stmt) {
			if d, ok := p.timer(s, 1, 1, 0); ok {
				get(p).delayLoop.set(d, s.Pos)
			}
		}},
	}
	if where != "misc" {
		out = append(out, &keyword{name: "connect_timeout", st: mapped, xlb: "health_check.timeout", note: "keepalived's default 5s; at most the interval", fn: func(p *parser, s *stmt) {
			if d, ok := p.timer(s, 1, 1, 0); ok {
				get(p).connectTimeout.set(d, s.Pos)
			}
		}})
	}
	retry := &keyword{name: "retry", st: mapped, xlb: "health_check.fall = retry + 1",
		note: "keepalived's default 1 (MISC_CHECK 0)", fn: func(p *parser, s *stmt) {
			if s.kw() != "retry" {
				p.d.warnf(s.Pos, s.kw(), "deprecated, as keepalived warns: use retry")
			}
			if n, ok := p.integer(s, 1, 0, math32-1); ok {
				get(p).retry.set(n, s.Pos)
			}
		}}
	if where == "http" {
		retry.alias = []string{"nb_get_retry"}
	}
	out = append(out, retry,
		&keyword{name: "delay_before_retry", st: mapped, xlb: "(timing comment)", note: "xlb checks every interval; the time a failure takes is said in a comment", fn: func(p *parser, s *stmt) {
			if d, ok := p.timer(s, 1, 0, 0); ok {
				get(p).delayBeforeRetry.set(d, s.Pos)
			}
		}})
	if where == "vs" || where == "rs" || where == "http" {
		out = append(out, &keyword{name: "virtualhost", st: mapped, xlb: "health_check.host", fn: func(p *parser, s *stmt) {
			if v, ok := p.arg(s, 1); ok {
				get(p).virtualhost.set(v, s.Pos)
			}
		}})
	}
	return append(out, &keyword{name: "warmup", st: mapped, xlb: "health_check.warmup", fn: func(p *parser, s *stmt) {
		if d, ok := p.timer(s, 1, 0, 0); ok {
			get(p).warmup.set(d, s.Pos)
		}
	}})
}

var urlKeywords = []*keyword{
	{name: "path", st: mapped, xlb: "health_check.path", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.url.path.set(v, s.Pos)
		}
	}},
	{name: "status_code", st: mapped, xlb: "health_check.expect_status", note: "codes and ranges (200-299); keepalived's default 200-299 is written out",
		fn: func(p *parser, s *stmt) {
			var codes []int
			for _, w := range s.Words[1:] {
				lo, hi, found := strings.Cut(w, "-")
				a, err1 := strconv.Atoi(lo)
				b, err2 := a, error(nil)
				if found {
					b, err2 = strconv.Atoi(hi)
				}
				if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
					p.d.warnf(s.Pos, s.kw(), "invalid status code %q: ignored, as keepalived ignores it", w)
					continue
				}
				for c := a; c <= b; c++ {
					codes = append(codes, c)
				}
			}
			if len(codes) > 0 {
				p.url.status.set(codes, s.Pos)
			}
		}},
	{name: "regex", st: mapped, xlb: "health_check.body_regex", note: "keepalived's PCRE; an expression RE2 does not accept is an error", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.url.regex.set(v, s.Pos)
		}
	}},
	{name: "virtualhost", st: mapped, xlb: "health_check.host", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.url.virtualhost.set(v, s.Pos)
		}
	}},
	{name: "digest", st: mapped, xlb: "health_check.digest", note: "32 hex digits; another length is ignored with a warning, as keepalived ignores it",
		fn: func(p *parser, s *stmt) {
			v, ok := p.arg(s, 1)
			if !ok {
				return
			}
			if b, err := hex.DecodeString(v); err != nil || len(b) != 16 {
				p.d.warnf(s.Pos, s.kw(), "%q is not an MD5 digest (32 hex digits): ignored, as keepalived ignores it", v)
				return
			}
			p.url.digest.set(strings.ToLower(v), s.Pos)
		}},
	{name: "regex_no_match", st: unsupported, note: "xlb has no negated body match"},
	{name: "regex_min_offset", st: unsupported, note: "xlb matches the whole body"},
	{name: "regex_max_offset", st: unsupported, note: "xlb matches the whole body"},
	{name: "regex_stack", st: ignored, note: "no effect in xlb (RE2)"},
	{name: "regex_options", st: unsupported, note: "xlb's RE2 has no PCRE options"},
}

func chkKeywords(kind string) []*keyword {
	where := "tcp"
	if kind == "HTTP_GET" || kind == "SSL_GET" {
		where = "http"
	}
	if kind == "FILE_CHECK" {
		return fileCheckKeywords
	}
	base := join([]*keyword{
		{name: "connect_ip", st: mapped, xlb: "health_check.connect_ip", fn: func(p *parser, s *stmt) {
			if v, ok := p.arg(s, 1); ok {
				p.chk.connectIP.set(v, s.Pos)
			}
		}},
		{name: "connect_port", st: mapped, xlb: "health_check.port", fn: func(p *parser, s *stmt) {
			if n, ok := p.integer(s, 1, 1, 65535); ok {
				p.chk.connectPort.set(n, s.Pos)
			}
		}},
		{name: "bindto", st: mapped, xlb: "health_check.bindto", fn: func(p *parser, s *stmt) {
			if v, ok := p.arg(s, 1); ok {
				p.chk.bindto.set(v, s.Pos)
			}
		}},
	},
		checkDefaultKeywords(where, func(p *parser) *checkDefaults { return &p.chk.defaults }),
		group(ignored, "xlb checks from the port and interface the kernel picks", "bind_port", "bind_if"),
		group(unsupported, "xlb's checks carry no firewall mark", "fwmark"),
		group(ignored, "no effect in xlb", "log_all_failures", "dynamic"),
	)
	switch kind {
	case "HTTP_GET", "SSL_GET":
		base = join(base, []*keyword{
			{name: "url", st: mapped, xlb: "health_check.path, expect_status, body_regex, digest, host; several: [[health_check.url]]", sub: urlKeywords, doc: "url",
				note: "every url must pass, as keepalived", fn: func(p *parser, s *stmt) {
					p.url = &kaURL{pos: s.Pos}
					p.chk.urls = append(p.chk.urls, p.url)
				}},
			{name: "enable_sni", st: mapped, xlb: "health_check.sni", note: "the virtualhost, else the address", fn: func(p *parser, s *stmt) {
				p.chk.sni.set(true, s.Pos)
			}},
			{name: "http_protocol", st: mapped, xlb: "health_check.http_protocol", note: "1.0, 1.0C, 1.1; keepalived's default 1.0 is written out",
				fn: func(p *parser, s *stmt) {
					v, ok := p.arg(s, 1)
					switch {
					case !ok:
					case v == "1.0" || v == "1.1":
						p.chk.httpProto.set(v, s.Pos)
					case v == "1.0C" || v == "1.0c":
						p.chk.httpProto.set("1.0C", s.Pos)
					default:
						p.d.warnf(s.Pos, s.kw(), "invalid version %q: ignored, as keepalived ignores it", v)
					}
				}},
			{name: "fast_recovery", st: ignored, note: "xlb puts a server back after `rise` successes"},
		})
	case "UDP_CHECK":
		base = join(base, []*keyword{
			{name: "payload", st: mapped, xlb: "health_check.payload", fn: func(p *parser, s *stmt) {
				if len(s.Words) > 1 {
					p.chk.payload.set(strings.Join(s.Words[1:], " "), s.Pos)
				}
			}},
			{name: "require_reply", st: mapped, xlb: "health_check.require_reply", note: "without a pattern: true", fn: func(p *parser, s *stmt) {
				p.chk.reply.set(strings.Join(s.Words[1:], " "), s.Pos)
			}},
			{name: "min_reply_length", st: unsupported, note: "xlb checks a reply against the require_reply pattern only"},
			{name: "max_reply_length", st: unsupported, note: "xlb checks a reply against the require_reply pattern only"},
		})
	case "DNS_CHECK":
		base = join(base, []*keyword{
			{name: "type", st: mapped, xlb: "health_check.dns_type", note: "keepalived's default SOA is written out", fn: func(p *parser, s *stmt) {
				v, _ := p.arg(s, 1)
				if slices.Contains(dnsTypes, strings.ToUpper(v)) {
					p.chk.dnsType.set(strings.ToUpper(v), s.Pos)
				} else {
					p.d.warnf(s.Pos, s.kw(), "unknown type %q: ignored, as keepalived ignores it", v)
				}
			}},
			{name: "name", st: mapped, xlb: "health_check.dns_name", note: "keepalived's default \".\" is written out", fn: func(p *parser, s *stmt) {
				if v, ok := p.arg(s, 1); ok && !p.chk.dnsName.ok {
					p.chk.dnsName.set(v, s.Pos)
				}
			}},
		})
	case "SMTP_CHECK":
		base = join(base, []*keyword{
			{name: "helo_name", st: mapped, xlb: "health_check.helo_name", note: "keepalived's default smtpchecker.keepalived.org is written out",
				fn: func(p *parser, s *stmt) {
					if v, ok := p.arg(s, 1); ok {
						p.chk.helo.set(v, s.Pos)
					}
				}},
		})
		host := &keyword{name: "host", st: mapped, xlb: "health_check.connect_ip, port, bindto", doc: "host",
			note: "one host block; several are not supported (keepalived makes one checker of each)",
			fn: func(p *parser, s *stmt) {
				h := &kaChecker{pos: s.Pos, kind: "SMTP_CHECK host", supported: true}
				p.chk.hosts = append(p.chk.hosts, h)
				p.host, p.chk = p.chk, h
			},
			end: func(p *parser, s *stmt) { p.chk, p.host = p.host, nil }}
		host.sub = slices.Clone(base[:len(base)-1]) // the common keywords, not helo_name
		base = append(base, host)
	case "MISC_CHECK":
		base = join([]*keyword{
			{name: "misc_path", st: mapped, xlb: "health_check.script", note: "xlb appends the real server's address and port to the arguments",
				fn: func(p *parser, s *stmt) {
					if c, ok := p.command(s); ok {
						p.chk.miscPath.set(c, s.Pos)
					}
				}},
			{name: "misc_timeout", st: mapped, xlb: "health_check.timeout", fn: func(p *parser, s *stmt) {
				if d, ok := p.timer(s, 1, 1, 0); ok {
					p.chk.miscTimeout.set(d, s.Pos)
				}
			}},
			{name: "misc_dynamic", st: mapped, xlb: "health_check.misc_dynamic", fn: func(p *parser, s *stmt) {
				p.chk.miscDynamic.set(true, s.Pos)
			}},
			{name: "user", st: unsupported, note: "xlb runs every script as global.script_user"},
		}, checkDefaultKeywords("misc", func(p *parser) *checkDefaults { return &p.chk.defaults }),
			group(ignored, "no effect in xlb", "log_all_failures"))
	}
	return base
}

// dnsTypes are the types DNS_CHECK knows (check_dns.c, DNS_TYPE).
var dnsTypes = []string{"A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG", "DNSKEY"}

// fileCheckKeywords are FILE_CHECK's (check_file.c): no common checker
// keyword.
var fileCheckKeywords = []*keyword{
	{name: "track_file", st: mapped, xlb: "health_check.file (the track_file's)", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.chk.trackFile.set(v, s.Pos)
		}
	}},
	{name: "weight", st: mapped, xlb: "health_check.weight, weight_reverse", note: "else the track_file's", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, -65535, 65535); ok {
			p.chk.fileWeight.set(n, s.Pos)
		}
		p.chk.fileReverse = len(s.Words) > 2 && s.Words[2] == "reverse"
	}},
}

func checker(kind, xlbType string) *keyword {
	return &keyword{name: kind, st: mapped, xlb: "health_check.type = \"" + xlbType + "\"", sub: chkKeywords(kind), doc: kind,
		fn: func(p *parser, s *stmt) {
			p.chk = &kaChecker{pos: s.Pos, kind: kind, supported: true}
			p.rs.checkers = append(p.rs.checkers, p.chk)
		}}
}

func unsupportedChecker(kind, why string) *keyword {
	return &keyword{name: kind, st: unsupported, note: why, skip: true, fn: func(p *parser, s *stmt) {
		p.d.errorf(s.Pos, kind, "not supported by xlb: %s", why)
		p.rs.checkers = append(p.rs.checkers, &kaChecker{pos: s.Pos, kind: kind})
	}}
}

var rsKeywords = join([]*keyword{
	{name: "weight", st: mapped, xlb: "real_server.weight", note: "keepalived's default 1, as xlb's", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 0, 65535); ok {
			p.rs.weight.set(n, s.Pos)
		}
	}},
	{name: "inhibit_on_failure", st: same, note: "xlb always keeps a failed real server with weight 0 (no new connections, established ones kept); keepalived without it removes the server"},
	{name: "alpha", st: mapped, xlb: "health_check.initial_state = \"down\"", fn: func(p *parser, s *stmt) { p.rs.alpha.set(true, s.Pos) }},
	checker("TCP_CHECK", "tcp"),
	checker("HTTP_GET", "http"),
	checker("SSL_GET", "https"),
	checker("MISC_CHECK", "script"),
	checker("UDP_CHECK", "udp"),
	checker("DNS_CHECK", "dns"),
	checker("SMTP_CHECK", "smtp"),
	checker("PING_CHECK", "ping"),
	checker("FILE_CHECK", "file"),
	unsupportedChecker("BFD_CHECK", "xlb has no BFD"),
},
	checkDefaultKeywords("rs", func(p *parser) *checkDefaults { return &p.rs.defaults }),
	group(ignored, "xlb runs no script per real server: watch xlb_backend_up", "notify_up", "notify_down"),
	[]*keyword{{name: "smtp_alert", st: mapped, xlb: "virtual_server.real_server.smtp_alert",
		note: "without it keepalived mails a real server's changes unless global smtp_alert_checker or smtp_alert says no: written out then",
		fn:   smtpAlert(func(p *parser) *setting[bool] { return &p.rs.smtpAlert })}},
	[]*keyword{
		{name: "uthreshold", st: mapped, xlb: "real_server.upper_threshold", note: "ipvsadm -x; 0, keepalived's default, is no limit",
			fn: func(p *parser, s *stmt) {
				if n, ok := p.integer(s, 1, 0, math.MaxUint32); ok {
					p.rs.upper.set(n, s.Pos)
				}
			}},
		{name: "lthreshold", st: mapped, xlb: "real_server.lower_threshold", note: "ipvsadm -y; 0, keepalived's default, is 3/4 of uthreshold; above uthreshold IPVS refuses the real server",
			fn: func(p *parser, s *stmt) {
				if n, ok := p.integer(s, 1, 0, math.MaxUint32); ok {
					p.rs.lower.set(n, s.Pos)
				}
			}},
	},
)

var vsKeywords = join([]*keyword{
	{name: "protocol", st: mapped, xlb: "virtual_server.protocol", note: "TCP or UDP; without it keepalived uses UDP (with a warning), which is written out",
		fn: func(p *parser, s *stmt) {
			if v, ok := p.arg(s, 1); ok {
				p.vs.protocol.set(v, s.Pos)
			}
		}},
	{name: "lb_algo", alias: []string{"lvs_sched"}, st: mapped, xlb: "virtual_server.scheduler", note: SchedulerList() + "; keepalived's default wlc is written out",
		fn: func(p *parser, s *stmt) {
			if v, ok := p.arg(s, 1); ok {
				p.vs.sched.set(v, s.Pos)
			}
		}},
	{name: "lb_kind", alias: []string{"lvs_method"}, st: mapped, xlb: "virtual_server.forward", note: "NAT, DR, TUN (`TUN type gue port N` too); keepalived's default NAT is written out",
		fn: func(p *parser, s *stmt) {
			v, ok := p.arg(s, 1)
			if !ok {
				return
			}
			p.vs.method.set(v, s.Pos)
			for i := 2; i < len(s.Words); i++ {
				switch s.Words[i] {
				case "type":
					if i+1 < len(s.Words) {
						p.vs.tunType.set(s.Words[i+1], s.Pos)
						i++
					}
				case "port":
					if i+1 < len(s.Words) {
						if n, err := strconv.Atoi(s.Words[i+1]); err == nil && n > 0 && n < 65536 {
							p.vs.tunPort.set(n, s.Pos)
						}
						i++
					}
				default:
					p.d.errorf(s.Pos, s.kw(), "tunnel option %q is not supported by xlb", s.Words[i])
				}
			}
		}},
	{name: "persistence_timeout", st: mapped, xlb: "virtual_server.persistence_timeout", note: "without a value 360s, as keepalived; 0 is out of range (ignored with a warning)",
		fn: func(p *parser, s *stmt) {
			if len(s.Words) < 2 {
				p.vs.persistence.set(360, s.Pos)
				return
			}
			if n, ok := p.integer(s, 1, 1, 2678400); ok {
				p.vs.persistence.set(n, s.Pos)
			}
		}},
	{name: "persistence_granularity", st: mapped, xlb: "(per client address only)", note: "only a host mask (255.255.255.255, 128) is supported", fn: func(p *parser, s *stmt) {
		v, ok := p.arg(s, 1)
		if ok && v != "255.255.255.255" && v != "128" && v != "/32" && v != "/128" && v != "32" {
			p.d.errorf(s.Pos, s.kw(), "%s: xlb keeps persistence per client address only", v)
		}
	}},
	{name: "quorum", st: mapped, xlb: "virtual_server.quorum", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 1, math32); ok {
			p.vs.quorum.set(n, s.Pos)
		}
	}},
	{name: "hysteresis", st: mapped, xlb: "virtual_server.hysteresis", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 0, math32); ok {
			p.vs.hysteresis.set(n, s.Pos)
		}
	}},
	{name: "quorum_up", st: mapped, xlb: "virtual_server.quorum_up", fn: func(p *parser, s *stmt) {
		if c, ok := p.command(s); ok {
			p.vs.quorumUp.set(c, s.Pos)
		}
	}},
	{name: "quorum_down", st: mapped, xlb: "virtual_server.quorum_down", fn: func(p *parser, s *stmt) {
		if c, ok := p.command(s); ok {
			p.vs.quorumDown.set(c, s.Pos)
		}
	}},
	{name: "alpha", st: mapped, xlb: "health_check.initial_state = \"down\"", note: "without it keepalived starts real servers up: initial_state = \"up\" is written",
		fn: func(p *parser, s *stmt) { p.vs.alpha.set(true, s.Pos) }},
	{name: "omega", st: ignored, note: "xlb does not run quorum_down when it stops"},
	{name: "sorry_server", st: mapped, xlb: "virtual_server.sorry_server", fn: func(p *parser, s *stmt) {
		v, ok := p.arg(s, 1)
		if !ok {
			return
		}
		p.vs.sorry.set(v, s.Pos)
		p.vs.sorryPort = 0
		if len(s.Words) > 2 {
			if n, err := strconv.Atoi(s.Words[2]); err == nil && n > 0 && n < 65536 {
				p.vs.sorryPort = n
			} else {
				p.d.warnf(s.Pos, s.kw(), "invalid port %q: ignored", s.Words[2])
			}
		}
	}},
	{name: "real_server", st: mapped, xlb: "[[virtual_server.real_server]] address, port", sub: rsKeywords, doc: "real_server ADDR PORT",
		fn: func(p *parser, s *stmt) {
			a, _ := p.arg(s, 1)
			p.rs = &kaRS{pos: s.Pos, addr: a}
			if len(s.Words) > 2 {
				if n, err := strconv.Atoi(s.Words[2]); err == nil && n > 0 && n < 65536 {
					p.rs.port = n
				} else {
					p.d.errorf(s.Pos, s.kw(), "invalid port %q", s.Words[2])
				}
			}
			p.vs.reals = append(p.vs.reals, p.rs)
		}},
	{name: "ip_family", st: same, note: "xlb takes the family from the addresses"},
	{name: "inhibit_on_failure", st: same, note: "xlb always keeps a failed real server with weight 0"},
},
	checkDefaultKeywords("vs", func(p *parser) *checkDefaults { return &p.vs.defaults }),
	[]*keyword{{name: "smtp_alert", st: mapped, xlb: "virtual_server.smtp_alert", note: "the quorum's mails",
		fn: smtpAlert(func(p *parser) *setting[bool] { return &p.vs.smtpAlert })}},
	group(ignored, "xlb checks real servers on the backup too", "ha_suspend"),
	group(unsupported, "xlb has no one-packet scheduling", "ops", "one_packet_scheduling"),
	group(unsupported, "xlb has no persistence engines", "persistence_engine"),
	group(unsupported, "xlb's sorry server is always added as the service's", "sorry_server_inhibit", "sorry_server_lvs_method"),
	group(unsupported, "xlb has no per-service SNMP name", "snmp_name"),
)

// vsStart reads "virtual_server ADDR PORT", "virtual_server fwmark N" or
// "virtual_server group NAME".
func vsStart(p *parser, s *stmt) {
	p.vs = &kaVS{pos: s.Pos}
	p.c.services = append(p.c.services, p.vs)
	a, ok := p.arg(s, 1)
	if !ok {
		p.vs.kind = "bad"
		return
	}
	switch a {
	case "fwmark":
		p.vs.kind = "fwmark"
		p.d.errorf(s.Pos, "virtual_server fwmark", "not supported by xlb: xlb has no firewall-mark services")
	case "group":
		p.vs.kind = "group"
		p.vs.group, _ = p.arg(s, 2)
	default:
		p.vs.kind = "addr"
		p.vs.addr = a
		if len(s.Words) < 3 {
			p.d.errorf(s.Pos, s.kw(), "no port given")
			p.vs.kind = "bad"
			return
		}
		n, err := strconv.Atoi(s.Words[2])
		if err != nil || n < 1 || n > 65535 {
			p.d.errorf(s.Pos, s.kw(), "invalid port %q", s.Words[2])
			p.vs.kind = "bad"
			return
		}
		p.vs.port = n
	}
}

// vsEnd is keepalived's end of a virtual_server (vs_end_handler): the
// defaults it announces are reported as it reports them.
func vsEnd(p *parser, s *stmt) {
	vs := p.vs
	if vs.kind != "addr" && vs.kind != "group" {
		return
	}
	name := vs.addr + ":" + strconv.Itoa(vs.port)
	if vs.kind == "group" {
		name = "group " + vs.group
	}
	if !vs.protocol.ok {
		p.d.warnf(s.Pos, "virtual_server", "%s: no protocol set: UDP, as keepalived defaults to", name)
	}
}

// parseAddr is netip.ParseAddr without zones.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}
