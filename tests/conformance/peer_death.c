// SPDX-License-Identifier: MIT
/*
 * conf_peer_death - a peer killed with SIGKILL mid-stream.
 *
 * Rank 0 survives; rank 1 and rank 2 die.
 *
 * Part 1, the client dies: rank 1 streams WRITEs into rank 0's region (and
 * keeps a region of its own for rank 0 to read).  Once rank 0 sees the data
 * flowing it kills rank 1, then keeps reading rank 1's region until the
 * failure shows: an error completion, an error from auv_post(), or
 * auv_ep_status().
 *
 * Part 2, the target dies: rank 0 streams WRITEs and READs to rank 2 with
 * 64 in flight and kills rank 2 in the middle of it.  It goes on posting
 * until the failure shows, then every signaled operation must still be
 * accounted for (completed or failed) and nothing more may be accepted.
 *
 * In both: the failure shows within a bounded time (20 s, ibv 60 s); error
 * statuses are AUGUR_EPEER_GONE or AUGUR_EFLUSHED and at least one of the
 * signs (completion, post, status) says AUGUR_EPEER_GONE; once
 * auv_ep_status() is non-zero it stays so and auv_post() returns it;
 * closing the endpoint and, at the end, the context does not hang.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define RLEN (256u << 10)
#define SLOT 512u
#define INFLIGHT 64

static int detect_s(const struct th *t)
{
	return t->ibv ? 60 : 20;
}

struct watch {
	struct th *t;
	struct auv_ep *ep;
	bool all_signaled; /* else only odd cookies are signaled */
	bool killed;
	uint64_t start; /* of the kill */
	bool peer_gone_seen;
	int fails;
	long ok_after_kill;
	int64_t next_cookie;   /* the next operation's */
	int64_t last_signaled; /* last signaled operation posted */
	int64_t last_reported; /* cookie of the last completion */
};

static bool is_signaled(const struct watch *w, int64_t c)
{
	return w->all_signaled || (c & 1);
}

static void note_status(struct watch *w, int code, const char *where)
{
	CHECKF(w->killed, "%s before the peer was killed: %d (%s)", where, code,
	       augur_strerror(code));
	CHECKF(code == -AUGUR_EPEER_GONE || code == -AUGUR_EFLUSHED,
	       "%s after the peer's death: %d (%s), expected "
	       "-AUGUR_EPEER_GONE or -AUGUR_EFLUSHED",
	       where, code, augur_strerror(code));
	if (code == -AUGUR_EPEER_GONE)
		w->peer_gone_seen = true;
	w->fails++;
}

/*
 * Reap what is there (waiting up to @ms); returns completions reaped.
 * Completions come in posting order: none may be skipped among the
 * signaled ones, an unsignaled one may only be reported failed.
 */
static int reap(struct watch *w, int ms)
{
	struct auv_wc wc[64];
	int64_t c, want;
	int n, i;

	n = th_poll_wait(w->t, wc, 64, ms);
	for (i = 0; i < n; i++) {
		CHECK(wc[i].ep == w->ep);
		c = (int64_t)wc[i].cookie;
		CHECKF(c > w->last_reported && c < w->next_cookie,
		       "completion for operation %lld, after %lld was "
		       "reported and with %lld posted (order, duplicates)",
		       (long long)c, (long long)w->last_reported,
		       (long long)w->next_cookie);
		for (want = w->last_reported + 1; !is_signaled(w, want);)
			want++;
		CHECKF(c <= want,
		       "signaled operation %lld was never reported (the "
		       "next completion is for %lld)",
		       (long long)want, (long long)c);
		CHECKF(wc[i].status || is_signaled(w, c),
		       "unsignaled operation %lld reported success",
		       (long long)c);
		if (wc[i].status)
			note_status(w, wc[i].status, "completion status");
		else if (w->killed)
			w->ok_after_kill++;
		w->last_reported = c;
	}
	return n;
}

static bool all_reported(const struct watch *w)
{
	return w->last_reported >= w->last_signaled;
}

static void posted(struct watch *w, const struct auv_op *op)
{
	if (op->flags & AUV_OP_SIGNALED)
		w->last_signaled = w->next_cookie;
	w->next_cookie++;
}

static void finish(struct watch *w, const char *what)
{
	struct auv_op op;
	int st, rc;

	st = auv_ep_status(w->ep);
	th_note("%s: failure seen after %.3f s (%d error reports, %ld good "
		"completions after the kill, endpoint status %d: %s)",
		what, th_elapsed_s(w->start), w->fails, w->ok_after_kill, st,
		augur_strerror(st));
	CHECKF(st != 0 || w->fails > 0, "%s: no sign of the death", what);
	/* Whatever failed first, the endpoint must end up failed... */
	while (!(st = auv_ep_status(w->ep))) {
		CHECKF(th_elapsed_s(w->start) < detect_s(w->t),
		       "%s: error completions but auv_ep_status still 0 "
		       "after %d s",
		       what, detect_s(w->t));
		reap(w, 10);
	}
	note_status(w, st, "auv_ep_status");
	CHECKF(w->peer_gone_seen,
	       "%s: neither a completion nor the endpoint status said "
	       "AUGUR_EPEER_GONE",
	       what);
	/* ...stay failed, and refuse new work with its status. */
	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_WRITE;
	op.local = &op;
	op.len = 8;
	rc = auv_post(w->ep, &op, 1);
	CHECKF(rc == st,
	       "%s: auv_post on a failed endpoint returned %d, "
	       "status is %d",
	       what, rc, st);
	CHECK_EQ(auv_ep_status(w->ep), st);
}

/* --- Part 1: the client dies ---------------------------------------------- */

static void streamer(struct th *t)
{
	struct auv_mr_desc d, mine;
	struct auv_mr *loc, *own;
	struct auv_op ops[16];
	struct auv_wc wc[16];
	uint64_t round = 0;
	int i, n;

	CHECK_OK(auv_mr_alloc(t->ctx, 16 * SLOT, AUV_ACCESS_LOCAL_WRITE, &loc));
	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &own));
	th_fill(auv_mr_addr(own), RLEN, 0x0111);
	th_connect(t, 0);
	th_recv(t, 0, &d, sizeof(d));
	auv_mr_desc(own, &mine);
	th_send(t, 0, &mine, sizeof(mine));
	th_phase("streaming until killed");
	for (;;) { /* ends by SIGKILL (or this rank's alarm) */
		for (i = 0; i < 16; i++) {
			uint64_t *p = (uint64_t *)((uint8_t *)auv_mr_addr(loc) +
						   i * SLOT);

			p[0] = round + 1;
			ops[i] = th_op(AUV_OP_WRITE, p, SLOT, loc, &d,
				       (round % (RLEN / SLOT)) * SLOT, round);
			round++;
		}
		ops[15].flags = AUV_OP_SIGNALED;
		for (n = 0; n < 16;)
			n += (int)CHECK_OK(auv_post(t->ep[0], ops + n, 16 - n));
		th_poll_n(t, wc, 1, 1);
		CHECK_RC(wc[0].status, 0);
		if (round == 16 * 8)
			th_send_u64(t, 0, round); /* data is flowing */
	}
}

static void survivor_part1(struct th *t)
{
	struct watch w = {.t = t,
			  .all_signaled = true,
			  .last_signaled = -1,
			  .last_reported = -1};
	struct auv_mr_desc d, theirs;
	struct auv_op op;
	uint8_t *l, *mem;
	uint64_t v;
	int rc;

	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &t->mr[0]));
	CHECK_OK(auv_mr_alloc(t->ctx, 4096, AUV_ACCESS_LOCAL_WRITE, &t->mr[1]));
	mem = auv_mr_addr(t->mr[0]);
	l = auv_mr_addr(t->mr[1]);
	w.ep = th_connect(t, 1);
	auv_mr_desc(t->mr[0], &d);
	th_send(t, 1, &d, sizeof(d));
	th_recv(t, 1, &theirs, sizeof(theirs));

	th_phase("part 1: waiting for rank 1's stream");
	CHECK_EQ(th_recv_u64(t, 1), 16 * 8);
	memcpy(&v, mem, 8);
	CHECKF(v >= 1, "rank 1 says it is streaming but nothing arrived");
	th_kill(t, 1);
	w.killed = true;
	w.start = th_now_ns();

	/* Keep reading from the dead peer until the failure shows. */
	th_phase("part 1: probing the dead client");
	while (!w.fails && !auv_ep_status(w.ep)) {
		CHECKF(th_elapsed_s(w.start) < detect_s(t),
		       "part 1: the death of rank 1 went unnoticed for %d s",
		       detect_s(t));
		op = th_op(AUV_OP_READ, l, 64, t->mr[1], &theirs, 0,
			   (uint64_t)w.next_cookie);
		op.flags = AUV_OP_SIGNALED;
		rc = auv_post(w.ep, &op, 1);
		if (rc < 0) {
			note_status(&w, rc, "auv_post");
			break;
		}
		if (rc == 1)
			posted(&w, &op);
		/* Reap this READ (or its failure) before the next one. */
		while (!all_reported(&w)) {
			CHECKF(th_elapsed_s(w.start) < detect_s(t),
			       "part 1: a READ from the dead rank 1 neither "
			       "completed nor failed in %d s",
			       detect_s(t));
			reap(&w, 100);
		}
	}
	finish(&w, "part 1 (client killed)");
	auv_ep_close(w.ep);
	t->ep[1] = NULL;
}

/* --- Part 2: the target dies ---------------------------------------------- */

static void victim_target(struct th *t)
{
	struct auv_mr_desc d;

	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &t->mr[0]));
	th_fill(auv_mr_addr(t->mr[0]), RLEN, 0x0222);
	CHECK_EQ(th_recv_u64(t, 0), 2); /* part 2 starts */
	th_connect(t, 0);
	auv_mr_desc(t->mr[0], &d);
	th_send(t, 0, &d, sizeof(d));
	th_phase("waiting to be killed");
	th_recv_u64(t, 0); /* never comes */
	th_fail_at(__FILE__, __LINE__, 0, "rank 0 sent something unexpected");
}

static void survivor_part2(struct th *t)
{
	struct watch w = {.t = t, .last_signaled = -1, .last_reported = -1};
	long kill_at = th_scaled(t, 2000);
	struct auv_mr_desc d;
	struct auv_mr *loc;
	struct auv_op op;
	uint8_t *l;
	int rc;

	CHECK_OK(auv_mr_alloc(t->ctx, INFLIGHT * SLOT, AUV_ACCESS_LOCAL_WRITE,
			      &loc));
	l = auv_mr_addr(loc);
	th_send_u64(t, 2, 2);
	w.ep = th_connect(t, 2);
	th_recv(t, 2, &d, sizeof(d));

	th_phase("part 2: streaming to rank 2");
	for (;;) {
		if (!w.killed && w.last_reported >= kill_at) {
			th_kill(t, 2); /* with up to INFLIGHT in flight */
			w.killed = true;
			w.start = th_now_ns();
			th_phase("part 2: streaming to the dead rank 2");
		}
		if (w.killed && (w.fails || auv_ep_status(w.ep)))
			break;
		if (w.killed)
			CHECKF(th_elapsed_s(w.start) < detect_s(t),
			       "part 2: the death of rank 2 went unnoticed "
			       "for %d s",
			       detect_s(t));
		/* Keep up to INFLIGHT operations in flight, every other
		 * one signaled, WRITEs and READs mixed. */
		while (w.next_cookie - w.last_reported - 1 < INFLIGHT) {
			int64_t c = w.next_cookie;

			op = th_op(c & 2 ? AUV_OP_READ : AUV_OP_WRITE,
				   l + (c % INFLIGHT) * SLOT, SLOT, loc, &d,
				   (uint64_t)(c % (RLEN / SLOT)) * SLOT,
				   (uint64_t)c);
			op.flags = is_signaled(&w, c) ? AUV_OP_SIGNALED : 0;
			rc = auv_post(w.ep, &op, 1);
			if (rc < 0) {
				note_status(&w, rc, "auv_post");
				break;
			}
			if (rc == 0)
				break;
			posted(&w, &op);
		}
		if (w.fails)
			break;
		CHECKF(reap(&w, w.killed ? 100 : t->poll_timeout_ms) > 0 ||
			   w.killed,
		       "part 2: the stream stalled before the kill");
	}
	/* Every signaled operation is accounted for, in bounded time. */
	th_phase("part 2: draining");
	while (!all_reported(&w)) {
		CHECKF(th_elapsed_s(w.start) < detect_s(t),
		       "part 2: signaled operations up to %lld still "
		       "unreported %d s after the kill (last reported %lld)",
		       (long long)w.last_signaled, detect_s(t),
		       (long long)w.last_reported);
		reap(&w, 100);
	}
	finish(&w, "part 2 (target killed)");
	/* Only failures of unsignaled operations may still come. */
	reap(&w, 50);
	auv_ep_close(w.ep);
	t->ep[2] = NULL;
}

static int run(struct th *t)
{
	switch (t->rank) {
	case 0:
		survivor_part1(t);
		survivor_part2(t);
		return TH_PASS;
	case 1:
		streamer(t);
		break;
	case 2:
		victim_target(t);
		break;
	}
	return TH_FAIL;
}

static const struct th_test test = {
    .name = "conf_peer_death",
    .procs = 3,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
