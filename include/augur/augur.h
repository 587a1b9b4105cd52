/* SPDX-License-Identifier: MIT */
/*
 * augur/augur.h - the parameter store.
 *
 * A training job runs one augur *node* per process (several per host, or one
 * per host of a cluster) and one *worker* handle per application thread.
 * Workers pull and push parameters by key; keys are dense integers in
 * [0, num_keys) and each key's value is a vector of float32 of a fixed
 * length (uniform, or given per key at start-up).
 *
 * Where values live: every node holds one registered arena of slots.  A
 * key's slot lives at its owner node (today: its home node, by static
 * hash); pulls of a local key copy straight out of the slot with no lock,
 * pulls of a remote key are one-sided RDMA READs of the owner's slot,
 * validated against a checksum and retried if torn.  Pushes (additive
 * deltas) and sets (overwrites) to remote keys are batched per destination
 * and written into the destination's inbound ring for this worker, where its
 * progress thread applies them.
 *
 * Contract:
 *   - A worker sees its own earlier pushes and sets (read your writes).
 *   - No update is ever lost: every delta pushed is applied exactly once.
 *     After every worker has called augur_wait_sync() and augur_barrier(),
 *     every key equals its initial value plus the sum of all deltas.
 *   - Concurrent pushes to one key from any number of workers and nodes
 *     commute; a pull returns a value that some sequence of whole updates
 *     produced (never a mix of two writes).
 *   - Intents are hints: access without intent is correct.
 *
 * Lifetime: augur_node_start() (collective over all nodes), then
 * augur_worker_create() once per thread, the work, augur_worker_destroy(),
 * augur_node_stop() (collective).  Every call after stop returns
 * AUGUR_ESHUTDOWN.  Errors: 0 or a count on success, a negative code
 * otherwise (augur/error.h, augur_strerror()).
 *
 * What could come later without breaking this API: other value types
 * (float64, int64 counters) chosen per key range at start-up; sparse or
 * string keys mapped to dense ones by a dictionary layer.
 *
 * Threads: a worker handle belongs to one thread.  Node-level calls
 * (augur_stats, augur_node_rank, ...) may be called from any thread.
 */
#ifndef AUGUR_AUGUR_H
#define AUGUR_AUGUR_H

#include <stddef.h>
#include <stdint.h>

#include <augur/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct augur_node;
struct augur_worker;

/* Management modes (a setting for comparisons, not a tuning knob). */
enum augur_mode {
	AUGUR_MODE_ADAPTIVE = 0, /* default: act on intents */
	AUGUR_MODE_STATIC,       /* every key stays at its home node */
	AUGUR_MODE_REPLICATE,    /* replicate only */
	AUGUR_MODE_RELOCATE,     /* relocate only */
};

/**
 * struct augur_config - node configuration; zero means the default.
 * @num_keys:    number of keys (required, >= 1, < 2^32).
 * @value_len:   floats per key when @value_lens is NULL (default 1; at
 *               most 8000).
 * @value_lens:  optional per-key lengths, @num_keys entries, each 1..8000;
 *               must be identical on every node.  Copied at start.
 * @num_workers: worker handles per node (default 1, at most 64).
 * @init:        optional: called once per key at its home node to set the
 *               initial value (default: zeros).  Must be deterministic.
 * @init_arg:    passed to @init.
 * @mode:        enum augur_mode (default adaptive).
 * @busy_poll:   1: the progress thread spins on a dedicated core; 0
 *               (default): it spins while there is work and backs off
 *               (yield, then sleep on the transport's wait) when idle.
 * @transport:   "shm" or "ibv" (default: $AUGUR_TRANSPORT as set by
 *               augur-run or the user, else "shm").
 * @extra_slots: arena slots beyond the keys homed here, for relocated keys
 *               and replicas (default: as many as homed keys).
 */
struct augur_config {
	uint64_t num_keys;
	uint32_t value_len;
	const uint32_t *value_lens;
	uint32_t num_workers;
	void (*init)(uint64_t key, float *value, uint32_t len, void *arg);
	void *init_arg;
	int mode;
	int busy_poll;
	const char *transport;
	uint64_t extra_slots;
};

/**
 * augur_node_start() - start this process's node and connect it to all
 * others.  Collective: every node of the job calls it with the same
 * @cfg.  How nodes find each other (bootstrap):
 *   - augur-run sets AUGUR_RANK, AUGUR_SIZE and AUGUR_RENDEZVOUS;
 *   - on clusters set AUGUR_RENDEZVOUS=host:port (rank 0 listens there);
 *     rank and size come from AUGUR_RANK/AUGUR_SIZE, or from what mpirun
 *     (OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/PMI_SIZE) or srun
 *     (SLURM_PROCID/SLURM_NTASKS) set;
 *   - with none of these, the node runs alone (size 1).
 * Checks RLIMIT_MEMLOCK against what it will register first.
 *
 * Return: 0; -EINVAL (bad config or environment); AUGUR_EMEMLOCK;
 * AUGUR_ENO_TRANSPORT; -ECONNREFUSED/-ETIMEDOUT (peers unreachable);
 * -ENOMEM.  On failure augur_last_error() explains.
 */
int augur_node_start(const struct augur_config *cfg, struct augur_node **out);

/**
 * augur_node_stop() - collective shutdown: waits until every node has
 * called it (so no peer is still reading this node's memory), stops the
 * progress thread, frees everything.  Workers must be destroyed first.
 * NULL does nothing.  Return: 0, or the first error the node saw (for
 * example AUGUR_EPEER_GONE).
 */
int augur_node_stop(struct augur_node *node);

/** augur_node_rank() / augur_node_size() - this node's rank, node count. */
int augur_node_rank(const struct augur_node *node);
int augur_node_size(const struct augur_node *node);

/** augur_value_len() - floats in @key's value, or 0 if out of range. */
uint32_t augur_value_len(const struct augur_node *node, uint64_t key);

/**
 * augur_node_status() - 0 while all is well; AUGUR_EPEER_GONE once a peer
 * died (augur_last_error() of the progress thread is copied into
 * augur_node_error()).
 */
int augur_node_status(const struct augur_node *node);
/** augur_node_error() - text describing the node's failure, or "". */
const char *augur_node_error(const struct augur_node *node);

/**
 * augur_last_error() - detail on the calling thread's last failure.
 * Never NULL.
 */
const char *augur_last_error(void);

/**
 * augur_worker_create() - a worker handle for the calling thread.
 * Return: 0; -EBUSY (all @num_workers handles exist); AUGUR_ESHUTDOWN.
 */
int augur_worker_create(struct augur_node *node, struct augur_worker **out);

/** augur_worker_destroy() - flushes pending pushes first.  NULL: no-op. */
void augur_worker_destroy(struct augur_worker *w);

/** augur_worker_id() - global worker id: rank * num_workers + local id. */
int augur_worker_id(const struct augur_worker *w);

typedef uint64_t augur_ticket_t;

/**
 * augur_pull() - copy the current values of @n keys into @out, the values
 * laid out one after the other in key order.  @out_len is the number of
 * floats @out holds and must equal the sum of the keys' value lengths.
 * Keys may repeat.  Blocks until done.
 *
 * Return: 0; AUGUR_EKEY_RANGE or AUGUR_EVALUE_LEN (nothing is read);
 * -EINVAL (NULL pointers); AUGUR_ESHUTDOWN; AUGUR_EPEER_GONE (an owner
 * died).
 */
int augur_pull(struct augur_worker *w, const uint64_t *keys, size_t n,
	       float *out, size_t out_len);

/**
 * augur_pull_async() - like augur_pull() but returns at once with a
 * ticket for augur_wait(); local values are already in @out, remote reads
 * are in flight.  @keys and @out must stay valid until the wait.
 */
int augur_pull_async(struct augur_worker *w, const uint64_t *keys, size_t n,
		     float *out, size_t out_len, augur_ticket_t *ticket);

/**
 * augur_push() - add @deltas (laid out as for augur_pull, @deltas_len
 * floats in all) to @n keys.
 * Local keys are updated at once; remote ones are batched and sent by the
 * next flush (a full batch, augur_wait() on a push ticket, a pull of a key
 * with a pending delta, augur_wait_sync(), augur_barrier(),
 * augur_advance_clock()).  @deltas may be reused on return.
 *
 * Return: 0; AUGUR_EKEY_RANGE or AUGUR_EVALUE_LEN (nothing is applied);
 * -EINVAL; AUGUR_ESHUTDOWN; AUGUR_EPEER_GONE.
 */
int augur_push(struct augur_worker *w, const uint64_t *keys, size_t n,
	       const float *deltas, size_t deltas_len);

/** augur_push_async() - augur_push() with a ticket; waiting on it flushes. */
int augur_push_async(struct augur_worker *w, const uint64_t *keys, size_t n,
		     const float *deltas, size_t deltas_len,
		     augur_ticket_t *ticket);

/**
 * augur_set() - overwrite the values of @n keys.  Ordered with this
 * worker's pushes to the same key; racing other workers' pushes, a set
 * wins or loses as a whole.  Return: as augur_push().
 */
int augur_set(struct augur_worker *w, const uint64_t *keys, size_t n,
	      const float *values, size_t values_len);

/**
 * augur_wait() - wait until @ticket's operation is complete (pull: values
 * in @out; push/set: handed to the transport).
 * Return: 0; -EINVAL (unknown ticket); AUGUR_EPEER_GONE; AUGUR_ESHUTDOWN.
 */
int augur_wait(struct augur_worker *w, augur_ticket_t ticket);

/**
 * augur_wait_sync() - flush this worker's pushes and sets and wait until
 * their owners have applied them.  With augur_barrier() after it on every
 * worker, every copy of every key is up to date.
 */
int augur_wait_sync(struct augur_worker *w);

/**
 * augur_barrier() - wait until every worker of every node has entered the
 * barrier.  Flushes this worker's pushes first.
 */
int augur_barrier(struct augur_worker *w);

/**
 * augur_advance_clock() - this worker finished one unit of work (a
 * "clock"); intents are expressed in these units.  Return: 0.
 */
int augur_advance_clock(struct augur_worker *w);
/** augur_current_clock() - the worker's clock (starts at 0). */
int64_t augur_current_clock(const struct augur_worker *w);

/**
 * augur_intent() - signal that this worker will access @keys from clock
 * @start (inclusive) to clock @end (exclusive).  A hint: it never changes
 * results, only where values live.  Each entry is one foreseen use: list
 * a key as often as you will use it (duplicates are welcome), or give a
 * range of two or more clocks for a key used throughout.  augur moves or
 * replicates a key for this node once two uses overlap or a range covers
 * two clocks; a key foreseen for a single use is left where it is (moving
 * it would cost about as much as the use).  Signal in clock order.
 * Return: 0; AUGUR_EKEY_RANGE; -EINVAL (end < start).
 */
int augur_intent(struct augur_worker *w, const uint64_t *keys, size_t n,
		 int64_t start, int64_t end);

/**
 * struct augur_stats - counts (not times) since start, summed over the
 * node's workers and progress thread.
 */
struct augur_stats {
	uint64_t pulls_local;    /* keys pulled from a local slot */
	uint64_t pulls_remote;   /* keys pulled by one-sided READ */
	uint64_t pushes_local;   /* keys pushed/set into a local slot */
	uint64_t pushes_remote;  /* keys pushed/set to a remote owner */
	uint64_t torn_retries;   /* remote reads retried (torn or moved) */
	uint64_t msgs_sent;      /* ring messages (batches) sent */
	uint64_t bytes_sent;     /* bytes written/sent to other nodes */
	uint64_t bytes_received; /* bytes read from other nodes */
	uint64_t updates_applied;/* remote keys applied by the progress loop */
	uint64_t relocations;    /* keys moved to this node */
	uint64_t replicas;       /* replicas installed here */
	uint64_t intents;        /* intents signalled (keys) */
	uint64_t intent_waits;   /* times a full intent ring made a worker
				    wait for the planner */
	uint64_t forwards;       /* updates this node forwarded to a key's
				    new owner */
	uint64_t progress_passes;/* progress loop passes that did work */
	uint64_t progress_sleeps;/* times the progress loop slept */
	uint64_t sync_rounds;    /* replica sync rounds completed here */
};

/** augur_stats() - fill @out with this node's counters.  Return: 0. */
int augur_stats(const struct augur_node *node, struct augur_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* AUGUR_AUGUR_H */
