package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// ErrAHNotSupported is returned (wrapped) by Validate and NewNode for an
// instance asking for IPsec AH authentication (keepalived's auth_type AH),
// which xlb does not implement: RFC 5798 removed authentication, and AH
// was never interoperable across implementations.
var ErrAHNotSupported = errors.New("VRRP IPsec AH authentication is not supported (use auth type PASS with VRRPv2, or no authentication)")

// ErrNoRunner is returned (wrapped) by NewNode and Reconfigure for a
// configuration with track scripts or notify commands when Options.Runner
// is nil: vrrp runs no command by itself.
var ErrNoRunner = errors.New("commands to run (track scripts, notify) but no Runner (vrrp.Options.Runner)")

// Config is the VRRP part of a daemon's configuration: every instance it
// runs, the track scripts they share, and the sync groups.
type Config struct {
	Instances  []InstanceConfig  `json:"instances"`
	Scripts    []ScriptConfig    `json:"scripts,omitempty"`
	SyncGroups []SyncGroupConfig `json:"sync_groups,omitempty"`
}

// InstanceConfig is one virtual router (keepalived's vrrp_instance). The
// zero value of a field means keepalived's default unless said otherwise.
type InstanceConfig struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	// InitialState is Backup (the default, for Init, the zero value) or
	// Master.
	// As keepalived 2.x, a MASTER instance that is not the address owner
	// starts as backup and takes over after one advertisement interval
	// plus skew unless it hears a master.
	InitialState State `json:"initial_state,omitempty"`
	VRID         uint8 `json:"vrid"`
	// Priority 1-255 (0 means the default 100); 255 is the address owner,
	// which takes over at once and ignores tracking weights.
	Priority uint8 `json:"priority,omitempty"`
	// AdvertInterval: default 1s. VRRPv3 accepts multiples of 10ms from
	// 10ms to 40.95s; VRRPv2 whole seconds from 1s to 255s.
	AdvertInterval time.Duration `json:"advert_interval,omitempty"`
	// Version is 2 or 3 (0 means 2, keepalived's default; VRRPv2 is IPv4
	// only: IPv6 instances set 3).
	Version int `json:"version,omitempty"`
	// NoPreempt is keepalived's nopreempt: a higher-priority backup does
	// not take over from a live lower-priority master. The zero value
	// preempts, as keepalived and the RFC.
	NoPreempt bool `json:"no_preempt,omitempty"`
	// PreemptDelay (0-1000s): how long a backup waits after first seeing a
	// lower-priority master before it preempts it.
	PreemptDelay time.Duration `json:"preempt_delay,omitempty"`
	// AuthType and AuthPass: VRRPv2 only. A non-empty AuthPass implies
	// AuthPass; only its first 8 bytes are used, as keepalived.
	AuthType AuthType `json:"auth_type,omitempty"`
	AuthPass string   `json:"auth_pass,omitempty"`
	// UnicastSrc is the source address of adverts (default: the primary
	// address of Interface, or its link-local address for IPv6). With
	// UnicastPeers the adverts go to each peer instead of the multicast
	// group, and only adverts from a listed peer are accepted, with any
	// TTL / hop limit (a peer may be routed; keepalived 2.x does the same).
	UnicastSrc   netip.Addr   `json:"unicast_src,omitzero"`
	UnicastPeers []netip.Addr `json:"unicast_peers,omitempty"`
	// VIPs are the virtual addresses, all of one family (that of the
	// instance); at least one.
	VIPs            []VIP            `json:"vips"`
	TrackScripts    []TrackScript    `json:"track_scripts,omitempty"`
	TrackInterfaces []TrackInterface `json:"track_interfaces,omitempty"`
	Notify          Notify           `json:"notify,omitzero"`
	GARP            GARPConfig       `json:"garp,omitzero"`
	// UseVMAC puts the VIPs on a macvlan named VMACInterface (default
	// "vrrp.<VRID>") with the VRRP virtual MAC 00:00:5e:00:01:<VRID>
	// (00:00:5e:00:02:<VRID> for IPv6), as keepalived's use_vmac; it sets
	// arp_ignore 1 and arp_announce 2 on Interface. Advertisements still
	// leave from Interface (keepalived's vmac_xmit_base).
	UseVMAC       bool   `json:"use_vmac,omitempty"`
	VMACInterface string `json:"vmac_interface,omitempty"`
	// LearnedIntervalMaxFactor bounds the Master_Adver_Interval a VRRPv3
	// backup learns from the master's adverts (RFC 5798 6.4.2 and 6.4.3
	// adopt any, up to 40.95s) to this multiple of AdvertInterval: one
	// forged advert with a higher priority and the longest interval would
	// otherwise leave the VIPs without a master for 3 times 40.95s; bounded,
	// the backups take over after 3 times the limit. A longer interval is
	// counted (RxIntervalLimit) and logged once per peer. 0 means
	// DefaultLearnedIntervalMaxFactor; negative: no limit (the RFC's and
	// keepalived's behaviour).
	LearnedIntervalMaxFactor int `json:"learned_interval_max_factor,omitempty"`
	// SplitBrainProbeInterval is how often a master probes its VIPs with
	// ARP (NS for IPv6) to find a second master. 0 means 1s; negative
	// disables the probes (a GARP from another node is still noticed).
	SplitBrainProbeInterval time.Duration `json:"split_brain_probe_interval,omitempty"`
}

// VIP is a virtual address: added with its prefix length on Dev (default:
// the instance interface) with an optional IPv4 label.
type VIP struct {
	Prefix netip.Prefix `json:"prefix"`
	Dev    string       `json:"dev,omitempty"`
	Label  string       `json:"label,omitempty"`
}

// TrackScript makes an instance follow a script of Config.Scripts. Weight,
// when set, overrides the script's weight for this instance.
type TrackScript struct {
	Name   string `json:"name"`
	Weight *int   `json:"weight,omitempty"`
}

// TrackInterface makes an instance follow a link. Weight 0: the instance
// goes to FAULT while the link is down. A positive weight is added to the
// priority while the link is up, a negative one while it is down. The
// instance's own interface is always tracked with weight 0.
type TrackInterface struct {
	Name   string `json:"name"`
	Weight int    `json:"weight,omitempty"`
}

// Notify holds the scripts run on transitions, asynchronously and in order
// per instance, each killed after Timeout (default 10s). A script is a
// command line run by Options.Runner. Generic is called after the specific one with
// keepalived's four extra arguments: "INSTANCE" <name> <state> <priority>,
// state being MASTER, BACKUP, FAULT, STOP or DELETED. Fault also runs when
// a split brain is detected.
type Notify struct {
	Master  string        `json:"master,omitempty"`
	Backup  string        `json:"backup,omitempty"`
	Fault   string        `json:"fault,omitempty"`
	Stop    string        `json:"stop,omitempty"`
	Generic string        `json:"generic,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// GARPConfig sets the gratuitous ARP (IPv4) and unsolicited neighbour
// advertisement (IPv6) announcements of a master, with keepalived's names
// and defaults.
type GARPConfig struct {
	// MasterDelay: a second burst this long after becoming master
	// (garp_master_delay, default 5s; negative: none).
	MasterDelay time.Duration `json:"master_delay,omitempty"`
	// MasterRepeat announcements per VIP in each burst (default 5).
	MasterRepeat int `json:"master_repeat,omitempty"`
	// MasterRefresh: periodic bursts while master (default 0: none).
	MasterRefresh time.Duration `json:"master_refresh,omitempty"`
	// MasterRefreshRepeat announcements per VIP in a refresh (default 1).
	MasterRefreshRepeat int `json:"master_refresh_repeat,omitempty"`
	// Interval between two GARPs, NAInterval between two NAs of a burst
	// (garp_interval, gna_interval; default 0: back to back).
	Interval   time.Duration `json:"interval,omitempty"`
	NAInterval time.Duration `json:"na_interval,omitempty"`
	// LowerPrioRepeat: announcements per VIP when a master hears a
	// lower-priority master, or sees a split brain heal (default:
	// MasterRepeat; negative: none). keepalived's garp_lower_prio_repeat,
	// off there by default, which leaves clients on the wrong node.
	LowerPrioRepeat int `json:"lower_prio_repeat,omitempty"`
}

// ScriptConfig is a track script (keepalived's vrrp_script): a command
// line, run by Options.Runner every Interval, whose exit status 0 means
// success.
type ScriptConfig struct {
	Name   string `json:"name"`
	Script string `json:"script"`
	// Interval between runs (default 1s); Timeout kills a run and counts
	// it failed (default: Interval).
	Interval time.Duration `json:"interval,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
	// Fall consecutive failures make a good script failed, Rise
	// consecutive successes make a failed one good (default 1 each).
	Fall int `json:"fall,omitempty"`
	Rise int `json:"rise,omitempty"`
	// Weight (-254..254): 0 puts tracking instances in FAULT while the
	// script fails; positive is added to the priority while it succeeds,
	// negative while it fails.
	Weight int `json:"weight,omitempty"`
}

// SyncGroupConfig makes instances change state together: one goes FAULT,
// all do; one becomes MASTER, all do; a master falls back to BACKUP, all
// masters of the group do.
type SyncGroupConfig struct {
	Name      string   `json:"name"`
	Instances []string `json:"instances"`
	// Notify: the group's scripts run once each time all its members have
	// reached MASTER, BACKUP or FAULT (the specific one, then Generic with
	// "GROUP" <name> <state>), and at shutdown (Stop, then Generic with
	// state STOP), in order per group, each killed after Timeout (default
	// 10s), as keepalived's vrrp_sync_group notify.
	Notify Notify `json:"notify,omitzero"`
}

// Defaults and protocol limits.
const (
	DefaultPriority       = 100
	DefaultAdvertInterval = time.Second
	DefaultVersion        = 2                     // keepalived's vrrp_version, and the configuration file's
	MinAdvertIntervalV3   = 10 * time.Millisecond // one centisecond
	MaxAdvertIntervalV3   = 4095 * 10 * time.Millisecond
	MaxAdvertIntervalV2   = 255 * time.Second
	DefaultNotifyTimeout  = 10 * time.Second
	DefaultProbeInterval  = time.Second
	// DefaultLearnedIntervalMaxFactor: a backup learns at most 3 times its
	// own interval (InstanceConfig.LearnedIntervalMaxFactor).
	DefaultLearnedIntervalMaxFactor = 3
	maxLearnedIntervalMaxFactor     = 4095 // 40.95s over 10ms
	maxPreemptDelay                 = 1000 * time.Second
	priorityOwner                   = 255
	ifNameMax                       = 15
)

// WithDefaults returns c with every field left at its zero value that has
// a default set to it (keepalived's defaults, which are also those of the
// configuration file: config/keys.go, config/load_vrrp.go). It is the one
// place where defaults are applied: NewNode and Reconfigure keep its
// result, and everything after works on it. It copies what it changes: c
// is left as it was.
func (c Config) WithDefaults() Config {
	c.Instances = slices.Clone(c.Instances)
	for i := range c.Instances {
		c.Instances[i] = instanceDefaults(c.Instances[i])
	}
	c.Scripts = slices.Clone(c.Scripts)
	for i, sc := range c.Scripts {
		if sc.Interval == 0 {
			sc.Interval = time.Second
		}
		if sc.Timeout == 0 {
			sc.Timeout = sc.Interval
		}
		if sc.Fall == 0 {
			sc.Fall = 1
		}
		if sc.Rise == 0 {
			sc.Rise = 1
		}
		c.Scripts[i] = sc
	}
	c.SyncGroups = slices.Clone(c.SyncGroups)
	for i := range c.SyncGroups {
		if c.SyncGroups[i].Notify.Timeout == 0 {
			c.SyncGroups[i].Notify.Timeout = DefaultNotifyTimeout
		}
	}
	return c
}

func instanceDefaults(ic InstanceConfig) InstanceConfig {
	if ic.InitialState == Init {
		ic.InitialState = Backup
	}
	if ic.Priority == 0 {
		ic.Priority = DefaultPriority
	}
	if ic.AdvertInterval == 0 {
		ic.AdvertInterval = DefaultAdvertInterval
	}
	if ic.Version == 0 {
		ic.Version = DefaultVersion
	}
	if ic.AuthPass != "" && ic.AuthType == AuthNone {
		ic.AuthType = AuthPass
	}
	if ic.SplitBrainProbeInterval == 0 {
		ic.SplitBrainProbeInterval = DefaultProbeInterval
	}
	if ic.LearnedIntervalMaxFactor == 0 {
		ic.LearnedIntervalMaxFactor = DefaultLearnedIntervalMaxFactor
	}
	if ic.Notify.Timeout == 0 {
		ic.Notify.Timeout = DefaultNotifyTimeout
	}
	g := &ic.GARP
	if g.MasterDelay == 0 {
		g.MasterDelay = 5 * time.Second
	}
	if g.MasterRepeat == 0 {
		g.MasterRepeat = 5
	}
	if g.MasterRefreshRepeat == 0 {
		g.MasterRefreshRepeat = 1
	}
	if g.LowerPrioRepeat == 0 {
		g.LowerPrioRepeat = g.MasterRepeat
	}
	if ic.UseVMAC && ic.VMACInterface == "" {
		ic.VMACInterface = fmt.Sprintf("vrrp.%d", ic.VRID)
	}
	vips := make([]VIP, len(ic.VIPs))
	for i, v := range ic.VIPs {
		if v.Dev == "" {
			v.Dev = ic.Interface
			if ic.UseVMAC {
				v.Dev = ic.VMACInterface
			}
		}
		vips[i] = v
	}
	ic.VIPs = vips
	return ic
}

// normalize applies the defaults to c and validates the result: what
// NewNode and Reconfigure run on.
func (c Config) normalize() (Config, error) {
	d := c.WithDefaults()
	return d, d.validate()
}

// is6 reports whether the instance is IPv6 (from its first VIP).
func (ic InstanceConfig) is6() bool {
	return len(ic.VIPs) > 0 && ic.VIPs[0].Prefix.Addr().Is6()
}

// Validate checks the whole configuration, with its defaults applied, and
// returns every problem found, each naming the instance, script or group
// at fault. A config asking for AH authentication gets an error wrapping
// ErrAHNotSupported.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

// validate is Validate for a configuration whose defaults are applied.
func (c Config) validate() error {
	var errs []error
	scripts := map[string]bool{}
	for i, sc := range c.Scripts {
		if err := sc.validate(); err != nil {
			errs = append(errs, fmt.Errorf("vrrp script %d (%q): %w", i, sc.Name, err))
		}
		if scripts[sc.Name] {
			errs = append(errs, fmt.Errorf("vrrp script %q defined twice", sc.Name))
		}
		scripts[sc.Name] = true
	}
	names := map[string]bool{}
	type routerKey struct {
		ifname string
		v6     bool
		vrid   uint8
	}
	routers := map[routerKey]string{}
	vipOwner := map[netip.Addr]string{}
	for i, ic := range c.Instances {
		if err := ic.validate(scripts); err != nil {
			errs = append(errs, fmt.Errorf("vrrp instance %d (%q): %w", i, ic.Name, err))
			continue
		}
		if names[ic.Name] {
			errs = append(errs, fmt.Errorf("vrrp instance %q defined twice", ic.Name))
		}
		names[ic.Name] = true
		k := routerKey{ic.Interface, ic.is6(), ic.VRID}
		if other, ok := routers[k]; ok {
			errs = append(errs, fmt.Errorf("vrrp instances %q and %q both use VRID %d on %s", other, ic.Name, ic.VRID, ic.Interface))
		}
		routers[k] = ic.Name
		for _, v := range ic.VIPs {
			if other, ok := vipOwner[v.Prefix.Addr()]; ok && other != ic.Name {
				errs = append(errs, fmt.Errorf("vrrp instances %q and %q both have VIP %s", other, ic.Name, v.Prefix.Addr()))
			}
			vipOwner[v.Prefix.Addr()] = ic.Name
		}
	}
	grouped := map[string]string{}
	for i, g := range c.SyncGroups {
		if g.Name == "" {
			errs = append(errs, fmt.Errorf("vrrp sync group %d: name is empty", i))
		}
		if len(g.Instances) == 0 {
			errs = append(errs, fmt.Errorf("vrrp sync group %q: no instances", g.Name))
		}
		if g.Notify.Timeout < 0 {
			errs = append(errs, fmt.Errorf("vrrp sync group %q: notify timeout must not be negative", g.Name))
		}
		for _, n := range g.Instances {
			if !names[n] {
				errs = append(errs, fmt.Errorf("vrrp sync group %q: unknown instance %q", g.Name, n))
			}
			if other, ok := grouped[n]; ok {
				errs = append(errs, fmt.Errorf("vrrp instance %q is in sync groups %q and %q", n, other, g.Name))
			}
			grouped[n] = g.Name
		}
	}
	return errors.Join(errs...)
}

func (sc ScriptConfig) validate() error {
	switch {
	case sc.Name == "":
		return errors.New("name is empty")
	case sc.Script == "":
		return errors.New("script is empty")
	case sc.Interval < 0 || sc.Timeout < 0:
		return errors.New("interval and timeout must not be negative")
	case sc.Fall < 0 || sc.Rise < 0:
		return errors.New("fall and rise must not be negative")
	case sc.Weight < -254 || sc.Weight > 254:
		return fmt.Errorf("weight %d out of range -254..254", sc.Weight)
	}
	return nil
}

func (ic InstanceConfig) validate(scripts map[string]bool) error {
	if ic.AuthType == AuthAH {
		return fmt.Errorf("auth type AH: %w", ErrAHNotSupported)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if ic.Name == "" {
		bad("name is empty")
	}
	if ic.Interface == "" || len(ic.Interface) > ifNameMax {
		bad("interface name %q must have 1 to %d bytes", ic.Interface, ifNameMax)
	}
	if ic.VRID == 0 {
		bad("VRID must be 1-255")
	}
	switch ic.InitialState {
	case Init, Backup, Master:
	default:
		bad("initial state %s: want BACKUP or MASTER", ic.InitialState)
	}
	if ic.Version != 2 && ic.Version != 3 {
		bad("version %d: want 2 or 3", ic.Version)
	}
	if len(ic.VIPs) == 0 {
		bad("no virtual addresses")
	}
	v6 := ic.is6()
	seen := map[netip.Addr]bool{}
	for _, v := range ic.VIPs {
		a := v.Prefix.Addr()
		switch {
		case !v.Prefix.IsValid():
			bad("invalid VIP prefix")
			continue
		case a.Is4In6() || a.Zone() != "":
			bad("VIP %s: use a plain IPv4 or IPv6 address", v.Prefix)
		case a.Is6() != v6:
			bad("VIP %s: all VIPs of an instance must be of one family (make one instance per family)", v.Prefix)
		case a.IsMulticast() || a.IsUnspecified() || a.IsLoopback():
			bad("VIP %s is not a unicast address", v.Prefix)
		case seen[a]:
			bad("VIP %s listed twice", a)
		}
		seen[a] = true
		if v.Label != "" && (v6 || len(v.Label) > ifNameMax) {
			bad("VIP %s: a label is IPv4 only and at most %d bytes", v.Prefix, ifNameMax)
		}
		if len(v.Dev) > ifNameMax {
			bad("VIP %s: device name %q too long", v.Prefix, v.Dev)
		}
	}
	if len(ic.VIPs) > 255 {
		bad("%d VIPs: at most 255 fit in an advertisement", len(ic.VIPs))
	}
	iv := ic.AdvertInterval
	switch ic.Version {
	case 2:
		if v6 {
			bad("VRRPv2 is IPv4 only: use version 3 for IPv6")
		}
		if iv%time.Second != 0 || iv < time.Second || iv > MaxAdvertIntervalV2 {
			bad("advert interval %v: VRRPv2 needs whole seconds from 1s to 255s (use version 3 for sub-second)", iv)
		}
	case 3:
		if iv%MinAdvertIntervalV3 != 0 || iv < MinAdvertIntervalV3 || iv > MaxAdvertIntervalV3 {
			bad("advert interval %v: VRRPv3 needs a multiple of 10ms from 10ms to 40.95s", iv)
		}
	}
	switch ic.AuthType {
	case AuthNone:
	case AuthPass:
		if ic.Version != 2 {
			bad("authentication needs VRRPv2 (RFC 5798 removed it from VRRPv3)")
		}
		if ic.AuthPass == "" {
			bad("auth type PASS without auth pass")
		}
	default:
		bad("auth type %q: want PASS or none", ic.AuthType)
	}
	if ic.LearnedIntervalMaxFactor > maxLearnedIntervalMaxFactor {
		bad("learned interval max factor %d out of range (at most %d)", ic.LearnedIntervalMaxFactor, maxLearnedIntervalMaxFactor)
	}
	if ic.PreemptDelay < 0 || ic.PreemptDelay > maxPreemptDelay {
		bad("preempt delay %v out of range 0-1000s", ic.PreemptDelay)
	}
	if ic.UnicastSrc.IsValid() && (ic.UnicastSrc.Is6() != v6 || ic.UnicastSrc.Is4In6()) {
		bad("unicast source %s is not of the VIPs' family", ic.UnicastSrc)
	}
	for _, p := range ic.UnicastPeers {
		if !p.IsValid() || p.Is6() != v6 || p.Is4In6() || p.IsMulticast() {
			bad("unicast peer %s: want a unicast address of the VIPs' family", p)
		}
	}
	for _, ts := range ic.TrackScripts {
		if !scripts[ts.Name] {
			bad("track script %q is not defined", ts.Name)
		}
		if ts.Weight != nil && (*ts.Weight < -254 || *ts.Weight > 254) {
			bad("track script %q: weight %d out of range -254..254", ts.Name, *ts.Weight)
		}
	}
	for _, ti := range ic.TrackInterfaces {
		if ti.Name == "" || len(ti.Name) > ifNameMax {
			bad("track interface name %q must have 1 to %d bytes", ti.Name, ifNameMax)
		}
		if ti.Weight < -254 || ti.Weight > 254 {
			bad("track interface %q: weight %d out of range -254..254", ti.Name, ti.Weight)
		}
	}
	if ic.Notify.Timeout < 0 {
		bad("notify timeout must not be negative")
	}
	g := ic.GARP
	if g.MasterRepeat < 0 || g.MasterRefreshRepeat < 0 || g.MasterRefresh < 0 || g.Interval < 0 || g.NAInterval < 0 {
		bad("garp repeats and intervals must not be negative")
	}
	if ic.UseVMAC && len(ic.VMACInterface) > ifNameMax {
		bad("vmac interface name %q too long", ic.VMACInterface)
	}
	return errors.Join(errs...)
}

// commandUser names the first part of c that runs commands (a track
// script, notify commands of an instance or a sync group), "" if none.
func (c Config) commandUser() string {
	if len(c.Scripts) > 0 {
		return fmt.Sprintf("vrrp script %q", c.Scripts[0].Name)
	}
	for _, ic := range c.Instances {
		if ic.Notify.hasCommand() {
			return fmt.Sprintf("notify of vrrp instance %q", ic.Name)
		}
	}
	for _, g := range c.SyncGroups {
		if g.Notify.hasCommand() {
			return fmt.Sprintf("notify of vrrp sync group %q", g.Name)
		}
	}
	return ""
}

func (nc Notify) hasCommand() bool {
	return nc.Master != "" || nc.Backup != "" || nc.Fault != "" || nc.Stop != "" || nc.Generic != ""
}

// checkRunner refuses a configuration that runs commands without a Runner.
func (c Config) checkRunner(r Runner) error {
	if u := c.commandUser(); u != "" && r == nil {
		return fmt.Errorf("vrrp config: %s: %w", u, ErrNoRunner)
	}
	return nil
}
