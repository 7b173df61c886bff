#include "engine/file_source.h"

#include "engine/posix_file.h"

namespace cowbackup {

Status FileSource::read(uint64_t offset, uint8_t* buf, size_t len) {
  return PreadFull(fd_, buf, len, offset, path_);
}

}  // namespace cowbackup
