// SPDX-License-Identifier: MIT
/*
 * conf_atomics - 64-bit CAS and FAA, alone and under contention.
 *
 * Rank 0 owns a region of counters; ranks 1..N-1 (3 by default) hammer it.
 *
 * Sanity (each client on its own word): CAS that matches swaps and returns
 * the old value; CAS that does not match returns the current value and
 * changes nothing; FAA returns the old value; additions wrap modulo 2^64
 * and carry across the 32-bit halves.
 *
 * FAA: every client keeps 16 FAAs in flight: +1 on one counter (recording
 * the returned old values) and a large addend on another, until it has done
 * its share and seen others' FAAs come between its own often enough (real
 * contention).  Afterwards the counters equal the sums, and the old values
 * returned for the +1 counter, gathered from all clients, are exactly
 * 0..total-1 (a permutation: no two FAAs saw the same value).
 *
 * CAS: every client increments a counter by compare-and-swap, retrying with
 * the value it got back, until it has succeeded M times: the counter ends at
 * the sum, and the old values of the successful CASes are a permutation.
 *
 * Lock: a CAS spinlock (0 = free, rank = held) protects a plain counter
 * that holders increment with READ then WRITE; released by CAS(rank -> 0),
 * which must find the holder's rank.  No increment may be lost.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum {
	W_FAA = 0,
	W_BIG = 1,
	W_CAS = 2,
	W_LOCK = 3,
	W_PROT = 4,
	W_SANITY = 16, /* + rank */
	NWORDS = 64,
};

#define WINDOW 16

static uint64_t word(struct th *t, int w)
{
	uint64_t *p = auv_mr_addr(t->mr[0]);

	return __atomic_load_n(&p[w], __ATOMIC_SEQ_CST);
}

static uint64_t big_addend(int rank)
{
	return ((uint64_t)rank << 32) | 0xffffffffu;
}

static uint64_t atomic_op(struct th *t, struct auv_ep *ep, uint8_t opcode,
			  uint64_t *res, struct auv_mr *loc,
			  const struct auv_mr_desc *d, int w, uint64_t cmp,
			  uint64_t swap_add)
{
	struct auv_op op = th_op(opcode, res, 8, loc, d, (uint64_t)w * 8,
				 0xA000 + (uint64_t)w);

	op.compare = cmp;
	op.swap_add = swap_add;
	*res = 0x5555555555555555ull;
	CHECK_RC(th_do(t, ep, &op, NULL), 0);
	return *res;
}

static uint64_t read_word(struct th *t, struct auv_ep *ep, uint64_t *res,
			  struct auv_mr *loc, const struct auv_mr_desc *d,
			  int w)
{
	struct auv_op op = th_op(AUV_OP_READ, res, 8, loc, d, (uint64_t)w * 8,
				 0xB000 + (uint64_t)w);

	*res = 0x5555555555555555ull;
	CHECK_RC(th_do(t, ep, &op, NULL), 0);
	return *res;
}

static void sanity(struct th *t, struct auv_ep *ep, struct auv_mr *loc,
		   const struct auv_mr_desc *d)
{
	uint64_t *res = auv_mr_addr(loc);
	int w = W_SANITY + t->rank;
	uint64_t x = 0x8000000000000001ull ^ ((uint64_t)t->rank << 8);

	th_phase("sanity");
	CHECK_EQ(read_word(t, ep, res, loc, d, w), 0);
	/* CAS that matches: swaps, returns the old value. */
	CHECK_EQ(atomic_op(t, ep, AUV_OP_CAS, res, loc, d, w, 0, x), 0);
	CHECK_EQ(read_word(t, ep, res, loc, d, w), x);
	/* CAS that does not match: returns the current value, no change. */
	CHECK_EQ(atomic_op(t, ep, AUV_OP_CAS, res, loc, d, w, x + 1, 7), x);
	CHECK_EQ(read_word(t, ep, res, loc, d, w), x);
	/* Only the high half differs: still no match. */
	CHECK_EQ(
	    atomic_op(t, ep, AUV_OP_CAS, res, loc, d, w, x ^ (1ull << 40), 7),
	    x);
	CHECK_EQ(read_word(t, ep, res, loc, d, w), x);
	/* FAA returns the old value; adding 2^64-1 subtracts one. */
	CHECK_EQ(atomic_op(t, ep, AUV_OP_FAA, res, loc, d, w, 0, 5), x);
	CHECK_EQ(atomic_op(t, ep, AUV_OP_FAA, res, loc, d, w, 0, ~0ull), x + 5);
	CHECK_EQ(read_word(t, ep, res, loc, d, w), x + 4);
	/* Carry from the low into the high 32 bits, and wrap at 2^64. */
	CHECK_EQ(
	    atomic_op(t, ep, AUV_OP_CAS, res, loc, d, w, x + 4, 0xffffffffull),
	    x + 4);
	CHECK_EQ(atomic_op(t, ep, AUV_OP_FAA, res, loc, d, w, 0, 1),
		 0xffffffffull);
	CHECK_EQ(read_word(t, ep, res, loc, d, w), 0x100000000ull);
	CHECK_EQ(
	    atomic_op(t, ep, AUV_OP_CAS, res, loc, d, w, 0x100000000ull, ~0ull),
	    0x100000000ull);
	CHECK_EQ(atomic_op(t, ep, AUV_OP_FAA, res, loc, d, w, 0, 2), ~0ull);
	CHECK_EQ(read_word(t, ep, res, loc, d, w), 1);
}

/*
 * FAAs with WINDOW in flight, even ones +1 on W_FAA, odd ones a large
 * addend on W_BIG; the old values land in res[].  At least @m, and more
 * (up to @cap) until other clients' FAAs have come between ours at least
 * MIN_GAPS times, so that the test really runs under contention.  Returns
 * the number done.
 */
#define MIN_GAPS 200

static long faa_stream(struct th *t, struct auv_ep *ep, struct auv_mr *loc,
		       const struct auv_mr_desc *d, long m, long cap)
{
	uint64_t *res = auv_mr_addr(loc);
	long posted = 0, done = 0, gaps = 0, prev = -1;
	struct auv_wc wc[WINDOW];
	struct auv_op op;
	int n, i, rc;

	th_phase("FAA stream of %ld..%ld", m, cap);
	for (;;) {
		bool more = posted < m || (gaps < MIN_GAPS && posted < cap);

		if (!more && done == posted)
			break;
		while (more && posted - done < WINDOW) {
			bool big = posted & 1;

			op = th_op(AUV_OP_FAA, &res[posted], 8, loc, d,
				   (big ? W_BIG : W_FAA) * 8, (uint64_t)posted);
			op.swap_add = big ? big_addend(t->rank) : 1;
			op.flags = AUV_OP_SIGNALED;
			rc = (int)CHECK_OK(auv_post(ep, &op, 1));
			if (!rc)
				break; /* full: reap first */
			posted++;
			more = posted < m || (gaps < MIN_GAPS && posted < cap);
		}
		/* Let the other clients run between our windows: with
		 * more clients than cores they would otherwise run one
		 * after the other for whole time slices. */
		sched_yield();
		n = th_poll_wait(t, wc, WINDOW, t->poll_timeout_ms);
		CHECKF(n > 0, "no FAA completion in %d ms (%ld of %ld done)",
		       t->poll_timeout_ms, done, posted);
		for (i = 0; i < n; i++, done++) {
			CHECK_RC(wc[i].status, 0);
			CHECK_EQ(wc[i].opcode, AUV_OP_FAA);
			CHECKF(wc[i].cookie == (uint64_t)done,
			       "FAA completion cookie %llu, expected %ld "
			       "(posting order)",
			       (unsigned long long)wc[i].cookie, done);
			if (done & 1)
				continue;
			/* Our +1 FAAs run in posting order: their old
			 * values rise by one unless others came between. */
			if (prev >= 0) {
				CHECKF(res[done] > (uint64_t)prev,
				       "FAA old values went backwards: %llu "
				       "after %ld",
				       (unsigned long long)res[done], prev);
				gaps += res[done] != (uint64_t)prev + 1;
			}
			prev = (long)res[done];
		}
	}
	th_log("FAA: %ld operations, others came between ours %ld times", done,
	       gaps);
	if (gaps < MIN_GAPS && t->nprocs > 2)
		th_note("FAA: only %ld interleavings with other clients in "
			"%ld operations: little contention",
			gaps, done);
	return done;
}

/* Increment W_CAS by CAS @m times; res[k] = old value of success k. */
static long cas_increments(struct th *t, struct auv_ep *ep, struct auv_mr *loc,
			   const struct auv_mr_desc *d, long m)
{
	uint64_t *res = auv_mr_addr(loc);
	uint64_t guess = 0, old;
	long ok = 0, tries = 0;

	th_phase("CAS increments");
	while (ok < m) {
		old = atomic_op(t, ep, AUV_OP_CAS, &res[ok], loc, d, W_CAS,
				guess, guess + 1);
		tries++;
		if (old == guess) {
			ok++;
			guess = old + 1;
			if (!(ok & 7))
				sched_yield(); /* interleave the clients */
		} else {
			guess = old;
		}
	}
	return tries;
}

static void lock_increments(struct th *t, struct auv_ep *ep, struct auv_mr *loc,
			    const struct auv_mr_desc *d, long m)
{
	uint64_t *res = auv_mr_addr(loc);
	uint64_t me = (uint64_t)t->rank, v;
	struct auv_op op;
	long i, spins = 0;

	for (i = 0; i < m; i++) {
		th_phase("lock round %ld", i);
		while (atomic_op(t, ep, AUV_OP_CAS, &res[0], loc, d, W_LOCK, 0,
				 me) != 0) {
			spins++;
			sched_yield(); /* let the holder run (2 cores) */
		}
		v = read_word(t, ep, &res[1], loc, d, W_PROT);
		if (!(i & 3))
			sched_yield(); /* others spin on a held lock */
		res[2] = v + 1;
		op = th_op(AUV_OP_WRITE, &res[2], 8, loc, d, W_PROT * 8, 0xC0);
		CHECK_RC(th_do(t, ep, &op, NULL), 0);
		CHECKF(atomic_op(t, ep, AUV_OP_CAS, &res[0], loc, d, W_LOCK, me,
				 0) == me,
		       "lock word did not hold our rank at release");
	}
	th_log("lock: %ld rounds, %ld failed acquires", m, spins);
}

static void check_permutation(struct th *t, const uint64_t *olds, long n,
			      const char *what)
{
	uint8_t *seen = calloc((size_t)n, 1);
	long i;

	CHECK(seen != NULL);
	for (i = 0; i < n; i++) {
		CHECKF(olds[i] < (uint64_t)n,
		       "%s: a returned old value %llu is out of 0..%ld", what,
		       (unsigned long long)olds[i], n - 1);
		CHECKF(!seen[olds[i]], "%s: old value %llu was returned twice",
		       what, (unsigned long long)olds[i]);
		seen[olds[i]] = 1;
	}
	free(seen);
}

/* Gather every client's list of old values (count, then values) and the
 * sum of its other additions. */
static uint64_t *gather(struct th *t, long *total, uint64_t *sum)
{
	uint64_t *all = NULL, cnt;
	long n = 0;
	int r;

	*sum = 0;
	for (r = 1; r < t->nprocs; r++) {
		*sum += th_recv_u64(t, r);
		cnt = th_recv_u64(t, r);
		CHECK(cnt < (1u << 24));
		all = realloc(all, (size_t)(n + (long)cnt) * 8 + 8);
		CHECK(all != NULL);
		th_recv(t, r, all + n, (size_t)cnt * 8);
		n += (long)cnt;
	}
	*total = n;
	return all;
}

static int hub(struct th *t)
{
	long m_cas, m_lock, total, i;
	int clients = t->nprocs - 1, r;
	uint64_t *olds, big;
	struct auv_mr_desc d;

	CHECK_OK(auv_mr_alloc(t->ctx, NWORDS * 8, AUV_ACCESS_ALL, &t->mr[0]));
	auv_mr_desc(t->mr[0], &d);
	th_connect_star(t);
	for (r = 1; r < t->nprocs; r++)
		th_send(t, r, &d, sizeof(d));

	th_barrier(t); /* sanity done */
	for (r = 1; r < t->nprocs; r++)
		CHECK_EQ(word(t, W_SANITY + r), 1);

	th_phase("FAA results");
	th_barrier(t);
	olds = gather(t, &total, &big);
	CHECK_EQ(word(t, W_FAA), (uint64_t)total);
	CHECK_EQ(word(t, W_BIG), big);
	check_permutation(t, olds, total, "FAA +1");
	free(olds);

	th_phase("CAS results");
	th_barrier(t);
	m_cas = (long)th_recv_u64(t, 1);
	olds = gather(t, &total, &big);
	CHECK_EQ(big, 0);
	CHECK_EQ(total, m_cas * clients);
	CHECK_EQ(word(t, W_CAS), (uint64_t)total);
	check_permutation(t, olds, total, "CAS increment");
	free(olds);

	th_phase("lock results");
	th_barrier(t);
	m_lock = (long)th_recv_u64(t, 1);
	CHECK_EQ(word(t, W_LOCK), 0);
	CHECKF(word(t, W_PROT) == (uint64_t)(m_lock * clients),
	       "lock-protected counter is %llu, expected %ld: increments "
	       "were lost (the lock did not exclude)",
	       (unsigned long long)word(t, W_PROT), m_lock * clients);
	/* Nobody wrote anywhere else. */
	for (i = W_PROT + 1; i < NWORDS; i++)
		if (i < W_SANITY + 1 || i >= W_SANITY + t->nprocs)
			CHECK_EQ(word(t, (int)i), 0);
	th_barrier(t);
	return TH_PASS;
}

static int client(struct th *t)
{
	long m_faa = th_scaled(t, 60000), m_cas = th_scaled(t, 20000);
	long m_lock = th_scaled(t, 3000), tries, i, k, done;
	struct auv_mr *loc;
	struct auv_mr_desc d;
	struct auv_ep *ep;
	uint64_t *res, *mine;

	CHECK_OK(auv_mr_alloc(t->ctx, (size_t)(4 * m_faa + m_cas + 8) * 8,
			      AUV_ACCESS_LOCAL_WRITE, &loc));
	res = auv_mr_addr(loc);
	th_connect_star(t);
	ep = t->ep[0];
	th_recv(t, 0, &d, sizeof(d));
	CHECK(d.access & AUV_ACCESS_REMOTE_ATOMIC);

	sanity(t, ep, loc, &d);
	th_barrier(t);

	/* Everybody starts hammering at once. */
	done = faa_stream(t, ep, loc, &d, m_faa, 4 * m_faa);
	th_barrier(t);
	mine = malloc((size_t)done * 8);
	CHECK(mine != NULL);
	for (i = 0, k = 0; i < done; i += 2)
		mine[k++] = res[i];
	th_send_u64(t, 0, (uint64_t)(done / 2) * big_addend(t->rank));
	th_send_u64(t, 0, (uint64_t)k);
	th_send(t, 0, mine, (size_t)k * 8);
	free(mine);

	tries = cas_increments(t, ep, loc, &d, m_cas);
	th_log("CAS: %ld successes in %ld tries", m_cas, tries);
	th_barrier(t);
	if (t->rank == 1)
		th_send_u64(t, 0, (uint64_t)m_cas);
	th_send_u64(t, 0, 0);
	th_send_u64(t, 0, (uint64_t)m_cas);
	th_send(t, 0, res, (size_t)m_cas * 8);

	lock_increments(t, ep, loc, &d, m_lock);
	th_barrier(t);
	if (t->rank == 1)
		th_send_u64(t, 0, (uint64_t)m_lock);
	th_barrier(t);
	CHECK_OK(auv_mr_dereg(loc));
	return TH_PASS;
}

static int run(struct th *t)
{
	return t->rank == 0 ? hub(t) : client(t);
}

static const struct th_test test = {
    .name = "conf_atomics",
    .procs = 4,
    .min_procs = 2,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
