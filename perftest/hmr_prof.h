/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Markers for the lab's instruction profiler (tests/lab/insnprof.c, run-guest --profile): the
 * instruction movabs $(CMD << 56 | HMR_PROF_MAGIC), %rax, which the profiler recognises when qemu
 * translates it. Anywhere else it only loads a register, so a tool may mark unconditionally.
 */
#ifndef HMR_PROF_H
#define HMR_PROF_H

#define HMR_PROF_MAGIC	0x666f7270726d68ull	/* "hmrprof", the immediate's low 56 bits */
#define HMR_PROF_ON	1	/* count from here */
#define HMR_PROF_OFF	2	/* stop counting */
#define HMR_PROF_PHASE	3	/* end the phase: write out what was counted since the last end */

#if defined(__x86_64__)
#define hmr_prof_on()	 __asm__ volatile("movabs $0x01666f7270726d68, %%rax" ::: "rax")
#define hmr_prof_off()	 __asm__ volatile("movabs $0x02666f7270726d68, %%rax" ::: "rax")
#define hmr_prof_phase() __asm__ volatile("movabs $0x03666f7270726d68, %%rax" ::: "rax")
#else
#define hmr_prof_on()	 do { } while (0)
#define hmr_prof_off()	 do { } while (0)
#define hmr_prof_phase() do { } while (0)
#endif

#endif
