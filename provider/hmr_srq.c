// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hmr provider: shared receive queues and XRC domains. post_srq_recv writes the SRQ's ring
 * (the same entries as a QP's RQ) without a system call; the kernel's responders consume it.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmr.h"

struct ibv_xrcd *hmr_open_xrcd(struct ibv_context *ibctx, struct ibv_xrcd_init_attr *attr)
{
	struct ib_uverbs_open_xrcd_resp resp;
	struct ibv_open_xrcd cmd;
	struct verbs_xrcd *xrcd;

	xrcd = calloc(1, sizeof(*xrcd));
	if (!xrcd)
		return NULL;
	if (ibv_cmd_open_xrcd(ibctx, xrcd, sizeof(*xrcd), attr, &cmd, sizeof(cmd), &resp,
			      sizeof(resp))) {
		free(xrcd);
		return NULL;
	}
	return &xrcd->xrcd;
}

int hmr_close_xrcd(struct ibv_xrcd *ibxrcd)
{
	struct verbs_xrcd *xrcd = container_of(ibxrcd, struct verbs_xrcd, xrcd);
	int ret;

	ret = ibv_cmd_close_xrcd(xrcd);
	if (ret)
		return ret;
	free(xrcd);
	return 0;
}

/* What create_srq_ex accepts: basic and XRC SRQs (no tag matching). */
#define HMR_SRQ_COMP_MASK (IBV_SRQ_INIT_ATTR_TYPE | IBV_SRQ_INIT_ATTR_PD | \
			   IBV_SRQ_INIT_ATTR_XRCD | IBV_SRQ_INIT_ATTR_CQ)

static int hmr_check_srq_init_attr(const struct ibv_srq_init_attr_ex *attr)
{
	if (attr->comp_mask & ~HMR_SRQ_COMP_MASK)
		return EOPNOTSUPP;
	if ((attr->comp_mask & IBV_SRQ_INIT_ATTR_TYPE) && attr->srq_type != IBV_SRQT_BASIC &&
	    attr->srq_type != IBV_SRQT_XRC)
		return EOPNOTSUPP;
	return 0;
}

struct ibv_srq *hmr_create_srq_ex(struct ibv_context *ibctx, struct ibv_srq_init_attr_ex *attr)
{
	struct hmr_create_srq_cmd_resp resp = {};
	struct ibv_create_xsrq cmd = {};
	struct hmr_srq *srq;
	int err;

	err = hmr_check_srq_init_attr(attr);
	if (err) {
		errno = err;
		return NULL;
	}
	srq = calloc(1, sizeof(*srq));
	if (!srq)
		return NULL;
	if (pthread_spin_init(&srq->lock, PTHREAD_PROCESS_PRIVATE))
		goto err_free;
	if (ibv_cmd_create_srq_ex(ibctx, &srq->vsrq, attr, &cmd, sizeof(cmd), &resp.ibv_resp,
				  sizeof(resp)))
		goto err_lock;
	if (hmr_uring_map(&srq->ring, ibctx->cmd_fd, resp.drv.mmap_offset, resp.drv.mmap_size,
			  resp.drv.num, sizeof(struct hmr_recv_wqe)))
		goto err_destroy;
	srq->max_sge = attr->attr.max_sge;
	return &srq->vsrq.srq;

err_destroy:
	err = errno;
	ibv_cmd_destroy_srq(&srq->vsrq.srq);
	errno = err;
err_lock:
	pthread_spin_destroy(&srq->lock);
err_free:
	free(srq);
	return NULL;
}

struct ibv_srq *hmr_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr)
{
	struct ibv_srq_init_attr_ex attr_ex = {
		.srq_context = attr->srq_context,
		.attr = attr->attr,
		.comp_mask = IBV_SRQ_INIT_ATTR_PD,
		.pd = pd,
	};
	struct ibv_srq *srq;

	srq = hmr_create_srq_ex(pd->context, &attr_ex);
	if (srq)
		attr->attr = attr_ex.attr;
	return srq;
}

/*
 * IBV_SRQ_MAX_WR: the kernel moves the receive WQEs not yet taken into a new ring at the same
 * indices, so the producer index carries over; posters wait on the lock meanwhile. Should
 * mapping the new ring fail (ENOMEM), the SRQ is lost: its ring is one this process cannot see.
 */
static int hmr_resize_srq(struct hmr_srq *srq, struct ibv_srq_attr *attr, int mask)
{
	struct hmr_modify_srq_cmd_full cmd = {};
	struct hmr_create_srq_resp resp = {};
	struct ibv_context *ibctx = srq->vsrq.srq.context;
	int ret;

	cmd.drv.resp_addr = (uintptr_t)&resp;
	pthread_spin_lock(&srq->lock);
	ret = ibv_cmd_modify_srq(&srq->vsrq.srq, attr, mask, &cmd.ibv_cmd, sizeof(cmd));
	if (ret)
		goto out;
	ret = hmr_uring_remap(&srq->ring, ibctx->cmd_fd, resp.mmap_offset, resp.mmap_size,
			      resp.num);
out:
	pthread_spin_unlock(&srq->lock);
	return ret;
}

int hmr_modify_srq(struct ibv_srq *ibsrq, struct ibv_srq_attr *attr, int mask)
{
	struct ibv_modify_srq cmd;

	if (mask & IBV_SRQ_MAX_WR)
		return hmr_resize_srq(to_hsrq(ibsrq), attr, mask);
	return ibv_cmd_modify_srq(ibsrq, attr, mask, &cmd, sizeof(cmd));
}

int hmr_query_srq(struct ibv_srq *ibsrq, struct ibv_srq_attr *attr)
{
	struct ibv_query_srq cmd;

	return ibv_cmd_query_srq(ibsrq, attr, &cmd, sizeof(cmd));
}

int hmr_destroy_srq(struct ibv_srq *ibsrq)
{
	struct hmr_srq *srq = to_hsrq(ibsrq);
	int ret;

	ret = ibv_cmd_destroy_srq(ibsrq);
	if (ret)
		return ret;
	hmr_uring_unmap(&srq->ring);
	pthread_spin_destroy(&srq->lock);
	free(srq);
	return 0;
}

int hmr_post_srq_recv(struct ibv_srq *ibsrq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct hmr_srq *srq = to_hsrq(ibsrq);

	return hmr_post_recv_ring(&srq->ring, &srq->lock, srq->max_sge, wr, bad_wr);
}

int hmr_get_srq_num(struct ibv_srq *ibsrq, uint32_t *srq_num)
{
	struct hmr_srq *srq = to_hsrq(ibsrq);

	if (srq->vsrq.srq_type != IBV_SRQT_XRC)
		return EOPNOTSUPP;
	*srq_num = srq->vsrq.srq_num;
	return 0;
}
