// SPDX-License-Identifier: GPL-2.0
/*
 * RoCEv2 packet formats: the opcode table, parsing a received packet (every field is checked
 * before anything trusts it), building the headers of a packet to send, and the ICRC.
 */
#include <linux/crc32.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include "hmr_compat.h"
#include "hmr_pkt.h"

#define P_SEND	(HMR_PF_SEND | HMR_PF_PAYLOAD)
#define P_WRITE	(HMR_PF_WRITE | HMR_PF_PAYLOAD)
#define P_RRESP	(HMR_PF_RESP | HMR_PF_PAYLOAD)
#define F	HMR_PF_FIRST
#define L	HMR_PF_LAST
#define OP(fl, len) { .flags = (fl) | HMR_PF_VALID, .hdr_len = (len) }

static const struct hmr_op_info hmr_ops[256] = {
	[HMR_OP_SEND_FIRST] = OP(P_SEND | F, 12),
	[HMR_OP_SEND_MIDDLE] = OP(P_SEND, 12),
	[HMR_OP_SEND_LAST] = OP(P_SEND | L, 12),
	[HMR_OP_SEND_LAST_IMM] = OP(P_SEND | L | HMR_PF_IMM, 16),
	[HMR_OP_SEND_ONLY] = OP(P_SEND | F | L, 12),
	[HMR_OP_SEND_ONLY_IMM] = OP(P_SEND | F | L | HMR_PF_IMM, 16),
	[HMR_OP_WRITE_FIRST] = OP(P_WRITE | F | HMR_PF_RETH, 28),
	[HMR_OP_WRITE_MIDDLE] = OP(P_WRITE, 12),
	[HMR_OP_WRITE_LAST] = OP(P_WRITE | L, 12),
	[HMR_OP_WRITE_LAST_IMM] = OP(P_WRITE | L | HMR_PF_IMM, 16),
	[HMR_OP_WRITE_ONLY] = OP(P_WRITE | F | L | HMR_PF_RETH, 28),
	[HMR_OP_WRITE_ONLY_IMM] = OP(P_WRITE | F | L | HMR_PF_RETH | HMR_PF_IMM, 32),
	[HMR_OP_READ_REQUEST] = OP(HMR_PF_READ | F | L | HMR_PF_RETH, 28),
	[HMR_OP_READ_RESP_FIRST] = OP(P_RRESP | F | HMR_PF_AETH, 16),
	[HMR_OP_READ_RESP_MIDDLE] = OP(P_RRESP, 12),
	[HMR_OP_READ_RESP_LAST] = OP(P_RRESP | L | HMR_PF_AETH, 16),
	[HMR_OP_READ_RESP_ONLY] = OP(P_RRESP | F | L | HMR_PF_AETH, 16),
	[HMR_OP_ACK] = OP(HMR_PF_RESP | F | L | HMR_PF_AETH, 16),
	[HMR_OP_ATOMIC_ACK] = OP(HMR_PF_RESP | F | L | HMR_PF_AETH | HMR_PF_ATMACK, 24),
	[HMR_OP_CMP_SWAP] = OP(HMR_PF_ATOMIC | F | L | HMR_PF_ATMETH, 40),
	[HMR_OP_FETCH_ADD] = OP(HMR_PF_ATOMIC | F | L | HMR_PF_ATMETH, 40),
	[HMR_OP_SEND_LAST_INV] = OP(P_SEND | L | HMR_PF_IETH, 16),
	[HMR_OP_SEND_ONLY_INV] = OP(P_SEND | F | L | HMR_PF_IETH, 16),
	[HMR_OP_FLUSH] = OP(HMR_PF_FLUSH | F | L | HMR_PF_FETH | HMR_PF_RETH, 32),
	[HMR_OP_ATOMIC_WRITE] = OP(HMR_PF_ATOMIC_WRITE | HMR_PF_PAYLOAD | F | L | HMR_PF_RETH, 28),
	/* UC: SENDs and WRITEs, as RC's */
	[HMR_OP_UC | HMR_OP_SEND_FIRST] = OP(P_SEND | F, 12),
	[HMR_OP_UC | HMR_OP_SEND_MIDDLE] = OP(P_SEND, 12),
	[HMR_OP_UC | HMR_OP_SEND_LAST] = OP(P_SEND | L, 12),
	[HMR_OP_UC | HMR_OP_SEND_LAST_IMM] = OP(P_SEND | L | HMR_PF_IMM, 16),
	[HMR_OP_UC | HMR_OP_SEND_ONLY] = OP(P_SEND | F | L, 12),
	[HMR_OP_UC | HMR_OP_SEND_ONLY_IMM] = OP(P_SEND | F | L | HMR_PF_IMM, 16),
	[HMR_OP_UC | HMR_OP_WRITE_FIRST] = OP(P_WRITE | F | HMR_PF_RETH, 28),
	[HMR_OP_UC | HMR_OP_WRITE_MIDDLE] = OP(P_WRITE, 12),
	[HMR_OP_UC | HMR_OP_WRITE_LAST] = OP(P_WRITE | L, 12),
	[HMR_OP_UC | HMR_OP_WRITE_LAST_IMM] = OP(P_WRITE | L | HMR_PF_IMM, 16),
	[HMR_OP_UC | HMR_OP_WRITE_ONLY] = OP(P_WRITE | F | L | HMR_PF_RETH, 28),
	[HMR_OP_UC | HMR_OP_WRITE_ONLY_IMM] = OP(P_WRITE | F | L | HMR_PF_RETH | HMR_PF_IMM, 32),
	[HMR_OP_UD | HMR_OP_SEND_ONLY] = OP(P_SEND | F | L | HMR_PF_DETH, 20),
	[HMR_OP_UD | HMR_OP_SEND_ONLY_IMM] = OP(P_SEND | F | L | HMR_PF_DETH | HMR_PF_IMM, 24),
};

#undef OP
#undef P_SEND
#undef P_WRITE
#undef P_RRESP
#undef F
#undef L

const struct hmr_op_info *hmr_op_info(u8 opcode)
{
	return hmr_ops[opcode].flags ? &hmr_ops[opcode] : NULL;
}

/* The extension headers after the BTH, in wire order: read (@p from the wire) or written. */
static void hmr_pkt_ext(struct hmr_pkt *pkt, u8 *p, bool write)
{
	u32 fl = pkt->flags;

	if (fl & HMR_PF_DETH) {
		if (write) {
			put_unaligned_be32(pkt->qkey, p);
			put_unaligned_be32(pkt->src_qpn & HMR_PSN_MASK24, p + 4);
		} else {
			pkt->qkey = get_unaligned_be32(p);
			pkt->src_qpn = get_unaligned_be32(p + 4) & HMR_PSN_MASK24;
		}
		p += HMR_DETH_LEN;
	}
	if (fl & HMR_PF_FETH) {
		if (write)
			put_unaligned_be32(pkt->feth, p);
		else
			pkt->feth = get_unaligned_be32(p);
		p += HMR_FETH_LEN;
	}
	if (fl & HMR_PF_RETH) {
		if (write) {
			put_unaligned_be64(pkt->va, p);
			put_unaligned_be32(pkt->rkey, p + 8);
			put_unaligned_be32(pkt->dmalen, p + 12);
		} else {
			pkt->va = get_unaligned_be64(p);
			pkt->rkey = get_unaligned_be32(p + 8);
			pkt->dmalen = get_unaligned_be32(p + 12);
		}
		p += HMR_RETH_LEN;
	}
	if (fl & HMR_PF_ATMETH) {
		if (write) {
			put_unaligned_be64(pkt->va, p);
			put_unaligned_be32(pkt->rkey, p + 8);
			put_unaligned_be64(pkt->swap_add, p + 12);
			put_unaligned_be64(pkt->compare, p + 20);
		} else {
			pkt->va = get_unaligned_be64(p);
			pkt->rkey = get_unaligned_be32(p + 8);
			pkt->swap_add = get_unaligned_be64(p + 12);
			pkt->compare = get_unaligned_be64(p + 20);
		}
		p += HMR_ATMETH_LEN;
	}
	if (fl & HMR_PF_AETH) {
		if (write) {
			put_unaligned_be32((u32)pkt->syndrome << 24 |
					   (pkt->msn & HMR_PSN_MASK24), p);
		} else {
			pkt->syndrome = p[0];
			pkt->msn = get_unaligned_be32(p) & HMR_PSN_MASK24;
		}
		p += HMR_AETH_LEN;
	}
	if (fl & HMR_PF_ATMACK) {
		if (write)
			put_unaligned_be64(pkt->orig, p);
		else
			pkt->orig = get_unaligned_be64(p);
		p += HMR_ATMACK_LEN;
	}
	if (fl & HMR_PF_IMM) {
		if (write)
			memcpy(p, &pkt->imm, HMR_IMM_LEN);
		else
			memcpy(&pkt->imm, p, HMR_IMM_LEN);
		p += HMR_IMM_LEN;
	}
	if (fl & HMR_PF_IETH) {
		if (write)
			put_unaligned_be32(pkt->ieth, p);
		else
			pkt->ieth = get_unaligned_be32(p);
	}
}

/*
 * Parse the @len bytes at @bth (BTH through ICRC). Returns 0 or -EINVAL for anything the
 * standard does not allow: unknown opcode, transport version, partition, lengths that do not
 * add up. The ICRC is checked by the caller, which has the IP header.
 */
int hmr_pkt_parse(struct hmr_pkt *pkt, u8 *bth, u32 len)
{
	const struct hmr_op_info *info;
	u32 pad;

	memset(pkt, 0, sizeof(*pkt));
	if (len < HMR_BTH_LEN + HMR_ICRC_LEN)
		return -EINVAL;
	info = hmr_op_info(bth[0]);
	if (!info || (bth[1] & 0x0f))	/* transport header version 0 */
		return -EINVAL;
	if ((get_unaligned_be16(bth + 2) & 0x7fff) != (HMR_DEFAULT_PKEY & 0x7fff))
		return -EINVAL;
	pad = (bth[1] >> HMR_BTH_PAD_SHIFT) & 3;
	if (len < info->hdr_len + pad + HMR_ICRC_LEN)
		return -EINVAL;
	pkt->bth = bth;
	pkt->len = len;
	pkt->opcode = bth[0];
	pkt->flags = info->flags;
	pkt->hdr_len = info->hdr_len;
	pkt->solicited = bth[1] & HMR_BTH_SE;
	pkt->qpn = get_unaligned_be32(bth + 4) & HMR_PSN_MASK24;
	pkt->ackreq = bth[8] & HMR_BTH_ACKREQ;
	pkt->psn = get_unaligned_be32(bth + 8) & HMR_PSN_MASK24;
	pkt->paylen = len - info->hdr_len - pad - HMR_ICRC_LEN;
	pkt->payload = bth + info->hdr_len;
	if (pkt->paylen && !(info->flags & HMR_PF_PAYLOAD))
		return -EINVAL;
	hmr_pkt_ext(pkt, bth + HMR_BTH_LEN, false);
	return 0;
}

/* Write the BTH and extension headers of @pkt (opcode, qpn, psn, ... and paylen set). */
void hmr_pkt_build_hdrs(const struct hmr_pkt *pkt, u8 *bth)
{
	u32 pad = -pkt->paylen & 3;

	bth[0] = pkt->opcode;
	bth[1] = (pkt->solicited ? HMR_BTH_SE : 0) | pad << HMR_BTH_PAD_SHIFT;
	put_unaligned_be16(HMR_DEFAULT_PKEY, bth + 2);
	put_unaligned_be32(pkt->qpn & HMR_PSN_MASK24, bth + 4);
	put_unaligned_be32((pkt->ackreq ? (u32)HMR_BTH_ACKREQ << 24 : 0) |
			   (pkt->psn & HMR_PSN_MASK24), bth + 8);
	hmr_pkt_ext((struct hmr_pkt *)pkt, bth + HMR_BTH_LEN, true);
}

/* The crypto API's CRC-32 where the library's is the generic code (hmr_compat.h), or NULL. */
struct crypto_shash *hmr_crc32_tfm;

/*
 * The invariant CRC (IBTA A17.8.2) of a packet whose IP header is at @l3 with the UDP header
 * right after it, and whose BTH is at @bth, over @len bytes from the BTH up to the ICRC: CRC-32
 * over 8 bytes of ones (the masked LRH, folded into the seed), the IP header with its variant
 * fields as ones (IPv4: TOS, TTL, checksum; IPv6: traffic class, flow label, hop limit), UDP
 * with its checksum as ones, the BTH with resv8a/FECN/BECN as ones, and the rest.
 */
u32 hmr_icrc(const void *l3, bool ipv6, const u8 *bth, u32 len, u8 hdr_len)
{
	u8 ps[sizeof(struct ipv6hdr) + sizeof(struct udphdr) + HMR_BTH_LEN];
	u32 l3len = ipv6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	struct udphdr *udp = (struct udphdr *)(ps + l3len);
	u32 crc = 0xdebb20e3;	/* CRC-32 of the 8 bytes of ones, from the all-ones seed */

	memcpy(ps, l3, l3len + sizeof(*udp));
	if (ipv6) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)ps;

		ip6->priority = 0xf;
		memset(ip6->flow_lbl, 0xff, sizeof(ip6->flow_lbl));
		ip6->hop_limit = 0xff;
	} else {
		struct iphdr *ip = (struct iphdr *)ps;

		ip->tos = 0xff;
		ip->ttl = 0xff;
		ip->check = 0xffff;
	}
	udp->check = 0xffff;
	memcpy(ps + l3len + sizeof(*udp), bth, HMR_BTH_LEN);
	ps[l3len + sizeof(*udp) + 4] = 0xff;	/* resv8a with FECN and BECN */
	crc = crc32_le(crc, ps, l3len + sizeof(*udp) + HMR_BTH_LEN);
	crc = hmr_crc32_le(crc, bth + HMR_BTH_LEN, len - HMR_BTH_LEN);
	/*
	 * FLUSH as rxe computes it (and so checks it): its opcode table gives FLUSH no payload
	 * offset, so its "payload" starts at the BTH and runs to the ICRC, and the CRC goes over
	 * the headers (unmasked) once more. Without this, rxe drops hmr's FLUSH as corrupt and
	 * hmr rxe's (measured against rxe of 6.12 and 7.2).
	 */
	if (bth[0] == HMR_OP_FLUSH)
		crc = hmr_crc32_le(crc, bth, len);
	return ~crc;
}
