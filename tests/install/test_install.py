"""hmr installed from its Debian packages on a fresh host (tests/test_install.py boots a bare
guest, run-guest --bare: rdma-core installed, nothing of the checkout's builds loaded).

The steps run in order and each relies on the ones before: the packages `make deb` built for
this guest's distribution install with apt from the local files (dkms comes from the image's apt
cache, as it would from the archive), DKMS builds hmr.ko for the running kernel, modprobe loads
it, an unmodified ODP application runs over hmr0, a listed link comes back by itself after a
module reload and at boot, and purge removes every file the packages installed and unloads
nothing.
"""
import glob
import os
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "guest"))
from test_hmr_apps import client_server  # noqa: E402  (tests/guest: one way to run a pair)

pytestmark = pytest.mark.skipif(os.environ.get("HMR_BARE") != "1",
                                reason="runs in a bare lab guest (run-guest --bare)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The distribution of each kernel series of the lab (tests/lab/lab.sh, lab_kernel).
SUITE = {"6.12": "trixie", "7.2": "sid", "6.1": "bookworm"}
KVER = os.uname().release
DEBS = os.path.join(ROOT, "build", "deb", SUITE[".".join(KVER.split(".")[:2])])
PACKAGES = ["hmr-dkms", "ibverbs-providers-hmr"]
LINKS = "/etc/hmr/links"


def run(*args, check=True, timeout=120, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, f"{' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}"
    return r


def deb(package):
    found = glob.glob(os.path.join(DEBS, f"{package}_*.deb"))
    assert len(found) == 1, f"want one {package} package in {DEBS} (make deb): {found}"
    return found[0]


def deb_files(package):
    """The regular files and links the package ships (not its directories)."""
    out = run("dpkg-deb", "-c", deb(package)).stdout
    return [line.split(None, 5)[5].split(" -> ")[0][1:] for line in out.splitlines()
            if not line.startswith("d")]


def installed(package):
    r = run("dpkg-query", "-W", "-f=${Status}", package, check=False)
    return r.stdout.endswith(" installed")


def modules():
    with open("/proc/modules") as f:
        return sorted(line.split()[0] for line in f)


def hmr_devices():
    return sorted(d for d in os.listdir("/sys/class/infiniband") if d.startswith("hmr"))


def wait_for(cond, seconds=30):
    end = time.time() + seconds
    while not cond() and time.time() < end:
        time.sleep(0.2)
    return cond()


def test_host_is_fresh():
    assert not os.path.exists("/sys/module/hmr"), "hmr.ko is loaded before the install"
    assert not os.path.exists("/etc/libibverbs.d/hmr.driver")
    assert not installed("dkms"), "dkms is installed"
    assert "hmr" not in run("ibv_devices").stdout


def simulate_install(status):
    """apt's plan for installing the provider with @status as the installed packages."""
    return run("apt-get", "install", "--simulate", "-o", f"Dir::State::status={status}",
               deb(PACKAGES[1]), check=False)


def test_mismatched_libibverbs_refused(tmp_path):
    """apt refuses the provider where libibverbs1 is of another upstream release: the same
    simulated install passes with this system's installed packages, and fails with
    libibverbs1's version changed to the next release (apt never downgrades by itself)."""
    ok = simulate_install("/var/lib/dpkg/status")
    assert ok.returncode == 0 and "Inst ibverbs-providers-hmr" in ok.stdout, ok.stdout + ok.stderr
    version = run("dpkg-query", "-W", "-f=${Version}", "libibverbs1").stdout
    major = int(re.match(r"(?:\d+:)?(\d+)\.", version).group(1))
    with open("/var/lib/dpkg/status") as f:
        stanzas = f.read().split("\n\n")
    # Every installed package of rdma-core (all of libibverbs1's version) moves to the next
    # release together, as an upgrade would move them: their version, and the exact versions
    # they depend on of each other.
    this = re.compile(rf"^Version: {re.escape(version)}$", re.M)
    moved = [st.replace(version, f"{major + 1}.0-1") if this.search(st) else st
             for st in stanzas]
    assert moved != stanzas, "no package of rdma-core in the status file"
    fake = tmp_path / "status"
    fake.write_text("\n\n".join(moved))
    bad = simulate_install(fake)
    assert bad.returncode != 0, bad.stdout
    assert re.search(r"ibverbs-providers-hmr : Depends: libibverbs1 \(<<? [\d.]+~\)",
                     bad.stdout + bad.stderr), \
        bad.stdout + bad.stderr


def test_apt_install_builds_the_module():
    """apt installs both packages from the local files; DKMS builds hmr.ko for this kernel."""
    run("apt-get", "install", "-y", "-q", *[deb(p) for p in PACKAGES], timeout=3000,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    status = run("dkms", "status", "hmr").stdout
    assert re.search(rf"^hmr/[\d.]+, {re.escape(KVER)}, x86_64: installed", status, re.M), status
    # DKMS builds it again for each kernel installed later (its kernel postinst hook)
    conf = glob.glob("/usr/src/hmr-*/dkms.conf")
    assert len(conf) == 1 and 'AUTOINSTALL="yes"' in open(conf[0]).read(), conf
    assert os.path.exists("/etc/kernel/postinst.d/dkms")
    path = run("modinfo", "-n", "hmr").stdout.strip()
    assert path.startswith(f"/lib/modules/{KVER}/updates/dkms/hmr.ko"), path
    assert os.path.exists("/etc/libibverbs.d/hmr.driver")


def test_modprobe_and_link_add():
    run("modprobe", "hmr")
    run("rdma", "link", "add", "hmr0", "type", "hmr", "netdev", "lo")
    out = run("ibv_devinfo", "-v", "-d", "hmr0").stdout
    assert "PORT_ACTIVE" in out, out
    caps = re.search(r"general_odp_caps:(.*?)rc_odp_caps:(.*?)uc_odp_caps:", out, re.S)
    assert caps, out
    assert "ODP_SUPPORT" in caps.group(1), caps.group(1)
    for op in ("SUPPORT_SEND", "SUPPORT_RECV", "SUPPORT_WRITE", "SUPPORT_READ"):
        assert op in caps.group(2), caps.group(2)


def page_faults():
    out = run("rdma", "statistic", "show", "link", "hmr0/1").stdout
    return int(re.search(r"\bpage_faults (\d+)", out).group(1))


def test_ib_write_lat_odp():
    before = page_faults()
    cout, _ = client_server(["ib_write_lat", "-d", "hmr0", "-x", "1", "-n", "200", "--odp"])
    assert re.search(r"^\s*2\s+200\s", cout, re.M), cout
    assert page_faults() > before, "no ODP fault: the MRs were not on-demand"


def test_ibv_rc_pingpong_odp():
    before = page_faults()
    for out in client_server(["ibv_rc_pingpong", "-d", "hmr0", "-g", "1", "-o", "-n", "100",
                              "-s", "4096"]):
        assert "819200 bytes in" in out and "100 iters" in out, out
    assert page_faults() > before, "no ODP fault: the MRs were not on-demand"


@pytest.fixture
def udevd():
    """udev, as on a host (the lab's PID 1 starts none): what runs the package's rule."""
    p = subprocess.Popen(["/lib/systemd/systemd-udevd"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    assert wait_for(lambda: os.path.exists("/run/udev/control"), 30), "udevd did not start"
    yield
    p.terminate()
    p.wait(timeout=30)


def reload_module():
    run("rdma", "link", "delete", "hmr0", check=False)
    run("modprobe", "-r", "hmr")
    assert not os.path.exists("/sys/module/hmr")
    run("modprobe", "hmr")
    run("udevadm", "settle", "--timeout=60")


def test_persistent_link_after_reload(udevd):
    """None listed as installed: a reload brings no link back. Listed: hmr0 comes back on lo
    by itself after the module is reloaded (udev runs hmr-link at the module's add event)."""
    reload_module()
    time.sleep(1)
    assert hmr_devices() == [], "a link came back though none is listed"
    with open(LINKS, "a") as f:
        f.write("hmr0 lo\n")
    reload_module()
    assert wait_for(lambda: hmr_devices() == ["hmr0"]), hmr_devices()
    out = run("rdma", "link", "show", "hmr0/1").stdout
    assert "netdev lo" in out and "state ACTIVE" in out, out


def test_persistent_link_at_boot(udevd):
    """At boot udev replays every network device's add event (coldplug) before anything loads
    hmr.ko: the listed link's netdev appearing loads the module and adds the link."""
    run("rdma", "link", "delete", "hmr0")
    run("modprobe", "-r", "hmr")
    run("udevadm", "trigger", "--action=add", "--subsystem-match=net", "--sysname-match=lo")
    run("udevadm", "settle", "--timeout=60")
    assert wait_for(lambda: hmr_devices() == ["hmr0"]), hmr_devices()
    assert os.path.exists("/sys/module/hmr")


def test_purge_removes_everything():
    """Purge removes every file the packages shipped, the module DKMS built and the
    configuration; it unloads nothing (hmr.ko, which this test loaded, stays loaded)."""
    files = [f for p in PACKAGES for f in deb_files(p)]
    assert "/etc/hmr/links" in files and "/etc/libibverbs.d/hmr.driver" in files
    loaded = modules()
    assert "hmr" in loaded
    run("apt-get", "purge", "-y", "-q", *PACKAGES, timeout=600,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    left = [f for f in files if os.path.lexists(f)]
    assert not left, f"left after purge: {left}"
    built = glob.glob(f"/lib/modules/{KVER}/updates/dkms/hmr.ko*") + glob.glob("/var/lib/dkms/hmr")
    assert not built, f"left after purge: {built}"
    assert not os.path.exists("/etc/hmr") and not glob.glob("/usr/src/hmr-*")
    assert modules() == loaded, "purge changed the loaded modules"
    assert not any(installed(p) for p in PACKAGES)
