// Faults at the SQLite level, under live writer connections, in rollback
// and in WAL mode (each test runs in both; the WAL runs end in "Wal").
// In WAL mode the writers also checkpoint (faults/sqlite_workload.h:
// automatic and explicit PASSIVE, FULL, RESTART, TRUNCATE), so backfills
// into the main file and WAL restarts over T0's frames preserve pages into
// the snapshot volume during the backup, and a fault there must fail the
// backup, never the checkpoint; every checkpoint returns SQLITE_OK.
//
// FullDiskFailsTheBackupNeverACommit: a real file system: the snapshot volume
// (snapshot_dir) or the destination sits on a tiny tmpfs, so the backup runs
// into a real ENOSPC while writer connections keep committing through the
// shim. The tmpfs size is swept upward until the backup fits, so the disk
// fills at every stage: creating the volume or temporary, preserving the
// k-th page, writing the k-th archive block, the trailer, fsync.
// For every size:
//   - the backup fails with Status::kNoSpace naming the full file
//     ("No space left on device"), or succeeds with a consistent copy;
//   - every application COMMIT succeeds, none waits longer than a bound;
//   - the database passes integrity_check and holds every committed
//     transaction (an exact committed prefix 1..K, K = commits made);
//   - nothing is at the destination, the tmpfs is empty again (temporary
//     archive and snapshot volume removed).
// Needs mount(2) (root, as on the CI machine); skipped, saying why, if not.
//
// EioFailsTheBackupNeverACommit: EIO at each place the backup does I/O,
// injected beneath the library and beneath SQLite, swept over the n-th call:
//   - the snapshot volume's pwritev (a pre-image saved on an application
//     write's path) and preadv (the copier taking it back): this binary is
//     linked with --wrap of pwritev, preadv, pwrite, pread and fsync,
//     so the library's calls pass through the __wrap_ functions below (the
//     shared libsqlite3's own calls do not: application I/O is never
//     faulted);
//   - the destination temporary's pwrite and fsync (the same wrappers);
//   - the copier's reads of the database: SQLite's unix VFS takes its
//     pread/pread64/read from xSetSystemCall, SQLite's own fault hook; the
//     read-only descriptor of the database file is the shim's reader (every
//     application connection opens it read-write);
//   - WAL mode only: the copier's reads of T0's frames, through the job's
//     own read-only descriptor of <db>-wal (the library's pread: also
//     --wrap'ed).
// The same promises as for a full disk, with Status::kIOError and
// "Input/output error".
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <thread>

#include "backup/output.h"
#include "backup/restore.h"
#include "engine/snapshot_volume.h"
#include "cowbackup/sqlite.hpp"
#include "faults/page_workload.h"
#include "faults/sqlite_workload.h"
#include "sqlite/sqlite_test_util.h"
#include "test_util/sync_points.h"

namespace cowbackup::faults {

// Where the next EIO goes, and after how many calls there (see the header).
enum class Site { kNone, kVolumeWrite, kVolumeRead, kDestWrite, kDestSync, kSourceRead, kWalRead };
namespace {
std::atomic<Site> g_site{Site::kNone};
std::atomic<int> g_countdown{0};
std::atomic<int> g_fired{0};
std::string g_db_path;  // the database, for kSourceRead and kWalRead; set before arming

std::string FdPath(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, path, sizeof path - 1);
  return n > 0 ? std::string(path, size_t(n)) : std::string();
}

// True (errno = EIO) if this call at `site` is the one armed.
bool Fail(Site site, int fd) {
  if (g_site.load() != site) return false;
  const std::string path = FdPath(fd);
  bool ours = false;
  switch (site) {
    case Site::kVolumeWrite:
    case Site::kVolumeRead: ours = path.find(cowbackup::kVolumeSuffix) != std::string::npos; break;
    case Site::kDestWrite:
    case Site::kDestSync: ours = path.find(cowbackup::kTempInfix) != std::string::npos; break;
    case Site::kSourceRead:
      ours = path == g_db_path && (::fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY;
      break;
    case Site::kWalRead:
      ours = path == g_db_path + "-wal" && (::fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY;
      break;
    case Site::kNone: break;
  }
  if (!ours || g_countdown.fetch_sub(1) != 1) return false;
  g_fired++;
  errno = EIO;
  return true;
}

// SQLite's unix VFS, for kSourceRead (see the header).
using PreadFn = ssize_t (*)(int, void*, size_t, off_t);
using ReadFn = ssize_t (*)(int, void*, size_t);
PreadFn g_unix_pread = nullptr, g_unix_pread64 = nullptr;
ReadFn g_unix_read = nullptr;
ssize_t FaultyPread(int fd, void* b, size_t n, off_t o) {
  return Fail(Site::kSourceRead, fd) ? -1 : g_unix_pread(fd, b, n, o);
}
ssize_t FaultyPread64(int fd, void* b, size_t n, off_t o) {
  return Fail(Site::kSourceRead, fd) ? -1 : g_unix_pread64(fd, b, n, o);
}
ssize_t FaultyRead(int fd, void* b, size_t n) {
  return Fail(Site::kSourceRead, fd) ? -1 : g_unix_read(fd, b, n);
}
void HookUnixReads() {
  sqlite3_vfs* unix_vfs = sqlite3_vfs_find("unix");
  if (g_unix_read != nullptr || unix_vfs == nullptr) return;
  g_unix_pread = reinterpret_cast<PreadFn>(unix_vfs->xGetSystemCall(unix_vfs, "pread"));
  g_unix_pread64 = reinterpret_cast<PreadFn>(unix_vfs->xGetSystemCall(unix_vfs, "pread64"));
  g_unix_read = reinterpret_cast<ReadFn>(unix_vfs->xGetSystemCall(unix_vfs, "read"));
  unix_vfs->xSetSystemCall(unix_vfs, "pread", reinterpret_cast<sqlite3_syscall_ptr>(FaultyPread));
  unix_vfs->xSetSystemCall(unix_vfs, "pread64", reinterpret_cast<sqlite3_syscall_ptr>(FaultyPread64));
  unix_vfs->xSetSystemCall(unix_vfs, "read", reinterpret_cast<sqlite3_syscall_ptr>(FaultyRead));
}
}  // namespace
}  // namespace cowbackup::faults

using cowbackup::faults::Fail;
using cowbackup::faults::Site;
extern "C" {
ssize_t __real_pwritev(int, const struct iovec*, int, off_t);
ssize_t __real_preadv(int, const struct iovec*, int, off_t);
ssize_t __real_pwrite(int, const void*, size_t, off_t);
ssize_t __real_pread(int, void*, size_t, off_t);
int __real_fsync(int);
ssize_t __wrap_pwritev(int fd, const struct iovec* iov, int n, off_t off) {
  return Fail(Site::kVolumeWrite, fd) ? -1 : __real_pwritev(fd, iov, n, off);
}
ssize_t __wrap_preadv(int fd, const struct iovec* iov, int n, off_t off) {
  return Fail(Site::kVolumeRead, fd) ? -1 : __real_preadv(fd, iov, n, off);
}
ssize_t __wrap_pwrite(int fd, const void* buf, size_t len, off_t off) {
  return Fail(Site::kDestWrite, fd) ? -1 : __real_pwrite(fd, buf, len, off);
}
ssize_t __wrap_pread(int fd, void* buf, size_t len, off_t off) {
  return Fail(Site::kWalRead, fd) ? -1 : __real_pread(fd, buf, len, off);
}
int __wrap_fsync(int fd) { return Fail(Site::kDestSync, fd) ? -1 : __real_fsync(fd); }
}  // extern "C"

namespace cowbackup::faults {
namespace {

using testing::Exec;

// Test-name suffix: rollback-mode names stay as they were.
std::string JournalName(bool wal) { return wal ? "Wal" : ""; }

// Over a sweep in WAL mode: the writers checkpointed while backups ran, and
// that preserved pages (the sweep reached the WAL paths it is about).
struct WalActivity {
  int64_t checkpoints = 0;
  uint64_t preserved = 0;
  void Add(const Writers& writers, const Summary& summary) {
    checkpoints += writers.checkpoints();
    preserved += summary.progress.pages_preserved;
  }
  void Expect(bool wal) const {
    if (!wal) return;
    EXPECT_GT(checkpoints, 0) << "no checkpoint ran during the backups";
    EXPECT_GT(preserved, 0u) << "no checkpoint or WAL restart preserved a page";
  }
};

// A tmpfs of `kib` KiB at `dir`, unmounted when it goes.
class TinyTmpfs {
 public:
  TinyTmpfs(const std::string& dir, int kib) : dir_(dir) {
    ::mkdir(dir.c_str(), 0700);
    const std::string opts = "size=" + std::to_string(kib) + "k,mode=0700";
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    if (!mounted_) error_ = strerror(errno);
  }
  ~TinyTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  const std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// Param: (true = the snapshot volume fills the disk, false = the archive;
// WAL mode).
class SqliteFaultTest : public SqliteWorkloadTest,
                        public ::testing::WithParamInterface<std::tuple<bool, bool>> {
 protected:
  void SetUp() override {
    wal_ = std::get<1>(GetParam());
    SqliteWorkloadTest::SetUp();
  }
};

TEST_P(SqliteFaultTest, FullDiskFailsTheBackupNeverACommit) {
  const bool volume_side = std::get<0>(GetParam());
  const std::string small = dir_ + "/small";
  int faults = 0, sizes = 0, at_reserve = 0;
  WalActivity activity;
  // 4 KiB steps at first (every stage of a volume or an archive header),
  // then coarser: the archive of this ~1.2 MiB database needs ~1.3 MiB.
  for (int kib = 4; kib <= 4096; kib += kib < 64 ? 4 : kib < 512 ? 32 * kSanitizerSlowdown : 128) {
    TinyTmpfs fs(small, kib);
    if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << fs.error();
    const std::string dest = volume_side ? dir_ + "/app.cowbak" : small + "/app.cowbak";
    BackupOptions options;
    options.snapshot_dir = volume_side ? small : dir_;
    // Slow enough that writers preserve many pages meanwhile (~150 ms, or
    // ~40 ms when only the archive side is tested).
    options.max_rate_mb = volume_side ? 8 : 30;
    options.segment_pages = 16;
    options.variant = kib % 8 ? Variant::kSnapshotFirst : Variant::kOverlayAtEnd;

    Writers writers(db_, 4, wal_);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    Summary summary;
    const Status s = BackupThroughShim(dest, options, &summary);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    writers.Stop();
    sizes++;
    activity.Add(writers, summary);

    EXPECT_EQ(writers.error(), "") << "tmpfs " << kib << " KiB";
    EXPECT_LT(writers.longest_ms(), 10000) << "a commit waited on the failing backup";
    ExpectEveryCommitKept(writers);
    if (!s.ok()) {
      faults++;
      at_reserve += s.ToString().find("reserve") != std::string::npos;
      EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
      EXPECT_NE(s.ToString().find("No space left on device"), std::string::npos) << s.ToString();
      EXPECT_NE(s.ToString().find(small), std::string::npos) << "names the full file: " << s.ToString();
      EXPECT_FALSE(PathExists(dest)) << "a failed backup left its destination";
      EXPECT_EQ(summary.state, JobState::kFailed);
    } else {
      ArchiveReport report;
      const Status v = VerifyArchive(dest, &report);
      EXPECT_TRUE(v.ok()) << v.ToString();
      ::unlink(dest.c_str());
    }
    // The tmpfs is empty again: temporary archive and volume removed.
    EXPECT_EQ(ListDir(small), std::vector<std::string>{}) << "tmpfs " << kib << " KiB";
    if (HasFailure()) {
      fprintf(stderr, "tmpfs %d KiB, %s side: %s\n", kib, volume_side ? "volume" : "archive",
              s.ToString().c_str());
      return;
    }
    if (s.ok()) break;
  }
  EXPECT_GT(faults, 0) << "the disk never filled: the sweep tested nothing";
  activity.Expect(wal_);
  fprintf(stderr,
          "%s mode, %s side: %d tmpfs sizes, %d real ENOSPC failures (%d reserving the archive), "
          "every commit kept; %lld checkpoints, %llu pages preserved\n",
          wal_ ? "WAL" : "rollback", volume_side ? "snapshot volume" : "archive", sizes, faults,
          at_reserve, static_cast<long long>(activity.checkpoints),
          static_cast<unsigned long long>(activity.preserved));
}

// A destination that cannot hold the copy fails before a page is copied
// (AtomicFile::Reserve), not near the end; both formats, and a restore.
TEST_F(SqliteWorkloadTest, TooSmallADestinationFailsBeforeCopying) {
  const std::string small = dir_ + "/small";
  TinyTmpfs fs(small, 256);  // the database is ~1.2 MB
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << fs.error();
  for (const auto format : {BackupOptions::Format::kArchive, BackupOptions::Format::kPlain}) {
    const std::string dest = small + "/app.copy";
    Writers writers(db_, 2);
    BackupOptions options;
    options.format = format;
    options.snapshot_dir = dir_;
    Summary summary;
    const Status s = BackupThroughShim(dest, options, &summary);
    writers.Stop();
    EXPECT_EQ(writers.error(), "");
    ExpectEveryCommitKept(writers);
    EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
    EXPECT_NE(s.ToString().find("reserve"), std::string::npos) << s.ToString();
    EXPECT_NE(s.ToString().find(small), std::string::npos) << s.ToString();
    EXPECT_EQ(summary.progress.pages_done, 0u) << "copied before finding out";
    EXPECT_EQ(ListDir(small), std::vector<std::string>{});
  }
  // Restoring into it fails the same way, leaving nothing.
  const std::string archive = dir_ + "/app.cowbak";
  Summary summary;
  ASSERT_TRUE(BackupThroughShim(archive, BackupOptions{}, &summary).ok());
  const Status r = RestoreArchive(archive, small + "/restored.db", false);
  EXPECT_EQ(r.code(), Status::Code::kNoSpace) << r.ToString();
  EXPECT_NE(r.ToString().find("reserve"), std::string::npos) << r.ToString();
  EXPECT_EQ(ListDir(small), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Side, SqliteFaultTest,
                         ::testing::Combine(::testing::Values(true, false), ::testing::Values(false, true)),
                         [](const ::testing::TestParamInfo<std::tuple<bool, bool>>& info) {
                           return std::string(std::get<0>(info.param) ? "SnapshotVolume" : "Archive") +
                                  JournalName(std::get<1>(info.param));
                         });

// The sweeps above found it (their overlay_at_end runs in WAL mode): a WAL
// restart over a T0 frame the copier had not read yet. kOverlayAtEnd reads
// live pages without holding writers off and overlays the ones a writer
// preserved; the restart's page was preserved, but reading the overwritten
// frame failed the backup ("WAL frame 1 no longer holds page ...") instead
// of leaving it to the overlay, as a page cut off by a truncate is.
// Deterministic: the copier is parked at its first read while a TRUNCATE
// checkpoint and one commit restart the WAL over T0's frames.
class SqliteWalWorkloadTest : public SqliteWorkloadTest {
 protected:
  void SetUp() override {
    wal_ = true;
    SqliteWorkloadTest::SetUp();
  }
};

TEST_F(SqliteWalWorkloadTest, WalRestartOverAFrameNotYetReadIsOverlaidAtTheEnd) {
  test::SyncPointGuard guard;
  sqlite3* writer = testing::Open(db_, sqlite::kVfsName);
  ASSERT_EQ(Exec(writer, "PRAGMA wal_autocheckpoint = 0"), "");
  testing::CommitCounters counters;
  std::string e;
  ASSERT_TRUE(testing::CommitOne(writer, 0, kFillerRows, &counters, &e)) << e;  // T0's WAL: frames 1..n
  sqlite3* conn = testing::Open(db_, sqlite::kVfsName);
  const std::string dest = dir_ + "/app.cowbak";
  BackupOptions options;
  options.variant = Variant::kOverlayAtEnd;
  options.segment_pages = 4096;  // the whole database in the first read
  uint64_t job_id = 0;
  {
    test::ParkAt park("CopyJob::read_segment:source");
    ASSERT_TRUE(sqlite::StartBackup(conn, "main", dest, options, &job_id).ok());
    park.WaitUntilParked();
    // Backfill T0's frames, empty the WAL, and write frame 1 again.
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(writer, "main", SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(writer);
    ASSERT_TRUE(testing::CommitOne(writer, 0, kFillerRows, &counters, &e)) << e;
    park.Release();
    Summary summary;
    const Status s = sqlite::WaitBackup(job_id, &summary);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_GT(summary.progress.pages_preserved, 0u);
  }
  sqlite3_close(conn);
  sqlite3_close(writer);
  const std::string restored = dir_ + "/restored.db";
  ASSERT_TRUE(testing::RestoreTo(dest, restored).ok());
  testing::CheckPrefix(restored, 1, 1);
}

// Param: (the site, WAL mode).
class SqliteEioTest : public SqliteWorkloadTest,
                      public ::testing::WithParamInterface<std::tuple<Site, bool>> {
 protected:
  void SetUp() override {
    wal_ = std::get<1>(GetParam());
    SqliteWorkloadTest::SetUp();
  }
};

TEST_P(SqliteEioTest, EioFailsTheBackupNeverACommit) {
  const Site site = std::get<0>(GetParam());
  HookUnixReads();
  g_db_path = db_;
  const std::string dest = dir_ + "/app.cowbak";
  int faults = 0, runs = 0;
  WalActivity activity;
  bool clean = false;  // a run in which the armed call never came
  for (int nth = 1; !clean && nth < 100000; nth += 1 + nth / 2, runs++) {
    BackupOptions options;
    options.max_rate_mb = 8;  // ~150 ms: writers preserve many pages meanwhile
    options.segment_pages = 16;
    options.variant = runs % 2 ? Variant::kOverlayAtEnd : Variant::kSnapshotFirst;
    Writers writers(db_, 4, wal_);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const int64_t before = committed_ + writers.commits();
    g_fired = 0;
    g_countdown = nth;
    g_site = site;
    Summary summary;
    uint64_t job_id = 0;  // stays 0 if the backup failed before it began
    const Status s = BackupThroughShim(dest, options, &summary, &job_id);
    g_site = Site::kNone;
    const int64_t after = committed_ + writers.commits();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    writers.Stop();
    activity.Add(writers, summary);

    EXPECT_EQ(writers.error(), "") << "call " << nth;
    EXPECT_LT(writers.longest_ms(), 10000) << "a commit waited on the failing backup";
    ExpectEveryCommitKept(writers);
    if (g_fired > 0) {
      faults++;
      EXPECT_FALSE(s.ok()) << "an EIO at call " << nth << " went unnoticed";
      EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
      EXPECT_NE(s.ToString().find("Input/output error"), std::string::npos) << s.ToString();
      const std::string file = site == Site::kSourceRead ? db_
                               : site == Site::kWalRead ? db_ + "-wal"
                               : site == Site::kVolumeWrite || site == Site::kVolumeRead ? kVolumeSuffix
                                                                                         : dest;
      EXPECT_NE(s.ToString().find(file), std::string::npos) << "names the file: " << s.ToString();
      EXPECT_FALSE(PathExists(dest)) << "a failed backup left its destination";
      if (job_id != 0) {
        EXPECT_EQ(summary.state, JobState::kFailed);
      }
    } else {
      clean = true;
      EXPECT_TRUE(s.ok()) << s.ToString();
      const std::string restored = dir_ + "/restored.db";
      EXPECT_TRUE(testing::RestoreTo(dest, restored).ok());
      testing::CheckPrefix(restored, before, after);
      ::unlink(restored.c_str());
      ::unlink(dest.c_str());
    }
    // Nothing left behind: no temporary, no snapshot volume.
    for (const std::string& name : ListDir(dir_)) {
      EXPECT_TRUE(name.find(kTempInfix) == std::string::npos && name.find(kVolumeSuffix) == std::string::npos)
          << name << " left after call " << nth;
    }
    if (HasFailure()) {
      fprintf(stderr, "EIO at call %d: %s\n", nth, s.ToString().c_str());
      return;
    }
  }
  EXPECT_TRUE(clean) << "the sweep never got past the last call";
  EXPECT_GT(faults, 0) << "no call was ever failed: the sweep tested nothing";
  activity.Expect(wal_);
  fprintf(stderr, "%s mode: %d backups, %d failed by an EIO, every commit kept; %lld checkpoints, %llu pages preserved\n",
          wal_ ? "WAL" : "rollback", runs, faults, static_cast<long long>(activity.checkpoints),
          static_cast<unsigned long long>(activity.preserved));
}

// WAL mode: an EIO on the end check's own read of the database header
// (armed at the sync point just before it) fails the backup as an I/O
// error naming the file, never as "corruption". The sweep above reaches that
// read only for some call counts (a clean-clone CI run once got kCorruption
// for it). In rollback mode the end check reads through a read-write
// descriptor, which this site does not fail.
class SqliteWalEndCheckTest : public SqliteWorkloadTest {
 protected:
  void SetUp() override {
    wal_ = true;
    SqliteWorkloadTest::SetUp();
  }
};

TEST_F(SqliteWalEndCheckTest, EioAtTheEndCheckIsAnIoError) {
  HookUnixReads();
  g_db_path = db_;
  g_fired = 0;
  const char* point = "sqlite::EndCheckWal:before_compare";
  sync::SetCallback([point](const char* name) {
    if (strcmp(name, point) != 0) return;
    g_countdown = 1;
    g_site = Site::kSourceRead;
  });
  Summary summary;
  const Status s = BackupThroughShim(dir_ + "/end.cowbak", BackupOptions{}, &summary);
  sync::SetCallback(nullptr);
  g_site = Site::kNone;
  ASSERT_EQ(g_fired.load(), 1) << "the end check read nothing after " << point;
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  EXPECT_NE(s.ToString().find("Input/output error"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find(db_), std::string::npos) << s.ToString();
  EXPECT_FALSE(PathExists(dir_ + "/end.cowbak"));
}

std::string SiteName(const ::testing::TestParamInfo<std::tuple<Site, bool>>& info) {
  static const char* const kNames[] = {"None",     "VolumeWrite", "VolumeRead", "DestWrite",
                                       "DestSync", "SourceRead",  "WalRead"};
  return kNames[int(std::get<0>(info.param))] + JournalName(std::get<1>(info.param));
}
// Every site in both modes; the -wal file is read only in WAL mode.
INSTANTIATE_TEST_SUITE_P(At, SqliteEioTest,
                         ::testing::Combine(::testing::Values(Site::kVolumeWrite, Site::kVolumeRead,
                                                              Site::kDestWrite, Site::kDestSync,
                                                              Site::kSourceRead),
                                            ::testing::Values(false, true)),
                         SiteName);
INSTANTIATE_TEST_SUITE_P(AtWal, SqliteEioTest,
                         ::testing::Combine(::testing::Values(Site::kWalRead), ::testing::Values(true)),
                         SiteName);

}  // namespace
}  // namespace cowbackup::faults
