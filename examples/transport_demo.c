// SPDX-License-Identifier: MIT
/*
 * examples/transport_demo.c - N augur nodes on this host talking through the
 * transport API (augur/verbs.h) with one-sided operations only.
 *
 * The parent forks N nodes.  Each node opens a context (shm by default;
 * AUGUR_TRANSPORT=ibv on RDMA hardware), allocates one registered region
 * holding a shared counter and one mailbox slot per node, and publishes its
 * address and region descriptor through the parent (the out-of-band
 * channel a real launcher provides).  Node i accepts from lower ranks and
 * connects to higher ones, so every pair holds one endpoint.
 *
 * Then, for R rounds, every node
 *   - fetch-and-adds 1 to the counter at node 0 (one-sided atomic),
 *   - WRITEs (round, rank) into its slot at every peer, fenced behind
 *   - a WRITE with immediate that tells the peer "round r is complete",
 *   - READs the counter back once per round.
 * At the end each node checks what landed in its own memory (every peer's
 * last round), and node 0 checks that its counter equals N * R: no update
 * lost.  Prints per-node operation counts and round latency.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <augur/verbs.h>

#define MAX_NODES 16

struct node_info {
	char addr[AUV_ADDR_MAX];
	struct auv_mr_desc desc;
};

/* Layout of each node's region. */
struct region {
	uint64_t counter;            /* FAA target (node 0's is the one used) */
	uint64_t pad[7];
	struct {
		uint64_t round;
		uint64_t rank;
	} slot[MAX_NODES];           /* written by peers */
	uint64_t scratch[2 * MAX_NODES]; /* local: atomics' results, reads */
	uint8_t recvbuf[MAX_NODES][64];
};

static int nnodes = 4, rounds = 2000;

#define DIE(rank, fmt, ...)                                                    \
	do {                                                                   \
		fprintf(stderr, "node %d: " fmt "\n", rank, ##__VA_ARGS__);    \
		exit(1);                                                       \
	} while (0)

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void xfer(int fd, void *buf, size_t len, int wr)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = wr ? write(fd, (char *)buf + done, len - done)
			       : read(fd, (char *)buf + done, len - done);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			fprintf(stderr, "out-of-band channel closed\n");
			exit(1);
		}
		done += (size_t)r;
	}
}

static void oob_barrier(int oob)
{
	char b = 0;

	xfer(oob, &b, 1, 1);
	xfer(oob, &b, 1, 0);
}

/* Poll until @want completions arrived; back off with auv_wait() when idle.
 * Receive completions are counted in *recvs and re-posted. */
static void reap(int rank, struct auv_ctx *ctx, int want, int *recvs,
		 struct auv_mr *mr, struct region *reg, uint64_t *sent_ops)
{
	struct auv_wc wc[32];
	double deadline = now_us() + 30e6;

	while (want > 0 || (recvs && *recvs > 0)) {
		int n = auv_poll(ctx, wc, 32), i;

		if (n < 0)
			DIE(rank, "auv_poll: %s", augur_strerror(n));
		for (i = 0; i < n; i++) {
			if (wc[i].status)
				DIE(rank, "completion failed: %s (cookie %" PRIu64 ")",
				    augur_strerror(wc[i].status), wc[i].cookie);
			if (wc[i].opcode == AUV_OP_RECV) {
				int peer = (int)wc[i].cookie;
				int rc = auv_post_recv(wc[i].ep, reg->recvbuf[peer],
						       64, mr, (uint64_t)peer);
				if (rc)
					DIE(rank, "auv_post_recv: %s",
					    augur_strerror(rc));
				if (recvs)
					(*recvs)--;
			} else {
				want--;
				(*sent_ops)++;
			}
		}
		if (!n) {
			if (now_us() > deadline)
				DIE(rank, "no progress for 30 s");
			auv_wait(ctx, 10);
		}
	}
}

static int run_node(int rank, int oob)
{
	struct auv_ctx *ctx;
	struct auv_mr *mr;
	struct region *reg;
	struct node_info me, all[MAX_NODES];
	struct auv_ep *ep[MAX_NODES] = { 0 };
	uint64_t ops = 0;
	double t0, t1;
	int rc, i, r, pending_recvs;

	rc = auv_ctx_open(NULL, &ctx);
	if (rc)
		DIE(rank, "auv_ctx_open: %s: %s", augur_strerror(rc),
		    auv_last_error());
	rc = auv_mr_alloc(ctx, sizeof(*reg), AUV_ACCESS_ALL, &mr);
	if (rc)
		DIE(rank, "auv_mr_alloc: %s: %s", augur_strerror(rc),
		    auv_last_error());
	reg = auv_mr_addr(mr);
	memset(&me, 0, sizeof(me));
	snprintf(me.addr, sizeof(me.addr), "%s", auv_ctx_addr(ctx));
	auv_mr_desc(mr, &me.desc);
	xfer(oob, &me, sizeof(me), 1);
	xfer(oob, all, sizeof(all[0]) * nnodes, 0);

	/* Lower ranks accept, higher ranks connect: one endpoint per pair. */
	for (i = rank + 1; i < nnodes; i++) {
		int32_t peer = i;
		rc = auv_ep_connect(ctx, all[i].addr, &rank, sizeof(rank), &ep[i]);
		if (rc)
			DIE(rank, "connect to node %d: %s: %s", peer,
			    augur_strerror(rc), auv_last_error());
	}
	for (i = 0; i < rank; i++) {
		struct auv_ep *e;
		int32_t who = -1;
		size_t len = 0;
		char priv[AUV_PRIV_MAX];

		rc = auv_ep_accept(ctx, 30000, &e, priv, &len);
		if (rc)
			DIE(rank, "accept: %s: %s", augur_strerror(rc),
			    auv_last_error());
		if (len == sizeof(who))
			memcpy(&who, priv, sizeof(who));
		if (who < 0 || who >= nnodes || ep[who])
			DIE(rank, "accepted unknown peer %d", who);
		ep[who] = e;
	}
	for (i = 0; i < nnodes; i++) {
		if (i == rank)
			continue;
		/* Enough receives for every round's notification. */
		for (r = 0; r < 4; r++) {
			rc = auv_post_recv(ep[i], reg->recvbuf[i], 64, mr,
					   (uint64_t)i);
			if (rc)
				DIE(rank, "auv_post_recv: %s",
				    augur_strerror(rc));
		}
	}
	/* Everyone connected and receiving before anyone sends. */
	oob_barrier(oob);

	pending_recvs = 0;
	t0 = now_us();
	for (r = 1; r <= rounds; r++) {
		struct auv_op op[2];
		int want = 0;

		if (rank != 0) {
			memset(op, 0, sizeof(op));
			op[0].opcode = AUV_OP_FAA;
			op[0].flags = AUV_OP_SIGNALED;
			op[0].local = &reg->scratch[0];
			op[0].len = 8;
			op[0].local_mr = mr;
			op[0].remote_addr = all[0].desc.addr;
			op[0].rkey = all[0].desc.rkey;
			op[0].swap_add = 1;
			rc = auv_post(ep[0], op, 1);
			if (rc != 1)
				DIE(rank, "post FAA: %s", augur_strerror(rc));
			want++;
		} else {
			__atomic_fetch_add(&reg->counter, 1, __ATOMIC_SEQ_CST);
		}
		for (i = 0; i < nnodes; i++) {
			uint64_t stamp[2] = { (uint64_t)r, (uint64_t)rank };
			uint64_t off = offsetof(struct region, slot) +
				       (uint64_t)rank * sizeof(reg->slot[0]);

			if (i == rank)
				continue;
			memset(op, 0, sizeof(op));
			op[0].opcode = AUV_OP_WRITE; /* inline: no local mr */
			op[0].local = stamp;
			op[0].len = sizeof(stamp);
			op[0].remote_addr = all[i].desc.addr + off;
			op[0].rkey = all[i].desc.rkey;
			op[1] = op[0];
			op[1].opcode = AUV_OP_WRITE_IMM;
			op[1].flags = AUV_OP_SIGNALED;
			op[1].imm = (uint32_t)r;
			rc = auv_post(ep[i], op, 2);
			if (rc != 2)
				DIE(rank, "post WRITE to %d: %d %s", i, rc,
				    augur_strerror(rc));
			want++;
			pending_recvs++;
		}
		/* Wait for our operations and for every peer's round r. */
		reap(rank, ctx, want, &pending_recvs, mr, reg, &ops);
	}
	t1 = now_us();

	/* Final check: every peer's last round landed in our memory. */
	for (i = 0; i < nnodes; i++) {
		if (i == rank)
			continue;
		if (reg->slot[i].round != (uint64_t)rounds ||
		    reg->slot[i].rank != (uint64_t)i)
			DIE(rank, "slot %d holds round %" PRIu64 " rank %" PRIu64
				  ", expected %d/%d",
			    i, reg->slot[i].round, reg->slot[i].rank, rounds, i);
	}
	oob_barrier(oob); /* all rounds done everywhere */
	if (rank == 0) {
		uint64_t want = (uint64_t)nnodes * (uint64_t)rounds;
		if (reg->counter != want)
			DIE(rank, "counter %" PRIu64 " != %" PRIu64
				  ": updates lost",
			    reg->counter, want);
		printf("node 0: counter = %" PRIu64 " = %d nodes x %d rounds: "
		       "no update lost\n",
		       reg->counter, nnodes, rounds);
	}
	printf("node %d: %d rounds, %" PRIu64 " completions, %.2f us/round "
	       "(%s)\n",
	       rank, rounds, ops, (t1 - t0) / rounds, auv_ctx_provider(ctx));
	fflush(stdout);
	oob_barrier(oob); /* nobody tears down while others still read */
	for (i = 0; i < nnodes; i++)
		auv_ep_close(ep[i]);
	auv_mr_dereg(mr);
	auv_ctx_close(ctx);
	return 0;
}

static void usage(const char *p)
{
	fprintf(stderr,
		"usage: %s [-n NODES (2..%d, default 4)] [-r ROUNDS (default "
		"2000)]\n  transport from $AUGUR_TRANSPORT (default shm)\n",
		p, MAX_NODES);
	exit(2);
}

int main(int argc, char **argv)
{
	int fds[MAX_NODES][2], c, i, fail = 0;
	pid_t pid[MAX_NODES];
	struct node_info all[MAX_NODES];

	while ((c = getopt(argc, argv, "n:r:h")) != -1) {
		switch (c) {
		case 'n': nnodes = atoi(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (nnodes < 2 || nnodes > MAX_NODES || rounds < 1)
		usage(argv[0]);
	printf("transport demo: %d nodes, %d rounds each\n", nnodes, rounds);
	fflush(stdout);
	for (i = 0; i < nnodes; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i])) {
			perror("socketpair");
			return 1;
		}
		pid[i] = fork();
		if (pid[i] < 0) {
			perror("fork");
			return 1;
		}
		if (pid[i] == 0) {
			close(fds[i][0]);
			exit(run_node(i, fds[i][1]));
		}
		close(fds[i][1]);
	}
	/* The out-of-band exchange: gather, broadcast, then three barriers. */
	for (i = 0; i < nnodes; i++)
		xfer(fds[i][0], &all[i], sizeof(all[i]), 0);
	for (i = 0; i < nnodes; i++)
		xfer(fds[i][0], all, sizeof(all[0]) * nnodes, 1);
	for (c = 0; c < 3; c++) {
		char b;
		for (i = 0; i < nnodes; i++)
			xfer(fds[i][0], &b, 1, 0);
		for (i = 0; i < nnodes; i++)
			xfer(fds[i][0], &b, 1, 1);
	}
	for (i = 0; i < nnodes; i++) {
		int st;
		waitpid(pid[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			fail = 1;
	}
	printf("transport demo: %s\n", fail ? "FAILED" : "ok");
	return fail;
}
