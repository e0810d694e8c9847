// SPDX-License-Identifier: GPL-2.0
/*
 * The RoCEv2 wire transport, responder side: request packets for a QP, in process context
 * (hmr_net.c's work item), under the QP's resp_lock. Payload goes into MR mirrors through the
 * DMA engine (hmr_mr_copy, hmr_sgl_rw_at), which may fault and sleep here: a packet that
 * needs a page waits for the fault in this work item, and the requester's ACK waits with it.
 * (Answering RNR while the page is faulted would free the work item for other QPs; waiting
 * keeps every packet's order and costs no retransmission.)
 *
 * PSNs (IBTA 9.7.4): a packet at the expected PSN executes; one beyond it is answered, once,
 * by a sequence-error NAK naming the expected PSN; one before it is a duplicate: a SEND or
 * WRITE is acknowledged again, a READ is answered again from memory and an atomic from the
 * original value saved for it (never executed twice), within HMR_MAX_RD_ATOM requests.
 */
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/slab.h>
#include <net/ipv6.h>

#include "hmr_dev.h"
#include "hmr_transport.h"
#include "hmr_wire.h"

/* Outcome of a request packet, besides 0 (executed) and HMR_RESP_RNR: a NAK syndrome. */
#define HMR_NAK(s)	(0x100 | (s))

static void hmr_wire_resp_count(struct hmr_qp *qp, int counter)
{
	atomic64_inc(&to_hdev(qp->ibqp.device)->wire_cnt[counter]);
}

/* An ACK, RNR NAK or NAK (@syndrome) naming @psn. */
static void hmr_wire_ack(struct hmr_qp *qp, u8 syndrome, u32 psn)
{
	struct hmr_pkt pkt = {};

	hmr_wire_pkt_init(&pkt, HMR_OP_ACK, qp->attr.dest_qp_num, psn, 0);
	pkt.syndrome = syndrome;
	pkt.msn = qp->wire.msn;
	hmr_wire_send(qp, &qp->wire.path, &pkt, NULL, 0);
}

/* Forget the message in progress (it holds no references). Caller holds resp_lock. */
void hmr_wire_resp_release(struct hmr_qp *qp)
{
	qp->wire.cur = 0;
	qp->wire.off = 0;
}

/*
 * The QP is in ERROR: a receive WQE taken off the ring for a SEND that never ended (its
 * requester gave up; on UC, kept for the next SEND) completes flushed like those still on the
 * ring. Returns 1 if there was one. Caller holds resp_lock.
 */
u32 hmr_wire_resp_flush(struct hmr_qp *qp)
{
	struct hmr_wire_qp *w = &qp->wire;
	struct hmr_request req = {
		.opcode = IB_UVERBS_WR_SEND,
		.src_qpn = qp->attr.dest_qp_num,
		.srq = qp->ibqp.srq ? to_hsrq(qp->ibqp.srq) : NULL,
	};

	if (w->cur != HMR_PF_SEND && !w->rwqe_held)
		return 0;
	hmr_resp_complete_recv(qp, &req, w->rwqe->wr_id, IB_WC_WR_FLUSH_ERR, IB_WC_RECV, 0);
	w->rwqe_held = false;
	hmr_wire_resp_release(qp);
	return 1;
}

/* The scratch buffers a message needs, allocated once per QP. */
static int hmr_wire_resp_bufs(struct hmr_wire_qp *w)
{
	if (!w->sgl)
		w->sgl = kzalloc(sizeof(*w->sgl), GFP_KERNEL);
	if (!w->rwqe)
		w->rwqe = kzalloc(sizeof(*w->rwqe), GFP_KERNEL);
	return w->sgl && w->rwqe ? 0 : -ENOMEM;
}

static void hmr_wire_req_init(struct hmr_qp *qp, struct hmr_request *req, struct hmr_pkt *pkt,
			      u32 opcode)
{
	memset(req, 0, sizeof(*req));
	req->opcode = opcode;
	req->imm = pkt->imm;
	req->solicited = pkt->solicited;
	req->src_qpn = hmr_qp_is_ud(qp) ? pkt->src_qpn : qp->attr.dest_qp_num;
	req->srq = qp->ibqp.srq ? to_hsrq(qp->ibqp.srq) : NULL;
	req->remote_addr = pkt->va;
	req->rkey = pkt->rkey;
}

/* A receive-side failure of a SEND: its receive completes in error, the QP goes to ERROR. */
static int hmr_wire_send_fail(struct hmr_qp *qp, struct hmr_request *req, int status, u8 nak)
{
	hmr_resp_complete_recv(qp, req, qp->wire.rwqe->wr_id, status, IB_WC_RECV, 0);
	hmr_wire_resp_release(qp);
	hmr_qp_error_async(qp, false);
	return HMR_NAK(nak);
}

static struct ib_pd *hmr_wire_recv_pd(struct hmr_qp *qp, struct hmr_request *req)
{
	return req->srq ? req->srq->ibsrq.pd : qp->ibqp.pd;
}

/* The first packet of a SEND: take its receive WQE and check its buffers. */
static int hmr_wire_send_first(struct hmr_qp *qp, struct hmr_request *req)
{
	struct hmr_wire_qp *w = &qp->wire;
	u32 max_sge = req->srq ? req->srq->max_sge : qp->cap.max_recv_sge;
	int ret;

	if (hmr_wire_resp_bufs(w))
		return HMR_RESP_RNR;	/* not now: the requester tries again */
	if (w->rwqe_held) {
		w->rwqe_held = false;
	} else {
		ret = hmr_resp_take_recv(qp, req, w->rwqe);
		if (ret)
			return ret == HMR_RESP_RNR ? ret : HMR_NAK(HMR_AETH_NAK_OP);
		hmr_resp_consume_recv(qp, req);
	}
	if (w->rwqe->num_sge > max_sge)
		return hmr_wire_send_fail(qp, req, IB_WC_LOC_QP_OP_ERR, HMR_AETH_NAK_OP);
	if (hmr_sgl_resolve(hmr_wire_recv_pd(qp, req), w->sgl, w->rwqe->sge, w->rwqe->num_sge,
			    IB_ACCESS_LOCAL_WRITE))
		return hmr_wire_send_fail(qp, req, IB_WC_LOC_PROT_ERR, HMR_AETH_NAK_OP);
	w->resid = w->sgl->len;	/* room in the receive buffers */
	hmr_sgl_put(w->sgl);
	w->cur = HMR_PF_SEND;
	w->off = 0;
	return 0;
}

/* Place one SEND packet's payload at the message's offset, its buffers resolved anew. */
static int hmr_wire_send_place(struct hmr_qp *qp, struct hmr_request *req, struct hmr_pkt *pkt)
{
	struct hmr_wire_qp *w = &qp->wire;
	int ret;

	if (hmr_sgl_resolve(hmr_wire_recv_pd(qp, req), w->sgl, w->rwqe->sge, w->rwqe->num_sge,
			    IB_ACCESS_LOCAL_WRITE))
		return -EACCES;	/* deregistered under the message */
	ret = hmr_sgl_rw_at(w->sgl, w->off, pkt->payload, pkt->paylen, true);
	hmr_sgl_put(w->sgl);
	return ret;
}

static int hmr_wire_resp_send(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	struct hmr_wire_qp *w = &qp->wire;
	struct hmr_request req;
	u32 len;
	int ret;

	hmr_wire_req_init(qp, &req, pkt, pkt->flags & HMR_PF_IMM ? IB_UVERBS_WR_SEND_WITH_IMM :
				  pkt->flags & HMR_PF_IETH ? IB_UVERBS_WR_SEND_WITH_INV :
				  IB_UVERBS_WR_SEND);
	req.invalidate = pkt->ieth;
	if (pkt->flags & HMR_PF_FIRST) {
		ret = hmr_wire_send_first(qp, &req);
		if (ret)
			return ret;
	}
	if (pkt->paylen > w->resid - w->off)
		return hmr_wire_send_fail(qp, &req, IB_WC_LOC_LEN_ERR, HMR_AETH_NAK_INV);
	if (pkt->paylen && hmr_wire_send_place(qp, &req, pkt))
		return hmr_wire_send_fail(qp, &req, IB_WC_LOC_PROT_ERR, HMR_AETH_NAK_OP);
	w->off += pkt->paylen;
	if (pkt->flags & HMR_PF_LAST) {
		/* The data is placed; the key dies before the completion says so. */
		if ((pkt->flags & HMR_PF_IETH) && hmr_mw_invalidate(qp, req.invalidate))
			return hmr_wire_send_fail(qp, &req, IB_WC_REM_INV_REQ_ERR,
						  HMR_AETH_NAK_INV);
		len = w->off;
		hmr_wire_resp_release(qp);
		hmr_resp_complete_recv(qp, &req, w->rwqe->wr_id, IB_WC_SUCCESS, IB_WC_RECV, len);
	}
	return 0;
}

/* The first packet of a WRITE: check the R_Key over the whole range (RETH). */
static int hmr_wire_write_first(struct hmr_qp *qp, struct hmr_request *req, struct hmr_pkt *pkt)
{
	struct hmr_wire_qp *w = &qp->wire;

	if (hmr_wire_resp_bufs(w))
		return HMR_RESP_RNR;
	if (hmr_resp_remote_sgl(qp, req, pkt->dmalen, IB_ACCESS_REMOTE_WRITE, w->sgl))
		return HMR_NAK(HMR_AETH_NAK_ACC);
	hmr_sgl_put(w->sgl);
	w->va = pkt->va;
	w->rkey = pkt->rkey;
	w->resid = pkt->dmalen;
	w->off = 0;
	w->cur = HMR_PF_WRITE;
	return 0;
}

/* Place one WRITE packet's payload at the message's address, under its R_Key again. */
static int hmr_wire_write_place(struct hmr_qp *qp, struct hmr_request *req, struct hmr_pkt *pkt)
{
	struct hmr_wire_qp *w = &qp->wire;
	int ret;

	req->remote_addr = w->va;
	req->rkey = w->rkey;
	if (hmr_resp_remote_sgl(qp, req, pkt->paylen, IB_ACCESS_REMOTE_WRITE, w->sgl))
		return -EACCES;	/* deregistered or invalidated under the message */
	ret = hmr_sgl_rw_at(w->sgl, 0, pkt->payload, pkt->paylen, true);
	hmr_sgl_put(w->sgl);
	return ret;
}

static int hmr_wire_resp_write(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	struct hmr_wire_qp *w = &qp->wire;
	bool imm = pkt->flags & HMR_PF_IMM;
	struct hmr_recv_wqe wqe;
	struct hmr_request req;
	int ret;

	hmr_wire_req_init(qp, &req, pkt, imm ? IB_UVERBS_WR_RDMA_WRITE_WITH_IMM :
			  IB_UVERBS_WR_RDMA_WRITE);
	if (pkt->flags & HMR_PF_FIRST) {
		ret = hmr_wire_write_first(qp, &req, pkt);
		if (ret)
			return ret;
	}
	if (pkt->paylen > w->resid || ((pkt->flags & HMR_PF_LAST) && pkt->paylen != w->resid)) {
		hmr_wire_resp_release(qp);
		return HMR_NAK(HMR_AETH_NAK_INV);
	}
	/* Nothing of the last packet is placed before the receive WQE an immediate needs. */
	if (imm) {
		ret = hmr_resp_take_recv(qp, &req, &wqe);
		if (ret) {
			if (pkt->flags & HMR_PF_FIRST)
				hmr_wire_resp_release(qp);	/* its retry starts it again */
			return ret == HMR_RESP_RNR ? ret : HMR_NAK(HMR_AETH_NAK_OP);
		}
	}
	if (pkt->paylen && hmr_wire_write_place(qp, &req, pkt)) {
		if (imm && req.srq)
			hmr_srq_give_back(req.srq);
		hmr_wire_resp_release(qp);
		return HMR_NAK(HMR_AETH_NAK_ACC);
	}
	w->va += pkt->paylen;
	w->resid -= pkt->paylen;
	w->off += pkt->paylen;
	if (imm) {
		hmr_resp_consume_recv(qp, &req);
		hmr_resp_complete_recv(qp, &req, wqe.wr_id, IB_WC_SUCCESS,
				       IB_WC_RECV_RDMA_WITH_IMM, w->off);
	}
	if (pkt->flags & HMR_PF_LAST)
		hmr_wire_resp_release(qp);
	return 0;
}

/* Keep a READ or atomic to answer its duplicate. */
static void hmr_wire_res_save(struct hmr_qp *qp, const struct hmr_wire_res *res)
{
	qp->wire.res[qp->wire.res_next++ % HMR_MAX_RD_ATOM] = *res;
}

static const struct hmr_wire_res *hmr_wire_res_find(struct hmr_qp *qp, u32 psn, bool atomic)
{
	u32 i;

	for (i = 0; i < HMR_MAX_RD_ATOM; i++) {
		const struct hmr_wire_res *r = &qp->wire.res[i];
		s32 d = hmr_psn_diff(psn, r->psn);

		if (r->valid && r->atomic == atomic && d >= 0 && d < r->npkts)
			return r;
	}
	return NULL;
}

static u8 hmr_wire_read_opcode(u32 i, u32 n)
{
	if (n == 1)
		return HMR_OP_READ_RESP_ONLY;
	if (i == 0)
		return HMR_OP_READ_RESP_FIRST;
	return i == n - 1 ? HMR_OP_READ_RESP_LAST : HMR_OP_READ_RESP_MIDDLE;
}

/* Answer the READ at @psn for @len bytes at @va / @rkey: its response packets. */
static int hmr_wire_read_answer(struct hmr_qp *qp, struct hmr_pkt *req_pkt, u32 *npkts)
{
	u32 mtu = hmr_wire_mtu(qp), len = req_pkt->dmalen, n = len ? DIV_ROUND_UP(len, mtu) : 1, i;
	struct hmr_request req;
	struct hmr_sgl sgl;
	int ret = 0;

	hmr_wire_req_init(qp, &req, req_pkt, IB_UVERBS_WR_RDMA_READ);
	if (hmr_resp_remote_sgl(qp, &req, len, IB_ACCESS_REMOTE_READ, &sgl))
		return HMR_NAK(HMR_AETH_NAK_ACC);
	*npkts = n;
	for (i = 0; i < n; i++) {
		struct hmr_pkt pkt = {};

		hmr_wire_pkt_init(&pkt, hmr_wire_read_opcode(i, n), qp->attr.dest_qp_num,
				  hmr_psn_add(req_pkt->psn, i), min(mtu, len - i * mtu));
		pkt.syndrome = HMR_AETH_ACK;
		pkt.msn = qp->wire.msn;
		if (hmr_wire_send(qp, &qp->wire.path, &pkt, &sgl, (u64)i * mtu) == -EFAULT) {
			ret = HMR_NAK(HMR_AETH_NAK_ACC);
			break;
		}
	}
	hmr_sgl_put(&sgl);
	return ret;
}

static int hmr_wire_resp_read(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	struct hmr_wire_res res = {
		.valid = true, .psn = pkt->psn, .va = pkt->va, .rkey = pkt->rkey,
		.len = pkt->dmalen,
	};
	u32 n = 1;
	int ret;

	qp->wire.msn++;
	ret = hmr_wire_read_answer(qp, pkt, &n);
	if (ret) {
		qp->wire.msn--;
		return ret;
	}
	res.npkts = n;
	hmr_wire_res_save(qp, &res);
	qp->wire.epsn = hmr_psn_add(qp->wire.epsn, n - 1);	/* the caller adds the last one */
	return 0;
}

/*
 * The answer to a one-packet request kept in @res: an atomic's ATOMIC ACK with the original
 * value, or for an ATOMIC WRITE or FLUSH an empty READ response, as rxe answers them.
 */
static void hmr_wire_res_answer(struct hmr_qp *qp, const struct hmr_wire_res *res)
{
	struct hmr_pkt pkt = {};

	hmr_wire_pkt_init(&pkt, res->answer, qp->attr.dest_qp_num, res->psn, 0);
	pkt.syndrome = HMR_AETH_ACK;
	pkt.msn = qp->wire.msn;
	pkt.orig = res->orig;
	hmr_wire_send(qp, &qp->wire.path, &pkt, NULL, 0);
}

static int hmr_wire_resp_atomic(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	bool cas = pkt->opcode == HMR_OP_CMP_SWAP;
	struct hmr_wire_res res = {
		.valid = true, .atomic = true, .answer = HMR_OP_ATOMIC_ACK, .psn = pkt->psn,
		.npkts = 1,
	};
	struct hmr_request req;
	struct hmr_sgl target;
	int ret;

	if (pkt->va & 7)
		return HMR_NAK(HMR_AETH_NAK_INV);
	hmr_wire_req_init(qp, &req, pkt, cas ? IB_UVERBS_WR_ATOMIC_CMP_AND_SWP :
			  IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD);
	if (hmr_resp_remote_sgl(qp, &req, sizeof(u64), IB_ACCESS_REMOTE_ATOMIC, &target))
		return HMR_NAK(HMR_AETH_NAK_ACC);
	ret = hmr_mr_atomic(target.mr[0], pkt->va, cas, cas ? pkt->compare : pkt->swap_add,
			    pkt->swap_add, &res.orig);
	hmr_sgl_put(&target);
	if (ret)
		return HMR_NAK(HMR_AETH_NAK_ACC);
	hmr_wire_res_save(qp, &res);
	qp->wire.msn++;
	hmr_wire_res_answer(qp, &res);
	return 0;
}

static int hmr_wire_nak_of(int status)
{
	if (status == IB_WC_REM_INV_REQ_ERR)
		return HMR_NAK(HMR_AETH_NAK_INV);
	return status == IB_WC_REM_ACCESS_ERR ? HMR_NAK(HMR_AETH_NAK_ACC) :
						HMR_NAK(HMR_AETH_NAK_OP);
}

/*
 * ATOMIC WRITE (8 bytes in one store, RETH length 8) and FLUSH (FETH: placement type and
 * selectivity; RETH: the range): executed as on this kernel (hmr_resp.c), kept to answer a
 * duplicate without executing it again.
 */
static int hmr_wire_resp_flush_ops(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	bool flush = pkt->flags & HMR_PF_FLUSH;
	struct hmr_wire_res res = {
		.valid = true, .atomic = true, .answer = HMR_OP_READ_RESP_ONLY, .psn = pkt->psn,
		.npkts = 1,
	};
	struct hmr_request req;
	int ret;

	if (!HMR_FLUSH_OPS)
		return HMR_NAK(HMR_AETH_NAK_INV);
	hmr_wire_req_init(qp, &req, pkt, flush ? HMR_WR_FLUSH : HMR_WR_ATOMIC_WRITE);
	if (flush) {
		req.swap = HMR_FETH_PLT(pkt->feth) | HMR_FETH_SEL(pkt->feth) << 8;
		req.compare_add = pkt->dmalen;
		ret = hmr_resp_flush(qp, &req);
	} else {
		if (pkt->paylen != sizeof(u64) || pkt->dmalen != sizeof(u64))
			return HMR_NAK(HMR_AETH_NAK_INV);
		memcpy(&req.compare_add, pkt->payload, sizeof(u64));	/* bytes as sent */
		ret = hmr_resp_atomic_write(qp, &req);
	}
	if (ret != IB_WC_SUCCESS)
		return hmr_wire_nak_of(ret);
	hmr_wire_res_save(qp, &res);
	qp->wire.msn++;
	hmr_wire_res_answer(qp, &res);
	return 0;
}

/* A request packet at a PSN already executed. */
static void hmr_wire_resp_dup(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	const struct hmr_wire_res *res;
	u32 n;

	hmr_wire_resp_count(qp, HMR_WIRE_DUP);
	if (pkt->flags & (HMR_PF_SEND | HMR_PF_WRITE)) {
		if (pkt->ackreq)
			hmr_wire_ack(qp, HMR_AETH_ACK, hmr_psn_add(qp->wire.epsn, HMR_PSN_MASK24));
		return;
	}
	res = hmr_wire_res_find(qp, pkt->psn, pkt->flags & (HMR_PF_ATOMIC | HMR_PF_FLUSH |
							     HMR_PF_ATOMIC_WRITE));
	if (!res)
		return;		/* older than the resources kept: dropped */
	if (res->atomic)
		hmr_wire_res_answer(qp, res);
	else
		hmr_wire_read_answer(qp, pkt, &n);	/* its RETH: what is still missing */
}

/* The opcode may follow what came before (IBTA 9.8.3.1): continue, or start, a message. */
static bool hmr_wire_seq_ok(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	if (qp->wire.cur)
		return !(pkt->flags & HMR_PF_FIRST) && (pkt->flags & qp->wire.cur);
	return pkt->flags & HMR_PF_FIRST;
}

static int hmr_wire_resp_exec(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	if (!hmr_wire_seq_ok(qp, pkt)) {
		hmr_wire_resp_release(qp);
		return HMR_NAK(HMR_AETH_NAK_INV);
	}
	if (pkt->flags & HMR_PF_SEND)
		return hmr_wire_resp_send(qp, pkt);
	if (pkt->flags & HMR_PF_WRITE)
		return hmr_wire_resp_write(qp, pkt);
	if (pkt->flags & HMR_PF_READ)
		return hmr_wire_resp_read(qp, pkt);
	if (pkt->flags & HMR_PF_ATOMIC)
		return hmr_wire_resp_atomic(qp, pkt);
	if (pkt->flags & (HMR_PF_FLUSH | HMR_PF_ATOMIC_WRITE))
		return hmr_wire_resp_flush_ops(qp, pkt);
	return HMR_NAK(HMR_AETH_NAK_INV);
}

static void hmr_wire_resp_rc(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	struct hmr_wire_qp *w = &qp->wire;
	s32 d = hmr_psn_diff(pkt->psn, w->epsn);
	int ret;

	if (d > 0) {
		if (!w->nak_sent) {
			w->nak_sent = true;
			hmr_wire_resp_count(qp, HMR_WIRE_SEQ_ERR);
			hmr_wire_ack(qp, HMR_AETH_NAK_PSN, w->epsn);
		}
		return;
	}
	if (d < 0) {
		hmr_wire_resp_dup(qp, pkt);
		return;
	}
	w->nak_sent = false;
	ret = hmr_wire_resp_exec(qp, pkt);
	if (ret == HMR_RESP_RNR) {
		hmr_wire_resp_count(qp, HMR_WIRE_RNR_SENT);
		hmr_wire_ack(qp, HMR_AETH_RNR(qp->attr.min_rnr_timer), pkt->psn);
		return;
	}
	if (ret) {
		hmr_wire_resp_count(qp, HMR_WIRE_NAK_SENT);
		hmr_wire_ack(qp, ret & 0xff, pkt->psn);
		return;
	}
	w->epsn = hmr_psn_add(w->epsn, 1);
	if ((pkt->flags & (HMR_PF_SEND | HMR_PF_WRITE)) && (pkt->flags & HMR_PF_LAST))
		w->msn++;
	if ((pkt->flags & (HMR_PF_SEND | HMR_PF_WRITE)) && pkt->ackreq)
		hmr_wire_ack(qp, HMR_AETH_ACK, pkt->psn);
}

/*
 * A UC packet (IBTA 9.7.4.1.?): nothing is answered. A PSN other than the expected one means
 * packets were lost: the message in progress is dropped, and the packet starts a new one if
 * it can. A message the responder cannot take (no receive WQE, a bad R_Key) is dropped too;
 * the receive buffer's own errors end the QP as on RC.
 */
static void hmr_wire_uc_drop(struct hmr_qp *qp)
{
	/* A SEND's receive WQE is kept for the next SEND, as if this one never came. */
	if (qp->wire.cur == HMR_PF_SEND)
		qp->wire.rwqe_held = true;
	hmr_wire_resp_release(qp);
}

static void hmr_wire_resp_uc(struct hmr_qp *qp, struct hmr_pkt *pkt)
{
	struct hmr_wire_qp *w = &qp->wire;

	if (pkt->psn != w->epsn) {
		hmr_wire_resp_count(qp, HMR_WIRE_SEQ_ERR);
		hmr_wire_uc_drop(qp);
	} else if (w->cur && (pkt->flags & HMR_PF_FIRST)) {
		hmr_wire_uc_drop(qp);	/* a new message before the last one ended */
	}
	w->epsn = hmr_psn_add(pkt->psn, 1);
	if (hmr_wire_resp_exec(qp, pkt)) {
		hmr_wire_resp_count(qp, HMR_WIRE_DROPPED);
		hmr_wire_uc_drop(qp);
	} else if (pkt->flags & HMR_PF_LAST) {
		w->msn++;
	}
}

/* A UD datagram: Q_Key checked, the GRH made from the IP header, best effort. */
static void hmr_wire_resp_ud(struct hmr_qp *qp, struct sk_buff *skb, struct hmr_pkt *pkt)
{
	struct hmr_sgl payload = { .inline_data = pkt->payload, .len = pkt->paylen };
	union ib_gid sgid, dgid;
	struct hmr_recv_wqe wqe;
	struct hmr_request req;
	u8 grh[40];

	hmr_wire_req_init(qp, &req, pkt, pkt->flags & HMR_PF_IMM ? IB_UVERBS_WR_SEND_WITH_IMM :
			  IB_UVERBS_WR_SEND);
	req.local = &payload;
	if (hmr_ud_take_recv(qp, &req, pkt->qkey, pkt->paylen, &wqe))
		return;
	if (skb->protocol == htons(ETH_P_IP)) {
		ipv6_addr_set_v4mapped(ip_hdr(skb)->saddr, (struct in6_addr *)sgid.raw);
		ipv6_addr_set_v4mapped(ip_hdr(skb)->daddr, (struct in6_addr *)dgid.raw);
	} else {
		memcpy(sgid.raw, &ipv6_hdr(skb)->saddr, 16);
		memcpy(dgid.raw, &ipv6_hdr(skb)->daddr, 16);
	}
	hmr_ud_grh(grh, &sgid, &dgid, pkt->paylen);
	req.ud_sgid = sgid;	/* the completion's sl */
	hmr_resp_deliver(qp, &req, &wqe, grh, sizeof(grh), HMR_RESP_LOST, HMR_RESP_LOST);
}

/* RC packets come from the QP's peer only: the IP source must be its destination GID. */
static bool hmr_wire_from_peer(struct hmr_qp *qp, struct sk_buff *skb)
{
	const u8 *dgid = qp->wire.path.dgid;

	if (skb->protocol == htons(ETH_P_IP))
		return !qp->wire.path.ipv6 && !memcmp(&ip_hdr(skb)->saddr, dgid + 12, 4);
	return qp->wire.path.ipv6 && !memcmp(&ipv6_hdr(skb)->saddr, dgid, 16);
}

/* A request packet for @qp. Consumes @skb. */
void hmr_wire_resp_rx(struct hmr_qp *qp, struct sk_buff *skb, struct hmr_pkt *pkt)
{
	u8 service = pkt->opcode & 0xe0;
	enum ib_qp_state state;

	mutex_lock(&qp->resp_lock);
	state = READ_ONCE(qp->state);
	if (state != IB_QPS_RTR && state != IB_QPS_RTS && state != IB_QPS_SQD)
		goto drop;
	if (hmr_qp_is_ud(qp) && service == HMR_OP_UD)
		hmr_wire_resp_ud(qp, skb, pkt);
	else if (qp->ibqp.qp_type == IB_QPT_RC && service == HMR_OP_RC &&
		 hmr_wire_from_peer(qp, skb))
		hmr_wire_resp_rc(qp, pkt);
	else if (qp->ibqp.qp_type == IB_QPT_UC && service == HMR_OP_UC &&
		 hmr_wire_from_peer(qp, skb))
		hmr_wire_resp_uc(qp, pkt);
	else
		goto drop;
	mutex_unlock(&qp->resp_lock);
	kfree_skb(skb);
	return;
drop:
	mutex_unlock(&qp->resp_lock);
	hmr_wire_resp_count(qp, HMR_WIRE_DROPPED);
	kfree_skb(skb);
}
