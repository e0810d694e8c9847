"""hmr0 as a device: link add/delete, queries, PD, provider loading, module unload while in use."""
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("HMR_BUILD_DIR") or os.path.join(ROOT, "build", "guest-" + os.uname().release)
KO = os.path.join(BUILD, "kmod", "hmr.ko")

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")


def run(*cmd, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def hmr0_exists():
    return os.path.isdir("/sys/class/infiniband/hmr0")


def ensure_hmr0():
    """Put the lab's state back: hmr.ko loaded, hmr0 on lo."""
    if not os.path.isdir("/sys/module/hmr"):
        r = run("insmod", KO, "check_pages=1")  # as guest-setup loads it
        assert r.returncode == 0, r.stderr
    if not hmr0_exists():
        r = run("rdma", "link", "add", "hmr0", "type", "hmr", "netdev", "lo")
        assert r.returncode == 0, r.stderr
    for _ in range(100):  # GIDs are filled by a work item after registration
        if os.path.exists("/sys/class/infiniband/hmr0/ports/1/gids/1"):
            break
        time.sleep(0.05)


@pytest.fixture
def restore_hmr0():
    yield
    ensure_hmr0()


def test_provider_installed_without_env():
    with open("/etc/libibverbs.d/hmr.driver") as f:
        assert f.read().split() == ["driver", "hmr"]
    assert "RDMAV_DRIVERS" not in os.environ
    libdir = "/usr/lib/x86_64-linux-gnu/libibverbs"
    assert any(n.startswith("libhmr-rdmav") for n in os.listdir(libdir)), os.listdir(libdir)


def test_ibv_devices_lists_hmr0():
    r = run("ibv_devices")
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()[2:] if line.split()]
    assert "hmr0" in names and "rxe0" in names, r.stdout


def test_ibv_devinfo_port_active_with_roce_v2_gids():
    r = run("ibv_devinfo", "-v", "-d", "hmr0")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "PORT_ACTIVE" in out and "link_layer:\t\tEthernet" in out, out
    assert "::ffff:127.0.0.1, RoCE v2" in out, out
    gid1 = [line for line in out.splitlines() if "GID[  1]" in line]
    assert gid1 and "::ffff:127.0.0.1" in gid1[0], out


def test_rdma_link_shows_hmr0_on_lo():
    out = run("rdma", "link", "show", "hmr0/1").stdout
    assert "state ACTIVE" in out and "netdev lo" in out, out


def test_pyverbs_open_query_alloc_pd():
    from pyverbs.device import Context
    from pyverbs.pd import PD
    from test_hmr_util import e

    with Context(name="hmr0") as ctx:
        attr = ctx.query_device()
        assert attr.max_qp > 0 and attr.max_cq > 0 and attr.max_mr > 0 and attr.max_pd > 0
        assert attr.max_qp_wr > 0 and attr.max_cqe > 0 and attr.max_sge > 0
        assert attr.max_mr_size > 1 << 40
        assert attr.atomic_caps == e.IBV_ATOMIC_HCA
        port = ctx.query_port(1)
        assert port.state == e.IBV_PORT_ACTIVE
        assert port.link_layer == e.IBV_LINK_LAYER_ETHERNET
        gid = ctx.query_gid(1, 1)
        assert str(gid) == "0000:0000:0000:0000:0000:ffff:7f00:0001"
        assert ctx.query_gid_type(1, 1) == e.IBV_GID_TYPE_SYSFS_ROCE_V2
        pds = [PD(ctx) for _ in range(16)]
        for pd in pds:
            pd.close()


def test_second_device_on_same_netdev_is_refused():
    r = run("rdma", "link", "add", "hmr1", "type", "hmr", "netdev", "lo")
    assert r.returncode != 0
    assert not os.path.isdir("/sys/class/infiniband/hmr1")


def test_link_delete_and_add_again(restore_hmr0):
    r = run("rdma", "link", "delete", "hmr0")
    assert r.returncode == 0, r.stderr
    assert not hmr0_exists()
    assert "hmr0" not in run("ibv_devices").stdout
    r = run("rdma", "link", "add", "hmr0", "type", "hmr", "netdev", "lo")
    assert r.returncode == 0, r.stderr
    ensure_hmr0()
    r = run("ibv_devinfo", "-d", "hmr0")
    assert r.returncode == 0 and "PORT_ACTIVE" in r.stdout, r.stdout + r.stderr


def test_link_delete_cycles_do_not_leak(restore_hmr0):
    for _ in range(5):
        assert run("rdma", "link", "delete", "hmr0").returncode == 0
        assert run("rdma", "link", "add", "hmr0", "type", "hmr", "netdev", "lo").returncode == 0
    ensure_hmr0()


# A process that holds hmr0 open and waits for the device-fatal event of a disassociation.
HOLDER = r"""
import sys
from pyverbs.device import Context
from pyverbs.pd import PD
from pyverbs.cq import CQ
sys.path.insert(0, sys.argv[1])
from test_hmr_util import e
ctx = Context(name="hmr0")
pd = PD(ctx)
cq = CQ(ctx, 64)
print("ready", flush=True)
while True:  # port and GID events may come first
    ev = ctx.get_async_event()
    fatal = ev.event_type == e.IBV_EVENT_DEVICE_FATAL
    ev.ack()
    if fatal:
        break
print("event", fatal, flush=True)
print("polled", cq.poll(1)[0], flush=True)  # the ring is unmapped: reads zeroes, no crash
try:
    PD(ctx)
    print("pd ok", flush=True)
except Exception as ex:
    print("pd failed", flush=True)
import os
os._exit(0)
"""


def start_holder():
    p = subprocess.Popen([sys.executable, "-c", HOLDER, os.path.dirname(__file__)],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", line + p.stdout.read()
    return p


def check_holder_disassociated(p):
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert "event True" in out and "polled 0" in out and "pd failed" in out, out


def test_link_delete_while_a_process_holds_the_device(restore_hmr0):
    p = start_holder()
    r = run("rdma", "link", "delete", "hmr0", timeout=60)
    assert r.returncode == 0, r.stderr
    check_holder_disassociated(p)
    assert not hmr0_exists()


def test_rmmod_while_a_process_holds_the_device(restore_hmr0):
    p = start_holder()
    r = run("rmmod", "hmr", timeout=60)
    assert r.returncode == 0, r.stderr
    assert not os.path.isdir("/sys/module/hmr")
    check_holder_disassociated(p)
    ensure_hmr0()
    assert run("ibv_devinfo", "-d", "hmr0").returncode == 0


def test_no_pinning_in_kmod():
    r = run("grep", "-rnE", "get_user_pages|pin_user_pages|ib_umem_get",
            os.path.join(ROOT, "kmod"))
    assert r.returncode == 1 and r.stdout == "", r.stdout
