// SPDX-License-Identifier: MIT
/*
 * tests/bootstrap/boot_proto.c - the bootstrap protocol, with the ranks as
 * forked processes of this test (the parent usually rank 0):
 *   set-up: two processes with one rank, disagreeing sizes, a stranger
 *   (bad magic), another protocol version, a probe connection, a rank 0
 *   that is already listening, a stale or foreign socket file, timeouts on
 *   both sides, rank 0 starting late, TCP on IPv4 and IPv6 loopback;
 *   collectives: correctness at 4 MiB per rank, mismatched lengths, the wait
 *   timeout, a liveness-checking thread next to the collectives;
 *   failure: a rank or rank 0 dying (noticed by check, by the descriptor, by
 *   a collective, by a spoke blocked in a big send), clean leaving (not a
 *   death), and the descriptor staying quiet while all is well.
 * Children are forked before the parent opens its own bootstrap (a forked
 * child would otherwise hold copies of the parent's sockets); each child
 * reports through its exit status and has a 30 s alarm.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bootstrap.h"
#include "boot_test.h"

static char tmpdir[] = "/tmp/boot_proto.XXXXXX";
static char rv[96]; /* fits sun_path after "unix:" */
static int rv_count;

/* A fresh unix rendezvous for the next scenario. */
static const char *new_rv(void)
{
	snprintf(rv, sizeof(rv), "unix:%s/rv%d.sock", tmpdir, ++rv_count);
	return rv;
}

static void set_id(int rank, int size, const char *timeout)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%d", rank);
	setenv("AUGUR_RANK", buf, 1);
	snprintf(buf, sizeof(buf), "%d", size);
	setenv("AUGUR_SIZE", buf, 1);
	setenv("AUGUR_RENDEZVOUS", rv, 1);
	if (timeout)
		setenv("AUGUR_BOOT_TIMEOUT", timeout, 1);
	else
		unsetenv("AUGUR_BOOT_TIMEOUT");
}

/* Child-side failure: say why, count it in the exit status. */
static int cfail;
#define CF(cond, ...)                                                          \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr,                                        \
				"FAIL (child %d) %s:%d: %s: ", (int)getpid(),  \
				__FILE__, __LINE__, #cond);                    \
			fprintf(stderr, __VA_ARGS__);                          \
			fprintf(stderr, "\n");                                 \
			cfail++;                                               \
		}                                                              \
	} while (0)

typedef void (*child_fn)(void *arg);

static pid_t spawn(int rank, int size, const char *timeout, child_fn fn,
		   void *arg)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid)
		return pid;
	alarm(30);
	set_id(rank, size, timeout);
	cfail = 0;
	fn(arg);
	_exit(cfail ? 1 : 0);
}

static void reap(pid_t pid, const char *what)
{
	int ws;

	if (pid <= 0) {
		CHECK(0, "%s: fork failed", what);
		return;
	}
	waitpid(pid, &ws, 0);
	CHECK(WIFEXITED(ws) && !WEXITSTATUS(ws), "%s: child %s %d", what,
	      WIFEXITED(ws) ? "exited with" : "killed by",
	      WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
}

static struct aug_boot *open_ok(const char *what)
{
	struct aug_boot *b = NULL;
	int ret = aug_boot_open(&b);

	CHECK(!ret && b, "%s: open %d (%s)", what, ret, aug_boot_error());
	return ret ? NULL : b;
}

/* Connect to the unix rendezvous, retrying until it exists (10 s). */
static int raw_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int64_t until = bt_now_ms() + 10000;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", rv + 5);
	while (bt_now_ms() < until) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		close(fd);
		bt_sleep_ms(5); /* polling for the listener to appear */
	}
	return -1;
}

/* --- child bodies --------------------------------------------------- */

struct expect {
	int code;
	const char *msg;
};

static void c_open_fails(void *arg)
{
	const struct expect *e = arg;
	struct aug_boot *b = NULL;
	int ret = aug_boot_open(&b);

	CF(ret == e->code && strstr(aug_boot_error(), e->msg),
	   "open returned %d, want %d with '%s' (%s)", ret, e->code, e->msg,
	   aug_boot_error());
	aug_boot_close(b);
}

static unsigned char pat(int r, int round, size_t i)
{
	return (unsigned char)(r * 37 + round * 11 + i * 7 + 3);
}

/* @len bytes per rank, @rounds rounds, barriers in between.  Returns the
 * number of wrong results. */
static int allgather_rounds(struct aug_boot *b, size_t len, int rounds)
{
	int size = aug_boot_size(b), rank = aug_boot_rank(b), bad = 0, r, k;
	unsigned char *mine = malloc(len ? len : 1);
	unsigned char *all = malloc(len * (size_t)size + 1);
	size_t i;

	for (k = 0; k < rounds && mine && all; k++) {
		for (i = 0; i < len; i++)
			mine[i] = pat(rank, k, i);
		if (aug_boot_allgather(b, mine, len, all)) {
			fprintf(stderr, "allgather: %s\n", aug_boot_error());
			bad++;
			break;
		}
		for (r = 0; r < size; r++)
			for (i = 0; i < len; i++)
				if (all[(size_t)r * len + i] != pat(r, k, i)) {
					bad++;
					r = size;
					break;
				}
		if (aug_boot_barrier(b)) {
			fprintf(stderr, "barrier: %s\n", aug_boot_error());
			bad++;
			break;
		}
	}
	if (!mine || !all)
		bad++;
	free(mine);
	free(all);
	return bad;
}

struct gather_arg {
	size_t len;
	int rounds;
};

static void c_gather(void *arg)
{
	const struct gather_arg *g = arg;
	struct aug_boot *b = NULL;
	int ret = aug_boot_open(&b);

	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	CF(!allgather_rounds(b, g->len, g->rounds), "wrong allgather");
	aug_boot_close(b);
}

/* Open, one barrier, then exit without closing: a crash. */
static void c_die_after_barrier(void *arg)
{
	struct aug_boot *b = NULL;

	(void)arg;
	if (aug_boot_open(&b) || aug_boot_barrier(b))
		_exit(1);
	_exit(0);
}

/* Open, one barrier, clean close. */
static void c_barrier_close(void *arg)
{
	struct aug_boot *b = NULL;
	int ret = aug_boot_open(&b);

	(void)arg;
	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	CF(!aug_boot_barrier(b), "barrier (%s)", aug_boot_error());
	aug_boot_close(b);
}

/* --- set-up ------------------------------------------------------------ */

static void test_dup_rank(void)
{
	struct expect e = {-EINVAL, "claim rank 1"};
	struct aug_boot *b = NULL;
	pid_t a, c;
	int ret;

	new_rv();
	a = spawn(1, 3, "10", c_open_fails, &e);
	c = spawn(1, 3, "10", c_open_fails, &e);
	set_id(0, 3, "10");
	ret = aug_boot_open(&b);
	CHECK(ret == -EINVAL && !b && strstr(aug_boot_error(), "claim rank 1"),
	      "duplicate rank: open %d (%s)", ret, aug_boot_error());
	reap(a, "dup rank A");
	reap(c, "dup rank B");
}

static void test_size_mismatch(void)
{
	struct expect e = {-EINVAL, "has 3 ranks"};
	struct aug_boot *b = NULL;
	pid_t a;
	int ret;

	new_rv();
	a = spawn(1, 3, "10", c_open_fails, &e);
	set_id(0, 2, "10");
	ret = aug_boot_open(&b);
	CHECK(ret == -EINVAL && strstr(aug_boot_error(), "has 3 ranks"),
	      "size mismatch: open %d (%s)", ret, aug_boot_error());
	reap(a, "size mismatch");
}

static void c_stranger(void *arg)
{
	const char *what = arg;
	uint32_t hello[22];
	char buf[256];
	int fd = raw_connect();

	CF(fd >= 0, "cannot connect");
	if (fd < 0)
		return;
	if (!strcmp(what, "http")) {
		CF(write(fd, "GET / HTTP/1.0\r\n\r\n", 18) == 18, "write");
	} else {
		memset(hello, 0, sizeof(hello));
		hello[0] = htonl(0x41554742u);
		hello[1] = htonl(99); /* a future version */
		hello[2] = htonl(1);
		hello[3] = htonl(2);
		CF(write(fd, hello, sizeof(hello)) == (ssize_t)sizeof(hello),
		   "write");
	}
	/* Rank 0 hangs up on us (after an ABORT, for a peer it knows). */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
}

static void test_strangers(void)
{
	struct aug_boot *b = NULL;
	pid_t a;
	int ret;

	new_rv();
	a = spawn(1, 2, NULL, c_stranger, "http");
	set_id(0, 2, "10");
	ret = aug_boot_open(&b);
	CHECK(ret == -AUGUR_EPROTO &&
		  strstr(aug_boot_error(), "not an augur bootstrap peer"),
	      "bad magic: open %d (%s)", ret, aug_boot_error());
	reap(a, "bad magic");

	new_rv();
	a = spawn(1, 2, NULL, c_stranger, "version");
	set_id(0, 2, "10");
	ret = aug_boot_open(&b);
	CHECK(ret == -AUGUR_EPROTO && strstr(aug_boot_error(), "version 99"),
	      "bad version: open %d (%s)", ret, aug_boot_error());
	reap(a, "bad version");
}

static void c_hub_barrier_close(void *arg)
{
	c_barrier_close(arg);
}

/*
 * A rank 0 is listening (child A): a probe connection that says nothing is
 * ignored, a second rank 0 gets -EADDRINUSE (and its own probe is ignored
 * too), and the job then assembles normally.
 */
static void test_probe_and_second_hub(void)
{
	struct aug_boot *b = NULL;
	pid_t a, c;
	int fd, ret;

	new_rv();
	a = spawn(0, 2, "20", c_hub_barrier_close, NULL);
	fd = raw_connect();
	CHECK(fd >= 0, "rank 0 never listened");
	if (fd >= 0)
		close(fd); /* a probe: not a word */
	set_id(0, 2, "5");
	ret = aug_boot_open(&b);
	CHECK(ret == -EADDRINUSE && strstr(aug_boot_error(), "in use"),
	      "second rank 0: open %d (%s)", ret, aug_boot_error());
	c = spawn(1, 2, "20", c_barrier_close, NULL);
	reap(a, "probe: rank 0");
	reap(c, "probe: rank 1");
}

static void test_socket_files(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct gather_arg g = {24, 2};
	struct aug_boot *b = NULL;
	struct stat st;
	pid_t a;
	int fd, ret;

	/* A leftover socket nobody listens on is replaced. */
	new_rv();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", rv + 5);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(!bind(fd, (struct sockaddr *)&sa, sizeof(sa)), "bind leftover");
	close(fd);
	a = spawn(1, 2, "10", c_gather, &g);
	set_id(0, 2, "10");
	b = open_ok("stale socket");
	if (b) {
		CHECK(!allgather_rounds(b, g.len, g.rounds), "stale socket");
		aug_boot_close(b);
	}
	reap(a, "stale socket");
	CHECK(stat(sa.sun_path, &st) && errno == ENOENT,
	      "socket file left behind");

	/* Something that is not a socket is never removed. */
	new_rv();
	fd = open(rv + 5, O_CREAT | O_WRONLY, 0600);
	close(fd);
	set_id(0, 2, "2");
	ret = aug_boot_open(&b);
	CHECK(ret == -EADDRINUSE, "file at the path: open %d (%s)", ret,
	      aug_boot_error());
	CHECK(!stat(rv + 5, &st) && S_ISREG(st.st_mode),
	      "a regular file at the path was removed");
	unlink(rv + 5);
}

static void test_timeouts(void)
{
	struct expect e = {-ETIMEDOUT, "missing rank(s): 2"};
	struct aug_boot *b = NULL;
	int64_t t0;
	pid_t a;
	int ret;

	/* A spoke with no rank 0: the message names the address. */
	new_rv();
	set_id(1, 2, "0.5");
	t0 = bt_now_ms();
	ret = aug_boot_open(&b);
	t0 = bt_now_ms() - t0;
	CHECK(ret == -ETIMEDOUT && strstr(aug_boot_error(), rv) &&
		  strstr(aug_boot_error(), "AUGUR_RENDEZVOUS"),
	      "spoke timeout: open %d (%s)", ret, aug_boot_error());
	CHECK(t0 >= 400 && t0 < 3000, "spoke timeout took %lld ms",
	      (long long)t0);

	/* Rank 0 waits for a rank that never comes: both sides learn which. */
	new_rv();
	a = spawn(1, 3, "10", c_open_fails, &e);
	set_id(0, 3, "1");
	t0 = bt_now_ms();
	ret = aug_boot_open(&b);
	t0 = bt_now_ms() - t0;
	CHECK(ret == -ETIMEDOUT &&
		  strstr(aug_boot_error(), "missing rank(s): 2"),
	      "hub timeout: open %d (%s)", ret, aug_boot_error());
	CHECK(t0 >= 900 && t0 < 4000, "hub timeout took %lld ms",
	      (long long)t0);
	reap(a, "hub timeout");
}

static void test_late_hub(void)
{
	struct gather_arg g = {100, 5};
	struct aug_boot *b;
	pid_t a, c;

	new_rv();
	a = spawn(1, 3, "20", c_gather, &g);
	c = spawn(2, 3, "20", c_gather, &g);
	bt_sleep_ms(300); /* rank 0 starts "later": the spokes retry */
	set_id(0, 3, "20");
	b = open_ok("late hub");
	if (b) {
		CHECK(!allgather_rounds(b, g.len, g.rounds), "late hub");
		aug_boot_close(b);
	}
	reap(a, "late hub 1");
	reap(c, "late hub 2");
}

static int free_port(int family)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = socket(family, SOCK_STREAM, 0), port = -1;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr =
		    htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&ss, sizeof(ss)) &&
	    !getsockname(fd, (struct sockaddr *)&ss, &sl))
		port = ntohs(family == AF_INET
				 ? ((struct sockaddr_in *)&ss)->sin_port
				 : ((struct sockaddr_in6 *)&ss)->sin6_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void test_tcp(void)
{
	static const char *const hosts[] = {"127.0.0.1", "localhost", "[::1]"};
	struct gather_arg g = {333, 4};
	struct aug_boot *b;
	size_t i;
	pid_t a, c;
	int port;

	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		port = free_port(hosts[i][0] == '[' ? AF_INET6 : AF_INET);
		if (port < 0) {
			printf("boot_proto: skipping TCP on %s (no such "
			       "loopback here)\n",
			       hosts[i]);
			continue;
		}
		snprintf(rv, sizeof(rv), "%s:%d", hosts[i], port);
		a = spawn(1, 3, "20", c_gather, &g);
		c = spawn(2, 3, "20", c_gather, &g);
		set_id(0, 3, "20");
		b = open_ok(rv);
		if (b) {
			CHECK(!allgather_rounds(b, g.len, g.rounds), "tcp %s",
			      rv);
			aug_boot_close(b);
		}
		reap(a, "tcp 1");
		reap(c, "tcp 2");
	}
}

/* --- collectives ------------------------------------------------------- */

static void test_large(void)
{
	struct gather_arg g = {4u << 20, 3};
	struct aug_boot *b;
	pid_t a, c;

	new_rv();
	a = spawn(1, 3, "30", c_gather, &g);
	c = spawn(2, 3, "30", c_gather, &g);
	set_id(0, 3, "30");
	b = open_ok("large");
	if (b) {
		CHECK(!allgather_rounds(b, g.len, g.rounds), "4 MiB allgather");
		aug_boot_close(b);
	}
	reap(a, "large 1");
	reap(c, "large 2");
}

static void c_len(void *arg)
{
	size_t len = *(const size_t *)arg;
	char mine[16] = {0}, all[48];
	struct aug_boot *b = NULL;
	int ret = aug_boot_open(&b), dead;

	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	ret = aug_boot_allgather(b, mine, len, all);
	CF(ret == -AUGUR_EPROTO, "allgather of %zu: %d (%s)", len, ret,
	   aug_boot_error());
	ret = aug_boot_check(b, &dead);
	CF(ret == -AUGUR_EPROTO, "check after mismatch: %d", ret);
	aug_boot_close(b);
}

static void test_len_mismatch(void)
{
	size_t l16 = 16, l8 = 8;
	char mine[16] = {0}, all[48];
	struct aug_boot *b;
	pid_t a, c;
	int ret;

	new_rv();
	a = spawn(1, 3, "10", c_len, &l16);
	c = spawn(2, 3, "10", c_len, &l8);
	set_id(0, 3, "10");
	b = open_ok("length mismatch");
	if (!b)
		return;
	ret = aug_boot_allgather(b, mine, sizeof(mine), all);
	CHECK(ret == -AUGUR_EPROTO && strstr(aug_boot_error(), "same length"),
	      "length mismatch: %d (%s)", ret, aug_boot_error());
	CHECK(aug_boot_barrier(b) == -AUGUR_EPROTO, "not sticky");
	aug_boot_close(b);
	reap(a, "length mismatch 1");
	reap(c, "length mismatch 2");
}

struct pipe_arg {
	int fd; /* read end: wait for the parent */
};

static void c_slow_barrier(void *arg)
{
	const struct pipe_arg *p = arg;
	struct aug_boot *b = NULL;
	char c;
	int ret = aug_boot_open(&b);

	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	CF(!aug_boot_barrier(b), "barrier 1");
	CF(read(p->fd, &c, 1) == 1, "pipe");
	ret = aug_boot_barrier(b);
	CF(ret == -ETIMEDOUT && strstr(aug_boot_error(), "rank 0 reports"),
	   "barrier after rank 0's wait timeout: %d (%s)", ret,
	   aug_boot_error());
	aug_boot_close(b);
}

static void test_wait_timeout(void)
{
	struct pipe_arg pa;
	struct aug_boot *b;
	int p[2], ret;
	int64_t t0;
	pid_t a;

	new_rv();
	if (pipe(p)) {
		CHECK(0, "pipe");
		return;
	}
	pa.fd = p[0];
	a = spawn(1, 2, "10", c_slow_barrier, &pa);
	close(p[0]);
	set_id(0, 2, "10");
	b = open_ok("wait timeout");
	if (b) {
		CHECK(!aug_boot_barrier(b), "barrier 1");
		aug_boot_set_wait_timeout(b, 300);
		t0 = bt_now_ms();
		ret = aug_boot_barrier(b);
		t0 = bt_now_ms() - t0;
		CHECK(ret == -ETIMEDOUT &&
			  strstr(aug_boot_error(), "rank(s) 1"),
		      "wait timeout: %d (%s)", ret, aug_boot_error());
		CHECK(t0 >= 250 && t0 < 3000, "wait timeout took %lld ms",
		      (long long)t0);
	}
	CHECK(write(p[1], "g", 1) == 1, "pipe");
	close(p[1]);
	reap(a, "wait timeout");
	aug_boot_close(b);
}

struct watcher {
	struct aug_boot *b;
	atomic_int stop;
	int bad;
	long checks;
};

static void *watch_main(void *arg)
{
	struct watcher *w = arg;
	struct pollfd p = {.fd = aug_boot_fd(w->b), .events = POLLIN};
	int dead, ret;

	while (!atomic_load(&w->stop)) {
		poll(&p, 1, 2);
		ret = aug_boot_check(w->b, &dead);
		if (ret || dead != -1)
			w->bad++;
		w->checks++;
	}
	return NULL;
}

/* A thread checks liveness without pause while collectives run. */
static int gather_with_watcher(struct aug_boot *b)
{
	struct watcher w = {.b = b};
	pthread_t t;
	int bad;

	if (pthread_create(&t, NULL, watch_main, &w))
		return 1;
	bad = allgather_rounds(b, 48, 300);
	atomic_store(&w.stop, 1);
	pthread_join(t, NULL);
	if (w.bad)
		fprintf(stderr, "watcher saw %d failures in %ld checks\n",
			w.bad, w.checks);
	return bad + w.bad;
}

static void c_watch(void *arg)
{
	struct aug_boot *b = NULL;
	int ret = aug_boot_open(&b);

	(void)arg;
	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	CF(!gather_with_watcher(b), "collectives with a watcher thread");
	aug_boot_close(b);
}

static void test_threads(void)
{
	struct aug_boot *b;
	pid_t a, c;

	new_rv();
	a = spawn(1, 3, "30", c_watch, NULL);
	c = spawn(2, 3, "30", c_watch, NULL);
	set_id(0, 3, "30");
	b = open_ok("threads");
	if (b) {
		CHECK(!gather_with_watcher(b),
		      "collectives with a watcher thread");
		aug_boot_close(b);
	}
	reap(a, "threads 1");
	reap(c, "threads 2");
}

/* --- failure and leaving ---------------------------------------------- */

static void test_spoke_dies(void)
{
	struct aug_boot *b;
	struct pollfd p;
	int dead, ret;
	pid_t a;

	new_rv();
	a = spawn(1, 2, "10", c_die_after_barrier, NULL);
	set_id(0, 2, "10");
	b = open_ok("spoke dies");
	if (!b)
		return;
	CHECK(!aug_boot_barrier(b), "barrier");
	reap(a, "spoke dies");
	p.fd = aug_boot_fd(b);
	p.events = POLLIN;
	CHECK(poll(&p, 1, 5000) == 1, "descriptor did not wake for a death");
	ret = aug_boot_check(b, &dead);
	CHECK(ret == -AUGUR_EPEER_GONE && dead == 1 &&
		  strstr(aug_boot_error(), "rank 1"),
	      "check: %d dead %d (%s)", ret, dead, aug_boot_error());
	CHECK(aug_boot_barrier(b) == -AUGUR_EPEER_GONE, "barrier not sticky");
	ret = aug_boot_check(b, &dead);
	CHECK(ret == -AUGUR_EPEER_GONE && dead == 1, "check again: %d dead %d",
	      ret, dead);
	aug_boot_close(b);
}

static void test_hub_dies(void)
{
	struct aug_boot *b;
	int dead, ret;
	pid_t a;

	new_rv();
	a = spawn(0, 2, "10", c_die_after_barrier, NULL);
	set_id(1, 2, "10");
	b = open_ok("hub dies");
	if (!b)
		return;
	CHECK(!aug_boot_barrier(b), "barrier");
	reap(a, "hub dies");
	ret = aug_boot_check(b, &dead);
	CHECK(ret == -AUGUR_EPEER_GONE && dead == 0,
	      "spoke check after rank 0 died: %d dead %d (%s)", ret, dead,
	      aug_boot_error());
	aug_boot_close(b);
}

static void c_mid(void *arg)
{
	struct aug_boot *b = NULL;
	int64_t t0;
	int dead, ret = aug_boot_open(&b);

	(void)arg;
	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	CF(!aug_boot_barrier(b), "barrier 1");
	t0 = bt_now_ms();
	ret = aug_boot_barrier(b);
	CF(ret == -AUGUR_EPEER_GONE, "barrier 2: %d (%s)", ret,
	   aug_boot_error());
	CF(bt_now_ms() - t0 < 3000, "noticed after %lld ms",
	   (long long)(bt_now_ms() - t0));
	ret = aug_boot_check(b, &dead);
	CF(ret == -AUGUR_EPEER_GONE && dead == 2, "check: %d dead %d", ret,
	   dead);
	aug_boot_close(b);
}

/* Rank 2 dies while ranks 0 and 1 wait in a barrier. */
static void test_mid_collective_death(void)
{
	struct aug_boot *b;
	int64_t t0;
	int dead, ret;
	pid_t a, c;

	new_rv();
	a = spawn(1, 3, "10", c_mid, NULL);
	c = spawn(2, 3, "10", c_die_after_barrier, NULL);
	set_id(0, 3, "10");
	b = open_ok("mid-collective death");
	if (!b)
		return;
	CHECK(!aug_boot_barrier(b), "barrier 1");
	t0 = bt_now_ms();
	ret = aug_boot_barrier(b);
	t0 = bt_now_ms() - t0;
	CHECK(ret == -AUGUR_EPEER_GONE && strstr(aug_boot_error(), "rank 2"),
	      "barrier 2: %d (%s)", ret, aug_boot_error());
	CHECK(t0 < 3000, "noticed after %lld ms", (long long)t0);
	ret = aug_boot_check(b, &dead);
	CHECK(ret == -AUGUR_EPEER_GONE && dead == 2, "check: %d dead %d", ret,
	      dead);
	aug_boot_close(b);
	reap(a, "mid-collective 1");
	reap(c, "mid-collective 2");
}

static void c_big_send(void *arg)
{
	size_t len = 16u << 20; /* far more than a socket buffer */
	struct aug_boot *b = NULL;
	char *buf = calloc(3, len);
	int dead, ret = aug_boot_open(&b);

	(void)arg;
	CF(!ret && buf, "open %d (%s)", ret, aug_boot_error());
	if (ret || !buf)
		return;
	CF(!aug_boot_barrier(b), "barrier");
	/* Rank 0 never enters this allgather: it finds rank 2 dead and
	 * says so while this rank is blocked sending. */
	ret = aug_boot_allgather(b, buf, len, buf);
	CF(ret == -AUGUR_EPEER_GONE, "big allgather: %d (%s)", ret,
	   aug_boot_error());
	ret = aug_boot_check(b, &dead);
	CF(ret == -AUGUR_EPEER_GONE && dead == 2, "check: %d dead %d", ret,
	   dead);
	free(buf);
	aug_boot_close(b);
}

static void test_abort_reaches_blocked_sender(void)
{
	struct aug_boot *b;
	int dead, ret;
	pid_t a, c;

	new_rv();
	a = spawn(1, 3, "10", c_big_send, NULL);
	c = spawn(2, 3, "10", c_die_after_barrier, NULL);
	set_id(0, 3, "10");
	b = open_ok("blocked sender");
	if (!b)
		return;
	CHECK(!aug_boot_barrier(b), "barrier");
	reap(c, "blocked sender: victim");
	ret = aug_boot_check(b, &dead);
	CHECK(ret == -AUGUR_EPEER_GONE && dead == 2, "check: %d dead %d (%s)",
	      ret, dead, aug_boot_error());
	reap(a, "blocked sender");
	aug_boot_close(b);
}

static void test_spoke_leaves(void)
{
	struct aug_boot *b;
	struct pollfd p;
	int dead, ret;
	pid_t a;

	new_rv();
	a = spawn(1, 2, "10", c_barrier_close, NULL);
	set_id(0, 2, "10");
	b = open_ok("spoke leaves");
	if (!b)
		return;
	CHECK(!aug_boot_barrier(b), "barrier");
	reap(a, "spoke leaves");
	/* Leaving is not dying. */
	ret = aug_boot_check(b, &dead);
	CHECK(ret == 0 && dead == -1,
	      "check after a clean close: %d dead %d "
	      "(%s)",
	      ret, dead, aug_boot_error());
	p.fd = aug_boot_fd(b);
	p.events = POLLIN;
	CHECK(poll(&p, 1, 0) == 0, "descriptor readable after a clean close");
	CHECK(aug_boot_check(b, &dead) == 0, "second check");
	/* But nobody is left to meet. */
	ret = aug_boot_barrier(b);
	CHECK(ret == -AUGUR_EPEER_GONE && strstr(aug_boot_error(), "left"),
	      "barrier after rank 1 left: %d (%s)", ret, aug_boot_error());
	aug_boot_close(b);
}

static void c_hub_leaves(void *arg)
{
	const struct pipe_arg *p = arg;
	struct aug_boot *b = NULL;
	int dead, ret = aug_boot_open(&b);
	char c;

	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	CF(!aug_boot_barrier(b), "barrier");
	CF(read(p->fd, &c, 1) == 1, "pipe"); /* rank 0 has closed */
	ret = aug_boot_check(b, &dead);
	CF(ret == 0 && dead == -1, "check after rank 0 closed: %d dead %d (%s)",
	   ret, dead, aug_boot_error());
	ret = aug_boot_barrier(b);
	CF(ret == -AUGUR_EPEER_GONE && strstr(aug_boot_error(), "rank 0 left"),
	   "barrier after rank 0 left: %d (%s)", ret, aug_boot_error());
	aug_boot_close(b);
}

static void test_hub_leaves(void)
{
	struct pipe_arg pa;
	struct aug_boot *b;
	int p[2];
	pid_t a;

	new_rv();
	if (pipe(p)) {
		CHECK(0, "pipe");
		return;
	}
	pa.fd = p[0];
	a = spawn(1, 2, "10", c_hub_leaves, &pa);
	close(p[0]);
	set_id(0, 2, "10");
	b = open_ok("hub leaves");
	if (b) {
		CHECK(!aug_boot_barrier(b), "barrier");
		aug_boot_close(b);
	}
	CHECK(write(p[1], "c", 1) == 1, "pipe");
	close(p[1]);
	reap(a, "hub leaves");
}

static void c_early_next(void *arg)
{
	const struct pipe_arg *p = arg;
	struct aug_boot *b = NULL;
	int ret = aug_boot_open(&b);

	CF(!ret, "open %d (%s)", ret, aug_boot_error());
	if (ret)
		return;
	CF(!aug_boot_barrier(b), "barrier 1");
	CF(write(p->fd, "n", 1) == 1, "pipe");
	/* Enters barrier 2 long before rank 0 does. */
	CF(!aug_boot_allgather(b, "abcd", 4, (char[8]){0}),
	   "allgather 2 "
	   "(%s)",
	   aug_boot_error());
	aug_boot_close(b);
}

/*
 * Rank 1 is already in the next collective; rank 0 is not.  Its descriptor
 * must stay quiet (a poll loop would spin) and check() must leave rank 1's
 * contribution for the collective.
 */
static void test_quiet_between(void)
{
	struct pipe_arg pa;
	struct aug_boot *b;
	struct pollfd pl;
	char c, all[8];
	int p[2], dead, ret;
	pid_t a;

	new_rv();
	if (pipe(p)) {
		CHECK(0, "pipe");
		return;
	}
	pa.fd = p[1];
	a = spawn(1, 2, "10", c_early_next, &pa);
	close(p[1]);
	set_id(0, 2, "10");
	b = open_ok("quiet");
	if (b) {
		CHECK(!aug_boot_barrier(b), "barrier 1");
		CHECK(read(p[0], &c, 1) == 1, "pipe");
		pl.fd = aug_boot_fd(b);
		pl.events = POLLIN;
		/* An assertion window, not a synchronisation. */
		CHECK(poll(&pl, 1, 300) == 0,
		      "descriptor woke while a rank waits in a collective");
		ret = aug_boot_check(b, &dead);
		CHECK(ret == 0 && dead == -1, "check: %d dead %d (%s)", ret,
		      dead, aug_boot_error());
		ret = aug_boot_allgather(b, "wxyz", 4, all);
		CHECK(!ret && !memcmp(all, "wxyzabcd", 8),
		      "allgather after check: %d (%s)", ret, aug_boot_error());
		aug_boot_close(b);
	}
	close(p[0]);
	reap(a, "quiet");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* the stranger's writes */
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	unsetenv("OMPI_COMM_WORLD_RANK");
	unsetenv("PMI_RANK");
	unsetenv("SLURM_PROCID");

	test_dup_rank();
	test_size_mismatch();
	test_strangers();
	test_probe_and_second_hub();
	test_socket_files();
	test_timeouts();
	test_late_hub();
	test_tcp();
	test_large();
	test_len_mismatch();
	test_wait_timeout();
	test_threads();
	test_spoke_dies();
	test_hub_dies();
	test_mid_collective_death();
	test_abort_reaches_blocked_sender();
	test_spoke_leaves();
	test_hub_leaves();
	test_quiet_between();

	rmdir(tmpdir);
	if (boot_test_failures) {
		fprintf(stderr, "boot_proto: %d check(s) failed\n",
			boot_test_failures);
		return 1;
	}
	printf("boot_proto: ok\n");
	return 0;
}
