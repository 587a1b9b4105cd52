// SPDX-License-Identifier: MIT
/*
 * lib/planner.c - action timing and owner decisions (see lib/planner.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <augur/augur.h>

#include "planner.h"

int aug_planner_init(struct aug_planner *p, uint32_t nworkers,
		     uint64_t num_keys, double lead_s)
{
	memset(p, 0, sizeof(*p));
	p->wp = calloc(nworkers ? nworkers : 1, sizeof(*p->wp));
	p->want_cnt = calloc(num_keys ? num_keys : 1, sizeof(*p->want_cnt));
	p->on = calloc(num_keys ? num_keys : 1, 1);
	if (!p->wp || !p->want_cnt || !p->on) {
		aug_planner_free(p);
		return -ENOMEM;
	}
	p->nworkers = nworkers;
	p->num_keys = num_keys;
	p->lead_s = lead_s;
	p->act_at = 2;
	return 0;
}

void aug_planner_free(struct aug_planner *p)
{
	uint32_t i;

	if (p->wp)
		for (i = 0; i < p->nworkers; i++) {
			free(p->wp[i].pend);
			free(p->wp[i].act);
		}
	free(p->wp);
	free(p->want_cnt);
	free(p->on);
	memset(p, 0, sizeof(*p));
}

static int pend_grow(struct aug_wplan *w)
{
	uint32_t cap = w->pend_cap ? w->pend_cap * 2 : 1024, j;
	struct aug_pintent *q = malloc(cap * sizeof(*q));

	if (!q)
		return -ENOMEM;
	for (j = 0; j < w->pend_n; j++)
		q[j] = w->pend[(w->pend_head + j) % w->pend_cap];
	free(w->pend);
	w->pend = q;
	w->pend_cap = cap;
	w->pend_head = 0;
	return 0;
}

void aug_planner_feed(struct aug_planner *p, uint32_t wi,
		      const struct aug_intent *in, uint32_t n, uint64_t now_ns)
{
	struct aug_wplan *w = &p->wp[wi];
	uint32_t i;

	for (i = 0; i < n; i++) {
		const struct aug_intent *e = &in[i];

		if (e->kind == AUG_INTENT_CLOCK) {
			if (w->clock_ns && e->start > w->clock &&
			    now_ns > w->clock_ns) {
				double dt = (double)(now_ns - w->clock_ns) / 1e9;
				double r = (double)(e->start - w->clock) / dt;

				w->rate = w->rate ? 0.8 * w->rate + 0.2 * r : r;
			}
			if (e->start > w->clock || !w->clock_ns)
				w->clock_ns = now_ns;
			w->clock = e->start;
			continue;
		}
		if (e->key >= p->num_keys || e->end <= e->start) {
			p->rejected++;
			continue;
		}
		if (w->pend_n == w->pend_cap && pend_grow(w))
			continue; /* out of memory: the intent is a hint */
		w->pend[(w->pend_head + w->pend_n) % w->pend_cap] =
			(struct aug_pintent){ e->key, e->start, e->end };
		w->pend_n++;
		p->intents++;
	}
}

static int heap_push(struct aug_wplan *w, struct aug_pintent e)
{
	uint32_t i;

	if (w->act_n == w->act_cap) {
		uint32_t cap = w->act_cap ? w->act_cap * 2 : 1024;
		struct aug_pintent *a = realloc(w->act, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		w->act = a;
		w->act_cap = cap;
	}
	i = w->act_n++;
	while (i && w->act[(i - 1) / 2].end > e.end) {
		w->act[i] = w->act[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	w->act[i] = e;
	return 0;
}

static struct aug_pintent heap_pop(struct aug_wplan *w)
{
	struct aug_pintent top = w->act[0], last = w->act[--w->act_n];
	uint32_t i = 0;

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= w->act_n)
			break;
		if (c + 1 < w->act_n && w->act[c + 1].end < w->act[c].end)
			c++;
		if (w->act[c].end >= last.end)
			break;
		w->act[i] = w->act[c];
		i = c;
	}
	if (w->act_n)
		w->act[i] = last;
	return top;
}

int64_t aug_planner_lead(const struct aug_planner *p, uint32_t wi)
{
	return (int64_t)(p->wp[wi].rate * p->lead_s) + 1;
}

/* One more actionable use of e->key: the node wants the key once enough
 * uses are foreseen (act_at at once, or one intent over several clocks). */
static void want_on(struct aug_planner *p, const struct aug_pintent *e,
		    aug_want_fn fn, void *ctx)
{
	uint32_t key = e->key, c = ++p->want_cnt[key];

	if (p->on[key] || (c < p->act_at && e->end - e->start < 2))
		return;
	p->on[key] = 1;
	fn(ctx, key, 1);
}

static void want_off(struct aug_planner *p, uint32_t key, aug_want_fn fn,
		     void *ctx)
{
	if (--p->want_cnt[key] || !p->on[key])
		return;
	p->on[key] = 0;
	fn(ctx, key, 0);
}

int aug_planner_step(struct aug_planner *p, uint32_t wi, aug_want_fn fn,
		     void *ctx)
{
	struct aug_wplan *w = &p->wp[wi];
	int64_t lead = aug_planner_lead(p, wi);
	int work = 0;

	while (w->pend_n) {
		struct aug_pintent e = w->pend[w->pend_head];

		if (e.start > w->clock + lead)
			break;
		w->pend_head = (w->pend_head + 1) % w->pend_cap;
		w->pend_n--;
		if (e.end <= w->clock) {
			p->expired++;
			continue;
		}
		if (heap_push(w, e))
			continue;
		want_on(p, &e, fn, ctx);
		work++;
	}
	while (w->act_n && w->act[0].end <= w->clock) {
		struct aug_pintent e = heap_pop(w);

		want_off(p, e.key, fn, ctx);
		work++;
	}
	return work;
}

struct aug_decision aug_decide(int mode, int self, uint64_t wantset,
			       uint64_t repset)
{
	struct aug_decision d = { AUG_ACT_NONE, -1, 0 };
	uint64_t me = 1ull << self, others = wantset & ~me;

	if (mode == AUGUR_MODE_STATIC || !others)
		return d;
	if (mode != AUGUR_MODE_REPLICATE && !(wantset & me) &&
	    !(others & (others - 1)) && !repset) {
		d.act = AUG_ACT_RELOCATE;
		d.to = __builtin_ctzll(others);
		return d;
	}
	if (mode == AUGUR_MODE_RELOCATE)
		return d;
	d.grant = others & ~repset;
	if (d.grant)
		d.act = AUG_ACT_REPLICATE;
	return d;
}
