/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Rings shared with the provider (layout and memory ordering: uapi/hmr-abi.h).
 *
 * The memory is physically contiguous kernel memory mapped into the process with
 * rdma_user_mmap_io(), so that the RDMA core zaps the mapping when the device is
 * disassociated. It belongs to an rdma_user_mmap_entry: freed by hmr_mmap_free() once the
 * ring's owner removed the entry and the last mapping is gone. The owner (CQ, QP) touches
 * the memory only between hmr_ring_init() and hmr_ring_destroy(). A kernel consumer's rings
 * (hmr_kverbs.c) are the same memory without a mapping: the kernel is on both sides.
 */
#ifndef HMR_RING_H
#define HMR_RING_H

#include <rdma/ib_verbs.h>

#include "uapi/hmr-abi.h"

struct hmr_mmap_entry {
	struct rdma_user_mmap_entry rentry;
	void *addr;		/* alloc_pages_exact() memory, zeroed */
	size_t size;		/* page aligned */
};

struct hmr_ring {
	struct hmr_mmap_entry *mentry;
	struct hmr_ring_hdr *hdr;	/* shared: read the peer's index with the helpers below */
	void *slots;
	u32 num;			/* entries, a power of two */
	u32 esize;			/* bytes per entry */
	bool kernel;			/* a kernel consumer's: not mapped, no mmap entry */
};

int hmr_ring_init(struct hmr_ring *ring, struct ib_ucontext *uctx, u32 min_entries,
		  u32 esize, u64 *mmap_offset, u64 *mmap_size);
void hmr_ring_destroy(struct hmr_ring *ring);

/* Does the owner have this ring (a QP on an SRQ has no RQ, an XRC receive QP no rings)? */
static inline bool hmr_ring_present(const struct hmr_ring *ring)
{
	return ring->mentry;
}

static inline void *hmr_ring_slot(struct hmr_ring *ring, u32 index)
{
	return ring->slots + (size_t)(index & (ring->num - 1)) * ring->esize;
}

/* The consumer index userspace published (kernel-produced rings: the CQ). */
static inline u32 hmr_ring_user_cons(struct hmr_ring *ring)
{
	/* acquire, pairs with the provider's release: it finished reading those slots */
	return smp_load_acquire(&ring->hdr->cons);
}

/* The producer index userspace published (SQ, RQ). */
static inline u32 hmr_ring_user_prod(struct hmr_ring *ring)
{
	/* acquire, pairs with the provider's release: the slots before it are written */
	return smp_load_acquire(&ring->hdr->prod);
}

/* Hand the slots before @cons back to userspace (SQ, RQ). */
static inline void hmr_ring_publish_cons(struct hmr_ring *ring, u32 cons)
{
	/* release, pairs with the provider's acquire: our reads of the slots are done */
	smp_store_release(&ring->hdr->cons, cons);
}

/* Make the entries before @prod visible to userspace (CQ). */
static inline void hmr_ring_publish_prod(struct hmr_ring *ring, u32 prod)
{
	/* release, pairs with the provider's acquire: the slots before it are written */
	smp_store_release(&ring->hdr->prod, prod);
}

/* Is an index pair sane: no more than num entries between consumer and producer? */
static inline bool hmr_ring_span_ok(struct hmr_ring *ring, u32 prod, u32 cons)
{
	return prod - cons <= ring->num;
}

#endif /* HMR_RING_H */
