package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
	vrrpnames "github.com/xlb-dev/xlb/vrrp/names"
)

// The key table: every key of the file is declared here once, with its
// TOML type, range or allowed values, default, keepalived equivalent and
// documentation. The decoder reads values through it (type, range, length
// and kind checks, required keys, unknown keys), applies its defaults, and
// config/README.md's key tables are generated from it (readme_test.go).

// Defaults used outside this package too.
const (
	DefaultPinPath       = "/sys/fs/bpf/xlb"
	DefaultMetricsListen = "127.0.0.1:9477"
	DefaultSocket        = "/run/xlb/xlb.sock"
)

// kind is what a key holds, beyond its TOML type.
type kind uint8

const (
	kBool kind = iota
	kInt
	kDuration // a Go duration string
	kEnum     // one of key.enum
	kString   // free text
	kName     // no white space or control characters (checkName)
	kIfName   // the kernel's rules (checkIfName)
	kPath     // absolute
	kCommand  // split as keepalived splits a script (Command.Split)
	kAddr     // an IP address (parseAddr)
	kEntry    // words parsed by the section's code ("ADDR dev IF")
	kTable    // a [sub] table
	kTables   // an array of [[sub]] tables
)

// kinds names each kind in messages and the README, and bounds its strings
// (bytes): nothing in the file is used at any length.
var kinds = [...]struct {
	noun string
	max  int
}{
	kBool: {"boolean", 0}, kInt: {"integer", 0}, kDuration: {"duration", 64}, kEnum: {"value", 64},
	kString: {"string", 256}, kName: {"name", 128}, kIfName: {"interface name", 15},
	kPath: {"path", 4095}, kCommand: {"command", 4096}, kAddr: {"address", 64}, kEntry: {"entry", 256},
}

// key declares one key.
type key struct {
	name string
	kind kind
	list bool // an array of kind
	// field is the Go field the key fills in the section's struct; the
	// decoder fills it unless custom (the section's code reads the key,
	// e.g. because its range depends on another key). For kTable and
	// kTables it names the sub-table's section.
	field  string
	custom bool
	lo, hi int64         // kInt: range; kDuration: range in ns, hi 0 for none
	step   time.Duration // kDuration: a multiple of step
	enum   []string
	only   []string           // the health-check types it applies to
	max    int                // string length, when not the kind's
	check  func(string) error // more checks of a string
	def    string             // the default as a TOML value ("" none)
	note   string             // the default in words, when computed
	req    string             // when required: the message's text ("required")
	typ    string             // the values it takes, for the README, when not its kind's
	ka     string             // keepalived's equivalent
	doc    string

	idx int // position in its section
	dv  any // def decoded
}

// section is a table of the file and the keys it may hold.
type section struct {
	name  string // its path ("virtual_server.real_server"); labels its tables
	head  string // as written in the file, for the README
	keys  []key
	index map[string]int
}

// The names of the enumerations other layers declare (enumOf): the
// health-check types, web and tls those of HTTP(S) and TLS, netChecks those
// that open a socket to the real server.
var (
	checkTypes = enumOf(checktype.Types(nil)...)
	netChecks  = enumOf(checktype.Types(func(s checktype.Spec) bool { return s.Net })...)
	web, tls   = enumOf(checktype.HTTP, checktype.HTTPS), enumOf(checktype.HTTPS)
)

// enumOf returns the names of values, for a kEnum key.
func enumOf[T any](values ...T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = fmt.Sprint(v)
	}
	return out
}

// checkTypeDoc says what the check types do and checkTypeKA names
// keepalived's checkers, for the key "type".
func checkTypeDoc() string {
	var l []string
	for _, s := range checktype.Table {
		l = append(l, s.Doc)
	}
	return strings.Join(l[:len(l)-1], ", ") + " or " + l[len(l)-1] + " (below)"
}

func checkTypeKA() string {
	var l []string
	for _, s := range checktype.Table {
		if s.Keepalived != "" {
			l = append(l, s.Keepalived)
		}
	}
	return strings.Join(l, ", ")
}

const (
	ms  = int64(time.Millisecond)
	sec = int64(time.Second)
	inf = math.MaxInt32
)

var sections = []*section{
	{name: "", keys: []key{
		{name: "global", kind: kTable, field: "global"},
		{name: "dataplane", kind: kTable, field: "dataplane"},
		{name: "metrics", kind: kTable, field: "metrics"},
		{name: "control", kind: kTable, field: "control"},
		{name: "debug", kind: kTable, field: "debug"},
		{name: "vrrp_script", kind: kTables, field: "vrrp_script"},
		{name: "vrrp_sync_group", kind: kTables, field: "vrrp_sync_group"},
		{name: "vrrp_instance", kind: kTables, field: "vrrp_instance"},
		{name: "virtual_server_group", kind: kTables, field: "virtual_server_group"},
		{name: "virtual_server", kind: kTables, field: "virtual_server"},
		{name: "bgp", kind: kTable, field: "bgp"},
		{name: "sync", kind: kTable, field: "sync"},
	}},
	{name: "global", head: "[global]", keys: []key{
		{name: "router_id", kind: kName, field: "RouterID", note: "host name", ka: "router_id",
			doc: "names this director in logs and notifications"},
		{name: "script_user", kind: kName, field: "ScriptUser", note: "xlb's user (root)", ka: "script_user USER",
			doc: "the user every script runs as (vrrp_script, notify, health-check and quorum commands); must exist. keepalived's default is `keepalived_script` if that user exists"},
		{name: "script_group", kind: kName, field: "ScriptGroup", note: "the user's group", ka: "script_user USER GROUP",
			doc: "the group scripts run as; must exist; needs `script_user`"},
		{name: "enable_script_security", kind: kBool, field: "EnableScriptSecurity", def: "false", ka: "enable_script_security",
			doc: "refuse a command whose program a non-root user could change (below); without it, a warning"},
		{name: "notification_email", kind: kString, list: true, max: 254, check: checkMailbox, note: "none", ka: "notification_email { }",
			doc: "the addresses alerts are mailed to; with `smtp_server`, mail is on (below)"},
		{name: "notification_email_from", kind: kString, field: "NotificationEmailFrom", max: 254, check: checkMailbox,
			note: "`USER@HOST`: xlb's user and the host name", ka: "notification_email_from", doc: "the sender of the alerts (`MAIL FROM` and `From:`)"},
		{name: "smtp_server", kind: kString, max: 300, check: checkSMTPServer, note: "none", ka: "smtp_server HOST [PORT]",
			doc: "`HOST[:PORT]` (`[ADDR6]:PORT`) of the SMTP relay, port 25 by default"},
		{name: "smtp_helo_name", kind: kString, field: "SMTPHeloName", max: 253, check: checkNoSpace, note: "the host name", ka: "smtp_helo_name",
			doc: "the name sent with `HELO`"},
		{name: "smtp_connect_timeout", kind: kDuration, field: "SMTPConnectTimeout", lo: sec, hi: 3600 * sec, def: `"30s"`, ka: "smtp_connect_timeout",
			doc: "bounds the connection and each step of the SMTP dialogue; the mail is then given up (logged, counted)"},
		{name: "smtp_alert", kind: kBool, field: "SMTPAlert", def: "false", ka: "smtp_alert",
			doc: "the default of `smtp_alert_vrrp` and `smtp_alert_checker`"},
		{name: "smtp_alert_vrrp", kind: kBool, field: "SMTPAlertVRRP", note: "`smtp_alert`", ka: "smtp_alert_vrrp",
			doc: "the default `smtp_alert` of VRRP instances and sync groups"},
		{name: "smtp_alert_checker", kind: kBool, field: "SMTPAlertChecker", note: "`smtp_alert`", ka: "smtp_alert_checker",
			doc: "the default `smtp_alert` of virtual servers"},
		{name: "no_email_faults", kind: kBool, field: "NoEmailFaults", def: "false", ka: "no_email_faults",
			doc: "no mail when an instance or a sync group enters FAULT"},
	}},
	{name: "dataplane", head: "[dataplane]", keys: []key{
		{name: "mode", kind: kEnum, field: "Mode", enum: []string{"auto", "xdp", "ipvs"}, def: `"auto"`,
			doc: "`auto`: XDP, else IPVS"},
		{name: "xdp_mode", kind: kEnum, field: "XDPMode", enum: enumOf(dataplane.AttachModes...), def: `"auto"`,
			doc: "`auto`: native, else generic (skb); not with `mode = \"ipvs\"`"},
		{name: "interfaces", kind: kIfName, list: true, note: "required for `xdp`/`auto`",
			doc: "where the XDP program is attached; DR real servers must be on their subnets"},
		{name: "pin_path", kind: kPath, field: "PinPath", def: `"` + DefaultPinPath + `"`,
			doc: "bpffs directory of the pinned program and maps"},
		{name: "keep_forwarding_on_exit", kind: kBool, field: "KeepForwardingOnExit", def: "false",
			doc: "on SIGTERM leave the program and maps pinned, so forwarding continues"},
		{name: "tcp_timeout", kind: kDuration, field: "TCPTimeout", lo: sec, step: time.Second, def: `"15m"`, ka: "lvs_timeouts tcp",
			doc: "idle timeout of a TCP connection"},
		{name: "tcp_fin_timeout", kind: kDuration, field: "TCPFinTimeout", lo: sec, step: time.Second, def: `"2m"`, ka: "lvs_timeouts tcpfin",
			doc: "idle timeout of a closing TCP connection"},
		{name: "udp_timeout", kind: kDuration, field: "UDPTimeout", lo: sec, step: time.Second, def: `"5m"`, ka: "lvs_timeouts udp",
			doc: "idle timeout of a UDP flow"},
	}},
	{name: "metrics", head: "[metrics]", keys: []key{
		{name: "listen", kind: kString, field: "Listen", max: 300, check: checkListen, def: `"` + DefaultMetricsListen + `"`,
			doc: "`HOST:PORT` of the Prometheus `/metrics` endpoint; `\"\"` disables it; port 0 picks one"},
	}},
	{name: "control", head: "[control]", keys: []key{
		{name: "socket", kind: kPath, field: "Socket", max: 107, def: `"` + DefaultSocket + `"`,
			doc: "the control socket (`xlb status`, `xlb reload`); 107 bytes at most, as unix sockets allow"},
	}},
	{name: "debug", head: "[debug]", keys: []key{
		{name: "pprof_listen", kind: kString, field: "PprofListen", max: 300, check: checkLoopbackListen, def: `""`,
			doc: "`HOST:PORT` on loopback (`127.0.0.1`, `::1`, `localhost`) where Go's profiles are served (`/debug/pprof/`, as `go tool pprof http://HOST:PORT/debug/pprof/profile` reads them); `\"\"`: off. They show what the daemon spends its CPU and memory on; anyone who can connect can read them. Only with it does the daemon sample its allocations for heap profiles (from its start; a restart turns it on or off)"},
	}},
	{name: "vrrp_script", head: "[[vrrp_script]]", keys: []key{
		{name: "name", kind: kName, field: "Name", req: "required", ka: "vrrp_script NAME", doc: "unique"},
		{name: "script", kind: kCommand, field: "Script", req: "required", ka: "script",
			doc: "run every interval; exit status 0 is success"},
		{name: "interval", kind: kDuration, field: "Interval", lo: ms, def: `"1s"`, ka: "interval", doc: "between runs"},
		{name: "timeout", kind: kDuration, field: "Timeout", lo: ms, note: "the interval", ka: "timeout",
			doc: "a run lasting longer fails"},
		{name: "weight", kind: kInt, field: "Weight", lo: -253, hi: 253, def: "0", ka: "weight",
			doc: "0: tracking instances go to FAULT while the script fails; > 0: added to their priority while it succeeds; < 0: subtracted while it fails"},
		{name: "fall", kind: kInt, field: "Fall", lo: 1, hi: inf, def: "1", ka: "fall", doc: "consecutive failures that make the script failed"},
		{name: "rise", kind: kInt, field: "Rise", lo: 1, hi: inf, def: "1", ka: "rise", doc: "consecutive successes that make it OK again"},
	}},
	{name: "vrrp_sync_group", head: "[[vrrp_sync_group]]", keys: []key{
		{name: "name", kind: kName, field: "Name", req: "required", ka: "vrrp_sync_group NAME", doc: "unique"},
		{name: "group", kind: kName, list: true, req: "required (the member vrrp_instance names)", ka: "group",
			doc: "the instances that change state together; each in one group at most"},
		{name: "notify_master", kind: kCommand, field: "NotifyMaster", ka: "notify_master", doc: "run on becoming MASTER"},
		{name: "notify_backup", kind: kCommand, field: "NotifyBackup", ka: "notify_backup", doc: "run on becoming BACKUP"},
		{name: "notify_fault", kind: kCommand, field: "NotifyFault", ka: "notify_fault", doc: "run on becoming FAULT"},
		{name: "notify_stop", kind: kCommand, field: "NotifyStop", ka: "notify_stop", doc: "run on becoming stopped"},
		{name: "notify", kind: kCommand, field: "Notify", ka: "notify",
			doc: "run on every transition with the arguments `GROUP NAME STATE`"},
		{name: "smtp_alert", kind: kBool, field: "SMTPAlert", note: "`global.smtp_alert_vrrp`", ka: "smtp_alert",
			doc: "mail each time every member has reached MASTER, BACKUP or FAULT, and when xlb stops"},
	}},
	{name: "vrrp_instance", head: "[[vrrp_instance]]", keys: []key{
		{name: "name", kind: kName, field: "Name", req: "required", ka: "vrrp_instance NAME", doc: "unique"},
		{name: "interface", kind: kIfName, field: "Interface", req: "required", ka: "interface",
			doc: "where adverts are sent and received"},
		{name: "state", kind: kEnum, field: "State", enum: enumOf(vrrpnames.Master, vrrpnames.Backup), def: `"BACKUP"`, ka: "state",
			doc: "the initial wish"},
		{name: "virtual_router_id", kind: kInt, field: "VirtualRouterID", lo: 1, hi: 255, req: "required (1..255)", ka: "virtual_router_id",
			doc: "unique per interface and address family"},
		{name: "priority", kind: kInt, field: "Priority", lo: 1, hi: 255, def: "100", ka: "priority",
			doc: "255 (the address owner) needs `state = \"MASTER\"`"},
		{name: "version", kind: kInt, field: "Version", lo: 2, hi: 3, def: "2", ka: "version",
			doc: "VRRP version: 2 (RFC 3768, IPv4 only; keepalived's default) or 3 (RFC 5798)"},
		{name: "advert_int", kind: kDuration, field: "AdvertInt", custom: true, lo: 10 * ms, hi: 255 * sec, def: `"1s"`, ka: "advert_int",
			doc: "v2: whole seconds, 1s..255s; v3: 10ms..40.95s in 10ms steps"},
		{name: "preempt", kind: kBool, field: "Preempt", def: "true", ka: "nopreempt (false)",
			doc: "a higher-priority backup takes over; `false` needs `state = \"BACKUP\"`"},
		{name: "preempt_delay", kind: kDuration, field: "PreemptDelay", hi: 1000 * sec, def: `"0s"`, ka: "preempt_delay",
			doc: "not with `preempt = false`"},
		{name: "auth_type", kind: kEnum, enum: enumOf(vrrpnames.AuthTypes...), note: "`\"PASS\"` with `auth_pass`", ka: "authentication { auth_type }",
			doc: "v2 only; `\"AH\"` is not supported"},
		{name: "auth_pass", kind: kString, max: 64, ka: "authentication { auth_pass }",
			doc: "v2 only; the field holds 8 bytes: of a longer one the first 8 are used, with a warning (as keepalived)"},
		{name: "unicast_src_ip", kind: kAddr, field: "UnicastSrcIP", note: "the interface's address", ka: "unicast_src_ip",
			doc: "source of unicast adverts; needs `unicast_peers`"},
		{name: "unicast_peers", kind: kAddr, list: true, note: "none (multicast)", ka: "unicast_peer { }",
			doc: "send adverts to these by unicast; of the VIPs' family"},
		{name: "virtual_ipaddress", kind: kEntry, list: true, req: "required", ka: "virtual_ipaddress { }",
			doc: "`\"ADDR[/LEN] [dev IF] [label LABEL]\"`, one family; LEN defaults to /32 or /128, dev to `interface`"},
		{name: "track_script", kind: kEntry, list: true, ka: "track_script { }",
			doc: "`\"NAME [weight N]\"`, N -253..253, default the script's weight"},
		{name: "track_interface", kind: kEntry, list: true, ka: "track_interface { }",
			doc: "`\"IF [weight N]\"`, default weight 0 (FAULT while the interface is down)"},
		{name: "notify_master", kind: kCommand, field: "NotifyMaster", ka: "notify_master", doc: "run on becoming MASTER"},
		{name: "notify_backup", kind: kCommand, field: "NotifyBackup", ka: "notify_backup", doc: "run on becoming BACKUP"},
		{name: "notify_fault", kind: kCommand, field: "NotifyFault", ka: "notify_fault", doc: "run on becoming FAULT"},
		{name: "notify_stop", kind: kCommand, field: "NotifyStop", ka: "notify_stop", doc: "run on becoming stopped"},
		{name: "notify", kind: kCommand, field: "Notify", ka: "notify",
			doc: "run on every transition with the arguments `INSTANCE NAME STATE PRIORITY`"},
		{name: "notify_timeout", kind: kDuration, field: "NotifyTimeout", lo: sec, hi: 1000 * sec, def: `"10s"`,
			doc: "a notify command running longer is killed"},
		{name: "garp_master_delay", kind: kDuration, field: "GARPMasterDelay", def: `"5s"`, ka: "garp_master_delay",
			doc: "a second burst of gratuitous ARP / unsolicited NA this long after becoming master; `\"0s\"`: none (as keepalived)"},
		{name: "garp_master_repeat", kind: kInt, field: "GARPMasterRepeat", lo: 1, hi: inf, def: "5", ka: "garp_master_repeat",
			doc: "messages per address in each burst"},
		{name: "garp_master_refresh", kind: kDuration, field: "GARPMasterRefresh", def: `"0s"`, ka: "garp_master_refresh",
			doc: "while master, a burst this often; 0 never"},
		{name: "garp_master_refresh_repeat", kind: kInt, field: "GARPMasterRefreshRepeat", lo: 1, hi: inf, def: "1", ka: "garp_master_refresh_repeat",
			doc: "messages per address in a refresh burst"},
		{name: "garp_interval", kind: kDuration, field: "GARPInterval", def: `"0s"`, ka: "garp_interval", doc: "between gratuitous ARPs"},
		{name: "gna_interval", kind: kDuration, field: "GNAInterval", def: `"0s"`, ka: "gna_interval", doc: "between unsolicited NAs"},
		{name: "use_vmac", kind: kBool, field: "UseVMAC", def: "false", ka: "use_vmac",
			doc: "the virtual router MAC 00-00-5E-00-01-VRID, on a macvlan"},
		{name: "learned_advert_int_max_factor", kind: kInt, field: "LearnedAdvertIntMaxFactor", lo: 0, hi: 4095, def: "3",
			doc: "xlb, version 3: a backup adopts the master's `advert_int` (RFC 5798) up to this many times its own; a longer one (one forged advert would silence the VIPs for 3 x 40.95s) is bounded, counted (`xlb_vrrp_rx_errors_total{reason=\"interval_limit\"}`) and logged once per sender; 0: no limit (RFC 5798, keepalived)"},
		{name: "split_brain_check_interval", kind: kDuration, field: "SplitBrainCheckInterval", def: `"1s"`,
			doc: "xlb: how often a master probes (ARP / NS) for another holder of its VIPs; 0 disables"},
		{name: "smtp_alert", kind: kBool, field: "SMTPAlert", note: "`global.smtp_alert_vrrp`", ka: "smtp_alert",
			doc: "mail each transition to MASTER, BACKUP or FAULT, and when xlb stops"},
	}},
	{name: "virtual_server_group", head: "[[virtual_server_group]]", keys: []key{
		{name: "name", kind: kName, field: "Name", req: "required", ka: "virtual_server_group NAME", doc: "unique"},
		{name: "entries", kind: kEntry, list: true, req: "required", ka: "ADDR PORT, ADDR-LAST PORT",
			doc: "`\"ADDR:PORT\"` (`\"[ADDR6]:PORT\"`), or a range of the last byte of an IPv4 address, `\"10.0.0.3-10:80\"`, or of the last group of an IPv6 one, `\"[2001:db8::1-ff]:80\"`; one family; at most 1024 addresses"},
	}},
	{name: "virtual_server", head: "[[virtual_server]]", keys: []key{
		{name: "name", kind: kName, field: "Name", req: "required", doc: "unique; in logs, metrics and status"},
		{name: "address", kind: kAddr, field: "Address", req: "required", ka: "virtual_server ADDR PORT",
			doc: "`address:port/protocol` is unique; not with `group`"},
		{name: "port", kind: kInt, field: "Port", lo: 1, hi: 65535, req: "required", ka: "virtual_server ADDR PORT", doc: "the service port; not with `group`"},
		{name: "group", kind: kName, field: "Group", note: "none", ka: "virtual_server group NAME",
			doc: "a `virtual_server_group` instead of `address` and `port`: one service per entry, named `NAME/ADDR:PORT`, sharing the real servers and their checks (below)"},
		{name: "protocol", kind: kEnum, field: "Protocol", enum: enumOf(dataplane.Protos...), def: `"tcp"`, ka: "protocol", doc: "the transport protocol"},
		{name: "scheduler", kind: kEnum, field: "Scheduler", enum: enumOf(dataplane.Schedulers...), def: `"wlc"`, ka: "lb_algo",
			doc: "the IPVS scheduler (ipvsadm's default: wlc)"},
		{name: "forward", kind: kEnum, field: "Forward", enum: enumOf(dataplane.ForwardModes...), def: `"dr"`, ka: "lb_kind",
			doc: "direct routing, NAT or IP tunnel (ipvsadm -g, -m, -i)"},
		{name: "vrrp_instance", kind: kName, field: "VRRPInstance", note: "none (always forward)",
			doc: "forward only while this instance is MASTER; its `virtual_ipaddress` must include `address`"},
		{name: "persistence_timeout", kind: kDuration, field: "PersistenceTimeout", step: time.Second, def: `"0s"`, ka: "persistence_timeout",
			doc: "a client keeps its real server this long after its last connection; 0 off"},
		{name: "quorum", kind: kInt, field: "Quorum", lo: 1, hi: inf, def: "1", ka: "quorum",
			doc: "minimum total weight of healthy real servers for the service to be up"},
		{name: "hysteresis", kind: kInt, field: "Hysteresis", lo: 0, hi: inf, def: "0", ka: "hysteresis",
			doc: "less than `quorum`: up at >= quorum+hysteresis, down below quorum-hysteresis"},
		{name: "quorum_up", kind: kCommand, field: "QuorumUp", ka: "quorum_up", doc: "run when the quorum is gained"},
		{name: "quorum_down", kind: kCommand, field: "QuorumDown", ka: "quorum_down", doc: "run when the quorum is lost"},
		{name: "sorry_server", kind: kString, max: 64, ka: "sorry_server",
			doc: "`\"ADDR:PORT\"` or `\"ADDR\"` (the service port); takes every new flow while the service is below quorum, also in the first check intervals of a fresh start (real servers start down; a restart that adopts pinned state keeps them as found), as keepalived with `alpha`"},
		{name: "tunnel_type", kind: kEnum, field: "TunnelType", custom: true, enum: enumOf(dataplane.Encaps...), def: `"ipip"`, ka: "tun_type",
			doc: "only with `forward = \"tunnel\"`"},
		{name: "tunnel_port", kind: kInt, lo: 1, hi: 65535, note: "required for `gue`", ka: "tun_port", doc: "the real servers' GUE UDP port"},
		{name: "tunnel_source", kind: kString, max: 64, note: "the egress address",
			doc: "outer source: an address, or a prefix (the source varies per flow)"},
		{name: "smtp_alert", kind: kBool, field: "SMTPAlert", note: "`global.smtp_alert_checker`", ka: "smtp_alert",
			doc: "mail when the quorum is gained or lost; the default of its real servers'"},
		{name: "health_check", kind: kTable, field: "virtual_server.health_check"},
		{name: "real_server", kind: kTables, field: "virtual_server.real_server"},
	}},
	{name: "virtual_server.real_server", head: "[[virtual_server.real_server]]", keys: []key{
		{name: "address", kind: kAddr, field: "Address", req: "required", ka: "real_server ADDR PORT", doc: "of the VIP's family, except with GUE"},
		{name: "port", kind: kInt, field: "Port", lo: 1, hi: 65535, note: "the service port", ka: "real_server ADDR PORT",
			doc: "only `forward = \"nat\"` maps ports"},
		{name: "weight", kind: kInt, field: "Weight", lo: 0, hi: 65535, def: "1", ka: "weight", doc: "0 drains: no new flows"},
		{name: "upper_threshold", kind: kInt, field: "UpperThreshold", lo: 0, hi: inf, def: "0", ka: "uthreshold",
			doc: "at this many connections (active and inactive, as IPVS counts them) it takes no new flows, whatever the scheduler; 0: no limit (ipvsadm -x)"},
		{name: "lower_threshold", kind: kInt, field: "LowerThreshold", lo: 0, hi: inf, def: "0", ka: "lthreshold",
			doc: "once over `upper_threshold`, it takes new flows again below this many; 0: below 3/4 of `upper_threshold` (ipvsadm -y); at most `upper_threshold`"},
		{name: "smtp_alert", kind: kBool, field: "SMTPAlert", note: "the virtual server's", ka: "smtp_alert",
			doc: "mail when its check takes it down or puts it back up"},
		{name: "health_check", kind: kTable, field: "virtual_server.health_check"},
	}},
	{name: "virtual_server.health_check", head: "[virtual_server.health_check]", keys: []key{
		{name: "type", kind: kEnum, field: "Type", enum: checkTypes, def: `"tcp"`, ka: checkTypeKA(), doc: checkTypeDoc()},
		{name: "interval", kind: kDuration, field: "Interval", lo: ms, def: `"2s"`, ka: "delay_loop",
			doc: "keepalived's 60s drains a dead server too slowly"},
		{name: "timeout", kind: kDuration, field: "Timeout", lo: ms, def: `"1s"`, note: "(or the interval if shorter)", ka: "connect_timeout",
			doc: "at most the interval; keepalived's 5s is too long against a 2s interval"},
		{name: "fall", kind: kInt, field: "Fall", lo: 1, hi: inf, def: "3", ka: "retry",
			doc: "consecutive failures that take a real server out (keepalived's `retry 1` does on one lost probe; 3 at 2s drain a dead one within ~6s)"},
		{name: "rise", kind: kInt, field: "Rise", lo: 1, hi: inf, def: "2", doc: "consecutive successes that put it back"},
		{name: "warmup", kind: kDuration, field: "Warmup", custom: true, note: "the interval", ka: "warmup",
			doc: "the first check of a new real server comes at a random time within this; `\"0s\"`: at once"},
		{name: "port", kind: kInt, field: "Port", lo: 1, hi: 65535, note: "the real server's port", ka: "connect_port", doc: "the port checked"},
		{name: "connect_ip", kind: kAddr, field: "ConnectIP", note: "the real server's address", only: netChecks, ka: "connect_ip",
			doc: "the address checked"},
		{name: "bindto", kind: kAddr, field: "BindTo", note: "the kernel's choice", only: netChecks, ka: "bindto",
			doc: "the source address of the check; of the checked address's family"},
		{name: "path", kind: kString, field: "Path", max: 2048, check: checkURLPath, def: `"/"`, only: web, ka: "url { path }", doc: "the request path"},
		{name: "expect_status", kind: kInt, list: true, field: "ExpectStatus", lo: 100, hi: 599, def: "[200]", custom: true, only: web,
			typ: "array of status codes (integers 100..599) and ranges (`\"200-299\"`)", ka: "url { status_code }", doc: "the status codes of a healthy answer"},
		{name: "body_regex", kind: kString, field: "BodyRegex", max: 4096, check: checkRegexp, note: "none", only: web, ka: "url { regex }",
			doc: "an RE2 regexp the body (its first MiB) must match"},
		{name: "digest", kind: kString, field: "Digest", max: 32, check: checkDigest, note: "none", only: web, ka: "url { digest }",
			doc: "the MD5 of the body, 32 hex digits (`genhash`, or `curl -s URL | md5sum`)"},
		{name: "url", kind: kTables, field: "virtual_server.health_check.url", only: web, ka: "url { }"},
		{name: "host", kind: kString, field: "Host", max: 253, check: checkNoSpace, note: "the address", only: web, ka: "virtualhost",
			doc: "the Host header"},
		{name: "http_protocol", kind: kEnum, field: "HTTPProtocol", enum: []string{"1.0", "1.0C", "1.1"}, def: `"1.1"`, only: web, ka: "http_protocol",
			doc: "the request's HTTP version: `1.0`, `1.0C` (with `Connection: close`) or `1.1` (with `Connection: close`); keepalived's default is 1.0"},
		{name: "sni", kind: kString, field: "SNI", max: 253, note: "none", only: tls, ka: "enable_sni", doc: "the TLS server name"},
		{name: "tls_verify", kind: kBool, field: "TLSVerify", def: "false", only: tls, doc: "verify the server's certificate"},
		{name: "ca_file", kind: kPath, field: "CAFile", note: "system CAs", only: tls, ka: "SSL { ca }", doc: "the CAs to verify with; needs `tls_verify`"},
		{name: "payload", kind: kString, field: "Payload", max: 4096, check: checkHexPayload, note: "32 bytes of `xlb check - `", only: enumOf(checktype.UDP), ka: "payload",
			doc: "the datagram sent, in hex digits (white space separates octets)"},
		{name: "require_reply", kind: kString, field: "RequireReply", custom: true, max: 4096, note: "`false`", only: enumOf(checktype.UDP), ka: "require_reply",
			typ: "boolean, or a pattern of hex digits", doc: "`true`: a reply must come; a pattern: a reply must start with it (`x` matches any nibble); `false`: only an ICMP error fails the check, so a healthy check lasts its timeout"},
		{name: "dns_name", kind: kString, field: "DNSName", max: 253, check: checkDNSName, def: `"."`, only: enumOf(checktype.DNS), ka: "DNS_CHECK { name }",
			doc: "the name queried"},
		{name: "dns_type", kind: kEnum, field: "DNSType", enum: []string{"A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG", "DNSKEY"}, def: `"SOA"`,
			only: enumOf(checktype.DNS), ka: "DNS_CHECK { type }", doc: "the type queried; any answer without error (NOERROR) passes"},
		{name: "helo_name", kind: kString, field: "HeloName", max: 253, check: checkNoSpace, note: "the host name", only: enumOf(checktype.SMTP), ka: "helo_name",
			doc: "the name sent with HELO"},
		{name: "file", kind: kPath, field: "File", note: "required for `file`", only: enumOf(checktype.File), ka: "track_file { file }",
			doc: "the file whose number is read every interval (below)"},
		{name: "weight", kind: kInt, field: "Weight", lo: -65535, hi: 65535, def: "1", only: enumOf(checktype.File), ka: "FILE_CHECK { weight }",
			doc: "0: the check fails while the number is not 0; otherwise the number times this is added to the real server's weight"},
		{name: "weight_reverse", kind: kBool, field: "WeightReverse", def: "false", only: enumOf(checktype.File), ka: "weight N reverse",
			doc: "reverse: with weight 0 the check fails while the number is 0; otherwise the product is subtracted"},
		{name: "script", kind: kCommand, field: "Script", note: "required for `script`", only: enumOf(checktype.Script), ka: "MISC_CHECK { misc_path }",
			doc: "run with the real server's address and port appended; also in `XLB_RS_ADDR`, `XLB_RS_PORT`, `XLB_VS_NAME`"},
		{name: "misc_dynamic", kind: kBool, field: "MiscDynamic", def: "false", only: enumOf(checktype.Script), ka: "misc_dynamic",
			doc: "exit status 2..255 is healthy with weight status - 2; 0 healthy with the configured weight; 1 unhealthy"},
		{name: "initial_state", kind: kEnum, field: "InitialState", enum: []string{"down", "up"}, def: `"down"`, ka: "alpha (down)",
			doc: "`up`: a new real server gets traffic before its first check passes"},
	}},
	{name: "virtual_server.health_check.url", head: "[[virtual_server.health_check.url]]", keys: []key{
		{name: "path", kind: kString, field: "Path", max: 2048, check: checkURLPath, req: "required", ka: "path", doc: "the request path"},
		{name: "expect_status", kind: kInt, list: true, field: "ExpectStatus", lo: 100, hi: 599, def: "[200]", custom: true,
			typ: "array of status codes (integers 100..599) and ranges (`\"200-299\"`)", ka: "status_code", doc: "the status codes of a healthy answer"},
		{name: "body_regex", kind: kString, field: "BodyRegex", max: 4096, check: checkRegexp, note: "none", ka: "regex",
			doc: "an RE2 regexp the body (its first MiB) must match"},
		{name: "digest", kind: kString, field: "Digest", max: 32, check: checkDigest, note: "none", ka: "digest", doc: "the MD5 of the body, 32 hex digits"},
		{name: "host", kind: kString, field: "Host", max: 253, check: checkNoSpace, note: "the check's `host`", ka: "virtualhost", doc: "the Host header"},
	}},
}

// bgpSections are [bgp] and its sub-tables (bgp.go decodes them).
var bgpSections = []*section{
	{name: "bgp", head: "[bgp]", keys: []key{
		{name: "asn", kind: kInt, field: "ASN", lo: 1, hi: math.MaxUint32, req: "required (1..4294967295)",
			doc: "this director's AS number"},
		{name: "router_id", kind: kAddr, field: "RouterID", note: "the first IPv4 address of `dataplane.interfaces`",
			doc: "the BGP identifier, an IPv4 address (also with IPv6 peers)"},
		{name: "announce", kind: kEnum, field: "Announce", enum: []string{"healthy", "always"}, def: `"healthy"`,
			doc: "`healthy`: a VIP is announced while one of its services is forwarded, at quorum (or its sorry server serves), its connection sync ready and its `vrrp_instance`, if any, MASTER; `always`: while one of its services is forwarded, whatever its quorum (active-active directors without VRRP)"},
		{name: "drain_time", kind: kDuration, field: "DrainTime", hi: 3600 * sec, def: `"10s"`,
			doc: "`xlb drain` and SIGTERM announce the VIPs with the GRACEFUL_SHUTDOWN community (65535:0, RFC 8326) this long before withdrawing them"},
		{name: "restart_time", kind: kDuration, field: "RestartTime", hi: 4095 * sec, step: time.Second, def: `"120s"`,
			doc: "graceful restart (RFC 4724): how long a router keeps this director's routes while its daemon restarts (the XDP program keeps forwarding); `\"0s\"` disables graceful restart"},
		{name: "peer", kind: kTables, field: "bgp.peer"},
		{name: "vip", kind: kTables, field: "bgp.vip"},
	}},
	{name: "bgp.peer", head: "[[bgp.peer]]", keys: []key{
		{name: "address", kind: kAddr, field: "Address", req: "required", doc: "the router; unique. xlb opens the session (it does not listen on port 179)"},
		{name: "asn", kind: kInt, field: "ASN", lo: 1, hi: math.MaxUint32, req: "required (1..4294967295)", doc: "the router's AS number; equal to `bgp.asn` for iBGP"},
		{name: "port", kind: kInt, field: "Port", lo: 1, hi: 65535, def: "179", doc: "the router's BGP port"},
		{name: "hold_time", kind: kDuration, field: "HoldTime", custom: true, hi: 65535 * sec, step: time.Second, def: `"90s"`,
			doc: "proposed hold time: 0 or at least 3s (RFC 4271); keepalives every third of it. Without BFD a dead director is withdrawn after it"},
		{name: "bfd", kind: kBool, field: "BFD", def: "false", doc: "single-hop BFD (RFC 5880/5881, UDP 3784) on the session: a dead director is withdrawn within `bfd_interval` x `bfd_multiplier`; the router must run BFD for this peer too"},
		{name: "bfd_interval", kind: kDuration, field: "BFDInterval", lo: 10 * ms, hi: 60 * sec, def: `"300ms"`, doc: "BFD transmit and receive interval (FRR's default)"},
		{name: "bfd_multiplier", kind: kInt, field: "BFDMultiplier", lo: 1, hi: 255, def: "3", doc: "BFD packets missed before the session is down"},
		{name: "password_file", kind: kPath, field: "PasswordFile", note: "none", doc: "a file holding the TCP MD5 password (RFC 2385; trailing new line ignored, 80 bytes at most), readable by root only"},
		{name: "med", kind: kInt, field: "MED", custom: true, lo: 0, hi: math.MaxUint32, note: "none", doc: "MULTI_EXIT_DISC sent to this peer (replaces a VIP's)"},
		{name: "local_pref", kind: kInt, field: "LocalPref", custom: true, lo: 0, hi: math.MaxUint32, note: "none", doc: "LOCAL_PREF sent to this peer, iBGP only (replaces a VIP's)"},
		{name: "communities", kind: kString, list: true, field: "Communities", custom: true, max: 32, check: checkCommunity, note: "none",
			doc: "`\"AS:VALUE\"` communities added to every route sent to this peer"},
	}},
	{name: "bgp.vip", head: "[[bgp.vip]]", keys: []key{
		{name: "address", kind: kAddr, field: "Address", req: "required", doc: "a `virtual_server` address; unique"},
		{name: "med", kind: kInt, field: "MED", custom: true, lo: 0, hi: math.MaxUint32, note: "none", doc: "MULTI_EXIT_DISC of the VIP's route"},
		{name: "local_pref", kind: kInt, field: "LocalPref", custom: true, lo: 0, hi: math.MaxUint32, note: "none", doc: "LOCAL_PREF of the VIP's route (iBGP peers)"},
		{name: "communities", kind: kString, list: true, field: "Communities", custom: true, max: 32, check: checkCommunity, note: "none",
			doc: "`\"AS:VALUE\"` communities of the VIP's route"},
	}},
}

// sectionOf returns the section named name.
func sectionOf(name string) *section {
	for _, s := range sections {
		if s.name == name {
			return s
		}
	}
	panic("config: no section " + name)
}

func init() {
	sections = append(sections, bgpSections...)
	sections = append(sections, syncSections...)
	for _, s := range sections {
		if len(s.keys) > 64 {
			panic("config: more keys in section " + s.name + " than table.done holds")
		}
		s.index = map[string]int{}
		for i := range s.keys {
			k := &s.keys[i]
			k.idx = i
			s.index[k.name] = i
			if k.def == "" {
				continue
			}
			var v struct{ V any }
			if _, err := toml.Decode("V = "+k.def, &v); err != nil {
				panic(fmt.Sprintf("config: default of %s.%s: %v", s.name, k.name, err))
			}
			d := &decoder{idx: buildLineIndex("")}
			t := d.table(nil, "", nil, s)
			if k.list { // an array of integers
				var ints []int
				for _, e := range v.V.([]any) {
					n, _ := t.value(k, loc{idx: -1}, e)
					ints = append(ints, int(n.(int64)))
				}
				k.dv = ints
			} else {
				k.dv, _ = t.value(k, loc{idx: -1}, v.V)
			}
			if len(d.errs.list) > 0 {
				panic(fmt.Sprintf("config: default of %s.%s: %v", s.name, k.name, d.errs.list))
			}
		}
	}
}

// setDefaults sets the fields of dst (a pointer to the struct of sec) to
// their keys' defaults, all of them or only those of the keys named.
func setDefaults(sec *section, dst any, names ...string) {
	rv := reflect.ValueOf(dst).Elem()
	for i := range sec.keys {
		k := &sec.keys[i]
		if k.dv != nil && k.field != "" && (len(names) == 0 || slices.Contains(names, k.name)) {
			set(fieldOf(rv, k.field), k.dv)
		}
	}
}

// fieldIndex caches where a field is in a struct type (reflect's
// FieldByName searches every time).
var fieldIndex sync.Map // fieldAt -> []int

type fieldAt struct {
	t    reflect.Type
	name string
}

// fieldOf returns the field of struct rv named name.
func fieldOf(rv reflect.Value, name string) reflect.Value {
	at := fieldAt{rv.Type(), name}
	if idx, ok := fieldIndex.Load(at); ok {
		return rv.FieldByIndex(idx.([]int))
	}
	f, ok := at.t.FieldByName(name)
	if !ok {
		panic(fmt.Sprintf("config: %s has no field %s", at.t, name))
	}
	fieldIndex.Store(at, f.Index)
	return rv.FieldByIndex(f.Index)
}

// set stores a decoded value in a field.
func set(f reflect.Value, v any) {
	switch v := v.(type) {
	case string:
		// A type declared elsewhere with its names (dataplane.Proto,
		// vrrp's State) reads its own; the key's enum checked the name.
		if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
			if err := u.UnmarshalText([]byte(v)); err != nil {
				panic(fmt.Sprintf("config: %v", err))
			}
			return
		}
		f.SetString(v)
	case bool:
		f.SetBool(v)
	case time.Duration:
		f.SetInt(int64(v))
	case int64:
		if f.CanInt() {
			f.SetInt(v)
		} else {
			f.SetUint(uint64(v))
		}
	case []int:
		f.Set(reflect.ValueOf(slices.Clone(v)))
	default:
		f.Set(reflect.ValueOf(v))
	}
}

// maxLen is the longest string k accepts.
func (k *key) maxLen() int {
	if k.max > 0 {
		return k.max
	}
	return kinds[k.kind].max
}
