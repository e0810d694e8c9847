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
# A third: a NULL dereference in net_rx_action of an hmr guest ("BUG:" then "Oops:" above one
# register dump, EFLAGS 83988412), made by tests/lab/run-guest --peer and the pingpong tests.
OOPS = open(os.path.join(HERE, "data", "emulator-fault-oops.log")).read()
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
    (OOPS, True),                    # nor the "Oops" line of a "BUG:"
    (OOPS.replace("EFLAGS: 83988412", "EFLAGS: 00010246"), False),
    (HMR_WARN, False),               # a WARN with sane flags counts
    (DB + HMR_WARN, False),          # ... also beside an emulator fault
    (USER_TRAP, False),              # no register dump: counted
    (DB + USER_TRAP, True),          # ... unless it follows an emulator fault
    (USER_TRAP + DB, False),         # ... not before one
    ("", False),                     # nothing at all: not an emulator fault
    (HMR_WARN.replace("00010246", "00410246"), True),   # bit 22
    (HMR_WARN.replace("00010246", "00210246"), False),  # bit 21 (ID) is a real flag
])
def test_emulator_fault(tmp_path, text, emulator):
    assert emulator_only(tmp_path, text) == emulator


def guestrun():
    import sys
    sys.path.insert(0, os.path.join(HERE, ".."))
    import guestrun
    return guestrun


def test_guestrun_blames_the_lab_only_for_emulator_faults_and_early_breaks(tmp_path):
    """tests/guestrun.py's rule: a run the lab or the emulator broke goes on in a new boot; one
    the code under test broke, or that passed, does not."""
    logs = {"clean": "", "emulator": DB, "hmr WARN": "hmr: loaded\n" + HMR_WARN,
            "emulator then hmr WARN": DB + "hmr: loaded\n" + HMR_WARN}
    console = {}
    for name, text in logs.items():
        log = tmp_path / f"{name}.log"
        log.write_text(text)
        console[name] = (str(log), text)
    failed = [("tests.peer.test_a::test_x", "failed", "boom")]
    broke = guestrun().lab_broke
    assert broke(1, failed, [console["clean"], console["emulator"]])
    assert broke(125, [], [console["emulator"], console["clean"]])
    assert broke(125, [], [console["clean"]])
    assert not broke(0, [], [console["emulator"]])          # it passed: nothing to go on with
    assert not broke(1, failed, [console["clean"]])        # a test failed on its own
    assert not broke(125, [], [console["hmr WARN"]])
    assert not broke(1, failed, [console["emulator then hmr WARN"]])
    assert not broke(125, failed, [console["clean"], console["clean"]])


def test_guestrun_goes_on_without_the_tests_done(tmp_path):
    """A broken run's passed and skipped tests are kept and left out of the next boot; its
    failed and never-run ones run there; after RESUMES broken boots the last one stands."""
    import contextlib
    import types
    gr = guestrun()
    log = tmp_path / "console.log"
    log.write_text(DB)
    broken = (str(log), DB)
    a, b, c = ("tests.peer.test_a::test_x[1]", "passed", ""), \
        ("tests.peer.test_a::test_y", "skipped", "why"), ("tests.peer.test_b::test_z", "failed", "")
    runs = [(125, [a, b, c], "", [broken]), (1, [c], "", [broken]),
            (0, [(c[0], "passed", "")], "", [("x", "")])]
    asked = []

    class Fake(gr.Suite):
        def once(self, done=()):
            asked.append([gr.node_id(n) for n in done])
            return runs[len(asked) - 1]

    capman = types.SimpleNamespace(global_and_fixture_disabled=contextlib.nullcontext)
    config = types.SimpleNamespace(pluginmanager=types.SimpleNamespace(getplugin=lambda _: capman))
    rc, cases, _, first = Fake("p", "peer p", [], "tests/peer", "x").run(config)
    assert asked == [[], ["tests/peer/test_a.py::test_x[1]", "tests/peer/test_a.py::test_y"],
                     ["tests/peer/test_a.py::test_x[1]", "tests/peer/test_a.py::test_y"]]
    assert rc == 0 and sorted(cases) == sorted([a, b, (c[0], "passed", "")])
    assert "emulator" in first
    runs[1:] = [(1, [c], "", [broken])] * 3
    asked.clear()
    rc, cases, _, _ = Fake("q", "peer q", [], "tests/peer", "x").run(config)
    assert len(asked) == 1 + gr.RESUMES and rc == 1 and c in cases


def test_guestrun_runs_again_after_an_emulator_fault_only(tmp_path):
    """tests/guestrun.py's rule for a run that brought no results back: the lab or the emulator
    (run once more), or the code under test (not)."""
    cases = {"clean": ("", True), "emulator": (DF, True),
             "hmr WARN": ("hmr: loaded\n" + HMR_WARN, False)}
    for name, (text, again) in cases.items():
        log = tmp_path / f"{name}.log"
        log.write_text(text)
        assert guestrun().not_the_code(str(log), text) == again, name


def test_guestrun_reads_what_passed_from_the_verbose_lines_of_a_guest_that_died():
    """A guest that died wrote no JUnit file: its pytest -v lines (colours and all) say what
    passed or was skipped, named as the JUnit cases are; anything else is not taken."""
    case = guestrun().streamed_case
    assert case("tests/peer/test_peer_pingpong.py::test_rc_pingpong[1048576B-plain-server-self]"
                " \x1b[32mPASSED\x1b[0m\x1b[32m [  1%]\x1b[0m\n") == \
        [("tests.peer.test_peer_pingpong::test_rc_pingpong[1048576B-plain-server-self]",
          "passed", "")]
    assert case("tests/peer/test_b.py::test_y[a b] SKIPPED (no ODP) [ 64%]\n") == \
        [("tests.peer.test_b::test_y[a b]", "skipped", "no ODP")]
    assert case("tests/peer/test_b.py::test_z \x1b[33mSKIPPED\x1b[0m [ 65%]\n")[0][1] == "skipped"
    for line in ("tests/peer/test_a.py::test_x[1] [lab 11:33:08] the guest stopped without\n",
                 "tests/peer/test_a.py::test_x FAILED [  3%]\n", "[   38.97] BUG: kernel NULL\n",
                 "tests/peer/test_a.py::test_x ERROR [  3%]\n"):
        assert case(line) == [], line
    name = case("tests/peer/test_a.py::test_x[1] PASSED [ 1%]\n")[0][0]
    assert guestrun().node_id(name) == "tests/peer/test_a.py::test_x[1]"


USER_GPF = ("[   37.164749] traps: ib_write_lat[257] general protection fault ip:7f32a54056df "
            "sp:7ffd1d4b7de0 error:0 in librdmacm.so.1.3.56.1[a6df,7f32a53ff000+15000]\n")
KERNEL_GPF = ("[   40.000000] Oops: general protection fault, probably for non-canonical address "
              "0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI\n")


def run_guest_splat(tmp_path, text):
    """run-guest's splat_in() on a log holding @text: True when it counts a kernel problem."""
    log = tmp_path / "console.log"
    log.write_text("[    5.3] hmr: loaded\n" + text)
    lab = os.path.join(HERE, "..", "lab")
    script = (f"LAB_DIR={lab}; lab_say() {{ :; }}; "
              + "".join(line + "\n" for line in open(os.path.join(lab, "run-guest"))
                        if line.startswith(("splat=", "user_fault="))) +
              "eval \"$(sed -n '/^splat_in() {/,/^}/p' " + os.path.join(lab, "run-guest") + ")\"\n"
              f"splat_in {log} guest 2>/dev/null")
    return subprocess.run(["bash", "-c", script]).returncode == 0


def test_a_process_fault_is_not_a_kernel_splat(tmp_path):
    """A tool's own general protection fault (the kernel reports it and goes on) is not counted
    by run-guest nor by guestrun; the kernel's own is."""
    assert not run_guest_splat(tmp_path, USER_GPF)
    assert run_guest_splat(tmp_path, USER_GPF + KERNEL_GPF)
    assert run_guest_splat(tmp_path, HMR_WARN)
    assert guestrun().before_hmr("hmr: loaded\n" + USER_GPF)
    assert not guestrun().before_hmr("hmr: loaded\n" + USER_GPF + KERNEL_GPF)
