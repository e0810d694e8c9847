"""Run a pytest suite inside lab guests (tests/lab/run-guest) and bring its results to the host.

Shared by tests/test_guest.py (tests/guest, one guest per kernel) and tests/test_peer.py
(tests/peer, two-guest runs). The guest's pytest writes a JUnit XML file into the checkout
(shared with the guest); every test case in it becomes one host test with the same outcome, and
the run's own health (kernel logs free of WARN/BUG/oops, modules unloaded, no lab failure) one
more.
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
RUN_GUEST = os.path.join(ROOT, "tests/lab/run-guest")

EMULATOR_FAULT = os.path.join(ROOT, "tests", "lab", "emulator-fault")
# What run-guest counts as a kernel problem (tests/lab/run-guest's splat pattern).
SPLAT = re.compile(r"WARNING: |BUG: |Oops|kernel BUG at|general protection fault|UBSAN:|KASAN:"
                   r"|Kernel panic|Call Trace:")
# A process's own fault, which the kernel reports and survives: not a kernel problem (run-guest).
USER_FAULT = re.compile(r" traps: \S+\[\d+\] general protection fault ")
MEANING = {124: "timeout", 125: "lab failure (setup, teardown/unload, or no status)",
           126: "kernel WARN/BUG/oops in the log"}


class Suite:
    """One guest suite run: @label names its host tests ("<label>:<guest test>"), @title it in
    messages, @run_args go to run-guest before `--`, @tests is the guest-side pytest path,
    @logs the build/lab/last-* link to its run directory, @consoles the kernel logs in that."""

    def __init__(self, label, title, run_args, tests, logs, consoles=("console.log",)):
        self.label, self.title, self.run_args, self.tests = label, title, run_args, tests
        self.logs, self.consoles = logs, consoles
        self.junit = os.path.join(ROOT, "build", "lab", f"junit-{label}.xml")
        self.result = None  # (exit status, cases, evidence, first try's evidence or None)
        self.dir = None

    def once(self, done=()):
        """One run-guest, the guest tests named in @done left out: (exit status, test cases,
        its last lines, the kernel logs)."""
        if os.path.exists(self.junit):
            os.unlink(self.junit)
        cmd = [RUN_GUEST, *self.run_args, "--", "python3", "-m", "pytest", "-ra", "-v",
               self.tests, f"--junitxml={self.junit}", "-o", "junit_family=xunit1"]
        sys.stderr.write(f"\n[{self.title}] {' '.join(cmd)}"
                         f"{f' (less {len(done)} tests done before)' if done else ''}\n")
        for name in done:
            cmd += ["--deselect", node_id(name)]
        sys.stderr.flush()
        # Streamed as it comes; the last lines are kept for the failure message, so a CI log
        # that shows only the failures still says what the lab or the guest printed last.
        tail = collections.deque(maxlen=40)
        self.dir = None
        streamed = []
        with subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace") as p:
            for line in p.stdout:
                sys.stderr.write(line)
                sys.stderr.flush()
                tail.append(line)
                m = self.dir is None and re.search(r"\] booting .*, logs in (/\S+)$", line)
                if m:
                    self.dir = m.group(1)
                streamed += streamed_case(line)
        self.after_run()
        # The JUnit file is written when the guest's pytest ends: a guest that died before has
        # none, and what its -v lines said passed or skipped stands for it (a resume needs it).
        cases = self.cases() if os.path.exists(self.junit) else streamed
        # Read now: later host tests boot guests of their own and move the last-* link.
        return p.returncode, cases, "".join(tail), [self.console(c) for c in self.consoles]

    def after_run(self):
        """Hook: what to print from the run directory right after the run."""

    def run_dir(self):
        """This run's directory, as run-guest said; the last-* link (which a concurrent run of
        the same kind moves) only if it did not say."""
        return self.dir or os.path.realpath(os.path.join(ROOT, "build", "lab", self.logs))

    def cases(self):
        cases = []
        if os.path.exists(self.junit):
            for tc in ET.parse(self.junit).getroot().iter("testcase"):
                name = f"{tc.get('classname', '')}::{tc.get('name')}"
                outcome, msg = "passed", ""
                for child in tc:
                    if child.tag in ("failure", "error"):
                        outcome = "failed"
                        msg = (child.get("message", "") + "\n" + (child.text or "")).strip()
                    elif child.tag == "skipped" and outcome == "passed":
                        outcome, msg = "skipped", child.get("message", "")
                cases.append((name, outcome, msg))
        return cases

    def console(self, name):
        path = os.path.join(self.run_dir(), name)
        if not os.path.exists(path):
            return path, ""
        with open(path, errors="replace") as f:
            return path, f.read()

    def run(self, config):
        """The suite's results, run once per host session. A run the lab or the emulator broke
        (see lab_broke) goes on in a new boot with the tests that did not pass or skip there,
        up to RESUMES times; the first broken try's evidence is kept, and check_clean() warns
        with it."""
        if self.result:
            return self.result
        capman = config.pluginmanager.getplugin("capturemanager")
        first = None
        with capman.global_and_fixture_disabled():
            rc, cases, tail, consoles = self.once()
            for _ in range(RESUMES):
                why = lab_broke(rc, cases, consoles)
                if not why:
                    break
                first = first or f" ({why}){evidence(tail, consoles)}"
                done = [c for c in cases if c[1] in ("passed", "skipped")]
                sys.stderr.write(f"\n[{self.title}] {why}: {len(done)} tests passed or skipped "
                                 f"there; the others run in a new boot{evidence(tail, consoles)}\n")
                rc, more, tail, consoles = self.once([c[0] for c in done])
                cases = done + more
        self.result = (rc, cases, evidence(tail, consoles), first)
        return self.result

    def check_clean(self, config):
        """The run itself: tests ran, kernel logs clean, modules unloaded, no timeout."""
        rc, cases, ev, first = self.run(config)
        if first:
            warnings.warn(f"[{self.title}] a guest run was broken by the lab or the emulator "
                          f"and went on in a new boot:{first}")
        assert cases, f"no guest test results came back (run-guest exit {rc}){ev}"
        failed = any(c[1] == "failed" for c in cases)
        assert rc == 0 or (rc == 1 and failed), \
            f"run-guest exit {rc}: {MEANING.get(rc, 'unexpected')}{ev}"


RESUMES = 2


def lab_broke(rc, cases, consoles):
    """Why a run-guest that ended @rc with @cases and kernel logs @consoles ((path, text) pairs)
    was broken by the lab or the emulator, not by the code under test; "" when it was not.
    Either no result came back from a lab failure whose kernel logs are clean or broke before
    hmr.ko was loaded; or a kernel logged a fault only the emulator can cause (qemu 7.2's TCG
    corrupts EFLAGS in cmpxchg16b: tests/lab/run-guest now hides that instruction from the
    guests, and this rule stays as a safety net) and nothing else, and the run did not pass."""
    if rc == 0 or not all(not_the_code(*c) for c in consoles):
        return ""
    if any(emulator_fault(path) for path, _ in consoles):
        return "a kernel logged a fault only the emulator can cause"
    if rc == 125 and not cases:
        return "a lab failure without results, before hmr.ko was loaded"
    return ""


ANSI = re.compile(r"\x1b\[[0-9;]*m")
VERBOSE = re.compile(r"^(\S+\.py)::(.+?) (PASSED|SKIPPED)(?: \((.*)\))?(?: +\[ *\d+%\])?\s*$")


def streamed_case(line):
    """The case a pytest -v line says passed or was skipped, named as Suite.cases() names
    them ("<module dotted>::<test>"), in a list; [] for any other line."""
    m = VERBOSE.match(ANSI.sub("", line))
    if not m:
        return []
    path, test, outcome, why = m.groups()
    return [(path[:-3].replace("/", ".") + "::" + test, outcome.lower(), why or "")]


def node_id(name):
    """The guest pytest node id of a case named "<module dotted>::<test>" (Suite.cases)."""
    module, _, test = name.partition("::")
    return module.replace(".", "/") + ".py::" + test


def emulator_fault(path):
    """Every splat in the kernel log at @path is one only the emulator can cause."""
    return os.path.exists(path) and subprocess.run([EMULATOR_FAULT, path]).returncode == 0


def not_the_code(path, console):
    """The kernel log at @path (@console) is clean, broke before hmr.ko was loaded, or broke by
    a fault only the emulator can cause (tests/lab/emulator-fault: EFLAGS with reserved bits
    set in every register dump, seen under TCG in kmem_cache_alloc_node with and without hmr)."""
    return before_hmr(console) or (bool(console) and emulator_fault(path))


def before_hmr(console):
    """True when the kernel log is clean, or its first splat came before hmr.ko was loaded (a
    boot-time crash of the emulated machine, such as an int3 oops from text patching under
    TCG while a CPU comes up, seen once in sched_clock_cpu): nothing of the project ran yet."""
    splat = next((m for m in SPLAT.finditer(console)
                  if not USER_FAULT.search(console, console.rfind("\n", 0, m.start()) + 1,
                                           m.end() + 1)), None)
    return not splat or "hmr: " not in console[:splat.start()]


def evidence(tail, consoles):
    """What the run printed last, and the end of each guest kernel's console log."""
    text = f"\n--- the last lines run-guest printed:\n{tail}"
    for path, console in consoles:
        if console:
            text += f"\n--- the end of {path}:\n" + "".join(console.splitlines(True)[-30:])
    return text


def parametrize_cases(metafunc, fixture, suites):
    """Parametrize @fixture with (suite label, case name, outcome, message) of every case of
    @suites (running them)."""
    params, ids = [], []
    for suite in suites:
        _, cases, _, _ = suite.run(metafunc.config)
        for name, outcome, msg in cases:
            params.append((suite.label, name, outcome, msg))
            ids.append(f"{suite.label}:{name}")
    metafunc.parametrize(fixture, params, ids=ids)


def report_case(case):
    label, name, outcome, msg = case
    if outcome == "skipped":
        pytest.skip(f"[{label}] {msg}")
    if outcome == "failed":
        pytest.fail(f"[{label}] {name}\n{msg}", pytrace=False)
