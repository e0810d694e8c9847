#!/usr/bin/env python3
"""Summarise hmr_regbench CSV (device,mode,bytes,reg_ns,dereg_ns,run) as a table.

One row per size; per (device, mode): median registration and deregistration time in µs, the
spread of registration times, and (when present) the ratio pinned-rxe0 / other columns.
Error lines (a registration that failed) show the error instead of a time.
"""
import csv
import statistics
import sys
from collections import defaultdict


def fmt_size(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def main(paths):
    reg, dereg, errors, cols = defaultdict(list), defaultdict(list), {}, []
    for path in paths:
        for row in csv.DictReader(open(path)):
            col = f"{row['device']} {row['mode']}"
            if col not in cols:
                cols.append(col)
            size = int(row["bytes"])
            if row["reg_ns"].startswith("error:"):
                errors[col, size] = row["reg_ns"][6:]
                continue
            reg[col, size].append(int(row["reg_ns"]) / 1000)
            dereg[col, size].append(int(row["dereg_ns"]) / 1000)
    sizes = sorted({s for _, s in list(reg) + list(errors)})
    head = f"{'size':>9}"
    for c in cols:
        head += f" | {c + ' reg µs':>24} {'spread':>6} {'dereg µs':>10}"
    print(head)
    print("-" * len(head))
    lines = []
    for s in sizes:
        line = f"{fmt_size(s):>9}"
        for c in cols:
            v = reg.get((c, s))
            if not v:
                line += f" | {errors.get((c, s), 'not measured')[:24]:>24} {'':>6} {'':>10}"
                continue
            m = statistics.median(v)
            spread = (max(v) - min(v)) / m * 100 if m else 0
            d = statistics.median(dereg[c, s])
            line += f" | {m:>24.1f} {spread:>5.1f}% {d:>10.1f}"
            lines.append(f"reg.{c.replace(' ', '.')}.{s} {m:.1f} us")
        print(line)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
