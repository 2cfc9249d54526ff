package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/control"
)

// weightHandler records the weight commands it serves.
type weightHandler struct{ got []string }

func (h *weightHandler) Status(bool) *control.Status { return &control.Status{} }
func (h *weightHandler) Reload() error               { return nil }
func (h *weightHandler) SetWeight(service, real string, weight int, by string) (string, error) {
	h.got = append(h.got, fmt.Sprintf("set %s %s %d by-uid-0:%v", service, real, weight, strings.HasPrefix(by, "uid 0 ")))
	return "set", nil
}
func (h *weightHandler) ResetWeight(service, real, by string) (string, error) {
	h.got = append(h.got, fmt.Sprintf("reset %s %s", service, real))
	return "", fmt.Errorf("no real server %s", real)
}

// xlb set-weight and reset-weight send their arguments to the control
// socket, which knows who asked; bad arguments are refused before.
func TestWeightCommands(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	h := &weightHandler{}
	s, err := control.ListenSocket(sock, h, control.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"set-weight", "--socket", sock, "web", "10.0.0.7:80", "0"}, 0, "set\n"},
		{[]string{"reset-weight", "--socket", sock, "web", "10.0.0.9"}, 1, "xlb reset-weight: no real server 10.0.0.9\n"},
		{[]string{"set-weight", "--socket", sock, "web", "10.0.0.7"}, 2, "usage: xlb set-weight [--socket PATH | --config FILE] SERVICE ADDR[:PORT] WEIGHT\n"},
		{[]string{"set-weight", "--socket", sock, "web", "10.0.0.7", "-1"}, 2, "xlb set-weight: weight \"-1\": want an integer from 0 to 65535\n"},
		{[]string{"reset-weight", "--socket", sock, "web"}, 2, "usage: xlb reset-weight [--socket PATH | --config FILE] SERVICE ADDR[:PORT]\n"},
	} {
		code, out, errs := runCmd(tc.args...)
		if code != tc.code || out+errs != tc.out {
			t.Errorf("%v: %d %q %q, want %d %q", tc.args, code, out, errs, tc.code, tc.out)
		}
	}
	if want := []string{"set web 10.0.0.7:80 0 by-uid-0:true", "reset web 10.0.0.9"}; strings.Join(h.got, "|") != strings.Join(want, "|") {
		t.Errorf("served %q, want %q", h.got, want)
	}
}
