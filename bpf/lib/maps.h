/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps of the XDP program. Names carry the xlb_ prefix and a layout version
 * suffix (bump it when a key or value changes) so that pinned maps of an
 * older layout are never reused by mistake. All are pinned by name under the
 * pin path, with BTF, so `bpftool map dump pinned PATH/NAME` is readable. */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"

/* Service address -> service id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, struct xlb_svc_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_svc_ids_v1 SEC(".maps");

/* Service id -> active configuration slot (0 or 1). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_svc_slot_v1 SEC(".maps");

/* id * 2 + slot -> service configuration. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES * 2);
	__type(key, __u32);
	__type(value, struct xlb_svc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_svc_v1 SEC(".maps");

/* Scheduling table of one service slot: backend ids. rr/wrr: the IPVS
 * cycle; lc/wlc: the candidates in configuration order; sh/mh: the Maglev
 * lookup table (a prime number of entries). Sizes differ per table. */
struct xlb_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_INNER_MAP);
};

/* id * 2 + slot -> scheduling table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, XLB_MAX_SERVICES * 2);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct xlb_table);
} xlb_tables_v1 SEC(".maps");

/* Backend id -> real server. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct xlb_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_backends_v1 SEC(".maps");

/* Backend id -> connections counted for lc/wlc (atomic; reconciled by the
 * control plane against the connection table). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __s64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_be_act_v1 SEC(".maps");

/* Backend id -> connections as IPVS counts them (struct xlb_be_conns:
 * sed, nq, ovf, twos and the thresholds read them); atomic, reconciled by
 * the control plane against the connection table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct xlb_be_conns);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_be_conns_v1 SEC(".maps");

/* Backend id -> connection thresholds (read when XLB_BE_F_THRESH is set). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct xlb_be_thresh);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_be_thresh_v1 SEC(".maps");

/* Service id -> round-robin position (atomic). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_rr_v1 SEC(".maps");

/* Connection table: an LRU with per-CPU LRU lists. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_MAX_CONNS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct xlb_flow);
	__type(value, struct xlb_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_conns_v1 SEC(".maps");

/* Embryonic TCP flows: flow hash % XLB_MAX_EMBRYOS -> a word (enum
 * xlb_embryo_word), shared by all CPUs (the ACK of a handshake may arrive
 * on another CPU than its SYN). Pinned: handshakes survive a restart. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_EMBRYOS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_embryos_v1 SEC(".maps");

/* SYNs scheduled by this CPU in the current window (struct xlb_syn_rate).
 * Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_syn_rate);
} xlb_syn_rate SEC(".maps");

/* SYN flood mode, shared (struct xlb_syn_flood). Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_syn_flood);
} xlb_syn_flood SEC(".maps");

/* lc/wlc candidates of one service slot (id * 2 + slot): the schedulable
 * backends and their weights in one value, scanned without a lookup per
 * candidate. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES * 2);
	__type(key, __u32);
	__type(value, struct xlb_cands);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_cands_v1 SEC(".maps");

/* Established-flow cache, direct-mapped by flow hash: a slice of
 * XLB_FLOW_CACHE_SIZE entries per possible CPU (entry cpu *
 * XLB_FLOW_CACHE_SIZE + slot), each written and read only by its CPU as a
 * per-CPU array's values are; the control plane sets max_entries to
 * possible CPUs x XLB_FLOW_CACHE_SIZE. A per-CPU array's lookup loads the
 * value's pointer from a table of one per entry before the value: with
 * many flows two dependent cache misses per packet, here one. Not pinned:
 * a new program starts with an empty cache and refills it from
 * xlb_conns_v1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_FLOW_CACHE_SIZE);
	__type(key, __u32);
	__type(value, struct xlb_flow_cache);
} xlb_flowcache SEC(".maps");

/* NAT real server address:port/proto -> service and backend ids (only
 * those serving a single NAT service). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_NAT_BACKENDS);
	__type(key, struct xlb_svc_key);
	__type(value, struct xlb_nat_real);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_nat_reals_v1 SEC(".maps");

/* Flow epochs, by flow cache slot, shared by all CPUs: bumped whenever a
 * flow of the slot is scheduled anew (a reused 5-tuple), which invalidates
 * what every CPU's cache holds for it. Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_FLOW_CACHE_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} xlb_epochs SEC(".maps");

/* Persistence templates. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_MAX_PERSIST);
	__type(key, struct xlb_persist_key);
	__type(value, struct xlb_persist);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_persist_v1 SEC(".maps");

/* Fragments: the datagrams whose first fragment was forwarded. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_MAX_FRAGS);
	__type(key, struct xlb_frag_key);
	__type(value, struct xlb_frag);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_frags_v1 SEC(".maps");

/* Counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct xlb_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_svc_stat_v1 SEC(".maps");

/* The backends' counters: a slice of XLB_MAX_BACKENDS entries per possible
 * CPU (entry cpu * XLB_MAX_BACKENDS + backend), each written only by its
 * CPU as a per-CPU array's values are; the control plane sets max_entries
 * to possible CPUs x XLB_MAX_BACKENDS and reads each slice's first ids
 * through a mapping of their pages made for the read (a batch lookup of
 * 65,536 ids on two CPUs took 95 ms, the mapped read 1.3 ms; a mapping
 * kept would count the whole array in the daemon's RSS). As a per-CPU
 * array (xlb_be_stat_v1) it took 0.2 s to create, one per-CPU allocation
 * per entry, a fifth of a start at 1,000 x 64; xlb_be_stat_v2 was this
 * array without BPF_F_MMAPABLE. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct xlb_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_be_stat_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_V_MAX);
	__type(key, __u32); /* enum xlb_verdict; arrays need an integer key */
	__type(value, struct xlb_verdict_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_verdicts_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_EV_MAX);
	__type(key, __u32); /* enum xlb_event */
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_events_v1 SEC(".maps");

/* Per-CPU scratch space: the BPF stack is limited to 512 bytes over all
 * call frames. Not pinned. */
struct xlb_scratch {
	__u64 fib[(sizeof(struct bpf_fib_lookup) + 7) / 8]; /* struct bpf_fib_lookup */
	__u8 ipopt[64]; /* IPv4 options being checked (at most 40 bytes), zero padded */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_scratch);
} xlb_scratch SEC(".maps");

/* Interfaces to redirect to, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, XLB_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_devmap_v1 SEC(".maps");

/* Interface settings by ifindex (struct xlb_iface): the attached
 * interfaces and the devices stacked on them. An interface without an
 * entry (not attached: tests running the program) is not checked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_IFACE_ENTRIES);
	__type(key, __u32);
	__type(value, struct xlb_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_ifaces_v1 SEC(".maps");

/* ifindex % XLB_IFACE_SLOTS -> the attached interface's entry of
 * xlb_ifaces_v1 (ifindex 0: none), when no other attached interface has
 * the slot: the same settings found with an array lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_IFACE_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_ifslots_v1 SEC(".maps");

/* Other MACs frames for an attached interface may carry -> the ifindex of
 * the device that has it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_IFACE_ENTRIES);
	__type(key, struct xlb_if_mac);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_if_macs_v1 SEC(".maps");

/* The director's local IPv4 addresses (network order) -> ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_LOCAL_ADDRS);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_local4_v1 SEC(".maps");

/* The clock, one entry (struct xlb_clock). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_clock);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_clock_v1 SEC(".maps");

/* Global settings, one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_globals);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_globals_v1 SEC(".maps");

#endif /* XLB_MAPS_H */
