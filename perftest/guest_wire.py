#!/usr/bin/env python3
"""perftest and iperf3 across the two-guest link: the server on the peer, the client here.

Runs in the first guest of a two-guest lab run (perftest/run-bench's wire stage, or by hand):
    tests/lab/run-guest --peer [--self-device rxe --peer-device rxe] --timeout 480 -- \\
        python3 perftest/guest_wire.py [--repeat 3] [--quick] [--case ib_read_bw] \\
        [--mode odp] [--budget 360] [--label NAME] [--append] [--raw DIR] \\
        --csv build/bench/w.csv
Each guest has one device on the link (HMR_SELF_DEVICE here, HMR_PEER_DEVICE on the peer,
reached with hmr-peer); the `link` column of every line names the two device kinds, e.g.
hmr↔hmr (--label replaces it). Cases, each REPEAT times, one round over every case per repeat
(a run cut short by --budget still has every case), in this order but iperf3 first:
  ib_write_bw, ib_read_bw at 64 KiB (-n 200) and 1 MiB (-n 30): BW average in perftest's
      MB/s, which are MiB/s (2^20 bytes), pinned (perftest's default) and --odp on both sides;
  ib_write_lat, ib_send_lat at 2 B and 4 KiB (-n 500): typical (median) latency in usec,
      pinned, reported by perftest in cycles (-C) and turned into usec with the guest's TSC
      frequency as its kernel calibrated it at boot (dmesg);
  iperf3 TCP for --iperf-time seconds (default 5): the link's own limit, in MiB/s (mode tcp).
--mode limits the bandwidth cases to one mode (the latency cases are pinned; with --mode odp
they are left out). The data goes from client to server for WRITE and iperf3 (self → peer) and
back for READ (peer → self). perftest's options are its defaults but for -d, -x (each side's
RoCEv2 GID of its IPv4 address, read from sysfs), -s, -n, -p, -F and -C for latency.

perftest turns cycles into time with /proc/cpuinfo's "cpu MHz" if its own sample of the cycle
counter against gettimeofday agrees within 2%, else with the sample, and with 0 when the sample
is too noisy (r^2 < 0.9: a bandwidth of 0.0, a latency of inf); on a loaded TCG guest both
waver ("cpu MHz" read 130 once, the TSC counting 2596 MHz). Hence -C for latency, with the
boot's calibration (the guest's TSC counts at the host's constant rate). And each figure is
checked against the client's whole run time (set-up included): a bandwidth below its bytes
over that time, or a typical latency above what its iterations in that time allow (a median
is at most twice the mean), is recorded as "not counted: ..." and left out of the medians.

The CSV has one line per run:
    link,mode,test,bytes,metric,unit,value,run,note
A line without a value says why in its note: "perftest printed 0.0 (TCG cycle clock)" or
"not counted: perftest printed X MiB/s, below ..." (not counted); "n/a: rxe on 6.12 has no
ODP" (--odp when a side's device lists no RC ODP capabilities in `ibv_devinfo -v`; written
once); "failed: ..." with the tool's complaint (a case that fails twice in a row is not run
again); "not run: ..." once --budget seconds have passed (no run starts after that; the
figures so far stay) or once the peer stopped answering (hmr-peer's status 125, a crashed peer;
the script then exits 3). --quick: one run of every case, fewer iterations (a smoke test).
--append adds to an existing CSV (its header written only once). --raw DIR keeps each run's
whole output, client and server, one file a run, with the changes of this side's port counters
over the client's run (sent_pkts, retry_pkts, ack_timeouts...). --not-run WHY --label LINK, on
the host, writes a "not run: WHY" line for every case of LINK (run-bench, for a pair boot that
wrote nothing).
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time

from perftest_output import result

# (tool, size, iterations, --quick iterations, modes, column of perftest's result, metric, unit)
BW, LAT = ("pinned", "odp"), ("pinned",)
CASES = [
    ("ib_write_bw", 65536, 200, 50, BW, "BW average", "bandwidth", "MiB/s"),
    ("ib_write_bw", 1048576, 30, 10, BW, "BW average", "bandwidth", "MiB/s"),
    ("ib_read_bw", 65536, 200, 50, BW, "BW average", "bandwidth", "MiB/s"),
    ("ib_read_bw", 1048576, 30, 10, BW, "BW average", "bandwidth", "MiB/s"),
    ("ib_write_lat", 2, 500, 200, LAT, "t_typical", "latency_typical", "usec"),
    ("ib_write_lat", 4096, 500, 200, LAT, "t_typical", "latency_typical", "usec"),
    ("ib_send_lat", 2, 500, 200, LAT, "t_typical", "latency_typical", "usec"),
    ("ib_send_lat", 4096, 500, 200, LAT, "t_typical", "latency_typical", "usec"),
]
MODES = {"pinned": [], "odp": ["--odp"]}
# A latency run reports cycles (-C), turned into usec with the guest's nominal TSC frequency.
LAT_ARGS = ["-C"]
ADDR = {"self": "192.0.2.1", "peer": "192.0.2.2"}
# perftest refuses to report when its cycle-counter calibration is too noisy under TCG (the
# tool's measurement, not the device): such a run is tried again, at most twice more.
CALIBRATION = "Correlation coefficient r^2"
NO_CONNECT = ("Couldn't connect to", "Unable to open file descriptor for socket connection",
              "Couldn't read/write remote address")


class Failed(Exception):
    pass


class PeerGone(Exception):
    """hmr-peer says the peer does not answer (status 125): no later run can work."""


class Clock(Exception):
    """perftest's figure contradicts the wall clock: the run is not counted."""


def log(msg):
    print(f"[wire {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(side, argv, timeout=120):
    """Run ARGV on SIDE (here, or on the peer through hmr-peer)."""
    argv = list(argv) if side == "self" else ["hmr-peer", *argv]
    return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          timeout=timeout)


def first_line(text):
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "no output")


def complaint(text):
    """The lines of a tool's output that say what went wrong (perftest: the completion error
    and its status), joined, else its first line."""
    why = [ln.strip() for ln in text.splitlines()
           if re.search(r"(?i)fail|error|couldn|unable|timeout|refused|status", ln)]
    return "; ".join(dict.fromkeys(why[:3])) or first_line(text)


def as_installed():
    """hmr on both sides as it is installed (perftest/hmr-as-installed)."""
    for side in ("self", "peer"):
        sh(side, [os.path.join(os.path.dirname(os.path.abspath(__file__)), "hmr-as-installed")])


def gid_index(side):
    """The index of SIDE's RoCEv2 GID ::ffff:<its address> (sysfs, not assumed)."""
    r = sh(side, ["sh", "-c", "cd /sys/class/infiniband/*/ports/1 && "
                  "grep -s -H . gids/* gid_attrs/types/*; true"])
    gids, types = {}, {}
    for line in r.stdout.splitlines():
        path, _, value = line.partition(":")
        (gids if path.startswith("gids/") else types)[path.rsplit("/", 1)[1]] = value
    a, b, c, d = (int(x) for x in ADDR[side].split("."))
    want = f"0000:0000:0000:0000:0000:ffff:{a:02x}{b:02x}:{c:02x}{d:02x}"
    found = sorted(int(i) for i, g in gids.items() if g == want and types.get(i) == "RoCE v2")
    if not found:
        raise SystemExit(f"{side}: no RoCE v2 GID {want}:\n{r.stdout}{r.stderr}")
    return found[0]


def has_odp(side, dev):
    """True if DEV on SIDE lists RC ODP capabilities in `ibv_devinfo -v` (6.12's rxe: none)."""
    lines = [ln.strip() for ln in sh(side, ["ibv_devinfo", "-d", dev, "-v"]).stdout.splitlines()]
    for i, ln in enumerate(lines[:-1]):
        if ln == "rc_odp_caps:":
            return lines[i + 1] not in ("NO SUPPORT", "") and not lines[i + 1].endswith(":")
    return False


def parse(out, column):
    """The value of COLUMN ("t_typical", "BW average") in perftest's result table."""
    v = result(out, column)
    if v is None:
        raise Failed(f"no '{column}' in the client's report: {first_line(out)}")
    return v


def server_client(server_argv, client_argv, port, timeout, raw=None, dev=None):
    """SERVER_ARGV in the background on the peer, CLIENT_ARGV here once the server listens on
    TCP PORT; (client output, server output, the client's run time in seconds). Raises Failed
    with the complaint. RAW: a file for both sides' whole output and the changes of DEV's port
    counters (this side's) over the client's run."""
    r = sh("peer", ["--bg", *server_argv])
    if r.returncode == 125:
        raise PeerGone(first_line(r.stderr))
    if r.returncode:
        raise Failed(f"hmr-peer --bg: {first_line(r.stderr)}")
    job = r.stdout.strip()
    ended = f"/hmr-pipe/jobs/{job}/rc"
    try:
        # one shell loop on the peer (not one hmr-peer call per look): at most 60 s, and no
        # longer than the server runs
        sh("peer", ["sh", "-c", f'i=0; while [ $i -lt 600 ] && ! [ -e {ended} ] && '
                    f'! ss -Hltn "sport = :{port}" | grep -q .; do i=$((i+1)); sleep 0.1; done'])
        for _ in range(3):
            before = counters(dev) if dev else {}
            t0 = time.monotonic()
            client = sh("self", client_argv, timeout)
            wall = time.monotonic() - t0
            after = counters(dev) if dev else {}
            text = client.stdout + client.stderr
            if client.returncode == 0 or not any(m in text for m in NO_CONNECT) or \
                    os.path.exists(ended):
                break
            time.sleep(1)
        w = sh("peer", ["--wait", job, "--timeout", "60"], timeout=180)
    except subprocess.TimeoutExpired as e:
        raise Failed(f"{e.cmd[0]} did not end within {e.timeout:.0f} s") from None
    finally:
        if not os.path.exists(ended):
            sh("peer", ["--kill", job])
    sout = w.stdout + w.stderr
    if raw:
        moved = " ".join(f"{k} {after[k] - v}" for k, v in before.items()
                         if after.get(k, v) != v)
        with open(raw, "w") as f:
            f.write(f"$ {' '.join(client_argv)}\n# exit {client.returncode}, {wall:.2f} s\n"
                    f"# {dev} counters over the client's run: {moved or 'none moved'}\n"
                    f"{client.stdout}{client.stderr}\n# server: {' '.join(server_argv)}\n"
                    f"{sout}")
    if client.returncode:
        raise Failed(f"client exit {client.returncode}: {complaint(text)}"
                     + (" (calibration)" if CALIBRATION in text + sout else ""))
    if w.returncode:
        raise Failed(f"server exit {w.returncode}: {complaint(sout)}")
    return client.stdout, sout, wall


def tsc_mhz():
    """The guest's TSC frequency as its kernel calibrated it at boot (dmesg: "tsc: Refined TSC
    clocksource calibration", else "tsc: Detected ... MHz processor"; else bogomips / 2, which
    the boot derives from it). Not /proc/cpuinfo's "cpu MHz": on a loaded TCG guest that is a
    current-frequency estimate (130 MHz seen), and perftest trusts it only within 2% of its own
    sample."""
    log = subprocess.run(["dmesg"], capture_output=True, text=True, errors="replace").stdout
    for pattern, name in ((r"tsc: Refined TSC clocksource calibration: ([\d.]+) MHz",
                           "the boot's refined TSC calibration"),
                          (r"tsc: Detected ([\d.]+) MHz processor", "the boot's TSC estimate")):
        m = re.findall(pattern, log)
        if m:
            return float(m[-1]), name
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("bogomips"):
                return float(line.split(":")[1]) / 2, "bogomips / 2"
    raise SystemExit("no TSC frequency: neither dmesg nor /proc/cpuinfo has one")


def counters(dev):
    """The device port's counters (hw_counters in sysfs; rxe and hmr name the wire ones alike:
    sent_pkts, rcvd_pkts, retry_pkts, ack_timeouts...)."""
    d = f"/sys/class/infiniband/{dev}/ports/1/hw_counters"
    out = {}
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        try:
            with open(os.path.join(d, name)) as f:
                out[name] = int(f.read())
        except (OSError, ValueError):
            pass
    return out


def cases(a, link):
    """(CSV key, perftest case or None for iperf3) of every case to run, in the order of a
    round: iperf3 first (the goals' reference), then bandwidth, then latency."""
    todo = []
    if not a.case or "iperf3" in a.case:
        todo.append(((link, "tcp", "iperf3", 0, "bandwidth", "MiB/s"), None))
    for tool, size, iters, qiters, modes, column, metric, unit in CASES:
        for mode in modes:
            if (a.case and tool not in a.case) or (a.mode and mode != a.mode):
                continue
            todo.append(((link, mode, tool, size, metric, unit),
                         (tool, size, qiters if a.quick else iters, column, mode)))
    return todo


def open_csv(a):
    """The CSV writer (the header written unless --append adds to a CSV that has one)."""
    new = not (a.append and os.path.exists(a.csv) and os.path.getsize(a.csv))
    f = open(a.csv, "a" if a.append else "w", newline="")
    w = csv.writer(f)
    if new:
        w.writerow(["link", "mode", "test", "bytes", "metric", "unit", "value", "run", "note"])
    return f, w


def not_run(a):
    if not a.label:
        raise SystemExit("--not-run needs --label")
    f, w = open_csv(a)
    with f:
        for key, _ in cases(a, a.label):
            w.writerow(list(key) + ["", 0, f"not run: {a.not_run}"])
    return 0


def add_run_args(ap):
    """The options every wire benchmark script takes: --csv, --append, --repeat, --quick."""
    ap.add_argument("--csv", required=True)
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")


def main():
    ap = argparse.ArgumentParser()
    add_run_args(ap)
    ap.add_argument("--case", action="append", help="only these tools (ib_write_bw, iperf3...)")
    ap.add_argument("--mode", choices=sorted(MODES), help="only this mode")
    ap.add_argument("--label", help="the link column (default: the device kinds, e.g. hmr↔rxe)")
    ap.add_argument("--iperf-time", type=int, default=5)
    ap.add_argument("--raw", help="a directory for each run's whole output (both sides)")
    ap.add_argument("--budget", type=float, default=0,
                    help="start no run after this many seconds (0: no bound)")
    ap.add_argument("--not-run", metavar="WHY",
                    help="on the host: a 'not run: WHY' line for every case of --label (a pair "
                         "boot that measured nothing), then exit")
    a = ap.parse_args()
    t_start = time.monotonic()
    if a.quick:
        a.repeat = 1
    if a.not_run:
        return not_run(a)
    dev = {"self": os.environ.get("HMR_SELF_DEVICE"), "peer": os.environ.get("HMR_PEER_DEVICE")}
    if not (os.environ.get("HMR_PEER") and dev["self"] and dev["peer"]):
        raise SystemExit("guest_wire.py runs in the first guest of tests/lab/run-guest --peer")
    kind = {s: d.rstrip("0123456789") for s, d in dev.items()}
    link = a.label or f"{kind['self']}↔{kind['peer']}"
    kernel = ".".join(os.uname().release.split(".")[:2])
    mhz, mhz_from = tsc_mhz()
    as_installed()
    gid = {s: gid_index(s) for s in dev}
    odp = {s: has_odp(s, dev[s]) for s in dev}
    no_odp = " and ".join(sorted({kind[s] for s in dev if not odp[s]}))
    log(f"{link} on {kernel}: {dev['self']} (GID {gid['self']}) here, {dev['peer']} (GID "
        f"{gid['peer']}) on the peer; ODP {'on both' if not no_odp else 'not on ' + no_odp}; "
        f"{a.repeat} run(s) per case; TSC {mhz:.1f} MHz ({mhz_from})")

    todo = cases(a, link)
    port = 18600
    f, w = open_csv(a)
    with f:
        def row(key, value, r, note=""):
            w.writerow(list(key) + [value, r, note])
            f.flush()

        dropped, failures = set(), {}  # cases not run again; consecutive failures of a case
        gone = None  # why the peer stopped answering
        for r in range(a.repeat):
            for key, spec in todo:
                if key in dropped:
                    continue
                if spec and spec[4] == "odp" and no_odp:
                    row(key, "", r, f"n/a: {no_odp} on {kernel} has no ODP")
                    dropped.add(key)
                    continue
                if gone:
                    row(key, "", r, f"not run: the peer stopped answering ({gone})")
                    dropped.add(key)
                    continue
                if a.budget and time.monotonic() - t_start > a.budget:
                    row(key, "", r, f"not run: the stage's {a.budget:.0f} s budget was spent")
                    dropped.add(key)
                    continue
                name = f"{key[2]} {key[3]} B {key[1]} run {r}"
                raw = None
                if a.raw:
                    os.makedirs(a.raw, exist_ok=True)
                    raw = os.path.join(a.raw, re.sub(r"\W+", "-", f"{link} {name}") + ".txt")
                t0 = time.monotonic()
                try:
                    for _ in range(3):
                        port += 1
                        p = str(port)
                        try:
                            if spec is None:
                                cout, _, _ = server_client(
                                    ["iperf3", "-s", "-1", "-p", p],
                                    ["iperf3", "-J", "-t", str(a.iperf_time), "-p", p, "-c",
                                     ADDR["peer"]], port, a.iperf_time + 120, raw,
                                    dev["self"])
                                v = json.loads(cout)["end"]["sum_received"]["bits_per_second"]
                                v = v / 8 / (1 << 20)
                            else:
                                tool, size, iters, column, mode = spec

                                lat = tool.endswith("_lat")

                                def argv(side):
                                    return [tool, "-d", dev[side], "-x", str(gid[side]), "-s",
                                            str(size), "-n", str(iters), "-F", "-p", p,
                                            *MODES[mode], *(LAT_ARGS if lat else [])]
                                cout, _, wall = server_client(argv("peer"),
                                                              argv("self") + [ADDR["peer"]],
                                                              port, 300, raw, dev["self"])
                                v = parse(cout, column)
                                if lat:
                                    v /= mhz
                                    # perftest halves a WRITE/SEND round trip; a median is at
                                    # most twice the mean, and the mean round trip at most the
                                    # client's whole run over its iterations
                                    half = 1 if "read" in tool else 2
                                    bound = 2 * wall / (iters - 1) / half * 1e6
                                    if v > bound * 1.1:
                                        raise Clock(f"perftest printed {v:.0f} usec, above the "
                                                    f"{bound:.0f} usec that {iters} round trips "
                                                    f"in the client's {wall:.1f} s allow")
                                elif 0 < v < size * iters / (1 << 20) / wall / 1.1:
                                    # less than the bytes over the client's whole life (its
                                    # set-up included): perftest's cycles-per-usec sample
                                    # was too low
                                    bound = size * iters / (1 << 20) / wall
                                    raise Clock(f"perftest printed {v:.2f} MiB/s, below the "
                                                f"{bound:.2f} MiB/s of {iters} x {size} B in "
                                                f"the client's {wall:.1f} s (its clock sample)")
                            break
                        except Failed as e:
                            if "(calibration)" not in str(e):
                                raise
                            log(f"{name}: perftest's calibration failed: again")
                except PeerGone as e:
                    gone = str(e)
                    row(key, "", r, f"failed: the peer stopped answering ({gone})")
                    log(f"{name}: the peer stopped answering: {gone}; no more runs")
                    dropped.add(key)
                    continue
                except Clock as e:
                    row(key, "", r, f"not counted: {e}")
                    log(f"{name}: not counted: {e}")
                    continue
                except (Failed, ValueError, KeyError) as e:
                    row(key, "", r, f"failed: {e}")
                    log(f"{name}: FAILED ({time.monotonic() - t0:.1f} s): {e}")
                    failures[key] = failures.get(key, 0) + 1
                    if failures[key] >= 2:
                        dropped.add(key)
                    continue
                failures[key] = 0
                if not 0 < v < float("inf"):
                    # perftest turns TSC cycles into time with a per-run MHz estimate, which TCG
                    # sometimes throws off: such a run is kept out of the medians
                    row(key, "", r, f"perftest printed {v} (TCG cycle clock)")
                    log(f"{name}: {v}: not counted")
                    continue
                row(key, v, r)
                log(f"{name}: {v:.2f} {key[5]} ({time.monotonic() - t0:.1f} s)")
    log(f"{link}: done in {time.monotonic() - t_start:.0f} s")
    return 3 if gone else 0


if __name__ == "__main__":
    sys.exit(main())
