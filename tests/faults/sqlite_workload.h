// The committed-prefix SQLite workload for fault tests: writer threads
// committing through the shim, and a fixture with a database ready for it
// (tests/sqlite/sqlite_test_util.h has the workload itself).
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
  int64_t commits() const { return counters_.finished.load(); }
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
    testing::Exec(db, "PRAGMA synchronous = OFF");
    while (!stop_) {
      const auto t0 = std::chrono::steady_clock::now();
      std::string e;
      const bool ok = testing::CommitOne(db, w, kFillerRows, &counters_, &e);
      const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - t0).count();
      int64_t prev = longest_ms_.load();
      while (ms > prev && !longest_ms_.compare_exchange_weak(prev, ms)) {
      }
      if (!ok) {
        Fail("commit failed: " + e);
        break;
      }
    }
    sqlite3_close(db);
  }
  void Fail(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = e;
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  testing::CommitCounters counters_;
  std::atomic<int64_t> longest_ms_{0};
  std::mutex mu_;
  std::string error_;
};

// A database holding the workload (kFillerRows rows of 1500 bytes, ~1.2 MB)
// in a scratch directory, and the shim registered (not as the default).
class SqliteWorkloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sqlite::RegisterVfs(/*make_default=*/false).ok());
    dir_ = MakeTempDir("cowbackup-sqlfault");
    db_ = dir_ + "/app.db";
    sqlite3* db = testing::Open(db_, "unix");
    testing::CreateWorkload(db, kFillerRows, 1500);
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

  std::string dir_, db_;
  int64_t committed_ = 0;  // commits of the writers already checked
};

}  // namespace cowbackup::faults
