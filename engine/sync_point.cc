#include "engine/sync_point.h"

#include <mutex>
#include <shared_mutex>

namespace cowbackup::sync {

std::atomic<bool> g_enabled{false};

namespace {
std::shared_mutex& Mutex() {
  static std::shared_mutex mu;
  return mu;
}
Callback& Current() {
  static Callback cb;
  return cb;
}
}  // namespace

void SetCallback(Callback cb) {
  std::unique_lock<std::shared_mutex> lock(Mutex());
  Current() = std::move(cb);
  g_enabled.store(static_cast<bool>(Current()), std::memory_order_relaxed);
}

void Process(const char* name) {
  std::shared_lock<std::shared_mutex> lock(Mutex());
  if (Current()) Current()(name);
}

}  // namespace cowbackup::sync
