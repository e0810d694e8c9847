// SPDX-License-Identifier: GPL-2.0
/*
 * test_unit.c - unit tests of every libhmr operation and its edges.
 * Built for both geometries (9 and 3 bits per level) under ASan+UBSan.
 * Usage: hmr_unit [--list | CASE...]
 */
#include <pthread.h>
#include <unistd.h>

#include "hmr_check.h"

#define KB(x)	((unsigned long)(x) << 10)
#define MB(x)	((unsigned long)(x) << 20)
#define GB(x)	((unsigned long)(x) << 30)
#define PG	HMR_PAGE_SIZE

static struct hmr_sim sim;
static struct hmr_mirror m;
static long live0;

static void setup(void)
{
	memset(&sim, 0, sizeof(sim));
	rcu_barrier();
	live0 = hmr_user_allocs_live();
	CHECK_EQ(hmr_mirror_init(&m, &t_ops, &sim), 0);
}

/* Destroy and check nothing leaked (deferred frees included). */
static void teardown(void)
{
	hmr_mirror_destroy(&m);
	rcu_barrier();
	CHECK_EQ(hmr_user_allocs_live(), live0);
}

static struct hmr_stats stats(void)
{
	struct hmr_stats st;

	hmr_mirror_stats(&m, &st);
	return st;
}

static u64 *make_pfns(unsigned long n, u64 pfn0, u64 flags)
{
	u64 *p = calloc(n, sizeof(*p));
	unsigned long i;

	for (i = 0; i < n; i++)
		p[i] = (pfn0 + i) | HMR_PFN_VALID | flags;
	return p;
}

/* Populate @n pages from @addr with frames pfn0.. and HMR_PFN_* @flags. */
static int fill(unsigned long addr, unsigned long n, u64 pfn0, u64 flags)
{
	u64 *p = make_pfns(n, pfn0, flags);
	int r = hmr_mirror_populate(&m, addr, n, p, sim_read_begin(&sim));

	free(p);
	return r;
}

static u64 look(unsigned long addr)
{
	return hmr_check_lookup(&m, addr);
}

/* Device address of @addr's page, or ~0 when it is not mapped. */
static u64 page_of(unsigned long addr)
{
	u64 e = look(addr);

	return e ? hmr_entry_page(&m, e, addr) : ~0ULL;
}

static int inval(unsigned long start, unsigned long end)
{
	int r;

	sim_inv_start(&sim);
	r = hmr_mirror_invalidate(&m, start, end, true);
	sim_inv_end(&sim);
	return r;
}

static void t_init(void)
{
	struct hmr_mirror_ops bad = t_ops;

	live0 = hmr_user_allocs_live();
	bad.huge = 0x80;
	CHECK_EQ(hmr_mirror_init(&m, &bad, &sim), -EINVAL);
	bad.huge = 0x3;
	CHECK_EQ(hmr_mirror_init(&m, &bad, &sim), -EINVAL);
	bad = t_ops;
	bad.encode = NULL;	/* the masks' own format needs masks apart from the address */
	bad.addr_mask |= T_PRESENT;
	CHECK_EQ(hmr_mirror_init(&m, &bad, &sim), -EINVAL);
	bad = t_ops;
	bad.present = 0;
	CHECK_EQ(hmr_mirror_init(&m, &bad, &sim), -EINVAL);
	hmr_user_fail_alloc_after(0);
	CHECK_EQ(hmr_mirror_init(&m, &t_ops, &sim), -ENOMEM);
	hmr_user_fail_alloc_after(-1);
	CHECK_EQ(hmr_user_allocs_live(), live0);
	setup();
	CHECK_EQ(stats().tables, 1);
	CHECK_EQ(look(0), 0);
	CHECK_EQ(look(HMR_VA_END - PG), 0);
	teardown();
}

static void t_populate_lookup(void)
{
	unsigned long a = 0x7f0000000000UL + 5 * PG;
	u64 p[4] = { 100 | HMR_PFN_VALID | HMR_PFN_WRITE, 101,
		     102 | HMR_PFN_VALID, 103 | HMR_PFN_VALID | HMR_PFN_WRITE };

	setup();
	CHECK_EQ(hmr_mirror_populate(&m, a, 4, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(look(a), 100 << 12 | T_PRESENT | T_WRITE);
	CHECK_EQ(look(a + PG), 0);		/* not HMR_PFN_VALID: skipped */
	CHECK_EQ(look(a + 2 * PG), 102 << 12 | T_PRESENT);
	CHECK_EQ(look(a + 3 * PG + 123), 103 << 12 | T_PRESENT | T_WRITE);
	CHECK_EQ(look(a - PG), 0);
	CHECK_EQ(look(a + 4 * PG), 0);
	CHECK_EQ(page_of(a + 2 * PG + 7), 102 << 12);
	/* Repopulating replaces entries in place. */
	CHECK_EQ(fill(a, 1, 500, 0), 0);
	CHECK_EQ(look(a), 500 << 12 | T_PRESENT);
	CHECK_EQ(stats().populates, 2);
	CHECK_EQ(stats().populated_pages, 4);	/* 3 + 1: the hole is not counted */
	teardown();
}

static void t_populate_args(void)
{
	u64 p[2] = { 1 | HMR_PFN_VALID, 2 | HMR_PFN_VALID };

	setup();
	CHECK_EQ(hmr_mirror_populate(&m, PG + 1, 1, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_mirror_populate(&m, PG, 0, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_mirror_populate(&m, HMR_VA_END, 1, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_mirror_populate(&m, HMR_VA_END - PG, 2, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_mirror_populate(&m, PG, ~0UL, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_mirror_populate(&m, HMR_VA_END - PG, 1, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(look(HMR_VA_END - 1), 1 << 12 | T_PRESENT);
	CHECK_EQ(stats().populates, 1);
	teardown();
}

static void t_stale(void)
{
	u64 *p = make_pfns(HMR_HUGE_PAGES, 0x40000, HMR_PFN_HUGE);
	unsigned long seq;

	setup();
	seq = sim_read_begin(&sim);
	sim_inv_start(&sim);
	CHECK_EQ(hmr_mirror_invalidate(&m, 0, MB(4), true), 0);
	sim_inv_end(&sim);
	CHECK_EQ(hmr_mirror_populate(&m, MB(2), 3, p, seq), -EAGAIN);
	CHECK_EQ(hmr_mirror_populate(&m, MB(2), HMR_HUGE_PAGES, p, seq), -EAGAIN);
	CHECK_EQ(look(MB(2)), 0);
	CHECK_EQ(look(MB(2) + PG), 0);
	CHECK_EQ(stats().populate_stale, 2);
	CHECK_EQ(stats().populates, 0);
	/* A fresh sequence works; a stale check left no entry behind. */
	CHECK_EQ(hmr_mirror_populate(&m, MB(2), 3, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(page_of(MB(2) + 2 * PG), (0x40000ULL + 2) << 12);
	CHECK_EQ(inval(0, GB(1)), 0);
	CHECK_EQ(stats().tables, 1);
	free(p);
	teardown();
}

static void t_sparse(void)
{
	setup();
	CHECK_EQ(inval(0, GB(16)), 0);
	CHECK_EQ(inval(0, HMR_VA_END), 0);
	CHECK_EQ(stats().tables, 1);
	CHECK_EQ(fill(GB(8), 1, 7, 0), 0);
	CHECK_EQ(stats().tables, HMR_LEVELS);
	CHECK_EQ(fill(GB(8) + PG, 1, 8, 0), 0);
	CHECK_EQ(stats().tables, HMR_LEVELS);
	CHECK_EQ(look(GB(8) + PG), 8 << 12 | T_PRESENT);
	CHECK_EQ(inval(0, GB(16)), 0);
	CHECK_EQ(stats().tables, 1);
	CHECK_EQ(look(GB(8)), 0);
	teardown();
}

/* A leaf a partial clear empties stays (refault allocates nothing); a whole-leaf clear frees. */
static void t_kept_leaf(void)
{
	unsigned long a = GB(8), leaf = HMR_FANOUT * PG;

	setup();
	CHECK_EQ(fill(a + PG, 1, 7, 0), 0);
	CHECK_EQ(stats().tables, HMR_LEVELS);
	CHECK_EQ(inval(a + PG, a + 2 * PG), 0);
	CHECK_EQ(look(a + PG), 0);
	CHECK_EQ(stats().tables, HMR_LEVELS);
	CHECK_EQ(fill(a + PG, 1, 9, 0), 0);
	CHECK_EQ(stats().tables, HMR_LEVELS);
	CHECK_EQ(look(a + PG), 9 << 12 | T_PRESENT);
	CHECK_EQ(inval(a, a + leaf), 0);
	CHECK_EQ(look(a + PG), 0);
	CHECK_EQ(stats().tables, 1);
	teardown();
}

/* Populate 3 pages around each table boundary; clear the middle one; then all. */
static void t_boundaries(void)
{
	static const unsigned long edge[] = {
		KB(32), KB(256), MB(2), MB(16), GB(1), GB(1) << 9, GB(1) << 17,
	};
	unsigned int i;
	unsigned long a;

	setup();
	for (i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
		a = edge[i] - PG;
		CHECK_EQ(fill(a, 3, 10 * i + 1, 0), 0);
		CHECK_EQ(page_of(a), (10 * i + 1) << 12);
		CHECK_EQ(page_of(a + PG), (10 * i + 2) << 12);
		CHECK_EQ(page_of(a + 2 * PG), (10 * i + 3) << 12);
		CHECK_EQ(inval(a + PG, a + 2 * PG), 0);
		CHECK_EQ(page_of(a), (10 * i + 1) << 12);
		CHECK_EQ(look(a + PG), 0);
		CHECK_EQ(page_of(a + 2 * PG), (10 * i + 3) << 12);
	}
	a = HMR_VA_END - 2 * PG;
	CHECK_EQ(fill(a, 2, 99, 0), 0);
	CHECK_EQ(page_of(HMR_VA_END - 1), 100ULL << 12);
	CHECK_EQ(inval(0, HMR_VA_END), 0);
	CHECK_EQ(stats().tables, 1);
	teardown();
}

static void t_huge(void)
{
	u64 *p = make_pfns(HMR_HUGE_PAGES, 0x40000, HMR_PFN_HUGE | HMR_PFN_WRITE);
	unsigned long b = MB(4), i;
	u64 e;

	setup();
	CHECK_EQ(hmr_mirror_populate(&m, b, HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(stats().tables, HMR_LEVELS - HMR_HUGE_LEVEL);
	e = look(b + 5 * PG + 9);
	CHECK_EQ(e, 0x40000ULL << 12 | T_PRESENT | T_WRITE | T_HUGE);
	CHECK_EQ(page_of(b + 5 * PG + 9), (0x40000ULL + 5) << 12);
	CHECK_EQ(page_of(b + HMR_HUGE_SIZE - 1), (0x40000ULL + 511) << 12);
	CHECK_EQ(look(b - PG), 0);
	CHECK_EQ(look(b + HMR_HUGE_SIZE), 0);
	CHECK_EQ(stats().populated_pages, HMR_HUGE_PAGES);
	/* Clearing one page clears the whole 2 MiB leaf. */
	CHECK_EQ(inval(b + 2 * PG, b + 3 * PG), 0);
	CHECK_EQ(look(b), 0);
	CHECK_EQ(look(b + 100 * PG), 0);
	CHECK_EQ(stats().tables, 1);

	/* Not a huge leaf: misaligned frame, or a run shorter than 2 MiB. */
	p[0] += 1;
	CHECK_EQ(hmr_mirror_populate(&m, b, HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(look(b) & T_HUGE, 0);
	p[0] -= 1;
	CHECK_EQ(page_of(b + PG), (0x40001ULL) << 12);
	CHECK_EQ(hmr_mirror_populate(&m, b + HMR_HUGE_SIZE, HMR_HUGE_PAGES - 1, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(look(b + HMR_HUGE_SIZE) & T_HUGE, 0);

	/* Huge over small entries: every page still translates right. */
	CHECK_EQ(hmr_mirror_populate(&m, b, HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	for (i = 0; i < HMR_HUGE_PAGES; i++)
		CHECK_EQ(page_of(b + i * PG), (0x40000ULL + i) << 12);
	if (HMR_HUGE_LEVEL == 1)
		CHECK(look(b) & T_HUGE);

	/* Small over huge: the leaf goes, the rest refaults. */
	CHECK_EQ(inval(0, GB(1)), 0);
	CHECK_EQ(hmr_mirror_populate(&m, b, HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	CHECK(look(b) & T_HUGE);
	CHECK_EQ(fill(b + 10 * PG, 1, 777, 0), 0);
	CHECK_EQ(look(b + 10 * PG), 777 << 12 | T_PRESENT);
	CHECK_EQ(look(b + 11 * PG), 0);
	CHECK_EQ(inval(0, GB(1)), 0);
	CHECK_EQ(stats().tables, 1);
	free(p);
	teardown();
}

static void t_invalidate_args(void)
{
	setup();
	CHECK_EQ(hmr_mirror_invalidate(&m, PG, PG, true), -EINVAL);
	CHECK_EQ(hmr_mirror_invalidate(&m, 2 * PG, PG, true), -EINVAL);
	CHECK_EQ(hmr_mirror_invalidate(&m, 0, HMR_VA_END + PG, true), -EINVAL);
	CHECK_EQ(fill(MB(1), 2, 1, 0), 0);
	/* Unaligned: rounded out to whole pages. */
	CHECK_EQ(inval(MB(1) + 1, MB(1) + 2), 0);
	CHECK_EQ(look(MB(1)), 0);
	CHECK_EQ(page_of(MB(1) + PG), 2 << 12);
	CHECK_EQ(stats().invalidations, 1);	/* rejected calls do not count */
	CHECK_EQ(inval(0, HMR_VA_END), 0);
	teardown();
}

/* An invalidation counts only when it found something of the mirror. */
static void t_invalidate_counts(void)
{
	struct hmr_access acc;

	setup();
	CHECK_EQ(inval(GB(1), GB(1) + MB(2)), 0);	/* nothing mirrored there */
	CHECK_EQ(stats().invalidations, 0);
	CHECK_EQ(fill(MB(1), 4, 5, 0), 0);
	CHECK_EQ(inval(MB(1) + 4 * PG, MB(2)), 0);	/* next to the entries */
	CHECK_EQ(stats().invalidations, 0);
	CHECK_EQ(inval(MB(1) + PG, MB(1) + 2 * PG), 0);
	CHECK_EQ(stats().invalidations, 1);
	/* An access in flight on entries already cleared is still fenced, and counted. */
	CHECK_EQ(hmr_access_begin(&m, &acc, MB(1) + 2 * PG, PG, false), 0);
	CHECK_EQ(hmr_mirror_invalidate(&m, MB(1) + 2 * PG, MB(1) + 3 * PG, false), -EAGAIN);
	CHECK_EQ(hmr_mirror_invalidate(&m, MB(1) + 2 * PG, MB(1) + 3 * PG, false), -EAGAIN);
	CHECK_EQ(stats().invalidations, 3);
	hmr_access_end(&m, &acc);
	CHECK_EQ(inval(0, HMR_VA_END), 0);
	CHECK_EQ(stats().invalidations, 4);
	teardown();
}

/* Two windows over one mirror: the sharing rules of struct hmr_window. */
static void t_window_sharing(void)
{
	struct hmr_window rw, ro;
	struct hmr_access acc;
	u64 *p = make_pfns(4, 40, HMR_PFN_WRITE);

	setup();
	hmr_window_init(&rw, &m, MB(1), MB(1) + 4 * PG, true);
	hmr_window_init(&ro, &m, MB(1) + 100, MB(1) + 2 * PG + 5, false);
	/* A page faulted through one window is present for the other: no fault. */
	CHECK_EQ(hmr_window_populate(&rw, MB(1), 4, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(hmr_window_access_begin(&ro, &acc, MB(1) + 100, PG, false), 0);
	CHECK_EQ(acc.page[0], 40 << 12);
	hmr_access_end(&m, &acc);
	CHECK_EQ(stats().access_faults, 0);
	/* A read-only window never writes, though the entry is writable. */
	CHECK(look(MB(1) + PG) & T_WRITE);
	CHECK_EQ(hmr_window_access_begin(&ro, &acc, MB(1) + PG, 8, true), -EACCES);
	CHECK_EQ(hmr_window_access_begin(&rw, &acc, MB(1) + PG, 8, true), 0);
	hmr_access_end(&m, &acc);
	/* Each reaches its own range only: byte exact, overflow refused. */
	CHECK_EQ(hmr_window_access_begin(&ro, &acc, MB(1) + 99, 1, false), -EFAULT);
	CHECK_EQ(hmr_window_access_begin(&ro, &acc, MB(1) + 2 * PG + 4, 2, false), -EFAULT);
	CHECK_EQ(hmr_window_access_begin(&ro, &acc, MB(1) + 2 * PG + 4, 1, false), 0);
	hmr_access_end(&m, &acc);
	CHECK_EQ(hmr_window_access_begin(&rw, &acc, MB(1), 0, false), -EFAULT);
	CHECK_EQ(hmr_window_access_begin(&rw, &acc, ~0UL - 4, 10, false), -EFAULT);
	CHECK_EQ(hmr_window_access_begin(&rw, &acc, MB(1) + 4 * PG, 1, false), -EFAULT);
	/* Populating through a window stays inside its pages. */
	CHECK_EQ(hmr_window_populate(&ro, MB(1) + 2 * PG, 2, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_window_populate(&ro, MB(1) - PG, 1, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_window_populate(&ro, MB(1) + 3 * PG, 1, p, sim_read_begin(&sim)), -EINVAL);
	CHECK_EQ(hmr_window_populate(&ro, MB(1) + 2 * PG, 1, p, sim_read_begin(&sim)), 0);
	/* One invalidation of the address space clears the entries for both windows. */
	CHECK_EQ(inval(MB(1), MB(1) + PG), 0);
	CHECK_EQ(hmr_window_access_begin(&ro, &acc, MB(1) + 100, 1, false), -ENOENT);
	CHECK_EQ(hmr_window_access_begin(&rw, &acc, MB(1), 1, false), -ENOENT);
	CHECK_EQ(stats().invalidations, 1);
	/* Rights change in place (rereg): a window made writable writes. */
	WRITE_ONCE(ro.writable, true);
	CHECK_EQ(hmr_window_access_begin(&ro, &acc, MB(1) + PG, 8, true), 0);
	hmr_access_end(&m, &acc);
	free(p);
	teardown();
}

static void t_access_args(void)
{
	struct hmr_access acc;

	setup();
	CHECK_EQ(hmr_access_begin(&m, &acc, MB(1), 0, false), -EINVAL);
	CHECK_EQ(hmr_access_begin(&m, &acc, ~0UL - 10, 100, false), -EINVAL);
	CHECK_EQ(hmr_access_begin(&m, &acc, PG, ~0UL, false), -EINVAL);
	CHECK_EQ(hmr_access_begin(&m, &acc, HMR_VA_END - PG, 2 * PG, false), -EFAULT);
	CHECK_EQ(hmr_access_begin(&m, &acc, HMR_VA_END, 1, false), -EFAULT);
	CHECK_EQ(hmr_access_begin(&m, &acc, HMR_VA_END - PG, PG, false), -ENOENT);
	CHECK_EQ(acc.fault_addr, HMR_VA_END - PG);
	CHECK_EQ(stats().access_faults, 1);
	teardown();
}

/* Walk [addr, addr + len) chunk by chunk; returns bytes done before a fault. */
static unsigned long walk(unsigned long addr, unsigned long len, bool write,
			  u64 pfn0, unsigned long base, int *last)
{
	struct hmr_access acc;
	unsigned long done = 0, i;

	while (done < len) {
		*last = hmr_access_begin(&m, &acc, addr + done, len - done, write);
		if (*last)
			return done;
		CHECK(acc.npages <= HMR_CHUNK_PAGES);
		CHECK_EQ(acc.addr, addr + done);
		for (i = 0; i < acc.npages; i++)
			CHECK_EQ(acc.page[i], (pfn0 + ((addr + done - base) >> 12) + i) << 12);
		done += acc.len;
		hmr_access_end(&m, &acc);
	}
	return done;
}

static void t_access_chunks(void)
{
	unsigned long b = MB(2) - 20 * PG, len = 40 * PG - 100;
	struct hmr_access acc;
	u64 *p = make_pfns(40, 1000, HMR_PFN_WRITE);
	int last = 0;

	setup();
	p[30] &= ~HMR_PFN_WRITE;
	CHECK_EQ(hmr_mirror_populate(&m, b, 40, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(hmr_access_begin(&m, &acc, b + 100, len, false), 0);
	CHECK_EQ(acc.npages, HMR_CHUNK_PAGES);
	CHECK_EQ(acc.len, HMR_CHUNK_PAGES * PG - 100);
	hmr_access_end(&m, &acc);
	CHECK_EQ(walk(b + 100, len, false, 1000, b, &last), len);
	CHECK_EQ(last, 0);
	/* A write stops at the read-only page 30 and reports it. */
	CHECK_EQ(walk(b, 40 * PG, true, 1000, b, &last), 30 * PG);
	CHECK_EQ(last, -ENOENT);
	CHECK_EQ(hmr_access_begin(&m, &acc, b + 30 * PG + 5, 10, true), -ENOENT);
	CHECK_EQ(acc.fault_addr, b + 30 * PG);
	/* A chunk ends before a missing page. */
	CHECK_EQ(inval(b + 5 * PG, b + 6 * PG), 0);
	CHECK_EQ(hmr_access_begin(&m, &acc, b, 40 * PG, false), 0);
	CHECK_EQ(acc.npages, 5);
	CHECK_EQ(acc.len, 5 * PG);
	hmr_access_end(&m, &acc);
	CHECK_EQ(hmr_access_begin(&m, &acc, b + 5 * PG, PG, false), -ENOENT);
	CHECK_EQ(acc.fault_addr, b + 5 * PG);
	/* Sub-page access inside one page. */
	CHECK_EQ(hmr_access_begin(&m, &acc, b + 7 * PG + 10, 20, true), 0);
	CHECK_EQ(acc.len, 20);
	CHECK_EQ(acc.npages, 1);
	CHECK_EQ(acc.page[0], 1007ULL << 12);
	hmr_access_end(&m, &acc);
	CHECK_EQ(inval(0, HMR_VA_END), 0);
	free(p);
	teardown();
}

static void t_access_huge(void)
{
	u64 *p = make_pfns(HMR_HUGE_PAGES, 0x40000, HMR_PFN_HUGE);
	unsigned long b = GB(3);
	int last;

	setup();
	CHECK_EQ(hmr_mirror_populate(&m, b, HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(walk(b + 3, HMR_HUGE_SIZE - 3, false, 0x40000, b, &last),
		 HMR_HUGE_SIZE - 3);
	CHECK_EQ(walk(b, PG, true, 0x40000, b, &last), 0);
	CHECK_EQ(last, -ENOENT);
	CHECK_EQ(inval(b, b + PG), 0);
	free(p);
	teardown();
}

static void t_access_slots(void)
{
	static struct hmr_access acc[HMR_ACCESS_SLOTS + 1];
	unsigned int i;

	setup();
	CHECK_EQ(fill(MB(1), 1, 5, 0), 0);
	for (i = 0; i < HMR_ACCESS_SLOTS; i++)
		CHECK_EQ(hmr_access_begin(&m, &acc[i], MB(1), 8, false), 0);
	CHECK_EQ(hmr_access_begin(&m, &acc[i], MB(1), 8, false), -EBUSY);
	hmr_access_end(&m, &acc[3]);
	CHECK_EQ(hmr_access_begin(&m, &acc[3], MB(1), 8, false), 0);
	for (i = 0; i < HMR_ACCESS_SLOTS; i++)
		hmr_access_end(&m, &acc[i]);
	CHECK_EQ(inval(0, GB(1)), 0);
	CHECK_EQ(stats().fence_waits, 0);
	teardown();
}

static void t_fence_nonblock(void)
{
	struct hmr_access acc;

	setup();
	CHECK_EQ(fill(MB(1), 4, 5, 0), 0);
	CHECK_EQ(hmr_access_begin(&m, &acc, MB(1) + PG, 10, false), 0);
	sim_inv_start(&sim);
	CHECK_EQ(hmr_mirror_invalidate(&m, MB(1), MB(1) + 2 * PG, false), -EAGAIN);
	sim_inv_end(&sim);
	CHECK_EQ(look(MB(1) + PG), 0);		/* cleared even so */
	CHECK_EQ(stats().invalidate_busy, 1);
	/* Ranges that do not overlap the access do not wait. */
	CHECK_EQ(hmr_mirror_invalidate(&m, MB(1) + 2 * PG, MB(1) + 3 * PG, false), 0);
	CHECK_EQ(hmr_mirror_invalidate(&m, MB(1) - PG, MB(1) + PG, false), 0);
	hmr_access_end(&m, &acc);
	CHECK_EQ(hmr_mirror_invalidate(&m, MB(1), MB(1) + 2 * PG, false), 0);
	CHECK_EQ(stats().invalidate_busy, 1);
	CHECK_EQ(stats().fence_waits, 0);
	teardown();
}

static int fence_done;

static void *fence_thread(void *arg)
{
	CHECK_EQ(inval(MB(1), MB(1) + PG), 0);
	__atomic_store_n(&fence_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void t_fence_blocking(void)
{
	struct hmr_access acc, late;
	pthread_t t;

	setup();
	fence_done = 0;
	CHECK_EQ(fill(MB(1), 1, 5, 0), 0);
	CHECK_EQ(fill(GB(2), 1, 6, 0), 0);
	CHECK_EQ(hmr_access_begin(&m, &acc, MB(1), PG, false), 0);
	pthread_create(&t, NULL, fence_thread, NULL);
	usleep(100 * 1000);
	CHECK_EQ(__atomic_load_n(&fence_done, __ATOMIC_SEQ_CST), 0);
	/* The entry is gone for accesses that start now; unrelated ranges go on. */
	CHECK_EQ(hmr_access_begin(&m, &late, MB(1), PG, false), -ENOENT);
	CHECK_EQ(inval(GB(2), GB(2) + PG), 0);
	CHECK_EQ(__atomic_load_n(&fence_done, __ATOMIC_SEQ_CST), 0);
	hmr_access_end(&m, &acc);
	pthread_join(t, NULL);
	CHECK_EQ(fence_done, 1);
	CHECK_EQ(stats().fence_waits, 1);
	teardown();
}

/* Fail the n-th allocation of a multi-table populate, for every n. */
static void t_alloc_failure(void)
{
	static const unsigned long base[] = { MB(2) - 3 * PG, GB(5), GB(1) << 10 };
	unsigned long n, i, k, pages = 700;
	int r, failures = 0;
	u64 pfn, e;

	for (n = 0; n < 1000; n++) {
		setup();
		hmr_user_fail_alloc_after(n);
		r = 0;
		for (k = 0; k < 3 && !r; k++)
			r = fill(base[k], pages, 1000 * k, 0);
		hmr_user_fail_alloc_after(-1);
		CHECK(r == 0 || r == -ENOMEM);
		failures += r == -ENOMEM;
		for (k = 0; k < 3; k++) {
			for (i = 0; i < pages; i++) {
				e = look(base[k] + i * PG);
				pfn = 1000 * k + i;
				if (e != 0 || !r)
					CHECK_EQ(e, pfn << 12 | T_PRESENT);
			}
		}
		CHECK_EQ(inval(0, HMR_VA_END), 0);
		CHECK_EQ(stats().tables, 1);
		teardown();
		if (!r)
			break;
	}
	CHECK(failures >= 3 * (HMR_LEVELS - 1));
	printf("alloc_failure: %d failing runs\n", failures);
}

static void t_destroy_populated(void)
{
	u64 *p = make_pfns(HMR_HUGE_PAGES, 0x40000, HMR_PFN_HUGE);

	setup();
	CHECK_EQ(fill(GB(1) - PG, 1000, 1, 0), 0);
	CHECK_EQ(hmr_mirror_populate(&m, GB(7), HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	CHECK(stats().tables > HMR_LEVELS);
	free(p);
	teardown();
}

/* Another device format: present bit 3, write bit 5, huge bit 0, address at 16. */
static u64 f_encode(void *priv, u64 pfn, unsigned int flags)
{
	return (pfn << 16) | 0x8 | (flags & HMR_PTE_WRITE ? 0x20 : 0) |
	       (flags & HMR_PTE_HUGE ? 0x1 : 0);
}

static void t_custom_format(void)
{
	static const struct hmr_mirror_ops f_ops = {
		.present = 0x8, .writable = 0x20, .huge = 0x1,
		.addr_mask = ~0xffffULL, .encode = f_encode,
		.seq_stale = sim_seq_stale,
	};
	u64 *p = make_pfns(HMR_HUGE_PAGES, 0x200, HMR_PFN_HUGE);
	struct hmr_access acc;

	memset(&sim, 0, sizeof(sim));
	rcu_barrier();
	live0 = hmr_user_allocs_live();
	CHECK_EQ(hmr_mirror_init(&m, &f_ops, &sim), 0);
	CHECK_EQ(fill(MB(1), 2, 3, HMR_PFN_WRITE), 0);
	CHECK_EQ(look(MB(1)), 3 << 16 | 0x28);
	CHECK_EQ(hmr_mirror_populate(&m, MB(4), HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(look(MB(4) + PG), 0x200ULL << 16 | 0x9);
	CHECK_EQ(hmr_access_begin(&m, &acc, MB(1), 2 * PG, true), 0);
	CHECK_EQ(acc.page[1], 4ULL << 16);
	hmr_access_end(&m, &acc);
	CHECK_EQ(hmr_access_begin(&m, &acc, MB(4) + 2 * PG, PG, false), 0);
	CHECK_EQ(acc.page[0], (0x200ULL << 16) + 2 * PG);
	hmr_access_end(&m, &acc);
	CHECK_EQ(hmr_access_begin(&m, &acc, MB(4), PG, true), -ENOENT);
	free(p);
	teardown();
}

/* Without an encode() callback the entries are the masks' own format: t_encode()'s. */
static void t_default_format(void)
{
	struct hmr_mirror_ops d_ops = t_ops;
	u64 *p = make_pfns(HMR_HUGE_PAGES, 0x400, HMR_PFN_HUGE | HMR_PFN_WRITE);

	d_ops.encode = NULL;
	memset(&sim, 0, sizeof(sim));
	rcu_barrier();
	live0 = hmr_user_allocs_live();
	CHECK_EQ(hmr_mirror_init(&m, &d_ops, &sim), 0);
	CHECK_EQ(fill(MB(1), 2, 3, HMR_PFN_WRITE), 0);
	CHECK_EQ(fill(MB(1) + 2 * PG, 1, 9, 0), 0);
	CHECK_EQ(look(MB(1)), t_encode(NULL, 3, HMR_PTE_WRITE));
	CHECK_EQ(look(MB(1) + PG), t_encode(NULL, 4, HMR_PTE_WRITE));
	CHECK_EQ(look(MB(1) + 2 * PG), t_encode(NULL, 9, 0));
	CHECK_EQ(hmr_mirror_populate(&m, MB(4), HMR_HUGE_PAGES, p, sim_read_begin(&sim)), 0);
	CHECK_EQ(look(MB(4) + PG), t_encode(NULL, 0x400, HMR_PTE_WRITE | HMR_PTE_HUGE));
	free(p);
	teardown();
}

/* Deferred frees wait for readers; a reader in progress keeps objects alive. */
static void t_user_rcu(void)
{
	long live = hmr_user_allocs_live();
	void *a = hmr_os_zalloc(64, GFP_KERNEL);

	CHECK(a != NULL);
	CHECK_EQ(hmr_user_allocs_live(), live + 1);
	hmr_os_free_deferred(a);
	CHECK_EQ(hmr_user_allocs_live(), live + 1);
	rcu_barrier();
	CHECK_EQ(hmr_user_allocs_live(), live);
	rcu_read_lock();
	rcu_read_lock();
	rcu_read_unlock();
	rcu_read_unlock();
	synchronize_rcu();
	CHECK_EQ(hmr_user_warnings(), 0);
}

static const struct hmr_case cases[] = {
	{ "init", t_init },
	{ "populate_lookup", t_populate_lookup },
	{ "populate_args", t_populate_args },
	{ "stale", t_stale },
	{ "sparse", t_sparse },
	{ "kept_leaf", t_kept_leaf },
	{ "boundaries", t_boundaries },
	{ "huge", t_huge },
	{ "invalidate_args", t_invalidate_args },
	{ "invalidate_counts", t_invalidate_counts },
	{ "window_sharing", t_window_sharing },
	{ "access_args", t_access_args },
	{ "access_chunks", t_access_chunks },
	{ "access_huge", t_access_huge },
	{ "access_slots", t_access_slots },
	{ "fence_nonblock", t_fence_nonblock },
	{ "fence_blocking", t_fence_blocking },
	{ "alloc_failure", t_alloc_failure },
	{ "destroy_populated", t_destroy_populated },
	{ "custom_format", t_custom_format },
	{ "default_format", t_default_format },
	{ "user_rcu", t_user_rcu },
	{ NULL, NULL },
};

int main(int argc, char **argv)
{
	alarm(60);	/* a fence that never returns fails the run */
	if (argc < 2 || strcmp(argv[1], "--list"))
		printf("geometry: %lu bits/level, %u levels, huge level %u\n",
		       (unsigned long)HMR_LEVEL_BITS, (unsigned int)HMR_LEVELS,
		       (unsigned int)HMR_HUGE_LEVEL);
	return hmr_run_cases(cases, argc, argv);
}
