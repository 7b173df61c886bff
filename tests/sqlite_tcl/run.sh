#!/usr/bin/env bash
# SQLite's own TCL tests through the cowbackup shim VFS, side by side with
# the plain unix VFS (issue 11, "SQLite's own tests through the shim").
#
#   bash tests/sqlite_tcl/run.sh [TEST...]      (make test-sqlite-tcl)
#   bash tests/sqlite_tcl/run.sh --report [TEST...]   the table of the last run
#
# TEST names files of SQLite's test/ directory (globs allowed, e.g. 'wal*');
# the default is wal* pager* journal* lock* savepoint* ioerr*.
#
# What it does:
#   1. fetches Debian's source package of the installed SQLite
#      (`apt-get source sqlite3=<version of libsqlite3-0>`) into
#      $COWBACKUP_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/cowbackup),
#      adding deb-src entries that mirror the machine's Debian deb entries if
#      it has none;
#   2. builds the project's cowbackup_vfs library in $BUILD (default build/)
#      and, in $BUILD/sqlite-tcl/, SQLite's testfixture with
#      -DSQLITE_EXTRA_INIT=cowbackup_testfixture_init (testfixture_init.cc)
#      and our static libraries on its link line, without libsqlite3: the
#      shim's sqlite3_* calls resolve to testfixture's own SQLite;
#   3. runs every file twice, once with the shim as the default VFS and once
#      with COWBACKUP_TESTFIXTURE_VFS=unix (same binary), JOBS at a time,
#      each in its own directory under $BUILD/sqlite-tcl/run/, each with a
#      timeout of SQLITE_TCL_TIMEOUT seconds (default 900); with
#      SQLITE_TCL_BACKUPS=1 a third time, with a throttled backup started
#      whenever a connection opens test.db (testfixture_init.cc);
#   4. prints "errors/tests" per file and column. A file that fails through
#      the shim in a way it does not through unix (a test name, a crash, a
#      timeout, a leak or an open file), or with backups in a way it does
#      not without, is run once more in every column: failing again is a
#      finding and the script exits 1; passing is reported as flaky.
#
# The Debian packages it needs (tcl8.6-dev, dpkg-dev, ...) are installed by
# `make test-sqlite-tcl`; run directly, it names the missing ones.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SELF=$ROOT/tests/sqlite_tcl/run.sh

# ---- one test file in one mode (run by xargs below) ----
if [ "${1:-}" = --run-one ]; then
  mode=$2 test=$3 dir=$4 testfixture=$5 timeout_s=$6
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  vfs=cowbackup backups=""
  [ "$mode" = unix ] && vfs=unix
  [ "$mode" = backup ] && backups=$dir/backups && mkdir "$backups"
  start=$(date +%s)
  rc=0
  COWBACKUP_TESTFIXTURE_VFS=$vfs COWBACKUP_TESTFIXTURE_BACKUP=$backups timeout -k 10 "$timeout_s" \
    "$testfixture" "$test" >log 2>&1 </dev/null || rc=$?
  echo "$rc $(( $(date +%s) - start ))" >rc
  exit 0
fi

REPORT_ONLY=0
if [ "${1:-}" = --report ]; then REPORT_ONLY=1; shift; fi
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
JOBS=${JOBS:-2}
TIMEOUT_S=${SQLITE_TCL_TIMEOUT:-900}
CACHE=${COWBACKUP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cowbackup}
OUT=$BUILD/sqlite-tcl
SUDO=$( [ "$(id -u)" -eq 0 ] || echo sudo )
t_start=$(date +%s)

missing=$(for p in tcl8.6-dev dpkg-dev xz-utils zlib1g-dev gcc make; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "sqlite-tcl: missing Debian packages:" $missing "(make test-sqlite-tcl installs them)" >&2
  exit 2
fi

# ---- 1. the source package of the installed SQLite ----
src_pkg=$(dpkg-query -W -f='${source:Package}' libsqlite3-0)
src_ver=$(dpkg-query -W -f='${source:Version}' libsqlite3-0)
upstream_ver=${src_ver%-*}
upstream_ver=${upstream_ver#*:}
SRC=$CACHE/${src_pkg}_$src_ver/$src_pkg-$upstream_ver

# deb-src stanzas mirroring the machine's Debian "deb" entries, so that
# `apt-get source` finds the package the installed SQLite came from.
add_deb_src() {
  local name=/etc/apt/sources.list.d/cowbackup-deb-src f stanzas="" lines=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && [ "$f" != "$name.sources" ] || continue
    stanzas+=$(awk 'BEGIN { RS = ""; ORS = "\n\n" }
      /(^|\n)Types:[^\n]*deb( |\n|$)/ && /(^|\n)URIs:[^\n]*debian\.org/ {
        sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f")$'\n\n'
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && [ "$f" != "$name.list" ] || continue
    lines+=$(sed -n 's/^deb \(.*debian\.org.*\)/deb-src \1/p' "$f")$'\n'
  done
  if [ -n "${stanzas//$'\n'/}" ]; then printf '%s' "$stanzas" | $SUDO tee "$name.sources" >/dev/null; fi
  if [ -n "${lines//$'\n'/}" ]; then printf '%s' "$lines" | $SUDO tee "$name.list" >/dev/null; fi
  $SUDO apt-get update -qq
}

if [ ! -f "$SRC/test/tester.tcl" ]; then
  if ! apt-get source --print-uris -qq "$src_pkg=$src_ver" >/dev/null 2>&1; then
    echo "sqlite-tcl: adding deb-src entries for apt-get source"
    add_deb_src
  fi
  echo "sqlite-tcl: apt-get source $src_pkg=$src_ver into $CACHE"
  tmp=$CACHE/.fetch.$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$tmp" && apt-get source -qq "$src_pkg=$src_ver" >fetch.log 2>&1) ||
    { cat "$tmp/fetch.log" >&2; exit 1; }
  rm -rf "$CACHE/${src_pkg}_$src_ver"
  mv "$tmp" "$CACHE/${src_pkg}_$src_ver"
fi

# ---- 2. the shim library and testfixture ----
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -j"$JOBS" --target cowbackup_vfs -- --no-print-directory >/dev/null
LIBS=("$BUILD/vfs/libcowbackup_vfs.a" "$BUILD/backup/libcowbackup_backup.a"
      "$BUILD/engine/libcowbackup_engine.a")

mkdir -p "$OUT/bld"
if [ ! -f "$OUT/bld/Makefile" ] || [ "$OUT/bld/Makefile" -ot "$SRC/configure" ]; then
  (cd "$OUT/bld" && "$SRC/configure" --with-tcl="/usr/lib/$(gcc -print-multiarch)/tcl8.6" \
      CFLAGS=-O2 >configure.log 2>&1) || { cat "$OUT/bld/configure.log" >&2; exit 1; }
fi
init_o=$OUT/bld/cowbackup_testfixture_init.o
g++ -std=c++20 -O2 -g -Wall -Wextra -Werror -I"$ROOT" -I"$ROOT/include" \
  -c "$ROOT/tests/sqlite_tcl/testfixture_init.cc" -o "$init_o.new"
cmp -s "$init_o.new" "$init_o" && rm "$init_o.new" || mv "$init_o.new" "$init_o"
testfixture=$OUT/bld/testfixture
for dep in "$init_o" "${LIBS[@]}"; do
  [ "$dep" -nt "$testfixture" ] && rm -f "$testfixture"
done
if [ ! -x "$testfixture" ]; then
  echo "sqlite-tcl: building testfixture ($src_pkg $src_ver, shim linked in)"
  (cd "$OUT/bld" && make testfixture \
      OPTS=-DSQLITE_EXTRA_INIT=cowbackup_testfixture_init \
      LIBS="$init_o ${LIBS[*]} -lxxhash -lstdc++ -lpthread" >make.log 2>&1) ||
    { tail -40 "$OUT/bld/make.log" >&2; exit 1; }
fi
echo 'puts [sqlite3_vfs_list]' >"$OUT/bld/vfs_list.tcl"
vfs_shim=$("$testfixture" "$OUT/bld/vfs_list.tcl" 2>&1)
vfs_unix=$(COWBACKUP_TESTFIXTURE_VFS=unix "$testfixture" "$OUT/bld/vfs_list.tcl" 2>&1)
case "$vfs_shim|$vfs_unix" in
  "cowbackup "*"|unix "*) ;;
  *) echo "sqlite-tcl: testfixture's default VFS is wrong: shim run '$vfs_shim', unix run '$vfs_unix'" >&2
     exit 1 ;;
esac
t_built=$(date +%s)

# ---- 3. run ----
patterns=("$@")
[ ${#patterns[@]} -gt 0 ] || patterns=('wal*' 'pager*' 'journal*' 'lock*' 'savepoint*' 'ioerr*')
tests=()
for p in "${patterns[@]}"; do
  p=${p%.test}
  for f in "$SRC"/test/$p.test; do
    [ -f "$f" ] && tests+=("$(basename "$f" .test)")
  done
done
[ ${#tests[@]} -gt 0 ] || { echo "sqlite-tcl: no test file matches: ${patterns[*]}" >&2; exit 2; }
mapfile -t tests < <(printf '%s\n' "${tests[@]}" | sort -u)

modes=(shim unix)
[ "${SQLITE_TCL_BACKUPS:-0}" = 1 ] && modes+=(backup)

# Longest first (by the previous run's times), so the last minutes do not
# run one long file alone.
order_by_last_run() {
  local t secs
  for t in "$@"; do
    secs=$(cat "$OUT"/run/*/"$t"/rc 2>/dev/null | awk '$2 > m { m = $2 } END { print m + 0 }' || true)
    echo "$secs $t"
  done | sort -k1,1nr -k2 | awk '{ print $2 }'
}

# run_files DIR FILE...: every file in every mode, JOBS at a time.
run_files() {
  local dir=$1 t mode
  shift
  rm -rf "$dir"
  for t in "$@"; do
    for mode in "${modes[@]}"; do
      printf '%s\0' --run-one "$mode" "$SRC/test/$t.test" "$dir/$mode/$t" "$testfixture" "$TIMEOUT_S"
    done
  done | xargs -0 -r -n6 -P"$JOBS" bash "$SELF"
}

[ "$REPORT_ONLY" = 1 ] || echo "sqlite-tcl: running ${#tests[@]} files x {${modes[*]}}, $JOBS at a time"
mapfile -t ordered < <(order_by_last_run "${tests[@]}")
[ ${#ordered[@]} -eq ${#tests[@]} ] || { echo "sqlite-tcl: ordering the files failed" >&2; exit 1; }
if [ "$REPORT_ONLY" = 1 ]; then
  mapfile -t tests < <(for t in "${tests[@]}"; do [ -f "$OUT/run/shim/$t/rc" ] && echo "$t"; done)
  [ ${#tests[@]} -gt 0 ] || { echo "sqlite-tcl: no results in $OUT/run" >&2; exit 2; }
else
  rm -rf "$OUT/rerun"
  run_files "$OUT/run" "${ordered[@]}"
fi
t_ran=$(date +%s)

# ---- 4. the table ----
# result DIR: sets r_count ("errors/tests", "crash rc=N", "timeout"),
# r_fail (failed test names), r_extra (leak, open files), r_secs.
result() {
  local dir=$1 rc=none secs=0 line
  [ -f "$dir/rc" ] && read -r rc secs <"$dir/rc"
  r_secs=$secs r_fail="" r_extra=""
  line=$(grep -E '^[0-9]+ errors out of [0-9]+ tests' "$dir/log" | tail -1 || true)
  if [ "$rc" = none ]; then
    r_count="not run"
    return 0
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    r_count=timeout
  elif [ -z "$line" ]; then
    r_count="crash rc=$rc"
  else
    r_count=$(echo "$line" | awk '{ print $1 "/" $5 }')
  fi
  r_fail=$(sed -n 's/^!Failures on these tests: *//p' "$dir/log" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
  grep -q '^Unfreed memory' "$dir/log" && r_extra+=" leak"
  grep -q 'files were left open' "$dir/log" && r_extra+=" open-files"
  return 0
}

# compare DIR FILE A B: sets c_note to what fails in mode A and not in mode
# B ("" if nothing), c_same to what fails in both, c_artifact to what the
# harness counted against a backup it found running at exit.
compare() {
  local dir=$1 t=$2 a_count a_fail a_extra
  result "$dir/$3/$t"
  a_count=$r_count a_fail=$r_fail a_extra=$r_extra
  result "$dir/$4/$t"
  c_note="" c_same="" c_artifact=""
  local only
  only=$(comm -23 <(tr ' ' '\n' <<<"$a_fail" | sed '/^$/d') <(tr ' ' '\n' <<<"$r_fail" | sed '/^$/d') | tr '\n' ' ')
  if [[ $a_count != */* && $r_count == */* ]]; then
    c_note="$a_count"
  elif [ -n "$only" ]; then
    c_note="${only% }"
  elif [ -n "$a_extra" ] && [ "$a_extra" != "$r_extra" ]; then
    c_note="${a_extra# }"
    # A backup still running (or just ending) when the harness counted open
    # files and memory held a file object and memory of its own
    # (testfixture_init.cc); the shim column checks both without backups.
    if [ "$3" = backup ] && grep -q 'backups started [1-9]' "$dir/$3/$t/backups/outcomes" 2>/dev/null; then
      c_artifact="${a_extra# } (backups ran; not checked in this column)"
      c_note=""
    fi
  fi
  c_same=$(comm -12 <(tr ' ' '\n' <<<"$a_fail" | sed '/^$/d') <(tr ' ' '\n' <<<"$r_fail" | sed '/^$/d') | tr '\n' ' ')
  c_same=${c_same% }
  return 0
}

# Tests that fail with backups for a reason outside SQLite's behaviour
# (testfixture_init.cc, LIMITATIONS): reported, not counted as findings.
declare -A BACKUP_KNOWN=(
  [ioerr2-7.7.3]="the backup's read took the I/O error the test injected"
  [ioerr4-2.1.3]="the backup's read took the I/O error the test injected"
  [wal-23.4]="the test's sqlite3_log callback saw os_unix's 'file unlinked while open' from the backup's file object, closed after the test deleted test.db"
)

# short LIST: at most 6 names, then a count of the rest.
short() {
  local -a names
  read -r -a names <<<"$1"
  if [ ${#names[@]} -le 6 ]; then echo "${names[*]}"; else echo "${names[*]:0:6} (+$(( ${#names[@]} - 6 )) more)"; fi
}

# note_for DIR FILE: the file's note; returns 1 for a finding.
note_for() {
  local dir=$1 t=$2 note="" finding=0
  compare "$dir" "$t" shim unix
  [ -n "$c_note" ] && { note+="shim only: $(short "$c_note"); "; finding=1; }
  [ -n "$c_same" ] && note+="both: $(short "$c_same"); "
  if [[ " ${modes[*]} " == *" backup "* ]]; then
    compare "$dir" "$t" backup shim
    local name rest="" known=""
    for name in $c_note; do
      if [ -n "${BACKUP_KNOWN[$name]:-}" ]; then known+="$name (${BACKUP_KNOWN[$name]}) "; else rest+="$name "; fi
    done
    [ -n "$rest" ] && { note+="with backups only: $(short "$rest"); "; finding=1; }
    [ -n "$known" ] && note+="with backups, known: ${known% }; "
    [ -n "$c_artifact" ] && note+="with backups: $c_artifact; "
  fi
  n_note=${note%; }
  return $finding
}

# A file that fails through the shim (or with backups) only is run once
# more in every mode: failing again is a finding, passing is reported as
# flaky (both logs kept: run/ and rerun/).
rerun=()
for t in "${tests[@]}"; do note_for "$OUT/run" "$t" || rerun+=("$t"); done
if [ ${#rerun[@]} -gt 0 ] && [ "$REPORT_ONLY" = 0 ]; then
  echo "sqlite-tcl: running again: ${rerun[*]}"
  run_files "$OUT/rerun" "${rerun[@]}"
fi

findings=0 flaky=0
printf '\n%-14s' file
for mode in "${modes[@]}"; do printf ' %13s' "$mode"; done
printf ' %6s  %s\n' "secs" "failures (err/tests = errors/tests; secs: the slowest mode)"
for t in "${tests[@]}"; do
  printf '%-14s' "$t"
  max=0
  for mode in "${modes[@]}"; do
    result "$OUT/run/$mode/$t"
    printf ' %13s' "$r_count"
    [ "$r_secs" -gt "$max" ] && max=$r_secs
  done
  if note_for "$OUT/run" "$t"; then
    note=$n_note
  else
    first=$n_note
    if [ ! -f "$OUT/rerun/shim/$t/rc" ]; then
      note="FINDING (not run again): $first"
      findings=$((findings + 1))
    elif note_for "$OUT/rerun" "$t"; then
      note="FLAKY (passed when run again): $first"
      flaky=$((flaky + 1))
    else
      note="FINDING (failed again): $n_note"
      findings=$((findings + 1))
    fi
  fi
  printf ' %6s  %s\n' "$max" "$note"
done
t_end=$(date +%s)
echo
echo "sqlite-tcl: $src_pkg $src_ver; fetch+build $((t_built - t_start)) s, run $((t_end - t_built)) s," \
     "total $((t_end - t_start)) s; logs in $OUT/run/<mode>/<file>/log"
if [[ " ${modes[*]} " == *" backup "* ]]; then
  # testfixture_init.cc's per-process lines, summed over every file.
  cat "$OUT"/run/backup/*/backups/outcomes 2>/dev/null | awk '
    / backups started / { s += $5; d += $7; f += $9; c += $11 }  # "408:" counts as 408
    / failed [0-9]+ x: / { n = $4; sub(/^pid [0-9]+:   failed [0-9]+ x: /, ""); gsub(/[0-9]+/, "N"); fr[$0] += n }
    / not started [0-9]+ x: / { n = $5; sub(/^pid [0-9]+:   not started [0-9]+ x: /, ""); gsub(/[0-9]+/, "N"); nr[$0] += n }
    END {
      printf "sqlite-tcl: backups with the tests: %d started: %d done, %d failed, %d cancelled\n", s, d, f, c
      for (r in fr) printf "sqlite-tcl:   failed %d x: %s\n", fr[r], r
      for (r in nr) printf "sqlite-tcl:   not started %d x: %s\n", nr[r], r
    }' | sort -t: -k1,1 -s
fi
[ "$flaky" -gt 0 ] && echo "sqlite-tcl: $flaky files failed once and passed when run again (logs in $OUT/rerun too)"
if [ "$findings" -gt 0 ]; then
  echo "sqlite-tcl: $findings of ${#tests[@]} files fail through the shim (or with backups) and not without"
  exit 1
fi
echo "sqlite-tcl: ${#tests[@]} files: the shim fails nothing that unix does not"
