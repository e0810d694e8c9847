"""Shared receive queues and XRC on hmr0: one SRQ serving several RC (and UD) QPs, the SRQ
limit and last-WQE events, a corrupted SRQ index, and XRC (XRC domains, XRC SRQs, XRC send and
receive QPs) with SEND, RDMA WRITE/READ and atomics, on pinless and ODP MRs. Data is checked
byte for byte; every completion's QP number says which QP a message really came in on."""
import errno
import os
import struct
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


def assert_refaulted(before, faults, invalidations):
    """Since @before the mirror was invalidated (where it held pages) and faulted again at
    least that many times."""
    d = delta(before, counters())
    assert d["page_faults"] >= faults and d["page_invalidations"] >= invalidations, d


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
    assert rig.ctx.query_device().device_cap_flags & e.IBV_DEVICE_SRQ_RESIZE
    pd = PD(rig.ctx)
    with pytest.raises(PyverbsRDMAError):
        SRQ(pd, SrqInitAttr(SrqAttr(max_wr=1 << 20, max_sge=1)))
    with pytest.raises(PyverbsRDMAError):
        SRQ(pd, SrqInitAttr(SrqAttr(max_wr=4, max_sge=17)))


# ---------------------------------------------------------------------------------------------
# ibv_modify_srq(IBV_SRQ_MAX_WR): a new ring; the receives not yet taken move with it, none
# lost or taken twice, and the producer index carries over.


def resize(srq, max_wr, limit=None):
    mask = e.IBV_SRQ_MAX_WR | (e.IBV_SRQ_LIMIT if limit is not None else 0)
    srq.modify(SrqAttr(max_wr=max_wr, srq_limit=limit or 0), mask)
    return srq.query().max_wr


def deliver(rig, slots, tag):
    """One 64-byte SEND a[0] -> the SRQ per slot posted before: each lands in its slot, in
    posting order, once."""
    sent = []
    for k in range(len(slots)):
        sent.append(pattern(64, tag + k))
        rig.send(0, sent[-1], wr_id=k)
        assert poll(rig.scq)[0].status == e.IBV_WC_SUCCESS
    wcs = poll(rig.rcq, len(slots))
    assert [w.wr_id for w in wcs] == list(slots)
    assert all(w.status == e.IBV_WC_SUCCESS and w.byte_len == 64 for w in wcs)
    assert rig.rcq.poll(1)[0] == 0, "a receive completed twice"
    for s, data in zip(slots, sent):
        assert rig.buf.read(64, s * MSG) == data, s


def test_srq_resize_shrinks_and_grows_with_receives_pending(rig):
    rig.post(range(3))
    assert 8 <= resize(rig.srq, 8) < SRQ_WR
    rig.post(range(3, 8))                    # 8 pending: the small ring is full...
    with pytest.raises(PyverbsRDMAError):
        rig.post([8])                        # ... and refuses one more
    deliver(rig, range(8), 0)
    rig.post(range(8, 12))
    assert resize(rig.srq, SRQ_WR) >= SRQ_WR
    rig.post(range(12, SRQ_WR))              # 52 pending: more than the small ring held
    deliver(rig, range(8, SRQ_WR), 100)


def test_srq_resize_below_the_pending_receives_is_refused(rig):
    rig.post(range(6))
    before = rig.srq.query().max_wr
    for max_wr in (1, 4):
        with pytest.raises(PyverbsRDMAError) as ei:
            resize(rig.srq, max_wr)
        assert ei.value.error_code == errno.EINVAL
    assert rig.srq.query().max_wr == before
    deliver(rig, range(6), 0)


def test_srq_resize_bad_sizes_and_limits_are_refused(rig):
    before = rig.srq.query().max_wr
    for max_wr in (0, rig.ctx.query_device().max_srq_wr + 1):
        with pytest.raises(PyverbsRDMAError) as ei:
            resize(rig.srq, max_wr)
        assert ei.value.error_code == errno.EINVAL, max_wr
    with pytest.raises(PyverbsRDMAError) as ei:
        resize(rig.srq, 16, limit=33)            # a limit above the new size
    assert ei.value.error_code == errno.EINVAL
    assert rig.srq.query().max_wr == before and rig.srq.query().srq_limit == 0
    assert resize(rig.srq, 16, limit=5) >= 16
    assert rig.srq.query().srq_limit == 5
    rig.post(range(6))
    rig.send(0, pattern(64, 1))
    poll(rig.scq)
    poll(rig.rcq)
    rig.events.none()                        # 5 left: not below the limit
    rig.send(0, pattern(64, 2))
    poll(rig.scq)
    poll(rig.rcq)
    assert rig.events.next() == e.IBV_EVENT_SRQ_LIMIT_REACHED


IB_USER_VERBS_CMD_MODIFY_SRQ = 33


def modify_srq_raw(ctx, handle, mask, max_wr, limit, resp_addr):
    """A MODIFY_SRQ command by hand: the core's part, then hmr's struct hmr_modify_srq_cmd."""
    cmd = struct.pack("<IHHIIIIQ", IB_USER_VERBS_CMD_MODIFY_SRQ, 8, 0, handle, mask, max_wr,
                      limit, resp_addr)
    assert os.write(ctx.cmd_fd, cmd) == len(cmd)


def test_srq_resize_to_a_bad_response_address_is_efault_and_changes_nothing(rig):
    """The provider names where the new ring's mmap information goes; a hostile address is
    EFAULT before anything changed: same ring, the pending receives still land."""
    handles = []
    for handle in range(64):         # only the SRQ takes a limit-only MODIFY_SRQ
        try:
            modify_srq_raw(rig.ctx, handle, e.IBV_SRQ_LIMIT, 0, 0, 0)
        except OSError as err:
            assert err.errno in (errno.ENOENT, errno.EINVAL, errno.EOPNOTSUPP)
            continue
        handles.append(handle)
    assert len(handles) == 1, handles
    rig.post(range(4))
    before = rig.srq.query().max_wr
    for addr in (0, 8, 0xffff_8000_0000_0000):
        with pytest.raises(OSError) as ei:
            modify_srq_raw(rig.ctx, handles[0], e.IBV_SRQ_MAX_WR, 2 * before, 0, addr)
        assert ei.value.errno == errno.EFAULT, hex(addr)
    with pytest.raises(OSError) as ei:   # no driver data at all
        os.write(rig.ctx.cmd_fd, struct.pack("<IHHIIII", IB_USER_VERBS_CMD_MODIFY_SRQ, 6, 0,
                                             handles[0], e.IBV_SRQ_MAX_WR, 2 * before, 0))
    assert ei.value.errno == errno.EINVAL
    assert rig.srq.query().max_wr == before
    deliver(rig, range(4), 0)


def test_srq_resize_many_times_as_the_indices_run_on(rig):
    """The producer index carries over from ring to ring, whatever the sizes: 30 resizes
    between 4 and 64 entries with 1-3 receives pending each time, every one taken once."""
    slot = 0
    for r in range(30):
        k = 1 + r % 3
        slots = [(slot + i) % SRQ_WR for i in range(k)]
        rig.post(slots)
        resize(rig.srq, 4 if r % 2 else SRQ_WR)
        deliver(rig, slots, r * 3)
        slot += k


def test_reset_drops_the_qps_completions_not_yet_polled_and_keeps_the_others(rig):
    """Moving a QP to RESET takes its completions not yet polled out of its CQs (as mlx5 does:
    they would surface after the QP is connected again); the completions of the other QP
    sharing those CQs stay, in order. rdma-core's rereg tests rely on it."""
    rig.post(range(4))
    for k in range(4):                   # a0, a1, a0, a1: both share scq; b0, b1 share rcq
        rig.send(k % 2, pattern(64, k), wr_id=k)
    for qp in (rig.a[0], rig.b[0]):
        qp.modify(QPAttr(qp_state=e.IBV_QPS_RESET), e.IBV_QP_STATE)
    assert [w.wr_id for w in poll(rig.scq, 2)] == [1, 3]
    rwcs = poll(rig.rcq, 2)
    assert [w.qp_num for w in rwcs] == [rig.b[1].qp_num] * 2 and [w.wr_id for w in rwcs] == [1, 3]
    assert rig.scq.poll(1)[0] == 0 and rig.rcq.poll(1)[0] == 0
    connect(rig.ctx, rig.a[0], rig.b[0].qp_num)
    connect(rig.ctx, rig.b[0], rig.a[0].qp_num)
    rig.post([5])
    rig.send(0, pattern(64, 9), wr_id=9)
    assert [(w.wr_id, w.status) for w in poll(rig.scq)] == [(9, e.IBV_WC_SUCCESS)]
    (wc,) = poll(rig.rcq)
    assert wc.wr_id == 5 and wc.qp_num == rig.b[0].qp_num and rig.buf.read(64, 5 * MSG) == \
        pattern(64, 9)


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
        assert_refaulted(before, 8, 6)  # the first two MADV_DONTNEEDs find nothing mirrored
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
        assert_refaulted(before, 8, 6)  # the first two MADV_DONTNEEDs find nothing mirrored
    finally:
        x.close()
