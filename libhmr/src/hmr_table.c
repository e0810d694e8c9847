// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_table.c - the radix table: walk, create, install, clear, prune.
 *
 * Locking (see hmr.h, struct hmr_dir):
 *  - a directory's lock protects its slots, nr and dead; a level-1
 *    directory's lock also protects the entries of its leaf tables;
 *  - lock order is parent before child (only hmr_prune() nests);
 *  - readers take no lock: tables are published with smp_store_release()
 *    and freed after an RCU grace period, once detached.
 *
 * Rule "sync before clear": hmr_table_clear() takes the lock of every
 * existing directory whose slots a populate may write after its sequence
 * check (level 1 and HMR_HUGE_LEVEL), even when its slots in range look
 * empty. A populate that checked the old sequence under that lock has then
 * finished, so its writes are visible to the clear; a later one sees the new
 * sequence. Directories the clear does not find were published before the
 * populate's barrier + check, so that populate sees the new sequence
 * (store-buffering pair: smp_mb() in hmr_mirror_invalidate() and before
 * every ops->seq_stale() call).
 */
#include "hmr_table.h"

#define HMR_TABLE_BYTES	(HMR_FANOUT * sizeof(u64))

/* Tables allocated ahead of a walk (allocation may sleep; locks do not). */
struct hmr_prealloc {
	struct hmr_dir *dir;
	u64 *leaf;
};

static bool hmr_is_huge(const struct hmr_mirror *m, unsigned int level, u64 e)
{
	return level == HMR_HUGE_LEVEL && (e & m->huge);
}

static struct hmr_dir *hmr_slot_dir(u64 e)
{
	return (struct hmr_dir *)hmr_slot_table(e);
}

static u64 hmr_table_slot(void *table)
{
	return (u64)(uintptr_t)table;
}

static struct hmr_dir *hmr_dir_alloc(struct hmr_mirror *m)
{
	struct hmr_dir *d = hmr_os_zalloc(sizeof(*d), GFP_KERNEL);

	if (!d)
		return NULL;
	spin_lock_init(&d->lock);
	atomic_long_inc(&m->stat.tables);
	return d;
}

static u64 *hmr_leaf_alloc(struct hmr_mirror *m)
{
	u64 *t = hmr_os_table_alloc(HMR_TABLE_BYTES, GFP_KERNEL);

	if (t)
		atomic_long_inc(&m->stat.tables);
	return t;
}

static void hmr_dir_rcu_cb(struct rcu_head *head)
{
	hmr_os_free(container_of(head, struct hmr_dir, rcu));
}

static void hmr_dir_free_rcu(struct hmr_mirror *m, struct hmr_dir *d)
{
	atomic_long_dec(&m->stat.tables);
	call_rcu(&d->rcu, hmr_dir_rcu_cb);
}

static void hmr_leaf_free_rcu(struct hmr_mirror *m, u64 *t)
{
	atomic_long_dec(&m->stat.tables);
	hmr_os_table_free_rcu(t);
}

static void hmr_prealloc_free(struct hmr_mirror *m, struct hmr_prealloc *pa)
{
	if (pa->dir) {
		atomic_long_dec(&m->stat.tables);
		hmr_os_free(pa->dir);
	}
	if (pa->leaf) {
		atomic_long_dec(&m->stat.tables);
		hmr_os_table_free(pa->leaf);
	}
}

int hmr_table_init(struct hmr_mirror *m)
{
	BUILD_BUG_ON(HMR_LEVELS < 3);
	BUILD_BUG_ON(HMR_HUGE_LEVEL < 1 || HMR_HUGE_LEVEL > HMR_LEVELS - 2);
	BUILD_BUG_ON(HMR_HUGE_LEVEL * HMR_LEVEL_BITS + HMR_PAGE_SHIFT != HMR_HUGE_SHIFT);
	BUILD_BUG_ON(HMR_LEVEL_SHIFT(HMR_LEVELS) > 62);
	BUILD_BUG_ON(offsetof(struct hmr_dir, slot) != 0);

	m->root = hmr_dir_alloc(m);
	return m->root ? 0 : -ENOMEM;
}

static void hmr_tree_free(struct hmr_mirror *m, u64 *t, unsigned int level)
{
	unsigned int i;
	u64 e;

	if (!level) {
		atomic_long_dec(&m->stat.tables);
		hmr_os_table_free(t);
		return;
	}
	for (i = 0; i < HMR_FANOUT; i++) {
		e = t[i];
		if (e && !hmr_is_huge(m, level, e))
			hmr_tree_free(m, hmr_slot_table(e), level - 1);
	}
	atomic_long_dec(&m->stat.tables);
	hmr_os_free(hmr_slot_dir(hmr_table_slot(t)));
}

void hmr_table_destroy(struct hmr_mirror *m)
{
	hmr_tree_free(m, m->root->slot, HMR_LEVELS - 1);
	m->root = NULL;
}

/* Under @d's lock: a full barrier, then the device's sequence check. */
static int hmr_seq_check(struct hmr_mirror *m, unsigned long seq)
{
	/* order our reads of the table after the notifier's sequence update */
	smp_mb();
	if (m->ops->seq_stale(m->priv, seq)) {
		atomic_long_inc(&m->stat.populate_stale);
		return -EAGAIN;
	}
	return 0;
}

/*
 * Link pa->dir into slot @i of @d (level @level) unless a table is there
 * already. A 2 MiB leaf in the way is replaced, which is a write after the
 * sequence check like any other. Sets *e to the slot's table; returns 0,
 * -EAGAIN, or 1 when @d died (walk again).
 */
static int hmr_dir_link(struct hmr_mirror *m, struct hmr_dir *d,
			unsigned int level, unsigned int i,
			struct hmr_prealloc *pa, unsigned long seq, u64 *e)
{
	int err = 1;

	spin_lock(&d->lock);
	if (d->dead)
		goto out;
	err = 0;
	*e = d->slot[i];
	if (*e && !hmr_is_huge(m, level, *e))
		goto out;
	if (*e) {
		err = hmr_seq_check(m, seq);
		if (err)
			goto out;
	} else {
		WRITE_ONCE(d->nr, d->nr + 1);
	}
	*e = hmr_table_slot(pa->dir);
	/* publish the initialised directory to lock-free lookups */
	smp_store_release(&d->slot[i], *e);
	pa->dir = NULL;
out:
	spin_unlock(&d->lock);
	return err;
}

/*
 * Returns the live directory at @level covering @addr with its lock held,
 * creating the directories above it, or NULL with *err = -ENOMEM/-EAGAIN.
 */
static struct hmr_dir *hmr_dir_get_and_lock(struct hmr_mirror *m,
					    unsigned long addr,
					    unsigned int level, unsigned long seq,
					    struct hmr_prealloc *pa, int *err)
{
	struct hmr_dir *d;
	unsigned int l, i;
	u64 e;

again:
	rcu_read_lock();
	d = m->root;
	for (l = HMR_LEVELS - 1; l > level; l--) {
		i = hmr_index(addr, l);
		e = READ_ONCE(d->slot[i]);
		if (e && !hmr_is_huge(m, l, e)) {
			d = hmr_slot_dir(e);
			continue;
		}
		if (pa->dir) {
			*err = hmr_dir_link(m, d, l, i, pa, seq, &e);
			if (!*err) {
				d = hmr_slot_dir(e);
				continue;
			}
		}
		rcu_read_unlock();
		if (*err < 0)
			return NULL;
		*err = 0;
		if (!pa->dir)
			pa->dir = hmr_dir_alloc(m);
		if (!pa->dir) {
			*err = -ENOMEM;
			return NULL;
		}
		goto again;
	}
	spin_lock(&d->lock);
	rcu_read_unlock();	/* our lock keeps a live directory from being freed */
	if (d->dead) {
		spin_unlock(&d->lock);
		goto again;
	}
	return d;
}

/* The entry of populate input @pfn (ops->encode, or the masks' own format). */
static u64 hmr_encode(struct hmr_mirror *m, u64 pfn, unsigned int flags)
{
	u64 e;

	if (pfn & HMR_PFN_WRITE)
		flags |= HMR_PTE_WRITE;
	if (m->ops->encode)
		return m->ops->encode(m->priv, pfn & HMR_PFN_MASK, flags);
	e = ((pfn & HMR_PFN_MASK) << HMR_PAGE_SHIFT) & m->addr_mask;
	if (flags & HMR_PTE_WRITE)
		e |= m->writable;
	if (flags & HMR_PTE_HUGE)
		e |= m->huge;
	return e | m->present;
}

/* Can pfns[0..] from @addr become one 2 MiB leaf? */
static bool hmr_huge_fits(unsigned long addr, unsigned long npages,
			  const u64 *pfns)
{
	u64 want = HMR_PFN_VALID | HMR_PFN_HUGE;
	u64 last;

	if ((addr & (HMR_HUGE_SIZE - 1)) || npages < HMR_HUGE_PAGES)
		return false;
	if ((pfns[0] & want) != want || (pfns[0] & (HMR_HUGE_PAGES - 1)))
		return false;
	last = pfns[HMR_HUGE_PAGES - 1];
	return (last & want) == want &&
	       (last & HMR_PFN_MASK) == (pfns[0] & HMR_PFN_MASK) + HMR_HUGE_PAGES - 1;
}

/*
 * Install a 2 MiB leaf at @addr. Returns 0, -EAGAIN, -ENOMEM, or 1 when a
 * table of small entries is in the way that cannot simply be dropped (the
 * caller installs small entries instead).
 */
static int hmr_install_huge(struct hmr_mirror *m, unsigned long addr, u64 pfn,
			    unsigned long seq, struct hmr_prealloc *pa)
{
	unsigned int i = hmr_index(addr, HMR_HUGE_LEVEL);
	struct hmr_dir *d;
	int err = 0;
	u64 e;

	d = hmr_dir_get_and_lock(m, addr, HMR_HUGE_LEVEL, seq, pa, &err);
	if (!d)
		return err;
	e = d->slot[i];
	if (e && !(e & m->huge) && HMR_HUGE_LEVEL != 1) {
		err = 1;
		goto out;
	}
	err = hmr_seq_check(m, seq);
	if (err)
		goto out;
	if (!e)
		WRITE_ONCE(d->nr, d->nr + 1);
	WRITE_ONCE(d->slot[i], hmr_encode(m, pfn, HMR_PTE_HUGE));
	/* A leaf table of the same pages is superseded (level 1 only). */
	if (e && !(e & m->huge))
		hmr_leaf_free_rcu(m, hmr_slot_table(e));
out:
	spin_unlock(&d->lock);
	return err;
}

static bool hmr_any_valid(const u64 *pfns, unsigned long n)
{
	while (n--)
		if (pfns[n] & HMR_PFN_VALID)
			return true;
	return false;
}

/* Under the leaf's lock: write the valid ones of @n entries from slot @j; returns how many. */
static unsigned long hmr_leaf_write(struct hmr_mirror *m, u64 *leaf, unsigned int j,
				    unsigned long n, const u64 *pfns)
{
	unsigned long k, valid = 0;

	for (k = 0; k < n; k++) {
		if (pfns[k] & HMR_PFN_VALID) {
			WRITE_ONCE(leaf[j + k], hmr_encode(m, pfns[k], 0));
			valid++;
		}
	}
	return valid;
}

/*
 * Install @n small entries from @addr, all in one leaf table. Returns 0,
 * -EAGAIN or -ENOMEM.
 */
static int hmr_install_small(struct hmr_mirror *m, unsigned long addr,
			     unsigned long n, const u64 *pfns,
			     unsigned long seq, struct hmr_prealloc *pa)
{
	unsigned int i = hmr_index(addr, 1), j = hmr_index(addr, 0);
	struct hmr_dir *d;
	int err = 0;
	u64 e;

	if (!hmr_any_valid(pfns, n))
		return 0;
	for (;;) {
		d = hmr_dir_get_and_lock(m, addr, 1, seq, pa, &err);
		if (!d)
			return err;
		e = d->slot[i];
		if ((e && !hmr_is_huge(m, 1, e)) || pa->leaf)
			break;
		spin_unlock(&d->lock);
		pa->leaf = hmr_leaf_alloc(m);
		if (!pa->leaf)
			return -ENOMEM;
	}
	err = hmr_seq_check(m, seq);
	if (err)
		goto out;
	if (!e || hmr_is_huge(m, 1, e)) {
		if (!e)
			WRITE_ONCE(d->nr, d->nr + 1);
		e = hmr_table_slot(pa->leaf);
		pa->leaf = NULL;
		/* publish the initialised leaf table to lock-free lookups */
		smp_store_release(&d->slot[i], e);
	}
	hmr_leaf_write(m, hmr_slot_table(e), j, n, pfns);
out:
	spin_unlock(&d->lock);
	return err;
}

static unsigned long hmr_count_valid(const u64 *pfns, unsigned long n)
{
	unsigned long k, valid = 0;

	for (k = 0; k < n; k++)
		valid += !!(pfns[k] & HMR_PFN_VALID);
	return valid;
}

/*
 * The common populate, with nothing to create or replace: @npages entries from @start, the
 * first one valid, all in one leaf table that exists (the refault of a page dropped alone, a
 * fault window). The steps of hmr_install_small() without the general walk and its
 * allocations, which were a third of libhmr's part of a one-page fault. Returns the valid
 * entries installed, -EAGAIN, or -ENOENT when the general path must run (a directory or
 * leaf to create, a 2 MiB leaf in the way, a directory dying).
 */
static long hmr_populate_leaf(struct hmr_mirror *m, unsigned long start,
			      unsigned long npages, const u64 *pfns,
			      unsigned long seq)
{
	unsigned int i = hmr_index(start, 1), j = hmr_index(start, 0);
	struct hmr_dir *d = m->root;
	unsigned int l;
	long ret;
	u64 e;

	rcu_read_lock();
	for (l = HMR_LEVELS - 1; l > 1; l--) {
		e = READ_ONCE(d->slot[hmr_index(start, l)]);
		if (!e || hmr_is_huge(m, l, e)) {
			rcu_read_unlock();
			return -ENOENT;
		}
		d = hmr_slot_dir(e);
	}
	spin_lock(&d->lock);
	rcu_read_unlock();	/* our lock keeps a live directory from being freed */
	e = d->slot[i];
	ret = -ENOENT;
	if (d->dead || !e || hmr_is_huge(m, 1, e))
		goto out;
	ret = hmr_seq_check(m, seq);
	if (ret)
		goto out;
	ret = hmr_leaf_write(m, hmr_slot_table(e), j, npages, pfns);
out:
	spin_unlock(&d->lock);
	return ret;
}

int hmr_table_populate(struct hmr_mirror *m, unsigned long start,
		       unsigned long npages, const u64 *pfns, unsigned long seq)
{
	struct hmr_prealloc pa = { NULL, NULL };
	unsigned long done = 0, n, addr, valid = 0;
	long fast;
	int err = 0;

	if ((pfns[0] & HMR_PFN_VALID) && npages < HMR_HUGE_PAGES &&
	    hmr_index(start, 0) + npages <= HMR_FANOUT) {
		fast = hmr_populate_leaf(m, start, npages, pfns, seq);
		if (fast >= 0) {
			valid = fast;
			goto out;
		}
		if (fast != -ENOENT)
			return fast;
	}
	while (done < npages) {
		addr = start + (done << HMR_PAGE_SHIFT);
		if (hmr_huge_fits(addr, npages - done, pfns + done)) {
			err = hmr_install_huge(m, addr, pfns[done], seq, &pa);
			if (err < 0)
				break;
			if (!err) {
				done += HMR_HUGE_PAGES;
				valid += HMR_HUGE_PAGES;
				continue;
			}
		}
		n = min_t(unsigned long, npages - done,
			  HMR_FANOUT - hmr_index(addr, 0));
		err = hmr_install_small(m, addr, n, pfns + done, seq, &pa);
		if (err)
			break;
		valid += hmr_count_valid(pfns + done, n);
		done += n;
	}
	hmr_prealloc_free(m, &pa);
out:
	if (!err) {
		atomic_long_inc(&m->stat.populates);
		atomic_long_add(valid, &m->stat.populated_pages);	/* holes are not counted */
	}
	return err;
}

/* Take and drop @d's lock (rule "sync before clear"). False if @d died. */
static bool hmr_dir_sync(struct hmr_dir *d)
{
	bool live;

	spin_lock(&d->lock);
	live = !d->dead;
	spin_unlock(&d->lock);
	return live;
}

/* Under @d's lock: drop slot @i of @d. */
static void hmr_slot_drop(struct hmr_dir *d, unsigned int i)
{
	WRITE_ONCE(d->slot[i], 0);
	WRITE_ONCE(d->nr, d->nr - 1);
}

/*
 * Under @d's lock: clear pages [j0, j1) of leaf table slot @i; returns the entries cleared (a
 * leaf freed whole counts as one: its entries are not read). A leaf cleared whole is freed;
 * one that a partial clear left empty is kept (with the directories above it), so the
 * refault of a page dropped alone (MADV_DONTNEED of a buffer, a migrated page) allocates no
 * table: at most one 4 KiB leaf per 2 MiB stays until a whole-leaf clear or the mirror's end.
 */
static unsigned long hmr_leaf_clear(struct hmr_mirror *m, struct hmr_dir *d,
				    unsigned int i, unsigned int j0, unsigned int j1)
{
	u64 *leaf = hmr_slot_table(d->slot[i]);
	unsigned long n = 0;
	unsigned int j;

	if (j0 == 0 && j1 == HMR_FANOUT) {
		hmr_slot_drop(d, i);
		hmr_leaf_free_rcu(m, leaf);
		return 1;
	}
	for (j = j0; j < j1; j++) {
		if (leaf[j]) {
			WRITE_ONCE(leaf[j], 0);
			n++;
		}
	}
	return n;
}

/* Slots of a table at @level based at @base that overlap [start, end). */
static void hmr_slot_span(unsigned int level, unsigned long base,
			  unsigned long start, unsigned long end,
			  unsigned int *first, unsigned int *last)
{
	unsigned long span = HMR_FANOUT << HMR_LEVEL_SHIFT(level);

	*first = start > base ? (start - base) >> HMR_LEVEL_SHIFT(level) : 0;
	*last = ((end < base + span ? end : base + span) - 1 - base) >>
		HMR_LEVEL_SHIFT(level);
}

/* Clear [start, end) in the level-1 directory @d based at @base; returns what was cleared. */
static unsigned long hmr_clear_level1(struct hmr_mirror *m, struct hmr_dir *d,
				      unsigned long base, unsigned long start,
				      unsigned long end)
{
	unsigned int i, first, last, j0, j1;
	unsigned long lb, n = 0;
	u64 e;

	if (!hmr_dir_sync(d))
		return 0;
	hmr_slot_span(1, base, start, end, &first, &last);
	for (i = first; i <= last; i++) {
		if (!READ_ONCE(d->slot[i]))
			continue;
		lb = base + ((unsigned long)i << HMR_LEVEL_SHIFT(1));
		j0 = start > lb ? (start - lb) >> HMR_PAGE_SHIFT : 0;
		j1 = end < lb + (HMR_FANOUT << HMR_PAGE_SHIFT) ?
		     (end - lb) >> HMR_PAGE_SHIFT : HMR_FANOUT;
		spin_lock(&d->lock);
		e = d->slot[i];
		if (hmr_is_huge(m, 1, e)) {
			hmr_slot_drop(d, i);
			n++;
		} else if (e) {
			n += hmr_leaf_clear(m, d, i, j0, j1);
		}
		spin_unlock(&d->lock);
	}
	return n;
}

/* Clear 2 MiB leaves of directory @d (at HMR_HUGE_LEVEL) in slots [first, last]. */
static unsigned long hmr_clear_huge(struct hmr_mirror *m, struct hmr_dir *d,
				    unsigned int first, unsigned int last)
{
	unsigned long n = 0;
	unsigned int i;

	spin_lock(&d->lock);
	if (!d->dead) {
		for (i = first; i <= last; i++) {
			if (d->slot[i] & m->huge) {
				hmr_slot_drop(d, i);
				n++;
			}
		}
	}
	spin_unlock(&d->lock);
	return n;
}

/* Detach and free the child @c in slot @i of @p if it is empty. */
static void hmr_prune(struct hmr_mirror *m, struct hmr_dir *p, unsigned int i,
		      struct hmr_dir *c)
{
	bool gone = false;

	if (READ_ONCE(c->nr))
		return;
	spin_lock(&p->lock);
	spin_lock_nested(&c->lock, SINGLE_DEPTH_NESTING);
	if (!c->nr && !c->dead && p->slot[i] == hmr_table_slot(c)) {
		c->dead = true;
		hmr_slot_drop(p, i);
		gone = true;
	}
	spin_unlock(&c->lock);
	spin_unlock(&p->lock);
	if (gone)
		hmr_dir_free_rcu(m, c);
}

/* Clear [start, end) below directory @d at @level (>= 2) based at @base; returns the count. */
static unsigned long hmr_clear_dir(struct hmr_mirror *m, struct hmr_dir *d,
				   unsigned int level, unsigned long base,
				   unsigned long start, unsigned long end)
{
	unsigned int i, first, last;
	unsigned long cb, n = 0;
	u64 e;

	hmr_slot_span(level, base, start, end, &first, &last);
	if (level == HMR_HUGE_LEVEL)
		n += hmr_clear_huge(m, d, first, last);
	for (i = first; i <= last; i++) {
		e = READ_ONCE(d->slot[i]);
		if (!e || hmr_is_huge(m, level, e))
			continue;
		cb = base + ((unsigned long)i << HMR_LEVEL_SHIFT(level));
		if (level == 2)
			n += hmr_clear_level1(m, hmr_slot_dir(e), cb, start, end);
		else
			n += hmr_clear_dir(m, hmr_slot_dir(e), level - 1, cb, start, end);
		hmr_prune(m, d, i, hmr_slot_dir(e));
	}
	return n;
}

unsigned long hmr_table_clear(struct hmr_mirror *m, unsigned long start,
			      unsigned long end)
{
	unsigned long n;

	rcu_read_lock();
	n = hmr_clear_dir(m, m->root, HMR_LEVELS - 1, 0, start, end);
	rcu_read_unlock();
	return n;
}
