// Crash: crash_child (writers committing through the shim, backups back to
// back) is killed with SIGKILL, in every scenario of
//
//   variant  snapshot_first | overlay_at_end
//   format   archive | plain
//   kill     random_delay: from here, 10-410 ms in (lands anywhere), or at
//            the k-th hit of an engine sync point: before the sink
//            publishes, while a writer preserves a page, while the copier
//            reads, after a segment is published, as a writer enters the
//            slow path, between creating a snapshot volume and writing its
//            header
//
// named "variant/format/kill" (e.g. "snapshot_first/plain/writer_preserving").
// The seed sets only timing and values (the delay, k, the segment size, the
// writers' pacing), never the scenario.
// After each kill:
//   1. the database, reopened with the plain "unix" VFS (hot journal rolled
//      back), passes integrity_check, holds exactly a committed prefix
//      1..K, and K covers every commit the child reported;
//   2. the destination holds nothing, or a complete archive that verifies
//      and restores to a committed prefix (or, plain format, such a file);
//   3. every temporary archive (<dest>.cowtmp-<pid>-<n>) and snapshot volume
//      (*.cowsnap) the dead child left is removed by the next backup of the
//      database (BackupJob::Prepare, through the SQLite API).
// Each CI run takes every scenario: 2 seeds each, 7 for random_delay (it
// lands anywhere), 76 runs; COWBACKUP_LONG=1 takes ten times the seeds.
// Every sync-point scenario must land at its point at least once. A failure
// prints the scenario and seed; COWBACKUP_CRASH_SCENARIO=<name> runs one
// scenario, COWBACKUP_CRASH_SEED=<n> one seed (of each scenario selected).
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
  bool killed_itself = false;  // at its sync point, before the parent's deadline
};

std::string ChildPath() {
  const char* b = getenv("COWBACKUP_BUILD_DIR");
  return std::string(b ? b : "build") + "/tests/faults/crash_child";
}

struct KillMode {
  const char* name;
  const char* sync_point;  // nullptr: SIGKILL from the parent after a random delay
};
constexpr KillMode kKillModes[] = {
    {"random_delay", nullptr},
    {"before_sink_finish", "CopyJob::finish:before_sink_finish"},
    {"writer_preserving", "CopyJob::preserve:read"},
    {"copier_reading", "CopyJob::read_segment:source"},
    {"segment_published", "CopyJob::copy:published"},
    {"writer_entering", "CopyJob::before_write:slow"},
    {"volume_before_header", "FileSnapshotVolume::Create:before_header"},
};

struct Scenario {
  const char* variant;  // as crash_child takes them
  const char* format;
  const KillMode* kill;

  std::string name() const { return std::string(variant) + "/" + format + "/" + kill->name; }
  bool plain() const { return std::string(format) == "plain"; }
  // A random delay lands anywhere: more seeds.
  int seeds() const { return (kill->sync_point ? 2 : 7) * (LongRun() ? 10 : 1); }
};

std::vector<Scenario> AllScenarios() {
  std::vector<Scenario> all;
  for (const char* variant : {"snapshot_first", "overlay_at_end"}) {
    for (const char* format : {"archive", "plain"}) {
      for (const KillMode& kill : kKillModes) all.push_back({variant, format, &kill});
    }
  }
  return all;
}

ChildResult RunChild(const std::string& db, const std::string& dest, const Scenario& scenario,
                     uint64_t seed) {
  ChildResult r;
  std::mt19937_64 rng(seed);
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 3);  // clears CLOEXEC on 3
  std::vector<std::string> args = {ChildPath(),      db,      dest, std::to_string(seed), "3",
                                   scenario.variant, scenario.format};
  const bool at_point = scenario.kill->sync_point != nullptr;
  if (at_point) {
    args.push_back(scenario.kill->sync_point);
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
  // A random moment in the first few backups; at a sync point, a bound for
  // a point that is not reached (the run then does not count as landed).
  const auto delay = std::chrono::milliseconds(at_point ? 10000 : 10 + rng() % 400);
  const auto until = std::chrono::steady_clock::now() + delay;
  int status = 0;
  pid_t done = 0;
  while (std::chrono::steady_clock::now() < until) {
    done = ::waitpid(r.pid, &status, WNOHANG);
    if (done == r.pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  r.killed_itself = at_point && done == r.pid;
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
  int runs = 0, at_point = 0, landed = 0, archives_complete = 0, plain_copies = 0,
      leftovers_cleaned = 0;
  int64_t commits = 0;
};

// One kill and what must hold after it. Returns true if the child killed
// itself at the scenario's sync point.
bool CrashOnce(const Scenario& scenario, uint64_t seed, Figures* figures) {
  const std::string dir = MakeTempDir("cowbackup-crash");
  const std::string db = dir + "/app.db";
  const std::string dest = dir + "/app.cowbak";
  CreateDatabase(db);
  const ChildResult child = RunChild(db, dest, scenario, seed);

  // 1. The database holds every reported commit, consistently.
  std::string why;
  const int64_t k = CommittedPrefix(db, &why, SQLITE_OPEN_READWRITE);  // rolls back a hot journal
  EXPECT_EQ(why, "");
  EXPECT_GE(k, child.max_committed) << "a commit the child reported is missing";

  // 2. The destination: nothing, or complete and consistent.
  if (PathExists(dest)) {
    std::string image = dest;
    const Status v = VerifyArchive(dest, nullptr);
    if (scenario.plain()) {
      // The destination is a database file.
      EXPECT_TRUE(v.ToString().find("not a cowbackup archive") != std::string::npos) << v.ToString();
      figures->plain_copies++;
    } else {
      EXPECT_TRUE(v.ok()) << v.ToString();
      image = dir + "/restored.db";
      const Status r = RestoreArchive(dest, image, false);
      EXPECT_TRUE(r.ok()) << r.ToString();
      figures->archives_complete++;
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
  EXPECT_EQ(sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READWRITE, sqlite::kVfsName), SQLITE_OK);
  BackupOptions options;
  options.overwrite = true;
  Summary summary;
  const Status s = sqlite::Backup(conn, "main", dest, options, &summary);
  sqlite3_close(conn);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(leftovers(), std::vector<std::string>{}) << "stale files survived the next backup";
  EXPECT_TRUE(VerifyArchive(dest, nullptr).ok());

  figures->runs++;
  figures->at_point += scenario.kill->sync_point != nullptr;
  figures->landed += child.killed_itself;
  figures->leftovers_cleaned += int(before.size());
  figures->commits += child.max_committed;
  if (::testing::Test::HasFailure()) {
    fprintf(stderr,
            "crash scenario %s seed %llu: child %d, %lld commits reported, %d backups ok, kept %s\n",
            scenario.name().c_str(), static_cast<unsigned long long>(seed), child.pid,
            static_cast<long long>(child.max_committed), child.backups_ok, dir.c_str());
  } else {
    RemoveTree(dir);
  }
  return child.killed_itself;
}

TEST(CrashTest, SigkillLosesNoCommitAndLeavesNothingThatLooksComplete) {
  const char* only_scenario = getenv("COWBACKUP_CRASH_SCENARIO");
  const char* only_seed = getenv("COWBACKUP_CRASH_SEED");
  ASSERT_TRUE(sqlite::RegisterVfs(/*make_default=*/false).ok());
  Figures figures;
  uint64_t next_seed = 7000;
  int scenarios = 0;
  for (const Scenario& scenario : AllScenarios()) {
    const std::string name = scenario.name();
    const int seeds = scenario.seeds();
    const uint64_t first_seed = next_seed;
    next_seed += uint64_t(seeds);  // seeds stay the same whatever is selected
    if (only_scenario && name != only_scenario) continue;
    scenarios++;
    int landed = 0;
    for (int i = 0; i < (only_seed ? 1 : seeds); i++) {
      const uint64_t seed = only_seed ? strtoull(only_seed, nullptr, 10) : first_seed + uint64_t(i);
      SCOPED_TRACE("scenario " + name + ", seed " + std::to_string(seed) +
                   " (rerun: COWBACKUP_CRASH_SCENARIO=" + name +
                   " COWBACKUP_CRASH_SEED=" + std::to_string(seed) + ")");
      landed += CrashOnce(scenario, seed, &figures);
      if (HasFailure()) return;
    }
    // A sync point never reached would make the scenario a random-delay
    // kill under another name.
    if (scenario.kill->sync_point && !only_seed) {
      EXPECT_GT(landed, 0) << "scenario " << name << ": the child never reached "
                           << scenario.kill->sync_point;
    }
  }
  ASSERT_GT(scenarios, 0) << "no scenario named " << (only_scenario ? only_scenario : "");
  fprintf(stderr,
          "crash runs: %d scenarios, %d SIGKILLs survived (%d at sync points, %d of them landed "
          "there), %lld commits reported and found, %d complete archives verified, %d plain "
          "copies checked, %d stale leftovers removed by the next backup\n",
          scenarios, figures.runs, figures.at_point, figures.landed,
          static_cast<long long>(figures.commits), figures.archives_complete, figures.plain_copies,
          figures.leftovers_cleaned);
}

}  // namespace
}  // namespace cowbackup::faults
