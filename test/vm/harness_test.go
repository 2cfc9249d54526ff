//go:build !vmtest

package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The archive must unpack with another implementation: GNU cpio.
func TestCPIOUnpacks(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Fatal("cpio (a CI package) is needed to check the archive format")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("hello\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.File("/a/b/c.txt", 0o644, []byte("odd length"))
	c.File("/a/empty", 0o600, nil)
	c.CopyFile("/bin/tool", src, 0)
	c.Symlink("/var/run", "/run")
	c.Dir("/run/netns")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir, cmd.Stdin = out, &buf
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, b)
	}
	for name, want := range map[string]string{"a/b/c.txt": "odd length", "a/empty": "", "bin/tool": "hello\n"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", name, b, err, want)
		}
	}
	if st, err := os.Stat(filepath.Join(out, "bin/tool")); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("bin/tool mode: %v %v, want 0750", st.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(out, "var/run")); err != nil || l != "/run" {
		t.Errorf("var/run -> %q %v", l, err)
	}
	if st, err := os.Stat(filepath.Join(out, "run/netns")); err != nil || !st.IsDir() {
		t.Errorf("run/netns: %v", err)
	}

	c = newCPIO(&bytes.Buffer{})
	c.File("/x", 0o644, nil)
	c.File("/x", 0o644, nil)
	if err := c.Close(); err == nil || !strings.Contains(err.Error(), "added twice") {
		t.Errorf("a path added twice: %v", err)
	}
}

// An optional module ("ip_vs_twos?") is shipped when the kernel has it.
func TestOptionalModules(t *testing.T) {
	ms := &moduleSet{paths: map[string]string{"ip_vs": "kernel/net/netfilter/ipvs/ip_vs.ko",
		"ip_vs_twos": "kernel/net/netfilter/ipvs/ip_vs_twos.ko"}, builtin: map[string]bool{"veth": true}}
	got := ms.available([]string{"ip_vs", "ip_vs_twos?", "ip_vs_xyz?", "veth?", "bridge"})
	if want := []string{"ip_vs", "ip_vs_twos", "veth", "bridge"}; !slices.Equal(got, want) {
		t.Errorf("available: %v, want %v", got, want)
	}
}

// modules.dep lists a module's dependencies transitively, the last to load
// first, as depmod writes it.
func TestModulesDep(t *testing.T) {
	mods := []*module{ // in load order
		{name: "libcrc32c", rel: "kernel/lib/libcrc32c.ko"},
		{name: "nf_defrag_ipv4", rel: "kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko"},
		{name: "nf_conntrack", rel: "kernel/net/netfilter/nf_conntrack.ko", deps: []string{"nf_defrag_ipv4", "libcrc32c"}},
		{name: "ip_vs", rel: "kernel/net/netfilter/ipvs/ip_vs.ko", deps: []string{"nf_conntrack", "libcrc32c"}, aliases: []string{"net-pf-16-proto-16-family-IPVS"}},
		{name: "ip_vs_rr", rel: "kernel/net/netfilter/ipvs/ip_vs_rr.ko", deps: []string{"ip_vs"}},
	}
	want := `kernel/lib/libcrc32c.ko:
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko:
kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs_rr.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
`
	if got := string(modulesDep(mods)); got != want {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", got, want)
	}
	if got := string(modulesAlias(mods)); got != "alias net-pf-16-proto-16-family-IPVS ip_vs\n" {
		t.Errorf("modules.alias: %q", got)
	}
	if m := pickAlias([]string{"crc32c_intel", "crc32c_generic"}); m != "crc32c_generic" {
		t.Errorf("pickAlias chose %s for crc32c, want the generic module", m)
	}
	if m := pickAlias([]string{"b", "a"}); m != "a" {
		t.Errorf("pickAlias chose %s, want the first by name", m)
	}
	if n := modName("kernel/drivers/net/ip-vs_x.ko.xz"); n != "ip_vs_x" {
		t.Errorf("modName = %q", n)
	}
}

func TestConsoleMarkers(t *testing.T) {
	c := newConsole("abc", nil)
	for _, l := range []string{
		"[    1.0] kernel noise",
		"XLBVM:abc:booted 1.5",
		"XLBVM:abc:begin 0",
		"=== RUN   TestX",
		"XLBVM:zzz:end 0 0", // another run's marker is output
		"XLBVM:abc:end 0 1",
		"XLBVM:abc:begin 1",
		"ok",
		"XLBVM:abc:end 1 0",
		"XLBVM:abc:done 1",
	} {
		c.line(l)
	}
	if c.done != 1 || c.rcs[0] != 1 || c.rcs[1] != 0 || c.booted <= 0 {
		t.Errorf("done %d rcs %v booted %v", c.done, c.rcs, c.booted)
	}
	if got := c.out[0].String(); got != "=== RUN   TestX\nXLBVM:zzz:end 0 0\n" {
		t.Errorf("package 0 output %q", got)
	}
}

func TestInitScriptQuotes(t *testing.T) {
	img := &image{
		cfg:   Config{Preload: []string{"veth"}},
		nonce: "n",
		bins: []testBinary{{
			pkg: Package{Path: "./x", Run: "Test'A|B", Args: []string{"-x=$HOME"}, Timeout: time.Minute},
			vm:  "/xlb/bin/x.test", dir: "/xlb/src/x",
		}},
	}
	s := img.initScript()
	for _, want := range []string{
		`'/xlb/bin/x.test' '-test.v' '-test.timeout' '1m0s' '-test.run' 'Test'\''A|B' '-x=$HOME'`,
		"for m in veth; do",
		`echo "XLBVM:n:done $rc"`,
		"XLB_VM_GUEST=1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("/init lacks %q:\n%s", want, s)
		}
	}
	// The script must at least parse.
	f := filepath.Join(t.TempDir(), "init")
	os.WriteFile(f, []byte(s), 0o755)
	if b, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
		t.Errorf("sh -n /init: %v: %s", err, b)
	}
}

// A VM that stops without a result, or does not give one in time, is an
// error, with the console.
func TestVMWithoutResult(t *testing.T) {
	ctx := context.Background()
	_, err := Run(ctx, Config{
		Packages: []Package{{Path: "./test/vm", Args: []string{"-xlb.poweroff"}}},
		Logf:     t.Logf,
	})
	var verr *Error
	if !errors.As(err, &verr) || !strings.Contains(err.Error(), "without a result") {
		t.Fatalf("a VM that powered off: %v, want an *Error saying it stopped without a result", err)
	}
	if !strings.Contains(verr.Console, "powering off now") {
		t.Errorf("the console lacks the guest's last words:\n%s", verr.Console)
	}

	_, err = Run(ctx, Config{Packages: []Package{{Path: "./test/vm"}}, Timeout: time.Second, Logf: t.Logf})
	if !errors.As(err, &verr) || !strings.Contains(err.Error(), "no result within 1s") {
		t.Fatalf("a VM out of time: %v, want an *Error saying it gave no result in time", err)
	}
}
