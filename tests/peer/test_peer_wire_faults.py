"""The wire transport on a faulty link: netem on the link interface of both guests (loss 1%,
duplicate 1%, reorder 25% with a 1 ms delay, loss 10%) while wire_ops streams WRITE, READ and
SEND byte for byte, in both directions (one in a symmetric pair: peerlib.directions). Every
operation must complete with IBV_WC_SUCCESS and every byte must match; the recovery must show
in the counters: with loss or reordering, the requester's retransmissions (hmr: retry_pkts; an
rxe requester against an hmr responder: the responder's rcvd_seq_err + duplicate_request), with
duplication the responder's duplicate_request.

Each stream carries over a thousand request (WRITE, SEND) or response (READ) packets, so a 1%
fault hits some of them with certainty for practical purposes (0.99^1000 < 5e-5); under
duplication a READ stream is made of many small READs instead (768 requests).

Last, the link dies in the middle of a WRITE (slowed to 4 Mbit/s, then loss 100% on the
requester's side): the requester gives up with RETRY_EXC_ERR, and the responder's process must
still be able to exit.
"""
import os
import subprocess
import time

import pytest

from peerlib import DEVICE, SIDES, Server, next_port, other, run, wait_listening
from test_peer_wire_data import (DIRECTIONS, SERVER_GRACE, check, counters, is_hmr, link_if,
                                 run_ops, stuck_stack, summary, wire_argv)

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


@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
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


@pytest.mark.parametrize("op", ["write", "send"])
def test_responder_exits_after_the_requester_gave_up_mid_message(op):
    """The link dies (netem: 4 Mbit/s so that the message lasts, then loss 100%, on this side)
    in the middle of a 32 MiB WRITE or SEND: the requester ends with IBV_WC_RETRY_EXC_ERR. Once
    the link is back, the server (the responder) learns it over TCP and exits: nothing of the
    half-received message may keep it from doing so (deregistering the target MR must not wait
    for packets that will never come). The SEND's server first moves its QP to ERROR: the
    receive the message was filling completes IBV_WC_WR_FLUSH_ERR (not lost)."""
    size = 32 << 20
    port = next_port()
    server = Server("peer", wire_argv("peer", "server", op, port,
                                      ["--sizes", str(size), "--iters", "1"]))
    dev = link_if("self")
    client = lossy = None
    stuck = ""
    try:
        r = run("self", ["tc", "qdisc", "add", "dev", dev, "root", "netem", "rate", "4mbit"])
        assert r.returncode == 0, r.stderr
        lossy = True
        wait_listening(server, port)
        client = subprocess.Popen(
            wire_argv("self", "client", op, port, ["--sizes", str(size), "--iters", "1"]) +
            ["peer"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace")
        start, end = counters("peer")["rcvd_pkts"], time.monotonic() + 600
        while counters("peer")["rcvd_pkts"] - start < 2000:  # of 32768 packets
            assert client.poll() is None and time.monotonic() < end, \
                f"the WRITE ended (exit {client.poll()}) before the link was cut"
            time.sleep(0.5)
        r = run("self", ["tc", "qdisc", "change", "dev", dev, "root", "netem", "loss", "100%"])
        assert r.returncode == 0, r.stderr
        cout, _ = client.communicate(timeout=300)
        r = run("self", ["tc", "qdisc", "del", "dev", dev, "root"])
        assert r.returncode == 0, r.stderr
        lossy = False
        src, sout = server.wait(SERVER_GRACE)
        if src is None:
            stuck = stuck_stack(server)
    finally:
        if lossy:
            run("self", ["tc", "qdisc", "del", "dev", dev, "root"])
        if client and client.poll() is None:
            client.kill()
            client.wait()
        server.kill()
    s = summary(cout)
    where = f"client exit {client.returncode}:\n{cout}\n--- server exit {src}:\n{sout}\n{stuck}"
    assert client.returncode == 1 and s and "IBV_WC_RETRY_EXC_ERR" in s["statuses"], where
    assert src is not None, where
    assert src == 1 and ("the peer aborted" in sout or "control connection" in sout), where
    if op == "send":
        srv = summary(sout)
        assert srv and srv["statuses"].get("IBV_WC_WR_FLUSH_ERR") == 1, where
