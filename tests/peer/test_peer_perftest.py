"""perftest's latency and bandwidth tools between the two guests, unmodified: the server on one
guest, the client on the other, both directions, with registered memory and with --odp on each
side whose device has ODP for the operation. -x is the GID index of each side's link IPv4
address (RoCEv2); the client's report must have a row for every iteration asked for."""
import re

import pytest

from peerlib import DEVICE, SIDES, gid_index, next_port, odp_pair, other, pair

ITERS = 200
# The RC ODP capabilities each tool's operation needs on a side that registers with --odp.
ODP_CAPS = {"send": {"SUPPORT_SEND", "SUPPORT_RECV"}, "write": {"SUPPORT_WRITE"},
            "read": {"SUPPORT_READ"}, "atomic": {"SUPPORT_ATOMIC"}}
LAT = ["ib_send_lat", "ib_write_lat", "ib_read_lat", "ib_atomic_lat"]
BW = ["ib_write_bw", "ib_read_bw", "ib_send_bw"]


def report(out):
    """The result rows of a perftest report: lists of numbers under its '#bytes' header."""
    lines = out.splitlines()
    head = [i for i, line in enumerate(lines) if line.strip().startswith("#bytes")]
    assert head, f"no report in:\n{out}"
    rows = []
    for line in lines[head[-1] + 1:]:
        if not re.match(r"\s*\d", line):
            break
        rows.append([float(x) for x in re.findall(r"[\d.]+", line)])
    return rows


def run_tool(tool, server, odp):
    op = tool.split("_")[1]
    opts = odp_pair("--odp", ODP_CAPS[op]) if odp else {s: [] for s in SIDES}
    port = next_port()

    def argv(side):
        return [tool, "-d", DEVICE[side], "-x", str(gid_index(side)), "-p", str(port),
                "-n", str(ITERS), *opts[side]]
    cout, _ = pair(server, argv(server), argv(other(server)), port)
    rows = report(cout)
    assert rows and all(int(r[1]) == ITERS for r in rows), cout
    return rows


@pytest.mark.parametrize("server", SIDES, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("odp", [False, True], ids=["mr", "odp"])
@pytest.mark.parametrize("tool", LAT)
def test_latency(tool, odp, server):
    for r in run_tool(tool, server, odp):
        assert 0 < r[2] <= r[3], r  # t_min <= t_max, in usec


@pytest.mark.parametrize("server", SIDES, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("odp", [False, True], ids=["mr", "odp"])
@pytest.mark.parametrize("tool", BW)
def test_bandwidth(tool, odp, server):
    for r in run_tool(tool, server, odp):
        assert r[0] == 65536 and r[3] > 0, r  # the default size; BW average in MB/s
