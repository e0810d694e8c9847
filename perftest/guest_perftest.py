#!/usr/bin/env python3
"""Run unmodified perftest tools (server and client in one guest) and collect their figures.

Used by perftest/run-bench inside the lab guest; also runs by hand in the guest:
    tests/lab/run-guest [--kernel 7.2] -- python3 perftest/guest_perftest.py --dev rxe0 \\
        --dev hmr0 [--mode pinned --mode odp] [--repeat 5] [--case ib_send_lat] --csv /tmp/p.csv
Cases: ib_write_lat, ib_send_lat, ib_read_lat at 2 B and 4 KiB (typical latency, usec) and
ib_write_bw at 64 KiB and 1 MiB (average MB/s), each over every --dev in every --mode: `pinned`
(perftest's default, ibv_reg_mr pins the buffer) and `odp` (perftest --odp). Each case runs
REPEAT times; the CSV has one row per run:
    device,mode,test,bytes,metric,unit,value,run,note
A run whose figure is inf or 0 (perftest's TSC-to-time conversion under TCG) is recorded
with an empty value and that note, and is not counted. A case that cannot run is recorded once with an empty value and the reason as the note (the
table then says why the row is empty): "rxe0 on 6.12 has no ODP" when the device reports no RC
ODP capabilities (ibv_devinfo -v), else perftest's complaint; the remaining runs of that case
are skipped.
"""
import argparse
import csv
import os
import subprocess
import sys
import time

from perftest_output import result

# (tool, size, iterations, metric column in perftest's result line, metric name, unit);
# iterations are kept small: a run costs seconds under TCG, and a latency median settles early
CASES = [
    ("ib_write_lat", 2, 300, "t_typical", "latency_typical", "usec"),
    ("ib_write_lat", 4096, 300, "t_typical", "latency_typical", "usec"),
    ("ib_send_lat", 2, 300, "t_typical", "latency_typical", "usec"),
    ("ib_send_lat", 4096, 300, "t_typical", "latency_typical", "usec"),
    ("ib_read_lat", 2, 300, "t_typical", "latency_typical", "usec"),
    ("ib_read_lat", 4096, 300, "t_typical", "latency_typical", "usec"),
    ("ib_write_bw", 65536, 500, "BW average", "bandwidth", "MB/s"),
    ("ib_write_bw", 1048576, 60, "BW average", "bandwidth", "MB/s"),
]
# perftest options of a mode
MODES = {"pinned": [], "odp": ["--odp"]}


def parse(out, column):
    """Return the value of COLUMN ("t_typical", "BW average") from perftest's result table."""
    v = result(out, column)
    if v is None:
        raise ValueError(f"no '{column}' in perftest output:\n{out}")
    return v


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
    try:
        sout, _ = server.communicate(timeout=60 if client.returncode else 600)
    except subprocess.TimeoutExpired:
        server.kill()
        sout, _ = server.communicate()
    if client.returncode != 0 or server.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{client.stdout}{client.stderr}\n{sout}")
    return client.stdout


def has_odp(dev):
    """True if DEV reports RC ODP capabilities (ibv_devinfo -v lists them under rc_odp_caps)."""
    out = subprocess.run(["ibv_devinfo", "-d", dev, "-v"], capture_output=True,
                         text=True).stdout
    lines = [ln.strip() for ln in out.splitlines()] + [""]
    for i, ln in enumerate(lines[:-1]):
        if ln == "rc_odp_caps:":
            return lines[i + 1] not in ("NO SUPPORT", "") and not lines[i + 1].endswith(":")
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", action="append", required=True)
    ap.add_argument("--mode", action="append", choices=sorted(MODES),
                    help="pinned (default) and/or odp; repeat the option for both")
    ap.add_argument("--odp", action="store_true", help="same as --mode odp")
    ap.add_argument("--case", action="append", help="only these tools (e.g. ib_send_lat)")
    ap.add_argument("--gid", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--csv", required=True)
    a = ap.parse_args()
    modes = (a.mode or []) + (["odp"] if a.odp else []) or ["pinned"]
    kernel = ".".join(os.uname().release.split(".")[:2])
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "hmr-as-installed")],
                   check=True)
    port = 18515
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "mode", "test", "bytes", "metric", "unit", "value", "run", "note"])
        for dev in a.dev:
            for mode in modes:
                skip = None
                if mode == "odp" and not has_odp(dev):
                    skip = f"{dev} on {kernel} has no ODP"
                    print(f"{dev}: {skip}: no ODP rows", flush=True)
                for tool, size, iters, column, metric, unit in CASES:
                    if a.case and tool not in a.case:
                        continue
                    key = [dev, mode, tool, size, metric, unit]
                    if skip:
                        w.writerow(key + ["", 0, skip])
                        continue
                    for r in range(a.repeat):
                        port += 1
                        t0 = time.monotonic()
                        try:
                            out = run_case(dev, a.gid, tool, size, iters, port, MODES[mode])
                            v = parse(out, column)
                        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                            why = next((ln.strip() for ln in str(e).splitlines()[1:]
                                        if ln.strip()), "failed")
                            w.writerow(key + ["", r, f"failed: {why}"])
                            print(f"{dev} {mode} {tool} {size} B: {e}", flush=True)
                            break
                        if not 0 < v < float("inf"):
                            # perftest turns TSC cycles into time with a per-run MHz estimate,
                            # which TCG sometimes throws off: such a run is kept out of medians
                            w.writerow(key + ["", r, f"perftest printed {v} (TCG cycle clock)"])
                            print(f"{dev} {mode} {tool} {size} B run {r}: {v}: not counted",
                                  flush=True)
                            continue
                        w.writerow(key + [v, r, ""])
                        f.flush()
                        print(f"{dev} {mode} {tool} {size} B run {r}: {v} {unit} "
                              f"({time.monotonic() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
