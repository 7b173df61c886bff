// The embedded C++ API (include/cowbackup/sqlite.hpp), linked in: register,
// start, watch, wait, cancel; one per-file state shared by connections.
// ApiModeTest runs what must hold in every journal mode in DELETE and WAL
// mode (issue 11, item 6).
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstring>
#include <fstream>
#include <thread>

#include "backup/no_new_threads.h"
#include "cowbackup/sqlite.hpp"
#include "engine/sync_point.h"
#include "sqlite/sqlite_test_util.h"
#include "tests/backup/inert_text.h"
#include "test_util/sync_points.h"
#include "vfs/file_state.h"

namespace cowbackup::testing {
namespace {

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cowbackup::sqlite::RegisterVfs().ok());
    ASSERT_TRUE(cowbackup::sqlite::RegisterVfs().ok());  // idempotent
  }
  TempDir dir_;
};

class ApiModeTest : public ApiTest, public ::testing::WithParamInterface<const char*> {
 protected:
  bool wal() const { return std::string(GetParam()) == "WAL"; }
};

INSTANTIATE_TEST_SUITE_P(JournalModes, ApiModeTest, ::testing::Values("DELETE", "WAL"),
                         [](const auto& info) { return std::string(info.param); });

TEST_P(ApiModeTest, StartWatchWaitWithWritesFromAnotherConnection) {
  const std::string path = dir_ / "api.db";
  sqlite3* db = MakeDbInMode(path, 3000, GetParam());
  ASSERT_TRUE(cowbackup::sqlite::OpenedThroughShim(db, "main"));
  const std::string before = ImageNow(path);
  BackupOptions options;
  options.segment_pages = 8;
  options.max_rate_mb = 6;
  uint64_t id = 0;
  Status s = cowbackup::sqlite::StartBackup(db, "main", dir_ / "api.cowbak", options, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  // A second connection to the same file shares the per-file state: its
  // writes are intercepted by the job started from the first.
  sqlite3* writer = Open(path);
  for (int i = 0; i < 30; i++) {
    ASSERT_EQ(Exec(writer, "UPDATE t SET v = randomblob(1000) WHERE id % 29 = " + std::to_string(i % 29)), "");
    // WAL mode: a checkpoint writes the file (a no-op in rollback mode).
    if (i % 10 == 0) ASSERT_EQ(Exec(writer, "PRAGMA wal_checkpoint(PASSIVE)"), "");
  }
  cowbackup::sqlite::JobInfo info;
  ASSERT_TRUE(cowbackup::sqlite::GetJob(id, &info).ok());
  EXPECT_EQ(info.database, path);
  EXPECT_EQ(info.schema, "main");
  EXPECT_GT(info.summary.progress.pages_total, 0u);
  bool listed = false;
  for (const auto& j : cowbackup::sqlite::ListJobs()) listed |= j.id == id;
  EXPECT_TRUE(listed);
  Summary summary;
  s = cowbackup::sqlite::WaitBackup(id, &summary);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(summary.state, JobState::kDone);
  EXPECT_GT(summary.progress.pages_preserved, 0u);
  ASSERT_TRUE(RestoreTo(dir_ / "api.cowbak", dir_ / "api.restored").ok());
  EXPECT_TRUE(ReadFile(dir_ / "api.restored") == before);
  EXPECT_NE(cowbackup::sqlite::SummaryJson(summary, id).find("\"state\":\"done\""), std::string::npos);
  sqlite3_close(writer);
  sqlite3_close(db);
}

// The shim reports a connection's EXCLUSIVE lock, which in rollback mode
// spans a commit's I/O, to the file's hook: what a yield_to_commits backup
// waits out. RESERVED (a write transaction still in memory) is not a commit.
TEST_F(ApiTest, ExclusiveLockIsReportedAsACommit) {
  const std::string path = dir_ / "commits.db";
  sqlite3* db = Open(path);
  ASSERT_EQ(MakeTable(db, 10), "");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  using cowbackup::sqlite::FileState;
  FileState* fs = FileState::Acquire(st.st_dev, st.st_ino, path, sqlite3_vfs_find("unix"));
  const CommitSignal& commits = fs->hook.commits;
  EXPECT_FALSE(commits.active());
  ASSERT_EQ(Exec(db, "BEGIN IMMEDIATE; UPDATE t SET v = randomblob(10) WHERE id = 1"), "");
  EXPECT_FALSE(commits.active());
  ASSERT_EQ(Exec(db, "COMMIT"), "");
  EXPECT_FALSE(commits.active());
  ASSERT_EQ(Exec(db, "BEGIN EXCLUSIVE"), "");
  EXPECT_TRUE(commits.active());
  ASSERT_EQ(Exec(db, "ROLLBACK"), "");
  EXPECT_FALSE(commits.active());
  // A second connection holding EXCLUSIVE when it closes (rolled back).
  sqlite3* other = Open(path);
  ASSERT_EQ(Exec(other, "BEGIN EXCLUSIVE"), "");
  EXPECT_TRUE(commits.active());
  sqlite3_close(other);
  EXPECT_FALSE(commits.active());
  FileState::Release(fs);
  sqlite3_close(db);
}

TEST_P(ApiModeTest, SynchronousBackupAndCancel) {
  const std::string path = dir_ / "sync.db";
  sqlite3* db = Open(path);
  ASSERT_EQ(Exec(db, std::string("PRAGMA journal_mode=") + GetParam()), "");
  ASSERT_EQ(Exec(db, "CREATE TABLE t(v); INSERT INTO t SELECT randomblob(4000) FROM "
                     "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 1000) "
                     "SELECT i FROM c)"),
            "");
  Summary summary;
  uint64_t id = 0;
  Status s = cowbackup::sqlite::Backup(db, "main", dir_ / "sync.db.bak", {}, &summary, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(id, 0u);
  EXPECT_EQ(summary.progress.pages_done, summary.progress.pages_total);

  BackupOptions slow;
  slow.max_rate_mb = 0.5;
  s = cowbackup::sqlite::StartBackup(db, "main", dir_ / "cancelled.cowbak", slow, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(cowbackup::sqlite::CancelBackup(id).ok());
  s = cowbackup::sqlite::WaitBackup(id, &summary);
  EXPECT_TRUE(s.IsCancelled()) << s.ToString();
  EXPECT_EQ(summary.state, JobState::kCancelled);
  EXPECT_FALSE(Exists(dir_ / "cancelled.cowbak"));
  for (const std::string& name : dir_.list()) {
    EXPECT_EQ(name.find(".cowtmp-"), std::string::npos) << name;
    EXPECT_EQ(name.find(".cowsnap"), std::string::npos) << name;
  }
  EXPECT_EQ(cowbackup::sqlite::CancelBackup(999999).code(), Status::Code::kNotFound);
  sqlite3_close(db);
}

// yield_to_commits holds the copier's destination writes while a connection
// of this process commits: in rollback mode while it holds EXCLUSIVE, in WAL
// mode while it holds the WAL write lock (BEGIN EXCLUSIVE takes either at
// once and keeps it to COMMIT). The copier waits at its first segment until
// the transaction holds it, then yields (at most max_yield, 10 ms, at a
// time); the transaction commits once the copier has come to its second
// yield, so the first lasted its 10 ms. The copy is still T0.
TEST_P(ApiModeTest, YieldToCommitsWaitsWhileAConnectionHoldsTheCommitLock) {
  const std::string path = dir_ / "yield.db";
  sqlite3* db = MakeDbInMode(path, 1000, GetParam());
  const std::string before = ImageNow(path);
  sqlite3* writer = Open(path);
  std::mutex mu;
  std::condition_variable cv;
  bool parked = false, released = false;
  int yields = 0;
  test::SyncPointGuard guard;
  sync::SetCallback([&](const char* name) {
    std::unique_lock<std::mutex> lock(mu);
    if (strcmp(name, "CopyJob::yield:waiting") == 0) {
      yields++;
      cv.notify_all();
    } else if (strcmp(name, "CopyJob::copy:published") == 0 && !parked) {
      parked = true;
      cv.notify_all();
      cv.wait(lock, [&] { return released; });
    }
  });
  BackupOptions options;
  options.yield_to_commits = true;
  options.segment_pages = 8;
  uint64_t id = 0;
  Status s = cowbackup::sqlite::StartBackup(db, "main", dir_ / "yield.cowbak", options, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return parked; });
  lock.unlock();
  ASSERT_EQ(Exec(writer, "BEGIN EXCLUSIVE; UPDATE t SET v = randomblob(1000) WHERE id % 13 = 0"), "");
  lock.lock();
  released = true;
  cv.notify_all();
  const bool yielded = cv.wait_for(lock, std::chrono::seconds(60), [&] { return yields >= 2; });
  lock.unlock();
  EXPECT_TRUE(yielded) << "the copier did not yield to the open transaction";
  ASSERT_EQ(Exec(writer, "COMMIT"), "");
  Summary summary;
  s = cowbackup::sqlite::WaitBackup(id, &summary);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(summary.progress.yield_ms, 0u);
  ASSERT_TRUE(RestoreTo(dir_ / "yield.cowbak", dir_ / "yield.restored").ok());
  EXPECT_TRUE(ReadFile(dir_ / "yield.restored") == before);
  sqlite3_close(writer);
  sqlite3_close(db);
}

// The end check compares the file's change counter with the shim's under
// one SHARED lock. A writer committing in the middle of it (here: started
// at the sync point between reading the header and comparing) must wait
// for the lock, not move the shim's counter past the value read and fail
// the backup with a false "write bypassed the shim".
TEST_F(ApiTest, CommitDuringTheEndCheckIsNotAForeignWrite) {
  const std::string path = dir_ / "endcheck.db";
  sqlite3* db = Open(path);
  ASSERT_EQ(MakeTable(db, 200), "");
  sqlite3* writer = Open(path);
  sqlite3_busy_timeout(writer, 10000);
  std::thread committer;
  std::atomic<bool> committed{false};
  sync::SetCallback([&](const char* name) {
    if (strcmp(name, "sqlite::EndCheck:before_compare") != 0 || committer.joinable()) return;
    committer = std::thread([&] {
      EXPECT_EQ(Exec(writer, "UPDATE t SET v = randomblob(1000) WHERE id = 1"), "");
      committed = true;
    });
    // Long enough for the commit to land, were the lock not held.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  });
  Summary summary;
  const Status s = cowbackup::sqlite::Backup(db, "main", dir_ / "endcheck.cowbak", {}, &summary);
  sync::SetCallback(nullptr);
  ASSERT_TRUE(committer.joinable()) << "the end check's sync point was not reached";
  committer.join();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(committed);
  sqlite3_close(writer);
  sqlite3_close(db);
}

TEST_F(ApiTest, DatabaseOpenedWithAnotherVfsIsRefused) {
  sqlite3* db = Open("file:" + (dir_ / "other.db") + "?vfs=unix");
  ASSERT_EQ(Exec(db, "CREATE TABLE t(a)"), "");
  EXPECT_FALSE(cowbackup::sqlite::OpenedThroughShim(db, "main"));
  uint64_t id = 0;
  Status s = cowbackup::sqlite::StartBackup(db, "main", dir_ / "o.cowbak", {}, &id);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.ToString().find("not opened through the cowbackup VFS"), std::string::npos);
  sqlite3_close(db);
}

// StartBackup when no thread can be created: the error, and a job that
// ended cancelled with nothing at its destination and the file free for
// the next backup.
TEST_F(ApiTest, StartWithoutAThreadEndsTheJobCancelled) {
  const std::string path = dir_ / "nothread.db";
  sqlite3* db = Open(path);
  ASSERT_EQ(MakeTable(db, 100), "");
  uint64_t id = 0;
  Status s;
  {
    cowbackup::test::NoNewThreads no_threads;
    s = cowbackup::sqlite::StartBackup(db, "main", dir_ / "nothread.cowbak", {}, &id);
  }
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("start backup thread"), std::string::npos) << s.ToString();
  ASSERT_GT(id, 0u);
  Summary summary;
  EXPECT_TRUE(cowbackup::sqlite::WaitBackup(id, &summary).IsCancelled());
  EXPECT_EQ(summary.state, JobState::kCancelled);
  EXPECT_FALSE(Exists(dir_ / "nothread.cowbak"));
  s = cowbackup::sqlite::Backup(db, "main", dir_ / "nothread.cowbak", {}, &summary);
  EXPECT_TRUE(s.ok()) << s.ToString();
  sqlite3_close(db);
}

// The limits every front end shares (backup/options.h), named as the
// BackupOptions field. A tiny positive rate used to run unthrottled, and
// 2e6 MB/s and a two-day busy timeout were accepted here but not by SQL.
TEST_F(ApiTest, OptionsOutsideTheSharedLimitsAreRefused) {
  sqlite3* db = Open(dir_ / "limits.db");
  ASSERT_EQ(MakeTable(db, 10), "");
  const std::string rate = "option max_rate_mb: must be 0 (no limit) or between 0.001 and 1000000 (MB/s)";
  const std::pair<BackupOptions, std::string> cases[] = {
      {[] { BackupOptions o; o.max_rate_mb = 1e-300; return o; }(), rate},
      {[] { BackupOptions o; o.max_rate_mb = 2e6; return o; }(), rate},
      {[] { BackupOptions o; o.busy_timeout_ms = 86400001; return o; }(),
       "option busy_timeout_ms: must be an integer between 0 and 86400000"},
      {[] { BackupOptions o; o.pace = 85; return o; }(), "option pace: must be 0 (off) or a share between 0.05 and 1"},
  };
  for (const auto& [options, message] : cases) {
    uint64_t id = 0;
    Status s = cowbackup::sqlite::StartBackup(db, "main", dir_ / "limits.cowbak", options, &id);
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
    EXPECT_EQ(s.ToString(), message);
    s = cowbackup::sqlite::Backup(db, "main", dir_ / "limits.cowbak", options, nullptr);
    EXPECT_EQ(s.ToString(), message);
    EXPECT_FALSE(Exists(dir_ / "limits.cowbak"));
  }
  sqlite3_close(db);
}

// SummaryJson (what cowbackup() and cowbackup_wait() return) is valid UTF-8
// JSON whatever the error names: checked by Debian's python3 json module,
// strictly (the bytes must decode as UTF-8).
TEST_F(ApiTest, SummaryJsonIsValidUtf8JsonWhateverTheErrorHolds) {
  Summary summary;
  summary.state = JobState::kFailed;
  summary.error = "open: /tmp/\"q\"\\" + test::kTitleSeq + test::kC1Csi + test::kBadUtf8;
  const std::string json = cowbackup::sqlite::SummaryJson(summary, 7);
  EXPECT_TRUE(test::InertOnATerminal(json)) << json;
  std::ofstream(dir_ / "summary.json", std::ios::binary) << json;
  std::ofstream(dir_ / "check.py") <<
      "import json,sys\n"
      "d = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))\n"
      "sys.exit(0 if d['job_id'] == 7 and d['state'] == 'failed' and d['error'] == "
      "'open: /tmp/\"q\"\\\\\\x1b]0;pwned\\x07\\x9b' + '\\ufffd' * 9 else 3)\n";
  const int rc =
      system(("/usr/bin/python3 '" + (dir_ / "check.py") + "' '" + (dir_ / "summary.json") + "'").c_str());
  EXPECT_EQ(rc, 0) << json;
}

}  // namespace
}  // namespace cowbackup::testing
