#!/bin/bash
# make demo: a hot backup of a live SQLite database, end to end.
#   bash examples/demo.sh BUILD_DIR [SIZE_MB]
# Builds a sample database, keeps writers committing, backs it up through
# BUILD_DIR/cowbackup.so (SELECT cowbackup(...)), restores, checks, prints.
set -euo pipefail
build=${1:-build}
size_mb=${2:-${COWBACKUP_DEMO_MB:-64}}
for f in "$build/cowbackup.so" "$build/examples/cowbackup_demo"; do
  [ -e "$f" ] || { echo "demo: $f is missing; run make first" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/cowbackup-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$build/examples/cowbackup_demo" "$build/cowbackup" "$work" "$size_mb"
# The command-line tool's restore, when it is built, must agree byte for byte.
if [ -x "$build/cowbackup" ]; then
  if "$build/cowbackup" restore "$work/live.cowbak" "$work/cli-restored.db" >/dev/null 2>&1; then
    cmp -s "$work/cli-restored.db" "$work/restored.db" && echo "demo: build/cowbackup restore gives the same file: OK"
  fi
fi
