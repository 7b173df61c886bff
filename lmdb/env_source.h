// The engine's view of an LMDB data file, and the two meta pages in it.
//
// EnvSource reads data.mdb with pread through LMDB's own descriptor me_fd
// (mdb_env_get_fd): pread leaves the descriptor's position alone (which
// mdb_page_flush's lseek + writev relies on), and we never open and close
// a second descriptor of the file (closing one drops the process's POSIX
// locks on the inode; see os_unix.c's essay).
//
// Reads past end of file return zeros. The file may end before the last
// page the meta page names: mm_last_pg counts pages allocated and then
// freed in the same transaction (loose pages), which mdb_page_flush never
// writes ("the file may be shorter if the freeDB lists the final pages",
// mdb.c). Those pages are free at T0, so any content will do; mdb_copy
// stops at end of file for the same reason.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "cowbackup/status.h"
#include "backup/db_image.h"
#include "engine/source.h"

namespace cowbackup::lmdb {

class EnvSource final : public Source {
 public:
  // `fd` stays owned by LMDB; the env must outlive the source.
  EnvSource(int fd, uint32_t page_size, std::string path)
      : fd_(fd), page_size_(page_size), path_(std::move(path)) {}
  Status read(uint64_t offset, uint8_t* buf, size_t len) override;
  uint32_t page_size() const override { return page_size_; }
  const std::string& name() const override { return path_; }

 private:
  const int fd_;
  const uint32_t page_size_;
  const std::string path_;
};

// MetaPage and DecodeMetaPage: backup/db_image.h.
// Reads meta pages 0 and 1 through `source` and returns the one with the
// higher txnid (the one LMDB opens with). Corruption if neither is valid.
Status ReadNewestMeta(Source* source, MetaPage* newest, int* which = nullptr);

// Whether `data_path` is an LMDB data file that mdb_env_open would open as
// it is, found without changing anything: opened with OpenRegular (a
// symbolic link is refused, a FIFO or device is never opened), a regular
// file of at least two pages whose pages 0 and 1 are both meta pages
// (P_META, magic, version 1), as mdb_env_read_header requires. An empty
// file is refused: LMDB would initialize it, writing two meta pages. The
// error names the file and what is wrong with it. On success *st is its
// fstat (Env::Open checks that LMDB then opened the same inode).
Status CheckDataFile(const std::string& data_path, struct stat* st);

}  // namespace cowbackup::lmdb
