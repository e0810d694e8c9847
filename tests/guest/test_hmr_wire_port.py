"""hmr's wire transport beside rdma_rxe in one kernel (the one-guest lab loads both).

rdma_rxe binds UDP port 4791 in the initial namespace when it loads. hmr opens its wire sockets
only for a device on a netdev that reaches other hosts (not a loopback device): hmr0 on lo never
needs them, so it coexists with rxe0. A device on another netdev while rxe holds the port is
refused with EADDRINUSE and a kernel log line that says why and what to do; with
`wire_port=N` hmr binds another port (peers must use the same one) and the device comes up.
"""
import os

import pytest

from test_hmr_device import KO, ensure_hmr0, run

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

DUMMY = "hmrdummy0"


def dmesg():
    return run("dmesg").stdout


@pytest.fixture
def dummy():
    """A dummy netdev with a documentation-range address: a netdev that is not loopback."""
    run("modprobe", "dummy")
    r = run("ip", "link", "add", DUMMY, "type", "dummy")
    assert r.returncode == 0, r.stderr
    run("ip", "addr", "add", "192.0.2.77/24", "dev", DUMMY)
    run("ip", "link", "set", DUMMY, "up")
    yield DUMMY
    run("rdma", "link", "delete", "hmr1")
    run("ip", "link", "delete", DUMMY)


def test_rxe_holds_the_port_and_hmr0_on_lo_needs_none():
    assert os.path.isdir("/sys/module/rdma_rxe"), "the one-guest lab loads rdma_rxe"
    assert os.path.isdir("/sys/class/infiniband/hmr0")
    # rxe0 and hmr0 both work on lo: hmr0 opened no socket (it would have failed).
    assert "hmr: cannot bind UDP port" not in dmesg()


def test_device_on_a_real_netdev_is_refused_while_rxe_has_the_port(dummy):
    before = dmesg()
    r = run("rdma", "link", "add", "hmr1", "type", "hmr", "netdev", dummy)
    assert r.returncode != 0, "hmr1 came up although rdma_rxe holds UDP 4791"
    assert "in use" in (r.stderr + r.stdout).lower(), r.stderr
    new = dmesg()[len(before):]
    assert "hmr: cannot bind UDP port 4791" in new and "rdma_rxe" in new and "wire_port" in new, new
    assert not os.path.isdir("/sys/class/infiniband/hmr1")
    # The refusal left nothing behind: hmr0 and rxe0 still answer.
    for dev in ("hmr0", "rxe0"):
        r = run("ibv_devinfo", "-d", dev)
        assert r.returncode == 0 and "PORT_ACTIVE" in r.stdout, r.stdout + r.stderr


def test_wire_port_parameter_lets_hmr_beside_rxe(dummy):
    """hmr reloaded with wire_port=4792: a device on the dummy netdev comes up next to rxe0."""
    try:
        run("rdma", "link", "delete", "hmr0")
        r = run("rmmod", "hmr")
        assert r.returncode == 0, r.stderr
        r = run("insmod", KO, "wire_port=4792", "check_pages=1")
        assert r.returncode == 0, r.stderr
        with open("/sys/module/hmr/parameters/wire_port") as f:
            assert f.read().strip() == "4792"
        r = run("rdma", "link", "add", "hmr1", "type", "hmr", "netdev", dummy)
        assert r.returncode == 0, r.stderr
        assert ":4792" in run("ss", "-ulnH").stdout
        r = run("ibv_devinfo", "-d", "rxe0")
        assert r.returncode == 0 and "PORT_ACTIVE" in r.stdout
        # The sockets go with the last device that needed them.
        run("rdma", "link", "delete", "hmr1")
        assert ":4792" not in run("ss", "-ulnH").stdout
    finally:
        run("rdma", "link", "delete", "hmr1")
        run("rmmod", "hmr")
        ensure_hmr0()


def test_wire_counters_are_listed():
    out = run("rdma", "statistic", "show", "link", "hmr0/1").stdout
    for name in ("sent_pkts", "rcvd_pkts", "retry_pkts", "ack_timeouts", "rcvd_seq_err",
                 "send_rnr_err", "rcvd_rnr_err", "duplicate_request", "rcvd_pkts_dropped",
                 "rcvd_icrc_err"):
        assert f" {name} " in out + " ", out
