// SPDX-License-Identifier: GPL-2.0
/* hmr_check.c - the named-case runner of the native tests. */
#include "hmr_check.h"

int hmr_check_failures;

static int hmr_run_one(const struct hmr_case *c)
{
	int before = hmr_check_failures;

	c->fn();
	printf("%s %s\n", hmr_check_failures == before ? "ok" : "FAIL", c->name);
	fflush(stdout);
	return hmr_check_failures == before;
}

int hmr_run_cases(const struct hmr_case *cases, int argc, char **argv)
{
	const struct hmr_case *c;
	int i, bad = 0, found;

	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (c = cases; c->name; c++)
			printf("%s\n", c->name);
		return 0;
	}
	if (argc < 2) {
		for (c = cases; c->name; c++)
			bad += !hmr_run_one(c);
		return bad ? 1 : 0;
	}
	for (i = 1; i < argc; i++) {
		found = 0;
		for (c = cases; c->name; c++) {
			if (strcmp(c->name, argv[i]))
				continue;
			found = 1;
			bad += !hmr_run_one(c);
		}
		if (!found) {
			fprintf(stderr, "no test case '%s'\n", argv[i]);
			bad++;
		}
	}
	return bad ? 1 : 0;
}

void hmr_check_empty_and_destroy(struct hmr_mirror *m, long live0)
{
	struct hmr_stats st;

	CHECK_EQ(hmr_mirror_invalidate(m, 0, HMR_VA_END, true), 0);
	hmr_mirror_stats(m, &st);
	CHECK_EQ(st.tables, 1);
	hmr_mirror_destroy(m);
	rcu_barrier();
	CHECK_EQ(hmr_user_allocs_live(), live0);
}
