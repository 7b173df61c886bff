// FileSource: a Source over an open file descriptor (pread). Front ends
// with their own way to read (the SQLite shim reads through the parent VFS)
// implement Source themselves; tools and tests use this one.
#pragma once

#include <string>

#include "engine/source.h"

namespace cowbackup {

class FileSource final : public Source {
 public:
  // Does not take ownership of `fd`.
  FileSource(int fd, std::string path, uint32_t page_size)
      : fd_(fd), path_(std::move(path)), page_size_(page_size) {}
  Status read(uint64_t offset, uint8_t* buf, size_t len) override;
  uint32_t page_size() const override { return page_size_; }
  const std::string& name() const override { return path_; }

 private:
  const int fd_;
  const std::string path_;
  const uint32_t page_size_;
};

}  // namespace cowbackup
