# The commands the README gives. Each build type has its own directory under build/.
#   make test       deps, build, every unit/stress/integration test (ctest)
#   make test-race  the same suite under ThreadSanitizer
#   make test-asan  the same under AddressSanitizer + UBSan + LeakSanitizer
#   make bench      build in release and print the benchmark table
#   make run        build and start sluice-demo on 127.0.0.1:8080
#   make run-race   the same, built and run under ThreadSanitizer (go run -race)
#   make fuzz       build the libFuzzer targets with clang and run them for a bounded count
JOBS   ?= $(shell nproc)
CTEST  ?= ctest --output-on-failure --no-tests=error -j $(JOBS)
CMAKE_COMMON := -DSLUICE_WERROR=ON
# TSan and ASan binaries are slower; ctest's per-test timeouts are scaled for them.

.PHONY: all deps build test test-race test-asan bench run fuzz format format-check install install-check run-race clean

all: build

deps:
	@scripts/deps.sh

build/release/CMakeCache.txt:
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_COMMON)
build/tsan/CMakeCache.txt:
	cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=thread $(CMAKE_COMMON)
build/asan/CMakeCache.txt:
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=address $(CMAKE_COMMON)

build: deps build/release/CMakeCache.txt
	cmake --build build/release -j $(JOBS)

test: build
	cd build/release && $(CTEST)

test-race: deps build/tsan/CMakeCache.txt
	cmake --build build/tsan -j $(JOBS)
	cd build/tsan && $(CTEST) --timeout 300

test-asan: deps build/asan/CMakeCache.txt
	cmake --build build/asan -j $(JOBS)
	cd build/asan && $(CTEST) --timeout 300

bench: build
	@scripts/bench.sh build/release

run: build
	@if [ -x build/release/apps/sluice-demo ]; then \
		exec build/release/apps/sluice-demo $(ARGS); \
	else \
		echo "sluice-demo is not built yet: it arrives with the demo issue (see docs/ROADMAP.md)."; \
		echo "Meanwhile: 'make test' runs everything that exists."; \
	fi

fuzz: deps
	@if [ -f fuzz/CMakeLists.txt ]; then \
		CC=clang cmake -S fuzz -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo && \
		cmake --build build/fuzz -j $(JOBS) && scripts/fuzz.sh build/fuzz; \
	else echo "no fuzz targets yet"; fi

FORMAT_FILES = $(shell git ls-files '*.c' '*.h')
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	@clang-format --dry-run -Werror $(FORMAT_FILES) && echo "format: ok"

# make install also installs the race (TSan) and asan (ASan+UBSan) variants of the library,
# built in build/tsan and build/asan (the dirs test-race/test-asan use; only the library targets
# are built here). VARIANTS= installs the plain library only.
VARIANTS ?= tsan asan
install: build $(addprefix build-lib-,$(VARIANTS))
	cmake --install build/release $(if $(PREFIX),--prefix $(PREFIX))
	$(foreach v,$(VARIANTS),cmake --install build/$(v) --component variant $(if $(PREFIX),--prefix $(PREFIX)) &&) true
build-lib-%: deps build/%/CMakeCache.txt
	cmake --build build/$* -j $(JOBS) --target sluice sluice_static

# One install of all three variants into a scratch prefix; consumers built against each with
# pkg-config and find_package, racy/overflowing ones must report (tests/install/check.sh).
STAGE := $(CURDIR)/build/stage
install-check:
	rm -rf $(STAGE) build/consumer
	$(MAKE) --no-print-directory install PREFIX=$(STAGE) VARIANTS="tsan asan" >/dev/null
	tests/install/check.sh $(STAGE) $(CURDIR)/build/consumer

# go run -race: sluice-demo built and run under ThreadSanitizer (reports go to stderr; the exit
# code is 66 if any race was reported). ARGS are passed to the demo.
run-race: deps build/tsan/CMakeCache.txt
	cmake --build build/tsan -j $(JOBS) --target sluice-demo
	TSAN_OPTIONS="$${TSAN_OPTIONS:-second_deadlock_stack=1}" exec build/tsan/apps/sluice-demo $(ARGS)

clean:
	rm -rf build
