"""Two-guest runs (tests/lab/run-guest --peer): tests/peer inside the first guest, against a peer
guest over the link between them; each guest test is reported here, as test_guest.py does.

HMR_PEER_CONFIGS lists the pairs to boot, each SELF[-PEER] (devices hmr or rxe; PEER defaults to
SELF): the default "hmr hmr-rxe" is hmr0 against hmr0, then hmr0 against rxe0, which runs hmr's
requester and responder against a real rxe both ways; `HMR_PEER_CONFIGS=rxe-rxe` checks the lab
itself with rxe on both guests. Both guests run the first kernel of HMR_KERNEL. The health of each pair run (both kernel logs clean, both guests'
devices and modules torn down, no lab failure) is one more test.
"""
import os

import pytest

from guestrun import Suite, parametrize_cases, report_case

KERNEL = os.environ.get("HMR_KERNEL", "6.12").split()[0]
CONFIGS = os.environ.get("HMR_PEER_CONFIGS", "hmr hmr-rxe").split()


def suite(config):
    devs = config.split("-")
    if len(devs) > 2 or not set(devs) <= {"hmr", "rxe"}:
        raise pytest.UsageError(f"HMR_PEER_CONFIGS: '{config}' is not SELF[-PEER] of hmr, rxe")
    self_dev, peer_dev = devs[0], devs[-1]
    return Suite(config, f"peer {config}",
                 ["--kernel", KERNEL, "--peer", "--self-device", self_dev,
                  "--peer-device", peer_dev], "tests/peer", f"last-peer-{KERNEL}",
                 ("console.log", "peer-console.log"))


SUITES = {c: suite(c) for c in CONFIGS}


def pytest_generate_tests(metafunc):
    if "peer_case" in metafunc.fixturenames:
        parametrize_cases(metafunc, "peer_case", SUITES.values())
    elif "peer_config" in metafunc.fixturenames:
        metafunc.parametrize("peer_config", CONFIGS)


def test_peer(peer_case):
    report_case(peer_case)


def test_peer_run_clean(peer_config, request):
    """The pair run itself: tests ran, both kernel logs clean, both torn down, no timeout."""
    SUITES[peer_config].check_clean(request.config)
