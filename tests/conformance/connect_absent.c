// SPDX-License-Identifier: MIT
/*
 * conf_connect_absent - connecting to nobody fails cleanly and in bounded
 * time.
 *
 * Rank 0 (with a 3 s connect timeout):
 *  1. malformed addresses (empty, wrong provider, missing or extra fields,
 *     non-numbers, out-of-range numbers, overlong) and bad arguments give
 *     -EINVAL at once;
 *  2. syntactically valid made-up addresses (shm: a pid that does not
 *     exist, a live process that is no augur context; ibv: a port nobody
 *     listens on, an address nobody has) give -ECONNREFUSED or -ETIMEDOUT;
 *  3. the context still works: a connection to rank 1 succeeds;
 *  4. after rank 1 has exited, connecting to its address (which worked a
 *     moment ago) gives -ECONNREFUSED or -ETIMEDOUT.
 * Each failure leaves *out NULL and auv_last_error() non-empty, and takes
 * less than 30 s (measured and printed; the bound is far from the normal
 * time, as machines are noisy).
 *
 * Rank 1 also checks that auv_ep_accept() with nobody connecting times out
 * with -ETIMEDOUT, at once for a 0 timeout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define CONNECT_TIMEOUT_MS 3000
#define BOUND_S 30.0

static void tune(struct th *t, struct auv_ctx_opts *o)
{
	o->connect_timeout_ms = CONNECT_TIMEOUT_MS;
}

static double try_connect(struct th *t, const char *addr, const void *priv,
			  size_t plen, int *rc_out)
{
	struct auv_ep *ep = (struct auv_ep *)&ep; /* must be reset */
	uint64_t start = th_now_ns();
	double s;
	int rc;

	th_phase("connecting to '%.60s'", addr ? addr : "(null)");
	rc = auv_ep_connect(t->ctx, addr, priv, plen, &ep);
	s = th_elapsed_s(start);
	CHECKF(rc != 0, "connecting to '%.60s' succeeded", addr);
	CHECKF(ep == NULL, "failed auv_ep_connect left *out set");
	CHECKF(strlen(auv_last_error()) > 0 &&
		   strcmp(auv_last_error(), "no error detail"),
	       "auv_last_error() says nothing after a failed connect to "
	       "'%.60s'",
	       addr);
	CHECKF(s < BOUND_S, "connecting to '%.60s' took %.1f s", addr, s);
	*rc_out = rc;
	return s;
}

static void malformed(struct th *t, const char *addr)
{
	int32_t me = 0;
	double s;
	int rc;

	s = try_connect(t, addr, &me, sizeof(me), &rc);
	CHECKF(rc == -EINVAL,
	       "malformed address '%.60s': %d (%s), expected -EINVAL", addr, rc,
	       augur_strerror(rc));
	CHECKF(s < 5.0, "malformed address '%.60s' took %.1f s to refuse", addr,
	       s);
}

static void absent(struct th *t, const char *addr, const char *what)
{
	int32_t me = 0;
	double s;
	int rc;

	s = try_connect(t, addr, &me, sizeof(me), &rc);
	CHECKF(rc == -ECONNREFUSED || rc == -ETIMEDOUT,
	       "%s '%s': %d (%s), expected -ECONNREFUSED or -ETIMEDOUT", what,
	       addr, rc, augur_strerror(rc));
	th_note("%s: %s after %.3f s (%s)", what, augur_strerror(rc), s,
		auv_last_error());
}

static void malformed_all(struct th *t)
{
	const char *p = t->provider;
	char buf[512], longaddr[400];
	bool ipaddr = strcmp(p, "shm") != 0; /* ibv, tcp: <ip>:<port> */
	const char *other = ipaddr ? "shm:1:3" : "ibv:192.0.2.1:7471";
	static const char *const shm_bad[] = {
	    "shm:12x:3",
	    "shm:123:",
	    "shm::3",
	    "shm:-5:3",
	    "shm:99999999999999999999:3",
	    "shm:12:3x",
	    "shm:12:-1",
	    "shm:12",
	    "shm:1:2:3",
	};
	static const char *const ibv_bad[] = {
	    "ibv:300.1.1.1:7471",   "ibv:192.0.2.1:",	"ibv:192.0.2.1:99999",
	    "ibv:192.0.2.1:port",   "ibv:192.0.2.1",	"ibv::7471",
	    "ibv:192.0.2.1:7471:1", "ibv:192.0.2.1:-1",
	};
	const char *const *list = ipaddr ? ibv_bad : shm_bad;
	unsigned int i, n = ipaddr ? sizeof(ibv_bad) / sizeof(ibv_bad[0])
				   : sizeof(shm_bad) / sizeof(shm_bad[0]);
	struct auv_ep *ep;
	int32_t me = 0;

	malformed(t, "");
	malformed(t, "x");
	malformed(t, p);
	snprintf(buf, sizeof(buf), "%s:", p);
	malformed(t, buf);
	snprintf(buf, sizeof(buf), "%s::", p);
	malformed(t, buf);
	snprintf(buf, sizeof(buf), "%s:abc:def", p);
	malformed(t, buf);
	snprintf(buf, sizeof(buf), " %s", t->addr[1]);
	malformed(t, buf);
	snprintf(buf, sizeof(buf), "%c%s", p[0] ^ 0x20, t->addr[1] + 1);
	malformed(t, buf);   /* "SHM:..." */
	malformed(t, other); /* the other provider's address */
	memset(longaddr, '9', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = '\0';
	snprintf(buf, sizeof(buf), "%s:%s:1", p, longaddr);
	malformed(t, buf);
	for (i = 0; i < n; i++) {
		/* the ip:port list is written for ibv: same shape for tcp */
		snprintf(buf, sizeof(buf), "%s%s", p, strchr(list[i], ':'));
		malformed(t, ipaddr ? buf : list[i]);
	}

	/* Bad arguments. */
	CHECK_RC(auv_ep_connect(t->ctx, NULL, &me, sizeof(me), &ep), -EINVAL);
	CHECK_RC(auv_ep_connect(t->ctx, t->addr[1], buf, AUV_PRIV_MAX + 1, &ep),
		 -EINVAL);
	CHECK_RC(auv_ep_connect(t->ctx, t->addr[1], NULL, 4, &ep), -EINVAL);
	CHECK_RC(auv_ep_connect(t->ctx, t->addr[1], &me, sizeof(me), NULL),
		 -EINVAL);
}

static pid_t unused_pid(void)
{
	long max = 32768;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	pid_t p;

	if (f) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 32768;
		fclose(f);
	}
	for (p = (pid_t)max - 1; p > 300; p--)
		if (kill(p, 0) < 0 && errno == ESRCH)
			return p;
	th_fail_at(__FILE__, __LINE__, 0, "no unused pid found");
}

static void made_up(struct th *t)
{
	char buf[AUV_ADDR_MAX + 32], ip[64];
	const char *colon;
	char *dot;
	size_t iplen;

	if (!strcmp(t->provider, "shm")) {
		snprintf(buf, sizeof(buf), "shm:%d:3", (int)unused_pid());
		absent(t, buf, "made-up address (no such pid)");
		snprintf(buf, sizeof(buf), "shm:%d:1000", (int)getppid());
		absent(t, buf, "made-up address (a live process, no context)");
		return;
	}
	/* <provider>:<ip>:<port> of rank 1: another port, then another
	 * host. */
	colon = strrchr(t->addr[1], ':');
	CHECK(colon && colon > t->addr[1] + 4);
	iplen = (size_t)(colon - (t->addr[1] + 4));
	CHECK(iplen < sizeof(ip));
	memcpy(ip, t->addr[1] + 4, iplen);
	ip[iplen] = '\0';
	snprintf(buf, sizeof(buf), "%s:%s:%d", t->provider, ip,
		 atoi(colon + 1) == 9 ? 10 : 9);
	absent(t, buf, "made-up address (port nobody listens on)");
	dot = strrchr(ip, '.');
	if (dot && strchr(ip, ':') == NULL) {
		snprintf(dot + 1, sizeof(ip) - (size_t)(dot + 1 - ip), "%s",
			 strcmp(dot + 1, "254") ? "254" : "253");
		snprintf(buf, sizeof(buf), "%s:%s:%s", t->provider, ip,
			 colon + 1);
		absent(t, buf, "made-up address (host nobody has)");
	}
}

static int run(struct th *t)
{
	int32_t me = t->rank;
	struct auv_ep *ep;
	uint64_t start;
	double s;
	int rc;

	if (t->rank == 1) {
		th_phase("accept with nobody connecting");
		start = th_now_ns();
		CHECK_RC(auv_ep_accept(t->ctx, 0, &ep, NULL, NULL), -ETIMEDOUT);
		CHECKF(th_elapsed_s(start) < 2.0,
		       "auv_ep_accept with timeout 0 took %.1f s",
		       th_elapsed_s(start));
		start = th_now_ns();
		CHECK_RC(auv_ep_accept(t->ctx, 300, &ep, NULL, NULL),
			 -ETIMEDOUT);
		s = th_elapsed_s(start);
		CHECKF(s >= 0.2 && s < 10.0,
		       "auv_ep_accept with timeout 300 ms returned after "
		       "%.3f s",
		       s);
		/* Only now may rank 0 connect: the timeouts above must
		 * not see its connection. */
		th_send_u64(t, 0, 1);
		rc = auv_ep_accept(t->ctx, t->ibv ? 60000 : 20000, &ep, NULL,
				   NULL);
		CHECKF(rc == 0, "accept: %d (%s)", rc, augur_strerror(rc));
		auv_ep_close(ep);
		/* Exiting closes the context: rank 0 then tries again. */
		return TH_PASS;
	}

	th_phase("malformed addresses");
	malformed_all(t);
	th_phase("made-up addresses");
	made_up(t);

	th_phase("connecting to rank 1 while it is there");
	CHECK_EQ(th_recv_u64(t, 1), 1); /* rank 1 is accepting */
	rc = auv_ep_connect(t->ctx, t->addr[1], &me, sizeof(me), &ep);
	CHECKF(rc == 0, "connecting to rank 1 after the failures: %d (%s)", rc,
	       augur_strerror(rc));
	th_wait_exit(t, 1);
	auv_ep_close(ep);
	absent(t, t->addr[1], "peer that existed and exited");
	return TH_PASS;
}

static const struct th_test test = {
    .name = "conf_connect_absent",
    .procs = 2,
    .tune = tune,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
