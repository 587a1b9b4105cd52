// SPDX-License-Identifier: MIT
/*
 * verbs/ibv.c - the ibv provider: libibverbs RC queue pairs connected with
 * librdmacm.  Runs on any verbs device (ConnectX, SoftRoCE/rxe).
 *
 * Objects
 *   A context is one listening rdma_cm id bound to one local IP address (and
 *   so to one device), one protection domain, one completion queue with a
 *   completion channel, shared by the send and receive queues of every QP of
 *   the context.  Endpoints are RC QPs created through rdma_cm.
 *
 * Connection events
 *   auv_ep_connect() resolves and connects on an event channel of its own;
 *   auv_ep_accept() takes CONNECT_REQUESTs from the listening channel.  Once
 *   a connection is set up its id is migrated to the context's endpoint
 *   channel (non-blocking), which auv_poll() reads at most once a
 *   millisecond (and at once after auv_wait() saw it readable), so that a
 *   DISCONNECTED is noticed: the endpoint's status becomes AUGUR_EPEER_GONE
 *   and its QP is moved to the error state (outstanding work flushes).
 *
 *   An accepted id is migrated before rdma_accept(), so every later event
 *   of it comes on the endpoint channel; auv_ep_accept() waits there for
 *   its ESTABLISHED (until the connect timeout, or its own deadline if that
 *   is later: a lost RTU is made good by the CM's next REP, about 4 s on).
 *   The connector is established as soon as it has sent its RTU, and may
 *   use the connection and disconnect at once.  If the acceptor's CM
 *   handles that DREQ first (the RTU was lost, or is handled later on
 *   another CPU and then dropped), the acceptor gets DISCONNECTED and never
 *   ESTABLISHED.  That connection existed: auv_ep_accept() still returns
 *   it, and it fails with AUGUR_EPEER_GONE at the next auv_poll(), as in
 *   the usual order.  (Treating it as a failed set-up loses the connection
 *   the connector holds, and the acceptor waits for a request that never
 *   comes.)
 *
 * Work request ids
 *   wr_id = endpoint index << 32 | RECV bit (1 << 31) | ring slot.  The
 *   endpoint index is the endpoint's place in ctx->eps, reused only after
 *   the endpoint has been drained.  Every send WR owns a slot of the
 *   endpoint's send ring (cookie, opcode, 32-bit sequence number, flags);
 *   every receive a slot of its receive ring (cookie).
 *
 * Send queue occupancy and selective signaling
 *   sq_head counts WRs posted, sq_tail WRs known retired, both free-running.
 *   On RC a completion (success or error) of the WR with sequence s retires
 *   every WR of that QP posted before it: sq_tail = s + 1.  Only operations
 *   with AUV_OP_SIGNALED ask for a completion, but after sq_depth/2 - 1
 *   unsignaled WRs in a row the next WR is signaled anyway (its slot lacks
 *   SLOT_USER_SIG, so auv_poll() swallows its successful completion).  Hence
 *   any sq_depth/2 consecutive WRs hold a signaled one and a full queue
 *   always drains.  auv_post() posts at most the free slots and returns the
 *   count.  The QP has one WR more than sq_depth: the marker of a drain.
 *
 * Completion queue credits
 *   Every WR outstanding may still produce a CQE (a flush error is generated
 *   for every unfinished WR, signaled or not), so the WRs outstanding over
 *   the whole context (cq_used) are kept below the CQ's size minus one
 *   marker per endpoint: the CQ can never overrun.  The CQ is grown with
 *   ibv_resize_cq() as endpoints are added, when the device allows.
 *
 * Immediate data travels in network byte order (as most verbs programs
 * send it): auv_post() applies htonl() to op->imm and the receiver gets
 * ntohl() of it, so both ends see the same host-order value.
 *
 * Completion status map (enum ibv_wc_status -> wc.status; augur's codes
 * are returned negated, like every error code):
 *   REM_ACCESS_ERR -> AUGUR_EREMOTE_ACCESS; LOC_PROT_ERR, LOC_ACCESS_ERR ->
 *   AUGUR_ELOCAL_ACCESS; RETRY_EXC_ERR -> AUGUR_EPEER_GONE;
 *   RNR_RETRY_EXC_ERR -> AUGUR_ENO_RECV (only reachable with a finite RNR
 *   retry count: connections ask for 7, "retry forever"); WR_FLUSH_ERR ->
 *   AUGUR_EFLUSHED; REM_INV_REQ_ERR, REM_OP_ERR -> AUGUR_EREMOTE_INVALID
 *   (hardware NAKs a SEND longer than the receive buffer as an invalid
 *   request, rxe as a remote operation error); on a receive, LOC_LEN_ERR
 *   and LOC_QP_OP_ERR (that SEND as the receiver sees it: LOC_LEN_ERR on
 *   hardware, LOC_QP_OP_ERR on rxe) -> AUGUR_EREMOTE_INVALID, as the shm
 *   and tcp providers report it; on a send, LOC_LEN_ERR -> -EMSGSIZE;
 *   anything else -> -EIO.  The first error completion of an
 *   endpoint sets its status and disconnects it, so the peer learns too.
 *   Error completions are reported with their cookie even for unsignaled
 *   operations.
 *
 * Closing an endpoint disconnects (QP to error), posts a marker WR and
 * polls the CQ until the marker and every receive have been flushed (at
 * most DRAIN_MS), parking what it reaps in the context's stash so that the
 * next auv_poll() reports every outstanding operation as AUGUR_EFLUSHED.
 * If the device does not flush in time, signaled operations and receives
 * still outstanding are reported as flushed anyway.  wc.ep of those
 * completions is the closed endpoint's (no longer valid) pointer: compare
 * it, do not dereference it.
 *
 * errno: every entry point saves errno and restores it before returning, so
 * the libraries' use of errno never reaches the caller.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "provider.h"

#define POLL_BATCH 32
#define CM_CHECK_NS 1000000ull /* read connection events at most every 1 ms */
#define DRAIN_MS 1000	       /* ep_close: wait this long for the flush */
#define LISTEN_BACKLOG 128
#define WRID_RECV (1u << 31)
#define PRIV_MAGIC 0x41554752u /* "AUGR" */
#define PRIV_VERSION 1

/* Private data of a connection request: this header, then the caller's. */
struct priv_hdr {
	uint32_t magic; /* network order */
	uint8_t version;
	uint8_t len; /* bytes of caller data that follow */
	uint16_t reserved;
};

struct ibvp_mr {
	struct auv_mr base;
	struct ibv_mr *mr;
	bool owned;    /* memory came from auv_mr_alloc: free it on dereg */
	size_t pinned; /* bytes accounted with auvp_memlock_account() */
	struct ibvp_mr *prev, *next;
};

enum {
	SLOT_USER_SIG = 1 << 0, /* the caller asked for this completion */
	SLOT_MARKER = 1 << 1,	/* drain marker posted by ep_close */
};

struct sq_slot {
	uint64_t cookie;
	uint32_t seq;
	uint8_t opcode;
	uint8_t flags;
};

enum ep_state {
	EP_CONNECTING,
	EP_ESTABLISHED,
	EP_DISCONNECTED, /* rdma_disconnect() done: the QP is in error */
	EP_FAILED,	 /* set-up failed (see cm_err) */
};

struct ibvp_ctx;

struct ibvp_ep {
	struct auv_ep base;
	struct ibvp_ctx *ctx;
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	uint32_t idx;
	int state;
	int cm_err;
	bool marker_done;
	bool peer_left; /* accepted after the peer's DISCONNECTED: break it at
			 * the next cm_progress() */
	/* Send ring: slots [sq_tail, sq_head) are outstanding. */
	struct sq_slot *sq;
	uint32_t sq_mask, sq_head, sq_tail, unsig_run;
	/* Receive ring: cookies of receives [rq_tail, rq_head). */
	uint64_t *rq;
	uint32_t rq_mask, rq_head, rq_tail;
	struct ibvp_ep *prev, *next;
};

struct ibvp_ctx {
	struct auv_ctx base;
	struct rdma_event_channel *lch; /* the listening id's events */
	struct rdma_event_channel *ech; /* connected endpoints' events */
	struct rdma_cm_id *listen_id;
	struct ibv_context *verbs; /* owned by librdmacm */
	struct ibv_pd *pd;
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	struct ibv_device_attr dattr;
	struct sockaddr_storage laddr;
	uint32_t sq_depth, rq_depth, max_inline;
	uint32_t cq_used; /* WRs outstanding over all endpoints */
	bool armed;	  /* ibv_req_notify_cq() done, no event consumed yet */
	bool cm_pending;  /* the endpoint channel was seen readable */
	bool have_peek;	  /* auv_wait() took a completion: report it first */
	struct ibv_wc peek;
	uint32_t npoll;
	uint32_t nleft; /* endpoints with peer_left set */
	uint64_t cm_last_ns;
	/* Endpoints by index (wr_id), and the list of those handed out. */
	struct ibvp_ep **eps;
	uint32_t eps_cap, neps;
	struct ibvp_ep *ep_list;
	struct ibvp_mr *mr_list;
	/* Reaped, not yet reported, in order: [head, head+len). */
	struct auv_wc *stash;
	uint32_t stash_cap, stash_head, stash_len;
	/* auv_post() scratch: sq_depth WRs and SGEs. */
	struct ibv_send_wr *wrs;
	struct ibv_sge *sges;
};

static inline struct ibvp_ctx *to_ctx(struct auv_ctx *c)
{
	return container_of(c, struct ibvp_ctx, base);
}

static inline struct ibvp_ep *to_ep(struct auv_ep *e)
{
	return container_of(e, struct ibvp_ep, base);
}

static inline struct ibvp_mr *to_mr(struct auv_mr *m)
{
	return container_of(m, struct ibvp_mr, base);
}

static uint32_t roundup_pow2(uint32_t v)
{
	uint32_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Milliseconds left until @deadline (ns, UINT64_MAX: forever): -1 forever,
 * 0 when passed. */
static int ms_left(uint64_t deadline)
{
	uint64_t now, ms;

	if (deadline == UINT64_MAX)
		return -1;
	now = auvp_now_ns();
	if (now >= deadline)
		return 0;
	ms = (deadline - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static uint64_t deadline_after(long long ms)
{
	if (ms < 0)
		return UINT64_MAX;
	return auvp_now_ns() + (uint64_t)ms * 1000000ull;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static const char *sa_ntop(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a =
	    sa->sa_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if (!inet_ntop(sa->sa_family, a, buf, len))
		snprintf(buf, len, "?");
	return buf;
}

static void sa_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* Parse a numeric IP address (IPv4, or IPv6 with or without brackets). */
static int parse_ip(const char *s, size_t n, struct sockaddr_storage *ss)
{
	struct addrinfo hints, *res;
	char host[INET6_ADDRSTRLEN + 2];

	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (!n || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(host, NULL, &hints, &res))
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/* Parse "ibv:<ip>:<port>". */
static int parse_peer(const char *addr, struct sockaddr_storage *ss)
{
	const char *h = addr + 4, *colon = strrchr(h, ':');
	char *end;
	unsigned long port;

	if (strncmp(addr, "ibv:", 4) || !colon || colon == h)
		return -EINVAL;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end || port == 0 || port > 65535)
		return -EINVAL;
	if (parse_ip(h, (size_t)(colon - h), ss))
		return -EINVAL;
	sa_set_port(ss, (uint16_t)port);
	return 0;
}

/* "rxe_a, rxe_b" or "none". */
static void device_names(struct ibv_device **devs, int n, char *buf, size_t len)
{
	int i;

	buf[0] = '\0';
	for (i = 0; i < n; i++)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
			 i ? ", " : "", ibv_get_device_name(devs[i]));
	if (!n)
		snprintf(buf, len, "none");
}

/* --- Completion stash --------------------------------------------------- */

static int stash_push(struct ibvp_ctx *ctx, const struct auv_wc *wc)
{
	struct auv_wc *n;
	uint32_t cap;

	if (ctx->stash_head + ctx->stash_len == ctx->stash_cap) {
		if (ctx->stash_head) {
			memmove(ctx->stash, ctx->stash + ctx->stash_head,
				ctx->stash_len * sizeof(*ctx->stash));
			ctx->stash_head = 0;
		} else {
			cap = ctx->stash_cap ? ctx->stash_cap * 2 : 64;
			n = realloc(ctx->stash, cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			ctx->stash = n;
			ctx->stash_cap = cap;
		}
	}
	ctx->stash[ctx->stash_head + ctx->stash_len++] = *wc;
	return 0;
}

static void stash_pop(struct ibvp_ctx *ctx, struct auv_wc *wc)
{
	*wc = ctx->stash[ctx->stash_head++];
	if (!--ctx->stash_len)
		ctx->stash_head = 0;
}

/* --- Connection events ---------------------------------------------------- */

/*
 * Break @ep with @code (first failure wins) and disconnect it: the QP goes
 * to the error state, so its outstanding work flushes, and the peer gets a
 * DISCONNECTED.
 */
static void ep_break(struct ibvp_ep *ep, int code)
{
	if (!ep->base.status)
		ep->base.status = code;
	if (ep->state == EP_ESTABLISHED) {
		ep->state = EP_DISCONNECTED;
		rdma_disconnect(ep->id);
	}
}

/* Handle (and acknowledge) one event of the endpoint channel. */
static void cm_dispatch(struct rdma_cm_event *ev)
{
	struct ibvp_ep *ep = ev->id ? ev->id->context : NULL;
	enum rdma_cm_event_type type = ev->event;
	int status = ev->status;

	rdma_ack_cm_event(ev);
	if (!ep)
		return;
	switch (type) {
	case RDMA_CM_EVENT_ESTABLISHED:
		if (ep->state == EP_CONNECTING)
			ep->state = EP_ESTABLISHED;
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		if (ep->state == EP_CONNECTING) {
			/*
			 * Only an id being accepted is on this channel before
			 * ESTABLISHED, and a connector sends its DREQ only
			 * once it is established itself: its RTU was lost or
			 * handled after the DREQ (the CM drops an RTU that
			 * comes late).  The connection existed and the
			 * connector has its endpoint: accept it, and report
			 * the peer's departure at the next auv_poll(), as if
			 * ESTABLISHED had come first.
			 */
			ep->state = EP_ESTABLISHED;
			if (!ep->peer_left) {
				ep->peer_left = true;
				ep->ctx->nleft++;
			}
			ep->ctx->cm_pending = true;
			break;
		}
		ep_break(ep, -AUGUR_EPEER_GONE);
		break;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		if (ep->state == EP_CONNECTING) {
			ep->state = EP_FAILED;
			ep->cm_err = -ENODEV;
		}
		ep_break(ep, -ENODEV);
		break;
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_REJECTED:
		if (ep->state == EP_CONNECTING) {
			ep->state = EP_FAILED;
			ep->cm_err =
			    status == -ETIMEDOUT ? -ETIMEDOUT : -ECONNABORTED;
		} else {
			ep_break(ep, -AUGUR_EPEER_GONE);
		}
		break;
	default:
		break;
	}
}

/* Read every pending event of the endpoint channel. */
static void cm_progress(struct ibvp_ctx *ctx)
{
	struct rdma_cm_event *ev;
	struct ibvp_ep *ep;
	uint32_t i;

	ctx->cm_pending = false;
	ctx->cm_last_ns = auvp_now_ns();
	/* Peers that left before their endpoint was handed out. */
	for (i = 0; ctx->nleft && i < ctx->eps_cap; i++) {
		ep = ctx->eps[i];
		if (ep && ep->peer_left) {
			ep->peer_left = false;
			ctx->nleft--;
			ep_break(ep, -AUGUR_EPEER_GONE);
		}
	}
	while (!rdma_get_cm_event(ctx->ech, &ev))
		cm_dispatch(ev);
}

/*
 * Next event of the non-blocking channel @ch, waiting until @deadline.
 * Return: 0 with *ev; -ETIMEDOUT; -errno.
 */
static int cm_next(struct rdma_event_channel *ch, uint64_t deadline,
		   struct rdma_cm_event **ev)
{
	struct pollfd pfd;
	int ms;

	for (;;) {
		if (!rdma_get_cm_event(ch, ev))
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		ms = ms_left(deadline);
		if (!ms)
			return -ETIMEDOUT;
		pfd.fd = ch->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
			return -errno;
	}
}

/* --- Completions ---------------------------------------------------------- */

static int map_status(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_REM_ACCESS_ERR:
		return -AUGUR_EREMOTE_ACCESS;
	case IBV_WC_LOC_PROT_ERR:
	case IBV_WC_LOC_ACCESS_ERR:
		return -AUGUR_ELOCAL_ACCESS;
	case IBV_WC_RETRY_EXC_ERR:
		return -AUGUR_EPEER_GONE;
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -AUGUR_ENO_RECV;
	case IBV_WC_WR_FLUSH_ERR:
		return -AUGUR_EFLUSHED;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_REM_OP_ERR: /* rxe's answer to an oversized SEND */
		return -AUGUR_EREMOTE_INVALID;
	case IBV_WC_LOC_LEN_ERR:
		return -EMSGSIZE;
	default:
		return -EIO;
	}
}

/*
 * Translate one work completion.  Returns 1 with *out filled when the
 * caller must see it, 0 when it is swallowed (an internal signal or a
 * drain marker).
 */
static int process_wc(struct ibvp_ctx *ctx, const struct ibv_wc *wc,
		      struct auv_wc *out)
{
	uint32_t idx = (uint32_t)(wc->wr_id >> 32), lo = (uint32_t)wc->wr_id;
	struct ibvp_ep *ep = idx < ctx->eps_cap ? ctx->eps[idx] : NULL;
	int st = map_status(wc->status);
	struct sq_slot *slot;
	uint32_t n;

	if (!ep)
		return 0;
	if (lo & WRID_RECV) {
		/* A receive fails locally only because of what the peer
		 * sent (a SEND longer than the buffer): hardware reports
		 * LOC_LEN_ERR, rxe LOC_QP_OP_ERR. */
		if (wc->status == IBV_WC_LOC_LEN_ERR ||
		    wc->status == IBV_WC_LOC_QP_OP_ERR)
			st = -AUGUR_EREMOTE_INVALID;
		out->cookie = ep->rq[lo & ep->rq_mask];
		ep->rq_tail++;
		ctx->cq_used--;
		out->ep = &ep->base;
		out->status = st;
		out->opcode = AUV_OP_RECV;
		out->flags = 0;
		out->byte_len = 0;
		out->imm = 0;
		if (!st) {
			if (wc->opcode != IBV_WC_RECV_RDMA_WITH_IMM)
				out->byte_len = wc->byte_len;
			if (wc->wc_flags & IBV_WC_WITH_IMM) {
				out->flags = AUV_WC_IMM;
				out->imm = ntohl(wc->imm_data);
			}
		} else {
			ep_break(ep, st);
		}
		return 1;
	}
	slot = &ep->sq[lo & ep->sq_mask];
	if (slot->seq - ep->sq_tail >= ep->sq_head - ep->sq_tail)
		return 0; /* not outstanding: cannot happen on RC */
	n = slot->seq - ep->sq_tail + 1;
	ep->sq_tail = slot->seq + 1;
	ctx->cq_used -= n;
	if (slot->flags & SLOT_MARKER) {
		ep->marker_done = true;
		return 0;
	}
	if (!st && !(slot->flags & SLOT_USER_SIG))
		return 0;
	if (st)
		ep_break(ep, st);
	out->cookie = slot->cookie;
	out->ep = &ep->base;
	out->status = st;
	out->opcode = slot->opcode;
	out->flags = 0;
	out->byte_len = 0;
	out->imm = 0;
	return 1;
}

/* Reap every completion of the CQ into the stash (close paths). */
static void reap_to_stash(struct ibvp_ctx *ctx)
{
	struct ibv_wc iwc[POLL_BATCH];
	struct auv_wc w;
	int k, i;

	if (ctx->have_peek) {
		ctx->have_peek = false;
		if (process_wc(ctx, &ctx->peek, &w))
			stash_push(ctx, &w);
	}
	do {
		k = ibv_poll_cq(ctx->cq, POLL_BATCH, iwc);
		for (i = 0; i < k; i++)
			if (process_wc(ctx, &iwc[i], &w))
				stash_push(ctx, &w);
	} while (k == POLL_BATCH);
}

static bool cm_due(struct ibvp_ctx *ctx)
{
	return auvp_now_ns() - ctx->cm_last_ns >= CM_CHECK_NS;
}

static int ibvp_poll_(struct ibvp_ctx *ctx, struct auv_wc *wc, int max)
{
	struct ibv_wc iwc[POLL_BATCH];
	int n = 0, k, i, want;

	if (ctx->cm_pending || (!(++ctx->npoll & 63) && cm_due(ctx)))
		cm_progress(ctx);
	while (n < max && ctx->stash_len)
		stash_pop(ctx, &wc[n++]);
	if (n < max && ctx->have_peek) {
		ctx->have_peek = false;
		n += process_wc(ctx, &ctx->peek, &wc[n]);
	}
	while (n < max) {
		want = max - n < POLL_BATCH ? max - n : POLL_BATCH;
		k = ibv_poll_cq(ctx->cq, want, iwc);
		if (k < 0) {
			if (n)
				break;
			return auvp_fail(-EIO, "ibv_poll_cq failed");
		}
		for (i = 0; i < k; i++)
			n += process_wc(ctx, &iwc[i], &wc[n]);
		if (k < want)
			break;
	}
	if (!n && cm_due(ctx))
		cm_progress(ctx);
	return n;
}

static int ibvp_poll(struct auv_ctx *bctx, struct auv_wc *wc, int max)
{
	int saved = errno, rc;

	rc = ibvp_poll_(to_ctx(bctx), wc, max);
	errno = saved;
	return rc;
}

static int ibvp_wait_(struct ibvp_ctx *ctx, int timeout_ms)
{
	struct pollfd pfd[2];
	struct ibv_cq *ev_cq;
	void *ev_ctx;
	int rc;

	if (ctx->stash_len || ctx->have_peek || ctx->cm_pending)
		return 1;
	if (!ctx->armed) {
		rc = ibv_req_notify_cq(ctx->cq, 0);
		if (rc)
			return auvp_fail(-rc, "ibv_req_notify_cq: %s",
					 strerror(rc));
		ctx->armed = true;
	}
	/* A completion that arrived before arming raises no event. */
	rc = ibv_poll_cq(ctx->cq, 1, &ctx->peek);
	if (rc > 0) {
		ctx->have_peek = true;
		return 1;
	}
	pfd[0].fd = ctx->cch->fd;
	pfd[0].events = POLLIN;
	pfd[0].revents = 0;
	pfd[1].fd = ctx->ech->fd;
	pfd[1].events = POLLIN;
	pfd[1].revents = 0;
	rc = poll(pfd, 2, timeout_ms < 0 ? -1 : timeout_ms);
	if (rc < 0)
		return errno == EINTR
			   ? 1
			   : auvp_fail(-errno, "poll: %s", strerror(errno));
	if (!rc)
		return 0;
	if (pfd[0].revents && !ibv_get_cq_event(ctx->cch, &ev_cq, &ev_ctx)) {
		ibv_ack_cq_events(ev_cq, 1);
		ctx->armed = false;
	}
	if (pfd[1].revents)
		ctx->cm_pending = true;
	return 1;
}

static int ibvp_wait(struct auv_ctx *bctx, int timeout_ms)
{
	int saved = errno, rc;

	rc = ibvp_wait_(to_ctx(bctx), timeout_ms);
	errno = saved;
	return rc;
}

/* --- Posting -------------------------------------------------------------- */

/* WRs the CQ can still take, keeping one marker per endpoint in reserve. */
static uint32_t cq_room(const struct ibvp_ctx *ctx)
{
	uint64_t cap = (uint64_t)(ctx->cq->cqe > 0 ? ctx->cq->cqe : 0);
	uint64_t used = (uint64_t)ctx->cq_used + ctx->neps;

	return used >= cap ? 0 : (uint32_t)(cap - used);
}

static int ibvp_post_(struct ibvp_ep *ep, const struct auv_op *ops, int n)
{
	struct ibvp_ctx *ctx = ep->ctx;
	uint32_t used = ep->sq_head - ep->sq_tail;
	uint32_t room = ctx->sq_depth > used ? ctx->sq_depth - used : 0;
	uint32_t half = ctx->sq_depth / 2, unsig = ep->unsig_run;
	struct ibv_send_wr *wr, *bad = NULL;
	uint32_t k, i, seq;
	struct sq_slot *slot;
	struct ibv_sge *sge;
	const struct auv_op *op;
	int rc;

	k = min_u32(min_u32((uint32_t)n, room), cq_room(ctx));
	if (!k)
		return 0;
	if (!half)
		half = 1;
	for (i = 0; i < k; i++) {
		op = &ops[i];
		wr = &ctx->wrs[i];
		sge = &ctx->sges[i];
		seq = ep->sq_head + i;
		slot = &ep->sq[seq & ep->sq_mask];
		slot->cookie = op->cookie;
		slot->seq = seq;
		slot->opcode = op->opcode;
		slot->flags = 0;

		sge->addr = (uintptr_t)op->local;
		sge->length = op->len;
		sge->lkey = op->local_mr ? to_mr(op->local_mr)->mr->lkey : 0;
		wr->wr_id = (uint64_t)ep->idx << 32 | (seq & ep->sq_mask);
		wr->next = i + 1 < k ? &ctx->wrs[i + 1] : NULL;
		wr->sg_list = sge;
		wr->num_sge = 1;
		wr->send_flags = 0;
		wr->imm_data = 0;
		switch (op->opcode) {
		case AUV_OP_READ:
			wr->opcode = IBV_WR_RDMA_READ;
			break;
		case AUV_OP_WRITE:
			wr->opcode = IBV_WR_RDMA_WRITE;
			break;
		case AUV_OP_WRITE_IMM:
			wr->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
			wr->imm_data = htonl(op->imm);
			break;
		case AUV_OP_SEND:
			wr->opcode = IBV_WR_SEND;
			break;
		case AUV_OP_CAS:
			wr->opcode = IBV_WR_ATOMIC_CMP_AND_SWP;
			break;
		case AUV_OP_FAA:
			wr->opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
			break;
		default:
			return auvp_fail(-EINVAL, "op %u: unknown opcode %u", i,
					 op->opcode);
		}
		if (op->opcode == AUV_OP_CAS || op->opcode == AUV_OP_FAA) {
			wr->wr.atomic.remote_addr = op->remote_addr;
			wr->wr.atomic.rkey = op->rkey;
			wr->wr.atomic.compare_add = op->opcode == AUV_OP_CAS
							? op->compare
							: op->swap_add;
			wr->wr.atomic.swap = op->swap_add;
		} else {
			wr->wr.rdma.remote_addr = op->remote_addr;
			wr->wr.rdma.rkey = op->rkey;
		}
		if ((op->opcode == AUV_OP_WRITE ||
		     op->opcode == AUV_OP_WRITE_IMM ||
		     op->opcode == AUV_OP_SEND) &&
		    op->len <= ctx->max_inline)
			wr->send_flags |= IBV_SEND_INLINE;
		if (op->flags & AUV_OP_FENCE)
			wr->send_flags |= IBV_SEND_FENCE;
		if (op->flags & AUV_OP_SIGNALED) {
			wr->send_flags |= IBV_SEND_SIGNALED;
			slot->flags = SLOT_USER_SIG;
			unsig = 0;
		} else if (++unsig >= half) {
			wr->send_flags |= IBV_SEND_SIGNALED;
			unsig = 0;
		}
	}
	rc = ibv_post_send(ep->qp, ctx->wrs, &bad);
	if (rc) {
		i = bad && bad >= ctx->wrs && bad < ctx->wrs + k
			? (uint32_t)(bad - ctx->wrs)
			: 0;
		/* Whatever the last WR posted was, signal the next one. */
		unsig = half - 1;
		if (!i) {
			ep->unsig_run = unsig;
			if (rc == ENOMEM)
				return 0; /* the device's queue is full */
			return auvp_fail(-rc, "ibv_post_send: %s",
					 strerror(rc));
		}
		k = i;
	}
	ep->sq_head += k;
	ctx->cq_used += k;
	ep->unsig_run = unsig;
	return (int)k;
}

static int ibvp_post(struct auv_ep *bep, const struct auv_op *ops, int n)
{
	int saved = errno, rc;

	rc = ibvp_post_(to_ep(bep), ops, n);
	errno = saved;
	return rc;
}

static int ibvp_post_recv_(struct ibvp_ep *ep, void *buf, uint32_t len,
			   struct auv_mr *mr, uint64_t cookie)
{
	struct ibvp_ctx *ctx = ep->ctx;
	struct ibv_recv_wr wr, *bad;
	struct ibv_sge sge;
	int rc;

	if (ep->rq_head - ep->rq_tail >= ctx->rq_depth)
		return auvp_fail(-EAGAIN, "receive queue full (%u posted)",
				 ctx->rq_depth);
	if (!cq_room(ctx))
		return auvp_fail(-EAGAIN, "completion queue full");
	sge.addr = (uintptr_t)buf;
	sge.length = len;
	sge.lkey = to_mr(mr)->mr->lkey;
	wr.wr_id =
	    (uint64_t)ep->idx << 32 | WRID_RECV | (ep->rq_head & ep->rq_mask);
	wr.next = NULL;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	rc = ibv_post_recv(ep->qp, &wr, &bad);
	if (rc) {
		if (rc == ENOMEM)
			return auvp_fail(-EAGAIN, "receive queue full");
		return auvp_fail(-rc, "ibv_post_recv: %s", strerror(rc));
	}
	ep->rq[ep->rq_head & ep->rq_mask] = cookie;
	ep->rq_head++;
	ctx->cq_used++;
	return 0;
}

static int ibvp_post_recv(struct auv_ep *bep, void *buf, uint32_t len,
			  struct auv_mr *mr, uint64_t cookie)
{
	int saved = errno, rc;

	rc = ibvp_post_recv_(to_ep(bep), buf, len, mr, cookie);
	errno = saved;
	return rc;
}

/* --- Memory regions ------------------------------------------------------- */

static int to_ibv_access(unsigned int a)
{
	int f = 0;

	if (a & AUV_ACCESS_LOCAL_WRITE)
		f |= IBV_ACCESS_LOCAL_WRITE;
	if (a & AUV_ACCESS_REMOTE_READ)
		f |= IBV_ACCESS_REMOTE_READ;
	/* verbs wants LOCAL_WRITE with remote write or atomic rights; the
	 * caller's rights (mr->access) still govern local use. */
	if (a & AUV_ACCESS_REMOTE_WRITE)
		f |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
	if (a & AUV_ACCESS_REMOTE_ATOMIC)
		f |= IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_LOCAL_WRITE;
	return f;
}

static int reg_fail(int err, size_t len)
{
	struct rlimit rl;

	if ((err == ENOMEM || err == EPERM || err == EAGAIN) &&
	    !getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY)
		return auvp_fail(-AUGUR_EMEMLOCK,
				 "ibv_reg_mr of %zu bytes failed (%s) with "
				 "RLIMIT_MEMLOCK at %llu KiB: raise it (ulimit "
				 "-l unlimited; for services LimitMEMLOCK= in "
				 "systemd, memlock in "
				 "/etc/security/limits.conf)",
				 len, strerror(err),
				 (unsigned long long)rl.rlim_cur / 1024);
	return auvp_fail(-err, "ibv_reg_mr of %zu bytes failed: %s", len,
			 strerror(err));
}

static int reg_common(struct ibvp_ctx *ctx, void *addr, size_t len,
		      unsigned int access, bool owned, struct auv_mr **out)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t first = (uintptr_t)addr & ~(page - 1);
	uintptr_t last = ((uintptr_t)addr + len + page - 1) & ~(page - 1);
	size_t span = last - first;
	struct ibvp_mr *m;
	int rc;

	if ((access & AUV_ACCESS_REMOTE_ATOMIC) &&
	    ctx->dattr.atomic_cap == IBV_ATOMIC_NONE)
		return auvp_fail(-EOPNOTSUPP,
				 "device %s does not support remote atomics",
				 ctx->base.device);
	rc = auvp_memlock_check(span);
	if (rc)
		return rc > 0 ? -rc : rc; /* core's sign may differ */
	m = calloc(1, sizeof(*m));
	if (!m)
		return auvp_fail(-ENOMEM, "out of memory");
	m->mr = ibv_reg_mr(ctx->pd, addr, len, to_ibv_access(access));
	if (!m->mr) {
		rc = reg_fail(errno ? errno : ENOMEM, len);
		free(m);
		return rc;
	}
	auvp_memlock_account((long long)span);
	m->pinned = span;
	m->owned = owned;
	m->base.ctx = &ctx->base;
	m->base.addr = addr;
	m->base.len = len;
	m->base.access = access;
	m->base.desc.addr = (uintptr_t)addr;
	m->base.desc.len = len;
	m->base.desc.rkey = m->mr->rkey;
	m->base.desc.access = access;
	m->next = ctx->mr_list;
	if (m->next)
		m->next->prev = m;
	ctx->mr_list = m;
	*out = &m->base;
	return 0;
}

static int ibvp_mr_alloc(struct auv_ctx *bctx, size_t len, unsigned int access,
			 struct auv_mr **out)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), alen;
	int saved = errno, rc;
	void *p;

	if (len > SIZE_MAX - page) {
		rc = auvp_fail(-EINVAL, "auv_mr_alloc: length too large");
		goto out;
	}
	alen = (len + page - 1) & ~(page - 1);
	rc = auvp_memlock_check(alen);
	if (rc) {
		rc = rc > 0 ? -rc : rc;
		goto out;
	}
	if (posix_memalign(&p, page, alen)) {
		rc = auvp_fail(-ENOMEM,
			       "auv_mr_alloc: cannot allocate %zu "
			       "bytes",
			       len);
		goto out;
	}
	memset(p, 0, alen);
	rc = reg_common(to_ctx(bctx), p, len, access, true, out);
	if (rc)
		free(p);
out:
	errno = saved;
	return rc;
}

static int ibvp_mr_reg(struct auv_ctx *bctx, void *addr, size_t len,
		       unsigned int access, struct auv_mr **out)
{
	int saved = errno, rc;

	rc = reg_common(to_ctx(bctx), addr, len, access, false, out);
	errno = saved;
	return rc;
}

static int ibvp_mr_dereg(struct auv_mr *bmr)
{
	struct ibvp_mr *m = to_mr(bmr);
	struct ibvp_ctx *ctx = to_ctx(bmr->ctx);
	int saved = errno, rc;

	rc = ibv_dereg_mr(m->mr);
	if (rc) {
		rc = auvp_fail(-rc, "ibv_dereg_mr: %s", strerror(rc));
		goto out;
	}
	if (m->prev)
		m->prev->next = m->next;
	else
		ctx->mr_list = m->next;
	if (m->next)
		m->next->prev = m->prev;
	auvp_memlock_account(-(long long)m->pinned);
	if (m->owned)
		free(bmr->addr);
	free(m);
out:
	errno = saved;
	return rc;
}

/* --- Endpoints ------------------------------------------------------------ */

static struct ibvp_ep *ep_new(struct ibvp_ctx *ctx)
{
	struct ibvp_ep *ep, **eps;
	uint32_t i, cap;

	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->sq_mask = roundup_pow2(ctx->sq_depth + 1) - 1;
	ep->rq_mask = roundup_pow2(ctx->rq_depth) - 1;
	ep->sq = calloc(ep->sq_mask + 1, sizeof(*ep->sq));
	ep->rq = calloc(ep->rq_mask + 1, sizeof(*ep->rq));
	if (!ep->sq || !ep->rq)
		goto out_free;
	for (i = 0; i < ctx->eps_cap; i++)
		if (!ctx->eps[i])
			break;
	if (i == ctx->eps_cap) {
		cap = ctx->eps_cap ? ctx->eps_cap * 2 : 8;
		eps = realloc(ctx->eps, cap * sizeof(*eps));
		if (!eps)
			goto out_free;
		memset(eps + ctx->eps_cap, 0,
		       (cap - ctx->eps_cap) * sizeof(*eps));
		ctx->eps = eps;
		ctx->eps_cap = cap;
	}
	ctx->eps[i] = ep;
	ctx->neps++;
	ep->idx = i;
	ep->ctx = ctx;
	ep->base.ctx = &ctx->base;
	ep->state = EP_CONNECTING;
	return ep;

out_free:
	free(ep->sq);
	free(ep->rq);
	free(ep);
	return NULL;
}

/* Forget @ep: its QP and id are gone, nothing of it is outstanding. */
static void ep_free(struct ibvp_ep *ep)
{
	struct ibvp_ctx *ctx = ep->ctx;

	if (ep->prev)
		ep->prev->next = ep->next;
	else if (ctx->ep_list == ep)
		ctx->ep_list = ep->next;
	if (ep->next)
		ep->next->prev = ep->prev;
	if (ep->peer_left)
		ctx->nleft--;
	ctx->eps[ep->idx] = NULL;
	ctx->neps--;
	free(ep->sq);
	free(ep->rq);
	free(ep);
}

static int ep_create_qp(struct ibvp_ep *ep)
{
	struct ibvp_ctx *ctx = ep->ctx;
	struct ibv_qp_init_attr attr;
	uint64_t want;

	if (ep->id->verbs != ctx->verbs)
		return auvp_fail(
		    -ENETUNREACH,
		    "the connection runs over device %s, not "
		    "this context's %s",
		    ep->id->verbs ? ibv_get_device_name(ep->id->verbs->device)
				  : "(none)",
		    ctx->base.device);
	/* Grow the CQ so that every endpoint can fill its queues. */
	want = (uint64_t)ctx->neps * (ctx->sq_depth + 1 + ctx->rq_depth);
	if (want > (uint64_t)ctx->cq->cqe &&
	    want <= (uint64_t)ctx->dattr.max_cqe &&
	    !ibv_resize_cq(ctx->cq, (int)want))
		ctx->base.caps.cq_depth = (uint32_t)ctx->cq->cqe;

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = ctx->cq;
	attr.recv_cq = ctx->cq;
	attr.qp_type = IBV_QPT_RC;
	attr.cap.max_send_wr = ctx->sq_depth + 1;
	attr.cap.max_recv_wr = ctx->rq_depth;
	attr.cap.max_send_sge = 1;
	attr.cap.max_recv_sge = 1;
	attr.cap.max_inline_data = ctx->max_inline;
	if (rdma_create_qp(ep->id, ctx->pd, &attr))
		return auvp_fail(-errno, "rdma_create_qp: %s", strerror(errno));
	ep->qp = ep->id->qp;
	return 0;
}

/*
 * Tear @ep down: disconnect, flush and reap its outstanding work into the
 * stash, destroy its QP and id, free it.
 */
static void ep_destroy(struct ibvp_ep *ep)
{
	struct ibvp_ctx *ctx = ep->ctx;
	struct ibv_send_wr mwr, *bad;
	struct ibv_qp_attr qa;
	struct timespec ts = {0, 200000};
	struct auv_wc w;
	struct sq_slot *slot;
	uint64_t deadline;

	if (ep->qp) {
		if (ep->state == EP_ESTABLISHED)
			rdma_disconnect(ep->id);
		ep->state = EP_DISCONNECTED;
		if (!ep->base.status)
			ep->base.status = -AUGUR_EFLUSHED;
		memset(&qa, 0, sizeof(qa));
		qa.qp_state = IBV_QPS_ERR;
		ibv_modify_qp(ep->qp, &qa, IBV_QP_STATE);

		/* The marker: flushed after every WR posted before it. */
		ep->marker_done = true;
		if (ep->sq_head != ep->sq_tail) {
			slot = &ep->sq[ep->sq_head & ep->sq_mask];
			slot->cookie = 0;
			slot->seq = ep->sq_head;
			slot->opcode = 0;
			slot->flags = SLOT_MARKER;
			memset(&mwr, 0, sizeof(mwr));
			mwr.wr_id = (uint64_t)ep->idx << 32 |
				    (ep->sq_head & ep->sq_mask);
			mwr.opcode = IBV_WR_RDMA_WRITE;
			mwr.send_flags = IBV_SEND_SIGNALED;
			if (!ibv_post_send(ep->qp, &mwr, &bad)) {
				ep->sq_head++;
				ctx->cq_used++;
				ep->marker_done = false;
			}
		}
		deadline = deadline_after(DRAIN_MS);
		for (;;) {
			reap_to_stash(ctx);
			if (ep->marker_done && ep->rq_head == ep->rq_tail)
				break;
			if (!ms_left(deadline))
				break;
			nanosleep(&ts, NULL);
		}
		rdma_destroy_qp(ep->id);
		ep->qp = NULL;
		/* Nothing more can arrive for this QP: take the last ones. */
		reap_to_stash(ctx);

		/* Report what the device did not flush in time. */
		while (ep->rq_tail != ep->rq_head) {
			w.cookie = ep->rq[ep->rq_tail & ep->rq_mask];
			w.ep = &ep->base;
			w.status = -AUGUR_EFLUSHED;
			w.opcode = AUV_OP_RECV;
			w.flags = 0;
			w.byte_len = 0;
			w.imm = 0;
			stash_push(ctx, &w);
			ep->rq_tail++;
			ctx->cq_used--;
		}
		while (ep->sq_tail != ep->sq_head) {
			slot = &ep->sq[ep->sq_tail & ep->sq_mask];
			if (slot->flags & SLOT_USER_SIG) {
				w.cookie = slot->cookie;
				w.ep = &ep->base;
				w.status = -AUGUR_EFLUSHED;
				w.opcode = slot->opcode;
				w.flags = 0;
				w.byte_len = 0;
				w.imm = 0;
				stash_push(ctx, &w);
			}
			ep->sq_tail++;
			ctx->cq_used--;
		}
	}
	if (ep->id)
		rdma_destroy_id(ep->id);
	ep_free(ep);
}

static void ibvp_ep_close(struct auv_ep *bep)
{
	int saved = errno;

	ep_destroy(to_ep(bep));
	errno = saved;
}

static void ep_link(struct ibvp_ep *ep)
{
	struct ibvp_ctx *ctx = ep->ctx;

	ep->prev = NULL;
	ep->next = ctx->ep_list;
	if (ep->next)
		ep->next->prev = ep;
	ctx->ep_list = ep;
}

static uint8_t depth8(int v)
{
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

static const char *rej_reason(int status)
{
	switch (status) {
	case 8: /* IB_CM_REJ_INVALID_SERVICE_ID */
		return "nobody listens at that address and port";
	case 28: /* IB_CM_REJ_CONSUMER_DEFINED */
		return "refused by the acceptor";
	default:
		return "rejected";
	}
}

/*
 * Wait on the connect channel @ch for @want.  Other outcomes are mapped to
 * -ECONNREFUSED or -ETIMEDOUT with auv_last_error() saying why.
 */
static int connect_step(struct rdma_event_channel *ch, uint64_t deadline,
			enum rdma_cm_event_type want, const char *addr,
			uint32_t timeout_ms, struct rdma_cm_event **evp)
{
	struct rdma_cm_event *ev;
	enum rdma_cm_event_type type;
	int rc, status;

	rc = cm_next(ch, deadline, &ev);
	if (rc == -ETIMEDOUT)
		return auvp_fail(-ETIMEDOUT,
				 "connect to %s: no answer within %u ms "
				 "(waiting for %s)",
				 addr, timeout_ms, rdma_event_str(want));
	if (rc)
		return auvp_fail(rc, "connect to %s: rdma_get_cm_event: %s",
				 addr, strerror(-rc));
	if (ev->event == want) {
		*evp = ev;
		return 0;
	}
	type = ev->event;
	status = ev->status;
	rdma_ack_cm_event(ev);
	switch (type) {
	case RDMA_CM_EVENT_REJECTED:
		return auvp_fail(-ECONNREFUSED,
				 "connect to %s: %s (reject reason %d)", addr,
				 rej_reason(status), status);
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_CONNECT_ERROR:
		if (status == -ETIMEDOUT)
			return auvp_fail(-ETIMEDOUT,
					 "connect to %s: %s: timed out", addr,
					 rdma_event_str(type));
		return auvp_fail(-ECONNREFUSED, "connect to %s: %s (status %d)",
				 addr, rdma_event_str(type), status);
	default:
		return auvp_fail(-ECONNREFUSED,
				 "connect to %s: unexpected event %s", addr,
				 rdma_event_str(type));
	}
}

/*
 * Resolve @dst from @src on a fresh id of @ch (ep->id), in short attempts.
 * The kernel's address resolution can miss the neighbour update of an ARP
 * reply that comes back very fast (veth, SoftRoCE) and then only looks
 * again when its timeout expires; short attempts, retried until @deadline,
 * bound that stall to a fraction of a second instead of the whole
 * timeout.
 */
static int resolve_addr(struct ibvp_ep *ep, struct rdma_event_channel *ch,
			struct sockaddr_storage *src,
			struct sockaddr_storage *dst, uint64_t deadline,
			const char *addr, uint32_t tmo)
{
	struct rdma_cm_event *ev;
	int rc, left, step = 200;

	for (;;) {
		if (rdma_create_id(ch, &ep->id, ep, RDMA_PS_TCP))
			return auvp_fail(-errno, "rdma_create_id: %s",
					 strerror(errno));
		left = ms_left(deadline);
		if (rdma_resolve_addr(ep->id, (struct sockaddr *)src,
				      (struct sockaddr *)dst,
				      left && left < step ? left : step)) {
			rc = auvp_fail(-errno,
				       "connect to %s: rdma_resolve_addr: %s",
				       addr, strerror(errno));
			goto out_id;
		}
		rc = cm_next(ch, deadline, &ev);
		if (rc == -ETIMEDOUT) {
			rc = auvp_fail(-ETIMEDOUT,
				       "connect to %s: address not resolved "
				       "within %u ms",
				       addr, tmo);
			goto out_id;
		}
		if (rc) {
			auvp_fail(rc, "connect to %s: rdma_get_cm_event: %s",
				  addr, strerror(-rc));
			goto out_id;
		}
		if (ev->event == RDMA_CM_EVENT_ADDR_RESOLVED) {
			rdma_ack_cm_event(ev);
			return 0;
		}
		rc = ev->event == RDMA_CM_EVENT_ADDR_ERROR ? ev->status : -EIO;
		rdma_ack_cm_event(ev);
		if (rc != -ETIMEDOUT || !ms_left(deadline)) {
			rc = auvp_fail(rc == -ETIMEDOUT ? -ETIMEDOUT
							: -ECONNREFUSED,
				       "connect to %s: address resolution "
				       "failed: %s",
				       addr, strerror(-rc));
			goto out_id;
		}
		rdma_destroy_id(ep->id);
		ep->id = NULL;
		if (step < 1000)
			step *= 2;
	}

out_id:
	rdma_destroy_id(ep->id);
	ep->id = NULL;
	return rc;
}

static int ibvp_ep_connect_(struct ibvp_ctx *ctx, const char *addr,
			    const void *priv, size_t priv_len,
			    struct auv_ep **out)
{
	uint32_t tmo = ctx->base.opts.connect_timeout_ms;
	uint64_t deadline = deadline_after(tmo);
	unsigned char pdata[sizeof(struct priv_hdr) + AUV_PRIV_MAX];
	struct priv_hdr hdr;
	struct rdma_conn_param cp;
	struct sockaddr_storage dst, src;
	struct rdma_event_channel *ch;
	struct rdma_cm_event *ev;
	struct ibvp_ep *ep;
	int rc;

	if (parse_peer(addr, &dst))
		return auvp_fail(-EINVAL,
				 "auv_ep_connect: malformed address '%.64s' "
				 "(want ibv:<ip>:<port>)",
				 addr);
	if (dst.ss_family != ctx->laddr.ss_family)
		return auvp_fail(-EINVAL,
				 "auv_ep_connect: %s is not of the local "
				 "address's family",
				 addr);
	ep = ep_new(ctx);
	if (!ep)
		return auvp_fail(-ENOMEM, "out of memory");
	ch = rdma_create_event_channel();
	if (!ch) {
		rc = auvp_fail(-errno, "rdma_create_event_channel: %s",
			       strerror(errno));
		goto out_ep;
	}
	rc = set_nonblock(ch->fd);
	if (rc) {
		auvp_fail(rc, "fcntl: %s", strerror(-rc));
		goto out_ch;
	}
	src = ctx->laddr;
	sa_set_port(&src, 0);
	rc = resolve_addr(ep, ch, &src, &dst, deadline, addr, tmo);
	if (rc)
		goto out_id;
	if (rdma_resolve_route(ep->id, ms_left(deadline) ?: 1)) {
		rc = auvp_fail(-errno, "connect to %s: rdma_resolve_route: %s",
			       addr, strerror(errno));
		goto out_id;
	}
	rc = connect_step(ch, deadline, RDMA_CM_EVENT_ROUTE_RESOLVED, addr, tmo,
			  &ev);
	if (rc)
		goto out_id;
	rdma_ack_cm_event(ev);
	rc = ep_create_qp(ep);
	if (rc)
		goto out_id;

	hdr.magic = htonl(PRIV_MAGIC);
	hdr.version = PRIV_VERSION;
	hdr.len = (uint8_t)priv_len;
	hdr.reserved = 0;
	memcpy(pdata, &hdr, sizeof(hdr));
	if (priv_len)
		memcpy(pdata + sizeof(hdr), priv, priv_len);
	memset(&cp, 0, sizeof(cp));
	cp.private_data = pdata;
	cp.private_data_len = (uint8_t)(sizeof(hdr) + priv_len);
	cp.responder_resources = depth8(ctx->dattr.max_qp_rd_atom);
	cp.initiator_depth = depth8(ctx->dattr.max_qp_init_rd_atom);
	cp.retry_count = 7;
	cp.rnr_retry_count = 7;
	if (rdma_connect(ep->id, &cp)) {
		rc = auvp_fail(-errno, "connect to %s: rdma_connect: %s", addr,
			       strerror(errno));
		goto out_qp;
	}
	rc = connect_step(ch, deadline, RDMA_CM_EVENT_ESTABLISHED, addr, tmo,
			  &ev);
	if (rc)
		goto out_qp;
	rdma_ack_cm_event(ev);
	if (rdma_migrate_id(ep->id, ctx->ech)) {
		rc = auvp_fail(-errno, "rdma_migrate_id: %s", strerror(errno));
		goto out_disc;
	}
	rdma_destroy_event_channel(ch);
	ep->state = EP_ESTABLISHED;
	ep_link(ep);
	*out = &ep->base;
	return 0;

out_disc:
	rdma_disconnect(ep->id);
out_qp:
	rdma_destroy_qp(ep->id);
	ep->qp = NULL;
out_id:
	if (ep->id)
		rdma_destroy_id(ep->id);
	ep->id = NULL;
out_ch:
	rdma_destroy_event_channel(ch);
out_ep:
	ep_free(ep);
	return rc;
}

static int ibvp_ep_connect(struct auv_ctx *bctx, const char *addr,
			   const void *priv, size_t priv_len,
			   struct auv_ep **out)
{
	int saved = errno, rc;

	rc = ibvp_ep_connect_(to_ctx(bctx), addr, priv, priv_len, out);
	errno = saved;
	return rc;
}

/*
 * Set up one endpoint for the connection request @id: QP, move to the
 * endpoint channel, accept, wait until established: until the connect
 * timeout, or until @accept_deadline if that is later (the connector may
 * already use a connection whose RTU was lost; the CM sends the REP again
 * after about 4 s, and the connector's answer then establishes it).  On
 * failure the id is destroyed.
 */
static int accept_one(struct ibvp_ctx *ctx, struct rdma_cm_id *id,
		      uint8_t peer_init, uint8_t peer_resp,
		      uint64_t accept_deadline, struct ibvp_ep **out)
{
	uint64_t start = auvp_now_ns();
	uint64_t deadline = deadline_after(ctx->base.opts.connect_timeout_ms);
	struct rdma_conn_param cp;
	struct rdma_cm_event *ev;
	struct ibvp_ep *ep;
	int rc;

	ep = ep_new(ctx);
	if (!ep) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return auvp_fail(-ENOMEM, "out of memory");
	}
	if (accept_deadline > deadline)
		deadline = accept_deadline;
	ep->id = id;
	id->context = ep;
	rc = ep_create_qp(ep);
	if (rc) {
		rdma_reject(id, NULL, 0);
		goto out_id;
	}
	if (rdma_migrate_id(id, ctx->ech)) {
		rc = auvp_fail(-errno, "rdma_migrate_id: %s", strerror(errno));
		rdma_reject(id, NULL, 0);
		goto out_qp;
	}
	memset(&cp, 0, sizeof(cp));
	cp.responder_resources =
	    min_u32(peer_init, depth8(ctx->dattr.max_qp_rd_atom));
	cp.initiator_depth =
	    min_u32(peer_resp, depth8(ctx->dattr.max_qp_init_rd_atom));
	cp.retry_count = 7;
	cp.rnr_retry_count = 7;
	if (rdma_accept(id, &cp)) {
		rc = auvp_fail(-errno, "rdma_accept: %s", strerror(errno));
		goto out_qp;
	}
	while (ep->state == EP_CONNECTING) {
		rc = cm_next(ctx->ech, deadline, &ev);
		if (rc == -ETIMEDOUT) {
			rc = auvp_fail(-ETIMEDOUT,
				       "accept: the connection was not "
				       "established within %llu ms",
				       (auvp_now_ns() - start) / 1000000ull);
			goto out_qp;
		}
		if (rc) {
			auvp_fail(rc, "accept: rdma_get_cm_event: %s",
				  strerror(-rc));
			goto out_qp;
		}
		cm_dispatch(ev);
	}
	if (ep->state != EP_ESTABLISHED) {
		rc = auvp_fail(ep->cm_err ? ep->cm_err : -ECONNABORTED,
			       "accept: the connector went away during set-up");
		goto out_qp;
	}
	ep_link(ep);
	*out = ep;
	return 0;

out_qp:
	rdma_destroy_qp(id);
	ep->qp = NULL;
out_id:
	rdma_destroy_id(id);
	ep->id = NULL;
	ep_free(ep);
	return rc;
}

static int ibvp_ep_accept_(struct ibvp_ctx *ctx, int timeout_ms,
			   struct auv_ep **out, void *priv, size_t *priv_len)
{
	uint64_t deadline = deadline_after(timeout_ms);
	unsigned char pdata[sizeof(struct priv_hdr) + AUV_PRIV_MAX];
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;
	struct priv_hdr hdr;
	struct ibvp_ep *ep = NULL;
	uint8_t init, resp;
	size_t plen;
	int rc;

	for (;;) {
		rc = cm_next(ctx->lch, deadline, &ev);
		if (rc == -ETIMEDOUT)
			return auvp_fail(-ETIMEDOUT,
					 "accept: no connection request within "
					 "%d ms",
					 timeout_ms);
		if (rc)
			return auvp_fail(rc, "accept: rdma_get_cm_event: %s",
					 strerror(-rc));
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			rc = ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL;
			rdma_ack_cm_event(ev);
			if (rc)
				return auvp_fail(-ENODEV,
						 "accept: device %s removed",
						 ctx->base.device);
			continue;
		}
		id = ev->id;
		plen = ev->param.conn.private_data_len;
		if (plen > sizeof(pdata))
			plen = sizeof(pdata);
		memset(pdata, 0, sizeof(pdata));
		if (ev->param.conn.private_data)
			memcpy(pdata, ev->param.conn.private_data, plen);
		init = ev->param.conn.initiator_depth;
		resp = ev->param.conn.responder_resources;
		rdma_ack_cm_event(ev);
		memcpy(&hdr, pdata, sizeof(hdr));
		if (plen < sizeof(hdr) || hdr.magic != htonl(PRIV_MAGIC) ||
		    hdr.version != PRIV_VERSION || hdr.len > AUV_PRIV_MAX ||
		    sizeof(hdr) + hdr.len > plen) {
			/* Not one of ours. */
			rdma_reject(id, NULL, 0);
			rdma_destroy_id(id);
			auvp_fail(-AUGUR_EPROTO,
				  "accept: rejected a connection request "
				  "without augur's header");
			continue;
		}
		rc = accept_one(ctx, id, init, resp, deadline, &ep);
		if (rc) {
			/* The connector gave up or the set-up failed: serve
			 * the next request while time remains. */
			if (ms_left(deadline))
				continue;
			return rc;
		}
		if (priv)
			memcpy(priv, pdata + sizeof(hdr), hdr.len);
		if (priv_len)
			*priv_len = hdr.len;
		*out = &ep->base;
		return 0;
	}
}

static int ibvp_ep_accept(struct auv_ctx *bctx, int timeout_ms,
			  struct auv_ep **out, void *priv, size_t *priv_len)
{
	int saved = errno, rc;

	rc = ibvp_ep_accept_(to_ctx(bctx), timeout_ms, out, priv, priv_len);
	errno = saved;
	return rc;
}

/* --- Contexts ------------------------------------------------------------- */

/*
 * Bind a temporary id to @ss; 0 and the device's name in @dev when the
 * address belongs to an RDMA device.
 */
static int addr_device(struct rdma_event_channel *ch,
		       const struct sockaddr_storage *ss, char *dev, size_t len)
{
	struct sockaddr_storage a = *ss;
	struct rdma_cm_id *id;
	int rc = 0;

	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP))
		return -errno;
	sa_set_port(&a, 0);
	if (rdma_bind_addr(id, (struct sockaddr *)&a))
		rc = -errno;
	else if (!id->verbs)
		rc = -ENODEV;
	else
		snprintf(dev, len, "%s",
			 ibv_get_device_name(id->verbs->device));
	rdma_destroy_id(id);
	return rc;
}

/* The first up, non-loopback IPv4 address whose device is @want. */
static int find_addr(struct rdma_event_channel *ch, const char *want,
		     struct sockaddr_storage *out)
{
	struct ifaddrs *ifa, *i;
	struct sockaddr_storage ss;
	char dev[64];
	int rc = -ENODEV;

	if (getifaddrs(&ifa))
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, i->ifa_addr, sizeof(struct sockaddr_in));
		if (addr_device(ch, &ss, dev, sizeof(dev)))
			continue;
		if (!strcmp(dev, want)) {
			*out = ss;
			rc = 0;
			break;
		}
	}
	freeifaddrs(ifa);
	return rc;
}

/*
 * Largest inline size up to @want (halving) that a QP like ours accepts:
 * what every endpoint's QP will then be created with.
 */
static int probe_inline(struct ibvp_ctx *ctx, uint32_t want)
{
	struct ibv_qp_init_attr attr;
	struct ibv_qp *qp;

	for (;;) {
		memset(&attr, 0, sizeof(attr));
		attr.send_cq = ctx->cq;
		attr.recv_cq = ctx->cq;
		attr.qp_type = IBV_QPT_RC;
		attr.cap.max_send_wr = ctx->sq_depth + 1;
		attr.cap.max_recv_wr = ctx->rq_depth;
		attr.cap.max_send_sge = 1;
		attr.cap.max_recv_sge = 1;
		attr.cap.max_inline_data = want;
		qp = ibv_create_qp(ctx->pd, &attr);
		if (qp) {
			ibv_destroy_qp(qp);
			ctx->max_inline = want;
			return 0;
		}
		if (!want)
			return auvp_fail(-errno,
					 "ibv_create_qp (sq %u, rq %u) on %s: "
					 "%s",
					 ctx->sq_depth + 1, ctx->rq_depth,
					 ctx->base.device, strerror(errno));
		want /= 2;
	}
}

static void ctx_destroy(struct ibvp_ctx *ctx)
{
	while (ctx->ep_list)
		ep_destroy(ctx->ep_list);
	while (ctx->mr_list)
		if (ibvp_mr_dereg(&ctx->mr_list->base))
			break;
	/* Verbs objects first: the listening id holds librdmacm's reference
	 * on the device context they live on. */
	if (ctx->cq)
		ibv_destroy_cq(ctx->cq);
	if (ctx->cch)
		ibv_destroy_comp_channel(ctx->cch);
	if (ctx->pd)
		ibv_dealloc_pd(ctx->pd);
	if (ctx->listen_id)
		rdma_destroy_id(ctx->listen_id);
	if (ctx->ech)
		rdma_destroy_event_channel(ctx->ech);
	if (ctx->lch)
		rdma_destroy_event_channel(ctx->lch);
	free(ctx->stash);
	free(ctx->eps);
	free(ctx->wrs);
	free(ctx->sges);
	free(ctx);
}

static void ibvp_ctx_close(struct auv_ctx *bctx)
{
	int saved = errno;

	ctx_destroy(to_ctx(bctx));
	errno = saved;
}

/* Choose the local address (and with it the device) to listen on. */
static int choose_addr(struct ibvp_ctx *ctx, const struct auv_ctx_opts *opts,
		       struct ibv_device **devs, int ndev, const char *names)
{
	int i;

	if (opts->addr) {
		if (parse_ip(opts->addr, strlen(opts->addr), &ctx->laddr))
			return auvp_fail(-EINVAL,
					 "'%.64s' is not a numeric IP address "
					 "(AUGUR_ADDR / opts.addr)",
					 opts->addr);
		return 0;
	}
	if (opts->device) {
		if (find_addr(ctx->lch, opts->device, &ctx->laddr))
			return auvp_fail(-AUGUR_ENO_TRANSPORT,
					 "RDMA device %s has no usable IPv4 "
					 "address (give its interface one, or "
					 "set AUGUR_ADDR)",
					 opts->device);
		return 0;
	}
	for (i = 0; i < ndev; i++)
		if (!find_addr(ctx->lch, ibv_get_device_name(devs[i]),
			       &ctx->laddr))
			return 0;
	return auvp_fail(-AUGUR_ENO_TRANSPORT,
			 "no RDMA device has a usable IPv4 address (devices: "
			 "%s); set AUGUR_ADDR or AUGUR_DEVICE",
			 names);
}

static int ibvp_ctx_open_(const struct auv_ctx_opts *opts, struct auv_ctx **out)
{
	struct ibv_device **devs;
	struct ibv_port_attr pattr;
	struct ibvp_ctx *ctx;
	char names[256], ip[INET6_ADDRSTRLEN];
	const char *dev;
	int ndev = 0, i, rc, cqe;
	uint16_t port;

	devs = ibv_get_device_list(&ndev);
	if (!devs)
		ndev = 0;
	device_names(devs, ndev, names, sizeof(names));
	if (!ndev) {
		rc = auvp_fail(-AUGUR_ENO_TRANSPORT,
			       "%s%s%sno RDMA device present "
			       "(ibv_get_device_list found none; without RDMA "
			       "hardware, SoftRoCE gives one: rdma link add "
			       "rxe0 type rxe netdev <if>)",
			       opts->device ? "RDMA device '" : "",
			       opts->device ? opts->device : "",
			       opts->device ? "' not found: " : "");
		goto out_list;
	}
	if (opts->device) {
		for (i = 0; i < ndev; i++)
			if (!strcmp(ibv_get_device_name(devs[i]), opts->device))
				break;
		if (i == ndev) {
			rc = auvp_fail(-AUGUR_ENO_TRANSPORT,
				       "RDMA device '%s' not found; present: "
				       "%s",
				       opts->device, names);
			goto out_list;
		}
	}

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		rc = auvp_fail(-ENOMEM, "out of memory");
		goto out_list;
	}
	ctx->base.ops = &auvp_ibv_ops;
	ctx->lch = rdma_create_event_channel();
	if (!ctx->lch) {
		rc = auvp_fail(-AUGUR_ENO_TRANSPORT,
			       "cannot open the RDMA connection manager "
			       "(/dev/infiniband/rdma_cm: %s; is rdma_ucm "
			       "loaded?)",
			       strerror(errno));
		goto out_ctx;
	}
	rc = choose_addr(ctx, opts, devs, ndev, names);
	if (rc)
		goto out_ctx;
	sa_ntop((struct sockaddr *)&ctx->laddr, ip, sizeof(ip));

	if (rdma_create_id(ctx->lch, &ctx->listen_id, NULL, RDMA_PS_TCP)) {
		rc = auvp_fail(-errno, "rdma_create_id: %s", strerror(errno));
		goto out_ctx;
	}
	sa_set_port(&ctx->laddr, 0);
	if (rdma_bind_addr(ctx->listen_id, (struct sockaddr *)&ctx->laddr)) {
		rc = errno;
		rc = auvp_fail(rc == EADDRNOTAVAIL ? -AUGUR_ENO_TRANSPORT : -rc,
			       "cannot bind to %s: %s%s", ip, strerror(rc),
			       rc == EADDRNOTAVAIL ? " (not a local address)"
						   : "");
		goto out_ctx;
	}
	if (!ctx->listen_id->verbs) {
		rc = auvp_fail(-AUGUR_ENO_TRANSPORT,
			       "address %s is not on an RDMA device (devices: "
			       "%s)",
			       ip, names);
		goto out_ctx;
	}
	ctx->verbs = ctx->listen_id->verbs;
	dev = ibv_get_device_name(ctx->verbs->device);
	if (opts->device && strcmp(dev, opts->device)) {
		rc = auvp_fail(-EINVAL,
			       "address %s belongs to RDMA device %s, not %s",
			       ip, dev, opts->device);
		goto out_ctx;
	}
	snprintf(ctx->base.device, sizeof(ctx->base.device), "%s", dev);
	snprintf(ctx->base.laddr, sizeof(ctx->base.laddr), "%s", ip);
	if (rdma_listen(ctx->listen_id, LISTEN_BACKLOG)) {
		rc = auvp_fail(-errno, "rdma_listen on %s: %s", ip,
			       strerror(errno));
		goto out_ctx;
	}
	rc = set_nonblock(ctx->lch->fd);
	if (rc) {
		auvp_fail(rc, "fcntl: %s", strerror(-rc));
		goto out_ctx;
	}
	if (ibv_query_device(ctx->verbs, &ctx->dattr) ||
	    ibv_query_port(ctx->verbs, ctx->listen_id->port_num, &pattr)) {
		rc = auvp_fail(-EIO, "cannot query device %s", dev);
		goto out_ctx;
	}

	ctx->sq_depth = opts->sq_depth;
	ctx->rq_depth = opts->rq_depth;
	if (ctx->dattr.max_qp_wr > 1 &&
	    ctx->sq_depth + 1 > (uint32_t)ctx->dattr.max_qp_wr)
		ctx->sq_depth = (uint32_t)ctx->dattr.max_qp_wr - 1;
	if (ctx->dattr.max_qp_wr > 0 &&
	    ctx->rq_depth > (uint32_t)ctx->dattr.max_qp_wr)
		ctx->rq_depth = (uint32_t)ctx->dattr.max_qp_wr;
	cqe = (int)min_u32(opts->cq_depth, (uint32_t)INT_MAX);
	if (ctx->dattr.max_cqe > 0 && cqe > ctx->dattr.max_cqe)
		cqe = ctx->dattr.max_cqe;

	ctx->pd = ibv_alloc_pd(ctx->verbs);
	if (!ctx->pd) {
		rc = auvp_fail(-errno, "ibv_alloc_pd: %s", strerror(errno));
		goto out_ctx;
	}
	ctx->cch = ibv_create_comp_channel(ctx->verbs);
	if (!ctx->cch) {
		rc = auvp_fail(-errno, "ibv_create_comp_channel: %s",
			       strerror(errno));
		goto out_ctx;
	}
	ctx->cq = ibv_create_cq(ctx->verbs, cqe, ctx, ctx->cch, 0);
	if (!ctx->cq) {
		rc = auvp_fail(-errno, "ibv_create_cq (%d entries): %s", cqe,
			       strerror(errno));
		goto out_ctx;
	}
	ctx->ech = rdma_create_event_channel();
	if (!ctx->ech) {
		rc = auvp_fail(-errno, "rdma_create_event_channel: %s",
			       strerror(errno));
		goto out_ctx;
	}
	rc = set_nonblock(ctx->ech->fd);
	if (!rc)
		rc = set_nonblock(ctx->cch->fd);
	if (rc) {
		auvp_fail(rc, "fcntl: %s", strerror(-rc));
		goto out_ctx;
	}
	rc = probe_inline(ctx, opts->max_inline);
	if (rc)
		goto out_ctx;
	ctx->wrs = calloc(ctx->sq_depth, sizeof(*ctx->wrs));
	ctx->sges = calloc(ctx->sq_depth, sizeof(*ctx->sges));
	if (!ctx->wrs || !ctx->sges) {
		rc = auvp_fail(-ENOMEM, "out of memory");
		goto out_ctx;
	}

	port = ntohs(rdma_get_src_port(ctx->listen_id));
	snprintf(ctx->base.addr, sizeof(ctx->base.addr),
		 ctx->laddr.ss_family == AF_INET6 ? "ibv:[%s]:%u" : "ibv:%s:%u",
		 ip, port);
	ctx->base.opts = *opts;
	ctx->base.opts.provider = auvp_ibv_ops.name;
	ctx->base.opts.device = ctx->base.device;
	ctx->base.opts.addr = ctx->base.laddr;
	ctx->base.opts.sq_depth = ctx->sq_depth;
	ctx->base.opts.rq_depth = ctx->rq_depth;
	ctx->base.opts.cq_depth = (uint32_t)ctx->cq->cqe;
	ctx->base.opts.max_inline = ctx->max_inline;
	ctx->base.caps.max_inline = ctx->max_inline;
	ctx->base.caps.max_msg = pattr.max_msg_sz ? pattr.max_msg_sz : 1u << 31;
	ctx->base.caps.max_send = ctx->base.caps.max_msg;
	ctx->base.caps.sq_depth = ctx->sq_depth;
	ctx->base.caps.rq_depth = ctx->rq_depth;
	ctx->base.caps.cq_depth = (uint32_t)ctx->cq->cqe;
	snprintf(ctx->base.caps.device, sizeof(ctx->base.caps.device), "%s",
		 dev);
	ctx->cm_last_ns = auvp_now_ns();
	ibv_free_device_list(devs);
	*out = &ctx->base;
	return 0;

out_ctx:
	ctx_destroy(ctx);
out_list:
	if (devs)
		ibv_free_device_list(devs);
	return rc;
}

static int ibvp_ctx_open(const struct auv_ctx_opts *opts, struct auv_ctx **out)
{
	int saved = errno, rc;

	rc = ibvp_ctx_open_(opts, out);
	errno = saved;
	return rc;
}

const struct auv_provider_ops auvp_ibv_ops = {
    .name = "ibv",
    .ctx_open = ibvp_ctx_open,
    .ctx_close = ibvp_ctx_close,
    .mr_alloc = ibvp_mr_alloc,
    .mr_reg = ibvp_mr_reg,
    .mr_dereg = ibvp_mr_dereg,
    .ep_connect = ibvp_ep_connect,
    .ep_accept = ibvp_ep_accept,
    .ep_close = ibvp_ep_close,
    .post = ibvp_post,
    .post_recv = ibvp_post_recv,
    .poll = ibvp_poll,
    .wait = ibvp_wait,
};
