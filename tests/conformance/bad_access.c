// SPDX-License-Identifier: MIT
/*
 * conf_bad_access - access errors are reported, never carried out.
 *
 * Local misuse (first, on a healthy endpoint): auv_post() and
 * auv_post_recv() refuse malformed requests with -EINVAL or
 * -AUGUR_ELOCAL_ACCESS without posting anything (a batch with one bad
 * operation posts none of it: no completion, no remote effect), set
 * auv_last_error(), and leave the endpoint working.
 *
 * Remote errors: a bad remote key, an address just past the region's end,
 * a length crossing it, an address before its start, and a region lacking
 * the right the operation needs (WRITE without REMOTE_WRITE, READ without
 * REMOTE_READ, CAS/FAA without REMOTE_ATOMIC) each complete with
 * -AUGUR_EREMOTE_ACCESS and the operation's cookie (even when unsignaled),
 * leave the target's memory and the READ's local buffer unchanged, and
 * neither crash nor hang.  The endpoint may then be in error (RC
 * semantics): each case reconnects, and a good READ afterwards proves the
 * target is fine.
 *
 * Rank 0: target (th_serve) with three regions: all rights, read-only,
 * write-only.  Rank 1: client.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define RLEN 4096u  /* each target region */
#define LLEN 16384u /* the client's local region */

enum { R_ALL, R_RO, R_WO, NREG };

static const unsigned int reg_access[NREG] = {
    [R_ALL] = AUV_ACCESS_ALL,
    [R_RO] = AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_READ,
    [R_WO] = AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_WRITE,
};

static uint64_t reg_seed(int r)
{
	return 0xA0 + (uint64_t)r;
}

static int target(struct th *t)
{
	int r;

	for (r = 0; r < NREG; r++) {
		CHECK_OK(auv_mr_alloc(t->ctx, RLEN, reg_access[r], &t->mr[r]));
		th_fill(auv_mr_addr(t->mr[r]), RLEN, reg_seed(r));
	}
	th_connect(t, 1);
	th_serve(t, 1, NULL);
	return TH_PASS;
}

struct client {
	struct th *t;
	struct auv_mr_desc d[NREG];
	struct auv_mr *loc;   /* LOCAL_WRITE */
	struct auv_mr *noloc; /* no LOCAL_WRITE */
	uint8_t *buf;
};

static void regions_intact(struct client *c, const char *after)
{
	int r;

	for (r = 0; r < NREG; r++)
		CHECKF(th_call(c->t, 0, TH_CMD_VERIFY, (uint32_t)r, 0, RLEN,
			       reg_seed(r)) == 0,
		       "after %s: target region %d was modified", after, r);
}

static void good_read(struct client *c, const char *after)
{
	uint8_t want[64];
	struct auv_op op;
	unsigned int i;

	memset(c->buf, 0, 64);
	op = th_op(AUV_OP_READ, c->buf, 64, c->loc, &c->d[R_ALL], 64, 0x600D);
	CHECKF(th_do(c->t, c->t->ep[0], &op, NULL) == 0,
	       "after %s: a good READ failed", after);
	for (i = 0; i < 64; i++)
		want[i] = th_pattern_byte(reg_seed(R_ALL), 64 + i);
	CHECKF(memcmp(c->buf, want, 64) == 0,
	       "after %s: a good READ returned wrong data", after);
}

/* -------------------------------------------------------------------------- */

static void expect_local(struct client *c, const struct auv_op *ops, int n,
			 int want, const char *what)
{
	int rc = auv_post(c->t->ep[0], ops, n);

	CHECKF(rc == want, "%s: auv_post returned %d (%s), expected %d (%s)",
	       what, rc, rc < 0 ? augur_strerror(rc) : "a count", want,
	       augur_strerror(want));
	CHECKF(strlen(auv_last_error()) > 0, "%s: auv_last_error() is empty",
	       what);
}

static void local_misuse(struct client *c)
{
	struct th *t = c->t;
	struct auv_ep *ep = t->ep[0];
	uint8_t *l = auv_mr_addr(c->loc);
	struct auv_ctx *other;
	struct auv_mr *other_mr;
	struct auv_op op, batch[3];
	struct auv_wc wc;
	const struct auv_mr_desc *d = &c->d[R_ALL];
	int rc;

	th_phase("local misuse");
#define BASE(opc) th_op(opc, l, 8, c->loc, d, 0, 0x1000)
	op = BASE(AUV_OP_WRITE);
	op.local = l + LLEN - 4; /* crosses the local region's end */
	expect_local(c, &op, 1, -AUGUR_ELOCAL_ACCESS,
		     "local buffer crossing "
		     "its region");
	op = BASE(AUV_OP_READ);
	op.local = l - 8; /* before it */
	expect_local(c, &op, 1, -AUGUR_ELOCAL_ACCESS,
		     "local buffer before "
		     "its region");
	op = BASE(AUV_OP_READ);
	op.local = auv_mr_addr(c->noloc);
	op.local_mr = c->noloc;
	expect_local(c, &op, 1, -AUGUR_ELOCAL_ACCESS,
		     "READ into a region without LOCAL_WRITE");
	op = BASE(AUV_OP_FAA);
	op.local = auv_mr_addr(c->noloc);
	op.local_mr = c->noloc;
	expect_local(c, &op, 1, -AUGUR_ELOCAL_ACCESS,
		     "FAA result into a region without LOCAL_WRITE");

	op = BASE(0);
	expect_local(c, &op, 1, -EINVAL, "opcode 0");
	op = BASE(99);
	expect_local(c, &op, 1, -EINVAL, "opcode 99");
	op = BASE(AUV_OP_RECV);
	expect_local(c, &op, 1, -EINVAL, "opcode RECV");
	op = BASE(AUV_OP_WRITE);
	op.len = 0;
	expect_local(c, &op, 1, -EINVAL, "length 0");
	op = BASE(AUV_OP_WRITE);
	op.flags = 0x80;
	expect_local(c, &op, 1, -EINVAL, "unknown flag");
	op = BASE(AUV_OP_WRITE);
	op.local = NULL;
	expect_local(c, &op, 1, -EINVAL, "NULL local buffer");
	if (t->caps.max_msg < UINT32_MAX) {
		op = BASE(AUV_OP_READ);
		op.len = t->caps.max_msg + 1;
		expect_local(c, &op, 1, -EINVAL, "length above max_msg");
	}
	if (t->caps.max_send < RLEN) {
		op = BASE(AUV_OP_SEND);
		op.len = t->caps.max_send + 1;
		expect_local(c, &op, 1, -EINVAL, "SEND above max_send");
	}
	op = BASE(AUV_OP_WRITE);
	op.len = t->caps.max_inline + 1;
	op.local_mr = NULL;
	expect_local(c, &op, 1, -EINVAL, "non-inline WRITE without local_mr");
	op = BASE(AUV_OP_READ);
	op.local_mr = NULL;
	expect_local(c, &op, 1, -EINVAL, "READ without local_mr");
	op = BASE(AUV_OP_CAS);
	op.len = 4;
	expect_local(c, &op, 1, -EINVAL, "CAS of 4 bytes");
	op = BASE(AUV_OP_FAA);
	op.local = l + 4;
	expect_local(c, &op, 1, -EINVAL, "FAA to a misaligned local buffer");
	op = BASE(AUV_OP_CAS);
	op.remote_addr += 4;
	expect_local(c, &op, 1, -EINVAL, "CAS on a misaligned remote address");

	/* A region of another context. */
	CHECK_OK(auv_ctx_open(&t->opts, &other));
	CHECK_OK(auv_mr_alloc(other, RLEN, AUV_ACCESS_LOCAL_WRITE, &other_mr));
	op = BASE(AUV_OP_WRITE);
	op.local = auv_mr_addr(other_mr);
	op.local_mr = other_mr;
	op.len = RLEN;
	expect_local(c, &op, 1, -EINVAL, "local_mr of another context");
	auv_ctx_close(other);

	/* Bad arguments. */
	op = BASE(AUV_OP_WRITE);
	expect_local(c, &op, -1, -EINVAL, "n = -1");
	expect_local(c, NULL, 1, -EINVAL, "ops NULL");
	CHECK_RC(auv_post(ep, &op, 0), 0);
	CHECK_RC(auv_post(NULL, &op, 1), -EINVAL);

	/* One bad operation in a batch: nothing of it is carried out. */
	th_fill(l, 64, 0xBAD);
	batch[0] = th_op(AUV_OP_WRITE, l, 64, c->loc, d, 128, 0x2001);
	batch[0].flags = AUV_OP_SIGNALED;
	batch[1] = th_op(AUV_OP_WRITE, l, 64, c->loc, d, 256, 0x2002);
	batch[1].flags = AUV_OP_SIGNALED;
	batch[2] = BASE(AUV_OP_READ);
	batch[2].len = 0;
	expect_local(c, batch, 3, -EINVAL, "batch with a bad third op");
	batch[2] = BASE(AUV_OP_READ);
	batch[2].local = l + LLEN; /* outside */
	expect_local(c, batch, 3, -AUGUR_ELOCAL_ACCESS,
		     "batch with a third op outside its region");
	CHECK_EQ(auv_poll(t->ctx, &wc, 1), 0);
	regions_intact(c, "refused batches");

	/* Receives. */
	rc = auv_post_recv(ep, l + LLEN - 8, 64, c->loc, 1);
	CHECK_RC(rc, -AUGUR_ELOCAL_ACCESS);
	rc = auv_post_recv(ep, auv_mr_addr(c->noloc), 64, c->noloc, 1);
	CHECK_RC(rc, -AUGUR_ELOCAL_ACCESS);
	CHECK_RC(auv_post_recv(ep, l, 0, c->loc, 1), -EINVAL);
	CHECK_RC(auv_post_recv(ep, l, 64, NULL, 1), -EINVAL);
	CHECK_RC(auv_post_recv(ep, NULL, 64, c->loc, 1), -EINVAL);

	/* The endpoint still works, and nothing completed meanwhile. */
	CHECK_EQ(auv_ep_status(ep), 0);
	good_read(c, "local misuse");
#undef BASE
}

/* -------------------------------------------------------------------------- */

struct rcase {
	const char *name;
	uint8_t opcode;
	int reg;
	int64_t off; /* from the region's start */
	uint32_t len;
	unsigned int flags;
	uint32_t key; /* BADKEY: which bad key */
};

enum { BADKEY = 1, UNSIGNALED = 2 };

/* A key that is none of the target's: the valid one with bits flipped
 * (low bits: another key of the same region slot on most providers; high
 * bits: another slot or generation). */
static uint32_t bad_rkey(const struct client *c, uint32_t how)
{
	static const uint32_t flips[] = {0x5a5a5a5au, 1u, 1u << 8, 1u << 20,
					 1u << 31};
	uint32_t k = c->d[R_ALL].rkey ^ flips[how % 5];
	int r;

again:
	for (r = 0; r < NREG; r++)
		if (k == c->d[r].rkey) {
			k = k * 2654435761u + 1;
			goto again;
		}
	return k;
}

static void remote_case(struct client *c, const struct rcase *rc, int idx)
{
	struct th *t = c->t;
	struct auv_ep *ep = t->ep[0];
	const struct auv_mr_desc *d = &c->d[rc->reg];
	uint8_t *l = auv_mr_addr(c->loc);
	uint64_t start;
	struct auv_op op;
	struct auv_wc wc;
	int got, r;

	th_phase("remote case %d: %s", idx, rc->name);
	memset(l, 0xCC, LLEN);
	op = th_op(rc->opcode, l + 1024, rc->len, c->loc, NULL, 0,
		   0xE000 + (uint64_t)idx);
	op.remote_addr = d->addr + (uint64_t)rc->off;
	op.rkey = (rc->flags & BADKEY) ? bad_rkey(c, rc->key) : d->rkey;
	op.compare = th_pattern_byte(0, 0); /* never matches: irrelevant */
	op.swap_add = 1;
	if (rc->opcode == AUV_OP_WRITE)
		th_fill(l + 1024, rc->len, 0xF00D);
	op.flags = (rc->flags & UNSIGNALED) ? 0 : AUV_OP_SIGNALED;
	start = th_now_ns();
	got = auv_post(ep, &op, 1);
	CHECKF(got == 1, "%s: auv_post returned %d (%s)", rc->name, got,
	       got < 0 ? augur_strerror(got) : "count");
	th_poll_n(t, &wc, 1, 1);
	CHECKF(wc.status == -AUGUR_EREMOTE_ACCESS,
	       "%s: completion status %d (%s), expected "
	       "-AUGUR_EREMOTE_ACCESS",
	       rc->name, wc.status, augur_strerror(wc.status));
	CHECKF(wc.cookie == op.cookie,
	       "%s: error completion cookie %llu, "
	       "expected %llu",
	       rc->name, (unsigned long long)wc.cookie,
	       (unsigned long long)op.cookie);
	CHECK(wc.ep == ep);
	th_log("%s: error reported in %.3f ms", rc->name,
	       th_elapsed_s(start) * 1e3);
	if (rc->opcode == AUV_OP_READ)
		CHECKF(th_verify_byte(l + 1024, rc->len, 0xCC,
				      "failed READ's buffer") == 0,
		       "%s: the failed READ wrote into its local buffer",
		       rc->name);
	/* Nothing else completes for it. */
	CHECK_EQ(auv_poll(t->ctx, &wc, 1), 0);
	/* A failed endpoint refuses new work with its status. */
	r = auv_ep_status(ep);
	CHECKF(r <= 0, "auv_ep_status %d is positive", r);
	if (r < 0) {
		op.flags = AUV_OP_SIGNALED;
		op.rkey = c->d[R_ALL].rkey;
		op.remote_addr = c->d[R_ALL].addr;
		got = auv_post(ep, &op, 1);
		CHECKF(got == r,
		       "%s: auv_post on an endpoint with status %d "
		       "returned %d",
		       rc->name, r, got);
	}
	regions_intact(c, rc->name);
	th_call_reconnect(t, 0);
	good_read(c, rc->name);
}

static void remote_errors(struct client *c)
{
	const int64_t L = RLEN;
	/* name, opcode, region, offset, length, flags, which bad key */
	const struct rcase cases[] = {
	    {"WRITE with a bad rkey", AUV_OP_WRITE, R_ALL, 0, 64, BADKEY, 0},
	    {"WRITE with rkey ^ 1", AUV_OP_WRITE, R_ALL, 0, 64, BADKEY, 1},
	    {"WRITE with rkey ^ 2^8", AUV_OP_WRITE, R_ALL, 0, 64, BADKEY, 2},
	    {"WRITE with rkey ^ 2^20", AUV_OP_WRITE, R_ALL, 0, 64, BADKEY, 3},
	    {"WRITE with rkey ^ 2^31", AUV_OP_WRITE, R_ALL, 0, 64, BADKEY, 4},
	    {"READ with a bad rkey", AUV_OP_READ, R_ALL, 0, 64, BADKEY, 1},
	    {"FAA with a bad rkey", AUV_OP_FAA, R_ALL, 0, 8, BADKEY, 3},
	    {"WRITE just past the end", AUV_OP_WRITE, R_ALL, L, 8, 0, 0},
	    {"READ just past the end", AUV_OP_READ, R_ALL, L, 1, 0, 0},
	    {"WRITE crossing the end", AUV_OP_WRITE, R_ALL, L - 4, 8, 0, 0},
	    {"READ crossing the end", AUV_OP_READ, R_ALL, L - 100, 200, 0, 0},
	    {"WRITE of 2x the region", AUV_OP_WRITE, R_ALL, 0, 2 * RLEN, 0, 0},
	    {"WRITE before the start", AUV_OP_WRITE, R_ALL, -8, 8, 0, 0},
	    {"READ far past the end", AUV_OP_READ, R_ALL, 1ll << 32, 8, 0, 0},
	    {"CAS past the end", AUV_OP_CAS, R_ALL, L, 8, 0, 0},
	    {"WRITE without REMOTE_WRITE", AUV_OP_WRITE, R_RO, 0, 64, 0, 0},
	    {"READ without REMOTE_READ", AUV_OP_READ, R_WO, 0, 64, 0, 0},
	    {"CAS without REMOTE_ATOMIC", AUV_OP_CAS, R_RO, 0, 8, 0, 0},
	    {"FAA without REMOTE_ATOMIC", AUV_OP_FAA, R_WO, 0, 8, 0, 0},
	    {"unsignaled WRITE with a bad rkey", AUV_OP_WRITE, R_ALL, 0, 16,
	     BADKEY | UNSIGNALED, 2},
	    {"unsignaled WRITE past the end", AUV_OP_WRITE, R_ALL, L, 16,
	     UNSIGNALED, 0},
	};
	unsigned int i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].reg == R_ALL && cases[i].off < 0 &&
		    c->d[R_ALL].addr < 8)
			continue;
		remote_case(c, &cases[i], (int)i);
	}
}

static int client(struct th *t)
{
	struct client c = {.t = t};
	int r;

	CHECK_OK(auv_mr_alloc(t->ctx, LLEN, AUV_ACCESS_LOCAL_WRITE, &c.loc));
	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_REMOTE_READ, &c.noloc));
	c.buf = (uint8_t *)auv_mr_addr(c.loc) + 2048;
	th_connect(t, 0);
	for (r = 0; r < NREG; r++) {
		th_call_desc(t, 0, (uint32_t)r, &c.d[r]);
		CHECK_EQ(c.d[r].len, RLEN);
		CHECK_EQ(c.d[r].access, reg_access[r]);
	}
	local_misuse(&c);
	remote_errors(&c);
	CHECK_EQ(th_call(t, 0, TH_CMD_DONE, 0, 0, 0, 0), 0);
	return TH_PASS;
}

static int run(struct th *t)
{
	return t->rank == 0 ? target(t) : client(t);
}

static const struct th_test test = {
    .name = "conf_bad_access",
    .procs = 2,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
