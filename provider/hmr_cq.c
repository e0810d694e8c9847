// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hmr provider: completion queues. poll_cq reads the kernel's CQ ring: no system call.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hmr.h"

int hmr_uring_map(struct hmr_uring *ring, int cmd_fd, uint64_t offset, uint64_t size,
		  uint32_t num, uint32_t esize)
{
	if (!num || (num & (num - 1)) ||
	    size < HMR_RING_HDR_SIZE + (uint64_t)num * esize) {
		errno = EPROTO;
		return -1;
	}
	ring->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, cmd_fd, offset);
	if (ring->map == MAP_FAILED)
		return -1;
	ring->hdr = ring->map;
	ring->map_size = size;
	ring->num = num;
	ring->esize = esize;
	ring->index = 0;
	return 0;
}

void hmr_uring_unmap(struct hmr_uring *ring)
{
	if (ring->map)
		munmap(ring->map, ring->map_size);
	ring->map = NULL;
}

struct ibv_cq *hmr_create_cq(struct ibv_context *ibctx, int cqe,
			     struct ibv_comp_channel *channel, int comp_vector)
{
	struct hmr_create_cq_cmd_resp resp = {};
	struct ibv_create_cq cmd;
	struct hmr_cq *cq;
	int ret;

	cq = calloc(1, sizeof(*cq));
	if (!cq)
		return NULL;
	ret = pthread_spin_init(&cq->lock, PTHREAD_PROCESS_PRIVATE);
	if (ret)
		goto err_free;
	if (ibv_cmd_create_cq(ibctx, cqe, channel, comp_vector, &cq->vcq.cq, &cmd, sizeof(cmd),
			      &resp.ibv_resp, sizeof(resp)))
		goto err_lock;
	if (hmr_uring_map(&cq->ring, ibctx->cmd_fd, resp.drv.mmap_offset, resp.drv.mmap_size,
			  resp.drv.num, sizeof(struct hmr_cqe)))
		goto err_destroy;
	return &cq->vcq.cq;

err_destroy:
	ret = errno;
	ibv_cmd_destroy_cq(&cq->vcq.cq);
	errno = ret;
err_lock:
	pthread_spin_destroy(&cq->lock);
err_free:
	free(cq);
	return NULL;
}

int hmr_destroy_cq(struct ibv_cq *ibcq)
{
	struct hmr_cq *cq = to_hcq(ibcq);
	int ret;

	ret = ibv_cmd_destroy_cq(ibcq);
	if (ret)
		return ret;
	hmr_uring_unmap(&cq->ring);
	pthread_spin_destroy(&cq->lock);
	free(cq);
	return 0;
}

static void hmr_cqe_to_wc(const struct hmr_cqe *cqe, struct ibv_wc *wc)
{
	memset(wc, 0, sizeof(*wc));
	wc->wr_id = cqe->wr_id;
	wc->status = cqe->status;
	wc->opcode = cqe->opcode;
	wc->vendor_err = cqe->vendor_err;
	wc->byte_len = cqe->byte_len;
	wc->imm_data = cqe->imm_data;
	wc->qp_num = cqe->qp_num;
	wc->src_qp = cqe->src_qp;
	wc->wc_flags = cqe->wc_flags;
}

int hmr_poll_cq(struct ibv_cq *ibcq, int ne, struct ibv_wc *wc)
{
	struct hmr_cq *cq = to_hcq(ibcq);
	uint32_t prod;
	int n;

	pthread_spin_lock(&cq->lock);
	prod = hmr_uring_peer_prod(&cq->ring);
	for (n = 0; n < ne && cq->ring.index != prod; n++)
		hmr_cqe_to_wc(hmr_uring_slot(&cq->ring, cq->ring.index++), &wc[n]);
	if (n)
		hmr_uring_publish_cons(&cq->ring);
	pthread_spin_unlock(&cq->lock);
	return n;
}
