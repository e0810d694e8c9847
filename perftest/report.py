#!/usr/bin/env python3
"""Summarise the benchmark CSV (device,test,bytes,metric,unit,value,run) as a table.

Each row is one (test, size, metric); for each device: the median of the repeated runs and its
spread ((max-min)/median). When hmr0 and rxe0 are both present, the ratio hmr0/rxe0 of medians.
Also prints every median as a `name value unit` line for scripts.
"""
import csv
import math
import statistics
import sys
from collections import defaultdict


def main(path):
    runs = defaultdict(list)
    units = {}
    devices = []
    notes = {}
    for row in csv.DictReader(open(path)):
        key = (row["test"], int(row["bytes"]), row["metric"])
        if row["value"] == "":
            notes[key, row["device"]] = row.get("note") or "failed"
            runs.setdefault((key, row["device"]), [])
        elif math.isfinite(float(row["value"])):
            runs[key, row["device"]].append(float(row["value"]))
        else:  # perftest sometimes prints "inf" for a run (its timer): not a figure
            runs.setdefault((key, row["device"]), [])
        units[key] = row["unit"]
        if row["device"] not in devices:
            devices.append(row["device"])
    keys = sorted({k for k, _ in runs}, key=lambda k: (k[0], k[2], k[1]))
    head = f"{'test':<14}{'bytes':>9}  {'metric':<16}{'unit':<7}"
    for d in devices:
        head += f"{d + ' median':>16}{'spread':>8}{'n':>3}"
    if "hmr0" in devices and "rxe0" in devices:
        head += f"{'hmr0/rxe0':>11}"
    print(head)
    print("-" * len(head))
    lines = []
    for k in keys:
        test, size, metric = k
        line = f"{test:<14}{size:>9}  {metric:<16}{units[k]:<7}"
        med = {}
        for d in devices:
            v = runs.get((k, d))
            if not v:
                line += f"{notes.get((k, d), 'n/a')[:26]:>27}"
                continue
            med[d] = statistics.median(v)
            spread = (max(v) - min(v)) / med[d] * 100 if med[d] else 0.0
            line += f"{med[d]:>16.2f}{spread:>7.1f}%{len(v):>3}"
            lines.append(f"{d}.{test}.{size}.{metric} {med[d]:.2f} {units[k]}")
        if "hmr0" in devices and "rxe0" in devices:
            r = med.get("hmr0", 0) / med["rxe0"] if med.get("rxe0") else None
            line += f"{r:>11.2f}" if r else f"{'n/a':>11}"
        print(line)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
