"""hmr0 extended CQs: ibv_create_cq_ex and the start_poll/next_poll/end_poll + read_* interface
over the same mmap'd ring as ibv_poll_cq."""
import errno
import os
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_data import Side, connect, pattern, post_recv, send_wr, sge  # noqa: E402
from test_hmr_util import e  # noqa: E402
from pyverbs.cq import CQEX, CqInitAttrEx  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPCap, QPInitAttr  # noqa: E402

STD = (e.IBV_WC_EX_WITH_BYTE_LEN | e.IBV_WC_EX_WITH_IMM | e.IBV_WC_EX_WITH_QP_NUM |
       e.IBV_WC_EX_WITH_SRC_QP | e.IBV_WC_EX_WITH_SLID | e.IBV_WC_EX_WITH_SL |
       e.IBV_WC_EX_WITH_DLID_PATH_BITS)


class ExCqPair:
    """a and b as in test_hmr_data, but every CQ is an extended CQ."""

    def __init__(self):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.a, self.b = Side(self.ctx, self.pd), Side(self.ctx, self.pd)
        for s in (self.a, self.b):
            s.qp.close()
            s.scq = s.rcq = CQEX(self.ctx, CqInitAttrEx(cqe=256, wc_flags=STD))
            cap = QPCap(max_send_wr=64, max_recv_wr=64, max_send_sge=4, max_recv_sge=4)
            s.qp = QP(self.pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=s.scq, rcq=s.rcq, cap=cap,
                                          sq_sig_all=1))
        connect(self.ctx, self.a.qp, self.b.qp.qp_num)
        connect(self.ctx, self.b.qp, self.a.qp.qp_num)

    def close(self):
        self.ctx.close()


@pytest.fixture
def p():
    x = ExCqPair()
    yield x
    x.close()


def read_one(cq):
    return {"wr_id": cq.wr_id, "status": cq.status, "opcode": cq.read_opcode(),
            "byte_len": cq.read_byte_len(), "qp_num": cq.read_qp_num(),
            "src_qp": cq.read_src_qp(), "wc_flags": cq.read_wc_flags(), "imm": cq.read_imm_data(),
            "slid": cq.read_slid(), "sl": cq.read_sl(), "dlid_path_bits": cq.read_dlid_path_bits()}


def poll_ex(cq, n, timeout=10):
    """Collect n completions through start_poll/next_poll/end_poll."""
    got, end = [], time.time() + timeout
    while len(got) < n and time.time() < end:
        if cq.start_poll(None) != 0:
            continue
        got.append(read_one(cq))
        while len(got) < n and cq.poll_next() == 0:
            got.append(read_one(cq))
        cq.end_poll()
    assert len(got) == n, f"got {len(got)} of {n}"
    return got


def test_empty_cq_start_poll_is_enoent(p):
    assert p.a.scq.start_poll(None) == errno.ENOENT


def test_send_with_imm_fields(p):
    n = 5000
    p.a.mr.write(pattern(n, 1), n)
    post_recv(p.b, 17)
    p.a.qp.post_send(send_wr(4, e.IBV_WR_SEND_WITH_IMM, [sge(p.a.mr, 0, n)], imm=0x01020304))
    (s,) = poll_ex(p.a.scq, 1)
    assert (s["wr_id"], s["status"], s["opcode"]) == (4, e.IBV_WC_SUCCESS, e.IBV_WC_SEND)
    assert s["qp_num"] == p.a.qp.qp_num
    (r,) = poll_ex(p.b.rcq, 1)
    assert (r["wr_id"], r["status"], r["opcode"]) == (17, e.IBV_WC_SUCCESS, e.IBV_WC_RECV)
    assert r["byte_len"] == n and r["qp_num"] == p.b.qp.qp_num and r["src_qp"] == p.a.qp.qp_num
    assert r["wc_flags"] & e.IBV_WC_WITH_IMM and r["imm"] == 0x01020304
    assert (r["slid"], r["sl"], r["dlid_path_bits"]) == (0, 0, 0)
    assert p.b.mr.read(n, 0) == pattern(n, 1)
    assert p.b.rcq.start_poll(None) == errno.ENOENT


def test_batch_in_order_and_consumed_once(p):
    p.a.mr.write(b"x" * 64, 64)
    for i in range(10):
        wr = send_wr(100 + i, e.IBV_WR_RDMA_WRITE, [sge(p.a.mr, 0, 64)])
        wr.set_wr_rdma(p.b.mr.rkey, p.b.mr.buf + 64 * i)
        p.a.qp.post_send(wr)
    time.sleep(0.2)
    first = poll_ex(p.a.scq, 3)   # end_poll after 3: the rest stay for the next batch
    rest = poll_ex(p.a.scq, 7)
    assert [c["wr_id"] for c in first + rest] == list(range(100, 110))
    assert all(c["status"] == e.IBV_WC_SUCCESS and c["opcode"] == e.IBV_WC_RDMA_WRITE
               for c in first + rest)
    assert p.a.scq.start_poll(None) == errno.ENOENT
    assert p.b.mr.read(640, 0) == b"x" * 640


def test_error_completion_status(p):
    wr = send_wr(9, e.IBV_WR_RDMA_WRITE, [sge(p.a.mr, 0, 8)])
    wr.set_wr_rdma(p.b.mr.rkey ^ 0x5a5a00, p.b.mr.buf)
    p.a.qp.post_send(wr)
    (c,) = poll_ex(p.a.scq, 1)
    assert c["wr_id"] == 9 and c["status"] == e.IBV_WC_REM_ACCESS_ERR


@pytest.mark.parametrize("kw", [
    {"wc_flags": e.IBV_WC_EX_WITH_COMPLETION_TIMESTAMP},
    {"wc_flags": e.IBV_WC_EX_WITH_FLOW_TAG},
    {"comp_mask": e.IBV_CQ_INIT_ATTR_MASK_FLAGS, "flags": e.IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN},
])
def test_unsupported_attributes_are_refused(kw):
    ctx = Context(name="hmr0")
    try:
        with pytest.raises(PyverbsRDMAError) as err:
            CQEX(ctx, CqInitAttrEx(cqe=16, **kw))
        assert err.value.error_code == errno.EOPNOTSUPP
    finally:
        ctx.close()


def test_single_threaded_flag_is_accepted():
    ctx = Context(name="hmr0")
    try:
        cq = CQEX(ctx, CqInitAttrEx(cqe=16, wc_flags=STD, comp_mask=e.IBV_CQ_INIT_ATTR_MASK_FLAGS,
                                    flags=e.IBV_CREATE_CQ_ATTR_SINGLE_THREADED))
        assert cq.start_poll(None) == errno.ENOENT
        cq.close()
    finally:
        ctx.close()
