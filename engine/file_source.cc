#include "engine/file_source.h"

#include <errno.h>
#include <sys/stat.h>

#include "engine/posix_file.h"

namespace cowbackup {

Status FileSource::read(uint64_t offset, uint8_t* buf, size_t len) {
  return PreadFull(fd_, buf, len, offset, path_);
}

Status FileSource::size(uint64_t* bytes) {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno("fstat", path_, errno);
  *bytes = uint64_t(st.st_size);
  return Status::OK();
}

}  // namespace cowbackup
