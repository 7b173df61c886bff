#!/bin/bash
# Installs the build into a scratch prefix and builds the examples against
# it with find_package(cowbackup), then runs them: the SQLite one
# (cowbackup::sqlite) and the C program on LMDB (cowbackup::lmdb), whose
# backup is restored with the installed CLI and checked by mdb_dump.
set -euo pipefail
build=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
# The two libraries' components and the CLI (component Unspecified).
for component in sqlite lmdb Unspecified; do
  cmake --install "$build" --prefix "$work/prefix" --component $component >/dev/null
done
test -f "$work/prefix/include/cowbackup/sqlite.hpp"
test -f "$work/prefix/include/cowbackup/lmdb.h"
cmake -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null
LD_LIBRARY_PATH="$work/prefix/lib:$work/prefix/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$work/build/backup_example" "$work/ex.db" "$work/ex.cowbak" | tail -2
bash "$src/lmdb_c_check.sh" "$work/build/lmdb_c_example" "$work/prefix/bin/cowbackup" "$work/lmdb"
echo "find_package(cowbackup): ok"
