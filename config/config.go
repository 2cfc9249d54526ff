// Package config reads xlb's TOML configuration: it decodes the file,
// applies every default (keepalived's and ipvsadm's where they have one),
// and validates it, reporting every problem as FILE:LINE: message.
//
// The types hold resolved values (netip addresses, time.Duration, checked
// enumerations) so that the control plane only converts them. Each virtual
// server, real server, health check, VRRP instance, script and sync group
// keeps the line it was declared on, to locate runtime problems.
//
// The package imports neither vrrp/, control/ nor dataplane/: configuration
// flows config -> control -> dataplane.
package config

import (
	"net/netip"
	"strings"
	"time"
)

// Config is a whole configuration file.
type Config struct {
	// File is the name the configuration was read from.
	File           string
	Global         Global
	Dataplane      Dataplane
	Metrics        Metrics
	Control        Control
	VRRPScripts    []VRRPScript
	SyncGroups     []SyncGroup
	VRRPInstances  []VRRPInstance
	VirtualServers []VirtualServer
	// Warnings are what the file says that is accepted but worth telling
	// (as keepalived warns), each with its line; `xlb check` prints them,
	// the daemon logs them at start and reload.
	Warnings []Error
}

// Global is [global].
type Global struct {
	// RouterID identifies this director in logs and notifications
	// (keepalived's router_id). Default: the host name.
	RouterID string
}

// Mode selects the dataplane.
type Mode string

const (
	ModeAuto Mode = "auto" // XDP, falling back to IPVS when XDP cannot attach
	ModeXDP  Mode = "xdp"
	ModeIPVS Mode = "ipvs"
)

// XDPMode is how the XDP program is attached.
type XDPMode string

const (
	XDPAuto    XDPMode = "auto" // native, falling back to generic (skb) mode
	XDPNative  XDPMode = "native"
	XDPGeneric XDPMode = "generic"
)

// Dataplane is [dataplane].
type Dataplane struct {
	// Mode: default auto.
	Mode Mode
	// XDPMode: default auto. Only with mode xdp or auto.
	XDPMode XDPMode
	// Interfaces are where the XDP program is attached; required (non-empty)
	// for modes xdp and auto. Direct-routing real servers must be on a
	// subnet directly connected to one of them.
	Interfaces []string
	// PinPath is the bpffs directory for pinned programs and maps.
	// Default /sys/fs/bpf/xlb.
	PinPath string
	// KeepForwardingOnExit: on SIGTERM, leave the program and maps pinned
	// so forwarding continues (true), or detach (false, the default).
	KeepForwardingOnExit bool
	// Idle timeouts of tracked connections, whole seconds (IPVS defaults:
	// tcp 15m, tcp_fin 2m, udp 5m).
	TCPTimeout    time.Duration
	TCPFinTimeout time.Duration
	UDPTimeout    time.Duration
}

// Metrics is [metrics].
type Metrics struct {
	// Listen is the host:port of the Prometheus /metrics endpoint; ""
	// disables it. Port 0 picks a free port. Default 127.0.0.1:9477.
	Listen string
}

// Control is [control].
type Control struct {
	// Socket is the path of the control unix socket. Default
	// /run/xlb/xlb.sock.
	Socket string
}

// Command is a command line run by xlb (check scripts, notify scripts). It
// is split on white space, without a shell and without quoting: put
// anything more complex in a script file.
type Command string

// Argv returns the command split into words; nil for an empty command.
func (c Command) Argv() []string {
	f := strings.Fields(string(c))
	if len(f) == 0 {
		return nil
	}
	return f
}

// VRRPScript is a [[vrrp_script]]: a command whose exit status is tracked
// by VRRP instances (keepalived's vrrp_script).
type VRRPScript struct {
	Name   string
	Script Command
	// Interval between runs; default 1s.
	Interval time.Duration
	// Timeout after which a run counts as failed; default the interval.
	Timeout time.Duration
	// Weight, -253..253, default 0: 0 puts tracking instances in FAULT
	// while the script fails; a positive weight is added to their priority
	// while it succeeds, a negative one subtracted while it fails.
	Weight int
	// Fall consecutive failures make the script failed, Rise consecutive
	// successes make it OK again; both default 1.
	Fall int
	Rise int
	Line int
}

// SyncGroup is a [[vrrp_sync_group]]: instances that change state together.
type SyncGroup struct {
	Name string
	// Group lists the member instances (each in at most one group).
	Group        []string
	NotifyMaster Command
	NotifyBackup Command
	NotifyFault  Command
	NotifyStop   Command
	// Notify is run on every transition with the arguments keepalived
	// passes: "GROUP" name state.
	Notify Command
	Line   int
}

// State is a VRRP instance's initial state.
type State string

const (
	StateMaster State = "MASTER"
	StateBackup State = "BACKUP"
)

// AuthType is VRRPv2 authentication.
type AuthType string

const (
	AuthNone AuthType = ""
	// AuthPass is RFC 2338 simple text password (removed by RFC 3768,
	// kept by keepalived and here for interoperability).
	AuthPass AuthType = "PASS"
)

// VRRPInstance is a [[vrrp_instance]].
type VRRPInstance struct {
	Name string
	// Interface the adverts are sent and received on.
	Interface string
	// State is the initial wish; default BACKUP.
	State State
	// VirtualRouterID, 1..255, unique per interface and address family.
	VirtualRouterID uint8
	// Priority, 1..255, default 100. 255 is the address owner (RFC 5798
	// 5.2.4), which is always master: it requires state MASTER.
	Priority uint8
	// AdvertInt: default 1s; whole seconds 1..255 for version 2,
	// centiseconds 10ms..40.95s for version 3.
	AdvertInt time.Duration
	// Version 2 (the default, as keepalived's; IPv4 only) or 3 (RFC 5798).
	Version int
	// Preempt: a higher-priority backup takes over from a lower-priority
	// master (default true). false (keepalived's nopreempt) requires state
	// BACKUP.
	Preempt bool
	// PreemptDelay delays preemption, 0..1000s (default 0).
	PreemptDelay time.Duration
	// AuthType is AuthPass when auth_pass is set, else AuthNone; version 2
	// only.
	AuthType AuthType
	// AuthPass is at most 8 characters (the size of the advert's field).
	AuthPass string
	// UnicastSrcIP is the source of unicast adverts; invalid (zero): the
	// interface's primary address.
	UnicastSrcIP netip.Addr
	// UnicastPeers receive the adverts by unicast; empty: multicast
	// (224.0.0.18 / ff02::12).
	UnicastPeers []netip.Addr
	// VirtualIPAddresses are the VIPs, all of one family (the instance's).
	VirtualIPAddresses []VIP
	TrackScripts       []TrackScript
	TrackInterfaces    []TrackInterface
	NotifyMaster       Command
	NotifyBackup       Command
	NotifyFault        Command
	NotifyStop         Command
	// Notify is run on every transition with the arguments keepalived
	// passes: "INSTANCE" name state priority.
	Notify Command
	// NotifyTimeout is how long a notify command may run before it is
	// killed; default 10s (keepalived's startup/shutdown script timeout),
	// 1s..1000s.
	NotifyTimeout time.Duration
	// Gratuitous ARP / unsolicited NA on becoming master (keepalived's
	// defaults): a second burst GARPMasterDelay (5s) after the first, each
	// burst GARPMasterRepeat (5) messages; while master, a burst of
	// GARPMasterRefreshRepeat (1) every GARPMasterRefresh (0: never).
	// GARPInterval and GNAInterval space the messages (default 0).
	GARPMasterDelay         time.Duration
	GARPMasterRepeat        int
	GARPMasterRefresh       time.Duration
	GARPMasterRefreshRepeat int
	GARPInterval            time.Duration
	GNAInterval             time.Duration
	// UseVMAC uses the virtual router MAC (00-00-5E-00-01-VRID) on a macvlan.
	UseVMAC bool
	// SplitBrainCheckInterval (xlb extension) is how often a master probes
	// (ARP / neighbour solicitation) for another holder of its VIPs; 0
	// disables. Default 1s.
	SplitBrainCheckInterval time.Duration
	Line                    int
}

// Is6 reports whether the instance is IPv6 (its VIPs are).
func (v VRRPInstance) Is6() bool {
	return len(v.VirtualIPAddresses) > 0 && v.VirtualIPAddresses[0].Prefix.Addr().Is6()
}

// VIP is one virtual_ipaddress entry: "ADDR[/LEN] [dev IF] [label L]".
type VIP struct {
	// Prefix is the address with its prefix length (default /32 or /128),
	// as given (host bits kept).
	Prefix netip.Prefix
	// Dev is the interface the address is added to; default the instance's.
	Dev string
	// Label is the IPv4 address label ("eth1:1"); "" none.
	Label string
}

// TrackScript is a track_script entry: "NAME [weight N]".
type TrackScript struct {
	Name string
	// Weight, -253..253: the entry's, else the script's.
	Weight int
}

// TrackInterface is a track_interface entry: "IF [weight N]".
type TrackInterface struct {
	Name string
	// Weight, -253..253, default 0: 0 puts the instance in FAULT while the
	// interface is down; otherwise see VRRPScript.Weight.
	Weight int
}

// Protocol is a virtual service's transport protocol.
type Protocol string

const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Scheduler is an IPVS scheduler.
type Scheduler string

const (
	RoundRobin              Scheduler = "rr"
	WeightedRoundRobin      Scheduler = "wrr"
	LeastConnection         Scheduler = "lc"
	WeightedLeastConnection Scheduler = "wlc" // ipvsadm's default
	SourceHashing           Scheduler = "sh"
	MaglevHashing           Scheduler = "mh"
)

// Forward is a forwarding method (ipvsadm -g, -m, -i).
type Forward string

const (
	DirectRouting Forward = "dr" // ipvsadm's default
	NAT           Forward = "nat"
	Tunnel        Forward = "tunnel"
)

// TunnelType is the encapsulation of a tunnel-mode service.
type TunnelType string

const (
	TunnelNone TunnelType = ""     // not a tunnel-mode service
	TunnelIPIP TunnelType = "ipip" // IPv4-in-IPv4 / IPv6-in-IPv6
	TunnelGUE  TunnelType = "gue"  // generic UDP encapsulation
)

// ServiceKey identifies a virtual service: VIP, port and protocol.
type ServiceKey struct {
	Address  netip.Addr
	Port     uint16
	Protocol Protocol
}

// VirtualServer is a [[virtual_server]].
type VirtualServer struct {
	// Name is unique; used in logs, metrics and status.
	Name      string
	Address   netip.Addr
	Port      uint16
	Protocol  Protocol  // default tcp
	Scheduler Scheduler // default wlc
	Forward   Forward   // default dr
	// VRRPInstance, when set, names the instance whose VIPs include Address:
	// the service forwards only while that instance is MASTER. "": always.
	VRRPInstance string
	// PersistenceTimeout is ipvsadm -p, whole seconds; 0 (default) disables.
	PersistenceTimeout time.Duration
	// Quorum is keepalived's: the minimum total weight of healthy real
	// servers for the service to be up (default 1). Hysteresis (default 0,
	// less than Quorum) dampens flaps: up at >= Quorum+Hysteresis, down at
	// < Quorum-Hysteresis. QuorumUp/QuorumDown run on the transitions.
	Quorum     int
	Hysteresis int
	QuorumUp   Command
	QuorumDown Command
	// SorryServer, when valid, replaces the real servers while the quorum
	// is not met. Its port defaults to the service port.
	SorryServer netip.AddrPort
	// Tunnel settings, set only when Forward is Tunnel. TunnelType defaults
	// to ipip; TunnelPort is the GUE destination port (required for gue).
	// TunnelSource is the outer source: a single address (/32, /128), or a
	// prefix whose host bits vary per flow; invalid (zero) for the egress
	// interface's address.
	TunnelType   TunnelType
	TunnelPort   uint16
	TunnelSource netip.Prefix
	// HealthCheck is the service's check; its Port 0 means each real
	// server's port. Real servers hold their effective check.
	HealthCheck HealthCheck
	RealServers []RealServer
	Line        int
}

// Key returns the service's VIP:port/protocol.
func (v VirtualServer) Key() ServiceKey {
	return ServiceKey{Address: v.Address, Port: v.Port, Protocol: v.Protocol}
}

// RealServer is a [[virtual_server.real_server]].
type RealServer struct {
	Address netip.Addr
	// Port defaults to the service port; it must equal it for dr and
	// tunnel (only nat maps ports).
	Port uint16
	// Weight 0..65535, default 1; 0 takes no new flows.
	Weight int
	// HealthCheck is the effective check of this real server: the service's
	// check with the real server's own [..real_server.health_check] keys
	// over it, and Port resolved.
	HealthCheck HealthCheck
	Line        int
}

// AddrPort returns the real server's address and port.
func (r RealServer) AddrPort() netip.AddrPort { return netip.AddrPortFrom(r.Address, r.Port) }

// CheckType is a health check type.
type CheckType string

const (
	CheckTCP    CheckType = "tcp"    // connect
	CheckHTTP   CheckType = "http"   // GET
	CheckHTTPS  CheckType = "https"  // GET over TLS
	CheckScript CheckType = "script" // exit status 0
	CheckNone   CheckType = "none"   // always healthy
)

// InitialState is the health of a new real server before its first check.
type InitialState string

const (
	InitialDown InitialState = "down"
	InitialUp   InitialState = "up"
)

// HealthCheck is a [virtual_server.health_check] (or a real server's).
// Keys that do not apply to Type are zero.
type HealthCheck struct {
	Type CheckType // default tcp
	// Interval between checks, default 2s (keepalived's delay_loop of 60s
	// is too slow to drain a dead real server).
	Interval time.Duration
	// Timeout of one check, at most Interval; default 1s (or the interval
	// if shorter).
	Timeout time.Duration
	// Fall consecutive failures mark a healthy real server down (default
	// 3), Rise consecutive successes mark it up again (default 2).
	Fall int
	Rise int
	// Port to check; 0 only in a service's check: the real server's port.
	Port uint16
	// HTTP and HTTPS: the request path (default "/"), the accepted status
	// codes (default [200]), an optional RE2 regexp the body must match,
	// and the Host header ("" for the real server's address).
	Path         string
	ExpectStatus []int
	BodyRegex    string
	Host         string
	// HTTPS: the SNI server name (""), whether to verify the certificate
	// (default false) and the CA bundle to verify it with ("" for the
	// system's; requires TLSVerify).
	SNI       string
	TLSVerify bool
	CAFile    string
	// Script (type script) is run with the real server's address and port
	// appended as its last two arguments, and in the environment as
	// XLB_RS_ADDR, XLB_RS_PORT (plus XLB_VS_NAME); exit status 0 is
	// healthy, anything else or running past Timeout unhealthy.
	Script Command
	// InitialState: a new real server is down (the default) until it
	// passes its check, or up at once.
	InitialState InitialState
	// Line of the health_check table (the service's when inherited, the
	// service's own line when there is none).
	Line int
}
