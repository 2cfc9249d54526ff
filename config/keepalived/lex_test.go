package keepalived

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeFiles writes files (name -> content) under a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// lines renders the preprocessed lines as "FILE:LINE word|word".
func lines(dir string, res *Result) string {
	var b strings.Builder
	for _, l := range res.Lines {
		fmt.Fprintf(&b, "%s:%d %s\n", strings.TrimPrefix(l.Pos.File, dir+"/"), l.Pos.Line, strings.Join(l.Words, "|"))
	}
	return b.String()
}

// One test per grammar feature: the words and FILE:LINE of each line.
func TestGrammar(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"comments and escapes", map[string]string{"k.conf": "a b # c\nd \"e # f\" ! g\nh\\#i j\\!k\nx#y\n"},
			"k.conf:1 a|b\nk.conf:2 d|e # f\nk.conf:3 h#i|j!k\nk.conf:4 x\n"},
		{"braces without spaces", map[string]string{"k.conf": "virtual_ipaddress{\n10.0.0.1}\nfoo{ x }\n"},
			"k.conf:1 virtual_ipaddress\nk.conf:1 {\nk.conf:2 10.0.0.1\nk.conf:2 }\nk.conf:3 foo\nk.conf:3 {\nk.conf:3 x\nk.conf:3 }\n"},
		{"include glob and braces", map[string]string{"k.conf": "a\ninclude inc/*.conf\ninclude inc/{b,a}.conf\nz\n", "inc/a.conf": "a1\na2\n", "inc/b.conf": "b1\n"},
			"k.conf:1 a\ninc/a.conf:1 a1\ninc/a.conf:2 a2\ninc/b.conf:1 b1\ninc/b.conf:1 b1\ninc/a.conf:1 a1\ninc/a.conf:2 a2\nk.conf:4 z\n"},
		{"include relative to the including file", map[string]string{"k.conf": "include d/x.conf\n", "d/x.conf": "include y.conf\n", "d/y.conf": "y\n"},
			"d/y.conf:1 y\n"},
		{"conditional", map[string]string{"k.conf": "@high a\n@low b\n@^high c\n@^low d\n@high\n"},
			"k.conf:1 a\nk.conf:4 d\n"},
		{"parameters", map[string]string{"k.conf": "$V=hello\n$W=${V}x\nk_$V\nk_${W}\nk_$NOPE\n$E=\nk_${E}z\n$V=again\n$V\nk_${_INSTANCE}\nk_${_HASH}\n"},
			"k.conf:3 k_hello\nk.conf:4 k_hellox\nk.conf:5 k_$NOPE\nk.conf:7 k_z\nk.conf:9 again\nk.conf:10 k_high\nk.conf:11 k_\n"},
		{"multiline definition", map[string]string{"k.conf": "$M= \\\n  m1 a \\\n  m2\n$M\nend\n"},
			"k.conf:4 m1|a\nk.conf:4 m2\nk.conf:5 end\n"},
		{"sequences", map[string]string{"k.conf": "~SEQ(i,1,3) s${i}\n~SEQx(j,9,3,15) h${j}\n~SEQ(n,2) q$n\n~SEQ(o,-2) o$o\n~SEQ(r,3,1) r$r\n"},
			"k.conf:1 s1\nk.conf:1 s2\nk.conf:1 s3\nk.conf:2 h9\nk.conf:2 hc\nk.conf:2 hf\nk.conf:3 q1\nk.conf:3 q2\nk.conf:4 o-1\nk.conf:4 o-2\nk.conf:5 r3\nk.conf:5 r2\nk.conf:5 r1\n"},
		{"lists", map[string]string{"k.conf": "~LST(z,a,b) l${z}\n~LST({p,q},{1,2},{3,4}) m${p}${q}\n~LST(a,1,2) ~SEQ(b,2) n${a}${b}\n"},
			"k.conf:1 la\nk.conf:1 lb\nk.conf:2 m12\nk.conf:2 m34\nk.conf:3 n11\nk.conf:3 n12\nk.conf:3 n21\nk.conf:3 n22\n"},
		{"quotes", map[string]string{"k.conf": "\"a b\" c\na\"b c\"d e\n'v w'\n"},
			"k.conf:1 a b|c\nk.conf:2 a|b c|d|e\nk.conf:3 'v|w'\n"},
		{"no general continuation", map[string]string{"k.conf": "a \\\nb\n"}, "k.conf:1 a\\\nk.conf:2 b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			res := Import(filepath.Join(dir, "k.conf"), Options{Instance: "high", InstanceSet: true})
			if got := lines(dir, res); got != tc.want {
				t.Errorf("got:\n%swant:\n%s", got, tc.want)
			}
		})
	}
}

// Inputs past the preprocessor's bounds are refused with an error at
// their line, before the lines are made.
func TestBounds(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"a sequence of a billion", "a\n~SEQ(i,1,1000000000) x\n", "k.conf:2: error: ~SEQ: invalid ~SEQ specification \"~SEQ(i,1,1000000000) x\": it makes 999999999 lines or more, more than 1048576"},
		{"a sequence from the lowest to the highest", "~SEQ(i,-9223372036854775808,1,9223372036854775807) x\n", "more than 1048576"},
		{"a descending sequence", "~SEQ(i,1048577,-1,0) x\n", "more than 1048576"},
		{"nested sequences", "~SEQ(i,1,1024) ~SEQ(j,1,1025) x\n", "k.conf:1: error: more than 1048576 lines"},
		{"a file that includes itself", "include k.conf\n", "includes nested deeper than 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"k.conf": tc.src})
			res := Import(filepath.Join(dir, "k.conf"), Options{Instance: "a", InstanceSet: true})
			var all []string
			for _, d := range res.Diags {
				s := strings.TrimPrefix(d.String(), dir+"/")
				all = append(all, s)
				if d.Severity == Error && strings.Contains(s, tc.want) {
					return
				}
			}
			t.Errorf("no error %q among:\n%s", tc.want, strings.Join(all, "\n"))
		})
	}
}

var unknownKW = regexp.MustCompile(`^\((?:([^:]+): )?Line (\d+)\) Unknown keyword '(.*)'$`)

// The preprocessor agrees with keepalived itself: lines of unknown
// keywords inside global_defs are reported by `keepalived -t` with their
// file, line and first word, which must be this lexer's.
func TestGrammarAgainstKeepalived(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Fatal("keepalived (a CI package) is needed to compare the preprocessor with it")
	}
	files := map[string]string{
		"k.conf": "global_defs {\n  foo1 a \\\n  bar\n  foo2 \"a # b\" # c\n  foo3 a \\# b\n  $V=hello\n  $W=${V}x\n  k_$V\n  k_${W}\n" +
			"  ~SEQ(i,1,3) s${i}\n  ~SEQx(j,9,3,15) h${j}\n  ~LST(z,a,b) l${z}\n  ~LST({p,q},{1,2},{3,4}) m${p}${q}\n" +
			"  @myid cond1\n  @^myid cond2\n  @other cond3\n  include inc/*.conf\n  include inc/{b,a}.conf\n  k_${_INSTANCE}\n  k_$NOPE\n" +
			"  \"a b\" c\n  x#y\n  t\\#u\n  $M= \\\n     m1 \\\n     m2\n  $M\n  ~SEQ(o,-2) o$o\n  ~SEQ(r,3,1) r$r\n}\n",
		"inc/a.conf": "incA1\nincA2 x\n",
		"inc/b.conf": "incB1\n",
	}
	dir := writeFiles(t, files)
	cmd := exec.Command("keepalived", "-t", "-l", "-D", "-i", "myid", "-f", "k.conf")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	var want []string
	for _, l := range strings.Split(string(out), "\n") {
		m := unknownKW.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f := m[1]
		if f == "" {
			f = "k.conf"
		}
		want = append(want, fmt.Sprintf("%s:%s %s", f, m[2], m[3]))
	}
	if len(want) < 20 {
		t.Fatalf("keepalived -t reported %d unknown keywords; its output:\n%s", len(want), out)
	}
	res := Import(filepath.Join(dir, "k.conf"), Options{Instance: "myid", InstanceSet: true})
	var got []string
	for _, d := range res.Diags {
		if strings.HasSuffix(d.Msg, "unknown keyword: ignored (as keepalived)") {
			got = append(got, fmt.Sprintf("%s:%d %s", strings.TrimPrefix(d.Pos.File, dir+"/"), d.Pos.Line, d.Keyword))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unknown keywords:\n%s\nkeepalived -t:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The fuzzer: any input gives diagnostics with FILE:LINE, never a panic,
// and what is converted loads.
func FuzzImport(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(samplesDir, "keepalived.conf.*"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("$A=$A\n$A\n~SEQ(i,1,1000000000) x\n~LST({a},{1}) $a\ninclude k.conf\n{}}}\"\n")
	f.Fuzz(func(t *testing.T, src string) {
		opts := Options{Instance: "a", InstanceSet: true,
			ReadFile: func(string) ([]byte, error) { return []byte(src), nil },
			Stat:     func(p string) (os.FileInfo, error) { return nil, os.ErrNotExist },
		}
		res := Import("k.conf", opts)
		for _, d := range res.Diags {
			if d.Pos.File == "" && !strings.Contains(d.Msg, "more diagnostics") {
				t.Fatalf("a diagnostic without a file: %v", d)
			}
		}
		if res.TOML != nil && res.Failed() {
			t.Fatal("TOML despite errors")
		}
	})
}
