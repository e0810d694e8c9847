// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hmr provider: the ibv_qp_ex work request builder (ibv_wr_start ... ibv_wr_complete).
 *
 * wr_start takes the SQ lock and remembers the producer index; each wr_<opcode> call writes
 * the header of a new WQE straight into the next SQ ring slot, and the wr_set_* calls that
 * follow fill its data part. Nothing is visible to the kernel until wr_complete publishes the
 * producer index and rings the doorbell; wr_abort (or an error recorded on the way, which
 * wr_complete returns) rewinds the index, dropping every WQE built since wr_start.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "hmr.h"

static struct hmr_qp *to_hqp_ex(struct ibv_qp_ex *ibqp)
{
	return container_of(ibqp, struct hmr_qp, vqp.qp_ex);
}

/* Under sq_lock (between wr_start and wr_complete/abort): start the next WQE. */
static struct hmr_send_wqe *hmr_wr_new(struct ibv_qp_ex *ibqp, enum ibv_wr_opcode opcode)
{
	struct hmr_qp *qp = to_hqp_ex(ibqp);
	struct hmr_send_wqe *wqe;

	qp->wr_cur = NULL;
	if (qp->wr_err)
		return NULL;
	wqe = hmr_uring_next(&qp->sq);
	if (!wqe) {
		qp->wr_err = ENOMEM;
		return NULL;
	}
	memset(wqe, 0, offsetof(struct hmr_send_wqe, sge));
	wqe->wr_id = ibqp->wr_id;
	wqe->opcode = opcode;
	/* Inline data is chosen by wr_set_inline_data*(), not by the flag. */
	wqe->send_flags = ibqp->wr_flags & ~IBV_SEND_INLINE;
	qp->sq.index++;
	qp->wr_cur = wqe;
	return wqe;
}

static void hmr_wr_rdma(struct ibv_qp_ex *ibqp, enum ibv_wr_opcode opcode, uint32_t rkey,
			uint64_t remote_addr, __be32 imm)
{
	struct hmr_send_wqe *wqe = hmr_wr_new(ibqp, opcode);

	if (!wqe)
		return;
	wqe->rkey = rkey;
	wqe->remote_addr = remote_addr;
	wqe->imm_data = (uint32_t)imm;
}

static void hmr_wr_send(struct ibv_qp_ex *ibqp)
{
	hmr_wr_new(ibqp, IBV_WR_SEND);
}

static void hmr_wr_send_imm(struct ibv_qp_ex *ibqp, __be32 imm)
{
	struct hmr_send_wqe *wqe = hmr_wr_new(ibqp, IBV_WR_SEND_WITH_IMM);

	if (wqe)
		wqe->imm_data = (uint32_t)imm;
}

static void hmr_wr_rdma_write(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr)
{
	hmr_wr_rdma(ibqp, IBV_WR_RDMA_WRITE, rkey, remote_addr, 0);
}

static void hmr_wr_rdma_write_imm(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
				  __be32 imm)
{
	hmr_wr_rdma(ibqp, IBV_WR_RDMA_WRITE_WITH_IMM, rkey, remote_addr, imm);
}

static void hmr_wr_rdma_read(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr)
{
	hmr_wr_rdma(ibqp, IBV_WR_RDMA_READ, rkey, remote_addr, 0);
}

static void hmr_wr_atomic(struct ibv_qp_ex *ibqp, enum ibv_wr_opcode opcode, uint32_t rkey,
			  uint64_t remote_addr, uint64_t compare_add, uint64_t swap)
{
	struct hmr_send_wqe *wqe = hmr_wr_new(ibqp, opcode);

	if (!wqe)
		return;
	wqe->rkey = rkey;
	wqe->remote_addr = remote_addr;
	wqe->compare_add = compare_add;
	wqe->swap = swap;
}

static void hmr_wr_atomic_cmp_swp(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
				  uint64_t compare, uint64_t swap)
{
	hmr_wr_atomic(ibqp, IBV_WR_ATOMIC_CMP_AND_SWP, rkey, remote_addr, compare, swap);
}

static void hmr_wr_atomic_fetch_add(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
				    uint64_t add)
{
	hmr_wr_atomic(ibqp, IBV_WR_ATOMIC_FETCH_AND_ADD, rkey, remote_addr, add, 0);
}

static void hmr_wr_atomic_write(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
				const void *atomic_wr)
{
	uint64_t v;

	memcpy(&v, atomic_wr, sizeof(v));
	hmr_wr_atomic(ibqp, HMR_WR_ATOMIC_WRITE, rkey, remote_addr, v, 0);
}

#ifdef HMR_HAVE_WR_FLUSH
static void hmr_wr_flush(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
			 size_t len, uint8_t type, uint8_t level)
{
	hmr_wr_atomic(ibqp, HMR_WR_FLUSH, rkey, remote_addr, len, type | (uint64_t)level << 8);
}
#endif

static void hmr_wr_set_sge_list(struct ibv_qp_ex *ibqp, size_t num_sge,
				const struct ibv_sge *sg_list)
{
	struct hmr_qp *qp = to_hqp_ex(ibqp);
	struct hmr_send_wqe *wqe = qp->wr_cur;

	if (!wqe)
		return;
	if (num_sge > qp->cap.max_send_sge) {
		qp->wr_err = EINVAL;
		return;
	}
	wqe->send_flags &= ~IBV_SEND_INLINE;
	wqe->inline_len = 0;
	wqe->num_sge = num_sge;
	hmr_copy_sges(wqe->sge, sg_list, num_sge);
}

static void hmr_wr_set_sge(struct ibv_qp_ex *ibqp, uint32_t lkey, uint64_t addr,
			   uint32_t length)
{
	struct ibv_sge sge = { .addr = addr, .length = length, .lkey = lkey };

	hmr_wr_set_sge_list(ibqp, 1, &sge);
}

static void hmr_wr_set_inline_data_list(struct ibv_qp_ex *ibqp, size_t num_buf,
					const struct ibv_data_buf *buf_list)
{
	struct hmr_qp *qp = to_hqp_ex(ibqp);
	struct hmr_send_wqe *wqe = qp->wr_cur;
	size_t i, len = 0;

	if (!wqe)
		return;
	for (i = 0; i < num_buf; i++) {
		if (buf_list[i].length > qp->cap.max_inline_data - len) {
			qp->wr_err = ENOMEM;
			return;
		}
		memcpy(wqe->inline_data + len, buf_list[i].addr, buf_list[i].length);
		len += buf_list[i].length;
	}
	wqe->send_flags |= IBV_SEND_INLINE;
	wqe->inline_len = len;
	wqe->num_sge = 0;
}

static void hmr_wr_set_inline_data(struct ibv_qp_ex *ibqp, void *addr, size_t length)
{
	struct ibv_data_buf buf = { .addr = addr, .length = length };

	hmr_wr_set_inline_data_list(ibqp, 1, &buf);
}

static void hmr_wr_set_ud_addr(struct ibv_qp_ex *ibqp, struct ibv_ah *ah, uint32_t remote_qpn,
			       uint32_t remote_qkey)
{
	struct hmr_send_wqe *wqe = to_hqp_ex(ibqp)->wr_cur;

	if (wqe)
		hmr_wqe_set_ud(wqe, ah, remote_qpn, remote_qkey);
}

static void hmr_wr_bind_mw(struct ibv_qp_ex *ibqp, struct ibv_mw *mw, uint32_t rkey,
			   const struct ibv_mw_bind_info *info)
{
	struct hmr_send_wqe *wqe = hmr_wr_new(ibqp, IBV_WR_BIND_MW);

	if (wqe)
		hmr_wqe_set_bind(wqe, mw, rkey, info);
}

static void hmr_wr_local_inv(struct ibv_qp_ex *ibqp, uint32_t invalidate_rkey)
{
	struct hmr_send_wqe *wqe = hmr_wr_new(ibqp, IBV_WR_LOCAL_INV);

	if (wqe)
		wqe->imm_data = invalidate_rkey;
}

static void hmr_wr_send_inv(struct ibv_qp_ex *ibqp, uint32_t invalidate_rkey)
{
	struct hmr_send_wqe *wqe = hmr_wr_new(ibqp, IBV_WR_SEND_WITH_INV);

	if (wqe)
		wqe->imm_data = invalidate_rkey;
}

static void hmr_wr_start(struct ibv_qp_ex *ibqp)
{
	struct hmr_qp *qp = to_hqp_ex(ibqp);

	pthread_spin_lock(&qp->sq_lock);
	qp->wr_start_index = qp->sq.index;
	qp->wr_err = 0;
	qp->wr_cur = NULL;
}

static void hmr_wr_abort(struct ibv_qp_ex *ibqp)
{
	struct hmr_qp *qp = to_hqp_ex(ibqp);

	qp->sq.index = qp->wr_start_index;
	qp->wr_cur = NULL;
	pthread_spin_unlock(&qp->sq_lock);
}

static int hmr_wr_complete(struct ibv_qp_ex *ibqp)
{
	struct hmr_qp *qp = to_hqp_ex(ibqp);
	int err = qp->wr_err;

	if (!err && hmr_qp_in_reset(qp))
		err = EINVAL;
	if (err) {
		hmr_wr_abort(ibqp);
		return err;
	}
	hmr_uring_publish_prod(&qp->sq);
	qp->wr_cur = NULL;
	pthread_spin_unlock(&qp->sq_lock);
	return hmr_doorbell(&qp->vqp.qp);
}

/* Install the builder for the opcodes in send_ops_flags (already checked by the caller). */
static void hmr_wr_set_xrc_srqn(struct ibv_qp_ex *ibqp, uint32_t remote_srqn)
{
	struct hmr_qp *qp = to_hqp_ex(ibqp);

	if (qp->wr_cur)
		qp->wr_cur->xrc_srqn = remote_srqn;
}

void hmr_qp_ex_init(struct hmr_qp *qp, uint64_t send_ops_flags)
{
	struct ibv_qp_ex *q = &qp->vqp.qp_ex;

	if (send_ops_flags & IBV_QP_EX_WITH_SEND)
		q->wr_send = hmr_wr_send;
	if (send_ops_flags & IBV_QP_EX_WITH_SEND_WITH_IMM)
		q->wr_send_imm = hmr_wr_send_imm;
	if (send_ops_flags & IBV_QP_EX_WITH_RDMA_WRITE)
		q->wr_rdma_write = hmr_wr_rdma_write;
	if (send_ops_flags & IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM)
		q->wr_rdma_write_imm = hmr_wr_rdma_write_imm;
	if (send_ops_flags & IBV_QP_EX_WITH_RDMA_READ)
		q->wr_rdma_read = hmr_wr_rdma_read;
	if (send_ops_flags & IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP)
		q->wr_atomic_cmp_swp = hmr_wr_atomic_cmp_swp;
	if (send_ops_flags & IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD)
		q->wr_atomic_fetch_add = hmr_wr_atomic_fetch_add;
	if (send_ops_flags & IBV_QP_EX_WITH_ATOMIC_WRITE)
		q->wr_atomic_write = hmr_wr_atomic_write;
#ifdef HMR_HAVE_WR_FLUSH
	if (send_ops_flags & IBV_QP_EX_WITH_FLUSH)
		q->wr_flush = hmr_wr_flush;
#endif
	if (send_ops_flags & IBV_QP_EX_WITH_BIND_MW)
		q->wr_bind_mw = hmr_wr_bind_mw;
	if (send_ops_flags & IBV_QP_EX_WITH_LOCAL_INV)
		q->wr_local_inv = hmr_wr_local_inv;
	if (send_ops_flags & IBV_QP_EX_WITH_SEND_WITH_INV)
		q->wr_send_inv = hmr_wr_send_inv;
	if (qp->vqp.qp.qp_type == IBV_QPT_UD)
		q->wr_set_ud_addr = hmr_wr_set_ud_addr;
	if (qp->vqp.qp.qp_type == IBV_QPT_XRC_SEND)
		q->wr_set_xrc_srqn = hmr_wr_set_xrc_srqn;
	q->wr_set_sge = hmr_wr_set_sge;
	q->wr_set_sge_list = hmr_wr_set_sge_list;
	q->wr_set_inline_data = hmr_wr_set_inline_data;
	q->wr_set_inline_data_list = hmr_wr_set_inline_data_list;
	q->wr_start = hmr_wr_start;
	q->wr_complete = hmr_wr_complete;
	q->wr_abort = hmr_wr_abort;
	qp->vqp.comp_mask |= VERBS_QP_EX;
}
