#include "lmdb/env_source.h"

#include <errno.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "engine/encoding.h"

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

}  // namespace cowbackup::lmdb
