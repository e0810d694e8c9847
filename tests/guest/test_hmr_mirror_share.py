"""One mirror per process on hmr0, shared by all of that process's MRs (Documentation.md,
"One mirror per process"): pages faulted through one MR are present for every MR over them,
rights and keys stay per MR, an invalidation costs the same with one MR or 10,000, an MR's
deregistration drops nothing another MR (or a later registration) uses, a forked child and
another process get mirrors of their own. Each test checks the data through RDMA on loopback
QPs and the device counters that show which work was (not) done."""
import os
import subprocess
import threading

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import anon_map, e, quiet_map, unmap  # noqa: E402
from test_hmr_odp import ODP, counters, delta, dontneed  # noqa: E402
from test_hmr_odp_paths import (OK, Loop, Scratch, child_python, data, device_reads,  # noqa: E402
                                device_writes, get, kernel_problems, put)
from pyverbs.mr import MR  # noqa: E402

PAGE = 4096
READ_ONLY = e.IBV_ACCESS_REMOTE_READ | e.IBV_ACCESS_ON_DEMAND
FAULTS = ("page_faults", "page_faults_pages", "page_access_faults")


@pytest.fixture
def lp():
    p = Loop()
    yield p
    p.close()


@pytest.fixture
def scratch(lp):
    s = Scratch(lp, 4 << 20)
    put(s.addr, bytes(4 << 20))  # resident: the scratch side of a transfer faults nothing
    assert lp.write(s.addr, s.mr, s.addr + (2 << 20), s.mr, 2 << 20) == OK
    assert lp.write(s.addr + (2 << 20), s.mr, s.addr, s.mr, 2 << 20) == OK
    yield s
    s.close()


def no_faults(before):
    d = delta(before, counters())
    assert all(d[k] == 0 for k in FAULTS), d
    return d


def remote_status(wr_kind, mr, addr, length):
    """A READ or WRITE through @mr's rkey on a fresh loop (an error breaks the QP)."""
    lp = Loop()
    s = Scratch(lp, 64 * PAGE)
    try:
        if wr_kind == "read":
            return lp.read(s.addr, s.mr, addr, mr, length)
        return lp.write(s.addr, s.mr, addr, mr, length)
    finally:
        s.close()
        lp.close()


def test_two_mrs_over_one_buffer_share_faults_and_keep_rights_and_keys(lp, scratch):
    length = 64 * PAGE
    buf = quiet_map(length)
    rw = lp.mr(buf, length)
    p = data(length, 1)
    before = counters()
    device_writes(lp, scratch, buf, rw, p)  # faults every page, writable, through rw
    d = delta(before, counters())
    assert d["page_faults_pages"] >= 64, d
    # a read-only MR over part of the same pages: they are present for it, nothing faults
    ro = MR(lp.pd, 32 * PAGE, READ_ONLY, address=buf + 8 * PAGE)
    before = counters()
    assert device_reads(lp, scratch, buf + 8 * PAGE, ro, 32 * PAGE) == p[8 * PAGE:40 * PAGE]
    no_faults(before)
    # its rights are its own: no WRITE through it, though the mirror's entries are writable
    assert remote_status("write", ro, buf + 8 * PAGE, PAGE) == e.IBV_WC_REM_ACCESS_ERR
    assert get(buf, length) == p
    # its key reaches its window only, though the mirror holds the pages around it
    assert remote_status("read", ro, buf + 40 * PAGE, PAGE) == e.IBV_WC_REM_ACCESS_ERR
    assert remote_status("read", ro, buf + 7 * PAGE, 2 * PAGE) == e.IBV_WC_REM_ACCESS_ERR
    # one MADV_DONTNEED is one invalidation of the one mirror: both MRs refault
    before = counters()
    dontneed(buf, length)
    assert delta(before, counters())["page_invalidations"] == 1
    assert device_reads(lp, scratch, buf + 8 * PAGE, ro, 32 * PAGE) == bytes(32 * PAGE)
    assert delta(before, counters())["page_faults"] >= 1
    ro.close()
    rw.close()
    unmap(buf, length)


def test_registering_memory_the_device_mirrors_faults_nothing(lp, scratch):
    """reg -> WRITE -> dereg rounds over a resident buffer fault nothing: the pages stay in
    the process's mirror, also after the last MR over them is gone."""
    length = 1 << 20
    buf = quiet_map(length)
    first = lp.mr(buf, length)
    device_writes(lp, scratch, buf, first, data(length, 2))
    first.close()  # the last MR over buf: its pages stay mirrored
    before = counters()
    for i in range(20):
        mr = lp.mr(buf, length)
        device_writes(lp, scratch, buf, mr, data(length, 10 + i))
        mr.close()
    no_faults(before)
    assert get(buf, length) == data(length, 29)
    unmap(buf, length)


def test_10000_mrs_over_one_buffer_cost_one_invalidation(lp, scratch):
    length = 1 << 20
    buf = quiet_map(length)
    mrs = [lp.mr(buf, length) for _ in range(10000)]
    device_writes(lp, scratch, buf, mrs[0], data(length, 3))
    before = counters()
    dontneed(buf, length)
    d = delta(before, counters())
    assert d["page_invalidations"] == 1 and d["page_fence_waits"] == 0, d
    # the last MR refaults what the first had: 256 pages, once
    before = counters()
    device_writes(lp, scratch, buf, mrs[-1], data(length, 4))
    d = delta(before, counters())
    assert d["page_faults_pages"] == 256, d
    before = counters()
    assert device_reads(lp, scratch, buf, mrs[5000], length) == data(length, 4)
    no_faults(before)
    for mr in mrs:
        mr.close()
    unmap(buf, length)


def test_implicit_and_explicit_mrs_share_pages(lp, scratch):
    length = 256 * PAGE
    buf = quiet_map(length)
    mr = lp.mr(buf, length)
    imr = MR(lp.pd, 0, ODP, implicit=True)
    device_writes(lp, scratch, buf, mr, data(length, 5))
    before = counters()
    assert device_reads(lp, scratch, buf, imr, length) == data(length, 5)
    no_faults(before)
    dontneed(buf, length)
    before = counters()
    device_writes(lp, scratch, buf, imr, data(length, 6))  # refaults through the implicit MR
    assert delta(before, counters())["page_faults_pages"] == 256
    before = counters()
    assert device_reads(lp, scratch, buf, mr, length) == data(length, 6)
    no_faults(before)
    imr.close()
    mr.close()
    unmap(buf, length)


def test_dereg_of_one_mr_while_another_streams_over_the_same_pages(lp, scratch):
    length = 1 << 20
    buf = anon_map(length)
    mr = lp.mr(buf, length)
    p = data(length, 7)
    put(scratch.addr, p)
    stop, statuses, rounds = threading.Event(), [], []

    def churn():  # other MRs over the same pages (another context: the same mirror) come
        other = Loop()  # and go, each used once
        s = Scratch(other, PAGE)
        n = 0
        while not stop.is_set():
            m = other.mr(buf, length)
            statuses.append(other.read(s.addr, s.mr, buf + (n % 256) * PAGE, m, PAGE))
            m.close()
            n += 1
        rounds.append(n)
        s.close()
        other.close()

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(40):
            assert lp.write(scratch.addr, scratch.mr, buf, mr, length) == OK
    finally:
        stop.set()
        t.join(timeout=60)
    assert not t.is_alive() and rounds and rounds[0] >= 1, rounds
    assert statuses == [OK] * rounds[0], statuses
    assert get(buf, length) == p
    assert device_reads(lp, scratch, buf, mr, length) == p
    mr.close()
    unmap(buf, length)


def test_forked_child_gets_a_mirror_of_its_own(lp, scratch):
    """The parent's pages are mirrored; the child's MR over the same addresses faults its own
    (its mm is another), reads the data it inherited, and writes only its own copy."""
    length = 64 * PAGE
    buf = quiet_map(length)
    mr = lp.mr(buf, length)
    device_writes(lp, scratch, buf, mr, data(length, 8))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            child = Loop()
            cs = Scratch(child, length)
            cmr = child.mr(buf, length)
            before = counters()
            ok = device_reads(child, cs, buf, cmr, length) == data(length, 8)
            ok = ok and delta(before, counters())["page_faults"] >= 1
            device_writes(child, cs, buf, cmr, data(length, 9))
            ok = ok and get(buf, length) == data(length, 9)
            code = 0 if ok else 1
        finally:
            os.write(w, b"%d" % code)
            os._exit(code)
    os.close(w)
    assert os.read(r, 4) == b"0"
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert get(buf, length) == data(length, 8)
    assert device_reads(lp, scratch, buf, mr, length) == data(length, 8)
    mr.close()
    unmap(buf, length)


OTHER_PROCESS = r"""
import ctypes, sys
from test_hmr_util import libc, PROT_RW
from test_hmr_odp_paths import Loop, Scratch, data, device_reads, get, put
from test_hmr_odp import counters, delta
addr, length = int(sys.argv[1]), int(sys.argv[2])
MAP_FIXED_NOREPLACE = 0x100000
got = libc.mmap(addr, length, PROT_RW, 0x22 | MAP_FIXED_NOREPLACE, -1, 0)
assert got == addr, got
put(addr, data(length, 11))
lp = Loop()
s = Scratch(lp, length)
mr = lp.mr(addr, length)
before = counters()
assert device_reads(lp, s, addr, mr, length) == data(length, 11)
assert delta(before, counters())["page_faults"] >= 1
print("ok", flush=True)
"""


def test_two_processes_never_share_a_mirror(lp, scratch):
    """Another process with its own memory at the very addresses this one has mirrored: its MR
    faults its own pages and the device reads its data, not ours."""
    length = 64 * PAGE
    buf = quiet_map(length)
    mr = lp.mr(buf, length)
    device_writes(lp, scratch, buf, mr, data(length, 10))
    child = child_python(OTHER_PROCESS, str(buf), str(length))
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and out.strip() == "ok", err
    assert device_reads(lp, scratch, buf, mr, length) == data(length, 10)
    mr.close()
    unmap(buf, length)


EXITER = r"""
import os
from test_hmr_util import quiet_map
from test_hmr_odp_paths import Loop, Scratch, data, device_writes
lp = Loop()
s = Scratch(lp, 1 << 20)
buf = quiet_map(1 << 20)
mrs = [lp.mr(buf, 1 << 20) for _ in range(3)]
device_writes(lp, s, buf, mrs[1], data(1 << 20, 12))
print(os.getpid(), flush=True)
os._exit(0)
"""


def test_exit_with_mrs_sharing_a_mirror_leaves_nothing():
    problems = kernel_problems()
    child = child_python(EXITER)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    pid = int(out.split()[0])
    for res in ("mr", "qp"):
        show = subprocess.run(["rdma", "resource", "show", res], capture_output=True,
                              text=True, check=True).stdout
        assert f"pid {pid} " not in show, show
    assert kernel_problems() == problems
    lp = Loop()  # the device still works

    s, t = Scratch(lp, 16 * PAGE), Scratch(lp, 16 * PAGE)
    put(s.addr, data(16 * PAGE, 13))
    assert lp.write(s.addr, s.mr, t.addr, t.mr, 16 * PAGE) == OK
    assert get(t.addr, 16 * PAGE) == data(16 * PAGE, 13)
    s.close()
    t.close()
    lp.close()
