"""hmr0 extended QPs: ibv_create_qp_ex and the ibv_wr_* builder (perftest's default path).
Every opcode through wr_*, batches, wr_abort, inline data, and the errors wr_complete returns."""
import errno
import os
import struct

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_data import ALL, Side, connect, pattern, poll, post_recv, sge  # noqa: E402
from test_hmr_util import KERNEL_HAS_FLUSH, e  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QPCap, QPEx, QPInitAttrEx  # noqa: E402

RC_OPS = (e.IBV_QP_EX_WITH_SEND | e.IBV_QP_EX_WITH_SEND_WITH_IMM | e.IBV_QP_EX_WITH_RDMA_WRITE |
          e.IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | e.IBV_QP_EX_WITH_RDMA_READ |
          e.IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP | e.IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD |
          (e.IBV_QP_EX_WITH_ATOMIC_WRITE | e.IBV_QP_EX_WITH_FLUSH if KERNEL_HAS_FLUSH else 0))
needs_flush = pytest.mark.skipif(not KERNEL_HAS_FLUSH, reason="no RDMA FLUSH / ATOMIC WRITE in "
                                 "the kernel's verbs before 6.2 (hmr does not advertise them)")
WC_FLUSH, WC_ATOMIC_WRITE = 8, 9                # enum ibv_wc_opcode (rdma-core 56 and 65)
FLUSH_GLOBAL, FLUSH_PERSISTENT = 1, 2           # enum ibv_placement_type
FLUSH_RANGE, FLUSH_MR = 0, 1                    # enum ibv_selectivity_level
ACCESS_FLUSH_GLOBAL, ACCESS_FLUSH_PERSISTENT = 1 << 8, 1 << 9
SQ_DEPTH = 16


def init_attr_ex(pd, cq, ops=RC_OPS, qp_type=e.IBV_QPT_RC):
    cap = QPCap(max_send_wr=SQ_DEPTH, max_recv_wr=64, max_send_sge=4, max_recv_sge=4,
                max_inline_data=128)
    return QPInitAttrEx(qp_type=qp_type, scq=cq, rcq=cq, cap=cap, pd=pd, sq_sig_all=0,
                        comp_mask=e.IBV_QP_INIT_ATTR_PD | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
                        send_ops_flags=ops)


class ExPair:
    """a: an extended QP driven through ibv_wr_*; b: a plain QP with its MR."""

    def __init__(self):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.b = Side(self.ctx, self.pd)
        self.a = Side(self.ctx, self.pd)
        self.a.qp.close()
        self.a.qp = QPEx(self.ctx, init_attr_ex(self.pd, self.a.scq))
        connect(self.ctx, self.a.qp, self.b.qp.qp_num)
        connect(self.ctx, self.b.qp, self.a.qp.qp_num)

    def close(self):
        self.ctx.close()


@pytest.fixture
def ex():
    p = ExPair()
    yield p
    p.close()


def be32(x):
    """pyverbs' wr_*_imm take host order and convert; WC.imm_data is the raw big-endian word."""
    return struct.unpack("=I", struct.pack(">I", x))[0]


def start(qp, wr_id, flags=e.IBV_SEND_SIGNALED):
    qp.wr_id, qp.wr_flags = wr_id, flags


def test_create_qp_ex_reports_caps(ex):
    attr, init = ex.a.qp.query(e.IBV_QP_CAP)
    assert init.cap.max_send_wr >= SQ_DEPTH and init.cap.max_send_sge >= 4
    assert init.cap.max_inline_data >= 128


@pytest.mark.parametrize("length", [1, 4096, 65536 + 3])
def test_wr_send_and_send_imm(ex, length):
    data = pattern(length, 5)
    ex.a.mr.write(data, length)
    post_recv(ex.b, 1)
    post_recv(ex.b, 2)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 10)
    qp.wr_send()
    qp.wr_set_sge(sge(ex.a.mr, 0, length))
    start(qp, 11)
    qp.wr_send_imm(0x1234abcd)
    qp.wr_set_sge(sge(ex.a.mr, 0, length))
    qp.wr_complete()
    swcs = poll(ex.a.scq, 2)
    assert [(w.wr_id, w.status, w.opcode) for w in swcs] == [
        (10, e.IBV_WC_SUCCESS, e.IBV_WC_SEND), (11, e.IBV_WC_SUCCESS, e.IBV_WC_SEND)]
    rwcs = poll(ex.b.rcq, 2)
    assert [w.wr_id for w in rwcs] == [1, 2] and all(w.byte_len == length for w in rwcs)
    assert rwcs[1].wc_flags & e.IBV_WC_WITH_IMM and rwcs[1].imm_data == be32(0x1234abcd)
    assert ex.b.mr.read(length, 0) == data


def test_wr_rdma_write_write_imm_and_read(ex):
    n = 20000
    data = pattern(n, 9)
    ex.a.mr.write(data, n)
    post_recv(ex.b, 3, 0, 0)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 20)
    qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf + 100)
    qp.wr_set_sge(sge(ex.a.mr, 0, n))
    start(qp, 21)
    qp.wr_rdma_write_imm(ex.b.mr.rkey, ex.b.mr.buf + 100 + n, 77)
    qp.wr_set_sge(sge(ex.a.mr, 0, 10))
    qp.wr_complete()
    assert [w.status for w in poll(ex.a.scq, 2)] == [e.IBV_WC_SUCCESS] * 2
    (rwc,) = poll(ex.b.rcq)
    assert rwc.opcode == e.IBV_WC_RECV_RDMA_WITH_IMM and rwc.imm_data == be32(77)
    assert ex.b.mr.read(n + 10, 100) == data + data[:10]
    # Read it back into another part of a's MR.
    qp.wr_start()
    start(qp, 22)
    qp.wr_rdma_read(ex.b.mr.rkey, ex.b.mr.buf + 100)
    qp.wr_set_sge(sge(ex.a.mr, 500000, n))
    qp.wr_complete()
    (wc,) = poll(ex.a.scq)
    assert wc.status == e.IBV_WC_SUCCESS and wc.opcode == e.IBV_WC_RDMA_READ and wc.wr_id == 22
    assert ex.a.mr.read(n, 500000) == data


def test_wr_atomics(ex):
    ex.b.mr.write(struct.pack("<QQ", 5, 1000), 16)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 30)
    qp.wr_atomic_cmp_swp(ex.b.mr.rkey, ex.b.mr.buf, 5, 99)
    qp.wr_set_sge(sge(ex.a.mr, 0, 8))
    start(qp, 31)
    qp.wr_atomic_fetch_add(ex.b.mr.rkey, ex.b.mr.buf + 8, 23)
    qp.wr_set_sge(sge(ex.a.mr, 8, 8))
    qp.wr_complete()
    wcs = poll(ex.a.scq, 2)
    assert [(w.wr_id, w.status) for w in wcs] == [(30, e.IBV_WC_SUCCESS), (31, e.IBV_WC_SUCCESS)]
    assert struct.unpack("<QQ", ex.a.mr.read(16, 0)) == (5, 1000)
    assert struct.unpack("<QQ", ex.b.mr.read(16, 0)) == (99, 1023)


def test_wr_sge_list_and_inline(ex):
    ex.a.mr.write(b"A" * 10 + b"B" * 20, 30)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 40)
    qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf)
    qp.wr_set_sge_list(2, [sge(ex.a.mr, 10, 20), sge(ex.a.mr, 0, 10)])
    start(qp, 41)
    qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf + 30)
    buf = ex.a.mr.buf + 4096
    ex.a.mr.write(b"inline!", 7, 4096)
    qp.wr_set_inline_data(buf, 7)
    qp.wr_complete()
    assert [w.status for w in poll(ex.a.scq, 2)] == [e.IBV_WC_SUCCESS] * 2
    assert ex.b.mr.read(37, 0) == b"B" * 20 + b"A" * 10 + b"inline!"


def test_unsignaled_wrs_complete_silently(ex):
    ex.a.mr.write(b"xyz", 3)
    qp = ex.a.qp
    qp.wr_start()
    for i in range(5):
        start(qp, 50 + i, 0 if i < 4 else e.IBV_SEND_SIGNALED)
        qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf + i)
        qp.wr_set_sge(sge(ex.a.mr, 0, 1))
    qp.wr_complete()
    (wc,) = poll(ex.a.scq)
    assert wc.wr_id == 54 and wc.status == e.IBV_WC_SUCCESS
    assert ex.a.scq.poll(1) == (0, [])
    assert ex.b.mr.read(5, 0) == b"x" * 5


def test_wr_abort_posts_nothing(ex):
    ex.b.mr.write(b"\0" * 8, 8)
    ex.a.mr.write(b"ABORTED!", 8)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 60)
    qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf)
    qp.wr_set_sge(sge(ex.a.mr, 0, 8))
    qp.wr_abort()
    # The slot is reused by the next batch, which is the only thing that runs.
    qp.wr_start()
    start(qp, 61)
    qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf + 8)
    qp.wr_set_sge(sge(ex.a.mr, 0, 4))
    qp.wr_complete()
    (wc,) = poll(ex.a.scq)
    assert wc.wr_id == 61 and wc.status == e.IBV_WC_SUCCESS
    assert ex.a.scq.poll(1) == (0, [])
    assert ex.b.mr.read(12, 0) == b"\0" * 8 + b"ABOR"


def failed_batch(ex, build):
    """Run a batch that must fail in wr_complete; return its errno and check nothing ran."""
    ex.b.mr.write(b"\0" * 16, 16)
    ex.a.mr.write(b"Q" * 16, 16)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 70)
    qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf)
    qp.wr_set_sge(sge(ex.a.mr, 0, 16))
    build(qp)
    with pytest.raises(PyverbsRDMAError) as err:
        qp.wr_complete()
    assert ex.a.scq.poll(1) == (0, [])
    assert ex.b.mr.read(16, 0) == b"\0" * 16
    # The QP still works afterwards.
    qp.wr_start()
    start(qp, 71)
    qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf)
    qp.wr_set_sge(sge(ex.a.mr, 0, 16))
    qp.wr_complete()
    (wc,) = poll(ex.a.scq)
    assert wc.wr_id == 71 and ex.b.mr.read(16, 0) == b"Q" * 16
    return err.value.error_code


def test_inline_too_long_fails_the_batch(ex):
    def build(qp):
        qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf)
        qp.wr_set_inline_data(ex.a.mr.buf, 4096)
    assert failed_batch(ex, build) == errno.ENOMEM


def test_too_many_sges_fails_the_batch(ex):
    n = ex.a.qp.query(e.IBV_QP_CAP)[1].cap.max_send_sge + 1

    def build(qp):
        qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf)
        qp.wr_set_sge_list(n, [sge(ex.a.mr, 0, 1)] * n)
    assert failed_batch(ex, build) == errno.EINVAL


def test_overfull_batch_fails_the_batch(ex):
    def build(qp):
        for _ in range(SQ_DEPTH * 4):
            qp.wr_rdma_write(ex.b.mr.rkey, ex.b.mr.buf)
            qp.wr_set_sge(sge(ex.a.mr, 0, 1))
    assert failed_batch(ex, build) == errno.ENOMEM


@pytest.mark.parametrize("ops", [e.IBV_QP_EX_WITH_TSO, 1 << 40])
def test_unsupported_send_ops_are_refused(ops):
    """TSO (raw packet QPs only) and an unknown bit. The memory-window ops (BIND_MW, LOCAL_INV,
    SEND_WITH_INV) are supported: test_hmr_mw.py."""
    ctx = Context(name="hmr0")
    try:
        pd, cq = PD(ctx), CQ(ctx, 8)
        with pytest.raises(PyverbsRDMAError) as err:
            QPEx(ctx, init_attr_ex(pd, cq, RC_OPS | ops))
        assert err.value.error_code == errno.EOPNOTSUPP
    finally:
        ctx.close()


@pytest.mark.parametrize("qp_type,ops", [
    (e.IBV_QPT_UD, e.IBV_QP_EX_WITH_RDMA_WRITE), (e.IBV_QPT_UD, e.IBV_QP_EX_WITH_RDMA_READ),
    (e.IBV_QPT_UC, e.IBV_QP_EX_WITH_RDMA_READ),
    (e.IBV_QPT_UC, e.IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD)])
def test_send_ops_beyond_the_qp_type_are_refused(qp_type, ops):
    ctx = Context(name="hmr0")
    try:
        pd, cq = PD(ctx), CQ(ctx, 8)
        with pytest.raises(PyverbsRDMAError) as err:
            QPEx(ctx, init_attr_ex(pd, cq, e.IBV_QP_EX_WITH_SEND | ops, qp_type))
        assert err.value.error_code == errno.EOPNOTSUPP
    finally:
        ctx.close()


@needs_flush
def test_wr_atomic_write(ex):
    ex.b.mr.write(b"\0" * 16, 16)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 80)
    qp.wr_atomic_write(ex.b.mr.rkey, ex.b.mr.buf + 8, struct.pack("<Q", 0x1122334455667788))
    qp.wr_complete()
    (wc,) = poll(ex.a.scq)
    assert (wc.wr_id, wc.status, wc.opcode) == (80, e.IBV_WC_SUCCESS, WC_ATOMIC_WRITE)
    assert ex.b.mr.read(16, 0) == bytes(8) + struct.pack("<Q", 0x1122334455667788)
    qp.wr_start()           # over a non-zero word: the store replaces it whole
    start(qp, 82)
    qp.wr_atomic_write(ex.b.mr.rkey, ex.b.mr.buf + 8, struct.pack("<Q", 0xfedcba9876543210))
    qp.wr_complete()
    (wc,) = poll(ex.a.scq)
    assert (wc.wr_id, wc.status) == (82, e.IBV_WC_SUCCESS)
    assert ex.b.mr.read(16, 0) == bytes(8) + struct.pack("<Q", 0xfedcba9876543210)


@needs_flush
def test_wr_atomic_write_misaligned_is_refused(ex):
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 81)
    qp.wr_atomic_write(ex.b.mr.rkey, ex.b.mr.buf + 4, bytes(8))
    qp.wr_complete()
    (wc,) = poll(ex.a.scq)
    assert wc.wr_id == 81 and wc.status == e.IBV_WC_REM_INV_REQ_ERR


FLUSH_CASES = {  # case: (QP access flags beyond ALL, MR access beyond LOCAL/REMOTE_WRITE, status)
    "range": (ACCESS_FLUSH_GLOBAL, ACCESS_FLUSH_GLOBAL, e.IBV_WC_SUCCESS),
    "mr": (ACCESS_FLUSH_GLOBAL, ACCESS_FLUSH_GLOBAL, e.IBV_WC_SUCCESS),
    "no-flush-access": (ACCESS_FLUSH_GLOBAL, 0, e.IBV_WC_REM_ACCESS_ERR),
    # the QP does not take FLUSH of that placement type: invalid request, as rxe answers
    "qp-no-flush-access": (0, ACCESS_FLUSH_GLOBAL, e.IBV_WC_REM_INV_REQ_ERR),
    "persistent": (ACCESS_FLUSH_GLOBAL, ACCESS_FLUSH_GLOBAL, e.IBV_WC_REM_INV_REQ_ERR),
    # the QP takes it, but no MR can allow it: hmr has no persistent memory
    "persistent-qp-allows": (ACCESS_FLUSH_GLOBAL | ACCESS_FLUSH_PERSISTENT, ACCESS_FLUSH_GLOBAL,
                             e.IBV_WC_REM_ACCESS_ERR),
    "past-end": (ACCESS_FLUSH_GLOBAL, ACCESS_FLUSH_GLOBAL, e.IBV_WC_REM_ACCESS_ERR),
}


@needs_flush
@pytest.mark.parametrize("case", FLUSH_CASES)
def test_wr_flush(ex, case):
    from pyverbs.mr import MR
    from pyverbs.qp import QPAttr
    qp_access, mr_access, want = FLUSH_CASES[case]
    a = QPAttr(qp_state=e.IBV_QPS_RTS)   # the target QP's access flags, changed in RTS
    a.qp_access_flags = ALL | qp_access
    ex.b.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_ACCESS_FLAGS)
    access = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE
    mr = MR(ex.pd, 1 << 16, access | mr_access)
    ptype = FLUSH_PERSISTENT if case.startswith("persistent") else FLUSH_GLOBAL
    level = FLUSH_MR if case == "mr" else FLUSH_RANGE
    length = (1 << 16) + 1 if case == "past-end" else 4096
    ex.a.mr.write(b"flushed", 7)
    qp = ex.a.qp
    qp.wr_start()
    start(qp, 90)
    qp.wr_rdma_write(mr.rkey, mr.buf)
    qp.wr_set_sge(sge(ex.a.mr, 0, 7))
    start(qp, 91)
    qp.wr_flush(mr.rkey, mr.buf, length, ptype, level)
    qp.wr_complete()
    wcs = poll(ex.a.scq, 2)
    assert wcs[0].status == e.IBV_WC_SUCCESS and mr.read(7, 0) == b"flushed"
    assert (wcs[1].wr_id, wcs[1].status) == (91, want)
    if want == e.IBV_WC_SUCCESS:
        assert wcs[1].opcode == WC_FLUSH


def test_flush_and_atomic_write_are_advertised():
    ctx = Context(name="hmr0")
    try:
        caps = ctx.query_device_ex().device_cap_flags_ex
        both = caps & (1 << 38) and caps & (1 << 40)   # FLUSH_GLOBAL, ATOMIC_WRITE
        assert both if KERNEL_HAS_FLUSH else not caps & (1 << 38 | 1 << 40), hex(caps)
    finally:
        ctx.close()
