"""Test layout (see Documentation.md, "Tests").

On the host: tests/native (libhmr, natively), tests/test_lab.py (the lab itself) and
tests/test_guest.py, which boots the guest once and reports every test of tests/guest (run inside
the guest with the guest's pytest) as a host test, so `make test` prints one summary.
Inside the guest (HMR_GUEST=1): only tests/guest.
HMR_GUEST=skip leaves out everything that boots a guest; HMR_NATIVE=skip leaves out tests/native.
"""
import os

IN_GUEST = os.environ.get("HMR_GUEST") == "1"

collect_ignore = []
if IN_GUEST:
    collect_ignore += ["native", "test_lab.py", "test_guest.py", "lab"]
else:
    collect_ignore += ["guest", "lab"]
    if os.environ.get("HMR_GUEST") == "skip":
        collect_ignore += ["test_lab.py", "test_guest.py"]
    if os.environ.get("HMR_NATIVE") == "skip":
        collect_ignore += ["native"]
