# rewind - the two commands an operator needs, over CMake:
#   make run    install what is missing, build, run the bundled firewall chain on a trace
#   make test   install what is missing, build (Debug, ASan+UBSan), run the whole suite
# Also: make bench (Release build + benchmarks), make soak (long crash loop),
# make fuzz (libFuzzer on the block and flow parsers), make clean.

BUILD     ?= build
RELEASE   ?= build-release
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
TRACE     ?= traces/nmap_sT_top1000.pcap
CHAIN     ?= docs/chains/firewall.yaml
RUN_DIR   ?= $(BUILD)/run

.PHONY: all setup build run test bench soak fuzz format clean

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

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

$(RELEASE)/CMakeCache.txt:
	cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release -DRW_SANITIZE=OFF

bench: setup $(RELEASE)/CMakeCache.txt
	cmake --build $(RELEASE) -j$(JOBS)
	$(RELEASE)/cli/rewind bench log

soak: build
	cd $(BUILD) && RW_CRASH_ROUNDS=100 ctest --output-on-failure -R test_crash

# libFuzzer targets for the parsers that read untrusted bytes; FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
FUZZ_DIR     ?= build-fuzz
FUZZ_CFLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilogger -Icommon \
                $$(pkg-config --cflags libdpdk)
fuzz:
	@bash tools/setup.sh fuzz
	mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_block.c logger/log_block.c logger/log_bloom.c \
	    common/rw_flow.c -llz4 -lz $$(pkg-config --libs libdpdk) -o $(FUZZ_DIR)/fuzz_block
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_flow.c common/rw_flow.c \
	    $$(pkg-config --libs libdpdk) -o $(FUZZ_DIR)/fuzz_flow
	$(FUZZ_DIR)/fuzz_block -max_total_time=$(FUZZ_SECONDS) tests/fuzz/corpus/block
	$(FUZZ_DIR)/fuzz_flow -max_total_time=$(FUZZ_SECONDS) tests/fuzz/corpus/flow

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(RELEASE)
