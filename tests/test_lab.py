"""The lab's contract: exit status passes through, panics and hangs end with a clear message."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_GUEST = os.path.join(ROOT, "tests/lab/run-guest")
KERNEL = os.environ.get("HMR_KERNEL", "6.12").split()[0]


def start(*args):
    cmd = [RUN_GUEST, "--kernel", KERNEL, "--smp", "1", "--no-build", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_exit_status_panic_hang_and_warn():
    # Four guests at once: one boot's worth of waiting for four contracts.
    jobs = {
        "exit3": start("--", "sh", "-c", "echo hello from $(uname -r); exit 3"),
        "panic": start("--", "sh", "-c", "echo c >/proc/sysrq-trigger; sleep 100"),
        "hang": start("--timeout", "60", "--", "sleep", "1000"),
        # A kernel log line shaped like a WARN splat (written through /dev/kmsg) must fail a
        # command that itself succeeded.
        "warn": start("--", "sh", "-c", "echo 'WARNING: CPU: 0 PID: 1 at lab-selftest' >/dev/kmsg"),
    }
    res = {k: (p.wait(timeout=300), *p.communicate()) for k, p in jobs.items()}

    rc, out, err = res["exit3"]
    assert rc == 3, err
    assert f"hello from {KERNEL}." in out, out

    rc, out, err = res["panic"]
    assert rc == 125, err
    assert "without reporting a status" in err and "sysrq" in err.lower(), err

    rc, out, err = res["hang"]
    assert rc == 124, err
    assert "did not finish within 60 s" in err, err

    rc, out, err = res["warn"]
    assert rc == 126, err
    assert "WARN/BUG/oops" in err and "lab-selftest" in err, err


def test_other_kernel_series():
    """7.2 (sid, rxe with ODP) and 6.1 (bookworm) boot too; both at once."""
    probe = "uname -r; ibv_devinfo -v -d rxe0"
    jobs = {k: subprocess.Popen([RUN_GUEST, "--kernel", k, "--smp", "1", "--no-build", "--",
                                 "sh", "-c", probe], cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k in ("7.2", "6.1")}
    res = {k: (p.wait(timeout=1800), *p.communicate()) for k, p in jobs.items()}
    for k, (rc, out, err) in res.items():
        assert rc == 0, f"{k}: exit {rc}\n{err[-3000:]}"
        assert out.splitlines()[0].startswith(k + "."), out
        assert "PORT_ACTIVE" in out, out
    odp = res["7.2"][1]
    # rxe in 7.2 implements ODP: the general and RC capabilities say so.
    assert "ODP_SUPPORT" in odp and "SUPPORT_WRITE" in odp, odp
