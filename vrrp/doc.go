// Package vrrp implements VRRP: version 3 (RFC 5798) for IPv4 and IPv6
// and version 2 (RFC 3768) for IPv4 with simple password authentication,
// on the wire like keepalived (tested against Debian's keepalived 2.2.7)
// and with keepalived's behaviour: MASTER/BACKUP/FAULT, priority and
// address owner, preempt, nopreempt and preempt_delay, track scripts and
// interfaces with weights, sync groups, notify scripts, unicast peers,
// gratuitous ARP / unsolicited NA settings, use_vmac. On top of that a
// master detects a split brain (another station answering for its VIPs)
// and re-announces its VIPs as soon as it heals.
//
// # Using it
//
// The daemon builds a Config (usually from its TOML) and runs one Node:
//
//	node, err := vrrp.NewNode(cfg, vrrp.Options{Logger: log, Runner: runner, BeforeMaster: enableForwarding})
//	if err != nil { ... }             // invalid config, AH authentication (ErrAHNotSupported),
//	                                  // commands without a Runner (ErrNoRunner)
//	go func() {
//		for ev := range node.Events() { // role changes, in order
//			// attach forwarding when ev.To == vrrp.Master, detach otherwise
//			// (a start-up BACKUP is tentative until ev.TentativeUntil);
//			// log time.Since(ev.At): decision to forwarding active
//		}
//	}()
//	err = node.Run(ctx)               // until ctx ends or Shutdown; both stop gracefully
//	grace := node.ResignGrace()       // keep forwarding that long: the backups take over
//
// and, from other goroutines:
//
//	node.Reconfigure(newCfg)  // reload with keepalived semantics
//	node.Status()             // []InstanceStatus, for metrics and the control socket
//	node.Shutdown(ctx)        // graceful stop: priority 0, VIPs removed, notify_stop
//
// Defaults are keepalived's, and those of the configuration file: a zero
// field means its default (Config.WithDefaults, applied once by NewNode and
// Reconfigure). vrrp runs no command by itself: notify and track scripts go
// through Options.Runner (the daemon's runs them without a shell), which a
// configuration with commands needs.
//
// NewNode validates the whole configuration (Config.Validate) and touches
// nothing on the host; Run opens the sockets (it fails at once when an
// instance's interface does not exist), then runs the instances. Run and
// Shutdown both end with the graceful stop: every master sends an
// advertisement with priority 0 (its backup takes over after Skew_Time)
// and removes its VIPs, notify_stop runs, and Run returns once the notify
// scripts are done (bounded by their timeout). Events is closed when Run
// returns.
//
// Options.BeforeMaster, when set, is called when an instance becomes
// MASTER, before it adds and announces its VIPs, so that forwarding can be
// enabled first; the protocol waits for it (keep it short), Status works
// meanwhile, Reconfigure and Shutdown must not be called from it.
//
// Events never blocks the protocol: it is buffered (Options.EventBuffer,
// 64 by default) and when it is full the oldest event is dropped to make
// room, so the latest state always gets through; EventsDropped counts the
// drops. Status is the source of truth.
//
// Reconfigure keeps an instance that stays the same virtual router (same
// name, interface, VRID, version, family, unicast source and VMAC
// setting) in its state with its timers, and applies the rest in place:
// priority (the next advertisement carries it), VIPs (added and announced
// or removed at once on a master), intervals, tracking, scripts (a script
// whose command is unchanged keeps its result), notify and GARP settings.
// A removed instance stops as on shutdown, with notify "DELETED"; a new or
// re-identified one starts from INIT. An invalid config, or one whose
// sockets cannot be opened, is refused and changes nothing.
//
// # Metrics
//
// InstanceStatus carries what control/ needs to build, at scrape time:
// xlb_vrrp_state (State), _priority (Priority, EffectivePriority),
// _transitions_total (Transitions), _adverts_sent_total (AdvertsSent),
// _adverts_received_total (AdvertsReceived), _rx_errors_total{reason}
// (RxErrors: every name of RxErrorReasons is always present), and
// _split_brain (SplitBrain, SplitBrainCount). The reason names are stable:
// ttl, version, type, length, checksum, vrid, auth, addr_list, interval,
// peer, and interval_limit (an accepted VRRPv3 advert whose interval was
// bounded, below). A rejected packet whose VRID is not configured (or cannot be read)
// counts on every instance of the interface and family it came in on.
//
// # Protocol details
//
// Timers follow RFC 5798 section 6.1 as keepalived computes them:
// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time, with
// Skew_Time = (256 - Priority) * Master_Adver_Interval / 256 in whole
// centiseconds for VRRPv3 and (256 - Priority) / 256 seconds for VRRPv2.
// A v3 backup adopts the master's interval, but at most
// LearnedIntervalMaxFactor (3 by default) times its own: within RFC 5798
// alone, one forged advertisement with a higher priority and 40.95s makes
// the master yield and every backup wait 3 x 40.95s, two minutes without a
// holder of the VIPs; bounded, a backup takes over after 3 times the limit.
// Such an advertisement counts under interval_limit and is logged once per
// source (keepalived only logs the mismatch). Failover speed comes from the
// interval: VRRPv3 accepts 10ms; at 20ms a dead master is replaced after
// 70ms. Received packets that are already queued are handled before an
// expired timer, so a stalled process does not take over by mistake.
//
// Every receive check of RFC 5798 section 7.1 is applied: TTL / hop limit
// 255, version, type, length, checksum (v3 over the pseudo-header, with the
// real destination, as keepalived), VRID, v2 authentication type and
// password, v2 interval, the address list against the VIPs, and in unicast
// mode the source against the peers. As keepalived 2.x, the TTL is not
// checked in unicast mode (with UnicastPeers): a peer may be routed, and
// its adverts are accepted with any TTL, from a configured peer only
// (keepalived's per-peer min_ttl / max_ttl are not supported). An
// advertisement from our own address is ignored.
//
// keepalived semantics kept: priority 255 takes over at once and ignores
// weights; the address owner does not discard advertisements as RFC 5798
// 7.1 has it (two owners would then stay masters for good): as any master
// it answers a lower priority at once, and another owner's advertisement
// is a configuration error, logged, upon which it lowers its priority to
// 254 until a reload and yields; an initial state MASTER below 255 takes over after one interval
// unless it hears a master; a master hearing a lower-priority master
// advertises at once ("forcing new election"); a master leaving for FAULT
// sends priority 0; nopreempt and preempt_delay as keepalived's backup
// (preempt_delay runs from the first lower-priority advertisement); FAULT
// while the instance's interface or a weight-0 tracked interface is down
// or a weight-0 track script fails; weights: positive added while up /
// succeeding, negative while down / failing, effective priority clamped
// to 1..254. Instances wait in INIT until their track scripts have run
// once. Sync groups: one member to FAULT takes all; one to MASTER takes
// the backups; a master back to BACKUP takes the masters.
//
// Unlike keepalived, a master that hears a lower-priority master also
// re-announces its VIPs (GARPConfig.LowerPrioRepeat, at most once per
// max(1s, interval)), since clients may have followed the other node.
//
// Notify scripts run asynchronously, in order per instance, each killed
// with its process group after Notify.Timeout: a hanging script delays the
// next script of its instance, never the protocol; the generic one gets keepalived's four extra
// arguments: INSTANCE <name> <MASTER|BACKUP|FAULT|STOP|DELETED> <priority>.
// A sync group's scripts (SyncGroupConfig.Notify) run, in order per group,
// once each time all its members have reached MASTER, BACKUP or FAULT, and
// at shutdown after the instances' (STOP); its generic script gets GROUP
// <name> <state>.
//
// # Split brain
//
// A master probes its VIPs every SplitBrainProbeInterval (1s by default)
// with an ARP request from 0.0.0.0 (a neighbour solicitation from :: for
// IPv6): a holder answers without any cache learning from it. A claim on a
// VIP from another MAC (an answer, a gratuitous ARP, an NA) is evidence;
// the first one starts a probe round, whose window is a third of the
// advertisement interval. A round with evidence declares a split brain:
// logged, counted, SplitBrain set, notify_fault run (not the generic
// notify: the state is unchanged). Rounds then run back to back; the first
// round without evidence (the other master yielded) clears it and
// re-announces the VIPs at once: clients that had followed the other node
// come back within one advertisement interval (keepalived sends nothing
// then; measured here, such a client stayed blackholed until its ARP entry
// expired).
//
// # Structure
//
// The protocol core is pure: a typed input (core_inputs.go: an advert
// received, a rejected packet, timers due, a VIP claim, a link change, a
// track script result, a source address, a reconfiguration, start,
// shutdown) goes into core.handle with the time, and actions come out; no
// goroutine, no sleep, no I/O. Its files: core.go (state, actions, the
// dispatch tables, status), core_transitions.go (states, start, timers,
// stop), core_receive.go (receive checks, backup and master on an advert,
// the learned interval's bound), core_tracking.go, core_syncgroup.go,
// core_announce.go (GARP / NA bursts), core_splitbrain.go and
// core_reconfigure.go. The state machine tests list inputs as data, with
// the actions they must produce.
//
// The Node (node.go: API, locks, the step) turns what its drivers report
// into inputs (node_endpoints.go: sockets; node_scripts.go: track scripts;
// the link watcher) and executes the actions (node_actions.go; notify.go:
// notify scripts; node_setup.go: what a configuration needs on the host)
// through drivers behind interfaces (drivers.go): Clock, Network (VRRP
// sockets, ARP/NA sockets, addresses, links, macvlans) and Runner
// (commands). LinuxNetwork (netlinux.go) is the real Network; tests inject
// fakes. Packet codecs are packet.go (VRRP) and arp.go (ARP, NA, NS). The
// Node has no goroutine of its own for the protocol: the goroutine that
// wakes (a timer, a socket reader, a script, the link watcher, an API
// call) runs the step under the Node's locks, so no wake-up is handed from
// one goroutine to another.
//
// The Linux driver sends and receives VRRP with non-blocking raw
// syscalls, on a receive socket in Go's poller and a separate send socket
// outside it, and the default Clock's timers are timerfds waited for in
// the poller: at 20ms adverts, scheduler-aware syscalls, Go timers and
// goroutine hand-offs woke extra threads on every packet and expiry
// (5.6 thread switches per advert, down to 1.1, keepalived's is 1.0),
// which more than doubled the CPU used (BenchmarkFailoverCPU).
//
// # Limits
//
// IPsec AH authentication is refused (ErrAHNotSupported). With UseVMAC
// the VIPs live on the macvlan and GARPs come from the virtual MAC, but
// advertisements are sent from the base interface (keepalived's
// vmac_xmit_base). The VRRPv3 Accept_Mode is not implemented: VIPs are
// local addresses, so a master accepts traffic to them.
package vrrp
