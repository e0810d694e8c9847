#!/usr/bin/env python3
"""PNG plots of the benchmark CSVs in a results directory (default build/bench):
  reg-K.png    registration time vs size, log-log, one line per device and mode
  fault-K.png  one WRITE/READ: dropped vs present pages, per device and mode (grouped bars)
  fence-K.png  fence p50/p99 per operation and device
  perftest-K.png  perftest medians per device and mode (pinned, odp)
  wire-K.png   the two-guest link: perftest and iperf3 medians per case, one bar per pair
Plots only what the CSVs hold; a missing CSV is skipped with a note.
"""
import csv
import glob
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def plot_reg(path, png):
    series = defaultdict(lambda: defaultdict(list))
    for r in rows(path):
        v = num(r["reg_ns"])
        if v is not None:
            series[f"{r['device']} {r['mode']}"][int(r["bytes"])].append(v / 1000)
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, pts in series.items():
        xs = sorted(pts)
        ax.plot(xs, [statistics.median(pts[x]) for x in xs], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("region size (bytes)")
    ax.set_ylabel("ibv_reg_mr time (guest µs, instruction clock)")
    ax.set_title(os.path.basename(path))
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend()
    fig.savefig(png, dpi=100, bbox_inches="tight")
    plt.close(fig)


def bars(path, png, label_keys, series_keys, value, scale, ylabel, log=False):
    data = defaultdict(list)
    labels, names = [], []
    for r in rows(path):
        v = num(r[value])
        if v is None:
            continue
        lab = " ".join(r[k] for k in label_keys)
        name = " ".join(r[k] for k in series_keys)
        data[lab, name].append(v / scale)
        if lab not in labels:
            labels.append(lab)
        if name not in names:
            names.append(name)
    if not labels:
        return False
    fig, ax = plt.subplots(figsize=(max(8, len(labels) * 1.2), 5))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        ys = [statistics.median(data[lab, name]) if data.get((lab, name)) else 0 for lab in labels]
        ax.bar([x + i * width for x in range(len(labels))], ys, width, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(os.path.basename(path))
    ax.grid(True, axis="y", alpha=0.3)
    if len(names) > 1:
        ax.legend()
    fig.savefig(png, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def main(out):
    made = []
    for path in sorted(glob.glob(f"{out}/*.csv")):
        base = os.path.basename(path)[:-4]
        png = f"{out}/{base}.png"
        kind = next((k for k in ("wire-icount", "wire-profile", "fault-profile")
                     if base.startswith(k)), base.split("-")[0])
        if kind == "reg":
            plot_reg(path, png)
        elif kind == "fault":
            bars(path, png, ["op", "bytes", "state"], ["device", "mode"], "median_ns", 1000,
                 "one WR, median (guest µs)", log=True)
        elif kind == "fence":
            bars(path, png, ["op"], ["device"], "p99_ns", 1000, "fence p99 (guest µs)")
        elif kind == "perftest":
            bars(path, png, ["test", "bytes"], ["device", "mode"], "value", 1,
                 "median (µs for latency, MB/s for bandwidth)", log=True)
        elif kind == "wire":
            bars(path, png, ["test", "bytes", "mode"], ["link"], "value", 1,
                 "median (usec for latency, MiB/s for bandwidth)", log=True)
        elif kind == "wire-icount":
            bars(path, png, ["metric"], ["link"], "value", 1, "kernel instructions per packet")
        elif kind == "wire-profile":
            bars(path, png, ["side", "part"], ["link"], "value", 1,
                 "instructions per packet (profile)")
        elif kind == "fault-profile":
            bars(path, png, ["part"], ["kernel"], "value", 1,
                 "first-touch 4 KiB WRITE: instructions beyond the CPU's")
        elif kind == "memcpy":
            bars(path, png, ["op", "bytes"], ["op"], "mb_per_s", 1, "MB/s")
        else:
            continue
        if os.path.exists(png):
            made.append(png)
    print("plots: " + (" ".join(made) if made else "none"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/bench")
