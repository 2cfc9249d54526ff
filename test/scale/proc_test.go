package scale

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
)

// daemon is one `xlb run` in the lab's director namespace, measured from
// outside through /proc: what an operator's tools see.
type daemon struct {
	t       testing.TB
	d       *lab.Director
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{}
	err     error
	logf    *os.File
	logPath string
}

// startDaemon runs bin in the director's namespace; its log goes to a
// file of its own (one per start).
func startDaemon(t testing.TB, d *lab.Director, bin string, n int) *daemon {
	t.Helper()
	logPath := filepath.Join(filepath.Dir(d.LogPath), fmt.Sprintf("xlb-%d.log", n))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec execs xlb in place: the pid is xlb's.
	cmd := d.NS.Command(bin, "run", "--config", d.ConfigPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	x := &daemon{t: t, d: d, cmd: cmd, done: make(chan struct{}), logf: logf, logPath: logPath}
	x.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	x.pid = cmd.Process.Pid
	go func() { x.err = cmd.Wait(); close(x.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-x.done
		logf.Close()
	})
	return x
}

// exited reports whether the daemon has exited, with its log's tail.
func (x *daemon) exited() error {
	select {
	case <-x.done:
		return fmt.Errorf("xlb exited: %v\n%s", x.err, x.tail(30))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits (the dataplane detaches: the next start
// is a fresh one).
func (x *daemon) stop() {
	_ = x.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-x.done:
	case <-time.After(120 * time.Second):
		_ = x.cmd.Process.Kill()
		<-x.done
		x.t.Errorf("xlb did not stop within 120s of SIGTERM")
	}
}

// statusField reads a field of /proc/PID/status in kB, as bytes.
func (x *daemon) statusField(name string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", x.pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), name+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// bpfMapped is the resident memory of the BPF maps the daemon has mapped
// into its address space (anon_inode:bpf-map in smaps: the kernel's map
// memory, counted in RssFile).
func (x *daemon) bpfMapped() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", x.pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	var total int64
	inMap := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			inMap = len(fields) >= 6 && strings.Contains(fields[5], "bpf-map")
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && inMap {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			total += kb << 10
		}
	}
	return total
}

// rss and peak are VmRSS and VmHWM; resetPeak starts a new peak
// (clear_refs 5, Linux 4.0).
func (x *daemon) rss() int64  { return x.statusField("VmRSS") }
func (x *daemon) peak() int64 { return x.statusField("VmHWM") }
func (x *daemon) resetPeak() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", x.pid), []byte("5"), 0)
}

// cpu is the daemon's user and system time so far.
func (x *daemon) cpu() (user, sys time.Duration) { return procCPU(x.pid) }

// procCPU is the CPU time of task pid, in user and system mode (-1: gone).
func procCPU(pid int) (user, sys time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1, -1
	}
	// The command may contain spaces: fields start after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut) * time.Second / 100, time.Duration(st) * time.Second / 100 // USER_HZ
}

// cpuShare is the share of one core the daemon used over d, in all and
// in user mode.
func (x *daemon) cpuShare(d time.Duration) (all, user float64) {
	u0, s0 := x.cpu()
	t0 := time.Now()
	time.Sleep(d)
	u1, s1 := x.cpu()
	el := float64(time.Since(t0))
	return float64(u1-u0+s1-s0) / el, float64(u1-u0) / el
}

// bpfMemory sums the memlock of the BPF maps the daemon holds open (its
// program's maps and the scheduling tables), as the kernel accounts them.
func (x *daemon) bpfMemory() (bytes int64, maps int) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", x.pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1, 0
	}
	seen := map[string]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || !strings.Contains(string(b), "map_type:") {
			continue
		}
		var id string
		var mem int64
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "map_id":
				id = strings.TrimSpace(v)
			case "memlock":
				mem, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		if id != "" && !seen[id] {
			seen[id] = true
			bytes += mem
			maps++
		}
	}
	return bytes, maps
}

// log returns the daemon's log so far.
func (x *daemon) log() string {
	b, _ := os.ReadFile(x.logPath)
	return string(b)
}

// lines counts the log lines so far, and those containing substr.
func (x *daemon) lines(substr string) (all, matching int) {
	for _, l := range strings.Split(strings.TrimRight(x.log(), "\n"), "\n") {
		if l == "" {
			continue
		}
		all++
		if substr != "" && strings.Contains(l, substr) {
			matching++
		}
	}
	return all, matching
}

func (x *daemon) tail(n int) string {
	lines := strings.Split(strings.TrimRight(x.log(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitLog waits until the log has a line containing substr (after the
// first skip lines).
func (x *daemon) waitLog(substr string, skip int, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		lines := strings.Split(x.log(), "\n")
		for _, l := range lines[min(skip, len(lines)):] {
			if strings.Contains(l, substr) {
				return time.Since(x.started), nil
			}
		}
		if err := x.exited(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no %q in the log within %v:\n%s", substr, timeout, x.tail(20))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sampleRSS reads x's RSS every 5 s, from now until the function it
// returns is called, and adds the readings to the figure name.
func (bn *bench) sampleRSS(x *daemon, name string) (stop func()) {
	done := make(chan struct{})
	var mu sync.Mutex
	var got []float64
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if r := x.rss(); r > 0 {
					mu.Lock()
					got = append(got, float64(r)/mib)
					mu.Unlock()
				}
			}
		}
	}()
	return func() {
		close(done)
		mu.Lock()
		defer mu.Unlock()
		for _, v := range got {
			bn.figs.add(name, "MiB", 0, v)
		}
	}
}
