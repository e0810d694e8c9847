// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hmr provider: the ibv_cq_ex polling interface (ibv_start_poll / ibv_next_poll /
 * ibv_end_poll and the ibv_wc_read_* accessors) over the same CQ ring as poll_cq.
 *
 * start_poll takes the CQ lock and makes the oldest CQE current; next_poll consumes the
 * current CQE and makes the next one current; end_poll consumes the current one (if any),
 * hands the consumed slots back to the kernel and drops the lock. The read_* accessors read
 * fields of the current CQE, which stays in the ring until end_poll publishes the consumer
 * index, so nothing is copied.
 */
#include <config.h>

#include <errno.h>

#include "hmr.h"

static struct hmr_cq *to_hcq_ex(struct ibv_cq_ex *ibcq)
{
	return container_of(ibcq, struct hmr_cq, vcq.cq_ex);
}

static const struct hmr_cqe *cur(struct ibv_cq_ex *ibcq)
{
	return to_hcq_ex(ibcq)->cur;
}

/* Under cq->lock: make the CQE at the consumer index current, or ENOENT if there is none. */
static int hmr_cqx_load(struct hmr_cq *cq)
{
	uint32_t prod = hmr_uring_peer_prod(&cq->ring);

	cq->cur = NULL;
	if (cq->ring.index == prod)
		return ENOENT;
	cq->cur = hmr_uring_slot(&cq->ring, cq->ring.index);
	cq->vcq.cq_ex.wr_id = cq->cur->wr_id;
	cq->vcq.cq_ex.status = cq->cur->status;
	return 0;
}

static int hmr_cqx_start_poll(struct ibv_cq_ex *ibcq, struct ibv_poll_cq_attr *attr)
{
	struct hmr_cq *cq = to_hcq_ex(ibcq);
	int ret;

	if (attr->comp_mask)
		return EINVAL;
	pthread_spin_lock(&cq->lock);
	ret = hmr_cqx_load(cq);
	if (ret)	/* the caller does not call end_poll after ENOENT */
		pthread_spin_unlock(&cq->lock);
	return ret;
}

static int hmr_cqx_next_poll(struct ibv_cq_ex *ibcq)
{
	struct hmr_cq *cq = to_hcq_ex(ibcq);

	if (cq->cur)
		cq->ring.index++;
	return hmr_cqx_load(cq);
}

static void hmr_cqx_end_poll(struct ibv_cq_ex *ibcq)
{
	struct hmr_cq *cq = to_hcq_ex(ibcq);

	if (cq->cur)
		cq->ring.index++;
	cq->cur = NULL;
	hmr_uring_publish_cons(&cq->ring);
	pthread_spin_unlock(&cq->lock);
}

static enum ibv_wc_opcode hmr_cqx_read_opcode(struct ibv_cq_ex *ibcq)
{
	return cur(ibcq)->opcode;
}

static uint32_t hmr_cqx_read_vendor_err(struct ibv_cq_ex *ibcq)
{
	return cur(ibcq)->vendor_err;
}

static uint32_t hmr_cqx_read_byte_len(struct ibv_cq_ex *ibcq)
{
	return cur(ibcq)->byte_len;
}

static __be32 hmr_cqx_read_imm_data(struct ibv_cq_ex *ibcq)
{
	return (__be32)cur(ibcq)->imm_data;
}

static uint32_t hmr_cqx_read_qp_num(struct ibv_cq_ex *ibcq)
{
	return cur(ibcq)->qp_num;
}

static uint32_t hmr_cqx_read_src_qp(struct ibv_cq_ex *ibcq)
{
	return cur(ibcq)->src_qp;
}

static unsigned int hmr_cqx_read_wc_flags(struct ibv_cq_ex *ibcq)
{
	return cur(ibcq)->wc_flags;
}

/* RoCE has no LIDs: these read as 0, as on other RoCE devices. */
static uint32_t hmr_cqx_read_slid(struct ibv_cq_ex *ibcq)
{
	return 0;
}

/* RoCE has no SLs: a UD receive's network header type (HMR_CQE_SL_*), as RoCE NICs put it. */
static uint8_t hmr_cqx_read_sl(struct ibv_cq_ex *ibcq)
{
	return cur(ibcq)->sl;
}

static uint8_t hmr_cqx_read_u8_zero(struct ibv_cq_ex *ibcq)
{
	return 0;
}

void hmr_cq_ex_init(struct hmr_cq *cq)
{
	struct ibv_cq_ex *c = &cq->vcq.cq_ex;

	c->start_poll = hmr_cqx_start_poll;
	c->next_poll = hmr_cqx_next_poll;
	c->end_poll = hmr_cqx_end_poll;
	c->read_opcode = hmr_cqx_read_opcode;
	c->read_vendor_err = hmr_cqx_read_vendor_err;
	c->read_wc_flags = hmr_cqx_read_wc_flags;
	c->read_byte_len = hmr_cqx_read_byte_len;
	c->read_imm_data = hmr_cqx_read_imm_data;
	c->read_qp_num = hmr_cqx_read_qp_num;
	c->read_src_qp = hmr_cqx_read_src_qp;
	c->read_slid = hmr_cqx_read_slid;
	c->read_sl = hmr_cqx_read_sl;
	c->read_dlid_path_bits = hmr_cqx_read_u8_zero;
}
