// SPDX-License-Identifier: GPL-2.0
/*
 * hmr-prof on|off|phase: run one marker of the lab's instruction profiler (run-guest --profile
 * builds it as /hmr-io/hmr-prof): count from here, stop counting, end the phase.
 */
#include <stdio.h>
#include <string.h>

#include "../../perftest/hmr_prof.h"

int main(int argc, char **argv)
{
	const char *cmd = argc == 2 ? argv[1] : "";

	if (!strcmp(cmd, "on"))
		hmr_prof_on();
	else if (!strcmp(cmd, "off"))
		hmr_prof_off();
	else if (!strcmp(cmd, "phase"))
		hmr_prof_phase();
	else {
		fprintf(stderr, "usage: hmr-prof on|off|phase\n");
		return 2;
	}
	return 0;
}
