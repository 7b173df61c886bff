// A ByteOutput into memory (StringDest in leveldb's log_test.cc), for tests
// that build archives without touching the disk.
#pragma once

#include <string>
#include <vector>

#include "backup/output.h"

namespace cowbackup::test {

class MemoryOutput final : public ByteOutput {
 public:
  explicit MemoryOutput(std::vector<uint8_t>* out) : out_(out) {}
  Status append(const uint8_t* data, size_t len) override {
    out_->insert(out_->end(), data, data + len);
    return Status::OK();
  }
  Status commit() override { return Status::OK(); }
  void abandon() noexcept override { out_->clear(); }
  const std::string& name() const override { return name_; }

 private:
  std::vector<uint8_t>* out_;
  std::string name_ = "memory";
};

}  // namespace cowbackup::test
