// SPDX-License-Identifier: MIT
/*
 * planner_test - the planner (lib/planner.c) driven by synthetic intent
 * streams and a fake clock: when an intent becomes actionable and when it
 * ends (action timing against the worker's measured clock rate), which key
 * relocates, which replicates, and when a replica is dropped.  No node, no
 * transport, no real time: every expected clock below is computed from the
 * fake time fed in, so the test is exact and cannot flake.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <augur/augur.h>

#include "planner.h"

static int failures;

#define CHECK(c, ...)                                                          \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__,          \
				__LINE__, #c);                                 \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			failures++;                                            \
		}                                                              \
	} while (0)

#define MS 1000000ull

/* Transitions seen through the callback, with the clock they came at. */
struct ev {
	uint32_t key;
	int on;
	int64_t clock;
};

struct rec {
	struct ev ev[256];
	int n;
	int64_t clock; /* the driving worker's clock, set by the test */
};

static void record(void *ctx, uint32_t key, int on)
{
	struct rec *r = ctx;

	if (r->n < 256)
		r->ev[r->n++] = (struct ev){ key, on, r->clock };
}

static void intent(struct aug_planner *p, uint32_t wi, uint32_t key,
		   int64_t start, int64_t end, uint64_t now)
{
	struct aug_intent e = { key, AUG_INTENT_KEY, start, end };

	aug_planner_feed(p, wi, &e, 1, now);
}

static void clock_to(struct aug_planner *p, uint32_t wi, int64_t c,
		     uint64_t now)
{
	struct aug_intent e = { 0, AUG_INTENT_CLOCK, c, 0 };

	aug_planner_feed(p, wi, &e, 1, now);
}

static const struct ev *find(const struct rec *r, uint32_t key, int on)
{
	int i;

	for (i = 0; i < r->n; i++)
		if (r->ev[i].key == key && r->ev[i].on == on)
			return &r->ev[i];
	return NULL;
}

static int count(const struct rec *r, uint32_t key, int on)
{
	int i, c = 0;

	for (i = 0; i < r->n; i++)
		c += r->ev[i].key == key && r->ev[i].on == on;
	return c;
}

/*
 * One worker at a steady 1000 clocks/s (one clock per fake ms), lead 2 ms:
 * lead = 1000 x 0.002 + 1 = 3 clocks.  An intent [10, 12) becomes
 * actionable at clock 7 and ends at clock 12.
 */
static void test_timing(void)
{
	struct aug_planner p;
	struct rec r = { 0 };
	int64_t c;

	CHECK(aug_planner_init(&p, 1, 100, 0.002) == 0, "init");
	clock_to(&p, 0, 0, 1 * MS);
	intent(&p, 0, 5, 10, 12, 1 * MS);
	intent(&p, 0, 6, 40, 41, 1 * MS);
	for (c = 0; c <= 20; c++) {
		r.clock = c;
		clock_to(&p, 0, c, (uint64_t)(c + 1) * MS);
		aug_planner_step(&p, 0, record, &r);
	}
	CHECK(aug_planner_lead(&p, 0) == 3, "lead %lld clocks, want 3",
	      (long long)aug_planner_lead(&p, 0));
	CHECK(find(&r, 5, 1) && find(&r, 5, 1)->clock == 7,
	      "key 5 wanted at clock %lld, want 7",
	      find(&r, 5, 1) ? (long long)find(&r, 5, 1)->clock : -1LL);
	CHECK(find(&r, 5, 0) && find(&r, 5, 0)->clock == 12,
	      "key 5 released at clock %lld, want 12",
	      find(&r, 5, 0) ? (long long)find(&r, 5, 0)->clock : -1LL);
	CHECK(!find(&r, 6, 1), "key 6 [40,41) acted on by clock 20");
	CHECK(r.n == 2, "%d transitions, want 2", r.n);
	CHECK(p.want_cnt[5] == 0, "want count of key 5 left at %u",
	      p.want_cnt[5]);
	aug_planner_free(&p);
}

/* A worker 10x faster gets a 10x longer lead in clocks (same time ahead). */
static void test_rate_scales_lead(void)
{
	struct aug_planner p;
	struct rec r = { 0 };
	int64_t c;
	uint64_t t = MS;

	CHECK(aug_planner_init(&p, 1, 100, 0.002) == 0, "init");
	/* 10 clocks per ms = 10000 clocks/s: lead 21 */
	clock_to(&p, 0, 0, t);
	intent(&p, 0, 9, 100, 110, t);
	for (c = 10; c <= 200; c += 10) {
		t += MS;
		r.clock = c;
		clock_to(&p, 0, c, t);
		aug_planner_step(&p, 0, record, &r);
	}
	CHECK(aug_planner_lead(&p, 0) == 21, "lead %lld, want 21",
	      (long long)aug_planner_lead(&p, 0));
	/* actionable once clock + 21 >= 100: the first step at clock >= 79 */
	CHECK(find(&r, 9, 1) && find(&r, 9, 1)->clock == 80,
	      "key 9 wanted at clock %lld, want 80",
	      find(&r, 9, 1) ? (long long)find(&r, 9, 1)->clock : -1LL);
	CHECK(find(&r, 9, 0) && find(&r, 9, 0)->clock == 110,
	      "key 9 released at %lld, want 110",
	      find(&r, 9, 0) ? (long long)find(&r, 9, 0)->clock : -1LL);

	/* The rate is an EWMA: after slowing to 1 clock/ms it decays
	 * towards lead 3, monotonically. */
	{
		int64_t prev = aug_planner_lead(&p, 0), l;
		int i;

		for (i = 0; i < 40; i++) {
			t += MS;
			c++;
			clock_to(&p, 0, c, t);
			l = aug_planner_lead(&p, 0);
			CHECK(l <= prev, "lead grew while slowing: %lld > %lld",
			      (long long)l, (long long)prev);
			prev = l;
		}
		CHECK(prev == 3, "lead after slowing down %lld, want 3",
		      (long long)prev);
	}
	/* A repeated clock (no advance) changes neither clock nor rate. */
	{
		int64_t l = aug_planner_lead(&p, 0);

		clock_to(&p, 0, c, t + 50 * MS);
		t += 51 * MS;
		c++;
		clock_to(&p, 0, c, t);
		CHECK(aug_planner_lead(&p, 0) <= l, "a stall raised the lead");
	}
	aug_planner_free(&p);
}

/* Two workers of one node want one key over overlapping intervals: the
 * node wants it once (first start) and lets go once (last end).  That
 * release is what drops a replica. */
static void test_overlap_two_workers(void)
{
	struct aug_planner p;
	struct rec r = { 0 };
	int64_t c;

	CHECK(aug_planner_init(&p, 2, 100, 0.002) == 0, "init");
	clock_to(&p, 0, 0, MS);
	clock_to(&p, 1, 0, MS);
	intent(&p, 0, 3, 10, 20, MS);
	intent(&p, 0, 3, 15, 18, MS); /* nested, same worker */
	intent(&p, 1, 3, 12, 30, MS);
	for (c = 0; c <= 40; c++) {
		r.clock = c;
		clock_to(&p, 0, c, (uint64_t)(c + 1) * MS);
		clock_to(&p, 1, c, (uint64_t)(c + 1) * MS);
		aug_planner_step(&p, 0, record, &r);
		aug_planner_step(&p, 1, record, &r);
		if (c == 25)
			CHECK(p.want_cnt[3] == 1, "at 25 want count %u, want 1",
			      p.want_cnt[3]);
	}
	CHECK(count(&r, 3, 1) == 1 && count(&r, 3, 0) == 1,
	      "key 3: %d on / %d off transitions, want 1/1", count(&r, 3, 1),
	      count(&r, 3, 0));
	CHECK(find(&r, 3, 1) && find(&r, 3, 1)->clock == 7,
	      "key 3 wanted at %lld, want 7",
	      find(&r, 3, 1) ? (long long)find(&r, 3, 1)->clock : -1LL);
	CHECK(find(&r, 3, 0) && find(&r, 3, 0)->clock == 30,
	      "key 3 released at %lld, want 30 (the last end)",
	      find(&r, 3, 0) ? (long long)find(&r, 3, 0)->clock : -1LL);
	aug_planner_free(&p);
}

/* Intents that are over before they become actionable, and bad ones. */
static void test_expired_and_rejected(void)
{
	struct aug_planner p;
	struct rec r = { 0 };

	CHECK(aug_planner_init(&p, 1, 10, 0.002) == 0, "init");
	clock_to(&p, 0, 0, MS);
	intent(&p, 0, 1, 5, 8, MS);
	intent(&p, 0, 10, 5, 8, MS); /* key out of range */
	intent(&p, 0, 2, 8, 8, MS);  /* empty */
	intent(&p, 0, 2, 9, 3, MS);  /* backwards */
	CHECK(p.rejected == 3 && p.intents == 1, "rejected %llu accepted %llu",
	      (unsigned long long)p.rejected, (unsigned long long)p.intents);
	r.clock = 50;
	clock_to(&p, 0, 50, 2 * MS); /* the worker jumped past it */
	aug_planner_step(&p, 0, record, &r);
	CHECK(r.n == 0, "%d transitions for an expired intent", r.n);
	CHECK(p.expired == 1, "expired %llu, want 1",
	      (unsigned long long)p.expired);
	aug_planner_free(&p);
}

static void test_decisions(void)
{
	struct aug_decision d;
	const int A = AUGUR_MODE_ADAPTIVE;

	/* owner 0; bits are node ranks */
	d = aug_decide(A, 0, 0, 0);
	CHECK(d.act == AUG_ACT_NONE, "nobody wants it");
	d = aug_decide(A, 0, 1u << 0, 0);
	CHECK(d.act == AUG_ACT_NONE, "only the owner wants it");
	d = aug_decide(A, 0, 1u << 2, 0);
	CHECK(d.act == AUG_ACT_RELOCATE && d.to == 2, "one other: relocate");
	d = aug_decide(A, 0, (1u << 2) | (1u << 0), 0);
	CHECK(d.act == AUG_ACT_REPLICATE && d.grant == 1u << 2,
	      "owner and one other: replicate to the other");
	d = aug_decide(A, 0, (1u << 1) | (1u << 3), 0);
	CHECK(d.act == AUG_ACT_REPLICATE && d.grant == ((1u << 1) | (1u << 3)),
	      "two others: replicate to both");
	d = aug_decide(A, 0, (1u << 1) | (1u << 3), 1u << 1);
	CHECK(d.act == AUG_ACT_REPLICATE && d.grant == 1u << 3,
	      "no second grant to a node that has a replica");
	d = aug_decide(A, 0, 1u << 1, 1u << 1);
	CHECK(d.act == AUG_ACT_NONE,
	      "one other that already has a replica: no relocation while "
	      "replicas are out");
	d = aug_decide(A, 5, 1ull << 63, 0);
	CHECK(d.act == AUG_ACT_RELOCATE && d.to == 63, "rank 63");

	d = aug_decide(AUGUR_MODE_STATIC, 0, 1u << 2, 0);
	CHECK(d.act == AUG_ACT_NONE, "static never acts");
	d = aug_decide(AUGUR_MODE_RELOCATE, 0, (1u << 1) | (1u << 2), 0);
	CHECK(d.act == AUG_ACT_NONE, "relocate-only: several wanters, no act");
	d = aug_decide(AUGUR_MODE_RELOCATE, 0, 1u << 1, 0);
	CHECK(d.act == AUG_ACT_RELOCATE && d.to == 1, "relocate-only: one");
	d = aug_decide(AUGUR_MODE_REPLICATE, 0, 1u << 1, 0);
	CHECK(d.act == AUG_ACT_REPLICATE && d.grant == 1u << 1,
	      "replicate-only: one other gets a replica");
}

/*
 * Three nodes, one key (home and first owner: node 0), each node with its
 * own planner at 1000 clocks/s (lead 3).  Node 1 uses the key in [10, 20),
 * node 2 in [15, 25).  The owner's decisions, replayed as the protocol
 * applies them:
 *   clock 7:  node 1 wants it, only node 1 -> relocate 0 -> 1;
 *   clock 12: node 2 wants it, owner 1 wants it too -> replica at node 2;
 *   clock 20: node 1 lets go; node 2 holds a replica -> nothing moves;
 *   clock 25: node 2 lets go -> its replica is dropped.
 */
struct world {
	int owner;
	uint64_t wantset, repset;
	int relocated_at[3], replica_at[3], dropped_at[3];
	int64_t clock;
};

struct node_ctx {
	struct world *w;
	int rank;
};

static void world_decide(struct world *w)
{
	struct aug_decision d =
	    aug_decide(AUGUR_MODE_ADAPTIVE, w->owner, w->wantset, w->repset);

	if (d.act == AUG_ACT_RELOCATE) {
		w->owner = d.to;
		w->relocated_at[d.to] = (int)w->clock;
	} else if (d.act == AUG_ACT_REPLICATE) {
		uint64_t g;

		w->repset |= d.grant;
		for (g = d.grant; g; g &= g - 1)
			w->replica_at[__builtin_ctzll(g)] = (int)w->clock;
	}
}

static void node_want(void *ctx, uint32_t key, int on)
{
	struct node_ctx *nc = ctx;
	struct world *w = nc->w;
	uint64_t me = 1ull << nc->rank;

	(void)key;
	if (on) {
		w->wantset |= me;
	} else {
		w->wantset &= ~me;
		if (w->repset & me) { /* DROPPING -> DROP to the owner */
			w->repset &= ~me;
			w->dropped_at[nc->rank] = (int)w->clock;
		}
	}
	world_decide(w);
}

static void test_scenario(void)
{
	struct aug_planner p[3];
	struct world w = { 0 };
	struct node_ctx nc[3];
	int64_t c;
	int i;

	memset(w.relocated_at, -1, sizeof(w.relocated_at));
	memset(w.replica_at, -1, sizeof(w.replica_at));
	memset(w.dropped_at, -1, sizeof(w.dropped_at));
	for (i = 0; i < 3; i++) {
		CHECK(aug_planner_init(&p[i], 1, 4, 0.002) == 0, "init");
		nc[i] = (struct node_ctx){ &w, i };
		clock_to(&p[i], 0, 0, MS);
	}
	intent(&p[1], 0, 2, 10, 20, MS);
	intent(&p[2], 0, 2, 15, 25, MS);
	for (c = 0; c <= 30; c++) {
		w.clock = c;
		for (i = 0; i < 3; i++) {
			clock_to(&p[i], 0, c, (uint64_t)(c + 1) * MS);
			aug_planner_step(&p[i], 0, node_want, &nc[i]);
		}
	}
	CHECK(w.relocated_at[1] == 7, "relocated to node 1 at %d, want 7",
	      w.relocated_at[1]);
	CHECK(w.relocated_at[2] == -1 && w.relocated_at[0] == -1,
	      "unexpected relocation (to 0 at %d, to 2 at %d)",
	      w.relocated_at[0], w.relocated_at[2]);
	CHECK(w.replica_at[2] == 12, "replica at node 2 at %d, want 12",
	      w.replica_at[2]);
	CHECK(w.replica_at[1] == -1, "node 1 (the owner) got a replica");
	CHECK(w.dropped_at[2] == 25, "node 2's replica dropped at %d, want 25",
	      w.dropped_at[2]);
	CHECK(w.owner == 1 && w.wantset == 0 && w.repset == 0,
	      "end: owner %d wantset %llx repset %llx", w.owner,
	      (unsigned long long)w.wantset, (unsigned long long)w.repset);
	for (i = 0; i < 3; i++)
		aug_planner_free(&p[i]);
}

/* Many intents on one hot key (a popular item) do not overflow the
 * node's count and leave it at zero. */
static void test_hot_key(void)
{
	struct aug_planner p;
	struct rec r = { 0 };
	int64_t i;

	CHECK(aug_planner_init(&p, 1, 2, 0.002) == 0, "init");
	clock_to(&p, 0, 0, MS);
	for (i = 0; i < 100000; i++)
		intent(&p, 0, 1, 1, 2 + i % 7, MS);
	r.clock = 1;
	clock_to(&p, 0, 1, 2 * MS);
	aug_planner_step(&p, 0, record, &r);
	CHECK(p.want_cnt[1] == 100000, "count %u, want 100000", p.want_cnt[1]);
	r.clock = 10;
	clock_to(&p, 0, 10, 3 * MS);
	aug_planner_step(&p, 0, record, &r);
	CHECK(p.want_cnt[1] == 0 && count(&r, 1, 1) == 1 && count(&r, 1, 0) == 1,
	      "count %u, %d on, %d off", p.want_cnt[1], count(&r, 1, 1),
	      count(&r, 1, 0));
	aug_planner_free(&p);
}

/*
 * Uses (default act_at 2): a key with one foreseen use in one clock is not
 * worth moving; two uses at once (the same key signalled twice), or one
 * intent spanning two clocks, are.  Only transitions count, so the second
 * use of an already wanted key says nothing new.
 */
static void test_uses(void)
{
	struct aug_planner p;
	struct rec r = { 0 };
	int64_t c;

	CHECK(aug_planner_init(&p, 1, 10, 0.002) == 0, "init");
	CHECK(p.act_at == 2, "default act_at %u, want 2", p.act_at);
	clock_to(&p, 0, 0, MS);
	intent(&p, 0, 1, 10, 11, MS); /* one use */
	intent(&p, 0, 2, 10, 11, MS); /* two uses in the same clock */
	intent(&p, 0, 2, 10, 11, MS);
	intent(&p, 0, 3, 10, 12, MS); /* a range of clocks */
	intent(&p, 0, 4, 10, 11, MS); /* uses in consecutive clocks overlap */
	intent(&p, 0, 4, 11, 12, MS); /* while the first is active (lead 3) */
	for (c = 0; c <= 20; c++) {
		r.clock = c;
		clock_to(&p, 0, c, (uint64_t)(c + 1) * MS);
		aug_planner_step(&p, 0, record, &r);
	}
	CHECK(count(&r, 1, 1) == 0 && count(&r, 1, 0) == 0,
	      "key 1 (one use): %d on / %d off, want 0/0", count(&r, 1, 1),
	      count(&r, 1, 0));
	CHECK(find(&r, 2, 1) && find(&r, 2, 1)->clock == 7 &&
		  count(&r, 2, 1) == 1 && find(&r, 2, 0) &&
		  find(&r, 2, 0)->clock == 11,
	      "key 2 (two uses): on %d at %lld, off at %lld",
	      count(&r, 2, 1),
	      find(&r, 2, 1) ? (long long)find(&r, 2, 1)->clock : -1LL,
	      find(&r, 2, 0) ? (long long)find(&r, 2, 0)->clock : -1LL);
	CHECK(find(&r, 3, 1) && find(&r, 3, 1)->clock == 7 &&
		  find(&r, 3, 0) && find(&r, 3, 0)->clock == 12,
	      "key 3 (a 2-clock intent) not wanted over [7, 12)");
	CHECK(find(&r, 4, 1) && find(&r, 4, 1)->clock == 8 &&
		  find(&r, 4, 0) && find(&r, 4, 0)->clock == 12,
	      "key 4 (uses in clocks 10 and 11): on at %lld off at %lld, "
	      "want 8 and 12",
	      find(&r, 4, 1) ? (long long)find(&r, 4, 1)->clock : -1LL,
	      find(&r, 4, 0) ? (long long)find(&r, 4, 0)->clock : -1LL);
	CHECK(!p.want_cnt[1] && !p.want_cnt[2] && !p.want_cnt[4] &&
		  !aug_planner_wanted(&p, 1),
	      "counts left over");
	aug_planner_free(&p);
}

int main(void)
{
	test_timing();
	test_rate_scales_lead();
	test_overlap_two_workers();
	test_expired_and_rejected();
	test_decisions();
	test_scenario();
	test_hot_key();
	test_uses();
	if (failures) {
		fprintf(stderr, "planner_test: %d failures\n", failures);
		return 1;
	}
	printf("planner_test: ok (timing, rate, overlap, expiry, decisions, "
	       "3-node scenario, hot key, uses)\n");
	return 0;
}
