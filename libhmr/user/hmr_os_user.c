// SPDX-License-Identifier: GPL-2.0
/*
 * hmr_os_user.c - userspace OS seam: epoch RCU, allocation shim.
 *
 * RCU: every reader thread owns a registered struct hmr_rcu_reader. Entering
 * the outermost read-side section stores (epoch | 1); leaving stores 0.
 * synchronize_rcu() advances the global epoch by 2 and waits until no
 * reader shows an older odd value: such a reader entered before the epoch
 * changed and may still see what the caller unpublished. A reader that
 * entered later read the new epoch after the unpublish (both seq_cst), so it
 * cannot find the old object.
 *
 * Deferred frees are queued on one list and reclaimed in batches, by
 * rcu_barrier() or by the first outermost rcu_read_unlock() that sees 64 or
 * more pending: reclaim never runs inside a read-side section.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmr_os_user.h"

__thread struct hmr_rcu_reader *hmr_rcu_self;
__thread int hmr_user_locks_held;
long hmr_user_mb_word;
unsigned long hmr_rcu_epoch = 2;
long hmr_rcu_pending;

/* Registry of reader threads; the mutex protects hmr_rcu_readers and the list links. */
static pthread_mutex_t hmr_rcu_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hmr_rcu_reader *hmr_rcu_readers;
static pthread_key_t hmr_rcu_key;
static pthread_once_t hmr_rcu_once = PTHREAD_ONCE_INIT;

/* Hidden header in front of every allocation: the deferred-free link. */
struct hmr_user_hdr {
	struct hmr_user_hdr *next;	/* deferred list, under hmr_defer_lock */
	size_t size;
};

/* Protects hmr_defer_list and hmr_rcu_cbs; reclaim steals both lists at once. */
static pthread_mutex_t hmr_defer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hmr_user_hdr *hmr_defer_list;
static struct rcu_head *hmr_rcu_cbs;

static long hmr_fail_after = -1;
static long hmr_live;
static long hmr_warnings;

static void hmr_rcu_unregister(void *arg)
{
	struct hmr_rcu_reader *r = arg, **pp;

	pthread_mutex_lock(&hmr_rcu_registry_lock);
	for (pp = &hmr_rcu_readers; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	pthread_mutex_unlock(&hmr_rcu_registry_lock);
	free(r);
}

static void hmr_rcu_make_key(void)
{
	pthread_key_create(&hmr_rcu_key, hmr_rcu_unregister);
}

struct hmr_rcu_reader *hmr_rcu_register(void)
{
	struct hmr_rcu_reader *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	pthread_once(&hmr_rcu_once, hmr_rcu_make_key);
	pthread_setspecific(hmr_rcu_key, r);
	pthread_mutex_lock(&hmr_rcu_registry_lock);
	r->next = hmr_rcu_readers;
	hmr_rcu_readers = r;
	pthread_mutex_unlock(&hmr_rcu_registry_lock);
	hmr_rcu_self = r;
	return r;
}

static bool hmr_rcu_reader_old(struct hmr_rcu_reader *r, unsigned long now)
{
	unsigned long e = __atomic_load_n(&r->epoch, __ATOMIC_ACQUIRE);

	return (e & 1) && e != (now | 1);
}

void synchronize_rcu(void)
{
	struct hmr_rcu_reader *r;
	unsigned long now;

	if (hmr_rcu_self && hmr_rcu_self->nesting) {
		fprintf(stderr, "hmr: synchronize_rcu inside a read-side section\n");
		abort();
	}
	pthread_mutex_lock(&hmr_rcu_registry_lock);
	now = __atomic_add_fetch(&hmr_rcu_epoch, 2, __ATOMIC_SEQ_CST);
	for (r = hmr_rcu_readers; r; r = r->next)
		while (hmr_rcu_reader_old(r, now))
			sched_yield();
	pthread_mutex_unlock(&hmr_rcu_registry_lock);
}

void hmr_rcu_reclaim(void)
{
	struct hmr_user_hdr *h, *next;
	struct rcu_head *cb, *cbnext;
	long n = 0, freed = 0;

	pthread_mutex_lock(&hmr_defer_lock);
	h = hmr_defer_list;
	cb = hmr_rcu_cbs;
	hmr_defer_list = NULL;
	hmr_rcu_cbs = NULL;
	pthread_mutex_unlock(&hmr_defer_lock);
	if (!h && !cb)
		return;
	synchronize_rcu();
	for (; h; h = next) {
		next = h->next;
		free(h);
		freed++;
	}
	for (; cb; cb = cbnext, n++) {
		cbnext = cb->next;
		cb->func(cb);
	}
	__atomic_fetch_sub(&hmr_live, freed, __ATOMIC_RELAXED);
	__atomic_fetch_sub(&hmr_rcu_pending, n + freed, __ATOMIC_RELAXED);
}

void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head))
{
	head->func = func;
	pthread_mutex_lock(&hmr_defer_lock);
	head->next = hmr_rcu_cbs;
	hmr_rcu_cbs = head;
	pthread_mutex_unlock(&hmr_defer_lock);
	__atomic_fetch_add(&hmr_rcu_pending, 1, __ATOMIC_RELAXED);
}

void rcu_barrier(void)
{
	hmr_rcu_reclaim();
}

void *hmr_os_zalloc(size_t size, gfp_t gfp)
{
	struct hmr_user_hdr *h;
	long left = __atomic_load_n(&hmr_fail_after, __ATOMIC_RELAXED);

	while (left >= 0) {
		if (left == 0)
			return NULL;
		if (__atomic_compare_exchange_n(&hmr_fail_after, &left, left - 1,
						false, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			break;
	}
	h = calloc(1, sizeof(*h) + size);
	if (!h)
		return NULL;
	h->size = size;
	__atomic_fetch_add(&hmr_live, 1, __ATOMIC_RELAXED);
	return h + 1;
}

void hmr_os_free(void *p)
{
	if (!p)
		return;
	free((struct hmr_user_hdr *)p - 1);
	__atomic_fetch_sub(&hmr_live, 1, __ATOMIC_RELAXED);
}

void hmr_os_free_deferred(void *p)
{
	struct hmr_user_hdr *h = (struct hmr_user_hdr *)p - 1;

	pthread_mutex_lock(&hmr_defer_lock);
	h->next = hmr_defer_list;
	hmr_defer_list = h;
	pthread_mutex_unlock(&hmr_defer_lock);
	__atomic_fetch_add(&hmr_rcu_pending, 1, __ATOMIC_RELAXED);
}

unsigned int hmr_os_cpu_hint(void)
{
	static unsigned int next;
	static __thread unsigned int hint;

	if (!hint)
		hint = __atomic_add_fetch(&next, 1, __ATOMIC_RELAXED);
	return hint;
}

void hmr_user_warn(int cond, const char *what, const char *file, int line)
{
	if (!cond)
		return;
	__atomic_fetch_add(&hmr_warnings, 1, __ATOMIC_RELAXED);
	fprintf(stderr, "hmr: WARN_ON(%s) at %s:%d\n", what, file, line);
}

void hmr_user_fail_alloc_after(long n)
{
	__atomic_store_n(&hmr_fail_after, n, __ATOMIC_RELAXED);
}

long hmr_user_allocs_live(void)
{
	return __atomic_load_n(&hmr_live, __ATOMIC_RELAXED);
}

long hmr_user_warnings(void)
{
	return __atomic_load_n(&hmr_warnings, __ATOMIC_RELAXED);
}
