// SPDX-License-Identifier: MIT
/*
 * perf/store_lat.c - parameter-store latency and throughput, with
 * references measured in the same run:
 *
 *   local pull   vs a plain memcpy of the same bytes (goal: <= 1.5x)
 *   remote pull  one-sided READ + validation (compare with ib_read_lat in
 *                the SoftRoCE guest: perf/softroce-lat.sh runs both)
 *   local push, remote push + wait_sync (ring, apply, credit round trip)
 *   batched remote pull and push throughput (keys/s)
 *
 * Run alone for the local figures, or under augur-run -n 2 for remote ones
 * too (rank 0 measures, rank 1 serves).  Times are taken over blocks of
 * operations (one clock read per block), so the clock does not dominate
 * the ~20 ns local operations; the median of the blocks is reported.
 *
 * usage: store_lat [-l FLOATS (32)] [-n ITERS] [--csv FILE]
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <augur/augur.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct res {
	double med, p99, min;
};

static struct res summarize(double *v, int n)
{
	struct res r;

	qsort(v, (size_t)n, sizeof(*v), cmpd);
	r.min = v[0];
	r.med = v[n / 2];
	r.p99 = v[(int)(n * 0.99)];
	return r;
}

#define CHECK(rc, what)                                                        \
	do {                                                                   \
		if (rc) {                                                      \
			fprintf(stderr, "%s: %s (%s)\n", what,                 \
				augur_strerror(rc), augur_last_error());       \
			exit(1);                                               \
		}                                                              \
	} while (0)

static FILE *csv;

static void report(const char *name, struct res r, const char *unit)
{
	printf("%-28s %10.1f %10.1f %10.1f   %s\n", name, r.min, r.med, r.p99,
	       unit);
	if (csv)
		fprintf(csv, "%s,%.2f,%.2f,%.2f,%s\n", name, r.min, r.med,
			r.p99, unit);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "csv", 1, 0, 'c' }, { 0 } };
	struct augur_config cfg;
	struct augur_node *node;
	struct augur_worker *w;
	uint32_t len = 32;
	int iters = 0, blocks = 200, c, rc, b, i, size;
	double *samp;
	float *src, *dst, *buf;
	uint64_t klocal = 0, kremote = 1;
	volatile float sink = 0;

	while ((c = getopt_long(argc, argv, "l:n:", lo, NULL)) != -1) {
		switch (c) {
		case 'l': len = (uint32_t)atoi(optarg); break;
		case 'n': iters = atoi(optarg); break;
		case 'c': csv = fopen(optarg, "a"); break;
		default:
			fprintf(stderr, "usage: %s [-l floats] [-n iters] "
					"[--csv file]\n",
				argv[0]);
			return 2;
		}
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.num_keys = 4096;
	cfg.value_len = len;
	cfg.mode = AUGUR_MODE_STATIC;
	rc = augur_node_start(&cfg, &node);
	CHECK(rc, "augur_node_start");
	size = augur_node_size(node);
	rc = augur_worker_create(node, &w);
	CHECK(rc, "worker_create");
	rc = augur_barrier(w);
	CHECK(rc, "barrier");
	if (augur_node_rank(node) != 0) {
		/* serve: rank 0 reads and writes our memory */
		rc = augur_barrier(w);
		CHECK(rc, "barrier");
		goto out;
	}
	samp = calloc((size_t)blocks, sizeof(*samp));
	src = calloc(len * 64, sizeof(float));
	dst = calloc(len * 64, sizeof(float));
	buf = calloc(len * 64, sizeof(float));
	printf("# store_lat: %u floats (%u B) per key, %d node(s), transport "
	       "%s\n",
	       len, len * 4, size,
	       getenv("AUGUR_TRANSPORT") ? getenv("AUGUR_TRANSPORT") : "shm");
	printf("%-28s %10s %10s %10s\n", "#operation", "min", "median", "p99");

	/* local pull vs memcpy, interleaved per block so noise hits both */
	{
		int per = iters ? iters : 2000;
		double *m = calloc((size_t)blocks, sizeof(*m));
		struct res rp, rm;

		for (b = 0; b < blocks; b++) {
			double t0 = now_ns();
			for (i = 0; i < per; i++) {
				memcpy(dst, src, len * 4);
				__asm__ __volatile__("" ::"r"(dst) : "memory");
			}
			m[b] = (now_ns() - t0) / per;
			t0 = now_ns();
			for (i = 0; i < per; i++) {
				rc = augur_pull(w, &klocal, 1, buf, len);
				__asm__ __volatile__("" ::"r"(buf) : "memory");
			}
			samp[b] = (now_ns() - t0) / per;
			CHECK(rc, "pull");
		}
		sink += dst[0] + buf[0];
		rm = summarize(m, blocks);
		rp = summarize(samp, blocks);
		report("memcpy (reference)", rm, "ns/op");
		report("local pull", rp, "ns/op");
		printf("ratio local_pull/memcpy median: %.2f (goal <= 1.5)\n",
		       rp.med / rm.med);
		if (csv)
			fprintf(csv, "ratio_local_pull_memcpy,%.3f\n",
				rp.med / rm.med);
		free(m);
	}
	/* local push */
	{
		int per = iters ? iters : 2000;

		for (b = 0; b < blocks; b++) {
			double t0 = now_ns();
			for (i = 0; i < per; i++)
				rc = augur_push(w, &klocal, 1, src, len);
			samp[b] = (now_ns() - t0) / per;
			CHECK(rc, "push");
		}
		report("local push", summarize(samp, blocks), "ns/op");
	}
	if (size > 1) {
		int per = iters ? iters / 20 + 1 : 50;
		uint64_t keys[64];

		/* remote pull: one key, one round trip */
		for (b = 0; b < blocks; b++) {
			double t0 = now_ns();
			for (i = 0; i < per; i++)
				rc = augur_pull(w, &kremote, 1, buf, len);
			samp[b] = (now_ns() - t0) / per / 1000.0;
			CHECK(rc, "remote pull");
		}
		report("remote pull", summarize(samp, blocks), "us/op");
		/* remote push + wait_sync: ring write, apply, credit back */
		for (b = 0; b < blocks; b++) {
			double t0 = now_ns();
			for (i = 0; i < per; i++) {
				rc = augur_push(w, &kremote, 1, src, len);
				if (!rc)
					rc = augur_wait_sync(w);
			}
			samp[b] = (now_ns() - t0) / per / 1000.0;
			CHECK(rc, "remote push");
		}
		report("remote push+sync", summarize(samp, blocks), "us/op");
		/* batched: 64 remote keys per call */
		for (i = 0; i < 64; i++)
			keys[i] = (uint64_t)(1 + i * size) % 4096;
		for (i = 0; i < 64; i++)
			if (keys[i] % (uint64_t)size == 0)
				keys[i]++;
		for (b = 0; b < blocks / 4; b++) {
			double t0 = now_ns();
			rc = augur_pull(w, keys, 64, buf, 64 * len);
			samp[b] = 64e3 / (now_ns() - t0); /* Mkeys/s */
			CHECK(rc, "batched pull");
		}
		report("batched remote pull (64)", summarize(samp, blocks / 4),
		       "Mkeys/s");
		for (b = 0; b < blocks / 4; b++) {
			double t0 = now_ns();
			for (i = 0; i < 16; i++)
				rc = augur_push(w, keys, 64, buf, 64 * len);
			if (!rc)
				rc = augur_wait_sync(w);
			samp[b] = 16 * 64e3 / (now_ns() - t0);
			CHECK(rc, "batched push");
		}
		report("batched remote push (1024)",
		       summarize(samp, blocks / 4), "Mkeys/s");
	}
	free(samp);
	free(src);
	free(dst);
	free(buf);
	rc = augur_barrier(w);
	CHECK(rc, "barrier");
out:
	augur_worker_destroy(w);
	rc = augur_node_stop(node);
	CHECK(rc, "stop");
	if (csv)
		fclose(csv);
	return sink == 12345.0f;
}
