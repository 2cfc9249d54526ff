package config

import (
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func parseFile(t *testing.T, path, prefix string) *Config {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(path, append([]byte(prefix), src...), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Changing any field but a Line makes Equal false; changing a Line does not.
func TestEqualSeesEveryField(t *testing.T) {
	for _, f := range []string{"examples/nat.toml", "examples/tunnel.toml", "examples/dual-master.toml", "examples/dr.toml"} {
		a := parseFile(t, f, "")
		b := parseFile(t, f, "")
		if !a.Equal(b) {
			t.Fatalf("%s: two parses differ", f)
		}
		leaves := 0
		forEachLeaf(reflect.ValueOf(b).Elem(), "", func(path string, v reflect.Value) {
			leaves++
			old := reflect.New(v.Type()).Elem()
			old.Set(v)
			mutate(v)
			isLine := strings.HasSuffix(path, ".Line")
			if got := a.Equal(b); got != isLine {
				t.Errorf("%s: changing %s: Equal = %v", f, path, got)
			}
			v.Set(old)
		})
		if leaves < 100 {
			t.Errorf("%s: only %d fields visited", f, leaves)
		}
		if !a.Equal(b) {
			t.Fatalf("%s: not restored", f)
		}
	}
}

// forEachLeaf calls fn with every settable non-struct field (and every
// netip value, duration and slice) under v.
func forEachLeaf(v reflect.Value, path string, fn func(string, reflect.Value)) {
	switch v.Interface().(type) {
	case netip.Addr, netip.Prefix, netip.AddrPort, time.Duration:
		fn(path, v)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			forEachLeaf(v.Field(i), path+"."+v.Type().Field(i).Name, fn)
		}
	case reflect.Slice:
		fn(path, v) // the length
		for i := range v.Len() {
			forEachLeaf(v.Index(i), path+"["+strconv.Itoa(i)+"]", fn)
		}
	default:
		fn(path, v)
	}
}

func mutate(v reflect.Value) {
	switch x := v.Interface().(type) {
	case netip.Addr:
		v.Set(reflect.ValueOf(x.Next()))
		return
	case netip.Prefix:
		v.Set(reflect.ValueOf(netip.MustParsePrefix("192.0.2.99/32")))
		if x == v.Interface() {
			v.Set(reflect.ValueOf(netip.Prefix{}))
		}
		return
	case netip.AddrPort:
		v.Set(reflect.ValueOf(netip.AddrPortFrom(x.Addr(), x.Port()+1)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint8, reflect.Uint16:
		v.SetUint(v.Uint() ^ 1)
	case reflect.Slice:
		if v.Len() > 0 {
			v.Set(v.Slice(0, v.Len()-1))
		} else {
			v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
		}
	default:
		panic("mutate: unhandled kind " + v.Kind().String())
	}
}

// Moving things in the file changes lines only: nothing is reported changed.
func TestEqualIgnoresLines(t *testing.T) {
	a := parseFile(t, "examples/nat.toml", "")
	b := parseFile(t, "examples/nat.toml", "# a new comment\n\n")
	if a.VirtualServers[0].Line == b.VirtualServers[0].Line {
		t.Fatal("lines did not move")
	}
	if !a.Equal(b) {
		t.Error("configs differ")
	}
	for i := range a.VirtualServers {
		if !a.VirtualServers[i].Equal(b.VirtualServers[i]) {
			t.Errorf("service %d differs", i)
		}
		for j := range a.VirtualServers[i].RealServers {
			ra, rb := a.VirtualServers[i].RealServers[j], b.VirtualServers[i].RealServers[j]
			if !ra.Equal(rb) || !ra.HealthCheck.Equal(rb.HealthCheck) {
				t.Errorf("real server %d/%d differs", i, j)
			}
		}
	}
	for i := range a.VRRPInstances {
		if !a.VRRPInstances[i].Equal(b.VRRPInstances[i]) {
			t.Errorf("instance %d differs", i)
		}
	}
	if !a.SyncGroups[0].Equal(b.SyncGroups[0]) {
		t.Error("sync group differs")
	}
}

// A reload diff: one real server's weight changed; everything else is equal.
func TestEqualPerElement(t *testing.T) {
	src, err := os.ReadFile("examples/nat.toml")
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "weight = 0 ", "weight = 3 ", 1)
	if changed == string(src) {
		t.Fatal("no weight to change")
	}
	a := mustParse(t, string(src))
	b := mustParse(t, changed)
	if a.Equal(b) {
		t.Fatal("configs equal")
	}
	web, webB := a.VirtualServers[0], b.VirtualServers[0]
	if web.Equal(webB) {
		t.Error("service web unchanged")
	}
	if !a.VirtualServers[1].Equal(b.VirtualServers[1]) {
		t.Error("service web-tls changed")
	}
	// Without its real servers the service itself is unchanged.
	web.RealServers, webB.RealServers = nil, nil
	if !web.Equal(webB) {
		t.Error("service web's own settings changed")
	}
	for j, rs := range a.VirtualServers[0].RealServers {
		rsB := b.VirtualServers[0].RealServers[j]
		if want := j != 2; rs.Equal(rsB) != want {
			t.Errorf("real server %d: Equal = %v, want %v", j, rs.Equal(rsB), want)
		}
		if !rs.HealthCheck.Equal(rsB.HealthCheck) {
			t.Errorf("real server %d: check changed", j)
		}
	}
	for i := range a.VRRPInstances {
		if !a.VRRPInstances[i].Equal(b.VRRPInstances[i]) {
			t.Errorf("instance %d changed", i)
		}
	}
	if a.VirtualServers[0].Key() != b.VirtualServers[0].Key() {
		t.Error("service key changed")
	}
}

func TestEqualNil(t *testing.T) {
	var a, b *Config
	if !a.Equal(b) || a.Equal(&Config{}) || (&Config{}).Equal(nil) {
		t.Error("nil handling")
	}
}
