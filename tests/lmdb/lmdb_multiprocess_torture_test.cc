// Multi-process torture, LMDB (issue 12, "Tests": "the same for LMDB with 3
// writer processes"): three writer processes, each linking the cowbackup
// LMDB library (tests/lmdb/lmdb_mp_writer.cc), commit the workload of
// lmdb_mp_harness.h with one global sequence (the counter read and bumped
// inside each write txn, under LMDB's writer mutex) while backups run,
// started in turn by the command-line tool (`cowbackup backup ENVDIR
// DEST`, a process of its own) and by one of the writer processes through
// the API (Env::backup, its own writer thread committing on):
//
//   writers  one with durable commits (the meta page through LMDB's
//            O_DSYNC descriptor), two with MDB_NOSYNC|MDB_NOMETASYNC
//   rounds   eight, alternating CLI and writer: archive and plain image,
//            both variants for the writers, half throttled so that writers
//            overwrite pages the copier has not reached
//
// COWBACKUP_LONG=1 runs the rounds three times.
//
// Every backup must succeed; each copy (an archive restored by the CLI, or
// the plain data.mdb image) must pass `cowbackup verify`, Debian's mdb_stat
// and a full read by mdb_dump, and hold exactly the state after commit K of
// the global sequence (every key and value, its newest txnid K's) with K in
// its call/return window (every seq whose commit returned before the call
// is in, none whose Txn::Begin started after the return is). Preserved
// pages must show in CLI rounds and in writer rounds, so copy-on-write
// across processes ran in both directions. The live env, once the writers
// stop, holds every commit any of them reported, exactly.
#include <memory>

#include "lmdb_mp_harness.h"
#include "test_util/long_run.h"

namespace cowbackup::lmdb::testing {
namespace {

using test::mp::AllCommits;
using test::mp::BackupRun;
using test::mp::Commit;
using test::mp::CommitWindow;
using test::mp::DistinctSeqs;
using test::mp::JsonInt;
using test::mp::Leftovers;

constexpr double kThrottleMb = 10.0;  // a throttled backup lasts ~1 s

struct Round {
  int by;  // -1: the CLI; else the index of the writer that runs it
  const char* format;
  const char* variant;  // writers only
  double max_rate_mb;
  uint32_t segment_pages;
};

constexpr Round kRounds[] = {
    {-1, "archive", "", kThrottleMb, 32},
    {0, "archive", "snapshot_first", kThrottleMb, 16},
    {-1, "plain", "", 0, 256},
    {1, "plain", "overlay_at_end", kThrottleMb, 64},
    {-1, "archive", "", 0, 7},
    {2, "archive", "overlay_at_end", 0, 8},
    {-1, "plain", "", kThrottleMb, 64},
    {1, "archive", "snapshot_first", kThrottleMb, 32},
};

std::string Rate(double mb) {
  char s[32];
  snprintf(s, sizeof s, "%g", mb);
  return s;
}

TEST(LmdbMultiProcessTorture, ThreeWriterProcessesEveryCopyIsACommittedPrefix) {
  TempDir dir("cowbackup-lmdb-mp-torture");
  const std::string env = dir.subdir("env");
  uint64_t preload = 0;
  Preload(env, 0, &preload);
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::unique_ptr<LmdbWriter>> writers;
  for (int i = 0; i < 3; i++) writers.push_back(std::make_unique<LmdbWriter>(env, i + 1, /*durable=*/i == 0));
  for (auto& w : writers) ASSERT_TRUE(w->WaitCommits(10)) << "writer " << w->id() << " never got going";

  struct Result {
    std::string dest, by;
    bool plain = false, cli = false;
    BackupRun run;
  };
  std::vector<Result> results;
  const size_t rounds = std::size(kRounds) * (test::LongRun() ? 3 : 1);
  for (size_t i = 0; i < rounds; i++) {
    const Round& round = kRounds[i % std::size(kRounds)];
    Result r;
    r.plain = std::string(round.format) == "plain";
    r.cli = round.by < 0;
    r.dest = dir / ("copy-" + std::to_string(i) + (r.plain ? ".mdb" : ".cbk"));
    if (r.cli) {
      r.by = "cli";
      const Cli c = RunCli({"backup", "--json", "--force", "--format", round.format, "--max-rate-mb",
                            Rate(round.max_rate_mb), "--segment-pages", std::to_string(round.segment_pages), env,
                            r.dest},
                           dir.path());
      r.run = {c.t_call, c.t_return, c.ok(), c.ok() ? c.out : c.err};
    } else {
      LmdbWriter& w = *writers[size_t(round.by)];
      r.by = std::string(w.kind_name()) + " writer " + std::to_string(w.id()) + ", " + round.variant;
      r.run = w.Backup(r.dest, round.format, round.variant, round.max_rate_mb, round.segment_pages);
    }
    results.push_back(r);
    // The writers go on between rounds too.
    for (auto& w : writers) ASSERT_TRUE(w->WaitCommits(w->commit_count() + 3)) << "writer " << w->id();
  }
  for (auto& w : writers) w->Stop();

  std::vector<const LmdbWriter*> all_writers;
  for (auto& w : writers) {
    all_writers.push_back(w.get());
    EXPECT_EQ(w->errors(), std::vector<std::string>{}) << "writer " << w->id() << " (" << w->kind_name() << ")";
  }
  const std::vector<Commit> commits = AllCommits(all_writers);
  EXPECT_EQ(DistinctSeqs(commits), "");
  int64_t reported = 0, held_max_ns = 0;
  for (const Commit& c : commits) {
    reported = std::max(reported, c.seq);
    held_max_ns = std::max(held_max_ns, c.held_ns());
  }
  EXPECT_EQ(size_t(reported), commits.size()) << "a seq was skipped or reported twice";
  // The live env: every reported commit, exactly.
  EXPECT_EQ(CheckEnvCopy(env, CopyKind::kEnvDir, preload, {reported, reported}, dir.path()),
            reported);

  int64_t preserved_cli = 0, preserved_writers = 0;
  for (const Result& r : results) {
    SCOPED_TRACE("backup by " + r.by + " to " + r.dest);
    ASSERT_TRUE(r.run.ok) << r.run.text;
    const int64_t preserved = JsonInt(r.run.text, "preserved_pages");
    EXPECT_GE(preserved, 0) << r.run.text;
    (r.cli ? preserved_cli : preserved_writers) += preserved;
    const test::mp::Window win = CommitWindow(commits, r.run.t_call, r.run.t_return);
    const int64_t k = CheckEnvCopy(r.dest, r.plain ? CopyKind::kPlain : CopyKind::kArchive, preload, win, dir.path());
    EXPECT_EQ(JsonInt(r.run.text, "lmdb_txnid"), int64_t(preload) + k) << r.run.text;
    printf("backup by %s (%s): K %lld in [%lld, %lld], %lld pre-images preserved\n", r.by.c_str(),
           r.plain ? "plain" : "archive", (long long)k, (long long)win.lo,
           (long long)(win.hi == INT64_MAX ? -1 : win.hi), (long long)preserved);
  }
  // Writers of other processes overwrote pages the copier had not reached,
  // in jobs the CLI owned and in jobs a writer process owned.
  EXPECT_GT(preserved_cli, 0);
  EXPECT_GT(preserved_writers, 0);
  EXPECT_EQ(Leftovers(dir), std::vector<std::string>{});
  printf("%lld commits by 3 processes (", (long long)reported);
  for (auto& w : writers) printf(" %s %zu", w->kind_name(), w->commit_count());
  printf(" ), longest writer-lock hold %.1f ms\n", double(held_max_ns) / 1e6);
}

}  // namespace
}  // namespace cowbackup::lmdb::testing
