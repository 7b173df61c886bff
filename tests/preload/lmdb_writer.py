# An LMDB writer that knows nothing of cowbackup: Debian's /usr/bin/python3
# and python3-lmdb (which links liblmdb.so.0) only.
# tests/preload/preload_lmdb_test.cc runs it under
# LD_PRELOAD=build/libcowbackup_preload.so.
#
#   /usr/bin/python3 lmdb_writer.py init ENV BULK
#   /usr/bin/python3 lmdb_writer.py run ENV STOPFILE plain|fork|reopen|writemap
#
# init (without the library): the environment with BULK static records of
#   1500 bytes and counter = 0, in one txn.
# run: commits until STOPFILE exists, then exits 0 (any error: stderr,
#   exit 1). Commit K (counter K-1 -> K) writes counter = K, seq/K = K and
#   fill/(K*7919 % 500) = K, padded to 200 bytes: the state after commit K
#   is a function of K alone (the test's Model), whichever process made it.
#   fork: commits once, forks; the parent goes on with its env, the child
#         opens its own (LMDB's rule across fork) and both commit.
#   reopen: closes and reopens the env every 10 commits.
#   writemap: the env opened with MDB_WRITEMAP.
import os
import sys
import time

import lmdb

MAP = 1 << 30


def pad(k):
    return (b"%d" % k).ljust(200, b".")


def commit(env):
    with env.begin(write=True) as t:
        k = int(t.get(b"counter")) + 1
        t.put(b"counter", b"%d" % k)
        t.put(b"seq/%08d" % k, pad(k))
        t.put(b"fill/%04d" % (k * 7919 % 500), pad(k))


def loop(env, stop):
    while not os.path.exists(stop):
        commit(env)
        time.sleep(0.0005)


def main():
    import signal
    signal.alarm(900)  # never outlive a broken test
    if sys.argv[1] == "init":
        env = lmdb.open(sys.argv[2], map_size=MAP)
        with env.begin(write=True) as t:
            for i in range(int(sys.argv[3])):
                t.put(b"bulk/%05d" % i, (b"b%05d" % i) * 250)
            t.put(b"counter", b"0")
        env.close()
        return 0
    path, stop, mode = sys.argv[2], sys.argv[3], sys.argv[4]
    try:
        env = lmdb.open(path, map_size=MAP, writemap=(mode == "writemap"))
        if mode == "fork":
            commit(env)
            pid = os.fork()
            if pid == 0:
                try:
                    loop(lmdb.open(path, map_size=MAP), stop)
                except Exception as e:
                    sys.stderr.write("child: %r\n" % e)
                    os._exit(1)
                os._exit(0)
            loop(env, stop)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                sys.stderr.write("child ended with status %d\n" % status)
                return 1
        elif mode == "reopen":
            n = 0
            while not os.path.exists(stop):
                commit(env)
                n += 1
                if n % 10 == 0:
                    env.close()
                    env = lmdb.open(path, map_size=MAP)
                time.sleep(0.0005)
        else:
            loop(env, stop)
        env.close()
    except Exception as e:
        sys.stderr.write("writer: %r\n" % e)
        return 1
    return 0


sys.exit(main())
