// SPDX-License-Identifier: MIT
/*
 * verbs/tcp_wire.c - the tcp provider's wire format, stream parser, region
 * table and the target side of requests.  Pure code: see tcp_wire.h.
 *
 * Byte layouts (docs/wire-format.md has the same tables with the rules):
 *
 *   request (48 bytes)            reply (16 bytes)      CREDIT/BYE (16)
 *    0 u8  type (opcode)           0 u8  type 0x80        0 u8  type
 *    1 u8  flags (ACK)             1 u8  flags (MORE)     1 u8  flags = 0
 *    2 u16 reserved = 0            2 u8  status           2 u16 reserved = 0
 *    4 u32 len                     3 u8  reserved = 0     4 u32 value
 *    8 u32 id                      4 u32 len (data)       8 u64 reserved = 0
 *   12 u32 imm                     8 u32 id
 *   16 u64 addr                   12 u32 reserved = 0
 *   24 u32 rkey
 *   28 u32 reserved = 0
 *   32 u64 compare
 *   40 u64 swap_add
 *
 *   hello (80 bytes, version 1)   hello-ack (32 bytes)
 *    0 magic "AUGURTCP"            0 magic "AUGURTCP"
 *    8 u16 version                 8 u16 version
 *   10 u16 len                    10 u16 len
 *   12 u32 flags = 0              12 u32 status
 *   16 u32 sq_depth               16 u32 sq_depth
 *   20 u32 max_msg                20 u32 max_msg
 *   24 u32 max_send               24 u32 max_send
 *   28 u32 priv_len               28 u32 reserved = 0
 *   32 u8  priv[48]
 *
 * Fields a frame type does not use must be 0: a version-1 peer refuses a
 * frame that sets them, which keeps them free for later versions.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <augur/error.h>
#include <augur/verbs.h>

#include "tcp_wire.h"

/* Odd multiplier of the rkey bijection, and its inverse modulo 2^32. */
#define TCP_MRT_MUL 0x9e3779b1u
#define TCP_MRT_GEN_MASK ((1u << (32 - TCP_MRT_IDX_BITS)) - 1)

#define TCP_ACCESS_REMOTE                                                      \
	(AUV_ACCESS_REMOTE_READ | AUV_ACCESS_REMOTE_WRITE |                    \
	 AUV_ACCESS_REMOTE_ATOMIC)

const char *tcp_bad_str(int why)
{
	static const char *const s[TCP_BAD_NREASONS] = {
	    [TCP_BAD_NONE] = "no error",
	    [TCP_BAD_TYPE] = "unknown frame type",
	    [TCP_BAD_FLAGS] = "unknown flag bits",
	    [TCP_BAD_RSVD] = "reserved or unused field not zero",
	    [TCP_BAD_LEN] = "length 0 or above the limit",
	    [TCP_BAD_ALIGN] = "atomic on a misaligned address",
	    [TCP_BAD_STATUS] = "unknown reply status",
	    [TCP_BAD_MAGIC] = "not an augur tcp peer (bad magic)",
	    [TCP_BAD_HELLO] = "malformed handshake",
	    [TCP_BAD_EARLY] = "data before the connection was accepted",
	    [TCP_BAD_ORDER] = "reply for no outstanding request",
	    [TCP_BAD_CREDIT] = "receive credit going backwards",
	};

	if (why < 0 || why >= TCP_BAD_NREASONS)
		return "unknown reason";
	return s[why];
}

uint32_t tcp_hdr_len(uint8_t type)
{
	switch (type) {
	case TCP_F_READ:
	case TCP_F_WRITE:
	case TCP_F_WRITE_IMM:
	case TCP_F_SEND:
	case TCP_F_CAS:
	case TCP_F_FAA:
		return TCP_REQ_HDR;
	case TCP_F_REPLY:
		return TCP_REPLY_HDR;
	case TCP_F_CREDIT:
	case TCP_F_BYE:
		return TCP_CTRL_HDR;
	}
	return 0;
}

/* --- Frames --------------------------------------------------------------- */

static int req_decode(const uint8_t *p, const struct tcp_limits *lim,
		      struct tcp_frame *f)
{
	f->flags = p[1];
	f->len = tcp_get32(p + 4);
	f->id = tcp_get32(p + 8);
	f->imm = tcp_get32(p + 12);
	f->addr = tcp_get64(p + 16);
	f->rkey = tcp_get32(p + 24);
	f->compare = tcp_get64(p + 32);
	f->swap_add = tcp_get64(p + 40);
	if (f->flags & ~TCP_RQ_KNOWN)
		return TCP_BAD_FLAGS;
	if (tcp_get16(p + 2) || tcp_get32(p + 28))
		return TCP_BAD_RSVD;
	if (f->type != TCP_F_WRITE_IMM && f->imm)
		return TCP_BAD_RSVD;
	if (f->type != TCP_F_CAS && f->compare)
		return TCP_BAD_RSVD;
	if (f->type != TCP_F_CAS && f->type != TCP_F_FAA && f->swap_add)
		return TCP_BAD_RSVD;
	if (!f->len)
		return TCP_BAD_LEN;
	switch (f->type) {
	case TCP_F_READ:
		if (f->len > lim->max_msg)
			return TCP_BAD_LEN;
		break;
	case TCP_F_WRITE:
	case TCP_F_WRITE_IMM:
		if (f->len > lim->max_msg)
			return TCP_BAD_LEN;
		f->body = f->len;
		break;
	case TCP_F_SEND:
		if (f->len > lim->max_send)
			return TCP_BAD_LEN;
		if (f->addr || f->rkey)
			return TCP_BAD_RSVD;
		f->body = f->len;
		break;
	case TCP_F_CAS:
	case TCP_F_FAA:
		if (f->len != 8)
			return TCP_BAD_LEN;
		if (f->addr & 7)
			return TCP_BAD_ALIGN;
		break;
	}
	return TCP_BAD_NONE;
}

int tcp_frame_decode(const uint8_t *p, const struct tcp_limits *lim,
		     struct tcp_frame *f)
{
	memset(f, 0, sizeof(*f));
	f->type = p[0];
	switch (f->type) {
	case TCP_F_READ:
	case TCP_F_WRITE:
	case TCP_F_WRITE_IMM:
	case TCP_F_SEND:
	case TCP_F_CAS:
	case TCP_F_FAA:
		return req_decode(p, lim, f);
	case TCP_F_REPLY:
		f->flags = p[1];
		f->status = p[2];
		f->len = tcp_get32(p + 4);
		f->id = tcp_get32(p + 8);
		if (f->flags & ~TCP_RP_KNOWN)
			return TCP_BAD_FLAGS;
		if (p[3] || tcp_get32(p + 12))
			return TCP_BAD_RSVD;
		if (f->status > TCP_ST_MAX)
			return TCP_BAD_STATUS;
		if (f->len > TCP_RCHUNK)
			return TCP_BAD_LEN;
		/* An error ends its request and carries no data. */
		if (f->status != TCP_ST_OK &&
		    (f->len || (f->flags & TCP_RP_MORE)))
			return TCP_BAD_LEN;
		f->body = f->len;
		return TCP_BAD_NONE;
	case TCP_F_CREDIT:
	case TCP_F_BYE:
		f->flags = p[1];
		f->value = tcp_get32(p + 4);
		if (f->flags)
			return TCP_BAD_FLAGS;
		if (tcp_get16(p + 2) || tcp_get64(p + 8))
			return TCP_BAD_RSVD;
		return TCP_BAD_NONE;
	}
	return TCP_BAD_TYPE;
}

uint32_t tcp_enc_req(uint8_t *p, uint8_t type, uint8_t flags, uint32_t len,
		     uint32_t id, uint32_t rkey, uint64_t addr, uint32_t imm,
		     uint64_t compare, uint64_t swap_add)
{
	p[0] = type;
	p[1] = flags;
	tcp_put16(p + 2, 0);
	tcp_put32(p + 4, len);
	tcp_put32(p + 8, id);
	tcp_put32(p + 12, imm);
	tcp_put64(p + 16, addr);
	tcp_put32(p + 24, rkey);
	tcp_put32(p + 28, 0);
	tcp_put64(p + 32, compare);
	tcp_put64(p + 40, swap_add);
	return TCP_REQ_HDR;
}

uint32_t tcp_enc_reply(uint8_t *p, uint8_t status, uint8_t flags, uint32_t len,
		       uint32_t id)
{
	p[0] = TCP_F_REPLY;
	p[1] = flags;
	p[2] = status;
	p[3] = 0;
	tcp_put32(p + 4, len);
	tcp_put32(p + 8, id);
	tcp_put32(p + 12, 0);
	return TCP_REPLY_HDR;
}

uint32_t tcp_enc_ctrl(uint8_t *p, uint8_t type, uint32_t value)
{
	p[0] = type;
	p[1] = 0;
	tcp_put16(p + 2, 0);
	tcp_put32(p + 4, value);
	tcp_put64(p + 8, 0);
	return TCP_CTRL_HDR;
}

/* --- Handshake ------------------------------------------------------------ */

static void enc_hs_prefix(uint8_t *p, uint16_t len)
{
	memcpy(p, TCP_MAGIC, 8);
	tcp_put16(p + 8, TCP_VERSION);
	tcp_put16(p + 10, len);
}

static void enc_limits(uint8_t *p, const struct tcp_limits *lim)
{
	tcp_put32(p, lim->sq_depth);
	tcp_put32(p + 4, lim->max_msg);
	tcp_put32(p + 8, lim->max_send);
}

uint32_t tcp_enc_hello(uint8_t *p, const struct tcp_limits *lim,
		       const void *priv, uint32_t priv_len)
{
	memset(p, 0, TCP_HELLO_LEN);
	enc_hs_prefix(p, TCP_HELLO_LEN);
	tcp_put32(p + 12, 0);
	enc_limits(p + 16, lim);
	if (priv_len > TCP_PRIV_MAX)
		priv_len = TCP_PRIV_MAX;
	tcp_put32(p + 28, priv_len);
	if (priv_len)
		memcpy(p + 32, priv, priv_len);
	return TCP_HELLO_LEN;
}

uint32_t tcp_enc_ack(uint8_t *p, uint32_t status, const struct tcp_limits *lim)
{
	memset(p, 0, TCP_ACK_LEN);
	enc_hs_prefix(p, TCP_ACK_LEN);
	tcp_put32(p + 12, status);
	enc_limits(p + 16, lim);
	tcp_put32(p + 28, 0);
	return TCP_ACK_LEN;
}

uint32_t tcp_hs_len(const uint8_t *p)
{
	uint16_t len = tcp_get16(p + 10);

	if (memcmp(p, TCP_MAGIC, 8))
		return 0;
	if (len < TCP_HS_PREFIX || len > TCP_HS_MAX)
		return 0;
	return len;
}

static bool limits_sane(const struct tcp_limits *lim)
{
	return lim->sq_depth >= 1 && lim->sq_depth <= 65536 &&
	       lim->max_msg >= 4096 && lim->max_send >= 64 &&
	       lim->max_send <= lim->max_msg;
}

static void dec_limits(const uint8_t *p, struct tcp_limits *lim)
{
	lim->sq_depth = tcp_get32(p);
	lim->max_msg = tcp_get32(p + 4);
	lim->max_send = tcp_get32(p + 8);
}

int tcp_hello_decode(const uint8_t *p, uint32_t n, struct tcp_hello *h)
{
	memset(h, 0, sizeof(*h));
	if (n < TCP_HS_PREFIX || tcp_hs_len(p) != n)
		return TCP_BAD_MAGIC;
	h->version = tcp_get16(p + 8);
	h->len = (uint16_t)n;
	if (h->version != TCP_VERSION)
		return TCP_BAD_NONE; /* the caller answers the version */
	if (n < TCP_HELLO_LEN)
		return TCP_BAD_HELLO;
	h->flags = tcp_get32(p + 12);
	dec_limits(p + 16, &h->lim);
	h->priv_len = tcp_get32(p + 28);
	if (h->flags || h->priv_len > TCP_PRIV_MAX || !limits_sane(&h->lim))
		return TCP_BAD_HELLO;
	memcpy(h->priv, p + 32, h->priv_len);
	return TCP_BAD_NONE;
}

int tcp_ack_decode(const uint8_t *p, uint32_t n, struct tcp_ack *a)
{
	memset(a, 0, sizeof(*a));
	if (n < TCP_HS_PREFIX || tcp_hs_len(p) != n)
		return TCP_BAD_MAGIC;
	a->version = tcp_get16(p + 8);
	a->len = (uint16_t)n;
	if (n < TCP_ACK_LEN)
		return a->version == TCP_VERSION ? TCP_BAD_HELLO : TCP_BAD_NONE;
	a->status = tcp_get32(p + 12);
	dec_limits(p + 16, &a->lim);
	if (a->version == TCP_VERSION && a->status == TCP_ACK_OK &&
	    !limits_sane(&a->lim))
		return TCP_BAD_HELLO;
	return TCP_BAD_NONE;
}

/* --- Stream parser -------------------------------------------------------- */

void tcp_rx_init(struct tcp_rx *rx, uint8_t mode, const struct tcp_limits *lim)
{
	memset(rx, 0, sizeof(*rx));
	rx->mode = mode;
	rx->lim = *lim;
	rx->need = mode == TCP_RX_FRAMES ? 1 : TCP_HS_PREFIX;
}

static int rx_die(struct tcp_rx *rx, int code)
{
	rx->mode = TCP_RX_DEAD;
	return code;
}

static int rx_bad(struct tcp_rx *rx, const struct tcp_rx_ops *ops, void *arg,
		  int why)
{
	ops->bad(arg, &rx->f, why);
	return rx_die(rx, -AUGUR_EPROTO);
}

/* A whole handshake message of rx->need bytes is in rx->hdr. */
static int rx_handshake(struct tcp_rx *rx, const struct tcp_rx_ops *ops,
			void *arg)
{
	struct tcp_hello h;
	struct tcp_ack a;
	int bad, rc;

	if (rx->need == TCP_HS_PREFIX) {
		/* Only the prefix so far: it says how long the message is. */
		uint32_t len = tcp_hs_len(rx->hdr);

		memset(&rx->f, 0, sizeof(rx->f));
		if (!len)
			return rx_bad(rx, ops, arg, TCP_BAD_MAGIC);
		if (len > TCP_HS_PREFIX) {
			rx->need = len;
			return 0;
		}
	}
	if (rx->mode == TCP_RX_HELLO) {
		bad = tcp_hello_decode(rx->hdr, rx->need, &h);
		rc = ops->hello(arg, &h, bad);
		if (!rc && bad)
			rc = -AUGUR_EPROTO;
		if (rc)
			return rx_die(rx, rc);
		rx->mode = TCP_RX_HOLD;
	} else {
		bad = tcp_ack_decode(rx->hdr, rx->need, &a);
		rc = ops->ack(arg, &a, bad);
		if (!rc && bad)
			rc = -AUGUR_EPROTO;
		if (rc)
			return rx_die(rx, rc);
		rx->mode = TCP_RX_FRAMES;
	}
	rx->have = 0;
	rx->need = 1;
	return 0;
}

/* A whole frame header of rx->need bytes is in rx->hdr. */
static int rx_header(struct tcp_rx *rx, const struct tcp_rx_ops *ops, void *arg)
{
	int why, rc;

	if (rx->need == 1) {
		rx->need = tcp_hdr_len(rx->hdr[0]);
		if (!rx->need) {
			memset(&rx->f, 0, sizeof(rx->f));
			rx->f.type = rx->hdr[0];
			return rx_bad(rx, ops, arg, TCP_BAD_TYPE);
		}
		return 0;
	}
	why = tcp_frame_decode(rx->hdr, &rx->lim, &rx->f);
	if (why)
		return rx_bad(rx, ops, arg, why);
	rc = ops->frame(arg, &rx->f);
	if (rc)
		return rx_die(rx, rc);
	rx->have = 0;
	rx->need = 1;
	if (rx->f.body) {
		rx->in_body = true;
		rx->body_off = 0;
		return 0;
	}
	rc = ops->end(arg, &rx->f);
	return rc ? rx_die(rx, rc) : 0;
}

int tcp_rx_feed(struct tcp_rx *rx, const uint8_t *p, size_t n,
		const struct tcp_rx_ops *ops, void *arg)
{
	uint32_t k;
	int rc;

	while (n) {
		switch (rx->mode) {
		case TCP_RX_DEAD:
			return -AUGUR_EPROTO;
		case TCP_RX_HOLD:
			memset(&rx->f, 0, sizeof(rx->f));
			return rx_bad(rx, ops, arg, TCP_BAD_EARLY);
		default:
			break;
		}
		if (rx->in_body) {
			k = rx->f.body - rx->body_off;
			if (k > n)
				k = (uint32_t)n;
			rc = ops->body(arg, &rx->f, rx->body_off, p, k);
			if (rc)
				return rx_die(rx, rc);
			rx->body_off += k;
			p += k;
			n -= k;
			if (rx->body_off == rx->f.body) {
				rx->in_body = false;
				rc = ops->end(arg, &rx->f);
				if (rc)
					return rx_die(rx, rc);
			}
			continue;
		}
		/* Collect a header (or handshake message) of rx->need bytes. */
		k = rx->need - rx->have;
		if (k > n)
			k = (uint32_t)n;
		memcpy(rx->hdr + rx->have, p, k);
		rx->have += k;
		p += k;
		n -= k;
		if (rx->have < rx->need)
			break;
		if (rx->mode == TCP_RX_FRAMES)
			rc = rx_header(rx, ops, arg);
		else
			rc = rx_handshake(rx, ops, arg);
		if (rc)
			return rc;
	}
	return rx->mode == TCP_RX_DEAD ? -AUGUR_EPROTO : 0;
}

/* --- Registered regions --------------------------------------------------- */

static uint32_t mrt_inv(uint32_t a)
{
	uint32_t x = a; /* Newton: correct to 3, 6, 12, 24, 48 bits */
	int i;

	for (i = 0; i < 5; i++)
		x *= 2 - a * x;
	return x;
}

void tcp_mrt_init(struct tcp_mrt *t, uint32_t salt)
{
	memset(t, 0, sizeof(*t));
	t->salt = salt;
}

void tcp_mrt_free(struct tcp_mrt *t)
{
	free(t->ent);
	t->ent = NULL;
	t->cap = 0;
	t->live = 0;
}

int tcp_mrt_add(struct tcp_mrt *t, void *base, uint64_t addr, uint64_t len,
		uint32_t access, uint32_t *rkey)
{
	struct tcp_mrt_ent *e;
	uint32_t i, idx = 0, cap;

	if (t->live >= TCP_MRT_MAX)
		return -ENOMEM;
	if (t->live == t->cap) {
		cap = t->cap ? t->cap * 2 : 64;
		if (cap > TCP_MRT_MAX)
			cap = TCP_MRT_MAX;
		e = realloc(t->ent, (size_t)cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		memset(e + t->cap, 0, (size_t)(cap - t->cap) * sizeof(*e));
		t->ent = e;
		t->next = t->cap;
		t->cap = cap;
	}
	/* Round robin over the entries, so a freed one rests a while. */
	for (i = 0; i < t->cap; i++) {
		idx = (t->next + i) % t->cap;
		if (!t->ent[idx].rkey)
			break;
	}
	e = &t->ent[idx];
	do {
		e->gen = (e->gen + 1) & TCP_MRT_GEN_MASK;
		e->rkey = (((e->gen << TCP_MRT_IDX_BITS) | idx) * TCP_MRT_MUL) ^
			  t->salt;
	} while (!e->rkey); /* 0 means free */
	e->access = access;
	e->base = base;
	e->addr = addr;
	e->len = len;
	t->next = (idx + 1) % t->cap;
	t->live++;
	*rkey = e->rkey;
	return 0;
}

static struct tcp_mrt_ent *mrt_find(const struct tcp_mrt *t, uint32_t rkey)
{
	uint32_t idx;

	if (!rkey)
		return NULL;
	idx = ((rkey ^ t->salt) * mrt_inv(TCP_MRT_MUL)) & (TCP_MRT_MAX - 1);
	if (idx >= t->cap || t->ent[idx].rkey != rkey)
		return NULL;
	return &t->ent[idx];
}

void tcp_mrt_del(struct tcp_mrt *t, uint32_t rkey)
{
	struct tcp_mrt_ent *e = mrt_find(t, rkey);

	if (!e)
		return;
	e->rkey = 0; /* gen stays: the next registration gets a new key */
	e->access = 0;
	e->base = NULL;
	e->addr = 0;
	e->len = 0;
	t->live--;
}

int tcp_mrt_resolve(const struct tcp_mrt *t, uint32_t rkey, uint64_t addr,
		    uint64_t len, uint32_t right, uint8_t **p)
{
	const struct tcp_mrt_ent *e = mrt_find(t, rkey);

	if (!e || !(e->access & right) || !(right & TCP_ACCESS_REMOTE))
		return -AUGUR_EREMOTE_ACCESS;
	if (addr < e->addr || len > e->len || addr - e->addr > e->len - len)
		return -AUGUR_EREMOTE_ACCESS;
	*p = e->base + (addr - e->addr);
	return 0;
}

/* --- The target side ------------------------------------------------------ */

void tcp_srv_init(struct tcp_srv *s, const struct tcp_mrt *mrt,
		  const struct tcp_srv_ops *ops, void *arg)
{
	memset(s, 0, sizeof(*s));
	s->mrt = mrt;
	s->ops = ops;
	s->arg = arg;
}

static int srv_code(uint8_t status)
{
	switch (status) {
	case TCP_ST_ACCESS:
		return -AUGUR_EPEER_GONE;
	case TCP_ST_INVALID:
		return -AUGUR_EREMOTE_INVALID;
	}
	return -AUGUR_EPROTO;
}

/*
 * Answer request @f with error @status and stop serving this connection
 * (RC semantics: after a failed request the connection is in error).
 */
static int srv_refuse(struct tcp_srv *s, const struct tcp_frame *f,
		      uint8_t status)
{
	struct tcp_rep r = {.id = f->id, .kind = TCP_REP_ACK, .status = status};

	s->failed = true;
	s->refused++;
	(void)s->ops->reply(s->arg, &r); /* failing anyway */
	return srv_code(status);
}

static int srv_reply(struct tcp_srv *s, const struct tcp_frame *f,
		     struct tcp_rep *r)
{
	if (s->ops->reply(s->arg, r))
		return srv_refuse(s, f, TCP_ST_PROTO); /* window exceeded */
	return 0;
}

static int srv_atomic(struct tcp_srv *s, const struct tcp_frame *f)
{
	struct tcp_rep r = {
	    .id = f->id, .kind = TCP_REP_VAL, .status = TCP_ST_OK};
	uint64_t *w, old;
	uint8_t *p;

	if (tcp_mrt_resolve(s->mrt, f->rkey, f->addr, 8,
			    AUV_ACCESS_REMOTE_ATOMIC, &p))
		return srv_refuse(s, f, TCP_ST_ACCESS);
	if ((uintptr_t)p & 7)
		return srv_refuse(s, f, TCP_ST_PROTO);
	w = (uint64_t *)(void *)p;
	tcp_dma_begin();
	if (f->type == TCP_F_CAS) {
		old = f->compare;
		__atomic_compare_exchange_n(w, &old, f->swap_add, false,
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	} else {
		old = __atomic_fetch_add(w, f->swap_add, __ATOMIC_SEQ_CST);
	}
	tcp_dma_end();
	r.val = old;
	return srv_reply(s, f, &r);
}

int tcp_srv_frame(struct tcp_srv *s, const struct tcp_frame *f)
{
	struct tcp_rep r;
	uint32_t cap;
	uint8_t *p;

	s->cur_status = TCP_ST_OK;
	s->cur_recv = NULL;
	if (s->failed)
		return 0; /* dropped: the connection is going down */
	switch (f->type) {
	case TCP_F_READ:
		if (tcp_mrt_resolve(s->mrt, f->rkey, f->addr, f->len,
				    AUV_ACCESS_REMOTE_READ, &p))
			return srv_refuse(s, f, TCP_ST_ACCESS);
		memset(&r, 0, sizeof(r));
		r.id = f->id;
		r.kind = TCP_REP_READ;
		r.rkey = f->rkey;
		r.addr = f->addr;
		r.len = f->len;
		return srv_reply(s, f, &r);
	case TCP_F_WRITE:
	case TCP_F_WRITE_IMM:
		if (tcp_mrt_resolve(s->mrt, f->rkey, f->addr, f->len,
				    AUV_ACCESS_REMOTE_WRITE, &p))
			return srv_refuse(s, f, TCP_ST_ACCESS);
		/* The sender holds a credit for the receive it consumes. */
		if (f->type == TCP_F_WRITE_IMM &&
		    s->ops->recv_peek(s->arg, &p, &cap))
			return srv_refuse(s, f, TCP_ST_PROTO);
		return 0;
	case TCP_F_SEND:
		if (s->ops->recv_peek(s->arg, &p, &cap))
			return srv_refuse(s, f, TCP_ST_PROTO);
		if (f->len > cap) {
			s->ops->recv_done(s->arg, -AUGUR_EREMOTE_INVALID,
					  f->len, false, 0);
			return srv_refuse(s, f, TCP_ST_INVALID);
		}
		s->cur_recv = p;
		return 0;
	case TCP_F_CAS:
	case TCP_F_FAA:
		return srv_atomic(s, f);
	}
	return srv_refuse(s, f, TCP_ST_PROTO);
}

int tcp_srv_body(struct tcp_srv *s, const struct tcp_frame *f, uint32_t off,
		 const uint8_t *p, uint32_t n)
{
	uint8_t *dst;

	if (s->failed)
		return 0;
	if (off > f->len || n > f->len - off)
		return srv_refuse(s, f, TCP_ST_PROTO); /* parser bug */
	switch (f->type) {
	case TCP_F_WRITE:
	case TCP_F_WRITE_IMM:
		/* Checked again for every piece: the region may have been
		 * deregistered since the header came. */
		if (tcp_mrt_resolve(s->mrt, f->rkey, f->addr + off, n,
				    AUV_ACCESS_REMOTE_WRITE, &dst))
			return srv_refuse(s, f, TCP_ST_ACCESS);
		tcp_dma_copy(dst, p, n);
		return 0;
	case TCP_F_SEND:
		if (!s->cur_recv)
			return srv_refuse(s, f, TCP_ST_PROTO);
		tcp_dma_copy(s->cur_recv + off, p, n);
		return 0;
	}
	return srv_refuse(s, f, TCP_ST_PROTO);
}

int tcp_srv_end(struct tcp_srv *s, const struct tcp_frame *f)
{
	struct tcp_rep r = {
	    .id = f->id, .kind = TCP_REP_ACK, .status = TCP_ST_OK};

	if (s->failed)
		return 0;
	switch (f->type) {
	case TCP_F_WRITE_IMM:
		s->ops->recv_done(s->arg, 0, 0, true, f->imm);
		break;
	case TCP_F_SEND:
		s->ops->recv_done(s->arg, 0, f->len, false, 0);
		break;
	case TCP_F_WRITE:
		break;
	default:
		return 0; /* READ, CAS, FAA answered at the header */
	}
	if (f->flags & TCP_RQ_ACK)
		return srv_reply(s, f, &r);
	return 0;
}

int tcp_srv_bad(struct tcp_srv *s, const struct tcp_frame *f)
{
	if (s->failed)
		return -AUGUR_EPROTO;
	srv_refuse(s, f, TCP_ST_PROTO);
	return -AUGUR_EPROTO;
}

int tcp_srv_read_chunk(const struct tcp_srv *s, const struct tcp_rep *r,
		       uint32_t n, const uint8_t **p)
{
	uint8_t *q;
	int rc;

	if (r->done > r->len || n > r->len - r->done)
		return -AUGUR_EREMOTE_ACCESS;
	rc = tcp_mrt_resolve(s->mrt, r->rkey, r->addr + r->done, n,
			     AUV_ACCESS_REMOTE_READ, &q);
	if (rc)
		return rc;
	*p = q;
	return 0;
}
