// SPDX-License-Identifier: MIT
/*
 * tcp_lat - the tcp provider's READ latency and message rate, each next to
 * plain-TCP references measured in the same run, between two processes
 * (loopback, or two network namespaces with --netns):
 *
 *   auv READ       a signaled READ of S bytes, the client busy-polling
 *                  auv_poll(), the target busy-polling too (as augur's
 *                  progress loop does under load);
 *   blocking pp    ping-pong over one TCP connection with blocking
 *                  send()/recv(): a 48-byte request, a 16+S-byte answer
 *                  (the same bytes a tcp READ puts on the wire);
 *   epoll pp       the same with non-blocking sockets, both sides spinning
 *                  on epoll_wait(0);
 *   rate           W operations in flight: auv READs against the epoll
 *                  reference pipelined W deep.
 *
 * Prints medians (latency) and operations per second, and the ratios
 * auv/reference.  It never judges them: these machines are shared.
 *
 * Usage: tcp_lat [--sizes 8,256,4096] [--iters N] [--window W]
 *                [--netns nsA=ipA,nsB=ipB]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <augur/verbs.h>

#define REQ 48u
#define HDR 16u
#define MAXS (64u << 10)
#define MAXW 256

static int ctl = -1; /* control socket between the two processes */
static char my_ip[64] = "127.0.0.1";

static void die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "tcp_lat: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void xwrite(int fd, const void *p, size_t n)
{
	const char *c = p;
	ssize_t k;

	while (n) {
		k = send(fd, c, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die("send: %s", strerror(errno));
		c += k;
		n -= (size_t)k;
	}
}

static int xread(int fd, void *p, size_t n)
{
	char *c = p;
	ssize_t k;

	while (n) {
		k = recv(fd, c, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k == 0)
			return -1;
		if (k < 0)
			die("recv: %s", strerror(errno));
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v, long n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return (double)v[n / 2] / 1e3;
}

static void join_netns(const char *spec, int which)
{
	char ns[64], path[128];
	const char *item = spec, *eq, *end;
	int fd;

	if (which)
		item = strchr(spec, ',') ? strchr(spec, ',') + 1 : spec;
	eq = strchr(item, '=');
	end = strchr(item, ',');
	if (!end || end < item)
		end = item + strlen(item);
	if (!eq || eq > end || (size_t)(eq - item) >= sizeof(ns) ||
	    (size_t)(end - eq - 1) >= sizeof(my_ip))
		die("malformed --netns '%s'", spec);
	memcpy(ns, item, (size_t)(eq - item));
	ns[eq - item] = '\0';
	memcpy(my_ip, eq + 1, (size_t)(end - eq - 1));
	my_ip[end - eq - 1] = '\0';
	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		die("joining %s: %s", path, strerror(errno));
	close(fd);
}

/* --- Plain TCP references ------------------------------------------------- */

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int listen_any(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, my_ip, &a.sin_addr);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(fd, 4) || getsockname(fd, (struct sockaddr *)&a, &l))
		die("listen: %s", strerror(errno));
	*port = ntohs(a.sin_port);
	return fd;
}

static int dial(const char *ip, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, ip, &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect %s:%u: %s", ip, port, strerror(errno));
	nodelay(fd);
	return fd;
}

/* send() all of it, spinning on a non-blocking socket.  0 or -1. */
static int spin_send(int fd, const uint8_t *p, size_t n)
{
	ssize_t k;

	while (n) {
		k = send(fd, p, n, MSG_NOSIGNAL);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
		} else if (k < 0 && errno != EAGAIN && errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* Server: answer each 48-byte request (size in its first 4 bytes) with
 * 16 + size bytes; blocking, or spinning on epoll when @spin. */
static void ref_server(int fd, int spin)
{
	static uint8_t in[1 << 16], out[4 * (HDR + MAXS)];
	size_t have = 0, off, olen;
	uint32_t s;
	ssize_t k;
	int ep = -1;
	struct epoll_event ev = {.events = EPOLLIN};

	nodelay(fd);
	if (spin) {
		fcntl(fd, F_SETFL, O_NONBLOCK);
		ep = epoll_create1(EPOLL_CLOEXEC);
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	for (;;) {
		if (spin) {
			while (epoll_wait(ep, &ev, 1, 0) == 0)
				;
		}
		k = recv(fd, in + have, sizeof(in) - have, 0);
		if (k == 0)
			break;
		if (k < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		have += (size_t)k;
		/* Answer everything that came, in one send when it fits. */
		olen = 0;
		for (off = 0; have - off >= REQ; off += REQ) {
			memcpy(&s, in + off, 4);
			if (s > MAXS)
				die("bad request size %u", s);
			if (olen + HDR + s > sizeof(out)) {
				if (spin_send(fd, out, olen))
					return;
				olen = 0;
			}
			memcpy(out + olen, in + off, HDR);
			olen += HDR + s;
		}
		if (olen && spin_send(fd, out, olen))
			return;
		memmove(in, in + off, have - off);
		have -= off;
	}
	if (ep >= 0)
		close(ep);
}

/* Client: @n round trips of size @s, @window in flight; per-op times into
 * @lat (window 1 only).  Return: seconds for all. */
static double ref_client(int fd, uint32_t s, long n, int window, int spin,
			 uint64_t *lat)
{
	static uint8_t req[REQ * MAXW], in[(HDR + MAXS) * 4];
	struct epoll_event ev = {.events = EPOLLIN};
	long sent = 0, got = 0;
	size_t need, pend = 0;
	uint64_t t0 = now_ns(), t;
	ssize_t k;
	int ep = -1, i;

	for (i = 0; i < MAXW; i++)
		memcpy(req + REQ * i, &s, 4);
	if (spin) {
		fcntl(fd, F_SETFL, O_NONBLOCK);
		ep = epoll_create1(EPOLL_CLOEXEC);
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	} else {
		fcntl(fd, F_SETFL, 0);
	}
	while (got < n) {
		t = now_ns();
		i = 0;
		while (sent < n && sent - got < window) {
			sent++;
			i++;
		}
		if (i) {
			size_t done = 0, len = (size_t)i * REQ;

			while (done < len) {
				k = send(fd, req + done, len - done,
					 MSG_NOSIGNAL);
				if (k > 0)
					done += (size_t)k;
				else if (k < 0 && errno != EAGAIN &&
					 errno != EINTR)
					die("send: %s", strerror(errno));
			}
		}
		/* At least one answer; all that are there. */
		need = HDR + s;
		do {
			if (spin)
				while (epoll_wait(ep, &ev, 1, 0) == 0)
					;
			k = recv(fd, in + pend,
				 sizeof(in) - pend < need * (size_t)window
				     ? sizeof(in) - pend
				     : need * (size_t)window,
				 0);
			if (k > 0)
				pend += (size_t)k;
			else if (k == 0)
				die("reference server went away");
			else if (errno != EAGAIN && errno != EINTR)
				die("recv: %s", strerror(errno));
		} while (pend < need);
		while (pend >= need) {
			if (lat)
				lat[got] = now_ns() - t;
			got++;
			pend -= need;
		}
	}
	if (ep >= 0)
		close(ep);
	return (double)(now_ns() - t0) / 1e9;
}

/* --- augur over tcp ------------------------------------------------------- */

static void auv_server(void)
{
	struct auv_ctx_opts o = {.provider = "tcp", .addr = my_ip};
	struct auv_ctx *ctx;
	struct auv_mr *mr, *rx;
	struct auv_ep *ep;
	struct auv_mr_desc d;
	struct auv_wc wc[16];
	char addr[AUV_ADDR_MAX];
	int n, i, rc, msgs;

	if ((rc = auv_ctx_open(&o, &ctx)))
		die("server: auv_ctx_open: %s: %s", augur_strerror(rc),
		    auv_last_error());
	if (auv_mr_alloc(ctx, 1u << 20, AUV_ACCESS_ALL, &mr) ||
	    auv_mr_alloc(ctx, 4096, AUV_ACCESS_LOCAL_WRITE, &rx))
		die("server: auv_mr_alloc");
	memset(auv_mr_addr(mr), 0x42, 1u << 20);
	snprintf(addr, sizeof(addr), "%s", auv_ctx_addr(ctx));
	auv_mr_desc(mr, &d);
	xwrite(ctl, addr, sizeof(addr));
	xwrite(ctl, &d, sizeof(d));
	if ((rc = auv_ep_accept(ctx, 20000, &ep, NULL, NULL)))
		die("server: accept: %s", augur_strerror(rc));
	if (auv_post_recv(ep, auv_mr_addr(rx), 64, rx, 1) ||
	    auv_post_recv(ep, (uint8_t *)auv_mr_addr(rx) + 64, 64, rx, 2))
		die("server: post_recv");
	/* The target's progress loop: busy polling first; after the first
	 * message, sleeping in auv_wait() when idle (augur's back-off); the
	 * second message ends it. */
	for (msgs = 0; msgs < 2;) {
		n = auv_poll(ctx, wc, 16);
		for (i = 0; i < n; i++)
			msgs += wc[i].opcode == AUV_OP_RECV;
		if (!n && msgs)
			auv_wait(ctx, 100);
		if (auv_ep_status(ep))
			die("server: endpoint failed: %s",
			    augur_strerror(auv_ep_status(ep)));
	}
	auv_ep_close(ep);
	auv_ctx_close(ctx);
}

struct auv_client {
	struct auv_ctx *ctx;
	struct auv_ep *ep;
	struct auv_mr *loc;
	struct auv_mr_desc d;
};

static void auv_client_open(struct auv_client *a)
{
	struct auv_ctx_opts o = {.provider = "tcp", .addr = my_ip};
	char addr[AUV_ADDR_MAX];
	int rc;

	if (xread(ctl, addr, sizeof(addr)) || xread(ctl, &a->d, sizeof(a->d)))
		die("client: no address from the server");
	addr[AUV_ADDR_MAX - 1] = '\0';
	if ((rc = auv_ctx_open(&o, &a->ctx)))
		die("client: auv_ctx_open: %s: %s", augur_strerror(rc),
		    auv_last_error());
	if (auv_mr_alloc(a->ctx, (size_t)MAXW * MAXS, AUV_ACCESS_ALL, &a->loc))
		die("client: auv_mr_alloc");
	if ((rc = auv_ep_connect(a->ctx, addr, NULL, 0, &a->ep)))
		die("client: connect %s: %s: %s", addr, augur_strerror(rc),
		    auv_last_error());
}

static double auv_run(struct auv_client *a, uint32_t s, long n, int window,
		      uint64_t *lat, int sleep)
{
	uint8_t *l = auv_mr_addr(a->loc);
	struct auv_wc wc[MAXW];
	struct auv_op op;
	long posted = 0, done = 0;
	uint64_t t0 = now_ns(), start[MAXW];
	int k, i, rc;

	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_READ;
	op.flags = AUV_OP_SIGNALED;
	op.len = s;
	op.local_mr = a->loc;
	op.rkey = a->d.rkey;
	while (done < n) {
		while (posted < n && posted - done < window) {
			op.local = l + (size_t)(posted % window) * MAXS;
			op.remote_addr =
			    a->d.addr + (uint64_t)(posted % 16) * 64;
			op.cookie = (uint64_t)posted;
			start[posted % MAXW] = now_ns();
			rc = auv_post(a->ep, &op, 1);
			if (rc < 0)
				die("auv_post: %s", augur_strerror(rc));
			if (!rc)
				break;
			posted++;
		}
		k = auv_poll(a->ctx, wc, MAXW);
		if (k < 0)
			die("auv_poll: %s", augur_strerror(k));
		if (!k && sleep)
			auv_wait(a->ctx, 100);
		for (i = 0; i < k; i++, done++) {
			if (wc[i].status)
				die("READ failed: %s",
				    augur_strerror(wc[i].status));
			if (lat)
				lat[done] = now_ns() - start[done % MAXW];
		}
	}
	return (double)(now_ns() - t0) / 1e9;
}

/* Tell the server to go on to its next mode. */
static void auv_client_msg(struct auv_client *a)
{
	struct auv_op op;
	struct auv_wc wc;
	uint64_t t0 = now_ns();

	memset(&op, 0, sizeof(op));
	op.opcode = AUV_OP_SEND;
	op.flags = AUV_OP_SIGNALED;
	op.local = "next";
	op.len = 4;
	if (auv_post(a->ep, &op, 1) == 1)
		while (!auv_poll(a->ctx, &wc, 1) &&
		       now_ns() - t0 < 5000000000ull)
			;
}

static void auv_client_close(struct auv_client *a)
{
	auv_ep_close(a->ep);
	auv_ctx_close(a->ctx);
}

/* --- Main ----------------------------------------------------------------- */

static void server_main(const char *netns)
{
	uint16_t port;
	int lfd, fd, spin;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (netns)
		join_netns(netns, 1);
	xwrite(ctl, my_ip, sizeof(my_ip));
	auv_server();
	for (spin = 0; spin < 2; spin++) {
		lfd = listen_any(&port);
		xwrite(ctl, &port, sizeof(port));
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			die("accept: %s", strerror(errno));
		ref_server(fd, spin);
		close(fd);
		close(lfd);
	}
	exit(0);
}

int main(int argc, char **argv)
{
	const char *sizes = "8,256,4096", *netns = NULL, *p;
	long iters = 20000, rate_n;
	int window = 32, sv[2], i, fd, st;
	char server_ip[64];
	uint32_t s[16];
	int ns = 0;
	uint16_t port;
	pid_t pid;
	struct auv_client a;
	uint64_t *lat;
	double lat_auv[16], lat_auw[16], lat_blk[16], lat_epl[16];
	double rate_auv[16], rate_epl[16], rate_blk[16];

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
			sizes = argv[++i];
		else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
			iters = atol(argv[++i]);
		else if (!strcmp(argv[i], "--window") && i + 1 < argc)
			window = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--netns") && i + 1 < argc)
			netns = argv[++i];
		else
			die("usage: tcp_lat [--sizes 8,256,4096] [--iters N] "
			    "[--window W] [--netns nsA=ipA,nsB=ipB]");
	}
	if (iters < 100)
		iters = 100;
	if (window < 1 || window > MAXW)
		window = 32;
	for (p = sizes; *p && ns < 16;
	     p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
		s[ns] = (uint32_t)atol(p);
		if (s[ns] < 1 || s[ns] > MAXS)
			die("sizes are 1..%u", MAXS);
		ns++;
	}
	rate_n = iters * 10;
	lat = calloc((size_t)rate_n, sizeof(*lat));
	if (!lat || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		die("setup");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		close(sv[0]);
		ctl = sv[1];
		server_main(netns);
	}
	close(sv[1]);
	ctl = sv[0];
	if (netns)
		join_netns(netns, 0);
	if (xread(ctl, server_ip, sizeof(server_ip)))
		die("the server process failed");
	server_ip[sizeof(server_ip) - 1] = '\0';

	/* augur over tcp. */
	auv_client_open(&a);
	auv_run(&a, 64, iters / 4, 1, NULL, 0); /* warm up */
	for (i = 0; i < ns; i++) {
		auv_run(&a, s[i], iters, 1, lat, 0);
		lat_auv[i] = median_us(lat, iters);
		rate_auv[i] =
		    (double)rate_n / auv_run(&a, s[i], rate_n, window, NULL, 0);
	}
	/* Both sides sleeping when idle, as the blocking reference. */
	auv_client_msg(&a);
	for (i = 0; i < ns; i++) {
		auv_run(&a, s[i], iters, 1, lat, 1);
		lat_auw[i] = median_us(lat, iters);
	}
	auv_client_msg(&a);
	auv_client_close(&a);

	/* Blocking ping-pong, then epoll busy-poll. */
	if (xread(ctl, &port, sizeof(port)))
		die("no reference server");
	fd = dial(server_ip, port);
	ref_client(fd, 64, iters / 4, 1, 0, NULL);
	for (i = 0; i < ns; i++) {
		ref_client(fd, s[i], iters, 1, 0, lat);
		lat_blk[i] = median_us(lat, iters);
		rate_blk[i] = (double)rate_n /
			      ref_client(fd, s[i], rate_n, window, 0, NULL);
	}
	close(fd);
	if (xread(ctl, &port, sizeof(port)))
		die("no reference server");
	fd = dial(server_ip, port);
	ref_client(fd, 64, iters / 4, 1, 1, NULL);
	for (i = 0; i < ns; i++) {
		ref_client(fd, s[i], iters, 1, 1, lat);
		lat_epl[i] = median_us(lat, iters);
		rate_epl[i] = (double)rate_n /
			      ref_client(fd, s[i], rate_n, window, 1, NULL);
	}
	close(fd);
	waitpid(pid, &st, 0);

	printf("tcp provider vs plain TCP, %s, %ld round trips per figure, "
	       "rate with %d in flight\n",
	       netns ? "across the veth" : "loopback", iters, window);
	printf("READ latency, median us: augur spinning vs epoll busy-poll "
	       "ping-pong, augur sleeping (auv_wait) vs blocking ping-pong\n");
	printf("%7s | %9s %9s %7s | %9s %9s %7s\n", "bytes", "auv spin",
	       "epoll", "ratio", "auv wait", "blocking", "ratio");
	for (i = 0; i < ns; i++)
		printf("%7u | %9.2f %9.2f %7.2f | %9.2f %9.2f %7.2f\n", s[i],
		       lat_auv[i], lat_epl[i], lat_auv[i] / lat_epl[i],
		       lat_auw[i], lat_blk[i], lat_auw[i] / lat_blk[i]);
	printf("message rate, op/s, %d in flight (references pipelined as "
	       "deep)\n",
	       window);
	printf("%7s | %10s %10s %7s | %10s %7s\n", "bytes", "auv READ", "epoll",
	       "ratio", "blocking", "ratio");
	for (i = 0; i < ns; i++)
		printf("%7u | %10.0f %10.0f %7.2f | %10.0f %7.2f\n", s[i],
		       rate_auv[i], rate_epl[i], rate_auv[i] / rate_epl[i],
		       rate_blk[i], rate_auv[i] / rate_blk[i]);
	printf("(latency ratio > 1: augur slower; rate ratio > 1: augur "
	       "faster)\n");
	free(lat);
	return 0;
}
