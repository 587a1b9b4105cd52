/* SPDX-License-Identifier: MIT */
/*
 * lib/bootstrap.h - PRIVATE to libaugur (not installed): how the processes
 * of one job find each other, independent of any transport.
 *
 * The bootstrap gives every process its rank and the job's size, an
 * allgather (to swap transport addresses and region descriptors), a barrier,
 * and a liveness watch: the connections it opens stay up for the whole job,
 * so a process that dies is noticed by everyone within moments.  It is slow
 * (sockets, one hub) and is meant for set-up, shutdown and failure
 * detection, never for the data path.
 *
 * Environment (read by aug_boot_open(); docs/bootstrap.md has the details):
 *   rank, size   AUGUR_RANK + AUGUR_SIZE, else OMPI_COMM_WORLD_RANK +
 *                OMPI_COMM_WORLD_SIZE (Open MPI's mpirun), else PMI_RANK +
 *                PMI_SIZE (MPICH/Hydra, Intel MPI), else SLURM_PROCID +
 *                SLURM_STEP_NUM_TASKS (or SLURM_NTASKS) inside an srun step;
 *                with none of them the process runs alone (rank 0, size 1,
 *                no sockets at all).
 *   AUGUR_RENDEZVOUS     where rank 0 listens: "host:port" (TCP) or
 *                        "unix:/path" (a unix socket; what augur-run uses).
 *                        Required when size > 1.
 *   AUGUR_BOOT_TIMEOUT   seconds (default 60) for the job to assemble and for
 *                        any one message, once started, to arrive.
 *
 * Threads: aug_boot_check() may be called from one thread (a progress loop)
 * while another is inside aug_boot_allgather()/aug_boot_barrier(); the
 * collectives themselves must not run concurrently with each other, and
 * aug_boot_close() must not run concurrently with anything.
 *
 * Errors: every function returns 0 (or a descriptor) or an error code:
 * -errno, or one of augur's own codes (augur/error.h) such as
 * AUGUR_EPEER_GONE, returned as they are (like the rest of lib/): test for
 * != 0, not < 0.  aug_boot_error() has the detail; errno is not used to
 * report anything.  The first failure of a multi-process bootstrap (a dead
 * peer, a protocol error, a timeout inside a collective) is sticky: every
 * later collective and check returns the same code and text.
 */
#ifndef AUGUR_LIB_BOOTSTRAP_H
#define AUGUR_LIB_BOOTSTRAP_H

#include <stddef.h>

#include <augur/error.h>

struct aug_boot;

/* Largest job the bootstrap accepts. */
#define AUG_BOOT_MAX_SIZE 65536
/* Largest contribution of one rank to one allgather, in bytes. */
#define AUG_BOOT_MAX_LEN (64u << 20)
/* Default of AUGUR_BOOT_TIMEOUT, in seconds. */
#define AUG_BOOT_DEFAULT_TIMEOUT_S 60

/**
 * aug_boot_identity() - this process's rank and the job size as the
 * environment gives them (see above), without opening anything.
 * @rank, @size: out.
 * @source:      out, may be NULL: a static string naming the variables used,
 *               for instance "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE", or
 *               "none (running alone)".
 *
 * Return: 0; -EINVAL (a variable is malformed or out of range, or only one
 * of AUGUR_RANK/AUGUR_SIZE is set).
 */
int aug_boot_identity(int *rank, int *size, const char **source);

/**
 * aug_boot_open() - join the job.  Collective: returns on every rank once
 * all ranks have connected (or on none).  Rank 0 listens at
 * AUGUR_RENDEZVOUS and accepts size-1 connections; every other rank
 * connects to it, retrying while rank 0 is not up yet.
 * @out: the handle, or NULL on failure.
 *
 * Return: 0; -EINVAL (environment: see aug_boot_identity(), size > 1
 * without AUGUR_RENDEZVOUS, a malformed AUGUR_RENDEZVOUS or
 * AUGUR_BOOT_TIMEOUT, two processes with one rank, disagreeing sizes);
 * -ETIMEDOUT (the job did not assemble within AUGUR_BOOT_TIMEOUT; the text
 * names the address and, on rank 0, the missing ranks); -EADDRINUSE (rank
 * 0's port or socket path is taken); AUGUR_EPROTO (something that is not
 * this version of augur's bootstrap connected); AUGUR_EPEER_GONE (a rank
 * died while the job assembled); -ENOMEM; another -errno from the socket
 * calls (-EMFILE: raise `ulimit -n`).
 */
int aug_boot_open(struct aug_boot **out);

/** aug_boot_rank() / aug_boot_size() - this process's rank, the job size. */
int aug_boot_rank(const struct aug_boot *b);
int aug_boot_size(const struct aug_boot *b);

/**
 * aug_boot_allgather() - every rank contributes @len bytes at @mine; @all
 * receives size * @len bytes, rank 0's first, in rank order.  Collective:
 * every rank calls it, in the same order relative to other collectives, with
 * the same @len.  @mine may point into @all (in place).  @len 0 is a barrier
 * (@mine and @all may then be NULL).
 *
 * Waits as long as it takes for every rank to arrive (see
 * aug_boot_set_wait_timeout()), but returns within moments once any rank
 * has died.
 *
 * Return: 0; -EINVAL (bad arguments, @len above AUG_BOOT_MAX_LEN);
 * AUGUR_EPEER_GONE (a rank died or closed its bootstrap: nothing useful is in
 * @all); AUGUR_EPROTO (the ranks passed different @len, or called different
 * numbers of collectives); -ETIMEDOUT (the wait timeout expired, or a
 * message stalled for AUGUR_BOOT_TIMEOUT); or the sticky earlier failure.
 */
int aug_boot_allgather(struct aug_boot *b, const void *mine, size_t len,
		       void *all);

/** aug_boot_barrier() - aug_boot_allgather() of zero bytes. */
int aug_boot_barrier(struct aug_boot *b);

/**
 * aug_boot_set_wait_timeout() - bound how long a collective waits for the
 * other ranks to arrive, in milliseconds; 0 (the default) waits as long as
 * they are alive.  Messages already under way are always bounded by
 * AUGUR_BOOT_TIMEOUT.  Not thread-safe against a running collective.
 */
void aug_boot_set_wait_timeout(struct aug_boot *b, int timeout_ms);

/**
 * aug_boot_fd() - a descriptor for a poll()/epoll set: it becomes readable
 * when aug_boot_check() may have something to report (it can also wake for
 * nothing; it never stays readable while all is well between collectives).
 * Owned by @b: do not read or close it.
 *
 * Return: the descriptor; -ENOTCONN when running alone (size 1: there is
 * nothing to watch).
 */
int aug_boot_fd(const struct aug_boot *b);

/**
 * aug_boot_check() - non-blocking liveness check for a polling loop.
 * Never consumes anything a later collective needs.  On rank 0 a closed
 * connection means that rank died, and rank 0 tells every other rank; on the
 * other ranks a closed connection means rank 0 died, and a notice from rank
 * 0 names the rank that died.  A rank that called aug_boot_close() has
 * left, which is not a failure here (the next collective fails instead).
 * @dead_rank: out, may be NULL: the rank that died, or -1.
 *
 * Return: 0 while all is well; AUGUR_EPEER_GONE (@dead_rank set); or the
 * sticky failure that broke the bootstrap earlier (its code).
 */
int aug_boot_check(struct aug_boot *b, int *dead_rank);

/**
 * aug_boot_close() - leave the job: tells the peers this is a clean exit
 * (unless the bootstrap had failed), closes every connection and frees
 * @b.  Not collective: call a barrier first if the others must not see a
 * rank go early.  NULL does nothing.
 */
void aug_boot_close(struct aug_boot *b);

/**
 * aug_boot_error() - text about the calling thread's last bootstrap
 * failure.  Never NULL; valid until the thread's next bootstrap call.
 */
const char *aug_boot_error(void);

#endif /* AUGUR_LIB_BOOTSTRAP_H */
