"""tests/lab/emulator-fault: which kernel splats run-guest may leave uncounted (only those whose
register dumps hold EFLAGS no x86 CPU can have) and which it must count."""
import os
import subprocess

import pytest

HERE = os.path.dirname(__file__)
TOOL = os.path.join(HERE, "..", "lab", "emulator-fault")
# A real one: CI's rxe peer (no hmr loaded), a #DB WARN in kmem_cache_alloc_node, EFLAGS da08....
DB = open(os.path.join(HERE, "data", "emulator-fault-db.log")).read()
# Another: CI's hmr guest, a double fault in the same function (EFLAGS 03770e02), then a panic.
DF = open(os.path.join(HERE, "data", "emulator-fault-df.log")).read()
HMR_WARN = """[  27.095602] WARNING: CPU: 0 PID: 12 at kmod/hmr_mr.c:610 hmr_access_map+0x104/0x220 [hmr]
[  27.095700] RIP: 0010:hmr_access_map+0x104/0x220 [hmr]
[  27.095800] RSP: 0018:ffffa8c0c0077c18 EFLAGS: 00010246
"""
USER_TRAP = "[  119.742064] traps: ibv_rc_pingpong[384] general protection fault ip:7ff22e0ab940 " \
            "sp:7ffc6bd1de48 error:0 in libhmr-rdmav34.so[2940,7ff22e0ab000+3000]\n"


def emulator_only(tmp_path, text):
    log = tmp_path / "console.log"
    log.write_text("[    0.000000] Linux version 6.12\n" + text)
    return subprocess.run([TOOL, str(log)]).returncode == 0


@pytest.mark.parametrize("text,emulator", [
    (DB, True),                      # EFLAGS da080002 / da080302: reserved bits set
    (DF, True),                      # the panic after the oops is not a splat of its own
    (HMR_WARN, False),               # a WARN with sane flags counts
    (DB + HMR_WARN, False),          # ... also beside an emulator fault
    (USER_TRAP, False),              # no register dump: counted
    ("", False),                     # nothing at all: not an emulator fault
    (HMR_WARN.replace("00010246", "00410246"), True),   # bit 22
    (HMR_WARN.replace("00010246", "00210246"), False),  # bit 21 (ID) is a real flag
])
def test_emulator_fault(tmp_path, text, emulator):
    assert emulator_only(tmp_path, text) == emulator


def test_guestrun_runs_again_after_an_emulator_fault_only(tmp_path):
    """tests/guestrun.py's rule for a run that brought no results back: the lab or the emulator
    (run once more), or the code under test (not)."""
    import sys
    sys.path.insert(0, os.path.join(HERE, ".."))
    import guestrun
    cases = {"clean": ("", True), "emulator": (DF, True),
             "hmr WARN": ("hmr: loaded\n" + HMR_WARN, False)}
    for name, (text, again) in cases.items():
        log = tmp_path / f"{name}.log"
        log.write_text(text)
        assert guestrun.not_the_code(str(log), text) == again, name
