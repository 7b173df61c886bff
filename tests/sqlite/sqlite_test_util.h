// Helpers for the SQLite tests: SQL one-liners, the extension loader,
// restore, and the committed-prefix workload shared by the torture and
// client tests. Scratch directories and whole files: test_util/files.h.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "backup/restore.h"
#include "backup/wal_format.h"
#include "test_util/files.h"
#include "test_util/long_run.h"

namespace cowbackup::testing {

using test::LongRun;
using test::ReadFile;
using test::TempDir;
using test::WriteFile;

// Sanitizer builds run the same tests with less work.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int kScale = 4;
#else
inline constexpr int kScale = 1;
#endif

using test::BuildDir;

inline sqlite3* Open(const std::string& path, const char* vfs = nullptr) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, vfs);
  EXPECT_EQ(rc, SQLITE_OK) << path << ": " << (db ? sqlite3_errmsg(db) : "?");
  sqlite3_busy_timeout(db, 10000);
  return db;
}

// Runs `sql`; returns "" on success or the error message.
inline std::string Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = rc == SQLITE_OK ? "" : (err ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  return msg;
}

// First column of the first row as text; *error gets the message on failure.
// Creates table t(id, v) with `rows` rows of `bytes` random bytes; returns
// the error, empty on success.
inline std::string MakeTable(sqlite3* db, int rows, int bytes = 1000) {
  return Exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
                  "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < " +
                      std::to_string(rows) + ") INSERT INTO t SELECT i, randomblob(" +
                      std::to_string(bytes) + ") FROM c");
}

inline std::string Query(sqlite3* db, const std::string& sql, std::string* error = nullptr) {
  sqlite3_stmt* st = nullptr;
  std::string out;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      rc = SQLITE_OK;
    }
  }
  std::string msg = rc == SQLITE_OK ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(st);
  if (error) {
    *error = msg;
  } else {
    EXPECT_EQ(msg, "") << sql;
  }
  return out;
}

inline int64_t QueryInt(sqlite3* db, const std::string& sql) {
  return std::stoll("0" + Query(db, sql));
}

// A database at `path` (opened through the default VFS) in `journal_mode`
// with table t of `rows` rows of ~1 KiB (MakeTable). In WAL mode a second
// commit rewrites every 11th row, so the newest frames in the WAL are not
// yet in the file (a big MakeTable commit passed the autocheckpoint, which
// copied it there; the second commit then restarts the WAL).
inline sqlite3* MakeDbInMode(const std::string& path, int rows, const std::string& journal_mode) {
  sqlite3* db = Open(path);
  EXPECT_EQ(Exec(db, "PRAGMA journal_mode=" + journal_mode), "");
  EXPECT_EQ(MakeTable(db, rows), "");
  if (journal_mode == "WAL") {
    EXPECT_EQ(Query(db, "PRAGMA journal_mode"), "wal");
    EXPECT_EQ(Exec(db, "UPDATE t SET v = randomblob(1000) WHERE id % 11 = 0"), "");
  }
  return db;
}

inline std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

// Loads build/cowbackup.so once into this process (through a bootstrap
// connection, which then closes: the extension stays, permanently).
inline void LoadExtension() {
  static bool loaded = [] {
    sqlite3* db = nullptr;
    sqlite3_open(":memory:", &db);
    sqlite3_enable_load_extension(db, 1);
    char* err = nullptr;
    const std::string so = BuildDir() + "/cowbackup";
    const int rc = sqlite3_load_extension(db, so.c_str(), nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
    return rc == SQLITE_OK;
  }();
  ASSERT_TRUE(loaded);
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

inline mode_t Mode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

inline Status RestoreTo(const std::string& archive, const std::string& out) {
  return RestoreArchive(archive, out, /*force=*/true);
}

// Copies `from` to `to` in a child process (cp), so that no descriptor of
// `from` is opened and closed in this one: closing any descriptor of a
// file drops every POSIX lock the process holds on it (os_unix.c, "Posix
// Advisory Locking"), among them the SHARED lock each WAL-mode connection
// keeps on its database. Returns false if `from` does not exist.
inline bool CopyInChild(const std::string& from, const std::string& to) {
  if (!Exists(from)) return false;
  const std::string command = "cp -- '" + from + "' '" + to + "'";
  EXPECT_EQ(from.find('\''), std::string::npos) << from;
  EXPECT_EQ(system(command.c_str()), 0) << command;
  return true;
}

// The file a backup taken now must restore to, in any journal mode: the
// database file itself; in WAL mode, its main file and -wal copied aside
// and checkpointed by SQLite (plain unix VFS), i.e. what a TRUNCATE
// checkpoint at this instant would leave (docs/SQLITE.md; wal_image_test
// shows cowbackup's image is that, byte for byte). Nothing may write the
// database meanwhile. The live files are read by CopyInChild only.
inline std::string ImageNow(const std::string& path) {
  TempDir dir("cowbackup-image");
  const std::string copy = dir / "image.db";
  CopyInChild(path, copy);
  const std::string main = ReadFile(copy);
  const bool wal = main.size() >= 100 && main[18] == 2;
  if (!wal || !CopyInChild(path + "-wal", copy + "-wal")) return main;
  sqlite3* db = Open(copy, "unix");
  EXPECT_EQ(Query(db, "PRAGMA wal_checkpoint(TRUNCATE)"), "0");  // busy = 0
  EXPECT_EQ(sqlite3_close(db), SQLITE_OK);
  return ReadFile(copy);
}

// The committed-prefix workload: each commit appends seq = n+1 to log and
// adds it to the counter row, and rewrites a random filler row so pages all
// over the file change. A copy is consistent iff log holds exactly 1..K and
// counter = (K, K(K+1)/2).
inline void CreateWorkload(sqlite3* db, int filler_rows, int filler_bytes) {
  ASSERT_EQ(Exec(db,
                 "CREATE TABLE log(seq INTEGER PRIMARY KEY, writer INT, pad BLOB);"
                 "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INT, sum INT);"
                 "INSERT INTO counter VALUES(1, 0, 0);"
                 "CREATE TABLE filler(id INTEGER PRIMARY KEY, data BLOB);"),
            "");
  ASSERT_EQ(Exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < " +
                         std::to_string(filler_rows) +
                         ") INSERT INTO filler SELECT i, randomblob(" +
                         std::to_string(filler_bytes) + ") FROM c"),
            "");
}

struct CommitCounters {
  std::atomic<int64_t> started{0};   // transactions begun (upper bound on K)
  std::atomic<int64_t> finished{0};  // COMMITs returned (lower bound on K)
};

// One workload commit; false (with *error) if it failed.
inline bool CommitOne(sqlite3* db, int writer, int filler_rows, CommitCounters* c, std::string* error) {
  c->started.fetch_add(1);
  std::string e = Exec(db,
                       "BEGIN IMMEDIATE;"
                       "INSERT INTO log SELECT n + 1, " + std::to_string(writer) +
                           ", randomblob(50) FROM counter WHERE id = 1;"
                           "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1;"
                           "UPDATE filler SET data = randomblob(length(data)) WHERE id = "
                           "abs(random()) % " + std::to_string(filler_rows) + " + 1;"
                           "COMMIT;");
  if (!e.empty()) {
    Exec(db, "ROLLBACK");
    *error = e;
    return false;
  }
  c->finished.fetch_add(1);
  return true;
}

// PRAGMA integrity_check's first row ("ok" when the database is sound), or
// the error that stopped it.
inline std::string IntegrityCheck(sqlite3* db) {
  std::string error;
  const std::string result = Query(db, "PRAGMA integrity_check", &error);
  return error.empty() ? result : error;
}

// Integrity and the committed-prefix invariant of a database file (log
// holds exactly 1..K, seq being the primary key; counter = (K, K(K+1)/2)),
// opened with the plain unix VFS. SQLITE_OPEN_READWRITE lets it roll back a
// hot journal first. Returns K, or -1 with *why saying what is wrong.
inline int64_t CommittedPrefix(const std::string& path, std::string* why,
                               int open_flags = SQLITE_OPEN_READONLY) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, open_flags, "unix") != SQLITE_OK) {
    *why = "cannot open " + path;
    sqlite3_close(db);
    return -1;
  }
  sqlite3_busy_timeout(db, 5000);
  // One read transaction: a live WAL database changes between statements.
  EXPECT_EQ(Exec(db, "BEGIN"), "");
  const std::string integrity = IntegrityCheck(db);
  const int64_t count = QueryInt(db, "SELECT count(*) FROM log");
  const int64_t max = QueryInt(db, "SELECT coalesce(max(seq), 0) FROM log");
  const int64_t n = QueryInt(db, "SELECT n FROM counter");
  const int64_t sum = QueryInt(db, "SELECT sum FROM counter");
  Exec(db, "COMMIT");
  sqlite3_close(db);
  why->clear();
  if (integrity != "ok") *why = "integrity_check: " + integrity;
  if (count != max || n != count || sum != count * (count + 1) / 2) {
    *why += " not a committed prefix: count " + std::to_string(count) + ", max " +
            std::to_string(max) + ", n " + std::to_string(n) + ", sum " + std::to_string(sum);
  }
  return why->empty() ? count : -1;
}

// Everything a database holds, as text: sqlite_schema and every table's
// rows in rowid order, each value tagged with its type (blobs in hex). Read
// through a fresh read-only connection of the plain unix VFS, so it is the
// database as SQLite itself sees it (WAL frames and recovery included). Two
// databases with equal dumps hold the same data. Not for WITHOUT ROWID
// tables. "" with *error set if the database cannot be read.
inline std::string Dump(const std::string& path, std::string* error) {
  sqlite3* db = nullptr;
  std::string out;
  *error = "";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, "unix") != SQLITE_OK) {
    *error = "cannot open " + path;
    sqlite3_close(db);
    return "";
  }
  sqlite3_busy_timeout(db, 5000);
  auto rows = [&](const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(st); i++) {
        const int type = sqlite3_column_type(st, i);
        out += "?IFTBN"[type];  // SQLITE_INTEGER = 1 .. SQLITE_NULL = 5
        if (type == SQLITE_BLOB) {
          const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, i));
          for (int k = 0; k < sqlite3_column_bytes(st, i); k++) {
            out += "0123456789abcdef"[p[k] >> 4];
            out += "0123456789abcdef"[p[k] & 15];
          }
        } else if (type != SQLITE_NULL) {
          out += reinterpret_cast<const char*>(sqlite3_column_text(st, i));
        }
        out += '\t';
      }
      out += '\n';
      rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE && error->empty()) *error = sql + ": " + sqlite3_errmsg(db);
    sqlite3_finalize(st);
  };
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);  // one snapshot
  rows("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name");
  std::vector<std::string> tables;
  {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name", -1,
                       &st, nullptr);
    while (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
      tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    }
    sqlite3_finalize(st);
  }
  for (const std::string& t : tables) {
    out += "table " + t + "\n";
    char* sql = sqlite3_mprintf("SELECT * FROM \"%w\" ORDER BY rowid", t.c_str());
    rows(sql);
    sqlite3_free(sql);
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return error->empty() ? out : "";
}

// What WAL recovery would take from `path`-wal as it is on disk now
// (backup/wal_format.h): its mxFrame, the valid frames (committed or not)
// and each page's newest committed frame. A missing -wal is an empty WAL.
inline sqlite::WalScan ScanWalFile(const std::string& path) {
  const std::vector<uint8_t> wal = ReadFile<std::vector<uint8_t>>(path + "-wal");
  sqlite::WalScan scan;
  const Status s = sqlite::ScanWal(wal.data(), wal.size(), &scan);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return scan;
}

// CommittedPrefix of a restored copy, with lo <= K <= hi. Returns K, or -1
// after reporting a failure.
inline int64_t CheckPrefix(const std::string& path, int64_t lo, int64_t hi) {
  std::string why;
  const int64_t k = CommittedPrefix(path, &why);
  EXPECT_EQ(why, "") << path;
  if (k < 0) return -1;
  EXPECT_GE(k, lo) << path;
  EXPECT_LE(k, hi) << path;
  return k >= lo && k <= hi ? k : -1;
}

}  // namespace cowbackup::testing
