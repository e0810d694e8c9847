"""The wire transport on a faulty link: netem on the link interface of both guests (loss 1%,
duplicate 1%, reorder 25% with a 1 ms delay, loss 10%) while wire_ops streams WRITE, READ and
SEND byte for byte, in both directions. Every operation must complete with IBV_WC_SUCCESS and
every byte must match; the recovery must show in the counters: with loss or reordering, the
requester's retransmissions (hmr: retry_pkts; an rxe requester against an hmr responder: the
responder's rcvd_seq_err + duplicate_request), with duplication the responder's
duplicate_request.

Each stream carries over a thousand request (WRITE, SEND) or response (READ) packets, so a 1%
fault hits some of them with certainty for practical purposes (0.99^1000 < 5e-5); under
duplication a READ stream is made of many small READs instead (768 requests).
"""
import os

import pytest

from peerlib import DEVICE, SIDES, other, run
from test_peer_wire_data import check, is_hmr, link_if, run_ops

pytestmark = pytest.mark.skipif(os.environ.get("HMR_PEER") != "1",
                                reason="runs in the first guest of a two-guest lab run")

FAULTS = {"loss-1pct": "loss 1%", "duplicate-1pct": "duplicate 1%",
          "reorder-25pct": "reorder 25% delay 1ms", "loss-10pct": "loss 10%"}
ITERS, DEPTH = 4, 4
STREAM = ["--sizes", "1,4096,65536", "--iters", str(ITERS), "--depth", str(DEPTH)]
# 12 iterations of 32 READs of 1 and 512 bytes: 768 requests
MANY_READS = ["--sizes", "1,512", "--iters", "12", "--depth", "32"]


@pytest.fixture(params=FAULTS)
def netem(request):
    """The fault on the link interface of both guests; always removed afterwards."""
    spec = FAULTS[request.param]
    added = []
    try:
        for side in SIDES:
            dev = link_if(side)
            r = run(side, ["tc", "qdisc", "add", "dev", dev, "root", "netem", *spec.split()])
            assert r.returncode == 0, f"tc on {side}: {r.stdout}{r.stderr}"
            added.append((side, dev))
        yield request.param
    finally:
        failed = []
        for side, dev in added:
            r = run(side, ["tc", "qdisc", "del", "dev", dev, "root"])
            if r.returncode:
                failed.append(f"{side}: {r.stderr}")
        assert not failed, f"removing netem failed: {failed}"


@pytest.mark.parametrize("server", SIDES, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("op", ["write", "read", "send"])
def test_stream_under_fault(netem, op, server):
    args = MANY_READS if op == "read" and netem.startswith("duplicate") else STREAM
    o = run_ops(op, server, args)
    n = int(args[3]) * int(args[5]) * len(args[1].split(","))
    check(o, n)
    requester, responder = other(server), server
    d = o.delta
    if netem.startswith("duplicate"):
        assert d[responder].get("duplicate_request", 0) > 0, \
            f"{DEVICE[responder]} on {responder} answered no duplicate request\n{o.describe()}"
    elif is_hmr(requester):
        assert d[requester].get("retry_pkts", 0) > 0, \
            f"{DEVICE[requester]} on {requester} retransmitted nothing\n{o.describe()}"
    elif is_hmr(responder):
        assert d[responder].get("rcvd_seq_err", 0) + d[responder].get("duplicate_request", 0) > 0, \
            f"{DEVICE[responder]} on {responder} saw no gap or duplicate\n{o.describe()}"
    else:  # rxe on both sides (a check of the lab itself)
        assert d[requester].get("completer_retry_err", 0) > 0, o.describe()
    print(f"{netem}: " + ", ".join(f"{DEVICE[s]} on {s} {k} {v}" for s in SIDES
                                   for k, v in d[s].items()
                                   if v and k in ("retry_pkts", "ack_timeouts", "rcvd_seq_err",
                                                  "duplicate_request", "completer_retry_err")))
