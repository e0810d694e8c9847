/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmr_os_user.h - userspace implementation of the libhmr OS seam.
 *
 * Provides the subset of kernel names libhmr/src uses, so the same .c files
 * build for tests, sanitizers, the fuzzer and the benchmark:
 *  - spinlock_t is a pthread mutex (sanitizer-friendly; never held long);
 *  - READ_ONCE/WRITE_ONCE are relaxed atomics, smp_mb a seq_cst fence;
 *  - RCU is a small epoch scheme (hmr_os_user.c): readers publish the epoch
 *    they started in, synchronize_rcu() bumps the epoch and waits for every
 *    reader still in an older one, deferred frees are batched;
 *  - allocations go through a shim that fails on demand and counts live
 *    objects, so tests cover -ENOMEM paths and leaks.
 */
#ifndef HMR_OS_USER_H
#define HMR_OS_USER_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;
typedef unsigned int gfp_t;

#define GFP_KERNEL	0x1u
#define GFP_NOWAIT	0x2u

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#define BUILD_BUG_ON(c)	_Static_assert(!(c), #c)
#define WARN_ON_ONCE(c)	hmr_user_warn(!!(c), #c, __FILE__, __LINE__)
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define min_t(type, a, b) ((type)(a) < (type)(b) ? (type)(a) : (type)(b))

/* ---- memory model ---- */
/*
 * READ_ONCE is an acquire load: free on x86/arm64-LSE-ish targets, and it
 * gives ThreadSanitizer the pointer-publication ordering the kernel gets
 * from address dependencies (tables are published with smp_store_release).
 */
#define READ_ONCE(x)		__atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define WRITE_ONCE(x, v)	__atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define smp_load_acquire(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define smp_store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#if defined(__SANITIZE_THREAD__)
/* TSan does not model fences: use a seq_cst RMW (a full barrier on x86 too). */
extern long hmr_user_mb_word;
#define smp_mb()	((void)__atomic_fetch_add(&hmr_user_mb_word, 0, __ATOMIC_SEQ_CST))
#else
#define smp_mb()		__atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
#define smp_mb__after_atomic()	smp_mb()
#define cmpxchg(p, o, n) ({						\
	__typeof__(*(p)) __old = (o);					\
	__atomic_compare_exchange_n((p), &__old, (n), false,		\
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);\
	__old;								\
})

typedef struct { int counter; } atomic_t;
typedef struct { long counter; } atomic_long_t;

#define atomic_read(a)		__atomic_load_n(&(a)->counter, __ATOMIC_RELAXED)
#define atomic_set(a, v)	__atomic_store_n(&(a)->counter, (v), __ATOMIC_RELAXED)
#define atomic_inc(a)		((void)__atomic_fetch_add(&(a)->counter, 1, __ATOMIC_SEQ_CST))
#define atomic_dec(a)		((void)__atomic_fetch_sub(&(a)->counter, 1, __ATOMIC_SEQ_CST))
#define atomic_long_read(a)	__atomic_load_n(&(a)->counter, __ATOMIC_RELAXED)
#define atomic_long_set(a, v)	__atomic_store_n(&(a)->counter, (v), __ATOMIC_RELAXED)
#define atomic_long_add(v, a)	((void)__atomic_fetch_add(&(a)->counter, (v), __ATOMIC_RELAXED))
#define atomic_long_inc(a)	atomic_long_add(1, a)
#define atomic_long_dec(a)	((void)__atomic_fetch_sub(&(a)->counter, 1, __ATOMIC_RELAXED))

/* ---- locks ---- */
typedef struct { pthread_mutex_t m; } spinlock_t;
#define SINGLE_DEPTH_NESTING	1
/* Spinlocks held by this thread: RCU reclaim never runs while one is held. */
extern __thread int hmr_user_locks_held;
#define spin_lock_init(l)	pthread_mutex_init(&(l)->m, NULL)
#define spin_lock(l)		(pthread_mutex_lock(&(l)->m), hmr_user_locks_held++)
#define spin_lock_nested(l, n)	spin_lock(l)
#define spin_unlock(l)		(hmr_user_locks_held--, pthread_mutex_unlock(&(l)->m))

/* ---- wait queues: a condvar; wake_up_all takes the mutex, so no lost wake-ups ---- */
typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
} wait_queue_head_t;

#define init_waitqueue_head(wq) do {					\
	pthread_mutex_init(&(wq)->lock, NULL);				\
	pthread_cond_init(&(wq)->cond, NULL);				\
} while (0)
#define wait_event(wq, condition) do {				\
	pthread_mutex_lock(&(wq).lock);					\
	while (!(condition))							\
		pthread_cond_wait(&(wq).cond, &(wq).lock);		\
	pthread_mutex_unlock(&(wq).lock);				\
} while (0)
#define wake_up_all(wq) do {						\
	pthread_mutex_lock(&(wq)->lock);				\
	pthread_cond_broadcast(&(wq)->cond);				\
	pthread_mutex_unlock(&(wq)->lock);				\
} while (0)

/* ---- RCU (hmr_os_user.c) ---- */
struct rcu_head {
	struct rcu_head *next;
	void (*func)(struct rcu_head *head);
};

struct hmr_rcu_reader {
	unsigned long epoch;		/* 0 when outside, else (epoch | 1) of entry */
	unsigned int nesting;		/* read-side nesting depth, owner thread only */
	struct hmr_rcu_reader *next;	/* registry list, under the registry mutex */
};

extern __thread struct hmr_rcu_reader *hmr_rcu_self;
extern unsigned long hmr_rcu_epoch;
extern long hmr_rcu_pending;
struct hmr_rcu_reader *hmr_rcu_register(void);
void hmr_rcu_reclaim(void);
void synchronize_rcu(void);
void rcu_barrier(void);
void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head));

static inline void rcu_read_lock(void)
{
	struct hmr_rcu_reader *r = hmr_rcu_self;

	if (unlikely(!r))
		r = hmr_rcu_register();
	if (r->nesting++ == 0)
		__atomic_store_n(&r->epoch, __atomic_load_n(&hmr_rcu_epoch,
				 __ATOMIC_SEQ_CST) | 1, __ATOMIC_SEQ_CST);
}

static inline void rcu_read_unlock(void)
{
	struct hmr_rcu_reader *r = hmr_rcu_self;

	if (--r->nesting == 0) {
		__atomic_store_n(&r->epoch, 0, __ATOMIC_RELEASE);
		if (unlikely(__atomic_load_n(&hmr_rcu_pending, __ATOMIC_RELAXED) >= 64) &&
		    !hmr_user_locks_held)
			hmr_rcu_reclaim();
	}
}

/* ---- allocation shim with failure injection ---- */
void *hmr_os_zalloc(size_t size, gfp_t gfp);
void hmr_os_free(void *p);
void hmr_os_free_deferred(void *p);
#define hmr_os_table_alloc(size, gfp)	hmr_os_zalloc(size, gfp)
#define hmr_os_table_free(p)		hmr_os_free(p)
#define hmr_os_table_free_rcu(p)	hmr_os_free_deferred(p)
unsigned int hmr_os_cpu_hint(void);
void hmr_user_warn(int cond, const char *what, const char *file, int line);

/* Test controls: fail every allocation after @n more succeed (n < 0: never). */
void hmr_user_fail_alloc_after(long n);
/* Objects allocated and not yet freed (deferred frees count until reclaimed). */
long hmr_user_allocs_live(void);
/* Warnings raised by WARN_ON_ONCE so far. */
long hmr_user_warnings(void);

#endif /* HMR_OS_USER_H */
