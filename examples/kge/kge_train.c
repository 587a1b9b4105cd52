// SPDX-License-Identifier: MIT
/*
 * examples/kge/kge_train.c - kge-train: knowledge graph embeddings (ComplEx
 * with negative sampling, AdaGrad) on augur, or with --backend plain on
 * plain in-memory arrays.
 *
 * Data: a directory in libkge's layout (kge-gen writes one): train.del and
 * optionally test.del, one "s<TAB>r<TAB>o" line per triple, 0-based ids
 * (the format AdaPM's KGE app reads).  The entity and relation counts come
 * from entity_ids.del and relation_ids.del when present, else from the
 * largest ids in train.del and test.del (--entities/--relations override).
 * Every process reads the files and keeps the triples of its own workers.
 *
 * Model: key e in [0, E) is entity e's embedding, key E + r relation r's.
 * With --dim D (D even; D real numbers, as in libkge and AdaPM: D/2 complex
 * numbers), each value is 2D floats:
 *     [ re (D/2) | im (D/2) | AdaGrad accumulators (D) ]
 * so one pull of a triple's keys brings everything its update needs and one
 * push of the deltas applies it (the accumulators take additive deltas
 * too, which commute like any other push).  Embeddings start at
 * N(0, 0.1^2) (--init-scale; AdaPM's default normal{0/0.1}), drawn from a
 * hash of (seed, key) by augur_config.init so that every node agrees;
 * accumulators start at 0.  Past the model, reserved keys serve as
 * reduction slots (there is no reduce call: workers push their partial sums
 * into a slot, and after wait_sync + barrier one worker pulls the total):
 * one slot per epoch for loss and evaluation sums, one at the end for the
 * store's counters.
 *
 * Score (ComplEx): f(s, r, o) = Re(sum_k s_k r_k conj(o_k)).
 *
 * Update for a training triple (s, r, o) with N negatives per side: N
 * corrupted objects (s, r, o'_j) and N corrupted subjects (s'_j, r, o),
 * o'_j and s'_j uniform over all entities (a negative may hit a true
 * triple, as in AdaPM's app).  Logistic (binary cross-entropy) loss, label
 * 1 for the positive and 0 for the 2N negatives, plus L2 regularisation
 * (lambda/2)(|s|^2 + |r|^2 + |o|^2) on the positive's embeddings.  The 1 +
 * 2N examples of a triple form one step: their gradients are computed from
 * one pull and summed per key (a key that appears twice, say a negative
 * equal to s, gets the sum), then one AdaGrad step per key:
 *     a += g^2;  x -= lr g / sqrt(a + 1e-6)        (element-wise)
 * and one push applies [dx | g^2] to every key of the triple.
 *
 * Work split: the training triples are split over the G = nodes x workers
 * workers (global worker id = augur_worker_id()) in contiguous ranges of
 * the file, as AdaPM's app does; each worker visits its range in a fresh
 * random order every epoch.  Entities and relations are shared by all
 * workers; with --backend plain that is Hogwild across threads
 * (unsynchronised float updates, excluded from ThreadSanitizer).
 *
 * Negatives and intents: a worker's triples are cut into blocks of --block
 * triples; one block is one clock.  Negatives come from a per-worker
 * splitmix64 stream, drawn block by block K = --intent-ahead blocks ahead
 * of use: before block b it draws the negatives of block b + K and signals
 * an intent for every distinct key of block b + K (its triples' entities
 * and relations and its negatives) for clocks [c + b + K, c + b + K + 1),
 * c the clock at the start of the epoch.  The stream is consumed in block
 * order whatever K is, so K changes no result.  After each block the worker
 * advances its clock.  Intents are hints.
 *
 * Evaluation (each epoch, not timed): link prediction on the first
 * --eval-triples test triples against --eval-cands random candidate
 * entities per triple (uniform, from a hash of (seed, triple index), the
 * same for every backend and worker count); both sides: the rank of o
 * among the candidates as objects of (s, r, .) and the rank of s among them
 * as subjects of (., r, o), rank = 1 + the candidates (other than the true
 * entity) that score strictly higher.  Unfiltered.  Reported: MRR and
 * Hits@10 over both sides.  Each worker ranks the test triples i with
 * i mod G = its id.  The training loss is the mean over all examples
 * (1 + 2N per triple) of BCE + regularisation, summed while training.
 *
 * Backends: the per-triple loops (train_range, eval_range) are written once
 * against two primitives, pulln (make the values of n keys available) and
 * pushn (add the deltas), as always-inline functions instantiated per
 * backend with its primitives as constants (plus a copy with D = 64), so
 * the plain backend compiles to a direct loop over the arrays (pull gives
 * pointers into the model, push adds in place).  The rest (reductions,
 * barriers, intents, clocks, counters) goes through the function pointers
 * of struct kge_backend, off the per-triple path.
 *
 * Each epoch: [shuffle] barrier | train | wait_sync, barrier | evaluate,
 * push loss and evaluation sums to the epoch's slot, wait_sync, barrier,
 * worker 0 pulls and prints.  Throughput counts only the part between the
 * first two barriers (the negative sampling and intents included); the
 * store's counters likewise only count training (each node's worker 0
 * snapshots them around the training part, inside a node-local barrier).
 *
 * Errors: any failing augur call is fatal for the whole job: the process
 * prints the call, augur_strerror() and augur_last_error() (and the node's
 * error, such as a dead peer) and exits at once with status 1, so that its
 * peers see a dead peer instead of waiting forever in a barrier.
 *
 * Build with -DKGE_NO_AUGUR to leave the augur backend out (plain only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef KGE_NO_AUGUR
#include <augur/augur.h>
#endif

#define KGE_ADAGRAD_EPS 1e-6f
#define KGE_MAX_WORKERS 64
#define KGE_MAX_NEG 64
#define KGE_MAX_KEYS (3 + 2 * KGE_MAX_NEG)
#define KGE_MAX_CANDS 10000
#define KGE_SLOT_FLOATS 64 /* reduction vector: up to 64 floats */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/*
 * The plain backend's Hogwild updates race by design: not for TSan.  GCC
 * instruments an inlined function by its own attributes, so every function
 * that touches the plain model on the training path carries this.
 */
#if defined(__has_attribute)
#if __has_attribute(no_sanitize)
#define KGE_HOGWILD __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef KGE_HOGWILD
#define KGE_HOGWILD
#endif

/* --- options -------------------------------------------------------------- */

enum { BACKEND_AUGUR, BACKEND_PLAIN };
#ifdef KGE_NO_AUGUR
#define KGE_DEFAULT_BACKEND BACKEND_PLAIN
#else
#define KGE_DEFAULT_BACKEND BACKEND_AUGUR
#endif

struct kge_opts {
	const char *dir;
	uint32_t dim; /* real numbers per embedding: dim/2 complex */
	uint32_t neg; /* negatives per side */
	int epochs;
	float lr;
	float reg;
	int backend;
	int workers;
	int intent_ahead;
	uint32_t block;
	uint64_t seed;
	int mode;
	int check_decrease;
	int progress;
	double init_scale;
	uint32_t eval_triples;
	uint32_t eval_cands;
	uint64_t entities, relations; /* 0: from the files */
};

/* --- data ----------------------------------------------------------------- */

struct kge_triple {
	uint32_t s, r, o;
};

struct del_file {
	struct kge_triple *t;
	uint64_t n;
	uint64_t ne, nr; /* largest entity and relation id + 1 */
};

/*
 * The triples and negatives of one worker.  Negatives and intent key lists
 * live in a ring of K + 1 block slots: block f in slot f mod (K + 1),
 * written when block f is prepared (K blocks ahead), read when it is
 * trained.
 */
struct kge_part {
	struct kge_triple *train;
	size_t ntrain;
	uint32_t nblocks;
	uint32_t ring;	 /* K + 1 */
	uint32_t *neg;	 /* ring x block x 2 neg: objects, then subjects */
	uint64_t *ikeys; /* ring x block x (3 + 2 neg) */
	size_t *ilen;	 /* ring */
	uint64_t nrng;	 /* the negative sampler's splitmix64 state */
	uint32_t *evidx; /* the test triples this worker ranks */
	size_t neval;
};

/* --- job, workers, backends ----------------------------------------------- */

struct kge_worker;

/*
 * struct kge_backend - what the training loop needs from a parameter store.
 * @train_range: the hot loop over @n triples with their negatives (2 neg
 *          entity ids per triple): train_range() below, instantiated with
 *          the backend's pulln/pushn; adds to the worker's loss sums.
 * @eval_range: rank the test triples @idx[0..n) (no update), adding to
 *          @sums: reciprocal ranks, hits@10, ranks.
 * @pulln/@pushn: whole values of @n keys (reduction slots).
 * @status: 0 while the job is healthy, else the node's error (a dead
 *          peer); polled once per block and after every barrier, so that a
 *          failure noticed by the node's progress thread ends the run even
 *          if no call of this worker has returned it yet.
 * @intent, @advance_clock, @node_stats, @status: NULL if the backend has
 *          none.
 * All return 0 or a negative code.
 */
struct kge_backend {
	const char *name;
	int (*train_range)(struct kge_worker *w, const struct kge_triple *t,
			   size_t n, const uint32_t *neg);
	int (*eval_range)(struct kge_worker *w, const uint32_t *idx, size_t n,
			  double *sums);
	int (*pulln)(struct kge_worker *w, const uint64_t *keys, size_t n,
		     float *out);
	int (*pushn)(struct kge_worker *w, const uint64_t *keys, size_t n,
		     const float *delta);
	int (*intent)(struct kge_worker *w, const uint64_t *keys, size_t n,
		      int64_t start, int64_t end);
	int (*advance_clock)(struct kge_worker *w);
	int (*wait_sync)(struct kge_worker *w);
	int (*barrier)(struct kge_worker *w);
	int (*node_stats)(struct kge_worker *w, uint64_t *out);
	int (*status)(struct kge_worker *w);
};

/* Counters reduced at the end (struct augur_stats fields, in this order). */
static const char *const stat_names[] = {
    "pulls_local",     "pulls_remote", "pushes_local", "pushes_remote",
    "torn_retries",    "msgs_sent",    "bytes_sent",   "bytes_received",
    "updates_applied", "relocations",  "replicas",     "intents",
    "sync_rounds",
};
#define NSTATS (sizeof(stat_names) / sizeof(stat_names[0]))

/* The epoch slot's layout (floats). */
enum {
	SL_BCE_HI,
	SL_BCE_LO,
	SL_REG_HI,
	SL_REG_LO,
	SL_RR_HI,
	SL_RR_LO,
	SL_HITS10,
	SL_RANKS,
	SL_N
};

struct kge_job {
	const struct kge_opts *o;
	const struct kge_backend *be;
	int rank, nnodes, W, G;
	uint32_t ne, nr, dim, vlen, neg, nkeys_max;
	uint64_t num_keys, key_loss, key_stats, slot_keys;
	uint64_t ntrain_total, neval_total;
	struct kge_triple *all; /* the training file (until partitioned) */
	struct kge_triple *test;
	uint64_t ntest;
	struct kge_part *parts; /* W entries, by local worker id */
	float *model;		/* plain backend */
	pthread_mutex_t lock;	/* plain backend: reduction pushes */
	pthread_barrier_t bar;	/* plain: the barrier; augur: node-local */
	int claimed[KGE_MAX_WORKERS];
	pthread_mutex_t claim_lock;
	/* node counters over the training phases (local worker 0) */
	uint64_t train_stats[NSTATS];
	/* results (worker 0 of rank 0) */
	double *loss, *mrr, *hits10, *secs;
	int progress;
#ifndef KGE_NO_AUGUR
	struct augur_node *node;
#endif
};

struct kge_worker {
	struct kge_job *job;
	int tid;      /* thread index on this node */
	int lid, gid; /* local and global worker id */
	struct kge_part *part;
	float **vals;	/* nkeys_max: where each pulled key's value is */
	float *buf;	/* pull buffer, nkeys_max values */
	float *grad;	/* gradients, KGE_MAX_KEYS x dim */
	float *delta;	/* push buffer, KGE_MAX_KEYS values */
	float *scratch; /* 4 x dim: q, t, X, Y */
	uint64_t *keys; /* nkeys_max */
	float *slot;	/* reduction buffer */
	uint64_t *slot_keys;
	double bce, reg; /* this epoch's loss sums */
	int64_t clock;
	int reporter; /* gid 0: prints */
	double t0, t1;
	uint64_t snap[NSTATS];
#ifndef KGE_NO_AUGUR
	struct augur_worker *aw;
#endif
	pthread_t thread;
} __attribute__((aligned(64)));

/* --- small helpers -------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* splitmix64 stream */
static inline uint64_t sm_next(uint64_t *s)
{
	return mix64(*s += 0x9e3779b97f4a7c15ULL);
}

static double sm_unif(uint64_t *s) /* (0, 1] */
{
	return ((double)(sm_next(s) >> 11) + 1.0) * 0x1.0p-53;
}

static inline uint64_t sm_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)sm_next(s) * n) >> 64);
}

static const char *kge_strerror(int err)
{
#ifndef KGE_NO_AUGUR
	return augur_strerror(err);
#else
	return strerror(err < 0 ? -err : err);
#endif
}

/*
 * kge_die() - a worker's call failed: report and end the process now (see
 * "Errors" above).  Never returns.
 */
static void __attribute__((noreturn))
kge_die(const struct kge_worker *w, const char *what, int err)
{
	const struct kge_job *job = w->job;
	const int from_status = !strcmp(what, "node status");

	if (job->progress)
		fputc('\n', stderr); /* off the progress bar's line */
	if (from_status)
		fprintf(stderr,
			"kge-train: node %d worker %d: the job failed: %s",
			job->rank, w->gid, kge_strerror(err));
	else
		fprintf(stderr, "kge-train: node %d worker %d: %s failed: %s",
			job->rank, w->gid, what, kge_strerror(err));
#ifndef KGE_NO_AUGUR
	if (job->node) {
		const char *detail = augur_last_error();

		if (!from_status && detail && *detail)
			fprintf(stderr, " (%s)", detail);
		if (augur_node_status(job->node)) {
			detail = augur_node_error(job->node);
			fprintf(stderr, "; node: %s",
				*detail ? detail
					: kge_strerror(
					      augur_node_status(job->node)));
		}
	}
#endif
	fputc('\n', stderr);
	fflush(stdout);
	fflush(stderr);
	_exit(1);
}

/* Every call used here returns 0 on success; any other value (whichever
 * its sign) is a failure. */
#define CHECK(w, call, what)                                                   \
	do {                                                                   \
		int err__ = (call);                                            \
		if (unlikely(err__ != 0))                                      \
			kge_die((w), (what), err__);                           \
	} while (0)

/* --- the model ------------------------------------------------------------ */

static inline float sigmoidf(float x)
{
	if (x < -30.0f)
		return 0.0f;
	if (x > 30.0f)
		return 1.0f;
	return 1.0f / (1.0f + expf(-x));
}

/* log(1 + e^x), without overflow */
static inline float softplusf(float x)
{
	return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

/* Dot product in 8 partial sums, so that it vectorises without
 * -ffast-math. */
static inline __attribute__((always_inline)) KGE_HOGWILD float
dotf(const float *restrict a, const float *restrict b, uint32_t n)
{
	float s[8] = {0};
	uint32_t k = 0;

	for (; k + 8 <= n; k += 8)
		for (int l = 0; l < 8; l++)
			s[l] += a[k + l] * b[k + l];
	for (; k < n; k++)
		s[0] += a[k] * b[k];
	return ((s[0] + s[4]) + (s[1] + s[5])) +
	       ((s[2] + s[6]) + (s[3] + s[7]));
}

/*
 * The keys of one training triple, de-duplicated: keys[0..n) are distinct,
 * and s, r, o, on[j] (corrupted objects) and sn[j] (corrupted subjects) are
 * indices into them.
 */
struct kge_ix {
	uint32_t n;
	uint8_t s, r, o;
	uint8_t on[KGE_MAX_NEG], sn[KGE_MAX_NEG];
};

static inline uint8_t ix_add(uint64_t *keys, uint32_t *n, uint64_t key)
{
	for (uint32_t i = 0; i < *n; i++)
		if (keys[i] == key)
			return (uint8_t)i;
	keys[*n] = key;
	return (uint8_t)(*n)++;
}

static inline void ix_build(struct kge_ix *ix, uint64_t *keys,
			    const struct kge_triple *t, const uint32_t *neg,
			    uint32_t nneg, uint32_t ne)
{
	uint32_t n = 0;

	keys[0] = t->s;
	ix->s = 0;
	keys[1] = (uint64_t)ne + t->r; /* never equal to an entity key */
	ix->r = 1;
	n = 2;
	ix->o = ix_add(keys, &n, t->o);
	for (uint32_t j = 0; j < nneg; j++)
		ix->on[j] = ix_add(keys, &n, neg[j]);
	for (uint32_t j = 0; j < nneg; j++)
		ix->sn[j] = ix_add(keys, &n, neg[nneg + j]);
	ix->n = n;
}

/*
 * kge_step() - the gradients of one triple's 1 + 2 nneg examples, summed
 * per key, and one AdaGrad step per key.  @v[i] is key i's value
 * [re | im | acc]; writes [dx | g^2] of key i to @delta + i * 2 dim.  Adds
 * the examples' BCE and the regularisation term to *@bce and *@reg.
 *
 * With h = dim/2, q = s o r (complex, element-wise) and t = r o conj(o):
 *   f(s, r, x) = Re<q, x>  = q_re.x_re + q_im.x_im    (corrupted objects)
 *   f(y, r, o) = t_re.y_re + t_im.y_im, t_re = r_re o_re + r_im o_im,
 *                t_im = r_re o_im - r_im o_re          (corrupted subjects)
 * so with c = sigmoid(f) - label per example, X = sum c_x x over the
 * positive object and the corrupted ones, Y = sum c_y y over the corrupted
 * subjects:
 *   grad x'  = c q,  grad y' = c t                     (the negatives)
 *   grad s   = (r_re X_re + r_im X_im, r_re X_im - r_im X_re)
 *   grad o   = r o (Y + c_pos s)
 *   grad r   = (s_re X_re + s_im X_im, s_re X_im - s_im X_re)
 *            + (Y_re o_re + Y_im o_im, Y_re o_im - Y_im o_re)
 * plus lambda times the embedding for s, r and o.
 */
static inline __attribute__((always_inline)) KGE_HOGWILD void
kge_step(float *const *v, const struct kge_ix *ix, uint32_t nneg, float lr,
	 float lambda, uint32_t dim, float *restrict g, float *restrict sc,
	 float *restrict delta, double *bce, double *reg)
{
	const uint32_t h = dim / 2, vlen = 2 * dim;
	const float *S = v[ix->s], *R = v[ix->r], *O = v[ix->o];
	float *restrict q = sc, *restrict t = sc + dim;
	float *restrict X = sc + 2 * dim, *restrict Y = sc + 3 * dim;
	float *gs, *gr, *go;
	float f, cpos, lsum, rsum = 0;

	memset(g, 0, (size_t)ix->n * dim * sizeof(float));
	for (uint32_t k = 0; k < h; k++) {
		q[k] = S[k] * R[k] - S[h + k] * R[h + k];
		q[h + k] = S[k] * R[h + k] + S[h + k] * R[k];
		t[k] = R[k] * O[k] + R[h + k] * O[h + k];
		t[h + k] = R[k] * O[h + k] - R[h + k] * O[k];
	}
	f = dotf(q, O, dim);
	cpos = sigmoidf(f) - 1.0f;
	lsum = softplusf(-f);
	for (uint32_t k = 0; k < dim; k++) {
		X[k] = cpos * O[k];
		Y[k] = 0.0f;
	}
	for (uint32_t j = 0; j < nneg; j++) { /* corrupted objects */
		const float *x = v[ix->on[j]];
		float *gx = g + (size_t)ix->on[j] * dim, c;

		f = dotf(q, x, dim);
		c = sigmoidf(f);
		lsum += softplusf(f);
		for (uint32_t k = 0; k < dim; k++) {
			X[k] += c * x[k];
			gx[k] += c * q[k];
		}
	}
	for (uint32_t j = 0; j < nneg; j++) { /* corrupted subjects */
		const float *y = v[ix->sn[j]];
		float *gy = g + (size_t)ix->sn[j] * dim, c;

		f = dotf(t, y, dim);
		c = sigmoidf(f);
		lsum += softplusf(f);
		for (uint32_t k = 0; k < dim; k++) {
			Y[k] += c * y[k];
			gy[k] += c * t[k];
		}
	}
	gs = g + (size_t)ix->s * dim;
	gr = g + (size_t)ix->r * dim;
	go = g + (size_t)ix->o * dim;
	for (uint32_t k = 0; k < h; k++) {
		const float sre = S[k], sim = S[h + k], rre = R[k],
			    rim = R[h + k], ore = O[k], oim = O[h + k];
		const float xre = X[k], xim = X[h + k];
		const float yre = Y[k], yim = Y[h + k];
		const float tre = yre + cpos * sre, tim = yim + cpos * sim;

		gs[k] += rre * xre + rim * xim + lambda * sre;
		gs[h + k] += rre * xim - rim * xre + lambda * sim;
		gr[k] += sre * xre + sim * xim + yre * ore + yim * oim +
			 lambda * rre;
		gr[h + k] += sre * xim - sim * xre + yre * oim - yim * ore +
			     lambda * rim;
		go[k] += rre * tre - rim * tim + lambda * ore;
		go[h + k] += rre * tim + rim * tre + lambda * oim;
	}
	rsum = dotf(S, S, dim) + dotf(R, R, dim) + dotf(O, O, dim);
	for (uint32_t i = 0; i < ix->n; i++) {
		const float *a = v[i] + dim, *gi = g + (size_t)i * dim;
		float *dx = delta + (size_t)i * vlen, *da = dx + dim;

		for (uint32_t k = 0; k < dim; k++) {
			float gk = gi[k], g2 = gk * gk;

			dx[k] = -lr * gk / sqrtf(a[k] + g2 + KGE_ADAGRAD_EPS);
			da[k] = g2;
		}
	}
	*bce += lsum;
	*reg += 0.5f * lambda * rsum;
}

/*
 * train_range() - the training loop, written once.  Always inlined into
 * each backend's instance (KGE_DEFINE_LOOPS) with that backend's primitives
 * as constants, so they inline too:
 *   pulln(w, keys, n, vlen, vals): make the values (vlen floats each) of
 *       keys[0..n) available at vals[i] (a copy, or the storage itself);
 *   pushn(w, keys, n, vlen, vals, delta): add delta (n values laid out one
 *       after the other) to the keys; vals is what pulln gave.
 * The D = 64 case gets its own copy with the dimension as a constant.
 */
static inline __attribute__((always_inline)) KGE_HOGWILD int
train_range(struct kge_worker *w, const struct kge_triple *t, size_t n,
	    const uint32_t *neg,
	    int (*pulln)(struct kge_worker *, const uint64_t *, uint32_t,
			 uint32_t, float **),
	    int (*pushn)(struct kge_worker *, const uint64_t *, uint32_t,
			 uint32_t, float **, const float *),
	    uint32_t dim)
{
	const struct kge_job *job = w->job;
	const uint32_t nneg = job->neg, ne = job->ne;
	const float lr = job->o->lr, lambda = job->o->reg;
	double bce = 0, reg = 0;
	struct kge_ix ix;

	for (size_t z = 0; z < n; z++) {
		int err;

		ix_build(&ix, w->keys, &t[z], neg + z * 2 * nneg, nneg, ne);
		err = pulln(w, w->keys, ix.n, 2 * dim, w->vals);
		if (unlikely(err))
			return err;
		kge_step(w->vals, &ix, nneg, lr, lambda, dim, w->grad,
			 w->scratch, w->delta, &bce, &reg);
		err = pushn(w, w->keys, ix.n, 2 * dim, w->vals, w->delta);
		if (unlikely(err))
			return err;
	}
	w->bce += bce;
	w->reg += reg;
	return 0;
}

/* The @j-th evaluation candidate of test triple @i: the same everywhere. */
static inline uint32_t eval_cand(uint64_t seed, uint64_t i, uint32_t j,
				 uint32_t ne)
{
	uint64_t s = mix64(seed * 0x9e3779b97f4a7c15ULL + 0x5ca1ab1eULL) ^
		     mix64(i * 0x2545f4914f6cdd1dULL + j);

	return (uint32_t)sm_below(&s, ne);
}

/*
 * eval_range() - rank test triples @idx[0..n) against the candidates (see
 * "Evaluation" above), instantiated like train_range().  Adds to @sums:
 * [0] reciprocal ranks, [1] hits@10, [2] ranks.
 */
static inline __attribute__((always_inline)) int
eval_range(struct kge_worker *w, const uint32_t *idx, size_t n, double *sums,
	   int (*pulln)(struct kge_worker *, const uint64_t *, uint32_t,
			uint32_t, float **),
	   uint32_t dim)
{
	const struct kge_job *job = w->job;
	const uint32_t C = job->o->eval_cands, h = dim / 2, ne = job->ne;
	const uint64_t seed = job->o->seed;
	float *restrict q = w->scratch, *restrict t = w->scratch + dim;
	uint64_t *keys = w->keys;
	double rr = 0, hits = 0;

	for (size_t z = 0; z < n; z++) {
		const struct kge_triple *x = &job->test[idx[z]];
		const float *S, *R, *O;
		float fo, fs;
		uint32_t ro = 1, rs = 1;
		int err;

		keys[0] = x->s;
		keys[1] = (uint64_t)ne + x->r;
		keys[2] = x->o;
		for (uint32_t j = 0; j < C; j++)
			keys[3 + j] = eval_cand(seed, idx[z], j, ne);
		err = pulln(w, keys, 3 + C, 2 * dim, w->vals);
		if (unlikely(err))
			return err;
		S = w->vals[0];
		R = w->vals[1];
		O = w->vals[2];
		for (uint32_t k = 0; k < h; k++) {
			q[k] = S[k] * R[k] - S[h + k] * R[h + k];
			q[h + k] = S[k] * R[h + k] + S[h + k] * R[k];
			t[k] = R[k] * O[k] + R[h + k] * O[h + k];
			t[h + k] = R[k] * O[h + k] - R[h + k] * O[k];
		}
		fo = dotf(q, O, dim);
		fs = dotf(t, S, dim);
		for (uint32_t j = 0; j < C; j++) {
			const float *c = w->vals[3 + j];

			if (keys[3 + j] != x->o && dotf(q, c, dim) > fo)
				ro++;
			if (keys[3 + j] != x->s && dotf(t, c, dim) > fs)
				rs++;
		}
		rr += 1.0 / ro + 1.0 / rs;
		hits += (ro <= 10) + (rs <= 10);
	}
	sums[0] += rr;
	sums[1] += hits;
	sums[2] += 2.0 * (double)n;
	return 0;
}

/* A backend's two loops, with a copy for D = 64 (the dimension a
 * constant). */
#define KGE_DEFINE_LOOPS(prefix, pulln, pushn, attr)                           \
	static attr int prefix##_train_range(struct kge_worker *w,             \
					     const struct kge_triple *t,       \
					     size_t n, const uint32_t *neg)    \
	{                                                                      \
		if (w->job->dim == 64)                                         \
			return train_range(w, t, n, neg, pulln, pushn, 64);    \
		return train_range(w, t, n, neg, pulln, pushn, w->job->dim);   \
	}                                                                      \
	static int prefix##_eval_range(                                        \
	    struct kge_worker *w, const uint32_t *idx, size_t n, double *sums) \
	{                                                                      \
		if (w->job->dim == 64)                                         \
			return eval_range(w, idx, n, sums, pulln, 64);         \
		return eval_range(w, idx, n, sums, pulln, w->job->dim);        \
	}

/* --- plain backend: float arrays, W threads, no store --------------------- */

static inline KGE_HOGWILD int plain_pull(struct kge_worker *w,
					 const uint64_t *keys, uint32_t n,
					 uint32_t vlen, float **vals)
{
	float *m = w->job->model;

	for (uint32_t i = 0; i < n; i++)
		vals[i] = m + keys[i] * vlen;
	return 0;
}

/* In place; the keys are distinct (ix_build), so no value is hit twice. */
static inline KGE_HOGWILD int plain_push(struct kge_worker *w,
					 const uint64_t *keys, uint32_t n,
					 uint32_t vlen, float **vals,
					 const float *restrict delta)
{
	for (uint32_t i = 0; i < n; i++) {
		float *restrict x = vals[i];
		const float *restrict d = delta + (size_t)i * vlen;

		for (uint32_t k = 0; k < vlen; k++)
			x[k] += d[k];
	}
	return 0;
}

KGE_DEFINE_LOOPS(plain, plain_pull, plain_push, KGE_HOGWILD)

static int plain_pulln(struct kge_worker *w, const uint64_t *keys, size_t n,
		       float *out)
{
	uint32_t vlen = w->job->vlen;

	for (size_t i = 0; i < n; i++)
		memcpy(out + i * vlen, w->job->model + keys[i] * vlen,
		       vlen * sizeof(float));
	return 0;
}

static int plain_pushn(struct kge_worker *w, const uint64_t *keys, size_t n,
		       const float *delta)
{
	uint32_t vlen = w->job->vlen;

	pthread_mutex_lock(&w->job->lock);
	for (size_t i = 0; i < n; i++)
		for (uint32_t k = 0; k < vlen; k++)
			w->job->model[keys[i] * vlen + k] +=
			    delta[i * vlen + k];
	pthread_mutex_unlock(&w->job->lock);
	return 0;
}

static int plain_nop(struct kge_worker *w)
{
	return 0;
}

static int plain_barrier(struct kge_worker *w)
{
	pthread_barrier_wait(&w->job->bar);
	return 0;
}

static const struct kge_backend plain_backend = {
    .name = "plain",
    .train_range = plain_train_range,
    .eval_range = plain_eval_range,
    .pulln = plain_pulln,
    .pushn = plain_pushn,
    .wait_sync = plain_nop,
    .barrier = plain_barrier,
};

/* --- augur backend -------------------------------------------------------- */

#ifndef KGE_NO_AUGUR
static inline int augur_pull_(struct kge_worker *w, const uint64_t *keys,
			      uint32_t n, uint32_t vlen, float **vals)
{
	for (uint32_t i = 0; i < n; i++)
		vals[i] = w->buf + (size_t)i * vlen;
	return augur_pull(w->aw, keys, n, w->buf, (size_t)n * vlen);
}

static inline int augur_push_(struct kge_worker *w, const uint64_t *keys,
			      uint32_t n, uint32_t vlen, float **vals,
			      const float *delta)
{
	return augur_push(w->aw, keys, n, delta, (size_t)n * vlen);
}

KGE_DEFINE_LOOPS(augur, augur_pull_, augur_push_, )

static int augur_pulln(struct kge_worker *w, const uint64_t *keys, size_t n,
		       float *out)
{
	return augur_pull(w->aw, keys, n, out, n * w->job->vlen);
}

static int augur_pushn(struct kge_worker *w, const uint64_t *keys, size_t n,
		       const float *delta)
{
	return augur_push(w->aw, keys, n, delta, n * w->job->vlen);
}

static int augur_intent_(struct kge_worker *w, const uint64_t *keys, size_t n,
			 int64_t start, int64_t end)
{
	return augur_intent(w->aw, keys, n, start, end);
}

static int augur_advance_clock_(struct kge_worker *w)
{
	return augur_advance_clock(w->aw);
}

static int augur_wait_sync_(struct kge_worker *w)
{
	return augur_wait_sync(w->aw);
}

static int augur_barrier_(struct kge_worker *w)
{
	return augur_barrier(w->aw);
}

static int augur_node_stats_(struct kge_worker *w, uint64_t *out)
{
	struct augur_stats st;
	int err = augur_stats(w->job->node, &st);

	if (err)
		return err;
	out[0] = st.pulls_local;
	out[1] = st.pulls_remote;
	out[2] = st.pushes_local;
	out[3] = st.pushes_remote;
	out[4] = st.torn_retries;
	out[5] = st.msgs_sent;
	out[6] = st.bytes_sent;
	out[7] = st.bytes_received;
	out[8] = st.updates_applied;
	out[9] = st.relocations;
	out[10] = st.replicas;
	out[11] = st.intents;
	out[12] = st.sync_rounds;
	return 0;
}

static int augur_status_(struct kge_worker *w)
{
	return augur_node_status(w->job->node);
}

static const struct kge_backend augur_backend = {
    .name = "augur",
    .train_range = augur_train_range,
    .eval_range = augur_eval_range,
    .pulln = augur_pulln,
    .pushn = augur_pushn,
    .intent = augur_intent_,
    .advance_clock = augur_advance_clock_,
    .wait_sync = augur_wait_sync_,
    .barrier = augur_barrier_,
    .node_stats = augur_node_stats_,
    .status = augur_status_,
};
#endif /* KGE_NO_AUGUR */

/* --- model initialisation (every node computes the same values) ----------- */

struct kge_init_arg {
	uint64_t model_keys; /* E + R */
	uint32_t dim;
	uint64_t seed;
	double std;
};

static void kge_init_key(uint64_t key, float *value, uint32_t len, void *arg)
{
	const struct kge_init_arg *ia = arg;
	uint64_t s = mix64(ia->seed * 0x2545f4914f6cdd1dULL + key);

	memset(value, 0, len * sizeof(float));
	if (key >= ia->model_keys)
		return; /* reduction slot */
	for (uint32_t k = 0; k < ia->dim && k < len; k += 2) {
		/* Box-Muller: two normals per pair of uniforms */
		double r = sqrt(-2.0 * log(sm_unif(&s)));
		double t = 2.0 * M_PI * sm_unif(&s);

		value[k] = (float)(ia->std * r * cos(t));
		if (k + 1 < ia->dim)
			value[k + 1] = (float)(ia->std * r * sin(t));
	}
}

/* --- reading .del files --------------------------------------------------- */

static int del_fail(const char *path, unsigned long line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kge-train: %s:%lu: ", path, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

static inline const char *skip_blank(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static inline const char *parse_uint(const char *p, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = p;

	while (*p >= '0' && *p <= '9' && p - s < 19)
		v = v * 10 + (uint64_t)(*p++ - '0');
	if (p == s || (*p >= '0' && *p <= '9'))
		return NULL;
	*out = v;
	return p;
}

/* The whole file, NUL-terminated; -ENOENT quietly if @optional. */
static int slurp(const char *path, char **out, size_t *len, int optional)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (!(optional && err == -ENOENT))
			fprintf(stderr, "kge-train: %s: %s\n", path,
				strerror(-err));
		return err;
	}
	if (fstat(fd, &st)) {
		err = -errno;
		close(fd);
		fprintf(stderr, "kge-train: %s: %s\n", path, strerror(-err));
		return err;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = r < 0 ? -errno : -EIO;
			free(buf);
			close(fd);
			fprintf(stderr, "kge-train: reading %s: %s\n", path,
				strerror(-err));
			return err;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	close(fd);
	*out = buf;
	*len = got;
	return 0;
}

/* The next non-blank line at *@pp: its start, or NULL at the end. */
static const char *next_line(const char **pp, unsigned long *lineno)
{
	const char *p = *pp, *q;

	for (;;) {
		if (!*p)
			return NULL;
		++*lineno;
		q = skip_blank(p);
		if (*q == '\n') {
			p = q + 1;
			continue;
		}
		if (!*q)
			return NULL;
		*pp = strchr(q, '\n');
		*pp = *pp ? *pp + 1 : q + strlen(q);
		return q;
	}
}

/*
 * del_read() - a libkge triples file: "s r o" per line, 0-based ids
 * separated by tabs (or blanks); blank lines are skipped.  Ids must be
 * below 2^31.
 */
static int del_read(const char *path, struct del_file *d, int optional)
{
	char *buf = NULL;
	const char *p, *q;
	unsigned long lineno = 0;
	uint64_t cap = 0;
	size_t len;
	int err;

	memset(d, 0, sizeof(*d));
	err = slurp(path, &buf, &len, optional);
	if (err)
		return err;
	for (p = buf; *p; p++) /* an upper bound on the triples */
		cap += *p == '\n';
	d->t = malloc((cap + 1) * sizeof(*d->t));
	if (!d->t) {
		free(buf);
		return -ENOMEM;
	}
	p = buf;
	while ((q = next_line(&p, &lineno))) {
		uint64_t s, r, o;

		if (!(q = parse_uint(q, &s)) || !(*q == ' ' || *q == '\t') ||
		    !(q = parse_uint(skip_blank(q), &r)) ||
		    !(*q == ' ' || *q == '\t') ||
		    !(q = parse_uint(skip_blank(q), &o))) {
			err = del_fail(path, lineno,
				       "'s<TAB>r<TAB>o' (0-based ids) "
				       "expected");
			goto out_free;
		}
		q = skip_blank(q);
		if (*q && *q != '\n') {
			err = del_fail(path, lineno,
				       "trailing text after 's r o'");
			goto out_free;
		}
		if (s > INT32_MAX || r > INT32_MAX || o > INT32_MAX) {
			err = del_fail(path, lineno, "id above 2^31 - 1");
			goto out_free;
		}
		if (d->n == cap) { /* a last line without '\n' */
			struct kge_triple *nt =
			    realloc(d->t, (cap + 2) * sizeof(*d->t));

			if (!nt) {
				err = -ENOMEM;
				goto out_free;
			}
			d->t = nt;
			cap++;
		}
		d->t[d->n++] =
		    (struct kge_triple){(uint32_t)s, (uint32_t)r, (uint32_t)o};
		if (s + 1 > d->ne)
			d->ne = s + 1;
		if (o + 1 > d->ne)
			d->ne = o + 1;
		if (r + 1 > d->nr)
			d->nr = r + 1;
	}
	free(buf);
	return 0;

out_free:
	free(d->t);
	d->t = NULL;
	free(buf);
	return err;
}

/*
 * map_count() - libkge's entity_ids.del / relation_ids.del: "id<TAB>name"
 * lines; *@n = largest id + 1.  -ENOENT (quietly) if there is no file.
 */
static int map_count(const char *path, uint64_t *n)
{
	char *buf = NULL;
	const char *p, *q;
	unsigned long lineno = 0;
	size_t len;
	int err = slurp(path, &buf, &len, 1);

	if (err)
		return err;
	*n = 0;
	p = buf;
	while ((q = next_line(&p, &lineno))) {
		uint64_t id;

		if (!(q = parse_uint(q, &id)) ||
		    !(*q == '\t' || *q == ' ' || *q == '\n' || *q == '\r' ||
		      !*q)) {
			err = del_fail(path, lineno, "'id<TAB>name' expected");
			break;
		}
		if (id > INT32_MAX) {
			err = del_fail(path, lineno, "id above 2^31 - 1");
			break;
		}
		if (id + 1 > *n)
			*n = id + 1;
	}
	free(buf);
	return err;
}

/* --- partitioning --------------------------------------------------------- */

static void shuffle_triples(struct kge_triple *t, size_t n, uint64_t seed)
{
	uint64_t s = mix64(seed);

	for (size_t k = n; k > 1; k--) {
		size_t j = (size_t)sm_below(&s, k);
		struct kge_triple x = t[k - 1];

		t[k - 1] = t[j];
		t[j] = x;
	}
}

static void part_free(struct kge_part *pt)
{
	free(pt->train);
	free(pt->neg);
	free(pt->ikeys);
	free(pt->ilen);
	free(pt->evidx);
}

/*
 * build_parts() - worker g of G gets the training triples
 * [g N / G, (g + 1) N / G) of the file and the test triples i < M with
 * i mod G = g; keep those of this node's W workers.
 */
static int build_parts(struct kge_job *job)
{
	const struct kge_opts *o = job->o;
	const uint32_t B = o->block, nk = 3 + 2 * job->neg;
	const int K = job->be->intent ? o->intent_ahead : 0;
	uint64_t N = job->ntrain_total, G = (uint64_t)job->G;

	job->parts = calloc((size_t)job->W, sizeof(*job->parts));
	if (!job->parts)
		return -ENOMEM;
	for (int l = 0; l < job->W; l++) {
		struct kge_part *pt = &job->parts[l];
		uint64_t g = (uint64_t)job->rank * job->W + l;
		uint64_t lo = g * N / G, hi = (g + 1) * N / G;

		pt->ntrain = hi - lo;
		pt->train =
		    malloc((pt->ntrain ? pt->ntrain : 1) * sizeof(*pt->train));
		if (!pt->train)
			return -ENOMEM;
		memcpy(pt->train, job->all + lo,
		       pt->ntrain * sizeof(*pt->train));
		pt->nblocks = (uint32_t)((pt->ntrain + B - 1) / B);
		pt->ring = (uint32_t)K + 1;
		pt->neg = malloc(
		    (size_t)pt->ring * B * 2 * job->neg * sizeof(*pt->neg) + 1);
		pt->nrng =
		    mix64(o->seed * 0x9e3779b97f4a7c15ULL + 0xbadc0ffeULL + g);
		if (!pt->neg)
			return -ENOMEM;
		if (K > 0) {
			pt->ikeys = malloc((size_t)pt->ring * B * nk *
					   sizeof(*pt->ikeys));
			pt->ilen = calloc(pt->ring, sizeof(*pt->ilen));
			if (!pt->ikeys || !pt->ilen)
				return -ENOMEM;
		}
		pt->evidx =
		    malloc((job->neval_total / G + 1) * sizeof(*pt->evidx));
		if (!pt->evidx)
			return -ENOMEM;
		for (uint64_t i = g; i < job->neval_total; i += G)
			pt->evidx[pt->neval++] = (uint32_t)i;
	}
	return 0;
}

/* --- reductions through reserved keys ------------------------------------- */

static void slot_push(struct kge_worker *w, uint64_t key0, const float *vec,
		      uint32_t len)
{
	struct kge_job *job = w->job;
	size_t nk = job->slot_keys;

	memset(w->slot, 0, nk * job->vlen * sizeof(float));
	memcpy(w->slot, vec, len * sizeof(float));
	for (size_t i = 0; i < nk; i++)
		w->slot_keys[i] = key0 + i;
	CHECK(w, job->be->pushn(w, w->slot_keys, nk, w->slot), "push (reduce)");
}

static void slot_pull(struct kge_worker *w, uint64_t key0, float *vec,
		      uint32_t len)
{
	struct kge_job *job = w->job;
	size_t nk = job->slot_keys;

	for (size_t i = 0; i < nk; i++)
		w->slot_keys[i] = key0 + i;
	CHECK(w, job->be->pulln(w, w->slot_keys, nk, w->slot), "pull (reduce)");
	memcpy(vec, w->slot, len * sizeof(float));
}

/* A double as a float pair (hi, lo): near-double precision in sums. */
static void put2(float *v, double x)
{
	v[0] = (float)x;
	v[1] = (float)(x - (double)v[0]);
}

static double get2(const float *v)
{
	return (double)v[0] + (double)v[1];
}

static void check_status(struct kge_worker *w)
{
	if (w->job->be->status)
		CHECK(w, w->job->be->status(w), "node status");
}

static void sync_all(struct kge_worker *w)
{
	CHECK(w, w->job->be->wait_sync(w), "wait_sync");
	CHECK(w, w->job->be->barrier(w), "barrier");
	check_status(w);
}

/* --- progress bar (worker 0, only on a terminal) -------------------------- */

static void progress(struct kge_worker *w, int epoch, size_t done, double t)
{
	const struct kge_part *pt = w->part;
	double frac = pt->ntrain ? (double)done / (double)pt->ntrain : 1.0;
	char bar[41];
	int fill = (int)(frac * 40.0);

	for (int i = 0; i < 40; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[40] = '\0';
	fprintf(stderr,
		"\r  epoch %d/%d [%s] %3d%%  %.1f k triples/s (worker 0)",
		epoch, w->job->o->epochs, bar, (int)(frac * 100.0),
		t > 0 ? 1e-3 * (double)done / t : 0.0);
	fflush(stderr);
}

/* --- one epoch ------------------------------------------------------------ */

static inline size_t block_len(const struct kge_part *pt, uint32_t B,
			       uint32_t f)
{
	size_t lo = (size_t)f * B;

	return pt->ntrain - lo < B ? pt->ntrain - lo : B;
}

/*
 * prepare_block() - draw the negatives of block @f into its ring slot and,
 * with intents, signal every key use of the block for clock c0 + f.
 */
static void prepare_block(struct kge_worker *w, uint32_t f, int64_t c0)
{
	struct kge_job *job = w->job;
	struct kge_part *pt = w->part;
	const uint32_t B = job->o->block, nn = 2 * job->neg, ne = job->ne;
	const uint32_t slot = f % pt->ring;
	const size_t n = block_len(pt, B, f);
	uint32_t *neg = pt->neg + (size_t)slot * B * nn;
	const struct kge_triple *t = pt->train + (size_t)f * B;
	uint64_t *ik;
	size_t m = 0;

	for (size_t z = 0; z < n * nn; z++)
		neg[z] = (uint32_t)sm_below(&pt->nrng, ne);
	if (!pt->ikeys)
		return;
	/* one intent per use, duplicates kept (lib/planner.h: a key used
	 * once is not worth moving, one used twice is) */
	ik = pt->ikeys + (size_t)slot * B * (3 + nn);
	for (size_t z = 0; z < n; z++) {
		ik[m++] = t[z].s;
		ik[m++] = (uint64_t)ne + t[z].r;
		ik[m++] = t[z].o;
	}
	for (size_t z = 0; z < n * nn; z++)
		ik[m++] = neg[z];
	pt->ilen[slot] = m;
	if (m)
		CHECK(w, job->be->intent(w, ik, m, c0 + f, c0 + f + 1),
		      "intent");
}

static void train_epoch(struct kge_worker *w, int epoch)
{
	struct kge_job *job = w->job;
	const struct kge_backend *be = job->be;
	struct kge_part *pt = w->part;
	const uint32_t B = job->o->block, nn = 2 * job->neg;
	const uint32_t K = pt->ring - 1;
	const int leader = w->lid == 0 && be->node_stats;
	size_t done = 0;
	double tlast = 0;
	int64_t c0;

	/* preparation, not timed */
	shuffle_triples(pt->train, pt->ntrain,
			job->o->seed * 1000003 + (uint64_t)w->gid * 131 +
			    (uint64_t)epoch * 7777);
	w->bce = w->reg = 0;
	if (leader)
		CHECK(w, be->node_stats(w, w->snap), "stats");

	CHECK(w, be->barrier(w), "barrier");
	check_status(w);
	if (w->reporter)
		w->t0 = now_s();
	c0 = w->clock;
	for (uint32_t f = 0; f < K && f < pt->nblocks; f++)
		prepare_block(w, f, c0);
	for (uint32_t f = 0; f < pt->nblocks; f++) {
		size_t n = block_len(pt, B, f);

		if (f + K < pt->nblocks)
			prepare_block(w, f + K, c0);
		CHECK(
		    w,
		    be->train_range(w, pt->train + (size_t)f * B, n,
				    pt->neg + (size_t)(f % pt->ring) * B * nn),
		    "pull/push");
		if (be->advance_clock)
			CHECK(w, be->advance_clock(w), "advance_clock");
		w->clock++;
		check_status(w);
		if (job->progress && w->reporter) {
			done += n;
			if ((f & 15) == 15) {
				double t = now_s() - w->t0;

				if (t - tlast > 0.1) {
					tlast = t;
					progress(w, epoch, done, t);
				}
			}
		}
	}
	sync_all(w);
	if (w->reporter) {
		w->t1 = now_s();
		if (job->progress)
			fprintf(stderr, "\r\033[K");
	}
	if (leader) {
		uint64_t cur[NSTATS];

		CHECK(w, be->node_stats(w, cur), "stats");
		for (size_t i = 0; i < NSTATS; i++)
			job->train_stats[i] += cur[i] - w->snap[i];
		/* the others wait for the snapshot before they evaluate */
		pthread_barrier_wait(&job->bar);
	} else if (be->node_stats) {
		pthread_barrier_wait(&job->bar);
	}
}

/* Evaluate, reduce loss and ranks through the epoch's slot, report. */
static void evaluate(struct kge_worker *w, int epoch)
{
	struct kge_job *job = w->job;
	const struct kge_backend *be = job->be;
	const struct kge_part *pt = w->part;
	const uint64_t key = job->key_loss + (uint64_t)epoch * job->slot_keys;
	double sums[3] = {0};
	float vec[SL_N];

	CHECK(w, be->eval_range(w, pt->evidx, pt->neval, sums), "pull");
	check_status(w);
	put2(vec + SL_BCE_HI, w->bce);
	put2(vec + SL_REG_HI, w->reg);
	put2(vec + SL_RR_HI, sums[0]);
	vec[SL_HITS10] = (float)sums[1];
	vec[SL_RANKS] = (float)sums[2];
	slot_push(w, key, vec, SL_N);
	sync_all(w);
	if (w->reporter) {
		double secs = epoch ? w->t1 - w->t0 : 0, ex, loss, mrr, h10;

		slot_pull(w, key, vec, SL_N);
		ex = (double)job->ntrain_total * (1.0 + 2.0 * job->neg);
		loss = (get2(vec + SL_BCE_HI) + get2(vec + SL_REG_HI)) / ex;
		mrr = vec[SL_RANKS] > 0
			  ? get2(vec + SL_RR_HI) / (double)vec[SL_RANKS]
			  : NAN;
		h10 = vec[SL_RANKS] > 0
			  ? (double)vec[SL_HITS10] / (double)vec[SL_RANKS]
			  : NAN;
		job->loss[epoch] = loss;
		job->mrr[epoch] = mrr;
		job->hits10[epoch] = h10;
		job->secs[epoch] = secs;
		if (epoch == 0)
			printf("%5s %11s %9s %11s %9s %12s\n", "epoch",
			       "train_loss", "test_mrr", "test_hits10",
			       "time_s", "ktriples/s");
		printf("%5d ", epoch);
		if (epoch)
			printf("%11.6f ", loss);
		else
			printf("%11s ", "-");
		if (vec[SL_RANKS] > 0)
			printf("%9.4f %11.4f ", mrr, h10);
		else
			printf("%9s %11s ", "-", "-");
		if (epoch)
			printf("%9.3f %12.1f\n", secs,
			       secs > 0
				   ? 1e-3 * (double)job->ntrain_total / secs
				   : 0.0);
		else
			printf("%9s %12s\n", "-", "-");
		fflush(stdout);
	}
}

/* Sum the nodes' training counters through the stats slot; print them. */
static void report_stats(struct kge_worker *w)
{
	struct kge_job *job = w->job;
	float limbs[NSTATS * 4];
	uint64_t tot[NSTATS];
	double pts;

	/* 16-bit limbs: exact in float when summed over up to 256 nodes */
	if (w->lid == 0) {
		for (size_t i = 0; i < NSTATS; i++)
			for (int l = 0; l < 4; l++)
				limbs[i * 4 + l] =
				    (float)((job->train_stats[i] >> (16 * l)) &
					    0xffff);
		slot_push(w, job->key_stats, limbs, NSTATS * 4);
	}
	sync_all(w);
	if (!w->reporter)
		return;
	slot_pull(w, job->key_stats, limbs, NSTATS * 4);
	for (size_t i = 0; i < NSTATS; i++) {
		tot[i] = 0;
		for (int l = 0; l < 4; l++)
			tot[i] += (uint64_t)limbs[i * 4 + l] << (16 * l);
	}
	pts = (double)job->ntrain_total * job->o->epochs;
	printf("store counters over the training phases, all %d nodes "
	       "(evaluation excluded):\n",
	       job->nnodes);
	for (size_t i = 0; i < NSTATS; i++)
		printf("  %-16s %14" PRIu64 "\n", stat_names[i], tot[i]);
	printf("  local pulls      %13.2f%%\n",
	       tot[0] + tot[1]
		   ? 100.0 * (double)tot[0] / (double)(tot[0] + tot[1])
		   : 0.0);
	printf("  local pushes     %13.2f%%\n",
	       tot[2] + tot[3]
		   ? 100.0 * (double)tot[2] / (double)(tot[2] + tot[3])
		   : 0.0);
	printf("  keys pulled per triple        %.2f\n",
	       pts > 0 ? (double)(tot[0] + tot[1]) / pts : 0.0);
	printf("  bytes sent per triple         %.2f\n",
	       pts > 0 ? (double)tot[6] / pts : 0.0);
	printf("  bytes received per triple     %.2f\n",
	       pts > 0 ? (double)tot[7] / pts : 0.0);
}

static void *worker_main(void *arg)
{
	struct kge_worker *w = arg;
	struct kge_job *job = w->job;
	const struct kge_opts *o = job->o;

#ifndef KGE_NO_AUGUR
	if (job->node) {
		CHECK(w, augur_worker_create(job->node, &w->aw),
		      "augur_worker_create");
		w->gid = augur_worker_id(w->aw);
		w->lid = w->gid - job->rank * job->W;
		if (w->lid < 0 || w->lid >= job->W) {
			fprintf(stderr,
				"kge-train: node %d: worker id %d is "
				"not in [%d, %d)\n",
				job->rank, w->gid, job->rank * job->W,
				(job->rank + 1) * job->W);
			_exit(1);
		}
	} else
#endif
	{
		w->gid = w->lid = w->tid;
	}
	pthread_mutex_lock(&job->claim_lock);
	if (job->claimed[w->lid]++) {
		pthread_mutex_unlock(&job->claim_lock);
		fprintf(stderr, "kge-train: node %d: two workers got id %d\n",
			job->rank, w->gid);
		_exit(1);
	}
	pthread_mutex_unlock(&job->claim_lock);
	w->part = &job->parts[w->lid];
	w->reporter = w->gid == 0;

	evaluate(w, 0);
	for (int e = 1; e <= o->epochs; e++) {
		train_epoch(w, e);
		evaluate(w, e);
	}
	if (job->be->node_stats)
		report_stats(w);
#ifndef KGE_NO_AUGUR
	augur_worker_destroy(w->aw);
	w->aw = NULL;
#endif
	return NULL;
}

/* --- main ----------------------------------------------------------------- */

/* clang-format off */
static void usage(FILE *f)
{
	fprintf(f,
"usage: kge-train DIR [options]\n"
"Knowledge graph embeddings (ComplEx, negative sampling, AdaGrad) on augur\n"
"(or on plain arrays).  DIR holds train.del and test.del (libkge layout).\n"
"  --dim D              embedding size in real numbers, even: D/2 complex\n"
"                       (default 64)\n"
"  --neg N              negatives per side and triple (default 6)\n"
"  --epochs N           epochs (default 3)\n"
"  --lr F               AdaGrad step size (default 0.1)\n"
"  --reg F              L2 regularisation lambda (default 0.01)\n"
"  --workers W          worker threads per node (default 1)\n"
"  --intent-ahead K     draw negatives and signal intents K blocks ahead\n"
"                       (default 8; 0: no intents)\n"
"  --block N            triples per block = per clock (default 128)\n"
"  --backend augur|plain  the parameter store, or plain in-memory arrays\n"
"                       with no store (the ceiling; default augur, or\n"
"                       plain in a build without the augur backend)\n"
"  --mode adaptive|static|replicate|relocate  augur management (default\n"
"                       adaptive)\n"
"  --seed N             initialisation, order, negatives (default 1)\n"
"  --init-scale S       initial embeddings N(0, S^2) (default 0.1)\n"
"  --eval-triples M     test triples ranked per epoch (default 1000)\n"
"  --eval-cands C       random candidates per test triple (default 100)\n"
"  --entities N, --relations N  counts (default: entity_ids.del and\n"
"                       relation_ids.del, else the largest ids + 1)\n"
"  --check-decrease     exit 1 unless the last epoch's training loss is\n"
"                       below the first epoch's (needs --epochs >= 2)\n"
"  --no-progress        no progress bar (it is drawn only on a terminal)\n"
"Run on N nodes of this host with: augur-run -n N kge-train DIR ...\n");
}
/* clang-format on */

static int parse_opts(int argc, char **argv, struct kge_opts *o)
{
	static const struct option lopts[] = {
	    {"dim", required_argument, NULL, 'd'},
	    {"neg", required_argument, NULL, 'n'},
	    {"epochs", required_argument, NULL, 'e'},
	    {"lr", required_argument, NULL, 'l'},
	    {"reg", required_argument, NULL, 'g'},
	    {"workers", required_argument, NULL, 'w'},
	    {"intent-ahead", required_argument, NULL, 'k'},
	    {"block", required_argument, NULL, 'b'},
	    {"backend", required_argument, NULL, 'B'},
	    {"mode", required_argument, NULL, 'm'},
	    {"seed", required_argument, NULL, 's'},
	    {"init-scale", required_argument, NULL, 'i'},
	    {"eval-triples", required_argument, NULL, 'T'},
	    {"eval-cands", required_argument, NULL, 'C'},
	    {"entities", required_argument, NULL, 'E'},
	    {"relations", required_argument, NULL, 'R'},
	    {"check-decrease", no_argument, NULL, 'c'},
	    {"no-progress", no_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		char *end = NULL;
		long long v = 0;
		double d = 0;

		if (optarg && c != 'B' && c != 'm') { /* a number */
			errno = 0;
			if (c == 'l' || c == 'g' || c == 'i')
				d = strtod(optarg, &end);
			else
				v = strtoll(optarg, &end, 10);
			if (errno || end == optarg)
				goto bad;
		}
		switch (c) {
		case 'd': /* value_len = 2 dim <= 8000 */
			if (*end || v < 2 || v > 4000 || v % 2)
				goto bad;
			o->dim = (uint32_t)v;
			continue;
		case 'n':
			if (*end || v < 0 || v > KGE_MAX_NEG)
				goto bad;
			o->neg = (uint32_t)v;
			continue;
		case 'e':
			if (*end || v < 1 || v > 100000)
				goto bad;
			o->epochs = (int)v;
			continue;
		case 'l':
			if (*end || !(d > 0) || !isfinite(d))
				goto bad;
			o->lr = (float)d;
			continue;
		case 'g':
			if (*end || !(d >= 0) || !isfinite(d))
				goto bad;
			o->reg = (float)d;
			continue;
		case 'w':
			if (*end || v < 1 || v > KGE_MAX_WORKERS)
				goto bad;
			o->workers = (int)v;
			continue;
		case 'k':
			if (*end || v < 0 || v > 1000000)
				goto bad;
			o->intent_ahead = (int)v;
			continue;
		case 'b':
			if (*end || v < 1 || v > 1000000)
				goto bad;
			o->block = (uint32_t)v;
			continue;
		case 'B':
			if (!strcmp(optarg, "plain"))
				o->backend = BACKEND_PLAIN;
			else if (!strcmp(optarg, "augur"))
				o->backend = BACKEND_AUGUR;
			else
				goto bad;
			continue;
		case 'm':
#ifndef KGE_NO_AUGUR
			if (!strcmp(optarg, "adaptive"))
				o->mode = AUGUR_MODE_ADAPTIVE;
			else if (!strcmp(optarg, "static"))
				o->mode = AUGUR_MODE_STATIC;
			else if (!strcmp(optarg, "replicate"))
				o->mode = AUGUR_MODE_REPLICATE;
			else if (!strcmp(optarg, "relocate"))
				o->mode = AUGUR_MODE_RELOCATE;
			else
				goto bad;
#endif
			continue;
		case 's':
			if (*end || v < 0)
				goto bad;
			o->seed = (uint64_t)v;
			continue;
		case 'i':
			if (*end || !(d > 0) || !isfinite(d))
				goto bad;
			o->init_scale = d;
			continue;
		case 'T':
			if (*end || v < 0 || v > INT32_MAX)
				goto bad;
			o->eval_triples = (uint32_t)v;
			continue;
		case 'C':
			if (*end || v < 1 || v > KGE_MAX_CANDS)
				goto bad;
			o->eval_cands = (uint32_t)v;
			continue;
		case 'E':
			if (*end || v < 1 || v > INT32_MAX)
				goto bad;
			o->entities = (uint64_t)v;
			continue;
		case 'R':
			if (*end || v < 1 || v > INT32_MAX)
				goto bad;
			o->relations = (uint64_t)v;
			continue;
		case 'c':
			o->check_decrease = 1;
			continue;
		case 'P':
			o->progress = 0;
			continue;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	bad:
		for (const struct option *lo = lopts; lo->name; lo++)
			if (lo->val == c)
				fprintf(stderr,
					"kge-train: bad value '%s' for "
					"--%s\n",
					optarg, lo->name);
		return -EINVAL;
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return -EINVAL;
	}
	o->dir = argv[optind];
	if (o->check_decrease && o->epochs < 2) {
		fprintf(stderr, "kge-train: --check-decrease compares the "
				"first and the last epoch: it needs --epochs "
				">= 2\n");
		return -EINVAL;
	}
#ifdef KGE_NO_AUGUR
	if (o->backend == BACKEND_AUGUR) {
		fprintf(stderr, "kge-train: built without the augur backend "
				"(KGE_NO_AUGUR): use --backend plain\n");
		return -EINVAL;
	}
#endif
	return 0;
}

static char *path_in(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	if (p)
		snprintf(p, len, "%s/%s", dir, name);
	return p;
}

/*
 * load_data() - train.del (required), test.del (optional), and the entity
 * and relation counts; checks every id against them.
 */
static int load_data(struct kge_job *job, const struct kge_opts *o)
{
	char *ptr = path_in(o->dir, "train.del");
	char *pte = path_in(o->dir, "test.del");
	char *pem = path_in(o->dir, "entity_ids.del");
	char *prm = path_in(o->dir, "relation_ids.del");
	struct del_file tr = {0}, te = {0};
	uint64_t ne = 0, nr = 0;
	int err = -ENOMEM;

	if (!ptr || !pte || !pem || !prm)
		goto out;
	err = del_read(ptr, &tr, 0);
	if (err)
		goto out;
	if (!tr.n) {
		fprintf(stderr, "kge-train: %s holds no triples\n", ptr);
		err = -EINVAL;
		goto out;
	}
	err = del_read(pte, &te, 1);
	if (err == -ENOENT)
		err = 0;
	if (err)
		goto out;
	ne = tr.ne > te.ne ? tr.ne : te.ne;
	nr = tr.nr > te.nr ? tr.nr : te.nr;
	if (o->entities) {
		ne = o->entities;
	} else {
		err = map_count(pem, &ne);
		if (err == -ENOENT)
			err = 0;
		if (err)
			goto out;
	}
	if (o->relations) {
		nr = o->relations;
	} else {
		err = map_count(prm, &nr);
		if (err == -ENOENT)
			err = 0;
		if (err)
			goto out;
	}
	if (tr.ne > ne || te.ne > ne || tr.nr > nr || te.nr > nr) {
		fprintf(stderr,
			"kge-train: %s: the triples use %" PRIu64
			" entities and %" PRIu64 " relations, more than the "
			"%" PRIu64 " and %" PRIu64 " declared\n",
			o->dir, tr.ne > te.ne ? tr.ne : te.ne,
			tr.nr > te.nr ? tr.nr : te.nr, ne, nr);
		err = -EINVAL;
		goto out;
	}
	if (ne + nr >= (1ULL << 32)) {
		fprintf(stderr, "kge-train: too many entities and relations\n");
		err = -EINVAL;
		goto out;
	}
	job->ne = (uint32_t)ne;
	job->nr = (uint32_t)nr;
	job->all = tr.t;
	job->ntrain_total = tr.n;
	job->test = te.t;
	job->ntest = te.n;
	tr.t = te.t = NULL;
	err = 0;
out:
	if (err == -ENOMEM)
		fprintf(stderr, "kge-train: out of memory reading %s\n",
			o->dir);
	free(tr.t);
	free(te.t);
	free(ptr);
	free(pte);
	free(pem);
	free(prm);
	return err;
}

int main(int argc, char **argv)
{
	struct kge_opts o = {
	    .dim = 64,
	    .neg = 6,
	    .epochs = 3,
	    .lr = 0.1f,
	    .reg = 0.01f,
	    .backend = KGE_DEFAULT_BACKEND,
	    .workers = 1,
	    .intent_ahead = 8,
	    .block = 128,
	    .seed = 1,
	    .progress = 1,
	    .init_scale = 0.1,
	    .eval_triples = 1000,
	    .eval_cands = 100,
	};
	struct kge_job job = {0};
	struct kge_worker *ws = NULL;
	struct kge_init_arg ia;
	int err, ret = 1, nthreads = 0, bar_ok = 0;
	double t_load;

	if (parse_opts(argc, argv, &o))
		return 2;
	job.o = &o;
	job.W = o.workers;
	job.dim = o.dim;
	job.vlen = 2 * o.dim;
	job.neg = o.neg;
	job.nkeys_max =
	    3 + (2 * o.neg > o.eval_cands ? 2 * o.neg : o.eval_cands);
	pthread_mutex_init(&job.lock, NULL);
	pthread_mutex_init(&job.claim_lock, NULL);

	/* the data, and from it the key space */
	t_load = now_s();
	err = load_data(&job, &o);
	if (err)
		goto out;
	t_load = now_s() - t_load;
	job.neval_total =
	    o.eval_triples < job.ntest ? o.eval_triples : job.ntest;
	job.slot_keys = (KGE_SLOT_FLOATS + job.vlen - 1) / job.vlen;
	job.key_loss = (uint64_t)job.ne + job.nr;
	job.key_stats = job.key_loss + (uint64_t)(o.epochs + 1) * job.slot_keys;
	job.num_keys = job.key_stats + job.slot_keys;
	ia = (struct kge_init_arg){.model_keys = job.key_loss,
				   .dim = o.dim,
				   .seed = o.seed,
				   .std = o.init_scale};

	if (o.backend == BACKEND_PLAIN) {
		job.be = &plain_backend;
		job.rank = 0;
		job.nnodes = 1;
		job.model = aligned_alloc(
		    64,
		    ((job.num_keys * job.vlen * sizeof(float)) + 63) & ~63ULL);
		if (!job.model) {
			err = -ENOMEM;
			fprintf(stderr,
				"kge-train: out of memory for the model "
				"(%" PRIu64 " keys)\n",
				job.num_keys);
			goto out;
		}
		for (uint64_t k = 0; k < job.num_keys; k++)
			kge_init_key(k, job.model + k * job.vlen, job.vlen,
				     &ia);
	} else {
#ifndef KGE_NO_AUGUR
		struct augur_config cfg = {
		    .num_keys = job.num_keys,
		    .value_len = job.vlen,
		    .num_workers = (uint32_t)o.workers,
		    .init = kge_init_key,
		    .init_arg = &ia,
		    .mode = o.mode,
		};

		job.be = &augur_backend;
		err = augur_node_start(&cfg, &job.node);
		if (err) {
			fprintf(stderr,
				"kge-train: augur_node_start failed: "
				"%s (%s)\n",
				augur_strerror(err), augur_last_error());
			goto out;
		}
		job.rank = augur_node_rank(job.node);
		job.nnodes = augur_node_size(job.node);
#endif
	}
	job.G = job.nnodes * job.W;

	err = build_parts(&job);
	if (err) {
		fprintf(stderr, "kge-train: out of memory partitioning the "
				"data\n");
		goto out;
	}
	free(job.all);
	job.all = NULL;

	job.loss = calloc((size_t)o.epochs + 1, sizeof(double));
	job.mrr = calloc((size_t)o.epochs + 1, sizeof(double));
	job.hits10 = calloc((size_t)o.epochs + 1, sizeof(double));
	job.secs = calloc((size_t)o.epochs + 1, sizeof(double));
	ws = aligned_alloc(64, (size_t)job.W * sizeof(*ws));
	if (!job.loss || !job.mrr || !job.hits10 || !job.secs || !ws) {
		err = -ENOMEM;
		goto out;
	}
	memset(ws, 0, (size_t)job.W * sizeof(*ws));
	job.progress = o.progress && isatty(STDERR_FILENO);
	if (pthread_barrier_init(&job.bar, NULL, (unsigned)job.W)) {
		err = -ENOMEM;
		goto out;
	}
	bar_ok = 1;
	if (job.rank == 0) {
		printf("kge-train: backend %s, %d node%s x %d worker%s, "
		       "ComplEx dim %u (%u complex), %u negatives per side, "
		       "lr %g, reg %g, block %u, intent-ahead %d\n",
		       job.be->name, job.nnodes, job.nnodes > 1 ? "s" : "",
		       job.W, job.W > 1 ? "s" : "", o.dim, o.dim / 2, o.neg,
		       (double)o.lr, (double)o.reg, o.block,
		       job.be->intent ? o.intent_ahead : 0);
		printf("kge-train: %s: %u entities, %u relations, %" PRIu64
		       " training triples, %" PRIu64 " test triples (%" PRIu64
		       " ranked against %u candidates), read in %.2f s\n",
		       o.dir, job.ne, job.nr, job.ntrain_total, job.ntest,
		       job.neval_total, o.eval_cands, t_load);
		fflush(stdout);
	}

	for (int t = 0; t < job.W; t++) {
		struct kge_worker *w = &ws[t];
		size_t vb = (size_t)job.vlen * sizeof(float);
		size_t sl = job.slot_keys * vb;

		w->job = &job;
		w->tid = t;
		w->vals = calloc(job.nkeys_max, sizeof(*w->vals));
		w->keys = calloc(job.nkeys_max, sizeof(*w->keys));
		w->buf =
		    aligned_alloc(64, (job.nkeys_max * vb + 63) & ~(size_t)63);
		w->grad = aligned_alloc(64, (KGE_MAX_KEYS * vb / 2 + 63) &
						~(size_t)63);
		w->delta =
		    aligned_alloc(64, (KGE_MAX_KEYS * vb + 63) & ~(size_t)63);
		w->scratch = aligned_alloc(64, (2 * vb + 63) & ~(size_t)63);
		w->slot = aligned_alloc(64, (sl + 63) & ~(size_t)63);
		w->slot_keys = calloc(job.slot_keys, sizeof(uint64_t));
		if (!w->vals || !w->keys || !w->buf || !w->grad || !w->delta ||
		    !w->scratch || !w->slot || !w->slot_keys) {
			err = -ENOMEM;
			fprintf(stderr, "kge-train: out of memory\n");
			goto out_join;
		}
		err = -pthread_create(&w->thread, NULL, worker_main, w);
		if (err) {
			fprintf(stderr, "kge-train: pthread_create: %s\n",
				strerror(-err));
			goto out_join;
		}
		nthreads++;
	}
	ret = 0;
out_join:
	/* a worker that fails ends the process, so joining cannot hang for
	 * long; if a thread could not be started, the others would wait in
	 * the first barrier forever: exit instead */
	if (ret) {
		fflush(stdout);
		_exit(1);
	}
	for (int t = 0; t < nthreads; t++)
		pthread_join(ws[t].thread, NULL);

	if (job.rank == 0) {
		double sum_s = 0;
		int E = o.epochs;

		for (int e = 1; e <= E; e++)
			sum_s += job.secs[e];
		printf("RESULT backend=%s nodes=%d workers=%d dim=%u neg=%u "
		       "epochs=%d triples_per_s=%.0f loss=%.6f mrr=%.4f "
		       "hits10=%.4f\n",
		       job.be->name, job.nnodes, job.W, o.dim, o.neg, E,
		       sum_s > 0 ? (double)job.ntrain_total * E / sum_s : 0.0,
		       job.loss[E], job.mrr[E], job.hits10[E]);
		if (o.check_decrease) {
			if (!(job.loss[E] < job.loss[1])) {
				fprintf(stderr,
					"kge-train: check-decrease failed: "
					"training loss %.6f in epoch %d is not "
					"below %.6f in epoch 1\n",
					job.loss[E], E, job.loss[1]);
				ret = 1;
			} else {
				printf("kge-train: check-decrease passed: "
				       "%.6f -> %.6f\n",
				       job.loss[1], job.loss[E]);
			}
		}
	}
	err = 0;
out:
#ifndef KGE_NO_AUGUR
	if (job.node) {
		int serr = augur_node_stop(job.node);

		if (serr && !err) {
			fprintf(stderr, "kge-train: augur_node_stop: %s (%s)\n",
				augur_strerror(serr), augur_last_error());
			ret = 1;
		}
	}
#endif
	if (err)
		ret = 1;
	if (ws)
		for (int t = 0; t < job.W; t++) {
			free(ws[t].vals);
			free(ws[t].keys);
			free(ws[t].buf);
			free(ws[t].grad);
			free(ws[t].delta);
			free(ws[t].scratch);
			free(ws[t].slot);
			free(ws[t].slot_keys);
		}
	free(ws);
	if (job.parts)
		for (int l = 0; l < job.W; l++)
			part_free(&job.parts[l]);
	free(job.parts);
	free(job.loss);
	free(job.mrr);
	free(job.hits10);
	free(job.secs);
	free(job.model);
	free(job.all);
	free(job.test);
	if (bar_ok)
		pthread_barrier_destroy(&job.bar);
	pthread_mutex_destroy(&job.lock);
	pthread_mutex_destroy(&job.claim_lock);
	return ret;
}
