"""Test layout (see Documentation.md, "Tests").

On the host: tests/native (libhmr, natively), tests/test_lab.py (the lab itself),
tests/test_guest.py, which boots the guest once and reports every test of tests/guest (run inside
the guest with the guest's pytest) as a host test, so `make test` prints one summary, and
tests/test_peer.py, which does the same with tests/peer in two-guest runs (run-guest --peer).
Inside a guest (HMR_GUEST=1): only tests/guest, or only tests/peer in the first guest of a
two-guest run (HMR_PEER=1), or only tests/install in a bare guest (run-guest --bare, HMR_BARE=1:
tests/test_install.py builds hmr's Debian packages and installs them there).
HMR_GUEST=skip leaves out everything that boots a guest; HMR_NATIVE=skip leaves out tests/native.
"""
import os

IN_GUEST = os.environ.get("HMR_GUEST") == "1"
BOOTS = ["test_lab.py", "test_guest.py", "test_peer.py", "test_install.py"]

collect_ignore = []
if IN_GUEST:
    collect_ignore += ["native", "lab", *BOOTS]
    if os.environ.get("HMR_BARE") == "1":  # run-guest --bare: the install test only
        collect_ignore += ["guest", "peer"]
    else:
        collect_ignore += ["install"]
        collect_ignore += ["guest"] if os.environ.get("HMR_PEER") == "1" else ["peer"]
else:
    collect_ignore += ["guest", "peer", "lab", "install"]
    if os.environ.get("HMR_GUEST") == "skip":
        collect_ignore += BOOTS
    if os.environ.get("HMR_NATIVE") == "skip":
        collect_ignore += ["native"]
