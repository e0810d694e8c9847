"""Hostile packets from the network: hand-made RoCEv2 packets sent to hmr0 from a raw socket on
the peer guest (tests/peer/hostile_send.py). Each is dropped or NAKed and counted, memory the
packet names is left alone, nothing splats (run-guest checks both kernel logs), and the QP still
works afterwards: a well-formed WRITE from the same raw socket lands byte for byte (which also
proves the sender's ICRC is the receiver's). MADs to QP1 too: one longer than a MAD and one with a
wrong Q_Key are dropped and counted, a garbage one is received (the MAD layer discards it), and
QP1 stays in RTS.

The target is an RC QP of this guest in RTR whose destination is the peer's GID (QP 0x77): hmr0
accepts RC packets only from its QP's destination address.
"""
import os
import struct
import sys
import time

import pytest

if os.environ.get("HMR_PEER") != "1" or os.environ.get("HMR_SELF_DEVICE") != "hmr0":
    pytest.skip("needs the two-guest lab with hmr0 on this side", allow_module_level=True)

from peerlib import ADDRESS, gid_index, run  # noqa: E402
from pyverbs.addr import GID, AHAttr, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))
from test_hmr_util import e  # noqa: E402  (verbs enums of rdma-core 56 and 65 alike)

SENDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_send.py")
RQ_PSN = 100
MR_SIZE = 1 << 16
FILL = 0xab
WRITE_ONLY, WRITE_FIRST, WRITE_MIDDLE = 0x0a, 0x06, 0x07


class Target:
    def __init__(self):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.cq = CQ(self.ctx, 16)
        cap = QPCap(max_send_wr=4, max_recv_wr=4, max_send_sge=1, max_recv_sge=1)
        self.qp = QP(self.pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.cq, rcq=self.cq, cap=cap))
        acc = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
        self.mr = MR(self.pd, MR_SIZE, acc)
        self.mr.write(bytes([FILL]) * MR_SIZE, MR_SIZE)
        gidx = gid_index("self")
        a = QPAttr(qp_state=e.IBV_QPS_INIT)
        a.pkey_index, a.port_num, a.qp_access_flags = 0, 1, acc
        self.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT |
                       e.IBV_QP_ACCESS_FLAGS)
        a = QPAttr(qp_state=e.IBV_QPS_RTR)
        a.ah_attr = AHAttr(gr=GlobalRoute(dgid=GID(mapped_gid(ADDRESS["peer"])), sgid_index=gidx),
                           is_global=1, port_num=1)
        a.path_mtu, a.dest_qp_num, a.rq_psn = e.IBV_MTU_1024, 0x77, RQ_PSN
        a.max_dest_rd_atomic, a.min_rnr_timer = 1, 1
        self.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_AV | e.IBV_QP_PATH_MTU | e.IBV_QP_DEST_QPN |
                       e.IBV_QP_RQ_PSN | e.IBV_QP_MAX_DEST_RD_ATOMIC | e.IBV_QP_MIN_RNR_TIMER)

    def memory(self):
        return self.mr.read(MR_SIZE, 0)

    def close(self):
        self.ctx.close()


def mapped_gid(ipv4):
    """The RoCEv2 GID of an IPv4 address, as pyverbs prints GIDs."""
    a, b, c, d = (int(x) for x in ipv4.split("."))
    return f"0000:0000:0000:0000:0000:ffff:{a:02x}{b:02x}:{c:02x}{d:02x}"


def bth(opcode, qpn, psn, pad=0, ackreq=True):
    return struct.pack("!BBHII", opcode, pad << 4, 0xffff, qpn & 0xffffff,
                       (0x80000000 if ackreq else 0) | (psn & 0xffffff))


def reth(va, rkey, length):
    return struct.pack("!QII", va, rkey, length)


def write_only(t, psn, va, payload, length=None, rkey=None, qpn=None):
    body = bth(WRITE_ONLY, t.qp.qp_num if qpn is None else qpn, psn, pad=-len(payload) & 3)
    body += reth(va, t.mr.rkey if rkey is None else rkey, len(payload) if length is None else length)
    return body + payload + b"\0" * (-len(payload) & 3)


SEND_ONLY_UD, QP1_QKEY = 0x64, 0x80010000


def mad(qkey, payload):
    """A UD SEND to QP1 (BTH, DETH from QP 1): what the CM's MADs look like on the wire."""
    return (bth(SEND_ONLY_UD, 1, 0) + struct.pack("!II", qkey, 1) + payload).hex()


def counters():
    out = run("self", ["rdma", "statistic", "show", "link", "hmr0/1"]).stdout.split()
    return {out[i]: int(out[i + 1]) for i in range(len(out) - 1) if out[i + 1].isdigit()}


def send(*specs):
    r = run("peer", ["python3", SENDER, ADDRESS["peer"], ADDRESS["self"], *specs])
    assert r.returncode == 0, r.stdout + r.stderr


def settle(before, name, want=1, timeout=10):
    """Wait until counter @name rose by @want since @before; return the counters."""
    end = time.time() + timeout
    while True:
        now = counters()
        if now.get(name, 0) - before.get(name, 0) >= want or time.time() > end:
            return now
        time.sleep(0.2)


@pytest.fixture(scope="module")
def target():
    t = Target()
    yield t
    t.close()


HOSTILE = {
    # name: (packet specs, counter that must rise)
    "truncated UDP payload": (lambda t: ["raw:" + bth(WRITE_ONLY, t.qp.qp_num, RQ_PSN).hex()[:16]],
                              "rcvd_pkts_refused"),
    "no ICRC at all": (lambda t: ["noicrc:" + bth(0x11, t.qp.qp_num, RQ_PSN).hex()],
                       "rcvd_pkts_refused"),
    "bad ICRC": (lambda t: ["badicrc:" + write_only(t, RQ_PSN, t.mr.buf, b"\x11" * 16).hex()],
                 "rcvd_icrc_err"),
    "unknown opcode": (lambda t: [bytes.fromhex("1f00ffff") .hex() + "00000077" + "80000064"],
                       "rcvd_pkts_refused"),
    "pad longer than the packet": (lambda t: [bth(WRITE_MIDDLE, t.qp.qp_num, RQ_PSN, pad=3).hex()],
                                   "rcvd_pkts_refused"),
    "unknown QP": (lambda t: [write_only(t, RQ_PSN, t.mr.buf, b"\x22" * 16, qpn=0xabcde).hex()],
                   "rcvd_pkts_dropped"),
    "PSN ahead of the window": (lambda t: [write_only(t, RQ_PSN + 1000, t.mr.buf,
                                                      b"\x33" * 16).hex()], "rcvd_seq_err"),
    "RETH address wraps": (lambda t: [write_only(t, RQ_PSN, (1 << 64) - 8, b"\x44" * 16).hex()],
                           "sent_naks"),
    "RETH length beyond the MR": (lambda t: [write_only(t, RQ_PSN, t.mr.buf, b"\x55" * 16,
                                                        length=MR_SIZE + 16).hex()], "sent_naks"),
    "payload longer than RETH says": (lambda t: [write_only(t, RQ_PSN, t.mr.buf, b"\x66" * 32,
                                                            length=16).hex()], "sent_naks"),
    "wrong R_Key": (lambda t: [write_only(t, RQ_PSN, t.mr.buf, b"\x77" * 16,
                                          rkey=t.mr.rkey ^ 0x100).hex()], "sent_naks"),
    "WRITE middle without a first": (lambda t: [(bth(WRITE_MIDDLE, t.qp.qp_num, RQ_PSN)
                                                 + b"\x88" * 16).hex()], "sent_naks"),
    # QP1: a datagram longer than a MAD would fail its receive and put QP1 in ERROR
    "MAD longer than 256 bytes": (lambda t: [mad(QP1_QKEY, b"\x99" * 512)], "mad_dropped"),
    "MAD with a wrong Q_Key": (lambda t: [mad(0x12345678, b"\x99" * 256)], "mad_dropped"),
    "garbage MAD": (lambda t: [mad(QP1_QKEY, b"\xff" * 256)], "mad_rcvd"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_packet_is_dropped_or_naked_and_counted(target, case):
    make, counter = HOSTILE[case]
    before = counters()
    send(*make(target))
    after = settle(before, counter)
    assert after.get(counter, 0) > before.get(counter, 0), \
        f"{case}: {counter} did not rise ({before.get(counter)} -> {after.get(counter)})"
    assert target.memory() == bytes([FILL]) * MR_SIZE, f"{case}: memory changed"


def test_responses_nobody_waits_for_are_bounded(target):
    """1200 ACKs for a QP whose requester sends nothing: at most 1024 are kept, the rest are
    dropped and counted (a peer cannot make hmr queue memory without bound)."""
    ack = (bth(0x11, target.qp.qp_num, 5, ackreq=False) + struct.pack("!I", 0x1f000000)).hex()
    before = counters()
    for _ in range(6):  # in bursts the emulated link keeps whole
        send(*[ack] * 200)
    after = settle(before, "rcvd_pkts", want=1200, timeout=30)
    got = after["rcvd_pkts"] - before["rcvd_pkts"]
    assert got > 1100, f"only {got} of 1200 ACKs arrived"
    assert after["rcvd_pkts_dropped"] - before["rcvd_pkts_dropped"] >= got - 1024


def test_qp1_still_in_rts_after_the_hostile_mads():
    out = run("self", ["rdma", "resource", "show", "qp", "link", "hmr0/1"]).stdout
    assert any(" lqpn 1 " in line and "type GSI" in line and "state RTS" in line
               for line in out.splitlines()), out


def test_qp_still_works_after_the_hostile_packets(target):
    """Last: a well-formed WRITE at the expected PSN lands, byte for byte."""
    data = bytes(range(64))
    before = counters()
    send(write_only(target, RQ_PSN, target.mr.buf + 4096, data).hex())
    settle(before, "rcvd_pkts")
    end = time.time() + 10
    while target.memory()[4096:4096 + 64] != data and time.time() < end:
        time.sleep(0.1)
    mem = target.memory()
    assert mem[4096:4096 + 64] == data
    assert mem[:4096] == bytes([FILL]) * 4096 and mem[4096 + 64:] == bytes([FILL]) * (MR_SIZE - 4160)
