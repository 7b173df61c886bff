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

#include "engine/posix_file.h"

namespace cowbackup {

namespace {
std::atomic<uint64_t> g_temp_counter{0};

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
}  // namespace

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string TempName(const std::string& dest) {
  return dest + kTempInfix + std::to_string(::getpid()) + "-" + std::to_string(g_temp_counter.fetch_add(1));
}

Status PublishDirectory(const std::string& temp_dir, const std::string& dest) {
  std::string old;  // where the replaced directory is, if there was one
  if (PathExists(dest)) {
    if (::renameat2(AT_FDCWD, temp_dir.c_str(), AT_FDCWD, dest.c_str(), RENAME_EXCHANGE) == 0) {
      old = temp_dir;
    } else if (errno == EINVAL || errno == ENOSYS) {
      old = TempName(dest);
      if (::rename(dest.c_str(), old.c_str()) != 0) old.clear();
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

AtomicFile::AtomicFile(std::string dest, std::string temp, int fd, int direct_fd, bool overwrite)
    : dest_(std::move(dest)),
      temp_(std::move(temp)),
      fd_(fd),
      direct_fd_(direct_fd),
      overwrite_(overwrite),
      stage_(kDirectChunk) {}

AtomicFile::~AtomicFile() {
  if (!done_) abandon();
}

Status AtomicFile::Create(const std::string& dest, bool overwrite,
                          std::unique_ptr<AtomicFile>* out) {
  if (dest.empty()) return Status::InvalidArgument("destination path is empty");
  struct stat st;
  if (::stat(dest.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::InvalidArgument("destination is a directory", dest);
    if (!overwrite) {
      return Status::InvalidArgument("destination exists (use overwrite to replace it)", dest);
    }
  }
  const std::string temp = TempName(dest);
  int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create", temp, errno);
  // -1 where the filesystem has no O_DIRECT (EINVAL): buffered writes only.
  const int direct_fd = ::open(temp.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  out->reset(new AtomicFile(dest, temp, fd, direct_fd, overwrite));
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
  // The file being replaced keeps a temporary name (left to RemoveStale if
  // we die) so the rename does not free it all at once; see TrimAndRemove.
  std::string replaced;
  if (s.ok() && overwrite_) {
    replaced = TempName(dest_);
    if (::link(dest_.c_str(), replaced.c_str()) != 0) replaced.clear();
  }
  if (s.ok() && PublishRename(temp_.c_str(), dest_.c_str(), overwrite_) != 0) {
    s = errno == EEXIST
            ? Status::InvalidArgument("destination appeared while writing; not replaced", dest_)
            : Status::FromErrno("rename", dest_, errno);
    if (!replaced.empty()) ::unlink(replaced.c_str());
    replaced.clear();
  }
  if (s.ok()) {
    done_ = true;
    DisableDirect();
    ::close(fd_);
    fd_ = -1;
    s = FsyncParentDir(dest_);
  }
  // Until the directory is synced, a power loss may bring the replaced file
  // back at dest_: never write to it (no TrimAndRemove). Dropping our extra
  // name for it is safe: a journaling file system cannot make that unlink
  // (which frees the blocks) durable before the rename it follows.
  if (!replaced.empty()) {
    if (s.ok()) {
      TrimAndRemove(replaced);
    } else {
      ::unlink(replaced.c_str());
    }
  }
  return s;
}

// Freeing a large file's blocks happens in one journal commit, which every
// application fsync on the filesystem then waits for: replacing a 1 GiB
// copy stalled a commit ~130 ms on this machine class (more with the
// discard mount option). Shrinking it kTrimStep at a time, each step
// committed, spreads that out, as RocksDB's DeleteScheduler does with
// bytes_max_delete_chunk. Only a regular file with no other name is
// shrunk; anything else is just unlinked. Best effort: errors only mean
// the old copy is freed in one piece.
void AtomicFile::TrimAndRemove(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1) {
    for (off_t size = st.st_size; size > off_t(kTrimStep);) {
      size -= off_t(kTrimStep);
      if (::ftruncate(fd, size) != 0 || ::fsync(fd) != 0) break;
    }
  }
  if (fd >= 0) ::close(fd);
  ::unlink(path.c_str());
}

void AtomicFile::abandon() noexcept {
  if (done_) return;
  done_ = true;
  DisableDirect();
  ::close(fd_);
  fd_ = -1;
  ::unlink(temp_.c_str());
}

std::vector<std::string> AtomicFile::RemoveStale(const std::string& dest) {
  std::vector<std::string> removed;
  const std::string dir = ParentDir(dest);
  const std::string prefix = BaseName(dest) + kTempInfix;
  for (const std::string& name : ListDir(dir)) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid()) continue;
    const std::string path = dir + "/" + name;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || OwnerMayBeAlive(pid, st.st_mtime)) continue;
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
