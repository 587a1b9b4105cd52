// SPDX-License-Identifier: MIT
/*
 * conf_imm_send - two-sided delivery.
 *
 * Part 1: WRITE_IMM of 1 B to 64 KiB with edge immediates (0, 2^31,
 * 2^32-1, ...): the receiver gets a RECV completion with AUV_WC_IMM, the
 * immediate, byte_len 0, the cookie of its oldest receive buffer, and the
 * data is in place.
 *
 * Part 2: both ranks stream messages to each other at once, in batches as
 * deep as the receive queue: SENDs of 1 B..1 KiB (inline without a local
 * region when small enough, from registered memory otherwise) mixed with
 * WRITE_IMMs.  Every RECV completion must come in order (receive buffers
 * are consumed FIFO, messages arrive in posting order), carry the right
 * byte_len, flags, immediate and data; the sender's signaled completions
 * come back with their cookies in posting order.
 *
 * Part 3: a SEND larger than the receive buffer fails at the sender with
 * AUGUR_EREMOTE_INVALID (and is never reported as a good receive).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define IN_LEN (128u << 10)
#define MAX_MSG 1024u
#define SIGNAL_EVERY 4

struct peer_state {
	struct th *t;
	struct auv_ep *ep;
	struct auv_mr *in; /* WRITE_IMM target (peers write here) */
	struct auv_mr *rx; /* receive buffers */
	struct auv_mr *tx; /* send sources */
	struct auv_mr_desc peer_in;
	uint32_t msg_max;	  /* receive buffer size and largest SEND */
	int window;		  /* receives per batch */
	uint64_t rx_posted;	  /* receives posted (their cookies) */
	uint64_t rx_base;	  /* cookie of part 2's first receive */
	uint64_t rx_done, tx_seq; /* part 2 messages in and out */
	uint64_t tx_signaled_next, tx_signaled_done;
};

static uint64_t mix(uint64_t x)
{
	x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ull;
	x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44dull;
	return x ^ (x >> 33);
}

/* What message @seq from rank @from looks like. */
static uint32_t msg_len(const struct peer_state *s, int from, uint64_t seq)
{
	return 1 + (uint32_t)(mix(seq * 2 + (uint64_t)from + 1) % s->msg_max);
}

static bool msg_is_imm(uint64_t seq)
{
	return seq % 5 == 4;
}

static uint64_t msg_seed(int from, uint64_t seq)
{
	return ((uint64_t)from << 40) | seq;
}

static void post_rx(struct peer_state *s)
{
	uint8_t *buf = (uint8_t *)auv_mr_addr(s->rx) +
		       (s->rx_posted % (uint64_t)s->window) * s->msg_max;
	int rc;

	memset(buf, 0xAB, s->msg_max);
	rc = auv_post_recv(s->ep, buf, s->msg_max, s->rx, s->rx_posted);
	CHECKF(rc == 0, "auv_post_recv #%llu: %d (%s)",
	       (unsigned long long)s->rx_posted, rc, augur_strerror(rc));
	s->rx_posted++;
}

static void handle(struct peer_state *s, const struct auv_wc *wc)
{
	struct th *t = s->t;
	int from = 1 - t->rank;
	uint64_t seq = s->rx_done, cookie = s->rx_base + seq;
	uint8_t *buf;
	uint32_t len;
	char what[64];

	CHECKF(wc->status == 0,
	       "completion (opcode %u, cookie %llu) "
	       "failed: %d (%s)",
	       wc->opcode, (unsigned long long)wc->cookie, wc->status,
	       augur_strerror(wc->status));
	CHECK(wc->ep == s->ep);
	if (wc->opcode != AUV_OP_RECV) {
		CHECKF(wc->cookie == s->tx_signaled_next,
		       "send completion cookie %llu, expected %llu (posting "
		       "order)",
		       (unsigned long long)wc->cookie,
		       (unsigned long long)s->tx_signaled_next);
		CHECK_EQ(wc->opcode, msg_is_imm(wc->cookie) ? AUV_OP_WRITE_IMM
							    : AUV_OP_SEND);
		s->tx_signaled_done++;
		s->tx_signaled_next += SIGNAL_EVERY;
		return;
	}
	/* The oldest receive buffer, and the next message in order. */
	CHECKF(wc->cookie == cookie,
	       "RECV completion cookie %llu, expected %llu (receive buffers "
	       "are used in order)",
	       (unsigned long long)wc->cookie, (unsigned long long)cookie);
	len = msg_len(s, from, seq);
	snprintf(what, sizeof(what), "message %llu", (unsigned long long)seq);
	if (msg_is_imm(seq)) {
		CHECKF(wc->flags & AUV_WC_IMM,
		       "message %llu is a WRITE_IMM but its RECV completion "
		       "lacks AUV_WC_IMM (byte_len %u)",
		       (unsigned long long)seq, wc->byte_len);
		CHECKF(wc->imm == (uint32_t)(seq * 2654435761u),
		       "message %llu: imm 0x%x, expected 0x%x",
		       (unsigned long long)seq, wc->imm,
		       (uint32_t)(seq * 2654435761u));
		CHECK_EQ(wc->byte_len, 0);
		buf = (uint8_t *)auv_mr_addr(s->in) +
		      (seq % (uint64_t)s->window) * s->msg_max;
	} else {
		CHECKF(!(wc->flags & AUV_WC_IMM),
		       "message %llu is a SEND but its completion has "
		       "AUV_WC_IMM",
		       (unsigned long long)seq);
		CHECKF(wc->byte_len == len,
		       "message %llu: byte_len %u, expected %u",
		       (unsigned long long)seq, wc->byte_len, len);
		buf = (uint8_t *)auv_mr_addr(s->rx) +
		      (cookie % (uint64_t)s->window) * s->msg_max;
	}
	CHECKF(th_verify(buf, len, msg_seed(from, seq), what) == 0,
	       "message %llu (%s, %u bytes): wrong data",
	       (unsigned long long)seq, msg_is_imm(seq) ? "WRITE_IMM" : "SEND",
	       len);
	s->rx_done++;
}

static void reap(struct peer_state *s, int timeout_ms)
{
	struct auv_wc wc[64];
	int n, i;

	n = th_poll_wait(s->t, wc, 64, timeout_ms);
	CHECKF(n > 0 || timeout_ms == 0,
	       "no completion in %d ms (sent %llu, signaled done %llu, "
	       "received %llu)",
	       timeout_ms, (unsigned long long)s->tx_seq,
	       (unsigned long long)s->tx_signaled_done,
	       (unsigned long long)s->rx_done);
	for (i = 0; i < n; i++)
		handle(s, &wc[i]);
}

static void part1(struct th *t, struct peer_state *s)
{
	static const uint32_t imms[] = {0,	     1,		  0x80000000u,
					0xffffffffu, 0xdeadbeefu, 42};
	uint32_t sizes[] = {1, 8, t->caps.max_inline, 4096, 4097, 64u << 10};
	unsigned int i;
	struct auv_op op;
	struct auv_wc wc;
	uint32_t len;

	for (i = 0; i < sizeof(imms) / sizeof(imms[0]); i++) {
		len = sizes[i] ? sizes[i] : 1;
		th_phase("part 1: WRITE_IMM %u, %u bytes", i, len);
		if (t->rank == 0) {
			post_rx(s);
			th_send_u64(t, 1, i); /* receive posted */
			th_poll_n(t, &wc, 1, 1);
			CHECK_RC(wc.status, 0);
			CHECK(wc.ep == s->ep);
			CHECK_EQ(wc.opcode, AUV_OP_RECV);
			CHECKF(wc.flags & AUV_WC_IMM,
			       "WRITE_IMM's RECV completion lacks AUV_WC_IMM");
			CHECK_EQ(wc.imm, imms[i]);
			CHECK_EQ(wc.byte_len, 0);
			CHECK_EQ(wc.cookie, s->rx_posted - 1);
			CHECKF(th_verify((uint8_t *)auv_mr_addr(s->in) + 8 + i,
					 len, 0x1000 + i,
					 "WRITE_IMM data") == 0,
			       "WRITE_IMM of %u bytes: data not there on "
			       "its RECV completion",
			       len);
			th_send_u64(t, 1, i); /* checked */
		} else {
			uint8_t *src = auv_mr_addr(s->tx);

			CHECK_EQ(th_recv_u64(t, 0), i);
			th_fill(src, len, 0x1000 + i);
			op = th_op(AUV_OP_WRITE_IMM, src, len, s->tx,
				   &s->peer_in, 8 + i, 77 + i);
			op.imm = imms[i];
			CHECK_RC(th_do(t, s->ep, &op, NULL), 0);
			CHECK_EQ(th_recv_u64(t, 0), i);
		}
	}
	s->rx_base = s->rx_posted; /* part 2's receives start here */
}

static void part2(struct th *t, struct peer_state *s)
{
	long batches = th_scaled(t, 150), b;
	int peer = 1 - t->rank, i, n, p;
	uint64_t seq, want_signaled;
	struct auv_op *ops;
	uint8_t inl[MAX_MSG];
	uint8_t *src;

	ops = calloc((size_t)s->window, sizeof(*ops));
	CHECK(ops != NULL);
	/* Messages are numbered from 0 each way; every SIGNAL_EVERY-th is
	 * signaled, and a batch (a multiple of it) ends on a signaled one. */
	s->tx_seq = 0;
	s->rx_done = 0;
	s->tx_signaled_next = SIGNAL_EVERY - 1;
	for (i = 0; i < s->window; i++)
		post_rx(s);
	for (b = 0; b < batches; b++) {
		th_phase("part 2: batch %ld of %d messages each way", b,
			 s->window);
		/* Our receives for this batch are posted: tell the peer. */
		th_send_u64(t, peer, (uint64_t)b);
		CHECK_EQ(th_recv_u64(t, peer), (uint64_t)b);
		for (i = 0; i < s->window; i++) {
			seq = s->tx_seq + (uint64_t)i;
			n = (int)msg_len(s, t->rank, seq);
			src = (uint8_t *)auv_mr_addr(s->tx) +
			      (size_t)i * s->msg_max;
			th_fill(src, (size_t)n, msg_seed(t->rank, seq));
			ops[i] = th_op(
			    msg_is_imm(seq) ? AUV_OP_WRITE_IMM : AUV_OP_SEND,
			    src, (uint32_t)n, s->tx,
			    msg_is_imm(seq) ? &s->peer_in : NULL,
			    (seq % (uint64_t)s->window) * s->msg_max, seq);
			if (msg_is_imm(seq))
				ops[i].imm = (uint32_t)(seq * 2654435761u);
			if (seq % SIGNAL_EVERY == SIGNAL_EVERY - 1)
				ops[i].flags = AUV_OP_SIGNALED;
		}
		for (n = 0; n < s->window; n += p) {
			/* Post the first op alone and inline when it fits,
			 * then scribble its buffer: inline data is copied. */
			if (n == 0 && ops[0].len <= t->caps.max_inline) {
				memcpy(inl, ops[0].local, ops[0].len);
				ops[0].local = inl;
				ops[0].local_mr = NULL;
				CHECK_RC(auv_post(s->ep, ops, 1), 1);
				memset(inl, 0xEE, sizeof(inl));
				p = 1;
				continue;
			}
			p = (int)CHECK_OK(
			    auv_post(s->ep, ops + n, s->window - n));
			if (!p)
				reap(s, t->poll_timeout_ms);
		}
		s->tx_seq += (uint64_t)s->window;
		want_signaled = s->tx_seq / SIGNAL_EVERY;
		while (s->rx_done < s->tx_seq ||
		       s->tx_signaled_done < want_signaled)
			reap(s, t->poll_timeout_ms);
		for (i = 0; i < s->window; i++)
			post_rx(s);
	}
	free(ops);
	th_log("part 2: %llu messages each way", (unsigned long long)s->tx_seq);
}

static void part3(struct th *t, struct peer_state *s)
{
	struct auv_op op;
	struct auv_wc wc;
	int n;

	if (s->msg_max >= t->caps.max_send) {
		th_note("part 3 skipped: receive buffers are as large as "
			"max_send (%u)",
			t->caps.max_send);
		return;
	}
	th_phase("part 3: SEND larger than the receive buffer");
	if (t->rank == 1) {
		CHECK_EQ(th_recv_u64(t, 0), 3); /* receives posted */
		th_fill(auv_mr_addr(s->tx), s->msg_max + 1, 3);
		op = th_op(AUV_OP_SEND, auv_mr_addr(s->tx), s->msg_max + 1,
			   s->tx, NULL, 0, 0x3333);
		CHECK_RC(th_do(t, s->ep, &op, NULL), -AUGUR_EREMOTE_INVALID);
		th_send_u64(t, 0, 3);
	} else {
		/* Poll (a provider may need the receiver's progress for
		 * two-sided operations): the receive it lands on fails. */
		th_send_u64(t, 1, 3);
		n = th_poll_wait(t, &wc, 1, t->poll_timeout_ms);
		CHECKF(n == 1,
		       "no completion at the receiver of an oversized "
		       "SEND in %d ms",
		       t->poll_timeout_ms);
		CHECK_EQ(wc.opcode, AUV_OP_RECV);
		CHECKF(wc.status != 0,
		       "an oversized SEND produced a good RECV completion "
		       "(byte_len %u, buffer %u)",
		       wc.byte_len, s->msg_max);
		th_note("receiver of an oversized SEND: %s",
			augur_strerror(wc.status));
		CHECK_EQ(th_recv_u64(t, 1), 3);
	}
}

static int run(struct th *t)
{
	struct peer_state s = {.t = t};
	int peer = 1 - t->rank;
	struct auv_mr_desc d;

	s.msg_max = t->caps.max_send < MAX_MSG ? t->caps.max_send : MAX_MSG;
	CHECKF(s.msg_max >= 16, "max_send %u is too small", t->caps.max_send);
	s.window = (int)(t->caps.rq_depth < 64 ? t->caps.rq_depth : 64);
	s.window -= s.window % SIGNAL_EVERY;
	CHECKF(s.window >= SIGNAL_EVERY, "rq_depth %u is too small",
	       t->caps.rq_depth);

	CHECK_OK(auv_mr_alloc(t->ctx, IN_LEN, AUV_ACCESS_ALL, &s.in));
	CHECK_OK(auv_mr_alloc(t->ctx, (size_t)s.window * s.msg_max,
			      AUV_ACCESS_LOCAL_WRITE, &s.rx));
	CHECK_OK(
	    auv_mr_alloc(t->ctx, 128u << 10, AUV_ACCESS_LOCAL_WRITE, &s.tx));
	auv_mr_desc(s.in, &d);
	th_send(t, peer, &d, sizeof(d));
	th_recv(t, peer, &s.peer_in, sizeof(s.peer_in));
	s.ep = th_connect(t, peer);

	part1(t, &s);
	part2(t, &s);
	th_barrier(t);
	part3(t, &s);
	th_barrier(t);
	return TH_PASS;
}

static const struct th_test test = {
    .name = "conf_imm_send",
    .procs = 2,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
