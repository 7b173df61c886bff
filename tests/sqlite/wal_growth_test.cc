// A WAL-mode backup does not starve checkpoints (issue 11, Tests, bullet 2):
// under a continuous writer with the default autocheckpoint, the -wal
// file's peak size during a throttled backup that takes >= 10 s is at most
// 1.5x its peak over an equal period without one. The exact ratio is
// bench/sqlite's; this is the correctness property.
//
// Why it holds on a loaded machine: the writer runs the autocheckpoint
// itself, right after its commit, so a slow machine slows the writer, not
// the checkpoints relative to it; the peak is set by the autocheckpoint
// threshold (1000 pages plus the commit that crossed it), not by speed.
// A backup that held a read mark (VACUUM INTO, .backup, Litestream) would
// stop the WAL from restarting and let it grow for the whole backup; the
// control period below shows that this measurement sees that growth.
//
// What could make it flaky, and what prevents it:
//   - a sampler that misses the peak: the -wal file never shrinks within a
//     period (no journal_size_limit, no TRUNCATE checkpoint; a restart
//     rewrites it from the start), so its size when the writer has stopped
//     is its peak; the sampler's maximum only guards against a shrink;
//   - a high-water mark carried from the previous period: each period
//     starts from a WAL truncated to 0 bytes with no writer running;
//   - a different load in the two periods: one writer, the same pacing (a
//     commit every kCommitInterval at most, never catching up), started
//     fresh for each period;
//   - a baseline too short to reach its steady peak: the test checks that
//     the baseline's WAL went past the autocheckpoint threshold;
//   - SQLite's WAL reset bug (3.40.1, docs/SQLITE.md): only the writer
//     checkpoints while it writes; the TRUNCATE checkpoints between periods
//     run with no writer.
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "cowbackup/sqlite.hpp"
#include "sqlite/sqlite_test_util.h"
#include "test_util/wait_for.h"

namespace cowbackup::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kPageSize = 4096;
constexpr int kRows = 5000;          // ~20 MB: one 3900-byte row per page
constexpr double kBackupSeconds = 12;  // the throttle's target; >= 10 s asked
constexpr auto kCommitInterval = std::chrono::milliseconds(4);
constexpr int kAutocheckpointPages = 1000;  // SQLite's default

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

// The application: 10-row UPDATE transactions on its own connection
// (through the shim), at most one per kCommitInterval; a writer that falls
// behind does not catch up, so no period gets a burst.
class PacedWriter {
 public:
  explicit PacedWriter(const std::string& path) {
    thread_ = std::thread([this, path] {
      sqlite3* db = Open(path);
      error_ = Exec(db, "PRAGMA synchronous=NORMAL");
      uint64_t x = 88172645463325252ull;
      auto next = Clock::now();
      while (error_.empty() && !stop_.load()) {
        std::string sql = "BEGIN IMMEDIATE;";
        for (int i = 0; i < 10; i++) {
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          sql += "UPDATE t SET v = randomblob(3900) WHERE id = " + std::to_string(x % kRows + 1) + ";";
        }
        error_ = Exec(db, sql + "COMMIT");
        commits_.fetch_add(1);
        next = std::max(next + kCommitInterval, Clock::now());
        std::this_thread::sleep_until(next);
      }
      sqlite3_close(db);
    });
  }
  // Stops and joins the writer; its error, "" if none.
  std::string Stop() {
    stop_.store(true);
    thread_.join();
    return error_;
  }
  ~PacedWriter() {
    if (thread_.joinable()) (void)Stop();
  }
  int64_t commits() const { return commits_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> commits_{0};
  std::string error_;  // the writer thread's until joined
  std::thread thread_;
};

// The largest size the -wal file had while it ran, sampled every 2 ms.
class WalSizeSampler {
 public:
  explicit WalSizeSampler(const std::string& wal) : wal_(wal) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        Sample();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  // Stops sampling; the peak, including a last sample taken now.
  uint64_t Stop() {
    stop_.store(true);
    thread_.join();
    Sample();
    return peak_.load();
  }
  ~WalSizeSampler() {
    if (thread_.joinable()) (void)Stop();
  }

 private:
  void Sample() {
    const uint64_t size = FileSize(wal_);
    uint64_t peak = peak_.load();
    while (size > peak && !peak_.compare_exchange_weak(peak, size)) {
    }
  }
  const std::string wal_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_{0};
  std::thread thread_;
};

class WalGrowthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cowbackup::sqlite::RegisterVfs().ok());
    db_ = Open(path_);
    ASSERT_EQ(Exec(db_, "PRAGMA page_size=" + std::to_string(kPageSize)), "");
    ASSERT_EQ(Query(db_, "PRAGMA journal_mode=WAL"), "wal");
    ASSERT_EQ(QueryInt(db_, "PRAGMA wal_autocheckpoint"), kAutocheckpointPages);
    ASSERT_EQ(MakeTable(db_, kRows, 3900), "");
  }
  void TearDown() override { sqlite3_close(db_); }

  // Starts a period: the WAL truncated to 0 bytes while no writer runs.
  void TruncateWal() {
    ASSERT_EQ(Query(db_, "PRAGMA wal_checkpoint(TRUNCATE)"), "0");  // 0: not busy
    ASSERT_EQ(FileSize(wal_), 0u);
  }

  // One period: a fresh writer and sampler around body(); the WAL's peak
  // in bytes, and the writer's commits in *commits.
  template <typename Body>
  uint64_t Period(Body body, int64_t* commits) {
    TruncateWal();
    WalSizeSampler sampler(wal_);
    PacedWriter writer(path_);
    body();
    EXPECT_EQ(writer.Stop(), "");
    *commits = writer.commits();
    return sampler.Stop();
  }

  TempDir dir_;
  const std::string path_ = dir_ / "app.db";
  const std::string wal_ = path_ + "-wal";
  sqlite3* db_ = nullptr;
};

TEST_F(WalGrowthTest, ThrottledBackupLeavesTheWalTheSizeItIsWithoutOne) {
  const double db_mb = double(QueryInt(db_, "PRAGMA page_count") * kPageSize) / 1e6;
  BackupOptions options;
  options.format = BackupOptions::Format::kPlain;
  options.max_rate_mb = db_mb / kBackupSeconds;
  const std::string dest = dir_ / "copy.db";

  // With the backup: the period is the backup's whole run.
  Summary summary;
  double backup_s = 0;
  int64_t commits_with = 0, commits_without = 0, commits_pinned = 0;
  const uint64_t with_backup = Period([&] {
    const auto t0 = Clock::now();
    const Status s = cowbackup::sqlite::Backup(db_, "main", dest, options, &summary);
    backup_s = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }, &commits_with);
  ASSERT_EQ(summary.state, JobState::kDone) << JobStateName(summary.state) << ": " << summary.error;
  // The throttle is a floor (engine/copy_job.cc throttle()), so a loaded
  // machine only lengthens this.
  ASSERT_GE(backup_s, 10.0);

  // Without: an equal period of the same writer.
  const uint64_t without = Period([&] {
    std::this_thread::sleep_for(std::chrono::duration<double>(backup_s));
  }, &commits_without);
  // The baseline reached its steady peak: the WAL filled to the
  // autocheckpoint threshold at least once.
  const uint64_t threshold = uint64_t(kAutocheckpointPages) * (kPageSize + 24);
  ASSERT_GE(without, threshold) << "the writer did not fill the WAL to the autocheckpoint threshold";

  // The control: a reader holding a read transaction for up to an equal
  // period pins the WAL; this measurement sees the growth that follows.
  sqlite3* reader = Open(path_);
  const uint64_t pinned = Period([&] {
    ASSERT_EQ(Exec(reader, "BEGIN; SELECT count(*) FROM t"), "");
    test::WaitFor([&] { return FileSize(wal_) > 2 * without; },
                  Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(backup_s)));
    ASSERT_EQ(Exec(reader, "COMMIT"), "");
  }, &commits_pinned);
  sqlite3_close(reader);
  EXPECT_GT(double(pinned), 1.5 * double(without)) << "the control did not see a pinned WAL grow";

  const double ratio = double(with_backup) / double(without);
  std::printf("WAL peak: %.2f MB during a %.1f s backup (%ld commits), %.2f MB without (%ld "
              "commits): %.2fx; %.2f MB with a read transaction held (%ld commits); longest "
              "write wait %.3f ms\n",
              double(with_backup) / 1e6, backup_s, long(commits_with), double(without) / 1e6,
              long(commits_without), ratio, double(pinned) / 1e6, long(commits_pinned),
              double(summary.progress.max_write_wait_us) / 1000);
  RecordProperty("wal_peak_ratio", std::to_string(ratio));
  EXPECT_LE(ratio, 1.5) << "checkpoints were starved during the backup: the WAL peaked at "
                        << with_backup << " bytes, against " << without << " without a backup";

  // The copy and the live database are both intact.
  sqlite3* copy = nullptr;
  ASSERT_EQ(sqlite3_open_v2(dest.c_str(), &copy, SQLITE_OPEN_READWRITE, "unix"), SQLITE_OK);
  EXPECT_EQ(Query(copy, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(QueryInt(copy, "SELECT count(*) FROM t"), kRows);
  sqlite3_close(copy);
  EXPECT_EQ(Query(db_, "PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace cowbackup::testing
