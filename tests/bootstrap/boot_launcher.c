// SPDX-License-Identifier: MIT
/*
 * tests/bootstrap/boot_launcher.c - augur-run end to end:
 *
 *	boot_launcher AUGUR_RUN BOOT_WORKER
 *
 * Runs augur-run on boot_worker in each scenario and checks its exit status,
 * how long it took (upper bounds far below the 10 s grace period where the
 * nodes must stop by themselves), its messages, and what the nodes report:
 *   - allgather on 4 nodes and on 1 node: 0;
 *   - a node dies after a barrier (rank 2 of 4, rank 0 of 3), the others
 *     waiting in a barrier or in a poll loop: every survivor gets
 *     AUGUR_EPEER_GONE naming the dead rank within 3 s, augur-run exits with
 *     the victim's status 3 and reports it first;
 *   - survivors that ignore a death: killed after --grace;
 *   - --timeout: 124; SIGTERM to augur-run: forwarded, 143;
 *   - --tag and plain output; exec failure 127; usage errors 2;
 *   - the environment each node gets, and the private directory removed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "boot_test.h"

static const char *augur_run, *worker;

struct result {
	int status; /* exit code, or 128+signal */
	int64_t ms;
	char out[16384];
	char err[16384];
};

/*
 * Run @argv (augur-run ...) to completion with stdout and stderr captured.
 * With @ready > 0: give it a pipe as $BOOT_READY_FD, wait until @ready bytes
 * came through it (every node is up), then send it @sig.  Bounded: after
 * 60 s it is killed and the run counts as failed (status -1).
 */
static void run(const char *const *argv, int ready, int sig, struct result *res)
{
	int out[2], err[2], rp[2] = {-1, -1}, ws, open_fds = 2;
	size_t olen = 0, elen = 0;
	int64_t start = bt_now_ms();
	pid_t pid;

	memset(res, 0, sizeof(*res));
	res->status = -1;
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
	    (ready && pipe(rp))) {
		CHECK(0, "pipe");
		return;
	}
	pid = fork();
	if (!pid) {
		char fd[16];

		dup2(out[1], 1);
		dup2(err[1], 2);
		if (ready) {
			snprintf(fd, sizeof(fd), "%d", rp[1]);
			setenv("BOOT_READY_FD", fd, 1);
			close(rp[0]);
		}
		execv(argv[0], (char *const *)argv);
		_exit(126);
	}
	close(out[1]);
	close(err[1]);
	if (ready) {
		int got = 0;
		char c;

		close(rp[1]);
		while (got < ready) {
			struct pollfd p = {rp[0], POLLIN, 0};

			if (poll(&p, 1, 20000) <= 0 || read(rp[0], &c, 1) != 1)
				break;
			got++;
		}
		CHECK(got == ready, "only %d of %d nodes came up", got, ready);
		close(rp[0]);
		kill(pid, sig);
	}
	while (open_fds) {
		struct pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
		int left = (int)(60000 - (bt_now_ms() - start));
		ssize_t k;

		if (left <= 0 || poll(p, 2, left) <= 0) {
			CHECK(0, "augur-run still running after 60 s");
			kill(pid, SIGKILL);
			break;
		}
		if (p[0].revents && out[0] >= 0) {
			k = read(out[0], res->out + olen,
				 sizeof(res->out) - 1 - olen);
			if (k > 0) {
				olen += (size_t)k;
			} else {
				close(out[0]);
				out[0] = -1;
				open_fds--;
			}
		}
		if (p[1].revents && err[0] >= 0) {
			k = read(err[0], res->err + elen,
				 sizeof(res->err) - 1 - elen);
			if (k > 0) {
				elen += (size_t)k;
			} else {
				close(err[0]);
				err[0] = -1;
				open_fds--;
			}
		}
	}
	if (out[0] >= 0)
		close(out[0]);
	if (err[0] >= 0)
		close(err[0]);
	waitpid(pid, &ws, 0);
	res->ms = bt_now_ms() - start;
	res->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static void test_allgather(void)
{
	const char *a4[] = {augur_run,	 "-n", "4", worker,
			    "allgather", "3",  NULL};
	const char *a1[] = {augur_run, "-n", "1", worker, "allgather", NULL};
	struct result r;

	run(a4, 0, 0, &r);
	CHECK(r.status == 0, "allgather -n 4: status %d\n%s", r.status, r.err);
	run(a1, 0, 0, &r);
	CHECK(r.status == 0, "allgather -n 1: status %d\n%s", r.status, r.err);
}

static void test_death(const char *n, int victim, const char *how)
{
	char dir[] = "/tmp/boot_launcher.XXXXXX", v[8], path[128], line[256],
	     want[64];
	const char *argv[] = {augur_run, "-n", n,   worker, "die",
			      v,	 how,  dir, NULL};
	struct result r;
	int i;

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp");
		return;
	}
	snprintf(v, sizeof(v), "%d", victim);
	run(argv, 0, 0, &r);
	CHECK(r.status == 3, "die %s %d %s: augur-run status %d, want 3\n%s", n,
	      victim, how, r.status, r.err);
	/* The survivors stop by themselves, before the 10 s grace runs out
	 * (generous bounds: a loaded CI machine is slow, never assert speed). */
	CHECK(r.ms < 9800, "die %s %d %s: augur-run took %lld ms", n, victim,
	      how, (long long)r.ms);
	snprintf(want, sizeof(want), "augur-run: node %d exited with status 3",
		 victim);
	CHECK(strstr(r.err, want) &&
		  strstr(r.err, "augur-run: ") == strstr(r.err, want),
	      "die %s %d %s: first report is not '%s':\n%s", n, victim, how,
	      want, r.err);
	for (i = 0; i < atoi(n); i++) {
		FILE *f;

		if (i == victim)
			continue;
		snprintf(path, sizeof(path), "%s/%d", dir, i);
		f = fopen(path, "r");
		line[0] = '\0';
		if (f) {
			if (!fgets(line, sizeof(line), f))
				line[0] = '\0';
			fclose(f);
			unlink(path);
		}
		snprintf(want, sizeof(want), "ok dead=%d ", victim);
		CHECK(!strncmp(line, want, strlen(want)),
		      "die %s %d %s: rank %d reports '%s'", n, victim, how, i,
		      line);
		/* Noticed within 3 s of the barrier (the victim dies
		 * 200 ms after it). */
		if (!strncmp(line, want, strlen(want)))
			CHECK(atoi(strstr(line, "ms=") + 3) < 9000,
			      "rank %d noticed late: %s", i, line);
	}
	rmdir(dir);
}

static void test_grace(void)
{
	const char *argv[] = {augur_run, "-n",	   "3", "--grace", "1",
			      worker,	 "ignore", "1", NULL};
	struct result r;

	run(argv, 0, 0, &r);
	CHECK(r.status == 5, "ignore: status %d, want 5\n%s", r.status, r.err);
	CHECK(r.ms >= 900 && r.ms < 30000,
	      "ignore: took %lld ms, want the 1 s grace", (long long)r.ms);
	CHECK(strstr(r.err, "killed 2 node(s)"), "ignore: no kill message:\n%s",
	      r.err);
}

static void test_timeout(void)
{
	const char *argv[] = {augur_run, "--timeout", "1",    "-n",
			      "2",	 worker,      "hang", NULL};
	struct result r;

	run(argv, 0, 0, &r);
	CHECK(r.status == 124, "timeout: status %d, want 124\n%s", r.status,
	      r.err);
	CHECK(r.ms >= 900 && r.ms < 30000, "timeout: took %lld ms",
	      (long long)r.ms);
	CHECK(strstr(r.err, "timeout"), "timeout: no message:\n%s", r.err);
}

static void test_signal(void)
{
	const char *argv[] = {augur_run, "-n", "2", worker, "hang", NULL};
	struct result r;

	run(argv, 2, SIGTERM, &r);
	CHECK(r.status == 128 + SIGTERM, "SIGTERM: status %d, want %d\n%s",
	      r.status, 128 + SIGTERM, r.err);
	/* Forwarded at once: the nodes die of it, no grace period needed. */
	CHECK(r.ms < 30000, "SIGTERM: took %lld ms", (long long)r.ms);
}

static void test_output(void)
{
	const char *tag[] = {augur_run, "-n",	"2", "--tag",
			     worker,	"echo", NULL};
	const char *plain[] = {augur_run, "-n", "2", worker, "echo", NULL};
	struct result r;

	run(tag, 0, 0, &r);
	CHECK(r.status == 0, "--tag: status %d", r.status);
	CHECK(strstr(r.out, "[0] hello from 0\n") &&
		  strstr(r.out, "[1] hello from 1\n"),
	      "--tag stdout:\n%s", r.out);
	CHECK(strstr(r.err, "[0] warn from 0\n") &&
		  strstr(r.err, "[1] warn from 1\n"),
	      "--tag stderr:\n%s", r.err);
	run(plain, 0, 0, &r);
	CHECK(r.status == 0, "plain: status %d", r.status);
	CHECK(strstr(r.out, "hello from 0\n") &&
		  strstr(r.out, "hello from 1\n") && !strchr(r.out, '['),
	      "plain stdout:\n%s", r.out);
}

static void test_errors(void)
{
	const char *noexec[] = {augur_run, "-n", "2",
				"/nonexistent/augur-test-program", NULL};
	const char *none[] = {augur_run, NULL};
	const char *help[] = {augur_run, "--help", NULL};
	const char *zero[] = {augur_run, "-n", "0", worker, "echo", NULL};
	const char *badtr[] = {augur_run, "-n",	  "2",	  "--transport",
			       "carrier", worker, "echo", NULL};
	const char *noprog[] = {augur_run, "-n", "2", NULL};
	struct result r;

	run(noexec, 0, 0, &r);
	CHECK(r.status == 127, "exec failure: status %d, want 127\n%s",
	      r.status, r.err);
	run(none, 0, 0, &r);
	CHECK(r.status == 2, "no arguments: status %d, want 2", r.status);
	run(help, 0, 0, &r);
	CHECK(r.status == 0 && strstr(r.out, "AUGUR_RENDEZVOUS=host:port") &&
		  strstr(r.out, "srun") && strstr(r.out, "mpirun"),
	      "--help: status %d\n%s", r.status, r.out);
	run(zero, 0, 0, &r);
	CHECK(r.status == 2, "-n 0: status %d, want 2", r.status);
	run(badtr, 0, 0, &r);
	CHECK(r.status == 2, "--transport carrier: status %d, want 2",
	      r.status);
	run(noprog, 0, 0, &r);
	CHECK(r.status == 2, "no program: status %d, want 2", r.status);
}

static void test_env(void)
{
	char file[] = "/tmp/boot_launcher_env.XXXXXX", sock[256] = "";
	const char *argv[] = {augur_run, "-np", "3",   "--transport=shm",
			      worker,	 "env", "shm", file,
			      NULL};
	const char *argv2[] = {augur_run, "-n3", worker, "env",
			       "-",	  file,	 NULL};
	struct stat st;
	struct result r;
	FILE *f;
	int fd = mkstemp(file);

	if (fd < 0) {
		CHECK(0, "mkstemp");
		return;
	}
	close(fd);
	run(argv, 0, 0, &r);
	CHECK(r.status == 0, "env: status %d\n%s", r.status, r.err);
	f = fopen(file, "r");
	if (f) {
		if (!fgets(sock, sizeof(sock), f))
			sock[0] = '\0';
		fclose(f);
	}
	sock[strcspn(sock, "\n")] = '\0';
	CHECK(strstr(sock, "/rv.sock"), "rendezvous '%s'", sock);
	if (sock[0]) {
		char *dir = dirname(sock);

		CHECK(stat(dir, &st) && errno == ENOENT,
		      "private directory %s left behind", dir);
	}
	run(argv2, 0, 0, &r);
	CHECK(r.status == 0, "env without --transport: status %d\n%s", r.status,
	      r.err);
	unlink(file);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s AUGUR_RUN BOOT_WORKER\n", argv[0]);
		return 2;
	}
	augur_run = argv[1];
	worker = argv[2];
	/* The nodes decide on their own; no launcher variables leak in. */
	unsetenv("AUGUR_TRANSPORT");
	unsetenv("AUGUR_RANK");
	unsetenv("AUGUR_SIZE");
	unsetenv("AUGUR_RENDEZVOUS");

	test_allgather();
	test_death("4", 2, "barrier");
	test_death("4", 2, "poll");
	test_death("3", 0, "barrier");
	test_death("3", 0, "poll");
	test_grace();
	test_timeout();
	test_signal();
	test_output();
	test_errors();
	test_env();
	if (boot_test_failures) {
		fprintf(stderr, "boot_launcher: %d check(s) failed\n",
			boot_test_failures);
		return 1;
	}
	printf("boot_launcher: ok\n");
	return 0;
}
