"""The link between the two guests: each side's device is active on it, and TCP crosses it
(iperf3, whose throughput is the reference the RDMA benchmarks are read against)."""
import json
import os

import pytest

from peerlib import DEVICE, SIDES, gid_index, next_port, other, pair, run

LINK_IF = os.environ.get("HMR_LINK_IF", "")


@pytest.mark.parametrize("side", SIDES)
def test_device_active_on_the_link(side):
    r = run(side, ["rdma", "link", "show", f"{DEVICE[side]}/1"])
    assert r.returncode == 0, r.stderr
    assert "state ACTIVE" in r.stdout and f"netdev {LINK_IF}" in r.stdout, r.stdout
    assert gid_index(side) > 0  # GID 0 is the link-local one


@pytest.mark.parametrize("server", SIDES, ids=lambda s: f"server-{s}")
def test_iperf3(server):
    port = next_port()
    cout, _ = pair(server, ["iperf3", "-s", "-1", "-p", str(port)],
                   ["iperf3", "-J", "-t", "2", "-p", str(port), "-c"], port)
    received = json.loads(cout)["end"]["sum_received"]
    assert received["bytes"] > 0 and received["bits_per_second"] > 0, received
    print(f"iperf3 {other(server)} -> {server}: {received['bits_per_second'] / 1e6:.1f} Mbit/s")
