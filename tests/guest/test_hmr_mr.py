"""hmr0 memory regions: registration without pinning, EFAULT for unmapped memory, keys."""
import ctypes
import errno
import mmap
import os
import resource

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import anon_map as anon, e, unmap  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402

LOCAL_RW = e.IBV_ACCESS_LOCAL_WRITE
ALL = (e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ |
       e.IBV_ACCESS_REMOTE_ATOMIC)



@pytest.fixture
def pd():
    with Context(name="hmr0") as ctx:
        yield PD(ctx)


def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def locked_kb():
    with open("/proc/self/status") as f:
        vals = {line.split(":")[0]: int(line.split()[1]) for line in f
                if line.startswith(("VmLck:", "VmPin:"))}
    return vals.get("VmLck", 0) + vals.get("VmPin", 0)


def expect_errno(code, fn):
    with pytest.raises(PyverbsRDMAError) as ei:
        fn()
    assert ei.value.error_code == code, ei.value


@pytest.mark.parametrize("length", [1, 4096, 5000, 1 << 20])
def test_reg_dereg(pd, length):
    mr = MR(pd, length, ALL)
    assert mr.lkey and mr.rkey and mr.length == length
    mr.close()


def test_keys_are_unique(pd):
    mrs = [MR(pd, 4096, LOCAL_RW) for _ in range(100)]
    assert len({mr.lkey for mr in mrs}) == 100
    for mr in mrs:
        mr.close()


def test_large_untouched_region_is_not_populated_or_pinned(pd):
    length = 1 << 30
    addr = anon(length)
    before = rss_kb()
    mr = MR(pd, length, ALL, address=addr)
    assert rss_kb() - before < 16 * 1024, "registration touched the pages"
    assert locked_kb() == 0
    mr.close()
    unmap(addr, length)


def test_memlock_limit_does_not_apply(pd):
    old = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, old[1]))
    try:
        mr = MR(pd, 64 << 20, ALL)
        mr.close()
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, old)


def test_unmapped_memory_is_efault(pd):
    addr = anon(3 * 4096)
    unmap(addr + 4096, 4096)  # a hole in the middle
    expect_errno(errno.EFAULT, lambda: MR(pd, 3 * 4096, LOCAL_RW, address=addr))
    expect_errno(errno.EFAULT, lambda: MR(pd, 4096, LOCAL_RW, address=addr + 4096))
    mr = MR(pd, 4096, LOCAL_RW, address=addr)  # the mapped part alone is fine
    mr.close()
    unmap(addr, 3 * 4096)


def test_read_only_memory_is_efault_for_writable_mr(pd):
    addr = anon(4096, mmap.PROT_READ)
    expect_errno(errno.EFAULT, lambda: MR(pd, 4096, LOCAL_RW, address=addr))
    mr = MR(pd, 4096, e.IBV_ACCESS_REMOTE_READ, address=addr)
    mr.close()
    unmap(addr, 4096)


def test_prot_none_is_efault(pd):
    addr = anon(4096, 0)  # PROT_NONE
    expect_errno(errno.EFAULT, lambda: MR(pd, 4096, 0, address=addr))
    unmap(addr, 4096)


def test_odp_skips_the_mapping_check(pd):
    mr = MR(pd, 4096, LOCAL_RW | e.IBV_ACCESS_ON_DEMAND, address=0x10000)  # never mapped
    mr.close()


def test_munmap_under_a_registration_then_dereg(pd):
    addr = anon(1 << 20)
    mr = MR(pd, 1 << 20, ALL, address=addr)
    ctypes.memset(addr, 0x5a, 1 << 20)
    unmap(addr, 1 << 20)  # the notifier sees the unmap; nothing holds the pages
    mr.close()


def test_fork_with_a_registration(pd):
    mr = MR(pd, 1 << 20, ALL)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    mr.close()
