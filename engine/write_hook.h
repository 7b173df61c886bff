// WriteHook: the interception point a front end puts in front of every write
// to one database file, and the answer to "a job may end while a writer is
// inside before_write".
//
// One 64-bit word holds an "armed" bit and the number of writers inside the
// armed path. The idle path is a single acquire load of that word:
//
//   if (hook.armed()) ... // or simply hook.before_write(ofs, n)
//
// When armed, a writer adds itself to the count (fetch_add), re-checks the
// armed bit (the job may have been disarmed in between), calls the job, and
// leaves. disarm() clears the bit and waits until the count drains to zero;
// only then may the job be destroyed.
//
// Arming is the caller's begin-time instant: it must arm while no write to
// the file is in flight (the SQLite shim holds a SHARED lock, the LMDB
// wrapper the writer mutex), so every later write sees the armed bit.
#pragma once

#include <atomic>
#include <cstdint>

#include "cowbackup/status.h"
#include "engine/commit_signal.h"
#include "engine/copy_job.h"

namespace cowbackup {

class WriteHook {
 public:
  WriteHook() = default;
  WriteHook(const WriteHook&) = delete;
  WriteHook& operator=(const WriteHook&) = delete;

  // The hot path: one acquire load when no job is armed.
  void before_write(uint64_t offset, uint64_t len) noexcept {
    if (state_.load(std::memory_order_acquire) & kArmed) [[unlikely]] {
      slow_before_write(offset, len);
    }
  }
  void before_truncate(uint64_t new_size) noexcept {
    if (state_.load(std::memory_order_acquire) & kArmed) [[unlikely]] {
      slow_before_truncate(new_size);
    }
  }
  bool armed() const { return state_.load(std::memory_order_acquire) & kArmed; }

  // Busy if a job is already armed on this hook.
  Status arm(CopyJob* job);
  // Stops routing writes to the job and waits for writers inside it to
  // leave. After it returns the job may be destroyed.
  void disarm();

  // The front end reports its application's commits here; a job armed with
  // yield_to_commits waits out each one before a destination write.
  CommitSignal commits;

 private:
  static constexpr uint64_t kArmed = 1;
  static constexpr uint64_t kOneWriter = 2;

  // Enters (counted), returns the job or nullptr if it was disarmed first.
  CopyJob* enter() noexcept;
  void leave() noexcept { state_.fetch_sub(kOneWriter, std::memory_order_release); }
  void slow_before_write(uint64_t offset, uint64_t len) noexcept;
  void slow_before_truncate(uint64_t new_size) noexcept;

  std::atomic<uint64_t> state_{0};
  std::atomic<CopyJob*> job_{nullptr};
};

}  // namespace cowbackup
