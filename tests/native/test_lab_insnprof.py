"""The lab's instruction profiler (run-guest --profile) on the host: its qemu plugin counting a
program's instructions between markers under qemu's user-mode emulator, and insnprof.py
telling a profile by function."""
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

LAB = REPO / "tests" / "lab"

# Counts from here, stops, ends phases: 2 instructions (dec, jnz) per loop iteration.
PROGRAM = r"""
#include <stdlib.h>
#include "hmr_prof.h"

static void spin(unsigned long n)
{
	__asm__ volatile("1: dec %0\n\tjnz 1b" : "+r"(n));
}

int main(int argc, char **argv)
{
	unsigned long a = atol(argv[1]), b = atol(argv[2]);

	hmr_prof_on();
	spin(a);
	hmr_prof_off();
	spin(50000);		/* not counted */
	hmr_prof_phase();
	hmr_prof_on();
	spin(b);
	hmr_prof_phase();	/* ends a phase while counting: the next one goes on counting */
	spin(b);
	hmr_prof_off();
	hmr_prof_phase();
	return 0;
}
"""


def build(tmp_path):
    so = tmp_path / "insnprof.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden",
                    "-o", so, LAB / "insnprof.c"], check=True)
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    prog = tmp_path / "prog"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-static", "-I", REPO / "perftest",
                    "-o", prog, src], check=True)
    return so, prog


def user_counts(path):
    out = {}
    for line in path.read_text().splitlines():
        phase, where, n = line.split()
        assert where == "user", line  # qemu-user runs no kernel code
        out[int(phase)] = int(n)
    return out


@pytest.mark.skipif(not shutil.which("qemu-x86_64"), reason="qemu-user is not installed")
def test_plugin_counts_only_between_markers(tmp_path):
    so, prog = build(tmp_path)
    out = tmp_path / "profile.txt"
    subprocess.run(["qemu-x86_64", "-plugin", f"{so},out={out}", prog, "1000", "3000"],
                   check=True, timeout=120)
    n = user_counts(out)
    assert sorted(n) == [0, 1, 2]
    # 2 instructions an iteration, and a few around the markers; the 50,000 uncounted
    # iterations (100,000 instructions) must not show.
    assert 2000 <= n[0] < 2100
    assert 6000 <= n[1] < 6100 and 6000 <= n[2] < 6100
    # Counts are the program's: twice the iterations, twice the count.
    subprocess.run(["qemu-x86_64", "-plugin", f"{so},out={out}", prog, "2000", "6000"],
                   check=True, timeout=120)
    m = user_counts(out)
    assert m[0] - n[0] == 2000 and m[1] - n[1] == 6000


@pytest.mark.skipif(not shutil.which("qemu-x86_64"), reason="qemu-user is not installed")
def test_plugin_refuses_a_missing_output_argument(tmp_path):
    so, prog = build(tmp_path)
    r = subprocess.run(["qemu-x86_64", "-plugin", str(so), prog, "1", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "out=FILE" in r.stderr


def write_run(tmp_path):
    (tmp_path / "kallsyms").write_text(
        "ffffffff81000000 T handle_mm_fault\n"
        "ffffffff81000400 t mt_find\n"
        "ffffffff81000800 D some_data\n"
        "ffffffffc0001000 t hmr_mr_fault\t[hmr]\n"
        "ffffffffc0001200 t hmr_access_begin\t[hmr]\n")
    (tmp_path / "profile.txt").write_text(
        # phase 0: the device's first touch; phase 1: its present write
        "0 ffffffff81000000 600\n0 ffffffff81000010 400\n0 ffffffff81000400 300\n"
        "0 ffffffffc0001000 100\n0 ffffffffc0001210 50\n0 user 20\n"
        "1 ffffffff81000000 100\n1 ffffffffc0001210 30\n1 user 20\n")


def report(*args):
    return subprocess.run([sys.executable, LAB / "insnprof.py", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_report_tells_functions_and_differences(tmp_path):
    write_run(tmp_path)
    r = report("--per", "2", tmp_path, "0-1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "== phases 0-1: 660.0 kernel instructions, 0.0 user"
    rows = [line.split(None, 1) for line in lines[1:]]
    assert rows == [["450.0", "handle_mm_fault"], ["150.0", "mt_find"],
                    ["50.0", "hmr_mr_fault [hmr]"], ["10.0", "hmr_access_begin [hmr]"]]


def test_phases_ended_is_the_next_phase_number(tmp_path):
    sys.path.insert(0, str(LAB))
    import insnprof
    assert insnprof.phases_ended(tmp_path) == 0  # no profile yet
    write_run(tmp_path)
    assert insnprof.phases_ended(tmp_path) == 2


def test_report_sums_by_module(tmp_path):
    write_run(tmp_path)
    r = report("--modules", tmp_path, "0")
    assert r.returncode == 0, r.stderr
    assert [line.split() for line in r.stdout.splitlines()[1:]] == [
        ["1300.0", "vmlinux"], ["150.0", "hmr"], ["20.0", "<user>"]]


def test_report_shows_each_phase_and_rejects_bad_input(tmp_path):
    write_run(tmp_path)
    r = report("--top", "1", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "== phase 0: 1450.0 kernel instructions, 20.0 user", "      1000.0  handle_mm_fault",
        "== phase 1: 130.0 kernel instructions, 20.0 user", "       100.0  handle_mm_fault"]
    assert report(tmp_path, "0*1").returncode == 2
    r = report(tmp_path, "0-7")
    assert r.returncode == 2 and "no phase 7" in r.stderr
    assert report(tmp_path / "nothing-here").returncode == 2
