// Package command runs the external commands of xlb's configuration:
// notify scripts, vrrp_script checks, health-check scripts and quorum
// commands all go through one Runner, so they behave the same way.
//
// A command line is split into words by config.Command.Argv and executed
// directly: there is no implicit shell (a configuration that wants one
// says `/bin/sh -c '...'`). Each command:
//
//   - runs in its own process group; when its context is done (its
//     timeout) the whole group is killed with SIGKILL, as keepalived's
//     child_killed_thread (core/notify.c) does with kill(-pgid, SIGKILL),
//     so a script's children die with it;
//   - is always waited for (no zombie), and Run returns at most WaitDelay
//     after the kill even when a descendant that left the group still holds
//     the output pipes;
//   - has stdin from /dev/null; the first MaxOutput bytes of its stdout and
//     stderr are kept for the error message, the rest is discarded;
//   - gets the daemon's environment without NOTIFY_SOCKET (the daemon's
//     channel to systemd, which a child must not use); when it runs as a
//     script user, HOME, USER and LOGNAME are that user's (as su and
//     runuser set them); then the caller's variables (RunEnv), which
//     override: health-check scripts get XLB_RS_ADDR, XLB_RS_PORT and
//     XLB_VS_NAME. Notify and quorum commands get their information as
//     arguments (keepalived's), no variable;
//   - runs as Options.User and Options.Group when set (keepalived's
//     global_defs script_user), with the supplementary groups cleared.
package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xlb-dev/xlb/config"
)

// Defaults of Options.
const (
	// DefaultTimeout bounds a command whose context has no deadline, and
	// every command started by Go (quorum_up, quorum_down).
	DefaultTimeout = 10 * time.Second
	// DefaultWaitDelay is how long Run waits for the output pipes to close
	// after the command exited or its group was killed: a descendant that
	// left the process group (setsid) can hold them open forever.
	DefaultWaitDelay = time.Second
)

// MaxOutput is how much of a command's output (stdout and stderr
// together) is kept for its error message.
const MaxOutput = 512

// Options configure a Runner. The zero value runs commands as the daemon's
// own user with the default timeouts.
type Options struct {
	Logger *slog.Logger // failures of Go commands; nil discards
	// User runs every command as this user (a name, or a numeric id);
	// empty: the daemon's user. Group is the group (name or id); empty:
	// the user's primary group. Setting Group without User is an error.
	User, Group string
	Timeout     time.Duration // DefaultTimeout when 0
	WaitDelay   time.Duration // DefaultWaitDelay when 0
}

// Runner runs commands. It is safe for concurrent use; the zero Runner
// runs commands as the daemon's user with the defaults.
//
// *Runner implements vrrp.Runner.
type Runner struct {
	log       *slog.Logger
	timeout   time.Duration
	waitDelay time.Duration
	id        atomic.Pointer[identity] // nil: the daemon's own user

	mu      sync.Mutex
	running int           // commands started by Go and not finished
	idle    chan struct{} // closed when running drops to 0; nil when nobody waits
}

// identity is the user and group commands run as.
type identity struct {
	uid, gid    uint32
	user, group string // names, for the environment and messages
	home        string
}

// New returns a Runner; it fails when the user or group does not exist.
func New(opts Options) (*Runner, error) {
	r := &Runner{log: opts.Logger, timeout: opts.Timeout, waitDelay: opts.WaitDelay}
	if err := r.SetUser(opts.User, opts.Group); err != nil {
		return nil, err
	}
	return r, nil
}

// SetUser changes the user and group of the commands started from now on
// (a reload that changed script_user); empty user: the daemon's own. On
// error nothing changes.
func (r *Runner) SetUser(userName, groupName string) error {
	if userName == "" {
		if groupName != "" {
			return fmt.Errorf("script group %q without a script user", groupName)
		}
		r.id.Store(nil)
		return nil
	}
	id, err := lookup(userName, groupName)
	if err != nil {
		return err
	}
	r.id.Store(id)
	return nil
}

// User returns the user and group commands run as ("" when they run as
// the daemon's user).
func (r *Runner) User() (userName, groupName string) {
	if id := r.id.Load(); id != nil {
		return id.user, id.group
	}
	return "", ""
}

// lookup resolves a user and a group by name, or by numeric id when no
// such name exists.
func lookup(userName, groupName string) (*identity, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		var uerr error
		if u, uerr = user.LookupId(userName); uerr != nil {
			return nil, fmt.Errorf("script user %q: %w", userName, err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("script user %q: uid %q: %w", userName, u.Uid, err)
	}
	gidText := u.Gid
	var g *user.Group
	if groupName != "" {
		if g, err = user.LookupGroup(groupName); err != nil {
			var gerr error
			if g, gerr = user.LookupGroupId(groupName); gerr != nil {
				return nil, fmt.Errorf("script group %q: %w", groupName, err)
			}
		}
		gidText = g.Gid
	} else if g, err = user.LookupGroupId(u.Gid); err != nil {
		g = &user.Group{Gid: u.Gid, Name: u.Gid} // a primary gid without a group entry
	}
	gid, err := strconv.ParseUint(gidText, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("script group %q: gid %q: %w", groupName, gidText, err)
	}
	return &identity{uid: uint32(uid), gid: uint32(gid), user: u.Username, group: g.Name, home: u.HomeDir}, nil
}

// Run runs a command line with extra arguments appended and returns nil
// when it exits with status 0. The command is killed (its whole process
// group) when ctx is done, or after the Runner's timeout when ctx has no
// deadline. A failure is an *Error.
func (r *Runner) Run(ctx context.Context, command string, args ...string) error {
	return r.RunEnv(ctx, nil, command, args...)
}

// RunEnv is Run with extra environment variables ("KEY=value"), which
// override the inherited ones.
func (r *Runner) RunEnv(ctx context.Context, env []string, command string, args ...string) error {
	argv := config.Command(command).Argv()
	if len(argv) == 0 {
		return &Error{Err: errors.New("empty command")}
	}
	argv = append(argv, args...)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeoutOr())
		defer cancel()
	}
	id := r.id.Load()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = environ(os.Environ(), id, env)
	attr := &syscall.SysProcAttr{Setpgid: true}
	if id != nil {
		// An empty Groups clears the supplementary groups (setgroups(0));
		// keepalived's set_privileges (core/notify.c) leaves the group
		// alone (setgroups(1, &gid)), the same access.
		attr.Credential = &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: []uint32{}}
	}
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error {
		// The negative pid names the process group the command leads.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = r.waitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	var out headWriter
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case cmd.ProcessState != nil && cmd.ProcessState.Success():
		// Exit status 0; a descendant kept the output open past
		// WaitDelay (exec.ErrWaitDelay) and was left running.
		return nil
	case ctx.Err() != nil:
		return &Error{Path: argv[0], Err: fmt.Errorf("process group killed: %w", context.Cause(ctx)), Output: out.String()}
	}
	return &Error{Path: argv[0], Err: err, Output: out.String()}
}

func (r *Runner) timeoutOr() time.Duration {
	if r.timeout > 0 {
		return r.timeout
	}
	return DefaultTimeout
}

// Go runs a command line in the background with the Runner's timeout,
// without blocking the caller (fire-and-forget notifications); a failure
// is logged. An empty command line is ignored.
func (r *Runner) Go(command string, args ...string) {
	if len(config.Command(command).Argv()) == 0 {
		return
	}
	r.mu.Lock()
	r.running++
	r.mu.Unlock()
	go func() {
		defer r.done()
		line := strings.Join(append([]string{strings.TrimSpace(command)}, args...), " ")
		if err := r.Run(context.Background(), command, args...); err != nil {
			r.logger().Warn("command failed", "command", line, "error", err)
			return
		}
		r.logger().Debug("command ran", "command", line)
	}()
}

func (r *Runner) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if r.running == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
}

// Wait returns when no command started by Go runs, or with ctx's error
// when ctx is done first.
func (r *Runner) Wait(ctx context.Context) error {
	r.mu.Lock()
	if r.running == 0 {
		r.mu.Unlock()
		return nil
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	idle := r.idle
	r.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Runner) logger() *slog.Logger {
	if r.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.log
}

// environ is the environment of a command (see the package comment).
func environ(base []string, id *identity, extra []string) []string {
	drop := map[string]bool{"NOTIFY_SOCKET": true}
	var add []string
	if id != nil {
		add = []string{"HOME=" + id.home, "USER=" + id.user, "LOGNAME=" + id.user}
	}
	add = append(add, extra...)
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	env := make([]string, 0, len(base)+len(add))
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, add...)
}

// Error is a command that failed: it could not start, exited with a
// non-zero status or a signal, or was killed at its timeout.
type Error struct {
	Path   string // the program (argv[0])
	Err    error  // *exec.ExitError, a start error, or the context's error
	Output string // the first MaxOutput bytes of its output, white space folded
}

func (e *Error) Error() string {
	msg := "command " + e.Path + ": " + e.Err.Error()
	if e.Path == "" {
		msg = "command: " + e.Err.Error()
	}
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// headWriter keeps the first MaxOutput bytes written to it and discards
// the rest. Stdout and stderr share it, from two goroutines.
type headWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *headWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := MaxOutput - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// String returns the kept output on one line, at most MaxOutput bytes:
// lines joined with "; ", so that an error stays one line in logs and
// `xlb status`.
func (w *headWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var lines []string
	for l := range strings.Lines(string(w.buf)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s := strings.Join(lines, "; ")
	if len(s) > MaxOutput {
		s = strings.ToValidUTF8(s[:MaxOutput], "")
	}
	return s
}
