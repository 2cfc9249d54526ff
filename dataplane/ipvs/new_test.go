//go:build !vmtest

package ipvs

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// On a kernel without IPVS (this project's CI hosts), New must say so with
// ErrNotSupported, for the daemon's auto mode.
func TestNewWithoutIPVS(t *testing.T) {
	if _, err := os.Stat("/sys/module/ip_vs"); err == nil {
		t.Skip("this kernel has IPVS loaded; the VM tests cover New on such kernels")
	}
	if hasIPVSModule() {
		t.Skip("this kernel has an ip_vs module; the VM tests cover New on such kernels")
	}
	d, err := New(Options{})
	if err == nil {
		d.Close()
		t.Fatal("New succeeded on a kernel without IPVS")
	}
	if !errors.Is(err, dataplane.ErrNotSupported) || !strings.Contains(err.Error(), "IPVS") {
		t.Fatalf("New: %v, want an error wrapping ErrNotSupported that names IPVS", err)
	}
	t.Logf("New: %v", err)
}

// hasIPVSModule reports whether modprobe could load ip_vs on this host.
func hasIPVSModule() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	b, err := os.ReadFile("/lib/modules/" + rel + "/modules.dep")
	if err != nil {
		b, _ = os.ReadFile("/usr/lib/modules/" + rel + "/modules.dep")
	}
	return strings.Contains(string(b), "/ip_vs.ko")
}
