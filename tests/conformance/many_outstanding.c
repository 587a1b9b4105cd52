// SPDX-License-Identifier: MIT
/*
 * conf_many_outstanding - thousands of operations in flight.
 *
 * The client (rank 1, sq_depth 4096) posts 10,000 WRITEs of 64-byte slots
 * (a third of them inline without a local region, their buffer scribbled
 * right after posting), then 10,000 READs of the slots, in batches of
 * 1..256 operations per auv_post(), with only every 16th operation (and
 * the last) signaled, and reaps with auv_poll() batches of 32..256.  It
 * polls only when auv_post() takes fewer than asked (a full queue is not an
 * error), so the queue runs full.  Checks: auv_post() never takes more than
 * asked nor fails; the endpoint really holds about as many operations as
 * caps.sq_depth says; exactly the signaled operations complete, in posting
 * order; the target holds every WRITE's data and every READ returns it.
 *
 * Then the same on a second context with sq_depth 16: a batch of 200 must
 * be taken only in part (between 1 and 16 operations), and the rest goes
 * in as completions are reaped.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SLOT 64u
#define SMALL_SQ 16u
#define CMD_ACCEPT TH_CMD_USER

static struct auv_ep *second_ep;

static uint64_t accept_second(struct th *t, int peer, const struct th_cmd *c)
{
	char priv[AUV_PRIV_MAX];
	size_t plen;
	int rc;

	rc = auv_ep_accept(t->ctx, t->ibv ? 60000 : 20000, &second_ep, priv,
			   &plen);
	CHECKF(rc == 0, "accepting the second connection: %d (%s)", rc,
	       augur_strerror(rc));
	return 0;
}

static void tune(struct th *t, struct auv_ctx_opts *o)
{
	if (t->rank == 1)
		o->sq_depth = 4096;
}

struct stream {
	struct th *t;
	struct auv_ep *ep;
	long n;	       /* operations */
	int every;     /* signal every this many */
	long posted;   /* operations taken by auv_post() */
	long done;     /* all operations before this one completed */
	long next_sig; /* next signaled operation to complete */
	long max_out;  /* most operations outstanding seen */
	long partial;  /* auv_post() calls that took fewer than asked */
	long completions;
};

static bool signaled(const struct stream *s, long i)
{
	return i % s->every == s->every - 1 || i == s->n - 1;
}

static long next_signaled(const struct stream *s, long i)
{
	while (i < s->n && !signaled(s, i))
		i++;
	return i;
}

static void reap(struct stream *s)
{
	struct auv_wc wc[256];
	int max = 32 + (int)(th_rand(s->t) % 225), n, i;

	n = th_poll_wait(s->t, wc, max, s->t->poll_timeout_ms);
	CHECKF(n > 0,
	       "no completion in %d ms with %ld operations "
	       "outstanding",
	       s->t->poll_timeout_ms, s->posted - s->done);
	for (i = 0; i < n; i++) {
		CHECKF(wc[i].status == 0, "operation %llu failed: %d (%s)",
		       (unsigned long long)wc[i].cookie, wc[i].status,
		       augur_strerror(wc[i].status));
		CHECK(wc[i].ep == s->ep);
		CHECKF(wc[i].cookie == (uint64_t)s->next_sig,
		       "completion for operation %llu, expected %ld (only "
		       "every %d-th is signaled; posting order)",
		       (unsigned long long)wc[i].cookie, s->next_sig, s->every);
		CHECKF(s->next_sig < s->posted,
		       "completion for operation %ld, which was not posted",
		       s->next_sig);
		s->done = s->next_sig + 1;
		s->next_sig = next_signaled(s, s->next_sig + 1);
		s->completions++;
	}
}

/* Post ops[0..n) (built by @make) and reap every completion. */
static void run_stream(struct stream *s,
		       void (*make)(struct stream *s, long i, struct auv_op *op,
				    void *arg),
		       void *arg, bool scribble_inline)
{
	static struct auv_op ops[256];
	static uint8_t inl[256][SLOT];
	long want_completions = 0, i;
	int batch, k, got;

	for (i = 0; i < s->n; i++)
		want_completions += signaled(s, i);
	s->next_sig = next_signaled(s, 0);
	while (s->posted < s->n) {
		batch = 1 + (int)(th_rand(s->t) % 256);
		if (batch > s->n - s->posted)
			batch = (int)(s->n - s->posted);
		for (k = 0; k < batch; k++) {
			i = s->posted + k;
			make(s, i, &ops[k], arg);
			ops[k].cookie = (uint64_t)i;
			ops[k].flags = signaled(s, i) ? AUV_OP_SIGNALED : 0;
			if (scribble_inline && !ops[k].local_mr) {
				memcpy(inl[k], ops[k].local, ops[k].len);
				ops[k].local = inl[k];
			}
		}
		got = (int)CHECK_OK(auv_post(s->ep, ops, batch));
		CHECKF(got <= batch, "auv_post took %d of %d", got, batch);
		if (scribble_inline)
			memset(inl, 0xEE, sizeof(inl));
		s->posted += got;
		if (s->posted - s->done > s->max_out)
			s->max_out = s->posted - s->done;
		if (got < batch) {
			s->partial++;
			reap(s);
		}
	}
	while (s->completions < want_completions)
		reap(s);
	CHECK_EQ(s->done, s->n);
	/* Nothing else may complete. */
	{
		struct auv_wc wc;

		CHECK_EQ(auv_poll(s->t->ctx, &wc, 1), 0);
	}
}

struct rw_arg {
	uint8_t *local;
	struct auv_mr *mr;
	const struct auv_mr_desc *d;
	uint8_t opcode;
	bool inl;
};

static void make_rw(struct stream *s, long i, struct auv_op *op, void *arg)
{
	struct rw_arg *a = arg;

	*op = th_op(a->opcode, a->local + (size_t)i * SLOT, SLOT, a->mr, a->d,
		    (uint64_t)i * SLOT, 0);
	if (a->inl && i % 3 == 0)
		op->local_mr = NULL;
}

static int target(struct th *t, long n)
{
	CHECK_OK(
	    auv_mr_alloc(t->ctx, (size_t)n * SLOT, AUV_ACCESS_ALL, &t->mr[0]));
	th_connect(t, 1);
	th_serve(t, 1, accept_second);
	auv_ep_close(second_ep);
	return TH_PASS;
}

static void small_queue(struct th *t, long n, const struct auv_mr_desc *d)
{
	struct auv_ctx_opts o = t->opts;
	struct th_cmd c = {.op = CMD_ACCEPT};
	struct auv_ctx *ctx2, *saved = t->ctx;
	struct auv_op ops[200];
	int32_t me = t->rank;
	struct auv_caps caps2;
	struct auv_mr *src, *dst;
	struct auv_ep *ep;
	struct stream s;
	struct rw_arg a;
	int got, i;

	th_phase("small queue: second context");
	o.sq_depth = SMALL_SQ;
	CHECK_OK(auv_ctx_open(&o, &ctx2));
	CHECK_OK(auv_ctx_caps(ctx2, &caps2));
	CHECKF(caps2.sq_depth >= SMALL_SQ && caps2.sq_depth <= 4 * SMALL_SQ,
	       "asked for sq_depth %u, caps say %u", SMALL_SQ, caps2.sq_depth);
	CHECK_OK(
	    auv_mr_alloc(ctx2, (size_t)n * SLOT, AUV_ACCESS_LOCAL_WRITE, &src));
	CHECK_OK(
	    auv_mr_alloc(ctx2, (size_t)n * SLOT, AUV_ACCESS_LOCAL_WRITE, &dst));
	th_send(t, 0, &c, sizeof(c)); /* the target accepts, then replies */
	CHECK_OK(auv_ep_connect(ctx2, t->addr[0], &me, sizeof(me), &ep));
	CHECK_EQ(th_recv_u64(t, 0), 0);
	t->ctx = ctx2; /* th_poll_*() poll t->ctx */

	/* One batch of 200 WRITEs: a queue of 16 takes only part of it. */
	th_fill(auv_mr_addr(src), 200 * SLOT, 0x5A11);
	for (i = 0; i < 200; i++) {
		ops[i] = th_op(AUV_OP_WRITE,
			       (uint8_t *)auv_mr_addr(src) + (size_t)i * SLOT,
			       SLOT, src, d, (uint64_t)i * SLOT, (uint64_t)i);
		ops[i].flags = i % 4 == 3 ? AUV_OP_SIGNALED : 0;
	}
	got = (int)CHECK_OK(auv_post(ep, ops, 200));
	CHECKF(got >= 1 && got <= (int)caps2.sq_depth,
	       "auv_post of 200 operations on a queue of %u took %d",
	       caps2.sq_depth, got);
	/* Full is not an error: it keeps answering 0 until we reap. */
	if (got == (int)caps2.sq_depth)
		CHECK_RC(auv_post(ep, ops + got, 200 - got), 0);
	memset(&s, 0, sizeof(s));
	s.t = t;
	s.ep = ep;
	s.n = 200;
	s.every = 4;
	s.posted = got;
	s.next_sig = next_signaled(&s, 0);
	while (s.posted < s.n) {
		reap(&s);
		got = (int)CHECK_OK(
		    auv_post(ep, ops + s.posted, (int)(s.n - s.posted)));
		s.posted += got;
	}
	while (s.done < s.n)
		reap(&s);
	CHECKF(th_call(t, 0, TH_CMD_VERIFY, 0, 0, 200 * SLOT, 0x5A11) == 0,
	       "target memory wrong after WRITEs through a small queue");

	/* n READs in random batches through the small queue. */
	th_phase("small queue: %ld READs", n);
	CHECK_EQ(th_call(t, 0, TH_CMD_FILL, 0, 0, (uint64_t)n * SLOT, 0x3333),
		 0);
	memset(&s, 0, sizeof(s));
	s.t = t;
	s.ep = ep;
	s.n = n;
	s.every = 4;
	a = (struct rw_arg){.local = auv_mr_addr(dst),
			    .mr = dst,
			    .d = d,
			    .opcode = AUV_OP_READ};
	run_stream(&s, make_rw, &a, false);
	CHECKF(s.partial > 0,
	       "a queue of %u never filled up with %ld "
	       "operations posted in batches up to 256",
	       caps2.sq_depth, n);
	CHECKF(th_verify(auv_mr_addr(dst), (size_t)n * SLOT, 0x3333,
			 "READ data (small queue)") == 0,
	       "READs through a small queue returned wrong data");
	th_log("small queue: %ld partial posts", s.partial);
	auv_ep_close(ep);
	auv_ctx_close(ctx2); /* its regions go with it */
	t->ctx = saved;
}

static void client(struct th *t, long n)
{
	struct auv_mr *src, *dst;
	struct auv_mr_desc d;
	struct stream s;
	struct rw_arg a;

	CHECK_OK(auv_mr_alloc(t->ctx, (size_t)n * SLOT, AUV_ACCESS_LOCAL_WRITE,
			      &src));
	CHECK_OK(auv_mr_alloc(t->ctx, (size_t)n * SLOT, AUV_ACCESS_LOCAL_WRITE,
			      &dst));
	th_connect(t, 0);
	th_call_desc(t, 0, 0, &d);
	CHECKF(t->caps.sq_depth >= 4096,
	       "asked for sq_depth 4096, caps say "
	       "%u",
	       t->caps.sq_depth);

	th_phase("%ld WRITEs", n);
	th_fill(auv_mr_addr(src), (size_t)n * SLOT, 0x1111);
	memset(&s, 0, sizeof(s));
	s.t = t;
	s.ep = t->ep[0];
	s.n = n;
	s.every = 16;
	a = (struct rw_arg){.local = auv_mr_addr(src),
			    .mr = src,
			    .d = &d,
			    .opcode = AUV_OP_WRITE,
			    .inl = t->caps.max_inline >= SLOT};
	run_stream(&s, make_rw, &a, true);
	th_log("WRITEs: %ld signaled completions, at most %ld outstanding, "
	       "%ld partial posts",
	       s.completions, s.max_out, s.partial);
	CHECKF(s.max_out >= (n < 4096 ? n : 4096) / 2,
	       "at most %ld operations were ever outstanding, with "
	       "sq_depth %u and %ld to post",
	       s.max_out, t->caps.sq_depth, n);
	CHECKF(th_call(t, 0, TH_CMD_VERIFY, 0, 0, (uint64_t)n * SLOT, 0x1111) ==
		   0,
	       "target memory wrong after %ld WRITEs", n);

	th_phase("%ld READs", n);
	CHECK_EQ(th_call(t, 0, TH_CMD_FILL, 0, 0, (uint64_t)n * SLOT, 0x2222),
		 0);
	memset(auv_mr_addr(dst), 0, (size_t)n * SLOT);
	memset(&s, 0, sizeof(s));
	s.t = t;
	s.ep = t->ep[0];
	s.n = n;
	s.every = 16;
	a = (struct rw_arg){.local = auv_mr_addr(dst),
			    .mr = dst,
			    .d = &d,
			    .opcode = AUV_OP_READ};
	run_stream(&s, make_rw, &a, false);
	th_log("READs: %ld signaled completions, at most %ld outstanding, "
	       "%ld partial posts",
	       s.completions, s.max_out, s.partial);
	CHECKF(th_verify(auv_mr_addr(dst), (size_t)n * SLOT, 0x2222,
			 "READ data") == 0,
	       "%ld READs returned wrong data", n);

	small_queue(t, n, &d);
	CHECK_EQ(th_call(t, 0, TH_CMD_DONE, 0, 0, 0, 0), 0);
	CHECK_OK(auv_mr_dereg(dst));
	CHECK_OK(auv_mr_dereg(src));
}

static int run(struct th *t)
{
	long n = th_scaled(t, 10000);

	if (t->rank == 0)
		return target(t, n);
	client(t, n);
	return TH_PASS;
}

static const struct th_test test = {
    .name = "conf_many_outstanding",
    .procs = 2,
    .tune = tune,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
