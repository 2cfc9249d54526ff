package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Kernel is an extracted Debian kernel package.
type Kernel struct {
	Package string // e.g. linux-image-6.1.0-56-amd64
	Version string // the package's version, e.g. 6.1.192-2
	Release string // uname -r, e.g. 6.1.0-56-amd64
	Vmlinuz string
	// ModulesDir is lib/modules/<release> of the extracted package.
	ModulesDir string
}

func (k *Kernel) String() string { return k.Package + " " + k.Version }

// cache is the directory of fetched packages, locked while in use so that
// concurrent runs do not extract into each other.
type cache struct {
	dir  string
	logf func(string, ...any)
	lock *os.File
}

func openCache(dir string, logf func(string, ...any)) (*cache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "pkgs"), 0o755); err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return &cache{dir: dir, logf: logf, lock: f}, nil
}

// close releases the lock; it may be called more than once.
func (c *cache) close() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// kernel returns the current linux-image-amd64 kernel, fetched if needed.
func (c *cache) kernel(ctx context.Context) (*Kernel, error) {
	dir, pkg, ver, err := c.fetch(ctx, "linux-image-", kernelPackage)
	if err != nil {
		return nil, err
	}
	vmlinuz, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) != 1 {
		return nil, fmt.Errorf("%s: want one boot/vmlinuz-*, found %d", dir, len(vmlinuz))
	}
	k := &Kernel{
		Package: pkg,
		Version: ver,
		Release: strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-"),
		Vmlinuz: vmlinuz[0],
	}
	for _, base := range []string{"lib/modules", "usr/lib/modules"} {
		d := filepath.Join(dir, base, k.Release)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			k.ModulesDir = d
			break
		}
	}
	if k.ModulesDir == "" {
		return nil, fmt.Errorf("%s: no modules directory for %s", dir, k.Release)
	}
	return k, nil
}

// busybox returns the path of the static busybox binary, fetched if needed.
func (c *cache) busybox(ctx context.Context) (string, error) {
	dir, _, _, err := c.fetch(ctx, "busybox-static_", func(context.Context) (string, error) {
		return "busybox-static", nil
	})
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "bin", "busybox")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("busybox-static package without bin/busybox: %w", err)
	}
	return p, nil
}

// fetch resolves a package and its candidate version, and returns the
// directory it is extracted in, downloading it first when the cache does
// not have that version. Stale apt lists (a package the archive no longer
// has) get one apt-get update. Without apt (offline), the newest cached
// version of the family is used. Older versions of the family are removed.
func (c *cache) fetch(ctx context.Context, family string, name func(context.Context) (string, error)) (dir, pkg, ver string, err error) {
	resolve := func() (string, string, error) {
		pkg, err := name(ctx)
		if err != nil {
			return "", "", err
		}
		ver, err := candidate(ctx, pkg)
		return pkg, ver, err
	}
	pkg, ver, err = resolve()
	if err != nil {
		if uerr := aptUpdate(ctx, c.logf); uerr == nil {
			pkg, ver, err = resolve()
		}
	}
	if err != nil {
		if d := c.newest(family); d != "" {
			c.logf("vm: %v; using the cached %s", err, filepath.Base(d))
			pkg, ver, _ = strings.Cut(filepath.Base(d), "_")
			return d, pkg, strings.ReplaceAll(ver, "%3a", ":"), nil
		}
		return "", "", "", err
	}
	dir = filepath.Join(c.dir, "pkgs", pkg+"_"+strings.ReplaceAll(ver, ":", "%3a"))
	if complete(dir) {
		return dir, pkg, ver, nil
	}
	if err := c.download(ctx, pkg, ver, dir); err != nil {
		c.logf("vm: %v; updating the apt lists and trying again", err)
		if uerr := aptUpdate(ctx, c.logf); uerr != nil {
			return "", "", "", errors.Join(err, uerr)
		}
		if err := c.download(ctx, pkg, ver, dir); err != nil {
			return "", "", "", err
		}
	}
	c.prune(family, dir)
	return dir, pkg, ver, nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".complete"))
	return err == nil
}

// download fetches pkg=ver with apt-get download and extracts it into dir.
func (c *cache) download(ctx context.Context, pkg, ver, dir string) error {
	tmp, err := os.MkdirTemp(filepath.Join(c.dir, "pkgs"), ".dl-")
	if err != nil {
		return fmt.Errorf("download directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	c.logf("vm: apt-get download %s=%s", pkg, ver)
	args := []string{"download", "-q"}
	if os.Geteuid() == 0 {
		// apt drops to the _apt user, which cannot write the root-owned
		// download directory; stay root rather than warn.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	if _, err := run(ctx, tmp, "apt-get", append(args, pkg+"="+ver)...); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: want one .deb, found %d", pkg, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if _, err := run(ctx, "", "dpkg-deb", "-x", debs[0], x); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(x, ".complete"), []byte(pkg+" "+ver+"\n"), 0o644); err != nil {
		return fmt.Errorf("mark %s complete: %w", pkg, err)
	}
	_ = os.RemoveAll(dir) // an incomplete earlier attempt
	if err := os.Rename(x, dir); err != nil {
		return fmt.Errorf("move %s into the cache: %w", pkg, err)
	}
	return nil
}

// newest returns the most recently fetched complete directory of family.
func (c *cache) newest(family string) string {
	dirs, _ := filepath.Glob(filepath.Join(c.dir, "pkgs", family+"*"))
	var ok []string
	for _, d := range dirs {
		if complete(d) {
			ok = append(ok, d)
		}
	}
	sort.Slice(ok, func(i, j int) bool { return mtime(ok[i]) > mtime(ok[j]) })
	if len(ok) == 0 {
		return ""
	}
	return ok[0]
}

func mtime(p string) int64 {
	st, err := os.Stat(filepath.Join(p, ".complete"))
	if err != nil {
		return 0
	}
	return st.ModTime().UnixNano()
}

// prune removes the family's other versions: the archive keeps only the
// newest kernel ABI, and so does the cache.
func (c *cache) prune(family, keep string) {
	dirs, _ := filepath.Glob(filepath.Join(c.dir, "pkgs", family+"*"))
	for _, d := range dirs {
		if d != keep {
			c.logf("vm: removing the superseded %s from the cache", filepath.Base(d))
			_ = os.RemoveAll(d)
		}
	}
}

// kernelPackage resolves linux-image-amd64 to the versioned package it
// depends on, e.g. linux-image-6.1.0-56-amd64.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.TrimPrefix(f[0], "|") == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("apt-cache depends linux-image-amd64 names no linux-image package: %q", out)
}

// candidate returns the version apt would install of pkg.
func candidate(ctx context.Context, pkg string) (string, error) {
	out, err := run(ctx, "", "apt-cache", "policy", pkg)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "" || v == "(none)" {
				break
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("apt knows no candidate version of %s (apt lists missing?)", pkg)
}

func aptUpdate(ctx context.Context, logf func(string, ...any)) error {
	if os.Geteuid() != 0 {
		return errors.New("the apt lists may be stale and only root can run apt-get update")
	}
	logf("vm: apt-get update")
	_, err := run(ctx, "", "apt-get", "update", "-q")
	return err
}

// run runs a command and returns its standard output; the error carries
// its standard error.
func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}
