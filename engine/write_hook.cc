#include "engine/write_hook.h"

#include <thread>

namespace cowbackup {

Status WriteHook::arm(CopyJob* job, WriteRouter* router) {
  CopyJob* expected = nullptr;
  if (!job_.compare_exchange_strong(expected, job, std::memory_order_acq_rel)) {
    return Status::Busy("a backup of this database is already running");
  }
  router_ = router;
  state_.fetch_or(kArmed, std::memory_order_acq_rel);
  return Status::OK();
}

void WriteHook::disarm() {
  state_.fetch_and(~kArmed, std::memory_order_acq_rel);
  // Writers inside the job are released promptly: by then the job has
  // finished (every page settled) or failed (before_write is a no-op).
  while (state_.load(std::memory_order_acquire) >= kOneWriter) std::this_thread::yield();
  job_.store(nullptr, std::memory_order_release);
}

CopyJob* WriteHook::enter() noexcept {
  uint64_t prev = state_.fetch_add(kOneWriter, std::memory_order_acq_rel);
  if (!(prev & kArmed)) {
    leave();
    return nullptr;
  }
  return job_.load(std::memory_order_acquire);
}

void WriteHook::slow_before_write(uint64_t offset, uint64_t len) noexcept {
  if (CopyJob* job = enter()) {
    router_ != nullptr ? router_->before_write(*job, offset, len) : job->before_write(offset, len);
    leave();
  }
}

void WriteHook::slow_before_truncate(uint64_t new_size) noexcept {
  if (CopyJob* job = enter()) {
    router_ != nullptr ? router_->before_truncate(*job, new_size) : job->before_truncate(new_size);
    leave();
  }
}

}  // namespace cowbackup
