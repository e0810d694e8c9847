"""hmr0 completion queues: creation limits, the mmap'd ring, notification, hostile mmaps,
resize."""
import errno
import mmap
import os
from contextlib import closing

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from pyverbs.cq import CQ, CompChannel  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from test_hmr_data import Pair, poll, send_wr, sge  # noqa: E402
from test_hmr_util import e  # noqa: E402


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


# ---------------------------------------------------------------------------------------------
# ibv_resize_cq: a new ring; completions not yet polled move with it, none lost or duplicated.


def post_writes(pair, first, n):
    """@n signaled 64-byte WRITEs a -> b, wr_ids @first.. (on this kernel they complete within
    the post: the completions are in the CQ when post_send returns)."""
    for i in range(first, first + n):
        wr = send_wr(i, e.IBV_WR_RDMA_WRITE, [sge(pair.a.mr, 64 * (i % 64), 64)])
        wr.set_wr_rdma(pair.b.mr.rkey, pair.b.mr.buf + 64 * (i % 64))
        pair.a.qp.post_send(wr)


def poll_ids(cq, n):
    wcs = poll(cq, n)
    assert all(w.status == e.IBV_WC_SUCCESS for w in wcs), [w.status for w in wcs]
    assert cq.poll(1) == (0, []), "a completion more than posted"
    return [w.wr_id for w in wcs]


def test_resize_shrinks_and_grows_with_completions_pending():
    with closing(Pair()) as pair:
        cq = pair.a.scq                      # 512 entries
        post_writes(pair, 0, 5)
        cq.resize(8)
        assert 8 <= cq.cqe < 512
        post_writes(pair, 5, 3)              # 8 pending: the new ring is full, not overflowed
        assert poll_ids(cq, 8) == list(range(8))
        post_writes(pair, 8, 4)
        cq.resize(100)
        assert cq.cqe >= 100
        post_writes(pair, 12, 60)            # more than the small ring held
        assert poll_ids(cq, 64) == list(range(8, 72))


def test_resize_below_the_pending_completions_is_refused():
    with closing(Pair()) as pair:
        cq = pair.a.scq
        post_writes(pair, 0, 6)
        for cqe in (1, 4):
            with pytest.raises(PyverbsRDMAError) as ei:
                cq.resize(cqe)
            assert ei.value.error_code == errno.EINVAL
        assert cq.cqe >= 512                 # unchanged
        assert poll_ids(cq, 6) == list(range(6))


def test_resize_bad_sizes_are_refused(ctx):
    cq = CQ(ctx, 16)
    for cqe in (0, -1, ctx.query_device().max_cqe + 1):
        with pytest.raises(PyverbsRDMAError) as ei:
            cq.resize(cqe)
        assert ei.value.error_code == errno.EINVAL, cqe
    assert cq.cqe >= 16 and cq.poll(1) == (0, [])
    cq.close()


def test_resize_many_times_as_the_indices_run_on():
    """The consumer index carries over from ring to ring, whatever the sizes: 40 resizes
    between 4 and 64 entries with 1-3 completions pending each time, every wr_id once."""
    with closing(Pair()) as pair:
        cq, got, n = pair.a.scq, [], 0
        for r in range(40):
            k = 1 + r % 3
            post_writes(pair, n, k)
            cq.resize(4 if r % 2 else 64)
            got += poll_ids(cq, k)
            n += k
        assert got == list(range(n))
