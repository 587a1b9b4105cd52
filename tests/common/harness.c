// SPDX-License-Identifier: MIT
/*
 * tests/common/harness.c - fork the ranks of a conformance test, give them an
 * out-of-band channel, connect them, poll with bounds, judge the outcome.
 *
 * Process layout: the parent makes one socketpair per pair of ranks and a
 * shared anonymous page (pids, expected deaths), forks the ranks and only
 * waits.  Each rank keeps its own ends of the socketpairs and closes the
 * rest, so a rank's exit (or death) shows up to each peer as end-of-file.
 * Every rank dies with the parent (PR_SET_PDEATHSIG), so a runner that kills
 * the parent on its own timeout leaves nothing behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Shared between the parent and all ranks (MAP_SHARED, before fork). */
struct th_shared {
	_Atomic pid_t pid[TH_MAX_PROCS];
	_Atomic int expect_death[TH_MAX_PROCS];
};

static const char *test_name = "test";
static int my_rank = -1; /* -1 in the parent */
static bool verbose;
static char phase[256];
static char waiting[192];
static char last_call[96]; /* th_call()'s last completed command */
static char alarm_msg[160];

/* --- Reporting ------------------------------------------------------------ */

static void prefix(FILE *f)
{
	if (my_rank >= 0)
		fprintf(f, "[%s r%d] ", test_name, my_rank);
	else
		fprintf(f, "[%s] ", test_name);
}

void th_fail_at(const char *file, int line, long long code, const char *fmt,
		...)
{
	va_list ap;

	prefix(stderr);
	fprintf(stderr, "FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (code)
		fprintf(stderr, "    code %lld: %s\n", code,
			augur_strerror((int)code));
	fprintf(stderr, "    auv_last_error(): %s\n", auv_last_error());
	if (phase[0])
		fprintf(stderr, "    phase: %s\n", phase);
	if (waiting[0])
		fprintf(stderr, "    while %s\n", waiting);
	fflush(NULL);
	exit(TH_FAIL);
}

void th_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stdout, "SKIP: ");
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(NULL);
	exit(TH_SKIP);
}

void th_log(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	prefix(stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void th_note(const char *fmt, ...)
{
	va_list ap;

	prefix(stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void th_phase(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(phase, sizeof(phase), fmt, ap);
	va_end(ap);
	if (verbose) {
		prefix(stderr);
		fprintf(stderr, "phase: %s\n", phase);
	}
}

static void wr(const char *s)
{
	ssize_t r = write(2, s, strlen(s));

	(void)r;
}

/* A rank's last word when its own time limit passes. */
static void rank_alarm(int sig)
{
	wr(alarm_msg);
	wr(phase[0] ? phase : "(none)");
	if (waiting[0]) {
		wr("; ");
		wr(waiting);
	}
	wr("\n");
	_exit(TH_FAIL);
}

/* --- Time, randomness, patterns ----------------------------------------- */

uint64_t th_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t th_rand(struct th *t)
{
	t->rng = splitmix64(t->rng);
	return t->rng;
}

long th_scaled(const struct th *t, long n_shm)
{
	double n = (double)n_shm * t->scale;

	if (t->ibv)
		n /= 10;
	return n < 1 ? 1 : (long)n;
}

uint8_t th_pattern_byte(uint64_t seed, uint64_t i)
{
	uint64_t w = splitmix64(seed * 0x100000001b3ull + (i >> 3));

	return (uint8_t)(w >> ((i & 7) * 8));
}

void th_fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	uint64_t w = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (i == 0 || !(i & 7))
			w = splitmix64(seed * 0x100000001b3ull + (i >> 3));
		p[i] = (uint8_t)(w >> ((i & 7) * 8));
	}
}

size_t th_verify(const void *buf, size_t len, uint64_t seed, const char *what)
{
	const uint8_t *p = buf;
	size_t i, bad = 0;
	uint64_t w = 0;
	uint8_t want;

	for (i = 0; i < len; i++) {
		if (i == 0 || !(i & 7))
			w = splitmix64(seed * 0x100000001b3ull + (i >> 3));
		want = (uint8_t)(w >> ((i & 7) * 8));
		if (p[i] == want)
			continue;
		if (bad < 4) {
			prefix(stderr);
			fprintf(stderr,
				"%s: byte %zu of %zu is 0x%02x, expected "
				"0x%02x (pattern %llu)\n",
				what, i, len, p[i], want,
				(unsigned long long)seed);
		}
		bad++;
	}
	if (bad > 4) {
		prefix(stderr);
		fprintf(stderr, "%s: %zu of %zu bytes differ\n", what, bad,
			len);
	}
	return bad;
}

size_t th_verify_byte(const void *buf, size_t len, uint8_t byte,
		      const char *what)
{
	const uint8_t *p = buf;
	size_t i, bad = 0;

	for (i = 0; i < len; i++) {
		if (p[i] == byte)
			continue;
		if (bad < 4) {
			prefix(stderr);
			fprintf(stderr,
				"%s: byte %zu of %zu is 0x%02x, expected "
				"0x%02x\n",
				what, i, len, p[i], byte);
		}
		bad++;
	}
	if (bad > 4) {
		prefix(stderr);
		fprintf(stderr, "%s: %zu of %zu bytes differ\n", what, bad,
			len);
	}
	return bad;
}

/* --- Out-of-band channel ------------------------------------------------- */

static void check_peer(const struct th *t, int peer, const char *fn)
{
	if (peer < 0 || peer >= t->nprocs || peer == t->rank ||
	    t->oob[peer] < 0)
		th_fail_at(__FILE__, __LINE__, 0, "%s: bad peer rank %d", fn,
			   peer);
}

void th_send(struct th *t, int peer, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	check_peer(t, peer, "th_send");
	snprintf(waiting, sizeof(waiting), "sending to rank %d", peer);
	while (len) {
		n = send(t->oob[peer], p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			prefix(stderr);
			fprintf(stderr,
				"rank %d closed its out-of-band channel "
				"(exited or died) before we could send "
				"(phase: %s)\n",
				peer, phase);
			exit(TH_COLLATERAL);
		}
		if (n <= 0)
			th_fail_at(__FILE__, __LINE__, -errno,
				   "send to rank %d", peer);
		p += n;
		len -= (size_t)n;
	}
	waiting[0] = '\0';
}

void th_recv(struct th *t, int peer, void *buf, size_t len)
{
	char *p = buf;
	ssize_t n;

	check_peer(t, peer, "th_recv");
	snprintf(waiting, sizeof(waiting), "waiting for a message from rank %d",
		 peer);
	while (len) {
		n = recv(t->oob[peer], p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			prefix(stderr);
			fprintf(stderr,
				"rank %d closed its out-of-band channel "
				"(exited or died) while we waited for it "
				"(phase: %s%s)\n",
				peer, phase, last_call);
			exit(TH_COLLATERAL);
		}
		if (n < 0)
			th_fail_at(__FILE__, __LINE__, -errno,
				   "recv from rank %d", peer);
		p += n;
		len -= (size_t)n;
	}
	waiting[0] = '\0';
}

void th_send_u64(struct th *t, int peer, uint64_t v)
{
	th_send(t, peer, &v, sizeof(v));
}

uint64_t th_recv_u64(struct th *t, int peer)
{
	uint64_t v;

	th_recv(t, peer, &v, sizeof(v));
	return v;
}

void th_barrier(struct th *t)
{
	uint8_t b = 0xba;
	int r;

	if (t->rank == 0) {
		for (r = 1; r < t->nprocs; r++) {
			th_recv(t, r, &b, 1);
			CHECK_EQ(b, 0xba);
		}
		for (r = 1; r < t->nprocs; r++)
			th_send(t, r, &b, 1);
	} else {
		th_send(t, 0, &b, 1);
		th_recv(t, 0, &b, 1);
		CHECK_EQ(b, 0xba);
	}
}

void th_wait_exit(struct th *t, int peer)
{
	char c;
	ssize_t n;

	check_peer(t, peer, "th_wait_exit");
	snprintf(waiting, sizeof(waiting), "waiting for rank %d to exit", peer);
	for (;;) {
		n = recv(t->oob[peer], &c, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		CHECKF(n < 0,
		       "rank %d sent data while we waited for it to "
		       "exit",
		       peer);
		th_fail_at(__FILE__, __LINE__, -errno, "recv from rank %d",
			   peer);
	}
	waiting[0] = '\0';
	close(t->oob[peer]);
	t->oob[peer] = -1;
}

pid_t th_pid(const struct th *t, int rank)
{
	return atomic_load(&t->sh->pid[rank]);
}

void th_kill(struct th *t, int peer)
{
	pid_t pid = th_pid(t, peer);

	CHECKF(pid > 0, "no pid for rank %d", peer);
	atomic_store(&t->sh->expect_death[peer], 1);
	CHECKF(kill(pid, SIGKILL) == 0, "kill(%d, SIGKILL): %s", (int)pid,
	       strerror(errno));
	close(t->oob[peer]);
	t->oob[peer] = -1;
}

/* --- Connections ---------------------------------------------------------- */

static int accept_timeout_ms(const struct th *t)
{
	return t->ibv ? 60000 : 20000;
}

static struct auv_ep *accept_one(struct th *t, int *from)
{
	char priv[AUV_PRIV_MAX];
	size_t plen = 0;
	int32_t r;
	struct auv_ep *ep = NULL;
	int rc;

	rc = auv_ep_accept(t->ctx, accept_timeout_ms(t), &ep, priv, &plen);
	CHECKF(rc == 0, "auv_ep_accept: %d (%s) after %d ms", rc,
	       augur_strerror(rc), accept_timeout_ms(t));
	CHECK(ep != NULL);
	CHECKF(plen == sizeof(r),
	       "accept: private data of %zu bytes, "
	       "expected %zu",
	       plen, sizeof(r));
	memcpy(&r, priv, sizeof(r));
	CHECKF(r >= 0 && r < t->nprocs && r != t->rank,
	       "accept: private data names rank %d", (int)r);
	*from = r;
	return ep;
}

struct auv_ep *th_connect(struct th *t, int peer)
{
	struct auv_ep *ep = NULL;
	int32_t me = t->rank;
	int from, rc;

	check_peer(t, peer, "th_connect");
	if (t->rank < peer) {
		snprintf(waiting, sizeof(waiting),
			 "accepting a connection from rank %d", peer);
		ep = accept_one(t, &from);
		CHECKF(from == peer, "accepted rank %d, expected rank %d", from,
		       peer);
	} else {
		snprintf(waiting, sizeof(waiting), "connecting to rank %d (%s)",
			 peer, t->addr[peer]);
		rc =
		    auv_ep_connect(t->ctx, t->addr[peer], &me, sizeof(me), &ep);
		CHECKF(rc == 0, "auv_ep_connect(%s): %d (%s)", t->addr[peer],
		       rc, augur_strerror(rc));
		CHECK(ep != NULL);
	}
	waiting[0] = '\0';
	CHECK_EQ(auv_ep_status(ep), 0);
	t->ep[peer] = ep;
	return ep;
}

void th_connect_star(struct th *t)
{
	struct auv_ep *ep;
	int i, from;

	if (t->rank != 0) {
		th_connect(t, 0);
		return;
	}
	for (i = 0; i < t->nprocs - 1; i++) {
		snprintf(waiting, sizeof(waiting),
			 "accepting connection %d of %d", i + 1, t->nprocs - 1);
		ep = accept_one(t, &from);
		CHECKF(!t->ep[from], "rank %d connected twice", from);
		CHECK_EQ(auv_ep_status(ep), 0);
		t->ep[from] = ep;
	}
	waiting[0] = '\0';
}

struct auv_ep *th_reconnect(struct th *t, int peer)
{
	auv_ep_close(t->ep[peer]);
	t->ep[peer] = NULL;
	return th_connect(t, peer);
}

/* --- Completions ------------------------------------------------------------
 */

int th_poll_wait(struct th *t, struct auv_wc *wc, int max, int timeout_ms)
{
	uint64_t deadline = th_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	uint64_t now;
	int idle = 0, n, left_ms;

	for (;;) {
		n = auv_poll(t->ctx, wc, max);
		if (n < 0)
			th_fail_at(__FILE__, __LINE__, n, "auv_poll");
		CHECKF(n <= max, "auv_poll returned %d > max %d", n, max);
		if (n > 0)
			return n;
		now = th_now_ns();
		if (now >= deadline)
			return 0;
		if (++idle < 64)
			continue;
		if (idle < 128) {
			sched_yield();
			continue;
		}
		left_ms = (int)((deadline - now) / 1000000ull) + 1;
		n = auv_wait(t->ctx, left_ms < 10 ? left_ms : 10);
		if (n < 0)
			th_fail_at(__FILE__, __LINE__, n, "auv_wait");
	}
}

void th_poll_n(struct th *t, struct auv_wc *wc, int n, int batch)
{
	int got = 0, r, want;

	if (batch <= 0)
		batch = 64;
	snprintf(waiting, sizeof(waiting), "polling for %d completions", n);
	while (got < n) {
		want = n - got < batch ? n - got : batch;
		r = th_poll_wait(t, wc + got, want, t->poll_timeout_ms);
		CHECKF(r > 0, "no completion in %d ms (have %d of %d)",
		       t->poll_timeout_ms, got, n);
		got += r;
	}
	waiting[0] = '\0';
}

int th_do(struct th *t, struct auv_ep *ep, const struct auv_op *op,
	  struct auv_wc *wc_out)
{
	struct auv_op o = *op;
	struct auv_wc wc;
	int rc;

	o.flags |= AUV_OP_SIGNALED;
	rc = auv_post(ep, &o, 1);
	CHECKF(rc == 1, "auv_post(opcode %u, len %u) returned %d (%s)",
	       o.opcode, o.len, rc, rc < 0 ? augur_strerror(rc) : "count");
	th_poll_n(t, &wc, 1, 1);
	CHECKF(wc.ep == ep, "completion for another endpoint (cookie %llu)",
	       (unsigned long long)wc.cookie);
	CHECKF(wc.cookie == o.cookie,
	       "completion cookie %llu, expected %llu (status %d: %s)",
	       (unsigned long long)wc.cookie, (unsigned long long)o.cookie,
	       wc.status, augur_strerror(wc.status));
	if (wc.status == 0)
		CHECKF(wc.opcode == o.opcode,
		       "completion opcode %u, expected %u", wc.opcode,
		       o.opcode);
	CHECKF(wc.status <= 0, "completion status %d is positive", wc.status);
	if (wc_out)
		*wc_out = wc;
	return wc.status;
}

struct auv_op th_op(uint8_t opcode, void *local, uint32_t len,
		    struct auv_mr *local_mr, const struct auv_mr_desc *d,
		    uint64_t off, uint64_t cookie)
{
	struct auv_op op;

	memset(&op, 0, sizeof(op));
	op.opcode = opcode;
	op.local = local;
	op.len = len;
	op.local_mr = local_mr;
	op.cookie = cookie;
	if (d) {
		op.remote_addr = d->addr + off;
		op.rkey = d->rkey;
	}
	return op;
}

/* --- The command server ------------------------------------------------- */

static uint8_t *cmd_range(struct th *t, const struct th_cmd *c)
{
	struct auv_mr *mr;

	CHECKF(c->mr < TH_MAX_MRS && t->mr[c->mr],
	       "command %u on region %u, which is not there", c->op, c->mr);
	mr = t->mr[c->mr];
	CHECKF(c->off <= auv_mr_len(mr) && c->len <= auv_mr_len(mr) - c->off,
	       "command %u: [%llu, +%llu) outside region %u of %zu bytes",
	       c->op, (unsigned long long)c->off, (unsigned long long)c->len,
	       c->mr, auv_mr_len(mr));
	return (uint8_t *)auv_mr_addr(mr) + c->off;
}

void th_serve(struct th *t, int peer, th_user_fn user)
{
	struct auv_mr_desc d;
	struct th_cmd c;
	char what[96];
	uint64_t reply, v;
	unsigned long n;
	uint8_t *p;

	th_phase("serving rank %d", peer);
	for (n = 1;; n++) {
		th_recv(t, peer, &c, sizeof(c));
		th_phase("serving rank %d: command #%lu: %u (region %u, "
			 "%llu+%llu)",
			 peer, n, c.op, c.mr, (unsigned long long)c.off,
			 (unsigned long long)c.len);
		reply = 0;
		switch (c.op) {
		case TH_CMD_DONE:
			th_send_u64(t, peer, 0);
			return;
		case TH_CMD_FILL:
			th_fill(cmd_range(t, &c), c.len, c.arg);
			break;
		case TH_CMD_MEMSET:
			memset(cmd_range(t, &c), (int)(uint8_t)c.arg, c.len);
			break;
		case TH_CMD_VERIFY:
			snprintf(what, sizeof(what), "region %u at %llu", c.mr,
				 (unsigned long long)c.off);
			reply = th_verify(cmd_range(t, &c), c.len, c.arg, what);
			break;
		case TH_CMD_VERIFY_BYTE:
			snprintf(what, sizeof(what), "region %u at %llu", c.mr,
				 (unsigned long long)c.off);
			reply = th_verify_byte(cmd_range(t, &c), c.len,
					       (uint8_t)c.arg, what);
			break;
		case TH_CMD_RECONNECT:
			th_send_u64(t, peer, 0);
			th_reconnect(t, peer);
			continue;
		case TH_CMD_DESC:
			c.off = 0;
			c.len = 0;
			cmd_range(t, &c);
			auv_mr_desc(t->mr[c.mr], &d);
			th_send(t, peer, &d, sizeof(d));
			continue;
		case TH_CMD_LOAD64:
			c.len = 8;
			p = cmd_range(t, &c);
			memcpy(&v, p, 8);
			reply = v;
			break;
		default:
			CHECKF(user && c.op >= TH_CMD_USER,
			       "unknown command %u", c.op);
			reply = user(t, peer, &c);
			break;
		}
		th_send_u64(t, peer, reply);
	}
}

uint64_t th_call(struct th *t, int peer, uint32_t op, uint32_t mr, uint64_t off,
		 uint64_t len, uint64_t arg)
{
	struct th_cmd c = {
	    .op = op, .mr = mr, .off = off, .len = len, .arg = arg};
	uint64_t reply;

	t->calls++;
	th_send(t, peer, &c, sizeof(c));
	reply = th_recv_u64(t, peer);
	snprintf(last_call, sizeof(last_call),
		 "; last command to rank %d: #%lu (%u)", peer, t->calls, op);
	return reply;
}

struct auv_ep *th_call_reconnect(struct th *t, int peer)
{
	CHECK_EQ(th_call(t, peer, TH_CMD_RECONNECT, 0, 0, 0, 0), 0);
	return th_reconnect(t, peer);
}

void th_call_desc(struct th *t, int peer, uint32_t mr, struct auv_mr_desc *desc)
{
	struct th_cmd c = {.op = TH_CMD_DESC, .mr = mr};

	t->calls++;
	th_send(t, peer, &c, sizeof(c));
	th_recv(t, peer, desc, sizeof(*desc));
}

bool th_unavailable(int code)
{
	return code == -AUGUR_ENO_TRANSPORT || code == AUGUR_ENO_TRANSPORT ||
	       code == -EOPNOTSUPP;
}

/* --- Ranks ------------------------------------------------------------------
 */

/* Item @idx of a comma-separated list (copied into @buf), or NULL. */
static const char *list_item(const char *list, int idx, char *buf, size_t size)
{
	const char *p = list, *e;
	int i;

	if (!list || !*list)
		return NULL;
	for (i = 0; i < idx; i++) {
		p = strchr(p, ',');
		if (!p)
			return NULL;
		p++;
	}
	e = strchr(p, ',');
	if (!e)
		e = p + strlen(p);
	if (e == p || (size_t)(e - p) >= size)
		return NULL;
	memcpy(buf, p, (size_t)(e - p));
	buf[e - p] = '\0';
	return buf;
}

static const char *rank_item(const char *env, int rank, char *buf, size_t size)
{
	const char *list = getenv(env);
	const char *v = NULL;

	if (rank > 0)
		v = list_item(list, 1, buf, size);
	if (!v)
		v = list_item(list, 0, buf, size);
	return v;
}

/*
 * AUGUR_TEST_NETNS="<ns A>=<ip A>,<ns B>=<ip B>": rank 0 joins network
 * namespace A and listens on ip A, every other rank joins B (tests/tcp/
 * netns.sh makes them, joined by a veth pair).  The out-of-band channel is
 * socketpairs made before the fork, so it crosses namespaces.  Returns
 * whether a namespace was joined.
 */
static bool join_netns(struct th *t, char *addr, size_t size)
{
	const char *env = getenv("AUGUR_TEST_NETNS");
	char item[128], path[192];
	const char *v;
	char *eq;
	int fd;

	if (!env || !*env)
		return false;
	v = list_item(env, t->rank ? 1 : 0, item, sizeof(item));
	eq = v ? strchr(item, '=') : NULL;
	CHECKF(eq && eq > item && eq[1] && strlen(eq + 1) < size,
	       "malformed AUGUR_TEST_NETNS '%s' (want nsA=ipA,nsB=ipB)", env);
	*eq = '\0';
	snprintf(addr, size, "%s", eq + 1);
	snprintf(path, sizeof(path), "/var/run/netns/%s", item);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECKF(fd >= 0, "AUGUR_TEST_NETNS: cannot open %s", path);
	CHECKF(setns(fd, CLONE_NEWNET) == 0, "setns(%s) failed", path);
	close(fd);
	th_log("joined network namespace %s, address %s", item, addr);
	return true;
}

static int rank_main(struct th *t)
{
	static char dev[64], addr[64];
	const struct th_test *test = t->test;
	int rc, r;

	memset(&t->opts, 0, sizeof(t->opts));
	t->opts.provider = t->provider;
	if (t->ibv) {
		t->opts.device =
		    rank_item("AUGUR_TEST_DEVICES", t->rank, dev, sizeof(dev));
		t->opts.addr =
		    rank_item("AUGUR_TEST_ADDRS", t->rank, addr, sizeof(addr));
	}
	if (join_netns(t, addr, sizeof(addr))) {
		t->opts.addr = addr;
		t->netns = true;
	}
	if (test->tune)
		test->tune(t, &t->opts);
	if (!(test->flags & TH_NO_CTX)) {
		th_phase("opening the %s context", t->provider);
		rc = auv_ctx_open(&t->opts, &t->ctx);
		if (th_unavailable(rc))
			th_skip("provider %s unavailable: %s", t->provider,
				auv_last_error());
		CHECKF(rc == 0,
		       "auv_ctx_open(provider %s, device %s, addr "
		       "%s): %d (%s)",
		       t->provider, t->opts.device ? t->opts.device : "-",
		       t->opts.addr ? t->opts.addr : "-", rc,
		       augur_strerror(rc));
		CHECK(t->ctx != NULL);
		CHECK_OK(auv_ctx_caps(t->ctx, &t->caps));
		CHECK(strcmp(auv_ctx_provider(t->ctx), t->provider) == 0);
		snprintf(t->addr[t->rank], AUV_ADDR_MAX, "%s",
			 auv_ctx_addr(t->ctx));
		th_phase("exchanging addresses");
		for (r = 0; r < t->nprocs; r++)
			if (r != t->rank)
				th_send(t, r, t->addr[t->rank], AUV_ADDR_MAX);
		for (r = 0; r < t->nprocs; r++) {
			if (r == t->rank)
				continue;
			th_recv(t, r, t->addr[r], AUV_ADDR_MAX);
			t->addr[r][AUV_ADDR_MAX - 1] = '\0';
		}
		th_log("context %s (device %s)", t->addr[t->rank],
		       t->caps.device);
	}
	th_phase("running");
	rc = test->run(t);
	if (rc != TH_PASS)
		return rc;
	th_phase("closing");
	for (r = 0; r < t->nprocs; r++)
		auv_ep_close(t->ep[r]);
	auv_ctx_close(t->ctx);
	t->ctx = NULL;
	return TH_PASS;
}

/* --- The parent ----------------------------------------------------------- */

static volatile sig_atomic_t parent_timed_out;

static void parent_alarm(int sig)
{
	parent_timed_out = 1;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--provider shm|ibv] [--procs N] [--timeout S] "
		"[--verbose]\n"
		"env: AUGUR_TEST_SCALE (iteration factor), AUGUR_TEST_SEED, "
		"AUGUR_TEST_TIMEOUT (s),\n"
		"     AUGUR_TEST_DEVICES / AUGUR_TEST_ADDRS (ibv: "
		"rank 0 gets the first, others the second)\n",
		argv0);
}

int th_main(int argc, char **argv, const struct th_test *test)
{
	static const struct option longopts[] = {
	    {"provider", required_argument, NULL, 'p'},
	    {"procs", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int fds[TH_MAX_PROCS][TH_MAX_PROCS];
	pid_t pids[TH_MAX_PROCS];
	int status[TH_MAX_PROCS], done[TH_MAX_PROCS];
	const char *provider = "shm", *e;
	int procs = test->procs > 0 ? test->procs : 2;
	int min_procs = test->min_procs > 0 ? test->min_procs : procs;
	int timeout_s = 0, c, i, j, sv[2], left, failed = 0, skipped = 0;
	int collateral = 0, killed = 0;
	struct th_shared *sh;
	struct sigaction sa;
	pid_t parent = getpid(), w;
	uint64_t start = th_now_ns();
	int st;

	test_name = test->name;
	e = getenv("AUGUR_TEST_VERBOSE");
	verbose = e && *e && strcmp(e, "0");
	while ((c = getopt_long(argc, argv, "p:n:t:vh", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'p':
			provider = optarg;
			break;
		case 'n':
			procs = atoi(optarg);
			break;
		case 't':
			timeout_s = atoi(optarg);
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(argv[0]);
			return 0;
		default:
			usage(argv[0]);
			return TH_FAIL;
		}
	}
	if (optind != argc) {
		usage(argv[0]);
		return TH_FAIL;
	}
	if (procs < min_procs || procs > TH_MAX_PROCS) {
		fprintf(stderr, "[%s] --procs must be in %d..%d\n", test_name,
			min_procs, TH_MAX_PROCS);
		return TH_FAIL;
	}
	if (!timeout_s) {
		e = getenv("AUGUR_TEST_TIMEOUT");
		timeout_s = e && atoi(e) > 0 ? atoi(e) : 0;
	}
	if (!timeout_s) {
		timeout_s = test->timeout_s > 0 ? test->timeout_s : 45;
		if (!strcmp(provider, "ibv"))
			timeout_s *= 4;
	}
	if (timeout_s < 3)
		timeout_s = 3;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return TH_FAIL;
	}
	memset(sh, 0, sizeof(*sh));
	for (i = 0; i < procs; i++)
		for (j = 0; j < procs; j++)
			fds[i][j] = -1;
	for (i = 0; i < procs; i++) {
		for (j = i + 1; j < procs; j++) {
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				       sv)) {
				perror("socketpair");
				return TH_FAIL;
			}
			fds[i][j] = sv[0];
			fds[j][i] = sv[1];
		}
	}

	fflush(NULL);
	for (i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			for (j = 0; j < i; j++)
				kill(pids[j], SIGKILL);
			return TH_FAIL;
		}
		if (pids[i] == 0) {
			struct th t;
			const char *s;
			int a, b, rc;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(TH_FAIL);
			my_rank = i;
			atomic_store(&sh->pid[i], getpid());
			for (a = 0; a < procs; a++)
				for (b = 0; b < procs; b++)
					if (a != i && fds[a][b] >= 0)
						close(fds[a][b]);
			memset(&t, 0, sizeof(t));
			t.test = test;
			t.rank = i;
			t.nprocs = procs;
			t.provider = provider;
			t.ibv = !strcmp(provider, "ibv");
			t.sh = sh;
			t.timeout_s = timeout_s;
			for (b = 0; b < TH_MAX_PROCS; b++)
				t.oob[b] = b < procs ? fds[i][b] : -1;
			s = getenv("AUGUR_TEST_SCALE");
			t.scale = s && atof(s) > 0 ? atof(s) : 1.0;
			s = getenv("AUGUR_TEST_SEED");
			t.seed = s && *s ? strtoull(s, NULL, 0) : 0x5eed;
			t.rng = t.seed * 7919 + (uint64_t)i * 104729 + 1;
			t.poll_timeout_ms = t.ibv ? 30000 : 10000;
			snprintf(alarm_msg, sizeof(alarm_msg),
				 "[%s r%d] FAIL: timed out after %d s; phase: ",
				 test_name, i, timeout_s - 1);
			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = rank_alarm;
			sigaction(SIGALRM, &sa, NULL);
			alarm((unsigned int)(timeout_s - 1));
			rc = rank_main(&t);
			fflush(NULL);
			exit(rc);
		}
	}
	for (i = 0; i < procs; i++)
		for (j = 0; j < procs; j++)
			if (fds[i][j] >= 0)
				close(fds[i][j]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = parent_alarm; /* no SA_RESTART: waitpid sees EINTR */
	sigaction(SIGALRM, &sa, NULL);
	alarm((unsigned int)timeout_s);

	memset(done, 0, sizeof(done));
	left = procs;
	while (left) {
		w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR && parent_timed_out) {
			fprintf(stderr,
				"[%s] FAIL: timed out after %d s; killing "
				"ranks still running:",
				test_name, timeout_s);
			for (i = 0; i < procs; i++)
				if (!done[i]) {
					fprintf(stderr, " %d", i);
					kill(pids[i], SIGKILL);
				}
			fputc('\n', stderr);
			failed++;
			killed = 1;
			parent_timed_out = 0;
			alarm(10);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			perror("waitpid");
			return TH_FAIL;
		}
		for (i = 0; i < procs && pids[i] != w; i++)
			;
		if (i == procs)
			continue;
		done[i] = 1;
		status[i] = st;
		left--;
		if (killed)
			continue; /* we killed it: its status says nothing */
		if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL &&
		    atomic_load(&sh->expect_death[i]))
			continue;
		if (WIFEXITED(st) && WEXITSTATUS(st) == TH_PASS)
			continue;
		if (WIFEXITED(st) && WEXITSTATUS(st) == TH_SKIP)
			skipped++;
		else if (WIFEXITED(st) && WEXITSTATUS(st) == TH_COLLATERAL)
			collateral++;
		else {
			failed++;
			if (WIFSIGNALED(st))
				fprintf(stderr,
					"[%s] FAIL: rank %d killed by signal "
					"%d (%s)\n",
					test_name, i, WTERMSIG(st),
					strsignal(WTERMSIG(st)));
			else
				fprintf(stderr,
					"[%s] FAIL: rank %d exited with %d\n",
					test_name, i, WEXITSTATUS(st));
		}
		/* One rank gave up: the others cannot finish the test. */
		if (!killed && (failed || skipped)) {
			for (j = 0; j < procs; j++)
				if (!done[j])
					kill(pids[j], SIGKILL);
			killed = 1;
		}
	}
	alarm(0);
	(void)status;
	if (failed) {
		printf("FAIL: %s over %s (%d procs, %.2f s)\n", test_name,
		       provider, procs, th_elapsed_s(start));
		return TH_FAIL;
	}
	if (skipped)
		return TH_SKIP; /* the rank printed "SKIP: why" */
	if (collateral) {
		printf("FAIL: %s over %s: ranks lost their peers but none "
		       "reported a failure\n",
		       test_name, provider);
		return TH_FAIL;
	}
	printf("PASS: %s over %s (%d procs, %.2f s)\n", test_name, provider,
	       procs, th_elapsed_s(start));
	return TH_PASS;
}
