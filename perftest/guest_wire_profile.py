#!/usr/bin/env python3
"""Where a wire packet's instructions go, function by function: 64 KiB ib_send_bw -e across a
two-guest link under the lab's instruction profiler, this guest as requester, then as responder.

Runs in the first guest of a profiled instruction-clock pair:
    tests/lab/run-guest --peer --icount --profile [--self-device rxe --peer-device rxe] -- \\
        python3 perftest/guest_wire_profile.py [-n N1 N2] [--csv FILE [--append]]
then on the host, function by function, for each PHASES line it printed:
    tests/lab/insnprof.py --per PACKETS build/lab/last-peer-6.12 PHASES
Each side runs ib_send_bw three times, at N1 (a warm-up: the first run loads modules and
faults the tools in), N1 and N2 messages (default 100 and 600), each a profiler phase of this
guest while the tool runs (every CPU's work: the device's, the UDP/IP stack's, virtio-net's,
interrupts). The difference between the N2 and N1 phases over the difference in data packets
(this guest's sent_pkts as requester, rcvd_pkts as responder) is the marginal cost of a packet,
as perftest/guest_wire_icount.py measures it from /proc/stat, here by function.

--csv: instructions per packet by part (perftest/run-bench's wire-icount stage; goals.py tells
what they mean for the per-packet goal): link,side,part,unit,value with side requester |
responder and part device (the device's modules: hmr, or rdma_rxe with the RDMA core it calls
per packet) | crc (the crypto API's CRC32, the ICRC) | kernel (everything else: the UDP/IP
stack, virtio-net, interrupts, the scheduler, the tool) | total.
"""
import argparse
import csv
import os
import shlex
import subprocess
import sys
import time

from guest_wire import ADDR, as_installed, counters, gid_index, server_client, sh

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lab"))
import insnprof  # noqa: E402  (the lab's profile reader)

IO = "/hmr-io"
PROF = f"{IO}/hmr-prof"
DEVICE_MODULES = {"hmr", "rdma_rxe", "ib_core", "ib_uverbs"}


def profiled(argv):
    """ARGV run by sh as one profiler phase."""
    return ["sh", "-c", f"{PROF} on; {shlex.join(argv)}; rc=$?; {PROF} off; {PROF} phase; "
            "exit $rc"]


def listening(port):
    return subprocess.run(["sh", "-c", f'ss -Hltn "sport = :{port}" | grep -q .']).returncode == 0


def responder(argv_self, argv_peer, port):
    """ARGV_SELF (the server) here, profiled, and ARGV_PEER (the client) on the peer."""
    server = subprocess.Popen(profiled(argv_self), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    for _ in range(600):
        if listening(port) or server.poll() is not None:
            break
        time.sleep(0.1)
    client = sh("peer", argv_peer, 300)
    out, _ = server.communicate(timeout=300)
    if client.returncode or server.returncode:
        raise SystemExit(f"ib_send_bw failed: client {client.returncode} "
                         f"{client.stdout[-300:]}{client.stderr[-300:]}; server "
                         f"{server.returncode} {out[-300:]}")


def parts(counts):
    """Counter(module -> instructions) -> {part: instructions} (see --csv)."""
    out = {"device": 0, "crc": 0, "kernel": 0}
    for module, n in counts.items():
        part = ("device" if module in DEVICE_MODULES else
                "crc" if module.startswith("crc32") else "kernel")
        out[part] += n
    out["total"] = sum(out.values())
    return out


def write_csv(a, link, runs, base):
    """Per-packet instructions by part of each side, from this run's profile (its phases from
    @base on)."""
    phases = insnprof.load(IO)
    new = not (a.append and os.path.exists(a.csv) and os.path.getsize(a.csv))
    with open(a.csv, "a" if a.append else "w", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["link", "side", "part", "unit", "value"])
        for k, side in ((1, "requester"), (4, "responder")):
            pkts = runs[k + 1][2] - runs[k][2]
            if pkts <= 0:
                raise SystemExit(f"{side}: the packet count did not rise")
            counts = insnprof.by_module(insnprof.combine(phases, [(1, base + k + 1),
                                                                  (-1, base + k)]))
            for part, n in parts(counts).items():
                w.writerow([link, side, part, "instructions/packet", round(n / pkts)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", nargs=2, type=int, default=(100, 600), metavar=("N1", "N2"))
    ap.add_argument("--csv")
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--label", help="the link column (default: the device kinds, e.g. hmr↔hmr)")
    a = ap.parse_args()
    dev = {"self": os.environ.get("HMR_SELF_DEVICE"), "peer": os.environ.get("HMR_PEER_DEVICE")}
    if not (os.environ.get("HMR_PEER") and dev["self"] and os.path.exists(PROF)):
        raise SystemExit("guest_wire_profile.py runs in the first guest of "
                         "run-guest --peer --icount --profile")
    as_installed()
    gid = {s: gid_index(s) for s in dev}

    def argv(side, n, port):
        return ["ib_send_bw", "-d", dev[side], "-x", str(gid[side]), "-s", "65536", "-n",
                str(n), "-F", "-e", "-p", str(port)]

    runs, port, base = [], 18800, insnprof.phases_ended(IO)
    for role, counter in (("requester", "sent_pkts"), ("responder", "rcvd_pkts")):
        for n in (a.n[0], a.n[0], a.n[1]):
            port += 1
            before = counters(dev["self"]).get(counter, 0)
            if role == "requester":
                server_client(argv("peer", n, port),
                              profiled(argv("self", n, port) + [ADDR["peer"]]), port, 300)
            else:
                responder(argv("self", n, port), argv("peer", n, port) + [ADDR["self"]], port)
            runs.append((role, n, counters(dev["self"]).get(counter, 0) - before))
    link = a.label or "↔".join(dev[s].rstrip("0123456789") for s in ("self", "peer"))
    for i, (role, n, pkts) in enumerate(runs):
        print(f"phase {base + i}: {link} {role} -n {n}: {pkts} packets")
    for k, role in ((1, "requester"), (4, "responder")):
        print(f"PHASES {role} {base + k + 1}-{base + k} --per {runs[k + 1][2] - runs[k][2]}")
    if a.csv:
        write_csv(a, link, runs, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
