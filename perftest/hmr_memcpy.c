// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_memcpy: plain memcpy bandwidth, the ceiling a software RDMA device (which copies every
 * payload with the CPU) can approach.
 *
 *   hmr_memcpy [-s SIZE] [-r REPEAT]
 *
 * Copies a SIZE-byte buffer into another (default: 65536 and 1048576, the ib_write_bw sizes of
 * the benchmark) as many times as make 64 MiB per run, REPEAT runs (default 5); buffers are
 * page-aligned and touched first. After each run the destination is compared with the source
 * (whose pattern changes every run); a mismatch is an error (exit 1). Prints the median run:
 *   op,bytes,mb_per_s
 * with MB = 2^20 bytes, the unit of ib_write_bw's "BW average[MB/sec]".
 *
 * On x86-64 a second line per size, op page_copy, copies the same bytes the way the kernel's
 * copy_page() does on CPUs that do rep movsq well (X86_FEATURE_REP_GOOD, the lab's emulated
 * CPU among them): one rep movsq per 4 KiB page. hmr's DMA engine copies whole pages with
 * copy_page(), so this is the ceiling of its copy in the same guest: on the instruction clock
 * each of the 512 repetitions per page counts as an instruction, while glibc's AVX2 memcpy
 * moves 128 bytes in about a dozen.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUN_BYTES (64ul << 20)

/* One copy of SIZE bytes, kept by the compiler (every copy is timed). */
typedef void copy_fn(char *dst, const char *src, size_t size);

static void libc_copy(char *dst, const char *src, size_t size)
{
	memcpy(dst, src, size);
	__asm__ volatile("" : : "r"(dst) : "memory");
}

/* Median MB/s of REPEAT runs copying SRC to DST (SIZE bytes each) with COPY; -1 on a mismatch. */
static double measure(copy_fn *copy, char *dst, char *src, size_t size, int repeat,
		      uint64_t *ns)
{
	size_t copies = RUN_BYTES / size ? RUN_BYTES / size : 1;

	for (int r = 0; r < repeat; r++) {
		uint64_t t0;

		memset(src, 1 + r % 251, size);
		memset(dst, 0, size);
		t0 = now_ns();
		for (size_t i = 0; i < copies; i++)
			copy(dst, src, size);
		ns[r] = now_ns() - t0;
		if (memcmp(dst, src, size)) {
			fprintf(stderr, "hmr_memcpy: data mismatch (%zu bytes, run %d)\n", size, r);
			return -1;
		}
	}
	return (double)copies * size / (1 << 20) * 1e9 / bench_percentile(ns, repeat, 50);
}

#if defined(__x86_64__)
/* Copy SIZE bytes (a multiple of 4096) page by page with rep movsq, as copy_page() does. */
static void page_copy(char *dst, const char *src, size_t size)
{
	for (size_t off = 0; off < size; off += 4096) {
		void *d = dst + off;
		const void *s = src + off;
		size_t n = 4096 / 8;

		__asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	}
}
#endif

int main(int argc, char **argv)
{
	size_t sizes[2] = { 65536, 1048576 }, nsizes = 2;
	int repeat = 5, opt, rc = 0;
	uint64_t *ns;

	while ((opt = getopt(argc, argv, "s:r:")) != -1) {
		switch (opt) {
		case 's': sizes[0] = strtoull(optarg, NULL, 0); nsizes = 1; break;
		case 'r': repeat = atoi(optarg); break;
		default: repeat = 0; break;
		}
	}
	if (repeat < 1 || !sizes[0]) {
		fprintf(stderr, "usage: %s [-s SIZE] [-r REPEAT]\n", argv[0]);
		return 2;
	}
	ns = calloc(repeat, sizeof(*ns));
	if (!ns) {
		perror("hmr_memcpy: calloc");
		return 1;
	}
	printf("op,bytes,mb_per_s\n");
	for (size_t s = 0; s < nsizes && !rc; s++) {
		char *src = bench_map(sizes[s], 4096), *dst = bench_map(sizes[s], 4096);
		double mbs = src && dst ? measure(libc_copy, dst, src, sizes[s], repeat, ns) : -1;

		if (!src || !dst)
			perror("hmr_memcpy: mmap");
		if (mbs < 0)
			rc = 1;
		else
			printf("memcpy,%zu,%.1f\n", sizes[s], mbs);
#if defined(__x86_64__)
		if (!rc && !(sizes[s] % 4096)) {
			mbs = measure(page_copy, dst, src, sizes[s], repeat, ns);
			if (mbs < 0)
				rc = 1;
			else
				printf("page_copy,%zu,%.1f\n", sizes[s], mbs);
		}
#endif
		bench_unmap(src, sizes[s]);
		bench_unmap(dst, sizes[s]);
	}
	free(ns);
	return rc;
}
