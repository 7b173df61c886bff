#!/usr/bin/env bash
# make bench: every benchmark, side by side in one run, then bench/report.py
# (latest.json, latest.md, the plots). The README's Performance section
# comes from latest.md.
#
#   bench/run.sh [BUILD_DIR [RESULTS_DIR]]
#
#   RESULTS_DIR            default bench/results (make bench QUICK=1 and
#                          make test's smoke run write elsewhere)
#   COWBACKUP_BENCH_QUICK  1: small sizes and short windows, the same
#                          scenarios (under two minutes; figures not
#                          meaningful, the pipeline is what it checks)
#   COWBACKUP_BENCH_RUNS   runs of each benchmark (default 1); the report
#                          takes each figure's median and keeps the spread
#   COWBACKUP_BENCH_MB     engine source size (default 1024)
#   bench/sqlite and bench/lmdb read their own size variables (see there).
set -euo pipefail
build=${1:-build}
results=${2:-bench/results}
mkdir -p "$results"
results=$(cd "$results" && pwd)
export COWBACKUP_BUILD_DIR=$(cd "$build" && pwd)   # where the benches find cowbackup.so
export COWBACKUP_BENCH_OUT=$results
runs=${COWBACKUP_BENCH_RUNS:-1}
extra=()
if [ "${COWBACKUP_BENCH_QUICK:-0}" = 1 ]; then
  export COWBACKUP_BENCH_MB=${COWBACKUP_BENCH_MB:-64}
  export COWBACKUP_SQLITE_BENCH_MB=${COWBACKUP_SQLITE_BENCH_MB:-16}
  export COWBACKUP_LMDB_BENCH_KEYS=${COWBACKUP_LMDB_BENCH_KEYS:-20000}
  extra+=(--benchmark_min_time=0.05)
fi
rm -f "$results"/*.json "$results"/*.dat "$results"/*.png "$results"/*.txt "$results"/latest.md
run() {
  local bin=$1 name
  name=$(basename "$bin")
  echo "== $name"
  "$bin" --benchmark_repetitions="$runs" --benchmark_out="$results/$name.json" \
    --benchmark_out_format=json "${extra[@]}" | tee "$results/$name.txt"
  echo
}
for b in "$build"/bench/engine/engine_bench "$build"/bench/sqlite/* "$build"/bench/lmdb/*; do
  if [ -f "$b" ] && [ -x "$b" ]; then run "$b"; fi
done
/usr/bin/python3 "$(dirname "$0")/report.py" "$results"
