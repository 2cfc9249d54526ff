package vrrp

import "github.com/xlb-dev/xlb/vrrp/names"

// State is the role of a VRRP instance (RFC 5798 section 6.4, plus
// keepalived's FAULT), declared in vrrp/names.
type State = names.State

// The states.
const (
	Init   = names.Init
	Backup = names.Backup
	Master = names.Master
	Fault  = names.Fault
)

// ParseState parses "INIT", "BACKUP", "MASTER" or "FAULT" in any case; ""
// is Init.
func ParseState(name string) (State, error) { return names.ParseState(name) }

// AuthType is the VRRPv2 authentication type, declared in vrrp/names.
type AuthType = names.AuthType

// The authentication types.
const (
	AuthNone = names.AuthNone
	AuthPass = names.AuthPass
	AuthAH   = names.AuthAH // rejected with ErrAHNotSupported
)
