package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// testBinary is a package's test binary built for the VM.
type testBinary struct {
	pkg  Package
	host string // path on the host
	vm   string // path inside the VM
	dir  string // working directory inside the VM (the package's)
	src  string // the package's directory on the host
}

// buildTests compiles each package's vmtest tests into a static binary.
func buildTests(ctx context.Context, root, outDir string, pkgs []Package) ([]testBinary, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command is needed to build the VM's tests: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("build directory: %w", err)
	}
	built := map[string]string{}
	var bins []testBinary
	for _, p := range pkgs {
		rel := path.Clean(strings.TrimPrefix(p.Path, "./"))
		if rel == "." || strings.HasPrefix(rel, "..") || path.IsAbs(rel) {
			return nil, fmt.Errorf("package %q: want a path inside the module, like ./dataplane/ipvs", p.Path)
		}
		name := strings.ReplaceAll(rel, "/", "_") + ".test"
		if _, ok := built[rel]; !ok {
			out := filepath.Join(outDir, name)
			cmd := exec.CommandContext(ctx, goBin, "test", "-c", "-tags", "vmtest", "-o", out, "./"+rel)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
			if b, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("go test -c -tags vmtest ./%s: %w\n%s", rel, err, b)
			}
			if _, err := os.Stat(out); err != nil {
				return nil, fmt.Errorf("package %s has no tests (go test -c wrote no binary)", rel)
			}
			built[rel] = out
		}
		bins = append(bins, testBinary{
			pkg:  p,
			host: built[rel],
			vm:   "/xlb/bin/" + name,
			dir:  "/xlb/src/" + rel,
			src:  filepath.Join(root, filepath.FromSlash(rel)),
		})
	}
	return bins, nil
}

// buildPrograms builds each program statically and returns the files to
// ship.
func buildPrograms(ctx context.Context, root, outDir string, builds []Build) ([]File, error) {
	var files []File
	for i, b := range builds {
		rel := path.Clean(strings.TrimPrefix(b.Path, "./"))
		if rel == "." || strings.HasPrefix(rel, "..") || path.IsAbs(rel) || !path.IsAbs(b.Dst) {
			return nil, fmt.Errorf("build %q -> %q: want a path inside the module and an absolute destination", b.Path, b.Dst)
		}
		out := filepath.Join(outDir, fmt.Sprintf("%d-%s", i, path.Base(rel)))
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", b.Tags, "-o", out, "./"+rel)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./%s: %w\n%s", rel, err, b)
		}
		files = append(files, File{Src: out, Dst: b.Dst, Mode: 0o755})
	}
	return files, nil
}

// image is everything that goes into the initramfs.
type image struct {
	cfg     Config
	kernel  *Kernel
	busybox string
	root    string
	bins    []testBinary
	nonce   string
}

func (img *image) write(dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer f.Close()
	c := newCPIO(f)
	for _, d := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/etc", "/var"} {
		c.Dir(d)
	}
	c.Symlink("/var/run", "/run")
	c.CopyFile("/bin/busybox", img.busybox, 0o755)
	c.File("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))
	c.File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	c.File("/etc/group", 0o644, []byte("root:x:0:\n"))

	if err := img.addModules(c); err != nil {
		return err
	}
	for _, b := range img.cfg.HostBinaries {
		if err := addHostBinary(c, b); err != nil {
			return err
		}
	}
	for _, fl := range img.cfg.Files {
		if !path.IsAbs(fl.Dst) {
			return fmt.Errorf("file %s: destination %q is not absolute", fl.Src, fl.Dst)
		}
		c.CopyFile(fl.Dst, fl.Src, fl.Mode)
	}
	for _, b := range img.bins {
		if !c.Has(b.vm) {
			c.CopyFile(b.vm, b.host, 0o755)
			if err := addTree(c, filepath.Join(b.src, "testdata"), b.dir+"/testdata"); err != nil {
				return err
			}
		}
		c.Dir(b.dir)
	}
	c.File("/init", 0o755, []byte(img.initScript()))
	if err := c.Close(); err != nil {
		return err
	}
	return f.Close()
}

// addModules ships the wanted modules and their dependencies, with a
// modules.dep and modules.alias for busybox's modprobe.
func (img *image) addModules(c *cpioWriter) error {
	ms, err := readModuleSet(img.kernel.ModulesDir)
	if err != nil {
		return err
	}
	wanted := ms.available(append(append([]string(nil), img.cfg.Modules...), img.cfg.Preload...))
	mods, err := ms.resolve(wanted)
	if err != nil {
		return err
	}
	base := "/lib/modules/" + img.kernel.Release
	for _, m := range mods {
		c.File(base+"/"+m.rel, 0o644, m.data)
	}
	c.File(base+"/modules.dep", 0o644, modulesDep(mods))
	c.File(base+"/modules.alias", 0o644, modulesAlias(mods))
	for _, f := range []string{"modules.builtin", "modules.order"} {
		if _, err := os.Stat(filepath.Join(img.kernel.ModulesDir, f)); err == nil {
			c.CopyFile(base+"/"+f, filepath.Join(img.kernel.ModulesDir, f), 0o644)
		}
	}
	return nil
}

// addHostBinary ships a host program at its host path with the shared
// libraries and the loader ldd names, at the paths ldd names.
func addHostBinary(c *cpioWriter, name string) error {
	p, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("host binary %s: %w", name, err)
	}
	p, err = filepath.Abs(p)
	if err != nil {
		return fmt.Errorf("host binary %s: %w", name, err)
	}
	if !c.Has(p) {
		c.CopyFile(p, p, 0)
	}
	out, err := exec.Command("ldd", p).Output()
	if err != nil {
		return nil // static: ldd says "not a dynamic executable" and fails
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0] // the loader
		default:
			continue // linux-vdso
		}
		if !c.Has(lib) {
			c.CopyFile(lib, lib, 0o755)
		}
	}
	return nil
}

// addTree copies a host directory, if it exists, into the archive.
func addTree(c *cpioWriter, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return nil
	}
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case info.IsDir():
			c.Dir(target)
		case info.Mode().IsRegular():
			c.CopyFile(target, p, 0)
		}
		return nil
	})
}

// Console markers: /init prints them, prefixed by "XLBVM:<nonce>:" so that
// test output cannot fake them.
const (
	markBooted = "booted"
	markBegin  = "begin"
	markEnd    = "end"
	markDone   = "done"
	markError  = "error"
)

// initScript is /init: mount the pseudo file systems, load the preloaded
// modules, run each test binary in its package directory, and report the
// result through isa-debug-exit (qemu exits with (code<<1)|1).
func (img *image) initScript() string {
	m := "XLBVM:" + img.nonce + ":"
	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp %s=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mkdir -p /run/netns
hostname xlbvm
ip link set lo up
result() {
	printf "\\$(printf %%03o "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	echo "%s%s debug-exit failed"
	poweroff -f
}
for m in %s; do
	modprobe "$m" || { echo "%s%s modprobe $m"; result 2; }
done
echo "%s%s $(cut -d' ' -f1 /proc/uptime)"
rc=0
`, GuestEnv, m, markError, strings.Join(img.cfg.Preload, " "), m, markError, m, markBooted)
	for i, t := range img.bins {
		args := []string{t.vm, "-test.v", "-test.timeout", t.pkg.Timeout.Round(time.Second).String()}
		if t.pkg.Run != "" {
			args = append(args, "-test.run", t.pkg.Run)
		}
		args = append(args, t.pkg.Args...)
		fmt.Fprintf(&b, "cd %s\necho \"%s%s %d\"\n%s\nr=$?\necho\necho \"%s%s %d $r\"\n[ $r = 0 ] || rc=1\n",
			shellQuote(t.dir), m, markBegin, i, shellJoin(args), m, markEnd, i)
	}
	fmt.Fprintf(&b, "cd /\necho \"%s%s $rc\"\nresult $rc\n", m, markDone)
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
