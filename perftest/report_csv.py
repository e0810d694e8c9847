#!/usr/bin/env python3
"""Table of medians from a benchmark CSV: rows by --rows columns, one column group per --cols
value (e.g. device + mode), the median of --value over repeated lines, its spread and n.

    report_csv.py FILE --rows op,bytes,state --cols device,mode --value median_ns --unit ns
                  [--scale 1000 --unit us] [--ratio "hmr0 odp/rxe0 odp"]

Also prints every median as a `name value unit` line.
"""
import argparse
import csv
import math
import statistics
from collections import defaultdict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--rows", required=True)
    ap.add_argument("--cols", default="")
    ap.add_argument("--value", required=True)
    ap.add_argument("--unit", default="")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--ratio", action="append", default=[],
                    help="'A/B': add a column with the ratio of the medians of groups A and B")
    ap.add_argument("--prefix", default="")
    a = ap.parse_args()
    rows_k, cols_k = a.rows.split(","), [c for c in a.cols.split(",") if c]
    vals, rows, cols, notes = defaultdict(list), [], [], {}
    with open(a.file) as f:
        for rec in csv.DictReader(f):
            r = tuple(rec[k] for k in rows_k)
            c = " ".join(rec[k] for k in cols_k) or a.value
            if r not in rows:
                rows.append(r)
            if c not in cols:
                cols.append(c)
            try:
                v = float(rec[a.value]) / a.scale
            except ValueError:  # a failed case: the CSV's note column says why
                notes[r, c] = rec.get("note") or "failed"
                continue
            if math.isfinite(v):  # perftest sometimes prints "inf" for a run
                vals[r, c].append(v)
    if not rows:
        print(f"(not measured: {a.file} has no figures; the run above says why)")
        return
    w = max([len(" ".join(r)) for r in rows] + [len(" ".join(rows_k))])
    head = f"{' '.join(rows_k):<{w}}"
    for c in cols:
        head += f" | {c + ' ' + a.unit:>22} {'spread':>7} {'n':>2}"
    for rt in a.ratio:
        head += f" | {rt:>22}"
    print(head)
    print("-" * len(head))
    named = []
    for r in rows:
        line, med = f"{' '.join(r):<{w}}", {}
        for c in cols:
            v = vals.get((r, c))
            if not v:
                line += f" | {notes.get((r, c), 'not measured')[:33]:>33}"
                continue
            med[c] = statistics.median(v)
            sp = (max(v) - min(v)) / med[c] * 100 if med[c] else 0
            line += f" | {med[c]:>22.1f} {sp:>6.1f}% {len(v):>2}"
            named.append(f"{a.prefix}{'.'.join(r)}.{c.replace(' ', '.')} {med[c]:.1f} {a.unit}")
        for rt in a.ratio:
            num, den = rt.split("/")
            ok = med.get(num) and med.get(den)
            line += f" | {med[num] / med[den]:>22.2f}" if ok else f" | {'n/a':>22}"
        print(line)
    print()
    print("\n".join(named))


if __name__ == "__main__":
    main()
