"""hmr0 against hostile userspace (Documentation.md section 4, "Verbs semantics" and "Rings").

Registrations whose ranges wrap past 2^64 or leave the user address space, bad access flags,
work requests naming memory outside their MRs, keys that are not theirs or lack the rights,
and shared SQ/RQ rings scribbled over (garbage producer indices, malformed WQEs, a raw
doorbell). Each gets a clean error -- an errno on the verb, or the spec's completion status
with the QP in ERROR -- and never a kernel splat (run-guest fails the run on WARN/BUG); the
device keeps working for fresh QPs.
"""
import ctypes
import errno
import os
import select
import struct
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import KERNEL_HAS_FLUSH, anon_map, e, unmap  # noqa: E402
from test_hmr_data import (ALL, SIZE, Side, connect, pattern, poll, post_recv,  # noqa: E402
                           send_wr, sge)
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QPAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR  # noqa: E402

LOCAL_RW = e.IBV_ACCESS_LOCAL_WRITE
U64 = 1 << 64
# The end of the user address space (x86_64 TASK_SIZE_MAX) with 5-level paging, which the
# guest's CPU has; with 4 levels it is 2^47 - 4096, below.
USER_END = (1 << 56) - 4096
RING_HDR = 128                # struct hmr_ring_hdr: prod at 0, cons at 64
SEND_WQE, RECV_WQE = 320, 272  # sizeof(struct hmr_send_wqe), sizeof(struct hmr_recv_wqe)
NUM = 256                     # ring entries of a Side's QP (max_send_wr = max_recv_wr = 256)


def expect_errno(code, fn):
    with pytest.raises(PyverbsRDMAError) as ei:
        fn()
    assert ei.value.error_code == code, ei.value


def qp_state(qp):
    return qp.query(e.IBV_QP_STATE)[0].qp_state


def wait_state(qp, state, timeout=5):
    end = time.time() + timeout
    while qp_state(qp) != state and time.time() < end:
        time.sleep(0.01)
    assert qp_state(qp) == state


# ---------------------------------------------------------------------------------------------
# Registration: ranges and access flags


@pytest.fixture
def pd():
    with Context(name="hmr0") as ctx:
        yield PD(ctx)


@pytest.mark.parametrize("address,length", [
    (U64 - 4096, 1 << 20),          # start + length wraps past 2^64
    (U64 - 4096, 4096),             # ends exactly at 2^64: not user memory
    (USER_END - 4096, 3 * 4096),    # runs past the end of the user address space
    (1 << 56, 4096),                # starts beyond it
    (0x10000, U64 - 0x10000 - 1),   # a length near 2^64
], ids=["wraps", "ends-at-2^64", "past-user-end", "above-user-end", "huge-length"])
def test_reg_mr_range_overflow_is_einval(pd, address, length):
    expect_errno(errno.EINVAL, lambda: MR(pd, length, LOCAL_RW, address=address))


def test_reg_mr_zero_length_is_einval(pd):
    addr = anon_map(4096)
    expect_errno(errno.EINVAL, lambda: MR(pd, 0, LOCAL_RW, address=addr))
    unmap(addr, 4096)


def test_reg_mr_unmapped_or_longer_than_the_mapping_is_efault(pd):
    """Inside the user address space but not (all) mapped: a non-ODP MR is EFAULT."""
    addr = anon_map(3 * 4096)
    unmap(addr + 2 * 4096, 4096)  # a hole right after two mapped pages
    expect_errno(errno.EFAULT, lambda: MR(pd, 4096, LOCAL_RW, address=0x10000))  # never mapped
    expect_errno(errno.EFAULT, lambda: MR(pd, 2 * 4096 + 1, LOCAL_RW, address=addr))
    expect_errno(errno.EFAULT, lambda: MR(pd, 1 << 30, LOCAL_RW, address=addr))
    MR(pd, 2 * 4096, LOCAL_RW, address=addr).close()  # exactly the mapping is fine
    unmap(addr, 2 * 4096)


ZERO_BASED, FLUSH_PERSISTENT = 1 << 5, 1 << 9
RELAXED_ORDERING, OPTIONAL_UNDEFINED = 1 << 20, 1 << 25  # IBV_ACCESS_OPTIONAL_RANGE: hints


@pytest.mark.parametrize("access,code", [
    (e.IBV_ACCESS_REMOTE_WRITE, errno.EINVAL),     # remote write needs local write
    (e.IBV_ACCESS_REMOTE_ATOMIC, errno.EINVAL),    # so does remote atomic
    (e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ, errno.EINVAL),
    (LOCAL_RW | 1 << 12, errno.EINVAL),            # undefined bits
    (LOCAL_RW | 1 << 19, errno.EINVAL),
    (LOCAL_RW | 1 << 30, errno.EINVAL),
    (LOCAL_RW | ZERO_BASED, errno.EOPNOTSUPP),     # defined, not supported by hmr
    # no persistent memory (FLUSH_GLOBAL is); before 6.2 the core knows no such bit
    (LOCAL_RW | FLUSH_PERSISTENT, errno.EOPNOTSUPP if KERNEL_HAS_FLUSH else errno.EINVAL),
], ids=["rw-no-lw", "ra-no-lw", "rw-rr-no-lw", "bit12", "bit19", "bit30", "zero-based",
        "flush-persistent"])
def test_reg_mr_bad_access_flags(pd, access, code):
    addr = anon_map(4096)
    expect_errno(code, lambda: MR(pd, 4096, access, address=addr))
    unmap(addr, 4096)


def test_reg_mr_optional_access_bits_are_ignored(pd):
    for extra in (RELAXED_ORDERING, OPTIONAL_UNDEFINED):
        MR(pd, 4096, ALL | extra).close()


class RawVerbs:
    """libibverbs through ctypes, for what pyverbs does not expose (ibv_reg_mr_iova)."""

    def __init__(self):
        lib = ctypes.CDLL("libibverbs.so.1", use_errno=True)
        vp = ctypes.c_void_p
        for name, res, args in (
                ("ibv_get_device_list", ctypes.POINTER(vp), [ctypes.POINTER(ctypes.c_int)]),
                ("ibv_free_device_list", None, [ctypes.POINTER(vp)]),
                ("ibv_get_device_name", ctypes.c_char_p, [vp]),
                ("ibv_open_device", vp, [vp]), ("ibv_close_device", ctypes.c_int, [vp]),
                ("ibv_alloc_pd", vp, [vp]), ("ibv_dealloc_pd", ctypes.c_int, [vp]),
                ("ibv_reg_mr_iova", vp, [vp, vp, ctypes.c_size_t, ctypes.c_uint64,
                                         ctypes.c_int]),
                ("ibv_dereg_mr", ctypes.c_int, [vp])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib
        n = ctypes.c_int()
        devs = lib.ibv_get_device_list(ctypes.byref(n))
        dev = next(devs[i] for i in range(n.value) if lib.ibv_get_device_name(devs[i]) == b"hmr0")
        self.ctx = lib.ibv_open_device(dev)
        lib.ibv_free_device_list(devs)
        assert self.ctx
        self.pd = lib.ibv_alloc_pd(self.ctx)
        assert self.pd

    def reg_mr_iova(self, addr, length, iova, access):
        """0 on success (the MR is deregistered again), else the errno."""
        mr = self.lib.ibv_reg_mr_iova(self.pd, addr, length, iova, access)
        if not mr:
            return ctypes.get_errno()
        assert self.lib.ibv_dereg_mr(mr) == 0
        return 0

    def close(self):
        self.lib.ibv_dealloc_pd(self.pd)
        self.lib.ibv_close_device(self.ctx)


def test_reg_mr_iova_overflow_is_einval():
    raw = RawVerbs()
    addr = anon_map(2 * 4096)
    try:
        assert raw.reg_mr_iova(addr, 8192, U64 - 4096, LOCAL_RW) == errno.EINVAL  # wraps
        assert raw.reg_mr_iova(addr, 8192, U64 - 8192, LOCAL_RW) == errno.EINVAL  # ends at 2^64
        assert raw.reg_mr_iova(addr, 8192, (1 << 63) + 1, LOCAL_RW) == errno.EINVAL  # offset
        assert raw.reg_mr_iova(addr, 8192, 1 << 63, ALL) == 0  # any iova that fits is fine
        assert raw.reg_mr_iova(addr, 8192, U64 - 3 * 4096, ALL) == 0
    finally:
        unmap(addr, 2 * 4096)
        raw.close()


# ---------------------------------------------------------------------------------------------
# Two connected QPs whose rings and uverbs handles the test can reach


def uverbs_maps():
    """(mmap offset, address, length) of this process's mappings of uverbs devices."""
    maps = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith("/dev/infiniband/uverbs"):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                maps.add((int(fields[2], 16), lo, hi - lo))
    return maps


def fd_links():
    links = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            links[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the directory listing's own descriptor, closed by now
    return links


class Ring:
    """A QP ring as the provider mapped it: header, then NUM slots of esize bytes."""

    def __init__(self, addr, length, esize, num=NUM):
        assert length >= RING_HDR + num * esize
        self.addr, self.esize, self.num = addr, esize, num
        self.mem = (ctypes.c_char * length).from_address(addr)

    def _u32(self, off):
        return ctypes.c_uint32.from_address(self.addr + off)

    @property
    def prod(self):
        return self._u32(0).value

    @prod.setter
    def prod(self, value):
        self._u32(0).value = value & 0xffffffff

    @property
    def cons(self):
        return self._u32(64).value

    def slot(self, index):
        return RING_HDR + (index % self.num) * self.esize

    def write(self, index, fmt, offset, *values):
        struct.pack_into(fmt, self.mem, self.slot(index) + offset, *values)


def write_send_wqe(ring, index, wr_id, opcode, flags=e.IBV_SEND_SIGNALED, num_sge=0, sges=(),
                   remote_addr=0, rkey=0, inline_len=0):
    """struct hmr_send_wqe: wr_id, opcode, send_flags, num_sge, imm, remote_addr, rkey,
    inline_len, compare_add, swap, xrc_srqn, reserved, ud, then sge[16] {addr, length, lkey}."""
    ring.mem[ring.slot(index):ring.slot(index) + SEND_WQE] = b"\0" * SEND_WQE
    ring.write(index, "<QIIIIQII", 0, wr_id, opcode, flags, num_sge, 0, remote_addr, rkey,
               inline_len)
    for i, (addr, length, lkey) in enumerate(sges):
        ring.write(index, "<QII", 64 + 16 * i, addr, length, lkey)


def write_recv_wqe(ring, index, wr_id, num_sge, sges=()):
    """struct hmr_recv_wqe: wr_id, num_sge, reserved, then sge[16]."""
    ring.mem[ring.slot(index):ring.slot(index) + RECV_WQE] = b"\0" * RECV_WQE
    ring.write(index, "<QII", 0, wr_id, num_sge, 0)
    for i, (addr, length, lkey) in enumerate(sges):
        ring.write(index, "<QII", 16 + 16 * i, addr, length, lkey)


IB_USER_VERBS_CMD_POST_SEND = 28
SIZEOF_UVERBS_SEND_WR = 56


def doorbell(ctx, handle):
    """What the provider's post_send does after writing the ring, by hand: a POST_SEND
    command without WRs for the QP with uverbs handle @handle. Raises OSError if @handle
    names no QP."""
    resp = ctypes.create_string_buffer(4)
    cmd = struct.pack("<IHHQIIII", IB_USER_VERBS_CMD_POST_SEND, 8, 1, ctypes.addressof(resp),
                      handle, 0, 0, SIZEOF_UVERBS_SEND_WR)
    assert os.write(ctx.cmd_fd, cmd) == len(cmd)


def qp_handles(ctx):
    """The uverbs handles of the context's QPs, in creation order (handles are allocated
    lowest free first, shared by every object type; only a QP accepts POST_SEND)."""
    found = []
    for handle in range(64):
        try:
            doorbell(ctx, handle)
        except OSError as err:
            assert err.errno in (errno.ENOENT, errno.EINVAL)  # no object / not a QP
            continue
        found.append(handle)
    return found


class Events:
    """The context's async events, read without blocking forever."""

    def __init__(self, ctx, fd):
        self.ctx, self.fd = ctx, fd

    def next(self, timeout=5):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        assert ready, "no async event"
        ev = self.ctx.get_async_event()
        kind = ev.event_type
        ev.ack()
        return kind

    def none(self, timeout=0.3):
        assert select.select([self.fd], [], [], timeout)[0] == []


def open_context():
    """A context on hmr0 and its async events (found as the new infinibandevent fd)."""
    before = fd_links()
    ctx = Context(name="hmr0")
    fd = next(fd for fd, link in fd_links().items()
              if fd not in before and "infinibandevent" in link)
    return ctx, Events(ctx, fd)


class Rig:
    """a -> b connected RC QPs in one context, with their rings, doorbells, async events."""

    def __init__(self, connect_qps=True):
        self.ctx, self.events = open_context()
        try:
            self.pd = PD(self.ctx)
            self.a, self.b = self._side(), self._side()
            self.handle_a, self.handle_b = qp_handles(self.ctx)
            if connect_qps:
                connect(self.ctx, self.a.qp, self.b.qp.qp_num)
                connect(self.ctx, self.b.qp, self.a.qp.qp_num)
        except BaseException:
            self.ctx.close()
            raise

    def _side(self):
        before = uverbs_maps()
        side = Side(self.ctx, self.pd)
        new = sorted(uverbs_maps() - before)  # by mmap offset, i.e. creation order
        assert len(new) == 4, new  # send CQ, recv CQ, then the QP's SQ and RQ
        side.sq = Ring(*new[2][1:], SEND_WQE)
        side.rq = Ring(*new[3][1:], RECV_WQE)
        return side

    def async_event(self, timeout=5):
        return self.events.next(timeout)

    def no_async_event(self):
        self.events.none(0)

    def close(self):
        self.ctx.close()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def assert_device_works():
    """A fresh pair of QPs moves data byte for byte."""
    r = Rig()
    try:
        data = pattern(5000, 42)
        r.a.mr.write(data, len(data))
        post_recv(r.b, 1)
        r.a.qp.post_send(send_wr(2, e.IBV_WR_SEND, [sge(r.a.mr, 0, len(data))]))
        (swc,) = poll(r.a.scq)
        (rwc,) = poll(r.b.rcq)
        assert swc.status == rwc.status == e.IBV_WC_SUCCESS
        assert r.b.mr.read(len(data), 0) == data
    finally:
        r.close()


def test_rig_finds_the_rings_and_handles(rig):
    """The test's view of the rings is the provider's: a posted WQE appears in the SQ slot,
    and the kernel's consumer index follows."""
    rig.a.mr.write(pattern(64, 1), 64)
    wr = send_wr(0x5151, e.IBV_WR_RDMA_WRITE, [sge(rig.a.mr, 0, 64)])
    wr.set_wr_rdma(rig.b.mr.rkey, rig.b.mr.buf)
    rig.a.qp.post_send(wr)
    (wc,) = poll(rig.a.scq)
    assert wc.status == e.IBV_WC_SUCCESS
    assert rig.a.sq.prod == rig.a.sq.cons == 1
    assert struct.unpack_from("<Q", rig.a.sq.mem, rig.a.sq.slot(0))[0] == 0x5151
    post_recv(rig.b, 0x5252)
    assert rig.b.rq.prod == 1 and rig.b.rq.cons == 0
    doorbell(rig.ctx, rig.handle_a)  # an empty doorbell does nothing
    assert rig.a.scq.poll(1) == (0, [])


# ---------------------------------------------------------------------------------------------
# Work requests naming memory they may not touch


def expect_wc(r, wr, wr_id, status):
    r.a.qp.post_send(wr)
    (wc,) = poll(r.a.scq)
    assert (wc.wr_id, wc.status) == (wr_id, status), wc
    assert qp_state(r.a.qp) == e.IBV_QPS_ERR


def rdma(opcode, local, rkey, remote_addr, flags=e.IBV_SEND_SIGNALED):
    wr = send_wr(1, opcode, local, flags)
    wr.set_wr_rdma(rkey, remote_addr)
    return wr


def atomic(opcode, local, rkey, remote_addr):
    wr = send_wr(1, opcode, local)
    wr.set_wr_atomic(rkey, remote_addr, 1, 2)
    return wr


def other_pd_mr(r, access=ALL):
    mr = MR(PD(r.ctx), 4096, access)
    r.keep = mr
    return mr


def dead_mr(r):
    mr = MR(r.pd, 4096, ALL)
    key = mr.lkey
    mr.close()
    return key


W, R = e.IBV_WR_RDMA_WRITE, e.IBV_WR_RDMA_READ
FADD, CSWP = e.IBV_WR_ATOMIC_FETCH_AND_ADD, e.IBV_WR_ATOMIC_CMP_AND_SWP
REM_ACCESS, LOC_PROT = e.IBV_WC_REM_ACCESS_ERR, e.IBV_WC_LOC_PROT_ERR
NO_RW = LOCAL_RW | e.IBV_ACCESS_REMOTE_READ | e.IBV_ACCESS_REMOTE_ATOMIC
NO_RR = LOCAL_RW | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_ATOMIC
NO_RA = LOCAL_RW | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ

BAD_WRS = {
    # remote ranges
    "write-remote-wraps": (lambda r: rdma(W, [sge(r.a.mr, 0, 64)], r.b.mr.rkey, U64 - 16),
                           REM_ACCESS),
    "read-remote-wraps": (lambda r: rdma(R, [sge(r.a.mr, 0, 64)], r.b.mr.rkey, U64 - 16),
                          REM_ACCESS),
    "write-one-byte-past": (lambda r: rdma(W, [sge(r.a.mr, 0, 64)], r.b.mr.rkey,
                                           r.b.mr.buf + SIZE - 63), REM_ACCESS),
    "read-one-byte-past": (lambda r: rdma(R, [sge(r.a.mr, 0, 64)], r.b.mr.rkey,
                                          r.b.mr.buf + SIZE - 63), REM_ACCESS),
    "write-one-byte-before": (lambda r: rdma(W, [sge(r.a.mr, 0, 64)], r.b.mr.rkey,
                                             r.b.mr.buf - 1), REM_ACCESS),
    "atomic-wraps": (lambda r: atomic(FADD, [sge(r.a.mr, 0, 8)], r.b.mr.rkey, U64 - 8),
                     REM_ACCESS),
    "atomic-past-end": (lambda r: atomic(CSWP, [sge(r.a.mr, 0, 8)], r.b.mr.rkey,
                                         r.b.mr.buf + SIZE), REM_ACCESS),
    # local ranges
    "local-wraps": (lambda r: send_wr(1, e.IBV_WR_SEND, [SGE(U64 - 16, 64, r.a.mr.lkey)]),
                    LOC_PROT),
    "local-one-byte-past": (lambda r: rdma(W, [SGE(r.a.mr.buf + SIZE - 63, 64, r.a.mr.lkey)],
                                           r.b.mr.rkey, r.b.mr.buf), LOC_PROT),
    "local-second-sge-past": (lambda r: send_wr(1, e.IBV_WR_SEND, [
        sge(r.a.mr, 0, 64), SGE(r.a.mr.buf + SIZE, 1, r.a.mr.lkey)]), LOC_PROT),
    "local-length-4g-1": (lambda r: rdma(W, [SGE(r.a.mr.buf, 0xffffffff, r.a.mr.lkey)],
                                         r.b.mr.rkey, r.b.mr.buf), LOC_PROT),
    # local keys
    "lkey-random": (lambda r: send_wr(1, e.IBV_WR_SEND, [SGE(r.a.mr.buf, 64, 0x5a5a5a5a)]),
                    LOC_PROT),
    "lkey-zero": (lambda r: send_wr(1, e.IBV_WR_SEND, [SGE(r.a.mr.buf, 64, 0)]), LOC_PROT),
    "lkey-other-pd": (lambda r: send_wr(1, e.IBV_WR_SEND, [sge(other_pd_mr(r), 0, 64)]),
                      LOC_PROT),
    "lkey-deregistered": (lambda r: send_wr(1, e.IBV_WR_SEND,
                                            [SGE(r.a.mr.buf, 64, dead_mr(r))]), LOC_PROT),
    "read-into-mr-without-local-write": (lambda r: rdma(R, [sge(remote_mr(
        r, e.IBV_ACCESS_REMOTE_READ), 0, 64)], r.b.mr.rkey, r.b.mr.buf), LOC_PROT),
    # remote keys and rights
    "rkey-random": (lambda r: rdma(W, [sge(r.a.mr, 0, 64)], 0x5a5a5a5a, r.b.mr.buf),
                    REM_ACCESS),
    "rkey-other-pd": (lambda r: rdma(W, [sge(r.a.mr, 0, 64)], other_pd_mr(r).rkey,
                                     r.keep.buf), REM_ACCESS),
    "rkey-deregistered": (lambda r: rdma(W, [sge(r.a.mr, 0, 64)], dead_mr(r), r.b.mr.buf),
                          REM_ACCESS),
    "write-without-remote-write": (lambda r: rdma(W, [sge(r.a.mr, 0, 64)],
                                                  remote_mr(r, NO_RW).rkey, r.keep.buf),
                                   REM_ACCESS),
    "read-without-remote-read": (lambda r: rdma(R, [sge(r.a.mr, 0, 64)],
                                                remote_mr(r, NO_RR).rkey, r.keep.buf),
                                 REM_ACCESS),
    "fetch-add-without-remote-atomic": (lambda r: atomic(FADD, [sge(r.a.mr, 0, 8)],
                                                         remote_mr(r, NO_RA).rkey, r.keep.buf),
                                        REM_ACCESS),
    "cmp-swap-without-remote-atomic": (lambda r: atomic(CSWP, [sge(r.a.mr, 0, 8)],
                                                        remote_mr(r, NO_RA).rkey, r.keep.buf),
                                       REM_ACCESS),
    # atomics
    "cmp-swap-misaligned-1": (lambda r: atomic(CSWP, [sge(r.a.mr, 0, 8)], r.b.mr.rkey,
                                               r.b.mr.buf + 1), e.IBV_WC_REM_INV_REQ_ERR),
    "cmp-swap-misaligned-7": (lambda r: atomic(CSWP, [sge(r.a.mr, 0, 8)], r.b.mr.rkey,
                                               r.b.mr.buf + 4095), e.IBV_WC_REM_INV_REQ_ERR),
    "fetch-add-misaligned-2": (lambda r: atomic(FADD, [sge(r.a.mr, 0, 8)], r.b.mr.rkey,
                                                r.b.mr.buf + 2), e.IBV_WC_REM_INV_REQ_ERR),
    "atomic-local-buffer-short": (lambda r: atomic(FADD, [sge(r.a.mr, 0, 4)], r.b.mr.rkey,
                                                   r.b.mr.buf), e.IBV_WC_LOC_LEN_ERR),
    # malformed requests the provider passes through
    "undefined-opcode": (lambda r: send_wr(1, 0x7f, [sge(r.a.mr, 0, 64)]),
                         e.IBV_WC_LOC_QP_OP_ERR),
    "inline-read": (lambda r: rdma(R, [sge(r.a.mr, 0, 64)], r.b.mr.rkey, r.b.mr.buf,
                                   e.IBV_SEND_SIGNALED | e.IBV_SEND_INLINE),
                    e.IBV_WC_LOC_QP_OP_ERR),
}


def remote_mr(r, access):
    """An MR in b's PD with only @access: the rkey is valid, the rights are not."""
    r.keep = MR(r.pd, 4096, access)
    return r.keep


@pytest.mark.parametrize("case", sorted(BAD_WRS))
def test_bad_work_request_completes_in_error(rig, case):
    build, status = BAD_WRS[case]
    expect_wc(rig, build(rig), 1, status)
    assert_peer_untouched(rig)


def assert_peer_untouched(r):
    """Nothing of a refused request reached the responder's memory."""
    assert r.b.mr.read(64, 0) == b"\0" * 64


def test_exact_remote_bounds_succeed_then_one_byte_more_fails(rig):
    data = pattern(64, 3)
    rig.a.mr.write(data, 64)
    expect_ok = rdma(W, [sge(rig.a.mr, 0, 64)], rig.b.mr.rkey, rig.b.mr.buf + SIZE - 64)
    rig.a.qp.post_send(expect_ok)
    assert poll(rig.a.scq)[0].status == e.IBV_WC_SUCCESS
    assert rig.b.mr.read(64, SIZE - 64) == data
    expect_wc(rig, rdma(W, [sge(rig.a.mr, 0, 65)], rig.b.mr.rkey, rig.b.mr.buf + SIZE - 64), 1,
              REM_ACCESS)


@pytest.mark.parametrize("opcode", [W, R, e.IBV_WR_SEND])
def test_message_longer_than_2g_is_local_length_error(rig, opcode):
    """Two SGEs of 1 GiB + 1 over one untouched 1 GiB + 4 KiB MR: 2^31 + 2 bytes, more than
    max_msg_sz (2^31). Refused before a byte moves."""
    length = (1 << 30) + 4096
    addr = anon_map(length)
    big = MR(rig.pd, length, ALL, address=addr)
    sgl = [SGE(addr, (1 << 30) + 1, big.lkey), SGE(addr, (1 << 30) + 1, big.lkey)]
    wr = send_wr(1, opcode, sgl)
    if opcode != e.IBV_WR_SEND:
        wr.set_wr_rdma(rig.b.mr.rkey, rig.b.mr.buf)
    expect_wc(rig, wr, 1, e.IBV_WC_LOC_LEN_ERR)
    big.close()
    unmap(addr, length)


def test_too_many_sges_or_inline_bytes_are_einval_on_the_verb(rig):
    """The provider refuses what the QP's caps forbid: nothing reaches the ring, the QP stays
    in RTS and the next valid WR works."""
    max_sge = rig.a.qp.query(e.IBV_QP_CAP)[1].cap.max_send_sge
    sgl = [sge(rig.a.mr, 64 * i, 64) for i in range(max_sge + 1)]
    expect_errno(errno.EINVAL, lambda: rig.a.qp.post_send(send_wr(1, e.IBV_WR_SEND, sgl)))
    rsgl = [sge(rig.b.mr, 64 * i, 64) for i in range(max_sge + 1)]
    expect_errno(errno.EINVAL,
                 lambda: rig.b.qp.post_recv(RecvWR(wr_id=1, num_sge=len(rsgl), sg=rsgl)))
    inline = send_wr(1, e.IBV_WR_SEND, [sge(rig.a.mr, 0, 4096)],
                     e.IBV_SEND_SIGNALED | e.IBV_SEND_INLINE)
    expect_errno(errno.EINVAL, lambda: rig.a.qp.post_send(inline))
    assert rig.a.sq.prod == rig.a.sq.cons == 0
    assert qp_state(rig.a.qp) == e.IBV_QPS_RTS
    wr = rdma(W, [sge(rig.a.mr, 0, 64)], rig.b.mr.rkey, rig.b.mr.buf)
    rig.a.qp.post_send(wr)
    assert poll(rig.a.scq)[0].status == e.IBV_WC_SUCCESS


def test_access_flags_changed_in_rts_apply_to_the_next_request(rig):
    wr = rdma(W, [sge(rig.a.mr, 0, 64)], rig.b.mr.rkey, rig.b.mr.buf)
    rig.a.qp.post_send(wr)
    assert poll(rig.a.scq)[0].status == e.IBV_WC_SUCCESS
    a = QPAttr(qp_state=e.IBV_QPS_RTS)
    a.qp_access_flags = e.IBV_ACCESS_REMOTE_READ
    rig.b.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_ACCESS_FLAGS)
    expect_wc(rig, rdma(W, [sge(rig.a.mr, 0, 64)], rig.b.mr.rkey, rig.b.mr.buf), 1, REM_ACCESS)


# ---------------------------------------------------------------------------------------------
# Corrupted shared rings


def one_good_write(r):
    r.a.mr.write(pattern(64, 9), 64)
    r.a.qp.post_send(rdma(W, [sge(r.a.mr, 0, 64)], r.b.mr.rkey, r.b.mr.buf + 4096))
    assert poll(r.a.scq)[0].status == e.IBV_WC_SUCCESS


GARBAGE_INDEX = {  # index -> garbage, the kernel's consumer index being 1
    "beyond-ring": lambda cons: cons + NUM + 1,
    "backwards": lambda cons: cons - 1,
    "2^32-1": lambda cons: 0xffffffff,
    "half-way-round": lambda cons: cons + (1 << 31),
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE_INDEX))
def test_garbage_sq_producer_index_is_fatal_not_believed(rig, garbage):
    """A producer index claiming more than the ring holds (or going backwards): the QP goes
    to ERROR with IB_EVENT_QP_FATAL, nothing is executed or flushed, and the next sane index
    (the provider's next post) flushes."""
    one_good_write(rig)
    rig.a.sq.prod = GARBAGE_INDEX[garbage](rig.a.sq.cons)
    doorbell(rig.ctx, rig.handle_a)
    assert rig.async_event() == e.IBV_EVENT_QP_FATAL
    assert qp_state(rig.a.qp) == e.IBV_QPS_ERR
    assert rig.a.scq.poll(1) == (0, [])
    assert rig.a.sq.cons == 1
    rig.a.qp.post_send(rdma(W, [sge(rig.a.mr, 0, 64)], rig.b.mr.rkey, rig.b.mr.buf))
    (wc,) = poll(rig.a.scq)  # the provider republished its own index: 2
    assert (wc.wr_id, wc.status) == (1, e.IBV_WC_WR_FLUSH_ERR)
    assert rig.b.mr.read(64, 0) == b"\0" * 64
    assert_device_works()


def test_garbage_sq_producer_index_at_the_rts_transition():
    """The kernel also reads the index when the QP enters RTS (WRs posted before start)."""
    r = Rig(connect_qps=False)
    try:
        connect(r.ctx, r.b.qp, r.a.qp.qp_num)
        r.a.sq.prod = 0x7fffffff
        connect(r.ctx, r.a.qp, r.b.qp.qp_num)  # INIT, RTR, RTS: the last one reads the SQ
        assert r.async_event() == e.IBV_EVENT_QP_FATAL
        assert qp_state(r.a.qp) == e.IBV_QPS_ERR
        assert r.a.scq.poll(1) == (0, [])
    finally:
        r.close()
    assert_device_works()


MALFORMED_SEND = {  # what the WQE says -> completion status
    "num-sge-17": (dict(opcode=e.IBV_WR_SEND, num_sge=17), e.IBV_WC_LOC_QP_OP_ERR),
    "num-sge-2^32-1": (dict(opcode=e.IBV_WR_SEND, num_sge=0xffffffff), e.IBV_WC_LOC_QP_OP_ERR),
    "opcode-0xdead": (dict(opcode=0xdead, num_sge=1), e.IBV_WC_LOC_QP_OP_ERR),
    "opcode-2^32-1": (dict(opcode=0xffffffff, num_sge=1), e.IBV_WC_LOC_QP_OP_ERR),
    "inline-len-257": (dict(opcode=e.IBV_WR_SEND, inline_len=257,
                            flags=e.IBV_SEND_SIGNALED | e.IBV_SEND_INLINE),
                       e.IBV_WC_LOC_QP_OP_ERR),
    "inline-len-2^32-1": (dict(opcode=e.IBV_WR_RDMA_WRITE, inline_len=0xffffffff,
                               flags=e.IBV_SEND_SIGNALED | e.IBV_SEND_INLINE),
                          e.IBV_WC_LOC_QP_OP_ERR),
    "inline-atomic": (dict(opcode=e.IBV_WR_ATOMIC_FETCH_AND_ADD, inline_len=8,
                           flags=e.IBV_SEND_SIGNALED | e.IBV_SEND_INLINE),
                      e.IBV_WC_LOC_QP_OP_ERR),
    "sge-wraps": (dict(opcode=e.IBV_WR_SEND, num_sge=1, sge=(U64 - 8, 64)), LOC_PROT),
    "sge-length-2^32-1": (dict(opcode=e.IBV_WR_SEND, num_sge=1, sge=(0, 0xffffffff)), LOC_PROT),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_SEND))
def test_malformed_send_wqe_completes_in_error(rig, case):
    """A WQE written straight into the SQ ring and a raw doorbell: the kernel copies it once,
    checks it, completes it in error (wr_id kept) and moves the QP to ERROR."""
    fields, status = MALFORMED_SEND[case]
    fields = dict(fields)
    addr, length = fields.pop("sge", (0, 64))
    addr = addr or rig.a.mr.buf
    sges = [(addr, length, rig.a.mr.lkey)] * 16
    index = rig.a.sq.prod
    write_send_wqe(rig.a.sq, index, 0xbad0 + index, sges=sges, remote_addr=rig.b.mr.buf,
                   rkey=rig.b.mr.rkey, **fields)
    rig.a.sq.prod = index + 1
    doorbell(rig.ctx, rig.handle_a)
    (wc,) = poll(rig.a.scq)
    assert (wc.wr_id, wc.status) == (0xbad0 + index, status)
    assert qp_state(rig.a.qp) == e.IBV_QPS_ERR
    assert rig.a.sq.cons == index + 1
    assert_peer_untouched(rig)


@pytest.mark.parametrize("garbage", sorted(GARBAGE_INDEX))
def test_garbage_rq_producer_index_is_fatal_not_believed(rig, garbage):
    """The responder reads the RQ index when a SEND arrives: a corrupted one moves the
    receiving QP to ERROR with IB_EVENT_QP_FATAL (no receive completes: none can be trusted),
    and the sender gets a remote operation error instead of waiting for receives forever."""
    post_recv(rig.b, 1)
    rig.a.qp.post_send(send_wr(2, e.IBV_WR_SEND, [sge(rig.a.mr, 0, 64)]))
    assert poll(rig.a.scq)[0].status == poll(rig.b.rcq)[0].status == e.IBV_WC_SUCCESS
    rig.b.rq.prod = GARBAGE_INDEX[garbage](rig.b.rq.cons)
    rig.a.qp.post_send(send_wr(3, e.IBV_WR_SEND, [sge(rig.a.mr, 0, 64)]))
    (wc,) = poll(rig.a.scq)
    assert (wc.wr_id, wc.status) == (3, e.IBV_WC_REM_OP_ERR)
    assert rig.async_event() == e.IBV_EVENT_QP_FATAL
    wait_state(rig.b.qp, e.IBV_QPS_ERR)
    assert rig.b.rcq.poll(1) == (0, [])
    assert rig.b.rq.cons == 1
    assert_device_works()


@pytest.mark.parametrize("num_sge,sge_addr,status", [
    (17, 0, e.IBV_WC_LOC_QP_OP_ERR),
    (0xffffffff, 0, e.IBV_WC_LOC_QP_OP_ERR),
    (1, U64 - 8, e.IBV_WC_LOC_PROT_ERR),
], ids=["num-sge-17", "num-sge-2^32-1", "sge-wraps"])
def test_malformed_recv_wqe_completes_in_error(rig, num_sge, sge_addr, status):
    """A receive WQE written straight into the RQ ring: the arriving SEND completes it in
    error, the receiving QP goes to ERROR, the sender gets a remote operation error."""
    addr = sge_addr or rig.b.mr.buf
    index = rig.b.rq.prod
    write_recv_wqe(rig.b.rq, index, 0xbee0, num_sge, [(addr, 64, rig.b.mr.lkey)] * 16)
    rig.b.rq.prod = index + 1
    rig.a.qp.post_send(send_wr(3, e.IBV_WR_SEND, [sge(rig.a.mr, 0, 64)]))
    (wc,) = poll(rig.a.scq)
    assert (wc.wr_id, wc.status) == (3, e.IBV_WC_REM_OP_ERR)
    (rwc,) = poll(rig.b.rcq)
    assert (rwc.wr_id, rwc.status) == (0xbee0, status)
    wait_state(rig.b.qp, e.IBV_QPS_ERR)
    rig.no_async_event()  # a completion reported it
    assert rig.b.mr.read(64, 0) == b"\0" * 64


def test_flush_believes_only_a_sane_producer_index(rig):
    """Entering ERROR flushes exactly the WQEs between the kernel's consumer index and a
    producer index that fits the ring (whatever the slots hold, only wr_id is read), and
    nothing for one that does not fit."""
    for i in range(NUM):
        write_recv_wqe(rig.b.rq, i, 0x1000 + i, 0xffffffff)
    rig.b.rq.prod = NUM  # the whole ring
    rig.b.qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    wcs = poll(rig.b.rcq, NUM)
    assert [wc.wr_id for wc in wcs] == [0x1000 + i for i in range(NUM)]
    assert {wc.status for wc in wcs} == {e.IBV_WC_WR_FLUSH_ERR}
    assert rig.b.rq.cons == NUM
    rig.b.rq.prod = 2 * NUM + 1  # more than the ring holds
    rig.b.qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    time.sleep(0.2)  # the periodic flush of a QP in ERROR sees it too
    assert rig.b.rcq.poll(1) == (0, [])
    assert rig.b.rq.cons == NUM
    assert_device_works()


# ---------------------------------------------------------------------------------------------
# Receives posted to a QP already in ERROR


@pytest.mark.parametrize("idle", [0, 1.5], ids=["at-once", "after-idle"])
def test_receive_posted_in_error_is_flushed_without_a_system_call(rig, idle):
    """post_recv only writes the ring; the kernel flushes a QP in ERROR by itself (every
    jiffy at first, backing off to once a second while idle), so the receive completes with
    IBV_WC_WR_FLUSH_ERR without any further verb on the QP."""
    rig.b.qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    time.sleep(idle)
    start = time.time()
    post_recv(rig.b, 77)
    (wc,) = poll(rig.b.rcq, timeout=5)
    assert (wc.wr_id, wc.status) == (77, e.IBV_WC_WR_FLUSH_ERR)
    assert time.time() - start < 2.5
    assert rig.b.rq.cons == 1


def test_receive_posted_in_error_is_flushed_by_the_next_verb(rig):
    """Any system call on the QP flushes at once: the doorbell (post_send) and query_qp."""
    rig.b.qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    time.sleep(1.5)  # the periodic flush has backed off
    post_recv(rig.b, 5)
    doorbell(rig.ctx, rig.handle_b)
    assert rig.b.rq.cons == 1
    post_recv(rig.b, 6)
    qp_state(rig.b.qp)
    assert rig.b.rq.cons == 2
    assert [(wc.wr_id, wc.status) for wc in poll(rig.b.rcq, 2)] == \
        [(5, e.IBV_WC_WR_FLUSH_ERR), (6, e.IBV_WC_WR_FLUSH_ERR)]


def test_reset_stops_the_flush(rig):
    """Back in RESET the rings are empty; RESET refuses receives (EINVAL, provider), and one
    posted once the QP is in INIT again is not flushed."""
    rig.b.qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    rig.b.qp.modify(QPAttr(qp_state=e.IBV_QPS_RESET), e.IBV_QP_STATE)
    with pytest.raises(PyverbsRDMAError) as err:
        post_recv(rig.b, 8)
    assert err.value.error_code == errno.EINVAL
    a = QPAttr(qp_state=e.IBV_QPS_INIT)
    a.pkey_index, a.port_num, a.qp_access_flags = 0, 1, ALL
    rig.b.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT |
                    e.IBV_QP_ACCESS_FLAGS)
    post_recv(rig.b, 8)
    time.sleep(0.3)
    assert rig.b.rcq.poll(1) == (0, [])
    assert rig.b.rq.cons == 0
