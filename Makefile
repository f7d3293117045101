# Thin wrapper over the one CMake build, so the quick start is two commands.
#   make run    build everything (host programs, guest kernel, initramfs, the
#               Debian root filesystem) and run the main job: capsem run -- uname -a
#   make serve  build everything and run the service: capsem serve on
#               127.0.0.1:$(PORT) (default 7878); open the login URL it prints
#   make test   build, then run every test: unit, lint and kvm (real VMs) in the
#               normal build, and the unit tests again under ASan + UBSan
# The kernel and the root filesystem are cached in ~/.cache/capsem by the hash
# of their inputs; their first build prints its progress (several minutes each).
# CMAKE_FLAGS passes options to the configure step, e.g.
#   make run CMAKE_FLAGS=-DCAPSEM_BUILD_ROOTFS=OFF     (initramfs only, no rootfs)
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PORT ?= 7878
MAKEFLAGS += --no-print-directory

.PHONY: all build asan run serve test clean

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Asan $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# On a host whose /dev/kvm cannot run guest kernels at useful speed (nested
# KVM without hardware support), the main job runs inside the KVM test bed.
run: build
	@if probe=$$($(BUILD)/bin/capsem-vmm --probe 2>&1); then \
	    $(BUILD)/bin/capsem run -- uname -a; \
	else \
	    echo "$$probe"; \
	    echo "make run: this host's KVM cannot run guests directly; using the KVM test bed"; \
	    tests/kvm-bed/run -- $(BUILD)/bin/capsem run -- uname -a; \
	fi

# The daemon; in the KVM test bed (its port forwarded to this host's loopback,
# $CAPSEM_HOME shared) where this host's KVM cannot run guests. Ctrl-C stops it.
serve: build
	@if probe=$$($(BUILD)/bin/capsem-vmm --probe 2>&1); then \
	    exec $(BUILD)/bin/capsem serve --listen 127.0.0.1:$(PORT); \
	else \
	    echo "$$probe"; \
	    echo "make serve: this host's KVM cannot run guests directly; serving from the KVM test bed"; \
	    tests/kvm-bed/run --forward $(PORT) -- $(BUILD)/bin/capsem serve --listen 127.0.0.1:$(PORT); \
	fi

test: build asan
	CAPSEM_KVM_REQUIRED=1 ctest --test-dir $(BUILD) --output-on-failure -j2
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j2 -L unit

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
