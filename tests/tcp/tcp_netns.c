// SPDX-License-Identifier: MIT
/*
 * tcp_netns - the tcp provider between network namespaces joined by a veth
 * pair: real packets on a real (virtual) link, not loopback.  Run by
 * tests/tcp/netns.sh, which makes the namespaces and passes
 *   AUGUR_TEST_NETNS="<ns A>=<ip A>,<ns B>=<ip B>"
 *   AUGUR_TCP_UNPLUG="<command taking B's end of the link down>" (optional)
 * Rank 0 joins namespace A, the others namespace B (before opening their
 * contexts, in the harness's tune hook), each listening on its namespace's
 * address.  Without AUGUR_TEST_NETNS the test skips.
 *
 * Part 1, traffic (rank 0 -> rank 1): WRITE and READ of 1 B .. 1 MiB,
 * verified both ways; 2000 FAAs with 32 in flight; 200 SENDs and
 * WRITE_IMMs into receives rank 1 posted.
 * Part 2, the target killed mid-stream: rank 0 keeps 64 WRITEs and READs in
 * flight to rank 2 and SIGKILLs it: every signaled operation is accounted
 * for, the errors are AUGUR_EPEER_GONE or AUGUR_EFLUSHED, the endpoint
 * ends failed and refuses new work, nothing hangs.
 * Part 3, the initiator killed mid-stream: rank 1 streams WRITEs into rank
 * 0's region; rank 0 kills it and reads from it until the failure shows.
 * Part 4 (with AUGUR_TCP_UNPLUG): the link goes down under a stream to rank
 * 3 - no FIN, no RST, the peer simply vanishes: both sides must notice
 * (keepalive, TCP_USER_TIMEOUT) within 60 s, and nothing hangs.
 *
 * No time is asserted except generous bounds against hanging.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define RLEN (2u << 20)
#define SLOT 512u
#define INFLIGHT 64
#define DETECT_S 20
#define UNPLUG_S 60

enum {
	CMD_POST_RECV = TH_CMD_USER, /* len: count, arg: buffer size */
	CMD_CHECK_RECV,		     /* len: count; reply: bad ones */
	CMD_STREAM,		     /* become the streamer of part 3 */
};

/* The harness joined this rank's namespace ($AUGUR_TEST_NETNS). */
static void tune(struct th *t, struct auv_ctx_opts *o)
{
	if (!t->netns)
		th_skip("AUGUR_TEST_NETNS is not set: run tests/tcp/netns.sh "
			"(it makes the namespaces)");
	o->connect_timeout_ms = 10000;
}

/* --- Part 1: traffic ------------------------------------------------------ */

static struct auv_mr *rx_mr;

static uint64_t serve_user(struct th *t, int peer, const struct th_cmd *c)
{
	struct auv_wc wc[64];
	uint64_t i, bad = 0, got = 0;
	uint8_t *p;
	int n, k;

	switch (c->op) {
	case CMD_POST_RECV:
		if (!rx_mr)
			CHECK_OK(auv_mr_alloc(t->ctx, c->len * c->arg,
					      AUV_ACCESS_ALL, &rx_mr));
		for (i = 0; i < c->len; i++) {
			p = (uint8_t *)auv_mr_addr(rx_mr) + i * c->arg;
			CHECK_OK(auv_post_recv(t->ep[peer], p, (uint32_t)c->arg,
					       rx_mr, i));
		}
		return 0;
	case CMD_CHECK_RECV:
		while (got < c->len) {
			n = th_poll_wait(t, wc, 64, t->poll_timeout_ms);
			CHECKF(n > 0, "receives: %llu of %llu in %d ms",
			       (unsigned long long)got,
			       (unsigned long long)c->len, t->poll_timeout_ms);
			for (k = 0; k < n; k++, got++) {
				CHECK_RC(wc[k].status, 0);
				CHECK_EQ(wc[k].opcode, AUV_OP_RECV);
				CHECK_EQ(wc[k].cookie, got);
				if (got & 1) { /* WRITE_IMM */
					CHECK(wc[k].flags & AUV_WC_IMM);
					CHECK_EQ(wc[k].imm, (uint32_t)got);
					continue;
				}
				p = (uint8_t *)auv_mr_addr(rx_mr) + got * 4096;
				CHECK_EQ(wc[k].byte_len, 1 + got * 7 % 4000);
				bad += th_verify(p, wc[k].byte_len, 0x5e0 + got,
						 "SEND") != 0;
			}
		}
		return bad;
	}
	th_fail_at(__FILE__, __LINE__, 0, "unknown command %u", c->op);
}

static void rw_sizes(struct th *t, struct auv_ep *ep,
		     const struct auv_mr_desc *d, struct auv_mr *loc)
{
	uint8_t *l = auv_mr_addr(loc);
	struct auv_op op;
	uint32_t len;
	int k = 0;

	for (len = 1; len <= (1u << 20); len = len * 4 + (len & 1 ? 0 : 1)) {
		uint64_t off = (uint64_t)(k * 4099 % 8192);

		th_phase("part 1: WRITE/READ of %u bytes", len);
		th_fill(l, len, 100 + (uint64_t)k);
		op = th_op(AUV_OP_WRITE, l, len, loc, d, off, (uint64_t)k);
		CHECK_RC(th_do(t, ep, &op, NULL), 0);
		CHECKF(th_call(t, 1, TH_CMD_VERIFY, 0, off, len,
			       100 + (uint64_t)k) == 0,
		       "WRITE of %u bytes over the veth: wrong data", len);
		memset(l + RLEN / 2, 0, len);
		op = th_op(AUV_OP_READ, l + RLEN / 2, len, loc, d, off,
			   (uint64_t)k);
		CHECK_RC(th_do(t, ep, &op, NULL), 0);
		CHECKF(th_verify(l + RLEN / 2, len, 100 + (uint64_t)k,
				 "READ") == 0,
		       "READ of %u bytes over the veth: wrong data", len);
		k++;
	}
}

static void faa_stream(struct th *t, struct auv_ep *ep,
		       const struct auv_mr_desc *d, struct auv_mr *loc)
{
	uint64_t *res = auv_mr_addr(loc);
	struct auv_wc wc[32];
	struct auv_op op;
	long posted = 0, done = 0, total = 2000;
	int n, i;

	th_phase("part 1: %ld FAAs, 32 in flight", total);
	CHECK_EQ(th_call(t, 1, TH_CMD_MEMSET, 0, 0, 8, 0), 0);
	while (done < total) {
		while (posted < total && posted - done < 32) {
			op = th_op(AUV_OP_FAA, &res[posted % 32], 8, loc, d, 0,
				   (uint64_t)posted);
			op.swap_add = 1;
			op.flags = AUV_OP_SIGNALED;
			if (!CHECK_OK(auv_post(ep, &op, 1)))
				break;
			posted++;
		}
		n = th_poll_wait(t, wc, 32, t->poll_timeout_ms);
		CHECKF(n > 0, "FAA: no completion in %d ms",
		       t->poll_timeout_ms);
		for (i = 0; i < n; i++, done++) {
			CHECK_RC(wc[i].status, 0);
			CHECK_EQ(wc[i].cookie, (uint64_t)done);
			CHECK_EQ(res[done % 32], (uint64_t)done);
		}
	}
	CHECK_EQ(th_call(t, 1, TH_CMD_LOAD64, 0, 0, 8, 0), (uint64_t)total);
}

static void messages(struct th *t, struct auv_ep *ep,
		     const struct auv_mr_desc *d, struct auv_mr *loc)
{
	uint8_t *l = auv_mr_addr(loc);
	struct auv_wc wc;
	struct auv_op op;
	uint64_t i, n = 200;
	uint32_t len;

	th_phase("part 1: %llu SENDs and WRITE_IMMs", (unsigned long long)n);
	CHECK_EQ(th_call(t, 1, CMD_POST_RECV, 0, 0, n, 4096), 0);
	for (i = 0; i < n; i++) {
		if (i & 1) {
			op =
			    th_op(AUV_OP_WRITE_IMM, l, 64, loc, d, 8192 + i, i);
			op.imm = (uint32_t)i;
		} else {
			len = 1 + (uint32_t)(i * 7 % 4000);
			th_fill(l + 8192, len, 0x5e0 + i);
			op = th_op(AUV_OP_SEND, l + 8192, len, loc, NULL, 0, i);
		}
		CHECK_RC(th_do(t, ep, &op, &wc), 0);
	}
	CHECK_EQ(th_call(t, 1, CMD_CHECK_RECV, 0, 0, n, 0), 0);
}

/* --- Watching a stream die (as conf_peer_death) --------------------------- */

struct watch {
	struct th *t;
	struct auv_ep *ep;
	bool killed, gone_seen;
	uint64_t start;
	int fails;
	int64_t next, last_signaled, last_reported;
};

static void note(struct watch *w, int code, const char *where)
{
	CHECKF(w->killed, "%s before the peer went: %d (%s)", where, code,
	       augur_strerror(code));
	CHECKF(code == -AUGUR_EPEER_GONE || code == -AUGUR_EFLUSHED,
	       "%s: %d (%s), expected AUGUR_EPEER_GONE or AUGUR_EFLUSHED",
	       where, code, augur_strerror(code));
	w->gone_seen |= code == -AUGUR_EPEER_GONE;
	w->fails++;
}

static int reap(struct watch *w, int ms)
{
	struct auv_wc wc[64];
	int n, i;

	n = th_poll_wait(w->t, wc, 64, ms);
	for (i = 0; i < n; i++) {
		CHECK(wc[i].ep == w->ep);
		CHECKF((int64_t)wc[i].cookie > w->last_reported,
		       "completion %llu after %lld: order",
		       (unsigned long long)wc[i].cookie,
		       (long long)w->last_reported);
		CHECKF(wc[i].status || (wc[i].cookie & 1),
		       "unsignaled operation %llu reported success",
		       (unsigned long long)wc[i].cookie);
		if (wc[i].status)
			note(w, wc[i].status, "completion");
		w->last_reported = (int64_t)wc[i].cookie;
	}
	return n;
}

/* Keep INFLIGHT operations going on w->ep until it fails; @go is called
 * once after @kill_at completions. */
static void stream_until_failure(struct watch *w, struct auv_mr *loc,
				 const struct auv_mr_desc *d, long kill_at,
				 void (*go)(struct watch *w, void *arg),
				 void *arg, int limit_s)
{
	uint8_t *l = auv_mr_addr(loc);
	struct auv_op op;
	int rc, st;

	w->last_signaled = w->last_reported = -1;
	for (;;) {
		if (!w->killed && w->last_reported >= kill_at) {
			go(w, arg);
			w->killed = true;
			w->start = th_now_ns();
		}
		if (w->killed && (w->fails || auv_ep_status(w->ep)))
			break;
		if (w->killed)
			CHECKF(th_elapsed_s(w->start) < limit_s,
			       "the peer's end went unnoticed for %d s",
			       limit_s);
		while (w->next - w->last_reported - 1 < INFLIGHT) {
			int64_t c = w->next;

			op = th_op(c & 2 ? AUV_OP_READ : AUV_OP_WRITE,
				   l + (c % INFLIGHT) * SLOT, SLOT, loc, d,
				   (uint64_t)(c % 1024) * SLOT, (uint64_t)c);
			op.flags = (c & 1) ? AUV_OP_SIGNALED : 0;
			rc = auv_post(w->ep, &op, 1);
			if (rc < 0) {
				note(w, rc, "auv_post");
				break;
			}
			if (!rc)
				break;
			if (c & 1)
				w->last_signaled = c;
			w->next++;
		}
		if (w->fails)
			break;
		CHECKF(reap(w, w->killed ? 100 : w->t->poll_timeout_ms) > 0 ||
			   w->killed,
		       "the stream stalled before the peer went");
	}
	while (w->last_reported < w->last_signaled) {
		CHECKF(th_elapsed_s(w->start) < limit_s,
		       "signaled operations up to %lld unreported %d s after "
		       "the peer went",
		       (long long)w->last_signaled, limit_s);
		reap(w, 100);
	}
	while (!(st = auv_ep_status(w->ep))) {
		CHECKF(th_elapsed_s(w->start) < limit_s,
		       "errors reported but the endpoint is still fine");
		reap(w, 10);
	}
	note(w, st, "auv_ep_status");
	CHECKF(w->gone_seen, "nothing said AUGUR_EPEER_GONE");
	op = th_op(AUV_OP_WRITE, l, 8, loc, d, 0, 0);
	CHECK_RC(auv_post(w->ep, &op, 1), st);
	th_note("failure seen %.3f s after the peer went (%d error reports)",
		th_elapsed_s(w->start), w->fails);
	reap(w, 50);
}

static void kill_peer(struct watch *w, void *arg)
{
	th_kill(w->t, *(int *)arg);
}

static void unplug(struct watch *w, void *arg)
{
	const char *cmd = arg;

	th_note("taking the link down: %s", cmd);
	CHECKF(system(cmd) == 0, "'%s' failed", cmd);
}

/* --- Ranks ---------------------------------------------------------------- */

static void streamer(struct th *t)
{
	struct auv_mr_desc d;
	struct auv_mr *loc;
	struct auv_op ops[16];
	struct auv_wc wc;
	uint64_t round = 0;
	int i, n;

	CHECK_OK(auv_mr_alloc(t->ctx, 16 * SLOT, AUV_ACCESS_LOCAL_WRITE, &loc));
	th_recv(t, 0, &d, sizeof(d));
	th_phase("part 3: streaming until killed");
	for (;;) {
		for (i = 0; i < 16; i++, round++)
			ops[i] =
			    th_op(AUV_OP_WRITE,
				  (uint8_t *)auv_mr_addr(loc) + i * SLOT, SLOT,
				  loc, &d, (round % 1024) * SLOT, round);
		ops[15].flags = AUV_OP_SIGNALED;
		for (n = 0; n < 16;)
			n += (int)CHECK_OK(auv_post(t->ep[0], ops + n, 16 - n));
		th_poll_n(t, &wc, 1, 1);
		CHECK_RC(wc.status, 0);
		if (round == 16 * 8)
			th_send_u64(t, 0, round);
	}
}

static void target(struct th *t, bool then_stream)
{
	struct auv_mr_desc d;

	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &t->mr[0]));
	th_fill(auv_mr_addr(t->mr[0]), RLEN, 0x7a);
	CHECK_EQ(th_recv_u64(t, 0), (uint64_t)t->rank); /* our turn */
	th_connect(t, 0);
	auv_mr_desc(t->mr[0], &d);
	th_send(t, 0, &d, sizeof(d));
	th_serve(t, 0, serve_user);
	if (then_stream)
		streamer(t);
	th_recv_u64(t, 0); /* killed before anything comes */
	th_fail_at(__FILE__, __LINE__, 0, "rank 0 sent something");
}

/* Rank 3 of part 4: serve, then notice the vanished link itself. */
static void unplugged_target(struct th *t)
{
	struct auv_wc wc;
	uint64_t start;

	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &t->mr[0]));
	CHECK_EQ(th_recv_u64(t, 0), (uint64_t)t->rank); /* our turn */
	th_connect(t, 0);
	{
		struct auv_mr_desc d;

		auv_mr_desc(t->mr[0], &d);
		th_send(t, 0, &d, sizeof(d));
	}
	CHECK_EQ(th_recv_u64(t, 0), 4); /* rank 0 saw its side fail */
	start = th_now_ns();
	th_phase("part 4: waiting to notice the link is gone");
	while (!auv_ep_status(t->ep[0])) {
		CHECKF(th_elapsed_s(start) < UNPLUG_S,
		       "the target did not notice the vanished link in %d s",
		       UNPLUG_S);
		th_poll_wait(t, &wc, 1, 100);
	}
	th_note("target: link loss noticed %.1f s after the initiator "
		"(status %s)",
		th_elapsed_s(start), augur_strerror(auv_ep_status(t->ep[0])));
	th_send_u64(t, 0, 4);
}

static int rank0(struct th *t)
{
	const char *cmd = getenv("AUGUR_TCP_UNPLUG");
	struct auv_mr *loc, *mine;
	struct auv_mr_desc d, d1, md;
	struct auv_wc wc[4];
	struct watch w;
	struct auv_op op;
	int victim, rc, n, i;

	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_LOCAL_WRITE, &loc));
	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &mine));

	/* Part 1. */
	th_send_u64(t, 1, 1);
	th_connect(t, 1);
	th_recv(t, 1, &d1, sizeof(d1));
	rw_sizes(t, t->ep[1], &d1, loc);
	faa_stream(t, t->ep[1], &d1, loc);
	messages(t, t->ep[1], &d1, loc);
	th_note("part 1: traffic across the veth verified");

	/* Part 2: rank 2, a target, killed mid-stream. */
	th_send_u64(t, 2, 2);
	th_connect(t, 2);
	th_recv(t, 2, &d, sizeof(d));
	th_phase("part 2: streaming to rank 2, then killing it");
	memset(&w, 0, sizeof(w));
	w.t = t;
	w.ep = t->ep[2];
	victim = 2;
	stream_until_failure(&w, loc, &d, 1000, kill_peer, &victim, DETECT_S);
	auv_ep_close(t->ep[2]);
	t->ep[2] = NULL;

	/* Part 3: rank 1 streams into our region; we kill it. */
	th_phase("part 3: rank 1 streams to us");
	CHECK_EQ(th_call(t, 1, TH_CMD_DONE, 0, 0, 0, 0), 0);
	auv_mr_desc(mine, &md);
	th_send(t, 1, &md, sizeof(md));
	CHECK_EQ(th_recv_u64(t, 1), 16 * 8);
	th_kill(t, 1);
	w.start = th_now_ns();
	/* Read from the dead peer until the failure shows. */
	memset(&w, 0, sizeof(w));
	w.t = t;
	w.ep = t->ep[1];
	w.killed = true;
	w.start = th_now_ns();
	while (!auv_ep_status(t->ep[1])) {
		CHECKF(th_elapsed_s(w.start) < DETECT_S,
		       "part 3: the death of rank 1 went unnoticed");
		op = th_op(AUV_OP_READ, auv_mr_addr(loc), 64, loc, &d1, 0, 1);
		op.flags = AUV_OP_SIGNALED;
		rc = auv_post(t->ep[1], &op, 1);
		if (rc < 0) {
			note(&w, rc, "auv_post");
			break;
		}
		n = th_poll_wait(t, wc, 4, 100);
		for (i = 0; i < n; i++)
			if (wc[i].status)
				note(&w, wc[i].status, "completion");
	}
	note(&w, auv_ep_status(t->ep[1]), "auv_ep_status");
	CHECKF(w.gone_seen, "part 3: nothing said AUGUR_EPEER_GONE");
	th_note("part 3: the initiator's death noticed after %.3f s",
		th_elapsed_s(w.start));
	auv_ep_close(t->ep[1]);
	t->ep[1] = NULL;

	/* Part 4: the link vanishes under a stream to rank 3. */
	if (t->nprocs < 4 || !cmd || !*cmd) {
		th_note("part 4 (link down) not run: needs --procs 4 and "
			"AUGUR_TCP_UNPLUG");
		return TH_PASS;
	}
	th_send_u64(t, 3, 3);
	th_connect(t, 3);
	th_recv(t, 3, &d, sizeof(d));
	th_phase("part 4: streaming to rank 3, then taking the link down");
	memset(&w, 0, sizeof(w));
	w.t = t;
	w.ep = t->ep[3];
	stream_until_failure(&w, loc, &d, 1000, unplug, (void *)cmd, UNPLUG_S);
	th_send_u64(t, 3, 4);
	CHECK_EQ(th_recv_u64(t, 3), 4);
	auv_ep_close(t->ep[3]);
	t->ep[3] = NULL;
	return TH_PASS;
}

static int run(struct th *t)
{
	if (strcmp(t->provider, "tcp"))
		th_skip("tcp_netns is for --provider tcp");
	switch (t->rank) {
	case 0:
		return rank0(t);
	case 1:
		target(t, true);
		break;
	case 2:
		target(t, false);
		break;
	case 3:
		unplugged_target(t);
		return TH_PASS;
	}
	return TH_FAIL;
}

static const struct th_test test = {
    .name = "tcp_netns",
    .procs = 4,
    .min_procs = 3,
    .timeout_s = 180,
    .tune = tune,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
