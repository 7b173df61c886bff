// The committed-prefix SQLite workload for fault tests: writer threads
// committing through the shim, and a fixture with a database ready for it
// (tests/sqlite/sqlite_test_util.h has the workload itself), in rollback or
// WAL mode.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cowbackup/sqlite.hpp"
#include "engine/posix_file.h"
#include "faults/page_workload.h"
#include "sqlite/sqlite_test_util.h"

namespace cowbackup::faults {

inline constexpr int kFillerRows = 600;

// Commits the committed-prefix transaction in a loop through the shim,
// without fsync (more commits, more pages to preserve); counts commits,
// records the first failure and the longest commit.
//
// With `checkpoint` (a WAL database), the writers also checkpoint, so that
// during a backup backfills write the main file and WAL restarts write over
// the frames the backup needs: an automatic checkpoint every
// kAutoCheckpointPages pages, and after every kCheckpointEvery-th commit an
// explicit one, PASSIVE, FULL, RESTART and TRUNCATE in turn. Every
// checkpoint must succeed (SQLITE_OK, not busy), like every commit. Commits
// and checkpoints take turns under one mutex: SQLite 3.40's WAL-reset bug
// (docs/SQLITE.md) needs a checkpoint and another connection's WAL write at
// the same instant, and this keeps its corruption from passing for ours.
class Writers {
 public:
  static constexpr int kAutoCheckpointPages = 40;
  static constexpr int kCheckpointEvery = 8;

  Writers(const std::string& path, int count, bool checkpoint = false) : checkpoint_(checkpoint) {
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
  int64_t commits() const { return counters_.finished.load(); }
  int64_t longest_ms() const { return longest_ms_.load(); }
  int64_t checkpoints() const { return checkpoints_.load(); }
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
    testing::Exec(db, "PRAGMA synchronous = OFF");
    if (checkpoint_) {
      testing::Exec(db, "PRAGMA wal_autocheckpoint = " + std::to_string(kAutoCheckpointPages));
    }
    while (!stop_) {
      const auto t0 = std::chrono::steady_clock::now();
      std::string e;
      bool ok;
      if (checkpoint_) {
        std::lock_guard<std::mutex> turn(turn_mu_);
        ok = testing::CommitOne(db, w, kFillerRows, &counters_, &e);
        const int64_t n = counters_.finished.load();
        if (ok && n % kCheckpointEvery == 0) ok = Checkpoint(db, int(n / kCheckpointEvery % 4), &e);
      } else {
        ok = testing::CommitOne(db, w, kFillerRows, &counters_, &e);
      }
      const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - t0).count();
      int64_t prev = longest_ms_.load();
      while (ms > prev && !longest_ms_.compare_exchange_weak(prev, ms)) {
      }
      if (!ok) {
        Fail("commit failed: " + e);
        break;
      }
      // Unpaced, WAL commits (appends) came ~20 times as fast as rollback
      // ones here, and the database outgrew the full-disk sweep's sizes.
      if (checkpoint_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    sqlite3_close(db);
  }
  void Fail(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = e;
  }
  // An explicit checkpoint; mode 0..3 is PASSIVE, FULL, RESTART, TRUNCATE.
  bool Checkpoint(sqlite3* db, int mode, std::string* error) {
    static constexpr int kModes[] = {SQLITE_CHECKPOINT_PASSIVE, SQLITE_CHECKPOINT_FULL,
                                     SQLITE_CHECKPOINT_RESTART, SQLITE_CHECKPOINT_TRUNCATE};
    const int rc = sqlite3_wal_checkpoint_v2(db, "main", kModes[mode], nullptr, nullptr);
    if (rc != SQLITE_OK) {
      *error = "checkpoint mode " + std::to_string(mode) + ": " + sqlite3_errmsg(db);
      return false;
    }
    checkpoints_.fetch_add(1);
    return true;
  }

  const bool checkpoint_;
  std::mutex turn_mu_;  // commits and checkpoints take turns (class comment)
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  testing::CommitCounters counters_;
  std::atomic<int64_t> longest_ms_{0};
  std::atomic<int64_t> checkpoints_{0};
  std::mutex mu_;
  std::string error_;
};

// A database holding the workload (kFillerRows rows of 1500 bytes, ~1.2 MB)
// in a scratch directory, and the shim registered (not as the default). A
// subclass that sets wal_ before SetUp() gets it in WAL mode.
class SqliteWorkloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sqlite::RegisterVfs(/*make_default=*/false).ok());
    dir_ = MakeTempDir("cowbackup-sqlfault");
    db_ = dir_ + "/app.db";
    sqlite3* db = testing::Open(db_, "unix");
    testing::CreateWorkload(db, kFillerRows, 1500);
    if (wal_) {
      EXPECT_EQ(testing::Query(db, "PRAGMA journal_mode = WAL"), "wal");
    }
    sqlite3_close(db);
  }
  void TearDown() override { RemoveTree(dir_); }

  // One backup of the database, through a connection of the shim.
  Status BackupThroughShim(const std::string& dest, const BackupOptions& options, Summary* summary,
                           uint64_t* job_id = nullptr) {
    sqlite3* conn = nullptr;
    if (sqlite3_open_v2(db_.c_str(), &conn, SQLITE_OPEN_READWRITE, sqlite::kVfsName) != SQLITE_OK) {
      sqlite3_close(conn);
      return Status::IOError("cannot open through the shim", db_);
    }
    const Status s = sqlite::Backup(conn, "main", dest, options, summary, job_id);
    sqlite3_close(conn);
    return s;
  }

  // Every commit made so far (by these writers and earlier ones) is in the
  // database, consistently: an exact committed prefix 1..K.
  void ExpectEveryCommitKept(const Writers& writers) {
    committed_ += writers.commits();
    std::string why;
    EXPECT_EQ(testing::CommittedPrefix(db_, &why), committed_) << why;
  }

  bool wal_ = false;
  std::string dir_, db_;
  int64_t committed_ = 0;  // commits of the writers already checked
};

}  // namespace cowbackup::faults
