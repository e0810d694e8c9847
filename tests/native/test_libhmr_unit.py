"""libhmr unit tests: every operation and edge, both table geometries, under ASan+UBSan.

One pytest test per C test case (hmr_unit CASE)."""
import pytest

from conftest import libhmr_bin, list_cases, run


@pytest.mark.parametrize("binary", ["hmr_unit", "hmr_unit_g3"])
@pytest.mark.parametrize("case", list_cases("hmr_unit"))
def test_unit(binary, case):
    r = run([libhmr_bin(binary), case], timeout=90)
    assert r.returncode == 0, r.stdout
    assert f"ok {case}" in r.stdout, r.stdout
    assert "FAIL" not in r.stdout


def test_unit_rejects_unknown_case():
    r = run([libhmr_bin("hmr_unit"), "no_such_case"], timeout=30)
    assert r.returncode != 0
