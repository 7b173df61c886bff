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

# The installed preload library: Debian's python3 with its standard sqlite3
# module and nothing else writes while the installed CLI backs it up from
# another process; status must list the python process (it attached).
preload="$work/prefix/lib/cowbackup/libcowbackup_preload.so"
test -f "$preload"
db="$work/py.db" stop="$work/py.stop"
LD_PRELOAD="$preload" /usr/bin/python3 -c '
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("create table t(i integer primary key, v blob)")
n = 0
while not os.path.exists(sys.argv[2]):
    n += 1
    db.execute("begin immediate")
    db.execute("insert into t(v) values (randomblob(3000))")
    db.execute("commit")
    if n == 50: open(sys.argv[2] + ".ready", "w").close()
' "$db" "$stop" &
py=$!
for _ in $(seq 1 600); do [ -f "$stop.ready" ] && break; sleep 0.05; done
test -f "$stop.ready"
"$work/prefix/bin/cowbackup" status --json "$db" | grep -q "\"pid\": $py," \
  || { echo "the preloaded python3 ($py) is not attached to $db's region" >&2; kill $py; exit 1; }
"$work/prefix/bin/cowbackup" backup --quiet --max-rate-mb 20 "$db" "$work/py.cbk"
touch "$stop"
wait $py
"$work/prefix/bin/cowbackup" restore --quiet "$work/py.cbk" "$work/py-restored.db"
test "$(sqlite3 "$work/py-restored.db" 'pragma integrity_check')" = ok
echo "installed preload library: python3's sqlite3 writer took part in a backup"
echo "find_package(cowbackup): ok"
