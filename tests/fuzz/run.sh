#!/usr/bin/env bash
# The archive fuzzer: builds tests/fuzz/fuzz_archive.cc with clang and
# libFuzzer (ASan + UBSan) in build-fuzz/, writes a seed corpus of valid,
# cut and flipped archives, runs for SECONDS (default 60), prints the number
# of executions, and fails if libFuzzer found a crash, leak, timeout or
# out-of-memory. A finding is left in build-fuzz/crashes/; copy it to
# tests/fuzz/regressions/ so tests/faults/fuzz_regression_test replays it.
#
#   bash tests/fuzz/run.sh [SECONDS]
set -euo pipefail

SECONDS_TO_RUN=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build-fuzz
CXX=${FUZZ_CXX:-clang++}
mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/crashes" "$OUT/tmp"

FLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=all -Wall -Wextra
       -I"$ROOT" -I"$ROOT/include" -I"$ROOT/tests")

# Library sources: everything in engine/ and backup/ (they need only
# libxxhash), compiled with coverage for libFuzzer. Rebuilt when changed.
objs=()
for src in "$ROOT"/engine/*.cc "$ROOT"/backup/*.cc "$ROOT"/tests/fuzz/archive_input.cc; do
  obj=$OUT/obj/$(basename "$(dirname "$src")")_$(basename "${src%.cc}").o
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || \
     [ -n "$(find "$ROOT/engine" "$ROOT/backup" "$ROOT/include" "$ROOT/tests/fuzz" -name '*.h' -newer "$obj" -print -quit)" ]; then
    "$CXX" "${FLAGS[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
  fi
  objs+=("$obj")
done
lib_objs=("${objs[@]:0:${#objs[@]}-1}")

"$CXX" "${FLAGS[@]}" -fsanitize=fuzzer "$ROOT/tests/fuzz/fuzz_archive.cc" "${objs[@]}" \
  -lxxhash -lpthread -o "$OUT/fuzz_archive"
"$CXX" "${FLAGS[@]}" "$ROOT/tests/fuzz/make_corpus.cc" "${lib_objs[@]}" \
  -lxxhash -lpthread -o "$OUT/make_corpus"

rm -rf "$OUT/seed"
"$OUT/make_corpus" "$OUT/seed"

# Crashes are artifacts in $OUT/crashes; new corpus entries go to
# $OUT/corpus (kept between runs, never committed). The regression inputs
# are read as seeds too.
# Restore fsyncs what it writes: scratch space on tmpfs keeps the fuzzer fast.
SCRATCH=$OUT/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ]; then SCRATCH=/dev/shm; fi
before=$(ls "$OUT/crashes" | wc -l)
set +e
TMPDIR=$SCRATCH ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$OUT/fuzz_archive" -max_total_time="$SECONDS_TO_RUN" -max_len=16384 \
  -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$OUT/crashes/" \
  "$OUT/corpus" "$OUT/seed" "$ROOT/tests/fuzz/regressions" >"$OUT/fuzz.log" 2>&1
status=$?
set -e
rm -rf "$SCRATCH"/cowbackup-fuzz-*
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/fuzz.log" | tail -1)
after=$(ls "$OUT/crashes" | wc -l)
echo "fuzz_archive: ${execs:-0} executions in ${SECONDS_TO_RUN}s, corpus $(ls "$OUT/corpus" | wc -l) inputs"
if [ $status -ne 0 ] || [ "$after" -ne "$before" ]; then
  tail -60 "$OUT/fuzz.log"
  echo "fuzz_archive: FAILED (exit $status); findings in $OUT/crashes:" >&2
  ls -t "$OUT/crashes" | head >&2
  exit 1
fi
