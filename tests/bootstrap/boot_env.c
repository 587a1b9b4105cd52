// SPDX-License-Identifier: MIT
/*
 * tests/bootstrap/boot_env.c - where rank and size come from, in one
 * process: precedence AUGUR_ > OMPI_ > PMI_ > SLURM_ (srun steps only),
 * malformed and half-set variables, size > 1 without AUGUR_RENDEZVOUS,
 * malformed AUGUR_RENDEZVOUS and AUGUR_BOOT_TIMEOUT, and a job of one
 * (no sockets: allgather copies, barrier and check are no-ops).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "boot_test.h"

static const char *const vars[] = {
    "AUGUR_RANK",
    "AUGUR_SIZE",
    "AUGUR_RENDEZVOUS",
    "AUGUR_BOOT_TIMEOUT",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_STEP_ID",
    "SLURM_STEPID",
};

static void clear_env(void)
{
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

/* Set pairs of NAME, VALUE (NULL-terminated) on a clean environment. */
static void set_env(const char *name, ...)
{
	va_list ap;
	const char *v;

	clear_env();
	va_start(ap, name);
	while (name) {
		v = va_arg(ap, const char *);
		setenv(name, v, 1);
		name = va_arg(ap, const char *);
	}
	va_end(ap);
}

/* Expect aug_boot_identity() to give @rank/@size from a source naming
 * @src_has. */
static void expect_id(int line, int rank, int size, const char *src_has)
{
	const char *src = NULL;
	int r = -1, s = -1, ret = aug_boot_identity(&r, &s, &src);

	CHECK(!ret && r == rank && s == size && src && strstr(src, src_has),
	      "line %d: identity %d: rank %d size %d source '%s', want %d/%d "
	      "from %s (%s)",
	      line, ret, r, s, src ? src : "(null)", rank, size, src_has,
	      ret ? aug_boot_error() : "");
}

static void expect_bad_id(int line, const char *msg_has)
{
	int r, s, ret = aug_boot_identity(&r, &s, NULL);

	CHECK(ret == -EINVAL && strstr(aug_boot_error(), msg_has),
	      "line %d: identity returned %d, want -EINVAL mentioning '%s' "
	      "(%s)",
	      line, ret, msg_has, aug_boot_error());
}

static void expect_open_fails(int line, int code, const char *msg_has)
{
	struct aug_boot *b = (struct aug_boot *)1;
	int ret = aug_boot_open(&b);

	CHECK(ret == code && b == NULL && strstr(aug_boot_error(), msg_has),
	      "line %d: open returned %d (handle %p), want %d mentioning "
	      "'%s' (%s)",
	      line, ret, (void *)b, code, msg_has, aug_boot_error());
	if (!ret)
		aug_boot_close(b);
}

static void test_precedence(void)
{
	set_env(NULL);
	expect_id(__LINE__, 0, 1, "alone");

	set_env("AUGUR_RANK", "1", "AUGUR_SIZE", "3", "OMPI_COMM_WORLD_RANK",
		"2", "OMPI_COMM_WORLD_SIZE", "4", "PMI_RANK", "3", "PMI_SIZE",
		"5", "SLURM_PROCID", "4", "SLURM_NTASKS", "6", "SLURM_STEP_ID",
		"0", NULL);
	expect_id(__LINE__, 1, 3, "AUGUR_RANK");

	set_env("OMPI_COMM_WORLD_RANK", "2", "OMPI_COMM_WORLD_SIZE", "4",
		"PMI_RANK", "3", "PMI_SIZE", "5", "SLURM_PROCID", "4",
		"SLURM_NTASKS", "6", "SLURM_STEP_ID", "0", NULL);
	expect_id(__LINE__, 2, 4, "OMPI_COMM_WORLD");

	set_env("PMI_RANK", "3", "PMI_SIZE", "5", "SLURM_PROCID", "4",
		"SLURM_NTASKS", "6", "SLURM_STEP_ID", "0", NULL);
	expect_id(__LINE__, 3, 5, "PMI_RANK");

	set_env("SLURM_PROCID", "4", "SLURM_NTASKS", "6", "SLURM_STEP_ID", "0",
		NULL);
	expect_id(__LINE__, 4, 6, "SLURM_NTASKS");
	/* The step's size wins over the allocation's. */
	set_env("SLURM_PROCID", "1", "SLURM_NTASKS", "6",
		"SLURM_STEP_NUM_TASKS", "2", "SLURM_STEPID", "3", NULL);
	expect_id(__LINE__, 1, 2, "SLURM_STEP_NUM_TASKS");
	/* A batch script's shell (no srun step) is not a task. */
	set_env("SLURM_PROCID", "0", "SLURM_NTASKS", "6", NULL);
	expect_id(__LINE__, 0, 1, "alone");

	/* A launcher pair that is only half there is not used. */
	set_env("OMPI_COMM_WORLD_RANK", "2", "PMI_RANK", "1", "PMI_SIZE", "2",
		NULL);
	expect_id(__LINE__, 1, 2, "PMI_RANK");
	/* Empty means unset. */
	set_env("AUGUR_RANK", "", "AUGUR_SIZE", "", "OMPI_COMM_WORLD_RANK", "0",
		"OMPI_COMM_WORLD_SIZE", "2", NULL);
	expect_id(__LINE__, 0, 2, "OMPI_COMM_WORLD");
	/* AUGUR_SIZE=1 wins over mpirun's size: alone, though launched. */
	set_env("AUGUR_RANK", "0", "AUGUR_SIZE", "1", "OMPI_COMM_WORLD_RANK",
		"3", "OMPI_COMM_WORLD_SIZE", "4", NULL);
	expect_id(__LINE__, 0, 1, "AUGUR_RANK");
}

static void test_malformed(void)
{
	set_env("AUGUR_RANK", "1", NULL);
	expect_bad_id(__LINE__, "AUGUR_SIZE");
	set_env("AUGUR_SIZE", "4", NULL);
	expect_bad_id(__LINE__, "AUGUR_RANK");
	set_env("AUGUR_RANK", "4", "AUGUR_SIZE", "4", NULL);
	expect_bad_id(__LINE__, "out of range");
	set_env("AUGUR_RANK", "-1", "AUGUR_SIZE", "4", NULL);
	expect_bad_id(__LINE__, "AUGUR_RANK");
	set_env("AUGUR_RANK", "0", "AUGUR_SIZE", "0", NULL);
	expect_bad_id(__LINE__, "AUGUR_SIZE");
	set_env("AUGUR_RANK", "1x", "AUGUR_SIZE", "4", NULL);
	expect_bad_id(__LINE__, "AUGUR_RANK='1x'");
	set_env("AUGUR_RANK", "0", "AUGUR_SIZE", "99999999", NULL);
	expect_bad_id(__LINE__, "AUGUR_SIZE");
	set_env("OMPI_COMM_WORLD_RANK", "two", "OMPI_COMM_WORLD_SIZE", "4",
		NULL);
	expect_bad_id(__LINE__, "OMPI_COMM_WORLD_RANK");
	set_env("SLURM_PROCID", "9", "SLURM_NTASKS", "4", "SLURM_STEP_ID", "0",
		NULL);
	expect_bad_id(__LINE__, "SLURM_PROCID=9");
}

static void test_open_errors(void)
{
	static const char *const bad_rv[] = {
	    "nohost",	"host:",    ":5000",	 "host:0", "host:70000",
	    "host:50x", "::1:5000", "[::1]5000", "[::1",   "unix:",
	};
	size_t i;

	/* The message names the variable to set, and where size came from. */
	set_env("AUGUR_RANK", "1", "AUGUR_SIZE", "2", NULL);
	expect_open_fails(__LINE__, -EINVAL, "AUGUR_RENDEZVOUS");
	set_env("OMPI_COMM_WORLD_RANK", "0", "OMPI_COMM_WORLD_SIZE", "2", NULL);
	expect_open_fails(__LINE__, -EINVAL, "OMPI_COMM_WORLD_RANK");
	set_env("SLURM_PROCID", "1", "SLURM_NTASKS", "2", "SLURM_STEP_ID", "0",
		NULL);
	expect_open_fails(__LINE__, -EINVAL, "AUGUR_RENDEZVOUS=host:port");

	for (i = 0; i < sizeof(bad_rv) / sizeof(bad_rv[0]); i++) {
		set_env("AUGUR_RANK", "1", "AUGUR_SIZE", "2",
			"AUGUR_RENDEZVOUS", bad_rv[i], NULL);
		expect_open_fails(__LINE__, -EINVAL, "AUGUR_RENDEZVOUS");
	}
	set_env(
	    "AUGUR_RANK", "1", "AUGUR_SIZE", "2", "AUGUR_RENDEZVOUS",
	    "unix:/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    NULL);
	expect_open_fails(__LINE__, -ENAMETOOLONG, "unix socket path");

	set_env("AUGUR_BOOT_TIMEOUT", "soon", NULL);
	expect_open_fails(__LINE__, -EINVAL, "AUGUR_BOOT_TIMEOUT");
	set_env("AUGUR_BOOT_TIMEOUT", "0", NULL);
	expect_open_fails(__LINE__, -EINVAL, "AUGUR_BOOT_TIMEOUT");
	set_env("AUGUR_RANK", "1", NULL);
	expect_open_fails(__LINE__, -EINVAL, "AUGUR_SIZE");
}

/* Alone: no sockets at all, every call works. */
static void test_alone(void)
{
	struct aug_boot *b = NULL;
	int all[1] = {0}, mine = 42, dead = 7, ret;

	/* A rendezvous that cannot work is not even looked at. */
	set_env("AUGUR_RANK", "0", "AUGUR_SIZE", "1", "AUGUR_RENDEZVOUS",
		"unix:/nonexistent/dir/rv.sock", NULL);
	ret = aug_boot_open(&b);
	CHECK(!ret && b, "alone: open %d (%s)", ret, aug_boot_error());
	if (!b)
		return;
	CHECK(aug_boot_rank(b) == 0 && aug_boot_size(b) == 1, "rank %d size %d",
	      aug_boot_rank(b), aug_boot_size(b));
	ret = aug_boot_allgather(b, &mine, sizeof(mine), all);
	CHECK(!ret && all[0] == 42, "alone allgather: %d, got %d", ret, all[0]);
	CHECK(aug_boot_barrier(b) == 0, "alone barrier");
	ret = aug_boot_check(b, &dead);
	CHECK(ret == 0 && dead == -1, "alone check: %d dead %d", ret, dead);
	CHECK(aug_boot_fd(b) == -ENOTCONN, "alone fd: %d", aug_boot_fd(b));
	CHECK(aug_boot_allgather(b, NULL, 4, all) == -EINVAL,
	      "NULL contribution accepted");
	CHECK(aug_boot_allgather(b, &mine, (size_t)AUG_BOOT_MAX_LEN + 1, all) ==
		  -EINVAL,
	      "oversized contribution accepted");
	aug_boot_close(b);
	aug_boot_close(NULL);
	CHECK(aug_boot_open(NULL) == -EINVAL, "open(NULL)");
	CHECK(aug_boot_error() != NULL, "aug_boot_error() is NULL");
}

int main(void)
{
	test_precedence();
	test_malformed();
	test_open_errors();
	test_alone();
	clear_env();
	if (boot_test_failures) {
		fprintf(stderr, "boot_env: %d check(s) failed\n",
			boot_test_failures);
		return 1;
	}
	printf("boot_env: ok\n");
	return 0;
}
