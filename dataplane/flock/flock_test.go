package flock

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/test/nettest"
)

// The helper process: locks the directory in $FLOCK_HELPER_DIR, says so
// and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("FLOCK_HELPER_DIR"); dir != "" {
		l, err := Dir(dir)
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		defer l.Close()
		select {} // holds the lock until killed
	}
	os.Exit(m.Run())
}

// bpffsDir makes a directory on the host's bpffs, where xlb pins.
func bpffsDir(t *testing.T) string {
	t.Helper()
	nettest.RequireRoot(t)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("/sys/fs/bpf is not a bpffs (.ci/deps mounts it): %v", err)
	}
	dir := filepath.Join("/sys/fs/bpf", nettest.UniqueName("xlbt-"))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// A directory on a bpffs (no regular file can be created there) is locked
// once: a second lock, even in the same process, is refused and names the
// holder; closing releases it.
func TestDirOnBPFFS(t *testing.T) {
	dir := bpffsDir(t)
	if f, err := os.Create(filepath.Join(dir, "lock")); err == nil {
		f.Close()
		t.Fatal("a regular file was created on the bpffs: the test does not test what it says")
	}
	l, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dir(dir)
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) {
		t.Fatalf("second lock: %v, want a HeldError", err)
	}
	if held.PID != os.Getpid() || !strings.Contains(held.Cmdline, filepath.Base(os.Args[0])) {
		t.Errorf("holder %+v, want pid %d running %s", held, os.Getpid(), os.Args[0])
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("message %q does not name the holder", err)
	}
	if !l.Current() {
		t.Error("Current is false for the locked directory")
	}
	l.Close()
	l2, err := Dir(dir)
	if err != nil {
		t.Fatalf("lock after Close: %v", err)
	}
	// The directory is removed and made again: the lock is on the old one.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if l2.Current() {
		t.Error("Current is true after the directory was made anew")
	}
	l3, err := Dir(dir)
	if err != nil {
		t.Fatalf("lock of the new directory: %v", err)
	}
	l3.Close()
	l2.Close()
}

// Another process holds the lock: it is named (pid and command line), and
// when it dies (SIGKILL: nothing cleans up) the kernel releases the lock.
func TestHolderInAnotherProcess(t *testing.T) {
	dir := bpffsDir(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^$", "the-holder")
	cmd.Env = append(os.Environ(), "FLOCK_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	_, err = Dir(dir)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("lock held by the helper: %v", err)
	}
	if held.PID != cmd.Process.Pid || !strings.Contains(held.Cmdline, "the-holder") {
		t.Errorf("holder %+v, want pid %d with the-holder in its command line", held, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := Dir(dir)
	if err != nil {
		t.Fatalf("lock after the holder died: %v", err)
	}
	l.Close()
}

// A lock file gets the holder's pid; a second lock names it.
func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.sock.lock")
	l, err := File(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid %d", b, os.Getpid())
	}
	_, err = File(path)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() {
		t.Fatalf("second lock: %v, want held by pid %d", err, os.Getpid())
	}
}
