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

BUILD ?= build/host
KERNEL ?= 6.12
LAB_KERNELS ?= 6.12 7.2 6.1
PYTHON ?= /usr/bin/python3
PYTEST = $(PYTHON) -m pytest -ra -p no:cacheprovider
KDIR ?= /lib/modules/$(shell uname -r)/build
KMOD_OUT ?= build/kmod-$(notdir $(patsubst %/build,%,$(KDIR)))

.PHONY: all deps build test test-native test-guest bench bench-native lab kmod clean

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

# Out-of-tree kbuild of hmr.ko: kmod/ and libhmr's kernel sources are copied into $(KMOD_OUT)
# so builds for several kernels never share object files.
kmod:
	@rm -rf $(KMOD_OUT) && mkdir -p $(KMOD_OUT)/libhmr
	@cp -r kmod/. $(KMOD_OUT)/
	@if [ -d libhmr/src ]; then cp libhmr/src/*.c $(KMOD_OUT)/libhmr/ && cp -r libhmr/include $(KMOD_OUT)/libhmr/; fi
	$(MAKE) -C $(KDIR) M=$(abspath $(KMOD_OUT)) modules

clean:
	rm -rf build
