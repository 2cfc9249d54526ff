package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Package is a Go package whose vmtest tests run inside the VM.
type Package struct {
	// Path is the package path relative to the module root, e.g.
	// "./dataplane/ipvs".
	Path string
	// Run is the -test.run pattern; empty runs every test.
	Run string
	// Args are more arguments for the test binary.
	Args []string
	// Timeout is the binary's -test.timeout; zero: 5 minutes.
	Timeout time.Duration
}

// Name is how results name the package: its path and run pattern.
func (p Package) Name() string {
	n := strings.TrimPrefix(p.Path, "./")
	if p.Run != "" {
		n += " -run " + p.Run
	}
	return n
}

// File is a host file copied into the VM.
type File struct {
	Src string // host path; relative: to the module root
	Dst string // absolute path inside the VM
	// Mode is the file's mode inside; zero: Src's.
	Mode fs.FileMode
}

// Build is a Go program built for the VM (static, CGO_ENABLED=0) and
// shipped at Dst, e.g. {Path: "./cmd/xlb", Dst: "/usr/sbin/xlb"}.
type Build struct {
	Path string // package path relative to the module root
	Dst  string // absolute path inside the VM
	Tags string // build tags (go build -tags), if any
}

// DefaultModules are the kernel modules shipped (with their dependencies)
// when Config.Modules is nil: IPVS and its schedulers (ip_vs_twos, from
// Linux 6.2, when the kernel has it), conntrack, veth, bridge, IPIP and FOU
// tunnels.
var DefaultModules = []string{
	"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_sh", "ip_vs_mh",
	"ip_vs_sed", "ip_vs_nq", "ip_vs_fo", "ip_vs_ovf", "ip_vs_twos?", "ip_vs_dh", "ip_vs_lblc", "ip_vs_lblcr",
	"nf_conntrack", "veth", "bridge", "ipip", "tunnel4", "ip_tunnel", "fou",
}

// DefaultPreload are loaded by /init before the tests when Config.Preload
// is nil. IPVS is not among them: the dataplane loads it as it would on a
// real host, and the kernel loads schedulers on demand.
var DefaultPreload = []string{"veth", "bridge", "ipip"}

// Config says what to build, ship and run.
type Config struct {
	Packages []Package
	Files    []File
	Builds   []Build
	// HostBinaries are host programs shipped at their host path with the
	// shared libraries ldd lists; nil: {"ip"}.
	HostBinaries []string
	// Modules to ship with their dependencies; nil: DefaultModules. A
	// name ending in "?" is shipped when the kernel has it, and left out
	// otherwise (a module of later kernels: its tests see it missing).
	Modules []string
	// Preload are modprobed by /init before the tests; nil: DefaultPreload.
	Preload []string
	// MemoryMB is the VM's memory; zero: 1024.
	MemoryMB int
	// CPUs is the VM's processor count; zero: 2.
	CPUs int
	// Timeout bounds the boot plus every test binary; zero: 2 minutes
	// plus every package's timeout.
	Timeout time.Duration
	// CacheDir keeps the fetched packages and the accelerator probe; empty:
	// CacheDir().
	CacheDir string
	// Accel is "kvm" or "tcg"; empty: $XLB_VM_ACCEL, else kvm if a probe
	// boot with kvm works on this machine (the answer is cached), else tcg.
	Accel string
	// Console, when set, gets the VM's console as it comes (with
	// XLB_VM_CONSOLE=1 it defaults to stderr).
	Console io.Writer
	// Logf reports progress and timings; nil: discarded.
	Logf func(format string, args ...any)
}

// PackageResult is the outcome of one package's test binary.
type PackageResult struct {
	Package  Package
	ExitCode int
	// Output is what the binary printed (with -test.v), from the console.
	Output   string
	Duration time.Duration
}

// Passed reports whether the binary exited 0.
func (r PackageResult) Passed() bool { return r.ExitCode == 0 }

// Result is the outcome of a VM run that produced a result.
type Result struct {
	Packages []PackageResult
	// Kernel is the booted kernel package, e.g. linux-image-6.1.0-56-amd64
	// 6.1.192-2.
	Kernel string
	Accel  string
	// Console is everything the VM printed on its serial console.
	Console string
	// Prepare is the time to fetch, build and pack; Boot the time from
	// starting qemu to /init being ready; Tests the time of the test
	// binaries together.
	Prepare, Boot, Tests time.Duration
}

// Passed reports whether every package passed.
func (r *Result) Passed() bool {
	for _, p := range r.Packages {
		if !p.Passed() {
			return false
		}
	}
	return true
}

// Timing is a one-line summary of the run's times.
func (r *Result) Timing() string {
	return fmt.Sprintf("prepare %v, boot %v (%s), tests %v", r.Prepare.Round(time.Millisecond),
		r.Boot.Round(time.Millisecond), r.Accel, r.Tests.Round(time.Millisecond))
}

// Error is returned by Run when the VM produced no result (it powered off,
// panicked, timed out or could not start); Console has what it printed.
type Error struct {
	Err     error
	Console string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Run fetches and builds what cfg asks for, boots the VM and runs the
// packages' tests inside. It returns a Result when the VM reported one,
// whether the tests passed or not, and an error (an *Error once qemu has
// started) when it did not.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("the test VM is x86_64 only (host is %s)", runtime.GOARCH)
	}
	if len(cfg.Packages) == 0 {
		return nil, errors.New("no packages to run")
	}
	cfg.setDefaults()
	cfg.Files = slices.Clone(cfg.Files)
	start := time.Now()

	cache, err := openCache(cfg.CacheDir, cfg.Logf)
	if err != nil {
		return nil, err
	}
	defer cache.close()
	kernel, err := cache.kernel(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch kernel: %w", err)
	}
	busybox, err := cache.busybox(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch busybox: %w", err)
	}
	accel, err := cache.accel(ctx, cfg.Accel, kernel, busybox)
	if err != nil {
		return nil, err
	}
	cache.close() // the rest uses no shared state

	work, err := os.MkdirTemp("", "xlb-vm-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(work)

	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	bins, err := buildTests(ctx, root, filepath.Join(work, "bin"), cfg.Packages)
	if err != nil {
		return nil, err
	}
	progs, err := buildPrograms(ctx, root, filepath.Join(work, "prog"), cfg.Builds)
	if err != nil {
		return nil, err
	}
	for i, f := range cfg.Files {
		if !filepath.IsAbs(f.Src) {
			cfg.Files[i].Src = filepath.Join(root, f.Src)
		}
	}
	cfg.Files = append(progs, cfg.Files...)
	cfg.Logf("vm: built %d test binaries and %d programs in %v", len(bins), len(progs), time.Since(t0).Round(time.Millisecond))

	nonce := make([]byte, 6)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	img := &image{
		cfg:     cfg,
		kernel:  kernel,
		busybox: busybox,
		root:    root,
		bins:    bins,
		nonce:   hex.EncodeToString(nonce),
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := img.write(initrd); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	if st, err := os.Stat(initrd); err == nil {
		cfg.Logf("vm: initramfs %.1f MiB, kernel %s, accel %s", float64(st.Size())/(1<<20), kernel, accel)
	}

	prepared := time.Since(start)
	res, err := boot(ctx, bootSpec{
		cfg:    cfg,
		kernel: kernel,
		initrd: initrd,
		accel:  accel,
		nonce:  img.nonce,
	})
	if res != nil {
		res.Prepare = prepared
	}
	return res, err
}

func (cfg *Config) setDefaults() {
	if cfg.HostBinaries == nil {
		cfg.HostBinaries = []string{"ip"}
	}
	if cfg.Modules == nil {
		cfg.Modules = DefaultModules
	}
	if cfg.Preload == nil {
		cfg.Preload = DefaultPreload
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	for i := range cfg.Packages {
		if cfg.Packages[i].Timeout == 0 {
			cfg.Packages[i].Timeout = 5 * time.Minute
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
		for _, p := range cfg.Packages {
			cfg.Timeout += p.Timeout
		}
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = CacheDir()
	}
	if cfg.Accel == "" {
		cfg.Accel = os.Getenv("XLB_VM_ACCEL")
	}
	if cfg.Console == nil && os.Getenv("XLB_VM_CONSOLE") == "1" {
		cfg.Console = os.Stderr
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
}

// CacheDir is where fetched packages are kept between runs: $XLB_VM_CACHE,
// else $XDG_CACHE_HOME/xlb-vm, else /var/cache/xlb-vm for root, else the
// user's cache directory.
func CacheDir() string {
	if d := os.Getenv("XLB_VM_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "xlb-vm")
	}
	if os.Geteuid() == 0 {
		return "/var/cache/xlb-vm"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "xlb-vm")
	}
	return filepath.Join(os.TempDir(), "xlb-vm-cache")
}

// GuestEnv is set to 1 in the environment of the tests /init runs.
const GuestEnv = "XLB_VM_GUEST"

// RequireGuest fails the test unless it runs inside the test VM: vmtest
// tests change the kernel's IPVS tables and need its modules, so they must
// not run on a host by accident (go test -tags vmtest).
func RequireGuest(t testing.TB) {
	t.Helper()
	if os.Getenv(GuestEnv) != "1" {
		t.Fatal("this test runs inside the test VM: run it through go test ./test/vm (make test-vm)")
	}
}

// moduleRoot finds the directory holding go.mod, from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
