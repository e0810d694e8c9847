# shellcheck shell=bash
# Shared helpers of the guest lab: sourced by build-image and run-guest.
#
# A lab image is a Debian root filesystem made by debootstrap plus a busybox initramfs, kept in
# a cache directory outside the checkout and keyed by a hash of its recipe (this file, the
# build script and the initramfs init), so it is rebuilt only when the recipe changes.

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(cd "$LAB_DIR/../.." && pwd)
LAB_CACHE=${HMR_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hmr-lab}

# Packages every guest gets (iperf3 measures the two-guest link, tcpdump shows it, qperf and
# libfabric-bin are librdmacm clients). The kernel packages differ per suite (see lab_kernel).
LAB_GUEST_PKGS="build-essential cmake ninja-build pkg-config dpkg-dev kmod iproute2 procps
 util-linux rdma-core libibverbs-dev librdmacm-dev ibverbs-utils rdmacm-utils ibverbs-providers
 perftest python3 python3-pyverbs python3-pytest libnl-3-dev libnl-route-3-dev libudev-dev
 xz-utils zstd ca-certificates iperf3 tcpdump qperf libfabric-bin debhelper dh-dkms lintian
 ucx-utils openmpi-bin libopenmpi-dev"
# Packages only downloaded into the image's apt cache, not installed: the guest has no network,
# and the install test (tests/install/test_install.py) installs them with hmr's packages from
# there, as apt on a host would from the archive. (debhelper, dh-dkms and lintian build and
# check hmr's packages: `make deb`.)
LAB_GUEST_CACHED="dkms"

# Host packages the lab needs (Debian 12 host).
LAB_HOST_PKGS="qemu-system-x86 debootstrap cpio busybox-static xz-utils zstd"

lab_say() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lab_die() { printf '[lab] error: %s\n' "$*" >&2; exit 125; }

# lab_kernel KERNEL: set LAB_KERNEL, LAB_SUITE and LAB_KPKGS for a kernel series.
lab_kernel() {
	LAB_KERNEL=$1 LAB_RDMA_SRC_SUITE=
	case "$1" in
	6.12) LAB_SUITE=trixie ;;
	# The archive no longer serves bookworm's rdma-core source (44.0): its provider headers come
	# from trixie's 56.1, which has the same private ABI number (34; build-image checks that the
	# installed libibverbs exports it, the provider's link checks every symbol it binds to).
	6.1) LAB_SUITE=bookworm LAB_RDMA_SRC_SUITE=trixie ;;
	7.2) LAB_SUITE=sid ;;
	*) lab_die "unknown kernel '$1' (known: 6.12, 7.2, 6.1)" ;;
	esac
	LAB_KPKGS="linux-image-amd64 linux-headers-amd64"
}

lab_recipe_hash() {
	cat "$LAB_DIR/lab.sh" "$LAB_DIR/build-image" "$LAB_DIR/initramfs-init" |
		{ cat; echo "$LAB_SUITE $LAB_KPKGS $LAB_RDMA_SRC_SUITE"; } | sha256sum | cut -c1-16
}

# lab_paths: set LAB_IMAGE (the image directory) and LAB_ROOT (its root filesystem).
lab_paths() {
	LAB_IMAGE=$LAB_CACHE/$LAB_SUITE-$(lab_recipe_hash)
	LAB_ROOT=$LAB_IMAGE/root
}

lab_host_deps() {
	local missing=() p
	for p in $LAB_HOST_PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	lab_say "installing host packages: ${missing[*]}"
	apt-get update -q >/dev/null &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
		lab_die "could not install host packages ${missing[*]}"
}

# lab_chroot CMD...: run CMD in the image root with /proc, /sys, /dev and the checkout (at its
# own path) mounted, in a private mount namespace so nothing stays mounted afterwards.
lab_chroot() {
	unshare -m --propagation private -- /bin/bash -c '
		root=$1 src=$2; shift 2
		mount -t proc proc "$root/proc" &&
		mount --rbind /sys "$root/sys" &&
		mount --rbind /dev "$root/dev" &&
		mkdir -p "$root$src" && mount --bind "$src" "$root$src" || exit 125
		cd / && exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' lab-chroot "$LAB_ROOT" "$SRC_DIR" "$@"
}

# Kernel release, vmlinuz and initramfs of a built image.
lab_kver() { cat "$LAB_IMAGE/kver"; }
