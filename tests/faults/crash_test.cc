// Crash: crash_child (writers committing through the shim, backups back to
// back) is killed with SIGKILL at a seeded point: after a random delay, or
// at the k-th time an engine sync point is reached (before the sink
// publishes, while a writer preserves a page, while the copier reads,
// between creating a snapshot volume and writing its header).
// After each kill:
//   1. the database, reopened with the plain "unix" VFS (hot journal rolled
//      back), passes integrity_check, holds exactly a committed prefix
//      1..K, and K covers every commit the child reported;
//   2. the destination holds nothing, or a complete archive that verifies
//      and restores to a committed prefix (or, plain format, such a file);
//   3. every temporary archive (<dest>.cowtmp-<pid>-<n>) and snapshot volume
//      (*.cowsnap) the dead child left is removed by the next backup of the
//      database (BackupJob::Prepare, through the SQLite API).
// 50 seeded runs in CI; COWBACKUP_LONG=1 runs 500. COWBACKUP_CRASH_SEED
// reruns one seed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <sstream>
#include <thread>

#include "backup/output.h"
#include "backup/restore.h"
#include "cowbackup/sqlite.hpp"
#include "engine/snapshot_volume.h"
#include "faults/page_workload.h"
#include "sqlite/sqlite_test_util.h"

extern char** environ;

namespace cowbackup::faults {
namespace {

using testing::CommittedPrefix;

void CreateDatabase(const std::string& path) {
  sqlite3* db = testing::Open(path, "unix");
  testing::CreateWorkload(db, 2000, 900);
  sqlite3_close(db);
}

struct ChildResult {
  pid_t pid = -1;
  int64_t max_committed = 0;  // highest n reported committed
  int backups_ok = 0;
  int backups_failed = 0;
  bool killed = false;
};

std::string ChildPath() {
  const char* b = getenv("COWBACKUP_BUILD_DIR");
  return std::string(b ? b : "build") + "/tests/faults/crash_child";
}

const char* const kKillPoints[] = {
    "CopyJob::finish:before_sink_finish", "CopyJob::preserve:read", "CopyJob::read_segment:source",
    "CopyJob::copy:published", "CopyJob::before_write:slow",
    "FileSnapshotVolume::Create:before_header",
};

ChildResult RunChild(const std::string& db, const std::string& dest, uint64_t seed) {
  ChildResult r;
  std::mt19937_64 rng(seed);
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 3);  // clears CLOEXEC on 3
  std::vector<std::string> args = {ChildPath(), db, dest, std::to_string(seed), "3"};
  const bool at_point = seed % 2 == 1;
  if (at_point) {
    args.push_back(kKillPoints[rng() % std::size(kKillPoints)]);
    args.push_back(std::to_string(1 + rng() % 6));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  EXPECT_EQ(posix_spawn(&r.pid, argv[0], &fa, nullptr, argv.data(), environ), 0) << argv[0];
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);

  std::thread reader([&] {
    std::string buf;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::read(fds[0], chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buf.append(chunk, size_t(n));
      size_t eol;
      while ((eol = buf.find('\n')) != std::string::npos) {
        const std::string line = buf.substr(0, eol);
        buf.erase(0, eol + 1);
        if (line.rfind("C ", 0) == 0) {
          r.max_committed = std::max<int64_t>(r.max_committed, std::stoll(line.substr(2)));
        } else if (line == "B ok") {
          r.backups_ok++;
        } else if (line.rfind("B ", 0) == 0) {
          r.backups_failed++;
        }
      }
    }
    ::close(fds[0]);
  });
  // A random moment in the first few backups; a sync point kill usually
  // comes first, this bounds it when the chosen point is rare.
  const auto delay = std::chrono::milliseconds(at_point ? 3000 : 10 + rng() % 400);
  const auto until = std::chrono::steady_clock::now() + delay;
  int status = 0;
  pid_t done = 0;
  while (std::chrono::steady_clock::now() < until) {
    done = ::waitpid(r.pid, &status, WNOHANG);
    if (done == r.pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (done != r.pid) {
    ::kill(r.pid, SIGKILL);
    EXPECT_EQ(::waitpid(r.pid, &status, 0), r.pid);
  }
  reader.join();
  r.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  EXPECT_TRUE(r.killed) << "child ended otherwise: status " << status;
  return r;
}

struct Figures {
  int runs = 0, killed_at_point = 0, archives_complete = 0, leftovers_cleaned = 0;
  int64_t commits = 0;
};
Figures g_figures;

TEST(CrashTest, SigkillLosesNoCommitAndLeavesNothingThatLooksComplete) {
  const char* one = getenv("COWBACKUP_CRASH_SEED");
  const int runs = one ? 1 : LongRun() ? 500 : 50;
  const uint64_t base = one ? strtoull(one, nullptr, 10) : 7000;
  ASSERT_TRUE(sqlite::RegisterVfs(/*make_default=*/false).ok());
  for (int i = 0; i < runs; i++) {
    const uint64_t seed = base + uint64_t(i);
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun: COWBACKUP_CRASH_SEED=" +
                 std::to_string(seed) + ")");
    const std::string dir = MakeTempDir("cowbackup-crash");
    const std::string db = dir + "/app.db";
    const std::string dest = dir + "/app.cowbak";
    CreateDatabase(db);
    const ChildResult child = RunChild(db, dest, seed);

    // 1. The database holds every reported commit, consistently.
    std::string why;
    const int64_t k = CommittedPrefix(db, &why, SQLITE_OPEN_READWRITE);  // rolls back a hot journal
    EXPECT_EQ(why, "");
    EXPECT_GE(k, child.max_committed) << "a commit the child reported is missing";

    // 2. The destination: nothing, or complete and consistent.
    if (PathExists(dest)) {
      std::string image = dest;
      ArchiveReport report;
      const Status v = VerifyArchive(dest, &report);
      if (!v.ok() && seed % 5 == 4) {
        // The plain format: the destination is a database file.
        EXPECT_TRUE(v.ToString().find("not a cowbackup archive") != std::string::npos) << v.ToString();
      } else {
        EXPECT_TRUE(v.ok()) << v.ToString();
        image = dir + "/restored.db";
        const Status r = RestoreArchive(dest, image, false);
        EXPECT_TRUE(r.ok()) << r.ToString();
        g_figures.archives_complete++;
      }
      const int64_t kb = CommittedPrefix(image, &why, SQLITE_OPEN_READWRITE);
      EXPECT_EQ(why, "") << "the published copy is inconsistent";
      EXPECT_LE(kb, k);
    }

    // 3. Leftovers of the dead child are stale; the next backup removes them.
    const std::string tmp_prefix = "app.cowbak" + std::string(kTempInfix) + std::to_string(child.pid) + "-";
    auto leftovers = [&] {
      std::vector<std::string> found;
      for (const std::string& name : ListDir(dir)) {
        if (name.rfind(tmp_prefix, 0) == 0 ||
            (name.size() > 8 && name.compare(name.size() - 8, 8, kVolumeSuffix) == 0)) {
          found.push_back(name);
        }
      }
      return found;
    };
    const std::vector<std::string> before = leftovers();
    sqlite3* conn = nullptr;
    ASSERT_EQ(sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READWRITE, sqlite::kVfsName), SQLITE_OK);
    BackupOptions options;
    options.overwrite = true;
    Summary summary;
    const Status s = sqlite::Backup(conn, "main", dest, options, &summary);
    sqlite3_close(conn);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(leftovers(), std::vector<std::string>{}) << "stale files survived the next backup";
    EXPECT_TRUE(VerifyArchive(dest, nullptr).ok());

    g_figures.runs++;
    g_figures.killed_at_point += seed % 2 == 1;
    g_figures.leftovers_cleaned += int(before.size());
    g_figures.commits += child.max_committed;
    if (HasFailure()) {
      fprintf(stderr, "crash seed %llu: child %d, %lld commits reported, %d backups ok, kept %s\n",
              static_cast<unsigned long long>(seed), child.pid,
              static_cast<long long>(child.max_committed), child.backups_ok, dir.c_str());
      return;
    }
    RemoveTree(dir);
  }
  fprintf(stderr,
          "crash runs: %d SIGKILLs survived (%d at sync points), %lld commits reported and found, "
          "%d complete archives verified, %d stale leftovers removed by the next backup\n",
          g_figures.runs, g_figures.killed_at_point, static_cast<long long>(g_figures.commits),
          g_figures.archives_complete, g_figures.leftovers_cleaned);
}

}  // namespace
}  // namespace cowbackup::faults
