// SPDX-License-Identifier: MIT
/*
 * verbs/tcp.c - the tcp provider: augur's transport for hosts without RDMA,
 * over TCP, with every socket operation going through io_uring (liburing).
 *
 * Overview
 * --------
 * A context is one io_uring, one listening socket ("tcp:<ip>:<port>"), one
 * table of registered regions (verbs/tcp_wire.c: rkeys with a generation,
 * checked on every request) and one completion queue.  An endpoint is one
 * TCP connection carrying both directions of both roles: the requests this
 * side posts and the replies to them, and the requests of the peer and this
 * side's replies.  The wire format is in docs/wire-format.md.
 *
 * One-sidedness caveat.  On RDMA hardware the target's NIC carries out a
 * READ, WRITE or atomic; here the target's own process must do it, so
 * requests are served when the target makes progress: in auv_poll(),
 * auv_wait(), auv_post() and the blocking calls.  augur's progress loop
 * always polls.  For a target that stops calling into augur (a worker deep
 * in computation, a test blocked on its own socket) each context has one
 * helper thread, the stand-in: it sleeps, and only when the context's
 * owner has made no call for TCP_ASSIST_NS does it take the context lock
 * and serve requests until the owner comes back.  A lock the owner takes
 * uncontended on every call is the price (tens of nanoseconds against the
 * microseconds of a TCP round trip); in exchange a peer's one-sided
 * operations never wait for the target's application.
 *
 * io_uring use
 * ------------
 *  - every socket operation (accept, connect, send, receive, shutdown,
 *    cancel) is an SQE; a progress pass reaps completions in batches and
 *    submits whatever it queued with one io_uring_enter();
 *  - receives: one multishot receive per connection taking buffers from a
 *    provided buffer ring of the context (Linux >= 6.0); where the kernel
 *    lacks either, one plain receive per connection into a buffer of its
 *    own, registered (READ_FIXED) when the kernel allows (a note on stderr,
 *    once per process, says which path runs).  AUGUR_TCP_FALLBACK=1 forces
 *    the plain path (for testing it);
 *  - sockets are registered files (a sparse table) where the kernel has
 *    them (Linux >= 5.19);
 *  - auv_wait() sleeps in io_uring_wait_cqe_timeout().
 * Cooperative task running (COOP_TASKRUN + TASKRUN_FLAG, Linux 5.19): the
 * kernel finishes a socket operation in the context of the thread that
 * submitted it; with the default it interrupts that thread with an IPI,
 * which on virtual machines costs more than the whole round trip (a READ
 * answered by a busy-polling target took 3x an epoll ping-pong here, 1.1x
 * with this).  Cooperatively, a thread that is sleeping (in auv_wait(), or
 * in any interruptible system call of the application's) is still woken to
 * do it; a busy-polling one does it when liburing sees the TASKRUN flag and
 * enters the kernel; one computing without system calls does it at its next
 * timer tick, a few milliseconds, and only then can the stand-in serve what
 * came.  Not DEFER_TASKRUN: that ties completions to one submitting thread,
 * and the stand-in must submit too.  The ring fd is not registered (that is
 * per thread, and two threads use the ring).
 *
 * Sending
 * -------
 * Each connection has a staging ring of TCP_TX_SIZE bytes; frames are
 * copied into it (headers, inline data, payloads as room allows) and one
 * send (MSG_WAITALL) at a time drains it, so that the byte stream keeps the
 * order frames were written in and a send that completes lets all that
 * piled up meanwhile go in the next one.  What is written, in this order
 * of preference: the rest of a frame begun, a receive credit, the next
 * reply owed, the next request; replies and requests alternate.
 *
 * Receiving never stalls
 * ----------------------
 * Whatever arrives is dealt with at once, so that a connection's receive
 * side never waits for its send side (which would deadlock two peers
 * reading each other's memory):
 *  - a WRITE lands in the region, an atomic is carried out, a SEND goes to
 *    the posted receive buffer (the sender holds a credit for it: it may
 *    only send a SEND or WRITE_IMM when the receiver has announced a posted
 *    receive, so the receiver never has to hold a message);
 *  - the reply a request needs is queued (struct tcp_rep); a READ's data is
 *    copied out of the region only when its turn to be sent comes, in
 *    chunks of TCP_RCHUNK, each checked against the region table again.
 *    The queue is bounded by the peer's sq_depth (from its hello): a peer
 *    that has more requests waiting for replies breaks the protocol.  That
 *    a READ's data is taken late is RC semantics: a later WRITE may pass an
 *    earlier READ unless it carries AUV_OP_FENCE, which this side enforces
 *    by holding a fenced operation until earlier READs and atomics have
 *    completed;
 *  - a reply resolves this side's operations: replies come in request
 *    order, so a reply for operation k also says that every earlier one
 *    without a reply of its own (unsignaled WRITEs and SENDs) succeeded.
 *    Completions are reported in posting order; when the completion queue
 *    is full they wait in the send queue, not on the wire.
 *
 * Send queue (selective signaling, as shm and hardware): operations get
 * consecutive sequence numbers, which are also the request ids on the wire.
 * An operation holds its slot from auv_post() until the caller polls its
 * own or a later operation's completion; auv_post() keeps posted - retired
 * <= sq_depth.  The ring sq[] holds, in posting order: [sq_head, sq_done)
 * resolved, completion not yet reported; [sq_done, sq_wire) on the wire;
 * [sq_wire, sq_tail) not sent yet.
 *
 * Errors (RC semantics): a request the target refuses (bad rkey, bounds,
 * rights, a revoked region, a malformed request) gets an error reply; the
 * operation completes with that error and its endpoint fails, and so does
 * the target's endpoint.  A side that fails sends what it owes (the error
 * reply) and a BYE with the code the peer should fail with, shuts the
 * connection down and closes it.  End of stream or a socket error means the
 * peer is gone: the first unfinished operation completes with
 * AUGUR_EPEER_GONE, the rest and the posted receives with AUGUR_EFLUSHED.
 * A process that dies has its sockets closed by the kernel, so its peers see
 * that at once; a host that vanishes is noticed by TCP keepalive and
 * TCP_USER_TIMEOUT (TCP_DEAD_S seconds).  Malformed or hostile input never
 * reaches memory outside a registration (tcp_wire.c checks every request,
 * every piece of every WRITE) and is counted (struct tcp_stats;
 * AUGUR_TCP_LOG=1 logs each case on stderr).
 *
 * Threads: the context lock serializes the owner and the stand-in; every
 * entry point takes it.  Memory the peer writes (regions, receive buffers,
 * READ destinations) is written under it, by whichever thread serves.
 * Nothing here leaves errno changed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <liburing.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "provider.h"
#include "tcp_wire.h"

extern const struct auv_provider_ops auvp_tcp_ops;

#define TCP_TX_SIZE (256u << 10)  /* staging ring per connection, 2^n */
#define TCP_NBUFS 64u		  /* provided buffers per context, 2^n */
#define TCP_BUF_SIZE (32u << 10)  /* each */
#define TCP_RBUF_SIZE (64u << 10) /* plain-receive buffer per connection */
#define TCP_NSLOTS 1024u	  /* registered file/buffer table */
#define TCP_RING_SQ 256u
#define TCP_RING_CQ 4096u
#define TCP_BGID 1u
#define TCP_MAX_MSG (1u << 30)
#define TCP_MAX_SEND (64u << 10)
#define TCP_MAX_INLINE 4096u
#define TCP_PENDING_MAX 64u /* connections waiting for a hello/accept */
#define TCP_DEAD_S 20	    /* keepalive + user timeout */

#define NS_PER_MS 1000000ull
#define TCP_ASSIST_NS (1ull * NS_PER_MS)
#define TCP_HS_NS (10000ull * NS_PER_MS)    /* to send a hello */
#define TCP_LINGER_NS (2000ull * NS_PER_MS) /* to see the peer close */
#define TCP_TICK_NS (20ull * NS_PER_MS)
#define TCP_CQE_BATCH 64u

/* CQE user_data: a pointer (8-aligned) and a kind in the low bits. */
enum tcp_ud {
	UD_RECV = 1,
	UD_SEND,
	UD_CONNECT,
	UD_CANCEL,
	UD_SHUTDOWN,
	UD_ACCEPT,
	UD_MASK = 7,
};
#define UD(p, kind) ((uint64_t)(uintptr_t)(p) | (uint64_t)(kind))

/* --- Objects -------------------------------------------------------------- */

struct tcp_list {
	struct tcp_list *prev, *next;
};

struct tcp_stats {
	uint64_t bad_frames;	/* malformed frames */
	uint64_t refused;	/* requests answered with an error */
	uint64_t bad_hellos;	/* handshakes refused */
	uint64_t dropped_conns; /* over TCP_PENDING_MAX, or too slow */
};

/* A completion, and the send queue slot it frees when polled. */
struct tcp_cqe {
	struct auv_wc wc;
	struct tcp_ep *sq_ep; /* NULL: a receive, or its endpoint is gone */
	uint32_t seq;
};

struct tcp_ctx {
	struct auv_ctx base;
	pthread_mutex_t lock;
	struct io_uring ring;
	bool ring_up;
	bool mshot;	   /* multishot receive + provided buffer ring */
	bool fixed_files;  /* sparse registered file table */
	bool fixed_bufs;   /* sparse registered buffer table (plain path) */
	bool mshot_accept; /* multishot accept */
	bool shutdown_op;  /* IORING_OP_SHUTDOWN */
	bool log;	   /* $AUGUR_TCP_LOG */
	bool coop;	   /* IORING_SETUP_COOP_TASKRUN */
	int lfd;
	int lslot;
	bool accept_armed;
	struct sockaddr_storage laddr;
	socklen_t laddr_len;
	/* provided buffers */
	struct io_uring_buf_ring *br;
	size_t br_len;
	uint8_t *bufs;
	uint32_t br_pending; /* buffers handed back, not yet published */
	/* registered file/buffer slots */
	uint8_t slot_used[TCP_NSLOTS];
	/* completion queue: a ring of cq_depth entries */
	struct tcp_cqe *cq;
	uint32_t cq_depth, cq_head, cq_n;
	/* endpoints: handed to the user; waiting for the hello or accept;
	 * neither, closing */
	struct tcp_list eps, pending, zombies;
	uint32_t n_pending;
	uint32_t n_conns; /* in all three lists */
	struct tcp_list mrs;
	struct tcp_mrt mrt;
	uint64_t next_tick;
	uint32_t passes;
	struct tcp_stats stats;
	/* the stand-in */
	pthread_t assist;
	bool assist_up;
	bool stop;
	pthread_cond_t cond;
	int stop_efd;
	uint64_t epoch;	   /* owner calls, under the lock */
	bool status_dirty; /* an endpoint failed: tcp_publish() */
};

struct tcp_mr {
	struct auv_mr base;
	struct tcp_list link;
	size_t maplen; /* auv_mr_alloc(): the mapping; 0 for caller memory */
};

enum tcp_ep_state {
	EP_HS_IN,      /* accepted socket: waiting for the hello */
	EP_READY,      /* hello good: waiting for auv_ep_accept() */
	EP_CONNECTING, /* connect in flight */
	EP_HS_OUT,     /* hello sent: waiting for the ack */
	EP_LIVE,
};

/* A send queue entry: an operation whose completion is not reported yet. */
struct tcp_sqe {
	uint64_t cookie;
	uint8_t *local;
	uint64_t remote_addr;
	uint64_t compare;
	uint64_t swap_add;
	uint32_t len;
	uint32_t rkey;
	uint32_t imm;
	uint32_t done; /* READ, CAS, FAA: bytes of reply received */
	int32_t status;
	uint8_t opcode;
	uint8_t flags;
};

/* A posted receive; done once a message has consumed it. */
struct tcp_rqe {
	uint8_t *buf;
	uint32_t len;
	uint64_t cookie;
	int32_t status;
	uint32_t byte_len;
	uint32_t imm;
	uint8_t flags;
};

struct tcp_ep {
	struct auv_ep base;
	struct tcp_ctx *ctx;
	struct tcp_list link;
	uint8_t state;
	bool user;    /* the caller holds it (until auv_ep_close) */
	bool pending; /* in ctx->pending (counted in n_pending) */
	/* socket */
	int fd;
	int slot;	   /* registered file (and plain-path buffer), or -1 */
	uint32_t inflight; /* SQEs whose last CQE has not come */
	bool recv_armed, need_arm, send_busy, connect_busy;
	bool eof;      /* the peer closed (or the socket failed) */
	bool aborting; /* shut down, waiting for inflight to drain */
	bool closing;  /* graceful: send what is owed, BYE, shut down */
	bool bye_sent, shut_sent;
	int bye_code;	   /* what the peer should fail with */
	uint64_t deadline; /* handshake or linger */
	int conn_rc;	   /* connect: 0 running, 1 done, or -errno */
	bool why_set;	   /* connect: auv_last_error() says why it failed */
	struct sockaddr_storage raddr;
	socklen_t raddr_len;
	char name[80]; /* the peer, for messages */
	/* receive side */
	struct tcp_rx rx;
	struct tcp_srv srv;
	uint8_t *rbuf; /* plain path only */
	bool rbuf_fixed;
	/* staging ring: [tx_head, tx_tail) unsent; a send in flight covers
	 * [tx_head, tx_head + tx_busy_len) */
	uint8_t *tx;
	uint32_t tx_head, tx_tail, tx_busy_len;
	const uint8_t *cur_src; /* payload of the frame being written */
	uint32_t cur_left;
	/* replies owed to the peer, in request order */
	struct tcp_rep *rep;
	uint32_t rep_cap, rep_head, rep_n;
	/* send queue (see the top) */
	struct tcp_sqe *sq;
	uint8_t *sq_inline; /* copies of inline payloads, max_inline each */
	uint32_t sq_depth, sq_mask;
	uint32_t sq_head, sq_done, sq_wire, sq_tail, sq_retired;
	uint32_t reads_out;   /* READ/CAS/FAA on the wire (FENCE) */
	uint32_t peer_credit; /* receives the peer has posted, in all */
	uint32_t msgs_sent;   /* SENDs and WRITE_IMMs sent, in all */
	/*
	 * 0, or the code that broke the endpoint.  Written by whichever
	 * thread serves (the stand-in too), under the lock; copied to
	 * base.status, which the caller reads without any lock
	 * (auv_ep_status), only by the owner's calls (tcp_publish).
	 */
	int status;
	/* receive queue: [rq_head, rq_cons) consumed, not reported;
	 * [rq_cons, rq_tail) posted, waiting for a message */
	struct tcp_rqe *rq;
	uint32_t rq_cap, rq_head, rq_cons, rq_tail;
	uint32_t credit_sent; /* rq_tail last announced */
	/* peer */
	struct tcp_limits peer;
	uint8_t priv[TCP_PRIV_MAX];
	uint32_t priv_len;
};

static inline struct tcp_ctx *to_ctx(struct auv_ctx *c)
{
	return container_of(c, struct tcp_ctx, base);
}

static inline struct tcp_mr *to_mr(struct auv_mr *m)
{
	return container_of(m, struct tcp_mr, base);
}

static inline struct tcp_ep *to_ep(struct auv_ep *e)
{
	return container_of(e, struct tcp_ep, base);
}

static void tcp_list_init(struct tcp_list *h)
{
	h->prev = h->next = h;
}

static bool tcp_list_empty(const struct tcp_list *h)
{
	return h->next == h;
}

static void tcp_list_add_tail(struct tcp_list *n, struct tcp_list *h)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static void tcp_list_del(struct tcp_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

static inline bool seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static void tcp_log(const struct tcp_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void tcp_log(const struct tcp_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->log)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "augur tcp [%d]: ", (int)getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* --- Lock: every entry point ---------------------------------------------- */

/* Copy endpoint failures to where the caller reads them; owner only. */
static void tcp_publish(struct tcp_ctx *c)
{
	struct tcp_list *l;
	struct tcp_ep *ep;

	if (!c->status_dirty)
		return;
	c->status_dirty = false;
	for (l = c->eps.next; l != &c->eps; l = l->next) {
		ep = container_of(l, struct tcp_ep, link);
		if (ep->user)
			ep->base.status = ep->status;
	}
}

/* The owner enters: the stand-in steps back at its next look. */
static void tcp_enter(struct tcp_ctx *c)
{
	pthread_mutex_lock(&c->lock);
	c->epoch++;
	tcp_publish(c);
}

static void tcp_leave(struct tcp_ctx *c)
{
	tcp_publish(c);
	pthread_mutex_unlock(&c->lock);
}

/* --- Submission helpers (lock held) --------------------------------------- */

static struct io_uring_sqe *tcp_get_sqe(struct tcp_ctx *c)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);

	if (!sqe) {
		io_uring_submit(&c->ring);
		sqe = io_uring_get_sqe(&c->ring);
	}
	return sqe;
}

/* Point @sqe at @ep's socket (registered file when there is one). */
static void tcp_sqe_fd(struct io_uring_sqe *sqe, const struct tcp_ep *ep)
{
	if (ep->slot >= 0) {
		sqe->fd = ep->slot;
		sqe->flags |= IOSQE_FIXED_FILE;
	} else {
		sqe->fd = ep->fd;
	}
}

static void tcp_submit(struct tcp_ctx *c)
{
	if (c->br_pending) {
		io_uring_buf_ring_advance(c->br, (int)c->br_pending);
		c->br_pending = 0;
	}
	if (io_uring_sq_ready(&c->ring))
		io_uring_submit(&c->ring);
}

/* --- Completion queue ----------------------------------------------------- */

static inline uint32_t tcp_cq_free(const struct tcp_ctx *c)
{
	return c->cq_depth - c->cq_n;
}

static struct tcp_cqe *tcp_cq_push(struct tcp_ctx *c, struct tcp_ep *ep,
				   uint64_t cookie, int status, uint8_t opcode,
				   uint8_t flags, uint32_t byte_len,
				   uint32_t imm)
{
	uint32_t t = c->cq_head + c->cq_n;
	struct tcp_cqe *e;

	if (t >= c->cq_depth)
		t -= c->cq_depth;
	e = &c->cq[t];
	e->sq_ep = NULL;
	e->wc.cookie = cookie;
	e->wc.ep = &ep->base;
	e->wc.status = status;
	e->wc.opcode = opcode;
	e->wc.flags = flags;
	e->wc.byte_len = byte_len;
	e->wc.imm = imm;
	c->cq_n++;
	return e;
}

static inline struct tcp_sqe *sqe_at(struct tcp_ep *ep, uint32_t seq)
{
	return &ep->sq[seq & ep->sq_mask];
}

/* Report resolved operations and consumed receives, in order, while the
 * completion queue has room. */
static void tcp_ep_report(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;
	struct tcp_sqe *e;
	struct tcp_rqe *r;
	struct tcp_cqe *q;

	while (ep->sq_head != ep->sq_done) {
		e = sqe_at(ep, ep->sq_head);
		if (e->status || (e->flags & AUV_OP_SIGNALED)) {
			if (!tcp_cq_free(c))
				break;
			q = tcp_cq_push(c, ep, e->cookie, e->status, e->opcode,
					0, e->status ? 0 : e->len, 0);
			q->sq_ep = ep;
			q->seq = ep->sq_head;
		}
		ep->sq_head++;
	}
	while (ep->rq_head != ep->rq_cons && tcp_cq_free(c)) {
		r = &ep->rq[ep->rq_head % ep->rq_cap];
		tcp_cq_push(c, ep, r->cookie, r->status, AUV_OP_RECV, r->flags,
			    r->byte_len, r->imm);
		ep->rq_head++;
	}
}

/* --- Endpoint failure ----------------------------------------------------- */

static void tcp_sock_abort(struct tcp_ep *ep);
static void tcp_sock_close_graceful(struct tcp_ep *ep);

static bool op_reads(uint8_t opcode)
{
	return opcode == AUV_OP_READ || opcode == AUV_OP_CAS ||
	       opcode == AUV_OP_FAA;
}

/* Resolve the oldest unresolved operation with @status. */
static void tcp_sq_resolve(struct tcp_ep *ep, int32_t status)
{
	struct tcp_sqe *e = sqe_at(ep, ep->sq_done);

	e->status = status;
	if (op_reads(e->opcode) && seq_before(ep->sq_done, ep->sq_wire))
		ep->reads_out--;
	ep->sq_done++;
	if (seq_before(ep->sq_wire, ep->sq_done))
		ep->sq_wire = ep->sq_done;
}

/*
 * Put @ep in the error state with @status: every unresolved operation
 * completes (the first with @first if non-zero, the rest with
 * AUGUR_EFLUSHED), so do the posted receives; the connection goes down,
 * gracefully (what is owed and a BYE with @peer_code first) when @graceful.
 */
static void tcp_ep_fail(struct tcp_ep *ep, int status, int first, int peer_code,
			bool graceful)
{
	struct tcp_rqe *r;

	if (ep->status)
		return;
	ep->status = status;
	ep->ctx->status_dirty = true;
	/* The first error the caller sees on this endpoint names the cause:
	 * the oldest unfinished operation's, else the oldest receive's. */
	while (ep->sq_done != ep->sq_tail) {
		tcp_sq_resolve(ep, first ? first : -AUGUR_EFLUSHED);
		first = 0;
	}
	ep->reads_out = 0;
	while (ep->rq_cons != ep->rq_tail) {
		r = &ep->rq[ep->rq_cons % ep->rq_cap];
		r->status = first ? first : -AUGUR_EFLUSHED;
		r->byte_len = 0;
		r->flags = 0;
		r->imm = 0;
		ep->rq_cons++;
		first = 0;
	}
	ep->bye_code = peer_code;
	if (graceful && !ep->eof)
		tcp_sock_close_graceful(ep);
	else
		tcp_sock_abort(ep);
}

/* The connection is lost (end of stream, socket error). */
static void tcp_ep_lost(struct tcp_ep *ep, int err)
{
	struct tcp_ctx *c = ep->ctx;

	ep->eof = true;
	switch (ep->state) {
	case EP_CONNECTING:
	case EP_HS_OUT:
		if (!ep->conn_rc)
			ep->conn_rc =
			    err == -ECONNREFUSED || !err ? -ECONNREFUSED : err;
		tcp_sock_abort(ep);
		return;
	case EP_HS_IN:
	case EP_READY:
		tcp_sock_abort(ep); /* the connector gave up */
		return;
	}
	if (ep->status) {
		tcp_sock_abort(ep); /* failed before: nothing more to say */
		return;
	}
	tcp_log(c, "connection to %s lost (%s)", ep->name,
		err ? strerror(-err) : "end of stream");
	tcp_ep_fail(ep, -AUGUR_EPEER_GONE, -AUGUR_EPEER_GONE, 0, false);
}

/* --- Socket lifetime ------------------------------------------------------ */

static void tcp_slot_put(struct tcp_ctx *c, struct tcp_ep *ep)
{
	int minus1 = -1;
	struct iovec none = {NULL, 0};

	if (ep->slot < 0)
		return;
	if (c->fixed_files)
		io_uring_register_files_update(&c->ring, (unsigned)ep->slot,
					       &minus1, 1);
	if (ep->rbuf_fixed)
		io_uring_register_buffers_update_tag(
		    &c->ring, (unsigned)ep->slot, &none, NULL, 1);
	c->slot_used[ep->slot] = 0;
	ep->slot = -1;
	ep->rbuf_fixed = false;
}

/* Cancel what is in flight on @ep's socket; it is closed once the last
 * CQE is in (tcp_ep_settle). */
static void tcp_sock_abort(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;
	struct io_uring_sqe *sqe;
	static const uint8_t kinds[] = {UD_RECV, UD_SEND, UD_CONNECT};
	bool busy[3] = {ep->recv_armed, ep->send_busy, ep->connect_busy};
	unsigned int i;

	ep->closing = false;
	ep->need_arm = false;
	if (ep->fd < 0 || ep->aborting)
		return;
	ep->aborting = true;
	for (i = 0; i < 3; i++) {
		if (!busy[i])
			continue;
		sqe = tcp_get_sqe(c);
		if (!sqe)
			continue; /* queue_exit at close cancels it anyway */
		io_uring_prep_cancel64(sqe, UD(ep, kinds[i]), 0);
		io_uring_sqe_set_data64(sqe, UD(ep, UD_CANCEL));
		ep->inflight++;
	}
}

static void tcp_ep_free(struct tcp_ep *ep);

/* Is @ep finished with its socket?  Then close it (and free @ep if nobody
 * holds it).  Return: true if @ep was freed. */
static bool tcp_ep_settle(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;

	if (!ep->aborting || ep->inflight)
		return false;
	tcp_slot_put(c, ep);
	if (ep->fd >= 0) {
		/* Now, not when the registered file table lets go of it. */
		shutdown(ep->fd, SHUT_RDWR);
		close(ep->fd);
		ep->fd = -1;
	}
	ep->aborting = false;
	if (!ep->user) {
		tcp_ep_free(ep);
		return true;
	}
	return false;
}

/* Graceful: send what is owed and a BYE, shut down, wait for the peer to
 * close (TCP_LINGER_NS at most), then abort. */
static void tcp_sock_close_graceful(struct tcp_ep *ep)
{
	if (ep->fd < 0 || ep->aborting || ep->closing)
		return;
	/* Mid-frame we cannot end cleanly: the payload's owner may take
	 * its buffer back once the failure is reported. */
	if (ep->cur_left) {
		tcp_sock_abort(ep);
		return;
	}
	ep->closing = true;
	ep->deadline = auvp_now_ns() + TCP_LINGER_NS;
}

static void tcp_shutdown(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;
	struct io_uring_sqe *sqe;

	ep->shut_sent = true;
	if (!c->shutdown_op) {
		shutdown(ep->fd, SHUT_WR);
		return;
	}
	sqe = tcp_get_sqe(c);
	if (!sqe) {
		shutdown(ep->fd, SHUT_WR);
		return;
	}
	io_uring_prep_shutdown(sqe, 0, SHUT_WR);
	tcp_sqe_fd(sqe, ep);
	io_uring_sqe_set_data64(sqe, UD(ep, UD_SHUTDOWN));
	ep->inflight++;
}

/* --- Sending -------------------------------------------------------------- */

static inline uint32_t tx_free(const struct tcp_ep *ep)
{
	return TCP_TX_SIZE - (ep->tx_tail - ep->tx_head);
}

static void tx_put(struct tcp_ep *ep, const void *src, uint32_t n)
{
	uint32_t off = ep->tx_tail & (TCP_TX_SIZE - 1);
	uint32_t k = TCP_TX_SIZE - off;

	if (k > n)
		k = n;
	tcp_dma_copy(ep->tx + off, src, k);
	if (n > k)
		tcp_dma_copy(ep->tx, (const uint8_t *)src + k, n - k);
	ep->tx_tail += n;
}

/* Start a send of what is staged, if none is in flight. */
static void tcp_tx_kick(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;
	struct io_uring_sqe *sqe;
	uint32_t off, len;

	if (ep->send_busy || ep->fd < 0 || ep->aborting || ep->eof ||
	    ep->shut_sent || ep->state == EP_CONNECTING)
		return;
	len = ep->tx_tail - ep->tx_head;
	if (!len) {
		if (ep->closing && ep->bye_sent)
			tcp_shutdown(ep);
		return;
	}
	off = ep->tx_head & (TCP_TX_SIZE - 1);
	if (len > TCP_TX_SIZE - off)
		len = TCP_TX_SIZE - off;
	sqe = tcp_get_sqe(c);
	if (!sqe)
		return;
	io_uring_prep_send(sqe, 0, ep->tx + off, len,
			   MSG_NOSIGNAL | MSG_WAITALL);
	tcp_sqe_fd(sqe, ep);
	io_uring_sqe_set_data64(sqe, UD(ep, UD_SEND));
	ep->send_busy = true;
	ep->tx_busy_len = len;
	ep->inflight++;
}

/* Write the next reply owed.  Return: whether anything was written. */
static bool tx_reply(struct tcp_ep *ep)
{
	struct tcp_rep *r = &ep->rep[ep->rep_head % ep->rep_cap];
	uint8_t hdr[TCP_REPLY_HDR + 8];
	uint32_t left, chunk, room = tx_free(ep);
	const uint8_t *src;

	switch (r->kind) {
	case TCP_REP_ACK:
		if (room < TCP_REPLY_HDR)
			return false;
		tcp_enc_reply(hdr, r->status, 0, 0, r->id);
		tx_put(ep, hdr, TCP_REPLY_HDR);
		break;
	case TCP_REP_VAL:
		if (room < TCP_REPLY_HDR + 8)
			return false;
		tcp_enc_reply(hdr, r->status, 0, 8, r->id);
		tcp_put64(hdr + TCP_REPLY_HDR, r->val);
		tx_put(ep, hdr, TCP_REPLY_HDR + 8);
		break;
	case TCP_REP_READ:
		left = r->len - r->done;
		chunk = left < TCP_RCHUNK ? left : TCP_RCHUNK;
		if (room < TCP_REPLY_HDR + chunk) {
			/* Take what fits, but not in crumbs. */
			if (room < TCP_REPLY_HDR + 4096)
				return false;
			chunk = room - TCP_REPLY_HDR;
		}
		if (tcp_srv_read_chunk(&ep->srv, r, chunk, &src)) {
			/* Deregistered since the request came. */
			if (room < TCP_REPLY_HDR)
				return false;
			tcp_enc_reply(hdr, TCP_ST_ACCESS, 0, 0, r->id);
			tx_put(ep, hdr, TCP_REPLY_HDR);
			/* Nothing after an error reply: the requester fails
			 * its endpoint on it. */
			ep->rep_head = 0;
			ep->rep_n = 0;
			ep->srv.failed = true;
			ep->ctx->stats.refused++;
			tcp_ep_fail(ep, -AUGUR_EPEER_GONE, -AUGUR_EPEER_GONE,
				    AUGUR_EPEER_GONE, true);
			return true;
		}
		tcp_enc_reply(hdr, TCP_ST_OK, chunk < left ? TCP_RP_MORE : 0,
			      chunk, r->id);
		tx_put(ep, hdr, TCP_REPLY_HDR);
		tx_put(ep, src, chunk);
		r->done += chunk;
		if (r->done < r->len)
			return true;
		break;
	}
	ep->rep_head++;
	ep->rep_n--;
	return true;
}

/* Write the next request.  Return: whether anything was written. */
static bool tx_request(struct tcp_ep *ep)
{
	struct tcp_sqe *e = sqe_at(ep, ep->sq_wire);
	uint8_t hdr[TCP_REQ_HDR];
	uint8_t flags = 0;
	bool payload = false;

	if ((e->flags & AUV_OP_FENCE) && ep->reads_out)
		return false;
	switch (e->opcode) {
	case AUV_OP_SEND:
	case AUV_OP_WRITE_IMM:
		/* Receiver not ready: hold it, and all after it. */
		if ((int32_t)(ep->peer_credit - ep->msgs_sent) <= 0)
			return false;
		/* fall through */
	case AUV_OP_WRITE:
		payload = true;
		if (e->flags & AUV_OP_SIGNALED)
			flags = TCP_RQ_ACK;
		break;
	}
	if (tx_free(ep) < TCP_REQ_HDR)
		return false;
	/* A small frame goes in whole or waits (no pointless splitting). */
	if (payload && e->len <= 4096 && tx_free(ep) < TCP_REQ_HDR + e->len)
		return false;
	tcp_enc_req(hdr, e->opcode, flags, e->len, ep->sq_wire,
		    e->opcode == AUV_OP_SEND ? 0 : e->rkey,
		    e->opcode == AUV_OP_SEND ? 0 : e->remote_addr,
		    e->opcode == AUV_OP_WRITE_IMM ? e->imm : 0,
		    e->opcode == AUV_OP_CAS ? e->compare : 0,
		    e->opcode == AUV_OP_CAS || e->opcode == AUV_OP_FAA
			? e->swap_add
			: 0);
	tx_put(ep, hdr, TCP_REQ_HDR);
	if (payload) {
		ep->cur_src = e->local;
		ep->cur_left = e->len;
	}
	if (op_reads(e->opcode))
		ep->reads_out++;
	if (e->opcode == AUV_OP_SEND || e->opcode == AUV_OP_WRITE_IMM)
		ep->msgs_sent++;
	ep->sq_wire++;
	return true;
}

/* Fill the staging ring with what can go now. */
static void tcp_tx_fill(struct tcp_ep *ep)
{
	uint8_t hdr[TCP_CTRL_HDR];
	bool more;
	uint32_t n;

	if (ep->fd < 0 || ep->aborting || ep->eof || ep->shut_sent ||
	    ep->state != EP_LIVE)
		return;
	do {
		more = false;
		if (ep->cur_left) {
			n = tx_free(ep);
			if (n > ep->cur_left)
				n = ep->cur_left;
			if (!n)
				return;
			tx_put(ep, ep->cur_src, n);
			ep->cur_src += n;
			ep->cur_left -= n;
			if (ep->cur_left)
				return;
		}
		if (!ep->status && ep->credit_sent != ep->rq_tail) {
			if (tx_free(ep) < TCP_CTRL_HDR)
				return;
			tcp_enc_ctrl(hdr, TCP_F_CREDIT, ep->rq_tail);
			tx_put(ep, hdr, TCP_CTRL_HDR);
			ep->credit_sent = ep->rq_tail;
		}
		if (ep->rep_n && tx_reply(ep))
			more = true;
		if (!ep->status && ep->sq_wire != ep->sq_tail && tx_request(ep))
			more = true;
	} while (more);
	if (ep->closing && !ep->bye_sent && !ep->rep_n && !ep->cur_left &&
	    tx_free(ep) >= TCP_CTRL_HDR) {
		tcp_enc_ctrl(hdr, TCP_F_BYE, (uint32_t)ep->bye_code);
		tx_put(ep, hdr, TCP_CTRL_HDR);
		ep->bye_sent = true;
	}
}

/* --- Receiving: the parser's callbacks ------------------------------------ */

static int rx_fail(struct tcp_ep *ep, int code, int why, const char *what)
{
	struct tcp_ctx *c = ep->ctx;

	if (why) {
		c->stats.bad_frames++;
		tcp_log(c,
			"%s sent a malformed frame (%s): %s; connection "
			"closed (%llu malformed so far)",
			ep->name, tcp_bad_str(why), what,
			(unsigned long long)c->stats.bad_frames);
	}
	tcp_ep_fail(ep, code, code, AUGUR_EPEER_GONE, true);
	return code;
}

/* The target side refused a request (its error reply is queued). */
static int rx_srv_rc(struct tcp_ep *ep, const struct tcp_frame *f, int rc)
{
	struct tcp_ctx *c = ep->ctx;

	if (!rc)
		return 0;
	c->stats.refused++;
	tcp_log(c,
		"refused request %u (opcode %u, rkey 0x%x, addr 0x%llx, "
		"len %u) from %s: %s (%llu refused so far)",
		f->id, f->type, f->rkey, (unsigned long long)f->addr, f->len,
		ep->name, augur_strerror(rc),
		(unsigned long long)c->stats.refused);
	tcp_ep_fail(ep, rc, rc,
		    rc == -AUGUR_EREMOTE_INVALID ? AUGUR_EREMOTE_INVALID
						 : AUGUR_EPEER_GONE,
		    true);
	return rc;
}

static int srv_recv_peek(void *arg, uint8_t **buf, uint32_t *cap)
{
	struct tcp_ep *ep = arg;
	struct tcp_rqe *r;

	if (ep->rq_cons == ep->rq_tail)
		return -ENOENT;
	r = &ep->rq[ep->rq_cons % ep->rq_cap];
	*buf = r->buf;
	*cap = r->len;
	return 0;
}

static void srv_recv_done(void *arg, int32_t status, uint32_t byte_len,
			  bool imm, uint32_t imm_val)
{
	struct tcp_ep *ep = arg;
	struct tcp_rqe *r = &ep->rq[ep->rq_cons % ep->rq_cap];

	r->status = status;
	r->byte_len = byte_len;
	r->flags = imm && !status ? AUV_WC_IMM : 0;
	r->imm = imm ? imm_val : 0;
	ep->rq_cons++;
}

static int srv_reply(void *arg, const struct tcp_rep *r)
{
	struct tcp_ep *ep = arg;
	struct tcp_rep *q;
	uint32_t cap, i;

	/* The window: as many replies owed as the peer may have requests
	 * outstanding.  The one error reply that ends a connection always
	 * gets in. */
	if (ep->rep_n >= ep->peer.sq_depth && r->status == TCP_ST_OK)
		return -ENOSPC;
	if (ep->rep_n == ep->rep_cap) {
		cap = ep->rep_cap * 2;
		q = malloc((size_t)cap * sizeof(*q));
		if (!q)
			return -ENOSPC;
		for (i = 0; i < ep->rep_n; i++)
			q[i] = ep->rep[(ep->rep_head + i) % ep->rep_cap];
		free(ep->rep);
		ep->rep = q;
		ep->rep_cap = cap;
		ep->rep_head = 0;
	}
	ep->rep[(ep->rep_head + ep->rep_n) % ep->rep_cap] = *r;
	ep->rep_n++;
	return 0;
}

static const struct tcp_srv_ops tcp_srv_ops = {
    .recv_peek = srv_recv_peek,
    .recv_done = srv_recv_done,
    .reply = srv_reply,
};

static int rx_hello(void *arg, const struct tcp_hello *h, int bad)
{
	struct tcp_ep *ep = arg;
	struct tcp_ctx *c = ep->ctx;
	struct tcp_limits lim = {.sq_depth = c->base.opts.sq_depth,
				 .max_msg = TCP_MAX_MSG,
				 .max_send = TCP_MAX_SEND};
	uint8_t ack[TCP_ACK_LEN];

	if (!bad && h->version != TCP_VERSION) {
		/* Say which version we speak, then hang up. */
		c->stats.bad_hellos++;
		tcp_log(c,
			"%s speaks wire version %u, this library %u: "
			"refused",
			ep->name, h->version, TCP_VERSION);
		tcp_enc_ack(ack, TCP_ACK_VERSION, &lim);
		tx_put(ep, ack, TCP_ACK_LEN);
		ep->state = EP_LIVE; /* lets the ack and BYE out */
		ep->status = -EPROTO;
		ep->bye_code = AUGUR_EPROTO;
		ep->closing = true;
		ep->deadline = auvp_now_ns() + TCP_LINGER_NS;
		return -EPROTO;
	}
	if (bad) {
		c->stats.bad_hellos++;
		tcp_log(c, "%s: %s; connection closed", ep->name,
			tcp_bad_str(bad));
		tcp_sock_abort(ep);
		return -EPROTO;
	}
	ep->peer = h->lim;
	ep->priv_len = h->priv_len;
	memcpy(ep->priv, h->priv, h->priv_len);
	ep->state = EP_READY;
	return 0;
}

static int rx_ack(void *arg, const struct tcp_ack *a, int bad)
{
	struct tcp_ep *ep = arg;

	if (bad) {
		ep->why_set = true;
		ep->conn_rc = auvp_fail(-ECONNREFUSED,
					"tcp: %s is not an augur tcp context "
					"(%s)",
					ep->name, tcp_bad_str(bad));
		return -EPROTO;
	}
	if (a->version != TCP_VERSION || a->status == TCP_ACK_VERSION) {
		ep->why_set = true;
		ep->conn_rc = auvp_fail(-EPROTO,
					"tcp: %s speaks wire version %u, this "
					"library speaks %u (mixed augur "
					"versions?)",
					ep->name, a->version, TCP_VERSION);
		return -EPROTO;
	}
	if (a->status != TCP_ACK_OK) {
		ep->why_set = true;
		ep->conn_rc = auvp_fail(-ECONNREFUSED,
					"tcp: %s refused the connection "
					"(status %u)",
					ep->name, a->status);
		return -ECONNREFUSED;
	}
	ep->peer = a->lim;
	ep->state = EP_LIVE;
	ep->conn_rc = 1;
	return 0;
}

/* A reply frame: find the operation it answers. */
static int rx_reply_frame(struct tcp_ep *ep, const struct tcp_frame *f)
{
	uint32_t skip = f->id - ep->sq_done, k;
	struct tcp_sqe *e;
	int st;

	/* Replies come in request order: the operations before the one
	 * answered must be those that get no reply when they succeed
	 * (unsignaled WRITE, WRITE_IMM, SEND).  Checked before any of them
	 * is taken for done. */
	if (skip >= ep->sq_wire - ep->sq_done)
		return rx_fail(ep, -AUGUR_EPROTO, TCP_BAD_ORDER,
			       "reply for no outstanding operation");
	for (k = 0; k < skip; k++) {
		e = sqe_at(ep, ep->sq_done + k);
		if (op_reads(e->opcode) || (e->flags & AUV_OP_SIGNALED))
			return rx_fail(ep, -AUGUR_EPROTO, TCP_BAD_ORDER,
				       "reply skips an operation that needs "
				       "one");
	}
	while (skip--)
		tcp_sq_resolve(ep, 0); /* an unsignaled success */
	e = sqe_at(ep, ep->sq_done);
	if (f->status != TCP_ST_OK) {
		st = f->status == TCP_ST_ACCESS	   ? -AUGUR_EREMOTE_ACCESS
		     : f->status == TCP_ST_INVALID ? -AUGUR_EREMOTE_INVALID
						   : -AUGUR_EPROTO;
		tcp_sq_resolve(ep, st);
		tcp_ep_fail(ep, st, 0, AUGUR_EPEER_GONE, true);
		return st;
	}
	switch (e->opcode) {
	case AUV_OP_READ:
		if (f->len > e->len - e->done ||
		    (!(f->flags & TCP_RP_MORE) && e->done + f->len != e->len) ||
		    ((f->flags & TCP_RP_MORE) && !f->len))
			return rx_fail(ep, -AUGUR_EPROTO, TCP_BAD_LEN,
				       "READ reply of the wrong length");
		return 0;
	case AUV_OP_CAS:
	case AUV_OP_FAA:
		if (f->len != 8 || (f->flags & TCP_RP_MORE))
			return rx_fail(ep, -AUGUR_EPROTO, TCP_BAD_LEN,
				       "atomic reply not 8 bytes");
		return 0;
	}
	if (f->len || (f->flags & TCP_RP_MORE))
		return rx_fail(ep, -AUGUR_EPROTO, TCP_BAD_LEN,
			       "acknowledgement with data");
	return 0;
}

static int rx_frame(void *arg, const struct tcp_frame *f)
{
	struct tcp_ep *ep = arg;
	uint32_t v;

	switch (f->type) {
	case TCP_F_REPLY:
		return rx_reply_frame(ep, f);
	case TCP_F_CREDIT:
		v = f->value;
		/* Monotonic, and never more than the receive queue the
		 * peer could have: 2^17 > any rq_depth. */
		if (seq_before(v, ep->peer_credit) ||
		    v - ep->msgs_sent > (1u << 17))
			return rx_fail(ep, -AUGUR_EPROTO, TCP_BAD_CREDIT,
				       "receive credit going backwards");
		ep->peer_credit = v;
		return 0;
	case TCP_F_BYE:
		v = f->value;
		if (v != AUGUR_EREMOTE_INVALID && v != AUGUR_EPROTO)
			v = AUGUR_EPEER_GONE;
		ep->eof = true; /* nothing more will come that matters */
		tcp_ep_fail(ep, -(int)v, -(int)v, 0, false);
		return -(int)v;
	}
	return rx_srv_rc(ep, f, tcp_srv_frame(&ep->srv, f));
}

static int rx_body(void *arg, const struct tcp_frame *f, uint32_t off,
		   const uint8_t *p, uint32_t n)
{
	struct tcp_ep *ep = arg;
	struct tcp_sqe *e;

	if (f->type != TCP_F_REPLY)
		return rx_srv_rc(ep, f, tcp_srv_body(&ep->srv, f, off, p, n));
	e = sqe_at(ep, ep->sq_done);
	tcp_dma_copy(e->local + e->done, p, n); /* rx_reply_frame checked n */
	e->done += n;
	return 0;
}

static int rx_end(void *arg, const struct tcp_frame *f)
{
	struct tcp_ep *ep = arg;
	struct tcp_sqe *e;
	uint64_t v;

	if (f->type == TCP_F_REPLY) {
		if (f->flags & TCP_RP_MORE)
			return 0;
		e = sqe_at(ep, ep->sq_done);
		if (e->opcode == AUV_OP_CAS || e->opcode == AUV_OP_FAA) {
			v = tcp_get64(e->local); /* little-endian on the wire */
			memcpy(e->local, &v, 8);
		}
		tcp_sq_resolve(ep, 0);
		return 0;
	}
	if (f->type == TCP_F_CREDIT || f->type == TCP_F_BYE)
		return 0;
	return rx_srv_rc(ep, f, tcp_srv_end(&ep->srv, f));
}

static void rx_bad(void *arg, const struct tcp_frame *f, int why)
{
	struct tcp_ep *ep = arg;
	struct tcp_ctx *c = ep->ctx;

	if (ep->state != EP_LIVE) {
		c->stats.bad_hellos++;
		tcp_log(c, "%s: %s during the handshake; connection closed",
			ep->name, tcp_bad_str(why));
		if (ep->state == EP_HS_OUT && !ep->conn_rc) {
			ep->why_set = true;
			ep->conn_rc = auvp_fail(-ECONNREFUSED,
						"tcp: %s is not an augur tcp "
						"context (%s)",
						ep->name, tcp_bad_str(why));
		}
		tcp_sock_abort(ep);
		return;
	}
	/* A malformed request still gets an error reply (its id if the
	 * header got that far), then the connection goes down. */
	if (f->type >= TCP_F_READ && f->type <= TCP_F_FAA)
		tcp_srv_bad(&ep->srv, f);
	rx_fail(ep, -AUGUR_EPROTO, why, "malformed frame");
}

static const struct tcp_rx_ops tcp_rx_ops = {
    .hello = rx_hello,
    .ack = rx_ack,
    .frame = rx_frame,
    .body = rx_body,
    .end = rx_end,
    .bad = rx_bad,
};

/* Bytes arrived on @ep. */
static void tcp_ep_input(struct tcp_ep *ep, const uint8_t *p, uint32_t n)
{
	if (ep->status || ep->aborting || ep->rx.mode == TCP_RX_DEAD)
		return; /* going down: nothing more matters */
	(void)tcp_rx_feed(&ep->rx, p, n, &tcp_rx_ops, ep);
}

/* --- Receive arming ------------------------------------------------------- */

static void tcp_arm_recv(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;
	struct io_uring_sqe *sqe;

	ep->need_arm = false;
	if (ep->recv_armed || ep->fd < 0 || ep->aborting || ep->eof)
		return;
	sqe = tcp_get_sqe(c);
	if (!sqe) {
		ep->need_arm = true;
		return;
	}
	if (c->mshot) {
		io_uring_prep_recv_multishot(sqe, 0, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = TCP_BGID;
	} else if (ep->rbuf_fixed) {
		io_uring_prep_read_fixed(sqe, 0, ep->rbuf, TCP_RBUF_SIZE, 0,
					 ep->slot);
	} else {
		io_uring_prep_recv(sqe, 0, ep->rbuf, TCP_RBUF_SIZE, 0);
	}
	tcp_sqe_fd(sqe, ep);
	io_uring_sqe_set_data64(sqe, UD(ep, UD_RECV));
	ep->recv_armed = true;
	ep->inflight++;
}

/* --- Completions ---------------------------------------------------------- */

static void tcp_buf_recycle(struct tcp_ctx *c, unsigned int bid)
{
	io_uring_buf_ring_add(c->br, c->bufs + (size_t)bid * TCP_BUF_SIZE,
			      TCP_BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(TCP_NBUFS),
			      (int)c->br_pending);
	c->br_pending++;
}

static void tcp_cqe_recv(struct tcp_ep *ep, const struct io_uring_cqe *cqe)
{
	struct tcp_ctx *c = ep->ctx;
	bool more = cqe->flags & IORING_CQE_F_MORE;
	const uint8_t *data = ep->rbuf;
	unsigned int bid = 0;
	bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;

	if (!more) {
		ep->recv_armed = false;
		ep->inflight--;
	}
	if (has_buf) {
		bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		data = c->bufs + (size_t)bid * TCP_BUF_SIZE;
	}
	if (cqe->res > 0)
		tcp_ep_input(ep, data, (uint32_t)cqe->res);
	if (has_buf)
		tcp_buf_recycle(c, bid);
	if (cqe->res == 0) {
		if (!ep->aborting)
			tcp_ep_lost(ep, 0);
	} else if (cqe->res < 0) {
		if (cqe->res == -ENOBUFS ||
		    (cqe->res == -ECANCELED && !ep->aborting)) {
			ep->need_arm = true;
		} else if (!ep->aborting) {
			tcp_ep_lost(ep, cqe->res);
		}
	} else if (!more) {
		ep->need_arm = true;
	}
	if (ep->aborting || ep->eof)
		ep->need_arm = false;
}

static void tcp_cqe_send(struct tcp_ep *ep, const struct io_uring_cqe *cqe)
{
	ep->send_busy = false;
	ep->inflight--;
	if (cqe->res < 0) {
		if (!ep->aborting)
			tcp_ep_lost(ep, cqe->res);
		return;
	}
	if ((uint32_t)cqe->res > ep->tx_busy_len) {
		tcp_ep_lost(ep, -EIO); /* cannot happen */
		return;
	}
	ep->tx_head += (uint32_t)cqe->res;
}

static void tcp_cqe_connect(struct tcp_ep *ep, const struct io_uring_cqe *cqe)
{
	struct tcp_limits lim = {.sq_depth = ep->sq_depth,
				 .max_msg = TCP_MAX_MSG,
				 .max_send = TCP_MAX_SEND};
	uint8_t hello[TCP_HELLO_LEN];

	ep->connect_busy = false;
	ep->inflight--;
	if (ep->aborting)
		return;
	if (cqe->res < 0) {
		if (!ep->conn_rc)
			ep->conn_rc = cqe->res;
		tcp_sock_abort(ep);
		return;
	}
	ep->state = EP_HS_OUT;
	tcp_enc_hello(hello, &lim, ep->priv, ep->priv_len);
	tx_put(ep, hello, TCP_HELLO_LEN);
	tcp_tx_kick(ep);
	tcp_arm_recv(ep);
}

static struct tcp_ep *tcp_ep_new(struct tcp_ctx *c, int fd, uint8_t state);
static void tcp_sock_opts(int fd);

static void tcp_arm_accept(struct tcp_ctx *c)
{
	struct io_uring_sqe *sqe;

	if (c->accept_armed || c->lfd < 0)
		return;
	sqe = tcp_get_sqe(c);
	if (!sqe)
		return;
	if (c->mshot_accept)
		io_uring_prep_multishot_accept(sqe, 0, NULL, NULL,
					       SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, 0, NULL, NULL, SOCK_CLOEXEC);
	if (c->lslot >= 0) {
		sqe->fd = c->lslot;
		sqe->flags |= IOSQE_FIXED_FILE;
	} else {
		sqe->fd = c->lfd;
	}
	io_uring_sqe_set_data64(sqe, UD(c, UD_ACCEPT));
	c->accept_armed = true;
}

static void tcp_cqe_accept(struct tcp_ctx *c, const struct io_uring_cqe *cqe)
{
	struct tcp_ep *ep;
	int fd = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->accept_armed = false;
	if (fd < 0) {
		if (fd == -EINVAL && c->mshot_accept) {
			c->mshot_accept = false; /* kernel < 5.19 */
		} else if (fd != -ECANCELED && fd != -EAGAIN &&
			   fd != -ECONNABORTED && fd != -EINTR) {
			tcp_log(c, "accept: %s", strerror(-fd));
		}
		return;
	}
	if (c->n_pending >= TCP_PENDING_MAX) {
		c->stats.dropped_conns++;
		tcp_log(c,
			"%u connections wait for a hello or an accept: "
			"dropping a new one",
			c->n_pending);
		close(fd);
		return;
	}
	tcp_sock_opts(fd);
	ep = tcp_ep_new(c, fd, EP_HS_IN);
	if (!ep) {
		close(fd);
		return;
	}
	tcp_list_add_tail(&ep->link, &c->pending);
	ep->pending = true;
	c->n_pending++;
	ep->deadline = auvp_now_ns() + TCP_HS_NS;
	tcp_arm_recv(ep);
}

static void tcp_cqe(struct tcp_ctx *c, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned int kind = (unsigned int)(ud & UD_MASK);
	struct tcp_ep *ep =
	    (struct tcp_ep *)(uintptr_t)(ud & ~(uint64_t)UD_MASK);

	if (!ud)
		return;
	if (kind == UD_ACCEPT) {
		tcp_cqe_accept(c, cqe);
		return;
	}
	switch (kind) {
	case UD_RECV:
		tcp_cqe_recv(ep, cqe);
		break;
	case UD_SEND:
		tcp_cqe_send(ep, cqe);
		break;
	case UD_CONNECT:
		tcp_cqe_connect(ep, cqe);
		break;
	case UD_SHUTDOWN:
	case UD_CANCEL:
		ep->inflight--;
		break;
	default:
		return;
	}
	tcp_ep_settle(ep);
}

/* --- Progress ------------------------------------------------------------- */

/* Move @ep on: arm, fill, send, report, time out.  Return: true if @ep was
 * freed. */
static bool tcp_ep_service(struct tcp_ep *ep, uint64_t now)
{
	struct tcp_ctx *c = ep->ctx;

	if (ep->need_arm)
		tcp_arm_recv(ep);
	if (ep->state == EP_LIVE)
		tcp_tx_fill(ep);
	tcp_tx_kick(ep);
	if (ep->user && ep->state == EP_LIVE)
		tcp_ep_report(ep);
	if (now && ep->deadline && now >= ep->deadline) {
		if (ep->state == EP_HS_IN) {
			c->stats.dropped_conns++;
			tcp_log(c, "%s sent no hello in time: dropped",
				ep->name);
			ep->deadline = 0;
			tcp_sock_abort(ep);
		} else if (ep->closing || ep->shut_sent) {
			ep->deadline = 0;
			tcp_sock_abort(ep);
		}
	}
	return tcp_ep_settle(ep);
}

static void tcp_service_list(struct tcp_list *h, uint64_t now)
{
	struct tcp_list *l, *next;

	for (l = h->next; l != h; l = next) {
		next = l->next;
		tcp_ep_service(container_of(l, struct tcp_ep, link), now);
	}
}

/* One pass: reap completions, move every connection on, submit. */
static void tcp_progress(struct tcp_ctx *c)
{
	struct io_uring_cqe *cqes[TCP_CQE_BATCH];
	uint64_t now = 0, t;
	unsigned int n, i, rounds;

	for (rounds = 0; rounds < 8; rounds++) {
		n = io_uring_peek_batch_cqe(&c->ring, cqes, TCP_CQE_BATCH);
		if (!n)
			break;
		for (i = 0; i < n; i++)
			tcp_cqe(c, cqes[i]);
		io_uring_cq_advance(&c->ring, n);
	}
	/* Deadlines are coarse: the clock is read every 64th pass only (on
	 * some virtual machines reading it costs a microsecond). */
	if (!(++c->passes & 63)) {
		t = auvp_now_ns();
		if (t >= c->next_tick) {
			now = t;
			c->next_tick = t + TCP_TICK_NS;
		}
	}
	tcp_service_list(&c->eps, now);
	tcp_service_list(&c->pending, now);
	tcp_service_list(&c->zombies, now);
	tcp_arm_accept(c);
	tcp_submit(c);
}

/* Wait for a CQE for at most @ns (UINT64_MAX: no limit); lock held. */
static void tcp_sleep(struct tcp_ctx *c, uint64_t ns)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;

	if (io_uring_cq_ready(&c->ring))
		return;
	if (ns > 100 * NS_PER_MS && (c->n_conns || ns == UINT64_MAX))
		ns = 100 * NS_PER_MS; /* deadlines to check */
	ts.tv_sec = (long long)(ns / 1000000000ull);
	ts.tv_nsec = (long long)(ns % 1000000000ull);
	io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
}

static uint64_t tcp_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	return auvp_now_ns() + (uint64_t)timeout_ms * NS_PER_MS;
}

/* --- The stand-in --------------------------------------------------------- */

static void tcp_assist_nap(struct tcp_ctx *c, int fd2, int ms)
{
	struct pollfd p[2] = {
	    {.fd = c->stop_efd, .events = POLLIN},
	    {.fd = fd2, .events = POLLIN},
	};

	poll(p, fd2 >= 0 ? 2 : 1, ms);
}

/*
 * The stand-in's loop.  Invariant: it touches the context only under the
 * lock, and serves only after the owner has made no call for a whole nap
 * (c->epoch unchanged); it stops serving as soon as the owner is back.
 */
static void *tcp_assist_main(void *arg)
{
	struct tcp_ctx *c = arg;
	int ms = (int)(TCP_ASSIST_NS / NS_PER_MS);
	uint64_t seen;

	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		if (!c->n_conns) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		seen = c->epoch;
		pthread_mutex_unlock(&c->lock);
		tcp_assist_nap(c, -1, ms);
		pthread_mutex_lock(&c->lock);
		while (!c->stop && c->epoch == seen && c->n_conns) {
			tcp_progress(c);
			pthread_mutex_unlock(&c->lock);
			tcp_assist_nap(c, c->ring.ring_fd, 10 * ms);
			pthread_mutex_lock(&c->lock);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int tcp_assist_start(struct tcp_ctx *c)
{
	sigset_t all, old;
	int rc;

	c->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stop_efd < 0)
		return auvp_fail(-errno, "tcp: eventfd: %s", strerror(errno));
	/* Signals are for the application's threads, not this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&c->assist, NULL, tcp_assist_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		close(c->stop_efd);
		c->stop_efd = -1;
		return auvp_fail(-rc,
				 "tcp: cannot start the helper thread: "
				 "%s",
				 strerror(rc));
	}
	c->assist_up = true;
	return 0;
}

static void tcp_assist_stop(struct tcp_ctx *c)
{
	uint64_t one = 1;

	if (!c->assist_up)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (write(c->stop_efd, &one, sizeof(one)) < 0) {
		/* the eventfd cannot be full: one write */
	}
	pthread_join(c->assist, NULL);
	close(c->stop_efd);
	c->stop_efd = -1;
	c->assist_up = false;
}

/* A connection came or went: the stand-in sleeps without any. */
static void tcp_conns_changed(struct tcp_ctx *c)
{
	pthread_cond_broadcast(&c->cond);
}

/* --- Addresses ------------------------------------------------------------ */

static void tcp_sockaddr_str(const struct sockaddr_storage *ss, char *buf,
			     size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

/* A decimal port 0..65535 (@allow0) or 1..65535, the whole string. */
static int tcp_parse_port(const char *s, bool allow0, uint16_t *port)
{
	unsigned long v = 0;
	const char *p;

	if (!*s || strlen(s) > 5)
		return -EINVAL;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535 || (!v && !allow0))
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/*
 * "<ip>:<port>", "[<ipv6>]:<port>", or (@need_port false) also "<ip>",
 * "<ipv6>" and, through the resolver, a host name.  Numeric addresses must
 * be strict (inet_pton).
 */
static int tcp_parse_hostport(const char *s, bool need_port,
			      struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[INET6_ADDRSTRLEN + 8];
	const char *colon, *port = NULL;
	struct sockaddr_in *s4 = (void *)ss;
	struct sockaddr_in6 *s6 = (void *)ss;
	struct addrinfo hints, *ai;
	uint16_t pnum = 0;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		colon = strchr(s, ']');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s - 1);
		if (colon[1] == ':')
			port = colon + 2;
		else if (colon[1] || need_port)
			return -EINVAL;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') == colon) {
			hl = (size_t)(colon - s);
			port = colon + 1;
		} else {
			if (need_port)
				return -EINVAL; /* no port, or bare IPv6 */
			hl = strlen(s);
		}
	}
	if (!hl || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (port && tcp_parse_port(port, !need_port, &pnum))
		return -EINVAL;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(pnum);
		*sl = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(pnum);
		*sl = sizeof(*s6);
		return 0;
	}
	if (need_port)
		return -EINVAL; /* peers' addresses are numeric */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &ai) || !ai)
		return -EINVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sl = (socklen_t)ai->ai_addrlen;
	freeaddrinfo(ai);
	if (ss->ss_family == AF_INET)
		s4->sin_port = htons(pnum);
	else
		s6->sin6_port = htons(pnum);
	return 0;
}

static bool tcp_is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)ss)
			   ->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(
	    &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr);
}

/* The address peers use for a context bound to the wildcard address: the
 * first IPv4 address of an interface that is up and not loopback. */
static void tcp_public_addr(struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (void *)ss;
	struct ifaddrs *ifa, *i;
	uint16_t port = s4->sin_port;

	if (ss->ss_family != AF_INET) {
		((struct sockaddr_in6 *)(void *)ss)->sin6_addr =
		    in6addr_loopback;
		return;
	}
	s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (getifaddrs(&ifa))
		return;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		s4->sin_addr =
		    ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr;
		break;
	}
	s4->sin_port = port;
	freeifaddrs(ifa);
}

static bool tcp_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)ss)
				  ->sin_addr.s_addr) >>
			24) == 127;
	return IN6_IS_ADDR_LOOPBACK(
	    &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr);
}

/* Is @a (a peer's address) the listening address @b of this context? */
static bool tcp_same_endpoint(const struct sockaddr_storage *a,
			      const struct sockaddr_storage *b)
{
	bool wild = tcp_is_wildcard(b);

	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		       (x->sin_addr.s_addr == y->sin_addr.s_addr ||
			(wild && tcp_is_loopback(a)));
	}
	{
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       (!memcmp(&x->sin6_addr, &y->sin6_addr, 16) ||
			(wild && tcp_is_loopback(a)));
	}
}

static void tcp_sock_opts(int fd)
{
	int one = 1, idle = 10, intvl = 2, cnt = 3;
	unsigned int uto = TCP_DEAD_S * 1000;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
}

/* --- Endpoint objects ----------------------------------------------------- */

static int tcp_slot_get(struct tcp_ctx *c, struct tcp_ep *ep)
{
	struct iovec iov = {ep->rbuf, TCP_RBUF_SIZE};
	unsigned int i;

	if (!c->fixed_files)
		return 0;
	for (i = 0; i < TCP_NSLOTS && c->slot_used[i]; i++)
		;
	if (i == TCP_NSLOTS)
		return 0; /* plain fds from here on */
	if (io_uring_register_files_update(&c->ring, i, &ep->fd, 1) != 1)
		return 0;
	c->slot_used[i] = 1;
	ep->slot = (int)i;
	if (ep->rbuf && c->fixed_bufs &&
	    io_uring_register_buffers_update_tag(&c->ring, i, &iov, NULL, 1) ==
		1)
		ep->rbuf_fixed = true;
	return 0;
}

static struct tcp_ep *tcp_ep_new(struct tcp_ctx *c, int fd, uint8_t state)
{
	struct tcp_limits lim = {.sq_depth = c->base.opts.sq_depth,
				 .max_msg = TCP_MAX_MSG,
				 .max_send = TCP_MAX_SEND};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct tcp_ep *ep;

	ep = calloc(1, sizeof(*ep));
	if (!ep)
		goto out_fail;
	ep->ctx = c;
	ep->base.ctx = &c->base;
	ep->fd = fd;
	ep->slot = -1;
	ep->state = state;
	tcp_list_init(&ep->link);
	ep->tx = malloc(TCP_TX_SIZE);
	if (!ep->tx)
		goto out_free;
	if (!c->mshot) {
		ep->rbuf = malloc(TCP_RBUF_SIZE);
		if (!ep->rbuf)
			goto out_free;
	}
	ep->sq_depth = c->base.opts.sq_depth;
	ep->sq_mask = 1;
	while (ep->sq_mask < ep->sq_depth)
		ep->sq_mask <<= 1;
	ep->sq = calloc(ep->sq_mask, sizeof(*ep->sq));
	ep->sq_mask--;
	ep->rq_cap = c->base.opts.rq_depth ? c->base.opts.rq_depth : 1;
	ep->rq = calloc(ep->rq_cap, sizeof(*ep->rq));
	ep->rep_cap = 64;
	ep->rep = calloc(ep->rep_cap, sizeof(*ep->rep));
	if (!ep->sq || !ep->rq || !ep->rep)
		goto out_free;
	tcp_rx_init(&ep->rx, state == EP_HS_IN ? TCP_RX_HELLO : TCP_RX_ACK,
		    &lim);
	tcp_srv_init(&ep->srv, &c->mrt, &tcp_srv_ops, ep);
	if (!getpeername(fd, (struct sockaddr *)&ss, &sl))
		tcp_sockaddr_str(&ss, ep->name, sizeof(ep->name));
	else
		snprintf(ep->name, sizeof(ep->name), "a peer");
	tcp_slot_get(c, ep);
	c->n_conns++;
	tcp_conns_changed(c);
	return ep;

out_free:
	free(ep->rep);
	free(ep->rq);
	free(ep->sq);
	free(ep->rbuf);
	free(ep->tx);
	free(ep);
out_fail:
	auvp_fail(-ENOMEM, "tcp: out of memory for an endpoint");
	return NULL;
}

static void tcp_ep_free(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;
	uint32_t i, k;

	/* Its completions no longer free send queue slots. */
	for (i = 0, k = c->cq_head; i < c->cq_n; i++) {
		if (c->cq[k].sq_ep == ep)
			c->cq[k].sq_ep = NULL;
		if (++k == c->cq_depth)
			k = 0;
	}
	if (ep->pending)
		c->n_pending--;
	tcp_list_del(&ep->link);
	tcp_slot_put(c, ep);
	if (ep->fd >= 0)
		close(ep->fd);
	c->n_conns--;
	free(ep->sq_inline);
	free(ep->rep);
	free(ep->rq);
	free(ep->sq);
	free(ep->rbuf);
	free(ep->tx);
	free(ep);
}

/* @ep is no longer wanted by anyone: close it and free it when its I/O has
 * drained. */
static void tcp_ep_discard(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;

	if (ep->pending)
		c->n_pending--;
	ep->pending = false;
	ep->user = false;
	tcp_list_del(&ep->link);
	tcp_list_add_tail(&ep->link, &c->zombies);
	if (ep->fd >= 0 && !ep->aborting)
		tcp_sock_abort(ep);
	if (!ep->aborting || !ep->inflight) {
		ep->aborting = true;
		tcp_ep_settle(ep);
	}
}

/* --- Context -------------------------------------------------------------- */

/*
 * Can this kernel do multishot receives from a provided buffer ring?  Tried
 * once per process on a socketpair with a ring of its own.
 */
static int tcp_probe_mshot(void)
{
	static _Atomic int known; /* 0 unknown, 1 yes, 2 no */
	struct io_uring_buf_reg reg;
	struct io_uring_buf_ring *br;
	struct __kernel_timespec ts = {.tv_sec = 1};
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	const char *why = NULL;
	static char buf[4][64];
	int sv[2], k, res = -1;
	size_t brlen = 4096;
	unsigned int i;

	k = atomic_load(&known);
	if (k)
		return k == 1;
	if (io_uring_queue_init(8, &ring, 0))
		return 0;
	br = mmap(NULL, brlen, PROT_READ | PROT_WRITE,
		  MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED) {
		io_uring_queue_exit(&ring);
		return 0;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)br;
	reg.ring_entries = 4;
	reg.bgid = 7;
	if (io_uring_register_buf_ring(&ring, &reg, 0)) {
		why = "provided buffer rings (Linux 5.19)";
		goto out;
	}
	io_uring_buf_ring_init(br);
	for (i = 0; i < 4; i++)
		io_uring_buf_ring_add(br, buf[i], sizeof(buf[i]),
				      (unsigned short)i,
				      io_uring_buf_ring_mask(4), (int)i);
	io_uring_buf_ring_advance(br, 4);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		why = "socketpair";
		goto out;
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 7;
	io_uring_sqe_set_data64(sqe, 1);
	io_uring_submit(&ring);
	if (write(sv[1], "x", 1) == 1 &&
	    !io_uring_wait_cqe_timeout(&ring, &cqe, &ts)) {
		res = cqe->res;
		if (res == 1 && !(cqe->flags & IORING_CQE_F_MORE))
			res = -1; /* finished after one shot: no multishot */
		io_uring_cqe_seen(&ring, cqe);
	}
	if (res != 1)
		why = "multishot receive (Linux 6.0)";
	close(sv[0]);
	close(sv[1]);
out:
	io_uring_queue_exit(&ring); /* cancels the receive */
	munmap(br, brlen);
	k = why ? 2 : 1;
	if (why && atomic_exchange(&known, k) == 0)
		fprintf(stderr,
			"augur tcp: this kernel lacks %s: receiving with one "
			"plain receive per connection instead\n",
			why);
	atomic_store(&known, k);
	return k == 1;
}

static int tcp_bufring_setup(struct tcp_ctx *c)
{
	struct io_uring_buf_reg reg;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned int i;
	int rc;

	c->br_len =
	    (TCP_NBUFS * sizeof(struct io_uring_buf) + page - 1) & ~(page - 1);
	c->br = mmap(NULL, c->br_len, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (c->br == MAP_FAILED) {
		c->br = NULL;
		return -ENOMEM;
	}
	c->bufs = malloc((size_t)TCP_NBUFS * TCP_BUF_SIZE);
	if (!c->bufs)
		return -ENOMEM;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)c->br;
	reg.ring_entries = TCP_NBUFS;
	reg.bgid = TCP_BGID;
	rc = io_uring_register_buf_ring(&c->ring, &reg, 0);
	if (rc)
		return rc;
	io_uring_buf_ring_init(c->br);
	for (i = 0; i < TCP_NBUFS; i++)
		tcp_buf_recycle(c, i);
	io_uring_buf_ring_advance(c->br, (int)c->br_pending);
	c->br_pending = 0;
	return 0;
}

static int tcp_listen(struct tcp_ctx *c, const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char buf[96];
	int fd, one = 1, rc;

	if (!addr || !*addr)
		addr = "127.0.0.1";
	if (!strncmp(addr, "tcp:", 4))
		addr += 4;
	if (tcp_parse_hostport(addr, false, &ss, &sl))
		return auvp_fail(-EINVAL,
				 "tcp: cannot listen on '%.64s' (expected "
				 "<ip>, <ip>:<port>, [<ipv6>]:<port> or a "
				 "host name)",
				 addr);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return auvp_fail(-errno, "tcp: socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl)) {
		rc = -errno;
		auvp_fail(rc == -EADDRNOTAVAIL ? -AUGUR_ENO_TRANSPORT : rc,
			  "tcp: cannot listen on %s: %s", addr, strerror(-rc));
		close(fd);
		return rc == -EADDRNOTAVAIL ? -AUGUR_ENO_TRANSPORT : rc;
	}
	if (listen(fd, 128)) {
		rc = auvp_fail(-errno, "tcp: listen: %s", strerror(errno));
		close(fd);
		return rc;
	}
	sl = sizeof(c->laddr);
	getsockname(fd, (struct sockaddr *)&c->laddr, &sl);
	c->laddr_len = sl;
	c->lfd = fd;
	ss = c->laddr;
	if (tcp_is_wildcard(&ss))
		tcp_public_addr(&ss);
	tcp_sockaddr_str(&ss, buf, sizeof(buf));
	snprintf(c->base.addr, sizeof(c->base.addr), "tcp:%s", buf);
	return 0;
}

static void tcp_ctx_free(struct tcp_ctx *c)
{
	struct tcp_list *lists[3] = {&c->eps, &c->pending, &c->zombies};
	struct tcp_mr *m;
	unsigned int i;

	tcp_assist_stop(c);
	/* Peers see the end now: the ring lets go of registered sockets
	 * only some time after it has exited. */
	if (c->lfd >= 0)
		shutdown(c->lfd, SHUT_RDWR);
	for (i = 0; i < 3; i++) {
		struct tcp_list *l;

		for (l = lists[i]->next; l != lists[i]; l = l->next) {
			struct tcp_ep *ep =
			    container_of(l, struct tcp_ep, link);

			if (ep->fd >= 0)
				shutdown(ep->fd, SHUT_RDWR);
		}
	}
	/* Exiting the ring cancels everything in flight; only then do the
	 * sockets and buffers go. */
	if (c->ring_up)
		io_uring_queue_exit(&c->ring);
	c->ring_up = false;
	c->fixed_files = false;
	c->fixed_bufs = false;
	for (i = 0; i < 3; i++) {
		while (!tcp_list_empty(lists[i])) {
			struct tcp_ep *ep =
			    container_of(lists[i]->next, struct tcp_ep, link);

			ep->slot = -1;
			ep->rbuf_fixed = false;
			tcp_ep_free(ep);
		}
	}
	while (!tcp_list_empty(&c->mrs)) {
		m = container_of(c->mrs.next, struct tcp_mr, link);
		tcp_list_del(&m->link);
		if (m->maplen)
			munmap(m->base.addr, m->maplen);
		free(m);
	}
	if (c->lfd >= 0)
		close(c->lfd);
	if (c->br)
		munmap(c->br, c->br_len);
	free(c->bufs);
	tcp_mrt_free(&c->mrt);
	free(c->cq);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static uint32_t tcp_random32(void)
{
	uint32_t x;

	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) == (ssize_t)sizeof(x))
		return x;
	return (uint32_t)(auvp_now_ns() ^ ((uint64_t)getpid() << 16));
}

static int tcp_ctx_open(const struct auv_ctx_opts *opts, struct auv_ctx **out)
{
	struct io_uring_params p;
	struct io_uring_probe *probe;
	const char *env;
	struct tcp_ctx *c;
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c)
		return auvp_fail(-ENOMEM, "tcp: out of memory");
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->lfd = -1;
	c->lslot = -1;
	c->stop_efd = -1;
	tcp_list_init(&c->eps);
	tcp_list_init(&c->pending);
	tcp_list_init(&c->zombies);
	tcp_list_init(&c->mrs);
	tcp_mrt_init(&c->mrt, tcp_random32());
	env = getenv("AUGUR_TCP_LOG");
	c->log = env && *env && strcmp(env, "0");
	c->base.ops = &auvp_tcp_ops;
	c->base.opts = *opts;
	c->base.opts.provider = "tcp";
	c->base.opts.device = NULL;
	if (c->base.opts.max_inline > TCP_MAX_INLINE)
		c->base.opts.max_inline = TCP_MAX_INLINE;
	c->cq_depth = opts->cq_depth;
	c->cq = calloc(c->cq_depth, sizeof(*c->cq));
	if (!c->cq) {
		rc = auvp_fail(-ENOMEM,
			       "tcp: no memory for a completion "
			       "queue of %u entries",
			       c->cq_depth);
		goto out_free;
	}

	memset(&p, 0, sizeof(p));
	/* Cooperative task running: see the top.  Linux 5.19; without it
	 * (EINVAL) completions interrupt the task instead. */
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
		  IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	p.cq_entries = TCP_RING_CQ;
	rc = io_uring_queue_init_params(TCP_RING_SQ, &c->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = TCP_RING_CQ;
		rc = io_uring_queue_init_params(TCP_RING_SQ, &c->ring, &p);
	}
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(TCP_RING_SQ, &c->ring, &p);
	}
	c->coop = !rc && (p.flags & IORING_SETUP_COOP_TASKRUN);
	if (rc) {
		rc = auvp_fail(
		    rc == -ENOSYS || rc == -EPERM ? -AUGUR_ENO_TRANSPORT : rc,
		    "tcp: io_uring_setup: %s (io_uring missing, "
		    "or disabled by kernel.io_uring_disabled or a "
		    "seccomp policy?)",
		    strerror(-rc));
		goto out_free;
	}
	c->ring_up = true;
	probe = io_uring_get_probe_ring(&c->ring);
	if (!probe || !io_uring_opcode_supported(probe, IORING_OP_SEND) ||
	    !io_uring_opcode_supported(probe, IORING_OP_RECV) ||
	    !io_uring_opcode_supported(probe, IORING_OP_ACCEPT) ||
	    !io_uring_opcode_supported(probe, IORING_OP_CONNECT) ||
	    !io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL)) {
		if (probe)
			io_uring_free_probe(probe);
		rc = auvp_fail(-AUGUR_ENO_TRANSPORT,
			       "tcp: this kernel's io_uring lacks socket "
			       "operations (needs Linux 5.6 or later)");
		goto out_free;
	}
	c->shutdown_op = io_uring_opcode_supported(probe, IORING_OP_SHUTDOWN);
	io_uring_free_probe(probe);

	env = getenv("AUGUR_TCP_FALLBACK");
	c->mshot = !(env && *env && strcmp(env, "0")) && tcp_probe_mshot();
	if (c->mshot && tcp_bufring_setup(c)) {
		fprintf(stderr, "augur tcp: cannot set up a provided buffer "
				"ring: plain receives instead\n");
		c->mshot = false;
	}
	c->mshot_accept = true; /* falls back on -EINVAL */
	c->fixed_files = !io_uring_register_files_sparse(&c->ring, TCP_NSLOTS);
	c->fixed_bufs = !c->mshot &&
			!io_uring_register_buffers_sparse(&c->ring, TCP_NSLOTS);

	rc = tcp_listen(c, opts->addr);
	if (rc)
		goto out_free;
	if (c->fixed_files && io_uring_register_files_update(
				  &c->ring, TCP_NSLOTS - 1, &c->lfd, 1) == 1) {
		c->lslot = TCP_NSLOTS - 1;
		c->slot_used[c->lslot] = 1;
	}
	rc = tcp_assist_start(c);
	if (rc)
		goto out_free;

	snprintf(c->base.device, sizeof(c->base.device), "tcp");
	c->base.caps.max_inline = c->base.opts.max_inline;
	c->base.caps.max_msg = TCP_MAX_MSG;
	c->base.caps.max_send = TCP_MAX_SEND;
	c->base.caps.sq_depth = opts->sq_depth;
	c->base.caps.rq_depth = opts->rq_depth;
	c->base.caps.cq_depth = opts->cq_depth;
	snprintf(c->base.caps.device, sizeof(c->base.caps.device), "tcp");
	tcp_log(c,
		"context %s: %s, registered files %s, registered "
		"receive buffers %s, cooperative task running %s",
		c->base.addr,
		c->mshot ? "multishot receive with a provided buffer ring"
			 : "plain receives",
		c->fixed_files ? "yes" : "no", c->fixed_bufs ? "yes" : "no",
		c->coop ? "yes" : "no");
	pthread_mutex_lock(&c->lock);
	tcp_arm_accept(c);
	tcp_submit(c);
	pthread_mutex_unlock(&c->lock);
	*out = &c->base;
	return 0;

out_free:
	tcp_ctx_free(c);
	return rc;
}

static void tcp_ctx_close(struct auv_ctx *bctx)
{
	tcp_ctx_free(to_ctx(bctx));
}

/* --- Memory regions ------------------------------------------------------- */

#define TCP_ACCESS_REMOTE                                                      \
	(AUV_ACCESS_REMOTE_READ | AUV_ACCESS_REMOTE_WRITE |                    \
	 AUV_ACCESS_REMOTE_ATOMIC)

static int tcp_mr_make(struct tcp_ctx *c, void *addr, size_t len,
		       unsigned int access, size_t maplen, struct auv_mr **out)
{
	struct tcp_mr *m;
	uint32_t rkey = 0;
	int rc;

	m = calloc(1, sizeof(*m));
	if (!m)
		return auvp_fail(-ENOMEM, "tcp: out of memory");
	if (access & TCP_ACCESS_REMOTE) {
		rc = tcp_mrt_add(&c->mrt, addr, (uint64_t)(uintptr_t)addr, len,
				 access, &rkey);
		if (rc) {
			free(m);
			return auvp_fail(rc,
					 "tcp: region table full (at most %u "
					 "regions with remote access per "
					 "context)",
					 TCP_MRT_MAX);
		}
	}
	m->base.ctx = &c->base;
	m->base.addr = addr;
	m->base.len = len;
	m->base.access = access;
	m->base.desc.addr = (uint64_t)(uintptr_t)addr;
	m->base.desc.len = len;
	m->base.desc.access = access;
	m->base.desc.rkey = rkey;
	m->maplen = maplen;
	tcp_list_add_tail(&m->link, &c->mrs);
	*out = &m->base;
	return 0;
}

static int tcp_mr_alloc(struct auv_ctx *bctx, size_t len, unsigned int access,
			struct auv_mr **out)
{
	struct tcp_ctx *c = to_ctx(bctx);
	size_t page = (size_t)sysconf(_SC_PAGESIZE), maplen;
	struct sysinfo si;
	uint64_t host;
	void *addr;
	int rc;

	if (!sysinfo(&si)) {
		host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
		if ((uint64_t)len > host)
			return auvp_fail(-ENOMEM,
					 "tcp: a region of %zu bytes is more "
					 "than this host's memory and swap "
					 "(%llu bytes)",
					 len, (unsigned long long)host);
	}
	if (len > SIZE_MAX - page)
		return auvp_fail(-ENOMEM, "tcp: region of %zu bytes", len);
	maplen = (len + page - 1) & ~(page - 1);
	addr = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (addr == MAP_FAILED)
		return auvp_fail(-ENOMEM, "tcp: mmap of %zu bytes: %s", maplen,
				 strerror(errno));
	tcp_enter(c);
	rc = tcp_mr_make(c, addr, len, access, maplen, out);
	tcp_leave(c);
	if (rc)
		munmap(addr, maplen);
	return rc;
}

static int tcp_mr_reg(struct auv_ctx *bctx, void *addr, size_t len,
		      unsigned int access, struct auv_mr **out)
{
	struct tcp_ctx *c = to_ctx(bctx);
	int rc;

	tcp_enter(c);
	rc = tcp_mr_make(c, addr, len, access, 0, out);
	tcp_leave(c);
	return rc;
}

static int tcp_mr_dereg(struct auv_mr *bmr)
{
	struct tcp_mr *m = to_mr(bmr);
	struct tcp_ctx *c = to_ctx(bmr->ctx);

	tcp_enter(c);
	/* From here on no request reaches it (tcp_wire.c resolves the rkey
	 * for every request and every piece of data). */
	if (m->base.desc.rkey)
		tcp_mrt_del(&c->mrt, m->base.desc.rkey);
	tcp_list_del(&m->link);
	tcp_leave(c);
	if (m->maplen)
		munmap(m->base.addr, m->maplen);
	free(m);
	return 0;
}

/* --- Endpoints ------------------------------------------------------------ */

static int tcp_parse_addr(const char *addr, struct sockaddr_storage *ss,
			  socklen_t *sl)
{
	if (strlen(addr) < AUV_ADDR_MAX &&
	    !tcp_parse_hostport(addr + 4, true, ss, sl)) /* after "tcp:" */
		return 0;
	return auvp_fail(-EINVAL,
			 "tcp: malformed address '%.64s' (expected "
			 "tcp:<ipv4>:<port> or tcp:[<ipv6>]:<port>)",
			 addr);
}

static int tcp_ep_connect(struct auv_ctx *bctx, const char *addr,
			  const void *priv, size_t priv_len,
			  struct auv_ep **out)
{
	struct tcp_ctx *c = to_ctx(bctx);
	struct sockaddr_storage ss;
	struct io_uring_sqe *sqe;
	struct tcp_ep *ep;
	uint64_t deadline, now;
	socklen_t sl;
	int fd, rc;

	rc = tcp_parse_addr(addr, &ss, &sl);
	if (rc)
		return rc;
	if (tcp_same_endpoint(&ss, &c->laddr))
		return auvp_fail(-EINVAL,
				 "tcp: %s is this context itself: a context "
				 "cannot connect to itself (use a second "
				 "context, driven by another thread)",
				 addr);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return auvp_fail(-errno, "tcp: socket: %s", strerror(errno));
	tcp_sock_opts(fd);
	tcp_enter(c);
	deadline = auvp_now_ns() +
		   (uint64_t)c->base.opts.connect_timeout_ms * NS_PER_MS;
	ep = tcp_ep_new(c, fd, EP_CONNECTING);
	if (!ep) {
		tcp_leave(c);
		close(fd);
		return -ENOMEM;
	}
	snprintf(ep->name, sizeof(ep->name), "%s", addr + 4);
	ep->user = true;
	ep->priv_len = (uint32_t)priv_len;
	if (priv_len)
		memcpy(ep->priv, priv, priv_len);
	ep->raddr = ss;
	ep->raddr_len = sl;
	tcp_list_add_tail(&ep->link, &c->eps);
	sqe = tcp_get_sqe(c);
	if (!sqe) {
		rc = auvp_fail(-EBUSY, "tcp: submission queue full");
		goto out_discard;
	}
	io_uring_prep_connect(sqe, 0, (struct sockaddr *)&ep->raddr,
			      ep->raddr_len);
	tcp_sqe_fd(sqe, ep);
	io_uring_sqe_set_data64(sqe, UD(ep, UD_CONNECT));
	ep->connect_busy = true;
	ep->inflight++;
	tcp_submit(c);
	for (;;) {
		tcp_progress(c);
		if (ep->conn_rc)
			break;
		now = auvp_now_ns();
		if (now >= deadline) {
			ep->conn_rc = -ETIMEDOUT;
			break;
		}
		tcp_sleep(c, deadline - now);
	}
	rc = ep->conn_rc;
	if (rc == 1) {
		tcp_leave(c);
		*out = &ep->base;
		return 0;
	}
	switch (rc) {
	case -ETIMEDOUT:
		auvp_fail(rc, "tcp: %s did not accept within %u ms", addr,
			  c->base.opts.connect_timeout_ms);
		break;
	case -ECONNREFUSED:
		if (!ep->why_set)
			auvp_fail(rc,
				  "tcp: %s refused the connection "
				  "(nobody listens there, or the context "
				  "closed)",
				  addr);
		break;
	case -ECONNRESET:
		rc = auvp_fail(-ECONNREFUSED,
			       "tcp: %s closed the connection during the "
			       "handshake (context closing?)",
			       addr);
		break;
	case -EHOSTUNREACH:
	case -ENETUNREACH:
		rc = auvp_fail(-ECONNREFUSED, "tcp: %s: %s", addr,
			       strerror(-rc));
		break;
	case -EPROTO:
		break; /* rx_ack said why */
	default:
		auvp_fail(rc, "tcp: connecting to %s: %s", addr, strerror(-rc));
	}
out_discard:
	tcp_ep_discard(ep);
	tcp_submit(c);
	tcp_leave(c);
	return rc;
}

static struct tcp_ep *tcp_first_ready(struct tcp_ctx *c)
{
	struct tcp_list *l;
	struct tcp_ep *ep;

	for (l = c->pending.next; l != &c->pending; l = l->next) {
		ep = container_of(l, struct tcp_ep, link);
		if (ep->state == EP_READY && !ep->aborting && !ep->eof)
			return ep;
	}
	return NULL;
}

static int tcp_ep_accept(struct auv_ctx *bctx, int timeout_ms,
			 struct auv_ep **out, void *priv, size_t *priv_len)
{
	struct tcp_ctx *c = to_ctx(bctx);
	uint64_t deadline = tcp_deadline(timeout_ms), now;
	struct tcp_limits lim;
	uint8_t ack[TCP_ACK_LEN];
	struct tcp_ep *ep;

	tcp_enter(c);
	for (;;) {
		tcp_progress(c);
		ep = tcp_first_ready(c);
		if (ep)
			break;
		now = auvp_now_ns();
		if (timeout_ms == 0 || now >= deadline) {
			tcp_leave(c);
			return auvp_fail(-ETIMEDOUT,
					 "tcp: no connection request within "
					 "%d ms",
					 timeout_ms);
		}
		tcp_sleep(c, deadline - now);
	}
	tcp_list_del(&ep->link);
	c->n_pending--;
	ep->pending = false;
	tcp_list_add_tail(&ep->link, &c->eps);
	ep->user = true;
	ep->state = EP_LIVE;
	ep->deadline = 0;
	ep->rx.mode = TCP_RX_FRAMES;
	lim.sq_depth = ep->sq_depth;
	lim.max_msg = TCP_MAX_MSG;
	lim.max_send = TCP_MAX_SEND;
	tcp_enc_ack(ack, TCP_ACK_OK, &lim);
	tx_put(ep, ack, TCP_ACK_LEN);
	tcp_tx_kick(ep);
	tcp_submit(c);
	if (priv)
		memcpy(priv, ep->priv, ep->priv_len);
	if (priv_len)
		*priv_len = ep->priv_len;
	tcp_leave(c);
	*out = &ep->base;
	return 0;
}

static void tcp_ep_close(struct auv_ep *bep)
{
	struct tcp_ep *ep = to_ep(bep);
	struct tcp_ctx *c = ep->ctx;

	tcp_enter(c);
	/* Outstanding work completes (as far as the queue holds). */
	tcp_ep_fail(ep, -AUGUR_EFLUSHED, 0, AUGUR_EPEER_GONE, false);
	tcp_ep_report(ep);
	tcp_sock_abort(ep);
	tcp_ep_discard(ep);
	tcp_submit(c);
	tcp_leave(c);
}

/* --- Operations ----------------------------------------------------------- */

static int tcp_post(struct auv_ep *bep, const struct auv_op *ops, int n)
{
	struct tcp_ep *ep = to_ep(bep);
	struct tcp_ctx *c = ep->ctx;
	uint32_t inl = c->base.caps.max_inline;
	const struct auv_op *op;
	struct tcp_sqe *e;
	int i;

	tcp_enter(c);
	if (ep->status) {
		i = ep->status;
		goto out;
	}
	/* What core cannot know: the peer's limits (the same in version 1). */
	for (i = 0; i < n; i++) {
		op = &ops[i];
		if (op->len > (op->opcode == AUV_OP_SEND ? ep->peer.max_send
							 : ep->peer.max_msg)) {
			i = auvp_fail(-EINVAL,
				      "tcp: op %d: %u bytes is more than the "
				      "peer takes",
				      i, op->len);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		op = &ops[i];
		if (ep->sq_tail - ep->sq_retired >= ep->sq_depth)
			break; /* send queue full */
		e = sqe_at(ep, ep->sq_tail);
		e->cookie = op->cookie;
		e->local = op->local;
		e->remote_addr = op->remote_addr;
		e->compare = op->compare;
		e->swap_add = op->swap_add;
		e->len = op->len;
		e->rkey = op->rkey;
		e->imm = op->imm;
		e->done = 0;
		e->status = 0;
		e->opcode = op->opcode;
		e->flags = op->flags;
		if (!op->local_mr) {
			/* Inline: the caller may reuse its buffer at once. */
			if (!ep->sq_inline) {
				ep->sq_inline =
				    malloc((size_t)(ep->sq_mask + 1) * inl);
				if (!ep->sq_inline) {
					if (!i)
						i = auvp_fail(-ENOMEM,
							      "tcp: out of "
							      "memory");
					break;
				}
			}
			e->local = ep->sq_inline +
				   (size_t)(ep->sq_tail & ep->sq_mask) * inl;
			memcpy(e->local, op->local, op->len);
		}
		ep->sq_tail++;
	}
	tcp_tx_fill(ep);
	tcp_tx_kick(ep);
	tcp_submit(c);
out:
	tcp_leave(c);
	return i;
}

static int tcp_post_recv(struct auv_ep *bep, void *buf, uint32_t len,
			 struct auv_mr *mr, uint64_t cookie)
{
	struct tcp_ep *ep = to_ep(bep);
	struct tcp_ctx *c = ep->ctx;
	struct tcp_rqe *r;
	int rc = 0;

	tcp_enter(c);
	if (ep->status) {
		rc = ep->status;
	} else if (ep->rq_tail - ep->rq_head >= ep->rq_cap) {
		rc = -EAGAIN;
	} else {
		r = &ep->rq[ep->rq_tail % ep->rq_cap];
		memset(r, 0, sizeof(*r));
		r->buf = buf;
		r->len = len;
		r->cookie = cookie;
		ep->rq_tail++;
		/* The credit goes out with the next progress pass or post:
		 * no send per receive. */
	}
	tcp_leave(c);
	return rc;
}

/* --- Poll, wait ----------------------------------------------------------- */

static int tcp_poll(struct auv_ctx *bctx, struct auv_wc *wc, int max)
{
	struct tcp_ctx *c = to_ctx(bctx);
	struct tcp_cqe *e;
	uint32_t n, k;

	tcp_enter(c);
	tcp_progress(c);
	n = c->cq_n < (uint32_t)max ? c->cq_n : (uint32_t)max;
	for (k = 0; k < n; k++) {
		e = &c->cq[c->cq_head];
		wc[k] = e->wc;
		/* The caller has seen it: its send queue slots are free. */
		if (e->sq_ep)
			e->sq_ep->sq_retired = e->seq + 1;
		if (++c->cq_head == c->cq_depth)
			c->cq_head = 0;
	}
	c->cq_n -= n;
	tcp_leave(c);
	return (int)n;
}

static int tcp_wait(struct auv_ctx *bctx, int timeout_ms)
{
	struct tcp_ctx *c = to_ctx(bctx);
	uint64_t deadline = tcp_deadline(timeout_ms), now;
	int rc;

	tcp_enter(c);
	for (;;) {
		tcp_progress(c);
		if (c->cq_n) {
			rc = 1;
			break;
		}
		now = auvp_now_ns();
		if (timeout_ms == 0 || now >= deadline) {
			rc = 0;
			break;
		}
		tcp_sleep(c, deadline - now);
	}
	tcp_leave(c);
	return rc;
}

/* --- The ops table (each entry leaves errno as it found it) --------------- */

static int tcp_op_ctx_open(const struct auv_ctx_opts *opts,
			   struct auv_ctx **out)
{
	int e = errno, rc = tcp_ctx_open(opts, out);

	errno = e;
	return rc;
}

static void tcp_op_ctx_close(struct auv_ctx *ctx)
{
	int e = errno;

	tcp_ctx_close(ctx);
	errno = e;
}

static int tcp_op_mr_alloc(struct auv_ctx *ctx, size_t len, unsigned int access,
			   struct auv_mr **out)
{
	int e = errno, rc = tcp_mr_alloc(ctx, len, access, out);

	errno = e;
	return rc;
}

static int tcp_op_mr_reg(struct auv_ctx *ctx, void *addr, size_t len,
			 unsigned int access, struct auv_mr **out)
{
	int e = errno, rc = tcp_mr_reg(ctx, addr, len, access, out);

	errno = e;
	return rc;
}

static int tcp_op_mr_dereg(struct auv_mr *mr)
{
	int e = errno, rc = tcp_mr_dereg(mr);

	errno = e;
	return rc;
}

static int tcp_op_ep_connect(struct auv_ctx *ctx, const char *addr,
			     const void *priv, size_t priv_len,
			     struct auv_ep **out)
{
	int e = errno, rc = tcp_ep_connect(ctx, addr, priv, priv_len, out);

	errno = e;
	return rc;
}

static int tcp_op_ep_accept(struct auv_ctx *ctx, int timeout_ms,
			    struct auv_ep **out, void *priv, size_t *priv_len)
{
	int e = errno, rc = tcp_ep_accept(ctx, timeout_ms, out, priv, priv_len);

	errno = e;
	return rc;
}

static void tcp_op_ep_close(struct auv_ep *ep)
{
	int e = errno;

	tcp_ep_close(ep);
	errno = e;
}

static int tcp_op_post(struct auv_ep *ep, const struct auv_op *ops, int n)
{
	int e = errno, rc = tcp_post(ep, ops, n);

	errno = e;
	return rc;
}

static int tcp_op_post_recv(struct auv_ep *ep, void *buf, uint32_t len,
			    struct auv_mr *mr, uint64_t cookie)
{
	int e = errno, rc = tcp_post_recv(ep, buf, len, mr, cookie);

	errno = e;
	return rc;
}

static int tcp_op_poll(struct auv_ctx *ctx, struct auv_wc *wc, int max)
{
	int e = errno, rc = tcp_poll(ctx, wc, max);

	errno = e;
	return rc;
}

static int tcp_op_wait(struct auv_ctx *ctx, int timeout_ms)
{
	int e = errno, rc = tcp_wait(ctx, timeout_ms);

	errno = e;
	return rc;
}

const struct auv_provider_ops auvp_tcp_ops = {
    .name = "tcp",
    .ctx_open = tcp_op_ctx_open,
    .ctx_close = tcp_op_ctx_close,
    .mr_alloc = tcp_op_mr_alloc,
    .mr_reg = tcp_op_mr_reg,
    .mr_dereg = tcp_op_mr_dereg,
    .ep_connect = tcp_op_ep_connect,
    .ep_accept = tcp_op_ep_accept,
    .ep_close = tcp_op_ep_close,
    .post = tcp_op_post,
    .post_recv = tcp_op_post_recv,
    .poll = tcp_op_poll,
    .wait = tcp_op_wait,
};
