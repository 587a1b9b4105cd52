// SPDX-License-Identifier: MIT
/*
 * tests/store/store_invariants.c - the parameter store's contract, checked
 * on several nodes at once (run under augur-run -n N).
 *
 *  1. read your writes: each worker sets and pushes keys (local and remote)
 *     and immediately pulls them back;
 *  2. no lost updates: every worker pushes integer deltas to Zipf-skewed
 *     keys while pulling; after wait_sync + barrier every key equals its
 *     initial value plus the sum of all deltas.  Each worker's deltas come
 *     from a generator seeded with its id, so every worker can replay
 *     everybody's stream and knows the exact expected value without any
 *     communication;
 *  3. torn reads: writers keep overwriting "hot" keys with constant
 *     vectors (every component equal) while readers on all nodes pull them:
 *     a value mixing two writes would have unequal components;
 *  4. read your writes across relocations: NPRIV "private" keys each have
 *     one writer, which pushes and at once pulls them back (exact value
 *     known), while every worker signals intents for random private keys,
 *     so they move between nodes and get replicas under their writer.
 *
 * Per-key value lengths vary (1..8 floats, hot keys 64) to exercise the
 * layout.  Exits 0 on success, 1 with a message on the first violation.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <augur/augur.h>

#define NKEYS 2000
#define NPRIV 240 /* private keys NKEYS.. (part 4) */
#define NALL (NKEYS + NPRIV)
#define NHOT 8
#define HOT_LEN 64
#define WORKERS 2

static int ops_per_worker = 20000;
static int mode = AUGUR_MODE_STATIC;
static uint32_t uniform; /* every key this long (0: varied) */
static uint32_t hot_len = HOT_LEN; /* hot keys' length */
static uint32_t len_step = 1; /* non-hot lengths 1 + k % 8, or step x (1 + k % 8) */
#define BLOCK 64 /* operations per clock; intents one block ahead */
static struct augur_node *node;
static uint32_t lens[NALL];
static double zipf_cdf[NKEYS];
static int failed;

#define FAIL(fmt, ...)                                                         \
	do {                                                                   \
		fprintf(stderr, "FAIL node %d: " fmt "\n",                     \
			augur_node_rank(node), ##__VA_ARGS__);                 \
		__atomic_store_n(&failed, 1, __ATOMIC_RELAXED);                \
	} while (0)

#define CHECK_RC(rc, what)                                                     \
	do {                                                                   \
		if (rc) {                                                      \
			FAIL("%s: %s (%s)", what, augur_strerror(rc),          \
			     augur_last_error());                              \
			return NULL;                                           \
		}                                                              \
	} while (0)

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t zipf_key(uint64_t *s)
{
	double u = (double)(splitmix(s) >> 11) / 9007199254740992.0;
	uint32_t lo = 0, hi = NKEYS - 1;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (zipf_cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* scatter popular ranks over the key space (and so over nodes) */
	return (uint32_t)(((uint64_t)lo * 7919u) % NKEYS);
}

static int is_hot(uint32_t key)
{
	return key >= NKEYS - NHOT && key < NKEYS;
}

static float init_val(uint64_t key, uint32_t i)
{
	if (is_hot((uint32_t)key))
		return (float)(key % 97); /* hot keys: constant vectors */
	return (float)(key % 97) + (float)i;
}

/* Is @v key @k's value after deltas summing to @sum, i.e. init + sum x
 * (1, 2, 3, ...)?  Reports the first wrong component, under @what. */
static void check_value(uint64_t k, const float *v, double sum,
			const char *what)
{
	uint32_t j;

	for (j = 0; j < lens[k]; j++) {
		double want = init_val(k, j) + sum * (j + 1);

		if (v[j] != (float)want) {
			FAIL("%s: key %llu[%u] = %g, expected %g", what,
			     (unsigned long long)k, j, v[j], want);
			return;
		}
	}
}

static void init_fn(uint64_t key, float *v, uint32_t len, void *arg)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		v[i] = init_val(key, i);
}

/* The delta stream of worker @gid: (key, integer delta). */
struct stream {
	uint64_t s;
};

static void stream_next(struct stream *st, uint32_t *key, int *d)
{
	do {
		*key = zipf_key(&st->s);
	} while (is_hot(*key));
	*d = (int)(splitmix(&st->s) % 5) - 2; /* -2..2 */
}

static void *worker_main(void *arg)
{
	int total_workers = augur_node_size(node) * WORKERS;
	struct augur_worker *w;
	struct stream st, ahead;
	uint64_t prng; /* part 4's draws, apart from the replayed streams */
	float *buf, *delta;
	double *expect;
	uint64_t k;
	int rc, i, g;

	(void)arg;
	rc = augur_worker_create(node, &w);
	CHECK_RC(rc, "worker_create");
	buf = calloc(3 * HOT_LEN + 8 * len_step + 3 * uniform, sizeof(float));
	delta = calloc(3 * HOT_LEN + 8 * len_step + 3 * uniform, sizeof(float));
	expect = calloc(NALL, sizeof(double));

	/* 1. read your writes, on keys only this worker touches */
	for (k = (uint64_t)augur_worker_id(w); k < NKEYS - NHOT;
	     k += (uint64_t)total_workers * 7) {
		uint32_t len = lens[k], j;

		for (j = 0; j < len; j++)
			delta[j] = 1000.0f + (float)j;
		rc = augur_set(w, &k, 1, delta, len);
		CHECK_RC(rc, "set");
		rc = augur_pull(w, &k, 1, buf, len);
		CHECK_RC(rc, "pull after set");
		for (j = 0; j < len; j++)
			if (buf[j] != 1000.0f + (float)j)
				FAIL("RYW after set: key %llu[%u] = %g",
				     (unsigned long long)k, j, buf[j]);
		for (j = 0; j < len; j++)
			delta[j] = 0.5f;
		rc = augur_push(w, &k, 1, delta, len);
		CHECK_RC(rc, "push");
		rc = augur_pull(w, &k, 1, buf, len);
		CHECK_RC(rc, "pull after push");
		for (j = 0; j < len; j++)
			if (buf[j] != 1000.5f + (float)j)
				FAIL("RYW after push: key %llu[%u] = %g",
				     (unsigned long long)k, j, buf[j]);
		/* restore the initial value for phase 2 */
		for (j = 0; j < len; j++)
			delta[j] = init_val(k, j);
		rc = augur_set(w, &k, 1, delta, len);
		CHECK_RC(rc, "set back");
	}
	rc = augur_wait_sync(w);
	CHECK_RC(rc, "wait_sync");
	rc = augur_barrier(w);
	CHECK_RC(rc, "barrier 1");

	/* 2 + 3. pushes to skewed keys; hot keys overwritten and read.  In
	 * the adaptive modes every worker signals, one block ahead, the keys
	 * of its next block (a replay of its own stream), so keys relocate
	 * and replicas come and go all the time while everyone pushes. */
	st.s = 0x1234 + (uint64_t)augur_worker_id(w);
	ahead.s = st.s;
	prng = 0x5eed + (uint64_t)augur_worker_id(w);
	for (i = 0; i < ops_per_worker; i++) {
		uint32_t key, j;
		uint64_t k64;
		int d;

		if (mode != AUGUR_MODE_STATIC && i % BLOCK == 0) {
			int64_t c = augur_current_clock(w);
			uint64_t ik[BLOCK];
			int q;

			for (q = 0; q < BLOCK; q++) {
				uint32_t kk;
				int dd;
				stream_next(&ahead, &kk, &dd);
				ik[q] = kk;
			}
			/* block b's keys: clocks [b, b+2) (two clocks: every key
			 * counts as used enough to move), signalled at b-1 */
			rc = augur_intent(w, ik, BLOCK, c + 1, c + 3);
			CHECK_RC(rc, "intent");
			/* part 4: pull some private keys (anyone's) here */
			for (q = 0; q < 8; q++)
				ik[q] = NKEYS + splitmix(&prng) % NPRIV;
			rc = augur_intent(w, ik, 8, c + 1, c + 3);
			CHECK_RC(rc, "intent (private)");
			rc = augur_advance_clock(w);
			CHECK_RC(rc, "advance_clock");
		}
		if (mode != AUGUR_MODE_STATIC && i == ops_per_worker / 2) {
			/* from here on every node wants every key until
			 * the end: replicas everywhere stay live through the
			 * final wait_sync + barrier + check, which must see
			 * every node's pushes (convergence) */
			int64_t c = augur_current_clock(w);
			uint64_t ak;

			for (ak = 0; ak < NKEYS - NHOT; ak++) {
				rc = augur_intent(w, &ak, 1, c + 1, INT64_MAX);
				CHECK_RC(rc, "intent (all keys)");
			}
		}
		if (i % 4 == 1 && NPRIV / total_workers > 0) {
			/* 4. one of this worker's private keys: push, and
			 * read it back exactly, wherever it lives now */
			uint64_t pk = NKEYS + (uint64_t)augur_worker_id(w) +
				      (uint64_t)total_workers *
					  (splitmix(&prng) %
					   (NPRIV / total_workers));
			int pd = (int)(splitmix(&prng) % 5) - 2;

			for (j = 0; j < lens[pk]; j++)
				delta[j] = (float)(pd * (int)(j + 1));
			rc = augur_push(w, &pk, 1, delta, lens[pk]);
			CHECK_RC(rc, "push private");
			expect[pk] += pd;
			rc = augur_pull(w, &pk, 1, buf, lens[pk]);
			CHECK_RC(rc, "pull private");
			check_value(pk, buf, expect[pk],
				    "read your writes (private key)");
		}
		stream_next(&st, &key, &d);
		k64 = key;
		for (j = 0; j < lens[key]; j++)
			delta[j] = (float)(d * (int)(j + 1));
		rc = augur_push(w, &k64, 1, delta, lens[key]);
		CHECK_RC(rc, "push");
		if (i % 16 == 0) {
			/* overwrite a hot key with a constant vector */
			uint64_t hk = NKEYS - NHOT + (uint64_t)(i / 16) % NHOT;
			float v = (float)(augur_worker_id(w) * 1000000 + i);

			for (j = 0; j < hot_len; j++)
				delta[j] = v;
			rc = augur_set(w, &hk, 1, delta, hot_len);
			CHECK_RC(rc, "set hot");
		}
		if (i % 8 == 0) {
			/* pull two hot keys and a random key; hot must be
			 * constant vectors */
			uint64_t keys[3];
			size_t tot;

			keys[0] = NKEYS - NHOT + (uint64_t)i % NHOT;
			keys[1] = NKEYS - NHOT + (uint64_t)(i + 3) % NHOT;
			keys[2] = key;
			tot = 2 * hot_len + lens[key];
			rc = augur_pull(w, keys, 3, buf, tot);
			CHECK_RC(rc, "pull hot");
			for (j = 1; j < 2 * hot_len; j++) {
				if (j == hot_len)
					continue;
				if (buf[j] != buf[j < hot_len ? 0 : hot_len]) {
					FAIL("torn read of hot key %llu: "
					     "[%u]=%g vs %g",
					     (unsigned long long)keys[j / hot_len],
					     j, buf[j],
					     buf[j < hot_len ? 0 : hot_len]);
					break;
				}
			}
			/* the random key: whatever pushes it reflects, it
			 * is init + S x (1, 2, 3, ...) for one integer S
			 * with |S| <= 2 x all pushes: a torn, zeroed, stale
			 * slot or foreign value breaks the pattern */
			{
				const float *v = buf + 2 * hot_len;
				double s0 = (double)v[0] - init_val(key, 0);
				double lim = 2.0 * ops_per_worker * total_workers;

				if (s0 != (double)(long)s0 || s0 > lim ||
				    s0 < -lim)
					FAIL("pulled key %u[0] = %g: not init + "
					     "an integer sum of deltas",
					     key, v[0]);
				check_value(key, v, s0,
					    "pulled value is not one state");
			}
		}
		if (mode == AUGUR_MODE_STATIC && i % 1000 == 0)
			augur_advance_clock(w);
	}
	rc = augur_wait_sync(w);
	CHECK_RC(rc, "wait_sync 2");
	rc = augur_barrier(w);
	CHECK_RC(rc, "barrier 2");

	/* replay everybody's stream: expected = initial + sum of deltas */
	for (g = 0; g < total_workers; g++) {
		struct stream r = { 0x1234 + (uint64_t)g };
		for (i = 0; i < ops_per_worker; i++) {
			uint32_t key;
			int d;
			stream_next(&r, &key, &d);
			expect[key] += d;
		}
	}
	for (k = 0; k < NKEYS - NHOT; k++) {
		rc = augur_pull(w, &k, 1, buf, lens[k]);
		CHECK_RC(rc, "final pull");
		check_value(k, buf, expect[k], "lost update");
	}
	/* 4. this worker's private keys, exactly */
	for (k = NKEYS + (uint64_t)augur_worker_id(w); k < NALL;
	     k += (uint64_t)total_workers) {
		if (k >= NKEYS + (uint64_t)total_workers *
					 (NPRIV / (uint64_t)total_workers))
			break;
		rc = augur_pull(w, &k, 1, buf, lens[k]);
		CHECK_RC(rc, "final pull (private)");
		check_value(k, buf, expect[k], "private key at the end");
	}
	rc = augur_barrier(w);
	CHECK_RC(rc, "barrier 3");
	augur_worker_destroy(w);
	free(buf);
	free(delta);
	free(expect);
	return NULL;
}

int main(int argc, char **argv)
{
	struct augur_config cfg;
	pthread_t th[WORKERS];
	struct augur_stats s;
	double sum = 0;
	int i, rc;

	if (argc > 1)
		ops_per_worker = atoi(argv[1]);
	if (argc > 2) {
		static const char *names[] = { "adaptive", "static",
					       "replicate", "relocate" };
		for (i = 0; i < 4; i++)
			if (!strcmp(argv[2], names[i]))
				mode = i;
	}
	/* "long": values of 32..256 floats (as KGE's 256-float embeddings),
	 * so that replica and relocation slots span many cache lines */
	if (argc > 3 && !strcmp(argv[3], "long"))
		len_step = 32;
	/* "uniformN": every key N floats (the store's uniform layout) */
	if (argc > 3 && !strncmp(argv[3], "uniform", 7))
		uniform = (uint32_t)atoi(argv[3] + 7);
	for (i = NKEYS; i < NALL; i++)
		lens[i] = uniform ? uniform : 4;
	for (i = 0; i < NKEYS; i++) {
		lens[i] = uniform	      ? uniform
			  : is_hot((uint32_t)i) ? HOT_LEN
					      : len_step == 1 ? 1 + (uint32_t)i % 8
							      : len_step * (1 + (uint32_t)i % 8);
		sum += pow(i + 1, -1.1);
		zipf_cdf[i] = sum;
	}
	for (i = 0; i < NKEYS; i++)
		zipf_cdf[i] /= sum;
	hot_len = lens[NKEYS - 1];

	memset(&cfg, 0, sizeof(cfg));
	cfg.num_keys = NALL;
	cfg.value_lens = lens;
	cfg.num_workers = WORKERS;
	cfg.init = init_fn;
	cfg.mode = mode;
	if (argc > 4) /* room for relocated keys and replicas, in slots */
		cfg.extra_slots = (uint64_t)atoll(argv[4]);
	rc = augur_node_start(&cfg, &node);
	if (rc) {
		fprintf(stderr, "FAIL: augur_node_start: %s (%s)\n",
			augur_strerror(rc), augur_last_error());
		return 1;
	}
	for (i = 0; i < WORKERS; i++)
		pthread_create(&th[i], NULL, worker_main, NULL);
	for (i = 0; i < WORKERS; i++)
		pthread_join(th[i], NULL);
	augur_stats(node, &s);
	printf("node %d/%d: pulls %llu local %llu remote, pushes %llu local "
	       "%llu remote, %llu msgs, %llu applied here, %llu torn "
	       "retries, %llu relocations, %llu replicas, %llu forwards\n",
	       augur_node_rank(node), augur_node_size(node),
	       (unsigned long long)s.pulls_local,
	       (unsigned long long)s.pulls_remote,
	       (unsigned long long)s.pushes_local,
	       (unsigned long long)s.pushes_remote,
	       (unsigned long long)s.msgs_sent,
	       (unsigned long long)s.updates_applied,
	       (unsigned long long)s.torn_retries,
	       (unsigned long long)s.relocations,
	       (unsigned long long)s.replicas,
	       (unsigned long long)s.forwards);
	if (augur_node_size(node) > 1 && (!s.pulls_remote || !s.pushes_remote))
		FAIL("no remote traffic: the test did not test anything remote");
	rc = augur_node_stop(node);
	if (rc) {
		fprintf(stderr, "FAIL: augur_node_stop: %s\n",
			augur_strerror(rc));
		return 1;
	}
	if (failed)
		return 1;
	printf("node ok\n");
	return 0;
}
