"""rdma-core's ibv_*_pingpong between the two guests, unmodified: the server on one guest, the
client on the other, both directions. Each side uses its own device and the GID index of its
link IPv4 address; -c makes the server check the bytes it received."""
import pytest

from peerlib import DEVICE, SIDES, gid_index, next_port, odp_pair, other, pair

MIB = 1 << 20
ITERS = {1: 200, 4096: 200, MIB: 20}
MODES = {"plain": None, "odp": ("-o", False), "implicit-odp": ("-O", True)}


def base(tool, side, port, *extra):
    return [tool, "-d", DEVICE[side], "-g", str(gid_index(side)), "-p", str(port), *extra]


def check(outputs, size, iters):
    for out in outputs:
        assert f"{2 * size * iters} bytes in" in out and f"{iters} iters in" in out, out
        assert "invalid data" not in out, out


@pytest.mark.parametrize("server", SIDES, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", ITERS, ids=lambda s: f"{s}B")
def test_rc_pingpong(server, mode, size):
    opts = {s: [] for s in SIDES}
    if MODES[mode]:
        flag, implicit = MODES[mode]
        opts = odp_pair(flag, {"SUPPORT_SEND", "SUPPORT_RECV"}, implicit)
    port, n = next_port(), ITERS[size]
    args = ["-s", str(size), "-n", str(n), "-c"]
    outs = pair(server, base("ibv_rc_pingpong", server, port, *args, *opts[server]),
                base("ibv_rc_pingpong", other(server), port, *args, *opts[other(server)]), port)
    check(outs, size, n)


@pytest.mark.parametrize("server", SIDES, ids=lambda s: f"server-{s}")
def test_ud_pingpong(server):
    # A UD message fits in one packet of the path MTU (1024 on a 1500-byte link).
    port, size, n = next_port(), 1024, 200
    args = ["-s", str(size), "-n", str(n), "-c"]
    outs = pair(server, base("ibv_ud_pingpong", server, port, *args),
                base("ibv_ud_pingpong", other(server), port, *args), port)
    check(outs, size, n)


@pytest.mark.parametrize("server", SIDES, ids=lambda s: f"server-{s}")
def test_srq_pingpong(server):
    # 16 QPs (the default) share the server's SRQ.
    port, size, n = next_port(), 4096, 100
    args = ["-s", str(size), "-n", str(n), "-c"]
    outs = pair(server, base("ibv_srq_pingpong", server, port, *args),
                base("ibv_srq_pingpong", other(server), port, *args), port)
    check(outs, size, n)
