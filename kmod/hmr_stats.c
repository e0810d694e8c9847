// SPDX-License-Identifier: GPL-2.0
/*
 * Per-device memory counters: the libhmr mirror statistics of every MR of the device, summed,
 * as the port's hw counters (`rdma statistic show link hmr0/1`,
 * /sys/class/infiniband/hmr0/ports/1/hw_counters). Names follow mlx5's ODP counters.
 *
 * Live MRs are summed from hdev->mrs; a deregistered MR's statistics move to hdev->retired.
 * stats_lock makes the move atomic with respect to a reader: a reader takes it, then the
 * xarray's lock, so it sees an MR either in the xarray or in retired, never both or neither.
 */
#include <rdma/ib_verbs.h>

#include "hmr_dev.h"

enum {
	HMR_CNT_PAGE_FAULTS,		/* faults that installed pages (populate calls) */
	HMR_CNT_FAULTED_PAGES,		/* pages installed by them */
	HMR_CNT_INVALIDATIONS,		/* notifier invalidations that reached a mirror */
	HMR_CNT_FENCE_WAITS,		/* in-flight chunks an invalidation waited for */
	HMR_CNT_FENCE_WAIT_NS,		/* time invalidations that waited spent in the fence */
	HMR_CNT_ACCESS_FAULTS,		/* DMA engine accesses that found a page missing */
	HMR_CNT_PREFETCH,		/* pages prefetched by advise_mr */
	HMR_CNT_NUM
};

static const struct rdma_stat_desc hmr_cnt_descs[HMR_CNT_NUM] = {
	[HMR_CNT_PAGE_FAULTS] = { .name = "page_faults" },
	[HMR_CNT_FAULTED_PAGES] = { .name = "page_faults_pages" },
	[HMR_CNT_INVALIDATIONS] = { .name = "page_invalidations" },
	[HMR_CNT_FENCE_WAITS] = { .name = "page_fence_waits" },
	[HMR_CNT_FENCE_WAIT_NS] = { .name = "page_fence_wait_ns" },
	[HMR_CNT_ACCESS_FAULTS] = { .name = "page_access_faults" },
	[HMR_CNT_PREFETCH] = { .name = "page_prefetch" },
};

static void hmr_stats_add(struct hmr_stats *sum, const struct hmr_stats *st, bool subtract)
{
	u64 *d = (u64 *)sum;
	const u64 *s = (const u64 *)st;
	unsigned int i;

	BUILD_BUG_ON(sizeof(*st) % sizeof(u64));
	for (i = 0; i < sizeof(*st) / sizeof(u64); i++)
		d[i] = subtract ? d[i] - s[i] : d[i] + s[i];
}

/* Take @mr out of the device's MRs, with its statistics so far into retired; @snap keeps them. */
void hmr_stats_retire_begin(struct hmr_dev *hdev, struct hmr_mr *mr, struct hmr_stats *snap)
{
	spin_lock(&hdev->stats_lock);
	xa_erase(&hdev->mrs, mr->ibmr.lkey >> 8);
	hmr_mirror_stats(&mr->mirror, snap);
	hmr_stats_add(&hdev->retired, snap, false);
	spin_unlock(&hdev->stats_lock);
}

/* Add what @mr counted since hmr_stats_retire_begin(): nothing counts for it after this. */
void hmr_stats_retire_end(struct hmr_dev *hdev, struct hmr_mr *mr, struct hmr_stats *snap)
{
	struct hmr_stats now;

	hmr_mirror_stats(&mr->mirror, &now);
	hmr_stats_add(&now, snap, true);
	spin_lock(&hdev->stats_lock);
	hmr_stats_add(&hdev->retired, &now, false);
	spin_unlock(&hdev->stats_lock);
}

struct rdma_hw_stats *hmr_alloc_hw_port_stats(struct ib_device *ibdev, u32 port)
{
	return rdma_alloc_hw_stats_struct(hmr_cnt_descs, HMR_CNT_NUM,
					  RDMA_HW_STATS_DEFAULT_LIFESPAN);
}

int hmr_get_hw_stats(struct ib_device *ibdev, struct rdma_hw_stats *stats, u32 port, int index)
{
	struct hmr_dev *hdev = to_hdev(ibdev);
	struct hmr_stats sum, st;
	struct hmr_mr *mr;
	unsigned long i;

	spin_lock(&hdev->stats_lock);
	sum = hdev->retired;
	xa_lock(&hdev->mrs);
	/* Under the xarray's lock dereg cannot erase, so none of these MRs is freed. */
	xa_for_each(&hdev->mrs, i, mr) {
		hmr_mirror_stats(&mr->mirror, &st);
		hmr_stats_add(&sum, &st, false);
	}
	xa_unlock(&hdev->mrs);
	spin_unlock(&hdev->stats_lock);

	stats->value[HMR_CNT_PAGE_FAULTS] = sum.populates;
	stats->value[HMR_CNT_FAULTED_PAGES] = sum.populated_pages;
	stats->value[HMR_CNT_INVALIDATIONS] = sum.invalidations;
	stats->value[HMR_CNT_FENCE_WAITS] = sum.fence_waits;
	stats->value[HMR_CNT_FENCE_WAIT_NS] = atomic64_read(&hdev->fence_wait_ns);
	stats->value[HMR_CNT_ACCESS_FAULTS] = sum.access_faults;
	stats->value[HMR_CNT_PREFETCH] = atomic64_read(&hdev->prefetched_pages);
	return HMR_CNT_NUM;
}
