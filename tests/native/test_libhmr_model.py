"""Promela model of the fault/invalidate/fence protocol, checked with spin."""
import pathlib
import re
import shutil

import pytest

from conftest import REPO, run

MODEL = REPO / "libhmr" / "model" / "fence.pml"


def verify(tmp_path, *defines):
    if not shutil.which("spin"):
        pytest.fail("spin missing: apt-get install spin (scripts/host-packages.txt)")
    r = run(["spin", *defines, "-a", MODEL], timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    r = run(["gcc", "-O2", "-DSAFETY", "-o", "pan", "pan.c"], timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    r = run([tmp_path / "pan"], timeout=120, cwd=tmp_path)
    m = re.search(r"errors: (\d+)", r.stdout)
    assert m, r.stdout
    return int(m.group(1)), r.stdout


def test_model_safe(tmp_path):
    """No access after fence, no lost invalidation, no deadlock (invalid end state)."""
    errors, out = verify(tmp_path)
    assert errors == 0, out
    assert "invalid end states\t+" in out


@pytest.mark.parametrize("broken", ["-DBROKEN_FENCE", "-DBROKEN_SEQ"])
def test_model_catches_broken_protocol(tmp_path, broken):
    errors, out = verify(tmp_path, broken)
    assert errors > 0, out
    assert "assertion violated" in out
