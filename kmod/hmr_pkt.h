/* SPDX-License-Identifier: GPL-2.0 */
/*
 * RoCEv2 packet formats (IBTA vol. 1 ch. 9 and annex A17): the base transport header and the
 * extension headers hmr sends and accepts, the opcodes, and the invariant CRC. Only layouts and
 * pure functions live here; sockets are hmr_net.c's, the state machines hmr_wire*.c's.
 *
 * A packet on the wire: IPv4 or IPv6, UDP (destination port 4791), BTH, the extension headers
 * the opcode names (in the order of struct hmr_pkt's fields), payload, 0-3 pad bytes, ICRC.
 */
#ifndef HMR_PKT_H
#define HMR_PKT_H

#include <linux/types.h>
#include <linux/skbuff.h>

#define HMR_ROCE_PORT		4791
#define HMR_BTH_LEN		12
#define HMR_RETH_LEN		16
#define HMR_AETH_LEN		4
#define HMR_ATMETH_LEN		28
#define HMR_ATMACK_LEN		8
#define HMR_IMM_LEN		4
#define HMR_IETH_LEN		4
#define HMR_DETH_LEN		8
#define HMR_FETH_LEN		4
#define HMR_ICRC_LEN		4
#define HMR_PSN_BITS		24
#define HMR_PSN_MASK24		((1u << HMR_PSN_BITS) - 1)
#define HMR_DEFAULT_PKEY	0xffff
#define HMR_GSI_QKEY		0x80010000u

/* BTH byte 1 */
#define HMR_BTH_SE		0x80
#define HMR_BTH_PAD_SHIFT	4
/* BTH byte 8 (the A bit above the PSN) */
#define HMR_BTH_ACKREQ		0x80

/* Transport service in the opcode's top 3 bits. */
#define HMR_OP_RC		0x00
#define HMR_OP_UC		0x20
#define HMR_OP_UD		0x60

enum hmr_opcode {
	HMR_OP_SEND_FIRST		= 0x00,
	HMR_OP_SEND_MIDDLE		= 0x01,
	HMR_OP_SEND_LAST		= 0x02,
	HMR_OP_SEND_LAST_IMM		= 0x03,
	HMR_OP_SEND_ONLY		= 0x04,
	HMR_OP_SEND_ONLY_IMM		= 0x05,
	HMR_OP_WRITE_FIRST		= 0x06,
	HMR_OP_WRITE_MIDDLE		= 0x07,
	HMR_OP_WRITE_LAST		= 0x08,
	HMR_OP_WRITE_LAST_IMM		= 0x09,
	HMR_OP_WRITE_ONLY		= 0x0a,
	HMR_OP_WRITE_ONLY_IMM		= 0x0b,
	HMR_OP_READ_REQUEST		= 0x0c,
	HMR_OP_READ_RESP_FIRST		= 0x0d,
	HMR_OP_READ_RESP_MIDDLE		= 0x0e,
	HMR_OP_READ_RESP_LAST		= 0x0f,
	HMR_OP_READ_RESP_ONLY		= 0x10,
	HMR_OP_ACK			= 0x11,
	HMR_OP_ATOMIC_ACK		= 0x12,
	HMR_OP_CMP_SWAP			= 0x13,
	HMR_OP_FETCH_ADD		= 0x14,
	HMR_OP_SEND_LAST_INV		= 0x16,
	HMR_OP_SEND_ONLY_INV		= 0x17,
	HMR_OP_FLUSH			= 0x1c,	/* FETH + RETH */
	HMR_OP_ATOMIC_WRITE		= 0x1d,	/* RETH + 8 bytes */
};

/* FETH (IBTA 9.3.x, as rxe sends it): placement type in bits 3-0, selectivity in 5-4. */
#define HMR_FETH_PLT(f)		((f) & 0xf)
#define HMR_FETH_SEL(f)		(((f) >> 4) & 3)
#define HMR_FETH(plt, sel)	(((plt) & 0xf) | ((sel) & 3) << 4)

/* What an opcode's packet carries (struct hmr_op_info.flags). */
enum {
	HMR_PF_RETH	= BIT(0),
	HMR_PF_AETH	= BIT(1),
	HMR_PF_ATMETH	= BIT(2),
	HMR_PF_ATMACK	= BIT(3),
	HMR_PF_IMM	= BIT(4),
	HMR_PF_IETH	= BIT(5),
	HMR_PF_DETH	= BIT(6),
	HMR_PF_PAYLOAD	= BIT(7),	/* may carry payload */
	HMR_PF_FIRST	= BIT(8),	/* starts a message */
	HMR_PF_LAST	= BIT(9),	/* ends a message */
	HMR_PF_SEND	= BIT(10),
	HMR_PF_WRITE	= BIT(11),
	HMR_PF_READ	= BIT(12),	/* READ request */
	HMR_PF_ATOMIC	= BIT(13),
	HMR_PF_RESP	= BIT(14),	/* travels responder -> requester */
	HMR_PF_VALID	= BIT(15),
	HMR_PF_FETH	= BIT(16),
	HMR_PF_FLUSH	= BIT(17),	/* FLUSH request */
	HMR_PF_ATOMIC_WRITE = BIT(18),	/* ATOMIC WRITE request */
};

struct hmr_op_info {
	u32 flags;
	u8 hdr_len;	/* BTH and extension headers */
};

/* One received or built packet, parsed: offsets into the data starting at the BTH. */
struct hmr_pkt {
	u8 *bth;		/* BTH .. ICRC, contiguous */
	u32 len;		/* bytes from BTH to ICRC inclusive */
	u8 opcode;
	u32 flags;		/* hmr_op_info.flags */
	u8 hdr_len;
	u32 qpn;		/* destination QP */
	u32 psn;
	bool ackreq;
	bool solicited;
	u32 paylen;		/* payload without pad */
	u8 *payload;
	/* Filled from the extension headers present. */
	u64 va;
	u32 rkey;
	u32 dmalen;
	u8 syndrome;
	u32 msn;
	u64 swap_add;
	u64 compare;
	u64 orig;
	__be32 imm;
	u32 ieth;
	u32 feth;
	u32 qkey;
	u32 src_qpn;
};

const struct hmr_op_info *hmr_op_info(u8 opcode);
int hmr_pkt_parse(struct hmr_pkt *pkt, u8 *bth, u32 len);
void hmr_pkt_build_hdrs(const struct hmr_pkt *pkt, u8 *bth);
u32 hmr_icrc(const void *l3, bool ipv6, const u8 *bth, u32 len_no_icrc, u8 hdr_len);

static inline u32 hmr_psn_add(u32 psn, u32 n)
{
	return (psn + n) & HMR_PSN_MASK24;
}

/* Signed distance a - b in 24-bit PSN space: < 0 when a is before b. */
static inline s32 hmr_psn_diff(u32 a, u32 b)
{
	return (s32)((a - b) << 8) >> 8;
}

/* AETH syndromes (IBTA 9.7.5.1). */
#define HMR_AETH_ACK		0x1f	/* ACK, credits "unlimited" (invalid credit count) */
#define HMR_AETH_TYPE(s)	((s) >> 5)
#define HMR_AETH_TYPE_ACK	0
#define HMR_AETH_TYPE_RNR	1
#define HMR_AETH_TYPE_NAK	3
#define HMR_AETH_RNR(t)		(0x20 | ((t) & 0x1f))
#define HMR_AETH_NAK_PSN	0x60
#define HMR_AETH_NAK_INV	0x61
#define HMR_AETH_NAK_ACC	0x62
#define HMR_AETH_NAK_OP		0x63

#endif /* HMR_PKT_H */
