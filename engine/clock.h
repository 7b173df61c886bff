// Wall-clock time for what is recorded in files (archive headers, volume
// headers, the coordination region) and shown to users. Intervals use
// std::chrono::steady_clock directly.
#pragma once

#include <chrono>
#include <cstdint>

namespace cowbackup {

inline uint64_t NowUnixMicros() {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

}  // namespace cowbackup
