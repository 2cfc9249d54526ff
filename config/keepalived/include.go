package keepalived

// include (lib/parser.c check_include): part of the line preprocessor in
// lex.go.

import (
	"path/filepath"
	"sort"
	"strings"
)

// include handles "include GLOB" and its variants (check_include): the
// files matched, in glob order (braces expanded in order, each
// alternative sorted), directories and executable files skipped.
func (l *lexer) include(text string, pos Pos, src *source) bool {
	if !strings.Contains(text, "include") {
		return false
	}
	w := words(text)
	if len(w) != 2 {
		return false
	}
	switch w[0] {
	case "include", "includer", "includem", "includew", "includeb", "includea":
	default:
		return false
	}
	if l.depth >= maxIncludes {
		l.diags.errorf(pos, w[0], "includes nested deeper than %d (a file that includes itself?)", maxIncludes)
		return true
	}
	pattern := w[1]
	var matches []string
	for _, alt := range expandBraces(pattern) {
		if !filepath.IsAbs(alt) {
			alt = filepath.Join(src.dir, alt)
		}
		m, err := filepath.Glob(alt)
		if err != nil {
			l.diags.errorf(pos, w[0], "bad pattern %q: %v", pattern, err)
			continue
		}
		sort.Strings(m)
		matches = append(matches, m...)
	}
	n := 0
	for _, m := range matches {
		st, err := l.opts.stat(m)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 != 0 {
			if err == nil && st.Mode().IsRegular() {
				l.diags.warnf(pos, w[0], "%s is executable: skipped, as keepalived skips it", m)
			}
			continue
		}
		n++
		name := m
		if rel, err := filepath.Rel(filepath.Dir(l.opts.base()), m); err == nil && !strings.HasPrefix(rel, "..") {
			name = rel
		}
		data, err := l.opts.readFile(m)
		if err != nil {
			l.diags.errorf(pos, w[0], "%v", err)
			continue
		}
		text := strings.ReplaceAll(string(data), "\r\n", "\n")
		inc := &source{name: name, dir: filepath.Dir(m), lines: strings.Split(text, "\n")}
		if strings.HasSuffix(text, "\n") {
			inc.lines = inc.lines[:len(inc.lines)-1]
		}
		l.depth++
		l.run(inc)
		l.depth--
	}
	if n == 0 {
		if w[0] == "include" {
			l.diags.warnf(pos, w[0], "no configuration file matches %q", pattern)
		} else {
			l.diags.errorf(pos, w[0], "no configuration file matches %q", pattern)
		}
	}
	return true
}

// expandBraces expands csh-style braces ("{a,b}c" -> "ac", "bc"), in order.
func expandBraces(s string) []string {
	open := strings.IndexByte(s, '{')
	if open < 0 {
		return []string{s}
	}
	depth := 0
	var parts []string
	start := open + 1
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				parts = append(parts, s[start:i])
				var out []string
				for _, p := range parts {
					for _, rest := range expandBraces(s[i+1:]) {
						out = append(out, expandBraces(s[:open]+p+rest)...)
					}
				}
				return out
			}
		case ',':
			if depth == 1 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return []string{s}
}
