// Package flock (used for the pin path and the control socket) takes exclusive flock(2) locks that live as long as the
// process holds them: the kernel releases a lock when its last file
// descriptor closes, so on exit or crash, never leaving a stale lock behind.
// A lock already taken is reported with its holder: the pid that
// /proc/locks gives for the inode, and that process's command line.
package flock

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrHeld is returned (wrapped in a *HeldError) when another open file
// description, in this process or another, holds the lock.
var ErrHeld = errors.New("locked")

// HeldError says who holds a lock.
type HeldError struct {
	Path string
	// PID of the holder; 0 when unknown (in another pid namespace).
	PID int
	// Cmdline of the holder, space-separated; "" when unreadable.
	Cmdline string
}

func (e *HeldError) Error() string {
	switch {
	case e.PID == 0:
		return "locked by another process"
	case e.Cmdline == "":
		return fmt.Sprintf("locked by pid %d", e.PID)
	}
	return fmt.Sprintf("locked by pid %d (%s)", e.PID, e.Cmdline)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// Lock is an exclusive lock held through an open file.
type Lock struct {
	path string
	f    *os.File
}

// Dir locks directory path (it must exist). A directory can be locked
// where no file can be created next to what it guards, as on a bpffs,
// which holds only pinned objects and directories.
func Dir(path string) (*Lock, error) {
	return lock(path, func() (*os.File, error) {
		return os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY, 0)
	})
}

// File locks file path, creating it (mode 0600) if needed, and writes the
// process's pid into it for whoever reads it.
func File(path string) (*Lock, error) {
	l, err := lock(path, func() (*os.File, error) {
		return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	})
	if err != nil {
		var held *HeldError
		if errors.As(err, &held) && held.PID == 0 {
			// Not in /proc/locks as we see it: the pid its holder wrote.
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					held.PID, held.Cmdline = pid, cmdline(pid)
				}
			}
		}
		return nil, err
	}
	if err := l.f.Truncate(0); err == nil {
		_, _ = l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return l, nil
}

// lock opens path and locks it. The path may be removed and created anew
// between the open and the lock (a previous holder cleaning up on exit):
// the lock must be on what the path names once it is held, so that case
// is retried.
func lock(path string, open func() (*os.File, error)) (*Lock, error) {
	for range 5 {
		f, err := open()
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			defer f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, holder(path, f)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		l := &Lock{path: path, f: f}
		if l.Current() {
			return l, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock %s: the path keeps being replaced", path)
}

// Current reports whether the path still names the locked file (it was
// not removed, or removed and created anew).
func (l *Lock) Current() bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(l.f.Fd()), &a) != nil || unix.Stat(l.path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// Path is the locked path.
func (l *Lock) Path() string { return l.path }

// Close releases the lock.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// holder finds who holds the lock on f's inode in /proc/locks, whose lines
// read "1: FLOCK  ADVISORY  WRITE 1234 00:29:157502 0 EOF": the pid, then
// the device (major:minor in hex) and inode of the file (fs/locks.c,
// lock_get_status). Waiters' lines ("1: -> FLOCK ...") are skipped.
func holder(path string, f *os.File) error {
	e := &HeldError{Path: path}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return e
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return e
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			e.PID, e.Cmdline = pid, cmdline(pid)
			break
		}
	}
	return e
}

// cmdline reads a process's command line, its arguments separated by
// spaces ("" if unreadable).
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
}
