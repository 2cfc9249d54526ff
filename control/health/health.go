// Package health runs the health checks of real servers: TCP connect, HTTP
// and HTTPS GET, and external scripts, scheduled with jitter by a Manager
// that uses one scheduler goroutine and a bounded pool of workers.
//
// The package knows nothing about the configuration file, VRRP or the
// dataplane: the control plane converts its configuration into Specs, calls
// Manager.Update, reads the checks' states (Manager.States, the one source
// of the real servers' health) and reconciles on every Transition.
//
// State machine (keepalived's "alpha" semantics): a new check starts
// Unknown, which counts as down for traffic, unless Spec.InitialUp is set.
// It becomes Up after Rise consecutive successes and Down after Fall
// consecutive failures, whatever state it was in (so Unknown becomes Down
// after Fall failures, and Unknown becomes Up after Rise successes). A
// check of type "none" is always Up and never runs.
package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"time"
)

// Checker probes one real server once. Check returns nil when the server is
// healthy. It must honour ctx's deadline (the Manager sets it to
// Spec.Timeout) and return promptly when ctx is done.
type Checker interface {
	Check(ctx context.Context) error
}

// Type is the kind of a health check.
type Type string

// The check types.
const (
	TypeTCP    Type = "tcp"    // TCP connect
	TypeHTTP   Type = "http"   // HTTP GET
	TypeHTTPS  Type = "https"  // HTTP GET over TLS
	TypeScript Type = "script" // external program, exit 0 = up
	TypeNone   Type = "none"   // no check: always up
)

// Spec describes one check of one real server. The zero value is not
// valid; the control plane fills every field it needs (defaults belong to
// the configuration). Use Equal to compare Specs (ExpectStatus is a slice).
type Spec struct {
	Type   Type
	Target netip.AddrPort // the real server; Type none ignores it

	Interval time.Duration // between the end of one run and the start of the next (jittered ±10%)
	Timeout  time.Duration // of one run
	Fall     int           // consecutive failures that make the check Down
	Rise     int           // consecutive successes that make the check Up

	// HTTP and HTTPS.
	Path         string // request path, "/" when empty
	ExpectStatus []int  // accepted status codes; any 2xx when empty
	BodyRegex    string // when set, the body (first 1 MiB) must match
	Host         string // Host header; the target address when empty

	// HTTPS only.
	SNI       string // TLS server name; Host when empty; none sent when both are empty
	TLSVerify bool   // verify the certificate chain and the server name
	CAFile    string // PEM roots for TLSVerify; the system roots when empty

	// Script: a command line, split into words as the configuration's
	// commands and run without a shell (control/command). The real
	// server's address and port are appended as two more arguments and set
	// as XLB_RS_ADDR and XLB_RS_PORT; Service, when set, as XLB_VS_NAME.
	Script  string
	Service string

	// InitialUp makes a new check start Up instead of Unknown. It has no
	// effect on a check that already exists.
	InitialUp bool
}

// Equal reports whether two Specs describe the same check with the same
// timing.
func (s Spec) Equal(o Spec) bool {
	return s.sameProbe(o) &&
		s.Interval == o.Interval && s.Timeout == o.Timeout &&
		s.Fall == o.Fall && s.Rise == o.Rise && s.InitialUp == o.InitialUp
}

// sameProbe reports whether two Specs probe the same thing the same way,
// ignoring timing, thresholds and InitialUp. A check whose probe is
// unchanged keeps its state across Manager.Update.
func (s Spec) sameProbe(o Spec) bool {
	return s.Type == o.Type && s.Target == o.Target && s.Path == o.Path &&
		slices.Equal(s.ExpectStatus, o.ExpectStatus) && s.BodyRegex == o.BodyRegex &&
		s.Host == o.Host && s.SNI == o.SNI && s.TLSVerify == o.TLSVerify &&
		s.CAFile == o.CAFile && s.Script == o.Script
}

// Validate reports the first problem that makes s unusable.
func (s Spec) Validate() error {
	switch s.Type {
	case TypeNone:
		return nil
	case TypeTCP, TypeHTTP, TypeHTTPS, TypeScript:
	case "":
		return errors.New("missing check type")
	default:
		return fmt.Errorf("unknown check type %q (want tcp, http, https, script or none)", s.Type)
	}
	if !s.Target.Addr().IsValid() {
		return errors.New("missing target address")
	}
	if s.Target.Port() == 0 && s.Type != TypeScript {
		return errors.New("missing target port")
	}
	if s.Interval <= 0 {
		return fmt.Errorf("interval %v: must be positive", s.Interval)
	}
	if s.Timeout <= 0 {
		return fmt.Errorf("timeout %v: must be positive", s.Timeout)
	}
	if s.Fall < 1 {
		return fmt.Errorf("fall %d: must be at least 1", s.Fall)
	}
	if s.Rise < 1 {
		return fmt.Errorf("rise %d: must be at least 1", s.Rise)
	}
	switch s.Type {
	case TypeHTTP, TypeHTTPS:
		for _, c := range s.ExpectStatus {
			if c < 100 || c > 599 {
				return fmt.Errorf("expected status %d: not an HTTP status code", c)
			}
		}
		if _, err := regexp.Compile(s.BodyRegex); err != nil {
			return fmt.Errorf("body regex: %w", err)
		}
		if s.Path != "" && s.Path[0] != '/' {
			return fmt.Errorf("path %q: must start with /", s.Path)
		}
	case TypeScript:
		if !validScript(s.Script) {
			return errors.New("missing script")
		}
	}
	return nil
}

// NewChecker validates s and returns the Checker for its type. Script
// checks run as the daemon's user (Manager uses Options.Scripts).
func NewChecker(s Spec) (Checker, error) { return newChecker(s, nil) }

func newChecker(s Spec, scripts ScriptRunner) (Checker, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	switch s.Type {
	case TypeTCP:
		return newTCPChecker(s), nil
	case TypeHTTP, TypeHTTPS:
		return newHTTPChecker(s)
	case TypeScript:
		return newScriptChecker(s, scripts), nil
	default:
		return noneChecker{}, nil
	}
}

// noneChecker is the checker of type none: always healthy.
type noneChecker struct{}

func (noneChecker) Check(context.Context) error { return nil }

// State is the health of a check.
type State uint8

// The states. Unknown counts as down for traffic.
const (
	StateUnknown State = iota
	StateUp
	StateDown
)

func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// MarshalText makes State print as its name in JSON and logs.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
