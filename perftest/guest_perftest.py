#!/usr/bin/env python3
"""Run unmodified perftest tools (server and client in one guest) and collect their figures.

Used by perftest/run-bench inside the lab guest; also runs by hand in the guest:
    python3 perftest/guest_perftest.py --dev rxe0 --csv /tmp/out.csv
Each case runs REPEAT times; the CSV has one row per run:
    device,test,bytes,metric,unit,value,run,note
A case that fails is recorded once with an empty value and perftest's complaint as the note
(the table then says why the row is empty), and the remaining runs of that case are skipped.
"""
import argparse
import csv
import re
import subprocess
import sys
import time

# (tool, size, iterations, metric column in perftest's result line, metric name, unit)
CASES = [
    ("ib_write_lat", 2, 2000, "t_typical", "latency_typical", "usec"),
    ("ib_write_lat", 4096, 1000, "t_typical", "latency_typical", "usec"),
    ("ib_write_bw", 65536, 2000, "BW average", "bandwidth", "MB/s"),
    ("ib_write_bw", 1048576, 300, "BW average", "bandwidth", "MB/s"),
]


def parse(out, column):
    """Return the value of COLUMN from perftest's result table (header line, then a data line)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("#bytes"):
            head = re.split(r"\s{2,}", line.strip())
            for data in lines[i + 1:]:
                fields = data.split()
                if fields and fields[0].isdigit():
                    idx = next(k for k, h in enumerate(head) if h.startswith(column))
                    return float(fields[idx])
    raise ValueError(f"no '{column}' in perftest output:\n{out}")


def run_case(dev, gid, tool, size, iters, port, extra):
    args = [tool, "-d", dev, "-x", str(gid), "-s", str(size), "-n", str(iters), "-F",
            "-p", str(port)] + extra
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)
    for _ in range(20):
        client = subprocess.run(args + ["localhost"], capture_output=True, text=True, timeout=600)
        if client.returncode == 0 or "Couldn't connect" not in client.stdout + client.stderr:
            break
        time.sleep(0.5)
    sout, _ = server.communicate(timeout=600)
    if client.returncode != 0 or server.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{client.stdout}{client.stderr}\n{sout}")
    return client.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", action="append", required=True)
    ap.add_argument("--gid", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--odp", action="store_true", help="pass --odp to perftest")
    a = ap.parse_args()
    port = 18515
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "test", "bytes", "metric", "unit", "value", "run", "note"])
        for dev in a.dev:
            for tool, size, iters, column, metric, unit in CASES:
                for r in range(a.repeat):
                    port += 1
                    try:
                        out = run_case(dev, a.gid, tool, size, iters, port,
                                       ["--odp"] if a.odp else [])
                        v = parse(out, column)
                    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                        why = next((ln.strip() for ln in str(e).splitlines()[1:]
                                    if ln.strip()), "failed")
                        w.writerow([dev, tool, size, metric, unit, "", r, f"failed: {why}"])
                        print(f"{dev} {tool} {size} B: {e}", flush=True)
                        break
                    w.writerow([dev, tool, size, metric, unit, v, r, ""])
                    f.flush()
                    print(f"{dev} {tool} {size} B run {r}: {v} {unit}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
