/* SPDX-License-Identifier: MIT */
/*
 * tests/bootstrap/boot_test.h - tiny helpers shared by the bootstrap tests
 * (header-only, so each test stays one self-contained program).  A failed
 * CHECK prints where and why and makes the test exit 1 at the end.
 */
#ifndef AUGUR_TESTS_BOOT_TEST_H
#define AUGUR_TESTS_BOOT_TEST_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static int boot_test_failures;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__,          \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fprintf(stderr, "\n");                                 \
			boot_test_failures++;                                  \
		}                                                              \
	} while (0)

static inline int64_t bt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void bt_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

#endif /* AUGUR_TESTS_BOOT_TEST_H */
