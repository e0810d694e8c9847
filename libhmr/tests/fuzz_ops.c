// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_ops.c - libFuzzer target: random sequences of populate, invalidate,
 * access and lookup, checked against a flat reference model.
 *
 * The model holds the expected entry of every page of four 4 MiB clusters
 * placed across table boundaries (0, 1 GiB, 512 GiB, the top of the 48-bit
 * space). It follows the documented semantics: a 2 MiB leaf answers for all
 * its pages; clearing any page of it clears it whole; small entries over it
 * replace it. After every input the whole table is compared with the model,
 * cleared, and checked to have freed every table and allocation.
 */
#include "hmr_check.h"

#define CL		1024				/* pages per cluster */
#define NCL		4
#define PG		HMR_PAGE_SIZE
#define MAX_POP		600

static const unsigned long cl_base[NCL] = {
	0, (1UL << 30) - HMR_HUGE_SIZE, (1UL << 39) - HMR_HUGE_SIZE,
	HMR_VA_END - 2 * HMR_HUGE_SIZE,
};

static struct hmr_mirror m;
static struct hmr_sim sim;
static u64 model[NCL][CL];

struct input {
	const u8 *p;
	size_t n;
};

static unsigned int take(struct input *in, unsigned int bytes)
{
	unsigned int v = 0;

	while (bytes--) {
		v <<= 8;
		if (in->n) {
			v |= *in->p++;
			in->n--;
		}
	}
	return v;
}

static u64 look(unsigned long addr)
{
	return hmr_check_lookup(&m, addr);
}

static unsigned long addr_of(unsigned int c, unsigned long i)
{
	return cl_base[c] + i * PG;
}

/* Device page address the model expects for page @i of cluster @c, or ~0. */
static u64 model_page(unsigned int c, unsigned long i)
{
	u64 e = model[c][i];

	if (!e)
		return ~0ULL;
	if (e & T_HUGE)
		return (e & T_ADDR) + ((i % HMR_HUGE_PAGES) << HMR_PAGE_SHIFT);
	return e & T_ADDR;
}

static void model_clear_block(unsigned int c, unsigned long i)
{
	unsigned long b = i & ~(HMR_HUGE_PAGES - 1), k;

	for (k = 0; k < HMR_HUGE_PAGES; k++)
		model[c][b + k] = 0;
}

static void model_small(unsigned int c, unsigned long i, unsigned long n,
			const u64 *pfns)
{
	unsigned long k;
	bool any = false;

	for (k = 0; k < n; k++)
		any |= !!(pfns[k] & HMR_PFN_VALID);
	if (any && (model[c][i] & T_HUGE))
		model_clear_block(c, i);
	for (k = 0; k < n; k++)
		if (pfns[k] & HMR_PFN_VALID)
			model[c][i + k] = t_encode(NULL, pfns[k] & HMR_PFN_MASK,
					pfns[k] & HMR_PFN_WRITE ? HMR_PTE_WRITE : 0);
}

static bool huge_fits(unsigned long i, unsigned long left, const u64 *p)
{
	u64 want = HMR_PFN_VALID | HMR_PFN_HUGE;

	return !(i % HMR_HUGE_PAGES) && left >= HMR_HUGE_PAGES &&
	       (p[0] & want) == want && !(p[0] & (HMR_HUGE_PAGES - 1)) &&
	       (p[HMR_HUGE_PAGES - 1] & want) == want &&
	       (p[HMR_HUGE_PAGES - 1] & HMR_PFN_MASK) ==
	       (p[0] & HMR_PFN_MASK) + HMR_HUGE_PAGES - 1;
}

/*
 * A huge install: with 9 bits a leaf table in the way is replaced; with
 * fewer bits a directory in the way means small entries. Both are right;
 * check the table holds one of them and adopt it.
 */
static void model_huge(unsigned int c, unsigned long i, const u64 *pfns)
{
	u64 h = t_encode(NULL, pfns[0] & HMR_PFN_MASK, HMR_PTE_HUGE |
			 (pfns[0] & HMR_PFN_WRITE ? HMR_PTE_WRITE : 0));
	unsigned long k;

	if (look(addr_of(c, i)) == h || HMR_HUGE_LEVEL == 1) {
		for (k = 0; k < HMR_HUGE_PAGES; k++)
			model[c][i + k] = h;
		return;
	}
	model_small(c, i, HMR_HUGE_PAGES, pfns);
}

static void model_populate(unsigned int c, unsigned long i, unsigned long n,
			   const u64 *pfns)
{
	unsigned long done = 0, span, a;

	while (done < n) {
		a = addr_of(c, i + done);
		if (huge_fits(i + done, n - done, pfns + done)) {
			model_huge(c, i + done, pfns + done);
			done += HMR_HUGE_PAGES;
			continue;
		}
		span = HMR_FANOUT - hmr_index(a, 0);
		if (span > n - done)
			span = n - done;
		model_small(c, i + done, span, pfns + done);
		done += span;
	}
}

/* After a failed populate: each page is old, new-small, huge, or empty. Adopt. */
static void model_adopt(unsigned int c)
{
	unsigned long k;

	for (k = 0; k < CL; k++)
		model[c][k] = look(addr_of(c, k));
}

static void op_populate(struct input *in)
{
	unsigned int c = take(in, 1) % NCL, flags = take(in, 1);
	unsigned long i = take(in, 2) % CL, n = 1 + take(in, 2) % MAX_POP, k, seq;
	u64 pfn0 = (1 + take(in, 1)) * HMR_HUGE_PAGES, pfns[MAX_POP];
	int r, want = 0;

	if (flags & 0x2)
		i &= ~(HMR_HUGE_PAGES - 1);
	if (i + n > CL)
		n = CL - i;
	for (k = 0; k < n; k++) {
		pfns[k] = (pfn0 + i + k) | HMR_PFN_VALID;
		if (flags & 0x1 || k % 3 == 0)
			pfns[k] |= HMR_PFN_WRITE;
		if (flags & 0x2)
			pfns[k] |= HMR_PFN_HUGE;
		if (flags & 0x10 && k % 7 == 3)
			pfns[k] &= ~HMR_PFN_VALID;
	}
	seq = sim_read_begin(&sim);
	if (flags & 0x4) {		/* an invalidation ran meanwhile */
		sim_inv_start(&sim);
		sim_inv_end(&sim);
		want = -EAGAIN;
	} else if (flags & 0x8) {
		hmr_user_fail_alloc_after(flags >> 5);
	}
	r = hmr_mirror_populate(&m, addr_of(c, i), n, pfns, seq);
	hmr_user_fail_alloc_after(-1);
	if (r == -ENOMEM && (flags & 0xc) == 0x8) {
		model_adopt(c);
		return;
	}
	CHECK_EQ(r, want);
	if (!r)
		model_populate(c, i, n, pfns);
}

static void op_invalidate(struct input *in)
{
	unsigned int c = take(in, 1) % NCL;
	unsigned long i = take(in, 2) % CL, n = 1 + take(in, 2) % 1100, k;

	if (i + n > CL)
		n = CL - i;
	sim_inv_start(&sim);
	CHECK_EQ(hmr_mirror_invalidate(&m, addr_of(c, i), addr_of(c, i + n), true), 0);
	sim_inv_end(&sim);
	for (k = i; k < i + n; k++) {
		if (model[c][k] & T_HUGE)
			model_clear_block(c, k);
		model[c][k] = 0;
	}
}

static bool model_ok(unsigned int c, unsigned long i, bool write)
{
	u64 need = T_PRESENT | (write ? T_WRITE : 0);

	return i < CL && (model[c][i] & need) == need;
}

static void op_access(struct input *in)
{
	unsigned int c = take(in, 1) % NCL, mode = take(in, 1);
	unsigned long off = take(in, 3) % (CL * PG), len = 1 + take(in, 3) % (CL * PG);
	unsigned long a = cl_base[c] + off, first = off / PG, npages, k;
	bool write = mode & 1;
	struct hmr_access acc;
	int r;

	if (mode & 0x2) {		/* hostile lengths */
		CHECK_EQ(hmr_access_begin(&m, &acc, a, 0, write), -EINVAL);
		CHECK_EQ(hmr_access_begin(&m, &acc, a | PG, ~0UL - (len & 0xff), write),
			 -EINVAL);
		CHECK_EQ(hmr_access_begin(&m, &acc, HMR_VA_END - (len & 0xff), len + 0x100,
					  write), -EFAULT);
		return;
	}
	if (off + len > CL * PG)
		len = CL * PG - off;
	r = hmr_access_begin(&m, &acc, a, len, write);
	if (!model_ok(c, first, write)) {
		CHECK_EQ(r, -ENOENT);
		CHECK_EQ(acc.fault_addr, a & ~(PG - 1));
		return;
	}
	CHECK_EQ(r, 0);
	if (r)
		return;
	npages = (off + len - 1) / PG - first + 1;
	if (npages > HMR_CHUNK_PAGES)
		npages = HMR_CHUNK_PAGES;
	for (k = 0; k < npages && model_ok(c, first + k, write); k++)
		CHECK_EQ(acc.page[k], model_page(c, first + k));
	CHECK_EQ(acc.npages, k);
	k = (first + k) * PG;
	CHECK_EQ(acc.len, (off + len < k ? off + len : k) - off);
	hmr_access_end(&m, &acc);
}

static void check_all(void)
{
	unsigned int c;
	unsigned long k;

	for (c = 0; c < NCL; c++)
		for (k = 0; k < CL; k++)
			if (look(addr_of(c, k)) != model[c][k]) {
				fprintf(stderr, "cluster %u page %lu: table %#llx model %#llx\n",
					c, k, (unsigned long long)look(addr_of(c, k)),
					(unsigned long long)model[c][k]);
				hmr_check_failures++;
				return;
			}
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	struct input in = { data, size };
	long live0;

	rcu_barrier();
	live0 = hmr_user_allocs_live();
	memset(model, 0, sizeof(model));
	memset(&sim, 0, sizeof(sim));
	if (hmr_mirror_init(&m, &t_ops, &sim))
		__builtin_trap();
	while (in.n) {
		switch (take(&in, 1) % 4) {
		case 0:
			op_populate(&in);
			break;
		case 1:
			op_invalidate(&in);
			break;
		case 2:
			op_access(&in);
			break;
		default:
			check_all();
			break;
		}
	}
	check_all();
	hmr_check_empty_and_destroy(&m, live0);
	if (hmr_check_failures)
		__builtin_trap();
	return 0;
}
