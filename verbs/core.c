// SPDX-License-Identifier: MIT
/*
 * verbs/core.c - the provider-independent half of the transport API:
 * option defaults, provider lookup, validation of every operation, and the
 * per-thread error detail.  Providers never see a malformed request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "provider.h"

static _Thread_local char last_error[512];

int auvp_fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return code;
}

const char *auv_last_error(void)
{
	return last_error[0] ? last_error : "no error detail";
}

uint64_t auvp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Bytes pinned through augur by this process (all contexts). */
static _Atomic long long memlock_used;

void auvp_memlock_account(long long delta)
{
	atomic_fetch_add_explicit(&memlock_used, delta, memory_order_relaxed);
}

int auvp_memlock_check(size_t len)
{
	struct rlimit rl;
	unsigned long long need;

	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return 0; /* cannot tell: let the registration itself decide */
	if (rl.rlim_cur == RLIM_INFINITY)
		return 0;
	need = (unsigned long long)atomic_load_explicit(&memlock_used,
							 memory_order_relaxed) +
	       len;
	if (need <= rl.rlim_cur)
		return 0;
	return auvp_fail(-AUGUR_EMEMLOCK,
			"RLIMIT_MEMLOCK is %llu KiB but registering %zu more "
			"bytes needs at least %llu KiB: raise it (ulimit -l "
			"%llu, or 'unlimited'; for services LimitMEMLOCK= in "
			"systemd, memlock in /etc/security/limits.conf)",
			(unsigned long long)rl.rlim_cur / 1024, len,
			(need + 1023) / 1024, (need + 1023) / 1024);
}

static const struct auv_provider_ops *const providers[] = {
	&auvp_shm_ops,
#ifdef AUGUR_HAVE_IBV
	&auvp_ibv_ops,
#endif
#ifdef AUGUR_HAVE_URING
	&auvp_tcp_ops,
#endif
};

#define NPROVIDERS (sizeof(providers) / sizeof(providers[0]))

static const char *env_or(const char *val, const char *env, const char *def)
{
	const char *e;

	if (val && *val)
		return val;
	e = getenv(env);
	if (e && *e)
		return e;
	return def;
}

int auv_ctx_open(const struct auv_ctx_opts *opts, struct auv_ctx **out)
{
	static const struct auv_ctx_opts zero;
	struct auv_ctx_opts o;
	const struct auv_provider_ops *p = NULL;
	char list[128] = "";
	size_t i;

	if (!out)
		return auvp_fail(-EINVAL, "auv_ctx_open: out is NULL");
	*out = NULL;
	last_error[0] = '\0';
	o = opts ? *opts : zero;
	o.provider = env_or(o.provider, "AUGUR_TRANSPORT", "shm");
	o.device = env_or(o.device, "AUGUR_DEVICE", NULL);
	o.addr = env_or(o.addr, "AUGUR_ADDR", NULL);
	if (!o.cq_depth)
		o.cq_depth = AUV_DEFAULT_CQ_DEPTH;
	if (!o.sq_depth)
		o.sq_depth = AUV_DEFAULT_SQ_DEPTH;
	if (!o.rq_depth)
		o.rq_depth = AUV_DEFAULT_RQ_DEPTH;
	if (!o.max_inline)
		o.max_inline = AUV_DEFAULT_MAX_INLINE;
	if (!o.connect_timeout_ms)
		o.connect_timeout_ms = AUV_DEFAULT_CONNECT_TIMEOUT_MS;
	if (o.sq_depth < 2 || o.sq_depth > 65536 || o.rq_depth > 65536 ||
	    o.cq_depth < 16 || o.cq_depth > (1u << 22))
		return auvp_fail(-EINVAL, "auv_ctx_open: queue depth out of "
					 "range (sq 2..65536, rq <=65536, "
					 "cq 16..4M)");

	for (i = 0; i < NPROVIDERS; i++) {
		if (!strcmp(providers[i]->name, o.provider))
			p = providers[i];
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s%s", i ? ", " : "", providers[i]->name);
	}
	if (!p) {
		if (!strcmp(o.provider, "ibv"))
			return auvp_fail(-AUGUR_ENO_TRANSPORT,
					"provider 'ibv' was not built in (no "
					"libibverbs/librdmacm at build time); "
					"available: %s",
					list);
		return auvp_fail(-AUGUR_ENO_TRANSPORT,
				"no transport provider '%s'; available: %s",
				o.provider, list);
	}
	return p->ctx_open(&o, out);
}

void auv_ctx_close(struct auv_ctx *ctx)
{
	if (ctx)
		ctx->ops->ctx_close(ctx);
}

const char *auv_ctx_provider(const struct auv_ctx *ctx)
{
	return ctx->ops->name;
}

const char *auv_ctx_addr(const struct auv_ctx *ctx)
{
	return ctx->addr;
}

int auv_ctx_caps(const struct auv_ctx *ctx, struct auv_caps *caps)
{
	*caps = ctx->caps;
	return 0;
}

#define ACCESS_KNOWN AUV_ACCESS_ALL

int auv_mr_alloc(struct auv_ctx *ctx, size_t len, unsigned int access,
		 struct auv_mr **out)
{
	if (!ctx || !out || !len || (access & ~ACCESS_KNOWN))
		return auvp_fail(-EINVAL, "auv_mr_alloc: bad argument");
	*out = NULL;
	return ctx->ops->mr_alloc(ctx, len, access, out);
}

int auv_mr_reg(struct auv_ctx *ctx, void *addr, size_t len,
	       unsigned int access, struct auv_mr **out)
{
	if (!ctx || !out || !addr || !len || (access & ~ACCESS_KNOWN))
		return auvp_fail(-EINVAL, "auv_mr_reg: bad argument");
	*out = NULL;
	return ctx->ops->mr_reg(ctx, addr, len, access, out);
}

int auv_mr_dereg(struct auv_mr *mr)
{
	if (!mr)
		return 0;
	return mr->ctx->ops->mr_dereg(mr);
}

void *auv_mr_addr(const struct auv_mr *mr)
{
	return mr->addr;
}

size_t auv_mr_len(const struct auv_mr *mr)
{
	return mr->len;
}

void auv_mr_desc(const struct auv_mr *mr, struct auv_mr_desc *desc)
{
	*desc = mr->desc;
}

int auv_ep_connect(struct auv_ctx *ctx, const char *addr, const void *priv,
		   size_t priv_len, struct auv_ep **out)
{
	size_t plen;

	if (!ctx || !addr || !out || priv_len > AUV_PRIV_MAX ||
	    (priv_len && !priv))
		return auvp_fail(-EINVAL, "auv_ep_connect: bad argument");
	*out = NULL;
	plen = strlen(ctx->ops->name);
	if (strncmp(addr, ctx->ops->name, plen) || addr[plen] != ':')
		return auvp_fail(-EINVAL,
				"auv_ep_connect: address '%.64s' is not a "
				"'%s:' address",
				addr, ctx->ops->name);
	return ctx->ops->ep_connect(ctx, addr, priv, priv_len, out);
}

int auv_ep_accept(struct auv_ctx *ctx, int timeout_ms, struct auv_ep **out,
		  void *priv, size_t *priv_len)
{
	if (!ctx || !out)
		return auvp_fail(-EINVAL, "auv_ep_accept: bad argument");
	*out = NULL;
	if (priv_len)
		*priv_len = 0;
	return ctx->ops->ep_accept(ctx, timeout_ms, out, priv, priv_len);
}

void auv_ep_close(struct auv_ep *ep)
{
	if (ep)
		ep->ctx->ops->ep_close(ep);
}

void auv_ep_set_user(struct auv_ep *ep, void *user)
{
	ep->user = user;
}

void *auv_ep_user(const struct auv_ep *ep)
{
	return ep->user;
}

int auv_ep_status(const struct auv_ep *ep)
{
	return ep->status;
}

static int inside(const struct auv_mr *mr, const void *p, uint32_t len)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)mr->addr;

	return a >= b && len <= mr->len && a - b <= mr->len - len;
}

static int check_op(const struct auv_ep *ep, const struct auv_op *op, int i)
{
	const struct auv_caps *caps = &ep->ctx->caps;
	int writes_local = 0, may_inline = 0;

	switch (op->opcode) {
	case AUV_OP_READ:
		writes_local = 1;
		break;
	case AUV_OP_WRITE:
	case AUV_OP_WRITE_IMM:
		may_inline = 1;
		break;
	case AUV_OP_SEND:
		may_inline = 1;
		if (op->len > caps->max_send)
			return auvp_fail(-EINVAL,
					"op %d: SEND of %u bytes, max %u", i,
					op->len, caps->max_send);
		break;
	case AUV_OP_CAS:
	case AUV_OP_FAA:
		writes_local = 1;
		if (op->len != 8 || ((uintptr_t)op->local & 7) ||
		    (op->remote_addr & 7))
			return auvp_fail(-EINVAL,
					"op %d: atomics take 8 bytes at "
					"8-byte aligned local and remote "
					"addresses",
					i);
		break;
	default:
		return auvp_fail(-EINVAL, "op %d: unknown opcode %u", i,
				op->opcode);
	}
	if (!op->len || op->len > caps->max_msg)
		return auvp_fail(-EINVAL, "op %d: length %u not in 1..%u", i,
				op->len, caps->max_msg);
	if (op->flags & ~(AUV_OP_SIGNALED | AUV_OP_FENCE))
		return auvp_fail(-EINVAL, "op %d: unknown flags 0x%x", i,
				op->flags);
	if (!op->local)
		return auvp_fail(-EINVAL, "op %d: local buffer is NULL", i);
	if (!op->local_mr) {
		if (may_inline && op->len <= caps->max_inline)
			return 0;
		return auvp_fail(-EINVAL,
				"op %d: local_mr is NULL but %u bytes are "
				"not inline (max_inline %u)",
				i, op->len, caps->max_inline);
	}
	if (op->local_mr->ctx != ep->ctx)
		return auvp_fail(-EINVAL,
				"op %d: local_mr belongs to another context",
				i);
	if (!inside(op->local_mr, op->local, op->len))
		return auvp_fail(-AUGUR_ELOCAL_ACCESS,
				"op %d: local buffer not inside local_mr", i);
	if (writes_local && !(op->local_mr->access & AUV_ACCESS_LOCAL_WRITE))
		return auvp_fail(-AUGUR_ELOCAL_ACCESS,
				"op %d: local_mr lacks LOCAL_WRITE", i);
	return 0;
}

int auv_post(struct auv_ep *ep, const struct auv_op *ops, int n)
{
	int i, rc;

	if (!ep || n < 0 || (n && !ops))
		return auvp_fail(-EINVAL, "auv_post: bad argument");
	if (ep->status)
		return ep->status;
	for (i = 0; i < n; i++) {
		rc = check_op(ep, &ops[i], i);
		if (rc)
			return rc;
	}
	if (!n)
		return 0;
	return ep->ctx->ops->post(ep, ops, n);
}

int auv_post_recv(struct auv_ep *ep, void *buf, uint32_t len,
		  struct auv_mr *mr, uint64_t cookie)
{
	if (!ep || !buf || !len || !mr || mr->ctx != ep->ctx)
		return auvp_fail(-EINVAL, "auv_post_recv: bad argument");
	if (ep->status)
		return ep->status;
	if (!inside(mr, buf, len))
		return auvp_fail(-AUGUR_ELOCAL_ACCESS,
				"auv_post_recv: buffer not inside mr");
	if (!(mr->access & AUV_ACCESS_LOCAL_WRITE))
		return auvp_fail(-AUGUR_ELOCAL_ACCESS,
				"auv_post_recv: mr lacks LOCAL_WRITE");
	return ep->ctx->ops->post_recv(ep, buf, len, mr, cookie);
}

int auv_poll(struct auv_ctx *ctx, struct auv_wc *wc, int max)
{
	if (!ctx || max < 0 || (max && !wc))
		return -EINVAL;
	return ctx->ops->poll(ctx, wc, max);
}

int auv_wait(struct auv_ctx *ctx, int timeout_ms)
{
	if (!ctx)
		return -EINVAL;
	return ctx->ops->wait(ctx, timeout_ms);
}
