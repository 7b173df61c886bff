// A bitmap over a possibly huge index space whose memory grows with the
// bits actually set (4096-bit chunks on demand). The archive reader uses it
// so that a hostile page_count cannot make it allocate up front.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace cowbackup {

class SparseBitmap {
 public:
  bool test(uint64_t i) const {
    auto it = chunks_.find(i >> kChunkShift);
    if (it == chunks_.end()) return false;
    const uint64_t bit = i & kChunkMask;
    return (it->second[bit >> 6] >> (bit & 63)) & 1;
  }
  void set(uint64_t i) {
    auto& chunk = chunks_[i >> kChunkShift];
    if (!chunk) chunk.reset(new uint64_t[kChunkWords]());
    const uint64_t bit = i & kChunkMask;
    chunk[bit >> 6] |= uint64_t{1} << (bit & 63);
  }

 private:
  static constexpr int kChunkShift = 12;
  static constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkShift) - 1;
  static constexpr size_t kChunkWords = (size_t{1} << kChunkShift) / 64;
  std::unordered_map<uint64_t, std::unique_ptr<uint64_t[]>> chunks_;
};

}  // namespace cowbackup
