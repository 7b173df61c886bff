#include "backup/output.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdlib>

#include "backup/db_image.h"
#include "coord/region_format.h"
#include "engine/encoding.h"
#include "engine/posix_file.h"
#include "engine/sync_point.h"

namespace cowbackup {

namespace {
// rename() that refuses to replace an existing file when !overwrite, so a
// file created at the destination while we worked is never clobbered.
int PublishRename(const char* from, const char* to, bool overwrite) {
  if (overwrite) return ::rename(from, to);
  if (::renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  // Filesystems without RENAME_NOREPLACE: link() fails with EEXIST too.
  if (::link(from, to) != 0) return -1;
  ::unlink(from);
  return 0;
}

// True if the regular file open at `fd` begins with a database's header
// (SQLite's, or the magic of an LMDB meta page).
bool LooksLikeDatabase(int fd) {
  uint8_t head[lmdb::kMetaMagicOffset + 4] = {};
  if (::pread(fd, head, sizeof head, 0) != ssize_t(sizeof head)) return false;
  return memcmp(head, "SQLite format 3", 16) == 0 ||
         DecodeFixed32(head + lmdb::kMetaMagicOffset) == lmdb::kMetaMagic;
}
}  // namespace

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

int MakeTemp(const std::string& dest, int (*make)(const char*), std::string* path) {
  return MakeUnique(dest + kTempInfix, "", make, path);
}

Status CheckOutputPath(const std::string& dest, bool overwrite, const char* option,
                       const char* noun) {
  const std::string what = noun;
  if (dest.empty()) return Status::InvalidArgument(what + " path is empty");
  // SQLite takes "<db>-journal" for <db>'s hot journal (and replays or
  // deletes it), "<db>-wal" for its log: never put a copy there.
  for (const char* suffix : {"-journal", "-wal", "-shm"}) {
    const size_t n = strlen(suffix);
    if (dest.size() > n && dest.compare(dest.size() - n, n, suffix) == 0 && dest[dest.size() - n - 1] != '/') {
      return Status::InvalidArgument(what + " is named like a SQLite database's " + (suffix + 1) +
                                         " file, which SQLite would take for that database's own "
                                         "and replay or delete; choose another name",
                                     dest);
    }
  }
  // Nor at a coordination region's name (docs/REGION.md, "Where it
  // lives"): every process opening that database through cowbackup would
  // map the copy as the region it shares with the database's other writers.
  const size_t m = strlen(coord::kRegionSuffix);
  const bool lmdb_region = BaseName(dest) == coord::kLmdbRegionName;
  if (lmdb_region || (dest.size() > m && dest.compare(dest.size() - m, m, coord::kRegionSuffix) == 0 &&
                      dest[dest.size() - m - 1] != '/')) {
    return Status::InvalidArgument(what + " is named like " +
                                       (lmdb_region ? "an LMDB environment's" : "a database's") +
                                       " cowbackup coordination region, which every process opening that "
                                       "database through cowbackup would take for its own and map; "
                                       "choose another name",
                                   dest);
  }
  struct stat st;
  if (::lstat(dest.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::FromErrno(what, dest, errno);
    const std::string dir = ParentDir(dest);
    if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno(what + " directory", dir, errno);
    return Status::OK();
  }
  if (S_ISLNK(st.st_mode)) {
    return Status::InvalidArgument(
        what + " is a symbolic link; cowbackup never writes through or replaces one: give "
        "the path it points to",
        dest);
  }
  if (S_ISDIR(st.st_mode)) return Status::InvalidArgument(what + " is a directory", dest);
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(what + " is " + FileKind(st.st_mode) +
                                       "; only a regular file is ever replaced",
                                   dest);
  }
  if (!overwrite) {
    return Status::InvalidArgument(what + " exists (use " + option +
                                       " to replace it)",
                                   dest);
  }
  const int fd = OpenRegular(dest, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return Status::OK();  // unreadable here: nothing to learn from it
  const bool live = LooksLikeDatabase(fd) && FileSharing(fd) == Sharing::kOpenElsewhere;
  ::close(fd);
  if (live) {
    return Status::InvalidArgument(
        what + " is a database that is open (in this or another process); cowbackup never "
        "replaces a live database",
        dest);
  }
  return Status::OK();
}

Status CheckSqliteSidecars(const std::string& dest) {
  // What SQLite ignores of each, besides an empty file: a journal whose
  // first byte is zero is never hot.
  static constexpr struct {
    const char* suffix;
    const char* label;
    bool zero_head_ignored;
  } kSidecars[] = {{"-wal", "write-ahead log (-wal)", false},
                   {"-journal", "rollback journal (-journal)", true}};
  const std::string remove = "; remove it if it belongs to no live database";
  for (const auto& side : kSidecars) {
    const std::string path = dest + side.suffix;
    const std::string label = side.label;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return Status::FromErrno("look for a SQLite " + label + " beside the new database", path, errno);
    }
    if (!S_ISREG(st.st_mode)) {
      return Status::InvalidArgument(std::string(FileKind(st.st_mode)) + " stands where SQLite looks for "
                                         "the new database's " + label + ", and SQLite would take what it "
                                         "reads there for that database's own" + remove,
                                     path);
    }
    const int fd = OpenRegular(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // removed since the lstat
      return Status::FromErrno("read the SQLite " + label + " beside the new database (SQLite would "
                               "apply it to the new database" + remove + ")",
                               path, errno);
    }
    uint8_t first = 0;
    const bool ignored = ::fstat(fd, &st) == 0 &&
                         (st.st_size == 0 ||
                          (side.zero_head_ignored && ::pread(fd, &first, 1, 0) == 1 && first == 0));
    const bool live = ignored && FileSharing(fd) == Sharing::kOpenElsewhere;
    ::close(fd);
    if (live) {
      return Status::InvalidArgument("the SQLite " + label + " beside the new database is open in a "
                                         "process, so it belongs to a live database: SQLite would apply "
                                         "what that process writes to it to the new database",
                                     path);
    }
    if (!ignored) {
      return Status::InvalidArgument("a SQLite " + label + " lies beside the new database (another "
                                         "database's, or planted): SQLite would apply it to the new "
                                         "database when opening it" + remove,
                                     path);
    }
  }
  return Status::OK();
}

Status PublishDirectory(const std::string& temp_dir, const std::string& dest) {
  std::string old;  // where the replaced directory is, if there was one
  if (PathExists(dest)) {
    if (::renameat2(AT_FDCWD, temp_dir.c_str(), AT_FDCWD, dest.c_str(), RENAME_EXCHANGE) == 0) {
      old = temp_dir;
    } else if (errno == EINVAL || errno == ENOSYS) {
      // Reserve a fresh name, then move the old directory over it.
      if (MakeTemp(dest, CreatePrivateDir, &old) != 0 ||
          ::rename(dest.c_str(), old.c_str()) != 0) {
        const int err = errno;
        if (!old.empty()) ::rmdir(old.c_str());
        errno = err;
        old.clear();
      }
    }
    if (old.empty()) {
      const Status s = Status::FromErrno("rename", dest, errno);
      RemoveFlatDir(temp_dir);
      return s;
    }
  }
  if (old != temp_dir && ::rename(temp_dir.c_str(), dest.c_str()) != 0) {
    const Status s = Status::FromErrno("rename", dest, errno);
    if (!old.empty()) ::rename(old.c_str(), dest.c_str());
    RemoveFlatDir(temp_dir);
    return s;
  }
  const Status s = FsyncParentDir(dest);
  if (old.empty()) return s;
  if (!s.ok()) return Status::IOError(s.ToString(), "the previous copy is kept at " + old);
  RemoveFlatDir(old);
  return s;
}

AtomicFile::AtomicFile(std::string dest, std::string temp, int fd, int direct_fd, bool overwrite,
                       Contents contents)
    : dest_(std::move(dest)),
      temp_(std::move(temp)),
      fd_(fd),
      direct_fd_(direct_fd),
      overwrite_(overwrite),
      contents_(contents),
      stage_(kDirectChunk) {}

AtomicFile::~AtomicFile() {
  if (!done_) abandon();
}

Status AtomicFile::Create(const std::string& dest, bool overwrite,
                          std::unique_ptr<AtomicFile>* out, Contents contents) {
  Status s = CheckOutputPath(dest, overwrite);
  if (s.ok() && contents == Contents::kSqliteImage) s = CheckSqliteSidecars(dest);
  if (!s.ok()) return s;
  std::string temp;
  const int fd = MakeTemp(dest, CreateExclusiveFile, &temp);
  if (fd < 0) return Status::FromErrno("create", temp, errno);
  COWBACKUP_SYNC_POINT("AtomicFile::Create:created");
  // -1 where the filesystem has no O_DIRECT (EINVAL): buffered writes only.
  const int direct_fd = ReopenFd(fd, O_WRONLY | O_DIRECT);
  out->reset(new AtomicFile(dest, temp, fd, direct_fd, overwrite, contents));
  return Status::OK();
}

Status AtomicFile::append(const uint8_t* data, size_t len) {
  Status s = Stage(data, len, append_offset_);
  if (s.ok()) append_offset_ += len;
  return s;
}

Status AtomicFile::pwrite(const uint8_t* data, size_t len, uint64_t offset) {
  return Stage(data, len, offset);
}

void AtomicFile::DisableDirect() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  direct_fd_ = -1;
}

Status AtomicFile::Stage(const uint8_t* data, size_t len, uint64_t offset) {
  if (stage_end_ > stage_begin_ && offset != stage_base_ + stage_end_) {
    Status s = Drain(/*all=*/true);  // not contiguous: start a new run
    if (!s.ok()) return s;
  }
  if (stage_end_ == stage_begin_ && direct_fd_ >= 0 && offset % kIoAlign == 0 &&
      reinterpret_cast<uintptr_t>(data) % kIoAlign == 0 && len >= kIoAlign) {
    // Aligned in memory and in the file (an IoBuffer): no bounce copy.
    const size_t n = len / kIoAlign * kIoAlign;
    Status s = WriteDirect(data, n, offset);
    if (!s.ok()) return s;
    data += n;
    len -= n;
    offset += n;
  }
  if (len == 0) return Status::OK();
  if (stage_end_ == stage_begin_) {
    stage_base_ = offset & ~uint64_t(kIoAlign - 1);
    stage_begin_ = stage_end_ = size_t(offset - stage_base_);
  }
  while (len > 0) {
    const size_t n = std::min(len, kDirectChunk - stage_end_);
    memcpy(stage_.data() + stage_end_, data, n);
    stage_end_ += n;
    data += n;
    len -= n;
    if (stage_end_ == kDirectChunk) {
      Status s = Drain(/*all=*/false);
      if (!s.ok()) return s;
    }
  }
  return Status::OK();
}

// Writes the staged bytes: those before the first block boundary through
// the page cache, the whole blocks directly, and the partial last block
// through the page cache if `all`, else it stays staged for the next write.
Status AtomicFile::Drain(bool all) {
  uint8_t* const buf = stage_.data();
  size_t i = stage_begin_;
  const size_t end = stage_end_;
  Status s;
  if (i % kIoAlign != 0) {
    const size_t head = std::min(end, (i / kIoAlign + 1) * kIoAlign) - i;
    s = WriteBuffered(buf + i, head, stage_base_ + i);
    i += head;
  }
  const size_t blocks_end = end / kIoAlign * kIoAlign;
  if (s.ok() && blocks_end > i) {
    s = WriteDirect(buf + i, blocks_end - i, stage_base_ + i);
    i = blocks_end;
  }
  if (s.ok() && all && end > i) {
    s = WriteBuffered(buf + i, end - i, stage_base_ + i);
    i = end;
  }
  if (!s.ok()) return s;
  // What is left is the partial block at `i` (aligned).
  memmove(buf, buf + i, end - i);
  stage_base_ += i;
  stage_begin_ = 0;
  stage_end_ = end - i;
  return s;
}

Status AtomicFile::WriteDirect(const uint8_t* data, size_t len, uint64_t offset) {
  if (direct_fd_ >= 0) {
    ssize_t n;
    do {
      n = ::pwrite(direct_fd_, data, len, off_t(offset));
    } while (n < 0 && errno == EINTR);
    if (n == ssize_t(len)) return Status::OK();
    if (n < 0 && errno != EINVAL) return Status::FromErrno("write", temp_, errno);
    // Refused (alignment this device does not accept) or short: finish this
    // and every later write through the page cache.
    DisableDirect();
    const size_t done = n > 0 ? size_t(n) : 0;
    data += done;
    len -= done;
    offset += done;
  }
  return WriteBuffered(data, len, offset);
}

Status AtomicFile::WriteBuffered(const uint8_t* data, size_t len, uint64_t offset) {
  Status s = PwriteFull(fd_, data, len, offset, temp_);
  if (!s.ok()) return s;
  unsynced_ += len;
  if (unsynced_ < kSyncChunk) return s;
  unsynced_ = 0;
  // Wait for the chunk before the last one, start the last one. Advisory
  // only: errors surface at the final fsync, which is what counts.
  if (synced_upto_ >= kSyncChunk) {
    ::sync_file_range(fd_, off_t(synced_upto_ - kSyncChunk), off_t(kSyncChunk),
                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  ::sync_file_range(fd_, off_t(synced_upto_), 0, SYNC_FILE_RANGE_WRITE);
  synced_upto_ += kSyncChunk;
  return s;
}

Status AtomicFile::truncate(uint64_t size) {
  Status s = Drain(/*all=*/true);
  if (!s.ok()) return s;
  if (::ftruncate(fd_, off_t(size)) != 0) return Status::FromErrno("truncate", temp_, errno);
  return Status::OK();
}

Status AtomicFile::Reserve(uint64_t bytes) {
  if (bytes == 0) return Status::OK();
  if (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, 0, off_t(bytes)) == 0) {
    reserved_ = true;
    return Status::OK();
  }
  if (errno == EOPNOTSUPP || errno == ENOSYS) return Status::OK();
  return Status::FromErrno("reserve " + std::to_string(bytes) + " bytes for the copy", temp_, errno);
}

Status AtomicFile::commit() {
  Status s = Drain(/*all=*/true);
  // Give back the reserved blocks past the end (ftruncate to the same size
  // frees them), so the copy takes only what it holds.
  struct stat st;
  if (s.ok() && reserved_ && (::fstat(fd_, &st) != 0 || ::ftruncate(fd_, st.st_size) != 0)) {
    s = Status::FromErrno("truncate", temp_, errno);
  }
  if (s.ok()) s = FsyncFd(fd_, temp_);
  // The rename below goes by name: make sure the name is still our file
  // (in a directory others can write, it may have been swapped for a
  // symlink; what we wrote went to our descriptor all the same).
  struct stat ours, named;
  if (s.ok() && (::fstat(fd_, &ours) != 0 || ::lstat(temp_.c_str(), &named) != 0 ||
                 ours.st_dev != named.st_dev || ours.st_ino != named.st_ino)) {
    s = Status::IOError("the temporary was replaced by another file while writing; not published",
                        temp_);
  }
  // The file being replaced stays open (pinned: a regular file only) so it
  // can be freed a step at a time after the rename; see TrimAndClose. What
  // is there now must still be a regular file: anything else that appeared
  // since Create is refused, never replaced.
  int replaced = -1;
  if (s.ok() && overwrite_) {
    replaced = OpenRegular(dest_, O_WRONLY | O_NONBLOCK);
    if (replaced < 0 && (errno == ELOOP || errno == EINVAL)) {
      s = CheckOutputPath(dest_, true);
      if (s.ok()) s = Status::InvalidArgument("destination changed while writing; not replaced", dest_);
    }
  }
  // A -wal or -journal that appeared beside the destination while we
  // wrote would be applied to what we publish: look again, as late as we
  // can. (What appears between this look and the rename is not seen.)
  if (s.ok() && contents_ == Contents::kSqliteImage) s = CheckSqliteSidecars(dest_);
  if (s.ok() && PublishRename(temp_.c_str(), dest_.c_str(), overwrite_) != 0) {
    s = errno == EEXIST
            ? Status::InvalidArgument("destination appeared while writing; not replaced", dest_)
            : Status::FromErrno("rename", dest_, errno);
  }
  if (s.ok()) {
    done_ = true;
    DisableDirect();
    ::close(fd_);
    fd_ = -1;
    s = FsyncParentDir(dest_);
  }
  // Until the directory is synced, a power loss may bring the replaced file
  // back at dest_: never write to it then, only let it go.
  if (replaced >= 0) {
    if (s.ok()) {
      TrimAndClose(replaced);
    } else {
      ::close(replaced);
    }
  }
  return s;
}

// Freeing a large file's blocks happens in one journal commit, which every
// application fsync on the filesystem then waits for: replacing a 1 GiB
// copy stalled a commit ~130 ms on this machine class (more with the
// discard mount option). Shrinking it kTrimStep at a time, each step
// committed, spreads that out, as RocksDB's DeleteScheduler does with
// bytes_max_delete_chunk. Only a file with no name left and open nowhere
// else is shrunk (another hard link, or a reader of the old copy, keeps
// it whole); the last close frees the rest. Best effort: errors only mean
// the old copy is freed in one piece.
void AtomicFile::TrimAndClose(int fd) {
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0 &&
      FileSharing(fd) == Sharing::kOnlyHere) {
    for (off_t size = st.st_size; size > off_t(kTrimStep);) {
      size -= off_t(kTrimStep);
      if (::ftruncate(fd, size) != 0 || ::fsync(fd) != 0) break;
    }
  }
  ::close(fd);
}

void AtomicFile::abandon() noexcept {
  if (done_) return;
  done_ = true;
  DisableDirect();
  ::close(fd_);
  fd_ = -1;
  ::unlink(temp_.c_str());
}

std::vector<std::string> ListStaleTemporaries(const std::string& dir, const std::string& base) {
  std::vector<std::string> stale;
  const std::string prefix = base + kTempInfix;
  for (const std::string& name : ListDir(dir)) {
    // "<base>.cowtmp-<pid>-<random>": the pid follows the infix (the last
    // one when any destination's will do: a destination's own name may
    // hold the infix too).
    size_t at = name.rfind(kTempInfix);
    if (!base.empty()) at = name.compare(0, prefix.size(), prefix) == 0 ? base.size() : std::string::npos;
    if (at == std::string::npos || at == 0) continue;
    const long pid = std::strtol(name.c_str() + at + strlen(kTempInfix), nullptr, 10);
    if (pid <= 0 || pid == ::getpid()) continue;
    const std::string path = dir + "/" + name;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || st.st_uid != ::geteuid() ||
        !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) || OwnerMayBeAlive(pid, st.st_mtime)) {
      continue;
    }
    stale.push_back(path);
  }
  return stale;
}

std::vector<std::string> AtomicFile::RemoveStale(const std::string& dest) {
  std::vector<std::string> removed;
  for (const std::string& path : ListStaleTemporaries(ParentDir(dest), BaseName(dest))) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      RemoveFlatDir(path);  // a restore's temporary LMDB environment
      if (!PathExists(path)) removed.push_back(path);
    } else if (::unlink(path.c_str()) == 0) {
      removed.push_back(path);
    }
  }
  return removed;
}

Status StreamOutput::append(const uint8_t* data, size_t len) {
  return WriteFull(fd_, data, len, name_);
}

Status StreamOutput::commit() {
  struct stat st;
  if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) return FsyncFd(fd_, name_);
  return Status::OK();
}

}  // namespace cowbackup
