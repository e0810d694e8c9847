/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every difference between the kernels hmr builds for (6.1, 6.12, 7.2) lives
 * here, so the rest of kmod/ has no version conditionals. Features are detected from the
 * kernel's headers by kmod/Kbuild (HMR_HAVE_*), not guessed from version numbers.
 */
#ifndef HMR_COMPAT_H
#define HMR_COMPAT_H

#include <rdma/ib_verbs.h>
#include <rdma/uverbs_ioctl.h>

/*
 * create_cq's last argument: ib_udata in 6.1, the uverbs attribute bundle in 6.12 and later
 * (changed in 6.10). Kernel callers pass NULL either way.
 */
#ifdef HMR_HAVE_CREATE_CQ_ATTRS
#define hmr_cq_last_t	struct uverbs_attr_bundle
static inline struct ib_udata *hmr_create_cq_udata(struct uverbs_attr_bundle *attrs)
{
	return attrs ? &attrs->driver_udata : NULL;
}
#else
#define hmr_cq_last_t	struct ib_udata
static inline struct ib_udata *hmr_create_cq_udata(struct ib_udata *udata)
{
	return udata;
}
#endif

/*
 * resize_cq became resize_user_cq, its size unsigned, in 7.x (user CQs only: hmr has no other).
 */
#ifdef HMR_HAVE_RESIZE_USER_CQ
#define hmr_resize_cqe_t	u32
#define HMR_RESIZE_CQ_OP	resize_user_cq
#else
#define hmr_resize_cqe_t	int
#define HMR_RESIZE_CQ_OP	resize_cq
#endif

/* reg_user_mr gained a DMA handle (struct ib_dmah *) in 6.17: absent in 6.12, present in 7.2. */
#ifdef HMR_HAVE_IB_DMAH
#define HMR_REG_USER_MR_EXTRA_ARG	struct ib_dmah *dmah,
#define HMR_REG_USER_MR_NO_DMAH		NULL,
#else
#define HMR_REG_USER_MR_EXTRA_ARG
#define HMR_REG_USER_MR_NO_DMAH
#endif

/*
 * RDMA FLUSH and ATOMIC WRITE (IBA 1.5) arrived in 6.2: on 6.1 hmr neither advertises nor
 * accepts them (the flags are 0). Their ODP capability bits arrived later still (absent in
 * 6.12, present in 7.2).
 */
#ifdef HMR_HAVE_FLUSH
#define HMR_FLUSH_OPS			true
#else
#define HMR_FLUSH_OPS			false
#define IB_ACCESS_FLUSH_GLOBAL		0
#define IB_ACCESS_FLUSH_PERSISTENT	0
#define IB_DEVICE_FLUSH_GLOBAL		0
#define IB_DEVICE_ATOMIC_WRITE		0
#endif
#ifdef HMR_HAVE_ODP_FLUSH
#define HMR_ODP_FLUSH_CAPS	(IB_ODP_SUPPORT_FLUSH | IB_ODP_SUPPORT_ATOMIC_WRITE)
#else
#define HMR_ODP_FLUSH_CAPS	0
#endif

/* The unaligned access helpers moved from asm/ to linux/ in 6.12. */
#ifdef HMR_HAVE_LINUX_UNALIGNED
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

/* UDP tunnel sockets are set up and released by their struct sock since 7.x, not the socket. */
#include <net/udp_tunnel.h>
#ifdef HMR_HAVE_UDP_TUNNEL_SK
#define hmr_udp_tunnel_sock(sock)	((sock)->sk)
#else
#define hmr_udp_tunnel_sock(sock)	(sock)
#endif

/*
 * Yield between two chunks of DMA-engine work if the scheduler wants the CPU for another task.
 * Since 6.13 a kernel may run with lazy preemption (7.2's default), where a wakeup only sets
 * TIF_NEED_RESCHED_LAZY, cond_resched() does nothing, and a kernel thread copying a long
 * transfer keeps the CPU until the next tick (4 ms at HZ=250): the thread that unmaps the
 * memory being written waited that long. Look at both flags then.
 */
#include <linux/sched.h>
#ifdef _TIF_NEED_RESCHED_LAZY
static inline void hmr_resched(void)
{
	if (read_thread_flags() & (_TIF_NEED_RESCHED | _TIF_NEED_RESCHED_LAZY))
		schedule();
}
#else
static inline void hmr_resched(void)
{
	cond_resched();
}
#endif

/*
 * CRC-32 (IEEE 802.3, reflected, as crc32_le) at the CPU's best speed: the ICRC of every wire
 * packet goes through it, sent and received. Until 6.14 the library's crc32_le() is the
 * table-driven code (about 3 instructions a byte) on every architecture, and the carry-less
 * multiply (x86 PCLMULQDQ, about 0.2) is reached only through the crypto API's "crc32",
 * which rxe of those kernels uses too. Since 6.14 crc32_le() itself takes the fastest path.
 * Without a crypto "crc32" (or for short runs, where the set-up would cost more) the library's.
 */
#include <linux/crc32.h>
struct crypto_shash;
extern struct crypto_shash *hmr_crc32_tfm;	/* hmr_pkt.c; NULL: crc32_le() */
#ifdef HMR_CRC32_LE_GENERIC
#include <crypto/hash.h>
static inline void hmr_crc32_init(void)
{
	struct crypto_shash *tfm = crypto_alloc_shash("crc32", 0, 0);

	hmr_crc32_tfm = IS_ERR(tfm) ? NULL : tfm;
}

static inline void hmr_crc32_exit(void)
{
	if (hmr_crc32_tfm)
		crypto_free_shash(hmr_crc32_tfm);
	hmr_crc32_tfm = NULL;
}

static inline u32 hmr_crc32_le(u32 crc, const void *p, size_t len)
{
	SHASH_DESC_ON_STACK(desc, hmr_crc32_tfm);

	if (!hmr_crc32_tfm || len < 64)
		return crc32_le(crc, p, len);
	desc->tfm = hmr_crc32_tfm;
	*(u32 *)shash_desc_ctx(desc) = crc;	/* the "crc32" shash's state is the running CRC */
	if (crypto_shash_update(desc, p, len))
		return crc32_le(crc, p, len);
	return *(u32 *)shash_desc_ctx(desc);
}
#else
static inline void hmr_crc32_init(void)
{
}

static inline void hmr_crc32_exit(void)
{
}

static inline u32 hmr_crc32_le(u32 crc, const void *p, size_t len)
{
	return crc32_le(crc, p, len);
}
#endif

#endif /* HMR_COMPAT_H */
