"""How the benchmarks that read the lab's instruction profile sort functions into parts
(perftest/fault_profile.py, perftest/guest_wire_profile.py)."""
import collections
import importlib.util
import sys

from conftest import REPO


def load(name):
    sys.path.insert(0, str(REPO / "perftest"))
    spec = importlib.util.spec_from_file_location(name, REPO / "perftest" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fault_parts():
    part = load("fault_profile").part
    assert [part(n) for n in ("hmr_table_populate [hmr]", "hmm_vma_walk_pmd", "walk_pgd_range",
                              "mt_find", "find_vma", "vm_normal_page", "ktime_get", "read_tsc",
                              "mtree_load", "down_read", "do_user_addr_fault",
                              "handle_mm_fault")] == \
        ["hmr", "hmm", "hmm", "hmm", "hmm", "hmm", "clock", "clock", "kernel", "kernel",
         "kernel", "kernel"]


def test_wire_parts():
    parts = load("guest_wire_profile").parts
    got = parts(collections.Counter({"hmr": 1276, "crc32_pclmul": 486, "crc32_generic": 8,
                                     "vmlinux": 4600, "virtio_net": 291, "<user>": 12}))
    assert got == {"device": 1276, "crc": 494, "kernel": 4903, "total": 6673}
    got = parts(collections.Counter({"rdma_rxe": 1536, "ib_core": 116, "ib_uverbs": 6,
                                     "vmlinux": 5000}))
    assert got == {"device": 1658, "crc": 0, "kernel": 5000, "total": 6658}
