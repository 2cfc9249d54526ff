package health

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"

	"github.com/xlb-dev/xlb/control/command"
)

// ScriptRunner runs the command of a script check: control/command's
// Runner, which the daemon shares with every other external command.
type ScriptRunner interface {
	// RunEnv runs a command line with args appended and env added to its
	// environment; nil means exit status 0. It kills the command (its
	// process group) when ctx is done.
	RunEnv(ctx context.Context, env []string, command string, args ...string) error
}

// defaultRunner runs script checks when Options.Scripts is nil: as the
// daemon's user, with command's defaults.
var defaultRunner = &command.Runner{}

// scriptChecker runs an external program: exit status 0 means up
// (keepalived's MISC_CHECK, check_misc.c misc_check_child_thread). With
// MiscDynamic, 2..255 is up too and sets the weight to the status less 2
// (0..253), and 0 restores the configured weight, as keepalived 2.2's
// misc_dynamic; 1, a signal or the timeout is down. The real server's
// address and port are appended to its arguments and set in its
// environment. How it runs (no shell, its own process group killed at the
// timeout, always waited for) is the runner's.
type scriptChecker struct {
	run     ScriptRunner
	script  string
	args    []string
	env     []string
	dynamic bool
}

func newScriptChecker(s Spec, run ScriptRunner) *scriptChecker {
	if run == nil {
		run = defaultRunner
	}
	addr := s.Target.Addr().String()
	port := strconv.Itoa(int(s.Target.Port()))
	c := &scriptChecker{
		run:     run,
		script:  s.Script,
		args:    []string{addr, port},
		env:     []string{"XLB_RS_ADDR=" + addr, "XLB_RS_PORT=" + port},
		dynamic: s.MiscDynamic,
	}
	if s.Service != "" {
		c.env = append(c.env, "XLB_VS_NAME="+s.Service)
	}
	return c
}

func (c *scriptChecker) Check(ctx context.Context) error {
	_, err := c.CheckWeight(ctx)
	return err
}

func (c *scriptChecker) CheckWeight(ctx context.Context) (Weight, error) {
	err := c.run.RunEnv(ctx, c.env, c.script, c.args...)
	if err == nil || !c.dynamic {
		return Weight{}, err
	}
	var exit *exec.ExitError
	if ctx.Err() == nil && errors.As(err, &exit) {
		if code := exit.ExitCode(); code >= 2 && code <= 255 {
			return Weight{Mode: WeightSet, Value: int64(code - 2)}, nil
		}
	}
	return Weight{}, err
}

// validScript reports whether a script check has a command.
func validScript(script string) bool { return strings.TrimSpace(script) != "" }
