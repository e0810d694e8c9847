// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hmr provider: RC, UD and XRC queue pairs. post_recv writes the RQ ring; post_send writes the
 * SQ ring and rings the doorbell (a POST_SEND command without WRs); the kernel consumes both.
 * A queue the QP does not have (the RQ of a QP on an SRQ or of an XRC send QP, both queues of
 * an XRC receive QP) is not mapped, and posting to it fails with EINVAL.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmr.h"

static int hmr_qp_map_rings(struct hmr_qp *qp, int cmd_fd, struct hmr_create_qp_resp *r)
{
	if (r->sq_num && hmr_uring_map(&qp->sq, cmd_fd, r->sq_mmap_offset, r->sq_mmap_size,
				       r->sq_num, sizeof(struct hmr_send_wqe)))
		return -1;
	if (r->rq_num && hmr_uring_map(&qp->rq, cmd_fd, r->rq_mmap_offset, r->rq_mmap_size,
				       r->rq_num, sizeof(struct hmr_recv_wqe))) {
		hmr_uring_unmap(&qp->sq);
		return -1;
	}
	return 0;
}

static int hmr_qp_init_locks(struct hmr_qp *qp)
{
	if (pthread_spin_init(&qp->sq_lock, PTHREAD_PROCESS_PRIVATE))
		return -1;
	if (pthread_spin_init(&qp->rq_lock, PTHREAD_PROCESS_PRIVATE)) {
		pthread_spin_destroy(&qp->sq_lock);
		return -1;
	}
	return 0;
}

static void hmr_qp_destroy_locks(struct hmr_qp *qp)
{
	pthread_spin_destroy(&qp->rq_lock);
	pthread_spin_destroy(&qp->sq_lock);
}

/* What create_qp_ex accepts: RC, UD and XRC QPs, the opcodes the kernel executes. */
#define HMR_QP_COMP_MASK (IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_XRCD | \
			  IBV_QP_INIT_ATTR_SEND_OPS_FLAGS)
#define HMR_UD_SEND_OPS (IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM)
#define HMR_RC_SEND_OPS (IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM | \
			 IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | \
			 IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP | \
			 IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD | IBV_QP_EX_WITH_ATOMIC_WRITE | \
			 HMR_QP_EX_WITH_FLUSH | IBV_QP_EX_WITH_SEND_WITH_INV | HMR_MW_SEND_OPS)
/* Memory windows: bound and invalidated by WRs on any connected QP. */
#define HMR_MW_SEND_OPS (IBV_QP_EX_WITH_BIND_MW | IBV_QP_EX_WITH_LOCAL_INV)
/* UC: SENDs and WRITEs, with or without immediate data (nothing comes back). */
#define HMR_UC_SEND_OPS (IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM | \
			 IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | \
			 HMR_MW_SEND_OPS)
/* XRC: what RC has but RDMA FLUSH and ATOMIC WRITE. */
#define HMR_XRC_SEND_OPS (HMR_RC_SEND_OPS & ~(IBV_QP_EX_WITH_ATOMIC_WRITE | HMR_QP_EX_WITH_FLUSH))

static uint64_t hmr_qp_send_ops(enum ibv_qp_type type)
{
	switch (type) {
	case IBV_QPT_RC:
		return HMR_RC_SEND_OPS;
	case IBV_QPT_UD:
		return HMR_UD_SEND_OPS;
	case IBV_QPT_XRC_SEND:
		return HMR_XRC_SEND_OPS;
	case IBV_QPT_UC:
		return HMR_UC_SEND_OPS;
	default:
		return 0;
	}
}

static int hmr_check_qp_init_attr(struct ibv_context *ibctx,
				  const struct ibv_qp_init_attr_ex *attr)
{
	if ((attr->comp_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS) && attr->create_flags)
		return EOPNOTSUPP;
	if (attr->comp_mask & ~(HMR_QP_COMP_MASK | IBV_QP_INIT_ATTR_CREATE_FLAGS))
		return EOPNOTSUPP;
	/* An XRC receive QP belongs to an XRC domain, every other QP to a PD. */
	if (attr->qp_type == IBV_QPT_XRC_RECV ? !(attr->comp_mask & IBV_QP_INIT_ATTR_XRCD) :
						!(attr->comp_mask & IBV_QP_INIT_ATTR_PD))
		return EINVAL;
	if (attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS) {
		uint64_t ops = hmr_qp_send_ops(attr->qp_type) & ~to_hctx(ibctx)->missing_send_ops;

		if (!ops || (attr->send_ops_flags & ~ops))
			return EOPNOTSUPP;
	}
	return 0;
}

struct ibv_qp *hmr_create_qp_ex(struct ibv_context *ibctx, struct ibv_qp_init_attr_ex *attr)
{
	struct hmr_create_qp_cmd_resp resp = {};
	struct ibv_create_qp cmd = {};
	struct hmr_qp *qp;
	uint32_t mask;
	int err, ret;

	err = hmr_check_qp_init_attr(ibctx, attr);
	if (err) {
		errno = err;
		return NULL;
	}
	qp = calloc(1, sizeof(*qp));
	if (!qp)
		return NULL;
	if (hmr_qp_init_locks(qp))
		goto err_free;
	/* No creation flags are supported, so an empty set need not reach the kernel. */
	mask = attr->comp_mask;
	attr->comp_mask &= ~IBV_QP_INIT_ATTR_CREATE_FLAGS;
	ret = ibv_cmd_create_qp_ex(ibctx, &qp->vqp, attr, &cmd, sizeof(cmd), &resp.ibv_resp,
				   sizeof(resp));
	attr->comp_mask = mask;
	if (ret) {
		errno = ret;
		goto err_locks;
	}
	if (hmr_qp_map_rings(qp, ibctx->cmd_fd, &resp.drv))
		goto err_destroy;
	qp->cap = attr->cap;
	if (attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS)
		hmr_qp_ex_init(qp, attr->send_ops_flags);
	return &qp->vqp.qp;

err_destroy:
	err = errno;
	ibv_cmd_destroy_qp(&qp->vqp.qp);
	errno = err;
err_locks:
	hmr_qp_destroy_locks(qp);
err_free:
	free(qp);
	return NULL;
}

struct ibv_qp *hmr_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	struct ibv_qp_init_attr_ex attr_ex = {
		.qp_context = attr->qp_context,
		.send_cq = attr->send_cq,
		.recv_cq = attr->recv_cq,
		.srq = attr->srq,
		.cap = attr->cap,
		.qp_type = attr->qp_type,
		.sq_sig_all = attr->sq_sig_all,
		.comp_mask = IBV_QP_INIT_ATTR_PD,
		.pd = pd,
	};
	struct ibv_qp *qp;

	qp = hmr_create_qp_ex(pd->context, &attr_ex);
	if (qp)
		attr->cap = attr_ex.cap;
	return qp;
}

int hmr_destroy_qp(struct ibv_qp *ibqp)
{
	struct hmr_qp *qp = to_hqp(ibqp);
	int ret;

	ret = ibv_cmd_destroy_qp(ibqp);
	if (ret)
		return ret;
	hmr_uring_unmap(&qp->rq);
	hmr_uring_unmap(&qp->sq);
	hmr_qp_destroy_locks(qp);
	free(qp);
	return 0;
}

int hmr_query_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int mask,
		 struct ibv_qp_init_attr *init)
{
	struct ibv_query_qp cmd;

	return ibv_cmd_query_qp(ibqp, attr, mask, init, &cmd, sizeof(cmd));
}

int hmr_modify_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int mask)
{
	struct ibv_modify_qp cmd = {};
	struct hmr_qp *qp = to_hqp(ibqp);
	int ret;

	ret = ibv_cmd_modify_qp(ibqp, attr, mask, &cmd, sizeof(cmd));
	if (ret || !(mask & IBV_QP_STATE))
		return ret;
	__atomic_store_n(&qp->user_state, attr->qp_state, __ATOMIC_RELAXED);
	if (attr->qp_state == IBV_QPS_RESET) {
		/* Its completions not yet polled go with its queues (as mlx5 does). */
		if (ibqp->recv_cq)
			hmr_cq_clean(to_hcq(ibqp->recv_cq), ibqp->qp_num);
		if (ibqp->send_cq && ibqp->send_cq != ibqp->recv_cq)
			hmr_cq_clean(to_hcq(ibqp->send_cq), ibqp->qp_num);
	}
	return 0;
}

/* Posting to a QP in RESET is an immediate error (IB spec). */
bool hmr_qp_in_reset(struct hmr_qp *qp)
{
	return __atomic_load_n(&qp->user_state, __ATOMIC_RELAXED) == IBV_QPS_RESET;
}

void hmr_copy_sges(struct hmr_sge *dst, const struct ibv_sge *src, int num)
{
	int i;

	for (i = 0; i < num; i++) {
		dst[i].addr = src[i].addr;
		dst[i].length = src[i].length;
		dst[i].lkey = src[i].lkey;
	}
}

/* Caller holds the ring's lock. */
static int hmr_post_one_recv(struct hmr_uring *ring, uint32_t max_sge,
			     const struct ibv_recv_wr *wr)
{
	struct hmr_recv_wqe *wqe;

	if (wr->num_sge < 0 || (uint32_t)wr->num_sge > max_sge)
		return EINVAL;
	wqe = hmr_uring_next(ring);
	if (!wqe)
		return ENOMEM;
	wqe->wr_id = wr->wr_id;
	wqe->num_sge = wr->num_sge;
	wqe->reserved = 0;
	hmr_copy_sges(wqe->sge, wr->sg_list, wr->num_sge);
	ring->index++;
	return 0;
}

/* Post receive WRs on @ring (a QP's RQ or an SRQ), which @lock serialises. */
int hmr_post_recv_ring(struct hmr_uring *ring, pthread_spinlock_t *lock, uint32_t max_sge,
		       struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	int ret = 0;

	pthread_spin_lock(lock);
	for (; wr; wr = wr->next) {
		ret = hmr_post_one_recv(ring, max_sge, wr);
		if (ret) {
			*bad_wr = wr;
			break;
		}
	}
	hmr_uring_publish_prod(ring);
	pthread_spin_unlock(lock);
	return ret;
}

int hmr_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct hmr_qp *qp = to_hqp(ibqp);

	if (hmr_qp_in_reset(qp) || !qp->rq.hdr) {
		*bad_wr = wr;
		return EINVAL;
	}
	return hmr_post_recv_ring(&qp->rq, &qp->rq_lock, qp->cap.max_recv_sge, wr, bad_wr);
}

/* Copy the WR's gather list into the WQE as inline data. */
static int hmr_wqe_set_inline(struct hmr_qp *qp, struct hmr_send_wqe *wqe,
			      const struct ibv_send_wr *wr)
{
	uint32_t len = 0;
	int i;

	for (i = 0; i < wr->num_sge; i++) {
		if (wr->sg_list[i].length > qp->cap.max_inline_data - len)
			return EINVAL;
		memcpy(wqe->inline_data + len, (void *)(uintptr_t)wr->sg_list[i].addr,
		       wr->sg_list[i].length);
		len += wr->sg_list[i].length;
	}
	wqe->inline_len = len;
	wqe->num_sge = 0;
	return 0;
}

/* A BIND_MW WQE (hmr-abi.h): the window, its new key, and where it goes. */
void hmr_wqe_set_bind(struct hmr_send_wqe *wqe, struct ibv_mw *mw, uint32_t rkey,
		      const struct ibv_mw_bind_info *info)
{
	wqe->imm_data = mw->rkey;
	wqe->rkey = rkey;
	wqe->mr_lkey = info->mr ? info->mr->lkey : 0;
	wqe->remote_addr = info->addr;
	wqe->compare_add = info->length;
	wqe->swap = info->mw_access_flags;
}

static void hmr_wqe_set_remote(struct hmr_send_wqe *wqe, const struct ibv_send_wr *wr)
{
	switch (wr->opcode) {
	case IBV_WR_RDMA_WRITE:
	case IBV_WR_RDMA_WRITE_WITH_IMM:
	case IBV_WR_RDMA_READ:
		wqe->remote_addr = wr->wr.rdma.remote_addr;
		wqe->rkey = wr->wr.rdma.rkey;
		break;
	case IBV_WR_ATOMIC_CMP_AND_SWP:
	case IBV_WR_ATOMIC_FETCH_AND_ADD:
		wqe->remote_addr = wr->wr.atomic.remote_addr;
		wqe->rkey = wr->wr.atomic.rkey;
		wqe->compare_add = wr->wr.atomic.compare_add;
		wqe->swap = wr->wr.atomic.swap;
		break;
	case IBV_WR_BIND_MW:
		hmr_wqe_set_bind(wqe, wr->bind_mw.mw, wr->bind_mw.rkey, &wr->bind_mw.bind_info);
		break;
	default:
		break;
	}
}

/* Caller holds qp->sq_lock. */
static int hmr_post_one_send(struct hmr_qp *qp, const struct ibv_send_wr *wr)
{
	struct hmr_send_wqe *wqe;

	if (wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->cap.max_send_sge)
		return EINVAL;
	wqe = hmr_uring_next(&qp->sq);
	if (!wqe)
		return ENOMEM;
	memset(wqe, 0, offsetof(struct hmr_send_wqe, sge));
	wqe->wr_id = wr->wr_id;
	wqe->opcode = wr->opcode;
	wqe->send_flags = wr->send_flags;
	wqe->imm_data = wr->imm_data;
	if (qp->vqp.qp.qp_type != IBV_QPT_UD)
		hmr_wqe_set_remote(wqe, wr);
	else if (wr->opcode == IBV_WR_SEND || wr->opcode == IBV_WR_SEND_WITH_IMM)
		hmr_wqe_set_ud(wqe, wr->wr.ud.ah, wr->wr.ud.remote_qpn, wr->wr.ud.remote_qkey);
	/* any other opcode on UD names no AH: the kernel completes it LOC_QP_OP_ERR */
	if (qp->vqp.qp.qp_type == IBV_QPT_XRC_SEND)
		wqe->xrc_srqn = wr->qp_type.xrc.remote_srqn;
	if (wr->send_flags & IBV_SEND_INLINE) {
		if (hmr_wqe_set_inline(qp, wqe, wr))
			return EINVAL;
	} else {
		wqe->num_sge = wr->num_sge;
		hmr_copy_sges(wqe->sge, wr->sg_list, wr->num_sge);
	}
	qp->sq.index++;
	return 0;
}

/* Tell the kernel the SQ has new WQEs: POST_SEND with no WRs. */
int hmr_doorbell(struct ibv_qp *ibqp)
{
	struct ib_uverbs_post_send_resp resp;
	struct ibv_post_send cmd = {};

	cmd.hdr.command = IB_USER_VERBS_CMD_POST_SEND;
	cmd.hdr.in_words = sizeof(cmd) / 4;
	cmd.hdr.out_words = sizeof(resp) / 4;
	cmd.response = (uintptr_t)&resp;
	cmd.qp_handle = ibqp->handle;
	cmd.wqe_size = sizeof(struct ib_uverbs_send_wr);
	if (write(ibqp->context->cmd_fd, &cmd, sizeof(cmd)) != sizeof(cmd))
		return errno;
	return 0;
}

/*
 * ibv_bind_mw (type 1): a BIND_MW WQE with the next key, which the window takes at once: the
 * caller may post work naming it before the bind completes, as the spec allows.
 */
int hmr_bind_mw(struct ibv_qp *ibqp, struct ibv_mw *mw, struct ibv_mw_bind *bind)
{
	struct ibv_send_wr wr = {
		.wr_id = bind->wr_id,
		.opcode = IBV_WR_BIND_MW,
		.send_flags = bind->send_flags,
	}, *bad;
	int ret;

	if (mw->type != IBV_MW_TYPE_1 ||
	    (bind->bind_info.mw_access_flags & IBV_ACCESS_ZERO_BASED) ||
	    (bind->bind_info.length && !bind->bind_info.mr))
		return EINVAL;
	wr.bind_mw.mw = mw;
	wr.bind_mw.rkey = ibv_inc_rkey(mw->rkey);
	wr.bind_mw.bind_info = bind->bind_info;
	ret = hmr_post_send(ibqp, &wr, &bad);
	if (!ret)
		mw->rkey = wr.bind_mw.rkey;
	return ret;
}

int hmr_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr)
{
	struct hmr_qp *qp = to_hqp(ibqp);
	int ret = 0, dbret;

	if (hmr_qp_in_reset(qp) || !qp->sq.hdr) {
		*bad_wr = wr;
		return EINVAL;
	}
	pthread_spin_lock(&qp->sq_lock);
	for (; wr; wr = wr->next) {
		ret = hmr_post_one_send(qp, wr);
		if (ret) {
			*bad_wr = wr;
			break;
		}
	}
	hmr_uring_publish_prod(&qp->sq);
	pthread_spin_unlock(&qp->sq_lock);
	dbret = hmr_doorbell(ibqp);
	return ret ? ret : dbret;
}
