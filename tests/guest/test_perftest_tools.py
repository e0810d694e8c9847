"""perftest tools (hmr_faultbench, hmr_fencebench, hmr_memcpy): brief runs on rxe0, sane CSV.

The tools verify the bytes they transfer and exit non-zero on a mismatch, so exit status 0 means
the data arrived. Exit status 77 ("odp unsupported") is accepted only where ibv_devinfo agrees
that rxe0 has no RC ODP (rxe of 6.12); on 7.2 rxe has it and the ODP cases must run.
"""
import csv
import io
import os
import re
import subprocess

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

TOOLS = os.path.join(os.environ.get("HMR_BUILD_DIR", ""), "user", "perftest")
DEV = "rxe0"


def rxe_has_odp():
    out = subprocess.run(["ibv_devinfo", "-d", DEV, "-v"], capture_output=True, text=True,
                         timeout=60).stdout
    caps = re.search(r"general_odp_caps:(.*?)uc_odp_caps:", out, re.S)
    return bool(caps) and all(w in caps.group(1) for w in
                              ("ODP_SUPPORT", "SUPPORT_WRITE", "SUPPORT_READ"))


def run_tool(name, *args, timeout=900):  # > hmr_fencebench's alarm()
    """Run a tool; return (rows, stderr). Skips on 77 only if the device really lacks ODP."""
    path = os.path.join(TOOLS, name)
    assert os.path.exists(path), f"build-guest did not build {path}"
    r = subprocess.run([path, *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode == 77:
        assert "odp unsupported" in r.stderr, r.stderr
        assert not rxe_has_odp(), f"{name} says odp unsupported but ibv_devinfo lists it"
        pytest.skip(f"{DEV} has no ODP on {os.uname().release}")
    assert r.returncode == 0, f"{name} {' '.join(args)} exited {r.returncode}:\n{r.stderr}"
    return list(csv.DictReader(io.StringIO(r.stdout))), r.stderr


def check_latency_rows(rows, lo, hi, count):
    for row in rows:
        vals = [int(row[k]) for k in (lo, hi)]
        assert 0 < vals[0] <= vals[1] < 10**10, row
        assert int(row[count]) > 0, row


def test_memcpy_both_sizes():
    """glibc's memcpy and the kernel's page copy (rep movsq per page, x86-64), each size."""
    rows, _ = run_tool("hmr_memcpy", "-r", "2")
    assert [(r["op"], int(r["bytes"])) for r in rows] == [
        ("memcpy", 65536), ("page_copy", 65536), ("memcpy", 1048576), ("page_copy", 1048576)]
    for r in rows:
        assert 10 < float(r["mb_per_s"]) < 10**6, r


def test_memcpy_one_size():
    rows, _ = run_tool("hmr_memcpy", "-s", "4096", "-r", "1")
    assert [(r["op"], r["bytes"]) for r in rows] == [("memcpy", "4096"), ("page_copy", "4096")]
    assert all(float(r["mb_per_s"]) > 10 for r in rows)


def test_memcpy_no_page_copy_of_a_partial_page():
    """page_copy copies whole pages only: a size that is no multiple of 4 KiB gets memcpy alone."""
    rows, _ = run_tool("hmr_memcpy", "-s", "6000", "-r", "1")
    assert [(r["op"], r["bytes"]) for r in rows] == [("memcpy", "6000")]


def test_faultbench_one_size():
    """-s BYTES: only the cases of that size (to profile one of them)."""
    rows, _ = run_tool("hmr_faultbench", "-d", DEV, "-n", "3", "-s", "4096")
    assert sorted((r["op"], int(r["bytes"]), r["state"]) for r in rows) == [
        ("read", 4096, "present"), ("write", 4096, "present")]
    # rxe has no page_fault_ns / page_lookup_ns counters: the columns are there, empty
    assert all(r["fault_ns"] == "" and r["lookup_ns"] == "" for r in rows), rows
    check_latency_rows(rows, "median_ns", "p99_ns", "iters")


def test_faultbench_pinned_present_only():
    rows, err = run_tool("hmr_faultbench", "-d", DEV, "-n", "5")
    assert "only the present cases" in err
    assert sorted((r["op"], int(r["bytes"]), r["backing"]) for r in rows) == [
        ("read", 4096, "4k"), ("read", 2097152, "4k"), ("read", 2097152, "thp"),
        ("write", 4096, "4k"), ("write", 2097152, "4k"), ("write", 2097152, "thp")]
    assert {(r["device"], r["mode"], r["state"], r["iters"]) for r in rows} == {
        (DEV, "pinned", "present", "5")}
    check_latency_rows(rows, "median_ns", "p99_ns", "iters")


def test_faultbench_odp_dropped_and_present():
    rows, _ = run_tool("hmr_faultbench", "-d", DEV, "-o", "-n", "5", "-r", "2")
    cases = [(r["op"], int(r["bytes"]), r["backing"], r["state"]) for r in rows]
    want = {(op, size, backing, state) for op in ("write", "read")
            for size, backing in ((4096, "4k"), (2097152, "4k"), (2097152, "thp"))
            for state in ("dropped", "present")}
    assert len(cases) == 24 and set(cases) == want
    assert {r["mode"] for r in rows} == {"odp"}
    check_latency_rows(rows, "median_ns", "p99_ns", "iters")


def test_faultbench_hmr_fault_time():
    """On hmr0 the dropped cases fault: the rise of page_fault_ns per WR, and of it HMM's
    look-up (page_lookup_ns); the present cases do not fault at all."""
    rows, _ = run_tool("hmr_faultbench", "-d", "hmr0", "-o", "-n", "3", "-s", "4096")
    by = {(r["op"], r["state"]): r for r in rows}
    assert sorted(by) == [("read", "dropped"), ("read", "present"), ("write", "dropped"),
                          ("write", "present")]
    for op in ("read", "write"):
        d, p = by[(op, "dropped")], by[(op, "present")]
        assert 0 < int(d["lookup_ns"]) < int(d["fault_ns"]) < 10**10, d
        assert int(p["fault_ns"]) == 0 and int(p["lookup_ns"]) == 0, p


def test_faultbench_cpu_floor():
    """-d cpu: the CPU's own first touch of the same targets, no device."""
    rows, _ = run_tool("hmr_faultbench", "-d", "cpu", "-n", "3")
    assert {(r["device"], r["mode"], r["op"]) for r in rows} == {("cpu", "cpu", "write")}
    assert sorted((int(r["bytes"]), r["backing"], r["state"]) for r in rows) == sorted(
        (size, backing, state) for size, backing in ((4096, "4k"), (2097152, "4k"),
                                                      (2097152, "thp"))
        for state in ("dropped", "present"))
    check_latency_rows(rows, "median_ns", "p99_ns", "iters")
    by = {(int(r["bytes"]), r["backing"], r["state"]): int(r["median_ns"]) for r in rows}
    assert by[(2097152, "4k", "dropped")] > by[(2097152, "4k", "present")]  # it faulted


def test_sharebench_rows():
    rows, _ = run_tool("hmr_sharebench", "-d", DEV, "-n", "3")
    assert [(r["case"], r["n"]) for r in rows] == [("write", "1"), ("reg_write_dereg", "1")]
    check_latency_rows(rows, "p50", "p99", "iters")


def test_sharebench_odp_rows_on_hmr0():
    rows, _ = run_tool("hmr_sharebench", "-d", "hmr0", "-o", "-n", "2", timeout=900)
    assert [(r["case"], r["n"], r["unit"]) for r in rows] == [
        ("write", "1", "ns"), ("reg_write_dereg", "1", "ns"), ("invalidate", "1", "ns"),
        ("invalidate", "100", "ns"), ("invalidate", "10000", "ns"),
        ("tables_4k", "256", "B/GiB"), ("tables_2m", "256", "B/GiB"),
        ("tables_1t_sparse", "16", "B")]
    for r in rows:  # tables_2m may be 0: 2 MiB leaves need no table when the directory exists
        assert (0 <= int(r["p50"]) if r["case"] == "tables_2m" else 0 < int(r["p50"])), r
        assert int(r["p50"]) <= 10**10, r
    t = {r["case"]: int(r["p50"]) for r in rows}
    assert t["tables_2m"] < t["tables_4k"], t  # 2 MiB leaves need no leaf tables


def test_fencebench_rows():
    rows, _ = run_tool("hmr_fencebench", "-d", DEV, "-o", "-n", "10")
    assert [r["op"] for r in rows] == ["dontneed_idle", "remap_idle", "dontneed_busy",
                                      "remap_busy"]
    check_latency_rows(rows, "p50_ns", "p99_ns", "samples")
    for r in rows:
        assert int(r["p99_ns"]) <= int(r["max_ns"]) and r["samples"] == "10", r
        assert 0 <= int(r["wr_errors"]) <= int(r["writes"]), r
    for r in rows[2:]:  # each busy sample waits for two more completed writes
        assert int(r["writes"]) >= 20, r
    for r in rows:  # where the time went: the thread's CPU time is part of its wall time
        assert 0 < int(r["cpu_ns"]) <= int(r["wall_ns"]) * 1.05 + 10**6, r


@pytest.mark.parametrize("args", [
    ("hmr_faultbench",), ("hmr_faultbench", "-d", DEV, "-n", "0"),
    ("hmr_fencebench", "-d", DEV), ("hmr_memcpy", "-r", "0")])
def test_usage_errors(args):
    r = subprocess.run([os.path.join(TOOLS, args[0]), *args[1:]], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "usage:" in r.stderr, r.stderr


def test_unknown_device():
    r = subprocess.run([os.path.join(TOOLS, "hmr_faultbench"), "-d", "nosuchdev0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot open nosuchdev0" in r.stderr, r.stderr
