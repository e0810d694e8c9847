"""Communication middleware over hmr0, unmodified: Debian's UCX (ucx-utils) and Open MPI over UCX
(openmpi-bin, libopenmpi-dev), both in the lab image (tests/lab/lab.sh); skipped on an image
without them.

- `ucx_info -d` lists hmr0 as a UCX memory domain with ODP (non-blocking registration of host
  memory, `reg_nonblock`) and its rc_verbs and ud_verbs transports.
- `ucx_perftest` server and client in this guest over UCT's rc_verbs on hmr0 (put, get, active
  messages, atomics) and ud_verbs (active messages), and over UCP (tagged messages), whose
  protocol table (UCX_PROTO_INFO) must name rc_verbs/hmr0:1; hmr0's page fault counter must
  grow (UCX's memory is not pinned: hmr faults it in).
- An MPI program (mpi_hmr.c: send/recv of 1 to 64 Ki ints both ways, MPI_Put and MPI_Get in a
  window, MPI_Allreduce; every element checked) on 2 ranks with pml ucx and osc ucx, UCX limited
  to rc_verbs on hmr0.

UCP connects rc_verbs endpoints through an auxiliary transport: UCP is tested with tcp on lo
(UCX_TLS=rc_verbs,tcp, UCX_NET_DEVICES=hmr0:1,lo) and with UCX's usual one, ud_verbs on hmr0;
MPI with tcp. The lab's UCX (1.18) finds a UD datagram's destination address in its GRH by the
network header type a RoCE NIC reports in the completion's sl, and drops it without: hmr0
reports it; on rxe0 UCX's UD times out ("UD endpoint ...: unhandled timeout error"). The
protocol tables show the data on rc_verbs/hmr0:1 either way.

Debian's ucx_perftest is built with MPI and calls MPI_Init (a singleton, and then refuses to run
with one rank) whenever its stdin is not a terminal: both ends get a pty as stdin here.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from test_hmr_device import ensure_hmr0
from test_hmr_odp_paths import kernel_problems

pytestmark = [
    pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest"),
    pytest.mark.skipif(shutil.which("ucx_perftest") is None or shutil.which("mpirun") is None,
                       reason="an image without UCX and Open MPI (tests/lab/lab.sh)")]

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_FAULTS = "/sys/class/infiniband/hmr0/ports/1/hw_counters/page_faults"
UCP_ENV = {"UCX_NET_DEVICES": "hmr0:1,lo", "UCX_TLS": "rc_verbs,tcp", "UCX_PROTO_INFO": "y"}
ON_HMR0 = "rc_verbs/hmr0:1"
_port = [13400]


@pytest.fixture(scope="module", autouse=True)
def lab():
    """hmr0 present; the kernel log gains no problem line over the module."""
    ensure_hmr0()
    before = set(kernel_problems())
    yield
    new = [line for line in kernel_problems() if line not in before]
    assert not new, "\n".join(new)


def page_faults():
    time.sleep(0.05)  # the core caches hw counters for 10 ms
    with open(PAGE_FAULTS) as f:
        return int(f.read())


def listening(port):
    return f":{port} " in subprocess.run(["ss", "-tlnH"], capture_output=True, text=True).stdout


def perftest(args, env=None, timeout=120):
    """ucx_perftest server and client (over 127.0.0.1) with @args on both; (server status,
    server output, client status, client output), a status None if it was killed."""
    _port[0] += 1
    port = str(_port[0])
    env = dict(os.environ, **(env or {}))
    master, slave = os.openpty()
    try:
        with tempfile.TemporaryFile() as slog, tempfile.TemporaryFile() as clog:
            server = subprocess.Popen(["ucx_perftest", "-p", port, *args], stdin=slave,
                                      stdout=slog, stderr=subprocess.STDOUT, env=env)
            crc = None
            try:
                end = time.time() + 60
                while not listening(port) and server.poll() is None and time.time() < end:
                    time.sleep(0.2)
                client = subprocess.Popen(["ucx_perftest", "127.0.0.1", "-p", port, *args],
                                          stdin=slave, stdout=clog, stderr=subprocess.STDOUT,
                                          env=env)
                try:
                    crc = client.wait(timeout)
                except subprocess.TimeoutExpired:
                    client.kill()
                    client.wait()
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait()
            out = []
            for log in (slog, clog):
                log.seek(0)
                out.append(log.read().decode(errors="replace"))
            return server.returncode, out[0], crc, out[1]
    finally:
        os.close(master)
        os.close(slave)


def final(out, iters):
    """The 'Final:' row's fields (ucx_perftest's summary) if it counts @iters iterations."""
    m = re.search(rf"^Final:\s+{iters}\s+(.*)$", out, re.M)
    return m and m.group(1).split()


def test_ucx_info_lists_hmr0_with_odp_and_its_transports():
    out = subprocess.run(["ucx_info", "-d"], capture_output=True, text=True, timeout=120).stdout
    md = re.search(r"^# Memory domain: hmr0\n(.*?)(?=^# Memory domain:|^# Connection manager:|\Z)",
                   out, re.M | re.S)
    assert md, out
    block = md.group(1)
    types = re.search(r"memory types: host \(([^)]*)\)", block)
    assert types and "reg_nonblock" in types.group(1).split(","), block  # ODP
    for tl in ("rc_verbs", "ud_verbs"):
        assert re.search(rf"Transport: {tl}\n#\s+Device: hmr0:1\n", block), block


UCT = {
    "put_bw_bcopy": (["-t", "put_bw", "-D", "bcopy", "-s", "4096"], 500),
    "put_bw_zcopy": (["-t", "put_bw", "-D", "zcopy", "-s", "65536"], 300),
    "get_zcopy": (["-t", "get", "-D", "zcopy", "-s", "65536"], 300),
    "am_lat": (["-t", "am_lat", "-s", "8"], 300),
    "fadd": (["-t", "fadd"], 300),
    "ud_am_lat": (["-x", "ud_verbs", "-t", "am_lat", "-s", "8"], 300),
    "ud_am_bw": (["-x", "ud_verbs", "-t", "am_bw", "-D", "bcopy", "-s", "512"], 300),
}


@pytest.mark.parametrize("name", UCT)
def test_uct_perftest(name):
    args, iters = UCT[name]
    tl = [] if "-x" in args else ["-x", "rc_verbs"]
    src, sout, crc, cout = perftest([*tl, "-d", "hmr0:1", *args, "-n", str(iters)])
    assert crc == 0 and src == 0, f"server {src}:\n{sout}\nclient {crc}:\n{cout}"
    assert final(cout, iters), cout


@pytest.mark.parametrize("aux", ["tcp", "ud_verbs"])
def test_ucp_tag_bw_over_rc_verbs_unpinned(aux):
    """Tagged messages of 64 KiB (UCP's protocols for every size name rc_verbs on hmr0), and
    hmr0 faulted pages in for them; UCP connects through tcp on lo or through UCX's usual
    auxiliary transport, ud_verbs on hmr0."""
    env = UCP_ENV if aux == "tcp" else dict(UCP_ENV, UCX_NET_DEVICES="hmr0:1",
                                            UCX_TLS="rc_verbs,ud_verbs")
    before = page_faults()
    src, sout, crc, cout = perftest(["-t", "tag_bw", "-s", "65536", "-n", "300"], env)
    assert crc == 0 and src == 0, f"server {src}:\n{sout}\nclient {crc}:\n{cout}"
    assert final(cout, 300), cout
    rows = [line for line in cout.splitlines() if re.search(r"\|\s*\S+\.\.\S+\s*\|", line)]
    assert rows and all(ON_HMR0 in row for row in rows), "\n".join(rows) or cout
    assert page_faults() > before


@pytest.fixture(scope="module")
def mpi_prog(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("mpi") / "mpi_hmr")
    r = subprocess.run(["mpicc", "-O2", "-o", exe, os.path.join(HERE, "mpi_hmr.c")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return exe


def test_open_mpi_over_ucx_on_hmr0(mpi_prog):
    """2 ranks, pml ucx and osc ucx (no BTL for shared memory or tcp): data checked by the
    program, and UCX's protocol tables put the ranks' traffic on rc_verbs/hmr0:1."""
    before = page_faults()
    env = ["-x", "UCX_NET_DEVICES=hmr0:1,lo", "-x", "UCX_TLS=rc_verbs,tcp,self",
           "-x", "UCX_PROTO_INFO=y"]
    r = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
                        "--mca", "pml", "ucx", "--mca", "osc", "ucx",
                        "--mca", "btl", "^vader,sm,tcp,openib", *env, mpi_prog],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", timeout=180)
    assert r.returncode == 0, r.stdout
    for line in ("sendrecv ok", "put get ok", "allreduce ok", "mpi_hmr: all ok on 2 ranks"):
        assert re.search(rf"^{line}$", r.stdout, re.M), r.stdout
    assert re.search(r"inter-node|intra-node", r.stdout) and ON_HMR0 in r.stdout, r.stdout
    assert page_faults() > before
