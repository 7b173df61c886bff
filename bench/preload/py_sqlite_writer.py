# A Python sqlite3 writer for bench/preload/preload_bench.cc: N small
# commits (rollback mode, synchronous OFF: the CPU path, not fsync) into a
# fresh database; prints commits per CPU second of the process (user +
# system: less disturbed by other work on the machine than wall time).
#   /usr/bin/python3 py_sqlite_writer.py DB N
import os
import sqlite3
import sys
import time

db, n = sys.argv[1], int(sys.argv[2])
for suffix in ("", "-journal", "-cowbackup"):
    if os.path.exists(db + suffix):
        os.remove(db + suffix)
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA synchronous = OFF")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
t = time.process_time()
for i in range(n):
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))")
    c.execute("COMMIT")
print("%.0f" % (n / (time.process_time() - t)))
