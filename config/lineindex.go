package config

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// BurntSushi/toml does not export the position of keys, so errors found
// after decoding would have no line. The line index rescans the document
// (which the TOML parser has already accepted) and records where every key,
// table and array element starts, under a path that names array elements by
// their index: virtual_server[1].real_server[0].weight.
//
// The scanner only has to find keys, not to validate: it tracks [table] and
// [[array]] headers (counting the elements of each array of tables per parent
// element), dotted and quoted keys, and skips values exactly (basic and
// literal strings, multi-line strings, nested arrays and inline tables, which
// TOML 1.1 lets span lines). It never fails: on input it does not understand
// it moves on, so a lookup at worst falls back to an enclosing table.

// keyPath is a TOML key path with array indices: each part is a key
// (quoted when not bare) or an index "[n]".
type keyPath []string

// key returns p extended by the key k.
func (p keyPath) key(k string) keyPath {
	q := make(keyPath, len(p), len(p)+1)
	copy(q, p)
	return append(q, quoteKey(k))
}

// index returns p extended by the array index i.
func (p keyPath) index(i int) keyPath {
	q := make(keyPath, len(p), len(p)+1)
	copy(q, p)
	return append(q, "["+strconv.Itoa(i)+"]")
}

func (p keyPath) String() string {
	var b strings.Builder
	for i, part := range p {
		if i > 0 && !strings.HasPrefix(part, "[") {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// quoteKey renders a key as TOML would write it: bare when it can be.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBareKeyByte(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

func isBareKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// lineFinder finds the line of a key path: a lineIndex, or the lines
// fastParse recorded.
type lineFinder interface {
	// line returns the line of p, or of its nearest ancestor that has
	// one, or 0.
	line(p keyPath) int
	// has reports whether p itself is in the document.
	has(p keyPath) bool
	// elemLines returns the lines of the elements of the array at p.
	elemLines(p keyPath) []int
	// release drops what it holds of the decoded values under p (only
	// the lines are needed after p is decoded).
	release(p keyPath)
	// fillElems makes the maps of the tables of the array of tables at p
	// whole, before they are read (fastParse fills them late).
	fillElems(p keyPath)
	// lazyElems returns the nodes of the tables of the array of tables at
	// p, whose keys can be read without filling their maps (fewKeys);
	// nil when their maps are whole (BurntSushi's).
	lazyElems(p keyPath) []*lnode
}

// lineIndex maps key paths to the 1-based line where they start.
type lineIndex struct {
	lines map[string]int
	// deep is the line of the first path longer than MaxDepth; 0 if none.
	deep int
}

// line returns the line of p, or of its nearest ancestor that has one, or 0.
func (x *lineIndex) line(p keyPath) int {
	for n := len(p); n > 0; n-- {
		if l, ok := x.lines[p[:n].String()]; ok {
			return l
		}
	}
	return 0
}

// has reports whether p itself was found in the document.
func (x *lineIndex) has(p keyPath) bool {
	_, ok := x.lines[p.String()]
	return ok
}

func (x *lineIndex) release(keyPath) {}

// fillElems implements lineFinder: BurntSushi's maps are whole.
func (x *lineIndex) fillElems(keyPath) {}

// lazyElems implements lineFinder: BurntSushi's maps are whole.
func (x *lineIndex) lazyElems(keyPath) []*lnode { return nil }

// elemLines returns the lines of the elements of the array at p.
func (x *lineIndex) elemLines(p keyPath) []int {
	var out []int
	for i := 0; ; i++ {
		l, ok := x.lines[p.index(i).String()]
		if !ok {
			return out
		}
		out = append(out, l)
	}
}

// buildLineIndex scans a TOML document.
func buildLineIndex(src string) *lineIndex {
	s := &scanner{
		src:    src,
		offs:   make(map[string]int),
		counts: make(map[string]int),
		deep:   -1,
	}
	if strings.HasPrefix(src, "\uFEFF") {
		s.pos = len("\uFEFF")
	}
	s.document()

	// Convert byte offsets to lines.
	var starts []int // offsets where lines 2, 3, ... begin
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			starts = append(starts, i+1)
		}
	}
	line := func(off int) int { return 1 + sort.SearchInts(starts, off+1) }
	x := &lineIndex{lines: make(map[string]int, len(s.offs))}
	for k, off := range s.offs {
		x.lines[k] = line(off)
	}
	if s.deep >= 0 {
		x.deep = line(s.deep)
	}
	return x
}

type scanner struct {
	src string
	pos int
	// offs records the offset where each path starts (first occurrence).
	offs map[string]int
	// counts holds the number of elements seen so far of each array of
	// tables, by its resolved path: "virtual_server", "virtual_server[1].real_server".
	counts map[string]int
	// deep is the offset of the first path longer than MaxDepth, where the
	// scan stopped; -1 if none.
	deep int
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek(off int) byte {
	if s.pos+off < len(s.src) {
		return s.src[s.pos+off]
	}
	return 0
}

// record notes that p starts at off, unless it was seen before (a table
// mentioned again, e.g. implicitly by a later dotted key, keeps its first line).
// A path longer than MaxDepth ends the scan.
func (s *scanner) record(p keyPath, off int) {
	if len(p) > MaxDepth {
		s.deep, s.pos = off, len(s.src)
		return
	}
	k := p.String()
	if _, ok := s.offs[k]; !ok {
		s.offs[k] = off
	}
}

// skipSpace skips spaces, tabs and carriage returns.
func (s *scanner) skipSpace() {
	for !s.eof() {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		default:
			return
		}
	}
}

// skipComment skips from '#' to the end of the line (not the newline).
func (s *scanner) skipComment() {
	if s.peek(0) != '#' {
		return
	}
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i
	} else {
		s.pos = len(s.src)
	}
}

// skipBlank skips whitespace, newlines and comments (inside arrays and, in
// TOML 1.1, inline tables).
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.src[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *scanner) document() {
	var table keyPath // the current table
	for !s.eof() {
		start := s.pos
		s.skipSpace()
		if s.eof() {
			return
		}
		switch c := s.src[s.pos]; {
		case c == '\n':
			s.pos++
		case c == '#':
			s.skipComment()
		case c == '[':
			table = s.header()
		default:
			keyOff := s.pos
			keys := s.keys()
			if len(keys) > 0 {
				p := table
				for _, k := range keys {
					p = p.key(k)
					if s.record(p, keyOff); s.eof() {
						return
					}
				}
				s.skipSpace()
				if s.peek(0) == '=' {
					s.pos++
					s.skipSpace()
					s.value(p)
				}
			}
		}
		if s.pos == start { // not understood: move on
			s.pos++
		}
	}
}

// header scans [a.b] or [[a.b]] and returns the path of the table it opens.
func (s *scanner) header() keyPath {
	off := s.pos
	array := s.peek(1) == '['
	if array {
		s.pos += 2
	} else {
		s.pos++
	}
	keys := s.keys()
	s.skipSpace()
	for s.peek(0) == ']' {
		s.pos++
	}
	var p keyPath
	for i, k := range keys {
		if s.deep >= 0 {
			break
		}
		p = p.key(k)
		ps := p.String()
		last := i == len(keys)-1
		if array && last {
			n := s.counts[ps]
			s.counts[ps] = n + 1
			s.record(p, off)
			p = p.index(n)
		} else if n, ok := s.counts[ps]; ok && n > 0 {
			// A key naming an array of tables refers to its last element.
			p = p.index(n - 1)
		}
		s.record(p, off)
	}
	return p
}

// keys scans a (possibly dotted, possibly quoted) key and returns its parts.
func (s *scanner) keys() []string {
	var keys []string
	for {
		s.skipSpace()
		if s.eof() {
			return keys
		}
		var k string
		switch s.src[s.pos] {
		case '"':
			raw := s.basicString()
			k = unescapeBasic(raw)
		case '\'':
			k = s.literalString()
		default:
			start := s.pos
			for !s.eof() && !strings.ContainsRune(" \t\r\n.=[]#,{}\"'", rune(s.src[s.pos])) {
				s.pos++
			}
			if s.pos == start {
				return keys
			}
			k = s.src[start:s.pos]
		}
		keys = append(keys, k)
		s.skipSpace()
		if s.peek(0) != '.' {
			return keys
		}
		s.pos++
	}
}

// value skips a value, recording array elements and inline-table keys
// under p.
func (s *scanner) value(p keyPath) {
	if s.eof() {
		return
	}
	switch s.src[s.pos] {
	case '"':
		if strings.HasPrefix(s.src[s.pos:], `"""`) {
			s.multiline('"')
		} else {
			s.basicString()
		}
	case '\'':
		if strings.HasPrefix(s.src[s.pos:], `'''`) {
			s.multiline('\'')
		} else {
			s.literalString()
		}
	case '[':
		s.pos++
		for i := 0; ; {
			s.skipBlank()
			if s.eof() {
				return
			}
			switch s.src[s.pos] {
			case ']':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			start := s.pos
			e := p.index(i)
			s.record(e, start)
			s.value(e)
			i++
			if s.pos == start {
				s.pos++
			}
		}
	case '{':
		s.pos++
		for {
			s.skipBlank()
			if s.eof() {
				return
			}
			switch s.src[s.pos] {
			case '}':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			start := s.pos
			kp := p
			for _, k := range s.keys() {
				kp = kp.key(k)
				if s.record(kp, start); s.eof() {
					return
				}
			}
			s.skipSpace()
			if s.peek(0) == '=' {
				s.pos++
				s.skipBlank()
				s.value(kp)
			}
			if s.pos == start {
				s.pos++
			}
		}
	default:
		// Number, boolean or date-time (which may contain a space).
		for !s.eof() && !strings.ContainsRune(",]}\n#", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}

// basicString scans "..." and returns its raw content.
func (s *scanner) basicString() string {
	s.pos++ // opening quote
	start := s.pos
	for !s.eof() {
		switch s.src[s.pos] {
		case '\\':
			if s.peek(1) == '\n' {
				s.pos++
			} else {
				s.pos += 2
			}
		case '"':
			raw := s.src[start:s.pos]
			s.pos++
			return raw
		case '\n':
			return s.src[start:s.pos]
		default:
			s.pos++
		}
	}
	return s.src[start:min(s.pos, len(s.src))]
}

// literalString scans '...' and returns its content.
func (s *scanner) literalString() string {
	s.pos++
	start := s.pos
	for !s.eof() {
		switch s.src[s.pos] {
		case '\'':
			lit := s.src[start:s.pos]
			s.pos++
			return lit
		case '\n':
			return s.src[start:s.pos]
		}
		s.pos++
	}
	return s.src[start:]
}

// multiline scans a multi-line string, basic or literal (q is its quote
// character), from its three opening quotes. The closing
// delimiter may be followed by up to two more quotes that belong to the
// content.
func (s *scanner) multiline(q byte) {
	s.pos += 3
	delim := strings.Repeat(string(q), 3)
	for !s.eof() {
		c := s.src[s.pos]
		if c == '\\' && q == '"' {
			s.pos += 2
			continue
		}
		if c == q && strings.HasPrefix(s.src[s.pos:], delim) {
			s.pos += 3
			for extra := 0; extra < 2 && s.peek(0) == q; extra++ {
				s.pos++
			}
			return
		}
		s.pos++
	}
	s.pos = len(s.src)
}

// simpleEscape is the byte a one-letter escape of a basic string stands
// for (TOML 1.0's \b \t \n \f \r \" \\).
func simpleEscape(c byte) (byte, bool) {
	switch c {
	case 'b':
		return '\b', true
	case 't':
		return '\t', true
	case 'n':
		return '\n', true
	case 'f':
		return '\f', true
	case 'r':
		return '\r', true
	case '"', '\\':
		return c, true
	}
	return 0, false
}

// unescapeBasic resolves the escapes of a basic string; raw is returned as
// is if it holds an invalid escape (the parser would have rejected it).
func unescapeBasic(raw string) string {
	if !strings.Contains(raw, `\`) {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(raw) {
			return raw
		}
		i++
		if e, ok := simpleEscape(raw[i]); ok {
			b.WriteByte(e)
			continue
		}
		switch raw[i] {
		case 'e':
			b.WriteByte(0x1b)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[raw[i]]
			if i+n >= len(raw) {
				return raw
			}
			v, err := strconv.ParseUint(raw[i+1:i+1+n], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return raw
			}
			b.WriteRune(rune(v))
			i += n
		default:
			return raw
		}
	}
	return b.String()
}
