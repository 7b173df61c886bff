// WaitFor: polls a condition until it holds or a deadline passes, so a test
// that waits on another thread or process always ends (never hangs).
#pragma once

#include <chrono>
#include <thread>

namespace cowbackup::test {

// Whether `done` held before `deadline`.
template <typename Pred>
bool WaitFor(Pred done, std::chrono::steady_clock::time_point deadline) {
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace cowbackup::test
