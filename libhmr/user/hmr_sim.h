/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmr_sim.h - a simulated mmu_interval_notifier for userspace tests.
 *
 * Like the kernel's: invalidations run between sim_inv_start() and
 * sim_inv_end() and change the sequence; sim_read_begin() waits until none
 * is running and returns the sequence; sim_read_retry(s) is true when an
 * invalidation has started since. The mirror gets sim_seq_stale() as its
 * ops->seq_stale, so the full fault/invalidate protocol is exercised.
 */
#ifndef HMR_SIM_H
#define HMR_SIM_H

#include <sched.h>
#include <stdbool.h>

struct hmr_sim {
	unsigned long seq;	/* bumped at every start and end, atomic */
	unsigned long active;	/* invalidations running, atomic */
};

static inline void sim_inv_start(struct hmr_sim *s)
{
	__atomic_fetch_add(&s->active, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&s->seq, 1, __ATOMIC_SEQ_CST);
}

static inline void sim_inv_end(struct hmr_sim *s)
{
	__atomic_fetch_add(&s->seq, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_sub(&s->active, 1, __ATOMIC_SEQ_CST);
}

static inline unsigned long sim_read_begin(struct hmr_sim *s)
{
	unsigned long seq;

	for (;;) {
		seq = __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&s->active, __ATOMIC_SEQ_CST) &&
		    __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST) == seq)
			return seq;
		sched_yield();
	}
}

static inline bool sim_read_retry(struct hmr_sim *s, unsigned long seq)
{
	return __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST) != seq;
}

/* ops->seq_stale for a mirror whose priv is a struct hmr_sim. */
static inline bool sim_seq_stale(void *priv, unsigned long seq)
{
	return sim_read_retry(priv, seq);
}

#endif /* HMR_SIM_H */
