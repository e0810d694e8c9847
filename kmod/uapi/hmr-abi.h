/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-2-Clause) */
/*
 * hmr-abi.h: the uABI between hmr.ko and its rdma-core provider (libhmr-rdmav*.so).
 *
 * Only __u32/__u64 fields (and __u8 arrays), every struct padded explicitly to a multiple of 8 bytes, so the
 * layout is the same for every compiler and for 32- and 64-bit userspace. The kernel treats
 * everything userspace writes (commands and shared ring memory) as hostile.
 */
#ifndef HMR_ABI_H
#define HMR_ABI_H

#include <linux/types.h>

/* ib_device_ops.uverbs_abi_ver; the provider matches exactly this version. */
#define HMR_UVERBS_ABI_VERSION	3

/* Response to ibv_get_context (alloc_ucontext). */
struct hmr_alloc_ucontext_resp {
	__u32 abi_version;		/* HMR_UVERBS_ABI_VERSION */
	__u32 reserved;
};

/*
 * Shared rings. Each CQ, SQ and RQ is one ring, mapped into the process with mmap() at the
 * offset the create command returned. A ring is a struct hmr_ring_hdr followed, at offset
 * HMR_RING_HDR_SIZE, by a power-of-two number of fixed-size entries. Indices are free-running
 * __u32 counters; entry i lives in slot (i & (num - 1)).
 *
 * Ordering (both sides): the producer writes the entry, then publishes prod with a release
 * store; the consumer reads prod with an acquire load, reads the entry, then publishes cons
 * with a release store. Each side keeps its own index privately and only ever reads the
 * other side's from shared memory; the kernel checks that 0 <= prod - cons <= num before it
 * believes an index written by userspace.
 *
 *   ring   producer  consumer
 *   CQ     kernel    provider (poll_cq)
 *   SQ     provider  kernel   (post_send, then the doorbell)
 *   RQ     provider  kernel   (post_recv)
 *   SRQ    provider  kernel   (post_srq_recv; same entries as an RQ)
 */
struct hmr_ring_hdr {
	__u32 prod;			/* written by the producer only */
	__u32 pad0[15];			/* prod and cons on separate cache lines */
	__u32 cons;			/* written by the consumer only */
	__u32 pad1[15];
};

#define HMR_RING_HDR_SIZE	128

/*
 * A completion (CQ ring entry). Field values are those of struct ibv_wc / enum ibv_wc_*,
 * which equal the kernel's enum ib_wc_status / ib_wc_opcode (ib_uverbs_poll_cq copies them).
 */
struct hmr_cqe {
	__u64 wr_id;
	__u32 status;			/* enum ibv_wc_status */
	__u32 opcode;			/* enum ibv_wc_opcode */
	__u32 vendor_err;
	__u32 byte_len;
	__u32 imm_data;			/* big endian, as on the wire; or an invalidated key */
	__u32 qp_num;
	__u32 src_qp;
	__u32 wc_flags;			/* enum ibv_wc_flags: GRH, WITH_IMM, WITH_INV */
	__u8 sl;			/* ibv_wc.sl: HMR_CQE_SL_* of a UD receive, else 0 */
	__u8 reserved8[3];
	__u32 reserved;
};

/*
 * A UD receive's network header, in hmr_cqe.sl as RoCE NICs (mlx5) report it in ibv_wc.sl
 * (RoCE has no service level): UDP present (RoCEv2), then IPv6 or IPv4. UCX's ud_verbs before
 * 1.19 reads it to find the destination address in the GRH, and drops the datagram without it.
 */
#define HMR_CQE_SL_UDP		0x8
#define HMR_CQE_SL_IPV6		0x1
#define HMR_CQE_SL_IPV4		0x2

/* Response to create_cq (ibv_create_cq / ibv_create_cq_ex), and to resize_cq: the new ring. */
struct hmr_create_cq_resp {
	__u64 mmap_offset;		/* mmap() offset of the CQ ring */
	__u64 mmap_size;		/* bytes to map: header and entries, page aligned */
	__u32 num;			/* entries in the ring, a power of two >= cqe + 1 */
	__u32 reserved;
};

#define HMR_MAX_SGE_ABI		16	/* scatter/gather entries in a WQE */
#define HMR_MAX_INLINE_ABI	256	/* inline bytes in a send WQE */

struct hmr_sge {
	__u64 addr;
	__u32 length;
	__u32 lkey;
};

/*
 * The address of a UD send: the provider copies it from its AH (struct ibv_ah_attr) into
 * every UD WQE. The kernel checks sgid_index against the port's GID table.
 */
struct hmr_ud_av {
	__u8 dgid[16];			/* destination GID, network order */
	__u32 dest_qpn;			/* 24 bits */
	__u32 qkey;			/* high bit set: use the QP's own qkey */
	__u32 sgid_index;		/* source GID: index in the port's GID table */
	__u32 reserved;
};

/*
 * Opcodes and values of RDMA FLUSH and ATOMIC WRITE (enum ibv_wr_opcode, ibv_wc_opcode,
 * ibv_placement_type, ibv_selectivity_level), which older kernel headers lack. In a WQE:
 *   ATOMIC_WRITE: remote_addr, rkey; compare_add = the 8 bytes to write (host order)
 *   FLUSH: remote_addr, rkey; compare_add = length;
 *          swap = placement type (bits 0-7) | selectivity level << 8
 */
#define HMR_WR_FLUSH		14
#define HMR_WR_ATOMIC_WRITE	15
#define HMR_WC_FLUSH		8
#define HMR_WC_ATOMIC_WRITE	9
#define HMR_FLUSH_GLOBAL	1
#define HMR_FLUSH_PERSISTENT	2
#define HMR_FLUSH_RANGE		0
#define HMR_FLUSH_MR		1

/*
 * Memory windows in a WQE (enum ibv_wr_opcode's values):
 *   BIND_MW (type 1 by ibv_bind_mw, type 2 by the WR): imm_data = an R_Key of the window (its
 *            index names it), rkey = its new R_Key (same index), mr_lkey = the MR's L_Key,
 *            remote_addr = start in the MR's iova space, compare_add = length (0: type 1
 *            unbinds), swap = access (IBV_ACCESS_REMOTE_*)
 *   LOCAL_INV, SEND_WITH_INV: imm_data = the R_Key to invalidate (host order)
 * A receive completion of a SEND_WITH_INV has HMR_WC_WITH_INV and the key, host order, in
 * imm_data (ibv_wc.invalidated_rkey).
 */
#define HMR_WC_WITH_INV		(1 << 3)	/* IBV_WC_WITH_INV (the kernel's differs) */

/* A send work request (SQ ring entry). Values are those of struct ibv_send_wr. */
struct hmr_send_wqe {
	__u64 wr_id;
	__u32 opcode;			/* enum ibv_wr_opcode */
	__u32 send_flags;		/* enum ibv_send_flags */
	__u32 num_sge;			/* sge[] entries used, unless IBV_SEND_INLINE */
	__u32 imm_data;			/* big endian; also invalidate rkey */
	__u64 remote_addr;		/* RDMA and atomic operations */
	__u32 rkey;
	__u32 inline_len;		/* bytes of inline_data[], with IBV_SEND_INLINE */
	__u64 compare_add;		/* atomic: compare (CMP_AND_SWP) or add (FETCH_AND_ADD) */
	__u64 swap;
	__u32 xrc_srqn;			/* XRC sends: the SRQ at the target (24 bits) */
	__u32 mr_lkey;			/* BIND_MW: the MR the window is bound in */
	struct hmr_ud_av ud;		/* UD sends: where to (copied from the AH) */
	union {
		struct hmr_sge sge[HMR_MAX_SGE_ABI];
		__u8 inline_data[HMR_MAX_INLINE_ABI];
	};
};

/* A receive work request (RQ ring entry). */
struct hmr_recv_wqe {
	__u64 wr_id;
	__u32 num_sge;
	__u32 reserved;
	struct hmr_sge sge[HMR_MAX_SGE_ABI];
};

/*
 * Response to create_qp (ibv_create_qp / ibv_create_qp_ex). A queue the QP does not have
 * (the RQ of a QP on an SRQ or of an XRC send QP; both of an XRC receive QP, which the kernel
 * creates without this response: all zero) has num 0 and is not mapped.
 */
struct hmr_create_qp_resp {
	__u64 sq_mmap_offset;		/* SQ ring: struct hmr_send_wqe entries */
	__u64 sq_mmap_size;
	__u64 rq_mmap_offset;		/* RQ ring: struct hmr_recv_wqe entries */
	__u64 rq_mmap_size;
	__u32 sq_num;			/* entries in each ring, powers of two */
	__u32 rq_num;
};

/* Response to create_srq (ibv_create_srq / ibv_create_srq_ex): its ring of hmr_recv_wqe. */
struct hmr_create_srq_resp {
	__u64 mmap_offset;
	__u64 mmap_size;
	__u32 num;			/* entries in the ring, a power of two */
	__u32 reserved;
};

/*
 * Driver data of modify_srq (ibv_modify_srq) with IB_SRQ_MAX_WR: a new ring. That command has
 * no response, so the provider names where the kernel writes its struct hmr_create_srq_resp.
 */
struct hmr_modify_srq_cmd {
	__aligned_u64 resp_addr;	/* user address of a struct hmr_create_srq_resp */
};

#endif /* HMR_ABI_H */
