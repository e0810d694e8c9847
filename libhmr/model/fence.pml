/*
 * fence.pml - Promela model of libhmr's fault / invalidate / fence protocol
 * for one page, checked with spin (safety run: assertions + invalid end
 * states, i.e. deadlocks).
 *
 *   fault:      s = read_begin(); frame = cpu_frame (resolve, unlocked);
 *               lock; if (seq != s) retry else entry = frame; unlock
 *   invalidate: notifier: active, seq++;
 *               hmr_mirror_invalidate: lock; entry = 0; unlock;        (clear)
 *               fence: a busy slot seen now is waited for until its
 *               generation changes;
 *               then the CPU frees the old frame (cpu_frame++); seq++, idle
 *   access:     claim slot (busy, gen++); e = entry;                   (claim before read)
 *               if e: use e ... use e; release slot
 *
 * Properties:
 *   P1 no access after fence: an access only ever uses the current frame,
 *      at the start and at the end of its "DMA";
 *   P2 no lost invalidation: once everything stopped, a present entry maps
 *      the current frame;
 *   P3 no deadlock: every process reaches its end.
 *
 * -DBROKEN_FENCE drops the fence wait, -DBROKEN_SEQ drops the sequence check:
 * each must make spin report an error (the model can fail).
 */

#define NFAULT	2	/* faults per faulting process */
#define NINV	2	/* invalidations */
#define NACC	2	/* accesses per access process */

byte cpu_frame = 1;	/* frame the CPU maps at the page; old ones are freed */
byte entry = 0;		/* mirrored entry: 0 or a frame */
byte seq = 0;		/* notifier sequence */
bool inv_active = 0;
bool lock = 0;		/* the update lock of the page's table */
bool slot_busy = 0;	/* the in-flight slot */
byte slot_gen = 0;
byte done = 0;

inline spin_lock() { atomic { lock == 0 -> lock = 1 } }
inline spin_unlock() { lock = 0 }

proctype fault()
{
	byte s, frame, n = 0;
	do
	:: n < NFAULT ->
		atomic { inv_active == 0 -> s = seq };	/* read_begin */
		frame = cpu_frame;			/* hmm_range_fault */
		spin_lock();
#ifndef BROKEN_SEQ
		if
		:: seq != s -> skip			/* stale: retry later */
		:: else -> entry = frame
		fi;
#else
		entry = frame;
#endif
		spin_unlock();
		n++
	:: else -> break
	od;
	done++
}

proctype invalidate()
{
	byte g, n = 0;
	do
	:: n < NINV ->
		atomic { inv_active = 1; seq++ };
		spin_lock();
		entry = 0;				/* clear */
		spin_unlock();
		/* fence: scan the slot after the clear */
		atomic {
			if
			:: slot_busy -> g = slot_gen;
#ifndef BROKEN_FENCE
				(!slot_busy || slot_gen != g)
#endif
			:: else -> skip
			fi
		};
		cpu_frame++;				/* the old frame is freed */
		atomic { seq++; inv_active = 0 };
		n++
	:: else -> break
	od;
	done++
}

proctype access()
{
	byte e, n = 0;
	do
	:: n < NACC ->
		atomic { slot_busy == 0 -> slot_busy = 1; slot_gen++ };	/* claim */
		e = entry;						/* lookup */
		if
		:: e != 0 ->
			assert(e == cpu_frame);		/* P1 at start of DMA */
			assert(e == cpu_frame)		/* P1 at its end */
		:: else -> skip				/* missing: fault path */
		fi;
		slot_busy = 0;				/* release */
		n++
	:: else -> break
	od;
	done++
}

init
{
	atomic {
		run fault();
		run invalidate();
		run access();
		run access()
	};
	done == 4;
	assert(entry == 0 || entry == cpu_frame)	/* P2 */
}
