#!/usr/bin/env python3
"""Where a first-touch 4 KiB WRITE's instructions go beyond the CPU's own first touch, part by
part: hmr_faultbench under the lab's instruction profiler.

Runs in an instruction-clock guest started with run-guest --profile (perftest/guest_icount.sh
runs it there for run-bench's icount stage; by hand:
    tests/lab/run-guest --icount --profile -- python3 perftest/fault_profile.py --csv F):
hmr_faultbench -s 4096 for the CPU and for hmr0 (ODP), each case one profiler phase of its
timed operations. What hmr's dropped WRITE adds over its present one, less what the CPU's
first touch adds over its write of present memory, per operation (warm-up included), by part:
    hmm      HMM's look-up after the fault (hmm_range_fault: the page-table walk and its two
             VMA searches)
    hmr      hmr.ko's own code
    clock    the kernel's clock reads (ktime_get: before 2026-12-02 hmr's page_fault_ns and
             page_lookup_ns read it four times a fault; now an inline TSC read, under hmr)
    kernel   the rest: mmap_lock, hmr's VMA look-up, the notifier sequence, RCU, less the
             CPU's exception entry and exit, which the device's fault does not run
CSV: kernel,part,unit,value with unit instructions (one ns each on this clock) and a total row.
"""
import argparse
import csv
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lab"))
import insnprof  # noqa: E402  (the lab's profile reader)

IO = "/hmr-io"
ITERS = 100
HMM = re.compile(r"^(hmm_|walk_|__walk_|pgd_none|p4d_offset|pud_|pmd_|vm_normal_page|pte_to_hmm|"
                 r"__pte_offset_map$|mt_find|mas_next_slot|find_vma)")
CLOCK = re.compile(r"^(ktime_get|read_tsc|native_sched_clock|local_clock)")


def part(name):
    if name.endswith(" [hmr]"):
        return "hmr"
    if HMM.match(name):
        return "hmm"
    return "clock" if CLOCK.match(name) else "kernel"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    a = ap.parse_args()
    kernel = ".".join(os.uname().release.split(".")[:2])
    tool = f"build/guest-{os.uname().release}/user/perftest/hmr_faultbench"
    if not os.path.exists(f"{IO}/hmr-prof"):
        raise SystemExit("fault_profile.py runs in a run-guest --icount --profile guest")
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "hmr-as-installed")],
                   check=True)
    base = insnprof.phases_ended(IO)
    # phases from base: cpu dropped, cpu present; hmr write dropped, read dropped, write
    # present, read present (hmr_faultbench's case order)
    for dev in (["-d", "cpu"], ["-d", "hmr0", "-o"]):
        subprocess.run([tool, *dev, "-s", "4096", "-n", str(ITERS)], check=True,
                       stdout=subprocess.DEVNULL)
    counts = insnprof.combine(insnprof.load(IO), [(1, base + 2), (-1, base + 4), (-1, base),
                                                  (1, base + 1)])
    parts = {"hmm": 0.0, "hmr": 0.0, "clock": 0.0, "kernel": 0.0}
    for name, n in counts.items():
        parts[part(name)] += n / (ITERS + 1)
    parts["total"] = sum(parts.values())
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kernel", "part", "unit", "value"])
        for p, v in parts.items():
            w.writerow([kernel, p, "instructions", round(v)])
    print(" ".join(f"{p} {v:.0f}" for p, v in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
