# A writer that knows nothing of cowbackup: Debian's /usr/bin/python3 and
# the standard sqlite3 module only. tests/preload/preload_sqlite_test.cc
# runs it under LD_PRELOAD=build/libcowbackup_preload.so.
#
#   /usr/bin/python3 preload_writer.py DB STOPFILE fork|reopen|threads
#
# Commits CreateWorkload's transaction (tests/sqlite/sqlite_test_util.h:
# one log row, the counter, a filler row) until STOPFILE exists, then exits
# 0; any error goes to stderr and the exit status is 1.
#   fork:    opens and commits, then forks; the parent goes on with that
#            connection, the child opens its own (SQLite's rule across fork).
#   reopen:  closes and reopens its connection every 10 commits.
#   threads: three threads, a connection each.
import os
import sqlite3
import sys
import threading
import time

db, stop, mode = sys.argv[1], sys.argv[2], sys.argv[3]
failed = threading.Event()


def connect():
    c = sqlite3.connect(db, isolation_level=None, timeout=60, check_same_thread=False)
    c.execute("PRAGMA synchronous = OFF")
    return c


def commit(c, wid, rows):
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO log SELECT n + 1, ?, randomblob(64) FROM counter WHERE id = 1", (wid,))
    c.execute("UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1")
    c.execute("UPDATE filler SET data = randomblob(length(data)) WHERE id = abs(random()) %% %d + 1" % rows)
    c.execute("COMMIT")


def loop(wid, reopen_every=0, c=None):
    try:
        c = c or connect()
        rows = c.execute("SELECT max(id) FROM filler").fetchone()[0]
        n = 0
        while not os.path.exists(stop):
            commit(c, wid, rows)
            n += 1
            time.sleep(0.001)  # room for the test's reads between commits
            if reopen_every and n % reopen_every == 0:
                c.close()
                c = connect()
        c.close()
    except Exception as e:
        sys.stderr.write("writer %d: %r\n" % (wid, e))
        failed.set()


def main():
    import signal
    signal.alarm(900)  # never outlive a broken test
    if mode == "fork":
        c = connect()
        commit(c, 0, c.execute("SELECT max(id) FROM filler").fetchone()[0])
        pid = os.fork()
        # The parent goes on with the connection it opened before the fork.
        loop(2, c=None) if pid == 0 else loop(1, c=c)
        if pid == 0:
            os._exit(1 if failed.is_set() else 0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            sys.stderr.write("child ended with status %d\n" % status)
            failed.set()
    elif mode == "reopen":
        loop(1, reopen_every=10)
    elif mode == "threads":
        ts = [threading.Thread(target=loop, args=(i,)) for i in (1, 2, 3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        sys.stderr.write("usage: preload_writer.py DB STOPFILE fork|reopen|threads\n")
        sys.exit(2)
    sys.exit(1 if failed.is_set() else 0)


main()
