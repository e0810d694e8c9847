/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Rings shared with hmr.ko. Layout and the ordering protocol: kmod/uapi/hmr-abi.h.
 * The producer publishes prod with a release store after writing the entry; the consumer
 * reads prod with an acquire load before reading entries, and publishes cons with a release
 * store after it finished reading them. Each helper states which lock its caller holds.
 */
#ifndef HMR_PROVIDER_RING_H
#define HMR_PROVIDER_RING_H

#include <stddef.h>
#include <stdint.h>

#include "../kmod/uapi/hmr-abi.h"

struct hmr_uring {
	struct hmr_ring_hdr *hdr;	/* the mapping: header then slots */
	void *map;
	size_t map_size;
	uint32_t num;			/* entries, a power of two */
	uint32_t esize;
	uint32_t index;			/* our own side's index: prod or cons */
};

int hmr_uring_map(struct hmr_uring *ring, int cmd_fd, uint64_t offset, uint64_t size,
		  uint32_t num, uint32_t esize);
void hmr_uring_unmap(struct hmr_uring *ring);
int hmr_uring_remap(struct hmr_uring *ring, int cmd_fd, uint64_t offset, uint64_t size,
		    uint32_t num);

static inline void *hmr_uring_slot(struct hmr_uring *ring, uint32_t index)
{
	return (char *)ring->hdr + HMR_RING_HDR_SIZE +
	       (size_t)(index & (ring->num - 1)) * ring->esize;
}

/* Consumer side, under the owner's lock: the kernel's published producer index. */
static inline uint32_t hmr_uring_peer_prod(struct hmr_uring *ring)
{
	return __atomic_load_n(&ring->hdr->prod, __ATOMIC_ACQUIRE);
}

/* Producer side, under the owner's lock: the kernel's published consumer index. */
static inline uint32_t hmr_uring_peer_cons(struct hmr_uring *ring)
{
	return __atomic_load_n(&ring->hdr->cons, __ATOMIC_ACQUIRE);
}

/* Consumer side, under the owner's lock: hand the slots read so far back to the kernel. */
static inline void hmr_uring_publish_cons(struct hmr_uring *ring)
{
	__atomic_store_n(&ring->hdr->cons, ring->index, __ATOMIC_RELEASE);
}

/* Producer side, under the owner's lock: the next free slot, or NULL when the ring is full. */
static inline void *hmr_uring_next(struct hmr_uring *ring)
{
	if (ring->index - hmr_uring_peer_cons(ring) >= ring->num)
		return NULL;
	return hmr_uring_slot(ring, ring->index);
}

/* Producer side, under the owner's lock: make the entries written so far visible. */
static inline void hmr_uring_publish_prod(struct hmr_uring *ring)
{
	__atomic_store_n(&ring->hdr->prod, ring->index, __ATOMIC_RELEASE);
}

#endif /* HMR_PROVIDER_RING_H */
