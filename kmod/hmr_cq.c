// SPDX-License-Identifier: GPL-2.0
/*
 * Completion queues. The kernel produces CQEs into a ring the provider polls without a
 * system call; req_notify_cq arms a completion event for the next (solicited) CQE. A kernel
 * consumer's CQ has the same ring, not mapped, polled through poll_cq (hmr_kverbs.c).
 */
#include <linux/spinlock.h>
#include <rdma/uverbs_ioctl.h>

#include "hmr_dev.h"

int hmr_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		  hmr_cq_last_t *hmr_last)
{
	struct ib_udata *udata = hmr_create_cq_udata(hmr_last);
	struct hmr_cq *cq = to_hcq(ibcq);
	struct hmr_create_cq_resp resp = {};
	struct ib_ucontext *uctx = NULL;	/* a kernel CQ's ring is not mapped */
	int ret;

	if (udata)
		uctx = &rdma_udata_to_drv_context(udata, struct hmr_ucontext, ibuc)->ibuc;
	if (attr->flags)
		return -EOPNOTSUPP;
	if (attr->cqe < 1 || attr->cqe > HMR_MAX_CQE)
		return -EINVAL;
	if (udata && udata->outlen < sizeof(resp))
		return -EINVAL;

	spin_lock_init(&cq->lock);
	ret = hmr_ring_init(&cq->ring, uctx, attr->cqe, sizeof(struct hmr_cqe),
			    &resp.mmap_offset, &resp.mmap_size);
	if (ret)
		return ret;
	resp.num = cq->ring.num;
	ibcq->cqe = cq->ring.num;
	ret = udata ? ib_copy_to_udata(udata, &resp, sizeof(resp)) : 0;
	if (ret)
		goto err_ring;
	return 0;

err_ring:
	hmr_ring_destroy(&cq->ring);
	return ret;
}

int hmr_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata)
{
	hmr_ring_destroy(&to_hcq(ibcq)->ring);
	return 0;
}

/*
 * Move the CQEs not yet polled, [cons, prod), into @to at the same indices (the provider's
 * consumer index stays valid), and make @to the CQ's ring. Caller holds cq->lock. Returns
 * -EINVAL, and changes nothing, when they do not fit (or userspace's index is not sane).
 */
static int hmr_cq_move(struct hmr_cq *cq, struct hmr_ring *to)
{
	u32 cons = hmr_ring_user_cons(&cq->ring), i;

	if (!hmr_ring_span_ok(&cq->ring, cq->prod, cons) || !hmr_ring_span_ok(to, cq->prod, cons))
		return -EINVAL;
	for (i = cons; i != cq->prod; i++)
		memcpy(hmr_ring_slot(to, i), hmr_ring_slot(&cq->ring, i), to->esize);
	WRITE_ONCE(to->hdr->cons, cons);
	hmr_ring_publish_prod(to, cq->prod);
	swap(cq->ring, *to);
	return 0;
}

/*
 * ibv_resize_cq: a new ring of at least @cqe entries holding the completions not yet polled
 * (-EINVAL when they do not fit); the provider maps it and unmaps the old one, which stays
 * until then. The provider holds its poll lock across the call and published its consumer
 * index first.
 */
int hmr_resize_cq(struct ib_cq *ibcq, hmr_resize_cqe_t cqe, struct ib_udata *udata)
{
	struct hmr_cq *cq = to_hcq(ibcq);
	struct hmr_create_cq_resp resp = {};
	struct hmr_ucontext *uctx;
	struct hmr_ring ring = {};
	unsigned long irqflags;
	int ret;

	if (!udata)
		return -EOPNOTSUPP;	/* kernel CQs are not resized */
	if (cqe < 1 || cqe > HMR_MAX_CQE || udata->outlen < sizeof(resp))
		return -EINVAL;
	uctx = rdma_udata_to_drv_context(udata, struct hmr_ucontext, ibuc);
	ret = hmr_ring_init(&ring, &uctx->ibuc, cqe, sizeof(struct hmr_cqe), &resp.mmap_offset,
			    &resp.mmap_size);
	if (ret)
		return ret;
	resp.num = ring.num;
	ret = ib_copy_to_udata(udata, &resp, sizeof(resp));
	if (ret)
		goto out;
	spin_lock_irqsave(&cq->lock, irqflags);
	ret = hmr_cq_move(cq, &ring);
	spin_unlock_irqrestore(&cq->lock, irqflags);
	if (!ret)
		ibcq->cqe = cq->ring.num;
out:
	hmr_ring_destroy(&ring);	/* the old ring, or the new one unused */
	return ret;
}

/* Kernel polling: a user CQ's owner polls its ring directly, never through here. */
int hmr_poll_cq(struct ib_cq *ibcq, int num_entries, struct ib_wc *wc)
{
	struct hmr_cq *cq = to_hcq(ibcq);

	if (!cq->ring.kernel)
		return -EOPNOTSUPP;
	return hmr_kpoll_cq(cq, num_entries, wc);
}

int hmr_req_notify_cq(struct ib_cq *ibcq, enum ib_cq_notify_flags flags)
{
	struct hmr_cq *cq = to_hcq(ibcq);
	unsigned long irqflags;
	int ret = 0;

	spin_lock_irqsave(&cq->lock, irqflags);
	if (cq->notify != IB_CQ_NEXT_COMP)
		cq->notify = flags & IB_CQ_SOLICITED_MASK;
	if ((flags & IB_CQ_REPORT_MISSED_EVENTS) && hmr_ring_user_cons(&cq->ring) != cq->prod)
		ret = 1;
	spin_unlock_irqrestore(&cq->lock, irqflags);
	return ret;
}

/*
 * Post one completion. Returns -ENOSPC when the ring is full (or userspace corrupted its
 * consumer index): the CQ is then in error and its owner gets IB_EVENT_CQ_ERR.
 */
int hmr_cq_post(struct hmr_cq *cq, const struct hmr_cqe *cqe, bool solicited)
{
	struct ib_event ev = { .device = cq->ibcq.device, .element.cq = &cq->ibcq };
	unsigned long irqflags;
	bool notify = false;

	spin_lock_irqsave(&cq->lock, irqflags);
	if (cq->error || !hmr_ring_span_ok(&cq->ring, cq->prod + 1, hmr_ring_user_cons(&cq->ring)))
		goto overflow;
	memcpy(hmr_ring_slot(&cq->ring, cq->prod), cqe, sizeof(*cqe));
	hmr_ring_publish_prod(&cq->ring, ++cq->prod);
	if (cq->notify == IB_CQ_NEXT_COMP || (cq->notify == IB_CQ_SOLICITED && solicited)) {
		cq->notify = 0;
		notify = true;
	}
	spin_unlock_irqrestore(&cq->lock, irqflags);
	if (notify)
		cq->ibcq.comp_handler(&cq->ibcq, cq->ibcq.cq_context);
	return 0;

overflow:
	if (!cq->error) {
		cq->error = true;
		spin_unlock_irqrestore(&cq->lock, irqflags);
		ev.event = IB_EVENT_CQ_ERR;
		if (cq->ibcq.event_handler)
			cq->ibcq.event_handler(&ev, cq->ibcq.cq_context);
		return -ENOSPC;
	}
	spin_unlock_irqrestore(&cq->lock, irqflags);
	return -ENOSPC;
}
