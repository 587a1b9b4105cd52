// SPDX-License-Identifier: MIT
/*
 * lib/bootstrap.c - how the processes of one job find each other: rank and
 * size from the environment, a star of sockets around rank 0, an allgather,
 * a barrier, and a liveness watch.  No transport is involved; the store uses
 * this to swap transport addresses before any RDMA connection exists.
 *
 * Topology.  Rank 0 is the hub: it listens at AUGUR_RENDEZVOUS ("host:port"
 * for TCP, "unix:/path" for a unix socket) and every other rank (a spoke)
 * holds one stream connection to it for the whole job.  Collectives are
 * relayed through the hub: O(size) messages, fine for set-up and shutdown,
 * never used on the data path.  Rank 0 stops listening once everyone is in.
 *
 * Wire format.  A spoke opens with a raw hello (all fields big-endian):
 *
 *	u32 magic "AUGB", u32 version, u32 rank, u32 size, u32 pid, u32 0,
 *	char host[64]
 *
 * After that, both directions carry frames: a 16-byte header {u32 type,
 * u32 arg, u64 len} followed by len payload bytes.
 *
 *	type    direction   arg            payload
 *	READY   hub->spoke  size           none: everyone is connected
 *	COLL    spoke->hub  collective #   the rank's len bytes
 *	RESULT  hub->spoke  collective #   size*len bytes, rank order
 *	ABORT   hub->spoke  dead rank/~0   i32 code, text: the job is broken
 *	BYE     both        sender's rank  none: clean aug_boot_close()
 *
 * Set-up.  The hub accepts until size-1 spokes have said hello (within
 * AUGUR_BOOT_TIMEOUT), checks each (magic, version, size agrees, rank in
 * range and not taken; a connection that closes before saying anything is
 * ignored as a probe), then sends READY to all.  A spoke retries its connect
 * (with back-off) until the hub is up or the same timeout passes, and
 * returns from aug_boot_open() only on READY, so set-up succeeds everywhere
 * or nowhere: on any failure the hub sends ABORT with the reason to everyone
 * it has accepted.
 *
 * Collectives.  Collective number n: every spoke sends COLL(n, len) and its
 * bytes, then reads one frame; the hub copies its own bytes, reads one COLL
 * from each spoke (polling all of them at once, so it hears of a death at
 * any time), checks n and len, and sends RESULT(n) to each.  A barrier is an
 * allgather of zero bytes.  Waiting for a rank to *arrive* is unbounded
 * while everyone is alive (aug_boot_set_wait_timeout() bounds it); a frame,
 * once started, must complete within AUGUR_BOOT_TIMEOUT.
 *
 * Invariant: each stream is always at a frame boundary outside a
 * collective.  The hub sends a spoke only READY (during set-up), RESULT (in
 * answer to that spoke's COLL, which the spoke waits for), ABORT and BYE;
 * a spoke sends COLL only inside a collective and BYE when closing.  So
 * between collectives the only bytes a spoke can find waiting are ABORT or
 * BYE, and the only bytes the hub can find are a spoke's next COLL (it
 * entered the next collective first) or BYE.  That is what makes a liveness
 * check by peeking safe: it reads a frame header only when that header is a
 * notice, and leaves COLL bytes alone.
 *
 * Failure.  The connections double as liveness: a process that dies has its
 * sockets closed by the kernel, which the peer sees as EOF or a reset
 * (POLLRDHUP/POLLHUP/POLLERR); TCP keepalive covers a host that vanishes.
 * A rank that leaves cleanly sends BYE first, so "closed" and "died" differ.
 *   - The hub sees a spoke die (in aug_boot_check() or inside a
 *     collective): it breaks and sends ABORT(code AUGUR_EPEER_GONE, dead
 *     rank, text) to every live spoke.
 *   - A spoke sees the hub die (EOF), or reads an ABORT: it breaks.
 * Breaking is sticky: the first failure's code, dead rank and text are kept,
 * and every later collective or check returns them.  A broken job is never
 * repaired, so an ABORT can never be mistaken for a collective's data: it is
 * the last frame that matters on that stream.  Every failure the hub sees
 * (death, length mismatch, a timeout) goes out as ABORT, so no spoke waits
 * on a collective that can no longer finish.
 *
 * Threads.  A mutex covers the streams: a collective holds it throughout,
 * aug_boot_check() only try-locks it and, when a collective is running,
 * reports the sticky status (the collective itself watches for deaths).
 * The status is atomic; the text and dead rank are written once, before the
 * status is published with release order.
 *
 * Errors: functions return 0 or an error code, -errno or one of augur's
 * own negated (-AUGUR_EPEER_GONE, -AUGUR_EPROTO: augur/error.h, as every
 * layer returns them); the detail goes to a thread-local buffer (aug_boot_error()).
 * Nothing reports through errno.  Codes travel in ABORT as they are.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"

#define BOOT_MAGIC 0x41554742u /* "AUGB" */
#define BOOT_VERSION 1u
#define ERR_LEN 512
#define NO_RANK 0xffffffffu
/* Bound on sending a notice (ABORT, BYE): best effort, never a hang. */
#define NOTICE_MS 1000
/* Bound on one TCP connect attempt, within the overall timeout. */
#define CONNECT_TRY_MS 3000
/* Connect retry back-off, milliseconds. */
#define BACKOFF_MIN_MS 5
#define BACKOFF_MAX_MS 250
/* Keepalive for TCP: a silent host is declared dead after ~25 s. */
#define KEEPIDLE_S 10
#define KEEPINTVL_S 5
#define KEEPCNT 3

enum frame_type {
	F_READY = 1,
	F_COLL = 2,
	F_RESULT = 3,
	F_ABORT = 4,
	F_BYE = 5,
};

enum peer_state {
	P_NONE = 0, /* not connected (spokes: every rank but 0) */
	P_LIVE,
	P_LEFT, /* said BYE */
	P_DEAD,
};

/* Frame header; big-endian on the wire. */
struct hdr {
	uint32_t type;
	uint32_t arg;
	uint64_t len;
};

/* Spoke's hello; big-endian on the wire. */
struct hello {
	uint32_t magic;
	uint32_t version;
	uint32_t rank;
	uint32_t size;
	uint32_t pid;
	uint32_t reserved;
	char host[64];
};

struct peer {
	int fd;
	int state;
	uint32_t pid;
	char host[64];
};

/* AUGUR_RENDEZVOUS, parsed. */
struct rv {
	int is_unix;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char host[256];
	char port[8];
};

struct aug_boot {
	int rank;
	int size;
	int io_ms;    /* AUGUR_BOOT_TIMEOUT */
	int wait_ms;  /* collectives: wait for arrivals; 0 = while alive */
	uint32_t seq; /* collectives started */
	int epfd;
	int lfd; /* hub, during set-up */
	char unlink_path[sizeof(((struct rv *)0)->path)];
	struct peer *peer;  /* [size] */
	struct pollfd *pfd; /* [size] scratch */
	int *pidx;	    /* [size] scratch: pfd index -> rank */
	const char *source;
	char where[320]; /* AUGUR_RENDEZVOUS as given, for messages */
	pthread_mutex_t lock;
	_Atomic int status;
	int dead_rank;
	int text_off; /* errmsg + text_off: the text without the prefix */
	char errmsg[ERR_LEN];
};

static _Thread_local char tls_err[ERR_LEN];

const char *aug_boot_error(void)
{
	return tls_err[0] ? tls_err : "no error detail";
}

static int vfail(int code, const char *fmt, va_list ap)
{
	vsnprintf(tls_err, sizeof(tls_err), fmt, ap);
	return code;
}

static int fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(code, fmt, ap);
	va_end(ap);
	return code;
}

/* --- time and socket I/O ---------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline @ms from now; @ms <= 0 means none (-1). */
static int64_t deadline_in(int ms)
{
	return ms > 0 ? now_ms() + ms : -1;
}

/* Milliseconds left until @deadline, as poll() wants them. */
static int left_ms(int64_t deadline)
{
	int64_t d;

	if (deadline < 0)
		return -1;
	d = deadline - now_ms();
	if (d <= 0)
		return 0;
	return d > INT_MAX ? INT_MAX : (int)d;
}

/* poll() until @deadline, restarting after signals.  Return: the number of
 * ready descriptors, 0 on timeout, or -errno. */
static int poll_until(struct pollfd *p, nfds_t n, int64_t deadline)
{
	int r;

	for (;;) {
		r = poll(p, n, left_ms(deadline));
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * Send all of @iov by @deadline.  With @watch_in, data arriving while the
 * send is blocked interrupts it (returns 1): the caller then reads the
 * notice that must be waiting.  Return: 0; 1; -ETIMEDOUT; -errno of the
 * connection (-EPIPE, -ECONNRESET: the peer is gone).  Modifies @iov.
 */
static int send_all(int fd, struct iovec *iov, int n, int64_t deadline,
		    int watch_in)
{
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
	struct pollfd p;
	ssize_t k;
	int r;

	for (;;) {
		while (mh.msg_iovlen && !mh.msg_iov->iov_len) {
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (!mh.msg_iovlen)
			return 0;
		k = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k >= 0) {
			while (k > 0) {
				size_t step = (size_t)k < mh.msg_iov->iov_len
						  ? (size_t)k
						  : mh.msg_iov->iov_len;

				mh.msg_iov->iov_base =
				    (char *)mh.msg_iov->iov_base + step;
				mh.msg_iov->iov_len -= step;
				k -= (ssize_t)step;
				if (!mh.msg_iov->iov_len) {
					mh.msg_iov++;
					mh.msg_iovlen--;
				}
			}
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		p.fd = fd;
		p.events = POLLOUT | (watch_in ? POLLIN : 0);
		p.revents = 0;
		r = poll_until(&p, 1, deadline);
		if (r < 0)
			return r;
		if (!r)
			return -ETIMEDOUT;
		if (watch_in && (p.revents & POLLIN))
			return 1;
	}
}

/* Receive exactly @len bytes by @deadline.  Return: 0; -ECONNRESET when
 * the peer closed the stream; -ETIMEDOUT; -errno. */
static int recv_all(int fd, void *buf, size_t len, int64_t deadline)
{
	char *p = buf;
	struct pollfd q;
	ssize_t k;
	int r;

	while (len) {
		k = recv(fd, p, len, MSG_DONTWAIT);
		if (k > 0) {
			p += k;
			len -= (size_t)k;
			continue;
		}
		if (!k)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		q.fd = fd;
		q.events = POLLIN;
		q.revents = 0;
		r = poll_until(&q, 1, deadline);
		if (r < 0)
			return r;
		if (!r)
			return -ETIMEDOUT;
	}
	return 0;
}

static void hdr_pack(struct hdr *h, uint32_t type, uint32_t arg, uint64_t len)
{
	h->type = htonl(type);
	h->arg = htonl(arg);
	h->len = htobe64(len);
}

static void hdr_unpack(struct hdr *h)
{
	h->type = ntohl(h->type);
	h->arg = ntohl(h->arg);
	h->len = be64toh(h->len);
}

static int send_frame(int fd, uint32_t type, uint32_t arg, const void *a,
		      size_t alen, const void *b, size_t blen, int64_t deadline,
		      int watch_in)
{
	struct hdr h;
	struct iovec iov[3];

	hdr_pack(&h, type, arg, (uint64_t)alen + blen);
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)a;
	iov[1].iov_len = alen;
	iov[2].iov_base = (void *)b;
	iov[2].iov_len = blen;
	return send_all(fd, iov, 3, deadline, watch_in);
}

/* ABORT or BYE, best effort within NOTICE_MS. */
static void send_notice(int fd, uint32_t type, uint32_t arg, int code,
			const char *text)
{
	uint32_t c = htonl((uint32_t)code);

	if (type == F_ABORT)
		send_frame(fd, type, arg, &c, sizeof(c), text, strlen(text),
			   deadline_in(NOTICE_MS), 0);
	else
		send_frame(fd, type, arg, NULL, 0, NULL, 0,
			   deadline_in(NOTICE_MS), 0);
}

/* Peek at a whole frame header without consuming it.  Return: 1 (got it),
 * 0 (not all there yet), -ECONNRESET (EOF first), -errno. */
static int peek_hdr(int fd, struct hdr *h)
{
	ssize_t k;

	do
		k = recv(fd, h, sizeof(*h), MSG_PEEK | MSG_DONTWAIT);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
	if (!k)
		return -ECONNRESET;
	if ((size_t)k < sizeof(*h))
		return 0;
	hdr_unpack(h);
	return 1;
}

static void set_sockopts(int fd, int family)
{
	int one = 1, v;

	if (family != AF_INET && family != AF_INET6)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	v = KEEPIDLE_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
	v = KEEPINTVL_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
	v = KEEPCNT;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
}

/* --- the handle: sticky failure, peers -------------------------------- */

static void set_tls(const struct aug_boot *b)
{
	snprintf(tls_err, sizeof(tls_err), "%s", b->errmsg);
}

/* Return the sticky status (0 if none), with its text for this thread. */
static int sticky(const struct aug_boot *b)
{
	int st = atomic_load_explicit(&b->status, memory_order_acquire);

	if (st)
		set_tls(b);
	return st;
}

static void unwatch(struct aug_boot *b, int r)
{
	if (b->epfd >= 0 && b->peer[r].fd >= 0)
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->peer[r].fd, NULL);
}

/* Mark peer @r as gone.  A peer that left cleanly stops being watched; a
 * dead one stays in the epoll set, so that a thread sleeping on
 * aug_boot_fd() still wakes for it even when another thread saw the death
 * first. */
static void mark_gone(struct aug_boot *b, int r, int state)
{
	if (b->peer[r].state == P_LIVE && state == P_LEFT)
		unwatch(b, r);
	b->peer[r].state = state;
}

/*
 * Break the bootstrap: record @code, @dead and the text (first failure
 * wins), on the hub tell every live spoke with ABORT, publish the status.
 * Caller holds the lock (or is in open/close).  Return: the sticky code.
 */
static int boot_break(struct aug_boot *b, int code, int dead, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static int boot_break(struct aug_boot *b, int code, int dead, const char *fmt,
		      ...)
{
	char text[ERR_LEN - 64]; /* room for the prefix */
	va_list ap;
	int r;

	if (atomic_load_explicit(&b->status, memory_order_acquire))
		return sticky(b);
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	b->text_off =
	    snprintf(b->errmsg, sizeof(b->errmsg),
		     "augur bootstrap, rank %d/%d: ", b->rank, b->size);
	snprintf(b->errmsg + b->text_off, sizeof(b->errmsg) - b->text_off, "%s",
		 text);
	b->dead_rank = dead;
	if (dead >= 0 && dead < b->size && dead != b->rank)
		mark_gone(b, dead, P_DEAD);
	if (b->rank == 0)
		for (r = 1; r < b->size; r++)
			if (b->peer[r].state == P_LIVE)
				send_notice(b->peer[r].fd, F_ABORT,
					    dead < 0 ? NO_RANK : (uint32_t)dead,
					    code, text);
	atomic_store_explicit(&b->status, code, memory_order_release);
	set_tls(b);
	return code;
}

static double secs(int ms)
{
	return ms / 1000.0;
}

/* "2, 5, 7" (the first few ranks whose state is not P_LIVE, or that are
 * listed in @want when it is not NULL), for messages. */
static void rank_list(const struct aug_boot *b, const int *want, int nwant,
		      char *buf, size_t len)
{
	size_t used = 0;
	int shown = 0, i, r;

	buf[0] = '\0';
	for (i = 0; i < (want ? nwant : b->size); i++) {
		r = want ? want[i] : i;
		if (!want && (r == 0 || b->peer[r].state == P_LIVE))
			continue;
		if (shown == 8) {
			snprintf(buf + used, len - used, ", ...");
			return;
		}
		snprintf(buf + used, len - used, "%s%d", shown ? ", " : "", r);
		used = strlen(buf);
		shown++;
	}
}

/* --- environment -------------------------------------------------------- */

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static int parse_long(const char *name, const char *s, long min, long max,
		      long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		/* Return the constant, not fail()'s result: callers read
		 * *@out exactly when this returns 0, and the compiler must
		 * see that every failure is nonzero. */
		fail(-EINVAL,
		     "augur bootstrap: %s='%s' is not an integer in "
		     "[%ld, %ld]",
		     name, s, min, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int aug_boot_identity(int *rank, int *size, const char **source)
{
	static const struct {
		const char *rank, *size, *source;
	} launchers[] = {
	    {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
	     "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE (Open MPI)"},
	    {"PMI_RANK", "PMI_SIZE", "PMI_RANK/PMI_SIZE (MPICH, Intel MPI)"},
	};
	const char *rn = NULL, *sn = NULL, *src = NULL;
	long r, s;
	size_t i;
	int ret;

	if (!rank || !size)
		return fail(-EINVAL, "aug_boot_identity: NULL argument");
	if (env("AUGUR_RANK") || env("AUGUR_SIZE")) {
		if (!env("AUGUR_RANK") || !env("AUGUR_SIZE"))
			return fail(
			    -EINVAL,
			    "augur bootstrap: AUGUR_RANK and "
			    "AUGUR_SIZE go together: %s is set but %s "
			    "is not",
			    env("AUGUR_RANK") ? "AUGUR_RANK" : "AUGUR_SIZE",
			    env("AUGUR_RANK") ? "AUGUR_SIZE" : "AUGUR_RANK");
		rn = "AUGUR_RANK";
		sn = "AUGUR_SIZE";
		src = "AUGUR_RANK/AUGUR_SIZE";
	}
	for (i = 0; !src && i < sizeof(launchers) / sizeof(launchers[0]); i++)
		if (env(launchers[i].rank) && env(launchers[i].size)) {
			rn = launchers[i].rank;
			sn = launchers[i].size;
			src = launchers[i].source;
		}
	/* Slurm: only inside an srun step.  A batch script's own shell also
	 * has SLURM_PROCID=0 and SLURM_NTASKS=N but is not one of N tasks. */
	if (!src && env("SLURM_PROCID") &&
	    (env("SLURM_STEP_ID") || env("SLURM_STEPID"))) {
		rn = "SLURM_PROCID";
		if (env("SLURM_STEP_NUM_TASKS")) {
			sn = "SLURM_STEP_NUM_TASKS";
			src = "SLURM_PROCID/SLURM_STEP_NUM_TASKS (srun)";
		} else if (env("SLURM_NTASKS")) {
			sn = "SLURM_NTASKS";
			src = "SLURM_PROCID/SLURM_NTASKS (srun)";
		}
	}
	if (!src) {
		*rank = 0;
		*size = 1;
		if (source)
			*source = "none (running alone)";
		return 0;
	}
	ret = parse_long(sn, env(sn), 1, AUG_BOOT_MAX_SIZE, &s);
	if (ret)
		return ret;
	ret = parse_long(rn, env(rn), 0, LONG_MAX, &r);
	if (ret)
		return ret;
	if (r >= s)
		return fail(-EINVAL,
			    "augur bootstrap: %s=%ld is out of range for "
			    "%s=%ld (ranks are 0..%ld)",
			    rn, r, sn, s, s - 1);
	*rank = (int)r;
	*size = (int)s;
	if (source)
		*source = src;
	return 0;
}

static int parse_timeout(int *ms)
{
	const char *v = env("AUGUR_BOOT_TIMEOUT");
	char *end;
	double s;

	*ms = AUG_BOOT_DEFAULT_TIMEOUT_S * 1000;
	if (!v)
		return 0;
	errno = 0;
	s = strtod(v, &end);
	if (errno || end == v || *end || !(s >= 0.001 && s <= 2000000.0))
		return fail(-EINVAL,
			    "augur bootstrap: AUGUR_BOOT_TIMEOUT='%s' is not "
			    "a number of seconds in [0.001, 2000000]",
			    v);
	*ms = (int)(s * 1000.0 + 0.5);
	return 0;
}

static int parse_rv(const char *s, struct rv *rv)
{
	const char *colon, *host, *port;
	size_t hlen;
	long p;

	memset(rv, 0, sizeof(*rv));
	if (!strncmp(s, "unix:", 5)) {
		rv->is_unix = 1;
		if (!s[5])
			return fail(-EINVAL,
				    "augur bootstrap: "
				    "AUGUR_RENDEZVOUS='%s' names no "
				    "socket path after 'unix:'",
				    s);
		if (strlen(s + 5) >= sizeof(rv->path))
			return fail(-ENAMETOOLONG,
				    "augur bootstrap: AUGUR_RENDEZVOUS='%s': "
				    "a unix socket path has at most %zu "
				    "bytes",
				    s, sizeof(rv->path) - 1);
		strcpy(rv->path, s + 5);
		return 0;
	}
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			goto bad;
		host = s + 1;
		hlen = (size_t)(close - host);
		port = close + 2;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			goto bad;
		host = s;
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (!hlen || hlen >= sizeof(rv->host))
		goto bad;
	if (parse_long("the port of AUGUR_RENDEZVOUS", port, 1, 65535, &p))
		goto bad;
	memcpy(rv->host, host, hlen);
	rv->host[hlen] = '\0';
	snprintf(rv->port, sizeof(rv->port), "%ld", p);
	return 0;
bad:
	return fail(-EINVAL,
		    "augur bootstrap: AUGUR_RENDEZVOUS='%s' is not "
		    "'host:port' (port 1..65535; IPv6 as [addr]:port) or "
		    "'unix:/path'",
		    s);
}

/* --- set-up: the hub ------------------------------------------------- */

static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)
				  ->sin_addr.s_addr) >>
			24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
		    &((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

/* Is @path a unix socket nobody listens on (a leftover)? */
static int unix_stale(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, r, e;

	if (lstat(path, &st) || !S_ISSOCK(st.st_mode))
		return 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return 0;
	strcpy(sa.sun_path, path);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	e = errno;
	close(fd);
	return r < 0 && e == ECONNREFUSED;
}

static int hub_listen(struct aug_boot *b, const struct rv *rv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	int fd, one = 1, zero = 0, r, family;

	memset(&ss, 0, sizeof(ss));
	if (rv->is_unix) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;

		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, rv->path);
		sl = sizeof(*su);
		family = AF_UNIX;
	} else {
		r = getaddrinfo(rv->host, rv->port, &hints, &res);
		if (r)
			return boot_break(b, -EINVAL, -1,
					  "cannot resolve '%s' of "
					  "AUGUR_RENDEZVOUS=%s: %s",
					  rv->host, b->where, gai_strerror(r));
		family = res->ai_family;
		if (is_loopback(res->ai_addr)) {
			/* A loopback job: stay off the network. */
			memcpy(&ss, res->ai_addr, res->ai_addrlen);
			sl = res->ai_addrlen;
		} else if (family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			s6->sin6_family = AF_INET6;
			s6->sin6_addr = in6addr_any;
			s6->sin6_port =
			    ((struct sockaddr_in6 *)res->ai_addr)->sin6_port;
			sl = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			s4->sin_family = AF_INET;
			s4->sin_addr.s_addr = htonl(INADDR_ANY);
			s4->sin_port =
			    ((struct sockaddr_in *)res->ai_addr)->sin_port;
			sl = sizeof(*s4);
		}
		freeaddrinfo(res);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return boot_break(b, -errno, -1, "socket(): %s",
				  strerror(errno));
	if (family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	r = bind(fd, (struct sockaddr *)&ss, sl);
	if (r && errno == EADDRINUSE && rv->is_unix && unix_stale(rv->path)) {
		unlink(rv->path);
		r = bind(fd, (struct sockaddr *)&ss, sl);
	}
	if (r) {
		r = -errno;
		close(fd);
		if (r == -EADDRINUSE)
			return boot_break(
			    b, r, -1,
			    "cannot listen at AUGUR_RENDEZVOUS=%s: "
			    "%s is in use (another job, or a "
			    "previous run?): choose another %s",
			    b->where,
			    rv->is_unix ? "the socket path" : "the port",
			    rv->is_unix ? "path" : "port");
		return boot_break(b, r, -1,
				  "cannot listen at AUGUR_RENDEZVOUS=%s: %s",
				  b->where, strerror(-r));
	}
	if (rv->is_unix)
		strcpy(b->unlink_path, rv->path);
	if (listen(fd, b->size < 4096 ? b->size : 4096)) {
		r = -errno;
		close(fd);
		return boot_break(b, r, -1, "listen(): %s", strerror(-r));
	}
	b->lfd = fd;
	return 0;
}

static void peer_name(const struct sockaddr_storage *ss, socklen_t sl,
		      char *buf, size_t len)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (ss->ss_family == AF_UNIX ||
	    getnameinfo((const struct sockaddr *)ss, sl, host, sizeof(host),
			serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(buf, len, "a local process");
	else
		snprintf(buf, len, "%s port %s", host, serv);
}

/*
 * Read and check the hello on a fresh connection.  Return: 0 with *rank
 * set (peer[] filled) or 0 (a connection that closed without a word: a
 * probe, to be ignored); or the sticky code after breaking.
 */
static int hub_hello(struct aug_boot *b, int fd, const char *from,
		     int64_t deadline, int *rank)
{
	struct hello h;
	uint32_t r, n;
	int ret;

	*rank = 0;
	ret = recv_all(fd, &h, 8, deadline);
	if (ret == -ECONNRESET)
		return 0;
	if (ret == -ETIMEDOUT)
		return boot_break(b, ret, -1,
				  "a connection from %s sent no hello within "
				  "%g s",
				  from, secs(b->io_ms));
	if (ret)
		return boot_break(b, ret, -1, "reading a hello from %s: %s",
				  from, strerror(-ret));
	if (ntohl(h.magic) != BOOT_MAGIC)
		return boot_break(b, -AUGUR_EPROTO, -1,
				  "a connection from %s is not an augur "
				  "bootstrap peer (it sent 0x%08x, not "
				  "0x%08x): is AUGUR_RENDEZVOUS=%s used by "
				  "something else?",
				  from, ntohl(h.magic), BOOT_MAGIC, b->where);
	if (ntohl(h.version) != BOOT_VERSION) {
		ret = boot_break(b, -AUGUR_EPROTO, -1,
				 "a process at %s speaks bootstrap protocol "
				 "version %u, rank 0 speaks %u: one job mixes "
				 "augur versions",
				 from, ntohl(h.version), BOOT_VERSION);
		goto out_refuse;
	}
	ret = recv_all(fd, (char *)&h + 8, sizeof(h) - 8, deadline);
	if (ret)
		return boot_break(b, ret == -ECONNRESET ? -AUGUR_EPROTO : ret,
				  -1, "a truncated hello from %s: %s", from,
				  strerror(-ret));
	r = ntohl(h.rank);
	n = ntohl(h.size);
	h.host[sizeof(h.host) - 1] = '\0';
	if (n != (uint32_t)b->size) {
		ret = boot_break(b, -EINVAL, -1,
				 "rank %u (pid %u on %s) says the job has %u "
				 "ranks, rank 0 (pid %d) says %d: every "
				 "process must see the same size",
				 r, ntohl(h.pid), h.host, n, (int)getpid(),
				 b->size);
		goto out_refuse;
	}
	if (r == 0 || r >= n) {
		ret = boot_break(b, -EINVAL, -1,
				 "pid %u on %s claims rank %u, but %s: two "
				 "processes were given rank 0?",
				 ntohl(h.pid), h.host, r,
				 r == 0 ? "this process (rank 0) listens at "
					  "the rendezvous"
					: "that is out of range");
		goto out_refuse;
	}
	if (b->peer[r].state != P_NONE) {
		ret = boot_break(b, -EINVAL, -1,
				 "two processes claim rank %u: pid %u on %s "
				 "and pid %u on %s (is the rank variable the "
				 "same for both?)",
				 r, b->peer[r].pid, b->peer[r].host,
				 ntohl(h.pid), h.host);
		goto out_refuse;
	}
	b->peer[r].fd = fd;
	b->peer[r].state = P_LIVE;
	b->peer[r].pid = ntohl(h.pid);
	memcpy(b->peer[r].host, h.host, sizeof(h.host));
	*rank = (int)r;
	return 0;

out_refuse:
	send_notice(fd, F_ABORT, NO_RANK, ret, b->errmsg + b->text_off);
	return ret;
}

/* Has any live spoke hung up?  Returns its rank or -1.  Does not read. */
static int hub_find_hangup(struct aug_boot *b, int *left)
{
	struct hdr h;
	int n = 0, i, r;

	*left = 0;
	for (r = 1; r < b->size; r++) {
		if (b->peer[r].state != P_LIVE)
			continue;
		b->pfd[n].fd = b->peer[r].fd;
		b->pfd[n].events = POLLRDHUP;
		b->pfd[n].revents = 0;
		b->pidx[n++] = r;
	}
	if (!n || poll_until(b->pfd, (nfds_t)n, 0) <= 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (!(b->pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			continue;
		r = b->pidx[i];
		/* A BYE at the head of the stream: it left cleanly. */
		if (peek_hdr(b->peer[r].fd, &h) == 1 && h.type == F_BYE) {
			recv_all(b->peer[r].fd, &h, sizeof(h), 0);
			mark_gone(b, r, P_LEFT);
			(*left)++;
			continue;
		}
		return r;
	}
	return -1;
}

static int hub_open(struct aug_boot *b, const struct rv *rv)
{
	int64_t deadline = now_ms() + b->io_ms;
	struct sockaddr_storage ss;
	struct pollfd p;
	char from[NI_MAXHOST + NI_MAXSERV + 8], list[96];
	socklen_t sl;
	int joined = 1, fd, r, left, rank;

	r = hub_listen(b, rv);
	if (r)
		return r;
	while (joined < b->size) {
		p.fd = b->lfd;
		p.events = POLLIN;
		p.revents = 0;
		r = poll_until(&p, 1, deadline);
		if (r < 0)
			return boot_break(b, r, -1, "poll(): %s", strerror(-r));
		if (!r) {
			rank_list(b, NULL, 0, list, sizeof(list));
			return boot_break(b, -ETIMEDOUT, -1,
					  "only %d of %d ranks joined at "
					  "AUGUR_RENDEZVOUS=%s within %g s "
					  "(AUGUR_BOOT_TIMEOUT); missing "
					  "rank(s): %s",
					  joined, b->size, b->where,
					  secs(b->io_ms), list);
		}
		sl = sizeof(ss);
		fd = accept4(b->lfd, (struct sockaddr *)&ss, &sl,
			     SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			r = -errno;
			if (r == -EAGAIN || r == -EWOULDBLOCK || r == -EINTR ||
			    r == -ECONNABORTED || r == -EPROTO)
				continue;
			return boot_break(
			    b, r, -1, "accept(): %s%s", strerror(-r),
			    r == -EMFILE || r == -ENFILE ? " (raise ulimit -n)"
							 : "");
		}
		set_sockopts(fd, ss.ss_family);
		peer_name(&ss, sl, from, sizeof(from));
		r = hub_hello(b, fd, from, deadline, &rank);
		if (r || !rank) {
			close(fd);
			if (r)
				return r;
			continue;
		}
		joined++;
	}
	/* Nobody should have gone yet; a spoke that has is reported now
	 * rather than at the first collective. */
	r = hub_find_hangup(b, &left);
	if (r > 0)
		return boot_break(b, -AUGUR_EPEER_GONE, r,
				  "rank %d (pid %u on %s) disconnected "
				  "while the job assembled",
				  r, b->peer[r].pid, b->peer[r].host);
	for (r = 1; r < b->size; r++) {
		if (b->peer[r].state != P_LIVE)
			continue;
		if (send_frame(b->peer[r].fd, F_READY, (uint32_t)b->size, NULL,
			       0, NULL, 0, deadline_in(b->io_ms), 0))
			return boot_break(b, -AUGUR_EPEER_GONE, r,
					  "rank %d (pid %u on %s) disconnected "
					  "while the job assembled",
					  r, b->peer[r].pid, b->peer[r].host);
	}
	close(b->lfd);
	b->lfd = -1;
	if (b->unlink_path[0]) {
		unlink(b->unlink_path);
		b->unlink_path[0] = '\0';
	}
	for (r = 1; r < b->size; r++) {
		struct epoll_event ev = {.events = EPOLLRDHUP,
					 .data.u32 = (uint32_t)r};

		if (b->peer[r].state != P_LIVE)
			continue;
		if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->peer[r].fd, &ev))
			return boot_break(b, -errno, -1, "epoll_ctl(): %s",
					  strerror(errno));
	}
	return 0;
}

/* --- set-up: a spoke ------------------------------------------------- */

/*
 * One attempt to reach the hub.  Return: 0 with *fdp connected; -EAGAIN
 * (not there yet: retry, *last says why); or a fatal code (after breaking).
 */
static int spoke_try(struct aug_boot *b, const struct rv *rv, int64_t deadline,
		     int *last, int *fdp)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res, *ai;
	struct pollfd p;
	socklen_t el;
	int fd, r, e;

	if (rv->is_unix) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};

		strcpy(sa.sun_path, rv->path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    0);
		if (fd < 0)
			return boot_break(b, -errno, -1, "socket(): %s",
					  strerror(errno));
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			*fdp = fd;
			return 0;
		}
		e = errno;
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED || e == EAGAIN ||
		    e == EINTR) {
			*last = e;
			return -EAGAIN;
		}
		return boot_break(b, -e, -1,
				  "cannot connect to AUGUR_RENDEZVOUS=%s: %s",
				  b->where, strerror(e));
	}
	r = getaddrinfo(rv->host, rv->port, &hints, &res);
	if (r == EAI_AGAIN) {
		*last = EAGAIN;
		return -EAGAIN;
	}
	if (r)
		return boot_break(b, -EINVAL, -1,
				  "cannot resolve '%s' of AUGUR_RENDEZVOUS=%s: "
				  "%s",
				  rv->host, b->where, gai_strerror(r));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			*last = errno;
			continue;
		}
		e = 0;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen)) {
			e = errno;
			if (e == EINPROGRESS) {
				int64_t d = now_ms() + CONNECT_TRY_MS;

				p.fd = fd;
				p.events = POLLOUT;
				p.revents = 0;
				r = poll_until(&p, 1,
					       deadline < d ? deadline : d);
				el = sizeof(e);
				if (r > 0)
					getsockopt(fd, SOL_SOCKET, SO_ERROR, &e,
						   &el);
				else
					e = r < 0 ? -r : ETIMEDOUT;
			}
		}
		if (!e) {
			freeaddrinfo(res);
			*fdp = fd;
			return 0;
		}
		*last = e;
		close(fd);
	}
	freeaddrinfo(res);
	return -EAGAIN;
}

/* Having read an ABORT header @h from the hub, read its text and break. */
static int take_abort(struct aug_boot *b, const struct hdr *h)
{
	char buf[4 + ERR_LEN];
	uint32_t c;
	int code, dead, r;

	if (h->len < 4 || h->len >= sizeof(buf))
		return boot_break(b, -AUGUR_EPROTO, -1,
				  "malformed notice from rank 0 (%llu bytes)",
				  (unsigned long long)h->len);
	r = recv_all(b->peer[0].fd, buf, h->len, deadline_in(b->io_ms));
	if (r)
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 died while sending a notice");
	buf[h->len] = '\0';
	memcpy(&c, buf, 4);
	code = (int)ntohl(c);
	if (!((code < 0 && code > -AUGUR_ERR_BASE) ||
	      (code < -AUGUR_ERR_BASE && code > -AUGUR_ERR_MAX)))
		code = -AUGUR_EPROTO;
	dead = h->arg < (uint32_t)b->size ? (int)h->arg : -1;
	return boot_break(b, code, dead, "rank 0 reports: %s", buf + 4);
}

static int spoke_open(struct aug_boot *b, const struct rv *rv)
{
	int64_t deadline = now_ms() + b->io_ms;
	int backoff = BACKOFF_MIN_MS, last = 0, fd = -1, r, w;
	struct epoll_event ev;
	struct hello h;
	struct iovec iov;
	struct hdr fh;

	for (;;) {
		r = spoke_try(b, rv, deadline, &last, &fd);
		if (!r)
			break;
		if (r != -EAGAIN)
			return r;
		w = left_ms(deadline);
		if (!w)
			return boot_break(b, -ETIMEDOUT, -1,
					  "could not reach rank 0 at "
					  "AUGUR_RENDEZVOUS=%s within %g s "
					  "(last error: %s): is rank 0 "
					  "running, and do all ranks have the "
					  "same AUGUR_RENDEZVOUS?",
					  b->where, secs(b->io_ms),
					  strerror(last));
		poll(NULL, 0, backoff < w ? backoff : w);
		backoff =
		    backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	b->peer[0].fd = fd;
	b->peer[0].state = P_LIVE;
	set_sockopts(fd, rv->is_unix ? AF_UNIX : AF_INET);

	memset(&h, 0, sizeof(h));
	h.magic = htonl(BOOT_MAGIC);
	h.version = htonl(BOOT_VERSION);
	h.rank = htonl((uint32_t)b->rank);
	h.size = htonl((uint32_t)b->size);
	h.pid = htonl((uint32_t)getpid());
	if (gethostname(h.host, sizeof(h.host) - 1))
		strcpy(h.host, "?");
	iov.iov_base = &h;
	iov.iov_len = sizeof(h);
	r = send_all(fd, &iov, 1, deadline_in(b->io_ms), 0);
	if (r)
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 at AUGUR_RENDEZVOUS=%s dropped the "
				  "connection: %s",
				  b->where, strerror(r < 0 ? -r : EIO));
	/* Rank 0 owns the job's deadline and reports it (with the missing
	 * ranks); give it a moment more than its own timeout. */
	r = recv_all(fd, &fh, sizeof(fh), deadline_in(b->io_ms + 2000));
	if (r == -ETIMEDOUT)
		return boot_break(b, r, -1,
				  "connected to rank 0 at AUGUR_RENDEZVOUS=%s "
				  "but the job did not assemble within %g s",
				  b->where, secs(b->io_ms));
	if (r)
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 at AUGUR_RENDEZVOUS=%s closed the "
				  "connection while the job assembled (see "
				  "its output)",
				  b->where);
	hdr_unpack(&fh);
	if (fh.type == F_ABORT)
		return take_abort(b, &fh);
	if (fh.type != F_READY || fh.arg != (uint32_t)b->size || fh.len)
		return boot_break(b, -AUGUR_EPROTO, -1,
				  "unexpected frame (type %u) from rank 0 "
				  "during set-up",
				  fh.type);
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.u32 = 0;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev))
		return boot_break(b, -errno, -1, "epoll_ctl(): %s",
				  strerror(errno));
	return 0;
}

/* --- open / close ----------------------------------------------------- */

int aug_boot_open(struct aug_boot **out)
{
	struct aug_boot *b;
	const char *rvs, *source;
	struct rv rv;
	int rank, size, io_ms, r, ret;

	if (!out)
		return fail(-EINVAL, "aug_boot_open: out is NULL");
	*out = NULL;
	tls_err[0] = '\0';
	ret = aug_boot_identity(&rank, &size, &source);
	if (ret)
		return ret;
	ret = parse_timeout(&io_ms);
	if (ret)
		return ret;
	rvs = env("AUGUR_RENDEZVOUS");
	if (size > 1) {
		if (!rvs)
			return fail(-EINVAL,
				    "augur bootstrap: this process is rank %d "
				    "of %d (from %s) but AUGUR_RENDEZVOUS is "
				    "not set: set AUGUR_RENDEZVOUS=host:port "
				    "(rank 0's host and a free TCP port, the "
				    "same for every rank), or start the job "
				    "with augur-run",
				    rank, size, source);
		ret = parse_rv(rvs, &rv);
		if (ret)
			return ret;
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		return fail(-ENOMEM, "augur bootstrap: out of memory");
	b->rank = rank;
	b->size = size;
	b->io_ms = io_ms;
	b->source = source;
	b->epfd = -1;
	b->lfd = -1;
	b->dead_rank = -1;
	snprintf(b->where, sizeof(b->where), "%s", rvs ? rvs : "");
	ret = pthread_mutex_init(&b->lock, NULL);
	if (ret) {
		free(b);
		return fail(-ret, "augur bootstrap: pthread_mutex_init: %s",
			    strerror(ret));
	}
	if (size == 1) {
		*out = b;
		return 0;
	}
	b->peer = calloc((size_t)size, sizeof(*b->peer));
	b->pfd = calloc((size_t)size, sizeof(*b->pfd));
	b->pidx = calloc((size_t)size, sizeof(*b->pidx));
	if (!b->peer || !b->pfd || !b->pidx) {
		ret = fail(-ENOMEM, "augur bootstrap: out of memory");
		goto out_close;
	}
	for (r = 0; r < size; r++)
		b->peer[r].fd = -1;
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0) {
		ret = fail(-errno, "augur bootstrap: epoll_create1: %s",
			   strerror(errno));
		goto out_close;
	}
	ret = rank == 0 ? hub_open(b, &rv) : spoke_open(b, &rv);
	if (ret)
		goto out_close;
	*out = b;
	return 0;

out_close:
	/* Keep this thread's text: close() must not replace it. */
	aug_boot_close(b);
	return ret;
}

int aug_boot_rank(const struct aug_boot *b)
{
	return b->rank;
}

int aug_boot_size(const struct aug_boot *b)
{
	return b->size;
}

void aug_boot_set_wait_timeout(struct aug_boot *b, int timeout_ms)
{
	if (b)
		b->wait_ms = timeout_ms > 0 ? timeout_ms : 0;
}

int aug_boot_fd(const struct aug_boot *b)
{
	if (!b)
		return fail(-EINVAL, "aug_boot_fd: NULL handle");
	if (b->size == 1 || b->epfd < 0)
		return -ENOTCONN;
	return b->epfd;
}

void aug_boot_close(struct aug_boot *b)
{
	char junk[4096];
	int r, i, ok;

	if (!b)
		return;
	if (b->peer) {
		ok = !atomic_load_explicit(&b->status, memory_order_acquire);
		for (r = 0; r < b->size; r++) {
			if (b->peer[r].fd < 0)
				continue;
			/* Drain what is pending, so that closing a TCP
			 * socket sends FIN (after the BYE), not a reset. */
			for (i = 0; i < 64; i++)
				if (recv(b->peer[r].fd, junk, sizeof(junk),
					 MSG_DONTWAIT) <= 0)
					break;
			if (ok && b->peer[r].state == P_LIVE)
				send_notice(b->peer[r].fd, F_BYE,
					    (uint32_t)b->rank, 0, NULL);
			close(b->peer[r].fd);
		}
	}
	if (b->lfd >= 0)
		close(b->lfd);
	if (b->unlink_path[0])
		unlink(b->unlink_path);
	if (b->epfd >= 0)
		close(b->epfd);
	free(b->peer);
	free(b->pfd);
	free(b->pidx);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* --- collectives ------------------------------------------------------- */

static int hub_gather(struct aug_boot *b, uint32_t seq, size_t len, char *all)
{
	int64_t wait_deadline = deadline_in(b->wait_ms);
	int pending = 0, n, i, r, ret;
	struct hdr h;
	char list[96];

	for (r = 1; r < b->size; r++) {
		if (b->peer[r].state == P_LEFT)
			return boot_break(
			    b, -AUGUR_EPEER_GONE, r,
			    "rank %d left (aug_boot_close) before "
			    "collective #%u",
			    r, seq);
		b->pidx[pending++] = r;
	}
	while (pending) {
		for (i = 0; i < pending; i++) {
			b->pfd[i].fd = b->peer[b->pidx[i]].fd;
			b->pfd[i].events = POLLIN | POLLRDHUP;
			b->pfd[i].revents = 0;
		}
		n = poll_until(b->pfd, (nfds_t)pending, wait_deadline);
		if (n < 0)
			return boot_break(b, n, -1, "poll(): %s", strerror(-n));
		if (!n) {
			rank_list(b, b->pidx, pending, list, sizeof(list));
			return boot_break(b, -ETIMEDOUT, -1,
					  "collective #%u: waited %g s for "
					  "rank(s) %s to arrive",
					  seq, secs(b->wait_ms), list);
		}
		for (i = 0; i < pending; i++) {
			short ev = b->pfd[i].revents;

			r = b->pidx[i];
			if (!ev)
				continue;
			if (!(ev & POLLIN))
				return boot_break(b, -AUGUR_EPEER_GONE, r,
						  "rank %d (pid %u on %s) died "
						  "before collective #%u: its "
						  "connection closed",
						  r, b->peer[r].pid,
						  b->peer[r].host, seq);
			ret = recv_all(b->peer[r].fd, &h, sizeof(h),
				       deadline_in(b->io_ms));
			if (ret)
				return boot_break(
				    b, -AUGUR_EPEER_GONE, r,
				    "rank %d (pid %u on %s) died "
				    "in collective #%u (%s)",
				    r, b->peer[r].pid, b->peer[r].host, seq,
				    ret == -ECONNRESET ? "connection closed"
						       : strerror(-ret));
			hdr_unpack(&h);
			if (h.type == F_BYE) {
				mark_gone(b, r, P_LEFT);
				return boot_break(
				    b, -AUGUR_EPEER_GONE, r,
				    "rank %d left (aug_boot_close) "
				    "instead of joining "
				    "collective #%u",
				    r, seq);
			}
			if (h.type != F_COLL || h.arg != seq)
				return boot_break(b, -AUGUR_EPROTO, -1,
						  "rank %d sent frame type %u "
						  "#%u in collective #%u: the "
						  "ranks disagree on the "
						  "sequence of collectives",
						  r, h.type, h.arg, seq);
			if (h.len != len)
				return boot_break(
				    b, -AUGUR_EPROTO, -1,
				    "collective #%u: rank %d "
				    "contributes %llu bytes, "
				    "rank 0 %zu: every rank must "
				    "pass the same length",
				    seq, r, (unsigned long long)h.len, len);
			ret = recv_all(b->peer[r].fd, all + (size_t)r * len,
				       len, deadline_in(b->io_ms));
			if (ret)
				return boot_break(b, -AUGUR_EPEER_GONE, r,
						  "rank %d died in the middle "
						  "of collective #%u (%s)",
						  r, seq,
						  ret == -ECONNRESET
						      ? "connection closed"
						      : strerror(-ret));
			/* Done with r: move the last pending entry (and
			 * its poll result) into slot i and look at it. */
			b->pidx[i] = b->pidx[--pending];
			b->pfd[i] = b->pfd[pending];
			i--;
		}
	}
	for (r = 1; r < b->size; r++) {
		ret = send_frame(b->peer[r].fd, F_RESULT, seq, all,
				 (size_t)b->size * len, NULL, 0,
				 deadline_in(b->io_ms), 0);
		if (ret)
			return boot_break(
			    b, -AUGUR_EPEER_GONE, r,
			    "rank %d (pid %u on %s) died at the "
			    "end of collective #%u (%s)",
			    r, b->peer[r].pid, b->peer[r].host, seq,
			    ret == -ETIMEDOUT ? "it stopped reading"
					      : strerror(-ret));
	}
	return 0;
}

/* A spoke read header @h where a RESULT or nothing was expected. */
static int spoke_notice(struct aug_boot *b, const struct hdr *h, uint32_t seq)
{
	if (h->type == F_ABORT)
		return take_abort(b, h);
	if (h->type == F_BYE) {
		mark_gone(b, 0, P_LEFT);
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 left (aug_boot_close) before "
				  "collective #%u",
				  seq);
	}
	return boot_break(b, -AUGUR_EPROTO, -1,
			  "unexpected frame type %u from rank 0 (collective "
			  "#%u)",
			  h->type, seq);
}

static int spoke_gather(struct aug_boot *b, uint32_t seq, const void *mine,
			size_t len, void *all)
{
	int fd = b->peer[0].fd, ret;
	size_t total = (size_t)b->size * len;
	struct pollfd p;
	struct hdr h;

	if (b->peer[0].state == P_LEFT)
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 left (aug_boot_close) before "
				  "collective #%u",
				  seq);
	/* Rank 0 may not be reading yet: wait while it lives. */
	ret = send_frame(fd, F_COLL, seq, mine, len, NULL, 0,
			 deadline_in(b->wait_ms), 1);
	if (ret == -ETIMEDOUT)
		return boot_break(b, ret, -1,
				  "collective #%u: rank 0 did not take this "
				  "rank's contribution within %g s",
				  seq, secs(b->wait_ms));
	if (ret < 0) {
		/* Prefer the notice rank 0 may have left behind. */
		if (peek_hdr(fd, &h) == 1 && h.type == F_ABORT) {
			recv_all(fd, &h, sizeof(h), 0);
			hdr_unpack(&h);
			return take_abort(b, &h);
		}
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 died (collective #%u: %s)", seq,
				  strerror(-ret));
	}
	/* ret == 1: a notice arrived while sending; it is read below. */
	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	ret = poll_until(&p, 1, deadline_in(b->wait_ms));
	if (ret < 0)
		return boot_break(b, ret, -1, "poll(): %s", strerror(-ret));
	if (!ret)
		return boot_break(b, -ETIMEDOUT, -1,
				  "collective #%u: no answer from rank 0 "
				  "within %g s",
				  seq, secs(b->wait_ms));
	ret = recv_all(fd, &h, sizeof(h), deadline_in(b->io_ms));
	if (ret)
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 died during collective #%u (%s)", seq,
				  ret == -ECONNRESET ? "connection closed"
						     : strerror(-ret));
	hdr_unpack(&h);
	if (h.type != F_RESULT)
		return spoke_notice(b, &h, seq);
	if (h.arg != seq || h.len != total)
		return boot_break(b, -AUGUR_EPROTO, -1,
				  "collective #%u: rank 0 answered #%u with "
				  "%llu bytes, expected %zu",
				  seq, h.arg, (unsigned long long)h.len, total);
	ret = recv_all(fd, all, total, deadline_in(b->io_ms));
	if (ret)
		return boot_break(b, -AUGUR_EPEER_GONE, 0,
				  "rank 0 died during collective #%u (%s)", seq,
				  ret == -ECONNRESET ? "connection closed"
						     : strerror(-ret));
	return 0;
}

int aug_boot_allgather(struct aug_boot *b, const void *mine, size_t len,
		       void *all)
{
	int ret;

	if (!b || (len && (!mine || !all)))
		return fail(-EINVAL, "aug_boot_allgather: bad argument");
	if (len > AUG_BOOT_MAX_LEN)
		return fail(-EINVAL,
			    "aug_boot_allgather: %zu bytes per rank is more "
			    "than the bootstrap carries (%u)",
			    len, AUG_BOOT_MAX_LEN);
	pthread_mutex_lock(&b->lock);
	ret = sticky(b);
	if (ret)
		goto out_unlock;
	b->seq++;
	if (len)
		memmove((char *)all + (size_t)b->rank * len, mine, len);
	if (b->size > 1)
		ret = b->rank == 0 ? hub_gather(b, b->seq, len, all)
				   : spoke_gather(b, b->seq, mine, len, all);
out_unlock:
	pthread_mutex_unlock(&b->lock);
	return ret;
}

int aug_boot_barrier(struct aug_boot *b)
{
	return aug_boot_allgather(b, NULL, 0, NULL);
}

/* --- liveness ---------------------------------------------------------- */

static int hub_scan(struct aug_boot *b)
{
	int left, r = hub_find_hangup(b, &left);

	if (r < 0)
		return 0;
	return boot_break(b, -AUGUR_EPEER_GONE, r,
			  "rank %d (pid %u on %s) died: its connection closed "
			  "without aug_boot_close()",
			  r, b->peer[r].pid, b->peer[r].host);
}

static int spoke_scan(struct aug_boot *b)
{
	struct pollfd p = {.fd = b->peer[0].fd, .events = POLLIN | POLLRDHUP};
	struct hdr h;
	int r;

	if (b->peer[0].state != P_LIVE)
		return 0;
	if (poll_until(&p, 1, 0) <= 0)
		return 0;
	if (p.revents & POLLIN) {
		r = peek_hdr(p.fd, &h);
		if (r == 1) {
			recv_all(p.fd, &h, sizeof(h), 0);
			hdr_unpack(&h);
			if (h.type == F_BYE) {
				mark_gone(b, 0, P_LEFT);
				return 0;
			}
			return spoke_notice(b, &h, b->seq);
		}
		if (r == 0 && !(p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return 0; /* a notice is still arriving */
	}
	return boot_break(b, -AUGUR_EPEER_GONE, 0,
			  "rank 0 died: its connection closed without "
			  "aug_boot_close()");
}

int aug_boot_check(struct aug_boot *b, int *dead_rank)
{
	int ret;

	if (dead_rank)
		*dead_rank = -1;
	if (!b)
		return fail(-EINVAL, "aug_boot_check: NULL handle");
	if (b->size == 1)
		return 0;
	if (pthread_mutex_trylock(&b->lock)) {
		/* A collective runs; it watches for deaths itself. */
		ret = sticky(b);
		if (ret && dead_rank)
			*dead_rank = b->dead_rank;
		return ret;
	}
	ret = sticky(b);
	if (!ret)
		ret = b->rank == 0 ? hub_scan(b) : spoke_scan(b);
	if (ret && dead_rank)
		*dead_rank = b->dead_rank;
	pthread_mutex_unlock(&b->lock);
	return ret;
}
