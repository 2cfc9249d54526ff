package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// PeekDataplane reads the [dataplane] table alone, as Load reads it, or
// says it cannot.
func TestPeekDataplane(t *testing.T) {
	env := fakeEnv{"eth0": {netip.MustParsePrefix("10.0.0.1/24")}, "eth1": {netip.MustParsePrefix("10.1.0.1/24")}}
	const servers = `
[[virtual_server]]
name = "web"
address = "10.0.0.100"
port = 80
protocol = "tcp"
scheduler = "rr"
forward = "dr"
[[virtual_server.real_server]]
address = "10.0.0.2"
`
	for _, tc := range []struct {
		name, src string
		ok        bool
	}{
		{"first", "[dataplane] # the fast path\ninterfaces = [\n  \"eth0\",\n  \"eth1\", # both\n]\npin_path = \"/sys/fs/bpf/peek\"\nmode = \"xdp\"\n" + servers, true},
		{"after another table", "[global]\nrouter_id = \"a\"\n\n  [dataplane]\ninterfaces = [\"eth0\"]\ntcp_timeout = \"10m\"\n" + servers, true},
		{"last", "[global]\nrouter_id = \"a\"\n" + servers + "[dataplane]\ninterfaces = [\"eth0\"]\n", true},
		{"none", "[global]\nrouter_id = \"a\"\n" + servers, false},
		{"invalid alone", "[dataplane]\ninterfaces = [\"eth9\"]\n" + servers, false},
		{"a table named like it", "[dataplane_x]\n[dataplanes]\n" + servers, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "xlb.toml")
			if err := os.WriteFile(path, []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			got, ok := PeekDataplane(path, env)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v (%+v)", ok, tc.ok, got)
			}
			if !ok {
				return
			}
			c, err := Load(path, env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.Dataplane) {
				t.Errorf("peeked %+v\nloaded %+v", got, c.Dataplane)
			}
		})
	}
	if _, ok := PeekDataplane(filepath.Join(t.TempDir(), "missing.toml"), env); ok {
		t.Error("a missing file peeked")
	}
}
