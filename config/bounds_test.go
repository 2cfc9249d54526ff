package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// measure runs f and returns how long it took and how much it allocated.
func measure(f func()) (time.Duration, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return took, after.TotalAlloc - before.TotalAlloc
}

func wantOnly(t *testing.T, err error, want string) {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) || err.Error() != want {
		t.Errorf("got error %T:\n%.300v\nwant:\n%s", err, err, want)
	}
}

func TestFileSizeBound(t *testing.T) {
	_, err := Parse("t.toml", make([]byte, MaxFileSize+1), nil)
	wantOnly(t, err, "t.toml: larger than 32 MiB, the most xlb reads")

	// A file at the bound is read (and found to be something else).
	path := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(path, []byte(strings.Repeat("#", MaxFileSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, nil); err == nil || strings.Contains(err.Error(), "larger than") {
		t.Errorf("a file of MaxFileSize bytes: %.200v", err)
	}
}

// A file is read into one buffer of its size: no doubling from 512 bytes
// (io.ReadAll allocated 2.5 times the file), no second copy as a string.
func TestLoadReadsFileOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "comments.toml")
	const size = 8 << 20
	if err := os.WriteFile(path, []byte(strings.Repeat("# a comment of a line\n", size/22)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var data []byte
	_, alloc := measure(func() { data, err = readAll(f) })
	if err != nil || len(data) != size/22*22 {
		t.Fatalf("readAll: %d bytes, %v", len(data), err)
	}
	if alloc > size+size/8 {
		t.Errorf("reading %d MB allocated %.1f MB", size>>20, float64(alloc)/(1<<20))
	}
	// A document of comments only is read whole (and refused for what it
	// lacks, not for what it holds).
	var errs *Errors
	_, alloc = measure(func() { _, err = Load(path, nil) })
	if !errors.As(err, &errs) || alloc > size+size/4 {
		t.Errorf("loading %d MB of comments allocated %.1f MB (%v)", size>>20, float64(alloc)/(1<<20), err)
	}
}

// Reading stops at the bound whatever the file is: /dev/zero and a FIFO
// that never ends.
func TestLoadStopsAtBound(t *testing.T) {
	took, alloc := measure(func() {
		_, err := Load("/dev/zero", nil)
		wantOnly(t, err, "/dev/zero: larger than 32 MiB, the most xlb reads")
	})
	if alloc > 4*MaxFileSize {
		t.Errorf("reading /dev/zero allocated %d MB", alloc>>20)
	}
	t.Logf("/dev/zero: %v, %d MB allocated", took, alloc>>20)

	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			writerDone <- err
			return
		}
		defer f.Close()
		chunk := []byte(strings.Repeat("# endless\n", 1<<14))
		for {
			if _, err := f.Write(chunk); err != nil {
				writerDone <- nil // the reader closed its end: EPIPE
				return
			}
		}
	}()
	_, err := Load(fifo, nil)
	wantOnly(t, err, fifo+": larger than 32 MiB, the most xlb reads")
	select {
	case err := <-writerDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the FIFO's writer was not stopped by the reader closing")
	}
}

// The nesting is bounded before the TOML decoder sees the document: 10,000
// levels (20 KB, which once took 2 GiB) cost little time and memory.
func TestDepthBound(t *testing.T) {
	const n = 10000
	for _, tc := range []struct {
		name string
		src  string
		line int
	}{
		{"arrays", "[global]\nx = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n", 2},
		{"inline tables", "x = " + strings.Repeat("{ a = ", n) + "1" + strings.Repeat(" }", n) + "\n", 1},
		{"dotted key", "# c\n\n" + strings.Repeat("a.", n) + "b = 1\n", 3},
		{"table header", "[" + strings.Repeat("a.", n) + "b]\n", 1},
		{"array of tables header", "[[" + strings.Repeat("a.", n) + "b]]\n", 1},
		{"mixed", "[a.b]\nc.d = [{ e = [[{ f = " + strings.Repeat("[", n) + strings.Repeat("]", n) + " }]] }]\n", 2},
		{"arrays over lines", "x = [\n" + strings.Repeat("[\n", n) + strings.Repeat("]\n", n) + "]\n", 33},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			took, alloc := measure(func() { _, err = Parse("t.toml", []byte(tc.src), nil) })
			wantOnly(t, err, fmt.Sprintf("t.toml:%d: nested deeper than 32 levels (tables, dotted keys, arrays and inline tables)", tc.line))
			if took > 2*time.Second || alloc > 16<<20 {
				t.Errorf("%d levels: %v, %d MB allocated", n, took, alloc>>20)
			}
		})
	}

	// MaxDepth itself is fine: the deepest path of x = [[...]] with 32
	// brackets is x[0]...[0] with 31 indices.
	src := "x = " + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + "\n"
	if _, err := Parse("t.toml", []byte(src), nil); err == nil || strings.Contains(err.Error(), "nested") {
		t.Errorf("%d levels: %v", MaxDepth, err)
	}
	src = "x = " + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + "\n"
	if _, err := Parse("t.toml", []byte(src), nil); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Errorf("%d levels: %v", MaxDepth+1, err)
	}
}

// Every string has a length limit by kind; the message quotes the start of
// the value only.
func TestStringBounds(t *testing.T) {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("a", n-len(prefix)) }
	huge := long("", 1<<20)
	for _, tc := range []struct {
		key, value, want string
	}{
		{"[global]\nrouter_id", long("", 30<<20), `[global]: router_id: name "` + huge[:64] + `"... is longer than 128 bytes`},
		{"[global]\nrouter_id", long("", 129), `[global]: router_id: name "` + huge[:64] + `"... is longer than 128 bytes`},
		{"[dataplane]\ninterfaces = [\"eth0\"]\npin_path", long("/", 4096), `[dataplane]: pin_path: path "/` + huge[:63] + `"... is longer than 4095 bytes`},
		{"[control]\nsocket", long("/run/", 108), `[control]: socket: path "/run/` + huge[:59] + `"... is longer than 107 bytes`},
		{"[dataplane]\nmode", huge, `[dataplane]: mode: value "` + huge[:64] + `"... is longer than 64 bytes`},
		{"[dataplane]\ntcp_timeout", huge, `[dataplane]: tcp_timeout: duration "` + huge[:64] + `"... is longer than 64 bytes`},
		{"[[vrrp_script]]\nname = \"s\"\nscript", long("/bin/", 4097), `vrrp_script "s": script: command "/bin/` + huge[:59] + `"... is longer than 4096 bytes`},
		{"[[virtual_server]]\nname = \"a\"\nport = 1\naddress", huge, `virtual_server "a": address: address "` + huge[:64] + `"... is longer than 64 bytes`},
		{"[[vrrp_instance]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress", `["` + huge + `"]`,
			`vrrp_instance "v": virtual_ipaddress: entry "` + huge[:64] + `"... is longer than 256 bytes`},
		{"[[vrrp_instance]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"10.0.0.1\"]\nauth_pass", long("", 65),
			`vrrp_instance "v": auth_pass: string "` + huge[:64] + `"... is longer than 64 bytes`},
		{"[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 1\n[virtual_server.health_check]\ntype = \"http\"\nhost", long("", 254),
			`virtual_server "a": health_check: host: string "` + huge[:64] + `"... is longer than 253 bytes`},
		{"[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 1\nprotocol", `1`, `virtual_server "a": protocol: want a string, got integer 1`},
		{"[[virtual_server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport", `"` + huge + `"`, `virtual_server "a": port: want an integer, got string "` + huge[:64] + `"...`},
		{`"` + huge + `"`, `1`, `[dataplane]: unknown key "` + huge[:64] + `"...`},
	} {
		value := tc.value
		if !strings.HasPrefix(value, "[") && !strings.HasPrefix(value, `"`) && value != "1" {
			value = `"` + value + `"`
		}
		src := "[dataplane]\nmode = \"ipvs\"\n" + tc.key + " = " + value + "\n"
		if strings.HasPrefix(tc.key, "[dataplane]") {
			src = tc.key + " = " + value + "\n"
		}
		_, err := Parse("t.toml", []byte(src), nil)
		var errs *Errors
		if !errors.As(err, &errs) {
			t.Fatalf("%.40s: got %.300v", tc.key, err)
		}
		// The key is on the last line of tc.key.
		line := strings.Count(src[:strings.Index(src, tc.key)+len(tc.key)], "\n") + 1
		want := fmt.Sprintf("t.toml:%d: %s", line, tc.want)
		found := false
		for _, e := range errs.List {
			found = found || e.Error() == want
			if len(e.Msg) > 300 {
				t.Errorf("message of %d bytes: %.300s", len(e.Msg), e.Msg)
			}
		}
		if !found {
			t.Errorf("%.40s: want\n%.300s\ngot\n%.2000v", tc.key, want, err)
		}
	}
}

// Problems are bounded: the first maxErrors by line, then a count.
func TestProblemsBound(t *testing.T) {
	src := "[dataplane]\nmode = \"ipvs\"\n" + strings.Repeat("[[vrrp_script]]\n", 1500)
	_, err := Parse("t.toml", []byte(src), nil)
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) != maxErrors+1 {
		t.Fatalf("got %d problems", len(errs.List))
	}
	for i, e := range errs.List[:maxErrors] {
		want := fmt.Sprintf("t.toml:%d: vrrp_script #%d: name: required", 3+i/2, 1+i/2)
		if i%2 == 1 {
			want = fmt.Sprintf("t.toml:%d: vrrp_script #%d: script: required", 3+i/2, 1+i/2)
		}
		if e.Error() != want {
			t.Fatalf("problem %d: %s, want %s", i, e, want)
		}
	}
	if got := errs.List[maxErrors].Error(); got != "t.toml: and 2000 more problems" {
		t.Errorf("last: %s", got)
	}
}
