// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hmr provider: device matching, context, device/port queries, protection domains, memory
 * regions (registration is a command: the kernel mirrors the range, nothing is pinned).
 * Loaded by libibverbs through /etc/libibverbs.d/hmr.driver for devices named hmr*.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmr.h"

static const struct verbs_match_ent hmr_match_table[] = {
	/* The kernel device's driver id is RDMA_DRIVER_UNKNOWN: match by name only. */
	VERBS_NAME_MATCH("hmr", NULL),
	{},
};

static int hmr_query_device(struct ibv_context *ibctx,
			    const struct ibv_query_device_ex_input *input,
			    struct ibv_device_attr_ex *attr, size_t attr_size)
{
	struct ib_uverbs_ex_query_device_resp resp;
	size_t resp_size = sizeof(resp);
	uint64_t fw;
	int ret;

	ret = ibv_cmd_query_device_any(ibctx, input, attr, attr_size, &resp, &resp_size);
	if (ret)
		return ret;
	fw = resp.base.fw_ver;
	snprintf(attr->orig_attr.fw_ver, sizeof(attr->orig_attr.fw_ver), "%u.%u.%u",
		 (unsigned int)(fw >> 32) & 0xffff, (unsigned int)(fw >> 16) & 0xffff,
		 (unsigned int)fw & 0xffff);
	return 0;
}

static int hmr_query_port(struct ibv_context *ibctx, uint8_t port, struct ibv_port_attr *attr)
{
	struct ibv_query_port cmd;

	return ibv_cmd_query_port(ibctx, port, attr, &cmd, sizeof(cmd));
}

static struct ibv_pd *hmr_alloc_pd(struct ibv_context *ibctx)
{
	struct ib_uverbs_alloc_pd_resp resp;
	struct ibv_alloc_pd cmd;
	struct ibv_pd *pd;

	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return NULL;
	if (ibv_cmd_alloc_pd(ibctx, pd, &cmd, sizeof(cmd), &resp, sizeof(resp))) {
		free(pd);
		return NULL;
	}
	return pd;
}

static int hmr_dealloc_pd(struct ibv_pd *pd)
{
	int ret;

	ret = ibv_cmd_dealloc_pd(pd);
	if (ret)
		return ret;
	free(pd);
	return 0;
}

/* Memory windows: the kernel keeps the binding; ibv_bind_mw posts a WQE (hmr_qp.c). */
static struct ibv_mw *hmr_alloc_mw(struct ibv_pd *pd, enum ibv_mw_type type)
{
	struct ib_uverbs_alloc_mw_resp resp;
	struct ibv_alloc_mw cmd;
	struct ibv_mw *mw;

	mw = calloc(1, sizeof(*mw));
	if (!mw)
		return NULL;
	if (ibv_cmd_alloc_mw(pd, type, mw, &cmd, sizeof(cmd), &resp, sizeof(resp))) {
		free(mw);
		return NULL;
	}
	return mw;
}

static int hmr_dealloc_mw(struct ibv_mw *mw)
{
	int ret;

	ret = ibv_cmd_dealloc_mw(mw);
	if (ret)
		return ret;
	free(mw);
	return 0;
}

static struct ibv_mr *hmr_reg_mr(struct ibv_pd *pd, void *addr, size_t length,
			      uint64_t hca_va, int access)
{
	struct ib_uverbs_reg_mr_resp resp;
	struct ibv_reg_mr cmd;
	struct verbs_mr *vmr;

	vmr = calloc(1, sizeof(*vmr));
	if (!vmr)
		return NULL;
	if (ibv_cmd_reg_mr(pd, addr, length, hca_va, access, vmr, &cmd, sizeof(cmd), &resp,
			   sizeof(resp))) {
		free(vmr);
		return NULL;
	}
	return &vmr->ibv_mr;
}

/*
 * A new translation becomes a new kernel MR with new keys (the command returns them); PD and
 * access changes keep the keys. The device virtual address of the new range is its address.
 */
static int hmr_rereg_mr(struct verbs_mr *vmr, int flags, struct ibv_pd *pd, void *addr,
			size_t length, int access)
{
	struct ib_uverbs_rereg_mr_resp resp;
	struct ibv_rereg_mr cmd;

	return ibv_cmd_rereg_mr(vmr, flags, addr, length, (uintptr_t)addr, access, pd, &cmd,
				sizeof(cmd), &resp, sizeof(resp));
}

static int hmr_dereg_mr(struct verbs_mr *vmr)
{
	int ret;

	ret = ibv_cmd_dereg_mr(vmr);
	if (ret)
		return ret;
	free(vmr);
	return 0;
}

static void hmr_free_context(struct ibv_context *ibctx)
{
	struct hmr_context *ctx = to_hctx(ibctx);

	verbs_uninit_context(&ctx->vctx);
	free(ctx);
}

static const struct verbs_context_ops hmr_ctx_ops = {
	.advise_mr = ibv_cmd_advise_mr,
	.alloc_mw = hmr_alloc_mw,
	.alloc_pd = hmr_alloc_pd,
	.attach_mcast = hmr_attach_mcast,
	.bind_mw = hmr_bind_mw,
	.create_ah = hmr_create_ah,
	.create_cq = hmr_create_cq,
	.create_cq_ex = hmr_create_cq_ex,
	.create_qp = hmr_create_qp,
	.create_qp_ex = hmr_create_qp_ex,
	.create_srq = hmr_create_srq,
	.create_srq_ex = hmr_create_srq_ex,
	.dealloc_mw = hmr_dealloc_mw,
	.dealloc_pd = hmr_dealloc_pd,
	.dereg_mr = hmr_dereg_mr,
	.destroy_ah = hmr_destroy_ah,
	.destroy_cq = hmr_destroy_cq,
	.destroy_qp = hmr_destroy_qp,
	.destroy_srq = hmr_destroy_srq,
	.detach_mcast = hmr_detach_mcast,
	.free_context = hmr_free_context,
	.get_srq_num = hmr_get_srq_num,
	.modify_qp = hmr_modify_qp,
	.modify_srq = hmr_modify_srq,
	.open_xrcd = hmr_open_xrcd,
	.close_xrcd = hmr_close_xrcd,
	.poll_cq = hmr_poll_cq,
	.post_recv = hmr_post_recv,
	.post_send = hmr_post_send,
	.post_srq_recv = hmr_post_srq_recv,
	.query_device_ex = hmr_query_device,
	.query_port = hmr_query_port,
	.query_qp = hmr_query_qp,
	.query_srq = hmr_query_srq,
	.reg_mr = hmr_reg_mr,
	.rereg_mr = hmr_rereg_mr,
	.req_notify_cq = ibv_cmd_req_notify_cq,
	.resize_cq = hmr_resize_cq,
};

/*
 * ATOMIC WRITE and RDMA FLUSH exist in the kernel's verbs from 6.2 on: the device advertises
 * them where its kernel has them, and a QP may ask for them only there.
 */
static void hmr_find_missing_send_ops(struct hmr_context *ctx)
{
	struct ibv_device_attr_ex attr = {};
	uint64_t caps = 0;

	if (!ibv_query_device_ex(&ctx->vctx.context, NULL, &attr))
		caps = attr.device_cap_flags_ex;
	if (!(caps & IB_UVERBS_DEVICE_ATOMIC_WRITE))
		ctx->missing_send_ops |= IBV_QP_EX_WITH_ATOMIC_WRITE;
	if (!(caps & IB_UVERBS_DEVICE_FLUSH_GLOBAL))
		ctx->missing_send_ops |= HMR_QP_EX_WITH_FLUSH;
}

static struct verbs_context *hmr_alloc_context(struct ibv_device *ibdev, int cmd_fd,
					       void *private_data)
{
	struct hmr_get_context_resp resp = {};
	struct ibv_get_context cmd;
	struct hmr_context *ctx;

	ctx = verbs_init_and_alloc_context(ibdev, cmd_fd, ctx, vctx, RDMA_DRIVER_UNKNOWN);
	if (!ctx)
		return NULL;
	if (hmr_cmd_get_context(&ctx->vctx, &cmd, sizeof(cmd), &resp.ibv_resp, sizeof(resp)))
		goto err_uninit;
	if (resp.drv.abi_version != HMR_UVERBS_ABI_VERSION) {
		errno = EPROTO;
		goto err_uninit;
	}
	verbs_set_ops(&ctx->vctx, &hmr_ctx_ops);
	hmr_find_missing_send_ops(ctx);
	return &ctx->vctx;

err_uninit:
	verbs_uninit_context(&ctx->vctx);
	free(ctx);
	return NULL;
}

static struct verbs_device *hmr_device_alloc(struct verbs_sysfs_dev *sysfs_dev)
{
	struct hmr_device *dev;

	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return NULL;
	dev->abi_version = sysfs_dev->abi_ver;
	return &dev->vdev;
}

static void hmr_uninit_device(struct verbs_device *vdev)
{
	free(to_hdev(&vdev->device));
}

static const struct verbs_device_ops hmr_dev_ops = {
	.name = "hmr",
	.match_min_abi_version = HMR_UVERBS_ABI_VERSION,
	.match_max_abi_version = HMR_UVERBS_ABI_VERSION,
	.match_table = hmr_match_table,
	.alloc_device = hmr_device_alloc,
	.uninit_device = hmr_uninit_device,
	.alloc_context = hmr_alloc_context,
};
PROVIDER_DRIVER(hmr, hmr_dev_ops);
