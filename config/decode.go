package config

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The TOML document is decoded into generic maps first, then walked here
// table by table: each value is converted and checked where it is read, so
// that every problem (a wrong type, an impossible value, an unknown key) is
// reported with its line and none stops the others from being found.

type decoder struct {
	file string
	idx  lineFinder
	env  Env
	errs problems
	// warns are accepted oddities worth telling (Config.Warnings).
	warns problems
	// dpIfaces locates each of Dataplane.Interfaces.
	dpIfaces []keyPath
	// commands are the commands written in the file, for checkScripts.
	commands []commandAt
	// mail are the defaults of the tables' smtp_alert ([global]);
	// alertAt is the first smtp_alert = true written, for checkMail.
	mail    mailDefaults
	alertAt keyPath
}

// commandAt is a command and where it is written.
type commandAt struct {
	p     keyPath
	label string
	cmd   Command
}

// errorf records a problem located at p.
func (d *decoder) errorf(p keyPath, format string, args ...any) {
	d.errs.add(Error{File: d.file, Line: d.idx.line(p), Msg: fmt.Sprintf(format, args...)})
}

// table is one TOML table being decoded, of a section of the key table.
type table struct {
	d   *decoder
	p   keyPath
	sec *section
	// lbl prefixes messages about the table ("virtual_server \"web\""),
	// or, while lazy.kind is set, is made from lazy when label is first
	// called: most tables (real servers by the thousand) are never named
	// in a message.
	lbl  string
	lazy lazyLabel
	m    map[string]any
	// done and bad have bit i set when decode went through key i of the
	// section, and when key i was present but rejected.
	done, bad uint64
	// broken is set when the table was written as something else (and
	// reported): its required keys are not reported missing.
	broken bool
}

func (d *decoder) table(p keyPath, label string, m map[string]any, sec *section) *table {
	if m == nil {
		m = map[string]any{}
	}
	return &table{d: d, p: p, sec: sec, lbl: label, m: m}
}

// lazyLabel is how a table's label is made from its parent's, when needed.
type lazyLabel struct {
	kind   lazyKind
	parent *table
	key    string         // labelSub, labelElem
	n      int            // labelElem: the element's number
	addr   netip.AddrPort // labelReal (the address only unless port)
	port   bool
}

type lazyKind uint8

const (
	labelSet  lazyKind = iota // lbl is the label
	labelSub                  // "PARENT: key", or "[key]" at the top
	labelElem                 // "PARENT: key #n", or "key #n"
	labelReal                 // "PARENT: real_server ADDR[:PORT]"
)

// label returns the table's label, made now if it is lazy.
func (t *table) label() string {
	l := t.lazy
	if l.kind == labelSet {
		return t.lbl
	}
	switch pl := l.parent.label(); l.kind {
	case labelSub:
		t.lbl = "[" + l.key + "]"
		if pl != "" {
			t.lbl = pl + ": " + l.key
		}
	case labelElem:
		t.lbl = l.key + " #" + strconv.Itoa(l.n)
		if pl != "" {
			t.lbl = pl + ": " + t.lbl
		}
	case labelReal:
		a := l.addr.Addr().String()
		if l.port {
			a = l.addr.String()
		}
		t.lbl = pl + ": real_server " + a
	}
	t.lazy = lazyLabel{}
	return t.lbl
}

// setLabel makes l the table's label, to be made when needed.
func (t *table) setLabel(l lazyLabel) { t.lazy = l }

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
	t.d.warnAt(p, t.label(), format, args...)
}

func (d *decoder) warnAt(p keyPath, label, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if label != "" {
		msg = label + ": " + msg
	}
	d.warns.add(Error{File: d.file, Line: d.idx.line(p), Msg: msg})
}

// errorAt records a problem located at p, prefixed with the table's label.
func (t *table) errorAt(p keyPath, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if l := t.label(); l != "" {
		msg = l + ": " + msg
	}
	t.d.errorf(p, "%s", msg)
}

// has reports whether key is present in the table.
func (t *table) has(key string) bool {
	_, ok := t.m[key]
	return ok
}

// valid reports whether key was not rejected (it may be absent); ok
// whether it is present and was not rejected.
func (t *table) valid(key string) bool { return t.bad&(1<<t.spec(key).idx) == 0 }
func (t *table) ok(key string) bool    { return t.has(key) && t.valid(key) }

// present reports whether the table itself is written in the file.
func (t *table) present() bool { return t.d.idx.has(t.p) }

// spec returns the declaration of key in the table's section.
func (t *table) spec(key string) *key {
	i, ok := t.sec.index[key]
	if !ok {
		panic(fmt.Sprintf("config: key %q is not declared in section %q", key, t.sec.name))
	}
	return &t.sec.keys[i]
}

// decode goes through the keys of the table's section (those named, when
// names are given) that decode has not gone through yet, in the order of
// the key table: it reports a required key that is missing and, for keys
// the decoder fills, stores the value in dst (a pointer to the section's
// struct). A valid name relabels the table.
func (t *table) decode(dst any, names ...string) {
	rv := reflect.ValueOf(dst).Elem()
	for i := range t.sec.keys {
		k := &t.sec.keys[i]
		if t.done&(1<<i) != 0 || len(names) > 0 && !slices.Contains(names, k.name) {
			continue
		}
		t.done |= 1 << i
		if !t.has(k.name) {
			if k.req != "" && !t.broken {
				t.errorf("", "%s: %s", k.name, k.req)
			}
			continue
		}
		if k.field == "" || k.custom || k.kind >= kTable {
			continue
		}
		if v, ok := t.read(k); ok {
			set(fieldOf(rv, k.field), v)
			if k.name == "name" {
				t.lbl, t.lazy = fmt.Sprintf("%s %q", t.sec.name, v), lazyLabel{}
			}
		}
	}
}

// skip marks keys as gone through: decode neither reads them nor reports
// them missing (the section's code deals with them).
func (t *table) skip(names ...string) {
	for _, n := range names {
		t.done |= 1 << t.spec(n).idx
	}
}

// fill sets dst's fields to their defaults, then decodes the table into it.
func (t *table) fill(dst any) {
	setDefaults(t.sec, dst)
	t.decode(dst)
}

// read decodes key k of the table, if present, and checks it.
func (t *table) read(k *key) (any, bool) {
	raw, ok := t.m[k.name]
	if !ok {
		return nil, false
	}
	v, ok := t.value(k, loc{t.p, k.name, -1}, raw)
	if !ok {
		t.bad |= 1 << k.idx
	}
	return v, ok
}

// str reads a string key.
func (t *table) str(key string) (string, bool) {
	v, ok := t.read(t.spec(key))
	s, _ := v.(string)
	return s, ok
}

// loc is where a value is: a table's path, then a key and an element
// index (idx >= 0); the path is made only for a message.
type loc struct {
	base keyPath
	key  string
	idx  int
}

func (l loc) path() keyPath {
	p := l.base
	if l.key != "" {
		p = p.key(l.key)
	}
	if l.idx >= 0 {
		p = p.index(l.idx)
	}
	return p
}

// value converts and checks v, the value of k (or an element of it, when
// k is a list) at at, and returns a string, bool, int64, time.Duration or
// netip.Addr.
func (t *table) value(k *key, at loc, v any) (any, bool) {
	fail := func(format string, args ...any) (any, bool) {
		t.errorAt(at.path(), "%s: "+format, append([]any{k.name}, args...)...)
		return nil, false
	}
	switch k.kind {
	case kBool:
		if b, ok := v.(bool); ok {
			return b, true
		}
		return fail("want true or false, got %s", typeName(v))
	case kInt:
		n, ok := v.(int64)
		if !ok {
			return fail("want an integer, got %s", typeName(v))
		}
		if n < k.lo || n > k.hi {
			return fail("%d is out of range (%s)", n, rangeString(k.lo, k.hi))
		}
		return n, true
	case kTable, kTables:
		if m, ok := v.(map[string]any); ok {
			return m, true
		}
		return fail("want a table, got %s", typeName(v))
	}
	s, ok := v.(string)
	switch {
	case !ok && k.kind == kDuration:
		if n, isInt := v.(int64); isInt {
			return fail("want a duration string such as \"%ds\", got integer %d", n, n)
		}
		return fail("want a duration string such as \"2s\", got %s", typeName(v))
	case !ok && k.list:
		return fail("want strings, got %s", typeName(v))
	case !ok:
		return fail("want a string, got %s", typeName(v))
	case len(s) > k.maxLen():
		return fail("%s %s is longer than %d bytes", kinds[k.kind].noun, quote(s), k.maxLen())
	case (k.kind == kPath || k.kind == kCommand) && strings.TrimSpace(s) == "":
		return fail("must not be empty")
	}
	var err error
	switch k.kind {
	case kDuration:
		return t.duration(k, fail, s)
	case kEnum:
		if !slices.Contains(k.enum, s) {
			return fail("unknown value %s (want %s)", quote(s), orList(k.enum))
		}
	case kName:
		err = checkName(s)
	case kIfName:
		err = checkIfName(s)
	case kPath:
		if !filepath.IsAbs(s) {
			err = fmt.Errorf("%q is not an absolute path", s)
		}
	case kCommand:
		_, err = Command(s).Split()
	case kAddr:
		a, err := parseAddr(s)
		if err != nil {
			return fail("%v", err)
		}
		return a, true
	}
	if err == nil && k.check != nil {
		err = k.check(s)
	}
	if err != nil {
		return fail("%v", err)
	}
	// A copy: the decoded document's strings share the file's memory,
	// which a kept one would keep whole.
	s = strings.Clone(s)
	if k.kind == kCommand {
		t.d.commands = append(t.d.commands, commandAt{at.path(), t.label(), Command(s)})
	}
	return s, true
}

// duration parses a Go duration string within k's range.
func (t *table) duration(k *key, fail func(string, ...any) (any, bool), s string) (any, bool) {
	dur, err := time.ParseDuration(s)
	if err != nil {
		return fail("invalid duration %s (use Go syntax: \"1s\", \"50ms\", \"1m30s\")", quote(s))
	}
	lo, hi := time.Duration(k.lo), time.Duration(k.hi)
	switch {
	case dur < lo || hi > 0 && dur > hi:
		if hi > 0 {
			return fail("%v is out of range (%v..%v)", dur, lo, hi)
		}
		return fail("%v is out of range (at least %v)", dur, lo)
	case k.step > 0 && dur%k.step != 0:
		return fail("%v is not a multiple of %v", dur, k.step)
	}
	return dur, true
}

// each calls fn with every valid element of the array key, in order; n is
// the number of elements, ok whether the key is present and an array.
func (t *table) each(key string, fn func(i int, p keyPath, v any)) (n int, ok bool) {
	k := t.spec(key)
	raw, ok := t.m[key]
	if !ok {
		return 0, false
	}
	elems, ok := raw.([]any)
	if tables, isTables := raw.([]map[string]any); isTables {
		t.d.idx.fillElems(t.p.key(key))
		for _, e := range tables {
			elems = append(elems, e)
		}
		ok = true
	}
	if !ok {
		t.bad |= 1 << k.idx
		t.errorf(key, "%s: want an array, got %s", key, typeName(raw))
		return 0, false
	}
	p := t.p.key(key)
	for i, e := range elems {
		if v, ok := t.value(k, loc{p, "", i}, e); ok {
			fn(i, p.index(i), v)
		}
	}
	return len(elems), true
}

// sub returns the table under key; an empty one (so that defaults apply)
// when it is absent or of the wrong type.
func (t *table) sub(key string) *table {
	k := t.spec(key)
	v, ok := t.read(k)
	m, _ := v.(map[string]any)
	sub := t.d.table(t.p.key(key), "", m, sectionOf(k.field))
	sub.setLabel(lazyLabel{kind: labelSub, parent: t, key: key})
	sub.broken = t.has(key) && !ok
	return sub
}

// tables returns the array of tables under key ([[key]]), each labelled
// "key #n" until its decoder names it.
func (t *table) tables(key string) []*table {
	if _, ok := t.m[key].(map[string]any); ok {
		t.errorf(key, "%s: want an array of tables (a [[...]] header for each), got a table ([...] header)", key)
		return nil
	}
	var out []*table
	sec := sectionOf(t.spec(key).field)
	t.each(key, func(i int, p keyPath, v any) {
		e := t.d.table(p, "", v.(map[string]any), sec)
		e.setLabel(lazyLabel{kind: labelElem, parent: t, key: key, n: i + 1})
		out = append(out, e)
	})
	return out
}

// finish reports the keys its section does not declare.
func (t *table) finish() {
	var unknown []string
	for k := range t.m {
		if _, ok := t.sec.index[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return
	}
	sort.Strings(unknown)
	known := slices.Sorted(maps.Keys(t.sec.index))
	for _, k := range unknown {
		if s := suggest(k, known); s != "" {
			t.errorf(k, "unknown key %s (did you mean %q?)", quote(k), s)
		} else {
			t.errorf(k, "unknown key %s", quote(k))
		}
	}
}

// quote quotes s for a message, shortened if it is long.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:max]) + "..."
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return "string " + quote(v)
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

func rangeString(lo, hi int64) string {
	if hi == math.MaxInt64 || hi == math.MaxInt32 {
		return fmt.Sprintf("at least %d", lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
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
