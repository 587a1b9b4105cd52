// SPDX-License-Identifier: MIT
/*
 * lib/progress.c - the node's progress loop.
 *
 * One thread per node.  aug_progress_pass() does one pass and returns how
 * much it did:
 *   - reap the node context's completions: each receive completion is one
 *     message (a batch of pushes/sets) that a remote worker wrote into its
 *     inbound ring; apply it slot by slot under the slots' writer locks;
 *   - return credits: one inline 16-byte WRITE per ring that advanced,
 *     telling the sender how far it may write;
 *   - every ~50 ms: liveness (endpoint status, bootstrap connections).
 * aug_progress_main() is the trivial loop around it: spin while there is
 * work, then back off (pause, then sched_yield, then sleep in auv_wait()
 * with a growing timeout up to 10 ms) when idle, unless busy_poll is set.
 * The next issue adds intent rings and planner ticks to the pass.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "bootstrap.h"
#include "internal.h"

#define RECV_BUF_LEN 64

int aug_progress_post_recvs(struct augur_node *n)
{
	void *buf = auv_mr_addr(n->recv_mr);
	int g, i, rc;

	for (g = 0; g < n->size * (int)n->nworkers; g++) {
		struct aug_inring *r = &n->inring[g];

		r->base = (uint8_t *)auv_mr_addr(n->rings_mr) +
			  (size_t)g * AUG_RING_BYTES;
		if (!r->ep)
			continue;
		for (i = 0; i < AUG_RQ_DEPTH; i++) {
			rc = auv_post_recv(r->ep, buf, RECV_BUF_LEN, n->recv_mr,
					   (uint64_t)g);
			if (rc)
				return aug_fail(rc, "posting receives: %s: %s",
						augur_strerror(rc),
						auv_last_error());
		}
	}
	return 0;
}

/*
 * Apply one message.  Everything is checked before anything is applied, so
 * a malformed message changes nothing.  Entries for keys that moved away
 * are forwarded to their new owner (adaptive modes).  Returns entries
 * applied or forwarded, or -AUGUR_EPROTO; *fwd counts the forwarded ones,
 * *links has a bit for each node they went to.
 */
static int apply_msg(struct augur_node *n, struct aug_inring *r,
		     const uint8_t *m, uint32_t len, int *fwd, uint64_t *links)
{
	const struct aug_msg_hdr *h = (const void *)m;
	uint32_t off, i;

	*fwd = 0;
	*links = 0;
	if (len < sizeof(*h) || h->magic != AUG_MSG_MAGIC || h->bytes != len ||
	    h->sender != r->gw || h->seq != (uint32_t)r->msgs)
		return -AUGUR_EPROTO;
	/* pass 1: validate */
	off = sizeof(*h);
	for (i = 0; i < h->count; i++) {
		const struct aug_msg_ent *e = (const void *)(m + off);
		uint64_t loc;

		if (off + sizeof(*e) > len)
			return -AUGUR_EPROTO;
		if (e->key >= n->num_keys || e->len != aug_key_len(n, e->key) ||
		    (e->op != AUG_OP_PUSH && e->op != AUG_OP_SET) ||
		    off + sizeof(*e) + 4u * e->len > len)
			return -AUGUR_EPROTO;
		loc = aug_loc_get(n, e->key);
		if (aug_loc_owner(loc) != (uint32_t)n->rank &&
		    !aug_adaptive(n))
			return -AUGUR_EPROTO;
		off += (uint32_t)sizeof(*e) + 4u * e->len;
	}
	if (off != len)
		return -AUGUR_EPROTO;
	/* pass 2: apply, or forward what moved away */
	off = sizeof(*h);
	for (i = 0; i < h->count; i++) {
		const struct aug_msg_ent *e = (const void *)(m + off);
		const float *v = (const float *)(const void *)(e + 1);
		uint64_t loc = aug_loc_get(n, e->key);

		off += (uint32_t)sizeof(*e) + 4u * e->len;
		if (aug_loc_owner(loc) != (uint32_t)n->rank) {
			int to = aug_adapt_forward(n, r, e->key, e->op, v,
						   e->len);

			if (to >= 0) {
				(*fwd)++;
				*links |= 1ull << to;
			}
			continue;
		}
		{
			struct aug_slot *s = aug_local_slot(n, loc);
			uint64_t ver = aug_slot_lock(s);

			if (e->op == AUG_OP_PUSH)
				aug_slot_add(s, v);
			else
				aug_slot_put(s, v);
			aug_slot_unlock(s, ver);
		}
	}
	return (int)h->count;
}

static void on_message(struct augur_node *n, struct aug_inring *r,
		       uint32_t imm)
{
	uint32_t len = imm & 0x7fffffffu;
	uint64_t off;
	int rc;

	if (imm >> 31)
		r->consumed += AUG_RING_BYTES - r->consumed % AUG_RING_BYTES;
	off = r->consumed % AUG_RING_BYTES;
	if (len > AUG_BATCH_MAX || off + len > AUG_RING_BYTES) {
		rc = -AUGUR_EPROTO;
	} else {
		uint64_t links = 0;
		int fwd = 0;

		rc = apply_msg(n, r, r->base + off, len, &fwd, &links);
		if (fwd) {
			/* credit only once the new owners applied them */
			aug_adapt_hold_credit(n, r, links);
			rc -= fwd;
		}
	}
	if (rc < 0) {
		AUG_STAT_ADD(n->malformed, 1);
		if (n->malformed == 1)
			fprintf(stderr,
				"augur node %d: dropped a malformed message "
				"from worker %d (%u bytes at ring offset "
				"%llu)\n",
				n->rank, r->gw, len, (unsigned long long)off);
	} else {
		AUG_STAT_ADD(n->applied, (uint64_t)rc);
	}
	r->consumed += len;
	r->msgs++;
	r->dirty = 1;
	AUG_STAT_ADD(n->msgs_in, 1);
}

static int send_credit(struct augur_node *n, struct aug_inring *r)
{
	struct auv_op op;
	int rc;

	if (r->held)
		return 0;
	r->credit_buf[0] = r->consumed;
	r->credit_buf[1] = r->msgs;
	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_WRITE;
	op.local = r->credit_buf;
	op.len = sizeof(r->credit_buf);
	op.remote_addr = r->credit_addr;
	op.rkey = r->credit_rkey;
	/* selective signaling: retire the unsignaled ones now and then */
	if ((r->credits_sent & 31) == 31)
		op.flags = AUV_OP_SIGNALED;
	rc = auv_post(r->ep, &op, 1);
	if (rc == 1) {
		r->dirty = 0;
		r->credits_sent++;
	}
	return rc;
}

static void check_liveness(struct augur_node *n)
{
	int dead = -1, rc, g;

	rc = aug_boot_check(n->boot, &dead);
	if (rc) {
		aug_node_failed(n, -AUGUR_EPEER_GONE,
				"node %d is gone (bootstrap connection lost)",
				dead);
		return;
	}
	for (g = 0; g < n->size * (int)n->nworkers; g++) {
		if (n->inring[g].ep && auv_ep_status(n->inring[g].ep)) {
			aug_node_suspect(n, g / (int)n->nworkers,
					 auv_ep_status(n->inring[g].ep));
			return;
		}
	}
}

/* One pass; returns the amount of work done (0: idle). */
static int aug_progress_pass(struct augur_node *n, uint64_t *next_check)
{
	struct auv_wc wc[64];
	int got, i, work = 0, g;

	got = auv_poll(n->nctx, wc, 64);
	if (got < 0) {
		aug_node_failed(n, got, "polling: %s", augur_strerror(got));
		return 0;
	}
	for (i = 0; i < got; i++) {
		struct aug_inring *r;

		if ((wc[i].cookie >> 56) >= 0xa1) {
			/* node links and the planner's reads (lib/adapt.c) */
			work += aug_adapt_pass(n, &wc[i], 1);
			continue;
		}
		r = auv_ep_user(wc[i].ep);
		if (wc[i].status) {
			if (wc[i].status == -AUGUR_EFLUSHED ||
			    wc[i].status == -AUGUR_EPEER_GONE)
				aug_node_suspect(n,
						 r ? r->gw / (int)n->nworkers
						   : -1,
						 wc[i].status);
			else
				aug_node_failed(n, wc[i].status,
						"transport error: %s",
						augur_strerror(wc[i].status));
			continue;
		}
		if (wc[i].opcode != AUV_OP_RECV || !r)
			continue;
		if (!(wc[i].flags & AUV_WC_IMM)) {
			AUG_STAT_ADD(n->malformed, 1);
		} else {
			on_message(n, r, wc[i].imm);
		}
		auv_post_recv(r->ep, auv_mr_addr(n->recv_mr), RECV_BUF_LEN,
			      n->recv_mr, (uint64_t)r->gw);
		work++;
	}
	if (aug_adaptive(n))
		work += aug_adapt_tick(n);
	if (work) {
		for (g = 0; g < n->size * (int)n->nworkers; g++)
			if (n->inring[g].dirty)
				send_credit(n, &n->inring[g]);
	}
	if (atomic_load_explicit(&n->suspect, memory_order_acquire) &&
	    !atomic_load(&n->status)) {
		uint64_t now = aug_now_ns();

		if (!n->suspect_since)
			n->suspect_since = now;
		check_liveness(n);
		if (!atomic_load(&n->status) &&
		    now - n->suspect_since > 1000000000ull)
			aug_node_failed(n, -AUGUR_EPEER_GONE,
					"node %d is gone (%s)",
					__atomic_load_n(&n->suspect_rank,
							__ATOMIC_RELAXED),
					augur_strerror(__atomic_load_n(
					    &n->suspect_code,
					    __ATOMIC_RELAXED)));
	}
	if (aug_now_ns() >= *next_check) {
		*next_check = aug_now_ns() + 50000000ull;
		check_liveness(n);
		/* retry credits a full send queue refused */
		for (g = 0; g < n->size * (int)n->nworkers; g++)
			if (n->inring[g].dirty)
				send_credit(n, &n->inring[g]);
	}
	return work;
}

void *aug_progress_main(void *arg)
{
	struct augur_node *n = arg;
	uint64_t next_check = 0;
	unsigned idle = 0;
	int timeout = 1;

	while (!atomic_load_explicit(&n->stop, memory_order_acquire)) {
		if (aug_progress_pass(n, &next_check)) {
			AUG_STAT_ADD(n->passes, 1);
			idle = 0;
			timeout = 1;
			continue;
		}
		if (n->busy_poll || ++idle < 256) {
			aug_cpu_relax();
			continue;
		}
		if (idle < 512) {
			sched_yield();
			continue;
		}
		AUG_STAT_ADD(n->sleeps, 1);
		auv_wait(n->nctx, timeout);
		if (timeout < 10)
			timeout++;
	}
	return NULL;
}
