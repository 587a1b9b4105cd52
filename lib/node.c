// SPDX-License-Identifier: MIT
/*
 * lib/node.c - starting and stopping a node: configuration, the arena
 * layout, registration, bootstrap exchange, the connection mesh, and the
 * node-level queries (stats, status).
 *
 * Start-up, in order (every node the same):
 *   1. bootstrap (rank, size, rendezvous) - lib/bootstrap.c;
 *   2. layout: key k is homed at node k % size, in the slot that follows
 *      the slots of the smaller keys homed there; every node computes the
 *      whole loc[] table itself, so nothing but a hash of the layout is
 *      exchanged;
 *   3. open the node context and one context per worker; register the
 *      arena, rings, ctrl and receive buffers (once; never on the data
 *      path); fill the arena's slots with the initial values;
 *   4. allgather addresses and region descriptors;
 *   5. every worker connects to every other node while a helper thread
 *      accepts the connections coming to this node;
 *   6. post receives, start the progress thread, barrier.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bootstrap.h"
#include "internal.h"

static _Thread_local char last_error[512];

int aug_fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return code;
}

const char *augur_last_error(void)
{
	return last_error[0] ? last_error : "no error detail";
}

void aug_node_failed(struct augur_node *node, int code, const char *fmt, ...)
{
	va_list ap;

	/* the text is complete before the status says there is one */
	pthread_mutex_lock(&node->err_lock);
	if (atomic_load(&node->status)) {
		pthread_mutex_unlock(&node->err_lock);
		return; /* the first failure is the one reported */
	}
	va_start(ap, fmt);
	vsnprintf(node->errbuf, sizeof(node->errbuf), fmt, ap);
	va_end(ap);
	atomic_store(&node->status, code);
	pthread_mutex_unlock(&node->err_lock);
	fprintf(stderr, "augur node %d: %s\n", node->rank, node->errbuf);
}

void aug_node_suspect(struct augur_node *node, int rank, int code)
{
	int expected = 0;

	if (atomic_load(&node->status))
		return;
	/* any evidence will do: whichever thread writes last names it */
	__atomic_store_n(&node->suspect_rank, rank, __ATOMIC_RELAXED);
	__atomic_store_n(&node->suspect_code, code, __ATOMIC_RELAXED);
	atomic_compare_exchange_strong(&node->suspect, &expected, 1);
}

int augur_node_rank(const struct augur_node *node)
{
	return node->rank;
}

int augur_node_size(const struct augur_node *node)
{
	return node->size;
}

uint32_t augur_value_len(const struct augur_node *node, uint64_t key)
{
	if (key >= node->num_keys)
		return 0;
	return aug_key_len(node, key);
}

int augur_node_status(const struct augur_node *node)
{
	return atomic_load(&((struct augur_node *)node)->status);
}

const char *augur_node_error(const struct augur_node *node)
{
	return node->errbuf;
}

/* Compute loc[] for every key and the size of this node's homed slots. */
static int layout(struct augur_node *n, uint64_t *homed_bytes,
		  uint32_t *hash)
{
	uint64_t *next = calloc((size_t)n->size, sizeof(*next));
	uint64_t k;
	uint32_t h = 2166136261u;

	if (!next)
		return -ENOMEM;
	for (k = 0; k < n->num_keys; k++) {
		uint32_t home = (uint32_t)(k % (uint64_t)n->size);
		uint32_t len = aug_key_len(n, k);
		uint64_t line = next[home] / AUG_LINE;

		if (line > UINT32_MAX) {
			free(next);
			return aug_fail(-EINVAL, "arena too large");
		}
		n->loc[k] = aug_loc_pack(home, 1, (uint32_t)line);
		if (home == (uint32_t)n->rank)
			n->homed_line[k / (uint64_t)n->size] = (uint32_t)line;
		next[home] += aug_slot_bytes(len);
		h = (h ^ len) * 16777619u;
	}
	*homed_bytes = next[n->rank];
	*hash = h ^ (uint32_t)n->num_keys;
	free(next);
	return 0;
}

static void init_slots(struct augur_node *n,
		       const struct augur_config *cfg)
{
	uint64_t k;

	for (k = (uint64_t)n->rank; k < n->num_keys; k += (uint64_t)n->size) {
		struct aug_slot *s = aug_local_slot(n, n->loc[k]);

		s->key = (uint32_t)k;
		s->epoch = 1;
		s->len = aug_key_len(n, k);
		if (cfg->init)
			cfg->init(k, s->val, s->len, cfg->init_arg);
		s->version = 0;
		s->checksum = aug_slot_hash(0, s->key, s->epoch, s->len,
					    s->val);
	}
}

struct accept_arg {
	struct augur_node *node;
	int want;
	int rc;
	char err[256]; /* the thread's error text, for the caller */
};

static void *accept_main(void *p)
{
	struct accept_arg *a = p;
	struct augur_node *n = a->node;
	int got = 0;

	while (got < a->want) {
		struct aug_conn_priv priv;
		struct aug_inring *r;
		struct auv_ep *ep;
		size_t plen = 0;
		int rc;

		rc = auv_ep_accept(n->nctx, 60000, &ep, &priv, &plen);
		if (rc) {
			a->rc = aug_fail(rc, "accepting connections: %s: %s",
					 augur_strerror(rc), auv_last_error());
			snprintf(a->err, sizeof(a->err), "%s",
				 augur_last_error());
			return NULL;
		}
		if (plen != sizeof(priv) || priv.magic != AUG_PRIV_MAGIC ||
		    priv.rank >= n->size || priv.rank == n->rank ||
		    priv.worker / n->nworkers != priv.rank ||
		    n->inring[priv.worker].ep) {
			auv_ep_close(ep);
			a->rc = aug_fail(-AUGUR_EPROTO,
					 "bad or duplicate connection request");
			snprintf(a->err, sizeof(a->err), "%s",
				 augur_last_error());
			return NULL;
		}
		r = &n->inring[priv.worker];
		r->ep = ep;
		r->gw = priv.worker;
		r->credit_addr = priv.credit_addr;
		r->credit_rkey = priv.credit_rkey;
		auv_ep_set_user(ep, r);
		got++;
	}
	a->rc = 0;
	return NULL;
}

static const char *pick_env(const char *list_env, int rank, char *buf,
			    size_t len)
{
	const char *l = getenv(list_env), *p;
	int i = 0;

	if (!l || !*l)
		return NULL;
	/* entry rank % count of a comma-separated list */
	{
		int count = 1;
		for (p = l; *p; p++)
			count += *p == ',';
		rank %= count;
	}
	p = l;
	while (i < rank) {
		p = strchr(p, ',') + 1;
		i++;
	}
	snprintf(buf, len, "%.*s", (int)strcspn(p, ","), p);
	return buf;
}

/*
 * Stopped nodes stay allocated as tombstones, so that a call through a
 * stale worker or node handle gets -AUGUR_ESHUTDOWN instead of touching
 * freed memory.  A tombstone is the bare struct (about 40 KiB); the list
 * keeps it reachable for leak checkers.
 */
static struct augur_node *tombstones;
static pthread_mutex_t tomb_lock = PTHREAD_MUTEX_INITIALIZER;

static void node_free(struct augur_node *n, int keep_shell)
{
	uint32_t i;
	int r;

	if (!n)
		return;
	for (i = 0; i < n->nworkers; i++) {
		aug_worker_teardown(&n->worker[i]);
		n->worker[i].node = n; /* wk_enter() answers ESHUTDOWN */
	}
	if (n->inring)
		for (r = 0; r < n->size * (int)n->nworkers; r++)
			auv_ep_close(n->inring[r].ep);
	aug_adapt_teardown(n);
	auv_mr_dereg(n->loc_mr);
	n->loc_mr = NULL;
	auv_mr_dereg(n->recv_mr);
	auv_mr_dereg(n->ctrl_mr);
	auv_mr_dereg(n->rings_mr);
	auv_mr_dereg(n->arena_mr);
	auv_ctx_close(n->nctx);
	if (n->boot)
		aug_boot_close(n->boot);
	free(n->inring);
	free(n->peers);
	free(n->lens);
	free(n->homed_line);
	n->homed_line = NULL;
	n->boot = NULL;
	n->nctx = NULL;
	n->arena_mr = n->rings_mr = n->ctrl_mr = n->recv_mr = NULL;
	n->arena = NULL;
	n->ctrl = NULL;
	n->inring = NULL;
	n->peers = NULL;
	n->loc = NULL;
	n->lens = NULL;
	if (keep_shell) {
		pthread_mutex_lock(&tomb_lock);
		n->tomb_next = tombstones;
		tombstones = n;
		pthread_mutex_unlock(&tomb_lock);
		return;
	}
	pthread_mutex_destroy(&n->lock);
	free(n);
}

int augur_node_start(const struct augur_config *cfg, struct augur_node **out)
{
	struct auv_ctx_opts copts;
	struct augur_node *n;
	struct aug_node_info me;
	struct accept_arg acc;
	pthread_t acc_thread;
	char devbuf[64], addrbuf[64];
	const char *provider;
	uint64_t homed = 0, extra;
	uint32_t lhash = 0, i;
	int rc, r;

	if (!cfg || !out)
		return aug_fail(-EINVAL, "augur_node_start: NULL argument");
	*out = NULL;
	if (!cfg->num_keys || cfg->num_keys >= UINT32_MAX)
		return aug_fail(-EINVAL, "num_keys must be in 1..2^32-2");
	if (cfg->num_workers > AUG_MAX_WORKERS)
		return aug_fail(-EINVAL, "num_workers must be <= %d",
				AUG_MAX_WORKERS);
	if (cfg->mode < AUGUR_MODE_ADAPTIVE || cfg->mode > AUGUR_MODE_RELOCATE)
		return aug_fail(-EINVAL, "unknown mode %d", cfg->mode);

	n = calloc(1, sizeof(*n));
	if (!n)
		return aug_fail(-ENOMEM, "out of memory");
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_init(&n->err_lock, NULL);
	n->num_keys = cfg->num_keys;
	n->nworkers = cfg->num_workers ? cfg->num_workers : 1;
	n->busy_poll = cfg->busy_poll;
	n->mode = cfg->mode;
	if (cfg->value_lens) {
		n->lens = malloc(cfg->num_keys * sizeof(*n->lens));
		if (!n->lens) {
			rc = aug_fail(-ENOMEM, "out of memory");
			goto out_free;
		}
		for (uint64_t k = 0; k < cfg->num_keys; k++) {
			if (!cfg->value_lens[k] ||
			    cfg->value_lens[k] > AUG_MAX_VALUE_LEN) {
				rc = aug_fail(-EINVAL,
					      "value_lens[%llu] = %u: must be "
					      "1..%u",
					      (unsigned long long)k,
					      cfg->value_lens[k],
					      AUG_MAX_VALUE_LEN);
				goto out_free;
			}
			n->lens[k] = cfg->value_lens[k];
		}
	} else {
		n->uniform_len = cfg->value_len ? cfg->value_len : 1;
		if (n->uniform_len > AUG_MAX_VALUE_LEN) {
			rc = aug_fail(-EINVAL, "value_len must be 1..%u",
				      AUG_MAX_VALUE_LEN);
			goto out_free;
		}
	}

	rc = aug_boot_open(&n->boot);
	if (rc) {
		rc = aug_fail(rc, "bootstrap: %s", aug_boot_error());
		goto out_free;
	}
	n->rank = aug_boot_rank(n->boot);
	n->size = aug_boot_size(n->boot);
	if (n->size > AUG_MAX_NODES) {
		rc = aug_fail(-EINVAL, "at most %d nodes", AUG_MAX_NODES);
		goto out_free;
	}

	n->peers = calloc((size_t)n->size, sizeof(*n->peers));
	n->inring = calloc((size_t)n->size * n->nworkers, sizeof(*n->inring));
	if (!n->peers || !n->inring) {
		rc = aug_fail(-ENOMEM, "out of memory for %llu keys",
			      (unsigned long long)cfg->num_keys);
		goto out_free;
	}

	provider = cfg->transport && *cfg->transport ? cfg->transport : NULL;
	memset(&copts, 0, sizeof(copts));
	copts.provider = provider;
	copts.device = pick_env("AUGUR_DEVICES", n->rank, devbuf,
				sizeof(devbuf));
	copts.addr = pick_env("AUGUR_ADDRS", n->rank, addrbuf,
			      sizeof(addrbuf));
	copts.rq_depth = AUG_RQ_DEPTH * 2;
	copts.cq_depth = 4096 + (uint32_t)(n->size * n->nworkers) * 256;
	rc = auv_ctx_open(&copts, &n->nctx);
	if (rc) {
		rc = aug_fail(rc, "opening transport: %s: %s",
			      augur_strerror(rc), auv_last_error());
		goto out_free;
	}
	/* loc[] is registered: a key's home answers one-sided directory
	 * READs from it (lib/adapt.c) */
	rc = auv_mr_alloc(n->nctx, cfg->num_keys * sizeof(*n->loc),
			  AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_READ,
			  &n->loc_mr);
	if (rc) {
		rc = aug_fail(rc, "registering the directory (%llu keys): %s: %s",
			      (unsigned long long)cfg->num_keys,
			      augur_strerror(rc), auv_last_error());
		goto out_free;
	}
	n->loc = auv_mr_addr(n->loc_mr);
	n->homed_line = malloc((cfg->num_keys / (uint64_t)n->size + 1) *
			       sizeof(*n->homed_line));
	if (!n->homed_line) {
		rc = aug_fail(-ENOMEM, "out of memory");
		goto out_free;
	}
	rc = layout(n, &homed, &lhash);
	if (rc)
		goto out_free;
	extra = cfg->extra_slots ? cfg->extra_slots * aug_slot_bytes(
							   n->uniform_len ?
								   n->uniform_len :
								   1)
				 : homed;
	n->homed_bytes = homed;
	n->arena_bytes = homed + extra + AUG_LINE;

	rc = auv_mr_alloc(n->nctx, n->arena_bytes, AUV_ACCESS_ALL, &n->arena_mr);
	if (!rc)
		rc = auv_mr_alloc(n->nctx,
				  (size_t)n->size * n->nworkers * AUG_RING_BYTES,
				  AUV_ACCESS_LOCAL_WRITE |
					  AUV_ACCESS_REMOTE_WRITE,
				  &n->rings_mr);
	if (!rc)
		rc = auv_mr_alloc(n->nctx,
				  ((size_t)n->size * n->nworkers * 8 + 4095) &
					  ~(size_t)4095,
				  AUV_ACCESS_ALL, &n->ctrl_mr);
	if (!rc)
		rc = auv_mr_alloc(n->nctx, 4096, AUV_ACCESS_LOCAL_WRITE,
				  &n->recv_mr);
	if (rc) {
		rc = aug_fail(rc,
			      "registering %zu bytes of arena and %zu of "
			      "rings: %s: %s",
			      n->arena_bytes,
			      (size_t)n->size * n->nworkers * AUG_RING_BYTES,
			      augur_strerror(rc), auv_last_error());
		goto out_free;
	}
	n->arena = auv_mr_addr(n->arena_mr);
	n->ctrl = auv_mr_addr(n->ctrl_mr);
	init_slots(n, cfg);

	for (i = 0; i < n->nworkers; i++) {
		rc = aug_worker_setup(n, (int)i, provider);
		if (rc)
			goto out_free;
	}

	memset(&me, 0, sizeof(me));
	snprintf(me.addr, sizeof(me.addr), "%s", auv_ctx_addr(n->nctx));
	auv_mr_desc(n->arena_mr, &me.arena);
	auv_mr_desc(n->rings_mr, &me.rings);
	auv_mr_desc(n->ctrl_mr, &me.ctrl);
	auv_mr_desc(n->loc_mr, &me.loc);
	me.num_keys = n->num_keys;
	me.num_workers = n->nworkers;
	me.layout_hash = lhash;
	rc = aug_boot_allgather(n->boot, &me, sizeof(me), n->peers);
	if (rc) {
		rc = aug_fail(rc, "bootstrap exchange: %s", aug_boot_error());
		goto out_free;
	}
	for (r = 0; r < n->size; r++) {
		if (n->peers[r].num_keys != n->num_keys ||
		    n->peers[r].num_workers != n->nworkers ||
		    n->peers[r].layout_hash != lhash) {
			rc = aug_fail(-EINVAL,
				      "node %d was started with a different "
				      "configuration (num_keys, value lengths "
				      "or num_workers differ)",
				      r);
			goto out_free;
		}
	}

	/* Mesh: workers connect out while a thread accepts in. */
	acc.node = n;
	acc.want = (n->size - 1) * (int)n->nworkers;
	acc.rc = 0;
	acc.err[0] = '\0';
	if (acc.want && pthread_create(&acc_thread, NULL, accept_main, &acc)) {
		rc = aug_fail(-EAGAIN, "cannot start accept thread");
		goto out_free;
	}
	rc = 0;
	for (i = 0; i < n->nworkers && !rc; i++)
		rc = aug_worker_connect(&n->worker[i]);
	if (acc.want)
		pthread_join(acc_thread, NULL);
	if (!rc && acc.rc)
		rc = aug_fail(acc.rc, "%s", acc.err);
	if (rc)
		goto out_free;
	rc = aug_progress_post_recvs(n);
	if (rc)
		goto out_free;
	if (n->mode != AUGUR_MODE_STATIC && n->size > 1 &&
	    n->size <= AUG_MAX_NODES_ADAPT) {
		/* every node is done accepting worker connections before any
		 * node link is requested (the accept thread is gone) */
		rc = aug_boot_barrier(n->boot);
		if (rc) {
			rc = aug_fail(rc, "barrier before node links: %s",
				      aug_boot_error());
			goto out_free;
		}
		rc = aug_adapt_setup(n);
		if (!rc)
			rc = aug_adapt_connect(n);
		if (!rc)
			rc = aug_adapt_post_recvs(n);
		if (rc)
			goto out_free;
	}
	if (pthread_create(&n->progress, NULL, aug_progress_main, n)) {
		rc = aug_fail(-EAGAIN, "cannot start progress thread");
		goto out_free;
	}
	n->progress_started = 1;
	rc = aug_boot_barrier(n->boot);
	if (rc) {
		rc = aug_fail(rc, "start barrier: %s", aug_boot_error());
		atomic_store(&n->stop, 1);
		pthread_join(n->progress, NULL);
		goto out_free;
	}
	*out = n;
	return 0;

out_free:
	node_free(n, 0);
	return rc;
}

int augur_node_stop(struct augur_node *n)
{
	uint32_t i;
	int rc, st;

	if (!n)
		return 0;
	pthread_mutex_lock(&n->lock);
	for (i = 0; i < n->nworkers; i++)
		if (n->worker[i].in_use) {
			pthread_mutex_unlock(&n->lock);
			return aug_fail(-EBUSY,
					"augur_node_stop: worker %u not "
					"destroyed",
					i);
		}
	n->stopped = 1;
	pthread_mutex_unlock(&n->lock);

	/* Nobody reads or writes our memory after every node got here. */
	rc = atomic_load(&n->status);
	if (!rc) {
		rc = aug_boot_barrier(n->boot);
		if (rc)
			aug_node_failed(n, rc, "stop barrier: %s",
					aug_boot_error());
	}
	atomic_store(&n->stop, 1);
	if (n->progress_started)
		pthread_join(n->progress, NULL);
	st = atomic_load(&n->status);
	pthread_mutex_lock(&n->lock);
	node_free(n, 1);
	pthread_mutex_unlock(&n->lock);
	return st ? st : rc;
}

int augur_stats(const struct augur_node *cn, struct augur_stats *out)
{
	struct augur_node *n = (struct augur_node *)cn;
	uint32_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < n->nworkers; i++) {
		const struct augur_stats *s = &n->worker[i].st;
#define F(x) out->x += __atomic_load_n(&s->x, __ATOMIC_RELAXED)
		F(pulls_local);
		F(pulls_remote);
		F(pushes_local);
		F(pushes_remote);
		F(torn_retries);
		F(msgs_sent);
		F(bytes_sent);
		F(bytes_received);
		F(relocations);
		F(replicas);
		F(intents);
		F(intent_waits);
#undef F
	}
	out->relocations += __atomic_load_n(&n->relocations, __ATOMIC_RELAXED);
	out->forwards = __atomic_load_n(&n->forwards, __ATOMIC_RELAXED);
	out->replicas += __atomic_load_n(&n->replicas_installed,
					 __ATOMIC_RELAXED);
	out->updates_applied = __atomic_load_n(&n->applied, __ATOMIC_RELAXED);
	out->progress_passes = __atomic_load_n(&n->passes, __ATOMIC_RELAXED);
	out->progress_sleeps = __atomic_load_n(&n->sleeps, __ATOMIC_RELAXED);
	out->sync_rounds = __atomic_load_n(&n->round_done, __ATOMIC_ACQUIRE);
	return 0;
}
