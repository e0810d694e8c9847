"""The install test: build hmr's Debian packages for the distribution of the first HMR_KERNEL
(tests/lab/build-deb, what `make deb` does), then boot a bare guest of that kernel (run-guest
--bare: no hmr.ko of the checkout loaded, no provider installed) and run tests/install there,
which installs them with apt; each guest test is reported here, as test_guest.py does, and the
run's health (kernel log clean, hmr.ko unloaded at the end) is one more test.
"""
import glob
import lzma
import os
import re
import subprocess

from guestrun import ROOT, Suite, parametrize_cases, report_case

KERNEL = os.environ.get("HMR_KERNEL", "6.12").split()[0]
LAB = os.path.join(ROOT, "tests", "lab")


class InstallSuite(Suite):
    def once(self, done=()):
        """Build the packages (once), then boot; a failed build is the run's evidence."""
        if not getattr(self, "built", False):
            r = subprocess.run(f'image=$("{LAB}/build-image" --kernel {KERNEL}) && '
                               f'"{LAB}/build-deb" "$image"', shell=True, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                return r.returncode, [], f"building the packages failed:\n{r.stdout}", []
            self.built = True
        return super().once(done)


SUITE = InstallSuite("install", f"install {KERNEL}", ["--kernel", KERNEL, "--bare"],
                     "tests/install", f"last-{KERNEL}")


def pytest_generate_tests(metafunc):
    if "install_case" in metafunc.fixturenames:
        parametrize_cases(metafunc, "install_case", [SUITE])


def test_install(install_case):
    report_case(install_case)


def test_install_run_clean(request):
    """The guest run itself: tests ran, kernel log clean, hmr.ko unloaded, no timeout."""
    SUITE.check_clean(request.config)


def test_make_install():
    """`make install` (no package) inside the trixie image, into a DESTDIR: the provider built
    against the image's rdma-core tree, hmr.ko for the image's kernel under updates/, hmr-link,
    its udev rule and the (empty) links file."""
    dest = os.path.join(ROOT, "build", "install-root")
    r = subprocess.run(
        f'. "{LAB}/lab.sh" && lab_kernel 6.12 && lab_paths && LAB_IMAGE=$("{LAB}/build-image" '
        f'--kernel 6.12) && kver=$(cat "$LAB_IMAGE/kver") && rm -rf "{dest}" && echo "kver=$kver" && '
        f'lab_chroot make -C "{ROOT}" install RDMA_CORE_BUILD=/usr/src/rdma-core/build '
        f'KDIR="/lib/modules/$kver/build" DESTDIR="{dest}"', shell=True, cwd=ROOT,
        executable="/bin/bash", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout[-4000:]
    kver = re.search(r"^kver=(\S+)$", r.stdout, re.M).group(1)
    want = ["etc/libibverbs.d/hmr.driver", "usr/libexec/hmr/hmr-link",
            "usr/lib/udev/rules.d/60-hmr-link.rules", "etc/hmr/links"]
    missing = [w for w in want if not os.path.exists(os.path.join(dest, w))]
    assert not missing, f"make install did not install {missing}"
    prov = os.listdir(os.path.join(dest, "usr/lib/x86_64-linux-gnu/libibverbs"))
    assert prov == ["libhmr-rdmav34.so"], prov
    with open(os.path.join(dest, "etc/libibverbs.d/hmr.driver")) as f:
        assert f.read() == "driver hmr\n"
    # kbuild compresses modules as the kernel's configuration says (Debian: xz)
    ko = glob.glob(os.path.join(dest, f"lib/modules/{kver}/updates/hmr.ko*"))
    assert len(ko) == 1, ko
    data = lzma.open(ko[0]).read() if ko[0].endswith(".xz") else open(ko[0], "rb").read()
    assert f"vermagic={kver} ".encode() in data, "hmr.ko is not built for the image's kernel"
