// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_sharebench: what one mirror per process buys (and what a device without one pays).
 *
 *   hmr_sharebench -d DEV [-o] [-n ITERS]
 *
 * Cases, each timed ITERS times (clock_gettime(CLOCK_MONOTONIC)); one CSV line each:
 *   device,mode,case,n,unit,p50,p99,iters
 *   write         one 1 MiB RDMA WRITE into a resident, registered buffer (the use alone)
 *   reg_write_dereg  ibv_reg_mr of that resident 1 MiB buffer, the WRITE into it through the
 *                 new MR, ibv_dereg_mr: the round a registration cache would save
 *   invalidate    (-o only) with n = 1, 100 and 10000 MRs over the 1 MiB buffer: a WRITE faults
 *                 it in (untimed), then madvise(MADV_DONTNEED) of the buffer is timed
 *   tables_4k, tables_2m  (devices with a page_tables counter) page-table bytes per GiB
 *                 mirrored: 256 MiB faulted by WRITEs, in 4 KiB pages (MADV_NOHUGEPAGE) or
 *                 2 MiB ones (MADV_HUGEPAGE), tables counted before and after (4 KiB each)
 *   tables_1t_sparse  (-o, page_tables) bytes of tables for a 1 TiB ODP MR over an untouched
 *                 MAP_NORESERVE mapping after 16 WRITEs of 4 KiB spread over it
 * Every WRITE's data is checked, outside the timed part. Exit 77 with -o if DEV has no RC ODP.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIB (1ul << 20)
#define SRC_LEN (2 * MIB)
#define TABLES_LEN (256 * MIB)
#define SPARSE_LEN (1ul << 40)
#define TABLE_BYTES 4096

struct sb {
	struct bench b;
	const char *dev;
	int odp, iters, access;
	struct bench_buf src;		/* the source of every WRITE, registered once */
	uint64_t *lat;
};

static const char *mode(const struct sb *s)
{
	return s->odp ? "odp" : "pinned";
}

static void row(struct sb *s, const char *name, long n, const char *unit, uint64_t p50,
		uint64_t p99)
{
	printf("%s,%s,%s,%ld,%s,%" PRIu64 ",%" PRIu64 ",%d\n", s->dev, mode(s), name, n, unit,
	       p50, p99, s->iters);
	fflush(stdout);
}

static void row_lat(struct sb *s, const char *name, long n)
{
	row(s, name, n, "ns", bench_percentile(s->lat, s->iters, 50),
	    bench_percentile(s->lat, s->iters, 99));
}

/* WRITE LEN bytes of the source (filled with PAT by fill()) into DST (MR KEY). */
static int write_only(struct sb *s, char *dst, uint32_t rkey, size_t len)
{
	return bench_rdma_sync(&s->b, IBV_WR_RDMA_WRITE, s->src.buf, s->src.mr->lkey, len, dst,
			       rkey);
}

static void fill(struct sb *s, size_t len, unsigned char pat)
{
	memset(s->src.buf, pat, len);
}

/* Did the WRITE of LEN bytes of PAT land in DST? (Not timed: a byte loop.) */
static int landed(const char *dst, size_t len, unsigned char pat)
{
	size_t bad = bench_check_fill(dst, len, pat);

	if (bad == len)
		return 0;
	fprintf(stderr, "hmr_sharebench: byte %zu of a WRITE did not land\n", bad);
	return -1;
}

/* WRITE LEN bytes of pattern PAT from the source into DST (MR KEY) and check they landed. */
static int write_checked(struct sb *s, char *dst, uint32_t rkey, size_t len, unsigned char pat)
{
	fill(s, len, pat);
	return write_only(s, dst, rkey, len) || landed(dst, len, pat) ? -1 : 0;
}

static int case_write(struct sb *s, struct bench_buf *t)
{
	for (int i = -1; i < s->iters; i++) {
		unsigned char pat = 1 + (i + 1) % 250;
		uint64_t t0;

		fill(s, MIB, pat);
		t0 = now_ns();
		if (write_only(s, t->buf, t->mr->rkey, MIB))
			return -1;
		if (i >= 0)
			s->lat[i] = now_ns() - t0;
		if (landed(t->buf, MIB, pat))
			return -1;
	}
	row_lat(s, "write", 1);
	return 0;
}

static int case_reg_write_dereg(struct sb *s, struct bench_buf *t)
{
	for (int i = -1; i < s->iters; i++) {
		unsigned char pat = 1 + (i + 1) % 250;
		struct ibv_mr *mr;
		uint64_t t0;

		fill(s, MIB, pat);
		t0 = now_ns();
		mr = ibv_reg_mr(s->b.pd, t->buf, MIB, s->access);
		if (!mr) {
			perror("hmr_sharebench: ibv_reg_mr");
			return -1;
		}
		if (write_only(s, t->buf, mr->rkey, MIB)) {
			ibv_dereg_mr(mr);
			return -1;
		}
		if (ibv_dereg_mr(mr)) {
			perror("hmr_sharebench: ibv_dereg_mr");
			return -1;
		}
		if (i >= 0)
			s->lat[i] = now_ns() - t0;
		if (landed(t->buf, MIB, pat))
			return -1;
	}
	row_lat(s, "reg_write_dereg", 1);
	return 0;
}

/* n MRs over the buffer of @t; time MADV_DONTNEED of it after each WRITE faulted it in. */
static int case_invalidate(struct sb *s, struct bench_buf *t, long n)
{
	struct ibv_mr **mrs = calloc(n, sizeof(*mrs));
	int ret = -1;
	long k = 0;

	if (!mrs)
		return -1;
	for (; k < n; k++) {
		mrs[k] = ibv_reg_mr(s->b.pd, t->buf, MIB, s->access);
		if (!mrs[k]) {
			fprintf(stderr, "hmr_sharebench: MR %ld of %ld: %s\n", k, n, strerror(errno));
			goto out;
		}
	}
	for (int i = -1; i < s->iters; i++) {
		uint64_t t0;

		if (write_checked(s, t->buf, mrs[(i + 1) % n]->rkey, MIB, 1 + (i + 1) % 250))
			goto out;
		t0 = now_ns();
		if (madvise(t->buf, MIB, MADV_DONTNEED)) {
			perror("hmr_sharebench: madvise");
			goto out;
		}
		if (i >= 0)
			s->lat[i] = now_ns() - t0;
	}
	row_lat(s, "invalidate", n);
	ret = 0;
out:
	while (k--)
		ibv_dereg_mr(mrs[k]);
	free(mrs);
	return ret;
}

/* The device's page_tables counter, or -1 if it has none. */
static long tables(struct sb *s)
{
	return (long)bench_hw_counter(s->dev, "page_tables");
}

/* The page_tables counter once tables freed earlier (after an RCU grace period) are gone. */
static long tables_settled(struct sb *s)
{
	long a = tables(s), b;

	for (int i = 0; i < 100; i++) {
		b = tables(s);
		if (b == a)
			break;
		a = b;
	}
	return a;
}

/* Bytes of tables per GiB mirrored for TABLES_LEN bytes faulted with @advice. */
static int case_tables(struct sb *s, const char *name, int advice)
{
	struct bench_buf t = { 0 };
	long before, after;
	int ret = -1;

	if (bench_buf_init(&s->b, &t, TABLES_LEN, 2 * MIB, advice, 0, s->access))
		goto out;
	madvise(t.buf, TABLES_LEN, MADV_DONTNEED);	/* the device faults every page */
	before = tables_settled(s);
	for (size_t off = 0; off < TABLES_LEN; off += SRC_LEN)
		if (write_checked(s, t.buf + off, t.mr->rkey, SRC_LEN, 7))
			goto out;
	after = tables(s);
	row(s, name, TABLES_LEN / MIB, "B/GiB",
	    (uint64_t)(after - before) * TABLE_BYTES * ((1ul << 30) / TABLES_LEN),
	    (uint64_t)after * TABLE_BYTES);
	ret = 0;
out:
	bench_buf_fini(&t);
	return ret;
}

static int case_sparse(struct sb *s)
{
	char *buf = mmap(NULL, SPARSE_LEN, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct ibv_mr *mr = NULL;
	long before, after;
	int ret = -1;

	if (buf == MAP_FAILED) {
		perror("hmr_sharebench: mmap 1 TiB");
		return -1;
	}
	before = tables_settled(s);
	mr = ibv_reg_mr(s->b.pd, buf, SPARSE_LEN, s->access);
	if (!mr) {
		perror("hmr_sharebench: ibv_reg_mr 1 TiB");
		goto out;
	}
	for (int i = 0; i < 16; i++)
		if (write_checked(s, buf + i * (SPARSE_LEN / 16), mr->rkey, 4096, 9))
			goto out;
	after = tables(s);
	row(s, "tables_1t_sparse", 16, "B", (uint64_t)(after - before) * TABLE_BYTES,
	    (uint64_t)after * TABLE_BYTES);
	ret = 0;
out:
	if (mr)
		ibv_dereg_mr(mr);
	munmap(buf, SPARSE_LEN);
	return ret;
}

static int run(struct sb *s)
{
	static const long counts[] = { 1, 100, 10000 };
	struct bench_buf t = { 0 };
	int ret = -1;

	printf("device,mode,case,n,unit,p50,p99,iters\n");
	if (bench_buf_init(&s->b, &t, MIB, 2 * MIB, MADV_NOHUGEPAGE, 1, s->access))
		goto out;
	if (case_write(s, &t) || case_reg_write_dereg(s, &t))
		goto out;
	for (unsigned int i = 0; s->odp && i < sizeof(counts) / sizeof(counts[0]); i++)
		if (case_invalidate(s, &t, counts[i]))
			goto out;
	if (s->odp && tables(s) >= 0 &&
	    (case_tables(s, "tables_4k", MADV_NOHUGEPAGE) ||
	     case_tables(s, "tables_2m", MADV_HUGEPAGE) || case_sparse(s)))
		goto out;
	ret = 0;
out:
	bench_buf_fini(&t);
	return ret;
}

int main(int argc, char **argv)
{
	struct sb s = { .iters = 20 };
	int opt, rc;

	while ((opt = getopt(argc, argv, "d:on:")) != -1) {
		switch (opt) {
		case 'd': s.dev = optarg; break;
		case 'o': s.odp = 1; break;
		case 'n': s.iters = atoi(optarg); break;
		default: s.dev = NULL; break;
		}
	}
	if (!s.dev || s.iters < 1) {
		fprintf(stderr, "usage: %s -d DEV [-o] [-n ITERS]\n", argv[0]);
		return 2;
	}
	s.access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
		   (s.odp ? IBV_ACCESS_ON_DEMAND : 0);
	s.lat = calloc(s.iters, sizeof(*s.lat));
	rc = bench_start(&s.b, "hmr_sharebench", s.dev, s.odp, 4);
	if (!rc && (!s.lat ||
		    bench_buf_init(&s.b, &s.src, SRC_LEN, 2 * MIB, -1, 0, IBV_ACCESS_LOCAL_WRITE)))
		rc = 1;
	if (!rc)
		rc = run(&s) ? 1 : 0;
	bench_buf_fini(&s.src);
	free(s.lat);
	bench_close(&s.b);
	return rc;
}
