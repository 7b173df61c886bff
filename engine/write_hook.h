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
//
// Routes. Usually the file a hook guards is the image the job copies, byte
// for byte. When it is not (a SQLite WAL database: the image is the main
// file with the -wal file's committed frames applied, and both files are
// written), the hook is armed with a WriteRouter, which turns a write to
// its file into before_write() calls on the image pages that write could
// change. One job, several hooks, one router each.
#pragma once

#include <atomic>
#include <cstdint>

#include "cowbackup/status.h"
#include "engine/commit_signal.h"
#include "engine/copy_job.h"

namespace cowbackup {

// Maps writes to one file onto the image pages a job copies (see above).
// Called only while the hook is armed, from the writer's thread; must call
// the job before returning and never fail.
class WriteRouter {
 public:
  virtual ~WriteRouter() = default;
  virtual void before_write(CopyJob& job, uint64_t offset, uint64_t len) noexcept = 0;
  virtual void before_truncate(CopyJob& job, uint64_t new_size) noexcept = 0;
};

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

  // Busy if a job is already armed on this hook. With a router, writes go
  // through it (not owned; it must outlive disarm()).
  Status arm(CopyJob* job, WriteRouter* router = nullptr);
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
  WriteRouter* router_ = nullptr;  // written before the armed bit is set, read after
};

}  // namespace cowbackup
