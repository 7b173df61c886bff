// Sync-point helpers for tests (engine/sync_point.h): clear the callback
// when a test ends, and hold a thread at a named point so "the copier is
// inside its read" becomes a state a test can hold.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>

#include "engine/sync_point.h"

namespace cowbackup::test {

// Clears the sync-point callback when a test ends.
struct SyncPointGuard {
  ~SyncPointGuard() { sync::SetCallback(nullptr); }
};

// Parks the first thread that reaches sync point `point` until Release()
// or, if `release_on` is given, until some thread reaches that point.
class ParkAt {
 public:
  explicit ParkAt(const char* point, const char* release_on = nullptr) {
    sync::SetCallback([this, point, release_on](const char* name) {
      std::unique_lock<std::mutex> lock(mu_);
      if (release_on != nullptr && std::string(name) == release_on) {
        released_ = true;
        cv_.notify_all();
      }
      if (std::string(name) != point || parked_) return;
      parked_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    });
  }
  ~ParkAt() { sync::SetCallback(nullptr); }
  ParkAt(const ParkAt&) = delete;
  ParkAt& operator=(const ParkAt&) = delete;
  void WaitUntilParked() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return parked_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool parked_ = false, released_ = false;
};

}  // namespace cowbackup::test
