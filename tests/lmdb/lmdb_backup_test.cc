// Begin-time backups of live LMDB environments: restored copies are valid
// envs (Debian's mdb_stat and mdb_dump read them) holding exactly a
// committed state from inside the call/return window, whose newest meta
// page is the one committed at T0.
#include <fcntl.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "backup/format.h"
#include "backup/no_new_threads.h"
#include "lmdb/backup_internal.h"
#include "engine/sync_point.h"
#include "lmdb_test_util.h"

namespace cowbackup::lmdb::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Opens a restored env and checks what every restored env must satisfy:
// mdb_stat (Debian's) reads it, the newest meta page is T0's, a full cursor
// walk holds the invariant. *k gets the counter.
void CheckRestored(const std::string& dir, const BackupResult& r, size_t value_len, uint64_t* k) {
  std::string out;
  ASSERT_EQ(Shell("mdb_stat -efa '" + dir + "' 2>&1", &out), 0) << out;
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(dir, EnvOpts(kReadOnly, 0), &env));
  EnvInfo info;
  ASSERT_OK(env->info(&info));
  EXPECT_EQ(info.last_txnid, r.txnid) << "newest meta page of the restored env";
  EXPECT_EQ(info.last_pgno, r.last_pgno);
  EXPECT_LE(FileSize(dir + "/data.mdb"), r.t0_pages * r.page_size);
  CheckInvariant(*env, value_len, k);
}

// A writable env for the invariant workload.
std::unique_ptr<Env> OpenEnv(const std::string& dir, unsigned flags, uint64_t map_size) {
  std::unique_ptr<Env> env;
  Status s = Env::Open(dir, EnvOpts(flags, map_size, 4), &env);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return env;
}

Dbi MainDbi(Env& env) {
  Txn txn;
  Dbi dbi;
  EXPECT_OK(Txn::Begin(env, &txn));
  EXPECT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
  EXPECT_OK(txn.commit());
  return dbi;
}

TEST(LmdbBackup, IdleEnvRestoresToTheSameDump) {
  TempDir dir;
  const std::string src = dir.subdir("src");
  auto env = OpenEnv(src, 0, 64 << 20);
  {
    Txn txn;
    ASSERT_OK(Txn::Begin(*env, &txn));
    Dbi main_db, dups, ints;
    ASSERT_OK(Dbi::Open(txn, nullptr, 0, &main_db));
    ASSERT_OK(Dbi::Open(txn, "dups", kCreate | kDupSort, &dups));
    ASSERT_OK(Dbi::Open(txn, "ints", kCreate | kIntegerKey, &ints));
    for (int i = 0; i < 3000; ++i) {
      ASSERT_OK(txn.put(main_db, "key" + std::to_string(i), SeqValue(i, i % 97 == 0 ? 20000 : 300)));
      ASSERT_OK(txn.put(dups, "d" + std::to_string(i % 50), std::to_string(i)));
      const uint64_t ik = uint64_t(i) * 31;
      ASSERT_OK(txn.put(ints, std::string_view(reinterpret_cast<const char*>(&ik), 8), "v"));
    }
    ASSERT_OK(txn.commit());
    // Deletes leave free pages: the restored freelist must still be sound.
    ASSERT_OK(Txn::Begin(*env, &txn));
    for (int i = 0; i < 3000; i += 3) ASSERT_OK(txn.del(main_db, "key" + std::to_string(i)));
    ASSERT_OK(txn.commit());
  }
  BackupResult r;
  ASSERT_OK(env->backup(dir.path() + "/a.cowbak", BackupOptions{}, &r));
  EXPECT_EQ(r.summary.state, JobState::kDone);
  EXPECT_EQ(r.page_size, 4096u);
  EXPECT_EQ(r.summary.progress.pages_total, r.t0_pages);
  EXPECT_EQ(r.summary.progress.pages_preserved, 0u) << "nothing was written during the backup";

  // The archive header carries the T0 meta data.
  ArchiveReport report;
  ASSERT_OK(VerifyArchive(dir.path() + "/a.cowbak", &report));
  EXPECT_EQ(report.header.source_kind, format::SourceKind::kLmdb);
  EXPECT_EQ(report.header.page_count, r.t0_pages);
  EXPECT_EQ(report.header.meta("lmdb_txnid"), std::to_string(r.txnid));
  EXPECT_EQ(report.header.meta("lmdb_last_pgno"), std::to_string(r.last_pgno));
  EXPECT_EQ(report.header.meta("lmdb_mapsize"), std::to_string(64 << 20));
  EXPECT_EQ(report.header.meta("lmdb_page_size"), "4096");
  EXPECT_EQ(report.header.meta("source_path"), env->data_path());

  const std::string restored = dir.path() + "/restored";
  ASSERT_OK(RestoreTo(dir.path() + "/a.cowbak", restored));
  std::string want, got, err;
  ASSERT_EQ(Shell("mdb_dump -a '" + src + "'", &want), 0);
  ASSERT_EQ(Shell("mdb_dump -a '" + restored + "'", &got), 0);
  EXPECT_GT(want.size(), 100000u);
  EXPECT_TRUE(want == got) << "mdb_dump of the restored env differs from the source's";
  ASSERT_EQ(Shell("mdb_stat -efa '" + restored + "' 2>&1", &err), 0) << err;

  // The plain format is the data file itself, pages 0..last_pgno.
  ASSERT_OK(env->backup(dir.path() + "/plain.mdb", PlainFormat()));
  std::string a, b;
  ASSERT_EQ(Shell("cat '" + dir.path() + "/plain.mdb' | md5sum", &a), 0);
  ASSERT_EQ(Shell("head -c " + std::to_string(r.t0_pages * 4096) + " '" + env->data_path() + "' | md5sum", &b), 0);
  EXPECT_EQ(a, b);
}

TEST(LmdbBackup, WriteMapEnvIsRefused) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), kWriteMap, 1 << 20);
  Status s = env->backup(dir.path() + "/a.cowbak", BackupOptions{});
  EXPECT_TRUE(s.IsNotSupported()) << s.ToString();
  EXPECT_NE(s.ToString().find("MDB_WRITEMAP"), std::string::npos) << s.ToString();
  EXPECT_EQ(FileSize(dir.path() + "/a.cowbak"), 0u);
  std::unique_ptr<BackupTask> task;
  s = env->start_backup(dir.path() + "/b.cowbak", BackupOptions{}, &task);
  EXPECT_TRUE(s.IsNotSupported()) << s.ToString();
}

// The limits every front end shares (backup/options.h); a tiny positive
// rate used to run unthrottled, 2e6 MB/s was accepted here but not by SQL.
TEST(LmdbBackup, OptionsOutsideTheSharedLimitsAreRefused) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), 0, 1 << 20);
  for (double rate : {1e-300, 2e6}) {
    Status s = env->backup(dir.path() + "/a.cowbak", Throttled(rate));
    EXPECT_EQ(s.ToString(), "option max_rate_mb: must be 0 (no limit) or between 0.001 and 1000000 (MB/s)");
    std::unique_ptr<BackupTask> task;
    s = env->start_backup(dir.path() + "/b.cowbak", Throttled(rate), &task);
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  }
  EXPECT_EQ(FileSize(dir.path() + "/a.cowbak"), 0u);
  EXPECT_EQ(FileSize(dir.path() + "/b.cowbak"), 0u);
}

TEST(LmdbBackup, ReadOnlyEnvIsRefused) {
  TempDir dir;
  const std::string path = dir.subdir("env");
  OpenEnv(path, 0, 1 << 20).reset();
  auto env = OpenEnv(path, kReadOnly, 0);
  Status s = env->backup(dir.path() + "/a.cowbak", BackupOptions{});
  EXPECT_TRUE(s.IsNotSupported()) << s.ToString();
}

TEST(LmdbBackup, FromTheWritingThreadIsBusyNotADeadlock) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), 0, 1 << 20);
  Txn txn;
  ASSERT_OK(Txn::Begin(*env, &txn));
  Status s = env->backup(dir.path() + "/a.cowbak", BackupOptions{});
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  txn.abort();
  EXPECT_OK(env->backup(dir.path() + "/a.cowbak", BackupOptions{}));
}

// The end check takes the writer lock (every commit since T0 must have
// been seen), so waiting for a backup while holding a write txn of the env
// would wait for ourselves: wait() says so instead, and the backup ends
// once the txn is gone.
TEST(LmdbBackup, WaitFromTheWritingThreadIsBusyNotADeadlock) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), 0, 64 << 20);
  const Dbi dbi = MainDbi(*env);
  uint64_t k = 0;
  for (int i = 0; i < 50; ++i) ASSERT_OK(CommitNext(*env, dbi, 1500, 0, &k));
  std::unique_ptr<BackupTask> task;
  ASSERT_OK(env->start_backup(dir.path() + "/a.cowbak", Throttled(1), &task));
  Txn txn;
  ASSERT_OK(Txn::Begin(*env, &txn));
  Status s = task->wait();
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  txn.abort();
  EXPECT_OK(task->wait());
}

// Writers, readers and backups at once. Every backup restores to a valid
// env holding a committed prefix 1..K with K inside the call/return window.
//
// Sized for every configuration: the env grows with each commit (a new
// sequence entry, and pages a reader's snapshot pins; about 3 KiB a commit
// measured with MDB_NOSYNC, more when a reader is descheduled on a loaded
// machine), so the writers stop adding once the env uses half the map, and
// the remaining backups run without writers. A writer whose commit fails
// (MDB_MAP_FULL included) stops every thread at once, and every wait has a
// deadline, so a failure is reported, never a hang.
void ConcurrentBackups(unsigned flags) {
  constexpr uint64_t kMapSize = 256 << 20;
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), flags, kMapSize);
  const Dbi dbi = MainDbi(*env);
  const size_t kValueLen = 700;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> commits{0};
  std::mutex error_mu;
  std::string writer_error;
  std::vector<std::thread> threads;
  std::atomic<bool> half_full{false};
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&] {
      while (!stop.load() && !half_full.load()) {
        uint64_t k;
        Status s = CommitNext(*env, dbi, kValueLen, 8, &k, 4000);
        EnvInfo info;
        if (s.ok() && k % 64 == 0 && (s = env->info(&info)).ok() &&
            (info.last_pgno + 1) * info.page_size > kMapSize / 2) {
          half_full.store(true);
        }
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (writer_error.empty()) writer_error = s.ToString();
          stop.store(true);
          return;
        }
        commits.fetch_add(1);
      }
    });
  }
  auto writer_failed = [&] {
    std::lock_guard<std::mutex> lock(error_mu);
    return !writer_error.empty();
  };
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        Txn txn;
        ASSERT_OK(Txn::Begin(*env, &txn, true));
        std::string_view v;
        uint64_t counter = 0;
        Status s = txn.get(dbi, "counter", &v);
        if (s.ok()) counter = std::stoull(std::string(v));
        if (counter > 0) ASSERT_OK(txn.get(dbi, SeqKey(counter), &v));
        EXPECT_TRUE(IsNotFound(txn.get(dbi, SeqKey(counter + 1), &v)));
      }
    });
  }
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (commits.load() < 200 && !writer_failed() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(commits.load(), 200u) << "the writers never got going";

  const int backups = UnderSanitizer() ? 3 : 6;
  for (int i = 0; i < backups && !writer_failed() && !::testing::Test::HasFailure(); ++i) {
    BackupOptions opts;
    opts.segment_pages = 16 << (i % 3);
    opts.variant = i % 2 ? Variant::kOverlayAtEnd : Variant::kSnapshotFirst;
    // Slow enough for writers to hit uncopied pages; NoSync writers are
    // fast and grow the env quickly, so copy those faster.
    opts.max_rate_mb = (flags & kNoSync) ? 200 : 50;
    opts.yield_to_commits = i % 4 == 1;  // waits out the writers' commits
    const std::string archive = dir.path() + "/b" + std::to_string(i) + ".cowbak";
    uint64_t k_before = 0, k_after = 0;
    ASSERT_OK(ReadCounter(*env, dbi, &k_before));
    BackupResult r;
    if (i % 3 == 0) {
      ASSERT_OK(env->backup(archive, opts, &r));
    } else if (i % 3 == 1) {
      std::unique_ptr<BackupTask> task;
      ASSERT_OK(env->start_backup(archive, opts, &task));
      ASSERT_OK(task->wait(&r));
    } else {
      const int fd = ::open(archive.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ASSERT_GE(fd, 0);
      ASSERT_OK(env->backup_to_fd(fd, opts, &r));
      ::close(fd);
    }
    ASSERT_OK(ReadCounter(*env, dbi, &k_after));
    const std::string restored = dir.path() + "/r" + std::to_string(i);
    ASSERT_OK(RestoreTo(archive, restored));
    uint64_t k = 0;
    CheckRestored(restored, r, kValueLen, &k);
    EXPECT_LE(k_before, k);
    EXPECT_LE(k, k_after);
    printf("backup %d: K=%llu in [%llu, %llu], %llu pages, %llu preserved\n", i,
           (unsigned long long)k, (unsigned long long)k_before, (unsigned long long)k_after,
           (unsigned long long)r.t0_pages, (unsigned long long)r.summary.progress.pages_preserved);
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(writer_error, "") << "a writer's commit failed";
  uint64_t k;
  CheckInvariant(*env, kValueLen, &k);
  printf("%llu commits, data.mdb %llu bytes (map %llu MiB)%s\n", (unsigned long long)commits.load(),
         (unsigned long long)FileSize(env->data_path()), (unsigned long long)(kMapSize >> 20),
         half_full.load() ? "; the writers stopped at half the map" : "");
}

TEST(LmdbBackupConcurrent, WritersReadersAndBackups) { ConcurrentBackups(0); }
TEST(LmdbBackupConcurrent, NoSyncEnv) { ConcurrentBackups(kNoSync | kNoMetaSync); }

// The map grows (mdb_env_set_mapsize) while a backup runs; the restored env
// is the T0 state with the T0 map size.
TEST(LmdbBackupConcurrent, MapGrowsDuringBackup) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), kNoSync, 2 << 20);
  const Dbi dbi = MainDbi(*env);
  const size_t kValueLen = 1500;
  uint64_t k = 0;
  // Fill most of the initial map.
  for (EnvInfo info; info.last_pgno < 350;) {
    ASSERT_OK(CommitNext(*env, dbi, kValueLen, 0, &k));
    ASSERT_OK(env->info(&info));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> grown{0};
  // The writer starts once T0 is taken (the copier claimed its first
  // segment), so every growth happens during the backup: otherwise it could
  // fill the map and grow it before T0, and T0's map size would differ.
  std::atomic<bool> t0_taken{false};
  sync::SetCallback([&](const char* name) {
    if (std::string(name) == "CopyJob::copy:claimed") t0_taken.store(true);
  });
  std::thread writer([&] {
    while (!t0_taken.load() && !stop.load()) std::this_thread::yield();
    while (!stop.load()) {
      uint64_t kk;
      Status s = CommitNext(*env, dbi, kValueLen, 2, &kk, 100000);
      if (s.IsNoSpace()) {
        EnvInfo info;
        ASSERT_OK(env->info(&info));
        ASSERT_OK(env->set_map_size(info.map_size * 2));
        grown.fetch_add(1);
        continue;
      }
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  });
  uint64_t k_before = 0, k_after = 0;
  ASSERT_OK(ReadCounter(*env, dbi, &k_before));
  BackupResult r;
  ASSERT_OK(env->backup(dir.path() + "/a.cowbak", Throttled(2), &r));
  const int grown_during = grown.load();
  // The writer first: LMDB forbids any transaction of this process, a
  // reader's included, while another thread resizes the map (a read here
  // raced the writer's set_map_size and crashed about 1 run in 5 under
  // ctest -j). K after the writer stopped is still an upper bound.
  stop.store(true);
  writer.join();
  ASSERT_OK(ReadCounter(*env, dbi, &k_after));
  sync::SetCallback(nullptr);
  EXPECT_GT(grown_during, 0) << "the map never grew during the backup";
  EXPECT_EQ(r.map_size, uint64_t(2 << 20));
  ASSERT_OK(RestoreTo(dir.path() + "/a.cowbak", dir.path() + "/restored"));
  CheckRestored(dir.path() + "/restored", r, kValueLen, &k);
  EXPECT_LE(k_before, k);
  EXPECT_LE(k, k_after);
  printf("map grew %d times during the backup; restored K=%llu\n", grown_during, (unsigned long long)k);
}

// A Source whose reads fail when a writer (any thread but the copier)
// makes them: the reads that preserve pre-images before a write lands. The
// job fails; the writers' commits do not.
class FailingSource final : public Source {
 public:
  FailingSource(Source* base, std::thread::id copier) : base_(base), copier_(copier) {}
  Status read(uint64_t offset, uint8_t* buf, size_t len) override {
    if (std::this_thread::get_id() != copier_) {
      failures_.fetch_add(1);
      return Status::FromErrno("pread (injected)", name(), EIO);
    }
    return base_->read(offset, buf, len);
  }
  uint32_t page_size() const override { return base_->page_size(); }
  const std::string& name() const override { return base_->name(); }
  std::atomic<int> failures_{0};

 private:
  Source* const base_;
  const std::thread::id copier_;
};

TEST(LmdbBackupConcurrent, BackupFaultNeverFailsCommits) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), kNoSync, 64 << 20);
  const Dbi dbi = MainDbi(*env);
  uint64_t k = 0;
  while (k < 1000) ASSERT_OK(CommitNext(*env, dbi, 500, 4, &k, 2000));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> commits{0};
  std::thread writer([&] {
    while (!stop.load()) {
      uint64_t kk;
      ASSERT_OK(CommitNext(*env, dbi, 500, 4, &kk, 2000));
      commits.fetch_add(1);
    }
  });
  std::unique_ptr<FailingSource> failing;
  BackupHooks hooks;
  hooks.wrap_source = [&](Source* base) {
    failing.reset(new FailingSource(base, std::this_thread::get_id()));  // sync: the copier is us
    return failing.get();
  };
  BackupResult r;
  const std::string archive = dir.path() + "/a.cowbak";
  BackupOptions opts = Throttled(2);
  opts.segment_pages = 8;
  Status s = BackupWithHooks(*env, archive, -1, opts, hooks, &r);
  const uint64_t commits_at_failure = commits.load();
  // Writers go on after the failure (polled: a loaded machine may take a
  // while to schedule the writer; a fixed 100 ms sleep was not enough).
  for (int i = 0; i < 1000 && commits.load() <= commits_at_failure; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop.store(true);
  writer.join();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("injected"), std::string::npos) << s.ToString();
  EXPECT_GE(failing->failures_.load(), 1);
  EXPECT_EQ(r.summary.state, JobState::kFailed);
  EXPECT_EQ(FileSize(archive), 0u) << "a failed backup leaves nothing at the destination";
  EXPECT_GT(commits.load(), commits_at_failure) << "writers kept committing after the failure";
  CheckInvariant(*env, 500, &k);
  std::string out;
  EXPECT_EQ(Shell("mdb_stat -efa '" + env->path() + "' 2>&1", &out), 0) << out;
  // The env is still backed up fine afterwards.
  EXPECT_OK(env->backup(archive, BackupOptions{}));
}

TEST(LmdbBackup, CancelledBackgroundBackupLeavesNothing) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), kNoSync, 64 << 20);
  const Dbi dbi = MainDbi(*env);
  uint64_t k = 0;
  while (k < 2000) ASSERT_OK(CommitNext(*env, dbi, 2000, 0, &k));
  std::unique_ptr<BackupTask> task;
  const std::string archive = dir.path() + "/a.cowbak";
  ASSERT_OK(env->start_backup(archive, Throttled(1), &task));
  // Wait until the job has taken T0 and copied something (polled, not a
  // fixed sleep: the background thread may be slow to start under load).
  Progress p;
  for (int i = 0; i < 1000 && (p = task->progress()).pages_done == 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(p.pages_total, 0u);
  EXPECT_LT(p.pages_done, p.pages_total);
  task->cancel();
  Status s = task->wait();
  EXPECT_TRUE(s.IsCancelled()) << s.ToString();
  EXPECT_EQ(task->summary().state, JobState::kCancelled);
  EXPECT_EQ(FileSize(archive), 0u);
  // Closing an env with a running background backup cancels it.
  ASSERT_OK(env->start_backup(archive, Throttled(1), &task));
  env.reset();
  EXPECT_TRUE(task->done());
  EXPECT_TRUE(task->wait().IsCancelled());
}

// start_backup when no thread can be created: an error, not an exception,
// and nothing left behind: no temporary or volume, and the hook disarmed
// (the env backs up again).
TEST(LmdbBackup, StartWithoutAThreadFailsAndLeavesNothing) {
  TempDir dir;
  auto env = OpenEnv(dir.subdir("env"), kNoSync, 16 << 20);
  const Dbi dbi = MainDbi(*env);
  uint64_t k = 0;
  while (k < 200) ASSERT_OK(CommitNext(*env, dbi, 200, 0, &k));
  const std::string archive = dir.path() + "/a.cowbak";
  std::unique_ptr<BackupTask> task;
  Status s;
  {
    cowbackup::test::NoNewThreads no_threads;
    EXPECT_NO_THROW(s = env->start_backup(archive, BackupOptions{}, &task));
  }
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("start backup thread"), std::string::npos) << s.ToString();
  EXPECT_EQ(task, nullptr);
  std::string listing;
  ASSERT_EQ(Shell("ls -A '" + dir.path() + "'", &listing), 0);
  EXPECT_EQ(listing, "env\n");
  EXPECT_OK(env->backup(archive, BackupOptions{}));
}

}  // namespace
}  // namespace cowbackup::lmdb::testing
