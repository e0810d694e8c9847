"""Helpers of the two-guest tests: run a tool on either guest, a server on one side and its client
on the other, GID indexes and ODP capabilities of each side's device.

A side is "self" (this guest, 192.0.2.1) or "peer" (the other guest, 192.0.2.2, reached with
hmr-peer); both names are also host names in /etc/hosts of both guests, so a client connects to
its server by the server's side name. The devices come from run-guest (HMR_SELF_DEVICE,
HMR_PEER_DEVICE): hmr0 or rxe0 on each side.
"""
import contextlib
import importlib.machinery
import importlib.util
import io
import os
import re
import subprocess
import time

import pytest

SIDES = ("self", "peer")
DEVICE = {"self": os.environ.get("HMR_SELF_DEVICE", ""), "peer": os.environ.get("HMR_PEER_DEVICE", "")}
ADDRESS = {"self": "192.0.2.1", "peer": "192.0.2.2"}

# perftest calibrates its cycle counter against the clock before it reports; under TCG the
# samples can be too noisy and it then refuses to report after a good run (the tool's
# measurement, not the device): such a pair is run again, at most twice more.
CALIBRATION = "Correlation coefficient r^2"
# What a client prints when nothing listened yet (its connect is then tried again).
NO_CONNECT = ("Couldn't connect to", "Unable to open file descriptor for socket connection",
              "Couldn't read/write remote address")


def other(side):
    return "peer" if side == "self" else "self"


HMR_PEER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab",
                        "hmr-peer")
_hmr_peer = []


def hmr_peer():
    """tests/lab/hmr-peer as a module: its client runs in this process, not in a Python of its
    own per call (starting one costs a good part of a second under TCG, several per test)."""
    if not _hmr_peer:
        loader = importlib.machinery.SourceFileLoader("hmr_peer", HMR_PEER)
        mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("hmr_peer", loader))
        loader.exec_module(mod)
        _hmr_peer.append(mod)
    return _hmr_peer[0]


def run_peer(args, timeout=120):
    """`hmr-peer ARGS` (a command, or --bg, --kill, --wait ID [--timeout S]) in this process; a
    CompletedProcess as run() returns, exit status 125 when the lab failed (hmr-peer's die)."""
    hp = hmr_peer()
    out, err, msg = io.BytesIO(), io.BytesIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(msg):
            rc = hp.call(args, (out, err), timeout)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 125
    return subprocess.CompletedProcess(["hmr-peer", *args], rc,
                                       out.getvalue().decode(errors="replace"),
                                       err.getvalue().decode(errors="replace") + msg.getvalue())


def run(side, argv, timeout=120):
    """Run @argv on @side; a CompletedProcess with stdout and stderr as text."""
    if side == "peer":
        return run_peer(list(argv), timeout)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace")


class Server:
    """@argv started in the background on @side."""

    def __init__(self, side, argv):
        self.side, self.argv, self.result = side, argv, None
        if side == "self":
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, errors="replace")
        else:
            r = run("peer", ["--bg", *argv])
            assert r.returncode == 0, f"hmr-peer --bg {argv}: {r.stderr}"
            self.job = r.stdout.strip()

    def ended(self):
        if self.side == "self":
            return self.proc.poll() is not None
        return os.path.exists(os.path.join(hmr_peer().JOBS, self.job, "rc"))

    def wait(self, timeout):
        """(exit status, output) once it ends; (None, output so far) after @timeout."""
        if self.side == "self":
            try:
                out, _ = self.proc.communicate(timeout=timeout)
                return self.proc.returncode, out
            except subprocess.TimeoutExpired:
                return None, ""
        r = run_peer(["--wait", self.job, "--timeout", str(timeout)])
        return (None if r.returncode == 124 else r.returncode), r.stdout + r.stderr

    def kill(self):
        if self.side == "self":
            if not self.ended():
                self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()  # this process runs hundreds of servers: no fd left open
        elif not self.ended():
            run("peer", ["--kill", self.job])


def listening(port):
    """Is a TCP socket of this guest listening on @port (/proc/net/tcp{,6}, state 0A)?"""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_listening(server, port, timeout=90):
    """Wait until @server listens on TCP @port (a loaded host can take seconds to start it)."""
    if server.side == "self":
        end = time.time() + timeout
        while not listening(port) and not server.ended() and time.time() < end:
            time.sleep(0.1)
        return
    # On the peer, one shell loop (not one hmr-peer round trip per look), bounded by the clock
    # (each look starts processes: a good part of a second under TCG).
    run("peer", ["bash", "-c", f'while [ $SECONDS -lt {timeout} ] && '
                 f'! [ -e /hmr-pipe/jobs/{server.job}/rc ] && '
                 f'! ss -Hltn "sport = :{port}" | grep -q .; do sleep 0.1; done'],
        timeout=timeout + 60)


def pair_once(server_side, server_argv, client_argv, port, timeout):
    server = Server(server_side, server_argv)
    try:
        wait_listening(server, port)
        for _ in range(3):
            client = run(other(server_side), [*client_argv, server_side], timeout)
            if client.returncode == 0 or server.ended() or \
                    not any(m in client.stdout + client.stderr for m in NO_CONNECT):
                break
            time.sleep(1)
        src, sout = server.wait(60)  # its client is done: it ends now or hangs
    finally:
        server.kill()
    return client, src, sout


def pair(server_side, server_argv, client_argv, port, timeout=180):
    """Run @server_argv on @server_side, then @client_argv (plus the server's host name) on the
    other side; assert both succeed; return (client output, server output)."""
    for _ in range(3):
        client, src, sout = pair_once(server_side, server_argv, client_argv, port, timeout)
        if CALIBRATION not in client.stdout + client.stderr + sout:
            break
    where = f"server on {server_side}: {' '.join(server_argv)}; client on {other(server_side)}"
    assert client.returncode == 0, \
        f"{where}: client exit {client.returncode}\n{client.stdout}{client.stderr}\n--- server:\n{sout}"
    assert src == 0, f"{where}: server exit {src} (None: still running)\n{sout}\n--- client:\n{client.stdout}"
    return client.stdout, sout


_port = [19000]


def next_port():
    """A TCP port no earlier test used (a server that lingers never blocks the next test)."""
    _port[0] += 1
    return _port[0]


# ---- device facts, read once per side ----

_cache = {}


def gid_index(side):
    """The index of @side's RoCEv2 GID of its link IPv4 address (::ffff:192.0.2.x), read from
    sysfs (gids/N and gid_attrs/types/N), not assumed."""
    key = ("gid", side)
    if key not in _cache:
        port = f"/sys/class/infiniband/{DEVICE[side]}/ports/1"
        r = run(side, ["sh", "-c", f"cd {port} && grep -s -H . gids/* gid_attrs/types/*; true"])
        gids, types = {}, {}
        for line in r.stdout.splitlines():
            path, _, value = line.partition(":")
            (gids if path.startswith("gids/") else types)[path.rsplit("/", 1)[1]] = value
        a, b, c, d = (int(x) for x in ADDRESS[side].split("."))
        want = f"0000:0000:0000:0000:0000:ffff:{a:02x}{b:02x}:{c:02x}{d:02x}"
        found = [int(i) for i, g in gids.items() if g == want and types.get(i) == "RoCE v2"]
        assert found, f"{DEVICE[side]} on {side} has no RoCE v2 GID {want}:\n{r.stdout}{r.stderr}"
        _cache[key] = min(found)
    return _cache[key]


def odp_caps(side):
    """@side's device's ODP capabilities from `ibv_devinfo -v`: {"general": {...}, "rc": {...}}."""
    key = ("odp", side)
    if key not in _cache:
        r = run(side, ["ibv_devinfo", "-v", "-d", DEVICE[side]])
        assert r.returncode == 0, r.stderr
        caps, cur = {}, None
        for line in r.stdout.splitlines():
            m = re.match(r"\s*(\w+)_odp_caps:\s*$", line)
            if m:
                cur = caps.setdefault(m.group(1), set())
            elif cur is not None and re.fullmatch(r"\s+[A-Z_ ]+", line):
                cur.add(line.strip())
            else:
                cur = None
        _cache[key] = caps
    return _cache[key]


def odp_args(side, flag, rc_caps, implicit=False):
    """[@flag] when @side's device has ODP with the RC capabilities @rc_caps (and implicit ODP
    when asked), [] when it is an rxe device without them (rxe of 6.12 has no ODP). An hmr
    device must have them: hmr advertises ODP on every kernel."""
    caps = odp_caps(side)
    general = caps.get("general", set())
    need = {"ODP_SUPPORT"} | ({"ODP_SUPPORT_IMPLICIT"} if implicit else set())
    ok = need <= general and set(rc_caps) <= caps.get("rc", set())
    if ok:
        return [flag]
    assert DEVICE[side].startswith("rxe"), \
        f"{DEVICE[side]} lacks ODP {sorted(need)} / rc {sorted(rc_caps)}: {caps}"
    return []


def odp_pair(flag, rc_caps, implicit=False):
    """The ODP option of each side for a test that needs ODP with @rc_caps; skips when neither
    side's device has it (only an rxe device may lack it)."""
    args = {s: odp_args(s, flag, rc_caps, implicit) for s in SIDES}
    if not args["self"] and not args["peer"]:
        pytest.skip(f"{' and '.join(f'{DEVICE[s]} of {release(s)}' for s in SIDES)} have no ODP "
                    f"({', '.join(sorted(rc_caps))}{', implicit' if implicit else ''})")
    return args


def release(side):
    """The kernel release of @side (run-guest --peer-kernel may differ from --kernel)."""
    if ("release", side) not in _cache:
        _cache["release", side] = run(side, ["uname", "-r"]).stdout.strip()
    return _cache["release", side]


def directions():
    """The sides the server (the responder) of a data test runs on: both, unless the pair is
    symmetric, the same device on the same kernel release on both guests (hmr0 against hmr0 of
    one build): then either direction runs the same requester and responder code against the
    same code, and the server runs on the peer only (this guest's requester, the peer's
    responder). A pair of two devices or two kernels runs both directions."""
    if os.environ.get("HMR_PEER") != "1":
        return SIDES
    if DEVICE["self"] == DEVICE["peer"] and release("self") == release("peer"):
        return ("peer",)
    return SIDES
