# Everyday verbs of hmr. Userspace parts build with CMake into $(BUILD); the kernel module builds
# with kbuild against KDIR; kernel tests run in a qemu guest made by tests/lab (see Documentation.md).
#
#   make              build the userspace parts (libhmr, native tests, benchmarks)
#   make test         native tests, then the guest tests on $(KERNEL): one pytest summary
#   make test-native  native tests only (libhmr under sanitizers, fuzzing, model checking)
#   make bench        the benchmark table (native micro-benchmarks and the guest benchmarks)
#   make bench-native the libhmr micro-benchmark alone
#   make lab          build (or reuse) the guest images for $(LAB_KERNELS)
#   make kmod KDIR=/lib/modules/<release>/build   build hmr.ko against a kernel build directory
#   make install RDMA_CORE_BUILD=DIR [KDIR=..] [DESTDIR=..]   provider, hmr.ko, hmr-link (no package)
#   make deb          Debian packages (hmr-dkms, ibverbs-providers-hmr) for $(DEB_KERNELS)'s
#                     distributions, built in their lab images: build/deb/<suite>/

BUILD ?= build/host
KERNEL ?= 6.12
LAB_KERNELS ?= 6.12 7.2 6.1
DEB_KERNELS ?= 6.12 7.2 6.1
PYTHON ?= /usr/bin/python3
PYTEST = $(PYTHON) -m pytest -ra -p no:cacheprovider
KDIR ?= /lib/modules/$(shell uname -r)/build
KMOD_OUT ?= build/kmod-$(notdir $(patsubst %/build,%,$(KDIR)))

.PHONY: all deps build test test-native test-guest bench bench-native lab kmod kmod-src deb install clean

all: build

deps:
	@scripts/host-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$$(nproc)

test: build lab
	HMR_KERNEL=$(KERNEL) HMR_BUILD=$(BUILD) $(PYTEST) tests

test-native: build
	HMR_BUILD=$(BUILD) HMR_GUEST=skip $(PYTEST) tests

test-guest: lab
	HMR_KERNEL=$(KERNEL) HMR_BUILD=$(BUILD) HMR_NATIVE=skip $(PYTEST) tests

bench: build
	@$(MAKE) --no-print-directory bench-native
	@perftest/run-bench --kernel $(KERNEL)

bench-native: build
	@libhmr/bench/run $(BUILD)

lab: deps
	@for k in $(LAB_KERNELS); do tests/lab/build-image --kernel $$k >/dev/null || exit 1; done

deb: deps
	@for k in $(DEB_KERNELS); do \
		image=$$(tests/lab/build-image --kernel $$k) && tests/lab/build-deb "$$image" || exit 1; \
	done

# For a host without packages (Documentation.md, "Install on a host"): the provider built against
# RDMA_CORE_BUILD (a configured rdma-core build tree of the installed libibverbs' release),
# hmr.ko for KDIR's kernel under updates/ (then depmod, unless DESTDIR stages it), and the
# persistent-link helper with its udev rule.
INSTALL_BUILD ?= build/install
install:
	@test -f "$(RDMA_CORE_BUILD)/include/config.h" || { echo "make install: RDMA_CORE_BUILD=<configured rdma-core build tree of the installed libibverbs' release>" >&2; exit 2; }
	cmake -S . -B $(INSTALL_BUILD) -DHMR_GUEST_BUILD=ON -DRDMA_CORE_BUILD=$(RDMA_CORE_BUILD) \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc >/dev/null
	cmake --build $(INSTALL_BUILD)
	DESTDIR=$(DESTDIR) cmake --install $(INSTALL_BUILD) --component provider
	$(MAKE) --no-print-directory kmod KMOD_OUT=$(INSTALL_BUILD)/kmod
	$(MAKE) -C $(KDIR) M=$(abspath $(INSTALL_BUILD)/kmod) INSTALL_MOD_DIR=updates \
		$(if $(DESTDIR),INSTALL_MOD_PATH=$(abspath $(DESTDIR))) modules_install
	install -D -m 755 dist/hmr-link $(DESTDIR)/usr/libexec/hmr/hmr-link
	install -D -m 644 dist/60-hmr-link.rules $(DESTDIR)/usr/lib/udev/rules.d/60-hmr-link.rules
	test -e $(DESTDIR)/etc/hmr/links || install -D -m 644 dist/links $(DESTDIR)/etc/hmr/links
	@# a staged install (DESTDIR) leaves depmod to whoever installs it for real
	test -n "$(DESTDIR)" || depmod -a $$(modinfo -F vermagic $(INSTALL_BUILD)/kmod/hmr.ko | cut -d' ' -f1)

# Out-of-tree kbuild of hmr.ko: kmod/ and libhmr's kernel sources are copied into $(KMOD_OUT)
# so builds for several kernels never share object files.
# `make kmod-src KMOD_OUT=DIR` makes only that source directory (the DKMS package ships it).
kmod: kmod-src
	$(MAKE) -C $(KDIR) M=$(abspath $(KMOD_OUT)) modules

kmod-src:
	@rm -rf $(KMOD_OUT) && mkdir -p $(KMOD_OUT)/libhmr
	@cp -r kmod/. $(KMOD_OUT)/
	@cp libhmr/src/*.c $(KMOD_OUT)/libhmr/ && cp -r libhmr/include $(KMOD_OUT)/libhmr/

clean:
	rm -rf build
