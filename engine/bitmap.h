// Bitmaps for per-page state: a job over N pages costs a few bits per page,
// never an object per page (10 GiB of 4 KiB pages = 2.6M pages = 320 KiB a map).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace cowbackup {

// Plain bitmap; the owner provides locking.
class Bitmap {
 public:
  explicit Bitmap(uint64_t bits = 0) : words_((bits + 63) / 64, 0) {}
  bool test(uint64_t i) const { return (words_[i >> 6] >> (i & 63)) & 1; }
  void set(uint64_t i) { words_[i >> 6] |= uint64_t{1} << (i & 63); }
  void clear(uint64_t i) { words_[i >> 6] &= ~(uint64_t{1} << (i & 63)); }
  size_t memory_bytes() const { return words_.size() * sizeof(uint64_t); }

 private:
  std::vector<uint64_t> words_;
};

// A bitmap whose bits only go from 0 to 1 while it is shared. Readers need no
// lock: test() is an acquire load that pairs with set()'s release, so a reader
// that sees a bit also sees everything written before it was set.
class MonotonicBitmap {
 public:
  explicit MonotonicBitmap(uint64_t bits)
      : nwords_((bits + 63) / 64), words_(new std::atomic<uint64_t>[nwords_]) {
    for (size_t i = 0; i < nwords_; i++) words_[i].store(0, std::memory_order_relaxed);
  }
  MonotonicBitmap(const MonotonicBitmap&) = delete;
  MonotonicBitmap& operator=(const MonotonicBitmap&) = delete;

  bool test(uint64_t i) const {
    return (words_[i >> 6].load(std::memory_order_acquire) >> (i & 63)) & 1;
  }
  void set(uint64_t i) {
    words_[i >> 6].fetch_or(uint64_t{1} << (i & 63), std::memory_order_release);
  }
  // True when every bit in [begin, end) is set.
  bool all(uint64_t begin, uint64_t end) const {
    for (uint64_t i = begin; i < end;) {
      uint64_t w = words_[i >> 6].load(std::memory_order_acquire);
      uint64_t lo = i & 63;
      uint64_t hi = std::min<uint64_t>(64, lo + (end - i));
      uint64_t mask = (hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1);
      if ((w & mask) != mask) return false;
      i += hi - lo;
    }
    return true;
  }
  size_t memory_bytes() const { return nwords_ * sizeof(uint64_t); }

 private:
  size_t nwords_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace cowbackup
