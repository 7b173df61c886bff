#!/bin/bash
# Installs the build into a scratch prefix and builds the example against it
# with find_package(cowbackup), then runs it.
set -euo pipefail
build=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" --component sqlite >/dev/null
test -f "$work/prefix/include/cowbackup/sqlite.hpp"
cmake -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null
LD_LIBRARY_PATH="$work/prefix/lib:$work/prefix/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$work/build/backup_example" "$work/ex.db" "$work/ex.cowbak" | tail -2
echo "find_package(cowbackup): ok"
