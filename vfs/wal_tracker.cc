#include "vfs/wal_tracker.h"

namespace cowbackup::sqlite {

std::string WalMark::ToString() const {
  return "generation " + std::to_string(salt1) + "/" + std::to_string(salt2) + ", mxFrame " +
         std::to_string(max_frame) + ", nBackfill " + std::to_string(backfilled);
}

void WalTracker::Begin(const WalMark& t0) {
  MutexLock lock(&mu_);
  t0_ = header_ = ckpt_ = t0;
  error_.clear();
  failed_.store(false, std::memory_order_relaxed);
  active_.store(true, std::memory_order_release);
}

void WalTracker::FailLocked(const std::string& why) {
  if (failed_.load(std::memory_order_relaxed)) return;
  error_ = why + "; the copy was discarded";
  failed_.store(true, std::memory_order_release);
}

void WalTracker::Fail(const std::string& why) {
  MutexLock lock(&mu_);
  FailLocked(why);
}

void WalTracker::CheckHeaderLocked(const WalMark& now) {
  if (now.SameGeneration(header_) && now.max_frame == header_.max_frame) return;
  FailLocked("a write bypassed the cowbackup shim during the backup (the wal-index went from " +
             header_.ToString() + " to " + now.ToString() +
             " with no connection of this process writing: another process, or a connection not "
             "opened through the cowbackup VFS, committed or restarted the WAL)");
}

void WalTracker::CheckBackfillLocked(const WalMark& now) {
  // A generation our checkpointers have not touched starts at 0 (the
  // restart that began it reset nBackfill).
  const uint32_t ours = now.SameGeneration(ckpt_) ? ckpt_.backfilled : 0;
  if (now.backfilled <= ours) return;
  // Frames up to T0's mxFrame of T0's generation: their pages are copied
  // from the WAL, so writing them into the main file changes nothing the
  // copy reads.
  if (now.SameGeneration(t0_) && now.backfilled <= t0_.max_frame) return;
  FailLocked("a checkpoint bypassed the cowbackup shim during the backup (nBackfill is " +
             std::to_string(now.backfilled) + ", this process's checkpoints left " +
             std::to_string(ours) + ", and the backup began at " + t0_.ToString() +
             ": another process, or a connection not opened through the cowbackup VFS, copied "
             "frames committed after the backup began into the database file)");
}

void WalTracker::WriteLocked(const WalMark& now, bool ckpt_held_here) {
  MutexLock lock(&mu_);
  CheckHeaderLocked(now);
  if (!ckpt_held_here) CheckBackfillLocked(now);
}

void WalTracker::WriteUnlocking(const WalMark& now) {
  MutexLock lock(&mu_);
  header_ = now;
}

void WalTracker::CheckpointLocked(const WalMark& now) {
  MutexLock lock(&mu_);
  CheckBackfillLocked(now);
}

void WalTracker::CheckpointUnlocking(const WalMark& now) {
  MutexLock lock(&mu_);
  ckpt_ = now;
}

Status WalTracker::CheckAtEnd(const WalMark& now) {
  MutexLock lock(&mu_);
  CheckHeaderLocked(now);
  CheckBackfillLocked(now);
  return failed_.load(std::memory_order_relaxed) ? Status::Corruption(error_) : Status::OK();
}

Status WalTracker::error() const {
  if (!failed()) return Status::OK();
  MutexLock lock(&mu_);
  return Status::Corruption(error_);
}

}  // namespace cowbackup::sqlite
