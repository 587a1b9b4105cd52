/* SPDX-License-Identifier: MIT */
/*
 * lib/internal.h - PRIVATE: the parameter store's shared structures.
 *
 * Memory of one node (all registered once, at start, on the node context):
 *
 *   arena   slots (lib/slot.h) of the keys homed here, then extra slots
 *           for relocated keys and replicas (next issue).  Peers READ it.
 *   rings   one inbound ring of AUG_RING_BYTES per global worker id.  The
 *           ring of worker g is written only by g (RDMA WRITE with
 *           immediate) and read only by this node's progress thread: a
 *           single-producer single-consumer ring across the network.
 *   ctrl    barrier words, one per global worker, written by each worker
 *           and read by all (rank 0's is the one used).
 *   recv    a scratch buffer the receive WQEs point at (WRITE with
 *           immediate carries no payload into it).
 *
 * Memory of one worker (registered on the worker's own context):
 *
 *   credit  per destination node, {bytes consumed, messages consumed} of
 *           this worker's ring there, written back by that node's progress
 *           thread after it applied the messages.
 *   barrier scratch for READs of rank 0's barrier words.
 *   outbox  per destination, a local mirror of the remote ring: batches
 *           are built in place and sent by one WRITE_IMM from the same
 *           offset, so a batch costs no copy; the bytes are reused only
 *           after the credit says the owner consumed them.
 *   stage   per ticket, where one-sided READs of remote slots land.
 *
 * Ring protocol (sender worker g -> node d):
 *   - head: bytes sent so far (monotonic); a message occupies
 *     [head % R, head % R + len).  If it would cross the end of the ring
 *     the sender skips to offset 0 and says so in the immediate.
 *   - imm = (skip << 31) | len.  WRITE_IMM guarantees the bytes are in
 *     place before the receiver sees the completion.
 *   - the sender never has more than R bytes or AUG_MAX_INFLIGHT
 *     messages outstanding (head - credit), so it never overwrites what
 *     is not consumed and never runs the receiver out of receive WQEs.
 *   - message: struct aug_msg_hdr, then entries {struct aug_msg_ent,
 *     float[len]}.  The receiver checks every field: a malformed message
 *     is dropped whole and counted, never applied partly.
 *
 * Location: loc[key] packs (owner rank, epoch, arena line).  Today keys
 * never move (static placement), but every reader validates the slot's
 * key and epoch, so moving a key only needs loc[] to change.
 */
#ifndef AUGUR_LIB_INTERNAL_H
#define AUGUR_LIB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <augur/augur.h>
#include <augur/verbs.h>

#include "intent.h"
#include "slot.h"

struct aug_boot;

#define AUG_MAX_WORKERS 64
/* Longest value: one push entry must fit in one batch. */
#define AUG_MAX_VALUE_LEN 8000
#define AUG_RING_BYTES (256u << 10)
#define AUG_BATCH_MAX (32u << 10)
#define AUG_MAX_INFLIGHT 96
#define AUG_RQ_DEPTH 128
#define AUG_TICKETS 8
#define AUG_STAGE_BYTES (256u << 10)
#define AUG_READS_PER_TICKET 2048
#define AUG_PRIV_MAGIC 0x41554731u /* "AUG1" */
#define AUG_MSG_MAGIC 0xa6u

/*
 * loc[key]: owner:10 | epoch:22 | line:32.  Epochs count ownership moves
 * and are compared in serial-number arithmetic (aug_epoch_newer), so a
 * cached location may lag by up to 2^21 moves of one key and still be
 * recognised as old; keys move far less often than that.
 */
#define AUG_MAX_NODES 1024
#define AUG_EPOCH_MASK 0x3fffffu
static inline uint64_t aug_loc_pack(uint32_t owner, uint32_t epoch,
				    uint32_t line)
{
	return (uint64_t)(owner & 0x3ff) << 54 |
	       (uint64_t)(epoch & AUG_EPOCH_MASK) << 32 | line;
}
static inline uint32_t aug_loc_owner(uint64_t l) { return (uint32_t)(l >> 54); }
static inline uint32_t aug_loc_epoch(uint64_t l)
{
	return (uint32_t)(l >> 32) & AUG_EPOCH_MASK;
}
/* a is a later epoch than b */
static inline int aug_epoch_newer(uint32_t a, uint32_t b)
{
	uint32_t d = (a - b) & AUG_EPOCH_MASK;

	return d != 0 && d < (AUG_EPOCH_MASK + 1) / 2;
}
static inline uint32_t aug_loc_line(uint64_t l) { return (uint32_t)l; }

enum aug_msg_op { AUG_OP_PUSH = 1, AUG_OP_SET = 2 };

struct aug_msg_hdr {
	uint8_t magic;
	uint8_t pad;
	uint16_t sender;  /* global worker id */
	uint32_t count;   /* entries */
	uint32_t bytes;   /* whole message, header included */
	uint32_t seq;     /* message number, for checking */
};

struct aug_msg_ent {
	uint32_t key;
	uint16_t op;
	uint16_t len; /* floats that follow */
};

/* Private data a worker hands to the node it connects to. */
struct aug_conn_priv {
	uint32_t magic;
	uint16_t rank;
	uint16_t worker; /* global id */
	uint64_t credit_addr;
	uint32_t credit_rkey;
	uint32_t pad;
};

/* What every node publishes at start (allgathered). */
struct aug_node_info {
	char addr[AUV_ADDR_MAX];
	struct auv_mr_desc arena, rings, ctrl, loc;
	uint64_t num_keys;
	uint32_t num_workers;
	uint32_t layout_hash;
};

/* One inbound ring, owned by the progress thread. */
struct aug_inring {
	struct auv_ep *ep;
	uint8_t *base;
	uint64_t consumed; /* bytes, skips included */
	uint64_t msgs;
	uint64_t credit_addr;
	uint32_t credit_rkey;
	int gw;
	int dirty;
	int held; /* credit held until forwards are acknowledged */
	uint64_t credits_sent;
	uint64_t credit_buf[2];
};

/* One destination node as seen by one worker. */
struct aug_dest {
	struct auv_ep *ep;
	uint8_t *outbox;
	uint64_t ring_addr;
	uint32_t ring_rkey;
	uint64_t head;     /* bytes committed (sent or open batch start) */
	uint64_t msgs;     /* messages sent */
	uint32_t open_len; /* bytes in the open batch (0: none) */
	uint32_t open_count;
	uint32_t open_skip;
};

struct aug_read {
	uint32_t key;
	uint32_t len;
	uint32_t dest;
	uint32_t stage_off;
	uint32_t epoch;
	uint32_t line;
	uint32_t tries;
	float *out;
};

struct aug_ticket {
	uint64_t seq; /* 0: free */
	int outstanding;
	int status;
	uint32_t nreads;
	uint32_t stage_used;
	uint8_t *stage;
	struct aug_read *reads;
};

/* Per-worker RYW table: key -> ring head after its last pending message. */
struct aug_dirty {
	uint32_t key;
	uint32_t dest;
	uint64_t upto;
};
#define AUG_DIRTY_SLOTS 4096

/* --- adaptive management (lib/adapt.c) ----------------------------------- */

#define AUG_LINE_UNKNOWN 0xffffffffu /* loc line while a key is moving in */
#define AUG_CTL_MAX 4096u            /* largest node-to-node message */
#define AUG_LINK_RQ 64               /* receives posted per link */
#define AUG_LINK_SBUFS 32            /* send buffers per link */
#define AUG_IRING_CAP 8192           /* intent ring entries per worker */
#define AUG_MAX_NODES_ADAPT 64       /* want sets are 64-bit masks */

/* One queued node-to-node message (built, not yet posted). */
struct aug_ctlmsg {
	struct aug_ctlmsg *next;
	uint32_t len;
	uint8_t data[];
};

/* Something that fires once acks for tokens on some links arrived. */
struct aug_hold {
	int kind;          /* AUG_HOLD_CREDIT or AUG_HOLD_ACK */
	int waits;         /* acks still missing */
	struct aug_inring *ring; /* CREDIT: ring whose credit is held */
	int link;          /* ACK: link to acknowledge */
	uint64_t token;    /* ACK: token to acknowledge */
	struct aug_hold *next_free;
};

struct aug_wait {
	uint64_t token;
	struct aug_hold *hold; /* NULL: a sync-round barrier */
};

/* The node-to-node channel to one peer: SEND/RECV on the node contexts. */
struct aug_link {
	struct auv_ep *ep;
	int rank;
	/* outgoing */
	uint8_t *open;        /* message being built (AUG_CTL_MAX) */
	uint32_t open_len;
	struct aug_ctlmsg *backlog, **backlog_tail;
	uint8_t *sbuf;        /* AUG_LINK_SBUFS x AUG_CTL_MAX, registered */
	uint32_t sbuf_busy;   /* bitmask */
	uint64_t next_token;  /* tokens this node asked the peer to ack */
	uint64_t acked;       /* highest token the peer acked */
	struct aug_wait *waits; /* tokens awaited, in order */
	uint32_t nwaits, capwaits;
	/* incoming */
	uint8_t *rbuf;        /* AUG_LINK_RQ x AUG_CTL_MAX, registered */
	/* as the origin of records: the links our forwards of its records
	 * went to since its last MARK (that MARK's ACK waits for them) */
	uint64_t fwd_mask;
};

/* Per-key adaptive state, node-local. */
struct aug_kstate {
	uint64_t wantset;   /* at the owner: nodes with an active intent */
	uint64_t repset;    /* at the owner: nodes holding a replica */
	uint16_t pad16;
	uint8_t rep_state;  /* this node: enum aug_rep_state */
	uint8_t pad;        /* this node: listed in the replica list */
	uint32_t rep_line;  /* this node: replica slot line */
	uint32_t rep_oline; /* this node: the owner's slot line */
	uint32_t rep_owner; /* this node: the replica's owner */
	uint32_t rep_epoch; /* this node: the owner's epoch */
};

enum aug_rep_state {
	AUG_REP_NONE = 0,
	AUG_REP_INSTALLING, /* GRANT received, READ in flight */
	AUG_REP_LIVE,
	AUG_REP_DROPPING,   /* final delta sent, waiting for its ack */
};

/* One local intent waiting to start or to end. */
struct aug_adapt;

struct aug_wres; /* worker resources made at start */

struct augur_worker {
	struct augur_node *node;
	int lid; /* local id */
	int gid; /* global id */
	struct auv_ctx *ctx;
	struct auv_mr *mr;
	uint8_t *mem;
	uint64_t (*credit)[2];
	uint64_t *bar_buf;
	uint64_t *dir_buf; /* one directory entry READ from a home */
	struct aug_dest *dest;
	struct aug_ticket ticket[AUG_TICKETS];
	uint64_t ticket_seq;
	struct aug_dirty *dirty;
	uint32_t ndirty;
	int64_t clock;
	uint64_t barriers;
	int in_use;
	struct aug_iring iring; /* intents to the planner */
	struct augur_stats st; /* written by this worker only */
};

struct augur_node {
	struct aug_boot *boot;
	int rank, size;
	uint64_t num_keys;
	uint32_t uniform_len; /* 0 when per-key lengths */
	uint32_t *lens;       /* per-key lengths or NULL */
	uint32_t nworkers;
	int busy_poll;
	int mode;

	struct auv_ctx *nctx;
	struct auv_mr *arena_mr, *rings_mr, *ctrl_mr, *recv_mr;
	uint8_t *arena;
	size_t arena_bytes;
	size_t homed_bytes; /* arena bytes of the keys homed here */
	uint64_t *ctrl;
	uint64_t *loc; /* per key; atomic accesses */
	uint32_t *homed_line; /* [k / size]: the slot reserved at k's home */

	struct aug_node_info *peers; /* size entries */
	struct aug_inring *inring;   /* size * nworkers, by global id */
	int ninring_expected;
	struct augur_worker worker[AUG_MAX_WORKERS];
	pthread_mutex_t lock; /* guards worker[].in_use, start/stop */

	pthread_t progress;
	int progress_started;
	atomic_int stop;
	atomic_int status;
	char errbuf[256];       /* written once, under err_lock, before status */
	pthread_mutex_t err_lock;
	/* A worker saw a transport failure; the progress thread finds out
	 * which node really died (the bootstrap hub knows the first death,
	 * while a transport error may come from a survivor that already
	 * exited) and sets status, or blames the suspect after a second. */
	atomic_int suspect;
	int suspect_rank;
	int suspect_code;
	uint64_t suspect_since;
	int stopped;
	struct augur_node *tomb_next;

	/* progress-thread counters (relaxed stores, read by augur_stats) */
	uint64_t applied, msgs_in, malformed, passes, sleeps;

	/* adaptive management (lib/adapt.c); NULL in static mode */
	struct aug_adapt *ad;
	struct aug_kstate *ks;      /* per key */
	struct aug_link *link;      /* per rank */
	struct auv_mr *link_mr;     /* send and receive buffers of links */
	struct auv_mr *loc_mr;      /* loc[] itself: homes answer READs */
	/* replica sync rounds, requested by workers, run by progress */
	uint64_t round_started, round_done, round_req;
	uint64_t relocations, replicas_installed, forwards, intents_seen;
};

/* lib/node.c */
int aug_fail(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void aug_node_failed(struct augur_node *node, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void aug_node_suspect(struct augur_node *node, int rank, int code);
static inline uint32_t aug_key_len(const struct augur_node *n, uint64_t key)
{
	return n->lens ? n->lens[key] : n->uniform_len;
}
static inline struct aug_slot *aug_local_slot(struct augur_node *n,
					      uint64_t loc)
{
	return (struct aug_slot *)(n->arena +
				   (size_t)aug_loc_line(loc) * AUG_LINE);
}
static inline uint64_t aug_loc_get(const struct augur_node *n, uint64_t key)
{
	return __atomic_load_n(&n->loc[key], __ATOMIC_ACQUIRE);
}

static inline uint64_t aug_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* relaxed counter bump that is safe to read from another thread */
#define AUG_STAT_ADD(var, n)                                                   \
	__atomic_store_n(&(var), __atomic_load_n(&(var), __ATOMIC_RELAXED) +   \
					 (n),                                  \
			 __ATOMIC_RELAXED)

/* lib/worker.c */
int aug_worker_setup(struct augur_node *node, int lid, const char *provider);
void aug_worker_teardown(struct augur_worker *w);
int aug_worker_connect(struct augur_worker *w);

/* lib/adapt.c */
int aug_adapt_setup(struct augur_node *n);
int aug_adapt_connect(struct augur_node *n);
int aug_adapt_post_recvs(struct augur_node *n);
void aug_adapt_teardown(struct augur_node *n);
/* progress thread: one planner/link pass; returns work done */
int aug_adapt_pass(struct augur_node *n, const struct auv_wc *wc, int nwc);
int aug_adapt_tick(struct augur_node *n);
/* progress thread: forward entry @e of a message from @r; the rank it went
 * to, or -1 if not forwarded */
int aug_adapt_forward(struct augur_node *n, struct aug_inring *r,
		      uint32_t key, uint16_t op, const float *v, uint32_t len);
/* progress thread: after a message with forwards, hold @r's credit */
void aug_adapt_hold_credit(struct augur_node *n, struct aug_inring *r,
			   uint64_t links);
/* workers: wait for a replica sync round that starts after the call */
int aug_adapt_wait_round(struct augur_worker *w);
static inline int aug_adaptive(const struct augur_node *n)
{
	return n->ad != NULL;
}

/* lib/progress.c */
void *aug_progress_main(void *arg);
int aug_progress_post_recvs(struct augur_node *node);

#endif /* AUGUR_LIB_INTERNAL_H */
