/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bench_common: shared verbs setup for the perftest tools. One process opens the device, a PD,
 * one CQ and two RC QPs connected to each other over the same port (GID index BENCH_GID, RoCEv2
 * on lo), so qp[0] can RDMA WRITE/READ into memory registered in the same process: the
 * requester and the responder run on one device, as perftest does with two processes.
 */
#ifndef HMR_BENCH_COMMON_H
#define HMR_BENCH_COMMON_H

#include <infiniband/verbs.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_GID 1	/* RoCEv2 IPv4-mapped GID of rxe/hmr on lo */
#define BENCH_EXIT_UNSUPPORTED 77
#define BENCH_POLL_TIMEOUT_NS (10ull * 1000000000ull)

struct bench {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_comp_channel *ch;	/* the CQ's completion channel (bench_wait_cq) */
	struct ibv_cq *cq;
	struct ibv_qp *qp[2];	/* qp[0] requester, qp[1] its responder (and vice versa) */
};

/* An anonymous, aligned mapping and its MR. */
struct bench_buf {
	char *buf;
	size_t len;
	struct ibv_mr *mr;
};

uint64_t now_ns(void);
/* bench_open, then (with ODP) bench_check_odp; prints why it failed. 0, 1, or 77. */
int bench_start(struct bench *b, const char *prog, const char *dev, int odp, int depth);
/* Open DEV and make the PD, CQ (CQE entries) and two connected RC QPs (MAX_WR sends each). */
int bench_open(struct bench *b, const char *dev, int cqe, int max_wr);
void bench_close(struct bench *b);
/* Move both QPs through RESET to RTS again (after an error completion). 0 or an errno. */
int bench_reconnect(struct bench *b);
/* 0 if DEV supports RC ODP for WRITE and READ; else prints "odp unsupported" and returns 77. */
int bench_check_odp(struct bench *b, const char *prog);
/* Post one signaled RDMA OP (WRITE or READ) of LEN bytes from/to LOCAL to/from REMOTE. */
int bench_post(struct bench *b, enum ibv_wr_opcode op, void *local, uint32_t lkey, size_t len,
	       void *remote, uint32_t rkey, uint64_t wr_id);
/* Poll one completion into WC (spin briefly, then sleep on the channel): 1 if one arrived, 0 on
 * timeout, -1 if polling failed. */
int bench_poll(struct bench *b, struct ibv_wc *wc, uint64_t timeout_ns);
/* Arm the CQ and sleep until its completion channel fires or TIMEOUT_MS pass: 1 (an event;
 * poll the CQ), 0 (timeout) or -1. A completion that came before the arming is found by the
 * caller's next poll: poll, wait, poll. */
int bench_wait_cq(struct bench *b, int timeout_ms);
/* Post one WR and wait for its completion; 0, or prints why and returns -1. */
int bench_rdma_sync(struct bench *b, enum ibv_wr_opcode op, void *local, uint32_t lkey,
		    size_t len, void *remote, uint32_t rkey);
/* Anonymous mapping of SIZE bytes aligned to ALIGN (a power of two); NULL and errno on failure. */
void *bench_map(size_t size, size_t align);
void bench_unmap(void *p, size_t size);
/* Map LEN bytes aligned to ALIGN, madvise ADVICE (unless -1), fill with FILL, register with
 * ACCESS (unless negative: a plain mapping). 0, or prints why and returns -1 (bench_buf_fini undoes a partial init). */
int bench_buf_init(struct bench *b, struct bench_buf *m, size_t len, size_t align, int advice,
		   int fill, int access);
void bench_buf_fini(struct bench_buf *m);
/* Sort V[N] in place and return its P-th percentile (nearest rank, P in 1..100). */
uint64_t bench_percentile(uint64_t *v, size_t n, unsigned int p);
/* The hw counter NAME of port 1 of DEV (after the core's 10 ms cache), or -1 if it has none. */
long long bench_hw_counter(const char *dev, const char *name);
/* Offset of the first byte of BUF[LEN] that differs from C, or LEN if none. */
size_t bench_check_fill(const void *buf, size_t len, unsigned char c);

#endif
