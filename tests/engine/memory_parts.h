// In-memory doubles for the engine's three parts (log_test.cc's StringDest /
// StringSource in spirit). Single-threaded use only, except where noted:
// the deterministic interleaving harness drives them from one thread.
#pragma once

#include <atomic>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/sink.h"
#include "engine/snapshot_volume.h"
#include "engine/source.h"

namespace cowbackup::test {

class MemorySource final : public Source {
 public:
  MemorySource(uint32_t page_size, std::vector<uint8_t> bytes)
      : page_size_(page_size), bytes(std::move(bytes)) {}
  Status read(uint64_t offset, uint8_t* buf, size_t len) override {
    if (offset + len > bytes.size()) {
      return Status::Incomplete("read past end of memory source", std::to_string(offset));
    }
    memcpy(buf, bytes.data() + offset, len);
    reads++;
    return Status::OK();
  }
  uint32_t page_size() const override { return page_size_; }
  const std::string& name() const override { return name_; }

  // What a writer does after before_write()/before_truncate() returned.
  void write(uint64_t offset, const uint8_t* data, size_t len) {
    if (offset + len > bytes.size()) bytes.resize(offset + len, 0);
    memcpy(bytes.data() + offset, data, len);
  }
  void truncate(uint64_t size) { bytes.resize(size); }

  const uint32_t page_size_;
  std::vector<uint8_t> bytes;
  uint64_t reads = 0;
  std::string name_ = "memory";
};

class MemoryVolume final : public SnapshotVolume {
 public:
  explicit MemoryVolume(uint32_t page_size) : page_size_(page_size) {}
  Status put(uint64_t pgno, const uint8_t* page) override {
    auto it = pages.find(pgno);
    if (it != pages.end() &&
        !(repeat_ok && memcmp(it->second.data(), page, page_size_) == 0)) {
      return Status::Corruption("page preserved twice", std::to_string(pgno));
    }
    pages[pgno].assign(page, page + page_size_);
    return Status::OK();
  }
  Status get(uint64_t pgno, uint8_t* page) override {
    auto it = pages.find(pgno);
    if (it == pages.end()) return Status::NotFound("page not in volume", std::to_string(pgno));
    memcpy(page, it->second.data(), page_size_);
    return Status::OK();
  }
  void remove() noexcept override { removed = true; }

  const uint32_t page_size_;
  std::map<uint64_t, std::vector<uint8_t>> pages;
  bool removed = false;
  // A shared job's volume (engine/shared_pages.h): a page whose writer died
  // after its put is preserved again by the next claimer, with the same
  // bytes (FileSnapshotVolume overwrites the slot). Other bytes are still
  // "preserved twice".
  bool repeat_ok = false;
};

// Checks the Sink contract as it goes: each page put once, overlays only
// over pages already put, nothing after finish or abandon.
class MemorySink final : public Sink {
 public:
  MemorySink(uint32_t page_size, uint64_t page_count)
      : page_size_(page_size), image(page_size * page_count, 0), put_(page_count, false) {}
  Status put_run(uint64_t first, const uint8_t* pages, size_t count) override {
    for (size_t i = 0; i < count; i++) {
      const uint64_t p = first + i;
      if (closed || p >= put_.size() || put_[p]) {
        contract_violations++;
        return Status::InvalidArgument("sink contract: page put twice or out of range",
                                       std::to_string(p));
      }
      put_[p] = true;
    }
    memcpy(image.data() + first * page_size_, pages, count * page_size_);
    bytes += count * page_size_;
    return Status::OK();
  }
  Status put_overlay(uint64_t pgno, const uint8_t* page) override {
    if (closed || pgno >= put_.size() || !put_[pgno]) {
      contract_violations++;
      return Status::InvalidArgument("sink contract: overlay before page", std::to_string(pgno));
    }
    memcpy(image.data() + pgno * page_size_, page, page_size_);
    overlays++;
    bytes += page_size_;
    return Status::OK();
  }
  Status finish(const Progress&) override {
    for (bool b : put_) {
      if (!b) return Status::InvalidArgument("sink contract: finish with a page missing");
    }
    finished = true;
    closed = true;
    return Status::OK();
  }
  void abandon() noexcept override {
    abandoned = true;
    closed = true;
  }
  uint64_t bytes_written() const override { return bytes; }

  const uint32_t page_size_;
  std::vector<uint8_t> image;
  std::vector<bool> put_;
  uint64_t overlays = 0;
  std::atomic<uint64_t> bytes{0};  // read by progress() from other threads
  int contract_violations = 0;
  bool finished = false, abandoned = false, closed = false;
};

}  // namespace cowbackup::test
