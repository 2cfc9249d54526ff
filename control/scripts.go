package control

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// scriptTimeout bounds a notify or quorum script.
const scriptTimeout = 10 * time.Second

// runAsync runs a command line (split on white space, no shell, as the
// configuration's commands) in the background with a timeout; its failure
// is logged. It never blocks the caller.
func runAsync(log *slog.Logger, cmdline string, args ...string) {
	if strings.TrimSpace(cmdline) == "" {
		return
	}
	argv := append(strings.Fields(cmdline), args...)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			log.Warn("script failed", "command", strings.Join(argv, " "), "error", err, "output", strings.TrimSpace(string(out)))
			return
		}
		log.Debug("script ran", "command", strings.Join(argv, " "))
	}()
}
