package keepalived

import (
	"net"
	"strconv"
	"time"
)

// The keyword table: every keepalived keyword the importer knows, with the
// xlb key it maps to, or why it is not carried over. The handlers fill the
// keepalived model (model.go); convert.go turns that into xlb's TOML. The
// reference document (README.md here) is generated from this table
// (TestReference).

type status int

const (
	mapped      status = iota // carried over to the xlb key(s) named
	same                      // nothing to write: xlb does the same
	ignored                   // a warning: no effect in xlb, dropped
	unsupported               // an error: xlb cannot carry it over
)

var statusText = [...]string{mapped: "mapped", same: "same in xlb", ignored: "warning, ignored", unsupported: "error, not supported"}

type keyword struct {
	name  string
	alias []string
	xlb   string // the xlb key(s)
	st    status
	note  string
	sub   []*keyword // a block of keywords
	vals  bool       // a block of values
	skip  bool       // a block skipped whole
	named bool       // a block of values after a name (virtual_server_group NAME)
	fn    func(p *parser, s *stmt)
	end   func(p *parser, s *stmt) // when the block closes
	doc   string                   // the block's heading in the reference
}

// Notes shared by several keywords.
const (
	noSNMP    = "xlb has no SNMP or D-Bus interface: use the metrics endpoint and xlb status"
	noProcess = "process and scheduling settings of keepalived's own daemons"
	noRoutes  = "xlb manages no routes, rules or static addresses: configure them with the system's network configuration"
	noSync    = "the imported configuration drives IPVS (mode = \"ipvs\"), and xlb does not start the kernel's sync daemon: run ipvsadm --start-daemon, or use xlb's [sync] with mode = \"xdp\" (protocol = \"ipvs\" talks to kernel IPVS directors)"
	noTrack   = "xlb tracks scripts and interfaces only (vrrp_script, track_interface)"
	noNftIpt  = "xlb installs no iptables or nftables rules"
)

func group(st status, note string, names ...string) []*keyword {
	var out []*keyword
	for _, n := range names {
		out = append(out, &keyword{name: n, st: st, note: note})
	}
	return out
}

func skipBlock(st status, note string, names ...string) []*keyword {
	out := group(st, note, names...)
	for _, k := range out {
		k.skip = true
	}
	return out
}

func join(lists ...[]*keyword) []*keyword {
	var out []*keyword
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

var topKeywords []*keyword

func init() {
	topKeywords = join([]*keyword{
		{name: "global_defs", st: mapped, xlb: "[global], [dataplane], defaults of [[vrrp_instance]]", sub: globalKeywords, doc: "global_defs"},
		{name: "vrrp_script", st: mapped, xlb: "[[vrrp_script]] name", sub: scriptKeywords, doc: "vrrp_script NAME",
			fn: func(p *parser, s *stmt) {
				name, _ := p.arg(s, 1)
				p.script = &kaScript{pos: s.Pos, name: name}
				p.c.scripts = append(p.c.scripts, p.script)
			}},
		{name: "vrrp_sync_group", st: mapped, xlb: "[[vrrp_sync_group]] name", sub: syncKeywords, doc: "vrrp_sync_group NAME",
			fn: func(p *parser, s *stmt) {
				name, _ := p.arg(s, 1)
				p.group = &kaGroup{pos: s.Pos, name: name, notify: map[string]setting[string]{}}
				p.c.groups = append(p.c.groups, p.group)
			}},
		{name: "vrrp_instance", st: mapped, xlb: "[[vrrp_instance]] name", sub: instanceKeywords, doc: "vrrp_instance NAME",
			fn: func(p *parser, s *stmt) {
				name, _ := p.arg(s, 1)
				p.inst = &kaInstance{pos: s.Pos, name: name, notify: map[string]setting[string]{}}
				p.c.instances = append(p.c.instances, p.inst)
			}},
		{name: "virtual_server_group", st: mapped, xlb: "[[virtual_server_group]] name, entries", vals: true, named: true,
			note: "`ADDR PORT` and `ADDR1-N PORT` (a range of the last byte, or the last group of an IPv6 address) entries; `fwmark N` entries are not supported (xlb has no firewall-mark services)",
			fn: func(p *parser, s *stmt) {
				name, _ := p.arg(s, 1)
				g := &kaVSGroup{pos: s.Pos, name: name}
				for _, v := range s.vals {
					g.entries = append(g.entries, entry{v.Pos, v.Words})
				}
				p.c.vsGroups = append(p.c.vsGroups, g)
			}},
		{name: "virtual_server", st: mapped, xlb: "[[virtual_server]] address, port", sub: vsKeywords, doc: "virtual_server ADDR PORT",
			note: "`virtual_server group NAME` becomes `group = \"NAME\"`; `virtual_server fwmark N` is not supported (xlb has no firewall-mark services)",
			fn:   vsStart, end: vsEnd},
	},
		skipBlock(unsupported, noRoutes, "static_ipaddress", "static_routes", "static_rules"),
		[]*keyword{{name: "track_file", alias: []string{"vrrp_track_file"}, st: mapped, xlb: "health_check.file, weight, weight_reverse of the FILE_CHECKs naming it",
			sub: trackFileKeywords, doc: "track_file NAME", note: "for FILE_CHECK; a VRRP instance's track_file is not supported",
			fn: func(p *parser, s *stmt) {
				name, _ := p.arg(s, 1)
				p.tf = &kaTrackFile{pos: s.Pos, name: name}
				p.c.trackFiles = append(p.c.trackFiles, p.tf)
			}}},
		skipBlock(unsupported, noTrack, "vrrp_track_process", "track_group"),
		skipBlock(unsupported, "xlb has no BFD", "bfd_instance"),
		skipBlock(ignored, "xlb follows link state from netlink", "linkbeat_interfaces"),
		skipBlock(unsupported, "xlb sends gratuitous ARP per instance (garp_* keys)", "garp_group", "vrrp_garp_extra_if"),
		skipBlock(ignored, "xlb follows link state from netlink", "interface_up_down_delays"),
		group(ignored, "xlb has its own SSL settings per health check", "SSL"),
		group(unsupported, "run xlb in the namespace: ip netns exec NAME xlb run", "net_namespace", "net_namespace_ipvs"),
		group(ignored, noProcess, "instance", "use_pid_dir", "namespace_with_ipsets"),
	)
	for _, k := range topKeywords {
		if k.name == "SSL" {
			k.skip = true
		}
	}
}

var trackFileKeywords = []*keyword{
	{name: "file", st: mapped, xlb: "health_check.file", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok && !p.tf.file.ok {
			p.tf.file.set(v, s.Pos)
		}
	}},
	{name: "weight", st: mapped, xlb: "health_check.weight, weight_reverse", note: "keepalived's default 1; -254..254, `reverse`",
		fn: func(p *parser, s *stmt) {
			if n, ok := p.integer(s, 1, -254, 254); ok {
				p.tf.weight.set(n, s.Pos)
			}
			p.tf.reverse = len(s.Words) > 2 && s.Words[2] == "reverse"
		}},
	{name: "init_file", st: unsupported, note: "xlb does not create the file: create it with the value wanted (a missing file reads 0)"},
}

var globalKeywords = join([]*keyword{
	{name: "router_id", st: mapped, xlb: "global.router_id", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.c.routerID.set(v, s.Pos)
		}
	}},
	{name: "script_user", st: mapped, xlb: "global.script_user, global.script_group",
		note: "without it keepalived runs scripts as `keepalived_script` if that user exists, xlb as root",
		fn: func(p *parser, s *stmt) {
			if v, ok := p.arg(s, 1); ok {
				p.c.scriptUser.set(v, s.Pos)
			}
			if len(s.Words) > 2 {
				p.c.scriptGroup.set(s.Words[2], s.Pos)
			}
		}},
	{name: "enable_script_security", st: mapped, xlb: "global.enable_script_security", fn: func(p *parser, s *stmt) {
		p.c.scriptSecurity.set(true, s.Pos)
	}},
	{name: "lvs_timeouts", st: mapped, xlb: "dataplane.tcp_timeout, tcp_fin_timeout, udp_timeout", fn: func(p *parser, s *stmt) {
		for i := 1; i+1 < len(s.Words); i += 2 {
			n, err := strconv.Atoi(s.Words[i+1])
			if err != nil || n < 1 || n > 86400*31 {
				p.d.warnf(s.Pos, s.kw(), "invalid timeout %q: ignored, as keepalived ignores it", s.Words[i+1])
				continue
			}
			d := time.Duration(n) * time.Second
			switch s.Words[i] {
			case "tcp":
				p.c.tcp.set(d, s.Pos)
			case "tcpfin":
				p.c.tcpfin.set(d, s.Pos)
			case "udp":
				p.c.udp.set(d, s.Pos)
			default:
				p.d.warnf(s.Pos, s.kw(), "unknown timeout %q: ignored, as keepalived ignores it", s.Words[i])
			}
		}
	}},
	{name: "vrrp_version", st: mapped, xlb: "vrrp_instance.version of every instance", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 2, 3); ok {
			p.c.vrrpVersion.set(n, s.Pos)
		}
	}},
	{name: "vrrp_garp_master_delay", st: mapped, xlb: "vrrp_instance.garp_master_delay of every instance", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 0, 255); ok {
			p.c.garpDelay.set(time.Duration(n)*time.Second, s.Pos)
		}
	}},
	{name: "vrrp_garp_master_repeat", st: mapped, xlb: "vrrp_instance.garp_master_repeat of every instance", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 1, 255); ok {
			p.c.garpRepeat.set(n, s.Pos)
		}
	}},
	{name: "vrrp_garp_master_refresh", st: mapped, xlb: "vrrp_instance.garp_master_refresh of every instance", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 0, math32); ok {
			p.c.garpRefresh.set(time.Duration(n)*time.Second, s.Pos)
		}
	}},
	{name: "vrrp_garp_master_refresh_repeat", st: mapped, xlb: "vrrp_instance.garp_master_refresh_repeat of every instance", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 1, 255); ok {
			p.c.garpRefreshRep.set(n, s.Pos)
		}
	}},
	{name: "vrrp_garp_interval", st: mapped, xlb: "vrrp_instance.garp_interval of every instance",
		note: "0 is out of range for keepalived (ignored with a warning)", fn: func(p *parser, s *stmt) {
			if d, ok := p.timer(s, 1, 1, 1000*1000000); ok {
				p.c.garpInterval.set(d, s.Pos)
			}
		}},
	{name: "vrrp_gna_interval", st: mapped, xlb: "vrrp_instance.gna_interval of every instance", fn: func(p *parser, s *stmt) {
		if d, ok := p.timer(s, 1, 1, 1000*1000000); ok {
			p.c.gnaInterval.set(d, s.Pos)
		}
	}},
	{name: "lvs_sync_daemon", st: unsupported, note: noSync, skip: false},
},
	mailKeywords,
	group(ignored, noSNMP, "enable_snmp_vrrp", "enable_snmp_checker", "enable_snmp_rfc", "enable_snmp_rfcv2", "enable_snmp_rfcv3",
		"enable_snmp_keepalived", "enable_traps", "snmp_socket", "enable_dbus", "dbus_service_name", "enable_dbus_invalid_function"),
	group(ignored, noProcess, "vrrp_priority", "checker_priority", "bfd_priority", "vrrp_no_swap", "checker_no_swap", "bfd_no_swap",
		"vrrp_rt_priority", "checker_rt_priority", "bfd_rt_priority", "vrrp_rlimit_rttime", "checker_rlimit_rttime", "bfd_rlimit_rttime",
		"vrrp_cpu_affinity", "checker_cpu_affinity", "bfd_cpu_affinity", "process_names", "process_name", "vrrp_process_name",
		"checker_process_name", "bfd_process_name", "child_wait_time", "umask", "random_seed", "config_save_dir", "tmp_config_directory",
		"reload_check_config", "reload_file", "reload_time_file", "reload_repeat", "data_use_instance", "linkbeat_use_polling",
		"vrrp_netlink_cmd_rcv_bufs", "vrrp_netlink_cmd_rcv_bufs_force", "vrrp_netlink_monitor_rcv_bufs",
		"vrrp_netlink_monitor_rcv_bufs_force", "lvs_netlink_cmd_rcv_bufs", "lvs_netlink_cmd_rcv_bufs_force",
		"lvs_netlink_monitor_rcv_bufs", "lvs_netlink_monitor_rcv_bufs_force", "process_monitor_rcv_bufs",
		"process_monitor_rcv_bufs_force", "vrrp_rx_bufs_policy", "vrrp_rx_bufs_multiplier", "include_check",
		"checker_log_all_failures", "log_unknown_vrids", "vrrp_startup_delay", "dynamic_interfaces", "default_interface",
		"disable_local_igmp", "rs_init_notifies", "vrrp_notify_priority_changes"),
	group(ignored, "xlb has no notify FIFO: use notify scripts", "notify_fifo", "notify_fifo_script", "vrrp_notify_fifo",
		"vrrp_notify_fifo_script", "lvs_notify_fifo", "lvs_notify_fifo_script", "fifo_write_vrrp_states_on_reload"),
	group(ignored, "xlb removes what it installed on SIGTERM", "lvs_flush", "lvs_flush_on_stop"),
	group(unsupported, "xlb runs no startup or shutdown scripts", "startup_script", "startup_script_timeout", "shutdown_script", "shutdown_script_timeout"),
	group(ignored, noNftIpt, "vrrp_iptables", "vrrp_ipsets", "nftables", "nftables_priority", "nftables_ifindex", "nftables_counters",
		"nftables_ipvs", "nftables_ipvs_priority", "nftables_ipvs_start_fwmark"),
	group(unsupported, "xlb always uses 224.0.0.18 and ff02::12", "vrrp_mcast_group4", "vrrp_mcast_group6"),
	group(ignored, "xlb sends VRRP as RFC 5798 and keepalived's defaults", "vrrp_strict", "vrrp_skip_check_adv_addr", "vrrp_check_unicast_src",
		"vrrp_lower_prio_no_advert", "vrrp_higher_prio_send_advert", "vrrp_down_timer_adverts", "vrrp_min_garp",
		"vrrp_garp_lower_prio_delay", "vrrp_garp_lower_prio_repeat", "max_auto_priority", "min_auto_priority_delay",
		"vmac_prefix", "vmac_addr_prefix"),
)

const math32 = 1<<31 - 1

// mailKeywords are global_defs' mail alerts (global_parser.c).
var mailKeywords = []*keyword{
	{name: "notification_email", st: mapped, xlb: "global.notification_email", vals: true, fn: func(p *parser, s *stmt) {
		for _, v := range s.vals {
			for _, w := range v.Words {
				p.c.emails = append(p.c.emails, entry{v.Pos, []string{w}})
			}
		}
	}},
	{name: "notification_email_from", st: mapped, xlb: "global.notification_email_from", note: "keepalived's default, USER@HOST, is xlb's",
		fn: func(p *parser, s *stmt) {
			if v, ok := p.arg(s, 1); ok {
				p.c.emailFrom.set(v, s.Pos)
			}
		}},
	{name: "smtp_server", st: mapped, xlb: "global.smtp_server", note: "`HOST [PORT]` becomes `\"HOST:PORT\"`, port 25 by default", fn: func(p *parser, s *stmt) {
		host, ok := p.arg(s, 1)
		if !ok {
			return
		}
		port := 25
		if len(s.Words) > 2 {
			n, err := strconv.Atoi(s.Words[2])
			if err != nil || n < 1 || n > 65535 {
				p.d.warnf(s.Pos, s.kw(), "invalid port %q: ignored, as keepalived ignores the server", s.Words[2])
				return
			}
			port = n
		}
		p.c.smtpServer.set(net.JoinHostPort(host, strconv.Itoa(port)), s.Pos)
	}},
	{name: "smtp_helo_name", st: mapped, xlb: "global.smtp_helo_name", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.c.smtpHelo.set(v, s.Pos)
		}
	}},
	{name: "smtp_connect_timeout", st: mapped, xlb: "global.smtp_connect_timeout", note: "seconds; keepalived's 0 is 1s, and its default 30s is xlb's",
		fn: func(p *parser, s *stmt) {
			n, ok := p.integer(s, 1, 0, math32)
			if !ok {
				return
			}
			switch {
			case n == 0:
				p.d.warnf(s.Pos, s.kw(), "0: 1s, as keepalived sets it")
				n = 1
			case n > 3600:
				p.d.warnf(s.Pos, s.kw(), "%ds: 1h, xlb's longest", n)
				n = 3600
			}
			p.c.smtpTimeout.set(time.Duration(n)*time.Second, s.Pos)
		}},
	{name: "smtp_alert", st: mapped, xlb: "global.smtp_alert", fn: smtpAlert(func(p *parser) *setting[bool] { return &p.c.smtpAlert })},
	{name: "smtp_alert_vrrp", st: mapped, xlb: "global.smtp_alert_vrrp", fn: smtpAlert(func(p *parser) *setting[bool] { return &p.c.smtpAlertVRRP })},
	{name: "smtp_alert_checker", st: mapped, xlb: "global.smtp_alert_checker", fn: smtpAlert(func(p *parser) *setting[bool] { return &p.c.smtpAlertChecker })},
	{name: "no_email_faults", st: mapped, xlb: "global.no_email_faults", fn: func(p *parser, s *stmt) { p.c.noEmailFaults.set(true, s.Pos) }},
	{name: "no_checker_emails", st: same, note: "xlb runs one check per real server: its mails are the real server's"},
	{name: "email_faults", st: same, note: "xlb mails FAULT states unless no_email_faults"},
}

var scriptKeywords = join([]*keyword{
	{name: "script", st: mapped, xlb: "vrrp_script.script", note: "split as keepalived splits it (quotes and escapes)",
		fn: func(p *parser, s *stmt) {
			if c, ok := p.command(s); ok {
				p.script.script.set(c, s.Pos)
			}
		}},
	{name: "interval", st: mapped, xlb: "vrrp_script.interval", note: "keepalived's default 1s, as xlb's", fn: func(p *parser, s *stmt) {
		if d, ok := p.timer(s, 1, 1, 0); ok {
			p.script.interval.set(d, s.Pos)
		}
	}},
	{name: "timeout", st: mapped, xlb: "vrrp_script.timeout", fn: func(p *parser, s *stmt) {
		if d, ok := p.timer(s, 1, 1, 0); ok {
			p.script.timeout.set(d, s.Pos)
		}
	}},
	{name: "weight", st: mapped, xlb: "vrrp_script.weight", note: "`weight N reverse` is not supported", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, -253, 253); ok {
			p.script.weight.set(n, s.Pos)
		}
		if len(s.Words) > 2 && s.Words[2] == "reverse" {
			p.d.errorf(s.Pos, s.kw(), "reverse is not supported by xlb")
		}
	}},
	{name: "rise", st: mapped, xlb: "vrrp_script.rise", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 1, math32); ok {
			p.script.rise.set(n, s.Pos)
		}
	}},
	{name: "fall", st: mapped, xlb: "vrrp_script.fall", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 1, math32); ok {
			p.script.fall.set(n, s.Pos)
		}
	}},
},
	group(unsupported, "xlb runs every script as global.script_user", "user"),
	group(ignored, "xlb starts a script's state as failed until its first run", "init_fail"),
)

var notifyNames = []string{"notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"}

func notifyKeywords(table string, set func(p *parser) map[string]setting[string]) []*keyword {
	var out []*keyword
	for _, n := range notifyNames {
		out = append(out, &keyword{name: n, st: mapped, xlb: table + "." + n, fn: func(p *parser, s *stmt) {
			if c, ok := p.command(s); ok {
				set(p)[n] = setting[string]{c, s.Pos, true}
			}
		}})
	}
	return out
}

var syncKeywords = join([]*keyword{
	{name: "group", st: mapped, xlb: "vrrp_sync_group.group", vals: true, fn: func(p *parser, s *stmt) {
		for _, v := range s.vals {
			for _, w := range v.Words {
				p.group.members = append(p.group.members, entry{v.Pos, []string{w}})
			}
		}
	}},
},
	notifyKeywords("vrrp_sync_group", func(p *parser) map[string]setting[string] { return p.group.notify }),
	[]*keyword{{name: "smtp_alert", st: mapped, xlb: "vrrp_sync_group.smtp_alert", fn: smtpAlert(func(p *parser) *setting[bool] { return &p.group.smtpAlert })}},
	group(ignored, "xlb moves a sync group's instances together always", "global_tracking", "sync_group_tracking_weight"),
	group(ignored, "no effect in xlb", "notify_priority_changes", "notify_deleted"),
	skipBlock(unsupported, "track in the member instances (track_script, track_interface)", "track_interface", "track_script", "track_file", "track_process", "track_bfd"),
)

var authKeywords = []*keyword{
	{name: "auth_type", st: mapped, xlb: "vrrp_instance.auth_type", note: "PASS; AH is not supported", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.inst.authType.set(v, s.Pos)
		}
	}},
	{name: "auth_pass", st: mapped, xlb: "vrrp_instance.auth_pass", note: "the first 8 characters, as keepalived", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.inst.authPass.set(v, s.Pos)
		}
	}},
}

func instTimer(get func(i *kaInstance) *setting[time.Duration], lo, hi int64) func(p *parser, s *stmt) {
	return func(p *parser, s *stmt) {
		if d, ok := p.timer(s, 1, lo, hi); ok {
			get(p.inst).set(d, s.Pos)
		}
	}
}

func instInt(get func(i *kaInstance) *setting[int], lo, hi int64) func(p *parser, s *stmt) {
	return func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, lo, hi); ok {
			get(p.inst).set(n, s.Pos)
		}
	}
}

func instValues(get func(i *kaInstance) *[]entry) func(p *parser, s *stmt) {
	return func(p *parser, s *stmt) {
		for _, v := range s.vals {
			*get(p.inst) = append(*get(p.inst), entry{v.Pos, v.Words})
		}
	}
}

var instanceKeywords = join([]*keyword{
	{name: "state", st: mapped, xlb: "vrrp_instance.state", note: "anything but MASTER is BACKUP, with a warning (as keepalived); MASTER without a priority means priority 255 in keepalived",
		fn: func(p *parser, s *stmt) {
			v, ok := p.arg(s, 1)
			if !ok {
				return
			}
			if v != "MASTER" && v != "BACKUP" {
				p.d.warnf(s.Pos, s.kw(), "unknown state %q: BACKUP, as keepalived defaults to", v)
				v = "BACKUP"
			}
			p.inst.state.set(v, s.Pos)
		}},
	{name: "interface", st: mapped, xlb: "vrrp_instance.interface", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.inst.iface.set(v, s.Pos)
		}
	}},
	{name: "virtual_router_id", st: mapped, xlb: "vrrp_instance.virtual_router_id", fn: instInt(func(i *kaInstance) *setting[int] { return &i.vrid }, 1, 255)},
	{name: "priority", st: mapped, xlb: "vrrp_instance.priority", note: "keepalived's default 100, or 255 with state MASTER", fn: instInt(func(i *kaInstance) *setting[int] { return &i.priority }, 1, 255)},
	{name: "version", st: mapped, xlb: "vrrp_instance.version", note: "IPv6 instances are version 3, as keepalived makes them", fn: instInt(func(i *kaInstance) *setting[int] { return &i.version }, 2, 3)},
	{name: "advert_int", st: mapped, xlb: "vrrp_instance.advert_int", note: "version 2: rounded to whole seconds, as keepalived", fn: instTimer(func(i *kaInstance) *setting[time.Duration] { return &i.advert }, 10000, 255*1000000)},
	{name: "nopreempt", st: mapped, xlb: "vrrp_instance.preempt = false", note: "dropped with priority 255, as keepalived drops it; with state MASTER xlb needs BACKUP (keepalived starts as master then does not preempt)",
		fn: func(p *parser, s *stmt) { p.inst.nopreempt.set(true, s.Pos) }},
	{name: "preempt", st: same, note: "the default", fn: func(p *parser, s *stmt) { p.inst.nopreempt = setting[bool]{} }},
	{name: "preempt_delay", st: mapped, xlb: "vrrp_instance.preempt_delay", fn: instTimer(func(i *kaInstance) *setting[time.Duration] { return &i.preemptDelay }, 0, 1000*1000000)},
	{name: "authentication", st: mapped, xlb: "vrrp_instance.auth_type, auth_pass", sub: authKeywords, doc: "authentication"},
	{name: "virtual_ipaddress", st: mapped, xlb: "vrrp_instance.virtual_ipaddress", vals: true,
		note: "`ADDR[/LEN] [dev IF] [label L]`; `brd` and `scope` are dropped with a warning (xlb adds the address with the kernel's defaults); other options are errors",
		fn:   instValues(func(i *kaInstance) *[]entry { return &i.vips })},
	{name: "unicast_src_ip", st: mapped, xlb: "vrrp_instance.unicast_src_ip", fn: func(p *parser, s *stmt) {
		if v, ok := p.arg(s, 1); ok {
			p.inst.srcIP.set(v, s.Pos)
		}
	}},
	{name: "unicast_peer", st: mapped, xlb: "vrrp_instance.unicast_peers", vals: true, note: "`min_ttl`/`max_ttl` are not supported",
		fn: instValues(func(i *kaInstance) *[]entry { return &i.peers })},
	{name: "track_interface", st: mapped, xlb: "vrrp_instance.track_interface", vals: true, fn: instValues(func(i *kaInstance) *[]entry { return &i.trackIfs })},
	{name: "track_script", st: mapped, xlb: "vrrp_instance.track_script", vals: true, note: "a reference to a vrrp_script keepalived removed (no script) is dropped, as keepalived drops it",
		fn: instValues(func(i *kaInstance) *[]entry { return &i.trackScripts })},
	{name: "garp_master_delay", st: mapped, xlb: "vrrp_instance.garp_master_delay", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 0, 255); ok {
			p.inst.garpDelay.set(time.Duration(n)*time.Second, s.Pos)
		}
	}},
	{name: "garp_master_repeat", st: mapped, xlb: "vrrp_instance.garp_master_repeat", fn: instInt(func(i *kaInstance) *setting[int] { return &i.garpRepeat }, 1, 255)},
	{name: "garp_master_refresh", st: mapped, xlb: "vrrp_instance.garp_master_refresh", fn: func(p *parser, s *stmt) {
		if n, ok := p.integer(s, 1, 0, math32); ok {
			p.inst.garpRefresh.set(time.Duration(n)*time.Second, s.Pos)
		}
	}},
	{name: "garp_master_refresh_repeat", st: mapped, xlb: "vrrp_instance.garp_master_refresh_repeat", fn: instInt(func(i *kaInstance) *setting[int] { return &i.garpRefreshRep }, 1, 255)},
	{name: "garp_interval", st: mapped, xlb: "vrrp_instance.garp_interval", fn: instTimer(func(i *kaInstance) *setting[time.Duration] { return &i.garpInterval }, 1, 1000*1000000)},
	{name: "gna_interval", st: mapped, xlb: "vrrp_instance.gna_interval", fn: instTimer(func(i *kaInstance) *setting[time.Duration] { return &i.gnaInterval }, 1, 1000*1000000)},
	{name: "use_vmac", st: mapped, xlb: "vrrp_instance.use_vmac", note: "the interface name given is not kept: xlb names the macvlan itself",
		fn: func(p *parser, s *stmt) {
			p.inst.useVMAC.set(true, s.Pos)
			if len(s.Words) > 1 {
				p.d.warnf(s.Pos, s.kw(), "the macvlan name %q is not kept: xlb names it itself", s.Words[1])
			}
		}},
	{name: "native_ipv6", st: same, note: "an IPv6 instance is version 3 in xlb"},
},
	notifyKeywords("vrrp_instance", func(p *parser) map[string]setting[string] { return p.inst.notify }),
	[]*keyword{{name: "smtp_alert", st: mapped, xlb: "vrrp_instance.smtp_alert", fn: smtpAlert(func(p *parser) *setting[bool] { return &p.inst.smtpAlert })}},
	group(unsupported, noSync, "lvs_sync_daemon_interface"),
	skipBlock(unsupported, noRoutes, "virtual_routes", "virtual_rules"),
	skipBlock(unsupported, "xlb advertises every virtual address", "virtual_ipaddress_excluded"),
	skipBlock(unsupported, noTrack, "track_file", "track_process", "track_bfd", "track_src_ip"),
	group(unsupported, "xlb sends multicast adverts from the interface's address", "mcast_src_ip", "mcast_dst_ip"),
	group(unsupported, "xlb always takes the instance to FAULT when its interface goes down", "dont_track_primary"),
	group(unsupported, "xlb sends adverts on the macvlan", "vmac_xmit_base", "use_vmac_addr", "use_ipvlan"),
	group(unsupported, "xlb binds to an interface, not a VRF", "vrf"),
	group(ignored, "xlb sends VRRP as RFC 5798 and keepalived's defaults", "strict_mode", "accept", "no_accept", "skip_check_adv_addr",
		"check_unicast_src", "unicast_ttl", "old_unicast_checksum", "lower_prio_no_advert", "higher_prio_send_advert",
		"down_timer_adverts", "garp_lower_prio_delay", "garp_lower_prio_repeat", "garp_extra_if", "promote_secondaries",
		"kernel_rx_buf_size", "debug", "linkbeat_use_polling", "notify_master_rx_lower_pri", "notify_priority_changes",
		"unicast_fault_no_peer"),
)
