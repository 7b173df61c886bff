# cowbackup — the two commands a newcomer needs: `make demo` and `make test`.
#
#   make          build build/cowbackup.so (SQLite extension) and build/cowbackup (CLI)
#   make demo     a hot backup of a live SQLite database, end to end
#   make test     Clang's thread-safety analysis, the whole suite, then again
#                 under ASan+UBSan, the concurrency tests under TSan, and the
#                 archive fuzzer; with LONG=1 also SQLite's own TCL tests
#                 through the shim (make test-sqlite-tcl)
#   make bench    the benchmarks (Google Benchmark) into bench/results/: latest.json,
#                 latest.md (the README's table) and the plots; QUICK=1: small sizes,
#                 into build/bench-quick/ (make test runs it as a smoke test)
#
# Every target first installs missing Debian packages (quiet when none are).

JOBS   ?= 2
BUILD  ?= build
CMAKE_FLAGS ?=
# Longer torture, crash and fuzz runs: make test LONG=1
LONG   ?= 0
QUICK  ?= 0
FUZZ_SECONDS ?= 60

DEBS := cmake g++ make pkg-config python3 sqlite3 libsqlite3-dev liblmdb-dev lmdb-utils \
        libboost-program-options-dev libgtest-dev libgmock-dev libbenchmark-dev \
        libxxhash-dev clang libclang-rt-14-dev bsdutils coreutils gnuplot-nox
# SQLite's own TCL tests (make test-sqlite-tcl): testfixture from the source package
SQLITE_TCL_DEBS := tcl8.6-dev dpkg-dev xz-utils zlib1g-dev

.PHONY: all deps configure build demo test test-tsa test-unit test-asan test-tsan test-fuzz test-bench test-sqlite-tcl bench clean install

all: build

# $(call install_debs,PACKAGES): installs those not installed yet, quietly.
install_debs = missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

deps:
	@$(call install_debs,$(DEBS))

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

# The demo needs the extension, the CLI and its driver, not the test suite.
demo: configure
	@cmake --build $(BUILD) -j$(JOBS) --target cowbackup cowbackup_tool cowbackup_demo -- --no-print-directory
	@bash examples/demo.sh $(BUILD)

test: test-tsa test-unit test-asan test-tsan test-fuzz test-bench $(if $(filter 1,$(LONG)),test-sqlite-tcl)
	@echo "make test: all suites passed"

# Clang's thread-safety analysis (engine/mutex.h): a member GUARDED_BY a
# mutex, touched without it, fails here. Syntax only: no second build.
LIB_SOURCES := $(wildcard engine/*.cc coord/*.cc backup/*.cc vfs/*.cc sql/*.cc lmdb/*.cc tools/*.cc preload/*.cc)
test-tsa: deps
	@for f in $(LIB_SOURCES); do \
	  clang++ -std=c++20 -fsyntax-only -Wthread-safety -Werror=thread-safety \
	    -DCOWBACKUP_VERSION='"tsa"' -I. -Iinclude $$f || exit 1; \
	done
	@echo "thread-safety analysis: $(words $(LIB_SOURCES)) files, clean"

test-unit: build
	cd $(BUILD) && COWBACKUP_LONG=$(LONG) ctest --output-on-failure -j$(JOBS)

test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCOWBACKUP_SANITIZE=address,undefined -DCOWBACKUP_BUILD_BENCH=OFF >/dev/null
	@cmake --build build-asan -j$(JOBS) -- --no-print-directory
	cd build-asan && COWBACKUP_LONG=$(LONG) ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS) -LE no_asan

test-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOWBACKUP_SANITIZE=thread -DCOWBACKUP_BUILD_BENCH=OFF >/dev/null
	@cmake --build build-tsan -j$(JOBS) -- --no-print-directory
	cd build-tsan && COWBACKUP_LONG=$(LONG) TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure -j$(JOBS) -L tsan

test-fuzz: deps
	@if [ -f tests/fuzz/run.sh ]; then bash tests/fuzz/run.sh $(FUZZ_SECONDS); fi

# make bench QUICK=1 as a smoke test: every scenario runs and the report,
# its JSON and its plots are made. Asserts nothing about speed.
test-bench: build
	@COWBACKUP_BENCH_QUICK=1 bash bench/run.sh $(BUILD) $(BUILD)/bench-quick >$(BUILD)/bench-quick.log 2>&1 \
	  || { tail -40 $(BUILD)/bench-quick.log; echo "make test-bench: failed (log: $(BUILD)/bench-quick.log)"; exit 1; }
	@/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); \
	  assert all(r["benchmarks"][b]["rows"] for b in ("engine_bench","sqlite_bench","lmdb_bench")), "a bench has no rows"; \
	  assert r["sqlite_figures"]["figures"] and len(r["plots"]) >= 4, "figures or plots missing"' $(BUILD)/bench-quick/latest.json
	@echo "bench smoke run: every scenario ran; report, JSON and plots in $(BUILD)/bench-quick/"

# SQLite's own wal*, pager*, journal*, lock*, savepoint* and ioerr* TCL tests
# through the shim and through plain unix, side by side (docs/SQLITE.md).
# 12-20 minutes on 2 cores (fetch and build included): in `make test` only with LONG=1.
test-sqlite-tcl: configure
	@$(call install_debs,$(SQLITE_TCL_DEBS))
	@BUILD=$(BUILD) JOBS=$(JOBS) bash tests/sqlite_tcl/run.sh

bench: build
	@COWBACKUP_BENCH_QUICK=$(QUICK) bash bench/run.sh $(BUILD) $(if $(filter 1,$(QUICK)),$(BUILD)/bench-quick,bench/results)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf build build-asan build-tsan build-fuzz
