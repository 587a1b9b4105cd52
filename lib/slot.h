/* SPDX-License-Identifier: MIT */
/*
 * lib/slot.h - PRIVATE: one parameter block in registered memory.
 *
 * A slot is a 32-byte header followed by the value (float32 x len), padded
 * to whole 64-byte cache lines so that two keys never share a line.
 *
 *   0   version   seqlock word; odd while a writer holds the slot
 *   8   checksum  hash(version, key, epoch, len, value) of the last write
 *   16  key       which key this slot holds
 *   20  epoch     ownership epoch (0: slot free / invalid)
 *   24  len       floats in the value
 *   28  flags
 *   32  value[len]
 *
 * Invariants and who relies on them:
 *
 * - Writers (any local worker thread, the progress thread) serialise on
 *   the version word: CAS it from even v to v+1 (acquire), change the
 *   value, store checksum = hash(v+2, ...), then store v+2 (release).
 *   So writers never lose each other's updates.
 * - Local readers never take the lock: the classic seqlock read (load
 *   version with acquire, copy, acquire fence, load version again, retry
 *   on mismatch or odd).
 * - Remote readers see the slot through one RDMA READ, whose bytes may be
 *   fetched in any order, so they cannot re-read the version.  They check
 *   instead that the version is even and that the checksum matches what
 *   they read: a read that mixes two writes matches with probability
 *   ~2^-64.  We chose a checksum (as Pilaf does) over FaRM's per-cache-line
 *   versions because it keeps values contiguous (a local pull stays one
 *   memcpy) and needs no assumption about the order a NIC or memcpy reads
 *   bytes in; its cost is one hash per write (about 10 ns for 32 floats:
 *   see perf/) and one per remote read, which the round trip dwarfs.
 * - key and epoch let a reader holding a stale location notice that the
 *   slot now holds something else (relocation) and re-resolve.
 *
 * Under ThreadSanitizer the racy copies are done with relaxed atomics so
 * that the (intended) seqlock races are not reported; otherwise plain
 * memcpy.
 */
#ifndef AUGUR_LIB_SLOT_H
#define AUGUR_LIB_SLOT_H

#include <stdint.h>
#include <string.h>

#if defined(__SANITIZE_THREAD__)
#define AUG_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AUG_TSAN 1
#endif
#endif

#define AUG_LINE 64u
#define AUG_SLOT_HDR 32u

struct aug_slot {
	uint64_t version;
	uint64_t checksum;
	uint32_t key;
	uint32_t epoch;
	uint32_t len;
	uint32_t flags;
	float val[];
};

_Static_assert(sizeof(struct aug_slot) == AUG_SLOT_HDR, "slot header");

static inline uint32_t aug_slot_bytes(uint32_t len)
{
	return (AUG_SLOT_HDR + 4u * len + AUG_LINE - 1) & ~(AUG_LINE - 1);
}

/* Named memory-order helpers for the version word. */
static inline uint64_t aug_load_acquire(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint64_t aug_load_relaxed(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void aug_store_release(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void aug_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* A 32-bit view of float storage that the compiler may alias. */
typedef uint32_t __attribute__((may_alias)) aug_u32a;

static inline float aug_ld_relaxed(const float *p)
{
	uint32_t u = __atomic_load_n((const aug_u32a *)p, __ATOMIC_RELAXED);
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static inline void aug_st_relaxed(float *p, float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	__atomic_store_n((aug_u32a *)p, u, __ATOMIC_RELAXED);
}

/* Copy floats that another thread may be writing (seqlock data). */
static inline void aug_racy_copy(float *dst, const float *src, uint32_t n)
{
#ifdef AUG_TSAN
	uint32_t i;

	for (i = 0; i < n; i++)
		dst[i] = aug_ld_relaxed(&src[i]);
#else
	memcpy(dst, src, (size_t)n * 4);
#endif
}

static inline uint64_t aug_mix(uint64_t h, uint64_t w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 31);
}

/*
 * Checksum of a slot as it would be after a write that leaves @version.
 * Four independent lanes so the multiply chain pipelines.
 */
static inline uint64_t aug_slot_hash(uint64_t version, uint32_t key,
				     uint32_t epoch, uint32_t len,
				     const float *val)
{
	const unsigned char *p = (const unsigned char *)val;
	size_t nbytes = (size_t)len * 4, i = 0;
	uint64_t h0 = version ^ 0x243f6a8885a308d3ull;
	uint64_t h1 = ((uint64_t)key << 32 | epoch) ^ 0x13198a2e03707344ull;
	uint64_t h2 = (uint64_t)len ^ 0xa4093822299f31d0ull;
	uint64_t h3 = 0x082efa98ec4e6c89ull;
	uint64_t w[4];

	for (; i + 32 <= nbytes; i += 32) {
		memcpy(w, p + i, 32);
		h0 = aug_mix(h0, w[0]);
		h1 = aug_mix(h1, w[1]);
		h2 = aug_mix(h2, w[2]);
		h3 = aug_mix(h3, w[3]);
	}
	for (; i + 8 <= nbytes; i += 8) {
		memcpy(w, p + i, 8);
		h0 = aug_mix(h0, w[0]);
	}
	if (i < nbytes) {
		uint32_t t;
		memcpy(&t, p + i, 4);
		h1 = aug_mix(h1, t);
	}
	return aug_mix(aug_mix(h0, h1), aug_mix(h2, h3 + 1));
}

/* Take the slot's writer lock; returns the (even) version it had. */
static inline uint64_t aug_slot_lock(struct aug_slot *s)
{
	uint64_t v;

	for (;;) {
		v = aug_load_relaxed(&s->version);
		if (!(v & 1) &&
		    __atomic_compare_exchange_n(&s->version, &v, v + 1, 0,
						__ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return v;
		aug_cpu_relax();
	}
}

/* Publish: checksum for version v+2, then release the lock at v+2. */
static inline void aug_slot_unlock(struct aug_slot *s, uint64_t v)
{
	uint64_t c = aug_slot_hash(v + 2, s->key, s->epoch, s->len, s->val);

	__atomic_store_n(&s->checksum, c, __ATOMIC_RELAXED);
	aug_store_release(&s->version, v + 2);
}

/* flags */
#define AUG_SLOT_REPLICA 1u /* a replica: only local threads read it */
#define AUG_SLOT_DELTA 2u   /* replica: pushes since the last delta swap */

/*
 * Release without a checksum: for replica slots, which no remote reader
 * validates (a stale remote location that lands on one sees another key
 * or epoch in the header and re-resolves before the checksum is looked
 * at).  Saves hashing the value on every local push to a replica.
 */
static inline void aug_slot_unlock_nosum(struct aug_slot *s, uint64_t v)
{
	aug_store_release(&s->version, v + 2);
}

/* val += d (under the lock). */
static inline void aug_slot_add(struct aug_slot *s, const float *d)
{
	uint32_t i, n = s->len;
#ifdef AUG_TSAN
	for (i = 0; i < n; i++)
		aug_st_relaxed(&s->val[i], aug_ld_relaxed(&s->val[i]) + d[i]);
#else
	float *restrict v = s->val;
	const float *restrict dd = d;

	for (i = 0; i < n; i++)
		v[i] += dd[i];
#endif
}

/* val = x (under the lock). */
static inline void aug_slot_put(struct aug_slot *s, const float *x)
{
#ifdef AUG_TSAN
	uint32_t i;
	for (i = 0; i < s->len; i++)
		aug_st_relaxed(&s->val[i], x[i]);
#else
	memcpy(s->val, x, (size_t)s->len * 4);
#endif
}

/* n floats at p = 0 (under the lock; seqlock readers may be copying). */
static inline void aug_slot_zero(float *p, uint32_t n)
{
#ifdef AUG_TSAN
	uint32_t i;
	for (i = 0; i < n; i++)
		aug_st_relaxed(&p[i], 0.0f);
#else
	memset(p, 0, (size_t)n * 4);
#endif
}

/* Lock-free local read; returns the version read. */
static inline uint64_t aug_slot_read(const struct aug_slot *s, float *out)
{
	uint64_t v1, v2;

	for (;;) {
		v1 = aug_load_acquire(&s->version);
		if (v1 & 1) {
			aug_cpu_relax();
			continue;
		}
		aug_racy_copy(out, s->val, s->len);
#ifdef AUG_TSAN
		/* TSan models no fences; a seq_cst load is what it checks */
		v2 = __atomic_load_n(&s->version, __ATOMIC_SEQ_CST);
#else
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		v2 = aug_load_relaxed(&s->version);
#endif
		if (v1 == v2)
			return v1;
	}
}

/*
 * Validate a slot image fetched by a one-sided READ.  Returns 1 if it is a
 * whole write of @key at @epoch (epoch 0: any), 0 if torn (retry), -1 if
 * the slot holds another key or epoch (moved: re-resolve).
 */
static inline int aug_slot_check(const struct aug_slot *img, uint32_t key,
				 uint32_t epoch, uint32_t len)
{
	if (img->version & 1)
		return 0;
	if (img->key != key || img->len != len ||
	    (epoch && img->epoch != epoch))
		return -1; /* moved, or a torn header: re-resolve, retry */
	return aug_slot_hash(img->version, key, img->epoch, len, img->val) ==
	       img->checksum;
}

#endif /* AUGUR_LIB_SLOT_H */
