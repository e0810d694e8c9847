"""Faults, invalidations and simulated DMA racing, checked against a shadow model of page
generations: no DMA chunk may hold a frame after the invalidation of its page returned."""
import re

import pytest

from conftest import libhmr_bin, run

VARIANTS = {
    "hmr_stress": 4,        # plain -O2, 9 bits per level
    "hmr_stress_g3": 3,     # 3 bits per level: 12-level tables
    "hmr_stress_asan": 3,   # AddressSanitizer + UBSan
    "hmr_stress_tsan": 3,   # ThreadSanitizer
}


def counters(out):
    return {k: int(v) for k, v in re.findall(r"([a-z_]+) (\d+)", out)}


@pytest.mark.parametrize("binary", sorted(VARIANTS))
def test_stress(binary):
    r = run(["setarch", "-R", libhmr_bin(binary), VARIANTS[binary]], timeout=120)
    assert r.returncode == 0, r.stdout
    assert "ok stress" in r.stdout
    assert "WARNING: ThreadSanitizer" not in r.stdout
    c = counters(r.stdout)
    assert c["violations"] == 0
    # The run must have exercised the protocol, not idled.
    assert c["populates"] > 100 and c["invalidations"] > 100 and c["chunks"] > 1000
    assert c["fence_waits"] > 0, "no invalidation ever waited for an access"


def test_stress_detects_missing_fence():
    """Freeing frames before the invalidation returns must be caught."""
    r = run([libhmr_bin("hmr_stress"), 2, "--broken"], timeout=60)
    assert r.returncode != 0
    assert "violation:" in r.stdout
