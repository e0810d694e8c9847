"""hmr0 memory windows (type 1 and type 2): bind, then RDMA WRITE, READ and atomics through the
window's key byte for byte over pinless, ODP and implicit ODP MRs (also after MADV_DONTNEED);
unbind, rebind, LOCAL_INV, SEND_WITH_INV and the ibv_wr_* path; every refusal (outside the
window, a right it lacks, another QP or PD, a dead key) leaves the memory untouched; bind errors
(IBV_WC_MW_BIND_ERR), invalidation errors, and the window's lifetime (dealloc, dereg of its MR,
destroy of the QP that bound it)."""
import ctypes
import errno
import os
import struct
import time
import types

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_data import Side, connect, pattern, poll, post_recv, send_wr, sge  # noqa: E402
from test_hmr_util import MADV_DONTNEED, anon_map, e, libc, unmap  # noqa: E402
from test_hmr_uc import UcPair  # noqa: E402
from test_hmr_ud import Ud, to_rts  # noqa: E402
import test_hmr_qp_ex as qp_ex  # noqa: E402  (a module: pytest would collect its tests' names)
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR, MW, MWBind, MWBindInfo  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPEx, QPInitAttr, QPInitAttrEx  # noqa: E402
from pyverbs.wr import SGE, SendWR  # noqa: E402

PAGE = 4096
N = 16 * PAGE                     # the target mapping, all of it under the MW_BIND MR
WIN, WLEN = 3 * PAGE, 8 * PAGE    # the window bound over it
SINK = 1 << 19                    # where READs and atomics land in the requester's MR
FILL = b"\xa5"
MWB = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_MW_BIND   # and no remote right of the MR's own
RR, RW, RA = e.IBV_ACCESS_REMOTE_READ, e.IBV_ACCESS_REMOTE_WRITE, e.IBV_ACCESS_REMOTE_ATOMIC
RIGHTS = RR | RW | RA
KINDS = ["pinless", "odp", "implicit"]
T1, T2 = e.IBV_MW_TYPE_1, e.IBV_MW_TYPE_2
TYPES = pytest.mark.parametrize("mw_type", [T1, T2], ids=["type1", "type2"])
B_OPS = (e.IBV_QP_EX_WITH_SEND | e.IBV_QP_EX_WITH_RDMA_WRITE | e.IBV_QP_EX_WITH_BIND_MW |
         e.IBV_QP_EX_WITH_LOCAL_INV)


def inc(key):
    """ibv_inc_rkey: the next key of the same index."""
    return (key & ~0xff) | ((key + 1) & 0xff)


def run(side, wr):
    side.qp.post_send(wr)
    (wc,) = poll(side.scq)
    return wc


def wr_post(side, build, wr_id=9):
    """One WR through the ibv_wr_* builder of @side's extended QP."""
    qp = side.qp
    qp.wr_start()
    qp.wr_id, qp.wr_flags = wr_id, e.IBV_SEND_SIGNALED
    build(qp)
    qp.wr_complete()
    (wc,) = poll(side.scq)
    return wc


def make_ex(ctx, pd, side, ops):
    side.qp.close()
    cap = QPCap(max_send_wr=64, max_recv_wr=64, max_send_sge=4, max_recv_sge=4)
    side.qp = QPEx(ctx, QPInitAttrEx(
        qp_type=e.IBV_QPT_RC, scq=side.scq, rcq=side.rcq, cap=cap, pd=pd, sq_sig_all=1,
        comp_mask=e.IBV_QP_INIT_ATTR_PD | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS, send_ops_flags=ops))


class Rig:
    """a (requester) connected to b (the target's QP, which binds the windows); the target memory
    is buf (N bytes, filled with FILL) under mr: an MR of @kind with MW_BIND and LOCAL_WRITE only.
    @ex: a and b are extended QPs (a with SEND_WITH_INV, b with BIND_MW and LOCAL_INV)."""

    def __init__(self, kind="pinless", ex=False):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.a, self.b = Side(self.ctx, self.pd), Side(self.ctx, self.pd)
        if ex:
            make_ex(self.ctx, self.pd, self.a, qp_ex.RC_OPS | e.IBV_QP_EX_WITH_SEND_WITH_INV)
            make_ex(self.ctx, self.pd, self.b, B_OPS)
        connect(self.ctx, self.a.qp, self.b.qp.qp_num)
        connect(self.ctx, self.b.qp, self.a.qp.qp_num)
        self.buf = anon_map(N)
        odp = 0 if kind == "pinless" else e.IBV_ACCESS_ON_DEMAND
        if kind == "implicit":
            self.mr = MR(self.pd, 0, MWB | odp, implicit=True)
        else:
            self.mr = MR(self.pd, N, MWB | odp, address=self.buf)
        self.put(0, FILL * N)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ctx.close()
        unmap(self.buf, N)

    def put(self, off, data):
        ctypes.memmove(self.buf + off, data, len(data))

    def mem(self, off=0, n=N):
        return ctypes.string_at(self.buf + off, n)

    def other_pair(self, pd=None):
        """c, a QP of @pd (this rig's PD by default) other than b, and d, its requester."""
        pd = self.pd if pd is None else pd
        c, d = Side(self.ctx, pd), Side(self.ctx, pd)
        connect(self.ctx, c.qp, d.qp.qp_num)
        connect(self.ctx, d.qp, c.qp.qp_num)
        return c, d

    def bind(self, mw, off=WIN, length=WLEN, rights=RIGHTS, mr=None, side=None):
        """Bind @mw over buf + @off on @side's QP (b's): type 1 by ibv_bind_mw, type 2 by an
        IBV_WR_BIND_MW WR. Returns the completion and the window's new key."""
        side = self.b if side is None else side
        info = MWBindInfo(self.mr if mr is None else mr, self.buf + off, length, rights)
        if mw.type == T1:
            old = mw.rkey
            side.qp.bind_mw(mw, MWBind(info, e.IBV_SEND_SIGNALED, 7))
            key = mw.rkey
            assert key == inc(old), (hex(old), hex(key))   # set at post time
        else:
            wr = SendWR(wr_id=7, opcode=e.IBV_WR_BIND_MW)
            wr.set_bind_wr(mw, info)
            side.qp.post_send(wr)
            key = wr.rkey
        (wc,) = poll(side.scq)
        return wc, key

    def bound(self, mw_type, **kw):
        mw = MW(self.pd, mw_type)
        wc, key = self.bind(mw, **kw)
        assert (wc.status, wc.opcode, wc.wr_id) == (e.IBV_WC_SUCCESS, e.IBV_WC_BIND_MW, 7)
        return mw, key

    def op(self, what, key, off, n=64, req=None, data=None):
        """An RDMA WRITE (of @data), READ (into SINK) or FETCH_AND_ADD 1 at buf + @off through
        @key, from @req (a); returns its completion."""
        req = self.a if req is None else req
        if what == "write":
            req.mr.write(data or pattern(n, 99), n)
            wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [sge(req.mr, 0, n)])
            wr.set_wr_rdma(key, self.buf + off)
        elif what == "read":
            wr = send_wr(2, e.IBV_WR_RDMA_READ, [sge(req.mr, SINK, n)])
            wr.set_wr_rdma(key, self.buf + off)
        else:
            wr = send_wr(3, e.IBV_WR_ATOMIC_FETCH_AND_ADD, [sge(req.mr, SINK, 8)])
            wr.set_wr_atomic(key, self.buf + off, 1, 0)
        return run(req, wr)

    def works(self, key, off=WIN, n=256, req=None):
        """WRITE, READ and FETCH_AND_ADD through @key at buf + @off: the data really lands in and
        comes from the target memory, nothing outside [off, off + n) changes."""
        req = self.a if req is None else req
        data = pattern(n, off & 0xff)
        before = self.mem()
        wc = self.op("write", key, off, n, req, data)
        assert (wc.status, wc.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_RDMA_WRITE)
        assert self.mem() == before[:off] + data + before[off + n:]
        self.put(off, data[::-1])
        wc = self.op("read", key, off, n, req)
        assert (wc.status, wc.byte_len) == (e.IBV_WC_SUCCESS, n)
        assert req.mr.read(n, SINK) == data[::-1]
        old = struct.unpack("<Q", self.mem(off, 8))[0]
        wc = self.op("atomic", key, off, 8, req)
        assert (wc.status, wc.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_FETCH_ADD)
        assert struct.unpack("<Q", req.mr.read(8, SINK))[0] == old
        assert struct.unpack("<Q", self.mem(off, 8))[0] == (old + 1) % (1 << 64)

    def refused(self, what, key, off=WIN, n=64, req=None):
        """@what through @key completes REM_ACCESS_ERR; neither side's memory changed."""
        req = self.a if req is None else req
        n = 8 if what == "atomic" else n
        before, sink = self.mem(), req.mr.read(n, SINK)
        wc = self.op(what, key, off, n, req)
        assert wc.status == e.IBV_WC_REM_ACCESS_ERR, wc.status
        assert self.mem() == before, "a refused access changed the target memory"
        assert req.mr.read(n, SINK) == sink


def state(qp):
    return qp.query(e.IBV_QP_STATE)[0].qp_state


@pytest.fixture
def rig():
    with Rig() as r:
        yield r


@pytest.fixture(params=KINDS)
def any_rig(request):
    with Rig(request.param) as r:
        yield r


def test_type1_bind_write_read_atomic(any_rig):
    mw, key = any_rig.bound(T1)
    any_rig.works(key, WIN, WLEN)                # the whole window, exactly
    any_rig.works(key, WIN + WLEN - 64, 64)      # its last bytes
    any_rig.refused("write", any_rig.mr.rkey)    # the MR's own key has no remote right


def test_type2_bind_by_post_send(any_rig):
    mw = MW(any_rig.pd, T2)
    old = mw.rkey
    wc, key = any_rig.bind(mw)
    assert (wc.status, wc.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_BIND_MW)
    # the WR's key (pyverbs' set_bind_wr: inc_rkey); whether ibv_mw.rkey follows is
    # userspace's business: rdma-core 56's pyverbs leaves it, 65's updates it
    assert key == inc(old) and mw.rkey in (old, key)
    any_rig.works(key, WIN, WLEN)
    any_rig.refused("read", any_rig.mr.rkey)


@pytest.mark.parametrize("kind", KINDS)
def test_dontneed_then_access_through_the_window_refaults(kind):
    with Rig(kind) as r:
        mw, key = r.bound(T2)
        r.put(WIN, pattern(WLEN, 21))
        assert r.op("read", key, WIN, WLEN).status == e.IBV_WC_SUCCESS
        assert r.a.mr.read(WLEN, SINK) == pattern(WLEN, 21)
        assert libc.madvise(r.buf + WIN, WLEN, MADV_DONTNEED) == 0
        assert r.op("read", key, WIN, WLEN).status == e.IBV_WC_SUCCESS   # zero pages, not stale
        assert r.a.mr.read(WLEN, SINK) == bytes(WLEN)
        assert libc.madvise(r.buf + WIN, WLEN, MADV_DONTNEED) == 0
        assert r.op("write", key, WIN, WLEN, data=pattern(WLEN, 22)).status == e.IBV_WC_SUCCESS
        assert r.mem(WIN, WLEN) == pattern(WLEN, 22)
        assert libc.madvise(r.buf + WIN, WLEN, MADV_DONTNEED) == 0
        assert r.op("atomic", key, WIN + 64).status == e.IBV_WC_SUCCESS
        assert r.a.mr.read(8, SINK) == bytes(8) and r.mem(WIN + 64, 8) == struct.pack("<Q", 1)


@pytest.mark.parametrize("length", [0, WLEN], ids=["unbind-by-zero-length", "rebind"])
def test_type1_bound_again_gets_a_new_key_and_the_old_dies(rig, length):
    mw, key = rig.bound(T1)
    rig.works(key)
    wc, key2 = rig.bind(mw, WIN, length, RIGHTS if length else 0)
    assert (wc.status, wc.opcode, key2) == (e.IBV_WC_SUCCESS, e.IBV_WC_BIND_MW, inc(key))
    if length:
        rig.works(key2)
    rig.refused("write", key)


def test_ibv_wr_bind_local_inv_and_send_inv():
    with Rig(ex=True) as r:
        mw = MW(r.pd, T2)
        key = inc(mw.rkey)
        info = MWBindInfo(r.mr, r.buf + WIN, WLEN, RIGHTS)
        wc = wr_post(r.b, lambda qp: qp.wr_bind_mw(mw, key, info))
        assert (wc.status, wc.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_BIND_MW)
        r.works(key, WIN, WLEN)
        wc = wr_post(r.b, lambda qp: qp.wr_local_inv(key))
        assert (wc.status, wc.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_LOCAL_INV)
        key2 = inc(key)              # invalidated: it binds again
        assert wr_post(r.b, lambda qp: qp.wr_bind_mw(mw, key2, info)).status == e.IBV_WC_SUCCESS
        r.works(key2)
        r.a.mr.write(pattern(1000, 8), 1000)
        post_recv(r.b, 4)

        def send_inv(qp):
            qp.wr_send_inv(key2)
            qp.wr_set_sge(sge(r.a.mr, 0, 1000))
        wc = wr_post(r.a, send_inv)
        assert (wc.status, wc.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_SEND)
        (rwc,) = poll(r.b.rcq)
        assert (rwc.status, rwc.wr_id, rwc.byte_len) == (e.IBV_WC_SUCCESS, 4, 1000)
        assert rwc.wc_flags & e.IBV_WC_WITH_INV and rwc.imm_data == key2
        assert r.b.mr.read(1000, 0) == pattern(1000, 8)
        r.refused("write", key2)


OUTSIDE = {  # what, offset, length, the window's rights
    "write-before-window": ("write", WIN - 8, 64, RIGHTS),
    "write-across-window-end": ("write", WIN + WLEN - 32, 64, RIGHTS),
    "read-after-window": ("read", WIN + WLEN, 8, RIGHTS),
    "atomic-after-window": ("atomic", WIN + WLEN, 8, RIGHTS),
    "read-without-remote-read": ("read", WIN, 64, RW | RA),
    "write-without-remote-write": ("write", WIN, 64, RR | RA),
    "atomic-without-remote-atomic": ("atomic", WIN, 8, RR | RW),
}


@TYPES
@pytest.mark.parametrize("case", OUTSIDE)
def test_outside_the_window_or_its_rights_is_refused(rig, mw_type, case):
    what, off, n, rights = OUTSIDE[case]
    mw, key = rig.bound(mw_type, rights=rights)
    ok = "write" if rights & RW else "read"      # the key itself is good
    assert rig.op(ok, key, WIN).status == e.IBV_WC_SUCCESS
    rig.refused(what, key, off, n)


@TYPES
def test_window_through_another_qp_of_the_pd(rig, mw_type):
    """Type 1: any QP of the PD; type 2: only the QP that bound it."""
    c, d = rig.other_pair()
    mw, key = rig.bound(mw_type)
    rig.works(key)
    if mw_type == T1:
        rig.works(key, WIN + PAGE, req=d)
    else:
        rig.refused("write", key, req=d)


def test_window_through_a_qp_of_another_pd_is_refused(rig):
    c, d = rig.other_pair(PD(rig.ctx))
    mw, key = rig.bound(T1)
    rig.works(key)
    rig.refused("write", key, req=d)


def test_local_inv_then_access_is_refused(rig):
    mw, key = rig.bound(T2)
    rig.works(key)
    wc = run(rig.b, SendWR(wr_id=8, opcode=e.IBV_WR_LOCAL_INV, imm_data=key))
    assert (wc.status, wc.opcode, wc.wr_id) == (e.IBV_WC_SUCCESS, e.IBV_WC_LOCAL_INV, 8)
    rig.refused("write", key)


@pytest.mark.parametrize("case", ["type1", "mr-key", "unbound", "unknown", "other-qp"])
def test_local_inv_error(rig, case):
    c, d = rig.other_pair()
    if case == "type1":
        mw, key = rig.bound(T1)
    elif case == "mr-key":
        key = rig.mr.rkey
    elif case == "unbound":
        key = MW(rig.pd, T2).rkey
    elif case == "unknown":
        mw = MW(rig.pd, T2)
        key = mw.rkey
        mw.close()
    else:
        mw, key = rig.bound(T2, side=c)
    wc = run(rig.b, SendWR(wr_id=8, opcode=e.IBV_WR_LOCAL_INV, imm_data=key))
    assert (wc.status, wc.wr_id) == (e.IBV_WC_LOC_QP_OP_ERR, 8)
    if case in ("type1", "other-qp"):
        rig.works(key, req=d)        # the window was left as it was


def test_send_with_inv(rig):
    mw, key = rig.bound(T2)
    rig.works(key)
    n = 3000
    rig.a.mr.write(pattern(n, 12), n)
    post_recv(rig.b, 5)
    wc = run(rig.a, send_wr(1, e.IBV_WR_SEND_WITH_INV, [sge(rig.a.mr, 0, n)], imm=key))
    assert (wc.status, wc.opcode) == (e.IBV_WC_SUCCESS, e.IBV_WC_SEND)
    (rwc,) = poll(rig.b.rcq)
    assert (rwc.status, rwc.wr_id, rwc.opcode, rwc.byte_len) == \
        (e.IBV_WC_SUCCESS, 5, e.IBV_WC_RECV, n)
    assert rwc.wc_flags & e.IBV_WC_WITH_INV and not rwc.wc_flags & e.IBV_WC_WITH_IMM
    assert rwc.imm_data == key       # wc.invalidated_rkey (host order) under pyverbs' name
    assert rig.b.mr.read(n, 0) == pattern(n, 12)
    rig.refused("write", key)


@pytest.mark.parametrize("case", ["type1", "other-qp"])
def test_send_with_inv_that_cannot_invalidate(rig, case):
    c, d = rig.other_pair()
    mw, key = rig.bound(T1) if case == "type1" else rig.bound(T2, side=c)
    post_recv(rig.b, 5)
    wc = run(rig.a, send_wr(1, e.IBV_WR_SEND_WITH_INV, [sge(rig.a.mr, 0, 64)], imm=key))
    assert wc.status == e.IBV_WC_REM_INV_REQ_ERR
    (rwc,) = poll(rig.b.rcq)
    assert rwc.wr_id == 5 and rwc.status != e.IBV_WC_SUCCESS
    rig.works(key, req=d)            # the window was left as it was


@pytest.mark.parametrize("qp_type", ["uc", "ud"])
def test_send_with_inv_on_uc_or_ud_is_a_local_qp_operation_error(qp_type):
    p = UcPair() if qp_type == "uc" else Ud()
    try:
        if qp_type == "uc":
            p.a.qp.post_send(send_wr(1, e.IBV_WR_SEND_WITH_INV, [sge(p.a.mr, 0, 8)], imm=0x1234))
        else:
            p.send(8, wr_id=1, opcode=e.IBV_WR_SEND_WITH_INV, imm=0x1234)
        (wc,) = poll(p.a.scq if qp_type == "uc" else p.a.cq)
        assert (wc.status, wc.wr_id) == (e.IBV_WC_LOC_QP_OP_ERR, 1)
    finally:
        p.close()


BIND_ERRORS = ["mr-without-mw-bind", "range-outside-mr", "write-without-local-write",
               "mw-and-mr-of-another-pd"]
BIND_ERRORS_2 = ["atomic-without-local-write", "bound-twice", "zero-length", "zero-based",
                 "key-of-another-index"]


@pytest.mark.parametrize("mw_type, case",
                         [pytest.param(T1, c, id="type1-" + c) for c in BIND_ERRORS] +
                         [pytest.param(T2, c, id="type2-" + c)
                          for c in BIND_ERRORS + BIND_ERRORS_2])
def test_bind_error(mw_type, case):
    with Rig(ex=case == "key-of-another-index") as r:
        pd, mr, off, length, rights = r.pd, None, WIN, WLEN, RIGHTS
        if case == "mr-without-mw-bind":
            mr = MR(pd, N, e.IBV_ACCESS_LOCAL_WRITE | RIGHTS, address=r.buf)
        elif case == "range-outside-mr":
            off, length = N - PAGE, 2 * PAGE
        elif case.endswith("without-local-write"):
            mr = MR(pd, N, e.IBV_ACCESS_MW_BIND, address=r.buf)
            rights = RW if case.startswith("write") else RA
        elif case == "mw-and-mr-of-another-pd":
            pd = PD(r.ctx)
            mr = MR(pd, N, MWB, address=r.buf)
        elif case == "zero-length":
            length = 0
        elif case == "zero-based":
            rights |= e.IBV_ACCESS_ZERO_BASED
        mw = MW(pd, mw_type)
        if case == "bound-twice":
            assert r.bind(mw)[0].status == e.IBV_WC_SUCCESS
        if case == "key-of-another-index":
            info = MWBindInfo(r.mr, r.buf + WIN, WLEN, RIGHTS)
            wc = wr_post(r.b, lambda qp: qp.wr_bind_mw(mw, mw.rkey ^ 0x100, info), 7)
        else:
            wc, _ = r.bind(mw, off, length, rights, mr)
        assert (wc.status, wc.wr_id) == (e.IBV_WC_MW_BIND_ERR, 7)
        assert state(r.b.qp) == e.IBV_QPS_ERR


def test_ibv_bind_mw_refusals_come_from_the_call(rig):
    """A type 2 window, ZERO_BASED, or an MR of another PD: nothing is posted."""
    mw1 = MW(rig.pd, T1)
    # the other PD kept and closed after its MR: pyverbs 44 frees an unnamed one first (EBUSY,
    # then a crash in the garbage collector)
    pd2 = PD(rig.ctx)
    other = MR(pd2, N, MWB, address=rig.buf)
    for mw, rights, mr, err in ((MW(rig.pd, T2), RIGHTS, rig.mr, errno.EINVAL),
                                (mw1, RIGHTS | e.IBV_ACCESS_ZERO_BASED, rig.mr, errno.EINVAL),
                                (mw1, RIGHTS, other, errno.EPERM)):
        with pytest.raises(PyverbsRDMAError) as ex:
            rig.b.qp.bind_mw(mw, MWBind(MWBindInfo(mr, rig.buf + WIN, WLEN, rights),
                                        e.IBV_SEND_SIGNALED))
        assert ex.value.error_code == err
    time.sleep(0.2)
    assert rig.b.scq.poll(1) == (0, []) and state(rig.b.qp) == e.IBV_QPS_RTS
    wc, key = rig.bind(mw1)
    assert wc.status == e.IBV_WC_SUCCESS
    rig.works(key)
    other.close()
    pd2.close()


@TYPES
def test_bind_on_a_ud_qp_is_a_local_qp_operation_error(rig, mw_type):
    cq = CQ(rig.ctx, 16)
    qp = QP(rig.pd, QPInitAttr(qp_type=e.IBV_QPT_UD, scq=cq, rcq=cq, sq_sig_all=1,
                               cap=QPCap(max_send_wr=4, max_recv_wr=4)))
    to_rts(qp)
    wc, _ = rig.bind(MW(rig.pd, mw_type), side=types.SimpleNamespace(qp=qp, scq=cq))
    assert (wc.status, wc.wr_id) == (e.IBV_WC_LOC_QP_OP_ERR, 7)


@TYPES
def test_window_key_is_never_an_lkey(rig, mw_type):
    mw, key = rig.bound(mw_type)
    before = rig.a.mr.read(64, 0)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [SGE(rig.buf + WIN, 64, key)])
    wr.set_wr_rdma(rig.a.mr.rkey, rig.a.mr.buf)
    assert run(rig.b, wr).status == e.IBV_WC_LOC_PROT_ERR
    assert rig.a.mr.read(64, 0) == before


@TYPES
@pytest.mark.parametrize("case", ["dealloc-mw", "dereg-mr"])
def test_dealloc_of_a_bound_window_or_dereg_of_its_mr_kills_its_key(rig, mw_type, case):
    mw, key = rig.bound(mw_type)
    rig.works(key)
    (mw if case == "dealloc-mw" else rig.mr).close()
    rig.refused("read" if case == "dereg-mr" else "write", key)
    mw.close()


def test_destroying_the_binding_qp_invalidates_its_type2_window(rig):
    c, d = rig.other_pair()
    mw, key = rig.bound(T2)
    rig.works(key)
    rig.b.qp.close()
    wc, key = rig.bind(mw, side=c)      # no longer bound: it binds again, on another QP
    assert wc.status == e.IBV_WC_SUCCESS
    rig.works(key, req=d)
    mw.close()


def test_alloc_of_a_type3_window_is_refused(rig):
    with pytest.raises(PyverbsRDMAError) as ex:
        MW(rig.pd, 3)
    assert ex.value.error_code == errno.EINVAL


@qp_ex.needs_flush
def test_flush_through_a_window_is_refused():
    with Rig(ex=True) as r:
        a = QPAttr(qp_state=e.IBV_QPS_RTS)   # the target QP takes FLUSH: only the window refuses
        a.qp_access_flags = RIGHTS | e.IBV_ACCESS_LOCAL_WRITE | qp_ex.ACCESS_FLUSH_GLOBAL
        r.b.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_ACCESS_FLAGS)
        mw, key = r.bound(T2)
        wc = wr_post(r.a, lambda qp: qp.wr_flush(key, r.buf + WIN, 64, qp_ex.FLUSH_GLOBAL,
                                                 qp_ex.FLUSH_RANGE))
        assert wc.status == e.IBV_WC_REM_ACCESS_ERR

