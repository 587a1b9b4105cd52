/* SPDX-License-Identifier: MIT */
/*
 * augur/verbs.h - augur's transport: one-sided RDMA over connected endpoints.
 *
 * A small API in the spirit of libibverbs, with the same semantics over every
 * provider:
 *
 *   ibv  libibverbs RC queue pairs, connected with librdmacm (ConnectX,
 *        SoftRoCE/rxe, any verbs device).
 *   shm  processes of one host.  Regions are shared memory mappings, so a
 *        READ is a copy out of the peer's memory that the peer's threads take
 *        no part in, and atomics are real 64-bit atomics on shared memory.
 *
 * Objects
 *   struct auv_ctx  one opened provider instance: a device, one protection
 *                   domain, one completion queue, one listening address.
 *   struct auv_mr   a registered memory region.
 *   struct auv_ep   an endpoint: a reliable connection to one peer context.
 *
 * Lifetime: create the context, register memory (once, up front: never on the
 * data path), connect endpoints, post operations, poll completions, then
 * destroy in reverse order.  Closing a context destroys what it still owns.
 *
 * Threads: a context, its regions and its endpoints are NOT thread-safe.
 * Drive each context from one thread at a time (augur's progress loop does),
 * or open one context per thread.
 *
 * Errors: every function returns 0, a count, or a negative code: -errno or
 * one of augur's own codes (augur/error.h); augur_strerror() explains them.
 * Nothing here reads or writes the global errno.
 *
 * Ordering (RC semantics, on every provider): operations posted on one
 * endpoint are carried out in the order posted as far as the target memory
 * can tell for WRITE after WRITE, and a WRITE with immediate or a SEND is
 * delivered only after all earlier WRITEs of that endpoint are visible.
 * READs and atomics may pass earlier WRITEs unless AUV_OP_FENCE is given.
 * Completions of one endpoint are reported in posting order.
 */
#ifndef AUGUR_VERBS_H
#define AUGUR_VERBS_H

#include <stddef.h>
#include <stdint.h>

#include <augur/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct auv_ctx;
struct auv_mr;
struct auv_ep;

/* Longest address string auv_ctx_addr() produces, NUL included. */
#define AUV_ADDR_MAX 128
/* Most private data auv_ep_connect() carries to the acceptor. */
#define AUV_PRIV_MAX 48

/* --- Opening a provider ------------------------------------------------- */

/**
 * struct auv_ctx_opts - options for auv_ctx_open(); zero means default.
 * @provider: "ibv" or "shm".  Default: $AUGUR_TRANSPORT, else "shm".
 * @device:   ibv: the RDMA device to use (e.g. "mlx5_0", "rxe_a").
 *            Default: $AUGUR_DEVICE, else the device of @addr, else the
 *            first active device.  shm: ignored.
 * @addr:     ibv: local IP address to listen on.  Default: $AUGUR_ADDR,
 *            else an IPv4 address of @device's network interface.
 *            shm: ignored.
 * @cq_depth: completion queue entries.  Default 4096.
 * @sq_depth: send queue entries per endpoint.  Default 1024.
 * @rq_depth: receive queue entries per endpoint.  Default 256.
 * @max_inline: bytes of a WRITE or SEND copied into the request itself, so
 *            the local buffer needs no registration and may be reused at
 *            once.  Default: what the device offers, at most 256.
 * @connect_timeout_ms: default 5000 for auv_ep_connect().
 */
struct auv_ctx_opts {
	const char *provider;
	const char *device;
	const char *addr;
	uint32_t cq_depth;
	uint32_t sq_depth;
	uint32_t rq_depth;
	uint32_t max_inline;
	uint32_t connect_timeout_ms;
};

/**
 * auv_ctx_open() - open a transport provider.
 * @opts: options, or NULL for all defaults.
 * @out:  the new context on success.
 *
 * When the provider or device asked for is absent, the returned error is
 * AUGUR_ENO_TRANSPORT and auv_last_error() lists what is present.
 *
 * Return: 0; AUGUR_ENO_TRANSPORT (no such provider or device);
 * -ENOMEM; -EINVAL (a bad option); -errno from the system.
 */
int auv_ctx_open(const struct auv_ctx_opts *opts, struct auv_ctx **out);

/**
 * auv_ctx_close() - destroy a context and every endpoint and region it owns.
 * NULL does nothing.
 */
void auv_ctx_close(struct auv_ctx *ctx);

/** auv_ctx_provider() - "ibv" or "shm". */
const char *auv_ctx_provider(const struct auv_ctx *ctx);

/**
 * auv_ctx_addr() - the address peers pass to auv_ep_connect() to reach this
 * context, as a NUL-terminated string of at most AUV_ADDR_MAX bytes:
 * "ibv:<ip>:<port>" or "shm:<pid>:<fd>".  Exchange it out of band.
 */
const char *auv_ctx_addr(const struct auv_ctx *ctx);

/**
 * struct auv_caps - what a context can do.
 * @max_inline:   largest inline WRITE/SEND, bytes.
 * @max_msg:      largest READ/WRITE, bytes.
 * @max_send:     largest SEND, bytes.
 * @sq_depth:     operations outstanding per endpoint.
 * @cq_depth:     completion queue entries.
 * @device:       device name ("shm" for the shm provider).
 */
struct auv_caps {
	uint32_t max_inline;
	uint32_t max_msg;
	uint32_t max_send;
	uint32_t sq_depth;
	uint32_t rq_depth;
	uint32_t cq_depth;
	char device[64];
};

/** auv_ctx_caps() - fill @caps.  Return: 0. */
int auv_ctx_caps(const struct auv_ctx *ctx, struct auv_caps *caps);

/**
 * auv_last_error() - a human-readable detail on the last failure of the
 * calling thread (which device was missing and which exist, which limit was
 * too small, ...).  Valid until the thread's next auv_ call.  Never NULL.
 */
const char *auv_last_error(void);

/* --- Memory regions ------------------------------------------------------ */

enum auv_access {
	AUV_ACCESS_LOCAL_WRITE = 1 << 0,
	AUV_ACCESS_REMOTE_READ = 1 << 1,
	AUV_ACCESS_REMOTE_WRITE = 1 << 2,
	AUV_ACCESS_REMOTE_ATOMIC = 1 << 3,
};
#define AUV_ACCESS_ALL                                                         \
	(AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_READ |                     \
	 AUV_ACCESS_REMOTE_WRITE | AUV_ACCESS_REMOTE_ATOMIC)

/**
 * auv_mr_alloc() - allocate and register @len bytes, zero-filled, page
 * aligned, with the given access rights (enum auv_access).  This is the way
 * to get memory peers can reach on every provider.
 *
 * Return: 0; -EINVAL (len 0 or unknown access bits); -ENOMEM;
 * AUGUR_EMEMLOCK (RLIMIT_MEMLOCK too small; auv_last_error() says what to
 * raise it to); -errno from the system.
 */
int auv_mr_alloc(struct auv_ctx *ctx, size_t len, unsigned int access,
		 struct auv_mr **out);

/**
 * auv_mr_reg() - register caller memory.  The caller keeps ownership of
 * [addr, addr+len) and must keep it alive until auv_mr_dereg().
 *
 * The shm provider can only register caller memory for local use (as the
 * local buffer of operations): remote access rights need auv_mr_alloc().
 *
 * Return: 0; -EINVAL; -EOPNOTSUPP (shm and remote access asked);
 * AUGUR_EMEMLOCK; -errno.
 */
int auv_mr_reg(struct auv_ctx *ctx, void *addr, size_t len,
	       unsigned int access, struct auv_mr **out);

/**
 * auv_mr_dereg() - deregister (and, for auv_mr_alloc() memory, free) a
 * region.  From then on peers' operations on it complete with
 * AUGUR_EREMOTE_ACCESS.  NULL does nothing.  Return: 0 or -errno.
 */
int auv_mr_dereg(struct auv_mr *mr);

/** auv_mr_addr() - the region's first byte in this process. */
void *auv_mr_addr(const struct auv_mr *mr);
/** auv_mr_len() - the region's length in bytes. */
size_t auv_mr_len(const struct auv_mr *mr);

/**
 * struct auv_mr_desc - what a peer needs to address a region: plain data,
 * safe to copy across processes and hosts (fixed width, no pointers).
 * @addr:   the region's start as the peer passes it in remote_addr.
 * @len:    length in bytes.
 * @rkey:   remote key.
 * @access: enum auv_access rights granted.
 */
struct auv_mr_desc {
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
	uint32_t access;
};

/** auv_mr_desc() - describe @mr for peers. */
void auv_mr_desc(const struct auv_mr *mr, struct auv_mr_desc *desc);

/* --- Endpoints ----------------------------------------------------------- */

/**
 * auv_ep_connect() - connect to the context whose auv_ctx_addr() is @addr.
 * @priv/@priv_len: up to AUV_PRIV_MAX bytes handed to the acceptor (for
 *            example the caller's rank).
 * @out:      the connected endpoint.
 *
 * Blocks until the peer accepts, refuses, or the connect timeout passes.
 *
 * Return: 0; -EINVAL (malformed address, @priv_len too long, provider
 * mismatch); -ECONNREFUSED (nobody there, or refused); -ETIMEDOUT (no answer
 * in time); -ENOMEM; -errno.
 */
int auv_ep_connect(struct auv_ctx *ctx, const char *addr, const void *priv,
		   size_t priv_len, struct auv_ep **out);

/**
 * auv_ep_accept() - accept the next incoming connection.
 * @timeout_ms: how long to wait; <0 waits forever, 0 only checks.
 * @priv/@priv_len: out: the connector's private data (buffer of
 *            AUV_PRIV_MAX bytes; either may be NULL).
 *
 * Return: 0; -ETIMEDOUT (nobody connected in time); -ENOMEM; -errno.
 */
int auv_ep_accept(struct auv_ctx *ctx, int timeout_ms, struct auv_ep **out,
		  void *priv, size_t *priv_len);

/**
 * auv_ep_close() - disconnect and destroy.  Operations still outstanding
 * complete with AUGUR_EFLUSHED at the next auv_poll().  NULL does nothing.
 */
void auv_ep_close(struct auv_ep *ep);

/** auv_ep_set_user() / auv_ep_user() - one pointer of caller data. */
void auv_ep_set_user(struct auv_ep *ep, void *user);
void *auv_ep_user(const struct auv_ep *ep);

/**
 * auv_ep_status() - 0 while the endpoint works; AUGUR_EPEER_GONE or
 * another negative code once it has failed.
 */
int auv_ep_status(const struct auv_ep *ep);

/* --- Operations ---------------------------------------------------------- */

enum auv_opcode {
	AUV_OP_READ = 1,
	AUV_OP_WRITE,
	AUV_OP_WRITE_IMM,
	AUV_OP_SEND,
	AUV_OP_CAS,
	AUV_OP_FAA,
	AUV_OP_RECV, /* only in completions */
};

enum auv_op_flags {
	/* Report a completion for this operation.  Unsignaled operations
	 * report nothing on success (selective signaling); a failure is
	 * always reported. */
	AUV_OP_SIGNALED = 1 << 0,
	/* Wait for earlier READs and atomics of this endpoint first. */
	AUV_OP_FENCE = 1 << 1,
};

/**
 * struct auv_op - one operation for auv_post().
 * @opcode:   enum auv_opcode (not AUV_OP_RECV).
 * @flags:    enum auv_op_flags.
 * @imm:      WRITE_IMM: the 32-bit immediate delivered to the peer.
 * @cookie:   returned in the completion.
 * @local:    READ: where the data lands; WRITE/WRITE_IMM/SEND: the data;
 *            CAS/FAA: 8 aligned bytes that receive the old remote value.
 * @len:      bytes (CAS/FAA: 8).
 * @local_mr: the registered region holding @local with the rights the
 *            operation needs (LOCAL_WRITE for READ, CAS, FAA).  May be NULL
 *            for a WRITE/WRITE_IMM/SEND of at most max_inline bytes.
 * @remote_addr, @rkey: target, from the peer's auv_mr_desc (not SEND).
 * @compare:  CAS: the expected value.
 * @swap_add: CAS: the new value; FAA: the addend.
 */
struct auv_op {
	uint8_t opcode;
	uint8_t flags;
	uint32_t imm;
	uint64_t cookie;
	void *local;
	uint32_t len;
	struct auv_mr *local_mr;
	uint64_t remote_addr;
	uint32_t rkey;
	uint64_t compare;
	uint64_t swap_add;
};

/**
 * auv_post() - post @n operations on @ep as one batch (one doorbell on
 * hardware).
 *
 * Selective signaling, as on hardware: an unsignaled operation keeps its
 * send-queue slot until a later signaled operation of the same endpoint has
 * completed and been polled.  Signal at least one operation in every
 * sq_depth/2, or the queue fills and auv_post() keeps returning 0.
 *
 * A full send queue is not an error: fewer than @n are posted, in order, and
 * the rest may be posted after completions have been polled.
 *
 * Return: the number posted (0..n); -EINVAL (a malformed operation:
 * unknown opcode, len 0 or too large, misaligned atomic, missing local_mr
 * for a non-inline operation; nothing is posted); AUGUR_EPEER_GONE or
 * another code when the endpoint has failed.
 */
int auv_post(struct auv_ep *ep, const struct auv_op *ops, int n);

/**
 * auv_post_recv() - post a receive buffer for one incoming SEND or WRITE
 * with immediate.  @mr must hold [buf, buf+len) with LOCAL_WRITE.
 *
 * Return: 0; -EAGAIN (receive queue full); -EINVAL; or the endpoint's
 * failure code.
 */
int auv_post_recv(struct auv_ep *ep, void *buf, uint32_t len,
		  struct auv_mr *mr, uint64_t cookie);

/* --- Completions --------------------------------------------------------- */

enum auv_wc_flags {
	AUV_WC_IMM = 1 << 0, /* a RECV completion carrying @imm */
};

/**
 * struct auv_wc - one completion.
 * @cookie:  the operation's or receive buffer's cookie.
 * @ep:      its endpoint.
 * @status:  0, or the failure: AUGUR_EREMOTE_ACCESS (bad key, out of
 *           bounds, missing right), AUGUR_ELOCAL_ACCESS, AUGUR_EPEER_GONE,
 *           AUGUR_EFLUSHED, AUGUR_EREMOTE_INVALID, AUGUR_ENO_RECV (all
 *           negative).
 * @opcode:  enum auv_opcode; AUV_OP_RECV for receives (a SEND or a WRITE
 *           with immediate from the peer).
 * @flags:   enum auv_wc_flags.
 * @byte_len: RECV: bytes received (0 for WRITE_IMM).
 * @imm:     RECV with AUV_WC_IMM: the immediate value.
 */
struct auv_wc {
	uint64_t cookie;
	struct auv_ep *ep;
	int32_t status;
	uint8_t opcode;
	uint8_t flags;
	uint32_t byte_len;
	uint32_t imm;
};

/**
 * auv_poll() - reap up to @max completions into @wc without blocking; also
 * makes the provider's own progress (deferred sends, liveness checks).
 *
 * Return: the number of completions (0..max), or -errno.
 */
int auv_poll(struct auv_ctx *ctx, struct auv_wc *wc, int max);

/**
 * auv_wait() - sleep until a completion may be ready, or @timeout_ms passes
 * (<0: no limit).  Completion channel on ibv, a futex on shm.  Call
 * auv_poll() afterwards; a wake-up may be spurious.  This is how a polling
 * loop backs off when idle.
 *
 * Return: 1 (woken), 0 (timed out), or -errno.
 */
int auv_wait(struct auv_ctx *ctx, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* AUGUR_VERBS_H */
