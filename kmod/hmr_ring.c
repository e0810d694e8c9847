// SPDX-License-Identifier: GPL-2.0
/*
 * Shared rings and their mmap entries (see hmr_ring.h).
 */
#include <linux/gfp.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "hmr_dev.h"
#include "hmr_ring.h"

static struct hmr_mmap_entry *to_hmentry(struct rdma_user_mmap_entry *rentry)
{
	return container_of(rentry, struct hmr_mmap_entry, rentry);
}

static struct hmr_mmap_entry *hmr_mmap_entry_alloc(size_t size)
{
	struct hmr_mmap_entry *mentry;

	mentry = kzalloc(sizeof(*mentry), GFP_KERNEL);
	if (!mentry)
		return NULL;
	mentry->size = PAGE_ALIGN(size);
	/* Sizes come from userspace: a failure is an -ENOMEM for it, not a warning. */
	mentry->addr = alloc_pages_exact(mentry->size, GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN);
	if (!mentry->addr) {
		kfree(mentry);
		return NULL;
	}
	return mentry;
}

static void hmr_mmap_entry_free(struct hmr_mmap_entry *mentry)
{
	free_pages_exact(mentry->addr, mentry->size);
	kfree(mentry);
}

/*
 * A ring of at least @min_entries entries of @esize bytes. With a user context it is mapped
 * into that process (offset and size for the response); without one (@uctx NULL: a kernel
 * consumer's CQ or QP) it stays kernel memory, produced and consumed by hmr_kverbs.c.
 */
int hmr_ring_init(struct hmr_ring *ring, struct ib_ucontext *uctx, u32 min_entries,
		  u32 esize, u64 *mmap_offset, u64 *mmap_size)
{
	struct hmr_mmap_entry *mentry;
	int ret;

	if (!min_entries || min_entries > (1u << 30))
		return -EINVAL;
	ring->num = roundup_pow_of_two(min_entries);
	ring->esize = esize;
	mentry = hmr_mmap_entry_alloc(HMR_RING_HDR_SIZE + (size_t)ring->num * esize);
	if (!mentry)
		return -ENOMEM;
	ring->kernel = !uctx;
	if (uctx) {
		ret = rdma_user_mmap_entry_insert(uctx, &mentry->rentry, mentry->size);
		if (ret)
			goto err_free;
		*mmap_offset = rdma_user_mmap_get_offset(&mentry->rentry);
		*mmap_size = mentry->size;
	}
	ring->mentry = mentry;
	ring->hdr = mentry->addr;
	ring->slots = mentry->addr + HMR_RING_HDR_SIZE;
	return 0;

err_free:
	hmr_mmap_entry_free(mentry);
	return ret;
}

/*
 * Drop the owner's reference: the memory of a user ring stays until the last mapping of it is
 * gone; a kernel ring's goes now.
 */
void hmr_ring_destroy(struct hmr_ring *ring)
{
	if (!ring->mentry)
		return;
	if (ring->kernel)
		hmr_mmap_entry_free(ring->mentry);	/* never mapped */
	else
		rdma_user_mmap_entry_remove(&ring->mentry->rentry);
	ring->mentry = NULL;
	ring->hdr = NULL;
	ring->slots = NULL;
}

int hmr_mmap(struct ib_ucontext *uctx, struct vm_area_struct *vma)
{
	struct rdma_user_mmap_entry *rentry;
	struct hmr_mmap_entry *mentry;
	int ret;

	/* Also checks that the mapping's length is the entry's. */
	rentry = rdma_user_mmap_entry_get(uctx, vma);
	if (!rentry)
		return -EINVAL;
	mentry = to_hmentry(rentry);
	if (vma->vm_flags & VM_EXEC) {
		ret = -EPERM;
		goto out_put;
	}
	ret = rdma_user_mmap_io(uctx, vma, PHYS_PFN(virt_to_phys(mentry->addr)), mentry->size,
				vma->vm_page_prot, rentry);
out_put:
	rdma_user_mmap_entry_put(rentry);
	return ret;
}

void hmr_mmap_free(struct rdma_user_mmap_entry *rentry)
{
	hmr_mmap_entry_free(to_hmentry(rentry));
}
