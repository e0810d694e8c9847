"""The lab's contract: exit status passes through, panics and hangs end with a clear message;
the two-guest lab links its guests and runs commands on the peer."""
import collections
import os
import re
import subprocess
import time

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


# The two-guest lab, checked with rxe on both guests (it does not depend on hmr0 working).
PEER_SCRIPT = r'''
gid() { basename "$(grep -lx "0000:0000:0000:0000:0000:ffff:$1" /sys/class/infiniband/rxe0/ports/1/gids/*)"; }
echo "peer-host $(hmr-peer hostname)"
echo "peer-release $(hmr-peer uname -r)"
hmr-peer false; echo "false-status $?"
hmr-peer sh -c 'echo out-line; echo err-line >&2; exit 7' 2>&1; echo "sh-status $?"
echo "peer-env $(hmr-peer sh -c 'echo $HMR_PEER $HMR_SELF_DEVICE $HMR_PEER_DEVICE $HMR_LINK_IF')"
echo "self-env $HMR_PEER $HMR_SELF_DEVICE $HMR_PEER_DEVICE $HMR_LINK_IF"
ping -c 2 -W 5 peer >/dev/null && echo ping-ok
job=$(hmr-peer --bg ibv_rc_pingpong -d rxe0 -g "$(hmr-peer bash -c "$(declare -f gid); gid c000:0202")" -n 50)
hmr-peer sh -c "i=0; while [ \$i -lt 600 ] && ! ss -Hltn 'sport = :18515' | grep -q .; do i=\$((i+1)); sleep 0.1; done"
ibv_rc_pingpong -d rxe0 -g "$(gid c000:0201)" -n 50 peer | sed 's/^/client: /'
hmr-peer --wait "$job" | sed 's/^/server: /'
job=$(hmr-peer --bg sleep 600)
hmr-peer --kill "$job"; hmr-peer --wait "$job"; echo "killed-status $?"
hmr-peer sh -c "echo 'WARNING: CPU: 0 PID: 1 at lab-peer-selftest' >/dev/kmsg"
'''


def qemu_sockets(root_pid):
    """The host sockets of the qemu processes under @root_pid, and their pids."""
    children = collections.defaultdict(list)
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                children[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    pids, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        todo += children[pid]
        try:
            if open(f"/proc/{pid}/comm").read().startswith("qemu-system"):
                pids.add(pid)
        except OSError:
            pass
    out = subprocess.run(["ss", "-Hantup"], capture_output=True, text=True).stdout
    # (protocol, local address, process): the queue lengths in between change all the time
    return {(f[0], f[4], f[-1]) for f in map(str.split, out.splitlines())
            if any(f"pid={p}," in f[-1] for p in pids)}, pids


def test_two_guest_lab(tmp_path):
    """run-guest --peer (rxe on both guests): hmr-peer runs commands on the peer with their
    output and exit status, --bg/--wait/--kill work, ping and verbs cross the link, the peer's
    teardown ran and a splat in its log fails the run (126), every host socket of the two qemus
    is bound to 127.0.0.1; a second pair, run at the same time, powers its peer off (no
    teardown expected, the run succeeds, later hmr-peer calls fail clearly)."""
    base = [RUN_GUEST, "--kernel", KERNEL, "--no-build", "--peer", "--self-device", "rxe",
            "--peer-device", "rxe", "--"]
    outs = {k: (open(tmp_path / f"{k}.out", "w+"), open(tmp_path / f"{k}.err", "w+"))
            for k in ("main", "poweroff")}
    jobs = {
        "main": ["bash", "-c", PEER_SCRIPT],
        "poweroff": ["sh", "-c", "hmr-peer --poweroff && echo poweroff-ok; "
                     "hmr-peer true; echo after-status $?"],
    }
    procs = {k: subprocess.Popen(base + cmd, cwd=ROOT, stdin=subprocess.DEVNULL,
                                 stdout=outs[k][0], stderr=outs[k][1])
             for k, cmd in jobs.items()}
    sockets, qemus = set(), set()
    while procs["main"].poll() is None:
        lines, pids = qemu_sockets(procs["main"].pid)
        sockets |= lines
        qemus |= pids
        time.sleep(0.5)
    procs["poweroff"].wait(timeout=600)
    res = {}
    for k, (o, e) in outs.items():
        o.seek(0)
        e.seek(0)
        res[k] = (procs[k].returncode, o.read(), e.read())

    rc, out, err = res["main"]
    assert rc == 126, f"exit {rc}\n{out}\n{err}"
    assert "the peer kernel logged a WARN/BUG/oops" in err and "lab-peer-selftest" in err, err
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines.get("peer-host") == "peer", out
    assert lines.get("peer-release", "").startswith(KERNEL + "."), out
    assert lines.get("false-status") == "1" and lines.get("sh-status") == "7", out
    assert "out-line" in out and "err-line" in out, out
    assert lines.get("peer-env") == lines.get("self-env"), out  # the same names in both guests
    assert lines.get("self-env", "").startswith("1 rxe0 rxe0 "), out
    assert "ping-ok" in out, out
    for side in ("client", "server"):
        assert f"{side}: 409600 bytes in" in out and f"{side}: 50 iters in" in out, out
    assert lines.get("killed-status") == "143", out  # SIGTERM
    run = re.search(r"logs in (\S+)", err).group(1)
    with open(os.path.join(run, "peer-status")) as f:
        assert f.read().strip() == "0", "the peer's teardown (rdma link delete rxe0) failed"
    assert os.path.getsize(os.path.join(run, "peer-dmesg.txt")) > 0
    # The link's host side: UDP on 127.0.0.1 only, one socket per qemu, nothing else listening.
    assert len(qemus) == 2, qemus
    udp = [s for s in sockets if s[0] == "udp"]
    assert len(udp) == 2 and all(s[1].startswith("127.0.0.1:") for s in udp), sockets
    assert sockets == set(udp), sockets
    for name in ("qemu-cmd", "peer-qemu-cmd"):
        with open(os.path.join(run, name)) as f:
            cmd = f.read()
        hosts = re.findall(r"\.host=([^,\s]+)", cmd)
        assert hosts == ["127.0.0.1"] * 2, cmd

    rc, out, err = res["poweroff"]
    assert rc == 0, f"exit {rc}\n{out}\n{err}"
    assert "poweroff-ok" in out and "after-status 125" in out, out
    assert "the peer was powered off" in err + out, err
    assert "the command powered the peer off" in err, err
