/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmr_table.h - libhmr internals shared by hmr_table.c and hmr_mirror.c.
 * Not part of the API.
 */
#ifndef HMR_TABLE_H
#define HMR_TABLE_H

#include "hmr.h"

int hmr_table_init(struct hmr_mirror *m);
void hmr_table_destroy(struct hmr_mirror *m);
/* hmr_table_populate(): declared in hmr.h for hmr_window_populate(). */
/* Clears entries in [start, end); returns how many (a leaf table dropped whole counts one). */
unsigned long hmr_table_clear(struct hmr_mirror *m, unsigned long start,
			      unsigned long end);

#endif /* HMR_TABLE_H */
