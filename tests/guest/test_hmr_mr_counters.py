"""Per-MR ODP counters as `rdma statistic show mr` prints them: the faults and prefetches done
through one MR are counted on that MR, exactly, on no other MR, and add up to what the device
counters say. Invalidations belong to the process's one mirror, not to an MR: the device counts
them once, whatever the number of MRs over the range, and no MR lists them."""
import json
import os
import subprocess

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_util import e, quiet_map, unmap  # noqa: E402
from test_hmr_data import send_wr  # noqa: E402
from test_hmr_odp import odp  # noqa: E402,F401 (the fixture)
from test_hmr_odp import (ODP, PAGE, PREFETCH_WRITE, SIZE, counters, delta,  # noqa: E402
                          dontneed, prefetch, run)
from pyverbs.mr import MR  # noqa: E402

NAMES = ("page_faults", "page_faults_pages", "page_access_faults", "page_prefetch")
MIRROR_ONLY = ("page_invalidations", "page_fence_waits", "page_fence_wait_ns",
               "page_invalidations_nonblock", "page_invalidations_busy")
ZERO = dict.fromkeys(NAMES, 0)
N = 16  # pages each step touches: one fault window (fault_window's default)


def rdma_json(*args):
    out = subprocess.run(["rdma", "-j", *args], capture_output=True, text=True,
                         check=True).stdout
    return [row for row in json.loads(out) if row["ifname"] == "hmr0"]


def mrn(mr):
    """The MR's restrack id, which `rdma statistic show mr` names it by, found by its lkey."""
    rows = [r for r in rdma_json("resource", "show", "mr") if int(r["lkey"], 16) == mr.lkey]
    assert len(rows) == 1, rows
    return rows[0]["mrn"]


def mr_counters():
    """mrn -> {counter: value}, for every MR of hmr0 (which lists no mirror-only counter)."""
    rows = rdma_json("statistic", "show", "mr")
    for r in rows:
        assert not set(MIRROR_ONLY) & set(r), r
    return {r["mrn"]: {k: r[k] for k in NAMES} for r in rows}


def grew(before, after, **by):
    """Assert that every counter of @after is the one of @before plus @by (0 if not named)."""
    want = {k: before[k] + by.get(k, 0) for k in NAMES}
    assert after == want, {k: f"{after[k]}, want {want[k]}" for k in NAMES if after[k] != want[k]}


@pytest.fixture
def idle(odp):
    """A third ODP MR of the same PD over a mapping of its own, never used."""
    addr = quiet_map(SIZE)
    mr = MR(odp.pd, SIZE, ODP, address=addr)
    yield mr
    mr.close()
    unmap(addr, SIZE)


def test_each_mr_counts_what_was_done_to_it(odp, idle):
    ids = {"a": mrn(odp.a.mr), "b": mrn(odp.b.mr), "idle": mrn(idle)}
    assert len(set(ids.values())) == 3, ids
    dev0, c0 = counters(), mr_counters()
    for name, i in ids.items():
        assert c0[i] == ZERO, (name, c0[i])  # fresh MRs

    wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [odp.a.sge(0, N * PAGE)])
    wr.set_wr_rdma(odp.b.mr.rkey, odp.b.addr)
    assert run(odp, wr).status == e.IBV_WC_SUCCESS  # faults a (local read), b (remote write)
    c1 = mr_counters()
    fault = {"page_faults": 1, "page_faults_pages": N, "page_access_faults": 1}
    grew(c0[ids["a"]], c1[ids["a"]], **fault)
    grew(c0[ids["b"]], c1[ids["b"]], **fault)

    dontneed(odp.b.addr, N * PAGE)  # one invalidation, of b's pages only
    assert run(odp, wr).status == e.IBV_WC_SUCCESS  # b refaults; a's pages are still there
    c2 = mr_counters()
    grew(c1[ids["a"]], c2[ids["a"]])
    grew(c1[ids["b"]], c2[ids["b"]], **fault)

    dontneed(odp.b.addr, N * PAGE)
    prefetch(odp, PREFETCH_WRITE, odp.b, 0, N * PAGE)  # a fault that no access found
    c3 = mr_counters()
    grew(c2[ids["a"]], c3[ids["a"]])
    grew(c2[ids["b"]], c3[ids["b"]], page_faults=1, page_faults_pages=N, page_prefetch=N)
    assert c3[ids["idle"]] == ZERO, c3[ids["idle"]]

    # The device counts the same faults: the sum over its MRs (nothing else ran meanwhile),
    # and the two invalidations that found mirrored pages, once each.
    dev = delta(dev0, counters())
    for k in NAMES:
        assert dev[k] == sum(c3[i][k] - c0[i][k] for i in ids.values()), (k, dev)
    assert dev["page_invalidations"] == 2, dev


def test_deregistered_mr_is_no_longer_listed(odp, idle):
    i = mrn(idle)
    assert i in mr_counters()
    idle.close()
    assert i not in mr_counters()
