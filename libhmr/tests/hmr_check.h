/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmr_check.h - tiny test harness shared by the native tests, the fuzzer
 * and the benchmark: CHECK macros, a named-case runner, the test entry
 * format.
 */
#ifndef HMR_CHECK_H
#define HMR_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmr.h"
#include "hmr_sim.h"

extern int hmr_check_failures;

#define CHECK(c) do {							\
	if (!(c)) {							\
		fprintf(stderr, "%s:%d: CHECK(%s) failed\n",		\
			__FILE__, __LINE__, #c);			\
		hmr_check_failures++;					\
	}								\
} while (0)

#define CHECK_EQ(a, b) do {						\
	long long __a = (long long)(a), __b = (long long)(b);		\
	if (__a != __b) {						\
		fprintf(stderr, "%s:%d: CHECK_EQ(%s, %s): %#llx != %#llx\n",\
			__FILE__, __LINE__, #a, #b, __a, __b);		\
		hmr_check_failures++;					\
	}								\
} while (0)

struct hmr_case {
	const char *name;
	void (*fn)(void);
};

/* The entry at @addr, read under rcu_read_lock(). */
static inline u64 hmr_check_lookup(struct hmr_mirror *m, unsigned long addr)
{
	u64 e;

	rcu_read_lock();
	e = hmr_lookup(m, addr);
	rcu_read_unlock();
	return e;
}

/*
 * Clear the whole address space, check every table but the root was freed,
 * destroy @m and check no allocation made since @live0 survives.
 */
void hmr_check_empty_and_destroy(struct hmr_mirror *m, long live0);

/* Run the cases named in argv (all without names; --list prints them). */
int hmr_run_cases(const struct hmr_case *cases, int argc, char **argv);

/*
 * The test device's entry format: bit 0 present, bit 1 writable, bit 2
 * huge, bits 12..51 the frame address.
 */
#define T_PRESENT	0x1ULL
#define T_WRITE		0x2ULL
#define T_HUGE		0x4ULL
#define T_ADDR		0x000ffffffffff000ULL

static inline u64 t_encode(void *priv, u64 pfn, unsigned int flags)
{
	return (pfn << HMR_PAGE_SHIFT) | T_PRESENT |
	       (flags & HMR_PTE_WRITE ? T_WRITE : 0) |
	       (flags & HMR_PTE_HUGE ? T_HUGE : 0);
}

static const struct hmr_mirror_ops t_ops = {
	.present = T_PRESENT,
	.writable = T_WRITE,
	.huge = T_HUGE,
	.addr_mask = T_ADDR,
	.encode = t_encode,
	.seq_stale = sim_seq_stale,
};

#endif /* HMR_CHECK_H */
