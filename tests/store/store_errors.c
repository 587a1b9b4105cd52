// SPDX-License-Identifier: MIT
/*
 * tests/store/store_errors.c - misuse gets the documented error code, and
 * nothing is half-applied.  Runs alone or under augur-run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <augur/augur.h>

static int fails;

#define EXPECT(call, want)                                                     \
	do {                                                                   \
		int rc_ = (call);                                              \
		if (rc_ != (want)) {                                           \
			fprintf(stderr, "FAIL %s:%d: %s = %d (%s), want %d "   \
					"(%s)\n",                              \
				__FILE__, __LINE__, #call, rc_,                \
				augur_strerror(rc_), (want),                   \
				augur_strerror(want));                         \
			fails++;                                               \
		}                                                              \
	} while (0)

static void init_fn(uint64_t key, float *v, uint32_t len, void *arg)
{
	uint32_t i;

	(void)arg;
	for (i = 0; i < len; i++)
		v[i] = (float)key;
}

int main(void)
{
	struct augur_config cfg;
	struct augur_node *node;
	struct augur_worker *w, *w2, *w3;
	augur_ticket_t t;
	uint64_t keys[3] = { 1, 2, 3 }, bad[2] = { 1, 100 };
	float buf[16], v[16];
	int i;

	memset(&cfg, 0, sizeof(cfg));
	EXPECT(augur_node_start(&cfg, &node), -EINVAL); /* num_keys 0 */
	EXPECT(augur_node_start(NULL, &node), -EINVAL);
	cfg.num_keys = 100;
	cfg.mode = 42;
	EXPECT(augur_node_start(&cfg, &node), -EINVAL);
	cfg.mode = 0;
	cfg.num_workers = 1000;
	EXPECT(augur_node_start(&cfg, &node), -EINVAL);
	cfg.num_workers = 2;
	cfg.value_len = 4;
	cfg.init = init_fn;
	cfg.transport = "nonexistent";
	EXPECT(augur_node_start(&cfg, &node), -AUGUR_ENO_TRANSPORT);
	if (!strstr(augur_last_error(), "shm"))
		fprintf(stderr, "FAIL: error does not list providers: %s\n",
			augur_last_error()), fails++;
	cfg.transport = NULL;

	EXPECT(augur_node_start(&cfg, &node), 0);
	if (fails)
		return 1;
	EXPECT(augur_worker_create(node, &w), 0);
	EXPECT(augur_worker_create(node, &w2), 0);
	EXPECT(augur_worker_create(node, &w3), -EBUSY);

	for (i = 0; i < 16; i++)
		v[i] = 1.0f;
	/* key out of range: nothing applied, even for the valid first key */
	EXPECT(augur_push(w, bad, 2, v, 8), -AUGUR_EKEY_RANGE);
	EXPECT(augur_pull(w, bad, 2, buf, 8), -AUGUR_EKEY_RANGE);
	EXPECT(augur_set(w, bad, 2, v, 8), -AUGUR_EKEY_RANGE);
	EXPECT(augur_intent(w, bad, 2, 0, 1), -AUGUR_EKEY_RANGE);
	/* wrong value length */
	EXPECT(augur_push(w, keys, 3, v, 11), -AUGUR_EVALUE_LEN);
	EXPECT(augur_pull(w, keys, 3, buf, 13), -AUGUR_EVALUE_LEN);
	EXPECT(augur_pull_async(w, keys, 3, buf, 4, &t), -AUGUR_EVALUE_LEN);
	/* NULLs and nonsense */
	EXPECT(augur_pull(w, NULL, 3, buf, 12), -EINVAL);
	EXPECT(augur_push(w, keys, 3, NULL, 12), -EINVAL);
	EXPECT(augur_intent(w, keys, 3, 5, 2), -EINVAL);
	EXPECT(augur_wait(w, 12345), -EINVAL);
	/* nothing was applied by the failed calls */
	EXPECT(augur_pull(w, keys, 1, buf, 4), 0);
	for (i = 0; i < 4; i++)
		if (buf[i] != 1.0f) {
			fprintf(stderr, "FAIL: key 1 changed to %g\n", buf[i]);
			fails++;
			break;
		}
	/* async pull + wait; waiting twice is fine */
	EXPECT(augur_pull_async(w, keys, 3, buf, 12, &t), 0);
	EXPECT(augur_wait(w, t), 0);
	EXPECT(augur_wait(w, t), 0);
	if (buf[4] != 2.0f || buf[8] != 3.0f)
		fprintf(stderr, "FAIL: async pull values\n"), fails++;
	if (augur_value_len(node, 5) != 4 || augur_value_len(node, 100) != 0)
		fprintf(stderr, "FAIL: augur_value_len\n"), fails++;

	/* stop refuses while workers exist */
	EXPECT(augur_node_stop(node), -EBUSY);
	augur_worker_destroy(w2);
	EXPECT(augur_pull(w2, keys, 1, buf, 4), -AUGUR_ESHUTDOWN);
	augur_worker_destroy(w);
	EXPECT(augur_node_stop(node), 0);
	/* stale handles after stop */
	EXPECT(augur_pull(w, keys, 1, buf, 4), -AUGUR_ESHUTDOWN);
	EXPECT(augur_push(w, keys, 1, v, 4), -AUGUR_ESHUTDOWN);
	EXPECT(augur_barrier(w), -AUGUR_ESHUTDOWN);
	EXPECT(augur_worker_create(node, &w3), -AUGUR_ESHUTDOWN);

	/* size > 1 without a rendezvous: a clear -EINVAL */
	setenv("AUGUR_SIZE", "2", 1);
	setenv("AUGUR_RANK", "0", 1);
	unsetenv("AUGUR_RENDEZVOUS");
	EXPECT(augur_node_start(&cfg, &node), -EINVAL);
	if (!strstr(augur_last_error(), "AUGUR_RENDEZVOUS"))
		fprintf(stderr, "FAIL: error does not name AUGUR_RENDEZVOUS: "
				"%s\n",
			augur_last_error()),
			fails++;

	if (fails) {
		fprintf(stderr, "%d failures\n", fails);
		return 1;
	}
	printf("store_errors: ok\n");
	return 0;
}
