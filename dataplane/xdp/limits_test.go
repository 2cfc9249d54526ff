package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
)

// The XDP dataplane refuses what it cannot hold whole: more interfaces
// than its devmap holds, before it loads or attaches anything, and a
// desired state over its limits, before it writes a map (it used to
// install the first 1024 services and fail on the rest).
func TestLimitsRefusedWhole(t *testing.T) {
	names := make([]string, Limits.Interfaces+1)
	for i := range names {
		names[i] = fmt.Sprintf("xlbt-none%d", i) // never looked up
	}
	_, err := Open(Options{Interfaces: names})
	var le *dataplane.LimitError
	if !errors.As(err, &le) || le.What != "interfaces" || le.Count != 65 || le.Max != 64 {
		t.Fatalf("open with 65 interfaces: %v, want the interface limit", err)
	}

	e := newEnv(t)
	services := make([]dataplane.Service, Limits.Services+1)
	for i := range services {
		services[i] = dataplane.Service{
			Name: fmt.Sprintf("s%d", i), Key: dataplane.ServiceKey{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Port: 80, Proto: dataplane.TCP},
			Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Enabled: true,
			Backends: []dataplane.Backend{{Addr: netip.MustParseAddr("10.2.0.1"), Port: 8080, Weight: 1}},
		}
	}
	err = e.d.Apply(t.Context(), services)
	if want := "1025 virtual servers, the XDP dataplane holds at most 1024"; err == nil || err.Error() != want {
		t.Fatalf("apply of 1025 services: %v, want %q", err, want)
	}
	if n := len(e.d.Installed()); n != 0 {
		t.Errorf("%d services installed by a refused apply, want none", n)
	}
}
