package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// A configuration at the dataplane's limits is 200,000 lines (1,000
// services of 64 real servers): decoding it with BurntSushi/toml into
// maps and rescanning it for the lines of its keys took seconds, at every
// reload. fastParse reads the TOML that configurations are written in,
// in one pass: the same maps as BurntSushi's Decode into a map[string]any
// (the decoder is unchanged), and the line of every key, table and array
// element as it goes (no rescan).
//
// It is deliberately partial. Anything it does not handle, and anything
// that is not valid TOML, makes it give up, and Parse decodes the document
// with BurntSushi/toml and the line index as before: every error message
// stays BurntSushi's, and every document it does not understand is read
// as before. It gives up on: dotted keys in key/value lines, a table
// header that names a table already defined (TOML's implicit-then-explicit
// rules), multi-line inline tables and trailing commas in them (TOML 1.1),
// floats, dates and times, the \e and \x escapes (TOML 1.1), a line-ending
// backslash or a carriage return in a multi-line string, a byte-order mark,
// invalid UTF-8, control characters, and paths deeper than MaxDepth.
// FuzzFastParse checks that what it accepts decodes exactly as BurntSushi
// decodes it, with the lines the line index finds.

// lnode is a table, an array of tables, an array or an inline table of
// the document, with the lines of its keys and elements.
type lnode struct {
	at   int // the line
	kind nodeKind
	// lazy: an element of an array of tables whose keys are not in m
	// yet, their values in keys (fillTable puts them there when the
	// decoder reaches the element). A map of two keys is 336 bytes: a
	// document's 65,536 real servers' tables were 22 MB at once, which
	// the decoder now fills and drops 64 at a time.
	lazy bool
	m    map[string]any // tables and inline tables: the decoded map
	keys []lkey
	// kbuf holds the first keys of a table (keys starts in it): a real
	// server's table has two.
	kbuf [2]lkey
	// arr is what arrays and arrays of tables have (nil for the others:
	// 128 bytes a table, not 192, for the 65,536 tables of real servers
	// a large document holds at once).
	arr *larray
}

// larray is what an array or an array of tables has besides a node's
// common fields.
type larray struct {
	elems []*lnode // one per element (scalars have a node for their line)
	// inLazy: the array of tables is under a lazy element (whose
	// fillTable puts tables into its map).
	inLazy bool
	// parent and key locate an array of tables in its parent's map, whose
	// slice grows with each [[...]] header.
	parent map[string]any
	key    string
	// tables is an array of tables' slice, put into parent[key] once the
	// document is read (boxing it at every [[...]] header allocated).
	tables []map[string]any
}

// elems are the elements of an array or an array of tables.
func (n *lnode) elems() []*lnode {
	if n.arr == nil {
		return nil
	}
	return n.arr.elems
}

// newTable is a table's node, at line.
func newTable(line int) *lnode {
	t := &lnode{at: line, kind: nTable, m: map[string]any{}}
	t.keys = t.kbuf[:0]
	return t
}

type nodeKind uint8

const (
	nTable nodeKind = iota
	nArrayOfTables
	nArray
	nInline
	nScalar
)

// lkey is a key of a table: its name, the line it is on, and its value's
// node (nil for a scalar).
type lkey struct {
	name string
	line int
	n    *lnode
	v    any // the value, in a lazy table: scalars, arrays and inline tables
}

// fillTable puts a lazy table's keys into its map, once.
func (n *lnode) fillTable() {
	if !n.lazy {
		return
	}
	n.lazy = false
	for i := range n.keys {
		k := &n.keys[i]
		switch {
		case k.n == nil || k.n.kind == nArray || k.n.kind == nInline:
			n.m[k.name] = k.v
			k.v = nil // the map holds it
		case k.n.kind == nTable:
			n.m[k.name] = k.n.m
		case k.n.kind == nArrayOfTables:
			n.m[k.name] = k.n.arr.tables
		}
	}
}

// fillElems implements lineFinder: the tables of the array of tables at
// p are filled.
func (n *lnode) fillElems(p keyPath) {
	_, found, node := n.walk(p)
	if found && node != nil && node.kind == nArrayOfTables {
		for _, e := range node.arr.elems {
			e.fillTable()
		}
	}
}

// lazyElems implements lineFinder: the tables of the array of tables at p.
func (n *lnode) lazyElems(p keyPath) []*lnode {
	_, found, node := n.walk(p)
	if !found || node == nil || node.kind != nArrayOfTables {
		return nil
	}
	return node.elems()
}

// fewKeys puts the keys of table n and their values into kv, when it has
// at most len(kv.k), without filling its map when it is lazy (a
// sub-table's or an array of tables' value is then nil): a real server's
// table that the decoder's fast path reads needs no map (64,000 maps of
// two keys were 17 MB and a tenth of the parse's time, at every reload).
func (n *lnode) fewKeys(kv *fewKeys) bool {
	if !n.lazy {
		return kv.fromMap(n.m)
	}
	if len(n.keys) > len(kv.k) {
		return false
	}
	kv.n = len(n.keys)
	for i := range n.keys {
		kv.k[i], kv.v[i] = n.keys[i].name, n.keys[i].v
	}
	return true
}

func (n *lnode) find(name string) (*lkey, bool) {
	for i := range n.keys {
		if n.keys[i].name == name {
			return &n.keys[i], true
		}
	}
	return nil, false
}

// line implements lineFinder: the line of p, or of its nearest ancestor
// found, or 0.
func (n *lnode) line(p keyPath) int {
	line, _, _ := n.walk(p)
	return line
}

// has implements lineFinder: whether p itself is in the document.
func (n *lnode) has(p keyPath) bool {
	_, found, _ := n.walk(p)
	return found
}

// release implements lineFinder: the decoded maps under p go.
func (n *lnode) release(p keyPath) {
	_, found, node := n.walk(p)
	if found && node != nil {
		node.drop()
	}
}

func (n *lnode) drop() {
	n.m = nil
	for i, k := range n.keys {
		n.keys[i].v = nil
		if k.n != nil {
			k.n.drop()
		}
	}
	for _, e := range n.elems() {
		e.drop()
	}
	if n.arr != nil {
		// The tables' maps too: an array of tables' slice of them held
		// every real server's map (18 MB at 64,000) until the parse tree
		// went.
		n.arr.parent, n.arr.tables = nil, nil
	}
}

// elemLines implements lineFinder: the lines of the elements of the array
// at p.
func (n *lnode) elemLines(p keyPath) []int {
	_, found, node := n.walk(p)
	if !found || node == nil || node.kind != nArrayOfTables && node.kind != nArray {
		return nil
	}
	out := make([]int, len(node.elems()))
	for i, e := range node.elems() {
		out[i] = e.at
	}
	return out
}

// walk follows p from the root n; it returns the line of the deepest part
// found, whether all of p was, and p's node (nil for a scalar).
func (n *lnode) walk(p keyPath) (line int, found bool, node *lnode) {
	cur := n
	for i, part := range p {
		if cur == nil {
			return line, false, nil
		}
		if strings.HasPrefix(part, "[") {
			j, err := strconv.Atoi(part[1 : len(part)-1])
			if err != nil || cur.kind != nArrayOfTables && cur.kind != nArray || j < 0 || j >= len(cur.elems()) {
				return line, false, nil
			}
			cur = cur.elems()[j]
			line = cur.at
			continue
		}
		var k *lkey
		for j := range cur.keys {
			if quoteKey(cur.keys[j].name) == part {
				k = &cur.keys[j]
				break
			}
		}
		if k == nil || cur.kind == nArrayOfTables || cur.kind == nArray {
			return line, false, nil
		}
		line = k.line
		if k.n == nil && i < len(p)-1 {
			return line, false, nil
		}
		cur = k.n
	}
	return line, true, cur
}

// errNotFast is a document fastParse does not handle: Parse decodes it
// the slow way.
type errNotFast struct{}

type fastParser struct {
	src   string
	pos   int
	line  int
	root  *lnode
	cur   *lnode // the table key/value lines go to
	depth int    // of cur's path
	// parts is key's result, reused: its callers keep the strings, never
	// the slice (a slice per key line was a fifth of a 200,000-line
	// file's allocations).
	parts []string
	// arrays are the arrays of tables, whose slices go into their
	// parents' maps at the end.
	arrays []*lnode
	// lastInt and lastBoxed: the last integer value, boxed (a port
	// repeated on every real server is boxed once).
	lastInt   int64
	lastBoxed any
}

// fastParse decodes src into the maps BurntSushi's Decode makes and the
// tree of lines, or returns ok false when src is anything it does not
// handle (see above).
func fastParse(src string) (root map[string]any, lines *lnode, ok bool) {
	if len(src) > 0 && (src[0] == 0xef || src[0] == 0xfe || src[0] == 0xff) || !utf8.ValidString(src) {
		return nil, nil, false
	}
	p := &fastParser{src: src, line: 1}
	p.root = &lnode{kind: nTable, m: map[string]any{}}
	p.cur = p.root
	defer func() {
		if r := recover(); r != nil {
			if _, is := r.(errNotFast); !is {
				panic(r)
			}
			root, lines, ok = nil, nil, false
		}
	}()
	p.document()
	for _, a := range p.arrays {
		if !a.arr.inLazy {
			a.arr.parent[a.arr.key] = a.arr.tables
		}
	}
	return p.root.m, p.root, true
}

func (p *fastParser) fail() { panic(errNotFast{}) }

func (p *fastParser) eof() bool { return p.pos >= len(p.src) }

func (p *fastParser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

// space skips spaces and tabs.
func (p *fastParser) space() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

// newline consumes "\n" or "\r\n"; false if neither is next.
func (p *fastParser) newline() bool {
	switch {
	case p.peek() == '\n':
		p.pos++
	case p.peek() == '\r' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '\n':
		p.pos += 2
	default:
		return false
	}
	p.line++
	return true
}

// comment skips a comment from '#' to the end of the line (not the
// newline). TOML allows no control character in it but tab.
func (p *fastParser) comment() {
	if p.peek() != '#' {
		return
	}
	for p.pos++; p.pos < len(p.src); p.pos++ {
		c := p.src[p.pos]
		if c == '\n' || c == '\r' {
			return
		}
		if c < 0x20 && c != '\t' || c == 0x7f {
			p.fail()
		}
	}
}

// endOfLine consumes the rest of a line after a header or a key/value:
// spaces, a comment, the newline (or the end).
func (p *fastParser) endOfLine() {
	p.space()
	p.comment()
	if !p.eof() && !p.newline() {
		p.fail()
	}
}

// blank skips white space, newlines and comments (between array
// elements).
func (p *fastParser) blank() {
	for {
		p.space()
		switch p.peek() {
		case '#':
			p.comment()
		case '\n', '\r':
			if !p.newline() {
				p.fail()
			}
		default:
			return
		}
	}
}

func (p *fastParser) document() {
	for {
		p.space()
		if p.eof() {
			return
		}
		switch c := p.src[p.pos]; c {
		case '\n', '\r':
			if !p.newline() {
				p.fail()
			}
		case '#':
			p.comment()
		case '[':
			p.header()
			p.endOfLine()
		default:
			p.keyValue(p.cur, p.depth)
			p.endOfLine()
		}
	}
}

// header reads [a.b] or [[a.b]] and makes its table the current one.
func (p *fastParser) header() {
	line := p.line
	array := p.pos+1 < len(p.src) && p.src[p.pos+1] == '['
	if array {
		p.pos += 2
	} else {
		p.pos++
	}
	parts := p.key()
	p.space()
	if !strings.HasPrefix(p.src[p.pos:], "]") || array && !strings.HasPrefix(p.src[p.pos:], "]]") {
		p.fail()
	}
	if array {
		p.pos += 2
	} else {
		p.pos++
	}
	n, depth := p.root, 0
	for i, part := range parts {
		depth++
		k, found := n.find(part)
		last := i == len(parts)-1
		switch {
		case !found:
			var t *lnode
			if last && array {
				t = &lnode{at: line, kind: nArrayOfTables, arr: &larray{parent: n.m, key: part, tables: make([]map[string]any, 0, 4), inLazy: n.lazy}}
				if !n.lazy {
					n.m[part] = t.arr.tables // its final length at the end
				}
				p.arrays = append(p.arrays, t)
			} else {
				t = newTable(line)
				if !n.lazy {
					n.m[part] = t.m
				}
			}
			n.keys = append(n.keys, lkey{name: part, line: line, n: t})
			n = t
		case last && !(array && k.n != nil && k.n.kind == nArrayOfTables):
			// A table defined again, or made explicit after being implied,
			// or an array of tables extended by [table]: TOML's rules.
			p.fail()
		case k.n != nil && k.n.kind == nTable:
			n = k.n
		case k.n != nil && k.n.kind == nArrayOfTables:
			n = k.n
		default: // a value, an array, an inline table
			p.fail()
		}
		if n.kind == nArrayOfTables {
			if last {
				e := newTable(line)
				e.lazy = true
				n.arr.elems = append(n.arr.elems, e)
				n.arr.tables = append(n.arr.tables, e.m)
			}
			n = n.arr.elems[len(n.arr.elems)-1]
			depth++
		}
	}
	if depth > MaxDepth {
		p.fail()
	}
	p.cur, p.depth = n, depth
}

// key reads a key: bare or quoted parts, dotted.
func (p *fastParser) key() []string {
	parts := p.parts[:0]
	defer func() { p.parts = parts }()
	for {
		p.space()
		var k string
		switch c := p.peek(); {
		case c == '"':
			if strings.HasPrefix(p.src[p.pos:], `"""`) {
				p.fail()
			}
			k = p.basicString()
		case c == '\'':
			if strings.HasPrefix(p.src[p.pos:], `'''`) {
				p.fail()
			}
			k = p.literalString()
		default:
			start := p.pos
			for p.pos < len(p.src) && isBareKeyByte(p.src[p.pos]) {
				p.pos++
			}
			if p.pos == start {
				p.fail()
			}
			k = p.src[start:p.pos]
		}
		parts = append(parts, k)
		p.space()
		if p.peek() != '.' {
			return parts
		}
		p.pos++
	}
}

// keyValue reads key = value into table t, whose path is depth long.
func (p *fastParser) keyValue(t *lnode, depth int) {
	line := p.line
	parts := p.key()
	if len(parts) != 1 || depth+1 > MaxDepth {
		p.fail() // dotted keys: TOML's rules for the tables they imply
	}
	p.space()
	if p.peek() != '=' {
		p.fail()
	}
	p.pos++
	p.space()
	name := parts[0]
	if _, dup := t.find(name); dup {
		p.fail()
	}
	v, n := p.value(depth + 1)
	if t.lazy {
		t.keys = append(t.keys, lkey{name: name, line: line, n: n, v: v})
		return
	}
	t.m[name] = v
	t.keys = append(t.keys, lkey{name: name, line: line, n: n})
}
