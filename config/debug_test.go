package config

import (
	"strings"
	"testing"
)

// [debug] pprof_listen serves the profiles on loopback only.
func TestPprofListen(t *testing.T) {
	for listen, want := range map[string]string{
		"":               "",
		"127.0.0.1:6060": "",
		"[::1]:6060":     "",
		"localhost:6060": "",
		"0.0.0.0:6060":   `t.toml:4: [debug]: pprof_listen: "0.0.0.0:6060": only a loopback address (127.0.0.1, ::1, localhost) may serve the profiles`,
		"10.0.0.1:6060":  `only a loopback address`,
		"6060":           `t.toml:4: [debug]: pprof_listen: "6060" is not HOST:PORT ("" turns the profiles off)`,
	} {
		c, err := Parse("t.toml", []byte("[dataplane]\nmode = \"ipvs\"\n[debug]\npprof_listen = \""+listen+"\"\n"), nil)
		switch {
		case want == "" && (err != nil || c.Debug.PprofListen != listen):
			t.Errorf("%q: %v", listen, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want %q", listen, err, want)
		}
	}
}
