package health

import (
	"context"
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

// scriptChecker runs an external program: exit status 0 means up. The
// real server's address and port are appended to its arguments and set in
// its environment. How it runs (no shell, its own process group killed at
// the timeout, always waited for) is the runner's.
type scriptChecker struct {
	run    ScriptRunner
	script string
	args   []string
	env    []string
}

func newScriptChecker(s Spec, run ScriptRunner) *scriptChecker {
	if run == nil {
		run = defaultRunner
	}
	addr := s.Target.Addr().String()
	port := strconv.Itoa(int(s.Target.Port()))
	c := &scriptChecker{
		run:    run,
		script: s.Script,
		args:   []string{addr, port},
		env:    []string{"XLB_RS_ADDR=" + addr, "XLB_RS_PORT=" + port},
	}
	if s.Service != "" {
		c.env = append(c.env, "XLB_VS_NAME="+s.Service)
	}
	return c
}

func (c *scriptChecker) Check(ctx context.Context) error {
	return c.run.RunEnv(ctx, c.env, c.script, c.args...)
}

// validScript reports whether a script check has a command.
func validScript(script string) bool { return strings.TrimSpace(script) != "" }
