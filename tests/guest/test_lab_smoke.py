"""The lab is real: a live kernel with rxe0, working verbs between processes, our module loads."""
import os
import subprocess

import pytest

from test_hmr_apps import client_server

KVER = os.uname().release
BUILD = os.environ.get("HMR_BUILD_DIR", "")


def run(*cmd, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_kernel_is_the_lab_kernel():
    assert os.environ.get("HMR_GUEST") == "1"
    assert os.path.isdir(f"/lib/modules/{KVER}/kernel")


def test_rxe0_port_active():
    out = run("rdma", "link", "show", "rxe0/1").stdout
    assert "state ACTIVE" in out and "netdev lo" in out, out


def test_ibv_devices_lists_rxe0():
    r = run("ibv_devices")
    assert r.returncode == 0
    assert any(line.split()[:1] == ["rxe0"] for line in r.stdout.splitlines()), r.stdout


def test_ibv_devinfo_rxe0():
    r = run("ibv_devinfo", "-d", "rxe0")
    assert r.returncode == 0, r.stderr
    assert "PORT_ACTIVE" in r.stdout and "transport:\t\t\tInfiniBand" in r.stdout, r.stdout


def test_rc_pingpong_two_processes():
    args = ["ibv_rc_pingpong", "-d", "rxe0", "-g", "1", "-n", "200", "-s", "4096"]
    for out in client_server(args):
        assert "1638400 bytes in" in out and "200 iters" in out, out


def test_module_from_kmod_loads_and_unloads():
    ko = os.path.join(BUILD, "kmod", "hmr.ko")
    assert os.path.exists(ko), f"build-guest did not build {ko}"
    assert os.path.isdir("/sys/module/hmr"), "guest-setup should have loaded hmr.ko"
    with open("/sys/module/hmr/parameters/check_pages") as f:   # the lab's page checker is on
        assert f.read().strip() == "Y"
    had_hmr0 = run("rdma", "link", "show", "hmr0/1").returncode == 0
    r = run("rmmod", "hmr")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists("/sys/module/hmr")
    r = run("insmod", ko, "check_pages=1")
    assert r.returncode == 0, r.stderr
    assert os.path.isdir("/sys/module/hmr")
    if had_hmr0:  # leave the guest as guest-setup made it
        r = run("rdma", "link", "add", "hmr0", "type", "hmr", "netdev", "lo")
        assert r.returncode == 0, r.stderr


def test_module_links_libhmr():
    """libhmr is compiled into hmr.ko by kbuild: its entry points are module symbols."""
    syms = open("/proc/kallsyms").read().splitlines()
    mine = {line.split()[2] for line in syms if line.endswith("\t[hmr]")}
    for sym in ("hmr_mirror_init", "hmr_mirror_populate", "hmr_mirror_invalidate",
                "hmr_access_begin"):
        assert sym in mine, f"{sym} is not a symbol of hmr.ko"
