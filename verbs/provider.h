/* SPDX-License-Identifier: MIT */
/*
 * verbs/provider.h - PRIVATE: the contract between verbs/core.c and the
 * providers (verbs/shm_*.c, verbs/ibv_*.c).  Not installed.
 *
 * core.c owns everything common: resolving options and defaults, validating
 * every operation before a provider sees it, the per-thread error detail.
 * A provider is one `const struct auv_provider_ops` table; its objects embed
 * the generic ones below as their first member and get back to their own
 * type with container_of().
 *
 * What core.c guarantees to a provider's post():
 *   - 1 <= n, ep->status == 0;
 *   - each op: a known opcode other than RECV; 1 <= len <= caps.max_msg
 *     (SEND: <= caps.max_send); CAS/FAA: len == 8, local and remote_addr
 *     8-byte aligned, local_mr set; local_mr == NULL only for a
 *     WRITE/WRITE_IMM/SEND with len <= caps.max_inline; when local_mr is set,
 *     [local, local+len) lies inside it and it has LOCAL_WRITE where the
 *     operation writes locally (READ, CAS, FAA); local_mr belongs to ep's
 *     context.
 * A provider must still check everything that concerns the remote side
 * (bounds, rkey, rights) and report a failure as an error completion.
 */
#ifndef AUGUR_VERBS_PROVIDER_H
#define AUGUR_VERBS_PROVIDER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <augur/verbs.h>

#ifndef container_of
#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define AUV_DEFAULT_CQ_DEPTH 4096u
#define AUV_DEFAULT_SQ_DEPTH 1024u
#define AUV_DEFAULT_RQ_DEPTH 256u
#define AUV_DEFAULT_MAX_INLINE 256u
#define AUV_DEFAULT_CONNECT_TIMEOUT_MS 5000u

struct auv_provider_ops;

/* Generic part of a context; embedded first in the provider's. */
struct auv_ctx {
	const struct auv_provider_ops *ops;
	/* Resolved options: every field set, strings point into the
	 * buffers below. */
	struct auv_ctx_opts opts;
	char device[64];
	char laddr[64];
	/* Filled by the provider's ctx_open. */
	char addr[AUV_ADDR_MAX];
	struct auv_caps caps;
};

/* Generic part of a region; embedded first in the provider's. */
struct auv_mr {
	struct auv_ctx *ctx;
	void *addr;       /* first byte in this process */
	size_t len;
	unsigned int access;
	struct auv_mr_desc desc; /* what peers see; set by the provider */
};

/* Generic part of an endpoint; embedded first in the provider's. */
struct auv_ep {
	struct auv_ctx *ctx;
	void *user;
	int status; /* 0, or the negative code that broke it */
};

struct auv_provider_ops {
	const char *name;
	/* @opts is fully resolved by core; the provider allocates its
	 * context, copies @opts into ctx->opts, fills addr and caps. */
	int (*ctx_open)(const struct auv_ctx_opts *opts, struct auv_ctx **out);
	void (*ctx_close)(struct auv_ctx *ctx);
	int (*mr_alloc)(struct auv_ctx *ctx, size_t len, unsigned int access,
			struct auv_mr **out);
	int (*mr_reg)(struct auv_ctx *ctx, void *addr, size_t len,
		      unsigned int access, struct auv_mr **out);
	int (*mr_dereg)(struct auv_mr *mr);
	int (*ep_connect)(struct auv_ctx *ctx, const char *addr,
			  const void *priv, size_t priv_len,
			  struct auv_ep **out);
	int (*ep_accept)(struct auv_ctx *ctx, int timeout_ms,
			 struct auv_ep **out, void *priv, size_t *priv_len);
	void (*ep_close)(struct auv_ep *ep);
	int (*post)(struct auv_ep *ep, const struct auv_op *ops, int n);
	int (*post_recv)(struct auv_ep *ep, void *buf, uint32_t len,
			 struct auv_mr *mr, uint64_t cookie);
	int (*poll)(struct auv_ctx *ctx, struct auv_wc *wc, int max);
	int (*wait)(struct auv_ctx *ctx, int timeout_ms);
};

extern const struct auv_provider_ops auvp_shm_ops;
#ifdef AUGUR_HAVE_IBV
extern const struct auv_provider_ops auvp_ibv_ops;
#endif
#ifdef AUGUR_HAVE_URING
extern const struct auv_provider_ops auvp_tcp_ops;
#endif

/* Set the calling thread's auv_last_error() text (printf-style).  Returns
 * @code so that a failure path can be `return auvp_fail(-EINVAL, "...")`. */
int auvp_fail(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Check that locking @len more bytes stays within RLIMIT_MEMLOCK, given
 * what this process has pinned through augur so far.  Returns 0 or
 * AUGUR_EMEMLOCK with auv_last_error() saying what to raise it to. */
int auvp_memlock_check(size_t len);
/* Account @delta (positive or negative) bytes as pinned by augur. */
void auvp_memlock_account(long long delta);

/* Monotonic clock in nanoseconds. */
uint64_t auvp_now_ns(void);

#endif /* AUGUR_VERBS_PROVIDER_H */
