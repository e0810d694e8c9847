"""The lookup instruction goal, measured with callgrind (reproducible)."""
import re
import shutil

import pytest

from conftest import libhmr_bin, run

LOOKUP_GOAL = 40


def test_lookup_instructions(tmp_path):
    if not shutil.which("valgrind"):
        pytest.fail("valgrind missing (scripts/host-packages.txt)")
    n = 50000
    out = tmp_path / "cg.out"
    r = run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             "--toggle-collect=bench_lookup", libhmr_bin("hmr_bench"), "count", "lookup", n],
            timeout=120)
    assert r.returncode == 0, r.stdout
    total = int(re.search(r"^summary: (\d+)", out.read_text(), re.M).group(1))
    per_op = total / n
    print(f"present-entry lookup: {per_op:.1f} instructions (goal <= {LOOKUP_GOAL})")
    assert 5 < per_op <= LOOKUP_GOAL
