"""Every invalidation path on hmr0's mirrored MRs: fork's write-protect and COW, mremap, page
migration, THP split and collapse, hugetlbfs, read-only mappings, swap, KSM, an invalidation
storm, and exit with work in flight. Each test checks the data byte for byte through RDMA on
loopback QPs and the hw counter that proves the kernel path was taken."""
import ctypes
import mmap
import os
import random
import re
import struct
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import MADV_DONTNEED, PROT_RW, anon_map, e, libc, unmap  # noqa: E402
from test_hmr_data import ALL, connect, poll, send_wr  # noqa: E402
from test_hmr_odp import ODP, counters, delta, dontneed  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.qp import QP, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR  # noqa: E402

PAGE = 4096
HUGE = 2 << 20
MAP_SHARED = 0x01
MAP_HUGETLB = 0x40000
MADV_HUGEPAGE, MADV_MERGEABLE, MADV_UNMERGEABLE = 14, 12, 13
MADV_PAGEOUT, MADV_COLLAPSE, MADV_SOFT_OFFLINE = 21, 25, 101
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
SYS_MOVE_PAGES = 279  # x86_64
BOTH = pytest.mark.parametrize("access", [ODP, ALL], ids=["odp", "pinless"])

libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                        ctypes.c_void_p]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.syscall.restype = ctypes.c_long


def data(n, seed):
    return random.Random(seed).randbytes(n)


def put(addr, buf):
    ctypes.memmove(addr, buf, len(buf))


def get(addr, n):
    return ctypes.string_at(addr, n)


def madvise(addr, length, advice):
    """madvise(2); returns 0 or the errno."""
    if libc.madvise(addr, length, advice) == 0:
        return 0
    return ctypes.get_errno()


def aligned_map(length, align=HUGE):
    """An anonymous mapping of @length at an @align-aligned address (the slack unmapped)."""
    raw = anon_map(length + align)
    addr = (raw + align - 1) & ~(align - 1)
    if addr > raw:
        unmap(raw, addr - raw)
    if raw + align > addr:
        unmap(addr + length, raw + align - addr)
    return addr


def pfn(addr):
    """The physical frame of the page at @addr (/proc/self/pagemap, root), or None."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        (v,) = struct.unpack("<Q", f.read(8))
    return v & ((1 << 55) - 1) if v >> 63 else None


def swapped(addr):
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        (v,) = struct.unpack("<Q", f.read(8))
    return bool(v >> 62 & 1)


def smaps_kb(addr, field):
    """@field (kB) of the /proc/self/smaps entry holding @addr."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                inside = int(m.group(1), 16) <= addr < int(m.group(2), 16)
            elif inside and line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {addr:#x}")


def write_sys(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def read_sys(path):
    with open(path) as f:
        return f.read().strip()


class Loop:
    """Two RC QPs of one PD on hmr0 connected over loopback; the test brings its own MRs.
    `a` issues the work requests; `b` is the responder (and receives SENDs)."""

    def __init__(self, pair=True):
        self.ctx = Context(name="hmr0")
        self.pd = PD(self.ctx)
        self.qps = []
        for _ in range(2):
            cq = CQ(self.ctx, 256)
            cap = QPCap(max_send_wr=128, max_recv_wr=32, max_send_sge=2, max_recv_sge=2)
            qp = QP(self.pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, cap=cap,
                                        sq_sig_all=1))
            self.qps.append((qp, cq))
        (self.qa, self.cqa), (self.qb, self.cqb) = self.qps
        if pair:  # else both stay in RESET, to be connected elsewhere
            connect(self.ctx, self.qa, self.qb.qp_num)
            connect(self.ctx, self.qb, self.qa.qp_num)

    def mr(self, addr, length, access=ODP):
        return MR(self.pd, length, access, address=addr)

    def run(self, wr):
        self.qa.post_send(wr)
        (wc,) = poll(self.cqa)
        return wc.status

    def write(self, src, smr, dst, dmr, length):
        """RDMA WRITE: the device reads @src (@smr) and writes @dst (@dmr)."""
        wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [SGE(src, length, smr.lkey)])
        wr.set_wr_rdma(dmr.rkey, dst)
        return self.run(wr)

    def read(self, dst, dmr, src, smr, length):
        """RDMA READ: the device reads remote @src (@smr) into local @dst (@dmr)."""
        wr = send_wr(2, e.IBV_WR_RDMA_READ, [SGE(dst, length, dmr.lkey)])
        wr.set_wr_rdma(smr.rkey, src)
        return self.run(wr)

    def send(self, src, smr, dst, dmr, length):
        self.qb.post_recv(RecvWR(wr_id=3, num_sge=1, sg=[SGE(dst, length, dmr.lkey)]))
        status = self.run(send_wr(3, e.IBV_WR_SEND, [SGE(src, length, smr.lkey)]))
        (wc,) = poll(self.cqb)
        assert wc.status == status and (status or wc.byte_len == length), wc
        return status

    def close(self):
        self.ctx.close()


@pytest.fixture
def lp():
    p = Loop()
    yield p
    p.close()


class Scratch:
    """An ordinary ODP buffer for the other end of each transfer."""

    def __init__(self, lp, length):
        self.length = length
        self.addr = anon_map(length)
        self.mr = lp.mr(self.addr, length)

    def close(self):
        self.mr.close()
        unmap(self.addr, self.length)


@pytest.fixture
def scratch(lp):
    s = Scratch(lp, 4 << 20)
    yield s
    s.close()


OK = e.IBV_WC_SUCCESS


def device_reads(lp, scratch, addr, mr, length):
    """What the device reads at @addr (RDMA READ into scratch, scratch cleared first)."""
    ctypes.memset(scratch.addr, 0xee, length)
    assert lp.read(scratch.addr, scratch.mr, addr, mr, length) == OK
    return get(scratch.addr, length)


def device_writes(lp, scratch, addr, mr, buf):
    """The device writes @buf at @addr (RDMA WRITE from scratch)."""
    put(scratch.addr, buf)
    assert lp.write(scratch.addr, scratch.mr, addr, mr, len(buf)) == OK


def device_written(lp, scratch, length, seed, access=ODP):
    """A new buffer with an MR over it, filled by the device (its mirror holds its pages,
    writable): (address, MR, content)."""
    buf = anon_map(length)
    mr = lp.mr(buf, length, access)
    content = data(length, seed)
    device_writes(lp, scratch, buf, mr, content)
    return buf, mr, content


# 1. fork without MADV_DONTFORK ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["odp", "pinless", "odp-thp"])
def test_fork_parent_and_child_keep_their_own_data(lp, scratch, kind):
    if kind == "odp-thp":  # a huge leaf, write-protected by fork, COW broken per 4 KiB page
        length = HUGE
        buf, p = thp_buffer(length, 1)
        mr = lp.mr(buf, length)
        assert device_reads(lp, scratch, buf, mr, length) == p
    else:
        length = 64 * PAGE
        buf, mr, p = device_written(lp, scratch, length, 1, ODP if kind == "odp" else ALL)
    assert get(buf, length) == p
    to_child, from_parent = os.pipe()  # (read end, write end)
    from_child, to_parent = os.pipe()
    before = counters()
    pid = os.fork()
    if pid == 0:  # the child: its own copy of the pages, nothing of verbs used
        ok = get(buf, length) == p
        put(buf, data(length, 2))
        os.write(to_parent, b"w")
        os.read(to_child, 1)
        ok = ok and get(buf, length) == data(length, 2)
        os._exit(0 if ok else 1)
    try:
        assert os.read(from_child, 1) == b"w"
        mid = counters()
        # fork write-protected the parent's pages: the mirror was invalidated
        assert delta(before, mid)["page_invalidations"] >= 1, delta(before, mid)
        # the child's writes went to its copies: the device still reads the parent's data
        assert device_reads(lp, scratch, buf, mr, length) == p
        # the device writes the first half: breaks COW in the parent, the child keeps its own
        r = data(length // 2, 3)
        device_writes(lp, scratch, buf, mr, r)
        assert get(buf, length // 2) == r
        # the parent's CPU writes the second half (COW break): that is what the device reads
        q = data(length // 2, 4)
        put(buf + length // 2, q)
        assert device_reads(lp, scratch, buf, mr, length) == r + q
        after = counters()
        d = delta(mid, after)
        # The child copied every page, so the parent's are its own again: its write faults
        # (the device's and the CPU's) reuse them without an invalidation; the device's
        # read-only entries are replaced by its write faults.
        assert d["page_faults"] >= 2, d
    finally:
        os.write(from_parent, b"c")
        _, status = os.waitpid(pid, 0)
    assert status == 0, "the child's copy changed under it"
    mr.close()
    unmap(buf, length)


# 2. mremap --------------------------------------------------------------------------------

@BOTH
def test_mremap_away_and_a_new_mapping_at_the_old_address(lp, scratch, access):
    length = 32 * PAGE
    old, mr, p = device_written(lp, scratch, length, 5, access)
    assert device_reads(lp, scratch, old, mr, length) == p
    new = anon_map(length)
    before = counters()
    assert libc.mremap(old, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, new) == new
    assert delta(before, counters())["page_invalidations"] >= 1
    assert get(new, length) == p  # the pages moved
    q = data(length, 6)
    anon_map(length, addr=old)
    put(old, q)
    assert device_reads(lp, scratch, old, mr, length) == q
    r = data(length, 7)
    device_writes(lp, scratch, old, mr, r)
    assert get(old, length) == r and get(new, length) == p
    mr.close()
    unmap(old, length)
    unmap(new, length)


def test_mremap_leaves_a_hole_the_device_cannot_use(lp, scratch):
    length = 8 * PAGE
    old = anon_map(length)
    mr = lp.mr(old, length)
    device_writes(lp, scratch, old, mr, data(length, 8))
    new = libc.mremap(old, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, anon_map(length))
    assert lp.read(scratch.addr, scratch.mr, old, mr, length) == e.IBV_WC_REM_ACCESS_ERR
    assert get(new, length) == data(length, 8)
    mr.close()
    unmap(new, length)


# 3. page migration -------------------------------------------------------------------------

def numa_nodes():
    return sorted(int(n[4:]) for n in os.listdir("/sys/devices/system/node")
                  if re.fullmatch(r"node\d+", n))


def migrate(addr):
    """Move the page at @addr to another physical page; returns how, or skips."""
    nodes = numa_nodes()
    if len(nodes) > 1:
        cur = ctypes.c_int(-1)
        pages = (ctypes.c_void_p * 1)(addr)
        libc.syscall(SYS_MOVE_PAGES, 0, 1, pages, None, ctypes.byref(cur), 0)
        target = (ctypes.c_int * 1)(next(n for n in nodes if n != cur.value))
        status = (ctypes.c_int * 1)(-1)
        assert libc.syscall(SYS_MOVE_PAGES, 0, 1, pages, target, status, 0) == 0
        assert status[0] == target[0], status[0]
        return "move_pages"
    # One node: soft offline migrates the page's contents to a new page (memory-failure.c).
    err = madvise(addr, PAGE, MADV_SOFT_OFFLINE)
    if err:
        pytest.skip(f"one NUMA node and MADV_SOFT_OFFLINE fails ({os.strerror(err)}): "
                    "no way to migrate a page in this guest")
    return "soft offline"


def test_page_migration_is_followed(lp, scratch):
    length = 16 * PAGE
    buf = anon_map(length)
    mr = lp.mr(buf, length)
    p = data(length, 9)
    put(buf, p)
    assert device_reads(lp, scratch, buf, mr, length) == p  # mirror holds the old pages
    target = buf + 5 * PAGE
    old = pfn(target)
    assert old, "pagemap shows no PFN (not root?)"
    before = counters()
    how = migrate(target)
    assert pfn(target) not in (None, old), f"{how} did not move the page"
    assert delta(before, counters())["page_invalidations"] >= 1
    assert device_reads(lp, scratch, buf, mr, length) == p
    # the CPU writes the new page: the device must not read the old one any more
    q = data(PAGE, 10)
    put(target, q)
    assert device_reads(lp, scratch, target, mr, PAGE) == q
    r = data(PAGE, 11)
    device_writes(lp, scratch, target, mr, r)
    assert get(target, PAGE) == r
    print(f"migrated by {how}: pfn {old:#x} -> {pfn(target):#x}")
    mr.close()
    unmap(buf, length)


# 4. THP and hugetlbfs ----------------------------------------------------------------------

@pytest.fixture
def thp():
    path = "/sys/kernel/mm/transparent_hugepage/enabled"
    if not os.path.exists(path):
        pytest.skip("kernel without transparent huge pages")
    saved = re.search(r"\[(\w+)\]", read_sys(path)).group(1)
    if saved == "never":
        write_sys(path, "madvise")
    yield
    write_sys(path, saved)


def thp_buffer(length, seed):
    """A 2 MiB aligned buffer of @length backed by transparent huge pages: (address, content)."""
    buf = aligned_map(length)
    assert madvise(buf, length, MADV_HUGEPAGE) == 0
    content = data(length, seed)
    put(buf, content)
    if smaps_kb(buf, "AnonHugePages") != length >> 10:
        pytest.skip("the kernel gave no huge pages for an aligned MADV_HUGEPAGE range")
    return buf, content


def test_thp_split_and_collapse_are_followed(lp, scratch, thp):
    length = HUGE
    buf, p = thp_buffer(length, 12)
    mr = lp.mr(buf, length)
    assert device_reads(lp, scratch, buf, mr, length) == p
    # split: drop one 4 KiB page inside the huge page
    before = counters()
    dontneed(buf + 7 * PAGE, PAGE)
    assert smaps_kb(buf, "AnonHugePages") == 0, "the huge page was not split"
    assert delta(before, counters())["page_invalidations"] >= 1
    expect = p[:7 * PAGE] + bytes(PAGE) + p[8 * PAGE:]
    assert device_reads(lp, scratch, buf, mr, length) == expect
    q = data(PAGE, 13)
    device_writes(lp, scratch, buf + 7 * PAGE, mr, q)
    expect = p[:7 * PAGE] + q + p[8 * PAGE:]
    assert get(buf, length) == expect
    # collapse it back into a huge page (MADV_COLLAPSE, 6.1+): copies into a new page
    before = counters()
    err = madvise(buf, length, MADV_COLLAPSE)
    assert err == 0, f"MADV_COLLAPSE: {os.strerror(err)}"
    assert smaps_kb(buf, "AnonHugePages") == 2048
    assert delta(before, counters())["page_invalidations"] >= 1
    assert device_reads(lp, scratch, buf, mr, length) == expect
    r = data(length, 14)
    put(buf, r)  # the CPU writes the new huge page
    assert device_reads(lp, scratch, buf, mr, length) == r
    mr.close()
    unmap(buf, length)


@pytest.fixture
def hugetlb():
    path = "/proc/sys/vm/nr_hugepages"
    saved = int(read_sys(path))
    write_sys(path, saved + 2)
    if int(read_sys(path)) < saved + 2:
        write_sys(path, saved)
        pytest.skip("could not reserve two 2 MiB huge pages")
    yield
    write_sys(path, saved)


@BOTH
def test_hugetlbfs_buffer(lp, scratch, hugetlb, access):
    length = HUGE
    buf = libc.mmap(None, length, PROT_RW,
                    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB, -1, 0)
    assert buf not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    put(buf, b"\0")
    mr = lp.mr(buf, length, access)
    p = data(length, 15)
    device_writes(lp, scratch, buf, mr, p)
    assert get(buf, length) == p
    q = data(length, 16)
    put(buf, q)
    assert device_reads(lp, scratch, buf, mr, length) == q
    # SEND out of it and into it
    assert lp.send(buf + 3, mr, scratch.addr, scratch.mr, 100000) == OK
    assert get(scratch.addr, 100000) == q[3:100003]
    # dropping the huge page (MADV_DONTNEED works on hugetlb since 5.18) is followed
    before = counters()
    assert madvise(buf, length, MADV_DONTNEED) == 0
    assert delta(before, counters())["page_invalidations"] >= 1
    before = counters()
    assert device_reads(lp, scratch, buf, mr, length) == bytes(length)
    d = delta(before, counters())
    assert d["page_faults"] == 1 and d["page_faults_pages"] == 512, d  # one 2 MiB leaf
    mr.close()
    unmap(buf, length)


def test_thp_faults_once_per_2mib(lp, scratch, thp):
    length = 2 * HUGE
    buf, p = thp_buffer(length, 17)
    mr = lp.mr(buf, length)
    device_writes(lp, scratch, scratch.addr, scratch.mr, bytes(length))  # scratch present
    before = counters()
    assert device_reads(lp, scratch, buf, mr, length) == p
    d = delta(before, counters())
    assert d["page_faults"] == 2 and d["page_faults_pages"] == 1024, d
    assert d["page_access_faults"] == 2, d
    # a write needs writable entries: the huge leaves are writable already (no fault)
    before = counters()
    device_writes(lp, scratch, buf + HUGE - 8, mr, b"x" * 16)
    assert delta(before, counters())["page_faults"] == 0
    assert get(buf + HUGE - 8, 16) == b"x" * 16
    mr.close()
    unmap(buf, length)


FAULT_WINDOW = "/sys/module/hmr/parameters/fault_window"


def test_fault_window_is_a_module_parameter(lp, scratch):
    saved = read_sys(FAULT_WINDOW)
    assert saved == "16"
    for bad in (0, 513):
        with pytest.raises(OSError):
            write_sys(FAULT_WINDOW, bad)
    length = 64 * PAGE
    device_writes(lp, scratch, scratch.addr, scratch.mr, bytes(length))  # scratch present
    try:
        for window in (4, 64, 1):
            write_sys(FAULT_WINDOW, window)
            buf = anon_map(length)
            p = data(length, window)
            put(buf, p)
            mr = lp.mr(buf, length)
            before = counters()
            assert device_reads(lp, scratch, buf, mr, length) == p
            d = delta(before, counters())
            assert d["page_faults"] == 64 // window and d["page_faults_pages"] == 64, d
            mr.close()
            unmap(buf, length)
    finally:
        write_sys(FAULT_WINDOW, saved)


def test_a_small_access_faults_only_its_pages_and_maps_present_neighbours(lp, scratch):
    """A 4 KiB WRITE into an untouched buffer faults that one page, not a whole window: the
    window's other pages are installed only where the CPU already has them (no allocation),
    so a later access to those needs no fault, and the untouched pages stay unallocated."""
    length = 16 * PAGE  # one fault window
    buf = anon_map(length)
    put(buf + 8 * PAGE, data(8 * PAGE, 30))  # the CPU touches pages 8..15 only
    mr = lp.mr(buf, length)
    device_writes(lp, scratch, scratch.addr, scratch.mr, bytes(length))  # scratch present
    try:
        before = counters()
        device_writes(lp, scratch, buf, mr, data(PAGE, 31))
        d = delta(before, counters())
        assert d["page_faults"] == 1 and d["page_faults_pages"] == 1 + 8, d
        assert pfn(buf) is not None
        assert [pfn(buf + i * PAGE) for i in range(1, 8)] == [None] * 7  # not allocated
        before = counters()
        device_writes(lp, scratch, buf + 8 * PAGE, mr, data(8 * PAGE, 32))
        d = delta(before, counters())
        assert d["page_access_faults"] == 0 and d["page_faults"] == 0, d
        assert get(buf, PAGE) == data(PAGE, 31)
        assert get(buf + 8 * PAGE, 8 * PAGE) == data(8 * PAGE, 32)
    finally:
        mr.close()
        unmap(buf, length)


# 5. read-only mappings ---------------------------------------------------------------------

def read_only_buffers(length, seed):
    """(address, content, content after MADV_DONTNEED) of a private anonymous buffer made
    read-only and of a shared file mapping opened read-only."""
    anon = anon_map(length)
    put(anon, data(length, seed))
    assert libc.mprotect(anon, length, mmap.PROT_READ) == 0
    fd = os.memfd_create("hmr-ro")
    os.write(fd, data(length, seed + 1))
    shared = libc.mmap(None, length, mmap.PROT_READ, MAP_SHARED, fd, 0)
    assert shared not in (None, ctypes.c_void_p(-1).value)
    os.close(fd)
    return [(anon, data(length, seed), bytes(length)),
            (shared, data(length, seed + 1), data(length, seed + 1))]


@BOTH
def test_read_only_mapping_is_a_source_without_a_fault_loop(lp, scratch, access):
    length = 16 * PAGE  # one fault window
    ctypes.memset(scratch.addr, 0, length)
    device_writes(lp, scratch, scratch.addr, scratch.mr, bytes(length))  # scratch present
    for buf, content, dropped in read_only_buffers(length, 20):
        mr = lp.mr(buf, length, e.IBV_ACCESS_REMOTE_READ | (access & e.IBV_ACCESS_ON_DEMAND))
        before = counters()
        assert lp.send(buf, mr, scratch.addr, scratch.mr, length) == OK
        assert get(scratch.addr, length) == content
        d = delta(before, counters())
        assert d["page_faults"] == 1 and d["page_faults_pages"] == 16, d
        assert d["page_access_faults"] == 1, d
        # RDMA READ responses out of it: present now, no fault at all
        before = counters()
        assert device_reads(lp, scratch, buf, mr, length) == content
        d = delta(before, counters())
        assert d["page_faults"] == 0 and d["page_access_faults"] == 0, d
        # dropped (the file's pages stay in the page cache): one refault, read-only again
        assert madvise(buf, length, MADV_DONTNEED) == 0
        before = counters()
        assert device_reads(lp, scratch, buf, mr, length) == dropped
        d = delta(before, counters())
        assert d["page_faults"] == 1 and d["page_access_faults"] == 1, d
        mr.close()
        unmap(buf, length)


# 6. reclaim and swap -----------------------------------------------------------------------

ZRAM = "/dev/zram0"


@pytest.fixture
def swap():
    """Swap on a zram device for the test only (other tests share the boot)."""
    if not os.path.exists("/sys/block/zram0"):
        r = subprocess.run(["modprobe", "zram", "num_devices=1"], capture_output=True, text=True)
        if r.returncode or not os.path.exists("/sys/block/zram0"):
            pytest.skip(f"no zram in this kernel: {r.stderr.strip()}")
    write_sys("/sys/block/zram0/reset", 1)
    write_sys("/sys/block/zram0/disksize", 512 << 20)
    subprocess.run(["mkswap", ZRAM], check=True, capture_output=True)
    subprocess.run(["swapon", ZRAM], check=True)
    try:
        yield
    finally:
        subprocess.run(["swapoff", ZRAM], check=True, timeout=120)
        write_sys("/sys/block/zram0/reset", 1)


def test_swapped_out_pages_come_back_intact(lp, scratch, swap):
    length = 4 << 20
    buf, mr, p = device_written(lp, scratch, length, 40)  # pages the CPU never wrote
    before = counters()
    assert madvise(buf, length, MADV_PAGEOUT) == 0
    out = sum(swapped(buf + i) for i in range(0, length, PAGE))
    assert out >= length // PAGE * 9 // 10, f"only {out} pages swapped out"
    assert smaps_kb(buf, "Swap") >= out * 4
    mid = counters()
    assert delta(before, mid)["page_invalidations"] >= 1
    assert device_reads(lp, scratch, buf, mr, length) == p
    d = delta(mid, counters())
    assert d["page_faults"] >= out // 16 and d["page_faults_pages"] >= out, d
    assert sum(swapped(buf + i) for i in range(0, length, PAGE)) < out  # swapped back in
    mr.close()
    unmap(buf, length)


CGROUP = "/sys/fs/cgroup"
BIG_CHILD = r"""
import ctypes, struct, sys
from test_hmr_odp_paths import Loop, Scratch, anon_map, get, put
MIB = 1 << 20
length, seed = int(sys.argv[1]), int(sys.argv[2])

def chunk(i):  # a compressible MiB, different for every MiB and every page
    return b"".join(struct.pack("<QQ", seed, i * 256 + k) * 256 for k in range(256))

lp = Loop()
scratch = Scratch(lp, MIB)
buf = anon_map(length)
mr = lp.mr(buf, length)
for i in range(length // MIB):
    put(scratch.addr, chunk(i))
    status = lp.write(scratch.addr, scratch.mr, buf + i * MIB, mr, MIB)
    assert status == 0, f"WRITE of MiB {i}: status {status}"
for i in range(length // MIB):
    ctypes.memset(scratch.addr, 0, MIB)
    status = lp.read(scratch.addr, scratch.mr, buf + i * MIB, mr, MIB)
    assert status == 0, f"READ of MiB {i}: status {status}"
    assert get(scratch.addr, MIB) == chunk(i), f"MiB {i} differs"
with open("/proc/self/status") as f:
    print([line.split()[1] for line in f if line.startswith("VmSwap")][0], flush=True)
"""


def test_odp_mr_larger_than_the_memory_the_process_may_use(swap, tmp_path):
    """A 128 MiB ODP MR written and read back by the device in a cgroup limited to 48 MiB."""
    if not os.path.exists(CGROUP + "/cgroup.controllers"):
        r = subprocess.run(["mount", "-t", "cgroup2", "none", CGROUP], capture_output=True,
                           text=True)
        if r.returncode:
            pytest.skip(f"no cgroup2 to limit memory: {r.stderr.strip()}")
    if "memory" not in read_sys(CGROUP + "/cgroup.controllers"):
        pytest.skip("cgroup2 without the memory controller")
    write_sys(CGROUP + "/cgroup.subtree_control", "+memory")
    group = CGROUP + "/hmr-odp-big"
    os.makedirs(group, exist_ok=True)
    try:
        write_sys(group + "/memory.max", 48 << 20)
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
        child = subprocess.Popen(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1" "$2" "$3"',
             sys.executable, BIG_CHILD, str(128 << 20), "7"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        assert int(out.split()[-1]) > 32 << 10, f"VmSwap {out} kB: nothing was swapped"
    finally:
        os.rmdir(group)


# 7. KSM ------------------------------------------------------------------------------------

KSM = "/sys/kernel/mm/ksm/"


@pytest.fixture
def ksm():
    if not os.path.exists(KSM + "run"):
        pytest.skip("kernel without KSM")
    names = ("run", "pages_to_scan", "sleep_millisecs")
    saved = {n: read_sys(KSM + n) for n in names}
    write_sys(KSM + "pages_to_scan", 5000)
    write_sys(KSM + "sleep_millisecs", 10)
    write_sys(KSM + "run", 1)
    yield
    for n in reversed(names):
        write_sys(KSM + n, saved[n])


def test_ksm_merged_pages_are_not_written_through(lp, scratch, ksm):
    length = 16 * PAGE
    a, b = anon_map(length), anon_map(length)
    p = data(length, 50)
    put(a, p)
    put(b, p)
    mra, mrb = lp.mr(a, length), lp.mr(b, length)
    device_writes(lp, scratch, a, mra, p)  # both mirrors hold their own pages, writable
    device_writes(lp, scratch, b, mrb, p)
    before = counters()
    assert madvise(a, length, MADV_MERGEABLE) == 0 and madvise(b, length, MADV_MERGEABLE) == 0
    end = time.time() + 60
    while time.time() < end and any(pfn(a + i) != pfn(b + i) for i in range(0, length, PAGE)):
        time.sleep(0.1)
    assert all(pfn(a + i) == pfn(b + i) for i in range(0, length, PAGE)), "KSM did not merge"
    assert int(read_sys(KSM + "pages_sharing")) >= 16
    assert delta(before, counters())["page_invalidations"] >= 2
    assert device_reads(lp, scratch, a, mra, length) == p
    assert device_reads(lp, scratch, b, mrb, length) == p
    q = data(length, 51)
    device_writes(lp, scratch, a, mra, q)  # breaks the sharing for a only
    assert get(a, length) == q and get(b, length) == p
    assert device_reads(lp, scratch, b, mrb, length) == p
    assert pfn(a) != pfn(b)
    madvise(a, length, MADV_UNMERGEABLE)
    madvise(b, length, MADV_UNMERGEABLE)
    mra.close()
    mrb.close()
    unmap(a, length)
    unmap(b, length)


# 8. invalidation storm ---------------------------------------------------------------------

def test_invalidation_storm(lp, scratch):
    length = 1 << 20
    dst = anon_map(length)
    mr = lp.mr(dst, length)
    p = data(length, 60)
    put(scratch.addr, p)
    stop = threading.Event()
    drops = []

    def storm():
        n = 0
        while not stop.is_set():
            libc.madvise(dst, length, MADV_DONTNEED)
            n += 1
        drops.append(n)

    before = counters()
    t = threading.Thread(target=storm)
    t.start()
    wrs = 0
    try:
        # 4 s of it. Whether an invalidation lands on a chunk in flight here is luck (the
        # post thread holds the GIL across the doorbell): test_fence_wait_time_is_counted
        # makes fences wait from C threads.
        start = time.time()
        while time.time() < start + 4:
            for i in range(8):
                wr = send_wr(i, e.IBV_WR_RDMA_WRITE, [SGE(scratch.addr, length, scratch.mr.lkey)])
                wr.set_wr_rdma(mr.rkey, dst)
                lp.qa.post_send(wr)
            wcs = poll(lp.cqa, 8, timeout=60)
            assert [wc.status for wc in wcs] == [OK] * 8
            wrs += 8
    finally:
        stop.set()
        t.join(timeout=30)
    assert not t.is_alive()
    assert lp.write(scratch.addr, scratch.mr, dst, mr, length) == OK
    assert get(dst, length) == p
    assert device_reads(lp, scratch, dst, mr, length) == p
    d = delta(before, counters())
    # Only the MADV_DONTNEEDs that found pages in the mirror count (most find them gone).
    assert drops[0] >= 1 and d["page_invalidations"] >= 1, (d, drops)
    assert d["page_invalidations"] <= drops[0], (d, drops)
    assert bool(d["page_fence_waits"]) == bool(d["page_fence_wait_ns"]), d
    print(f"storm: {wrs} WRs, {drops[0]} MADV_DONTNEEDs, {d}")
    mr.close()
    unmap(dst, length)


CHUNK_HOLD = "/sys/module/hmr/parameters/chunk_hold_us"


@pytest.fixture
def chunk_hold():
    """Each chunk the DMA engine copies stays in flight 1 ms (module parameter chunk_hold_us):
    an invalidation during a transfer then finds one in flight almost surely."""
    write_sys(CHUNK_HOLD, 1000)
    yield
    write_sys(CHUNK_HOLD, 0)


def test_fence_wait_time_is_counted(lp, chunk_hold):
    """MADV_DONTNEED of a destination while an 8 MiB WRITE streams into it (each chunk held in
    flight 1 ms): the invalidations wait for the chunk in flight, and page_fence_waits and
    page_fence_wait_ns rise together; the WRITE still completes (it refaults)."""
    length = 8 << 20
    src, dst = anon_map(length), anon_map(length)
    put(src, data(length, 50))
    smr, dmr = lp.mr(src, length), lp.mr(dst, length)
    try:
        before = counters()
        wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [SGE(src, length, smr.lkey)])
        wr.set_wr_rdma(dmr.rkey, dst)
        lp.qa.post_send(wr)  # over 256 KiB: runs in hmr_wq, a chunk at a time
        wcs, drops = [], 0
        while not wcs:
            assert madvise(dst, length, MADV_DONTNEED) == 0
            drops += 1
            time.sleep(0.005)
            wcs = lp.cqa.poll(1)[1]
        assert wcs[0].status == OK, wcs[0]
        d = delta(before, counters())
        assert drops >= 2 and 1 <= d["page_invalidations"] <= drops, (drops, d)
        assert d["page_fence_waits"] >= 1 and d["page_fence_wait_ns"] > 0, (drops, d)
    finally:
        smr.close()
        dmr.close()
        unmap(src, length)
        unmap(dst, length)


# 9. exit with live MRs and work requests in flight -----------------------------------------
# A work request runs in the doorbell system call of the thread that posts it: "in flight at
# exit" is a WR executing in one thread while another exits the process (own), or a WR of
# another process writing into the MR of the process that exits or is killed (peer).

OWN_CHILD = r"""
import os, sys, threading, time
from test_hmr_odp_paths import Loop, Scratch, SGE, send_wr, e, libc, MADV_DONTNEED, poll
lp = Loop()
src, dst = Scratch(lp, 4 << 20), Scratch(lp, 4 << 20)
done = []
def storm():
    while True:
        libc.madvise(dst.addr, 4 << 20, MADV_DONTNEED)
def stream():
    for i in range(1 << 30):
        wr = send_wr(i, e.IBV_WR_RDMA_WRITE, [SGE(src.addr, 1 << 20, src.mr.lkey)])
        wr.set_wr_rdma(dst.mr.rkey, dst.addr + (i % 4 << 20))
        lp.qa.post_send(wr)
        done.append(poll(lp.cqa)[0].status)
threading.Thread(target=storm, daemon=True).start()
threading.Thread(target=stream, daemon=True).start()
while len(done) < 4:
    time.sleep(0.01)
assert done == [0] * len(done), done
print(os.getpid(), flush=True)
if sys.argv[1] == "exit":
    os._exit(0)
time.sleep(120)
"""

PEER_CHILD = r"""
import os, sys, time
from test_hmr_odp_paths import Loop, ODP, anon_map, connect
lp = Loop(pair=False)
length = 64 << 20
addr = anon_map(length)
mr = lp.mr(addr, length, ODP)
print(os.getpid(), lp.qb.qp_num, mr.rkey, addr, flush=True)
connect(lp.ctx, lp.qb, int(sys.stdin.readline()))
print("ready", flush=True)
if sys.stdin.readline().startswith("exit"):
    os._exit(0)
time.sleep(120)
"""


def kernel_problems():
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if re.search(r"WARNING|BUG|Oops|hung_task|refcount_t|leak", line)]


def child_python(script, *args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen([sys.executable, "-c", script] + list(args), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def end_child(child, how):
    if how == "kill":
        child.kill()
    else:
        child.stdin.write("exit\n")
        child.stdin.flush()
    child.wait(timeout=60)
    assert child.returncode == (0 if how == "exit" else -9), child.stderr.read()


def check_gone(pid, problems):
    """Nothing of @pid is left on the device, the kernel log is clean, hmr0 still works."""
    for res in ("mr", "qp"):
        out = subprocess.run(["rdma", "resource", "show", res], capture_output=True,
                             text=True, check=True).stdout
        assert f"pid {pid} " not in out, out
    assert kernel_problems() == problems
    lp = Loop()
    s = Scratch(lp, 64 * PAGE)
    t = Scratch(lp, 64 * PAGE)
    put(s.addr, data(64 * PAGE, 70))
    assert lp.write(s.addr, s.mr, t.addr, t.mr, 64 * PAGE) == OK
    assert get(t.addr, 64 * PAGE) == data(64 * PAGE, 70)
    s.close()
    t.close()
    lp.close()


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_exit_with_work_in_flight_in_another_thread(how):
    problems = kernel_problems()
    child = child_python(OWN_CHILD, how)
    pid = int(child.stdout.readline())
    if how == "kill":
        child.kill()
    child.wait(timeout=60)
    assert child.returncode == (0 if how == "exit" else -9), child.stderr.read()
    check_gone(pid, problems)


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_exit_of_a_process_whose_mr_another_writes(how):
    problems = kernel_problems()
    lp = Loop(pair=False)
    child = child_python(PEER_CHILD)
    pid, qpn, rkey, addr = map(int, child.stdout.readline().split())
    connect(lp.ctx, lp.qa, qpn)  # a's QP now talks to the child's
    child.stdin.write(f"{lp.qa.qp_num}\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ready\n"
    src = Scratch(lp, 1 << 20)
    put(src.addr, data(1 << 20, 71))
    statuses = []

    def stream():
        for i in range(1 << 30):
            wr = send_wr(i, e.IBV_WR_RDMA_WRITE, [SGE(src.addr, 1 << 20, src.mr.lkey)])
            wr.set_wr_rdma(rkey, addr + (i % 64 << 20))
            lp.qa.post_send(wr)
            (wc,) = poll(lp.cqa, timeout=60)
            statuses.append(wc.status)
            if wc.status != OK:
                break

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    end = time.time() + 60
    while len(statuses) < 4 and time.time() < end:
        time.sleep(0.01)
    end_child(child, how)
    t.join(timeout=120)
    assert not t.is_alive(), "the writer hangs"
    # writes succeed until the child is gone, then the peer is an error: its memory (the
    # fault finds no mm) or its QP (no answer: retries exceeded)
    assert len(statuses) > 4 and statuses[:-1] == [OK] * (len(statuses) - 1), statuses
    assert statuses[-1] in (e.IBV_WC_REM_ACCESS_ERR, e.IBV_WC_RETRY_EXC_ERR), statuses
    print(f"{how}: {len(statuses) - 1} writes, then {statuses[-1]}")
    src.close()
    lp.close()
    check_gone(pid, problems)
