package keepalived

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The TOML written is built as a structure (Doc, Table, KV) and rendered
// once, so that every value is quoted by one function and every table
// carries the comment saying where it came from.

// Doc is a TOML document: comments, then tables.
type Doc struct {
	Comments []string
	Tables   []*Table
}

// Table is a [name] or [[name]] table; Tables are its sub-tables (their
// names are full paths, e.g. "virtual_server.real_server").
type Table struct {
	Name     string
	Array    bool
	Comments []string
	Keys     []KV
	Tables   []*Table
	// Src is where the table came from (for errors found in the output).
	Src Pos

	line int // of its header in the rendered document
}

// KV is one key = value line, with an optional trailing comment. Value is
// a string, int, bool, Duration, []string, []int or []any of those.
type KV struct {
	Key     string
	Value   any
	Comment string
}

// Duration is written as a Go duration string ("6s", "1m30s", "500ms").
type Duration time.Duration

// Set appends or replaces key.
func (t *Table) Set(key string, v any, comment string) {
	for i := range t.Keys {
		if t.Keys[i].Key == key {
			t.Keys[i] = KV{key, v, comment}
			return
		}
	}
	t.Keys = append(t.Keys, KV{key, v, comment})
}

// Get returns key's value.
func (t *Table) Get(key string) (any, bool) {
	for _, kv := range t.Keys {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Render writes the document.
func (d *Doc) Render() []byte {
	var b strings.Builder
	for _, c := range d.Comments {
		writeComment(&b, "", c)
	}
	for _, t := range d.Tables {
		b.WriteString("\n")
		t.render(&b)
	}
	return []byte(b.String())
}

func (t *Table) render(b *strings.Builder) {
	for _, c := range t.Comments {
		writeComment(b, "", c)
	}
	t.line = strings.Count(b.String(), "\n") + 1
	if t.Array {
		fmt.Fprintf(b, "[[%s]]\n", t.Name)
	} else {
		fmt.Fprintf(b, "[%s]\n", t.Name)
	}
	for _, kv := range t.Keys {
		fmt.Fprintf(b, "%s = %s", kv.Key, tomlValue(kv.Value))
		if kv.Comment != "" {
			b.WriteString("  # " + oneLine(kv.Comment))
		}
		b.WriteString("\n")
	}
	for _, s := range t.Tables {
		s.render(b)
	}
}

func writeComment(b *strings.Builder, indent, c string) {
	for _, l := range strings.Split(c, "\n") {
		if l == "" {
			b.WriteString(indent + "#\n")
		} else {
			b.WriteString(indent + "# " + l + "\n")
		}
	}
}

// oneLine keeps a comment on its line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return tomlString(v)
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	case Duration:
		return `"` + formatDuration(time.Duration(v)) + `"`
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = tomlString(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []int:
		parts := make([]string, len(v))
		for i, n := range v {
			parts[i] = strconv.Itoa(n)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = tomlValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	panic(fmt.Sprintf("keepalived: no TOML form for %T", v))
}

// tomlString quotes s: a literal string ('...') when it can be one, which
// keeps a command's backslashes and double quotes as written; else a basic
// string with escapes.
func tomlString(s string) string {
	literal := !strings.ContainsAny(s, "'\n\r")
	for _, r := range s {
		if r < ' ' && r != '\t' || r == 0x7f {
			literal = false
		}
	}
	if literal && strings.ContainsAny(s, `"\`) {
		return "'" + s + "'"
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < ' ' || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// formatDuration is d as Go writes it, without zero trailing units
// ("1m0s" -> "1m").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

type tableStart struct {
	line int
	src  Pos
}

// tableLines lists where each table starts in the last rendering, in
// order, with where it came from.
func (d *Doc) tableLines() []tableStart {
	var out []tableStart
	var walk func(ts []*Table)
	walk = func(ts []*Table) {
		for _, t := range ts {
			out = append(out, tableStart{t.line, t.Src})
			walk(t.Tables)
		}
	}
	walk(d.Tables)
	return out
}
