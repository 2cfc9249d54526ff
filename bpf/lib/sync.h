/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection sync (control/sync): the program reports the flows a peer
 * director must know (xlb_sync_slots), and takes over the flows a peer
 * reported (xlb_sync_conns_v1) on their first packet here.
 *
 * Reports cost nothing on the established path: a flow is reported when
 * its state changes in the connection table (TCP: established, closing),
 * when it is created in a state worth syncing (UDP; TCP picked up without
 * a SYN), never on a TCP SYN (as IPVS syncs from ESTABLISHED on, so a SYN
 * flood writes nothing) and never from the flow cache. The control plane
 * refreshes long-lived flows by walking the connection table.
 *
 * Imported flows live in a table of their own, written by the control
 * plane and consulted only when the connection table misses: with
 * BPF_F_NO_COMMON_LRU each CPU owns max_entries / CPUs of xlb_conns_v1, so
 * one importing thread writing there would evict its own imports. A local
 * entry always wins over an imported one. */
#ifndef XLB_SYNC_H
#define XLB_SYNC_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "hash.h"
#include "svc.h"
#include "conn.h"
#include "flowcache.h"

/* Imported connections the table holds. Entries are allocated as imported
 * (BPF_F_NO_PREALLOC): a director that imports nothing spends nothing. */
#ifndef XLB_MAX_SYNC_CONNS
#define XLB_MAX_SYNC_CONNS (1 << 20)
#endif

/* struct xlb_sync_rec.flags */
enum xlb_sync_flags {
	XLB_SYNC_F_TEMPLATE = 1 << 0, /* the client's persistence template goes along */
};

/* What a report says: the state the flow is in, and its template. A
 * decision's sync field (xlb.c) holds it; 0 reports nothing. */
#define XLB_SYNC_REPORT (1 << 8)
#define XLB_SYNC_TEMPLATE (1 << 9)
/* A decision's sync field when xlb_new made the connection entry: the
 * entry program works out what to report (lb_sync_new), so that xlb_new's
 * paths, which the verifier walks many times, branch no further. */
#define XLB_SYNC_CREATED (1 << 10)

/* A flow reported to the control plane (xlb_sync_slots). */
struct xlb_sync_rec {
	struct xlb_flow flow; /* the client's direction: client -> VIP:port */
	__u32 svc;
	__u32 backend;
	__u8 state;           /* enum xlb_conn_state */
	__u8 flags;           /* enum xlb_sync_flags */
	__u8 pad[6];
};

/* A slot of a CPU's report ring: one cache line. seq is 0 while the slot
 * is written, then the report's sequence number on its CPU plus one. */
struct xlb_sync_slot {
	__u64 seq;
	struct xlb_sync_rec rec;
};

/* A CPU's next sequence number (xlb_sync_heads), alone in its cache line:
 * only its own CPU writes it, the reader reads every CPU's. */
struct xlb_sync_head {
	__u64 next;
	__u64 pad[7];
};

/* A connection imported from a peer: value of xlb_sync_conns_v1, keyed by
 * the client's direction (struct xlb_flow). */
struct xlb_sync_conn {
	__u64 expires;  /* program clock (ns) after which it is ignored */
	__u32 backend;  /* this director's ids of the peer's real server and service */
	__u32 svc;
	__u8 state;     /* enum xlb_conn_state */
	/* 1: the control plane's recount (dataplane/xdp Sync) counted it in
	 * its real server's load and connections, so its promotion adds
	 * nothing to them (it would count the flow twice until the next
	 * recount). */
	__u8 counted;
	__u8 pad[6];
};

/* Settings of the sync, written by the control plane: the single entry of
 * xlb_sync_config. */
struct xlb_sync_cfg {
	__u32 report;   /* 1: report flows to xlb_sync_slots */
	__u32 imported; /* 1: xlb_sync_conns_v1 may hold entries (0: no lookup on a miss) */
};

/* Per-CPU counters of the sync (xlb_sync_counts). */
struct xlb_sync_stats {
	__u64 reported; /* records written to the report rings (the reader counts those lost) */
	__u64 promoted; /* imported flows taken over on their first packet here */
};

/* Slots of each CPU's report ring (a power of two, at most
 * XLB_SYNC_SLOTS), set by the control plane at load. */
const volatile __u32 xlb_sync_ring_slots = XLB_SYNC_SLOTS;

/* The report rings: xlb_sync_ring_slots slots for each possible CPU, in
 * the order of the CPUs (the control plane sizes the array at load), mapped
 * into the reader. Not pinned: a new program reports nothing until its
 * control plane reads. A ring per CPU instead of a BPF ring buffer: a
 * report takes no lock, disables no interrupt and shares no cache line
 * with another CPU or with the reader's position; the reader polls. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_SYNC_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct xlb_sync_slot);
} xlb_sync_slots SEC(".maps");

/* Each possible CPU's next sequence number (sized at load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct xlb_sync_head);
} xlb_sync_heads SEC(".maps");

/* Imported connections. Pinned: a restarted backup keeps what it had. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SYNC_CONNS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xlb_flow);
	__type(value, struct xlb_sync_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_sync_conns_v1 SEC(".maps");

/* Not pinned: a new program reports nothing until its control plane asks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_sync_cfg);
} xlb_sync_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_sync_stats);
} xlb_sync_counts SEC(".maps");

static __always_inline struct xlb_sync_cfg *lb_sync_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_sync_config, &zero);
}

static __always_inline struct xlb_sync_stats *lb_sync_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_sync_counts, &zero);
}

/* lb_sync_what is what a flow of svc in state says to its peers. */
static __always_inline __u16 lb_sync_what(const struct xlb_svc *svc, __u8 state)
{
	return XLB_SYNC_REPORT | state | (svc->persist_timeout ? XLB_SYNC_TEMPLATE : 0);
}

/* lb_sync_new is what a flow just created says: nothing for a TCP SYN (a
 * connection is synced once established), its state otherwise (as
 * lb_conn_create sets it). */
static __always_inline __u16 lb_sync_new(const struct xlb_pkt *p, const struct xlb_svc *svc)
{
	if (p->flow.proto != IPPROTO_TCP)
		return lb_sync_what(svc, XLB_CT_NEW);
	if (p->tcp_flags & XLB_TCP_SYN)
		return 0;
	return lb_sync_what(svc, p->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST) ? XLB_CT_CLOSING : XLB_CT_ESTABLISHED);
}

/* lb_sync_report writes a flow to this CPU's report ring, if the control
 * plane asks for reports. what: lb_sync_what's. A function of its own,
 * called from the entry program: it never adds to the deepest call chain.
 *
 * The slot is taken with an atomic add on the CPU's head (a program run
 * by BPF_PROG_TEST_RUN may be interrupted by the same CPU's XDP), marked
 * busy (seq 0) before it is written and given its sequence number after:
 * the reader (dataplane/xdp reportRing) copies a slot and keeps the copy
 * only if seq read the same before and after. The exchanges order the
 * stores on every architecture (BPF atomics are full barriers). */
static __noinline int lb_sync_report(const struct xlb_flow *flow, __u32 svc, __u32 backend, __u32 what)
{
	struct xlb_sync_cfg *c = lb_sync_cfg();
	struct xlb_sync_stats *st = lb_sync_stats();
	__u32 cpu = bpf_get_smp_processor_id(), idx;
	struct xlb_sync_head *h;
	struct xlb_sync_slot *s;
	__u64 seq;

	if (!c || !c->report)
		return 0;
	h = bpf_map_lookup_elem(&xlb_sync_heads, &cpu);
	if (!h)
		return 0;
	seq = __sync_fetch_and_add(&h->next, 1);
	idx = cpu * xlb_sync_ring_slots + (__u32)(seq & (xlb_sync_ring_slots - 1));
	s = bpf_map_lookup_elem(&xlb_sync_slots, &idx);
	if (!s)
		return 0;
	__sync_lock_test_and_set(&s->seq, 0);
	__builtin_memcpy(&s->rec.flow, flow, sizeof(s->rec.flow));
	s->rec.svc = svc;
	s->rec.backend = backend;
	s->rec.state = what & 0xff;
	s->rec.flags = what & XLB_SYNC_TEMPLATE ? XLB_SYNC_F_TEMPLATE : 0;
	__builtin_memset(s->rec.pad, 0, sizeof(s->rec.pad));
	__sync_lock_test_and_set(&s->seq, seq + 1);
	if (st)
		st->reported++;
	return 1;
}

/* lb_sync_wanted reports whether a packet without a connection entry may
 * be of an imported flow: not a TCP SYN (a new connection), and only while
 * the control plane has imported some. */
static __always_inline int lb_sync_wanted(const struct xlb_pkt *p)
{
	return p->flow.proto != IPPROTO_TCP || (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) != XLB_TCP_SYN;
}

/* lb_sync_promote takes over an imported flow on its first packet here:
 * its entry moves into the connection table, as if this director had
 * scheduled it (lb_conn_create: counted in its real server's lc/wlc load
 * and in its connections as IPVS counts them, dest.h). Returns 1 if it
 * did; the caller looks the entry up again. An expired entry, or one whose
 * real server is gone, is deleted. An entry the control plane's recount
 * counted already (counted) is not counted again. */
static __noinline int lb_sync_promote(const struct xlb_flow *flow, __u64 now)
{
	struct xlb_sync_cfg *c = lb_sync_cfg();
	struct xlb_sync_stats *st;
	struct xlb_sync_conn *ic;
	struct xlb_backend *be;
	struct xlb_conn v = {};
	__u8 counted;

	if (!c || !c->imported)
		return 0;
	ic = bpf_map_lookup_elem(&xlb_sync_conns_v1, flow);
	if (!ic)
		return 0;
	counted = ic->counted;
	v.atime = now;
	v.backend = ic->backend;
	v.svc = ic->svc;
	v.state = ic->state;
	be = lb_backend(v.backend, v.svc);
	if (now >= ic->expires || !be) {
		bpf_map_delete_elem(&xlb_sync_conns_v1, flow);
		return 0;
	}
	bpf_map_delete_elem(&xlb_sync_conns_v1, flow);
	v.flags = XLB_CT_F_BOUND | (v.state == XLB_CT_CLOSING ? 0 : XLB_CT_F_COUNTED);
	if (bpf_map_update_elem(&xlb_conns_v1, flow, &v, BPF_NOEXIST))
		return 0;
	if (!counted) {
		if (v.flags & XLB_CT_F_COUNTED)
			lb_active_add(v.backend, 1);
		lb_dest_bind(v.backend, be, lb_ct_active(flow->proto, v.state));
	}
	lb_epoch_bump(flow);
	st = lb_sync_stats();
	if (st)
		st->promoted++;
	return 1;
}

#endif /* XLB_SYNC_H */
