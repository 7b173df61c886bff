# A writer process of the multi-process tests (issue 12), in Debian's
# /usr/bin/python3 with build/cowbackup.so loaded: the python twin of
# tests/sqlite/mp_writer.cc, with the same command line (but the shared
# object's path for "shim"), commands and report lines; that file's
# comment is the specification.
#
#   /usr/bin/python3 mp_writer.py SO|- DB ID commit|spill delete|truncate|persist|wal
#
# SO: build/cowbackup, loaded into a bootstrap connection; the extension
# makes the cowbackup VFS the default (sql/extension.cc), so the database,
# opened afterwards the ordinary way, goes through it: a participant.
# "-": the plain sqlite3 module, nothing of cowbackup: a non-participant.
import json
import os
import random
import sqlite3
import sys
import threading
import time

out_lock = threading.Lock()
stop = threading.Event()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def one_line(s):
    return str(s).replace("\n", " ").replace("\r", " ")


def open_db(path, journal):
    c = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    c.execute("PRAGMA synchronous = OFF")  # see mp_writer.cc
    if journal != "wal":
        c.execute("PRAGMA journal_mode = " + journal).fetchall()
    return c


def committer(c, wid):
    rows = c.execute("SELECT max(id) FROM filler").fetchone()[0]
    r = "abs(random()) %% %d + 1" % rows
    while not stop.is_set():
        t_begin = time.monotonic_ns()
        try:
            c.execute("BEGIN IMMEDIATE")
            t_locked = time.monotonic_ns()
            c.execute("INSERT INTO log SELECT n + 1, ?, randomblob(64) FROM counter WHERE id = 1", (wid,))
            c.execute("UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1")
            c.execute("UPDATE filler SET data = randomblob(length(data)) WHERE id IN (%s, %s, %s, %s)" % (r, r, r, r))
            seq = c.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]
            c.execute("COMMIT")
        except Exception as e:
            try:
                c.execute("ROLLBACK")
            except Exception:
                pass
            say("E " + one_line(repr(e)))
        else:
            say("C %d %d %d %d" % (seq, t_begin, t_locked, time.monotonic_ns()))
        time.sleep(0.001)


def spiller(c):
    rows = c.execute("SELECT max(id) FROM filler").fetchone()[0]
    c.execute("PRAGMA cache_size = 8")
    n = 0
    while not stop.is_set():
        n += 1
        first = random.randint(1, max(1, rows - 199))
        t_begin = time.monotonic_ns()
        t_locked = t_begin
        error = None
        try:
            c.execute("BEGIN IMMEDIATE")
            t_locked = time.monotonic_ns()
            c.execute("UPDATE filler SET data = CAST(replace(hex(zeroblob(length(data) / 4)), '00', 'SPIL') "
                      "AS BLOB) WHERE id BETWEEN ? AND ?", (first, first + 199))
        except Exception as e:
            error = e
        time.sleep(0.005)  # the spilled pages stay in the file a while
        try:
            c.execute("ROLLBACK")
        except Exception as e:
            error = error or e
        if error is not None:
            say("E " + one_line(repr(error)))
        else:
            say("P %d %d %d %d" % (n, t_begin, t_locked, time.monotonic_ns()))
        time.sleep(0.002)


def run_backup(c, args):
    dest, fmt, variant, max_rate, segment_pages = args
    options = {"format": fmt, "variant": variant, "max_rate_mb": float(max_rate), "overwrite": True,
               "busy_timeout_ms": 60000}
    if int(segment_pages) > 0:
        options["segment_pages"] = int(segment_pages)
    t_call = time.monotonic_ns()
    try:
        summary = c.execute("SELECT cowbackup(?, 'main', ?)", (dest, json.dumps(options))).fetchone()[0]
        result = "ok " + one_line(summary)
    except Exception as e:
        result = "error " + one_line(e)
    say("B %d %d %s" % (t_call, time.monotonic_ns(), result))


def main():
    if len(sys.argv) != 6:
        sys.stderr.write("usage: mp_writer.py SO|- DB ID commit|spill delete|truncate|persist|wal\n")
        sys.exit(2)
    so, path, wid, mode, journal = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    import signal
    signal.alarm(900)  # never outlive a broken test (ctest's timeout)
    if so != "-":
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(so)
        boot.close()
    c = open_db(path, journal)
    say("R %d" % os.getpid())
    t = threading.Thread(target=spiller if mode == "spill" else committer,
                         args=(c,) if mode == "spill" else (c, wid))
    t.start()
    backup_conn = None
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        words = line.split()
        if not words:
            continue
        if words[0] == "stop":
            break
        if words[0] == "backup":
            if backup_conn is None:
                backup_conn = open_db(path, journal)
            run_backup(backup_conn, words[1:])
    stop.set()
    t.join()
    if backup_conn is not None:
        backup_conn.close()
    c.close()
    say("S")


main()
