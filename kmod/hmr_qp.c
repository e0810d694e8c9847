// SPDX-License-Identifier: GPL-2.0
/*
 * RC, UC, UD, GSI and XRC queue pairs (UD delivery: hmr_ud.c; SRQs: hmr_srq.c; the kernel's side
 * of a kernel QP's rings: hmr_kverbs.c): creation with their SQ/RQ rings, the state machine
 * (modify/query), and flushing outstanding work requests when a QP enters the error state
 * and, since post_recv makes no system call, periodically while it stays there. An XRC send QP (XRC_INI) has an SQ only; an XRC receive QP (XRC_TGT) has no
 * rings at all: the RDMA core creates it without udata, and its receives come from the XRC SRQ
 * each request names. A QP on an SRQ has no RQ of its own.
 */
#include <linux/log2.h>
#include <linux/mutex.h>
#include <rdma/ib_user_verbs.h>
#include <rdma/uverbs_ioctl.h>

#include "hmr_dev.h"
#include "hmr_transport.h"
#include "hmr_wire.h"

/* QP numbers 0 and 1 are the special QPs of the IB spec. */
#define HMR_QPN_LIMIT	XA_LIMIT(2, (1 << 24) - 1)
#define HMR_PSN_MASK	((1 << 24) - 1)

/* Period of the flush of a QP in ERROR: from one jiffy, doubling while idle, up to 1 s. */
#define HMR_FLUSH_MIN_DELAY	1
#define HMR_FLUSH_MAX_DELAY	HZ

/*
 * The QP types hmr has, for userspace (@user) or the kernel. The core creates XRC receive QPs
 * without udata, and the MAD layer the GSI QP; kernel ULPs may create RC and UD QPs.
 */
static bool hmr_qp_type_ok(enum ib_qp_type type, bool user)
{
	switch (type) {
	case IB_QPT_RC:
	case IB_QPT_UC:
	case IB_QPT_UD:
		return true;
	case IB_QPT_XRC_INI:
		return user;
	case IB_QPT_XRC_TGT:
	case IB_QPT_GSI:
		return !user;
	default:
		return false;
	}
}

static int hmr_qp_chk_init(struct ib_qp_init_attr *init, struct ib_udata *udata)
{
	struct ib_qp_cap *cap = &init->cap;

	if (!hmr_qp_type_ok(init->qp_type, udata) || init->create_flags)
		return -EOPNOTSUPP;
	if (init->srq && init->qp_type != IB_QPT_RC && init->qp_type != IB_QPT_UC &&
	    init->qp_type != IB_QPT_UD)
		return -EINVAL;
	if (cap->max_send_wr > HMR_MAX_QP_WR || cap->max_recv_wr > HMR_MAX_QP_WR ||
	    cap->max_send_sge > HMR_MAX_SGE || cap->max_recv_sge > HMR_MAX_SGE ||
	    cap->max_inline_data > HMR_MAX_INLINE)
		return -EINVAL;
	return 0;
}

static bool hmr_qp_has_sq(struct ib_qp_init_attr *init)
{
	return init->qp_type != IB_QPT_XRC_TGT;
}

static bool hmr_qp_has_rq(struct ib_qp_init_attr *init)
{
	return !init->srq && (init->qp_type == IB_QPT_RC || init->qp_type == IB_QPT_UC ||
			      init->qp_type == IB_QPT_UD || init->qp_type == IB_QPT_GSI);
}

/* Report what the QP really has: at least what was asked, nothing for a queue it lacks. */
static void hmr_qp_set_cap(struct hmr_qp *qp, struct ib_qp_cap *cap)
{
	bool sq = hmr_ring_present(&qp->sq), rq = hmr_ring_present(&qp->rq);

	cap->max_send_wr = sq ? qp->sq.num : 0;
	cap->max_recv_wr = rq ? qp->rq.num : 0;
	cap->max_send_sge = sq ? HMR_MAX_SGE : 0;
	cap->max_recv_sge = rq ? HMR_MAX_SGE : 0;
	cap->max_inline_data = sq ? HMR_MAX_INLINE : 0;
	qp->cap = *cap;
}

static int hmr_qp_init_rings(struct hmr_qp *qp, struct ib_udata *udata,
			     struct ib_qp_init_attr *init, struct hmr_create_qp_resp *resp)
{
	struct ib_qp_cap *cap = &init->cap;
	struct ib_ucontext *uctx = NULL;	/* a kernel QP's rings are not mapped */
	int ret;

	if (udata)
		uctx = &rdma_udata_to_drv_context(udata, struct hmr_ucontext, ibuc)->ibuc;
	if (hmr_qp_has_sq(init)) {
		ret = hmr_ring_init(&qp->sq, uctx, max(cap->max_send_wr, 1u),
				    sizeof(struct hmr_send_wqe), &resp->sq_mmap_offset,
				    &resp->sq_mmap_size);
		if (ret)
			return ret;
		resp->sq_num = qp->sq.num;
	}
	if (hmr_qp_has_rq(init)) {
		ret = hmr_ring_init(&qp->rq, uctx, max(cap->max_recv_wr, 1u),
				    sizeof(struct hmr_recv_wqe), &resp->rq_mmap_offset,
				    &resp->rq_mmap_size);
		if (ret)
			goto err_sq;
		resp->rq_num = qp->rq.num;
	}
	hmr_qp_set_cap(qp, cap);
	return 0;

err_sq:
	hmr_ring_destroy(&qp->sq);
	return ret;
}

static void hmr_qp_err_work(struct work_struct *work);
static void hmr_qp_flush_work(struct work_struct *work);

/* A QP number: 1 for the GSI QP (one per device: one port), else the next free one. */
static int hmr_qp_alloc_qpn(struct hmr_dev *hdev, struct hmr_qp *qp, u32 *qpn)
{
	int ret;

	if (qp->ibqp.qp_type == IB_QPT_GSI) {
		*qpn = 1;
		return xa_insert(&hdev->qps, 1, qp, GFP_KERNEL);
	}
	ret = xa_alloc_cyclic(&hdev->qps, qpn, qp, HMR_QPN_LIMIT, &hdev->next_qpn, GFP_KERNEL);
	return ret < 0 ? ret : 0;
}

int hmr_create_qp(struct ib_qp *ibqp, struct ib_qp_init_attr *init, struct ib_udata *udata)
{
	struct hmr_dev *hdev = to_hdev(ibqp->device);
	struct hmr_create_qp_resp resp = {};
	struct hmr_qp *qp = to_hqp(ibqp);
	u32 qpn;
	int ret;

	ret = hmr_qp_chk_init(init, udata);
	if (ret)
		return ret;
	if (udata && udata->outlen < sizeof(resp))
		return -EINVAL;

	mutex_init(&qp->lock);
	mutex_init(&qp->resp_lock);
	spin_lock_init(&qp->kpost_lock);
	refcount_set(&qp->ref, 1);
	init_completion(&qp->done);
	INIT_DELAYED_WORK(&qp->retry_work, hmr_req_retry_work);
	INIT_WORK(&qp->err_work, hmr_qp_err_work);
	INIT_DELAYED_WORK(&qp->flush_work, hmr_qp_flush_work);
	qp->transport = hdev->wire ? &hmr_wire_transport : &hmr_loopback_transport;
	ret = hmr_wire_qp_init(qp);
	if (ret)
		goto err_mutex;
	qp->state = IB_QPS_RESET;
	qp->sq_sig_all = init->sq_sig_type == IB_SIGNAL_ALL_WR;
	ret = hmr_qp_init_rings(qp, udata, init, &resp);
	if (ret)
		goto err_wire;
	ret = hmr_qp_alloc_qpn(hdev, qp, &qpn);
	if (ret)
		goto err_rings;
	ibqp->qp_num = qpn;
	ret = udata ? ib_copy_to_udata(udata, &resp, sizeof(resp)) : 0;
	if (ret)
		goto err_qpn;
	return 0;

err_qpn:
	xa_erase(&hdev->qps, qpn);
err_rings:
	hmr_ring_destroy(&qp->rq);
	hmr_ring_destroy(&qp->sq);
err_wire:
	hmr_wire_qp_destroy(qp);
err_mutex:
	mutex_destroy(&qp->resp_lock);
	mutex_destroy(&qp->lock);
	return ret;
}

/* The QP @qpn of @hdev with a reference (hmr_qp_put()), or NULL. */
struct hmr_qp *hmr_qp_get(struct hmr_dev *hdev, u32 qpn)
{
	struct hmr_qp *qp;

	xa_lock(&hdev->qps);
	qp = xa_load(&hdev->qps, qpn);
	if (qp && !refcount_inc_not_zero(&qp->ref))
		qp = NULL;
	xa_unlock(&hdev->qps);
	return qp;
}

void hmr_qp_put(struct hmr_qp *qp)
{
	if (refcount_dec_and_test(&qp->ref))
		complete(&qp->done);
}

int hmr_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata)
{
	struct hmr_dev *hdev = to_hdev(ibqp->device);
	struct hmr_qp *qp = to_hqp(ibqp);

	hmr_mcast_qp_destroy(qp);	/* no sender finds it in a group any more */
	if (hmr_qp_is_ud(qp)) {
		/*
		 * Datagrams posted before the destroy still leave, as from a device that sends
		 * faster than the poster can destroy (mckey's sender destroys at once): a UD send
		 * waits for no peer, so this ends quickly. Here rather than in the work item
		 * the doorbells queued, which may not have run yet (it would find them pending).
		 */
		cancel_delayed_work_sync(&qp->retry_work);
		mutex_lock(&qp->lock);
		hmr_req_process(qp);
		mutex_unlock(&qp->lock);
	}
	hmr_wire_qp_stop(qp);	/* a requester waiting for the network lets go of qp->lock */
	mutex_lock(&qp->lock);
	qp->destroying = true;
	mutex_unlock(&qp->lock);
	/* No requester finds it any more; wait for the ones executing on it now. */
	xa_erase(&hdev->qps, ibqp->qp_num);
	hmr_qp_put(qp);
	wait_for_completion(&qp->done);
	/* Only those could queue err_work; retry_work and flush_work no longer re-arm. */
	cancel_delayed_work_sync(&qp->retry_work);
	cancel_work_sync(&qp->err_work);
	cancel_delayed_work_sync(&qp->flush_work);
	hmr_mw_qp_destroy(qp);	/* nothing binds on it any more */
	hmr_wire_qp_destroy(qp);
	hmr_ring_destroy(&qp->rq);
	hmr_ring_destroy(&qp->sq);
	mutex_destroy(&qp->resp_lock);
	mutex_destroy(&qp->lock);
	return 0;
}

/*
 * Complete every WQE userspace posted on @ring, from *@cons on, with IB_WC_WR_FLUSH_ERR (WRs
 * complete even when unsignaled). A producer index that claims more entries than the ring
 * holds is not believed: nothing is flushed. Both WQE formats start with wr_id; nothing
 * else of a slot is read. Returns the number of WQEs flushed.
 */
static u32 hmr_qp_flush_ring(struct hmr_qp *qp, struct hmr_ring *ring, u32 *cons,
			     struct ib_cq *ibcq, u32 opcode)
{
	struct hmr_cqe cqe = {
		.status = IB_WC_WR_FLUSH_ERR,
		.opcode = opcode,
		.qp_num = qp->ibqp.qp_num,
	};
	u32 prod, n;

	BUILD_BUG_ON(offsetof(struct hmr_send_wqe, wr_id) ||
		     offsetof(struct hmr_recv_wqe, wr_id));
	if (!hmr_ring_present(ring))
		return 0;
	prod = hmr_ring_user_prod(ring);
	n = prod - *cons;
	if (!hmr_ring_span_ok(ring, prod, *cons))
		return 0;
	while (*cons != prod) {
		cqe.wr_id = READ_ONCE(*(__u64 *)hmr_ring_slot(ring, *cons));
		/* The slot is free before its completion is seen (as in hmr_req_run()). */
		hmr_ring_publish_cons(ring, ++*cons);
		hmr_cq_post(to_hcq(ibcq), &cqe, false);
	}
	return n;
}

/* Flush both queues; returns the number of WQEs flushed. Caller holds qp->lock. */
u32 hmr_qp_flush(struct hmr_qp *qp)
{
	u32 n;

	n = hmr_qp_flush_ring(qp, &qp->sq, &qp->sq_cons, qp->ibqp.send_cq, IB_WC_SEND);
	mutex_lock(&qp->resp_lock);
	n += hmr_wire_resp_flush(qp);	/* taken off the ring first */
	n += hmr_qp_flush_ring(qp, &qp->rq, &qp->rq_cons, qp->ibqp.recv_cq, IB_WC_RECV);
	mutex_unlock(&qp->resp_lock);
	return n;
}

/*
 * post_recv makes no system call, so nothing tells the kernel of a receive posted to a QP
 * already in ERROR. While the QP stays in ERROR this work flushes what was posted since:
 * every jiffy at first, backing off to once a second while nothing comes. Any system call on
 * the QP (doorbell, modify, query) flushes at once as well.
 */
static void hmr_qp_flush_work(struct work_struct *work)
{
	struct hmr_qp *qp = container_of(to_delayed_work(work), struct hmr_qp, flush_work);

	mutex_lock(&qp->lock);
	if (qp->state == IB_QPS_ERR && !qp->destroying) {
		if (hmr_qp_flush(qp))
			qp->flush_delay = HMR_FLUSH_MIN_DELAY;
		else
			qp->flush_delay = min(qp->flush_delay * 2, HMR_FLUSH_MAX_DELAY);
		queue_delayed_work(system_wq, &qp->flush_work, qp->flush_delay);
	}
	mutex_unlock(&qp->lock);
}

/*
 * A QP on an SRQ in ERROR takes no more receives from it: IB_EVENT_QP_LAST_WQE_REACHED, once
 * until the QP is reset. Caller holds qp->lock.
 */
static void hmr_qp_last_wqe(struct hmr_qp *qp)
{
	struct ib_event ev = {
		.device = qp->ibqp.device,
		.element.qp = &qp->ibqp,
		.event = IB_EVENT_QP_LAST_WQE_REACHED,
	};

	if (!qp->ibqp.srq || qp->last_wqe)
		return;
	qp->last_wqe = true;
	if (qp->ibqp.event_handler)
		qp->ibqp.event_handler(&ev, qp->ibqp.qp_context);
}

/* Flush now, and keep flushing while in ERROR (hmr_qp_flush_work). Caller holds qp->lock. */
static void hmr_qp_flush_start(struct hmr_qp *qp)
{
	hmr_qp_flush(qp);
	hmr_qp_last_wqe(qp);
	if (qp->destroying)
		return;
	qp->flush_delay = HMR_FLUSH_MIN_DELAY;
	mod_delayed_work(system_wq, &qp->flush_work, qp->flush_delay);
}

static void hmr_qp_write_state(struct hmr_qp *qp, enum ib_qp_state next)
{
	mutex_lock(&qp->resp_lock);
	WRITE_ONCE(qp->state, next);
	mutex_unlock(&qp->resp_lock);
}

/* Move to ERROR and flush both queues, now and later. Caller holds qp->lock. */
void hmr_qp_set_error(struct hmr_qp *qp)
{
	hmr_qp_write_state(qp, IB_QPS_ERR);
	hmr_qp_flush_start(qp);
}

/* As hmr_qp_set_error(), for an error no completion reports: an async event does. */
void hmr_qp_fatal(struct hmr_qp *qp)
{
	struct ib_event ev = {
		.device = qp->ibqp.device,
		.element.qp = &qp->ibqp,
		.event = IB_EVENT_QP_FATAL,
	};

	hmr_qp_set_error(qp);
	if (qp->ibqp.event_handler)
		qp->ibqp.event_handler(&ev, qp->ibqp.qp_context);
}

static void hmr_qp_err_work(struct work_struct *work)
{
	struct hmr_qp *qp = container_of(work, struct hmr_qp, err_work);
	bool fatal;

	mutex_lock(&qp->lock);
	mutex_lock(&qp->resp_lock);
	fatal = qp->err_fatal;
	qp->err_fatal = false;
	mutex_unlock(&qp->resp_lock);
	/*
	 * Moved by the owner meanwhile (reset, and maybe on to INIT or further): that error is
	 * gone with the queues it concerned; flushing now would break the QP's new life.
	 */
	if (qp->state == IB_QPS_ERR && fatal)
		hmr_qp_fatal(qp);
	else if (qp->state == IB_QPS_ERR)
		hmr_qp_set_error(qp);
	mutex_unlock(&qp->lock);
}

/*
 * The responder of @qp failed (it holds qp->resp_lock, and maybe another QP's lock): the QP
 * goes to ERROR from a work item, which may take qp->lock. Receives stop at once. @fatal:
 * no completion reports the error (a corrupted RQ index), an IB_EVENT_QP_FATAL does.
 */
void hmr_qp_error_async(struct hmr_qp *qp, bool fatal)
{
	WRITE_ONCE(qp->state, IB_QPS_ERR);
	qp->err_fatal |= fatal;
	queue_work(system_wq, &qp->err_work);
}

/* The doorbell: userspace posted send WQEs. Also flushes them in ERROR. */
int hmr_qp_doorbell(struct hmr_qp *qp)
{
	hmr_req_doorbell(qp);
	return 0;
}

/*
 * Only the REMOTE_* bits of qp_access_flags mean something for a QP; the MR-only bits
 * (ON_DEMAND, HUGETLB, ZERO_BASED, ...) are accepted and ignored, as real devices do (rdma-core's
 * tests pass the MR's access flags here); bits no kernel defines are refused.
 */
#define HMR_QP_ACCESS_FLAGS	IB_ACCESS_SUPPORTED

static int hmr_qp_chk_path(struct ib_qp_attr *attr, int mask)
{
	if ((mask & IB_QP_PKEY_INDEX) && attr->pkey_index)
		return -EINVAL;
	if ((mask & IB_QP_PATH_MTU) &&
	    (attr->path_mtu < IB_MTU_256 || attr->path_mtu > IB_MTU_4096))
		return -EINVAL;
	if ((mask & IB_QP_AV) &&
	    (!(rdma_ah_get_ah_flags(&attr->ah_attr) & IB_AH_GRH) ||
	     attr->ah_attr.grh.sgid_index >= HMR_GID_TABLE_LEN))
		return -EINVAL;
	if (mask & IB_QP_ALT_PATH)
		return -EOPNOTSUPP;
	return 0;
}

static int hmr_qp_chk_limits(struct ib_qp_attr *attr, int mask)
{
	if ((mask & IB_QP_ACCESS_FLAGS) && (attr->qp_access_flags & ~HMR_QP_ACCESS_FLAGS))
		return -EINVAL;
	if ((mask & IB_QP_TIMEOUT) && attr->timeout > 31)
		return -EINVAL;
	if ((mask & IB_QP_RETRY_CNT) && attr->retry_cnt > 7)
		return -EINVAL;
	if ((mask & IB_QP_RNR_RETRY) && attr->rnr_retry > 7)
		return -EINVAL;
	if ((mask & IB_QP_MIN_RNR_TIMER) && attr->min_rnr_timer > 31)
		return -EINVAL;
	if ((mask & IB_QP_MAX_QP_RD_ATOMIC) && attr->max_rd_atomic > HMR_MAX_RD_ATOM)
		return -EINVAL;
	if ((mask & IB_QP_MAX_DEST_RD_ATOMIC) && attr->max_dest_rd_atomic > HMR_MAX_RD_ATOM)
		return -EINVAL;
	if ((mask & IB_QP_DEST_QPN) && attr->dest_qp_num > HMR_QPN_LIMIT.max)
		return -EINVAL;
	if ((mask & IB_QP_RQ_PSN) && attr->rq_psn > HMR_PSN_MASK)
		return -EINVAL;
	if ((mask & IB_QP_SQ_PSN) && attr->sq_psn > HMR_PSN_MASK)
		return -EINVAL;
	return 0;
}

/* Check a modify_qp request against the spec's state machine and hmr's limits. */
static int hmr_qp_chk_attr(struct hmr_qp *qp, struct ib_qp_attr *attr, int mask)
{
	enum ib_qp_state cur = READ_ONCE(qp->state), next;
	int ret;

	if ((mask & IB_QP_CUR_STATE) && attr->cur_qp_state != cur)
		return -EINVAL;
	next = (mask & IB_QP_STATE) ? attr->qp_state : cur;
	if (!ib_modify_qp_is_ok(cur, next, qp->ibqp.qp_type, mask))
		return -EINVAL;
	ret = hmr_qp_chk_path(attr, mask);
	if (ret)
		return ret;
	return hmr_qp_chk_limits(attr, mask);
}

static void hmr_qp_from_attr(struct hmr_qp *qp, struct ib_qp_attr *attr, int mask)
{
	struct ib_qp_attr *a = &qp->attr;

	if (mask & IB_QP_AV) {
		a->ah_attr = attr->ah_attr;
		/* The core owns the reference on the source GID entry. */
		a->ah_attr.grh.sgid_attr = NULL;
	}
#define HMR_SET(bit, field) do { if (mask & (bit)) a->field = attr->field; } while (0)
	HMR_SET(IB_QP_PKEY_INDEX, pkey_index);
	HMR_SET(IB_QP_QKEY, qkey);
	HMR_SET(IB_QP_PORT, port_num);
	HMR_SET(IB_QP_ACCESS_FLAGS, qp_access_flags);
	HMR_SET(IB_QP_PATH_MTU, path_mtu);
	HMR_SET(IB_QP_TIMEOUT, timeout);
	HMR_SET(IB_QP_RETRY_CNT, retry_cnt);
	HMR_SET(IB_QP_RNR_RETRY, rnr_retry);
	if (mask & IB_QP_RNR_RETRY)
		qp->rnr_left = attr->rnr_retry;
	if (mask & IB_QP_RETRY_CNT)
		qp->retry_left = attr->retry_cnt;
	HMR_SET(IB_QP_RQ_PSN, rq_psn);
	HMR_SET(IB_QP_SQ_PSN, sq_psn);
	HMR_SET(IB_QP_MAX_QP_RD_ATOMIC, max_rd_atomic);
	HMR_SET(IB_QP_MAX_DEST_RD_ATOMIC, max_dest_rd_atomic);
	HMR_SET(IB_QP_MIN_RNR_TIMER, min_rnr_timer);
	HMR_SET(IB_QP_DEST_QPN, dest_qp_num);
	HMR_SET(IB_QP_PATH_MIG_STATE, path_mig_state);
	HMR_SET(IB_QP_EN_SQD_ASYNC_NOTIFY, en_sqd_async_notify);
#undef HMR_SET
}

/*
 * A QP back in RESET forgets its queued WRs: the rings are empty from the current index on.
 * Caller holds qp->lock and qp->resp_lock.
 */
static void hmr_qp_reset_ring(struct hmr_ring *ring, u32 *cons)
{
	if (!hmr_ring_present(ring))
		return;
	*cons = hmr_ring_user_prod(ring);
	hmr_ring_publish_cons(ring, *cons);
}

static void hmr_qp_reset(struct hmr_qp *qp)
{
	hmr_qp_reset_ring(&qp->sq, &qp->sq_cons);
	hmr_qp_reset_ring(&qp->rq, &qp->rq_cons);
	qp->last_wqe = false;
}

/*
 * Apply a checked modify_qp. The attributes and the state change together under resp_lock,
 * so the responder sees either the old QP or the new one (qp_access_flags, min_rnr_timer
 * and state of the same modify). Caller holds qp->lock.
 */
static void hmr_qp_apply(struct hmr_qp *qp, struct ib_qp_attr *attr, int mask,
			 const struct hmr_path *path)
{
	enum ib_qp_state cur = READ_ONCE(qp->state);
	enum ib_qp_state next = (mask & IB_QP_STATE) ? attr->qp_state : cur;

	mutex_lock(&qp->resp_lock);
	hmr_qp_from_attr(qp, attr, mask);
	if (mask & IB_QP_AV) {
		qp->wire.path = *path;
		dst_cache_reset(&qp->wire.dst_cache);	/* no sender runs: both locks held */
	}
	if (mask & IB_QP_SQ_PSN)
		qp->wire.sq_psn = attr->sq_psn;
	if (mask & IB_QP_RQ_PSN)
		qp->wire.epsn = attr->rq_psn;
	WRITE_ONCE(qp->state, next);
	if (next == IB_QPS_RESET && cur != IB_QPS_RESET) {
		hmr_qp_reset(qp);
		hmr_wire_qp_reset(qp);
	}
	mutex_unlock(&qp->resp_lock);
	if (next == IB_QPS_ERR)
		hmr_qp_flush_start(qp);	/* also ERROR to ERROR: flushes what came since */
	else if (next == IB_QPS_RTS && cur != IB_QPS_RTS)
		hmr_req_process(qp);	/* WRs posted before RTS start now */
}

/*
 * A connected QP on a device with the wire: where its packets go (the AV), and whether its
 * peer is on this kernel (the direct path). Caller holds qp->lock.
 */
static int hmr_qp_wire_path(struct hmr_qp *qp, struct ib_qp_attr *attr, int mask,
			    struct hmr_path *path)
{
	const struct ib_global_route *grh = &attr->ah_attr.grh;

	if (!(mask & IB_QP_AV) || qp->transport != &hmr_wire_transport)
		return 0;
	qp->wire.local = hmr_gid_is_local(&grh->dgid);
	if (qp->wire.local)
		return 0;
	return hmr_wire_path(qp, &grh->dgid, grh->sgid_index, grh->traffic_class,
			     grh->hop_limit, grh->flow_label, path) ? -EINVAL : 0;
}

int hmr_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		  struct ib_udata *udata)
{
	struct hmr_qp *qp = to_hqp(ibqp);
	struct hmr_path path = {};
	int ret;

	if (mask & ~IB_QP_ATTR_STANDARD_BITS)
		return -EOPNOTSUPP;
	if (udata && udata->inlen && !ib_is_udata_cleared(udata, 0, udata->inlen))
		return -EOPNOTSUPP;

	mutex_lock(&qp->lock);
	ret = hmr_qp_chk_attr(qp, attr, mask);
	if (ret)
		goto out_unlock;
	ret = hmr_qp_wire_path(qp, attr, mask, &path);
	if (ret)
		goto out_unlock;
	hmr_qp_apply(qp, attr, mask, &path);
out_unlock:
	mutex_unlock(&qp->lock);
	return ret;
}

int hmr_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		 struct ib_qp_init_attr *init)
{
	struct hmr_qp *qp = to_hqp(ibqp);

	mutex_lock(&qp->lock);
	if (qp->state == IB_QPS_ERR)
		hmr_qp_flush(qp);	/* a system call on the QP: flush what was posted */
	*attr = qp->attr;
	attr->qp_state = qp->state;
	attr->cur_qp_state = qp->state;
	attr->cap = qp->cap;
	attr->sq_draining = 0;
	memset(init, 0, sizeof(*init));
	init->qp_type = ibqp->qp_type;
	init->send_cq = ibqp->send_cq;
	init->recv_cq = ibqp->recv_cq;
	init->cap = qp->cap;
	init->sq_sig_type = qp->sq_sig_all ? IB_SIGNAL_ALL_WR : IB_SIGNAL_REQ_WR;
	mutex_unlock(&qp->lock);
	return 0;
}
