# The two commands a new user runs: `make demo` and `make test`.
# Both install missing Debian packages (as root, with apt-get), configure into build/,
# build, and run.

BUILD   ?= build
JOBS    ?= $(shell nproc)
CMAKE_FLAGS ?=
BENCH   ?=
SEEDS   ?= 5000

PACKAGES := g++ cmake make pkg-config libboost-dev capnproto libcapnp-dev liblmdb-dev \
            libsodium-dev librapidcheck-dev googletest libgtest-dev nlohmann-json3-dev \
            libcli11-dev libzstd-dev libxxhash-dev clang-format clang libclang-rt-14-dev python3 \
            python3-venv binutils libcsv-dev libphonenumber-dev libre2-dev \
            prometheus-cpp-dev

.PHONY: all deps build demo test test-sanitize format format-check bench fuzz sim crash clean \
        install crash-sync test-tsan soak test-clang

PREFIX  ?= /usr/local

all: build

# Installs only what is missing; silent when everything is there.
deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run as root to install packages:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	python3 scripts/demo.py $(BUILD)

# NODES live daemons (line, then star, then mesh) under writes from several processes,
# crashes and partitions for MINUTES minutes; then convergence, every acknowledged write,
# integrity and flat memory are checked (scripts/soak.py).
MINUTES ?= 10
NODES ?= 10
soak: build
	python3 scripts/soak.py $(BUILD) $(MINUTES) $(NODES)

# tandem.h, libtandem.so and .a, tandem.pc, the CMake package and the tandem program.
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

test: build format-check
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The tests under AddressSanitizer and UndefinedBehaviorSanitizer, in build-sanitize/: a
# Debug build (assertions on), optimised a little (-O1) to keep the run short.
test-sanitize: deps
	$(MAKE) build BUILD=build-sanitize CMAKE_FLAGS="-DTANDEM_SANITIZE=ON -DTANDEM_BENCH=OFF \
	  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG='-g -O1' -DCMAKE_C_FLAGS_DEBUG='-g -O1'"
	cd build-sanitize && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer over what runs threads: the sync node (its network thread, storage
# worker and callbacks), the change watcher, subscriptions, the C API, the in-process
# transport and the network tests, in build-tsan/.
TSAN_TESTS ?= Node\.|Device\.|LmdbStore\.|MultiProcess\.|capi_tests|c_example|Net\.|Loopback\.
test-tsan: deps
	$(MAKE) build BUILD=build-tsan CMAKE_FLAGS="-DTANDEM_TSAN=ON -DTANDEM_BENCH=OFF"
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)'

# Everything, tests included, built by clang 14 with warnings as errors, then every test.
test-clang: deps
	$(MAKE) build BUILD=build-clang CMAKE_FLAGS="-DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DTANDEM_WERROR=ON"
	cd build-clang && ctest --output-on-failure -j $(JOBS)

# Many more simulator seeds than `make test` runs: make sim SEEDS=100000
sim: build
	./$(BUILD)/tests/tandem_sim --seeds $(SEEDS) --first 1000

# The crash test with many more kills than `make test`'s 200: make crash KILLS=5000
KILLS ?= 2000
crash: build
	TANDEM_CRASH_ITERATIONS=$(KILLS) ./$(BUILD)/tests/crash_tests

# kill -9 of either side of a sync at random moments: make crash-sync KILLS=100
crash-sync: build
	TANDEM_CRASH_SYNC_KILLS=$(KILLS) ./$(BUILD)/tests/net_tests \
	  --gtest_filter='Net.KilledMidSyncBothSidesOpenCheckAndConverge'

format:
	git ls-files '*.h' '*.cc' '*.c' | xargs clang-format -i

format-check: deps
	@git ls-files '*.h' '*.cc' '*.c' | xargs clang-format --dry-run --Werror \
	  && echo "clang-format: ok"

bench: deps
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DTANDEM_TESTS=OFF >/dev/null
	cmake --build build-bench -j $(JOBS)
	./scripts/bench.sh build-bench $(BENCH)

# Every fuzz target for SECONDS seconds each: make fuzz SECONDS=600. Under ASan and
# UBSan by default; FUZZ_SANITIZERS= (empty) runs about ten times more inputs.
SECONDS ?= 60
FUZZ_TARGETS ?= field_state wire secure beacon session import
FUZZ_SANITIZERS ?= address,undefined
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DTANDEM_FUZZ=ON -DTANDEM_TESTS=OFF \
	  -DTANDEM_BENCH=OFF -DTANDEM_FUZZ_SANITIZERS="$(FUZZ_SANITIZERS)" >/dev/null
	@# Only the targets: clang 14 cannot build the sync node's coroutines with sanitizers.
	cmake --build build-fuzz -j $(JOBS) --target $(FUZZ_TARGETS:%=%_fuzz)
	./scripts/fuzz.sh build-fuzz $(SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build build-sanitize build-tsan build-bench build-fuzz build-clang
