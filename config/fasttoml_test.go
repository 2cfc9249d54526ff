package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/BurntSushi/toml"
)

// paths lists every key path of the tree with its line, as the line
// index records them.
func (n *lnode) paths(prefix keyPath, out map[string]int) {
	for _, k := range n.keys {
		p := prefix.key(k.name)
		out[p.String()] = k.line
		if k.n != nil {
			k.n.paths(p, out)
		}
	}
	for i, e := range n.elems() {
		p := prefix.index(i)
		out[p.String()] = e.at
		e.paths(p, out)
	}
}

// fillAll fills every lazy table under n (the decoder fills them as it
// reaches them).
func (n *lnode) fillAll() {
	n.fillTable()
	for _, k := range n.keys {
		if k.n != nil {
			k.n.fillAll()
		}
	}
	for _, e := range n.elems() {
		e.fillAll()
	}
}

// checkFast fails t if fastParse accepts src and decodes it otherwise than
// BurntSushi/toml and the line index; it reports whether fastParse
// accepted it.
func checkFast(t *testing.T, src string) bool {
	t.Helper()
	fast, tree, ok := fastParse(src)
	if !ok {
		return false
	}
	tree.fillAll()
	var slow map[string]any
	if _, err := toml.Decode(src, &slow); err != nil {
		t.Fatalf("fastParse accepts what BurntSushi rejects (%v):\n%q", err, src)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fastParse decodes\n%#v\nBurntSushi\n%#v\nfrom %q", fast, slow, src)
	}
	idx := buildLineIndex(src)
	if idx.deep > 0 {
		t.Fatalf("fastParse accepts a document deeper than %d: %q", MaxDepth, src)
	}
	got := map[string]int{}
	tree.paths(nil, got)
	if !maps.Equal(got, idx.lines) {
		t.Fatalf("fastParse's lines\n%v\nthe line index's\n%v\nof %q", got, idx.lines, src)
	}
	return true
}

// fastCases are documents fastParse handles, or must hand to BurntSushi.
var fastCases = []struct {
	src  string
	fast bool
}{
	{"", true},
	{"a = 1\nb = -2\nc = +3\nd = 1_000\ne = 0x1F\nf = 0o17\ng = 0b101\nh = 0\ni = -0\n", true},
	{"a = 01\n", false},
	{"a = 1__0\n", false},
	{"a = 1_\n", false},
	{"a = 0x_1\n", false},
	{"a = 0b_0\n", false},
	{"a = 0o_7\n", false},
	{"a = 9223372036854775808\n", false},
	{"a = 1.5\n", false},
	{"a = 1e3\n", false},
	{"a = inf\n", false},
	{"a = 1979-05-27\n", false},
	{"a = 07:32:00\n", false},
	{"a = true\nb = false\n", true},
	{"a = truex\n", false},
	{`a = "x\ty\u00e9\U0001F600\"\\\b\f\r\n"` + "\n", true},
	{`a = "\e"` + "\n", false},
	{`a = "\x41"` + "\n", false},
	{`a = "\ud800"` + "\n", false},
	{`a = "\q"` + "\n", false},
	{"a = \"tab\there\"\n", true},
	{"a = \"ctl\x01\"\n", false},
	{"a = 'lit\\eral'\n", true},
	{"a = \"\"\"\nline1\nline2\"\"\"\n", true},
	{"a = \"\"\"x\"\"\"\"\"\n", true},
	{"a = \"\"\"x\"\"\"\"\"\"\n", false},
	{"a = \"\"\"a \\\n  b\"\"\"\n", false},
	{"a = \"\"\"esc\\tin\"\"\"\n", true},
	{"a = '''\nraw\\n'''\n", true},
	{"a = '''x'''''\n", true},
	{"a = \"\"\"cr\r\nlf\"\"\"\n", false},
	{"a = [1, 2,\n  # c\n  3,\n]\nb = []\nc = [[1], ['x', \"y\"]]\n", true},
	{"a = [1 2]\n", false},
	{"a = { b = 1, c = \"x\", d = { e = [1] } }\nf = {}\n", true},
	{"a = { b = 1, }\n", false},
	{"a = { b = 1,\n c = 2 }\n", false},
	{"a = { b = 1, b = 2 }\n", false},
	{"a = { b.c = 1 }\n", false},
	{"a = [ { b = 1 }, { c = 2 } ]\n", true},
	{"a.b = 1\n", false},
	{"a = 1\na = 2\n", false},
	{"[a]\n[a]\n", false},
	{"[a.b]\n[a]\n", false},
	{"[a]\nb = 1\n[a.b]\n", false},
	{"[a]\nb = 1\n[a.c]\nd = 2\n[a.c.e]\n", true},
	{"[[a]]\n[a.b]\nc = 1\n[[a.d]]\n[[a.d]]\n[[a]]\n[[a.d]]\n[a.d.e]\n", true},
	{"[[a]]\n[a]\n", false},
	{"[a]\n[[a]]\n", false},
	{"a = [1]\n[[a]]\n", false},
	{"a = {b = 1}\n[a.c]\n", false},
	{"[ a . \"b.c\" . 'd' ]\nx = 1\n", true},
	{"[a] x = 1\n", false},
	{"[[a ]]\n[[ a]]\n", true},
	{"[ [a] ]\n", false},
	{"\"quoted key\" = 1\n'lit key' = 2\n\"\" = 3\n", true},
	{"# comment\r\na = 1 # trailing\r\n\r\n[b]\r\n", true},
	{"a = 1\rb = 2\n", false},
	{"# bad \x7f comment\n", false},
	{"\xef\xbb\xbfa = 1\n", false},
	{"a = \"\xff\"\n", false},
	{"a = 1", true},
	{"a =\n1\n", false},
	{"= 1\n", false},
	{"a = \"unterminated\n", false},
	{"a = [1,\n", false},
	{"x = " + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + "\n", true},
	{"x = " + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + "\n", false},
	{"x = " + strings.Repeat("[", 3) + "1" + strings.Repeat("]", 3) + "\n", true},
	{"[" + strings.Repeat("a.", MaxDepth-1) + "b]\n", true},
	{"[" + strings.Repeat("a.", MaxDepth) + "b]\n", false},
}

func TestFastParse(t *testing.T) {
	for _, tc := range fastCases {
		if got := checkFast(t, tc.src); got != tc.fast {
			t.Errorf("fastParse(%q): handled %v, want %v", tc.src, got, tc.fast)
		}
	}
}

// The examples, the test configurations and a configuration at the
// dataplane's limits are read by the fast path, as BurntSushi reads them.
func TestFastParseFiles(t *testing.T) {
	files, _ := filepath.Glob("examples/*.toml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !checkFast(t, string(src)) {
			t.Errorf("%s: not read by the fast path", f)
		}
	}
	if !checkFast(t, scaleConfig(100, 64, "tcp")) {
		t.Error("the scale configuration is not read by the fast path")
	}
}

// FuzzFastParse: whatever fastParse accepts, BurntSushi/toml decodes to the
// same values, and the line index finds the same lines.
func FuzzFastParse(f *testing.F) {
	for _, tc := range fastCases {
		f.Add(tc.src)
	}
	for _, tc := range errorCases {
		f.Add(tc.src)
	}
	files, _ := filepath.Glob("examples/*.toml")
	for _, file := range files {
		src, _ := os.ReadFile(file)
		f.Add(string(src))
	}
	f.Fuzz(func(t *testing.T, src string) {
		checkFast(t, src)
		checkSameParse(t, src)
	})
}

// checkSameParse fails t unless Parse reads src as it does without its
// fast paths (fastParse, fastReal): the same configuration, or the same
// errors.
func checkSameParse(t *testing.T, src string) {
	t.Helper()
	env := fakeEnv{"eth0": nil, "eth1": nil}
	fast, ferr := Parse("f.toml", []byte(src), env)
	slowOnly = true
	slow, serr := Parse("f.toml", []byte(src), env)
	slowOnly = false
	if !reflect.DeepEqual(fast, slow) || fmt.Sprint(ferr) != fmt.Sprint(serr) {
		t.Fatalf("with the fast paths:\n%v\n%+v\nwithout:\n%v\n%+v\nof %q", ferr, fast, serr, slow, src)
	}
}

// The fast paths read every configuration of the tests as the slow ones:
// the examples, the error cases (the same messages, lines and labels),
// and real servers that fastReal leaves to the generic path.
func TestFastPathsSameParse(t *testing.T) {
	files, _ := filepath.Glob("examples/*.toml")
	for _, f := range files {
		src, _ := os.ReadFile(f)
		checkSameParse(t, string(src))
	}
	for _, tc := range errorCases {
		checkSameParse(t, tc.src)
	}
	const head = "[dataplane]\nmode = \"ipvs\"\n[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.3\"\nport = 80\n"
	for _, rs := range []string{
		"address = \"10.0.0.7\"",
		"address = \"10.0.0.7\"\nport = 81",
		"address = \"10.0.0.7\"\nweight = 0",
		"address = \"10.0.0.7\"\nweight = 65536",
		"address = \"10.0.0.7\"\nweight = \"1\"",
		"address = \"10.0.0.3\"",
		"address = \"2001:db8::7\"",
		"address = \"10.0.0.7\"\nport = 0",
		"address = \"10.0.0.7\"\n[virtual_server.real_server.health_check]\ntype = \"none\"",
		"address = \"not an address\"",
		"port = 80",
		"address = \"10.0.0.7\"\nwieght = 2",
	} {
		src := head + "[[virtual_server.real_server]]\naddress = \"10.0.0.7\"\n[[virtual_server.real_server]]\n" + rs + "\n"
		checkSameParse(t, src)
		checkSameParse(t, strings.Replace(src, "mode = \"ipvs\"", "mode = \"ipvs\"\n[[virtual_server]]\nname = \"b\"\naddress = \"10.0.0.4\"\nport = 80\nforward = \"nat\"\n[virtual_server.health_check]\nbindto = \"2001:db8::1\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.9\"\nport = 8080", 1))
	}
	checkSameParse(t, scaleConfig(20, 64, "tcp"))
	// Enough services to be decoded in parts, with problems in each part
	// and in the cross checks (a VIP written twice across parts).
	big := scaleConfig(1200, 3, "tcp")
	for _, r := range []struct{ old, new string }{
		{`address = "10.201.0.5"`, `address = "10.201.0.5x"`},
		{`address = "10.201.10.1"` + "\nport = 8080", `address = "10.201.10.1"` + "\nport = 0"},
		{`name = "s900"`, `name = "s900"` + "\nquorum_up = \"/bin/true\"\nwieght = 1"},
		{`address = "10.200.3.200"`, `address = "10.200.0.1"`},
	} {
		if !strings.Contains(big, r.old) {
			t.Fatalf("no %q in the configuration", r.old)
		}
		big = strings.Replace(big, r.old, r.new, 1)
	}
	checkSameParse(t, big)
	if _, err := Parse("f.toml", []byte(big), fakeEnv{"eth0": nil}); err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Errorf("problems in every part: %v", err)
	}
}

// A table's node is at most 160 bytes (it was 192 with what only arrays
// have), and the elements of arrays of tables keep their values in it
// until the decoder reaches them: a 200,000-line document's tree is held
// whole while it is decoded.
func TestTableNodeSize(t *testing.T) {
	if n := unsafe.Sizeof(lnode{}); n > 160 {
		t.Errorf("lnode is %d bytes, want at most 160", n)
	}
	var b strings.Builder
	for i := range 64 {
		fmt.Fprintf(&b, "[[virtual_server]]\nname = \"s%d\"\n", i)
		for j := range 64 {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.0.%d.%d\"\nport = 8080\n", i, j+1)
		}
	}
	src := b.String()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	root, tree, ok := fastParse(src)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if !ok {
		t.Fatal("fastParse gave up")
	}
	// 4,096 real servers' tables: at most 300 bytes each (a node, an
	// empty map, the boxed address), not 519 with their filled maps.
	if live := after.HeapAlloc - before.HeapAlloc; live > 300*64*64+64*2048 {
		t.Errorf("the tree of 4,096 real servers holds %d bytes (%d a real server)", live, live/4096)
	}
	// The decoder fills them as it reaches them: the same maps as before.
	tree.fillAll()
	var slow map[string]any
	if _, err := toml.Decode(src, &slow); err != nil || !reflect.DeepEqual(root, slow) {
		t.Errorf("filled, the tree differs from BurntSushi's decoding (%v)", err)
	}
}

// TestReleaseDropsArrayTables: releasing a decoded virtual server drops
// its real servers' tables, the array of tables' slice of their maps
// included: that slice held every real server's map (18 MB at 64,000)
// until the whole parse tree went, so that the tree never shrank while
// the virtual servers were decoded.
func TestReleaseDropsArrayTables(t *testing.T) {
	src := "[[virtual_server]]\nport = 80\n" +
		"[[virtual_server.real_server]]\naddress = \"10.0.0.1\"\nport = 1\n" +
		"[[virtual_server.real_server]]\naddress = \"10.0.0.2\"\nport = 2\n"
	_, lines, ok := fastParse(src)
	if !ok {
		t.Fatal("fastParse gave up")
	}
	vs := keyPath{}.key("virtual_server").index(0)
	lines.fillElems(vs.key("real_server"))
	_, _, rs := lines.walk(vs.key("real_server"))
	if rs == nil || rs.arr == nil || len(rs.arr.tables) != 2 || rs.arr.tables[1]["port"] != int64(2) {
		t.Fatalf("the real servers' array of tables before the release: %+v", rs)
	}
	lines.release(vs)
	if rs.arr.tables != nil {
		t.Errorf("after the release the array of tables holds %d maps, want none", len(rs.arr.tables))
	}
	for i, e := range rs.elems() {
		if e.m != nil {
			t.Errorf("after the release real server %d's map is held", i)
		}
	}
	if got := lines.line(vs.key("real_server").index(1)); got != 6 {
		t.Errorf("the second real server's line after the release: %d, want 6", got)
	}
}
