// SPDX-License-Identifier: GPL-2.0
/*
 * Memory regions, never pinned. An MR records a range of the registering process's address
 * space and its rights: a window (struct hmr_window) over the mirror the device keeps of that
 * process (hmr_mm.c, one per process and device, shared by all its MRs); registration costs
 * O(number of VMAs), not O(pages), and takes no page reference.
 * An ODP registration (IB_ACCESS_ON_DEMAND) does not even look at the VMAs: it costs O(1),
 * and memory that is not mapped when the DMA engine touches it fails that work request only.
 * Implicit ODP (start 0, length U64_MAX) covers the whole user address space.
 *
 * The DMA engine (hmr_mr_copy(), hmr_mr_atomic()) reads the mirror through the MR's window a
 * chunk at a time (hmr_window_access_begin, hmr_access_end); a missing page is faulted with
 * hmm_range_fault over a window of pages and installed with hmr_window_populate(), which
 * refuses a stale notifier sequence. The notifier (hmr_mm.c) makes the sequence stale and calls
 * hmr_mirror_invalidate(), which clears the entries and waits for the chunks in flight on
 * them: the fence waits for one chunk at most.
 * Protocol and proofs: Documentation.md section 3 (libhmr).
 */
#include <linux/delay.h>
#include <linux/highmem.h>
#include <linux/hmm.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/moduleparam.h>
#include <linux/random.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include "hmr_dev.h"

#define HMR_MR_ACCESS_WRITE	(IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | \
				 IB_ACCESS_REMOTE_ATOMIC)
#define HMR_MR_ACCESS_ALL	(HMR_MR_ACCESS_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_ON_DEMAND | \
				 IB_ACCESS_FLUSH_GLOBAL | IB_ACCESS_MW_BIND)

/* The MR's pages, page aligned: what its window may fault. */
static unsigned long hmr_mr_first(struct hmr_mr *mr)
{
	return round_down(mr->start, PAGE_SIZE);
}

static unsigned long hmr_mr_end(struct hmr_mr *mr)
{
	return round_up(mr->start + mr->length, PAGE_SIZE);
}

/*
 * A non-ODP registration must cover mapped memory only (the verbs contract of ibv_reg_mr):
 * every byte in a VMA HMM can fault, writable if the MR may be written. Pages are not touched.
 */
static int hmr_mr_chk_mapped(struct mm_struct *mm, u64 start, u64 length, bool write)
{
	struct vm_area_struct *vma;
	u64 addr = start, end = start + length;
	int ret = 0;

	mmap_read_lock(mm);
	while (addr < end) {
		vma = vma_lookup(mm, addr);
		if (!vma || (vma->vm_flags & (VM_IO | VM_PFNMAP)) || !(vma->vm_flags & VM_READ) ||
		    (write && !(vma->vm_flags & VM_WRITE))) {
			ret = -EFAULT;
			break;
		}
		addr = vma->vm_end;
	}
	mmap_read_unlock(mm);
	return ret;
}

static int hmr_mr_chk_range(u64 start, u64 length, u64 iova)
{
	u64 end;

	if (!length || check_add_overflow(start, length, &end) || end > TASK_SIZE_MAX)
		return -EINVAL;
	if (check_add_overflow(iova, length, &end))
		return -EINVAL;
	return 0;
}

static int hmr_mr_alloc_key(struct hmr_dev *hdev, struct hmr_mr *mr)
{
	u32 index;
	int ret;

	ret = xa_alloc_cyclic(&hdev->mrs, &index, mr, HMR_KEY_INDEX_LIMIT, &hdev->next_mr,
			      GFP_KERNEL);
	if (ret < 0)
		return ret;
	mr->ibmr.lkey = index << 8 | get_random_u8();
	mr->ibmr.rkey = mr->ibmr.lkey;
	mr->gen = atomic64_inc_return(&hdev->mr_gen);
	return 0;
}

/* A new MR with one reference, not yet findable by key, over no mirror yet. */
static struct hmr_mr *hmr_mr_alloc(struct hmr_dev *hdev, u64 start, u64 length, u64 iova,
				   int access)
{
	struct hmr_mr *mr;

	mr = kzalloc(sizeof(*mr), GFP_KERNEL);
	if (!mr)
		return ERR_PTR(-ENOMEM);
	refcount_set(&mr->ref, 1);
	init_completion(&mr->done);
	mr->hdev = hdev;
	mr->start = start;
	mr->length = length;
	mr->iova = iova;
	mr->access = access;
	return mr;
}

struct ib_mr *hmr_reg_user_mr(struct ib_pd *ibpd, u64 start, u64 length, u64 iova,
			      int access, HMR_REG_USER_MR_EXTRA_ARG struct ib_udata *udata)
{
	struct hmr_dev *hdev = to_hdev(ibpd->device);
	struct hmr_mr *mr;
	int ret;

	if (!udata)
		return ERR_PTR(-EOPNOTSUPP);
	/*
	 * Optional flags (relaxed ordering) are hints a software device may ignore; so is HUGETLB
	 * ("the range is hugetlbfs-backed"): the mirror takes the page size from the CPU page table.
	 */
	access &= ~(IB_ACCESS_OPTIONAL | IB_ACCESS_HUGETLB);
	if (access & ~HMR_MR_ACCESS_ALL)
		return ERR_PTR(-EOPNOTSUPP);
	if ((access & IB_ACCESS_ON_DEMAND) && !start && length == U64_MAX) {
		/* Implicit ODP: every user address, by its own value. */
		if (iova)
			return ERR_PTR(-EINVAL);
		length = TASK_SIZE_MAX;
	}
	ret = hmr_mr_chk_range(start, length, iova);
	if (ret)
		return ERR_PTR(ret);
	if (!(access & IB_ACCESS_ON_DEMAND)) {
		ret = hmr_mr_chk_mapped(current->mm, start, length,
					access & HMR_MR_ACCESS_WRITE);
		if (ret)
			return ERR_PTR(ret);
	}

	mr = hmr_mr_alloc(hdev, start, length, iova, access);
	if (IS_ERR(mr))
		return ERR_CAST(mr);
	mr->pmirror = hmr_mm_get(hdev, current->mm);
	if (IS_ERR(mr->pmirror)) {
		ret = PTR_ERR(mr->pmirror);
		goto err_free;
	}
	hmr_window_init(&mr->win, &mr->pmirror->mirror, start, start + length,
			access & HMR_MR_ACCESS_WRITE);
	hmr_mm_keep(rdma_udata_to_drv_context(udata, struct hmr_ucontext, ibuc), mr->pmirror);
	ret = hmr_mr_alloc_key(hdev, mr);
	if (ret)
		goto err_mm;
	return &mr->ibmr;

err_mm:
	hmr_mm_put(mr->pmirror);
err_free:
	kfree(mr);
	return ERR_PTR(ret);
}

/*
 * ibv_rereg_mr. A new translation makes a new MR with new keys: the RDMA core puts it under the
 * same handle and deregisters the old one, which first waits for the work requests using it
 * (later ones find its keys gone). That costs no more than changing this one would: nothing is
 * pinned, and the new MR is a new window over the process's mirror, whose pages it keeps. A
 * change of PD or access rights alone is made in place and keeps the keys (the core sets the
 * new PD after this returns); a work request checks both when it looks its key up, so one that
 * started before the change runs with the old ones.
 */
struct ib_mr *hmr_rereg_user_mr(struct ib_mr *ibmr, int flags, u64 start, u64 length, u64 iova,
				int access, struct ib_pd *pd, struct ib_udata *udata)
{
	struct hmr_mr *mr = to_hmr(ibmr);
	int ret;

	if (!(flags & IB_MR_REREG_ACCESS))
		access = mr->access;
	if (flags & IB_MR_REREG_TRANS)
		return hmr_reg_user_mr(pd, start, length, iova, access, HMR_REG_USER_MR_NO_DMAH
				       udata);
	access &= ~(IB_ACCESS_OPTIONAL | IB_ACCESS_HUGETLB);
	if (access & ~HMR_MR_ACCESS_ALL)
		return ERR_PTR(-EOPNOTSUPP);
	if (!(access & IB_ACCESS_ON_DEMAND)) {
		/* An implicit MR stays on demand. */
		if (!mr->start && mr->length == TASK_SIZE_MAX)
			return ERR_PTR(-EINVAL);
		ret = hmr_mr_chk_mapped(current->mm, mr->start, mr->length,
					access & HMR_MR_ACCESS_WRITE);
		if (ret)
			return ERR_PTR(ret);
	}
	WRITE_ONCE(mr->win.writable, access & HMR_MR_ACCESS_WRITE);
	WRITE_ONCE(mr->access, access);
	return NULL;
}

int hmr_dereg_mr(struct ib_mr *ibmr, struct ib_udata *udata)
{
	struct hmr_dev *hdev = to_hdev(ibmr->device);
	struct hmr_mr *mr = to_hmr(ibmr);

	xa_erase(&hdev->mrs, mr->ibmr.lkey >> 8);
	WRITE_ONCE(mr->dying, true);
	/* No new users can find it; wait for the work requests using it now. */
	hmr_mr_put(mr);
	wait_for_completion(&mr->done);
	/* Its pages stay in the mirror for the process's other MRs (hmr_mm.c). */
	if (mr->pmirror)
		hmr_mm_put(mr->pmirror);
	kfree(mr);
	return 0;
}

/*
 * The DMA MR of a kernel PD (ib_alloc_pd makes one for pd->local_dma_lkey). hmr has no DMA
 * device, so the core's virtual DMA ops hand kernel consumers kernel virtual addresses
 * (ib_dma_map_*): the MR covers them all, and the DMA engine copies kernel memory directly.
 * Kernel memory needs no mirror (its statistics read zero). Only a
 * kernel PD has one, and keys are checked against the PD: no user QP can name it.
 */
struct ib_mr *hmr_get_dma_mr(struct ib_pd *ibpd, int access)
{
	struct hmr_dev *hdev = to_hdev(ibpd->device);
	struct hmr_mr *mr;
	int ret;

	if (ibpd->uobject)
		return ERR_PTR(-EOPNOTSUPP);
	if (access & ~(HMR_MR_ACCESS_ALL & ~IB_ACCESS_ON_DEMAND))
		return ERR_PTR(-EOPNOTSUPP);
	mr = hmr_mr_alloc(hdev, 0, U64_MAX, 0, access);
	if (IS_ERR(mr))
		return ERR_CAST(mr);
	mr->kernel = true;
	ret = hmr_mr_alloc_key(hdev, mr);
	if (ret) {
		kfree(mr);
		return ERR_PTR(ret);
	}
	return &mr->ibmr;
}

/* The MR @key names on @hdev, with a reference (hmr_mr_put()), or NULL (also for an MW). */
struct hmr_mr *hmr_mr_get(struct hmr_dev *hdev, u32 key)
{
	struct hmr_mr *mr;

	xa_lock(&hdev->mrs);
	mr = xa_load(&hdev->mrs, key >> 8);
	if (xa_pointer_tag(mr) == HMR_KEY_MW)
		mr = NULL;
	if (mr && (mr->ibmr.lkey != key || !refcount_inc_not_zero(&mr->ref)))
		mr = NULL;
	xa_unlock(&hdev->mrs);
	return mr;
}

void hmr_mr_put(struct hmr_mr *mr)
{
	if (refcount_dec_and_test(&mr->ref))
		complete(&mr->done);
}

/* Does [iova, iova + len) lie in @mr, of protection domain @pd, with rights @access? */
bool hmr_mr_allows(struct hmr_mr *mr, struct ib_pd *pd, u64 iova, u64 len, int access)
{
	u64 end;

	/* rereg changes both in place (hmr_rereg_user_mr()) */
	if (READ_ONCE(mr->ibmr.pd) != pd || (READ_ONCE(mr->access) & access) != access)
		return false;
	if (check_add_overflow(iova, len, &end))
		return false;
	return iova >= mr->iova && end <= mr->iova + mr->length;
}

/* Window of pages from a missing page: module parameter fault_window, 1..HMR_HUGE_PAGES. */
static unsigned int hmr_fault_window = HMR_CHUNK_PAGES;

static int hmr_fault_window_set(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 1, HMR_HUGE_PAGES);
}

static const struct kernel_param_ops hmr_fault_window_ops = {
	.set = hmr_fault_window_set,
	.get = param_get_uint,
};
module_param_cb(fault_window, &hmr_fault_window_ops, &hmr_fault_window, 0644);
MODULE_PARM_DESC(fault_window,
		 "window of pages from a missing page (1-512, default 16): those the access needs are faulted, the others installed if present; a page the CPU maps with 2 MiB or more brings its whole 2 MiB");

/* One window's hmm_range_fault output and hmr_mirror_populate input (up to 2 MiB). */
struct hmr_fault_buf {
	unsigned long hpfns[HMR_HUGE_PAGES];
	u64 pfns[HMR_HUGE_PAGES];
};

/*
 * Where a fault window's arrays live: on the stack for a window of up to HMR_CHUNK_PAGES pages
 * (the default fault_window: no allocation on the first-touch path), else, or once a huge CPU
 * mapping asks for a 2 MiB block, in a struct hmr_fault_buf. Not zeroed: HMM writes every entry
 * of the range it walks and reads none (no pfn_flags_mask), and only those are read back; so the
 * stack copy is __uninitialized, else a kernel built with INIT_STACK_ALL_ZERO (Debian's) zeroes
 * its 280 bytes on every fault.
 */
struct hmr_fault_bufs {
	unsigned long *hpfns;
	u64 *pfns;
	struct hmr_fault_buf *heap;
	unsigned long s_hpfns[HMR_CHUNK_PAGES];
	u64 s_pfns[HMR_CHUNK_PAGES];
};

static int hmr_fault_bufs_grow(struct hmr_fault_bufs *b)
{
	b->heap = kmalloc(sizeof(*b->heap), GFP_KERNEL);
	if (!b->heap)
		return -ENOMEM;
	b->hpfns = b->heap->hpfns;
	b->pfns = b->heap->pfns;
	return 0;
}

static int hmr_fault_bufs_init(struct hmr_fault_bufs *b, unsigned long npages)
{
	b->heap = NULL;
	b->hpfns = b->s_hpfns;
	b->pfns = b->s_pfns;
	return npages <= HMR_CHUNK_PAGES ? 0 : hmr_fault_bufs_grow(b);
}

/* kfree(NULL) costs a call on every fault whose arrays are on the stack: skip it. */
static void hmr_fault_bufs_fini(struct hmr_fault_bufs *b)
{
	if (b->hpfns != b->s_hpfns)
		kfree(b->heap);
}

/* HMM pfns -> libhmr populate input for @npages pages; returns how many are valid. */
static unsigned long hmr_mr_pfns(const unsigned long *hpfns, u64 *pfns, unsigned long npages)
{
	unsigned long i, valid = 0;

	for (i = 0; i < npages; i++) {
		pfns[i] = !(hpfns[i] & HMM_PFN_VALID) ? 0 :
			  HMR_PFN_VALID | (hpfns[i] & HMM_PFN_WRITE ? HMR_PFN_WRITE : 0) |
			  (hpfns[i] & ~HMM_PFN_FLAGS);
		valid += !!pfns[i];
	}
	return valid;
}

/*
 * THP-aware window: whether the CPU maps @addr (HMM output @hpfn) with 2 MiB or more (a THP, a
 * hugetlb page) and the aligned 2 MiB around it lies in @mr.
 */
static bool hmr_mr_huge_block(struct hmr_mr *mr, unsigned long addr, unsigned long hpfn)
{
	unsigned long start = round_down(addr, HMR_HUGE_SIZE);

	return (hpfn & HMM_PFN_VALID) &&
	       hmm_pfn_to_map_order(hpfn) >= HMR_HUGE_SHIFT - PAGE_SHIFT &&
	       start >= hmr_mr_first(mr) && start + HMR_HUGE_SIZE <= hmr_mr_end(mr);
}

/*
 * Fill @pfns (room for HMR_HUGE_PAGES) with the 512 pages of the 2 MiB block around @addr,
 * marked huge (libhmr installs one 2 MiB leaf); returns the block's start. The CPU mapping
 * covers the whole block (hmr_mr_huge_block), so its pages are contiguous from the start.
 */
static unsigned long hmr_mr_huge_fill(unsigned long addr, unsigned long hpfn, u64 *pfns)
{
	unsigned long start = round_down(addr, HMR_HUGE_SIZE);
	u64 pfn = (hpfn & ~HMM_PFN_FLAGS) - ((addr - start) >> PAGE_SHIFT);
	u64 flags = HMR_PFN_VALID | HMR_PFN_HUGE | (hpfn & HMM_PFN_WRITE ? HMR_PFN_WRITE : 0);
	unsigned int i;

	for (i = 0; i < HMR_HUGE_PAGES; i++)
		pfns[i] = flags | (pfn + i);
	return start;
}

/*
 * Release @mm's mmap_lock after a fault; if a writer waited for it (munmap, mmap, mprotect of
 * the process), step aside for a few microseconds so it runs now. It is runnable once we
 * unlock, but the scheduler lets a running kernel worker finish its time slice first (EEVDF's
 * run-to-parity), and the DMA engine's next fault would take the lock again: on one CPU the
 * unmapping thread waited milliseconds for a lock held for microseconds. Only a contended
 * lock costs the sleep.
 */
static void hmr_mr_mmap_unlock(struct mm_struct *mm)
{
	bool waiter = mmap_lock_is_contended(mm);

	mmap_read_unlock(mm);
	if (waiter)
		usleep_range(2, 5);
}

/*
 * hmm_range_fault(); when it only looks up (no fault flags), its time goes to page_lookup_ns:
 * with page_fault_ns it shows how much of a fault is HMM's walk to learn the pages.
 */
static int hmr_mr_range_fault(struct hmr_mr *mr, struct hmm_range *range)
{
	u64 t0;
	int ret;

	if (range->default_flags)
		return hmm_range_fault(range);
	t0 = hmr_fault_clock();
	ret = hmm_range_fault(range);
	hmr_fault_clock_add(&mr->hdev->lookup_clock, t0);
	return ret;
}

/* hmr_mr_hmm_fault(): fault range->start first as the CPU would (a read, or a write). */
enum hmr_fault_first {
	HMR_FIRST_NONE,
	HMR_FIRST_READ,
	HMR_FIRST_WRITE,
};

/*
 * Fault @addr of @vma (mmap_lock held) as the CPU's own fault would, for the device: the right
 * the access needs is checked against the VMA, then handle_mm_fault() runs on the VMA already
 * looked up, as a remote fault, as HMM's own fault path and the IOMMU's SVA fault handler do
 * (protection keys are the CPU's, not the device's). fixup_user_fault() looked the VMA up a
 * second time: with its checks, 0.4 µs of a 9.3 µs first-touch fault on 6.12's instruction
 * clock. Memory HMM refuses (VM_IO, VM_PFNMAP) is refused before any fault. Returns 0,
 * -ENOMEM or -EFAULT.
 */
static int hmr_mr_cpu_fault(struct vm_area_struct *vma, unsigned long addr, bool write)
{
	vm_flags_t need = write ? VM_WRITE : VM_READ;
	vm_fault_t r;

	if ((vma->vm_flags & (VM_IO | VM_PFNMAP)) || !(vma->vm_flags & need))
		return -EFAULT;
	r = handle_mm_fault(vma, addr, FAULT_FLAG_REMOTE | (write ? FAULT_FLAG_WRITE : 0), NULL);
	if (r & VM_FAULT_OOM)
		return -ENOMEM;
	return r & VM_FAULT_ERROR ? -EFAULT : 0;
}

/*
 * hmm_range_fault @range from range->start up to @end, clamped to the VMA holding
 * range->start (hmm_range_fault fails a whole range if any page of it is unmapped: an ODP
 * MR may span holes; the next VMA faults later). Sets range->end and range->notifier_seq.
 *
 * With @first, the page at range->start is first faulted as the CPU's own fault would
 * (hmr_mr_cpu_fault: no walk of the page table before it) under the same hold of mmap_lock,
 * and @range only looks up. HMM's fault path walks the range, faults, then walks it again;
 * for one page that first walk and a second lock were a sixth of hmr's cost of a first-touch
 * 4 KiB WRITE. Nothing is pinned: the sequence is taken before the fault, so an invalidation
 * the fault itself makes (a COW break) or any other makes the look-up stale and the caller
 * retries.
 */
static int hmr_mr_hmm_fault(struct hmr_mr *mr, struct mm_struct *mm, struct hmm_range *range,
			    unsigned long end, enum hmr_fault_first first)
{
	struct vm_area_struct *vma;
	int ret = -EFAULT;

	range->notifier_seq = mmu_interval_read_begin(&mr->pmirror->notifier);
	mmap_read_lock(mm);
	vma = vma_lookup(mm, range->start);
	if (vma && first != HMR_FIRST_NONE)
		ret = hmr_mr_cpu_fault(vma, range->start, first == HMR_FIRST_WRITE);
	else if (vma)
		ret = 0;
	if (!ret) {
		range->end = min(end, vma->vm_end);
		ret = hmr_mr_range_fault(mr, range);
	}
	hmr_mr_mmap_unlock(mm);
	return ret;
}

/*
 * Fault [range->start, @fault_end) with @hmm_flags, then look up the whole window up to @end
 * without faulting: HMM faults every page from the first one that needs it to the end of the
 * range it walks, so the pages an access needs are faulted in a range of their own (one page
 * by hmr_mr_hmm_fault()'s @first). Sets range->end and range->notifier_seq for the look-up.
 */
static int hmr_mr_fault_then_look_up(struct hmr_mr *mr, struct mm_struct *mm,
				     struct hmm_range *range, unsigned long fault_end,
				     unsigned long end, unsigned long hmm_flags)
{
	enum hmr_fault_first first = HMR_FIRST_NONE;
	unsigned long stop = end;
	int ret;

	/* One call site of hmr_mr_hmm_fault(), so that it is inlined here: a fault's own part. */
	range->default_flags = hmm_flags;
	if ((hmm_flags & HMM_PFN_REQ_FAULT) && fault_end == range->start + PAGE_SIZE) {
		range->default_flags = 0;
		first = hmm_flags & HMM_PFN_REQ_WRITE ? HMR_FIRST_WRITE : HMR_FIRST_READ;
	} else if (fault_end < end) {
		stop = fault_end;
	}
	for (;;) {
		ret = hmr_mr_hmm_fault(mr, mm, range, stop, first);
		if (ret || stop == end)
			return ret;
		range->default_flags = 0;	/* the look-up of the rest of the window */
		stop = end;
	}
}

/*
 * A window is tried at least this often before its 1 s bound ends the retries: one attempt
 * alone can take that long (direct reclaim in a memory cgroup at its limit, on an emulated
 * machine), and the invalidations that reclaim makes in the MR then make that attempt stale.
 */
#define HMR_FAULT_TRIES		4

/*
 * Fault (or, with @hmm_flags 0, only look up) a window of pages from @addr (page aligned):
 * at most fault_window pages, within [@addr, @end) and within @addr's VMA, or the whole
 * 2 MiB block that a huge CPU mapping of @addr covers, and install them in the mirror. Only
 * the pages before @fault_end (at least the first) are faulted; the rest of the window is
 * installed where the CPU already has the page, so a small access allocates no memory it does
 * not touch (a needed page that went away again in between is faulted at the next access).
 * The mm is the registering process's; it may be another process than the caller's. Returns
 * the pages installed (0 also when they went stale again: the caller retries the access),
 * -ENOMEM or -EFAULT. *@next (unless NULL): where the window ended.
 */
static long hmr_mr_fault_window(struct hmr_mr *mr, unsigned long addr, unsigned long end,
				unsigned long fault_end, unsigned long hmm_flags,
				unsigned long *next)
{
	unsigned long timeout = jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
	struct mm_struct *mm = mr->pmirror->notifier.mm;
	struct hmm_range range = {
		.notifier = &mr->pmirror->notifier,
		.start = addr,
	};
	unsigned long first, npages, valid, hpfn, installed = 0, nxt;
	struct hmr_fault_bufs b __uninitialized;
	unsigned int tries = 0;
	bool own;
	int ret;

	end = min(addr + READ_ONCE(hmr_fault_window) * PAGE_SIZE, end);
	fault_end = clamp(PAGE_ALIGN(fault_end), addr + PAGE_SIZE, end);
	nxt = end;
	ret = -ENOMEM;
	if (hmr_fault_bufs_init(&b, (end - addr) >> PAGE_SHIFT))
		goto out;
	/* The caller's own mm (a doorbell in the owner's system call) is held by the caller. */
	own = mm == current->mm;
	ret = -EFAULT;
	if (!own && !mmget_not_zero(mm))
		goto out_free;
	do {
		nxt = end;
		range.hmm_pfns = b.hpfns;
		ret = hmr_mr_fault_then_look_up(mr, mm, &range, fault_end, end, hmm_flags);
		if (ret)
			continue;	/* -EBUSY (the range changed) retries */
		hpfn = b.hpfns[0];	/* growing the buffers below moves b.hpfns */
		/* Without memory for 512 entries, the window's small ones. */
		if (hmr_mr_huge_block(mr, addr, hpfn) && (b.heap || !hmr_fault_bufs_grow(&b))) {
			first = hmr_mr_huge_fill(addr, hpfn, b.pfns);
			npages = HMR_HUGE_PAGES;
			valid = npages;
		} else {
			first = addr;
			npages = (range.end - addr) >> PAGE_SHIFT;
			valid = hmr_mr_pfns(b.hpfns, b.pfns, npages);
		}
		nxt = first + npages * PAGE_SIZE;
		ret = hmr_window_populate(&mr->win, first, npages, b.pfns, range.notifier_seq);
		if (ret == -EAGAIN) {
			ret = -EBUSY;
		} else if (!ret) {
			installed = valid;
			atomic64_inc(&mr->faults);
			atomic64_add(valid, &mr->faulted_pages);
		}
		if (ret == -EBUSY)
			cond_resched();
	} while (ret == -EBUSY && (++tries < HMR_FAULT_TRIES || time_before(jiffies, timeout)));
	if (!own)
		mmput(mm);
	if (ret && ret != -ENOMEM)
		ret = -EFAULT;
out_free:
	hmr_fault_bufs_fini(&b);
out:
	if (next)
		*next = nxt;
	return ret ? ret : installed;
}

/* Times a fault that installed pages may restart an access's one-second bound. */
#define HMR_FAULT_RESTARTS	8

/*
 * How long the DMA engine keeps faulting for one access: it gives up once a second has passed
 * without the access getting anywhere. A fault that installed pages starts a new second (at
 * most HMR_FAULT_RESTARTS times), so reclaim or invalidations racing a slow fault (an emulated
 * machine on a busy host, a memory cgroup at its limit) do not fail a WR that makes progress.
 */
struct hmr_fault_bound {
	unsigned long timeout;	/* jiffies */
	unsigned int restarts;	/* left */
};

static void hmr_fault_bound_start(struct hmr_fault_bound *b)
{
	b->timeout = jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
	b->restarts = HMR_FAULT_RESTARTS;
}

/* A fault installed pages: a new second, while restarts are left. */
static void hmr_fault_bound_progress(struct hmr_fault_bound *b)
{
	unsigned int left = b->restarts;

	if (left) {
		hmr_fault_bound_start(b);
		b->restarts = left - 1;
	}
}

static bool hmr_fault_bound_over(struct hmr_fault_bound *b)
{
	return !time_before(jiffies, b->timeout);
}

/*
 * Fault the window of pages from @addr for an access that ends at @access_end (DMA engine); its
 * time goes to page_fault_ns.
 */
static int hmr_mr_fault(struct hmr_mr *mr, struct hmr_fault_bound *b, unsigned long addr,
			unsigned long access_end, bool write)
{
	u64 t0 = hmr_fault_clock();
	long ret;

	ret = hmr_mr_fault_window(mr, max(round_down(addr, PAGE_SIZE), hmr_mr_first(mr)),
				  hmr_mr_end(mr), access_end,
				  HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0), NULL);
	hmr_fault_clock_add(&mr->hdev->fault_clock, t0);
	if (ret > 0)
		hmr_fault_bound_progress(b);
	return ret < 0 ? ret : 0;
}

/*
 * Make [@iova, @iova + @len) of @mr present in its mirror (advise_mr). @hmm_flags 0 installs
 * only what the CPU has present and skips holes; otherwise a page that cannot be faulted
 * fails it with -EFAULT. Counts the pages installed in page_prefetch (the MR's, the device's).
 */
int hmr_mr_prefetch(struct hmr_mr *mr, u64 iova, u64 len, unsigned long hmm_flags)
{
	unsigned long va = mr->start + (iova - mr->iova);
	unsigned long addr = max(round_down(va, PAGE_SIZE), hmr_mr_first(mr));
	unsigned long end = min(round_up(va + len, PAGE_SIZE), hmr_mr_end(mr));
	unsigned long next, total = 0;
	long ret = 0;

	while (addr < end && !READ_ONCE(mr->dying) && !fatal_signal_pending(current)) {
		ret = hmr_mr_fault_window(mr, addr, end, end, hmm_flags, &next);
		if (ret < 0 && hmm_flags)
			break;
		if (ret > 0)
			total += ret;
		ret = 0;
		addr = next;
		cond_resched();
	}
	atomic64_add(total, &mr->prefetched_pages);
	atomic64_add(total, &mr->hdev->prefetched_pages);
	return ret;
}

/*
 * Begin the access to the first chunk of [va, va + len): returns 0 with the chunk in flight
 * and preemption off (hmr_mr_chunks_end() when done), or -EFAULT. Faults what is missing
 * (struct hmr_fault_bound).
 *
 * A chunk is copied with preemption off, from the claim of its in-flight slot to its release:
 * an invalidation that finds a chunk in flight then waits for a copy of at most
 * HMR_CHUNK_PAGES pages (64 KiB of memcpy) that is running, never for a holder the scheduler
 * put aside. With full or lazy preemption (7.2's default) a preempted holder made a busy
 * fence wait for whole time slices of other tasks.
 */
static int hmr_mr_access_begin(struct hmr_mr *mr, struct hmr_access *acc, unsigned long va,
			       size_t len, bool write)
{
	struct hmr_fault_bound b;
	int ret;

	hmr_fault_bound_start(&b);
	for (;;) {
		preempt_disable();
		ret = hmr_window_access_begin(&mr->win, acc, va, len, write);
		if (!ret)
			return 0;
		preempt_enable();
		if (ret == -ENOENT)
			atomic64_inc(&mr->access_faults);
		/* Checked after the access, so a fault that succeeded slowly is still used. */
		if (hmr_fault_bound_over(&b))
			return -EFAULT;
		if (ret == -ENOENT)
			ret = hmr_mr_fault(mr, &b, acc->fault_addr, va + len, write);
		else if (ret == -EBUSY)
			cond_resched();	/* every in-flight slot is taken */
		if (ret && ret != -EBUSY)
			return -EFAULT;
	}
}

/*
 * For tests only: microseconds the DMA engine sleeps with each copied chunk still in flight
 * (module parameter chunk_hold_us, 0..100000, default 0 = off). It widens the window in which
 * an invalidation finds a chunk in flight, so a test can make the fence wait, or a
 * non-blockable invalidation answer busy, every time instead of by luck.
 */
static unsigned int hmr_chunk_hold_us;

static int hmr_chunk_hold_set(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, 100000);
}

static const struct kernel_param_ops hmr_chunk_hold_ops = {
	.set = hmr_chunk_hold_set,
	.get = param_get_uint,
};
module_param_cb(chunk_hold_us, &hmr_chunk_hold_ops, &hmr_chunk_hold_us, 0644);
MODULE_PARM_DESC(chunk_hold_us,
		 "tests only: microseconds each copied chunk stays in flight (0-100000, default 0)");

/*
 * End the chunks @a (of @ma) and, if not NULL, @b (of @mb) begun with hmr_mr_access_begin()
 * (preemption off since). With chunk_hold_us (tests) they first stay in flight that long,
 * preemption back on: the holder sleeps.
 */
static void hmr_mr_chunks_end(struct hmr_mirror *ma, struct hmr_access *a,
			      struct hmr_mirror *mb, struct hmr_access *b)
{
	unsigned int us = READ_ONCE(hmr_chunk_hold_us);

	if (us) {
		preempt_enable();
		fsleep(us);
	}
	hmr_access_end(ma, a);
	if (b)
		hmr_access_end(mb, b);
	if (!us)
		preempt_enable();
}

/*
 * Debugging aid (module parameter check_pages, default off; the lab turns it on): the DMA
 * engine checks that every page it is about to touch is still a mapped user page, which the
 * mirror protocol guarantees while a chunk is in flight, and warns with the page's state
 * otherwise (a page the mirror should have let go of, before it is overwritten in its new use).
 */
static bool hmr_check_pages;
module_param_named(check_pages, hmr_check_pages, bool, 0644);
MODULE_PARM_DESC(check_pages,
		 "debugging: warn when the DMA engine would touch a page that is not a mapped user page");

/* The shared zero pages are never counted as mapped; the huge one is a large folio of no file. */
static bool hmr_page_is_zero(struct page *page)
{
	struct folio *folio = page_folio(page);

	return is_zero_pfn(page_to_pfn(page)) ||
	       (folio_test_large(folio) && !folio_test_anon(folio) && !folio->mapping);
}

/*
 * A page of a large folio counts its references in the folio (its own count is 0). A slab page
 * is always wrong (whatever its fields look like); a zero page is always right.
 */
static void hmr_check_page(struct hmr_access *acc, struct page *page)
{
	struct folio *folio = page_folio(page);

	if (!folio_test_slab(folio) &&
	    (hmr_page_is_zero(page) || (folio_ref_count(folio) > 0 && folio_mapped(folio))))
		return;
	WARN_ONCE(1, "hmr: the DMA engine would touch pfn %#lx at %#lx: folio refcount %d, %s%s, flags %pGp\n",
		  page_to_pfn(page), acc->addr, folio_ref_count(folio),
		  folio_test_slab(folio) ? "slab" : "not slab",
		  folio_mapped(folio) ? ", mapped" : ", not mapped", &folio->flags);
}

static void *hmr_access_map(struct hmr_access *acc, unsigned int i)
{
	struct page *page = pfn_to_page(PHYS_PFN(acc->page[i]));

	if (READ_ONCE(hmr_check_pages))
		hmr_check_page(acc, page);
	return kmap_local_page(page);
}

/*
 * Copy @n bytes within one page: a whole page with copy_page(), the kernel's page copy (as COW
 * and migration copy pages: rep movsq where the CPU does it well), the rest with memcpy().
 * How a whole page is copied must not be left to the compiler: GCC 14 inlined these
 * bounded memcpy() calls as rep movsq, GCC 16 calls memcpy(), which on a CPU without fast
 * short rep movsb (FSRM; the lab's emulated one) is a register loop: a 1 MiB WRITE took 2.4x
 * as long on the instruction clock (463 against 192 us, 7.2 and 6.12 guests).
 */
static void hmr_copy(void *dst, const void *src, size_t n)
{
	if (n == PAGE_SIZE && PAGE_ALIGNED(dst) && PAGE_ALIGNED(src))
		copy_page(dst, (void *)src);
	else
		memcpy(dst, src, n);
}

/* Copy between the chunk @acc and @buf. */
static void hmr_mr_copy_chunk(struct hmr_access *acc, void *buf, bool to_mr)
{
	unsigned long va = acc->addr;
	size_t done = 0;
	unsigned int i;

	for (i = 0; done < acc->len; i++) {
		unsigned int off = offset_in_page(va + done);
		size_t n = min_t(size_t, acc->len - done, PAGE_SIZE - off);
		void *p = hmr_access_map(acc, i);

		if (to_mr)
			hmr_copy(p + off, buf + done, n);
		else
			hmr_copy(buf + done, p + off, n);
		kunmap_local(p);
		done += n;
	}
}

/* A kernel MR's memory (hmr_get_dma_mr()): the address is the kernel's own. */
static void hmr_kernel_copy(u64 kva, void *buf, size_t len, bool to_mr)
{
	void *k = (void *)(uintptr_t)kva;

	if (to_mr)
		memcpy(k, buf, len);
	else
		memcpy(buf, k, len);
}

/*
 * Copy @len bytes between @mr at @iova and the kernel buffer @buf, a chunk at a time, so an
 * invalidation waits for one chunk at most. Returns 0 or -EFAULT (the memory is gone or
 * lost its rights since registration). Caller checked the range.
 */
int hmr_mr_copy(struct hmr_mr *mr, u64 iova, void *buf, size_t len, bool to_mr)
{
	unsigned long va = mr->start + (iova - mr->iova);
	struct hmr_access acc;

	if (mr->kernel) {
		hmr_kernel_copy(iova, buf, len, to_mr);
		return 0;
	}
	while (len) {
		if (hmr_mr_access_begin(mr, &acc, va, len, to_mr))
			return -EFAULT;
		hmr_mr_copy_chunk(&acc, buf, to_mr);
		hmr_mr_chunks_end(mr->win.m, &acc, NULL, NULL);
		hmr_resched();
		va += acc.len;
		buf += acc.len;
		len -= acc.len;
	}
	return 0;
}

/* Copy @n bytes from the chunk @sa to the chunk @da (both in flight), page by page. */
static void hmr_mr_copy_chunks(struct hmr_access *da, struct hmr_access *sa, size_t n)
{
	size_t done = 0;

	while (done < n) {
		unsigned long dv = da->addr + done, sv = sa->addr + done;
		unsigned int di = ((dv & PAGE_MASK) - (da->addr & PAGE_MASK)) >> PAGE_SHIFT;
		unsigned int si = ((sv & PAGE_MASK) - (sa->addr & PAGE_MASK)) >> PAGE_SHIFT;
		size_t k = min3(n - done, PAGE_SIZE - offset_in_page(dv),
				PAGE_SIZE - offset_in_page(sv));
		void *d = hmr_access_map(da, di);
		void *s = hmr_access_map(sa, si);

		hmr_copy(d + offset_in_page(dv), s + offset_in_page(sv), k);
		kunmap_local(s);
		kunmap_local(d);
		done += k;
	}
}

/*
 * Copy @len bytes from @src at @src_iova to @dst at @dst_iova directly, one chunk of each in
 * flight at a time (no bounce buffer). Nothing is faulted while a chunk is in flight: the
 * destination's chunk is taken first (faulting it if missing, with nothing held), and a
 * missing source page releases it before the source is faulted, so an invalidation never
 * waits for a fault. Returns 0 or -EFAULT with *@dst_failed telling which side failed. Caller
 * checked both ranges.
 */
int hmr_mr_copy_mr(struct hmr_mr *dst, u64 dst_iova, struct hmr_mr *src, u64 src_iova,
		   size_t len, bool *dst_failed)
{
	unsigned long dva = dst->start + (dst_iova - dst->iova);
	unsigned long sva = src->start + (src_iova - src->iova);
	struct hmr_fault_bound b;
	struct hmr_access da, sa;
	int ret;

	*dst_failed = false;
	if (src->kernel) {
		*dst_failed = true;	/* only the destination can fail */
		return hmr_mr_copy(dst, dst_iova, (void *)(uintptr_t)src_iova, len, true);
	}
	if (dst->kernel)
		return hmr_mr_copy(src, src_iova, (void *)(uintptr_t)dst_iova, len, false);
	hmr_fault_bound_start(&b);
	while (len) {
		/* The destination first: it is the side a first touch finds missing. */
		if (hmr_mr_access_begin(dst, &da, dva, len, true)) {
			*dst_failed = true;
			return -EFAULT;
		}
		ret = hmr_window_access_begin(&src->win, &sa, sva, da.len, false);
		if (ret) {
			hmr_access_end(dst->win.m, &da);
			preempt_enable();
			if (ret == -ENOENT)
				atomic64_inc(&src->access_faults);
			if (hmr_fault_bound_over(&b))
				return -EFAULT;
			if (ret == -ENOENT)
				ret = hmr_mr_fault(src, &b, sa.fault_addr, sva + len, false);
			else if (ret == -EBUSY)
				cond_resched();	/* every in-flight slot is taken */
			if (ret && ret != -EBUSY)
				return -EFAULT;
			continue;
		}
		ret = min(sa.len, da.len);
		hmr_mr_copy_chunks(&da, &sa, ret);
		hmr_mr_chunks_end(dst->win.m, &da, src->win.m, &sa);
		hmr_resched();
		dva += ret;
		sva += ret;
		len -= ret;
		hmr_fault_bound_start(&b);
	}
	return 0;
}

/*
 * An 8-byte atomic at @iova (8-byte aligned, checked by the caller) with CPU atomics, so it
 * is atomic against other hmr atomics and the CPU alike. Returns the original value in @orig.
 */
int hmr_mr_atomic(struct hmr_mr *mr, u64 iova, bool cmp_swap, u64 compare_add, u64 swap,
		  u64 *orig)
{
	unsigned long va = mr->start + (iova - mr->iova);
	struct hmr_access acc;
	void *kaddr;
	u64 *p, old;

	if (mr->kernel) {
		kaddr = NULL;
		p = (u64 *)(uintptr_t)iova;
	} else {
		if (hmr_mr_access_begin(mr, &acc, va, sizeof(u64), true))
			return -EFAULT;
		kaddr = hmr_access_map(&acc, 0);
		p = kaddr + offset_in_page(va);
	}
	if (cmp_swap) {
		old = cmpxchg64(p, compare_add, swap);
	} else {
		old = READ_ONCE(*p);
		while (!try_cmpxchg64(p, &old, old + compare_add))
			;
	}
	if (kaddr) {
		kunmap_local(kaddr);
		hmr_access_end(mr->win.m, &acc);
		preempt_enable();
	}
	*orig = old;
	return 0;
}
