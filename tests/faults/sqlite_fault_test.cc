// Faults at the SQLite level, from a real file system: the snapshot volume
// (snapshot_dir) or the destination sits on a tiny tmpfs, so the backup runs
// into a real ENOSPC while writer connections keep committing through the
// shim. The tmpfs size is swept upward until the backup fits, so the disk
// fills at every stage: creating the volume or temporary, preserving the
// k-th page, writing the k-th archive block, the trailer, fsync.
// For every size:
//   - the backup fails with Status::kNoSpace naming the full file
//     ("No space left on device"), or succeeds with a consistent copy;
//   - every application COMMIT succeeds, none waits longer than a bound;
//   - the database passes integrity_check and holds every committed
//     transaction (an exact committed prefix 1..K, K = commits made);
//   - nothing is at the destination, the tmpfs is empty again (temporary
//     archive and snapshot volume removed).
// Needs mount(2) (root, as on the CI machine); skipped, saying why, if not.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <chrono>
#include <thread>

#include "backup/output.h"
#include "backup/restore.h"
#include "cowbackup/sqlite.hpp"
#include "faults/page_workload.h"
#include "sqlite/sqlite_test_util.h"

namespace cowbackup::faults {
namespace {

using testing::Exec;
using testing::Query;
using testing::QueryInt;

// A tmpfs of `kib` KiB at `dir`, unmounted when it goes.
class TinyTmpfs {
 public:
  TinyTmpfs(const std::string& dir, int kib) : dir_(dir) {
    ::mkdir(dir.c_str(), 0700);
    const std::string opts = "size=" + std::to_string(kib) + "k,mode=0700";
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    if (!mounted_) error_ = strerror(errno);
  }
  ~TinyTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  const std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// Commits the committed-prefix transaction in a loop through the shim;
// counts commits, records any failure and the longest commit.
class Writers {
 public:
  Writers(const std::string& path, int count) {
    for (int w = 0; w < count; w++) {
      threads_.emplace_back([this, path, w] { Loop(path, w); });
    }
  }
  ~Writers() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t commits() const { return commits_.load(); }
  int64_t longest_ms() const { return longest_ms_.load(); }
  std::string error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  void Loop(const std::string& path, int w) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, sqlite::kVfsName) != SQLITE_OK) {
      Fail("open: " + std::string(sqlite3_errmsg(db)));
      sqlite3_close(db);
      return;
    }
    sqlite3_busy_timeout(db, 30000);
    // No fsync per commit: more commits, more pages to preserve.
    Exec(db, "PRAGMA synchronous = OFF");
    const std::string sql =
        "BEGIN IMMEDIATE;"
        "INSERT INTO log SELECT n + 1, " + std::to_string(w) + ", randomblob(50) FROM counter WHERE id = 1;"
        "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1;"
        "UPDATE filler SET data = randomblob(length(data)) WHERE id = abs(random()) % 600 + 1;"
        "COMMIT;";
    while (!stop_) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::string e = Exec(db, sql);
      const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - t0).count();
      int64_t prev = longest_ms_.load();
      while (ms > prev && !longest_ms_.compare_exchange_weak(prev, ms)) {
      }
      if (!e.empty()) {
        Fail("commit failed: " + e);
        Exec(db, "ROLLBACK");
        break;
      }
      commits_++;
    }
    sqlite3_close(db);
  }
  void Fail(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = e;
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> commits_{0};
  std::atomic<int64_t> longest_ms_{0};
  std::mutex mu_;
  std::string error_;
};

class SqliteFaultTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sqlite::RegisterVfs(/*make_default=*/false).ok());
    dir_ = MakeTempDir("cowbackup-sqlfault");
    db_ = dir_ + "/app.db";
    sqlite3* db = testing::Open(db_, "unix");
    testing::CreateWorkload(db, 600, 1500);
    sqlite3_close(db);
  }
  void TearDown() override { RemoveTree(dir_); }

  std::string dir_, db_;
};

// Param: true = the snapshot volume fills the disk, false = the archive.
TEST_P(SqliteFaultTest, FullDiskFailsTheBackupNeverACommit) {
  const bool volume_side = GetParam();
  const std::string small = dir_ + "/small";
  int faults = 0, sizes = 0;
  // 4 KiB steps at first (every stage of a volume or an archive header),
  // then coarser: the archive of this ~1.2 MiB database needs ~1.3 MiB.
  for (int kib = 4; kib <= 4096; kib += kib < 64 ? 4 : kib < 512 ? 32 * kSanitizerSlowdown : 128) {
    TinyTmpfs fs(small, kib);
    if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << fs.error();
    const std::string dest = volume_side ? dir_ + "/app.cowbak" : small + "/app.cowbak";
    BackupOptions options;
    options.snapshot_dir = volume_side ? small : dir_;
    // Slow enough that writers preserve many pages meanwhile (~150 ms, or
    // ~40 ms when only the archive side is tested).
    options.max_rate_mb = volume_side ? 8 : 30;
    options.segment_pages = 16;
    options.variant = kib % 8 ? Variant::kSnapshotFirst : Variant::kOverlayAtEnd;

    Writers writers(db_, 4);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    sqlite3* conn = nullptr;
    ASSERT_EQ(sqlite3_open_v2(db_.c_str(), &conn, SQLITE_OPEN_READWRITE, sqlite::kVfsName), SQLITE_OK);
    Summary summary;
    const Status s = sqlite::Backup(conn, "main", dest, options, &summary);
    sqlite3_close(conn);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    writers.Stop();
    sizes++;

    EXPECT_EQ(writers.error(), "") << "tmpfs " << kib << " KiB";
    EXPECT_LT(writers.longest_ms(), 10000) << "a commit waited on the failing backup";
    // Every committed transaction is in the database, consistently.
    {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open_v2(db_.c_str(), &db, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
      std::string integrity_error;
      std::string integrity = Query(db, "PRAGMA integrity_check", &integrity_error);
      if (!integrity_error.empty()) integrity = integrity_error;
      EXPECT_EQ(integrity, "ok");
      const int64_t n = QueryInt(db, "SELECT n FROM counter");
      EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM log"), n);
      EXPECT_EQ(QueryInt(db, "SELECT max(seq) FROM log"), n);
      EXPECT_EQ(QueryInt(db, "SELECT sum FROM counter"), n * (n + 1) / 2);
      sqlite3_close(db);
    }
    if (!s.ok()) {
      faults++;
      EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
      EXPECT_NE(s.ToString().find("No space left on device"), std::string::npos) << s.ToString();
      EXPECT_NE(s.ToString().find(small), std::string::npos) << "names the full file: " << s.ToString();
      EXPECT_FALSE(PathExists(dest)) << "a failed backup left its destination";
      EXPECT_EQ(summary.state, JobState::kFailed);
    } else {
      ArchiveReport report;
      const Status v = VerifyArchive(dest, &report);
      EXPECT_TRUE(v.ok()) << v.ToString();
      ::unlink(dest.c_str());
    }
    // The tmpfs is empty again: temporary archive and volume removed.
    EXPECT_EQ(ListDir(small), std::vector<std::string>{}) << "tmpfs " << kib << " KiB";
    if (HasFailure()) {
      fprintf(stderr, "tmpfs %d KiB, %s side: %s\n", kib, volume_side ? "volume" : "archive",
              s.ToString().c_str());
      return;
    }
    if (s.ok()) break;
  }
  EXPECT_GT(faults, 0) << "the disk never filled: the sweep tested nothing";
  fprintf(stderr, "%s side: %d tmpfs sizes, %d real ENOSPC failures, every commit kept\n",
          volume_side ? "snapshot volume" : "archive", sizes, faults);
}

INSTANTIATE_TEST_SUITE_P(Side, SqliteFaultTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "SnapshotVolume" : "Archive");
                         });

}  // namespace
}  // namespace cowbackup::faults
