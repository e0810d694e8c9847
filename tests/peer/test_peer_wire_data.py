"""Data over the wire transport between the two guests, checked byte for byte by wire_ops.py (a
pyverbs program: the server, the responder whose memory is the target, on one guest; the client,
the requester, on the other; both directions, or one in a symmetric pair where both run the
same code: peerlib.directions): every RC operation at the sizes around the path
MTU and 1 MiB, with registered memory and with ODP on each side whose device has it, 64 MiB
WRITE and READ, ODP targets whose memory is discarded, replaced or forked while data lands
(--race), and IPv6 GIDs. Every run must end with both sides' exit status 0 and a JSON summary
with no error, only IBV_WC_SUCCESS completions and the expected count of checked operations;
every hmr device that took part must have sent and received packets (`rdma statistic show
link DEV/1`: sent_pkts, rcvd_pkts).

The helpers here (run_ops, counters, link_if, ...) serve test_peer_wire_faults.py and
test_peer_zz_poweroff.py too.
"""
import json
import os
import time

import pytest

from peerlib import (DEVICE, SIDES, Server, directions, gid_index, next_port, odp_caps, odp_pair,
                     other, release, run, wait_listening)

pytestmark = pytest.mark.skipif(os.environ.get("HMR_PEER") != "1",
                                reason="runs in the first guest of a two-guest lab run")

# The server's sides: both, or the peer only in a symmetric pair (peerlib.directions).
DIRECTIONS = directions()
WIRE_OPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire_ops.py")
OPS = ["send", "send_imm", "write", "write_imm", "read", "cas", "faa"]
# The RC ODP capabilities an operation needs: the requester's and the responder's.
ODP_CAPS = {"send": {"SUPPORT_SEND", "SUPPORT_RECV"}, "send_imm": {"SUPPORT_SEND", "SUPPORT_RECV"},
            "write": {"SUPPORT_WRITE"}, "write_imm": {"SUPPORT_WRITE", "SUPPORT_RECV"},
            "read": {"SUPPORT_READ"}, "cas": {"SUPPORT_ATOMIC"}, "faa": {"SUPPORT_ATOMIC"},
            "atomic_write": {"SUPPORT_ATOMIC_WRITE"}, "flush": {"SUPPORT_FLUSH"}}
# wire_ops' default sizes: 0, 1, MTU-1, MTU, MTU+1, 4096, 1 MiB (7 of them).
DEFAULT_SIZES = 7
# Counters each transfer must raise on an hmr device; and what is shown when a run fails.
MUST_RISE = ("sent_pkts", "rcvd_pkts")
# Once the client ended, the server has only its last check and its exit left.
SERVER_GRACE = 180
SHOWN = ("sent_pkts", "rcvd_pkts", "retry_pkts", "ack_timeouts", "rcvd_seq_err",
         "duplicate_request", "out_of_seq_request", "completer_retry_err", "rcvd_rnr_err",
         "send_rnr_err", "rcvd_pkts_dropped", "rcvd_icrc_err", "rcvd_pkts_refused",
         "page_invalidations", "page_faults")


def is_hmr(side):
    return DEVICE[side].startswith("hmr")


def counters(side):
    """@side's device's port counters, from `rdma statistic show link DEV/1`."""
    r = run(side, ["rdma", "statistic", "show", "link", f"{DEVICE[side]}/1"])
    assert r.returncode == 0, f"rdma statistic on {side}: {r.stderr}"
    words = r.stdout.split()
    start = words.index(f"{DEVICE[side]}/1") + 1
    return {words[i]: int(words[i + 1]) for i in range(start, len(words) - 1, 2)
            if words[i + 1].isdigit()}


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after}


def link_if(side):
    """The name of @side's interface on the link (the one with its 192.0.2.x address)."""
    key = "HMR_LINK_IF"
    if side == "self" and os.environ.get(key):
        return os.environ[key]
    addr = {"self": "192.0.2.1", "peer": "192.0.2.2"}[side]
    r = run(side, ["ip", "-o", "-4", "addr", "show"])
    for line in r.stdout.splitlines():
        if f" {addr}/" in line:
            return line.split()[1]
    raise AssertionError(f"no interface with {addr} on {side}:\n{r.stdout}{r.stderr}")


def diagnostics():
    """The link's state on both sides, for a failure's message: qdisc and interface counters,
    UDP errors (a full socket buffer drops datagrams)."""
    out = []
    for side in SIDES:
        dev = link_if(side)
        r = run(side, ["sh", "-c", f"tc -s qdisc show dev {dev}; ip -s link show {dev}; "
                       "grep '^Udp' /proc/net/snmp"])
        out.append(f"--- {side} ({DEVICE[side]}, {dev}):\n{r.stdout}{r.stderr}")
    return "\n".join(out)


def wire_argv(side, role, op, port, extra=()):
    return ["python3", WIRE_OPS, role, "--op", op, "--dev", DEVICE[side], "--port", str(port),
            "--gid-index", str(gid_index(side)), *extra]


def summary(out):
    """The JSON line wire_ops printed last in @out."""
    lines = [line for line in out.splitlines() if line.startswith('{"role"')]
    return json.loads(lines[-1]) if lines else None


class Outcome:
    def __init__(self, **kw):
        self.stuck = ""
        self.__dict__.update(kw)

    def describe(self):
        shown = {s: {k: v for k, v in self.delta[s].items() if k in SHOWN and v}
                 for s in SIDES}
        return (f"server on {self.server} ({DEVICE[self.server]}): {' '.join(self.server_argv)}\n"
                f"client on {other(self.server)} ({DEVICE[other(self.server)]}): "
                f"{' '.join(self.client_argv)}\n"
                f"client exit {self.crc}, server exit {self.src} (None: still running) after "
                f"{self.secs:.1f} s\n--- client:\n{self.cout}\n--- server:\n{self.sout}\n"
                f"{self.stuck}counters that moved: {shown}")


def server_pid(server):
    if server.side == "self":
        return server.proc.pid
    with open(f"/hmr-pipe/jobs/{server.job}/pid") as f:
        return int(f.read())


def stuck_stack(server):
    """Where a server that does not end is in the kernel (its state and stack)."""
    pid = server_pid(server)
    r = run(server.side, ["sh", "-c", f"grep State /proc/{pid}/status; cat /proc/{pid}/stack"])
    return f"--- the server (pid {pid} on {server.side}) did not end within {SERVER_GRACE} s " \
           f"of the client:\n{r.stdout}{r.stderr}"


def pair(server_side, sargv, cargv, port, timeout):
    """The server on @server_side, then the client on the other side (given the server's host
    name); the server gets SERVER_GRACE seconds to end after the client did (one that does not
    is stuck: its kernel stack is kept). (client CompletedProcess, server status, output,
    stuck)."""
    server = Server(server_side, sargv)
    stuck = ""
    try:
        wait_listening(server, port)
        client = run(other(server_side), [*cargv, server_side], timeout)
        src, sout = server.wait(SERVER_GRACE)
        if src is None:
            stuck = stuck_stack(server)
    finally:
        if stuck and server.side == "self":
            server.proc.kill()  # no wait: a process in D state does not die
        else:
            server.kill()
    return client, src, sout, stuck


def run_ops(op, server, extra=(), client_extra=(), server_extra=(), timeout=600):
    """Run wire_ops with @op, the server on @server and the client on the other side; the
    counters of both sides' devices before and after."""
    port = next_port()
    sargv = wire_argv(server, "server", op, port, [*extra, *server_extra])
    cargv = wire_argv(other(server), "client", op, port, [*extra, *client_extra])
    before = {s: counters(s) for s in SIDES}
    t0 = time.monotonic()
    client, src, sout, stuck = pair(server, sargv, cargv, port, timeout)
    secs = time.monotonic() - t0
    after = {s: counters(s) for s in SIDES}
    return Outcome(server=server, server_argv=sargv, client_argv=cargv + [server],
                   crc=client.returncode, src=src, cout=client.stdout + client.stderr, sout=sout,
                   client=summary(client.stdout), srv=summary(sout), secs=secs, stuck=stuck,
                   delta={s: delta(before[s], after[s]) for s in SIDES})


def check(o, ops, server_ops=None, one_way=False):
    """Both sides succeeded: exit 0, no error, only successful completions, @ops operations
    checked by the client (@server_ops by the server: default the same); packets counted (both
    ways; @one_way, for UC: the client's sent, the server's received)."""
    msg = o.describe()
    if o.crc != 0 or o.src != 0:
        msg += "\n" + diagnostics()
    assert o.crc == 0 and o.src == 0, msg
    for name, s in (("client", o.client), ("server", o.srv)):
        assert s and s["errors"] == 0 and s["error_list"] == [], f"{name}: {msg}"
        assert set(s["statuses"]) <= {"IBV_WC_SUCCESS"}, f"{name}: {msg}"
    assert o.client["ops"] == ops, msg
    assert o.srv["ops"] == (ops if server_ops is None else server_ops), msg
    for side in SIDES:
        if is_hmr(side):
            for name in MUST_RISE:
                if one_way and name != ("rcvd_pkts" if side == o.server else "sent_pkts"):
                    continue
                assert o.delta[side].get(name, 0) > 0, f"{DEVICE[side]} on {side}: {name} " \
                    f"did not rise\n{msg}"
    print(f"{o.client['op']} server on {o.server}: {o.client['ops']} ops, {o.client['bytes']} "
          f"bytes in {o.secs:.1f} s (client {o.client['secs']} s)")


def odp_opts(op):
    """--odp for each side whose device has ODP for @op; skips when neither has it."""
    return odp_pair("--odp", ODP_CAPS[op])


@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("mode", ["mr", "odp"])
@pytest.mark.parametrize("op", OPS)
def test_op(op, mode, server):
    """Every operation at the default sizes (atomics: 8 bytes), three iterations each."""
    opts = odp_opts(op) if mode == "odp" else {s: [] for s in SIDES}
    iters = 3
    o = run_ops(op, server, ["--iters", str(iters)], client_extra=opts[other(server)],
                server_extra=opts[server])
    n = iters * (1 if op in ("cas", "faa") else DEFAULT_SIZES)
    check(o, n)
    assert o.client["odp"] == bool(opts[other(server)]) and o.srv["odp"] == bool(opts[server])


@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("mode", ["mr", "odp"])
@pytest.mark.parametrize("op", ["atomic_write", "flush"])
def test_flush_op(op, mode, server):
    """ATOMIC WRITE (4 words per iteration) and FLUSH (WRITE + FLUSH of the range, the last
    one of the whole MR, at the default sizes) on the wire, in the formats rxe uses."""
    opts = {s: [] for s in SIDES}
    if mode == "odp":
        # The ODP capability bits for these arrived after 6.12: a device of an older kernel
        # (hmr too) cannot advertise them, and its side registers pinned memory.
        caps = ODP_CAPS[op] | (ODP_CAPS["write"] if op == "flush" else set())
        opts = {s: ["--odp"] if caps <= odp_caps(s).get("rc", set()) else [] for s in SIDES}
        if not any(opts.values()):
            pytest.skip(f"no device advertises ODP {sorted(caps)} ({release('self')}, "
                        f"{release('peer')})")
    iters, depth = 2, 4 if op == "atomic_write" else 2
    o = run_ops(op, server, ["--iters", str(iters), "--depth", str(depth)],
                client_extra=opts[other(server)], server_extra=opts[server])
    check(o, iters * depth * (1 if op == "atomic_write" else DEFAULT_SIZES))


@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
def test_flush_to_a_qp_not_enabled_for_it(server):
    """A FLUSH to a QP without IBV_ACCESS_FLUSH_GLOBAL in its access flags is answered with an
    invalid-request NAK, as rxe answers it: the WRITE before it lands (the server checks its
    data), the FLUSH completes IBV_WC_REM_INV_REQ_ERR at the requester, an hmr responder counts
    a NAK sent."""
    o = run_ops("flush", server, ["--iters", "1", "--depth", "1", "--sizes", "4096"],
                client_extra=["--flush-status", "IBV_WC_REM_INV_REQ_ERR"],
                server_extra=["--no-qp-flush"])
    msg = o.describe()
    assert o.crc == 0 and o.src == 0, msg + "\n" + diagnostics()
    assert o.client["statuses"].get("IBV_WC_REM_INV_REQ_ERR") == 1, msg
    assert o.client["statuses"].get("IBV_WC_SUCCESS") == 1, msg   # the WRITE
    assert o.srv["errors"] == 0 and o.srv["ops"] == 1, msg         # its data checked
    if is_hmr(server):     # rxe has no counter of the NAKs it sends
        assert o.delta[server].get("sent_naks", 0) >= 1, msg


@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("op", ["send", "write_imm"])
def test_rnr(op, server):
    """The responder's receives come 1 s late: SENDs and WRITEs with immediate (one packet, and
    five whose last needs the receive) are answered with RNR NAKs carrying the responder's
    min_rnr_timer and retried (rnr_retry 7: for ever) until they land, byte for byte."""
    iters = 2
    o = run_ops(op, server, ["--iters", str(iters), "--sizes", "1,5000"],
                server_extra=["--late-recv", "1"])
    check(o, iters * 2)
    assert o.delta[server].get("send_rnr_err", 0) > 0, o.describe()
    assert o.delta[other(server)].get("rcvd_rnr_err", 0) > 0, o.describe()


# Big messages once each way of the data: 64 MiB (65536 packets of a 1024-byte path MTU, every
# page stamped) always; 1 GiB with HMR_WIRE_BIG=1 only (minutes per direction at the few MB/s the
# emulated link carries, and 3 GiB of memory per guest: run-guest --mem 6G).
@pytest.mark.parametrize("size", [64 << 20, pytest.param(1 << 30, marks=pytest.mark.skipif(
    os.environ.get("HMR_WIRE_BIG") != "1", reason="1 GiB by hand: HMR_WIRE_BIG=1, --mem 6G"))],
    ids=lambda s: f"{s >> 20}MiB")
@pytest.mark.parametrize("op", ["write", "read"])
def test_big(op, size):
    o = run_ops(op, "peer", ["--sizes", str(size), "--iters", "1"], timeout=3600)
    check(o, 1)
    assert o.client["bytes"] == size, o.describe()


# ODP targets that change under the transfer: MADV_DONTNEED, a new mapping in place (mmap
# MAP_FIXED), fork children that write to every page; the server, whose memory is the target,
# races. wire_ops sends every operation to a second, unchecked region too, which dontneed and
# remap work on while data lands in it; fork works on both (it keeps every byte).
@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("race", ["dontneed", "remap", "fork"])
@pytest.mark.parametrize("op", ["write", "send"])
def test_race(op, race, server):
    opts = odp_opts(op)
    if not opts[server]:
        pytest.skip(f"{DEVICE[server]} of {release(server)} (the target) has no ODP for {op}")
    iters, sizes = 4, "65536,1048576"
    o = run_ops(op, server, ["--iters", str(iters), "--sizes", sizes],
                client_extra=opts[other(server)],
                server_extra=[*opts[server], "--race", race])
    # the client counts both copies of each operation, the server the checked ones
    check(o, 2 * 2 * iters, 2 * iters)
    assert o.srv["race"] == race and o.srv["race_rounds"] >= 2 and not o.srv["race_failures"], \
        o.describe()
    if is_hmr(server):
        assert o.delta[server].get("page_invalidations", 0) > 0, o.describe()
    print(f"{race}: {o.srv['race_rounds']} rounds")


def test_ipv6_gids():
    """The RoCE v2 GIDs of the link's IPv6 addresses (fd00:2::1, fd00:2::2): IPv6/UDP packets."""
    port = next_port()
    argv = {s: ["python3", WIRE_OPS, role, "--op", "write", "--dev", DEVICE[s], "--port",
                str(port), "--ipv6", "--iters", "2"]
            for s, role in (("peer", "server"), ("self", "client"))}
    before = {s: counters(s) for s in SIDES}
    t0 = time.monotonic()
    client, src, sout, stuck = pair("peer", argv["peer"], argv["self"], port, 600)
    o = Outcome(server="peer", server_argv=argv["peer"], client_argv=argv["self"] + ["peer"],
                crc=client.returncode, src=src, cout=client.stdout + client.stderr, sout=sout,
                stuck=stuck,
                client=summary(client.stdout), srv=summary(sout), secs=time.monotonic() - t0,
                delta={s: delta(before[s], counters(s)) for s in SIDES})
    check(o, 2 * DEFAULT_SIZES)
    assert o.client["gid"] == "fd00:0002:0000:0000:0000:0000:0000:0001", o.describe()
    assert o.srv["gid"] == "fd00:0002:0000:0000:0000:0000:0000:0002", o.describe()


@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("mode", ["mr", "odp"])
@pytest.mark.parametrize("op", ["send", "send_imm", "write", "write_imm"])
def test_uc(op, mode, server):
    """UC QPs on the wire (--uc), at 0, 1, MTU-1, MTU, MTU+1, 4 KiB and 16 KiB, registered memory
    and ODP on each side whose device has UC ODP for @op: nothing is acknowledged, and on this
    quiet link every message lands, byte for byte."""
    opts = {s: [] for s in SIDES}
    if mode == "odp":
        opts = {s: ["--odp"] if ODP_CAPS[op] <= odp_caps(s).get("uc", set()) else []
                for s in SIDES}
        if not any(opts.values()):
            pytest.skip(f"no device advertises UC ODP {sorted(ODP_CAPS[op])}")
    # Nothing resends a lost UC packet, and the emulated link loses datagrams now and then: a
    # paced 1 MiB message (1024 packets of the lab's 1024-byte path MTU) lost some under load,
    # into rxe and into hmr alike. So at most 16 KiB (16 packets) here: what is checked is UC on
    # the wire, not the link's loss rate.
    sizes = ["--sizes", "0,1,1023,1024,1025,4096,16384"]
    iters = 2
    o = run_ops(op, server, ["--uc", "--iters", str(iters), *sizes],
                client_extra=opts[other(server)], server_extra=opts[server])
    check(o, iters * DEFAULT_SIZES, one_way=True)
    assert not o.delta[server].get("sent_pkts"), "a UC responder answered\n" + o.describe()
    assert o.client["odp"] == bool(opts[other(server)]) and o.srv["odp"] == bool(opts[server])


@pytest.mark.parametrize("server", DIRECTIONS, ids=lambda s: f"server-{s}")
@pytest.mark.parametrize("mw", [1, 2], ids=lambda t: f"type{t}")
@pytest.mark.parametrize("op", ["write", "read", "faa"])
def test_memory_window(op, mw, server):
    """The client reaches the server's memory through a memory window's R_Key (type 1 bound by
    ibv_bind_mw, type 2 by a BIND_MW WR on the server's QP) over an ODP MR where the server's
    device has ODP: byte for byte as through the MR's key. ODP on hmr sides only: rxe of 7.2
    misplaces ODP data at in-page offsets (the windows change nothing there: see Documentation.md,
    RoCEv2 on the wire), and rxe of 6.12 has none."""
    opts = {s: ["--odp"] if is_hmr(s) else [] for s in SIDES}
    iters = 2
    o = run_ops(op, server, ["--iters", str(iters)], client_extra=opts[other(server)],
                server_extra=[*opts[server], "--mw", str(mw)])
    check(o, iters * (1 if op == "faa" else DEFAULT_SIZES))
    assert o.srv["mw"] == mw and o.srv["rkey"] >> 8 != 0, o.describe()
