// Package config reads xlb's TOML configuration: it decodes the file,
// applies every default (keepalived's and ipvsadm's where they have one),
// and validates it, reporting every problem as FILE:LINE: message.
//
// Each field of a section's struct is the key of the same name in snake
// case (RouterID: router_id). A key's type, range, default, keepalived
// equivalent and meaning are declared once, in the key table (keys.go),
// which the decoder reads and README.md's key tables are generated from;
// the comments here say only how values are held. They are resolved
// (netip addresses, time.Duration, checked enumerations) so that the
// control plane only converts them. Each virtual server, real server,
// health check, VRRP instance, script and sync group keeps the line it was
// declared on, to locate runtime problems.
//
// Configuration flows config -> control -> dataplane. The names the file
// shares with the other layers (schedulers, forwarding modes, protocols,
// tunnel types, attach modes, check types, VRRP states and authentication
// types) are held typed, as their owners declare them once: in dataplane,
// control/health/checktype and vrrp/names, which import only the standard
// library; the package imports nothing else of xlb (imports_test.go).
package config

import (
	"net/netip"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
	vrrpnames "github.com/xlb-dev/xlb/vrrp/names"
)

// Config is a whole configuration file.
type Config struct {
	// File is the name the configuration was read from.
	File          string
	Global        Global
	Dataplane     Dataplane
	Metrics       Metrics
	Control       Control
	Debug         Debug
	VRRPScripts   []VRRPScript
	SyncGroups    []SyncGroup
	VRRPInstances []VRRPInstance
	// VirtualServerGroups are the [[virtual_server_group]] tables; each
	// virtual server naming one is expanded into VirtualServers, one per
	// address and port of the group.
	VirtualServerGroups []VirtualServerGroup
	// VirtualServers are the virtual services: one per [[virtual_server]],
	// or, for a virtual server with a group, one per entry of the group.
	VirtualServers []VirtualServer
	// BGP is nil without a [bgp] section.
	BGP *BGP
	// Sync is nil without a [sync] section.
	Sync *Sync
	// Warnings are what the file says that is accepted but worth telling
	// (as keepalived warns), each with its line; `xlb check` prints them,
	// the daemon logs them at start and reload.
	Warnings []Error
}

// Global is [global].
type Global struct {
	RouterID string
	// ScriptUser is the user every command runs as ("": xlb's own), and
	// ScriptGroup its group ("": the user's primary group); both exist
	// when Load checked them against an Env.
	ScriptUser           string
	ScriptGroup          string
	EnableScriptSecurity bool
	// Mail alerts (keepalived's SMTP alerts) are sent when both
	// NotificationEmail and SMTPServer are set (MailEnabled).
	NotificationEmail []string
	// NotificationEmailFrom is "" for USER@HOST (xlb's user, the host
	// name), as keepalived.
	NotificationEmailFrom string
	// SMTPServer is HOST:PORT, the port resolved (25); "" none.
	SMTPServer string
	// SMTPHeloName is "" for the host name.
	SMTPHeloName       string
	SMTPConnectTimeout time.Duration
	// SMTPAlert is smtp_alert; SMTPAlertVRRP and SMTPAlertChecker are
	// resolved (SMTPAlert when not written): the defaults of the tables'
	// own smtp_alert.
	SMTPAlert        bool
	SMTPAlertVRRP    bool
	SMTPAlertChecker bool
	NoEmailFaults    bool
}

// MailEnabled reports whether alerts are mailed: there is a server and
// someone to mail them to.
func (g Global) MailEnabled() bool {
	return g.SMTPServer != "" && len(g.NotificationEmail) > 0
}

// Mode selects the dataplane.
type Mode string

const (
	ModeAuto Mode = "auto" // XDP, falling back to IPVS when XDP cannot attach
	ModeXDP  Mode = "xdp"
	ModeIPVS Mode = "ipvs"
)

// Dataplane is [dataplane].
type Dataplane struct {
	Mode                 Mode
	XDPMode              dataplane.AttachMode
	Interfaces           []string
	PinPath              string // cleaned (filepath.Clean)
	KeepForwardingOnExit bool
	TCPTimeout           time.Duration
	TCPFinTimeout        time.Duration
	UDPTimeout           time.Duration
}

// Metrics is [metrics].
type Metrics struct {
	Listen string // "": no metrics endpoint
}

// Control is [control].
type Control struct {
	Socket string
}

// Debug is [debug].
type Debug struct {
	// PprofListen serves Go's profiles (net/http/pprof) on this loopback
	// HOST:PORT; "": not at all.
	PprofListen string
}

// VRRPScript is a [[vrrp_script]]: a command whose exit status is tracked
// by VRRP instances (keepalived's vrrp_script).
type VRRPScript struct {
	Name     string
	Script   Command
	Interval time.Duration
	Timeout  time.Duration
	Weight   int
	Fall     int
	Rise     int
	Line     int
}

// SyncGroup is a [[vrrp_sync_group]]: instances that change state together.
type SyncGroup struct {
	Name         string
	Group        []string // the member instances' names
	NotifyMaster Command
	NotifyBackup Command
	NotifyFault  Command
	NotifyStop   Command
	Notify       Command
	// SMTPAlert: a mail when every member has reached MASTER, BACKUP or
	// FAULT (resolved: global SMTPAlertVRRP when not written).
	SMTPAlert bool
	Line      int
}

// VRRPInstance is a [[vrrp_instance]].
type VRRPInstance struct {
	Name            string
	Interface       string
	State           vrrpnames.State // Master or Backup
	VirtualRouterID uint8
	Priority        uint8
	AdvertInt       time.Duration
	Version         int
	Preempt         bool
	PreemptDelay    time.Duration
	// AuthType is AuthPass when auth_pass is set, else AuthNone.
	AuthType vrrpnames.AuthType
	// AuthPass is at most 8 bytes (the advert's field).
	AuthPass string
	// UnicastSrcIP is invalid (zero) for the interface's primary address.
	UnicastSrcIP netip.Addr
	// UnicastPeers is empty for multicast (224.0.0.18 / ff02::12).
	UnicastPeers []netip.Addr
	// VirtualIPAddresses are the VIPs, all of one family (the instance's).
	VirtualIPAddresses      []VIP
	TrackScripts            []TrackScript
	TrackInterfaces         []TrackInterface
	NotifyMaster            Command
	NotifyBackup            Command
	NotifyFault             Command
	NotifyStop              Command
	Notify                  Command
	NotifyTimeout           time.Duration
	GARPMasterDelay         time.Duration
	GARPMasterRepeat        int
	GARPMasterRefresh       time.Duration
	GARPMasterRefreshRepeat int
	GARPInterval            time.Duration
	GNAInterval             time.Duration
	UseVMAC                 bool
	// LearnedAdvertIntMaxFactor bounds the advertisement interval a
	// VRRPv3 backup learns from the master (issue 11); 0: no bound.
	LearnedAdvertIntMaxFactor int
	SplitBrainCheckInterval   time.Duration
	// SMTPAlert: a mail on each transition (resolved: global
	// SMTPAlertVRRP when not written).
	SMTPAlert bool
	Line      int
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
	// interface is down; otherwise as vrrp_script's weight.
	Weight int
}

// ServiceKey identifies a virtual service: VIP, port and protocol.
type ServiceKey struct {
	Address  netip.Addr
	Port     uint16
	Protocol dataplane.Proto
}

// VirtualServerGroup is a [[virtual_server_group]]: addresses and ports
// that share one set of real servers (keepalived's virtual_server_group).
type VirtualServerGroup struct {
	Name string
	// Entries are the addresses and ports, ranges expanded, in order.
	Entries []netip.AddrPort
	Line    int
}

// VirtualServer is a [[virtual_server]], or one entry of the group it
// names.
type VirtualServer struct {
	// Name is the [[virtual_server]]'s name, or for an entry of a group
	// "NAME/ADDR:PORT" (unique too).
	Name string
	// Server is the [[virtual_server]]'s name (Name without a group).
	Server string
	// Group is the virtual_server_group the entry comes from; "" none.
	Group              string
	Address            netip.Addr
	Port               uint16
	Protocol           dataplane.Proto
	Scheduler          dataplane.Scheduler
	Forward            dataplane.ForwardMode
	VRRPInstance       string // "": always forward
	PersistenceTimeout time.Duration
	Quorum             int
	Hysteresis         int
	QuorumUp           Command
	QuorumDown         Command
	// SorryServer is invalid (zero) for none; its port is resolved.
	SorryServer netip.AddrPort
	// The tunnel settings are zero unless Forward is Tunnel. TunnelSource
	// is a single address (/32, /128) or a prefix whose host bits vary per
	// flow; invalid (zero) for the egress interface's address.
	TunnelType   dataplane.Encap
	TunnelPort   uint16
	TunnelSource netip.Prefix
	// HealthCheck is the service's check; its Port 0 means each real
	// server's port. Real servers hold their effective check.
	HealthCheck HealthCheck
	RealServers []RealServer
	// SMTPAlert: a mail when the quorum is gained or lost, and the default
	// of the real servers' (resolved: global SMTPAlertChecker when not
	// written).
	SMTPAlert bool
	Line      int
}

// Key returns the service's VIP:port/protocol.
func (v VirtualServer) Key() ServiceKey {
	return ServiceKey{Address: v.Address, Port: v.Port, Protocol: v.Protocol}
}

// RealServer is a [[virtual_server.real_server]].
type RealServer struct {
	Address netip.Addr
	Port    uint16 // resolved: the service's (the group entry's) when not written
	Weight  int
	// UpperThreshold and LowerThreshold are the connection thresholds
	// (ipvsadm -x, -y; 0 none), LowerThreshold <= UpperThreshold.
	UpperThreshold int
	LowerThreshold int
	// HealthCheck is the effective check of this real server: the service's
	// check with the real server's own [..real_server.health_check] keys
	// over it, and Port resolved; never nil. The real servers of a service
	// without a check of their own share one (per port), and the entries of
	// a group share the first entry's: 65,536 copies of a HealthCheck were
	// 28 MB. Do not change it.
	HealthCheck *HealthCheck
	// SMTPAlert: a mail when it goes up or down (resolved: the virtual
	// server's when not written).
	SMTPAlert bool
	Line      int
}

// AddrPort returns the real server's address and port.
func (r RealServer) AddrPort() netip.AddrPort { return netip.AddrPortFrom(r.Address, r.Port) }

// URLCheck is one [[...health_check.url]] of an HTTP(S) check.
type URLCheck struct {
	Path         string
	ExpectStatus []int
	BodyRegex    string
	Digest       string
	Host         string // "": the check's
	Line         int
}

// InitialState is the health of a new real server before its first check.
type InitialState string

const (
	InitialDown InitialState = "down"
	InitialUp   InitialState = "up"
)

// HealthCheck is a [virtual_server.health_check] (or a real server's).
// Keys that do not apply to Type are zero; the defaults of Type's keys are
// set, Timeout resolved (the interval when that is shorter and no timeout
// is written).
type HealthCheck struct {
	Type     checktype.Type
	Interval time.Duration
	Timeout  time.Duration
	Fall     int
	Rise     int
	// Warmup bounds the delay of the first run (nil: the interval).
	Warmup *time.Duration
	// Port to check; 0 only in a service's check: the real server's port.
	Port uint16
	// ConnectIP is checked instead of the real server's address; BindTo
	// is the source address. Invalid (zero): not set.
	ConnectIP netip.Addr
	BindTo    netip.Addr
	// HTTP(S): one URL (Path, ExpectStatus, BodyRegex, Digest), or URLs.
	Path         string
	ExpectStatus []int // status ranges expanded
	BodyRegex    string
	Digest       string // hex MD5, as written
	Host         string // "": the real server's address
	URLs         []URLCheck
	HTTPProtocol string // "1.0", "1.0C" or "1.1"
	SNI          string
	TLSVerify    bool
	CAFile       string // "": the system's CAs
	// UDP: Payload and ReplyPattern are hex ("" none); RequireReply is set
	// by require_reply = true or a pattern.
	Payload      string
	RequireReply bool
	ReplyPattern string
	// DNS.
	DNSName string
	DNSType string
	// SMTP: "" the host name.
	HeloName string
	// File: the path read, the weight its number is multiplied by, and
	// whether the result is reversed.
	File          string
	Weight        int
	WeightReverse bool
	// Script: MiscDynamic sets the weight from the exit status.
	MiscDynamic bool
	// Script is run with the real server's address and port appended as
	// its last two arguments, and in the environment as XLB_RS_ADDR,
	// XLB_RS_PORT (plus XLB_VS_NAME).
	Script       Command
	InitialState InitialState
	// Line of the health_check table (the service's when inherited, the
	// service's own line when there is none).
	Line int
}
