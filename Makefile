# rewind - the two commands an operator needs, over CMake:
#   make run    install what is missing, build, run the bundled firewall chain on a trace
#   make test   install what is missing, build (Debug with ASan+UBSan, and Release), run
#               the whole suite on each
# Also: make bench (Release build + benchmarks), make soak (long crash loop and
# chaos: 4 seeds per catalog chain, a fault every 60/100 ms; 1 M packets in a
# 24 MiB store and 60,000 short flows through every NF),
# make fuzz (libFuzzer on the log, flow and NF parsers), make clean.

BUILD     ?= build
RELEASE   ?= build-release
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
TRACE     ?= traces/nmap_sT_top1000.pcap
CHAIN     ?= docs/chains/firewall.yaml
RUN_DIR   ?= $(BUILD)/run

.PHONY: all setup build release run test bench soak fuzz faults tsan format clean

all: build

setup:
	@bash tools/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Debug -DRW_SANITIZE=ON

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

run: build
	rm -rf $(RUN_DIR)
	$(BUILD)/cli/rewind run $(CHAIN) --trace $(TRACE) --out $(RUN_DIR)
	$(BUILD)/cli/rewind log stat $(RUN_DIR)/log
	$(BUILD)/cli/rewind replay $(RUN_DIR)/output --to-pcap $(RUN_DIR)/output.pcapng
	@echo "input log: $(RUN_DIR)/log; what left the chain, with clocks: $(RUN_DIR)/output.pcapng;"
	@echo "counts and latencies: $(RUN_DIR)/report.json"

# The whole suite runs on both builds: Debug (ASan+UBSan) and Release, because
# some bugs only exist with optimisation (warnings such as maybe-uninitialized; the
# flow hash that -O2 reduced to addresses, issue 10). Each build dir's tests drive
# that build's binary (RW_BIN). Both suites run even when the first fails.
test: build release
	@status=0; \
	(cd $(BUILD) && ctest --output-on-failure -j$(JOBS)) || status=1; \
	(cd $(RELEASE) && ctest --output-on-failure -j$(JOBS)) || status=1; \
	exit $$status

$(RELEASE)/CMakeCache.txt:
	cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release -DRW_SANITIZE=OFF

release: setup $(RELEASE)/CMakeCache.txt
	cmake --build $(RELEASE) -j$(JOBS)

bench: release
	$(RELEASE)/cli/rewind bench log
	$(RELEASE)/cli/rewind bench store
	$(RELEASE)/cli/rewind bench chain
	$(RELEASE)/cli/rewind bench failover

soak: build
	cd $(BUILD) && RW_CRASH_ROUNDS=100 ctest --output-on-failure -R '^crash/'
	cd $(BUILD) && RW_LONG=1 ctest --output-on-failure -R '^(failover|soundness)/'

# Allocation failures (docs/testing.md): every in-process case (ctest -L inproc)
# with its 1st, 2nd, ... allocation failing, FAULT_POINTS of them per case, in the
# Debug build, so ASan and UBSan watch every error path taken.
FAULT_POINTS ?= 40
faults: build
	python3 tests/faults.py -b $(BUILD) -p $(FAULT_POINTS) -j$(JOBS)

# ThreadSanitizer over the in-process suites (the sink, the logger thread and the
# uv loop are threads), in a build of its own; suppressions in tests/tsan.supp.
TSAN ?= build-tsan
tsan: setup
	cmake -S . -B $(TSAN) -DCMAKE_BUILD_TYPE=Debug -DRW_SANITIZE=OFF -DRW_TSAN=ON
	cmake --build $(TSAN) -j$(JOBS)
	cd $(TSAN) && ctest --output-on-failure -j$(JOBS) -L inproc

# libFuzzer on the parsers that read untrusted bytes (log blocks, flow keys, and
# every NF of the catalog), FUZZ_SECONDS each, in a clang build of its own.
FUZZ_SECONDS ?= 60
FUZZ_DIR     ?= build-fuzz
fuzz:
	@bash tools/setup.sh fuzz
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DRW_FUZZ=ON
	cmake --build $(FUZZ_DIR) -j$(JOBS) --target fuzz_block fuzz_flow fuzz_nf
	for t in block flow nf; do \
	    $(FUZZ_DIR)/tests/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) tests/fuzz/corpus/$$t || exit 1; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(RELEASE) $(TSAN)
