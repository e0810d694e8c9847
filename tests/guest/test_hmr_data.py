"""hmr0 data path over the loopback transport: every RC operation, data checked byte for byte,
error completions, RNR retries, unsignaled WRs."""
import ctypes
import os
import struct
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import MADV_DONTNEED, anon_map, e, libc, unmap  # noqa: E402
from pyverbs.addr import AHAttr, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR, SendWR  # noqa: E402

ALL = (e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ |
       e.IBV_ACCESS_REMOTE_ATOMIC)
SIZE = 1 << 20


class Side:
    def __init__(self, ctx, pd, sig_all=True):
        self.scq = CQ(ctx, 512)
        self.rcq = CQ(ctx, 512)
        cap = QPCap(max_send_wr=256, max_recv_wr=256, max_send_sge=4, max_recv_sge=4,
                    max_inline_data=128)
        self.qp = QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.scq, rcq=self.rcq, cap=cap,
                                    sq_sig_all=int(sig_all)))
        self.mr = MR(pd, SIZE, ALL)


def connect(ctx, qp, dest_qpn, rnr_retry=7, min_rnr_timer=1, access=ALL, dest_rd_atomic=4,
            rd_atomic=4, uc=False):
    """RESET to RTS against @dest_qpn on this device. @uc: a UC QP, which takes no timeouts,
    retries or RDMA read depths (nothing is acknowledged)."""
    a = QPAttr(qp_state=e.IBV_QPS_INIT)
    a.pkey_index, a.port_num, a.qp_access_flags = 0, 1, access
    qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT | e.IBV_QP_ACCESS_FLAGS)
    a = QPAttr(qp_state=e.IBV_QPS_RTR)
    a.ah_attr = AHAttr(gr=GlobalRoute(dgid=ctx.query_gid(1, 1), sgid_index=1), is_global=1,
                       port_num=1)
    a.path_mtu, a.dest_qp_num, a.rq_psn = e.IBV_MTU_1024, dest_qpn, 0
    a.max_dest_rd_atomic, a.min_rnr_timer = dest_rd_atomic, min_rnr_timer
    mask = e.IBV_QP_STATE | e.IBV_QP_AV | e.IBV_QP_PATH_MTU | e.IBV_QP_DEST_QPN | e.IBV_QP_RQ_PSN
    qp.modify(a, mask if uc else mask | e.IBV_QP_MAX_DEST_RD_ATOMIC | e.IBV_QP_MIN_RNR_TIMER)
    if uc:
        a = QPAttr(qp_state=e.IBV_QPS_RTS)
        a.sq_psn = 0
        qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_SQ_PSN)
        return
    a = QPAttr(qp_state=e.IBV_QPS_RTS)
    a.timeout, a.retry_cnt, a.rnr_retry, a.sq_psn = 14, 7, rnr_retry, 0
    a.max_rd_atomic = rd_atomic
    qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_TIMEOUT | e.IBV_QP_RETRY_CNT | e.IBV_QP_RNR_RETRY |
              e.IBV_QP_SQ_PSN | e.IBV_QP_MAX_QP_RD_ATOMIC)


class Pair:
    def __init__(self, **kw):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.a = Side(self.ctx, self.pd, kw.pop("sig_all", True))
        self.b = Side(self.ctx, self.pd)
        self.b_access = kw.pop("b_access", ALL)
        connect(self.ctx, self.a.qp, self.b.qp.qp_num, **kw)
        connect(self.ctx, self.b.qp, self.a.qp.qp_num, access=self.b_access)

    def close(self):
        self.ctx.close()


@pytest.fixture
def pair():
    p = Pair()
    yield p
    p.close()


def poll(cq, n=1, timeout=10):
    wcs = []
    end = time.time() + timeout
    while len(wcs) < n and time.time() < end:
        got, more = cq.poll(n - len(wcs))
        wcs += more
    assert len(wcs) == n, f"got {len(wcs)} of {n} completions"
    return wcs


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xff for i in range(n))


def sge(mr, off, length):
    return SGE(mr.buf + off, length, mr.lkey)


def post_recv(side, wr_id, off=0, length=SIZE):
    side.qp.post_recv(RecvWR(wr_id=wr_id, num_sge=1, sg=[sge(side.mr, off, length)]))


def send_wr(wr_id, opcode, sgl, flags=e.IBV_SEND_SIGNALED, imm=0):
    return SendWR(wr_id=wr_id, opcode=opcode, num_sge=len(sgl), sg=sgl, send_flags=flags,
                  imm_data=imm)


@pytest.mark.parametrize("length", [0, 1, 63, 4096, 4097, 65536 + 13, SIZE])
def test_send_recv(pair, length):
    data = pattern(length, length & 0xff)
    pair.a.mr.write(data, length)
    post_recv(pair.b, 7)
    pair.a.qp.post_send(send_wr(3, e.IBV_WR_SEND, [sge(pair.a.mr, 0, length)]))
    (swc,) = poll(pair.a.scq)
    (rwc,) = poll(pair.b.rcq)
    assert swc.status == e.IBV_WC_SUCCESS and swc.wr_id == 3 and swc.opcode == e.IBV_WC_SEND
    assert rwc.status == e.IBV_WC_SUCCESS and rwc.wr_id == 7 and rwc.opcode == e.IBV_WC_RECV
    assert rwc.byte_len == length and rwc.qp_num == pair.b.qp.qp_num
    assert rwc.src_qp == pair.a.qp.qp_num
    if length:
        assert pair.b.mr.read(length, 0) == data


def test_send_with_imm_and_multiple_sges(pair):
    pieces = [pattern(100, 1), pattern(3000, 2), pattern(5000, 3)]
    offs = [0, 8192, 100000]
    for off, p in zip(offs, pieces):
        pair.a.mr.write(p, len(p), off)
    # scatter into two receive SGEs
    pair.b.qp.post_recv(RecvWR(wr_id=9, num_sge=2, sg=[sge(pair.b.mr, 0, 4000),
                                                         sge(pair.b.mr, 500000, 10000)]))
    sgl = [sge(pair.a.mr, off, len(p)) for off, p in zip(offs, pieces)]
    pair.a.qp.post_send(send_wr(1, e.IBV_WR_SEND_WITH_IMM, sgl, imm=0x12345678))
    poll(pair.a.scq)
    (rwc,) = poll(pair.b.rcq)
    assert rwc.status == e.IBV_WC_SUCCESS and rwc.wc_flags & e.IBV_WC_WITH_IMM
    assert rwc.imm_data == 0x12345678 and rwc.byte_len == 8100
    got = pair.b.mr.read(4000, 0) + pair.b.mr.read(4100, 500000)
    assert got == b"".join(pieces)


def test_inline_send(pair):
    data = pattern(100, 9)
    pair.a.mr.write(data, 100)
    post_recv(pair.b, 1)
    pair.a.qp.post_send(send_wr(2, e.IBV_WR_SEND, [sge(pair.a.mr, 0, 100)],
                                e.IBV_SEND_SIGNALED | e.IBV_SEND_INLINE))
    pair.a.mr.write(b"\0" * 100, 100)  # inline: the data was taken at post time
    poll(pair.a.scq)
    (rwc,) = poll(pair.b.rcq)
    assert rwc.byte_len == 100 and pair.b.mr.read(100, 0) == data


@pytest.mark.parametrize("length", [1, 4096, 300000])
def test_rdma_write(pair, length):
    data = pattern(length, 5)
    pair.a.mr.write(data, length)
    wr = send_wr(4, e.IBV_WR_RDMA_WRITE, [sge(pair.a.mr, 0, length)])
    wr.set_wr_rdma(pair.b.mr.rkey, pair.b.mr.buf + 1000)
    pair.a.qp.post_send(wr)
    (wc,) = poll(pair.a.scq)
    assert wc.status == e.IBV_WC_SUCCESS and wc.opcode == e.IBV_WC_RDMA_WRITE
    assert pair.b.mr.read(length, 1000) == data
    assert pair.b.rcq.poll(1) == (0, [])  # no receive consumed


def test_rdma_write_with_imm(pair):
    data = pattern(5000, 6)
    pair.a.mr.write(data, 5000)
    post_recv(pair.b, 11)
    wr = send_wr(4, e.IBV_WR_RDMA_WRITE_WITH_IMM, [sge(pair.a.mr, 0, 5000)], imm=0xabcdef01)
    wr.set_wr_rdma(pair.b.mr.rkey, pair.b.mr.buf)
    pair.a.qp.post_send(wr)
    poll(pair.a.scq)
    (rwc,) = poll(pair.b.rcq)
    assert rwc.opcode == e.IBV_WC_RECV_RDMA_WITH_IMM and rwc.imm_data == 0xabcdef01
    assert rwc.wr_id == 11 and rwc.byte_len == 5000
    assert pair.b.mr.read(5000, 0) == data


@pytest.mark.parametrize("length", [8, 4096, 200001])
def test_rdma_read(pair, length):
    data = pattern(length, 7)
    pair.b.mr.write(data, length, 4096)
    wr = send_wr(5, e.IBV_WR_RDMA_READ, [sge(pair.a.mr, 10, length)])
    wr.set_wr_rdma(pair.b.mr.rkey, pair.b.mr.buf + 4096)
    pair.a.qp.post_send(wr)
    (wc,) = poll(pair.a.scq)
    assert wc.status == e.IBV_WC_SUCCESS and wc.opcode == e.IBV_WC_RDMA_READ
    assert wc.byte_len == length
    assert pair.a.mr.read(length, 10) == data


def test_atomics(pair):
    pair.b.mr.write(struct.pack("<Q", 100), 8, 64)
    wr = send_wr(6, e.IBV_WR_ATOMIC_FETCH_AND_ADD, [sge(pair.a.mr, 0, 8)])
    wr.set_wr_atomic(pair.b.mr.rkey, pair.b.mr.buf + 64, 23, 0)
    pair.a.qp.post_send(wr)
    (wc,) = poll(pair.a.scq)
    assert wc.status == e.IBV_WC_SUCCESS and wc.opcode == e.IBV_WC_FETCH_ADD
    assert struct.unpack("<Q", pair.a.mr.read(8, 0))[0] == 100
    assert struct.unpack("<Q", pair.b.mr.read(8, 64))[0] == 123
    for compare, expect_new in ((5, 123), (123, 999)):
        wr = send_wr(7, e.IBV_WR_ATOMIC_CMP_AND_SWP, [sge(pair.a.mr, 8, 8)])
        wr.set_wr_atomic(pair.b.mr.rkey, pair.b.mr.buf + 64, compare, 999)
        pair.a.qp.post_send(wr)
        (wc,) = poll(pair.a.scq)
        assert wc.status == e.IBV_WC_SUCCESS and wc.opcode == e.IBV_WC_COMP_SWAP
        assert struct.unpack("<Q", pair.a.mr.read(8, 8))[0] == 123
        assert struct.unpack("<Q", pair.b.mr.read(8, 64))[0] == expect_new


def test_unsignaled_wrs_complete_silently():
    p = Pair(sig_all=False)
    try:
        for i in range(10):
            wr = send_wr(i, e.IBV_WR_RDMA_WRITE, [sge(p.a.mr, 0, 64)],
                         e.IBV_SEND_SIGNALED if i == 9 else 0)
            wr.set_wr_rdma(p.b.mr.rkey, p.b.mr.buf)
            p.a.qp.post_send(wr)
        (wc,) = poll(p.a.scq)
        assert wc.wr_id == 9
        assert p.a.scq.poll(1) == (0, [])
    finally:
        p.close()


def expect_error(p, wr, status, flushed=0):
    p.a.qp.post_send(wr)
    wcs = poll(p.a.scq, 1 + flushed)
    assert wcs[0].status == status, wcs[0].status
    for wc in wcs[1:]:
        assert wc.status == e.IBV_WC_WR_FLUSH_ERR
    assert p.a.qp.query(e.IBV_QP_STATE)[0].qp_state == e.IBV_QPS_ERR


def test_bad_rkey_is_remote_access_error(pair):
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [sge(pair.a.mr, 0, 64)])
    wr.set_wr_rdma(pair.b.mr.rkey ^ 0x100, pair.b.mr.buf)
    expect_error(pair, wr, e.IBV_WC_REM_ACCESS_ERR)


def test_out_of_bounds_rdma_is_remote_access_error(pair):
    wr = send_wr(1, e.IBV_WR_RDMA_READ, [sge(pair.a.mr, 0, 4096)])
    wr.set_wr_rdma(pair.b.mr.rkey, pair.b.mr.buf + SIZE - 100)
    expect_error(pair, wr, e.IBV_WC_REM_ACCESS_ERR)


def test_qp_without_remote_write_access_refuses_writes():
    p = Pair(b_access=e.IBV_ACCESS_REMOTE_READ)
    try:
        wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [sge(p.a.mr, 0, 64)])
        wr.set_wr_rdma(p.b.mr.rkey, p.b.mr.buf)
        expect_error(p, wr, e.IBV_WC_REM_ACCESS_ERR)
    finally:
        p.close()


def test_bad_lkey_is_local_protection_error(pair):
    wr = send_wr(1, e.IBV_WR_SEND, [SGE(pair.a.mr.buf, 64, pair.a.mr.lkey + 1)])
    expect_error(pair, wr, e.IBV_WC_LOC_PROT_ERR)


def test_misaligned_atomic_is_invalid_request(pair):
    wr = send_wr(1, e.IBV_WR_ATOMIC_FETCH_AND_ADD, [sge(pair.a.mr, 0, 8)])
    wr.set_wr_atomic(pair.b.mr.rkey, pair.b.mr.buf + 4, 1, 0)
    expect_error(pair, wr, e.IBV_WC_REM_INV_REQ_ERR)


def test_send_longer_than_receive_buffer(pair):
    post_recv(pair.b, 1, 0, 100)
    wr = send_wr(1, e.IBV_WR_SEND, [sge(pair.a.mr, 0, 200)])
    expect_error(pair, wr, e.IBV_WC_REM_INV_REQ_ERR)
    (rwc,) = poll(pair.b.rcq)
    assert rwc.status == e.IBV_WC_LOC_LEN_ERR


def test_error_flushes_the_rest_of_the_send_queue(pair):
    wrs = []
    for i in range(3):
        wr = send_wr(i, e.IBV_WR_RDMA_WRITE, [sge(pair.a.mr, 0, 64)])
        wr.set_wr_rdma(pair.b.mr.rkey ^ (0x100 if i == 0 else 0), pair.b.mr.buf)
        wrs.append(wr)
    for wr in wrs:
        pair.a.qp.post_send(wr)
    wcs = poll(pair.a.scq, 3)
    assert wcs[0].status == e.IBV_WC_REM_ACCESS_ERR
    assert [wc.status for wc in wcs[1:]] == [e.IBV_WC_WR_FLUSH_ERR] * 2
    assert [wc.wr_id for wc in wcs] == [0, 1, 2]


def test_rnr_retry_waits_for_a_receive(pair):
    data = pattern(1000, 3)
    pair.a.mr.write(data, 1000)
    pair.a.qp.post_send(send_wr(1, e.IBV_WR_SEND, [sge(pair.a.mr, 0, 1000)]))
    time.sleep(0.2)
    assert pair.a.scq.poll(1) == (0, [])  # waiting, not dropped
    post_recv(pair.b, 2)
    (swc,) = poll(pair.a.scq)
    (rwc,) = poll(pair.b.rcq)
    assert swc.status == e.IBV_WC_SUCCESS and rwc.byte_len == 1000
    assert pair.b.mr.read(1000, 0) == data


def test_rnr_retries_run_out():
    p = Pair(rnr_retry=2, min_rnr_timer=1)
    try:
        wr = send_wr(1, e.IBV_WR_SEND, [sge(p.a.mr, 0, 10)])
        expect_error(p, wr, e.IBV_WC_RNR_RETRY_EXC_ERR)
    finally:
        p.close()


@pytest.fixture
def half_pair():
    """a connected to b, b still in RESET."""
    ctx = Context(name="hmr0")
    pd = PD(ctx)
    a, b = Side(ctx, pd), Side(ctx, pd)
    connect(ctx, a.qp, b.qp.qp_num)
    yield ctx, a, b
    ctx.close()


def test_peer_not_ready_is_retry_exceeded(half_pair):
    ctx, a, b = half_pair
    a.qp.post_send(send_wr(1, e.IBV_WR_SEND, [sge(a.mr, 0, 10)]))
    (wc,) = poll(a.scq)
    assert wc.status == e.IBV_WC_RETRY_EXC_ERR


def test_peer_becoming_ready_while_retrying(half_pair):
    """The requester retries per timeout/retry_cnt: a peer that reaches RTR meanwhile gets it."""
    ctx, a, b = half_pair
    a.mr.write(pattern(64, 4), 64)
    a.qp.post_send(send_wr(1, e.IBV_WR_SEND, [sge(a.mr, 0, 64)]))
    time.sleep(0.05)
    connect(ctx, b.qp, a.qp.qp_num)
    post_recv(b, 2)     # (a RESET QP refuses receives; a retry before this one gets RNR)
    (wc,) = poll(a.scq)
    assert wc.status == e.IBV_WC_SUCCESS
    (rwc,) = poll(b.rcq)
    assert rwc.byte_len == 64 and b.mr.read(64, 0) == pattern(64, 4)


def test_many_sends_in_a_row(pair):
    n = 200
    for i in range(n):
        post_recv(pair.b, i, (i % 64) * 64, 64)
    for i in range(n):
        pair.a.mr.write(struct.pack("<Q", i), 8, i * 8)
        pair.a.qp.post_send(send_wr(i, e.IBV_WR_SEND, [sge(pair.a.mr, i * 8, 8)]))
    swcs = poll(pair.a.scq, n)
    rwcs = poll(pair.b.rcq, n)
    assert [wc.wr_id for wc in swcs] == list(range(n))
    assert all(wc.status == e.IBV_WC_SUCCESS for wc in swcs + rwcs)
    assert [wc.wr_id for wc in rwcs] == list(range(n))


def test_memory_touched_only_when_used_and_unmap_is_seen(pair):
    """Writes land in memory registered before it was touched; an MR whose memory is
    unmapped gives a local protection error, never stale pages."""
    n = 1 << 20
    addr = anon_map(n)
    mr = MR(pair.pd, n, ALL, address=addr)
    data = pattern(4096, 8)
    pair.a.mr.write(data, 4096)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [sge(pair.a.mr, 0, 4096)])
    wr.set_wr_rdma(mr.rkey, addr + 8192)
    pair.a.qp.post_send(wr)
    (wc,) = poll(pair.a.scq)
    assert wc.status == e.IBV_WC_SUCCESS
    assert ctypes.string_at(addr + 8192, 4096) == data
    unmap(addr, n)
    wr = send_wr(2, e.IBV_WR_RDMA_WRITE, [sge(pair.a.mr, 0, 4096)])
    wr.set_wr_rdma(mr.rkey, addr + 8192)
    pair.a.qp.post_send(wr)
    (wc,) = poll(pair.a.scq)
    assert wc.status == e.IBV_WC_REM_ACCESS_ERR
    mr.close()


def test_mirror_follows_the_cpu_page_table(pair):
    """No pinning: after MADV_DONTNEED or a new mapping at the same address, RDMA sees the
    process's current pages (the notifier invalidated the mirror), not the old ones."""
    n = 64 * 4096
    addr = anon_map(n)
    ctypes.memset(addr, 0x11, n)
    mr = MR(pair.pd, n, ALL, address=addr)

    def read_remote(off, length):
        wr = send_wr(1, e.IBV_WR_RDMA_READ, [sge(pair.a.mr, 0, length)])
        wr.set_wr_rdma(mr.rkey, addr + off)
        pair.a.qp.post_send(wr)
        (wc,) = poll(pair.a.scq)
        assert wc.status == e.IBV_WC_SUCCESS
        return pair.a.mr.read(length, 0)

    assert read_remote(0, n) == b"\x11" * n  # faulted into the mirror
    libc.madvise(addr + 8192, 8192, MADV_DONTNEED)  # the pages go, zero pages come
    assert read_remote(8192, 8192) == b"\0" * 8192
    assert read_remote(0, 4096) == b"\x11" * 4096
    anon_map(n, addr=addr)  # a new mapping in place of the registered one
    ctypes.memset(addr, 0x22, n)
    assert read_remote(4096, 3 * 4096) == b"\x22" * (3 * 4096)
    mr.close()
    unmap(addr, n)


HOSTILE_CQ = r"""
import mmap, struct, sys
sys.path.insert(0, sys.argv[1])
from test_hmr_data import *
ctx = Context(name="hmr0")
pd = PD(ctx)
cq = CQ(ctx, 4)  # the context's first mmap entry: offset 0
ring = mmap.mmap(ctx.cmd_fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                 offset=0)
struct.pack_into("<I", ring, 64, 0x80000000)  # hmr_ring_hdr.cons, far past prod
cap = QPCap(max_send_wr=4, max_recv_wr=4, max_send_sge=1, max_recv_sge=1)
qps = [QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, cap=cap, sq_sig_all=1))
       for _ in range(2)]
connect(ctx, qps[0], qps[1].qp_num)
connect(ctx, qps[1], qps[0].qp_num)
mr = MR(pd, 4096, ALL)
wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [sge(mr, 0, 8)])
wr.set_wr_rdma(mr.rkey, mr.buf + 64)
qps[0].post_send(wr)
ev = ctx.get_async_event()  # pyverbs holds the GIL here: hence a separate process
print("cq_err", ev.event_type == e.IBV_EVENT_CQ_ERR, "polled", cq.poll(1)[0], flush=True)
ev.ack()
"""


def test_hostile_cq_consumer_index_is_not_believed():
    """A consumer index userspace pushed past the producer makes the CQ overflow (CQ_ERR
    event), not the kernel write outside the ring."""
    r = subprocess.run([sys.executable, "-c", HOSTILE_CQ, os.path.dirname(__file__)],
                       capture_output=True, text=True, timeout=60)
    assert "cq_err True polled 0" in r.stdout, r.stdout + r.stderr


def test_a_1_gib_write_neither_stalls_post_send_nor_blocks_invalidations(pair):
    """A 1 GiB RDMA WRITE runs in hmr's work queue, a chunk at a time: ibv_post_send returns
    before it completes, and MADV_DONTNEED on the destination keeps completing while it runs
    (each waits for one chunk at most, not for the transfer)."""
    gib, page = 1 << 30, 4096
    src, dst = anon_map(gib), anon_map(gib)
    try:
        ctypes.memmove(src, pattern(page, 1), page)               # first and last source pages
        ctypes.memmove(src + gib - page, pattern(page, 2), page)  # (the rest reads as zeros)
        odp = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_ON_DEMAND
        smr = MR(pair.pd, gib, odp, address=src)
        dmr = MR(pair.pd, gib, odp | e.IBV_ACCESS_REMOTE_WRITE, address=dst)
        wr = send_wr(77, e.IBV_WR_RDMA_WRITE, [SGE(src, gib, smr.lkey)])
        wr.set_wr_rdma(dmr.rkey, dst)
        pair.a.qp.post_send(wr)
        assert pair.a.scq.poll(1) == (0, []), "post_send returned only after the whole WRITE"
        drops, wcs = 0, []
        end = time.time() + 600
        while not wcs and time.time() < end:
            # only the first half: the second half keeps what the WRITE puts there
            assert libc.madvise(ctypes.c_void_p(dst), gib // 2, MADV_DONTNEED) == 0
            drops += 1
            wcs = pair.a.scq.poll(1)[1]
            # Paced: back-to-back invalidations of the range the engine is faulting can starve
            # its faults until they time out (documented limit); 10 ms apart they cannot.
            time.sleep(0.01)
        assert wcs and wcs[0].wr_id == 77 and wcs[0].status == e.IBV_WC_SUCCESS, wcs
        assert drops >= 3, f"only {drops} MADV_DONTNEED completed while the WRITE ran"
        assert ctypes.string_at(dst + gib - page, page) == pattern(page, 2)
        assert ctypes.string_at(dst + gib // 2, page) == bytes(page)
        dmr.close()
        smr.close()
    finally:
        unmap(src, gib)
        unmap(dst, gib)
