// SPDX-License-Identifier: GPL-2.0
/*
 * The responder: executes a request (struct hmr_request) that arrived for a QP. It runs
 * under the target QP's resp_lock, which serialises it with other requesters and with the
 * flush of the receive queue, and gives it a consistent view of the QP's state and of the
 * attributes it reads (qp_access_flags, min_rnr_timer): modify_qp writes them under
 * resp_lock too. Outcomes follow the IB spec's NAK codes: an invalid R_Key or range is a
 * remote access error, an over-long SEND a remote invalid request, a receive WQE or buffer
 * the responder cannot use a remote operation error (its QP goes to ERROR).
 */
#include <rdma/ib_user_verbs.h>

#include "hmr_dev.h"
#include "hmr_transport.h"

/*
 * Copy the next receive WQE off the queue @req's receives come from (@qp's RQ, or req->srq)
 * into @wqe (once: userspace may rewrite the slot). Returns 0, HMR_RESP_RNR when the queue is
 * empty, or -EIO when userspace corrupted its producer index (more entries than the ring
 * holds, or behind the consumer): a QP then goes to ERROR with IB_EVENT_QP_FATAL, an SRQ
 * raises IB_EVENT_SRQ_ERR. A WQE taken is then consumed (hmr_resp_consume_recv) or given back
 * (hmr_resp_give_back). Caller holds qp->resp_lock.
 */
int hmr_resp_take_recv(struct hmr_qp *qp, struct hmr_request *req, struct hmr_recv_wqe *wqe)
{
	u32 prod;
	int ret;

	if (req->srq) {
		ret = hmr_srq_take(req->srq, wqe);
		return ret == -EAGAIN ? HMR_RESP_RNR : ret;
	}
	prod = hmr_ring_user_prod(&qp->rq);
	if (!hmr_ring_span_ok(&qp->rq, prod, qp->rq_cons)) {
		hmr_qp_error_async(qp, true);
		return -EIO;
	}
	if (prod == qp->rq_cons)
		return HMR_RESP_RNR;
	memcpy(wqe, hmr_ring_slot(&qp->rq, qp->rq_cons), sizeof(*wqe));
	return 0;
}

/* The requester's answer when the receive queue could not be read. */
static int hmr_resp_take_recv_status(int ret)
{
	return ret == HMR_RESP_RNR ? HMR_RESP_RNR : IB_WC_REM_OP_ERR;
}

/* The receive WQE is used: hand its slot back. Caller holds qp->resp_lock. */
void hmr_resp_consume_recv(struct hmr_qp *qp, struct hmr_request *req)
{
	if (req->srq)
		hmr_srq_consume(req->srq);
	else
		hmr_ring_publish_cons(&qp->rq, ++qp->rq_cons);
}

/* The receive WQE taken was not used: it stays first in its queue. */
static void hmr_resp_give_back(struct hmr_request *req)
{
	if (req->srq)
		hmr_srq_give_back(req->srq);
}

/* Receive buffers belong to the receive queue's PD: the SRQ's, or the QP's. */
static struct ib_pd *hmr_resp_recv_pd(struct hmr_qp *qp, struct hmr_request *req)
{
	return req->srq ? req->srq->ibsrq.pd : qp->ibqp.pd;
}

/* R_Keys are checked against the QP's PD; an XRC receive QP has none: its SRQ's. */
static struct ib_pd *hmr_resp_rkey_pd(struct hmr_qp *qp, struct hmr_request *req)
{
	return qp->ibqp.pd ? qp->ibqp.pd : req->srq->ibsrq.pd;
}

static void hmr_sgl_release(struct hmr_sgl *sgl)
{
	u32 i;

	for (i = 0; i < sgl->num; i++)
		if (sgl->mr[i])
			hmr_mr_put(sgl->mr[i]);
	sgl->num = 0;
}

/*
 * Resolve a WQE's scatter list against @pd (and its device) with rights @access. On failure
 * nothing stays referenced. Zero-length entries are skipped, keys and all.
 */
int hmr_sgl_resolve(struct ib_pd *pd, struct hmr_sgl *sgl, const struct hmr_sge *sge,
		    u32 num, int access)
{
	struct hmr_dev *hdev = to_hdev(pd->device);
	u32 i;

	sgl->num = 0;
	sgl->len = 0;
	sgl->inline_data = NULL;
	if (num > HMR_MAX_SGE)
		return -EINVAL;
	for (i = 0; i < num; i++) {
		struct hmr_mr *mr = NULL;

		if (sge[i].length) {
			mr = hmr_mr_get(hdev, sge[i].lkey);
			if (!mr || !hmr_mr_allows(mr, pd, sge[i].addr, sge[i].length, access)) {
				if (mr)
					hmr_mr_put(mr);
				hmr_sgl_release(sgl);
				return -EACCES;
			}
		}
		sgl->sge[sgl->num] = sge[i];
		sgl->mr[sgl->num++] = mr;
		sgl->len += sge[i].length;
	}
	return 0;
}

void hmr_sgl_put(struct hmr_sgl *sgl)
{
	hmr_sgl_release(sgl);
}

/* A remote buffer named by rkey, as a one-entry SGL. Caller holds qp->resp_lock. */
int hmr_resp_remote_sgl(struct hmr_qp *qp, struct hmr_request *req, u64 len,
			int access, struct hmr_sgl *sgl)
{
	struct hmr_sge sge = { .addr = req->remote_addr, .length = len, .lkey = req->rkey };
	struct ib_pd *pd = hmr_resp_rkey_pd(qp, req);
	int ret;

	if (!(qp->attr.qp_access_flags & access))
		return -EACCES;
	if (len > U32_MAX)
		return -EINVAL;
	if (!len) {	/* a zero-length RDMA names no memory: nothing to check */
		sgl->num = 0;
		sgl->len = 0;
		sgl->inline_data = NULL;
		return 0;
	}
	ret = hmr_sgl_resolve(pd, sgl, &sge, 1, access);
	if (!ret)
		return 0;
	/* Not an MR's key that allows it: a window's, perhaps (looked up only then). */
	return hmr_mw_resolve(qp, pd, &sge, access, sgl) == 0 ? 0 : ret;
}

void hmr_resp_complete_recv(struct hmr_qp *qp, struct hmr_request *req, u64 id,
			    enum ib_wc_status status, u32 opcode, u32 len)
{
	struct hmr_cqe cqe = {
		.wr_id = id,
		.status = status,
		.opcode = opcode,
		.byte_len = len,
		.qp_num = qp->ibqp.qp_num,
		.src_qp = req->src_qpn,
	};
	bool imm = req->opcode == IB_UVERBS_WR_SEND_WITH_IMM ||
		   req->opcode == IB_UVERBS_WR_RDMA_WRITE_WITH_IMM;
	struct ib_cq *cq;

	if (imm && status == IB_WC_SUCCESS) {
		cqe.wc_flags = IB_WC_WITH_IMM;
		cqe.imm_data = (__force u32)req->imm;
	}
	if (req->opcode == IB_UVERBS_WR_SEND_WITH_INV && status == IB_WC_SUCCESS) {
		cqe.wc_flags = HMR_WC_WITH_INV;
		cqe.imm_data = req->invalidate;
	}
	if (hmr_qp_is_ud(qp) && status == IB_WC_SUCCESS) {
		cqe.wc_flags |= IB_WC_GRH;	/* the buffer starts with the 40-byte GRH */
		cqe.sl = hmr_ud_cqe_sl(&req->ud_sgid);
		hmr_ud_count_mad(qp, HMR_MAD_RCVD);
	}
	/* An XRC SRQ completes to its own CQ. */
	cq = qp->ibqp.qp_type == IB_QPT_XRC_TGT ? req->srq->ibsrq.ext.cq : qp->ibqp.recv_cq;
	hmr_cq_post(to_hcq(cq), &cqe, req->solicited);
}

/* The responder side failed locally: complete the receive in error, QP to ERROR. */
static int hmr_resp_recv_error(struct hmr_qp *qp, struct hmr_request *req, u64 id,
			       enum ib_wc_status status, int requester_status)
{
	hmr_resp_consume_recv(qp, req);
	hmr_resp_complete_recv(qp, req, id, status, IB_WC_RECV, 0);
	hmr_qp_error_async(qp, false);
	return requester_status;
}

/* @sgl without its first @skip bytes; shares @sgl's MR references (release only @sgl). */
static void hmr_sgl_view(struct hmr_sgl *view, const struct hmr_sgl *sgl, u64 skip)
{
	u32 i;

	memset(view, 0, sizeof(*view));
	for (i = 0; i < sgl->num; i++) {
		struct hmr_sge sge = sgl->sge[i];
		u64 s = min_t(u64, skip, sge.length);

		skip -= s;
		sge.addr += s;
		sge.length -= s;
		if (!sge.length)
			continue;
		view->sge[view->num] = sge;
		view->mr[view->num++] = sgl->mr[i];
		view->len += sge.length;
	}
}

/* Copy the optional header @hdr (@hdr_len bytes) and then the payload into @dst. */
static int hmr_resp_fill(struct hmr_request *req, struct hmr_sgl *dst, const u8 *hdr,
			 u32 hdr_len, bool *dst_failed)
{
	struct hmr_sgl head = { .inline_data = hdr, .len = hdr_len }, rest;
	int ret;

	if (!hdr_len)
		return hmr_sgl_copy(dst, req->local, req->local->len, dst_failed);
	ret = hmr_sgl_copy(dst, &head, hdr_len, dst_failed);
	if (ret)
		return ret;
	hmr_sgl_view(&rest, dst, hdr_len);
	return hmr_sgl_copy(&rest, req->local, req->local->len, dst_failed);
}

/*
 * Deliver a SEND into the receive WQE @wqe taken off @qp's RQ: @hdr_len bytes of @hdr (UD's
 * GRH; 0 for RC) and then the payload. A failure on the receiver's side completes the receive
 * in error and answers the requester @op_err (bad receive WQE or buffer) or @len_err (buffer
 * too short). Caller holds qp->resp_lock.
 */
int hmr_resp_deliver(struct hmr_qp *qp, struct hmr_request *req, struct hmr_recv_wqe *wqe,
		     const u8 *hdr, u32 hdr_len, int op_err, int len_err)
{
	u64 len = req->local->len + hdr_len;
	struct hmr_sgl dst;
	u32 max_sge = req->srq ? req->srq->max_sge : qp->cap.max_recv_sge;
	bool dst_failed;
	int ret;

	if (wqe->num_sge > max_sge)
		return hmr_resp_recv_error(qp, req, wqe->wr_id, IB_WC_LOC_QP_OP_ERR, op_err);
	if (hmr_sgl_resolve(hmr_resp_recv_pd(qp, req), &dst, wqe->sge, wqe->num_sge,
			    IB_ACCESS_LOCAL_WRITE))
		return hmr_resp_recv_error(qp, req, wqe->wr_id, IB_WC_LOC_PROT_ERR, op_err);
	if (len > dst.len) {
		hmr_sgl_put(&dst);
		return hmr_resp_recv_error(qp, req, wqe->wr_id, IB_WC_LOC_LEN_ERR, len_err);
	}
	ret = hmr_resp_fill(req, &dst, hdr, hdr_len, &dst_failed);
	hmr_sgl_put(&dst);
	if (ret && dst_failed)
		return hmr_resp_recv_error(qp, req, wqe->wr_id, IB_WC_LOC_PROT_ERR, op_err);
	if (ret) {
		hmr_resp_give_back(req);
		return IB_WC_LOC_PROT_ERR;	/* the requester's memory is gone */
	}
	if (req->opcode == IB_UVERBS_WR_SEND_WITH_INV && hmr_mw_invalidate(qp, req->invalidate))
		return hmr_resp_recv_error(qp, req, wqe->wr_id, IB_WC_REM_INV_REQ_ERR,
					   IB_WC_REM_INV_REQ_ERR);
	hmr_resp_consume_recv(qp, req);
	hmr_resp_complete_recv(qp, req, wqe->wr_id, IB_WC_SUCCESS, IB_WC_RECV, len);
	return IB_WC_SUCCESS;
}

static int hmr_resp_send(struct hmr_qp *qp, struct hmr_request *req)
{
	struct hmr_recv_wqe wqe;
	int ret;

	ret = hmr_resp_take_recv(qp, req, &wqe);
	if (ret)
		return hmr_resp_take_recv_status(ret);
	return hmr_resp_deliver(qp, req, &wqe, NULL, 0, IB_WC_REM_OP_ERR, IB_WC_REM_INV_REQ_ERR);
}

static int hmr_resp_write(struct hmr_qp *qp, struct hmr_request *req)
{
	bool imm = req->opcode == IB_UVERBS_WR_RDMA_WRITE_WITH_IMM;
	struct hmr_recv_wqe wqe;
	struct hmr_sgl dst;
	bool dst_failed;
	int ret;

	/* Nothing is written before the receive WQE an immediate needs is there. */
	if (imm) {
		ret = hmr_resp_take_recv(qp, req, &wqe);
		if (ret)
			return hmr_resp_take_recv_status(ret);
	}
	if (hmr_resp_remote_sgl(qp, req, req->local->len, IB_ACCESS_REMOTE_WRITE, &dst)) {
		ret = IB_WC_REM_ACCESS_ERR;
		goto out_give_back;
	}
	ret = hmr_sgl_copy(&dst, req->local, req->local->len, &dst_failed);
	hmr_sgl_put(&dst);
	if (ret) {
		ret = dst_failed ? IB_WC_REM_ACCESS_ERR : IB_WC_LOC_PROT_ERR;
		goto out_give_back;
	}
	if (imm) {
		hmr_resp_consume_recv(qp, req);
		hmr_resp_complete_recv(qp, req, wqe.wr_id, IB_WC_SUCCESS,
				       IB_WC_RECV_RDMA_WITH_IMM, req->local->len);
	}
	return IB_WC_SUCCESS;

out_give_back:
	if (imm)
		hmr_resp_give_back(req);
	return ret;
}

static int hmr_resp_read(struct hmr_qp *qp, struct hmr_request *req)
{
	struct hmr_sgl src;
	bool dst_failed;
	int ret;

	if (hmr_resp_remote_sgl(qp, req, req->local->len, IB_ACCESS_REMOTE_READ, &src))
		return IB_WC_REM_ACCESS_ERR;
	ret = hmr_sgl_copy(req->local, &src, req->local->len, &dst_failed);
	hmr_sgl_put(&src);
	if (ret)
		return dst_failed ? IB_WC_LOC_PROT_ERR : IB_WC_REM_ACCESS_ERR;
	return IB_WC_SUCCESS;
}

static int hmr_resp_atomic(struct hmr_qp *qp, struct hmr_request *req)
{
	bool cmp_swap = req->opcode == IB_UVERBS_WR_ATOMIC_CMP_AND_SWP;
	struct hmr_sgl target, orig_sgl = {};
	struct hmr_mr *mr;
	bool dst_failed;
	u64 orig;
	int ret;

	if (req->remote_addr & 7)
		return IB_WC_REM_INV_REQ_ERR;
	if (hmr_resp_remote_sgl(qp, req, sizeof(u64), IB_ACCESS_REMOTE_ATOMIC, &target))
		return IB_WC_REM_ACCESS_ERR;
	mr = target.mr[0];
	ret = hmr_mr_atomic(mr, req->remote_addr, cmp_swap, req->compare_add, req->swap, &orig);
	hmr_sgl_put(&target);
	if (ret)
		return IB_WC_REM_ACCESS_ERR;
	orig_sgl.inline_data = (const u8 *)&orig;
	orig_sgl.len = sizeof(orig);
	ret = hmr_sgl_copy(req->local, &orig_sgl, sizeof(orig), &dst_failed);
	return ret ? IB_WC_LOC_PROT_ERR : IB_WC_SUCCESS;
}

/* ATOMIC WRITE: 8 bytes stored at once (a compare-and-swap loop on the 64-bit word). */
int hmr_resp_atomic_write(struct hmr_qp *qp, struct hmr_request *req)
{
	struct hmr_sgl target;
	u64 cur, orig;
	int ret;

	if (req->remote_addr & 7)
		return IB_WC_REM_INV_REQ_ERR;
	if (hmr_resp_remote_sgl(qp, req, sizeof(u64), IB_ACCESS_REMOTE_WRITE, &target))
		return IB_WC_REM_ACCESS_ERR;
	for (cur = 0;; cur = orig) {	/* guess 0 first; each miss returns the current value */
		ret = hmr_mr_atomic(target.mr[0], req->remote_addr, true, cur, req->compare_add,
				    &orig);
		if (ret || orig == cur)
			break;
	}
	hmr_sgl_put(&target);
	return ret ? IB_WC_REM_ACCESS_ERR : IB_WC_SUCCESS;
}

/*
 * FLUSH: the QP must take FLUSH of the placement type (its IB_ACCESS_FLUSH_* access flags; else
 * invalid request, as rxe answers), and the rkey's MR must allow it (only global visibility is
 * offered: no persistent memory) over the range, or the whole MR. The CPU's caches are coherent,
 * so data an earlier WRITE placed is globally visible once it completed: nothing is left to do
 * but order.
 */
int hmr_resp_flush(struct hmr_qp *qp, struct hmr_request *req)
{
	u32 type = req->swap & 0xff, level = (req->swap >> 8) & 0xff;
	struct ib_pd *pd = hmr_resp_rkey_pd(qp, req);
	struct hmr_mr *mr;
	bool ok;

	if (!type || (type & ~(HMR_FLUSH_GLOBAL | HMR_FLUSH_PERSISTENT)) || level > HMR_FLUSH_MR)
		return IB_WC_REM_INV_REQ_ERR;
	if (((type & HMR_FLUSH_GLOBAL) && !(qp->attr.qp_access_flags & IB_ACCESS_FLUSH_GLOBAL)) ||
	    ((type & HMR_FLUSH_PERSISTENT) &&
	     !(qp->attr.qp_access_flags & IB_ACCESS_FLUSH_PERSISTENT)))
		return IB_WC_REM_INV_REQ_ERR;
	if (type & HMR_FLUSH_PERSISTENT)
		return IB_WC_REM_ACCESS_ERR;	/* no MR can allow it: hmr has no persistent memory */
	mr = hmr_mr_get(to_hdev(qp->ibqp.device), req->rkey);
	if (!mr)
		return IB_WC_REM_ACCESS_ERR;
	if (level == HMR_FLUSH_MR)
		ok = READ_ONCE(mr->ibmr.pd) == pd &&
		     (READ_ONCE(mr->access) & IB_ACCESS_FLUSH_GLOBAL);
	else
		ok = hmr_mr_allows(mr, pd, req->remote_addr, req->compare_add,
				   IB_ACCESS_FLUSH_GLOBAL);
	hmr_mr_put(mr);
	/* Order the earlier WRITEs' stores before the FLUSH completion the requester sees. */
	smp_mb();
	return ok ? IB_WC_SUCCESS : IB_WC_REM_ACCESS_ERR;
}

/*
 * Find the SRQ @req's receives come from: the QP's own, or for an XRC receive QP the XRC SRQ
 * the request names, which must belong to the QP's XRC domain (referenced: hmr_resp_put_srq).
 * Returns 0 or the request's outcome. Caller holds qp->resp_lock.
 */
static int hmr_resp_find_srq(struct hmr_qp *qp, struct hmr_request *req)
{
	bool xrc = qp->ibqp.qp_type == IB_QPT_XRC_TGT;
	struct hmr_srq *srq;

	req->srq = NULL;
	if (xrc != (req->src->ibqp.qp_type == IB_QPT_XRC_INI))
		return HMR_RESP_LOST;	/* XRC and non-XRC QPs are never connected */
	if ((qp->ibqp.qp_type == IB_QPT_UC) != (req->src->ibqp.qp_type == IB_QPT_UC))
		return HMR_RESP_LOST;	/* nor are UC and RC QPs */
	if (!xrc) {
		if (qp->ibqp.srq)
			req->srq = to_hsrq(qp->ibqp.srq);
		return 0;
	}
	srq = hmr_srq_get(to_hdev(qp->ibqp.device), req->xrc_srqn);
	if (!srq)
		return IB_WC_REM_INV_REQ_ERR;
	if (srq->ibsrq.ext.xrc.xrcd != qp->ibqp.xrcd) {
		hmr_srq_put(srq);
		return IB_WC_REM_INV_REQ_ERR;
	}
	req->srq = srq;
	return 0;
}

static void hmr_resp_put_srq(struct hmr_qp *qp, struct hmr_request *req)
{
	if (qp->ibqp.qp_type == IB_QPT_XRC_TGT && req->srq)
		hmr_srq_put(req->srq);
	req->srq = NULL;
}

static int hmr_resp_dispatch(struct hmr_qp *qp, struct hmr_request *req)
{
	switch (req->opcode) {
	case IB_UVERBS_WR_SEND:
	case IB_UVERBS_WR_SEND_WITH_IMM:
	case IB_UVERBS_WR_SEND_WITH_INV:
		return hmr_resp_send(qp, req);
	case IB_UVERBS_WR_RDMA_WRITE:
	case IB_UVERBS_WR_RDMA_WRITE_WITH_IMM:
		return hmr_resp_write(qp, req);
	case IB_UVERBS_WR_RDMA_READ:
		return hmr_resp_read(qp, req);
	case IB_UVERBS_WR_ATOMIC_CMP_AND_SWP:
	case IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD:
		return hmr_resp_atomic(qp, req);
	case HMR_WR_ATOMIC_WRITE:
		return hmr_resp_atomic_write(qp, req);
	case HMR_WR_FLUSH:
		return hmr_resp_flush(qp, req);
	default:
		return IB_WC_REM_INV_REQ_ERR;
	}
}

int hmr_resp_execute(struct hmr_qp *qp, struct hmr_request *req)
{
	enum ib_qp_state state;
	int ret;

	mutex_lock(&qp->resp_lock);
	state = READ_ONCE(qp->state);
	if (state != IB_QPS_RTR && state != IB_QPS_RTS && state != IB_QPS_SQD) {
		ret = HMR_RESP_LOST;	/* a QP not receiving drops the packets */
		goto out_unlock;
	}
	ret = hmr_resp_find_srq(qp, req);
	if (ret)
		goto out_unlock;
	if (hmr_qp_is_ud(qp) || req->ud)
		ret = hmr_qp_is_ud(qp) && req->ud ? hmr_resp_ud(qp, req) :
								  HMR_RESP_LOST;
	else
		ret = hmr_resp_dispatch(qp, req);
	if (ret == HMR_RESP_RNR)
		req->rnr_timer = qp->attr.min_rnr_timer;
	hmr_resp_put_srq(qp, req);
out_unlock:
	mutex_unlock(&qp->resp_lock);
	return ret;
}
