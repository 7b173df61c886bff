#!/bin/bash
# Runs the C API example (lmdb_c_example.c), which backs up an environment
# while its writer thread commits, then restores the archive with the CLI
# and checks, with Debian's mdb_stat and mdb_dump, that the copy is exactly
# the state after the committed transaction the backup reports:
#
#   lmdb_c_check.sh EXAMPLE CLI WORKDIR
set -euo pipefail
example=$1 cli=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
out=$("$example" "$work/env" "$work/env.cowbak")
echo "$out"
read -r txnid commit during < <(echo "$out" |
  sed -n 's/^backup: txnid \([0-9]*\) commit \([0-9]*\) .* during \([0-9]*\)$/\1 \2 \3/p')
test -n "$commit" || { echo "no backup line" >&2; exit 1; }
# The writer committed while the backup ran: the check is about a copy
# taken under writes, not of a quiet environment.
test "$during" -gt 0 || { echo "no commit during the backup" >&2; exit 1; }

"$cli" restore "$work/env.cowbak" "$work/restored" >/dev/null
mdb_stat -e "$work/restored" | grep -qx "  Last transaction ID: $txnid" ||
  { echo "restored env's last txnid is not $txnid:" >&2; mdb_stat -e "$work/restored" >&2; exit 1; }
# The state after commit N (lmdb_c_example.c): count = N, and key s holds
# the value of the last commit n <= N with n % 2000 == s.
mdb_dump -p "$work/restored" | sed -n '/^HEADER=END$/,/^DATA=END$/p' > "$work/restored.dump"
awk -v N="$commit" 'BEGIN {
  x = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
  x = substr(x x, 1, 80)
  print "HEADER=END"; print " count"; print " " N
  for (s = 0; s < 2000; s++) {
    n = N - ((N - s) % 2000 + 2000) % 2000
    if (n >= 1) { printf " key%05d\n", s; printf " value-%08d-%s\n", n, x }
  }
  print "DATA=END" }' > "$work/expected.dump"
if ! cmp -s "$work/expected.dump" "$work/restored.dump"; then
  echo "restored env differs from the state after commit $commit:" >&2
  diff "$work/expected.dump" "$work/restored.dump" | head -20 >&2
  exit 1
fi
echo "restored: exactly the state after commit $commit (txnid $txnid)"
