// SPDX-License-Identifier: MIT
/*
 * lib/worker.c - the worker-side API: pull, push, set, tickets, wait,
 * wait_sync, barrier, clocks, intents.
 *
 * Each worker owns a transport context of its own, connected to every
 * other node's node context, so a worker posts its READs and ring writes
 * and polls its completions itself: no hand-off to another thread on the
 * data path, and no lock.
 *
 * pull: local keys are copied out of the arena with the seqlock read; remote
 * keys become one RDMA READ each (header + value) into the ticket's staging
 * area, posted per destination as one batch (one doorbell).  On completion
 * each image is validated (lib/slot.h): a torn image is read again, a slot
 * that holds another key sends the reader back to the directory.
 *
 * push/set: local keys are updated in place under the slot's writer lock;
 * remote keys are appended to the open batch for their owner, built in
 * place in the outbox (a mirror of the remote ring) and sent with one
 * WRITE_IMM when full or at the next flush point.
 *
 * Read your writes: a worker remembers, per key it pushed remotely, the
 * number of the message that carries it.  A pull of such a key first
 * makes sure that message has been applied (the owner's credit says so).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define COOKIE_WRITE (1ull << 63)
#define COOKIE_BARRIER (1ull << 62)
#define COOKIE_DIR (1ull << 61)
#define PUSH_TICKET (1ull << 63)

static size_t round64(size_t x)
{
	return (x + 63) & ~(size_t)63;
}

static int open_worker_ctx(struct augur_node *n, const char *provider,
			   struct auv_ctx **out)
{
	struct auv_ctx_opts o;
	char dev[64], addr[64];
	const char *l;

	memset(&o, 0, sizeof(o));
	o.provider = provider;
	/* same device choice as the node context (lib/node.c) */
	l = getenv("AUGUR_DEVICES");
	if (l && *l) {
		int count = 1, i = 0, idx;
		const char *p;
		for (p = l; *p; p++)
			count += *p == ',';
		idx = n->rank % count;
		p = l;
		while (i++ < idx)
			p = strchr(p, ',') + 1;
		snprintf(dev, sizeof(dev), "%.*s", (int)strcspn(p, ","), p);
		o.device = dev;
	}
	l = getenv("AUGUR_ADDRS");
	if (l && *l) {
		int count = 1, i = 0, idx;
		const char *p;
		for (p = l; *p; p++)
			count += *p == ',';
		idx = n->rank % count;
		p = l;
		while (i++ < idx)
			p = strchr(p, ',') + 1;
		snprintf(addr, sizeof(addr), "%.*s", (int)strcspn(p, ","), p);
		o.addr = addr;
	}
	o.sq_depth = 1024;
	o.rq_depth = 16;
	o.cq_depth = 4096;
	return auv_ctx_open(&o, out);
}

int aug_worker_setup(struct augur_node *n, int lid, const char *provider)
{
	struct augur_worker *w = &n->worker[lid];
	size_t off_credit, off_bar, off_out, off_stage, total;
	int rc, t, d;

	w->node = n;
	w->lid = lid;
	w->gid = n->rank * (int)n->nworkers + lid;
	rc = open_worker_ctx(n, provider, &w->ctx);
	if (rc)
		return aug_fail(rc, "opening worker transport: %s: %s",
				augur_strerror(rc), auv_last_error());
	off_credit = 0;
	off_bar = round64((size_t)n->size * 16);
	off_out = off_bar + round64((size_t)n->size * n->nworkers * 8) + 64;
	off_out = (off_out + 4095) & ~(size_t)4095;
	off_stage = off_out + (size_t)n->size * AUG_RING_BYTES;
	total = off_stage + (size_t)AUG_TICKETS * AUG_STAGE_BYTES;
	rc = auv_mr_alloc(w->ctx, total,
			  AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_WRITE,
			  &w->mr);
	if (rc)
		return aug_fail(rc, "registering %zu bytes for worker %d: %s: %s",
				total, lid, augur_strerror(rc),
				auv_last_error());
	w->mem = auv_mr_addr(w->mr);
	w->credit = (uint64_t(*)[2])(void *)(w->mem + off_credit);
	w->bar_buf = (uint64_t *)(void *)(w->mem + off_bar);
	w->dir_buf = (uint64_t *)(void *)(w->mem + off_bar +
					  round64((size_t)n->size *
						  n->nworkers * 8));
	w->dest = calloc((size_t)n->size, sizeof(*w->dest));
	w->dirty = calloc(AUG_DIRTY_SLOTS, sizeof(*w->dirty));
	if (!w->dest || !w->dirty)
		return aug_fail(-ENOMEM, "out of memory");
	for (d = 0; d < n->size; d++)
		w->dest[d].outbox = w->mem + off_out + (size_t)d * AUG_RING_BYTES;
	for (t = 0; t < AUG_TICKETS; t++) {
		w->ticket[t].stage = w->mem + off_stage +
				     (size_t)t * AUG_STAGE_BYTES;
		w->ticket[t].reads = calloc(AUG_READS_PER_TICKET,
					    sizeof(struct aug_read));
		if (!w->ticket[t].reads)
			return aug_fail(-ENOMEM, "out of memory");
	}
	return 0;
}

int aug_worker_connect(struct augur_worker *w)
{
	struct augur_node *n = w->node;
	struct auv_mr_desc md;
	int d, rc;

	auv_mr_desc(w->mr, &md);
	for (d = 0; d < n->size; d++) {
		struct aug_conn_priv priv;
		struct aug_dest *ds = &w->dest[d];

		if (d == n->rank)
			continue;
		memset(&priv, 0, sizeof(priv));
		priv.magic = AUG_PRIV_MAGIC;
		priv.rank = (uint16_t)n->rank;
		priv.worker = (uint16_t)w->gid;
		priv.credit_addr = md.addr + (uint64_t)d * 16;
		priv.credit_rkey = md.rkey;
		rc = auv_ep_connect(w->ctx, n->peers[d].addr, &priv,
				    sizeof(priv), &ds->ep);
		if (rc)
			return aug_fail(rc, "worker %d connecting to node %d "
					    "(%s): %s: %s",
					w->gid, d, n->peers[d].addr,
					augur_strerror(rc), auv_last_error());
		auv_ep_set_user(ds->ep, (void *)(uintptr_t)(d + 1));
		ds->ring_addr = n->peers[d].rings.addr +
				(uint64_t)w->gid * AUG_RING_BYTES;
		ds->ring_rkey = n->peers[d].rings.rkey;
	}
	return 0;
}

void aug_worker_teardown(struct augur_worker *w)
{
	int d, t;

	if (!w->node)
		return;
	if (w->dest)
		for (d = 0; d < w->node->size; d++)
			auv_ep_close(w->dest[d].ep);
	auv_mr_dereg(w->mr);
	auv_ctx_close(w->ctx);
	for (t = 0; t < AUG_TICKETS; t++)
		free(w->ticket[t].reads);
	free(w->dest);
	free(w->dirty);
	aug_iring_fini(&w->iring);
	memset(w, 0, sizeof(*w));
}

/* --- small helpers ------------------------------------------------------ */

static int wk_enter(struct augur_worker *w)
{
	int st;

	if (!w || !w->node)
		return aug_fail(-EINVAL, "NULL worker");
	if (!w->in_use || w->node->stopped || !w->ctx)
		return aug_fail(-AUGUR_ESHUTDOWN,
				"worker destroyed or node stopped");
	st = atomic_load_explicit(&w->node->status, memory_order_acquire);
	if (st)
		return aug_fail(st, "%s", w->node->errbuf);
	return 0;
}

/* Check keys; if @vals_len != (size_t)-1 also the total value length. */
static int check_keys(struct augur_node *n, const uint64_t *keys, size_t cnt,
		      size_t vals_len)
{
	size_t i, total = 0;

	if (cnt && !keys)
		return aug_fail(-EINVAL, "keys is NULL");
	for (i = 0; i < cnt; i++) {
		if (keys[i] >= n->num_keys)
			return aug_fail(-AUGUR_EKEY_RANGE,
					"key %llu (index %zu) out of range "
					"[0, %llu)",
					(unsigned long long)keys[i], i,
					(unsigned long long)n->num_keys);
		total += aug_key_len(n, keys[i]);
	}
	if (vals_len != (size_t)-1 && total != vals_len)
		return aug_fail(-AUGUR_EVALUE_LEN,
				"the %zu keys need %zu floats of values, "
				"the buffer holds %zu",
				cnt, total, vals_len);
	return 0;
}

/* Back off while waiting: spin, then yield, then short sleeps. */
static void wk_backoff(unsigned *spins)
{
	struct timespec ts = { 0, 0 };

	if (++*spins < 64) {
		aug_cpu_relax();
		return;
	}
	if (*spins < 256) {
		sched_yield();
		return;
	}
	ts.tv_nsec = *spins < 1024 ? 10000 : 200000;
	nanosleep(&ts, NULL);
}

static void wk_error(struct augur_worker *w, const struct auv_wc *wc)
{
	struct augur_node *n = w->node;
	int d = wc->ep ? (int)(uintptr_t)auv_ep_user(wc->ep) - 1 : -1;

	if (wc->status == -AUGUR_EPEER_GONE || wc->status == -AUGUR_EFLUSHED)
		aug_node_suspect(n, d, wc->status);
	else
		aug_node_failed(n, wc->status,
				"transport error talking to node %d: %s", d,
				augur_strerror(wc->status));
}

/* Reap this worker's completions. */
static int wk_poll(struct augur_worker *w)
{
	struct auv_wc wc[64];
	int got, i;

	got = auv_poll(w->ctx, wc, 64);
	if (got < 0)
		return got;
	for (i = 0; i < got; i++) {
		uint64_t c = wc[i].cookie;

		if (c & COOKIE_WRITE) {
			if (wc[i].status)
				wk_error(w, &wc[i]);
			continue;
		}
		if (c & COOKIE_DIR) {
			if (wc[i].status)
				wk_error(w, &wc[i]);
			w->barriers |= 1ull << 62;
			continue;
		}
		if (c & COOKIE_BARRIER) {
			if (wc[i].status)
				wk_error(w, &wc[i]);
			w->barriers |= 1ull << 63; /* read done */
			continue;
		}
		{
			uint32_t slot = (uint32_t)(c >> 32) - 1;
			struct aug_ticket *t;

			if (slot >= AUG_TICKETS)
				continue;
			t = &w->ticket[slot];
			t->outstanding--;
			if (wc[i].status) {
				if (!t->status)
					t->status = wc[i].status;
				wk_error(w, &wc[i]);
			}
		}
	}
	return got;
}

static int wk_node_status(struct augur_worker *w)
{
	int st = atomic_load_explicit(&w->node->status, memory_order_acquire);

	return st ? aug_fail(st, "%s", w->node->errbuf) : 0;
}

/* After a transport failure: wait (bounded) for the progress thread's
 * verdict on which node died, and return it. */
static int wk_verdict(struct augur_worker *w, int d, int code)
{
	uint64_t until = aug_now_ns() + 3000000000ull;
	unsigned spins = 0;
	int rc;

	aug_node_suspect(w->node, d, code);
	while (!(rc = wk_node_status(w)) && aug_now_ns() < until)
		wk_backoff(&spins);
	return rc ? rc : aug_fail(-AUGUR_EPEER_GONE, "node %d is gone (%s)",
				  d, augur_strerror(code));
}

/* Post @cnt ops on @ep, polling completions while the send queue is full. */
static int wk_post_all(struct augur_worker *w, struct auv_ep *ep,
		       const struct auv_op *ops, int cnt)
{
	unsigned spins = 0;
	int done = 0, rc;

	while (done < cnt) {
		rc = auv_post(ep, ops + done, cnt - done);
		if (rc < 0) {
			if (rc == -AUGUR_EPEER_GONE || rc == -AUGUR_EFLUSHED)
				return wk_verdict(
					w, (int)(uintptr_t)auv_ep_user(ep) - 1,
					rc);
			return aug_fail(rc, "posting: %s: %s",
					augur_strerror(rc), auv_last_error());
		}
		done += rc;
		if (done < cnt) {
			wk_poll(w);
			rc = wk_node_status(w);
			if (rc)
				return rc;
			wk_backoff(&spins);
		}
	}
	return 0;
}

/* --- pushes: batches into the owners' rings ------------------------------ */

static int wk_flush(struct augur_worker *w, int d)
{
	struct aug_dest *ds = &w->dest[d];
	struct aug_msg_hdr *h;
	struct auv_op op;
	uint64_t pos;
	int rc;

	if (!ds->open_len)
		return 0;
	pos = (ds->head + ds->open_skip) % AUG_RING_BYTES;
	h = (struct aug_msg_hdr *)(void *)(ds->outbox + pos);
	h->magic = AUG_MSG_MAGIC;
	h->pad = 0;
	h->sender = (uint16_t)w->gid;
	h->count = ds->open_count;
	h->bytes = ds->open_len;
	h->seq = (uint32_t)ds->msgs;
	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_WRITE_IMM;
	op.cookie = COOKIE_WRITE | (uint64_t)d;
	op.local = h;
	op.len = ds->open_len;
	op.local_mr = w->mr;
	op.remote_addr = ds->ring_addr + pos;
	op.rkey = ds->ring_rkey;
	op.imm = (ds->open_skip ? 1u << 31 : 0) | ds->open_len;
	/* Selective signaling: an unsignaled write holds its send-queue slot
	 * until a later signaled one completes and is polled. */
	if ((ds->msgs & 31) == 31)
		op.flags = AUV_OP_SIGNALED;
	rc = wk_post_all(w, ds->ep, &op, 1);
	if (rc)
		return rc;
	ds->head += ds->open_skip + ds->open_len;
	ds->msgs++;
	AUG_STAT_ADD(w->st.msgs_sent, 1);
	AUG_STAT_ADD(w->st.bytes_sent, ds->open_len);
	ds->open_len = 0;
	ds->open_count = 0;
	ds->open_skip = 0;
	return 0;
}

static int wk_flush_all(struct augur_worker *w)
{
	int d, rc;

	for (d = 0; d < w->node->size; d++) {
		rc = wk_flush(w, d);
		if (rc)
			return rc;
	}
	return 0;
}

static uint64_t credit_msgs(struct augur_worker *w, int d)
{
	return __atomic_load_n(&w->credit[d][1], __ATOMIC_ACQUIRE);
}

static uint64_t credit_bytes(struct augur_worker *w, int d)
{
	return __atomic_load_n(&w->credit[d][0], __ATOMIC_ACQUIRE);
}

/* Wait until node @d has applied our first @msgs messages. */
static int wk_wait_applied(struct augur_worker *w, int d, uint64_t msgs)
{
	unsigned spins = 0;
	int rc;

	while (credit_msgs(w, d) < msgs) {
		wk_poll(w);
		rc = wk_node_status(w);
		if (!rc && auv_ep_status(w->dest[d].ep))
			rc = wk_verdict(w, d, auv_ep_status(w->dest[d].ep));
		if (rc)
			return rc;
		wk_backoff(&spins);
	}
	return 0;
}

/* Open a batch for @d with room for AUG_BATCH_MAX bytes. */
static int wk_open(struct augur_worker *w, int d)
{
	struct aug_dest *ds = &w->dest[d];
	uint64_t pos = ds->head % AUG_RING_BYTES;
	uint32_t skip = pos + AUG_BATCH_MAX > AUG_RING_BYTES ?
				(uint32_t)(AUG_RING_BYTES - pos) :
				0;
	unsigned spins = 0;
	int rc;

	/* Never overwrite bytes the owner has not consumed, never exceed
	 * the receives it has posted. */
	while (ds->head + skip + AUG_BATCH_MAX - credit_bytes(w, d) >
		       AUG_RING_BYTES ||
	       ds->msgs - credit_msgs(w, d) >= AUG_MAX_INFLIGHT) {
		wk_poll(w);
		rc = wk_node_status(w);
		if (!rc && auv_ep_status(ds->ep))
			rc = wk_verdict(w, d, auv_ep_status(ds->ep));
		if (rc)
			return rc;
		wk_backoff(&spins);
	}
	ds->open_skip = skip;
	ds->open_len = sizeof(struct aug_msg_hdr);
	ds->open_count = 0;
	return 0;
}

static int dirty_note(struct augur_worker *w, uint32_t key, int d,
		      uint64_t upto);

static int wk_append(struct augur_worker *w, int d, uint16_t op, uint32_t key,
		     const float *v, uint32_t len)
{
	struct aug_dest *ds = &w->dest[d];
	uint32_t need = (uint32_t)sizeof(struct aug_msg_ent) + 4u * len;
	struct aug_msg_ent *e;
	uint64_t pos;
	int rc;

	if (ds->open_len && ds->open_len + need > AUG_BATCH_MAX) {
		rc = wk_flush(w, d);
		if (rc)
			return rc;
	}
	if (!ds->open_len) {
		rc = wk_open(w, d);
		if (rc)
			return rc;
	}
	pos = (ds->head + ds->open_skip) % AUG_RING_BYTES + ds->open_len;
	e = (struct aug_msg_ent *)(void *)(ds->outbox + pos);
	e->key = key;
	e->op = op;
	e->len = (uint16_t)len;
	memcpy(e + 1, v, 4u * len);
	ds->open_len += need;
	ds->open_count++;
	return dirty_note(w, key, d, ds->msgs + 1);
}

/* --- read-your-writes table ---------------------------------------------- */

static uint32_t dirty_hash(uint32_t key)
{
	return (key * 2654435761u) & (AUG_DIRTY_SLOTS - 1);
}

static int wk_sync_all(struct augur_worker *w);

static int dirty_note(struct augur_worker *w, uint32_t key, int d,
		      uint64_t upto)
{
	uint32_t i = dirty_hash(key);
	int rc;

	for (;;) {
		struct aug_dirty *e = &w->dirty[i];

		if (!e->upto) {
			e->key = key;
			e->dest = (uint32_t)d;
			e->upto = upto;
			w->ndirty++;
			return 0;
		}
		if (e->key == key) {
			if (e->dest != (uint32_t)d) {
				/* the key moved: one entry tracks one owner,
				 * so let the old owner finish first */
				int od = (int)e->dest;

				if (e->upto > w->dest[od].msgs) {
					rc = wk_flush(w, od);
					if (rc)
						return rc;
				}
				rc = wk_wait_applied(w, od, e->upto);
				if (rc)
					return rc;
				e->dest = (uint32_t)d;
			}
			e->upto = upto;
			return 0;
		}
		i = (i + 1) & (AUG_DIRTY_SLOTS - 1);
	}
}

/* Make sure our pending writes of @key are applied before reading it. */
static int dirty_settle(struct augur_worker *w, uint32_t key)
{
	uint32_t i = dirty_hash(key);
	int rc;

	for (;;) {
		struct aug_dirty *e = &w->dirty[i];

		if (!e->upto)
			return 0;
		if (e->key == key) {
			int d = (int)e->dest;

			if (credit_msgs(w, d) >= e->upto)
				return 0;
			if (e->upto > w->dest[d].msgs) {
				rc = wk_flush(w, d);
				if (rc)
					return rc;
			}
			return wk_wait_applied(w, d, e->upto);
		}
		i = (i + 1) & (AUG_DIRTY_SLOTS - 1);
	}
}

static int dirty_has(struct augur_worker *w, uint32_t key)
{
	uint32_t i = dirty_hash(key);

	for (;;) {
		struct aug_dirty *e = &w->dirty[i];

		if (!e->upto)
			return 0;
		if (e->key == key)
			return 1;
		i = (i + 1) & (AUG_DIRTY_SLOTS - 1);
	}
}

/* --- the directory -------------------------------------------------------- */


/*
 * A cached location turned out stale (the slot holds another key or
 * epoch): ask the key's home, whose loc[] entry is authoritative, with one
 * 8-byte READ.  Returns the location to use now (possibly still without a
 * line while the key is moving in: the caller backs off and asks again).
 */
static uint64_t aug_loc_refresh(struct augur_worker *w, uint32_t key)
{
	struct augur_node *n = w->node;
	int home = (int)(key % (uint64_t)n->size);
	uint64_t cur = aug_loc_get(n, key), got;
	struct auv_op op;
	unsigned spins = 0;

	if (home == n->rank || !aug_adaptive(n))
		return cur;
	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_READ;
	op.flags = AUV_OP_SIGNALED;
	op.cookie = COOKIE_DIR;
	op.local = w->dir_buf;
	op.len = 8;
	op.local_mr = w->mr;
	op.remote_addr = n->peers[home].loc.addr + (uint64_t)key * 8;
	op.rkey = n->peers[home].loc.rkey;
	w->barriers &= ~(1ull << 62);
	if (wk_post_all(w, w->dest[home].ep, &op, 1))
		return cur;
	while (!(w->barriers & (1ull << 62))) {
		wk_poll(w);
		if (wk_node_status(w))
			return cur;
		wk_backoff(&spins);
	}
	w->barriers &= ~(1ull << 62);
	got = __atomic_load_n(w->dir_buf, __ATOMIC_RELAXED);
	/* Only this node's progress thread makes a key ours: a home that
	 * already names us while our install is still queued is not news. */
	if (aug_loc_owner(got) == (uint32_t)n->rank)
		return aug_loc_get(n, key);
	/* keep whichever is newer (the progress thread may update too) */
	while (aug_epoch_newer(aug_loc_epoch(got), aug_loc_epoch(cur)) ||
	       (aug_loc_epoch(got) == aug_loc_epoch(cur) &&
		aug_loc_line(cur) == AUG_LINE_UNKNOWN &&
		aug_loc_line(got) != AUG_LINE_UNKNOWN)) {
		if (__atomic_compare_exchange_n(&n->loc[key], &cur, got, 0,
						__ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return got;
	}
	return aug_loc_get(n, key);
}

/* A location we can READ from: known line (waits while a key moves in). */
static int wk_resolve(struct augur_worker *w, uint32_t key, uint64_t *locp)
{
	uint64_t loc = *locp;
	unsigned spins = 0;
	int tries = 0, rc;

	while (aug_loc_line(loc) == AUG_LINE_UNKNOWN) {
		if (++tries > 1000000)
			return aug_fail(-EIO, "key %u: no location", key);
		rc = wk_node_status(w);
		if (rc)
			return rc;
		wk_backoff(&spins);
		loc = aug_loc_owner(loc) == (uint32_t)w->node->rank ?
			      aug_loc_get(w->node, key) :
			      aug_loc_refresh(w, key);
	}
	*locp = loc;
	return 0;
}

/* Seqlock read of @s that also checks it still holds @key; 0 or -1. */
static int slot_read_key(const struct aug_slot *s, uint32_t key,
			 uint32_t len, float *out)
{
	uint64_t v1, v2;
	uint32_t k;

	for (;;) {
		v1 = aug_load_acquire(&s->version);
		if (v1 & 1) {
			aug_cpu_relax();
			continue;
		}
		k = __atomic_load_n(&s->key, __ATOMIC_RELAXED);
		aug_racy_copy(out, s->val, len);
#ifdef AUG_TSAN
		v2 = __atomic_load_n(&s->version, __ATOMIC_SEQ_CST);
#else
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		v2 = aug_load_relaxed(&s->version);
#endif
		if (v1 == v2)
			return k == key ? 0 : -1;
	}
}

static int local_read(struct augur_node *n, uint64_t loc, uint32_t key,
		      float *out)
{
	return slot_read_key(aug_local_slot(n, loc), key, aug_key_len(n, key),
			     out);
}

static int dirty_has(struct augur_worker *w, uint32_t key);

/* The replica slot of @key, or NULL; only for a worker with no pending
 * remote writes of it (whose replica might predate them). */
static struct aug_slot *replica_of(struct augur_worker *w, uint32_t key)
{
	struct augur_node *n = w->node;
	struct aug_kstate *ks;
	uint8_t st;

	if (!n->ks)
		return NULL;
	ks = &n->ks[key];
	st = __atomic_load_n(&ks->rep_state, __ATOMIC_ACQUIRE);
	if (st != AUG_REP_LIVE && st != AUG_REP_DROPPING)
		return NULL;
	if (w->ndirty && dirty_has(w, key))
		return NULL;
	return (struct aug_slot *)(n->arena +
				   (size_t)__atomic_load_n(&ks->rep_line,
							   __ATOMIC_RELAXED) *
					   AUG_LINE);
}

/*
 * Serve a pull of @key from this node if it can (owned here, or a replica);
 * 1 if @out is filled, 0 with *locp set to a remote location with a known
 * line, or a negative code.
 */
static int try_local(struct augur_worker *w, uint32_t key, float *out,
		     uint64_t *locp)
{
	struct augur_node *n = w->node;
	uint64_t loc = aug_loc_get(n, key);
	struct aug_slot *rs;
	unsigned sp = 0;
	int rc;

	if (!aug_adaptive(n)) {
		if (aug_loc_owner(loc) != (uint32_t)n->rank) {
			*locp = loc;
			return 0;
		}
		aug_slot_read(aug_local_slot(n, loc), out);
		return 1;
	}
	for (;;) {
		if (aug_loc_owner(loc) == (uint32_t)n->rank &&
		    aug_loc_line(loc) != AUG_LINE_UNKNOWN) {
			if (local_read(n, loc, key, out) == 0)
				return 1;
			wk_backoff(&sp); /* moving away right now */
			loc = aug_loc_refresh(w, key);
			continue;
		}
		rs = replica_of(w, key);
		if (rs && slot_read_key(rs, key, aug_key_len(n, key), out) == 0)
			return 1;
		rc = wk_resolve(w, key, &loc);
		if (rc)
			return rc;
		if (aug_loc_owner(loc) == (uint32_t)n->rank)
			continue;
		*locp = loc;
		return 0;
	}
}

/* --- pulls ---------------------------------------------------------------- */

static struct aug_ticket *ticket_by_id(struct augur_worker *w,
				       augur_ticket_t id)
{
	struct aug_ticket *t = &w->ticket[id % AUG_TICKETS];

	return t->seq == id ? t : NULL;
}

static int post_reads(struct augur_worker *w, struct aug_ticket *t,
		      const uint32_t *idx, uint32_t cnt)
{
	struct augur_node *n = w->node;
	struct auv_op ops[64];
	uint32_t i = 0;
	int slot = (int)(t - w->ticket), rc;

	while (i < cnt) {
		int d = (int)t->reads[idx[i]].dest, k = 0;

		/* a run of reads to the same destination: one doorbell */
		while (i < cnt && k < 64 && (int)t->reads[idx[i]].dest == d) {
			struct aug_read *r = &t->reads[idx[i]];

			memset(&ops[k], 0, sizeof(ops[k]));
			ops[k].opcode = AUV_OP_READ;
			ops[k].flags = AUV_OP_SIGNALED;
			ops[k].cookie = ((uint64_t)(slot + 1) << 32) | idx[i];
			ops[k].local = t->stage + r->stage_off;
			ops[k].len = AUG_SLOT_HDR + 4u * r->len;
			ops[k].local_mr = w->mr;
			ops[k].remote_addr = n->peers[d].arena.addr +
					     (uint64_t)r->line * AUG_LINE;
			ops[k].rkey = n->peers[d].arena.rkey;
			AUG_STAT_ADD(w->st.bytes_received, ops[k].len);
			k++;
			i++;
		}
		t->outstanding += k;
		rc = wk_post_all(w, w->dest[d].ep, ops, k);
		if (rc)
			return rc;
	}
	return 0;
}

/* Drive @t to completion: wait, validate, re-read torn or moved slots. */
static int ticket_run(struct augur_worker *w, struct aug_ticket *t)
{
	struct augur_node *n = w->node;
	uint32_t *redo = NULL, nredo, i;
	unsigned spins = 0, mspins = 0;
	uint64_t t0 = 0;
	int rc = 0, moved = 0;

	for (;;) {
		while (t->outstanding > 0) {
			int got = wk_poll(w);

			if (got < 0) {
				rc = got;
				goto out;
			}
			if (!got) {
				rc = wk_node_status(w);
				if (rc)
					goto out;
				wk_backoff(&spins);
			} else {
				spins = 0;
			}
		}
		if (t->status) {
			if (t->status == -AUGUR_EPEER_GONE ||
			    t->status == -AUGUR_EFLUSHED)
				rc = wk_verdict(w, -1, t->status);
			else
				rc = aug_fail(t->status, "remote read failed: %s",
					      augur_strerror(t->status));
			goto out;
		}
		nredo = 0;
		for (i = 0; i < t->nreads; i++) {
			struct aug_read *r = &t->reads[i];
			const struct aug_slot *img;
			int ok;

			if (!r->out)
				continue; /* done */
			img = (const void *)(t->stage + r->stage_off);
			ok = aug_slot_check(img, r->key, r->epoch, r->len);
			if (ok == 1) {
				memcpy(r->out, img->val, 4u * r->len);
				r->out = NULL;
				continue;
			}
			AUG_STAT_ADD(w->st.torn_retries, 1);
			if (++r->tries > 1000 && !t0)
				t0 = aug_now_ns();
			if (t0 && aug_now_ns() - t0 > 30000000000ull) {
				uint64_t l = aug_loc_get(n, r->key);

				rc = aug_fail(-EIO,
					      "key %u: no consistent read "
					      "after %u tries (reading node %u "
					      "line %u epoch %u, found key %u "
					      "epoch %u len %u; cached loc "
					      "node %u line %u epoch %u; home %u "
					      "said node %u line %u epoch %u)",
					      r->key, r->tries, r->dest,
					      r->line, r->epoch, img->key,
					      img->epoch, img->len,
					      aug_loc_owner(l), aug_loc_line(l),
					      aug_loc_epoch(l),
					      (uint32_t)(r->key % (uint64_t)n->size),
					      aug_loc_owner(*w->dir_buf),
					      aug_loc_line(*w->dir_buf),
					      aug_loc_epoch(*w->dir_buf));
				goto out;
			}
			if (ok < 0) {
				uint64_t loc = aug_loc_refresh(w, r->key);
				unsigned sp = 0;

				moved = 1;
				for (;;) {
					rc = wk_resolve(w, r->key, &loc);
					if (rc)
						goto out;
					if (aug_loc_owner(loc) !=
					    (uint32_t)n->rank)
						break;
					if (local_read(n, loc, r->key,
						       r->out) == 0)
						break;
					wk_backoff(&sp);
					loc = aug_loc_refresh(w, r->key);
				}
				if (aug_loc_owner(loc) == (uint32_t)n->rank) {
					r->out = NULL;
					continue;
				}
				r->dest = aug_loc_owner(loc);
				r->epoch = aug_loc_epoch(loc);
				r->line = aug_loc_line(loc);
			}
			if (!redo) {
				redo = malloc(t->nreads * sizeof(*redo));
				if (!redo) {
					rc = aug_fail(-ENOMEM, "out of memory");
					goto out;
				}
			}
			redo[nredo++] = i;
		}
		if (!nredo)
			break;
		if (moved)
			wk_backoff(&mspins); /* a key in transit: let it land */
		moved = 0;
		rc = post_reads(w, t, redo, nredo);
		if (rc)
			goto out;
	}
out:
	free(redo);
	t->nreads = 0;
	t->stage_used = 0;
	t->outstanding = 0;
	t->status = 0;
	return rc;
}

static int ticket_post(struct augur_worker *w, struct aug_ticket *t,
		       uint32_t from)
{
	uint32_t *idx, i;
	int rc;

	if (t->nreads == from)
		return 0;
	idx = malloc((t->nreads - from) * sizeof(*idx));
	if (!idx)
		return aug_fail(-ENOMEM, "out of memory");
	for (i = from; i < t->nreads; i++)
		idx[i - from] = i;
	rc = post_reads(w, t, idx, t->nreads - from);
	free(idx);
	return rc;
}

static int cmp_dest(const void *a, const void *b)
{
	const struct aug_read *x = a, *y = b;

	return (x->dest > y->dest) - (x->dest < y->dest);
}

/* Take a ticket slot for a pull that has remote keys. */
static int ticket_get(struct augur_worker *w, struct aug_ticket **out,
		      uint64_t *id_out)
{
	uint64_t id = ++w->ticket_seq;
	struct aug_ticket *t = &w->ticket[id % AUG_TICKETS];
	int rc;

	if (t->seq) {
		/* all tickets busy: finish the oldest one first */
		rc = ticket_run(w, t);
		t->seq = 0;
		if (rc)
			return rc;
	}
	t->seq = id;
	*out = t;
	*id_out = id;
	return 0;
}

int augur_pull_async(struct augur_worker *w, const uint64_t *keys, size_t cnt,
		     float *out, size_t out_len, augur_ticket_t *ticket)
{
	struct augur_node *n;
	struct aug_ticket *t = NULL;
	uint64_t id = 0;
	size_t i, off = 0;
	uint32_t posted = 0;
	int rc;

	rc = wk_enter(w);
	if (rc)
		return rc;
	n = w->node;
	if (!ticket || (cnt && !out))
		return aug_fail(-EINVAL, "NULL argument");
	rc = check_keys(n, keys, cnt, out_len);
	if (rc)
		return rc;
	for (i = 0; i < cnt; i++) {
		uint32_t key = (uint32_t)keys[i], len = aug_key_len(n, key);
		uint64_t loc = 0;
		struct aug_read *r;
		uint32_t bytes;

		/* our writes of the key still in flight land first, even
		 * when the key is local now: a push sent to its previous
		 * owner reaches us by forwarding (read your writes) */
		if (w->ndirty) {
			rc = dirty_settle(w, key);
			if (rc)
				goto fail;
		}
		rc = try_local(w, key, out + off, &loc);
		if (rc < 0)
			goto fail;
		if (rc == 1) {
			AUG_STAT_ADD(w->st.pulls_local, 1);
			off += len;
			continue;
		}
		if (!t) {
			rc = ticket_get(w, &t, &id);
			if (rc)
				return rc;
		}
		bytes = (uint32_t)round64(AUG_SLOT_HDR + 4u * len);
		if (t->nreads == AUG_READS_PER_TICKET ||
		    t->stage_used + bytes > AUG_STAGE_BYTES) {
			/* staging full: finish what we have, reuse it */
			rc = ticket_post(w, t, posted);
			if (!rc)
				rc = ticket_run(w, t);
			if (rc)
				goto fail;
			posted = 0;
		}
		r = &t->reads[t->nreads++];
		r->key = key;
		r->len = len;
		r->dest = aug_loc_owner(loc);
		r->epoch = aug_loc_epoch(loc);
		r->line = aug_loc_line(loc);
		r->stage_off = t->stage_used;
		r->tries = 0;
		r->out = out + off;
		t->stage_used += bytes;
		AUG_STAT_ADD(w->st.pulls_remote, 1);
		off += len;
	}
	*ticket = id; /* 0: everything was local, nothing to wait for */
	if (!t)
		return 0;
	/* group by destination so each gets one doorbell */
	if (t->nreads - posted > 1)
		qsort(t->reads + posted, t->nreads - posted, sizeof(*t->reads),
		      cmp_dest);
	rc = ticket_post(w, t, posted);
	if (rc)
		goto fail;
	return 0;
fail:
	if (t) {
		ticket_run(w, t);
		t->seq = 0;
	}
	return rc;
}

int augur_pull(struct augur_worker *w, const uint64_t *keys, size_t cnt,
	       float *out, size_t out_len)
{
	augur_ticket_t t;
	int rc = augur_pull_async(w, keys, cnt, out, out_len, &t);

	return rc ? rc : augur_wait(w, t);
}

int augur_wait(struct augur_worker *w, augur_ticket_t id)
{
	struct aug_ticket *t;
	int rc;

	rc = wk_enter(w);
	if (rc)
		return rc;
	if (id & PUSH_TICKET)
		return wk_flush_all(w);
	if (!id)
		return 0; /* a pull that was all local */
	if (id > w->ticket_seq)
		return aug_fail(-EINVAL, "unknown ticket %llu",
				(unsigned long long)id);
	t = ticket_by_id(w, id);
	if (!t)
		return 0; /* already completed */
	rc = ticket_run(w, t);
	t->seq = 0;
	return rc;
}

/* --- pushes and sets ------------------------------------------------------ */

/* Add @d to a replica's value and to its delta (under its lock). */
static void replica_add(struct aug_slot *s, const float *d, uint32_t len)
{
	uint32_t i;

	for (i = 0; i < len; i++) {
#ifdef AUG_TSAN
		/* seqlock readers (also stale ones, of another key's slot
		 * that was here) may be copying */
		aug_st_relaxed(&s->val[i], aug_ld_relaxed(&s->val[i]) + d[i]);
		aug_st_relaxed(&s->val[len + i],
			       aug_ld_relaxed(&s->val[len + i]) + d[i]);
#else
		s->val[i] += d[i];
		s->val[len + i] += d[i];
#endif
	}
}

static int update_one(struct augur_worker *w, uint32_t key, uint32_t len,
		      const float *v, uint16_t op)
{
	struct augur_node *n = w->node;
	unsigned sp = 0;
	int rc;

	for (;;) {
		uint64_t loc = aug_loc_get(n, key);
		uint32_t owner = aug_loc_owner(loc);
		struct aug_slot *s;
		uint64_t ver;

		if (owner == (uint32_t)n->rank &&
		    aug_loc_line(loc) == AUG_LINE_UNKNOWN) {
			wk_backoff(&sp); /* moving in */
			continue;
		}
		if (owner == (uint32_t)n->rank) {
			s = aug_local_slot(n, loc);
			ver = aug_slot_lock(s);
			if (s->key != key) { /* moved away just now */
				aug_slot_unlock(s, ver);
				wk_backoff(&sp);
				aug_loc_refresh(w, key);
				continue;
			}
			if (op == AUG_OP_PUSH)
				aug_slot_add(s, v);
			else
				aug_slot_put(s, v);
			aug_slot_unlock(s, ver);
			AUG_STAT_ADD(w->st.pushes_local, 1);
			return 0;
		}
		if (op == AUG_OP_PUSH && (s = replica_of(w, key)) != NULL) {
			ver = aug_slot_lock(s);
			if (s->key == key && (s->flags & AUG_SLOT_REPLICA)) {
				replica_add(s, v, len);
				s->flags |= AUG_SLOT_DELTA;
				aug_slot_unlock_nosum(s, ver);
				AUG_STAT_ADD(w->st.pushes_local, 1);
				return 0;
			}
			aug_slot_unlock_nosum(s, ver);
		}
		if (w->ndirty > AUG_DIRTY_SLOTS / 2) {
			rc = wk_sync_all(w);
			if (rc)
				return rc;
		}
		rc = wk_append(w, (int)owner, op, key, v, len);
		if (rc)
			return rc;
		AUG_STAT_ADD(w->st.pushes_remote, 1);
		return 0;
	}
}

static int update(struct augur_worker *w, const uint64_t *keys, size_t cnt,
		  const float *vals, size_t vals_len, uint16_t op)
{
	struct augur_node *n;
	size_t i, off = 0;
	int rc;

	rc = wk_enter(w);
	if (rc)
		return rc;
	n = w->node;
	if (cnt && !vals)
		return aug_fail(-EINVAL, "values are NULL");
	rc = check_keys(n, keys, cnt, vals_len);
	if (rc)
		return rc;
	for (i = 0; i < cnt; i++) {
		uint32_t key = (uint32_t)keys[i], len = aug_key_len(n, key);

		rc = update_one(w, key, len, vals + off, op);
		if (rc)
			return rc;
		off += len;
	}
	return 0;
}

int augur_push(struct augur_worker *w, const uint64_t *keys, size_t cnt,
	       const float *deltas, size_t deltas_len)
{
	return update(w, keys, cnt, deltas, deltas_len, AUG_OP_PUSH);
}

int augur_push_async(struct augur_worker *w, const uint64_t *keys, size_t cnt,
		     const float *deltas, size_t deltas_len,
		     augur_ticket_t *ticket)
{
	int rc;

	if (!ticket)
		return aug_fail(-EINVAL, "NULL ticket");
	rc = update(w, keys, cnt, deltas, deltas_len, AUG_OP_PUSH);
	if (!rc)
		*ticket = PUSH_TICKET | ++w->ticket_seq;
	return rc;
}

int augur_set(struct augur_worker *w, const uint64_t *keys, size_t cnt,
	      const float *values, size_t values_len)
{
	return update(w, keys, cnt, values, values_len, AUG_OP_SET);
}

/* Flush and wait until every destination applied all our messages. */
static int wk_sync_all(struct augur_worker *w)
{
	int d, rc;

	rc = wk_flush_all(w);
	if (rc)
		return rc;
	for (d = 0; d < w->node->size; d++) {
		if (d == w->node->rank)
			continue;
		rc = wk_wait_applied(w, d, w->dest[d].msgs);
		if (rc)
			return rc;
	}
	/* replicas here may predate what was just applied: one sync round
	 * that starts now pushes their deltas and refreshes them */
	rc = aug_adapt_wait_round(w);
	if (rc)
		return rc;
	memset(w->dirty, 0, AUG_DIRTY_SLOTS * sizeof(*w->dirty));
	w->ndirty = 0;
	return 0;
}

int augur_wait_sync(struct augur_worker *w)
{
	int rc = wk_enter(w);

	return rc ? rc : wk_sync_all(w);
}

/* --- barrier -------------------------------------------------------------- */

int augur_barrier(struct augur_worker *w)
{
	struct augur_node *n;
	uint64_t b, total;
	unsigned spins = 0;
	int rc;

	rc = wk_enter(w);
	if (rc)
		return rc;
	n = w->node;
	rc = wk_flush_all(w);
	if (rc)
		return rc;
	b = (w->barriers & ~(1ull << 63)) + 1;
	w->barriers = b;
	total = (uint64_t)n->size * n->nworkers;
	if (n->rank == 0) {
		aug_store_release(&n->ctrl[w->gid], b);
	} else {
		struct auv_op op;

		memset(&op, 0, sizeof(op));
		op.opcode = AUV_OP_WRITE;
		op.flags = AUV_OP_SIGNALED;
		op.cookie = COOKIE_WRITE;
		op.local = &b;
		op.len = 8;
		op.remote_addr = n->peers[0].ctrl.addr + (uint64_t)w->gid * 8;
		op.rkey = n->peers[0].ctrl.rkey;
		rc = wk_post_all(w, w->dest[0].ep, &op, 1);
		if (rc)
			return rc;
	}
	for (;;) {
		uint64_t i, low = UINT64_MAX;

		if (n->rank == 0) {
			for (i = 0; i < total; i++) {
				uint64_t v = aug_load_acquire(&n->ctrl[i]);
				low = v < low ? v : low;
			}
		} else {
			struct auv_op op;

			memset(&op, 0, sizeof(op));
			op.opcode = AUV_OP_READ;
			op.flags = AUV_OP_SIGNALED;
			op.cookie = COOKIE_BARRIER;
			op.local = w->bar_buf;
			op.len = (uint32_t)(total * 8);
			op.local_mr = w->mr;
			op.remote_addr = n->peers[0].ctrl.addr;
			op.rkey = n->peers[0].ctrl.rkey;
			w->barriers &= ~(1ull << 63);
			rc = wk_post_all(w, w->dest[0].ep, &op, 1);
			if (rc)
				return rc;
			while (!(w->barriers & (1ull << 63))) {
				wk_poll(w);
				rc = wk_node_status(w);
				if (rc)
					return rc;
			}
			w->barriers &= ~(1ull << 63);
			for (i = 0; i < total; i++) {
				uint64_t v = __atomic_load_n(&w->bar_buf[i],
							     __ATOMIC_RELAXED);
				low = v < low ? v : low;
			}
		}
		if (low >= b)
			return aug_adapt_wait_round(w); /* refresh replicas */
		rc = wk_node_status(w);
		if (rc)
			return rc;
		wk_backoff(&spins);
	}
}

/* --- clocks, intents, lifetime -------------------------------------------- */

int augur_advance_clock(struct augur_worker *w)
{
	int rc = wk_enter(w);

	if (rc)
		return rc;
	w->clock++;
	if (aug_adaptive(w->node)) {
		struct aug_intent e = { 0, AUG_INTENT_CLOCK, w->clock, 0 };
		unsigned sp = 0;

		while (!aug_iring_enqueue(&w->iring, &e, 1)) {
			rc = wk_node_status(w);
			if (rc)
				return rc;
			wk_backoff(&sp);
		}
	}
	return wk_flush_all(w);
}

int64_t augur_current_clock(const struct augur_worker *w)
{
	return w ? w->clock : -EINVAL;
}

int augur_intent(struct augur_worker *w, const uint64_t *keys, size_t cnt,
		 int64_t start, int64_t end)
{
	int rc = wk_enter(w);

	if (rc)
		return rc;
	if (end < start)
		return aug_fail(-EINVAL, "intent ends (%lld) before it starts "
					 "(%lld)",
				(long long)end, (long long)start);
	rc = check_keys(w->node, keys, cnt, (size_t)-1);
	if (rc)
		return rc;
	AUG_STAT_ADD(w->st.intents, cnt);
	if (aug_adaptive(w->node) && end > start) {
		struct aug_intent e[64];
		size_t i = 0;
		unsigned sp = 0;

		while (i < cnt) {
			uint32_t k = 0, put;

			while (k < 64 && i + k < cnt) {
				e[k].key = (uint32_t)keys[i + k];
				e[k].kind = AUG_INTENT_KEY;
				e[k].start = start;
				e[k].end = end;
				k++;
			}
			put = aug_iring_enqueue(&w->iring, e, k);
			i += put;
			if (put < k) {
				/* full: the planner drains it every pass */
				AUG_STAT_ADD(w->st.intent_waits, 1);
				rc = wk_node_status(w);
				if (rc)
					return rc;
				wk_backoff(&sp);
			}
		}
	}
	return 0;
}

int augur_worker_id(const struct augur_worker *w)
{
	return w->gid;
}

int augur_worker_create(struct augur_node *n, struct augur_worker **out)
{
	uint32_t i;
	int st;

	if (!n || !out)
		return aug_fail(-EINVAL, "NULL argument");
	*out = NULL;
	pthread_mutex_lock(&n->lock);
	if (n->stopped) {
		pthread_mutex_unlock(&n->lock);
		return aug_fail(-AUGUR_ESHUTDOWN, "node stopped");
	}
	st = atomic_load(&n->status);
	if (st) {
		pthread_mutex_unlock(&n->lock);
		return aug_fail(st, "%s", n->errbuf);
	}
	for (i = 0; i < n->nworkers; i++) {
		if (!n->worker[i].in_use) {
			n->worker[i].in_use = 1;
			*out = &n->worker[i];
			pthread_mutex_unlock(&n->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&n->lock);
	return aug_fail(-EBUSY, "all %u worker handles are in use",
			n->nworkers);
}

void augur_worker_destroy(struct augur_worker *w)
{
	int t;

	if (!w || !w->node || !w->in_use)
		return;
	for (t = 0; t < AUG_TICKETS; t++)
		if (w->ticket[t].seq) {
			ticket_run(w, &w->ticket[t]);
			w->ticket[t].seq = 0;
		}
	if (!atomic_load(&w->node->status))
		wk_sync_all(w);
	pthread_mutex_lock(&w->node->lock);
	w->in_use = 0;
	pthread_mutex_unlock(&w->node->lock);
}
