// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_regbench: cost of ibv_reg_mr / ibv_dereg_mr against region size.
 *
 *   hmr_regbench -d DEV [-o] [-r REPEAT] [-m MAXSIZE] [-p]
 *
 * Each region is a fresh anonymous mapping that is NOT populated (MAP_NORESERVE), so sizes may
 * exceed RAM for ODP registrations; -p populates it first (touching every page) to separate the
 * cost of faulting memory in from the cost of registering it. -o registers with
 * IBV_ACCESS_ON_DEMAND. Prints one CSV line per run:
 *   device,mode,bytes,reg_ns,dereg_ns,run
 * A registration that fails prints a line with the errno instead of times and stops growing the
 * size (pinned registrations run out of memory long before ODP ones); an ODP registration the
 * device refuses with EOPNOTSUPP says "DEV on K has no ODP" (K: the kernel's major.minor).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>

#include "bench_common.h"

static struct ibv_context *open_dev(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (list)
		ibv_free_device_list(list);
	return ctx;
}

/* One registration of SIZE bytes; returns 0 and the two times, or an errno. */
static int measure(struct ibv_pd *pd, size_t size, int access, int populate,
		   uint64_t *reg_ns, uint64_t *dereg_ns)
{
	char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct ibv_mr *mr;
	uint64_t t0;
	int err = 0;

	if (buf == MAP_FAILED)
		return errno;
	if (populate)
		for (size_t off = 0; off < size; off += 4096)
			buf[off] = 1;
	t0 = now_ns();
	mr = ibv_reg_mr(pd, buf, size, access);
	*reg_ns = now_ns() - t0;
	if (!mr) {
		err = errno ? errno : EINVAL;
		goto out;
	}
	t0 = now_ns();
	if (ibv_dereg_mr(mr))
		err = errno;
	*dereg_ns = now_ns() - t0;
out:
	munmap(buf, size);
	return err;
}

int main(int argc, char **argv)
{
	const char *dev = NULL;
	int odp = 0, repeat = 5, populate = 0, opt;
	size_t max = 1ull << 30;
	struct ibv_context *ctx;
	struct ibv_pd *pd;

	while ((opt = getopt(argc, argv, "d:or:m:p")) != -1) {
		switch (opt) {
		case 'd': dev = optarg; break;
		case 'o': odp = 1; break;
		case 'r': repeat = atoi(optarg); break;
		case 'm': max = strtoull(optarg, NULL, 0); break;
		case 'p': populate = 1; break;
		default:
			fprintf(stderr, "usage: %s -d DEV [-o] [-r N] [-m MAX] [-p]\n", argv[0]);
			return 2;
		}
	}
	if (!dev || repeat < 1) {
		fprintf(stderr, "%s: -d DEV is required\n", argv[0]);
		return 2;
	}
	ctx = open_dev(dev);
	if (!ctx) {
		fprintf(stderr, "%s: cannot open %s\n", argv[0], dev);
		return 1;
	}
	pd = ibv_alloc_pd(ctx);
	if (!pd) {
		perror("ibv_alloc_pd");
		return 1;
	}
	int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
		     (odp ? IBV_ACCESS_ON_DEMAND : 0);
	const char *mode = odp ? "odp" : (populate ? "pinned-populated" : "pinned");

	printf("device,mode,bytes,reg_ns,dereg_ns,run\n");
	/* Untimed warm-up: the process's first registration pays one-time costs (lazy binding,
	 * first-touch of the provider's and the kernel's paths) that no size should carry. */
	{
		uint64_t reg, dereg;

		measure(pd, 4096, access, populate, &reg, &dereg);
	}
	for (size_t size = 4096; size <= max; size *= 4) {
		for (int r = 0; r < repeat; r++) {
			uint64_t reg = 0, dereg = 0;
			int err = measure(pd, size, access, populate, &reg, &dereg);

			if (err == EOPNOTSUPP && odp) {
				struct utsname u;
				int n;

				/* the device has no ODP on this kernel (6.12's rxe): say so */
				uname(&u);
				n = strcspn(u.release, ".") + 1;
				n += strcspn(u.release + n, ".");
				printf("%s,%s,%zu,error:%s on %.*s has no ODP (%s),,%d\n", dev, mode,
				       size, dev, n, u.release, strerror(err), r);
				goto done;
			}
			if (err) {
				printf("%s,%s,%zu,error:%s,,%d\n", dev, mode, size, strerror(err), r);
				goto done;
			}
			printf("%s,%s,%zu,%llu,%llu,%d\n", dev, mode, size,
			       (unsigned long long)reg, (unsigned long long)dereg, r);
			fflush(stdout);
		}
	}
done:
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	return 0;
}
