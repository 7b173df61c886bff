#!/usr/bin/env bash
# make bench: every benchmark, side by side in one run. The README's table
# comes from this output.
#   COWBACKUP_BENCH_MB   engine source size (default 1024)
#   bench/sqlite and bench/lmdb read their own size variables (see there).
set -euo pipefail
build=${1:-build}
export COWBACKUP_BUILD_DIR=$(cd "$build" && pwd)   # where the benches find cowbackup.so
run() {
  local bin=$1; shift
  if [ -x "$bin" ]; then
    echo "== $(basename "$bin")"
    "$bin" "$@"
    echo
  fi
}
run "$build/bench/engine/engine_bench"
for b in "$build"/bench/sqlite/* "$build"/bench/lmdb/*; do
  [ -f "$b" ] && [ -x "$b" ] && run "$b"
done
