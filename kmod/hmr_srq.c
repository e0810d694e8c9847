// SPDX-License-Identifier: GPL-2.0
/*
 * Shared receive queues and XRC domains.
 *
 * An SRQ is a ring of receive WQEs like a QP's RQ (same entry format, same ordering rules),
 * written by post_srq_recv in userspace without a system call and read by the responder of
 * whichever QP a message arrives on (hmr_resp.c). A basic SRQ serves the QPs created on it; an
 * XRC SRQ serves the XRC receive QPs of its XRC domain, found by the SRQ number each XRC
 * request carries, and completes to its own CQ. An XRC domain holds nothing of hmr's own:
 * the RDMA core keeps its QPs and the SRQ checks compare domains by pointer.
 */
#include <rdma/ib_user_verbs.h>
#include <rdma/uverbs_ioctl.h>

#include "hmr_dev.h"

/* SRQ numbers share the 24-bit space of QP numbers on the wire (the XRC ETH). */
#define HMR_SRQN_LIMIT	XA_LIMIT(1, (1 << 24) - 1)

int hmr_alloc_xrcd(struct ib_xrcd *ibxrcd, struct ib_udata *udata)
{
	return 0;
}

int hmr_dealloc_xrcd(struct ib_xrcd *ibxrcd, struct ib_udata *udata)
{
	return 0;
}

static int hmr_srq_chk_init(struct ib_srq_init_attr *init)
{
	if (init->srq_type != IB_SRQT_BASIC && init->srq_type != IB_SRQT_XRC)
		return -EOPNOTSUPP;	/* no tag matching */
	if (!init->attr.max_wr || init->attr.max_wr > HMR_MAX_SRQ_WR ||
	    init->attr.max_sge > HMR_MAX_SGE || init->attr.srq_limit > init->attr.max_wr)
		return -EINVAL;
	return 0;
}

/* An XRC SRQ gets a number requests can name it by. */
static int hmr_srq_number(struct hmr_dev *hdev, struct hmr_srq *srq)
{
	u32 srqn;
	int ret;

	if (srq->ibsrq.srq_type != IB_SRQT_XRC)
		return 0;
	ret = xa_alloc_cyclic(&hdev->srqs, &srqn, srq, HMR_SRQN_LIMIT, &hdev->next_srqn,
			      GFP_KERNEL);
	if (ret < 0)
		return ret;
	srq->ibsrq.ext.xrc.srq_num = srqn;
	return 0;
}

int hmr_create_srq(struct ib_srq *ibsrq, struct ib_srq_init_attr *init, struct ib_udata *udata)
{
	struct hmr_dev *hdev = to_hdev(ibsrq->device);
	struct hmr_srq *srq = to_hsrq(ibsrq);
	struct hmr_create_srq_resp resp = {};
	struct hmr_ucontext *uctx;
	int ret;

	if (!udata)
		return -EOPNOTSUPP;	/* no kernel consumers */
	ret = hmr_srq_chk_init(init);
	if (ret)
		return ret;
	if (udata->outlen < sizeof(resp))
		return -EINVAL;
	uctx = rdma_udata_to_drv_context(udata, struct hmr_ucontext, ibuc);
	mutex_init(&srq->lock);
	refcount_set(&srq->ref, 1);
	init_completion(&srq->done);
	ret = hmr_ring_init(&srq->rq, &uctx->ibuc, init->attr.max_wr,
			    sizeof(struct hmr_recv_wqe), &resp.mmap_offset, &resp.mmap_size);
	if (ret)
		goto err_mutex;
	resp.num = srq->rq.num;
	srq->max_sge = max(init->attr.max_sge, 1u);
	srq->limit = init->attr.srq_limit;
	ret = hmr_srq_number(hdev, srq);
	if (ret)
		goto err_ring;
	ret = ib_copy_to_udata(udata, &resp, sizeof(resp));
	if (ret)
		goto err_number;
	/* Report what the SRQ really has. */
	init->attr.max_wr = srq->rq.num;
	init->attr.max_sge = srq->max_sge;
	return 0;

err_number:
	if (ibsrq->srq_type == IB_SRQT_XRC)
		xa_erase(&hdev->srqs, ibsrq->ext.xrc.srq_num);
err_ring:
	hmr_ring_destroy(&srq->rq);
err_mutex:
	mutex_destroy(&srq->lock);
	return ret;
}

/* The XRC SRQ @srqn of @hdev with a reference (hmr_srq_put()), or NULL. */
struct hmr_srq *hmr_srq_get(struct hmr_dev *hdev, u32 srqn)
{
	struct hmr_srq *srq;

	xa_lock(&hdev->srqs);
	srq = xa_load(&hdev->srqs, srqn);
	if (srq && !refcount_inc_not_zero(&srq->ref))
		srq = NULL;
	xa_unlock(&hdev->srqs);
	return srq;
}

void hmr_srq_put(struct hmr_srq *srq)
{
	if (refcount_dec_and_test(&srq->ref))
		complete(&srq->done);
}

/*
 * Move the receive WQEs not yet taken, [cons, prod), into @to at the same indices (the
 * provider's producer index stays valid), and make @to the SRQ's ring. Caller holds srq->lock.
 * Returns -EINVAL, and changes nothing, when they do not fit (or userspace's index is not sane).
 */
static int hmr_srq_move(struct hmr_srq *srq, struct hmr_ring *to)
{
	u32 prod = hmr_ring_user_prod(&srq->rq), i;

	if (!hmr_ring_span_ok(&srq->rq, prod, srq->cons) || !hmr_ring_span_ok(to, prod, srq->cons))
		return -EINVAL;
	for (i = srq->cons; i != prod; i++)
		memcpy(hmr_ring_slot(to, i), hmr_ring_slot(&srq->rq, i), to->esize);
	WRITE_ONCE(to->hdr->prod, prod);
	hmr_ring_publish_cons(to, srq->cons);
	swap(srq->rq, *to);
	return 0;
}

/*
 * IB_SRQ_MAX_WR: a new ring of at least @max_wr entries, its mmap information written where
 * the provider's command says (modify_srq has no response), holding the WQEs not yet taken
 * (-EINVAL when they do not fit, or when @limit, if armed by the same call, exceeds it). The
 * provider holds its posting lock across the call and maps the new ring afterwards.
 */
static int hmr_srq_resize(struct hmr_srq *srq, u32 max_wr, const u32 *limit,
			  struct ib_udata *udata)
{
	struct hmr_create_srq_resp resp = {};
	struct hmr_modify_srq_cmd cmd;
	struct hmr_ucontext *uctx;
	struct hmr_ring ring = {};
	int ret;

	if (!udata || udata->inlen < sizeof(cmd))
		return -EINVAL;
	uctx = rdma_udata_to_drv_context(udata, struct hmr_ucontext, ibuc);
	ret = ib_copy_from_udata(&cmd, udata, sizeof(cmd));
	if (ret)
		return ret;
	if (!max_wr || max_wr > HMR_MAX_SRQ_WR)
		return -EINVAL;
	ret = hmr_ring_init(&ring, &uctx->ibuc, max_wr,
			    sizeof(struct hmr_recv_wqe), &resp.mmap_offset, &resp.mmap_size);
	if (ret)
		return ret;
	resp.num = ring.num;
	if (limit && *limit > ring.num) {
		ret = -EINVAL;
		goto out;
	}
	if (copy_to_user(u64_to_user_ptr(cmd.resp_addr), &resp, sizeof(resp))) {
		ret = -EFAULT;
		goto out;
	}
	mutex_lock(&srq->lock);
	ret = hmr_srq_move(srq, &ring);
	if (!ret && limit)
		srq->limit = *limit;
	mutex_unlock(&srq->lock);
out:
	hmr_ring_destroy(&ring);	/* the old ring, or the new one unused */
	return ret;
}

/*
 * The limit and the ring's size (IB_SRQ_MAX_WR, hmr_srq_resize()) can change. Arming a limit
 * the SRQ is already below raises the event at the next receive it hands out.
 */
int hmr_modify_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr, enum ib_srq_attr_mask mask,
		   struct ib_udata *udata)
{
	struct hmr_srq *srq = to_hsrq(ibsrq);

	if (mask & ~(IB_SRQ_LIMIT | IB_SRQ_MAX_WR))
		return -EOPNOTSUPP;
	if (mask & IB_SRQ_MAX_WR)
		return hmr_srq_resize(srq, attr->max_wr,
				      mask & IB_SRQ_LIMIT ? &attr->srq_limit : NULL, udata);
	if (udata && udata->inlen && !ib_is_udata_cleared(udata, 0, udata->inlen))
		return -EOPNOTSUPP;
	mutex_lock(&srq->lock);
	if (attr->srq_limit > srq->rq.num) {
		mutex_unlock(&srq->lock);
		return -EINVAL;
	}
	srq->limit = attr->srq_limit;
	mutex_unlock(&srq->lock);
	return 0;
}

int hmr_query_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr)
{
	struct hmr_srq *srq = to_hsrq(ibsrq);

	mutex_lock(&srq->lock);
	attr->max_wr = srq->rq.num;
	attr->max_sge = srq->max_sge;
	attr->srq_limit = srq->limit;
	mutex_unlock(&srq->lock);
	return 0;
}

int hmr_destroy_srq(struct ib_srq *ibsrq, struct ib_udata *udata)
{
	struct hmr_dev *hdev = to_hdev(ibsrq->device);
	struct hmr_srq *srq = to_hsrq(ibsrq);

	/* No request finds it any more; wait for the ones using it now. */
	if (ibsrq->srq_type == IB_SRQT_XRC)
		xa_erase(&hdev->srqs, ibsrq->ext.xrc.srq_num);
	hmr_srq_put(srq);
	wait_for_completion(&srq->done);
	hmr_ring_destroy(&srq->rq);
	mutex_destroy(&srq->lock);
	return 0;
}

static void hmr_srq_event(struct hmr_srq *srq, enum ib_event_type type)
{
	struct ib_event ev = {
		.device = srq->ibsrq.device,
		.element.srq = &srq->ibsrq,
		.event = type,
	};

	if (srq->ibsrq.event_handler)
		srq->ibsrq.event_handler(&ev, srq->ibsrq.srq_context);
}

/*
 * Copy the next receive WQE off @srq into @wqe (once: userspace may rewrite the slot). On
 * success srq->lock stays held until hmr_srq_consume() or hmr_srq_give_back(), so no other
 * responder takes the same WQE. Returns 0, -EAGAIN when the SRQ is empty, or -EIO when
 * userspace corrupted its producer index (IB_EVENT_SRQ_ERR, once; the SRQ stays unusable).
 */
int hmr_srq_take(struct hmr_srq *srq, struct hmr_recv_wqe *wqe)
{
	u32 prod;

	mutex_lock(&srq->lock);
	prod = hmr_ring_user_prod(&srq->rq);
	if (!srq->error && !hmr_ring_span_ok(&srq->rq, prod, srq->cons)) {
		srq->error = true;
		hmr_srq_event(srq, IB_EVENT_SRQ_ERR);
	}
	if (srq->error || prod == srq->cons) {
		mutex_unlock(&srq->lock);
		return srq->error ? -EIO : -EAGAIN;
	}
	memcpy(wqe, hmr_ring_slot(&srq->rq, srq->cons), sizeof(*wqe));
	return 0;
}

/* The WQE hmr_srq_take() returned is used: hand its slot back, check the limit, unlock. */
void hmr_srq_consume(struct hmr_srq *srq)
{
	u32 left;

	hmr_ring_publish_cons(&srq->rq, ++srq->cons);
	left = hmr_ring_user_prod(&srq->rq) - srq->cons;
	if (srq->limit && left < srq->limit) {
		srq->limit = 0;		/* the event disarms the limit */
		hmr_srq_event(srq, IB_EVENT_SRQ_LIMIT_REACHED);
	}
	mutex_unlock(&srq->lock);
}

/* The WQE hmr_srq_take() returned was not used: it stays at the head. Unlock. */
void hmr_srq_give_back(struct hmr_srq *srq)
{
	mutex_unlock(&srq->lock);
}
