// SPDX-License-Identifier: MIT
/*
 * tests/bootstrap/boot_worker.c - one node of a bootstrap test job, started
 * by augur-run (directly from ctest, or by boot_launcher.c).
 *
 *   boot_worker allgather [ROUNDS]
 *	ROUNDS rounds (default 5) of allgathers of several lengths (0, 1, odd,
 *	a few KiB, 1 MiB: more than a socket buffer), each rank contributing
 *	bytes that depend on (rank, round, length), with barriers in between;
 *	every rank checks the whole array, and that aug_boot_check() stays 0
 *	and aug_boot_fd() quiet between collectives.  Exit 0 or 1.
 *   boot_worker die VICTIM barrier|poll RESULT_DIR
 *	After one barrier, rank VICTIM waits a little and exits with status 3
 *	without closing its bootstrap.  The others wait for the loss: in a
 *	second barrier ("barrier") or in a poll() loop on aug_boot_fd() with
 *	aug_boot_check() ("poll").  Each survivor writes RESULT_DIR/<rank>
 *	("ok dead=V ms=T" or "bad ..."), then exits with status 1 (it noticed a
 *	dead peer) after a short pause, so that augur-run reaps the victim
 *	first.
 *   boot_worker ignore VICTIM
 *	Rank VICTIM exits 5 after a barrier; the others ignore it and sleep
 *	forever (augur-run must kill them after its grace period).
 *   boot_worker hang
 *	Open the bootstrap, write one byte to fd $BOOT_READY_FD (if set), then
 *	sleep forever.
 *   boot_worker echo
 *	Print "hello from R" on stdout and "warn from R" on stderr.
 *   boot_worker env TRANSPORT|- FILE
 *	Check the environment augur-run gives (AUGUR_LOCAL_RANK, AUGUR_SIZE,
 *	AUGUR_TRANSPORT, AUGUR_RENDEZVOUS) and allgather the ranks; rank 0
 *	writes AUGUR_RENDEZVOUS into FILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"

static int rank = -1;

#define FAIL(...)                                                              \
	do {                                                                   \
		fprintf(stderr, "boot_worker rank %d: FAIL %s:%d: ", rank,     \
			__FILE__, __LINE__);                                   \
		fprintf(stderr, __VA_ARGS__);                                  \
		fprintf(stderr, "\n");                                         \
		exit(1);                                                       \
	} while (0)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static unsigned char pattern(int r, int round, size_t len, size_t i)
{
	return (unsigned char)(r * 131 + round * 17 + len * 7 + i * 13 + 1);
}

static struct aug_boot *open_or_die(void)
{
	struct aug_boot *b;
	int ret = aug_boot_open(&b);

	if (ret)
		FAIL("aug_boot_open: %d (%s)", ret, aug_boot_error());
	rank = aug_boot_rank(b);
	return b;
}

static void quiet(struct aug_boot *b)
{
	int dead, fd = aug_boot_fd(b), ret;
	struct pollfd p;

	ret = aug_boot_check(b, &dead);
	if (ret || dead != -1)
		FAIL("aug_boot_check between collectives: %d dead %d (%s)", ret,
		     dead, aug_boot_error());
	if (aug_boot_size(b) == 1) {
		if (fd != -ENOTCONN)
			FAIL("aug_boot_fd alone: %d, want -ENOTCONN", fd);
		return;
	}
	if (fd < 0)
		FAIL("aug_boot_fd: %d", fd);
	/* The fd must not say "look at me" while all is well: a rank 0
	 * poll loop would spin.  (On other ranks it may wake for a RESULT
	 * in flight, never between collectives.) */
	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	if (rank == 0 && poll(&p, 1, 0) != 0)
		FAIL("aug_boot_fd readable between collectives (revents %#x)",
		     p.revents);
}

static int do_allgather(int rounds)
{
	static const size_t lens[] = {0, 1, 7, 4096, 1u << 20};
	struct aug_boot *b = open_or_die();
	int size = aug_boot_size(b), round, r, ret;
	unsigned char *mine, *all;
	size_t l, i;

	mine = malloc(lens[4]);
	all = malloc(lens[4] * (size_t)size);
	if (!mine || !all)
		FAIL("out of memory");
	for (round = 0; round < rounds; round++) {
		for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			size_t len = lens[l];

			for (i = 0; i < len; i++)
				mine[i] = pattern(rank, round, len, i);
			memset(all, 0xee, len * (size_t)size);
			ret = aug_boot_allgather(b, mine, len, all);
			if (ret)
				FAIL("allgather round %d len %zu: %d (%s)",
				     round, len, ret, aug_boot_error());
			for (r = 0; r < size; r++)
				for (i = 0; i < len; i++)
					if (all[(size_t)r * len + i] !=
					    pattern(r, round, len, i))
						FAIL("round %d len %zu: byte "
						     "%zu of rank %d is %#x, "
						     "want %#x",
						     round, len, i, r,
						     all[(size_t)r * len + i],
						     pattern(r, round, len, i));
			quiet(b);
		}
		/* In place: mine inside all. */
		for (i = 0; i < 64; i++)
			all[(size_t)rank * 64 + i] =
			    pattern(rank, round, 64, i);
		ret = aug_boot_allgather(b, all + (size_t)rank * 64, 64, all);
		if (ret)
			FAIL("in-place allgather: %d (%s)", ret,
			     aug_boot_error());
		for (r = 0; r < size; r++)
			for (i = 0; i < 64; i++)
				if (all[(size_t)r * 64 + i] !=
				    pattern(r, round, 64, i))
					FAIL("in-place round %d: rank %d "
					     "byte %zu wrong",
					     round, r, i);
		ret = aug_boot_barrier(b);
		if (ret)
			FAIL("barrier: %d (%s)", ret, aug_boot_error());
		quiet(b);
	}
	ret = aug_boot_barrier(b);
	if (ret)
		FAIL("final barrier: %d (%s)", ret, aug_boot_error());
	aug_boot_close(b);
	free(mine);
	free(all);
	return 0;
}

static void report(const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void report(const char *dir, const char *fmt, ...)
{
	char path[4096];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%d", dir, rank);
	f = fopen(path, "w");
	if (!f)
		FAIL("cannot write %s", path);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static int do_die(int victim, const char *how, const char *dir)
{
	struct aug_boot *b = open_or_die();
	int ret, dead = -1, fd;
	int64_t t0;

	if (victim < 0 || victim >= aug_boot_size(b))
		FAIL("victim %d out of range", victim);
	ret = aug_boot_barrier(b);
	if (ret)
		FAIL("first barrier: %d (%s)", ret, aug_boot_error());
	if (rank == victim) {
		sleep_ms(200); /* die "later", while the others wait */
		_exit(3);
	}
	t0 = now_ms();
	if (!strcmp(how, "barrier")) {
		ret = aug_boot_barrier(b);
		if (ret != -AUGUR_EPEER_GONE) {
			report(dir, "bad barrier returned %d (%s)\n", ret,
			       ret ? aug_boot_error() : "");
			goto out;
		}
		ret = aug_boot_check(b, &dead);
	} else {
		fd = aug_boot_fd(b);
		for (;;) {
			struct pollfd p = {.fd = fd, .events = POLLIN};

			if (now_ms() - t0 > 10000)
				break;
			/* The timeout only bounds the test; the wake-up
			 * must come from the descriptor. */
			poll(&p, 1, 10000);
			ret = aug_boot_check(b, &dead);
			if (ret)
				break;
		}
	}
	if (ret != -AUGUR_EPEER_GONE || dead != victim) {
		report(dir, "bad check returned %d dead %d (%s)\n", ret, dead,
		       aug_boot_error());
		goto out;
	}
	/* Sticky: a later collective says the same. */
	ret = aug_boot_barrier(b);
	if (ret != -AUGUR_EPEER_GONE) {
		report(dir, "bad later barrier returned %d\n", ret);
		goto out;
	}
	report(dir, "ok dead=%d ms=%lld\n", dead, (long long)(now_ms() - t0));
	fprintf(stderr, "boot_worker rank %d: noticed: %s\n", rank,
		aug_boot_error());
out:
	sleep_ms(300); /* let augur-run reap the victim first */
	aug_boot_close(b);
	return 1;
}

static int do_ignore(int victim)
{
	struct aug_boot *b = open_or_die();
	int ret = aug_boot_barrier(b);

	if (ret)
		FAIL("barrier: %d (%s)", ret, aug_boot_error());
	if (rank == victim)
		_exit(5);
	for (;;)
		pause();
}

static int do_hang(void)
{
	struct aug_boot *b = open_or_die();
	const char *fd = getenv("BOOT_READY_FD");

	(void)b;
	if (fd && write(atoi(fd), "r", 1) != 1)
		FAIL("cannot signal readiness");
	for (;;)
		pause();
}

static int do_env(const char *transport, const char *file)
{
	const char *v;
	struct aug_boot *b = open_or_die();
	int size = aug_boot_size(b), *all, r, ret;

	v = getenv("AUGUR_LOCAL_RANK");
	if (!v || atoi(v) != rank)
		FAIL("AUGUR_LOCAL_RANK=%s, rank %d", v ? v : "(unset)", rank);
	v = getenv("AUGUR_SIZE");
	if (!v || atoi(v) != size)
		FAIL("AUGUR_SIZE=%s, size %d", v ? v : "(unset)", size);
	v = getenv("AUGUR_TRANSPORT");
	if (strcmp(transport, "-") ? !v || strcmp(v, transport) : !!v)
		FAIL("AUGUR_TRANSPORT=%s, want %s", v ? v : "(unset)",
		     transport);
	v = getenv("AUGUR_RENDEZVOUS");
	if (!v || strncmp(v, "unix:", 5))
		FAIL("AUGUR_RENDEZVOUS=%s", v ? v : "(unset)");
	if (rank == 0) {
		FILE *f = fopen(file, "w");

		if (!f || fprintf(f, "%s\n", v + 5) < 0 || fclose(f))
			FAIL("cannot write %s", file);
	}
	all = calloc((size_t)size, sizeof(*all));
	if (!all)
		FAIL("out of memory");
	ret = aug_boot_allgather(b, &rank, sizeof(rank), all);
	if (ret)
		FAIL("allgather: %d (%s)", ret, aug_boot_error());
	for (r = 0; r < size; r++)
		if (all[r] != r)
			FAIL("slot %d holds %d", r, all[r]);
	free(all);
	aug_boot_close(b);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "allgather"))
		return do_allgather(argc > 2 ? atoi(argv[2]) : 5);
	if (!strcmp(mode, "die") && argc == 5)
		return do_die(atoi(argv[2]), argv[3], argv[4]);
	if (!strcmp(mode, "ignore") && argc == 3)
		return do_ignore(atoi(argv[2]));
	if (!strcmp(mode, "hang"))
		return do_hang();
	if (!strcmp(mode, "echo")) {
		const char *r = getenv("AUGUR_RANK");

		printf("hello from %s\n", r ? r : "?");
		fprintf(stderr, "warn from %s\n", r ? r : "?");
		return 0;
	}
	if (!strcmp(mode, "env") && argc == 4)
		return do_env(argv[2], argv[3]);
	fprintf(stderr, "usage: boot_worker allgather [ROUNDS] | die VICTIM "
			"barrier|poll DIR | ignore VICTIM | hang | echo | "
			"env TRANSPORT|- FILE\n");
	return 2;
}
