"""Communication middleware between the two guests, unmodified: Debian's UCX (ucx_perftest) and
Open MPI over UCX with one rank on each guest, over each side's device (hmr0 against hmr0, or
hmr0 against rxe0), both directions where they differ (peerlib's directions()). Skipped on an
image without UCX and Open MPI (tests/lab/lab.sh installs them).

- UCT's rc_verbs between the two devices: put (bcopy and zcopy), get zcopy, active messages and
  fetch-and-add; each client's summary must count every iteration.
- UCP's tagged messages of 64 KiB over rc_verbs; the protocol table must name rc_verbs on the
  client's device, and the page fault counter of every hmr device of the pair must rise (UCX's
  memory is not pinned: hmr faults it in).
- mpi_hmr.c (tests/guest: send/recv both ways, MPI_Put / MPI_Get, MPI_Allreduce, every element
  checked) on 2 ranks, one per guest: mpirun here launches its daemon on the peer through
  mpi-agent (hmr-peer in ssh's place), pml ucx and osc ucx, UCX's traffic on the devices.

UCP connects rc_verbs endpoints through an auxiliary transport, UCX's usual one being ud_verbs.
The lab's UCX (1.18, trixie) finds a UD datagram's destination address in its GRH by the
network header type a RoCE NIC puts in the completion's sl, and drops it without that: hmr
reports it (HMR_CQE_SL_*), rxe does not ("UD endpoint ...: unhandled timeout error" with an rxe
side, and between two rxe0; UCX 1.19 and later, as on 7.2's image, look at the GRH itself). So
ud_verbs is tested, and is UCP's and MPI's auxiliary transport, when both sides are hmr or have
a later UCX; else UCP and MPI connect through tcp over the link
(UCX_TLS=rc_verbs,tcp; UCX_NET_DEVICES names the device and the link's interface). The protocol
tables show the data on rc_verbs either way.

Debian's ucx_perftest calls MPI_Init unless its stdin is a terminal: both ends run under
script(1), which gives them a pty.
"""
import os
import re
import shlex

import pytest

from peerlib import DEVICE, SIDES, directions, other, run
from test_peer_cm import run_pair, tcp_ready
from test_peer_wire_data import link_if

HERE = os.path.dirname(os.path.abspath(__file__))
UCX = f"{DEVICE['self']}:1"
pytestmark = [
    pytest.mark.skipif(os.environ.get("HMR_PEER") != "1",
                       reason="runs in the first guest of a two-guest lab run"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/ucx_perftest")
                       or not os.path.exists("/usr/bin/mpirun"),
                       reason="an image without UCX and Open MPI (tests/lab/lab.sh)")]
ON_DEVICE = {s: f"rc_verbs/{DEVICE[s]}:1" for s in SIDES}
_port = [23000]  # peerlib counts from 19000, test_peer_cm from 21000


def next_port():
    _port[0] += 1
    return str(_port[0])


def page_faults(side):
    """hmr's page fault counter of @side's device; None for an rxe device."""
    if not DEVICE[side].startswith("hmr"):
        return None
    r = run(side, ["sh", "-c", "sleep 0.05; cat /sys/class/infiniband/"
                   f"{DEVICE[side]}/ports/1/hw_counters/page_faults"])
    return int(r.stdout)


def ucx_perftest(server_side, args, env=()):
    """ucx_perftest server on @server_side and its client on the other side, under script(1),
    each with @args and the environment @env ({dev}: its device, {link}: its link's interface);
    the Pair."""
    port = next_port()

    def argv(side, *target):
        cmd = ["ucx_perftest", *target, "-p", port, *[a.format(dev=DEVICE[side]) for a in args]]
        return ["env", *[e.format(dev=DEVICE[side], link=link_if(side)) for e in env],
                "script", "-qec", shlex.join(cmd), "/dev/null"]
    return run_pair(server_side, argv(server_side), argv(other(server_side), server_side),
                    ready=tcp_ready(port))


def final(out, iters):
    """The 'Final:' row's fields (ucx_perftest's summary) if it counts @iters iterations."""
    m = re.search(rf"^Final:\s+{iters}\s+(.*)$", out.replace("\r", ""), re.M)
    return m and m.group(1).split()




def ucx_version(side):
    """(major, minor) of UCX on @side (`ucx_info -v`: "# Library version: 1.18.1"); (0, 0)
    when it cannot be told: then ud_verbs is taken not to work with an rxe side."""
    m = re.search(r"version:?\s*(\d+)\.(\d+)", run(side, ["ucx_info", "-v"]).stdout, re.I)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def ud_works():
    """Does UCX's ud_verbs work between the sides? A side's UCX before 1.19 needs its device to
    report the network header type in a UD completion's sl (hmr does, rxe does not)."""
    return all(DEVICE[s].startswith("hmr") or ucx_version(s) >= (1, 19) for s in SIDES)


UD_WORKS = ud_works() if os.environ.get("HMR_PEER") == "1" and \
    os.path.exists("/usr/bin/ucx_info") else False
AUX = "ud_verbs" if UD_WORKS else "tcp"  # UCP's auxiliary transport (see above)
UD_ON_RXE = "UCX before 1.19 drops rxe's datagrams (rxe's completions have no L3 type in sl)"
UCT = {
    "put_bw_bcopy": (["-t", "put_bw", "-D", "bcopy", "-s", "4096"], 200),
    "put_bw_zcopy": (["-t", "put_bw", "-D", "zcopy", "-s", "65536"], 100),
    "get_zcopy": (["-t", "get", "-D", "zcopy", "-s", "65536"], 100),
    "am_lat": (["-t", "am_lat", "-s", "8"], 200),
    "fadd": (["-t", "fadd"], 200),
    "ud_am_lat": (["-x", "ud_verbs", "-t", "am_lat", "-s", "8"], 200),
    "ud_am_bw": (["-x", "ud_verbs", "-t", "am_bw", "-D", "bcopy", "-s", "512"], 200),
}


@pytest.mark.parametrize("server", directions(), ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("name", UCT)
def test_uct(name, server):
    args, iters = UCT[name]
    if "ud_verbs" in args and not UD_WORKS:
        pytest.skip(UD_ON_RXE)
    tl = [] if "-x" in args else ["-x", "rc_verbs"]
    p = ucx_perftest(server, [*tl, "-d", "{dev}:1", *args, "-n", str(iters)])
    assert p.client and p.client.status == 0 and p.server.status == 0, str(p)
    assert final(p.client.output(), iters), str(p)


@pytest.mark.parametrize("server", directions(), ids=lambda s: f"server-{s}")
def test_ucp_tag_bw(server):
    """64 KiB tagged messages: rc_verbs carries them (the client's protocol table), and each
    hmr device of the pair faulted pages in for UCX's unpinned memory."""
    before = {s: page_faults(s) for s in SIDES}
    p = ucx_perftest(server, ["-t", "tag_bw", "-s", "65536", "-n", "200"],
                     ["UCX_NET_DEVICES={dev}:1" + (",{link}" if AUX == "tcp" else ""),
                      f"UCX_TLS=rc_verbs,{AUX}", "UCX_PROTO_INFO=y"])
    assert p.client and p.client.status == 0 and p.server.status == 0, str(p)
    out = p.client.output().replace("\r", "")
    assert final(out, 200), str(p)
    client = other(server)
    rows = [line for line in out.splitlines() if re.search(r"\|\s*\S+\.\.\S+\s*\|", line)]
    assert rows and all(ON_DEVICE[client] in row for row in rows), "\n".join(rows) or str(p)
    for s in SIDES:
        if before[s] is not None:
            assert page_faults(s) > before[s], f"{DEVICE[s]} on {s}: no page fault"


@pytest.fixture(scope="module")
def mpi_prog():
    """mpi_hmr built where both guests see it (the checkout's build directory)."""
    exe = os.path.join(os.environ.get("HMR_BUILD_DIR", "/tmp"), "peer-mpi", "mpi_hmr")
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    r = run("self", ["mpicc", "-O2", "-o", exe,
                     os.path.join(os.path.dirname(HERE), "guest", "mpi_hmr.c")])
    assert r.returncode == 0, r.stdout + r.stderr
    return exe


@pytest.fixture
def node_names():
    """Each guest named by its side while the test runs (both boot as hmr-guest, and Open MPI
    tells its nodes apart by name)."""
    old = {s: run(s, ["hostname"]).stdout.strip() for s in SIDES}
    try:
        for s in SIDES:
            assert run(s, ["hostname", s]).returncode == 0
        yield
    finally:
        for s in SIDES:
            run(s, ["hostname", old[s]])


def test_open_mpi_one_rank_per_guest(mpi_prog, node_names):
    """2 ranks on the two guests, pml ucx and osc ucx, UCX on rc_verbs of the devices (AUX to
    connect): the program checks every element; UCX's protocol tables put the
    ranks' traffic on rc_verbs between the nodes; hmr devices faulted pages in."""
    before = {s: page_faults(s) for s in SIDES}
    agent = os.path.join(HERE, "mpi-agent")
    env = {"OMPI_MCA_plm_rsh_agent": agent, "PRTE_MCA_plm_ssh_agent": agent}
    devs = sorted({f"{DEVICE[s]}:1" for s in SIDES} |
                  ({link_if(s) for s in SIDES} if AUX == "tcp" else set()))
    ucx = ["-x", f"UCX_TLS=rc_verbs,{AUX},self", "-x", "UCX_PROTO_INFO=y",
           "-x", f"UCX_NET_DEVICES={','.join(devs)}"]
    r = run("self", ["env", *[f"{k}={v}" for k, v in env.items()],
                     "mpirun", "--allow-run-as-root", "-H", "self:1,peer:1", "-np", "2",
                     "--mca", "pml", "ucx", "--mca", "osc", "ucx",
                     "--mca", "btl", "^vader,sm,tcp,openib", *ucx, mpi_prog], timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for line in ("sendrecv ok", "put get ok", "allreduce ok", "mpi_hmr: all ok on 2 ranks"):
        assert re.search(rf"^{line}$", out, re.M), out
    assert "inter-node" in out and ON_DEVICE["self"] in out, out
    for s in SIDES:
        if before[s] is not None:
            assert page_faults(s) > before[s], f"{DEVICE[s]} on {s}: no page fault\n{out}"
