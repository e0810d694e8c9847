"""Boot the lab guest once per kernel, run tests/guest inside it, report each guest test here.

The guest's pytest writes a JUnit XML file into the checkout (shared with the guest); every test
case in it becomes one host test with the same outcome. The run's own health (kernel log free of
WARN/BUG/oops, module unloaded cleanly, no lab failure) is one more test per kernel.
"""
import os
import sys

from guestrun import Suite, parametrize_cases, report_case

KERNELS = os.environ.get("HMR_KERNEL", "6.12").split()


class GuestSuite(Suite):
    def after_run(self):
        """rdma-core's own test suite against hmr0 leaves a table (test_rdma_core_suite.py)."""
        report = os.path.join(self.run_dir(), "rdma-core-suite.txt")
        if os.path.exists(report):
            with open(report) as f:
                sys.stderr.write(f"\n[{self.title}] {report}:\n" + f.read().split("\n\n----")[0])


SUITES = {k: GuestSuite(k, f"guest {k}", ["--kernel", k], "tests/guest", f"last-{k}")
          for k in KERNELS}


def pytest_generate_tests(metafunc):
    if "guest_case" in metafunc.fixturenames:
        parametrize_cases(metafunc, "guest_case", SUITES.values())
    elif "guest_kernel" in metafunc.fixturenames:
        metafunc.parametrize("guest_kernel", KERNELS)


def test_guest(guest_case):
    report_case(guest_case)


def test_guest_run_clean(guest_kernel, request):
    """The guest run itself: tests ran, kernel log clean, module unloaded, no timeout."""
    SUITES[guest_kernel].check_clean(request.config)
