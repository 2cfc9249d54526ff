package keepalived

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// keepalived's defaults of the checkers where xlb's differ.
const (
	kaDNSRetry   = 3                            // check_dns.h DNS_DEFAULT_RETRY; delay_before_retry: delay_loop
	kaDNSName    = "."                          // DNS_DEFAULT_NAME
	kaDNSType    = "SOA"                        // DNS_DEFAULT_TYPE
	kaHelo       = "smtpchecker.keepalived.org" // check_smtp.h SMTP_DEFAULT_HELO
	kaHTTPProto  = "1.0"                        // check_http.c alloc_http_get
	kaFileWeight = 1                            // track_file.c track_file_handler
)

// check converts a real server's checker: keepalived checks every
// delay_loop and takes a server out after retry+1 failed attempts spaced
// by delay_before_retry, and back in on one success; xlb checks every
// interval and takes it out after fall failures, back after rise
// successes: interval = delay_loop, fall = retry+1, rise = 1.
func (cv *converter) check(vs *kaVS, rs *kaRS, addr netip.Addr, port int) (*Table, bool) {
	hc := &Table{Name: "virtual_server.real_server.health_check", Src: rs.pos}
	alpha := vs.alpha.ok || rs.alpha.ok
	initial := ternary(alpha, "down", "up")
	initialNote := ternary(alpha, "alpha", "keepalived starts real servers up (no alpha)")
	if len(rs.checkers) == 0 {
		hc.Comments = []string{"no checker: keepalived keeps the real server up"}
		hc.Set("type", "none", "")
		return hc, true
	}
	if len(rs.checkers) > 1 {
		cv.d.errorf(rs.checkers[1].pos, rs.checkers[1].kind, "a second checker: xlb runs one check per real server (keepalived needs every one to pass)")
		return nil, false
	}
	ck := rs.checkers[0]
	if !ck.supported {
		return nil, false
	}
	hc.Src = ck.pos
	if ck.kind == "FILE_CHECK" {
		return cv.fileCheck(ck, hc, initial, initialNote)
	}
	if len(ck.hosts) > 1 {
		cv.d.errorf(ck.hosts[1].pos, "host", "a second host block: keepalived makes one checker of each, xlb runs one check per real server")
		return nil, false
	}
	if len(ck.hosts) == 1 { // its settings over the checker's
		h := *ck
		over(&h.connectIP, ck.hosts[0].connectIP)
		over(&h.connectPort, ck.hosts[0].connectPort)
		over(&h.bindto, ck.hosts[0].bindto)
		d := ck.hosts[0].defaults
		over(&h.defaults.delayLoop, d.delayLoop)
		over(&h.defaults.connectTimeout, d.connectTimeout)
		over(&h.defaults.retry, d.retry)
		over(&h.defaults.delayBeforeRetry, d.delayBeforeRetry)
		over(&h.defaults.warmup, d.warmup)
		ck = &h
	}
	pick := func(f func(d *checkDefaults) any) (any, Pos, bool) {
		for _, d := range []*checkDefaults{&ck.defaults, &rs.defaults, &vs.defaults} {
			v := f(d)
			switch s := v.(type) {
			case setting[time.Duration]:
				if s.ok {
					return s.v, s.pos, true
				}
			case setting[int]:
				if s.ok {
					return s.v, s.pos, true
				}
			case setting[string]:
				if s.ok {
					return s.v, s.pos, true
				}
			}
		}
		return nil, Pos{}, false
	}
	dur := func(f func(d *checkDefaults) any, def time.Duration) time.Duration {
		if v, _, ok := pick(f); ok {
			return v.(time.Duration)
		}
		return def
	}
	interval := dur(func(d *checkDefaults) any { return d.delayLoop }, kaDelayLoop)
	timeout := dur(func(d *checkDefaults) any { return d.connectTimeout }, kaConnectTimeout)
	retry := kaRetry
	dbr := kaDelayBeforeRetry
	typ := ""
	for _, c := range checktype.Table {
		if c.Keepalived == ck.kind {
			typ = string(c.Type)
		}
	}
	switch checktype.Type(typ) {
	case checktype.HTTP, checktype.HTTPS:
		dbr = kaHTTPDelayRetry
	case checktype.DNS:
		retry, dbr = kaDNSRetry, interval
	case checktype.Script:
		retry = kaMiscRetry
		timeout = interval
		if ck.miscTimeout.ok {
			timeout = ck.miscTimeout.v
		}
	}
	if v, _, ok := pick(func(d *checkDefaults) any { return d.retry }); ok {
		retry = v.(int)
	}
	dbr = dur(func(d *checkDefaults) any { return d.delayBeforeRetry }, dbr)
	var connectIP netip.Addr
	if ck.connectIP.ok {
		a, err := parseAddr(ck.connectIP.v)
		if err != nil {
			cv.d.errorf(ck.connectIP.pos, "connect_ip", "%v", err)
			return nil, false
		}
		if a != addr {
			connectIP = a
		}
	}
	var bindto netip.Addr
	if ck.bindto.ok {
		a, err := parseAddr(ck.bindto.v)
		if err != nil {
			cv.d.errorf(ck.bindto.pos, "bindto", "%v", err)
			return nil, false
		}
		checked := addr
		if connectIP.IsValid() {
			checked = connectIP
		}
		if a.Is4() != checked.Is4() {
			cv.d.errorf(ck.bindto.pos, "bindto", "%s and the address checked, %s, are not of one family", a, checked)
			return nil, false
		}
		bindto = a
	}
	if typ == "http" || typ == "https" {
		if len(ck.urls) == 0 {
			cv.d.warnf(ck.pos, ck.kind, "no url: keepalived ignores the checker, so the real server stays up")
			hc.Comments = []string{"no url in " + ck.kind + ", " + ck.pos.String() + ": keepalived ignores the checker"}
			hc.Set("type", "none", "")
			return hc, true
		}
		// keepalived gives each url its connect_timeout.
		if n := len(ck.urls); n > 1 {
			timeout *= time.Duration(n)
		}
	}
	hc.Set("type", typ, ck.kind)
	hc.Set("interval", Duration(interval), "delay_loop")
	if timeout > interval {
		cv.d.warnf(ck.pos, ck.kind, "the timeout %v is longer than the interval %v: xlb waits at most the interval", timeout, interval)
		timeout = interval
	}
	timeoutNote := "connect_timeout"
	switch {
	case ck.kind == "MISC_CHECK":
		timeoutNote = "misc_timeout"
	case len(ck.urls) > 1:
		timeoutNote = fmt.Sprintf("connect_timeout for each of the %d urls", len(ck.urls))
	}
	hc.Set("timeout", Duration(timeout), timeoutNote)
	hc.Set("fall", retry+1, "retry + 1")
	hc.Set("rise", 1, "keepalived puts a server back on one success")
	if w, _, ok := pick(func(d *checkDefaults) any { return d.warmup }); ok {
		hc.Set("warmup", Duration(w.(time.Duration)), "")
	}
	if ck.connectPort.ok && ck.connectPort.v != port && typ != "ping" {
		hc.Set("port", ck.connectPort.v, "connect_port")
	}
	if connectIP.IsValid() {
		hc.Set("connect_ip", connectIP.String(), "")
	}
	if bindto.IsValid() {
		hc.Set("bindto", bindto.String(), "")
	}
	keepalivedDown := interval + time.Duration(retry)*dbr
	hc.Comments = []string{fmt.Sprintf("%s, %s. Timing: keepalived checks every %v and takes the server out after %d failed attempt(s) %v apart (about %v);",
		ck.kind, ck.pos, interval, retry+1, dbr, formatDuration(keepalivedDown)),
		fmt.Sprintf("xlb checks every interval and takes it out after fall failures (about %v), and back after one success, as keepalived.", formatDuration(time.Duration(retry+1)*interval))}
	switch typ {
	case "http", "https":
		if !cv.urls(ck, hc, pick, typ) {
			return nil, false
		}
	case "udp":
		if ck.payload.ok {
			hc.Set("payload", ck.payload.v, "")
		}
		if ck.reply.ok {
			if ck.reply.v == "" {
				hc.Set("require_reply", true, "")
			} else {
				hc.Set("require_reply", ck.reply.v, "")
			}
		}
	case "dns":
		hc.Set("dns_name", ck.dnsName.or(kaDNSName), ternary(ck.dnsName.ok, "", "keepalived's default"))
		hc.Set("dns_type", ck.dnsType.or(kaDNSType), ternary(ck.dnsType.ok, "", "keepalived's default"))
	case "smtp":
		hc.Set("helo_name", ck.helo.or(kaHelo), ternary(ck.helo.ok, "", "keepalived's default"))
	case "script":
		if !ck.miscPath.ok {
			cv.d.errorf(ck.pos, "MISC_CHECK", "no misc_path")
			return nil, false
		}
		hc.Set("script", ck.miscPath.v, "misc_path")
		if ck.miscDynamic.ok {
			hc.Set("misc_dynamic", true, "")
		}
		cv.d.warnf(ck.miscPath.pos, "misc_path", "xlb appends the real server's address and port to the script's arguments (keepalived passes none)")
	}
	hc.Set("initial_state", initial, initialNote)
	return hc, true
}

// over sets *dst to src when src is set.
func over[T any](dst *setting[T], src setting[T]) {
	if src.ok {
		*dst = src
	}
}

// urls writes the urls of an HTTP_GET or SSL_GET: one as path,
// expect_status, body_regex, digest and host; several as url tables.
func (cv *converter) urls(ck *kaChecker, hc *Table, pick func(func(d *checkDefaults) any) (any, Pos, bool), typ string) bool {
	hc.Set("http_protocol", ck.httpProto.or(kaHTTPProto), ternary(ck.httpProto.ok, "http_protocol", "keepalived's default"))
	host := ""
	if v, _, ok := pick(func(d *checkDefaults) any { return d.virtualhost }); ok {
		host = v.(string)
	}
	one := func(u *kaURL, t *Table, withHost bool) bool {
		if !u.path.ok {
			cv.d.errorf(u.pos, "url", "no path")
			return false
		}
		t.Set("path", u.path.v, "")
		codes, note := []any{"200-299"}, "keepalived's default"
		if u.status.ok {
			codes, note = statusRanges(u.status.v), ""
		}
		t.Set("expect_status", codes, note)
		if u.regex.ok {
			if _, err := regexp.Compile(u.regex.v); err != nil {
				cv.d.errorf(u.regex.pos, "regex", "%q is not an RE2 expression xlb can use: %v", u.regex.v, err)
				return false
			}
			t.Set("body_regex", u.regex.v, "")
		}
		if u.digest.ok {
			t.Set("digest", u.digest.v, "")
		}
		if u.virtualhost.ok && (withHost || u.virtualhost.v != host) {
			t.Set("host", u.virtualhost.v, "virtualhost")
		}
		return true
	}
	if len(ck.urls) == 1 {
		u := ck.urls[0]
		if u.virtualhost.ok {
			host = u.virtualhost.v
		}
		if !one(u, hc, false) {
			return false
		}
	}
	if host != "" {
		hc.Set("host", host, "virtualhost")
	}
	if len(ck.urls) > 1 {
		for _, u := range ck.urls {
			t := &Table{Name: hc.Name + ".url", Array: true, Src: u.pos, Comments: []string{"url, " + u.pos.String()}}
			if !one(u, t, true) {
				return false
			}
			hc.Tables = append(hc.Tables, t)
		}
	}
	if ck.sni.ok && typ == "https" && host != "" {
		hc.Set("sni", host, "enable_sni")
	}
	return true
}

// statusRanges folds status codes into ranges ("200-299") and codes.
func statusRanges(codes []int) []any {
	seen := map[int]bool{}
	for _, c := range codes {
		seen[c] = true
	}
	var out []any
	for c := 100; c <= 599; c++ {
		if !seen[c] {
			continue
		}
		e := c
		for seen[e+1] {
			e++
		}
		if e > c {
			out = append(out, fmt.Sprintf("%d-%d", c, e))
		} else {
			out = append(out, c)
		}
		c = e
	}
	return out
}

// fileCheck converts a FILE_CHECK: its track_file's file, read every
// second (keepalived follows it with inotify), the weight of the
// FILE_CHECK or else of the track_file.
func (cv *converter) fileCheck(ck *kaChecker, hc *Table, initial, initialNote string) (*Table, bool) {
	var tf *kaTrackFile
	for _, f := range cv.c.trackFiles {
		if ck.trackFile.ok && f.name == ck.trackFile.v && f.file.ok {
			tf = f
		}
	}
	if tf == nil {
		what := "no track_file"
		if ck.trackFile.ok {
			what = fmt.Sprintf("track_file %s not found (or without file)", ck.trackFile.v)
		}
		cv.d.warnf(ck.pos, ck.kind, "%s: keepalived ignores the checker, so the real server stays up", what)
		hc.Comments = []string{ck.kind + ", " + ck.pos.String() + ": " + what + ", keepalived ignores the checker"}
		hc.Set("type", "none", "")
		return hc, true
	}
	weight, reverse, note := tf.weight.or(kaFileWeight), tf.reverse, ternary(tf.weight.ok, "track_file "+tf.name, "keepalived's default")
	if ck.fileWeight.ok {
		weight, reverse, note = ck.fileWeight.v, ck.fileReverse, "FILE_CHECK"
	}
	hc.Comments = []string{fmt.Sprintf("%s, %s, track_file %s (%s): keepalived follows the file with inotify, xlb reads it every second.", ck.kind, ck.pos, tf.name, tf.pos)}
	hc.Set("type", "file", ck.kind)
	hc.Set("interval", Duration(time.Second), "")
	hc.Set("timeout", Duration(time.Second), "")
	hc.Set("fall", 1, "")
	hc.Set("rise", 1, "")
	hc.Set("warmup", Duration(0), "read at once: keepalived knows the file's state at start")
	hc.Set("file", tf.file.v, "track_file "+tf.name)
	hc.Set("weight", weight, note)
	if reverse {
		hc.Set("weight_reverse", true, "")
	}
	hc.Set("initial_state", initial, initialNote)
	return hc, true
}
