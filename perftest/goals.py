#!/usr/bin/env python3
"""The benchmark goals (the benchmark issue), each computed from the CSVs in a results directory
and printed as measured value, target and verdict -- never a target in place of a measurement.

    goals.py [DIR] [--kernel K]      (DIR defaults to build/bench; K to 6.12)

Ratios are taken within one guest configuration: registration, fault and per-operation cost
from the instruction-clock guest of one kernel (hmr vs rxe ODP on 7.2, where rxe has ODP);
bandwidth and its memcpy ceiling from the same 2-vCPU perftest guest.
"""
import argparse
import csv
import math
import os
import statistics


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def med(rows, value, **match):
    vals = []
    for r in rows:
        if all(r.get(k) == str(v) for k, v in match.items()):
            try:
                x = float(r[value])
            except (ValueError, KeyError):
                continue
            if math.isfinite(x):
                vals.append(x)
    return statistics.median(vals) if vals else None


def goal(name, value, target, ok, unit="x"):
    if value is None:
        print(f"{name:<58} {'not measured':>14}   target {target}")
        return
    verdict = "met" if ok(value) else "NOT met"
    print(f"{name:<58} {value:>12.2f}{unit:>2}   target {target:<10} {verdict}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", default="build/bench")
    ap.add_argument("--kernel", default="6.12")
    a = ap.parse_args()
    d, k = a.dir, a.kernel
    reg = load(f"{d}/reg-{k}.csv")
    reg72 = load(f"{d}/reg-7.2.csv")
    fault = load(f"{d}/fault-{k}.csv")
    fault72 = load(f"{d}/fault-7.2.csv")
    perf = load(f"{d}/perftest-{k}.csv")
    memcpy = load(f"{d}/memcpy-smp-{k}.csv")
    gib = 1 << 30

    def ratio(x, y):
        return x / y if x is not None and y else None

    print(f"Goals (kernel {k}; ODP comparisons on 7.2)")
    rxe_pin_1g = med(reg, "reg_ns", device="rxe0", mode="pinned", bytes=gib)
    hmr_odp_1g = med(reg, "reg_ns", device="hmr0", mode="odp", bytes=gib)
    goal("register 1 GiB: rxe pinned / hmr ODP", ratio(rxe_pin_1g, hmr_odp_1g), ">= 1000",
         lambda v: v >= 1000)
    hmr_odp_16g = med(reg, "reg_ns", device="hmr0", mode="odp", bytes=16 * gib)
    goal("register hmr ODP: 16 GiB / 1 GiB", ratio(hmr_odp_16g, hmr_odp_1g), "<= 1.5",
         lambda v: v <= 1.5)
    odp_present = med(fault, "median_ns", device="hmr0", mode="odp", op="write", bytes=4096,
                      state="present")
    pin_present = med(fault, "median_ns", device="hmr0", mode="pinned", op="write", bytes=4096,
                      state="present")
    goal("4 KiB WRITE, pages present: hmr ODP / hmr non-ODP", ratio(odp_present, pin_present),
         "<= 1.05", lambda v: v <= 1.05)
    rxe_present = med(fault, "median_ns", device="rxe0", mode="pinned", op="write", bytes=4096,
                      state="present")
    goal("4 KiB WRITE per-operation cost: hmr / rxe", ratio(pin_present, rxe_present), "<= 0.5",
         lambda v: v <= 0.5)
    hmr_touch = med(fault72, "median_ns", device="hmr0", mode="odp", op="write", bytes=4096,
                    state="dropped")
    rxe_touch = med(fault72, "median_ns", device="rxe0", mode="odp", op="write", bytes=4096,
                    state="dropped")
    goal("first-touch 4 KiB WRITE (7.2): hmr ODP / rxe ODP", ratio(hmr_touch, rxe_touch),
         "<= 0.5", lambda v: v <= 0.5)
    bw_hmr = med(perf, "value", device="hmr0", mode="pinned", test="ib_write_bw", bytes=1 << 20)
    bw_rxe = med(perf, "value", device="rxe0", mode="pinned", test="ib_write_bw", bytes=1 << 20)
    mc = med(memcpy, "mb_per_s", op="memcpy", bytes=1 << 20)
    goal("1 MiB WRITE bandwidth: hmr / memcpy", ratio(bw_hmr, mc), ">= 0.6",
         lambda v: v >= 0.6)
    goal("1 MiB WRITE bandwidth: hmr / rxe", ratio(bw_hmr, bw_rxe), ">= 2", lambda v: v >= 2)


if __name__ == "__main__":
    main()
