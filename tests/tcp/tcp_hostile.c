// SPDX-License-Identifier: MIT
/*
 * tcp_hostile - a peer that does not play by the rules: the tcp provider's
 * target must answer every malformed or forbidden request with an error
 * reply (or, before the handshake is done, by hanging up), never touch
 * memory outside a registration, never crash, never hang, and keep serving
 * everybody else.
 *
 * Rank 0: a tcp context with three regions (all rights, read-only,
 * write-only), serving.  Rank 1: a raw TCP client speaking the wire format
 * by hand, from docs/wire-format.md (not from the provider's encoder, so
 * that the document is checked too), then a well-behaved augur client.
 * After every case the target's regions are verified unchanged, except
 * where a good WRITE put data.
 *
 * Run: tcp_hostile [--provider tcp] (any other provider: skip).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define RLEN 4096u
enum { R_ALL, R_RO, R_WO, NREG };
enum { CMD_ACCEPT = TH_CMD_USER };

static const unsigned int reg_access[NREG] = {
    [R_ALL] = AUV_ACCESS_ALL,
    [R_RO] = AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_READ,
    [R_WO] = AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_WRITE,
};

/* Wire constants, as docs/wire-format.md has them. */
#define HELLO_LEN 80
#define ACK_LEN 32
#define REQ_HDR 48
#define REPLY_HDR 16
#define F_READ 1
#define F_WRITE 2
#define F_WRITE_IMM 3
#define F_SEND 4
#define F_CAS 5
#define F_FAA 6
#define F_REPLY 0x80
#define F_CREDIT 0x81
#define F_BYE 0x82
#define ST_OK 0
#define ST_ACCESS 1
#define ST_INVALID 2
#define ST_PROTO 3

static struct auv_ep *hostile_ep;

static uint64_t serve_user(struct th *t, int peer, const struct th_cmd *c)
{
	int rc;

	auv_ep_close(hostile_ep);
	hostile_ep = NULL;
	rc = auv_ep_accept(t->ctx, 10000, &hostile_ep, NULL, NULL);
	CHECKF(rc == 0, "accepting the raw client: %d (%s)", rc,
	       augur_strerror(rc));
	return 0;
}

static int target(struct th *t)
{
	int r;

	for (r = 0; r < NREG; r++) {
		CHECK_OK(auv_mr_alloc(t->ctx, RLEN, reg_access[r], &t->mr[r]));
		th_fill(auv_mr_addr(t->mr[r]), RLEN, 0xA0 + (uint64_t)r);
	}
	th_connect(t, 1);
	th_serve(t, 1, serve_user);
	auv_ep_close(hostile_ep);
	return TH_PASS;
}

/* --- Raw wire helpers ----------------------------------------------------- */

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
	le16(p, (uint16_t)v);
	le16(p + 2, (uint16_t)(v >> 16));
}

static void le64(uint8_t *p, uint64_t v)
{
	le32(p, (uint32_t)v);
	le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static int raw_dial(const char *addr)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	char ip[64];
	const char *colon = strrchr(addr, ':');
	int fd, one = 1;

	CHECK(colon && !strncmp(addr, "tcp:", 4));
	CHECK((size_t)(colon - addr - 4) < sizeof(ip));
	memcpy(ip, addr + 4, (size_t)(colon - addr - 4));
	ip[colon - addr - 4] = '\0';
	CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECKF(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0,
	       "connect %s: %s", addr, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
	ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

	CHECKF(k == (ssize_t)n, "raw send of %zu bytes: %zd (%s)", n, k,
	       strerror(errno));
}

/* Receive exactly @n bytes within @ms; 0, or -1 at end of stream. */
static int raw_recv(int fd, void *p, size_t n, int ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	uint64_t end = th_now_ns() + (uint64_t)ms * 1000000ull;
	char *c = p;
	ssize_t k;

	while (n) {
		CHECKF(th_now_ns() < end, "nothing from the target in %d ms",
		       ms);
		if (poll(&pf, 1, 50) <= 0)
			continue;
		k = recv(fd, c, n, 0);
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			return -1;
		CHECKF(k > 0 || errno == EINTR, "recv: %s", strerror(errno));
		if (k > 0) {
			c += k;
			n -= (size_t)k;
		}
	}
	return 0;
}

/* The target must hang up (end of stream or reset) within @ms; data before
 * that is read and dropped. */
static void expect_hangup(int fd, const char *what, int ms)
{
	uint8_t junk[4096];
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	uint64_t end = th_now_ns() + (uint64_t)ms * 1000000ull;
	ssize_t k;

	for (;;) {
		CHECKF(th_now_ns() < end,
		       "%s: the target did not hang up in %d ms", what, ms);
		if (poll(&pf, 1, 50) <= 0)
			continue;
		k = recv(fd, junk, sizeof(junk), 0);
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			break;
	}
	close(fd);
}

static size_t hello(uint8_t *p, uint16_t version, uint32_t sq_depth,
		    uint32_t priv_len)
{
	memset(p, 0, HELLO_LEN);
	memcpy(p, "AUGURTCP", 8);
	le16(p + 8, version);
	le16(p + 10, HELLO_LEN);
	le32(p + 12, 0);
	le32(p + 16, sq_depth);
	le32(p + 20, 1u << 30);
	le32(p + 24, 64u << 10);
	le32(p + 28, priv_len);
	return HELLO_LEN;
}

static size_t req(uint8_t *p, uint8_t type, uint8_t flags, uint32_t len,
		  uint32_t id, uint32_t rkey, uint64_t addr, uint64_t cmp,
		  uint64_t swap)
{
	memset(p, 0, REQ_HDR);
	p[0] = type;
	p[1] = flags;
	le32(p + 4, len);
	le32(p + 8, id);
	le64(p + 16, addr);
	le32(p + 24, rkey);
	le64(p + 32, cmp);
	le64(p + 40, swap);
	return REQ_HDR;
}

struct reply {
	uint8_t type, flags, status;
	uint32_t len, id, value;
	uint8_t data[64];
};

/* Next frame from the target (data beyond 64 bytes dropped); -1: hangup. */
static int next_frame(int fd, struct reply *r)
{
	uint8_t h[REPLY_HDR], junk[4096];
	uint32_t left, k;

	if (raw_recv(fd, h, REPLY_HDR, 5000))
		return -1;
	memset(r, 0, sizeof(*r));
	r->type = h[0];
	r->flags = h[1];
	if (r->type == F_REPLY) {
		r->status = h[2];
		r->len = get32(h + 4);
		r->id = get32(h + 8);
		CHECKF(r->len <= (64u << 10), "reply of %u bytes", r->len);
		for (left = r->len; left; left -= k) {
			k = left < sizeof(junk) ? left : sizeof(junk);
			if (raw_recv(fd, junk, k, 5000))
				return -1;
			if (r->len - left < sizeof(r->data))
				memcpy(r->data + (r->len - left), junk,
				       k < sizeof(r->data) - (r->len - left)
					   ? k
					   : sizeof(r->data) - (r->len - left));
		}
		return 0;
	}
	CHECKF(r->type == F_CREDIT || r->type == F_BYE,
	       "the target sent frame type 0x%x", r->type);
	r->value = get32(h + 4);
	return 0;
}

/* A handshaken raw connection, accepted by the target. */
static int raw_session(struct th *t, uint32_t sq_depth)
{
	uint8_t b[HELLO_LEN], ack[ACK_LEN];
	struct th_cmd c = {.op = CMD_ACCEPT};
	int fd = raw_dial(t->addr[0]);

	raw_send(fd, b, hello(b, 1, sq_depth, 0));
	th_send(t, 0, &c, sizeof(c));
	CHECK_EQ(th_recv_u64(t, 0), 0);
	CHECKF(raw_recv(fd, ack, ACK_LEN, 5000) == 0, "no hello-ack");
	CHECK(!memcmp(ack, "AUGURTCP", 8));
	CHECK_EQ(get32(ack + 12), 0); /* status: accepted */
	return fd;
}

/* Send @frame on a fresh session; the answer to request @id must be
 * @status, then the target hangs up. */
static void expect_refusal(struct th *t, const char *what, const void *frame,
			   size_t n, uint32_t id, int status)
{
	struct reply r;
	int fd = raw_session(t, 16);

	th_phase("hostile: %s", what);
	raw_send(fd, frame, n);
	for (;;) {
		CHECKF(next_frame(fd, &r) == 0,
		       "%s: hung up without an error reply", what);
		if (r.type == F_REPLY)
			break;
		CHECKF(r.type != F_BYE, "%s: BYE before the error reply", what);
	}
	CHECKF(r.id == id && r.status == status,
	       "%s: reply for %u with status %u, expected %u with %d", what,
	       r.id, r.status, id, status);
	expect_hangup(fd, what, 5000);
	th_log("%s: refused with status %d", what, status);
}

/* The target hangs up (no reply to give: not a request). */
static void expect_drop(struct th *t, const char *what, const void *bytes,
			size_t n, bool handshake)
{
	int fd = handshake ? raw_dial(t->addr[0]) : raw_session(t, 16);

	th_phase("hostile: %s", what);
	raw_send(fd, bytes, n);
	expect_hangup(fd, what, 5000);
	th_log("%s: dropped", what);
}

static void regions_intact(struct th *t, const char *after)
{
	int r;

	for (r = 0; r < NREG; r++)
		CHECKF(th_call(t, 0, TH_CMD_VERIFY, (uint32_t)r, 0, RLEN,
			       0xA0 + (uint64_t)r) == 0,
		       "after %s: region %d changed", after, r);
}

/* --- The cases ------------------------------------------------------------ */

static void handshakes(struct th *t)
{
	uint8_t b[600];
	int fd, slow;

	/* A slow one first: it must be dropped after the hello timeout. */
	slow = raw_dial(t->addr[0]);
	raw_send(slow, "AUGU", 4);

	memset(b, 'x', sizeof(b));
	expect_drop(t, "garbage instead of a hello", b, 100, true);
	hello(b, 1, 16, 0);
	b[0] = 'Z';
	expect_drop(t, "hello with a bad magic", b, HELLO_LEN, true);
	hello(b, 1, 16, 200);
	expect_drop(t, "hello with 200 bytes of private data", b, HELLO_LEN,
		    true);
	hello(b, 1, 0, 0);
	expect_drop(t, "hello with sq_depth 0", b, HELLO_LEN, true);
	hello(b, 1, 16, 0);
	le16(b + 10, 65535);
	expect_drop(t, "hello claiming 65535 bytes", b, HELLO_LEN, true);
	hello(b, 1, 16, 0);
	memset(b + HELLO_LEN, 0x55, 64);
	expect_drop(t, "data after the hello, before the accept", b,
		    HELLO_LEN + 64, true);

	/* Another version: told which one the target speaks. */
	th_phase("hostile: hello of version 99");
	fd = raw_dial(t->addr[0]);
	raw_send(fd, b, hello(b, 99, 16, 0));
	CHECKF(raw_recv(fd, b, ACK_LEN, 5000) == 0, "version 99: no hello-ack");
	CHECK(!memcmp(b, "AUGURTCP", 8));
	CHECK_EQ(b[8] | b[9] << 8, 1); /* the target's version */
	CHECK_EQ(get32(b + 12), 1);    /* status: version */
	expect_hangup(fd, "version 99", 5000);

	th_phase("hostile: a hello that never completes");
	expect_hangup(slow, "a hello that never completes", 30000);
}

static void frames(struct th *t, const struct auv_mr_desc *d)
{
	uint8_t b[1024];
	size_t n;
	int fd, i;
	struct reply r;
	uint32_t rk = d[R_ALL].rkey;
	uint64_t a = d[R_ALL].addr;

	/* Refused requests: an error reply with the request's id. */
	n = req(b, F_READ, 0, 64, 7, rk ^ 0x5a5a5a5a, a, 0, 0);
	expect_refusal(t, "READ with a bad rkey", b, n, 7, ST_ACCESS);
	n = req(b, F_WRITE, 1, 8, 8, rk, a + RLEN - 4, 0, 0);
	memset(b + n, 0xEE, 8);
	expect_refusal(t, "WRITE crossing the region's end", b, n + 8, 8,
		       ST_ACCESS);
	n = req(b, F_WRITE, 0, 16, 9, d[R_RO].rkey, d[R_RO].addr, 0, 0);
	memset(b + n, 0xEE, 16);
	expect_refusal(t, "WRITE to a read-only region", b, n + 16, 9,
		       ST_ACCESS);
	n = req(b, F_READ, 0, 16, 10, d[R_WO].rkey, d[R_WO].addr, 0, 0);
	expect_refusal(t, "READ of a write-only region", b, n, 10, ST_ACCESS);
	n = req(b, F_FAA, 0, 8, 11, d[R_RO].rkey, d[R_RO].addr, 0, 1);
	expect_refusal(t, "FAA without the atomic right", b, n, 11, ST_ACCESS);
	n = req(b, F_READ, 0, 1u << 30, 12, rk, a, 0, 0);
	expect_refusal(t, "READ of 1 GiB from a 4 KiB region", b, n, 12,
		       ST_ACCESS);
	n = req(b, F_READ, 0, 64, 13, rk, a - 4096, 0, 0);
	expect_refusal(t, "READ before the region", b, n, 13, ST_ACCESS);
	n = req(b, F_READ, 0, 8, 14, rk, a + (1ull << 63), 0, 0);
	expect_refusal(t, "READ at a wrapping address", b, n, 14, ST_ACCESS);

	/* Malformed requests: PROTO for the id in the header. */
	n = req(b, F_WRITE, 0, 0x80000000u, 20, rk, a, 0, 0);
	expect_refusal(t, "WRITE of 2 GiB (above max_msg)", b, n, 20, ST_PROTO);
	n = req(b, F_CAS, 0, 8, 21, rk, a + 4, 0, 1);
	expect_refusal(t, "CAS at a misaligned address", b, n, 21, ST_PROTO);
	n = req(b, F_FAA, 0, 4, 22, rk, a, 0, 1);
	expect_refusal(t, "FAA of 4 bytes", b, n, 22, ST_PROTO);
	n = req(b, F_READ, 0, 8, 23, rk, a, 0, 0);
	b[2] = 1; /* reserved */
	expect_refusal(t, "reserved header bytes set", b, n, 23, ST_PROTO);
	n = req(b, F_READ, 0x80, 8, 24, rk, a, 0, 0);
	expect_refusal(t, "unknown request flag", b, n, 24, ST_PROTO);
	n = req(b, F_READ, 0, 8, 25, rk, a, 5, 0);
	expect_refusal(t, "READ with a compare value", b, n, 25, ST_PROTO);
	n = req(b, F_READ, 0, 0, 26, rk, a, 0, 0);
	expect_refusal(t, "READ of 0 bytes", b, n, 26, ST_PROTO);
	n = req(b, F_SEND, 0, 8, 27, 0, 0, 0, 0);
	memset(b + n, 1, 8);
	expect_refusal(t, "SEND with no receive posted (no credit)", b, n + 8,
		       27, ST_PROTO);
	n = req(b, F_WRITE_IMM, 0, 8, 28, rk, a, 0, 0);
	memset(b + n, 1, 8);
	expect_refusal(t, "WRITE_IMM with no receive posted", b, n + 8, 28,
		       ST_PROTO);
	regions_intact(t, "refused requests");

	/* Not requests: the target hangs up. */
	memset(b, 0, 16);
	b[0] = 0x55;
	expect_drop(t, "unknown frame type", b, 16, false);
	memset(b, 0, 16);
	b[0] = F_REPLY;
	le32(b + 8, 1234);
	expect_drop(t, "a reply to nothing", b, 16, false);
	memset(b, 0, 16);
	b[0] = F_CREDIT;
	le32(b + 4, 0x7fffffff);
	expect_drop(t, "an absurd receive credit", b, 16, false);
	memset(b, 0, 16);
	b[0] = F_REPLY;
	le32(b + 4, 1u << 20); /* longer than a reply chunk */
	expect_drop(t, "a 1 MiB reply frame", b, 16, false);
	regions_intact(t, "dropped frames");

	/* Truncated: a WRITE announcing 1 MiB, 100 bytes sent, hang up. */
	th_phase("hostile: truncated WRITE");
	fd = raw_session(t, 16);
	n = req(b, F_WRITE, 0, 1u << 20, 30, rk, a, 0, 0);
	memset(b + n, 0x77, 100);
	raw_send(fd, b, n + 100);
	close(fd);

	/* More replies owed than the announced window: sq_depth 2, then 64
	 * READs of 64 KiB while reading nothing. */
	th_phase("hostile: flooding past the announced window");
	fd = raw_session(t, 2);
	for (i = 0; i < 64; i++) {
		n = req(b, F_READ, 0, RLEN, (uint32_t)i, rk, a, 0, 0);
		if (send(fd, b, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
	}
	/* Either the target saw the window exceeded (a PROTO reply, then it
	 * hangs up), or its replies drained as fast as they were owed and
	 * all 64 come back: both are right, nothing else is. */
	for (i = 0; i < 64; i++) {
		if (next_frame(fd, &r))
			break; /* hung up */
		if (r.type == F_REPLY && r.status != ST_OK) {
			CHECK_EQ(r.status, ST_PROTO);
			th_log("flood: refused at reply %d", i);
			expect_hangup(fd, "flood", 5000);
			fd = -1;
			break;
		}
		CHECKF(r.type == F_REPLY && r.id == (uint32_t)i,
		       "flood: frame 0x%x id %u status %u len %u, reply %d",
		       r.type, r.id, r.status, r.len, i);
	}
	if (fd >= 0) {
		th_log("flood: every reply drained in time (%d)", i);
		close(fd);
	}
	regions_intact(t, "the flood");
}

/* Good requests on a raw session work, and the answers are as documented. */
static void good_raw(struct th *t, const struct auv_mr_desc *d)
{
	uint8_t b[256];
	struct reply r;
	size_t n;
	uint64_t old;
	int fd, i;

	th_phase("raw: good requests");
	fd = raw_session(t, 16);
	n = req(b, F_WRITE, 1, 8, 0, d[R_ALL].rkey, d[R_ALL].addr + 64, 0, 0);
	for (i = 0; i < 8; i++)
		b[n + (size_t)i] = (uint8_t)(0x10 + i);
	n = req(b + n + 8, F_READ, 0, 8, 1, d[R_ALL].rkey, d[R_ALL].addr + 64,
		0, 0) +
	    n + 8;
	n += req(b + n, F_FAA, 0, 8, 2, d[R_ALL].rkey, d[R_ALL].addr + 128, 0,
		 5);
	raw_send(fd, b, n);
	CHECK(next_frame(fd, &r) == 0);
	CHECK(r.type == F_REPLY && r.id == 0 && r.status == ST_OK && !r.len);
	CHECK(next_frame(fd, &r) == 0);
	CHECK(r.type == F_REPLY && r.id == 1 && r.status == ST_OK &&
	      r.len == 8);
	for (i = 0; i < 8; i++)
		CHECK_EQ(r.data[i], 0x10 + i);
	CHECK(next_frame(fd, &r) == 0);
	CHECK(r.type == F_REPLY && r.id == 2 && r.status == ST_OK &&
	      r.len == 8);
	memcpy(&old, r.data, 8);
	CHECK_EQ(th_call(t, 0, TH_CMD_LOAD64, R_ALL, 128, 8, 0), old + 5);
	close(fd);
	/* Put the pattern back. */
	CHECK_EQ(th_call(t, 0, TH_CMD_FILL, R_ALL, 0, RLEN, 0xA0), 0);
}

static int client(struct th *t)
{
	struct auv_mr_desc d[NREG];
	struct auv_mr *loc;
	struct auv_op op;
	int r;

	CHECK_OK(auv_mr_alloc(t->ctx, RLEN, AUV_ACCESS_LOCAL_WRITE, &loc));
	th_connect(t, 0);
	for (r = 0; r < NREG; r++)
		th_call_desc(t, 0, (uint32_t)r, &d[r]);

	good_raw(t, d);
	handshakes(t);
	frames(t, d);
	regions_intact(t, "everything");

	/* The target still serves a well-behaved peer. */
	th_phase("a good READ after all that");
	op = th_op(AUV_OP_READ, auv_mr_addr(loc), RLEN, loc, &d[R_ALL], 0, 1);
	CHECK_RC(th_do(t, t->ep[0], &op, NULL), 0);
	CHECKF(th_verify(auv_mr_addr(loc), RLEN, 0xA0, "READ") == 0,
	       "the good READ returned wrong data");
	CHECK_EQ(auv_ep_status(t->ep[0]), 0);
	CHECK_EQ(th_call(t, 0, TH_CMD_DONE, 0, 0, 0, 0), 0);
	th_note("every hostile case refused or dropped; the target served "
		"on");
	return TH_PASS;
}

static int run(struct th *t)
{
	if (strcmp(t->provider, "tcp"))
		th_skip("tcp_hostile speaks the tcp provider's wire format "
			"only");
	return t->rank == 0 ? target(t) : client(t);
}

static const struct th_test test = {
    .name = "tcp_hostile",
    .procs = 2,
    .timeout_s = 90,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
