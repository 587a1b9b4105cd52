// SPDX-License-Identifier: MIT
/*
 * lib/planner.h - the pure part of adaptive management: when a worker's
 * intent becomes actionable and when it ends (AdaPM's action timing), and
 * what a key's owner does about who wants it.  No node, no transport, no
 * clock of its own: time and intents come in as arguments, transitions go
 * out through a callback.  lib/adapt.c drives it from the progress loop;
 * tests/store/planner_test.c drives it with synthetic intent streams and a
 * fake clock.
 *
 * Timing.  Per worker the planner keeps the worker's clock and its rate
 * (clocks per second, an EWMA over clock advances, measured against the
 * now_ns the caller passes).  An intent [start, end) becomes actionable
 * when clock + lead >= start, lead = ceil(rate x lead_s) + 1 clocks: early
 * enough that a relocation or replica install (tens of microseconds) is
 * done when the worker's clock reaches start, late enough that memory is
 * not held for keys used much later.  It stops being actionable when the
 * worker's clock reaches end.  An intent already over when it would become
 * actionable is dropped.  A worker's intents are taken in the order it
 * signalled them (a FIFO, O(1) each): one signalled with an earlier start
 * than an intent before it waits for that one (workers signal in clock
 * order: the next blocks' keys).  Per key the planner counts actionable intents
 * over all workers of the node; the callback hears "this node wants the
 * key" once enough uses are foreseen and "it no longer does" when the
 * count is back at 0.
 *
 * Uses.  An intent is one foreseen use of a key in [start, end); a key
 * used several times is signalled several times (duplicates are the
 * point), and an intent spanning two or more clocks stands for many uses.
 * The node wants a key once act_at (default 2) uses overlap, or on any
 * intent spanning >= 2 clocks: moving a key costs about one remote access
 * (a hand-off message, or a READ for a replica) plus directory traffic,
 * so moving it for a single use never pays, while a key used twice or
 * more is worth having here.  Measured (4 nodes, shm, 1 epoch): KGE 20 k
 * triples/s acting on every intent, 87-112 k acting on two or three
 * uses; MF DSGD keeps 99.7 % local pulls because its intents are per
 * use.
 *
 * Decisions (aug_decide): made by the key's current owner from the set of
 * nodes wanting it (its own bit from its own planner, the others' from
 * WANT/UNWANT messages) and the set holding replicas.
 */
#ifndef AUGUR_PLANNER_H
#define AUGUR_PLANNER_H

#include <stdint.h>

#include "intent.h"

struct aug_pintent {
	uint32_t key;
	int64_t start, end;
};

/* Planner state for one worker. */
struct aug_wplan {
	int64_t clock;
	double rate;		  /* clocks per second, EWMA */
	uint64_t clock_ns;	  /* when clock last advanced */
	struct aug_pintent *pend; /* FIFO of not yet actionable intents */
	uint32_t pend_head, pend_n, pend_cap;
	struct aug_pintent *act; /* min-heap on end of active intents */
	uint32_t act_n, act_cap;
};

/* Called on a node-wide transition of @key: @on 1 (wanted now), 0 (not). */
typedef void (*aug_want_fn)(void *ctx, uint32_t key, int on);

struct aug_planner {
	struct aug_wplan *wp; /* per worker */
	uint32_t nworkers;
	uint64_t num_keys;
	uint32_t *want_cnt; /* per key: actionable intents, all workers */
	uint8_t *on;	    /* per key: the node said "wanted" */
	uint32_t act_at;    /* want a key at this many overlapping uses */
	double lead_s;	    /* act this long (at the worker's rate) ahead */
	uint64_t intents;   /* accepted */
	uint64_t rejected;  /* key out of range or empty interval */
	uint64_t expired;   /* over before they became actionable */
};

/* Return 0 or -ENOMEM. */
int aug_planner_init(struct aug_planner *p, uint32_t nworkers,
		     uint64_t num_keys, double lead_s);
void aug_planner_free(struct aug_planner *p);

/* Take @n records of worker @wi's intent ring, seen at @now_ns. */
void aug_planner_feed(struct aug_planner *p, uint32_t wi,
		      const struct aug_intent *in, uint32_t n, uint64_t now_ns);

/* Make the transitions due for worker @wi; returns how many intents
 * started or ended. */
int aug_planner_step(struct aug_planner *p, uint32_t wi, aug_want_fn fn,
		     void *ctx);

/* Does this node want @key (said so, and not let go yet)? */
static inline int aug_planner_wanted(const struct aug_planner *p,
				     uint32_t key)
{
	return p->on[key];
}

/* The current lead of worker @wi, in clocks. */
int64_t aug_planner_lead(const struct aug_planner *p, uint32_t wi);

enum aug_action {
	AUG_ACT_NONE = 0,
	AUG_ACT_RELOCATE,  /* move ownership to .to */
	AUG_ACT_REPLICATE, /* grant replicas to the nodes in .grant */
};

struct aug_decision {
	enum aug_action act;
	int to;
	uint64_t grant;
};

/*
 * What the owner @self does about a key, in management @mode (enum
 * augur_mode): wanted by exactly one other node and not by the owner, with
 * no replica out: relocate there (not in replicate-only mode); wanted by
 * others otherwise: grant a replica to each that has none (not in
 * relocate-only mode); else nothing.  Static mode never acts.
 */
struct aug_decision aug_decide(int mode, int self, uint64_t wantset,
			       uint64_t repset);

#endif
