// SPDX-License-Identifier: GPL-2.0
/*
 * hmr verbs entry points: device and port queries, user contexts, protection domains, and
 * the ib_device_ops table. CQs, QPs and MRs live in hmr_cq.c, hmr_qp.c and hmr_mr.c.
 */
#include <linux/etherdevice.h>
#include <rdma/ib_mad.h>
#include <rdma/ib_verbs.h>
#include <rdma/uverbs_ioctl.h>

#include "hmr_dev.h"
#include "uapi/hmr-abi.h"

static int hmr_query_device(struct ib_device *ibdev, struct ib_device_attr *attr,
			    struct ib_udata *udata)
{
	/* 7.2 passes no udata at registration; 6.12 an empty one. */
	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;

	memset(attr, 0, sizeof(*attr));
	attr->fw_ver = 1;
	attr->sys_image_guid = ibdev->node_guid;
	attr->max_mr_size = U64_MAX;
	attr->page_size_cap = PAGE_SIZE;
	attr->vendor_id = HMR_VENDOR_ID;
	attr->vendor_part_id = 0;
	attr->hw_ver = 0;
	attr->max_qp = HMR_MAX_QP;
	attr->max_qp_wr = HMR_MAX_QP_WR;
	attr->device_cap_flags = IB_DEVICE_RC_RNR_NAK_GEN | IB_DEVICE_SYS_IMAGE_GUID |
				 IB_DEVICE_XRC | IB_DEVICE_FLUSH_GLOBAL | IB_DEVICE_ATOMIC_WRITE |
				 IB_DEVICE_SRQ_RESIZE | IB_DEVICE_MEM_WINDOW |
				 IB_DEVICE_MEM_WINDOW_TYPE_2B;
	attr->kernel_cap_flags = IBK_ALLOW_USER_UNREG | IBK_ON_DEMAND_PAGING;
	/* Every MR is mirrored: ODP only skips the registration-time VMA check (hmr_mr.c). */
	attr->odp_caps.general_caps = IB_ODP_SUPPORT | IB_ODP_SUPPORT_IMPLICIT;
	attr->odp_caps.per_transport_caps.rc_odp_caps = IB_ODP_SUPPORT_SEND |
		IB_ODP_SUPPORT_RECV | IB_ODP_SUPPORT_WRITE | IB_ODP_SUPPORT_READ |
		IB_ODP_SUPPORT_ATOMIC | IB_ODP_SUPPORT_SRQ_RECV | HMR_ODP_FLUSH_CAPS;
	attr->odp_caps.per_transport_caps.ud_odp_caps = IB_ODP_SUPPORT_SEND | IB_ODP_SUPPORT_RECV |
		IB_ODP_SUPPORT_SRQ_RECV;
	attr->odp_caps.per_transport_caps.uc_odp_caps = IB_ODP_SUPPORT_SEND | IB_ODP_SUPPORT_RECV |
		IB_ODP_SUPPORT_WRITE | IB_ODP_SUPPORT_SRQ_RECV;
	attr->odp_caps.per_transport_caps.xrc_odp_caps = IB_ODP_SUPPORT_SEND |
		IB_ODP_SUPPORT_WRITE | IB_ODP_SUPPORT_READ | IB_ODP_SUPPORT_ATOMIC |
		IB_ODP_SUPPORT_SRQ_RECV;
	attr->max_send_sge = HMR_MAX_SGE;
	attr->max_recv_sge = HMR_MAX_SGE;
	attr->max_sge_rd = HMR_MAX_SGE;
	attr->max_cq = HMR_MAX_CQ;
	attr->max_cqe = HMR_MAX_CQE;
	attr->max_mr = HMR_MAX_MR;
	attr->max_mw = HMR_MAX_MR;
	attr->max_pd = HMR_MAX_PD;
	attr->max_srq = HMR_MAX_SRQ;
	attr->max_srq_wr = HMR_MAX_SRQ_WR;
	attr->max_srq_sge = HMR_MAX_SGE;
	attr->max_qp_rd_atom = HMR_MAX_RD_ATOM;
	attr->max_qp_init_rd_atom = HMR_MAX_RD_ATOM;
	attr->max_res_rd_atom = HMR_MAX_RD_ATOM * HMR_MAX_QP;
	attr->atomic_cap = IB_ATOMIC_HCA;
	attr->max_mcast_grp = HMR_MAX_MCAST_GRP;
	attr->max_mcast_qp_attach = HMR_MAX_MCAST_QP_ATTACH;
	attr->max_total_mcast_qp_attach = HMR_MAX_TOTAL_MCAST_QP_ATTACH;
	attr->max_pkeys = 1;
	attr->max_ah = HMR_MAX_QP;
	attr->local_ca_ack_delay = 15;
	attr->max_fast_reg_page_list_len = 512;
	attr->max_pi_fast_reg_page_list_len = 0;
	return 0;
}

enum ib_port_state hmr_port_state(struct hmr_dev *hdev)
{
	struct net_device *ndev = hdev->ndev;

	return netif_running(ndev) && netif_oper_up(ndev) ? IB_PORT_ACTIVE : IB_PORT_DOWN;
}

static int hmr_query_port(struct ib_device *ibdev, u32 port, struct ib_port_attr *attr)
{
	struct hmr_dev *hdev = to_hdev(ibdev);
	int ret;

	/* The core zeroes attr before calling. */
	attr->state = hmr_port_state(hdev);
	attr->phys_state = attr->state == IB_PORT_ACTIVE ? IB_PORT_PHYS_STATE_LINK_UP :
							    IB_PORT_PHYS_STATE_DISABLED;
	attr->max_mtu = IB_MTU_4096;
	attr->active_mtu = ib_mtu_int_to_enum(READ_ONCE(hdev->ndev->mtu));
	attr->gid_tbl_len = HMR_GID_TABLE_LEN;
	attr->port_cap_flags = IB_PORT_CM_SUP;	/* QP1 carries the CM's MADs */
	attr->max_msg_sz = HMR_MAX_MSG_SIZE;
	attr->pkey_tbl_len = 1;
	attr->bad_pkey_cntr = 0;
	attr->qkey_viol_cntr = 0;
	attr->lid = 0;
	attr->sm_lid = 0;
	attr->lmc = 0;
	attr->max_vl_num = 1;
	ret = ib_get_eth_speed(ibdev, port, &attr->active_speed, &attr->active_width);
	if (ret)
		return ret;
	return 0;
}

static int hmr_get_port_immutable(struct ib_device *ibdev, u32 port,
				  struct ib_port_immutable *immutable)
{
	struct ib_port_attr attr;
	int ret;

	/*
	 * RoCEv2 only, as rxe: GID 0 is the MAC-derived default, 1.. the netdev's addresses.
	 * With MADs and the CM: the MAD layer creates QP1 through the kernel verbs, and rdma_cm
	 * connects over it.
	 */
	immutable->core_cap_flags = RDMA_CORE_PORT_IBA_ROCE_UDP_ENCAP;
	ret = ib_query_port(ibdev, port, &attr);
	if (ret)
		return ret;
	immutable->pkey_tbl_len = attr.pkey_tbl_len;
	immutable->gid_tbl_len = attr.gid_tbl_len;
	immutable->max_mad_size = IB_MGMT_MAD_SIZE;
	return 0;
}

/* Without this op the core assumes an InfiniBand link layer, whatever the port's caps say. */
static enum rdma_link_layer hmr_get_link_layer(struct ib_device *ibdev, u32 port)
{
	return IB_LINK_LAYER_ETHERNET;
}

static int hmr_query_pkey(struct ib_device *ibdev, u32 port, u16 index, u16 *pkey)
{
	if (index)
		return -EINVAL;
	*pkey = IB_DEFAULT_PKEY_FULL;
	return 0;
}

static int hmr_alloc_ucontext(struct ib_ucontext *ibuc, struct ib_udata *udata)
{
	struct hmr_alloc_ucontext_resp resp = {
		.abi_version = HMR_UVERBS_ABI_VERSION,
	};

	struct hmr_ucontext *uctx = container_of(ibuc, struct hmr_ucontext, ibuc);

	if (udata->inlen && !ib_is_udata_cleared(udata, 0, udata->inlen))
		return -EINVAL;
	mutex_init(&uctx->keep_lock);
	return ib_copy_to_udata(udata, &resp, min(udata->outlen, sizeof(resp)));
}

/* Every object of the context is gone: the mirror it kept goes too, if no MR is left on it. */
static void hmr_dealloc_ucontext(struct ib_ucontext *ibuc)
{
	struct hmr_ucontext *uctx = container_of(ibuc, struct hmr_ucontext, ibuc);

	if (uctx->keep)
		hmr_mm_put(uctx->keep);
	mutex_destroy(&uctx->keep_lock);
}

/*
 * Device removal with applications still attached (rmmod, rdma link delete): the core has
 * already destroyed every object of the context through the ordinary destroy ops and zapped
 * the mappings made by rdma_user_mmap_io. Nothing device-specific is left to cut.
 */
static void hmr_disassociate_ucontext(struct ib_ucontext *ibuc)
{
}

static int hmr_alloc_pd(struct ib_pd *ibpd, struct ib_udata *udata)
{
	return 0;
}

static int hmr_dealloc_pd(struct ib_pd *ibpd, struct ib_udata *udata)
{
	return 0;
}

/*
 * Userspace posts through the rings; a POST_SEND command without WRs (@wr NULL) is its
 * doorbell, and WRs in a command are refused (the ring is the process's to produce). Kernel
 * consumers post WRs (hmr_kverbs.c). Kernel SRQs do not exist.
 */
static int hmr_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
			 const struct ib_send_wr **bad_wr)
{
	struct hmr_qp *qp = to_hqp(ibqp);

	if (!wr)
		return hmr_qp_doorbell(qp);
	if (qp->sq.kernel)
		return hmr_kpost_send(qp, wr, bad_wr);
	*bad_wr = wr;
	return -EOPNOTSUPP;
}

static int hmr_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
			 const struct ib_recv_wr **bad_wr)
{
	struct hmr_qp *qp = to_hqp(ibqp);

	if (qp->rq.kernel)
		return hmr_kpost_recv(qp, wr, bad_wr);
	*bad_wr = wr;
	return -EOPNOTSUPP;
}

static int hmr_post_srq_recv(struct ib_srq *ibsrq, const struct ib_recv_wr *wr,
			     const struct ib_recv_wr **bad_wr)
{
	*bad_wr = wr;
	return -EOPNOTSUPP;
}

const struct ib_device_ops hmr_dev_ops = {
	.owner = THIS_MODULE,
	.driver_id = RDMA_DRIVER_UNKNOWN,
	.uverbs_abi_ver = HMR_UVERBS_ABI_VERSION,

	.advise_mr = hmr_advise_mr,
	.alloc_hw_port_stats = hmr_alloc_hw_port_stats,
	.alloc_mw = hmr_alloc_mw,
	.alloc_pd = hmr_alloc_pd,
	.alloc_ucontext = hmr_alloc_ucontext,
	.alloc_xrcd = hmr_alloc_xrcd,
	.attach_mcast = hmr_attach_mcast,
	.create_cq = hmr_create_cq,
	.create_ah = hmr_create_ah,
	.create_user_ah = hmr_create_ah,
	.create_qp = hmr_create_qp,
	.create_srq = hmr_create_srq,
	.dealloc_driver = hmr_dealloc_driver,
	.dealloc_mw = hmr_dealloc_mw,
	.dealloc_pd = hmr_dealloc_pd,
	.dealloc_ucontext = hmr_dealloc_ucontext,
	.dealloc_xrcd = hmr_dealloc_xrcd,
	.dereg_mr = hmr_dereg_mr,
	.destroy_cq = hmr_destroy_cq,
	.HMR_RESIZE_CQ_OP = hmr_resize_cq,	/* hmr_compat.h: resize_cq or resize_user_cq */
	.destroy_ah = hmr_destroy_ah,
	.destroy_qp = hmr_destroy_qp,
	.destroy_srq = hmr_destroy_srq,
	.detach_mcast = hmr_detach_mcast,
	.disassociate_ucontext = hmr_disassociate_ucontext,
	.fill_stat_mr_entry = hmr_fill_stat_mr_entry,
	.get_dma_mr = hmr_get_dma_mr,
	.get_hw_stats = hmr_get_hw_stats,
	.get_link_layer = hmr_get_link_layer,
	.get_port_immutable = hmr_get_port_immutable,
	.mmap = hmr_mmap,
	.mmap_free = hmr_mmap_free,
	.modify_qp = hmr_modify_qp,
	.modify_srq = hmr_modify_srq,
	.poll_cq = hmr_poll_cq,
	.post_recv = hmr_post_recv,
	.post_send = hmr_post_send,
	.post_srq_recv = hmr_post_srq_recv,
	.query_device = hmr_query_device,
	.query_pkey = hmr_query_pkey,
	.query_port = hmr_query_port,
	.query_qp = hmr_query_qp,
	.query_srq = hmr_query_srq,
	.reg_user_mr = hmr_reg_user_mr,
	.rereg_user_mr = hmr_rereg_user_mr,
	.req_notify_cq = hmr_req_notify_cq,

	INIT_RDMA_OBJ_SIZE(ib_ah, hmr_ah, ibah),
	INIT_RDMA_OBJ_SIZE(ib_cq, hmr_cq, ibcq),
	INIT_RDMA_OBJ_SIZE(ib_mw, hmr_mw, ibmw),
	INIT_RDMA_OBJ_SIZE(ib_pd, hmr_pd, ibpd),
	INIT_RDMA_OBJ_SIZE(ib_qp, hmr_qp, ibqp),
	INIT_RDMA_OBJ_SIZE(ib_srq, hmr_srq, ibsrq),
	INIT_RDMA_OBJ_SIZE(ib_ucontext, hmr_ucontext, ibuc),
	INIT_RDMA_OBJ_SIZE(ib_xrcd, hmr_xrcd, ibxrcd),
};
