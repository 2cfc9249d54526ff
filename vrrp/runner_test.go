package vrrp

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ExecRunner is the tests' Runner (exported for the lab's test nodes): the
// command split on white space and run without a shell, with the extra
// arguments, in its own process group, which is killed when ctx ends. The
// daemon's runner is control's; vrrp has none.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, command string, args ...string) error {
	argv := append(strings.Fields(command), args...)
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil && err != nil {
		return fmt.Errorf("script %q: %w", command, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("script %q: %w", command, err)
	}
	return nil
}
