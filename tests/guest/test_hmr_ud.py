"""hmr0 UD QPs and address handles: datagrams between QPs byte for byte, the 40-byte GRH,
Q_Key checks, best-effort drops, length limits, immediates, the ibv_wr_* path, ODP buffers."""
import errno
import os
import socket
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_data import pattern, poll  # noqa: E402
from test_hmr_util import e  # noqa: E402
from pyverbs.addr import AH, AHAttr, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPEx, QPInitAttr, QPInitAttrEx  # noqa: E402
from pyverbs.wr import SGE, RecvWR, SendWR  # noqa: E402

QKEY = 0x11111111
GRH = 40
# ibv_wc.sl of a UD receive (HMR_CQE_SL_*): UDP (RoCEv2), then IPv6 or IPv4.
SL_UDP, SL_IPV6, SL_IPV4 = 0x8, 0x1, 0x2
V4MAPPED = bytes(10) + b"\xff\xff"
SIZE = 1 << 16
LW = e.IBV_ACCESS_LOCAL_WRITE


def to_rts(qp, qkey=QKEY):
    a = QPAttr(qp_state=e.IBV_QPS_INIT)
    a.pkey_index, a.port_num, a.qkey = 0, 1, qkey
    qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT | e.IBV_QP_QKEY)
    qp.modify(QPAttr(qp_state=e.IBV_QPS_RTR), e.IBV_QP_STATE)
    a = QPAttr(qp_state=e.IBV_QPS_RTS)
    a.sq_psn = 0
    qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_SQ_PSN)


class UdSide:
    def __init__(self, ctx, pd, access=LW, ex=False, qkey=QKEY):
        self.cq = CQ(ctx, 256)
        cap = QPCap(max_send_wr=64, max_recv_wr=64, max_send_sge=2, max_recv_sge=2)
        if ex:
            attr = QPInitAttrEx(qp_type=e.IBV_QPT_UD, scq=self.cq, rcq=self.cq, cap=cap, pd=pd,
                                sq_sig_all=1, send_ops_flags=e.IBV_QP_EX_WITH_SEND |
                                e.IBV_QP_EX_WITH_SEND_WITH_IMM,
                                comp_mask=e.IBV_QP_INIT_ATTR_PD |
                                e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS)
            self.qp = QPEx(ctx, attr)
        else:
            self.qp = QP(pd, QPInitAttr(qp_type=e.IBV_QPT_UD, scq=self.cq, rcq=self.cq, cap=cap,
                                        sq_sig_all=1))
        to_rts(self.qp, qkey)
        self.mr = MR(pd, SIZE, access)


class Ud:
    def __init__(self, access=LW, ex=False, b_qkey=QKEY):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.a = UdSide(self.ctx, self.pd, access, ex)
        self.b = UdSide(self.ctx, self.pd, access, qkey=b_qkey)
        self.gid = self.ctx.query_gid(1, 1)
        self.ah = AH(self.pd, attr=AHAttr(gr=GlobalRoute(dgid=self.gid, sgid_index=1),
                                          is_global=1, port_num=1))

    def recv(self, length, off=0, wr_id=7):
        self.b.qp.post_recv(RecvWR(wr_id=wr_id, num_sge=1,
                                   sg=[SGE(self.b.mr.buf + off, length, self.b.mr.lkey)]))

    def send(self, length, wr_id=3, qkey=QKEY, opcode=e.IBV_WR_SEND, imm=0, qpn=None):
        wr = SendWR(wr_id=wr_id, opcode=opcode, num_sge=1,
                    sg=[SGE(self.a.mr.buf, length, self.a.mr.lkey)],
                    send_flags=e.IBV_SEND_SIGNALED, imm_data=imm)
        wr.set_wr_ud(self.ah, self.b.qp.qp_num if qpn is None else qpn, qkey)
        self.a.qp.post_send(wr)

    def close(self):
        self.ctx.close()


@pytest.fixture
def ud():
    u = Ud()
    yield u
    u.close()


def nothing_arrives(cq, secs=0.3):
    time.sleep(secs)
    return cq.poll(1) == (0, [])


@pytest.mark.parametrize("length", [0, 1, 1000, 4096])
def test_datagram_with_grh(ud, length):
    data = pattern(length, 3)
    ud.a.mr.write(data, length)
    ud.recv(length + GRH)
    ud.send(length)
    (s,) = poll(ud.a.cq)
    assert s.status == e.IBV_WC_SUCCESS and s.wr_id == 3 and s.opcode == e.IBV_WC_SEND
    (r,) = poll(ud.b.cq)
    assert r.status == e.IBV_WC_SUCCESS and r.wr_id == 7 and r.byte_len == length + GRH
    assert r.wc_flags & e.IBV_WC_GRH and r.src_qp == ud.a.qp.qp_num
    buf = ud.b.mr.read(length + GRH, 0)
    assert buf[GRH:] == data
    # RoCEv2 over IPv4 (GID ::ffff:127.0.0.1): 20 zero bytes, then an IPv4 header.
    ip = buf[20:40]
    assert buf[:20] == bytes(20) and ip[0] == 0x45 and ip[9] == socket.IPPROTO_UDP
    assert ip[12:16] == socket.inet_aton("127.0.0.1") and ip[16:20] == socket.inet_aton("127.0.0.1")
    assert r.sl == SL_UDP | SL_IPV4  # the network header type, as RoCE NICs report it


def roce_v2_gids():
    """hmr0's RoCE v2 GIDs: [(index, raw 16 bytes)] from sysfs."""
    port, out = "/sys/class/infiniband/hmr0/ports/1", []
    for name in sorted(os.listdir(f"{port}/gids"), key=int):
        try:
            with open(f"{port}/gid_attrs/types/{name}") as f:
                if f.read().strip() != "RoCE v2":
                    continue
        except OSError:
            continue  # an empty entry
        with open(f"{port}/gids/{name}") as f:
            out.append((int(name), bytes.fromhex(f.read().strip().replace(":", ""))))
    return out


def test_completion_sl_names_the_network_header():
    """A UD receive's ibv_wc.sl says RoCEv2 over IPv4 or IPv6,
    as RoCE NICs report it there (UCX's ud_verbs before 1.19 finds the GRH's destination
    address by it), for every RoCE v2 GID of hmr0 that has a route; the GRH matches it."""
    gids, sent = roce_v2_gids(), []
    u = Ud()
    try:
        for index, raw in gids:
            try:
                ah = AH(u.pd, attr=AHAttr(gr=GlobalRoute(dgid=u.ctx.query_gid(1, index),
                                                         sgid_index=index),
                                          is_global=1, port_num=1))
            except PyverbsRDMAError as err:
                assert err.error_code == errno.ENETUNREACH, (index, raw, err)
                continue  # an address lo does not route (a link-local one)
            sent.append(raw)
            u.recv(8 + GRH)
            wr = SendWR(wr_id=3, opcode=e.IBV_WR_SEND, num_sge=1,
                        sg=[SGE(u.a.mr.buf, 8, u.a.mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
            wr.set_wr_ud(ah, u.b.qp.qp_num, QKEY)
            u.a.qp.post_send(wr)
            (s,) = poll(u.a.cq)
            (r,) = poll(u.b.cq)
            assert s.status == r.status == e.IBV_WC_SUCCESS, (index, s, r)
            grh = u.b.mr.read(GRH, 0)
            if raw[:12] == V4MAPPED:
                assert r.sl == SL_UDP | SL_IPV4 and grh[20] == 0x45, (index, r.sl, grh)
            else:
                assert r.sl == SL_UDP | SL_IPV6 and grh[0] >> 4 == 6, (index, r.sl, grh)
    finally:
        u.close()
    # Both kinds went: 127.0.0.1 and ::1 on lo, the link's addresses in a two-guest lab.
    assert {raw[:12] == V4MAPPED for raw in sent} == {True, False}, (gids, sent)


def test_send_with_imm(ud):
    ud.a.mr.write(b"hello", 5)
    ud.recv(5 + GRH)
    ud.send(5, opcode=e.IBV_WR_SEND_WITH_IMM, imm=0x7f00aa55)
    (s,) = poll(ud.a.cq)
    (r,) = poll(ud.b.cq)
    assert s.status == r.status == e.IBV_WC_SUCCESS
    assert r.wc_flags & e.IBV_WC_WITH_IMM and r.imm_data == 0x7f00aa55
    assert ud.b.mr.read(5, GRH) == b"hello"


def test_wrong_qkey_is_dropped_but_the_sender_succeeds(ud):
    ud.recv(64 + GRH)
    ud.send(64, qkey=QKEY + 1)
    (s,) = poll(ud.a.cq)
    assert s.status == e.IBV_WC_SUCCESS
    assert nothing_arrives(ud.b.cq)
    ud.a.mr.write(b"right", 5)
    ud.send(5)          # the posted receive is still there for the right Q_Key
    poll(ud.a.cq)
    (r,) = poll(ud.b.cq)
    assert r.status == e.IBV_WC_SUCCESS and ud.b.mr.read(5, GRH) == b"right"


def test_no_receive_or_no_qp_drops_without_rnr(ud):
    ud.send(16)                     # b has no receive posted: dropped, no RNR wait
    ud.send(16, qpn=0xfffff0)       # no such QP
    assert [w.status for w in poll(ud.a.cq, 2)] == [e.IBV_WC_SUCCESS] * 2
    assert nothing_arrives(ud.b.cq)


def test_message_over_mtu_is_a_local_length_error(ud):
    ud.send(4097)
    (s,) = poll(ud.a.cq)
    assert s.status == e.IBV_WC_LOC_LEN_ERR


def test_receive_buffer_too_small_completes_in_error(ud):
    ud.recv(100 + GRH - 1)
    ud.send(100)
    (s,) = poll(ud.a.cq)
    (r,) = poll(ud.b.cq)
    assert s.status == e.IBV_WC_SUCCESS and r.status == e.IBV_WC_LOC_LEN_ERR


def test_rdma_write_on_ud_is_refused(ud):
    wr = SendWR(wr_id=5, opcode=e.IBV_WR_RDMA_WRITE, num_sge=1,
                sg=[SGE(ud.a.mr.buf, 8, ud.a.mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
    wr.set_wr_ud(ud.ah, ud.b.qp.qp_num, QKEY)
    ud.a.qp.post_send(wr)
    (s,) = poll(ud.a.cq)
    assert s.wr_id == 5 and s.status == e.IBV_WC_LOC_QP_OP_ERR


def test_wr_api_with_ud_addr():
    u = Ud(ex=True)
    try:
        u.a.mr.write(b"via wr_*", 8)
        u.recv(8 + GRH)
        qp = u.a.qp
        qp.wr_start()
        qp.wr_id, qp.wr_flags = 42, e.IBV_SEND_SIGNALED
        qp.wr_send()
        qp.wr_set_ud_addr(u.ah, u.b.qp.qp_num, QKEY)
        qp.wr_set_sge(SGE(u.a.mr.buf, 8, u.a.mr.lkey))
        qp.wr_complete()
        (s,) = poll(u.a.cq)
        (r,) = poll(u.b.cq)
        assert s.wr_id == 42 and s.status == r.status == e.IBV_WC_SUCCESS
        assert u.b.mr.read(8, GRH) == b"via wr_*"
    finally:
        u.close()


def test_odp_buffers_on_both_sides():
    u = Ud(access=LW | e.IBV_ACCESS_ON_DEMAND)
    try:
        for i in range(3):
            data = pattern(3000, i)
            u.a.mr.write(data, 3000)
            u.recv(3000 + GRH)
            u.send(3000)
            poll(u.a.cq)
            (r,) = poll(u.b.cq)
            assert r.status == e.IBV_WC_SUCCESS and u.b.mr.read(3000, GRH) == data
    finally:
        u.close()


def test_ah_needs_a_gid():
    ctx = Context(name="hmr0")
    try:
        pd = PD(ctx)
        with pytest.raises(PyverbsRDMAError):
            AH(pd, attr=AHAttr(port_num=1, is_global=0))
    finally:
        ctx.close()


def test_ud_caps_are_advertised():
    ctx = Context(name="hmr0")
    try:
        odp = ctx.query_device_ex().odp_caps
        assert odp.ud_odp_caps & e.IBV_ODP_SUPPORT_SEND
        assert odp.ud_odp_caps & e.IBV_ODP_SUPPORT_RECV
    finally:
        ctx.close()
