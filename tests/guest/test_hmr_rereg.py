"""ibv_rereg_mr on hmr0: a change of access rights or PD in place (the keys stay; the next work
request follows the new rights), a change of translation as a new MR (new keys; the old ones
refused; the new range written, the old one left alone), over pinless and ODP MRs, and the
errors: rights the memory does not allow, an implicit MR made explicit, a range that is not
mapped. Every check is on data that really arrived (or did not) and on the statuses the
requester and the responder really got."""
import ctypes
import errno
import mmap
import os
from contextlib import closing

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import anon_map as anon, e, unmap  # noqa: E402
from test_hmr_data import ALL, Pair, connect, pattern, poll, post_recv, send_wr, sge  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QPAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR  # noqa: E402

LOCAL_RW = e.IBV_ACCESS_LOCAL_WRITE
CHANGE_ACCESS, CHANGE_PD = e.IBV_REREG_MR_CHANGE_ACCESS, e.IBV_REREG_MR_CHANGE_PD
CHANGE_TRANS = e.IBV_REREG_MR_CHANGE_TRANSLATION


def restate(pair):
    """Both QPs back from ERROR: reset and connected again."""
    for qp in (pair.a.qp, pair.b.qp):
        qp.modify(QPAttr(qp_state=e.IBV_QPS_RESET), e.IBV_QP_STATE)
    connect(pair.ctx, pair.a.qp, pair.b.qp.qp_num)
    connect(pair.ctx, pair.b.qp, pair.a.qp.qp_num)


def write(pair, addr, rkey, data, wr_id=1):
    """RDMA WRITE @data from a's MR to (addr, rkey): the requester's status."""
    pair.a.mr.write(data, len(data))
    wr = send_wr(wr_id, e.IBV_WR_RDMA_WRITE, [sge(pair.a.mr, 0, len(data))])
    wr.set_wr_rdma(rkey, addr)
    pair.a.qp.post_send(wr)
    (wc,) = poll(pair.a.scq)
    return wc.status


def atomic_add(pair, addr, rkey):
    wr = send_wr(2, e.IBV_WR_ATOMIC_FETCH_AND_ADD, [sge(pair.a.mr, 0, 8)])
    wr.set_wr_atomic(rkey, addr, 1, 0)
    pair.a.qp.post_send(wr)
    (wc,) = poll(pair.a.scq)
    return wc.status


@pytest.mark.parametrize("odp", [0, e.IBV_ACCESS_ON_DEMAND], ids=["pinless", "odp"])
def test_rereg_access_in_place_keeps_the_keys_and_the_rights_follow(odp):
    with closing(Pair()) as pair:
        mr = MR(pair.pd, 1 << 16, ALL | odp)
        lkey, rkey = mr.lkey, mr.rkey
        assert write(pair, mr.buf, rkey, pattern(100, 1)) == e.IBV_WC_SUCCESS
        mr.rereg(CHANGE_ACCESS, None, 0, 0, LOCAL_RW | e.IBV_ACCESS_REMOTE_READ | odp)
        assert (mr.lkey, mr.rkey) == (lkey, rkey)
        assert write(pair, mr.buf, rkey, pattern(100, 2)) == e.IBV_WC_REM_ACCESS_ERR
        assert mr.read(100, 0) == pattern(100, 1), "a refused WRITE changed memory"
        restate(pair)
        assert atomic_add(pair, mr.buf, rkey) == e.IBV_WC_REM_ACCESS_ERR
        restate(pair)
        mr.rereg(CHANGE_ACCESS, None, 0, 0, ALL | odp)
        assert (mr.lkey, mr.rkey) == (lkey, rkey)
        assert write(pair, mr.buf + 8, rkey, pattern(100, 3)) == e.IBV_WC_SUCCESS
        assert mr.read(100, 8) == pattern(100, 3)
        assert atomic_add(pair, mr.buf + 1024, rkey) == e.IBV_WC_SUCCESS
        assert mr.read(8, 1024) == (1).to_bytes(8, "little")


def test_rereg_pd_in_place_a_qp_of_the_old_pd_is_refused_until_it_comes_back():
    with closing(Pair()) as pair:
        mr = pair.b.mr
        lkey, rkey = mr.lkey, mr.rkey
        other = PD(pair.ctx)
        mr.rereg(CHANGE_PD, other, 0, 0, 0)
        assert (mr.lkey, mr.rkey) == (lkey, rkey)
        assert write(pair, mr.buf, rkey, pattern(64, 1)) == e.IBV_WC_REM_ACCESS_ERR
        restate(pair)
        post_recv(pair.b, 5)                     # a receive into the MR of the other PD
        pair.a.mr.write(pattern(64, 2), 64)
        pair.a.qp.post_send(send_wr(6, e.IBV_WR_SEND, [sge(pair.a.mr, 0, 64)]))
        (swc,) = poll(pair.a.scq)
        (rwc,) = poll(pair.b.rcq)
        assert rwc.wr_id == 5 and rwc.status == e.IBV_WC_LOC_PROT_ERR
        assert swc.status == e.IBV_WC_REM_OP_ERR
        assert mr.read(64, 0) != pattern(64, 2)
        restate(pair)
        mr.rereg(CHANGE_PD, pair.pd, 0, 0, 0)
        assert write(pair, mr.buf, rkey, pattern(64, 3)) == e.IBV_WC_SUCCESS
        assert mr.read(64, 0) == pattern(64, 3)
        mr.rereg(CHANGE_PD, other, 0, 0, 0)      # the MR goes before the PD it is on now


@pytest.mark.parametrize("odp", [0, e.IBV_ACCESS_ON_DEMAND], ids=["pinless", "odp"])
def test_rereg_translation_is_a_new_mr_over_the_new_range(odp):
    length = 3 * 4096 + 100
    with closing(Pair()) as pair:
        old_buf, new = anon(1 << 16), anon(4 * 4096)
        ctypes.memset(old_buf, 0x11, 1 << 16)
        mr = MR(pair.pd, 1 << 16, ALL | odp, address=old_buf)
        old_keys = (mr.lkey, mr.rkey)
        try:
            mr.rereg(CHANGE_TRANS, None, new + 100, length, 0)
            assert mr.buf == new + 100 and (mr.lkey, mr.rkey) != old_keys
            assert not {mr.lkey, mr.rkey} & set(old_keys)
            assert write(pair, old_buf, old_keys[1], pattern(64, 1)) == e.IBV_WC_REM_ACCESS_ERR
            restate(pair)
            data = pattern(4096, 7)
            assert write(pair, new + 100 + length - 4096, mr.rkey, data) == e.IBV_WC_SUCCESS
            assert ctypes.string_at(new + 100 + length - 4096, 4096) == data
            assert ctypes.string_at(old_buf, 1 << 16) == b"\x11" * (1 << 16)
            # one byte past the new range: refused
            assert write(pair, new + 100 + length - 63, mr.rkey, pattern(64, 2)) == \
                e.IBV_WC_REM_ACCESS_ERR
            restate(pair)
            # the new lkey serves as a local buffer too: SEND from it into b
            post_recv(pair.b, 9)
            pair.a.qp.post_send(send_wr(10, e.IBV_WR_SEND, [SGE(new + 100, 4096, mr.lkey)]))
            assert poll(pair.a.scq)[0].status == e.IBV_WC_SUCCESS
            assert poll(pair.b.rcq)[0].status == e.IBV_WC_SUCCESS
            assert pair.b.mr.read(4096, 0) == ctypes.string_at(new + 100, 4096)
            mr.close()
        finally:
            unmap(new, 4 * 4096)
            unmap(old_buf, 1 << 16)


def expect_errno(code, fn):
    with pytest.raises(PyverbsRDMAError) as ei:
        fn()
    assert ei.value.error_code == code, ei.value


def test_rereg_errors_change_nothing():
    with closing(Pair()) as pair:
        ro = anon(4096, mmap.PROT_READ)
        hole = anon(2 * 4096)
        unmap(hole + 4096, 4096)
        try:
            mr = MR(pair.pd, 4096, e.IBV_ACCESS_REMOTE_READ, address=ro)
            keys = (mr.lkey, mr.rkey)
            # write rights over read-only memory: EFAULT, as at registration
            expect_errno(errno.EFAULT, lambda: mr.rereg(CHANGE_ACCESS, None, 0, 0, ALL))
            assert write(pair, ro, mr.rkey, pattern(8, 1)) == e.IBV_WC_REM_ACCESS_ERR
            restate(pair)
            # a translation onto a hole: EFAULT, the old MR and its keys stay
            expect_errno(errno.EFAULT,
                         lambda: mr.rereg(CHANGE_TRANS, None, hole, 2 * 4096, 0))
            assert (mr.lkey, mr.rkey) == keys
            rd = send_wr(3, e.IBV_WR_RDMA_READ, [sge(pair.a.mr, 0, 64)])
            rd.set_wr_rdma(mr.rkey, ro)
            pair.a.qp.post_send(rd)
            assert poll(pair.a.scq)[0].status == e.IBV_WC_SUCCESS
            mr.close()
            # an implicit ODP MR stays on demand
            imr = MR(pair.pd, 0, LOCAL_RW | e.IBV_ACCESS_ON_DEMAND, implicit=True)
            expect_errno(errno.EINVAL, lambda: imr.rereg(CHANGE_ACCESS, None, 0, 0, LOCAL_RW))
            imr.close()
        finally:
            unmap(ro, 4096)
            unmap(hole, 4096)


def test_a_qp_reset_right_after_its_responder_failed_stays_reset():
    """The responder's error reaches the QP through a work item; a QP its owner reset (and
    moved on to INIT) before that work ran must not be thrown back into ERROR (rdma-core's
    rereg tests restate their QPs right after such an error: RTR then failed with EINVAL)."""
    with closing(Pair()) as pair:
        for k in range(30):
            pair.b.qp.post_recv(RecvWR(k, 1, [SGE(pair.b.mr.buf, 64, pair.b.mr.lkey ^ 0x80)]))
            pair.a.qp.post_send(send_wr(k, e.IBV_WR_SEND, [sge(pair.a.mr, 0, 64)]))
            assert poll(pair.a.scq)[0].status == e.IBV_WC_REM_OP_ERR
            restate(pair)                    # at once: the work item may not have run yet
            post_recv(pair.b, 100 + k)
            pair.a.mr.write(pattern(64, k), 64)
            pair.a.qp.post_send(send_wr(k, e.IBV_WR_SEND, [sge(pair.a.mr, 0, 64)]))
            assert poll(pair.a.scq)[0].status == e.IBV_WC_SUCCESS, k
            wcs = poll(pair.b.rcq, 1)
            assert (wcs[0].wr_id, wcs[0].status) == (100 + k, e.IBV_WC_SUCCESS), k
            assert pair.b.mr.read(64, 0) == pattern(64, k)
