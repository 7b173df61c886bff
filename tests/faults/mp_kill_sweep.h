// The seeded kill sweep with writers in several processes (issue 12,
// "Tests"), for any front end: writer processes (test_util/mp_harness.h)
// commit the committed-prefix workload with one global sequence while a
// backup runs, and one process is SIGKILLed at a seeded point of it. A
// SweepTarget says how to make the database, start its writers and check a
// copy; multiprocess_crash_test.cc (SQLite) and
// lmdb_multiprocess_crash_test.cc (LMDB) each run both sweeps:
//
//   BackingUpProcess  the backup runs in build/cowbackup (its own process)
//                     and that process is killed: after a random delay from
//                     its start (seeds 1 mod 6: at attach, claim or T0), or
//                     once the job, read from the region as any participant
//                     reads it, has copied a seeded fraction of its pages
//                     (seeds 5 mod 6: once it is done, between publishing
//                     its copy and exiting, or after);
//                     even seeds freeze it (SIGSTOP) for 20 ms first, so
//                     writers that need what it holds wait on it as it dies.
//   Writer            one writer process is killed while the CLI (even
//                     seeds) or another writer's process (odd seeds) backs
//                     up: the last writer stopped by itself at the seeded
//                     k-th "CopyJob::preserve:read" (holding pages it
//                     claimed in the other process's job, mid-preservation,
//                     and the database's write lock), or any writer once a
//                     seeded fraction of the pages is copied.
//
// After each kill:
//   1. every surviving writer goes on (five more commits each), and none
//      holds the write lock longer than the target's bound (LMDB: nor takes
//      longer, begin to commit) in a transaction in progress at the kill or
//      begun in the second after it (the design target for a wait on a
//      dead party is 100 ms: docs/DESIGN.md); the longest hold and the
//      longest commit are reported;
//   2. a backup still running (writer case) fails, publishing nothing, or
//      gives a copy holding exactly 1..K with K in its call/return window;
//   3. a destination the killed CLI left is a complete archive (or plain
//      copy) that verifies and restores to such a prefix, or is absent;
//   4. the next backup (the CLI, writers still committing) succeeds, its
//      copy is in its window, and it removed the dead job's snapshot
//      volume and temporaries: no *.cowsnap or *.cowtmp-* remains;
//   5. once the writers stop, the database passes the target's check
//      (SQLite: integrity_check; LMDB: mdb_stat and a full read) and holds
//      every seq any writer reported committed.
//
// 12 seeds per test; 100 with COWBACKUP_LONG=1 (make test LONG=1).
// COWBACKUP_CRASH_SEED=<n> runs one seed. A failure prints its seed.
#pragma once

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "coord/region.h"
#include "test_util/long_run.h"
#include "test_util/mp_harness.h"


// What a stuck process is doing, for a failure message: every thread's
// stack (gdb, if installed), else its threads' kernel wait channels.
inline std::string ThreadStacks(pid_t pid) {
  std::string out;
  const std::string cmd = "gdb -batch -nx -p " + std::to_string(pid) +
                          " -ex 'thread apply all bt 20' 2>/dev/null | grep -E '^(Thread|#)' || "
                          "for t in /proc/" + std::to_string(pid) + "/task/*; do echo \"$t $(cat $t/wchan)\"; done";
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && out.size() < 64 * 1024) out.append(buf, n);
    pclose(f);
  }
  return out;
}

namespace cowbackup::test::mp {

// What the sweep needs to know of a front end.
class SweepTarget {
 public:
  virtual ~SweepTarget() = default;
  // Writer processes per run (the last one can stop at a sync point).
  virtual int writer_count() const = 0;
  // The longest a surviving writer may hold the write lock around a kill.
  virtual int64_t hold_bound_ns() const = 0;
  // Whether the bound also holds for a whole transaction, begin to commit,
  // waits for the write lock included (LMDB: the writer gate and LMDB's
  // robust mutex, which a killed holder hands on at once; SQLite's busy
  // handler has no such bound).
  virtual bool bound_whole_commit() const { return false; }
  // Makes the database in `dir`; its path (as the CLI and writers take it).
  virtual std::string Make(const TempDir& dir) = 0;
  // The region's path, and the file whose stat identifies the database.
  virtual std::string RegionPath(const std::string& source) const = 0;
  virtual std::string DatabaseFile(const std::string& source) const = 0;
  // Writer `index` (0-based; its id is index + 1), stopping itself at the
  // kill_at-th `kill_point` if one is given.
  virtual std::unique_ptr<WriterProcess> StartWriter(const std::string& source, int index,
                                                     const std::string& kill_point, long kill_at) = 0;
  // The destination's name for a plain copy ("copy.db", "copy.mdb").
  virtual std::string PlainName() const = 0;
  // Options the CLI's backup gets besides format, rate and segment size.
  virtual std::vector<std::string> CliOptions() const = 0;
  // Checks the copy at `dest` (it verifies, restores, passes the target's
  // check and holds 1..K with K in `win`); K, or -1 after a failure.
  virtual int64_t CheckCopy(const std::string& dest, bool plain, const Window& win, const TempDir& dir) = 0;
  // The live database once the writers stopped (its full check); its K.
  virtual int64_t CheckLive(const std::string& source, const TempDir& dir) = 0;
};

enum class Victim { kBackingUpProcess, kWriter };

inline constexpr const char* kPreservePoint = "CopyJob::preserve:read";

// The database's job as a participant sees it in the region (this test
// process attaches, as `cowbackup status` does: never creating or
// rebuilding the region).
class RegionWatch {
 public:
  RegionWatch(const std::string& database_file, const std::string& region_path) {
    struct stat st;
    EXPECT_EQ(::stat(database_file.c_str(), &st), 0) << database_file;
    coord::AttachOptions options;
    options.create = false;
    options.rebuild = false;
    const Status s = coord::Region::Attach(region_path, st, options, &region_);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  // True if a job is running and has handed `fraction` of its pages on.
  bool Reached(double fraction, std::string* seen) {
    coord::Job job;
    if (region_ == nullptr || !region_->ReadJob(&job).ok() || job.state != coord::JobState::kRunning) {
      return false;
    }
    coord::JobProgress p;
    if (!region_->ReadProgress(job, &p).ok() || p.pages == 0) return false;
    *seen = "running, " + std::to_string(p.done) + " of " + std::to_string(p.pages) + " pages done, " +
            std::to_string(p.preserved) + " preserved";
    return double(p.done) >= fraction * double(p.pages);
  }
  // True once the job is done: its copy published, its owner about to exit.
  bool Done() {
    coord::Job job;
    return region_ != nullptr && region_->ReadJob(&job).ok() && job.state == coord::JobState::kDone;
  }

 private:
  std::unique_ptr<coord::Region> region_;
};

struct SweepFigures {
  int runs = 0, landed_at_point = 0, killed_before_copy = 0, killed_in_copy = 0, killed_after = 0;
  int published_left = 0, in_flight_ok = 0, in_flight_failed = 0;
  int64_t hold_max_ns = 0, commit_max_ns = 0;
};

inline std::string RateText(double mb) {
  char s[32];
  snprintf(s, sizeof s, "%g", mb);
  return s;
}

inline bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// One seeded run: the backup (at `rate_mb`), the kill, and checks 1-5.
inline void KillOnce(SweepTarget& target, Victim victim, uint64_t seed, double rate_mb, SweepFigures* figures) {
  std::mt19937_64 rng(seed);
  TempDir dir("cowbackup-mp-crash");
  const std::string db = target.Make(dir);
  if (::testing::Test::HasFatalFailure()) return;
  const int n = target.writer_count();
  const bool plain = rng() % 2 == 1;
  const std::string dest = dir / (plain ? target.PlainName() : "copy.cbk");
  const uint32_t segment_pages = uint32_t(4 << (rng() % 5));  // 4..64
  // Writer case: the CLI backs up (even seeds) or writer 1 (odd); the
  // victim is chosen among the others.
  const bool cli_backs_up = victim == Victim::kBackingUpProcess || seed % 2 == 0;
  const bool at_sync_point = victim == Victim::kWriter && rng() % 2 == 0;
  const long kill_at = long(1 + rng() % 6);
  const double fraction = double(rng() % 1000) / 1000.0 * 0.9;
  const bool by_delay = victim == Victim::kBackingUpProcess && seed % 6 == 1;
  const bool once_done = victim == Victim::kBackingUpProcess && seed % 6 == 5;
  const auto delay = std::chrono::milliseconds(rng() % 40);
  int victim_index = at_sync_point ? n - 1 : int(rng() % uint64_t(n));
  if (!cli_backs_up && victim_index == 0) victim_index = 1 + int(rng() % uint64_t(n - 1));

  std::vector<std::unique_ptr<WriterProcess>> writers;
  for (int i = 0; i < n; i++) {
    const bool stops = at_sync_point && i == n - 1;
    writers.push_back(target.StartWriter(db, i, stops ? kPreservePoint : "", stops ? kill_at : 0));
  }
  for (auto& w : writers) ASSERT_TRUE(w->WaitCommits(5)) << "writer " << w->id() << " never got going";
  RegionWatch watch(target.DatabaseFile(db), target.RegionPath(db));

  // The backup, and the point to kill at.
  Cli cli;
  int64_t t_call = NowNs();
  const std::string variant = seed % 4 < 2 ? "snapshot_first" : "overlay_at_end";
  if (cli_backs_up) {
    std::vector<std::string> args = {"backup", "--json", "--force", "--format", plain ? "plain" : "archive",
                                     "--max-rate-mb", RateText(rate_mb), "--segment-pages",
                                     std::to_string(segment_pages)};
    for (const std::string& o : target.CliOptions()) args.push_back(o);
    args.insert(args.end(), {db, dest});
    cli = StartCli(args, dir.path());
    t_call = cli.t_call;
  } else {
    writers[0]->StartBackup(dest, plain ? "plain" : "archive", variant, rate_mb, segment_pages);
  }
  auto backup_ended = [&] { return cli_backs_up ? CliExited(&cli) : writers[0]->BackupDone(); };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  const auto started = std::chrono::steady_clock::now();
  std::string seen = "no job seen";
  bool landed = false;
  for (;;) {
    if (at_sync_point) {
      if (writers[size_t(n - 1)]->WaitStopped(std::chrono::steady_clock::now() + std::chrono::milliseconds(2))) {
        landed = true;
        seen = "writer stopped at " + std::string(kPreservePoint) + " hit " + std::to_string(kill_at);
        break;
      }
    } else if (once_done ? watch.Done()
               : by_delay  ? std::chrono::steady_clock::now() - started >= delay
                           : watch.Reached(fraction, &seen)) {
      landed = true;
      if (by_delay) seen = std::to_string(delay.count()) + " ms after it started";
      if (once_done) seen = "once its job was done";
      break;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (backup_ended() || std::chrono::steady_clock::now() >= deadline) break;
  }

  // The kill.
  WriterProcess* victim_writer = victim == Victim::kWriter ? writers[size_t(victim_index)].get() : nullptr;
  std::vector<size_t> counts_at_kill;
  for (auto& w : writers) counts_at_kill.push_back(w->commit_count());
  int64_t t_kill;
  if (victim_writer != nullptr) {
    t_kill = victim_writer->Kill();
  } else {
    // Even seeds freeze it first, so that writers needing pages it holds
    // (its segment claims; the write lock at T0 or the end check) are
    // waiting on it when it dies.
    if (seed % 2 == 0 && !CliExited(&cli)) {
      ::kill(cli.pid, SIGSTOP);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    t_kill = NowNs();
    FinishCli(&cli, /*kill_it=*/true);
  }
  const std::string where = landed ? seen : "after the backup ended (" + seen + ")";
  SCOPED_TRACE("killed " + std::string(victim_writer ? "writer " + std::to_string(victim_writer->id()) +
                                                           " (" + victim_writer->kind_name() + ")"
                                                     : "the CLI") +
               " " + where);

  // 1. The survivors go on.
  for (size_t i = 0; i < writers.size(); i++) {
    if (writers[i].get() == victim_writer) continue;
    const bool went_on = writers[i]->WaitCommits(counts_at_kill[i] + 5, std::chrono::seconds(30));
    EXPECT_TRUE(went_on) << "writer " << writers[i]->id() << " did not go on after the kill; its threads:\n"
                         << (went_on ? "" : ThreadStacks(writers[i]->pid()));
  }

  // 2. A backup still running (the writer case) ends one way or the other.
  bool in_flight_ok = false;
  BackupRun in_flight;
  if (victim == Victim::kWriter) {
    if (cli_backs_up) {
      FinishCli(&cli);
      in_flight = {cli.t_call, cli.t_return, cli.ok(), cli.ok() ? cli.out : cli.err};
    } else {
      in_flight = writers[0]->WaitBackup();
    }
    in_flight_ok = in_flight.ok;
    if (!in_flight.ok) {
      EXPECT_FALSE(PathExists(dest)) << "a failed backup published: " << in_flight.text;
    }
  }
  // 3. What the killed CLI left at the destination, or what the backup in
  // flight made, is checked below, with every commit known; moved aside
  // so that the next backup goes to the same name.
  const bool left_published = victim == Victim::kBackingUpProcess && PathExists(dest);
  const std::string kept = dir / ("kept-" + std::string(plain ? target.PlainName() : "copy.cbk"));
  if (PathExists(dest)) {
    ASSERT_EQ(::rename(dest.c_str(), kept.c_str()), 0);
  }

  // 4. The next backup to the same destination (its temporaries are the
  // ones a backup sweeps), with the survivors writing.
  std::vector<std::string> args = {"backup", "--json", "--format", plain ? "plain" : "archive"};
  for (const std::string& o : target.CliOptions()) args.push_back(o);
  args.insert(args.end(), {db, dest});
  const Cli again = RunCli(args, dir.path());
  EXPECT_TRUE(again.ok()) << "the next backup failed: " << again.err;
  EXPECT_EQ(Leftovers(dir), std::vector<std::string>{}) << "the next backup left a dead job's files";

  for (auto& w : writers) {
    if (w.get() != victim_writer) w->Stop();
  }
  std::vector<const WriterProcess*> all;
  for (auto& w : writers) all.push_back(w.get());
  const std::vector<Commit> commits = AllCommits(all);
  if (in_flight_ok) target.CheckCopy(kept, plain, CommitWindow(commits, in_flight.t_call, in_flight.t_return), dir);
  if (left_published) target.CheckCopy(kept, plain, CommitWindow(commits, t_call, t_kill), dir);
  if (again.ok()) target.CheckCopy(dest, plain, CommitWindow(commits, again.t_call, again.t_return), dir);

  // 5. The database.
  EXPECT_EQ(DistinctSeqs(commits), "");
  int64_t reported = 0;
  for (const Commit& c : commits) reported = std::max(reported, c.seq);
  const int64_t k = target.CheckLive(db, dir);
  EXPECT_GE(k, reported) << "a commit a writer reported is missing";
  int64_t hold_max = 0, commit_max = 0;
  Commit longest;
  for (auto& w : writers) {
    if (w.get() == victim_writer) continue;
    EXPECT_EQ(w->errors(), std::vector<std::string>{}) << "writer " << w->id() << ": a write failed";
    for (const Commit& c : w->commits()) {
      if (c.t_end < t_kill || c.t_begin > t_kill + 1'000'000'000) continue;
      if (c.held_ns() > hold_max) longest = c;
      hold_max = std::max(hold_max, c.held_ns());
      commit_max = std::max(commit_max, c.t_end - c.t_begin);
    }
  }
  EXPECT_LT(hold_max, target.hold_bound_ns())
      << "a surviving writer held the write lock that long around the kill: writer " << longest.writer
      << ", seq " << longest.seq << ", began " << (longest.t_begin - t_kill) / 1000000 << " ms after the kill, "
      << "locked at +" << (longest.t_locked - t_kill) / 1000000 << " ms, committed at +"
      << (longest.t_end - t_kill) / 1000000 << " ms; the next backup ran from +" << (again.t_call - t_kill) / 1000000
      << " to +" << (again.t_return - t_kill) / 1000000 << " ms: " << again.out;

  if (target.bound_whole_commit()) {
    EXPECT_LT(commit_max, target.hold_bound_ns()) << "a surviving writer's transaction took that long around the kill";
  }

  figures->runs++;
  figures->landed_at_point += at_sync_point && landed;
  if (!landed || once_done) {
    figures->killed_after++;
  } else if (seen.rfind("running", 0) == 0 || at_sync_point) {
    figures->killed_in_copy++;
  } else {
    figures->killed_before_copy++;
  }
  figures->published_left += left_published;
  if (victim == Victim::kWriter) (in_flight_ok ? figures->in_flight_ok : figures->in_flight_failed)++;
  figures->hold_max_ns = std::max(figures->hold_max_ns, hold_max);
  figures->commit_max_ns = std::max(figures->commit_max_ns, commit_max);
  if (getenv("COWBACKUP_CRASH_VERBOSE") != nullptr) {
    fprintf(stderr, "seed %llu: killed %s %s; hold %.1f ms, commit %.1f ms; in-flight: %s\n",
            (unsigned long long)seed, victim_writer ? "a writer" : "the CLI", where.c_str(), hold_max / 1e6,
            commit_max / 1e6, in_flight.text.c_str());
  }
  if (::testing::Test::HasFailure()) {
    fprintf(stderr, "seed %llu: killed %s %s; in-flight backup: %s\n", (unsigned long long)seed,
            victim_writer ? "a writer" : "the CLI", where.c_str(), in_flight.text.c_str());
  }
}

// The sweep: 12 seeds from `first_seed` (100 with COWBACKUP_LONG=1, one
// with COWBACKUP_CRASH_SEED), its figures printed; the kills must have
// landed where the sweep is for.
inline void KillSweep(SweepTarget& target, Victim victim, uint64_t first_seed, double rate_mb) {
  const char* only = getenv("COWBACKUP_CRASH_SEED");
  const int seeds = LongRun() ? 100 : 12;
  SweepFigures f;
  for (int i = 0; i < (only ? 1 : seeds); i++) {
    const uint64_t seed = only ? strtoull(only, nullptr, 10) : first_seed + uint64_t(i);
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun: COWBACKUP_CRASH_SEED=" + std::to_string(seed) + ")");
    KillOnce(target, victim, seed, rate_mb, &f);
    if (::testing::Test::HasFailure()) return;
  }
  if (victim == Victim::kWriter) {
    printf("a writer process killed %d times: %d during the copy (%d of them stopped mid-preservation), "
           "%d after the backup ended; the backups in flight: %d done, %d failed cleanly",
           f.runs, f.killed_in_copy, f.landed_at_point, f.killed_after, f.in_flight_ok, f.in_flight_failed);
  } else {
    printf("the backing-up CLI killed %d times: %d during the copy, %d by delay (at attach, claim or T0), "
           "%d once the job was done; %d complete copies left at the destination",
           f.runs, f.killed_in_copy, f.killed_before_copy, f.killed_after, f.published_left);
  }
  printf("; survivors around the kill: longest write-lock hold %.1f ms, longest commit %.1f ms\n",
         double(f.hold_max_ns) / 1e6, double(f.commit_max_ns) / 1e6);
  if (!only) {
    EXPECT_GT(f.killed_in_copy, 0) << "no kill landed during a copy";
    if (victim == Victim::kBackingUpProcess) {
      EXPECT_GT(f.published_left, 0) << "no killed CLI left a copy to check";
    }
    if (victim == Victim::kWriter) {
      EXPECT_GT(f.landed_at_point, 0) << "no writer was ever killed mid-preservation";
    }
  }
}

}  // namespace cowbackup::test::mp
