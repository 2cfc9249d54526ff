package vm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

type bootSpec struct {
	cfg    Config
	kernel *Kernel
	initrd string
	accel  string
	nonce  string
}

// qemuArgs are the arguments of a VM with no devices but a serial console
// on stdio and the isa-debug-exit port.
func qemuArgs(accel string, memMB, cpus int, kernel, initrd string) []string {
	return []string{
		"-accel", accel,
		"-m", strconv.Itoa(memMB),
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-reboot",
		"-display", "none", "-vga", "none", "-monitor", "none",
		"-serial", "stdio",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", kernel,
		"-initrd", initrd,
		// panic=-1: a kernel panic (or /init exiting) ends qemu at once,
		// without a result.
		"-append", "console=ttyS0 panic=-1 loglevel=4 mitigations=off rdinit=/init",
	}
}

// console collects the VM's serial output line by line, noting when each
// marker line arrives.
type console struct {
	prefix string
	start  time.Time
	live   io.Writer

	mu     sync.Mutex
	all    strings.Builder
	booted time.Duration
	begins map[int]time.Duration
	ends   map[int]time.Duration
	rcs    map[int]int
	out    map[int]*strings.Builder
	cur    int // package whose output is being read; -1 none
	done   int // -1 until the done marker
	errs   []string
}

func newConsole(nonce string, live io.Writer) *console {
	return &console{
		prefix: "XLBVM:" + nonce + ":",
		start:  time.Now(),
		live:   live,
		begins: map[int]time.Duration{},
		ends:   map[int]time.Duration{},
		rcs:    map[int]int{},
		out:    map[int]*strings.Builder{},
		cur:    -1,
		done:   -1,
	}
}

func (c *console) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		c.line(strings.TrimRight(sc.Text(), "\r"))
	}
}

func (c *console) line(l string) {
	now := time.Since(c.start)
	if c.live != nil {
		fmt.Fprintln(c.live, l)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all.WriteString(l + "\n")
	i := strings.Index(l, c.prefix)
	if i < 0 {
		if c.cur >= 0 {
			c.out[c.cur].WriteString(l + "\n")
		}
		return
	}
	f := strings.Fields(l[i+len(c.prefix):])
	if len(f) == 0 {
		return
	}
	arg := func(n int) int {
		if len(f) <= n {
			return -1
		}
		v, err := strconv.Atoi(f[n])
		if err != nil {
			return -1
		}
		return v
	}
	switch f[0] {
	case markBooted:
		c.booted = now
	case markBegin:
		c.cur = arg(1)
		c.begins[c.cur] = now
		c.out[c.cur] = &strings.Builder{}
	case markEnd:
		c.ends[arg(1)] = now
		c.rcs[arg(1)] = arg(2)
		c.cur = -1
	case markDone:
		c.done = arg(1)
	case markError:
		c.errs = append(c.errs, strings.Join(f[1:], " "))
	}
}

// boot runs the VM and turns what it printed into a Result.
func boot(ctx context.Context, s bootSpec) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	args := qemuArgs(s.accel, s.cfg.MemoryMB, s.cfg.CPUs, s.kernel.Vmlinuz, s.initrd)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("qemu stdout: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	con := newConsole(s.nonce, s.cfg.Console)
	s.cfg.Logf("vm: booting (%s, %d MiB, %d CPUs, timeout %v)", s.accel, s.cfg.MemoryMB, s.cfg.CPUs, s.cfg.Timeout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu-system-x86_64: %w", err)
	}
	readDone := make(chan struct{})
	go func() { con.read(stdout); close(readDone) }()
	<-readDone
	werr := cmd.Wait()
	elapsed := time.Since(con.start)

	con.mu.Lock()
	defer con.mu.Unlock()
	all := con.all.String()
	if stderr.Len() > 0 {
		all += "[qemu stderr]\n" + stderr.String()
	}
	fail := func(format string, a ...any) error {
		return &Error{Err: fmt.Errorf(format, a...), Console: all}
	}
	code := -1
	var exitErr *exec.ExitError
	switch {
	case werr == nil:
		code = 0
	case errors.As(werr, &exitErr) && exitErr.Exited():
		code = exitErr.ExitCode()
	}
	switch {
	case ctx.Err() != nil:
		return nil, fail("the VM gave no result within %v (%v)", s.cfg.Timeout, werr)
	case len(con.errs) > 0:
		return nil, fail("the VM failed before the tests: %s", strings.Join(con.errs, "; "))
	case con.done < 0:
		return nil, fail("the VM stopped without a result after %v (qemu: %v): powered off, panicked or /init died", elapsed.Round(time.Millisecond), werr)
	case code != con.done<<1|1:
		return nil, fail("the VM reported %d but qemu exited with %d (want %d from isa-debug-exit)", con.done, code, con.done<<1|1)
	}

	res := &Result{
		Kernel:  s.kernel.String(),
		Accel:   s.accel,
		Console: all,
		Boot:    con.booted,
	}
	for i, b := range s.cfg.Packages {
		pr := PackageResult{Package: b, ExitCode: -1}
		if rc, ok := con.rcs[i]; ok {
			pr.ExitCode = rc
			pr.Duration = con.ends[i] - con.begins[i]
			res.Tests += pr.Duration
		}
		if o := con.out[i]; o != nil {
			pr.Output = o.String()
		}
		res.Packages = append(res.Packages, pr)
	}
	if failed := !res.Passed(); failed != (con.done != 0) {
		return res, fail("the VM reported %d, but the packages' exit codes say otherwise", con.done)
	}
	return res, nil
}

// accel picks the accelerator: the one asked for, else kvm when /dev/kvm
// is usable and a probe boot with it works, else tcg. The probe's answer is
// cached per host kernel, qemu and guest kernel: on some machines kvm
// exists but cannot boot a stock kernel (qemu hangs or aborts).
func (c *cache) accel(ctx context.Context, want string, k *Kernel, busybox string) (string, error) {
	switch want {
	case "kvm", "tcg":
		return want, nil
	case "":
	default:
		return "", fmt.Errorf("accelerator %q: want kvm or tcg", want)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", nil
	}
	f.Close()
	hostRel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	qemuVer, _ := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	sum := sha256.Sum256([]byte(strings.Join([]string{string(hostRel), string(qemuVer), k.String()}, "\x00")))
	marker := filepath.Join(c.dir, "accel-"+hex.EncodeToString(sum[:8]))
	if b, err := os.ReadFile(marker); err == nil {
		if a := strings.TrimSpace(string(b)); a == "kvm" || a == "tcg" {
			return a, nil
		}
	}
	a, why := probeKVM(ctx, k, busybox)
	c.logf("vm: kvm probe: %s -> %s", why, a)
	if ctx.Err() != nil {
		return "", fmt.Errorf("kvm probe: %w", ctx.Err())
	}
	if err := os.WriteFile(marker, []byte(a+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("cache the kvm probe: %w", err)
	}
	return a, nil
}

// probeKVM boots a busybox-only initramfs with kvm that reports 21 through
// isa-debug-exit; kvm works if qemu then exits with 43 in time.
func probeKVM(ctx context.Context, k *Kernel, busybox string) (string, string) {
	dir, err := os.MkdirTemp("", "xlb-vm-probe-")
	if err != nil {
		return "tcg", err.Error()
	}
	defer os.RemoveAll(dir)
	initrd := filepath.Join(dir, "probe.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return "tcg", err.Error()
	}
	c := newCPIO(f)
	c.Dir("/dev")
	c.CopyFile("/bin/busybox", busybox, 0o755)
	c.File("/init", 0o755, []byte("#!/bin/busybox sh\n/bin/busybox mount -t devtmpfs d /dev\n"+
		"/bin/busybox printf '\\025' | /bin/busybox dd of=/dev/port bs=1 seek=244 count=1\n/bin/busybox poweroff -f\n"))
	err = c.Close()
	f.Close()
	if err != nil {
		return "tcg", err.Error()
	}
	const limit = 30 * time.Second
	pctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(pctx, "qemu-system-x86_64", qemuArgs("kvm", 256, 1, k.Vmlinuz, initrd)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == 43 {
		return "kvm", fmt.Sprintf("booted in %v", time.Since(start).Round(time.Millisecond))
	}
	if pctx.Err() != nil {
		return "tcg", fmt.Sprintf("no result within %v", limit)
	}
	last := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	return "tcg", fmt.Sprintf("qemu: %v: %s", err, last)
}
