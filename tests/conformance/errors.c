// SPDX-License-Identifier: MIT
/*
 * conf_errors - error codes, their descriptions, and refusing to open what
 * is not there.
 *
 * Provider-independent (always run):
 *  - augur_strerror() gives a distinct, non-empty text for every AUGUR_E*
 *    code (either sign), strerror()'s text for errno codes, and something
 *    non-NULL for anything else (0, unknown codes, INT_MIN, INT_MAX);
 *  - auv_ctx_open() of an unknown provider (by option or $AUGUR_TRANSPORT)
 *    returns -AUGUR_ENO_TRANSPORT, leaves *out NULL, and auv_last_error()
 *    names it and lists the providers there are;
 *  - out-of-range queue depths give -EINVAL;
 *  - ibv (when built in and implemented) with a device that does not exist
 *    returns -AUGUR_ENO_TRANSPORT listing the devices there are.
 * Then, for the provider under test (exit 77 if it is unavailable):
 *  - the context reports its provider, an address "<provider>:...", and
 *    capabilities at least the documented defaults;
 *  - bad arguments to the region calls give -EINVAL (shm: remote rights on
 *    caller memory give -EOPNOTSUPP), an impossible allocation fails
 *    cleanly;
 *  - idle polling returns 0, auv_wait() and auv_ep_accept() time out;
 *  - NULL is accepted by the close/dereg calls; contexts open and close
 *    repeatedly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void check_text(int code, const char *s)
{
	CHECKF(s != NULL, "augur_strerror(%d) is NULL", code);
	CHECKF(s[0] != '\0', "augur_strerror(%d) is empty", code);
}

static void strerror_checks(void)
{
	static const int errnos[] = {
	    EINVAL, ENOMEM, ECONNREFUSED, ETIMEDOUT,  EOPNOTSUPP,  EAGAIN,
	    EPERM,  ENOENT, EIO,	  ECONNRESET, EHOSTUNREACH};
	static const int odd[] = {
	    0,	    AUGUR_ERR_BASE, AUGUR_ERR_MAX, AUGUR_ERR_MAX + 1,
	    100000, -100000,	    INT_MAX,	   -INT_MAX,
	    INT_MIN};
	const char *texts[AUGUR_ERR_MAX - AUGUR_ERR_BASE];
	const char *unknown = augur_strerror(AUGUR_ERR_MAX + 17);
	unsigned int i;
	int c, k;

	th_phase("augur_strerror");
	check_text(AUGUR_ERR_MAX + 17, unknown);
	for (c = AUGUR_ERR_BASE + 1; c < AUGUR_ERR_MAX; c++) {
		const char *neg = augur_strerror(-c), *pos = augur_strerror(c);

		check_text(-c, neg);
		check_text(c, pos);
		CHECKF(!strcmp(neg, pos), "augur_strerror(%d) and (%d) differ",
		       -c, c);
		CHECKF(strcmp(neg, unknown),
		       "augur_strerror(-%d) is the text for unknown codes "
		       "('%s'): code %d is not explained",
		       c, neg, c);
		texts[c - AUGUR_ERR_BASE] = neg;
		for (k = AUGUR_ERR_BASE + 1; k < c; k++)
			CHECKF(strcmp(texts[k - AUGUR_ERR_BASE], neg),
			       "codes %d and %d have the same text '%s'", k, c,
			       neg);
	}
	for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		const char *s = augur_strerror(-errnos[i]);

		check_text(-errnos[i], s);
		CHECKF(!strcmp(s, strerror(errnos[i])),
		       "augur_strerror(-%d) is '%s', strerror says '%s'",
		       errnos[i], s, strerror(errnos[i]));
		CHECKF(!strcmp(augur_strerror(errnos[i]), s),
		       "augur_strerror(%d) and (-%d) differ", errnos[i],
		       errnos[i]);
	}
	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		check_text(odd[i], augur_strerror(odd[i]));
	CHECK(auv_last_error() != NULL);
}

/* Open must fail with @want, leave *out NULL and explain. */
static const char *open_fails(const struct auv_ctx_opts *o, int want,
			      const char *what)
{
	struct auv_ctx *ctx = (struct auv_ctx *)&ctx;
	int rc;

	rc = auv_ctx_open(o, &ctx);
	CHECKF(rc == want,
	       "%s: auv_ctx_open returned %d (%s), expected %d "
	       "(%s)",
	       what, rc, augur_strerror(rc), want, augur_strerror(want));
	CHECKF(ctx == NULL, "%s: failed auv_ctx_open left *out set", what);
	CHECKF(strlen(auv_last_error()) > 0 &&
		   strcmp(auv_last_error(), "no error detail"),
	       "%s: auv_last_error() explains nothing", what);
	return auv_last_error();
}

static void open_checks(struct th *t)
{
	struct auv_ctx_opts o;
	const char *msg, *devs;
	char dev[64];
	bool ibv_built;
	int i, rc;

	th_phase("opening what is not there");
	memset(&o, 0, sizeof(o));
	o.provider = "nosuch";
	msg = open_fails(&o, -AUGUR_ENO_TRANSPORT, "unknown provider");
	CHECKF(strstr(msg, "nosuch"),
	       "unknown provider: the detail '%s' "
	       "does not name it",
	       msg);
	CHECKF(strstr(msg, "shm"),
	       "unknown provider: the detail '%s' does "
	       "not list the providers there are (shm)",
	       msg);
	ibv_built = strstr(msg, "ibv") != NULL;
	th_log("unknown provider: %s", msg);

	memset(&o, 0, sizeof(o));
	CHECK(setenv("AUGUR_TRANSPORT", "nosuch2", 1) == 0);
	msg = open_fails(&o, -AUGUR_ENO_TRANSPORT, "$AUGUR_TRANSPORT=nosuch2");
	CHECKF(strstr(msg, "nosuch2"),
	       "$AUGUR_TRANSPORT: the detail '%s' "
	       "does not name it",
	       msg);
	CHECK(unsetenv("AUGUR_TRANSPORT") == 0);
	/* The option wins over the environment. */
	CHECK(setenv("AUGUR_TRANSPORT", "shm", 1) == 0);
	o.provider = "nosuch3";
	msg = open_fails(&o, -AUGUR_ENO_TRANSPORT, "option over environment");
	CHECK(strstr(msg, "nosuch3") != NULL);
	CHECK(unsetenv("AUGUR_TRANSPORT") == 0);

	th_phase("bad options");
	memset(&o, 0, sizeof(o));
	o.provider = t->provider;
	o.sq_depth = 1;
	open_fails(&o, -EINVAL, "sq_depth 1");
	o.sq_depth = 0;
	o.cq_depth = 8;
	open_fails(&o, -EINVAL, "cq_depth 8");
	o.cq_depth = 0;
	o.rq_depth = 1u << 20;
	open_fails(&o, -EINVAL, "rq_depth 2^20");
	CHECK_RC(auv_ctx_open(&o, NULL), -EINVAL);

	th_phase("ibv with a device that does not exist");
	if (!ibv_built) {
		th_note("ibv is not built in: no device check");
		return;
	}
	memset(&o, 0, sizeof(o));
	o.provider = "ibv";
	o.device = "nosuch_dev0";
	{
		struct auv_ctx *ctx = NULL;

		rc = auv_ctx_open(&o, &ctx);
		if (rc == -EOPNOTSUPP) {
			th_note("ibv provider not implemented (%s): no device "
				"check",
				auv_last_error());
			return;
		}
		if (rc == 0)
			auv_ctx_close(ctx);
	}
	msg = open_fails(&o, -AUGUR_ENO_TRANSPORT, "ibv device nosuch_dev0");
	th_log("ibv nosuch_dev0: %s", msg);
	/* Inside the SoftRoCE guest the real devices are known: the detail
	 * must name the missing one and list them. */
	devs = getenv("AUGUR_TEST_DEVICES");
	if (!devs || !*devs)
		return;
	CHECKF(strstr(msg, "nosuch_dev0"),
	       "the detail '%s' does not name the "
	       "missing device",
	       msg);
	for (i = 0; devs && *devs; i++) {
		size_t n = strcspn(devs, ",");

		if (n && n < sizeof(dev)) {
			memcpy(dev, devs, n);
			dev[n] = '\0';
			CHECKF(strstr(msg, dev),
			       "the detail '%s' does not list device %s", msg,
			       dev);
		}
		devs += n + (devs[n] == ',');
	}
}

static void provider_checks(struct th *t)
{
	struct auv_ctx *ctx, *ctx2;
	struct auv_ctx_opts o = t->opts;
	struct auv_caps caps;
	struct auv_mr *mr = (struct auv_mr *)&mr;
	struct auv_ep *ep;
	struct auv_wc wc[4];
	size_t plen = sizeof(plen);
	char buf[64], prefix[16];
	uint64_t start;
	void *mem;
	int rc, i;

	th_phase("opening %s", t->provider);
	rc = auv_ctx_open(&o, &ctx);
	if (th_unavailable(rc))
		th_skip("provider %s unavailable: %s (the provider-independent "
			"checks passed)",
			t->provider, auv_last_error());
	CHECKF(rc == 0, "auv_ctx_open(%s): %d (%s)", t->provider, rc,
	       augur_strerror(rc));
	CHECK(ctx != NULL);
	CHECK(!strcmp(auv_ctx_provider(ctx), t->provider));
	snprintf(prefix, sizeof(prefix), "%s:", t->provider);
	CHECKF(!strncmp(auv_ctx_addr(ctx), prefix, strlen(prefix)),
	       "address '%s' does not start with '%s'", auv_ctx_addr(ctx),
	       prefix);
	CHECK(strlen(auv_ctx_addr(ctx)) < AUV_ADDR_MAX);

	CHECK_RC(auv_ctx_caps(ctx, &caps), 0);
	th_log("caps: max_inline %u max_msg %u max_send %u sq %u rq %u cq %u "
	       "device %s",
	       caps.max_inline, caps.max_msg, caps.max_send, caps.sq_depth,
	       caps.rq_depth, caps.cq_depth, caps.device);
	CHECKF(caps.max_inline <= 256, "default max_inline %u > 256",
	       caps.max_inline);
	CHECK(caps.max_msg >= 4096);
	CHECK(caps.max_send >= 64 && caps.max_send <= caps.max_msg);
	CHECKF(caps.sq_depth >= 1024, "default sq_depth is 1024, caps say %u",
	       caps.sq_depth);
	CHECKF(caps.rq_depth >= 256, "default rq_depth is 256, caps say %u",
	       caps.rq_depth);
	CHECKF(caps.cq_depth >= 4096, "default cq_depth is 4096, caps say %u",
	       caps.cq_depth);
	CHECK(caps.device[0] != '\0' &&
	      memchr(caps.device, '\0', sizeof(caps.device)));
	if (!strcmp(t->provider, "shm") || !strcmp(t->provider, "tcp"))
		CHECK(!strcmp(caps.device, t->provider));

	th_phase("region arguments");
	CHECK_RC(auv_mr_alloc(ctx, 0, AUV_ACCESS_ALL, &mr), -EINVAL);
	CHECK_RC(auv_mr_alloc(ctx, 4096, 1u << 8, &mr), -EINVAL);
	CHECK_RC(auv_mr_alloc(ctx, 4096, AUV_ACCESS_ALL, NULL), -EINVAL);
	CHECK_RC(auv_mr_reg(ctx, NULL, 4096, AUV_ACCESS_LOCAL_WRITE, &mr),
		 -EINVAL);
	CHECK_RC(auv_mr_reg(ctx, buf, 0, AUV_ACCESS_LOCAL_WRITE, &mr), -EINVAL);
	CHECK(posix_memalign(&mem, 4096, 8192) == 0);
	if (!strcmp(t->provider, "shm")) {
		rc = auv_mr_reg(
		    ctx, mem, 8192,
		    AUV_ACCESS_LOCAL_WRITE | AUV_ACCESS_REMOTE_WRITE, &mr);
		CHECKF(rc == -EOPNOTSUPP,
		       "shm: auv_mr_reg with a remote right "
		       "returned %d (%s), expected "
		       "-EOPNOTSUPP",
		       rc, augur_strerror(rc));
	}
	CHECK_RC(auv_mr_reg(ctx, mem, 8192, AUV_ACCESS_LOCAL_WRITE, &mr), 0);
	CHECK(auv_mr_addr(mr) == mem && auv_mr_len(mr) == 8192);
	CHECK_RC(auv_mr_dereg(mr), 0);
	free(mem);
	rc = auv_mr_alloc(ctx, 1ull << 46, AUV_ACCESS_ALL, &mr);
	CHECKF(rc < 0, "allocating 64 TiB succeeded?");
	th_log("64 TiB region: %d (%s): %s", rc, augur_strerror(rc),
	       auv_last_error());
	CHECK_RC(auv_mr_dereg(NULL), 0);

	th_phase("idle context");
	CHECK_RC(auv_poll(ctx, wc, 4), 0);
	CHECK_RC(auv_poll(ctx, wc, 0), 0);
	CHECK_RC(auv_poll(ctx, wc, -1), -EINVAL);
	start = th_now_ns();
	rc = auv_wait(ctx, 0);
	CHECKF(rc == 0 || rc == 1, "auv_wait(0): %d (%s)", rc,
	       augur_strerror(rc));
	rc = auv_wait(ctx, 100);
	CHECKF(rc == 0 || rc == 1, "auv_wait(100): %d (%s)", rc,
	       augur_strerror(rc));
	CHECKF(th_elapsed_s(start) < 5.0,
	       "auv_wait(0) + auv_wait(100) took "
	       "%.1f s",
	       th_elapsed_s(start));
	CHECK_RC(auv_ep_accept(ctx, 0, &ep, buf, &plen), -ETIMEDOUT);
	CHECK_EQ(plen, 0);
	CHECK_RC(auv_ep_accept(ctx, 0, NULL, NULL, NULL), -EINVAL);
	auv_ep_close(NULL);
	auv_ctx_close(NULL);

	th_phase("two contexts at once, open/close cycles");
	CHECK_OK(auv_ctx_open(&o, &ctx2));
	CHECKF(strcmp(auv_ctx_addr(ctx), auv_ctx_addr(ctx2)),
	       "two contexts share the address %s", auv_ctx_addr(ctx));
	auv_ctx_close(ctx2);
	for (i = 0; i < 20; i++) {
		CHECK_OK(auv_ctx_open(&o, &ctx2));
		CHECK_OK(auv_mr_alloc(ctx2, 65536, AUV_ACCESS_ALL, &mr));
		if (i & 1)
			CHECK_OK(auv_mr_dereg(mr));
		auv_ctx_close(ctx2); /* takes the region with it if left */
	}
	auv_ctx_close(ctx);
}

static int run(struct th *t)
{
	strerror_checks();
	open_checks(t);
	provider_checks(t);
	return TH_PASS;
}

static const struct th_test test = {
    .name = "conf_errors",
    .procs = 1,
    .flags = TH_NO_CTX,
    .run = run,
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, &test);
}
