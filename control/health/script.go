package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxOutput is how much of a script's output is kept for its error message.
const maxOutput = 256

// scriptWaitDelay bounds how long Check waits for the output pipes to close
// after the process group was killed (a descendant that left the group can
// hold them open).
const scriptWaitDelay = time.Second

// scriptChecker runs an external program: exit status 0 means up. The
// program runs in its own process group; when ctx is done the whole group
// is killed with SIGKILL, and the program is always waited for, so no
// zombie is left behind.
type scriptChecker struct {
	argv []string
	env  []string
}

func newScriptChecker(s Spec) *scriptChecker {
	addr := s.Target.Addr().String()
	port := strconv.Itoa(int(s.Target.Port()))
	c := &scriptChecker{
		argv: append(strings.Fields(s.Script), addr, port),
		env:  []string{"XLB_RS_ADDR=" + addr, "XLB_RS_PORT=" + port},
	}
	if s.Service != "" {
		c.env = append(c.env, "XLB_VS_NAME="+s.Service)
	}
	return c
}

func (c *scriptChecker) Check(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The negative pid names the process group the child leads.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = scriptWaitDelay
	var out headWriter
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("script %s: process group killed: %w", c.argv[0], ctxErr)
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if msg := out.String(); msg != "" {
			return fmt.Errorf("script %s: %w: %s", c.argv[0], err, msg)
		}
	}
	return fmt.Errorf("script %s: %w", c.argv[0], err)
}

// headWriter keeps the first maxOutput bytes written to it and discards the
// rest. Stdout and stderr share it, from two goroutines.
type headWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *headWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := maxOutput - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// String returns the first line of the kept output.
func (w *headWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.TrimSpace(string(w.buf))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
