// SPDX-License-Identifier: GPL-2.0
/*
 * insnprof: a qemu TCG plugin that counts the guest instructions executed at each code address,
 * between markers the guest runs (run-guest --profile; report with tests/lab/insnprof.py).
 *
 * On the instruction clock (--icount) a guest nanosecond is one instruction, so these counts are
 * where a benchmark's time goes, function by function, with nothing added to the guest: the
 * counting is inline in the translated code and does not advance the guest's clock.
 *
 * A marker is the instruction movabs $IMM, %rax with IMM = CMD << 56 | HMR_PROF_MAGIC
 * (perftest/hmr_prof.h; the guest's hmr-prof runs one): CMD 1 starts counting, 2 stops it, 3 ends
 * a phase (what was counted since the last
 * phase end is written out, under the phase's number). Output (out=FILE, written at each phase
 * end): one line per translation block that ran in the phase, "PHASE ADDRESS INSTRUCTIONS" (a
 * block's instructions times its executions), kernel addresses only, and "PHASE user N" for all
 * user-space instructions of the phase.
 *
 * qemu 7.2's plugin API (version 1) is declared here: Debian ships no qemu-plugin.h. Counting is
 * exact with one vCPU (the inline adds are not atomic): run-guest allows it on the instruction
 * clock only, whose guest has one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../perftest/hmr_prof.h"

typedef uint64_t qemu_plugin_id_t;
struct qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
					      void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
					    qemu_plugin_vcpu_udata_cb_t cb,
					    enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define KERNEL_START	0xffff800000000000ull
#define BUCKETS		(1u << 18)

/* One translation block: the same address may be translated again (then found here again). */
struct block {
	uint64_t vaddr, ninsns;
	uint64_t runs;		/* executions, added to inline by the translated code */
	uint64_t from;		/* runs when counting last started */
	uint64_t counted;	/* runs counted in this phase */
	struct block *next;	/* in its hash bucket */
	struct block *all;	/* every block */
};

static struct block *buckets[BUCKETS], *blocks;
static const char *out_path;
static unsigned int phase;
static bool on;

static struct block *block_get(uint64_t vaddr, uint64_t ninsns)
{
	unsigned int h = (unsigned int)((vaddr * 0x9e3779b97f4a7c15ull) >> 46) & (BUCKETS - 1);
	struct block *b;

	for (b = buckets[h]; b; b = b->next)
		if (b->vaddr == vaddr && b->ninsns == ninsns)
			return b;
	b = calloc(1, sizeof(*b));
	if (!b) {
		perror("insnprof");
		exit(1);
	}
	b->vaddr = vaddr;
	b->ninsns = ninsns;
	b->next = buckets[h];
	buckets[h] = b;
	b->all = blocks;
	blocks = b;
	return b;
}

/* Add what ran since counting started to the phase (counting on), and start again from now. */
static void count_since_on(void)
{
	struct block *b;

	for (b = blocks; b; b = b->all) {
		if (on)
			b->counted += b->runs - b->from;
		b->from = b->runs;
	}
}

static void phase_end(void)
{
	FILE *f = fopen(out_path, phase ? "a" : "w");
	uint64_t user = 0, n;
	struct block *b;

	if (!f) {
		perror(out_path);
		exit(1);
	}
	for (b = blocks; b; b = b->all) {
		n = b->counted * b->ninsns;
		b->counted = 0;
		if (!n)
			continue;
		if (b->vaddr < KERNEL_START)
			user += n;
		else
			fprintf(f, "%u %llx %llu\n", phase, (unsigned long long)b->vaddr,
				(unsigned long long)n);
	}
	fprintf(f, "%u user %llu\n", phase, (unsigned long long)user);
	fclose(f);
	phase++;
}

static void marker(unsigned int vcpu, void *cmd)
{
	count_since_on();
	switch ((uintptr_t)cmd) {
	case HMR_PROF_ON:
		on = true;
		break;
	case HMR_PROF_OFF:
		on = false;
		break;
	default:
		phase_end();
	}
}

/* The command of a marker instruction (movabs $IMM, %rax: 48 b8 IMM), or 0. */
static unsigned int marker_cmd(const struct qemu_plugin_insn *insn)
{
	const unsigned char *p = qemu_plugin_insn_data(insn);
	uint64_t imm = 0;
	int i;

	if (qemu_plugin_insn_size(insn) != 10 || p[0] != 0x48 || p[1] != 0xb8)
		return 0;
	for (i = 9; i >= 2; i--)
		imm = imm << 8 | p[i];
	if ((imm & ((1ull << 56) - 1)) != HMR_PROF_MAGIC)
		return 0;
	imm >>= 56;
	return imm >= HMR_PROF_ON && imm <= HMR_PROF_PHASE ? (unsigned int)imm : 0;
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb), i;
	struct block *b = block_get(qemu_plugin_tb_vaddr(tb), n);
	struct qemu_plugin_insn *insn;
	unsigned int cmd;

	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
	for (i = 0; i < n; i++) {
		insn = qemu_plugin_tb_get_insn(tb, i);
		cmd = marker_cmd(insn);
		if (cmd)
			qemu_plugin_register_vcpu_insn_exec_cb(insn, marker, QEMU_PLUGIN_CB_NO_REGS,
							       (void *)(uintptr_t)cmd);
	}
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info, int argc, char **argv)
{
	if (argc != 1 || strncmp(argv[0], "out=", 4)) {
		fprintf(stderr, "insnprof: usage: -plugin insnprof.so,out=FILE\n");
		return 1;
	}
	out_path = argv[0] + 4;
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	return 0;
}
