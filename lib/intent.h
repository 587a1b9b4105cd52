/* SPDX-License-Identifier: MIT */
/*
 * lib/intent.h - PRIVATE: the intent ring, one per worker, worker -> planner.
 *
 * A single-producer single-consumer ring in the style of DPDK's rte_ring:
 *
 *   - free-running 32-bit indices (head: next slot the producer fills,
 *     tail: next slot the consumer takes), masked on access; head - tail
 *     is the fill level and never exceeds the capacity;
 *   - the producer owns head and a cached copy of tail, the consumer owns
 *     tail and a cached copy of head, each pair on its own cache line, so
 *     the two threads share a line only when a cached copy runs out;
 *   - the producer fills slots, then publishes head with a release store;
 *     the consumer reads head with an acquire load before reading slots,
 *     and publishes tail (release) after it is done with them, so the
 *     producer never overwrites a slot that is still being read.
 *
 * Bursts are consumed and the index advanced once.  A full ring is not an
 * error: enqueue returns how many entries went in.
 */
#ifndef AUGUR_LIB_INTENT_H
#define AUGUR_LIB_INTENT_H

#include <stdint.h>
#include <stdlib.h>

enum aug_intent_kind {
	AUG_INTENT_KEY = 0,   /* key in [start, end) */
	AUG_INTENT_CLOCK = 1, /* the worker's clock is now start */
};

struct aug_intent {
	uint32_t key;
	uint32_t kind;
	int64_t start;
	int64_t end;
};

struct aug_iring {
	/* producer's line */
	uint32_t head __attribute__((aligned(64)));
	uint32_t tail_cache;
	/* consumer's line */
	uint32_t tail __attribute__((aligned(64)));
	uint32_t head_cache;
	/* read-only after init */
	uint32_t mask __attribute__((aligned(64)));
	struct aug_intent *slot;
};

/* @cap: a power of two.  Return: 0 or -ENOMEM. */
static inline int aug_iring_init(struct aug_iring *r, uint32_t cap)
{
	r->slot = calloc(cap, sizeof(*r->slot));
	if (!r->slot)
		return -12; /* -ENOMEM */
	r->mask = cap - 1;
	r->head = r->tail = r->tail_cache = r->head_cache = 0;
	return 0;
}

static inline void aug_iring_fini(struct aug_iring *r)
{
	free(r->slot);
	r->slot = NULL;
}

/* Producer: enqueue up to @n entries; returns how many went in. */
static inline uint32_t aug_iring_enqueue(struct aug_iring *r,
					 const struct aug_intent *e, uint32_t n)
{
	uint32_t head = r->head, cap = r->mask + 1, room, i;

	room = cap - (head - r->tail_cache);
	if (room < n) {
		r->tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		room = cap - (head - r->tail_cache);
		if (room < n)
			n = room;
	}
	for (i = 0; i < n; i++)
		r->slot[(head + i) & r->mask] = e[i];
	__atomic_store_n(&r->head, head + n, __ATOMIC_RELEASE);
	return n;
}

/* Consumer: dequeue up to @max entries; returns how many were taken. */
static inline uint32_t aug_iring_dequeue(struct aug_iring *r,
					 struct aug_intent *out, uint32_t max)
{
	uint32_t tail = r->tail, avail, i;

	avail = r->head_cache - tail;
	if (avail < max) {
		r->head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		avail = r->head_cache - tail;
	}
	if (avail > max)
		avail = max;
	for (i = 0; i < avail; i++)
		out[i] = r->slot[(tail + i) & r->mask];
	__atomic_store_n(&r->tail, tail + avail, __ATOMIC_RELEASE);
	return avail;
}

#endif /* AUGUR_LIB_INTENT_H */
