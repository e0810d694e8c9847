"""hmr0 RC queue pairs: creation limits, the spec's state machine, attribute checks, flushes."""
import errno
import os

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import e  # noqa: E402
from pyverbs.addr import AHAttr, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsError, PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR, SendWR  # noqa: E402

INIT_MASK = e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT | e.IBV_QP_ACCESS_FLAGS
RTR_MASK = (e.IBV_QP_STATE | e.IBV_QP_AV | e.IBV_QP_PATH_MTU | e.IBV_QP_DEST_QPN |
            e.IBV_QP_RQ_PSN | e.IBV_QP_MAX_DEST_RD_ATOMIC | e.IBV_QP_MIN_RNR_TIMER)
RTS_MASK = (e.IBV_QP_STATE | e.IBV_QP_TIMEOUT | e.IBV_QP_RETRY_CNT | e.IBV_QP_RNR_RETRY |
            e.IBV_QP_SQ_PSN | e.IBV_QP_MAX_QP_RD_ATOMIC)
ACCESS = e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ | e.IBV_ACCESS_REMOTE_ATOMIC


class Res:
    """Context, PD and one CQ on hmr0; qp() makes RC QPs on them."""

    def __init__(self):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.cq = CQ(self.ctx, 256)

    def qp(self, send_wr=16, recv_wr=16, sge=1, inline=0, qp_type=e.IBV_QPT_RC):
        cap = QPCap(max_send_wr=send_wr, max_recv_wr=recv_wr, max_send_sge=sge,
                    max_recv_sge=sge, max_inline_data=inline)
        return QP(self.pd, QPInitAttr(qp_type=qp_type, scq=self.cq, rcq=self.cq, cap=cap,
                                      sq_sig_all=1))

    def close(self):
        self.ctx.close()


@pytest.fixture
def res():
    r = Res()
    yield r
    r.close()


def init_attr():
    a = QPAttr(qp_state=e.IBV_QPS_INIT)
    a.pkey_index = 0
    a.port_num = 1
    a.qp_access_flags = ACCESS
    return a


def rtr_attr(ctx, dest_qpn):
    a = QPAttr(qp_state=e.IBV_QPS_RTR)
    gid = ctx.query_gid(1, 1)
    a.ah_attr = AHAttr(gr=GlobalRoute(dgid=gid, sgid_index=1), is_global=1, port_num=1)
    a.path_mtu = e.IBV_MTU_1024
    a.dest_qp_num = dest_qpn
    a.rq_psn = 0x123
    a.max_dest_rd_atomic = 4
    a.min_rnr_timer = 12
    return a


def rts_attr():
    a = QPAttr(qp_state=e.IBV_QPS_RTS)
    a.timeout = 14
    a.retry_cnt = 7
    a.rnr_retry = 7
    a.sq_psn = 0x456
    a.max_rd_atomic = 4
    return a


def recv_wr(wr_id):
    """A receive WR whose SGE is never touched (the tests only flush it)."""
    return RecvWR(wr_id=wr_id, num_sge=1, sg=[SGE(0x1000, 16, 0)])


def state(qp):
    return qp.query(e.IBV_QP_STATE)[0].qp_state


def to_rts(res, qp, dest_qpn):
    qp.modify(init_attr(), INIT_MASK)
    qp.modify(rtr_attr(res.ctx, dest_qpn), RTR_MASK)
    qp.modify(rts_attr(), RTS_MASK)


def expect_errno(code, fn, *args):
    with pytest.raises((PyverbsRDMAError, PyverbsError)) as ei:
        fn(*args)
    if code is not None and isinstance(ei.value, PyverbsRDMAError):
        assert ei.value.error_code == code, ei.value


def test_create_reports_caps_and_unique_qpns(res):
    qps = [res.qp(send_wr=10, recv_wr=3, sge=2, inline=64) for _ in range(20)]
    nums = {qp.qp_num for qp in qps}
    assert len(nums) == 20 and min(nums) >= 2 and max(nums) < 1 << 24
    attr, init = qps[0].query(e.IBV_QP_CAP)
    assert init.cap.max_send_wr >= 10 and init.cap.max_recv_wr >= 3
    assert init.cap.max_send_sge >= 2 and init.cap.max_inline_data >= 64
    assert state(qps[0]) == e.IBV_QPS_RESET


@pytest.mark.parametrize("qp_type", [e.IBV_QPT_RAW_PACKET])
def test_only_rc_uc_ud_and_xrc_are_supported(res, qp_type):
    expect_errno(errno.EOPNOTSUPP, res.qp, 16, 16, 1, 0, qp_type)


@pytest.mark.parametrize("kw", [dict(send_wr=1 << 20), dict(recv_wr=1 << 20), dict(sge=17),
                                dict(inline=4096)])
def test_create_over_limits_is_refused(res, kw):
    expect_errno(errno.EINVAL, lambda: res.qp(**kw))


def test_reset_init_rtr_rts_and_query(res):
    qp, peer = res.qp(), res.qp()
    qp.modify(init_attr(), INIT_MASK)
    assert state(qp) == e.IBV_QPS_INIT
    qp.modify(rtr_attr(res.ctx, peer.qp_num), RTR_MASK)
    assert state(qp) == e.IBV_QPS_RTR
    qp.modify(rts_attr(), RTS_MASK)
    attr, _ = qp.query(RTR_MASK | RTS_MASK | INIT_MASK)
    assert attr.qp_state == e.IBV_QPS_RTS
    assert attr.dest_qp_num == peer.qp_num and attr.rq_psn == 0x123 and attr.sq_psn == 0x456
    assert attr.path_mtu == e.IBV_MTU_1024 and attr.timeout == 14
    assert attr.retry_cnt == 7 and attr.rnr_retry == 7 and attr.min_rnr_timer == 12
    assert attr.max_rd_atomic == 4 and attr.max_dest_rd_atomic == 4
    assert attr.qp_access_flags == ACCESS and attr.port_num == 1
    assert attr.ah_attr.sgid_index == 1
    # RTS -> SQD -> RTS, RTS -> ERR -> RESET -> INIT
    qp.modify(QPAttr(qp_state=e.IBV_QPS_SQD), e.IBV_QP_STATE)
    qp.modify(QPAttr(qp_state=e.IBV_QPS_RTS), e.IBV_QP_STATE)
    qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    assert state(qp) == e.IBV_QPS_ERR
    qp.modify(QPAttr(qp_state=e.IBV_QPS_RESET), e.IBV_QP_STATE)
    qp.modify(init_attr(), INIT_MASK)
    assert state(qp) == e.IBV_QPS_INIT


def test_illegal_transitions(res):
    qp, peer = res.qp(), res.qp()
    expect_errno(errno.EINVAL, qp.modify, rtr_attr(res.ctx, peer.qp_num), RTR_MASK)
    expect_errno(errno.EINVAL, qp.modify, rts_attr(), RTS_MASK)
    qp.modify(init_attr(), INIT_MASK)
    expect_errno(errno.EINVAL, qp.modify, rts_attr(), RTS_MASK)
    # a required attribute missing, an attribute not allowed in this transition
    expect_errno(errno.EINVAL, qp.modify, rtr_attr(res.ctx, peer.qp_num),
                 RTR_MASK & ~e.IBV_QP_DEST_QPN)
    expect_errno(errno.EINVAL, qp.modify, rtr_attr(res.ctx, peer.qp_num),
                 RTR_MASK | e.IBV_QP_SQ_PSN)
    assert state(qp) == e.IBV_QPS_INIT


def test_cur_state_must_match(res):
    qp = res.qp()
    a = init_attr()
    a.cur_qp_state = e.IBV_QPS_RTS
    expect_errno(errno.EINVAL, qp.modify, a, INIT_MASK | e.IBV_QP_CUR_STATE)
    assert state(qp) == e.IBV_QPS_RESET


@pytest.mark.parametrize("stage,field,value", [
    ("init", "pkey_index", 1), ("init", "qp_access_flags", 1 << 12),
    ("rtr", "path_mtu", 0), ("rtr", "path_mtu", 6), ("rtr", "dest_qp_num", 1 << 24),
    ("rtr", "min_rnr_timer", 32), ("rtr", "max_dest_rd_atomic", 129),
    ("rts", "timeout", 32), ("rts", "retry_cnt", 8), ("rts", "rnr_retry", 8),
    ("rts", "max_rd_atomic", 129),
])
def test_bad_attribute_values(res, stage, field, value):
    qp, peer = res.qp(), res.qp()
    attrs = {"init": (init_attr, INIT_MASK), "rtr": (lambda: rtr_attr(res.ctx, peer.qp_num), RTR_MASK),
             "rts": (rts_attr, RTS_MASK)}
    for name in ("init", "rtr", "rts"):
        make, mask = attrs[name]
        a = make()
        if name == stage:
            setattr(a, field, value)
            expect_errno(None, qp.modify, a, mask)
            return
        qp.modify(a, mask)


def test_psns_are_24_bits(res):
    """uverbs hands the driver 24-bit PSNs: the upper bits are dropped, not refused."""
    qp, peer = res.qp(), res.qp()
    qp.modify(init_attr(), INIT_MASK)
    a = rtr_attr(res.ctx, peer.qp_num)
    a.rq_psn = (1 << 24) | 5
    qp.modify(a, RTR_MASK)
    a = rts_attr()
    a.sq_psn = (1 << 25) | 7
    qp.modify(a, RTS_MASK)
    attr, _ = qp.query(e.IBV_QP_RQ_PSN | e.IBV_QP_SQ_PSN)
    assert (attr.rq_psn, attr.sq_psn) == (5, 7)


def test_bad_port_and_sgid_index(res):
    qp, peer = res.qp(), res.qp()
    a = init_attr()
    a.port_num = 2
    expect_errno(None, qp.modify, a, INIT_MASK)
    qp.modify(init_attr(), INIT_MASK)
    a = rtr_attr(res.ctx, peer.qp_num)
    a.ah_attr = AHAttr(gr=GlobalRoute(dgid=res.ctx.query_gid(1, 1), sgid_index=200),
                       is_global=1, port_num=1)
    expect_errno(None, qp.modify, a, RTR_MASK)
    assert state(qp) == e.IBV_QPS_INIT


def test_error_state_flushes_posted_receives(res):
    qp, peer = res.qp(recv_wr=64), res.qp()
    qp.modify(init_attr(), INIT_MASK)
    for i in range(10):
        qp.post_recv(recv_wr(1000 + i))
    assert res.cq.poll(1) == (0, [])
    qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    n, wcs = res.cq.poll(32)
    assert n == 10
    assert [wc.wr_id for wc in wcs] == list(range(1000, 1010))
    for wc in wcs:
        assert wc.status == e.IBV_WC_WR_FLUSH_ERR and wc.qp_num == qp.qp_num
    assert res.cq.poll(1) == (0, [])


def test_recv_ring_full_is_enomem(res):
    qp = res.qp(recv_wr=4)
    qp.modify(init_attr(), INIT_MASK)
    num = qp.query(e.IBV_QP_CAP)[1].cap.max_recv_wr
    for i in range(num):
        qp.post_recv(recv_wr(i))
    expect_errno(errno.ENOMEM, qp.post_recv, recv_wr(99))


def test_destroy_qps_in_every_state(res):
    for target in ("reset", "init", "rtr", "rts", "err"):
        qp, peer = res.qp(), res.qp()
        if target != "reset":
            qp.modify(init_attr(), INIT_MASK)
        if target in ("rtr", "rts"):
            qp.modify(rtr_attr(res.ctx, peer.qp_num), RTR_MASK)
        if target == "rts":
            qp.modify(rts_attr(), RTS_MASK)
        if target == "err":
            qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
        qp.close()
        peer.close()


def test_posting_to_a_qp_in_reset_is_einval(res):
    qp = res.qp()
    expect_errno(errno.EINVAL, qp.post_recv, recv_wr(1))
    mr = MR(res.pd, 64, e.IBV_ACCESS_LOCAL_WRITE)
    expect_errno(errno.EINVAL, qp.post_send, SendWR(wr_id=2, opcode=e.IBV_WR_SEND, num_sge=1,
                                                    sg=[SGE(mr.buf, 8, mr.lkey)]))
    qp.modify(init_attr(), INIT_MASK)
    qp.post_recv(recv_wr(3))        # INIT accepts receives
    qp.modify(QPAttr(qp_state=e.IBV_QPS_RESET), e.IBV_QP_STATE)
    expect_errno(errno.EINVAL, qp.post_recv, recv_wr(4))
