"""hmr0 completion queues: creation limits, the mmap'd ring, notification, hostile mmaps."""
import errno
import mmap
import os

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from pyverbs.cq import CQ, CompChannel  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402


@pytest.fixture
def ctx():
    with Context(name="hmr0") as c:
        yield c


@pytest.mark.parametrize("cqe", [1, 2, 100, 1000])
def test_create_poll_destroy(ctx, cqe):
    cq = CQ(ctx, cqe)
    assert cq.cqe >= cqe
    assert cq.poll(4) == (0, [])
    cq.close()


def test_max_cqe_is_accepted_and_above_is_refused(ctx):
    max_cqe = ctx.query_device().max_cqe
    cq = CQ(ctx, max_cqe)
    assert cq.cqe >= max_cqe
    cq.close()
    with pytest.raises(PyverbsRDMAError) as ei:
        CQ(ctx, max_cqe + 1)
    assert ei.value.error_code == errno.EINVAL


def test_zero_and_negative_cqe_are_refused(ctx):
    for cqe in (0, -1):
        with pytest.raises(PyverbsRDMAError):
            CQ(ctx, cqe)


def test_comp_channel_and_req_notify(ctx):
    ch = CompChannel(ctx)
    cq = CQ(ctx, 16, None, ch, 0)
    cq.req_notify()
    cq.req_notify(solicited_only=True)
    assert cq.poll(1) == (0, [])
    cq.close()
    ch.close()


def test_bad_comp_vector_is_refused(ctx):
    with pytest.raises(PyverbsRDMAError):
        CQ(ctx, 16, None, None, ctx.num_comp_vectors)


def test_many_cqs(ctx):
    cqs = [CQ(ctx, 64) for _ in range(200)]
    for cq in cqs:
        assert cq.poll(1) == (0, [])
        cq.close()


def test_hostile_mmaps_of_the_command_fd(ctx):
    cq = CQ(ctx, 1)  # the first mmap entry of this context: offset 0, one page
    fd = ctx.cmd_fd
    page = mmap.PAGESIZE
    for length, offset in ((2 * page, 0), (page, 1 << 30), (page, 7 * page)):
        with pytest.raises(OSError):
            mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                      offset=offset)
    with pytest.raises(OSError):
        mmap.mmap(fd, page, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    with pytest.raises(OSError):
        mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_EXEC, offset=0)
    m = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    # Userspace may scribble over the shared header: the kernel must not trust it.
    m[0:256] = b"\xff" * 256
    m.close()
    cq.close()
