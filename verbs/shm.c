// SPDX-License-Identifier: MIT
/*
 * verbs/shm.c - the shm provider: augur's transport between the processes of
 * one host, over shared memory.
 *
 * Overview
 * --------
 * Every object peers can reach is a memfd (mode 0600, sealed against
 * shrinking and growing) mapped MAP_SHARED.  A peer reaches it by opening
 * /proc/<owner pid>/fd/<owner fd> (same uid, or root) and mapping it itself,
 * so every "remote" operation is carried out by the poster's own thread on
 * its own mapping of the target's memory, at auv_post() time: a READ is a
 * memcpy out of the peer's region, a WRITE a memcpy into it, CAS and FAA are
 * real 64-bit sequentially consistent atomics (__atomic builtins) on it.  The
 * target's threads take no part.  Only SEND and WRITE with immediate need
 * the target's cooperation: they travel through a message ring that the
 * target's auv_poll() drains into its posted receive buffers.
 *
 * Three kinds of shared segment:
 *
 * 1. The control segment (struct shm_ctl), one per context, its fd named in
 *    the context's address "shm:<pid>:<fd>":
 *    - a header: magic, layout version, owner pid, an "alive" word cleared
 *      by auv_ctx_close();
 *    - a futex word (wake_seq) and a "sleeping" flag: see "Sleeping" below;
 *    - a connection mailbox of SHM_NMAIL request slots: see "Connecting";
 *    - the region table: SHM_NREGIONS entries {gen, fd, base, len, access},
 *      one per auv_mr_alloc() region that grants a remote right.
 *
 *    Region table invariant.  Only the owner writes an entry.  gen is even
 *    while the entry is free and odd while it describes a live region; the
 *    other fields change only while gen is even.  Publishing: a release
 *    fence, the fields (relaxed), then gen+1 (odd) with a release store.
 *    Deregistering: gen+1 (even) with a release store FIRST, then munmap and
 *    close the memfd.  A peer resolves an rkey seqlock-style: gen (acquire),
 *    the fields (relaxed), an acquire fence, gen again; equal and odd means
 *    the fields belong to that registration.  gen only ever grows, so "gen
 *    unchanged" also proves the owner still held the fd open in between,
 *    which makes opening /proc/<pid>/fd/<fd> during that window safe against
 *    fd-number reuse.
 *
 *    rkey = (gen & 0x3fffff) << 10 | index.  gen is odd for a live region,
 *    so a valid rkey is never 0 (rkey 0 is what local-only regions get).  A
 *    stale rkey (region deregistered, slot reused) no longer matches gen and
 *    is refused; it would take 2^21 reuses of one slot to alias.
 *
 * 2. The channel (struct shm_chan), one per connection, created by the
 *    connector: a header (magic, version, a random nonce the acceptor checks,
 *    ring geometry, both pids), the connection state word (a futex), one
 *    "broken" word per side, two single-producer single-consumer message
 *    rings, ring[s] written by side s (0 = connector, 1 = acceptor) and
 *    drained by the other (see struct shm_ring), and per side the lengths
 *    of the receives it has posted (struct shm_rxq), so that a sender can
 *    check a SEND against the receive buffer waiting for it without the
 *    receiver's help.  Each ring slot holds one message {kind SEND or IMM,
 *    len, imm, data[4096]}.
 *
 * 3. Regions: one memfd per auv_mr_alloc().  A peer maps each region it
 *    addresses once per endpoint (struct shm_rcache, keyed by table index,
 *    tagged with gen) and re-validates the live gen on every operation.
 *    Because every allocation is a fresh memfd, a peer's stale mapping can
 *    never alias a newer region: an operation racing with auv_mr_dereg()
 *    lands in memory the owner no longer has, and nothing else.  Stale
 *    mappings are dropped by the liveness tick.
 *
 * Operations
 * ----------
 * Core (verbs/core.c) has validated the local side.  auv_post() carries out
 * each operation at once, in order, in the caller's thread, checking the
 * target's rkey, bounds and rights against the live table entry; a failure
 * completes with -AUGUR_EREMOTE_ACCESS and touches nothing.  Ordering
 * (verbs.h): operations run in posting order, so READs and atomics never
 * pass earlier WRITEs (AUV_OP_FENCE costs nothing); a release fence precedes
 * each WRITE's copy (WRITE-after-WRITE order on weakly ordered CPUs) and the
 * release store that publishes a batch's ring messages orders every earlier
 * WRITE before the SEND/WRITE_IMM that follows it.
 *
 * SEND and WRITE_IMM take the peer's next receive, so they go only when it
 * has one posted (shm_rxq) and the ring has a free slot; otherwise they, and
 * every later operation of the endpoint (posting order), are deferred in the
 * send queue and carried out by auv_poll()/auv_wait() once the peer posts a
 * receive or drains the ring, like RNR retry on hardware (forever: a
 * receiver that never posts stalls the sender, it never gets
 * AUGUR_ENO_RECV).  A SEND longer than the receive waiting for it fails at
 * once at the sender with -AUGUR_EREMOTE_INVALID and breaks the connection,
 * as on RC hardware; the receiver's endpoint then fails too and its
 * receives are flushed.  Once in the ring a message is as good as
 * delivered, so the operation completes then.  Inline payloads
 * (len <= max_inline) of deferred operations are copied, so the caller may
 * reuse its buffer as soon as auv_post() returns.
 *
 * Send queue and completions.  Every posted operation counts against
 * sq_depth until the caller polls its completion or a later one of the same
 * endpoint (selective signaling, as on hardware: an endpoint that only posts
 * unsignaled operations fills up); auv_post() takes fewer than asked when
 * the queue is full.  Completions go to the context's private completion
 * queue (cq_depth entries): a signaled operation, and every failed or
 * flushed one, takes one entry; a successful unsignaled one takes none.
 * Completions of one endpoint are reported in posting order: one that cannot
 * be reported yet (an earlier operation deferred, or the completion queue
 * full) waits in the send queue (struct shm_sqe), never overflowing the
 * completion queue.
 *
 * Receives: auv_post_recv() queues buffers (rq_depth per endpoint) and
 * publishes their lengths in the channel.  auv_poll() matches inbound
 * messages to them in FIFO order (message k takes receive k).  WRITE_IMM
 * completes a receive with byte_len 0, AUV_WC_IMM and the immediate.
 *
 * Errors and endpoint state (RC semantics): a failed operation puts its
 * endpoint in the error state (ep->status = the failure); later operations
 * of the same batch and everything deferred complete with -AUGUR_EFLUSHED,
 * posted receives too, and further auv_post()/auv_post_recv() return the
 * status.  The endpoint writes its side's "broken" word (the code the peer
 * shall fail with: -AUGUR_EPEER_GONE, or -AUGUR_EREMOTE_INVALID after an
 * oversized SEND) and wakes the peer.  auv_ep_close() breaks the
 * connection the same way and flushes what it still held.  All codes are
 * negative, as verbs.h says.
 *
 * Liveness: each side holds a pidfd of the peer (pidfd_open; kill(pid, 0) on
 * kernels without it).  About every SHM_TICK_NS, auv_poll() (and auv_wait())
 * checks it, the peer context's "alive" word and the peer's "broken" word
 * (the last is also checked on every auv_post()).  A dead peer: messages it
 * sent before dying are still delivered, then the endpoint fails with
 * -AUGUR_EPEER_GONE (first deferred operation: -AUGUR_EPEER_GONE, the rest
 * and the receives: -AUGUR_EFLUSHED).  Its memory stays mapped, so
 * operations racing with its death never crash; an operation that needs a
 * region not mapped yet fails with -AUGUR_EPEER_GONE.
 *
 * Sleeping (auv_wait, auv_ep_accept): the sleeper reads wake_seq, sets
 * "sleeping", issues a full fence, re-checks for work, then FUTEX_WAITs
 * (shared, not private: the waker uses another mapping) on wake_seq.  A
 * waker publishes its work (ring tail, mailbox slot), issues a full fence,
 * and only if it sees "sleeping" increments wake_seq and FUTEX_WAKEs.  The
 * two fences make the store-buffering pattern safe: either the sleeper sees
 * the work or the waker sees the flag; a wake between the re-check and the
 * FUTEX_WAIT changes wake_seq, so the wait returns at once.  A sender with
 * deferred operations additionally sets its ring's want_space; the peer
 * wakes it after draining the ring or posting receives.  With endpoints
 * open, sleeps are cut into SHM_TICK_NS slices so that a peer's death is
 * noticed.
 *
 * Connecting: the connector opens and checks the acceptor's control segment
 * (regular file, sealed, magic, version, pid, alive; "shm:999999:3" fails
 * with -ECONNREFUSED at once), creates the channel, claims a mailbox slot
 * (64-bit word ticket<<32 | state: FREE -> CLAIMED by CAS, fill, -> POSTED
 * with a release store), wakes the acceptor and sleeps on the channel state
 * word.  auv_ep_accept() takes a POSTED slot by CAS (-> TAKEN), copies it,
 * frees it (-> FREE with ticket+1), maps the channel and the connector's
 * control segment, then CASes the state WAITING -> ACCEPTED and wakes the
 * connector.  The connector gives up after connect_timeout_ms (-ETIMEDOUT),
 * or when the acceptor dies (-ECONNREFUSED), by CASing WAITING -> ABANDONED;
 * the state word is the single point of decision, so exactly one of "the
 * acceptor gets an endpoint" and "the connector gets an error" happens.  The
 * ticket makes withdrawing a still-POSTED slot ABA-safe.
 *
 * Limits: SHM_NREGIONS regions with remote rights per context, each holding
 * one fd of the owner; auv_mr_reg() of caller memory is local-only (remote
 * rights need a shared mapping: auv_mr_alloc()); a context cannot connect to
 * itself (its one thread cannot both wait in connect and accept); a
 * connector that dies between claiming and posting a mailbox slot leaks that
 * slot; regions are not mlock()ed (nothing DMAs into them), so RLIMIT_MEMLOCK
 * does not apply, but one larger than the host's RAM and swap is refused
 * (-ENOMEM) rather than left to fail on first touch.  Regions without a
 * remote right take no table entry (their rkey is 0, which never resolves).
 * The completions auv_ep_close() flushes carry the closed endpoint's
 * pointer in wc.ep: a value to compare, no longer to dereference.
 *
 * Threads: a context and its objects are used by one thread at a time
 * (verbs.h); everything another process can touch is accessed with C11
 * atomics through the helpers below.  Nothing here leaves errno changed: the
 * ops table entries save and restore it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "provider.h"

#define SHM_CTL_MAGIC 0x314c544352554741ull  /* "AGURCTL1" */
#define SHM_CHAN_MAGIC 0x314e414852554741ull /* "AGURHAN1" */
#define SHM_VERSION 1u

#define SHM_NREGIONS 1024u
#define SHM_RKEY_IDX_BITS 10
#define SHM_RKEY_GEN_MASK ((1u << (32 - SHM_RKEY_IDX_BITS)) - 1)
#define SHM_NMAIL 32u

#define SHM_NSLOTS 128u		/* ring slots per direction, power of 2 */
#define SHM_MSG_MAX 4096u	/* caps.max_send */
#define SHM_MSG_HDR 16u
#define SHM_SLOT_STRIDE 4160u	/* header + SHM_MSG_MAX, rounded to 64 */
#define SHM_RXQ_SLOTS 1024u	/* receives published ahead, power of 2 */
#define SHM_CHAN_HDR 16384u	/* slots start here */
#define SHM_MAX_MSG (1u << 30)	/* caps.max_msg */

#define SHM_TICK_NS (100ull * 1000000ull)
#define SHM_WAIT_BUDGET 64u
#define NS_PER_MS 1000000ull

#define SHM_ACCESS_REMOTE                                                      \
	(AUV_ACCESS_REMOTE_READ | AUV_ACCESS_REMOTE_WRITE |                    \
	 AUV_ACCESS_REMOTE_ATOMIC)

/*
 * Memory-order helpers for everything another process may touch.  Each name
 * says what it orders; on x86 only shm_smp_mb() costs an instruction.
 */
#define shm_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define shm_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define shm_store_release(p, v)                                                \
	atomic_store_explicit((p), (v), memory_order_release)
#define shm_store_relaxed(p, v)                                                \
	atomic_store_explicit((p), (v), memory_order_relaxed)
#ifndef __SANITIZE_THREAD__
/* Full fence: a store before it is visible before a load after it. */
#define shm_smp_mb() atomic_thread_fence(memory_order_seq_cst)
/* Stores before it are visible before stores after it (WRITE payloads). */
#define shm_smp_wmb() atomic_thread_fence(memory_order_release)
/* Loads before it complete before loads after it (seqlock re-check). */
#define shm_smp_rmb() atomic_thread_fence(memory_order_acquire)
#else
/*
 * gcc refuses fences under -fsanitize=thread (TSan does not model them):
 * a locked read-modify-write is a full barrier on every CPU we run on.
 */
static _Atomic int shm_tsan_fence;
#define shm_smp_mb()                                                           \
	((void)atomic_fetch_add_explicit(&shm_tsan_fence, 0,                   \
					 memory_order_seq_cst))
#define shm_smp_wmb() shm_smp_mb()
#define shm_smp_rmb() shm_smp_mb()
#endif

/* --- Shared layouts (version SHM_VERSION) ---------------------------------- */

/* One region table entry; see "Region table invariant" above. */
struct shm_region_ent {
	_Atomic uint32_t gen;
	_Atomic int32_t fd;
	_Atomic uint32_t access;
	uint32_t rsvd;
	_Atomic uint64_t base;
	_Atomic uint64_t len;
};

enum shm_mail_state {
	SHM_MAIL_FREE,
	SHM_MAIL_CLAIMED,
	SHM_MAIL_POSTED,
	SHM_MAIL_TAKEN,
};

#define SHM_MAIL_WORD(ticket, state) ((uint64_t)(ticket) << 32 | (state))
#define SHM_MAIL_STATE(w) ((uint32_t)(w))
#define SHM_MAIL_TICKET(w) ((uint32_t)((w) >> 32))

/*
 * A connection request.  Invariant: the fields after @word are written only
 * by the connector that moved @word FREE -> CLAIMED, and read only by the
 * acceptor that moved it POSTED -> TAKEN; the POSTED release store and the
 * TAKEN CAS order them.
 */
struct shm_mail {
	_Alignas(64) _Atomic uint64_t word;
	uint64_t nonce;
	int32_t pid;
	int32_t chan_fd;
	int32_t ctl_fd;
	uint32_t priv_len;
	uint8_t priv[AUV_PRIV_MAX];
};

struct shm_ctl {
	uint64_t magic;
	uint32_t version;
	uint32_t size;
	int32_t pid;
	int32_t fd;
	uint32_t nregions;
	uint32_t nmail;
	_Atomic uint32_t alive;
	/* futex: bumped by a waker that saw @sleeping set */
	_Alignas(64) _Atomic uint32_t wake_seq;
	_Atomic uint32_t sleeping;
	struct shm_mail mail[SHM_NMAIL];
	_Alignas(64) struct shm_region_ent region[SHM_NREGIONS];
};

enum shm_chan_state {
	SHM_CHAN_WAITING,
	SHM_CHAN_ACCEPTED,
	SHM_CHAN_ABANDONED,
	SHM_CHAN_REFUSED,
};

/*
 * One direction of a channel: a single-producer single-consumer ring of
 * fixed-size message slots, indices free-running 32-bit, masked by
 * nslots - 1.  Invariant: 0 <= tail - head <= nslots.  The producer owns the
 * slots [tail, head + nslots): it fills slot tail & mask and publishes a
 * batch with one release store of tail.  The consumer owns [head, tail)
 * after an acquire load of tail: it reads those slots and hands them back
 * with one release store of head.  tail, head and want_space live on their
 * own cache lines.  want_space is set by a producer about to sleep with
 * operations deferred, cleared by the consumer that then wakes it.
 */
struct shm_ring {
	_Alignas(64) _Atomic uint32_t tail;
	_Alignas(64) _Atomic uint32_t head;
	_Alignas(64) _Atomic uint32_t want_space;
};

/*
 * The receives one side has posted, as its peer (the sender) sees them.
 * Invariant: only the receiver writes; len[j & mask] is the length of its
 * receive number j (counting from the connection's start), valid for
 * j < posted; it publishes with a release store of posted, and only while
 * j - SHM_RXQ_SLOTS < the number of messages it has consumed, so the
 * sender (which reads len[k] just before it sends message k) is done with
 * a slot before it is reused.
 */
struct shm_rxq {
	_Alignas(64) _Atomic uint32_t posted;
	_Alignas(64) uint32_t len[SHM_RXQ_SLOTS];
};

struct shm_chan {
	uint64_t magic;
	uint32_t version;
	uint32_t size;
	uint64_t nonce;
	uint32_t nslots;
	uint32_t stride;
	uint32_t msg_max;
	uint32_t slots_off;
	int32_t pid[2];
	/* enum shm_chan_state; futex of the waiting connector */
	_Alignas(64) _Atomic uint32_t state;
	/* broken[s]: 0, or the code side s wants the other side to fail with */
	_Alignas(64) _Atomic int32_t broken[2];
	struct shm_ring ring[2];
	struct shm_rxq rxq[2]; /* rxq[s]: the receives side s posted */
};

enum shm_msg_kind {
	SHM_MSG_SEND = 1,
	SHM_MSG_IMM = 2,
};

struct shm_msg {
	uint32_t kind;
	uint32_t len;
	uint32_t imm;
	uint32_t rsvd;
	uint8_t data[];
};

_Static_assert(sizeof(struct shm_region_ent) == 32, "region entry layout");
_Static_assert(sizeof(struct shm_mail) == 128, "mailbox slot layout");
_Static_assert(sizeof(struct shm_chan) <= SHM_CHAN_HDR, "channel header");
_Static_assert(SHM_SLOT_STRIDE >= SHM_MSG_HDR + SHM_MSG_MAX, "slot size");
_Static_assert((SHM_NSLOTS & (SHM_NSLOTS - 1)) == 0, "nslots power of 2");
_Static_assert((SHM_RXQ_SLOTS & (SHM_RXQ_SLOTS - 1)) == 0, "rxq power of 2");
_Static_assert((1u << SHM_RKEY_IDX_BITS) == SHM_NREGIONS, "rkey index");

/* --- Private objects -------------------------------------------------------- */

struct shm_list {
	struct shm_list *prev, *next;
};

struct shm_ctx {
	struct auv_ctx base;
	struct shm_ctl *ctl;
	size_t ctl_len;
	int ctl_fd;
	dev_t ctl_dev;
	ino_t ctl_ino;
	size_t page;
	/* completion queue: a ring of cq_depth entries */
	struct shm_cqe *cq;
	uint32_t cq_depth;
	uint32_t cq_head;
	uint32_t cq_n;
	struct shm_mr *slot[SHM_NREGIONS]; /* region table owners */
	uint32_t next_slot;
	struct shm_list eps;
	struct shm_list mrs;
	uint32_t n_eps;
	uint64_t next_tick;
};

struct shm_mr {
	struct auv_mr base;
	struct shm_list link;
	int fd;	/* memfd, or -1 for auv_mr_reg() memory */
	int idx; /* region table index, or -1 */
	size_t maplen;
};

/* A peer region as this endpoint maps it; valid while gen matches. */
struct shm_rcache {
	uint32_t gen;
	uint32_t access;
	uint64_t base;
	uint64_t len;
	char *map;
	size_t maplen;
};

struct shm_recv {
	void *buf;
	uint32_t len;
	uint64_t cookie;
};

/* A completion, and the send queue slot it frees when polled. */
struct shm_cqe {
	struct auv_wc wc;
	struct shm_ep *sq_ep; /* NULL: a receive, or its endpoint is closed */
	uint32_t seq;
};

enum shm_sqe_state {
	SHM_SQE_QUEUED, /* deferred: not carried out yet */
	SHM_SQE_DONE,	/* carried out; its completion waits its turn */
};

/* A send queue entry: an operation whose completion is not reported yet. */
struct shm_sqe {
	struct auv_op op; /* QUEUED: all of it; DONE: cookie, opcode, flags */
	uint32_t seq;	  /* its number among the endpoint's operations */
	int32_t status;	  /* DONE */
	uint8_t state;
};

struct shm_peer {
	struct shm_ctl *ctl;
	size_t len;
	pid_t pid;
	int pidfd;
	int ctl_fd;    /* the peer's fd of its control segment */
	dev_t ctl_dev; /* ...and that file's identity */
	ino_t ctl_ino;
};

struct shm_ep {
	struct auv_ep base;
	struct shm_ctx *ctx;
	struct shm_list link;
	int side;
	struct shm_peer peer;
	struct shm_chan *chan;
	size_t chan_len;
	int chan_fd; /* the connector keeps the channel's memfd; else -1 */
	uint32_t nslots, stride;
	/* outbound ring (we produce) */
	struct shm_ring *out;
	char *out_slots;
	uint32_t out_tail; /* next slot to fill */
	uint32_t out_pub;  /* tail last published */
	uint32_t out_head; /* cached consumer index */
	struct shm_rxq *peer_rxq; /* receives the peer posted */
	uint32_t peer_posted;	  /* cached peer_rxq->posted */
	/* inbound ring (we consume) */
	struct shm_ring *in;
	char *in_slots;
	uint32_t in_head; /* messages consumed = receives used */
	uint32_t in_tail; /* cached producer index */
	struct shm_rxq *rxq; /* our posted receives, for the peer */
	uint32_t rq_pub;     /* receives published in rxq */
	/* peer regions */
	struct shm_rcache *rcache;
	uint16_t *mapped; /* indices of rcache entries holding a mapping */
	uint32_t n_mapped;
	/* receive queue */
	struct shm_recv *rq;
	uint32_t rq_cap, rq_head, rq_n;
	/*
	 * Send queue.  Operations get consecutive numbers (seq); one counts
	 * as outstanding from auv_post() until the caller polls its own or a
	 * later operation's completion (sq_retired = that seq + 1), as on
	 * hardware; auv_post() keeps sq_posted - sq_retired <= sq_depth.
	 * The ring sq[] (sq_mask + 1 >= sq_depth entries, free-running
	 * indices) holds, in posting order, the operations whose completion
	 * cannot be reported yet: [sq_head, sq_exec) carried out (DONE: the
	 * completion queue was full, or an earlier one is deferred),
	 * [sq_exec, sq_tail) deferred (QUEUED).  An operation that finds it
	 * empty reports at once.
	 */
	struct shm_sqe *sq;
	char *sq_inline; /* deferred inline payloads, max_inline per entry */
	uint32_t sq_depth, sq_mask;
	uint32_t sq_head, sq_exec, sq_tail;
	uint32_t sq_posted, sq_retired;
	int flush_first; /* code of the first unfinished op flushed, or 0 */
};

static inline struct shm_ctx *to_ctx(struct auv_ctx *c)
{
	return container_of(c, struct shm_ctx, base);
}

static inline struct shm_mr *to_mr(struct auv_mr *m)
{
	return container_of(m, struct shm_mr, base);
}

static inline struct shm_ep *to_ep(struct auv_ep *e)
{
	return container_of(e, struct shm_ep, base);
}

static void shm_list_init(struct shm_list *h)
{
	h->prev = h->next = h;
}

static void shm_list_add_tail(struct shm_list *n, struct shm_list *h)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static void shm_list_del(struct shm_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define shm_for_each_ep(ep, c)                                                 \
	for (struct shm_list *l_ = (c)->eps.next;                              \
	     l_ != &(c)->eps &&                                                \
	     ((ep) = container_of(l_, struct shm_ep, link), 1);                \
	     l_ = l_->next)

/* --- System helpers ---------------------------------------------------------- */

static size_t shm_round_page(size_t len, size_t page)
{
	return (len + page - 1) & ~(page - 1);
}

static uint64_t shm_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	return auvp_now_ns() + (uint64_t)timeout_ms * NS_PER_MS;
}

/* Sleep on a shared futex for at most @ns (UINT64_MAX: no limit). */
static void shm_futex_wait(_Atomic uint32_t *w, uint32_t val, uint64_t ns)
{
	struct timespec ts, *tp = NULL;

	if (ns != UINT64_MAX) {
		ts.tv_sec = (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		tp = &ts;
	}
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, tp, NULL, 0);
}

static void shm_futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Wake the owner of @ctl if it sleeps; call after publishing the work. */
static void shm_kick(struct shm_ctl *ctl)
{
	shm_smp_mb();
	if (shm_load_relaxed(&ctl->sleeping)) {
		atomic_fetch_add_explicit(&ctl->wake_seq, 1,
					  memory_order_release);
		shm_futex_wake(&ctl->wake_seq);
	}
}

/* First half of going to sleep: returns the futex value to wait on; the
 * caller re-checks for work before shm_futex_wait(). */
static uint32_t shm_sleep_prepare(struct shm_ctx *c)
{
	uint32_t v = shm_load_acquire(&c->ctl->wake_seq);

	atomic_store_explicit(&c->ctl->sleeping, 1, memory_order_seq_cst);
	shm_smp_mb();
	return v;
}

static void shm_sleep_finish(struct shm_ctx *c)
{
	shm_store_relaxed(&c->ctl->sleeping, 0);
}

static uint64_t shm_nonce(void)
{
	uint64_t x;

	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) == (ssize_t)sizeof(x))
		return x;
	return auvp_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&x;
}

/* A sealed memfd of @len bytes, mode 0600. */
static int shm_memfd(const char *name, size_t len, int *out)
{
	int fd, rc;

	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return auvp_fail(-errno, "shm: memfd_create: %s",
				 strerror(errno));
	if (fchmod(fd, 0600) || ftruncate(fd, (off_t)len) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		rc = -errno;
		auvp_fail(rc, "shm: sizing a memfd of %zu bytes: %s", len,
			  strerror(errno));
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

/*
 * Open /proc/@pid/fd/@fd, which must be a regular file (never a device).
 * *@out is -1 on failure.
 */
static int shm_open_proc(pid_t pid, int fd, int oflags, int *out)
{
	char path[64];
	struct stat st;
	int f;

	*out = -1;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	if (stat(path, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	f = open(path, oflags | O_CLOEXEC | O_NOCTTY);
	if (f < 0)
		return -errno;
	*out = f;
	return 0;
}

/* Is /proc/@pid/fd/@fd still the file @f refers to? */
static bool shm_same_file(pid_t pid, int fd, int f)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	return !stat(path, &a) && !fstat(f, &b) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/*
 * Map a peer's memfd: it must carry our shrink seal (so its size, checked
 * here, can never drop under the mapping: no SIGBUS) and hold @need bytes.
 */
static int shm_map_foreign(int f, size_t need, size_t page, int prot,
			   void **map, size_t *maplen)
{
	struct stat st;
	size_t len = shm_round_page(need, page);
	int seals;
	void *m;

	if (fstat(f, &st))
		return -errno;
	seals = fcntl(f, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return -EPROTO;
	if ((uint64_t)st.st_size < need)
		return -EPROTO;
	m = mmap(NULL, len, prot, MAP_SHARED, f, 0);
	if (m == MAP_FAILED)
		return -errno;
	*map = m;
	*maplen = len;
	return 0;
}

/* Has the peer process exited? */
static bool shm_pid_dead(const struct shm_peer *p)
{
	struct pollfd pfd;

	if (p->pidfd >= 0) {
		pfd.fd = p->pidfd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		return poll(&pfd, 1, 0) > 0;
	}
	return kill(p->pid, 0) && errno == ESRCH;
}

/* Does the peer still hold its control segment open?  (A process that
 * exits closes its files before its pidfd reports the exit.) */
static bool shm_peer_ctl_open(const struct shm_peer *p)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)p->pid, p->ctl_fd);
	return !stat(path, &st) && st.st_dev == p->ctl_dev &&
	       st.st_ino == p->ctl_ino;
}

static bool shm_peer_gone(const struct shm_peer *p)
{
	return !shm_load_acquire(&p->ctl->alive) || shm_pid_dead(p);
}

static void shm_peer_detach(struct shm_peer *p)
{
	if (p->ctl)
		munmap(p->ctl, p->len);
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->ctl = NULL;
	p->pidfd = -1;
}

/*
 * Map the control segment of context "shm:@pid:@fd" and pin the peer's
 * identity with a pidfd.  @what names the peer in error details.
 */
static int shm_peer_attach(struct shm_ctx *c, pid_t pid, int fd,
			   struct shm_peer *p, const char *what)
{
	struct shm_ctl *ctl;
	struct stat st;
	void *map;
	size_t len;
	int f, rc;

	p->ctl = NULL;
	p->pidfd = -1;
	p->pid = pid;
	rc = shm_open_proc(pid, fd, O_RDWR, &f);
	if (rc == -ENOENT || rc == -ESRCH) {
		if (kill(pid, 0) && errno == ESRCH)
			return auvp_fail(-ECONNREFUSED,
					 "shm: %s: no process %d", what,
					 (int)pid);
		return auvp_fail(-ECONNREFUSED,
				 "shm: %s: process %d has no file descriptor "
				 "%d (context closed?)",
				 what, (int)pid, fd);
	}
	if (rc == -EACCES || rc == -EPERM)
		return auvp_fail(rc,
				 "shm: %s: permission denied opening "
				 "/proc/%d/fd/%d (peer run by another user?)",
				 what, (int)pid, fd);
	if (rc == -EBADFD)
		return auvp_fail(-ECONNREFUSED,
				 "shm: %s: not an augur shm context (fd %d "
				 "of process %d is not a memfd)",
				 what, fd, (int)pid);
	if (rc)
		return auvp_fail(rc, "shm: %s: opening /proc/%d/fd/%d: %s",
				 what, (int)pid, fd, strerror(-rc));
	if (fstat(f, &st)) {
		rc = auvp_fail(-errno, "shm: %s: fstat: %s", what,
			       strerror(errno));
		goto out_close;
	}
	if (st.st_dev == c->ctl_dev && st.st_ino == c->ctl_ino) {
		rc = auvp_fail(-EINVAL,
			       "shm: %s is this context itself: a context "
			       "cannot connect to itself (use a second "
			       "context, driven by another thread)",
			       what);
		goto out_close;
	}
	rc = shm_map_foreign(f, sizeof(struct shm_ctl), c->page,
			     PROT_READ | PROT_WRITE, &map, &len);
	if (rc) {
		rc = auvp_fail(-ECONNREFUSED,
			       "shm: %s: not an augur shm control segment",
			       what);
		goto out_close;
	}
	ctl = map;
	if (ctl->magic != SHM_CTL_MAGIC) {
		rc = auvp_fail(-ECONNREFUSED,
			       "shm: %s: not an augur shm control segment "
			       "(bad magic)",
			       what);
		goto out_unmap;
	}
	if (ctl->version != SHM_VERSION || ctl->size < sizeof(*ctl) ||
	    ctl->nregions != SHM_NREGIONS || ctl->nmail != SHM_NMAIL) {
		rc = auvp_fail(-EPROTO,
			       "shm: %s: control segment version %u, this "
			       "library speaks %u (mixed augur versions?)",
			       what, ctl->version, SHM_VERSION);
		goto out_unmap;
	}
	if (ctl->pid != pid || !shm_load_acquire(&ctl->alive)) {
		rc = auvp_fail(-ECONNREFUSED, "shm: %s: context is closed",
			       what);
		goto out_unmap;
	}
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0 && errno != ENOSYS) {
		rc = auvp_fail(-ECONNREFUSED, "shm: %s: process %d exited",
			       what, (int)pid);
		goto out_unmap;
	}
	/* The pidfd names the process that owned the segment, not a
	 * successor that reused the pid. */
	if (!shm_same_file(pid, fd, f)) {
		rc = auvp_fail(-ECONNREFUSED, "shm: %s: process %d exited",
			       what, (int)pid);
		goto out_pidfd;
	}
	close(f);
	p->ctl = ctl;
	p->len = len;
	p->ctl_fd = fd;
	p->ctl_dev = st.st_dev;
	p->ctl_ino = st.st_ino;
	return 0;

out_pidfd:
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->pidfd = -1;
out_unmap:
	munmap(map, len);
out_close:
	close(f);
	return rc;
}

/* --- Completion queue ----------------------------------------------------------- */

static inline uint32_t shm_cq_free(const struct shm_ctx *c)
{
	return c->cq_depth - c->cq_n;
}

/* Queue a receive completion; the caller has checked shm_cq_free(). */
static struct shm_cqe *shm_cq_push(struct shm_ctx *c, struct shm_ep *ep,
				   uint64_t cookie, int status, uint8_t opcode,
				   uint8_t flags, uint32_t byte_len,
				   uint32_t imm)
{
	uint32_t t = c->cq_head + c->cq_n;
	struct shm_cqe *e;
	struct auv_wc *wc;

	if (t >= c->cq_depth)
		t -= c->cq_depth;
	e = &c->cq[t];
	e->sq_ep = NULL;
	wc = &e->wc;
	wc->cookie = cookie;
	wc->ep = &ep->base;
	wc->status = status;
	wc->opcode = opcode;
	wc->flags = flags;
	wc->byte_len = byte_len;
	wc->imm = imm;
	c->cq_n++;
	return e;
}

/* Queue the completion of send queue operation @seq of @ep. */
static void shm_cq_push_op(struct shm_ctx *c, struct shm_ep *ep,
			   const struct auv_op *op, uint32_t seq, int status)
{
	struct shm_cqe *e;

	e = shm_cq_push(c, ep, op->cookie, status, op->opcode, 0,
			status ? 0 : op->len, 0);
	e->sq_ep = ep;
	e->seq = seq;
}

/* --- Context ------------------------------------------------------------------------ */

static void shm_ep_destroy(struct shm_ep *ep, bool flush);
static void shm_mr_destroy(struct shm_mr *m);

static int shm_ctx_open(const struct auv_ctx_opts *opts, struct auv_ctx **out)
{
	struct shm_ctx *c;
	struct shm_ctl *ctl;
	struct stat st;
	long page = sysconf(_SC_PAGESIZE);
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c)
		return auvp_fail(-ENOMEM, "shm: out of memory");
	c->ctl_fd = -1;
	c->page = page > 0 ? (size_t)page : 4096;
	shm_list_init(&c->eps);
	shm_list_init(&c->mrs);
	c->cq_depth = opts->cq_depth;
	c->cq = calloc(c->cq_depth, sizeof(*c->cq));
	if (!c->cq) {
		rc = auvp_fail(-ENOMEM, "shm: no memory for a completion "
					"queue of %u entries",
			       c->cq_depth);
		goto out_free_ctx;
	}
	c->ctl_len = shm_round_page(sizeof(*ctl), c->page);
	rc = shm_memfd("augur-shm-ctl", c->ctl_len, &c->ctl_fd);
	if (rc)
		goto out_free_cq;
	if (fstat(c->ctl_fd, &st)) {
		rc = auvp_fail(-errno, "shm: fstat: %s", strerror(errno));
		goto out_close_fd;
	}
	c->ctl_dev = st.st_dev;
	c->ctl_ino = st.st_ino;
	ctl = mmap(NULL, c->ctl_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		   c->ctl_fd, 0);
	if (ctl == MAP_FAILED) {
		rc = auvp_fail(-errno, "shm: mmap of the control segment: %s",
			       strerror(errno));
		goto out_close_fd;
	}
	c->ctl = ctl;
	ctl->version = SHM_VERSION;
	ctl->size = (uint32_t)sizeof(*ctl);
	ctl->pid = (int32_t)getpid();
	ctl->fd = c->ctl_fd;
	ctl->nregions = SHM_NREGIONS;
	ctl->nmail = SHM_NMAIL;
	ctl->magic = SHM_CTL_MAGIC;
	shm_store_release(&ctl->alive, 1);

	c->base.ops = &auvp_shm_ops;
	c->base.opts = *opts;
	c->base.opts.provider = "shm";
	c->base.opts.device = NULL;
	c->base.opts.addr = NULL;
	if (c->base.opts.max_inline > SHM_MSG_MAX)
		c->base.opts.max_inline = SHM_MSG_MAX;
	snprintf(c->base.device, sizeof(c->base.device), "shm");
	snprintf(c->base.addr, sizeof(c->base.addr), "shm:%d:%d",
		 (int)getpid(), c->ctl_fd);
	c->base.caps.max_inline = c->base.opts.max_inline;
	c->base.caps.max_msg = SHM_MAX_MSG;
	c->base.caps.max_send = SHM_MSG_MAX;
	c->base.caps.sq_depth = opts->sq_depth;
	c->base.caps.rq_depth = opts->rq_depth;
	c->base.caps.cq_depth = opts->cq_depth;
	snprintf(c->base.caps.device, sizeof(c->base.caps.device), "shm");
	*out = &c->base;
	return 0;

out_close_fd:
	close(c->ctl_fd);
out_free_cq:
	free(c->cq);
out_free_ctx:
	free(c);
	return rc;
}

static void shm_ctx_close(struct auv_ctx *bctx)
{
	struct shm_ctx *c = to_ctx(bctx);

	shm_store_release(&c->ctl->alive, 0);
	while (c->eps.next != &c->eps)
		shm_ep_destroy(container_of(c->eps.next, struct shm_ep, link),
			       false);
	while (c->mrs.next != &c->mrs)
		shm_mr_destroy(container_of(c->mrs.next, struct shm_mr, link));
	munmap(c->ctl, c->ctl_len);
	close(c->ctl_fd);
	free(c->cq);
	free(c);
}

/* --- Memory regions -------------------------------------------------------------- */

static int shm_table_publish(struct shm_ctx *c, struct shm_mr *m)
{
	struct shm_region_ent *e;
	uint32_t i, idx, gen;

	for (i = 0; i < SHM_NREGIONS; i++) {
		idx = (c->next_slot + i) % SHM_NREGIONS;
		if (!c->slot[idx])
			break;
	}
	if (i == SHM_NREGIONS)
		return auvp_fail(-ENOMEM,
				 "shm: region table full: at most %u regions "
				 "with remote access per context",
				 SHM_NREGIONS);
	c->next_slot = (idx + 1) % SHM_NREGIONS;
	e = &c->ctl->region[idx];
	gen = shm_load_relaxed(&e->gen); /* even: free */
	shm_smp_wmb(); /* the invalidating gen store before the new fields */
	shm_store_relaxed(&e->fd, (int32_t)m->fd);
	shm_store_relaxed(&e->base, (uint64_t)(uintptr_t)m->base.addr);
	shm_store_relaxed(&e->len, (uint64_t)m->base.len);
	shm_store_relaxed(&e->access, m->base.access);
	gen++;
	shm_store_release(&e->gen, gen);
	c->slot[idx] = m;
	m->idx = (int)idx;
	m->base.desc.rkey = (gen & SHM_RKEY_GEN_MASK) << SHM_RKEY_IDX_BITS |
			    idx;
	return 0;
}

static void shm_table_unpublish(struct shm_ctx *c, struct shm_mr *m)
{
	struct shm_region_ent *e;

	if (m->idx < 0)
		return;
	e = &c->ctl->region[m->idx];
	/* From here on no peer resolves the rkey; only then unmap. */
	shm_store_release(&e->gen, shm_load_relaxed(&e->gen) + 1);
	c->slot[m->idx] = NULL;
	m->idx = -1;
}

static int shm_mr_alloc(struct auv_ctx *bctx, size_t len, unsigned int access,
			struct auv_mr **out)
{
	struct shm_ctx *c = to_ctx(bctx);
	struct sysinfo si;
	struct shm_mr *m;
	uint64_t host;
	void *addr;
	int rc;

	/* memfd pages are allocated on first touch: refuse here what could
	 * never be backed, rather than fault (SIGBUS) later. */
	if (!sysinfo(&si)) {
		host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
		if ((uint64_t)len > host)
			return auvp_fail(-ENOMEM,
					 "shm: a region of %zu bytes is more "
					 "than this host's memory and swap "
					 "(%llu bytes)",
					 len, (unsigned long long)host);
	}
	if (len > SIZE_MAX - c->page)
		return auvp_fail(-ENOMEM, "shm: region of %zu bytes", len);
	m = calloc(1, sizeof(*m));
	if (!m)
		return auvp_fail(-ENOMEM, "shm: out of memory");
	m->idx = -1;
	m->maplen = shm_round_page(len, c->page);
	rc = shm_memfd("augur-shm-mr", m->maplen, &m->fd);
	if (rc == -EMFILE)
		auvp_fail(rc, "shm: out of file descriptors (each region "
			      "keeps one open; raise ulimit -n)");
	if (rc)
		goto out_free;
	addr = mmap(NULL, m->maplen, PROT_READ | PROT_WRITE, MAP_SHARED,
		    m->fd, 0);
	if (addr == MAP_FAILED) {
		rc = auvp_fail(-errno, "shm: mmap of %zu bytes: %s", m->maplen,
			       strerror(errno));
		goto out_close;
	}
	m->base.ctx = bctx;
	m->base.addr = addr;
	m->base.len = len;
	m->base.access = access;
	m->base.desc.addr = (uint64_t)(uintptr_t)addr;
	m->base.desc.len = len;
	m->base.desc.access = access;
	m->base.desc.rkey = 0;
	if (access & SHM_ACCESS_REMOTE) {
		rc = shm_table_publish(c, m);
		if (rc)
			goto out_unmap;
	}
	shm_list_add_tail(&m->link, &c->mrs);
	*out = &m->base;
	return 0;

out_unmap:
	munmap(addr, m->maplen);
out_close:
	close(m->fd);
out_free:
	free(m);
	return rc;
}

static int shm_mr_reg(struct auv_ctx *bctx, void *addr, size_t len,
		      unsigned int access, struct auv_mr **out)
{
	struct shm_ctx *c = to_ctx(bctx);
	struct shm_mr *m;

	if (access & SHM_ACCESS_REMOTE)
		return auvp_fail(-EOPNOTSUPP,
				 "shm: auv_mr_reg() registers caller memory "
				 "for local use only; memory peers can reach "
				 "must be a shared mapping: use auv_mr_alloc()");
	m = calloc(1, sizeof(*m));
	if (!m)
		return auvp_fail(-ENOMEM, "shm: out of memory");
	m->fd = -1;
	m->idx = -1;
	m->base.ctx = bctx;
	m->base.addr = addr;
	m->base.len = len;
	m->base.access = access;
	m->base.desc.addr = (uint64_t)(uintptr_t)addr;
	m->base.desc.len = len;
	m->base.desc.access = access;
	shm_list_add_tail(&m->link, &c->mrs);
	*out = &m->base;
	return 0;
}

static void shm_mr_destroy(struct shm_mr *m)
{
	shm_table_unpublish(to_ctx(m->base.ctx), m);
	if (m->fd >= 0) {
		munmap(m->base.addr, m->maplen);
		close(m->fd);
	}
	shm_list_del(&m->link);
	free(m);
}

static int shm_mr_dereg(struct auv_mr *bmr)
{
	shm_mr_destroy(to_mr(bmr));
	return 0;
}

/* --- Peer regions (one-sided access) ------------------------------------------ */

static void shm_rcache_drop(struct shm_ep *ep, uint32_t idx)
{
	struct shm_rcache *rc = &ep->rcache[idx];
	uint32_t i;

	if (!rc->map)
		return;
	munmap(rc->map, rc->maplen);
	rc->map = NULL;
	rc->gen = 0;
	for (i = 0; i < ep->n_mapped; i++) {
		if (ep->mapped[i] == idx) {
			ep->mapped[i] = ep->mapped[--ep->n_mapped];
			break;
		}
	}
}

/* Map peer region @idx, registration @gen (odd, read from the table). */
static int shm_rcache_fill(struct shm_ep *ep, uint32_t idx, uint32_t gen)
{
	struct shm_region_ent *e = &ep->peer.ctl->region[idx];
	struct shm_rcache *rc = &ep->rcache[idx];
	uint64_t base, len;
	uint32_t access;
	int32_t fd;
	bool writable;
	void *map;
	size_t maplen;
	int f, r;

	shm_rcache_drop(ep, idx);
	fd = shm_load_relaxed(&e->fd);
	base = shm_load_relaxed(&e->base);
	len = shm_load_relaxed(&e->len);
	access = shm_load_relaxed(&e->access);
	shm_smp_rmb();
	if (shm_load_relaxed(&e->gen) != gen)
		return auvp_fail(-AUGUR_EREMOTE_ACCESS,
				 "shm: rkey revoked (region deregistered)");
	if (!len || len > SIZE_MAX / 2 || fd < 0)
		return auvp_fail(-AUGUR_EREMOTE_ACCESS,
				 "shm: corrupt region table entry %u", idx);
	writable = access & (AUV_ACCESS_REMOTE_WRITE | AUV_ACCESS_REMOTE_ATOMIC);
	r = shm_open_proc(ep->peer.pid, fd, writable ? O_RDWR : O_RDONLY, &f);
	if (!r) {
		r = shm_map_foreign(f, (size_t)len, ep->ctx->page,
				    writable ? PROT_READ | PROT_WRITE :
					       PROT_READ,
				    &map, &maplen);
		close(f);
	}
	if (r) {
		if (shm_load_acquire(&e->gen) != gen)
			return auvp_fail(-AUGUR_EREMOTE_ACCESS,
					 "shm: rkey revoked (region "
					 "deregistered)");
		if (shm_peer_gone(&ep->peer) || !shm_peer_ctl_open(&ep->peer))
			return auvp_fail(-AUGUR_EPEER_GONE,
					 "shm: the peer exited");
		return auvp_fail(-AUGUR_EREMOTE_ACCESS,
				 "shm: cannot map the peer's region "
				 "(/proc/%d/fd/%d): %s",
				 (int)ep->peer.pid, fd, strerror(-r));
	}
	/* Still the same registration: the fd we opened was the right one. */
	if (shm_load_acquire(&e->gen) != gen) {
		munmap(map, maplen);
		return auvp_fail(-AUGUR_EREMOTE_ACCESS,
				 "shm: rkey revoked (region deregistered)");
	}
	rc->gen = gen;
	rc->access = access;
	rc->base = base;
	rc->len = len;
	rc->map = map;
	rc->maplen = maplen;
	ep->mapped[ep->n_mapped++] = (uint16_t)idx;
	return 0;
}

/*
 * Find [@addr, @addr + @len) of the peer region @rkey in our mapping (*@p),
 * if the region is live and grants @right.  Return: 0,
 * -AUGUR_EREMOTE_ACCESS, or -AUGUR_EPEER_GONE (could not map it: peer gone).
 */
static int shm_resolve(struct shm_ep *ep, uint32_t rkey, uint64_t addr,
		       uint32_t len, unsigned int right, void **p)
{
	uint32_t idx = rkey & (SHM_NREGIONS - 1);
	struct shm_rcache *rc = &ep->rcache[idx];
	uint32_t gen = shm_load_acquire(&ep->peer.ctl->region[idx].gen);
	int r;

	if (!(gen & 1) ||
	    (gen & SHM_RKEY_GEN_MASK) != rkey >> SHM_RKEY_IDX_BITS)
		return auvp_fail(-AUGUR_EREMOTE_ACCESS,
				 "shm: rkey 0x%x is not a live region of the "
				 "peer",
				 rkey);
	if (rc->gen != gen) {
		r = shm_rcache_fill(ep, idx, gen);
		if (r)
			return r;
	}
	if (!(rc->access & right))
		return auvp_fail(-AUGUR_EREMOTE_ACCESS,
				 "shm: region rkey 0x%x lacks the right "
				 "(access 0x%x, need 0x%x)",
				 rkey, rc->access, right);
	if (addr < rc->base || len > rc->len || addr - rc->base > rc->len - len)
		return auvp_fail(-AUGUR_EREMOTE_ACCESS,
				 "shm: [0x%llx, +%u) is outside region rkey "
				 "0x%x [0x%llx, +%llu)",
				 (unsigned long long)addr, len, rkey,
				 (unsigned long long)rc->base,
				 (unsigned long long)rc->len);
	*p = rc->map + (addr - rc->base);
	return 0;
}

/* --- Rings ----------------------------------------------------------------------- */

static inline struct shm_msg *shm_slot(char *slots, uint32_t stride,
				       uint32_t nslots, uint32_t i)
{
	return (struct shm_msg *)(slots + (size_t)(i & (nslots - 1)) * stride);
}

static bool shm_ring_full(struct shm_ep *ep)
{
	if (ep->out_tail - ep->out_head < ep->nslots)
		return false;
	ep->out_head = shm_load_acquire(&ep->out->head);
	return ep->out_tail - ep->out_head >= ep->nslots;
}

/* Fill the next outbound slot; the caller checked !shm_ring_full(). */
static void shm_ring_put(struct shm_ep *ep, uint32_t kind, const void *data,
			 uint32_t len, uint32_t imm)
{
	struct shm_msg *m =
		shm_slot(ep->out_slots, ep->stride, ep->nslots, ep->out_tail);

	m->kind = kind;
	m->len = len;
	m->imm = imm;
	if (len)
		memcpy(m->data, data, len);
	ep->out_tail++;
}

/* Publish the filled slots (and, by release, every earlier WRITE). */
static void shm_ring_publish(struct shm_ep *ep)
{
	if (ep->out_tail == ep->out_pub)
		return;
	shm_store_release(&ep->out->tail, ep->out_tail);
	ep->out_pub = ep->out_tail;
	shm_kick(ep->peer.ctl);
}

/* --- Endpoint state ----------------------------------------------------------- */

/*
 * Put @ep in the error state with @status; the peer is told to fail with
 * @peer_code; the first deferred operation flushed completes with @first
 * (0: -AUGUR_EFLUSHED like the rest).
 */
static void shm_ep_break(struct shm_ep *ep, int status, int peer_code,
			 int first)
{
	int32_t zero = 0;

	if (ep->base.status)
		return;
	ep->base.status = status;
	ep->flush_first = first;
	atomic_compare_exchange_strong_explicit(&ep->chan->broken[ep->side],
						&zero, peer_code,
						memory_order_release,
						memory_order_relaxed);
	shm_kick(ep->peer.ctl);
}

static uint32_t shm_ep_drain(struct shm_ep *ep, uint32_t budget);

/* The peer went away (or broke the connection with @code). */
static void shm_ep_lost(struct shm_ep *ep, int code)
{
	/* What it sent before it went is still delivered. */
	shm_ep_drain(ep, UINT32_MAX);
	shm_ep_break(ep, code, -AUGUR_EPEER_GONE, code);
}

/* Is the peer still there?  @full: also the costlier checks (tick). */
static void shm_ep_check(struct shm_ep *ep, bool full)
{
	int32_t code;
	uint32_t i, idx;

	if (ep->base.status)
		return;
	code = shm_load_acquire(&ep->chan->broken[!ep->side]);
	if (code) {
		shm_ep_lost(ep, code);
		return;
	}
	if (!full)
		return;
	if (shm_peer_gone(&ep->peer)) {
		shm_ep_lost(ep, -AUGUR_EPEER_GONE);
		return;
	}
	/* Let go of mappings of regions the peer has deregistered. */
	for (i = 0; i < ep->n_mapped;) {
		idx = ep->mapped[i];
		if (shm_load_relaxed(&ep->peer.ctl->region[idx].gen) !=
		    ep->rcache[idx].gen)
			shm_rcache_drop(ep, idx); /* moves another into i */
		else
			i++;
	}
}

/* --- Operations ------------------------------------------------------------------- */

static bool shm_op_needs_ring(const struct auv_op *op)
{
	return op->opcode == AUV_OP_SEND || op->opcode == AUV_OP_WRITE_IMM;
}

/*
 * Can the next SEND or WRITE_IMM go now?  It needs a free ring slot and a
 * receive posted at the peer (else: receiver not ready, retry later).
 */
static bool shm_msg_ready(struct shm_ep *ep)
{
	if (shm_ring_full(ep))
		return false;
	if ((int32_t)(ep->peer_posted - ep->out_tail) > 0)
		return true;
	ep->peer_posted = shm_load_acquire(&ep->peer_rxq->posted);
	return (int32_t)(ep->peer_posted - ep->out_tail) > 0;
}

/* Length of the peer's receive that the next message will use. */
static uint32_t shm_msg_room(const struct shm_ep *ep)
{
	return ep->peer_rxq->len[ep->out_tail & (SHM_RXQ_SLOTS - 1)];
}

/*
 * Carry out @op now.  Return: 0 or the failure (-AUGUR_EREMOTE_ACCESS;
 * -AUGUR_EREMOTE_INVALID: a SEND larger than the receive waiting for it).
 * A SEND or WRITE_IMM needs shm_msg_ready().
 */
static int shm_exec(struct shm_ep *ep, const struct auv_op *op)
{
	uint64_t old;
	void *p;
	int rc;

	switch (op->opcode) {
	case AUV_OP_READ:
		rc = shm_resolve(ep, op->rkey, op->remote_addr, op->len,
				 AUV_ACCESS_REMOTE_READ, &p);
		if (rc)
			return rc;
		memcpy(op->local, p, op->len);
		return 0;
	case AUV_OP_WRITE:
	case AUV_OP_WRITE_IMM:
		rc = shm_resolve(ep, op->rkey, op->remote_addr, op->len,
				 AUV_ACCESS_REMOTE_WRITE, &p);
		if (rc)
			return rc;
		shm_smp_wmb();
		memcpy(p, op->local, op->len);
		if (op->opcode == AUV_OP_WRITE_IMM)
			shm_ring_put(ep, SHM_MSG_IMM, NULL, 0, op->imm);
		return 0;
	case AUV_OP_SEND:
		if (op->len > shm_msg_room(ep))
			return auvp_fail(-AUGUR_EREMOTE_INVALID,
					 "shm: SEND of %u bytes, but the peer's "
					 "receive buffer holds %u",
					 op->len, shm_msg_room(ep));
		shm_ring_put(ep, SHM_MSG_SEND, op->local, op->len, 0);
		return 0;
	case AUV_OP_CAS:
		rc = shm_resolve(ep, op->rkey, op->remote_addr, 8,
				 AUV_ACCESS_REMOTE_ATOMIC, &p);
		if (rc)
			return rc;
		old = op->compare;
		__atomic_compare_exchange_n((uint64_t *)p, &old, op->swap_add,
					    false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
		*(uint64_t *)op->local = old;
		return 0;
	case AUV_OP_FAA:
		rc = shm_resolve(ep, op->rkey, op->remote_addr, 8,
				 AUV_ACCESS_REMOTE_ATOMIC, &p);
		if (rc)
			return rc;
		old = __atomic_fetch_add((uint64_t *)p, op->swap_add,
					 __ATOMIC_SEQ_CST);
		*(uint64_t *)op->local = old;
		return 0;
	}
	return -AUGUR_EREMOTE_INVALID; /* core lets no other opcode through */
}

static struct shm_sqe *shm_sq_append(struct shm_ep *ep, const struct auv_op *op,
				     uint32_t seq, uint8_t state)
{
	struct shm_sqe *e = &ep->sq[ep->sq_tail & ep->sq_mask];

	e->op = *op;
	e->seq = seq;
	e->state = state;
	e->status = 0;
	ep->sq_tail++;
	if (state != SHM_SQE_QUEUED)
		ep->sq_exec = ep->sq_tail;
	return e;
}

/* @op (number @seq) has been carried out with result @status. */
static void shm_sq_done(struct shm_ep *ep, const struct auv_op *op,
			uint32_t seq, int status)
{
	struct shm_ctx *c = ep->ctx;

	if (!status && !(op->flags & AUV_OP_SIGNALED))
		return; /* nothing to report, ever */
	if (ep->sq_head == ep->sq_tail && shm_cq_free(c)) {
		shm_cq_push_op(c, ep, op, seq, status);
		return;
	}
	shm_sq_append(ep, op, seq, SHM_SQE_DONE)->status = status;
}

/* Defer @op (number @seq).  Return: 0 or -ENOMEM. */
static int shm_sq_defer(struct shm_ep *ep, const struct auv_op *op,
			uint32_t seq)
{
	uint32_t inl = ep->ctx->base.caps.max_inline;
	struct shm_sqe *e;

	if (!ep->sq_inline && inl) {
		ep->sq_inline = malloc((size_t)(ep->sq_mask + 1) * inl);
		if (!ep->sq_inline)
			return auvp_fail(-ENOMEM, "shm: no memory to defer "
						  "operations");
	}
	e = shm_sq_append(ep, op, seq, SHM_SQE_QUEUED);
	/* Inline data may be reused once auv_post() returns: keep a copy. */
	if ((op->opcode == AUV_OP_WRITE || shm_op_needs_ring(op)) &&
	    op->len <= inl) {
		e->op.local = ep->sq_inline +
			      (size_t)((ep->sq_tail - 1) & ep->sq_mask) * inl;
		memcpy(e->op.local, op->local, op->len);
	}
	return 0;
}

/* Carry out @op (number @seq; @e its deferred entry, if any) now. */
static void shm_sq_run(struct shm_ep *ep, const struct auv_op *op,
		       uint32_t seq, struct shm_sqe *e)
{
	int rc = shm_exec(ep, op);

	if (e) {
		e->state = SHM_SQE_DONE;
		e->status = rc;
	} else {
		shm_sq_done(ep, op, seq, rc);
	}
	if (rc)
		shm_ep_break(ep, rc,
			     rc == -AUGUR_EREMOTE_INVALID ?
				     -AUGUR_EREMOTE_INVALID :
				     -AUGUR_EPEER_GONE,
			     0);
}

static int shm_flush_code(struct shm_ep *ep)
{
	int code = ep->flush_first ? ep->flush_first : -AUGUR_EFLUSHED;

	ep->flush_first = 0;
	return code;
}

/*
 * Move @ep's send queue on: carry out deferred operations while the peer
 * can take their messages, then report finished operations in order while
 * the completion queue has room.  On a failed endpoint everything deferred
 * is flushed.
 */
static void shm_sq_progress(struct shm_ep *ep)
{
	struct shm_ctx *c = ep->ctx;
	struct shm_sqe *e;

	while (!ep->base.status && ep->sq_exec != ep->sq_tail) {
		e = &ep->sq[ep->sq_exec & ep->sq_mask];
		if (shm_op_needs_ring(&e->op) && !shm_msg_ready(ep))
			break;
		ep->sq_exec++;
		shm_sq_run(ep, &e->op, e->seq, e);
	}
	shm_ring_publish(ep);

	while (ep->sq_head != ep->sq_tail) {
		e = &ep->sq[ep->sq_head & ep->sq_mask];
		if (e->state == SHM_SQE_QUEUED) {
			if (!ep->base.status)
				break;
			e->status = shm_flush_code(ep);
			e->state = SHM_SQE_DONE;
			ep->sq_exec = ep->sq_head + 1;
		}
		if (e->status || (e->op.flags & AUV_OP_SIGNALED)) {
			if (!shm_cq_free(c))
				break;
			shm_cq_push_op(c, ep, &e->op, e->seq, e->status);
		}
		ep->sq_head++;
	}
}

static int shm_post(struct auv_ep *bep, const struct auv_op *ops, int n)
{
	struct shm_ep *ep = to_ep(bep);
	const struct auv_op *op;
	uint32_t seq;
	int i, rc = 0;

	shm_ep_check(ep, false);
	if (ep->base.status)
		return ep->base.status;
	for (i = 0; i < n; i++) {
		op = &ops[i];
		if (ep->sq_posted - ep->sq_retired >= ep->sq_depth)
			break; /* send queue full */
		seq = ep->sq_posted;
		if (ep->base.status) {
			/* An earlier operation of this batch failed. */
			shm_sq_done(ep, op, seq, -AUGUR_EFLUSHED);
		} else if (ep->sq_exec != ep->sq_tail ||
			   (shm_op_needs_ring(op) && !shm_msg_ready(ep))) {
			rc = shm_sq_defer(ep, op, seq);
			if (rc)
				break;
		} else {
			shm_sq_run(ep, op, seq, NULL);
		}
		ep->sq_posted++;
	}
	shm_ring_publish(ep);
	if (i == 0 && rc)
		return rc;
	return i;
}

/* Wake the peer if it sleeps waiting for our ring space or receives. */
static void shm_rx_kick(struct shm_ep *ep)
{
	shm_smp_mb();
	if (shm_load_relaxed(&ep->in->want_space)) {
		shm_store_relaxed(&ep->in->want_space, 0);
		shm_kick(ep->peer.ctl);
	}
}

/*
 * Tell the peer about receives posted since the last call, as far as the
 * window of SHM_RXQ_SLOTS beyond the messages consumed allows.  Receive
 * number in_head is at rq[rq_head].  Return: whether any were published.
 */
static bool shm_rx_publish(struct shm_ep *ep)
{
	uint32_t end = ep->in_head + ep->rq_n, start = ep->rq_pub, j;

	while (ep->rq_pub != end && ep->rq_pub - ep->in_head < SHM_RXQ_SLOTS) {
		j = (ep->rq_head + (ep->rq_pub - ep->in_head)) % ep->rq_cap;
		ep->rxq->len[ep->rq_pub & (SHM_RXQ_SLOTS - 1)] = ep->rq[j].len;
		ep->rq_pub++;
	}
	if (ep->rq_pub == start)
		return false;
	shm_store_release(&ep->rxq->posted, ep->rq_pub);
	return true;
}

static int shm_post_recv(struct auv_ep *bep, void *buf, uint32_t len,
			 struct auv_mr *mr, uint64_t cookie)
{
	struct shm_ep *ep = to_ep(bep);
	struct shm_recv *r;

	if (ep->rq_n == ep->rq_cap)
		return -EAGAIN;
	r = &ep->rq[(ep->rq_head + ep->rq_n) % ep->rq_cap];
	r->buf = buf;
	r->len = len;
	r->cookie = cookie;
	ep->rq_n++;
	if (shm_rx_publish(ep))
		shm_rx_kick(ep);
	return 0;
}

static void shm_rq_flush(struct shm_ep *ep)
{
	struct shm_ctx *c = ep->ctx;
	struct shm_recv *r;

	while (ep->rq_n && shm_cq_free(c)) {
		r = &ep->rq[ep->rq_head];
		shm_cq_push(c, ep, r->cookie, -AUGUR_EFLUSHED, AUV_OP_RECV, 0,
			    0, 0);
		ep->rq_head = (ep->rq_head + 1) % ep->rq_cap;
		ep->rq_n--;
	}
}

/*
 * Match inbound messages to posted receives, at most @budget.  Message k
 * takes receive k (the sender checked its length against what we
 * published); a malformed one fails the receive and the connection.
 * Return: receives completed.
 */
static uint32_t shm_ep_drain(struct shm_ep *ep, uint32_t budget)
{
	struct shm_ctx *c = ep->ctx;
	uint32_t done = 0, kind, len, imm, byte_len;
	const struct shm_msg *m;
	struct shm_recv *r;
	uint8_t flags;
	int status = 0;

	while (done < budget && ep->rq_n && shm_cq_free(c)) {
		if (ep->in_head == ep->in_tail) {
			ep->in_tail = shm_load_acquire(&ep->in->tail);
			if (ep->in_head == ep->in_tail)
				break;
		}
		r = &ep->rq[ep->rq_head];
		m = shm_slot(ep->in_slots, ep->stride, ep->nslots,
			     ep->in_head);
		kind = m->kind;
		len = m->len;
		imm = m->imm;
		flags = 0;
		byte_len = 0;
		if (ep->in_tail - ep->in_head > ep->nslots) {
			status = -AUGUR_EPROTO; /* a corrupt tail */
		} else if (kind == SHM_MSG_SEND && len <= SHM_MSG_MAX) {
			byte_len = len;
			if (len > r->len)
				status = -AUGUR_EREMOTE_INVALID;
			else
				memcpy(r->buf, m->data, len);
		} else if (kind == SHM_MSG_IMM) {
			flags = AUV_WC_IMM;
		} else {
			status = -AUGUR_EPROTO;
		}
		shm_cq_push(c, ep, r->cookie, status, AUV_OP_RECV, flags,
			    byte_len, imm);
		ep->rq_head = (ep->rq_head + 1) % ep->rq_cap;
		ep->rq_n--;
		done++;
		if (status)
			break;
		ep->in_head++;
	}
	if (done) {
		shm_store_release(&ep->in->head, ep->in_head);
		if (!status)
			shm_rx_publish(ep); /* the window moved */
		shm_rx_kick(ep);
	}
	if (status)
		shm_ep_break(ep, status,
			     status == -AUGUR_EREMOTE_INVALID ?
				     -AUGUR_EREMOTE_INVALID :
				     -AUGUR_EPEER_GONE,
			     0);
	return done;
}

/* --- Progress, poll, wait --------------------------------------------------------- */

/* One pass over every endpoint; @budget bounds the receives completed. */
static void shm_progress(struct shm_ctx *c, uint32_t budget)
{
	struct shm_ep *ep;
	uint64_t now = auvp_now_ns();
	bool full = false;

	if (now >= c->next_tick) {
		full = true;
		c->next_tick = now + SHM_TICK_NS;
	}
	shm_for_each_ep(ep, c) {
		shm_ep_check(ep, full);
		if (ep->sq_head != ep->sq_tail)
			shm_sq_progress(ep);
		if (ep->base.status)
			shm_rq_flush(ep);
		else if (ep->rq_n && budget)
			budget -= shm_ep_drain(ep, budget);
	}
	/* Rotate, so that no endpoint always drains first. */
	if (c->n_eps > 1) {
		struct shm_list *first = c->eps.next;

		shm_list_del(first);
		shm_list_add_tail(first, &c->eps);
	}
}

static int shm_poll(struct auv_ctx *bctx, struct auv_wc *wc, int max)
{
	struct shm_ctx *c = to_ctx(bctx);
	struct shm_cqe *e;
	uint32_t n, k;

	shm_progress(c, (uint32_t)max > c->cq_n ? (uint32_t)max - c->cq_n : 0);
	n = c->cq_n < (uint32_t)max ? c->cq_n : (uint32_t)max;
	for (k = 0; k < n; k++) {
		e = &c->cq[c->cq_head];
		wc[k] = e->wc;
		/* The caller has seen it: its send queue slots are free. */
		if (e->sq_ep)
			e->sq_ep->sq_retired = e->seq + 1;
		if (++c->cq_head == c->cq_depth)
			c->cq_head = 0;
	}
	c->cq_n -= n;
	return (int)n;
}

/* Would progress on @ep produce a completion or free something?  Called
 * while going to sleep, after a full fence. */
static bool shm_ep_ready(struct shm_ep *ep)
{
	struct shm_ctx *c = ep->ctx;

	if (!shm_cq_free(c))
		return true; /* the caller should poll */
	if (ep->base.status)
		return ep->sq_head != ep->sq_tail || ep->rq_n;
	if (shm_load_relaxed(&ep->chan->broken[!ep->side]))
		return true;
	if (ep->rq_n && shm_load_acquire(&ep->in->tail) != ep->in_head)
		return true;
	if (ep->sq_exec != ep->sq_tail &&
	    (!shm_op_needs_ring(&ep->sq[ep->sq_exec & ep->sq_mask].op) ||
	     shm_msg_ready(ep)))
		return true;
	return ep->sq_head != ep->sq_exec; /* done, waiting for the queue */
}

static int shm_wait(struct auv_ctx *bctx, int timeout_ms)
{
	struct shm_ctx *c = to_ctx(bctx);
	uint64_t deadline = shm_deadline(timeout_ms), now, slice;
	struct shm_ep *ep;
	uint32_t v;
	bool ready;

	for (;;) {
		shm_progress(c, SHM_WAIT_BUDGET);
		if (c->cq_n)
			return 1;
		if (timeout_ms == 0)
			return 0;
		v = shm_sleep_prepare(c);
		/* Ask peers to wake us when they take messages or post
		 * receives that deferred operations wait for. */
		shm_for_each_ep(ep, c)
			if (ep->sq_exec != ep->sq_tail && !ep->base.status)
				atomic_store_explicit(&ep->out->want_space, 1,
						      memory_order_seq_cst);
		shm_smp_mb();
		ready = false;
		shm_for_each_ep(ep, c)
			if (shm_ep_ready(ep)) {
				ready = true;
				break;
			}
		now = auvp_now_ns();
		if (!ready && now < deadline) {
			slice = deadline == UINT64_MAX ? UINT64_MAX :
							 deadline - now;
			if (c->n_eps && slice > SHM_TICK_NS)
				slice = SHM_TICK_NS;
			shm_futex_wait(&c->ctl->wake_seq, v, slice);
		}
		shm_sleep_finish(c);
		if (ready)
			continue;
		if (shm_load_acquire(&c->ctl->wake_seq) != v) {
			shm_progress(c, SHM_WAIT_BUDGET);
			return 1;
		}
		if (auvp_now_ns() >= deadline) {
			shm_progress(c, SHM_WAIT_BUDGET);
			return c->cq_n ? 1 : 0;
		}
	}
}

/* --- Endpoints ---------------------------------------------------------------------- */

static struct shm_ep *shm_ep_alloc(struct shm_ctx *c)
{
	struct shm_ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		goto out_fail;
	ep->rcache = calloc(SHM_NREGIONS, sizeof(*ep->rcache));
	ep->mapped = calloc(SHM_NREGIONS, sizeof(*ep->mapped));
	ep->rq_cap = c->base.opts.rq_depth ? c->base.opts.rq_depth : 1;
	ep->rq = calloc(ep->rq_cap, sizeof(*ep->rq));
	ep->sq_depth = c->base.opts.sq_depth;
	ep->sq_mask = 1;
	while (ep->sq_mask < ep->sq_depth)
		ep->sq_mask <<= 1;
	ep->sq = calloc(ep->sq_mask, sizeof(*ep->sq));
	ep->sq_mask--;
	if (!ep->rcache || !ep->mapped || !ep->rq || !ep->sq)
		goto out_free;
	ep->ctx = c;
	ep->base.ctx = &c->base;
	ep->chan_fd = -1;
	ep->peer.pidfd = -1;
	shm_list_init(&ep->link);
	return ep;

out_free:
	free(ep->sq);
	free(ep->rq);
	free(ep->mapped);
	free(ep->rcache);
	free(ep);
out_fail:
	auvp_fail(-ENOMEM, "shm: out of memory for an endpoint");
	return NULL;
}

static void shm_ep_free(struct shm_ep *ep)
{
	free(ep->sq_inline);
	free(ep->sq);
	free(ep->rq);
	free(ep->mapped);
	free(ep->rcache);
	free(ep);
}

/* Bind @ep to its channel and peer, and make it live. */
static void shm_ep_attach(struct shm_ep *ep, int side, struct shm_chan *chan,
			  size_t chan_len, int chan_fd,
			  const struct shm_peer *peer)
{
	struct shm_ctx *c = ep->ctx;
	size_t ring_bytes = (size_t)chan->nslots * chan->stride;

	ep->side = side;
	ep->chan = chan;
	ep->chan_len = chan_len;
	ep->chan_fd = chan_fd;
	ep->peer = *peer;
	ep->nslots = chan->nslots;
	ep->stride = chan->stride;
	ep->out = &chan->ring[side];
	ep->in = &chan->ring[!side];
	ep->out_slots = (char *)chan + chan->slots_off + side * ring_bytes;
	ep->in_slots = (char *)chan + chan->slots_off + !side * ring_bytes;
	ep->rxq = &chan->rxq[side];
	ep->peer_rxq = &chan->rxq[!side];
	shm_list_add_tail(&ep->link, &c->eps);
	c->n_eps++;
}

static void shm_ep_destroy(struct shm_ep *ep, bool flush)
{
	struct shm_ctx *c = ep->ctx;
	int32_t zero = 0;
	uint32_t i, k;

	if (flush) {
		/* Outstanding work completes (as far as the queue holds). */
		if (!ep->base.status)
			ep->base.status = -AUGUR_EFLUSHED;
		ep->flush_first = 0;
		shm_sq_progress(ep);
		shm_rq_flush(ep);
		/* Its completions no longer free anything. */
		for (i = 0, k = c->cq_head; i < c->cq_n; i++) {
			if (c->cq[k].sq_ep == ep)
				c->cq[k].sq_ep = NULL;
			if (++k == c->cq_depth)
				k = 0;
		}
	}
	atomic_compare_exchange_strong_explicit(&ep->chan->broken[ep->side],
						&zero, -AUGUR_EPEER_GONE,
						memory_order_release,
						memory_order_relaxed);
	shm_kick(ep->peer.ctl);
	while (ep->n_mapped)
		shm_rcache_drop(ep, ep->mapped[0]);
	shm_peer_detach(&ep->peer);
	munmap(ep->chan, ep->chan_len);
	if (ep->chan_fd >= 0)
		close(ep->chan_fd);
	shm_list_del(&ep->link);
	c->n_eps--;
	shm_ep_free(ep);
}

static void shm_ep_close(struct auv_ep *bep)
{
	shm_ep_destroy(to_ep(bep), true);
}

static int shm_parse_addr(const char *addr, pid_t *pid, int *fd)
{
	const char *p = addr + 4; /* core checked the "shm:" prefix */
	unsigned long a, b;
	char *end;

	if (*p < '0' || *p > '9')
		goto bad;
	a = strtoul(p, &end, 10);
	if (*end != ':' || a == 0 || a > INT_MAX)
		goto bad;
	p = end + 1;
	if (*p < '0' || *p > '9')
		goto bad;
	b = strtoul(p, &end, 10);
	if (*end || b > INT_MAX)
		goto bad;
	*pid = (pid_t)a;
	*fd = (int)b;
	return 0;
bad:
	return auvp_fail(-EINVAL,
			 "shm: malformed address '%.64s' (expected "
			 "shm:<pid>:<fd>)",
			 addr);
}

static int shm_chan_create(struct shm_ctx *c, int *fdp, struct shm_chan **chp,
			   size_t *lenp)
{
	size_t len = SHM_CHAN_HDR + 2 * (size_t)SHM_NSLOTS * SHM_SLOT_STRIDE;
	struct shm_chan *ch;
	int fd, rc;

	len = shm_round_page(len, c->page);
	rc = shm_memfd("augur-shm-chan", len, &fd);
	if (rc)
		return rc;
	ch = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ch == MAP_FAILED) {
		rc = auvp_fail(-errno, "shm: mmap of a channel: %s",
			       strerror(errno));
		close(fd);
		return rc;
	}
	ch->version = SHM_VERSION;
	ch->size = (uint32_t)len;
	ch->nonce = shm_nonce();
	ch->nslots = SHM_NSLOTS;
	ch->stride = SHM_SLOT_STRIDE;
	ch->msg_max = SHM_MSG_MAX;
	ch->slots_off = SHM_CHAN_HDR;
	ch->pid[0] = (int32_t)getpid();
	ch->magic = SHM_CHAN_MAGIC;
	shm_store_release(&ch->state, SHM_CHAN_WAITING);
	*fdp = fd;
	*chp = ch;
	*lenp = len;
	return 0;
}

/* Post a connection request in the peer's mailbox. */
static int shm_mail_post(struct shm_ctx *c, struct shm_peer *peer, int chan_fd,
			 const struct shm_chan *ch, const void *priv,
			 size_t priv_len, uint64_t deadline, const char *addr,
			 struct shm_mail **slotp, uint64_t *wordp)
{
	struct timespec ms = { 0, 1000000 };
	struct shm_mail *m;
	uint64_t w, posted;
	uint32_t i;

	for (;;) {
		for (i = 0; i < SHM_NMAIL; i++) {
			m = &peer->ctl->mail[i];
			w = shm_load_relaxed(&m->word);
			if (SHM_MAIL_STATE(w) != SHM_MAIL_FREE)
				continue;
			if (!atomic_compare_exchange_strong_explicit(
				    &m->word, &w,
				    SHM_MAIL_WORD(SHM_MAIL_TICKET(w),
						  SHM_MAIL_CLAIMED),
				    memory_order_acquire, memory_order_relaxed))
				continue;
			m->nonce = ch->nonce;
			m->pid = (int32_t)getpid();
			m->chan_fd = chan_fd;
			m->ctl_fd = c->ctl_fd;
			m->priv_len = (uint32_t)priv_len;
			if (priv_len)
				memcpy(m->priv, priv, priv_len);
			posted = SHM_MAIL_WORD(SHM_MAIL_TICKET(w),
					       SHM_MAIL_POSTED);
			shm_store_release(&m->word, posted);
			shm_kick(peer->ctl);
			*slotp = m;
			*wordp = posted;
			return 0;
		}
		if (auvp_now_ns() >= deadline)
			return auvp_fail(-ETIMEDOUT,
					 "shm: %s: its connection mailbox "
					 "stayed full (%u requests waiting)",
					 addr, SHM_NMAIL);
		if (shm_peer_gone(peer))
			return auvp_fail(-ECONNREFUSED,
					 "shm: %s: the peer exited", addr);
		nanosleep(&ms, NULL);
	}
}

/* Wait for the acceptor's answer.  Return: 0 accepted, or -errno. */
static int shm_connect_wait(struct shm_ctx *c, struct shm_peer *peer,
			    struct shm_chan *ch, uint64_t deadline,
			    const char *addr)
{
	uint32_t s, exp;
	uint64_t now, slice;
	int rc;

	for (;;) {
		s = shm_load_acquire(&ch->state);
		if (s == SHM_CHAN_ACCEPTED)
			return 0;
		if (s == SHM_CHAN_REFUSED)
			return auvp_fail(-ECONNREFUSED,
					 "shm: %s refused the connection (it "
					 "could not map this context's "
					 "segments)",
					 addr);
		now = auvp_now_ns();
		if (now >= deadline)
			rc = auvp_fail(-ETIMEDOUT,
				       "shm: %s did not accept within %u ms",
				       addr, c->base.opts.connect_timeout_ms);
		else if (shm_peer_gone(peer))
			rc = auvp_fail(-ECONNREFUSED,
				       "shm: %s exited or closed its context "
				       "before accepting",
				       addr);
		else
			rc = 0;
		if (!rc) {
			slice = deadline - now;
			if (slice > SHM_TICK_NS)
				slice = SHM_TICK_NS;
			shm_futex_wait(&ch->state, SHM_CHAN_WAITING, slice);
			continue;
		}
		exp = SHM_CHAN_WAITING;
		if (atomic_compare_exchange_strong_explicit(
			    &ch->state, &exp, SHM_CHAN_ABANDONED,
			    memory_order_acq_rel, memory_order_acquire))
			return rc;
		/* The acceptor answered just now: look again. */
	}
}

static int shm_ep_connect(struct auv_ctx *bctx, const char *addr,
			  const void *priv, size_t priv_len,
			  struct auv_ep **out)
{
	struct shm_ctx *c = to_ctx(bctx);
	uint64_t deadline, word = 0;
	struct shm_peer peer;
	struct shm_chan *ch = NULL;
	struct shm_mail *slot = NULL;
	struct shm_ep *ep;
	size_t ch_len = 0;
	int fd = -1, ch_fd = -1, rc;
	pid_t pid = 0;

	rc = shm_parse_addr(addr, &pid, &fd);
	if (rc)
		return rc;
	deadline = auvp_now_ns() +
		   (uint64_t)c->base.opts.connect_timeout_ms * NS_PER_MS;
	rc = shm_peer_attach(c, pid, fd, &peer, addr);
	if (rc)
		return rc;
	rc = shm_chan_create(c, &ch_fd, &ch, &ch_len);
	if (rc)
		goto out_detach;
	ep = shm_ep_alloc(c);
	if (!ep) {
		rc = -ENOMEM;
		goto out_unmap_chan;
	}
	rc = shm_mail_post(c, &peer, ch_fd, ch, priv, priv_len, deadline,
			   addr, &slot, &word);
	if (rc)
		goto out_free_ep;
	rc = shm_connect_wait(c, &peer, ch, deadline, addr);
	if (rc)
		goto out_withdraw;
	close(ch_fd); /* the acceptor has its own mapping now */
	shm_ep_attach(ep, 0, ch, ch_len, -1, &peer);
	*out = &ep->base;
	return 0;

out_withdraw:
	/* Still unread: take it back (else the acceptor finds it abandoned). */
	atomic_compare_exchange_strong_explicit(
		&slot->word, &word,
		SHM_MAIL_WORD(SHM_MAIL_TICKET(word) + 1, SHM_MAIL_FREE),
		memory_order_relaxed, memory_order_relaxed);
out_free_ep:
	shm_ep_free(ep);
out_unmap_chan:
	munmap(ch, ch_len);
	close(ch_fd);
out_detach:
	shm_peer_detach(&peer);
	return rc;
}

struct shm_req {
	uint64_t nonce;
	pid_t pid;
	int chan_fd;
	int ctl_fd;
	uint32_t priv_len;
	uint8_t priv[AUV_PRIV_MAX];
};

/* Map and check the channel of request @q. */
static int shm_chan_open(struct shm_ctx *c, const struct shm_req *q,
			 struct shm_chan **chp, size_t *lenp)
{
	struct shm_chan *ch;
	size_t len, need;
	void *map;
	int f, rc;

	rc = shm_open_proc(q->pid, q->chan_fd, O_RDWR, &f);
	if (rc)
		return rc;
	rc = shm_map_foreign(f, SHM_CHAN_HDR, c->page, PROT_READ | PROT_WRITE,
			     &map, &len);
	if (rc)
		goto out_close;
	ch = map;
	need = SHM_CHAN_HDR + 2 * (size_t)SHM_NSLOTS * SHM_SLOT_STRIDE;
	if (ch->magic != SHM_CHAN_MAGIC || ch->version != SHM_VERSION ||
	    ch->nonce != q->nonce || ch->nslots != SHM_NSLOTS ||
	    ch->stride != SHM_SLOT_STRIDE || ch->msg_max != SHM_MSG_MAX ||
	    ch->slots_off != SHM_CHAN_HDR || ch->pid[0] != q->pid) {
		rc = -EPROTO;
		goto out_unmap;
	}
	munmap(map, len);
	rc = shm_map_foreign(f, need, c->page, PROT_READ | PROT_WRITE, &map,
			     &len);
	if (rc)
		goto out_close;
	close(f);
	*chp = map;
	*lenp = len;
	return 0;

out_unmap:
	munmap(map, len);
out_close:
	close(f);
	return rc;
}

/* Set up the endpoint for request @q.  Return: 0, or -errno (the request
 * is dropped or refused). */
static int shm_accept_req(struct shm_ctx *c, const struct shm_req *q,
			  struct shm_ep **out)
{
	struct shm_peer peer;
	struct shm_chan *ch;
	struct shm_ep *ep;
	uint32_t exp;
	size_t len;
	int rc;

	rc = shm_chan_open(c, q, &ch, &len);
	if (rc)
		return rc; /* the connector is gone or garbled: drop it */
	ep = shm_ep_alloc(c);
	if (!ep) {
		rc = -ENOMEM;
		goto out_refuse;
	}
	rc = shm_peer_attach(c, q->pid, q->ctl_fd, &peer, "connector");
	if (rc)
		goto out_free_ep;
	ch->pid[1] = (int32_t)getpid();
	exp = SHM_CHAN_WAITING;
	if (!atomic_compare_exchange_strong_explicit(
		    &ch->state, &exp, SHM_CHAN_ACCEPTED, memory_order_acq_rel,
		    memory_order_acquire)) {
		rc = -ECONNABORTED; /* it gave up waiting */
		goto out_detach;
	}
	shm_futex_wake(&ch->state);
	shm_ep_attach(ep, 1, ch, len, -1, &peer);
	*out = ep;
	return 0;

out_detach:
	shm_peer_detach(&peer);
out_free_ep:
	shm_ep_free(ep);
out_refuse:
	exp = SHM_CHAN_WAITING;
	if (atomic_compare_exchange_strong_explicit(
		    &ch->state, &exp, SHM_CHAN_REFUSED, memory_order_acq_rel,
		    memory_order_acquire))
		shm_futex_wake(&ch->state);
	munmap(ch, len);
	return rc;
}

/* Take and set up one posted request.  Return: 1 accepted, 0 none, or
 * -ENOMEM. */
static int shm_accept_one(struct shm_ctx *c, struct shm_ep **out,
			  void *priv, size_t *priv_len)
{
	struct shm_req q;
	struct shm_mail *m;
	uint64_t w;
	uint32_t i;
	int rc;

	for (i = 0; i < SHM_NMAIL; i++) {
		m = &c->ctl->mail[i];
		w = shm_load_acquire(&m->word);
		if (SHM_MAIL_STATE(w) != SHM_MAIL_POSTED)
			continue;
		if (!atomic_compare_exchange_strong_explicit(
			    &m->word, &w,
			    SHM_MAIL_WORD(SHM_MAIL_TICKET(w), SHM_MAIL_TAKEN),
			    memory_order_acq_rel, memory_order_relaxed))
			continue;
		q.nonce = m->nonce;
		q.pid = m->pid;
		q.chan_fd = m->chan_fd;
		q.ctl_fd = m->ctl_fd;
		q.priv_len = m->priv_len < AUV_PRIV_MAX ? m->priv_len :
							  AUV_PRIV_MAX;
		memcpy(q.priv, m->priv, q.priv_len);
		shm_store_release(&m->word,
				  SHM_MAIL_WORD(SHM_MAIL_TICKET(w) + 1,
						SHM_MAIL_FREE));
		rc = shm_accept_req(c, &q, out);
		if (rc == -ENOMEM)
			return rc;
		if (rc)
			continue;
		if (priv)
			memcpy(priv, q.priv, q.priv_len);
		if (priv_len)
			*priv_len = q.priv_len;
		return 1;
	}
	return 0;
}

static bool shm_mail_waiting(struct shm_ctx *c)
{
	uint32_t i;

	for (i = 0; i < SHM_NMAIL; i++)
		if (SHM_MAIL_STATE(shm_load_relaxed(&c->ctl->mail[i].word)) ==
		    SHM_MAIL_POSTED)
			return true;
	return false;
}

static int shm_ep_accept(struct auv_ctx *bctx, int timeout_ms,
			 struct auv_ep **out, void *priv, size_t *priv_len)
{
	struct shm_ctx *c = to_ctx(bctx);
	uint64_t deadline = shm_deadline(timeout_ms), now;
	struct shm_ep *ep = NULL;
	uint32_t v;
	int rc;

	for (;;) {
		rc = shm_accept_one(c, &ep, priv, priv_len);
		if (rc < 0)
			return rc;
		if (rc) {
			*out = &ep->base;
			return 0;
		}
		now = auvp_now_ns();
		if (timeout_ms == 0 || now >= deadline)
			return auvp_fail(-ETIMEDOUT,
					 "shm: no connection request within "
					 "%d ms",
					 timeout_ms);
		v = shm_sleep_prepare(c);
		if (!shm_mail_waiting(c))
			shm_futex_wait(&c->ctl->wake_seq, v,
				       deadline == UINT64_MAX ? UINT64_MAX :
								deadline - now);
		shm_sleep_finish(c);
	}
}

/* --- The ops table (each entry leaves errno as it found it) ------------------------ */

static int shm_op_ctx_open(const struct auv_ctx_opts *opts,
			   struct auv_ctx **out)
{
	int e = errno, rc = shm_ctx_open(opts, out);

	errno = e;
	return rc;
}

static void shm_op_ctx_close(struct auv_ctx *ctx)
{
	int e = errno;

	shm_ctx_close(ctx);
	errno = e;
}

static int shm_op_mr_alloc(struct auv_ctx *ctx, size_t len,
			   unsigned int access, struct auv_mr **out)
{
	int e = errno, rc = shm_mr_alloc(ctx, len, access, out);

	errno = e;
	return rc;
}

static int shm_op_mr_dereg(struct auv_mr *mr)
{
	int e = errno, rc = shm_mr_dereg(mr);

	errno = e;
	return rc;
}

static int shm_op_ep_connect(struct auv_ctx *ctx, const char *addr,
			     const void *priv, size_t priv_len,
			     struct auv_ep **out)
{
	int e = errno, rc = shm_ep_connect(ctx, addr, priv, priv_len, out);

	errno = e;
	return rc;
}

static int shm_op_ep_accept(struct auv_ctx *ctx, int timeout_ms,
			    struct auv_ep **out, void *priv, size_t *priv_len)
{
	int e = errno, rc = shm_ep_accept(ctx, timeout_ms, out, priv, priv_len);

	errno = e;
	return rc;
}

static void shm_op_ep_close(struct auv_ep *ep)
{
	int e = errno;

	shm_ep_close(ep);
	errno = e;
}

static int shm_op_post(struct auv_ep *ep, const struct auv_op *ops, int n)
{
	int e = errno, rc = shm_post(ep, ops, n);

	errno = e;
	return rc;
}

static int shm_op_poll(struct auv_ctx *ctx, struct auv_wc *wc, int max)
{
	int e = errno, rc = shm_poll(ctx, wc, max);

	errno = e;
	return rc;
}

static int shm_op_wait(struct auv_ctx *ctx, int timeout_ms)
{
	int e = errno, rc = shm_wait(ctx, timeout_ms);

	errno = e;
	return rc;
}

const struct auv_provider_ops auvp_shm_ops = {
	.name = "shm",
	.ctx_open = shm_op_ctx_open,
	.ctx_close = shm_op_ctx_close,
	.mr_alloc = shm_op_mr_alloc,
	.mr_reg = shm_mr_reg,
	.mr_dereg = shm_op_mr_dereg,
	.ep_connect = shm_op_ep_connect,
	.ep_accept = shm_op_ep_accept,
	.ep_close = shm_op_ep_close,
	.post = shm_op_post,
	.post_recv = shm_post_recv,
	.poll = shm_op_poll,
	.wait = shm_op_wait,
};
