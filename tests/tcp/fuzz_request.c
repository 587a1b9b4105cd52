// SPDX-License-Identifier: MIT
/*
 * tests/tcp/fuzz_request.c - fuzz the tcp provider's request parser and
 * the target side of every request (verbs/tcp_wire.c), which are pure
 * functions of the bytes a peer sends and the table of registered regions.
 *
 * What is checked: whatever the bytes, the parser and the target never
 * touch memory outside a registered region or a posted receive buffer (the
 * regions and buffers are heap blocks of exactly their size, so ASan sees
 * a single byte too far), never write a region without the right to, never
 * loop (work is linear in the input), and once they have refused something
 * they carry out nothing more.
 *
 * The input: byte 0 picks the mode (handshake as acceptor, as connector,
 * or connected frames) and how the stream is cut into pieces; the rest is
 * the stream.  The environment: three regions (all rights 256 B at peer
 * address 0x1000, read-only 64 B at 0x2000, write-only 128 B at 0x3000)
 * plus a deregistered one whose rkey is known, four posted receives of 16,
 * 64, 1 and 300 bytes; READ replies are read back in chunks the way the
 * provider sends them.  rkeys are fixed (salt 0) so the fuzzer can find
 * them; see the seeds.
 *
 * Build and run (libFuzzer, bounded for CI):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iverbs \
 *     tests/tcp/fuzz_request.c verbs/tcp_wire.c -o fuzz_request
 *   ./fuzz_request -max_total_time=45 -timeout=5 CORPUS_DIR SEED_DIR
 * Without libFuzzer (any compiler) the same file builds a replay driver:
 *   fuzz_request --seeds DIR   writes the seed corpus;
 *   fuzz_request FILE...       runs each file through the target once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <augur/error.h>
#include <augur/verbs.h>

#include "tcp_wire.h"

#define NREG 3
#define NRECV 4

static const uint64_t reg_addr[NREG] = {0x1000, 0x2000, 0x3000};
static const uint64_t reg_len[NREG] = {256, 64, 128};
static const uint32_t reg_access[NREG] = {
    AUV_ACCESS_ALL,
    AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_READ,
    AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_WRITE,
};
static const uint32_t recv_len[NRECV] = {16, 64, 1, 300};

struct env {
	struct tcp_mrt mrt;
	struct tcp_srv srv;
	struct tcp_rx rx;
	uint8_t *reg[NREG];
	uint8_t *shadow[NREG]; /* copy taken when the target failed */
	uint8_t *recv[NRECV];
	int nrecv_used;
	int nreplies;
	bool failed_seen;
	uint64_t sink;
};

static void die(const char *what)
{
	fprintf(stderr, "fuzz_request: invariant broken: %s\n", what);
	abort();
}

/* --- The target's environment --------------------------------------------- */

static int env_recv_peek(void *arg, uint8_t **buf, uint32_t *cap)
{
	struct env *e = arg;

	if (e->nrecv_used >= NRECV)
		return -ENOENT;
	*buf = e->recv[e->nrecv_used];
	*cap = recv_len[e->nrecv_used];
	return 0;
}

static void env_recv_done(void *arg, int32_t status, uint32_t byte_len,
			  bool imm, uint32_t imm_val)
{
	struct env *e = arg;

	if (e->nrecv_used >= NRECV)
		die("a receive completed that was never posted");
	if (!status && !imm && byte_len > recv_len[e->nrecv_used])
		die("a SEND longer than its receive buffer completed");
	e->nrecv_used++;
}

/* Read a READ reply back the way the provider sends it. */
static int env_reply(void *arg, const struct tcp_rep *r)
{
	struct env *e = arg;
	struct tcp_rep q = *r;
	const uint8_t *p;
	uint32_t n, i;

	if (++e->nreplies > 1000000)
		return -ENOSPC;
	if (r->kind != TCP_REP_READ)
		return 0;
	while (q.done < q.len) {
		n = q.len - q.done;
		if (n > 100) /* small chunks: more pieces to check */
			n = 100;
		if (tcp_srv_read_chunk(&e->srv, &q, n, &p))
			die("an accepted READ cannot be read back");
		for (i = 0; i < n; i++)
			e->sink += p[i]; /* ASan checks every byte */
		q.done += n;
	}
	return 0;
}

static const struct tcp_srv_ops env_srv_ops = {
    .recv_peek = env_recv_peek,
    .recv_done = env_recv_done,
    .reply = env_reply,
};

/* --- Parser callbacks: the provider's, minus the sockets ------------------ */

static void snapshot(struct env *e)
{
	int i;

	if (e->failed_seen)
		return;
	e->failed_seen = true;
	for (i = 0; i < NREG; i++)
		memcpy(e->shadow[i], e->reg[i], reg_len[i]);
}

static int env_rc(struct env *e, int rc)
{
	if (rc || e->srv.failed)
		snapshot(e);
	return rc;
}

static int cb_hello(void *arg, const struct tcp_hello *h, int bad)
{
	if (!bad && h->version == TCP_VERSION && h->priv_len > TCP_PRIV_MAX)
		die("hello with an overlong private part accepted");
	return bad ? -EPROTO : 0;
}

static int cb_ack(void *arg, const struct tcp_ack *a, int bad)
{
	return bad || a->status ? -EPROTO : 0;
}

static int cb_frame(void *arg, const struct tcp_frame *f)
{
	struct env *e = arg;

	if (f->type >= TCP_F_READ && f->type <= TCP_F_FAA)
		return env_rc(e, tcp_srv_frame(&e->srv, f));
	if (f->type == TCP_F_REPLY && f->len > TCP_RCHUNK)
		die("reply longer than a chunk accepted");
	return 0;
}

static int cb_body(void *arg, const struct tcp_frame *f, uint32_t off,
		   const uint8_t *p, uint32_t n)
{
	struct env *e = arg;
	uint32_t i;

	if (off > f->body || n > f->body - off)
		die("body piece outside the frame");
	if (f->type >= TCP_F_READ && f->type <= TCP_F_FAA)
		return env_rc(e, tcp_srv_body(&e->srv, f, off, p, n));
	for (i = 0; i < n; i++)
		e->sink += p[i];
	return 0;
}

static int cb_end(void *arg, const struct tcp_frame *f)
{
	struct env *e = arg;

	if (f->type >= TCP_F_READ && f->type <= TCP_F_FAA)
		return env_rc(e, tcp_srv_end(&e->srv, f));
	return 0;
}

static void cb_bad(void *arg, const struct tcp_frame *f, int why)
{
	struct env *e = arg;

	if (why <= 0 || why >= TCP_BAD_NREASONS)
		die("bad() without a reason");
	if (f->type >= TCP_F_READ && f->type <= TCP_F_FAA)
		tcp_srv_bad(&e->srv, f);
	snapshot(e);
}

static const struct tcp_rx_ops env_rx_ops = {
    .hello = cb_hello,
    .ack = cb_ack,
    .frame = cb_frame,
    .body = cb_body,
    .end = cb_end,
    .bad = cb_bad,
};

/* --- One input ------------------------------------------------------------ */

static void env_init(struct env *e)
{
	uint32_t rkey;
	int i;

	memset(e, 0, sizeof(*e));
	tcp_mrt_init(&e->mrt, 0);
	for (i = 0; i < NREG; i++) {
		e->reg[i] = malloc(reg_len[i]);
		e->shadow[i] = malloc(reg_len[i]);
		if (!e->reg[i] || !e->shadow[i])
			die("out of memory");
		memset(e->reg[i], 0x5a, reg_len[i]);
		if (tcp_mrt_add(&e->mrt, e->reg[i], reg_addr[i], reg_len[i],
				reg_access[i], &rkey))
			die("tcp_mrt_add");
	}
	/* A fourth region, deregistered: its rkey must be refused. */
	if (tcp_mrt_add(&e->mrt, e->reg[0], 0x4000, 64, AUV_ACCESS_ALL, &rkey))
		die("tcp_mrt_add");
	tcp_mrt_del(&e->mrt, rkey);
	for (i = 0; i < NRECV; i++) {
		e->recv[i] = malloc(recv_len[i]);
		if (!e->recv[i])
			die("out of memory");
	}
	tcp_srv_init(&e->srv, &e->mrt, &env_srv_ops, e);
}

static void env_fini(struct env *e)
{
	int i;

	for (i = 0; i < NREG; i++) {
		if (e->failed_seen &&
		    memcmp(e->shadow[i], e->reg[i], reg_len[i]))
			die("a region changed after the target refused a "
			    "request");
		free(e->reg[i]);
		free(e->shadow[i]);
	}
	for (i = 0; i < NRECV; i++)
		free(e->recv[i]);
	tcp_mrt_free(&e->mrt);
}

/* The read-only region must never change (nobody may write it). */
static void check_ro(const struct env *e)
{
	uint64_t i;

	for (i = 0; i < reg_len[1]; i++)
		if (e->reg[1][i] != 0x5a)
			die("the read-only region was written");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct tcp_limits lim = {
	    .sq_depth = 64, .max_msg = 1u << 20, .max_send = 256};
	static const uint8_t modes[4] = {TCP_RX_FRAMES, TCP_RX_FRAMES,
					 TCP_RX_HELLO, TCP_RX_ACK};
	struct tcp_frame f;
	struct env e;
	size_t off, piece, step;
	int rc = 0;

	if (!size)
		return 0;
	/* The header decoder alone, on the first bytes. */
	if (size > 1 + TCP_HDR_MAX)
		(void)tcp_frame_decode(data + 1, &lim, &f);

	env_init(&e);
	tcp_rx_init(&e.rx, modes[data[0] & 3], &lim);
	step = 1 + (data[0] >> 2); /* 1..64 bytes per piece */
	for (off = 1; off < size; off += piece) {
		piece = size - off < step ? size - off : step;
		rc = tcp_rx_feed(&e.rx, data + off, piece, &env_rx_ops, &e);
		if (rc) {
			if (e.rx.mode != TCP_RX_DEAD)
				die("the parser went on after an error");
			if (tcp_rx_feed(&e.rx, data, 1, &env_rx_ops, &e) !=
			    -AUGUR_EPROTO)
				die("a dead parser took more input");
			break;
		}
	}
	check_ro(&e);
	env_fini(&e);
	return 0;
}

/* --- Replay driver and seeds (builds without libFuzzer) ------------------- */

#ifndef FUZZ_LIBFUZZER
#include <sys/stat.h>

static size_t put_req(uint8_t *p, uint8_t type, uint8_t flags, uint32_t len,
		      uint32_t id, uint32_t rkey, uint64_t addr, uint32_t imm,
		      uint64_t cmp, uint64_t swap)
{
	return tcp_enc_req(p, type, flags, len, id, rkey, addr, imm, cmp, swap);
}

static void write_seed(const char *dir, const char *name, const uint8_t *p,
		       size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

/* rkey of entry @idx, first registration, salt 0 (see tcp_wire.c). */
static uint32_t seed_rkey(uint32_t idx)
{
	return ((1u << TCP_MRT_IDX_BITS) | idx) * 0x9e3779b1u;
}

static int make_seeds(const char *dir)
{
	static uint8_t b[4096];
	struct tcp_limits lim = {
	    .sq_depth = 64, .max_msg = 1u << 20, .max_send = 256};
	size_t n;
	int i;

	mkdir(dir, 0755);
	/* Frames, one piece per byte-0 choice. */
	b[0] = 0x40; /* frames, pieces of 17 */
	n = 1;
	n += put_req(b + n, TCP_F_WRITE, TCP_RQ_ACK, 16, 0, seed_rkey(0),
		     0x1010, 0, 0, 0);
	for (i = 0; i < 16; i++)
		b[n++] = (uint8_t)i;
	n +=
	    put_req(b + n, TCP_F_READ, 0, 64, 1, seed_rkey(0), 0x1000, 0, 0, 0);
	n += put_req(b + n, TCP_F_CAS, 0, 8, 2, seed_rkey(0), 0x1008, 0,
		     0x5a5a5a5a5a5a5a5aull, 7);
	n += put_req(b + n, TCP_F_FAA, 0, 8, 3, seed_rkey(0), 0x1010, 0, 0, 1);
	n += put_req(b + n, TCP_F_SEND, TCP_RQ_ACK, 10, 4, 0, 0, 0, 0, 0);
	for (i = 0; i < 10; i++)
		b[n++] = (uint8_t)(0xa0 + i);
	n += put_req(b + n, TCP_F_WRITE_IMM, 0, 4, 5, seed_rkey(2), 0x3000,
		     0xdead, 0, 0);
	for (i = 0; i < 4; i++)
		b[n++] = 0xee;
	n +=
	    put_req(b + n, TCP_F_READ, 0, 32, 6, seed_rkey(1), 0x2000, 0, 0, 0);
	n += tcp_enc_ctrl(b + n, TCP_F_CREDIT, 4);
	n += tcp_enc_reply(b + n, TCP_ST_OK, 0, 8, 9);
	for (i = 0; i < 8; i++)
		b[n++] = 1;
	write_seed(dir, "frames-good", b, n);

	/* Refused: a write to the read-only region, then more requests. */
	b[0] = 0x00;
	n = 1;
	n +=
	    put_req(b + n, TCP_F_WRITE, 0, 8, 0, seed_rkey(1), 0x2000, 0, 0, 0);
	for (i = 0; i < 8; i++)
		b[n++] = 0x11;
	n +=
	    put_req(b + n, TCP_F_WRITE, 0, 8, 1, seed_rkey(0), 0x1000, 0, 0, 0);
	for (i = 0; i < 8; i++)
		b[n++] = 0x22;
	write_seed(dir, "frames-refused", b, n);

	/* Out of bounds, a revoked key, a SEND too big for its buffer. */
	n = 1;
	n += put_req(b + n, TCP_F_READ, 0, 8, 0, seed_rkey(0), 0x10fc, 0, 0, 0);
	write_seed(dir, "frames-bounds", b, n);
	n = 1;
	n += put_req(b + n, TCP_F_READ, 0, 8, 0, seed_rkey(3), 0x4000, 0, 0, 0);
	write_seed(dir, "frames-revoked", b, n);
	n = 1;
	n += put_req(b + n, TCP_F_SEND, 0, 20, 0, 0, 0, 0, 0, 0);
	memset(b + n, 0x33, 20);
	n += 20;
	write_seed(dir, "frames-send-too-big", b, n);

	/* Handshakes. */
	b[0] = 0x02; /* hello, pieces of 1 */
	n = 1 + tcp_enc_hello(b + 1, &lim, "rank", 4);
	write_seed(dir, "hello", b, n);
	b[0] = 0x03;
	n = 1 + tcp_enc_ack(b + 1, TCP_ACK_OK, &lim);
	n += tcp_enc_ctrl(b + n, TCP_F_CREDIT, 1);
	write_seed(dir, "ack-then-frames", b, n);
	return 0;
}

int main(int argc, char **argv)
{
	static uint8_t buf[1 << 20];
	size_t n;
	FILE *f;
	int i;

	if (argc == 3 && !strcmp(argv[1], "--seeds"))
		return make_seeds(argv[2]);
	if (argc < 2) {
		fprintf(stderr, "usage: %s --seeds DIR | FILE...\n", argv[0]);
		return 1;
	}
	for (i = 1; i < argc; i++) {
		f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, n);
	}
	printf("fuzz_request: %d inputs replayed, no invariant broken\n",
	       argc - 1);
	return 0;
}
#endif /* FUZZ_LIBFUZZER */
