// SPDX-License-Identifier: GPL-2.0
/*
 * One mirror per (device, process): the device's view of a process's address space, shared
 * by every MR the process registers on the device, explicit or implicit, ODP or not. An MR is
 * a window over it (struct hmr_window: its range and its write right); a page faulted through
 * one MR is present for every MR that covers it, and registering over memory the device
 * already mirrors costs no fault.
 *
 * One mmu_interval_notifier covers the whole address space (as lib/test_hmm.c's mirror
 * does), so an invalidation clears and fences one mirror, whatever the number of MRs over
 * the range. Entries belong to the mirror: deregistering an MR drops none of them. They stay
 * until the address space changes (munmap, MADV_DONTNEED, COW, migration, reclaim: all
 * invalidate) or the mirror goes. Its users are its MRs and the user context through which
 * the process first registered memory (struct hmr_ucontext's keep): the mirror goes when
 * both are gone, at the latest when the process closes the device (exit included). Nothing is
 * pinned, so a kept entry holds no memory; it costs table space in proportion to the memory
 * mirrored.
 *
 * A forked child's MRs make a mirror of their own: the mirror is found by the mm, and the
 * child's mm is another. The notifier holds the mm (mmgrab), so while a mirror exists its mm
 * cannot be freed and its address cannot name another process.
 */
#include <linux/mmu_notifier.h>
#include <linux/slab.h>

#include "hmr_dev.h"

/* Entry format of the mirror: the page's physical address and three flag bits. */
#define HMR_MM_PTE_HUGE		BIT_ULL(0)
#define HMR_MM_PTE_PRESENT	BIT_ULL(1)
#define HMR_MM_PTE_WRITE	BIT_ULL(2)
#define HMR_MM_PTE_ADDR		GENMASK_ULL(51, PAGE_SHIFT)
/* libhmr builds the entries (no encode()): its pages are the CPU's. */
static_assert(HMR_PAGE_SHIFT == PAGE_SHIFT);

static bool hmr_mm_seq_stale(void *priv, unsigned long seq)
{
	struct hmr_mm *hm = priv;

	return mmu_interval_read_retry(&hm->notifier, seq);
}

static const struct hmr_mirror_ops hmr_mm_mirror_ops = {
	.present = HMR_MM_PTE_PRESENT,
	.writable = HMR_MM_PTE_WRITE,
	.huge = HMR_MM_PTE_HUGE,
	.addr_mask = HMR_MM_PTE_ADDR,	/* no encode(): the masks' own format, no call an entry */
	.seq_stale = hmr_mm_seq_stale,
};

/* Add the time an invalidation that waited for in-flight chunks spent to page_fence_wait_ns. */
static void hmr_mm_count_fence(struct hmr_mm *hm, unsigned long waits_before, u64 t0)
{
	struct hmr_stats st;

	hmr_mirror_stats(&hm->mirror, &st);
	if (st.fence_waits != waits_before)
		atomic64_add(ktime_get_ns() - t0, &hm->hdev->fence_wait_ns);
}

static bool hmr_mm_invalidate(struct mmu_interval_notifier *mni,
			      const struct mmu_notifier_range *range, unsigned long cur_seq)
{
	struct hmr_mm *hm = container_of(mni, struct hmr_mm, notifier);
	unsigned long end = min_t(unsigned long, range->end, HMR_VA_END);
	bool blockable = mmu_notifier_range_blockable(range);
	struct hmr_stats st;
	u64 t0;
	int ret;

	mmu_interval_set_seq(mni, cur_seq);
	if (range->start >= end)
		return true;
	hmr_mirror_stats(&hm->mirror, &st);
	t0 = ktime_get_ns();
	ret = hmr_mirror_invalidate(&hm->mirror, range->start, end, blockable);
	hmr_mm_count_fence(hm, st.fence_waits, t0);
	if (!blockable)
		atomic64_inc(&hm->hdev->nonblock_invalidations);
	/* Not blockable and a chunk in flight: entries are cleared, the caller retries. */
	return ret != -EAGAIN;
}

static const struct mmu_interval_notifier_ops hmr_mm_notifier_ops = {
	.invalidate = hmr_mm_invalidate,
};

/* A live mirror of @mm on @hdev with one more user, or NULL. Under hdev->mms_lock. */
static struct hmr_mm *hmr_mm_find(struct hmr_dev *hdev, struct mm_struct *mm)
{
	struct hmr_mm *hm;

	list_for_each_entry(hm, &hdev->mms, list) {
		if (hm->notifier.mm == mm && !hm->dead) {
			hm->users++;
			return hm;
		}
	}
	return NULL;
}

/* A new mirror of @mm with its subscription, not yet on the device's list. */
static struct hmr_mm *hmr_mm_create(struct hmr_dev *hdev, struct mm_struct *mm)
{
	struct hmr_mm *hm;
	int ret;

	hm = kzalloc(sizeof(*hm), GFP_KERNEL);
	if (!hm)
		return ERR_PTR(-ENOMEM);
	hm->hdev = hdev;
	hm->users = 1;
	ret = hmr_mirror_init(&hm->mirror, &hmr_mm_mirror_ops, hm);
	if (ret)
		goto err_free;
	ret = mmu_interval_notifier_insert(&hm->notifier, mm, 0, HMR_VA_END,
					   &hmr_mm_notifier_ops);
	if (ret)
		goto err_mirror;
	return hm;

err_mirror:
	hmr_mirror_destroy(&hm->mirror);
err_free:
	kfree(hm);
	return ERR_PTR(ret);
}

/* Tear down a mirror no MR uses (it may be on the list, dead): its statistics go to retired. */
static void hmr_mm_destroy(struct hmr_mm *hm, bool listed)
{
	struct hmr_dev *hdev = hm->hdev;
	struct hmr_stats st;

	/* Waits for a running invalidation; later ones no longer reach the mirror. */
	mmu_interval_notifier_remove(&hm->notifier);
	hmr_mirror_stats(&hm->mirror, &st);
	st.tables = 0;		/* a gauge: its tables go with it */
	spin_lock(&hdev->mms_lock);
	if (listed)
		list_del(&hm->list);
	hmr_stats_add(&hdev->retired, &st, false);
	spin_unlock(&hdev->mms_lock);
	hmr_mirror_destroy(&hm->mirror);	/* tables go after an RCU grace period */
	kfree(hm);
}

/*
 * The mirror of @mm on @hdev, made on first use, with one more user (hmr_mm_put()). Two
 * first registrations racing both make one; the later finds the earlier and drops its own.
 */
struct hmr_mm *hmr_mm_get(struct hmr_dev *hdev, struct mm_struct *mm)
{
	struct hmr_mm *hm, *new;

	spin_lock(&hdev->mms_lock);
	hm = hmr_mm_find(hdev, mm);
	spin_unlock(&hdev->mms_lock);
	if (hm)
		return hm;
	new = hmr_mm_create(hdev, mm);
	if (IS_ERR(new))
		return new;
	spin_lock(&hdev->mms_lock);
	hm = hmr_mm_find(hdev, mm);
	if (!hm)
		list_add(&new->list, &hdev->mms);
	spin_unlock(&hdev->mms_lock);
	if (!hm)
		return new;
	hmr_mm_destroy(new, false);
	return hm;
}

/*
 * Let @uctx keep @hm (one more user) until the context closes, if it keeps none yet: so a
 * reg/use/dereg loop over resident memory faults once, not in every round.
 */
void hmr_mm_keep(struct hmr_ucontext *uctx, struct hmr_mm *hm)
{
	struct hmr_dev *hdev = hm->hdev;

	mutex_lock(&uctx->keep_lock);
	if (!uctx->keep) {
		spin_lock(&hdev->mms_lock);
		hm->users++;	/* @hm has a user (the caller's MR): it is not dead */
		spin_unlock(&hdev->mms_lock);
		uctx->keep = hm;
	}
	mutex_unlock(&uctx->keep_lock);
}

/* Drop a user; the last one takes the mirror and its subscription away. Sleeps. */
void hmr_mm_put(struct hmr_mm *hm)
{
	struct hmr_dev *hdev = hm->hdev;
	bool last;

	spin_lock(&hdev->mms_lock);
	last = !--hm->users;
	if (last)
		hm->dead = true;	/* a new MR of this mm makes a new mirror */
	spin_unlock(&hdev->mms_lock);
	if (last)
		hmr_mm_destroy(hm, true);
}

/* @sum = the statistics of every mirror @hdev had, live or gone. */
void hmr_mm_stats_sum(struct hmr_dev *hdev, struct hmr_stats *sum)
{
	struct hmr_stats st;
	struct hmr_mm *hm;

	spin_lock(&hdev->mms_lock);
	*sum = hdev->retired;
	list_for_each_entry(hm, &hdev->mms, list) {
		hmr_mirror_stats(&hm->mirror, &st);
		hmr_stats_add(sum, &st, false);
	}
	spin_unlock(&hdev->mms_lock);
}
