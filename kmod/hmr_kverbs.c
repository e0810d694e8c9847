// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel verbs: the kernel's side of the rings of a kernel consumer's QP and CQ (the MAD
 * layer's QP1, which the connection manager talks through, and any in-kernel ULP).
 *
 * A kernel QP or CQ has the same rings as a user one, only not mapped (hmr_ring.h):
 * post_send and post_recv turn struct ib_*_wr into the WQEs the provider would write, and
 * poll_cq turns CQEs into struct ib_wc. The requester, the responder and the DMA engine thus
 * see one kind of QP. Kernel buffers are kernel virtual addresses (the core's virtual DMA
 * ops) under the PD's DMA MR (hmr_get_dma_mr()), which the DMA engine copies directly.
 *
 * Kernel consumers post and poll in any context, interrupts included: these paths take
 * spinlocks only and leave execution, which may sleep, to the requester's work item.
 */
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <rdma/ib_verbs.h>

#include "hmr_dev.h"
#include "hmr_transport.h"

/* The inline data of a kernel WR: its scatter list's bytes, copied into the WQE. */
static int hmr_kwqe_inline(struct hmr_send_wqe *wqe, const struct ib_send_wr *wr)
{
	u32 len = 0;
	int i;

	for (i = 0; i < wr->num_sge; i++) {
		const struct ib_sge *sge = &wr->sg_list[i];

		if (sge->length > HMR_MAX_INLINE - len)
			return -EINVAL;
		memcpy(wqe->inline_data + len, (void *)(uintptr_t)sge->addr, sge->length);
		len += sge->length;
	}
	wqe->inline_len = len;
	return 0;
}

static void hmr_kwqe_sges(struct hmr_sge *to, const struct ib_sge *from, int num)
{
	int i;

	for (i = 0; i < num; i++) {
		to[i].addr = from[i].addr;
		to[i].length = from[i].length;
		to[i].lkey = from[i].lkey;
	}
}

/* The operation's fields of a send WQE; -EINVAL for an opcode hmr does not execute. */
static int hmr_kwqe_op(struct hmr_qp *qp, struct hmr_send_wqe *wqe, const struct ib_send_wr *wr)
{
	switch (wr->opcode) {
	case IB_WR_SEND:
	case IB_WR_SEND_WITH_IMM:
		wqe->imm_data = (__force u32)wr->ex.imm_data;
		if (hmr_qp_is_ud(qp)) {
			wqe->ud = to_hah(ud_wr(wr)->ah)->av;
			wqe->ud.dest_qpn = ud_wr(wr)->remote_qpn;
			wqe->ud.qkey = ud_wr(wr)->remote_qkey;
		}
		return 0;
	case IB_WR_RDMA_WRITE_WITH_IMM:
		wqe->imm_data = (__force u32)wr->ex.imm_data;
		fallthrough;
	case IB_WR_RDMA_WRITE:
	case IB_WR_RDMA_READ:
		wqe->remote_addr = rdma_wr(wr)->remote_addr;
		wqe->rkey = rdma_wr(wr)->rkey;
		return 0;
	case IB_WR_ATOMIC_CMP_AND_SWP:
	case IB_WR_ATOMIC_FETCH_AND_ADD:
		wqe->remote_addr = atomic_wr(wr)->remote_addr;
		wqe->rkey = atomic_wr(wr)->rkey;
		wqe->compare_add = atomic_wr(wr)->compare_add;
		wqe->swap = atomic_wr(wr)->swap;
		return 0;
	case IB_WR_SEND_WITH_INV:	/* invalidates a key at the peer */
		wqe->imm_data = wr->ex.invalidate_rkey;
		return 0;
	default:
		return -EINVAL;	/* registration, local invalidation: no FRMRs (nor kernel MWs) */
	}
}

/* Write @wr into the SQ slot @wqe. */
static int hmr_kwqe_from_wr(struct hmr_qp *qp, struct hmr_send_wqe *wqe,
			    const struct ib_send_wr *wr)
{
	int ret;

	if (wr->num_sge < 0 || wr->num_sge > qp->cap.max_send_sge)
		return -EINVAL;
	memset(wqe, 0, sizeof(*wqe));
	wqe->wr_id = wr->wr_id;
	wqe->opcode = wr->opcode;	/* IB_WR_* equal IB_UVERBS_WR_* for these */
	wqe->send_flags = wr->send_flags;
	ret = hmr_kwqe_op(qp, wqe, wr);
	if (ret)
		return ret;
	if (wr->send_flags & IB_SEND_INLINE)
		return hmr_kwqe_inline(wqe, wr);
	wqe->num_sge = wr->num_sge;
	hmr_kwqe_sges(wqe->sge, wr->sg_list, wr->num_sge);
	return 0;
}

/*
 * Queue @wr (a chain) on a kernel QP's SQ and wake the requester. Returns 0, or an errno with
 * *@bad_wr the first WR not queued: -ENOMEM when the SQ is full, -EINVAL for a bad WR.
 */
int hmr_kpost_send(struct hmr_qp *qp, const struct ib_send_wr *wr,
		   const struct ib_send_wr **bad_wr)
{
	unsigned long flags;
	int ret = 0;
	u32 prod;

	spin_lock_irqsave(&qp->kpost_lock, flags);
	prod = qp->sq.hdr->prod;	/* this is its only producer */
	for (; wr; wr = wr->next) {
		if (!hmr_ring_span_ok(&qp->sq, prod + 1, hmr_ring_user_cons(&qp->sq))) {
			ret = -ENOMEM;
			break;
		}
		ret = hmr_kwqe_from_wr(qp, hmr_ring_slot(&qp->sq, prod), wr);
		if (ret)
			break;
		prod++;
	}
	hmr_ring_publish_prod(&qp->sq, prod);
	spin_unlock_irqrestore(&qp->kpost_lock, flags);
	if (ret)
		*bad_wr = wr;
	/* The requester may sleep (faults, the network): it runs in hmr_wq. */
	queue_delayed_work(hmr_wq, &qp->retry_work, 0);
	return ret;
}

/* Queue receive WRs on a kernel QP's RQ; errors as hmr_kpost_send(). */
int hmr_kpost_recv(struct hmr_qp *qp, const struct ib_recv_wr *wr,
		   const struct ib_recv_wr **bad_wr)
{
	struct hmr_recv_wqe *wqe;
	unsigned long flags;
	int ret = 0;
	u32 prod;

	spin_lock_irqsave(&qp->kpost_lock, flags);
	prod = qp->rq.hdr->prod;
	for (; wr; wr = wr->next) {
		if (!hmr_ring_span_ok(&qp->rq, prod + 1, hmr_ring_user_cons(&qp->rq))) {
			ret = -ENOMEM;
			break;
		}
		if (wr->num_sge < 0 || wr->num_sge > qp->cap.max_recv_sge) {
			ret = -EINVAL;
			break;
		}
		wqe = hmr_ring_slot(&qp->rq, prod++);
		memset(wqe, 0, sizeof(*wqe));
		wqe->wr_id = wr->wr_id;
		wqe->num_sge = wr->num_sge;
		hmr_kwqe_sges(wqe->sge, wr->sg_list, wr->num_sge);
	}
	hmr_ring_publish_prod(&qp->rq, prod);
	spin_unlock_irqrestore(&qp->kpost_lock, flags);
	if (ret)
		*bad_wr = wr;
	/* In ERROR the receives complete flushed at once (ib_drain_qp waits for one). */
	if (READ_ONCE(qp->state) == IB_QPS_ERR)
		mod_delayed_work(system_wq, &qp->flush_work, 0);
	return ret;
}

/*
 * A CQE as a work completion; false when its QP is gone (destroyed with completions not
 * yet polled: nobody can use them).
 */
static bool hmr_kwc_from_cqe(struct hmr_dev *hdev, struct ib_wc *wc, const struct hmr_cqe *cqe)
{
	struct hmr_qp *qp;

	rcu_read_lock();
	qp = xa_load(&hdev->qps, cqe->qp_num);
	rcu_read_unlock();
	if (!qp)
		return false;
	memset(wc, 0, sizeof(*wc));
	wc->wr_id = cqe->wr_id;
	wc->status = cqe->status;
	wc->opcode = cqe->opcode;
	wc->vendor_err = cqe->vendor_err;
	wc->byte_len = cqe->byte_len;
	wc->qp = &qp->ibqp;
	wc->ex.imm_data = (__force __be32)cqe->imm_data;
	wc->src_qp = cqe->src_qp;
	/*
	 * CQEs carry enum ib_wc_flags but WITH_INV, as userspace has it. A UD receive's GRH tells
	 * IPv4 from IPv6 to the core.
	 */
	wc->wc_flags = cqe->wc_flags & ~HMR_WC_WITH_INV;
	if (cqe->wc_flags & HMR_WC_WITH_INV)
		wc->wc_flags |= IB_WC_WITH_INVALIDATE;
	wc->port_num = HMR_PORT;
	return true;
}

/* Poll a kernel CQ: the kernel is both producer and consumer, under cq->lock. */
int hmr_kpoll_cq(struct hmr_cq *cq, int num, struct ib_wc *wc)
{
	struct hmr_dev *hdev = to_hdev(cq->ibcq.device);
	unsigned long flags;
	int n = 0;
	u32 cons;

	spin_lock_irqsave(&cq->lock, flags);
	cons = cq->ring.hdr->cons;
	while (n < num && cons != cq->prod) {
		if (hmr_kwc_from_cqe(hdev, &wc[n], hmr_ring_slot(&cq->ring, cons)))
			n++;
		cons++;
	}
	hmr_ring_publish_cons(&cq->ring, cons);
	spin_unlock_irqrestore(&cq->lock, flags);
	return n;
}
