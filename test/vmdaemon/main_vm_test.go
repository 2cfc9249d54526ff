//go:build vmtest

package vmdaemon_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// keepCapsEnv turns the test binary into a wrapper that executes its
// arguments with only the capabilities listed (numbers, comma separated).
const keepCapsEnv = "XLB_VMDAEMON_KEEP_CAPS"

// xlbBin is where test/vm ships the xlb binary (guestBuilds).
const xlbBin = "/usr/sbin/xlb"

func TestMain(m *testing.M) {
	if keep, ok := os.LookupEnv(keepCapsEnv); ok {
		err := execWithCaps(keep, os.Args[1:])
		fmt.Fprintf(os.Stderr, "capability wrapper: %v\n", err)
		os.Exit(126)
	}
	// test/lab runs $XLB_BIN in its directors.
	if os.Getenv("XLB_BIN") == "" {
		os.Setenv("XLB_BIN", xlbBin)
	}
	os.Exit(m.Run())
}

// execWithCaps executes argv as root with no capabilities but keep: it
// drops the others from the bounding set and clears the inheritable and
// ambient sets, so that the kernel gives the new program (root, no file
// capabilities) exactly the bounding set. Capabilities belong to a thread:
// all of it happens on one locked thread, the one that calls execve.
func execWithCaps(keep string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("nothing to execute")
	}
	kept := map[int]bool{}
	for _, f := range strings.Split(keep, ",") {
		if f == "" {
			continue
		}
		c, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("%s: bad capability %q", keepCapsEnv, f)
		}
		kept[c] = true
	}
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return err
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("cap_last_cap %q: %w", b, err)
	}
	runtime.LockOSThread()
	for c := 0; c <= last; c++ {
		if !kept[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, keepCapsEnv+"=") {
			env = append(env, e)
		}
	}
	return syscall.Exec(argv[0], argv, env)
}
