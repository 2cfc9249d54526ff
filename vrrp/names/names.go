// Package names declares the names VRRP shares with the configuration:
// an instance's state (its role) and the VRRPv2 authentication types. It
// imports only the standard library, so that config may import it; vrrp
// uses them under the same names (vrrp.State, vrrp.Master, vrrp.AuthPass).
package names

import (
	"fmt"
	"strings"
)

// State is the role of a VRRP instance (RFC 5798 section 6.4, plus
// keepalived's FAULT).
type State int

const (
	// Init is the state before the instance has started (RFC 5798
	// Initialize), and while its track scripts have not reported yet.
	Init State = iota
	// Backup monitors the master and takes over when it goes silent.
	Backup
	// Master owns the virtual addresses and advertises.
	Master
	// Fault: a tracked interface is down or a tracked script fails with
	// weight 0; the instance neither advertises nor takes over.
	Fault
)

var stateNames = [...]string{Init: "INIT", Backup: "BACKUP", Master: "MASTER", Fault: "FAULT"}

// String gives keepalived's names: "INIT", "BACKUP", "MASTER", "FAULT".
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("invalid vrrp state %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText accepts the names String gives, in any case; the empty
// string is Init.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseState parses "INIT", "BACKUP", "MASTER" or "FAULT" in any case; ""
// is Init.
func ParseState(name string) (State, error) {
	if name == "" {
		return Init, nil
	}
	for i, n := range stateNames {
		if strings.EqualFold(n, name) {
			return State(i), nil
		}
	}
	return Init, fmt.Errorf("unknown vrrp state %q (want MASTER, BACKUP, FAULT or INIT)", name)
}

// AuthType is the VRRPv2 authentication type.
type AuthType string

const (
	AuthNone AuthType = ""     // no authentication
	AuthPass AuthType = "PASS" // simple text password, first 8 bytes (RFC 2338 / keepalived)
	AuthAH   AuthType = "AH"   // IPsec AH: not supported (vrrp.ErrAHNotSupported)
)

// AuthTypes are the authentication types a configuration may name.
var AuthTypes = []AuthType{AuthPass, AuthAH}
