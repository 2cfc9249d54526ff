package health_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
)

func TestSpecValidate(t *testing.T) {
	t.Parallel()
	good := health.Spec{
		Type: checktype.HTTP, Target: netip.MustParseAddrPort("10.0.0.7:80"),
		Interval: 2 * time.Second, Timeout: time.Second, Fall: 3, Rise: 2, Path: "/", ExpectStatus: []int{200},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(s *health.Spec)
		want string
	}{
		{"no type", func(s *health.Spec) { s.Type = "" }, "missing check type"},
		{"unknown type", func(s *health.Spec) { s.Type = "icmp" }, `unknown check type "icmp"`},
		{"no target", func(s *health.Spec) { s.Target = netip.AddrPort{} }, "missing target address"},
		{"no port", func(s *health.Spec) { s.Target = netip.AddrPortFrom(s.Target.Addr(), 0) }, "missing target port"},
		{"zero interval", func(s *health.Spec) { s.Interval = 0 }, "interval 0s: must be positive"},
		{"negative timeout", func(s *health.Spec) { s.Timeout = -time.Second }, "timeout -1s: must be positive"},
		{"zero fall", func(s *health.Spec) { s.Fall = 0 }, "fall 0: must be at least 1"},
		{"zero rise", func(s *health.Spec) { s.Rise = 0 }, "rise 0: must be at least 1"},
		{"bad status", func(s *health.Spec) { s.ExpectStatus = []int{200, 2000} }, "expected status 2000"},
		{"bad regex", func(s *health.Spec) { s.BodyRegex = "(" }, "body regex: error parsing regexp"},
		{"relative path", func(s *health.Spec) { s.Path = "healthz" }, `path "healthz": must start with /`},
		{"empty script", func(s *health.Spec) { s.Type, s.Script = checktype.Script, "  " }, "missing script"},
	} {
		s := good
		tc.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
		if _, err := health.NewChecker(s); err == nil {
			t.Errorf("%s: NewChecker accepted it", tc.name)
		}
	}
	// A script may check a real server without a port (UDP services use
	// ports too, but the port is the script's business); none needs nothing.
	s := good
	s.Type, s.Script, s.Target = checktype.Script, "/bin/true", netip.AddrPortFrom(s.Target.Addr(), 0)
	if err := s.Validate(); err != nil {
		t.Errorf("script without port: %v", err)
	}
	if err := (health.Spec{Type: checktype.None}).Validate(); err != nil {
		t.Errorf("none: %v", err)
	}
}

func TestSpecEqual(t *testing.T) {
	t.Parallel()
	a := health.Spec{Type: checktype.HTTP, Target: netip.MustParseAddrPort("10.0.0.7:80"), Interval: time.Second, Timeout: time.Second, Fall: 1, Rise: 1, ExpectStatus: []int{200, 204}}
	b := a
	b.ExpectStatus = []int{200, 204} // another slice, same codes
	if !a.Equal(b) {
		t.Error("equal specs with distinct slices differ")
	}
	for name, edit := range map[string]func(s *health.Spec){
		"status":    func(s *health.Spec) { s.ExpectStatus = []int{200} },
		"interval":  func(s *health.Spec) { s.Interval *= 2 },
		"initialup": func(s *health.Spec) { s.InitialUp = true },
		"sni":       func(s *health.Spec) { s.SNI = "x" },
	} {
		c := a
		edit(&c)
		if a.Equal(c) {
			t.Errorf("%s changed but Equal says equal", name)
		}
	}
}

func TestStateString(t *testing.T) {
	t.Parallel()
	for s, want := range map[health.State]string{health.StateUnknown: "unknown", health.StateUp: "up", health.StateDown: "down"} {
		if b, _ := s.MarshalText(); s.String() != want || string(b) != want {
			t.Errorf("%d: %q %q, want %q", s, s.String(), b, want)
		}
	}
}
