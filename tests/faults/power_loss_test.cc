// Power loss, modelled: what could a crash that drops every unsynced write
// leave at a destination path? (ALICE's question, "All File Systems Are Not
// Created Equal", OSDI 2014, asked of our own syscalls.)
//
// This binary is linked with --wrap for the calls the library makes to
// create, write, sync, rename and remove files (open, mkdir, write, pwrite,
// pwritev, ftruncate, fsync, rename, renameat2, link, unlink, unlinkat); the shared
// libsqlite3's calls are not wrapped. A model follows them:
//   - an inode is dirty from a write or truncate until an fsync of it;
//   - a directory's entries are pending from a create, rename, link or
//     unlink in it until an fsync of the directory;
//   - for each watched destination path, the set of inodes (or "absent")
//     a power loss could leave there: everything bound to the path since
//     its directory was last synced.
// Violations, checked at the moment of each call:
//   - a file or directory created directly at the destination path;
//   - a file renamed or linked to the destination with unsynced data, or a
//     directory whose entries or files are not durable yet;
//   - a write or truncate of an inode a power loss could leave at the
//     destination, or of a file in such a directory, or a change of that
//     directory's entries (the replaced copy, freed while the rename that
//     replaced it is not durable);
//   - success reported while a power loss could still leave something other
//     than the new copy at the destination, or leave it dirty.
// Scenarios: SQLite backups through the shim (archive and plain, both
// variants, new and overwriting, with a writer committing), restores of a
// SQLite and an LMDB archive (new and replacing), each also with the final
// directory fsync failing (EIO).
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "image_kind.h"
#include "backup/archive_writer.h"
#include "backup/output.h"
#include "backup/restore.h"
#include "cowbackup/sqlite.hpp"
#include "engine/posix_file.h"
#include "faults/sqlite_workload.h"

namespace cowbackup::faults {
namespace {

constexpr ino_t kAbsent = 0;

std::string FdPath(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, path, sizeof path - 1);
  return n > 0 ? std::string(path, size_t(n)) : std::string();
}

ino_t InoOf(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : kAbsent;
}

class Model {
 public:
  // Starts watching `dest` as it is now (absent, or a complete old copy).
  void Watch(const std::string& dest) {
    std::lock_guard<std::mutex> lock(mu_);
    dirty_.clear();
    pending_.clear();
    violations_.clear();
    dest_ = dest;
    current_ = InoOf(dest);
    possible_ = {current_};
    fail_dir_fsync_ = false;
  }
  // The next fsync of the destination's directory fails with EIO.
  void FailNextDirFsync() { fail_dir_fsync_ = true; }
  bool TakeDirFsyncFailure(int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    return FdPath(fd) == ParentDir(dest_) && fail_dir_fsync_.exchange(false);
  }

  void Created(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.insert(ParentDir(path));
    if (path == dest_) Violation("created directly at the destination: " + path);
  }
  void Modified(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return;
    const std::string path = FdPath(fd);
    const ino_t dir = InoOf(ParentDir(path));
    std::lock_guard<std::mutex> lock(mu_);
    dirty_.insert(st.st_ino);
    if (possible_.count(st.st_ino) != 0 || possible_.count(dir) != 0) {
      Violation("wrote or truncated " + path + ", which a power loss could leave at the destination");
    }
  }
  void Synced(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (!S_ISDIR(st.st_mode)) {
      dirty_.erase(st.st_ino);
      return;
    }
    const std::string dir = FdPath(fd);
    pending_.erase(dir);
    if (dir == ParentDir(dest_)) possible_ = {current_};
  }
  // Before a rename or link of `from` to `to`: is what arrives durable?
  void Publishing(const std::string& from, const std::string& to) {
    if (to != dest_) return;
    struct stat st;
    if (::lstat(from.c_str(), &st) != 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (dirty_.count(st.st_ino) != 0) Violation("published with unsynced data: " + from);
    if (S_ISDIR(st.st_mode)) {
      if (pending_.count(from) != 0) Violation("published a directory whose entries are not durable: " + from);
      for (const std::string& name : ListDir(from)) {
        if (dirty_.count(InoOf(from + "/" + name)) != 0) {
          Violation("published a directory holding unsynced data: " + from + "/" + name);
        }
      }
    }
  }
  // After a rename (exchange: the two names swapped), link or unlink.
  void Bound(const std::string& path, ino_t ino) {
    const ino_t dir = InoOf(ParentDir(path));
    std::lock_guard<std::mutex> lock(mu_);
    pending_.insert(ParentDir(path));
    if (possible_.count(dir) != 0) {
      Violation("changed the entries of a directory a power loss could leave at the destination: " + path);
    }
    if (path != dest_) return;
    current_ = ino;
    possible_.insert(ino);
  }
  // The operation returned; on success only the new copy may be left.
  void Finished(bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) return;
    if (current_ == kAbsent) Violation("success reported with nothing at the destination");
    if (possible_.size() != 1) Violation("success reported before the rename was durable");
    if (dirty_.count(current_) != 0) Violation("success reported with unsynced data at the destination");
  }
  std::vector<std::string> violations() {
    std::lock_guard<std::mutex> lock(mu_);
    return violations_;
  }

 private:
  void Violation(const std::string& what) { violations_.push_back(what); }

  std::mutex mu_;
  std::string dest_;
  ino_t current_ = kAbsent;
  std::set<ino_t> possible_;        // what a power loss could leave at dest_
  std::set<ino_t> dirty_;           // inodes with writes since their last fsync
  std::set<std::string> pending_;   // directories with entries changed since their last fsync
  std::vector<std::string> violations_;
  std::atomic<bool> fail_dir_fsync_{false};
};

Model g_model;
std::atomic<bool> g_on{false};  // the model follows calls only inside a scenario

}  // namespace
}  // namespace cowbackup::faults

using cowbackup::faults::g_model;
using cowbackup::faults::g_on;
using cowbackup::faults::InoOf;

extern "C" {
int __real_open(const char*, int, ...);
int __real_mkdir(const char*, mode_t);
ssize_t __real_write(int, const void*, size_t);
ssize_t __real_pwrite(int, const void*, size_t, off_t);
ssize_t __real_pwritev(int, const struct iovec*, int, off_t);
int __real_ftruncate(int, off_t);
int __real_fsync(int);
int __real_rename(const char*, const char*);
int __real_renameat2(int, const char*, int, const char*, unsigned);
int __real_link(const char*, const char*);
int __real_unlink(const char*);
int __real_unlinkat(int, const char*, int);

int __wrap_open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & O_CREAT) {
    va_list ap;
    va_start(ap, flags);
    mode = mode_t(va_arg(ap, int));
    va_end(ap);
  }
  const bool existed = InoOf(path) != cowbackup::faults::kAbsent;
  const int fd = __real_open(path, flags, mode);
  if (fd >= 0 && g_on && (flags & O_CREAT) && !existed) g_model.Created(path);
  return fd;
}
int __wrap_mkdir(const char* path, mode_t mode) {
  const int rc = __real_mkdir(path, mode);
  if (rc == 0 && g_on) g_model.Created(path);
  return rc;
}
ssize_t __wrap_write(int fd, const void* buf, size_t len) {
  if (g_on) g_model.Modified(fd);
  return __real_write(fd, buf, len);
}
ssize_t __wrap_pwrite(int fd, const void* buf, size_t len, off_t off) {
  if (g_on) g_model.Modified(fd);
  return __real_pwrite(fd, buf, len, off);
}
ssize_t __wrap_pwritev(int fd, const struct iovec* iov, int n, off_t off) {
  if (g_on) g_model.Modified(fd);
  return __real_pwritev(fd, iov, n, off);
}
int __wrap_ftruncate(int fd, off_t size) {
  if (g_on) g_model.Modified(fd);
  return __real_ftruncate(fd, size);
}
int __wrap_fsync(int fd) {
  struct stat st;
  if (g_on && ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && g_model.TakeDirFsyncFailure(fd)) {
    errno = EIO;
    return -1;
  }
  const int rc = __real_fsync(fd);
  if (rc == 0 && g_on) g_model.Synced(fd);
  return rc;
}
int __wrap_rename(const char* from, const char* to) {
  if (g_on) g_model.Publishing(from, to);
  const ino_t ino = InoOf(from);
  const int rc = __real_rename(from, to);
  if (rc == 0 && g_on) {
    g_model.Bound(from, cowbackup::faults::kAbsent);
    g_model.Bound(to, ino);
  }
  return rc;
}
int __wrap_renameat2(int from_dir, const char* from, int to_dir, const char* to, unsigned flags) {
  if (g_on) g_model.Publishing(from, to);
  const ino_t ino_from = InoOf(from), ino_to = InoOf(to);
  const int rc = __real_renameat2(from_dir, from, to_dir, to, flags);
  if (rc == 0 && g_on) {
    g_model.Bound(from, flags & RENAME_EXCHANGE ? ino_to : cowbackup::faults::kAbsent);
    g_model.Bound(to, ino_from);
  }
  return rc;
}
int __wrap_link(const char* from, const char* to) {
  if (g_on) g_model.Publishing(from, to);
  const ino_t ino = InoOf(from);
  const int rc = __real_link(from, to);
  if (rc == 0 && g_on) g_model.Bound(to, ino);
  return rc;
}
int __wrap_unlink(const char* path) {
  const int rc = __real_unlink(path);
  if (rc == 0 && g_on) g_model.Bound(path, cowbackup::faults::kAbsent);
  return rc;
}
// RemoveTree and RemoveFlatDir remove by directory descriptor.
int __wrap_unlinkat(int dir, const char* name, int flags) {
  const std::string path = dir == AT_FDCWD ? name : cowbackup::faults::FdPath(dir) + "/" + name;
  const int rc = __real_unlinkat(dir, name, flags);
  if (rc == 0 && g_on) g_model.Bound(path, cowbackup::faults::kAbsent);
  return rc;
}
}  // extern "C"

namespace cowbackup::faults {
namespace {

class PowerLossTest : public SqliteWorkloadTest {
 protected:
  void TearDown() override {
    g_on = false;
    SqliteWorkloadTest::TearDown();
  }

  // Runs `op` with the model watching `dest` and checks the model's verdict
  // and the status (failure exactly when the directory fsync is failed).
  template <typename Op>
  void Scenario(const std::string& what, const std::string& dest, bool fail_dir_fsync, Op op) {
    g_model.Watch(dest);
    if (fail_dir_fsync) g_model.FailNextDirFsync();
    g_on = true;
    const Status s = op();
    g_model.Finished(s.ok());
    g_on = false;
    for (const std::string& v : g_model.violations()) ADD_FAILURE() << what << ": " << v;
    if (fail_dir_fsync) {
      EXPECT_FALSE(s.ok()) << what << ": a failed directory fsync went unreported";
    } else {
      EXPECT_TRUE(s.ok()) << what << ": " << s.ToString();
    }
  }

  // A SQLite backup through the shim while a writer commits.
  Status Backup(const std::string& dest, const std::string& format, Variant variant, bool overwrite) {
    Writers writer(db_, 1);
    BackupOptions options;
    options.format = format == "plain" ? BackupOptions::Format::kPlain : BackupOptions::Format::kArchive;
    options.variant = variant;
    options.overwrite = overwrite;
    options.max_rate_mb = 20;  // ~60 ms: the writer's commits land meanwhile
    options.segment_pages = 16;
    Summary summary;
    return BackupThroughShim(dest, options, &summary);
  }
};

TEST_F(PowerLossTest, SqliteBackupsPublishOnlyDurableCompleteCopies) {
  for (const std::string format : {"archive", "plain"}) {
    for (Variant variant : {Variant::kSnapshotFirst, Variant::kOverlayAtEnd}) {
      const std::string dest = dir_ + "/copy." + format;
      ::unlink(dest.c_str());
      const std::string what = format + (variant == Variant::kOverlayAtEnd ? ", overlay at end" : "");
      Scenario(what + ", new", dest, false, [&] { return Backup(dest, format, variant, false); });
      Scenario(what + ", overwrite", dest, false, [&] { return Backup(dest, format, variant, true); });
      Scenario(what + ", overwrite, directory fsync fails", dest, true,
               [&] { return Backup(dest, format, variant, true); });
      // Whatever was reported, a complete copy is at the destination.
      if (format == "archive") {
        EXPECT_TRUE(VerifyArchive(dest, nullptr, {}).ok()) << what;
      } else {
        std::string why;
        EXPECT_GE(testing::CommittedPrefix(dest, &why), 0) << what << ": " << why;
      }
    }
  }
}

// An archive of `pages` 4 KiB pages of `kind`, written through AtomicFile.
void WriteArchive(const std::string& path, format::SourceKind kind, uint64_t pages) {
  format::Header h;
  h.source_kind = kind;
  h.page_size = 4096;
  h.page_count = pages;
  std::unique_ptr<AtomicFile> out;
  ASSERT_TRUE(AtomicFile::Create(path, false, &out).ok());
  ArchiveWriter w(h, std::move(out));
  IoBuffer image(size_t(pages) * 4096);
  for (size_t i = 0; i < image.size(); i++) image.data()[i] = uint8_t(i * 7 + i / 4096);
  for (uint64_t p = 0; p < 2; p++) test::StampImageKind(kind, 4096, p, image.data() + p * 4096);
  ASSERT_TRUE(w.put_run(0, image.data(), pages).ok());
  ASSERT_TRUE(w.finish(Progress{}).ok());
}

TEST_F(PowerLossTest, RestoresPublishOnlyDurableCompleteCopies) {
  for (const auto kind : {format::SourceKind::kSqlite, format::SourceKind::kLmdb}) {
    const bool lmdb = kind == format::SourceKind::kLmdb;
    const std::string archive = dir_ + (lmdb ? "/env.cowbak" : "/db.cowbak");
    const std::string out = dir_ + (lmdb ? "/env" : "/restored.db");
    const std::string what = lmdb ? "LMDB restore" : "SQLite restore";
    Scenario("writing the archive", archive, false, [&] {
      WriteArchive(archive, kind, 300);
      return Status::OK();
    });
    Scenario(what + ", new", out, false, [&] { return RestoreArchive(archive, out, false); });
    // A large file being replaced is freed in steps (AtomicFile::TrimAndClose).
    const auto large_old_file = [&] {
      if (lmdb) return;
      ::unlink(out.c_str());
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT, 0600);
      EXPECT_EQ(::ftruncate(fd, off_t(3 * AtomicFile::kTrimStep)), 0);
      ::close(fd);
    };
    large_old_file();
    Scenario(what + ", replacing", out, false, [&] { return RestoreArchive(archive, out, true); });
    large_old_file();
    Scenario(what + ", replacing, directory fsync fails", out, true,
             [&] { return RestoreArchive(archive, out, true); });
    const std::string image = lmdb ? out + "/data.mdb" : out;
    EXPECT_EQ(ReadFile(image).size(), 300u * 4096) << what;
  }
}

}  // namespace
}  // namespace cowbackup::faults
