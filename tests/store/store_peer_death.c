// SPDX-License-Identifier: MIT
/*
 * tests/store/store_peer_death.c - a node killed mid-job is noticed by the
 * others, which report which peer died and get -AUGUR_EPEER_GONE from the
 * API instead of hanging.  Run by peer_death.sh under augur-run -n 3: the
 * last rank SIGKILLs itself while the others keep pulling and pushing keys
 * homed on it.  Survivors print "node R: detected ..." and exit 3.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <augur/augur.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	struct augur_config cfg;
	struct augur_node *node;
	struct augur_worker *w;
	float v[4] = { 1, 1, 1, 1 }, buf[4];
	double t0;
	int rc, rank, size, victim;
	uint64_t k;

	memset(&cfg, 0, sizeof(cfg));
	cfg.num_keys = 300;
	cfg.value_len = 4;
	rc = augur_node_start(&cfg, &node);
	if (rc) {
		fprintf(stderr, "augur_node_start: %s (%s)\n",
			augur_strerror(rc), augur_last_error());
		return 1;
	}
	rank = augur_node_rank(node);
	size = augur_node_size(node);
	victim = size - 1;
	if (size < 2) {
		fprintf(stderr, "SKIP: needs augur-run -n >= 2\n");
		return 77;
	}
	augur_worker_create(node, &w);
	rc = augur_barrier(w);
	if (rc)
		return 1;
	if (rank == victim) {
		usleep(200000); /* let the others get going */
		raise(SIGKILL);
	}
	t0 = now_s();
	for (;;) {
		/* keys homed on the victim: key % size == victim */
		for (k = (uint64_t)victim; k < cfg.num_keys; k += (uint64_t)size) {
			rc = augur_push(w, &k, 1, v, 4);
			if (!rc)
				rc = augur_pull(w, &k, 1, buf, 4);
			if (!rc && (k / (uint64_t)size) % 8 == 0)
				rc = augur_wait_sync(w);
			if (rc)
				break;
		}
		if (rc)
			break;
		if (now_s() - t0 > 60) {
			fprintf(stderr, "node %d: FAIL: no error 60 s after "
					"the peer died\n",
				rank);
			return 1;
		}
	}
	printf("node %d: detected after %.2f s: %s: %s\n", rank, now_s() - t0,
	       augur_strerror(rc), augur_node_error(node));
	fflush(stdout);
	if (rc != -AUGUR_EPEER_GONE) {
		fprintf(stderr, "node %d: FAIL: expected -AUGUR_EPEER_GONE\n",
			rank);
		return 1;
	}
	augur_worker_destroy(w);
	rc = augur_node_stop(node);
	return rc == -AUGUR_EPEER_GONE ? 3 : 1;
}
