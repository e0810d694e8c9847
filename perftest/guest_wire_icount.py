#!/usr/bin/env python3
"""The wire's per-packet cost in instructions: ib_send_bw across a two-guest link on the
instruction clock, the busy time both guests spend per data packet.

Runs in the first guest of an instruction-clock pair (perftest/run-bench's wire stage, or by
hand):
    tests/lab/run-guest --peer --icount [--self-device rxe --peer-device rxe] -- \\
        python3 perftest/guest_wire_icount.py [--repeat 3] [--quick] [--label NAME] \\
        [--append] --csv build/bench/wire-icount.csv
On the instruction clock (qemu -icount shift=0) a guest's busy time is its instruction count,
one instruction per ns (run-guest gives a pair sleep=on: idle time passes in real time, so the
link's timeouts behave, and is not counted as busy). Each run is ib_send_bw of 64 KiB
messages with -e (both tools sleep on completion events instead of polling, so the guests' busy
time is the device's work: hmr's work items, rxe's tasklets and work, the UDP/IP stack, the
ICRC, the provider and the tools per message) at -n N1 and N2 (200 and 2000; --quick: 100 and
600), server on the peer, client here, with /proc/stat's busy time (all but idle and iowait;
idle is accounted exactly on a tickless kernel) read around each tool on its own side. The
difference between the two runs over the difference in data packets the client's device sent
(its sent_pkts) is the marginal cost of a data packet: the requester's (this guest), the
responder's (the peer, which also sends the ACKs) and their sum. Set-up and teardown cancel
out, and so does the guests' own background (the lab's agents, timers): each side's busy
ticks per second with no traffic, measured first over 5 s, are taken off each run in
proportion to its length. /proc/stat counts USER_HZ ticks (10 ms: 10^7 instructions): over the ~115 000 packets
between N1 and N2, about 90 instructions per packet; runs spread by 10-25% (retransmissions,
RNR waits and event wake-ups differ from run to run), hence the median of --repeat runs.
ib_write_bw would not do: it has no -e, and its busy polling is time, not packets.

A run that does not end within 120 s (rxe's ib_send_bw -e hung once in 6 runs) fails alone.
CSV: link,metric,unit,value,run,note with metric requester | responder | total and unit
"instructions/packet"; a failed run writes a line with no value and why in the note.
"""
import argparse
import csv
import os
import re
import shlex
import sys

from guest_wire import (ADDR, Failed, PeerGone, add_run_args, as_installed, counters,
                        gid_index, log, server_client, sh)

TOOL, SIZE = "ib_send_bw", 65536
ITERS, QUICK_ITERS = (200, 2000), (100, 600)
# BUSY <ticks> <uptime s>: busy = user + nice + system + irq + softirq + steal (not idle, iowait)
SAMPLE = ("awk '/^cpu /{b = $2 + $3 + $4 + $7 + $8 + $9} END {getline u < \"/proc/uptime\"; "
          "split(u, t, \" \"); print \"BUSY\", b, t[1]}' /proc/stat")
METRICS = ("requester", "responder", "total")
BASELINE_SECS = 5


def sampled(argv):
    """ARGV run by sh with this side's busy ticks and uptime printed before and after it."""
    return ["sh", "-c", f"{SAMPLE}; {shlex.join(argv)}; rc=$?; {SAMPLE}; exit $rc"]


def busy(out):
    """(busy ticks, guest seconds) between the two BUSY lines of @out."""
    v = [(int(b), float(t)) for b, t in re.findall(r"^BUSY (\d+) ([\d.]+)$", out, re.M)]
    if len(v) != 2:
        raise Failed(f"no busy-time samples in the output ({len(v)} found)")
    return v[1][0] - v[0][0], v[1][1] - v[0][1]


def idle_rate(side):
    """Busy ticks per guest second of @side with no traffic (the lab's agents, timers): taken
    off each run's busy time in proportion to its length."""
    r = sh(side, ["sh", "-c", f"{SAMPLE}; sleep {BASELINE_SECS}; {SAMPLE}"], 60)
    ticks, secs = busy(r.stdout)
    return ticks / secs if secs > 0 else 0.0


def one(dev, gid, iters, port, rate):
    """(requester ticks, responder ticks, data packets) of one run at @iters, each side's
    busy ticks less its idle @rate over the run's length."""
    def argv(side):
        return [TOOL, "-d", dev[side], "-x", str(gid[side]), "-s", str(SIZE), "-n",
                str(iters), "-F", "-e", "-p", str(port)]
    before = counters(dev["self"]).get("sent_pkts", 0)
    cout, sout, _ = server_client(sampled(argv("peer")), sampled(argv("self") + [ADDR["peer"]]),
                                  port, 120)
    pkts = counters(dev["self"]).get("sent_pkts", 0) - before
    (bs, ts), (bp, tp) = busy(cout), busy(sout)
    return bs - rate["self"] * ts, bp - rate["peer"] * tp, pkts


def main():
    ap = argparse.ArgumentParser()
    add_run_args(ap)
    ap.add_argument("--label", help="the link column (default: the device kinds, e.g. hmr↔hmr)")
    a = ap.parse_args()
    dev = {"self": os.environ.get("HMR_SELF_DEVICE"), "peer": os.environ.get("HMR_PEER_DEVICE")}
    if not (os.environ.get("HMR_PEER") and dev["self"] and dev["peer"]):
        raise SystemExit("guest_wire_icount.py runs in the first guest of run-guest --peer")
    link = a.label or "↔".join(dev[s].rstrip("0123456789") for s in ("self", "peer"))
    hz = os.sysconf("SC_CLK_TCK")
    as_installed()
    gid = {s: gid_index(s) for s in dev}
    rate = {s: idle_rate(s) for s in dev}
    log(f"{link}: busy ticks per second with no traffic: here {rate['self']:.2f}, "
        f"peer {rate['peer']:.2f} (of {hz})")
    n1, n2 = QUICK_ITERS if a.quick else ITERS
    repeat = 1 if a.quick else a.repeat
    new = not (a.append and os.path.exists(a.csv) and os.path.getsize(a.csv))
    failed = 0
    with open(a.csv, "a" if a.append else "w", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["link", "metric", "unit", "value", "run", "note"])
        port = 18700
        for r in range(repeat):
            try:
                lo = one(dev, gid, n1, port + 2 * r, rate)
                hi = one(dev, gid, n2, port + 2 * r + 1, rate)
            except (Failed, PeerGone) as e:
                failed += 1
                log(f"{link} run {r}: {e}")
                for m in METRICS:
                    w.writerow([link, m, "instructions/packet", "", r, f"failed: {e}"])
                if isinstance(e, PeerGone):
                    break
                continue
            pkts = hi[2] - lo[2]
            if pkts <= 0:
                raise SystemExit(f"{link}: sent_pkts did not rise ({lo[2]} -> {hi[2]})")
            req, resp = ((h - l) * 1e9 / hz / pkts for h, l in zip(hi[:2], lo[:2]))
            for m, v in zip(METRICS, (req, resp, req + resp)):
                w.writerow([link, m, "instructions/packet", round(v), r, ""])
            f.flush()
            log(f"{link} run {r}: {pkts} packets between -n {n1} and -n {n2}: requester "
                f"{req:.0f}, responder {resp:.0f} instructions per packet")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
