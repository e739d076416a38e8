# The two commands a newcomer runs: `make demo` and `make test`. Both install what is missing
# (scripts/install-deps.sh, apt-get + npm), configure and build first.
BUILD ?= build
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all deps configure build test test-unit test-e2e kernel-matrix demo bench fuzz fresh-check format clean image metrics-doc

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Every tier: unit, replay, fuzz (corpus replay), e2e (root + real BPF). INFERTAP_REQUIRE_BPF=1
# (set by .ci/run) turns a skipped BPF test into a failure.
test: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 600 $(CTEST_ARGS)

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure -L 'unit|replay|fuzz' $(CTEST_ARGS)

test-e2e: build
	@cd $(BUILD) && ctest --output-on-failure -L e2e $(CTEST_ARGS)

# Debian's kernels 5.10, 6.1 (generic and cloud) and 6.12 booted in qemu, the whole capture e2e
# suite in each (scripts/kernel-matrix.sh; root; KERNELS= picks some; TCG: about 25 min for all).
kernel-matrix: build
	@bash scripts/kernel-matrix.sh $(BUILD)

# Only what the demo runs, so a fresh machine gets there in a few minutes.
demo: configure
	@cmake --build $(BUILD) -j $(JOBS) --target infertap infertap-sim infertap-load
	@bash scripts/demo.sh $(BUILD)

# The container image, compiled from source inside the Dockerfile's build stage (root, podman;
# a private store under $(BUILD)/podman; BASE=debian:12-slim if your podman can pull it, else a
# debootstrapped Debian 12 is made; docs/deploy.md#image).
image: deps
	@bash scripts/image.sh build $(BUILD)

bench: build
	@bash bench/run.sh $(BUILD)

fuzz:
	@bash scripts/fuzz.sh

format:
	@git ls-files '*.cc' '*.hpp' '*.h' '*.c' | xargs clang-format -i

clean:
	rm -rf $(BUILD)

# A newcomer's machine, checked: debootstrap a minimal Debian 12, clone this repository alone into
# it and run `make demo` and `make test` there with real BPF (scripts/fresh-machine-check.sh;
# root, 20-30 minutes).
fresh-check:
	@bash scripts/fresh-machine-check.sh
