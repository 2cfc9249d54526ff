package health_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
)

// writeScript writes an executable shell script into a fresh directory.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func scriptSpec(script string) health.Spec {
	return health.Spec{
		Type: checktype.Script, Target: netip.MustParseAddrPort("10.1.2.3:8080"), Script: script,
		Interval: time.Second, Timeout: 10 * time.Second, Fall: 1, Rise: 1,
	}
}

func TestScriptExitStatus(t *testing.T) {
	t.Parallel()
	if err := check(t, scriptSpec(writeScript(t, "exit 0\n"))); err != nil {
		t.Errorf("exit 0: %v", err)
	}
	err := check(t, scriptSpec(writeScript(t, "echo backend says no >&2\nexit 3\n")))
	if err == nil || !strings.Contains(err.Error(), "exit status 3: backend says no") {
		t.Errorf("exit 3: got %v, want exit status 3 with the output", err)
	}
	err = check(t, scriptSpec(filepath.Join(t.TempDir(), "missing.sh")))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing script: got %v", err)
	}
}

func TestScriptArgumentsAndEnvironment(t *testing.T) {
	t.Parallel()
	// Extra words of Script are arguments; the target comes after them.
	script := writeScript(t, `
[ "$1" = extra ] || { echo "arg1=$1"; exit 1; }
[ "$2" = 10.1.2.3 ] || { echo "arg2=$2"; exit 1; }
[ "$3" = 8080 ] || { echo "arg3=$3"; exit 1; }
[ "$XLB_RS_ADDR" = 10.1.2.3 ] || { echo "addr=$XLB_RS_ADDR"; exit 1; }
[ "$XLB_RS_PORT" = 8080 ] || { echo "port=$XLB_RS_PORT"; exit 1; }
`)
	if err := check(t, scriptSpec(script+" extra")); err != nil {
		t.Error(err)
	}
}

// TestScriptTimeoutKillsGroup runs a script that starts a child and both
// hang: the timeout must kill both, and the script must be reaped.
func TestScriptTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	script := writeScript(t, "sleep 300 &\necho $$ $! > "+pids+".tmp\nmv "+pids+".tmp "+pids+"\nwait\n")
	s := scriptSpec(script)
	s.Timeout = 500 * time.Millisecond
	start := time.Now()
	err := check(t, s)
	if err == nil || !strings.Contains(err.Error(), "process group killed") {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("check took %v with a %v timeout", d, s.Timeout)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatalf("script did not record its pids: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("pids file %q", b)
	}
	shell, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("pids file %q: %v", b, err)
	}
	child := f[1]
	// The script itself was our child: Check waited for it, so it is gone,
	// not a zombie.
	if err := syscall.Kill(shell, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("script pid %d still exists after Check returned (kill 0: %v)", shell, err)
	}
	// Its child was reparented when the script died; it must be dead (a
	// zombie only until its new parent reaps it, which is not us).
	waitFor(t, "the script's child to die", func() bool {
		st, err := os.ReadFile("/proc/" + child + "/stat")
		if err != nil {
			return true
		}
		_, after, _ := strings.Cut(string(st), ") ")
		return strings.HasPrefix(after, "Z")
	})
}

// A script check runs without a shell: `;` is an argument.
func TestScriptNoShell(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := filepath.Join(dir, "record.sh")
	if err := os.WriteFile(rec, []byte(`out=$1; shift; printf '%s\n' "$@" > "$out"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args, flag := filepath.Join(dir, "args"), filepath.Join(dir, "flag")
	if err := check(t, scriptSpec("/bin/sh "+rec+" "+args+" a; touch "+flag)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(args)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "a;\ntouch\n"+flag+"\n10.1.2.3\n8080\n"; got != want {
		t.Errorf("arguments %q, want %q", got, want)
	}
	if _, err := os.Stat(flag); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("touch ran: %v", err)
	}
}

// recordingRunner is a ScriptRunner that records its calls and succeeds.
type recordingRunner struct {
	mu    sync.Mutex
	calls []string
}

func (r *recordingRunner) RunEnv(_ context.Context, env []string, command string, args ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s %v %v", command, args, env))
	return nil
}

func (r *recordingRunner) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return ""
	}
	return r.calls[len(r.calls)-1]
}

// The Manager runs script checks through Options.Scripts.
func TestManagerScriptRunner(t *testing.T) {
	t.Parallel()
	run := &recordingRunner{}
	m := health.NewManager(health.Options{Scripts: run})
	s := scriptSpec("/etc/xlb/check web")
	s.Service, s.Interval = "web", 50*time.Millisecond
	if err := m.Update(map[string]health.Spec{"k": s}); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	expect(t, m.Results(), "k", health.StateUnknown, health.StateUp)
	if got, want := run.last(), "/etc/xlb/check web [10.1.2.3 8080] [XLB_RS_ADDR=10.1.2.3 XLB_RS_PORT=8080 XLB_VS_NAME=web]"; got != want {
		t.Errorf("ran %q, want %q", got, want)
	}
}

// misc_dynamic: exit 2..255 is up with weight status-2, 0 up with the
// configured weight, 1 down keeping the last weight; each change of
// weight is a Transition even when the state stays (keepalived 2.2's
// misc_check_child_thread).
func TestMiscDynamicWeights(t *testing.T) {
	t.Parallel()
	codeFile := filepath.Join(t.TempDir(), "code")
	setCode := func(n int) {
		if err := os.WriteFile(codeFile, []byte(strconv.Itoa(n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := scriptSpec(writeScript(t, "exit $(cat "+codeFile+")\n"))
	s.MiscDynamic, s.Interval = true, interval
	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk})
	if err := m.Update(map[string]health.Spec{"k": s}); err != nil {
		t.Fatal(err)
	}
	startManager(t, m)
	ch := m.Results()
	set := func(n int64) health.Weight { return health.Weight{Mode: health.WeightSet, Value: n} }
	for _, tc := range []struct {
		code     int
		from, to health.State
		weight   health.Weight
		none     bool // no transition
	}{
		{7, health.StateUnknown, health.StateUp, set(5), false},
		{12, health.StateUp, health.StateUp, set(10), false},
		{12, 0, 0, health.Weight{}, true},
		{9, health.StateUp, health.StateUp, set(7), false},
		{1, health.StateUp, health.StateDown, set(7), false}, // a failure keeps the weight
		{0, health.StateDown, health.StateUp, health.Weight{}, false},
	} {
		setCode(tc.code)
		step(t, clk, m, "k")
		if tc.none {
			continue // the next expect sees a spurious transition if one came
		}
		tr := expect(t, ch, "k", tc.from, tc.to)
		if tr.Weight != tc.weight {
			t.Errorf("exit %d: weight %v, want %v", tc.code, tr.Weight, tc.weight)
		}
		if got := m.Status()["k"].Weight; got != tc.weight {
			t.Errorf("exit %d: status weight %v, want %v", tc.code, got, tc.weight)
		}
	}
	// Without misc_dynamic, 2..255 is down.
	s.MiscDynamic = false
	setCode(5)
	if err := check(t, s); err == nil {
		t.Error("exit 5 without misc_dynamic: up")
	}
}

// warmup: a new check's first run comes within Warmup instead of its
// first interval; a negative Warmup runs it at once.
func TestWarmup(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	m := health.NewManager(health.Options{Clock: clk})
	specs := map[string]health.Spec{}
	for i := range 50 {
		s := scriptSpec("/bin/true")
		s.Interval, s.Warmup = time.Hour, time.Second
		specs[fmt.Sprint("w", i)] = s
		s.Warmup = -1
		specs[fmt.Sprint("now", i)] = s
	}
	if err := m.Update(specs); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	for k, st := range m.Status() {
		d := st.NextRun.Sub(now)
		switch {
		case strings.HasPrefix(k, "now") && d != 0:
			t.Errorf("%s: first run in %v, want at once", k, d)
		case strings.HasPrefix(k, "w") && (d < 0 || d >= time.Second):
			t.Errorf("%s: first run in %v, want within the 1s warmup", k, d)
		}
	}
}
