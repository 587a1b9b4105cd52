// SPDX-License-Identifier: MIT
/*
 * perf/auv_lat.c - perftest-style latency and message-rate benchmark of
 * augur's transport (augur/verbs.h), public API only.
 *
 * One command runs both ends: it forks a server process, the two exchange
 * auv_ctx_addr() and their auv_mr_desc over pipes, the client connects, and
 * the client measures while the server serves (and, for WRITE, plays
 * ping-pong).  Results go to stdout in perftest's columns and, with --csv,
 * to a CSV file.
 *
 * How each operation is measured, so that it compares with perftest:
 *
 *   READ   like ib_read_lat: one signaled READ at a time, busy-polled; the
 *          figure is the full round trip.
 *   WRITE  like ib_write_lat: ping-pong.  The client WRITEs size bytes into
 *          the server's region, the server spins on the last byte of that
 *          region, then WRITEs back; each side also reaps its own signaled
 *          completion.  The figure is half the round trip.
 *   CAS    like ib_atomic_lat: one 64-bit compare-and-swap at a time; the
 *          figure is the full round trip.  Every CAS is checked to succeed.
 *
 * Statistics are perftest's (print_report_lat): a timestamp as each
 * operation is posted, n-1 deltas between consecutive posts, sorted, the two
 * largest dropped; t_typical is the median of the rest, the 99% and 99.9%
 * percentiles are delta[ceil(m * p)] of the m kept.
 *
 * Message rate: K operations outstanding, posted as lists of 16 with only
 * the last of each list signaled (selective signaling); Mops/s and MiB/s
 * (perftest's MB/sec is 2^20 bytes per second).
 *
 * Reference in the same run (shm only): a plain memcpy() of the same size,
 * timed the same way, and the ratio of augur READ's typical latency to it.
 *
 * Exit status: 0 done, 1 failure, 77 the provider or device does not exist
 * here (so ctest reports a skip).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

#include <augur/verbs.h>

/*
 * Full barrier: plain stores before it are visible before anything after
 * it.  gcc rejects fences under -fsanitize=thread (-Werror=tsan: TSan does
 * not model them); a seq_cst read-modify-write is a full barrier as well.
 */
#ifndef __SANITIZE_THREAD__
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#else
static int tsan_fence;
#define smp_mb() ((void)__atomic_fetch_add(&tsan_fence, 0, __ATOMIC_SEQ_CST))
#endif

#define EXIT_SKIP 77
#define LAT_MEASURE_TAIL 2 /* perftest drops the two largest deltas */
#define POST_LIST 16       /* operations per post list in the rate phase */
#define MAX_SIZES 32
#define MAX_SIZE (1u << 20)
#define RATE_BYTES_CAP (256ull << 20) /* default rate phase: <= 256 MiB */
#define MIB (1024.0 * 1024.0)

enum bench_op { OP_READ, OP_WRITE, OP_CAS, NR_OPS };

static const char *const op_name[NR_OPS] = { "READ", "WRITE", "CAS" };
static const char *const op_lower[NR_OPS] = { "read", "write", "cas" };
static const char *const op_how[NR_OPS] = {
	"one-sided READ round trip, as ib_read_lat",
	"WRITE ping-pong, half round trip, as ib_write_lat",
	"64-bit CAS round trip, as ib_atomic_lat",
};

struct config {
	const char *provider;
	const char *sdev, *cdev;   /* ibv devices: server, client */
	const char *saddr, *caddr; /* ibv IP addresses: server, client */
	uint32_t sizes[MAX_SIZES];
	int nsizes;
	uint32_t max_size;
	long iters;
	long rate_iters; /* 0: derived from iters */
	int rate_batch;  /* 0: no rate phase */
	unsigned int ops; /* 1 << enum bench_op */
	bool use_wait;
	bool use_tsc;
	bool no_inline;
	bool no_ref;
	bool clock_rate; /* print ticks per microsecond and exit */
	int timeout_s;
	const char *csv;
};

static struct config cfg;

/* --- Time ----------------------------------------------------------------- */

static double ticks_per_us = 1000.0; /* clk_now() ticks per microsecond */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The per-iteration timestamp: the TSC (as perftest's get_cycles()) or
 * CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t clk_now(void)
{
#if HAVE_TSC
	if (cfg.use_tsc)
		return __rdtsc();
#endif
	return mono_ns();
}

/* Measure the TSC rate against CLOCK_MONOTONIC over about 50 ms. */
static int clk_calibrate(void)
{
	struct timespec ts;
	uint64_t m0, m1, c0, c1;

	if (clock_gettime(CLOCK_MONOTONIC, &ts)) {
		fprintf(stderr, "auv_lat: clock_gettime(CLOCK_MONOTONIC): %s\n",
			strerror(errno));
		return -1;
	}
	if (!cfg.use_tsc) {
		ticks_per_us = 1000.0;
		return 0;
	}
	m0 = mono_ns();
	c0 = clk_now();
	do
		m1 = mono_ns();
	while (m1 - m0 < 50000000ull);
	c1 = clk_now();
	if (c1 <= c0) {
		fprintf(stderr, "auv_lat: the TSC does not advance; use "
				"--clock mono\n");
		return -1;
	}
	ticks_per_us = (double)(c1 - c0) * 1000.0 / (double)(m1 - m0);
	return 0;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* The typical (median) step the timestamps take, in microseconds: virtual
 * machines often advance the TSC in coarse steps (10 ns on some), which
 * quantizes latencies of a few tens of nanoseconds. */
static double clk_resolution_us(void)
{
	uint64_t step[257], a, b;
	int i;

	for (i = 0; i < 257; i++) {
		a = clk_now();
		do
			b = clk_now();
		while (b == a);
		step[i] = b - a;
	}
	qsort(step, 257, sizeof(step[0]), cmp_u64);
	return (double)step[128] / ticks_per_us;
}

static uint64_t deadline_ns(void)
{
	return mono_ns() + (uint64_t)cfg.timeout_s * 1000000000ull;
}

/* --- Errors ---------------------------------------------------------------- */

/* augur codes may come back with either sign; normalize for comparisons. */
static int code_abs(int rc)
{
	return rc < 0 ? -rc : rc;
}

/* Report a failed augur call; call it before any other auv_ call so that
 * auv_last_error() still describes this failure.  Returns @rc, or -EIO if
 * @rc carries no code. */
static int auv_err(const char *who, const char *what, int rc)
{
	fprintf(stderr, "auv_lat(%s): %s failed: %s (%d): %s\n", who, what,
		augur_strerror(rc), rc, auv_last_error());
	return rc ? rc : -EIO;
}

/* A count-returning call (auv_post, auv_poll) failed if it returned a
 * negative code or anything above what was asked for (a positive augur
 * code). */
static bool count_failed(int rc, int max)
{
	return rc < 0 || rc > max;
}

/* --- Out-of-band exchange over pipes -------------------------------------- */

enum msg_type {
	MSG_HELLO = 1, /* server -> client: addr, region */
	MSG_PEER,      /* client -> server: region */
	MSG_CMD,       /* client -> server: a phase */
	MSG_ACK,       /* server -> client: ready / done, with status */
	MSG_QUIT,      /* client -> server: finish */
};

enum msg_cmd {
	CMD_PREP = 1, /* get the target region ready for @op at @size */
	CMD_PINGPONG, /* play the server side of a WRITE ping-pong */
};

struct msg {
	uint32_t type;
	uint32_t cmd;
	uint32_t op;
	uint32_t size;
	uint64_t iters;
	int32_t status;
	uint32_t pad;
	struct auv_mr_desc desc;
	char addr[AUV_ADDR_MAX];
};

_Static_assert(sizeof(struct msg) <= 512, "struct msg must stay small");

static int msg_send(int fd, uint32_t type, const struct msg *in)
{
	struct msg m;
	const char *p = (const char *)&m;
	size_t done = 0;
	ssize_t n;

	if (in)
		m = *in;
	else
		memset(&m, 0, sizeof(m));
	m.type = type;
	while (done < sizeof(m)) {
		n = write(fd, p + done, sizeof(m) - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		done += (size_t)n;
	}
	return 0;
}

/* Receive one message; wait at most @timeout_ms (<0: until the peer closes
 * the pipe, which it does when it exits).  Returns 0, -ETIMEDOUT, -EPIPE
 * (the peer exited) or -errno. */
static int msg_recv(int fd, struct msg *m, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint64_t end = mono_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) *
					   1000000ull;
	char *p = (char *)m;
	size_t done = 0;
	ssize_t n;
	int rc, left;

	while (done < sizeof(*m)) {
		left = -1;
		if (timeout_ms >= 0) {
			uint64_t now = mono_ns();

			if (now >= end)
				return -ETIMEDOUT;
			left = (int)((end - now + 999999) / 1000000);
		}
		rc = poll(&pfd, 1, left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		n = read(fd, p + done, sizeof(*m) - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		done += (size_t)n;
	}
	return 0;
}

/* --- One end of the connection -------------------------------------------- */

struct side {
	const char *who; /* "server" or "client" */
	struct auv_ctx *ctx;
	struct auv_mr *mr;
	struct auv_ep *ep;
	struct auv_caps caps;
	uint8_t *a;       /* local source (WRITE) / sink (READ, CAS result) */
	uint8_t *b;       /* where the peer's WRITEs land; READ/CAS target */
	size_t region;    /* bytes of each half */
	struct auv_mr_desc peer; /* the peer's region */
	int rfd, wfd;     /* pipes to the peer process */
	pid_t peer_pid;   /* client: the server's pid; server: the parent's */
	bool peer_dead;
};

/* The server's wait status if peer_alive() reaped it; -1 until then. */
static int server_wait_status = -1;

/* Is the peer process still there?  Only called on slow paths. */
static bool peer_alive(struct side *s)
{
	if (s->peer_dead)
		return false;
	if (!strcmp(s->who, "client")) {
		int st;

		if (waitpid(s->peer_pid, &st, WNOHANG) == s->peer_pid) {
			s->peer_dead = true;
			server_wait_status = st;
		}
	} else if (getppid() != s->peer_pid) {
		s->peer_dead = true;
	}
	return !s->peer_dead;
}

/* Called every few thousand spins: fail if the deadline passed, the
 * endpoint broke or the peer process exited. */
static int spin_check(struct side *s, uint64_t deadline, const char *what)
{
	int st = auv_ep_status(s->ep);

	if (st) {
		fprintf(stderr, "auv_lat(%s): endpoint failed while %s: %s (%d)\n",
			s->who, what, augur_strerror(st), st);
		return st;
	}
	if (!peer_alive(s)) {
		fprintf(stderr, "auv_lat(%s): peer process exited while %s\n",
			s->who, what);
		return -EPIPE;
	}
	if (mono_ns() > deadline) {
		fprintf(stderr, "auv_lat(%s): timed out after %d s while %s\n",
			s->who, cfg.timeout_s, what);
		return -ETIMEDOUT;
	}
	return 0;
}

static int check_wc(struct side *s, const struct auv_wc *wc)
{
	if (!wc->status)
		return 0;
	fprintf(stderr, "auv_lat(%s): operation (opcode %u, cookie %" PRIu64
			") completed with error: %s (%d)\n",
		s->who, wc->opcode, wc->cookie, augur_strerror(wc->status),
		wc->status);
	return wc->status;
}

/* Reap exactly one completion: busy-poll, or sleep in auv_wait() with
 * --wait.  Bounded by --timeout. */
static int wait_one(struct side *s, struct auv_wc *wc)
{
	uint64_t deadline = 0;
	unsigned int spins = 0;
	int rc;

	for (;;) {
		rc = auv_poll(s->ctx, wc, 1);
		if (rc == 1)
			return check_wc(s, wc);
		if (count_failed(rc, 1))
			return auv_err(s->who, "auv_poll", rc);
		if (cfg.use_wait) {
			rc = auv_wait(s->ctx, 100);
			if (rc < 0)
				return auv_err(s->who, "auv_wait", rc);
			if (rc > 0 && (++spins & 63))
				continue;
		} else if (++spins & 4095) {
			continue;
		}
		if (!deadline)
			deadline = deadline_ns();
		rc = spin_check(s, deadline, "waiting for a completion");
		if (rc)
			return rc;
	}
}

/* Post one operation; a full send queue is retried until the deadline. */
static int post_one(struct side *s, const struct auv_op *op)
{
	uint64_t deadline = 0;
	int rc;

	for (;;) {
		rc = auv_post(s->ep, op, 1);
		if (rc == 1)
			return 0;
		if (count_failed(rc, 1))
			return auv_err(s->who, "auv_post", rc);
		if (!deadline)
			deadline = deadline_ns();
		rc = spin_check(s, deadline, "posting");
		if (rc)
			return rc;
	}
}

/* Spin until the byte at @p reads @want (the peer's WRITE has landed). */
static int wait_byte(struct side *s, const uint8_t *p, uint8_t want)
{
	uint64_t deadline = 0;
	unsigned int spins = 0;
	int rc;

	while (__atomic_load_n(p, __ATOMIC_ACQUIRE) != want) {
		if (++spins & 4095)
			continue;
		if (!deadline)
			deadline = deadline_ns();
		rc = spin_check(s, deadline, "waiting for the peer's WRITE");
		if (rc)
			return rc;
	}
	return 0;
}

static void side_close(struct side *s)
{
	int rc;

	auv_ep_close(s->ep);
	s->ep = NULL;
	if (s->mr) {
		rc = auv_mr_dereg(s->mr);
		if (rc)
			auv_err(s->who, "auv_mr_dereg", rc);
		s->mr = NULL;
	}
	auv_ctx_close(s->ctx);
	s->ctx = NULL;
}

/* Open the context and register the region: two halves of the largest
 * size, page aligned.  Returns 0, or the augur code. */
static int side_open(struct side *s, const char *dev, const char *addr)
{
	struct auv_ctx_opts o = { 0 };
	uint32_t sq = 1024;
	int rc;

	while (sq < (uint32_t)cfg.rate_batch + POST_LIST)
		sq *= 2;
	o.provider = cfg.provider;
	if (!strcmp(cfg.provider, "ibv")) {
		o.device = dev;
		o.addr = addr;
	}
	o.sq_depth = sq;
	o.connect_timeout_ms = (uint32_t)cfg.timeout_s * 1000u;
	rc = auv_ctx_open(&o, &s->ctx);
	if (rc)
		return auv_err(s->who, "auv_ctx_open", rc);
	rc = auv_ctx_caps(s->ctx, &s->caps);
	if (rc) {
		auv_err(s->who, "auv_ctx_caps", rc);
		goto out_close;
	}
	s->region = ((size_t)cfg.max_size + 4095) & ~(size_t)4095;
	rc = auv_mr_alloc(s->ctx, 2 * s->region, AUV_ACCESS_ALL, &s->mr);
	if (rc) {
		auv_err(s->who, "auv_mr_alloc", rc);
		goto out_close;
	}
	s->a = auv_mr_addr(s->mr);
	s->b = s->a + s->region;
	memset(s->a, 0, 2 * s->region); /* fault the pages in up front */
	return 0;

out_close:
	auv_ctx_close(s->ctx);
	s->ctx = NULL;
	return rc;
}

static bool use_inline(const struct side *s, uint32_t size)
{
	return !cfg.no_inline && size <= s->caps.max_inline;
}

static uint8_t pattern(uint32_t size, size_t i)
{
	return (uint8_t)(i * 131u + size + 7u);
}

/* --- Server ---------------------------------------------------------------- */

static int server_pingpong(struct side *s, uint32_t size, uint64_t n)
{
	struct auv_op op = {
		.opcode = AUV_OP_WRITE,
		.flags = AUV_OP_SIGNALED,
		.local = s->a,
		.len = size,
		.local_mr = use_inline(s, size) ? NULL : s->mr,
		.remote_addr = s->peer.addr + s->region,
		.rkey = s->peer.rkey,
	};
	uint8_t *post = s->a + size - 1, *seen = s->b + size - 1;
	struct auv_wc wc;
	uint64_t i;
	int rc;

	for (i = 0; i < n; i++) {
		uint8_t v = (uint8_t)(i + 1);

		rc = wait_byte(s, seen, v);
		if (rc)
			return rc;
		*post = v;
		op.cookie = i;
		rc = post_one(s, &op);
		if (rc)
			return rc;
		rc = wait_one(s, &wc);
		if (rc)
			return rc;
	}
	return 0;
}

static int server_main(int rfd, int wfd, pid_t parent)
{
	struct side s = { .who = "server", .rfd = rfd, .wfd = wfd,
			  .peer_pid = parent };
	struct msg m = { 0 };
	size_t plen = 0;
	char priv[AUV_PRIV_MAX];
	int rc;

	rc = side_open(&s, cfg.sdev, cfg.saddr);
	if (rc)
		return code_abs(rc) == AUGUR_ENO_TRANSPORT ? EXIT_SKIP : 1;
	auv_mr_desc(s.mr, &m.desc);
	snprintf(m.addr, sizeof(m.addr), "%s", auv_ctx_addr(s.ctx));
	rc = msg_send(wfd, MSG_HELLO, &m);
	if (rc)
		goto out_pipe;
	rc = auv_ep_accept(s.ctx, cfg.timeout_s * 1000, &s.ep, priv, &plen);
	if (rc) {
		auv_err(s.who, "auv_ep_accept", rc);
		goto out;
	}
	rc = msg_recv(rfd, &m, cfg.timeout_s * 1000);
	if (rc || m.type != MSG_PEER)
		goto out_pipe;
	s.peer = m.desc;

	for (;;) {
		/* Idle in the pipe, not on a CPU, while the client measures
		 * one-sided operations; EOF if the client exits. */
		rc = msg_recv(rfd, &m, -1);
		if (rc)
			goto out_pipe;
		if (m.type == MSG_QUIT)
			break;
		if (m.type != MSG_CMD || m.size == 0 || m.size > s.region) {
			fprintf(stderr, "auv_lat(server): bad command\n");
			rc = -EPROTO;
			goto out;
		}
		if (m.cmd == CMD_PREP) {
			size_t i;

			for (i = 0; i < m.size; i++)
				s.b[i] = m.op == OP_READ ? pattern(m.size, i) : 0;
			smp_mb();
			rc = msg_send(wfd, MSG_ACK, NULL);
			if (rc)
				goto out_pipe;
		} else if (m.cmd == CMD_PINGPONG) {
			__atomic_store_n(&s.b[m.size - 1], 0, __ATOMIC_SEQ_CST);
			rc = msg_send(wfd, MSG_ACK, NULL);
			if (rc)
				goto out_pipe;
			rc = server_pingpong(&s, m.size, m.iters);
			memset(&m, 0, sizeof(m));
			m.status = rc;
			if (msg_send(wfd, MSG_ACK, &m) || rc)
				goto out;
		} else {
			fprintf(stderr, "auv_lat(server): unknown command %u\n",
				m.cmd);
			rc = -EPROTO;
			goto out;
		}
	}
	rc = 0;
	goto out;

out_pipe:
	if (rc == -EPIPE)
		fprintf(stderr, "auv_lat(server): the client exited\n");
	else if (rc)
		fprintf(stderr, "auv_lat(server): pipe to the client: %s\n",
			strerror(-rc));
	else
		fprintf(stderr, "auv_lat(server): unexpected message\n");
	rc = rc ? rc : -EPROTO;
out:
	side_close(&s);
	return rc ? 1 : 0;
}

/* --- Statistics ------------------------------------------------------------ */

struct lat_stats {
	long iters;
	double min, max, typical, avg, stdev, p99, p999;
};

struct rate_stats {
	long ops;
	int list;        /* operations per post list, one signaled */
	long outstanding; /* at most, in operations */
	double mops, mibps;
};

/* perftest's print_report_lat() on post timestamps @t[0..n) (the stdev in
 * floating point: perftest truncates each term to an int). */
static void lat_compute(uint64_t *t, long n, int rtt_factor,
			struct lat_stats *st)
{
	double q = ticks_per_us * rtt_factor, sum = 0, var = 0, med;
	long m = n - 1, i;

	for (i = 0; i < m; i++)
		t[i] = t[i + 1] - t[i]; /* in place: t[] becomes the deltas */
	qsort(t, (size_t)m, sizeof(*t), cmp_u64);
	m -= LAT_MEASURE_TAIL;
	if ((m - 1) % 2)
		med = ((double)t[m / 2] + (double)t[m / 2 - 1]) / 2;
	else
		med = (double)t[m / 2];
	for (i = 0; i < m; i++)
		sum += (double)t[i] / q;
	st->avg = sum / (double)m;
	for (i = 0; i < m; i++) {
		double d = st->avg - (double)t[i] / q;

		var += d * d;
	}
	st->iters = n;
	st->stdev = sqrt(var / (double)m);
	st->typical = med / q;
	st->min = (double)t[0] / q;
	st->max = (double)t[m] / q;
	st->p99 = (double)t[(long)ceil((double)m * 0.99)] / q;
	st->p999 = (double)t[(long)ceil((double)m * 0.999)] / q;
}

static void print_lat_header(void)
{
	printf(" #bytes     #iterations    t_min[usec]    t_max[usec]  "
	       "t_typical[usec]    t_avg[usec]    t_stdev[usec]   "
	       "99%% percentile[usec]   99.9%% percentile[usec]\n");
}

static void print_lat_row(uint32_t size, const struct lat_stats *st)
{
	printf(" %-10u %-14ld %-14.3f %-12.3f %-18.3f %-14.3f %-15.3f "
	       "%-23.3f %.3f\n",
	       size, st->iters, st->min, st->max, st->typical, st->avg,
	       st->stdev, st->p99, st->p999);
}

static FILE *csv_open(void)
{
	FILE *f;

	if (!cfg.csv)
		return NULL;
	f = fopen(cfg.csv, "a");
	if (!f) {
		fprintf(stderr, "auv_lat: cannot open %s: %s\n", cfg.csv,
			strerror(errno));
		return NULL;
	}
	if (ftell(f) == 0)
		fprintf(f, "tool,provider,op,bytes,iterations,t_min_us,t_max_us,"
			   "t_typical_us,t_avg_us,t_stdev_us,p99_us,p999_us,"
			   "rate_ops,rate_mops,rate_mib_s\n");
	return f;
}

static void csv_row(FILE *f, const char *tool, const char *prov,
		    const char *op, uint32_t size, const struct lat_stats *st,
		    const struct rate_stats *rt)
{
	if (!f)
		return;
	fprintf(f, "%s,%s,%s,%u,%ld,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,", tool,
		prov, op, size, st->iters, st->min, st->max, st->typical,
		st->avg, st->stdev, st->p99, st->p999);
	if (rt && rt->ops)
		fprintf(f, "%ld,%.4f,%.4f\n", rt->ops, rt->mops, rt->mibps);
	else
		fprintf(f, ",,\n");
}

/* --- Client: the measurements ---------------------------------------------- */

static int client_cmd(struct side *s, uint32_t cmd, enum bench_op op,
		      uint32_t size, uint64_t iters)
{
	struct msg m = { .cmd = cmd, .op = op, .size = size, .iters = iters };
	int rc;

	rc = msg_send(s->wfd, MSG_CMD, &m);
	if (!rc)
		rc = msg_recv(s->rfd, &m, cfg.timeout_s * 1000);
	if (!rc && m.type != MSG_ACK)
		rc = -EPROTO;
	if (rc)
		fprintf(stderr, "auv_lat(client): no answer from the server: "
				"%s\n",
			rc == -EPIPE ? "it exited" : strerror(-rc));
	return rc;
}

static void fill_op(const struct side *s, enum bench_op op, uint32_t size,
		    struct auv_op *o)
{
	memset(o, 0, sizeof(*o));
	o->local = s->a;
	o->local_mr = s->mr;
	o->remote_addr = s->peer.addr + s->region;
	o->rkey = s->peer.rkey;
	o->len = op == OP_CAS ? 8 : size;
	switch (op) {
	case OP_READ:
		o->opcode = AUV_OP_READ;
		break;
	case OP_WRITE:
		o->opcode = AUV_OP_WRITE;
		if (use_inline(s, size))
			o->local_mr = NULL;
		break;
	default:
		o->opcode = AUV_OP_CAS;
		break;
	}
}

static int lat_read_or_cas(struct side *s, enum bench_op op, uint32_t size,
			   uint64_t *t, long n)
{
	struct auv_op o;
	struct auv_wc wc;
	long i;
	int rc;

	rc = client_cmd(s, CMD_PREP, op, op == OP_CAS ? 8 : size, 0);
	if (rc)
		return rc;
	memset(s->a, 0, size);
	fill_op(s, op, size, &o);
	o.flags = AUV_OP_SIGNALED;
	for (i = 0; i < n; i++) {
		o.cookie = (uint64_t)i;
		o.compare = (uint64_t)i;
		o.swap_add = (uint64_t)i + 1;
		t[i] = clk_now();
		rc = post_one(s, &o);
		if (rc)
			return rc;
		rc = wait_one(s, &wc);
		if (rc)
			return rc;
		if (op == OP_CAS && *(volatile uint64_t *)s->a != (uint64_t)i) {
			fprintf(stderr, "auv_lat(client): CAS %ld returned old "
					"value %" PRIu64 ", expected %ld\n",
				i, *(volatile uint64_t *)s->a, i);
			return -EPROTO;
		}
	}
	if (op == OP_READ) {
		size_t j;

		for (j = 0; j < size; j++) {
			if (s->a[j] != pattern(size, j)) {
				fprintf(stderr, "auv_lat(client): READ of %u "
						"bytes returned wrong data at "
						"byte %zu\n",
					size, j);
				return -EPROTO;
			}
		}
	}
	return 0;
}

static int lat_write(struct side *s, uint32_t size, uint64_t *t, long n)
{
	uint8_t *post = s->a + size - 1, *seen = s->b + size - 1;
	struct msg m;
	struct auv_op o;
	struct auv_wc wc;
	long i;
	int rc, prc;

	__atomic_store_n(seen, 0, __ATOMIC_SEQ_CST);
	rc = client_cmd(s, CMD_PINGPONG, OP_WRITE, size, (uint64_t)n);
	if (rc)
		return rc;
	fill_op(s, OP_WRITE, size, &o);
	o.flags = AUV_OP_SIGNALED;
	for (i = 0; i < n; i++) {
		uint8_t v = (uint8_t)(i + 1);

		t[i] = clk_now();
		*post = v;
		o.cookie = (uint64_t)i;
		rc = post_one(s, &o);
		if (rc)
			break;
		rc = wait_one(s, &wc);
		if (rc)
			break;
		rc = wait_byte(s, seen, v);
		if (rc)
			break;
	}
	/* The server reports how its half went (or the pipe breaks). */
	prc = msg_recv(s->rfd, &m, rc ? 1000 : cfg.timeout_s * 1000);
	if (!rc && (prc || m.type != MSG_ACK || m.status)) {
		fprintf(stderr, "auv_lat(client): the server's side of the "
				"ping-pong failed\n");
		rc = prc ? prc : -EPROTO;
	}
	return rc;
}

/* Pipelined: keep rate_batch operations outstanding, posted as lists of
 * up to POST_LIST with the last one of each list signaled.  Completions of
 * one endpoint arrive in posting order, so one completion retires a list. */
static int rate_run(struct side *s, enum bench_op op, uint32_t size,
		    long total, struct rate_stats *rt)
{
	int list = cfg.rate_batch < POST_LIST ? cfg.rate_batch : POST_LIST;
	long lists = (total + list - 1) / list, posted = 0, done = 0;
	long max_out = cfg.rate_batch / list;
	struct auv_op ops[POST_LIST];
	struct auv_wc wc[POST_LIST];
	uint64_t t0, t1, deadline = 0;
	unsigned int spins = 0;
	int pos = 0, i, rc;

	rc = client_cmd(s, CMD_PREP, op, op == OP_CAS ? 8 : size, 0);
	if (rc)
		return rc;
	for (i = 0; i < list; i++) {
		fill_op(s, op, size, &ops[i]);
		ops[i].cookie = (uint64_t)i;
		/* CAS: the target is 0 and stays 0 */
	}
	ops[list - 1].flags = AUV_OP_SIGNALED;

	t0 = mono_ns();
	while (done < lists) {
		while (posted < lists && posted - done < max_out) {
			rc = auv_post(s->ep, ops + pos, list - pos);
			if (count_failed(rc, list - pos))
				return auv_err(s->who, "auv_post", rc);
			pos += rc;
			if (pos < list)
				break; /* send queue full: reap first */
			pos = 0;
			posted++;
		}
		rc = auv_poll(s->ctx, wc, POST_LIST);
		if (count_failed(rc, POST_LIST))
			return auv_err(s->who, "auv_poll", rc);
		for (i = 0; i < rc; i++) {
			int err = check_wc(s, &wc[i]);

			if (err)
				return err;
			/* only the last op of a list asked for one */
			if (wc[i].cookie == (uint64_t)(list - 1))
				done++;
		}
		if (rc)
			continue;
		if (cfg.use_wait) {
			rc = auv_wait(s->ctx, 100);
			if (rc < 0)
				return auv_err(s->who, "auv_wait", rc);
			if (rc > 0 && (++spins & 63))
				continue;
		} else if (++spins & 4095) {
			continue;
		}
		if (!deadline)
			deadline = deadline_ns();
		rc = spin_check(s, deadline, "waiting for rate completions");
		if (rc)
			return rc;
	}
	t1 = mono_ns();
	rt->ops = lists * list;
	rt->list = list;
	rt->outstanding = max_out * list;
	rt->mops = (double)rt->ops * 1e3 / (double)(t1 - t0);
	rt->mibps = (double)rt->ops * (op == OP_CAS ? 8 : size) * 1e9 /
		    (double)(t1 - t0) / MIB;
	return 0;
}

/* The reference: memcpy() of @size bytes between two halves of the local
 * region, timed exactly like an augur operation. */
static void lat_memcpy(struct side *s, uint32_t size, uint64_t *t, long n)
{
	long i;

	memset(s->b, 0x5a, size);
	for (i = 0; i < n; i++) {
		t[i] = clk_now();
		memcpy(s->a, s->b, size);
		/* The copy must happen, every time. */
		__asm__ __volatile__("" : : "r"(s->a), "r"(s->b) : "memory");
	}
}

static long rate_ops_for(uint32_t size)
{
	long n;

	if (cfg.rate_iters)
		return cfg.rate_iters;
	n = cfg.iters * 10;
	if ((unsigned long long)n * size > RATE_BYTES_CAP)
		n = (long)(RATE_BYTES_CAP / size);
	if (n < 4L * cfg.rate_batch)
		n = 4L * cfg.rate_batch;
	return n;
}

static int client_op(struct side *s, enum bench_op op, uint64_t *t,
		     FILE *csv)
{
	struct lat_stats lat[MAX_SIZES];
	struct rate_stats rate[MAX_SIZES];
	double ratio[MAX_SIZES][2]; /* typical, avg */
	uint32_t sizes[MAX_SIZES];
	int ns = 0, k, rc;
	bool shm = !strcmp(cfg.provider, "shm");

	if (op == OP_CAS) {
		sizes[ns++] = 8;
	} else {
		for (k = 0; k < cfg.nsizes; k++) {
			if (cfg.sizes[k] > s->caps.max_msg) {
				printf(" (%u B skipped: larger than the "
				       "provider's max_msg %u)\n",
				       cfg.sizes[k], s->caps.max_msg);
				continue;
			}
			sizes[ns++] = cfg.sizes[k];
		}
	}
	memset(rate, 0, sizeof(rate));

	printf("\n %s latency (%s), %s\n", op_name[op], op_how[op],
	       cfg.use_wait ? "auv_wait" : "busy-poll");
	print_lat_header();
	for (k = 0; k < ns; k++) {
		if (op == OP_WRITE)
			rc = lat_write(s, sizes[k], t, cfg.iters);
		else
			rc = lat_read_or_cas(s, op, sizes[k], t, cfg.iters);
		if (rc)
			return rc;
		lat_compute(t, cfg.iters, op == OP_WRITE ? 2 : 1, &lat[k]);
		print_lat_row(sizes[k], &lat[k]);
		fflush(stdout);
	}
	if (cfg.rate_batch) {
		for (k = 0; k < ns; k++) {
			rc = rate_run(s, op, sizes[k], rate_ops_for(sizes[k]),
				      &rate[k]);
			if (rc)
				return rc;
			printf(" %s message rate %u B: %.3f Mops/s  %.2f MB/s"
			       "  (%ld ops, %ld outstanding, post lists of %d, "
			       "1 in %d signaled)\n",
			       op_name[op], sizes[k], rate[k].mops,
			       rate[k].mibps, rate[k].ops, rate[k].outstanding,
			       rate[k].list, rate[k].list);
		}
	}
	for (k = 0; k < ns; k++)
		csv_row(csv, "auv_lat", cfg.provider, op_lower[op], sizes[k],
			&lat[k], &rate[k]);

	if (op != OP_READ || !shm || cfg.no_ref)
		return 0;

	printf("\n reference: memcpy() of the same size, timed the same way\n");
	print_lat_header();
	for (k = 0; k < ns; k++) {
		struct lat_stats ref;

		lat_memcpy(s, sizes[k], t, cfg.iters);
		lat_compute(t, cfg.iters, 1, &ref);
		print_lat_row(sizes[k], &ref);
		csv_row(csv, "memcpy", "local", "copy", sizes[k], &ref, NULL);
		ratio[k][0] = lat[k].typical / ref.typical;
		ratio[k][1] = lat[k].avg / ref.avg;
	}
	for (k = 0; k < ns; k++) {
		char at[32] = "";

		if (ns > 1)
			snprintf(at, sizeof(at), " (%u B)", sizes[k]);
		printf(" ratio augur_read/memcpy typical: %.2f%s\n",
		       ratio[k][0], at);
		printf(" ratio augur_read/memcpy avg: %.2f%s\n", ratio[k][1],
		       at);
	}
	return 0;
}

static int client_main(int rfd, int wfd, pid_t server)
{
	struct side s = { .who = "client", .rfd = rfd, .wfd = wfd,
			  .peer_pid = server };
	struct msg m;
	uint64_t *t;
	FILE *csv = NULL;
	int op, rc;

	t = calloc((size_t)cfg.iters, sizeof(*t));
	if (!t) {
		fprintf(stderr, "auv_lat: out of memory\n");
		return -ENOMEM;
	}
	rc = msg_recv(rfd, &m, cfg.timeout_s * 1000);
	if (rc || m.type != MSG_HELLO) {
		fprintf(stderr, "auv_lat(client): the server did not start "
				"(%s)\n",
			rc == -EPIPE ? "it exited" : rc ? strerror(-rc)
							: "bad message");
		rc = rc ? rc : -EPROTO;
		goto out_free;
	}
	m.addr[sizeof(m.addr) - 1] = '\0';
	rc = side_open(&s, cfg.cdev, cfg.caddr);
	if (rc)
		goto out_free;
	s.peer = m.desc;
	rc = auv_ep_connect(s.ctx, m.addr, NULL, 0, &s.ep);
	if (rc) {
		auv_err(s.who, "auv_ep_connect", rc);
		goto out_close;
	}
	memset(&m, 0, sizeof(m));
	auv_mr_desc(s.mr, &m.desc);
	rc = msg_send(wfd, MSG_PEER, &m);
	if (rc) {
		fprintf(stderr, "auv_lat(client): pipe: %s\n", strerror(-rc));
		goto out_close;
	}

	printf("auv_lat: provider %s, device %s, %ld iterations, clock %s "
	       "(%.3f ticks/us, resolution %.3f us), %s, max_inline %u\n",
	       auv_ctx_provider(s.ctx), s.caps.device, cfg.iters,
	       cfg.use_tsc ? "tsc" : "monotonic", ticks_per_us,
	       clk_resolution_us(), cfg.use_wait ? "auv_wait" : "busy-poll",
	       s.caps.max_inline);
	csv = csv_open();
	if (cfg.csv && !csv) {
		rc = -EIO;
		goto out_close;
	}
	for (op = 0; op < NR_OPS; op++) {
		if (!(cfg.ops & (1u << op)))
			continue;
		rc = client_op(&s, op, t, csv);
		if (rc)
			break;
	}
	if (csv && fclose(csv)) {
		fprintf(stderr, "auv_lat: writing %s: %s\n", cfg.csv,
			strerror(errno));
		rc = rc ? rc : -EIO;
	}
	if (!rc) {
		rc = msg_send(wfd, MSG_QUIT, NULL);
		if (rc)
			fprintf(stderr, "auv_lat(client): cannot tell the "
					"server to finish: %s\n",
				rc == -EPIPE ? "it exited" : strerror(-rc));
	}
out_close:
	side_close(&s);
out_free:
	free(t);
	return rc;
}

/* Reap the server: wait up to 10 s, then kill it. */
static int reap_server(pid_t pid, bool kill_it)
{
	uint64_t end = mono_ns() + 10000000000ull;
	int st = 0;
	pid_t r;

	if (server_wait_status >= 0) {
		st = server_wait_status; /* peer_alive() reaped it */
		goto out;
	}
	if (kill_it)
		kill(pid, SIGTERM);
	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "auv_lat: waitpid: %s\n",
				strerror(errno));
			return -1;
		}
		if (mono_ns() > end) {
			fprintf(stderr, "auv_lat: server did not exit, "
					"killing it\n");
			kill(pid, SIGKILL);
			if (waitpid(pid, &st, 0) < 0)
				return -1;
			break;
		}
		usleep(10000);
	}
out:
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* --- Options --------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: auv_lat [options]\n"
		"  -p, --provider shm|ibv  transport (default $AUGUR_TRANSPORT, "
		"else shm)\n"
		"  -d, --device DEV        ibv: server device (default first "
		"of $AUGUR_TEST_DEVICES)\n"
		"      --client-device DEV ibv: client device (default second "
		"of $AUGUR_TEST_DEVICES)\n"
		"      --addr IP           ibv: server address (default first "
		"of $AUGUR_TEST_ADDRS)\n"
		"      --client-addr IP    ibv: client address (default second "
		"of $AUGUR_TEST_ADDRS)\n"
		"  -s, --size BYTES        message size (default 64; K/M "
		"suffixes)\n"
		"  -a, --all               all sizes 8 B .. 1 MiB, powers of "
		"two\n"
		"  -n, --iters N           latency iterations (default 1000 "
		"ibv, 100000 shm)\n"
		"  -o, --op OP             read, write, cas or all (default "
		"all; repeatable)\n"
		"      --rate-batch K      outstanding ops in the rate phase "
		"(default 64, a multiple of 16; 0: skip)\n"
		"      --rate-iters N      ops in the rate phase (default "
		"10 x iters, <= 256 MiB)\n"
		"      --wait              sleep in auv_wait() instead of "
		"busy-polling completions\n"
		"      --clock tsc|mono    timestamps (default tsc where "
		"available)\n"
		"      --no-inline         never send WRITEs inline\n"
		"      --no-ref            shm: skip the memcpy reference\n"
		"      --timeout SEC       give up on any single wait after "
		"SEC s (default 30)\n"
		"      --csv FILE          append results as CSV rows\n"
		"      --clock-rate        print the clock's ticks per "
		"microsecond (TSC: MHz) and exit\n"
		"  -h, --help\n");
}

static int parse_ulong(const char *s, const char *what, unsigned long max,
		       unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (end != s && (*end == 'k' || *end == 'K')) {
		v <<= 10;
		end++;
	} else if (end != s && (*end == 'm' || *end == 'M')) {
		v <<= 20;
		end++;
	}
	if (errno || end == s || *end || *s == '-' || v > max) {
		fprintf(stderr, "auv_lat: bad %s '%s' (0..%lu)\n", what, s, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* "x,y" from the environment: the first or second item. */
static const char *env_item(const char *name, int idx, char *buf, size_t len)
{
	const char *e = getenv(name), *comma;
	size_t n;

	if (!e || !*e)
		return NULL;
	comma = strchr(e, ',');
	if (idx == 1 && !comma)
		return NULL;
	if (idx == 1)
		e = comma + 1;
	n = idx == 0 && comma ? (size_t)(comma - e) : strlen(e);
	if (n >= len) {
		fprintf(stderr, "auv_lat: ignoring $%s: item too long\n", name);
		return NULL;
	}
	memcpy(buf, e, n);
	buf[n] = '\0';
	return n ? buf : NULL;
}

static int parse_args(int argc, char **argv)
{
	enum { O_CDEV = 256, O_ADDR, O_CADDR, O_BATCH, O_RITERS, O_WAIT,
	       O_CLOCK, O_NOINLINE, O_NOREF, O_TIMEOUT, O_CSV, O_RATE };
	static const struct option lopts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "device", required_argument, NULL, 'd' },
		{ "client-device", required_argument, NULL, O_CDEV },
		{ "addr", required_argument, NULL, O_ADDR },
		{ "client-addr", required_argument, NULL, O_CADDR },
		{ "size", required_argument, NULL, 's' },
		{ "all", no_argument, NULL, 'a' },
		{ "iters", required_argument, NULL, 'n' },
		{ "op", required_argument, NULL, 'o' },
		{ "rate-batch", required_argument, NULL, O_BATCH },
		{ "rate-iters", required_argument, NULL, O_RITERS },
		{ "wait", no_argument, NULL, O_WAIT },
		{ "clock", required_argument, NULL, O_CLOCK },
		{ "no-inline", no_argument, NULL, O_NOINLINE },
		{ "no-ref", no_argument, NULL, O_NOREF },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "csv", required_argument, NULL, O_CSV },
		{ "clock-rate", no_argument, NULL, O_RATE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char envbuf[4][128];
	unsigned long v, size = 64;
	bool all = false;
	int c, k;

	cfg.use_tsc = HAVE_TSC;
	cfg.rate_batch = 64;
	cfg.timeout_s = 30;
	cfg.iters = -1;
	while ((c = getopt_long(argc, argv, "p:d:s:an:o:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			cfg.provider = optarg;
			break;
		case 'd':
			cfg.sdev = optarg;
			break;
		case O_CDEV:
			cfg.cdev = optarg;
			break;
		case O_ADDR:
			cfg.saddr = optarg;
			break;
		case O_CADDR:
			cfg.caddr = optarg;
			break;
		case 's':
			if (parse_ulong(optarg, "size", MAX_SIZE, &size))
				return -EINVAL;
			if (!size) {
				fprintf(stderr, "auv_lat: size must be >= 1\n");
				return -EINVAL;
			}
			break;
		case 'a':
			all = true;
			break;
		case 'n':
			if (parse_ulong(optarg, "iterations", 100000000, &v))
				return -EINVAL;
			if (v < 8) {
				fprintf(stderr, "auv_lat: need at least 8 "
						"iterations\n");
				return -EINVAL;
			}
			cfg.iters = (long)v;
			break;
		case 'o':
			if (!strcmp(optarg, "all")) {
				cfg.ops = (1u << NR_OPS) - 1;
				break;
			}
			for (k = 0; k < NR_OPS; k++)
				if (!strcmp(optarg, op_lower[k]))
					break;
			if (k == NR_OPS) {
				fprintf(stderr, "auv_lat: unknown op '%s' "
						"(read, write, cas, all)\n",
					optarg);
				return -EINVAL;
			}
			cfg.ops |= 1u << k;
			break;
		case O_BATCH:
			if (parse_ulong(optarg, "rate batch", 4096, &v))
				return -EINVAL;
			cfg.rate_batch = (int)v;
			break;
		case O_RITERS:
			if (parse_ulong(optarg, "rate iterations", 1000000000,
					&v))
				return -EINVAL;
			cfg.rate_iters = (long)v;
			break;
		case O_WAIT:
			cfg.use_wait = true;
			break;
		case O_CLOCK:
			if (!strcmp(optarg, "mono")) {
				cfg.use_tsc = false;
			} else if (!strcmp(optarg, "tsc") && HAVE_TSC) {
				cfg.use_tsc = true;
			} else {
				fprintf(stderr, "auv_lat: --clock tsc|mono "
						"(tsc only on x86)\n");
				return -EINVAL;
			}
			break;
		case O_NOINLINE:
			cfg.no_inline = true;
			break;
		case O_NOREF:
			cfg.no_ref = true;
			break;
		case O_TIMEOUT:
			if (parse_ulong(optarg, "timeout", 3600, &v))
				return -EINVAL;
			cfg.timeout_s = v ? (int)v : 1;
			break;
		case O_CSV:
			cfg.csv = optarg;
			break;
		case O_RATE:
			cfg.clock_rate = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "auv_lat: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!cfg.provider)
		cfg.provider = getenv("AUGUR_TRANSPORT");
	if (!cfg.provider || !*cfg.provider)
		cfg.provider = "shm";
	if (!cfg.ops)
		cfg.ops = (1u << NR_OPS) - 1;
	if (cfg.iters < 0)
		cfg.iters = strcmp(cfg.provider, "shm") ? 1000 : 100000;
	if (!cfg.sdev)
		cfg.sdev = env_item("AUGUR_TEST_DEVICES", 0, envbuf[0], 128);
	if (!cfg.cdev)
		cfg.cdev = env_item("AUGUR_TEST_DEVICES", 1, envbuf[1], 128);
	if (!cfg.saddr)
		cfg.saddr = env_item("AUGUR_TEST_ADDRS", 0, envbuf[2], 128);
	if (!cfg.caddr)
		cfg.caddr = env_item("AUGUR_TEST_ADDRS", 1, envbuf[3], 128);
	if (all) {
		for (v = 8; v <= MAX_SIZE; v <<= 1)
			cfg.sizes[cfg.nsizes++] = (uint32_t)v;
	} else {
		cfg.sizes[cfg.nsizes++] = (uint32_t)size;
	}
	cfg.max_size = cfg.sizes[cfg.nsizes - 1];
	if (cfg.max_size < 8)
		cfg.max_size = 8;
	return 0;
}

int main(int argc, char **argv)
{
	int c2s[2], s2c[2], rc, st;
	pid_t pid, parent = getpid();

	if (parse_args(argc, argv))
		return 1;
	if (clk_calibrate())
		return 1;
	if (cfg.clock_rate) {
		printf("%.3f\n", ticks_per_us);
		return 0;
	}
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		fprintf(stderr, "auv_lat: signal: %s\n", strerror(errno));
		return 1;
	}
	if (pipe(c2s) || pipe(s2c)) {
		fprintf(stderr, "auv_lat: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "auv_lat: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		close(c2s[1]);
		close(s2c[0]);
		rc = server_main(c2s[0], s2c[1], parent);
		fflush(NULL);
		_exit(rc);
	}
	close(c2s[0]);
	close(s2c[1]);
	rc = client_main(s2c[0], c2s[1], pid);
	close(c2s[1]);
	close(s2c[0]);
	st = reap_server(pid, rc != 0);
	if (code_abs(rc) == AUGUR_ENO_TRANSPORT || st == EXIT_SKIP) {
		fprintf(stderr, "auv_lat: SKIP: transport '%s' not available "
				"here\n",
			cfg.provider);
		return EXIT_SKIP;
	}
	if (rc && st == 128 + SIGTERM)
		; /* we stopped it ourselves after the failure above */
	else if (st > 128)
		fprintf(stderr, "auv_lat: the server was killed by signal %d\n",
			st - 128);
	else if (st > 0)
		fprintf(stderr, "auv_lat: the server exited with status %d\n",
			st);
	return rc || st ? 1 : 0;
}
