/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Limits, enums and flags shared by the XDP program and, through BTF and
 * bpf2go -type, by the Go control plane. A retired enum value is never reused. */
#ifndef XLB_CONSTS_H
#define XLB_CONSTS_H

/* Virtual services (VIP:port/proto). Arrays are indexed by service id; the
 * configuration arrays hold two slots per service (see struct xlb_svc). */
#ifndef XLB_MAX_SERVICES
#define XLB_MAX_SERVICES 1024
#endif

/* Real servers over all services: every service may have
 * XLB_MAX_BACKENDS_PER_SVC. Per-CPU counters cost 40 bytes per backend and CPU. */
#ifndef XLB_MAX_BACKENDS
#define XLB_MAX_BACKENDS (XLB_MAX_SERVICES * XLB_MAX_BACKENDS_PER_SVC)
#endif

/* Real servers of one service: bounds the lc/wlc scan of a new flow. */
#ifndef XLB_MAX_BACKENDS_PER_SVC
#define XLB_MAX_BACKENDS_PER_SVC 256
#endif

/* Entries of a round-robin cycle: the wrr cycle is built in Go with at most
 * this many (weights scaled down to fit); bounds the walk past overloaded
 * real servers (lb_rr_skip). */
#ifndef XLB_MAX_RR_CYCLE
#define XLB_MAX_RR_CYCLE (1 << 21)
#endif

/* Tracked connections (both directions of NAT flows count twice). */
#ifndef XLB_MAX_CONNS
#define XLB_MAX_CONNS (1 << 20)
#endif

/* Embryonic TCP flows (a SYN scheduled, its handshake not complete): words
 * of xlb_embryos_v1, a shared array indexed by flow hash (a power of two).
 * A word is freed when the client's ACK creates the connection entry, so
 * only SYNs still in their handshake, or never answered, hold one; 8 bytes
 * each. A live word is never taken by another flow's SYN (embryo.h): a
 * SYN whose slot is held is scheduled by hash instead, so the size bounds
 * how many new flows follow their scheduler while spoofed SYNs below the
 * flood limit fill the array (1M: 4 s of 2 CPUs at the default limit). */
#ifndef XLB_MAX_EMBRYOS
#define XLB_MAX_EMBRYOS (1 << 20)
#endif

/* SYN flood mode: more than XLB_SYN_RATE SYNs per second on one CPU
 * (counted in windows of 2^XLB_SYN_WINDOW_SHIFT ns, about 134 ms) puts the
 * director in SYN flood mode for XLB_SYN_FLOOD_HOLD ns: SYNs are then
 * scheduled by hash and write no embryonic word (see embryo.h). Katran's
 * SYN limiter takes the same default, 125k new flows per second per CPU.
 * The hold outlasts the retransmissions of a SYN (Linux tcp_syn_retries 6:
 * 1+2+4+8+16+32 s), so that a SYN hashed during the flood and sent again
 * after it keeps its real server; so does the mode's tail after it, in
 * which SYNs are still hashed, for a SYN hashed in the hold's last minute
 * (see embryo.h). The rate is set at load
 * (xlb_syn_limit, dataplane/xdp Options.SYNFloodRate). */
#ifndef XLB_SYN_RATE
#define XLB_SYN_RATE 125000
#endif
#define XLB_SYN_WINDOW_SHIFT 27
#ifndef XLB_SYN_FLOOD_HOLD
#define XLB_SYN_FLOOD_HOLD (64ULL * 1000000000ULL)
#endif

/* Per-CPU established-flow cache in front of the connection table, entries
 * per CPU (a power of two). A hit forwards with array lookups only; hash
 * map lookups cost several times more. */
#ifndef XLB_FLOW_CACHE_SIZE
#define XLB_FLOW_CACHE_SIZE (1 << 16)
#endif

/* NAT real servers by address and port: a reply without connection state
 * (after a failover) is translated by what its source says. */
#ifndef XLB_MAX_NAT_BACKENDS
#define XLB_MAX_NAT_BACKENDS (1 << 16)
#endif

/* Persistence templates (ipvsadm -p): one per client address and service. */
#ifndef XLB_MAX_PERSIST
#define XLB_MAX_PERSIST (1 << 18)
#endif

/* Fragment entries: one per datagram (source, destination, IP ID) whose first
 * fragment was forwarded and whose other fragments are still expected. */
#ifndef XLB_MAX_FRAGS
#define XLB_MAX_FRAGS (1 << 16)
#endif

/* Interfaces the program may redirect to (devmap). */
#ifndef XLB_MAX_IFACES
#define XLB_MAX_IFACES 64
#endif

/* IPv6 extension headers parsed before the transport header. A packet
 * with more is dropped (drop_ipv6_ext): it cannot be told apart from a
 * packet for a service, and the kernel answers one for a VIP with a RST.
 * Linux itself parses any number; RFC 9098 finds long chains dropped
 * across the Internet. */
#ifndef XLB_MAX_IPV6_EXT
#define XLB_MAX_IPV6_EXT 4
#endif

/* 802.1Q/802.1ad tags parsed in front of the IP header (QinQ: two). */
#ifndef XLB_MAX_VLAN_TAGS
#define XLB_MAX_VLAN_TAGS 2
#endif

/* Interfaces with settings (xlb_ifaces_v1): the attached ones and the
 * devices stacked on them (VLAN devices, macvlans such as VRRP's vmac). */
#ifndef XLB_MAX_IFACE_ENTRIES
#define XLB_MAX_IFACE_ENTRIES 1024
#endif

/* Slots of xlb_ifslots_v1, the attached interfaces' settings by ifindex
 * modulo this (a power of two): an array lookup on the path of every
 * packet the flow cache does not decide, instead of a hash lookup. */
#ifndef XLB_IFACE_SLOTS
#define XLB_IFACE_SLOTS 256
#endif

/* Local IPv4 addresses of the director's network namespace: sources the
 * kernel refuses (accept_local 0). */
#ifndef XLB_MAX_LOCAL_ADDRS
#define XLB_MAX_LOCAL_ADDRS 4096
#endif

/* Slots of each CPU's report ring at most (sync.h, xlb_sync_slots): a
 * power of two. The control plane chooses the number at load
 * (xlb_sync_ring_slots): this many, fewer on a machine with so many
 * possible CPUs that the rings would take more than 8 MiB (4 CPUs: 32768
 * slots of 64 bytes each; 128: 1024). It reads every 5 ms
 * (dataplane/xdp reportPoll): 32768 slots hold 32 ms of reports at a
 * million a second on one CPU, room for a reader kept off its CPU that
 * long. An unread slot is overwritten by the newest report, and the
 * reader counts it lost. */
#ifndef XLB_SYNC_SLOTS
#define XLB_SYNC_SLOTS 32768
#endif

/* Slots of each CPU's ring of health-check answers (probe.h,
 * xlb_probe_slots): a power of two. The control plane reads every
 * millisecond while checks wait; 1024 answers a millisecond on one CPU is
 * 80 times the answers of 64,000 checks every 5 s. */
#ifndef XLB_PROBE_SLOTS
#define XLB_PROBE_SLOTS 1024
#endif

/* Health-check sources (address and reserved port) registered at most. */
#ifndef XLB_MAX_PROBE_SRCS
#define XLB_MAX_PROBE_SRCS 256
#endif

/* The limits the control plane holds a configuration to and sizes its
 * tables by, in BTF: dataplane/xdp's Go constants are generated from them
 * (bpf2go -type xlb_limits), so the two cannot disagree. */
enum xlb_limits {
	XLB_LIMIT_SERVICES = XLB_MAX_SERVICES,
	XLB_LIMIT_BACKENDS_PER_SVC = XLB_MAX_BACKENDS_PER_SVC,
	XLB_LIMIT_BACKENDS = XLB_MAX_BACKENDS,
	XLB_LIMIT_NAT_BACKENDS = XLB_MAX_NAT_BACKENDS,
	XLB_LIMIT_IFACES = XLB_MAX_IFACES,
	XLB_LIMIT_IFACE_ENTRIES = XLB_MAX_IFACE_ENTRIES,
	XLB_LIMIT_IFACE_SLOTS = XLB_IFACE_SLOTS,
	XLB_LIMIT_LOCAL_ADDRS = XLB_MAX_LOCAL_ADDRS,
	XLB_LIMIT_RR_CYCLE = XLB_MAX_RR_CYCLE,
	XLB_LIMIT_EMBRYOS = XLB_MAX_EMBRYOS,
	XLB_LIMIT_SYN_WINDOW_SHIFT = XLB_SYN_WINDOW_SHIFT,
	XLB_LIMIT_SYNC_SLOTS = XLB_SYNC_SLOTS,
	XLB_LIMIT_PROBE_SLOTS = XLB_PROBE_SLOTS,
	XLB_LIMIT_PROBE_SRCS = XLB_MAX_PROBE_SRCS,
	XLB_LIMIT_FLOW_CACHE = XLB_FLOW_CACHE_SIZE,
};

/* An embryonic flow's word in xlb_embryos_v1 (0: empty): bits 0-31 a
 * second hash of the flow (never 0; the slot index is the first), then the
 * backend id, whether a SYN of another flow found the word holding its
 * slot (contended: see embryo.h), whether the SYN was counted in the
 * backend's lc/wlc load, and the coarse clock tick of the SYN or of the
 * last contention (now >> XLB_ATIME_SHIFT, wrapping). A word whose hash
 * bits are 0 holds a slot for contending flows only (embryo.h). The
 * control plane decodes it with these values (bpf2go -type). Bit 51 was
 * the backend id's top bit, always 0 (XLB_MAX_BACKENDS is 2^18): words
 * written before it meant contended read the same. */
enum xlb_embryo_word {
	XLB_EMB_BE_SHIFT = 32,
	XLB_EMB_BE_BITS = 19,
	XLB_EMB_CONTENDED_BIT = 51,
	XLB_EMB_COUNTED_BIT = 52,
	XLB_EMB_TICK_SHIFT = 53,
	XLB_EMB_TICK_BITS = 11,
};

/* What happened to a packet: one counter per value (struct xlb_verdict_stats).
 * Names are read from BTF by the control plane (xlb_packets_total{verdict}). */
enum xlb_verdict {
	XLB_V_PASS_NOT_IP = 0,     /* not IPv4/IPv6 (ARP, LLDP...): to the kernel */
	XLB_V_PASS_NOT_SERVICE,    /* no virtual service matches (VRRP, ICMP, other ports) */
	XLB_V_PASS_DISABLED,       /* service not forwarding here (VRRP instance not MASTER) */
	XLB_V_PASS_IPV6_EXT,       /* retired (such packets are drop_ipv6_ext): never counted */
	XLB_V_DROP_MALFORMED,      /* truncated or invalid L2/L3/L4 header */
	XLB_V_DROP_NO_BACKEND,     /* service has no real server able to take a new flow */
	XLB_V_DROP_NO_MAC,         /* flow's real server has no next-hop MAC (neighbour unresolved) */
	XLB_V_TX,                  /* forwarded out of the receiving interface (XDP_TX) */
	XLB_V_REDIRECT,            /* forwarded to another interface (devmap redirect) */
	XLB_V_PASS_NO_DEVMAP,      /* next hop behind an interface without xlb: the kernel forwards */
	XLB_V_PASS_FRAG_MISS,      /* non-first fragment whose first fragment was not seen */
	XLB_V_PASS_NO_NEIGH,       /* next hop not resolved yet: the kernel resolves it */
	XLB_V_PASS_FIB,            /* no route to the real server or client: to the kernel */
	XLB_V_TX_ICMP_TOO_BIG,     /* answered with ICMP fragmentation needed / packet too big */
	XLB_V_DROP_ENCAP,          /* could not grow/shrink the packet, or no tunnel source */
	XLB_V_PASS_ICMP_NO_FLOW,   /* ICMP error about no tracked flow */
	XLB_V_DROP_TOO_BIG,        /* too big for the tunnel and fragmentable: not forwarded */
	/* What the kernel's input path drops before IPVS sees it; the kernel
	 * function that does is named. Sysctls at their defaults. */
	XLB_V_DROP_IP_CSUM,        /* IPv4 header checksum wrong (ip_rcv_core) */
	XLB_V_DROP_IP_OPTIONS,     /* IPv4 options malformed: length under 2 or past the header, bad pointer, repeated, CIPSO (ip_options_compile) */
	XLB_V_DROP_SOURCE_ROUTE,   /* IPv4 LSRR/SSRR option (ip_rcv_options; accept_source_route 0) */
	XLB_V_DROP_TCP_HEADER,     /* TCP data offset past the end of the segment (tcp_v4_rcv, tcp_v6_rcv) */
	XLB_V_DROP_UDP_LENGTH,     /* UDP length under 8 or past the datagram (__udp4_lib_rcv, __udp6_lib_rcv) */
	XLB_V_DROP_IPV6_HBH,       /* IPv6 hop-by-hop options not right after the IPv6 header (RFC 8200 4.1; ipv6_rcv) */
	XLB_V_DROP_IPV6_EXT,       /* more than XLB_MAX_IPV6_EXT IPv6 extension headers, or the transport header past XLB_MAX_L4_OFF */
	XLB_V_DROP_MARTIAN_SRC,    /* new flow from 0/8, 127/8, multicast, 255.255.255.255, a local address or the VIP; IPv6 ::1 or multicast (ip_route_input_slow, ip6_rcv_core) */
	XLB_V_DROP_RP_FILTER,      /* new flow whose source is not routed back through the receiving interface (rp_filter 1) or at all (2) (fib_validate_source) */
	XLB_V_DROP_OTHER_HOST,     /* destination MAC not the receiving interface's (PACKET_OTHERHOST: ip_rcv_core) */
	XLB_V_PASS_L2_MULTICAST,   /* unicast IP in a broadcast/multicast frame: IPVS takes PACKET_HOST only, to the kernel */
	XLB_V_DROP_ADOPT_IFACE,    /* stateless NAT reply not received from where its real server is: not adopted */
	XLB_V_TX_PROBE_RST,        /* a health check's SYN-ACK, reported and answered with a RST here (probe.h) */
	XLB_V_PROBE_REFUSED,       /* a RST answering a health check's SYN, reported and consumed here (probe.h) */
	XLB_V_MAX,
};

/* Fragment entries are forgotten after this long (ns), as the kernel's
 * default reassembly timeout. */
#ifndef XLB_FRAG_TIMEOUT
#define XLB_FRAG_TIMEOUT (30ULL * 1000000000ULL)
#endif

/* Events counted besides the verdict of each packet (xlb_events_v1). */
enum xlb_event {
	XLB_EV_FRAG_FIRST = 0,   /* first fragment forwarded (entry created) */
	XLB_EV_FRAG_LATER,       /* later fragment forwarded by its entry */
	XLB_EV_ICMP_ERROR,       /* ICMP error forwarded to a flow's real server or client */
	XLB_EV_NAT_REPLY,        /* NAT reply translated back to the VIP */
	XLB_EV_NAT_ADOPT,        /* NAT flow taken over from its first reply (no state: e.g. after a failover) */
	XLB_EV_RP_UNCHECKED,     /* rp_filter set, but the FIB does not answer (forwarding off on the interface): new flow not checked */
	XLB_EV_SYN_FLOOD,        /* SYN flood mode: a SYN scheduled by hash, without an embryonic entry */
	XLB_EV_SYN_FLOOD_START,  /* SYN flood mode entered (a CPU passed the SYN rate limit) */
	XLB_EV_EMBRYO_PROMOTED,  /* a handshake's ACK created the connection entry from its SYN's embryonic entry */
	XLB_EV_EMBRYO_REPLACED,  /* retired (a SYN no longer takes another flow's live embryonic entry: embryo_busy): never counted */
	XLB_EV_CONN_EVICTED,     /* a flow cached during the last two clock ticks found no connection entry: evicted from the LRU */
	XLB_EV_EMBRYO_BUSY,      /* a SYN found its slot held by another flow's live embryonic entry: scheduled by hash, without one (not in flood mode) */
	XLB_EV_EMBRYO_RESCHEDULED, /* a retransmitted SYN's real server took no new flows any more (down, drained, removed): scheduled again */
	XLB_EV_MAX,
};

/* How a flow is forwarded (struct xlb_flow_cache.action, xlb_frag.action). */
enum xlb_action {
	XLB_ACT_DR = 0,  /* MAC rewrite */
	XLB_ACT_NAT_IN,  /* destination VIP:port -> real server */
	XLB_ACT_NAT_OUT, /* source real server -> VIP:port (replies) */
	XLB_ACT_TUNNEL,  /* encapsulated to the real server */
};

/* Schedulers (struct xlb_svc.sched), as IPVS's: Go's dataplane.SchedulerTable
 * names each value, read from BTF. */
enum xlb_sched {
	XLB_SCHED_RR = 0,
	XLB_SCHED_WRR,
	XLB_SCHED_LC,
	XLB_SCHED_WLC,
	XLB_SCHED_SH,
	XLB_SCHED_MH,
	XLB_SCHED_SED,  /* ip_vs_sed.c */
	XLB_SCHED_NQ,   /* ip_vs_nq.c */
	XLB_SCHED_FO,   /* ip_vs_fo.c */
	XLB_SCHED_OVF,  /* ip_vs_ovf.c */
	XLB_SCHED_TWOS, /* ip_vs_twos.c */
};

/* Forwarding modes (struct xlb_svc.fwd): Go's dataplane.ForwardTable names
 * each value, read from BTF. */
enum xlb_fwd {
	XLB_FWD_DR = 0,
	XLB_FWD_NAT,
	XLB_FWD_TUNNEL,
};

/* struct xlb_svc.flags */
enum xlb_svc_flags {
	XLB_SVC_F_ENABLED = 1 << 0, /* forward; otherwise pass to the kernel */
	XLB_SVC_F_GUE = 1 << 1,     /* tunnel: GUE (UDP) instead of IPIP/IP6IP6 */
	XLB_SVC_F_TUN_SRC6 = 1 << 2, /* tunnel: tun_src is an IPv6 address (only read back by the control plane) */
};

/* struct xlb_backend.flags */
enum xlb_backend_flags {
	XLB_BE_F_IN_USE = 1 << 0,   /* the entry describes a real server */
	XLB_BE_F_SCHED = 1 << 1,    /* may take new flows (weight > 0, next hop known) */
	XLB_BE_F_HAS_MAC = 1 << 2,  /* DR next-hop MAC known */
	XLB_BE_F_RETIRED = 1 << 3,  /* removed from the configuration; kept while flows use it */
	XLB_BE_F_THRESH = 1 << 4,   /* has connection thresholds (xlb_be_thresh_v1) */
};

/* Connection states (struct xlb_conn.state), as ipvsadm's ActiveConn
 * (ESTABLISHED) and InActConn (the rest). */
enum xlb_conn_state {
	XLB_CT_NEW = 0,     /* UDP flow or TCP SYN seen */
	XLB_CT_ESTABLISHED, /* TCP: a packet after the SYN */
	XLB_CT_CLOSING,     /* TCP: FIN or RST seen */
};

/* struct xlb_conn.flags */
enum xlb_conn_flags {
	XLB_CT_F_COUNTED = 1 << 0, /* included in xlb_be_active (lc/wlc load) */
	XLB_CT_F_REPLY = 1 << 1,   /* NAT reply-direction entry */
	XLB_CT_F_BOUND = 1 << 2,   /* counted in its backend's xlb_be_conns_v1 (active or inactive by its state) */
};

/* struct xlb_iface.flags */
enum xlb_iface_flags {
	XLB_IF_F_ATTACHED = 1 << 0, /* xlb is attached: the entry's settings apply to packets received there */
};

#define XLB_AF_INET 4
#define XLB_AF_INET6 6

#endif /* XLB_CONSTS_H */
