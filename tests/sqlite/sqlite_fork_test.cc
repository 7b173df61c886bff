// Processes made by fork (vfs/file_state.cc, "fork"): a child of a process
// that has the database open takes part in backups as a process of its
// own, and a job another process runs shows in this process's job list
// (cowbackup_jobs reads ListJobs).
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "coord/region.h"
#include "cowbackup/sqlite.hpp"
#include "engine/sync_point.h"
#include "sqlite/sqlite_test_util.h"
#include "test_util/processes.h"

namespace cowbackup::testing {
namespace {

using cowbackup::test::Pipe;
using cowbackup::test::Spawn;
using cowbackup::test::Wait;

class ForkTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cowbackup::sqlite::RegisterVfs().ok()); }
  TempDir dir_;
};

// The pids attached to `db_path`'s region, seen through a Region of our own.
std::vector<int64_t> AttachedPids(const std::string& db_path) {
  std::vector<int64_t> pids;
  struct stat st;
  if (::stat(db_path.c_str(), &st) != 0) return pids;
  std::unique_ptr<coord::Region> r;
  if (!coord::Region::Attach(coord::RegionPathForSqlite(db_path), st, coord::AttachOptions(), &r).ok()) return pids;
  std::vector<coord::Participant> all;
  if (r->Participants(&all).ok()) {
    for (const coord::Participant& p : all) {
      if (!p.self) pids.push_back(p.pid);
    }
  }
  return pids;
}

// A child forked while its parent has the database open: its new
// connection shares the parent's per-file state, but not its region
// attachment (its slot, locks and job). It attaches as itself, and its
// writes take part in the backup its parent then runs. (Forked before the
// backup starts its copier thread: a fork while another thread allocates
// can deadlock the child in ASan's allocator, whose lock has no atfork
// handler as glibc's malloc has.)
TEST_F(ForkTest, ChildAttachesAsItsOwnProcessAndItsWritesTakePart) {
  const std::string path = dir_ / "fork.db";
  sqlite3* db = MakeDbInMode(path, 3000, "DELETE");
  ASSERT_TRUE(cowbackup::sqlite::OpenedThroughShim(db, "main"));
  Pipe go, wrote, hold;
  const pid_t child = Spawn([&] {
    go.CloseWrite();
    if (!go.Hear()) return 4;
    sqlite3* w = Open(path);
    for (int i = 0; i < 40; i++) {
      if (!Exec(w, "UPDATE t SET v = randomblob(1000) WHERE id % 37 = " + std::to_string(i % 37)).empty()) return 2;
    }
    wrote.Tell();
    hold.CloseWrite();
    (void)hold.Hear();  // stay attached until the parent has looked
    sqlite3_close(w);
    return 0;
  });
  go.CloseRead();
  const std::string before = ImageNow(path);
  BackupOptions options;
  options.segment_pages = 8;
  options.max_rate_mb = 4;
  uint64_t id = 0;
  Status s = cowbackup::sqlite::StartBackup(db, "main", dir_ / "fork.cowbak", options, &id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  go.Tell();
  wrote.CloseWrite();
  hold.CloseRead();
  ASSERT_TRUE(wrote.Hear());
  const std::vector<int64_t> pids = AttachedPids(path);
  EXPECT_NE(std::find(pids.begin(), pids.end(), int64_t(child)), pids.end())
      << "the child is not attached as itself";
  EXPECT_NE(std::find(pids.begin(), pids.end(), int64_t(::getpid())), pids.end());
  hold.CloseWrite();
  const int status = Wait(child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  Summary summary;
  s = cowbackup::sqlite::WaitBackup(id, &summary);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(summary.progress.pages_preserved, 0u) << "the child's writes preserved nothing";
  ASSERT_TRUE(RestoreTo(dir_ / "fork.cowbak", dir_ / "fork.restored").ok());
  EXPECT_TRUE(ReadFile(dir_ / "fork.restored") == before) << "the copy is not the database at T0";
  sqlite3_close(db);
}

// A job another process runs on a database this process has open is in
// ListJobs (and so in cowbackup_jobs), with its owner's pid and progress.
TEST_F(ForkTest, AnotherProcesssJobIsListedWithItsOwner) {
  const std::string path = dir_ / "list.db";
  sqlite3* db = MakeDbInMode(path, 3000, "DELETE");
  Pipe started;
  const pid_t child = Spawn([&] {
    sqlite3* c = Open(path);
    BackupOptions options;
    options.max_rate_mb = 4;  // ~3 s: long enough to be seen
    Summary summary;
    started.Tell();
    Status s = cowbackup::sqlite::Backup(c, "main", dir_ / "list.cowbak", options, &summary);
    sqlite3_close(c);
    return s.ok() ? 0 : 3;
  });
  started.CloseWrite();
  ASSERT_TRUE(started.Hear());
  bool seen = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    for (const cowbackup::sqlite::JobInfo& j : cowbackup::sqlite::ListJobs()) {
      if (j.owner_pid != child) continue;
      seen = true;
      EXPECT_EQ(j.database, path);
      EXPECT_EQ(j.summary.state, JobState::kRunning);
      EXPECT_GT(j.summary.progress.pages_total, 0u);
      EXPECT_NE(j.id, 0u);
    }
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(seen) << "the child's job never showed";
  const int status = Wait(child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  for (const cowbackup::sqlite::JobInfo& j : cowbackup::sqlite::ListJobs()) {
    EXPECT_NE(j.owner_pid, child) << "a finished job of another process is still listed";
  }
  sqlite3_close(db);
}

// The begin-time gate across processes (docs/REGION.md, "Writer gate"): a
// backup waiting for SHARED closes the region's writer gate, and a writer
// process asking for EXCLUSIVE meanwhile waits there instead of taking
// PENDING, so the backup gets its lock between two commits. The backup is
// held at its gate-closed step until the writer process reports it was held.
TEST_F(ForkTest, AWriterProcessWaitsAtTheGateWhileABackupWantsItsLock) {
  const std::string path = dir_ / "gate.db";
  sqlite3* db = MakeDbInMode(path, 200, "DELETE");
  Pipe gated, committing;
  std::atomic<bool>* stop = static_cast<std::atomic<bool>*>(
      mmap(nullptr, sizeof(std::atomic<bool>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(stop, MAP_FAILED);
  new (stop) std::atomic<bool>(false);
  const pid_t child = Spawn([&] {
    ::alarm(60);
    bool told = false;
    sync::SetCallback([&](const char* name) {
      if (!told && strcmp(name, "Region::writer_gate:wait") == 0) {
        told = true;
        gated.Tell();
      }
    });
    sqlite3* w = Open(path);
    committing.Tell();
    for (int i = 0; !stop->load(); i++) {
      if (!Exec(w, "UPDATE t SET v = randomblob(100) WHERE id = " + std::to_string(1 + i % 200)).empty()) return 2;
    }
    sqlite3_close(w);
    return told ? 0 : 3;
  });
  gated.CloseWrite();
  committing.CloseWrite();
  ASSERT_TRUE(committing.Hear());
  bool held = false;
  sync::SetCallback([&](const char* name) {
    // Gate closed, SHARED not asked for yet: wait for the writer process
    // to arrive at the gate (bounded: a writer that never comes fails below).
    if (strcmp(name, "FileState::LockShared:waiting") == 0 && !held) held = gated.HearWithin(20000);
  });
  Summary summary;
  Status s = cowbackup::sqlite::Backup(db, "main", dir_ / "gate.cowbak", BackupOptions(), &summary);
  sync::SetCallback(nullptr);
  stop->store(true);
  const int status = Wait(child);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(held) << "the writer process never waited at the region's writer gate";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  munmap(stop, sizeof(std::atomic<bool>));
  sqlite3_close(db);
}

}  // namespace
}  // namespace cowbackup::testing
