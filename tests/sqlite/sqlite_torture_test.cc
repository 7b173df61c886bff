// Torture: writer threads on separate connections commit without pause
// while backups of two databases run at once, through SELECT cowbackup().
// Every restored copy must pass integrity_check and hold exactly a committed
// prefix 1..K, K between the commits finished before the call and the
// transactions begun when it returned.
//
// The backups run every scenario of
//
//   variant  snapshot_first | overlay_at_end
//   format   archive | plain
//   yield    yield_to_commits or not
//
// named "variant/format/yield" (e.g. "overlay_at_end/archive/yield"). Database
// a copies in 7-page segments (many boundaries), b in 64-page ones. In the
// normal build each database runs all eight (b in another order, so the two
// never run the same one at once): every scenario with both segment sizes.
// Sanitizer builds split the eight between a and b, four each, such that
// each database still sees both values of every dimension. COWBACKUP_LONG=1
// runs the lists three times.
//
// The same torture runs in each journal mode:
//   - rollback (DELETE): ConcurrentWritersAndBackupsGiveCommittedPrefixes;
//   - WAL: WalWritersCheckpointsAndBackupsGiveCommittedPrefixes. Four writer
//     connections per database, SQLite's default automatic checkpoint on in
//     each, and one more connection issuing PASSIVE, FULL, RESTART and
//     TRUNCATE checkpoints in turn every couple of milliseconds, so WAL
//     restarts and truncations land in every backup. Every other pair of
//     scenarios takes T0 on an empty WAL (right after a TRUNCATE), where
//     only the main-file route protects the image; the others anywhere.
//     Beside each copy the live database itself is checked (integrity_check
//     and the prefix, read by a fresh plain connection right after the
//     backup returns), so that a fault of SQLite's (the WAL-reset bug, see
//     Db::sqlite_mu) is not taken for ours. The test also fails if some
//     checkpoint kind never completed inside a backup, if the automatic
//     checkpoint never ran, or if no backup preserved a page.
// WalRestartOverUncopiedT0FramesIsPreserved makes what the torture makes
// likely happen for certain, in each variant and format: a WAL restart
// over T0's frames, and a checkpoint of pages T0's WAL does not hold,
// before the copier reaches them; each route must preserve exactly its
// pages. (Disabling either route in backup/wal_image_source.cc fails both
// tests.)
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "sqlite/sqlite_test_util.h"

namespace cowbackup::testing {
namespace {

constexpr int kFillerRows = 6000 / kScale;  // rollback mode; WAL mode has half
constexpr int kFillerBytes = 3000;
// SQLite's default wal_autocheckpoint, in frames: a commit that leaves
// mxFrame at or past it runs a PASSIVE checkpoint on its connection.
constexpr uint32_t kDefaultAutocheckpointFrames = 1000;

// Lets one thread in at a time, in the order they asked (a ticket lock):
// writers committing back to back cannot starve the checkpointer, as they
// could with an unfair std::mutex on a loaded machine.
class FifoMutex {
 public:
  void lock() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t ticket = next_++;
    cv_.wait(lock, [&] { return serving_ == ticket; });
  }
  void unlock() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      serving_++;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ = 0, serving_ = 0;
};

// sqlite3_wal_checkpoint_v2's modes, SQLITE_CHECKPOINT_PASSIVE (0) on.
constexpr const char* kCheckpointModes[] = {"PASSIVE", "FULL", "RESTART", "TRUNCATE"};
constexpr int kTruncate = SQLITE_CHECKPOINT_TRUNCATE;
static_assert(SQLITE_CHECKPOINT_PASSIVE == 0 && kTruncate == 3);

struct Db {
  std::string path;
  bool wal = false;
  // Rows of ~3 KB in the filler table: one page each. WAL mode has half of
  // rollback mode's, copied at half the rate: its backups last as long,
  // with half the bytes to restore and check.
  int filler_rows = kFillerRows;
  CommitCounters commits;
  std::atomic<int> writer_errors{0};
  std::string first_error;

  // ---- WAL mode only ----
  // SQLite's WAL-reset bug (present 3.7.0 .. 3.51.2; Debian 12 ships
  // 3.40.1; docs/SQLITE.md) needs a checkpoint running while another
  // connection commits: a commit that resets the WAL under a checkpoint
  // can make a later checkpoint skip committed pages, corrupting the live
  // database. Its trigger is kept out: every commit, together with the
  // automatic checkpoint SQLite may run right after it inside the same
  // sqlite3_exec, and every explicit checkpoint (the checkpointer's, and
  // the TRUNCATE before an empty-WAL T0) hold this mutex, so no checkpoint
  // ever overlaps a write. The backups are not under it: T0 and the end
  // check take SQLite's WAL locks and the copier reads while commits,
  // checkpoints, restarts and truncations go on. The live database's own
  // integrity_check, beside each copy's, would show the bug if it struck
  // anyway.
  FifoMutex sqlite_mu;
  // Odd while a backup call is in progress: incremented at call and return.
  std::atomic<int64_t> backup_window{0};
  // Explicit checkpoints that completed inside one backup's call, by mode.
  std::atomic<int> checkpoints_in_backup[4] = {};
  std::atomic<int> checkpoints_busy{0};
  std::atomic<int> checkpoint_errors{0};
  std::string first_checkpoint_error;
  // Times the WAL grew to kDefaultAutocheckpointFrames since a TRUNCATE
  // with no explicit checkpoint in between: a writer's automatic
  // checkpoint ran each time.
  std::atomic<int> autocheckpoints{0};
  int autocheckpoints_before_backups = 0;
};

void Writer(Db* d, int id, const std::atomic<bool>* stop) {
  sqlite3* db = Open(d->path);
  std::string error;
  while (!stop->load()) {
    bool ok;
    if (d->wal) {
      std::lock_guard<FifoMutex> lock(d->sqlite_mu);
      ok = CommitOne(db, id, d->filler_rows, &d->commits, &error);
    } else {
      ok = CommitOne(db, id, d->filler_rows, &d->commits, &error);
    }
    if (!ok && d->writer_errors.fetch_add(1) == 0) d->first_error = error;
  }
  sqlite3_close(db);
}

// Lets the WAL grow, from empty, until it holds the default autocheckpoint
// size: the writer whose commit gets there runs SQLite's automatic
// checkpoint. Gives up at `deadline` or on stop; returns whether it got there.
bool WaitForAutocheckpoint(Db* d, off_t autocheckpoint_size, const std::atomic<bool>* stop,
                           std::chrono::steady_clock::time_point deadline) {
  struct stat st;
  while (!(::stat((d->path + "-wal").c_str(), &st) == 0 && st.st_size >= autocheckpoint_size)) {
    if (stop->load() || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  d->autocheckpoints++;
  return true;
}

// WAL mode: one connection checkpoints. First it truncates the WAL and
// waits for the automatic checkpoint, however long that takes (the test
// waits for this before its first backup). Then PASSIVE, FULL, RESTART,
// TRUNCATE in turn, one every ~2 ms, and after every fourth TRUNCATE it
// lets the WAL grow again for at most 200 ms, so that the automatic
// checkpoint runs during backups too while the machine is fast enough to
// reach it (then ~330 commits), and explicit ones never stop for long.
void Checkpointer(Db* d, const std::atomic<bool>* stop) {
  using Clock = std::chrono::steady_clock;
  sqlite3* db = Open(d->path);
  const uint32_t page_size = uint32_t(QueryInt(db, "PRAGMA page_size"));
  const off_t autocheckpoint_size =
      off_t(sqlite::WalFrameOffset(kDefaultAutocheckpointFrames + 1, page_size));
  for (int n = -1; !stop->load(); n++) {
    const int mode = n < 0 ? kTruncate : n % 4;
    const int64_t window = d->backup_window.load();
    int rc;
    {
      std::lock_guard<FifoMutex> lock(d->sqlite_mu);
      rc = sqlite3_wal_checkpoint_v2(db, "main", mode, nullptr, nullptr);
    }
    if (rc == SQLITE_BUSY) {
      d->checkpoints_busy++;
    } else if (rc != SQLITE_OK) {
      if (d->checkpoint_errors.fetch_add(1) == 0) {
        d->first_checkpoint_error = std::string(kCheckpointModes[mode]) + ": " + sqlite3_errmsg(db);
      }
    } else if (window % 2 == 1 && d->backup_window.load() == window) {
      d->checkpoints_in_backup[mode]++;
    }
    if (n < 0) {
      WaitForAutocheckpoint(d, autocheckpoint_size, stop, Clock::time_point::max());
    } else if (mode == kTruncate && n % 16 == 15 && rc == SQLITE_OK) {
      WaitForAutocheckpoint(d, autocheckpoint_size, stop, Clock::now() + std::chrono::milliseconds(200));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  sqlite3_close(db);
}

struct Scenario {
  const char* variant;  // as the "variant" option takes it
  const char* format;   // as the "format" option takes it
  bool yield;           // "yield_to_commits"

  std::string name() const {
    return std::string(variant) + "/" + format + "/" + (yield ? "yield" : "no_yield");
  }
  bool plain() const { return std::string(format) == "plain"; }
};

std::vector<Scenario> AllScenarios() {
  std::vector<Scenario> all;
  for (const char* variant : {"snapshot_first", "overlay_at_end"}) {
    for (const char* format : {"archive", "plain"}) {
      for (bool yield : {false, true}) all.push_back({variant, format, yield});
    }
  }
  return all;
}

// The database file a destination holds: a plain copy is one; an archive
// is restored beside it first. "" (after a failure) if it cannot be.
std::string Restored(const std::string& dest, bool plain) {
  if (plain) return dest;
  const std::string restored = dest + ".restored.db";
  Status s = RestoreTo(dest, restored);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return s.ok() ? restored : "";
}

int64_t PreservedPages(const std::string& summary) {
  const size_t at = summary.find("\"preserved_pages\":");
  return at == std::string::npos ? 0 : std::stoll(summary.substr(at + 18));
}

// One backup (Backups) and what the checks made of it (CheckCopies),
// asserted on the test's thread.
struct BackupResult {
  std::string scenario, dest, error;
  bool plain = false;
  int64_t lo = 0, hi = 0;  // K must be in [lo, hi]
  std::string summary;
  bool empty_wal_t0 = false;  // T0 was taken right after a TRUNCATE
  bool empty_wal = false;     // and the -wal file was empty then
  mode_t mode = 0;            // the destination's permissions
  // The restored copy: CommittedPrefix's K and why not; whether a -wal
  // file stood beside it.
  int64_t k = -1;
  std::string why;
  bool wal_beside = false;
  // WAL mode: the live database, read right after the backup returned.
  std::string live_why;
  int64_t live_k = 0, live_lo = 0, live_hi = 0;
};

void Backups(Db* d, const TempDir* dir, const std::string& tag, int segment_pages,
             const std::vector<Scenario>& scenarios, std::vector<BackupResult>* out) {
  sqlite3* db = Open(d->path);
  for (size_t i = 0; i < scenarios.size(); i++) {
    const Scenario& scenario = scenarios[i];
    BackupResult r;
    r.scenario = scenario.name();
    r.plain = scenario.plain();
    r.dest = *dir / (tag + "-" + std::to_string(i) + (r.plain ? ".db" : ".cowbak"));
    const std::string options = "{\"segment_pages\":" + std::to_string(segment_pages) +
                                ",\"variant\":\"" + scenario.variant +
                                "\",\"format\":\"" + scenario.format +
                                // Throttled so each backup lasts ~0.3-0.6 s and
                                // writers overwrite uncopied pages even on a
                                // loaded machine under sanitizers (an
                                // unthrottled backup once finished first,
                                // 3 times in 40 ASan runs).
                                "\",\"max_rate_mb\":" +
                                std::to_string((kScale == 1 ? 60 : 8) * d->filler_rows / kFillerRows) +
                                // WAL mode: the begin-time and end locks wait
                                // out the commit in progress, and with two CPU
                                // burners beside the writers single commits
                                // took over 2 s: the default 5 s ran out. (In
                                // rollback mode a longer wait holds writers at
                                // the gate into their own busy timeouts.)
                                (d->wal ? ",\"busy_timeout_ms\":60000" : "") +
                                (scenario.yield ? ",\"yield_to_commits\":true" : "") + "}";
    // WAL mode: every other pair of scenarios (so both values of every
    // dimension) takes T0 on an empty WAL, right after a TRUNCATE under
    // sqlite_mu: no writer is in a commit then, so K is known exactly, and
    // the image is the main file alone, which every later checkpoint
    // writes (only the main-file route protects it then).
    r.empty_wal_t0 = d->wal && (i + i / 2) % 2 == 0;
    if (r.empty_wal_t0) r.scenario += "/empty_wal_t0";
    if (r.empty_wal_t0) {
      std::string id;
      {
        std::lock_guard<FifoMutex> lock(d->sqlite_mu);
        r.error = Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
        r.empty_wal = ReadFile(d->path + "-wal").empty();
        r.lo = d->commits.finished.load();
        d->backup_window++;
        if (r.error.empty()) {
          id = Query(db, "SELECT cowbackup_start(" + Quote(r.dest) + ", 'main', " + Quote(options) + ")",
                     &r.error);
        }
        r.hi = d->commits.started.load();
      }
      if (r.error.empty()) r.summary = Query(db, "SELECT cowbackup_wait(" + id + ")", &r.error);
      d->backup_window++;
    } else {
      r.lo = d->commits.finished.load();
      d->backup_window++;
      r.summary = Query(db, "SELECT cowbackup(" + Quote(r.dest) + ", 'main', " + Quote(options) + ")",
                        &r.error);
      d->backup_window++;
      r.hi = d->commits.started.load();
    }
    if (d->wal) {
      r.live_lo = d->commits.finished.load();
      r.live_k = CommittedPrefix(d->path, &r.live_why);
      r.live_hi = d->commits.started.load();
    }
    out->push_back(r);
  }
  sqlite3_close(db);
}

// Restores and checks each copy a Backups() made (after the writers
// stopped: restoring beside them starved a rollback-mode writer's busy
// handler past its 10 s timeout).
void CheckCopies(std::vector<BackupResult>* results) {
  for (BackupResult& r : *results) {
    if (!r.error.empty()) continue;
    r.mode = Mode(r.dest);
    const std::string restored = Restored(r.dest, r.plain);
    r.wal_beside = Exists(restored + "-wal");
    r.k = restored.empty() ? -1 : CommittedPrefix(restored, &r.why);
  }
}

void RunTorture(bool wal) {
  LoadExtension();
  TempDir dir;
  Db a, b;
  a.path = dir / "a.db";
  b.path = dir / "b.db";
  for (Db* d : {&a, &b}) {
    d->wal = wal;
    d->filler_rows = wal ? kFillerRows / 2 : kFillerRows;
    sqlite3* db = Open(d->path);
    if (wal) {
      ASSERT_EQ(Query(db, "PRAGMA journal_mode=WAL"), "wal");
    }
    CreateWorkload(db, d->filler_rows, kFillerBytes);
    sqlite3_close(db);
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int i = 0; i < 4; i++) writers.emplace_back(Writer, &a, i, &stop);
  for (int i = 0; i < (wal ? 4 : 2); i++) writers.emplace_back(Writer, &b, 10 + i, &stop);
  if (wal) {
    writers.emplace_back(Checkpointer, &a, &stop);
    writers.emplace_back(Checkpointer, &b, &stop);
  }
  // Let the writers get going before the first T0 (WAL mode: until the
  // automatic checkpoint has run once).
  while (a.commits.finished.load() < 20 || b.commits.finished.load() < 20 ||
         (wal && (a.autocheckpoints.load() == 0 || b.autocheckpoints.load() == 0))) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (Db* d : {&a, &b}) d->autocheckpoints_before_backups = d->autocheckpoints.load();
  std::vector<Scenario> list_a, list_b;
  const std::vector<Scenario> all = AllScenarios();
  const int passes = LongRun() ? 3 : 1;
  for (int pass = 0; pass < passes; pass++) {
    for (size_t i = 0; i < all.size(); i++) {
      if (kScale == 1) {
        list_a.push_back(all[i]);
        list_b.push_back(all[(i + all.size() / 2) % all.size()]);
      } else {
        // Even parity of the index bits (variant, format, yield) to a: half
        // the product, in which every value of every dimension occurs.
        (__builtin_parity(unsigned(i)) == 0 ? list_a : list_b).push_back(all[i]);
      }
    }
  }
  std::vector<BackupResult> results_a, results_b;
  std::thread ta(Backups, &a, &dir, "a", 7, list_a, &results_a);
  std::thread tb(Backups, &b, &dir, "b", 64, list_b, &results_b);
  ta.join();
  tb.join();
  stop = true;
  for (auto& t : writers) t.join();
  // The two databases' copies at once: the copies are large, the checks
  // mostly I/O.
  ta = std::thread(CheckCopies, &results_a);
  tb = std::thread(CheckCopies, &results_b);
  ta.join();
  tb.join();
  EXPECT_EQ(a.writer_errors.load(), 0) << a.first_error;
  EXPECT_EQ(b.writer_errors.load(), 0) << b.first_error;

  int64_t preserved_total = 0;
  for (const auto& [results, list] : {std::pair{&results_a, &list_a}, std::pair{&results_b, &list_b}}) {
    ASSERT_EQ(results->size(), list->size());
    for (const BackupResult& r : *results) {
      SCOPED_TRACE("scenario " + r.scenario + ", " + r.dest);
      if (wal) {
        // The live database as SQLite sees it: if this fails, the fault
        // is SQLite's or the shim's forwarding, not the copy's.
        EXPECT_EQ(r.live_why, "") << "the live database right after the backup";
        EXPECT_GE(r.live_k, r.live_lo);
        EXPECT_LE(r.live_k, r.live_hi);
      }
      ASSERT_EQ(r.error, "");
      if (r.empty_wal_t0) {
        EXPECT_TRUE(r.empty_wal);
        EXPECT_EQ(r.lo, r.hi) << "a commit was in flight at T0";
      }
      EXPECT_NE(r.summary.find("\"state\":\"done\""), std::string::npos) << r.summary;
      EXPECT_EQ(r.mode, 0600u);
      EXPECT_FALSE(r.wal_beside);
      EXPECT_EQ(r.why, "") << "the restored copy; " << r.summary;
      EXPECT_GE(r.k, r.lo);
      EXPECT_LE(r.k, r.hi);
      preserved_total += PreservedPages(r.summary);
    }
  }
  // The writers did overwrite uncopied pages: copy-on-write was exercised.
  EXPECT_GT(preserved_total, 0);
  std::printf("commits: a=%lld b=%lld, pre-images preserved in all backups: %lld\n",
              (long long)a.commits.finished.load(), (long long)b.commits.finished.load(),
              (long long)preserved_total);
  if (!wal) return;
  for (Db* d : {&a, &b}) {
    SCOPED_TRACE(d->path);
    EXPECT_EQ(d->checkpoint_errors.load(), 0) << d->first_checkpoint_error;
    for (int mode = 0; mode < 4; mode++) {
      EXPECT_GT(d->checkpoints_in_backup[mode].load(), 0)
          << "no " << kCheckpointModes[mode] << " checkpoint completed during a backup";
    }
    EXPECT_GT(d->autocheckpoints.load(), 0) << "the automatic checkpoint never ran";
    const int autocheckpoints_later = d->autocheckpoints.load() - d->autocheckpoints_before_backups;
    // Once everything stopped, the live database holds every commit.
    std::string why;
    EXPECT_EQ(CommittedPrefix(d->path, &why), d->commits.finished.load()) << why;
    std::printf("%s: checkpoints completed during backups: passive %d, full %d, restart %d, "
                "truncate %d; busy %d; automatic checkpoints since the first backup %d\n",
                d->path.c_str(), d->checkpoints_in_backup[0].load(), d->checkpoints_in_backup[1].load(),
                d->checkpoints_in_backup[2].load(), d->checkpoints_in_backup[3].load(),
                d->checkpoints_busy.load(), autocheckpoints_later);
  }
}

TEST(SqliteTorture, ConcurrentWritersAndBackupsGiveCommittedPrefixes) { RunTorture(/*wal=*/false); }

TEST(SqliteTorture, WalWritersCheckpointsAndBackupsGiveCommittedPrefixes) { RunTorture(/*wal=*/true); }

// One run of WalRestartOverUncopiedT0FramesIsPreserved, on a table of one
// row per page. T0's WAL holds one committed transaction that rewrote the
// last rows (the "hot" pages, at the end of the file); the copy is
// throttled to reach the pages written below only after ~0.3 s. Right
// after T0 the writer runs a RESTART checkpoint, then one transaction that
// rewrites the hot rows and some "cold" rows (pages T0's WAL does not
// hold): the WAL restarts and its new frames land on T0's, from offset 32.
// Then a checkpoint writes both sets into the main file: TRUNCATE, which
// also cuts the -wal file to 0, or PASSIVE, which leaves the new
// generation's frames where T0's were for the copier to find. So each
// route must preserve exactly its own pages: the -wal route the hot pages
// (the restart), the main-file route the cold ones (the checkpoint; it
// must skip the hot ones, which T0's WAL replaces). Returns false if the
// copier had reached those pages before the writer was done (a loaded
// machine): the run proves nothing then, and the caller repeats it slower.
bool RestartOverT0Frames(const std::string& path, const Scenario& scenario, bool truncate,
                         double max_rate_mb) {
  constexpr int kRows = 60, kHotRows = 6, kColdFirst = 40, kColdRows = 6, kSegmentPages = 8;
  const std::string dest = path + (scenario.plain() ? ".copy.db" : ".cowbak");
  ::unlink(dest.c_str());
  sqlite3* db = Open(path);
  sqlite3* writer = Open(path);
  const std::string hot = "id > " + std::to_string(kRows - kHotRows);
  const std::string cold =
      "id BETWEEN " + std::to_string(kColdFirst) + " AND " + std::to_string(kColdFirst + kColdRows - 1);
  EXPECT_EQ(Query(db, "PRAGMA journal_mode=WAL"), "wal");
  for (sqlite3* c : {db, writer}) EXPECT_EQ(Exec(c, "PRAGMA wal_autocheckpoint=0"), "");
  if (QueryInt(db, "SELECT count(*) FROM sqlite_schema") == 0) {
    EXPECT_EQ(MakeTable(db, kRows, 3000), "");
  }
  EXPECT_EQ(Query(writer, "PRAGMA wal_checkpoint(TRUNCATE)"), "0");
  EXPECT_EQ(Exec(writer, "UPDATE t SET v = randomblob(3000) WHERE " + hot), "");

  const sqlite::WalScan t0 = ScanWalFile(path);
  EXPECT_EQ(t0.pages.size(), size_t(kHotRows));
  std::string error;
  const std::string expected = Dump(path, &error);
  EXPECT_EQ(error, "");

  const std::string options = std::string("{\"variant\":\"") + scenario.variant + "\",\"format\":\"" +
                              scenario.format + "\",\"segment_pages\":" + std::to_string(kSegmentPages) +
                              ",\"max_rate_mb\":" + std::to_string(max_rate_mb) + "}";
  const std::string id =
      Query(db, "SELECT cowbackup_start(" + Quote(dest) + ", 'main', " + Quote(options) + ")", &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(Query(writer, "PRAGMA wal_checkpoint(RESTART)"), "0");
  EXPECT_EQ(Exec(writer, "UPDATE t SET v = randomblob(3000) WHERE " + hot + " OR " + cold), "");
  const sqlite::WalScan restarted = ScanWalFile(path);
  EXPECT_EQ(restarted.header.salt1, t0.header.salt1 + 1) << "the WAL did not restart";
  EXPECT_GE(restarted.max_frame, t0.max_frame) << "the new frames do not cover T0's";
  EXPECT_EQ(restarted.pages.size(), size_t(kHotRows + kColdRows));
  uint32_t first_pgno = UINT32_MAX;  // the first page either route must preserve
  for (const sqlite::WalPageFrame& pf : restarted.pages) first_pgno = std::min(first_pgno, pf.pgno);
  EXPECT_EQ(Query(writer, std::string("PRAGMA wal_checkpoint(") + (truncate ? "TRUNCATE" : "PASSIVE") + ")"),
            "0");
  const int64_t pages_done = QueryInt(db, "SELECT pages_done FROM cowbackup_jobs WHERE id = " + id);
  const std::string summary = Query(db, "SELECT cowbackup_wait(" + id + ")", &error);
  EXPECT_EQ(error, "");
  // The live database and the copy, each as a fresh plain connection sees it.
  sqlite3* live = Open("file:" + path + "?vfs=unix&mode=ro");
  EXPECT_EQ(IntegrityCheck(live), "ok") << "the live database";
  sqlite3_close(live);
  if (error.empty()) {
    const std::string restored = Restored(dest, scenario.plain());
    EXPECT_TRUE(!restored.empty() && Dump(restored, &error) == expected)
        << "the copy is not the database at T0: " << summary;
    EXPECT_EQ(error, "");
    sqlite3* copy = Open("file:" + restored + "?vfs=unix&mode=ro");
    EXPECT_EQ(IntegrityCheck(copy), "ok");
    sqlite3_close(copy);
  }
  sqlite3_close(writer);
  sqlite3_close(db);
  // The copier has taken at most pages_done pages and the segment in its
  // hands; pages_done was read after the writer finished.
  if (pages_done + kSegmentPages > int64_t(first_pgno) - 1) return false;
  EXPECT_EQ(PreservedPages(summary), kHotRows + kColdRows) << summary;
  std::printf("%s: pages from %u rewritten at %lld pages copied: %s\n", path.c_str(), first_pgno,
              (long long)pages_done, summary.c_str());
  return true;
}

// Each variant and format, with and without the truncation: eight
// databases, one thread each, at once.
TEST(SqliteTorture, WalRestartOverUncopiedT0FramesIsPreserved) {
  LoadExtension();
  TempDir dir;
  std::vector<std::thread> runs;
  for (const Scenario& scenario : AllScenarios()) {
    if (scenario.yield) continue;
    for (bool truncate : {false, true}) {
      runs.emplace_back([&dir, scenario, truncate] {
        const std::string name = std::string(scenario.variant) + "-" + scenario.format +
                                 (truncate ? "-truncated" : "-overwritten");
        SCOPED_TRACE(name);
        const std::string path = dir / ("restart-" + name + ".db");
        bool proved = false;
        for (double rate = 0.5; !proved && rate > 0.01; rate /= 4) {
          proved = RestartOverT0Frames(path, scenario, truncate, rate);
        }
        EXPECT_TRUE(proved) << "the copier always reached T0's frames before the WAL restarted";
      });
    }
  }
  for (std::thread& t : runs) t.join();
}

}  // namespace
}  // namespace cowbackup::testing
