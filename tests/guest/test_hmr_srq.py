"""Shared receive queues and XRC on hmr0: one SRQ serving several RC (and UD) QPs, the SRQ
limit and last-WQE events, a corrupted SRQ index, and XRC (XRC domains, XRC SRQs, XRC send and
receive QPs) with SEND, RDMA WRITE/READ and atomics, on pinless and ODP MRs. Data is checked
byte for byte; every completion's QP number says which QP a message really came in on."""
import errno
import os
import threading

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import e  # noqa: E402
from test_hmr_data import ALL, connect, pattern, poll, send_wr  # noqa: E402
from test_hmr_hostile import RECV_WQE, Ring, open_context, uverbs_maps  # noqa: E402
from test_hmr_odp import ODP, counters, delta, dontneed  # noqa: E402
from pyverbs.addr import AHAttr, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr, QPInitAttrEx  # noqa: E402
from pyverbs.srq import SRQ, SrqAttr, SrqInitAttr, SrqInitAttrEx  # noqa: E402
from pyverbs.wr import SGE, RecvWR  # noqa: E402
from pyverbs.xrcd import XRCD, XRCDInitAttr  # noqa: E402

MSG = 8192
SRQ_WR = 64


def assert_refaulted(before, n):
    """Since @before the mirrors were invalidated and faulted again at least @n times."""
    d = delta(before, counters())
    assert d["page_faults"] >= n and d["page_invalidations"] >= n, d


class SrqRig:
    """Requesters a[i] -> responders b[i], every b on one SRQ whose receives land in `buf`
    (one MSG-sized slot per receive WQE, wr_id = slot)."""

    def __init__(self, n=2, srq_wr=SRQ_WR, access=ALL, qp_type=e.IBV_QPT_RC):
        self.ctx, self.events = open_context()
        try:
            self.pd = PD(self.ctx)
            self.srq = SRQ(self.pd, SrqInitAttr(SrqAttr(max_wr=srq_wr, max_sge=2)))
            self.scq, self.rcq = CQ(self.ctx, 256), CQ(self.ctx, 256)
            self.buf = MR(self.pd, srq_wr * MSG, access)
            self.src = MR(self.pd, n * MSG, access)
            self.a, self.b = [], []
            for _ in range(n):
                cap = QPCap(max_send_wr=64, max_recv_wr=0, max_send_sge=2, max_recv_sge=2)
                self.a.append(QP(self.pd, QPInitAttr(qp_type=qp_type, scq=self.scq,
                                                     rcq=self.scq, cap=cap, sq_sig_all=1)))
                self.b.append(QP(self.pd, QPInitAttr(qp_type=qp_type, scq=self.scq,
                                                     rcq=self.rcq, srq=self.srq, cap=cap)))
            if qp_type == e.IBV_QPT_RC:
                for a, b in zip(self.a, self.b):
                    connect(self.ctx, a, b.qp_num)
                    connect(self.ctx, b, a.qp_num)
        except BaseException:
            self.ctx.close()
            raise

    def post(self, slots):
        for s in slots:
            self.srq.post_recv(RecvWR(s, 1, [SGE(self.buf.buf + s * MSG, MSG, self.buf.lkey)]))

    def send(self, i, data, wr_id=0):
        self.src.write(data, len(data), i * MSG)
        self.a[i].post_send(send_wr(wr_id, e.IBV_WR_SEND,
                                    [SGE(self.src.buf + i * MSG, len(data), self.src.lkey)]))

    def close(self):
        self.ctx.close()


@pytest.fixture
def rig():
    r = SrqRig()
    yield r
    r.close()


def test_one_srq_serves_several_qps_in_posting_order(rig):
    """Messages on two QPs take the SRQ's receive WQEs in the order they were posted; each
    completion names the QP the message came in on; the bytes land in that WQE's buffer."""
    rig.post(range(6))
    sent = []
    for k in range(6):
        i = k % 2
        data = pattern(MSG - 13 * k, k)
        rig.send(i, data, wr_id=k)
        (wc,) = poll(rig.scq)
        assert wc.status == e.IBV_WC_SUCCESS and wc.wr_id == k
        sent.append((i, data))
    wcs = poll(rig.rcq, 6)
    for k, wc in enumerate(wcs):
        i, data = sent[k]
        assert wc.status == e.IBV_WC_SUCCESS, wc
        assert wc.wr_id == k and wc.qp_num == rig.b[i].qp_num and wc.byte_len == len(data)
        assert wc.opcode == e.IBV_WC_RECV
        assert rig.buf.read(len(data), k * MSG) == data


def test_post_recv_on_a_qp_with_an_srq_is_einval(rig):
    with pytest.raises(PyverbsRDMAError) as err:
        rig.b[0].post_recv(RecvWR(1, 1, [SGE(rig.buf.buf, MSG, rig.buf.lkey)]))
    assert err.value.error_code == errno.EINVAL


def test_empty_srq_is_rnr_until_a_receive_is_posted(rig):
    """No receive on the SRQ: the requester retries (rnr_retry 7 = forever) and the message
    is delivered once a receive is posted, on whichever QP it came."""
    data = pattern(1000, 5)
    rig.send(1, data, wr_id=9)
    assert rig.scq.poll(1)[0] == 0
    rig.post([3])
    (wc,) = poll(rig.scq)
    assert wc.status == e.IBV_WC_SUCCESS
    (wc,) = poll(rig.rcq)
    assert wc.wr_id == 3 and wc.qp_num == rig.b[1].qp_num
    assert rig.buf.read(len(data), 3 * MSG) == data


def test_srq_limit_event_fires_once_below_the_limit(rig):
    rig.post(range(10))
    rig.srq.modify(SrqAttr(srq_limit=7), e.IBV_SRQ_LIMIT)
    assert rig.srq.query().srq_limit == 7
    for k in range(3):  # 7 left: not below the limit
        rig.send(0, pattern(64, k))
    poll(rig.scq, 3)
    poll(rig.rcq, 3)
    rig.events.none()
    rig.send(1, pattern(64, 3))  # 6 left
    poll(rig.scq)
    poll(rig.rcq)
    assert rig.events.next() == e.IBV_EVENT_SRQ_LIMIT_REACHED
    assert rig.srq.query().srq_limit == 0  # the event disarmed it
    rig.send(1, pattern(64, 4))
    poll(rig.scq)
    poll(rig.rcq)
    rig.events.none()


def test_srq_query_and_the_limits_of_modify(rig):
    attr = rig.srq.query()
    assert attr.max_wr >= SRQ_WR and attr.max_sge >= 2 and attr.srq_limit == 0
    with pytest.raises(PyverbsRDMAError):
        rig.srq.modify(SrqAttr(srq_limit=attr.max_wr + 1), e.IBV_SRQ_LIMIT)
    with pytest.raises(PyverbsRDMAError):  # no IBV_DEVICE_SRQ_RESIZE
        rig.srq.modify(SrqAttr(max_wr=attr.max_wr * 2), e.IBV_SRQ_MAX_WR)
    assert not rig.ctx.query_device().device_cap_flags & e.IBV_DEVICE_SRQ_RESIZE
    pd = PD(rig.ctx)
    with pytest.raises(PyverbsRDMAError):
        SRQ(pd, SrqInitAttr(SrqAttr(max_wr=1 << 20, max_sge=1)))
    with pytest.raises(PyverbsRDMAError):
        SRQ(pd, SrqInitAttr(SrqAttr(max_wr=4, max_sge=17)))


def test_error_on_a_qp_leaves_the_srq_to_the_others_and_says_last_wqe(rig):
    """A QP on the SRQ moved to ERROR raises IB_EVENT_QP_LAST_WQE_REACHED and flushes none of
    the SRQ's receives: the other QP still receives into them."""
    rig.post(range(2))
    rig.b[0].modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    assert rig.events.next() == e.IBV_EVENT_QP_LAST_WQE_REACHED
    assert rig.rcq.poll(1)[0] == 0  # nothing flushed
    data = pattern(500, 7)
    rig.send(1, data)
    poll(rig.scq)
    (wc,) = poll(rig.rcq)
    assert wc.status == e.IBV_WC_SUCCESS and wc.wr_id == 0 and wc.qp_num == rig.b[1].qp_num
    assert rig.buf.read(len(data), 0) == data


def test_receive_buffer_of_the_srq_too_short_is_an_error_for_that_qp_only(rig):
    rig.srq.post_recv(RecvWR(1, 1, [SGE(rig.buf.buf, 16, rig.buf.lkey)]))
    rig.post([2])
    rig.send(0, pattern(100, 1))
    (wc,) = poll(rig.scq)
    assert wc.status == e.IBV_WC_REM_INV_REQ_ERR
    (wc,) = poll(rig.rcq)
    assert wc.status == e.IBV_WC_LOC_LEN_ERR and wc.wr_id == 1 and wc.qp_num == rig.b[0].qp_num
    data = pattern(100, 2)
    rig.send(1, data)
    assert poll(rig.scq)[0].status == e.IBV_WC_SUCCESS
    (wc,) = poll(rig.rcq)
    assert wc.status == e.IBV_WC_SUCCESS and wc.wr_id == 2
    assert rig.buf.read(len(data), 2 * MSG) == data


def test_corrupted_srq_producer_index_raises_srq_err_and_is_not_believed():
    """Userspace scribbles a producer index claiming more WQEs than the ring holds: the kernel
    raises IB_EVENT_SRQ_ERR, takes nothing from the ring, and the device keeps working."""
    before = uverbs_maps()
    r = SrqRig(n=1)
    try:
        srq_map = sorted(uverbs_maps() - before)[0]  # the SRQ is created first
        ring = Ring(*srq_map[1:], RECV_WQE, num=r.srq.query().max_wr)
        r.post([0])
        assert ring.prod == 1
        ring.prod = ring.cons + ring.num + 5
        r.send(0, pattern(64, 1))
        (wc,) = poll(r.scq)
        assert wc.status == e.IBV_WC_REM_OP_ERR
        assert r.events.next() == e.IBV_EVENT_SRQ_ERR
        assert r.rcq.poll(1)[0] == 0
    finally:
        r.close()
    ok = SrqRig(n=1)
    try:
        ok.post([0])
        data = pattern(300, 3)
        ok.send(0, data)
        assert poll(ok.scq)[0].status == e.IBV_WC_SUCCESS
        assert poll(ok.rcq)[0].status == e.IBV_WC_SUCCESS
        assert ok.buf.read(len(data), 0) == data
    finally:
        ok.close()


def test_srq_receives_into_odp_buffers_after_madv_dontneed():
    r = SrqRig(access=ODP)
    try:
        before = counters()
        for k in range(4):
            dontneed(r.buf.buf, SRQ_WR * MSG)
            dontneed(r.src.buf, 2 * MSG)
            r.post([k])
            data = pattern(MSG, 40 + k)
            r.send(k % 2, data)
            assert poll(r.scq)[0].status == e.IBV_WC_SUCCESS
            (wc,) = poll(r.rcq)
            assert wc.status == e.IBV_WC_SUCCESS and wc.wr_id == k
            assert r.buf.read(MSG, k * MSG) == data
        assert_refaulted(before, 8)
    finally:
        r.close()


def test_two_qps_racing_for_the_srq_lose_and_duplicate_nothing(rig):
    """Two threads post on two QPs at once, so two responders take from the SRQ at the same
    time: every receive WQE is used exactly once and every message arrives whole."""
    n, size = 40, 256
    rig.post(range(n))
    src = MR(rig.pd, n * size, ALL)
    datas = [pattern(size, 1000 + k) for k in range(n)]
    for k, data in enumerate(datas):
        src.write(data, size, k * size)

    def blast(i):
        for k in range(i, n, 2):
            rig.a[i].post_send(send_wr(k, e.IBV_WR_SEND,
                                       [SGE(src.buf + k * size, size, src.lkey)]))

    threads = [threading.Thread(target=blast, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(wc.status == e.IBV_WC_SUCCESS for wc in poll(rig.scq, n))
    wcs = poll(rig.rcq, n)
    assert sorted(wc.wr_id for wc in wcs) == list(range(n))
    got = sorted(rig.buf.read(size, wc.wr_id * MSG) for wc in wcs)
    assert got == sorted(datas)
    assert {wc.qp_num for wc in wcs} == {rig.b[0].qp_num, rig.b[1].qp_num}


# ---------------------------------------------------------------------------------------------
# XRC

def xrc_connect(ctx, qp, dest_qpn, target):
    """INIT -> RTR (-> RTS for the send side) with the attributes each XRC QP type takes."""
    a = QPAttr(qp_state=e.IBV_QPS_INIT)
    a.pkey_index, a.port_num, a.qp_access_flags = 0, 1, ALL if target else 0
    qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT | e.IBV_QP_ACCESS_FLAGS)
    a = QPAttr(qp_state=e.IBV_QPS_RTR)
    a.ah_attr = AHAttr(gr=GlobalRoute(dgid=ctx.query_gid(1, 1), sgid_index=1), is_global=1,
                       port_num=1)
    a.path_mtu, a.dest_qp_num, a.rq_psn = e.IBV_MTU_1024, dest_qpn, 0
    mask = e.IBV_QP_STATE | e.IBV_QP_AV | e.IBV_QP_PATH_MTU | e.IBV_QP_DEST_QPN | e.IBV_QP_RQ_PSN
    if target:
        a.max_dest_rd_atomic, a.min_rnr_timer = 4, 1
        qp.modify(a, mask | e.IBV_QP_MAX_DEST_RD_ATOMIC | e.IBV_QP_MIN_RNR_TIMER)
        return
    qp.modify(a, mask)
    a = QPAttr(qp_state=e.IBV_QPS_RTS)
    a.timeout, a.retry_cnt, a.rnr_retry, a.sq_psn, a.max_rd_atomic = 14, 7, 7, 0, 4
    qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_TIMEOUT | e.IBV_QP_RETRY_CNT | e.IBV_QP_RNR_RETRY |
              e.IBV_QP_SQ_PSN | e.IBV_QP_MAX_QP_RD_ATOMIC)


def open_xrcd(ctx):
    return XRCD(ctx, XRCDInitAttr(e.IBV_XRCD_INIT_ATTR_FD | e.IBV_XRCD_INIT_ATTR_OFLAGS,
                                  os.O_CREAT, -1))


def xrc_srq(ctx, pd, xrcd, cq, max_wr=SRQ_WR):
    attr = SrqInitAttrEx(max_wr=max_wr, max_sge=2)
    attr.srq_type, attr.pd, attr.xrcd, attr.cq = e.IBV_SRQT_XRC, pd, xrcd, cq
    attr.comp_mask = (e.IBV_SRQ_INIT_ATTR_TYPE | e.IBV_SRQ_INIT_ATTR_PD |
                      e.IBV_SRQ_INIT_ATTR_CQ | e.IBV_SRQ_INIT_ATTR_XRCD)
    return SRQ(ctx, attr)


class Xrc:
    """An XRC send QP `ini` connected to an XRC receive QP `tgt` of XRC domain `xrcd`, which
    has two XRC SRQs (`srqs`), each completing to its own CQ (`srq_cqs`)."""

    def __init__(self, access=ALL):
        self.ctx, self.events = open_context()
        try:
            self.pd = PD(self.ctx)
            self.xrcd = open_xrcd(self.ctx)
            self.scq = CQ(self.ctx, 256)
            self.srq_cqs = [CQ(self.ctx, 256) for _ in range(2)]
            self.srqs = [xrc_srq(self.ctx, self.pd, self.xrcd, cq) for cq in self.srq_cqs]
            self.tgt = QP(self.ctx, QPInitAttrEx(qp_type=e.IBV_QPT_XRC_RECV,
                                                  comp_mask=e.IBV_QP_INIT_ATTR_XRCD,
                                                  xrcd=self.xrcd))
            cap = QPCap(max_send_wr=64, max_recv_wr=0, max_send_sge=2, max_recv_sge=0)
            self.ini = QP(self.ctx, QPInitAttrEx(qp_type=e.IBV_QPT_XRC_SEND, sq_sig_all=1,
                                                  comp_mask=e.IBV_QP_INIT_ATTR_PD, pd=self.pd,
                                                  scq=self.scq, cap=cap))
            xrc_connect(self.ctx, self.tgt, self.ini.qp_num, True)
            xrc_connect(self.ctx, self.ini, self.tgt.qp_num, False)
            self.src = MR(self.pd, 4 * MSG, access)
            self.dst = MR(self.pd, 4 * MSG, access)
        except BaseException:
            self.ctx.close()
            raise

    def srqn(self, i):
        return self.srqs[i].get_srq_num()

    def post(self, i, slot):
        self.srqs[i].post_recv(RecvWR(slot, 1, [SGE(self.dst.buf + slot * MSG, MSG,
                                                    self.dst.lkey)]))

    def run(self, wr, srqn):
        wr.set_qp_type_xrc(srqn)
        self.ini.post_send(wr)
        (wc,) = poll(self.scq)
        return wc

    def close(self):
        self.ctx.close()


@pytest.fixture
def xrc():
    x = Xrc()
    yield x
    x.close()


def test_xrc_is_advertised():
    ctx = Context(name="hmr0")
    try:
        attr = ctx.query_device_ex()
        assert attr.orig_attr.device_cap_flags & e.IBV_DEVICE_XRC
        want = e.IBV_ODP_SUPPORT_SEND | e.IBV_ODP_SUPPORT_SRQ_RECV
        assert attr.odp_caps.xrc_odp_caps & want == want
        assert attr.odp_caps.rc_odp_caps & e.IBV_ODP_SUPPORT_SRQ_RECV
    finally:
        ctx.close()


def test_xrc_send_lands_in_the_srq_it_names(xrc):
    """Each SEND goes to the XRC SRQ its WR names, completes on that SRQ's CQ, with the
    receive QP's number."""
    for i in range(2):
        xrc.post(i, i)
    for i in (1, 0):
        data = pattern(MSG - 100 * i, 20 + i)
        xrc.src.write(data, len(data), 0)
        wc = xrc.run(send_wr(i, e.IBV_WR_SEND, [SGE(xrc.src.buf, len(data), xrc.src.lkey)]),
                     xrc.srqn(i))
        assert wc.status == e.IBV_WC_SUCCESS
        (rwc,) = poll(xrc.srq_cqs[i])
        assert rwc.status == e.IBV_WC_SUCCESS and rwc.wr_id == i and rwc.byte_len == len(data)
        assert rwc.qp_num == xrc.tgt.qp_num
        assert xrc.dst.read(len(data), i * MSG) == data
        assert xrc.srq_cqs[1 - i].poll(1)[0] == 0


def test_xrc_rdma_write_read_and_atomics(xrc):
    data = pattern(3 * MSG, 3)
    xrc.src.write(data, len(data), 0)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [SGE(xrc.src.buf, len(data), xrc.src.lkey)])
    wr.set_wr_rdma(xrc.dst.rkey, xrc.dst.buf + 7)
    assert xrc.run(wr, xrc.srqn(0)).status == e.IBV_WC_SUCCESS
    assert xrc.dst.read(len(data), 7) == data
    wr = send_wr(2, e.IBV_WR_RDMA_READ, [SGE(xrc.src.buf + MSG, MSG, xrc.src.lkey)])
    wr.set_wr_rdma(xrc.dst.rkey, xrc.dst.buf + 2 * MSG)
    assert xrc.run(wr, xrc.srqn(1)).status == e.IBV_WC_SUCCESS
    assert xrc.src.read(MSG, MSG) == xrc.dst.read(MSG, 2 * MSG)
    xrc.dst.write((41).to_bytes(8, "little"), 8, 3 * MSG)
    wr = send_wr(3, e.IBV_WR_ATOMIC_FETCH_AND_ADD, [SGE(xrc.src.buf, 8, xrc.src.lkey)])
    wr.set_wr_atomic(xrc.dst.rkey, xrc.dst.buf + 3 * MSG, 1, 0)
    assert xrc.run(wr, xrc.srqn(0)).status == e.IBV_WC_SUCCESS
    assert xrc.src.read(8, 0) == (41).to_bytes(8, "little")
    assert xrc.dst.read(8, 3 * MSG) == (42).to_bytes(8, "little")


def test_xrc_unknown_srq_number_is_invalid_request(xrc):
    wc = xrc.run(send_wr(1, e.IBV_WR_SEND, [SGE(xrc.src.buf, 64, xrc.src.lkey)]),
                 (max(xrc.srqn(0), xrc.srqn(1)) + 1000) & 0xffffff)
    assert wc.status == e.IBV_WC_REM_INV_REQ_ERR


def test_xrc_srq_of_another_xrc_domain_is_refused(xrc):
    other_xrcd = open_xrcd(xrc.ctx)
    cq = CQ(xrc.ctx, 16)
    foreign = xrc_srq(xrc.ctx, xrc.pd, other_xrcd, cq)
    foreign.post_recv(RecvWR(5, 1, [SGE(xrc.dst.buf, MSG, xrc.dst.lkey)]))
    wc = xrc.run(send_wr(1, e.IBV_WR_SEND, [SGE(xrc.src.buf, 64, xrc.src.lkey)]),
                 foreign.get_srq_num())
    assert wc.status == e.IBV_WC_REM_INV_REQ_ERR
    assert cq.poll(1)[0] == 0


def test_xrc_rkey_is_checked_against_the_srq_pd(xrc):
    """An XRC receive QP has no PD: an R_Key of another PD than the named SRQ's is refused."""
    other = MR(PD(xrc.ctx), MSG, ALL)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [SGE(xrc.src.buf, 64, xrc.src.lkey)])
    wr.set_wr_rdma(other.rkey, other.buf)
    assert xrc.run(wr, xrc.srqn(0)).status == e.IBV_WC_REM_ACCESS_ERR


def test_posting_to_an_xrc_receive_qp_is_einval(xrc):
    with pytest.raises(PyverbsRDMAError) as err:
        xrc.tgt.post_recv(RecvWR(1, 1, [SGE(xrc.dst.buf, MSG, xrc.dst.lkey)]))
    assert err.value.error_code == errno.EINVAL
    with pytest.raises(PyverbsRDMAError) as err:
        xrc.ini.post_recv(RecvWR(1, 1, [SGE(xrc.dst.buf, MSG, xrc.dst.lkey)]))
    assert err.value.error_code == errno.EINVAL


def test_xrc_on_odp_mrs_refaults_after_madv_dontneed():
    x = Xrc(access=ODP)
    try:
        before = counters()
        for k in range(4):
            dontneed(x.src.buf, 4 * MSG)
            dontneed(x.dst.buf, 4 * MSG)
            x.post(k % 2, k)
            data = pattern(MSG, 60 + k)
            x.src.write(data, MSG, 0)
            assert x.run(send_wr(k, e.IBV_WR_SEND, [SGE(x.src.buf, MSG, x.src.lkey)]),
                         x.srqn(k % 2)).status == e.IBV_WC_SUCCESS
            (rwc,) = poll(x.srq_cqs[k % 2])
            assert rwc.status == e.IBV_WC_SUCCESS and rwc.wr_id == k
            assert x.dst.read(MSG, k * MSG) == data
        assert_refaulted(before, 8)
    finally:
        x.close()
