"""Boot the lab guest once per kernel, run tests/guest inside it, report each guest test here.

The guest's pytest writes a JUnit XML file into the checkout (shared with the guest); every test
case in it becomes one host test with the same outcome. The run's own health (kernel log free of
WARN/BUG/oops, module unloaded cleanly, no lab failure) is one more test per kernel.
"""
import collections
import os
import re
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.environ.get("HMR_KERNEL", "6.12").split()
_runs = {}


# What run-guest counts as a kernel problem (tests/lab/run-guest's splat pattern).
SPLAT = re.compile(r"WARNING: |BUG: |Oops|kernel BUG at|general protection fault|UBSAN:|KASAN:"
                   r"|Kernel panic|Call Trace:")


def _guest_once(kernel, junit):
    """One run-guest of the guest suite: (exit status, test cases, its last lines)."""
    if os.path.exists(junit):
        os.unlink(junit)
    cmd = [os.path.join(ROOT, "tests/lab/run-guest"), "--kernel", kernel, "--",
           "python3", "-m", "pytest", "-ra", "-v", "tests/guest",
           f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    sys.stderr.write(f"\n[guest {kernel}] {' '.join(cmd)}\n")
    sys.stderr.flush()
    # Streamed as it comes; the last lines are kept for the failure message, so a CI log that
    # shows only the failures still says what the lab or the guest printed last.
    tail = collections.deque(maxlen=40)
    with subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as p:
        for line in p.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line)
    report = os.path.join(ROOT, "build", "lab", f"last-{kernel}", "rdma-core-suite.txt")
    if os.path.exists(report):
        with open(report) as f:
            sys.stderr.write(f"\n[guest {kernel}] {report}:\n" + f.read().split("\n\n----")[0])
    cases = []
    if os.path.exists(junit):
        for tc in ET.parse(junit).getroot().iter("testcase"):
            name = f"{tc.get('classname', '')}::{tc.get('name')}"
            outcome, msg = "passed", ""
            for child in tc:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                    msg = (child.get("message", "") + "\n" + (child.text or "")).strip()
                elif child.tag == "skipped" and outcome == "passed":
                    outcome, msg = "skipped", child.get("message", "")
            cases.append((name, outcome, msg))
    # Read now: later host tests boot guests of their own and move last-<kernel>.
    return p.returncode, cases, "".join(tail), _console(kernel)


def _console(kernel):
    path = os.path.realpath(os.path.join(ROOT, "build", "lab", f"last-{kernel}", "console.log"))
    if not os.path.exists(path):
        return path, ""
    with open(path, errors="replace") as f:
        return path, f.read()


def _before_hmr(console):
    """True when the kernel log is clean, or its first splat came before hmr.ko was loaded (a
    boot-time crash of the emulated machine, such as an int3 oops from text patching under
    TCG while a CPU comes up, seen once in sched_clock_cpu): nothing of the project ran yet."""
    splat = SPLAT.search(console)
    return not splat or "hmr: " not in console[:splat.start()]


def _run_guest(config, kernel):
    """The guest suite's results for @kernel: (exit status, cases, last lines, first try).
    A lab failure that brought no results back, with a kernel log clean or broken before
    hmr.ko was loaded (the lab, not the code under test), is run once more; the first try's
    evidence is kept, and test_guest_run_clean warns with it."""
    if kernel in _runs:
        return _runs[kernel]
    junit = os.path.join(ROOT, "build", "lab", f"junit-{kernel}.xml")
    capman = config.pluginmanager.getplugin("capturemanager")
    first = None
    with capman.global_and_fixture_disabled():
        rc, cases, tail, console = _guest_once(kernel, junit)
        if rc == 125 and not cases and _before_hmr(console[1]):
            first = _evidence(tail, console)
            sys.stderr.write(f"\n[guest {kernel}] lab failure without results, before hmr.ko "
                             f"was loaded: running the guest once more{first}\n")
            rc, cases, tail, console = _guest_once(kernel, junit)
    _runs[kernel] = (rc, cases, _evidence(tail, console), first)
    return _runs[kernel]


def pytest_generate_tests(metafunc):
    if "guest_case" in metafunc.fixturenames:
        params, ids = [], []
        for k in KERNELS:
            rc, cases, _, _ = _run_guest(metafunc.config, k)
            for name, outcome, msg in cases:
                params.append((k, name, outcome, msg))
                ids.append(f"{k}:{name}")
        metafunc.parametrize("guest_case", params, ids=ids)
    elif "guest_kernel" in metafunc.fixturenames:
        metafunc.parametrize("guest_kernel", KERNELS)


def test_guest(guest_case):
    kernel, name, outcome, msg = guest_case
    if outcome == "skipped":
        pytest.skip(f"[{kernel}] {msg}")
    if outcome == "failed":
        pytest.fail(f"[{kernel}] {name}\n{msg}", pytrace=False)


def _evidence(tail, console):
    """What the run printed last, and the end of the guest kernel's console log."""
    text = f"\n--- the last lines run-guest printed:\n{tail}"
    path, console = console
    if console:
        text += f"\n--- the end of {path}:\n" + "".join(console.splitlines(True)[-30:])
    return text


def test_guest_run_clean(guest_kernel, request):
    """The guest run itself: tests ran, kernel log clean, module unloaded, no timeout."""
    rc, cases, evidence, first = _run_guest(request.config, guest_kernel)
    if first:
        warnings.warn(f"[{guest_kernel}] the first guest run was a lab failure without results "
                      f"(run again):{first}")
    assert cases, f"no guest test results came back (run-guest exit {rc}){evidence}"
    failed = any(c[1] == "failed" for c in cases)
    meaning = {124: "timeout", 125: "lab failure (setup, teardown/unload, or no status)",
               126: "kernel WARN/BUG/oops in the log"}
    assert rc == 0 or (rc == 1 and failed), \
        f"run-guest exit {rc}: {meaning.get(rc, 'unexpected')}{evidence}"
