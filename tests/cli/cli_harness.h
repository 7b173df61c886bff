// Test helpers for driving build/cowbackup: run a command line through
// /bin/sh and capture exit code, stdout and stderr; build archives with the
// engine directly (ArchiveWriter) from real SQLite databases and LMDB
// environments; check --json output with Debian's python3 json module.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <lmdb.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backup/archive_writer.h"
#include "backup/format.h"
#include "backup/output.h"
#include "engine/encoding.h"
#include "test_util/files.h"

namespace cowbackup::clitest {

using test::ReadFile;
using test::TempDir;
using test::WriteFile;

struct Result {
  int code = -1;
  std::string out, err;
  // Number of lines on stderr.
  size_t err_lines() const {
    size_t n = 0;
    for (char c : err) n += c == '\n';
    return n;
  }
};

inline std::string Binary() {
  const char* dir = getenv("COWBACKUP_BUILD_DIR");
  return std::string(dir ? dir : ".") + "/cowbackup";
}

inline std::string SourceDir() {
  const char* dir = getenv("COWBACKUP_SOURCE_DIR");
  return dir ? dir : ".";
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Single quotes for /bin/sh.
inline std::string Sh(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// A fresh directory per test, removed afterwards.
class CliTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Runs `cowbackup <args>` (args are shell text) with stdout and stderr
  // captured; `env` is prepended ("VAR=x ").
  Result Cow(const std::string& args, const std::string& env = "") {
    return Shell(env + Sh(Binary()) + " " + args);
  }
  Result Shell(const std::string& command) {
    const std::string out = Path(".stdout"), err = Path(".stderr");
    const std::string full = "(" + command + ") >" + Sh(out) + " 2>" + Sh(err) + " </dev/null";
    const int status = system(full.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = ReadFile(out);
    r.err = ReadFile(err);
    unlink(out.c_str());
    unlink(err.c_str());
    return r;
  }
  // Entries of the test directory (or `sub`), hidden capture files excluded.
  std::vector<std::string> Entries(const std::string& sub = "") {
    Result r = Shell("ls -A " + Sh(sub.empty() ? dir_ : Path(sub)));
    std::vector<std::string> names;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
      if (line != ".stdout" && line != ".stderr") names.push_back(line);
    }
    return names;
  }

  // Checks `json` parses strictly with python3 and that the Python
  // expression `expr` (over the parsed value `d`) is true.
  void ExpectJson(const std::string& json, const std::string& expr) {
    const std::string file = Path(".json");
    WriteFile(file, json);
    const std::string py =
        "import json,sys\n"
        "def strict(x): raise ValueError('non-standard constant ' + x)\n"
        "d = json.load(open(sys.argv[1]), parse_constant=strict)\n"
        "ok = (" + expr + ")\n"
        "sys.exit(0 if ok else 3)\n";
    Result r = Shell("/usr/bin/python3 -c " + Sh(py) + " " + Sh(file));
    EXPECT_EQ(r.code, 0) << "JSON check failed: " << expr << "\n" << json << r.err;
    unlink(file.c_str());
  }

  const TempDir tmp_{"cowbackup-cli-test"};
  const std::string dir_ = tmp_.path();
};

// ---- Databases ----

// A SQLite database with `rows` rows of ~300 bytes each (several pages).
inline void MakeSqliteDb(const std::string& path, int rows, int page_size = 4096) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const std::string sql =
      "PRAGMA page_size=" + std::to_string(page_size) +
      "; PRAGMA journal_mode=DELETE;"
      "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
      "CREATE INDEX t_v ON t(v);"
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<" +
      std::to_string(rows) + ") INSERT INTO t SELECT i, printf('%0300d', i) FROM c;";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

inline int64_t SqliteCount(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return -1;
  }
  sqlite3_stmt* st = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    n = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// The first column of the first row of `sql` as text ("" if none, or
// "error: MESSAGE").
inline std::string SqliteText(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    return std::string("error: ") + sqlite3_errmsg(db);
  }
  std::string out;
  const int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    out = t != nullptr ? reinterpret_cast<const char*>(t) : "";
  } else if (rc != SQLITE_DONE) {
    out = std::string("error: ") + sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  return out;
}

// Every row of MakeSqliteDb's table t, in id order, as one string.
inline std::string SqliteDump(sqlite3* db) {
  return SqliteText(db, "SELECT group_concat(id || '=' || v, ',') FROM (SELECT * FROM t ORDER BY id)");
}

// An LMDB environment in `dir`: `main_items` plain items in the main
// database and two named databases ("alpha", "beta") of `named_items` each.
// Returns the page size.
inline uint32_t MakeLmdbEnv(const std::string& dir, int main_items, int named_items) {
  mkdir(dir.c_str(), 0700);
  MDB_env* env = nullptr;
  EXPECT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 4);
  mdb_env_set_mapsize(env, 64 << 20);
  EXPECT_EQ(mdb_env_open(env, dir.c_str(), 0, 0600), 0);
  MDB_txn* txn = nullptr;
  EXPECT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi main_dbi, a, b;
  EXPECT_EQ(mdb_dbi_open(txn, nullptr, 0, &main_dbi), 0);
  EXPECT_EQ(mdb_dbi_open(txn, "alpha", MDB_CREATE, &a), 0);
  EXPECT_EQ(mdb_dbi_open(txn, "beta", MDB_CREATE, &b), 0);
  const auto put = [&](MDB_dbi dbi, const std::string& k, const std::string& v) {
    MDB_val key{k.size(), const_cast<char*>(k.data())}, val{v.size(), const_cast<char*>(v.data())};
    EXPECT_EQ(mdb_put(txn, dbi, &key, &val, 0), 0);
  };
  for (int i = 0; i < main_items; i++) put(main_dbi, "m" + std::to_string(i), std::string(100, 'x'));
  for (int i = 0; i < named_items; i++) {
    put(a, "a" + std::to_string(i), std::string(200, 'a'));
    put(b, "b" + std::to_string(i), std::string(50, 'b'));
  }
  EXPECT_EQ(mdb_txn_commit(txn), 0);
  MDB_stat st;
  mdb_env_stat(env, &st);
  mdb_env_close(env);
  return st.ms_psize;
}

// ---- Archives built with the engine directly ----

struct ArchiveSpec {
  format::SourceKind kind = format::SourceKind::kSqlite;
  uint32_t page_size = 4096;
  std::string metadata = format::MetaLine("source", "test.db") + format::MetaLine("tool", "cli_test");
  // Written as page records; `overlays` (T0 pre-images) follow them.
  std::map<uint64_t, std::string> overlays;
};

// Frames `image` (a whole number of pages) as an archive at `path`.
inline void WriteArchive(const std::string& path, const std::string& image,
                         const ArchiveSpec& spec = {}) {
  ASSERT_EQ(image.size() % spec.page_size, 0u);
  format::Header h;
  h.source_kind = spec.kind;
  h.page_size = spec.page_size;
  h.page_count = image.size() / spec.page_size;
  h.created_unix_us = 1700000000123456ull;
  h.metadata = spec.metadata;
  std::unique_ptr<AtomicFile> file;
  ASSERT_TRUE(AtomicFile::Create(path, true, &file).ok());
  ArchiveWriter writer(h, std::move(file));
  const auto* pages = reinterpret_cast<const uint8_t*>(image.data());
  ASSERT_TRUE(writer.put_run(0, pages, h.page_count).ok());
  for (const auto& [pgno, page] : spec.overlays) {
    ASSERT_EQ(page.size(), spec.page_size);
    ASSERT_TRUE(writer.put_overlay(pgno, reinterpret_cast<const uint8_t*>(page.data())).ok());
  }
  Progress final;
  final.pages_total = final.pages_done = h.page_count;
  final.pages_preserved = spec.overlays.size();
  ASSERT_TRUE(writer.finish(final).ok());
}

// Offset of page `pgno`'s record in an archive without overlays.
inline uint64_t RecordOffset(const std::string& archive_bytes, uint64_t pgno, uint32_t page_size) {
  const uint64_t header = DecodeFixed32(reinterpret_cast<const uint8_t*>(archive_bytes.data()) +
                                        format::kOffHeaderSize);
  return header + pgno * (format::kRecordOverhead + page_size);
}

}  // namespace cowbackup::clitest
