"""hmr-peer's agent and its client on the host, without guests: the two-guest tests call the
client in their own process (tests/peer/peerlib.py) hundreds of times a run, so each call must
give the command's output and status and leave no file descriptor behind."""
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO

HMR_PEER = REPO / "tests" / "lab" / "hmr-peer"
PEERLIB = REPO / "tests" / "peer" / "peerlib.py"


def load_peerlib():
    loader = importlib.machinery.SourceFileLoader("peerlib_under_test", str(PEERLIB))
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(mod)
    return mod


@pytest.fixture
def agent(tmp_path, monkeypatch):
    """An hmr-peer agent serving @tmp_path, as the peer guest's is /hmr-pipe."""
    monkeypatch.setenv("HMR_PIPE", str(tmp_path))
    log = open(tmp_path / "agent.log", "w")
    proc = subprocess.Popen([sys.executable, str(HMR_PEER), "--serve"], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    end = time.monotonic() + 30
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() < end, "the agent did not start"
        time.sleep(0.05)
    yield tmp_path
    (tmp_path / "stop").touch()
    assert proc.wait(timeout=30) == 0, (tmp_path / "agent.log").read_text()
    log.close()


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


def test_client_in_process_many_calls_no_fd_left(agent):
    peerlib = load_peerlib()
    peerlib.run_peer(["true"])  # the first call loads hmr-peer
    before = open_fds()
    for i in range(40):
        r = peerlib.run_peer(["sh", "-c", f"echo out{i}; echo err{i} >&2; exit {i % 5}"])
        assert (r.returncode, r.stdout, r.stderr) == (i % 5, f"out{i}\n", f"err{i}\n")

    r = peerlib.run_peer(["--bg", "sleep", "30"])
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip()
    r = peerlib.run_peer(["--wait", job, "--timeout", "0.3"])
    assert r.returncode == 124 and "still runs" in r.stderr, r
    assert peerlib.run_peer(["--kill", job]).returncode == 0
    assert peerlib.run_peer(["--wait", job]).returncode == 143  # SIGTERM

    with pytest.raises(subprocess.TimeoutExpired):
        peerlib.run_peer(["sleep", "30"], timeout=0.5)
    assert peerlib.run_peer(["--wait", "no-such-job"]).returncode == 2
    assert open_fds() == before
    r = peerlib.run_peer(["--no-such-option"])  # usage, not a command on the peer
    assert r.returncode == 2 and "hmr-peer CMD" in r.stderr, r


def test_command_line_client(agent):
    env = dict(os.environ, HMR_PIPE=str(agent))
    r = subprocess.run([sys.executable, str(HMR_PEER), "sh", "-c", "echo hi; exit 3"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert (r.returncode, r.stdout) == (3, "hi\n"), r
    r = subprocess.run([sys.executable, str(HMR_PEER), "--bg", "sh", "-c", "echo bg; exit 4"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip(), r
    r = subprocess.run([sys.executable, str(HMR_PEER), "--wait", r.stdout.strip()],
                       capture_output=True, text=True, env=env, timeout=60)
    assert (r.returncode, r.stdout) == (4, "bg\n"), r


def test_no_agent_is_a_lab_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("HMR_PIPE", str(tmp_path))
    r = load_peerlib().run_peer(["true"])
    assert r.returncode == 125 and "no peer agent serves" in r.stderr, r
