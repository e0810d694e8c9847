// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_faultbench: cost of an RDMA WRITE / READ whose target pages are not present (first touch).
 *
 *   hmr_faultbench -d DEV [-o] [-r REPEAT] [-n ITERS] [-s BYTES]
 *   hmr_faultbench -d cpu [-r REPEAT] [-n ITERS] [-s BYTES]
 *
 * qp[0] writes into / reads from a target region of the same process through qp[1] (one
 * device, RoCEv2 GID 1). The target is registered with IBV_ACCESS_ON_DEMAND (-o) or normally;
 * the local buffer is always a normal MR. Cases, each timed over ITERS iterations (after one
 * untimed warm-up) as post + poll of one signaled WR, clock_gettime(CLOCK_MONOTONIC):
 *   bytes 4096     one 4 KiB page of a MADV_NOHUGEPAGE mapping (backing 4k)
 *   bytes 2097152  a 2 MiB aligned MADV_NOHUGEPAGE mapping: 512 pages of 4 KiB (backing 4k),
 *                  and a 2 MiB aligned MADV_HUGEPAGE one (backing thp: THP-backed when the
 *                  device faults it in; a note on stderr says if the kernel gave no huge page)
 *   state dropped  the target was MADV_DONTNEED'd before each iteration, so every WR faults
 *                  (a WRITE allocates fresh pages, a READ maps the zero page) -- with -o only:
 *                  a pinned MR keeps the old pages after MADV_DONTNEED, so without -o only the
 *                  present cases run (a note on stderr says so)
 *   state present  the target pages are present and mapped (no-fault baseline)
 * Every transfer is verified (a WRITE's pattern in the target, a READ's pattern -- or zeros
 * from dropped pages -- in the local buffer); a mismatch is an error (exit 1). Prints one CSV
 * line per case and repeat (-r, default 1):
 *   device,mode,op,bytes,state,median_ns,p99_ns,iters,backing,fault_ns,lookup_ns
 * fault_ns and lookup_ns: the rise of the device's page_fault_ns and page_lookup_ns counters
 * (hmr's: time in DMA-engine faults, and of it in HMM's look-up of the pages) per timed
 * iteration, a mean; empty for a device without them.
 * mode is odp or pinned. Exit 77 if -o and DEV has no RC ODP for WRITE and READ. -s: only the
 * cases of that size (4096 or 2097152; to profile one of them).
 * -d cpu: no device; the CPU's own first touch of the same targets, the physical floor of any
 * fault: memset of the target after MADV_DONTNEED (dropped) and of present pages (present),
 * as device cpu, mode cpu, op write.
 * Under run-guest --profile each case is one phase of the instruction profile, in the order of
 * the CSV lines, counting its timed operations only (perftest/hmr_prof.h).
 */
#define _GNU_SOURCE
#include "bench_common.h"
#include "hmr_prof.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SMALL 4096ul
#define HUGE (2ul << 20)

struct fb {
	struct bench b;
	const char *dev;
	int odp, iters;
	size_t only;		/* -s: the cases of this size only (0: all) */
	struct bench_buf local, small, small2m, huge;
	uint64_t *lat;
};

struct fcase {
	enum ibv_wr_opcode op;
	size_t bytes;
	int dropped;
	int thp;		/* the 2 MiB target is the MADV_HUGEPAGE one */
};

static int is_cpu(const struct fb *f)
{
	return !strcmp(f->dev, "cpu");
}

static struct bench_buf *target(struct fb *f, const struct fcase *c)
{
	if (c->bytes == SMALL)
		return &f->small;
	return c->thp ? &f->huge : &f->small2m;
}

/* The CPU's own first touch (dropped) or write of present pages: memset of the target. */
static int cpu_iter(struct fb *f, const struct fcase *c, unsigned int i, uint64_t *ns)
{
	struct bench_buf *t = target(f, c);
	unsigned char pat = 1 + i % 251;
	uint64_t t0;

	if (c->dropped && madvise(t->buf, c->bytes, MADV_DONTNEED)) {
		perror("madvise(MADV_DONTNEED)");
		return -1;
	}
	hmr_prof_on();
	t0 = now_ns();
	memset(t->buf, pat, c->bytes);
	*ns = now_ns() - t0;
	hmr_prof_off();
	return bench_check_fill(t->buf, c->bytes, pat) == c->bytes ? 0 : -1;
}

/* AnonHugePages (kB) of the mapping that holds ADDR, from /proc/self/smaps; -1 if unknown. */
static long anon_huge_kb(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long a = (uintptr_t)addr, lo, hi;
	int inside = 0;
	long kb = -1;
	char line[512], perm[8];

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) == 3)	/* a mapping's header */
			inside = a >= lo && a < hi;
		else if (inside && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	if (f)
		fclose(f);
	return kb;
}

/* One iteration of case C: prepare buffers (untimed), time post + poll into *NS, verify. */
static int one_iter(struct fb *f, const struct fcase *c, unsigned int i, uint64_t *ns)
{
	struct bench_buf *t = target(f, c);
	int write = c->op == IBV_WR_RDMA_WRITE;
	unsigned char pat = 1 + i % 251, want = write || !c->dropped ? pat : 0;
	char *dst = write ? t->buf : f->local.buf;
	size_t bad;
	uint64_t t0;

	memset(f->local.buf, write || c->dropped ? pat : 0, c->bytes);
	if (c->dropped && madvise(t->buf, c->bytes, MADV_DONTNEED)) {
		perror("madvise(MADV_DONTNEED)");
		return -1;
	}
	if (!c->dropped)
		memset(t->buf, write ? 0 : pat, c->bytes);
	hmr_prof_on();
	t0 = now_ns();
	if (bench_rdma_sync(&f->b, c->op, f->local.buf, f->local.mr->lkey, c->bytes, t->buf, t->mr->rkey))
		return -1;
	*ns = now_ns() - t0;
	hmr_prof_off();
	bad = bench_check_fill(dst, c->bytes, want);
	if (bad != c->bytes) {
		fprintf(stderr, "data mismatch: %s %zu %s iteration %u: byte %zu is %#x, not %#x\n",
			write ? "write" : "read", c->bytes, c->dropped ? "dropped" : "present", i,
			bad, (unsigned char)dst[bad], want);
		return -1;
	}
	return 0;
}

/* The device's counter NAME (hmr's page_fault_ns, page_lookup_ns), or -1 (none: rxe, cpu). */
static long long counter(const struct fb *f, const char *name)
{
	return is_cpu(f) ? -1 : bench_hw_counter(f->dev, name);
}

/* Per timed iteration, the rise of a counter read as A before and B after; "" if it has none. */
static const char *per_iter(char *buf, size_t n, long long a, long long b, int iters)
{
	if (a < 0 || b < a)
		return "";
	snprintf(buf, n, "%lld", (b - a) / iters);
	return buf;
}

static int run_case(struct fb *f, const struct fcase *c)
{
	long long fault0 = -1, lookup0 = -1, fault1, lookup1;
	char fbuf[24], lbuf[24];
	uint64_t ns;

	for (int i = -1; i < f->iters; i++) {	/* i == -1: untimed warm-up */
		uint64_t *out = i < 0 ? &ns : &f->lat[i];

		if (i == 0) {
			fault0 = counter(f, "page_fault_ns");
			lookup0 = counter(f, "page_lookup_ns");
		}
		if (is_cpu(f) ? cpu_iter(f, c, (unsigned int)(i + 1), out) :
				one_iter(f, c, (unsigned int)(i + 1), out))
			return -1;
	}
	hmr_prof_phase();	/* one profiler phase a case: its timed operations, warm-up included */
	fault1 = counter(f, "page_fault_ns");
	lookup1 = counter(f, "page_lookup_ns");
	if (c->thp && c->op == IBV_WR_RDMA_WRITE && anon_huge_kb(f->huge.buf) == 0)
		fprintf(stderr, "note: the 2 MiB target is not THP-backed after %s writes\n",
			c->dropped ? "faulting" : "present");
	printf("%s,%s,%s,%zu,%s,%" PRIu64 ",%" PRIu64 ",%d,%s,%s,%s\n", f->dev,
	       is_cpu(f) ? "cpu" : f->odp ? "odp" : "pinned",
	       c->op == IBV_WR_RDMA_WRITE ? "write" : "read", c->bytes,
	       c->dropped ? "dropped" : "present", bench_percentile(f->lat, f->iters, 50),
	       bench_percentile(f->lat, f->iters, 99), f->iters, c->thp ? "thp" : "4k",
	       per_iter(fbuf, sizeof(fbuf), fault0, fault1, f->iters),
	       per_iter(lbuf, sizeof(lbuf), lookup0, lookup1, f->iters));
	fflush(stdout);
	return 0;
}

static int run_all(struct fb *f, int repeat)
{
	static const enum ibv_wr_opcode ops[] = { IBV_WR_RDMA_WRITE, IBV_WR_RDMA_READ };
	static const struct { size_t bytes; int thp; } tgt[] = {
		{ SMALL, 0 }, { HUGE, 0 }, { HUGE, 1 },
	};
	int nops = is_cpu(f) ? 1 : 2;

	if (!f->odp && !is_cpu(f))
		fprintf(stderr, "note: pinned MR: only the present cases run (after MADV_DONTNEED "
			"a pinned MR keeps the old pages)\n");
	printf("device,mode,op,bytes,state,median_ns,p99_ns,iters,backing,fault_ns,lookup_ns\n");
	for (int r = 0; r < repeat; r++)
		for (int dropped = f->odp || is_cpu(f); dropped >= 0; dropped--)
			for (int s = 0; s < 3; s++)
				for (int o = 0; o < nops && (!f->only || f->only == tgt[s].bytes);
				     o++) {
					struct fcase c = { ops[o], tgt[s].bytes, dropped, tgt[s].thp };

					if (run_case(f, &c))
						return -1;
				}
	return 0;
}

static int setup(struct fb *f)
{
	int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
		     (f->odp ? IBV_ACCESS_ON_DEMAND : 0), local = IBV_ACCESS_LOCAL_WRITE;
	int err = 0;

	if (is_cpu(f))
		access = local = -1;	/* no device: plain mappings, nothing registered */
	else
		err = bench_start(&f->b, "hmr_faultbench", f->dev, f->odp, 4);
	if (err)
		return err;
	f->lat = calloc(f->iters, sizeof(*f->lat));
	if (!f->lat) {
		perror("hmr_faultbench: calloc");
		return 1;
	}
	if (bench_buf_init(&f->b, &f->local, HUGE, SMALL, -1, 0, local) ||
	    bench_buf_init(&f->b, &f->small, SMALL, SMALL, MADV_NOHUGEPAGE, 0, access) ||
	    bench_buf_init(&f->b, &f->small2m, HUGE, HUGE, MADV_NOHUGEPAGE, 0, access) ||
	    bench_buf_init(&f->b, &f->huge, HUGE, HUGE, MADV_HUGEPAGE, 0, access))
		return 1;
	return 0;
}

static void teardown(struct fb *f)
{
	bench_buf_fini(&f->huge);
	bench_buf_fini(&f->small2m);
	bench_buf_fini(&f->small);
	bench_buf_fini(&f->local);
	free(f->lat);
	bench_close(&f->b);
}

int main(int argc, char **argv)
{
	struct fb f = { .iters = 100 };
	int repeat = 1, opt, rc;

	while ((opt = getopt(argc, argv, "d:or:n:s:")) != -1) {
		switch (opt) {
		case 'd': f.dev = optarg; break;
		case 'o': f.odp = 1; break;
		case 'r': repeat = atoi(optarg); break;
		case 'n': f.iters = atoi(optarg); break;
		case 's': f.only = strtoull(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: %s -d DEV [-o] [-r REPEAT] [-n ITERS] [-s BYTES]\n",
				argv[0]);
			return 2;
		}
	}
	if (!f.dev || repeat < 1 || f.iters < 1) {
		fprintf(stderr, "usage: %s -d DEV [-o] [-r REPEAT] [-n ITERS] [-s BYTES]\n", argv[0]);
		return 2;
	}
	rc = setup(&f);
	if (!rc)
		rc = run_all(&f, repeat) ? 1 : 0;
	teardown(&f);
	return rc;
}
