package config

import (
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// webKeys are the keys that make the one URL of an HTTP check written
// without [[...url]] tables.
var webKeys = []string{"path", "expect_status", "body_regex", "digest"}

// healthCheck decodes a health_check table over base: a service's
// (isService) over the defaults, a real server's over its service's, with
// rsPort the real server's port. timeoutSet says whether base's timeout was
// written (else it follows a shorter interval); it is returned updated.
func (d *decoder) healthCheck(t *table, base HealthCheck, timeoutSet, isService bool, rsPort uint16) (HealthCheck, bool) {
	hc := base
	hc.URLs = slices.Clone(base.URLs)
	if isService || t.present() {
		hc.Line = d.idx.line(t.p)
	}
	t.decode(&hc)
	timeoutSet = timeoutSet || t.ok("timeout")
	if !timeoutSet {
		hc.Timeout = min(t.spec("timeout").dv.(time.Duration), hc.Interval)
	}
	if hc.Timeout > hc.Interval && (t.has("timeout") || t.has("interval")) {
		key := "timeout"
		if !t.has("timeout") {
			key = "interval"
		}
		t.errorf(key, "timeout %v is longer than interval %v", hc.Timeout, hc.Interval)
	}
	if v, ok := t.read(t.spec("warmup")); ok {
		w := v.(time.Duration)
		hc.Warmup = &w
	}
	if codes, ok := statusCodes(t, "expect_status"); ok {
		hc.ExpectStatus = codes
	}
	d.requireReply(t, &hc)
	d.urls(t, &hc)

	if hc.Type == checktype.Script && hc.Script == "" && (t.has("type") || isService) && !t.has("script") {
		t.errorf("type", "type = \"script\" needs script")
	}
	if hc.Type == checktype.File && hc.File == "" && (t.has("type") || isService) && !t.has("file") {
		t.errorf("type", "type = \"file\" needs file")
	}
	if hc.Type == checktype.HTTPS && hc.CAFile != "" && !hc.TLSVerify && (t.has("ca_file") || t.has("tls_verify")) {
		key := "ca_file"
		if !t.has(key) {
			key = "tls_verify"
		}
		t.errorf(key, "ca_file is used only with tls_verify = true")
	}
	// Keys written for another type of check are mistakes; inherited ones
	// are dropped, and the defaults of the type's own keys applied when
	// the type differs from the inherited one.
	rv := reflect.ValueOf(&hc).Elem()
	for i := range t.sec.keys {
		k := &t.sec.keys[i]
		if k.only == nil {
			continue
		}
		applies := slices.Contains(k.only, string(hc.Type))
		if !applies && t.has(k.name) {
			t.errorf(k.name, "%s applies only to %s checks (type is %q)", k.name, strings.Join(k.only, " and "), hc.Type)
		}
		if k.kind == kTables { // url
			if !applies {
				hc.URLs = nil
			}
			continue
		}
		f := fieldOf(rv, k.field)
		if !applies {
			f.SetZero()
		} else if base.Type != hc.Type && !t.has(k.name) && f.IsZero() && k.dv != nil {
			set(f, k.dv)
		}
	}
	if hc.Type != checktype.UDP {
		hc.ReplyPattern = ""
	}
	if !isService && hc.Port == 0 {
		hc.Port = rsPort
	}
	t.finish()
	return hc, timeoutSet
}

// inheritCheck is the health check of a real server without a
// health_check table of its own: its service's, on its port unless the
// service's check sets one. healthCheck of an empty table makes the same;
// this is the common case by far, and costs no table.
func inheritCheck(base HealthCheck, rsPort uint16) HealthCheck {
	hc := base
	hc.URLs = slices.Clone(base.URLs)
	if hc.Port == 0 {
		hc.Port = rsPort
	}
	return hc
}

// requireReply reads require_reply: true, false or a hex pattern.
func (d *decoder) requireReply(t *table, hc *HealthCheck) {
	raw, ok := t.m["require_reply"]
	if !ok {
		return
	}
	k := t.spec("require_reply")
	switch v := raw.(type) {
	case bool:
		hc.RequireReply, hc.ReplyPattern = v, ""
	case string:
		if len(v) > k.maxLen() {
			t.errorf(k.name, "require_reply: pattern longer than %d bytes", k.maxLen())
		} else if err := checkHex(v, true); err != nil {
			t.errorf(k.name, "require_reply: %v", err)
		} else {
			hc.RequireReply, hc.ReplyPattern = true, strings.Clone(v)
			return
		}
		t.bad |= 1 << k.idx
	default:
		t.bad |= 1 << k.idx
		t.errorf(k.name, "require_reply: want true, false or a hex pattern, got %s", typeName(raw))
	}
}

// urls reads the [[url]] tables of an HTTP check, which replace the one
// URL of path, expect_status, body_regex and digest (and the reverse: a
// real server that writes those drops the URLs it inherits).
func (d *decoder) urls(t *table, hc *HealthCheck) {
	var single []string
	for _, k := range webKeys {
		if t.has(k) {
			single = append(single, k)
		}
	}
	if !t.has("url") {
		if len(single) > 0 {
			hc.URLs = nil
		}
		return
	}
	if len(single) > 0 {
		t.errorf(single[0], "%s and url: give the URL in [[url]] tables or in %s, not both", single[0], strings.Join(webKeys, ", "))
	}
	// The one URL's keys go back to their defaults.
	setDefaults(t.sec, hc, webKeys...)
	tables := t.tables("url")
	if len(tables) == 0 && t.has("url") {
		if _, isMap := t.m["url"].(map[string]any); !isMap {
			t.errorf("url", "url: must list at least one URL")
		}
	}
	hc.URLs = nil
	for _, ut := range tables {
		u := URLCheck{Line: d.idx.line(ut.p)}
		setDefaults(ut.sec, &u)
		ut.decode(&u)
		if codes, ok := statusCodes(ut, "expect_status"); ok {
			u.ExpectStatus = codes
		}
		ut.finish()
		hc.URLs = append(hc.URLs, u)
	}
}

// statusCodes reads a list of HTTP status codes and ranges ("200-299"),
// expanded; ok when the key is present.
func statusCodes(t *table, key string) ([]int, bool) {
	raw, present := t.m[key]
	if !present {
		return nil, false
	}
	k := t.spec(key)
	elems, isList := raw.([]any)
	if !isList {
		t.bad |= 1 << k.idx
		t.errorf(key, "%s: want an array, got %s", key, typeName(raw))
		return nil, false
	}
	if len(elems) == 0 {
		t.errorf(key, "%s: must list at least one status code", key)
		return nil, false
	}
	var codes []int
	p := t.p.key(key)
	for i, e := range elems {
		lo, hi, err := statusRange(e, k)
		if err != nil {
			t.bad |= 1 << k.idx
			t.errorAt(p.index(i), "%s: %v", key, err)
			continue
		}
		for c := lo; c <= hi; c++ {
			if !slices.Contains(codes, c) {
				codes = append(codes, c)
			}
		}
	}
	return codes, len(codes) > 0
}

// statusRange reads a status code (an integer) or a range ("200-299").
func statusRange(v any, k *key) (lo, hi int, err error) {
	switch v := v.(type) {
	case int64:
		if v < k.lo || v > k.hi {
			return 0, 0, fmt.Errorf("%d is out of range (%s)", v, rangeString(k.lo, k.hi))
		}
		return int(v), int(v), nil
	case string:
		a, b, found := strings.Cut(v, "-")
		x, err1 := strconv.Atoi(a)
		y, err2 := strconv.Atoi(b)
		if !found || err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%q is not a range such as \"200-299\"", v)
		}
		if int64(x) < k.lo || int64(y) > k.hi || x > y {
			return 0, 0, fmt.Errorf("range %q is out of range (%s) or reversed", v, rangeString(k.lo, k.hi))
		}
		return x, y, nil
	}
	return 0, 0, fmt.Errorf("want a status code or a range such as \"200-299\", got %s", typeName(v))
}

// checkDigest checks an MD5 digest: 32 hex digits.
func checkDigest(s string) error {
	if b, err := hex.DecodeString(s); err != nil || len(b) != 16 {
		return fmt.Errorf("%q is not an MD5 digest (32 hex digits)", s)
	}
	return nil
}

func checkHexPayload(s string) error { return checkHex(s, false) }

// checkHex checks hex digits as keepalived's read_hex_str reads them:
// spaces and tabs separate octets, one or two digits each; with
// wildcards, x or X matches any nibble.
func checkHex(s string, wildcards bool) error {
	n := 0
	for _, w := range strings.Fields(s) {
		for i := 0; i < len(w); i++ {
			c := w[i]
			ok := strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 || wildcards && (c == 'x' || c == 'X')
			if !ok || strings.ContainsAny(w, "\n\r\v\f") {
				return fmt.Errorf("%q: %q is not a hex digit", s, c)
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%q: no hex digits", s)
	}
	return nil
}

// checkDNSName checks a DNS_CHECK name: "." or labels without an empty one
// (keepalived's dns_name_handler), at most 63 bytes each.
func checkDNSName(s string) error {
	if s == "." {
		return nil
	}
	for i, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if l == "" {
			return fmt.Errorf("%q has an empty label", s)
		}
		if len(l) > 63 {
			return fmt.Errorf("%q: label %d is longer than 63 bytes", s, i+1)
		}
		if strings.ContainsAny(l, " \t\r\n") {
			return fmt.Errorf("%q contains white space", s)
		}
	}
	return nil
}
