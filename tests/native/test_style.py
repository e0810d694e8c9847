"""Kernel-side code follows kernel style and never pins memory."""
import glob
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNEL_SOURCES = sorted(glob.glob(f"{ROOT}/libhmr/src/*.c") + glob.glob(f"{ROOT}/libhmr/include/*.h")
                        + glob.glob(f"{ROOT}/kmod/*.[ch]") + glob.glob(f"{ROOT}/kmod/uapi/*.h"))


@pytest.fixture(scope="module")
def checkpatch():
    return subprocess.run([f"{ROOT}/scripts/get-checkpatch"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("path", KERNEL_SOURCES, ids=lambda p: os.path.relpath(p, ROOT))
def test_checkpatch_clean(checkpatch, path):
    r = subprocess.run([checkpatch, "--no-tree", "--terse", "--show-types", "-f", path],
                       capture_output=True, text=True)
    problems = [ln for ln in r.stdout.splitlines() if ": ERROR:" in ln or ": WARNING:" in ln]
    assert not problems, "\n".join(problems)


def test_kmod_never_pins():
    pattern = re.compile(r"\b(get_user_pages|pin_user_pages|ib_umem_get)\w*\s*\(")
    hits = []
    for path in glob.glob(f"{ROOT}/kmod/**/*.[ch]", recursive=True):
        for n, line in enumerate(open(path), 1):
            if pattern.search(line):
                hits.append(f"{os.path.relpath(path, ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
