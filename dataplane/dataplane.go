// Package dataplane defines what the control plane drives: a desired set of
// virtual services and their real servers, applied idempotently, the
// counters read back, and what the dataplane can do and hold
// (Capabilities). Implementations: xdp (the eBPF fast path), ipvs (the
// kernel's IPVS, the fallback); dataplane/open opens the one a
// configuration asks for, dataplanetest has an in-memory fake for tests.
// The schedulers, forwarding modes and other names are declared once, in
// names.go, with what each layer needs of them.
package dataplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// ErrNotSupported is returned (wrapped) when a dataplane cannot do what a
// service asks for on this kernel, e.g. a scheduler IPVS lacks.
var ErrNotSupported = errors.New("not supported")

// ServiceKey identifies a virtual service, as ipvsadm's -t/-u VIP:port.
type ServiceKey struct {
	Addr  netip.Addr
	Port  uint16
	Proto Proto
}

func (k ServiceKey) String() string {
	return k.Proto.String() + "/" + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// Compare orders service keys by address, port and protocol.
func (k ServiceKey) Compare(o ServiceKey) int {
	return cmp.Or(k.Addr.Compare(o.Addr), cmp.Compare(k.Port, o.Port), cmp.Compare(k.Proto, o.Proto))
}

// BackendKey identifies a real server within a service.
type BackendKey struct {
	Addr netip.Addr
	Port uint16
}

func (k BackendKey) String() string { return netip.AddrPortFrom(k.Addr, k.Port).String() }

// Compare orders backend keys by address and port.
func (k BackendKey) Compare(o BackendKey) int {
	return cmp.Or(k.Addr.Compare(o.Addr), cmp.Compare(k.Port, o.Port))
}

// TunnelOptions configure a tunnel-mode service.
type TunnelOptions struct {
	Encap Encap
	// GUEPort is the UDP destination port of GUE packets.
	GUEPort uint16
	// Source is the outer source address. A prefix shorter than the full
	// address length varies the host bits per flow so that real servers'
	// NICs spread flows over their queues. Invalid (zero): the director's
	// address on the egress interface.
	Source netip.Prefix
}

// Service is one virtual service and its real servers, as desired by the
// control plane.
type Service struct {
	// Name is the operator's name for the service, used in logs and metrics.
	Name      string
	Key       ServiceKey
	Scheduler Scheduler
	Forward   ForwardMode
	// Persistence is ipvsadm -p: new flows from a client address go to the
	// real server it used last, while it keeps a non-zero weight, until the
	// client has been idle this long. Zero disables persistence.
	Persistence time.Duration
	// Enabled false makes the dataplane leave the service's traffic to the
	// kernel (e.g. while its VRRP instance is not MASTER). Connection state
	// is kept, so flows resume when the service is enabled again.
	Enabled bool
	// Tunnel applies when Forward is Tunnel.
	Tunnel TunnelOptions
	// Backends in configuration order; the order is part of the scheduling
	// (rr/wrr cycle order, lc tie-break), as in IPVS.
	Backends []Backend
}

// Backend is a real server of a service.
type Backend struct {
	Addr netip.Addr
	// Weight 0 drains: no new flows, established flows stay.
	Weight uint32
	// UpperThreshold and LowerThreshold are ipvsadm's -x and -y: a real
	// server whose connections (active and inactive, as IPVS counts them)
	// reach UpperThreshold takes no new flows until they fall below
	// LowerThreshold, or below 3/4 of UpperThreshold when LowerThreshold
	// is 0. UpperThreshold 0: no limit. LowerThreshold <= UpperThreshold.
	UpperThreshold uint32
	LowerThreshold uint32
	// Ifindex and MAC are the next hop of a direct-routing real server on
	// the director's attached interfaces, resolved by the control plane
	// from the neighbour table. A DR backend without a MAC gets no new flows.
	// An int32, as the kernel's: a Backend is 48 bytes, and a service's 64
	// fill a 3,072-byte size class of Go's allocator, not 4,096.
	Ifindex int32
	// Port is the real server's port. NAT may map ports (VIP:80 ->
	// RIP:8080); DR and tunnel modes require it to equal the service port.
	Port uint16
	MAC  MAC
}

// MAC is an Ethernet address, held by value: a Backend is 48 bytes, not
// 80 with a net.HardwareAddr and its own allocation (65,536 of them in
// each copy of the desired state). The zero MAC is none: not resolved.
type MAC [6]byte

// MACFrom is hw as a MAC; the zero MAC unless hw is 6 bytes long.
func MACFrom(hw net.HardwareAddr) MAC {
	var m MAC
	if len(hw) == len(m) {
		copy(m[:], hw)
	}
	return m
}

// Valid reports whether m is a MAC, not none.
func (m MAC) Valid() bool { return m != MAC{} }

// String is m as net.HardwareAddr writes it; empty for none.
func (m MAC) String() string {
	if !m.Valid() {
		return ""
	}
	return net.HardwareAddr(m[:]).String()
}

// Key returns the backend's key.
func (b Backend) Key() BackendKey { return BackendKey{Addr: b.Addr, Port: b.Port} }

// Clone returns a copy of s that shares no memory with it.
func (s Service) Clone() Service {
	s.Backends = slices.Clone(s.Backends)
	return s
}

// ServiceEqual reports whether two services are configured identically.
func ServiceEqual(a, b Service) bool {
	if a.Name != b.Name || a.Key != b.Key || a.Scheduler != b.Scheduler || a.Forward != b.Forward ||
		a.Persistence != b.Persistence || a.Enabled != b.Enabled || a.Tunnel != b.Tunnel {
		return false
	}
	if len(a.Backends) > 0 && len(a.Backends) == len(b.Backends) && &a.Backends[0] == &b.Backends[0] {
		return true // the same backends: a round shares those of the services it did not compute
	}
	return slices.EqualFunc(a.Backends, b.Backends, BackendEqual)
}

// BackendEqual reports whether two backends are configured identically.
func BackendEqual(a, b Backend) bool {
	return a.Addr == b.Addr && a.Port == b.Port && a.Weight == b.Weight &&
		a.UpperThreshold == b.UpperThreshold && a.LowerThreshold == b.LowerThreshold &&
		a.MAC == b.MAC && a.Ifindex == b.Ifindex
}

// Counters are monotonic packet, byte and connection counts.
type Counters struct {
	Packets     uint64 // towards real servers (inbound)
	Bytes       uint64
	PacketsOut  uint64 // replies through the director (NAT)
	BytesOut    uint64
	Connections uint64 // new flows scheduled
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.Packets += o.Packets
	c.Bytes += o.Bytes
	c.PacketsOut += o.PacketsOut
	c.BytesOut += o.BytesOut
	c.Connections += o.Connections
}

// BackendStats are a real server's counters and connection counts.
type BackendStats struct {
	Key BackendKey // the real server's
	Counters
	// ActiveConns are established TCP connections; InactiveConns the rest
	// still tracked (half-open, closing, UDP), as ipvsadm's ActiveConn and
	// InActConn.
	ActiveConns   uint64
	InactiveConns uint64
}

// ServiceStats are a service's counters and its real servers'.
type ServiceStats struct {
	Counters
	// Backends are the real servers' stats, one each, in the order of the
	// Backends of the Service applied where the dataplane keeps it (XDP),
	// in the dataplane's own order otherwise (IPVS). A slice, not a map:
	// 5.6 MB at 64,000 real servers, where a map per service took 11 MB,
	// held as long as a status streams.
	Backends []BackendStats
}

// Backend returns the stats of the real server k, zero if the service
// has none.
func (s ServiceStats) Backend(k BackendKey) BackendStats {
	b, _ := s.Find(k, -1)
	return b
}

// Find returns the stats of the real server k (zero and false if the
// service has none). i is where k is expected in Backends (its index in
// the applied Service's Backends): found there at once, searched
// otherwise.
func (s ServiceStats) Find(k BackendKey, i int) (BackendStats, bool) {
	if i >= 0 && i < len(s.Backends) && s.Backends[i].Key == k {
		return s.Backends[i], true
	}
	for _, b := range s.Backends {
		if b.Key == k {
			return b, true
		}
	}
	return BackendStats{}, false
}

// Stats is a snapshot of all counters.
type Stats struct {
	Services map[ServiceKey]ServiceStats
	// Verdicts counts packets by what the dataplane did with them (the
	// verdict / drop-reason enum shared with the BPF program), by name.
	Verdicts map[string]uint64
	// Events counts what happened besides the verdicts (fragments
	// forwarded, ICMP errors relayed, NAT replies), by name.
	Events map[string]uint64
}

// Info names the dataplane in use, for the operator (xlb status,
// xlb_dataplane_info). The control plane never branches on it: what it
// needs to know is in Capabilities.
type Info struct {
	Mode   string // "xdp" or "ipvs" or "fake"
	Attach string // "native" or "generic" for XDP; "" otherwise
}

// Capabilities say what a dataplane needs of the control plane and what it
// holds. They do not change while it is open.
type Capabilities struct {
	// NextHops: the control plane resolves next hops for the dataplane. A
	// direct-routing Backend takes new flows only with its MAC and Ifindex
	// set, and a tunnelled real server's next hop must be kept in the
	// kernel's neighbour table, where the dataplane looks it up (XDP).
	// False: the kernel resolves them (IPVS).
	NextHops bool
	// Limits are the most the dataplane holds.
	Limits Limits
}

// Dataplane is what the control plane drives.
//
// A dataplane may also implement Adopter, PinChecker and HostPreparer.
type Dataplane interface {
	// Apply makes the installed services equal to desired: services and
	// backends that did not change are left untouched (their connection
	// state and counters survive), and each change is atomic for new flows.
	// Apply is idempotent.
	Apply(ctx context.Context, desired []Service) error
	// Stats reads the counters.
	Stats(ctx context.Context) (*Stats, error)
	// Info says which dataplane this is.
	Info() Info
	// Capabilities say what it needs and holds.
	Capabilities() Capabilities
	// Detach stops forwarding and removes everything installed (programs,
	// pinned maps, IPVS services). The Dataplane must still be Closed.
	Detach() error
	// Close releases the Go side. What is installed stays and keeps
	// forwarding, so a restarted daemon can adopt it.
	Close() error
}

// Adopter is a dataplane that adopts what a previous process left
// installed (XDP: its pinned maps). Installed returns the services
// installed now: adopted at Open, or applied since. The control plane keeps
// what it adopted until its own inputs (health checks, VRRP roles,
// neighbours) report, so a restart changes nothing that forwards.
type Adopter interface {
	Installed() []Service
}

// An UnchangedApplier is a dataplane that can be told which services of
// an Apply are as its last Apply, which succeeded, had them: it need not
// compare those with what it installed (the reconciler knows them by the
// backends a round shares with the last; the XDP dataplane compared each
// of 65,536 backends with its own tables at every round).
type UnchangedApplier interface {
	// ApplyUnchanged is Apply, where unchanged[i] (when i is in range)
	// says that desired[i] equals (ServiceEqual) the service of its key
	// that the last Apply was given, and that Apply returned nil.
	ApplyUnchanged(ctx context.Context, desired []Service, unchanged []bool) error
}

// PinChecker is a dataplane that keeps state pinned outside the process
// (XDP): CheckPins pins again what was removed under it. The daemon calls
// it at every reload, an operator's occasion to have everything checked.
type PinChecker interface {
	CheckPins() error
}

// HostPreparer is a dataplane that needs the host set up for what it
// forwards (XDP: sysctls for NAT and tunnel next hops). The daemon calls
// PrepareHost at start and at every reload, before the services are
// applied, with every configured service and every real server it may use.
type HostPreparer interface {
	PrepareHost(services []Service)
}

// Validate checks a desired service set for the errors every dataplane
// rejects: unknown schedulers and modes, duplicate keys, port mismatches.
func Validate(services []Service) error {
	seen := make(map[ServiceKey]bool, len(services))
	// One map of backends for all services, cleared for each: one each
	// was 5 MB of garbage per Apply at 1,000 services of 64.
	backends := map[BackendKey]bool{}
	var errs []error
	for _, s := range services {
		if err := s.validate(backends); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[s.Key] {
			errs = append(errs, fmt.Errorf("service %s: duplicate %s", s.Name, s.Key))
		}
		seen[s.Key] = true
	}
	return errors.Join(errs...)
}

// validate checks s; seen is scratch space for its backends' keys.
func (s Service) validate(seen map[BackendKey]bool) error {
	if !s.Key.Addr.IsValid() || s.Key.Addr.Zone() != "" {
		return fmt.Errorf("service %s: invalid address %v", s.Name, s.Key.Addr)
	}
	if s.Key.Proto != TCP && s.Key.Proto != UDP {
		return fmt.Errorf("service %s: unsupported protocol %v", s.Name, s.Key.Proto)
	}
	if !s.Scheduler.Valid() {
		return fmt.Errorf("service %s: unknown scheduler %q", s.Name, s.Scheduler)
	}
	if !s.Forward.Valid() {
		return fmt.Errorf("service %s: unknown forwarding mode %q", s.Name, s.Forward)
	}
	if s.Persistence < 0 {
		return fmt.Errorf("service %s: negative persistence", s.Name)
	}
	clear(seen)
	for _, b := range s.Backends {
		if !b.Addr.IsValid() {
			return fmt.Errorf("service %s: invalid backend address", s.Name)
		}
		if s.Forward != Tunnel && b.Addr.Is4() != s.Key.Addr.Is4() {
			return fmt.Errorf("service %s: backend %s is not of the VIP's address family", s.Name, b.Key())
		}
		if s.Forward != NAT && b.Port != s.Key.Port {
			return fmt.Errorf("service %s: backend %s: port mapping needs forward = nat", s.Name, b.Key())
		}
		if seen[b.Key()] {
			return fmt.Errorf("service %s: duplicate backend %s", s.Name, b.Key())
		}
		if b.LowerThreshold > b.UpperThreshold {
			return fmt.Errorf("service %s: backend %s: lower threshold %d above the upper threshold %d", s.Name, b.Key(), b.LowerThreshold, b.UpperThreshold)
		}
		seen[b.Key()] = true
	}
	return nil
}
