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

/*
 * After a resize: map the kernel's new ring, which holds the pending entries at the same
 * indices, keep our index, unmap the old one. Returns 0, or an errno with @ring unchanged.
 */
int hmr_uring_remap(struct hmr_uring *ring, int cmd_fd, uint64_t offset, uint64_t size,
		    uint32_t num)
{
	struct hmr_uring old = *ring;

	if (hmr_uring_map(ring, cmd_fd, offset, size, num, old.esize)) {
		*ring = old;
		return errno;
	}
	ring->index = old.index;
	hmr_uring_unmap(&old);
	return 0;
}

/* Completion fields a CQE carries (slid, sl and dlid_path_bits always read 0 on RoCE). */
#define HMR_CQ_WC_FLAGS	IBV_WC_STANDARD_FLAGS

static int hmr_check_cq_attr(const struct ibv_cq_init_attr_ex *attr)
{
	if (attr->comp_mask & ~IBV_CQ_INIT_ATTR_MASK_FLAGS)
		return EOPNOTSUPP;
	if ((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) &&
	    (attr->flags & ~IBV_CREATE_CQ_ATTR_SINGLE_THREADED))
		return EOPNOTSUPP;
	if (attr->wc_flags & ~(uint64_t)HMR_CQ_WC_FLAGS)
		return EOPNOTSUPP;
	return 0;
}

struct ibv_cq_ex *hmr_create_cq_ex(struct ibv_context *ibctx, struct ibv_cq_init_attr_ex *attr)
{
	struct hmr_create_cq_ex_cmd_resp resp = {};
	struct ibv_create_cq_ex cmd = {};
	struct hmr_cq *cq;
	int ret;

	ret = hmr_check_cq_attr(attr);
	if (ret) {
		errno = ret;
		return NULL;
	}
	cq = calloc(1, sizeof(*cq));
	if (!cq)
		return NULL;
	ret = pthread_spin_init(&cq->lock, PTHREAD_PROCESS_PRIVATE);
	if (ret)
		goto err_free;
	if (hmr_cmd_create_cq_ex(ibctx, attr, &cq->vcq, &cmd, sizeof(cmd), &resp.ibv_resp,
				 sizeof(resp)))
		goto err_lock;
	if (hmr_uring_map(&cq->ring, ibctx->cmd_fd, resp.drv.mmap_offset, resp.drv.mmap_size,
			  resp.drv.num, sizeof(struct hmr_cqe)))
		goto err_destroy;
	hmr_cq_ex_init(cq);
	return &cq->vcq.cq_ex;

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

struct ibv_cq *hmr_create_cq(struct ibv_context *ibctx, int cqe,
			     struct ibv_comp_channel *channel, int comp_vector)
{
	struct ibv_cq_init_attr_ex attr = {
		.cqe = cqe,
		.channel = channel,
		.comp_vector = comp_vector,
		.wc_flags = HMR_CQ_WC_FLAGS,
	};
	struct ibv_cq_ex *cq;

	if (cqe < 0) {	/* the _ex command's cqe is unsigned */
		errno = EINVAL;
		return NULL;
	}
	cq = hmr_create_cq_ex(ibctx, &attr);
	return cq ? ibv_cq_ex_to_cq(cq) : NULL;
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

/*
 * The kernel moves the completions not yet polled into a new ring at the same indices, so the
 * consumer index carries over; pollers wait on the lock meanwhile. Should mapping the new ring
 * fail (ENOMEM), the CQ is lost: its completions go to a ring this process cannot see.
 */
int hmr_resize_cq(struct ibv_cq *ibcq, int cqe)
{
	struct hmr_cq *cq = to_hcq(ibcq);
	struct hmr_resize_cq_cmd_resp resp = {};
	struct ibv_resize_cq cmd = {};
	int ret;

	pthread_spin_lock(&cq->lock);
	hmr_uring_publish_cons(&cq->ring);	/* what was polled may be dropped */
	ret = ibv_cmd_resize_cq(ibcq, cqe, &cmd, sizeof(cmd), &resp.ibv_resp, sizeof(resp));
	if (ret)
		goto out;
	ret = hmr_uring_remap(&cq->ring, ibcq->context->cmd_fd, resp.drv.mmap_offset,
			      resp.drv.mmap_size, resp.drv.num);
out:
	pthread_spin_unlock(&cq->lock);
	return ret;
}

/*
 * Drop the completions of QP @qpn not yet polled, keeping the others in order (the QP is on
 * its way to RESET: its old completions must not surface once it is connected again; mlx5
 * does the same). Only entries before the producer index read here move, towards it; the
 * consumer index then skips the dropped ones. The kernel writes only beyond that index.
 */
void hmr_cq_clean(struct hmr_cq *cq, uint32_t qpn)
{
	const struct hmr_cqe *cqe;
	uint32_t prod, src, dst;

	pthread_spin_lock(&cq->lock);
	prod = hmr_uring_peer_prod(&cq->ring);
	if (prod - cq->ring.index > cq->ring.num)
		goto out;		/* not a sane producer index: the kernel said CQ_ERR */
	for (src = dst = prod; src != cq->ring.index;) {
		cqe = hmr_uring_slot(&cq->ring, --src);
		if (cqe->qp_num == qpn)
			continue;
		if (--dst != src)
			memcpy(hmr_uring_slot(&cq->ring, dst), cqe, sizeof(*cqe));
	}
	if (dst != cq->ring.index) {
		cq->ring.index = dst;
		hmr_uring_publish_cons(&cq->ring);
	}
out:
	pthread_spin_unlock(&cq->lock);
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
	wc->sl = cqe->sl;
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
