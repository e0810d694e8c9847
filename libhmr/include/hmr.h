/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmr.h - libhmr: a mirrored device page table that follows the CPU page
 * table through an mmu_interval_notifier-style sequence protocol.
 *
 * Structure: a radix table of HMR_LEVELS levels over a 48-bit address space,
 * HMR_LEVEL_BITS per level (9 by default: 4 levels, 4 KiB leaves, 2 MiB huge
 * leaves one level up). Level 0 tables hold device entries; directories hold
 * pointers to child tables, or at HMR_HUGE_LEVEL a 2 MiB leaf entry.
 *
 * Entry format: device-defined, described to libhmr by struct hmr_mirror_ops
 * as masks (read by the lock-free lookup) plus an encode() callback (called
 * only when installing).
 *
 * Protocol (see Documentation.md, "libhmr: the mirrored device page table"):
 *
 *   fault:       seq = read_begin(); resolve pages (hmm_range_fault);
 *                hmr_mirror_populate(m, addr, n, pfns, seq)  -> -EAGAIN: retry
 *   invalidate:  (notifier has made seq stale) hmr_mirror_invalidate(m, s, e, blockable)
 *                clears entries, then fences in-flight accesses on [s, e)
 *   sharing:     windows (struct hmr_window) over one mirror: each user's range and rights
 *   device:      hmr_access_begin(m, &acc, addr, len, write) -> chunk or -ENOENT
 *                ... use acc.page[] ...; hmr_access_end(m, &acc)
 *
 * Contexts: populate may sleep (GFP_KERNEL); invalidate never allocates and
 * with blockable == false never sleeps; access_begin/end never sleep; the
 * lookup needs rcu_read_lock(). In the kernel access_begin runs with
 * preemption disabled, which is its read side (hmr_os_access_read_lock()).
 */
#ifndef HMR_H
#define HMR_H

#include "hmr_os.h"

/* ---- geometry (build parameters) ---- */
#ifndef HMR_LEVEL_BITS
#define HMR_LEVEL_BITS		9	/* index bits per level */
#endif
#ifndef HMR_ACCESS_SLOTS
#define HMR_ACCESS_SLOTS	64	/* concurrent in-flight accesses per mirror */
#endif
#ifndef HMR_CHUNK_PAGES
#define HMR_CHUNK_PAGES		16	/* pages per access chunk: bounds a fence wait */
#endif

#define HMR_PAGE_SHIFT		12
#define HMR_PAGE_SIZE		(1UL << HMR_PAGE_SHIFT)
#define HMR_HUGE_SHIFT		21
#define HMR_HUGE_SIZE		(1UL << HMR_HUGE_SHIFT)
#define HMR_HUGE_PAGES		(1UL << (HMR_HUGE_SHIFT - HMR_PAGE_SHIFT))
#define HMR_VA_BITS		48
#define HMR_VA_END		(1UL << HMR_VA_BITS)
#define HMR_FANOUT		(1UL << HMR_LEVEL_BITS)
#define HMR_LEVELS		((HMR_VA_BITS - HMR_PAGE_SHIFT + HMR_LEVEL_BITS - 1) / \
				 HMR_LEVEL_BITS)
#define HMR_HUGE_LEVEL		((HMR_HUGE_SHIFT - HMR_PAGE_SHIFT) / HMR_LEVEL_BITS)

/* Bytes covered by one entry of a table at @level. */
#define HMR_LEVEL_SHIFT(level)	(HMR_PAGE_SHIFT + (level) * HMR_LEVEL_BITS)

/* ---- populate input: one u64 per 4 KiB page, built from HMM pfns by the caller ---- */
#define HMR_PFN_VALID		(1ULL << 63)	/* page is mapped: install it */
#define HMR_PFN_WRITE		(1ULL << 62)	/* ... writable */
#define HMR_PFN_HUGE		(1ULL << 61)	/* ... by a 2 MiB CPU mapping */
#define HMR_PFN_MASK		((1ULL << 52) - 1)

/* encode() flags */
#define HMR_PTE_WRITE		0x1u
#define HMR_PTE_HUGE		0x2u

/**
 * struct hmr_mirror_ops - entry format and notifier glue of one device
 * @present:   bits all set in a valid entry (nonzero)
 * @writable:  bits all set in an entry the device may write through
 * @huge:      one bit marking a 2 MiB leaf; must be bit 0, 1 or 2, because a
 *             directory slot holds either such a leaf or an 8-byte aligned
 *             pointer to a child table
 * @addr_mask: bits of an entry holding its page-aligned address
 * @encode:    build the entry for frame @pfn with HMR_PTE_* @flags; the
 *             result must contain @present, @writable iff HMR_PTE_WRITE and
 *             @huge iff HMR_PTE_HUGE. Called under the update lock: no sleep.
 *             NULL: the masks' own format, the page's address (pfn shifted
 *             by HMR_PAGE_SHIFT, within @addr_mask) | @present | @writable
 *             if writable | @huge if huge, with no call per entry (the masks
 *             must then not overlap @addr_mask).
 * @seq_stale: true if the sequence @seq from mmu_interval_read_begin() is
 *             stale (mmu_interval_read_retry()). Called under the update lock
 *             of the table being written, after a full barrier.
 */
struct hmr_mirror_ops {
	u64 present;
	u64 writable;
	u64 huge;
	u64 addr_mask;
	u64 (*encode)(void *priv, u64 pfn, unsigned int flags);
	bool (*seq_stale)(void *priv, unsigned long seq);
};

/**
 * struct hmr_dir - a directory table (levels 1 .. HMR_LEVELS - 1)
 * @slot: child table pointers (or a 2 MiB leaf at HMR_HUGE_LEVEL); written
 *        under @lock, read locklessly under RCU. Must stay first: a parent
 *        slot points at @slot, which is the directory itself.
 * @lock: protects @slot, @nr, @dead, and the entries of child leaf tables
 *        when this is a level-1 directory
 * @nr:   non-empty slots
 * @dead: detached from its parent (set under the parent's and own lock);
 *        a writer that finds it set walks again from the root
 * @rcu:  deferred free
 */
struct hmr_dir {
	u64 slot[HMR_FANOUT];
	spinlock_t lock;
	unsigned int nr;
	bool dead;
	struct rcu_head rcu;
};

/* Statistics snapshot (hmr_mirror_stats). */
struct hmr_stats {
	u64 populates;		/* populate calls that installed all pages */
	u64 populated_pages;	/* pages installed, holes not counted (a 2 MiB leaf: 512) */
	u64 populate_stale;	/* populate calls refused: sequence stale */
	u64 invalidations;	/* invalidate calls */
	u64 invalidate_busy;	/* non-blockable invalidations that returned -EAGAIN */
	u64 fence_waits;	/* in-flight accesses an invalidation waited for */
	u64 access_faults;	/* access_begin calls that returned -ENOENT */
	u64 tables;		/* live tables, root included */
};

/**
 * struct hmr_mirror - one mirrored address space
 * @root:       top directory, never freed before destroy
 * @present, @writable, @huge, @addr_mask: copies of the ops masks (lookup)
 * @ops, @priv: the device
 * @slots:      in-flight accesses: (pfn << 28 | npages << 8 | gen << 1 | 1)
 *              while busy, (gen << 1) while idle; claimed by cmpxchg
 * @fence_waiters: invalidations sleeping on @fence_wq
 * @fence_wq:   woken by hmr_access_end() when @fence_waiters is nonzero
 */
struct hmr_mirror {
	struct hmr_dir *root;
	u64 present;
	u64 writable;
	u64 huge;
	u64 addr_mask;
	const struct hmr_mirror_ops *ops;
	void *priv;
	unsigned long slots[HMR_ACCESS_SLOTS];
	atomic_t fence_waiters;
	wait_queue_head_t fence_wq;
	struct {
		atomic_long_t populates, populated_pages, populate_stale;
		atomic_long_t invalidations, invalidate_busy, fence_waits;
		atomic_long_t access_faults, tables;
	} stat;
};

/**
 * struct hmr_access - one chunk of a device access (hmr_access_begin)
 * @addr:       first byte of the chunk (the address passed in)
 * @len:        bytes in the chunk, 0 < len <= requested length
 * @npages:     pages spanned by the chunk
 * @page:       device address of each page (page aligned)
 * @fault_addr: on -ENOENT, the page-aligned address to fault
 * @slot:       in-flight slot (internal)
 */
struct hmr_access {
	unsigned long addr;
	unsigned long len;
	unsigned int npages;
	unsigned int slot;
	unsigned long fault_addr;
	u64 page[HMR_CHUNK_PAGES];
};

int hmr_mirror_init(struct hmr_mirror *m, const struct hmr_mirror_ops *ops,
		    void *priv);
void hmr_mirror_destroy(struct hmr_mirror *m);

/*
 * Install @npages entries from @start (page aligned) from @pfns (HMR_PFN_*).
 * Entries without HMR_PFN_VALID are skipped. A 2 MiB aligned run of 512
 * HMR_PFN_HUGE pages becomes one huge leaf. Returns 0, -EAGAIN if @seq went
 * stale (a prefix may be installed: it was current when written), -ENOMEM,
 * or -EINVAL for a bad range. May sleep.
 */
int hmr_mirror_populate(struct hmr_mirror *m, unsigned long start,
			unsigned long npages, const u64 *pfns, unsigned long seq);

/*
 * Clear every entry overlapping [start, end), then wait until no access that
 * may have seen one of them is in flight. A 2 MiB leaf that overlaps is
 * cleared whole. Returns 0, -EINVAL for a bad range, or -EAGAIN when
 * !blockable and an overlapping access is in flight (entries are cleared
 * anyway; the caller reports busy).
 */
int hmr_mirror_invalidate(struct hmr_mirror *m, unsigned long start,
			  unsigned long end, bool blockable);

/*
 * Translate the first chunk of [addr, addr + len) for a read or a write.
 * 0: acc->len bytes from addr are translated in acc->page[] and in flight
 *    until hmr_access_end() (the caller advances and calls again);
 * -ENOENT: the page at acc->fault_addr is missing (or read-only for a
 *    write): fault a window around it, then retry;
 * -EINVAL: len == 0 or addr + len overflows; -EFAULT: beyond HMR_VA_END;
 * -EBUSY: all HMR_ACCESS_SLOTS in use, retry.
 * In the kernel, call it with preemption disabled (as the chunk's copy runs).
 */
int hmr_access_begin(struct hmr_mirror *m, struct hmr_access *acc,
		     unsigned long addr, unsigned long len, bool write);
void hmr_access_end(struct hmr_mirror *m, struct hmr_access *acc);

void hmr_mirror_stats(struct hmr_mirror *m, struct hmr_stats *st);

/**
 * struct hmr_window - what one user of a shared mirror (a memory region) may reach
 * @m:        the mirror, shared by every window over the same address space
 * @start:    first byte the window covers
 * @end:      one past its last byte
 * @writable: may write through it (READ_ONCE: a user may change it in place)
 *
 * Sharing rules: every window sees every entry of its mirror (a page faulted through
 * one is present for all that cover it), but a window reaches only [start, end), and
 * a read-only window never writes, even through an entry another window faulted
 * writable. Populating through a window installs pages inside it only. Entries
 * belong to the mirror, not to a window: a window going away drops nothing; the
 * invalidations of the address space drop them.
 */
struct hmr_window {
	struct hmr_mirror *m;
	unsigned long start;
	unsigned long end;
	bool writable;
};

void hmr_window_init(struct hmr_window *w, struct hmr_mirror *m,
		     unsigned long start, unsigned long end, bool writable);
/* Is [start, start + npages pages) a valid, page-aligned range? */
static inline bool hmr_range_ok(unsigned long start, unsigned long npages)
{
	if (start & (HMR_PAGE_SIZE - 1) || !npages || start >= HMR_VA_END)
		return false;
	return npages <= (HMR_VA_END - start) >> HMR_PAGE_SHIFT;
}

/* hmr_mirror_populate() without its checks: for hmr_window_populate() only. */
int hmr_table_populate(struct hmr_mirror *m, unsigned long start,
		       unsigned long npages, const u64 *pfns, unsigned long seq);

/*
 * hmr_mirror_populate() confined to @w's pages: -EINVAL for pages outside them. Inline, as
 * hmr_window_access_begin(): it runs for every fault.
 */
static inline int hmr_window_populate(struct hmr_window *w, unsigned long start,
				      unsigned long npages, const u64 *pfns,
				      unsigned long seq)
{
	unsigned long first = w->start & ~(HMR_PAGE_SIZE - 1);
	unsigned long last = (w->end + HMR_PAGE_SIZE - 1) & ~(HMR_PAGE_SIZE - 1);

	if (!hmr_range_ok(start, npages) || start < first || start >= last ||
	    npages > (last - start) >> HMR_PAGE_SHIFT)
		return -EINVAL;
	return hmr_table_populate(w->m, start, npages, pfns, seq);
}
/* Does [addr, addr + len) lie in @w? */
static inline bool hmr_window_holds(const struct hmr_window *w, unsigned long addr,
				    unsigned long len)
{
	return len && addr + len > addr && addr >= w->start && addr + len <= w->end;
}

/*
 * hmr_access_begin() through @w: -EFAULT unless [addr, addr + len) lies in the window,
 * -EACCES for a write through a read-only window; else as hmr_access_begin(). Inline: it
 * runs for every chunk the DMA engine copies.
 */
static inline int hmr_window_access_begin(struct hmr_window *w, struct hmr_access *acc,
					  unsigned long addr, unsigned long len, bool write)
{
	if (!hmr_window_holds(w, addr, len))
		return -EFAULT;
	if (write && !READ_ONCE(w->writable))
		return -EACCES;
	return hmr_access_begin(w->m, acc, addr, len, write);
}

/* Slot @level's index for @addr. */
static inline unsigned int hmr_index(unsigned long addr, unsigned int level)
{
	return (addr >> HMR_LEVEL_SHIFT(level)) & (HMR_FANOUT - 1);
}

/* A directory slot value -> the table it points to. */
static inline u64 *hmr_slot_table(u64 e)
{
	return (u64 *)(uintptr_t)e;
}

/**
 * hmr_lookup - the entry mapping @addr, or 0
 *
 * Lock-free; call under rcu_read_lock() (or hold an in-flight access).
 * Returns the 4 KiB entry, or the 2 MiB leaf covering @addr (test it with
 * m->huge; hmr_entry_page() gives the page address either way).
 */
static inline u64 hmr_lookup(const struct hmr_mirror *m, unsigned long addr)
{
	const u64 *t = m->root->slot;
	unsigned int level;
	u64 e;

	/* Unrolled, every shift and the huge-level test become constants. */
#pragma GCC unroll 16
	for (level = HMR_LEVELS - 1; level > 0; level--) {
		e = READ_ONCE(t[hmr_index(addr, level)]);
		if (level == HMR_HUGE_LEVEL && (e & m->huge))
			return e;
		if (!e)
			return 0;
		t = hmr_slot_table(e);
	}
	return READ_ONCE(t[hmr_index(addr, 0)]);
}

/* Page-aligned device address of @addr's page, given its entry @e. */
static inline u64 hmr_entry_page(const struct hmr_mirror *m, u64 e,
				 unsigned long addr)
{
	u64 base = e & m->addr_mask;

	if (e & m->huge)
		base += addr & (HMR_HUGE_SIZE - 1) & ~(HMR_PAGE_SIZE - 1);
	return base;
}

/* Is @e usable for an access (@write: and writable)? */
static inline bool hmr_entry_ok(const struct hmr_mirror *m, u64 e, bool write)
{
	u64 need = m->present | (write ? m->writable : 0);

	return (e & need) == need;
}

#endif /* HMR_H */
