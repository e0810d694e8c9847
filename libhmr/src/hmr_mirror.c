// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_mirror.c - the mirror protocol: populate under a sequence check,
 * invalidate + fence, and the chunked access API of the DMA engine.
 *
 * In-flight accesses live in m->slots[]. A slot word is
 *	busy:	pfn << 28 | npages << 8 | gen << 1 | 1
 *	idle:	gen << 1
 * claimed by cmpxchg (a full barrier) before the entries are read, released
 * with a new generation so a fence never mistakes a later access in the same
 * slot for the one it waits for.
 *
 * Rule "claim before read, clear before scan": an access publishes its range
 * and then reads entries; an invalidation clears entries, issues smp_mb(),
 * then reads the slots. One of the two sees the other: either the fence
 * waits for the access, or the access finds the entries missing.
 */
#include "hmr_table.h"

#define HMR_SLOT_BUSY		1UL
#define HMR_SLOT_GEN		0xfeUL
#define HMR_SLOT_PFN_SHIFT	28
#define HMR_SLOT_NR_SHIFT	8
#define HMR_SLOT_NR_MASK	0xfffffUL

int hmr_mirror_init(struct hmr_mirror *m, const struct hmr_mirror_ops *ops,
		    void *priv)
{
	unsigned int i;

	BUILD_BUG_ON(HMR_CHUNK_PAGES > HMR_SLOT_NR_MASK);
	BUILD_BUG_ON(HMR_VA_BITS - HMR_PAGE_SHIFT + HMR_SLOT_PFN_SHIFT > 64);
	if (!ops->present || !ops->seq_stale ||
	    !ops->huge || (ops->huge & (ops->huge - 1)) || ops->huge > 4)
		return -EINVAL;
	if (!ops->encode &&
	    ((ops->present | ops->writable | ops->huge) & ops->addr_mask))
		return -EINVAL;
	m->present = ops->present;
	m->writable = ops->writable;
	m->huge = ops->huge;
	m->addr_mask = ops->addr_mask;
	m->ops = ops;
	m->priv = priv;
	for (i = 0; i < HMR_ACCESS_SLOTS; i++)
		m->slots[i] = 0;
	atomic_set(&m->fence_waiters, 0);
	init_waitqueue_head(&m->fence_wq);
	atomic_long_set(&m->stat.populates, 0);
	atomic_long_set(&m->stat.populated_pages, 0);
	atomic_long_set(&m->stat.populate_stale, 0);
	atomic_long_set(&m->stat.invalidations, 0);
	atomic_long_set(&m->stat.invalidate_busy, 0);
	atomic_long_set(&m->stat.fence_waits, 0);
	atomic_long_set(&m->stat.access_faults, 0);
	atomic_long_set(&m->stat.tables, 0);
	return hmr_table_init(m);
}

/* The caller guarantees no populate, invalidate or access is running. */
void hmr_mirror_destroy(struct hmr_mirror *m)
{
	hmr_table_destroy(m);
}

int hmr_mirror_populate(struct hmr_mirror *m, unsigned long start,
			unsigned long npages, const u64 *pfns, unsigned long seq)
{
	if (!hmr_range_ok(start, npages))
		return -EINVAL;
	return hmr_table_populate(m, start, npages, pfns, seq);
}

static bool hmr_slot_overlaps(unsigned long v, unsigned long pfn0,
			      unsigned long pfn1)
{
	unsigned long pfn = v >> HMR_SLOT_PFN_SHIFT;
	unsigned long n = (v >> HMR_SLOT_NR_SHIFT) & HMR_SLOT_NR_MASK;

	return (v & HMR_SLOT_BUSY) && pfn < pfn1 && pfn + n > pfn0;
}

/*
 * Wait until no access that overlaps pages [pfn0, pfn1) and began before us is in flight.
 * *@found: whether one was.
 */
static int hmr_fence(struct hmr_mirror *m, unsigned long pfn0,
		     unsigned long pfn1, bool blockable, bool *found)
{
	unsigned int i;
	unsigned long v;

	*found = false;
	smp_mb();	/* clear before scan */
	for (i = 0; i < HMR_ACCESS_SLOTS; i++) {
		v = READ_ONCE(m->slots[i]);
		if (!hmr_slot_overlaps(v, pfn0, pfn1))
			continue;
		*found = true;
		if (!blockable) {
			atomic_long_inc(&m->stat.invalidate_busy);
			return -EAGAIN;
		}
		atomic_inc(&m->fence_waiters);
		/* pairs with the smp_mb() in access_end: it sees us, or we see its release */
		smp_mb__after_atomic();
		wait_event(m->fence_wq, READ_ONCE(m->slots[i]) != v);
		atomic_dec(&m->fence_waiters);
		atomic_long_inc(&m->stat.fence_waits);
	}
	return 0;
}

/*
 * Only an invalidation that found something of the mirror (an entry, or an access in flight)
 * counts: one mirror follows a whole address space, most of whose changes it never mirrored.
 */
int hmr_mirror_invalidate(struct hmr_mirror *m, unsigned long start,
			  unsigned long end, bool blockable)
{
	unsigned long cleared;
	bool found;
	int ret;

	if (start >= end || end > HMR_VA_END)
		return -EINVAL;
	start &= ~(HMR_PAGE_SIZE - 1);
	end = (end + HMR_PAGE_SIZE - 1) & ~(HMR_PAGE_SIZE - 1);
	smp_mb();	/* the notifier's new sequence before our table reads */
	cleared = hmr_table_clear(m, start, end);
	ret = hmr_fence(m, start >> HMR_PAGE_SHIFT, end >> HMR_PAGE_SHIFT,
			blockable, &found);
	if (cleared || found)
		atomic_long_inc(&m->stat.invalidations);
	return ret;
}

/* Claim an idle slot for pages [pfn, pfn + n): returns its index or -EBUSY. */
static int hmr_slot_claim(struct hmr_mirror *m, unsigned long pfn,
			  unsigned long n)
{
	unsigned int k, i, hint = hmr_os_cpu_hint();
	unsigned long old, busy;

	for (k = 0; k < HMR_ACCESS_SLOTS; k++) {
		i = (hint + k) % HMR_ACCESS_SLOTS;
		old = READ_ONCE(m->slots[i]);
		if (old & HMR_SLOT_BUSY)
			continue;
		busy = pfn << HMR_SLOT_PFN_SHIFT | n << HMR_SLOT_NR_SHIFT |
		       (old & HMR_SLOT_GEN) | HMR_SLOT_BUSY;
		if (cmpxchg(&m->slots[i], old, busy) == old)
			return i;
	}
	return -EBUSY;
}

static void hmr_slot_release(struct hmr_mirror *m, unsigned int i)
{
	unsigned long v = READ_ONCE(m->slots[i]);

	/* publish that the chunk is over: a fence waiting on this slot may proceed */
	smp_store_release(&m->slots[i], (v + 2) & HMR_SLOT_GEN);
	smp_mb();	/* release before reading fence_waiters */
	if (atomic_read(&m->fence_waiters))
		wake_up_all(&m->fence_wq);
}

/* Translate up to @n pages from @pfn into acc->page[]; returns how many. */
static unsigned int hmr_translate(struct hmr_mirror *m, struct hmr_access *acc,
				  unsigned long pfn, unsigned int n, bool write)
{
	unsigned long a;
	unsigned int i;
	u64 e;

	hmr_os_access_read_lock();
	for (i = 0; i < n; i++) {
		a = (pfn + i) << HMR_PAGE_SHIFT;
		e = hmr_lookup(m, a);
		if (!hmr_entry_ok(m, e, write))
			break;
		acc->page[i] = hmr_entry_page(m, e, a);
	}
	hmr_os_access_read_unlock();
	return i;
}

int hmr_access_begin(struct hmr_mirror *m, struct hmr_access *acc,
		     unsigned long addr, unsigned long len, bool write)
{
	unsigned long pfn, n, end;
	int slot;

	if (!len || addr + len < addr)
		return -EINVAL;
	if (addr + len > HMR_VA_END)
		return -EFAULT;
	pfn = addr >> HMR_PAGE_SHIFT;
	n = ((addr + len - 1) >> HMR_PAGE_SHIFT) - pfn + 1;
	if (n > HMR_CHUNK_PAGES)
		n = HMR_CHUNK_PAGES;
	slot = hmr_slot_claim(m, pfn, n);
	if (slot < 0)
		return slot;
	acc->slot = slot;
	acc->npages = hmr_translate(m, acc, pfn, n, write);
	if (!acc->npages) {
		hmr_slot_release(m, slot);
		acc->fault_addr = pfn << HMR_PAGE_SHIFT;
		atomic_long_inc(&m->stat.access_faults);
		return -ENOENT;
	}
	acc->addr = addr;
	end = (pfn + acc->npages) << HMR_PAGE_SHIFT;
	acc->len = (addr + len < end ? addr + len : end) - addr;
	return 0;
}

void hmr_access_end(struct hmr_mirror *m, struct hmr_access *acc)
{
	hmr_slot_release(m, acc->slot);
}

void hmr_window_init(struct hmr_window *w, struct hmr_mirror *m,
		     unsigned long start, unsigned long end, bool writable)
{
	w->m = m;
	w->start = start;
	w->end = end;
	w->writable = writable;
}

void hmr_mirror_stats(struct hmr_mirror *m, struct hmr_stats *st)
{
	st->populates = atomic_long_read(&m->stat.populates);
	st->populated_pages = atomic_long_read(&m->stat.populated_pages);
	st->populate_stale = atomic_long_read(&m->stat.populate_stale);
	st->invalidations = atomic_long_read(&m->stat.invalidations);
	st->invalidate_busy = atomic_long_read(&m->stat.invalidate_busy);
	st->fence_waits = atomic_long_read(&m->stat.fence_waits);
	st->access_faults = atomic_long_read(&m->stat.access_faults);
	st->tables = atomic_long_read(&m->stat.tables);
}
