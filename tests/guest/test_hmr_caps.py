"""Everything hmr0 reports is true: each capability flag it advertises is exercised here (a
flag this file does not know fails the test, and so does a missing one it knows), each limit
of ibv_query_device is reached (a QP, SRQ, CQ and work request at the limit work, one past it
is refused), and query_qp returns what modify_qp set, at the limits too."""
import os
import threading
from contextlib import closing

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import e  # noqa: E402
from test_hmr_data import ALL, Pair, connect, pattern, poll, send_wr  # noqa: E402
import test_hmr_mw as mw  # noqa: E402  (modules, not names: pytest would collect those)
import test_hmr_qp_ex as qp_ex  # noqa: E402
import test_hmr_srq as srq  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr  # noqa: E402
from pyverbs.srq import SRQ, SrqAttr, SrqInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR  # noqa: E402

FLUSH_GLOBAL, ATOMIC_WRITE = 1 << 38, 1 << 40   # IB_DEVICE_FLUSH_GLOBAL, IB_DEVICE_ATOMIC_WRITE


def rnr_nak_gen():
    """A SEND to a QP with no receive posted is NAKed RNR and retried until one is."""
    with closing(Pair()) as pair:
        data = pattern(700, 5)
        pair.a.mr.write(data, len(data))
        timer = threading.Timer(0.3, lambda: pair.b.qp.post_recv(
            RecvWR(4, 1, [SGE(pair.b.mr.buf, 4096, pair.b.mr.lkey)])))
        timer.start()
        pair.a.qp.post_send(send_wr(3, e.IBV_WR_SEND, [SGE(pair.a.mr.buf, 700, pair.a.mr.lkey)]))
        (swc,) = poll(pair.a.scq)
        timer.join()
        (rwc,) = poll(pair.b.rcq)
        assert (swc.status, rwc.status, rwc.wr_id) == (e.IBV_WC_SUCCESS, e.IBV_WC_SUCCESS, 4)
        assert pair.b.mr.read(700, 0) == data


def sys_image_guid():
    with Context(name="hmr0") as ctx:
        attr = ctx.query_device()
        assert attr.sys_image_guid and attr.sys_image_guid == attr.node_guid


def xrc():
    """An XRC send QP's SEND lands in the XRC SRQ its WR names."""
    x = srq.Xrc()
    try:
        x.post(1, 0)
        x.src.write(pattern(64, 9), 64)
        wr = send_wr(1, e.IBV_WR_SEND, [SGE(x.src.buf, 64, x.src.lkey)])
        assert x.run(wr, x.srqn(1)).status == e.IBV_WC_SUCCESS
        (wc,) = poll(x.srq_cqs[1])
        assert wc.status == e.IBV_WC_SUCCESS and x.dst.read(64, 0) == pattern(64, 9)
    finally:
        x.close()


def srq_resize():
    rig = srq.SrqRig()
    try:
        srq.test_srq_resize_shrinks_and_grows_with_receives_pending(rig)
    finally:
        rig.close()


def mem_window(mw_type):
    """A window bound over an MW_BIND MR takes WRITE, READ and atomics through its key; type 1
    through any QP of its PD, type 2 (2B) only through the QP that bound it."""
    def run():
        with mw.Rig() as rig:
            mw.test_window_through_another_qp_of_the_pd(rig, mw_type)
    return run


def with_ex_pair(test, *args):
    def run():
        pair = qp_ex.ExPair()
        try:
            test(pair, *args)
        finally:
            pair.close()
    return run


CAPS = {
    e.IBV_DEVICE_RC_RNR_NAK_GEN: rnr_nak_gen,
    e.IBV_DEVICE_SYS_IMAGE_GUID: sys_image_guid,
    e.IBV_DEVICE_XRC: xrc,
    e.IBV_DEVICE_SRQ_RESIZE: srq_resize,
    e.IBV_DEVICE_MEM_WINDOW: mem_window(e.IBV_MW_TYPE_1),
    e.IBV_DEVICE_MEM_WINDOW_TYPE_2B: mem_window(e.IBV_MW_TYPE_2),
    FLUSH_GLOBAL: with_ex_pair(qp_ex.test_wr_flush, "range"),
    ATOMIC_WRITE: with_ex_pair(qp_ex.test_wr_atomic_write),
}


@pytest.mark.parametrize("flag", sorted(CAPS), ids=hex)
def test_advertised_capability_works(flag):
    with Context(name="hmr0") as ctx:
        flags = ctx.query_device_ex().device_cap_flags_ex
    if flag in (FLUSH_GLOBAL, ATOMIC_WRITE) and not qp_ex.KERNEL_HAS_FLUSH:
        assert not flags & flag, f"{flag:#x} advertised on a kernel without it ({flags:#x})"
        pytest.skip("no RDMA FLUSH / ATOMIC WRITE in the kernel's verbs before 6.2")
    assert flags & flag, f"{flag:#x} is exercised here but not advertised ({flags:#x})"
    CAPS[flag]()


def test_no_capability_is_advertised_that_is_not_exercised():
    with Context(name="hmr0") as ctx:
        flags = ctx.query_device_ex().device_cap_flags_ex
    unknown = [hex(1 << b) for b in range(64) if flags & (1 << b) and (1 << b) not in CAPS]
    assert not unknown, f"advertised and not exercised: {unknown}"


def test_type_2a_windows_are_not_advertised():
    """hmr0's type 2 memory windows are type 2B (the CAPS entry above):
    IBV_DEVICE_MEM_WINDOW_TYPE_2A stays unset. query_device reports the windows' limit."""
    with Context(name="hmr0") as ctx:
        attr = ctx.query_device()
    assert not attr.device_cap_flags & e.IBV_DEVICE_MEM_WINDOW_TYPE_2A
    assert attr.max_mw == 65536


def qp_at(pd, cq, attr, **over):
    cap = dict(max_send_wr=attr.max_qp_wr, max_recv_wr=attr.max_qp_wr,
               max_send_sge=attr.max_sge, max_recv_sge=attr.max_sge)
    cap.update(over)
    return QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, cap=QPCap(**cap),
                             sq_sig_all=1))


def test_every_limit_is_reached_and_one_past_it_refused():
    with Context(name="hmr0") as ctx:
        attr = ctx.query_device()
        pd = PD(ctx)
        cq = CQ(ctx, attr.max_cqe)
        a, b = qp_at(pd, cq, attr), qp_at(pd, cq, attr)
        for over in ({"max_send_wr": attr.max_qp_wr + 1}, {"max_recv_wr": attr.max_qp_wr + 1},
                     {"max_send_sge": attr.max_sge + 1}, {"max_recv_sge": attr.max_sge + 1}):
            with pytest.raises(PyverbsRDMAError):
                qp_at(pd, cq, attr, **over)
        SRQ(pd, SrqInitAttr(SrqAttr(max_wr=attr.max_srq_wr, max_sge=attr.max_srq_sge)))
        for over in ({"max_wr": attr.max_srq_wr + 1}, {"max_sge": attr.max_srq_sge + 1}):
            kw = {"max_wr": attr.max_srq_wr, "max_sge": attr.max_srq_sge, **over}
            with pytest.raises(PyverbsRDMAError):
                SRQ(pd, SrqInitAttr(SrqAttr(**kw)))
        # max_mr_size: an implicit ODP MR covers the whole address space
        assert attr.max_mr_size == (1 << 64) - 1
        MR(pd, 0, e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_ON_DEMAND, implicit=True)
        # rd_atomic at the limits (set in RTR and RTS), one past refused, query_qp says so
        connect(ctx, b, a.qp_num)
        connect(ctx, a, b.qp_num, dest_rd_atomic=attr.max_qp_rd_atom,
                rd_atomic=attr.max_qp_init_rd_atom)
        got, _ = a.query(e.IBV_QP_MAX_QP_RD_ATOMIC | e.IBV_QP_MAX_DEST_RD_ATOMIC | e.IBV_QP_CAP)
        assert got.max_rd_atomic == attr.max_qp_init_rd_atom
        assert got.max_dest_rd_atomic == attr.max_qp_rd_atom
        assert got.cap.max_send_wr >= attr.max_qp_wr and got.cap.max_send_sge >= attr.max_sge
        for dest, init in ((attr.max_qp_rd_atom + 1, 1), (1, attr.max_qp_init_rd_atom + 1)):
            c = qp_at(pd, cq, attr, max_send_wr=1, max_recv_wr=1)
            with pytest.raises(PyverbsRDMAError):
                connect(ctx, c, b.qp_num, dest_rd_atomic=dest, rd_atomic=init)
        # a SEND gathered from max_sge pieces scattered into a receive of max_sge pieces
        mr = MR(pd, 1 << 16, ALL)
        n, piece = attr.max_sge, 37
        data = pattern(n * piece, 3)
        mr.write(data, len(data))
        b.post_recv(RecvWR(1, n, [SGE(mr.buf + 8192 + 512 * i, piece, mr.lkey) for i in range(n)]))
        a.post_send(send_wr(2, e.IBV_WR_SEND, [SGE(mr.buf + piece * (n - 1 - i), piece, mr.lkey)
                                              for i in range(n)]))
        wcs = poll(cq, 2)
        assert all(w.status == e.IBV_WC_SUCCESS for w in wcs), [w.status for w in wcs]
        got = b"".join(mr.read(piece, 8192 + 512 * i) for i in range(n))
        assert got == b"".join(data[piece * (n - 1 - i):piece * (n - i)] for i in range(n))
