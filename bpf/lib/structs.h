/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Map keys and values. The Go mirrors are generated (bpf2go -type), never
 * hand-copied. IPv4 addresses sit in addr[0] with the rest zero; family
 * tells the two apart. Fields are in network byte order where marked __be. */
#ifndef XLB_STRUCTS_H
#define XLB_STRUCTS_H

#include <linux/types.h>
#include "consts.h"

/* Addresses are 16 bytes in network byte order, an IPv4 address in the
 * first 4 (bpftool prints them as bytes: [10,0,0,3,0,...]); XLB_A32 views
 * one as 32-bit words. Ports in map keys and values are in host byte order
 * (bpftool prints 80 for port 80). */
#define XLB_ADDR(name) __u8 name[16] __attribute__((aligned(4)))
#define XLB_A32(a) ((__be32 *)(a))
#define XLB_CA32(a) ((const __be32 *)(a))

/* A transport flow: the connection-table key. */
struct xlb_flow {
	XLB_ADDR(src);
	XLB_ADDR(dst);
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family; /* XLB_AF_INET or XLB_AF_INET6 */
	__u8 pad[2];
};

/* A virtual service address: key of xlb_svc_ids_v1. */
struct xlb_svc_key {
	XLB_ADDR(addr);
	__u16 port;
	__u8 proto;
	__u8 family;
};

/* The configuration of one service in one slot. Updates are atomic for new
 * flows: the control plane fills the inactive slot (this struct and the
 * scheduling table at the same index in xlb_tables_v1) and then flips
 * xlb_svc_slot_v1[id], a single 32-bit store. */
struct xlb_svc {
	XLB_ADDR(vip);
	__u16 port;
	__u8 proto;
	__u8 family;
	__u8 sched;     /* enum xlb_sched */
	__u8 fwd;       /* enum xlb_fwd */
	__u16 flags;    /* enum xlb_svc_flags */
	__u32 id;       /* service id: index of counters */
	__u32 table_len;    /* entries in the scheduling table */
	__u32 persist_timeout; /* seconds; 0: no persistence */
	/* Tunnel mode: outer source address; the low src_bits host bits vary per flow. */
	XLB_ADDR(tun_src);
	__u8 tun_src_bits;
	__u8 tun_src_len; /* prefix length of the configured source (only read back by the control plane on restart) */
	__u16 gue_port;   /* GUE destination port (kept for IPIP too, as configured) */
};

/* A real server. */
struct xlb_backend {
	XLB_ADDR(addr);
	__u16 port;     /* NAT: destination port after translation */
	__u8 family;
	/* IPVS's IP_VS_DEST_F_OVERLOAD: 1 while its connections are over its
	 * upper threshold (dest.h); written by the program and the control
	 * plane, read by every scheduler. */
	__u8 overload;
	__u32 flags;     /* enum xlb_backend_flags */
	__u32 svc;       /* owning service id */
	__u32 weight;
	__u32 pos;       /* position in the service's configuration */
	__u32 ifindex;   /* DR: egress interface toward the real server */
	__u8 mac[6];     /* DR: next-hop MAC */
	__u8 smac[6];    /* DR: MAC of ifindex */
	XLB_ADDR(tun_src); /* tunnel: outer source when the service sets none */
};

/* A real server's connections as IPVS counts them (struct ip_vs_dest's
 * activeconns and inactconns): value of xlb_be_conns_v1, changed
 * atomically by the program (dest.h) and recounted by the control plane
 * from the connection table. */
struct xlb_be_conns {
	__s64 active;   /* TCP connections ESTABLISHED */
	__s64 inactive; /* the others tracked: TCP before ESTABLISHED and closing, UDP */
};

/* A real server's connection thresholds (ipvsadm -x, -y): value of
 * xlb_be_thresh_v1, written by the control plane. */
struct xlb_be_thresh {
	__u32 upper; /* overloaded at active + inactive >= upper; 0: never */
	__u32 lower; /* no longer below it; 0: below 3/4 of upper */
};

/* A tracked connection: value of xlb_conns_v1. */
struct xlb_conn {
	__u64 atime;     /* last packet, CLOCK_MONOTONIC_COARSE ns (updated about once a second) */
	__u32 backend;   /* backend id */
	__u32 svc;       /* service id */
	__u32 flags;     /* enum xlb_conn_flags; changed atomically */
	__u8 state;      /* enum xlb_conn_state */
	__u8 pad[3];
};

/* An entry of the per-CPU flow cache: a copy of what the connection table
 * said about a flow, trusted until the coarse clock ticks (about a second):
 * then the connection table entry is refreshed again. */
struct xlb_flow_cache {
	struct xlb_flow flow;
	__u32 backend;
	__u32 svc;
	__u32 tick;    /* atime >> XLB_ATIME_SHIFT when copied */
	__u32 gen;     /* xlb_globals.gen when copied */
	__u32 ifindex; /* next hop: the backend's (DR) or the route's */
	__u8 mac[6];
	__u8 smac[6];
	__u8 action;   /* enum xlb_action */
	__u8 tun;      /* enum xlb_fc_tun: tun_src, tun_dst and gue_port hold the flow's outer IPv4 header */
	__u16 mtu;     /* tunnel: the route's MTU toward the next hop, as the FIB said when copied; 0: unknown */
	__u32 epoch;   /* xlb_epochs at the flow's slot when copied */
	/* The destination MAC the flow's packets were received with, checked
	 * against the receiving interface's when the entry was copied: a
	 * packet of the flow sent to another MAC (flooded by a switch,
	 * mirrored) misses the cache and is checked again. */
	__u8 imac[6] __attribute__((aligned(4)));
	__u16 gue_port; /* tunnel (XLB_FC_TUN_GUE): the service's GUE port */
	__u32 hash;    /* xlb_hash_flow(&flow): what a tunnel derives from the flow */
	__u32 cfg_idx; /* the service's configuration when copied (xlb_svc_v1 index): valid for the generation */
	/* Tunnel toward an IPv4 real server (XLB_FC_TUN4): the outer source
	 * (xlb_tun_src's, for this flow) and destination, as the service and
	 * backend said when copied: valid for the generation, as cfg_idx. */
	__be32 tun_src;
	__be32 tun_dst;
};

/* What a flow cache entry holds of its tunnel (struct xlb_flow_cache.tun). */
enum xlb_fc_tun {
	XLB_FC_TUN4 = 1 << 0,    /* an outer IPv4 header: tun_src, tun_dst */
	XLB_FC_TUN_GUE = 1 << 1, /* inside GUE, to gue_port */
};

/* A datagram whose first fragment was forwarded: later fragments (no
 * ports) follow it. Key of xlb_frags_v1. */
struct xlb_frag_key {
	XLB_ADDR(src);
	XLB_ADDR(dst);
	__u32 id;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct xlb_frag {
	__u64 atime;
	__u32 backend;
	__u32 svc;
	__u8 action; /* enum xlb_action */
	__u8 pad[7];
};

/* A NAT real server: value of xlb_nat_reals_v1 (key: struct xlb_svc_key
 * with the real server's address and port). */
struct xlb_nat_real {
	__u32 svc;
	__u32 backend;
};

/* Persistence template key (ipvsadm -p): client address and service. */
struct xlb_persist_key {
	XLB_ADDR(addr);
	__u32 svc;
	__u8 family;
	__u8 pad[3];
};

struct xlb_persist {
	__u64 atime;
	__u32 backend;
	__u32 pad;
};

/* Per-service and per-backend counters (per-CPU). */
struct xlb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 packets_out;
	__u64 bytes_out;
	__u64 conns;
};

/* Per-verdict counters (per-CPU). */
struct xlb_verdict_stats {
	__u64 packets;
	__u64 bytes;
};

/* The program's clock: the single entry of xlb_clock_v1, set to
 * CLOCK_MONOTONIC_COARSE by the xlb_clock program, which the control plane
 * runs every 100 ms (a helper call per packet would cost more). */
struct xlb_clock {
	__u64 now; /* ns */
};

/* Settings of an interface (value of xlb_ifaces_v1, keyed by ifindex),
 * written by the control plane when it attaches and kept current: for an
 * attached interface its MAC and reverse-path filter; for a device
 * stacked on one (a VLAN device, a macvlan) the attached one it sits on. */
struct xlb_iface {
	__u8 mac[6];    /* the interface's MAC */
	__u8 rp_filter; /* max(conf/all, conf/IF) rp_filter: 0 off, 1 strict, 2 loose */
	__u8 flags;     /* enum xlb_iface_flags */
	__u32 parent;   /* ifindex of the attached interface this one is on (itself if attached) */
	__u32 ifindex;  /* the interface's (the key of xlb_ifaces_v1; xlb_ifslots_v1 holds several per slot index) */
};

/* A MAC the frames for an attached interface may carry besides its own:
 * key of xlb_if_macs_v1 (a VLAN device's, a macvlan's such as VRRP's
 * virtual MAC, the bridge's it is a port of). */
struct xlb_if_mac {
	__u32 ifindex; /* the attached interface */
	__u8 mac[6];
	__u8 pad[2];
};

/* SYNs one CPU scheduled in the current window (xlb_syn_rate). */
struct xlb_syn_rate {
	__u64 window; /* now >> XLB_SYN_WINDOW_SHIFT */
	__u64 count;
};

/* SYN flood mode (xlb_syn_flood): on until this time (program clock, ns). */
struct xlb_syn_flood {
	__u64 until;
};

/* A candidate of an lc/wlc service: backend id and weight. */
struct xlb_cand {
	__u32 id;
	__u32 weight;
	__u8 thresh; /* the backend has connection thresholds: its overload flag is read */
	__u8 pad[3];
};

/* The lc/wlc candidates of one service slot (xlb_cands_v1), written by the
 * control plane with the slot's scheduling table. */
struct xlb_cands {
	__u32 n;
	__u32 pad;
	struct xlb_cand c[XLB_MAX_BACKENDS_PER_SVC];
};

/* Global settings, written by the control plane: the single entry of
 * xlb_globals_v1. */
struct xlb_globals {
	__u64 tcp_timeout;     /* ns idle before an established TCP entry expires */
	__u64 tcp_fin_timeout; /* ns idle for SYN-only and closing TCP entries */
	__u64 udp_timeout;     /* ns idle for UDP entries */
	__u32 gen;             /* configuration generation: bumped by every change, it invalidates xlb_flowcache */
	__u32 nat_reals;       /* entries in xlb_nat_reals_v1 (0: skip the lookup) */
};

#endif /* XLB_STRUCTS_H */
