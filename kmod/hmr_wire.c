// SPDX-License-Identifier: GPL-2.0
/*
 * The RoCEv2 wire transport, requester side, behind struct hmr_transport_ops.
 *
 * The requester (hmr_req.c) executes one WQE at a time; this transport turns it into request
 * packets of the QP's path MTU, sends them and waits for the outcome: the ACK of the last
 * packet, the READ response packets (copied into the WQE's buffers as they arrive), the
 * atomic ACK, or a NAK. It runs in hmr_wq's work item (process context, qp->lock held), never
 * in the poster's system call (ops.deferred): a fault on a local buffer may sleep there.
 *
 * Reliability (IBTA 9.7): 24-bit PSNs; the ack-request bit on the last packet of a message;
 * on the local ACK timeout (4.096 us * 2^timeout) the unacknowledged packets go again (go-back-N
 * from the first unacknowledged PSN), at most retry_cnt times, then IB_WC_RETRY_EXC_ERR; a
 * PSN sequence-error NAK restarts at the PSN it names without using a retry; an RNR NAK hands
 * the WQE back to hmr_req.c, which retries it after the responder's timer, rnr_retry times.
 * Remote access, invalid request and operational NAKs end the WQE with the matching status.
 *
 * Peers on an hmr device of this kernel keep the direct path (hmr_loopback.c).
 */
#include <linux/delay.h>
#include <linux/hash.h>
#include <linux/jiffies.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <net/dst_cache.h>
#include <net/ipv6.h>
#include <rdma/ib_cache.h>

#include "hmr_dev.h"
#include "hmr_transport.h"
#include "hmr_wire.h"

/*
 * Floor of the local ACK timeout. The spec lets a requester wait longer than the QP's timeout
 * asks (never shorter); a responder that faults pages, or a host whose scheduler stalls an
 * emulated guest for tens of milliseconds, answers later than 4.096 us * 2^14 (67 ms, what
 * perftest and the pingpong examples ask) now and then.
 */
static uint min_ack_timeout_ms = 250;
module_param(min_ack_timeout_ms, uint, 0644);
MODULE_PARM_DESC(min_ack_timeout_ms, "Least local ACK timeout of the wire transport, in ms (250)");
/*
 * The send window: request packets (and READ response packets asked for) not yet
 * acknowledged, at most. A burst of a whole large message overruns the receiving host's
 * socket buffers (a qemu link drops beyond ~100 datagrams) and ends in go-back-N storms; the
 * ack-request bit goes out every window/2 packets: the window slides once half of it is
 * acknowledged, so the ACK of each half lets the next half go without a round trip (asking
 * every window/4, half the ACKs moved nothing: each costs a packet on both hosts).
 */
#define HMR_WIRE_WINDOW_MAX	4096
static uint wire_window = 64;
module_param(wire_window, uint, 0644);
MODULE_PARM_DESC(wire_window, "Unacknowledged packets per QP on the wire, 4..4096 (64)");

/* Headers a packet may carry beyond the payload: IPv6, UDP, BTH + RETH + ImmDt, ICRC. */
#define HMR_WIRE_OVERHEAD	(40 + 8 + 32 + 4)

/* Responses queued for one QP's requester at most (more are dropped and counted). */
#define HMR_WIRE_RX_MAX		1024

/* What the wait for responses ended with, besides an ib_wc_status / HMR_RESP_RNR. */
#define HMR_WIRE_MORE		(-EINPROGRESS)	/* not yet: keep waiting */
#define HMR_WIRE_RESEND		(-EAGAIN - 1000)	/* a NAK asked for packets again */
#define HMR_WIRE_SLIDE		(-EAGAIN - 1001)	/* the window has room: send more */

static u32 hmr_wire_window(void)
{
	return clamp_t(u32, READ_ONCE(wire_window), 4, HMR_WIRE_WINDOW_MAX);
}

static void hmr_wire_count(struct hmr_qp *qp, int counter, u64 n)
{
	atomic64_add(n, &to_hdev(qp->ibqp.device)->wire_cnt[counter]);
}

/* The QP's payload bytes per packet: its path MTU (UD: the port's), within the netdev's. */
u32 hmr_wire_mtu(struct hmr_qp *qp)
{
	struct hmr_dev *hdev = to_hdev(qp->ibqp.device);
	u32 ndev_mtu = READ_ONCE(hdev->ndev->mtu);
	enum ib_mtu m = hmr_qp_is_ud(qp) ? IB_MTU_4096 : qp->attr.path_mtu;
	u32 mtu = ib_mtu_enum_to_int(m ? m : IB_MTU_1024);

	while (mtu > 256 && mtu + HMR_WIRE_OVERHEAD > ndev_mtu)
		mtu /= 2;
	return mtu;
}

/* UDP source port in 0xc000..0xffff from the QP number (ECMP entropy, as RoCE NICs do). */
static u16 hmr_wire_src_port(u32 qpn)
{
	return 0xc000 | hash_32(qpn, 14);
}

/* Fill @path from an address: destination GID, source GID index, IP header fields. */
int hmr_wire_path(struct hmr_qp *qp, const union ib_gid *dgid, u8 sgid_index, u8 tclass,
		  u8 hop_limit, u32 flow_label, struct hmr_path *path)
{
	union ib_gid sgid;
	bool v4;

	if (rdma_query_gid(qp->ibqp.device, HMR_PORT, sgid_index, &sgid))
		return -EINVAL;
	v4 = ipv6_addr_v4mapped((const struct in6_addr *)sgid.raw);
	if (v4 != ipv6_addr_v4mapped((const struct in6_addr *)dgid->raw))
		return -EINVAL;	/* an IPv4 source cannot reach an IPv6 destination */
	memcpy(path->sgid, sgid.raw, 16);
	memcpy(path->dgid, dgid->raw, 16);
	path->ipv6 = !v4;
	path->tclass = tclass;
	path->hop_limit = hop_limit ? hop_limit : 64;
	path->flow_label = flow_label & 0xfffff;
	path->src_port = hmr_wire_src_port(qp->ibqp.qp_num);
	return 0;
}

/* Opcode, header length and flags of @pkt from its opcode; PSN and QPN as given. */
void hmr_wire_pkt_init(struct hmr_pkt *pkt, u8 opcode, u32 qpn, u32 psn, u32 paylen)
{
	const struct hmr_op_info *info = hmr_op_info(opcode);

	pkt->opcode = opcode;
	pkt->flags = info->flags;
	pkt->hdr_len = info->hdr_len;
	pkt->qpn = qpn;
	pkt->psn = psn;
	pkt->paylen = paylen;
}

/*
 * Build and send @pkt along @path with its payload (pkt->paylen bytes) from @sgl at @off
 * (none when @sgl is NULL). Returns 0, -EFAULT when the payload could not be read (the packet
 * is not sent), or -errno from the network (the packet is lost: retransmission recovers).
 */
int hmr_wire_send(struct hmr_qp *qp, const struct hmr_path *path, struct hmr_pkt *pkt,
		  struct hmr_sgl *sgl, u64 off)
{
	struct hmr_dev *hdev = to_hdev(qp->ibqp.device);
	u32 pad = -pkt->paylen & 3;
	struct sk_buff *skb;

	skb = hmr_net_alloc(hdev, pkt->hdr_len + pkt->paylen + pad + HMR_ICRC_LEN);
	if (!skb)
		return -ENOMEM;
	hmr_pkt_build_hdrs(pkt, skb->data);
	if (pkt->paylen && hmr_sgl_rw_at(sgl, off, skb->data + pkt->hdr_len, pkt->paylen, false)) {
		kfree_skb(skb);
		return -EFAULT;
	}
	memset(skb->data + pkt->hdr_len + pkt->paylen, 0, pad);
	hmr_wire_count(qp, HMR_WIRE_SENT, 1);
	return hmr_net_xmit(hdev, path, path == &qp->wire.path ? &qp->wire.dst_cache : NULL, skb,
			    pkt->hdr_len);
}

/* One request in flight: the PSNs it uses and how far its answer got. */
struct hmr_wire_op {
	struct hmr_qp *qp;
	struct hmr_request *req;
	u32 mtu;
	u32 first;		/* PSN of its first packet */
	u32 npkts;		/* PSNs it consumes (a READ: its response packets) */
	u32 done;		/* packets acknowledged (READ: responses placed) */
	u32 sent;		/* packets sent (READ: response packets asked for) */
	u32 window;		/* at most sent - done */
	u32 read_start;		/* READ: the first packet the current READ request asked for */
	u32 read_end;		/* READ: the end of what the current READ request asks for */
};

static bool hmr_wire_is_write(u32 opcode)
{
	return opcode == IB_UVERBS_WR_RDMA_WRITE || opcode == IB_UVERBS_WR_RDMA_WRITE_WITH_IMM;
}

static bool hmr_wire_has_imm(u32 opcode)
{
	return opcode == IB_UVERBS_WR_SEND_WITH_IMM || opcode == IB_UVERBS_WR_RDMA_WRITE_WITH_IMM;
}

/* The opcode of packet @i of @n of a SEND or WRITE message. */
static u8 hmr_wire_msg_opcode(u32 opcode, u32 i, u32 n)
{
	bool write = hmr_wire_is_write(opcode), imm = hmr_wire_has_imm(opcode);
	bool inv = opcode == IB_UVERBS_WR_SEND_WITH_INV;

	if (n == 1 && inv)
		return HMR_OP_SEND_ONLY_INV;
	if (n == 1)
		return write ? (imm ? HMR_OP_WRITE_ONLY_IMM : HMR_OP_WRITE_ONLY) :
			       (imm ? HMR_OP_SEND_ONLY_IMM : HMR_OP_SEND_ONLY);
	if (i == 0)
		return write ? HMR_OP_WRITE_FIRST : HMR_OP_SEND_FIRST;
	if (i < n - 1)
		return write ? HMR_OP_WRITE_MIDDLE : HMR_OP_SEND_MIDDLE;
	if (inv)
		return HMR_OP_SEND_LAST_INV;
	return write ? (imm ? HMR_OP_WRITE_LAST_IMM : HMR_OP_WRITE_LAST) :
		       (imm ? HMR_OP_SEND_LAST_IMM : HMR_OP_SEND_LAST);
}

/* Send the packets of a SEND or WRITE message the window has room for. */
static int hmr_wire_send_msg(struct hmr_wire_op *op)
{
	struct hmr_request *req = op->req;
	struct hmr_qp *qp = op->qp;
	u64 len = req->local->len;
	u32 end = min(op->npkts, op->done + op->window), every = op->window / 2, i;
	bool uc = qp->ibqp.qp_type == IB_QPT_UC;

	for (i = op->sent; i < end; i++) {
		struct hmr_pkt pkt = {};
		u64 off = (u64)i * op->mtu;
		bool last = i == op->npkts - 1;
		int ret;

		hmr_wire_pkt_init(&pkt, hmr_wire_msg_opcode(req->opcode, i, op->npkts) |
				  (uc ? HMR_OP_UC : HMR_OP_RC), qp->attr.dest_qp_num,
				  hmr_psn_add(op->first, i), min_t(u64, op->mtu, len - off));
		pkt.ackreq = !uc && (last || i == end - 1 || (i + 1) % every == 0);
		pkt.solicited = last && req->solicited;
		pkt.imm = req->imm;
		pkt.ieth = req->invalidate;
		pkt.va = req->remote_addr;
		pkt.rkey = req->rkey;
		pkt.dmalen = len;
		ret = hmr_wire_send(qp, &qp->wire.path, &pkt, req->local, off);
		if (ret == -EFAULT || ret == -ENOMEM)
			return IB_WC_LOC_PROT_ERR;
		op->sent = i + 1;
	}
	return 0;
}

static bool hmr_wire_is_flush_op(u32 opcode)
{
	return opcode == HMR_WR_FLUSH || opcode == HMR_WR_ATOMIC_WRITE;
}

/* A FLUSH (FETH, RETH) or an ATOMIC WRITE (RETH, the 8 bytes as the WQE holds them). */
static int hmr_wire_send_flush_op(struct hmr_wire_op *op)
{
	struct hmr_request *req = op->req;
	struct hmr_qp *qp = op->qp;
	struct hmr_sgl value = { .inline_data = (const u8 *)&req->compare_add, .len = 8 };
	struct hmr_pkt pkt = {};
	bool flush = req->opcode == HMR_WR_FLUSH;

	hmr_wire_pkt_init(&pkt, flush ? HMR_OP_FLUSH : HMR_OP_ATOMIC_WRITE, qp->attr.dest_qp_num,
			  op->first, flush ? 0 : sizeof(u64));
	pkt.va = req->remote_addr;
	pkt.rkey = req->rkey;
	pkt.dmalen = flush ? req->compare_add : sizeof(u64);
	pkt.feth = HMR_FETH(req->swap & 0xff, (req->swap >> 8) & 0xff);
	pkt.ackreq = true;
	op->sent = 1;
	return hmr_wire_send(qp, &qp->wire.path, &pkt, flush ? NULL : &value, 0) == -ENOMEM ?
	       IB_WC_LOC_QP_OP_ERR : 0;
}

/*
 * Send a READ request for what is not placed yet, at most a window's worth of response
 * packets (the rest is asked for by the next READ request at the following PSN, once these
 * arrived), or an atomic request.
 */
static int hmr_wire_send_one(struct hmr_wire_op *op)
{
	struct hmr_request *req = op->req;
	struct hmr_qp *qp = op->qp;
	struct hmr_pkt pkt = {};
	u64 skip = (u64)op->done * op->mtu;

	if (op->sent != op->done)
		return 0;	/* the READ asked for is on its way */
	if (hmr_wire_is_flush_op(req->opcode))
		return hmr_wire_send_flush_op(op);
	if (req->opcode == IB_UVERBS_WR_RDMA_READ) {
		/*
		 * Asked again (timeout, gap): only what is missing of the same READ, a subset of
		 * it at its own PSNs, which the responder answers again (rxe drops any other).
		 */
		if (op->done >= op->read_end) {
			op->read_start = op->done;
			op->read_end = min(op->npkts, op->done + op->window);
			bitmap_zero(qp->wire.read_got, op->read_end - op->read_start);
		}
		op->sent = op->read_end;
		hmr_wire_pkt_init(&pkt, HMR_OP_READ_REQUEST, qp->attr.dest_qp_num,
				  hmr_psn_add(op->first, op->done), 0);
		pkt.va = req->remote_addr + skip;
		pkt.rkey = req->rkey;
		pkt.dmalen = min_t(u64, req->local->len - skip,
				   (u64)(op->read_end - op->done) * op->mtu);
	} else {
		bool cas = req->opcode == IB_UVERBS_WR_ATOMIC_CMP_AND_SWP;

		op->sent = 1;
		hmr_wire_pkt_init(&pkt, cas ? HMR_OP_CMP_SWAP : HMR_OP_FETCH_ADD,
				  qp->attr.dest_qp_num, op->first, 0);
		pkt.va = req->remote_addr;
		pkt.rkey = req->rkey;
		pkt.swap_add = cas ? req->swap : req->compare_add;
		pkt.compare = cas ? req->compare_add : 0;
	}
	pkt.ackreq = true;
	return hmr_wire_send(qp, &qp->wire.path, &pkt, NULL, 0) == -ENOMEM ?
	       IB_WC_LOC_QP_OP_ERR : 0;
}

static int hmr_wire_send_req(struct hmr_wire_op *op)
{
	u32 opcode = op->req->opcode;

	if (opcode == IB_UVERBS_WR_SEND || opcode == IB_UVERBS_WR_SEND_WITH_IMM ||
	    opcode == IB_UVERBS_WR_SEND_WITH_INV || hmr_wire_is_write(opcode))
		return hmr_wire_send_msg(op);
	return hmr_wire_send_one(op);
}

static int hmr_wire_nak_status(u8 syndrome)
{
	switch (syndrome) {
	case HMR_AETH_NAK_INV:
		return IB_WC_REM_INV_REQ_ERR;
	case HMR_AETH_NAK_ACC:
		return IB_WC_REM_ACCESS_ERR;
	default:
		return IB_WC_REM_OP_ERR;
	}
}

/* An ACK, RNR NAK or NAK for packet @d of the request (@d in range). */
static int hmr_wire_aeth(struct hmr_wire_op *op, struct hmr_pkt *pkt, u32 d)
{
	switch (HMR_AETH_TYPE(pkt->syndrome)) {
	case HMR_AETH_TYPE_ACK:
		if (pkt->opcode != HMR_OP_ACK || op->req->opcode == IB_UVERBS_WR_RDMA_READ)
			return HMR_WIRE_MORE;
		op->done = max(op->done, d + 1);
		op->sent = max(op->sent, op->done);	/* acknowledged before a go-back */
		return op->done == op->npkts ? IB_WC_SUCCESS : HMR_WIRE_MORE;
	case HMR_AETH_TYPE_RNR:
		hmr_wire_count(op->qp, HMR_WIRE_RNR_RCVD, 1);
		op->req->rnr_timer = pkt->syndrome & 0x1f;
		return HMR_RESP_RNR;
	case HMR_AETH_TYPE_NAK:
		if (pkt->syndrome != HMR_AETH_NAK_PSN)
			return hmr_wire_nak_status(pkt->syndrome);
		op->done = d;	/* everything before the PSN it names arrived */
		return HMR_WIRE_RESEND;
	default:
		return HMR_WIRE_MORE;
	}
}

/*
 * A READ response packet @d: placed where it belongs, in or out of order (a READ's buffer is
 * the application's only once it completes), and noted in the QP's read_got; done counts the
 * packets placed in a row. Reordering on the path thus costs nothing. When the last packet
 * asked for arrives and some before it did not, they were lost: ask again at once for what is
 * missing of the same READ (a subset at its own PSNs); a lost last packet waits for the timeout.
 */
static int hmr_wire_read_resp(struct hmr_wire_op *op, struct hmr_pkt *pkt, u32 d)
{
	unsigned long *got = op->qp->wire.read_got;
	u64 len = op->req->local->len, off = (u64)d * op->mtu;
	u32 want = min_t(u64, op->mtu, len - off);
	bool last = d == op->read_end - 1;

	if (d < op->done || d >= op->read_end || pkt->paylen != want ||
	    !!(pkt->flags & HMR_PF_LAST) != last)
		return HMR_WIRE_MORE;	/* placed already, not asked for, or malformed */
	if (!test_bit(d - op->read_start, got)) {
		if (want && hmr_sgl_rw_at(op->req->local, off, pkt->payload, want, true))
			return IB_WC_LOC_PROT_ERR;
		__set_bit(d - op->read_start, got);
		while (op->done < op->read_end && test_bit(op->done - op->read_start, got))
			op->done++;
	}
	if (op->done == op->npkts)
		return IB_WC_SUCCESS;
	return last && op->done < op->read_end ? HMR_WIRE_RESEND : HMR_WIRE_MORE;
}

/* One packet for the requester: what it means for the request in flight. */
static int hmr_wire_response(struct hmr_wire_op *op, struct hmr_pkt *pkt)
{
	s32 d = hmr_psn_diff(pkt->psn, op->first);
	bool read = op->req->opcode == IB_UVERBS_WR_RDMA_READ;

	if (d < 0 || d >= op->npkts)
		return HMR_WIRE_MORE;	/* for an earlier request, or not ours at all */
	if ((pkt->flags & HMR_PF_AETH) && HMR_AETH_TYPE(pkt->syndrome) != HMR_AETH_TYPE_ACK)
		return hmr_wire_aeth(op, pkt, d);
	if (pkt->opcode >= HMR_OP_READ_RESP_FIRST && pkt->opcode <= HMR_OP_READ_RESP_ONLY) {
		if (read)
			return hmr_wire_read_resp(op, pkt, d);
		/* FLUSH and ATOMIC WRITE: an empty READ response acknowledges them. */
		return hmr_wire_is_flush_op(op->req->opcode) && pkt->opcode ==
		       HMR_OP_READ_RESP_ONLY && !pkt->paylen ? IB_WC_SUCCESS : HMR_WIRE_MORE;
	}
	if (pkt->opcode == HMR_OP_ATOMIC_ACK) {
		if (op->req->opcode != IB_UVERBS_WR_ATOMIC_CMP_AND_SWP &&
		    op->req->opcode != IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD)
			return HMR_WIRE_MORE;
		return hmr_sgl_rw_at(op->req->local, 0, &pkt->orig, sizeof(u64), true) ?
		       IB_WC_LOC_PROT_ERR : IB_WC_SUCCESS;
	}
	return hmr_wire_aeth(op, pkt, d);
}

/* The local ACK timeout: 4.096 us * 2^timeout (0: none, wait a second at a time). */
static unsigned long hmr_wire_timeout(struct hmr_qp *qp)
{
	u8 t = qp->attr.timeout;
	u64 ms = t ? (4096ULL << t) / 1000000 : 1000;

	return msecs_to_jiffies(max_t(u64, ms, READ_ONCE(min_ack_timeout_ms)));
}

/* Half the window is free (a READ: all it asked for arrived) and more is to be sent. */
static bool hmr_wire_can_slide(struct hmr_wire_op *op)
{
	if (op->sent == op->npkts)
		return false;
	if (op->req->opcode == IB_UVERBS_WR_RDMA_READ)
		return op->done == op->sent;
	return op->sent - op->done <= op->window / 2;
}

/*
 * Take the responses queued for the QP until the request's outcome, or until the ACK timer
 * expires: it runs from the send, and starts again whenever a response makes progress.
 */
static int hmr_wire_collect(struct hmr_wire_op *op)
{
	struct hmr_qp *qp = op->qp;
	unsigned long deadline = jiffies + hmr_wire_timeout(qp);
	struct sk_buff *skb;

	for (;;) {
		long left = (long)(deadline - jiffies);
		u32 done = op->done;
		struct hmr_pkt pkt;
		int ret;

		skb = skb_dequeue(&qp->wire.rx);
		if (!skb) {
			if (left <= 0)
				return -ETIMEDOUT;
			wait_event_timeout(qp->wire.wait, !skb_queue_empty(&qp->wire.rx) ||
					   READ_ONCE(qp->wire.stop), left);
			if (READ_ONCE(qp->wire.stop))
				return IB_WC_WR_FLUSH_ERR;
			continue;
		}
		ret = hmr_net_parse(skb, &pkt) ? HMR_WIRE_MORE : hmr_wire_response(op, &pkt);
		kfree_skb(skb);
		if (ret != HMR_WIRE_MORE)
			return ret;
		if (op->done == done)
			continue;
		deadline = jiffies + hmr_wire_timeout(qp);
		if (hmr_wire_can_slide(op))
			return HMR_WIRE_SLIDE;
	}
}

/* Send the request, and again after timeouts and NAKs, until its outcome. */
static int hmr_wire_run(struct hmr_wire_op *op)
{
	struct hmr_qp *qp = op->qp;
	u32 done_at_timeout = 0;
	int ret;

	for (;;) {
		ret = hmr_wire_send_req(op);
		if (ret)
			return ret;
		ret = hmr_wire_collect(op);
		if (ret == HMR_WIRE_SLIDE)
			continue;
		if (ret == HMR_WIRE_RESEND) {
			hmr_wire_count(qp, HMR_WIRE_RETRANSMITS, op->sent - op->done);
			op->sent = op->done;
			continue;
		}
		if (ret != -ETIMEDOUT)
			return ret;
		hmr_wire_count(qp, HMR_WIRE_TIMEOUTS, 1);
		/* Progress since the last timeout earns the retries back (as rxe does). */
		if (op->done != done_at_timeout)
			qp->retry_left = qp->attr.retry_cnt;
		done_at_timeout = op->done;
		if (qp->attr.timeout && !qp->retry_left)
			return IB_WC_RETRY_EXC_ERR;
		if (qp->attr.timeout)
			qp->retry_left--;
		hmr_wire_count(qp, HMR_WIRE_RETRANSMITS, op->sent - op->done);
		op->sent = op->done;
	}
}

/*
 * A UC message (IBTA 9.7.2): its packets a window at a time, paced (a burst overruns the
 * receiving host's socket buffers, and nothing would send the lost ones again), and done once
 * sent: nothing is acknowledged. A QP being destroyed stops it between windows.
 */
static int hmr_wire_uc(struct hmr_wire_op *op)
{
	int ret;

	for (;;) {
		ret = hmr_wire_send_msg(op);
		if (ret || op->sent == op->npkts)
			return ret ? ret : IB_WC_SUCCESS;
		if (READ_ONCE(op->qp->wire.stop))
			return IB_WC_WR_FLUSH_ERR;
		op->done = op->sent;
		usleep_range(1000, 2000);
	}
}

/* A UD send: one packet, best effort. */
static int hmr_wire_ud(struct hmr_qp *qp, struct hmr_request *req)
{
	const struct hmr_ud_av *av = req->ud;
	struct hmr_pkt pkt = {};
	struct hmr_path path;
	int ret;

	if (hmr_wire_path(qp, (const union ib_gid *)av->dgid, av->sgid_index, 0, 0, 0, &path))
		return IB_WC_LOC_QP_OP_ERR;
	if (req->local->len > hmr_wire_mtu(qp))
		return IB_WC_LOC_LEN_ERR;
	hmr_wire_pkt_init(&pkt, HMR_OP_UD | (hmr_wire_has_imm(req->opcode) ?
			  HMR_OP_SEND_ONLY_IMM : HMR_OP_SEND_ONLY),
			  av->dest_qpn & HMR_PSN_MASK24, qp->wire.sq_psn, req->local->len);
	qp->wire.sq_psn = hmr_psn_add(qp->wire.sq_psn, 1);
	pkt.solicited = req->solicited;
	pkt.imm = req->imm;
	pkt.qkey = av->qkey & 0x80000000u ? qp->attr.qkey : av->qkey;
	pkt.src_qpn = qp->ibqp.qp_num;
	ret = hmr_wire_send(qp, &path, &pkt, req->local, 0);
	return ret == -EFAULT ? IB_WC_LOC_PROT_ERR : IB_WC_SUCCESS;
}

static u32 hmr_div_round_up_or_1(u64 len, u32 mtu)
{
	return len ? DIV_ROUND_UP_ULL(len, mtu) : 1;
}

static int hmr_wire_execute(struct hmr_request *req)
{
	struct hmr_qp *qp = req->src;
	struct hmr_wire_op op = {
		.qp = qp, .req = req, .mtu = hmr_wire_mtu(qp), .window = hmr_wire_window(),
	};
	int ret;

	if (req->ud && hmr_mcast_dest(req->ud)) {
		hmr_mcast_send_local(req);
		/* And to the group's other hosts; with no route to the group, to none of them. */
		ret = hmr_wire_ud(qp, req);
		return ret == IB_WC_LOC_QP_OP_ERR ? IB_WC_SUCCESS : ret;
	}
	if (req->ud ? hmr_gid_is_local((const union ib_gid *)req->ud->dgid) : qp->wire.local)
		return hmr_loopback_transport.execute(req);
	if (req->ud)
		return hmr_wire_ud(qp, req);
	if (qp->ibqp.qp_type != IB_QPT_RC && qp->ibqp.qp_type != IB_QPT_UC)
		return IB_WC_LOC_QP_OP_ERR;	/* XRC goes no further than this kernel */
	/* The bitmap of response PSNs received, for the QP's first READ (freed with the QP). */
	if (req->opcode == IB_UVERBS_WR_RDMA_READ && !qp->wire.read_got) {
		qp->wire.read_got = bitmap_zalloc(HMR_WIRE_WINDOW_MAX, GFP_KERNEL);
		if (!qp->wire.read_got)
			return IB_WC_LOC_QP_OP_ERR;
	}
	switch (req->opcode) {
	case IB_UVERBS_WR_SEND:
	case IB_UVERBS_WR_SEND_WITH_IMM:
	case IB_UVERBS_WR_RDMA_WRITE:
	case IB_UVERBS_WR_RDMA_WRITE_WITH_IMM:
	case IB_UVERBS_WR_RDMA_READ:
		op.npkts = hmr_div_round_up_or_1(req->local->len, op.mtu);
		break;
	case HMR_WR_FLUSH:
		if (req->compare_add > U32_MAX)
			return IB_WC_LOC_LEN_ERR;	/* the RETH's DMA length has 32 bits */
		fallthrough;
	case IB_UVERBS_WR_ATOMIC_CMP_AND_SWP:
	case IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD:
	case HMR_WR_ATOMIC_WRITE:
		op.npkts = 1;
		break;
	default:
		return IB_WC_LOC_QP_OP_ERR;
	}
	op.first = qp->wire.sq_psn;
	ret = qp->ibqp.qp_type == IB_QPT_UC ? hmr_wire_uc(&op) : hmr_wire_run(&op);
	if (ret == IB_WC_SUCCESS)
		qp->wire.sq_psn = hmr_psn_add(op.first, op.npkts);
	return ret;
}

const struct hmr_transport_ops hmr_wire_transport = {
	.execute = hmr_wire_execute,
	.deferred = true,
};

/*
 * A packet arrived for @hdev (process context): responses go to the waiting requester,
 * requests to the responder. Consumes @skb.
 */
void hmr_wire_rx(struct hmr_dev *hdev, struct sk_buff *skb, struct hmr_pkt *pkt)
{
	struct hmr_qp *qp;
	int n;

	if (pkt->qpn == HMR_MCAST_QPN && !(pkt->flags & HMR_PF_RESP)) {
		n = hmr_mcast_rx(hdev, skb, pkt);
		if (n >= 0)
			atomic64_inc(&hdev->wire_cnt[n ? HMR_WIRE_RCVD : HMR_WIRE_DROPPED]);
		return;
	}
	qp = hmr_qp_get(hdev, pkt->qpn);

	if (!qp || qp->transport != &hmr_wire_transport) {
		atomic64_inc(&hdev->wire_cnt[HMR_WIRE_DROPPED]);
		kfree_skb(skb);
		goto out;
	}
	atomic64_inc(&hdev->wire_cnt[HMR_WIRE_RCVD]);
	if (pkt->flags & HMR_PF_RESP) {
		/* Bounded: a peer may send responses nobody waits for. */
		if (skb_queue_len(&qp->wire.rx) >= HMR_WIRE_RX_MAX) {
			atomic64_inc(&hdev->wire_cnt[HMR_WIRE_DROPPED]);
			kfree_skb(skb);
			goto out;
		}
		skb_queue_tail(&qp->wire.rx, skb);
		wake_up(&qp->wire.wait);
	} else {
		hmr_wire_resp_rx(qp, skb, pkt);
	}
out:
	if (qp)
		hmr_qp_put(qp);
}

int hmr_wire_qp_init(struct hmr_qp *qp)
{
	skb_queue_head_init(&qp->wire.rx);
	init_waitqueue_head(&qp->wire.wait);
	return dst_cache_init(&qp->wire.dst_cache, GFP_KERNEL);
}

/* Back to RESET, or new PSNs: forget responses and the responder's progress. */
void hmr_wire_qp_reset(struct hmr_qp *qp)
{
	skb_queue_purge(&qp->wire.rx);
	qp->wire.sq_psn = qp->attr.sq_psn;
	qp->wire.epsn = qp->attr.rq_psn;
	qp->wire.rwqe_held = false;
	hmr_wire_resp_release(qp);
}

/* The QP is being destroyed: a requester waiting for the network gives up now. */
void hmr_wire_qp_stop(struct hmr_qp *qp)
{
	WRITE_ONCE(qp->wire.stop, true);
	wake_up(&qp->wire.wait);
}

/* Nothing runs on the QP any more: free what the transport kept. */
void hmr_wire_qp_destroy(struct hmr_qp *qp)
{
	skb_queue_purge(&qp->wire.rx);
	hmr_wire_resp_release(qp);
	kfree(qp->wire.sgl);
	kfree(qp->wire.rwqe);
	bitmap_free(qp->wire.read_got);
	dst_cache_destroy(&qp->wire.dst_cache);
}
