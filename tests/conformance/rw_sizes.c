// SPDX-License-Identifier: MIT
/*
 * conf_rw_sizes - RDMA WRITE and READ of every size from 1 B to 1 MiB
 * (powers of two and odd sizes, at unaligned offsets on both sides), data
 * verified both ways: the target checks its own memory (and that the bytes
 * around the written range are untouched), the client reads back.  Then
 * inline-sized WRITEs without a local region, whose buffer is overwritten
 * right after auv_post() (inline data may be reused at once).
 *
 * Rank 0: target, serves th_serve() commands on one 2 MiB region.
 * Rank 1: client.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TGT_LEN (2u << 20)
#define LOC_LEN ((1u << 20) + 8192)
#define GUARD 64u
#define MAX_SIZE (1u << 20)

static int target(struct th *t)
{
	void *p;

	CHECK_OK(auv_mr_alloc(t->ctx, TGT_LEN, AUV_ACCESS_ALL, &t->mr[0]));
	p = auv_mr_addr(t->mr[0]);
	CHECK(p != NULL);
	CHECK_EQ(auv_mr_len(t->mr[0]), TGT_LEN);
	CHECKF(((uintptr_t)p & 4095) == 0,
	       "auv_mr_alloc memory at %p is "
	       "not page aligned",
	       p);
	CHECKF(th_verify_byte(p, TGT_LEN, 0, "fresh region") == 0,
	       "auv_mr_alloc memory is not zero-filled");
	th_connect(t, 1);
	th_serve(t, 1, NULL);
	return TH_PASS;
}

static int build_sizes(uint32_t *s, uint32_t max)
{
	static const uint32_t odd[] = {3,     7,     9,	    13,	   63,	   65,
				       255,   257,   1023,  1025,  4095,   4097,
				       12345, 65535, 65537, 99991, 1048575};
	unsigned int i;
	int n = 0;
	uint32_t v;

	for (v = 1; v <= MAX_SIZE; v <<= 1)
		if (v <= max)
			s[n++] = v;
	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		if (odd[i] <= max)
			s[n++] = odd[i];
	return n;
}

static void one_size(struct th *t, struct auv_ep *ep,
		     const struct auv_mr_desc *d, struct auv_mr *src,
		     struct auv_mr *dst, uint32_t len, int k)
{
	uint8_t *s = auv_mr_addr(src), *r = auv_mr_addr(dst);
	uint64_t off = GUARD + ((uint64_t)k * 4099) % 8192;
	uint32_t loff = (uint32_t)((k * 13) % 4096);
	uint64_t seed_w = 1000 + (uint64_t)k, seed_r = 5000 + (uint64_t)k;
	struct auv_op op;

	/* WRITE: source at an unaligned local offset, target guarded. */
	th_phase("WRITE of %u bytes at remote offset %llu", len,
		 (unsigned long long)off);
	CHECK_EQ(
	    th_call(t, 0, TH_CMD_MEMSET, 0, off - GUARD, len + 2 * GUARD, 0xEE),
	    0);
	th_fill(s + loff, len, seed_w);
	op = th_op(AUV_OP_WRITE, s + loff, len, src, d, off, 100 + k);
	CHECK_RC(th_do(t, ep, &op, NULL), 0);
	CHECKF(th_call(t, 0, TH_CMD_VERIFY, 0, off, len, seed_w) == 0,
	       "target memory wrong after a WRITE of %u bytes", len);
	CHECKF(th_call(t, 0, TH_CMD_VERIFY_BYTE, 0, off - GUARD, GUARD, 0xEE) ==
		   0,
	       "WRITE of %u bytes touched the bytes before it", len);
	CHECKF(th_call(t, 0, TH_CMD_VERIFY_BYTE, 0, off + len, GUARD, 0xEE) ==
		   0,
	       "WRITE of %u bytes touched the bytes after it", len);

	/* ...and read it back into a guarded caller-memory buffer. */
	th_phase("READ back %u bytes", len);
	memset(r, 0xCC, len + 2 * GUARD + 4096);
	op = th_op(AUV_OP_READ, r + GUARD + loff, len, dst, d, off, 200 + k);
	CHECK_RC(th_do(t, ep, &op, NULL), 0);
	CHECKF(th_verify(r + GUARD + loff, len, seed_w, "read back") == 0,
	       "READ of %u bytes returned wrong data", len);
	CHECKF(th_verify_byte(r, GUARD + loff, 0xCC, "before READ dest") == 0,
	       "READ of %u bytes wrote before its local buffer", len);
	CHECKF(th_verify_byte(r + GUARD + loff + len, GUARD, 0xCC,
			      "after READ dest") == 0,
	       "READ of %u bytes wrote past its local buffer", len);

	/* READ of data the target wrote itself. */
	th_phase("READ of %u bytes the target filled", len);
	CHECK_EQ(th_call(t, 0, TH_CMD_FILL, 0, off, len, seed_r), 0);
	memset(r, 0xCC, len + 2 * GUARD + 4096);
	op = th_op(AUV_OP_READ, r + GUARD, len, dst, d, off, 300 + k);
	CHECK_RC(th_do(t, ep, &op, NULL), 0);
	CHECKF(th_verify(r + GUARD, len, seed_r, "READ") == 0,
	       "READ of %u bytes returned wrong data", len);
	CHECKF(th_verify_byte(r + GUARD + len, GUARD, 0xCC, "after READ") == 0,
	       "READ of %u bytes wrote past its local buffer", len);
}

static void inline_writes(struct th *t, struct auv_ep *ep,
			  const struct auv_mr_desc *d)
{
	uint32_t max = t->caps.max_inline;
	uint32_t sizes[] = {1, 7, 8, 31, 64, max / 2 + 1, max - 1, max};
	uint64_t off = 3 * GUARD + 5;
	unsigned int i, j;
	uint8_t *buf;
	struct auv_op op[8];
	struct auv_wc wc[8];
	int n;

	if (max == 0) {
		th_note("max_inline is 0: no inline WRITEs to test");
		return;
	}
	buf = malloc(max * 8);
	CHECK(buf != NULL);
	/* One at a time, buffer scribbled right after posting. */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (sizes[i] < 1 || sizes[i] > max)
			continue;
		th_phase("inline WRITE of %u bytes", sizes[i]);
		CHECK_EQ(th_call(t, 0, TH_CMD_MEMSET, 0, off - GUARD,
				 sizes[i] + 2 * GUARD, 0xEE),
			 0);
		th_fill(buf, sizes[i], 7000 + i);
		op[0] =
		    th_op(AUV_OP_WRITE, buf, sizes[i], NULL, d, off, 900 + i);
		op[0].flags = AUV_OP_SIGNALED;
		CHECK_RC(auv_post(ep, op, 1), 1);
		memset(buf, 0xFF, sizes[i]);
		th_poll_n(t, wc, 1, 1);
		CHECK_RC(wc[0].status, 0);
		CHECK_EQ(wc[0].cookie, 900 + i);
		CHECK_EQ(wc[0].opcode, AUV_OP_WRITE);
		CHECK(wc[0].ep == ep);
		CHECKF(th_call(t, 0, TH_CMD_VERIFY, 0, off, sizes[i],
			       7000 + i) == 0,
		       "inline WRITE of %u bytes: target memory wrong "
		       "(buffer reused after auv_post?)",
		       sizes[i]);
		CHECK_EQ(th_call(t, 0, TH_CMD_VERIFY_BYTE, 0, off + sizes[i],
				 GUARD, 0xEE),
			 0);
	}
	/* A batch of 8 inline WRITEs in one auv_post(), all signaled, to
	 * eight places; buffers scribbled after posting. */
	th_phase("batch of 8 inline WRITEs of %u bytes", max);
	for (j = 0; j < 8; j++) {
		th_fill(buf + j * max, max, 8000 + j);
		op[j] = th_op(AUV_OP_WRITE, buf + j * max, max, NULL, d,
			      8192 + (uint64_t)j * (max + 3), 950 + j);
		op[j].flags = AUV_OP_SIGNALED;
	}
	n = 0;
	while (n < 8)
		n += (int)CHECK_OK(auv_post(ep, op + n, 8 - n));
	memset(buf, 0xFF, max * 8);
	th_poll_n(t, wc, 8, 8);
	for (j = 0; j < 8; j++) {
		CHECK_RC(wc[j].status, 0);
		CHECK_EQ(wc[j].cookie, 950 + j); /* posting order */
		CHECKF(th_call(t, 0, TH_CMD_VERIFY, 0,
			       8192 + (uint64_t)j * (max + 3), max,
			       8000 + j) == 0,
		       "batched inline WRITE %u: target memory wrong", j);
	}
	free(buf);
}

static int client(struct th *t)
{
	uint32_t sizes[64];
	struct auv_mr_desc d;
	struct auv_mr *src, *dst;
	struct auv_ep *ep;
	void *mem;
	int n, k;

	n = build_sizes(sizes, t->caps.max_msg);
	if (t->caps.max_msg < MAX_SIZE)
		th_note("max_msg is %u: sizes above it not tested",
			t->caps.max_msg);
	CHECK_OK(auv_mr_alloc(t->ctx, LOC_LEN, AUV_ACCESS_LOCAL_WRITE, &src));
	/* The READ destination is caller memory, registered. */
	CHECK(posix_memalign(&mem, 4096, LOC_LEN + 2 * GUARD) == 0);
	CHECK_OK(auv_mr_reg(t->ctx, mem, LOC_LEN + 2 * GUARD,
			    AUV_ACCESS_LOCAL_WRITE, &dst));
	CHECK(auv_mr_addr(dst) == mem);
	CHECK_EQ(auv_mr_len(dst), LOC_LEN + 2 * GUARD);

	ep = th_connect(t, 0);
	th_call_desc(t, 0, 0, &d);
	CHECK_EQ(d.len, TGT_LEN);
	CHECK_EQ(d.access, AUV_ACCESS_ALL);

	for (k = 0; k < n; k++)
		one_size(t, ep, &d, src, dst, sizes[k], k);
	inline_writes(t, ep, &d);
	th_log("%d sizes verified both ways", n);

	CHECK_EQ(th_call(t, 0, TH_CMD_DONE, 0, 0, 0, 0), 0);
	auv_ep_close(ep);
	t->ep[0] = NULL;
	CHECK_OK(auv_mr_dereg(dst));
	CHECK_OK(auv_mr_dereg(src));
	free(mem);
	return TH_PASS;
}

static int run(struct th *t)
{
	return t->rank == 0 ? target(t) : client(t);
}

static const struct th_test test = {
    .name = "conf_rw_sizes",
    .procs = 2,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
