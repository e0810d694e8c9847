// SPDX-License-Identifier: GPL-2.0
/*
 * The requester: executes the send WQEs userspace posted on a QP's SQ ring, in order, when
 * the doorbell rings (a POST_SEND command without WRs), when the QP enters RTS, and after
 * an RNR wait. Runs under qp->lock; every WQE is copied out of shared memory once and
 * checked before use.
 */
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <rdma/ib_user_verbs.h>

#include "hmr_dev.h"
#include "hmr_transport.h"

/* Bytes of WQEs a doorbell executes in its own system call; the rest go to hmr_wq. */
#define HMR_DOORBELL_BUDGET	(256 * 1024)

/* Cursor over an SGL. */
struct hmr_sgl_iter {
	struct hmr_sgl *sgl;
	u32 idx;
	u64 off;		/* in sge[idx], or in inline_data */
};

/* Move up to @len bytes between the SGL at @it and @buf; returns bytes moved or -EFAULT. */
static long hmr_sgl_iter_rw(struct hmr_sgl_iter *it, void *buf, size_t len, bool to_sgl)
{
	struct hmr_sgl *sgl = it->sgl;
	size_t done = 0;

	if (sgl->inline_data) {
		len = min_t(u64, len, sgl->len - it->off);
		if (to_sgl)
			return -EFAULT;	/* inline data is a source only */
		memcpy(buf, sgl->inline_data + it->off, len);
		it->off += len;
		return len;
	}
	while (done < len && it->idx < sgl->num) {
		struct hmr_sge *sge = &sgl->sge[it->idx];
		size_t n = min_t(u64, len - done, sge->length - it->off);

		if (n && hmr_mr_copy(sgl->mr[it->idx], sge->addr + it->off, buf + done, n, to_sgl))
			return -EFAULT;
		done += n;
		it->off += n;
		if (it->off == sge->length) {
			it->idx++;
			it->off = 0;
		}
	}
	return done;
}

/* Skip the iterator past zero-length entries and finished ones; false at the end. */
static bool hmr_sgl_iter_next(struct hmr_sgl_iter *it)
{
	while (it->idx < it->sgl->num && it->off == it->sgl->sge[it->idx].length) {
		it->idx++;
		it->off = 0;
	}
	return it->idx < it->sgl->num;
}

/* MR to MR: copy straight between the two mirrors, entry by entry (no bounce buffer). */
static int hmr_sgl_copy_direct(struct hmr_sgl *dst, struct hmr_sgl *src, u64 len,
			       bool *dst_failed)
{
	struct hmr_sgl_iter in = { .sgl = src }, out = { .sgl = dst };

	while (len) {
		struct hmr_sge *s, *d;
		u64 n;

		if (!hmr_sgl_iter_next(&in) || !hmr_sgl_iter_next(&out)) {
			*dst_failed = !hmr_sgl_iter_next(&out);
			return -EFAULT;
		}
		s = &src->sge[in.idx];
		d = &dst->sge[out.idx];
		n = min3(len, (u64)s->length - in.off, (u64)d->length - out.off);
		if (hmr_mr_copy_mr(dst->mr[out.idx], d->addr + out.off, src->mr[in.idx],
				   s->addr + in.off, n, dst_failed))
			return -EFAULT;
		in.off += n;
		out.off += n;
		len -= n;
		hmr_resched();
	}
	return 0;
}

/*
 * Copy @len bytes from @src to @dst: MR to MR directly (hmr_mr_copy_mr: one chunk of each in
 * flight, never a fault while a chunk is in flight); inline data (a WQE's, or a packet's
 * payload) straight into the destination MRs. On failure *dst_failed tells which side failed.
 */
int hmr_sgl_copy(struct hmr_sgl *dst, struct hmr_sgl *src, u64 len, bool *dst_failed)
{
	struct hmr_sgl_iter out = { .sgl = dst };

	*dst_failed = false;
	if (!src->inline_data)
		return hmr_sgl_copy_direct(dst, src, len, dst_failed);
	if (len > src->len)
		return -EFAULT;
	if (hmr_sgl_iter_rw(&out, (void *)src->inline_data, len, true) != len) {
		*dst_failed = true;
		return -EFAULT;
	}
	return 0;
}

/*
 * Move @len bytes between @buf and @sgl starting @off bytes into it (a packet's payload
 * into or out of a message's buffers). Returns 0, or -EFAULT when the SGL is too short or its
 * memory cannot be reached.
 */
int hmr_sgl_rw_at(struct hmr_sgl *sgl, u64 off, void *buf, size_t len, bool to_sgl)
{
	struct hmr_sgl_iter it = { .sgl = sgl };

	if (off > sgl->len || len > sgl->len - off)
		return -EFAULT;
	if (!sgl->inline_data) {
		while (it.idx < sgl->num && off >= sgl->sge[it.idx].length) {
			off -= sgl->sge[it.idx].length;
			it.idx++;
		}
	}
	it.off = off;
	return hmr_sgl_iter_rw(&it, buf, len, to_sgl) == len ? 0 : -EFAULT;
}

/* Bytes a WQE's scatter list names (the WQE was checked: num_sge is in bounds). */
static u64 hmr_wqe_length(const struct hmr_send_wqe *wqe)
{
	u64 len = 0;
	u32 i;

	for (i = 0; i < wqe->num_sge && i < HMR_MAX_SGE; i++)
		len += wqe->sge[i].length;
	return len;
}

static bool hmr_wqe_is_atomic(u32 opcode)
{
	return opcode == IB_UVERBS_WR_ATOMIC_CMP_AND_SWP ||
	       opcode == IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD;
}

/* What UC may send: SENDs and WRITEs, with or without immediate data. */
static bool hmr_wqe_is_uc_op(u32 opcode)
{
	return opcode == IB_UVERBS_WR_SEND || opcode == IB_UVERBS_WR_SEND_WITH_IMM ||
	       opcode == IB_UVERBS_WR_RDMA_WRITE || opcode == IB_UVERBS_WR_RDMA_WRITE_WITH_IMM;
}

static bool hmr_wqe_may_inline(u32 opcode)
{
	return hmr_wqe_is_uc_op(opcode) || opcode == IB_UVERBS_WR_SEND_WITH_INV;
}

/* Check a WQE copied from the ring and resolve its local buffers into @sgl. */
static int hmr_req_prepare(struct hmr_qp *qp, struct hmr_send_wqe *wqe, struct hmr_sgl *sgl)
{
	bool inl = wqe->send_flags & IB_SEND_INLINE;
	int access = 0;

	/* UC: SENDs and WRITEs (with immediate) only: nothing comes back. */
	if (qp->ibqp.qp_type == IB_QPT_UC && !hmr_wqe_is_uc_op(wqe->opcode))
		return IB_WC_LOC_QP_OP_ERR;
	switch (wqe->opcode) {
	case IB_UVERBS_WR_SEND_WITH_INV:	/* RC and XRC */
		if (hmr_qp_is_ud(qp))
			return IB_WC_LOC_QP_OP_ERR;
		break;
	case IB_UVERBS_WR_RDMA_READ:
	case IB_UVERBS_WR_ATOMIC_CMP_AND_SWP:
	case IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD:
		access = IB_ACCESS_LOCAL_WRITE;
		fallthrough;
	case IB_UVERBS_WR_SEND:
	case IB_UVERBS_WR_SEND_WITH_IMM:
	case IB_UVERBS_WR_RDMA_WRITE:
	case IB_UVERBS_WR_RDMA_WRITE_WITH_IMM:
		break;
	case HMR_WR_FLUSH:
	case HMR_WR_ATOMIC_WRITE:
		if (!HMR_FLUSH_OPS || inl || qp->ibqp.qp_type != IB_QPT_RC)
			return IB_WC_LOC_QP_OP_ERR;
		break;
	default:
		return IB_WC_LOC_QP_OP_ERR;
	}
	if (inl) {
		if (!hmr_wqe_may_inline(wqe->opcode) || wqe->inline_len > HMR_MAX_INLINE)
			return IB_WC_LOC_QP_OP_ERR;
		memset(sgl, 0, sizeof(*sgl));
		sgl->inline_data = wqe->inline_data;
		sgl->len = wqe->inline_len;
		return IB_WC_SUCCESS;
	}
	if (wqe->num_sge > qp->cap.max_send_sge)
		return IB_WC_LOC_QP_OP_ERR;
	if (hmr_sgl_resolve(qp->ibqp.pd, sgl, wqe->sge, wqe->num_sge, access))
		return IB_WC_LOC_PROT_ERR;
	if (sgl->len > HMR_MAX_MSG_SIZE ||
	    (hmr_wqe_is_atomic(wqe->opcode) && sgl->len < sizeof(u64))) {
		hmr_sgl_put(sgl);
		return IB_WC_LOC_LEN_ERR;
	}
	return IB_WC_SUCCESS;
}

/* Work on this device alone, in SQ order: bind a memory window, invalidate one. */
static int hmr_req_local(struct hmr_qp *qp, const struct hmr_send_wqe *wqe)
{
	if (wqe->opcode == IB_UVERBS_WR_BIND_MW)
		return hmr_mw_bind(qp, wqe);
	if (hmr_qp_is_ud(qp) || hmr_mw_invalidate(qp, wqe->imm_data))
		return IB_WC_LOC_QP_OP_ERR;
	return IB_WC_SUCCESS;
}

static int hmr_req_execute(struct hmr_qp *qp, struct hmr_send_wqe *wqe, u8 *rnr_timer)
{
	struct hmr_request req = {
		.src = qp,
		.opcode = wqe->opcode,
		.remote_addr = wqe->remote_addr,
		.rkey = wqe->rkey,
		.imm = (__force __be32)wqe->imm_data,
		.invalidate = wqe->imm_data,
		.solicited = wqe->send_flags & IB_SEND_SOLICITED,
		.compare_add = wqe->compare_add,
		.swap = wqe->swap,
		.xrc_srqn = wqe->xrc_srqn,
		.src_qpn = qp->ibqp.qp_num,
	};
	struct hmr_sgl sgl;
	int ret;

	if (wqe->opcode == IB_UVERBS_WR_BIND_MW || wqe->opcode == IB_UVERBS_WR_LOCAL_INV)
		return hmr_req_local(qp, wqe);
	if (hmr_qp_is_ud(qp)) {
		ret = hmr_ud_prepare(qp, &req, wqe);
		if (ret != IB_WC_SUCCESS)
			return ret;
	}
	ret = hmr_req_prepare(qp, wqe, &sgl);
	if (ret != IB_WC_SUCCESS)
		return ret;
	if (req.ud && sgl.len > ib_mtu_enum_to_int(IB_MTU_4096)) {
		if (!sgl.inline_data)
			hmr_sgl_put(&sgl);
		return IB_WC_LOC_LEN_ERR;	/* a UD message is one packet */
	}
	if (hmr_wqe_is_atomic(wqe->opcode))
		sgl.len = sizeof(u64);	/* the original value lands in the first 8 bytes */
	req.local = &sgl;
	ret = qp->transport->execute(&req);
	if (!sgl.inline_data)
		hmr_sgl_put(&sgl);
	if (req.ud) {
		ret = hmr_ud_sent(ret);
		if (ret == IB_WC_SUCCESS)
			hmr_ud_count_mad(qp, HMR_MAD_SENT);
	} else if (qp->ibqp.qp_type == IB_QPT_UC) {
		ret = hmr_ud_sent(ret);	/* unreliable too: a lost message is simply lost */
	}
	*rnr_timer = req.rnr_timer;
	return ret;
}

static u32 hmr_wc_opcode(u32 wr_opcode)
{
	switch (wr_opcode) {
	case IB_UVERBS_WR_RDMA_WRITE:
	case IB_UVERBS_WR_RDMA_WRITE_WITH_IMM:
		return IB_WC_RDMA_WRITE;
	case IB_UVERBS_WR_RDMA_READ:
		return IB_WC_RDMA_READ;
	case IB_UVERBS_WR_ATOMIC_CMP_AND_SWP:
		return IB_WC_COMP_SWAP;
	case IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD:
		return IB_WC_FETCH_ADD;
	case HMR_WR_FLUSH:
		return HMR_WC_FLUSH;
	case HMR_WR_ATOMIC_WRITE:
		return HMR_WC_ATOMIC_WRITE;
	case IB_UVERBS_WR_BIND_MW:
		return IB_WC_BIND_MW;
	case IB_UVERBS_WR_LOCAL_INV:
		return IB_WC_LOCAL_INV;
	default:
		return IB_WC_SEND;
	}
}

static void hmr_req_complete(struct hmr_qp *qp, struct hmr_send_wqe *wqe, int status)
{
	struct hmr_cqe cqe = {
		.wr_id = wqe->wr_id,
		.status = status,
		.opcode = hmr_wc_opcode(wqe->opcode),
		.qp_num = qp->ibqp.qp_num,
	};

	if (status == IB_WC_SUCCESS && !qp->sq_sig_all && !(wqe->send_flags & IB_SEND_SIGNALED))
		return;
	if (wqe->opcode == IB_UVERBS_WR_RDMA_READ)
		cqe.byte_len = hmr_wqe_length(wqe);
	else if (hmr_wqe_is_atomic(wqe->opcode))
		cqe.byte_len = sizeof(u64);
	hmr_cq_post(to_hcq(qp->ibqp.send_cq), &cqe, false);
}

/* IB spec encoding of the RNR timer (min_rnr_timer), in microseconds. */
static const u32 hmr_rnr_usec[32] = {
	655360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1280, 1920,
	2560, 3840, 5120, 7680, 10240, 15360, 20480, 30720, 40960, 61440, 81920, 122880,
	163840, 245760, 327680, 491520,
};

/* An RNR NAK: wait and retry the same WQE, unless the retries ran out. */
static bool hmr_req_rnr_wait(struct hmr_qp *qp, u8 timer)
{
	if (qp->attr.rnr_retry != 7) {	/* 7: retry forever */
		if (qp->rnr_left == 0)
			return false;
		qp->rnr_left--;
	}
	queue_delayed_work(system_wq, &qp->retry_work,
			   usecs_to_jiffies(hmr_rnr_usec[timer & 31]));
	return true;
}

/*
 * No answer: as a transport timeout, retry the same WQE after 4.096 us * 2^timeout, at most
 * retry_cnt times (timeout 0: the spec's infinite timeout, retried every millisecond).
 */
static bool hmr_req_timeout_wait(struct hmr_qp *qp)
{
	u8 timeout = qp->attr.timeout;
	u64 usec = timeout ? (4096ULL << timeout) / 1000 : 1000;

	if (timeout) {
		if (qp->retry_left == 0)
			return false;
		qp->retry_left--;
	}
	queue_delayed_work(system_wq, &qp->retry_work, usecs_to_jiffies(usec));
	return true;
}

/* Wait before retrying the WQE at the head? Else its status: the retries ran out. */
static int hmr_req_retry(struct hmr_qp *qp, int ret, u8 rnr_timer)
{
	if (ret == HMR_RESP_RNR)
		return hmr_req_rnr_wait(qp, rnr_timer) ? ret : IB_WC_RNR_RETRY_EXC_ERR;
	return hmr_req_timeout_wait(qp) ? ret : IB_WC_RETRY_EXC_ERR;
}

/*
 * Execute the SQ's WQEs, at most @budget bytes of them: the next WQE that does not fit is left
 * to retry_work, queued at once on hmr_wq, so a doorbell system call never copies a long
 * transfer itself (a 1 GiB WRITE runs in the work item, a chunk at a time). Caller holds
 * qp->lock.
 */
static void hmr_req_run(struct hmr_qp *qp, u64 budget)
{
	/* READ_ONCE: a responder may set ERROR under resp_lock alone (hmr_qp_error_async). */
	enum ib_qp_state state = READ_ONCE(qp->state);
	struct hmr_send_wqe wqe;
	u8 rnr_timer = 0;
	u32 prod;
	u64 len;
	int ret;

	if (state == IB_QPS_ERR) {
		hmr_qp_flush(qp);
		return;
	}
	if (state != IB_QPS_RTS || qp->destroying || delayed_work_pending(&qp->retry_work) ||
	    !hmr_ring_present(&qp->sq))
		return;
	prod = hmr_ring_user_prod(&qp->sq);
	if (!hmr_ring_span_ok(&qp->sq, prod, qp->sq_cons)) {
		hmr_qp_fatal(qp);	/* userspace corrupted its producer index */
		return;
	}
	while (qp->sq_cons != prod) {
		memcpy(&wqe, hmr_ring_slot(&qp->sq, qp->sq_cons), sizeof(wqe));
		len = hmr_wqe_length(&wqe);
		if (len > budget) {
			queue_delayed_work(hmr_wq, &qp->retry_work, 0);
			return;
		}
		budget -= len;
		ret = hmr_req_execute(qp, &wqe, &rnr_timer);
		if (ret == HMR_RESP_RNR || ret == HMR_RESP_LOST) {
			ret = hmr_req_retry(qp, ret, rnr_timer);
			if (ret == HMR_RESP_RNR || ret == HMR_RESP_LOST)
				return;
		}
		qp->rnr_left = qp->attr.rnr_retry;
		qp->retry_left = qp->attr.retry_cnt;
		/* The slot is free before the completion says so: the poster may reuse it at once. */
		hmr_ring_publish_cons(&qp->sq, ++qp->sq_cons);
		hmr_req_complete(qp, &wqe, ret);
		if (ret != IB_WC_SUCCESS) {
			hmr_qp_set_error(qp);
			return;
		}
		hmr_resched();
	}
}

/* Everything (the work item, entering RTS, flushing). Caller holds qp->lock. */
void hmr_req_process(struct hmr_qp *qp)
{
	hmr_req_run(qp, U64_MAX);
}

/*
 * The doorbell: small WQEs run in the caller's system call (latency), the rest in hmr_wq (all
 * of them when the transport waits for the network: ops.deferred). It never waits for
 * qp->lock, which a long transfer in the work item holds: the work item then runs again and
 * takes the new WQEs.
 */
void hmr_req_doorbell(struct hmr_qp *qp)
{
	if (qp->transport->deferred || !mutex_trylock(&qp->lock)) {
		queue_delayed_work(hmr_wq, &qp->retry_work, 0);
		return;
	}
	hmr_req_run(qp, HMR_DOORBELL_BUDGET);
	mutex_unlock(&qp->lock);
}

void hmr_req_retry_work(struct work_struct *work)
{
	struct hmr_qp *qp = container_of(to_delayed_work(work), struct hmr_qp, retry_work);

	mutex_lock(&qp->lock);
	hmr_req_process(qp);
	mutex_unlock(&qp->lock);
}
