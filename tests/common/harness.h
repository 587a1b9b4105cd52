/* SPDX-License-Identifier: MIT */
/*
 * tests/common/harness.h - the multi-process harness of the conformance
 * tests.  Test code only; uses nothing but the public API (augur/verbs.h).
 *
 * A test is one program:
 *
 *	static int run(struct th *t) { ... return TH_PASS; }
 *	static const struct th_test test = { .name = "conf_x", .procs = 2,
 *					     .run = run };
 *	int main(int argc, char **argv) { return th_main(argc, argv, &test); }
 *
 * th_main() parses "--provider NAME" (default shm), "--procs N",
 * "--timeout SECONDS" and "--verbose", forks N processes (ranks 0..N-1), and
 * in each opens an auv_ctx of that provider, exchanges the contexts'
 * addresses over an out-of-band channel (a socketpair between every two
 * ranks, made before fork), and calls test->run().  The parent waits for all
 * ranks under an overall time limit, kills the others as soon as one fails,
 * and exits 0 (pass), 1 (fail) or 77 (skip).
 *
 * Exit codes of a rank: TH_PASS, TH_SKIP, TH_FAIL, or TH_COLLATERAL when a
 * peer closed its out-of-band channel while this rank waited on it (the
 * peer's own exit code then says what happened).
 *
 * For ibv, rank 0 (the usual target) gets the first entry of
 * $AUGUR_TEST_DEVICES / $AUGUR_TEST_ADDRS (comma-separated) as opts.device /
 * opts.addr, every other rank the second (or the first, if there is one).
 *
 * Failure: every CHECK macro prints file:line, what failed, the code's
 * augur_strerror() text and auv_last_error(), then exits TH_FAIL.  Nothing
 * waits without a bound: completion polling fails after t->poll_timeout_ms,
 * every rank has an alarm() a second shorter than the parent's limit that
 * prints what the rank was doing (th_phase()).
 *
 * Not thread-safe: one thread per rank.
 */
#ifndef AUGUR_TESTS_HARNESS_H
#define AUGUR_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <augur/error.h>
#include <augur/verbs.h>

#define TH_MAX_PROCS 16
#define TH_MAX_MRS 16

enum th_exit {
	TH_PASS = 0,
	TH_FAIL = 1,
	TH_COLLATERAL = 3,
	TH_SKIP = 77,
};

enum th_test_flags {
	/* Do not open a context per rank: the test opens its own (from
	 * t->opts) and t->ctx stays NULL; no address exchange either. */
	TH_NO_CTX = 1 << 0,
};

struct th;

/**
 * struct th_test - one test program.
 * @name:      printed in every message.
 * @procs:     default number of ranks (--procs overrides).
 * @min_procs: fewest ranks the test can run with (default @procs).
 * @timeout_s: overall limit on shm (default 45); ibv gets four times as
 *             much; $AUGUR_TEST_TIMEOUT or --timeout override.
 * @flags:     enum th_test_flags.
 * @tune:      optional: adjust a rank's context options before opening.
 * @run:       the body, run in every rank; returns TH_PASS or TH_SKIP, and
 *             fails through the CHECK macros (or by returning TH_FAIL).
 */
struct th_test {
	const char *name;
	int procs;
	int min_procs;
	int timeout_s;
	unsigned int flags;
	void (*tune)(struct th *t, struct auv_ctx_opts *opts);
	int (*run)(struct th *t);
};

/**
 * struct th - one rank's view.
 * @rank, @nprocs: who we are.
 * @provider: the provider under test ("shm", "ibv").
 * @ibv:      true when @provider is "ibv" (slow emulated guest: scale down).
 * @opts:     the options @ctx was opened with (a template for more
 *            contexts; strings stay valid for the whole run).
 * @ctx/@caps: this rank's context and its capabilities.
 * @addr:     every rank's auv_ctx_addr().
 * @ep:       endpoints made by th_connect()/th_connect_star(), by peer rank.
 * @mr:       regions a th_serve() target works on, by index.
 * @poll_timeout_ms: the longest th_poll_*() waits for progress.
 * @scale:    $AUGUR_TEST_SCALE (default 1); see th_scaled().
 * @seed:     $AUGUR_TEST_SEED (default fixed), for th_rand().
 * @netns:    this rank joined a network namespace named by
 *            $AUGUR_TEST_NETNS ("nsA=ipA,nsB=ipB": rank 0 -> A, others -> B)
 *            and listens on that namespace's address.
 */
struct th {
	const struct th_test *test;
	int rank;
	int nprocs;
	const char *provider;
	bool ibv;
	bool netns; /* joined a namespace from $AUGUR_TEST_NETNS */
	struct auv_ctx_opts opts;
	struct auv_ctx *ctx;
	struct auv_caps caps;
	char addr[TH_MAX_PROCS][AUV_ADDR_MAX];
	struct auv_ep *ep[TH_MAX_PROCS];
	struct auv_mr *mr[TH_MAX_MRS];
	int poll_timeout_ms;
	int timeout_s;
	double scale;
	uint64_t seed;
	uint64_t rng;
	int oob[TH_MAX_PROCS];
	struct th_shared *sh;
	unsigned long calls; /* th_call()s made, for messages */
};

/* Run @test; returns the process exit status (TH_PASS/TH_FAIL/TH_SKIP). */
int th_main(int argc, char **argv, const struct th_test *test);

/* --- Failing, skipping, reporting ---------------------------------------- */

void th_fail_at(const char *file, int line, long long code, const char *fmt,
		...) __attribute__((noreturn, format(printf, 4, 5)));
/* Print "SKIP: ..." and end this rank with TH_SKIP (the others follow). */
void th_skip(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));
/* Progress message, printed with --verbose or $AUGUR_TEST_VERBOSE=1. */
void th_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Always printed (use sparingly: measurements, notes). */
void th_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Say what this rank is doing now; printed when it fails or times out. */
void th_phase(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			th_fail_at(__FILE__, __LINE__, 0, "CHECK(%s) failed",  \
				   #cond);                                     \
	} while (0)

#define CHECKF(cond, ...)                                                      \
	do {                                                                   \
		if (!(cond))                                                   \
			th_fail_at(__FILE__, __LINE__, 0, __VA_ARGS__);        \
	} while (0)

/* Evaluate @expr (an augur call); fail when negative; yields the value. */
#define CHECK_OK(expr)                                                         \
	({                                                                     \
		long long th_rc_ = (expr);                                     \
		if (th_rc_ < 0)                                                \
			th_fail_at(__FILE__, __LINE__, th_rc_,                 \
				   "%s returned %lld", #expr, th_rc_);         \
		th_rc_;                                                        \
	})

/* @expr must return exactly @want (a code such as -AUGUR_EREMOTE_ACCESS). */
#define CHECK_RC(expr, want)                                                   \
	do {                                                                   \
		long long th_rc_ = (expr), th_want_ = (want);                  \
		if (th_rc_ != th_want_)                                        \
			th_fail_at(__FILE__, __LINE__, th_rc_,                 \
				   "%s returned %lld (%s), expected %lld "     \
				   "(%s)",                                     \
				   #expr, th_rc_, augur_strerror(th_rc_),      \
				   th_want_, augur_strerror(th_want_));        \
	} while (0)

#define CHECK_EQ(a, b)                                                         \
	do {                                                                   \
		unsigned long long th_a_ = (a), th_b_ = (b);                   \
		if (th_a_ != th_b_)                                            \
			th_fail_at(__FILE__, __LINE__, 0,                      \
				   "CHECK_EQ(%s, %s) failed: %llu (0x%llx) "   \
				   "!= %llu (0x%llx)",                         \
				   #a, #b, th_a_, th_a_, th_b_, th_b_);        \
	} while (0)

/* --- Time, randomness, scale, data patterns --------------------------------
 */

uint64_t th_now_ns(void);
static inline double th_elapsed_s(uint64_t since_ns)
{
	return (double)(th_now_ns() - since_ns) / 1e9;
}
/* xorshift-style PRNG seeded from t->seed and the rank. */
uint64_t th_rand(struct th *t);
/* @n_shm scaled for the provider (ibv: /10) and $AUGUR_TEST_SCALE; >= 1. */
long th_scaled(const struct th *t, long n_shm);

/* Byte @i of the pattern named @seed (distinct seeds, distinct data). */
uint8_t th_pattern_byte(uint64_t seed, uint64_t i);
void th_fill(void *buf, size_t len, uint64_t seed);
/* Number of bytes of @buf that differ from the pattern; prints the first
 * few mismatches (prefixed by @what) when there are any. */
size_t th_verify(const void *buf, size_t len, uint64_t seed, const char *what);
/* Same for a buffer that must hold @byte everywhere. */
size_t th_verify_byte(const void *buf, size_t len, uint8_t byte,
		      const char *what);

/* --- Out-of-band channel (plain sockets, not the transport) -------------- */

void th_send(struct th *t, int peer, const void *buf, size_t len);
/* Receive exactly @len bytes; a closed channel ends this rank with
 * TH_COLLATERAL. */
void th_recv(struct th *t, int peer, void *buf, size_t len);
void th_send_u64(struct th *t, int peer, uint64_t v);
uint64_t th_recv_u64(struct th *t, int peer);
/* All ranks (that are alive) meet; rank 0 coordinates. */
void th_barrier(struct th *t);
/* Wait until @peer has exited (its channel reads end-of-file). */
void th_wait_exit(struct th *t, int peer);
/* SIGKILL @peer; the parent counts its death as expected.  Do not use its
 * channel afterwards. */
void th_kill(struct th *t, int peer);
pid_t th_pid(const struct th *t, int rank);

/* --- Connections ---------------------------------------------------------- */

/* Connect this rank with @peer (both call it): the lower rank accepts, the
 * other connects with its rank as private data.  Sets and returns
 * t->ep[peer]. */
struct auv_ep *th_connect(struct th *t, int peer);
/* Every rank calls it: rank 0 accepts nprocs-1 connections (in any order,
 * t->ep[] filled by the connector's rank), the others connect to rank 0. */
void th_connect_star(struct th *t);
/* Close t->ep[peer] (if any) and connect again (both call it). */
struct auv_ep *th_reconnect(struct th *t, int peer);

/* --- Completions -----------------------------------------------------------
 */

/* Reap at least one and at most @max completions; returns 0 when
 * @timeout_ms passes first.  Backs off with auv_wait() when idle. */
int th_poll_wait(struct th *t, struct auv_wc *wc, int max, int timeout_ms);
/* Reap exactly @n completions, at most @batch per auv_poll(); fails when
 * t->poll_timeout_ms passes without progress. */
void th_poll_n(struct th *t, struct auv_wc *wc, int n, int batch);
/* Post @op (forced SIGNALED) on @ep and reap its completion, which must be
 * the next one on the context; checks ep, cookie (and opcode on success).
 * Returns the completion status (0 or a negative code); *wc_out gets the
 * completion when not NULL. */
int th_do(struct th *t, struct auv_ep *ep, const struct auv_op *op,
	  struct auv_wc *wc_out);
/* Fill an operation on a remote region described by @d at offset @off. */
struct auv_op th_op(uint8_t opcode, void *local, uint32_t len,
		    struct auv_mr *local_mr, const struct auv_mr_desc *d,
		    uint64_t off, uint64_t cookie);

/* --- A tiny target: serve memory commands from a client ------------------- */

enum th_cmd_op {
	TH_CMD_DONE = 1,    /* end th_serve() */
	TH_CMD_FILL,	    /* mr[mr][off, off+len) = pattern(arg) */
	TH_CMD_VERIFY,	    /* reply: bytes differing from pattern(arg) */
	TH_CMD_MEMSET,	    /* mr[mr][off, off+len) = (uint8_t)arg */
	TH_CMD_VERIFY_BYTE, /* reply: bytes differing from (uint8_t)arg */
	TH_CMD_RECONNECT,   /* close the endpoint to the caller, accept anew */
	TH_CMD_DESC,	    /* reply: the auv_mr_desc of mr[mr] (in @desc) */
	TH_CMD_LOAD64,	    /* reply: the 64-bit word at mr[mr] + off */
	TH_CMD_USER,	    /* passed to the server's user function */
};

struct th_cmd {
	uint32_t op;
	uint32_t mr;
	uint64_t off;
	uint64_t len;
	uint64_t arg;
};

typedef uint64_t (*th_user_fn)(struct th *t, int peer, const struct th_cmd *c);

/* Serve commands from @peer on t->mr[] until TH_CMD_DONE. */
void th_serve(struct th *t, int peer, th_user_fn user);
/* Client side: send one command and return the reply. */
uint64_t th_call(struct th *t, int peer, uint32_t op, uint32_t mr, uint64_t off,
		 uint64_t len, uint64_t arg);
/* Client side of TH_CMD_RECONNECT: returns the new t->ep[peer]. */
struct auv_ep *th_call_reconnect(struct th *t, int peer);
/* Client side of TH_CMD_DESC. */
void th_call_desc(struct th *t, int peer, uint32_t mr,
		  struct auv_mr_desc *desc);

/* Does @code equal AUGUR_ENO_TRANSPORT or -EOPNOTSUPP (either sign)? */
bool th_unavailable(int code);

#endif /* AUGUR_TESTS_HARNESS_H */
