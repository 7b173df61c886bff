// ArmedWord: the word a front end's write path loads before every write
// (docs/REGION.md, "The write path"), and which job is this process's own.
// With a region it is the region's armed word, which a backup in any
// process arms; without one (it could not be attached) a private word that
// only this process's jobs arm. One acquire load either way.
//
//   if (armed.load() != 0) [[unlikely]] SlowWrite(...);   // the idle path
//   // SlowWrite: Enter(word); armed.own(word) ? this process's hooks
//   //                                         : take part; Leave()
//
// Both front ends (vfs/file_state.h, lmdb/file_hook.h) keep one.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "coord/region.h"
#include "cowbackup/status.h"

namespace cowbackup::coord {

class ArmedWord {
 public:
  // Once, before any write (and anew in a forked child, with its region).
  void Bind(Region* region) {
    region_ = region;
    own_.store(0, std::memory_order_relaxed);
    local_.store(0, std::memory_order_relaxed);
  }
  uint64_t load() const noexcept {
    return region_ != nullptr ? region_->load_armed() : local_.load(std::memory_order_acquire);
  }
  // True if `seen` (a non-zero load()) is this process's own job's word.
  bool own(uint64_t seen) const noexcept {
    return region_ == nullptr || (seen & ~layout::kFailedBit) == own_.load(std::memory_order_acquire);
  }
  // At this process's T0, after its hooks are armed: arms the job for the
  // write path; with a region, as its word `word` with T0 facts `t0`.
  Status Arm(uint64_t word, const std::string& t0) {
    if (region_ == nullptr) {
      local_.store(1, std::memory_order_release);
      return Status::OK();
    }
    own_.store(word, std::memory_order_release);
    Status s = region_->Arm(t0);
    if (!s.ok()) own_.store(0, std::memory_order_release);
    return s;
  }
  // After the job's hooks were disarmed (or it never armed): finishes the
  // region's job, then waits (bounded) until this process's writers left
  // it, so nothing of this process touches its page table afterwards.
  void Disarm() {
    if (region_ == nullptr) {
      local_.store(0, std::memory_order_release);
      return;
    }
    if (region_->owns_job()) (void)region_->Finish();  // an error leaves it dead (R4): the same end
    own_.store(0, std::memory_order_release);
    region_->AwaitOwnLeave();
  }

 private:
  Region* region_ = nullptr;
  std::atomic<uint64_t> local_{0};  // without a region: 1 while this process's job is armed
  std::atomic<uint64_t> own_{0};    // with one: this process's job's word, 0 if none
};

}  // namespace cowbackup::coord
