// SPDX-License-Identifier: MIT
/*
 * conf_waw_order - write-after-write ordering on one endpoint.
 *
 * Part A: rounds of 64 WRITEs to the same remote bytes (inline and
 * registered, only the last one signaled); once the last completes, a READ
 * must see the last WRITE's data, and the one completion must be the last
 * WRITE's (unsignaled operations report nothing).
 *
 * Part B: rounds of WRITEs filling a 16 KiB area at random chunk
 * boundaries, plus 8 WRITEs of a counter to one word, then a WRITE_IMM
 * carrying the area's last chunk and the round number.  On that RECV
 * completion the receiver must already see every byte of the round and the
 * counter's last value (a WRITE_IMM is delivered only after all earlier
 * WRITEs are visible).  Rounds are pipelined over 32 areas, so up to 32
 * rounds (~600 operations) are in flight.
 *
 * Rank 0: target/receiver.  Rank 1: writer.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define A_SLOT 0u
#define A_LEN_BIG 4096u
#define A_WRITES 64
#define B_WORDS 4096u
#define NAREA 32
#define AREA (16u << 10)
#define B_AREAS (64u << 10)
#define TGT_LEN (B_AREAS + NAREA * AREA)
#define CHUNKS 16
#define COUNTER_WRITES 8

static uint64_t area_seed(long r)
{
	return 0xB000 + (uint64_t)r;
}

/* --- Part A ------------------------------------------------------------- */

static void part_a_writer(struct th *t, struct auv_ep *ep,
			  const struct auv_mr_desc *d, struct auv_mr *loc)
{
	long rounds = th_scaled(t, 300), r;
	uint8_t *src = auv_mr_addr(loc);
	uint8_t *rd = src + A_WRITES * A_LEN_BIG;
	struct auv_op ops[A_WRITES];
	struct auv_wc wc;
	uint32_t len;
	int i, n;

	for (r = 0; r < rounds; r++) {
		/* Odd rounds: 4 KiB registered WRITEs; even: small ones,
		 * inline (no local_mr) where the provider allows. */
		len = (r & 1) ? A_LEN_BIG : 64;
		th_phase("part A round %ld (%d WRITEs of %u bytes)", r,
			 A_WRITES, len);
		for (i = 0; i < A_WRITES; i++) {
			uint8_t *s = src + (size_t)i * A_LEN_BIG;

			th_fill(s, len, (uint64_t)r * 1000 + (uint64_t)i);
			ops[i] = th_op(AUV_OP_WRITE, s, len, loc, d, A_SLOT,
				       (uint64_t)r * 1000 + (uint64_t)i);
			if (!(r & 1) && len <= t->caps.max_inline && (i & 1))
				ops[i].local_mr = NULL;
		}
		ops[A_WRITES - 1].flags = AUV_OP_SIGNALED;
		for (n = 0; n < A_WRITES;) {
			int p =
			    (int)CHECK_OK(auv_post(ep, ops + n, A_WRITES - n));

			/* Nothing else is outstanding: only a send queue
			 * shorter than 64 could be full. */
			CHECKF(p > 0,
			       "auv_post posted nothing on an idle "
			       "endpoint (sq_depth %u)",
			       t->caps.sq_depth);
			n += p;
		}
		th_poll_n(t, &wc, 1, 1);
		CHECK_RC(wc.status, 0);
		CHECKF(wc.cookie == ops[A_WRITES - 1].cookie,
		       "first completion has cookie %llu, expected the last "
		       "(signaled) WRITE's %llu",
		       (unsigned long long)wc.cookie,
		       (unsigned long long)ops[A_WRITES - 1].cookie);
		memset(rd, 0, len);
		ops[0] =
		    th_op(AUV_OP_READ, rd, len, loc, d, A_SLOT, ~(uint64_t)r);
		CHECK_RC(th_do(t, ep, &ops[0], NULL), 0);
		CHECKF(th_verify(rd, len, (uint64_t)r * 1000 + A_WRITES - 1,
				 "same-address WRITEs") == 0,
		       "round %ld: READ after %d WRITEs to the same address "
		       "does not see the last one",
		       r, A_WRITES);
	}
	th_log("part A: %ld rounds", rounds);
}

/* --- Part B ------------------------------------------------------------- */

struct b_writer {
	struct th *t;
	struct auv_ep *ep;
	long reaped_imm; /* WRITE_IMM completions reaped (rounds) */
};

static void b_reap(struct b_writer *w, int min)
{
	struct auv_wc wc[32];
	int n, i, got = 0;

	do {
		n = th_poll_wait(w->t, wc, 32, min ? w->t->poll_timeout_ms : 0);
		CHECKF(n > 0 || !min, "writer: no completion in %d ms",
		       w->t->poll_timeout_ms);
		for (i = 0; i < n; i++) {
			CHECK_RC(wc[i].status, 0);
			CHECKF(wc[i].cookie == (uint64_t)w->reaped_imm,
			       "completion cookie %llu, expected round %ld's "
			       "WRITE_IMM (only those are signaled)",
			       (unsigned long long)wc[i].cookie, w->reaped_imm);
			CHECK_EQ(wc[i].opcode, AUV_OP_WRITE_IMM);
			w->reaped_imm++;
		}
		got += n;
	} while (got < min);
}

static void part_b_writer(struct th *t, struct auv_ep *ep,
			  const struct auv_mr_desc *d, struct auv_mr *loc)
{
	long rounds = th_scaled(t, 1500), r;
	struct b_writer w = {.t = t, .ep = ep};
	struct auv_op ops[CHUNKS + COUNTER_WRITES + 1];
	uint64_t *ctr =
	    (uint64_t *)((uint8_t *)auv_mr_addr(loc) + NAREA * AREA);
	uint32_t cut[CHUNKS + 1];
	uint8_t *src;
	int i, j, n, nops, p;

	th_send_u64(t, 0, (uint64_t)rounds);
	CHECK_EQ(th_recv_u64(t, 0), 0x4eadu); /* receives are posted */
	for (r = 0; r < rounds; r++) {
		th_phase("part B round %ld", r);
		if (r >= NAREA) {
			/* Area r % NAREA is free again once the receiver
			 * has checked round r - NAREA and our WRITE_IMM of
			 * that round has completed here. */
			CHECK_EQ(th_recv_u64(t, 0), (uint64_t)(r - NAREA));
			if (w.reaped_imm <= r - NAREA)
				b_reap(&w, (int)(r - NAREA + 1 - w.reaped_imm));
		}
		src = (uint8_t *)auv_mr_addr(loc) + (r % NAREA) * AREA;
		th_fill(src, AREA, area_seed(r));
		/* Random chunk boundaries; chunk 0 is often small. */
		cut[0] = 0;
		cut[CHUNKS] = AREA;
		for (i = 1; i < CHUNKS; i++)
			cut[i] = (uint32_t)(th_rand(t) % (AREA - 1)) + 1;
		for (i = 1; i < CHUNKS; i++) /* insertion sort */
			for (j = i; j > 1 && cut[j] < cut[j - 1]; j--) {
				uint32_t x = cut[j];

				cut[j] = cut[j - 1];
				cut[j - 1] = x;
			}
		nops = 0;
		for (i = 0; i < CHUNKS - 1; i++) {
			uint32_t len = cut[i + 1] - cut[i];

			if (!len)
				continue;
			ops[nops] = th_op(
			    AUV_OP_WRITE, src + cut[i], len, loc, d,
			    B_AREAS + (r % NAREA) * AREA + cut[i], 1u << 30);
			if (len <= t->caps.max_inline && (th_rand(t) & 1))
				ops[nops].local_mr = NULL;
			nops++;
		}
		for (i = 0; i < COUNTER_WRITES; i++) {
			uint64_t *c = ctr + (r % NAREA) * COUNTER_WRITES + i;

			*c = (uint64_t)r * 100 + (uint64_t)i + 1;
			ops[nops++] =
			    th_op(AUV_OP_WRITE, c, 8, loc, d,
				  B_WORDS + (r % NAREA) * 8, 1u << 30);
		}
		/* The notification carries the area's last chunk. */
		ops[nops] =
		    th_op(AUV_OP_WRITE_IMM, src + cut[CHUNKS - 1],
			  AREA - cut[CHUNKS - 1], loc, d,
			  B_AREAS + (r % NAREA) * AREA + cut[CHUNKS - 1],
			  (uint64_t)r);
		ops[nops].imm = (uint32_t)r;
		ops[nops].flags = AUV_OP_SIGNALED;
		nops++;
		for (n = 0; n < nops; n += p) {
			p = (int)CHECK_OK(auv_post(ep, ops + n, nops - n));
			if (!p) /* full queue: make room, then go on */
				b_reap(&w, 1);
		}
		b_reap(&w, 0);
	}
	th_phase("part B: draining");
	if (w.reaped_imm < rounds)
		b_reap(&w, (int)(rounds - w.reaped_imm));
	for (r = rounds - NAREA < 0 ? 0 : rounds - NAREA; r < rounds; r++)
		CHECK_EQ(th_recv_u64(t, 0), (uint64_t)r);
	th_log("part B: %ld rounds", rounds);
}

static void part_b_receiver(struct th *t, struct auv_ep *ep)
{
	uint8_t *mem = auv_mr_addr(t->mr[0]);
	struct auv_mr *rmr;
	uint8_t *rbuf;
	long rounds, r;
	uint64_t next_cookie = 0, posted = 0, word;
	struct auv_wc wc;
	char what[64];
	int i;

	rounds = (long)th_recv_u64(t, 1);
	CHECK_OK(
	    auv_mr_alloc(t->ctx, NAREA * 64, AUV_ACCESS_LOCAL_WRITE, &rmr));
	rbuf = auv_mr_addr(rmr);
	for (i = 0; i < NAREA; i++, posted++)
		CHECK_OK(auv_post_recv(ep, rbuf + (posted % NAREA) * 64, 64,
				       rmr, 0xC000 + posted));
	th_send_u64(t, 1, 0x4ead);
	for (r = 0; r < rounds; r++) {
		th_phase("part B: waiting for round %ld's WRITE_IMM", r);
		th_poll_n(t, &wc, 1, 1);
		CHECK_RC(wc.status, 0);
		CHECK(wc.ep == ep);
		CHECK_EQ(wc.opcode, AUV_OP_RECV);
		CHECKF(wc.flags & AUV_WC_IMM, "RECV completion of a WRITE_IMM "
					      "lacks AUV_WC_IMM");
		CHECKF(wc.imm == (uint32_t)r, "imm %u, expected round %ld",
		       wc.imm, r);
		CHECK_EQ(wc.byte_len, 0);
		CHECK_EQ(wc.cookie, 0xC000 + next_cookie); /* FIFO */
		next_cookie++;
		snprintf(what, sizeof(what), "round %ld area", r);
		CHECKF(th_verify(mem + B_AREAS + (r % NAREA) * AREA, AREA,
				 area_seed(r), what) == 0,
		       "round %ld: on the WRITE_IMM's RECV completion, not "
		       "all of the round's data (earlier WRITEs, the "
		       "WRITE_IMM's own) is visible",
		       r);
		memcpy(&word, mem + B_WORDS + (r % NAREA) * 8, 8);
		CHECKF(word == (uint64_t)r * 100 + COUNTER_WRITES,
		       "round %ld: same-address word is %llu, expected the "
		       "last of %d WRITEs (%llu)",
		       r, (unsigned long long)word, COUNTER_WRITES,
		       (unsigned long long)r * 100 + COUNTER_WRITES);
		CHECK_OK(auv_post_recv(ep, rbuf + (posted % NAREA) * 64, 64,
				       rmr, 0xC000 + posted));
		posted++;
		th_send_u64(t, 1, (uint64_t)r);
	}
	CHECK_OK(auv_mr_dereg(rmr));
}

static int run(struct th *t)
{
	struct auv_mr_desc d;
	struct auv_mr *loc;
	struct auv_ep *ep;

	if (t->rank == 0) {
		CHECK_OK(
		    auv_mr_alloc(t->ctx, TGT_LEN, AUV_ACCESS_ALL, &t->mr[0]));
		ep = th_connect(t, 1);
		auv_mr_desc(t->mr[0], &d);
		th_send(t, 1, &d, sizeof(d));
		CHECK_EQ(th_recv_u64(t, 1), 0xA); /* part A done */
		part_b_receiver(t, ep);
		CHECK_EQ(th_recv_u64(t, 1), 0xE); /* all done */
		return TH_PASS;
	}
	/* Writer: part A needs 64 x 4 KiB + 4 KiB, part B 32 areas and
	 * counters; one region serves both in turn. */
	CHECK_OK(auv_mr_alloc(t->ctx, NAREA * AREA + NAREA * COUNTER_WRITES * 8,
			      AUV_ACCESS_LOCAL_WRITE, &loc));
	ep = th_connect(t, 0);
	th_recv(t, 0, &d, sizeof(d));
	CHECK_EQ(d.len, TGT_LEN);
	part_a_writer(t, ep, &d, loc);
	th_send_u64(t, 0, 0xA);
	part_b_writer(t, ep, &d, loc);
	th_send_u64(t, 0, 0xE);
	CHECK_OK(auv_mr_dereg(loc));
	return TH_PASS;
}

static const struct th_test test = {
    .name = "conf_waw_order",
    .procs = 2,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
