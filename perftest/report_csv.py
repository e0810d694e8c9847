#!/usr/bin/env python3
"""Table of medians from a benchmark CSV: rows by --rows columns, one column group per --cols
value (e.g. device + mode), the median of --value over repeated lines, its spread and n.

    report_csv.py FILE --rows op,bytes,state --cols device,mode --value median_ns --unit ns
                  [--scale 1000 --unit µs] [--ratio "hmr0 odp/rxe0 odp"] [--prefix NAME.]
                  [--where KEY=VALUE] [--where KEY!=VALUE] [--ref "NAME:KEY=VALUE,..."]

Used by perftest/run-bench for every table (perftest, registration, fault, fence, memcpy); runs
by hand on any CSV in build/bench/, e.g. the registration table:
    report_csv.py build/bench/reg-7.2.csv --rows bytes --cols device,mode --value reg_ns \\
                  --scale 1000 --unit µs --ratio "hmr0 odp/rxe0 odp"

--where KEY=VALUE (or KEY!=VALUE, repeatable) keeps only the lines that match as rows.
--ref "NAME:KEY=VALUE,..." (before --where) takes the lines that match out of the rows and
makes them a column group NAME beside the others, filled in every row whose `unit` column is
theirs (the wire table: TCP throughput of the link beside RDMA bandwidth,
`--ref "TCP:test=iperf3"`); ratios may name it.
A cell shows the median, the spread ((max-min)/median) and n. A line whose value is not a
number (a failed case) makes the cell say "not measured (N)", and footnote N below the table
says why: the line's `note` column, else the value itself, else a field that starts with
`error:` (hmr_regbench puts the errno of a failed registration in reg_ns); a cell with figures
and such lines both is marked beside n, e.g. `2 (1)`: two runs counted, footnote 1 says why
the others are not. Infinite values (perftest prints "inf" for some runs) are left out. A row
key named `bytes` prints as a size (4 KiB, 1 MiB). Each --ratio
A/B is the median of column group A over that of B (below 0.1 shown as 1/N; n/a where one
has no figure; left out where the CSV has no line of A or B at all). Also prints every
median as a `name value unit` line, named PREFIX + row keys + column group.
"""
import argparse
import csv
import math
import statistics
from collections import defaultdict


def fmt_size(n):
    n = int(n)
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def fmt_ratio(x):
    return f"{x:.2f}" if x >= 0.1 else f"1/{1 / x:.0f}"


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
    ap.add_argument("--missing", default="",
                    help="why a cell with no line at all in the CSV was not measured")
    ap.add_argument("--where", action="append", default=[],
                    help="KEY=VALUE or KEY!=VALUE: only the lines that match")
    ap.add_argument("--ref", action="append", default=[],
                    help="'NAME:KEY=VALUE,...': the matching lines as column group NAME, "
                         "beside every row of their unit")
    a = ap.parse_args()
    rows_k, cols_k = a.rows.split(","), [c for c in a.cols.split(",") if c]
    vals, rows, cols, notes = defaultdict(list), [], [], {}

    def matches(rec, conds):
        for cond in conds:
            neg = "!=" in cond
            k, _, v = cond.partition("!=" if neg else "=")
            if (rec.get(k) == v) == neg:
                return False
        return True
    refs = [(name, conds.split(",")) for name, _, conds in (x.partition(":") for x in a.ref)]
    ref_vals, ref_unit, ref_notes = defaultdict(list), {}, {}
    with open(a.file) as f:
        for rec in csv.DictReader(f):
            ref = next((name for name, conds in refs if matches(rec, conds)), None)
            if ref is not None:
                ref_unit[ref] = rec.get("unit", "")
                try:
                    v = float(rec[a.value]) / a.scale
                    if math.isfinite(v):
                        ref_vals[ref].append(v)
                except ValueError:
                    note = rec.get("note") or rec[a.value] or "failed"
                    if note not in ref_notes.setdefault(ref, []):
                        ref_notes[ref].append(note)
                continue
            if not matches(rec, a.where):
                continue
            r = tuple(rec[k] for k in rows_k)
            c = " ".join(rec[k] for k in cols_k) or a.value
            if r not in rows:
                rows.append(r)
            if c not in cols:
                cols.append(c)
            try:
                v = float(rec[a.value]) / a.scale
            except ValueError:  # a failed case: the note column (or the value) says why
                note = (rec.get("note") or rec[a.value] or next(
                    (x for x in rec.values() if x and x.startswith("error:")), "failed"))
                if note not in notes.setdefault((r, c), []):
                    notes[r, c].append(note)
                continue
            if math.isfinite(v):
                vals[r, c].append(v)
    if not rows:
        print(f"(not measured: {a.file} has no figures; the run above says why)")
        return
    # a reference group is a column in the rows of its unit (every row if the CSV has no unit)
    blank = set()  # cells of a reference group in rows of another unit: left empty
    for name, _ in refs:
        if name not in ref_vals and name not in ref_notes:
            continue
        cols.append(name)
        for r in rows:
            rec = dict(zip(rows_k, r))
            if rec.get("unit", ref_unit.get(name)) != ref_unit.get(name):
                blank.add((r, name))
            elif ref_vals.get(name):
                vals[r, name] = ref_vals[name]
            else:
                notes[r, name] = ref_notes[name]

    def label(r):
        return " ".join(fmt_size(x) if k == "bytes" else x for k, x in zip(rows_k, r))

    # a ratio of a column group the CSV does not have at all (not even a failed line) is left out
    a.ratio = [rt for rt in a.ratio if all(g in cols for g in rt.split("/"))]

    # footnotes, numbered in table order: every reason a cell lacks some or all of its runs
    why, last, marks = [], {}, {}
    for r in rows:
        for c in cols:
            if (r, c) in blank:
                continue
            cell = [f"{c}: {n}" for n in notes.get((r, c), [])]
            if not cell and not vals.get((r, c)):
                # no line at all: a tool that failed at a smaller size stops there (same
                # reason), else --missing
                cell = last.get(c) or ([f"{c}: {a.missing}"] if a.missing else [])
            if not vals.get((r, c)):
                last[c] = cell
            for n in cell:
                if n not in why:
                    why.append(n)
            marks[r, c] = f"({','.join(str(why.index(n) + 1) for n in cell)})" if cell else ""
    # room for a footnote mark beside n where a cell has figures and failed lines both
    mw = max([len(m) + 1 for k, m in marks.items() if m and vals.get(k)] + [0])
    w = max([len(label(r)) for r in rows] + [len(" ".join(rows_k))])
    cw = {c: max(len(f"{c} {a.unit}"), 10) for c in cols}
    head = f"{' '.join(rows_k):<{w}}"
    for c in cols:
        head += f" | {c + ' ' + a.unit:>{cw[c]}}{'':{mw}} {'spread':>7} {'n':>2}"
    for rt in a.ratio:
        head += f" | {rt:>10}"
    print(head)
    print("-" * len(head))
    named = []
    for r in rows:
        line, med = f"{label(r):<{w}}", {}
        for c in cols:
            v = vals.get((r, c))
            if (r, c) in blank:
                line += f" | {'':>{cw[c] + mw + 11}}"
                continue
            if not v:
                mark = f"not measured {marks[r, c]}".rstrip()
                line += f" | {mark:>{cw[c] + mw + 11}}"
                continue
            med[c] = statistics.median(v)
            sp = (max(v) - min(v)) / med[c] * 100 if med[c] else 0
            mark = f" {marks[r, c]}" if marks[r, c] else ""  # some runs counted, others not
            line += f" | {med[c]:>{cw[c]}.1f} {sp:>6.1f}% {len(v):>2}{mark:<{mw}}"
            named.append(f"{a.prefix}{'.'.join(r)}.{c.replace(' ', '.')} {med[c]:.1f} {a.unit}")
        for rt in a.ratio:
            num, den = rt.split("/")
            ok = med.get(num) and med.get(den)
            line += f" | {fmt_ratio(med[num] / med[den]) if ok else 'n/a':>{max(10, len(rt))}}"
        print(line.rstrip())
    for i, note in enumerate(why):
        print(f"({i + 1}) {note}")
    print()
    print("\n".join(named))


if __name__ == "__main__":
    main()
