package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// value reads a value at a path depth long; n is its node, nil for a
// scalar.
func (p *fastParser) value(depth int) (v any, n *lnode) {
	switch c := p.peek(); {
	case c == '"':
		if strings.HasPrefix(p.src[p.pos:], `"""`) {
			return p.multiline('"'), nil
		}
		return p.basicString(), nil
	case c == '\'':
		if strings.HasPrefix(p.src[p.pos:], `'''`) {
			return p.multiline('\''), nil
		}
		return p.literalString(), nil
	case c == '[':
		return p.array(depth)
	case c == '{':
		return p.inlineTable(depth)
	}
	start := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ']' || c == '}' || c == '#' {
			break
		}
		p.pos++
	}
	tok := p.src[start:p.pos]
	switch tok {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	n64, ok := parseTOMLInt(tok)
	if !ok {
		p.fail() // floats, dates, anything else
	}
	if p.lastBoxed == nil || n64 != p.lastInt {
		p.lastInt, p.lastBoxed = n64, n64
	}
	return p.lastBoxed, nil
}

// parseTOMLInt parses a TOML integer as BurntSushi does (its checks, then
// strconv.ParseInt with base 0); ok is false for anything else, including
// what it rejects.
func parseTOMLInt(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	body := s
	if body[0] == '+' || body[0] == '-' {
		body = body[1:]
	}
	if body == "" {
		return 0, false
	}
	digits := func(str string, ok func(byte) bool) bool {
		if str == "" {
			return false
		}
		for i := 0; i < len(str); i++ {
			if !ok(str[i]) && str[i] != '_' {
				return false
			}
		}
		return true
	}
	switch {
	case strings.HasPrefix(body, "0x"), strings.HasPrefix(body, "0o"), strings.HasPrefix(body, "0b"):
		if len(body) != len(s) { // no sign with a base prefix
			return 0, false
		}
		var ok func(byte) bool
		switch body[1] {
		case 'x':
			ok = func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
		case 'o':
			ok = func(c byte) bool { return c >= '0' && c <= '7' }
		default:
			ok = func(c byte) bool { return c == '0' || c == '1' }
		}
		// tomlUnderscoresOK below reads b as a hex digit, so an underscore
		// right after 0b would pass it.
		if !digits(body[2:], ok) || body[2] == '_' {
			return 0, false
		}
	default:
		if !digits(body, func(c byte) bool { return c >= '0' && c <= '9' }) || body[0] == '_' {
			return 0, false
		}
	}
	if !tomlUnderscoresOK(s) || tomlLeadingZero(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 0, 64)
	return n, err == nil
}

// tomlUnderscoresOK: every underscore is between two digits (BurntSushi's
// numUnderscoresOK).
func tomlUnderscoresOK(s string) bool {
	accept := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' && !accept {
			return false
		}
		accept = c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
	}
	return accept
}

// tomlLeadingZero (BurntSushi's numHasLeadingZero).
func tomlLeadingZero(s string) bool {
	if len(s) > 1 && s[0] == '0' && !(s[1] == 'b' || s[1] == 'o' || s[1] == 'x') {
		return true
	}
	return len(s) > 2 && (s[0] == '-' || s[0] == '+') && s[1] == '0'
}

// array reads [v, v, ...]: BurntSushi's []any (never nil).
func (p *fastParser) array(depth int) (any, *lnode) {
	if depth+1 > MaxDepth {
		p.fail()
	}
	p.pos++
	n := &lnode{at: p.line, kind: nArray, arr: &larray{}}
	out := make([]any, 0, 2)
	for {
		p.blank()
		if p.peek() == ']' {
			p.pos++
			return out, n
		}
		line := p.line
		v, e := p.value(depth + 1)
		if e == nil {
			e = &lnode{kind: nScalar}
		}
		e.at = line
		out = append(out, v)
		n.arr.elems = append(n.arr.elems, e)
		p.blank()
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
		default:
			p.fail()
		}
	}
}

// inlineTable reads { k = v, ... } on one line (TOML 1.0).
func (p *fastParser) inlineTable(depth int) (any, *lnode) {
	p.pos++
	n := &lnode{at: p.line, kind: nInline, m: map[string]any{}}
	p.space()
	if p.peek() == '}' {
		p.pos++
		return n.m, n
	}
	for {
		p.space()
		p.keyValue(n, depth)
		p.space()
		switch p.peek() {
		case ',':
			p.pos++
			p.space()
			if p.peek() == '}' {
				p.fail() // a trailing comma: TOML 1.1
			}
		case '}':
			p.pos++
			return n.m, n
		default:
			p.fail()
		}
	}
}

// basicString reads "..." with escapes.
func (p *fastParser) basicString() string {
	p.pos++
	start := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '"':
			s := p.src[start:p.pos]
			p.pos++
			return s
		case c == '\\':
			return p.escaped(start)
		case c < 0x20 && c != '\t' || c == 0x7f:
			p.fail()
		}
		p.pos++
	}
	p.fail()
	return ""
}

// escaped continues a basic string from its first backslash.
func (p *fastParser) escaped(start int) string {
	var b strings.Builder
	b.WriteString(p.src[start:p.pos])
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String()
		case c == '\\':
			p.escape(&b)
			continue
		case c < 0x20 && c != '\t' || c == 0x7f:
			p.fail()
		}
		b.WriteByte(c)
		p.pos++
	}
	p.fail()
	return ""
}

// escape reads one escape sequence (TOML 1.0's) into b.
func (p *fastParser) escape(b *strings.Builder) {
	if p.pos+1 >= len(p.src) {
		p.fail()
	}
	c := p.src[p.pos+1]
	p.pos += 2
	if e, ok := simpleEscape(c); ok {
		b.WriteByte(e)
		return
	}
	switch c {
	case 'u', 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if p.pos+n > len(p.src) {
			p.fail()
		}
		hex := p.src[p.pos : p.pos+n]
		for i := 0; i < n; i++ {
			if h := hex[i]; !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
				p.fail()
			}
		}
		v, err := strconv.ParseUint(hex, 16, 32)
		if err != nil || !utf8.ValidRune(rune(v)) {
			p.fail()
		}
		b.WriteRune(rune(v))
		p.pos += n
	default:
		p.fail() // \e, \x (TOML 1.1), or invalid
	}
}

// literalString reads '...'.
func (p *fastParser) literalString() string {
	p.pos++
	start := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\'':
			s := p.src[start:p.pos]
			p.pos++
			return s
		case c < 0x20 && c != '\t' || c == 0x7f:
			p.fail()
		}
		p.pos++
	}
	p.fail()
	return ""
}

// multiline reads """...""" or ”'...”' (q is the quote). The newline
// right after the opening quotes is not part of the string; up to two
// quotes before the closing three are.
func (p *fastParser) multiline(q byte) string {
	p.pos += 3
	if p.peek() == '\n' {
		p.pos++
		p.line++
	}
	var b strings.Builder
	start := p.pos
	escaped := false
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == q && strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3)):
			n := 3
			for p.pos+n < len(p.src) && p.src[p.pos+n] == q {
				n++
			}
			if n > 5 {
				p.fail()
			}
			end := p.pos + n - 3
			var s string
			if escaped {
				b.WriteString(p.src[start:end])
				s = b.String()
			} else {
				s = p.src[start:end]
			}
			p.pos += n
			return s
		case c == '\\' && q == '"':
			if p.pos+1 < len(p.src) {
				switch p.src[p.pos+1] {
				case ' ', '\t', '\n', '\r':
					p.fail() // a line-ending backslash
				}
			}
			b.WriteString(p.src[start:p.pos])
			p.escape(&b)
			start, escaped = p.pos, true
			continue
		case c == '\n':
			p.line++
		case c < 0x20 && c != '\t' || c == 0x7f:
			p.fail() // a carriage return, or a control character
		}
		p.pos++
	}
	p.fail()
	return ""
}
