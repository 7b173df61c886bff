// Kill sweep with writers in several processes, SQLite (issue 12,
// "Tests"): four writer processes (two Debian python3 with
// build/cowbackup.so loaded, two through the embedded API;
// multiprocess_harness.h) commit the committed-prefix transaction in
// rollback mode (and, the WalMode tests, in WAL mode) while a backup runs, and the backing-up process, or one
// writer, is SIGKILLed at a seeded point of it. The sweep, its kill points
// and its checks are tests/faults/mp_kill_sweep.h (shared with LMDB's,
// lmdb_multiprocess_crash_test.cc); here, what is SQLite's: the database,
// its writers, and a copy's check (integrity_check, exactly 1..K).
//
// multiprocess_crash_preload_test runs the same sweep with the two python
// writers under the preload library, loading nothing themselves (issue 13).
//
// 12 seeds per test; 100 with COWBACKUP_LONG=1 (make test LONG=1).
// COWBACKUP_CRASH_SEED=<n> runs one seed. A failure prints its seed.
#include <memory>

#include "faults/mp_kill_sweep.h"
#include "sqlite/multiprocess_harness.h"

namespace cowbackup::testing::mp {
namespace {

constexpr int kRows = 1500 / kScale;           // ~6 MB (1.5 MB in sanitizer builds)
constexpr double kRateMb = 8.0 / kScale;       // a backup lasts ~0.75 s

// Checks a copy at `dest` (plain or archive): it verifies, passes
// integrity_check and holds 1..K, K in `win`. Returns K, -1 after a failure.
int64_t CheckCopy(const std::string& dest, bool plain, const Window& win, const TempDir& dir) {
  if (!plain) {
    const Cli v = RunCli({"verify", "--quiet", dest}, dir.path());
    EXPECT_TRUE(v.ok()) << "a complete-looking archive does not verify: " << v.err;
  }
  const std::string restored = RestoreWithCli(dest, plain, dir.path());
  if (restored.empty()) return -1;
  std::string why;
  const int64_t k = CommittedPrefix(restored, &why);
  EXPECT_EQ(why, "") << dest;
  EXPECT_GE(k, win.lo) << dest << ": a seq committed before the backup was called is missing";
  EXPECT_LE(k, win.hi) << dest << ": a seq begun after the backup returned is in the copy";
  return why.empty() ? k : -1;
}

// The rollback-mode database and its four writers: 0, 1 python, 2, 3 C++
// (the last can stop at a sync point).
class SqliteTarget : public SweepTarget {
 public:
  explicit SqliteTarget(std::string journal = "delete") : journal_(std::move(journal)) {}
  int writer_count() const override { return 4; }
  int64_t hold_bound_ns() const override { return kHoldBoundNs; }
  std::string Make(const TempDir& dir) override {
    const std::string db = dir / "app.db";
    MakeWorkloadDb(db, kRows, journal_ == "wal" ? "wal" : "delete");
    return db;
  }
  std::string RegionPath(const std::string& db) const override { return coord::RegionPathForSqlite(db); }
  std::string DatabaseFile(const std::string& db) const override { return db; }
  std::unique_ptr<WriterProcess> StartWriter(const std::string& db, int index, const std::string& kill_point,
                                             long kill_at) override {
    WriterSpec spec;
    spec.kind = index < 2 ? WriterKind::kPython : WriterKind::kCpp;
    spec.journal = journal_;
    // multiprocess_crash_preload_test: the python writers are plain sqlite3
    // programs under the preload library (issue 13) instead.
    if (spec.kind == WriterKind::kPython && getenv("COWBACKUP_PRELOADED_WRITERS") != nullptr) {
      spec.participant = false;
      spec.preload = true;
    }
    spec.kill_point = kill_point;
    spec.kill_at = kill_at;
    return std::make_unique<Writer>(db, index + 1, spec);
  }
  std::string PlainName() const override { return "copy.db"; }
  std::vector<std::string> CliOptions() const override { return {"--busy-timeout-ms", "60000"}; }
  int64_t CheckCopy(const std::string& dest, bool plain, const Window& win, const TempDir& dir) override {
    return mp::CheckCopy(dest, plain, win, dir);
  }
  int64_t CheckLive(const std::string& db, const TempDir&) override {
    std::string why;
    const int64_t k = CommittedPrefix(db, &why, SQLITE_OPEN_READWRITE);
    EXPECT_EQ(why, "");
    return k;
  }

 private:
  const std::string journal_;
};

TEST(MultiProcessCrash, KillingTheBackingUpProcessBlocksNoWriterAndLosesNothing) {
  SqliteTarget target;
  KillSweep(target, Victim::kBackingUpProcess, 1000, kRateMb);
}

TEST(MultiProcessCrash, KillingAWriterProcessBlocksNoWriterAndLosesNothing) {
  SqliteTarget target;
  KillSweep(target, Victim::kWriter, 2000, kRateMb);
}

// The same in WAL mode, where a job is shared the same way: pages are
// preserved when a writer's checkpoint or WAL restart would change them.
TEST(MultiProcessCrash, WalModeKillingTheBackingUpProcessBlocksNoWriterAndLosesNothing) {
  SqliteTarget target("wal");
  KillSweep(target, Victim::kBackingUpProcess, 3000, kRateMb);
}

TEST(MultiProcessCrash, WalModeKillingAWriterProcessBlocksNoWriterAndLosesNothing) {
  SqliteTarget target("wal");
  KillSweep(target, Victim::kWriter, 4000, kRateMb);
}

}  // namespace
}  // namespace cowbackup::testing::mp
