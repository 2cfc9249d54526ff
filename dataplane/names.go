package dataplane

import (
	"fmt"
	"slices"
	"strconv"
)

// The names of the dataplane, each declared once with what every layer
// needs of it: the configuration reads the names (and which dataplane
// supports what) from here, the IPVS dataplane its mapping, the XDP
// dataplane the BPF enum value (by name, from the program's BTF) and the
// table it builds, and config/README.md is generated from it. The package
// imports only the standard library, so that config may import it.
//
// A new scheduler is an entry in SchedulerTable, a pick function in a BPF
// header of its own (bpf/lib/lb_*.h) with its value in enum xlb_sched
// (bpf/lib/consts.h) and its case in lb_schedule (bpf/lib/lb.h), and tests.

// Proto is an IP protocol number.
type Proto uint8

const (
	TCP Proto = 6
	UDP Proto = 17
)

// Protos are the transport protocols of a virtual service, by name.
var Protos = []Proto{TCP, UDP}

var protoNames = map[Proto]string{TCP: "tcp", UDP: "udp"}

func (p Proto) String() string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return "proto" + strconv.Itoa(int(p))
}

// UnmarshalText accepts a name of Protos ("tcp", "udp").
func (p *Proto) UnmarshalText(b []byte) error {
	for _, q := range Protos {
		if protoNames[q] == string(b) {
			*p = q
			return nil
		}
	}
	return fmt.Errorf("unknown protocol %q", b)
}

// Scheduler picks the real server of a new flow; the semantics are IPVS's.
type Scheduler string

const (
	RoundRobin              Scheduler = "rr"
	WeightedRoundRobin      Scheduler = "wrr"
	LeastConnection         Scheduler = "lc"
	WeightedLeastConnection Scheduler = "wlc"
	SourceHashing           Scheduler = "sh"
	MaglevHashing           Scheduler = "mh"
	ShortestExpectedDelay   Scheduler = "sed"
	NeverQueue              Scheduler = "nq"
	WeightedFailover        Scheduler = "fo"
	Overflow                Scheduler = "ovf"
	TwoChoices              Scheduler = "twos"
	DestinationHashing      Scheduler = "dh"
	LocalityLeastConnection Scheduler = "lblc"
	LocalityReplicated      Scheduler = "lblcr"
)

// SchedulerSpec is what each layer needs of a scheduler.
type SchedulerSpec struct {
	Name Scheduler
	// Doc says how it picks, for config/README.md.
	Doc string
	// IPVS is IPVS's name for it (ipvsadm -s, the kernel module
	// ip_vs_NAME); "": IPVS has none.
	IPVS string
	// BPF is its value of enum xlb_sched in bpf/lib/consts.h, which the XDP
	// dataplane reads from the program's BTF; "": XDP has none.
	BPF string
	// Table is the scheduling table the XDP dataplane builds for the pick
	// function (dataplane/xdp/tables.go).
	Table Table
	// NoXDP says why XDP has none and what to use instead, for a
	// scheduler without BPF.
	NoXDP string
}

// Table is a kind of XDP scheduling table: the backend ids, in an order
// the BPF pick function reads.
type Table uint8

const (
	// TableList: every schedulable real server once, in configuration
	// order (rr cycles through it, lc, wlc, sed, nq, fo, ovf and twos scan
	// it).
	TableList Table = iota + 1
	// TableWeightedCycle: IPVS's interleaved weighted round-robin cycle.
	TableWeightedCycle
	// TableMaglev: a weighted Maglev lookup table, indexed by a hash.
	TableMaglev
)

// SchedulerTable declares every scheduler, in a stable order.
var SchedulerTable = []SchedulerSpec{
	{Name: RoundRobin, IPVS: "rr", BPF: "XLB_SCHED_RR", Table: TableList,
		Doc: "each real server in turn, in configuration order"},
	{Name: WeightedRoundRobin, IPVS: "wrr", BPF: "XLB_SCHED_WRR", Table: TableWeightedCycle,
		Doc: "in turn, in proportion to the weights (IPVS's interleaved cycle)"},
	{Name: LeastConnection, IPVS: "lc", BPF: "XLB_SCHED_LC", Table: TableList,
		Doc: "the real server with the fewest connections"},
	{Name: WeightedLeastConnection, IPVS: "wlc", BPF: "XLB_SCHED_WLC", Table: TableList,
		Doc: "the fewest connections per unit of weight"},
	{Name: SourceHashing, IPVS: "sh", BPF: "XLB_SCHED_SH", Table: TableMaglev,
		Doc: "by the client's address (a weighted Maglev table): a client keeps its real server"},
	{Name: MaglevHashing, IPVS: "mh", BPF: "XLB_SCHED_MH", Table: TableMaglev,
		Doc: "by the connection's addresses and ports (a weighted Maglev table)"},
	{Name: ShortestExpectedDelay, IPVS: "sed", BPF: "XLB_SCHED_SED", Table: TableList,
		Doc: "the least (active connections + 1) per unit of weight, the first of equals"},
	{Name: NeverQueue, IPVS: "nq", BPF: "XLB_SCHED_NQ", Table: TableList,
		Doc: "the first real server without an active connection, else as `sed`"},
	{Name: WeightedFailover, IPVS: "fo", BPF: "XLB_SCHED_FO", Table: TableList,
		Doc: "the highest weight, the first of equals (failover by weight)"},
	{Name: Overflow, IPVS: "ovf", BPF: "XLB_SCHED_OVF", Table: TableList,
		Doc: "the highest weight among those with no more active connections than their weight"},
	{Name: TwoChoices, IPVS: "twos", BPF: "XLB_SCHED_TWOS", Table: TableList,
		Doc: "two picks at random in proportion to the weights, the less loaded per unit of weight (IPVS 6.2 and later)"},
	{Name: DestinationHashing, IPVS: "dh",
		Doc:   "by the destination address (cache clusters); IPVS only",
		NoXDP: noXDPByDestination},
	{Name: LocalityLeastConnection, IPVS: "lblc",
		Doc:   "by the destination address, the least connections when that real server is overloaded (cache clusters); IPVS only",
		NoXDP: noXDPByDestination},
	{Name: LocalityReplicated, IPVS: "lblcr",
		Doc:   "by the destination address to a set of real servers, the least connected of them (cache clusters); IPVS only",
		NoXDP: noXDPByDestination},
}

// noXDPByDestination is why XDP has no dh, lblc or lblcr, and what to use.
const noXDPByDestination = "it picks by the destination address, which is the VIP for every flow of a virtual server " +
	"(IPVS's schedulers for cache clusters): use mode = \"ipvs\" for IPVS's own, or scheduler sh (by client) or mh (by connection)"

// Schedulers lists every scheduler in a stable order.
var Schedulers = namesOf(SchedulerTable, func(s SchedulerSpec) Scheduler { return s.Name })

// Spec returns the declaration of s; false if s is unknown.
func (s Scheduler) Spec() (SchedulerSpec, bool) {
	return find(SchedulerTable, func(e SchedulerSpec) bool { return e.Name == s })
}

// Valid reports whether s is a known scheduler.
func (s Scheduler) Valid() bool { _, ok := s.Spec(); return ok }

// SchedulerOfIPVS returns the scheduler IPVS calls name (ipvsadm -s,
// keepalived's lb_algo); false if there is none.
func SchedulerOfIPVS(name string) (Scheduler, bool) {
	e, ok := find(SchedulerTable, func(e SchedulerSpec) bool { return e.IPVS != "" && e.IPVS == name })
	return e.Name, ok
}

// ForwardMode is how a packet reaches the real server (ipvsadm -g, -m, -i).
type ForwardMode string

const (
	DirectRouting ForwardMode = "dr"     // MAC rewrite, the real server holds the VIP
	NAT           ForwardMode = "nat"    // destination (and reply source) rewritten
	Tunnel        ForwardMode = "tunnel" // IPIP / IP6IP6 / GUE encapsulation
)

// ForwardSpec is what each layer needs of a forwarding mode.
type ForwardSpec struct {
	Name ForwardMode
	// Doc says what it does, for config/README.md.
	Doc string
	// IPVS is IPVS's forwarding method, IP_VS_CONN_F_* of
	// include/uapi/linux/ip_vs.h; IPVSAdm the ipvsadm option that sets it.
	IPVS    uint32
	IPVSAdm string
	// Keepalived is keepalived's lb_kind.
	Keepalived string
	// Status is its name in ipvsadm -ln's Forward column (and xlb status).
	Status string
	// BPF is its value of enum xlb_fwd in bpf/lib/consts.h, read from the
	// program's BTF.
	BPF string
}

// ForwardTable declares every forwarding mode.
var ForwardTable = []ForwardSpec{
	{Name: DirectRouting, IPVS: 0x0003, IPVSAdm: "-g", Keepalived: "DR", Status: "Route", BPF: "XLB_FWD_DR",
		Doc: "direct routing: the destination MAC becomes the real server's, which holds the VIP"},
	{Name: NAT, IPVS: 0x0000, IPVSAdm: "-m", Keepalived: "NAT", Status: "Masq", BPF: "XLB_FWD_NAT",
		Doc: "the destination becomes the real server's address and port; replies are translated back"},
	{Name: Tunnel, IPVS: 0x0002, IPVSAdm: "-i", Keepalived: "TUN", Status: "Tunnel", BPF: "XLB_FWD_TUNNEL",
		Doc: "encapsulated to the real server (IPIP, IPv6-in-IPv6 or GUE), which holds the VIP"},
}

// ForwardModes lists every forwarding mode.
var ForwardModes = namesOf(ForwardTable, func(f ForwardSpec) ForwardMode { return f.Name })

// Spec returns the declaration of m; false if m is unknown.
func (m ForwardMode) Spec() (ForwardSpec, bool) {
	return find(ForwardTable, func(e ForwardSpec) bool { return e.Name == m })
}

// Valid reports whether m is a known forwarding mode.
func (m ForwardMode) Valid() bool { _, ok := m.Spec(); return ok }

// Encap is the tunnel encapsulation of a tunnel-mode service; "" for a
// service of another mode.
type Encap string

const (
	EncapIPIP Encap = "ipip" // IPv4-in-IPv4 or IPv6-in-IPv6, by the real server's family
	EncapGUE  Encap = "gue"  // GUE (UDP) around the inner IP packet
)

// Encaps lists every tunnel encapsulation.
var Encaps = []Encap{EncapIPIP, EncapGUE}

// AttachMode is how the XDP program is attached to an interface.
type AttachMode string

const (
	AttachAuto    AttachMode = "auto"    // native where the driver supports it, else generic
	AttachNative  AttachMode = "native"  // driver mode only
	AttachGeneric AttachMode = "generic" // generic (skb) mode only
)

// AttachModes lists every attach mode.
var AttachModes = []AttachMode{AttachAuto, AttachNative, AttachGeneric}

func find[E any](table []E, match func(E) bool) (E, bool) {
	if i := slices.IndexFunc(table, match); i >= 0 {
		return table[i], true
	}
	var zero E
	return zero, false
}

func namesOf[E any, N any](table []E, name func(E) N) []N {
	out := make([]N, len(table))
	for i, e := range table {
		out[i] = name(e)
	}
	return out
}
