"""Unmodified verbs applications over hmr0: ibv_rc_pingpong and perftest, two processes each."""
import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")


PORT = 18515  # the default port of ibv_*_pingpong and perftest


def listening(port):
    """Is a TCP socket listening on @port (/proc/net/tcp{,6}, state 0A)?"""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def client_server(args, timeout=120):
    """Run @args as a server, then as its client once the server listens (a loaded host can
    take seconds to start it); return both outputs."""
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.time() + 60
    while not listening(PORT) and server.poll() is None and time.time() < end:
        time.sleep(0.1)
    client = subprocess.run(args + ["localhost"], capture_output=True, text=True,
                            timeout=timeout)
    sout, _ = server.communicate(timeout=timeout)
    assert client.returncode == 0, client.stdout + client.stderr
    assert server.returncode == 0, sout
    return client.stdout, sout


@pytest.mark.parametrize("events", [False, True])
def test_ibv_rc_pingpong(events):
    args = ["ibv_rc_pingpong", "-d", "hmr0", "-g", "1", "-n", "200", "-s", "4096"]
    if events:
        args.append("-e")
    for out in client_server(args):
        assert "1638400 bytes in" in out and "200 iters" in out, out


@pytest.mark.parametrize("tool,extra", [
    ("ib_send_lat", []),
    ("ib_write_lat", []),
    ("ib_read_lat", []),
    ("ib_atomic_lat", []),
    ("ib_write_bw", []),
    ("ib_read_bw", []),
    ("ib_send_bw", []),
    ("ib_write_lat", ["--use_old_post_send"]),
    ("ib_send_lat", ["--use_old_post_send"]),
])
def test_perftest(tool, extra):
    args = [tool, "-d", "hmr0", "-x", "1", "-n", "200"] + extra
    cout, sout = client_server(args)
    assert "#bytes" in cout, cout
