#include "tools/source_kind.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "backup/db_image.h"
#include "engine/encoding.h"
#include "engine/posix_file.h"

namespace cowbackup::cli {

Status DetectSource(const std::string& source, SourceKind* kind) {
  struct stat st;
  if (::stat(source.c_str(), &st) != 0) return Status::FromErrno("open source", source, errno);
  if (S_ISDIR(st.st_mode)) {
    if (::access((source + "/data.mdb").c_str(), F_OK) != 0) {
      return Status::InvalidArgument(
          "source is a directory without data.mdb: not an LMDB environment", source);
    }
    *kind = SourceKind::kLmdbEnv;
    return Status::OK();
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("source is not a regular file or directory", source);
  }
  // O_NONBLOCK: a FIFO swapped in since the stat must not block us.
  int fd = ::open(source.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open source", source, errno);
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("source is not a regular file or directory", source);
  }
  uint8_t head[lmdb::kMetaMagicOffset + 4] = {};
  const ssize_t n = ::pread(fd, head, sizeof head, 0);
  ::close(fd);
  if (n == 0 || (n >= 16 && memcmp(head, "SQLite format 3", 16) == 0)) {
    *kind = SourceKind::kSqlite;  // an empty file is an empty SQLite database
    return Status::OK();
  }
  if (BaseName(source) == "data.mdb") {
    return Status::InvalidArgument("source is an LMDB data file: give its environment directory",
                                   source);
  }
  if (n == ssize_t(sizeof head) && DecodeFixed32(head + lmdb::kMetaMagicOffset) == lmdb::kMetaMagic) {
    *kind = SourceKind::kLmdbDataFile;
    return Status::OK();
  }
  return Status::InvalidArgument("source is neither a SQLite database nor an LMDB environment",
                                 source);
}

}  // namespace cowbackup::cli
