// SPDX-License-Identifier: GPL-2.0
/*
 * Unreliable datagram QPs and address handles.
 *
 * A UD send names its destination in the WQE (struct hmr_ud_av: GID, QPN, Q_Key, source GID
 * index), which the provider copies from its address handle, and a kernel consumer's
 * post_send from the kernel AH (hmr_kverbs.c): AHs are not looked up on the data path. The
 * GSI QP (QP1, the MAD layer's) is a UD QP of QP number 1 whose Q_Key is 0x80010000. Delivery
 * is best effort, as on the wire: a message for a QP that does not exist, is not a UD QP, has
 * another Q_Key or has no receive posted is dropped, and the sender's WR still completes
 * successfully. The receiver gets a 40-byte GRH in front of the payload (IB_WC_GRH): for an
 * IPv4-mapped GID (RoCEv2 over IPv4) 20 zero bytes then an IPv4 header, otherwise an IPv6
 * header, as RoCE devices write it; the completion's sl says which (HMR_CQE_SL_*).
 */
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <rdma/ib_cache.h>
#include <rdma/ib_mad.h>
#include <rdma/ib_user_verbs.h>

#include "hmr_dev.h"
#include "hmr_transport.h"

#define HMR_GRH_SIZE	40
#define HMR_QKEY_PRIV	0x80000000u	/* in a WQE's qkey: use the sender QP's Q_Key */

/* May run in atomic context for a kernel consumer (no RDMA_CREATE_AH_SLEEPABLE). */
int hmr_create_ah(struct ib_ah *ibah, struct rdma_ah_init_attr *init, struct ib_udata *udata)
{
	struct rdma_ah_attr *attr = init->ah_attr;
	struct hmr_ah *ah = to_hah(ibah);

	if (!(rdma_ah_get_ah_flags(attr) & IB_AH_GRH))
		return -EINVAL;	/* RoCE: every address is a GID */
	if (rdma_ah_get_port_num(attr) != HMR_PORT ||
	    attr->grh.sgid_index >= HMR_GID_TABLE_LEN)
		return -EINVAL;
	memset(&ah->av, 0, sizeof(ah->av));
	memcpy(ah->av.dgid, attr->grh.dgid.raw, sizeof(ah->av.dgid));
	ah->av.sgid_index = attr->grh.sgid_index;
	return 0;
}

int hmr_destroy_ah(struct ib_ah *ibah, u32 flags)
{
	return 0;
}

/* A UD WQE: check its opcode and address, and point @req at them. */
int hmr_ud_prepare(struct hmr_qp *qp, struct hmr_request *req, const struct hmr_send_wqe *wqe)
{
	if (wqe->opcode != IB_UVERBS_WR_SEND && wqe->opcode != IB_UVERBS_WR_SEND_WITH_IMM)
		return IB_WC_LOC_QP_OP_ERR;
	if (wqe->ud.sgid_index >= HMR_GID_TABLE_LEN ||
	    rdma_query_gid(qp->ibqp.device, HMR_PORT, wqe->ud.sgid_index, &req->ud_sgid))
		return IB_WC_LOC_QP_OP_ERR;	/* no such source GID */
	req->ud = &wqe->ud;
	return IB_WC_SUCCESS;
}

/* The sender's status of a UD (or UC) send: only its own (local) errors count. */
int hmr_ud_sent(int status)
{
	switch (status) {
	case IB_WC_LOC_PROT_ERR:
	case IB_WC_LOC_LEN_ERR:
	case IB_WC_LOC_QP_OP_ERR:
		return status;
	default:
		return IB_WC_SUCCESS;	/* delivered or dropped: the sender cannot tell */
	}
}

/* Count a MAD (HMR_MAD_*) if @qp is QP1. */
void hmr_ud_count_mad(struct hmr_qp *qp, int counter)
{
	if (qp->ibqp.qp_type == IB_QPT_GSI)
		atomic64_inc(&to_hdev(qp->ibqp.device)->wire_cnt[counter]);
}

/*
 * Take the receive WQE for a UD message of @len bytes with Q_Key @qkey (both transports).
 * Returns 0, or non-zero when the message is dropped: another Q_Key, no receive posted (or a
 * corrupt RQ), or for QP1 longer than a MAD (256 bytes), whose failed receive would put QP1,
 * the port's only way to the connection manager, in ERROR: no peer may do that. A drop at QP1
 * counts as a dropped MAD. Caller holds qp->resp_lock.
 */
int hmr_ud_take_recv(struct hmr_qp *qp, struct hmr_request *req, u32 qkey, u64 len,
		     struct hmr_recv_wqe *wqe)
{
	if (qkey == qp->attr.qkey && (qp->ibqp.qp_type != IB_QPT_GSI || len <= IB_MGMT_MAD_SIZE) &&
	    !hmr_resp_take_recv(qp, req, wqe))
		return 0;
	hmr_ud_count_mad(qp, HMR_MAD_DROPPED);
	return -EAGAIN;
}

/* A UD receive's hmr_cqe.sl: RoCEv2 over IPv4 when the sender's GID is IPv4-mapped. */
u8 hmr_ud_cqe_sl(const union ib_gid *sgid)
{
	return HMR_CQE_SL_UDP | (ipv6_addr_v4mapped((const struct in6_addr *)sgid->raw) ?
				 HMR_CQE_SL_IPV4 : HMR_CQE_SL_IPV6);
}

void hmr_ud_grh(u8 *grh, const union ib_gid *sgid, const union ib_gid *dgid, u32 len)
{
	memset(grh, 0, HMR_GRH_SIZE);
	if (ipv6_addr_v4mapped((const struct in6_addr *)sgid->raw)) {
		struct iphdr *ip = (struct iphdr *)(grh + 20);

		ip->version = 4;
		ip->ihl = 5;
		ip->tot_len = htons(len + 20 + 8);	/* IP + UDP headers + payload */
		ip->ttl = 64;
		ip->protocol = IPPROTO_UDP;
		memcpy(&ip->saddr, sgid->raw + 12, 4);
		memcpy(&ip->daddr, dgid->raw + 12, 4);
		ip->check = ip_fast_csum((u8 *)ip, ip->ihl);
	} else {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)grh;

		ip6->version = 6;
		ip6->payload_len = htons(len + 8);
		ip6->nexthdr = IPPROTO_UDP;
		ip6->hop_limit = 64;
		memcpy(&ip6->saddr, sgid->raw, 16);
		memcpy(&ip6->daddr, dgid->raw, 16);
	}
}

/* A UD message arrived for @qp. Caller holds qp->resp_lock. */
int hmr_resp_ud(struct hmr_qp *qp, struct hmr_request *req)
{
	u32 qkey = req->ud->qkey & HMR_QKEY_PRIV ? req->src->attr.qkey : req->ud->qkey;
	struct hmr_recv_wqe wqe;
	u8 grh[HMR_GRH_SIZE];

	if (hmr_ud_take_recv(qp, req, qkey, req->local->len, &wqe))
		return HMR_RESP_LOST;	/* dropped (or the RQ is corrupt: QP fatal) */
	hmr_ud_grh(grh, &req->ud_sgid, (const union ib_gid *)req->ud->dgid, req->local->len);
	/* A receiver-side failure is the receiver's: the sender cannot tell (dropped). */
	return hmr_resp_deliver(qp, req, &wqe, grh, HMR_GRH_SIZE, HMR_RESP_LOST, HMR_RESP_LOST);
}
