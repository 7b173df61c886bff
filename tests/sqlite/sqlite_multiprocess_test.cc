// Writers in several processes (issue 12), the cases around the torture
// (sqlite_multiprocess_torture_test.cc), with real processes throughout
// (multiprocess_harness.h: python and C++ writer processes, the CLI):
//
// 1. The spilled-then-rolled-back gap (docs/SQLITE.md, "Writes that
//    bypass the shim"). A writer process with cache_size 8 spills a
//    transaction rewriting 200 rows with the marker "SPIL" into the
//    database file and rolls it back, over and over, committing nothing,
//    while the CLI backs up. A participant (its pages preserved before the
//    spill lands) gives copies equal, byte for byte, to the database as
//    made, the only committed state; the same process without the
//    extension is the documented gap: its spills reach the copy undetected.
// 2. Writers that do not take part (issue 12, item 5): a plain python3
//    sqlite3 process committing in rollback mode fails the backup by name
//    ("a write bypassed the cowbackup shim"); in WAL mode a
//    non-participant's commit or checkpoint is caught by the shared WAL
//    tracker, alone or beside participants whose writes take part.
//    Nothing is published, nothing left behind.
// 2b. A WAL-mode job shared: a checkpoint (TRUNCATE: main-file pages the
//    copy still needs, and a restart over T0's frames) run by another
//    attached process in the middle of the backup is preserved, and the
//    copy equals, byte for byte, a copy of T0 taken with nothing writing.
// 3. Region abuse with real processes: the region file (<db>-cowbackup)
//    replaced by garbage, another version, cut short, or given a running
//    job whose owner_pid is a live, unrelated process; with nobody
//    attached and under attached writers. Writers never block or fail
//    (they keep committing, no error, the write lock held briefly); a
//    backup recovers (a correct copy) or fails naming the region file.
#include <fcntl.h>
#include <sys/stat.h>

#include <memory>
#include <random>
#include <thread>

#include "coord/region_format.h"
#include "sqlite/multiprocess_harness.h"

namespace cowbackup::testing::mp {
namespace {

constexpr const char* kMarker = "SPILSPILSPILSPIL";
constexpr const char* kBypassed = "a write bypassed the cowbackup shim";
// What a participant's write in WAL mode failed a backup with before
// WAL-mode jobs were shared across processes: never again.
constexpr const char* kWalParticipant = "which takes writes from the backing-up process only";

std::string Rate(double mb) {
  char s[32];
  snprintf(s, sizeof s, "%g", mb);
  return s;
}

// A CLI backup of `db` to `dest`; --json; throttled to `max_rate_mb`.
Cli CliBackup(const std::string& db, const std::string& dest, const std::string& format, double max_rate_mb,
              const std::string& dir) {
  return RunCli({"backup", "--json", "--force", "--busy-timeout-ms", "60000", "--format", format,
                 "--max-rate-mb", Rate(max_rate_mb), "--segment-pages", "16", db, dest},
                dir);
}

int64_t MaxHeldNs(const Writer& w) {
  int64_t m = 0;
  for (const Commit& c : w.commits()) m = std::max(m, c.held_ns());
  return m;
}

// ---------------------------------------------------------------------------
// 1. The spilled-then-rolled-back gap

class SpillTest : public ::testing::Test {
 protected:
  static constexpr int kRows = 2000 / kScale;  // ~8 MB
  static constexpr double kRateMb = 16.0 / kScale;  // ~0.5 s a backup

  void SetUp() override {
    db_ = dir_ / "app.db";
    MakeWorkloadDb(db_, kRows);
    reference_ = ReadFile(db_);
    ASSERT_EQ(reference_.find(kMarker), std::string::npos);
  }

  enum class Outcome { kCorrect, kWrong, kDetected };
  // One CLI backup while the spiller runs, and what its copy is.
  Outcome BackupOnce(int i, int64_t* preserved, std::string* detail) {
    const bool plain = i % 2 == 1;
    const std::string dest = dir_ / ("copy-" + std::to_string(i) + (plain ? ".db" : ".cbk"));
    const Cli c = CliBackup(db_, dest, plain ? "plain" : "archive", kRateMb, dir_.path());
    if (!c.ok()) {
      *detail = c.err;
      EXPECT_NE(c.err.find(kBypassed), std::string::npos) << "a backup failed otherwise: " << c.err;
      EXPECT_FALSE(Exists(dest)) << "a failed backup published";
      return Outcome::kDetected;
    }
    *preserved += JsonInt(c.out, "preserved_pages");
    const std::string restored = RestoreWithCli(dest, plain, dir_.path());
    const std::string copy = ReadFile(restored);
    sqlite3* r = Open("file:" + restored + "?mode=ro", "unix");
    const std::string integrity = IntegrityCheck(r);
    sqlite3_close(r);
    *detail = "integrity_check: " + integrity + (copy.find(kMarker) != std::string::npos ? ", holds spilled pages" : "") +
              (copy == reference_ ? "" : ", differs from the database as committed");
    return copy == reference_ && integrity == "ok" ? Outcome::kCorrect : Outcome::kWrong;
  }

  TempDir dir_{"cowbackup-mp-spill"};
  std::string db_, reference_;
};

TEST_F(SpillTest, ParticipantsSpilledThenRolledBackPagesNeverReachTheCopy) {
  WriterSpec spec;
  spec.kind = WriterKind::kPython;
  spec.mode = "spill";
  Writer spiller(db_, 1, spec);
  ASSERT_TRUE(spiller.WaitCommits(3)) << "the spiller never rolled back a spill";
  int64_t preserved = 0;
  const int rounds = LongRun() ? 18 : 6;
  for (int i = 0; i < rounds; i++) {
    SCOPED_TRACE("backup " + std::to_string(i));
    std::string detail;
    EXPECT_EQ(BackupOnce(i, &preserved, &detail), Outcome::kCorrect) << detail;
  }
  const size_t spills = spiller.spills();
  spiller.Stop();
  EXPECT_EQ(spiller.errors(), std::vector<std::string>{});
  // The spiller is the only writer: every pre-image preserved is a page
  // its spills overwrote before the copier read it.
  EXPECT_GT(preserved, 0) << "no spill landed on an uncopied page";
  EXPECT_EQ(ReadFile(db_), reference_) << "a rollback left the database changed";
  EXPECT_EQ(Leftovers(dir_), std::vector<std::string>{});
  printf("%s spiller (participant): %zu spills rolled back, %d copies equal to the database as "
         "committed, %lld pre-images preserved\n",
         spiller.kind_name(), spills, rounds, (long long)preserved);
}

// Without the extension the spiller's writes are a non-participant's: only
// its commits would move the change counter, and it never commits, so the
// documented gap shows as copies holding its spilled pages.
TEST_F(SpillTest, NonParticipantsSpillReachesTheCopyUndetected) {
  WriterSpec spec;
  spec.kind = WriterKind::kPython;
  spec.mode = "spill";
  spec.participant = false;
  Writer spiller(db_, 1, spec);
  ASSERT_TRUE(spiller.WaitCommits(3)) << "the spiller never rolled back a spill";
  int64_t preserved = 0;
  int correct = 0, wrong = 0, detected = 0;
  for (int i = 0; i < 20 && wrong == 0; i++) {
    std::string detail;
    switch (BackupOnce(i, &preserved, &detail)) {
      case Outcome::kCorrect: correct++; break;
      case Outcome::kWrong: wrong++; printf("copy %d: %s\n", i, detail.c_str()); break;
      case Outcome::kDetected: detected++; printf("backup %d failed: %s\n", i, detail.c_str()); break;
    }
  }
  spiller.Stop();
  EXPECT_EQ(spiller.errors(), std::vector<std::string>{});
  EXPECT_EQ(preserved, 0) << "a non-participant's write was preserved";
  // docs/SQLITE.md: not detected. This is what the participant test closes.
  EXPECT_GT(wrong, 0) << "no wrong copy in " << correct << " backups (" << detected << " failed by name)";
  printf("%s spiller (not taking part): %d correct copies, %d wrong, %d backups failed by name\n",
         spiller.kind_name(), correct, wrong, detected);
}

// ---------------------------------------------------------------------------
// 2. Writers that do not take part

class NonParticipantTest : public ::testing::Test {
 protected:
  static constexpr int kRows = 2000 / kScale;
  static constexpr double kRateMb = 16.0 / kScale;

  // The backup failed naming `what`, published nothing, left nothing.
  void ExpectFailed(bool ok, const std::string& text, const std::string& dest, const std::string& what) {
    EXPECT_FALSE(ok) << text;
    EXPECT_NE(text.find(what), std::string::npos) << text;
    EXPECT_FALSE(Exists(dest));
    EXPECT_EQ(Leftovers(dir_), std::vector<std::string>{});
  }
  void StopAll(std::vector<std::unique_ptr<Writer>>* writers) {
    for (auto& w : *writers) {
      w->Stop();
      EXPECT_EQ(w->errors(), std::vector<std::string>{}) << "writer " << w->id() << ": a write failed";
    }
    std::string why;
    EXPECT_GE(CommittedPrefix(db_, &why), 0) << why;
  }

  TempDir dir_{"cowbackup-mp-foreign"};
  std::string db_ = dir_ / "app.db";
};

TEST_F(NonParticipantTest, RollbackModeCommitFailsTheBackupByName) {
  MakeWorkloadDb(db_, kRows);
  std::vector<std::unique_ptr<Writer>> writers;
  WriterSpec participant, foreign;
  participant.kind = WriterKind::kCpp;
  foreign.kind = WriterKind::kPython;
  foreign.participant = false;
  writers.push_back(std::make_unique<Writer>(db_, 1, participant));
  writers.push_back(std::make_unique<Writer>(db_, 2, foreign));
  for (auto& w : writers) ASSERT_TRUE(w->WaitCommits(5));
  // From the CLI...
  const std::string dest = dir_ / "copy.cbk";
  const Cli c = CliBackup(db_, dest, "archive", kRateMb, dir_.path());
  ExpectFailed(c.ok(), c.err, dest, kBypassed);
  // ... and from the participant writer's own process.
  const BackupRun b = writers[0]->Backup(dest, "plain", "snapshot_first", kRateMb, 16);
  ExpectFailed(b.ok, b.text, dest, kBypassed);
  StopAll(&writers);
}

// A WAL-mode job is shared too: with participants writing beside it (one
// python, one C++), a non-participant's commit or checkpoint still fails
// the backup by name, whichever process runs it. (Before WAL-mode jobs
// were shared, the participants' own writes failed it first, by another
// name.)
TEST_F(NonParticipantTest, WalModeNonParticipantFailsASharedBackupByName) {
  MakeWorkloadDb(db_, kRows, "wal");
  std::vector<std::unique_ptr<Writer>> writers;
  WriterSpec spec;
  spec.journal = "wal";
  spec.kind = WriterKind::kCpp;
  writers.push_back(std::make_unique<Writer>(db_, 1, spec));
  spec.kind = WriterKind::kPython;
  writers.push_back(std::make_unique<Writer>(db_, 2, spec));
  spec.participant = false;
  writers.push_back(std::make_unique<Writer>(db_, 3, spec));
  for (auto& w : writers) ASSERT_TRUE(w->WaitCommits(5));
  const std::string dest = dir_ / "copy.cbk";
  const Cli c = CliBackup(db_, dest, "archive", kRateMb, dir_.path());
  ExpectFailed(c.ok(), c.err, dest, "bypassed the cowbackup shim");
  EXPECT_EQ(c.err.find(kWalParticipant), std::string::npos) << c.err;
  const BackupRun b = writers[0]->Backup(dest, "archive", "overlay_at_end", kRateMb, 16);
  ExpectFailed(b.ok, b.text, dest, "bypassed the cowbackup shim");
  EXPECT_EQ(b.text.find(kWalParticipant), std::string::npos) << b.text;
  StopAll(&writers);
}

TEST_F(NonParticipantTest, WalModeNonParticipantIsCaughtByTheWalChecks) {
  MakeWorkloadDb(db_, kRows, "wal");
  WriterSpec foreign;
  foreign.kind = WriterKind::kPython;
  foreign.participant = false;
  foreign.journal = "wal";
  std::vector<std::unique_ptr<Writer>> writers;
  writers.push_back(std::make_unique<Writer>(db_, 1, foreign));
  ASSERT_TRUE(writers[0]->WaitCommits(5));
  const std::string dest = dir_ / "copy.db";
  const Cli c = CliBackup(db_, dest, "plain", kRateMb, dir_.path());
  // A commit, or the checkpoint SQLite runs after one (vfs/wal_tracker.h).
  ExpectFailed(c.ok(), c.err, dest, "bypassed the cowbackup shim");
  StopAll(&writers);
}

// ---------------------------------------------------------------------------
// 2b. A checkpoint by another attached process during a WAL-mode backup

// The region's armed word (docs/REGION.md), read from the file: non-zero
// once a job is armed in any process.
uint64_t ArmedWordOf(const std::string& db) {
  uint64_t w = 0;
  const int fd = ::open((db + "-cowbackup").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (::pread(fd, &w, sizeof w, coord::layout::kOffArmed) != ssize_t(sizeof w)) w = 0;
    ::close(fd);
  }
  return w;
}

constexpr int kCkptRows = 2000 / kScale;       // ~8 MB
constexpr double kCkptRateMb = 2.0 / kScale;  // ~4 s a backup

// A CLI backup of `db` during which `w` (an idle-mode writer) commits,
// checkpoints with TRUNCATE (main-file pages the copy still needs, a
// restart over T0's frames) and commits again: it must succeed, having
// preserved pages, and equal a copy taken with nothing writing.
void ExpectCheckpointDuringBackupPreserved(Writer& w, const std::string& db, const TempDir& dir) {
  const std::string ref = dir / "t0.db";
  const Cli r = CliBackup(db, ref, "plain", 0, dir.path());
  ASSERT_TRUE(r.ok()) << r.err;
  const std::string dest = dir / "copy.db";
  Cli c = StartCli({"backup", "--json", "--force", "--busy-timeout-ms", "60000", "--format", "plain",
                    "--max-rate-mb", Rate(kCkptRateMb), "--segment-pages", "16", db, dest},
                   dir.path());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (ArmedWordOf(db) == 0 && !CliExited(&c) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling another process's state
  }
  ASSERT_NE(ArmedWordOf(db), 0u) << "the CLI's job was never armed";
  ASSERT_TRUE(w.CommitNow(20));
  const std::string k = w.CheckpointNow("TRUNCATE");
  EXPECT_EQ(k.substr(0, 2), "0 ") << "the checkpoint did not complete: " << k;
  ASSERT_TRUE(w.CommitNow(20));
  EXPECT_FALSE(CliExited(&c)) << "the backup ended before the checkpoint: nothing was tested (machine too slow?)";
  FinishCli(&c);
  ASSERT_TRUE(c.ok()) << c.err;
  EXPECT_GT(JsonInt(c.out, "preserved_pages"), 0) << c.out;
  EXPECT_TRUE(ReadFile(dest) == ReadFile(ref)) << "the copy is not T0";
  std::string why;
  EXPECT_EQ(CommittedPrefix(dest, &why), CommittedPrefix(ref, &why)) << why;
}

TEST(WalSharedJob, AnotherProcessesCheckpointDuringTheBackupIsPreserved) {
  TempDir dir("cowbackup-mp-walckpt");
  const std::string db = dir / "app.db";
  MakeWorkloadDb(db, kCkptRows, "wal");
  WriterSpec spec;
  spec.kind = WriterKind::kCpp;
  spec.mode = "idle";
  spec.journal = "wal";
  Writer w(db, 1, spec);
  // T0's state has frames in the WAL (the checkpoint copies them into the
  // file, and the restart writes over them).
  ASSERT_TRUE(w.CommitNow(40));
  ExpectCheckpointDuringBackupPreserved(w, db, dir);
  EXPECT_EQ(w.errors(), std::vector<std::string>{});
  w.Stop();
  EXPECT_EQ(Leftovers(dir), std::vector<std::string>{});
}

// A process whose own WAL-mode backup failed (a non-participant wrote
// during it) still takes part in the next backup, another process's:
// its checkpoint preserves main-file pages through its own descriptor.
TEST(WalSharedJob, AProcessWhoseOwnBackupFailedStillTakesPartInTheNext) {
  TempDir dir("cowbackup-mp-walckpt2");
  const std::string db = dir / "app.db";
  MakeWorkloadDb(db, kCkptRows, "wal");
  WriterSpec spec;
  spec.kind = WriterKind::kCpp;
  spec.mode = "idle";
  spec.journal = "wal";
  Writer w(db, 1, spec);
  ASSERT_TRUE(w.CommitNow(40));
  {
    WriterSpec foreign;
    foreign.kind = WriterKind::kPython;
    foreign.participant = false;
    foreign.journal = "wal";
    Writer f(db, 2, foreign);
    ASSERT_TRUE(f.WaitCommits(3));
    const BackupRun b = w.Backup(dir / "failed.db", "plain", "snapshot_first", kCkptRateMb * 4, 16);
    EXPECT_FALSE(b.ok) << b.text;
    EXPECT_NE(b.text.find("bypassed the cowbackup shim"), std::string::npos) << b.text;
    f.Stop();
  }
  // T0's image from the database file (its WAL checkpointed away): the
  // checkpoint during the backup preserves main-file pages, read through
  // this process's own descriptor of the database.
  ASSERT_EQ(w.CheckpointNow("TRUNCATE").substr(0, 2), "0 ");
  ASSERT_TRUE(w.CommitNow(2));
  ExpectCheckpointDuringBackupPreserved(w, db, dir);
  EXPECT_EQ(w.errors(), std::vector<std::string>{});
  w.Stop();
  EXPECT_EQ(Leftovers(dir), std::vector<std::string>{});
}

// Rollback mode: a writer process whose own backup found a foreign commit
// (its next page-1 write saw the counter jump: a sticky tracking error)
// then takes part in the CLI's backup. Its preservation reads must not
// carry its lost job's error into that one (ShimSource::read): the kill
// sweep once failed the backup after a kill with such a stale "file change
// counter went from 65 to 67".
TEST(SharedJob, AProcessWhoseOwnBackupFoundAForeignCommitStillTakesPartInTheNext) {
  constexpr int kRows = 2000 / kScale;
  constexpr double kRateMb = 16.0 / kScale;
  TempDir dir("cowbackup-mp-stale");
  const std::string db = dir / "app.db";
  MakeWorkloadDb(db, kRows);
  WriterSpec spec;
  spec.kind = WriterKind::kCpp;
  Writer w(db, 1, spec);
  ASSERT_TRUE(w.WaitCommits(5));
  {
    WriterSpec foreign;
    foreign.kind = WriterKind::kPython;
    foreign.participant = false;
    Writer f(db, 2, foreign);
    ASSERT_TRUE(f.WaitCommits(3));
    const BackupRun b = w.Backup(dir / "failed.cbk", "archive", "snapshot_first", kRateMb, 16);
    EXPECT_FALSE(b.ok) << b.text;
    // Found by w's own commit during its backup, not only at the end.
    EXPECT_NE(b.text.find("file change counter went from"), std::string::npos) << b.text;
    f.Stop();
  }
  const std::string dest = dir / "next.cbk";
  const Cli c = CliBackup(db, dest, "archive", kRateMb, dir.path());
  ASSERT_TRUE(c.ok()) << c.err;
  EXPECT_TRUE(w.WaitCommits(w.commit_count() + 2));
  EXPECT_GT(JsonInt(c.out, "preserved_pages"), 0) << "w preserved nothing: the test proves nothing";
  const Window win = CommitWindow(AllCommits({&w}), c.t_call, c.t_return);
  std::string why;
  const int64_t k = CommittedPrefix(RestoreWithCli(dest, false, dir.path()), &why);
  EXPECT_EQ(why, "");
  EXPECT_GE(k, win.lo);
  EXPECT_LE(k, win.hi);
  w.Stop();
  EXPECT_EQ(w.errors(), std::vector<std::string>{});
}

// ---------------------------------------------------------------------------
// 3. Region abuse

enum class Abuse { kGarbage, kOtherVersion, kTruncated, kLiveUnrelatedOwner };

const char* AbuseName(Abuse a) {
  switch (a) {
    case Abuse::kGarbage: return "garbage";
    case Abuse::kOtherVersion: return "other_version";
    case Abuse::kTruncated: return "truncated";
    case Abuse::kLiveUnrelatedOwner: return "live_unrelated_owner";
  }
  return "?";
}

class RegionAbuseTest : public ::testing::TestWithParam<Abuse> {
 protected:
  static constexpr int kRows = 1500 / kScale;
  static constexpr double kRateMb = 12.0 / kScale;

  void SetUp() override { MakeWorkloadDb(db_, kRows); }

  // Does `abuse` to the region file. With writers attached the writes go
  // under the region's meta lock, as a participant's would, except garbage,
  // which is garbage. `attached`: truncation keeps the fixed part (cutting
  // it under attached processes faults their mappings, like cutting
  // SQLite's -shm: docs/REGION.md, "Limits").
  void Abuse(enum Abuse abuse, bool attached) {
    const int fd = ::open(region_.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << region_;
    struct flock meta = {};
    meta.l_type = F_WRLCK;
    meta.l_whence = SEEK_SET;
    meta.l_start = coord::layout::kLockMeta;
    meta.l_len = 1;
    const bool lock_meta = attached && abuse != Abuse::kGarbage;
    if (lock_meta) {
      ASSERT_EQ(::fcntl(fd, F_OFD_SETLKW, &meta), 0);
    }
    std::vector<uint8_t> fixed(coord::layout::kFixedSize);
    ASSERT_EQ(::pread(fd, fixed.data(), fixed.size(), 0), ssize_t(fixed.size()));
    switch (abuse) {
      case Abuse::kGarbage: {
        std::mt19937_64 rng(42);
        for (uint8_t& b : fixed) b = uint8_t(rng());
        ASSERT_EQ(::pwrite(fd, fixed.data(), fixed.size(), 0), ssize_t(fixed.size()));
        break;
      }
      case Abuse::kOtherVersion: {
        const uint8_t v2[4] = {2, 0, 0, 0};
        ASSERT_EQ(::pwrite(fd, v2, 4, coord::layout::kOffVersion), 4);
        break;
      }
      case Abuse::kTruncated:
        ASSERT_EQ(::ftruncate(fd, attached ? off_t(coord::layout::kFixedSize) : 100), 0);
        break;
      case Abuse::kLiveUnrelatedOwner: {
        // A running job owned by this test process, which is alive and
        // holds no lock of the region: dead by rule R4, whatever its pid.
        coord::Job job;
        job.state = coord::JobState::kRunning;
        job.owner_slot = 7;
        job.job_id = 123456789;
        job.owner_pid = getpid();
        job.claimed_unix_us = 1;
        job.t0 = "sqlite1 rollback 4096";
        job.volume_path = dir_ / "nobody.cowsnap";
        ASSERT_TRUE(coord::CheckJob(job, region_).ok());
        coord::EncodeJob(job, fixed.data());
        const size_t from = coord::layout::kOffJob, to = coord::layout::kOffSlots;
        ASSERT_EQ(::pwrite(fd, fixed.data() + from, to - from, off_t(from)), ssize_t(to - from));
        const uint64_t armed = coord::ArmedValue(job.job_id);
        ASSERT_EQ(::pwrite(fd, &armed, sizeof armed, coord::layout::kOffArmed), ssize_t(sizeof armed));
        break;
      }
    }
    if (lock_meta) {
      meta.l_type = F_UNLCK;
      ::fcntl(fd, F_OFD_SETLK, &meta);
    }
    ::close(fd);
  }

  // A CLI backup with writers committing: a correct copy (K in its
  // window), or a failure naming the region file. Returns whether it
  // succeeded.
  bool CheckBackup(const std::vector<std::unique_ptr<Writer>>& writers, const std::string& name) {
    const std::string dest = dir_ / (name + ".cbk");
    const Cli c = CliBackup(db_, dest, "archive", kRateMb, dir_.path());
    if (!c.ok()) {
      EXPECT_NE(c.err.find(region_), std::string::npos) << "a failure that does not name the region: " << c.err;
      EXPECT_FALSE(Exists(dest));
      printf("%s: the backup failed: %s", name.c_str(), c.err.c_str());
      return false;
    }
    for (auto& w : writers) EXPECT_TRUE(w->WaitCommits(w->commit_count() + 1));
    std::vector<const Writer*> ws;
    for (auto& w : writers) ws.push_back(w.get());
    const Window win = CommitWindow(AllCommits(ws), c.t_call, c.t_return);
    const std::string restored = RestoreWithCli(dest, false, dir_.path());
    std::string why;
    const int64_t k = CommittedPrefix(restored, &why);
    EXPECT_EQ(why, "");
    EXPECT_GE(k, win.lo);
    EXPECT_LE(k, win.hi);
    printf("%s: the backup recovered: K %lld, %lld pre-images preserved\n", name.c_str(), (long long)k,
           (long long)JsonInt(c.out, "preserved_pages"));
    return true;
  }

  std::vector<std::unique_ptr<Writer>> StartWriters() {
    std::vector<std::unique_ptr<Writer>> writers;
    WriterSpec spec;
    spec.kind = WriterKind::kPython;
    writers.push_back(std::make_unique<Writer>(db_, 1, spec));
    spec.kind = WriterKind::kCpp;
    writers.push_back(std::make_unique<Writer>(db_, 2, spec));
    for (auto& w : writers) EXPECT_TRUE(w->WaitCommits(5));
    return writers;
  }

  // The writers went on: more commits each, no error, the write lock never
  // held long.
  void ExpectWritersWentOn(std::vector<std::unique_ptr<Writer>>* writers) {
    for (auto& w : *writers) {
      EXPECT_TRUE(w->WaitCommits(w->commit_count() + 20, std::chrono::seconds(30)))
          << "writer " << w->id() << " stopped committing";
    }
    int64_t held_max = 0;
    for (auto& w : *writers) {
      w->Stop();
      EXPECT_EQ(w->errors(), std::vector<std::string>{}) << "writer " << w->id() << ": a write failed";
      EXPECT_LT(MaxHeldNs(*w), kHoldBoundNs) << "writer " << w->id();
      held_max = std::max(held_max, MaxHeldNs(*w));
    }
    printf("%s: the writers' longest write-lock hold %.1f ms\n", AbuseName(GetParam()), double(held_max) / 1e6);
    std::string why;
    EXPECT_GE(CommittedPrefix(db_, &why), 0) << why;
  }

  TempDir dir_{"cowbackup-mp-region"};
  std::string db_ = dir_ / "app.db";
  std::string region_ = db_ + "-cowbackup";
};

// Nobody attached: `status` (which never rebuilds) refuses the file by
// name; the next opener rebuilds it (R1), and backups work.
TEST_P(RegionAbuseTest, NobodyAttached) {
  {  // the region, with a job done and its page-state area
    const Cli first = CliBackup(db_, dir_ / "first.cbk", "archive", 0, dir_.path());
    ASSERT_TRUE(first.ok()) << first.err;
  }
  Abuse(GetParam(), /*attached=*/false);
  const Cli status = RunCli({"status", db_}, dir_.path());
  if (GetParam() == Abuse::kLiveUnrelatedOwner) {
    EXPECT_TRUE(status.ok()) << status.err;
    EXPECT_NE(status.out.find("dead"), std::string::npos) << status.out;
  } else {
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.err.find(region_), std::string::npos) << status.err;
  }
  std::vector<std::unique_ptr<Writer>> writers = StartWriters();
  EXPECT_TRUE(CheckBackup(writers, "after"));
  ExpectWritersWentOn(&writers);
}

// Writers attached while the file is abused: they keep committing; a
// backup recovers or fails naming the region file, from the CLI and from
// a writer's process.
TEST_P(RegionAbuseTest, WritersAttached) {
  std::vector<std::unique_ptr<Writer>> writers = StartWriters();
  ASSERT_TRUE(CheckBackup(writers, "before"));
  Abuse(GetParam(), /*attached=*/true);
  for (auto& w : writers) {
    EXPECT_TRUE(w->WaitCommits(w->commit_count() + 20, std::chrono::seconds(30)))
        << "writer " << w->id() << " stopped committing after the abuse";
  }
  CheckBackup(writers, "after");
  const std::string dest = dir_ / "by-writer.db";
  const BackupRun b = writers[1]->Backup(dest, "plain", "snapshot_first", kRateMb, 16);
  if (b.ok) {
    std::string why;
    EXPECT_GE(CommittedPrefix(dest, &why), 0) << why;
  } else {
    EXPECT_NE(b.text.find(region_), std::string::npos) << "a failure that does not name the region: " << b.text;
  }
  printf("%s, attached: a backup in a writer's process %s\n", AbuseName(GetParam()),
         b.ok ? "recovered" : ("failed: " + b.text).c_str());
  ExpectWritersWentOn(&writers);
}

// Cutting the region below its fixed part under attached processes: not
// survived. Their mappings fault (SIGBUS) at the next load of the armed
// word, i.e. at their next write, as processes mapping SQLite's -shm do when
// it is cut (docs/REGION.md, "Limits and trade-offs"). A cut to 100 bytes
// keeps the armed word (its page is still backed) and the writers go on,
// until detaching touches the slot table: SIGBUS at close. Disabled: no
// small fix (the mapping is the idle path's one load); kept as the
// reproducer. Run with --gtest_also_run_disabled_tests.
TEST_F(RegionAbuseTest, DISABLED_WritersSurviveTheRegionCutToNothing) {
  std::vector<std::unique_ptr<Writer>> writers = StartWriters();
  ASSERT_EQ(::truncate(region_.c_str(), 0), 0);
  ExpectWritersWentOn(&writers);
}

INSTANTIATE_TEST_SUITE_P(Abuses, RegionAbuseTest,
                         ::testing::Values(Abuse::kGarbage, Abuse::kOtherVersion, Abuse::kTruncated,
                                           Abuse::kLiveUnrelatedOwner),
                         [](const ::testing::TestParamInfo<Abuse>& info) { return AbuseName(info.param); });

}  // namespace
}  // namespace cowbackup::testing::mp
