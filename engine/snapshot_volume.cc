#include "engine/snapshot_volume.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "engine/checksum.h"
#include "engine/clock.h"
#include "engine/encoding.h"
#include "engine/posix_file.h"
#include "engine/sync_point.h"

namespace cowbackup {

namespace {
// Header fields at fixed offsets.
constexpr size_t kOffMagic = 0, kOffVersion = 8, kOffPageSize = 12, kOffPid = 16,
                 kOffCreated = 24, kOffNameLen = 32, kOffName = 36;
constexpr size_t kOffHeaderSum = kVolumeHeaderSize - 8;
constexpr size_t kMaxName = kOffHeaderSum - kOffName;
constexpr uint32_t kVolumeVersion = 1;
static_assert(kOffName + kMaxName + 8 == kVolumeHeaderSize);

}  // namespace

FileSnapshotVolume::FileSnapshotVolume(std::string path, int fd, uint32_t page_size)
    : path_(std::move(path)), fd_(fd), page_size_(page_size) {}

FileSnapshotVolume::~FileSnapshotVolume() {
  remove();
  ::close(fd_);
}

Status FileSnapshotVolume::Create(const std::string& path, uint32_t page_size,
                                  const std::string& source_name,
                                  std::unique_ptr<FileSnapshotVolume>* out) {
  const int fd = CreateExclusiveFile(path.c_str());
  if (fd < 0) return Status::FromErrno("create snapshot volume", path, errno);
  return Init(path, fd, page_size, source_name, out);
}

Status FileSnapshotVolume::CreateUnique(const std::string& prefix, uint32_t page_size,
                                        const std::string& source_name,
                                        std::unique_ptr<FileSnapshotVolume>* out) {
  std::string path;
  const int fd = MakeUnique(prefix, kVolumeSuffix, CreateExclusiveFile, &path);
  if (fd < 0) return Status::FromErrno("create snapshot volume", path, errno);
  return Init(path, fd, page_size, source_name, out);
}

Status FileSnapshotVolume::Init(std::string path, int fd, uint32_t page_size,
                                const std::string& source_name,
                                std::unique_ptr<FileSnapshotVolume>* out) {
  COWBACKUP_SYNC_POINT("FileSnapshotVolume::Create:before_header");
  uint8_t header[kVolumeHeaderSize] = {};
  memcpy(header + kOffMagic, kVolumeMagic, sizeof(kVolumeMagic));
  EncodeFixed32(header + kOffVersion, kVolumeVersion);
  EncodeFixed32(header + kOffPageSize, page_size);
  EncodeFixed64(header + kOffPid, uint64_t(::getpid()));
  EncodeFixed64(header + kOffCreated, NowUnixMicros());
  size_t name_len = std::min(source_name.size(), kMaxName);
  EncodeFixed32(header + kOffNameLen, uint32_t(name_len));
  memcpy(header + kOffName, source_name.data(), name_len);
  EncodeFixed64(header + kOffHeaderSum, Checksum::Of(header, kOffHeaderSum));
  Status s = PwriteFull(fd, header, sizeof(header), 0, path);
  if (!s.ok()) {
    ::close(fd);
    ::unlink(path.c_str());
    return s;
  }
  out->reset(new FileSnapshotVolume(std::move(path), fd, page_size));
  return Status::OK();
}

Status FileSnapshotVolume::ReadInfo(const std::string& path, Info* info) {
  const int fd = OpenRegular(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return Status::FromErrno("open snapshot volume", path, errno);
  Status s = ReadHeader(fd, path, info);
  ::close(fd);
  return s;
}

Status FileSnapshotVolume::ReadHeader(int fd, const std::string& path, Info* info) {
  uint8_t header[kVolumeHeaderSize];
  Status s = PreadFull(fd, header, sizeof(header), 0, path);
  if (!s.ok()) return Status::Corruption("not a snapshot volume (short header)", path);
  if (memcmp(header, kVolumeMagic, sizeof(kVolumeMagic)) != 0 ||
      DecodeFixed64(header + kOffHeaderSum) != Checksum::Of(header, kOffHeaderSum)) {
    return Status::Corruption("not a snapshot volume (bad magic or checksum)", path);
  }
  info->page_size = DecodeFixed32(header + kOffPageSize);
  info->pid = int64_t(DecodeFixed64(header + kOffPid));
  info->created_unix_us = DecodeFixed64(header + kOffCreated);
  uint32_t name_len = DecodeFixed32(header + kOffNameLen);
  if (name_len > kMaxName) return Status::Corruption("snapshot volume: bad name length", path);
  info->source_name.assign(reinterpret_cast<const char*>(header + kOffName), name_len);
  return Status::OK();
}

Status FileSnapshotVolume::OpenShared(const std::string& path, uint32_t page_size,
                                      std::unique_ptr<FileSnapshotVolume>* out) {
  const int fd = OpenRegular(path, O_RDWR | O_CLOEXEC);
  if (fd < 0 && (errno == ELOOP || errno == EINVAL)) {
    // Say what is there instead ("Invalid argument" for a FIFO says nothing).
    struct stat st;
    const unsigned mode = ::lstat(path.c_str(), &st) == 0 ? st.st_mode : 0;
    return Status::InvalidArgument(std::string("the job's snapshot volume is ") + FileKind(mode) +
                                       "; only a regular file is used",
                                   path);
  }
  if (fd < 0) return Status::FromErrno("open the job's snapshot volume", path, errno);
  struct stat st;
  Info info;
  Status s;
  if (::fstat(fd, &st) != 0) {
    s = Status::FromErrno("stat the job's snapshot volume", path, errno);
  } else if (st.st_uid != ::geteuid() || (st.st_mode & 07777) != 0600 || st.st_nlink != 1) {
    s = Status::InvalidArgument("the job's snapshot volume is not a private file of this user "
                                "(owner, mode 0600, one link); not used",
                                path);
  } else {
    s = ReadHeader(fd, path, &info);
    if (s.ok() && info.page_size != page_size) {
      s = Status::Corruption("the job's snapshot volume is for page size " +
                                 std::to_string(info.page_size) + ", the job's is " +
                                 std::to_string(page_size),
                             path);
    }
  }
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  out->reset(new FileSnapshotVolume(path, fd, page_size));
  (*out)->removed_ = true;  // never unlinked here: its creator's
  return Status::OK();
}

Status FileSnapshotVolume::put(uint64_t pgno, const uint8_t* page) {
  uint8_t head[16];
  EncodeFixed64(head, pgno);
  EncodeFixed32(head + 8, page_size_);
  EncodeFixed32(head + 12, 0);
  Checksum sum;
  sum.update(head, sizeof(head));
  sum.update(page, page_size_);
  uint8_t tail[8];
  EncodeFixed64(tail, sum.digest());

  iovec iov[3] = {{head, sizeof(head)}, {const_cast<uint8_t*>(page), page_size_}, {tail, sizeof(tail)}};
  const size_t total = sizeof(head) + page_size_ + sizeof(tail);
  ssize_t n;
  do {
    n = ::pwritev(fd_, iov, 3, off_t(slot_offset(pgno)));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("snapshot volume write", path_, errno);
  if (size_t(n) != total) {
    // A short pwritev on a regular file means the disk filled up.
    return Status::FromErrno("snapshot volume write (short)", path_, ENOSPC);
  }
  return Status::OK();
}

Status FileSnapshotVolume::get(uint64_t pgno, uint8_t* page) {
  uint8_t head[16], tail[8];
  iovec iov[3] = {{head, sizeof(head)}, {page, page_size_}, {tail, sizeof(tail)}};
  const size_t total = sizeof(head) + page_size_ + sizeof(tail);
  ssize_t n;
  do {
    n = ::preadv(fd_, iov, 3, off_t(slot_offset(pgno)));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("snapshot volume read", path_, errno);
  const std::string where = path_ + ", page " + std::to_string(pgno);
  if (size_t(n) != total) return Status::Corruption("snapshot volume: short record", where);
  Checksum sum;
  sum.update(head, sizeof(head));
  sum.update(page, page_size_);
  if (DecodeFixed64(head) != pgno || DecodeFixed32(head + 8) != page_size_ ||
      DecodeFixed64(tail) != sum.digest()) {
    return Status::Corruption("snapshot volume: bad record", where);
  }
  return Status::OK();
}

void FileSnapshotVolume::remove() noexcept {
  if (removed_) return;
  removed_ = true;
  ::unlink(path_.c_str());
}

}  // namespace cowbackup
