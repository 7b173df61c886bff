# A writer process for sqlite_bench's BM_CliUnderWriterProcesses/1: Debian's
# python3 with its standard sqlite3 module, run under the preload library
# (it loads nothing itself), committing the bench's 10-row UPDATE
# transactions without pause. Its counters are the bench's ProcWriters in a
# file both map: int32 phase at 0 (0 run, 1 count, 2 stop), then u64
# commits[4] at 8 and u64 max_ns[4] at 40; this writer writes only its own.
#   /usr/bin/python3 py_update_writer.py COUNTERS DB INDEX ROWS
import mmap
import random
import sqlite3
import struct
import sys
import time

counters, db, i, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(counters, "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
c = sqlite3.connect(db, isolation_level=None, timeout=60)
rng = random.Random(88172645463325252 + i * 7919)
while True:
    phase = struct.unpack_from("<i", m, 0)[0]
    if phase == 2:
        break
    t0 = time.monotonic_ns()
    c.execute("BEGIN IMMEDIATE")
    for _ in range(10):
        c.execute("UPDATE t SET v = randomblob(3900) WHERE id = ?", (rng.randrange(rows) + 1,))
    c.execute("COMMIT")
    if struct.unpack_from("<i", m, 0)[0] == 1:
        ns = time.monotonic_ns() - t0
        struct.pack_into("<Q", m, 8 + 8 * i, struct.unpack_from("<Q", m, 8 + 8 * i)[0] + 1)
        if ns > struct.unpack_from("<Q", m, 40 + 8 * i)[0]:
            struct.pack_into("<Q", m, 40 + 8 * i, ns)
c.close()
