/* SPDX-License-Identifier: MIT */
/*
 * verbs/tcp_wire.h - PRIVATE: the tcp provider's wire format, its stream
 * parser, the table of registered regions and the target side of every
 * request.  Not installed.
 *
 * Everything here is pure: no sockets, no io_uring, no locks, no clock, no
 * global state.  verbs/tcp.c drives it with the bytes it receives; the
 * fuzz target tests/tcp/fuzz_request.c drives it with anything at all.  The
 * format itself is documented in docs/wire-format.md; keep the two in step.
 *
 * All integers on the wire are little-endian, whatever the host.
 */
#ifndef AUGUR_VERBS_TCP_WIRE_H
#define AUGUR_VERBS_TCP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- Handshake ------------------------------------------------------------ */

#define TCP_MAGIC "AUGURTCP" /* 8 bytes, no NUL on the wire */
#define TCP_VERSION 1u
#define TCP_PRIV_MAX 48u /* == AUV_PRIV_MAX */

/* Fixed prefix of both handshake messages: magic, version, length. */
#define TCP_HS_PREFIX 12u
#define TCP_HELLO_LEN 80u /* version 1 hello */
#define TCP_ACK_LEN 32u	  /* version 1 hello-ack */
#define TCP_HS_MAX 512u	  /* longest handshake message accepted */

/* Limits a side announces in its hello/ack, and enforces on what it gets. */
struct tcp_limits {
	uint32_t sq_depth; /* requests the announcer may have outstanding */
	uint32_t max_msg;  /* largest READ/WRITE/WRITE_IMM */
	uint32_t max_send; /* largest SEND */
};

struct tcp_hello {
	uint16_t version;
	uint16_t len;
	uint32_t flags;
	struct tcp_limits lim;
	uint32_t priv_len;
	uint8_t priv[TCP_PRIV_MAX];
};

/* Hello-ack status: why a connection is refused. */
enum tcp_ack_status {
	TCP_ACK_OK = 0,
	TCP_ACK_VERSION = 1, /* the acceptor speaks another version */
	TCP_ACK_REFUSED = 2, /* malformed hello, or no room */
};

struct tcp_ack {
	uint16_t version;
	uint16_t len;
	uint32_t status;
	struct tcp_limits lim;
};

/* --- Frames --------------------------------------------------------------- */

/*
 * Frame types.  Requests use the enum auv_opcode values, so the type of a
 * request is the opcode of the operation it carries.
 */
enum tcp_ftype {
	TCP_F_READ = 1,
	TCP_F_WRITE = 2,
	TCP_F_WRITE_IMM = 3,
	TCP_F_SEND = 4,
	TCP_F_CAS = 5,
	TCP_F_FAA = 6,
	TCP_F_REPLY = 0x80,
	TCP_F_CREDIT = 0x81,
	TCP_F_BYE = 0x82,
};

#define TCP_REQ_HDR 48u	  /* request header */
#define TCP_REPLY_HDR 16u /* reply header */
#define TCP_CTRL_HDR 16u  /* CREDIT, BYE */
#define TCP_HDR_MAX TCP_REQ_HDR

/* Request flags. */
#define TCP_RQ_ACK 0x01u /* reply on success too (a signaled operation) */
#define TCP_RQ_KNOWN TCP_RQ_ACK

/* Reply flags. */
#define TCP_RP_MORE 0x01u /* more data frames follow for this request */
#define TCP_RP_KNOWN TCP_RP_MORE

/* Largest data part of one reply frame (READ data is cut in chunks). */
#define TCP_RCHUNK (64u << 10)

/* Reply status. */
enum tcp_status {
	TCP_ST_OK = 0,
	TCP_ST_ACCESS = 1,  /* bad rkey, out of bounds, right missing */
	TCP_ST_INVALID = 2, /* SEND larger than the receive buffer */
	TCP_ST_PROTO = 3,   /* malformed request or protocol violation */
	TCP_ST_MAX = 3,
};

/* A decoded frame header (fields not used by a type are 0). */
struct tcp_frame {
	uint8_t type;
	uint8_t flags;
	uint8_t status;	   /* REPLY */
	uint32_t len;	   /* READ: bytes wanted; else the data that follows */
	uint32_t body;	   /* bytes that follow the header */
	uint32_t id;	   /* request id (the operation's sequence number) */
	uint32_t rkey;	   /* requests */
	uint32_t imm;	   /* WRITE_IMM */
	uint64_t addr;	   /* requests */
	uint64_t compare;  /* CAS */
	uint64_t swap_add; /* CAS: swap; FAA: add */
	uint32_t value;	   /* CREDIT: receives posted in all; BYE: code */
};

/* Why a frame or handshake message was refused (for logs and counters). */
enum tcp_bad {
	TCP_BAD_NONE = 0,
	TCP_BAD_TYPE,	/* unknown frame type */
	TCP_BAD_FLAGS,	/* unknown flag bits */
	TCP_BAD_RSVD,	/* a reserved field is not zero */
	TCP_BAD_LEN,	/* length 0 or above the limit */
	TCP_BAD_ALIGN,	/* atomic on a misaligned address */
	TCP_BAD_STATUS, /* unknown reply status */
	TCP_BAD_MAGIC,	/* handshake: not an augur tcp peer */
	TCP_BAD_HELLO,	/* handshake: malformed */
	TCP_BAD_EARLY,	/* data before the connection was accepted */
	TCP_BAD_ORDER,	/* reply for no outstanding request, or out of order */
	TCP_BAD_CREDIT, /* receive credit going backwards or beyond reason */
	TCP_BAD_NREASONS
};

const char *tcp_bad_str(int why);

/* Header length of a frame of type @type, or 0 if the type is unknown. */
uint32_t tcp_hdr_len(uint8_t type);

/*
 * Decode and validate the header in @p (exactly tcp_hdr_len(p[0]) bytes).
 * Checks everything that can be checked without state: type, flags,
 * reserved bytes, lengths against @lim, atomic alignment.
 * Return: TCP_BAD_NONE, or why it is malformed (*f then holds what could be
 * decoded, in particular the request id).
 */
int tcp_frame_decode(const uint8_t *p, const struct tcp_limits *lim,
		     struct tcp_frame *f);

/* Encoders: write a header into @p (tcp_hdr_len() bytes); return its size. */
uint32_t tcp_enc_req(uint8_t *p, uint8_t type, uint8_t flags, uint32_t len,
		     uint32_t id, uint32_t rkey, uint64_t addr, uint32_t imm,
		     uint64_t compare, uint64_t swap_add);
uint32_t tcp_enc_reply(uint8_t *p, uint8_t status, uint8_t flags, uint32_t len,
		       uint32_t id);
uint32_t tcp_enc_ctrl(uint8_t *p, uint8_t type, uint32_t value);
uint32_t tcp_enc_hello(uint8_t *p, const struct tcp_limits *lim,
		       const void *priv, uint32_t priv_len);
uint32_t tcp_enc_ack(uint8_t *p, uint32_t status, const struct tcp_limits *lim);

/*
 * Decode a handshake message of @n bytes (its length field says how many;
 * the caller has read that many, at most TCP_HS_MAX).
 * Return: TCP_BAD_NONE, TCP_BAD_MAGIC or TCP_BAD_HELLO.  A hello or ack of
 * another version decodes (version and len set) with TCP_BAD_NONE as long
 * as the common prefix is sound: the caller answers the version.
 */
int tcp_hello_decode(const uint8_t *p, uint32_t n, struct tcp_hello *h);
int tcp_ack_decode(const uint8_t *p, uint32_t n, struct tcp_ack *a);
/* Length announced by a handshake prefix (TCP_HS_PREFIX bytes), or 0 if
 * the magic is wrong or the length impossible. */
uint32_t tcp_hs_len(const uint8_t *p);

/* --- Stream parser -------------------------------------------------------- */

enum tcp_rx_mode {
	TCP_RX_HELLO,  /* expect a hello (acceptor) */
	TCP_RX_ACK,    /* expect a hello-ack (connector) */
	TCP_RX_HOLD,   /* hello seen, not accepted yet: no byte may come */
	TCP_RX_FRAMES, /* connected: frames */
	TCP_RX_DEAD,   /* a malformed input was seen: everything is dropped */
};

/*
 * Callbacks of the parser.  Each returns 0 to go on, or a negative code to
 * stop parsing this stream (the parser turns DEAD; the code is returned by
 * tcp_rx_feed()).  The parser calls them in stream order:
 *   hello/ack (handshake modes), then for each frame: frame(), body() for
 *   each piece of its body (in order, pieces of any size), end().
 * bad() reports malformed input: the parser is DEAD afterwards.
 */
struct tcp_rx_ops {
	int (*hello)(void *arg, const struct tcp_hello *h, int bad);
	int (*ack)(void *arg, const struct tcp_ack *a, int bad);
	int (*frame)(void *arg, const struct tcp_frame *f);
	int (*body)(void *arg, const struct tcp_frame *f, uint32_t off,
		    const uint8_t *p, uint32_t n);
	int (*end)(void *arg, const struct tcp_frame *f);
	void (*bad)(void *arg, const struct tcp_frame *f, int why);
};

/*
 * Parser state of one direction of a connection.  Invariant: in FRAMES
 * mode, either have < need (collecting a header of need bytes; need is 1
 * until the type byte is known) or in_body (f is the current frame and
 * body_off of its f.body bytes have been delivered).
 */
struct tcp_rx {
	uint8_t mode;
	bool in_body;
	uint32_t have, need;
	uint32_t body_off;
	struct tcp_frame f;
	struct tcp_limits lim; /* what this side accepts */
	uint8_t hdr[TCP_HS_MAX];
};

void tcp_rx_init(struct tcp_rx *rx, uint8_t mode, const struct tcp_limits *lim);

/*
 * Feed @n bytes of the stream.  Return: 0 when all were consumed, or the
 * negative code a callback returned (or -AUGUR_EPROTO after bad()); the
 * parser is then DEAD and drops whatever comes next.
 */
int tcp_rx_feed(struct tcp_rx *rx, const uint8_t *p, size_t n,
		const struct tcp_rx_ops *ops, void *arg);

/* --- Registered regions --------------------------------------------------- */

/*
 * The table of regions peers may reach, owned by one context.
 *
 * rkey = mix(gen << TCP_MRT_IDX_BITS | idx) ^ salt, where idx is the entry,
 * gen counts the entry's registrations (so it changes every time the entry
 * is reused), salt is random per context and mix() is a bijection of 32-bit
 * integers (multiplication by an odd constant).  A lookup inverts that to
 * find the entry and then compares the whole rkey with the one stored
 * there: a deregistered region's rkey (entry freed: rkey 0 stored, or
 * reused: another gen) is refused.  It takes 2^20 reuses of one entry for
 * an rkey to come back.
 */
#define TCP_MRT_IDX_BITS 12
#define TCP_MRT_MAX (1u << TCP_MRT_IDX_BITS)

struct tcp_mrt_ent {
	uint32_t rkey;	 /* 0 while free */
	uint32_t access; /* enum auv_access bits */
	uint32_t gen;
	uint8_t *base; /* first byte in this process */
	uint64_t addr; /* first byte as peers address it */
	uint64_t len;
};

struct tcp_mrt {
	struct tcp_mrt_ent *ent;
	uint32_t cap; /* entries allocated */
	uint32_t next;
	uint32_t salt;
	uint32_t live;
};

void tcp_mrt_init(struct tcp_mrt *t, uint32_t salt);
void tcp_mrt_free(struct tcp_mrt *t);
/* Return: 0 and *rkey (never 0); -ENOMEM (no memory or TCP_MRT_MAX live). */
int tcp_mrt_add(struct tcp_mrt *t, void *base, uint64_t addr, uint64_t len,
		uint32_t access, uint32_t *rkey);
void tcp_mrt_del(struct tcp_mrt *t, uint32_t rkey);
/*
 * Where [@addr, @addr + @len) of region @rkey is, if the region is live,
 * grants @right, and holds all of it.  @len may be 0 only for a lookup.
 * Return: 0 and *p, or -AUGUR_EREMOTE_ACCESS.
 */
int tcp_mrt_resolve(const struct tcp_mrt *t, uint32_t rkey, uint64_t addr,
		    uint64_t len, uint32_t right, uint8_t **p);

/* --- The target side of requests ------------------------------------------ */

enum tcp_rep_kind {
	TCP_REP_ACK,  /* status only */
	TCP_REP_VAL,  /* status and 8 bytes (CAS/FAA: the old value) */
	TCP_REP_READ, /* data of a region, sent in chunks when it is its turn */
};

/* A reply the target owes its peer (queued, sent in request order). */
struct tcp_rep {
	uint32_t id;
	uint8_t kind;
	uint8_t status;
	uint32_t rkey;
	uint32_t len;
	uint32_t done; /* READ: bytes sent so far */
	uint64_t addr;
	uint64_t val;
};

struct tcp_srv_ops {
	/* The oldest posted receive: 0 with its buffer and capacity, or
	 * -ENOENT when none is posted. */
	int (*recv_peek)(void *arg, uint8_t **buf, uint32_t *cap);
	/* Complete the oldest posted receive. */
	void (*recv_done)(void *arg, int32_t status, uint32_t byte_len,
			  bool imm, uint32_t imm_val);
	/* Queue a reply.  0, or -ENOSPC when the peer has more replies
	 * owed than its announced sq_depth (a protocol violation).  An
	 * error reply must always be taken (it is the last one). */
	int (*reply)(void *arg, const struct tcp_rep *r);
};

/*
 * The target side of one connection.  Invariant: once failed, no request
 * is carried out any more (frames are still parsed, and dropped).
 * cur_* describe the request whose body is being received.
 */
struct tcp_srv {
	const struct tcp_mrt *mrt;
	const struct tcp_srv_ops *ops;
	void *arg;
	bool failed;
	int32_t cur_status; /* TCP_ST_* of the current request so far */
	uint8_t *cur_recv;  /* SEND: the receive buffer */
	uint64_t refused;   /* requests answered with an error */
};

void tcp_srv_init(struct tcp_srv *s, const struct tcp_mrt *mrt,
		  const struct tcp_srv_ops *ops, void *arg);
/*
 * A request frame, each piece of its body, its end (see tcp_rx_ops).
 * Return: 0, or the negative code the connection must fail with (the
 * error reply is already queued): -AUGUR_EPEER_GONE after a request the
 * target refused (the peer breaks the connection), -AUGUR_EREMOTE_INVALID
 * after an oversized SEND, -AUGUR_EPROTO after a protocol violation.
 */
int tcp_srv_frame(struct tcp_srv *s, const struct tcp_frame *f);
int tcp_srv_body(struct tcp_srv *s, const struct tcp_frame *f, uint32_t off,
		 const uint8_t *p, uint32_t n);
int tcp_srv_end(struct tcp_srv *s, const struct tcp_frame *f);
/* A request the parser found malformed (f holds what decoded): reply
 * TCP_ST_PROTO for its id and fail.  Return: -AUGUR_EPROTO. */
int tcp_srv_bad(struct tcp_srv *s, const struct tcp_frame *f);

/*
 * Where the next @n bytes of READ reply @r are (re-checked every time: the
 * region may have been deregistered since the request came).
 * Return: 0 and *p, or -AUGUR_EREMOTE_ACCESS.
 */
int tcp_srv_read_chunk(const struct tcp_srv *s, const struct tcp_rep *r,
		       uint32_t n, const uint8_t **p);

/*
 * Registered memory is written and read on behalf of a peer, as a NIC's
 * DMA would: the order with the application's own accesses goes through
 * the network (the peer is told, then tells the application out of band),
 * which ThreadSanitizer cannot see.  Under TSan these copies are not
 * recorded; everywhere else the helpers cost nothing.
 */
#if defined(__SANITIZE_THREAD__)
#define TCP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TCP_TSAN 1
#endif
#endif
#ifdef TCP_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
static inline void tcp_dma_begin(void)
{
	AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
	AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
}

static inline void tcp_dma_end(void)
{
	AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
	AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
}
#else
static inline void tcp_dma_begin(void)
{
}

static inline void tcp_dma_end(void)
{
}
#endif

static inline void tcp_dma_copy(void *dst, const void *src, size_t n)
{
	tcp_dma_begin();
	__builtin_memcpy(dst, src, n);
	tcp_dma_end();
}

/* --- Little-endian helpers ------------------------------------------------ */

static inline void tcp_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void tcp_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void tcp_put64(uint8_t *p, uint64_t v)
{
	tcp_put32(p, (uint32_t)v);
	tcp_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t tcp_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t tcp_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t tcp_get64(const uint8_t *p)
{
	return (uint64_t)tcp_get32(p) | (uint64_t)tcp_get32(p + 4) << 32;
}

#endif /* AUGUR_VERBS_TCP_WIRE_H */
