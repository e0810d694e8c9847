// SPDX-License-Identifier: GPL-2.0
/*
 * test_stress.c - faults, invalidations and simulated DMA racing against a
 * shadow model of the CPU page table.
 *
 * Every simulated CPU page has a generation; its frame number encodes
 * (generation, page index). An invalidation bumps the generation of the
 * pages it covers only after hmr_mirror_invalidate() returned, i.e. after the
 * fence: the old frame is then "freed". A DMA chunk checks, when it starts
 * and again when it ends, that every frame it holds still has the current
 * generation. A mismatch is a use-after-invalidate (or a lost invalidation,
 * if a populate installed a stale frame).
 *
 * Usage: hmr_stress [seconds] [--broken]
 *   --broken bumps generations before the invalidation (no fence): the
 *   checker must then report violations (proves it can fail).
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "hmr_check.h"

#define NBLOCKS		8
#define NPAGES		(NBLOCKS * HMR_HUGE_PAGES)
#define BASE		((1UL << 30) - 4 * HMR_HUGE_SIZE)	/* crosses 1 GiB */
#define MAX_DMA		(20 * HMR_PAGE_SIZE)

static struct hmr_mirror m;
static struct hmr_sim sim;
static u32 gen[NPAGES];			/* current generation, atomic */
static u32 gen_next = 1;
static int stop, broken;
static long violations, dma_chunks, dma_misses, faults, inv_done, inv_busy;

static unsigned long rnd(unsigned long *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static u32 gen_of(unsigned long idx)
{
	return __atomic_load_n(&gen[idx], __ATOMIC_SEQ_CST);
}

static void count(long *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

static void fault(unsigned long *s, u64 *pfns)
{
	unsigned long idx = rnd(s) % NPAGES, n = 1 + rnd(s) % 64, i, seq;
	bool uniform = true;
	u32 g;
	int r;

	if (rnd(s) % 4 == 0) {
		idx &= ~(HMR_HUGE_PAGES - 1);
		n = HMR_HUGE_PAGES;
	}
	if (idx + n > NPAGES)
		n = NPAGES - idx;
	seq = sim_read_begin(&sim);
	for (i = 0; i < n; i++) {
		g = gen_of(idx + i);
		uniform &= g == gen_of(idx);
		pfns[i] = (u64)g * NPAGES + idx + i;
		pfns[i] |= HMR_PFN_VALID | (rnd(s) % 8 ? HMR_PFN_WRITE : 0);
	}
	for (i = 0; n == HMR_HUGE_PAGES && uniform && i < n; i++)
		pfns[i] |= HMR_PFN_HUGE | HMR_PFN_WRITE;
	r = hmr_mirror_populate(&m, BASE + idx * HMR_PAGE_SIZE, n, pfns, seq);
	CHECK(r == 0 || r == -EAGAIN);
	count(&faults);
}

static void *faulter(void *arg)
{
	unsigned long s = (unsigned long)arg;
	u64 *pfns = calloc(HMR_HUGE_PAGES, sizeof(*pfns));

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
		fault(&s, pfns);
	free(pfns);
	return NULL;
}

static void bump(unsigned long idx, unsigned long n)
{
	u32 g = __atomic_fetch_add(&gen_next, 1, __ATOMIC_SEQ_CST) + 1;
	unsigned long i;

	for (i = 0; i < n; i++)
		__atomic_store_n(&gen[idx + i], g, __ATOMIC_SEQ_CST);
}

static void invalidate(unsigned long *s)
{
	unsigned long idx = rnd(s) % NPAGES, n = 1 + rnd(s) % 700;
	bool blockable = rnd(s) % 4;
	unsigned long a;
	int r;

	if (rnd(s) % 8 == 0) {
		idx = 0;
		n = NPAGES;
	}
	if (idx + n > NPAGES)
		n = NPAGES - idx;
	a = BASE + idx * HMR_PAGE_SIZE;
	sim_inv_start(&sim);
	if (broken)
		bump(idx, n);
	r = hmr_mirror_invalidate(&m, a, a + n * HMR_PAGE_SIZE, blockable);
	CHECK(r == 0 || (r == -EAGAIN && !blockable));
	if (!r && !broken)
		bump(idx, n);	/* the CPU frees the old frames */
	count(r ? &inv_busy : &inv_done);
	sim_inv_end(&sim);
}

static void *invalidator(void *arg)
{
	unsigned long s = (unsigned long)arg;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		invalidate(&s);
		usleep(rnd(&s) % 200);
	}
	return NULL;
}

/* Check every frame of the chunk against the current generation. */
static void dma_check(struct hmr_access *acc, const char *when)
{
	unsigned long first = (acc->addr - BASE) >> HMR_PAGE_SHIFT, i, idx, pfn;
	u32 g;

	for (i = 0; i < acc->npages; i++) {
		pfn = acc->page[i] >> HMR_PAGE_SHIFT;
		idx = pfn % NPAGES;
		g = pfn / NPAGES;
		CHECK_EQ(idx, first + i);
		if (g == gen_of(idx))
			continue;
		if (__atomic_fetch_add(&violations, 1, __ATOMIC_RELAXED) < 5)
			fprintf(stderr, "violation: page %lu gen %u freed (now %u) %s DMA\n",
				idx, g, gen_of(idx), when);
	}
}

static void dma(unsigned long *s)
{
	unsigned long off = rnd(s) % (NPAGES * HMR_PAGE_SIZE), len = 1 + rnd(s) % MAX_DMA;
	unsigned long a = BASE + off, end, spin;
	bool write = rnd(s) & 1;
	struct hmr_access acc;
	int r;

	if (off + len > NPAGES * HMR_PAGE_SIZE)
		len = NPAGES * HMR_PAGE_SIZE - off;
	for (end = a + len; a < end; ) {
		r = hmr_access_begin(&m, &acc, a, end - a, write);
		if (r == -ENOENT) {
			count(&dma_misses);
			a = acc.fault_addr + HMR_PAGE_SIZE;
			continue;
		}
		CHECK_EQ(r, 0);
		if (r)
			return;
		dma_check(&acc, "at start of");
		for (spin = rnd(s) % 2000; spin; spin--)
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
		dma_check(&acc, "during");
		hmr_access_end(&m, &acc);
		count(&dma_chunks);
		a += acc.len;
	}
}

static void *dmaer(void *arg)
{
	unsigned long s = (unsigned long)arg;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
		dma(&s);
	return NULL;
}

/* Quiesced: every entry left must map the current frame. */
static void final_check(void)
{
	unsigned long i, pfn;
	u64 e;

	rcu_read_lock();
	for (i = 0; i < NPAGES; i++) {
		e = hmr_lookup(&m, BASE + i * HMR_PAGE_SIZE);
		if (!e)
			continue;
		pfn = hmr_entry_page(&m, e, BASE + i * HMR_PAGE_SIZE) >> HMR_PAGE_SHIFT;
		CHECK_EQ(pfn % NPAGES, i);
		CHECK_EQ(pfn / NPAGES, gen_of(i));
	}
	rcu_read_unlock();
}

int main(int argc, char **argv)
{
	static void *(*const role[])(void *) = {
		faulter, faulter, invalidator, invalidator, dmaer, dmaer, dmaer,
	};
	enum { NT = sizeof(role) / sizeof(role[0]) };
	double secs = argc > 1 ? atof(argv[1]) : 3;
	pthread_t t[NT];
	struct hmr_stats st;
	long live0;
	int i;

	broken = argc > 2 && !strcmp(argv[2], "--broken");
	live0 = hmr_user_allocs_live();
	CHECK_EQ(hmr_mirror_init(&m, &t_ops, &sim), 0);
	for (i = 0; i < NT; i++)
		pthread_create(&t[i], NULL, role[i], (void *)(0x9e3779b97f4a7c15UL * (i + 1)));
	usleep((useconds_t)(secs * 1e6));
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	final_check();
	hmr_mirror_stats(&m, &st);
	printf("geometry %u bits: faults %ld populates %llu stale %llu | invalidations %ld "
	       "busy %ld fence_waits %llu | dma chunks %ld misses %ld | violations %ld\n",
	       (unsigned int)HMR_LEVEL_BITS, faults, (unsigned long long)st.populates,
	       (unsigned long long)st.populate_stale, inv_done, inv_busy,
	       (unsigned long long)st.fence_waits, dma_chunks, dma_misses, violations);
	CHECK(st.populates > 0 && inv_done > 0 && dma_chunks > 0);
	hmr_check_empty_and_destroy(&m, live0);
	CHECK_EQ(violations, 0);
	printf("%s\n", hmr_check_failures ? "FAIL stress" : "ok stress");
	return hmr_check_failures ? 1 : 0;
}
