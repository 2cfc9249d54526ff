package health

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// TestCheckSize holds the state of a check at 112 bytes, a size class of
// Go's allocator: 64,000 checks (issue 13) take 7 MB (8 MB at 128, with
// the last error in each check; 10 MB at 160); a field more that crosses
// into the next class costs 1 MB more.
func TestCheckSize(t *testing.T) {
	if got := unsafe.Sizeof(check{}); got > 112 {
		t.Errorf("check is %d bytes, want at most 112", got)
	}
}

// TestManagerHeapPerCheck measures the heap a Manager holds for each tcp
// check of a service's shared Spec, its key the caller's: the check, its
// entry in the list and the heap of next runs. 64,000 of them (issue 13)
// took 381 bytes each, with a tcpChecker of their own and times as
// time.Time; 245 with a check of 176 bytes, 229 with 160, 197 with 128,
// 161 with the checks in a list rather than a map by key (Manager.checks),
// 145 with the last errors beside the checks (Manager.lastErrs).
func TestManagerHeapPerCheck(t *testing.T) {
	const n = 20000
	spec := &Spec{Type: checktype.TCP, Interval: 5 * time.Second, Timeout: 2 * time.Second, Fall: 3, Rise: 2}
	list := make([]Check, n)
	for i := range list {
		list[i] = Check{
			Key:    fmt.Sprintf("svc-%d/10.201.%d.%d:8080", i/64, i/256, i%256),
			Spec:   spec,
			Target: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 201, byte(i / 256), byte(i % 256)}), 8080),
		}
	}
	heapNow := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heapNow()
	m := NewManager(Options{})
	if err := m.UpdateChecks(list); err != nil {
		t.Fatal(err)
	}
	per := float64(heapNow()-before) / n
	runtime.KeepAlive(m)
	runtime.KeepAlive(list)
	t.Logf("%.0f bytes per check", per)
	if per > 150 {
		t.Errorf("%.0f bytes of heap per check, want at most 150", per)
	}
}

// TestStatesIntoRefills: StatesInto gives what States gives, and refills
// the map it is given without allocating: the reconciler asks for the
// states of every check each round (64,000 of them: 3 MB a round).
func TestStatesIntoRefills(t *testing.T) {
	m := NewManager(Options{})
	spec := &Spec{Type: checktype.TCP, Interval: 5 * time.Second, Timeout: 2 * time.Second, Fall: 3, Rise: 2, InitialUp: true}
	var list []Check
	for i := range 1000 {
		target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 201, byte(i / 256), byte(i % 256)}), 8080)
		list = append(list, Check{Key: "svc/" + target.String(), Spec: spec, Target: target})
	}
	list = append(list, Check{Key: "none", Spec: &Spec{Type: checktype.None}})
	if err := m.UpdateChecks(list); err != nil {
		t.Fatal(err)
	}
	states := m.StatesInto(map[string]State{"gone": StateUp})
	if !maps.Equal(states, m.States()) {
		t.Fatalf("StatesInto differs from States: %d and %d checks, gone: %v", len(states), len(m.States()), states["gone"])
	}
	if allocs := testing.AllocsPerRun(10, func() { m.StatesInto(states) }); allocs > 0 {
		t.Errorf("refilling the states of 1,001 checks: %.0f allocations, want none", allocs)
	}
}

// TestTCPErrorLazy: a failed tcp check's error reads as fmt.Errorf's
// ("tcp connect: " and net.Dial's error, which it wraps) but costs one
// allocation of 64 bytes, which is all a check of a refusing real server
// holds of it (168 with net.Dial's error whole), and its message is made
// once, when first read: 64,000 checks of refusing real servers make one
// at every run, and a status reads them all, several times while they
// stand.
func TestTCPErrorLazy(t *testing.T) {
	if n := unsafe.Sizeof(tcpError{}); n > 64 {
		t.Errorf("tcpError is %d bytes, want at most 64", n)
	}
	refused := os.NewSyscallError("connect", unix.ECONNREFUSED)
	for _, tc := range []struct {
		target string
		why    error
	}{
		{"10.201.0.1:8080", refused},
		{"10.201.0.1:8080", os.ErrDeadlineExceeded},
		{"10.201.0.1:0", errCanceled},
		{"[2001:db8::1]:80", refused},
		{"[2001:db8:0:0:1:0:0:1]:443", refused},
		{"[fe80::1%eth0]:80", refused},
		{"[::ffff:10.0.0.1]:80", refused},
	} {
		target := netip.MustParseAddrPort(tc.target)
		why := opErr(target, tc.why)
		err := tcpErr(why)
		if want := fmt.Errorf("tcp connect: %w", why).Error(); err.Error() != want {
			t.Errorf("the error reads %q, want %q", err, want)
		}
		if !errors.Is(err, tc.why) {
			t.Errorf("%v does not wrap %v", err, tc.why)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Error() != why.Error() {
			t.Errorf("%v: net.Dial's error %v, want %v", err, oe, why)
		}
		if allocs := testing.AllocsPerRun(100, func() { err = tcpErr(why) }); allocs > 1 {
			t.Errorf("a tcp check's error: %.0f allocations, want 1", allocs)
		}
		// A Manager's run makes it without net.Dial's error.
		direct := tcpDialErr(target, tc.why)
		if direct.Error() != err.Error() || !errors.Is(direct, tc.why) {
			t.Errorf("tcpDialErr reads %q, want %q", direct, err)
		}
		var doe *net.OpError
		if !errors.As(direct, &doe) || doe.Error() != why.Error() {
			t.Errorf("tcpDialErr: net.Dial's error %v, want %v", doe, why)
		}
		// (One with a zone, or IPv4 as IPv6, keeps net.Dial's error.)
		if a := target.Addr(); a.Zone() == "" && !a.Is4In6() {
			if allocs := testing.AllocsPerRun(100, func() { direct = tcpDialErr(target, tc.why) }); allocs > 1 {
				t.Errorf("a tcp check's error made directly: %.0f allocations, want 1", allocs)
			}
		}
		_ = err.Error()
		if allocs := testing.AllocsPerRun(100, func() { _ = err.Error() }); allocs > 0 {
			t.Errorf("reading a tcp check's error again: %.0f allocations, want none", allocs)
		}
	}
	// What checks hold: the compact errors, not net.Dial's.
	const n = 10000
	errs := make([]error, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range errs {
		target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 201, byte(i >> 8), byte(i)}), 8080)
		errs[i] = tcpErr(opErr(target, refused))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(errs)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("a refused check's error holds %.0f bytes", per)
	if per > 80 {
		t.Errorf("a refused check's error holds %.0f bytes, want at most 80", per)
	}
}

// TestCheckAddress: the 16 bytes and family of a check's address give back
// the address it was made with: IPv4, IPv6, IPv4-mapped IPv6 (kept
// mapped), zoned (kept aside), none.
func TestCheckAddress(t *testing.T) {
	for _, s := range []string{"10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "fe80::1%eth0", ""} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		var c check
		c.setAddr(a)
		if got := c.address(); got != a {
			t.Errorf("%q: address %v, want %v", s, got, a)
		}
		if (c.ext != nil) != (a.Zone() != "") {
			t.Errorf("%q: ext %v", s, c.ext)
		}
	}
}

// TestLastErrsFollowChecks: the last errors beside the checks
// (Manager.lastErrs) hold one for each check that has one, and go with
// their check: a check removed leaves none behind, and the map goes once
// empty (a map keeps its size: a storm's would stay).
func TestLastErrsFollowChecks(t *testing.T) {
	m := NewManager(Options{})
	bad := &Spec{Type: "nosuch", Interval: time.Second, Timeout: time.Second, Fall: 1, Rise: 1}
	good := &Spec{Type: checktype.None}
	list := []Check{
		{Key: "a", Spec: bad, Target: netip.MustParseAddrPort("10.0.0.1:80")},
		{Key: "b", Spec: good, Target: netip.MustParseAddrPort("10.0.0.2:80")},
	}
	if err := m.UpdateChecks(list); err == nil {
		t.Fatal("an unknown check type was accepted")
	}
	states, errs := make([]State, 2), make([]error, 2)
	m.Lookup([]string{"a", "b"}, states, errs)
	if errs[0] == nil || errs[1] != nil || len(m.lastErrs) != 1 {
		t.Errorf("errors %v, %d kept; want a's alone", errs, len(m.lastErrs))
	}
	if err := m.UpdateChecks(list[1:]); err != nil {
		t.Fatal(err)
	}
	if m.lastErrs != nil {
		t.Errorf("the map of last errors is kept, with %d, after their check was removed", len(m.lastErrs))
	}
}
