// SPDX-License-Identifier: GPL-2.0
/*
 * Per-device memory counters: the libhmr statistics of every mirror of the device (one per
 * process, hmr_mm.c), summed, as the port's hw counters (`rdma statistic show link hmr0/1`,
 * /sys/class/infiniband/hmr0/ports/1/hw_counters). Names follow mlx5's ODP counters.
 * What was done through each MR alone (its faults and prefetches): `rdma statistic show mr`
 * (hmr_fill_stat_mr_entry). Invalidations are the mirror's, not an MR's: one invalidation
 * reaches the mirror once, whatever the number of MRs over the range.
 */
#include <net/netlink.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_netlink.h>
#include <rdma/restrack.h>

#include "hmr_dev.h"
#include "hmr_wire.h"

enum {
	HMR_CNT_PAGE_FAULTS,		/* faults that installed pages (populate calls) */
	HMR_CNT_FAULTED_PAGES,		/* pages installed by them */
	HMR_CNT_INVALIDATIONS,		/* notifier invalidations that reached a mirror */
	HMR_CNT_FENCE_WAITS,		/* in-flight chunks an invalidation waited for */
	HMR_CNT_FENCE_WAIT_NS,		/* time invalidations that waited spent in the fence */
	HMR_CNT_ACCESS_FAULTS,		/* DMA engine accesses that found a page missing */
	HMR_CNT_PREFETCH,		/* pages prefetched by advise_mr */
	HMR_CNT_NONBLOCK,		/* non-blockable invalidations (OOM reaper) that reached a mirror */
	HMR_CNT_BUSY,			/* of those, answered busy: a chunk was in flight on the range */
	HMR_CNT_TABLES,			/* live page tables of the live mirrors (4 KiB of entries each) */
	HMR_CNT_FAULT_NS,		/* time the DMA engine spent in faults, look-ups included */
	HMR_CNT_LOOKUP_NS,		/* time in HMM look-ups of present pages (faults, prefetch) */
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
	[HMR_CNT_NONBLOCK] = { .name = "page_invalidations_nonblock" },
	[HMR_CNT_BUSY] = { .name = "page_invalidations_busy" },
	[HMR_CNT_TABLES] = { .name = "page_tables" },
	[HMR_CNT_FAULT_NS] = { .name = "page_fault_ns" },
	[HMR_CNT_LOOKUP_NS] = { .name = "page_lookup_ns" },
};

/*
 * The port's counters: the memory ones above, then the wire transport's (names as rxe's),
 * then two counted before a packet reaches a device (hmr_net.c, for all devices).
 */
#define HMR_PORT_CNT_WIRE	HMR_CNT_NUM
#define HMR_PORT_CNT_ICRC	(HMR_PORT_CNT_WIRE + HMR_WIRE_NUM)
#define HMR_PORT_CNT_RX_DROP	(HMR_PORT_CNT_ICRC + 1)
#define HMR_PORT_CNT_NUM	(HMR_PORT_CNT_RX_DROP + 1)

static struct rdma_stat_desc hmr_port_descs[HMR_PORT_CNT_NUM] = {
	[HMR_PORT_CNT_WIRE + HMR_WIRE_SENT] = { .name = "sent_pkts" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_RCVD] = { .name = "rcvd_pkts" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_RETRANSMITS] = { .name = "retry_pkts" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_TIMEOUTS] = { .name = "ack_timeouts" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_SEQ_ERR] = { .name = "rcvd_seq_err" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_RNR_SENT] = { .name = "send_rnr_err" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_RNR_RCVD] = { .name = "rcvd_rnr_err" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_DUP] = { .name = "duplicate_request" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_NAK_SENT] = { .name = "sent_naks" },
	[HMR_PORT_CNT_WIRE + HMR_WIRE_DROPPED] = { .name = "rcvd_pkts_dropped" },
	[HMR_PORT_CNT_WIRE + HMR_MAD_SENT] = { .name = "mad_sent" },
	[HMR_PORT_CNT_WIRE + HMR_MAD_RCVD] = { .name = "mad_rcvd" },
	[HMR_PORT_CNT_WIRE + HMR_MAD_DROPPED] = { .name = "mad_dropped" },
	[HMR_PORT_CNT_ICRC] = { .name = "rcvd_icrc_err" },
	[HMR_PORT_CNT_RX_DROP] = { .name = "rcvd_pkts_refused" },
};

void hmr_stats_add(struct hmr_stats *sum, const struct hmr_stats *st, bool subtract)
{
	u64 *d = (u64 *)sum;
	const u64 *s = (const u64 *)st;
	unsigned int i;

	BUILD_BUG_ON(sizeof(*st) % sizeof(u64));
	for (i = 0; i < sizeof(*st) / sizeof(u64); i++)
		d[i] = subtract ? d[i] - s[i] : d[i] + s[i];
}

/* The counters, from mirror statistics @st and those @hdev counts outside libhmr. */
static void hmr_stats_values(u64 *value, const struct hmr_stats *st, struct hmr_dev *hdev)
{
	value[HMR_CNT_PAGE_FAULTS] = st->populates;
	value[HMR_CNT_FAULTED_PAGES] = st->populated_pages;
	value[HMR_CNT_INVALIDATIONS] = st->invalidations;
	value[HMR_CNT_FENCE_WAITS] = st->fence_waits;
	value[HMR_CNT_FENCE_WAIT_NS] = atomic64_read(&hdev->fence_wait_ns);
	value[HMR_CNT_ACCESS_FAULTS] = st->access_faults;
	value[HMR_CNT_PREFETCH] = atomic64_read(&hdev->prefetched_pages);
	value[HMR_CNT_NONBLOCK] = atomic64_read(&hdev->nonblock_invalidations);
	value[HMR_CNT_BUSY] = st->invalidate_busy;
	value[HMR_CNT_TABLES] = st->tables;
	value[HMR_CNT_FAULT_NS] = hmr_fault_clock_ns(atomic64_read(&hdev->fault_clock));
	value[HMR_CNT_LOOKUP_NS] = hmr_fault_clock_ns(atomic64_read(&hdev->lookup_clock));
}

struct rdma_hw_stats *hmr_alloc_hw_port_stats(struct ib_device *ibdev, u32 port)
{
	unsigned int i;

	for (i = 0; i < HMR_CNT_NUM; i++)
		hmr_port_descs[i] = hmr_cnt_descs[i];
	return rdma_alloc_hw_stats_struct(hmr_port_descs, HMR_PORT_CNT_NUM,
					  RDMA_HW_STATS_DEFAULT_LIFESPAN);
}

int hmr_get_hw_stats(struct ib_device *ibdev, struct rdma_hw_stats *stats, u32 port, int index)
{
	struct hmr_dev *hdev = to_hdev(ibdev);
	struct hmr_stats sum;
	unsigned int i;

	hmr_mm_stats_sum(hdev, &sum);

	hmr_stats_values(stats->value, &sum, hdev);
	for (i = 0; i < HMR_WIRE_NUM; i++)
		stats->value[HMR_PORT_CNT_WIRE + i] = atomic64_read(&hdev->wire_cnt[i]);
	stats->value[HMR_PORT_CNT_ICRC] = atomic64_read(&hmr_net_icrc_errors);
	stats->value[HMR_PORT_CNT_RX_DROP] = atomic64_read(&hmr_net_rx_dropped);
	return HMR_PORT_CNT_NUM;
}

/* The counters an MR has of its own (what was done through it), in hmr_cnt_descs' order. */
static const u8 hmr_mr_cnts[] = {
	HMR_CNT_PAGE_FAULTS, HMR_CNT_FAULTED_PAGES, HMR_CNT_ACCESS_FAULTS, HMR_CNT_PREFETCH,
};

/*
 * The counters of one MR, for `rdma statistic show mr`: the core calls this for each MR in its
 * resource tracker, holding the tracker's reference, so dereg (which drops the MR from the
 * tracker first and waits for that reference) cannot free the MR meanwhile. Every MR is
 * mirrored, so every MR has them, ODP or not.
 */
int hmr_fill_stat_mr_entry(struct sk_buff *msg, struct ib_mr *ibmr)
{
	struct hmr_mr *mr = to_hmr(ibmr);
	u64 value[HMR_CNT_NUM] = {};
	struct nlattr *table;
	unsigned int i;

	value[HMR_CNT_PAGE_FAULTS] = atomic64_read(&mr->faults);
	value[HMR_CNT_FAULTED_PAGES] = atomic64_read(&mr->faulted_pages);
	value[HMR_CNT_ACCESS_FAULTS] = atomic64_read(&mr->access_faults);
	value[HMR_CNT_PREFETCH] = atomic64_read(&mr->prefetched_pages);
	table = nla_nest_start(msg, RDMA_NLDEV_ATTR_STAT_HWCOUNTERS);
	if (!table)
		return -EMSGSIZE;
	for (i = 0; i < ARRAY_SIZE(hmr_mr_cnts); i++)
		if (rdma_nl_stat_hwcounter_entry(msg, hmr_cnt_descs[hmr_mr_cnts[i]].name,
						 value[hmr_mr_cnts[i]]))
			goto err_cancel;
	nla_nest_end(msg, table);
	return 0;

err_cancel:
	nla_nest_cancel(msg, table);
	return -EMSGSIZE;
}
