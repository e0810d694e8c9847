/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The transport seam. The requester (hmr_req.c) turns a send WQE into a struct hmr_request
 * and hands it to a transport, which brings it to the responder (hmr_resp.c) of the QP the
 * requester is connected to (by destination GID and QP number) and returns the outcome.
 *
 * Today's only transport is loopback: the responder runs in the requester's context, on
 * any hmr device of the same kernel. A RoCEv2 wire transport would implement the same
 * operation by segmenting the request into packets (UDP port 4791, shared with rxe) and
 * waiting for the ACK/NAK or response; RNR and the retry counters keep their meaning.
 */
#ifndef HMR_TRANSPORT_H
#define HMR_TRANSPORT_H

#include "hmr_dev.h"

/* A requester's local buffers: resolved SGEs, or inline data. */
struct hmr_sgl {
	u32 num;
	struct hmr_sge sge[HMR_MAX_SGE];
	struct hmr_mr *mr[HMR_MAX_SGE];	/* referenced (hmr_mr_get) for the request */
	const u8 *inline_data;		/* instead of sge[], for inline sends */
	u64 len;			/* bytes in total */
};

struct hmr_request {
	struct hmr_qp *src;		/* requester QP; its lock is held */
	u32 opcode;			/* IB_UVERBS_WR_* (= enum ibv_wr_opcode) */
	u64 remote_addr;
	u32 rkey;
	__be32 imm;
	u32 invalidate;			/* SEND_WITH_INV: the R_Key the responder invalidates */
	bool solicited;
	u64 compare_add;
	u64 swap;
	struct hmr_sgl *local;		/* payload, or destination of READ and atomics */
	/*
	 * UD sends only (NULL otherwise): the destination, from the WQE, and the sender's GID
	 * (from the packet's IP source on the wire).
	 */
	const struct hmr_ud_av *ud;
	union ib_gid ud_sgid;
	u32 xrc_srqn;			/* XRC requests: the SRQ they are for */
	u32 src_qpn;			/* the requester's QP number (the receive completion's) */
	/* Set by the responder: the SRQ receives come from (the QP's, or the XRC SRQ named). */
	struct hmr_srq *srq;
	u8 rnr_timer;			/* out: the responder's min_rnr_timer on an RNR NAK */
};

/*
 * Outcomes besides an enum ib_wc_status for the requester's completion: no receive WQE
 * (retry after rnr_timer), no answer at all (no such QP, not receiving: retry after the
 * QP's timeout, retry_cnt times).
 */
#define HMR_RESP_RNR	(-EAGAIN)
#define HMR_RESP_LOST	(-ETIMEDOUT)

struct hmr_transport_ops {
	/* Execute @req at the peer of @req->src; returns an ib_wc_status or HMR_RESP_RNR. */
	int (*execute)(struct hmr_request *req);
	/* execute() waits for the network: never run it in the poster's system call. */
	bool deferred;
};

extern const struct hmr_transport_ops hmr_loopback_transport;

/* hmr_resp.c: pieces the wire responder shares */
int hmr_resp_remote_sgl(struct hmr_qp *qp, struct hmr_request *req, u64 len, int access,
			struct hmr_sgl *sgl);
void hmr_resp_complete_recv(struct hmr_qp *qp, struct hmr_request *req, u64 id,
			    enum ib_wc_status status, u32 opcode, u32 len);
void hmr_resp_consume_recv(struct hmr_qp *qp, struct hmr_request *req);
int hmr_resp_atomic_write(struct hmr_qp *qp, struct hmr_request *req);
int hmr_resp_flush(struct hmr_qp *qp, struct hmr_request *req);

/* hmr_resp.c */
int hmr_resp_execute(struct hmr_qp *qp, struct hmr_request *req);
int hmr_resp_take_recv(struct hmr_qp *qp, struct hmr_request *req, struct hmr_recv_wqe *wqe);
int hmr_resp_deliver(struct hmr_qp *qp, struct hmr_request *req, struct hmr_recv_wqe *wqe,
		     const u8 *hdr, u32 hdr_len, int op_err, int len_err);

/* hmr_ud.c */
int hmr_ud_prepare(struct hmr_qp *qp, struct hmr_request *req, const struct hmr_send_wqe *wqe);
int hmr_ud_sent(int status);
int hmr_resp_ud(struct hmr_qp *qp, struct hmr_request *req);
void hmr_ud_count_mad(struct hmr_qp *qp, int counter);
int hmr_ud_take_recv(struct hmr_qp *qp, struct hmr_request *req, u32 qkey, u64 len,
		     struct hmr_recv_wqe *wqe);
void hmr_ud_grh(u8 *grh, const union ib_gid *sgid, const union ib_gid *dgid, u32 len);
u8 hmr_ud_cqe_sl(const union ib_gid *sgid);

/* hmr_mcast.c */
struct hmr_pkt;
bool hmr_mcast_dest(const struct hmr_ud_av *av);
void hmr_mcast_send_local(struct hmr_request *req);
int hmr_mcast_rx(struct hmr_dev *hdev, struct sk_buff *skb, struct hmr_pkt *pkt);

/* hmr_req.c */
int hmr_sgl_copy(struct hmr_sgl *dst, struct hmr_sgl *src, u64 len, bool *dst_failed);
int hmr_sgl_rw_at(struct hmr_sgl *sgl, u64 off, void *buf, size_t len, bool to_sgl);

#endif /* HMR_TRANSPORT_H */
