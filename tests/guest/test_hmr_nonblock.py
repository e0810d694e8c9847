"""Non-blockable invalidations, made by the kernel's own OOM reaping code: hmr's notifier
answers busy (page_invalidations_busy) when a chunk is in flight on the range, instead of
sleeping, and the device keeps working."""
import ctypes
import os
import signal
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("HMR_GUEST") != "1", reason="runs in the lab guest")

from test_hmr_odp import counters, delta  # noqa: E402
from test_hmr_odp_paths import (check_gone, child_python, chunk_hold,  # noqa: E402,F401
                                kernel_problems, libc)

SYS_PROCESS_MRELEASE = 448  # x86_64
EAGAIN = 11
# The victim: two 256 MiB ODP MRs, faulted in by a first WRITE; a second WRITE of the whole
# buffer runs in hmr_wq (past the doorbell budget) and holds both MRs; the main thread then
# deregisters the destination, which waits (uninterruptibly) for that WRITE, keeping a thread
# of the process holding its mm after SIGKILL: process_mrelease() can reap it.
VICTIM = r"""
import ctypes, sys
from test_hmr_odp_paths import Loop, SGE, poll, send_wr, e
from test_hmr_util import quiet_map
length = int(sys.argv[1])
lp = Loop()
src, dst = quiet_map(length), quiet_map(length)  # 4 KiB pages: khugepaged never collapses them
smr, dmr = lp.mr(src, length), lp.mr(dst, length)
ctypes.memset(src, 0x5a, length)
st = lp.write(src, smr, dst, dmr, length)
assert st == 0, st
ctypes.memset(src, 0xa5, length)
wr = send_wr(1, e.IBV_WR_RDMA_WRITE, [SGE(src, length, smr.lkey)])
wr.set_wr_rdma(dmr.rkey, dst)
lp.qa.post_send(wr)
while ctypes.string_at(dst, 1) != b"\xa5":  # copying: dereg now waits for the WRITE
    pass
print(dst, flush=True)
dmr.close()
print("dereg returned", poll(lp.cqa)[0].status, flush=True)
"""


def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def mrelease(pidfd):
    """process_mrelease(2): 0 or the errno."""
    if libc.syscall(SYS_PROCESS_MRELEASE, pidfd, 0) == 0:
        return 0
    return ctypes.get_errno()


def wait_until(cond, what, timeout=30):
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, what
        time.sleep(0.001)


def victim_copying(length):
    """VICTIM, SIGKILLed while its WRITE copies (more of the destination holds the new bytes
    10 ms later, not all of it) and its main thread waits in dereg (state D): (process, pidfd)."""
    child = child_python(VICTIM, str(length))
    line = child.stdout.readline()
    assert line.strip().isdigit(), child.stderr.read()
    dst = int(line)
    with open(f"/proc/{child.pid}/mem", "rb", buffering=0) as mem:
        def copied():  # 64 KiB steps whose first byte is the new one
            return sum(os.pread(mem.fileno(), 1, dst + off) == b"\xa5"
                       for off in range(0, length, 64 << 10))
        wait_until(lambda: state(child.pid) == "D", "dereg did not wait for the WRITE")
        before = copied()
        time.sleep(0.01)
        progress = (before, copied())
        pidfd = os.pidfd_open(child.pid)
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    assert progress[0] < progress[1] < length >> 16, f"the WRITE is not copying: {progress}"
    return child, pidfd


def reap_during_write(length):
    """SIGKILL the victim while its WRITE copies, then process_mrelease() until it reaps
    everything: the list of its results (errnos)."""
    child, pidfd = victim_copying(length)
    results = []
    end = time.time() + 30
    while time.time() < end:
        results.append(mrelease(pidfd))
        if results[-1] != EAGAIN:
            break
    os.close(pidfd)
    child.wait(timeout=120)
    assert child.returncode == -9, child.stderr.read()
    assert child.stdout.read() == ""  # killed in dereg
    return child.pid, results


def test_process_mrelease_answers_busy_with_a_chunk_in_flight(chunk_hold):
    """process_mrelease() of a SIGKILLed process reaps its memory with non-blockable
    invalidations (mm/oom_kill.c: __oom_reap_task_mm, the OOM reaper's code): with a WRITE
    copying into its MR, hmr answers busy (the call fails with EAGAIN) instead of sleeping;
    called again, it reaps once no chunk is in flight; the kernel log stays clean and the
    device works."""
    problems = kernel_problems()
    for attempt in range(3):
        before = counters()
        pid, results = reap_during_write(32 << 20)
        d = delta(before, counters())
        print(f"attempt {attempt}: process_mrelease {results[:4]}... {len(results)} calls, {d}")
        assert results[-1] == 0, results
        assert d["page_invalidations_nonblock"] >= len(results), (results, d)
        assert d["page_invalidations_busy"] >= results.count(EAGAIN), (results, d)
        assert d["page_invalidations_busy"] < d["page_invalidations_nonblock"], d
        check_gone(pid, problems)
        if results.count(EAGAIN):
            break
    assert results.count(EAGAIN) >= 1, "no busy answer in 3 attempts"
