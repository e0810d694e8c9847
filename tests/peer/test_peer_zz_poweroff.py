"""The peer disappears mid-transfer: a WRITE stream runs from this guest into the peer, the peer
is powered off at once (hmr-peer --poweroff: no teardown, its device simply stops answering),
and the WRs in flight must end with IBV_WC_RETRY_EXC_ERR (the rest flushed) within the QP's
retries: timeout 14 is 4.096 us * 2^14 = 67 ms (hmr waits at least its min_ack_timeout_ms, 250
ms by default: the spec allows longer), retry_cnt 7 makes 8 waits, plus a margin of 20 s for an
emulated, loaded host. Afterwards this guest's device still works and nothing
of the program is left running (guest-init then tears hmr0 down and unloads hmr: a leaked
QP or process would fail the run).

Named so that it runs last of tests/peer (pytest takes the files in alphabetical order): after
it the peer is gone.
"""
import os
import subprocess
import threading
import time

import pytest

from peerlib import DEVICE, Server, next_port, run, wait_listening
from test_peer_wire_data import counters, delta, is_hmr, summary, wire_argv

pytestmark = pytest.mark.skipif(os.environ.get("HMR_PEER") != "1",
                                reason="runs in the first guest of a two-guest lab run")

QP_TIMEOUT_SECS = 4.096e-6 * 2 ** 14  # the QP's timeout attribute: 14
WAITS = 7 + 1                          # retry_cnt 7: the first try and 7 retries
MARGIN_SECS = 20
MIN_ACK_TIMEOUT = "/sys/module/hmr/parameters/min_ack_timeout_ms"


def limit_secs():
    """How long after its last completion a WR may take to fail: every wait of the QP's timeout
    (hmr's at least min_ack_timeout_ms), plus the margin."""
    wait = QP_TIMEOUT_SECS
    if is_hmr("self") and os.path.exists(MIN_ACK_TIMEOUT):
        with open(MIN_ACK_TIMEOUT) as f:
            wait = max(wait, int(f.read()) / 1000)
    return WAITS * wait + MARGIN_SECS


def wire_ops_processes():
    """The pids and command lines of wire_ops.py processes in this guest."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"wire_ops.py") for a in argv):
            found.append((int(pid), b" ".join(argv).decode(errors="replace")))
    return found


def test_peer_powered_off_mid_write_stream():
    limit = limit_secs()
    port = next_port()
    server = Server("peer", wire_argv("peer", "server", "write", port))
    wait_listening(server, port)
    argv = wire_argv("self", "client", "write", port,
                     ["--sizes", "65536", "--depth", "4", "--expect-status", "RETRY_EXC_ERR",
                      "--timeout-secs", f"{limit:.2f}", "--duration", "600"]) + ["peer"]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace")
    lines, streaming = [], threading.Event()

    def reader():
        for line in client.stdout:
            lines.append(line)
            if line.strip() == "streaming":
                streaming.set()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    powered_off = False
    try:
        assert streaming.wait(300), \
            f"the stream did not start: exit {client.poll()}\n{''.join(lines)}"
        before = counters("self")
        time.sleep(1)  # a few more WRITEs complete: the peer goes away mid-stream
        off = subprocess.run(["hmr-peer", "--poweroff"], capture_output=True, text=True,
                             timeout=120)
        t0 = time.monotonic()
        assert off.returncode == 0, off.stderr
        powered_off = True
        rc = client.wait(timeout=limit + 120)
        elapsed = time.monotonic() - t0
        t.join(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        if not powered_off:
            server.kill()
    out = "".join(lines)
    s = summary(out)
    where = f"{' '.join(argv)}\nexit {rc} {elapsed:.1f} s after the power-off\n{out}"
    assert rc == 0 and s and s["errors"] == 0, where
    assert s["first_error"] == "IBV_WC_RETRY_EXC_ERR", where
    assert s["error_after_secs"] <= limit and elapsed <= limit + 30, where
    assert set(s["statuses"]) <= {"IBV_WC_SUCCESS", "IBV_WC_RETRY_EXC_ERR",
                                  "IBV_WC_WR_FLUSH_ERR"}, where
    d = delta(before, counters("self"))
    if is_hmr("self"):
        # every wait of the WR that failed timed out: retry_cnt + 1 of them
        assert d.get("ack_timeouts", 0) >= 8, f"{d}\n{where}"
    print(f"RETRY_EXC_ERR {s['error_after_secs']} s after the last completed WRITE, the client "
          f"ended {elapsed:.1f} s after the power-off; {s['ops']} WRITEs before; {d}")

    # the local device still works, and nothing of wire_ops is left behind
    r = run("self", ["ibv_devinfo", "-d", DEVICE["self"]])
    assert r.returncode == 0 and "PORT_ACTIVE" in r.stdout, r.stdout + r.stderr
    left = wire_ops_processes()
    assert not left, f"still running: {left}"
