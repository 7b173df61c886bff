// Crash: crash_child (writers committing through the shim, backups back to
// back) is killed with SIGKILL, in every scenario of
//
//   journal  rollback | wal (the WAL child's writers also checkpoint:
//            crash_child.cc)
//   variant  snapshot_first | overlay_at_end
//   format   archive | plain
//   kill     random_delay: from here, 10-410 ms in (lands anywhere), or at
//            the k-th hit of a sync point: before the sink publishes
//            (right before publish), while the copier reads, after a
//            segment is published, as a writer enters the slow path,
//            between creating a snapshot volume and writing its header;
//            rollback: while a writer preserves a page; WAL: while a WAL
//            restart preserves one (a writer writing over T0's frames),
//            while a checkpoint preserves one (a backfill, or TRUNCATE's
//            cut), waiting for T0's WAL write lock (before T0), holding it
//            (at T0), holding both WAL locks in the end check
//
// named "variant/format/kill" in rollback mode (e.g.
// "snapshot_first/plain/writer_preserving"), "wal/variant/format/kill" in
// WAL mode. The seed sets only timing and values (the delay, k, the segment
// size, the writers' pacing), never the scenario. At a sync point the child
// stops itself and the parent kills it.
// After each kill:
//   1. the database, reopened with the plain "unix" VFS by a fresh
//      connection (which rolls back a hot journal, or runs WAL recovery),
//      passes integrity_check, holds exactly a committed prefix 1..K, and
//      K covers every commit the child reported;
//   2. the destination holds nothing, or a complete archive that verifies
//      and restores to a committed prefix (or, plain format, such a file);
//   3. every temporary archive (<dest>.cowtmp-<pid>-<n>) and snapshot volume
//      (*.cowsnap) the dead child left is removed by the next backup of the
//      database (BackupJob::Prepare, through the SQLite API), which
//      succeeds and restores to 1..K;
//   4. WAL, killed holding the WAL write lock (at T0, in the end check): a
//      writer of another process (this one, a connection opened before the
//      child) cannot commit while the stopped child holds the lock
//      (SQLITE_BUSY after 100 ms), and commits once it is killed (the
//      kernel drops a dead process's locks on -shm) within its 10 s
//      busy_timeout; it then closes without checkpointing, so check 1 still
//      runs WAL recovery.
// In WAL mode the child also must not see a checkpoint fail.
// Each CI run takes every scenario: in rollback mode 2 seeds each, 7 for
// random_delay (it lands anywhere), 76 runs; in WAL mode (more scenarios)
// 1 seed each, 5 for random_delay, 60 runs; COWBACKUP_LONG=1 takes ten
// times the seeds. Every sync-point scenario must land at its point at
// least once. A failure prints the scenario and seed;
// COWBACKUP_CRASH_SCENARIO=<name> runs one scenario, COWBACKUP_CRASH_SEED=<n>
// one seed (of each scenario selected).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
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

constexpr int kFillerRows = 2000;
// How long a writer of another process may wait for the WAL write lock a
// killed child held (its busy_timeout): the lock is the kernel's to drop.
constexpr int kSurvivorBoundMs = 10000;

enum class Journal { kRollback, kWal };

void CreateDatabase(const std::string& path, Journal journal) {
  sqlite3* db = testing::Open(path, "unix");
  testing::CreateWorkload(db, kFillerRows, 900);
  if (journal == Journal::kWal) {
    EXPECT_EQ(testing::Query(db, "PRAGMA journal_mode = WAL"), "wal");
  }
  sqlite3_close(db);
}

struct ChildResult {
  pid_t pid = -1;
  int64_t max_committed = 0;  // highest n reported committed
  int backups_ok = 0;
  int backups_failed = 0;
  std::vector<std::string> errors;  // "X" lines: a checkpoint that failed
  bool killed = false;
  bool killed_itself = false;  // stopped at its sync point, before the parent's deadline
};

std::string ChildPath() {
  const char* b = getenv("COWBACKUP_BUILD_DIR");
  return std::string(b ? b : "build") + "/tests/faults/crash_child";
}

enum JournalMask : uint8_t { kRollbackOnly = 1, kWalOnly = 2, kBoth = 3 };

struct KillMode {
  const char* name;
  const char* sync_point;  // nullptr: SIGKILL from the parent after a random delay
  uint8_t journals = kBoth;
  const char* role = nullptr;  // "writer" or "checkpoint": only hits on such a thread
  int in_backup = 0;           // only the n-th hit within one backup (crash_child.cc)
  bool holds_wal_lock = false;  // the child stops holding the WAL write lock (check 4)
  int max_k = 6;                // k is drawn from 1..max_k (1..3 for a point hit once a backup)
};
constexpr KillMode kKillModes[] = {
    {"random_delay", nullptr},
    {"before_sink_finish", "CopyJob::finish:before_sink_finish"},
    {"writer_preserving", "CopyJob::preserve:read", kRollbackOnly},
    {"copier_reading", "CopyJob::read_segment:source"},
    {"segment_published", "CopyJob::copy:published"},
    {"writer_entering", "CopyJob::before_write:slow"},
    {"volume_before_header", "FileSnapshotVolume::Create:before_header"},
    {"restart_preserving", "CopyJob::preserve:read", kWalOnly, "writer"},
    {"checkpoint_preserving", "CopyJob::preserve:read", kWalOnly, "checkpoint"},
    {"before_t0", "FileState::LockWal:waiting", kWalOnly, nullptr, 1, false, 3},
    {"holding_t0_lock", "FileState::LockWal:locked", kWalOnly, nullptr, 1, true, 3},
    {"end_check", "sqlite::EndCheckWal:before_compare", kWalOnly, nullptr, 0, true, 3},
};

struct Scenario {
  Journal journal;
  const char* variant;  // as crash_child takes them
  const char* format;
  const KillMode* kill;

  bool wal() const { return journal == Journal::kWal; }
  std::string name() const {
    return std::string(wal() ? "wal/" : "") + variant + "/" + format + "/" + kill->name;
  }
  bool plain() const { return std::string(format) == "plain"; }
  // A random delay lands anywhere: more seeds. WAL mode has more
  // scenarios: fewer seeds each.
  int seeds() const {
    const int per_run = kill->sync_point ? (wal() ? 1 : 2) : (wal() ? 5 : 7);
    return per_run * (LongRun() ? 10 : 1);
  }
  // crash_child's KILL_POINT and KILL_AT for the k-th hit.
  std::string kill_point() const {
    return std::string(kill->sync_point) + (kill->role ? std::string("@") + kill->role : "");
  }
  std::string kill_at(uint64_t k) const {
    return std::to_string(k) + (kill->in_backup ? "/" + std::to_string(kill->in_backup) : "");
  }
};

std::vector<Scenario> AllScenarios(Journal journal) {
  std::vector<Scenario> all;
  const uint8_t mask = journal == Journal::kWal ? kWalOnly : kRollbackOnly;
  for (const char* variant : {"snapshot_first", "overlay_at_end"}) {
    for (const char* format : {"archive", "plain"}) {
      for (const KillMode& kill : kKillModes) {
        if (kill.journals & mask) all.push_back({journal, variant, format, &kill});
      }
    }
  }
  return all;
}

// `while_stopped` runs while the child is stopped at its sync point, before
// the kill.
ChildResult RunChild(const std::string& db, const std::string& dest, const Scenario& scenario,
                     uint64_t seed, const std::function<void()>& while_stopped) {
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
    args.push_back(scenario.kill_point());
    args.push_back(scenario.kill_at(1 + rng() % uint64_t(scenario.kill->max_k)));
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
        } else if (line.rfind("X ", 0) == 0) {
          r.errors.push_back(line.substr(2));
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
    done = ::waitpid(r.pid, &status, WNOHANG | WUNTRACED);
    if (done == r.pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  r.killed_itself = at_point && done == r.pid && WIFSTOPPED(status);
  if (r.killed_itself) while_stopped();
  if (done != r.pid || WIFSTOPPED(status)) {
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
      leftovers_cleaned = 0, held_off = 0, survivor_commits = 0;
  int64_t commits = 0, survivor_max_ms = 0;
};

// Check 4: a connection of this process, opened before the child, to the
// WAL database the child will be killed holding the WAL write lock of.
class Survivor {
 public:
  explicit Survivor(const std::string& db) : db_(testing::Open(db, "unix")) {
    testing::Query(db_, "PRAGMA schema_version");  // maps the wal-index
  }
  ~Survivor() {
    // Leave the WAL as it is: check 1's fresh connection runs recovery.
    sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    sqlite3_close(db_);
  }
  // While the child is stopped holding the lock: no commit here.
  void ExpectHeldOff(Figures* figures) {
    sqlite3_busy_timeout(db_, 100);
    const std::string e = testing::Exec(db_, "BEGIN IMMEDIATE");
    EXPECT_NE(e, "") << "a writer of another process began a write transaction while the stopped "
                        "child held the WAL write lock";
    if (e.empty()) testing::Exec(db_, "ROLLBACK");
    figures->held_off += !e.empty();
  }
  // Once the child is dead: one commit, within kSurvivorBoundMs. Returns
  // the commits made (0 or 1).
  int64_t Commit(Figures* figures) {
    sqlite3_busy_timeout(db_, kSurvivorBoundMs);
    testing::CommitCounters counters;
    std::string e;
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = testing::CommitOne(db_, 99, kFillerRows, &counters, &e);
    const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - t0).count();
    EXPECT_TRUE(ok) << "a writer of another process could not commit within " << kSurvivorBoundMs
                    << " ms of the kill: " << e;
    figures->survivor_commits += ok;
    figures->survivor_max_ms = std::max(figures->survivor_max_ms, ms);
    return ok ? 1 : 0;
  }

 private:
  sqlite3* const db_;
};

// One kill and what must hold after it. Returns true if the child stopped
// itself at the scenario's sync point.
bool CrashOnce(const Scenario& scenario, uint64_t seed, Figures* figures) {
  const std::string dir = MakeTempDir("cowbackup-crash");
  const std::string db = dir + "/app.db";
  const std::string dest = dir + "/app.cowbak";
  CreateDatabase(db, scenario.journal);
  std::unique_ptr<Survivor> survivor;
  if (scenario.kill->holds_wal_lock) survivor = std::make_unique<Survivor>(db);
  const ChildResult child = RunChild(db, dest, scenario, seed, [&] {
    if (survivor) survivor->ExpectHeldOff(figures);
  });
  EXPECT_EQ(child.errors, std::vector<std::string>{}) << "the child's checkpoints failed";
  int64_t survivor_commits = 0;
  if (survivor) {
    survivor_commits = survivor->Commit(figures);
    survivor.reset();
  }

  // 1. The database holds every reported commit, consistently.
  std::string why;
  // A fresh connection: rolls back a hot journal, or runs WAL recovery.
  const int64_t k = CommittedPrefix(db, &why, SQLITE_OPEN_READWRITE);
  EXPECT_EQ(why, "");
  EXPECT_GE(k, child.max_committed + survivor_commits)
      << "a commit the child reported (or the survivor's) is missing";

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
  const std::string next = dir + "/next.db";
  EXPECT_TRUE(RestoreArchive(dest, next, true).ok());
  testing::CheckPrefix(next, k, k);

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

// Every scenario of `journal`, seeds from `first_seed` on.
void RunScenarios(Journal journal, uint64_t first_seed) {
  const char* only_scenario = getenv("COWBACKUP_CRASH_SCENARIO");
  const char* only_seed = getenv("COWBACKUP_CRASH_SEED");
  ASSERT_TRUE(sqlite::RegisterVfs(/*make_default=*/false).ok());
  Figures figures;
  uint64_t next_seed = first_seed;
  int scenarios = 0;
  for (const Scenario& scenario : AllScenarios(journal)) {
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
      if (::testing::Test::HasFailure()) return;
    }
    // A sync point never reached would make the scenario a random-delay
    // kill under another name.
    if (scenario.kill->sync_point && !only_seed) {
      EXPECT_GT(landed, 0) << "scenario " << name << ": the child never reached "
                           << scenario.kill->sync_point;
    }
  }
  if (scenarios == 0) {
    for (const Journal other : {Journal::kRollback, Journal::kWal}) {
      for (const Scenario& scenario : AllScenarios(other)) {
        if (only_scenario && scenario.name() == only_scenario) {
          GTEST_SKIP() << "a scenario of the other journal mode";
        }
      }
    }
    FAIL() << "no scenario named " << (only_scenario ? only_scenario : "");
  }
  fprintf(stderr,
          "crash runs (%s): %d scenarios, %d SIGKILLs survived (%d at sync points, %d of them "
          "landed there), %lld commits reported and found, %d complete archives verified, %d "
          "plain copies checked, %d stale leftovers removed by the next backup\n",
          journal == Journal::kWal ? "WAL" : "rollback", scenarios, figures.runs, figures.at_point,
          figures.landed, static_cast<long long>(figures.commits), figures.archives_complete,
          figures.plain_copies, figures.leftovers_cleaned);
  if (journal == Journal::kWal) {
    fprintf(stderr,
            "killed holding the WAL write lock: %d times a writer of another process was held off "
            "while the child was stopped, %d commits by it after the kill, the slowest in %lld ms\n",
            figures.held_off, figures.survivor_commits,
            static_cast<long long>(figures.survivor_max_ms));
  }
}

TEST(CrashTest, SigkillLosesNoCommitAndLeavesNothingThatLooksComplete) {
  RunScenarios(Journal::kRollback, 7000);
}

TEST(CrashTest, SigkillInWalModeLosesNoCommitAndLeavesNothingThatLooksComplete) {
  RunScenarios(Journal::kWal, 17000);
}

}  // namespace
}  // namespace cowbackup::faults
