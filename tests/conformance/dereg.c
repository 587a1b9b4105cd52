// SPDX-License-Identifier: MIT
/*
 * conf_dereg - a deregistered region is out of reach; the others are not.
 *
 * Rank 0 (target) owns regions A and B.  After it deregisters A and says so
 * out of band, the client's READ, WRITE and FAA on A each complete with
 * -AUGUR_EREMOTE_ACCESS (reconnecting after each, as the endpoint may be in
 * error), while B stays readable and writable with correct data.  A new
 * region C of A's size is then allocated (likely at A's old address): A's
 * old key must not reach it, and C is reachable with its own.  Finally
 * rounds of allocate / use / deregister / use-again check that no revoked
 * key ever works, also not once a new region may have taken its place.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define RLEN (64u << 10)

enum { M_A, M_B, M_C, M_CYCLE };

enum {
	CMD_DEREG = TH_CMD_USER, /* mr: which */
	CMD_ALLOC,		 /* mr: which; len; arg: fill pattern */
};

static uint64_t serve_user(struct th *t, int peer, const struct th_cmd *c)
{
	CHECK(c->mr < TH_MAX_MRS);
	switch (c->op) {
	case CMD_DEREG:
		CHECK(t->mr[c->mr] != NULL);
		CHECK_OK(auv_mr_dereg(t->mr[c->mr]));
		t->mr[c->mr] = NULL;
		return 0;
	case CMD_ALLOC:
		CHECK(t->mr[c->mr] == NULL);
		CHECK_OK(auv_mr_alloc(t->ctx, c->len, AUV_ACCESS_ALL,
				      &t->mr[c->mr]));
		th_fill(auv_mr_addr(t->mr[c->mr]), c->len, c->arg);
		return 0;
	}
	th_fail_at(__FILE__, __LINE__, 0, "unknown command %u", c->op);
}

static int target(struct th *t)
{
	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &t->mr[M_A]));
	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_ALL, &t->mr[M_B]));
	th_fill(auv_mr_addr(t->mr[M_A]), RLEN, 0xA);
	th_fill(auv_mr_addr(t->mr[M_B]), RLEN, 0xB);
	th_connect(t, 1);
	th_serve(t, 1, serve_user);
	return TH_PASS;
}

struct client {
	struct th *t;
	struct auv_mr *loc;
	uint8_t *l;
};

/* An operation on a revoked region: error completion, then reconnect. */
static void expect_revoked(struct client *c, uint8_t opcode,
			   const struct auv_mr_desc *d, const char *what)
{
	struct th *t = c->t;
	struct auv_op op;
	struct auv_wc wc;
	int rc;

	th_phase("%s", what);
	memset(c->l, 0xCC, 4096);
	op = th_op(opcode, c->l + 8, opcode == AUV_OP_FAA ? 8 : 512, c->loc, d,
		   0, 0xDEAD);
	op.swap_add = 1;
	rc = th_do(t, t->ep[0], &op, &wc);
	CHECKF(rc == -AUGUR_EREMOTE_ACCESS,
	       "%s: status %d (%s), expected -AUGUR_EREMOTE_ACCESS", what, rc,
	       augur_strerror(rc));
	if (opcode == AUV_OP_READ)
		CHECKF(th_verify_byte(c->l, 4096, 0xCC, "READ buffer") == 0,
		       "%s: the failed READ wrote into its buffer", what);
	th_call_reconnect(t, 0);
}

static void check_ok(struct client *c, int mr, const struct auv_mr_desc *d,
		     uint64_t seed, const char *what)
{
	struct th *t = c->t;
	struct auv_op op;

	th_phase("%s: READ and WRITE", what);
	memset(c->l, 0, RLEN);
	op = th_op(AUV_OP_READ, c->l, RLEN, c->loc, d, 0, 1);
	CHECKF(th_do(t, t->ep[0], &op, NULL) == 0, "%s: READ failed", what);
	CHECKF(th_verify(c->l, RLEN, seed, what) == 0,
	       "%s: READ returned wrong data", what);
	th_fill(c->l, 1000, seed + 0x100);
	op = th_op(AUV_OP_WRITE, c->l, 1000, c->loc, d, 4000, 2);
	CHECKF(th_do(t, t->ep[0], &op, NULL) == 0, "%s: WRITE failed", what);
	CHECKF(th_call(t, 0, TH_CMD_VERIFY, (uint32_t)mr, 4000, 1000,
		       seed + 0x100) == 0,
	       "%s: WRITE did not land", what);
	/* Put the pattern back for later READs. */
	CHECK_EQ(th_call(t, 0, TH_CMD_FILL, (uint32_t)mr, 0, RLEN, seed), 0);
}

static int client(struct th *t)
{
	struct auv_mr_desc a, b, cc, x, prev = {0};
	struct client c = {.t = t};
	long cycles = th_scaled(t, 40), i;
	int same = 0;

	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_LOCAL_WRITE, &c.loc));
	c.l = auv_mr_addr(c.loc);
	th_connect(t, 0);
	th_call_desc(t, 0, M_A, &a);
	th_call_desc(t, 0, M_B, &b);
	check_ok(&c, M_A, &a, 0xA, "region A before dereg");
	check_ok(&c, M_B, &b, 0xB, "region B before dereg");

	CHECK_EQ(th_call(t, 0, CMD_DEREG, M_A, 0, 0, 0), 0);
	expect_revoked(&c, AUV_OP_READ, &a, "READ of deregistered A");
	expect_revoked(&c, AUV_OP_WRITE, &a, "WRITE to deregistered A");
	expect_revoked(&c, AUV_OP_FAA, &a, "FAA on deregistered A");
	check_ok(&c, M_B, &b, 0xB, "region B after A's dereg");

	/* A new region of the same size: A's old key must not reach it. */
	CHECK_EQ(th_call(t, 0, CMD_ALLOC, M_C, 0, RLEN, 0xC), 0);
	th_call_desc(t, 0, M_C, &cc);
	if (cc.addr == a.addr)
		th_log("region C took A's address (rkey %#x, A's was %#x)",
		       cc.rkey, a.rkey);
	CHECKF(!(cc.addr == a.addr && cc.rkey == a.rkey),
	       "a new region got the address and key of a deregistered one: "
	       "stale descriptors reach it");
	expect_revoked(&c, AUV_OP_WRITE, &a,
		       "WRITE with A's old key after "
		       "C took its place");
	CHECKF(th_call(t, 0, TH_CMD_VERIFY, M_C, 0, RLEN, 0xC) == 0,
	       "a WRITE with a revoked key changed a new region");
	check_ok(&c, M_C, &cc, 0xC, "region C");
	check_ok(&c, M_B, &b, 0xB, "region B at the end");

	/* Each cycle: a new region (which may take the slot, address or
	 * key space of the one deregistered just before), usable; the
	 * previous one's key must not reach it; deregistered, unusable. */
	for (i = 0; i < cycles; i++) {
		th_phase("cycle %ld", i);
		CHECK_EQ(th_call(t, 0, CMD_ALLOC, M_CYCLE, 0, RLEN,
				 0x1000 + (uint64_t)i),
			 0);
		th_call_desc(t, 0, M_CYCLE, &x);
		same += x.addr == prev.addr || x.addr == a.addr;
		check_ok(&c, M_CYCLE, &x, 0x1000 + (uint64_t)i, "cycle region");
		if (i > 0) {
			expect_revoked(&c, i & 1 ? AUV_OP_WRITE : AUV_OP_FAA,
				       &prev,
				       "the previous cycle's revoked key");
			CHECKF(th_call(t, 0, TH_CMD_VERIFY, M_CYCLE, 0, RLEN,
				       0x1000 + (uint64_t)i) == 0,
			       "cycle %ld: an operation with a revoked key "
			       "changed the new region",
			       i);
		}
		CHECK_EQ(th_call(t, 0, CMD_DEREG, M_CYCLE, 0, 0, 0), 0);
		expect_revoked(&c, i & 1 ? AUV_OP_READ : AUV_OP_WRITE, &x,
			       "operation on a just deregistered region");
		prev = x;
	}
	th_log("%ld alloc/dereg cycles (%d reused an earlier address)", cycles,
	       same);
	check_ok(&c, M_B, &b, 0xB, "region B after the cycles");
	CHECK_EQ(th_call(t, 0, TH_CMD_DONE, 0, 0, 0, 0), 0);
	return TH_PASS;
}

static int run(struct th *t)
{
	return t->rank == 0 ? target(t) : client(t);
}

static const struct th_test test = {
    .name = "conf_dereg",
    .procs = 2,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
