"""libFuzzer over random operation sequences checked against a flat reference model."""
import pytest

from conftest import libhmr_bin, run


@pytest.mark.parametrize("binary", ["hmr_fuzz", "hmr_fuzz_g3"])
def test_fuzz(binary, tmp_path):
    r = run([libhmr_bin(binary), "-max_total_time=12", "-seed=1", "-timeout=10",
             "-print_final_stats=1"], timeout=90, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "Done" in r.stdout
    assert not list(tmp_path.glob("crash-*"))
