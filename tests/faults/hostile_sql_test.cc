// Hostile SQL against the loaded extension (build/cowbackup.so), beyond the
// safety tests in tests/sqlite/sqlite_sql_test.cc (a view and a trigger
// created in the same process, bad arguments one by one, the database's
// own files as destination):
//   - a database file prepared by someone else, whose schema calls the
//     cowbackup functions from every place a schema can hold an expression
//     (view, trigger, CHECK, DEFAULT, generated column, partial index), is
//     opened by an application that then does ordinary reads and writes:
//     each use is refused (SQLITE_DIRECTONLY) whatever trusted_schema says,
//     and no backup, job or file appears;
//   - options JSON mutated at random (seeded) and a list of tricky literals
//     (huge or non-finite numbers, deep nesting, lone surrogates, NUL,
//     duplicates, trailing garbage): refused with an error that names the
//     JSON or the option, or accepted as a whole; never a crash, never a
//     destination left behind by a refusal;
//   - snapshot_dir that is a file, missing, or the database itself.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <random>

#include "backup/output.h"
#include "faults/page_workload.h"
#include "sqlite/sqlite_test_util.h"

namespace cowbackup::faults {
namespace {

using cowbackup::testing::Exec;
using cowbackup::testing::LoadExtension;
using cowbackup::testing::Query;
using cowbackup::testing::Quote;

class HostileSqlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LoadExtension();
    dir_ = MakeTempDir("cowbackup-hostile-sql");
  }
  void TearDown() override { RemoveTree(dir_); }

  // Opens through the shim (the extension made it the default VFS).
  sqlite3* Open(const std::string& path) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
              SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
  }
  int64_t JobCount(sqlite3* db) { return std::stoll("0" + Query(db, "SELECT count(*) FROM cowbackup_jobs")); }

  std::string dir_;
};

// The hostile file is written by a plain connection of another "party"
// (the unix VFS, functions unknown to it): SQLite stores the schema text
// as given, and resolves the function only when the application uses it.
TEST_F(HostileSqlTest, SchemaThatCallsCowbackupCannotStartABackup) {
  const std::string path = dir_ + "/hostile.db";
  const std::string q = Quote(dir_ + "/stolen");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix"),
              SQLITE_OK);
    // Each object names its own destination so we can tell which fired.
    ASSERT_EQ(Exec(db, "CREATE TABLE t(a);"
                       "CREATE VIEW v1 AS SELECT cowbackup(" + q + " || '-view') AS x;"
                       "CREATE VIEW v2 AS SELECT cowbackup_start(" + q + " || '-start') AS x;"
                       "CREATE VIEW v3 AS SELECT cowbackup_cancel(1) AS x;"
                       "CREATE VIEW v4 AS SELECT cowbackup_wait(1) AS x;"
                       "CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
                       "  SELECT cowbackup(" + q + " || '-trigger', 'main', '{\"overwrite\":true}'); END;"
                       "CREATE TABLE c(a CHECK (cowbackup(" + q + " || '-check') IS NOT NULL));"
                       "CREATE TABLE d(a, b DEFAULT (cowbackup_start(" + q + " || '-default')));"),
              "");
    sqlite3_close(db);
  }
  for (const char* trusted : {"ON", "OFF"}) {
    SCOPED_TRACE(std::string("trusted_schema=") + trusted);
    sqlite3* db = Open(path);
    ASSERT_EQ(Exec(db, std::string("PRAGMA trusted_schema = ") + trusted), "");
    const int64_t jobs_before = JobCount(db);
    for (const std::string sql : {"SELECT * FROM v1", "SELECT * FROM v2", "SELECT * FROM v3",
                                  "SELECT * FROM v4", "INSERT INTO t VALUES(1)",
                                  "INSERT INTO d(a) VALUES(1)"}) {
      const std::string error = Exec(db, sql);
      EXPECT_NE(error.find("unsafe use of cowbackup"), std::string::npos) << sql << " -> " << error;
    }
    // A CHECK constraint is not covered by SQLITE_DIRECTONLY in SQLite 3.40
    // (see CheckConstraintCannotBackUpAnotherSchema); on its own
    // schema the write-transaction guard refuses it.
    const std::string check = Exec(db, "INSERT INTO c VALUES(1)");
    EXPECT_TRUE(check.find("unsafe use of cowbackup") != std::string::npos ||
                check.find("from inside a transaction") != std::string::npos)
        << check;
    EXPECT_EQ(JobCount(db), jobs_before) << "a job was started from the schema";
    // The application's own direct call still works on the same connection.
    EXPECT_NE(Query(db, "SELECT cowbackup(" + Quote(dir_ + "/direct.cowbak") + ")"), "");
    ::unlink((dir_ + "/direct.cowbak").c_str());
    EXPECT_EQ(Query(db, "PRAGMA integrity_check"), "ok");
    EXPECT_EQ(Query(db, "SELECT count(*) FROM t"), "0");
    sqlite3_close(db);
  }
  for (const std::string& name : ListDir(dir_)) {
    EXPECT_EQ(name.rfind("stolen", 0), std::string::npos) << "the schema wrote " << name;
  }
}

// SQLite will not create a generated column or an index expression on a
// non-deterministic function, but a hostile file need not have been made by
// CREATE: an attacker edits the stored schema text. With the extension
// loaded, such a schema does not load at all: every statement fails, and
// nothing is copied anywhere.
TEST_F(HostileSqlTest, EditedSchemaWithGeneratedColumnOrIndexNeverRuns) {
  for (const std::string object : {"g", "px"}) {
    SCOPED_TRACE(object);
    const std::string path = dir_ + "/edited-" + object + ".db";
    {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix"),
                SQLITE_OK);
      ASSERT_EQ(Exec(db, "CREATE TABLE g(a, b AS (abs(a))); CREATE TABLE p(a);"
                         "CREATE INDEX px ON p(abs(a));"
                         "PRAGMA writable_schema = ON;"
                         "UPDATE sqlite_schema SET sql = replace(sql, 'abs(a)', 'cowbackup(''" +
                             dir_ + "/stolen-' || name || ''')') WHERE name = '" + object + "';"
                         "PRAGMA writable_schema = OFF;"),
                "");
      sqlite3_close(db);
    }
    sqlite3* db = Open(path);
    for (const std::string sql : {"INSERT INTO g(a) VALUES(1)", "SELECT b FROM g",
                                  "INSERT INTO p VALUES(1)", "SELECT * FROM p"}) {
      const std::string error = Exec(db, sql);
      EXPECT_TRUE(error.find("non-deterministic functions prohibited") != std::string::npos ||
                  error.find("unsafe use of cowbackup") != std::string::npos)
          << sql << " -> " << error;
    }
    sqlite3_close(db);
  }
  for (const std::string& name : ListDir(dir_)) {
    EXPECT_EQ(name.rfind("stolen", 0), std::string::npos) << "the schema wrote " << name;
  }
}

// SQLite 3.40 (Debian 12) does not enforce SQLITE_DIRECTONLY on CHECK
// constraints: a hostile CHECK runs cowbackup() on every INSERT/UPDATE of
// its table and inside PRAGMA integrity_check. Naming another schema than
// the one being written gets past the "transaction that has written to it"
// guard, and the backup of an attached database goes where the schema
// says. Disabled until the SQL functions refuse to run while the calling
// connection has any transaction open (see docs/RELIABILITY.md, "Known
// gaps"); enable it with that fix.
TEST_F(HostileSqlTest, CheckConstraintCannotBackUpAnotherSchema) {
  const std::string path = dir_ + "/check.db";
  const std::string aux = dir_ + "/secret.db";
  const std::string stolen = dir_ + "/stolen-check.cowbak";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix"),
              SQLITE_OK);
    ASSERT_EQ(Exec(db, "CREATE TABLE c(a CHECK (cowbackup(" + Quote(stolen) +
                           ", 'secret', '{\"overwrite\":true}') IS NOT NULL));"),
              "");
    sqlite3_close(db);
  }
  sqlite3* db = Open(path);
  ASSERT_EQ(Exec(db, "ATTACH " + Quote(aux) + " AS secret; CREATE TABLE secret.s(x);"
                     "INSERT INTO secret.s VALUES('password')"),
            "");
  const int64_t jobs_before = JobCount(db);
  for (const std::string sql : {"INSERT INTO c VALUES(1)", "PRAGMA main.integrity_check"}) {
    const std::string error = Exec(db, sql);
    // The INSERT fails; integrity_check folds the constraint's error into
    // its report. Either way no backup may start and nothing be written.
    if (sql.rfind("INSERT", 0) == 0) {
      EXPECT_NE(error.find("outside any transaction"), std::string::npos) << sql << ": " << error;
    }
    EXPECT_EQ(JobCount(db), jobs_before) << sql << " started a job from a CHECK constraint";
    EXPECT_FALSE(PathExists(stolen)) << sql << " backed up another schema from a CHECK constraint";
    ::unlink(stolen.c_str());
  }
  sqlite3_close(db);
}

// An index expression is evaluated at CREATE INDEX and on every write; a
// hostile one inside an attached database is refused the same way.
TEST_F(HostileSqlTest, AttachedHostileSchemaIsRefusedToo) {
  const std::string aux = dir_ + "/aux.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(aux.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix"),
              SQLITE_OK);
    ASSERT_EQ(Exec(db, "CREATE TABLE t(a); CREATE TRIGGER tr BEFORE DELETE ON t BEGIN "
                       "SELECT cowbackup(" + Quote(dir_ + "/aux-stolen") + ", 'main'); END;"
                       "INSERT INTO t VALUES(1);"),
              "");
    sqlite3_close(db);
  }
  sqlite3* db = Open(dir_ + "/app.db");
  ASSERT_EQ(Exec(db, "CREATE TABLE x(a); ATTACH " + Quote(aux) + " AS aux"), "");
  const std::string error = Exec(db, "DELETE FROM aux.t");
  EXPECT_NE(error.find("unsafe use of cowbackup"), std::string::npos) << error;
  const std::string ix = Exec(db, "CREATE INDEX ix ON x(cowbackup(a))");
  EXPECT_NE(ix, "") << "an index expression may call cowbackup()";
  EXPECT_FALSE(PathExists(dir_ + "/aux-stolen"));
  EXPECT_EQ(Query(db, "SELECT count(*) FROM aux.t"), "1");
  sqlite3_close(db);
}

// Tricky literals: each is refused with an error naming JSON or an option.
TEST_F(HostileSqlTest, TrickyOptionsJsonIsRefusedByName) {
  sqlite3* db = Open(dir_ + "/j.db");
  ASSERT_EQ(Exec(db, "CREATE TABLE t(a); INSERT INTO t VALUES(1)"), "");
  const std::string dest = dir_ + "/j.cowbak";
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  const std::vector<std::string> cases = {
      "", " ", "null", "true", "0", "\"x\"", "[]", deep, "{" + std::string(5000, ' '),
      "{\"segment_pages\":1e309}", "{\"segment_pages\":-0}", "{\"segment_pages\":4294967297}",
      "{\"segment_pages\":18446744073709551617}", "{\"segment_pages\":2.5}",
      "{\"segment_pages\":NaN}", "{\"max_rate_mb\":Infinity}",
      "{\"max_rate_mb\":1e308}", "{\"busy_timeout_ms\":-1}", "{\"busy_timeout_ms\":99999999999}",
      "{\"overwrite\":\"true\"}", "{\"overwrite\":null}", "{\"format\":\"ARCHIVE\"}",
      "{\"format\":[\"archive\"]}", "{\"snapshot_dir\":{}}", "{\"snapshot_dir\":\"\\ud800\"}",
      "{\"\":1}", "{\"overwrite\":true,}", "{\"overwrite\":true} x", "{/*c*/}",
      "\xef\xbb\xbf{}", "{\"overwrite\":true,\"OVERWRITE\":true}",
      "{\"segment_pages\":8,\"segment_pages\":\"8\"}", "{\"variant\":null}",
      "{\"" + std::string(100000, 'k') + "\":1}",
  };
  for (const std::string& json : cases) {
    std::string error;
    Query(db, "SELECT cowbackup(" + Quote(dest) + ", 'main', " + Quote(json) + ")", &error);
    EXPECT_NE(error, "") << "accepted: " << json.substr(0, 80);
    // Refused by name, or (a path that cannot exist) by the file system.
    EXPECT_TRUE(error.find("JSON") != std::string::npos || error.find("json") != std::string::npos ||
                error.find("option") != std::string::npos ||
                error.find("No such file or directory") != std::string::npos)
        << json.substr(0, 80) << " -> " << error;
    EXPECT_FALSE(PathExists(dest)) << json.substr(0, 80);
    ::unlink(dest.c_str());
  }
  sqlite3_close(db);
}

// Seeded random mutations of a valid options object: whatever happens, no
// crash, an error that names JSON or an option, or a complete archive; a
// refusal never leaves a destination or a temporary behind.
TEST_F(HostileSqlTest, MutatedOptionsJsonNeverCrashesOrLeavesFiles) {
  sqlite3* db = Open(dir_ + "/m.db");
  ASSERT_EQ(Exec(db, "CREATE TABLE t(a); INSERT INTO t VALUES(randomblob(3000))"), "");
  const std::string base =
      "{\"format\":\"archive\",\"segment_pages\":64,\"max_rate_mb\":0,\"overwrite\":true,"
      "\"busy_timeout_ms\":100,\"variant\":\"snapshot_first\"}";
  const std::string alphabet = "{}[]\":,0123456789.eE+-tfnul\\ \x01\x7f\xc3";
  std::mt19937_64 rng(0xC0B);
  const int runs = 1500 / kSanitizerSlowdown;
  int accepted = 0;
  for (int i = 0; i < runs; i++) {
    std::string json = base;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; e++) {
      const size_t at = rng() % (json.size() + 1);
      switch (rng() % 3) {
        case 0: json.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        case 1: if (at < json.size()) json.erase(at, 1); break;
        default: if (at < json.size()) json[at] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    const std::string dest = dir_ + "/m.cowbak";
    std::string error;
    Query(db, "SELECT cowbackup(" + Quote(dest) + ", 'main', " + Quote(json) + ")", &error);
    if (error.empty()) {
      accepted++;
      EXPECT_TRUE(VerifyArchive(dest, nullptr).ok()) << json;
      ::unlink(dest.c_str());
    } else {
      EXPECT_TRUE(error.find("JSON") != std::string::npos || error.find("option") != std::string::npos ||
                  error.find("unrecognized token") != std::string::npos)
          << json << " -> " << error;
      EXPECT_FALSE(PathExists(dest)) << json;
    }
    const std::vector<std::string> names = ListDir(dir_);
    EXPECT_EQ(names.size(), 2u) << json << ": left " << (names.size() > 2 ? names[2] : "");  // the database and its region
    if (HasFailure()) break;
  }
  fprintf(stderr, "%d mutated options objects, %d accepted\n", runs, accepted);
  sqlite3_close(db);
}

TEST_F(HostileSqlTest, SnapshotDirThatIsNotADirectoryIsRefused) {
  const std::string path = dir_ + "/s.db";
  sqlite3* db = Open(path);
  ASSERT_EQ(Exec(db, "CREATE TABLE t(a); INSERT INTO t VALUES(randomblob(5000))"), "");
  const std::string before = ReadFile(path);
  for (const std::string& snap : {path, dir_ + "/missing/dir", std::string("/proc/self/status")}) {
    std::string error;
    Query(db, "SELECT cowbackup(" + Quote(dir_ + "/s.cowbak") + ", 'main', " +
                  Quote("{\"snapshot_dir\":" + std::string("\"") + snap + "\"}") + ")",
          &error);
    EXPECT_NE(error, "") << snap;
    EXPECT_FALSE(PathExists(dir_ + "/s.cowbak")) << snap;
  }
  EXPECT_EQ(ReadFile(path), before) << "the database changed";
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{"s.db-cowbackup", "s.db"}));  // the region stays
  sqlite3_close(db);
}

}  // namespace
}  // namespace cowbackup::faults
