package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// tricky exercises what the scanner must get right; a comment "#> " at the
// end of a line names the paths that start on it.
const tricky = `# a comment with [brackets] and key = "value"
top = 1                                  #> top
"quoted.key" = "x"                       #> "quoted.key"
'lit.key' = 'a # not a comment'          #> "lit.key"
"esc\u0061ped" = 2                       #> escaped
a . b . c = 3                            #> a a.b a.b.c
ml = """
[not_a_table]
fake = 1 \"""
still = "in the string"
"""
after_ml = 1                             #> after_ml
lit = '''
[[not_an_array]]
'''''
after_lit = 2                            #> after_lit
arr = [                                  #> arr
  "one", # [comment] with ] and ,
  [2, 3],                                #> arr[1] arr[1][0] arr[1][1]
  { x = 1,                               #> arr[2] arr[2].x
    y = "}" },                           #> arr[2].y
]
date = 1979-05-27 07:32:00               #> date
after_date = 1                           #> after_date

[table]                                  #> table
key = "v"                                #> table.key
sub.key = 1                              #> table.sub table.sub.key

[[vs]]                                   #> vs vs[0]
name = "a"                               #> vs[0].name
[vs.hc]                                  #> vs[0].hc
type = "http"                            #> vs[0].hc.type
[[vs.rs]]                                #> vs[0].rs vs[0].rs[0]
addr = "x"                               #> vs[0].rs[0].addr
[[vs.rs]]                                #> vs[0].rs[1]
addr = "y"                               #> vs[0].rs[1].addr
[vs.rs.hc]                               #> vs[0].rs[1].hc
port = 1                                 #> vs[0].rs[1].hc.port

[[vs]]                                   #> vs[1]
name = "b"                               #> vs[1].name
rs = [ { addr = "z" },                   #> vs[1].rs vs[1].rs[0] vs[1].rs[0].addr
       { addr = "w" } ]                  #> vs[1].rs[1] vs[1].rs[1].addr
[ "vs" . "hc" ]                          #> vs[1].hc
inline = {                               #> vs[1].hc.inline
  deep = { k = [1,                       #> vs[1].hc.inline.deep vs[1].hc.inline.deep.k vs[1].hc.inline.deep.k[0]
    2] },                                #> vs[1].hc.inline.deep.k[1]
}
`

func TestLineIndexTricky(t *testing.T) {
	if _, err := toml.Decode(tricky, new(map[string]any)); err != nil {
		t.Fatalf("the test document is not valid TOML: %v", err)
	}
	for _, src := range []string{tricky, strings.ReplaceAll(tricky, "\n", "\r\n")} {
		x := buildLineIndex(src)
		for i, line := range strings.Split(tricky, "\n") {
			_, comment, ok := strings.Cut(line, "#> ")
			if !ok {
				continue
			}
			for _, p := range strings.Fields(comment) {
				got, ok := x.lines[p]
				if !ok {
					t.Errorf("%q not indexed (want line %d)", p, i+1)
				} else if got != i+1 {
					t.Errorf("%q at line %d, want %d", p, got, i+1)
				}
			}
		}
		for _, p := range []string{"not_a_table", "fake", "still", "not_an_array", "[comment]"} {
			if _, ok := x.lines[p]; ok {
				t.Errorf("%q, inside a string or comment, was indexed", p)
			}
		}
	}
}

func TestLineIndexFallback(t *testing.T) {
	x := buildLineIndex("[[vs]]\nname = \"a\"\n\n[[vs]]\nname = \"b\"\n")
	for _, tc := range []struct {
		p    keyPath
		want int
	}{
		{keyPath{}.key("vs").index(1).key("name"), 5},
		{keyPath{}.key("vs").index(1).key("port"), 4},                      // absent key: its table
		{keyPath{}.key("vs").index(1).key("rs").index(0).key("weight"), 4}, // absent table: the nearest ancestor
		{keyPath{}.key("nothing"), 0},
	} {
		if got := x.line(tc.p); got != tc.want {
			t.Errorf("line(%s) = %d, want %d", tc.p, got, tc.want)
		}
	}
}

func TestKeyPathString(t *testing.T) {
	p := keyPath{}.key("virtual_server").index(2).key("a.b").key("").key("x y").index(0)
	if got, want := p.String(), `virtual_server[2]."a.b".""."x y"[0]`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestUnescapeBasic(t *testing.T) {
	for raw, want := range map[string]string{
		`plain`:            "plain",
		`a\tb\n\"\\`:       "a\tb\n\"\\",
		`\u00e9\U0001F600`: "é😀",
		`\x41\e`:           "A\x1b",
		`bad\q`:            `bad\q`,
		`short\u12`:        `short\u12`,
		`trailing\`:        `trailing\`,
	} {
		if got := unescapeBasic(raw); got != want {
			t.Errorf("unescapeBasic(%q) = %q, want %q", raw, got, want)
		}
	}
}

// checkIndexCovers asserts that every key, table and array element the TOML
// parser found in src is in the index, on a line that mentions the key.
func checkIndexCovers(t *testing.T, src string) {
	t.Helper()
	var root map[string]any
	if _, err := toml.Decode(src, &root); err != nil {
		return
	}
	x := buildLineIndex(src)
	if x.deep > 0 {
		return // refused before decoding: the index stopped there
	}
	lines := strings.Split(src, "\n")
	var walk func(p keyPath, last string, v any)
	walk = func(p keyPath, last string, v any) {
		if len(p) > 0 {
			l, ok := x.lines[p.String()]
			if !ok {
				t.Fatalf("%s is not indexed in:\n%s", p, src)
			}
			if l < 1 || l > len(lines) {
				t.Fatalf("%s at line %d of %d", p, l, len(lines))
			}
			// A key written with escapes ("\u0061") is not mentioned as such.
			if last != "" && quoteKey(last) == last && !strings.Contains(lines[l-1], last) && !strings.Contains(lines[l-1], `\`) {
				t.Fatalf("%s at line %d, which does not mention %q: %q\n%s", p, l, last, lines[l-1], src)
			}
		}
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(p.key(k), k, e)
			}
		case []map[string]any:
			for i, e := range v {
				walk(p.index(i), "", e)
			}
		case []any:
			for i, e := range v {
				walk(p.index(i), "", e)
			}
		}
	}
	walk(nil, "", root)
}

func TestLineIndexCoversExamples(t *testing.T) {
	files, _ := filepath.Glob("examples/*.toml")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkIndexCovers(t, string(src))
	}
	checkIndexCovers(t, tricky)
}

func FuzzLineIndex(f *testing.F) {
	files, _ := filepath.Glob("examples/*.toml")
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	f.Add(tricky)
	f.Add("a = '''x'''''\nb = \"\"\"y\\\"\"\"\"\"\nc = [[1],[{d=2}]]\n")
	f.Fuzz(func(t *testing.T, src string) {
		buildLineIndex(src) // never panics, on any input
		checkIndexCovers(t, src)
	})
}
