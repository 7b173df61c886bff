// Kill sweep with writers in several processes, LMDB (issue 12, "Tests"):
// three writer processes linking the cowbackup LMDB library
// (tests/lmdb/lmdb_mp_writer.cc; one with durable commits, two with
// MDB_NOSYNC) commit the workload of lmdb_mp_harness.h while a backup runs,
// and the backing-up process (`cowbackup backup ENVDIR DEST`), or one
// writer, is SIGKILLed at a seeded point of it. The sweep, its kill points
// and its checks are SQLite's (tests/faults/mp_kill_sweep.h); here, what is
// LMDB's: the environment, its writers, and a copy's check (mdb_stat, a
// full read by mdb_dump, exactly the state after commit K, K in the
// window). A writer killed while it holds LMDB's writer mutex (stopped at
// "CopyJob::preserve:read", mid-preservation in the CLI's or another
// writer's job) leaves the mutex to LMDB's robust-mutex recovery and its
// page claims to the next party that finds them; the survivors' longest
// transaction around the kill, waits for the writer gate and LMDB's mutex
// included, is bounded (2 s, against the design's 100 ms) and printed.
//
// 12 seeds per test; 100 with COWBACKUP_LONG=1 (make test LONG=1).
// COWBACKUP_CRASH_SEED=<n> runs one seed. A failure prints its seed.
#include <climits>
#include <memory>

#include "faults/mp_kill_sweep.h"
#include "lmdb/lmdb_mp_harness.h"

namespace cowbackup::lmdb::testing {
namespace {

using test::mp::KillSweep;
using test::mp::SweepTarget;
using test::mp::Victim;
using test::mp::WriterProcess;

constexpr double kRateMb = 12.0;  // ~12 MB env: a backup lasts ~1 s

class LmdbTarget : public SweepTarget {
 public:
  int writer_count() const override { return 3; }
  // As SQLite's: generous against the design's 100 ms (docs/LMDB.md,
  // "Deaths"), for a loaded machine; sanitizer builds run slower.
  int64_t hold_bound_ns() const override { return (UnderSanitizer() ? 8 : 2) * 1'000'000'000LL; }
  bool bound_whole_commit() const override { return true; }
  std::string Make(const TempDir& dir) override {
    const std::string env = dir.subdir("env");
    Preload(env, 0, &preload_txnid_);
    return env;
  }
  std::string RegionPath(const std::string& env) const override { return coord::RegionPathForLmdb(env, false); }
  std::string DatabaseFile(const std::string& env) const override { return env + "/data.mdb"; }
  std::unique_ptr<WriterProcess> StartWriter(const std::string& env, int index, const std::string& kill_point,
                                             long kill_at) override {
    return std::make_unique<LmdbWriter>(env, index + 1, /*durable=*/index == 0, kill_point, kill_at);
  }
  std::string PlainName() const override { return "copy.mdb"; }
  std::vector<std::string> CliOptions() const override { return {}; }
  int64_t CheckCopy(const std::string& dest, bool plain, const Window& win, const TempDir& dir) override {
    return CheckEnvCopy(dest, plain ? CopyKind::kPlain : CopyKind::kArchive, preload_txnid_, win, dir.path());
  }
  int64_t CheckLive(const std::string& env, const TempDir& dir) override {
    return CheckEnvCopy(env, CopyKind::kEnvDir, preload_txnid_, Window{0, INT64_MAX}, dir.path());
  }

 private:
  uint64_t preload_txnid_ = 0;
};

TEST(LmdbMultiProcessCrash, KillingTheBackingUpProcessBlocksNoWriterAndLosesNothing) {
  LmdbTarget target;
  KillSweep(target, Victim::kBackingUpProcess, 1000, kRateMb);
}

TEST(LmdbMultiProcessCrash, KillingAWriterProcessBlocksNoWriterAndLosesNothing) {
  LmdbTarget target;
  KillSweep(target, Victim::kWriter, 2000, kRateMb);
}

}  // namespace
}  // namespace cowbackup::lmdb::testing
