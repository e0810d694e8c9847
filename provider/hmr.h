/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * hmr provider: the userspace half of the hmr software RDMA device (kmod/).
 */
#ifndef HMR_PROVIDER_H
#define HMR_PROVIDER_H

#include <pthread.h>

#include <infiniband/driver.h>
#include <infiniband/verbs.h>

#include "../kmod/uapi/hmr-abi.h"
#include "hmr_ring.h"

/* RDMA FLUSH is in the verbs API since rdma-core 45 (CMake looks for ibv_qp_ex.wr_flush). */
#ifdef HMR_HAVE_WR_FLUSH
#define HMR_QP_EX_WITH_FLUSH IBV_QP_EX_WITH_FLUSH
#else
#define HMR_QP_EX_WITH_FLUSH 0
#endif

struct hmr_device {
	struct verbs_device vdev;
	uint32_t abi_version;		/* the kernel's uverbs_abi_ver, from sysfs */
};

struct hmr_context {
	struct verbs_context vctx;
	/* wr_* opcodes the device does not execute (its kernel lacks them): refused at create */
	uint64_t missing_send_ops;
};

struct hmr_cq {
	struct verbs_cq vcq;
	pthread_spinlock_t lock;	/* serialises pollers: ring.index (the consumer index) */
	struct hmr_uring ring;
	const struct hmr_cqe *cur;	/* ibv_cq_ex: the current CQE, under lock from start_poll */
};

struct hmr_qp {
	struct verbs_qp vqp;
	pthread_spinlock_t sq_lock;	/* serialises posters: sq.index (the producer index) */
	pthread_spinlock_t rq_lock;	/* likewise for rq.index */
	struct hmr_uring sq;
	struct hmr_uring rq;
	struct ibv_qp_cap cap;		/* as the kernel reported it */
	/*
	 * The state the application last moved the QP to (RESET at creation); the kernel's own
	 * moves to ERROR are not seen here. Posting to a QP in RESET fails with EINVAL.
	 */
	enum ibv_qp_state user_state;
	/* ibv_wr_* builder state, under sq_lock from wr_start to wr_complete/wr_abort: */
	uint32_t wr_start_index;	/* sq.index at wr_start: wr_abort rewinds to it */
	int wr_err;			/* first error since wr_start, returned by wr_complete */
	struct hmr_send_wqe *wr_cur;	/* the WQE that wr_set_* fills, NULL after an error */
};

struct hmr_srq {
	struct verbs_srq vsrq;
	pthread_spinlock_t lock;	/* serialises posters: ring.index (the producer index) */
	struct hmr_uring ring;
	uint32_t max_sge;		/* as the kernel reported it */
};

struct hmr_ah {
	struct ibv_ah ibah;
	struct hmr_ud_av av;		/* copied into every UD WQE (dest_qpn/qkey per WR) */
};

/* Command and response buffers: the core's part followed by hmr's (kmod/uapi/hmr-abi.h). */
struct hmr_get_context_resp {
	struct ib_uverbs_get_context_resp ibv_resp;
	struct hmr_alloc_ucontext_resp drv;
};

struct hmr_create_cq_cmd_resp {
	struct ib_uverbs_create_cq_resp ibv_resp;
	struct hmr_create_cq_resp drv;
};

struct hmr_resize_cq_cmd_resp {
	struct ib_uverbs_resize_cq_resp ibv_resp;
	struct hmr_create_cq_resp drv;	/* the new ring */
};

struct hmr_create_cq_ex_cmd_resp {
	struct ib_uverbs_ex_create_cq_resp ibv_resp;
	struct hmr_create_cq_resp drv;
};

struct hmr_create_srq_cmd_resp {
	struct ib_uverbs_create_srq_resp ibv_resp;
	struct hmr_create_srq_resp drv;
};

struct hmr_modify_srq_cmd_full {
	struct ibv_modify_srq ibv_cmd;
	struct hmr_modify_srq_cmd drv;	/* IBV_SRQ_MAX_WR: where the new ring's info goes */
};

struct hmr_create_qp_cmd_resp {
	struct ib_uverbs_create_qp_resp ibv_resp;
	struct hmr_create_qp_resp drv;
};

/*
 * rdma-core differences (IBVERBS_PABI_VERSION from its config.h): 34 for 44.0 and 56.1,
 * 65 for 65.0. ibv_cmd_get_context() gained a struct ibv_fd_arr * argument in 57.
 */
static inline int hmr_cmd_get_context(struct verbs_context *vctx, struct ibv_get_context *cmd,
				      size_t cmd_size, struct ib_uverbs_get_context_resp *resp,
				      size_t resp_size)
{
#if IBVERBS_PABI_VERSION >= 57
	return ibv_cmd_get_context(vctx, cmd, cmd_size, NULL, resp, resp_size);
#else
	return ibv_cmd_get_context(vctx, cmd, cmd_size, resp, resp_size);
#endif
}

/*
 * ibv_cmd_create_cq_ex() gained a struct verbs_create_cq_prov_attr * argument (CQ buffers
 * passed to the kernel) in 2025; CMake looks for it in the tree's driver.h.
 */
static inline int hmr_cmd_create_cq_ex(struct ibv_context *ctx,
				       const struct ibv_cq_init_attr_ex *attr, struct verbs_cq *cq,
				       struct ibv_create_cq_ex *cmd, size_t cmd_size,
				       struct ib_uverbs_ex_create_cq_resp *resp, size_t resp_size)
{
#ifdef HMR_CREATE_CQ_EX_PROV_ATTR
	return ibv_cmd_create_cq_ex(ctx, attr, NULL, cq, cmd, cmd_size, resp, resp_size, 0);
#else
	return ibv_cmd_create_cq_ex(ctx, attr, cq, cmd, cmd_size, resp, resp_size, 0);
#endif
}

static inline struct hmr_context *to_hctx(struct ibv_context *ibctx)
{
	return container_of(ibctx, struct hmr_context, vctx.context);
}

static inline struct hmr_device *to_hdev(struct ibv_device *ibdev)
{
	return container_of(ibdev, struct hmr_device, vdev.device);
}

static inline struct hmr_cq *to_hcq(struct ibv_cq *ibcq)
{
	return container_of(ibcq, struct hmr_cq, vcq.cq);
}

static inline struct hmr_ah *to_hah(struct ibv_ah *ibah)
{
	return container_of(ibah, struct hmr_ah, ibah);
}

static inline struct hmr_qp *to_hqp(struct ibv_qp *ibqp)
{
	return container_of(ibqp, struct hmr_qp, vqp.qp);
}

static inline struct hmr_srq *to_hsrq(struct ibv_srq *ibsrq)
{
	return container_of(ibsrq, struct hmr_srq, vsrq.srq);
}

/* hmr_qp.c */
struct ibv_qp *hmr_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
struct ibv_qp *hmr_create_qp_ex(struct ibv_context *ibctx, struct ibv_qp_init_attr_ex *attr);
int hmr_destroy_qp(struct ibv_qp *ibqp);
int hmr_query_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int mask,
		 struct ibv_qp_init_attr *init);
int hmr_modify_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int mask);
int hmr_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);
int hmr_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr);
int hmr_bind_mw(struct ibv_qp *ibqp, struct ibv_mw *mw, struct ibv_mw_bind *bind);
void hmr_wqe_set_bind(struct hmr_send_wqe *wqe, struct ibv_mw *mw, uint32_t rkey,
		      const struct ibv_mw_bind_info *info);
bool hmr_qp_in_reset(struct hmr_qp *qp);
void hmr_copy_sges(struct hmr_sge *dst, const struct ibv_sge *src, int num);
int hmr_doorbell(struct ibv_qp *ibqp);
int hmr_post_recv_ring(struct hmr_uring *ring, pthread_spinlock_t *lock, uint32_t max_sge,
		       struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);

/* hmr_srq.c */
struct ibv_xrcd *hmr_open_xrcd(struct ibv_context *ibctx, struct ibv_xrcd_init_attr *attr);
int hmr_close_xrcd(struct ibv_xrcd *ibxrcd);
struct ibv_srq *hmr_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr);
struct ibv_srq *hmr_create_srq_ex(struct ibv_context *ibctx, struct ibv_srq_init_attr_ex *attr);
int hmr_modify_srq(struct ibv_srq *ibsrq, struct ibv_srq_attr *attr, int mask);
int hmr_query_srq(struct ibv_srq *ibsrq, struct ibv_srq_attr *attr);
int hmr_destroy_srq(struct ibv_srq *ibsrq);
int hmr_post_srq_recv(struct ibv_srq *ibsrq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);
int hmr_get_srq_num(struct ibv_srq *ibsrq, uint32_t *srq_num);

/* hmr_ud.c */
struct ibv_ah *hmr_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr);
int hmr_destroy_ah(struct ibv_ah *ibah);
void hmr_wqe_set_ud(struct hmr_send_wqe *wqe, struct ibv_ah *ibah, uint32_t remote_qpn,
		    uint32_t remote_qkey);
int hmr_attach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid);
int hmr_detach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid);

/* hmr_cq_ex.c */
void hmr_cq_ex_init(struct hmr_cq *cq);

/* hmr_qp_ex.c */
void hmr_qp_ex_init(struct hmr_qp *qp, uint64_t send_ops_flags);

/* hmr_cq.c */
struct ibv_cq *hmr_create_cq(struct ibv_context *ibctx, int cqe,
			     struct ibv_comp_channel *channel, int comp_vector);
struct ibv_cq_ex *hmr_create_cq_ex(struct ibv_context *ibctx, struct ibv_cq_init_attr_ex *attr);
int hmr_destroy_cq(struct ibv_cq *ibcq);
int hmr_resize_cq(struct ibv_cq *ibcq, int cqe);
void hmr_cq_clean(struct hmr_cq *cq, uint32_t qpn);
int hmr_poll_cq(struct ibv_cq *ibcq, int ne, struct ibv_wc *wc);

#endif /* HMR_PROVIDER_H */
