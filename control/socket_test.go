package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/test/nettest"
)

// serveTestSocket serves childHandler on a fresh socket until the test
// ends.
func serveTestSocket(t *testing.T, opts SocketOptions) (*SocketServer, string) {
	t.Helper()
	return serveSocket(t, childHandler{}, opts)
}

// serveSocket serves h on a fresh socket until the test ends, and checks
// then that Serve ended cleanly and removed its file.
func serveSocket(t *testing.T, h Handler, opts SocketOptions) (*SocketServer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xlb.sock")
	s, err := ListenSocket(path, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file left behind: %v", err)
		}
	})
	return s, path
}

// gatherCounter returns the value of a counter of s with the given reason
// label, collected through a pedantic registry (which checks Describe
// against Collect).
func gatherCounter(t *testing.T, s *SocketServer, name, reason string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{reason=%q}", name, reason)
	return 0
}

func callStatus(path string) error {
	resp, err := Call(path, Request{Command: "status"})
	if err != nil {
		return err
	}
	if resp.Status == nil || resp.Status.Version != "child" {
		return fmt.Errorf("status %+v", resp.Status)
	}
	return nil
}

// A 64 MiB request is refused after the first DefaultMaxRequest bytes with
// a clear error, and the daemon's memory does not grow with it.
func TestSocketRequestTooLarge(t *testing.T) {
	// Not parallel: it measures the process's allocations.
	s, path := serveTestSocket(t, SocketOptions{})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const size = 64 << 20
	sent := make(chan error, 1)
	go func() {
		// A valid request with a 64 MiB field, streamed from one buffer.
		if _, err := c.Write([]byte(`{"command":"status","pad":"`)); err != nil {
			sent <- err
			return
		}
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				sent <- err
				return
			}
		}
		_, err := c.Write([]byte(`"}`))
		sent <- err
	}()
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	want := fmt.Sprintf("request too large: more than %d bytes", DefaultMaxRequest)
	if resp.OK || resp.Error != want {
		t.Errorf("answer %+v, want the error %q", resp, want)
	}
	if err := <-sent; err == nil {
		t.Error("the daemon read the whole 64 MiB request")
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	if alloc > 8<<20 {
		t.Errorf("serving a 64 MiB request allocated %d MiB", alloc>>20)
	}
	t.Logf("a 64 MiB request: %d KiB allocated", alloc>>10)
	if st := s.Stats(); st.TooLarge != 1 {
		t.Errorf("stats %+v, want 1 too large", st)
	}
	if got := gatherCounter(t, s, "xlb_control_errors_total", "too_large"); got != 1 {
		t.Errorf("xlb_control_errors_total{reason=\"too_large\"} %v, want 1", got)
	}
	if err := callStatus(path); err != nil {
		t.Errorf("status after a too large request: %v", err)
	}
}

// A client that does not send its request in time gets an error and its
// connection closed.
func TestSocketSlowClient(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s, path := serveTestSocket(t, SocketOptions{RequestTimeout: timeout})
	start := time.Now() // before the server can accept and start the timeout
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"comm`)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var resp Response
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("no answer within 10s: %v", err)
	}
	took := time.Since(start)
	if want := "request not received within 300ms"; resp.Error != want {
		t.Errorf("answer %+v, want %q", resp, want)
	}
	if took < timeout || took > 5*time.Second {
		t.Errorf("answered after %v with a %v request timeout", took, timeout)
	}
	if _, err := io.ReadAll(io.MultiReader(dec.Buffered(), c)); err != nil {
		t.Errorf("connection not closed after the answer: %v", err)
	}
	if st := s.Stats(); st.Timeouts != 1 || st.Active != 0 {
		t.Errorf("stats %+v, want 1 timeout, no active connection", st)
	}
}

// At most MaxConns connections are served at once: another client waits
// until one of them ends.
func TestSocketMaxConns(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	s, path := serveTestSocket(t, SocketOptions{RequestTimeout: timeout, MaxConns: 2})
	// The idle clients' timeouts start after this.
	start := time.Now()
	for range 2 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	nettest.WaitFor(t, 10*time.Second, "two idle connections served", func() error {
		if st := s.Stats(); st.Active != 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if err := callStatus(path); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("a third client was served %v after two idle ones connected, before their %v timeout", took, timeout)
	}
	nettest.WaitFor(t, 10*time.Second, "both idle clients timed out", func() error {
		if st := s.Stats(); st.Timeouts != 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
}

// An accept error (EMFILE: the daemon is out of descriptors) is retried:
// the socket stays, and once descriptors are free status works again.
func TestSocketSurvivesEMFILE(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "xlb.sock")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), socketChildEnv+"="+path)
	var logs nettest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("socket child:\n%s", logs.String())
		}
	})
	nettest.WaitFor(t, 10*time.Second, "the child's control socket", func() error {
		if !strings.Contains(logs.String(), "descriptor limit") {
			return errors.New("descriptor limit not set yet")
		}
		return callStatus(path)
	})

	// Idle clients take the spare descriptors; the next accept fails.
	var idle []net.Conn
	for range childSpareFDs + 2 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	nettest.WaitFor(t, 10*time.Second, "an accept error", func() error {
		if l := logs.String(); !strings.Contains(l, "control socket accept failed") || !strings.Contains(l, "too many open files") {
			return errors.New("none logged")
		}
		return nil
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file after EMFILE: %v", err)
	}
	for _, c := range idle {
		c.Close()
	}
	nettest.WaitFor(t, 10*time.Second, "status after descriptors were freed", func() error { return callStatus(path) })
	if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket file: %v", err)
	}
	// The child's stderr reaches us through a pipe: the line may come
	// after the answer.
	nettest.WaitFor(t, 10*time.Second, "the recovery logged", func() error {
		if !strings.Contains(logs.String(), "control socket accepts again") {
			return errors.New("not yet")
		}
		return nil
	})
}
