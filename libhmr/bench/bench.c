// SPDX-License-Identifier: GPL-2.0
/*
 * bench.c - libhmr micro-benchmark.
 *
 *   hmr_bench time              ns/op of every operation: "name ns_per_op" lines
 *   hmr_bench count OP N        run N iterations of OP, each in a call to
 *                               bench_OP() (noinline), for callgrind's
 *                               --toggle-collect=bench_OP: instructions/op
 *
 * OPs: lookup (present 4 KiB entry), populate512 (one full leaf table, warm),
 * inval2m (2 MiB of 512 present pages), inval1g (1 GiB holding 8 pages),
 * access (begin+end of a 16-page chunk), fence (invalidate of an unmapped
 * page: clear walk + fence scan, no access in flight).
 * "time" also measures fence_contended: the fence while another thread keeps
 * 16-page accesses in flight on the same range.
 */
#include <pthread.h>
#include <time.h>

#include "hmr_check.h"

#define BASE	(1UL << 40)
#define PG	HMR_PAGE_SIZE
#define NOINLINE __attribute__((noinline))

static struct hmr_mirror m;
static struct hmr_sim sim;
static u64 pfns[HMR_HUGE_PAGES];
static volatile u64 sink;
static int stop;

static void populate(unsigned long addr, unsigned long n)
{
	if (hmr_mirror_populate(&m, addr, n, pfns, sim_read_begin(&sim)))
		abort();
}

NOINLINE void bench_lookup(unsigned long i)
{
	sink = hmr_lookup(&m, BASE + ((i & 511) << HMR_PAGE_SHIFT));
}

NOINLINE void bench_populate512(unsigned long i)
{
	populate(BASE, HMR_HUGE_PAGES);
}

NOINLINE void bench_inval2m(unsigned long i)
{
	hmr_mirror_invalidate(&m, BASE, BASE + HMR_HUGE_SIZE, true);
}

NOINLINE void bench_inval1g(unsigned long i)
{
	hmr_mirror_invalidate(&m, BASE, BASE + (1UL << 30), true);
}

NOINLINE void bench_access(unsigned long i)
{
	struct hmr_access acc;

	if (hmr_access_begin(&m, &acc, BASE, HMR_CHUNK_PAGES * PG, true))
		abort();
	hmr_access_end(&m, &acc);
}

NOINLINE void bench_fence(unsigned long i)
{
	hmr_mirror_invalidate(&m, BASE + HMR_HUGE_SIZE, BASE + HMR_HUGE_SIZE + PG, true);
}

static void prep_inval1g(void)
{
	unsigned long k;

	for (k = 0; k < 8; k++)
		populate(BASE + k * (128UL << 20), 1);
}

struct op {
	const char *name;
	void (*fn)(unsigned long i);
	void (*prep)(void);	/* before each iteration, not measured */
	unsigned long iters;
};

static void prep_full(void)
{
	populate(BASE, HMR_HUGE_PAGES);
}

static const struct op ops[] = {
	{ "lookup", bench_lookup, NULL, 20000000 },
	{ "populate512", bench_populate512, NULL, 20000 },
	{ "inval2m", bench_inval2m, prep_full, 20000 },
	{ "inval1g", bench_inval1g, prep_inval1g, 20000 },
	{ "access", bench_access, NULL, 2000000 },
	{ "fence", bench_fence, NULL, 2000000 },
	{ NULL, NULL, NULL, 0 },
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double time_op(const struct op *o, unsigned long iters)
{
	double t = 0, t0;
	unsigned long i;

	if (!o->prep) {
		t0 = now_ns();
		for (i = 0; i < iters; i++)
			o->fn(i);
		return (now_ns() - t0) / iters;
	}
	for (i = 0; i < iters; i++) {
		o->prep();
		t0 = now_ns();
		o->fn(i);
		t += now_ns() - t0;
	}
	return t / iters;
}

static void setup(void)
{
	unsigned long k;

	for (k = 0; k < HMR_HUGE_PAGES; k++)
		pfns[k] = (0x1000 + k) | HMR_PFN_VALID | HMR_PFN_WRITE;
	if (hmr_mirror_init(&m, &t_ops, &sim))
		abort();
	populate(BASE, HMR_HUGE_PAGES);
}

static void *contender(void *arg)
{
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		struct hmr_access acc;

		if (!hmr_access_begin(&m, &acc, BASE + HMR_HUGE_SIZE, HMR_CHUNK_PAGES * PG, false)) {
			for (int k = 0; k < 200; k++)
				__atomic_signal_fence(__ATOMIC_SEQ_CST);
			hmr_access_end(&m, &acc);
		}
	}
	return NULL;
}

/* Fence of a page kept in flight by another thread: repopulate, then invalidate. */
static double time_fence_contended(unsigned long iters)
{
	double t = 0, t0;
	unsigned long i;
	pthread_t th;

	populate(BASE + HMR_HUGE_SIZE, HMR_CHUNK_PAGES);
	pthread_create(&th, NULL, contender, NULL);
	for (i = 0; i < iters; i++) {
		populate(BASE + HMR_HUGE_SIZE, HMR_CHUNK_PAGES);
		t0 = now_ns();
		sim_inv_start(&sim);
		hmr_mirror_invalidate(&m, BASE + HMR_HUGE_SIZE, BASE + HMR_HUGE_SIZE + PG, true);
		sim_inv_end(&sim);
		t += now_ns() - t0;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	return t / iters;
}

int main(int argc, char **argv)
{
	const struct op *o;
	struct hmr_stats st;
	unsigned long i, n;

	setup();
	if (argc == 4 && !strcmp(argv[1], "count")) {
		n = strtoul(argv[3], NULL, 0);
		for (o = ops; o->name && strcmp(o->name, argv[2]); o++)
			;
		if (!o->name)
			return 2;
		populate(BASE, HMR_HUGE_PAGES);
		if (o->fn == bench_lookup)
			rcu_read_lock();	/* the lookup's precondition */
		for (i = 0; i < n; i++) {
			if (o->prep)
				o->prep();
			o->fn(i);
		}
		if (o->fn == bench_lookup)
			rcu_read_unlock();
		return 0;
	}
	for (o = ops; o->name; o++) {
		populate(BASE, HMR_HUGE_PAGES);
		if (o->fn == bench_lookup)
			rcu_read_lock();
		printf("%s %.1f\n", o->name, time_op(o, o->iters));
		if (o->fn == bench_lookup)
			rcu_read_unlock();
	}
	printf("fence_contended %.1f\n", time_fence_contended(20000));
	hmr_mirror_stats(&m, &st);
	printf("fence_waits %llu\n", (unsigned long long)st.fence_waits);
	return 0;
}
