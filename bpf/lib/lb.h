/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Load balancing: service lookup, the connection table, the schedulers and
 * the counters. */
#ifndef XLB_LB_H
#define XLB_LB_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "hash.h"
#include "fwd.h"

/* Coarse clock ticks of about one second: atime is rewritten only when it
 * changes, so an established flow writes its entry once a second at most. */
#define XLB_ATIME_SHIFT 30

/* lb_count_verdict counts a packet under its verdict. */
static __always_inline void lb_count_verdict(__u32 verdict, __u32 len)
{
	struct xlb_verdict_stats *s = bpf_map_lookup_elem(&xlb_verdicts_v1, &verdict);

	if (s) {
		s->packets++;
		s->bytes += len;
	}
}

/* lb_event counts an event. */
static __always_inline void lb_event(__u32 ev)
{
	__u64 *n = bpf_map_lookup_elem(&xlb_events_v1, &ev);

	if (n)
		(*n)++;
}

/* lb_globals returns the global settings. */
static __always_inline struct xlb_globals *lb_globals(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_globals_v1, &zero);
}

/* lb_now reads the program's clock (ns). */
static __always_inline __u64 lb_now(void)
{
	__u32 zero = 0;
	struct xlb_clock *c = bpf_map_lookup_elem(&xlb_clock_v1, &zero);

	return c ? c->now : 0;
}

/* lb_idle reports whether more than timeout ns passed since atime. */
static __always_inline int lb_idle(__u64 now, __u64 atime, __u64 timeout)
{
	return now > atime && now - atime > timeout;
}

/* lb_count adds a packet (and a connection if new) to a service's or a
 * backend's counters. */
static __always_inline void lb_count(void *map, __u32 id, __u32 len, int new_conn, int out)
{
	struct xlb_stats *s = bpf_map_lookup_elem(map, &id);

	if (!s)
		return;
	if (out) {
		s->packets_out++;
		s->bytes_out += len;
	} else {
		s->packets++;
		s->bytes += len;
	}
	if (new_conn)
		s->conns++;
}

/* lb_svc_lookup finds the service of a packet by destination address,
 * port and protocol, and returns its active configuration; *cfg_idx is
 * that configuration's index (also the index of its scheduling table). */
static __always_inline struct xlb_svc *lb_svc_lookup(const struct xlb_flow *f, __u32 *cfg_idx)
{
	struct xlb_svc_key k = {
		.port = f->dport,
		.proto = f->proto,
		.family = f->family,
	};
	__u32 *id, *slot, idx;

	__builtin_memcpy(k.addr, f->dst, sizeof(k.addr));
	id = bpf_map_lookup_elem(&xlb_svc_ids_v1, &k);
	if (!id)
		return NULL;
	slot = bpf_map_lookup_elem(&xlb_svc_slot_v1, id);
	if (!slot)
		return NULL;
	idx = *id * 2 + (*slot & 1);
	*cfg_idx = idx;
	return bpf_map_lookup_elem(&xlb_svc_v1, &idx);
}

/* lb_backend returns backend id of service svc, or NULL if the id does
 * not (or no longer) describe one of its real servers. */
static __always_inline struct xlb_backend *lb_backend(__u32 id, __u32 svc)
{
	struct xlb_backend *be = bpf_map_lookup_elem(&xlb_backends_v1, &id);

	if (!be || !(be->flags & XLB_BE_F_IN_USE) || be->svc != svc)
		return NULL;
	return be;
}

static __always_inline void lb_active_add(__u32 backend, __s64 delta)
{
	__s64 *a = bpf_map_lookup_elem(&xlb_be_act_v1, &backend);

	if (a)
		__sync_fetch_and_add(a, delta);
}

/* lb_conn_release takes a connection out of its backend's lc/wlc load,
 * once. */
static __always_inline void lb_conn_release(struct xlb_conn *ct)
{
	if (ct->flags & XLB_CT_F_COUNTED) {
		__u32 old = __sync_fetch_and_and(&ct->flags, ~(__u32)XLB_CT_F_COUNTED);

		if (old & XLB_CT_F_COUNTED)
			lb_active_add(ct->backend, -1);
	}
}

/* lb_conn_timeout is the idle timeout of a connection entry, in ns. */
static __always_inline __u64 lb_conn_timeout(const struct xlb_conn *ct, __u8 proto)
{
	struct xlb_globals *g = lb_globals();

	if (!g)
		return 0;
	if (proto != IPPROTO_TCP)
		return g->udp_timeout;
	return ct->state == XLB_CT_ESTABLISHED ? g->tcp_timeout : g->tcp_fin_timeout;
}

/* lb_conn_touch advances a live connection: its TCP state from the
 * packet's flags and its access time. */
static __always_inline void lb_conn_touch(struct xlb_conn *ct, const struct xlb_pkt *p, __u64 now)
{
	if (p->flow.proto == IPPROTO_TCP) {
		if (p->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)) {
			if (ct->state != XLB_CT_CLOSING)
				ct->state = XLB_CT_CLOSING;
			lb_conn_release(ct);
		} else if (ct->state == XLB_CT_NEW && !(p->tcp_flags & XLB_TCP_SYN)) {
			ct->state = XLB_CT_ESTABLISHED;
		}
	}
	if ((ct->atime >> XLB_ATIME_SHIFT) != (now >> XLB_ATIME_SHIFT))
		ct->atime = now;
}

/* lb_table returns the scheduling table of a configuration. */
static __always_inline void *lb_table(__u32 cfg_idx)
{
	return bpf_map_lookup_elem(&xlb_tables_v1, &cfg_idx);
}

static __always_inline __u32 lb_table_get(void *table, __u32 i)
{
	__u32 *id = bpf_map_lookup_elem(table, &i);

	return id ? *id : (__u32)-1;
}

/* lb_pick_hash picks by consistent hash: sh hashes the source address, the
 * others the 5-tuple. */
static __always_inline __u32 lb_pick_hash(const struct xlb_svc *svc, int sched, void *table,
					  const struct xlb_flow *f)
{
	__u32 h = sched == XLB_SCHED_SH ? xlb_hash_src(f) : xlb_hash_flow(f);

	return lb_table_get(table, xlb_reduce(h, svc->table_len));
}

/* lb_pick_rr takes the next entry of the (weighted) round-robin cycle. */
static __always_inline __u32 lb_pick_rr(const struct xlb_svc *svc, void *table)
{
	__u32 id = svc->id;
	__u64 *pos = bpf_map_lookup_elem(&xlb_rr_v1, &id);
	__u64 n;

	if (!pos)
		return (__u32)-1;
	n = __sync_fetch_and_add(pos, 1);
	return lb_table_get(table, n % svc->table_len);
}

struct lb_lc_ctx {
	void *table;
	__u32 svc;
	__u32 n;
	__u32 weighted;
	__u32 best;
	__u64 best_load;
	__u64 best_weight;
};

static long lb_lc_step(__u32 i, struct lb_lc_ctx *c)
{
	struct xlb_backend *be;
	__u64 load, w;
	__s64 *act;
	__u32 id;

	if (i >= c->n)
		return 1;
	id = lb_table_get(c->table, i);
	be = lb_backend(id, c->svc);
	if (!be || !(be->flags & XLB_BE_F_SCHED))
		return 0;
	act = bpf_map_lookup_elem(&xlb_be_act_v1, &id);
	load = act && *act > 0 ? *act : 0;
	w = c->weighted ? be->weight : 1;
	if (!w)
		return 0;
	/* load/w < best_load/best_weight; the first of equals wins, as IPVS. */
	if (c->best == (__u32)-1 || load * c->best_weight < c->best_load * w) {
		c->best = id;
		c->best_load = load;
		c->best_weight = w;
	}
	return 0;
}

/* lb_pick_lc picks the real server with the least (weighted) connections. */
static __always_inline __u32 lb_pick_lc(const struct xlb_svc *svc, void *table)
{
	struct lb_lc_ctx c = {
		.table = table,
		.svc = svc->id,
		.n = svc->table_len,
		.weighted = svc->sched == XLB_SCHED_WLC,
		.best = (__u32)-1,
	};

	bpf_loop(XLB_MAX_BACKENDS_PER_SVC, lb_lc_step, &c, 0);
	return c.best;
}

/* lb_schedule picks a real server for a flow without a connection entry.
 * A new flow (TCP SYN, UDP) goes through the service's scheduler; any other
 * packet (e.g. after a failover to this director) through the consistent
 * hash, so that two directors with the same configuration agree for sh and
 * mh services. Persistence comes first. Returns the backend or NULL. */
static __always_inline struct xlb_backend *lb_schedule(const struct xlb_svc *svc, __u32 cfg_idx,
						       const struct xlb_pkt *p, int is_new, __u64 now,
						       __u32 *backend_id)
{
	struct xlb_persist_key pk = {};
	struct xlb_persist *pe = NULL;
	struct xlb_backend *be;
	int sched = svc->sched;
	void *table;
	__u32 id;

	if (!is_new && sched != XLB_SCHED_SH)
		sched = XLB_SCHED_MH;
	if (svc->persist_timeout) {
		__builtin_memcpy(pk.addr, p->flow.src, sizeof(pk.addr));
		pk.svc = svc->id;
		pk.family = p->flow.family;
		pe = bpf_map_lookup_elem(&xlb_persist_v1, &pk);
		if (pe && !lb_idle(now, pe->atime, (__u64)svc->persist_timeout * 1000000000ULL)) {
			be = lb_backend(pe->backend, svc->id);
			if (be && (be->flags & XLB_BE_F_SCHED)) {
				pe->atime = now;
				*backend_id = pe->backend;
				return be;
			}
		}
	}

	table = lb_table(cfg_idx);
	if (!table || !svc->table_len)
		return NULL;
	switch (sched) {
	case XLB_SCHED_RR:
	case XLB_SCHED_WRR:
		id = lb_pick_rr(svc, table);
		break;
	case XLB_SCHED_LC:
	case XLB_SCHED_WLC:
		id = lb_pick_lc(svc, table);
		break;
	default:
		id = lb_pick_hash(svc, sched, table, &p->flow);
		break;
	}
	be = lb_backend(id, svc->id);
	if (!be || !(be->flags & XLB_BE_F_SCHED))
		return NULL;
	*backend_id = id;

	if (svc->persist_timeout) {
		struct xlb_persist v = { .atime = now, .backend = id };

		bpf_map_update_elem(&xlb_persist_v1, &pk, &v, BPF_ANY);
	}
	return be;
}

/* lb_svc_by_id returns the active configuration of service id (and its
 * index in *cfg_idx) if it forwards. */
static __always_inline struct xlb_svc *lb_svc_by_id(__u32 id, __u32 *cfg_idx)
{
	__u32 *slot = bpf_map_lookup_elem(&xlb_svc_slot_v1, &id);
	struct xlb_svc *svc;
	__u32 idx;

	if (!slot)
		return NULL;
	idx = id * 2 + (*slot & 1);
	svc = bpf_map_lookup_elem(&xlb_svc_v1, &idx);
	if (!svc || !(svc->flags & XLB_SVC_F_ENABLED) || svc->id != id)
		return NULL;
	*cfg_idx = idx;
	return svc;
}

/* lb_svc_of returns the active configuration of service id if it still
 * serves the packet's destination and forwards; NULL otherwise (service
 * removed, its id reused, or disabled). */
static __always_inline struct xlb_svc *lb_svc_of(__u32 id, const struct xlb_flow *f, __u32 *cfg_idx)
{
	struct xlb_svc *svc = lb_svc_by_id(id, cfg_idx);

	if (!svc || svc->port != f->dport || svc->proto != f->proto || svc->family != f->family ||
	    XLB_CA32(svc->vip)[0] != XLB_CA32(f->dst)[0] || XLB_CA32(svc->vip)[1] != XLB_CA32(f->dst)[1] ||
	    XLB_CA32(svc->vip)[2] != XLB_CA32(f->dst)[2] || XLB_CA32(svc->vip)[3] != XLB_CA32(f->dst)[3])
		return NULL;
	return svc;
}

/* lb_conn_use returns the backend of a live connection entry and advances
 * the entry. An expired entry is released and treated as absent; so is an
 * entry whose backend no longer exists and, for a TCP SYN, a closing entry
 * (the 5-tuple is being reused for a new connection). */
static __always_inline struct xlb_backend *lb_conn_use(struct xlb_conn *ct, const struct xlb_pkt *p, __u64 now,
						       __u32 *backend_id)
{
	struct xlb_backend *be;

	if (lb_idle(now, ct->atime, lb_conn_timeout(ct, p->flow.proto)))
		goto stale;
	if (ct->state == XLB_CT_CLOSING && (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN)
		goto stale;
	be = lb_backend(ct->backend, ct->svc);
	if (!be)
		goto stale;
	lb_conn_touch(ct, p, now);
	*backend_id = ct->backend;
	return be;
stale:
	lb_conn_release(ct);
	return NULL;
}

static __always_inline int lb_flow_eq(const struct xlb_flow *a, const struct xlb_flow *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	/* Destination and ports first: they differ most between flows of a bucket. */
	return x[4] == y[4] && x[8] == y[8] && x[0] == y[0] && x[9] == y[9] && x[5] == y[5] &&
	       x[6] == y[6] && x[7] == y[7] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* lb_cache_slot returns the flow cache slot of a flow. */
static __always_inline struct xlb_flow_cache *lb_cache_slot(__u32 hash)
{
	__u32 idx = hash & (XLB_FLOW_CACHE_SIZE - 1);

	return bpf_map_lookup_elem(&xlb_flowcache, &idx);
}

/* lb_epoch returns the epoch counter of a flow's cache slot. */
static __always_inline __u32 *lb_epoch(__u32 hash)
{
	__u32 idx = hash & (XLB_FLOW_CACHE_SIZE - 1);

	return bpf_map_lookup_elem(&xlb_epochs, &idx);
}

/* lb_epoch_bump invalidates every CPU's cached entry of the flow's slot. */
static __always_inline void lb_epoch_bump(__u32 hash)
{
	__u32 *e = lb_epoch(hash);

	if (e)
		__sync_fetch_and_add(e, 1);
}

/* lb_cache_get returns the cached entry of an established flow if it was
 * copied from the connection table during the current clock tick, the
 * configuration has not changed since, the flow was not scheduled anew
 * (epoch), and the packet was sent to the destination MAC checked when the
 * entry was copied (another is checked again: xlb_l2_check). SYN, FIN and
 * RST always go to the connection table, and so do first fragments: the
 * slow path records their datagram's entry, which the later fragments
 * (without ports) follow. */
static __always_inline struct xlb_flow_cache *lb_cache_get(struct xlb_flow_cache *c, const struct xlb_pkt *p, __u64 now,
							   __u32 gen)
{
	__u32 *epoch;

	if (!c || (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_FIN | XLB_TCP_RST)) || p->frag != XLB_FRAG_NONE)
		return NULL;
	if (c->tick != (__u32)(now >> XLB_ATIME_SHIFT) || c->gen != gen || !lb_flow_eq(&c->flow, &p->flow) ||
	    *(const __u32 *)c->imac != *(const __u32 *)p->dmac || *(const __u16 *)(c->imac + 4) != *(const __u16 *)(p->dmac + 4))
		return NULL;
	epoch = lb_epoch(p->hash);
	if (!epoch || c->epoch != *epoch)
		return NULL;
	return c;
}

/* lb_cache_put caches how an established flow (TCP established, or UDP)
 * is forwarded: the action, backend and next hop. */
static __always_inline void lb_cache_put(struct xlb_flow_cache *c, const struct xlb_pkt *p, __u32 svc,
					 __u32 backend, __u8 action, const struct xlb_hop *hop, __u64 now, __u32 gen)
{
	if (!c)
		return;
	c->flow = p->flow;
	c->svc = svc;
	c->backend = backend;
	c->tick = now >> XLB_ATIME_SHIFT;
	c->gen = gen;
	c->action = action;
	{
		__u32 *epoch = lb_epoch(p->hash);

		c->epoch = epoch ? *epoch : 0;
	}
	c->ifindex = hop->ifindex;
	__builtin_memcpy(c->mac, hop->mac, sizeof(c->mac));
	__builtin_memcpy(c->smac, hop->smac, sizeof(c->smac));
	__builtin_memcpy(c->imac, p->dmac, sizeof(c->imac));
}

/* lb_reply_key is the NAT reply direction of a flow to backend be. */
static __always_inline void lb_reply_key(struct xlb_flow *k, const struct xlb_pkt *p, const struct xlb_backend *be)
{
	__builtin_memcpy(k->src, be->addr, sizeof(k->src));
	__builtin_memcpy(k->dst, p->flow.src, sizeof(k->dst));
	k->sport = be->port;
	k->dport = p->flow.sport;
	k->proto = p->flow.proto;
	k->family = p->flow.family;
}

/* lb_reply_put records (or, with only_missing, restores after an LRU
 * eviction) the reply entry of a NAT flow: replies from the real server
 * find the VIP:port to translate back to. */
static __always_inline void lb_reply_put(const struct xlb_pkt *p, __u32 svc, __u32 id, const struct xlb_backend *be,
					 __u64 now, int only_missing)
{
	struct xlb_flow k = {};
	struct xlb_conn v = {
		.atime = now,
		.backend = id,
		.svc = svc,
		.flags = XLB_CT_F_REPLY,
		.state = XLB_CT_ESTABLISHED,
	};

	lb_reply_key(&k, p, be);
	if (only_missing && bpf_map_lookup_elem(&xlb_conns_v1, &k))
		return;
	bpf_map_update_elem(&xlb_conns_v1, &k, &v, BPF_ANY);
}

/* lb_conn_create records a new flow on backend id. */
static __always_inline void lb_conn_create(const struct xlb_pkt *p, const struct xlb_svc *svc, __u32 id,
					   const struct xlb_backend *be, __u64 now)
{
	struct xlb_conn ct = {
		.atime = now,
		.backend = id,
		.svc = svc->id,
		.flags = XLB_CT_F_COUNTED,
		.state = XLB_CT_NEW,
	};

	if (p->flow.proto == IPPROTO_TCP) {
		if (p->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)) {
			ct.state = XLB_CT_CLOSING;
			ct.flags = 0;
		} else if (!(p->tcp_flags & XLB_TCP_SYN)) {
			ct.state = XLB_CT_ESTABLISHED;
		}
	}
	if (bpf_map_update_elem(&xlb_conns_v1, &p->flow, &ct, BPF_ANY) == 0 && ct.flags)
		lb_active_add(id, 1);
	if (svc->fwd == XLB_FWD_NAT)
		lb_reply_put(p, svc->id, id, be, now, 0);
}

/* lb_frag_key is the fragment entry key of a packet. */
static __always_inline void lb_frag_key(struct xlb_frag_key *k, const struct xlb_pkt *p)
{
	__builtin_memcpy(k->src, p->flow.src, sizeof(k->src));
	__builtin_memcpy(k->dst, p->flow.dst, sizeof(k->dst));
	k->id = p->frag_id;
	k->proto = p->flow.proto;
	k->family = p->flow.family;
}

/* lb_frag_put remembers where the first fragment of a datagram went, for
 * its later fragments, and counts it (every path that forwards a first
 * fragment calls this). A function of its own: fragments are rare, and its
 * key and value would otherwise sit in the caller's frame, which with the
 * deepest call chain must fit the verifier's 512 bytes (TestCallChainStack). */
static __noinline void lb_frag_put(const struct xlb_pkt *p, __u32 svc, __u32 backend, __u8 action, __u64 now)
{
	struct xlb_frag_key k = {};
	struct xlb_frag v = {
		.atime = now,
		.backend = backend,
		.svc = svc,
		.action = action,
	};

	lb_frag_key(&k, p);
	bpf_map_update_elem(&xlb_frags_v1, &k, &v, BPF_ANY);
	lb_event(XLB_EV_FRAG_FIRST);
}

#endif /* XLB_LB_H */
