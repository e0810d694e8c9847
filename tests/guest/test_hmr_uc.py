"""hmr0 UC QPs (unreliable connected) over the direct path: SEND and RDMA WRITE, with and without
immediate data, byte for byte; nothing comes back, so the sender's WR completes once the message
left, and a message the receiver cannot take (no receive posted, a bad R_Key) is simply lost
while the connection goes on; READ and atomics are refused locally; UC and RC QPs never talk;
ODP buffers after MADV_DONTNEED. UC to another host is not on the wire yet: LOC_QP_OP_ERR."""
import os
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_data import SIZE, connect, pattern, poll, post_recv, send_wr, sge  # noqa: E402
from test_hmr_util import MADV_DONTNEED, e, libc  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.qp import QP, QPCap, QPInitAttr  # noqa: E402

LW_RW = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE


class Side:
    def __init__(self, ctx, pd, qp_type=e.IBV_QPT_UC, access=LW_RW):
        self.scq = CQ(ctx, 256)
        self.rcq = CQ(ctx, 256)
        cap = QPCap(max_send_wr=64, max_recv_wr=64, max_send_sge=4, max_recv_sge=4,
                    max_inline_data=64)
        self.qp = QP(pd, QPInitAttr(qp_type=qp_type, scq=self.scq, rcq=self.rcq, cap=cap,
                                    sq_sig_all=1))
        self.mr = MR(pd, SIZE, access)


class UcPair:
    def __init__(self, b_type=e.IBV_QPT_UC, access=LW_RW):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.a = Side(self.ctx, self.pd, access=access)
        self.b = Side(self.ctx, self.pd, b_type, access=access)
        connect(self.ctx, self.a.qp, self.b.qp.qp_num, access=e.IBV_ACCESS_REMOTE_WRITE, uc=True)
        if b_type == e.IBV_QPT_UC:
            connect(self.ctx, self.b.qp, self.a.qp.qp_num, access=e.IBV_ACCESS_REMOTE_WRITE,
                    uc=True)

    def close(self):
        self.ctx.close()


@pytest.fixture
def uc():
    p = UcPair()
    yield p
    p.close()


def nothing_arrives(cq, secs=0.3):
    time.sleep(secs)
    return cq.poll(1) == (0, [])


@pytest.mark.parametrize("length", [0, 1, 1024, 1025, 65536 + 13, SIZE])
def test_send_byte_for_byte(uc, length):
    data = pattern(length, 5)
    uc.a.mr.write(data, length)
    post_recv(uc.b, 9)
    uc.a.qp.post_send(send_wr(1, e.IBV_WR_SEND, [sge(uc.a.mr, 0, length)]))
    (s,) = poll(uc.a.scq)
    (r,) = poll(uc.b.rcq)
    assert (s.status, s.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_SEND)
    assert (r.status, r.wr_id, r.byte_len, r.opcode) == (e.IBV_WC_SUCCESS, 9, length, e.IBV_WC_RECV)
    assert r.src_qp == uc.a.qp.qp_num or r.src_qp == 0
    assert uc.b.mr.read(length, 0) == data


def test_send_with_imm_and_write_with_imm(uc):
    uc.a.mr.write(b"imm-send", 8)
    post_recv(uc.b, 1)
    post_recv(uc.b, 2)
    uc.a.qp.post_send(send_wr(3, e.IBV_WR_SEND_WITH_IMM, [sge(uc.a.mr, 0, 8)], imm=0x01020304))
    wr = send_wr(4, e.IBV_WR_RDMA_WRITE_WITH_IMM, [sge(uc.a.mr, 0, 8)], imm=0x0a0b0c0d)
    wr.set_wr_rdma(uc.b.mr.rkey, uc.b.mr.buf + 4096)
    uc.a.qp.post_send(wr)
    s = poll(uc.a.scq, 2)
    r = poll(uc.b.rcq, 2)
    assert [w.status for w in s] == [e.IBV_WC_SUCCESS] * 2
    assert [(w.wr_id, w.imm_data, bool(w.wc_flags & e.IBV_WC_WITH_IMM)) for w in r] == \
        [(1, 0x01020304, True), (2, 0x0a0b0c0d, True)]
    assert r[1].opcode == e.IBV_WC_RECV_RDMA_WITH_IMM
    assert uc.b.mr.read(8, 0) == b"imm-send" and uc.b.mr.read(8, 4096) == b"imm-send"


@pytest.mark.parametrize("length", [1, 4097, SIZE])
def test_rdma_write(uc, length):
    data = pattern(length, 11)
    uc.a.mr.write(data, length)
    wr = send_wr(5, e.IBV_WR_RDMA_WRITE, [sge(uc.a.mr, 0, length)])
    wr.set_wr_rdma(uc.b.mr.rkey, uc.b.mr.buf)
    uc.a.qp.post_send(wr)
    (s,) = poll(uc.a.scq)
    assert (s.status, s.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_RDMA_WRITE)
    assert uc.b.mr.read(length, 0) == data


def test_no_receive_posted_loses_the_message_not_the_connection(uc):
    """No RNR on UC: the SEND completes at the sender, the message is gone, the next one lands."""
    uc.a.mr.write(b"lost", 4)
    uc.a.qp.post_send(send_wr(1, e.IBV_WR_SEND, [sge(uc.a.mr, 0, 4)]))
    (s,) = poll(uc.a.scq)
    assert s.status == e.IBV_WC_SUCCESS
    post_recv(uc.b, 8)
    assert nothing_arrives(uc.b.rcq)
    uc.a.mr.write(b"kept", 4)
    uc.a.qp.post_send(send_wr(2, e.IBV_WR_SEND, [sge(uc.a.mr, 0, 4)]))
    poll(uc.a.scq)
    (r,) = poll(uc.b.rcq)
    assert r.status == e.IBV_WC_SUCCESS and r.wr_id == 8 and uc.b.mr.read(4, 0) == b"kept"


def test_bad_rkey_write_is_lost_and_memory_untouched(uc):
    uc.b.mr.write(b"\x00" * 64, 64)
    uc.a.mr.write(b"\xee" * 64, 64)
    wr = send_wr(6, e.IBV_WR_RDMA_WRITE, [sge(uc.a.mr, 0, 64)])
    wr.set_wr_rdma(uc.b.mr.rkey ^ 0x100, uc.b.mr.buf)
    uc.a.qp.post_send(wr)
    (s,) = poll(uc.a.scq)
    assert s.status == e.IBV_WC_SUCCESS  # the sender cannot know
    assert uc.b.mr.read(64, 0) == b"\x00" * 64
    # the connection goes on: the receiver QP was not moved to ERROR
    wr = send_wr(7, e.IBV_WR_RDMA_WRITE, [sge(uc.a.mr, 0, 64)])
    wr.set_wr_rdma(uc.b.mr.rkey, uc.b.mr.buf)
    uc.a.qp.post_send(wr)
    poll(uc.a.scq)
    assert uc.b.mr.read(64, 0) == b"\xee" * 64
    attr, _ = uc.b.qp.query(e.IBV_QP_STATE)
    assert attr.qp_state == e.IBV_QPS_RTS


@pytest.mark.parametrize("opcode", ["IBV_WR_RDMA_READ", "IBV_WR_ATOMIC_FETCH_AND_ADD"])
def test_read_and_atomics_are_refused(uc, opcode):
    wr = send_wr(9, getattr(e, opcode), [sge(uc.a.mr, 0, 8)])
    if opcode == "IBV_WR_RDMA_READ":
        wr.set_wr_rdma(uc.b.mr.rkey, uc.b.mr.buf)
    else:
        wr.set_wr_atomic(uc.b.mr.rkey, uc.b.mr.buf, 1, 0)
    uc.a.qp.post_send(wr)
    (s,) = poll(uc.a.scq)
    assert s.status == e.IBV_WC_LOC_QP_OP_ERR and s.wr_id == 9


def test_uc_never_reaches_an_rc_qp():
    p = UcPair(b_type=e.IBV_QPT_RC)
    try:
        connect(p.ctx, p.b.qp, p.a.qp.qp_num)
        post_recv(p.b, 1)
        p.a.mr.write(b"uc", 2)
        p.a.qp.post_send(send_wr(1, e.IBV_WR_SEND, [sge(p.a.mr, 0, 2)]))
        (s,) = poll(p.a.scq)
        assert s.status == e.IBV_WC_SUCCESS
        assert nothing_arrives(p.b.rcq)
    finally:
        p.close()


def test_odp_buffers_after_madv_dontneed():
    p = UcPair(access=LW_RW | e.IBV_ACCESS_ON_DEMAND)
    try:
        data = pattern(8192, 3)
        p.a.mr.write(data, 8192)
        for mr in (p.a.mr, p.b.mr):
            assert libc.madvise(mr.buf, SIZE, MADV_DONTNEED) == 0
        p.a.mr.write(data, 8192)  # the source faults back in; the target stays empty
        post_recv(p.b, 4)
        p.a.qp.post_send(send_wr(1, e.IBV_WR_SEND, [sge(p.a.mr, 0, 8192)]))
        poll(p.a.scq)
        (r,) = poll(p.b.rcq)
        assert r.status == e.IBV_WC_SUCCESS and p.b.mr.read(8192, 0) == data
    finally:
        p.close()


def test_uc_odp_caps_are_advertised():
    with Context(name="hmr0") as ctx:
        caps = ctx.query_device_ex().odp_caps.uc_odp_caps
    want = (e.IBV_ODP_SUPPORT_SEND | e.IBV_ODP_SUPPORT_RECV | e.IBV_ODP_SUPPORT_WRITE |
            e.IBV_ODP_SUPPORT_SRQ_RECV)
    assert caps & want == want, hex(caps)
