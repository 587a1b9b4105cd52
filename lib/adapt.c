// SPDX-License-Identifier: MIT
/*
 * lib/adapt.c - adaptive parameter management: the planner, the
 * node-to-node channel, relocation hand-offs with forwarding, replicas and
 * their sync rounds.  Everything here runs on the progress thread except
 * aug_adapt_wait_round().  docs/adaptive.md explains the protocol; the
 * short version:
 *
 *   Planner.  Workers enqueue intents and clock advances into their intent
 *   rings (lib/intent.h).  Per worker the planner keeps the clock and its
 *   rate; an intent becomes actionable `lead` clocks before its start
 *   (lead = rate x AUG_LEAD_S, AdaPM's action timing) and ends at its end.
 *   Per key it counts actionable local intents; 0->1 tells the owner WANT,
 *   1->0 tells it UNWANT (and drops a local replica).
 *
 *   Owner decisions (the owner knows its own intents and who sent WANT):
 *   wanted by exactly one other node and not by the owner, with no
 *   replicas: relocate there; wanted by others: GRANT replicas; nobody:
 *   leave it.  Modes switch either half off.
 *
 *   Relocation O -> X.  O locks the slot, copies the value, invalidates the
 *   slot (key = none: readers re-resolve), points loc[k] at X with a new
 *   epoch and an unknown line, and sends HANDOFF.  X installs the value,
 *   sets loc[k], and sends INSTALLED to the home (whose loc[] is the
 *   directory, READable by everyone) and to O.  Pushes that still reach O
 *   are forwarded; a message whose entries were forwarded has its credit
 *   held until every forward is acknowledged (MARK/ACK tokens), so a
 *   sender's read-your-writes wait stays exact.
 *
 *   Replicas at Y.  GRANT -> one READ of the owner's slot -> a local slot
 *   holding the value and, behind it, a delta buffer.  Local pushes add to
 *   both.  A sync round swaps each delta out, sends it (SYNC), waits for
 *   the owner's ack (applied), READs the owner's value V, and sets the
 *   replica to V + the delta gathered since the swap: nothing lost, nothing
 *   counted twice.  A replica whose intents ended is DROPPING: rounds flush
 *   it until its delta stays empty, then it is invalidated and the owner
 *   told (DROP).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "planner.h"

#define AUG_LEAD_S 0.002          /* act this long before an intent starts */
#define AUG_ROUND_NS 1000000ull   /* at most one sync round per ms idle */
#define AUG_ROUND_IDLE 3ull       /* ... and idle 3x the last round's time */
#define AUG_CTL_MAGIC 0x4c544341u /* "ACTL" */

/* completion cookies of this module (bits 56..63) */
#define CK_MASK (0xffull << 56)
#define CK_LRECV (0xa1ull << 56)
#define CK_LSEND (0xa2ull << 56)
#define CK_READ (0xa3ull << 56)

enum {
	R_WANT = 1,
	R_UNWANT,
	R_HANDOFF,
	R_INSTALLED,
	R_FWD,
	R_MARK,
	R_ACK,
	R_GRANT,
	R_SYNC,
	R_DROP,
};

enum { AUG_HOLD_CREDIT = 1, AUG_HOLD_ACK };

struct ctl_hdr {
	uint32_t magic;
	uint16_t from;
	uint16_t count;
	uint32_t bytes;
	uint32_t pad;
};

struct ctl_rec {
	uint16_t type;
	uint16_t len; /* floats that follow */
	uint32_t key;
	uint32_t epoch;
	uint32_t aux;
	uint64_t arg;
};

static uint32_t rec_bytes(uint32_t len)
{
	return (uint32_t)sizeof(struct ctl_rec) + ((4u * len + 7u) & ~7u);
}

/* A READ the progress thread has in flight (replica install or refresh). */
struct rread {
	uint32_t key;
	uint32_t len;
	uint32_t stage_off;
	int owner;
	uint32_t line;
	uint32_t epoch;
	int install; /* 1: install, 0: refresh */
	int done;
};

struct aug_adapt {
	struct aug_planner pl; /* action timing, lib/planner.c */
	int mode;
	uint32_t max_len; /* floats a key may have to move or replicate */
	/* slot allocator for relocated keys and replicas */
	size_t bump, end;
	struct {
		uint32_t bytes;
		uint32_t n, cap;
		uint32_t *lines;
	} fl[16];
	int nfl;
	/* READ staging */
	struct auv_mr *stage_mr;
	uint8_t *stage;
	size_t stage_bytes;
	struct rread *rr;
	uint32_t nrr, caprr, rr_pending;
	/* replica keys (LIVE, INSTALLING or DROPPING) */
	uint32_t *rkeys;
	uint32_t nrkeys, caprkeys;
	/* sync round */
	int round_phase; /* 0 idle, 1 waiting for acks, 2 reads */
	int round_acks;
	uint32_t round_pos; /* next replica key to READ in phase 2 */
	uint64_t next_round_ns;
	uint64_t round_t0; /* when the current round started */
	struct aug_hold *free_holds;
	float *tmp; /* scratch value */
};

/* --- small helpers ---------------------------------------------------- */

/* AUGUR_TRACE=DIR: each node appends its ownership events to DIR/adapt.N
 * (debugging aid; off by default). */
static FILE *trace_f;
#define TRACE(n, fmt, ...)                                                     \
	do {                                                                   \
		if (trace_f)                                                   \
			fprintf(trace_f, fmt "\n", ##__VA_ARGS__);            \
	} while (0)


static int serial_newer(uint32_t a, uint32_t b)
{
	return aug_epoch_newer(a, b);
}

static uint32_t next_epoch(uint32_t e)
{
	e = (e + 1) & AUG_EPOCH_MASK;
	return e ? e : 1;
}

static uint64_t bit(int r)
{
	return 1ull << r;
}

/* --- slot allocator (extra area of the arena) -------------------------- */

static uint32_t slot_alloc(struct augur_node *n, uint32_t bytes)
{
	struct aug_adapt *a = n->ad;
	int i;

	for (i = 0; i < a->nfl; i++)
		if (a->fl[i].bytes == bytes && a->fl[i].n)
			return a->fl[i].lines[--a->fl[i].n];
	if (a->bump + bytes > a->end)
		return AUG_LINE_UNKNOWN;
	a->bump += bytes;
	return (uint32_t)((a->bump - bytes) / AUG_LINE);
}

static void slot_free(struct augur_node *n, uint32_t line, uint32_t bytes)
{
	struct aug_adapt *a = n->ad;
	int i;

	/* A homed slot stays reserved for its key: a key can always go home
	 * (see the HANDOFF handler), so hand-offs never bounce for ever. */
	if ((size_t)line * AUG_LINE < n->homed_bytes)
		return;
	for (i = 0; i < a->nfl; i++)
		if (a->fl[i].bytes == bytes)
			break;
	if (i == a->nfl) {
		if (a->nfl == 16)
			return; /* leak the slot rather than fail */
		a->fl[a->nfl].bytes = bytes;
		a->nfl++;
	}
	if (a->fl[i].n == a->fl[i].cap) {
		uint32_t cap = a->fl[i].cap ? a->fl[i].cap * 2 : 64;
		uint32_t *l = realloc(a->fl[i].lines, cap * sizeof(*l));
		if (!l)
			return;
		a->fl[i].lines = l;
		a->fl[i].cap = cap;
	}
	a->fl[i].lines[a->fl[i].n++] = line;
}

/* --- the node-to-node channel ------------------------------------------ */

static void link_seal(struct aug_link *l)
{
	struct ctl_hdr *h = (struct ctl_hdr *)(void *)l->open;
	struct aug_ctlmsg *m;

	if (l->open_len <= sizeof(*h))
		return;
	h->magic = AUG_CTL_MAGIC;
	h->bytes = l->open_len;
	m = malloc(sizeof(*m) + l->open_len);
	if (!m)
		return; /* out of memory: keep it open, retry later */
	m->next = NULL;
	m->len = l->open_len;
	memcpy(m->data, l->open, l->open_len);
	*l->backlog_tail = m;
	l->backlog_tail = &m->next;
	l->open_len = sizeof(*h);
	h->count = 0;
}

static void link_put(struct augur_node *n, int rank, uint16_t type,
		     uint32_t key, uint32_t epoch, uint32_t aux, uint64_t arg,
		     const float *v, uint32_t len)
{
	struct aug_link *l = &n->link[rank];
	struct ctl_hdr *h = (struct ctl_hdr *)(void *)l->open;
	uint32_t need = rec_bytes(len);
	struct ctl_rec *r;

	if (l->open_len + need > AUG_CTL_MAX)
		link_seal(l);
	r = (struct ctl_rec *)(void *)(l->open + l->open_len);
	r->type = type;
	r->len = (uint16_t)len;
	r->key = key;
	r->epoch = epoch;
	r->aux = aux;
	r->arg = arg;
	if (len)
		memcpy(r + 1, v, 4u * len);
	l->open_len += need;
	h->from = (uint16_t)n->rank;
	h->count++;
}

/* Ask @rank to acknowledge everything sent so far; returns the token. */
static uint64_t link_mark(struct augur_node *n, int rank)
{
	struct aug_link *l = &n->link[rank];
	uint64_t t = ++l->next_token;

	link_put(n, rank, R_MARK, 0, 0, 0, t, NULL, 0);
	return t;
}

static int link_wait(struct augur_node *n, int rank, uint64_t token,
		     struct aug_hold *hold)
{
	struct aug_link *l = &n->link[rank];

	if (l->nwaits == l->capwaits) {
		uint32_t cap = l->capwaits ? l->capwaits * 2 : 64;
		struct aug_wait *w = realloc(l->waits, cap * sizeof(*w));
		if (!w)
			return -ENOMEM;
		l->waits = w;
		l->capwaits = cap;
	}
	l->waits[l->nwaits].token = token;
	l->waits[l->nwaits].hold = hold;
	l->nwaits++;
	return 0;
}

static int link_flush(struct augur_node *n, int rank)
{
	struct aug_link *l = &n->link[rank];
	int work = 0;

	link_seal(l);
	while (l->backlog) {
		struct aug_ctlmsg *m = l->backlog;
		struct auv_op op;
		int b, rc;

		if (l->sbuf_busy == (uint32_t)((1ull << AUG_LINK_SBUFS) - 1))
			break;
		b = __builtin_ctz(~l->sbuf_busy);
		memcpy(l->sbuf + (size_t)b * AUG_CTL_MAX, m->data, m->len);
		memset(&op, 0, sizeof(op));
		op.opcode = AUV_OP_SEND;
		op.flags = AUV_OP_SIGNALED;
		op.cookie = CK_LSEND | (uint64_t)rank << 8 | (uint64_t)b;
		op.local = l->sbuf + (size_t)b * AUG_CTL_MAX;
		op.len = m->len;
		op.local_mr = n->link_mr;
		rc = auv_post(l->ep, &op, 1);
		if (rc != 1) {
			if (rc < 0)
				aug_node_suspect(n, rank, rc);
			break;
		}
		l->sbuf_busy |= 1u << b;
		l->backlog = m->next;
		if (!l->backlog)
			l->backlog_tail = &l->backlog;
		free(m);
		work++;
	}
	return work;
}

/* --- holds: credits and acks that wait for other acks -------------------- */

static struct aug_hold *hold_new(struct augur_node *n, int kind)
{
	struct aug_adapt *a = n->ad;
	struct aug_hold *h = a->free_holds;

	if (h)
		a->free_holds = h->next_free;
	else
		h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	memset(h, 0, sizeof(*h));
	h->kind = kind;
	return h;
}

static void hold_fire(struct augur_node *n, struct aug_hold *h)
{
	if (h->kind == AUG_HOLD_CREDIT) {
		h->ring->held--;
		h->ring->dirty = 1;
	} else {
		link_put(n, h->link, R_ACK, 0, 0, 0, h->token, NULL, 0);
	}
	h->next_free = n->ad->free_holds;
	n->ad->free_holds = h;
}

/*
 * After handling records that were forwarded: make @h wait until every
 * link in @links acknowledged a MARK sent now, i.e. until those forwards
 * are applied wherever they went (the peer's ACK waits in turn for its
 * own forwards of our records).  Fires at once if @links is empty.  The
 * links are those the forwards of *these* records went to, not whatever
 * else was forwarded meanwhile: a hold that waited for unrelated
 * forwards could wait in a cycle (two nodes bouncing a key), and one that
 * consumed another's pending forwards let that one fire early (read your
 * writes broken across a double forward; store_invariants part 4).
 */
static void hold_on_forwards(struct augur_node *n, struct aug_hold *h,
			     uint64_t links)
{
	h->waits = 1; /* guard while attaching */
	for (; links; links &= links - 1) {
		int r = __builtin_ctzll(links);

		if (link_wait(n, r, link_mark(n, r), h) == 0)
			h->waits++;
	}
	if (--h->waits == 0)
		hold_fire(n, h);
}

static void on_ack(struct augur_node *n, int rank, uint64_t token)
{
	struct aug_link *l = &n->link[rank];
	uint32_t i, k = 0;

	if (token > l->acked)
		l->acked = token;
	/* exactly that MARK's waiter: the peer's holds fire in any order,
	 * so an ACK says nothing about earlier MARKs */
	for (i = 0; i < l->nwaits; i++) {
		struct aug_wait *w = &l->waits[i];

		if (w->token != token) {
			l->waits[k++] = *w;
			continue;
		}
		if (!w->hold) {
			n->ad->round_acks--;
		} else if (--w->hold->waits == 0) {
			hold_fire(n, w->hold);
		}
	}
	l->nwaits = k;
}

/* --- forwarding ---------------------------------------------------------- */

static int forward_to(struct augur_node *n, uint32_t key)
{
	return (int)aug_loc_owner(aug_loc_get(n, key));
}

/* Forward a worker's entry for a key that moved; returns the rank it went
 * to, or -1 if not forwarded. */
int aug_adapt_forward(struct augur_node *n, struct aug_inring *r,
		      uint32_t key, uint16_t op, const float *v, uint32_t len)
{
	int to = forward_to(n, key);

	(void)r;
	if (to == n->rank || to >= n->size)
		return -1;
	link_put(n, to, R_FWD, key, 0, op, 0, v, len);
	AUG_STAT_ADD(n->forwards, 1);
	return to;
}

/* Hold @r's credit until the forwards to @links are applied. */
void aug_adapt_hold_credit(struct augur_node *n, struct aug_inring *r,
			   uint64_t links)
{
	struct aug_hold *h = hold_new(n, AUG_HOLD_CREDIT);

	if (!h)
		return;
	h->ring = r;
	r->held++;
	hold_on_forwards(n, h, links);
}

/* Apply a push or set to a key this node owns (progress thread). */
static void apply_owned(struct augur_node *n, uint32_t key, uint16_t op,
			const float *v)
{
	struct aug_slot *s = aug_local_slot(n, aug_loc_get(n, key));
	uint64_t ver = aug_slot_lock(s);

	if (op == AUG_OP_SET)
		aug_slot_put(s, v);
	else
		aug_slot_add(s, v);
	aug_slot_unlock(s, ver);
	AUG_STAT_ADD(n->applied, 1);
}

/* --- owner decisions, relocation ----------------------------------------- */

static void relocate(struct augur_node *n, uint32_t key, int to)
{
	struct aug_adapt *a = n->ad;
	uint64_t loc = aug_loc_get(n, key);
	struct aug_slot *s = aug_local_slot(n, loc);
	uint32_t len = s->len, ne = next_epoch(aug_loc_epoch(loc));
	uint64_t ver = aug_slot_lock(s);
	struct aug_kstate *ks = &n->ks[key];

	memcpy(a->tmp, s->val, 4u * len);
	__atomic_store_n(&s->key, UINT32_MAX, __ATOMIC_RELAXED); /* readers: moved, re-resolve */
	__atomic_store_n(&s->epoch, 0, __ATOMIC_RELAXED);
	aug_slot_unlock(s, ver);
	__atomic_store_n(&n->loc[key], aug_loc_pack((uint32_t)to, ne,
						    AUG_LINE_UNKNOWN),
			 __ATOMIC_RELEASE);
	slot_free(n, aug_loc_line(loc), aug_slot_bytes(len));
	link_put(n, to, R_HANDOFF, key, ne, 0, ks->wantset, a->tmp, len);
	ks->wantset = 0;
	ks->repset = 0;
	TRACE(n, "reloc %u e%u -> %d (freed line %u)", key, ne, to,
	      aug_loc_line(loc));
	AUG_STAT_ADD(n->relocations, 1);
}

static void decide(struct augur_node *n, uint32_t key)
{
	struct aug_kstate *ks = &n->ks[key];
	uint64_t loc = aug_loc_get(n, key), g;
	struct aug_decision d;

	if (aug_loc_owner(loc) != (uint32_t)n->rank ||
	    aug_key_len(n, key) > n->ad->max_len)
		return;
	d = aug_decide(n->ad->mode, n->rank, ks->wantset, ks->repset);
	if (d.act == AUG_ACT_RELOCATE) {
		relocate(n, key, d.to);
		return;
	}
	for (g = d.grant; g; g &= g - 1) {
		int y = __builtin_ctzll(g);

		ks->repset |= bit(y);
		link_put(n, y, R_GRANT, key, aug_loc_epoch(loc),
			 aug_loc_line(loc), (uint64_t)n->rank, NULL, 0);
	}
}

/* --- replicas ------------------------------------------------------------ */

/* rkeys lists the keys with a replica here; entries of dropped replicas
 * are removed only when a round starts (compaction), so the list never
 * shifts under a round that walks it.  ks->pad says "listed". */
static void rkeys_add(struct augur_node *n, uint32_t key)
{
	struct aug_adapt *a = n->ad;

	if (n->ks[key].pad)
		return;
	if (a->nrkeys == a->caprkeys) {
		uint32_t cap = a->caprkeys ? a->caprkeys * 2 : 256;
		uint32_t *k = realloc(a->rkeys, cap * sizeof(*k));
		if (!k)
			return;
		a->rkeys = k;
		a->caprkeys = cap;
	}
	a->rkeys[a->nrkeys++] = key;
	n->ks[key].pad = 1;
}

static void rkeys_compact(struct augur_node *n)
{
	struct aug_adapt *a = n->ad;
	uint32_t i, k = 0;

	for (i = 0; i < a->nrkeys; i++) {
		uint32_t key = a->rkeys[i];

		if (n->ks[key].rep_state == AUG_REP_NONE)
			n->ks[key].pad = 0;
		else
			a->rkeys[k++] = key;
	}
	a->nrkeys = k;
}

static int post_read(struct augur_node *n, uint32_t key, int owner,
		     uint32_t line, uint32_t epoch, int install)
{
	struct aug_adapt *a = n->ad;
	uint32_t len = aug_key_len(n, key), bytes = aug_slot_bytes(len);
	struct rread *rr;
	struct auv_op op;
	uint32_t idx, off;
	int rc;

	/* staging: one slot image per outstanding read, reused in order */
	if (a->nrr == a->caprr) {
		uint32_t cap = a->caprr ? a->caprr * 2 : 256;
		struct rread *p = realloc(a->rr, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		a->rr = p;
		a->caprr = cap;
	}
	off = a->nrr ? a->rr[a->nrr - 1].stage_off +
			       aug_slot_bytes(a->rr[a->nrr - 1].len)
		     : 0;
	if (off + bytes > a->stage_bytes)
		return -ENOSPC;
	idx = a->nrr++;
	rr = &a->rr[idx];
	rr->key = key;
	rr->len = len;
	rr->stage_off = off;
	rr->owner = owner;
	rr->line = line;
	rr->epoch = epoch;
	rr->install = install;
	rr->done = 0;
	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_READ;
	op.flags = AUV_OP_SIGNALED;
	op.cookie = CK_READ | idx;
	op.local = a->stage + off;
	op.len = AUG_SLOT_HDR + 4u * len;
	op.local_mr = a->stage_mr;
	op.remote_addr = n->peers[owner].arena.addr + (uint64_t)line * AUG_LINE;
	op.rkey = n->peers[owner].arena.rkey;
	rc = auv_post(n->link[owner].ep, &op, 1);
	if (rc != 1) {
		a->nrr--;
		return rc < 0 ? rc : -EAGAIN;
	}
	a->rr_pending++;
	return 0;
}

static void repost_read(struct augur_node *n, uint32_t idx)
{
	struct aug_adapt *a = n->ad;
	struct rread *rr = &a->rr[idx];
	struct auv_op op;

	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_READ;
	op.flags = AUV_OP_SIGNALED;
	op.cookie = CK_READ | idx;
	op.local = a->stage + rr->stage_off;
	op.len = AUG_SLOT_HDR + 4u * rr->len;
	op.local_mr = a->stage_mr;
	op.remote_addr = n->peers[rr->owner].arena.addr +
			 (uint64_t)rr->line * AUG_LINE;
	op.rkey = n->peers[rr->owner].arena.rkey;
	if (auv_post(n->link[rr->owner].ep, &op, 1) == 1)
		a->rr_pending++;
	else
		rr->done = 2; /* give up this one; next round retries */
}

/* Invalidate and free a replica; caller holds nothing. */
static void replica_free(struct augur_node *n, uint32_t key)
{
	struct aug_kstate *ks = &n->ks[key];
	uint32_t len = aug_key_len(n, key);
	struct aug_slot *s = (struct aug_slot *)(n->arena +
						 (size_t)ks->rep_line * AUG_LINE);
	uint64_t ver = aug_slot_lock(s);

	__atomic_store_n(&s->key, UINT32_MAX, __ATOMIC_RELAXED);
	s->flags = 0;
	aug_slot_unlock_nosum(s, ver);
	__atomic_store_n(&ks->rep_state, AUG_REP_NONE, __ATOMIC_RELEASE);
	slot_free(n, ks->rep_line, aug_slot_bytes(2 * len));
}

static void read_done(struct augur_node *n, uint32_t idx, int status)
{
	struct aug_adapt *a = n->ad;
	struct rread *rr = &a->rr[idx];
	struct aug_kstate *ks = &n->ks[rr->key];
	const struct aug_slot *img = (const void *)(a->stage + rr->stage_off);
	struct aug_slot *s;
	uint64_t ver;
	uint32_t i;
	int ok;

	a->rr_pending--;
	if (status) {
		rr->done = 2;
		return;
	}
	ok = aug_slot_check(img, rr->key, rr->epoch, rr->len);
	if (ok == 0) { /* torn: read again */
		repost_read(n, idx);
		return;
	}
	rr->done = 1;
	if (ok < 0) /* the owner's slot moved: give the replica up */
		return;
	if (rr->install) {
		uint32_t line = slot_alloc(n, aug_slot_bytes(2 * rr->len));

		if (line == AUG_LINE_UNKNOWN) {
			/* no room: decline the grant */
			__atomic_store_n(&ks->rep_state, AUG_REP_NONE, __ATOMIC_RELEASE);
			link_put(n, rr->owner, R_DROP, rr->key, 0, 0,
				 (uint64_t)n->rank, NULL, 0);
			return;
		}
		s = (struct aug_slot *)(n->arena + (size_t)line * AUG_LINE);
		ver = aug_slot_lock(s);
		__atomic_store_n(&s->key, rr->key, __ATOMIC_RELAXED);
		__atomic_store_n(&s->epoch, rr->epoch, __ATOMIC_RELAXED);
		s->len = rr->len;
		s->flags = AUG_SLOT_REPLICA;
		aug_slot_put(s, img->val);
		aug_slot_zero(s->val + rr->len, rr->len); /* the delta */
		aug_slot_unlock_nosum(s, ver);
		/* published by the release store of rep_state below */
		__atomic_store_n(&ks->rep_line, line, __ATOMIC_RELAXED);
		ks->rep_owner = (uint32_t)rr->owner;
		ks->rep_oline = rr->line;
		ks->rep_epoch = rr->epoch;
		__atomic_store_n(&ks->rep_state,
				 aug_planner_wanted(&n->ad->pl, rr->key) ? AUG_REP_LIVE : AUG_REP_DROPPING,
				 __ATOMIC_RELEASE);
		rkeys_add(n, rr->key);
		AUG_STAT_ADD(n->replicas_installed, 1);
		return;
	}
	/* refresh: replica = owner's value + what was pushed since the swap */
	s = (struct aug_slot *)(n->arena + (size_t)ks->rep_line * AUG_LINE);
	ver = aug_slot_lock(s);
	if (ks->rep_state == AUG_REP_DROPPING) {
		if (!(s->flags & AUG_SLOT_DELTA)) {
			/* nothing pushed since the swap: invalidate in the
			 * same critical section (a push after this goes to
			 * the owner, none is lost) */
			__atomic_store_n(&s->key, UINT32_MAX, __ATOMIC_RELAXED);
			s->flags = 0;
			aug_slot_unlock_nosum(s, ver);
			replica_free(n, rr->key);
			link_put(n, rr->owner, R_DROP, rr->key, 0, 0,
				 (uint64_t)n->rank, NULL, 0);
			return;
		}
	}
	if (s->flags & AUG_SLOT_DELTA) {
		for (i = 0; i < rr->len; i++)
			a->tmp[i] = img->val[i] + s->val[rr->len + i];
		aug_slot_put(s, a->tmp);
	} else {
		aug_slot_put(s, img->val);
	}
	aug_slot_unlock_nosum(s, ver);
}

/* Start a sync round: swap deltas out and send them, then READ. */
static void round_start(struct augur_node *n)
{
	struct aug_adapt *a = n->ad;
	uint64_t sent = 0; /* owners sent a SYNC: wait for their acks */
	uint32_t i, j;
	int r;

	__atomic_store_n(&n->round_started, n->round_started + 1,
			 __ATOMIC_RELEASE);
	a->round_t0 = aug_now_ns();
	a->round_acks = 0;
	rkeys_compact(n);
	for (i = 0; i < a->nrkeys; i++) {
		uint32_t key = a->rkeys[i], len = aug_key_len(n, key);
		struct aug_kstate *ks = &n->ks[key];
		struct aug_slot *s;
		uint64_t ver;
		int nz = 0;

		if (ks->rep_state != AUG_REP_LIVE &&
		    ks->rep_state != AUG_REP_DROPPING)
			continue;
		s = (struct aug_slot *)(n->arena +
					(size_t)ks->rep_line * AUG_LINE);
		ver = aug_slot_lock(s);
		if (s->flags & AUG_SLOT_DELTA) {
			for (j = 0; j < len; j++) {
				a->tmp[j] = s->val[len + j];
				nz |= a->tmp[j] != 0.0f;
			}
			aug_slot_zero(s->val + len, len);
			s->flags &= ~AUG_SLOT_DELTA;
		}
		aug_slot_unlock_nosum(s, ver);
		if (nz) {
			int o = ks->rep_owner; /* fixed while the replica lives */

			link_put(n, o, R_SYNC, key, 0, 0, 0, a->tmp, len);
			sent |= bit(o);
		}
	}
	for (; sent; sent &= sent - 1) {
		r = __builtin_ctzll(sent);
		if (link_wait(n, r, link_mark(n, r), NULL) == 0)
			a->round_acks++;
	}
	a->round_phase = 1;
}

/* Post the refresh READs of the round, as many as staging allows; the
 * round ends once every replica has been read (aug_adapt_tick). */
static void round_reads(struct augur_node *n)
{
	struct aug_adapt *a = n->ad;

	if (a->round_phase == 1) {
		a->round_pos = 0;
		a->round_phase = 2;
	}
	if (!a->rr_pending)
		a->nrr = 0; /* nothing in flight: reuse staging from the start */
	while (a->round_pos < a->nrkeys) {
		uint32_t key = a->rkeys[a->round_pos];
		struct aug_kstate *ks = &n->ks[key];

		if (ks->rep_state == AUG_REP_LIVE ||
		    ks->rep_state == AUG_REP_DROPPING) {
			if (post_read(n, key, ks->rep_owner, ks->rep_oline,
				      ks->rep_epoch, 0))
				return; /* staging or queue full: later */
		}
		a->round_pos++;
	}
}

/* --- receiving node-to-node messages -------------------------------------- */

static void on_record(struct augur_node *n, int from, const struct ctl_rec *r)
{
	struct aug_kstate *ks;
	uint64_t loc;
	uint32_t key = r->key;
	const float *v = (const float *)(const void *)(r + 1);

	if (r->type != R_MARK && r->type != R_ACK &&
	    (key >= n->num_keys || (r->len && r->len != aug_key_len(n, key)))) {
		AUG_STAT_ADD(n->malformed, 1);
		return;
	}
	ks = &n->ks[key < n->num_keys ? key : 0];
	loc = key < n->num_keys ? aug_loc_get(n, key) : 0;
	switch (r->type) {
	case R_WANT:
	case R_UNWANT:
		if (aug_loc_owner(loc) != (uint32_t)n->rank) {
			/* not mine (any more): pass it on */
			link_put(n, (int)aug_loc_owner(loc), r->type, key, 0, 0,
				 r->arg, NULL, 0);
			break;
		}
		if (r->arg >= (uint64_t)n->size)
			break;
		if (r->type == R_WANT)
			ks->wantset |= bit((int)r->arg);
		else
			ks->wantset &= ~bit((int)r->arg);
		decide(n, key);
		break;
	case R_HANDOFF: {
		uint32_t len = aug_key_len(n, key);
		int home = (int)(key % (uint64_t)n->size);
		uint32_t line = home == n->rank ?
					n->homed_line[key / (uint64_t)n->size] :
					slot_alloc(n, aug_slot_bytes(len));
		struct aug_slot *s;
		uint64_t ver;

		TRACE(n, "handoff %u e%u from %d line %u", key, r->epoch, from,
		      line);
		if (line == AUG_LINE_UNKNOWN) {
			/* No room here: send it home, where its own slot is
			 * always free while it is away.  Nothing is lost. */
			__atomic_store_n(&n->loc[key],
					 aug_loc_pack((uint32_t)home,
						      next_epoch(r->epoch),
						      AUG_LINE_UNKNOWN),
					 __ATOMIC_RELEASE);
			link_put(n, home, R_HANDOFF, key, next_epoch(r->epoch),
				 0, r->arg & ~bit(n->rank), v, len);
			break;
		}
		s = (struct aug_slot *)(n->arena + (size_t)line * AUG_LINE);
		ver = aug_slot_lock(s);
		__atomic_store_n(&s->key, key, __ATOMIC_RELAXED);
		__atomic_store_n(&s->epoch, r->epoch, __ATOMIC_RELAXED);
		s->len = len;
		s->flags = 0;
		aug_slot_put(s, v);
		aug_slot_unlock(s, ver);
		__atomic_store_n(&n->loc[key],
				 aug_loc_pack((uint32_t)n->rank, r->epoch, line),
				 __ATOMIC_RELEASE);
		ks->wantset = r->arg;
		if (aug_planner_wanted(&n->ad->pl, key))
			ks->wantset |= bit(n->rank);
		else
			ks->wantset &= ~bit(n->rank);
		ks->repset = 0;
		if (home != n->rank)
			link_put(n, home, R_INSTALLED, key, r->epoch, line,
				 (uint64_t)n->rank, NULL, 0);
		if (from != home && from != n->rank)
			link_put(n, from, R_INSTALLED, key, r->epoch, line,
				 (uint64_t)n->rank, NULL, 0);
		decide(n, key);
		break;
	}
	case R_INSTALLED:
		TRACE(n, "installed %u e%u at %d line %u (have %d e%u line %u)",
		      key, r->epoch, (int)r->arg, r->aux, (int)aug_loc_owner(loc),
		      aug_loc_epoch(loc), aug_loc_line(loc));
		if (r->arg < (uint64_t)n->size &&
		    (serial_newer(r->epoch, aug_loc_epoch(loc)) ||
		     (r->epoch == aug_loc_epoch(loc) &&
		      aug_loc_line(loc) == AUG_LINE_UNKNOWN)))
			__atomic_store_n(&n->loc[key],
					 aug_loc_pack((uint32_t)r->arg,
						      r->epoch, r->aux),
					 __ATOMIC_RELEASE);
		break;
	case R_FWD:
	case R_SYNC:
		if (aug_loc_owner(loc) == (uint32_t)n->rank &&
		    aug_loc_line(loc) != AUG_LINE_UNKNOWN) {
			apply_owned(n, key,
				    r->type == R_SYNC ? AUG_OP_PUSH
						      : (uint16_t)r->aux,
				    v);
		} else {
			int to = (int)aug_loc_owner(loc);
			link_put(n, to, R_FWD, key, 0,
				 r->type == R_SYNC ? AUG_OP_PUSH : r->aux, 0,
				 v, r->len);
			n->link[from].fwd_mask |= bit(to);
		}
		break;
	case R_MARK: {
		struct aug_hold *h = hold_new(n, AUG_HOLD_ACK);
		uint64_t links;

		if (!h)
			break;
		h->link = from;
		h->token = r->arg;
		links = n->link[from].fwd_mask;
		n->link[from].fwd_mask = 0;
		hold_on_forwards(n, h, links);
		break;
	}
	case R_ACK:
		on_ack(n, from, r->arg);
		break;
	case R_GRANT:
		if (ks->rep_state != AUG_REP_NONE || !aug_planner_wanted(&n->ad->pl, key)) {
			if (ks->rep_state == AUG_REP_NONE)
				link_put(n, from, R_DROP, key, 0, 0,
					 (uint64_t)n->rank, NULL, 0);
			break;
		}
		if (post_read(n, key, from, r->aux, r->epoch, 1) == 0)
			__atomic_store_n(&ks->rep_state, AUG_REP_INSTALLING, __ATOMIC_RELEASE);
		else
			link_put(n, from, R_DROP, key, 0, 0,
				 (uint64_t)n->rank, NULL, 0);
		break;
	case R_DROP:
		if (r->arg < (uint64_t)n->size &&
		    aug_loc_owner(loc) == (uint32_t)n->rank) {
			ks->repset &= ~bit((int)r->arg);
			decide(n, key);
		}
		break;
	default:
		AUG_STAT_ADD(n->malformed, 1);
	}
}

static void on_message(struct augur_node *n, int from, const uint8_t *m,
		       uint32_t len)
{
	const struct ctl_hdr *h = (const void *)m;
	uint32_t off = sizeof(*h), i;

	if (len < sizeof(*h) || h->magic != AUG_CTL_MAGIC || h->bytes != len ||
	    h->from != from) {
		AUG_STAT_ADD(n->malformed, 1);
		return;
	}
	for (i = 0; i < h->count; i++) {
		const struct ctl_rec *r = (const void *)(m + off);

		if (off + sizeof(*r) > len || off + rec_bytes(r->len) > len) {
			AUG_STAT_ADD(n->malformed, 1);
			return;
		}
		on_record(n, from, r);
		off += rec_bytes(r->len);
	}
}

/* --- the planner ---------------------------------------------------------- */

static void want_change(struct augur_node *n, uint32_t key, int on)
{
	struct aug_kstate *ks = &n->ks[key];
	uint64_t loc = aug_loc_get(n, key);
	int owner = (int)aug_loc_owner(loc);

	if (owner == n->rank) {
		if (on)
			ks->wantset |= bit(n->rank);
		else
			ks->wantset &= ~bit(n->rank);
		decide(n, key);
		return;
	}
	link_put(n, owner, on ? R_WANT : R_UNWANT, key, 0, 0,
		 (uint64_t)n->rank, NULL, 0);
	if (!on && ks->rep_state == AUG_REP_LIVE)
		__atomic_store_n(&ks->rep_state, AUG_REP_DROPPING,
				 __ATOMIC_RELEASE);
}

static void want_cb(void *ctx, uint32_t key, int on)
{
	want_change(ctx, key, on);
}

static int plan(struct augur_node *n)
{
	struct aug_planner *pl = &n->ad->pl;
	struct aug_intent buf[256];
	uint64_t now = 0, seen = pl->intents;
	uint32_t wi, got;
	int work = 0;

	for (wi = 0; wi < n->nworkers; wi++) {
		struct augur_worker *w = &n->worker[wi];

		if (!w->iring.slot)
			continue;
		while ((got = aug_iring_dequeue(&w->iring, buf, 256)) > 0) {
			if (!now) /* the clock only when something came */
				now = aug_now_ns();
			work += (int)got;
			aug_planner_feed(pl, wi, buf, got, now);
		}
		work += aug_planner_step(pl, wi, want_cb, n);
	}
	if (pl->intents != seen)
		AUG_STAT_ADD(n->intents_seen, pl->intents - seen);
	return work;
}

/* --- the progress hooks ---------------------------------------------------- */

int aug_adapt_pass(struct augur_node *n, const struct auv_wc *wc, int nwc)
{
	int i, work = 0;

	for (i = 0; i < nwc; i++) {
		uint64_t c = wc[i].cookie;

		if ((c & CK_MASK) == CK_LSEND) {
			int r = (int)((c >> 8) & 0xffff);
			n->link[r].sbuf_busy &= ~(1u << (c & 0xff));
			if (wc[i].status)
				aug_node_suspect(n, r, wc[i].status);
		} else if ((c & CK_MASK) == CK_LRECV) {
			int r = (int)((c >> 8) & 0xffff), b = (int)(c & 0xff);
			uint8_t *buf = n->link[r].rbuf + (size_t)b * AUG_CTL_MAX;

			if (wc[i].status) {
				aug_node_suspect(n, r, wc[i].status);
				continue;
			}
			on_message(n, r, buf, wc[i].byte_len);
			auv_post_recv(n->link[r].ep, buf, AUG_CTL_MAX,
				      n->link_mr, c);
		} else if ((c & CK_MASK) == CK_READ) {
			read_done(n, (uint32_t)(c & 0xffffff), wc[i].status);
		}
		work++;
	}
	return work;
}

int aug_adapt_tick(struct augur_node *n)
{
	struct aug_adapt *a = n->ad;
	uint64_t now;
	int work = 0, r;

	if (!a)
		return 0;
	work += plan(n);
	/* sync rounds */
	if ((a->round_phase == 1 && a->round_acks == 0) ||
	    (a->round_phase == 2 && a->round_pos < a->nrkeys))
		round_reads(n);
	if (a->round_phase == 2 && a->rr_pending == 0 &&
	    a->round_pos >= a->nrkeys) {
		uint64_t t = aug_now_ns(), d = t - a->round_t0;

		__atomic_store_n(&n->round_done, n->round_started, __ATOMIC_RELEASE);
		a->round_phase = 0;
		/* duty cycle: rounds take at most 1/(1 + AUG_ROUND_IDLE) of
		 * the progress thread (a round over thousands of replicas
		 * costs milliseconds); wait_sync still gets one at once */
		d *= AUG_ROUND_IDLE;
		a->next_round_ns = t + (d > AUG_ROUND_NS ? d : AUG_ROUND_NS);
		work++;
	}
	if (a->round_phase == 0) {
		if (!a->rr_pending)
			a->nrr = 0; /* installs finished: reuse staging */
		now = aug_now_ns();
		if ((a->nrkeys && now >= a->next_round_ns) ||
		    __atomic_load_n(&n->round_req, __ATOMIC_ACQUIRE) >
			    n->round_done) {
			round_start(n);
			work++;
		}
	}
	for (r = 0; r < n->size; r++)
		if (r != n->rank)
			work += link_flush(n, r);
	return work;
}

int aug_adapt_wait_round(struct augur_worker *w)
{
	struct augur_node *n = w->node;
	uint64_t target;
	unsigned spins = 0;

	if (!n->ad)
		return 0;
	target = __atomic_load_n(&n->round_started, __ATOMIC_ACQUIRE) + 1;
	/* ask for it */
	{
		uint64_t cur = __atomic_load_n(&n->round_req, __ATOMIC_RELAXED);
		while (cur < target &&
		       !__atomic_compare_exchange_n(&n->round_req, &cur, target, 0,
						    __ATOMIC_RELEASE,
						    __ATOMIC_RELAXED))
			;
	}
	while (__atomic_load_n(&n->round_done, __ATOMIC_ACQUIRE) < target) {
		int st = atomic_load(&n->status);

		if (st)
			return aug_fail(st, "%s", n->errbuf);
		if (++spins < 64)
			aug_cpu_relax();
		else {
			struct timespec ts = { 0, 20000 };
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

/* --- set-up and tear-down -------------------------------------------------- */

int aug_adapt_setup(struct augur_node *n)
{
	struct aug_adapt *a;
	size_t i, lbytes;
	int r;

	if (getenv("AUGUR_TRACE")) {
		char path[512];

		snprintf(path, sizeof(path), "%s/adapt.%d",
			 getenv("AUGUR_TRACE"), n->rank);
		trace_f = fopen(path, "w");
	}
	a = calloc(1, sizeof(*a));
	n->ks = calloc(n->num_keys, sizeof(*n->ks));
	n->link = calloc((size_t)n->size, sizeof(*n->link));
	if (!a || !n->ks || !n->link) {
		free(a);
		return aug_fail(-ENOMEM, "out of memory for adaptive state");
	}
	n->ad = a;
	if (aug_planner_init(&a->pl, n->nworkers, n->num_keys, AUG_LEAD_S))
		return aug_fail(-ENOMEM, "out of memory for the planner");
	if (getenv("AUGUR_ACT_AT"))
		a->pl.act_at = (uint32_t)atoi(getenv("AUGUR_ACT_AT"));
	a->mode = n->mode;
	a->max_len = (AUG_CTL_MAX - sizeof(struct ctl_hdr) -
		      sizeof(struct ctl_rec)) / 4;
	a->tmp = malloc(4u * AUG_MAX_VALUE_LEN * 2);
	if (!a->tmp)
		return aug_fail(-ENOMEM, "out of memory");
	a->bump = n->homed_bytes;
	a->end = n->arena_bytes;
	/* staging for READs: as large as the extra area, at least 64 KiB */
	a->stage_bytes = a->end - a->bump;
	if (a->stage_bytes < (64u << 10))
		a->stage_bytes = 64u << 10;
	r = auv_mr_alloc(n->nctx, a->stage_bytes, AUV_ACCESS_LOCAL_WRITE,
			 &a->stage_mr);
	if (r)
		return aug_fail(r, "registering adaptive staging: %s: %s",
				augur_strerror(r), auv_last_error());
	a->stage = auv_mr_addr(a->stage_mr);
	lbytes = (size_t)n->size * (AUG_LINK_SBUFS + AUG_LINK_RQ) * AUG_CTL_MAX;
	r = auv_mr_alloc(n->nctx, lbytes, AUV_ACCESS_LOCAL_WRITE, &n->link_mr);
	if (r)
		return aug_fail(r, "registering link buffers: %s: %s",
				augur_strerror(r), auv_last_error());
	for (i = 0; i < (size_t)n->size; i++) {
		struct aug_link *l = &n->link[i];
		uint8_t *base = (uint8_t *)auv_mr_addr(n->link_mr) +
				i * (AUG_LINK_SBUFS + AUG_LINK_RQ) * AUG_CTL_MAX;

		l->rank = (int)i;
		l->sbuf = base;
		l->rbuf = base + (size_t)AUG_LINK_SBUFS * AUG_CTL_MAX;
		l->open = malloc(AUG_CTL_MAX);
		if (!l->open)
			return aug_fail(-ENOMEM, "out of memory");
		l->open_len = sizeof(struct ctl_hdr);
		memset(l->open, 0, sizeof(struct ctl_hdr));
		l->backlog_tail = &l->backlog;
	}
	for (i = 0; i < n->nworkers; i++) {
		r = aug_iring_init(&n->worker[i].iring, AUG_IRING_CAP);
		if (r)
			return aug_fail(r, "out of memory for intent rings");
	}
	return 0;
}

/* Node links: accept from lower ranks (any order), then connect upward. */
int aug_adapt_connect(struct augur_node *n)
{
	struct aug_conn_priv priv;
	int r, got = 0, rc;

	while (got < n->rank) {
		struct auv_ep *ep;
		size_t plen = 0;

		rc = auv_ep_accept(n->nctx, 60000, &ep, &priv, &plen);
		if (rc)
			return aug_fail(rc, "accepting node links: %s: %s",
					augur_strerror(rc), auv_last_error());
		if (plen != sizeof(priv) || priv.magic != AUG_PRIV_MAGIC ||
		    priv.worker != 0xffff || priv.rank >= n->rank ||
		    n->link[priv.rank].ep) {
			auv_ep_close(ep);
			return aug_fail(-AUGUR_EPROTO, "bad node link request");
		}
		n->link[priv.rank].ep = ep;
		got++;
	}
	for (r = n->rank + 1; r < n->size; r++) {
		memset(&priv, 0, sizeof(priv));
		priv.magic = AUG_PRIV_MAGIC;
		priv.rank = (uint16_t)n->rank;
		priv.worker = 0xffff;
		rc = auv_ep_connect(n->nctx, n->peers[r].addr, &priv,
				    sizeof(priv), &n->link[r].ep);
		if (rc)
			return aug_fail(rc, "node link to %d: %s: %s", r,
					augur_strerror(rc), auv_last_error());
	}
	return 0;
}

int aug_adapt_post_recvs(struct augur_node *n)
{
	int r, b, rc;

	for (r = 0; r < n->size; r++) {
		if (r == n->rank)
			continue;
		for (b = 0; b < AUG_LINK_RQ; b++) {
			rc = auv_post_recv(n->link[r].ep,
					   n->link[r].rbuf +
						   (size_t)b * AUG_CTL_MAX,
					   AUG_CTL_MAX, n->link_mr,
					   CK_LRECV | (uint64_t)r << 8 |
						   (uint64_t)b);
			if (rc)
				return aug_fail(rc, "link receives: %s: %s",
						augur_strerror(rc),
						auv_last_error());
		}
	}
	return 0;
}

void aug_adapt_teardown(struct augur_node *n)
{
	struct aug_adapt *a = n->ad;
	uint32_t i;
	int r;

	if (n->link) {
		for (r = 0; r < n->size; r++) {
			struct aug_ctlmsg *m = n->link[r].backlog;

			while (m) {
				struct aug_ctlmsg *next = m->next;
				free(m);
				m = next;
			}
			auv_ep_close(n->link[r].ep);
			free(n->link[r].open);
			free(n->link[r].waits);
		}
	}
	for (i = 0; i < n->nworkers; i++)
		aug_iring_fini(&n->worker[i].iring);
	if (a) {
		struct aug_hold *h = a->free_holds;

		while (h) {
			struct aug_hold *next = h->next_free;
			free(h);
			h = next;
		}
		for (i = 0; i < (uint32_t)a->nfl; i++)
			free(a->fl[i].lines);
		aug_planner_free(&a->pl);
		auv_mr_dereg(a->stage_mr);
		free(a->rr);
		free(a->rkeys);
		free(a->tmp);
		free(a);
	}
	auv_mr_dereg(n->link_mr);
	free(n->link);
	free(n->ks);
	n->ad = NULL;
	n->link = NULL;
	n->ks = NULL;
	n->link_mr = NULL;
}
