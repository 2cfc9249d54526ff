package command_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/command"
	"github.com/xlb-dev/xlb/test/nettest"
)

// writeScript writes a shell script into dir and returns the command line
// that runs it: "/bin/sh PATH". Executing a file just written can fail
// with ETXTBSY while another test forks (the child holds the write
// descriptor until it execs); reading it cannot.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return "/bin/sh " + p
}

// recordScript writes a script that writes its arguments after the first,
// one per line, to the file its first argument names.
func recordScript(t *testing.T) string {
	t.Helper()
	return writeScript(t, t.TempDir(), "record.sh", `out=$1; shift; printf '%s\n' "$@" > "$out"`+"\n")
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the command did not run: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func runCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// A command line is split into words and executed without a shell: `;`
// is an argument, not a separator.
func TestNoShell(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var r command.Runner
	flag := filepath.Join(dir, "flag")
	if err := r.Run(runCtx(t, 10*time.Second), "/bin/echo a; touch "+flag); err != nil {
		t.Fatalf("echo: %v", err)
	}
	if _, err := os.Stat(flag); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("`/bin/echo a; touch %s` created the file: a shell ran it (%v)", flag, err)
	}

	rec, args := recordScript(t), filepath.Join(dir, "args")
	if err := r.Run(runCtx(t, 10*time.Second), rec+" "+args+" a; touch "+flag, "MASTER", "100"); err != nil {
		t.Fatalf("record: %v", err)
	}
	if got, want := readLines(t, args), []string{"a;", "touch", flag, "MASTER", "100"}; !slices.Equal(got, want) {
		t.Errorf("arguments %q, want %q", got, want)
	}
	if _, err := os.Stat(flag); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("touch ran: %v", err)
	}
}

// A failure carries the exit status and at most MaxOutput bytes of the
// output, on one line.
func TestExitStatusAndOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var r command.Runner
	script := writeScript(t, dir, "fail.sh", `echo backend says no >&2
echo second line
head -c 1000000 /dev/zero | tr '\0' x
exit 3
`)
	err := r.Run(runCtx(t, 10*time.Second), script)
	var cerr *command.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v (%T), want a *command.Error", err, err)
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Errorf("got %v, want exit status 3", err)
	}
	if !strings.HasPrefix(err.Error(), "command /bin/sh: exit status 3: backend says no; second line; xxx") {
		t.Errorf("message %q", err)
	}
	if len(cerr.Output) > command.MaxOutput || len(err.Error()) > command.MaxOutput+len(script)+64 {
		t.Errorf("output of %d bytes kept, message of %d bytes; want at most %d", len(cerr.Output), len(err.Error()), command.MaxOutput)
	}

	err = r.Run(runCtx(t, 10*time.Second), filepath.Join(dir, "missing.sh"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing program: %v", err)
	}
	if err := r.Run(runCtx(t, 10*time.Second), "  "); err == nil {
		t.Error("an empty command succeeded")
	}
}

// processGone reports whether pid is gone or a zombie (a reparented
// process waits there for init, not for us).
func processGone(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, after, _ := strings.Cut(string(st), ") ")
	return strings.HasPrefix(after, "Z")
}

func readPids(t *testing.T, path string) []int {
	t.Helper()
	var pids []int
	for _, f := range readLines(t, path) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pids file: %v", err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// At its timeout the command's whole process group is killed: a script
// and the child it forked both die, the script is reaped, and Run returns
// within the timeout and WaitDelay.
func TestTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	script := writeScript(t, dir, "hang.sh", "sleep 300 &\nprintf '%s\\n' $$ $! > "+pids+".tmp\nmv "+pids+".tmp "+pids+"\nwait\n")
	const timeout, waitDelay = 500 * time.Millisecond, time.Second
	r, err := command.New(command.Options{WaitDelay: waitDelay})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = r.Run(runCtx(t, timeout), script)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "process group killed") {
		t.Fatalf("got %v, want the process group killed at the deadline", err)
	}
	if took < timeout || took > timeout+waitDelay {
		t.Errorf("Run took %v with a %v timeout and a %v WaitDelay", took, timeout, waitDelay)
	}
	p := readPids(t, pids)
	// The script was our child and Run waited for it: gone, not a zombie.
	if err := syscall.Kill(p[0], 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("script pid %d still exists after Run returned (kill 0: %v)", p[0], err)
	}
	nettest.WaitFor(t, 10*time.Second, "the script's child to die", func() error {
		if !processGone(p[1]) {
			return errors.New("sleep still runs")
		}
		return nil
	})
}

// A descendant that left the process group keeps the output pipes open:
// Run still returns WaitDelay after the kill, or after a successful exit.
func TestWaitDelay(t *testing.T) {
	t.Parallel()
	const timeout, waitDelay = 300 * time.Millisecond, 500 * time.Millisecond
	r, err := command.New(command.Options{WaitDelay: waitDelay})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, end string
		ok        bool
	}{
		{"killed", "wait\n", false},
		{"exit 0", "exit 0\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pids := filepath.Join(dir, "pids")
			script := writeScript(t, dir, "escape.sh", "setsid sleep 300 &\necho $! > "+pids+".tmp\nmv "+pids+".tmp "+pids+"\n"+tc.end)
			t.Cleanup(func() {
				if b, err := os.ReadFile(pids); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			start := time.Now()
			err := r.Run(runCtx(t, timeout), script)
			took := time.Since(start)
			if tc.ok && err != nil {
				t.Errorf("exit 0 with the output held open: %v", err)
			}
			if !tc.ok && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want a timeout", err)
			}
			if limit := timeout + waitDelay; took > limit+time.Second {
				t.Errorf("Run took %v, want about %v at most", took, limit)
			}
		})
	}
}

// A context without a deadline gets the Runner's timeout.
func TestDefaultTimeout(t *testing.T) {
	t.Parallel()
	r, err := command.New(command.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = r.Run(context.Background(), "/bin/sleep 300")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("got %v after %v, want a timeout after 300ms", err, time.Since(start))
	}
}

// The environment: the daemon's, without NOTIFY_SOCKET, with the
// caller's variables overriding.
func TestEnvironment(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("XLB_TEST_INHERITED", "kept")
	t.Setenv("XLB_TEST_OVERRIDDEN", "daemon")
	var r command.Runner
	script := writeScript(t, t.TempDir(), "env.sh",
		`echo "notify=${NOTIFY_SOCKET-unset} inherited=$XLB_TEST_INHERITED overridden=$XLB_TEST_OVERRIDDEN addr=$XLB_RS_ADDR"; exit 1`+"\n")
	err := r.RunEnv(runCtx(t, 10*time.Second), []string{"XLB_TEST_OVERRIDDEN=caller", "XLB_RS_ADDR=10.1.2.3"}, script)
	if want := "notify=unset inherited=kept overridden=caller addr=10.1.2.3"; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %v, want the output %q", err, want)
	}
}

// userChildEnv ("USER:GROUP") makes the test binary a child that runs
// userScriptEnv with a Runner for that user and group and prints the
// result: TestScriptUser starts it with supplementary groups, to see them
// cleared.
const (
	userChildEnv  = "XLB_COMMAND_TEST_USER"
	userScriptEnv = "XLB_COMMAND_TEST_SCRIPT"
)

func TestMain(m *testing.M) {
	if ug := os.Getenv(userChildEnv); ug != "" {
		u, g, _ := strings.Cut(ug, ":")
		r, err := command.New(command.Options{User: u, Group: g})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = r.Run(ctx, os.Getenv(userScriptEnv))
			cancel()
		}
		fmt.Println(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// With a script user and group every command runs as them, supplementary
// groups cleared (the daemon here has adm and users), with that user's
// HOME, USER and LOGNAME.
func TestScriptUser(t *testing.T) {
	t.Parallel()
	nettest.RequireRoot(t)
	// The script must be reachable by nobody: t.TempDir is mode 0700.
	dir, err := os.MkdirTemp("", "xlb-command-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	script := writeScript(t, dir, "id.sh", `echo "$(id -u) $(id -g) [$(id -G)] $HOME $USER $LOGNAME"; exit 1`+"\n")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, group, want string }{
		{"nobody", "nogroup", "65534 65534 [65534] /nonexistent nobody nobody"},
		{"nobody", "", "65534 65534 [65534] /nonexistent nobody nobody"},
		{"65534", "65534", "65534 65534 [65534] /nonexistent nobody nobody"},
		{"nobody", "users", "65534 100 [100] /nonexistent nobody nobody"},
		{"", "", "0 0 [0 4 100]"},
	} {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), userChildEnv+"="+tc.user+":"+tc.group, userScriptEnv+"="+script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{4, 100}}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v: %s", err, out)
		}
		if got := strings.TrimSpace(string(out)); !strings.Contains(got, "exit status 1: "+tc.want) {
			t.Errorf("as %q:%q: got %q, want the output %q", tc.user, tc.group, got, tc.want)
		}
	}

	r, err := command.New(command.Options{User: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if u, g := r.User(); u != "nobody" || g != "nogroup" {
		t.Errorf("User() = %q, %q", u, g)
	}
	// Back to the daemon's own user; a bad user changes nothing.
	if err := r.SetUser("", ""); err != nil {
		t.Fatal(err)
	}
	if err := r.SetUser("xlb-no-such-user", ""); err == nil || !strings.Contains(err.Error(), "xlb-no-such-user") {
		t.Errorf("unknown user: %v", err)
	}
	if u, g := r.User(); u != "" || g != "" {
		t.Errorf("User() = %q, %q after a failed SetUser", u, g)
	}
	for _, o := range []command.Options{{User: "xlb-no-such-user"}, {User: "nobody", Group: "xlb-no-such-group"}, {Group: "nogroup"}} {
		if _, err := command.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// Go runs a command in the background and logs its failure; Wait waits
// for it.
func TestGo(t *testing.T) {
	t.Parallel()
	var logs nettest.SyncBuffer
	r, err := command.New(command.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, args, flag := recordScript(t), filepath.Join(dir, "args"), filepath.Join(dir, "flag")
	release := filepath.Join(dir, "release")
	slow := writeScript(t, dir, "slow.sh", "while [ ! -e "+release+" ]; do sleep 0.01; done\necho slow failed; exit 4\n")
	r.Go(slow)
	r.Go(rec+" "+args+" a; touch "+flag, "GROUP", "g")
	r.Go("")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a command running: %v", err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(runCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got, want := readLines(t, args), []string{"a;", "touch", flag, "GROUP", "g"}; !slices.Equal(got, want) {
		t.Errorf("arguments %q, want %q", got, want)
	}
	if _, err := os.Stat(flag); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("touch ran: %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "command failed") || !strings.Contains(l, "exit status 4: slow failed") {
		t.Errorf("log %q, want the failure with its status and output", l)
	}
}
