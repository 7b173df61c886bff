// Multi-process torture, rollback-journal and WAL modes (issue 12, "Tests"): four
// writer processes commit the committed-prefix transaction with one global
// sequence (log row n+1 under BEGIN IMMEDIATE, the counter row, four filler
// pages) while backups run, started in turn by the command-line tool (a
// process of its own) and by one of the writer processes:
//
//   writers  two Debian /usr/bin/python3 processes with build/cowbackup.so
//            loaded (tests/sqlite/mp_writer.py), two through the embedded
//            API (mp_writer.cc); sanitizer builds run four C++ ones
//   rounds   eight, alternating CLI and writer: both formats for each,
//            both variants for the writers (the CLI has only the default),
//            half throttled so that writers overwrite uncopied pages
//   journal  DELETE, TRUNCATE, PERSIST (each writer's connection setting),
//            and WAL (the file's; the writers' automatic checkpoints and
//            WAL restarts are what preserves pages there)
//
// COWBACKUP_LONG=1 runs the rounds three times.
//
// Every backup must succeed; each copy, restored by the CLI, must pass
// integrity_check and hold exactly 1..K of the global sequence with K in
// its call/return window (every seq whose COMMIT returned before the call
// is in, none whose BEGIN started after the return is). Preserved pages
// must show in CLI rounds and in writer rounds, so copy-on-write across
// processes was exercised in both directions. The live database, after
// the writers stop, holds every commit any of them reported.
#include <memory>

#include "sqlite/multiprocess_harness.h"

namespace cowbackup::testing::mp {
namespace {

constexpr int kFillerRows = 3000 / kScale;  // ~12 MB (3 MB in sanitizer builds)
constexpr double kThrottleMb = 15.0 / kScale;  // a throttled backup lasts ~1 s

struct Round {
  int by;  // -1: the CLI; else the index of the writer that runs it
  const char* format;
  const char* variant;  // writers only
  double max_rate_mb;
  uint32_t segment_pages;
};

// Writers 0, 1 are python, 2, 3 C++.
constexpr Round kRounds[] = {
    {-1, "archive", "", kThrottleMb, 32},
    {0, "plain", "snapshot_first", kThrottleMb, 16},
    {-1, "plain", "", 0, 256},
    {2, "archive", "overlay_at_end", kThrottleMb, 64},
    {-1, "archive", "", 0, 7},
    {3, "plain", "snapshot_first", 0, 8},
    {-1, "plain", "", kThrottleMb, 64},
    {1, "archive", "overlay_at_end", kThrottleMb, 32},
};

struct Result {
  std::string dest, by;
  bool plain = false, cli = false;
  BackupRun run;
};

std::string Rate(double mb) {
  char s[32];
  snprintf(s, sizeof s, "%g", mb);
  return s;
}

void RunTorture(const std::string& journal) {
  TempDir dir("cowbackup-mp-torture");
  const std::string db = dir / "app.db";
  MakeWorkloadDb(db, kFillerRows, journal == "wal" ? "wal" : "delete");
  std::vector<std::unique_ptr<Writer>> writers;
  for (int i = 0; i < 4; i++) {
    WriterSpec spec;
    spec.kind = i < 2 ? WriterKind::kPython : WriterKind::kCpp;
    spec.journal = journal;
    writers.push_back(std::make_unique<Writer>(db, i + 1, spec));
  }
  for (auto& w : writers) ASSERT_TRUE(w->WaitCommits(10)) << "writer " << w->id() << " never got going";

  std::vector<Result> results;
  const size_t rounds = std::size(kRounds) * (LongRun() ? 3 : 1);
  for (size_t i = 0; i < rounds; i++) {
    const Round& round = kRounds[i % std::size(kRounds)];
    Result r;
    r.plain = std::string(round.format) == "plain";
    r.cli = round.by < 0;
    r.dest = dir / ("copy-" + std::to_string(i) + (r.plain ? ".db" : ".cbk"));
    if (r.cli) {
      r.by = "cli";
      const Cli c = RunCli({"backup", "--json", "--force", "--busy-timeout-ms", "60000", "--format",
                            round.format, "--max-rate-mb", Rate(round.max_rate_mb), "--segment-pages",
                            std::to_string(round.segment_pages), db, r.dest},
                           dir.path());
      r.run = {c.t_call, c.t_return, c.ok(), c.ok() ? c.out : c.err};
    } else {
      Writer& w = *writers[size_t(round.by)];
      r.by = std::string(w.kind_name()) + " writer " + std::to_string(w.id()) + ", " + round.variant;
      r.run = w.Backup(r.dest, round.format, round.variant, round.max_rate_mb, round.segment_pages);
    }
    results.push_back(r);
    // The writers go on between rounds too.
    for (auto& w : writers) ASSERT_TRUE(w->WaitCommits(w->commit_count() + 3));
  }
  for (auto& w : writers) w->Stop();

  std::vector<const Writer*> all_writers;
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
  std::string why;
  EXPECT_EQ(CommittedPrefix(db, &why), reported) << why << " (the live database: every reported commit)";

  int64_t preserved_cli = 0, preserved_writers = 0;
  for (const Result& r : results) {
    SCOPED_TRACE("backup by " + r.by + " to " + r.dest);
    ASSERT_TRUE(r.run.ok) << r.run.text;
    const int64_t preserved = JsonInt(r.run.text, "preserved_pages");
    EXPECT_GE(preserved, 0) << r.run.text;
    (r.cli ? preserved_cli : preserved_writers) += preserved;
    const std::string restored = RestoreWithCli(r.dest, r.plain, dir.path());
    ASSERT_NE(restored, "");
    const int64_t k = CommittedPrefix(restored, &why);
    EXPECT_EQ(why, "") << r.run.text;
    const Window win = CommitWindow(commits, r.run.t_call, r.run.t_return);
    EXPECT_GE(k, win.lo) << "a seq committed before the backup was called is missing";
    EXPECT_LE(k, win.hi) << "a seq begun after the backup returned is in the copy";
    printf("journal %s, backup by %s (%s): K %lld in [%lld, %lld], %lld pre-images preserved\n",
           journal.c_str(), r.by.c_str(), r.plain ? "plain" : "archive", (long long)k, (long long)win.lo,
           (long long)(win.hi == INT64_MAX ? -1 : win.hi), (long long)preserved);
  }
  // Writers of other processes overwrote pages the copier had not reached,
  // in jobs the CLI owned and in jobs a writer process owned.
  EXPECT_GT(preserved_cli, 0);
  EXPECT_GT(preserved_writers, 0);
  EXPECT_EQ(Leftovers(dir), std::vector<std::string>{});
  printf("journal %s: %lld commits by 4 processes (", journal.c_str(), (long long)reported);
  for (auto& w : writers) printf(" %s %zu", w->kind_name(), w->commit_count());
  printf(" ), longest write-lock hold %.1f ms\n", double(held_max_ns) / 1e6);
}

TEST(MultiProcessTorture, DeleteJournal) { RunTorture("delete"); }
TEST(MultiProcessTorture, TruncateJournal) { RunTorture("truncate"); }
TEST(MultiProcessTorture, PersistJournal) { RunTorture("persist"); }
TEST(MultiProcessTorture, WalMode) { RunTorture("wal"); }

}  // namespace
}  // namespace cowbackup::testing::mp
