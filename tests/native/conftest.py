"""Fixtures of the native libhmr tests: the build directory and a binary runner."""
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def build_dir():
    return (REPO / os.environ.get("HMR_BUILD", "build/host")).resolve()


def libhmr_bin(name):
    """Path of a libhmr test binary; fails the test clearly when it was not built."""
    path = build_dir() / "libhmr" / name
    if not path.exists():
        pytest.fail(f"{path} missing: build first (make build, or set HMR_BUILD)")
    return path


def run(cmd, timeout, cwd=None, env=None):
    """Run cmd, return CompletedProcess with text output (stderr folded into stdout)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          cwd=cwd, env=full_env)


def list_cases(name):
    """Case names of a C test binary (hmr_unit --list), or a marker when not built."""
    path = build_dir() / "libhmr" / name
    if not path.exists():
        return ["<not-built>"]
    out = subprocess.run([str(path), "--list"], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    return out.split()
