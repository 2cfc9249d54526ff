// Package health runs the health checks of real servers, keepalived's
// checkers one file each: a TCP SYN (tcp.go, synprobe.go, TCP_CHECK), HTTP and HTTPS
// GET (http.go, HTTP_GET and SSL_GET), UDP datagrams (udp.go, UDP_CHECK),
// DNS queries (dns.go, DNS_CHECK), the SMTP greeting (smtp.go,
// SMTP_CHECK), ICMP echo (ping.go, PING_CHECK), a file's number (file.go,
// FILE_CHECK) and external scripts (script.go, MISC_CHECK), scheduled with
// jitter by a Manager that uses one scheduler goroutine and a bounded pool
// of workers.
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
//
// Some checks also set their real server's weight (a WeightChecker: a
// script with MiscDynamic, a file check): the Weight of its last successful
// run travels with its Transitions.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// Checker probes one real server once. Check returns nil when the server is
// healthy. It must honour ctx's deadline (the Manager sets it to
// Spec.Timeout) and return promptly when ctx is done.
type Checker interface {
	Check(ctx context.Context) error
}

// WeightChecker is a Checker whose runs also tell the weight their real
// server should have (a script with MiscDynamic, a file check). The
// Manager calls CheckWeight instead of Check; the Weight of a run that
// fails is ignored (the last successful run's stays).
type WeightChecker interface {
	Checker
	CheckWeight(ctx context.Context) (Weight, error)
}

// WeightMode says how a Weight changes the configured weight.
type WeightMode uint8

// The weight modes.
const (
	WeightConfigured WeightMode = iota // the configured weight (the zero Weight)
	WeightSet                          // Value replaces it (misc_dynamic)
	WeightAdd                          // Value is added to it (FILE_CHECK with a weight)
)

// MaxWeight is the largest weight of a real server (IPVS's, keepalived's
// IPVS_WEIGHT_MAX).
const MaxWeight = 65535

// Weight is what a check says of its real server's weight. The zero
// Weight keeps the configured one.
type Weight struct {
	Mode  WeightMode
	Value int64
}

// Apply returns the weight of a real server configured with configured:
// Value set or added, bounded to 0..MaxWeight (keepalived's real_weight).
func (w Weight) Apply(configured uint32) uint32 {
	v := int64(configured)
	switch w.Mode {
	case WeightSet:
		v = w.Value
	case WeightAdd:
		v += w.Value
	}
	return uint32(min(max(v, 0), MaxWeight))
}

func (w Weight) String() string {
	switch w.Mode {
	case WeightSet:
		return fmt.Sprintf("set %d", w.Value)
	case WeightAdd:
		return fmt.Sprintf("%+d", w.Value)
	}
	return "configured"
}

// MarshalText makes Weight print as String in JSON and logs.
func (w Weight) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// Type is the kind of a health check, declared with its properties in
// checktype.Table; each has its constructor in checkers.
type Type = checktype.Type

// HTTP protocol versions of a request (keepalived's http_protocol).
const (
	HTTP10      = "1.0"  // HTTP/1.0 (keepalived's default)
	HTTP10Close = "1.0C" // HTTP/1.0 with Connection: close
	HTTP11      = "1.1"  // HTTP/1.1 with Connection: close (xlb's default)
)

// URL is one URL of an HTTP or HTTPS check (keepalived's url block).
// Empty fields take the Spec's.
type URL struct {
	Path         string
	ExpectStatus []int
	BodyRegex    string
	Digest       string // the MD5 of the body, 32 hex digits
	Host         string
}

func (u URL) equal(o URL) bool {
	return u.Path == o.Path && slices.Equal(u.ExpectStatus, o.ExpectStatus) &&
		u.BodyRegex == o.BodyRegex && u.Digest == o.Digest && u.Host == o.Host
}

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
	// Warmup bounds the time to the first run of a new check, drawn at
	// random (keepalived's warmup): 0 within the first Interval, negative
	// at once.
	Warmup time.Duration

	// Every check that opens a socket (tcp, http, https, udp, dns, smtp,
	// ping): ConnectIP, when valid, is checked instead of Target's address
	// (keepalived's connect_ip), and BindTo, when valid, is the source
	// address (bindto).
	ConnectIP netip.Addr
	BindTo    netip.Addr

	// HTTP and HTTPS. Path, ExpectStatus, BodyRegex and Digest make the
	// URL checked when URLs is empty; with URLs, each is checked in turn
	// and all must pass (keepalived's url blocks).
	Path         string // request path, "/" when empty
	ExpectStatus []int  // accepted status codes; any 2xx when empty
	BodyRegex    string // when set, the body (first 1 MiB) must match
	Digest       string // when set, the MD5 of the body, 32 hex digits
	Host         string // Host header; the target address when empty
	URLs         []URL
	HTTPProtocol string // HTTP10, HTTP10Close or HTTP11 (""): the request's version

	// UDP: Payload is sent (hex digits, white space allowed; 32 bytes of
	// "xlb check - " when empty). Without RequireReply, the check passes
	// unless an ICMP error answers within the timeout; with it, a reply
	// must come, and start with Reply when that is set (hex digits, x a
	// wildcard nibble).
	Payload      string
	RequireReply bool
	Reply        string

	// DNS: the query's name ("." when empty) and type (SOA when empty).
	DNSName string
	DNSType string

	// SMTP: the HELO name; the host name when empty.
	HeloName string

	// File: the file read, the weight its number is multiplied by, and
	// whether the result is reversed (keepalived's FILE_CHECK / track_file).
	File        string
	FileWeight  int
	FileReverse bool

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
	// MiscDynamic: exit status 2..255 is up with weight status - 2, 0 up
	// with the configured weight, anything else down (keepalived's
	// misc_dynamic).
	MiscDynamic bool

	// InitialUp makes a new check start Up instead of Unknown. It has no
	// effect on a check that already exists.
	InitialUp bool
}

// Equal reports whether two Specs describe the same check with the same
// timing.
func (s Spec) Equal(o Spec) bool {
	return s.sameProbe(o) &&
		s.Interval == o.Interval && s.Timeout == o.Timeout &&
		s.Fall == o.Fall && s.Rise == o.Rise && s.InitialUp == o.InitialUp &&
		s.Warmup == o.Warmup
}

// sameProbe reports whether two Specs probe the same thing the same way,
// ignoring timing, thresholds, Warmup and InitialUp. A check whose probe
// is unchanged keeps its state across Manager.Update.
func (s Spec) sameProbe(o Spec) bool {
	return s.Target == o.Target && s.sameProbeExceptTarget(o)
}

// equalExceptTarget is Equal for Specs whose targets are compared apart
// (Manager.UpdateChecks).
func (s *Spec) equalExceptTarget(o Spec) bool {
	return s.sameProbeExceptTarget(o) &&
		s.Interval == o.Interval && s.Timeout == o.Timeout &&
		s.Fall == o.Fall && s.Rise == o.Rise && s.InitialUp == o.InitialUp &&
		s.Warmup == o.Warmup
}

func (s *Spec) sameProbeExceptTarget(o Spec) bool {
	return s.Type == o.Type && s.Path == o.Path &&
		slices.Equal(s.ExpectStatus, o.ExpectStatus) && s.BodyRegex == o.BodyRegex &&
		s.Host == o.Host && s.SNI == o.SNI && s.TLSVerify == o.TLSVerify &&
		s.CAFile == o.CAFile && s.Script == o.Script &&
		s.ConnectIP == o.ConnectIP && s.BindTo == o.BindTo && s.Digest == o.Digest &&
		slices.EqualFunc(s.URLs, o.URLs, URL.equal) && s.HTTPProtocol == o.HTTPProtocol &&
		s.Payload == o.Payload && s.RequireReply == o.RequireReply && s.Reply == o.Reply &&
		s.DNSName == o.DNSName && s.DNSType == o.DNSType && s.HeloName == o.HeloName &&
		s.File == o.File && s.FileWeight == o.FileWeight && s.FileReverse == o.FileReverse &&
		s.MiscDynamic == o.MiscDynamic && s.Service == o.Service
}

// clone returns s with its slices copied, so that the caller may keep
// changing its own.
func (s Spec) clone() Spec {
	s.ExpectStatus = slices.Clone(s.ExpectStatus)
	s.URLs = slices.Clone(s.URLs)
	for i := range s.URLs {
		s.URLs[i].ExpectStatus = slices.Clone(s.URLs[i].ExpectStatus)
	}
	return s
}

// target is the address and port a check connects to: Target, with
// ConnectIP's address when set.
func (s Spec) target() netip.AddrPort {
	if s.ConnectIP.IsValid() {
		return netip.AddrPortFrom(s.ConnectIP, s.Target.Port())
	}
	return s.Target
}

// Validate reports the first problem that makes s unusable.
func (s Spec) Validate() error {
	t, ok := s.Type.Spec()
	switch {
	case s.Type == checktype.None:
		return nil
	case s.Type == "":
		return errors.New("missing check type")
	case !ok:
		names := make([]string, len(checktype.Table))
		for i, t := range checktype.Table {
			names[i] = string(t.Type)
		}
		return fmt.Errorf("unknown check type %q (want %s)", s.Type, strings.Join(names, ", "))
	}
	if !s.Target.Addr().IsValid() {
		return errors.New("missing target address")
	}
	if s.Target.Port() == 0 && t.Port {
		return errors.New("missing target port")
	}
	if s.ConnectIP.IsValid() && s.BindTo.IsValid() && s.ConnectIP.Is4() != s.BindTo.Is4() {
		return fmt.Errorf("bindto %s and connect_ip %s: not of one family", s.BindTo, s.ConnectIP)
	}
	if !s.ConnectIP.IsValid() && s.BindTo.IsValid() && s.Target.Addr().Is4() != s.BindTo.Is4() {
		return fmt.Errorf("bindto %s and target %s: not of one family", s.BindTo, s.Target.Addr())
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
	case checktype.HTTP, checktype.HTTPS:
		return validHTTP(s)
	case checktype.UDP:
		return validUDP(s)
	case checktype.DNS:
		return validDNS(s)
	case checktype.File:
		if s.File == "" {
			return errors.New("missing file")
		}
	case checktype.Script:
		if !validScript(s.Script) {
			return errors.New("missing script")
		}
	}
	return nil
}

// NewChecker validates s and returns the Checker for its type. Script
// checks run as the daemon's user (Manager uses Options.Scripts).
func NewChecker(s Spec) (Checker, error) { return newChecker(s, checkerEnv{}) }

// checkerEnv is what the Manager gives its checkers.
type checkerEnv struct {
	scripts ScriptRunner // nil: a default Runner
	log     *slog.Logger // nil discards
}

func newChecker(s Spec, env checkerEnv) (Checker, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return checkers[s.Type](s, env)
}

// checkers build the Checker of each type of checktype.Table.
var checkers = map[Type]func(Spec, checkerEnv) (Checker, error){
	checktype.TCP:    func(s Spec, e checkerEnv) (Checker, error) { return newTCPChecker(s, e.log), nil },
	checktype.HTTP:   func(s Spec, _ checkerEnv) (Checker, error) { return newHTTPChecker(s) },
	checktype.HTTPS:  func(s Spec, _ checkerEnv) (Checker, error) { return newHTTPChecker(s) },
	checktype.UDP:    func(s Spec, _ checkerEnv) (Checker, error) { return newUDPChecker(s) },
	checktype.DNS:    func(s Spec, _ checkerEnv) (Checker, error) { return newDNSChecker(s) },
	checktype.SMTP:   func(s Spec, _ checkerEnv) (Checker, error) { return newSMTPChecker(s), nil },
	checktype.Ping:   func(s Spec, _ checkerEnv) (Checker, error) { return newPingChecker(s), nil },
	checktype.File:   func(s Spec, _ checkerEnv) (Checker, error) { return newFileChecker(s), nil },
	checktype.Script: func(s Spec, e checkerEnv) (Checker, error) { return newScriptChecker(s, e.scripts), nil },
	checktype.None:   func(Spec, checkerEnv) (Checker, error) { return noneChecker{}, nil },
}

// noneChecker is the checker of type none: always healthy.
type noneChecker struct{}

func (noneChecker) Check(context.Context) error { return nil }

// dialer returns the dialer of a check over network ("tcp" or "udp"):
// from BindTo when set.
func dialer(s Spec, network string) *net.Dialer {
	d := &net.Dialer{}
	if s.BindTo.IsValid() {
		if network == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: s.BindTo.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: s.BindTo.AsSlice()}
		}
	}
	return d
}

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

// deadlinePast is set as a socket's deadline to end its blocked I/O when
// the check's context is done.
var deadlinePast = time.Unix(1, 0)
