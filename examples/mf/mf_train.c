// SPDX-License-Identifier: MIT
/*
 * examples/mf/mf_train.c - mf-train: matrix factorization by AdaGrad SGD on
 * augur (or, with --backend plain, on plain in-memory arrays).
 *
 * Data: a MatrixMarket coordinate file (the format AdaPM's MF app reads;
 * mf-gen writes it), 1-based "i j v" lines, optionally a test file of the
 * same shape.  Every process reads the whole file and keeps the points of
 * its own workers.
 *
 * Model: key i in [0, rows) is row i's factor, key rows + j column j's;
 * each value is 2 * rank floats, [factor | AdaGrad accumulator], so one
 * pull of the two keys of a point brings everything its update needs and
 * one push of two deltas applies it (the accumulators take additive deltas
 * too, which commute like any other push).  Factors start small, at
 * N(0, (0.1 r^-1/4)^2) (--init-scale; AdaPM's app uses 1), drawn from a
 * hash of (seed, key) by augur_config.init so that every node agrees;
 * accumulators start at 0.  Past the model, a few reserved keys
 * serve as reduction slots (there is no reduce call: workers push their
 * partial sums into a slot, and after wait_sync + barrier one worker pulls
 * the total): one slot per epoch for the loss, one at the end for the
 * store's counters.
 *
 * Update rule for a point (i, j, x), u = row factor, v = column factor,
 * a, b their accumulators, n_i, n_j the training points of row i and
 * column j (the rule of AdaPM's MF app, "NZSL + L2" with AdaGrad):
 *     e   = x - u.v
 *     g_u = -2 e v + (2 lambda / n_i) u      g_v = -2 e u + (2 lambda / n_j) v
 *     a  += g_u^2                            b  += g_v^2
 *     u  -= lr g_u / sqrt(a + 1e-6)          v  -= lr g_v / sqrt(b + 1e-6)
 * (element-wise; a and b already include this step's g^2).  Over an epoch
 * this descends sum (x - u.v)^2 + lambda (sum_i |u_i|^2 + sum_j |v_j|^2).
 *
 * Work split: rows are dealt to the G = nodes x workers workers (largest
 * rows first, each to the least loaded worker), so a row factor is only
 * ever touched by one worker.  DSGD: the columns are dealt the same way
 * into G blocks; an epoch has G sub-epochs, and in sub-epoch s worker g
 * processes its points in column block (g + p_e(s)) mod G, p_e a
 * permutation of the sub-epochs drawn per epoch, so that in each sub-epoch
 * the workers touch disjoint rows and columns; augur_wait_sync +
 * augur_barrier separate sub-epochs.  Plain SGD (--algo sgd): each worker
 * walks its points in a fresh random order every epoch; columns are shared
 * (with --backend plain that is Hogwild: unsynchronised float updates).
 *
 * Intents: a worker's points are cut into blocks of --block points; one
 * block is one clock.  At the start a worker signals a standing intent for
 * its own rows, [0, forever).  Before processing block b it signals the
 * distinct column keys of block b + K (K = --intent-ahead) for clocks
 * [c_b+K, c_b+K+1), and after the block it advances its clock.  The key
 * lists per block are built outside the timed region.  Intents are hints.
 *
 * Backends: the per-point loops (train_range, eval_range) are written once
 * against three primitives, pull2 (the values of a row and a column key),
 * push2 (add the deltas) and an optional prefetch2 hint, as always-inline
 * functions instantiated per backend with its primitives as constants.  So
 * the plain backend compiles to a direct loop over the arrays (pull gives
 * pointers into the model, push adds in place) with no indirect call per
 * point; --prefetch D (plain only) asks for the point D ahead.  The rest
 * (reductions, barriers, intents, clocks, counters) goes through the
 * function pointers of struct mf_backend, off the per-point path.
 *
 * Each epoch: [shuffle, build intent lists] barrier | train | wait_sync,
 * barrier | evaluate train and test RMSE (each worker over its own points),
 * push to the epoch's slot, wait_sync, barrier, worker 0 pulls and prints.
 * Throughput counts only the part between the first two barriers; the
 * store's counters likewise only count training (each node's worker 0
 * snapshots them around the training part, inside a node-local barrier).
 *
 * Errors: any failing augur call is fatal for the whole job: the process
 * prints the call, augur_strerror() and augur_last_error() (and the node's
 * error, such as a dead peer) and exits at once with status 1, so that its
 * peers see a dead peer instead of waiting forever in a barrier.
 *
 * Build with -DMF_NO_AUGUR to leave the augur backend out (plain only).
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

#ifndef MF_NO_AUGUR
#include <augur/augur.h>
#endif

#define MF_ADAGRAD_EPS 1e-6f
#define MF_MAX_WORKERS 64
#define MF_SLOT_FLOATS 64 /* reduction vector: up to 64 floats */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* --- options ----------------------------------------------------------- */

enum { ALGO_DSGD, ALGO_SGD };
enum { BACKEND_AUGUR, BACKEND_PLAIN };
#ifdef MF_NO_AUGUR
#define MF_DEFAULT_BACKEND BACKEND_PLAIN
#else
#define MF_DEFAULT_BACKEND BACKEND_AUGUR
#endif

struct mf_opts {
	const char *train_path;
	const char *test_path;
	uint32_t rank;
	int epochs;
	float lr;
	float reg;
	int algo;
	int backend;
	int workers;
	int intent_ahead;
	uint32_t block;
	uint64_t seed;
	int mode;
	int check_decrease;
	int progress;
	uint32_t prefetch;
	double init_scale;
};

/* --- data ----------------------------------------------------------------- */

/* One training point, with its regularisation weights 2 lambda / n. */
struct mf_point {
	uint32_t row, col;
	float val;
	float rrow, rcol;
};

/* A point as read from a file (0-based). */
struct mm_entry {
	uint32_t row, col;
	float val;
};

struct mm_file {
	uint32_t rows, cols;
	uint64_t nnz;
	struct mm_entry *e;
};

/* The points of one worker, and its block structure. */
struct mf_part {
	struct mf_point *train;
	size_t ntrain;
	struct mf_point *test; /* test points (rrow, rcol unused) */
	size_t ntest;
	uint64_t *rows; /* row keys this worker owns */
	size_t nrows;
	uint32_t nbuckets; /* G (dsgd) or 1 (sgd) */
	size_t *bstart;	   /* nbuckets + 1: bucket b = [bstart[b], ..) */
	uint32_t *bblk;	   /* nbuckets + 1: first block of bucket b */
	uint32_t nblocks;
	size_t *blo;  /* nblocks + 1: block k = [blo[k], blo[k+1]) */
	size_t *ioff; /* nblocks + 1: intent keys of block k */
	uint64_t *ikeys;
	uint32_t *sched; /* nblocks: this epoch's block order */
	uint32_t *order; /* nbuckets: this epoch's sub-epoch order */
	uint32_t *seg;	 /* nbuckets + 1: sub-epoch s = sched[seg[s]..) */
};

/* --- job, workers, backends --------------------------------------------- */

struct mf_worker;

/*
 * struct mf_backend - what the training loop needs from a parameter store.
 * @train_range: the hot loop over @n points: train_range() below,
 *          instantiated with the backend's pull2/push2/prefetch2.
 * @eval_range: add the squared errors of @n points to *@sse (no update),
 *          eval_range() instantiated likewise.
 * @pulln/@pushn: whole values of @n keys (reduction slots).
 * @status: 0 while the job is healthy, else the node's error (a dead
 *          peer); polled once per block and after every barrier, so that a
 *          failure noticed by the node's progress thread ends the run even
 *          if no call of this worker has returned it yet.
 * @intent, @advance_clock, @node_stats, @status: NULL if the backend has
 *          none.
 * All return 0 or a negative code.
 */
struct mf_backend {
	const char *name;
	int (*train_range)(struct mf_worker *w, const struct mf_point *p,
			   size_t n);
	int (*eval_range)(struct mf_worker *w, const struct mf_point *p,
			  size_t n, double *sse);
	int (*pulln)(struct mf_worker *w, const uint64_t *keys, size_t n,
		     float *out);
	int (*pushn)(struct mf_worker *w, const uint64_t *keys, size_t n,
		     const float *delta);
	int (*intent)(struct mf_worker *w, const uint64_t *keys, size_t n,
		      int64_t start, int64_t end);
	int (*advance_clock)(struct mf_worker *w);
	int (*wait_sync)(struct mf_worker *w);
	int (*barrier)(struct mf_worker *w);
	int (*node_stats)(struct mf_worker *w, uint64_t *out);
	int (*status)(struct mf_worker *w);
};

/* Counters reduced at the end (struct augur_stats fields, in this order). */
static const char *const stat_names[] = {
    "pulls_local",     "pulls_remote", "pushes_local", "pushes_remote",
    "torn_retries",    "msgs_sent",    "bytes_sent",   "bytes_received",
    "updates_applied", "relocations",  "replicas",     "intents",
    "sync_rounds",
};
#define NSTATS (sizeof(stat_names) / sizeof(stat_names[0]))

struct mf_job {
	const struct mf_opts *o;
	const struct mf_backend *be;
	int rank, nnodes, W, G;
	uint32_t rows, cols, rank_r, vlen;
	uint64_t num_keys, key_loss, key_stats, slot_keys;
	uint64_t ntrain_total, ntest_total;
	struct mf_part *parts; /* W entries, by local worker id */
	float *model;	       /* plain backend */
	pthread_mutex_t lock;  /* plain backend: reduction pushes */
	pthread_barrier_t bar; /* plain: the barrier; augur: node-local */
	int claimed[MF_MAX_WORKERS];
	pthread_mutex_t claim_lock;
	/* node counters over the training phases (local worker 0) */
	uint64_t train_stats[NSTATS];
	/* results (worker 0 of rank 0) */
	double *rmse_train, *rmse_test, *secs;
	int progress;
#ifndef MF_NO_AUGUR
	struct augur_node *node;
#endif
};

struct mf_worker {
	struct mf_job *job;
	int tid;      /* thread index on this node */
	int lid, gid; /* local and global worker id */
	struct mf_part *part;
	float *buf;   /* pull buffer, 2 values */
	float *delta; /* push buffer, 2 values */
	float *slot;  /* reduction buffer */
	uint64_t *slot_keys;
	int64_t clock;
	int reporter; /* gid 0: prints */
	double t0, t1;
	uint64_t snap[NSTATS];
#ifndef MF_NO_AUGUR
	struct augur_worker *aw;
#endif
	pthread_t thread;
} __attribute__((aligned(64)));

/* --- small helpers ------------------------------------------------------ */

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
static uint64_t sm_next(uint64_t *s)
{
	return mix64(*s += 0x9e3779b97f4a7c15ULL);
}

static double sm_unif(uint64_t *s) /* (0, 1] */
{
	return ((double)(sm_next(s) >> 11) + 1.0) * 0x1.0p-53;
}

static uint64_t sm_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)sm_next(s) * n) >> 64);
}

static const char *mf_strerror(int err)
{
#ifndef MF_NO_AUGUR
	return augur_strerror(err);
#else
	return strerror(err < 0 ? -err : err);
#endif
}

/*
 * mf_die() - a worker's call failed: report and end the process now (see
 * "Errors" above).  Never returns.
 */
static void __attribute__((noreturn))
mf_die(const struct mf_worker *w, const char *what, int err)
{
	const struct mf_job *job = w->job;
	const int from_status = !strcmp(what, "node status");

	if (job->progress)
		fputc('\n', stderr); /* off the progress bar's line */
	if (from_status)
		fprintf(stderr,
			"mf-train: node %d worker %d: the job failed: "
			"%s",
			job->rank, w->gid, mf_strerror(err));
	else
		fprintf(stderr, "mf-train: node %d worker %d: %s failed: %s",
			job->rank, w->gid, what, mf_strerror(err));
#ifndef MF_NO_AUGUR
	if (job->node) {
		const char *detail = augur_last_error();

		if (!from_status && detail && *detail)
			fprintf(stderr, " (%s)", detail);
		if (augur_node_status(job->node)) {
			detail = augur_node_error(job->node);
			fprintf(stderr, "; node: %s",
				*detail ? detail
					: mf_strerror(
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
			mf_die((w), (what), err__);                            \
	} while (0)

/* --- the update rule ------------------------------------------------------ */

/*
 * mf_step() - one AdaGrad step on point @p: reads u|a at @u and v|b at
 * @v, writes [du | da | dv | db] to @d (4 * @rank floats).  Dot product in
 * 8 partial sums so that it vectorises without -ffast-math.
 */
static inline __attribute__((always_inline)) void
mf_step(const float *restrict u, const float *restrict v,
	const struct mf_point *p, float lr, uint32_t rank, float *restrict d)
{
	const float *a = u + rank, *b = v + rank;
	float *du = d, *da = d + rank, *dv = d + 2 * rank, *db = d + 3 * rank;
	float s[8] = {0}, dot, f;
	uint32_t k = 0;

	for (; k + 8 <= rank; k += 8)
		for (int l = 0; l < 8; l++)
			s[l] += u[k + l] * v[k + l];
	for (; k < rank; k++)
		s[0] += u[k] * v[k];
	dot = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
	f = -2.0f * (p->val - dot);
	for (k = 0; k < rank; k++) {
		float gu = f * v[k] + p->rrow * u[k];
		float gv = f * u[k] + p->rcol * v[k];
		float gu2 = gu * gu, gv2 = gv * gv;

		du[k] = -lr * gu / sqrtf(a[k] + gu2 + MF_ADAGRAD_EPS);
		dv[k] = -lr * gv / sqrtf(b[k] + gv2 + MF_ADAGRAD_EPS);
		da[k] = gu2;
		db[k] = gv2;
	}
}

static inline float mf_sqerr(const float *u, const float *v, float x,
			     uint32_t rank)
{
	float s[8] = {0}, dot, e;
	uint32_t k = 0;

	for (; k + 8 <= rank; k += 8)
		for (int l = 0; l < 8; l++)
			s[l] += u[k + l] * v[k + l];
	for (; k < rank; k++)
		s[0] += u[k] * v[k];
	dot = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
	e = x - dot;
	return e * e;
}

/*
 * train_range() - the training loop, written once.  Always inlined into
 * each backend's instance (MF_DEFINE_LOOPS) with that backend's primitives
 * as constants, so they inline too:
 *   pull2(w, keys, vlen, &row, &col): make the values (vlen floats each)
 *       of keys[0] (row) and keys[1] (column) available at row and col (a
 *       copy, or the storage itself);
 *   push2(w, keys, vlen, row, col, delta): add delta (the two values laid
 *       out as for a pull) to the two keys; row/col are what pull2 gave;
 *   prefetch2(w, rowkey, colkey): optional (NULL), a hint.
 * The rank-32 case gets its own copy with the rank as a constant.
 */
static inline __attribute__((always_inline)) int
train_range(struct mf_worker *w, const struct mf_point *p, size_t n,
	    int (*pull2)(struct mf_worker *, const uint64_t[2], uint32_t,
			 float **, float **),
	    int (*push2)(struct mf_worker *, const uint64_t[2], uint32_t,
			 float *, float *, const float *),
	    void (*prefetch2)(struct mf_worker *, uint64_t, uint64_t),
	    uint32_t rank)
{
	const uint64_t col0 = w->job->rows;
	const float lr = w->job->o->lr;
	const size_t dist = w->job->o->prefetch;
	float *delta = w->delta;

	for (size_t z = 0; z < n; z++) {
		uint64_t keys[2] = {p[z].row, col0 + p[z].col};
		float *u, *v;
		int err;

		if (prefetch2 && dist && z + dist < n)
			prefetch2(w, p[z + dist].row, col0 + p[z + dist].col);
		err = pull2(w, keys, 2 * rank, &u, &v);
		if (unlikely(err))
			return err;
		mf_step(u, v, &p[z], lr, rank, delta);
		err = push2(w, keys, 2 * rank, u, v, delta);
		if (unlikely(err))
			return err;
	}
	return 0;
}

/* eval_range() - the evaluation loop, instantiated like train_range(). */
static inline __attribute__((always_inline)) int
eval_range(struct mf_worker *w, const struct mf_point *p, size_t n, double *sse,
	   int (*pull2)(struct mf_worker *, const uint64_t[2], uint32_t,
			float **, float **),
	   void (*prefetch2)(struct mf_worker *, uint64_t, uint64_t),
	   uint32_t rank)
{
	const uint64_t col0 = w->job->rows;
	const size_t dist = w->job->o->prefetch ? w->job->o->prefetch : 8;
	double s = 0;

	for (size_t z = 0; z < n; z++) {
		uint64_t keys[2] = {p[z].row, col0 + p[z].col};
		float *u, *v;
		int err;

		if (prefetch2 && z + dist < n)
			prefetch2(w, p[z + dist].row, col0 + p[z + dist].col);
		err = pull2(w, keys, 2 * rank, &u, &v);
		if (unlikely(err))
			return err;
		s += mf_sqerr(u, v, p[z].val, rank);
	}
	*sse += s;
	return 0;
}

/* A backend's two loops, with a copy for rank 32 (the rank a constant). */
#define MF_DEFINE_LOOPS(prefix, pull2, push2, prefetch2)                       \
	static int prefix##_train_range(struct mf_worker *w,                   \
					const struct mf_point *p, size_t n)    \
	{                                                                      \
		if (w->job->rank_r == 32)                                      \
			return train_range(w, p, n, pull2, push2, prefetch2,   \
					   32);                                \
		return train_range(w, p, n, pull2, push2, prefetch2,           \
				   w->job->rank_r);                            \
	}                                                                      \
	static int prefix##_eval_range(struct mf_worker *w,                    \
				       const struct mf_point *p, size_t n,     \
				       double *sse)                            \
	{                                                                      \
		if (w->job->rank_r == 32)                                      \
			return eval_range(w, p, n, sse, pull2, prefetch2, 32); \
		return eval_range(w, p, n, sse, pull2, prefetch2,              \
				  w->job->rank_r);                             \
	}

/* --- plain backend: float arrays, W threads, no store ------------------- */

static int plain_pull2(struct mf_worker *w, const uint64_t keys[2],
		       uint32_t vlen, float **row, float **col)
{
	float *m = w->job->model;

	*row = m + keys[0] * vlen;
	*col = m + keys[1] * vlen;
	return 0;
}

static int plain_push2(struct mf_worker *w, const uint64_t keys[2],
		       uint32_t vlen, float *restrict row, float *restrict col,
		       const float *restrict delta)
{
	for (uint32_t k = 0; k < vlen; k++)
		row[k] += delta[k];
	for (uint32_t k = 0; k < vlen; k++)
		col[k] += delta[vlen + k];
	return 0;
}

/* --prefetch D: ask for the values of point z + D while working on z */
static void plain_prefetch2(struct mf_worker *w, uint64_t row, uint64_t col)
{
	const char *a = (const char *)(w->job->model + row * w->job->vlen);
	const char *b = (const char *)(w->job->model + col * w->job->vlen);

	for (size_t off = 0; off < w->job->vlen * sizeof(float); off += 64) {
		__builtin_prefetch(a + off, 1);
		__builtin_prefetch(b + off, 1);
	}
}

MF_DEFINE_LOOPS(plain, plain_pull2, plain_push2, plain_prefetch2)

static int plain_pulln(struct mf_worker *w, const uint64_t *keys, size_t n,
		       float *out)
{
	uint32_t vlen = w->job->vlen;

	for (size_t i = 0; i < n; i++)
		memcpy(out + i * vlen, w->job->model + keys[i] * vlen,
		       vlen * sizeof(float));
	return 0;
}

static int plain_pushn(struct mf_worker *w, const uint64_t *keys, size_t n,
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

static int plain_nop(struct mf_worker *w)
{
	return 0;
}

static int plain_barrier(struct mf_worker *w)
{
	pthread_barrier_wait(&w->job->bar);
	return 0;
}

static const struct mf_backend plain_backend = {
    .name = "plain",
    .train_range = plain_train_range,
    .eval_range = plain_eval_range,
    .pulln = plain_pulln,
    .pushn = plain_pushn,
    .wait_sync = plain_nop,
    .barrier = plain_barrier,
};

/* --- augur backend ------------------------------------------------------- */

#ifndef MF_NO_AUGUR
static int augur_pull2(struct mf_worker *w, const uint64_t keys[2],
		       uint32_t vlen, float **row, float **col)
{
	*row = w->buf;
	*col = w->buf + vlen;
	return augur_pull(w->aw, keys, 2, w->buf, 2 * (size_t)vlen);
}

static int augur_push2(struct mf_worker *w, const uint64_t keys[2],
		       uint32_t vlen, float *row, float *col,
		       const float *delta)
{
	return augur_push(w->aw, keys, 2, delta, 2 * (size_t)vlen);
}

MF_DEFINE_LOOPS(augur, augur_pull2, augur_push2, NULL)

static int augur_pulln(struct mf_worker *w, const uint64_t *keys, size_t n,
		       float *out)
{
	return augur_pull(w->aw, keys, n, out, n * w->job->vlen);
}

static int augur_pushn(struct mf_worker *w, const uint64_t *keys, size_t n,
		       const float *delta)
{
	return augur_push(w->aw, keys, n, delta, n * w->job->vlen);
}

static int augur_intent_(struct mf_worker *w, const uint64_t *keys, size_t n,
			 int64_t start, int64_t end)
{
	return augur_intent(w->aw, keys, n, start, end);
}

static int augur_advance_clock_(struct mf_worker *w)
{
	return augur_advance_clock(w->aw);
}

static int augur_wait_sync_(struct mf_worker *w)
{
	return augur_wait_sync(w->aw);
}

static int augur_barrier_(struct mf_worker *w)
{
	return augur_barrier(w->aw);
}

static int augur_node_stats_(struct mf_worker *w, uint64_t *out)
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

static int augur_status_(struct mf_worker *w)
{
	return augur_node_status(w->job->node);
}

static const struct mf_backend augur_backend = {
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
#endif /* MF_NO_AUGUR */

/* --- model initialisation (every node computes the same values) ------- */

struct mf_init_arg {
	uint64_t model_keys; /* rows + cols */
	uint32_t rank;
	uint64_t seed;
	double std;
};

static void mf_init_key(uint64_t key, float *value, uint32_t len, void *arg)
{
	const struct mf_init_arg *ia = arg;
	uint64_t s = mix64(ia->seed * 0x2545f4914f6cdd1dULL + key);

	memset(value, 0, len * sizeof(float));
	if (key >= ia->model_keys)
		return; /* reduction slot */
	for (uint32_t k = 0; k < ia->rank && k < len; k += 2) {
		/* Box-Muller: two normals per pair of uniforms */
		double r = sqrt(-2.0 * log(sm_unif(&s)));
		double t = 2.0 * M_PI * sm_unif(&s);

		value[k] = (float)(ia->std * r * cos(t));
		if (k + 1 < ia->rank)
			value[k + 1] = (float)(ia->std * r * sin(t));
	}
}

/* --- MatrixMarket reading ---------------------------------------------- */

static int mm_fail(const char *path, unsigned long line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mf-train: %s:%lu: ", path, line);
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

/* A decimal number; simple forms inline, anything else through strtod. */
static inline const char *parse_num(const char *p, float *out)
{
	static const double p10[] = {1e0,  1e1,	 1e2,  1e3,  1e4,  1e5,	 1e6,
				     1e7,  1e8,	 1e9,  1e10, 1e11, 1e12, 1e13,
				     1e14, 1e15, 1e16, 1e17, 1e18};
	const char *s = p;
	uint64_t m = 0;
	int neg = 0, nd = 0, frac = 0;
	char *end;
	double d;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	while (*p >= '0' && *p <= '9' && nd < 18) {
		m = m * 10 + (uint64_t)(*p++ - '0');
		nd++;
	}
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9' && nd < 18) {
			m = m * 10 + (uint64_t)(*p++ - '0');
			nd++;
			frac++;
		}
	}
	if (nd > 0 && nd < 18 && !(*p >= '0' && *p <= '9') && *p != 'e' &&
	    *p != 'E' &&
	    (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' ||
	     *p == '\0')) {
		d = (double)m / p10[frac];
		*out = (float)(neg ? -d : d);
		return p;
	}
	d = strtod(s, &end);
	if (end == s)
		return NULL;
	*out = (float)d;
	return end;
}

/* Read the banner and size line; *@body points past the size line. */
static int mm_header(const char *path, char *buf, struct mm_file *m,
		     char **body, unsigned long *lineno)
{
	char obj[32], fmt[32], field[32], sym[32];
	char *p = buf, *nl;
	uint64_t rows, cols, nnz;
	const char *q;

	*lineno = 1;
	nl = strchr(p, '\n');
	if (!nl || sscanf(p, "%%%%MatrixMarket %31s %31s %31s %31s", obj, fmt,
			  field, sym) != 4)
		return mm_fail(path, 1,
			       "not a MatrixMarket file (banner "
			       "'%%%%MatrixMarket matrix coordinate real "
			       "general' expected)");
	if (strcasecmp(obj, "matrix") || strcasecmp(fmt, "coordinate"))
		return mm_fail(path, 1,
			       "'%s %s': only 'matrix coordinate' "
			       "files hold training points",
			       obj, fmt);
	if (strcasecmp(field, "real") && strcasecmp(field, "double") &&
	    strcasecmp(field, "integer"))
		return mm_fail(path, 1,
			       "field '%s': values must be real or "
			       "integer",
			       field);
	if (strcasecmp(sym, "general"))
		return mm_fail(path, 1,
			       "symmetry '%s': only 'general' is "
			       "supported",
			       sym);
	for (;;) { /* comments and blank lines */
		if (!nl)
			return mm_fail(path, *lineno,
				       "no size line "
				       "'rows cols nnz'");
		p = nl + 1;
		++*lineno;
		nl = strchr(p, '\n');
		q = skip_blank(p);
		if (*q == '%' || *q == '\n')
			continue;
		break;
	}
	q = skip_blank(p);
	if (!(q = parse_uint(q, &rows)) ||
	    !(q = parse_uint(skip_blank(q), &cols)) ||
	    !(q = parse_uint(skip_blank(q), &nnz)))
		return mm_fail(path, *lineno,
			       "size line 'rows cols nnz' "
			       "expected");
	if (rows == 0 || cols == 0 || rows + cols >= (1ULL << 32))
		return mm_fail(path, *lineno,
			       "matrix %" PRIu64 " x %" PRIu64
			       ": rows + cols must be in [2, 2^32)",
			       rows, cols);
	m->rows = (uint32_t)rows;
	m->cols = (uint32_t)cols;
	m->nnz = nnz;
	*body = nl ? nl + 1 : p + strlen(p);
	return 0;
}

static int slurp(const char *path, char **out, size_t *len)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out_errno;
	if (fstat(fd, &st))
		goto out_close_errno;
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
			fprintf(stderr, "mf-train: reading %s: %s\n", path,
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

out_close_errno:
	err = -errno;
	close(fd);
	fprintf(stderr, "mf-train: %s: %s\n", path, strerror(-err));
	return err;
out_errno:
	err = -errno;
	fprintf(stderr, "mf-train: %s: %s\n", path, strerror(-err));
	return err;
}

/* Only the header (to size the model before the node starts). */
static int mm_read_header(const char *path, struct mm_file *m)
{
	char *line = NULL, *buf = NULL, *body;
	size_t cap = 0, len = 0;
	unsigned long lineno;
	ssize_t n;
	int err = -ENOMEM, nlines = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		err = -errno;
		fprintf(stderr, "mf-train: %s: %s\n", path, strerror(-err));
		return err;
	}
	/* the banner, comments and blank lines, then the size line */
	while ((n = getline(&line, &cap, f)) > 0) {
		const char *q = skip_blank(line);
		char *nb = realloc(buf, len + (size_t)n + 1);

		if (!nb)
			goto out;
		buf = nb;
		memcpy(buf + len, line, (size_t)n + 1);
		len += (size_t)n;
		if (nlines++ > 0 && *q != '%' && *q != '\n')
			break;
	}
	if (!buf) {
		err = mm_fail(path, 1, "empty file");
		goto out;
	}
	err = mm_header(path, buf, m, &body, &lineno);
out:
	free(line);
	free(buf);
	fclose(f);
	return err;
}

static int mm_read(const char *path, struct mm_file *m)
{
	char *buf = NULL, *body;
	const char *p;
	unsigned long lineno;
	uint64_t k = 0;
	size_t len;
	int err;

	err = slurp(path, &buf, &len);
	if (err)
		return err;
	err = mm_header(path, buf, m, &body, &lineno);
	if (err)
		goto out_free;
	m->e = malloc((m->nnz ? m->nnz : 1) * sizeof(*m->e));
	if (!m->e) {
		err = -ENOMEM;
		goto out_free;
	}
	p = body;
	while (*p) {
		uint64_t i, j;
		float v;
		const char *q;

		lineno++;
		q = skip_blank(p);
		if (*q == '\n' || *q == '%') { /* blank or comment */
			p = strchr(q, '\n');
			p = p ? p + 1 : q + strlen(q);
			continue;
		}
		if (!*q)
			break;
		if (k == m->nnz) {
			err = mm_fail(path, lineno,
				      "more entries than the %" PRIu64
				      " the size line announces",
				      m->nnz);
			goto out_free_e;
		}
		if (!(q = parse_uint(q, &i)) ||
		    !(q = parse_uint(skip_blank(q), &j)) ||
		    !(q = parse_num(skip_blank(q), &v))) {
			err = mm_fail(path, lineno, "'i j value' expected");
			goto out_free_e;
		}
		if (i < 1 || i > m->rows || j < 1 || j > m->cols) {
			err = mm_fail(path, lineno,
				      "entry (%" PRIu64 ", %" PRIu64
				      ") outside the %u x %u matrix "
				      "(indices are 1-based)",
				      i, j, m->rows, m->cols);
			goto out_free_e;
		}
		if (!isfinite(v)) {
			err = mm_fail(path, lineno, "value is not finite");
			goto out_free_e;
		}
		m->e[k].row = (uint32_t)(i - 1);
		m->e[k].col = (uint32_t)(j - 1);
		m->e[k].val = v;
		k++;
		q = skip_blank(q);
		if (*q && *q != '\n') {
			err = mm_fail(path, lineno,
				      "trailing text after "
				      "'i j value'");
			goto out_free_e;
		}
		p = *q ? q + 1 : q;
	}
	if (k != m->nnz) {
		err = mm_fail(path, lineno,
			      "%" PRIu64 " entries, but the size "
			      "line announces %" PRIu64,
			      k, m->nnz);
		goto out_free_e;
	}
	free(buf);
	return 0;

out_free_e:
	free(m->e);
	m->e = NULL;
out_free:
	free(buf);
	return err;
}

/* --- partitioning ------------------------------------------------------- */

struct lpt_item {
	uint64_t count;
	uint32_t id;
};

static int lpt_cmp(const void *a, const void *b)
{
	const struct lpt_item *x = a, *y = b;

	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

struct lpt_bin {
	uint64_t load;
	uint32_t bin;
};

static inline int bin_less(const struct lpt_bin *a, const struct lpt_bin *b)
{
	return a->load < b->load || (a->load == b->load && a->bin < b->bin);
}

/*
 * lpt_assign() - deal @n items with @count into @nbins bins, largest first,
 * each to the least loaded bin (ties: lowest bin), so that loads balance;
 * items with no count go round-robin by id.  Deterministic.
 */
static int lpt_assign(const uint64_t *count, uint32_t n, uint32_t nbins,
		      uint32_t *out)
{
	struct lpt_item *it = malloc((size_t)n * sizeof(*it));
	struct lpt_bin *h = malloc((size_t)nbins * sizeof(*h));
	uint32_t m = 0;

	if (!it || !h) {
		free(it);
		free(h);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (count[i]) {
			it[m].count = count[i];
			it[m++].id = i;
		} else {
			out[i] = i % nbins;
		}
	}
	qsort(it, m, sizeof(*it), lpt_cmp);
	for (uint32_t b = 0; b < nbins; b++) /* already a min-heap */
		h[b] = (struct lpt_bin){0, b};
	for (uint32_t k = 0; k < m; k++) {
		uint32_t i = 0;

		out[it[k].id] = h[0].bin;
		h[0].load += it[k].count;
		for (;;) { /* sift down */
			uint32_t l = 2 * i + 1, r = l + 1, s = i;
			struct lpt_bin t;

			if (l < nbins && bin_less(&h[l], &h[s]))
				s = l;
			if (r < nbins && bin_less(&h[r], &h[s]))
				s = r;
			if (s == i)
				break;
			t = h[i];
			h[i] = h[s];
			h[s] = t;
			i = s;
		}
	}
	free(it);
	free(h);
	return 0;
}

static void shuffle_points(struct mf_point *p, size_t n, uint64_t seed)
{
	uint64_t s = mix64(seed);

	for (size_t k = n; k > 1; k--) {
		size_t j = (size_t)sm_below(&s, k);
		struct mf_point t = p[k - 1];

		p[k - 1] = p[j];
		p[j] = t;
	}
}

static void part_free(struct mf_part *pt)
{
	free(pt->train);
	free(pt->test);
	free(pt->rows);
	free(pt->bstart);
	free(pt->bblk);
	free(pt->blo);
	free(pt->ioff);
	free(pt->ikeys);
	free(pt->sched);
	free(pt->order);
	free(pt->seg);
}

/* Block boundaries of each bucket (the points are already in place). */
static int part_blocks(struct mf_part *pt, uint32_t B)
{
	uint32_t nb = 0, k = 0;

	for (uint32_t b = 0; b < pt->nbuckets; b++)
		nb +=
		    (uint32_t)((pt->bstart[b + 1] - pt->bstart[b] + B - 1) / B);
	pt->nblocks = nb;
	pt->bblk = malloc((pt->nbuckets + 1) * sizeof(*pt->bblk));
	pt->blo = malloc(((size_t)nb + 1) * sizeof(*pt->blo));
	pt->sched = malloc(((size_t)nb + 1) * sizeof(*pt->sched));
	pt->seg = malloc((pt->nbuckets + 1) * sizeof(*pt->seg));
	pt->order = malloc(pt->nbuckets * sizeof(*pt->order));
	if (!pt->bblk || !pt->blo || !pt->sched || !pt->seg || !pt->order)
		return -ENOMEM;
	for (uint32_t b = 0; b < pt->nbuckets; b++) {
		pt->bblk[b] = k;
		for (size_t z = pt->bstart[b]; z < pt->bstart[b + 1]; z += B)
			pt->blo[k++] = z;
	}
	pt->bblk[pt->nbuckets] = k;
	pt->blo[k] = pt->ntrain;
	return 0;
}

/* The column key of every point of each block, duplicates kept: an
 * intent is one foreseen use (lib/planner.h), so a column used by many
 * points of a block is signalled as many times. */
static void part_intents(struct mf_part *pt, uint64_t col0)
{
	size_t n = 0;

	for (uint32_t k = 0; k < pt->nblocks; k++) {
		pt->ioff[k] = n;
		for (size_t z = pt->blo[k]; z < pt->blo[k + 1]; z++)
			pt->ikeys[n++] = col0 + pt->train[z].col;
	}
	pt->ioff[pt->nblocks] = n;
}

/*
 * build_parts() - deal the training points (and test points) of @tr/@te
 * to the G workers and keep those of this node's W workers.
 */
static int build_parts(struct mf_job *job, struct mm_file *tr,
		       struct mm_file *te)
{
	const struct mf_opts *o = job->o;
	uint32_t G = (uint32_t)job->G, W = (uint32_t)job->W;
	uint32_t nb = o->algo == ALGO_DSGD ? G : 1;
	uint64_t *rcount, *ccount;
	uint32_t *rowner, *cblock;
	int err = -ENOMEM;

	rcount = calloc(tr->rows, sizeof(*rcount));
	ccount = calloc(tr->cols, sizeof(*ccount));
	rowner = malloc(tr->rows * sizeof(*rowner));
	cblock = malloc(tr->cols * sizeof(*cblock));
	job->parts = calloc(W, sizeof(*job->parts));
	if (!rcount || !ccount || !rowner || !cblock || !job->parts)
		goto out;
	for (uint64_t k = 0; k < tr->nnz; k++) {
		rcount[tr->e[k].row]++;
		ccount[tr->e[k].col]++;
	}
	if (lpt_assign(rcount, tr->rows, G, rowner))
		goto out;
	if (nb > 1) {
		if (lpt_assign(ccount, tr->cols, nb, cblock))
			goto out;
	} else {
		memset(cblock, 0, tr->cols * sizeof(*cblock));
	}

	for (uint32_t l = 0; l < W; l++) {
		struct mf_part *pt = &job->parts[l];
		uint32_t g = (uint32_t)job->rank * W + l;
		size_t *fill;

		pt->nbuckets = nb;
		pt->bstart = calloc(nb + 1, sizeof(*pt->bstart));
		if (!pt->bstart)
			goto out;
		for (uint64_t k = 0; k < tr->nnz; k++)
			if (rowner[tr->e[k].row] == g)
				pt->bstart[cblock[tr->e[k].col] + 1]++;
		for (uint32_t r = 0; r < tr->rows; r++)
			if (rowner[r] == g && rcount[r])
				pt->nrows++;
		for (uint32_t b = 0; b < nb; b++)
			pt->bstart[b + 1] += pt->bstart[b];
		pt->ntrain = pt->bstart[nb];
		pt->train =
		    malloc((pt->ntrain ? pt->ntrain : 1) * sizeof(*pt->train));
		pt->rows =
		    malloc((pt->nrows ? pt->nrows : 1) * sizeof(*pt->rows));
		fill = malloc(nb * sizeof(*fill));
		if (!pt->train || !pt->rows || !fill) {
			free(fill);
			goto out;
		}
		memcpy(fill, pt->bstart, nb * sizeof(*fill));
		for (uint64_t k = 0; k < tr->nnz; k++) {
			const struct mm_entry *e = &tr->e[k];
			struct mf_point *p;

			if (rowner[e->row] != g)
				continue;
			p = &pt->train[fill[cblock[e->col]]++];
			p->row = e->row;
			p->col = e->col;
			p->val = e->val;
			p->rrow = 2.0f * o->reg / (float)rcount[e->row];
			p->rcol = 2.0f * o->reg / (float)ccount[e->col];
		}
		free(fill);
		pt->nrows = 0;
		for (uint32_t r = 0; r < tr->rows; r++)
			if (rowner[r] == g && rcount[r])
				pt->rows[pt->nrows++] = r;
		/* a random order inside each bucket, fixed for dsgd */
		for (uint32_t b = 0; b < nb; b++)
			shuffle_points(pt->train + pt->bstart[b],
				       pt->bstart[b + 1] - pt->bstart[b],
				       o->seed * 1000003 + g * 131 + b);
		if (te) {
			for (uint64_t k = 0; k < te->nnz; k++)
				if (rowner[te->e[k].row] == g)
					pt->ntest++;
			pt->test = malloc((pt->ntest ? pt->ntest : 1) *
					  sizeof(*pt->test));
			if (!pt->test)
				goto out;
			pt->ntest = 0;
			for (uint64_t k = 0; k < te->nnz; k++) {
				const struct mm_entry *e = &te->e[k];

				if (rowner[e->row] != g)
					continue;
				pt->test[pt->ntest++] =
				    (struct mf_point){.row = e->row,
						      .col = e->col,
						      .val = e->val};
			}
		}
		if (part_blocks(pt, o->block))
			goto out;
		if (job->be->intent && o->intent_ahead > 0) {
			pt->ioff = malloc(((size_t)pt->nblocks + 1) *
					  sizeof(*pt->ioff));
			pt->ikeys = malloc((pt->ntrain ? pt->ntrain : 1) *
					   sizeof(*pt->ikeys));
			if (!pt->ioff || !pt->ikeys)
				goto out;
			part_intents(pt, job->rows);
		}
	}
	err = 0;
out:
	free(rcount);
	free(ccount);
	free(rowner);
	free(cblock);
	return err;
}

/* --- reductions through reserved keys ------------------------------------ */

static void slot_push(struct mf_worker *w, uint64_t key0, const float *vec,
		      uint32_t len)
{
	struct mf_job *job = w->job;
	size_t nk = job->slot_keys;

	memset(w->slot, 0, nk * job->vlen * sizeof(float));
	memcpy(w->slot, vec, len * sizeof(float));
	for (size_t i = 0; i < nk; i++)
		w->slot_keys[i] = key0 + i;
	CHECK(w, job->be->pushn(w, w->slot_keys, nk, w->slot), "push (reduce)");
}

static void slot_pull(struct mf_worker *w, uint64_t key0, float *vec,
		      uint32_t len)
{
	struct mf_job *job = w->job;
	size_t nk = job->slot_keys;

	for (size_t i = 0; i < nk; i++)
		w->slot_keys[i] = key0 + i;
	CHECK(w, job->be->pulln(w, w->slot_keys, nk, w->slot), "pull (reduce)");
	memcpy(vec, w->slot, len * sizeof(float));
}

static void check_status(struct mf_worker *w)
{
	if (w->job->be->status)
		CHECK(w, w->job->be->status(w), "node status");
}

static void sync_all(struct mf_worker *w)
{
	CHECK(w, w->job->be->wait_sync(w), "wait_sync");
	CHECK(w, w->job->be->barrier(w), "barrier");
	check_status(w);
}

/* --- progress bar (worker 0, only on a terminal) ---------------------- */

static void progress(struct mf_worker *w, int epoch, size_t done, double t)
{
	const struct mf_part *pt = w->part;
	double frac = pt->ntrain ? (double)done / (double)pt->ntrain : 1.0;
	char bar[41];
	int fill = (int)(frac * 40.0);

	for (int i = 0; i < 40; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[40] = '\0';
	fprintf(stderr,
		"\r  epoch %d/%d [%s] %3d%%  %.2f M points/s (worker 0)", epoch,
		w->job->o->epochs, bar, (int)(frac * 100.0),
		t > 0 ? 1e-6 * (double)done / t : 0.0);
	fflush(stderr);
}

/* --- one epoch ----------------------------------------------------------- */

static void epoch_schedule(struct mf_worker *w, int epoch)
{
	struct mf_part *pt = w->part;
	uint32_t nb = pt->nbuckets, *order = pt->order, f = 0;
	uint64_t s = mix64(w->job->o->seed * 7919 + (uint64_t)epoch);

	for (uint32_t i = 0; i < nb; i++)
		order[i] = i;
	for (uint32_t i = nb; i > 1; i--) { /* same permutation everywhere */
		uint32_t j = (uint32_t)sm_below(&s, i), t = order[i - 1];

		order[i - 1] = order[j];
		order[j] = t;
	}
	for (uint32_t sgi = 0; sgi < nb; sgi++) {
		uint32_t b = (uint32_t)(((uint32_t)w->gid + order[sgi]) % nb);

		pt->seg[sgi] = f;
		for (uint32_t k = pt->bblk[b]; k < pt->bblk[b + 1]; k++)
			pt->sched[f++] = k;
	}
	pt->seg[nb] = f;
}

static void signal_intent(struct mf_worker *w, uint32_t f, int64_t c0)
{
	const struct mf_part *pt = w->part;
	uint32_t k = pt->sched[f];
	size_t n = pt->ioff[k + 1] - pt->ioff[k];

	if (n)
		CHECK(w,
		      w->job->be->intent(w, pt->ikeys + pt->ioff[k], n, c0 + f,
					 c0 + f + 1),
		      "intent");
}

static void train_epoch(struct mf_worker *w, int epoch)
{
	struct mf_job *job = w->job;
	const struct mf_backend *be = job->be;
	struct mf_part *pt = w->part;
	const int K = be->intent ? job->o->intent_ahead : 0;
	const int leader = w->lid == 0 && be->node_stats;
	size_t done = 0;
	double tlast = 0;
	int64_t c0;

	/* preparation, not timed */
	if (job->o->algo == ALGO_SGD) {
		shuffle_points(pt->train, pt->ntrain,
			       job->o->seed * 1000003 + (uint64_t)w->gid * 131 +
				   (uint64_t)epoch * 7777);
		if (K > 0)
			part_intents(pt, job->rows);
	}
	epoch_schedule(w, epoch);
	if (leader)
		CHECK(w, be->node_stats(w, w->snap), "stats");

	CHECK(w, be->barrier(w), "barrier");
	check_status(w);
	if (w->reporter)
		w->t0 = now_s();
	c0 = w->clock;
	for (uint32_t f = 0; f < (uint32_t)K && f < pt->nblocks; f++)
		signal_intent(w, f, c0);
	for (uint32_t s = 0; s < pt->nbuckets; s++) {
		for (uint32_t f = pt->seg[s]; f < pt->seg[s + 1]; f++) {
			uint32_t k = pt->sched[f];
			size_t n = pt->blo[k + 1] - pt->blo[k];

			if (K > 0 && f + (uint32_t)K < pt->nblocks)
				signal_intent(w, f + (uint32_t)K, c0);
			CHECK(w, be->train_range(w, pt->train + pt->blo[k], n),
			      "pull/push");
			if (be->advance_clock)
				CHECK(w, be->advance_clock(w), "advance_clock");
			w->clock++;
			check_status(w);
			if (job->progress && w->reporter) {
				done += n;
				if ((f & 63) == 63) {
					double t = now_s() - w->t0;

					if (t - tlast > 0.1) {
						tlast = t;
						progress(w, epoch, done, t);
					}
				}
			}
		}
		if (s + 1 < pt->nbuckets) /* dsgd: next sub-epoch */
			sync_all(w);
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

/* Evaluate, reduce through the epoch's slot, report. */
static void evaluate(struct mf_worker *w, int epoch)
{
	struct mf_job *job = w->job;
	const struct mf_backend *be = job->be;
	const struct mf_part *pt = w->part;
	double sse_tr = 0, sse_te = 0;
	float vec[4];

	CHECK(w, be->eval_range(w, pt->train, pt->ntrain, &sse_tr), "pull");
	CHECK(w, be->eval_range(w, pt->test, pt->ntest, &sse_te), "pull");
	check_status(w);
	/* each sum as a float pair (hi, lo): near-double precision */
	vec[0] = (float)sse_tr;
	vec[1] = (float)(sse_tr - (double)vec[0]);
	vec[2] = (float)sse_te;
	vec[3] = (float)(sse_te - (double)vec[2]);
	slot_push(w, job->key_loss + (uint64_t)epoch * job->slot_keys, vec, 4);
	sync_all(w);
	if (w->reporter) {
		double tr, te, secs = epoch ? w->t1 - w->t0 : 0;

		slot_pull(w, job->key_loss + (uint64_t)epoch * job->slot_keys,
			  vec, 4);
		tr = sqrt(((double)vec[0] + (double)vec[1]) /
			  (double)job->ntrain_total);
		te = job->ntest_total ? sqrt(((double)vec[2] + (double)vec[3]) /
					     (double)job->ntest_total)
				      : NAN;
		job->rmse_train[epoch] = tr;
		job->rmse_test[epoch] = te;
		job->secs[epoch] = secs;
		if (epoch == 0)
			printf("%5s %11s %11s %9s %12s\n", "epoch",
			       "train_rmse", "test_rmse", "time_s",
			       "Mpoints/s");
		printf("%5d %11.6f ", epoch, tr);
		if (job->ntest_total)
			printf("%11.6f ", te);
		else
			printf("%11s ", "-");
		if (epoch)
			printf("%9.3f %12.3f\n", secs,
			       secs > 0
				   ? 1e-6 * (double)job->ntrain_total / secs
				   : 0.0);
		else
			printf("%9s %12s\n", "-", "-");
		fflush(stdout);
	}
}

/* Sum the nodes' training counters through the stats slot; print them. */
static void report_stats(struct mf_worker *w)
{
	struct mf_job *job = w->job;
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
	printf("  bytes sent per data point     %.2f\n",
	       pts > 0 ? (double)tot[6] / pts : 0.0);
	printf("  bytes received per data point %.2f\n",
	       pts > 0 ? (double)tot[7] / pts : 0.0);
}

static void *worker_main(void *arg)
{
	struct mf_worker *w = arg;
	struct mf_job *job = w->job;
	const struct mf_opts *o = job->o;

#ifndef MF_NO_AUGUR
	if (job->node) {
		CHECK(w, augur_worker_create(job->node, &w->aw),
		      "augur_worker_create");
		w->gid = augur_worker_id(w->aw);
		w->lid = w->gid - job->rank * job->W;
		if (w->lid < 0 || w->lid >= job->W) {
			fprintf(stderr,
				"mf-train: node %d: worker id %d is "
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
		fprintf(stderr, "mf-train: node %d: two workers got id %d\n",
			job->rank, w->gid);
		_exit(1);
	}
	pthread_mutex_unlock(&job->claim_lock);
	w->part = &job->parts[w->lid];
	w->reporter = w->gid == 0;

	/* rows are this worker's for the whole run: one standing intent */
	if (job->be->intent && o->intent_ahead > 0 && w->part->nrows)
		CHECK(w,
		      job->be->intent(w, w->part->rows, w->part->nrows, 0,
				      INT64_MAX),
		      "intent");

	evaluate(w, 0);
	for (int e = 1; e <= o->epochs; e++) {
		train_epoch(w, e);
		evaluate(w, e);
	}
	if (job->be->node_stats)
		report_stats(w);
#ifndef MF_NO_AUGUR
	augur_worker_destroy(w->aw);
	w->aw = NULL;
#endif
	return NULL;
}

/* --- main ------------------------------------------------------------------
 */

/* clang-format off */
static void usage(FILE *f)
{
	fprintf(f,
"usage: mf-train FILE.train.mm [options]\n"
"Matrix factorization by AdaGrad SGD on augur (or on plain arrays).\n"
"  --test FILE          test points (MatrixMarket, same shape)\n"
"  --rank R             factor rank (default 32)\n"
"  --epochs N           epochs (default 5)\n"
"  --lr F               AdaGrad step size (default 0.1)\n"
"  --reg F              L2 regularisation lambda (default 0.05)\n"
"  --algo dsgd|sgd      DSGD with rotating column blocks (default) or\n"
"                       plain SGD in random order\n"
"  --workers W          worker threads per node (default 1)\n"
"  --intent-ahead K     signal intents K blocks ahead (default 8; 0: none)\n"
"  --block N            points per block = per clock (default 256)\n"
"  --backend augur|plain  the parameter store, or plain in-memory arrays\n"
"                       with no store (the ceiling; default augur, or\n"
"                       plain in a build without the augur backend)\n"
"  --mode adaptive|static|replicate|relocate  augur management (default\n"
"                       adaptive)\n"
"  --seed N             model initialisation and order (default 1)\n"
"  --init-scale S       initial factors N(0, (S r^-1/4)^2) (default 0.1;\n"
"                       1 is AdaPM's initialisation)\n"
"  --check-decrease     exit 1 unless the last epoch's train RMSE is below\n"
"                       the first epoch's\n"
"  --no-progress        no progress bar (it is drawn only on a terminal)\n"
"  --prefetch D         plain backend: prefetch the values of the point D\n"
"                       points ahead (default 0: off, the plain loop)\n"
"Run on N nodes of this host with: augur-run -n N mf-train ...\n");
}
/* clang-format on */

static int parse_opts(int argc, char **argv, struct mf_opts *o)
{
	static const struct option lopts[] = {
	    {"test", required_argument, NULL, 't'},
	    {"rank", required_argument, NULL, 'r'},
	    {"epochs", required_argument, NULL, 'e'},
	    {"lr", required_argument, NULL, 'l'},
	    {"reg", required_argument, NULL, 'g'},
	    {"algo", required_argument, NULL, 'a'},
	    {"workers", required_argument, NULL, 'w'},
	    {"intent-ahead", required_argument, NULL, 'k'},
	    {"block", required_argument, NULL, 'b'},
	    {"backend", required_argument, NULL, 'B'},
	    {"mode", required_argument, NULL, 'm'},
	    {"seed", required_argument, NULL, 's'},
	    {"check-decrease", no_argument, NULL, 'c'},
	    {"no-progress", no_argument, NULL, 'P'},
	    {"prefetch", required_argument, NULL, 'f'},
	    {"init-scale", required_argument, NULL, 'i'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		char *end = NULL;
		long long v = 0;
		double d = 0;

		if (optarg) {
			errno = 0;
			if (c == 'l' || c == 'g' || c == 'i')
				d = strtod(optarg, &end);
			else
				v = strtoll(optarg, &end, 10);
		}
		switch (c) {
		case 't':
			o->test_path = optarg;
			continue;
		case 'r':
			if (*end || v < 1 || v > 4000) /* value_len <= 8000 */
				goto bad;
			o->rank = (uint32_t)v;
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
		case 'a':
			if (!strcmp(optarg, "dsgd"))
				o->algo = ALGO_DSGD;
			else if (!strcmp(optarg, "sgd"))
				o->algo = ALGO_SGD;
			else
				goto bad;
			continue;
		case 'w':
			if (*end || v < 1 || v > MF_MAX_WORKERS)
				goto bad;
			o->workers = (int)v;
			continue;
		case 'k':
			if (*end || v < 0 || v > 1000000)
				goto bad;
			o->intent_ahead = (int)v;
			continue;
		case 'b':
			if (*end || v < 1 || v > 100000000)
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
#ifndef MF_NO_AUGUR
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
		case 'c':
			o->check_decrease = 1;
			continue;
		case 'P':
			o->progress = 0;
			continue;
		case 'i':
			if (*end || !(d > 0) || !isfinite(d))
				goto bad;
			o->init_scale = d;
			continue;
		case 'f':
			if (*end || v < 0 || v > 1024)
				goto bad;
			o->prefetch = (uint32_t)v;
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
					"mf-train: bad value '%s' for "
					"--%s\n",
					optarg, lo->name);
		return -EINVAL;
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return -EINVAL;
	}
	o->train_path = argv[optind];
#ifdef MF_NO_AUGUR
	if (o->backend == BACKEND_AUGUR) {
		fprintf(stderr, "mf-train: built without the augur backend "
				"(MF_NO_AUGUR): use --backend plain\n");
		return -EINVAL;
	}
#endif
	return 0;
}

int main(int argc, char **argv)
{
	struct mf_opts o = {
	    .rank = 32,
	    .epochs = 5,
	    .lr = 0.1f,
	    .reg = 0.05f,
	    .algo = ALGO_DSGD,
	    .backend = MF_DEFAULT_BACKEND,
	    .workers = 1,
	    .intent_ahead = 8,
	    .block = 256,
	    .seed = 1,
	    .progress = 1,
	    .init_scale = 0.1,
	};
	struct mm_file tr = {0}, te = {0};
	struct mf_job job = {0};
	struct mf_worker *ws = NULL;
	struct mf_init_arg ia;
	int err, ret = 1, nthreads = 0, bar_ok = 0;
	double t_load;

	if (parse_opts(argc, argv, &o))
		return 2;
	job.o = &o;
	job.W = o.workers;
	job.rank_r = o.rank;
	job.vlen = 2 * o.rank;
	pthread_mutex_init(&job.lock, NULL);
	pthread_mutex_init(&job.claim_lock, NULL);

	/* the shape, and from it the key space */
	err = mm_read_header(o.train_path, &tr);
	if (err)
		goto out;
	job.rows = tr.rows;
	job.cols = tr.cols;
	job.slot_keys = (MF_SLOT_FLOATS + job.vlen - 1) / job.vlen;
	job.key_loss = (uint64_t)tr.rows + tr.cols;
	job.key_stats = job.key_loss + (uint64_t)(o.epochs + 1) * job.slot_keys;
	job.num_keys = job.key_stats + job.slot_keys;
	ia = (struct mf_init_arg){.model_keys = job.key_loss,
				  .rank = o.rank,
				  .seed = o.seed,
				  .std = o.init_scale *
					 pow((double)o.rank, -0.25)};

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
				"mf-train: out of memory for the model "
				"(%" PRIu64 " keys)\n",
				job.num_keys);
			goto out;
		}
		for (uint64_t k = 0; k < job.num_keys; k++)
			mf_init_key(k, job.model + k * job.vlen, job.vlen, &ia);
	} else {
#ifndef MF_NO_AUGUR
		struct augur_config cfg = {
		    .num_keys = job.num_keys,
		    .value_len = job.vlen,
		    .num_workers = (uint32_t)o.workers,
		    .init = mf_init_key,
		    .init_arg = &ia,
		    .mode = o.mode,
		};

		job.be = &augur_backend;
		err = augur_node_start(&cfg, &job.node);
		if (err) {
			fprintf(stderr,
				"mf-train: augur_node_start failed: "
				"%s (%s)\n",
				augur_strerror(err), augur_last_error());
			goto out;
		}
		job.rank = augur_node_rank(job.node);
		job.nnodes = augur_node_size(job.node);
#endif
	}
	job.G = job.nnodes * job.W;

	t_load = now_s();
	err = mm_read(o.train_path, &tr);
	if (err)
		goto out;
	if (o.test_path) {
		err = mm_read(o.test_path, &te);
		if (err)
			goto out;
		if (te.rows > tr.rows || te.cols > tr.cols) {
			fprintf(stderr,
				"mf-train: test matrix %u x %u is "
				"larger than the training matrix %u x %u\n",
				te.rows, te.cols, tr.rows, tr.cols);
			err = -EINVAL;
			goto out;
		}
	}
	if (!tr.nnz) {
		fprintf(stderr, "mf-train: %s holds no points\n", o.train_path);
		err = -EINVAL;
		goto out;
	}
	job.ntrain_total = tr.nnz;
	job.ntest_total = te.nnz;
	err = build_parts(&job, &tr, o.test_path ? &te : NULL);
	if (err) {
		fprintf(stderr, "mf-train: out of memory partitioning the "
				"data\n");
		goto out;
	}
	free(tr.e);
	tr.e = NULL;
	free(te.e);
	te.e = NULL;

	job.rmse_train = calloc((size_t)o.epochs + 1, sizeof(double));
	job.rmse_test = calloc((size_t)o.epochs + 1, sizeof(double));
	job.secs = calloc((size_t)o.epochs + 1, sizeof(double));
	ws = aligned_alloc(64, (size_t)job.W * sizeof(*ws));
	if (!job.rmse_train || !job.rmse_test || !job.secs || !ws) {
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
		printf("mf-train: backend %s, %s, %d node%s x %d worker%s, "
		       "rank %u, lr %g, reg %g, block %u, intent-ahead %d\n",
		       job.be->name, o.algo == ALGO_DSGD ? "dsgd" : "sgd",
		       job.nnodes, job.nnodes > 1 ? "s" : "", job.W,
		       job.W > 1 ? "s" : "", o.rank, (double)o.lr,
		       (double)o.reg, o.block,
		       job.be->intent ? o.intent_ahead : 0);
		printf("mf-train: %s: %u x %u, %" PRIu64 " training points, "
		       "%" PRIu64 " test points, read in %.2f s\n",
		       o.train_path, job.rows, job.cols, job.ntrain_total,
		       job.ntest_total, now_s() - t_load);
		fflush(stdout);
	}

	for (int t = 0; t < job.W; t++) {
		struct mf_worker *w = &ws[t];
		size_t v2 = 2 * (size_t)job.vlen * sizeof(float);
		size_t sl = job.slot_keys * job.vlen * sizeof(float);

		w->job = &job;
		w->tid = t;
		w->buf = aligned_alloc(64, (v2 + 63) & ~(size_t)63);
		w->delta = aligned_alloc(64, (v2 + 63) & ~(size_t)63);
		w->slot = aligned_alloc(64, (sl + 63) & ~(size_t)63);
		w->slot_keys = calloc(job.slot_keys, sizeof(uint64_t));
		if (!w->buf || !w->delta || !w->slot || !w->slot_keys) {
			err = -ENOMEM;
			fprintf(stderr, "mf-train: out of memory\n");
			goto out_join;
		}
		err = -pthread_create(&w->thread, NULL, worker_main, w);
		if (err) {
			fprintf(stderr, "mf-train: pthread_create: %s\n",
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
		printf("RESULT backend=%s algo=%s nodes=%d workers=%d rank=%u "
		       "epochs=%d points_per_s=%.0f train_rmse=%.6f "
		       "test_rmse=%.6f\n",
		       job.be->name, o.algo == ALGO_DSGD ? "dsgd" : "sgd",
		       job.nnodes, job.W, o.rank, E,
		       sum_s > 0 ? (double)job.ntrain_total * E / sum_s : 0.0,
		       job.rmse_train[E], job.rmse_test[E]);
		if (o.check_decrease) {
			int ref = E >= 2 ? 1 : 0;

			if (!(job.rmse_train[E] < job.rmse_train[ref])) {
				fprintf(stderr,
					"mf-train: check-decrease "
					"failed: train RMSE %.6f after epoch %d"
					" is not below %.6f after epoch %d\n",
					job.rmse_train[E], E,
					job.rmse_train[ref], ref);
				ret = 1;
			} else {
				printf("mf-train: check-decrease passed: %.6f"
				       " -> %.6f\n",
				       job.rmse_train[ref], job.rmse_train[E]);
			}
		}
	}
	err = 0;
out:
#ifndef MF_NO_AUGUR
	if (job.node) {
		int serr = augur_node_stop(job.node);

		if (serr && !err) {
			fprintf(stderr, "mf-train: augur_node_stop: %s (%s)\n",
				augur_strerror(serr), augur_last_error());
			ret = 1;
		}
	}
#endif
	if (err)
		ret = 1;
	if (ws)
		for (int t = 0; t < job.W; t++) {
			free(ws[t].buf);
			free(ws[t].delta);
			free(ws[t].slot);
			free(ws[t].slot_keys);
		}
	free(ws);
	if (job.parts)
		for (int l = 0; l < job.W; l++)
			part_free(&job.parts[l]);
	free(job.parts);
	free(job.rmse_train);
	free(job.rmse_test);
	free(job.secs);
	free(job.model);
	free(tr.e);
	free(te.e);
	if (bar_ok)
		pthread_barrier_destroy(&job.bar);
	pthread_mutex_destroy(&job.lock);
	pthread_mutex_destroy(&job.claim_lock);
	return ret;
}
