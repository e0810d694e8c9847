"""On-demand paging on hmr0: capabilities, O(1) registration, every RC operation on ODP MRs
whose pages are dropped before each use, errors for unmapped pages, implicit ODP, counters,
and unmodified perftest --odp."""
import ctypes
import mmap
import os
import re
import struct
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import MADV_DONTNEED, PROT_RW, anon_map, e, libc, quiet_map, unmap  # noqa: E402
from test_hmr_data import ALL, connect, pattern, poll, send_wr  # noqa: E402
from test_hmr_apps import client_server  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR  # noqa: E402

ODP = ALL | e.IBV_ACCESS_ON_DEMAND
SIZE = 1 << 20
PAGE = 4096
MAP_NORESERVE = 0x4000
# enum ibv_advise_mr_advice / IBV_ADVISE_MR_FLAG_FLUSH (pyverbs hides them behind "_" in 56)
PREFETCH, PREFETCH_WRITE, PREFETCH_NO_FAULT, FLUSH = 0, 1, 2, 1
COUNTERS = "/sys/class/infiniband/hmr0/ports/1/hw_counters"


def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def counters():
    time.sleep(0.05)  # the core caches hw counters for 10 ms
    return {name: int(open(os.path.join(COUNTERS, name)).read())
            for name in os.listdir(COUNTERS)}


def delta(before, after):
    return {k: after[k] - before[k] for k in after}


def dontneed(addr, length):
    assert libc.madvise(addr, length, MADV_DONTNEED) == 0


class OdpSide:
    """A QP whose MR is an ODP MR over a mapping of its own (addr, SIZE)."""

    def __init__(self, ctx, pd):
        self.scq = CQ(ctx, 64)
        self.rcq = CQ(ctx, 64)
        cap = QPCap(max_send_wr=32, max_recv_wr=32, max_send_sge=2, max_recv_sge=2)
        self.qp = QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.scq, rcq=self.rcq, cap=cap,
                                    sq_sig_all=1))
        self.addr = quiet_map(SIZE)  # the counter tests count every invalidation
        self.mr = MR(pd, SIZE, ODP, address=self.addr)

    def sge(self, off, length):
        return SGE(self.addr + off, length, self.mr.lkey)


class OdpPair:
    def __init__(self):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.a = OdpSide(self.ctx, self.pd)
        self.b = OdpSide(self.ctx, self.pd)
        connect(self.ctx, self.a.qp, self.b.qp.qp_num)
        connect(self.ctx, self.b.qp, self.a.qp.qp_num)

    def drop_pages(self):
        dontneed(self.a.addr, SIZE)
        dontneed(self.b.addr, SIZE)

    def close(self):
        self.ctx.close()
        unmap(self.a.addr, SIZE)
        unmap(self.b.addr, SIZE)


@pytest.fixture
def odp():
    p = OdpPair()
    yield p
    p.close()


def run(p, wr, side=None):
    (side or p.a).qp.post_send(wr)
    (wc,) = poll((side or p.a).scq)
    return wc


def test_devinfo_shows_odp_caps():
    out = subprocess.run(["ibv_devinfo", "-v", "-d", "hmr0"], capture_output=True, text=True,
                         check=True).stdout
    general = out.split("general_odp_caps:")[1].split("rc_odp_caps:")[0]
    rc = out.split("rc_odp_caps:")[1].split("uc_odp_caps:")[0]
    assert "ODP_SUPPORT" in general and "ODP_SUPPORT_IMPLICIT" in general, out
    for cap in ("SUPPORT_SEND", "SUPPORT_RECV", "SUPPORT_WRITE", "SUPPORT_READ",
                "SUPPORT_ATOMIC"):
        assert cap in rc, out


def test_16g_odp_mr_registers_in_o1_without_touching_memory():
    length = 16 << 30
    addr = libc.mmap(None, length, PROT_RW,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value)
    with Context(name="hmr0") as ctx:
        pd = PD(ctx)
        before = rss_kb()
        t = time.monotonic()
        mr = MR(pd, length, ODP, address=addr)
        took = time.monotonic() - t
        assert rss_kb() - before < 4 * 1024, "registration touched the pages"
        assert took < 0.5, f"registration took {took:.3f} s"
        mr.close()
    unmap(addr, length)


def test_odp_mr_over_a_hole_registers(odp):
    addr = anon_map(3 * PAGE)
    unmap(addr + PAGE, PAGE)
    mr = MR(odp.pd, 3 * PAGE, ODP, address=addr)
    mr.close()
    unmap(addr, 3 * PAGE)


def test_write_read_with_pages_dropped_each_time(odp):
    for i, length in enumerate([1, 4096, 4097, 65536 + 13, SIZE]):
        odp.drop_pages()
        data = pattern(length, i)
        ctypes.memmove(odp.a.addr, data, length)
        wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, length)])
        wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
        assert run(odp, wr).status == e.IBV_WC_SUCCESS
        assert ctypes.string_at(odp.b.addr, length) == data
        odp.drop_pages()
        data = pattern(length, i + 100)
        ctypes.memmove(odp.b.addr, data, length)
        wr = send_wr(2, e.IBV_WR_RDMA_READ, [odp.a.sge(0, length)])
        wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
        assert run(odp, wr).status == e.IBV_WC_SUCCESS
        assert ctypes.string_at(odp.a.addr, length) == data


def test_send_recv_with_pages_dropped_each_time(odp):
    for i, length in enumerate([1, 4096, 65536 + 13, SIZE]):
        odp.drop_pages()
        odp.b.qp.post_recv(RecvWR(wr_id=i, num_sge=1, sg=[odp.b.sge(0, SIZE)]))
        odp.drop_pages()
        data = pattern(length, i)
        ctypes.memmove(odp.a.addr, data, length)
        dontneed(odp.b.addr, SIZE)
        assert run(odp, send_wr(i, e.IBV_WR_SEND, [odp.a.sge(0, length)])).status == \
            e.IBV_WC_SUCCESS
        (wc,) = poll(odp.b.rcq)
        assert wc.status == e.IBV_WC_SUCCESS and wc.byte_len == length
        assert ctypes.string_at(odp.b.addr, length) == data


def test_atomics_with_pages_dropped_each_time(odp):
    for i in range(4):
        odp.drop_pages()
        ctypes.memmove(odp.b.addr + 64, struct.pack("<Q", 1000 + i), 8)
        dontneed(odp.a.addr, SIZE)
        wr = send_wr(1, e.IBV_WR_ATOMIC_FETCH_AND_ADD, [odp.a.sge(0, 8)])
        wr.set_wr_atomic(rkey=odp.b.mr.rkey, addr=odp.b.addr + 64, compare_add=5, swap=0)
        assert run(odp, wr).status == e.IBV_WC_SUCCESS
        assert struct.unpack("<Q", ctypes.string_at(odp.a.addr, 8))[0] == 1000 + i
        assert struct.unpack("<Q", ctypes.string_at(odp.b.addr + 64, 8))[0] == 1005 + i
        odp.drop_pages()  # zeroes the target too: the CPU sets it again, then drops a's pages
        ctypes.memmove(odp.b.addr + 64, struct.pack("<Q", 2000 + i), 8)
        dontneed(odp.a.addr, SIZE)
        wr = send_wr(2, e.IBV_WR_ATOMIC_CMP_AND_SWP, [odp.a.sge(8, 8)])
        wr.set_wr_atomic(rkey=odp.b.mr.rkey, addr=odp.b.addr + 64, compare_add=2000 + i,
                         swap=7 + i)
        assert run(odp, wr).status == e.IBV_WC_SUCCESS
        assert struct.unpack("<Q", ctypes.string_at(odp.a.addr + 8, 8))[0] == 2000 + i
        assert struct.unpack("<Q", ctypes.string_at(odp.b.addr + 64, 8))[0] == 7 + i


def test_unmapped_local_page_is_local_protection_error(odp):
    unmap(odp.a.addr + 2 * PAGE, PAGE)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(PAGE, 3 * PAGE)])
    wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
    assert run(odp, wr).status == e.IBV_WC_LOC_PROT_ERR
    anon_map(PAGE, addr=odp.a.addr + 2 * PAGE)  # for the fixture's unmap


def test_unmapped_remote_page_is_remote_access_error(odp):
    unmap(odp.b.addr + 2 * PAGE, PAGE)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, 3 * PAGE)])
    wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr + PAGE)
    assert run(odp, wr).status == e.IBV_WC_REM_ACCESS_ERR
    anon_map(PAGE, addr=odp.b.addr + 2 * PAGE)


def test_read_only_page_is_remote_access_error_for_a_write(odp):
    assert libc.mprotect(ctypes.c_void_p(odp.b.addr), PAGE, mmap.PROT_READ) == 0
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, 64)])
    wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
    assert run(odp, wr).status == e.IBV_WC_REM_ACCESS_ERR
    assert libc.mprotect(ctypes.c_void_p(odp.b.addr), PAGE, PROT_RW) == 0


def test_implicit_odp_covers_any_address(odp):
    imr = MR(odp.pd, 0, ODP, implicit=True)
    try:
        # memory mapped after the registration, in two separate mappings
        for n, length in enumerate([PAGE, 5 * PAGE + 7]):
            dst = anon_map(16 * PAGE)
            data = pattern(length, n)
            ctypes.memmove(odp.a.addr, data, length)
            wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, length)])
            wr.set_wr_rdma(imr.rkey, dst + 3)
            assert run(odp, wr).status == e.IBV_WC_SUCCESS
            assert ctypes.string_at(dst + 3, length) == data
            # the implicit MR's lkey as a local SGE too
            wr = send_wr(2, e.IBV_WR_RDMA_READ, [SGE(dst + 8 * PAGE, length, imr.lkey)])
            wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
            ctypes.memmove(odp.b.addr, data[::-1], length)
            assert run(odp, wr).status == e.IBV_WC_SUCCESS
            assert ctypes.string_at(dst + 8 * PAGE, length) == data[::-1]
            unmap(dst, 16 * PAGE)
        # an address with nothing mapped is an error, not a crash
        hole = anon_map(PAGE)
        unmap(hole, PAGE)
        wr = send_wr(3, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, 64)])
        wr.set_wr_rdma(imr.rkey, hole)
        assert run(odp, wr).status == e.IBV_WC_REM_ACCESS_ERR
    finally:
        imr.close()


def test_counters_count_faults_and_invalidations(odp):
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, 16 * PAGE)])
    wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
    assert run(odp, wr).status == e.IBV_WC_SUCCESS  # both sides present now
    before = counters()
    dontneed(odp.b.addr, 16 * PAGE)
    mid = counters()
    assert run(odp, wr).status == e.IBV_WC_SUCCESS
    after = counters()
    d1, d2 = delta(before, mid), delta(mid, after)
    assert d1["page_invalidations"] >= 1 and d1["page_faults"] == 0, d1
    assert d2["page_faults"] == 1 and d2["page_faults_pages"] == 16, d2
    assert d2["page_access_faults"] == 1 and d2["page_invalidations"] == 0, d2
    # the time the fault took; the 16 pages it needed were faulted by one HMM call, with no
    # look-up of its own; and no time without a fault
    assert 0 < d2["page_fault_ns"] < 10**10 and d2["page_lookup_ns"] == 0, d2
    assert d1["page_fault_ns"] == 0 and d1["page_lookup_ns"] == 0, d1
    # one page: faulted as the CPU would, then HMM looks it up, part of the fault's time
    one = send_wr(2, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, PAGE)])
    one.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
    dontneed(odp.b.addr, PAGE)
    before = counters()
    assert run(odp, one).status == e.IBV_WC_SUCCESS
    d3 = delta(before, counters())
    assert d3["page_faults"] == 1 and 0 < d3["page_lookup_ns"] < d3["page_fault_ns"], d3
    out = subprocess.run(["rdma", "statistic", "show", "link", "hmr0/1"], capture_output=True,
                         text=True, check=True).stdout
    assert re.search(r"page_faults \d+", out) and "page_invalidations" in out, out


@pytest.mark.parametrize("tool,extra", [
    ("ib_send_lat", []),
    ("ib_write_lat", []),
    ("ib_read_lat", []),
    ("ib_write_bw", []),
])
def test_perftest_odp(tool, extra):
    args = [tool, "-d", "hmr0", "-x", "1", "-n", "200", "--odp"] + extra
    cout, sout = client_server(args)
    assert "#bytes" in cout, cout


def prefetch(p, advice, side, off, length, flush=True):
    flags = FLUSH if flush else 0
    p.pd.advise_mr(advice, flags, [side.sge(off, length)])


def test_prefetch_write_makes_pages_present(odp):
    data = pattern(16 * PAGE, 3)
    ctypes.memmove(odp.a.addr, data, 16 * PAGE)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, 16 * PAGE)])
    wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
    assert run(odp, wr).status == e.IBV_WC_SUCCESS  # a's pages present in its mirror
    dontneed(odp.b.addr, SIZE)
    before = counters()
    prefetch(odp, PREFETCH_WRITE, odp.b, 0, 16 * PAGE)
    mid = counters()
    assert run(odp, wr).status == e.IBV_WC_SUCCESS
    after = counters()
    assert ctypes.string_at(odp.b.addr, 16 * PAGE) == data
    d1, d2 = delta(before, mid), delta(mid, after)
    assert d1["page_prefetch"] == 16 and d1["page_faults_pages"] == 16, d1
    assert d2["page_access_faults"] == 0 and d2["page_faults"] == 0, d2


def test_prefetch_read_serves_reads(odp):
    ctypes.memmove(odp.b.addr, b"x" * PAGE, PAGE)
    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, 8 * PAGE)])
    wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
    assert run(odp, wr).status == e.IBV_WC_SUCCESS  # b's pages present and writable
    dontneed(odp.a.addr, SIZE)
    data = pattern(8 * PAGE, 5)
    ctypes.memmove(odp.a.addr, data, 8 * PAGE)  # the CPU brings a's pages back
    before = counters()
    prefetch(odp, PREFETCH, odp.a, 0, 8 * PAGE)
    mid = counters()
    assert run(odp, wr).status == e.IBV_WC_SUCCESS
    after = counters()
    assert ctypes.string_at(odp.b.addr, 8 * PAGE) == data
    assert delta(before, mid)["page_prefetch"] == 8
    assert delta(mid, after)["page_access_faults"] == 0


def test_prefetch_no_fault_installs_only_present_pages(odp):
    dontneed(odp.b.addr, SIZE)
    ctypes.memset(odp.b.addr + 4 * PAGE, 1, 4 * PAGE)  # 4 of the 16 pages present
    before = counters()
    prefetch(odp, PREFETCH_NO_FAULT, odp.b, 0, 16 * PAGE)
    d = delta(before, counters())
    assert d["page_prefetch"] == 4 and d["page_access_faults"] == 0, d
    # a look-up only: its time counts, no DMA-engine fault's does
    assert d["page_lookup_ns"] > 0 and d["page_fault_ns"] == 0, d
    # over a hole: nothing to install, no error
    unmap(odp.b.addr + 32 * PAGE, PAGE)
    prefetch(odp, PREFETCH_NO_FAULT, odp.b, 31 * PAGE, 3 * PAGE)
    anon_map(PAGE, addr=odp.b.addr + 32 * PAGE)


def test_prefetch_of_a_hole_fails_when_flushed(odp):
    unmap(odp.b.addr + PAGE, PAGE)
    with pytest.raises(PyverbsRDMAError):
        prefetch(odp, PREFETCH, odp.b, 0, 2 * PAGE)
    prefetch(odp, PREFETCH, odp.b, 0, 2 * PAGE, flush=False)
    anon_map(PAGE, addr=odp.b.addr + PAGE)


def test_prefetch_bad_key_is_einval(odp):
    with pytest.raises(PyverbsRDMAError):
        odp.pd.advise_mr(PREFETCH, FLUSH,
                         [SGE(odp.a.addr, PAGE, odp.a.mr.lkey ^ 0x100)])
    with pytest.raises(PyverbsRDMAError):  # beyond the MR
        prefetch(odp, PREFETCH, odp.a, SIZE - PAGE, 2 * PAGE)


def test_async_prefetch_completes_and_dereg_waits_for_it(odp):
    dontneed(odp.b.addr, SIZE)
    before = counters()
    prefetch(odp, PREFETCH_WRITE, odp.b, 0, SIZE, flush=False)
    end = time.time() + 10
    while delta(before, counters())["page_prefetch"] < SIZE // PAGE and time.time() < end:
        pass
    assert delta(before, counters())["page_prefetch"] == SIZE // PAGE
    # a large asynchronous prefetch, then dereg at once: dereg waits for the work item
    length = 64 << 20
    addr = anon_map(length)
    mr = MR(odp.pd, length, ODP, address=addr)
    odp.pd.advise_mr(PREFETCH_WRITE, 0, [SGE(addr, length, mr.lkey)])
    mr.close()
    unmap(addr, length)
