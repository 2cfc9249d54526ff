package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// The TOML document is decoded into generic maps first, then walked here
// table by table: each value is converted and checked where it is read, so
// that every problem (a wrong type, an impossible value, an unknown key) is
// reported with its line and none stops the others from being found.

type decoder struct {
	file string
	idx  *lineIndex
	env  Env
	errs []Error
	// warns are accepted oddities worth telling (Config.Warnings).
	warns []Error
	// dpIfaces locates each of Dataplane.Interfaces.
	dpIfaces []keyPath
}

// errorf records a problem located at p.
func (d *decoder) errorf(p keyPath, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: d.idx.line(p), Msg: fmt.Sprintf(format, args...)})
}

// table is one TOML table being decoded.
type table struct {
	d *decoder
	p keyPath
	// label prefixes messages about the table ("virtual_server \"web\"").
	label string
	m     map[string]any
	// read holds the keys the decoder asked for; the others are unknown.
	read map[string]bool
	// broken is set when the table was written as something else (and
	// reported): its required keys are not reported missing.
	broken bool
}

func (d *decoder) table(p keyPath, label string, m map[string]any) *table {
	if m == nil {
		m = map[string]any{}
	}
	return &table{d: d, p: p, label: label, m: m, read: map[string]bool{}}
}

// errorf records a problem with key (the table itself when key is "").
func (t *table) errorf(key, format string, args ...any) {
	p := t.p
	if key != "" {
		p = p.key(key)
	}
	t.errorAt(p, format, args...)
}

// warnf records a warning about key of the table (the table itself when
// key is empty), prefixed with the table's label.
func (t *table) warnf(key, format string, args ...any) {
	p := t.p
	if key != "" {
		p = p.key(key)
	}
	msg := fmt.Sprintf(format, args...)
	if t.label != "" {
		msg = t.label + ": " + msg
	}
	t.d.warns = append(t.d.warns, Error{File: t.d.file, Line: t.d.idx.line(p), Msg: msg})
}

// errorAt records a problem located at p, prefixed with the table's label.
func (t *table) errorAt(p keyPath, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if t.label != "" {
		msg = t.label + ": " + msg
	}
	t.d.errorf(p, "%s", msg)
}

// has reports whether key is present in the table.
func (t *table) has(key string) bool {
	_, ok := t.m[key]
	return ok
}

// present reports whether the table itself is written in the file.
func (t *table) present() bool { return t.d.idx.has(t.p) }

func (t *table) get(key string) (any, bool) {
	t.read[key] = true
	v, ok := t.m[key]
	return v, ok
}

// finish reports the keys nobody read.
func (t *table) finish() {
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		if !t.read[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	known := make([]string, 0, len(t.read))
	for k := range t.read {
		known = append(known, k)
	}
	sort.Strings(known)
	for _, k := range keys {
		if s := suggest(k, known); s != "" {
			t.errorf(k, "unknown key %q (did you mean %q?)", k, s)
		} else {
			t.errorf(k, "unknown key %q", k)
		}
	}
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case time.Time:
		return "date-time"
	case []any:
		return "array"
	case []map[string]any:
		return "array of tables"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

func (t *table) str(key string) (string, bool) {
	v, ok := t.get(key)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.errorf(key, "%s: want a string, got %s", key, typeName(v))
		return "", false
	}
	return s, true
}

// nonEmpty is str that also rejects "" (and strings of only white space).
func (t *table) nonEmpty(key string) (string, bool) {
	s, ok := t.str(key)
	if ok && strings.TrimSpace(s) == "" {
		t.errorf(key, "%s: must not be empty", key)
		return "", false
	}
	return s, ok
}

func (t *table) command(key string) (Command, bool) {
	s, ok := t.nonEmpty(key)
	return Command(s), ok
}

func (t *table) boolean(key string) (bool, bool) {
	v, ok := t.get(key)
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		t.errorf(key, "%s: want true or false, got %s", key, typeName(v))
		return false, false
	}
	return b, true
}

// integer reads an integer in lo..hi.
func (t *table) integer(key string, lo, hi int64) (int64, bool) {
	v, ok := t.get(key)
	if !ok {
		return 0, false
	}
	return t.intValue(t.p.key(key), key, v, lo, hi)
}

func (t *table) intValue(p keyPath, what string, v any, lo, hi int64) (int64, bool) {
	n, ok := v.(int64)
	if !ok {
		t.errorAt(p, "%s: want an integer, got %s", what, typeName(v))
		return 0, false
	}
	if n < lo || n > hi {
		t.errorAt(p, "%s: %d is out of range (%s)", what, n, rangeString(lo, hi))
		return 0, false
	}
	return n, true
}

func rangeString(lo, hi int64) string {
	if hi == math.MaxInt64 || hi == math.MaxInt32 {
		return fmt.Sprintf("at least %d", lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
}

// port reads a port number, 1..65535.
func (t *table) port(key string) (uint16, bool) {
	n, ok := t.integer(key, 1, 65535)
	return uint16(n), ok
}

// duration reads a Go duration string ("1s", "50ms") in lo..hi (hi 0: no
// maximum); step > 0 requires a multiple of step.
func (t *table) duration(key string, lo, hi, step time.Duration) (time.Duration, bool) {
	v, ok := t.get(key)
	if !ok {
		return 0, false
	}
	s, ok := v.(string)
	if !ok {
		if n, isInt := v.(int64); isInt {
			t.errorf(key, "%s: want a duration string such as \"%ds\", got integer %d", key, n, n)
		} else {
			t.errorf(key, "%s: want a duration string such as \"2s\", got %s", key, typeName(v))
		}
		return 0, false
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		t.errorf(key, "%s: invalid duration %q (use Go syntax: \"1s\", \"50ms\", \"1m30s\")", key, s)
		return 0, false
	}
	if dur < lo || hi > 0 && dur > hi {
		if hi > 0 {
			t.errorf(key, "%s: %v is out of range (%v..%v)", key, dur, lo, hi)
		} else {
			t.errorf(key, "%s: %v is out of range (at least %v)", key, dur, lo)
		}
		return 0, false
	}
	if step > 0 && dur%step != 0 {
		t.errorf(key, "%s: %v is not a multiple of %v", key, dur, step)
		return 0, false
	}
	return dur, true
}

// enum reads a string that must be one of allowed.
func (t *table) enum(key string, allowed ...string) (string, bool) {
	s, ok := t.str(key)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		t.errorf(key, "%s: unknown value %q (want %s)", key, s, orList(allowed))
		return "", false
	}
	return s, true
}

func orList(allowed []string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = fmt.Sprintf("%q", a)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// element is one value of an array, with its path.
type element struct {
	p keyPath
	v any
}

// array reads an array; it returns nil if key is absent or not an array.
func (t *table) array(key string) ([]element, bool) {
	v, ok := t.get(key)
	if !ok {
		return nil, false
	}
	p := t.p.key(key)
	var out []element
	switch a := v.(type) {
	case []any:
		for i, e := range a {
			out = append(out, element{p.index(i), e})
		}
	case []map[string]any:
		for i, e := range a {
			out = append(out, element{p.index(i), e})
		}
	default:
		t.errorf(key, "%s: want an array, got %s", key, typeName(v))
		return nil, false
	}
	return out, true
}

// tablesArray is array for an array of tables, with a hint for the usual
// mistake of writing [key] instead of [[key]].
func (t *table) tablesArray(key string) ([]element, bool) {
	if v, ok := t.m[key]; ok {
		if _, isTable := v.(map[string]any); isTable {
			t.get(key)
			t.errorf(key, "%s: want an array of tables (a [[...]] header for each), got a table ([...] header)", key)
			return nil, false
		}
	}
	return t.array(key)
}

// strings reads an array of strings; elements of another type are
// reported and left out.
func (t *table) strings(key string) ([]element, bool) {
	elems, ok := t.array(key)
	if !ok {
		return nil, false
	}
	var out []element
	for _, e := range elems {
		if _, isStr := e.v.(string); !isStr {
			t.errorAt(e.p, "%s: want strings, got %s", key, typeName(e.v))
			continue
		}
		out = append(out, e)
	}
	return out, true
}

// sub returns the table under key; an empty one (so that defaults apply)
// when it is absent or of the wrong type.
func (t *table) sub(key, label string) *table {
	p := t.p.key(key)
	v, ok := t.get(key)
	if !ok {
		return t.d.table(p, label, nil)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.errorf(key, "%s: want a table, got %s", key, typeName(v))
		broken := t.d.table(p, label, nil)
		broken.broken = true
		return broken
	}
	return t.d.table(p, label, m)
}

// tables returns the array of tables under key ([[key]]), each labelled
// "key #n" until its decoder names it.
func (t *table) tables(key string) []*table {
	elems, ok := t.tablesArray(key)
	if !ok {
		return nil
	}
	var out []*table
	for i, e := range elems {
		m, ok := e.v.(map[string]any)
		if !ok {
			t.errorAt(e.p, "%s: want a table, got %s", key, typeName(e.v))
			continue
		}
		label := fmt.Sprintf("%s #%d", key, i+1)
		if t.label != "" {
			label = t.label + ": " + label
		}
		out = append(out, t.d.table(e.p, label, m))
	}
	return out
}

// suggest returns the known key closest to k, if it is close.
func suggest(k string, known []string) string {
	best, bestDist := "", 3
	for _, c := range known {
		if d := editDistance(k, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt32
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parseAddr parses an address usable as a VIP, real server or peer.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	return a, checkAddr(a)
}

func checkAddr(a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("address %s: zones are not supported", a)
	case a.Is4In6():
		return fmt.Errorf("address %s: write IPv4 addresses as %s", a, a.Unmap())
	case a.IsUnspecified():
		return fmt.Errorf("address %s is unspecified", a)
	case a.IsMulticast():
		return fmt.Errorf("address %s is multicast", a)
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// checkName validates the name of a script, instance, group or service: it
// is used in entries split on white space, in logs and in metric labels.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q must not contain white space or control characters", s)
		}
	}
	return nil
}

// checkIfName applies the kernel's rules for interface names (dev_valid_name).
func checkIfName(s string) error {
	if s == "" {
		return fmt.Errorf("empty interface name")
	}
	if len(s) > 15 {
		return fmt.Errorf("interface name %q is longer than 15 bytes", s)
	}
	if s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\v\f\r") {
		return fmt.Errorf("invalid interface name %q", s)
	}
	return nil
}
