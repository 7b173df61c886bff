// The SQL interface of build/cowbackup.so, loaded into this process: exact
// copies of idle databases, every rollback journal mode under writes, both
// variants, foreign-write detection, and each safety rule of issue 3
// requirement 5. What must hold in WAL mode as in rollback mode (issue 11,
// item 6) runs in both (SqlModeTest, parametrized over DELETE and WAL); the
// WAL-only cases against foreign writers are sqlite_wal_foreign_test's.
// WAL databases in each start state of issue 11 item 5 (committed frames,
// a WAL left by a crash, empty, holding uncommitted frames past the last
// commit, switched to and from DELETE, page sizes 512 and 65536).
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "sqlite/sqlite_test_util.h"
#include "tests/backup/inert_text.h"

namespace cowbackup::testing {
namespace {

class SqlTest : public ::testing::Test {
 protected:
  void SetUp() override { LoadExtension(); }

  // A database with `rows` rows of ~1 KiB in table t.
  sqlite3* MakeDb(const std::string& path, int rows, const char* journal_mode = "DELETE") {
    return MakeDbInMode(path, rows, journal_mode);
  }

  std::string Backup(sqlite3* db, const std::string& dest, const std::string& schema = "main",
                     const std::string& options = "{}") {
    std::string error;
    Query(db, "SELECT cowbackup(" + Quote(dest) + ", " + Quote(schema) + ", " + Quote(options) + ")",
          &error);
    return error;
  }

  // Starts a throttled backup, rewrites rows all over the file while it
  // runs, waits, and checks the restored copy equals the database as it was
  // before the start (ImageNow: in WAL mode, with the WAL's frames applied).
  // Returns the pre-images preserved.
  int64_t BackupUnderWrites(sqlite3* db, const std::string& path, const std::string& dest,
                            const std::string& variant, const std::string& format = "archive",
                            const std::string& more_options = "") {
    const std::string before = ImageNow(path);
    const bool wal = Query(db, "PRAGMA journal_mode") == "wal";
    const int64_t rows = QueryInt(db, "SELECT count(*) FROM t");
    // Throttled so the copy outlasts the writer's first commits: under
    // sanitizers the file is 4x smaller, and at 8 MB/s its ~85 ms could
    // pass before a loaded machine scheduled the writer (no preservation).
    const std::string options = "{\"variant\":\"" + variant + "\",\"format\":\"" + format +
                                "\",\"segment_pages\":4,\"max_rate_mb\":" +
                                (kScale == 1 ? "8" : "2") + more_options + "}";
    std::string error;
    const int64_t id = std::stoll(
        "0" + Query(db, "SELECT cowbackup_start(" + Quote(dest) + ", 'main', " + Quote(options) + ")",
                    &error));
    EXPECT_EQ(error, "");
    EXPECT_GT(id, 0);
    sqlite3* writer = Open(path);
    for (int i = 0; i < 40; i++) {
      EXPECT_EQ(Exec(writer, "UPDATE t SET v = randomblob(1000) WHERE id % 37 = " +
                                 std::to_string(i % 37) + " AND id <= " + std::to_string(rows)),
                "");
      // WAL mode: commits append to the WAL; checkpoints write the file,
      // and a TRUNCATE restarts the WAL over T0's frames. All from this
      // one connection (SQLite 3.40's WAL-reset bug, docs/SQLITE.md).
      // The first one right away: the copy must still be running for a
      // checkpoint's writes to need preserving.
      if (wal && i % 10 == 0) {
        EXPECT_EQ(Exec(writer, i == 10 ? "PRAGMA wal_checkpoint(TRUNCATE)"
                                       : "PRAGMA wal_checkpoint(PASSIVE)"),
                  "");
      }
    }
    sqlite3_close(writer);
    const std::string summary =
        Query(db, "SELECT cowbackup_wait(" + std::to_string(id) + ")", &error);
    EXPECT_EQ(error, "");
    const std::string restored = dest + ".restored";
    if (format == "archive") {
      Status s = RestoreTo(dest, restored);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    EXPECT_TRUE(ReadFile(format == "archive" ? restored : dest) == before)
        << "restored copy differs from the database at T0 (" << summary << ")";
    const size_t at = summary.find("\"preserved_pages\":");
    return at == std::string::npos ? -1 : std::stoll(summary.substr(at + 18));
  }

  // Backs up `db`'s main schema in both formats, then checks each copy
  // against the live database as a fresh plain connection reads it (Dump:
  // the schema and every row) and runs its integrity_check. A WAL database's
  // copy is one standalone file, still marked WAL (header bytes 18 and 19
  // are 2), with no -wal beside it. The backups come first, so that when no
  // connection has read the database yet, the backup's own read is the one
  // that runs WAL recovery.
  void ExpectCopiesMatchLive(sqlite3* db, const std::string& path, const std::string& tag) {
    std::vector<std::string> copies;
    for (const char* format : {"archive", "plain"}) {
      const std::string dest = dir_ / (tag + "." + format);
      ASSERT_EQ(Backup(db, dest, "main", std::string("{\"format\":\"") + format + "\"}"), "") << format;
      std::string restored = dest;
      if (std::string(format) == "archive") {
        restored = dest + ".restored.db";
        const Status s = RestoreTo(dest, restored);
        ASSERT_TRUE(s.ok()) << s.ToString();
      }
      copies.push_back(restored);
    }
    std::string error;
    const std::string live = Dump(path, &error);
    ASSERT_EQ(error, "") << "the live database";
    ASSERT_NE(live, "");
    const bool wal = Query(db, "PRAGMA journal_mode") == "wal";
    for (const std::string& copy : copies) {
      SCOPED_TRACE(copy);
      EXPECT_FALSE(Exists(copy + "-wal"));
      const std::string header = ReadFile(copy).substr(0, 20);
      ASSERT_EQ(header.size(), 20u);
      EXPECT_EQ(header[18], wal ? 2 : 1);
      EXPECT_EQ(header[19], wal ? 2 : 1);
      EXPECT_TRUE(Dump(copy, &error) == live) << "the copy holds other data than the live database";
      EXPECT_EQ(error, "");
      sqlite3* c = Open("file:" + copy + "?vfs=unix&mode=ro");
      EXPECT_EQ(IntegrityCheck(c), "ok");
      sqlite3_close(c);
    }
  }

  TempDir dir_;
};

// The tests that hold in every journal mode, run in DELETE and WAL mode.
class SqlModeTest : public SqlTest, public ::testing::WithParamInterface<const char*> {
 protected:
  // MakeDb in the mode under test (in WAL mode with frames in the WAL).
  sqlite3* MakeModeDb(const std::string& path, int rows) { return MakeDb(path, rows, GetParam()); }
  // Every name in the test directory that a backup makes while it runs:
  // temporary archives and snapshot volumes.
  std::vector<std::string> Temporaries() {
    std::vector<std::string> found;
    for (const std::string& name : dir_.list()) {
      if (name.find(".cowtmp-") != std::string::npos || name.find(".cowsnap") != std::string::npos) {
        found.push_back(name);
      }
    }
    return found;
  }
};

INSTANTIATE_TEST_SUITE_P(JournalModes, SqlModeTest, ::testing::Values("DELETE", "WAL"),
                         [](const auto& info) { return std::string(info.param); });

TEST_P(SqlModeTest, IdleDatabaseRestoresToItsImage) {
  const std::string path = dir_ / "idle.db";
  sqlite3* db = MakeModeDb(path, 3000);
  const std::string image = ImageNow(path);
  ASSERT_EQ(Backup(db, dir_ / "idle.cowbak"), "");
  ASSERT_TRUE(RestoreTo(dir_ / "idle.cowbak", dir_ / "idle.restored").ok());
  EXPECT_TRUE(ReadFile(dir_ / "idle.restored") == image);
  ASSERT_EQ(Backup(db, dir_ / "idle-plain.db", "main", "{\"format\":\"plain\"}"), "");
  EXPECT_TRUE(ReadFile(dir_ / "idle-plain.db") == image);
  // The copy stands alone, in the database's journal mode.
  sqlite3* copy = Open(dir_ / "idle-plain.db");
  EXPECT_EQ(Query(copy, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(Query(copy, "PRAGMA journal_mode"), Query(db, "PRAGMA journal_mode"));
  EXPECT_EQ(Query(copy, "SELECT sum(length(v)) || ' ' || count(*) FROM t"),
            Query(db, "SELECT sum(length(v)) || ' ' || count(*) FROM t"));
  sqlite3_close(copy);
  sqlite3_close(db);
}

TEST_F(SqlTest, SummaryHasTheDocumentedFields) {
  sqlite3* db = MakeDb(dir_ / "s.db", 100);
  const std::string json = Query(db, "SELECT cowbackup(" + Quote(dir_ / "s.cowbak") + ")");
  for (const char* key : {"\"pages\":", "\"preserved_pages\":", "\"bytes\":", "\"seconds\":",
                          "\"max_write_wait_us\":", "\"yield_ms\":", "\"begin_lock_us\":"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
  }
  EXPECT_EQ(Query(db, "SELECT json_extract(" + Quote(json) + ", '$.pages') = " +
                          "(SELECT page_count FROM pragma_page_count)"),
            "1");
  sqlite3_close(db);
}

TEST_F(SqlTest, EveryRollbackJournalModeUnderWrites) {
  for (const char* mode : {"DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF"}) {
    SCOPED_TRACE(mode);
    const std::string path = dir_ / (std::string("jm-") + mode + ".db");
    sqlite3* db = MakeDb(path, 2000 / kScale, mode);
    std::string lower = mode;
    for (char& c : lower) c = char(tolower(c));
    EXPECT_EQ(Query(db, "PRAGMA journal_mode"), lower);
    EXPECT_GT(BackupUnderWrites(db, path, dir_ / (std::string("jm-") + mode + ".cowbak"),
                                "snapshot_first"),
              0);
    sqlite3_close(db);
  }
}

// A backup that yields to the application's commits (another connection's
// here, through the shim) still gives exactly the T0 image.
TEST_P(SqlModeTest, YieldingToCommitsGivesTheT0ImageUnderWrites) {
  for (const char* format : {"archive", "plain"}) {
    SCOPED_TRACE(format);
    const std::string path = dir_ / (std::string("yield-") + format + ".db");
    sqlite3* db = MakeModeDb(path, 2000 / kScale);
    EXPECT_GT(BackupUnderWrites(db, path, dir_ / (std::string("yield.") + format), "snapshot_first",
                                format, ",\"yield_to_commits\":true"),
              0);
    sqlite3_close(db);
  }
}

TEST_P(SqlModeTest, BothVariantsGiveTheT0ImageUnderWrites) {
  for (const char* variant : {"snapshot_first", "overlay_at_end"}) {
    for (const char* format : {"archive", "plain"}) {
      SCOPED_TRACE(std::string(variant) + " " + format);
      const std::string path = dir_ / (std::string("v-") + variant + format + ".db");
      sqlite3* db = MakeModeDb(path, 2000 / kScale);
      EXPECT_GT(BackupUnderWrites(db, path, dir_ / (std::string("v-") + variant + "." + format),
                                  variant, format),
                0);
      sqlite3_close(db);
    }
  }
}

// ---- WAL mode: each start state backs up to what SQLite itself sees ----

// Runs `body` in a child process that then dies of SIGKILL with whatever
// it opened still open: a crashed application. The child uses only the
// plain unix VFS. Returns whether `body` succeeded and the child was
// killed.
bool CrashInChild(const std::function<bool()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (!body()) _exit(1);
    raise(SIGKILL);
    _exit(2);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

// For a child: a connection through the plain unix VFS that never
// checkpoints by itself, so its commits stay in the -wal file.
sqlite3* OpenInChild(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, "unix") != SQLITE_OK) return nullptr;
  sqlite3_busy_timeout(db, 10000);
  if (Exec(db, "PRAGMA wal_autocheckpoint=0") != "") return nullptr;
  return db;
}

// A WAL database whose -wal holds committed frames (a second connection
// stays open and never checkpoints, so nothing moves them into the main
// file): the copy is the main file with those frames applied.
TEST_F(SqlTest, WalDatabaseWithCommittedFramesBacksUp) {
  const std::string path = dir_ / "wal.db";
  sqlite3* db = MakeDb(path, 200 / kScale, "WAL");
  EXPECT_EQ(Query(db, "PRAGMA journal_mode"), "wal");
  sqlite3* writer = Open(path);
  EXPECT_EQ(Exec(writer, "PRAGMA wal_autocheckpoint=0"), "");
  EXPECT_EQ(Exec(writer, "PRAGMA wal_checkpoint(TRUNCATE)"), "");
  for (int i = 0; i < 5; i++) {
    EXPECT_EQ(Exec(writer, "UPDATE t SET v = randomblob(900) WHERE id % 5 = " + std::to_string(i)), "");
  }
  EXPECT_EQ(Exec(writer, "INSERT INTO t(v) VALUES ('the last commit')"), "");
  const sqlite::WalScan scan = ScanWalFile(path);
  EXPECT_GT(scan.max_frame, 20u) << "the commits are not in the -wal file";
  ExpectCopiesMatchLive(db, path, "wal");
  sqlite3_close(writer);
  sqlite3_close(db);
}

// A writer process died with commits in the -wal file and its -shm left
// behind. The next connection (the backup's own, here) runs WAL recovery;
// the copy holds every commit the child made.
TEST_F(SqlTest, WalLeftByACrashIsRecoveredAndBackedUp) {
  const std::string path = dir_ / "crash.db";
  sqlite3_close(MakeDb(path, 100, "WAL"));
  ASSERT_FALSE(Exists(path + "-wal")) << "the last close checkpoints and removes it";
  ASSERT_TRUE(CrashInChild([&] {
    sqlite3* db = OpenInChild(path);
    if (db == nullptr) return false;
    for (int i = 0; i < 10; i++) {
      if (Exec(db, "INSERT INTO t VALUES(" + std::to_string(1000 + i) + ", 'committed before the crash')") != "" ||
          Exec(db, "UPDATE t SET v = randomblob(1000) WHERE id = " + std::to_string(i + 1)) != "") {
        return false;
      }
    }
    return true;
  }));
  EXPECT_GE(ScanWalFile(path).max_frame, 10u);
  EXPECT_TRUE(Exists(path + "-shm"));
  sqlite3* db = Open(path);
  ExpectCopiesMatchLive(db, path, "crash");
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM t WHERE id >= 1000"), 10);
  sqlite3_close(db);
}

// An empty WAL: after a TRUNCATE checkpoint (a 0-byte -wal file), and on
// a database just switched to WAL (no -wal file yet, or an empty one).
TEST_F(SqlTest, EmptyWalBacksUp) {
  {
    const std::string path = dir_ / "truncated.db";
    sqlite3* db = MakeDb(path, 100, "WAL");
    EXPECT_EQ(Exec(db, "UPDATE t SET v = randomblob(1000) WHERE id < 20"), "");
    EXPECT_EQ(Query(db, "PRAGMA wal_checkpoint(TRUNCATE)"), "0");
    EXPECT_TRUE(Exists(path + "-wal"));
    EXPECT_EQ(ReadFile(path + "-wal"), "");
    ExpectCopiesMatchLive(db, path, "truncated");
    sqlite3_close(db);
  }
  {
    const std::string path = dir_ / "switched.db";
    sqlite3* db = MakeDb(path, 100, "DELETE");
    EXPECT_EQ(Query(db, "PRAGMA journal_mode=WAL"), "wal");
    const sqlite::WalScan scan = ScanWalFile(path);
    EXPECT_EQ(scan.max_frame, 0u);
    ExpectCopiesMatchLive(db, path, "switched");
    sqlite3_close(db);
  }
}

// A writer process died mid-transaction after its page cache spilled
// frames into the -wal file: valid frames past the last commit, which
// recovery (and so the copy) must leave out.
TEST_F(SqlTest, WalWithUncommittedFramesPastTheLastCommitBacksUp) {
  const std::string path = dir_ / "spilled.db";
  sqlite3_close(MakeDb(path, 100, "WAL"));
  ASSERT_TRUE(CrashInChild([&] {
    sqlite3* db = OpenInChild(path);
    if (db == nullptr) return false;
    for (int i = 0; i < 3; i++) {
      if (Exec(db, "UPDATE t SET v = randomblob(1000) WHERE id % 3 = " + std::to_string(i)) != "") return false;
    }
    // A transaction far larger than a 10-page cache: it spills.
    return Exec(db, "PRAGMA cache_size=10") == "" &&
           Exec(db, "BEGIN; "
                    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300) "
                    "INSERT INTO t SELECT 5000 + i, randomblob(1000) FROM c") == "";
  }));
  const sqlite::WalScan scan = ScanWalFile(path);
  EXPECT_GT(scan.max_frame, 0u);
  EXPECT_GT(scan.valid_frames, scan.max_frame + 20) << "no uncommitted frames past the last commit";
  sqlite3* db = Open(path);
  ExpectCopiesMatchLive(db, path, "spilled");
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM t"), 100);
  sqlite3_close(db);
}

// One database, backed up after each switch: DELETE, WAL, DELETE, WAL,
// written to in each mode.
TEST_F(SqlTest, DatabaseSwitchedBetweenDeleteAndWalBacksUpInEachMode) {
  const std::string path = dir_ / "switch.db";
  sqlite3* db = MakeDb(path, 200 / kScale, "DELETE");
  ExpectCopiesMatchLive(db, path, "switch-0-delete");
  int step = 1;
  for (const char* mode : {"wal", "delete", "wal"}) {
    SCOPED_TRACE(mode);
    EXPECT_EQ(Query(db, std::string("PRAGMA journal_mode=") + mode), mode);
    EXPECT_EQ(Exec(db, "UPDATE t SET v = randomblob(1000) WHERE id % 4 = " + std::to_string(step % 4)), "");
    EXPECT_EQ(Exec(db, "INSERT INTO t(v) VALUES ('" + std::string(mode) + "')"), "");
    EXPECT_EQ(Exists(path + "-wal"), std::string(mode) == "wal");
    ExpectCopiesMatchLive(db, path, "switch-" + std::to_string(step++) + "-" + mode);
  }
  sqlite3_close(db);
}

// The smallest and largest page sizes in WAL mode, with committed frames
// in the -wal file (65536 is stored as 1 in the database header, as is in
// the -wal header).
TEST_F(SqlTest, WalPageSizes512And65536BackUp) {
  for (int page_size : {512, 65536}) {
    SCOPED_TRACE(page_size);
    const std::string path = dir_ / ("ps" + std::to_string(page_size) + ".db");
    sqlite3* db = Open(path);
    EXPECT_EQ(Exec(db, "PRAGMA page_size=" + std::to_string(page_size)), "");
    EXPECT_EQ(Query(db, "PRAGMA journal_mode=WAL"), "wal");
    EXPECT_EQ(MakeTable(db, 100), "");
    sqlite3* writer = Open(path);
    EXPECT_EQ(Exec(writer, "PRAGMA wal_autocheckpoint=0"), "");
    EXPECT_EQ(Exec(writer, "PRAGMA wal_checkpoint(TRUNCATE)"), "");
    EXPECT_EQ(Exec(writer, "UPDATE t SET v = randomblob(700) WHERE id % 3 = 0"), "");
    EXPECT_EQ(Exec(writer, "DELETE FROM t WHERE id > 90"), "");
    const sqlite::WalScan scan = ScanWalFile(path);
    EXPECT_EQ(scan.page_size(), uint32_t(page_size));
    EXPECT_GT(scan.max_frame, 0u);
    EXPECT_EQ(QueryInt(db, "PRAGMA page_size"), page_size);
    ExpectCopiesMatchLive(db, path, "ps" + std::to_string(page_size));
    sqlite3_close(writer);
    sqlite3_close(db);
  }
}

// hot_first moves the segments writers hit (in WAL mode: checkpoints into
// the file, restarts over T0's frames) to the front of the queue.
TEST_P(SqlModeTest, HotFirstGivesTheT0ImageUnderWrites) {
  for (const char* variant : {"snapshot_first", "overlay_at_end"}) {
    SCOPED_TRACE(variant);
    const std::string path = dir_ / (std::string("hot-") + variant + ".db");
    sqlite3* db = MakeModeDb(path, 2000 / kScale);
    EXPECT_GT(BackupUnderWrites(db, path, dir_ / (std::string("hot-") + variant + ".cowbak"),
                                variant, "archive", ",\"hot_first\":true"),
              0);
    sqlite3_close(db);
  }
}

// A connection of this process opened with the plain unix VFS is a writer
// the shim does not see, like another process.
TEST_P(SqlModeTest, WriteBypassingTheShimFailsTheBackup) {
  // Two ways: the bypassing commit is the last (caught by the end check),
  // or a shim commit follows it (caught as a counter jump).
  for (bool shim_write_after : {false, true}) {
    SCOPED_TRACE(shim_write_after ? "shim commit after" : "bypass last");
    const std::string path = dir_ / (shim_write_after ? "byp2.db" : "byp1.db");
    const std::string dest = path + ".cowbak";
    sqlite3* db = MakeModeDb(path, 2000 / kScale);
    std::string error;
    const std::string id = Query(
        db, "SELECT cowbackup_start(" + Quote(dest) + ", 'main', '{\"max_rate_mb\":4}')", &error);
    ASSERT_EQ(error, "");
    // The parent VFS directly: what another process would do.
    sqlite3* foreign = Open("file:" + path + "?vfs=unix");
    EXPECT_EQ(Exec(foreign, "UPDATE t SET v = randomblob(1000) WHERE id < 50"), "");
    sqlite3_close(foreign);
    if (shim_write_after) {
      EXPECT_EQ(Exec(db, "UPDATE t SET v = zeroblob(10) WHERE id = 7"), "");
    }
    Query(db, "SELECT cowbackup_wait(" + id + ")", &error);
    EXPECT_NE(error.find("bypassed the cowbackup shim"), std::string::npos) << error;
    EXPECT_FALSE(Exists(dest));
    EXPECT_EQ(Query(db, "SELECT state FROM cowbackup_jobs WHERE id = " + id), "failed");
    sqlite3_close(db);
  }
}

TEST_F(SqlTest, ConnectionNotOpenedThroughShimIsRefused) {
  const std::string path = dir_ / "plainvfs.db";
  sqlite3_close(MakeDb(path, 10));
  sqlite3* db = Open("file:" + path + "?vfs=unix");
  const std::string error = Backup(db, dir_ / "x.cowbak");
  EXPECT_NE(error.find("not opened through the cowbackup VFS"), std::string::npos) << error;
  EXPECT_NE(error.find("vfs=cowbackup"), std::string::npos) << error;
  EXPECT_FALSE(Exists(dir_ / "x.cowbak"));
  sqlite3_close(db);
  // An explicit vfs=cowbackup works.
  db = Open("file:" + path + "?vfs=cowbackup");
  EXPECT_EQ(Backup(db, dir_ / "x.cowbak"), "");
  sqlite3_close(db);
}

TEST_F(SqlTest, ExistingDestinationNeedsOverwrite) {
  sqlite3* db = MakeDb(dir_ / "o.db", 10);
  ASSERT_EQ(Backup(db, dir_ / "o.cowbak"), "");
  const std::string error = Backup(db, dir_ / "o.cowbak");
  EXPECT_NE(error.find("destination exists"), std::string::npos) << error;
  EXPECT_EQ(Backup(db, dir_ / "o.cowbak", "main", "{\"overwrite\":true}"), "");
  sqlite3_close(db);
}

TEST_F(SqlTest, DestinationMayNotBeTheDatabaseOrItsJournals) {
  const std::string path = dir_ / "self.db";
  sqlite3* db = MakeDb(path, 10);
  ASSERT_EQ(symlink(path.c_str(), (dir_ / "link.db").c_str()), 0);
  ASSERT_EQ(link(path.c_str(), (dir_ / "hard.db").c_str()), 0);
  const std::string opts = "{\"overwrite\":true}";
  for (const std::string& dest :
       {path, dir_.path() + "/./self.db", dir_ / "link.db", dir_ / "hard.db"}) {
    const std::string error = Backup(db, dest, "main", opts);
    EXPECT_NE(error.find("destination is the database"), std::string::npos) << dest << ": " << error;
  }
  // Any database's journal, WAL or shm name: SQLite would take a copy
  // there for that database's own (a hot journal is replayed).
  for (const std::string& dest : {path + "-journal", path + "-wal", path + "-shm",
                                  dir_ / "other.db-journal", dir_ / "other.db-wal"}) {
    const std::string error = Backup(db, dest, "main", opts);
    EXPECT_NE(error.find("is named like a SQLite database's"), std::string::npos) << dest << ": " << error;
    EXPECT_FALSE(Exists(dest)) << dest;
  }
  EXPECT_EQ(Query(db, "PRAGMA integrity_check"), "ok");
  sqlite3_close(db);
}

// Nor a coordination region's name (docs/REGION.md, "Where it lives"):
// every process opening that database through cowbackup would map the copy
// as the region it shares with the other writers.
TEST_F(SqlTest, DestinationMayNotBeARegionsName) {
  const std::string path = dir_ / "self.db";
  sqlite3* db = MakeDb(path, 10);
  ASSERT_EQ(mkdir((dir_ / "env").c_str(), 0700), 0);
  const std::string opts = "{\"overwrite\":true}";
  for (const std::string& dest : {path + "-cowbackup", dir_ / "other.db-cowbackup", dir_ / "env.mdb-cowbackup"}) {
    // self.db's own region exists (the shim attached it): it must stay as it is.
    const std::string before = Exists(dest) ? ReadFile(dest) : "";
    const std::string error = Backup(db, dest, "main", opts);
    EXPECT_NE(error.find("is named like a database's cowbackup coordination region"), std::string::npos)
        << dest << ": " << error;
    EXPECT_NE(error.find(dest), std::string::npos) << error;
    EXPECT_EQ(dest == path + "-cowbackup", Exists(dest)) << dest;
    if (Exists(dest)) EXPECT_EQ(ReadFile(dest).substr(0, 64), before.substr(0, 64)) << "the region's header";
  }
  for (const std::string& dest : {dir_ / "env/cowbackup-region", dir_ / "cowbackup-region"}) {
    const std::string error = Backup(db, dest, "main", opts);
    EXPECT_NE(error.find("is named like an LMDB environment's cowbackup coordination region"), std::string::npos)
        << dest << ": " << error;
    EXPECT_FALSE(Exists(dest)) << dest;
  }
  // Names that only contain them are fine.
  for (const std::string& dest : {dir_ / "a-cowbackup.cbk", dir_ / "cowbackup-region.cbk"}) {
    EXPECT_EQ(Backup(db, dest, "main", opts), "") << dest;
  }
  EXPECT_EQ(Query(db, "PRAGMA integrity_check"), "ok");
  sqlite3_close(db);
}

// Issue 10, item 3: overwrite never replaces a database that is open, in
// this process (attached to the calling connection, or open on another
// connection, through the shim or not): the application's next write would
// otherwise go to a file that no longer has a name.
TEST_F(SqlTest, OverwriteNeverReplacesALiveDatabase) {
  sqlite3* db = MakeDb(dir_ / "a.db", 10);
  sqlite3* other = MakeDb(dir_ / "other.db", 7);
  sqlite3_close(other);
  const std::string opts = "{\"overwrite\":true}";
  const auto expect_refused = [&](const char* how) {
    const std::string error = Backup(db, dir_ / "other.db", "main", opts);
    EXPECT_NE(error.find("live database"), std::string::npos) << how << ": " << error;
  };
  ASSERT_EQ(Exec(db, "ATTACH " + Quote(dir_ / "other.db") + " AS o"), "");
  expect_refused("attached");
  EXPECT_EQ(Exec(db, "INSERT INTO o.t(v) VALUES ('still here')"), "");
  EXPECT_EQ(Query(db, "SELECT count(*) FROM o.t"), "8");
  ASSERT_EQ(Exec(db, "DETACH o"), "");
  other = Open(dir_ / "other.db");  // another connection, through the shim
  EXPECT_EQ(Query(other, "SELECT count(*) FROM t"), "8");
  expect_refused("another connection");
  sqlite3_close(other);
  other = Open(dir_ / "other.db", "unix");  // not through the shim
  EXPECT_EQ(Query(other, "SELECT count(*) FROM t"), "8");
  expect_refused("another connection, plain unix VFS");
  EXPECT_EQ(Query(other, "PRAGMA integrity_check"), "ok");
  sqlite3_close(other);
  // Closed everywhere: replaced.
  EXPECT_EQ(Backup(db, dir_ / "other.db", "main", "{\"overwrite\":true,\"format\":\"plain\"}"), "");
  sqlite3_close(db);
}

TEST_F(SqlTest, OutputsAreMode0600) {
  sqlite3* db = MakeDb(dir_ / "m.db", 10);
  const mode_t old = umask(0);
  ASSERT_EQ(Backup(db, dir_ / "m.cowbak"), "");
  ASSERT_EQ(Backup(db, dir_ / "m-plain.db", "main", "{\"format\":\"plain\"}"), "");
  umask(old);
  EXPECT_EQ(Mode(dir_ / "m.cowbak"), 0600u);
  EXPECT_EQ(Mode(dir_ / "m-plain.db"), 0600u);
  ASSERT_TRUE(RestoreTo(dir_ / "m.cowbak", dir_ / "m.restored").ok());
  EXPECT_EQ(Mode(dir_ / "m.restored"), 0600u);
  sqlite3_close(db);
}

TEST_F(SqlTest, TempAndInMemoryDatabasesAreRefused) {
  sqlite3* mem = Open(":memory:");
  std::string error = Backup(mem, dir_ / "mem.cowbak");
  EXPECT_NE(error.find("in-memory or temporary"), std::string::npos) << error;
  error = Backup(mem, dir_ / "mem.cowbak", "temp");
  EXPECT_NE(error.find("temp schema"), std::string::npos) << error;
  sqlite3_close(mem);
  sqlite3* db = MakeDb(dir_ / "tt.db", 10);
  EXPECT_EQ(Exec(db, "CREATE TEMP TABLE x(a)"), "");
  error = Backup(db, dir_ / "tt.cowbak", "temp");
  EXPECT_NE(error.find("temp schema"), std::string::npos) << error;
  error = Backup(db, dir_ / "tt.cowbak", "nosuch");
  EXPECT_NE(error.find("no such database schema"), std::string::npos) << error;
  sqlite3_close(db);
}

TEST_F(SqlTest, BadArgumentsNameTheProblem) {
  sqlite3* db = MakeDb(dir_ / "args.db", 10);
  const std::string d = Quote(dir_ / "args.cowbak");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"SELECT cowbackup(1)", "dest_path must be text"},
      {"SELECT cowbackup(NULL)", "dest_path must be text"},
      {"SELECT cowbackup(x'00')", "dest_path must be text"},
      {"SELECT cowbackup(" + d + " || char(0) || 'x')", "dest_path contains a NUL byte"},
      {"SELECT cowbackup(" + d + ", 5)", "schema must be text"},
      {"SELECT cowbackup(" + d + ", 'main', 7)", "options_json must be text"},
      {"SELECT cowbackup(" + d + ", 'main', 'nope')", "not valid JSON"},
      {"SELECT cowbackup(" + d + ", 'main', '[1]')", "must be a JSON object"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"colour\":1}')", "unknown option \"colour\""},
      {"SELECT cowbackup(" + d + ", 'main', '{\"format\":\"zip\"}')", "option format"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"format\":1}')", "option format"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"segment_pages\":0}')", "option segment_pages"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"segment_pages\":-5}')", "option segment_pages"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"segment_pages\":99999999999999999999}')",
       "option segment_pages"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"segment_pages\":\"8\"}')", "option segment_pages"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"max_rate_mb\":-1}')", "option max_rate_mb"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"yield_to_commits\":1}')", "option yield_to_commits"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"max_rate_mb\":1e400}')", "option max_rate_mb"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"busy_timeout_ms\":1.5}')", "option busy_timeout_ms"},
      // The limits every front end shares (backup/options.h); 1e-300 used
      // to run unthrottled.
      {"SELECT cowbackup(" + d + ", 'main', '{\"max_rate_mb\":1e-300}')",
       "option max_rate_mb: must be 0 (no limit) or between 0.001 and 1000000 (MB/s)"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"max_rate_mb\":0.0009}')", "option max_rate_mb: must be 0"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"max_rate_mb\":2e6}')", "option max_rate_mb: must be 0"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"busy_timeout_ms\":86400001}')",
       "option busy_timeout_ms: must be an integer between 0 and 86400000"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"overwrite\":1}')", "option overwrite"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"snapshot_dir\":\"\"}')", "option snapshot_dir"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"snapshot_dir\":\"a\\u0000b\"}')", "NUL characters"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"overwrite\":true,\"overwrite\":true}')", "twice"},
      {"SELECT cowbackup(" + d + ", 'main', '{\"variant\":\"both\"}')", "option variant"},
      {"SELECT cowbackup_wait('x')", "job id must be a positive integer"},
      {"SELECT cowbackup_wait(-1)", "job id must be a positive integer"},
      {"SELECT cowbackup_wait(987654321)", "no such backup job"},
      {"SELECT cowbackup_cancel(987654321)", "no such backup job"},
      {"SELECT cowbackup()", "wrong number of arguments"},
      {"SELECT cowbackup(" + d + ", 'main', '{}', 4)", "wrong number of arguments"},
  };
  for (const auto& [sql, expected] : cases) {
    std::string error;
    Query(db, sql, &error);
    EXPECT_NE(error.find(expected), std::string::npos) << sql << " -> " << error;
  }
  EXPECT_FALSE(Exists(dir_ / "args.cowbak"));
  EXPECT_EQ(Backup(db, dir_ / "max.cowbak", "main", "{\"max_rate_mb\":1000000,\"segment_pages\":1048576}"), "");
  sqlite3_close(db);
}

// Errors name paths, which may hold escape sequences and bytes that are not
// UTF-8: cowbackup()'s and cowbackup_wait()'s errors and the jobs table's
// error column carry them escaped (valid UTF-8, nothing a terminal obeys).
TEST_F(SqlTest, ErrorsNamingHostilePathsAreEscaped) {
  const std::string odd = test::kTitleSeq + test::kEraseSeq + test::kC1Csi + test::kBadUtf8;
  const std::string shown = "\\x1b]0;pwned\\x07\\r\\x1b[2K\\xc2\\x9b"
                            "\\xff\\xfe\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82";
  sqlite3* db = MakeDb(dir_ / "e.db", 10);
  std::string error = Backup(db, dir_ / ("no" + odd) + "/x.cowbak");
  EXPECT_TRUE(test::InertOnATerminal(error)) << error;
  EXPECT_NE(error.find(dir_ / ("no" + shown)), std::string::npos) << error;
  sqlite3_close(db);

  // A job that fails after it got an id: a write bypasses the shim.
  const std::string path = dir_ / ("odd" + odd + ".db");
  db = MakeDb(path, 2000 / kScale);
  const std::string id = Query(
      db, "SELECT cowbackup_start(" + Quote(dir_ / "odd.cowbak") + ", 'main', '{\"max_rate_mb\":4}')",
      &error);
  ASSERT_EQ(error, "");
  sqlite3* foreign = Open("file:" + path + "?vfs=unix");
  EXPECT_EQ(Exec(foreign, "UPDATE t SET v = randomblob(1000) WHERE id < 50"), "");
  sqlite3_close(foreign);
  Query(db, "SELECT cowbackup_wait(" + id + ")", &error);
  EXPECT_NE(error.find("bypassed the cowbackup shim"), std::string::npos) << error;
  EXPECT_TRUE(test::InertOnATerminal(error)) << error;
  EXPECT_NE(error.find(dir_ / ("odd" + shown + ".db")), std::string::npos) << error;
  const std::string column = Query(db, "SELECT error FROM cowbackup_jobs WHERE id = " + id);
  EXPECT_TRUE(test::InertOnATerminal(column)) << column;
  EXPECT_NE(column.find(dir_ / ("odd" + shown + ".db")), std::string::npos) << column;
  sqlite3_close(db);
}

TEST_F(SqlTest, FunctionsAreDirectOnly) {
  sqlite3* db = MakeDb(dir_ / "direct.db", 10);
  ASSERT_EQ(Exec(db, "CREATE VIEW v AS SELECT cowbackup(" + Quote(dir_ / "v.cowbak") + ") AS x;"
                     "CREATE TABLE trig(a);"
                     "CREATE TRIGGER tr AFTER INSERT ON trig BEGIN SELECT cowbackup(" +
                         Quote(dir_ / "t.cowbak") + "); END;"),
            "");
  std::string error;
  Query(db, "SELECT * FROM v", &error);
  EXPECT_NE(error.find("unsafe use of cowbackup"), std::string::npos) << error;
  error = Exec(db, "INSERT INTO trig VALUES(1)");
  EXPECT_NE(error.find("unsafe use of cowbackup"), std::string::npos) << error;
  Query(db, "SELECT * FROM (SELECT * FROM cowbackup_jobs)", &error);
  EXPECT_EQ(error, "");
  EXPECT_FALSE(Exists(dir_ / "v.cowbak"));
  EXPECT_FALSE(Exists(dir_ / "t.cowbak"));
  sqlite3_close(db);
}

TEST_F(SqlTest, AttachedDatabaseBySchemaName) {
  sqlite3_close(MakeDb(dir_ / "aux.db", 500));
  sqlite3* db = MakeDb(dir_ / "att-main.db", 10);
  ASSERT_EQ(Exec(db, "ATTACH " + Quote(dir_ / "aux.db") + " AS aux"), "");
  ASSERT_EQ(Backup(db, dir_ / "aux.cowbak", "aux"), "");
  ASSERT_TRUE(RestoreTo(dir_ / "aux.cowbak", dir_ / "aux.restored").ok());
  EXPECT_TRUE(ReadFile(dir_ / "aux.restored") == ReadFile(dir_ / "aux.db"));
  sqlite3_close(db);
}

TEST_P(SqlModeTest, SecondBackupOfTheSameDatabaseIsBusyAndOthersRunConcurrently) {
  sqlite3* a = MakeModeDb(dir_ / "busy-a.db", 2000 / kScale);
  sqlite3* b = MakeModeDb(dir_ / "busy-b.db", 2000 / kScale);
  std::string error;
  const std::string ida = Query(
      a, "SELECT cowbackup_start(" + Quote(dir_ / "a1.cowbak") + ", 'main', '{\"max_rate_mb\":4}')",
      &error);
  ASSERT_EQ(error, "");
  // Same file through another connection: refused while the first runs.
  sqlite3* a2 = Open(dir_ / "busy-a.db");
  error = Backup(a2, dir_ / "a2.cowbak");
  EXPECT_NE(error.find("already running"), std::string::npos) << error;
  EXPECT_FALSE(Exists(dir_ / "a2.cowbak"));
  // A different database at the same time is fine.
  const std::string idb = Query(
      b, "SELECT cowbackup_start(" + Quote(dir_ / "b1.cowbak") + ", 'main', '{\"max_rate_mb\":4}')",
      &error);
  ASSERT_EQ(error, "");
  EXPECT_EQ(Query(a, "SELECT count(*) FROM cowbackup_jobs WHERE id IN (" + ida + "," + idb +
                         ") AND state = 'running' AND finished IS NULL"),
            "2");
  Query(a, "SELECT cowbackup_wait(" + ida + ")", &error);
  EXPECT_EQ(error, "");
  Query(b, "SELECT cowbackup_wait(" + idb + ")", &error);
  EXPECT_EQ(error, "");
  // Once it is done, the next backup of the same file may run.
  EXPECT_EQ(Backup(a2, dir_ / "a2.cowbak"), "");
  EXPECT_EQ(Query(a, "SELECT state || ' ' || (pages_done = pages_total) || ' ' || "
                     "(finished IS NOT NULL) || ' ' || (error IS NULL) || ' ' || schema || ' ' || "
                     "(database = " + Quote(dir_ / "busy-a.db") + ") || ' ' || "
                     "(destination = " + Quote(dir_ / "a1.cowbak") + ") "
                     "FROM cowbackup_jobs WHERE id = " + ida),
            "done 1 1 1 main 1 1");
  sqlite3_close(a2);
  sqlite3_close(a);
  sqlite3_close(b);
}

// Cancelled under a writer whose commits preserved pages: nothing at the
// destination, and the temporary archive and snapshot volume are gone.
TEST_P(SqlModeTest, CancelLeavesNothingAtTheDestination) {
  const std::string path = dir_ / "cancel.db";
  sqlite3* db = MakeModeDb(path, 2000);  // ~2 s at 1 MB/s: cancelled long before
  std::string error;
  const std::string id = Query(
      db, "SELECT cowbackup_start(" + Quote(dir_ / "c.cowbak") + ", 'main', '{\"max_rate_mb\":1}')",
      &error);
  ASSERT_EQ(error, "");
  sqlite3* writer = Open(path);
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(Exec(writer, "UPDATE t SET v = randomblob(1000) WHERE id % 7 = " + std::to_string(i)), "");
  }
  ASSERT_EQ(Exec(writer, "PRAGMA wal_checkpoint(TRUNCATE)"), "");  // a no-op in rollback mode
  EXPECT_GT(QueryInt(db, "SELECT pages_preserved FROM cowbackup_jobs WHERE id = " + id), 0);
  EXPECT_EQ(Temporaries().size(), 2u) << "a temporary archive and a snapshot volume";
  EXPECT_EQ(Query(db, "SELECT cowbackup_cancel(" + id + ")"), "1");
  Query(db, "SELECT cowbackup_wait(" + id + ")", &error);
  EXPECT_NE(error.find("cancelled"), std::string::npos) << error;
  EXPECT_EQ(Query(db, "SELECT state FROM cowbackup_jobs WHERE id = " + id), "cancelled");
  EXPECT_FALSE(Exists(dir_ / "c.cowbak"));
  EXPECT_EQ(Temporaries(), std::vector<std::string>{});
  EXPECT_EQ(Query(writer, "PRAGMA integrity_check"), "ok");
  sqlite3_close(writer);
  sqlite3_close(db);
}

TEST_F(SqlTest, RefusedInsideATransactionThatReadTheDatabase) {
  sqlite3* db = MakeDb(dir_ / "txn.db", 10);
  ASSERT_EQ(Exec(db, "BEGIN; SELECT count(*) FROM t;"), "");
  std::string error = Backup(db, dir_ / "txn.cowbak");
  EXPECT_NE(error.find("inside a transaction"), std::string::npos) << error;
  ASSERT_EQ(Exec(db, "COMMIT"), "");
  // SELECT cowbackup() FROM t would hold a read transaction: refused too.
  Query(db, "SELECT cowbackup(" + Quote(dir_ / "txn.cowbak") + ") FROM t LIMIT 1", &error);
  EXPECT_NE(error.find("inside a transaction"), std::string::npos) << error;
  EXPECT_FALSE(Exists(dir_ / "txn.cowbak"));
  sqlite3_close(db);
}

TEST_P(SqlModeTest, SynchronousCallHoldsNoLockThatBlocksWriters) {
  // While SELECT cowbackup() copies (throttled to ~1 s), another connection
  // keeps committing with a short busy timeout: it must never be refused.
  const std::string path = dir_ / "nolock.db";
  sqlite3* db = MakeModeDb(path, 2000 / kScale);
  std::atomic<bool> done{false};
  std::string error;
  std::thread backup([&] {
    Query(db, "SELECT cowbackup(" + Quote(dir_ / "nl.cowbak") + ", 'main', '{\"max_rate_mb\":" +
                  std::to_string(2 / kScale + 1) + "}')",
          &error);
    done = true;
  });
  sqlite3* writer = Open(path);
  sqlite3_busy_timeout(writer, 200);
  int commits = 0;
  while (!done.load()) {
    ASSERT_EQ(Exec(writer, "UPDATE t SET v = randomblob(1000) WHERE id = " +
                               std::to_string(commits % 100 + 1)),
              "");
    commits++;
  }
  backup.join();
  EXPECT_EQ(error, "");
  EXPECT_GT(commits, 10);
  sqlite3_close(writer);
  sqlite3_close(db);
}

TEST_P(SqlModeTest, BeginLockIsNotStarvedByBackToBackWriters) {
  // A writer commits back to back with no pause. The backup's begin-time
  // (and end) SHARED lock must fit between its PENDING/EXCLUSIVE phases:
  // the writer's next commit waits at the begin-time gate for it
  // (sqlite_t0_wait_test checks the gate itself). The bound is generous:
  // the commit in progress must end first, and one commit's syncs took
  // over 100 ms on a loaded machine.
  const std::string path = dir_ / "starve.db";
  sqlite3* db = MakeModeDb(path, 500 / kScale);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> commits{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 1; w++) {
    writers.emplace_back([&] {
      sqlite3* conn = Open(path);
      sqlite3_busy_timeout(conn, 5000);
      for (int i = 0; !stop.load(); i++) {
        ASSERT_EQ(Exec(conn, "UPDATE t SET v = randomblob(1000) WHERE id = " +
                                 std::to_string(i % 400 + 1)),
                  "");
        commits++;
      }
      sqlite3_close(conn);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (commits.load() < 20 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  const bool started = commits.load() >= 20;
  EXPECT_TRUE(started) << "the writer never got going";
  for (int i = 0; started && i < 10; i++) {
    EXPECT_EQ(Backup(db, dir_ / ("starve" + std::to_string(i) + ".cowbak"), "main",
                     "{\"busy_timeout_ms\":5000}"),
              "")
        << "backup " << i;
  }
  stop = true;
  for (auto& t : writers) t.join();
  sqlite3_close(db);
}

TEST_F(SqlTest, LoadingTwiceIsHarmlessAndVfsNameIsPrefixed) {
  sqlite3* db = MakeDb(dir_ / "twice.db", 10);
  sqlite3_enable_load_extension(db, 1);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_load_extension(db, (BuildDir() + "/cowbackup").c_str(), nullptr, &err), SQLITE_OK)
      << (err ? err : "");
  sqlite3_free(err);
  EXPECT_EQ(std::string(sqlite3_vfs_find(nullptr)->zName), "cowbackup");
  char* name = nullptr;
  ASSERT_EQ(sqlite3_file_control(db, "main", SQLITE_FCNTL_VFSNAME, &name), SQLITE_OK);
  EXPECT_EQ(std::string(name ? name : "").rfind("cowbackup/", 0), 0u) << (name ? name : "");
  sqlite3_free(name);
  EXPECT_EQ(Backup(db, dir_ / "twice.cowbak"), "");
  sqlite3_close(db);
}

}  // namespace
}  // namespace cowbackup::testing
