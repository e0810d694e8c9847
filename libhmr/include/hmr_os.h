/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmr_os.h - the one OS seam of libhmr.
 *
 * The libhmr/src .c files include only this header (and hmr.h, which includes it).
 * In the kernel it maps the seam onto <linux/...>; in userspace it pulls
 * in libhmr/user/hmr_os_user.h, which provides the same names on top of
 * pthreads, C11-style atomics and a small epoch-based RCU.
 *
 * Beyond the kernel's own names, the seam provides:
 *   hmr_os_zalloc(size, gfp) / hmr_os_free(p)        small objects
 *   hmr_os_table_alloc(size, gfp) / hmr_os_table_free(p)  a leaf table
 *   hmr_os_table_free_rcu(p)                           ... after a grace period
 *   hmr_os_cpu_hint()                                  a small per-CPU/thread number
 *   hmr_os_access_read_lock() / _unlock()              the read side of an access's look-up
 */
#ifndef HMR_OS_H
#define HMR_OS_H

#ifdef __KERNEL__

#include <linux/atomic.h>
#include <linux/bug.h>
#include <linux/compiler.h>
#include <linux/errno.h>
#include <linux/gfp.h>
#include <linux/lockdep.h>
#include <linux/mm.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>

#define hmr_os_zalloc(size, gfp)	kzalloc(size, gfp)
#define hmr_os_free(p)			kfree(p)
#define hmr_os_cpu_hint()		raw_smp_processor_id()

/*
 * Leaf tables are exactly one page (HMR_LEVEL_BITS 9) and carry
 * no header, so a deferred free uses the rcu_head of their struct page, as
 * the kernel's own page-table code does.
 */
static inline void *hmr_os_table_alloc(size_t size, gfp_t gfp)
{
	if (WARN_ON_ONCE(size != PAGE_SIZE))
		return NULL;
	return (void *)get_zeroed_page(gfp);
}

static inline void hmr_os_table_free(void *p)
{
	free_page((unsigned long)p);
}

static inline void hmr_os_table_rcu_cb(struct rcu_head *head)
{
	__free_page(container_of(head, struct page, rcu_head));
}

static inline void hmr_os_table_free_rcu(void *p)
{
	call_rcu(&virt_to_page(p)->rcu_head, hmr_os_table_rcu_cb);
}

/*
 * The read side of an access's look-up (hmr_access_begin). Its kernel callers run with
 * preemption disabled (the DMA engine copies each chunk so, kmod/hmr_mr.c), which is an RCU
 * read-side critical section for call_rcu() and synchronize_rcu() since the RCU flavours were
 * consolidated (4.20): the tables a look-up walks are not freed under it. rcu_read_lock() and
 * rcu_read_unlock() there were two calls a chunk under PREEMPT_RCU.
 */
#define hmr_os_access_read_lock()	lockdep_assert_preemption_disabled()
#define hmr_os_access_read_unlock()	do { } while (0)

#else /* !__KERNEL__ */

#include "hmr_os_user.h"

#define hmr_os_access_read_lock()	rcu_read_lock()
#define hmr_os_access_read_unlock()	rcu_read_unlock()

#endif /* __KERNEL__ */

#endif /* HMR_OS_H */
