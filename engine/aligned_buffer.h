// A byte vector whose data() is aligned to 4096: I/O buffers a sink may
// hand to O_DIRECT as they are (backup/output.h), with no bounce copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace cowbackup {

inline constexpr size_t kIoAlign = 4096;

template <class T>
struct IoAlignedAllocator {
  using value_type = T;
  IoAlignedAllocator() = default;
  template <class U>
  IoAlignedAllocator(const IoAlignedAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kIoAlign)));
  }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, std::align_val_t(kIoAlign)); }
  template <class U>
  bool operator==(const IoAlignedAllocator<U>&) const noexcept {
    return true;
  }
};

using IoBuffer = std::vector<uint8_t, IoAlignedAllocator<uint8_t>>;

}  // namespace cowbackup
