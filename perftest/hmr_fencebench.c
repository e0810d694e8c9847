// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_fencebench: latency of address-space changes over an ODP region the device is writing.
 *
 *   hmr_fencebench -d DEV -o [-n SAMPLES]
 *
 * A 64 MiB region is registered with IBV_ACCESS_ON_DEMAND (-o is required: a pinned MR does
 * not follow the page table). A writer thread streams 1 MiB RDMA WRITEs (up to 4 in flight)
 * over its 1 MiB slices through qp[0] -> qp[1] of the same device, while the main thread times
 * (clock_gettime(CLOCK_MONOTONIC)) SAMPLES operations (default 200) on the slice being written:
 *   dontneed_busy  madvise(MADV_DONTNEED) of the slice
 *   remap_busy     munmap + mmap(MAP_FIXED) of the slice (anonymous, same address)
 * Each busy sample waits until two more writes completed since the previous one. The baseline
 * rows (dontneed_idle, remap_idle) time the same operations with no traffic, each on a slice
 * that one RDMA WRITE just faulted in. Prints:
 *   device,op,samples,p50_ns,p99_ns,max_ns,writes,wr_errors,cpu_p50_ns,cpu_p99_ns,
 *   fence_waits,fence_wait_ns,wall_ns,cpu_ns,runq_ns,blocked_ns
 * Where the time goes: cpu_* are the same operations timed by the thread's own CPU clock
 * (CLOCK_THREAD_CPUTIME_ID); wall_ns, cpu_ns, runq_ns and blocked_ns are sums over the row's
 * samples of the wall time, the CPU time, the time the thread waited runnable for a CPU and
 * the time it was blocked (mmap_lock, a fence: D state), these two from the scheduler's
 * statistics (/proc/thread-self/sched, with kernel.sched_schedstats turned on; empty without);
 * fence_waits and fence_wait_ns are the device's page_fence_waits and page_fence_wait_ns
 * counters over the row's phase (empty where the device has none): the part of the blocked
 * time the invalidations spent waiting for chunks, the rest is mmap_lock.
 * writes is the number of WRITE completions during that row's phase and wr_errors how many of
 * them had an error status (a device may fail a WRITE that races with munmap: the writer counts
 * it, resets both QPs and goes on -- once the timed operation is over: the reset is the
 * application's work, not the invalidation's, and on the guest's one vCPU it would be timed
 * as the operation's). Data check: after the writer stops every byte is 0 or its
 * pattern, then one verified WRITE per slice must land in the (remapped) pages; a mismatch is
 * an error (exit 1). The whole run is bounded by alarm(): a hang exits 1 with a message.
 * Exit 77 if DEV has no RC ODP for WRITE and READ.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLICE (1ul << 20)
#define NSLICES 64
#define REGION (NSLICES * SLICE)
#define DEPTH 4
#define PAT 0x5a
#define PAT_FINAL 0xa5
#define ALARM_S 600

struct fence {
	struct bench b;
	const char *dev;
	int samples;
	struct bench_buf region, src;
	uint64_t *lat, *cpu;
	uint64_t runq, blocked;	/* sums over the phase's timed operations (schedstats) */
	int schedstats;		/* the fields are there */
	atomic_int stop, failed;
	atomic_int timing;		/* the main thread is in a timed operation */
	atomic_uint cur;		/* slice of the oldest WRITE in flight */
	atomic_ulong writes, errors;	/* completions, and those with an error status */
};

enum fop { DONTNEED, REMAP };

static void on_alarm(int sig)
{
	static const char msg[] = "hmr_fencebench: timed out (hang?)\n";

	ssize_t n = write(2, msg, sizeof(msg) - 1);

	(void)sig;
	(void)n;
	_exit(1);
}

/* After an error completion: wait for the rest to flush, then reconnect both QPs. */
static int writer_recover(struct fence *f, unsigned int *outstanding)
{
	struct ibv_wc wc;

	while (*outstanding) {
		if (bench_poll(&f->b, &wc, BENCH_POLL_TIMEOUT_NS) <= 0)
			return -1;
		(*outstanding)--;
		atomic_fetch_add(&f->writes, 1);
		if (wc.status != IBV_WC_SUCCESS)
			atomic_fetch_add(&f->errors, 1);
	}
	return bench_reconnect(&f->b) ? -1 : 0;
}

/* Post WRITEs until DEPTH are in flight; 0, or -1 if a post failed (the QP is in error). */
static int writer_fill(struct fence *f, unsigned int *next, unsigned int *outstanding)
{
	while (!atomic_load(&f->stop) && *outstanding < DEPTH) {
		if (bench_post(&f->b, IBV_WR_RDMA_WRITE, f->src.buf, f->src.mr->lkey, SLICE,
			       f->region.buf + *next * SLICE, f->region.mr->rkey, *next))
			return -1;
		*next = (*next + 1) % NSLICES;
		(*outstanding)++;
	}
	return 0;
}

static void *writer(void *arg)
{
	struct fence *f = arg;
	unsigned int next = 0, outstanding = 0;
	struct ibv_wc wc;

	while (!atomic_load(&f->stop) || outstanding) {
		int broken = writer_fill(f, &next, &outstanding);

		atomic_store(&f->cur, (next + NSLICES - outstanding) % NSLICES);
		if (!broken && outstanding) {
			int n = ibv_poll_cq(f->b.cq, 1, &wc);

			/* none yet: sleep, not spin, so the one CPU of the instruction-clock guest
			 * is the device's and the timed thread's (poll, wait, poll: none missed) */
			if (n == 0 && bench_wait_cq(&f->b, 100) >= 0)
				continue;
			if (n <= 0) {
				fprintf(stderr, "hmr_fencebench: polling the CQ failed\n");
				atomic_store(&f->failed, 1);
				return NULL;
			}
			outstanding--;
			atomic_fetch_add(&f->writes, 1);
			if (wc.status != IBV_WC_SUCCESS) {
				atomic_fetch_add(&f->errors, 1);
				broken = 1;
			}
		}
		while (broken && atomic_load(&f->timing))
			usleep(50);	/* asleep: the timed operation keeps the CPU */
		if (broken && writer_recover(f, &outstanding)) {
			fprintf(stderr, "hmr_fencebench: writer cannot recover the QPs\n");
			atomic_store(&f->failed, 1);
			return NULL;
		}
	}
	return NULL;
}

static int do_op(char *p, enum fop op)
{
	if (op == DONTNEED) {
		if (!madvise(p, SLICE, MADV_DONTNEED))
			return 0;
		perror("madvise(MADV_DONTNEED)");
		return -1;
	}
	if (munmap(p, SLICE)) {
		perror("munmap");
		return -1;
	}
	if (mmap(p, SLICE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
	    != p) {
		perror("mmap(MAP_FIXED)");
		return -1;
	}
	return 0;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Scheduler statistics of this thread: wait_sum (runnable) and sum_block_runtime, in ns. */
static int sched_stats(uint64_t *runq, uint64_t *blocked)
{
	char line[256], name[64];
	int found = 0;
	double ms;
	FILE *f = fopen("/proc/thread-self/sched", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s : %lf", name, &ms) != 2)
			continue;
		if (!strcmp(name, "wait_sum") && ++found)
			*runq = (uint64_t)(ms * 1e6);
		else if (!strcmp(name, "sum_block_runtime") && ++found)
			*blocked = (uint64_t)(ms * 1e6);
	}
	if (f)
		fclose(f);
	return found == 2 ? 0 : -1;
}

/* Turn the scheduler's statistics on (root); 1 if this thread's are readable then. */
static int schedstats_on(void)
{
	FILE *f = fopen("/proc/sys/kernel/sched_schedstats", "w");
	uint64_t r, b;

	if (f) {
		fputs("1", f);
		fclose(f);
	}
	return !sched_stats(&r, &b);
}

static int timed_op(struct fence *f, int i, enum fop op, unsigned int slice)
{
	uint64_t r0 = 0, b0 = 0, r1 = 0, b1 = 0, c0, t0;
	int err;

	atomic_store(&f->timing, 1);
	sched_stats(&r0, &b0);
	c0 = cpu_ns();
	t0 = now_ns();
	err = do_op(f->region.buf + slice * SLICE, op);
	f->lat[i] = now_ns() - t0;
	f->cpu[i] = cpu_ns() - c0;
	atomic_store(&f->timing, 0);
	if (err)
		return -1;
	if (!sched_stats(&r1, &b1)) {
		f->runq += r1 - r0;
		f->blocked += b1 - b0;
	}
	return 0;
}

/* The fence counters at the start of a phase. */
struct fence_cnt {
	long long waits, ns;
};

static void fence_cnt(struct fence *f, struct fence_cnt *c)
{
	c->waits = bench_hw_counter(f->dev, "page_fence_waits");
	c->ns = bench_hw_counter(f->dev, "page_fence_wait_ns");
}

static void print_row(struct fence *f, const char *op, unsigned long writes,
		      unsigned long errors, const struct fence_cnt *c0)
{
	uint64_t p50 = bench_percentile(f->lat, f->samples, 50);
	struct fence_cnt c;
	char fw[64] = ",";

	uint64_t wall = 0, cpu = 0;
	char st[64] = ",";

	for (int i = 0; i < f->samples; i++) {
		wall += f->lat[i];
		cpu += f->cpu[i];
	}
	fence_cnt(f, &c);
	if (c0->waits >= 0 && c.waits >= 0)
		snprintf(fw, sizeof(fw), "%lld,%lld", c.waits - c0->waits, c.ns - c0->ns);
	if (f->schedstats)
		snprintf(st, sizeof(st), "%" PRIu64 ",%" PRIu64, f->runq, f->blocked);
	printf("%s,%s,%d,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%lu,%lu,%" PRIu64 ",%" PRIu64
	       ",%s,%" PRIu64 ",%" PRIu64 ",%s\n",
	       f->dev, op, f->samples, p50, bench_percentile(f->lat, f->samples, 99),
	       f->lat[f->samples - 1], writes, errors, bench_percentile(f->cpu, f->samples, 50),
	       bench_percentile(f->cpu, f->samples, 99), fw, wall, cpu, st);
	fflush(stdout);
	f->runq = 0;
	f->blocked = 0;
}

/* Baseline: fault a slice in with one verified WRITE, then time OP on it; no other traffic. */
static int run_idle(struct fence *f, enum fop op)
{
	struct fence_cnt c0;

	fence_cnt(f, &c0);
	for (int i = 0; i < f->samples; i++) {
		char *p = f->region.buf + (i % NSLICES) * SLICE;

		if (bench_rdma_sync(&f->b, IBV_WR_RDMA_WRITE, f->src.buf, f->src.mr->lkey, SLICE, p,
				    f->region.mr->rkey))
			return -1;
		if (bench_check_fill(p, SLICE, PAT) != SLICE) {
			fprintf(stderr, "hmr_fencebench: data mismatch in slice %d\n", i % NSLICES);
			return -1;
		}
		if (timed_op(f, i, op, i % NSLICES))
			return -1;
	}
	print_row(f, op == DONTNEED ? "dontneed_idle" : "remap_idle", f->samples, 0, &c0);
	return 0;
}

static int run_busy(struct fence *f, enum fop op)
{
	unsigned long w0 = atomic_load(&f->writes), e0 = atomic_load(&f->errors);
	struct fence_cnt c0;

	fence_cnt(f, &c0);
	for (int i = 0; i < f->samples; i++) {
		unsigned long want = atomic_load(&f->writes) + 2;

		while (atomic_load(&f->writes) < want && !atomic_load(&f->failed))
			usleep(100);	/* asleep, not runnable: no share of the CPU taken */
		if (atomic_load(&f->failed) || timed_op(f, i, op, atomic_load(&f->cur)))
			return -1;
	}
	print_row(f, op == DONTNEED ? "dontneed_busy" : "remap_busy",
		  atomic_load(&f->writes) - w0, atomic_load(&f->errors) - e0, &c0);
	return 0;
}

static int run_traffic(struct fence *f)
{
	pthread_t t;
	int err = pthread_create(&t, NULL, writer, f), rc;

	if (err) {
		fprintf(stderr, "pthread_create: %s\n", strerror(err));
		return -1;
	}
	rc = run_busy(f, DONTNEED);
	if (!rc)
		rc = run_busy(f, REMAP);
	atomic_store(&f->stop, 1);
	pthread_join(t, NULL);
	return rc || atomic_load(&f->failed) ? -1 : 0;
}

/* Every byte written by the stream is PAT or 0 (dropped); then each slice takes a new WRITE. */
static int verify(struct fence *f)
{
	for (size_t i = 0; i < REGION; i++)
		if (f->region.buf[i] != PAT && f->region.buf[i] != 0) {
			fprintf(stderr, "hmr_fencebench: data mismatch at offset %zu: %#x\n", i,
				(unsigned char)f->region.buf[i]);
			return -1;
		}
	memset(f->src.buf, PAT_FINAL, SLICE);
	for (int s = 0; s < NSLICES; s++) {
		char *p = f->region.buf + s * SLICE;

		if (bench_rdma_sync(&f->b, IBV_WR_RDMA_WRITE, f->src.buf, f->src.mr->lkey, SLICE, p,
				    f->region.mr->rkey))
			return -1;
		if (bench_check_fill(p, SLICE, PAT_FINAL) != SLICE) {
			fprintf(stderr, "hmr_fencebench: slice %d did not receive the final write\n",
				s);
			return -1;
		}
	}
	return 0;
}

static int setup(struct fence *f)
{
	int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
		     IBV_ACCESS_ON_DEMAND;
	int err = bench_start(&f->b, "hmr_fencebench", f->dev, 1, 2 * DEPTH);

	if (err)
		return err;
	f->lat = calloc(f->samples, sizeof(*f->lat));
	f->cpu = calloc(f->samples, sizeof(*f->cpu));
	if (!f->lat || !f->cpu) {
		perror("hmr_fencebench: calloc");
		return 1;
	}
	/* the region's slices are 4 KiB pages: no THP splitting inside the timed operations */
	if (bench_buf_init(&f->b, &f->src, SLICE, 4096, -1, PAT, IBV_ACCESS_LOCAL_WRITE) ||
	    bench_buf_init(&f->b, &f->region, REGION, SLICE, MADV_NOHUGEPAGE, 0, access))
		return 1;
	return 0;
}

static void teardown(struct fence *f)
{
	bench_buf_fini(&f->region);
	bench_buf_fini(&f->src);
	free(f->lat);
	free(f->cpu);
	bench_close(&f->b);
}

int main(int argc, char **argv)
{
	struct fence f = { .samples = 200 };
	int odp = 0, opt, rc;

	while ((opt = getopt(argc, argv, "d:on:")) != -1) {
		switch (opt) {
		case 'd': f.dev = optarg; break;
		case 'o': odp = 1; break;
		case 'n': f.samples = atoi(optarg); break;
		default: f.dev = NULL; odp = 0; break;
		}
	}
	if (!f.dev || !odp || f.samples < 1) {
		fprintf(stderr, "usage: %s -d DEV -o [-n SAMPLES]   (-o: the region is ODP; "
			"required)\n", argv[0]);
		return 2;
	}
	signal(SIGALRM, on_alarm);
	alarm(ALARM_S);
	f.schedstats = schedstats_on();
	rc = setup(&f);
	if (!rc) {
		printf("device,op,samples,p50_ns,p99_ns,max_ns,writes,wr_errors,cpu_p50_ns,"
		       "cpu_p99_ns,fence_waits,fence_wait_ns,wall_ns,cpu_ns,runq_ns,blocked_ns\n");
		rc = run_idle(&f, DONTNEED) || run_idle(&f, REMAP) || run_traffic(&f) ||
		     verify(&f) ? 1 : 0;
	}
	teardown(&f);
	return rc;
}
