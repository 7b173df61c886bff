// Several processes writing one environment, each through the cowbackup
// LMDB library, backed up by one job shared through the coordination
// region (issue 12; docs/LMDB.md, "Several processes"). Real processes:
// every writer, backer-up and outsider here is a forked child (or the
// built `cowbackup` tool, or a program linked with Debian's liblmdb.so).
//
//   - The torture (3 writer processes, backups by the CLI and by a writer)
//     is lmdb_multiprocess_torture_test.cc; the kill sweep,
//     tests/faults/lmdb_multiprocess_crash_test.cc.
//   - NonParticipant*: a commit by a process that takes no part (plain
//     liblmdb; an Env with MDB_WRITEMAP) fails the backup by name, found
//     at the next participant's commit or at the end check.
//   - KilledBackerUp...: SIGKILL of the backing-up process mid-job: the
//     writers go on, the next backup succeeds and removes the dead volume.
//   - WriterInAnotherProcessWaitsAtTheGate / T0IsNotStarvedByWriterProcesses:
//     LMDB's process-shared writer mutex is not fair; the region's writer
//     gate lets a backup in ahead of other processes' next write txns.
//
// Nothing here can hang: every child arms alarm(), every wait is bounded,
// maps are sized far beyond what the tests write.
#include <fcntl.h>
#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "backup/db_image.h"
#include "coord/region.h"
#include "engine/sync_point.h"
#include "lmdb/env_impl.h"
#include "lmdb_mp_harness.h"
#include "test_util/processes.h"
#include "test_util/wait_for.h"

namespace cowbackup::lmdb::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using test::Pipe;
using test::Spawn;
using test::Wait;

constexpr unsigned kAlarmS = 300;           // every child ends by itself
constexpr uint64_t kMaxCommits = 200000;    // and every writer loop is bounded
// The workload, its sizes and its model: lmdb_mp_harness.h.

// True if `fd` has a byte to read (or its writers are gone).
bool Readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// One line for the parent, written whole.
void Report(int fd, const std::string& line) {
  const std::string l = line + "\n";
  (void)!::write(fd, l.data(), std::min(l.size(), size_t(PIPE_BUF)));
}

// The number after `prefix` in `line` ("txnid=", or "\"lmdb_txnid\": " in
// the CLI's JSON), or UINT64_MAX.
uint64_t Field(const std::string& line, const std::string& prefix) {
  const size_t at = line.find(prefix);
  if (at == std::string::npos || at + prefix.size() >= line.size()) return UINT64_MAX;
  const char* p = line.c_str() + at + prefix.size();
  return isdigit(static_cast<unsigned char>(*p)) ? strtoull(p, nullptr, 10) : UINT64_MAX;
}

// The main database, opened in a read txn: no commit, so no txnid, is
// spent on it (every txnid after the preload is one workload commit).
bool MainDbi(Env& env, Dbi* dbi) {
  Txn txn;
  return Txn::Begin(env, &txn, /*read_only=*/true).ok() && Dbi::Open(txn, nullptr, 0, dbi).ok() &&
         txn.commit().ok();
}

// The newest meta page's txnid, read from data.mdb itself: no Env (and so
// no region attachment) in the parent.
uint64_t DiskTxnid(const std::string& env_dir) {
  const std::string data = env_dir + "/data.mdb";
  const int fd = ::open(data.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << data;
  std::vector<uint8_t> page(kMetaEnd);
  MetaPage m0, newest;
  EXPECT_EQ(::pread(fd, page.data(), page.size(), 0), ssize_t(page.size()));
  DecodeMetaPage(page.data(), &m0);
  std::vector<uint8_t> both(size_t(m0.page_size) * 2);
  EXPECT_EQ(::pread(fd, both.data(), both.size(), 0), ssize_t(both.size()));
  ::close(fd);
  EXPECT_TRUE(NewestMeta(both.data(), m0.page_size, data, &newest).ok());
  return newest.txnid;
}

// Checks the archive (CheckEnvCopy: verify, restore, mdb_stat, mdb_dump,
// exactly the workload's state) and that its T0 txnid is `t0`, inside
// [lo, hi] (the txnids on disk before the backup was called and after it
// returned; one workload commit per txnid after the preload).
void VerifyCopy(const std::string& archive, uint64_t preload_txnid, uint64_t t0, uint64_t lo, uint64_t hi,
                const std::string& dir) {
  ASSERT_GE(lo, preload_txnid);
  const int64_t k = CheckEnvCopy(archive, CopyKind::kArchive, preload_txnid,
                                 test::mp::Window{int64_t(lo - preload_txnid), int64_t(hi - preload_txnid)}, dir);
  EXPECT_EQ(uint64_t(k) + preload_txnid, t0) << "the copy's newest meta page is T0's";
}

// A writer process: commits the workload until told to stop (a byte on
// `stop`) or kMaxCommits; reports "commits=N max_us=M" (its longest commit,
// Txn::Begin to commit) or "err ...".
struct Writer {
  pid_t pid = -1;
  std::unique_ptr<Pipe> stop, report;

  Writer() = default;
  Writer(Writer&& o) noexcept : pid(o.pid), stop(std::move(o.stop)), report(std::move(o.report)) { o.pid = -1; }

  static Writer Start(const std::string& env_dir, unsigned flags) {
    Writer w;
    w.stop = std::make_unique<Pipe>();
    w.report = std::make_unique<Pipe>();
    Pipe* stop = w.stop.get();
    Pipe* report = w.report.get();
    w.pid = Spawn([&env_dir, flags, stop, report] {
      alarm(kAlarmS);
      std::unique_ptr<Env> env;
      Status s = Env::Open(env_dir, EnvOpts(flags, kMapSize), &env);
      if (s.ok()) s = env->coordination();
      Dbi dbi;
      if (s.ok() && !MainDbi(*env, &dbi)) s = Status::IOError("main dbi");
      uint64_t commits = 0, max_us = 0, k = 0;
      for (; s.ok() && commits < kMaxCommits && !Readable(stop->read_fd()); ++commits) {
        const auto t = Clock::now();
        s = CommitNext(*env, dbi, kValueLen, kFiller, &k, kFillSpace);
        max_us = std::max<uint64_t>(
            max_us, std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
      }
      Report(report->write_fd(), s.ok() ? "commits=" + std::to_string(commits) + " max_us=" + std::to_string(max_us)
                                        : "err " + s.ToString());
      return s.ok() ? 0 : 1;
    });
    w.report->CloseWrite();
    return w;
  }
  // Stops it; its report line.
  std::string Finish() {
    if (pid < 0) return "";
    stop->Tell();
    const int status = Wait(pid);
    pid = -1;
    std::string line = report->ReadAll();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer: status " << status << ": " << line;
    return line;
  }
  ~Writer() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      Wait(pid);
    }
  }
};

// A writer process that backs up through the API (start_backup), keeps
// committing while its backup runs, and reports "ok txnid=T preserved=P
// lo=L hi=H" (L, H: the txnid before start_backup and right after it
// returned) or "err ...". `after_t0` hears a byte once T0 is taken;
// `resume` (if any) is waited for before the backup is waited for.
pid_t StartBackupWriter(const std::string& env_dir, unsigned flags, const std::string& dest, double rate_mb,
                        bool commit_meanwhile, Pipe* report, Pipe* after_t0 = nullptr) {
  const pid_t pid = Spawn([=] {
    alarm(kAlarmS);
    std::unique_ptr<Env> env;
    Status s = Env::Open(env_dir, EnvOpts(flags, kMapSize), &env);
    if (s.ok()) s = env->coordination();
    Dbi dbi;
    if (s.ok() && !MainDbi(*env, &dbi)) s = Status::IOError("main dbi");
    EnvInfo before, after;
    std::unique_ptr<BackupTask> task;
    if (s.ok()) s = env->info(&before);
    if (s.ok()) s = env->start_backup(dest, Throttled(rate_mb), &task);
    if (s.ok()) s = env->info(&after);
    if (after_t0 != nullptr) after_t0->Tell();
    uint64_t k = 0;
    for (uint64_t i = 0; s.ok() && commit_meanwhile && !task->done() && i < kMaxCommits; ++i) {
      s = CommitNext(*env, dbi, kValueLen, kFiller, &k, kFillSpace);
    }
    BackupResult r;
    if (s.ok()) s = task->wait(&r);
    Report(report->write_fd(),
           s.ok() ? "ok txnid=" + std::to_string(r.txnid) + " preserved=" +
                        std::to_string(r.summary.progress.pages_preserved) + " lo=" +
                        std::to_string(before.last_txnid) + " hi=" + std::to_string(after.last_txnid)
                  : "err " + s.ToString());
    return 0;
  });
  report->CloseWrite();
  if (after_t0 != nullptr) after_t0->CloseWrite();
  return pid;
}

class LmdbMultiProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = dir_.subdir("env");
    Preload(env_, 0, &preload_txnid_);
  }
  // `cowbackup backup --json` of the env; its output (stdout, then stderr).
  int Cli(const std::string& dest, double rate_mb, std::string* out) {
    return Shell("timeout 300 " + Sh(BuildDir() + "/cowbackup") + " backup --json --max-rate-mb " + std::to_string(rate_mb) +
                     " " + Sh(env_) + " " + Sh(dest) + " 2>&1",
                 out);
  }

  TempDir dir_;
  std::string env_;
  uint64_t preload_txnid_ = 0;
};

// A commit by a process that takes no part, made while a backup runs (in a
// writer process, through the API): the backup fails naming the cause,
// whether a participant commits after it (found at that commit) or not
// (found at the end check), and publishes nothing.
class NonParticipant : public LmdbMultiProcess, public ::testing::WithParamInterface<bool> {};

TEST_P(NonParticipant, PlainLiblmdbCommitFailsTheBackupByName) {
  const bool participant_after = GetParam();
  const std::string dest = dir_ / "b.cbk";
  Pipe report, t0;
  // ~25 MB at 6 MB/s: the job runs for seconds after T0.
  const pid_t backer = StartBackupWriter(env_, 0, dest, 6, /*commit_meanwhile=*/false, &report, &t0);
  ASSERT_TRUE(t0.HearWithin(120000)) << "the backup never took T0: " << report.ReadAll();
  std::string out;
  ASSERT_EQ(Shell(Sh(PLAIN_LMDB_WRITER) + " " + Sh(env_) + " 1 " + std::to_string(kMapSize) + " 2>&1", &out), 0)
      << out;
  if (participant_after) {
    Writer w = Writer::Start(env_, 0);
    ASSERT_TRUE(test::WaitFor([&] { return DiskTxnid(env_) >= preload_txnid_ + 3; }, Clock::now() + seconds(60)));
    w.Finish();
  }
  Wait(backer);
  const std::string line = report.ReadAll();
  EXPECT_EQ(line.rfind("err ", 0), 0u) << line;
  EXPECT_NE(line.find("another process committed to the environment during the backup without taking part"),
            std::string::npos)
      << line;
  // Where it was found: at the participant's commit (which carried a txnid
  // one past the foreign one), or at the end, under the writer lock.
  EXPECT_NE(line.find(participant_after ? "followed txnid" : "at the end"), std::string::npos) << line;
  struct stat st;
  EXPECT_NE(::stat(dest.c_str(), &st), 0) << "a failed backup published its archive";
}

// The same for a process that uses the library but cannot take part: its
// writes go through the memory map (MDB_WRITEMAP).
TEST_P(NonParticipant, WriteMapEnvCommitFailsTheBackupByName) {
  const bool participant_after = GetParam();
  const std::string dest = dir_ / "b.cbk";
  Pipe report, t0;
  const pid_t backer = StartBackupWriter(env_, 0, dest, 6, /*commit_meanwhile=*/false, &report, &t0);
  ASSERT_TRUE(t0.HearWithin(120000)) << "the backup never took T0: " << report.ReadAll();
  const pid_t wm = Spawn([&] {
    alarm(kAlarmS);
    std::unique_ptr<Env> env;
    if (!Env::Open(env_, EnvOpts(kWriteMap, kMapSize), &env).ok()) return 2;
    if (env->coordination().ok()) return 3;  // it must say it takes no part
    Dbi dbi;
    uint64_t k = 0;
    return MainDbi(*env, &dbi) && CommitNext(*env, dbi, kValueLen, kFiller, &k, kFillSpace).ok() ? 0 : 4;
  });
  const int wm_status = Wait(wm);
  ASSERT_TRUE(WIFEXITED(wm_status) && WEXITSTATUS(wm_status) == 0) << wm_status;
  if (participant_after) {
    Writer w = Writer::Start(env_, 0);
    ASSERT_TRUE(test::WaitFor([&] { return DiskTxnid(env_) >= preload_txnid_ + 3; }, Clock::now() + seconds(60)));
    w.Finish();
  }
  Wait(backer);
  const std::string line = report.ReadAll();
  EXPECT_NE(line.find("another process committed to the environment during the backup without taking part"),
            std::string::npos)
      << line;
}

INSTANTIATE_TEST_SUITE_P(Found, NonParticipant, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "AtTheNextParticipantCommit" : "AtTheEndCheck";
                         });

TEST_F(LmdbMultiProcess, KilledBackerUpLeavesWritersGoingAndTheNextBackupRemovesItsVolume) {
  std::vector<Writer> writers;
  for (int w = 0; w < 2; ++w) writers.push_back(Writer::Start(env_, 0));
  Pipe report, t0;
  const pid_t backer =
      StartBackupWriter(env_, 0, dir_ / "killed.cbk", 1, /*commit_meanwhile=*/true, &report, &t0);
  ASSERT_TRUE(t0.HearWithin(120000)) << "the backup never took T0: " << report.ReadAll();
  // The job, as the region says: its volume, which the kill leaves behind.
  std::string volume;
  {
    std::unique_ptr<coord::Region> region;
    coord::AttachOptions look;
    look.create = false;
    look.rebuild = false;
    struct stat data;
    ASSERT_EQ(::stat((env_ + "/data.mdb").c_str(), &data), 0);
    ASSERT_OK(coord::Region::Attach(coord::RegionPathForLmdb(env_, false), data, look, &region));
    coord::Job job;
    ASSERT_OK(region->ReadJob(&job));
    ASSERT_EQ(job.state, coord::JobState::kRunning);
    volume = job.volume_path;
  }
  struct stat st;
  ASSERT_EQ(::stat(volume.c_str(), &st), 0) << volume;
  std::this_thread::sleep_for(milliseconds(300));  // let it copy and preserve a little
  ASSERT_EQ(::kill(backer, SIGKILL), 0);
  const int status = Wait(backer);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the backup ended before it was killed: " << report.ReadAll();
  const uint64_t at_kill = DiskTxnid(env_);
  ASSERT_TRUE(test::WaitFor([&] { return DiskTxnid(env_) >= at_kill + 50; }, Clock::now() + seconds(120)))
      << "the writers did not go on after the backing-up process died";
  EXPECT_EQ(::stat(volume.c_str(), &st), 0) << "the dead job's volume is still there before the next backup";

  // The next backup, into another directory (so that its own sweep of
  // stale volumes beside its destination does not see the dead one):
  // the region hands it the dead job, whose volume it removes.
  const std::string other = dir_.subdir("other");
  const uint64_t lo = DiskTxnid(env_);
  std::string out;
  ASSERT_EQ(Cli(other + "/next.cbk", 50, &out), 0) << out;
  const uint64_t hi = DiskTxnid(env_);
  EXPECT_NE(::stat(volume.c_str(), &st), 0) << "the dead job's volume was not removed: " << volume;
  for (auto& w : writers) {
    const std::string line = w.Finish();
    ASSERT_EQ(line.rfind("commits=", 0), 0u) << line;
    printf("writer: %s\n", line.c_str());
    // Generous: the bound is on being held by a dead party (one poll,
    // 10 ms), but a commit's fsync on a loaded disk takes what it takes.
    EXPECT_LT(Field(line, "max_us="), 10'000'000u) << "a writer waited too long: " << line;
  }
  VerifyCopy(other + "/next.cbk", preload_txnid_, Field(out, "\"lmdb_txnid\": "), lo, hi, dir_.path());
}

// ---- The writer gate (docs/REGION.md, "Writer gate") ----

// A (a child) holds a write txn; B (a child) starts a backup, which
// announces itself and waits for the writer lock; C (a child) then begins
// a write txn: it waits at the gate, not on the lock, so B's T0 is A's
// commit and C commits after it. Sync points in each child, reported
// through pipes: no timing decides the outcome.
TEST_F(LmdbMultiProcess, WriterInAnotherProcessWaitsAtTheGate) {
  Pipe a_holding, a_commit, a_report;
  const pid_t a = Spawn([&] {
    alarm(kAlarmS);
    a_holding.CloseRead();
    a_commit.CloseWrite();
    std::unique_ptr<Env> env;
    Dbi dbi;
    Txn txn;
    if (!Env::Open(env_, EnvOpts(0, kMapSize), &env).ok() || !MainDbi(*env, &dbi)) return 2;
    if (!Txn::Begin(*env, &txn).ok() || !txn.put(dbi, "a", "1").ok()) return 3;
    const uint64_t id = txn.id();
    a_holding.Tell();
    a_commit.Hear();
    if (!txn.commit().ok()) return 4;
    Report(a_report.write_fd(), "txnid=" + std::to_string(id));
    return 0;
  });
  a_report.CloseWrite();
  a_holding.CloseWrite();
  a_commit.CloseRead();
  ASSERT_TRUE(a_holding.HearWithin(120000));

  Pipe b_announced, b_report;
  const pid_t b = Spawn([&] {
    alarm(kAlarmS);
    b_announced.CloseRead();
    std::unique_ptr<Env> env;
    if (!Env::Open(env_, EnvOpts(0, kMapSize), &env).ok()) return 2;
    sync::SetCallback([&](const char* name) {
      if (std::string(name) == "lmdb::TakeT0:announced") b_announced.Tell();
    });
    std::unique_ptr<BackupTask> task;
    Status s = env->start_backup(dir_ / "b.cbk", BackupOptions(), &task);
    sync::SetCallback(nullptr);
    BackupResult r;
    if (s.ok()) s = task->wait(&r);
    Report(b_report.write_fd(), s.ok() ? "txnid=" + std::to_string(r.txnid) : "err " + s.ToString());
    return 0;
  });
  b_report.CloseWrite();
  b_announced.CloseWrite();
  ASSERT_TRUE(b_announced.HearWithin(120000));

  Pipe c_gated, c_report;
  const pid_t c = Spawn([&] {
    alarm(kAlarmS);
    c_gated.CloseRead();
    std::unique_ptr<Env> env;
    Dbi dbi;
    if (!Env::Open(env_, EnvOpts(0, kMapSize), &env).ok() || !MainDbi(*env, &dbi)) return 2;
    std::atomic<bool> timed_out{false};
    sync::SetCallback([&](const char* name) {
      const std::string n = name;
      if (n == "Region::writer_gate:wait") c_gated.Tell();
      if (n == "Region::writer_gate:timeout") timed_out.store(true);
    });
    Txn txn;
    Status s = Txn::Begin(*env, &txn);
    sync::SetCallback(nullptr);
    const uint64_t id = s.ok() ? txn.id() : 0;
    if (s.ok()) s = txn.put(dbi, "c", "1");
    if (s.ok()) s = txn.commit();
    Report(c_report.write_fd(), s.ok() ? "txnid=" + std::to_string(id) + " timed_out=" +
                                             std::to_string(int(timed_out.load()))
                                       : "err " + s.ToString());
    return 0;
  });
  c_report.CloseWrite();
  c_gated.CloseWrite();
  // False on a timeout: C began without waiting at the gate, and now waits
  // for A's lock like everyone else (A commits next, so nothing hangs).
  const bool gated = c_gated.HearWithin(30000);
  a_commit.Tell();
  Wait(a);
  Wait(b);
  Wait(c);
  EXPECT_TRUE(gated) << "a write txn of another process did not wait at the gate for the starting backup";
  const std::string al = a_report.ReadAll(), bl = b_report.ReadAll(), cl = c_report.ReadAll();
  ASSERT_NE(Field(al, "txnid="), UINT64_MAX) << al;
  ASSERT_NE(Field(bl, "txnid="), UINT64_MAX) << bl;
  ASSERT_NE(Field(cl, "txnid="), UINT64_MAX) << cl;
  EXPECT_EQ(Field(bl, "txnid="), Field(al, "txnid=")) << "T0 is the commit that held the lock when the backup came";
  if (Field(cl, "timed_out=") == 0) {
    EXPECT_EQ(Field(cl, "txnid="), Field(al, "txnid=") + 1) << "the gated writer committed before T0";
  }
}

// Writer processes committing back to back: the commits that get the
// writer lock while a backup waits for it are one per writer process
// already past the gate, plus one per process for each Region::kWriterGateMaxWaitMs
// the backup waited (a gate wait is bounded). Without the gate: hundreds
// to thousands. The figures are printed.
TEST_F(LmdbMultiProcess, T0IsNotStarvedByWriterProcesses) {
  constexpr int kWriters = 3;
  std::vector<Writer> writers;
  for (int w = 0; w < kWriters; ++w) writers.push_back(Writer::Start(env_, kNoSync | kNoMetaSync));
  ASSERT_TRUE(test::WaitFor([&] { return DiskTxnid(env_) >= preload_txnid_ + 100; }, Clock::now() + seconds(120)))
      << "the writers never got going";
  std::unique_ptr<Env> env;  // after the forks: no child inherits it
  ASSERT_OK(Env::Open(env_, EnvOpts(kNoSync | kNoMetaSync, kMapSize), &env));
  std::atomic<uint64_t> at_announce{0};
  Clock::time_point announced;
  sync::SetCallback([&](const char* name) {
    if (std::string(name) == "lmdb::TakeT0:announced") {
      announced = Clock::now();
      at_announce.store(DiskTxnid(env_));
    }
  });
  double worst_ms = 0;
  uint64_t worst_ahead = 0;
  for (int i = 0; i < 8; ++i) {
    std::unique_ptr<BackupTask> task;
    ASSERT_OK(env->start_backup(dir_ / ("b" + std::to_string(i) + ".cbk"), Throttled(100), &task));
    const double wait_ms = std::chrono::duration<double, std::milli>(Clock::now() - announced).count();
    const uint64_t ahead = task->t0_txnid() - at_announce.load();
    task->cancel();
    (void)task->wait();
    const uint64_t bound = kWriters * (1 + uint64_t(wait_ms) / coord::Region::kWriterGateMaxWaitMs);
    EXPECT_LE(ahead, bound) << "backup " << i << " waited " << wait_ms << " ms; " << ahead
                            << " commits got the writer lock ahead of it";
    worst_ms = std::max(worst_ms, wait_ms);
    worst_ahead = std::max(worst_ahead, ahead);
  }
  sync::SetCallback(nullptr);
  env.reset();
  uint64_t commits = 0;
  for (auto& w : writers) commits += Field(w.Finish(), "commits=");
  printf("T0 with %d writer processes: worst %.2f ms from announce to T0 taken, at most %llu commits "
         "ahead; %llu commits\n",
         kWriters, worst_ms, (unsigned long long)worst_ahead, (unsigned long long)commits);
}

TEST(LmdbCoordination, AnEnvTakesPartUnlessItCannot) {
  TempDir dir;
  const std::string path = dir.subdir("env");
  {
    std::unique_ptr<Env> env;
    ASSERT_OK(Env::Open(path, EnvOpts(0, 1 << 20), &env));
    EXPECT_OK(env->coordination());
    struct stat st;
    EXPECT_EQ(::stat(coord::RegionPathForLmdb(path, false).c_str(), &st), 0) << "the region is made at open";
  }
  for (unsigned flags : {kReadOnly, kWriteMap, kNoLock}) {
    std::unique_ptr<Env> env;
    ASSERT_OK(Env::Open(path, EnvOpts(flags, 1 << 20), &env));
    const Status s = env->coordination();
    EXPECT_EQ(s.code(), Status::Code::kNotSupported) << flags << ": " << s.ToString();
  }
  // MDB_NOSUBDIR: the region is "<data>-cowbackup".
  const std::string flat = dir / "flat.mdb";
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(flat, EnvOpts(kNoSubdir, 1 << 20), &env));
  EXPECT_OK(env->coordination());
  struct stat st;
  EXPECT_EQ(::stat((flat + "-cowbackup").c_str(), &st), 0);
}

}  // namespace
}  // namespace cowbackup::lmdb::testing
