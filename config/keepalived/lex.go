package keepalived

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The line preprocessor, as keepalived 2.2.7's read_line (lib/parser.c):
// each physical line is decommented (decomment: '#' and '!' outside double
// quotes start a comment, "\#" and "\!" stand for the characters), then, in
// a loop, a line starting "@ID" is kept only when ID is the configuration
// id ("@^ID": only when it is not), "$NAME=VALUE" defines a parameter (a
// value ending in '\' continues on the next lines: a multiline definition),
// "~SEQ(...)", "~SEQx(...)" and "~LST(...)" repeat the rest of the line, and
// $NAME / ${NAME} are substituted, recursively; "include GLOB" reads other
// files (braces and wildcards, relative to the including file's directory);
// finally a '{' or '}' outside quotes splits the line, so that
// "virtual_ipaddress{" is two lines. Every line keeps the file and line it
// came from, also those made by a substitution or a sequence (the line
// that used it). keepalived 2.2.7 has no general line continuation: a
// trailing '\' continues only a definition (checked with keepalived -t).

// Pos is where a line came from.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Line is a preprocessed line: its words (keepalived's alloc_strvec: a
// word starting with '"' runs to the next '"', others end at white space
// or '"'), and its text (for commands, which keepalived splits again with
// quotes and escapes).
type Line struct {
	Pos   Pos
	Text  string
	Words []string
}

// Bounds, so that any input costs bounded time and memory.
const (
	maxLineLen     = 64 << 10 // a line after substitution
	maxLines       = 1 << 20  // lines produced in all (sequences multiply)
	maxIncludes    = 32       // include nesting
	maxSubstitutes = 10000    // substitutions in one line
	maxFileSize    = 32 << 20
)

// lexer holds the preprocessor's state across files, as keepalived's
// statics do: definitions are global, sequences per file.
type lexer struct {
	opts  *Options
	defs  map[string]*def
	out   []Line
	diags *diags
	depth int
	// blockDepth counts '{' and '}' lines (read_line's block_depth).
	blockDepth int
	// idWarned: the conditional-without---instance warning is given once.
	idWarned bool
	stopped  bool
}

type def struct {
	value     string
	multiline bool
	fn        func(l *lexer, cur *source, params string) string
	maxParams int
}

// source is one file being read.
type source struct {
	name  string // as reported
	dir   string // absolute directory, for relative includes and ${_PWD}
	lines []string
	next  int // index of the next physical line
}

func newLexer(opts *Options, d *diags) *lexer {
	l := &lexer{opts: opts, defs: map[string]*def{}, diags: d}
	l.defs["_PWD"] = &def{fn: func(_ *lexer, cur *source, _ string) string { return cur.dir }}
	l.defs["_INSTANCE"] = &def{fn: func(l *lexer, _ *source, _ string) string { return l.opts.configID() }}
	l.defs["_RANDOM"] = &def{maxParams: 2, fn: random}
	l.defs["_HASH"] = &def{value: "#"}
	l.defs["_BANG"] = &def{value: "!"}
	return l
}

// random stands for ${_RANDOM [MIN [MAX]]}: an imported configuration is
// fixed, so the value is MIN (default 0), with a warning.
func random(l *lexer, _ *source, params string) string {
	f := strings.Fields(params)
	v := "0"
	if len(f) > 0 {
		v = f[0]
	}
	return v
}

// readFile reads the configuration file at path (the top-level one).
func (l *lexer) readFile(path string, at Pos) {
	data, err := l.opts.readFile(path)
	if err != nil {
		l.diags.errorf(at, "", "%v", err)
		return
	}
	if len(data) > maxFileSize {
		l.diags.errorf(at, "", "%s is larger than %d MiB", path, maxFileSize>>20)
		return
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	src := &source{name: path, dir: filepath.Dir(abs), lines: strings.Split(text, "\n")}
	if strings.HasSuffix(text, "\n") {
		src.lines = src.lines[:len(src.lines)-1]
	}
	l.run(src)
}

// pending is a line still to be processed, with where it came from.
type pending struct {
	text string
	pos  Pos
}

// run processes one file's lines.
func (l *lexer) run(src *source) {
	var queue []pending // lines made by multiline definitions, to process next
	var multi *def      // a multiline definition being read
	for !l.stopped {
		var p pending
		switch {
		case len(queue) > 0:
			p, queue = queue[0], queue[1:]
		case src.next < len(src.lines):
			raw := src.lines[src.next]
			src.next++
			p = pending{text: raw, pos: Pos{src.name, src.next}}
			if multi != nil {
				// A multiline definition: lines ending in '\' go on.
				t := l.decomment(p.text, p.pos)
				if t == "" {
					multi = nil
					continue
				}
				if strings.HasSuffix(t, "\\") {
					t = strings.TrimRight(strings.TrimSuffix(t, "\\"), " \t")
					if t != "" {
						multi.value += t + "\n"
					}
					continue
				}
				multi.value += t
				multi = nil
				continue
			}
			p.text = l.decomment(p.text, p.pos)
		default:
			return
		}
		if p.text == "" {
			continue
		}
		more, d := l.process(p, src)
		if d != nil {
			multi = d
			continue
		}
		queue = append(more, queue...)
	}
}

// process runs the conditional, definition, sequence and substitution
// steps on one line; it emits what results, and returns lines a multiline
// definition expanded to (to process next), or the multiline definition
// that starts on this line.
func (l *lexer) process(p pending, src *source) ([]pending, *def) {
	text := p.text
	for range maxSubstitutes {
		if strings.HasPrefix(text, "@") {
			rev := strings.HasPrefix(text, "@^")
			id := text[1:]
			if rev {
				id = text[2:]
			}
			sp := strings.IndexAny(id, " \t")
			if sp < 0 {
				return nil, nil
			}
			if !l.opts.InstanceSet && !l.idWarned {
				l.idWarned = true
				l.diags.warnf(p.pos, "@"+id[:sp], "a conditional line: no --instance given, so the configuration id is %q (the host name, as keepalived without -i)", l.opts.configID())
			}
			if (id[:sp] == l.opts.configID()) == rev {
				return nil, nil
			}
			text = strings.TrimLeft(id[sp:], " \t")
		}
		if strings.HasPrefix(text, "$") {
			if d, ok := l.definition(text); ok {
				if d.multiline {
					return nil, d
				}
				return nil, nil
			}
		}
		if strings.HasPrefix(text, "~SEQ") || strings.HasPrefix(text, "~LST") {
			return l.sequence(text, p.pos, src), nil
		}
		if strings.HasPrefix(text, "~") {
			break
		}
		if !strings.Contains(text, "$") {
			break
		}
		nt, lines, changed := l.substitute(text, p.pos, src)
		if lines != nil {
			// A multiline definition: its lines are read in place of
			// this one.
			var out []pending
			for _, s := range lines {
				out = append(out, pending{text: s, pos: p.pos})
			}
			return out, nil
		}
		if !changed {
			break
		}
		// keepalived strips comments again from what a substitution
		// made: ${_HASH} and ${_BANG} start one there (checked with
		// keepalived -t).
		text = l.decomment(nt, p.pos)
		if len(text) > maxLineLen {
			l.diags.errorf(p.pos, "", "the line is longer than %d bytes after substitution", maxLineLen)
			return nil, nil
		}
		if !strings.HasPrefix(text, "@") && !strings.Contains(text, "$") {
			break
		}
	}
	if l.include(text, p.pos, src) {
		return nil, nil
	}
	l.split(text, p.pos)
	return nil, nil
}

// processAll processes a line and the lines it expands to.
func (l *lexer) processAll(p pending, src *source) *def {
	queue := []pending{p}
	for len(queue) > 0 && !l.stopped {
		more, d := l.process(queue[0], src)
		if d != nil {
			return d
		}
		queue = append(more, queue[1:]...)
	}
	return nil
}

// decomment removes comments, the escaping of '#' and '!', and leading and
// trailing white space (lib/parser.c decomment).
func (l *lexer) decomment(s string, pos Pos) string {
	s = strings.TrimLeft(s, " \t")
	var b strings.Builder
	quote, cont := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quote = !quote
		case c == '\\' && i+1 < len(s):
			if !quote && (s[i+1] == '#' || s[i+1] == '!') {
				b.WriteByte(s[i+1])
			} else {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
			continue
		case c == '\\':
			cont = true
			i = len(s)
			continue
		case !quote && (c == '#' || c == '!'):
			i = len(s)
			continue
		}
		b.WriteByte(c)
	}
	if quote {
		l.diags.errorf(pos, "", "unterminated quote in %q", s)
	}
	out := strings.TrimRight(b.String(), " \t")
	if cont {
		out += "\\"
	}
	return out
}

// definition handles "$NAME=VALUE" (check_definition); ok is false when
// the line is not one.
func (l *lexer) definition(text string) (*def, bool) {
	if len(text) < 2 || !(isAlpha(text[1]) || text[1] == '_') {
		return nil, false
	}
	i := 2
	for i < len(text) && text[i] != '=' {
		if !isAlnum(text[i]) && text[i] != '_' {
			return nil, false
		}
		i++
	}
	if i >= len(text) {
		return nil, false
	}
	name := text[1:i]
	value := strings.TrimLeft(text[i+1:], " \t")
	d := &def{}
	if strings.HasSuffix(value, "\\") {
		d.multiline = true
		value = strings.TrimRight(strings.TrimSuffix(value, "\\"), " \t")
		if value != "" {
			value += "\n"
		}
	}
	d.value = value
	l.defs[name] = d
	return d, true
}

// substitute replaces $NAME and ${NAME} (replace_param). A multiline
// definition alone on the line is returned as lines.
func (l *lexer) substitute(text string, pos Pos, src *source) (string, []string, bool) {
	changed := false
	for i, n := 0, 0; i < len(text)-1; {
		if text[i] != '$' {
			i++
			continue
		}
		name, params, end, braces, ok := refAt(text, i+1)
		d := l.defs[name]
		if !ok || d == nil || (params != "" && d.maxParams == 0) {
			i++
			continue
		}
		alone := end == len(text)
		if d.multiline && !alone {
			i++
			continue
		}
		if n++; n > maxSubstitutes {
			l.diags.errorf(pos, "$"+name, "more than %d substitutions in one line (a definition that refers to itself?)", maxSubstitutes)
			return text, nil, false
		}
		_ = braces
		value := d.value
		if d.fn != nil {
			value = d.fn(l, src, params)
			if name == "_RANDOM" {
				l.diags.warnf(pos, "${_RANDOM}", "an imported configuration is fixed: ${_RANDOM} is replaced by %s", value)
			}
		}
		if d.multiline {
			return "", strings.Split(strings.TrimSuffix(value, "\n"), "\n"), true
		}
		text = text[:i] + value + text[end:]
		changed = true
		if len(text) > maxLineLen {
			return text, nil, true
		}
		if strings.HasPrefix(strings.TrimLeft(value, " \t"), "~") {
			break
		}
	}
	return text, nil, changed
}

// refAt parses a parameter reference after a '$' at s[i:]: NAME (followed
// by white space, ',', ')' or the end) or {NAME} or {NAME PARAMS}
// (find_definition). end is the index after it.
func refAt(s string, i int) (name, params string, end int, braces, ok bool) {
	if i < len(s) && s[i] == '{' {
		braces = true
		i++
	}
	if i >= len(s) || !(isAlpha(s[i]) || s[i] == '_') {
		return "", "", 0, braces, false
	}
	j := i + 1
	for j < len(s) && (isAlnum(s[j]) || s[j] == '_') {
		j++
	}
	name = s[i:j]
	if braces {
		k := j
		for k < len(s) && (s[k] == ' ' || isDigit(s[k])) {
			k++
		}
		if k >= len(s) || s[k] != '}' {
			return "", "", 0, braces, false
		}
		params = strings.TrimSpace(s[j:k])
		if params != "" && s[k-1] == ' ' {
			return "", "", 0, braces, false
		}
		return name, params, k + 1, braces, true
	}
	if j < len(s) && !strings.ContainsRune(" \t,)", rune(s[j])) {
		return "", "", 0, braces, false
	}
	return name, "", j, braces, true
}

// split cuts a line at its first '{' or '}' outside double quotes and
// emits the pieces (read_line's line_residue).
func (l *lexer) split(text string, pos Pos) {
	for text != "" {
		cut := -1
		if text[0] == '{' || text[0] == '}' {
			cut = 0
		} else {
			for i := 0; i < len(text); i++ {
				if text[i] == '"' {
					j := strings.IndexByte(text[i+1:], '"')
					if j < 0 {
						break
					}
					i += j + 1
					continue
				}
				if text[i] == '{' || text[i] == '}' {
					cut = i
					break
				}
			}
		}
		var head, rest string
		switch {
		case cut < 0:
			head = text
		case cut == 0:
			head, rest = text[:1], strings.TrimLeft(text[1:], " \t")
		default:
			head, rest = text[:cut], text[cut:]
		}
		head = strings.TrimRight(head, " \t")
		switch head {
		case "{":
			l.blockDepth++
		case "}":
			if l.blockDepth--; l.blockDepth < 0 {
				l.diags.errorf(pos, "}", "extra '}' found")
				l.blockDepth = 0
			}
		}
		if w := words(head); len(w) > 0 {
			if len(l.out) >= maxLines {
				l.diags.errorf(pos, "", "more than %d lines", maxLines)
				l.stopped = true
				return
			}
			l.out = append(l.out, Line{Pos: pos, Text: head, Words: w})
		}
		text = strings.TrimRight(rest, " \t")
	}
}

// words splits a line into words as keepalived's alloc_strvec: white space
// separates; a word starting with '"' runs to the next '"' (unterminated:
// the rest of the line); others end at white space or '"'.
func words(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && strings.IndexByte(whiteSpace, s[i]) >= 0 {
			i++
		}
		if i >= len(s) {
			break
		}
		if s[i] == '"' {
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				out = append(out, s[i+1:])
				break
			}
			out = append(out, s[i+1:i+1+j])
			i += j + 2
			continue
		}
		j := i
		for j < len(s) && strings.IndexByte(whiteSpace+`"`, s[j]) < 0 {
			j++
		}
		out = append(out, s[i:j])
		i = j
	}
	return out
}

const whiteSpace = " \t\f\n\r\v"

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }

// osReadFile and osStat are the defaults of Options.
var (
	osReadFile = os.ReadFile
	osStat     = os.Stat
)
