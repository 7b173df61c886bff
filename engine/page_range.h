// A half-open range of page numbers [begin, end).
#pragma once

#include <algorithm>
#include <cstdint>

namespace cowbackup {

struct PageRange {
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t size() const { return end > begin ? end - begin : 0; }
  bool empty() const { return end <= begin; }
  bool contains(uint64_t pgno) const { return pgno >= begin && pgno < end; }
  PageRange clip(uint64_t limit) const {
    return {std::min(begin, limit), std::min(end, limit)};
  }
  // The pages touched by the byte range [offset, offset + len).
  static PageRange FromBytes(uint64_t offset, uint64_t len, uint32_t page_size) {
    if (len == 0) return {offset / page_size, offset / page_size};
    return {offset / page_size, (offset + len - 1) / page_size + 1};
  }
  bool operator==(const PageRange&) const = default;
};

}  // namespace cowbackup
