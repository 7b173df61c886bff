// WAL mode and writers that bypass the shim (issue 11, item 7), through the
// C++ API. A foreign process (foreign_sqlite: the plain unix VFS, nothing
// of cowbackup) commits, checkpoints or switches the journal mode while a
// backup runs; each outcome must be the exact T0 copy or a failure that
// publishes nothing (vfs/wal_tracker.h says what is detected). And the
// other side: this process's own connections, committing and running
// checkpoints of every kind during 50 backups, or closing while a backup
// runs, never raise a false alarm, and its WAL restarts over T0's frames
// give the T0 copy in both variants.
//
// "While a backup runs" is an ordering, not a rate: the copier is parked
// after its first segment (test::ParkAt) while the foreign process acts,
// so most pages are still uncopied and a write that went unnoticed would
// show in the copy.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "backup/wal_format.h"
#include "cowbackup/sqlite.hpp"
#include "sqlite/sqlite_test_util.h"
#include "test_util/sync_points.h"

extern char** environ;

namespace cowbackup::testing {
namespace {

// The foreign process: runs one line of SQL at a time (foreign_sqlite.cc).
class ForeignSqlite {
 public:
  explicit ForeignSqlite(const std::string& db) {
    int to_child[2], from_child[2];
    EXPECT_EQ(pipe2(to_child, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(from_child, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    std::string binary = BuildDir() + "/tests/sqlite/foreign_sqlite", arg = db;
    char* argv[] = {binary.data(), arg.data(), nullptr};
    EXPECT_EQ(posix_spawn(&pid_, argv[0], &fa, nullptr, argv, environ), 0) << argv[0];
    posix_spawn_file_actions_destroy(&fa);
    ::close(to_child[0]);
    ::close(from_child[1]);
    to_ = fdopen(to_child[1], "w");
    from_ = fdopen(from_child[0], "r");
  }
  ~ForeignSqlite() { Exit(); }
  ForeignSqlite(const ForeignSqlite&) = delete;
  ForeignSqlite& operator=(const ForeignSqlite&) = delete;

  // Runs `sql` (one line); returns its rows, '\n'-separated, or
  // "error MESSAGE".
  std::string Run(const std::string& sql) {
    if (to_ == nullptr) return "error: exited";
    fprintf(to_, "%s\n", sql.c_str());
    fflush(to_);
    std::string rows;
    char* line = nullptr;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, from_)) > 0) {
      std::string l(line, size_t(n) - (line[n - 1] == '\n' ? 1 : 0));
      if (l == "ok") break;
      if (l.rfind("error ", 0) == 0) {
        rows = l;
        break;
      }
      if (!rows.empty()) rows += '\n';
      rows += l.substr(4);  // "row "
    }
    free(line);
    if (n <= 0) return "error: foreign_sqlite exited";
    return rows;
  }

  // Closes its connection (the last one of the process: SQLite checkpoints
  // and deletes the WAL if it can) and waits for it to end.
  void Exit() {
    if (to_ == nullptr) return;
    fclose(to_);
    to_ = nullptr;
    int status = 0;
    EXPECT_EQ(waitpid(pid_, &status, 0), pid_);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    fclose(from_);
  }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

class WalForeignTest : public ::testing::Test {
 protected:
  static constexpr int kRows = 1500 / kScale;  // ~1 KiB each: ~kRows pages

  void SetUp() override {
    ASSERT_TRUE(sqlite::RegisterVfs().ok());
    path_ = dir_ / "app.db";
    dest_ = dir_ / "app.cowbak";
    db_ = Open(path_);
    ASSERT_EQ(Query(db_, "PRAGMA journal_mode=WAL"), "wal");
    ASSERT_EQ(MakeTable(db_, kRows), "");
    // Committed frames in the WAL at T0, written over a checkpointed base.
    ASSERT_EQ(Exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)"), "");
    ASSERT_EQ(Exec(db_, "UPDATE t SET v = randomblob(1000) WHERE id % 7 = 0"), "");
    t0_frames_ = WalFrames();
    ASSERT_GT(t0_frames_, 0);
  }
  void TearDown() override {
    park_.Release();  // a test that stopped early must not leave the copier parked
    if (db_ != nullptr) sqlite3_close(db_);
  }

  // Frames in the -wal file. It holds only the current generation's (it was
  // truncated before them), so this is what SQLite's checkpoint row counts.
  int64_t WalFrames() {
    const std::string wal = ReadFile(path_ + "-wal");
    if (wal.size() < sqlite::kWalHeaderSize) return 0;
    return int64_t((wal.size() - sqlite::kWalHeaderSize) / (sqlite::kWalFrameHeaderSize + 4096));
  }

  // Starts a backup whose copier parks after its first segment.
  uint64_t Start(BackupOptions options = {}) {
    options.segment_pages = 4;
    uint64_t id = 0;
    const Status s = sqlite::StartBackup(db_, "main", dest_, options, &id);
    EXPECT_TRUE(s.ok()) << s.ToString();
    park_.WaitUntilParked();
    return id;
  }
  Status Finish(uint64_t id, Summary* summary = nullptr) {
    park_.Release();
    Summary local;
    return sqlite::WaitBackup(id, summary != nullptr ? summary : &local);
  }

  void ExpectFailedWith(const Status& s, const std::string& what) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.ToString().find(what), std::string::npos) << s.ToString();
    EXPECT_FALSE(Exists(dest_));
    for (const std::string& name : dir_.list()) {
      EXPECT_EQ(name.find(".cowtmp-"), std::string::npos) << name;
      EXPECT_EQ(name.find(".cowsnap"), std::string::npos) << name;
    }
  }
  void ExpectCopyOf(const std::string& image) {
    ASSERT_TRUE(RestoreTo(dest_, dir_ / "restored.db").ok());
    EXPECT_TRUE(ReadFile(dir_ / "restored.db") == image) << "the copy is not the database at T0";
    sqlite3* r = Open(dir_ / "restored.db", "unix");
    EXPECT_EQ(Query(r, "PRAGMA integrity_check"), "ok");
    EXPECT_EQ(Query(r, "PRAGMA journal_mode"), "wal");
    sqlite3_close(r);
  }

  void ForeignCheckpointAfterT0(bool commit_after);

  TempDir dir_;
  std::string path_, dest_;
  sqlite3* db_ = nullptr;
  int64_t t0_frames_ = 0;
  test::ParkAt park_{"CopyJob::copy:published"};
};

constexpr const char* kBypassedWrite = "a write bypassed the cowbackup shim during the backup";
constexpr const char* kBypassedCheckpoint = "a checkpoint bypassed the cowbackup shim during the backup";

// 1. A foreign commit: the wal-index header moved with no connection of
// this process writing. Caught at the end check...
TEST_F(WalForeignTest, ForeignCommitFailsTheBackupAndPublishesNothing) {
  const uint64_t id = Start();
  ForeignSqlite foreign(path_);
  ASSERT_EQ(foreign.Run("UPDATE t SET v = randomblob(1000) WHERE id % 5 = 1"), "");
  ExpectFailedWith(Finish(id), kBypassedWrite);
}

// ... or at the next commit of this process, when it takes the write lock.
TEST_F(WalForeignTest, ForeignCommitIsCaughtAtTheNextInProcessCommit) {
  const uint64_t id = Start();
  ForeignSqlite foreign(path_);
  ASSERT_EQ(foreign.Run("UPDATE t SET v = randomblob(1000) WHERE id % 5 = 1"), "");
  sqlite3* w = Open(path_);
  ASSERT_EQ(Exec(w, "UPDATE t SET v = zeroblob(10) WHERE id = 3"), "");
  sqlite3_close(w);
  // The end check alone would pass: the header is as our commit left it.
  ExpectFailedWith(Finish(id), kBypassedWrite);
}

// 2. This process commits after T0; a foreign checkpoint copies those
// frames into the database file, over pages the copy may not have read.
// Caught at the end check, or (`commit_after`) when this process's next
// commit takes the write lock: that commit restarts the WAL, after which
// the end check alone would see nothing.
void WalForeignTest::ForeignCheckpointAfterT0(bool commit_after) {
  const uint64_t id = Start();
  sqlite3* w = Open(path_);
  ASSERT_EQ(Exec(w, "UPDATE t SET v = randomblob(1000) WHERE id % 3 = 0"), "");
  ForeignSqlite foreign(path_);
  // busy 0, and every frame of the WAL (T0's and the new ones) backfilled.
  const std::string row = foreign.Run("PRAGMA wal_checkpoint(PASSIVE)");
  const int64_t frames = WalFrames();
  EXPECT_GT(frames, t0_frames_);
  EXPECT_EQ(row, "0|" + std::to_string(frames) + "|" + std::to_string(frames));
  if (commit_after) {
    const std::string salts = ReadFile(path_ + "-wal").substr(16, 8);
    ASSERT_EQ(Exec(w, "UPDATE t SET v = zeroblob(10) WHERE id = 3"), "");
    EXPECT_NE(ReadFile(path_ + "-wal").substr(16, 8), salts) << "the WAL was not restarted";
  }
  sqlite3_close(w);
  ExpectFailedWith(Finish(id), kBypassedCheckpoint);
}

TEST_F(WalForeignTest, ForeignCheckpointOfFramesCommittedAfterT0FailsTheBackup) {
  ForeignCheckpointAfterT0(/*commit_after=*/false);
}

TEST_F(WalForeignTest, ForeignCheckpointIsCaughtBeforeAnInProcessRestartHidesIt) {
  ForeignCheckpointAfterT0(/*commit_after=*/true);
}

// 3. A foreign checkpoint that only backfills T0's frames changes nothing
// the copy reads (those pages come from the WAL). PASSIVE, FULL and
// RESTART from the foreign process, then a commit of this process that
// restarts the WAL over T0's frames and a checkpoint of this process that
// writes post-T0 pages into the file: the copy is exactly T0.
TEST_F(WalForeignTest, ForeignCheckpointOfT0FramesOnlyIsHarmless) {
  const std::string image = ImageNow(path_);
  const std::string salts_before = ReadFile(path_ + "-wal").substr(16, 8);
  const uint64_t id = Start();
  {
    ForeignSqlite foreign(path_);
    const std::string all = "0|" + std::to_string(t0_frames_) + "|" + std::to_string(t0_frames_);
    EXPECT_EQ(foreign.Run("PRAGMA wal_checkpoint(PASSIVE)"), all);
    EXPECT_EQ(foreign.Run("PRAGMA wal_checkpoint(FULL)"), all);
    EXPECT_EQ(foreign.Run("PRAGMA wal_checkpoint(RESTART)"), all);
  }  // the foreign process exits; our connection keeps the WAL
  sqlite3* w = Open(path_);
  ASSERT_EQ(Exec(w, "UPDATE t SET v = randomblob(1000) WHERE id % 3 = 0"), "");
  EXPECT_NE(ReadFile(path_ + "-wal").substr(16, 8), salts_before) << "the WAL was not restarted";
  ASSERT_EQ(Exec(w, "PRAGMA wal_checkpoint(PASSIVE)"), "");
  sqlite3_close(w);
  Summary summary;
  const Status s = Finish(id, &summary);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(summary.progress.pages_preserved, 0u);
  ExpectCopyOf(image);
}

// A foreign TRUNCATE checkpoint restarts the wal-index and empties the -wal
// file: T0's frames are gone from under the copy.
TEST_F(WalForeignTest, ForeignTruncateCheckpointFailsTheBackup) {
  const uint64_t id = Start();
  ForeignSqlite foreign(path_);
  EXPECT_EQ(foreign.Run("PRAGMA wal_checkpoint(TRUNCATE)"), "0|0|0");
  EXPECT_EQ(ReadFile(path_ + "-wal"), "");
  // The copier's next read of a T0 frame (past the end of the -wal file
  // now) usually comes before the end check; either names the bypass.
  ExpectFailedWith(Finish(id), kBypassedWrite);
}

// 4. What SQLite does once it gets EXCLUSIVE on a WAL database: leave WAL
// mode, or, closing the last connection of a process, checkpoint with no
// WAL lock taken and then delete the -wal file and unlink the -shm file.
// Either, while a backup runs, would leave the job watching a wal-index
// nobody else uses any more (found by these tests: foreign commits after
// it went unseen and a wrong copy was published; this process's own last
// close failed the backup with a false "checkpoint bypassed the shim").
// The job holds a SHARED lock on the database from T0 to its end
// (FileState::HoldShared), as every WAL connection holds one, so none of
// it happens while the job runs, even with every connection of this
// process closed; these tests close them all after T0.

// A foreign switch out of WAL mode is refused and the copy is T0.
TEST_F(WalForeignTest, ForeignSwitchOutOfWalModeIsRefusedWhileTheBackupRuns) {
  const std::string image = ImageNow(path_);
  const uint64_t id = Start();
  sqlite3_close(db_);
  db_ = nullptr;
  ForeignSqlite foreign(path_);
  EXPECT_EQ(foreign.Run("PRAGMA journal_mode=DELETE"), "error database is locked");
  EXPECT_EQ(foreign.Run("PRAGMA journal_mode"), "wal");
  const Status s = Finish(id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ExpectCopyOf(image);
}

// A foreign process's last close keeps the -wal and -shm files, so the
// commit of the next foreign process is seen.
TEST_F(WalForeignTest, AForeignLastCloseKeepsTheWalIndexAndTheNextForeignCommitIsCaught) {
  const uint64_t id = Start();
  sqlite3_close(db_);
  db_ = nullptr;
  {
    ForeignSqlite reader(path_);
    ASSERT_EQ(reader.Run("SELECT count(*) FROM t"), std::to_string(kRows));
  }
  EXPECT_TRUE(Exists(path_ + "-wal"));
  EXPECT_TRUE(Exists(path_ + "-shm"));
  ForeignSqlite foreign(path_);
  ASSERT_EQ(foreign.Run("UPDATE t SET v = randomblob(1000) WHERE id % 5 = 1"), "");
  ASSERT_EQ(foreign.Run("PRAGMA wal_checkpoint(PASSIVE)").substr(0, 2), "0|");
  ExpectFailedWith(Finish(id), kBypassedWrite);
}

// This process commits after T0 and closes every connection: the last
// close does not checkpoint behind the tracker's back, and the backup
// succeeds.
TEST_F(WalForeignTest, ClosingEveryConnectionDuringTheBackupRaisesNoFalseAlarm) {
  const std::string image = ImageNow(path_);
  const uint64_t id = Start();
  sqlite3* w = Open(path_);
  ASSERT_EQ(Exec(w, "UPDATE t SET v = randomblob(1000) WHERE id % 3 = 0"), "");
  sqlite3_close(w);
  sqlite3_close(db_);
  db_ = nullptr;
  EXPECT_TRUE(Exists(path_ + "-wal"));
  const Status s = Finish(id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ExpectCopyOf(image);
  // Once the job ended, the last connection's close checkpoints and
  // removes the WAL as usual.
  sqlite3* last = Open(path_);
  EXPECT_EQ(Query(last, "SELECT count(*) FROM t"), std::to_string(kRows));
  sqlite3_close(last);
  EXPECT_FALSE(Exists(path_ + "-wal"));
}

// This process restarts the WAL over T0's frames while the copier waits: a
// RESTART checkpoint and a commit (new frames written from the start of the
// -wal file), or a TRUNCATE checkpoint (the file emptied) and a commit.
// Both variants copy T0. overlay_at_end reads uncopied pages live and
// overlays their preserved pre-images at the end, so its live read of a
// frame that was written over must count as gone, like a page a truncate
// cut off, not as corruption.
class WalRestartTest : public WalForeignTest,
                       public ::testing::WithParamInterface<std::tuple<Variant, const char*>> {};

TEST_P(WalRestartTest, InProcessRestartOverT0FramesGivesTheT0Copy) {
  const auto [variant, checkpoint] = GetParam();
  const std::string image = ImageNow(path_);
  const std::string salts_before = ReadFile(path_ + "-wal").substr(16, 8);
  BackupOptions options;
  options.variant = variant;
  const uint64_t id = Start(options);
  sqlite3* w = Open(path_);
  ASSERT_EQ(Query(w, std::string("PRAGMA wal_checkpoint(") + checkpoint + ")"), "0");  // not busy
  ASSERT_EQ(Exec(w, "UPDATE t SET v = randomblob(1000) WHERE id % 3 = 0"), "");
  EXPECT_NE(ReadFile(path_ + "-wal").substr(16, 8), salts_before) << "the WAL was not restarted";
  sqlite3_close(w);
  Summary summary;
  const Status s = Finish(id, &summary);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(summary.progress.pages_preserved, 0u);
  ExpectCopyOf(image);
}

INSTANTIATE_TEST_SUITE_P(
    VariantsAndCheckpoints, WalRestartTest,
    ::testing::Combine(::testing::Values(Variant::kSnapshotFirst, Variant::kOverlayAtEnd),
                       ::testing::Values("RESTART", "TRUNCATE")),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) == Variant::kSnapshotFirst ? "SnapshotFirst"
                                                                           : "OverlayAtEnd") +
             std::get<1>(info.param);
    });

// An app mutex that commits share and checkpoints take exclusively, fair
// to the exclusive side (std::shared_mutex on glibc prefers readers, and
// three writers committing back to back would starve a checkpointer): a
// shared locker passes through the turnstile, which an exclusive one holds
// while it waits.
class CheckpointMutex {
 public:
  class Shared {
   public:
    explicit Shared(CheckpointMutex* m) : m_(m) {
      { std::lock_guard<std::mutex> pass(m_->turnstile_); }
      m_->rw_.lock_shared();
    }
    ~Shared() { m_->rw_.unlock_shared(); }

   private:
    CheckpointMutex* m_;
  };
  class Exclusive {
   public:
    explicit Exclusive(CheckpointMutex* m) : m_(m) {
      std::lock_guard<std::mutex> hold(m_->turnstile_);
      m_->rw_.lock();
    }
    ~Exclusive() { m_->rw_.unlock(); }

   private:
    CheckpointMutex* m_;
  };

 private:
  std::mutex turnstile_;
  std::shared_mutex rw_;
};

// The other side: this process's connections commit and run checkpoints of
// every kind during 50 backups, and no backup fails (a false "bypassed the
// shim") or copies anything but a committed prefix. Writers 1..3 commit
// concurrently with automatic checkpoints off; writer 0's commits
// checkpoint automatically every 50 frames; one connection runs PASSIVE,
// FULL, RESTART and TRUNCATE checkpoints in turn, so the WAL restarts often.
// SQLite 3.40.1's WAL-reset bug (docs/SQLITE.md) needs a checkpoint to
// start while another connection's commit restarts the WAL: checkpoints
// and writer 0's commits take an app mutex exclusively, the other commits
// share it. The live database's own integrity_check is checked at the end
// beside the copies', so the two bugs cannot be confused.
TEST(WalInProcessTest, WritersAndCheckpointsOfEveryKindRaiseNoFalseAlarm) {
  ASSERT_TRUE(sqlite::RegisterVfs().ok());
  constexpr int kFillerRows = 2000 / kScale;
  constexpr int kBackups = 50;
  TempDir dir;
  const std::string path = dir / "app.db";
  sqlite3* bk = Open(path);
  ASSERT_EQ(Query(bk, "PRAGMA journal_mode=WAL"), "wal");
  CreateWorkload(bk, kFillerRows, 900);

  CommitCounters commits;
  CheckpointMutex ckpt_mu;
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<int64_t> checkpoints[4] = {};
  std::string first_error;
  std::mutex error_mu;
  const auto fail = [&](const std::string& e) {
    std::lock_guard<std::mutex> lock(error_mu);
    if (errors.fetch_add(1) == 0) first_error = e;
  };
  std::vector<std::thread> threads;
  struct Joiner {  // also when an ASSERT returns early
    std::atomic<bool>* stop;
    std::vector<std::thread>* threads;
    void Join() {
      *stop = true;
      for (auto& t : *threads) {
        if (t.joinable()) t.join();
      }
    }
    ~Joiner() { Join(); }
  } joiner{&stop, &threads};
  for (int w = 0; w < 4; w++) {
    threads.emplace_back([&, w] {
      sqlite3* db = Open(path);
      Exec(db, w == 0 ? "PRAGMA wal_autocheckpoint=50" : "PRAGMA wal_autocheckpoint=0");
      std::string e;
      while (!stop.load()) {
        bool ok;
        if (w == 0) {
          CheckpointMutex::Exclusive lock(&ckpt_mu);
          ok = CommitOne(db, w, kFillerRows, &commits, &e);
        } else {
          CheckpointMutex::Shared lock(&ckpt_mu);
          ok = CommitOne(db, w, kFillerRows, &commits, &e);
        }
        if (!ok) fail("writer: " + e);
      }
      sqlite3_close(db);
    });
  }
  threads.emplace_back([&] {
    sqlite3* db = Open(path);
    const char* modes[] = {"PASSIVE", "FULL", "RESTART", "TRUNCATE"};
    for (int i = 0; !stop.load(); i++) {
      {
        CheckpointMutex::Exclusive lock(&ckpt_mu);
        const std::string e = Exec(db, std::string("PRAGMA wal_checkpoint(") + modes[i % 4] + ")");
        if (!e.empty()) fail(std::string("checkpoint ") + modes[i % 4] + ": " + e);
        checkpoints[i % 4]++;
      }
      // Pacing, not synchronisation: the writers get the mutex in between.
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    sqlite3_close(db);
  });

  uint64_t preserved = 0;
  int64_t during[4] = {};
  for (int i = 0; i < kBackups && !HasFatalFailure(); i++) {
    SCOPED_TRACE("backup " + std::to_string(i));
    BackupOptions options;
    options.variant = i % 2 == 0 ? Variant::kSnapshotFirst : Variant::kOverlayAtEnd;
    options.format = i % 4 < 2 ? BackupOptions::Format::kArchive : BackupOptions::Format::kPlain;
    options.max_rate_mb = kScale == 1 ? 40 : 10;
    options.segment_pages = 16;
    const std::string dest = dir / "copy";
    const int64_t lo = commits.finished.load();
    int64_t before[4];
    for (int k = 0; k < 4; k++) before[k] = checkpoints[k].load();
    Summary summary;
    const Status s = sqlite::Backup(bk, "main", dest, options, &summary);
    const int64_t hi = commits.started.load();
    for (int k = 0; k < 4; k++) during[k] += checkpoints[k].load() - before[k];
    ASSERT_TRUE(s.ok()) << s.ToString();
    preserved += summary.progress.pages_preserved;
    std::string image = dest;
    if (options.format == BackupOptions::Format::kArchive) {
      image = dir / "restored.db";
      ASSERT_TRUE(RestoreTo(dest, image).ok());
    }
    EXPECT_GE(CheckPrefix(image, lo, hi), 0);
    ::unlink(dest.c_str());
    ::unlink(image.c_str());
  }
  joiner.Join();
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_EQ(Query(bk, "PRAGMA integrity_check"), "ok") << "the live database (SQLite's own state)";
  sqlite3_close(bk);
  // Every kind of checkpoint ran during backups, and writes hit uncopied pages.
  for (int k = 0; k < 4; k++) EXPECT_GT(during[k], 0) << k;
  EXPECT_GT(preserved, 0u);
  std::printf("commits %lld, checkpoints during backups %lld/%lld/%lld/%lld, preserved %llu\n",
              (long long)commits.finished.load(), (long long)during[0], (long long)during[1],
              (long long)during[2], (long long)during[3], (unsigned long long)preserved);
}

}  // namespace
}  // namespace cowbackup::testing
