#include "lmdb/env_source.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "engine/encoding.h"
#include "engine/posix_file.h"

namespace cowbackup::lmdb {

Status EnvSource::read(uint64_t offset, uint8_t* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd_, buf + done, len - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("pread", path_ + " at offset " + std::to_string(offset + done), errno);
    }
    if (n == 0) {  // end of file: the rest is pages LMDB never wrote
      std::memset(buf + done, 0, len - done);
      break;
    }
    done += size_t(n);
  }
  return Status::OK();
}

Status ReadNewestMeta(Source* source, MetaPage* newest, int* which) {
  const uint32_t psize = source->page_size();
  if (psize < kMetaEnd) return Status::InvalidArgument("lmdb: page size too small for a meta page");
  std::vector<uint8_t> buf(size_t(psize) * 2);
  Status s = source->read(0, buf.data(), buf.size());
  if (!s.ok()) return s;
  return NewestMeta(buf.data(), psize, source->name(), newest, which);
}

namespace {

// Why page `pgno` (0 or 1) is not a meta page LMDB 0.9.24 opens, or "".
std::string MetaProblem(const MetaPage& m, int pgno) {
  char buf[160];
  if (!(m.page_flags & kPageMetaFlag) || m.magic != kMetaMagic) {
    snprintf(buf, sizeof buf,
             "not an LMDB data file: page %d is not an LMDB meta page (magic 0x%08x, flags 0x%04x)",
             pgno, unsigned(m.magic), unsigned(m.page_flags));
    return buf;
  }
  if (m.version != kMetaVersion) {
    snprintf(buf, sizeof buf, "meta page %d has LMDB data format version %u, expected %u", pgno,
             unsigned(m.version), unsigned(kMetaVersion));
    return buf;
  }
  return "";
}

Status CheckOpenedDataFile(int fd, const std::string& path, struct stat* st) {
  if (::fstat(fd, st) != 0) return Status::FromErrno("lmdb: fstat", path, errno);
  const uint64_t size = uint64_t(st->st_size);
  if (size == 0) {
    return Status::InvalidArgument(
        "lmdb: data.mdb is empty, not an LMDB environment (opening it would initialize a new one)",
        path);
  }
  EnvSource file(fd, 0, path);
  std::vector<uint8_t> page(kMetaEnd);
  if (size < kMetaEnd) {
    return Status::InvalidArgument("lmdb: data.mdb is " + std::to_string(size) +
                                       " bytes, too short for an LMDB meta page: not an LMDB data file",
                                   path);
  }
  Status s = file.read(0, page.data(), page.size());
  if (!s.ok()) return s;
  MetaPage m0;
  DecodeMetaPage(page.data(), &m0);
  std::string problem = MetaProblem(m0, 0);
  if (!problem.empty()) {
    return m0.version != kMetaVersion && m0.magic == kMetaMagic
               ? Status::NotSupported("lmdb: data.mdb: " + problem, path)
               : Status::InvalidArgument("lmdb: data.mdb is " + problem, path);
  }
  const uint32_t psize = m0.page_size;
  if (psize < 512 || psize > 65536 || (psize & (psize - 1)) != 0) {
    return Status::Corruption("lmdb: data.mdb: meta page 0 gives a bad page size " + std::to_string(psize),
                              path);
  }
  if (size < 2 * uint64_t(psize)) {
    return Status::InvalidArgument("lmdb: data.mdb is truncated: " + std::to_string(size) +
                                       " bytes, less than its two meta pages of " +
                                       std::to_string(psize) + " bytes",
                                   path);
  }
  s = file.read(psize, page.data(), page.size());
  if (!s.ok()) return s;
  MetaPage m1;
  DecodeMetaPage(page.data(), &m1);
  problem = MetaProblem(m1, 1);
  if (!problem.empty()) return Status::Corruption("lmdb: data.mdb: " + problem, path);
  return Status::OK();
}

}  // namespace

Status CheckDataFile(const std::string& data_path, struct stat* st) {
  // A regular file only: a FIFO would block, a device is never opened.
  const int fd = OpenRegular(data_path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    struct stat lst;
    if (err == EINVAL && ::lstat(data_path.c_str(), &lst) == 0) {
      return Status::InvalidArgument(std::string("lmdb: data.mdb is ") + FileKind(lst.st_mode) +
                                         ", not an LMDB data file",
                                     data_path);
    }
    if (err == ELOOP) {
      return Status::InvalidArgument(
          "lmdb: data.mdb is a symbolic link; a backup opens only an environment's own data file "
          "(give the directory that holds the file itself)",
          data_path);
    }
    if (err == ENOENT) {
      return Status::NotFound("lmdb: no data.mdb: not an LMDB environment", data_path);
    }
    return Status::FromErrno("lmdb: open", data_path, err);
  }
  Status s = CheckOpenedDataFile(fd, data_path, st);
  // Closing drops no lock that matters: LMDB locks lock.mdb, not data.mdb.
  ::close(fd);
  return s;
}

}  // namespace cowbackup::lmdb
